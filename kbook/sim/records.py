"""The simulated exchange's records: accounts, orders, fills, ledger entries, refusals, and
the private subscriptions that stream them.

These are the nouns that :mod:`kbook.sim.accounts` (credentials, rate counters, tokens) and
:mod:`kbook.sim.exchange` (order handling and matching) share; keeping them here lets neither
of those import the other. Amounts are integers: prices in ticks, quantities in lots, balances
in ledger units.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kbook.sim.accounts import RECENT_FILLS, RateCounter, Tier
from kbook.sim.market import Order, PairMarket
from kbook.sim.pairs import PairSpec
from kbook.sim.wire import pow10, round_div

if TYPE_CHECKING:
    from kbook.sim.exchange import Exchange

__all__ = [
    "AVG_EXTRA_DP",
    "Account",
    "ExOrder",
    "LedgerEntry",
    "OrderSide",
    "OrderSpec",
    "PrivateSink",
    "Reject",
    "TradeRecord",
]

OrderSide = Literal["buy", "sell"]
#: Digits beyond the price precision that ``avg_price`` keeps.
AVG_EXTRA_DP = 4


@dataclass(eq=False)
class Account:
    """One API key's account. Mutated only by the exchange (and the REST nonce check)."""

    key: str
    secret: str
    tier: Tier
    balances: dict[str, int]
    ws_permission: bool = True
    last_nonce: int = 0
    #: Open orders (pending, resting or waiting for their effective time), by order id.
    orders: dict[str, ExOrder] = field(default_factory=dict)
    #: The latest fills, oldest first.
    fills: deque[TradeRecord] = field(default_factory=lambda: deque(maxlen=RECENT_FILLS))
    rate: dict[str, RateCounter] = field(default_factory=dict)
    sinks: list[PrivateSink] = field(default_factory=list)
    #: Dead man's switch: wall-clock epoch seconds it fires at, and its timer.
    cancel_after_at: int | None = None
    cancel_after_timer: Any = None

    def __repr__(self) -> str:
        # The secret stays out of every repr and log line.
        return f"Account(key={self.key[:8]}..., orders={len(self.orders)})"

    def counter(self, symbol: str) -> RateCounter:
        """The rate counter of ``symbol``, created at zero on first use."""
        found = self.rate.get(symbol)
        if found is None:
            found = self.rate[symbol] = RateCounter(self.tier)
        return found


class Reject(Exception):
    """A request is refused; ``code`` is the Kraken error string to answer with."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(slots=True)
class OrderSpec:
    """A new order as the protocols parse it: integers in ticks and lots, times in epoch ns."""

    symbol: str
    side: str
    order_type: str
    qty: int | None
    price: int | None = None
    tif: str = "GTC"
    post_only: bool = False
    reduce_only: bool = False
    cl_ord_id: str | None = None
    userref: int = 0
    stp_type: str = "cancel_newest"
    expire_ns: int | None = None
    effective_ns: int | None = None
    #: ``cash_order_qty`` in quote ledger units (market buys).
    cash: int | None = None


@dataclass(eq=False, slots=True)
class ExOrder:
    """One account order and everything executed on it so far."""

    order_id: str
    account: Account
    market: PairMarket
    spec: PairSpec
    side: OrderSide
    order_type: str
    qty: int
    price: int | None
    tif: str
    post_only: bool
    reduce_only: bool
    cl_ord_id: str | None
    userref: int
    stp_type: str
    expire_ns: int | None
    effective_ns: int | None
    cash: int | None
    created_ns: int
    placed_at: float
    status: str = "pending_new"
    filled: int = 0
    #: Sum of price ticks times lots over the fills (exact, for the average price).
    value: int = 0
    cum_cost: int = 0
    cum_fee: int = 0
    amended: bool = False
    book: Order | None = None
    #: Quote a not yet submitted market buy reserves (what walking the book costs).
    hold_quote: int = 0
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.qty - self.filled

    @property
    def open(self) -> bool:
        return self.status in ("pending_new", "new", "partially_filled")

    def avg_units(self) -> int:
        """Average fill price in units of ``10**-(price_precision + AVG_EXTRA_DP)``."""
        return round_div(self.value * pow10(AVG_EXTRA_DP), self.filled) if self.filled else 0


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One fill of one account order, with the order's totals just after it."""

    order: ExOrder
    exec_id: str
    trade_id: int
    price: int
    qty: int
    cost: int
    fee: int
    liquidity: Literal["m", "t"]
    time_ns: int
    cum_qty: int
    cum_cost: int
    cum_fee: int
    avg_units: int


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One balance change: ``balance`` is the asset's total after it (all in ledger units)."""

    ledger_id: str
    ref_id: str
    time_ns: int
    type: str
    asset: str
    amount: int
    fee: int
    balance: int
    dp: int


class PrivateSink:
    """A private subscription as the exchange sees it; the protocol modules subclass it.

    Every method is called at the moment the event happens, so a sink renders the order's state
    of that moment and sends it with :meth:`send` (which honours :meth:`Exchange.hold`).
    """

    def __init__(self, exchange: Exchange, conn: Any, account: Account) -> None:
        self.exchange = exchange
        self.conn = conn
        self.account = account

    def send(self, data: bytes) -> None:
        self.exchange.send(self.conn, data)

    def order_event(self, kind: str, order: ExOrder, time_ns: int, reason: str | None) -> None:
        """``kind``: pending_new, new, amended, filled, canceled or expired."""

    def trade(self, record: TradeRecord) -> None:
        """A fill of one of the account's orders."""

    def ledger(self, entry: LedgerEntry) -> None:
        """A ledger entry (a trade leg or a deposit)."""
