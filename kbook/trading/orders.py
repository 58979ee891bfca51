"""Order entry over Kraken's authenticated WebSocket: requests, answers, outcomes, errors.

:class:`OrderRequest` and the request builders turn keyword arguments into Kraken's exact v2 and
v1 messages (msgspec structs, so no per-request dict is built and ``Decimal`` prices go out as
exact JSON numbers); :class:`Outcome` describes what became of a request: accepted, rejected with
a typed :class:`OrderError`, or **unknown** when no answer came in time (reconcile by
``cl_ord_id`` from the executions stream, never guess). Parameters are validated before anything
is sent: precisions against the pair, batch sizes, the cancel-after range.

What it is not: the connection (``kbook.client``) or the exchange simulator's matching engine.
This module is the wire and the rules; the private session that sends these requests, keeps the
executions and balances views and runs the dead-man switch builds on it.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

from kbook.errors import (
    InsufficientFunds,
    InvalidArguments,
    MarketClosed,
    OrderError,
    OrderMinimumNotMet,
    OrderRateLimited,
    PostOnlyRejected,
    TokenExpired,
    UnknownOrder,
    ValidationError,
)

__all__ = [
    "BATCH_ADD_MAX",
    "BATCH_CANCEL_MAX",
    "CANCEL_AFTER_MAX",
    "ORDER_TYPES",
    "AddOrder",
    "Conditional",
    "InsufficientFunds",
    "InvalidArguments",
    "OrderError",
    "OrderRateLimited",
    "Outcome",
    "OutcomeState",
    "Triggers",
    "UnknownOrder",
    "ValidationError",
    "check_batch_cancel",
    "check_cancel_after",
    "chunk_batch",
    "encode_request",
    "error_for",
    "validate_add",
    "v1_add_order",
]

BATCH_ADD_MIN, BATCH_ADD_MAX = 2, 15  # Kraken's batch_add bounds (one pair per batch)
BATCH_CANCEL_MIN, BATCH_CANCEL_MAX = 2, 50  # batch_cancel bounds
CANCEL_AFTER_MAX = 86_400  # seconds; "should be less than 86400"; 0 disarms
ORDER_TYPES = (
    "limit",
    "market",
    "iceberg",
    "stop-loss",
    "stop-loss-limit",
    "take-profit",
    "take-profit-limit",
    "trailing-stop",
    "trailing-stop-limit",
    "settle-position",
)
_LIMIT_TYPES = ("limit", "iceberg", "stop-loss-limit", "take-profit-limit", "trailing-stop-limit")
_TRIGGERED = (
    "stop-loss",
    "stop-loss-limit",
    "take-profit",
    "take-profit-limit",
    "trailing-stop",
    "trailing-stop-limit",
)
_CL_ORD_ID = re.compile(
    r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12}|[0-9a-fA-F]{32}|[\x20-\x7e]{1,18})$"
)


# -- Kraken's error strings, typed (the classes live in kbook.errors) ----------------------


_ERRORS: tuple[tuple[str, type[OrderError]], ...] = (
    ("EOrder:Insufficient funds", InsufficientFunds),
    ("EGeneral:Invalid arguments", InvalidArguments),
    ("EOrder:Unknown order", UnknownOrder),
    ("EOrder:Invalid order", UnknownOrder),
    ("EOrder:Rate limit exceeded", OrderRateLimited),
    ("EOrder:Domain rate limit exceeded", OrderRateLimited),
    ("Exceeded msg rate", OrderRateLimited),
    ("EOrder:Order minimum not met", OrderMinimumNotMet),
    ("EOrder:Cost minimum not met", OrderMinimumNotMet),
    ("EOrder:Post only order", PostOnlyRejected),
    ("EService:Market in post_only mode", PostOnlyRejected),
    ("EService:Unavailable", MarketClosed),
    ("EService:Market in cancel_only mode", MarketClosed),
    ("ESession:Invalid session", TokenExpired),
    ("EAPI:Invalid token", TokenExpired),
)


def error_for(code: str, request: str | None = None) -> OrderError:
    """The typed exception for a Kraken error string (:class:`OrderError` when unknown)."""
    for prefix, cls in _ERRORS:
        if code.startswith(prefix):
            return cls(code, request)
    return OrderError(code, request)


# -- outcomes ------------------------------------------------------------------------------


def _rfc3339_ns(text: str) -> int:
    """Epoch ns of ``2023-09-25T09:04:31.742599123Z`` (any number of fraction digits)."""
    head, _, frac = text.rstrip("Z").partition(".")
    moment = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC)
    digits = (frac + "000000000")[:9]
    if not digits.isdigit():
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    return int(moment.timestamp()) * 1_000_000_000 + int(digits)


class OutcomeState(enum.Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # no answer in time: the order may or may not exist


@dataclass
class Outcome:
    """What became of one request.

    ``UNKNOWN`` means the request was sent but no answer arrived before the timeout: reconcile
    with the executions stream (by ``cl_ord_id`` when you set one) before acting again.
    """

    state: OutcomeState
    method: str
    req_id: int
    result: Any = None  # the answer's ``result`` (a list for batch_add)
    error: OrderError | None = None
    cl_ord_id: str | None = None
    warnings: list[str] = field(default_factory=list)
    sent_ns: int | None = None  # monotonic ns the request was sent
    answered_ns: int | None = None  # monotonic ns its (last) answer was handed back
    time_in: str | None = None  # v2: when the exchange received the request (RFC 3339)
    time_out: str | None = None  # v2: when the exchange sent the answer

    @property
    def round_trip_ns(self) -> int | None:
        """Sent to answered, on this machine's monotonic clock."""
        if self.sent_ns is None or self.answered_ns is None:
            return None
        return self.answered_ns - self.sent_ns

    @property
    def exchange_ns(self) -> int | None:
        """The exchange's own time on the request: ``time_out - time_in`` (v2 answers)."""
        if self.time_in is None or self.time_out is None:
            return None
        try:
            return _rfc3339_ns(self.time_out) - _rfc3339_ns(self.time_in)
        except ValueError:
            return None

    @property
    def network_ns(self) -> int | None:
        """The round trip less the exchange's time: both ways on the network (and queues)."""
        trip, inside = self.round_trip_ns, self.exchange_ns
        return None if trip is None or inside is None else trip - inside

    @property
    def order_id(self) -> str | None:
        if isinstance(self.result, dict):
            value = self.result.get("order_id")
            return value if isinstance(value, str) else None
        return None

    def raise_for_error(self) -> Outcome:
        """Raise the rejection (or a :class:`TimeoutError` for an unknown outcome)."""
        if self.state is OutcomeState.REJECTED and self.error is not None:
            raise self.error
        if self.state is OutcomeState.UNKNOWN:
            raise TimeoutError(f"{self.method} req_id={self.req_id}: outcome unknown")
        return self


# -- requests ------------------------------------------------------------------------------


class Triggers(msgspec.Struct, omit_defaults=True):
    """A triggered order's trigger: ``price`` static, or an offset with ``price_type``."""

    price: Decimal
    reference: str | None = None  # "last" (default) or "index"
    price_type: str | None = None  # "static" (default), "pct", "quote"


class Conditional(msgspec.Struct, omit_defaults=True):
    """OTO: the close order Kraken creates on each fill of the primary."""

    order_type: str
    limit_price: Decimal | None = None
    limit_price_type: str | None = None
    trigger_price: Decimal | None = None
    trigger_price_type: str | None = None


class AddOrder(msgspec.Struct, omit_defaults=True):
    """``add_order`` parameters (v2 names); also one entry of ``batch_add`` without ``symbol``."""

    order_type: str
    side: str
    order_qty: Decimal
    symbol: str | None = None
    limit_price: Decimal | None = None
    limit_price_type: str | None = None
    triggers: Triggers | None = None
    time_in_force: str | None = None
    margin: bool | None = None
    post_only: bool | None = None
    reduce_only: bool | None = None
    effective_time: str | None = None
    expire_time: str | None = None
    deadline: str | None = None
    cl_ord_id: str | None = None
    order_userref: int | None = None
    conditional: Conditional | None = None
    display_qty: Decimal | None = None
    fee_preference: str | None = None
    stp_type: str | None = None
    cash_order_qty: Decimal | None = None
    validate: bool | None = None
    sender_sub_id: str | None = None
    token: str | None = None  # filled in on the wire copy only; never shown by repr/str

    def __repr__(self) -> str:
        return f"AddOrder({', '.join(f'{k}={v!r}' for k, v in self.__rich_repr__())})"

    __str__ = __repr__

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            out.append((name, "<hidden>" if name == "token" and value is not None else value))
        return out


class _Envelope(msgspec.Struct, omit_defaults=True):
    method: str
    params: Any
    req_id: int | None = None


_ENCODER = msgspec.json.Encoder(decimal_format="number")


def encode_request(method: str, params: Any, req_id: int | None) -> bytes:
    """One v2 request as bytes: ``{"method":..,"params":{..},"req_id":..}``, exact numbers."""
    return _ENCODER.encode(_Envelope(method, params, req_id))


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def validate_add(order: AddOrder, precisions: tuple[int, int] | None = None) -> None:
    """Refuse an order the exchange would refuse, before sending it.

    :param precisions: the pair's ``(price_precision, qty_precision)``, when known
    :raises ValidationError: with the rule broken
    """
    name = "add_order"
    if order.order_type not in ORDER_TYPES:
        raise ValidationError(f"unknown order_type {order.order_type!r}", name)
    if order.side not in ("buy", "sell"):
        raise ValidationError(f"side must be 'buy' or 'sell', not {order.side!r}", name)
    if order.order_qty <= 0:
        raise ValidationError("order_qty must be positive", name)
    if order.order_type in _LIMIT_TYPES and order.limit_price is None:
        raise ValidationError(f"{order.order_type} needs limit_price", name)
    if order.order_type in _TRIGGERED and order.triggers is None:
        raise ValidationError(f"{order.order_type} needs triggers", name)
    if (
        order.limit_price is not None
        and order.limit_price <= 0
        and order.order_type != "trailing-stop-limit"
    ):
        raise ValidationError("limit_price must be positive", name)
    if order.cl_ord_id is not None and order.order_userref is not None:
        raise ValidationError("cl_ord_id and order_userref are mutually exclusive", name)
    if order.cl_ord_id is not None and not _CL_ORD_ID.match(order.cl_ord_id):
        raise ValidationError("cl_ord_id must be a UUID, 32 hex digits or <= 18 ASCII chars", name)
    if order.time_in_force is not None and order.time_in_force not in ("gtc", "gtd", "ioc", "fok"):
        raise ValidationError(f"unknown time_in_force {order.time_in_force!r}", name)
    if order.time_in_force == "gtd" and order.expire_time is None:
        raise ValidationError("gtd needs expire_time", name)
    if order.time_in_force == "fok" and order.order_type != "limit":
        raise ValidationError("fok is for limit orders only", name)
    if order.post_only and order.limit_price is None:
        raise ValidationError("post_only needs a limit price", name)
    if order.display_qty is not None and (
        order.order_type != "iceberg" or order.display_qty * 15 < order.order_qty
    ):
        raise ValidationError("display_qty is for icebergs, at least 1/15 of order_qty", name)
    if precisions is not None:
        price_dp, qty_dp = precisions
        if _decimals(order.order_qty) > qty_dp:
            raise ValidationError(f"order_qty has more than {qty_dp} decimals", name)
        for label, price in (
            ("limit_price", order.limit_price),
            ("trigger price", order.triggers.price if order.triggers else None),
        ):
            if (
                price is not None
                and (
                    order.triggers is None
                    or order.triggers.price_type in (None, "static")
                    or label == "limit_price"
                )
                and _decimals(price) > price_dp
            ):
                raise ValidationError(f"{label} has more than {price_dp} decimals", name)


def chunk_batch(orders: Sequence[AddOrder]) -> list[list[AddOrder]]:
    """Split orders for ``batch_add``: 2–15 per batch, all for one pair; a lone order is its
    own list (send it with ``add_order``).

    :raises ValidationError: orders for several pairs
    """
    symbols = {o.symbol for o in orders}
    if len(symbols) > 1:
        raise ValidationError(
            f"a batch must be for one pair, got {sorted(map(str, symbols))}", "batch_add"
        )
    chunks = [list(orders[i : i + BATCH_ADD_MAX]) for i in range(0, len(orders), BATCH_ADD_MAX)]
    if len(chunks) > 1 and len(chunks[-1]) < BATCH_ADD_MIN:
        # never leave a single order alone: borrow one from the previous batch
        chunks[-1].insert(0, chunks[-2].pop())
    return chunks


def check_cancel_after(timeout: int) -> int:
    """The ``cancel_all_orders_after`` timeout, checked (0 disarms).

    :raises ValidationError: outside 0..86399 seconds
    """
    if not 0 <= timeout < CANCEL_AFTER_MAX:
        raise ValidationError("timeout must be within 0..86399 seconds", "cancel_all_orders_after")
    return timeout


def check_batch_cancel(ids: Sequence[str]) -> None:
    """:raises ValidationError: fewer than 2 or more than 50 ids"""
    if not BATCH_CANCEL_MIN <= len(ids) <= BATCH_CANCEL_MAX:
        raise ValidationError("batch_cancel takes 2 to 50 order ids", "batch_cancel")


def v1_add_order(order: AddOrder, token: str, reqid: int | None = None) -> bytes:
    """The v1 ``addOrder`` event for an order (v1 writes every number as a string)."""
    msg: dict[str, Any] = {
        "event": "addOrder",
        "token": token,
        "ordertype": order.order_type,
        "type": order.side,
        "pair": order.symbol,
        "volume": str(order.order_qty),
    }
    if reqid is not None:
        msg["reqid"] = reqid
    if order.limit_price is not None:
        msg["price"] = str(order.limit_price)
    if order.triggers is not None:
        msg["price"] = str(order.triggers.price)
        if order.limit_price is not None:
            msg["price2"] = str(order.limit_price)
    flags = [name for name, on in (("post", order.post_only),) if on]
    if flags:
        msg["oflags"] = ",".join(flags)
    if order.time_in_force is not None:
        msg["timeinforce"] = order.time_in_force.upper()
    if order.order_userref is not None:
        msg["userref"] = str(order.order_userref)
    if order.validate:
        msg["validate"] = "true"
    if order.reduce_only:
        msg["reduce_only"] = True
    if order.stp_type is not None:
        msg["stptype"] = order.stp_type.replace("_", "-")
    return _ENCODER.encode(msg)
