"""Typed Kraken market-data messages, the same Python types for WebSocket v1 and v2.

:func:`parse_message` turns a decoded non-book message (what :meth:`kbook.Feed.process` returns
for anything that is not a book) into zero or more typed objects. Prices and quantities are exact
``Decimal`` values; timestamps are RFC 3339 strings for both protocols (v1's epoch strings are
converted with integer arithmetic). Where v1 and v2 carry different facts (v1 tickers have an open
price, v2 tickers a 24 h change), the field the other protocol lacks is ``None``; ``raw`` keeps
the decoded original for anything not modelled.

What it is not: it does not decode bytes (the engine does) and it never sees book or level3 data,
which stay in :class:`kbook.L2Book` and :class:`kbook.Level3Book`.
"""

from __future__ import annotations

import reprlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from kbook._core import DecodeError

__all__ = [
    "Ack",
    "BalanceSnapshot",
    "Execution",
    "LedgerEntry",
    "Candle",
    "ErrorMessage",
    "Heartbeat",
    "Instrument",
    "Message",
    "Pong",
    "Spread",
    "SystemStatus",
    "Ticker",
    "Trade",
    "parse_message",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Ticker(msgspec.Struct, frozen=True, gc=False):
    """Best bid/ask and 24 h statistics of one pair."""

    symbol: str
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    last: Decimal
    volume: Decimal
    vwap: Decimal
    low: Decimal
    high: Decimal
    change: Decimal | None = None  # v2: 24 h change in the quote currency
    change_pct: Decimal | None = None  # v2: 24 h change in percent
    open: Decimal | None = None  # v1: today's opening price
    timestamp: str | None = None
    raw: Any = None


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One trade; ``side`` (buy/sell) and ``ord_type`` (limit/market) are the taker's."""

    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    ord_type: str
    timestamp: str
    trade_id: int | None = None  # v2 only: sequential per book
    raw: Any = None


class Candle(msgspec.Struct, frozen=True, gc=False):
    """One OHLC candle (the running one is re-sent on every trade)."""

    symbol: str
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    vwap: Decimal
    volume: Decimal
    trades: int
    interval: int  # minutes
    interval_begin: str
    raw: Any = None


class Spread(msgspec.Struct, frozen=True, gc=False):
    """v1 ``spread``: best bid and ask with their volumes."""

    symbol: str
    bid: Decimal
    ask: Decimal
    bid_qty: Decimal
    ask_qty: Decimal
    timestamp: str
    raw: Any = None


class SystemStatus(msgspec.Struct, frozen=True, gc=False):
    """The trading engine's state: ``online``, ``maintenance``, ``cancel_only``, ``post_only``."""

    system: str
    version: str | None = None
    connection_id: int | None = None
    raw: Any = None


class Heartbeat(msgspec.Struct, frozen=True, gc=False):
    """Sent about once a second when nothing else was."""


class Pong(msgspec.Struct, frozen=True, gc=False):
    """The answer to an application ping."""

    req_id: int | None = None
    raw: Any = None


class Ack(msgspec.Struct, frozen=True, gc=False):
    """A request's answer: one per symbol for subscribe/unsubscribe."""

    method: str  # subscribe, unsubscribe, ... (v1: the event name)
    success: bool
    channel: str | None = None
    symbol: str | None = None
    error: str | None = None
    req_id: int | None = None
    raw: Any = None


class ErrorMessage(msgspec.Struct, frozen=True, gc=False):
    """A v1 ``error`` event (for example ``Exceeded msg rate``)."""

    error: str
    req_id: int | None = None
    raw: Any = None


class Instrument(msgspec.Struct, frozen=True, gc=False):
    """v2 ``instrument`` snapshot or update: assets and pairs as decoded dicts."""

    snapshot: bool
    assets: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    raw: Any = None


class Execution(msgspec.Struct, frozen=True, gc=False):
    """One execution report (v2 ``executions``; v1 ``openOrders`` and ``ownTrades`` map here).

    Reports after the first carry only what changed: merge them by ``order_id``.
    ``exec_type``: ``pending_new``, ``new``, ``trade``, ``filled``, ``canceled``, ``expired``,
    ``amended``, ``restated``, ``status`` (v1 order status changes map to the same names).
    """

    exec_type: str
    order_id: str | None = None
    order_status: str | None = None
    symbol: str | None = None
    side: str | None = None
    order_type: str | None = None
    cl_ord_id: str | None = None
    order_userref: int | None = None
    exec_id: str | None = None
    trade_id: int | None = None
    order_qty: Decimal | None = None
    limit_price: Decimal | None = None
    last_qty: Decimal | None = None
    last_price: Decimal | None = None
    cost: Decimal | None = None
    cum_qty: Decimal | None = None
    cum_cost: Decimal | None = None
    avg_price: Decimal | None = None
    fees: tuple[tuple[str, Decimal], ...] = ()
    liquidity_ind: str | None = None
    reason: str | None = None
    timestamp: str | None = None
    snapshot: bool = False
    sequence: int | None = None
    raw: Any = None


class BalanceSnapshot(msgspec.Struct, frozen=True, gc=False):
    """Every asset's total balance (``balances`` snapshot)."""

    balances: dict[str, Decimal]
    sequence: int | None = None
    raw: Any = None


class LedgerEntry(msgspec.Struct, frozen=True, gc=False):
    """One completed ledger transaction (``balances`` update): ``balance`` is the new total."""

    asset: str
    amount: Decimal
    balance: Decimal
    fee: Decimal
    type: str
    ledger_id: str | None = None
    ref_id: str | None = None
    timestamp: str | None = None
    sequence: int | None = None
    raw: Any = None


Message = (
    Ticker
    | Trade
    | Candle
    | Spread
    | SystemStatus
    | Heartbeat
    | Pong
    | Ack
    | ErrorMessage
    | Instrument
    | Execution
    | BalanceSnapshot
    | LedgerEntry
)

_EXECUTION_NUMBERS = (
    "order_qty",
    "limit_price",
    "last_qty",
    "last_price",
    "cost",
    "cum_qty",
    "cum_cost",
    "avg_price",
)


def _execution(d: dict[str, Any], snapshot: bool, sequence: int | None) -> Execution:
    numbers = {k: _dec(d[k]) for k in _EXECUTION_NUMBERS if d.get(k) is not None}
    fees = tuple((str(f["asset"]), _dec(f["qty"])) for f in d.get("fees") or ())
    return Execution(
        exec_type=str(d.get("exec_type", "status")),
        order_id=d.get("order_id"),
        order_status=d.get("order_status"),
        symbol=d.get("symbol"),
        side=d.get("side"),
        order_type=d.get("order_type"),
        cl_ord_id=d.get("cl_ord_id"),
        order_userref=d.get("order_userref"),
        exec_id=d.get("exec_id"),
        trade_id=d.get("trade_id"),
        fees=fees,
        liquidity_ind=d.get("liquidity_ind"),
        reason=d.get("reason"),
        timestamp=d.get("timestamp"),
        snapshot=snapshot,
        sequence=sequence,
        raw=d,
        order_qty=numbers.get("order_qty"),
        limit_price=numbers.get("limit_price"),
        last_qty=numbers.get("last_qty"),
        last_price=numbers.get("last_price"),
        cost=numbers.get("cost"),
        cum_qty=numbers.get("cum_qty"),
        cum_cost=numbers.get("cum_cost"),
        avg_price=numbers.get("avg_price"),
    )


_V1_STATUS = {
    "pending": "pending_new",
    "open": "new",
    "closed": "filled",
    "canceled": "canceled",
    "expired": "expired",
}


def _v1_open_order(
    order_id: str, d: dict[str, Any], snapshot: bool, sequence: int | None
) -> Execution:
    descr: dict[str, Any] = d["descr"] if isinstance(d.get("descr"), dict) else {}
    status = d.get("status")
    exec_type = _V1_STATUS.get(status, "status") if status is not None else "status"
    numbers: dict[str, Decimal] = {}
    for key, name in (
        ("vol", "order_qty"),
        ("vol_exec", "cum_qty"),
        ("cost", "cum_cost"),
        ("avg_price", "avg_price"),
    ):
        if d.get(key) is not None:
            numbers[name] = _dec(d[key])
    if descr.get("price") not in (None, ""):
        numbers["limit_price"] = _dec(descr["price"])
    return Execution(
        exec_type=exec_type,
        order_id=order_id,
        order_status=None
        if status is None
        else {"pending": "pending_new", "open": "new", "closed": "filled"}.get(status, status),
        symbol=descr.get("pair"),
        side=descr.get("type"),
        order_type=descr.get("ordertype"),
        order_userref=d.get("userref"),
        reason=d.get("cancel_reason") or d.get("reason"),
        snapshot=snapshot,
        sequence=sequence,
        raw=d,
        order_qty=numbers.get("order_qty"),
        cum_qty=numbers.get("cum_qty"),
        cum_cost=numbers.get("cum_cost"),
        avg_price=numbers.get("avg_price"),
        limit_price=numbers.get("limit_price"),
    )


def _v1_own_trade(
    trade_id: str, d: dict[str, Any], snapshot: bool, sequence: int | None
) -> Execution:
    fee = _dec(d["fee"]) if d.get("fee") is not None else None
    return Execution(
        exec_type="trade",
        order_id=d.get("ordertxid"),
        symbol=d.get("pair"),
        side=d.get("type"),
        order_type=d.get("ordertype"),
        exec_id=trade_id,
        last_qty=_dec(d["vol"]),
        last_price=_dec(d["price"]),
        cost=_opt_dec(d.get("cost")),
        fees=() if fee is None else (("", fee),),
        order_userref=d.get("userref"),
        timestamp=v1_timestamp(d["time"]) if d.get("time") else None,
        snapshot=snapshot,
        sequence=sequence,
        raw=d,
    )


def _dec(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        return Decimal(value)
    raise ValueError(f"expected a number, got {value!r}")


def _int(value: Any) -> int:
    """An integer field: a JSON integer, or an integral number or digit string of sane size.

    Sizes are checked before converting, so ``1e999999999`` is refused at once, not computed.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if (
        isinstance(value, Decimal)
        and value.is_finite()
        and value.adjusted() <= 30
        and value == value.to_integral_value()
    ):
        return int(value)
    if isinstance(value, str) and 0 < len(value) <= 30:
        return int(value)
    raise ValueError(f"expected an integer, got {_brief(value)}")


def _req_id(value: Any) -> int | None:
    """A ``req_id``/``reqid``: absent, or an integer (anything else could not be matched)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise DecodeError(f"req_id must be an integer, got {_brief(value)}")


def _brief(value: Any) -> str:
    """A short, bounded repr for error messages, whatever the nesting or size."""
    return _REPR.repr(value)


_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlevel = 3


def _opt_dec(value: Any) -> Decimal | None:
    return None if value is None else _dec(value)


def v1_timestamp(text: str) -> str:
    """Convert a v1 epoch string (``"1534614057.321597"``) to RFC 3339, exactly.

    >>> v1_timestamp("1534614057.321597")
    '2018-08-18T17:40:57.321597Z'
    """
    whole, _, frac = text.partition(".")
    micros = int((frac + "000000")[:6])
    stamp = _EPOCH + timedelta(seconds=_int(whole), microseconds=micros)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_SIDES = {"b": "buy", "s": "sell", "buy": "buy", "sell": "sell"}
_TYPES = {"l": "limit", "m": "market", "limit": "limit", "market": "market"}


def _parse_v2(msg: dict[str, Any]) -> list[Message]:
    channel = msg.get("channel")
    if channel is not None:
        data: Any = msg.get("data")
        if channel == "ticker":
            return [
                Ticker(
                    symbol=d["symbol"],
                    bid=_dec(d["bid"]),
                    bid_qty=_dec(d["bid_qty"]),
                    ask=_dec(d["ask"]),
                    ask_qty=_dec(d["ask_qty"]),
                    last=_dec(d["last"]),
                    volume=_dec(d["volume"]),
                    vwap=_dec(d["vwap"]),
                    low=_dec(d["low"]),
                    high=_dec(d["high"]),
                    change=_opt_dec(d.get("change")),
                    change_pct=_opt_dec(d.get("change_pct")),
                    timestamp=d.get("timestamp"),
                    raw=d,
                )
                for d in data
            ]
        if channel == "trade":
            return [
                Trade(
                    symbol=d["symbol"],
                    side=_SIDES[d["side"]],
                    price=_dec(d["price"]),
                    qty=_dec(d["qty"]),
                    ord_type=_TYPES.get(d["ord_type"], d["ord_type"]),
                    timestamp=d["timestamp"],
                    trade_id=_int(d["trade_id"]),
                    raw=d,
                )
                for d in data
            ]
        if channel == "ohlc":
            return [
                Candle(
                    symbol=d["symbol"],
                    open=_dec(d["open"]),
                    high=_dec(d["high"]),
                    low=_dec(d["low"]),
                    close=_dec(d["close"]),
                    vwap=_dec(d["vwap"]),
                    volume=_dec(d["volume"]),
                    trades=_int(d["trades"]),
                    interval=_int(d["interval"]),
                    interval_begin=d["interval_begin"],
                    raw=d,
                )
                for d in data
            ]
        if channel == "status":
            return [
                SystemStatus(
                    system=d["system"],
                    version=d.get("version"),
                    connection_id=d.get("connection_id"),
                    raw=d,
                )
                for d in data
            ]
        if channel == "heartbeat":
            return [Heartbeat()]
        if channel == "executions":
            snap = msg.get("type") == "snapshot"
            return [_execution(d, snap, msg.get("sequence")) for d in data]
        if channel == "balances":
            sequence = msg.get("sequence")
            if msg.get("type") == "snapshot":
                return [
                    BalanceSnapshot({d["asset"]: _dec(d["balance"]) for d in data}, sequence, msg)
                ]
            return [
                LedgerEntry(
                    asset=d["asset"],
                    amount=_dec(d["amount"]),
                    balance=_dec(d["balance"]),
                    fee=_dec(d.get("fee", 0)),
                    type=str(d.get("type", "")),
                    ledger_id=d.get("ledger_id"),
                    ref_id=d.get("ref_id"),
                    timestamp=d.get("timestamp"),
                    sequence=sequence,
                    raw=d,
                )
                for d in data
            ]
        if channel == "instrument":
            return [
                Instrument(
                    snapshot=msg.get("type") == "snapshot",
                    assets=list(data.get("assets", [])),
                    pairs=list(data.get("pairs", [])),
                    raw=msg,
                )
            ]
        return []
    method = msg.get("method")
    if method == "pong":
        return [Pong(req_id=_req_id(msg.get("req_id")), raw=msg)]
    if method is not None and "success" in msg:
        if not isinstance(method, str):
            raise DecodeError(f"'method' must be a string, got {_brief(method)}")
        result: dict[str, Any] = msg["result"] if isinstance(msg.get("result"), dict) else {}
        return [
            Ack(
                method=method,
                success=bool(msg["success"]),
                channel=result.get("channel"),
                symbol=result.get("symbol", msg.get("symbol")),
                error=msg.get("error"),
                req_id=_req_id(msg.get("req_id")),
                raw=msg,
            )
        ]
    return []


def _parse_v1_event(msg: dict[str, Any]) -> list[Message]:
    event = msg.get("event")
    if event == "heartbeat":
        return [Heartbeat()]
    if event == "pong":
        return [Pong(req_id=_req_id(msg.get("reqid")), raw=msg)]
    if event == "systemStatus":
        return [
            SystemStatus(
                system=msg["status"],
                version=msg.get("version"),
                connection_id=msg.get("connectionID"),
                raw=msg,
            )
        ]
    if event == "subscriptionStatus":
        sub: dict[str, Any] = (
            msg["subscription"] if isinstance(msg.get("subscription"), dict) else {}
        )
        status = msg.get("status")
        return [
            Ack(
                method="unsubscribe" if status == "unsubscribed" else "subscribe",
                success=status in ("subscribed", "unsubscribed", "ok"),
                channel=sub.get("name"),
                symbol=msg.get("pair"),
                error=msg.get("errorMessage"),
                req_id=_req_id(msg.get("reqid")),
                raw=msg,
            )
        ]
    if event == "error":
        return [
            ErrorMessage(
                error=str(msg.get("errorMessage")), req_id=_req_id(msg.get("reqid")), raw=msg
            )
        ]
    if isinstance(event, str) and event.endswith("Status"):  # addOrderStatus, cancelAllStatus...
        return [
            Ack(
                method=event[: -len("Status")],
                success=msg.get("status") == "ok",
                error=msg.get("errorMessage"),
                req_id=_req_id(msg.get("reqid")),
                raw=msg,
            )
        ]
    return []


def _parse_v1_private(msg: list[Any]) -> list[Message]:
    # [payload, channelName, {"sequence": n}]; the first message after subscribing is a snapshot
    payload, name, meta = msg[0], msg[1], msg[2]
    sequence = meta.get("sequence") if isinstance(meta, dict) else None
    snapshot = sequence == 1
    out: list[Message] = []
    for entry in payload:
        for ident, body in entry.items():
            if name == "openOrders":
                out.append(_v1_open_order(ident, body, snapshot, sequence))
            else:
                out.append(_v1_own_trade(ident, body, snapshot, sequence))
    return out


def _parse_v1_array(msg: list[Any]) -> list[Message]:
    if len(msg) == 3 and msg[1] in ("openOrders", "ownTrades") and isinstance(msg[0], list):
        return _parse_v1_private(msg)
    if len(msg) < 4 or not isinstance(msg[-2], str) or not isinstance(msg[-1], str):
        return []
    name, pair, payload = msg[-2], msg[-1], msg[1]
    if name == "ticker":
        return [
            Ticker(
                symbol=pair,
                bid=_dec(payload["b"][0]),
                bid_qty=_dec(payload["b"][2]),
                ask=_dec(payload["a"][0]),
                ask_qty=_dec(payload["a"][2]),
                last=_dec(payload["c"][0]),
                volume=_dec(payload["v"][1]),
                vwap=_dec(payload["p"][1]),
                low=_dec(payload["l"][1]),
                high=_dec(payload["h"][1]),
                open=_dec(payload["o"][1]),
                raw=msg,
            )
        ]
    if name == "trade":
        return [
            Trade(
                symbol=pair,
                side=_SIDES[t[3]],
                price=_dec(t[0]),
                qty=_dec(t[1]),
                ord_type=_TYPES.get(t[4], t[4]),
                timestamp=v1_timestamp(t[2]),
                raw=t,
            )
            for t in payload
        ]
    if name == "spread":
        return [
            Spread(
                symbol=pair,
                bid=_dec(payload[0]),
                ask=_dec(payload[1]),
                timestamp=v1_timestamp(payload[2]),
                bid_qty=_dec(payload[3]),
                ask_qty=_dec(payload[4]),
                raw=msg,
            )
        ]
    if name.startswith("ohlc-"):
        interval = _int(name[5:])
        etime = _int(str(payload[1]).partition(".")[0])
        begin = _EPOCH + timedelta(seconds=etime - interval * 60)
        return [
            Candle(
                symbol=pair,
                open=_dec(payload[2]),
                high=_dec(payload[3]),
                low=_dec(payload[4]),
                close=_dec(payload[5]),
                vwap=_dec(payload[6]),
                volume=_dec(payload[7]),
                trades=_int(payload[8]),
                interval=interval,
                interval_begin=begin.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                raw=msg,
            )
        ]
    return []


def parse_message(msg: Any) -> list[Message]:
    """Typed messages of one decoded non-book Kraken message (v1 or v2); [] if not modelled.

    Whatever the input, the only error is :class:`kbook.DecodeError` (a ``ValueError``): a
    malformed message never surfaces as ``KeyError``, ``TypeError`` or ``AttributeError``.

    :raises DecodeError: a message of a modelled channel whose fields are missing, of the wrong
        type or not numbers, or whose ``req_id`` is not an integer
    """
    try:
        if isinstance(msg, dict):
            if "Error" in msg and "event" not in msg and "method" not in msg:
                # v1's bare {"Error": "..."} (e.g. "Exceeded msg rate"), naming no request
                return [ErrorMessage(error=str(msg["Error"]), req_id=None, raw=msg)]
            return _parse_v1_event(msg) if "event" in msg else _parse_v2(msg)
        if isinstance(msg, list):
            return _parse_v1_array(msg)
    except DecodeError:
        raise
    except (
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        ValueError,
        ArithmeticError,
        RecursionError,
    ) as exc:
        raise DecodeError(f"malformed message ({type(exc).__name__}): {_brief(msg)}") from exc
    return []
