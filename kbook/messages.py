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

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

__all__ = [
    "Ack",
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
    change: Decimal | None = None       # v2: 24 h change in the quote currency
    change_pct: Decimal | None = None   # v2: 24 h change in percent
    open: Decimal | None = None         # v1: today's opening price
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
    trade_id: int | None = None         # v2 only: sequential per book
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
    interval: int                       # minutes
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

    method: str                         # subscribe, unsubscribe, ... (v1: the event name)
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


Message = (
    Ticker | Trade | Candle | Spread | SystemStatus | Heartbeat | Pong | Ack | ErrorMessage
    | Instrument
)


def _dec(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        return Decimal(value)
    raise ValueError(f"expected a number, got {value!r}")


def _opt_dec(value: Any) -> Decimal | None:
    return None if value is None else _dec(value)


def v1_timestamp(text: str) -> str:
    """Convert a v1 epoch string (``"1534614057.321597"``) to RFC 3339, exactly.

    >>> v1_timestamp("1534614057.321597")
    '2018-08-18T17:40:57.321597Z'
    """
    whole, _, frac = text.partition(".")
    micros = int((frac + "000000")[:6])
    stamp = _EPOCH + timedelta(seconds=int(whole), microseconds=micros)
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
                    symbol=d["symbol"], bid=_dec(d["bid"]), bid_qty=_dec(d["bid_qty"]),
                    ask=_dec(d["ask"]), ask_qty=_dec(d["ask_qty"]), last=_dec(d["last"]),
                    volume=_dec(d["volume"]), vwap=_dec(d["vwap"]), low=_dec(d["low"]),
                    high=_dec(d["high"]), change=_opt_dec(d.get("change")),
                    change_pct=_opt_dec(d.get("change_pct")), timestamp=d.get("timestamp"), raw=d,
                )
                for d in data
            ]
        if channel == "trade":
            return [
                Trade(
                    symbol=d["symbol"], side=_SIDES[d["side"]], price=_dec(d["price"]),
                    qty=_dec(d["qty"]), ord_type=_TYPES.get(d["ord_type"], d["ord_type"]),
                    timestamp=d["timestamp"], trade_id=int(d["trade_id"]), raw=d,
                )
                for d in data
            ]
        if channel == "ohlc":
            return [
                Candle(
                    symbol=d["symbol"], open=_dec(d["open"]), high=_dec(d["high"]),
                    low=_dec(d["low"]), close=_dec(d["close"]), vwap=_dec(d["vwap"]),
                    volume=_dec(d["volume"]), trades=int(d["trades"]), interval=int(d["interval"]),
                    interval_begin=d["interval_begin"], raw=d,
                )
                for d in data
            ]
        if channel == "status":
            return [
                SystemStatus(system=d["system"], version=d.get("version"),
                             connection_id=d.get("connection_id"), raw=d)
                for d in data
            ]
        if channel == "heartbeat":
            return [Heartbeat()]
        if channel == "instrument":
            return [Instrument(snapshot=msg.get("type") == "snapshot",
                               assets=list(data.get("assets", [])),
                               pairs=list(data.get("pairs", [])), raw=msg)]
        return []
    method = msg.get("method")
    if method == "pong":
        return [Pong(req_id=msg.get("req_id"), raw=msg)]
    if method is not None and "success" in msg:
        result: dict[str, Any] = msg["result"] if isinstance(msg.get("result"), dict) else {}
        return [
            Ack(
                method=method, success=bool(msg["success"]), channel=result.get("channel"),
                symbol=result.get("symbol", msg.get("symbol")), error=msg.get("error"),
                req_id=msg.get("req_id"), raw=msg,
            )
        ]
    return []


def _parse_v1_event(msg: dict[str, Any]) -> list[Message]:
    event = msg.get("event")
    if event == "heartbeat":
        return [Heartbeat()]
    if event == "pong":
        return [Pong(req_id=msg.get("reqid"), raw=msg)]
    if event == "systemStatus":
        return [SystemStatus(system=msg["status"], version=msg.get("version"),
                             connection_id=msg.get("connectionID"), raw=msg)]
    if event == "subscriptionStatus":
        sub: dict[str, Any] = (
            msg["subscription"] if isinstance(msg.get("subscription"), dict) else {}
        )
        status = msg.get("status")
        return [
            Ack(
                method="unsubscribe" if status == "unsubscribed" else "subscribe",
                success=status in ("subscribed", "unsubscribed", "ok"),
                channel=sub.get("name"), symbol=msg.get("pair"), error=msg.get("errorMessage"),
                req_id=msg.get("reqid"), raw=msg,
            )
        ]
    if event == "error":
        return [ErrorMessage(error=str(msg.get("errorMessage")), req_id=msg.get("reqid"),
                             raw=msg)]
    return []


def _parse_v1_array(msg: list[Any]) -> list[Message]:
    if len(msg) < 4 or not isinstance(msg[-2], str) or not isinstance(msg[-1], str):
        return []
    name, pair, payload = msg[-2], msg[-1], msg[1]
    if name == "ticker":
        return [
            Ticker(
                symbol=pair, bid=_dec(payload["b"][0]), bid_qty=_dec(payload["b"][2]),
                ask=_dec(payload["a"][0]), ask_qty=_dec(payload["a"][2]),
                last=_dec(payload["c"][0]), volume=_dec(payload["v"][1]),
                vwap=_dec(payload["p"][1]), low=_dec(payload["l"][1]),
                high=_dec(payload["h"][1]), open=_dec(payload["o"][1]), raw=msg,
            )
        ]
    if name == "trade":
        return [
            Trade(
                symbol=pair, side=_SIDES[t[3]], price=_dec(t[0]), qty=_dec(t[1]),
                ord_type=_TYPES.get(t[4], t[4]), timestamp=v1_timestamp(t[2]), raw=t,
            )
            for t in payload
        ]
    if name == "spread":
        return [
            Spread(symbol=pair, bid=_dec(payload[0]), ask=_dec(payload[1]),
                   timestamp=v1_timestamp(payload[2]), bid_qty=_dec(payload[3]),
                   ask_qty=_dec(payload[4]), raw=msg)
        ]
    if name.startswith("ohlc-"):
        interval = int(name[5:])
        etime = int(str(payload[1]).partition(".")[0])
        begin = _EPOCH + timedelta(seconds=etime - interval * 60)
        return [
            Candle(
                symbol=pair, open=_dec(payload[2]), high=_dec(payload[3]), low=_dec(payload[4]),
                close=_dec(payload[5]), vwap=_dec(payload[6]), volume=_dec(payload[7]),
                trades=int(payload[8]), interval=interval,
                interval_begin=begin.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), raw=msg,
            )
        ]
    return []


def parse_message(msg: Any) -> list[Message]:
    """Typed messages of one decoded non-book Kraken message (v1 or v2); [] if not modelled.

    :raises ValueError: a message of a modelled channel whose fields are missing or not numbers
    """
    try:
        if isinstance(msg, dict):
            return _parse_v1_event(msg) if "event" in msg else _parse_v2(msg)
        if isinstance(msg, list):
            return _parse_v1_array(msg)
    except (KeyError, IndexError, TypeError, ArithmeticError) as exc:
        raise ValueError(f"malformed {type(exc).__name__}: {msg!r:.200}") from exc
    return []
