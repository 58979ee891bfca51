"""Kraken Spot WebSocket v2 (path ``/v2``): requests, acks and errors, and channel messages.

Channel messages are written by hand, field by field, in the key order of Kraken's published
examples (``tests/data/kraken``), with prices and quantities as JSON numbers in float-style
text (trailing zeros dropped, ``.0`` kept) so a client has to apply the pair's precision from the
``instrument`` channel before it checksums. Control messages (acks, errors, pong, status) carry
their keys in alphabetical order, as every Kraken example of them does, so they are produced by
``json.dumps(..., sort_keys=True)``.

Error texts: ``Subscription depth not supported``, ``Currency pair not supported <symbol>`` (with
a top-level ``symbol``) and ``Exceeded msg rate`` are what Kraken answers; the texts of the other
errors (missing or unknown token, malformed request, unknown channel or method, bad interval or
trigger, duplicate or unknown subscription) are not documented and are this simulator's choice,
in Kraken's style. Clients should key off ``success``, never the text.

Level3 is served on the same path as everything else (Kraken serves it from a separate host) and
needs a token from :meth:`kbook.sim.Simulator.issue_token`. The level3 messages carry no
top-level ``timestamp``, like the published examples.

The private half (trading methods, ``executions`` and ``balances``) is served on the same path
by :mod:`kbook.sim.private_v2`, which this session hands those requests to.

What it is not: the trading methods or private channels themselves (see
:mod:`kbook.sim.private_v2`).
"""

from __future__ import annotations

import json
from typing import Any

from kbook.sim.feeds import (
    BOOK_DEPTHS,
    LEVEL3_DEPTHS,
    BookMessage,
    L3Entry,
    L3Message,
    OhlcMessage,
    TickerMessage,
    TradeMessage,
)
from kbook.sim.host import Host, wall_ns
from kbook.sim.market import INTERVALS
from kbook.sim.pairs import ASSETS, AssetSpec, PairSpec
from kbook.sim.private_v2 import METHODS, PRIVATE_CHANNELS, V2Private
from kbook.sim.venue import ChannelFeed, InstrumentMessage, Subscription
from kbook.sim.wire import increment, number, rfc3339_ns, rfc3339_us

__all__ = [
    "API_VERSION",
    "HEARTBEAT",
    "V2Renderer",
    "V2Session",
    "control",
    "instrument_message",
    "status_message",
]

API_VERSION = "2.0.0"
HEARTBEAT = b'{"channel":"heartbeat"}'

ERR_MALFORMED = "Malformed request"
ERR_RATE = "Exceeded msg rate"
ERR_DEPTH = "Subscription depth not supported"
ERR_PAIR = "Currency pair not supported"
ERR_CHANNEL = "Channel not supported"
ERR_METHOD = "Method not supported"
ERR_INTERVAL = "Subscription interval not supported"
ERR_TRIGGER = "Subscription event_trigger not supported"
ERR_SNAPSHOT = "Subscription snapshot must be a boolean"
ERR_SYMBOLS = "Symbol(s) required"
ERR_TOKEN_MISSING = "Token required"
ERR_TOKEN_INVALID = "ESession:Invalid session"
ERR_ALREADY = "Already subscribed"
ERR_NOT_FOUND = "Subscription Not Found"
ERR_L3_LIMIT = "Exceeded level3 symbol limit"

#: Kraken's ``level3`` limit per connection.
LEVEL3_MAX_SYMBOLS = 200
_SYMBOL_CHANNELS = ("book", "level3", "ticker", "trade", "ohlc")
_WARN_OHLC = "timestamp is deprecated, use interval_begin"
_WARN_INSTRUMENT = "tick_size is deprecated, use price_increment"
# Defaults differ per channel: only trade defaults to no snapshot.
_SNAPSHOT_DEFAULT = {"trade": False}


def control(obj: dict[str, Any]) -> bytes:
    """Encode a control message with sorted keys, as Kraken writes acks, errors and status."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def status_message(connection_id: int, system: str) -> bytes:
    """The ``status`` update sent on connect and on every engine state change."""
    return control(
        {
            "channel": "status",
            "type": "update",
            "data": [
                {
                    "api_version": "v2",
                    "connection_id": connection_id,
                    "system": system,
                    "version": API_VERSION,
                }
            ],
        }
    )


def _decimal_text(text: str) -> str:
    """A decimal written as a v2 number (``"4"`` -> ``4.0``, ``"0.50"`` -> ``0.5``)."""
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    return f"{whole or '0'}.{frac or '0'}"


def _asset(spec: AssetSpec) -> str:
    margin = spec.margin_rate if spec.margin_rate is not None else "0.0"
    return (
        f'{{"id":"{spec.id}","status":"enabled","precision":{spec.precision},'
        f'"precision_display":{spec.precision_display},'
        f'"borrowable":{"true" if spec.borrowable else "false"},'
        f'"collateral_value":{_decimal_text(spec.collateral_value)},'
        f'"margin_rate":{_decimal_text(margin)}}}'
    )


def _pair(spec: PairSpec, status: str) -> str:
    pair_status = "online" if status == "online" else status
    margin = (
        ',"margin_initial":0.2,"position_limit_long":250,"position_limit_short":200'
        if spec.marginable
        else ""
    )
    tick = increment(spec.price_precision)
    return (
        f'{{"symbol":{json.dumps(spec.symbol)},"base":{json.dumps(spec.base)},'
        f'"quote":{json.dumps(spec.quote)},"status":"{pair_status}",'
        f'"qty_precision":{spec.qty_precision},"qty_increment":{increment(spec.qty_precision)},'
        f'"price_precision":{spec.price_precision},"cost_precision":{spec.cost_precision},'
        f'"marginable":{"true" if spec.marginable else "false"},"has_index":true,'
        f'"cost_min":{_decimal_text(spec.cost_min)}{margin},'
        f'"tick_size":{tick},"price_increment":{tick},"qty_min":{_decimal_text(spec.qty_min)}}}'
    )


def instrument_message(message: InstrumentMessage) -> bytes:
    """The ``instrument`` channel: assets and pairs on a snapshot, the pairs on an update."""
    if message.snapshot:
        ids: list[str] = []
        for spec in message.pairs:
            for asset in (spec.base, spec.quote):
                if asset not in ids:
                    ids.append(asset)
        assets = ",".join(_asset(ASSETS.get(i, AssetSpec(i, 8, 5))) for i in ids)
    else:
        assets = ""
    pairs = ",".join(_pair(spec, message.status) for spec in message.pairs)
    kind = "snapshot" if message.snapshot else "update"
    return (
        f'{{"channel":"instrument","type":"{kind}","data":{{"assets":[{assets}],'
        f'"pairs":[{pairs}]}}}}'
    ).encode()


def _book(symbol: str, message: BookMessage, pp: int, qp: int) -> bytes:
    bids = ",".join(
        f'{{"price":{number(e.price, pp)},"qty":{number(e.qty, qp)}}}' for e in message.bids
    )
    asks = ",".join(
        f'{{"price":{number(e.price, pp)},"qty":{number(e.qty, qp)}}}' for e in message.asks
    )
    kind = "snapshot" if message.snapshot else "update"
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":{symbol},"bids":[{bids}],'
        f'"asks":[{asks}],"checksum":{message.checksum},'
        f'"timestamp":"{rfc3339_us(message.time_ns)}"}}]}}'
    ).encode()


def _l3_orders(entries: list[L3Entry], pp: int, qp: int) -> str:
    return ",".join(
        (f'{{"event":"{e.event}",' if e.event is not None else "{")
        + f'"order_id":"{e.order_id}","limit_price":{number(e.price, pp)},'
        f'"order_qty":{number(e.qty, qp)},"timestamp":"{rfc3339_ns(e.time_ns)}"}}'
        for e in entries
    )


def _level3(symbol: str, message: L3Message, pp: int, qp: int) -> bytes:
    bids, asks = _l3_orders(message.bids, pp, qp), _l3_orders(message.asks, pp, qp)
    # The published examples put checksum after symbol in snapshots and first in updates.
    if message.snapshot:
        head = f'"symbol":{symbol},"checksum":{message.checksum}'
    else:
        head = f'"checksum":{message.checksum},"symbol":{symbol}'
    kind = "snapshot" if message.snapshot else "update"
    return (
        f'{{"channel":"level3","type":"{kind}","data":[{{{head},"bids":[{bids}],'
        f'"asks":[{asks}]}}]}}'
    ).encode()


def _trades(symbol: str, message: TradeMessage, pp: int, qp: int) -> bytes:
    data = ",".join(
        f'{{"symbol":{symbol},"side":"{t.side}","price":{number(t.price, pp)},'
        f'"qty":{number(t.qty, qp)},"ord_type":"{t.ord_type}","trade_id":{t.trade_id},'
        f'"timestamp":"{rfc3339_us(t.time_ns)}"}}'
        for t in message.trades
    )
    kind = "snapshot" if message.snapshot else "update"
    return f'{{"channel":"trade","type":"{kind}","data":[{data}]}}'.encode()


def _ticker(symbol: str, message: TickerMessage, pp: int, qp: int) -> bytes:
    d = message.data
    change = d.last - d.open
    # Percentage points with two decimals: hundredths of a percent, in integers.
    change_pct = (change * 10_000 * 2 + d.open) // (2 * d.open) if d.open else 0
    kind = "snapshot" if message.snapshot else "update"
    return (
        f'{{"channel":"ticker","type":"{kind}","data":[{{"symbol":{symbol},'
        f'"bid":{number(d.bid, pp)},"bid_qty":{number(d.bid_qty, qp)},'
        f'"ask":{number(d.ask, pp)},"ask_qty":{number(d.ask_qty, qp)},'
        f'"last":{number(d.last, pp)},"volume":{number(d.volume, qp)},'
        f'"vwap":{number(d.vwap, pp)},"low":{number(d.low, pp)},"high":{number(d.high, pp)},'
        f'"change":{number(change, pp)},"change_pct":{number(change_pct, 2)},'
        f'"timestamp":"{rfc3339_us(d.time_ns)}"}}]}}'
    ).encode()


def _ohlc(symbol: str, message: OhlcMessage, pp: int, qp: int) -> bytes:
    data = ",".join(
        f'{{"symbol":{symbol},"open":{number(c.open, pp)},"high":{number(c.high, pp)},'
        f'"low":{number(c.low, pp)},"close":{number(c.close, pp)},"trades":{c.trades},'
        f'"volume":{number(c.volume, qp)},"vwap":{number(c.vwap(), pp)},'
        f'"interval_begin":"{rfc3339_ns(c.begin_ns)}","interval":{c.interval},'
        f'"timestamp":"{rfc3339_us(c.end_ns)}"}}'
        for c in message.candles
    )
    kind = "snapshot" if message.snapshot else "update"
    return (
        f'{{"channel":"ohlc","type":"{kind}","timestamp":"{rfc3339_ns(message.time_ns)}",'
        f'"data":[{data}]}}'
    ).encode()


class V2Renderer:
    """Writes every v2 channel message; one instance serves all v2 connections."""

    name = "v2"

    def render(self, feed: ChannelFeed, message: Any) -> bytes:
        """Write ``message`` of ``feed`` as a v2 frame.

        :raises TypeError: for a message kind v2 does not have (v1's spread).
        """
        if isinstance(message, InstrumentMessage):
            return instrument_message(message)
        spec = feed.spec
        assert spec is not None
        symbol = json.dumps(spec.symbol)
        pp, qp = spec.price_precision, spec.qty_precision
        if isinstance(message, BookMessage):
            return _book(symbol, message, pp, qp)
        if isinstance(message, L3Message):
            return _level3(symbol, message, pp, qp)
        if isinstance(message, TradeMessage):
            return _trades(symbol, message, pp, qp)
        if isinstance(message, TickerMessage):
            return _ticker(symbol, message, pp, qp)
        if isinstance(message, OhlcMessage):
            return _ohlc(symbol, message, pp, qp)
        raise TypeError(f"v2 has no message for {type(message).__name__}")


RENDERER = V2Renderer()


class _Refusal(Exception):
    """A request parameter is invalid; ``text`` is the error to answer with."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class V2Session:
    """Parses one connection's v2 requests and answers them through its :class:`Host`."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.private = V2Private(host)

    # -- answers ------------------------------------------------------------------------------

    def _error(
        self, method: Any, req_id: Any, time_in: int, text: str, symbol: str | None = None
    ) -> None:
        obj: dict[str, Any] = {"error": text, "success": False, "time_in": rfc3339_us(time_in)}
        if isinstance(method, str):
            obj["method"] = method
        if req_id is not None:
            obj["req_id"] = req_id
        if symbol is not None:
            obj["symbol"] = symbol
        obj["time_out"] = rfc3339_us(wall_ns())
        self.host.send_control(control(obj))

    def _ack(self, method: str, req_id: Any, time_in: int, result: dict[str, Any]) -> None:
        obj: dict[str, Any] = {
            "method": method,
            "result": result,
            "success": True,
            "time_in": rfc3339_us(time_in),
            "time_out": rfc3339_us(wall_ns()),
        }
        if req_id is not None:
            obj["req_id"] = req_id
        self.host.send_control(control(obj))

    def refuse_rate(self, raw: bytes) -> None:
        """Answer a request with ``Exceeded msg rate`` without acting on it."""
        time_in = wall_ns()
        try:
            req = json.loads(raw)
        except ValueError:
            req = None
        method = req.get("method") if isinstance(req, dict) else None
        req_id = req.get("req_id") if isinstance(req, dict) else None
        self._error(method, req_id, time_in, ERR_RATE)

    # -- requests -----------------------------------------------------------------------------

    def on_text(self, raw: bytes) -> None:
        """Handle one request frame."""
        time_in = wall_ns()
        try:
            req = json.loads(raw)
        except ValueError:
            self._error(None, None, time_in, ERR_MALFORMED)
            return
        if not isinstance(req, dict):
            self._error(None, None, time_in, ERR_MALFORMED)
            return
        method, req_id = req.get("method"), req.get("req_id")
        if req_id is not None and (isinstance(req_id, bool) or not isinstance(req_id, int)):
            self._error(method, None, time_in, ERR_MALFORMED)
            return
        if not self.host.admit_request():
            self._error(method, req_id, time_in, ERR_RATE)
            return
        if method == "ping":
            obj: dict[str, Any] = {"method": "pong", "time_in": rfc3339_us(time_in)}
            if req_id is not None:
                obj["req_id"] = req_id
            obj["time_out"] = rfc3339_us(wall_ns())
            self.host.send_control(control(obj))
        elif method in ("subscribe", "unsubscribe"):
            params = req.get("params")
            if not isinstance(params, dict):
                self._error(method, req_id, time_in, ERR_MALFORMED)
                return
            try:
                self._subscription(method, params, req_id, time_in)
            except _Refusal as refusal:
                self._error(method, req_id, time_in, refusal.text)
        elif method in METHODS:
            assert isinstance(method, str)
            self.private.method(method, raw, req_id, time_in)
        else:
            self._error(method, req_id, time_in, ERR_METHOD)

    def _param(self, channel: str, params: dict[str, Any], method: str) -> int | str | None:
        """Validate the channel's parameter and return it (depth, interval, trigger or None)."""
        if channel == "book":
            depth = params.get("depth", 10)
            if isinstance(depth, bool) or depth not in BOOK_DEPTHS:
                raise _Refusal(ERR_DEPTH)
            return int(depth)
        if channel == "level3":
            token = params.get("token")
            if not isinstance(token, str) or not token:
                raise _Refusal(ERR_TOKEN_MISSING)
            if not self.host.token_ok(token):
                raise _Refusal(ERR_TOKEN_INVALID)
            depth = params.get("depth", 10)
            if isinstance(depth, bool) or depth not in LEVEL3_DEPTHS:
                raise _Refusal(ERR_DEPTH)
            return int(depth)
        if channel == "ohlc":
            interval = params.get("interval", 1)
            if isinstance(interval, bool) or interval not in INTERVALS:
                raise _Refusal(ERR_INTERVAL)
            return int(interval)
        if channel == "ticker":
            trigger = params.get("event_trigger", "trades")
            if trigger not in ("trades", "bbo"):
                raise _Refusal(ERR_TRIGGER)
            return str(trigger)
        return None

    def _subscription(self, method: str, params: dict[str, Any], req_id: Any, time_in: int) -> None:
        channel = params.get("channel")
        if channel == "heartbeat":
            # Heartbeats start with any subscription; an explicit one (shown by Kraken's
            # reconnection guide) is simply acknowledged.
            self._ack(method, req_id, time_in, {"channel": "heartbeat"})
            return
        if channel in PRIVATE_CHANNELS:
            assert isinstance(channel, str)
            self.private.subscription(method, channel, params, req_id, time_in)
            return
        if channel not in _SYMBOL_CHANNELS and channel != "instrument":
            raise _Refusal(ERR_CHANNEL)
        assert isinstance(channel, str)
        snapshot = params.get("snapshot", _SNAPSHOT_DEFAULT.get(channel, True))
        if not isinstance(snapshot, bool):
            raise _Refusal(ERR_SNAPSHOT)
        param = self._param(channel, params, method)
        if channel == "instrument":
            self._one(method, channel, None, param, params, snapshot, req_id, time_in)
            return
        symbols = params.get("symbol")
        if (
            not isinstance(symbols, list)
            or not symbols
            or not all(isinstance(s, str) for s in symbols)
        ):
            raise _Refusal(ERR_SYMBOLS)
        for symbol in symbols:
            self._one(method, channel, symbol, param, params, snapshot, req_id, time_in)

    def _one(
        self,
        method: str,
        channel: str,
        symbol: str | None,
        param: int | str | None,
        params: dict[str, Any],
        snapshot: bool,
        req_id: Any,
        time_in: int,
    ) -> None:
        host = self.host
        if symbol is not None and symbol not in host.venue.markets:
            self._error(method, req_id, time_in, f"{ERR_PAIR} {symbol}", symbol)
            return
        # One subscription per channel and symbol (v2 book and ticker messages do not say which
        # depth or trigger they belong to), except ohlc whose candles name their interval.
        key = (f"ohlc-{param}" if channel == "ohlc" else channel, symbol)
        held = host.subscriptions.get(key)
        if method == "unsubscribe":
            if held is None:
                self._error(method, req_id, time_in, ERR_NOT_FOUND, symbol)
                return
            host.unsubscribe(held)
            self._ack(method, req_id, time_in, self._result(channel, symbol, held, False))
            return
        if held is not None:
            self._error(method, req_id, time_in, ERR_ALREADY, symbol)
            return
        if (
            channel == "level3"
            and sum(k[0] == "level3" for k in host.subscriptions) >= LEVEL3_MAX_SYMBOLS
        ):
            self._error(method, req_id, time_in, ERR_L3_LIMIT, symbol)
            return
        options: dict[str, Any] = {"snapshot": snapshot}
        if channel == "level3" and "depth" in params:
            options["depth_given"] = True
        if channel == "ticker" and "event_trigger" in params:
            options["trigger_given"] = True
        sub = host.subscribe(RENDERER, channel, symbol, param, key, options)
        self._ack(method, req_id, time_in, self._result(channel, symbol, sub, True))
        host.activate(sub, snapshot)

    @staticmethod
    def _result(
        channel: str, symbol: str | None, sub: Subscription, subscribing: bool
    ) -> dict[str, Any]:
        """The ``result`` of an ack, with the fields Kraken echoes for this channel."""
        result: dict[str, Any] = {"channel": channel}
        options, param = sub.options, sub.feed.param
        if symbol is not None:
            result["symbol"] = symbol
        if channel == "book":
            result["depth"] = param
            result["snapshot"] = options["snapshot"]
        elif channel == "level3":
            if subscribing:
                if options.get("depth_given"):
                    result["depth"] = param
                result["snapshot"] = options["snapshot"]
        elif channel == "ohlc":
            result["interval"] = param
            if subscribing:
                result["snapshot"] = options["snapshot"]
                result["warnings"] = [_WARN_OHLC]
        elif channel == "ticker":
            # Kraken echoes the trigger when unsubscribing even if it was never given.
            if not subscribing or options.get("trigger_given"):
                result["event_trigger"] = param
            if subscribing:
                result["snapshot"] = options["snapshot"]
        elif channel == "instrument":
            if subscribing:
                result["snapshot"] = options["snapshot"]
                result["warnings"] = [_WARN_INSTRUMENT]
        elif subscribing:
            result["snapshot"] = options["snapshot"]
        return result
