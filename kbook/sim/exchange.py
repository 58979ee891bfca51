"""The simulated exchange: accounts' orders, price-time matching against the simulated book, fills,
balances, and the private streams that report them.

:class:`Exchange` sits beside the :class:`~kbook.sim.venue.Venue`. Account orders live in the
same order-by-order books as the seeded flow (a resting account order is an
:class:`~kbook.sim.market.Order` whose ``owner`` is its :class:`ExOrder`), so they appear on the
L2 and L3 feeds under their order id, and their trades on the public ``trade`` channel:

* a marketable limit or market order takes resting liquidity best price first, FIFO within a
  level (flow and account orders alike), each fill at the resting order's price;
* a resting account order joins the back of its level and is filled by the flow's marketable
  orders when they reach it (:attr:`PairMarket.on_owned_fill`);
* ``post_only``: an order that would take on arrival is accepted and then cancelled with reason
  ``Post only order`` (Kraken documents add_order's post_only as "cancel if it would take
  liquidity on arrival"); an *amend* that would take with ``post_only`` is refused with
  ``EOrder:Post only order`` ("reject the price change if it can't post passively");
* time in force ``gtc`` rests, ``ioc`` cancels the unfilled remainder, ``fok`` fills entirely
  or is cancelled without a fill, ``gtd`` rests until ``expire_time`` and then ``expired``;
  market orders never rest;
* self-trade prevention between an account's own orders: ``cancel_newest`` (default) cancels
  the incoming order's remainder, ``cancel_oldest`` the resting order, ``cancel_both`` both;
* amends keep the queue position when the quantity shrinks, and lose it for a larger quantity
  or a new price; an amended price that crosses takes liquidity like a new order;
* edits cancel the original (reason ``Order replaced``) and enter a new order for the new
  quantity minus what was already executed; executions stay with the original.

Money: balances are integer ledger units (:class:`~kbook.sim.accounts.Ledger`). A fill of
``qty`` at ``price`` costs ``qty * price`` rounded half away from zero to the quote asset's
precision; the fee is a flat rate of that cost (maker or taker, the simulator's
``maker_fee``/``taker_fee``), rounded the same way and always charged in the quote asset whatever
``fee_preference`` says. A buy moves ``+qty`` base and ``-(cost + fee)`` quote, a sell ``-qty``
base and ``+(cost - fee)`` quote; each leg is one ledger entry with the fill's ``exec_id`` as
``ref_id``. Funds are checked against the available balance, net of what open orders reserve
(a buy: remaining quantity times limit price plus the taker fee, rounded up; a sell: the
remaining quantity); a market buy is checked against the cost of walking the book.

Trading rate counter (section 5.2 of the spec): adds, amends and edits are refused with
``EOrder:Rate limit exceeded`` when their cost would take the pair's counter over the tier's
ceiling (and are then not charged); cancels are always accepted and always charged.

Private events are handed to :class:`PrivateSink` objects (the protocol modules render them for
``executions``/``balances``, ``ownTrades``/``openOrders``) in the order they happen. While a
request is being answered they are :meth:`held <Exchange.hold>` so the request's own answer goes
out before the execution reports it causes.

Determinism: the exchange draws its ids from its own seeded generator, never from a market's, so
without account activity the public flow is byte-identical to a simulator with no exchange; with
activity the flow reacts to the changed book, but its random sequence is still the seed's.

What it is not: margin, positions, triggered (stop / take-profit / trailing) orders, icebergs,
conditional (OTO) close orders or settle-position; those order types are refused with
``EGeneral:Invalid arguments:Unsupported order type in simulator``. Nor is it a wire format:
see :mod:`kbook.sim.private_v2` and :mod:`kbook.sim.private_v1`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import random
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Literal

from kbook.sim.accounts import (
    TIERS,
    Ledger,
    TokenBook,
    amend_cost,
    cancel_cost,
    edit_cost,
    new_credentials,
)
from kbook.sim.market import Change, MarketEvent, Order, PairMarket, Print
from kbook.sim.pairs import PairSpec
from kbook.sim.records import (
    Account,
    ExOrder,
    LedgerEntry,
    OrderSide,
    OrderSpec,
    PrivateSink,
    Reject,
    TradeRecord,
)
from kbook.sim.venue import Venue
from kbook.sim.wire import pow10, round_div, units_of

__all__ = ["Exchange"]

# -- Kraken's error strings (trading.md section 5.1) ------------------------------------------
E_ARGS = "EGeneral:Invalid arguments"
E_FUNDS = "EOrder:Insufficient funds"
E_UNKNOWN = "EOrder:Unknown order"
E_RATE = "EOrder:Rate limit exceeded"
E_MINIMUM = "EOrder:Order minimum not met"
E_COST_MINIMUM = "EOrder:Cost minimum not met"
E_POST_ONLY = "EOrder:Post only order"
E_ORDERS_LIMIT = "EOrder:Orders limit exceeded"
E_UNAVAILABLE = "EService:Unavailable"
E_CANCEL_ONLY = "EService:Market in cancel_only mode"
E_POST_ONLY_MODE = "EService:Market in post_only mode"
E_DEADLINE = "EService:Deadline elapsed"
E_PAIR = "EQuery:Unknown asset pair"
E_UNSUPPORTED = "EGeneral:Invalid arguments:Unsupported order type in simulator"

# -- reasons of execution reports (the simulator's texts, in Kraken's style) -------------------
R_USER = "User requested"
R_POST_ONLY = "Post only order"
R_LIQUIDITY = "Insufficient liquidity"
R_SELF_TRADE = "Self trade prevention"
R_CANCEL_AFTER = "Cancel all orders after timeout"
R_REPLACED = "Order replaced"
R_EXPIRED = "Order expired"

#: Order types Kraken has and the simulator refuses (documented above).
UNSUPPORTED_TYPES = (
    "iceberg",
    "stop-loss",
    "stop-loss-limit",
    "take-profit",
    "take-profit-limit",
    "trailing-stop",
    "trailing-stop-limit",
    "settle-position",
)
STP_TYPES = ("cancel_newest", "cancel_oldest", "cancel_both")
TIME_IN_FORCE = ("GTC", "GTD", "IOC", "FOK")
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_EXPIRE_MAX_S = 31 * 86_400


def _fraction(rate: Decimal) -> tuple[int, int]:
    numerator, denominator = rate.as_integer_ratio()
    return numerator, denominator


class Exchange:
    """Accounts, their orders and the matching engine of one simulator (``sim.exchange``).

    :param venue: the markets account orders trade in (and are published through).
    :param seed: seeds the order, execution and ledger ids.
    :param maker_fee: fee rate of a fill that rested (e.g. ``Decimal("0.0016")``).
    :param taker_fee: fee rate of a fill that took liquidity.
    """

    def __init__(
        self,
        venue: Venue,
        seed: int,
        maker_fee: Decimal = Decimal("0.0016"),
        taker_fee: Decimal = Decimal("0.0026"),
    ) -> None:
        if not (0 <= maker_fee < 1 and 0 <= taker_fee < 1):
            raise ValueError("fees must be rates within [0, 1)")
        self.venue = venue
        self.ledger = Ledger(venue.specs)
        self.tokens = TokenBook()
        self.accounts: dict[str, Account] = {}
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self._maker = _fraction(maker_fee)
        self._taker = _fraction(taker_fee)
        # Its own generator: account activity must never draw from a market's.
        self._rng = random.Random(f"kbook.sim:{seed}:exchange")
        self._ids: set[str] = set()
        self._held: list[tuple[Any, bytes]] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        for market in venue.markets.values():
            market.on_owned_fill = self._flow_fill

    # -- accounts --------------------------------------------------------------------------------

    def add_account(
        self,
        key: str | None = None,
        secret: str | None = None,
        balances: dict[str, Decimal | int | str] | None = None,
        tier: str = "intermediate",
        ws_permission: bool = True,
    ) -> Account:
        """Open an account (random key and secret unless given) with starting balances.

        :raises ValueError: for a duplicate key, an unknown tier, a secret that is not base64 or
            a balance finer than its asset's ledger precision.
        """
        if tier not in TIERS:
            raise ValueError(f"tier must be one of {tuple(TIERS)}, got {tier!r}")
        made_key, made_secret = new_credentials()
        key = key or made_key
        secret = secret or made_secret
        try:
            base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the secret must be base64") from None
        if key in self.accounts:
            raise ValueError("an account with this key exists already")
        units = {
            asset: self.ledger.units(asset, amount) for asset, amount in (balances or {}).items()
        }
        account = Account(key, secret, TIERS[tier], units, ws_permission)
        self.accounts[key] = account
        return account

    def deposit(self, account: Account, asset: str, amount: Decimal | int | str) -> LedgerEntry:
        """Credit ``amount`` of ``asset`` (a ``deposit`` ledger entry on the balances stream)."""
        units = self.ledger.units(asset, amount)
        account.balances[asset] = account.balances.get(asset, 0) + units
        entry = LedgerEntry(
            self._new_id("L"),
            self._new_id("A"),
            time.time_ns(),
            "deposit",
            asset,
            units,
            0,
            account.balances[asset],
            self.ledger.dp(asset),
        )
        for sink in list(account.sinks):
            sink.ledger(entry)
        return entry

    def available(self, account: Account, asset: str) -> int:
        """Balance of ``asset`` not reserved by open orders, in ledger units."""
        reserved = sum(self._hold(order, asset) for order in account.orders.values())
        return account.balances.get(asset, 0) - reserved

    def balance_decimal(self, account: Account, asset: str) -> Decimal:
        dp = self.ledger.dp(asset)
        return Decimal(f"{account.balances.get(asset, 0)}E-{dp}")

    # -- output ----------------------------------------------------------------------------------

    def hold(self) -> None:
        """Queue private messages until :meth:`release` (while a request is answered)."""
        self._held = []

    def release(self) -> None:
        """Send what :meth:`hold` queued, in order."""
        held, self._held = self._held, None
        for conn, data in held or ():
            conn.send_control(data)

    def send(self, conn: Any, data: bytes) -> None:
        if self._held is not None:
            self._held.append((conn, data))
        else:
            conn.send_control(data)

    def attach(self, sink: PrivateSink) -> None:
        sink.account.sinks.append(sink)

    def detach(self, sink: PrivateSink) -> None:
        with contextlib.suppress(ValueError):
            sink.account.sinks.remove(sink)

    def detach_connection(self, conn: Any) -> None:
        """Forget every private subscription of a closed connection."""
        for account in self.accounts.values():
            account.sinks = [s for s in account.sinks if s.conn is not conn]

    def stop(self) -> None:
        """Cancel every timer (order expiry, effective times, dead man's switches)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    # -- ids, clocks, money ------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        while True:
            bits = self._rng.getrandbits(85)
            chars = []
            for _ in range(17):
                bits, digit = divmod(bits, 32)
                chars.append(_ID_ALPHABET[digit])
            text = "".join(chars)
            made = f"{prefix}{text[:5]}-{text[5:10]}-{text[10:16]}"
            if made not in self._ids and not any(
                made in m.orders for m in self.venue.markets.values()
            ):
                self._ids.add(made)
                return made

    def _now(self, market: PairMarket) -> int:
        """The simulated time of an account event in ``market`` (see Venue.now_ns)."""
        return max(market.time_ns, min(self.venue.now_ns(market), market.next_time_ns - 1))

    def _later(self, when_ns: int, callback: Any, *args: Any) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()
        delay = max(0.0, (when_ns - time.time_ns()) / 1e9)
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            callback(*args)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)
        return handle

    def _quote_units(self, value: int, spec: PairSpec, ceil: bool = False) -> int:
        """``value`` (ticks times lots) in the quote asset's ledger units."""
        shift = spec.price_precision + spec.qty_precision - self.ledger.dp(spec.quote)
        if shift <= 0:
            return value * pow10(-shift)
        if ceil:
            return -(-value // pow10(shift))
        return round_div(value, pow10(shift))

    def _fee(self, cost: int, rate: tuple[int, int], ceil: bool = False) -> int:
        if ceil:
            return -(-cost * rate[0] // rate[1])
        return round_div(cost * rate[0], rate[1])

    def _base_units(self, lots: int, spec: PairSpec) -> int:
        return lots * pow10(self.ledger.dp(spec.base) - spec.qty_precision)

    def _hold(self, order: ExOrder, asset: str) -> int:
        spec = order.spec
        if order.side == "sell":
            return self._base_units(order.remaining, spec) if asset == spec.base else 0
        if asset != spec.quote:
            return 0
        if order.price is None:
            return order.hold_quote
        cost = self._quote_units(order.remaining * order.price, spec, ceil=True)
        return cost + self._fee(cost, self._taker, ceil=True)

    # -- lookups -----------------------------------------------------------------------------------

    def market(self, symbol: Any) -> PairMarket:
        """The market of a v2 symbol or a v1 pair name.

        :raises Reject: ``EQuery:Unknown asset pair``.
        """
        if isinstance(symbol, str):
            found = self.venue.markets.get(symbol) or self.venue.by_v1.get(symbol)
            if found is not None:
                return found
        raise Reject(E_PAIR)

    def find(
        self,
        account: Account,
        *,
        order_id: str | None = None,
        cl_ord_id: str | None = None,
        userref: int | None = None,
    ) -> list[ExOrder]:
        """Open orders of ``account`` matching one identifier (a userref may match several)."""
        if order_id is not None:
            found = account.orders.get(order_id)
            return [found] if found is not None else []
        if cl_ord_id is not None:
            return [o for o in account.orders.values() if o.cl_ord_id == cl_ord_id]
        if userref is not None:
            return [o for o in account.orders.values() if o.userref == userref]
        return []

    # -- checks ------------------------------------------------------------------------------------

    def _status_allows_new(self, spec: OrderSpec) -> None:
        status = self.venue.status
        if status == "maintenance":
            raise Reject(E_UNAVAILABLE)
        if status == "cancel_only":
            raise Reject(E_CANCEL_ONLY)
        if status == "post_only" and not (spec.order_type == "limit" and spec.post_only):
            raise Reject(E_POST_ONLY_MODE)

    def admit(self, account: Account, symbol: str, cost: float) -> None:
        """Charge the pair's rate counter, or refuse with ``EOrder:Rate limit exceeded``."""
        if not account.counter(symbol).admit(cost):
            raise Reject(E_RATE)

    def check(self, spec: OrderSpec) -> PairMarket:
        """Validate a new order against the pair, the engine state and Kraken's rules.

        :raises Reject: with the first rule broken.
        """
        market = self.market(spec.symbol)
        pair = market.spec
        if spec.order_type in UNSUPPORTED_TYPES:
            raise Reject(E_UNSUPPORTED)
        if spec.order_type not in ("limit", "market"):
            raise Reject(f"{E_ARGS}:order_type")
        if spec.side not in ("buy", "sell"):
            raise Reject(f"{E_ARGS}:side")
        if spec.tif not in TIME_IN_FORCE:
            raise Reject(f"{E_ARGS}:time_in_force")
        if spec.stp_type not in STP_TYPES:
            raise Reject(f"{E_ARGS}:stp_type")
        if spec.order_type == "limit":
            if spec.price is None:
                raise Reject(f"{E_ARGS}:limit_price")
            if spec.cash is not None:
                raise Reject(f"{E_ARGS}:cash_order_qty")
        else:
            if spec.price is not None:
                raise Reject(f"{E_ARGS}:limit_price")
            if spec.post_only:
                raise Reject(f"{E_ARGS}:post_only")
            if spec.tif in ("GTD", "FOK"):
                raise Reject(f"{E_ARGS}:time_in_force")
            if spec.cash is not None and spec.side != "buy":
                raise Reject(f"{E_ARGS}:cash_order_qty")
        if spec.price is not None and spec.price <= 0:
            raise Reject(f"{E_ARGS}:limit_price")
        if spec.qty is None and spec.cash is None:
            raise Reject(f"{E_ARGS}:order_qty")
        if spec.cash is not None and spec.cash <= 0:
            raise Reject(f"{E_ARGS}:cash_order_qty")
        if spec.qty is not None:
            if spec.qty <= 0:
                raise Reject(f"{E_ARGS}:order_qty")
            if spec.qty < market.min_lots:
                raise Reject(E_MINIMUM)
            if spec.price is not None:
                cost_min = units_of(
                    Decimal(pair.cost_min), pair.price_precision + pair.qty_precision
                )
                if spec.qty * spec.price < cost_min:
                    raise Reject(E_COST_MINIMUM)
        now = time.time_ns()
        if spec.tif == "GTD":
            if spec.expire_ns is None or spec.expire_ns <= now:
                raise Reject(f"{E_ARGS}:expire_time")
            if spec.expire_ns > now + _EXPIRE_MAX_S * 10**9:
                raise Reject(f"{E_ARGS}:expire_time")
        self._status_allows_new(spec)
        return market

    # -- placing orders ----------------------------------------------------------------------------

    def place(self, account: Account, spec: OrderSpec, validate: bool = False) -> ExOrder | None:
        """Charge, check, create and submit one order (None when only validating).

        :raises Reject: when refused; nothing is then created.
        """
        market = self.market(spec.symbol)
        self.admit(account, market.symbol, 1.0)
        self.check(spec)
        if validate:
            return None
        order = self._create(account, spec)
        self._submit(order)
        return order

    def place_batch(
        self, account: Account, specs: list[OrderSpec], validate: bool = False
    ) -> list[ExOrder | Reject | None]:
        """``batch_add``: charge n/2, validate every order first (one bad order refuses the
        batch), then create and submit them one by one; an order refused at that stage (funds,
        open-order limit) is reported in its slot and the others go on.

        :raises Reject: for the whole batch.
        """
        symbols = {spec.symbol for spec in specs}
        if len(symbols) != 1:
            raise Reject(f"{E_ARGS}:symbol")
        market = self.market(specs[0].symbol)
        self.admit(account, market.symbol, len(specs) / 2)
        for spec in specs:
            self.check(spec)
        if validate:
            return [None for _ in specs]
        results: list[ExOrder | Reject | None] = []
        for spec in specs:
            try:
                order = self._create(account, spec)
            except Reject as refusal:
                results.append(refusal)
                continue
            self._submit(order)
            results.append(order)
        return results

    def _create(self, account: Account, spec: OrderSpec) -> ExOrder:
        market = self.market(spec.symbol)
        pair = market.spec
        open_here = sum(1 for o in account.orders.values() if o.market is market)
        if open_here >= account.tier.max_open_orders:
            raise Reject(E_ORDERS_LIMIT)
        side: OrderSide = "buy" if spec.side == "buy" else "sell"
        qty = spec.qty
        hold_quote = 0
        if spec.cash is not None:
            qty, _ = self._walk(market, side, account, None, None, spec.cash)
            if qty < market.min_lots:
                raise Reject(E_MINIMUM)
        assert qty is not None
        if side == "sell":
            if self._base_units(qty, pair) > self.available(account, pair.base):
                raise Reject(E_FUNDS)
        else:
            if spec.price is None:
                _, value = self._walk(market, side, account, None, qty, None)
                cost = self._quote_units(value, pair, ceil=True)
                hold_quote = cost + self._fee(cost, self._taker, ceil=True)
                need = hold_quote
            else:
                cost = self._quote_units(qty * spec.price, pair, ceil=True)
                need = cost + self._fee(cost, self._taker, ceil=True)
            if need > self.available(account, pair.quote):
                raise Reject(E_FUNDS)
        order = ExOrder(
            self._new_id("O"),
            account,
            market,
            pair,
            side,
            spec.order_type,
            qty,
            spec.price,
            spec.tif,
            spec.post_only,
            spec.reduce_only,
            spec.cl_ord_id,
            spec.userref,
            spec.stp_type,
            spec.expire_ns,
            spec.effective_ns,
            spec.cash,
            self._now(market),
            time.monotonic(),
            hold_quote=hold_quote,
        )
        account.orders[order.order_id] = order
        return order

    def _submit(self, order: ExOrder) -> None:
        self._order_event("pending_new", order, self._now(order.market))
        if order.expire_ns is not None:
            order.timers.append(self._later(order.expire_ns, self._expire, order))
        if order.effective_ns is not None and order.effective_ns > time.time_ns():
            order.timers.append(self._later(order.effective_ns, self._enter, order))
            return
        self._enter(order)

    @contextlib.contextmanager
    def _event(self, market: PairMarket) -> Iterator[MarketEvent]:
        """Book changes made inside the block form one market event, published at its end."""
        event, before = market.external_event(self.venue.now_ns(market))
        try:
            yield event
        finally:
            market.finish_external(event, before)
            if event.changes or event.trades:
                self.venue.publish(market, event)

    def _crosses(self, order: ExOrder, price: int | None = None) -> bool:
        makers = order.market.asks if order.side == "buy" else order.market.bids
        best = makers.best()
        if best is None:
            return False
        limit = order.price if price is None else price
        return limit is None or self._acceptable(order.side, limit, best.price)

    @staticmethod
    def _acceptable(side: OrderSide, limit: int | None, price: int) -> bool:
        if limit is None:
            return True
        return price <= limit if side == "buy" else price >= limit

    def _walk(
        self,
        market: PairMarket,
        side: OrderSide,
        account: Account,
        limit: int | None,
        max_lots: int | None,
        budget: int | None,
    ) -> tuple[int, int]:
        """Lots and value a taker could fill now without trading with itself (dry run).

        ``budget`` (quote ledger units) bounds the cost instead of ``max_lots`` for cash orders.
        """
        makers = market.asks if side == "buy" else market.bids
        pair = market.spec
        shift = pair.price_precision + pair.qty_precision - self.ledger.dp(pair.quote)
        budget_value = (
            None if budget is None else budget * pow10(max(shift, 0)) // pow10(max(-shift, 0))
        )
        lots = value = 0
        for level in makers:
            if not self._acceptable(side, limit, level.price):
                break
            for resting in level.orders.values():
                if resting.owner is not None and resting.owner.account is account:
                    continue
                take = resting.qty
                if max_lots is not None:
                    take = min(take, max_lots - lots)
                if budget_value is not None:
                    take = min(take, (budget_value - value) // level.price)
                if take <= 0:
                    return lots, value
                lots += take
                value += take * level.price
        return lots, value

    def _enter(self, order: ExOrder) -> None:
        """The order reaches the engine: post-only and FOK checks, matching, resting."""
        if not order.open:
            return
        market = order.market
        with self._event(market) as event:
            t = event.time_ns
            if order.post_only and self._crosses(order):
                self._close(order, "canceled", t, R_POST_ONLY, event)
                return
            if order.tif == "FOK":
                lots, _ = self._walk(
                    market, order.side, order.account, order.price, order.remaining, None
                )
                if lots < order.remaining:
                    self._close(order, "canceled", t, R_LIQUIDITY, event)
                    return
            order.status = "new"
            order.hold_quote = 0
            self._order_event("new", order, t)
            reason = self._take(order, event) if self._crosses(order) else None
            if order.open and order.remaining > 0:
                if reason is not None or order.price is None or order.tif in ("IOC", "FOK"):
                    self._close(order, "canceled", t, reason or R_LIQUIDITY, event)
                else:
                    self._rest(order, event)

    def _rest(self, order: ExOrder, event: MarketEvent) -> None:
        assert order.price is not None
        book = Order(
            order.order_id,
            "bid" if order.side == "buy" else "ask",
            order.price,
            order.remaining,
            event.time_ns,
            owner=order,
        )
        order.market.rest(book, event)
        order.book = book

    def _take(self, order: ExOrder, event: MarketEvent) -> str | None:
        """Match ``order`` against the other side; the reason to cancel its remainder, if any."""
        market = order.market
        makers = market.asks if order.side == "buy" else market.bids
        while order.remaining > 0:
            level = makers.best()
            if level is None or not self._acceptable(order.side, order.price, level.price):
                return None
            for resting in list(level.orders.values()):
                maker: ExOrder | None = resting.owner
                if maker is not None and maker.account is order.account:
                    if order.stp_type in ("cancel_oldest", "cancel_both"):
                        self._close(maker, "canceled", event.time_ns, R_SELF_TRADE, event)
                    if order.stp_type in ("cancel_newest", "cancel_both"):
                        return R_SELF_TRADE
                    continue
                self._execute(order, resting, min(order.remaining, resting.qty), event)
                if order.remaining == 0:
                    return None
        return None

    def _execute(self, taker: ExOrder, resting: Order, lots: int, event: MarketEvent) -> None:
        """One fill between ``taker`` and a resting order, at the resting order's price."""
        market = taker.market
        t = event.time_ns
        market.trade_id += 1
        ord_type: Literal["market", "limit"] = "market" if taker.price is None else "limit"
        trade = Print(market.trade_id, resting.price, lots, taker.side, ord_type, t)
        event.trades.append(trade)
        maker: ExOrder | None = resting.owner
        if lots == resting.qty:
            market.unlink(resting)
            event.changes.append(
                Change(resting.side, "delete", resting.order_id, resting.price, resting.qty, t)
            )
        else:
            resting.qty -= lots
            level = market.side(resting.side).level(resting.price)
            assert level is not None
            level.total -= lots
            level.updated_ns = t
            event.changes.append(
                Change(resting.side, "modify", resting.order_id, resting.price, resting.qty, t)
            )
        if maker is not None:
            self._fill(maker, lots, trade, "m")
        self._fill(taker, lots, trade, "t")

    def _flow_fill(self, resting: Order, lots: int, trade: Print) -> None:
        """The seeded flow's marketable order filled an account order (the market moves it)."""
        maker: ExOrder = resting.owner
        self._fill(maker, lots, trade, "m")

    def _fill(self, order: ExOrder, lots: int, trade: Print, liquidity: Literal["m", "t"]) -> None:
        """Account for one fill: order totals, balances, execution reports, ledger entries.

        The book is the caller's business (the resting order is already reduced or about to be
        unlinked).
        """
        pair = order.spec
        account = order.account
        value = trade.price * lots
        cost = self._quote_units(value, pair)
        fee = self._fee(cost, self._maker if liquidity == "m" else self._taker)
        order.filled += lots
        order.value += value
        order.cum_cost += cost
        order.cum_fee += fee
        order.status = "partially_filled"
        exec_id = self._new_id("T")
        record = TradeRecord(
            order,
            exec_id,
            trade.trade_id,
            trade.price,
            lots,
            cost,
            fee,
            liquidity,
            trade.time_ns,
            order.filled,
            order.cum_cost,
            order.cum_fee,
            order.avg_units(),
        )
        account.fills.append(record)
        for sink in list(account.sinks):
            sink.trade(record)
        base = self._base_units(lots, pair)
        legs = (
            ((pair.base, base, 0), (pair.quote, -cost, fee))
            if order.side == "buy"
            else ((pair.base, -base, 0), (pair.quote, cost, fee))
        )
        for asset, amount, leg_fee in legs:
            account.balances[asset] = account.balances.get(asset, 0) + amount - leg_fee
            entry = LedgerEntry(
                self._new_id("L"),
                exec_id,
                trade.time_ns,
                "trade",
                asset,
                amount,
                leg_fee,
                account.balances[asset],
                self.ledger.dp(asset),
            )
            for sink in list(account.sinks):
                sink.ledger(entry)
        if order.remaining == 0:
            order.book = None
            self._close(order, "filled", trade.time_ns, None)

    def _close(
        self,
        order: ExOrder,
        status: str,
        time_ns: int,
        reason: str | None,
        event: MarketEvent | None = None,
    ) -> None:
        """End an order (filled, canceled, expired): out of the book and the open orders."""
        book = order.book
        if book is not None:
            assert event is not None, "a resting order is closed inside a market event"
            order.market.unlink(book)
            event.changes.append(
                Change(book.side, "delete", book.order_id, book.price, book.qty, event.time_ns)
            )
            order.book = None
        order.status = status
        order.account.orders.pop(order.order_id, None)
        for timer in order.timers:
            timer.cancel()
            self._timers.discard(timer)
        order.timers.clear()
        self._order_event(status, order, time_ns, reason)

    def _order_event(
        self, kind: str, order: ExOrder, time_ns: int, reason: str | None = None
    ) -> None:
        for sink in list(order.account.sinks):
            sink.order_event(kind, order, time_ns, reason)

    def _expire(self, order: ExOrder) -> None:
        if not order.open:
            return
        with self._event(order.market) as event:
            self._close(order, "expired", event.time_ns, R_EXPIRED, event)

    # -- changing and cancelling -------------------------------------------------------------------

    def _status_allows_change(self) -> None:
        if self.venue.status == "maintenance":
            raise Reject(E_UNAVAILABLE)
        if self.venue.status == "cancel_only":
            raise Reject(E_CANCEL_ONLY)

    def amend(
        self, order: ExOrder, qty: int | None, price: int | None, post_only: bool = False
    ) -> str:
        """Amend in place; returns the amend id. Quantity is the new total order quantity.

        :raises Reject: refused (rate, funds, minimum, post-only, engine state).
        """
        self._status_allows_change()
        market, pair = order.market, order.spec
        self.admit(order.account, market.symbol, amend_cost(time.monotonic() - order.placed_at))
        if order.price is None:
            raise Reject(f"{E_ARGS}:order_type")
        new_qty = order.qty if qty is None else qty
        new_price = order.price if price is None else price
        if new_qty < market.min_lots:
            raise Reject(E_MINIMUM)
        moved = new_price != order.price
        crossing = moved and self._crosses(order, new_price)
        if crossing and post_only:
            raise Reject(E_POST_ONLY)
        if crossing and self.venue.status == "post_only":
            raise Reject(E_POST_ONLY_MODE)
        if new_qty > order.filled:
            remaining = new_qty - order.filled
            asset = pair.quote if order.side == "buy" else pair.base
            old_hold = self._hold(order, asset)
            if order.side == "buy":
                cost = self._quote_units(remaining * new_price, pair, ceil=True)
                new_hold = cost + self._fee(cost, self._taker, ceil=True)
            else:
                new_hold = self._base_units(remaining, pair)
            if new_hold - old_hold > self.available(order.account, asset):
                raise Reject(E_FUNDS)
        amend_id = self._new_id("T")
        with self._event(market) as event:
            t = event.time_ns
            if new_qty <= order.filled:
                # Below what is already executed: the remainder is cancelled.
                self._close(order, "canceled", t, R_USER, event)
                return amend_id
            book = order.book
            old_remaining = order.remaining
            order.qty, order.price = new_qty, new_price
            order.amended = True
            order.placed_at = time.monotonic()
            self._order_event("amended", order, t)
            if book is None:
                return amend_id  # waiting for its effective time: nothing in the book yet
            old_price = book.price
            if moved:
                market.unlink(book)
                order.book = None
                if crossing:
                    event.changes.append(
                        Change(book.side, "delete", book.order_id, old_price, book.qty, t)
                    )
                    reason = self._take(order, event)
                    if order.open and order.remaining > 0:
                        if reason is not None:
                            self._close(order, "canceled", t, reason, event)
                        else:
                            self._rest(order, event)
                    return amend_id
                book.price, book.qty, book.time_ns = new_price, order.remaining, t
                market.rest(book, None)
                order.book = book
                event.changes.append(
                    Change(book.side, "modify", book.order_id, new_price, book.qty, t, old_price)
                )
            elif order.remaining > old_remaining:
                # A larger quantity goes to the back of the queue.
                market.unlink(book)
                book.qty, book.time_ns = order.remaining, t
                market.rest(book, None)
                event.changes.append(
                    Change(
                        book.side, "modify", book.order_id, book.price, book.qty, t, requeue=True
                    )
                )
            elif order.remaining < old_remaining:
                level = market.side(book.side).level(book.price)
                assert level is not None
                level.total -= old_remaining - order.remaining
                level.updated_ns = t
                book.qty, book.time_ns = order.remaining, t
                event.changes.append(
                    Change(book.side, "modify", book.order_id, book.price, book.qty, t)
                )
        return amend_id

    def edit(
        self,
        order: ExOrder,
        qty: int | None,
        price: int | None,
        userref: int | None,
        post_only: bool | None,
        validate: bool = False,
    ) -> ExOrder | None:
        """Cancel/replace: the new order gets a new id (None when only validating).

        :raises Reject: refused; the original is then untouched.
        """
        self._status_allows_change()
        market = order.market
        self.admit(order.account, market.symbol, edit_cost(time.monotonic() - order.placed_at))
        if order.price is None:
            raise Reject(f"{E_ARGS}:order_type")
        new_qty = order.qty if qty is None else qty
        if new_qty <= order.filled:
            raise Reject(f"{E_ARGS}:order_qty")
        spec = OrderSpec(
            market.symbol,
            order.side,
            order.order_type,
            new_qty - order.filled,
            order.price if price is None else price,
            order.tif,
            order.post_only if post_only is None else post_only,
            order.reduce_only,
            None,
            order.userref if userref is None else userref,
            order.stp_type,
            order.expire_ns,
            None,
            None,
        )
        self.check(spec)
        if validate:
            return None
        # The original's reservation is released by the replacement, so count it as available.
        account = order.account
        del account.orders[order.order_id]
        try:
            replacement = self._create(account, spec)
        finally:
            account.orders[order.order_id] = order
        with self._event(market) as event:
            self._close(order, "canceled", event.time_ns, R_REPLACED, event)
        self._submit(replacement)
        return replacement

    def cancel(self, order: ExOrder, reason: str = R_USER, charge: bool = True) -> None:
        """Cancel one open order (charged to the rate counter, never refused for it).

        :raises Reject: ``EService:Unavailable`` in maintenance.
        """
        if self.venue.status == "maintenance":
            raise Reject(E_UNAVAILABLE)
        if charge:
            order.account.counter(order.market.symbol).force(
                cancel_cost(time.monotonic() - order.placed_at)
            )
        if not order.open:
            return
        with self._event(order.market) as event:
            self._close(order, "canceled", event.time_ns, reason, event)

    def cancel_all(self, account: Account, reason: str = R_USER) -> int:
        """Cancel every open order of ``account``; the number cancelled.

        :raises Reject: ``EService:Unavailable`` in maintenance.
        """
        if self.venue.status == "maintenance":
            raise Reject(E_UNAVAILABLE)
        return self._cancel_orders(account, reason)

    def _cancel_orders(self, account: Account, reason: str) -> int:
        """Cancel every open order of ``account``, one event per market; the number cancelled."""
        orders = list(account.orders.values())
        by_market: dict[str, list[ExOrder]] = {}
        for order in orders:
            by_market.setdefault(order.market.symbol, []).append(order)
        for symbol, group in by_market.items():
            with self._event(self.venue.markets[symbol]) as event:
                for order in group:
                    if order.open:
                        self._close(order, "canceled", event.time_ns, reason, event)
        return len(orders)

    def cancel_after(self, account: Account, timeout: int) -> tuple[int, int | None]:
        """Arm (or with 0 disarm) the dead man's switch.

        :return: ``(current, trigger)`` wall-clock epoch seconds, the current time rounded up
            as Kraken reports it; ``trigger`` is None when disarmed.
        """
        if account.cancel_after_timer is not None:
            account.cancel_after_timer.cancel()
            self._timers.discard(account.cancel_after_timer)
            account.cancel_after_timer = None
            account.cancel_after_at = None
        now_ns = time.time_ns()
        current = -(-now_ns // 10**9)
        if timeout == 0:
            return current, None
        trigger = current + timeout
        account.cancel_after_at = trigger
        account.cancel_after_timer = self._later(trigger * 10**9, self._dead_man, account)
        return current, trigger

    def _dead_man(self, account: Account) -> None:
        account.cancel_after_timer = None
        account.cancel_after_at = None
        # Expiry cancels whatever the engine state: it is the engine's own action.
        self._cancel_orders(account, R_CANCEL_AFTER)
