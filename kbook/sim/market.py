"""The simulated market: one order-by-order book per pair, driven by seeded random order flow.

Each :class:`PairMarket` holds resting limit orders in price-time priority and, one *event* at a
time, lets a seeded participant add an order near or away from the touch, cancel one, amend one
(a smaller quantity keeps its place; a new price goes to the back of the new level), or send a
marketable order that fills resting orders front to back, partially or fully, and may leave a
remainder resting. Every event reports what happened as order-level changes (what a level3 feed
publishes), trades, and whether the best bid or offer moved. Trades feed the 24-hour and today
statistics of the ticker and the candles of every OHLC interval, so L2, L3, trades, ticker, spread
and OHLC are all views of this one book and always agree.

Everything is integers: prices in ticks (``10**-price_precision``), quantities in lots
(``10**-qty_precision``), times in nanoseconds of a simulated clock. Randomness comes from one
:class:`random.Random` per pair, seeded from the simulator's seed and the pair's symbol, and uses
only integer draws, so the same seed gives the same events on every platform. The clock advances
by a seeded random step per event whose mean is ``interval_ns``; pacing against the wall clock is
the server's business, not this module's.

Orders that belong to an account of the simulated exchange (:mod:`kbook.sim.exchange`) rest in
the same book and queues, marked by :attr:`Order.owner`. The seeded flow never cancels or amends
them and never draws extra random numbers because of them; its marketable orders fill them like
any other resting order and report each such fill through :attr:`PairMarket.on_owned_fill`.
:meth:`PairMarket.external_event` and :meth:`PairMarket.finish_external` bracket the book changes
the exchange makes itself, so they are published exactly like the flow's events.

What it is not: the exchange's order entry or accounting (see :mod:`kbook.sim.exchange`), a
model of real market microstructure worth studying, or anything that touches a socket.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from sortedcontainers import SortedDict

from kbook.sim.pairs import PairSpec
from kbook.sim.wire import pow10, round_div

__all__ = [
    "INTERVALS",
    "STATUSES",
    "BookSide",
    "Bar",
    "Change",
    "Level",
    "MarketEvent",
    "Order",
    "PairMarket",
    "Rolling",
    "Print",
]

Side = Literal["bid", "ask"]
L3Event = Literal["add", "modify", "delete"]

#: OHLC intervals in minutes, as Kraken offers them.
INTERVALS: tuple[int, ...] = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
#: Engine states of the ``status`` channel; the flow honours each one.
STATUSES: tuple[str, ...] = ("online", "maintenance", "cancel_only", "post_only")

_NS_PER_S = 1_000_000_000
_DAY_NS = 86_400 * _NS_PER_S
#: Completed candles kept per interval (the snapshot sends them all, oldest first).
_CANDLE_HISTORY = 60
#: Most recent trades kept for the trade channel's snapshot (Kraken sends 50).
_RECENT_TRADES = 50
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class Order:
    """One resting limit order. ``qty`` is its remaining (visible) quantity in lots.

    ``owner`` is None for the seeded flow's orders and the exchange's order record for an
    account's order (the flow leaves those alone).
    """

    __slots__ = ("order_id", "owner", "price", "qty", "side", "time_ns")

    def __init__(
        self, order_id: str, side: Side, price: int, qty: int, time_ns: int, owner: Any = None
    ) -> None:
        self.order_id = order_id
        self.side: Side = side
        self.price = price
        self.qty = qty
        #: Insert or last owner amend time: the order's level3 ``timestamp``.
        self.time_ns = time_ns
        self.owner = owner

    def __repr__(self) -> str:
        return f"Order({self.order_id}, {self.side}, {self.price}, {self.qty})"


class Level:
    """One price level: its orders in queue order (a ``dict`` keeps insertion order)."""

    __slots__ = ("orders", "price", "total", "updated_ns")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: dict[str, Order] = {}
        self.total = 0
        #: Last time the level's total changed: the v1 book entry timestamp.
        self.updated_ns = 0


class Change(NamedTuple):
    """One order-level change, in the order it happened within an event.

    ``price`` and ``qty`` are the order's values after the change; for ``delete`` they are its
    last resting values. ``old_price`` is set when an amend moved the order to another price;
    ``requeue`` when an amend sent it to the back of its own level (a larger quantity), which
    level3 must publish as a delete and an add because a ``modify`` keeps the queue position.
    """

    side: Side
    event: L3Event
    order_id: str
    price: int
    qty: int
    time_ns: int
    old_price: int | None = None
    requeue: bool = False


class Print(NamedTuple):
    """One fill between the taker and one resting order, at the resting order's price."""

    trade_id: int
    price: int
    qty: int
    side: Literal["buy", "sell"]
    ord_type: Literal["market", "limit"]
    time_ns: int


@dataclass(slots=True)
class MarketEvent:
    """Everything one market event did; feeds derive their messages from this and the book."""

    seq: int
    time_ns: int
    action: str
    changes: list[Change] = field(default_factory=list)
    trades: list[Print] = field(default_factory=list)
    bbo_changed: bool = False


class BookSide:
    """One side of the book: price ticks to :class:`Level`, best first.

    Keys are stored as ``sign * price`` with the sign chosen so that ascending key order is
    best-first on both sides; the rank of a price is then a plain bisection.
    """

    __slots__ = ("_levels", "is_bid", "name", "sign")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.name: Side = "bid" if is_bid else "ask"
        self.sign = -1 if is_bid else 1
        self._levels: SortedDict[int, Level] = SortedDict()

    def __len__(self) -> int:
        return len(self._levels)

    def level(self, price: int) -> Level | None:
        found: Level | None = self._levels.get(self.sign * price)
        return found

    def level_at(self, rank: int) -> Level:
        found: Level = self._levels.peekitem(rank)[1]
        return found

    def best(self) -> Level | None:
        return self.level_at(0) if self._levels else None

    def worst(self) -> Level | None:
        return self.level_at(-1) if self._levels else None

    def rank(self, price: int) -> int:
        """Number of levels strictly better than ``price`` (its rank if it exists).

        Complexity: O(log n).
        """
        rank: int = self._levels.bisect_left(self.sign * price)
        return rank

    def rank_after(self, price: int) -> int:
        """Rank of the first level strictly worse than ``price``."""
        rank: int = self._levels.bisect_right(self.sign * price)
        return rank

    def better(self, a: int, b: int) -> bool:
        """Whether price ``a`` is strictly better than price ``b`` on this side."""
        return self.sign * a < self.sign * b

    def worse(self, price: int, ticks: int) -> int:
        """The price ``ticks`` away from ``price`` towards the back of the book."""
        return price + self.sign * ticks

    def levels(self, start: int = 0, stop: int | None = None) -> list[Level]:
        """Levels of ranks ``start`` (inclusive) to ``stop`` (exclusive), best first.

        Complexity: O(log n + k) for k levels returned.
        """
        levels: list[Level] = self._levels.values()[start:stop]
        return levels

    def __iter__(self) -> Iterator[Level]:
        """Every level, best first."""
        return iter(self._levels.values())

    def top(self, n: int) -> list[tuple[int, int]]:
        """``(price, total)`` of the ``n`` best levels."""
        return [(lv.price, lv.total) for lv in self.levels(0, n)]

    def get_or_create(self, price: int) -> Level:
        key = self.sign * price
        level: Level | None = self._levels.get(key)
        if level is None:
            level = self._levels[key] = Level(price)
        return level

    def drop(self, price: int) -> None:
        del self._levels[self.sign * price]


class Rolling:
    """Trade aggregates over a window: volume, value (for VWAP), count, low/high, open.

    ``window_ns=None`` keeps everything until :meth:`reset` (the "today" figures); otherwise
    trades older than the window expire. Low and high use monotonic deques, so every operation
    is amortised O(1).
    """

    __slots__ = ("_highs", "_lows", "count", "trades", "value", "volume", "window_ns")

    def __init__(self, window_ns: int | None) -> None:
        self.window_ns = window_ns
        self.trades: deque[tuple[int, int, int]] = deque()  # (time, price, qty)
        self._lows: deque[tuple[int, int]] = deque()  # (time, price), prices increasing
        self._highs: deque[tuple[int, int]] = deque()  # (time, price), prices decreasing
        self.volume = 0
        self.value = 0  # sum of price * qty, in tick-lots
        self.count = 0

    def reset(self) -> None:
        self.trades.clear()
        self._lows.clear()
        self._highs.clear()
        self.volume = self.value = self.count = 0

    def add(self, time_ns: int, price: int, qty: int) -> None:
        self.trades.append((time_ns, price, qty))
        self.volume += qty
        self.value += price * qty
        self.count += 1
        while self._lows and self._lows[-1][1] >= price:
            self._lows.pop()
        self._lows.append((time_ns, price))
        while self._highs and self._highs[-1][1] <= price:
            self._highs.pop()
        self._highs.append((time_ns, price))

    def expire(self, now_ns: int) -> None:
        if self.window_ns is None:
            return
        cutoff = now_ns - self.window_ns
        while self.trades and self.trades[0][0] <= cutoff:
            _, price, qty = self.trades.popleft()
            self.volume -= qty
            self.value -= price * qty
            self.count -= 1
        while self._lows and self._lows[0][0] <= cutoff:
            self._lows.popleft()
        while self._highs and self._highs[0][0] <= cutoff:
            self._highs.popleft()

    def low(self, default: int) -> int:
        return self._lows[0][1] if self._lows else default

    def high(self, default: int) -> int:
        return self._highs[0][1] if self._highs else default

    def open(self, default: int) -> int:
        return self.trades[0][1] if self.trades else default

    def vwap(self, default: int) -> int:
        """Volume-weighted average price in ticks, rounded half away from zero."""
        return round_div(self.value, self.volume) if self.volume else default


class Bar:
    """One OHLC candle; ``value`` is the sum of price * qty for its VWAP."""

    __slots__ = (
        "begin_ns",
        "close",
        "high",
        "interval",
        "low",
        "open",
        "trades",
        "updated_ns",
        "value",
        "volume",
    )

    def __init__(self, interval: int, begin_ns: int, price: int) -> None:
        self.interval = interval
        self.begin_ns = begin_ns
        self.open = self.high = self.low = self.close = price
        self.volume = 0
        self.value = 0
        self.trades = 0
        self.updated_ns = begin_ns

    @property
    def end_ns(self) -> int:
        return self.begin_ns + self.interval * 60 * _NS_PER_S

    def add(self, time_ns: int, price: int, qty: int) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += qty
        self.value += price * qty
        self.trades += 1
        self.updated_ns = time_ns

    def vwap(self) -> int:
        return round_div(self.value, self.volume) if self.volume else self.close


class CandleSeries:
    """The running candle of one interval plus the last completed ones."""

    __slots__ = ("current", "history", "interval", "span_ns")

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self.span_ns = interval * 60 * _NS_PER_S
        self.current: Bar | None = None
        self.history: deque[Bar] = deque(maxlen=_CANDLE_HISTORY)

    def add(self, time_ns: int, price: int, qty: int) -> None:
        # Candles are aligned to the epoch, as Kraken's are (minute, hour and day boundaries).
        begin = time_ns - time_ns % self.span_ns
        if self.current is None or self.current.begin_ns != begin:
            if self.current is not None:
                self.history.append(self.current)
            self.current = Bar(self.interval, begin, price)
        self.current.add(time_ns, price, qty)

    def candles(self) -> list[Bar]:
        """Completed candles then the running one, oldest first."""
        out = list(self.history)
        if self.current is not None:
            out.append(self.current)
        return out


class PairMarket:
    """One pair's market: the order-by-order book, its order flow, trades, ticker and candles.

    >>> from kbook.sim.pairs import PRESETS
    >>> m = PairMarket(PRESETS["MATIC/GBP"], seed=1, interval_ns=50_000_000, start_ns=0,
    ...                warmup=200)
    >>> events = m.run(100)
    >>> m.check()
    >>> 0 < len(m.bids) < 10 and 0 < len(m.asks) < 10
    True
    >>> again = PairMarket(PRESETS["MATIC/GBP"], seed=1, interval_ns=50_000_000, start_ns=0,
    ...                    warmup=200).run(100)
    >>> again == events
    True
    """

    def __init__(
        self,
        spec: PairSpec,
        seed: int,
        interval_ns: int,
        start_ns: int,
        warmup: int = 2000,
    ) -> None:
        """Build the initial book and run ``warmup`` unpublished events ending near ``start_ns``.

        :param spec: the pair.
        :param seed: the simulator's seed; the pair's generator is seeded with it and the symbol.
        :param interval_ns: mean simulated time between two events.
        :param start_ns: simulated time (epoch ns) of the first published event, roughly.
        :param warmup: events run before ``start_ns`` so that queues, trades, the ticker and the
            candles have a history.
        """
        if interval_ns < 1:
            raise ValueError("interval_ns must be >= 1")
        self.spec = spec
        self.symbol = spec.symbol
        self.price_precision = spec.price_precision
        self.qty_precision = spec.qty_precision
        self.interval_ns = interval_ns
        # String seeds are hashed with SHA-512 by random.Random: stable across runs and
        # platforms, unlike hash().
        self.rng = random.Random(f"kbook.sim:{seed}:{spec.symbol}")
        self.bids = BookSide(is_bid=True)
        self.asks = BookSide(is_bid=False)
        self.orders: dict[str, Order] = {}
        self.status = "online"
        self.seq = 0
        self.trade_id = 1_000_000 + self.rng.randrange(9_000_000)
        self.recent_trades: deque[Print] = deque(maxlen=_RECENT_TRADES)
        self.day = Rolling(window_ns=_DAY_NS)
        self.today = Rolling(window_ns=None)
        self._today_start = 0
        self.candles = {interval: CandleSeries(interval) for interval in INTERVALS}
        self.size_lots = self._lots_of(spec.order_size)
        self.min_lots = max(1, self._lots_of(spec.qty_min))
        # A thin pair must never show ten levels on a side, whatever the flow does.
        self.level_cap = min(spec.levels + 3, 9) if spec.levels < 10 else 10**9
        mid = self._ticks_of(spec.mid)
        self.last_price = mid
        self.last_qty = self.size_lots
        #: Called as ``(order, fill_lots, trade)`` when the flow fills an account's order.
        self.on_owned_fill: Callable[[Order, int, Print], None] | None = None
        #: Account orders resting here (the exchange keeps the rest of their state).
        self.owned = 0
        self.time_ns = start_ns - warmup * interval_ns
        self._build(mid)
        self.next_time_ns = self.time_ns + self._step_ns()
        for _ in range(warmup):
            self.step()
        self.seq = 0

    # -- conversions -----------------------------------------------------------------------------

    def _ticks_of(self, text: str) -> int:
        return self._scaled(text, self.price_precision)

    def _lots_of(self, text: str) -> int:
        return self._scaled(text, self.qty_precision)

    @staticmethod
    def _scaled(text: str, dp: int) -> int:
        whole, _, frac = text.partition(".")
        if len(frac) > dp:
            raise ValueError(f"{text} has more than {dp} decimals")
        return int(whole or "0") * pow10(dp) + int((frac + "0" * dp)[:dp] or "0")

    # -- queries --------------------------------------------------------------------------------

    def side(self, name: Side) -> BookSide:
        return self.bids if name == "bid" else self.asks

    def bbo(self) -> tuple[int, int, int, int]:
        """``(bid price, bid total, ask price, ask total)``; 0 for an empty side."""
        b, a = self.bids.best(), self.asks.best()
        return (
            b.price if b else 0,
            b.total if b else 0,
            a.price if a else 0,
            a.total if a else 0,
        )

    def run(self, n: int) -> list[MarketEvent]:
        """Run ``n`` events and return them (tests and pre-generation)."""
        return [self.step() for _ in range(n)]

    # -- the event loop -------------------------------------------------------------------------

    def _step_ns(self) -> int:
        # Uniform on (0, 2 * interval]: integer-only, so the clock is identical on every platform.
        return max(1, self.interval_ns * self.rng.randrange(1, 2001) // 1000)

    def step(self) -> MarketEvent:
        """Run the next event at :attr:`next_time_ns` and return what it did.

        Complexity: O(k log n) for k orders touched.
        """
        self.time_ns = self.next_time_ns
        self.next_time_ns = self.time_ns + self._step_ns()
        self.seq += 1
        event = MarketEvent(self.seq, self.time_ns, "idle")
        before = self.bbo()
        action = self._choose()
        side = self.bids if self.rng.getrandbits(1) else self.asks
        if action == "add_near":
            self._add_near(event, side)
        elif action == "add_deep":
            self._add_deep(event, side)
        elif action == "cancel":
            self._cancel(event, side)
        elif action == "amend":
            self._amend(event, side)
        elif action == "take":
            self._take(event, side)
        if event.changes:
            event.action = action
        event.bbo_changed = self.bbo() != before
        for trade in event.trades:
            self.record_trade(trade)
        return event

    # -- changes made by the exchange -----------------------------------------------------------

    def external_event(self, time_ns: int) -> tuple[MarketEvent, tuple[int, int, int, int]]:
        """Open an event for book changes the exchange makes at ``time_ns`` (account orders).

        The clock moves to ``time_ns`` (never backwards, never past the next flow event) and no
        random number is drawn. Returns the event and the best bid and offer before it, for
        :meth:`finish_external`.
        """
        self.time_ns = max(self.time_ns, min(time_ns, self.next_time_ns - 1))
        self.seq += 1
        return MarketEvent(self.seq, self.time_ns, "account"), self.bbo()

    def finish_external(self, event: MarketEvent, before: tuple[int, int, int, int]) -> None:
        """Close an event from :meth:`external_event`: BBO flag and trade statistics."""
        event.bbo_changed = self.bbo() != before
        for trade in event.trades:
            self.record_trade(trade)

    def rest(self, order: Order, event: MarketEvent | None) -> None:
        """Append ``order`` to the back of its level (reported in ``event`` as an ``add``)."""
        self._rest(order, event)

    def unlink(self, order: Order) -> None:
        """Take ``order`` out of the book; the caller reports the change."""
        self._unlink(order)

    def _choose(self) -> str:
        if self.status == "maintenance":
            return "idle"
        if self.status == "cancel_only":
            return "cancel" if self.orders else "idle"
        target = self.spec.levels
        shortest = min(len(self.bids), len(self.asks))
        longest = max(len(self.bids), len(self.asks))
        weights = {"add_near": 30, "add_deep": 16, "cancel": 30, "amend": 8, "take": 16}
        if shortest < max(2, target * 9 // 10):
            weights["add_deep"] += 40
        if longest > target + max(1, target // 10):
            weights["cancel"] += 30
        best_bid, best_ask = self.bids.best(), self.asks.best()
        if best_bid is not None and best_ask is not None:
            spread = best_ask.price - best_bid.price
            if spread > self.spec.max_spread:
                # Liquidity providers rush into a wide spread; without this the spread is a
                # random walk and spends long stretches absurdly wide.
                weights["add_near"] += 150
            elif spread > self.spec.max_spread // 3:
                weights["add_near"] += 30
        if self.status == "post_only":
            weights["take"] = 0  # no matching while post-only
        roll = self.rng.randrange(sum(weights.values()))
        for name, weight in weights.items():
            if roll < weight:
                return name
            roll -= weight
        raise AssertionError("unreachable")

    # -- order flow -----------------------------------------------------------------------------

    def _new_id(self) -> str:
        while True:
            bits = self.rng.getrandbits(85)
            chars = []
            for _ in range(17):
                bits, digit = divmod(bits, 32)
                chars.append(_ID_ALPHABET[digit])
            text = "".join(chars)
            order_id = f"O{text[:5]}-{text[5:10]}-{text[10:16]}"
            if order_id not in self.orders:
                return order_id

    def _size(self) -> int:
        base, rng = self.size_lots, self.rng
        roll = rng.randrange(100)
        if roll < 60:
            lots = base * rng.randrange(5, 100) // 100
        elif roll < 92:
            lots = base * rng.randrange(100, 300) // 100
        else:
            lots = base * rng.randrange(300, 2000) // 100
        lots += rng.randrange(max(1, base // 50))
        if rng.randrange(10) < 3:
            # Round sizes are common, and their trailing zeros are exactly what v2 number text
            # drops and clients must restore from the pair's precision.
            digits = len(str(lots))
            if digits > 2:
                unit = pow10(digits - 2)
                lots = lots // unit * unit
        return max(lots, self.min_lots)

    def _gap(self) -> int:
        """A distance in ticks, mostly about ``level_gap``, occasionally much more."""
        gap = self.spec.level_gap
        return (
            1
            + self.rng.randrange(2 * gap)
            + (self.rng.randrange(8 * gap) if not self.rng.randrange(8) else 0)
        )

    def _build(self, mid: int) -> None:
        spread = 1 + self.rng.randrange(min(3, self.spec.max_spread))
        best_bid = max(1, mid - spread // 2)
        for side, best in ((self.bids, best_bid), (self.asks, best_bid + spread)):
            price = best
            for rank in range(self.spec.levels):
                if price < 1:
                    break
                for _ in range(1 + self.rng.randrange(4 if rank < 20 else 2)):
                    placed = self.time_ns - self.rng.randrange(3600 * _NS_PER_S)
                    self._rest(Order(self._new_id(), side.name, price, self._size(), placed), None)
                price = side.worse(price, self._gap())

    def _rest(self, order: Order, event: MarketEvent | None) -> None:
        """Append ``order`` to the back of its level."""
        level = self.side(order.side).get_or_create(order.price)
        level.orders[order.order_id] = order
        level.total += order.qty
        level.updated_ns = max(level.updated_ns, order.time_ns)
        self.orders[order.order_id] = order
        if order.owner is not None:
            self.owned += 1
        if event is not None:
            event.changes.append(
                Change(order.side, "add", order.order_id, order.price, order.qty, event.time_ns)
            )

    def _unlink(self, order: Order) -> None:
        side = self.side(order.side)
        level = side.level(order.price)
        assert level is not None
        del level.orders[order.order_id]
        level.total -= order.qty
        level.updated_ns = self.time_ns
        if not level.orders:
            side.drop(order.price)
        del self.orders[order.order_id]
        if order.owner is not None:
            self.owned -= 1

    def _can_place(self, side: BookSide, price: int) -> bool:
        """A passive order may rest at ``price``: positive, not crossing, within the level cap."""
        if price < 1:
            return False
        other = self.asks if side.is_bid else self.bids
        best_other = other.best()
        if best_other is not None and not side.better(best_other.price, price):
            return False
        return side.level(price) is not None or len(side) < self.level_cap

    def _place(self, event: MarketEvent, side: BookSide, price: int) -> None:
        if self._can_place(side, price):
            self._rest(Order(self._new_id(), side.name, price, self._size(), event.time_ns), event)
        elif len(side):
            # Join an existing level instead: thin pairs must stay thin, and crossing prices
            # are what `take` is for.
            level = side.level_at(self.rng.randrange(min(len(side), 5)))
            self._rest(
                Order(self._new_id(), side.name, level.price, self._size(), event.time_ns), event
            )

    def _anchor(self, side: BookSide) -> int:
        """A reference price for an empty side: next to the other side, else the last trade."""
        other = self.asks if side.is_bid else self.bids
        best_other = other.best()
        if best_other is not None:
            return side.worse(best_other.price, 1 + self.rng.randrange(self.spec.level_gap + 1))
        return self.last_price

    def _add_near(self, event: MarketEvent, side: BookSide) -> None:
        best = side.best()
        if best is None:
            self._place(event, side, self._anchor(side))
            return
        other = (self.asks if side.is_bid else self.bids).best()
        spread = abs(other.price - best.price) if other is not None else 0
        if spread > 1 and (spread > self.spec.max_spread or self.rng.randrange(4) == 0):
            # Improve the touch: strictly inside the spread.
            price = side.worse(best.price, -(1 + self.rng.randrange(spread - 1)))
        else:
            price = side.worse(best.price, self.rng.randrange(3 * self.spec.level_gap))
        self._place(event, side, price)

    def _add_deep(self, event: MarketEvent, side: BookSide) -> None:
        count = len(side)
        if count == 0:
            self._place(event, side, self._anchor(side))
        elif self.rng.randrange(self.spec.levels) < count:
            # Anywhere in the book: join a level or open one just behind it.
            level = side.level_at(self.rng.randrange(count))
            offset = self.rng.randrange(2 * self.spec.level_gap) if self.rng.getrandbits(1) else 0
            self._place(event, side, side.worse(level.price, offset))
        else:
            worst = side.worst()
            assert worst is not None
            self._place(event, side, side.worse(worst.price, self._gap()))

    def _pick_level(self, side: BookSide) -> Level:
        count = len(side)
        target = self.spec.levels
        roll = self.rng.randrange(4)
        if count > target and roll == 0:
            rank = target * 9 // 10 + self.rng.randrange(count - target * 9 // 10)
        elif roll <= 1:
            rank = min(count - 1, self._geometric(6))
        else:
            rank = self.rng.randrange(count)
        return side.level_at(rank)

    def _geometric(self, limit: int) -> int:
        n = 0
        while n < limit and self.rng.randrange(3):
            n += 1
        return n

    def _pick_order(self, side: BookSide) -> Order | None:
        if not len(side):
            return None
        level = self._pick_level(side)
        index = self.rng.randrange(len(level.orders))
        picked: Order | None = None
        for i, order in enumerate(level.orders.values()):
            if i == index:
                picked = order
                break
        if picked is not None and picked.owner is not None:
            # Participants cancel and amend only their own orders: take the nearest flow order
            # of the level instead, with no extra draw (the flow's random sequence must not
            # depend on account activity), or nothing if the level is all account orders.
            nearest: Order | None = None
            distance = len(level.orders)
            for i, order in enumerate(level.orders.values()):
                if order.owner is None and abs(i - index) < distance:
                    nearest, distance = order, abs(i - index)
            return nearest
        return picked

    def _cancel(self, event: MarketEvent, side: BookSide) -> None:
        if len(side) <= 2 and self.status != "cancel_only":
            self._add_deep(event, side)  # keep both sides alive
            return
        order = self._pick_order(side)
        if order is None:
            return
        self._unlink(order)
        event.changes.append(
            Change(side.name, "delete", order.order_id, order.price, order.qty, event.time_ns)
        )

    def _amend(self, event: MarketEvent, side: BookSide) -> None:
        order = self._pick_order(side)
        if order is None:
            self._add_near(event, side)
            return
        if self.rng.getrandbits(1) and order.qty > 1:
            # A smaller quantity keeps the order's place in the queue.
            new_qty = max(1, order.qty * self.rng.randrange(20, 95) // 100)
            level = side.level(order.price)
            assert level is not None
            level.total -= order.qty - new_qty
            level.updated_ns = event.time_ns
            order.qty = new_qty
            order.time_ns = event.time_ns
            event.changes.append(
                Change(side.name, "modify", order.order_id, order.price, new_qty, event.time_ns)
            )
            return
        delta = 1 + self.rng.randrange(2 * self.spec.level_gap)
        new_price = side.worse(order.price, delta if self.rng.getrandbits(1) else -delta)
        if new_price == order.price or not self._can_place(side, new_price):
            return
        # A new price is a new queue position: the order goes to the back of the new level.
        old_price = order.price
        self._unlink(order)
        order.price = new_price
        order.time_ns = event.time_ns
        self._rest(order, None)
        event.changes.append(
            Change(
                side.name, "modify", order.order_id, new_price, order.qty, event.time_ns, old_price
            )
        )

    def _take(self, event: MarketEvent, taker: BookSide) -> None:
        """A marketable order from ``taker``'s side, filling the other side front to back."""
        makers = self.asks if taker.is_bid else self.bids
        if len(makers) < 2:
            self._add_near(event, makers)
            return
        best = makers.level_at(0)
        limit_order = self.rng.randrange(5) < 2
        qty = max(self.min_lots, best.total * self.rng.randrange(30, 260) // 100)
        # Never sweep a whole side (a real book refills long before that): the last level stays.
        available = 0
        for level in makers:
            if available >= qty or level is makers.worst():
                break
            available += level.total
        qty = min(qty, available)
        limit = makers.worse(best.price, self.rng.randrange(3 * self.spec.level_gap + 1))
        remaining = qty
        side_name: Literal["buy", "sell"] = "buy" if taker.is_bid else "sell"
        ord_type: Literal["market", "limit"] = "limit" if limit_order else "market"
        while remaining and len(makers) > 1:
            level = makers.level_at(0)
            if limit_order and makers.better(limit, level.price):
                break
            for order in list(level.orders.values()):
                fill = min(remaining, order.qty)
                remaining -= fill
                self.trade_id += 1
                trade = Print(self.trade_id, level.price, fill, side_name, ord_type, event.time_ns)
                event.trades.append(trade)
                if order.owner is not None and self.on_owned_fill is not None:
                    self.on_owned_fill(order, fill, trade)
                if fill == order.qty:
                    self.unlink(order)
                    event.changes.append(
                        Change(
                            makers.name,
                            "delete",
                            order.order_id,
                            order.price,
                            order.qty,
                            event.time_ns,
                        )
                    )
                else:
                    order.qty -= fill
                    level.total -= fill
                    level.updated_ns = event.time_ns
                    event.changes.append(
                        Change(
                            makers.name,
                            "modify",
                            order.order_id,
                            order.price,
                            order.qty,
                            event.time_ns,
                        )
                    )
                if not remaining:
                    break
        if limit_order and remaining and self._can_place(taker, limit):
            self._rest(Order(self._new_id(), taker.name, limit, remaining, event.time_ns), event)

    # -- statistics -----------------------------------------------------------------------------

    def record_trade(self, trade: Print) -> None:
        """Add ``trade`` to the recent trades, the last price, the statistics and the candles."""
        self.recent_trades.append(trade)
        self.last_price, self.last_qty = trade.price, trade.qty
        day_start = trade.time_ns - trade.time_ns % _DAY_NS
        if day_start != self._today_start:
            self._today_start = day_start
            self.today.reset()
        self.today.add(trade.time_ns, trade.price, trade.qty)
        self.day.add(trade.time_ns, trade.price, trade.qty)
        for series in self.candles.values():
            series.add(trade.time_ns, trade.price, trade.qty)

    def refresh_stats(self) -> None:
        """Expire trades older than 24 h (and yesterday's) as of the current clock."""
        self.day.expire(self.time_ns)
        if self.time_ns - self.time_ns % _DAY_NS != self._today_start:
            self._today_start = self.time_ns - self.time_ns % _DAY_NS
            self.today.reset()

    # -- invariants ---------------------------------------------------------------------------

    def check(self) -> None:
        """Assert every structural invariant of the book (tests call this after events)."""
        count = 0
        for side in (self.bids, self.asks):
            previous: int | None = None
            for level in side:
                assert level.orders, "empty level"
                assert level.total == sum(o.qty for o in level.orders.values())
                if previous is not None:
                    assert side.better(previous, level.price), "levels out of order"
                previous = level.price
                for order in level.orders.values():
                    assert order.qty > 0 and order.price == level.price
                    assert order.side == side.name
                    assert self.orders[order.order_id] is order
                    count += 1
            # The cap binds the flow; an account may open levels of its own beyond it.
            assert self.owned or len(side) <= self.level_cap
        assert count == len(self.orders)
        best_bid, best_ask = self.bids.best(), self.asks.best()
        if best_bid is not None and best_ask is not None:
            assert best_bid.price < best_ask.price, "crossed book"
