"""What each public channel publishes after a market event, derived from the one true book.

For the stateful channels the simulator keeps a *client mirror*: the book a correct client holds
after applying everything published so far. :class:`BookView` (L2, a
:class:`~kbook.reference.RefBook`) and :class:`Level3View` (L3, a
:class:`~kbook.reference.RefL3Book`) compare the true top-``depth`` window with their mirror after
each event and publish exactly what Kraken would:

* L2: every level inside the window whose total changed; qty 0 for a level that really
  disappeared; nothing for a level merely pushed below the window by a better one (clients
  truncate); and a level entering the window from below as an ordinary update flagged as a
  republish (v1's ``"r"``).
* L3: ``add``/``modify``/``delete`` for orders inside the window; all orders of a level entering
  the window as ``add``s carrying their original timestamps, in queue order; nothing for orders
  pushed out of scope; a price-changing amend as ``modify`` with the new price.

The message is then applied to the mirror with the reference model's own rules (apply everything,
truncate), the checksum is taken *from the mirror*, and the mirror is compared with the truth, so
the simulator is an independent oracle: a bug here shows up as an assertion in the simulator, not
as a silent disagreement with the engine under test.

All subscribers of one ``(symbol, channel, parameter)`` see the same messages, because every
mirror equals the true window after every message; so one view serves them all and each message
is derived once. The other channels (trade, ticker, spread, ohlc) are stateless projections of
the event and of the market's statistics.

What it is not: a renderer (messages here are integers and lists; :mod:`kbook.sim.protocol_v1`
and :mod:`kbook.sim.protocol_v2` write the bytes) and not aware of connections or faults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, NamedTuple

from kbook.reference import CHECKSUM_LEVELS, RefBook, RefL3Book
from kbook.sim.market import Bar, BookSide, MarketEvent, PairMarket, Print
from kbook.sim.wire import decimal_of, units_of

__all__ = [
    "BOOK_DEPTHS",
    "LEVEL3_DEPTHS",
    "BookEntry",
    "BookMessage",
    "BookView",
    "L3Entry",
    "L3Message",
    "Level3View",
    "OhlcMessage",
    "SpreadMessage",
    "TickerData",
    "TickerMessage",
    "TradeMessage",
    "ticker_data",
]

Side = Literal["bid", "ask"]
_SIDES: tuple[Side, Side] = ("bid", "ask")

#: Depths a ``book`` subscription may ask for (v1 and v2).
BOOK_DEPTHS: tuple[int, ...] = (10, 25, 100, 500, 1000)
#: Depths a ``level3`` subscription may ask for.
LEVEL3_DEPTHS: tuple[int, ...] = (10, 100, 1000)
#: Mirrors of at most this depth are compared with the truth after every message; deeper ones
#: every ``_SAMPLED_CHECK_EVERY`` messages (a full comparison of a depth-1000 window costs more
#: than deriving the message), unless the view is strict.
_ALWAYS_CHECK_DEPTH = 25
_SAMPLED_CHECK_EVERY = 64


class BookEntry(NamedTuple):
    """One L2 level on the wire: ``qty == 0`` deletes; ``republish`` is v1's ``"r"`` flag."""

    price: int
    qty: int
    time_ns: int
    republish: bool = False


@dataclass(slots=True)
class BookMessage:
    """An L2 snapshot or update, sides best first (snapshot) or in publication order (update)."""

    snapshot: bool
    bids: list[BookEntry]
    asks: list[BookEntry]
    checksum: int
    time_ns: int


class L3Entry(NamedTuple):
    """One order on the level3 wire; ``event`` is None inside a snapshot."""

    event: Literal["add", "modify", "delete"] | None
    order_id: str
    price: int
    qty: int
    time_ns: int


@dataclass(slots=True)
class L3Message:
    """A level3 snapshot or update."""

    snapshot: bool
    bids: list[L3Entry]
    asks: list[L3Entry]
    checksum: int
    time_ns: int


@dataclass(slots=True)
class TradeMessage:
    """Trades, oldest first (one event's fills, or the recent-trades snapshot)."""

    snapshot: bool
    trades: list[Print]
    time_ns: int


@dataclass(slots=True, frozen=True)
class TickerData:
    """Everything both ticker formats need, in ticks and lots, as of ``time_ns``."""

    bid: int
    bid_qty: int
    ask: int
    ask_qty: int
    last: int
    last_qty: int
    volume: int
    vwap: int
    low: int
    high: int
    open: int
    count: int
    today_volume: int
    today_vwap: int
    today_low: int
    today_high: int
    today_open: int
    today_count: int
    time_ns: int


@dataclass(slots=True)
class TickerMessage:
    snapshot: bool
    data: TickerData


@dataclass(slots=True)
class SpreadMessage:
    """Best bid and ask with their totals (v1 ``spread``)."""

    snapshot: bool
    bid: int
    ask: int
    bid_qty: int
    ask_qty: int
    time_ns: int


@dataclass(slots=True)
class OhlcMessage:
    """Candles of one interval, oldest first; an update carries the running candle only."""

    snapshot: bool
    candles: list[Bar]
    time_ns: int


def ticker_data(market: PairMarket) -> TickerData:
    """Collect the ticker figures of ``market`` as of its clock.

    Empty windows fall back to the last price (Kraken never publishes a ticker with holes).
    """
    market.refresh_stats()
    bid, bid_qty, ask, ask_qty = market.bbo()
    last = market.last_price
    day, today = market.day, market.today
    return TickerData(
        bid,
        bid_qty,
        ask,
        ask_qty,
        last,
        market.last_qty,
        day.volume,
        day.vwap(last),
        day.low(last),
        day.high(last),
        day.open(last),
        day.count,
        today.volume,
        today.vwap(last),
        today.low(last),
        today.high(last),
        today.open(last),
        today.count,
        market.time_ns,
    )


@dataclass(slots=True)
class _CheckPolicy:
    strict: bool
    depth: int
    counter: int = field(default=0)

    def due(self) -> bool:
        self.counter += 1
        if self.strict or self.depth <= _ALWAYS_CHECK_DEPTH:
            return True
        return self.counter % _SAMPLED_CHECK_EVERY == 0


class BookView:
    """The L2 ``book`` channel of one pair at one depth, with its client mirror.

    >>> from kbook.sim.pairs import PRESETS
    >>> market = PairMarket(PRESETS["ETH/USD"], seed=2, interval_ns=10**6, start_ns=0, warmup=50)
    >>> view = BookView(market, depth=10, strict=True)
    >>> snap = view.snapshot()
    >>> len(snap.bids), len(snap.asks), snap.checksum == view.mirror.checksum()
    (10, 10, True)
    >>> sum(view.update(market.step()) is not None for _ in range(200)) > 50
    True
    """

    def __init__(self, market: PairMarket, depth: int, strict: bool = False) -> None:
        self.market = market
        self.depth = depth
        self.pp = market.price_precision
        self.qp = market.qty_precision
        self.mirror = RefBook(market.symbol, depth, self.pp, self.qp)
        self._policy = _CheckPolicy(strict, depth)
        self.strict = strict
        self.messages = 0
        bids, asks = self._window("bid"), self._window("ask")
        self.mirror.apply_message(
            [(decimal_of(e.price, self.pp), decimal_of(e.qty, self.qp)) for e in bids],
            [(decimal_of(e.price, self.pp), decimal_of(e.qty, self.qp)) for e in asks],
            snapshot=True,
        )
        self._checksum = self.mirror.checksum()
        self._reused = False

    def _window(self, side: Side) -> list[BookEntry]:
        truth = self.market.side(side)
        return [BookEntry(lv.price, lv.total, lv.updated_ns) for lv in truth.levels(0, self.depth)]

    def snapshot(self) -> BookMessage:
        """The current window, best first; equal to the mirror (checked)."""
        self.check()
        return BookMessage(
            True, self._window("bid"), self._window("ask"), self._checksum, self.market.time_ns
        )

    def update(self, event: MarketEvent) -> BookMessage | None:
        """Derive the update ``event`` causes in this window, or None if it is invisible here.

        Complexity: O((k + r) log n) for k touched and r re-entering levels.
        """
        bid_prices: set[int] = set()
        ask_prices: set[int] = set()
        for change in event.changes:
            touched = bid_prices if change.side == "bid" else ask_prices
            touched.add(change.price)
            if change.old_price is not None:
                touched.add(change.old_price)
        top_changed = False
        bids: list[BookEntry] = []
        asks: list[BookEntry] = []
        if bid_prices:
            top_changed |= self._touches_top(self.market.bids, bid_prices)
            bids = self._side_update(self.market.bids, bid_prices, event.time_ns)
        if ask_prices:
            top_changed |= self._touches_top(self.market.asks, ask_prices)
            asks = self._side_update(self.market.asks, ask_prices, event.time_ns)
        if not bids and not asks:
            return None
        self.mirror.truncate()
        self.messages += 1
        self._reused = not top_changed
        if top_changed:
            self._checksum = self.mirror.checksum()
        if self._policy.due():
            self.check()
        return BookMessage(False, bids, asks, self._checksum, event.time_ns)

    def _touches_top(self, truth: BookSide, touched: set[int]) -> bool:
        """Whether a change at ``touched`` prices can alter the side's checksummed top 10.

        It cannot if the client holds ten or more levels and every touched price is strictly
        worse than the tenth: inserts, deletes and republished levels down there leave the first
        ten levels as they are. The reference checksum is then reused rather than recomputed.
        """
        levels = self.mirror.bids if truth.is_bid else self.mirror.asks
        if len(levels) < CHECKSUM_LEVELS:
            return True
        tenth = units_of(
            levels.keys()[-CHECKSUM_LEVELS if truth.is_bid else CHECKSUM_LEVELS - 1], self.pp
        )
        return any(not truth.better(tenth, price) for price in touched)

    def _side_update(self, truth: BookSide, touched: set[int], time_ns: int) -> list[BookEntry]:
        side = truth.name
        pp, qp, depth = self.pp, self.qp, self.depth
        mirror_levels = self.mirror.bids if truth.is_bid else self.mirror.asks
        old_worst: int | None = None
        if mirror_levels:
            worst: Decimal = mirror_levels.keys()[0 if truth.is_bid else -1]
            old_worst = units_of(worst, pp)
        entries: list[BookEntry] = []
        for price in sorted(touched, key=truth.sign.__mul__):
            level = truth.level(price)
            key = decimal_of(price, pp)
            held: Decimal | None = mirror_levels.get(key)
            if level is not None and truth.rank(price) < depth:
                qty = decimal_of(level.total, qp)
                if held != qty:
                    entries.append(BookEntry(price, level.total, level.updated_ns))
                    self.mirror.apply(side, key, qty)
            elif level is None and held is not None:
                entries.append(BookEntry(price, 0, time_ns))
                self.mirror.apply(side, key, Decimal(0))
            # A level still resting but outside the window needs nothing: either it was pushed
            # out (the client truncates it) or it was never visible.
        # Levels below the old bottom of the mirror that are now inside the window re-enter it:
        # Kraken republishes them so the client's window stays full.
        start = 0 if old_worst is None else truth.rank_after(old_worst)
        for level in truth.levels(start, depth):
            key = decimal_of(level.price, pp)
            if key not in mirror_levels:
                entries.append(BookEntry(level.price, level.total, level.updated_ns, True))
                self.mirror.apply(side, key, decimal_of(level.total, qp))
        return entries

    def check(self) -> None:
        """Assert that the mirror holds exactly the true window (the simulator's self-test).

        :raises AssertionError: with the first difference.
        """
        pp, qp = self.pp, self.qp
        if self._reused and self._checksum != self.mirror.checksum():
            raise AssertionError(f"{self.market.symbol} book-{self.depth}: stale checksum")
        for side in _SIDES:
            top = self.mirror.top_bids if side == "bid" else self.mirror.top_asks
            truth = [
                (decimal_of(p, pp), decimal_of(q, qp))
                for p, q in self.market.side(side).top(self.depth)
            ]
            held = top(self.depth)
            if truth != held:
                raise AssertionError(
                    f"{self.market.symbol} book-{self.depth} {side} mirror diverged from the "
                    f"market: first truth {truth[:3]}, mirror {held[:3]}"
                )


class Level3View:
    """The ``level3`` channel of one pair at one depth, with its client mirror.

    >>> from kbook.sim.pairs import PRESETS
    >>> market = PairMarket(PRESETS["ETH/USD"], seed=2, interval_ns=10**6, start_ns=0, warmup=50)
    >>> view = Level3View(market, depth=10, strict=True)
    >>> snap = view.snapshot()
    >>> len({e.price for e in snap.bids}), snap.checksum == view.mirror.checksum()
    (10, True)
    >>> sum(view.update(market.step()) is not None for _ in range(200)) > 50
    True
    """

    def __init__(self, market: PairMarket, depth: int, strict: bool = False) -> None:
        self.market = market
        self.depth = depth
        self.pp = market.price_precision
        self.qp = market.qty_precision
        self.mirror = RefL3Book(market.symbol, depth, self.pp, self.qp)
        self._policy = _CheckPolicy(strict, depth)
        self.messages = 0
        pp, qp = self.pp, self.qp
        self.mirror.apply_message(
            [
                (side, "add", e.order_id, decimal_of(e.price, pp), decimal_of(e.qty, qp))
                for side in _SIDES
                for e in self._window(side)
            ],
            snapshot=True,
        )
        self._checksum = self.mirror.checksum()
        self._tenth: dict[str, Decimal | None] = {}
        self._top_changed = False
        self._reused = False

    def _window(self, side: Side) -> list[L3Entry]:
        return [
            L3Entry(None, o.order_id, o.price, o.qty, o.time_ns)
            for level in self.market.side(side).levels(0, self.depth)
            for o in level.orders.values()
        ]

    def snapshot(self) -> L3Message:
        """Every order of the current window, levels best first, queues in order."""
        self.check()
        return L3Message(
            True, self._window("bid"), self._window("ask"), self._checksum, self.market.time_ns
        )

    def update(self, event: MarketEvent) -> L3Message | None:
        """Derive the order events ``event`` causes in this window, or None if it is invisible.

        Complexity: O((k + r) log n) for k changed orders and r orders of re-entering levels.
        """
        if not event.changes:
            return None
        out: dict[Side, list[L3Entry]] = {"bid": [], "ask": []}
        old_worst = {side: self._mirror_worst(side) for side in _SIDES}
        self._top_changed = False
        for side in _SIDES:
            levels = self.mirror.bids if side == "bid" else self.mirror.asks
            self._tenth[side] = (
                None
                if len(levels) < CHECKSUM_LEVELS
                else levels.keys()[-CHECKSUM_LEVELS if side == "bid" else CHECKSUM_LEVELS - 1]
            )
        sent_whole: set[tuple[str, int]] = set()
        for change in event.changes:
            self._order_change(
                change.side,
                change.order_id,
                event.time_ns,
                out[change.side],
                sent_whole,
                change.requeue,
            )
        for side in _SIDES:
            self._refill(side, old_worst[side], out[side])
        if not out["bid"] and not out["ask"]:
            return None
        self.mirror.truncate()
        self.messages += 1
        self._reused = not self._top_changed
        if self._top_changed:
            self._checksum = self.mirror.checksum()
        if self._policy.due():
            self.check()
        return L3Message(False, out["bid"], out["ask"], self._checksum, event.time_ns)

    def _mirror_worst(self, side: Side) -> int | None:
        levels = self.mirror.bids if side == "bid" else self.mirror.asks
        if not levels:
            return None
        worst: Decimal = levels.keys()[0 if side == "bid" else -1]
        return units_of(worst, self.pp)

    def _in_top(self, side: Side, price: Decimal) -> bool:
        """Whether ``price`` is at or better than the client's tenth level at message start."""
        tenth = self._tenth[side]
        if tenth is None:
            return True
        return price >= tenth if side == "bid" else price <= tenth

    def _emit(self, side: Side, entry: L3Entry, out: list[L3Entry]) -> None:
        out.append(entry)
        if not self._top_changed:
            # Same reasoning as BookView._touches_top, per order: both the price it leaves and
            # the price it goes to must lie strictly below the tenth level for the checksum to
            # stay valid.
            held = self.mirror.orders.get(entry.order_id)
            if self._in_top(side, decimal_of(entry.price, self.pp)) or (
                held is not None and self._in_top(side, held[1])
            ):
                self._top_changed = True
        if entry.event == "delete":
            self.mirror.delete(side, entry.order_id)
            return
        price, qty = decimal_of(entry.price, self.pp), decimal_of(entry.qty, self.qp)
        if entry.event == "add":
            self.mirror.add(side, entry.order_id, price, qty)
        else:
            self.mirror.modify(side, entry.order_id, price, qty)

    def _send_level(self, side: Side, price: int, out: list[L3Entry]) -> None:
        """Publish a whole level that is new to the client, in queue order.

        Each entry joins the back of the client's level, so the client rebuilds the queue
        exactly; an order the client holds at another price arrives as a price-changing
        ``modify``, which also joins the back.
        """
        level = self.market.side(side).level(price)
        assert level is not None
        for order in level.orders.values():
            held = self.mirror.orders.get(order.order_id)
            event: Literal["add", "modify"] = "add" if held is None else "modify"
            self._emit(side, L3Entry(event, order.order_id, price, order.qty, order.time_ns), out)

    def _order_change(
        self,
        side: Side,
        order_id: str,
        time_ns: int,
        out: list[L3Entry],
        sent_whole: set[tuple[str, int]],
        requeue: bool = False,
    ) -> None:
        truth = self.market.side(side)
        order = self.market.orders.get(order_id)
        held = self.mirror.orders.get(order_id)
        if order is None:
            if held is not None:
                queue = (self.mirror.bids if side == "bid" else self.mirror.asks)[held[1]]
                price = units_of(held[1], self.pp)
                qty = units_of(queue[order_id], self.qp)
                self._emit(side, L3Entry("delete", order_id, price, qty, time_ns), out)
            return
        price_key = decimal_of(order.price, self.pp)
        if truth.rank(order.price) >= self.depth:
            if held is not None and held[1] != price_key:
                # Amended to a price outside the window: the client moves it there and then
                # truncates it away.
                self._emit(side, L3Entry("modify", order_id, order.price, order.qty, time_ns), out)
            return
        if (side, order.price) in sent_whole:
            return
        client_levels = self.mirror.bids if side == "bid" else self.mirror.asks
        if price_key not in client_levels:
            self._send_level(side, order.price, out)
            sent_whole.add((side, order.price))
        elif held is None:
            self._emit(side, L3Entry("add", order_id, order.price, order.qty, order.time_ns), out)
        elif requeue and held[1] == price_key:
            # Same price, back of the queue: a modify would keep the client's queue position.
            old_qty = units_of(client_levels[price_key][order_id], self.qp)
            self._emit(side, L3Entry("delete", order_id, order.price, old_qty, time_ns), out)
            self._emit(side, L3Entry("add", order_id, order.price, order.qty, order.time_ns), out)
        elif held[1] != price_key or client_levels[price_key][order_id] != decimal_of(
            order.qty, self.qp
        ):
            self._emit(side, L3Entry("modify", order_id, order.price, order.qty, time_ns), out)

    def _refill(self, side: Side, old_worst: int | None, out: list[L3Entry]) -> None:
        truth = self.market.side(side)
        client_levels = self.mirror.bids if side == "bid" else self.mirror.asks
        start = 0 if old_worst is None else truth.rank_after(old_worst)
        for level in list(truth.levels(start, self.depth)):
            if decimal_of(level.price, self.pp) not in client_levels:
                self._send_level(side, level.price, out)

    def check(self) -> None:
        """Assert that the mirror holds exactly the true window, queues included.

        :raises AssertionError: with the first difference.
        """
        pp, qp = self.pp, self.qp
        if self._reused and self._checksum != self.mirror.checksum():
            raise AssertionError(f"{self.market.symbol} level3-{self.depth}: stale checksum")
        for side in _SIDES:
            truth = [
                (
                    decimal_of(level.price, pp),
                    [(o.order_id, decimal_of(o.qty, qp)) for o in level.orders.values()],
                )
                for level in self.market.side(side).levels(0, self.depth)
            ]
            held = self.mirror.levels(side, self.depth)
            if truth != held:
                raise AssertionError(
                    f"{self.market.symbol} level3-{self.depth} {side} mirror diverged from the "
                    f"market: first truth {truth[:2]}, mirror {held[:2]}"
                )
