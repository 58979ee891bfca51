"""Kraken Spot WebSocket v1 (path ``/``): events, subscription status, and array messages.

Channel data are JSON arrays ``[channelID, payload..., channelName, pair]`` with every decimal
quoted at the pair's full precision (``"5541.30000"``) and timestamps as epoch seconds with six
decimals; pair names are v1's (``XBT/USD``, ``XDG/USD``). A book update carries asks and bids in
two separate objects when both sides change, the checksum ``"c"`` in the last one, and a level
re-entering the subscribed window carries the republish flag ``"r"``. Control messages are
objects whose keys Kraken writes in alphabetical order, so they are produced by
``json.dumps(..., sort_keys=True)``.

Error texts: ``Subscription depth not supported``, ``Currency pair not supported``, ``Malformed
request`` and ``Exceeded msg rate`` are Kraken's; the others are this simulator's choice in
Kraken's style.

The private half (``ownTrades``, ``openOrders`` and the trading events) is served on the same path
by :mod:`kbook.sim.private_v1` when the request carries a token; without one it gets Kraken's
public-endpoint refusal ("unavailable in this endpoint").

What it is not: the private feeds or trading events themselves (see
:mod:`kbook.sim.private_v1`).
"""

from __future__ import annotations

import json
from typing import Any

from kbook.sim.feeds import (
    BOOK_DEPTHS,
    BookEntry,
    BookMessage,
    OhlcMessage,
    SpreadMessage,
    TickerMessage,
    TradeMessage,
)
from kbook.sim.host import Host
from kbook.sim.market import INTERVALS
from kbook.sim.private_v1 import EVENTS, V1Private
from kbook.sim.venue import ChannelFeed, Subscription
from kbook.sim.wire import epoch_text, fixed, pow10

__all__ = ["HEARTBEAT", "V1Renderer", "V1Session", "VERSION", "system_status"]

VERSION = "1.9.1"
HEARTBEAT = b'{"event":"heartbeat"}'

ERR_MALFORMED = "Malformed request"
ERR_RATE = "Exceeded msg rate"
ERR_EVENT = "Unsupported event"
ERR_DEPTH = "Subscription depth not supported"
ERR_INTERVAL = "Subscription ohlc interval not supported"
ERR_NAME = "Subscription name invalid"
ERR_PAIR = "Currency pair not supported"
ERR_PAIR_FIELD = "Pair field must be an array"
ERR_SUBSCRIPTION = "Subscription field must be an object"
ERR_ALREADY = "Already subscribed"
ERR_NOT_FOUND = "Subscription Not Found"
ERR_PRIVATE = "Private data and trading are unavailable in this endpoint. Try ws-auth.kraken.com"

_PUBLIC = ("book", "ticker", "trade", "spread", "ohlc")
_PRIVATE = ("openOrders", "ownTrades")


def _control(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def system_status(connection_id: int, status: str) -> bytes:
    """The ``systemStatus`` event sent on connect and on every engine state change."""
    return _control(
        {
            "connectionID": connection_id,
            "event": "systemStatus",
            "status": status,
            "version": VERSION,
        }
    )


def _entry(e: BookEntry, pp: int, qp: int) -> str:
    flag = ',"r"' if e.republish else ""
    return f'["{fixed(e.price, pp)}","{fixed(e.qty, qp)}","{epoch_text(e.time_ns)}"{flag}]'


class V1Renderer:
    """Writes every v1 channel message; one instance serves all v1 connections."""

    name = "v1"

    def render(self, feed: ChannelFeed, message: Any) -> bytes:
        """Write ``message`` of ``feed`` as a v1 array frame.

        :raises TypeError: for a message kind v1 does not have (level3, instrument).
        """
        spec = feed.spec
        if spec is None:
            raise TypeError(f"v1 has no {feed.channel} channel")
        pp, qp = spec.price_precision, spec.qty_precision
        tail = f'"{feed.channel_name}",{json.dumps(spec.v1_name)}]'
        head = f"[{feed.channel_id},"
        if isinstance(message, BookMessage):
            return (head + self._book(message, pp, qp) + "," + tail).encode()
        if isinstance(message, TickerMessage):
            d = message.data
            unit = pow10(qp)
            # Keys in the order of Kraken's example: alphabetical.
            body = (
                f'{{"a":["{fixed(d.ask, pp)}",{d.ask_qty // unit},"{fixed(d.ask_qty, qp)}"],'
                f'"b":["{fixed(d.bid, pp)}",{d.bid_qty // unit},"{fixed(d.bid_qty, qp)}"],'
                f'"c":["{fixed(d.last, pp)}","{fixed(d.last_qty, qp)}"],'
                f'"h":["{fixed(d.today_high, pp)}","{fixed(d.high, pp)}"],'
                f'"l":["{fixed(d.today_low, pp)}","{fixed(d.low, pp)}"],'
                f'"o":["{fixed(d.today_open, pp)}","{fixed(d.open, pp)}"],'
                f'"p":["{fixed(d.today_vwap, pp)}","{fixed(d.vwap, pp)}"],'
                f'"t":[{d.today_count},{d.count}],'
                f'"v":["{fixed(d.today_volume, qp)}","{fixed(d.volume, qp)}"]}}'
            )
            return (head + body + "," + tail).encode()
        if isinstance(message, TradeMessage):
            trades = ",".join(
                f'["{fixed(t.price, pp)}","{fixed(t.qty, qp)}","{epoch_text(t.time_ns)}",'
                f'"{t.side[0]}","{t.ord_type[0]}",""]'
                for t in message.trades
            )
            return (head + f"[{trades}]," + tail).encode()
        if isinstance(message, SpreadMessage):
            body = (
                f'["{fixed(message.bid, pp)}","{fixed(message.ask, pp)}",'
                f'"{epoch_text(message.time_ns)}","{fixed(message.bid_qty, qp)}",'
                f'"{fixed(message.ask_qty, qp)}"]'
            )
            return (head + body + "," + tail).encode()
        if isinstance(message, OhlcMessage):
            # v1 sends one candle: on subscribe the last one (even if old), then the running one.
            c = message.candles[-1]
            body = (
                f'["{epoch_text(c.updated_ns)}","{epoch_text(c.end_ns)}",'
                f'"{fixed(c.open, pp)}","{fixed(c.high, pp)}","{fixed(c.low, pp)}",'
                f'"{fixed(c.close, pp)}","{fixed(c.vwap(), pp)}","{fixed(c.volume, qp)}",'
                f"{c.trades}]"
            )
            return (head + body + "," + tail).encode()
        raise TypeError(f"v1 has no message for {type(message).__name__}")

    @staticmethod
    def _book(message: BookMessage, pp: int, qp: int) -> str:
        asks = ",".join(_entry(e, pp, qp) for e in message.asks)
        bids = ",".join(_entry(e, pp, qp) for e in message.bids)
        if message.snapshot:
            # No checksum on v1 snapshots.
            return f'{{"as":[{asks}],"bs":[{bids}]}}'
        parts = []
        if message.asks:
            parts.append(f'"a":[{asks}]')
        if message.bids:
            parts.append(f'"b":[{bids}]')
        # Both sides travel as two objects; the checksum belongs to the last one only.
        parts[-1] += f',"c":"{message.checksum}"'
        return ",".join("{" + part + "}" for part in parts)


RENDERER = V1Renderer()


class V1Session:
    """Parses one connection's v1 requests and answers them through its :class:`Host`."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.private = V1Private(host)

    def _send(self, obj: dict[str, Any]) -> None:
        self.host.send_control(_control(obj))

    def _error(self, text: str, reqid: Any) -> None:
        obj: dict[str, Any] = {"errorMessage": text, "event": "error"}
        if reqid is not None:
            obj["reqid"] = reqid
        self._send(obj)

    def _status_error(
        self, text: str, reqid: Any, pair: str | None, subscription: dict[str, Any]
    ) -> None:
        obj: dict[str, Any] = {
            "errorMessage": text,
            "event": "subscriptionStatus",
            "status": "error",
            "subscription": subscription,
        }
        if pair is not None:
            obj["pair"] = pair
        if reqid is not None:
            obj["reqid"] = reqid
        self._send(obj)

    def refuse_rate(self, raw: bytes) -> None:
        """Answer a request with ``Exceeded msg rate`` without acting on it."""
        try:
            req = json.loads(raw)
        except ValueError:
            req = None
        self._error(ERR_RATE, req.get("reqid") if isinstance(req, dict) else None)

    def on_text(self, raw: bytes) -> None:
        """Handle one request frame."""
        try:
            req = json.loads(raw)
        except ValueError:
            self._error(ERR_MALFORMED, None)
            return
        if not isinstance(req, dict):
            self._error(ERR_MALFORMED, None)
            return
        event, reqid = req.get("event"), req.get("reqid")
        if not self.host.admit_request():
            self._error(ERR_RATE, reqid)
            return
        if event == "ping":
            obj: dict[str, Any] = {"event": "pong"}
            if reqid is not None:
                obj["reqid"] = reqid
            self._send(obj)
        elif event in ("subscribe", "unsubscribe"):
            self._subscription(event, req, reqid)
        elif event in EVENTS:
            assert isinstance(event, str)
            self.private.event(event, raw, reqid)
        else:
            self._error(ERR_EVENT, reqid)

    def _subscription(self, event: str, req: dict[str, Any], reqid: Any) -> None:
        if event == "unsubscribe" and "channelID" in req and "subscription" not in req:
            self._unsubscribe_channel_id(req["channelID"], reqid)
            return
        subscription = req.get("subscription")
        if not isinstance(subscription, dict):
            self._error(ERR_SUBSCRIPTION, reqid)
            return
        name = subscription.get("name")
        echo: dict[str, Any] = {"name": name}
        pairs = req.get("pair")
        if name in _PRIVATE:
            if "token" in subscription:
                assert isinstance(name, str)
                self.private.subscription(event, name, subscription, reqid)
            else:
                self._status_error(ERR_PRIVATE, reqid, None, echo)
            return
        if not isinstance(pairs, list) or not pairs or not all(isinstance(p, str) for p in pairs):
            self._status_error(ERR_PAIR_FIELD, reqid, None, echo)
            return
        param: int | str | None = None
        error: str | None = None
        if name == "book":
            depth = subscription.get("depth", 10)
            echo["depth"] = depth
            if isinstance(depth, bool) or depth not in BOOK_DEPTHS:
                error = ERR_DEPTH
            else:
                param = int(depth)
        elif name == "ohlc":
            interval = subscription.get("interval", 1)
            echo["interval"] = interval
            if isinstance(interval, bool) or interval not in INTERVALS:
                error = ERR_INTERVAL
            else:
                param = int(interval)
        elif name == "ticker":
            param = "trades"  # v1's ticker is published on trades
        elif name not in _PUBLIC:
            error = ERR_NAME
        for pair in pairs:
            if error is not None:
                self._status_error(error, reqid, pair, echo)
            else:
                assert isinstance(name, str)
                self._one(event, name, pair, param, echo, reqid)

    def _one(
        self,
        event: str,
        name: str,
        pair: str,
        param: int | str | None,
        echo: dict[str, Any],
        reqid: Any,
    ) -> None:
        host = self.host
        market = host.venue.by_v1.get(pair)
        if market is None:
            self._status_error(f"{ERR_PAIR}", reqid, pair, echo)
            return
        channel_name = f"{name}-{param}" if name in ("book", "ohlc") else name
        key = (channel_name, pair)
        held = host.subscriptions.get(key)
        if event == "unsubscribe":
            if held is None:
                self._status_error(ERR_NOT_FOUND, reqid, pair, echo)
                return
            host.unsubscribe(held)
            self._status(held, "unsubscribed", reqid)
            return
        if held is not None:
            self._status_error(ERR_ALREADY, reqid, pair, echo)
            return
        sub = host.subscribe(RENDERER, name, market.symbol, param, key, {"echo": dict(echo)})
        self._status(sub, "subscribed", reqid)
        # v1 starts book, ticker, spread and ohlc with the current state; trade only streams.
        host.activate(sub, snapshot=name != "trade")

    def _status(self, sub: Subscription, status: str, reqid: Any) -> None:
        feed = sub.feed
        assert feed.spec is not None
        obj: dict[str, Any] = {
            "channelID": feed.channel_id,
            "channelName": feed.channel_name,
            "event": "subscriptionStatus",
            "pair": feed.spec.v1_name,
            "status": status,
            "subscription": sub.options["echo"],
        }
        if reqid is not None:
            obj["reqid"] = reqid
        self._send(obj)

    def _unsubscribe_channel_id(self, channel_id: Any, reqid: Any) -> None:
        for sub in list(self.host.subscriptions.values()):
            if sub.feed.channel_id == channel_id:
                self.host.unsubscribe(sub)
                self._status(sub, "unsubscribed", reqid)
                return
        self._error(ERR_NOT_FOUND, reqid)
