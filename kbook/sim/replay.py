"""A recorded capture served as a Kraken endpoint: backtests through the live code path.

:class:`ReplayServer` loads one capture (v1 or v2, any channels, as ``kbook record`` wrote it)
with :func:`kbook.capture.read_frames` and serves it over WebSocket (``wss://`` given a TLS
context). A connecting client gets the capture's status message (or an ``online`` one when none
was recorded); its ``subscribe`` requests are answered the way Kraken answers them, and each
accepted subscription then receives the recorded frames of its channel and symbol, starting at
the subscription's first snapshot, paced by the recorded receive times divided by ``speed``
(``speed=None``: as fast as the socket takes them). Data frames go out byte for byte as recorded;
acknowledgements, pongs and heartbeats are the server's own. A subscription the capture cannot
satisfy (a symbol or channel it does not hold, a different book depth) gets Kraken's error
answer. With ``loop=True`` each subscription starts over from its snapshot when it reaches the
end of the capture (one whose frames all share one receive time, such as a lone ``instrument``
snapshot, is sent once).

What it is not: a market. Nothing is generated or re-ordered; a frame that carries several
symbols is sent once, to a client subscribed to any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from kbook.capture import read_frames

__all__ = ["Capture", "ReplayServer", "load_capture"]

Key = tuple[str, str | None]  # (channel, symbol); symbol None for instrument
#: Seconds of silence after which a subscribed connection gets a heartbeat.
_HEARTBEAT_S = 1.0
_JSON = json.JSONEncoder(separators=(",", ":"))


@dataclass
class _Recorded:
    """One recorded data frame: when it arrived, its bytes, whose it is, and whether it is a
    snapshot."""

    received: int
    data: bytes
    keys: tuple[Key, ...]
    snapshot: bool


@dataclass
class Capture:
    """What a replay serves: ``protocol``, the ``status`` frame, the data ``frames`` by key,
    and the recorded subscription answers (``acks``: depth and v1 channel ids)."""

    path: str
    protocol: str
    status: bytes | None = None
    frames: list[_Recorded] = field(default_factory=list)
    acks: dict[Key, dict[str, Any]] = field(default_factory=dict)

    @property
    def keys(self) -> set[Key]:
        """Every (channel, symbol) the capture holds frames of."""
        return {key for frame in self.frames for key in frame.keys}

    def of(self, key: Key) -> list[int]:
        """Indexes of ``key``'s frames, from its first snapshot (or its first frame) on."""
        indexes = [i for i, frame in enumerate(self.frames) if key in frame.keys]
        for n, i in enumerate(indexes):
            if self.frames[i].snapshot:
                return indexes[n:]
        return indexes


def _v1_name(channel_name: str) -> str:
    """v1's subscription name of a channel name: ``book-100`` -> ``book``, ``ohlc-5`` ->
    ``ohlc``."""
    return channel_name.split("-", 1)[0]


def load_capture(path: str) -> Capture:
    """Read and index a capture (``-`` reads stdin).

    :raises CaptureError: unreadable file (from :mod:`kbook.capture`)
    :raises ValueError: no data frame in it
    """
    capture = Capture(path, "v2")
    decided = False
    last = 0
    for frame in read_frames(path):
        try:
            obj = json.loads(frame.data)
        except ValueError:
            continue  # a frame the recorder kept but nobody can parse: not served
        received = frame.received if frame.received is not None else last
        last = received
        if not decided:
            capture.protocol = (
                "v1"
                if isinstance(obj, list) or (isinstance(obj, dict) and "event" in obj)
                else "v2"
            )
            decided = True
        if capture.protocol == "v2":
            _index_v2(capture, obj, frame.data, received)
        else:
            _index_v1(capture, obj, frame.data, received)
    if not capture.frames:
        raise ValueError(f"{path}: no data frames to replay")
    return capture


def _index_v2(capture: Capture, obj: Any, data: bytes, received: int) -> None:
    if not isinstance(obj, dict):
        return
    if (
        obj.get("method") == "subscribe"
        and obj.get("success")
        and isinstance(obj.get("result"), dict)
    ):
        result = obj["result"]
        capture.acks.setdefault((str(result.get("channel")), result.get("symbol")), result)
        return
    channel = obj.get("channel")
    if channel == "status":
        if capture.status is None:
            capture.status = data
        return
    if not isinstance(channel, str) or channel == "heartbeat" or "data" not in obj:
        return
    payload = obj["data"]
    if channel == "instrument":
        keys: tuple[Key, ...] = (("instrument", None),)
    elif isinstance(payload, list):
        keys = tuple(
            dict.fromkeys(
                (channel, str(entry["symbol"]))
                for entry in payload
                if isinstance(entry, dict) and "symbol" in entry
            )
        )
    else:
        return
    if keys:
        capture.frames.append(_Recorded(received, data, keys, obj.get("type") == "snapshot"))


def _index_v1(capture: Capture, obj: Any, data: bytes, received: int) -> None:
    if isinstance(obj, dict):
        event = obj.get("event")
        if event == "systemStatus" and capture.status is None:
            capture.status = data
        elif event == "subscriptionStatus" and obj.get("status") == "subscribed":
            sub = obj.get("subscription")
            name = sub.get("name") if isinstance(sub, dict) else None
            capture.acks.setdefault((str(name), obj.get("pair")), obj)
        return
    if not isinstance(obj, list) or len(obj) < 4:
        return
    channel_name, pair = obj[-2], obj[-1]
    if not isinstance(channel_name, str) or not isinstance(pair, str):
        return
    body = obj[1]
    # a v1 book snapshot carries "as"/"bs"; its updates "a"/"b"; other channels start at once
    snapshot = isinstance(body, dict) and ("as" in body or "bs" in body)
    capture.frames.append(_Recorded(received, data, ((_v1_name(channel_name), pair),), snapshot))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _ReplayConnection(WSListener):
    """One client of a replay: requests in, recorded frames of its subscriptions out."""

    def __init__(self, server: ReplayServer) -> None:
        super().__init__()
        self.server = server
        self.capture = server.capture
        self.transport: WSTransport | None = None
        self.streams: dict[Key, asyncio.Task[None]] = {}
        self.sent_shared: set[int] = set()  # indexes of multi-symbol frames already sent
        self.last_sent = time.monotonic()
        self._writable = asyncio.Event()
        self._writable.set()
        self._heartbeat: asyncio.Task[None] | None = None

    # -- picows callbacks -------------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.server.connections.add(self)
        status = self.capture.status
        if status is None:
            status = (
                b'{"channel":"status","type":"update","data":[{"api_version":"v2",'
                b'"connection_id":0,"system":"online","version":"2.0.0"}]}'
                if self.capture.protocol == "v2"
                else b'{"connectionID":0,"event":"systemStatus","status":"online",'
                b'"version":"1.9.0"}'
            )
        self._send(status)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
        elif frame.msg_type == WSMsgType.TEXT:
            try:
                request = json.loads(frame.get_payload_as_bytes())
            except ValueError:
                return
            if isinstance(request, dict):
                self._request(request)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.transport = None
        self.server.connections.discard(self)
        for task in self.streams.values():
            task.cancel()
        if self._heartbeat is not None:
            self._heartbeat.cancel()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- requests ---------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.send(WSMsgType.TEXT, data)
            self.last_sent = time.monotonic()

    def _answer(self, obj: dict[str, Any]) -> None:
        self._send(_JSON.encode(obj).encode())

    def _request(self, request: dict[str, Any]) -> None:
        if self.capture.protocol == "v2":
            self._request_v2(request)
        else:
            self._request_v1(request)

    def _request_v2(self, request: dict[str, Any]) -> None:
        method = request.get("method")
        req_id = request.get("req_id")
        time_in = _now()
        if method == "ping":
            self._answer(
                {"method": "pong", "req_id": req_id, "time_in": time_in, "time_out": _now()}
            )
            return
        params = request.get("params") if isinstance(request.get("params"), dict) else {}
        assert isinstance(params, dict)
        channel = str(params.get("channel"))
        if method not in ("subscribe", "unsubscribe"):
            self._answer(
                {
                    "error": f"Method not supported by a replay: {method}",
                    "method": method,
                    "req_id": req_id,
                    "success": False,
                    "time_in": time_in,
                    "time_out": _now(),
                }
            )
            return
        symbols: list[str | None] = (
            [None] if channel == "instrument" else list(params.get("symbol") or [])
        )
        for symbol in symbols:
            key = (channel, symbol)
            result: dict[str, Any] = {"channel": channel}
            if "depth" in params:
                result["depth"] = params["depth"]
            if symbol is not None:
                result["symbol"] = symbol
            error = self._refusal(key, params.get("depth"))
            if method == "unsubscribe":
                task = self.streams.pop(key, None)
                if task is None:
                    error = error or "Subscription Not Found"
                else:
                    task.cancel()
            if error is not None:
                answer: dict[str, Any] = {
                    "error": error,
                    "method": method,
                    "req_id": req_id,
                    "success": False,
                    "time_in": time_in,
                    "time_out": _now(),
                }
                if symbol is not None:
                    answer["symbol"] = symbol
                self._answer(answer)
                continue
            if method == "subscribe":
                result["snapshot"] = params.get("snapshot", True)
                if key in self.streams:
                    self._answer(
                        {
                            "error": "Already subscribed",
                            "method": method,
                            "req_id": req_id,
                            "success": False,
                            "symbol": symbol,
                            "time_in": time_in,
                            "time_out": _now(),
                        }
                    )
                    continue
            self._answer(
                {
                    "method": method,
                    "req_id": req_id,
                    "result": result,
                    "success": True,
                    "time_in": time_in,
                    "time_out": _now(),
                }
            )
            if method == "subscribe":
                self._start(key)

    def _request_v1(self, request: dict[str, Any]) -> None:
        event = request.get("event")
        reqid = request.get("reqid")
        if event == "ping":
            self._answer({"event": "pong", **({"reqid": reqid} if reqid is not None else {})})
            return
        if event not in ("subscribe", "unsubscribe"):
            return
        sub = request.get("subscription") if isinstance(request.get("subscription"), dict) else {}
        assert isinstance(sub, dict)
        name = str(sub.get("name"))
        for pair in request.get("pair") or []:
            key = (name, pair)
            error = self._refusal(key, sub.get("depth"))
            if event == "unsubscribe":
                task = self.streams.pop(key, None)
                if task is None:
                    error = error or "Subscription Not Found"
                else:
                    task.cancel()
            if error is None and event == "subscribe" and key in self.streams:
                error = "Already subscribed"
            answer: dict[str, Any] = {
                "event": "subscriptionStatus",
                "pair": pair,
                "subscription": sub,
            }
            if reqid is not None:
                answer["reqid"] = reqid
            if error is not None:
                answer.update(errorMessage=error, status="error")
                self._answer(answer)
                continue
            recorded = self.capture.acks.get(key, {})
            for field_name in ("channelID", "channelName"):
                if field_name in recorded:
                    answer[field_name] = recorded[field_name]
            answer["status"] = "subscribed" if event == "subscribe" else "unsubscribed"
            self._answer(answer)
            if event == "subscribe":
                self._start(key)

    def _refusal(self, key: Key, depth: Any) -> str | None:
        """Kraken's error text when the capture cannot serve ``key`` (None: it can)."""
        channel, symbol = key
        if key not in self.server.keys:
            if symbol is not None and all(s != symbol for _, s in self.server.keys):
                return f"Currency pair not supported {symbol}"
            return f"Subscription not available in this capture: {channel} {symbol or ''}".strip()
        recorded = self.capture.acks.get(key, {})
        recorded_depth = recorded.get("depth", recorded.get("subscription", {}).get("depth"))
        if depth is not None and recorded_depth is not None and depth != recorded_depth:
            return f"Subscription depth not supported: this capture holds depth {recorded_depth}"
        return None

    # -- streaming --------------------------------------------------------------------------------

    def _start(self, key: Key) -> None:
        self.streams[key] = asyncio.ensure_future(self._stream(key))
        if self._heartbeat is None:
            self._heartbeat = asyncio.ensure_future(self._heartbeats())

    async def _stream(self, key: Key) -> None:
        frames = self.capture.frames
        indexes = self.capture.of(key)
        speed = self.server.speed
        while indexes:
            start_ns = frames[indexes[0]].received
            start = time.monotonic()
            for n, i in enumerate(indexes, start=1):
                recorded = frames[i]
                if speed is not None:
                    due = start + (recorded.received - start_ns) / 1e9 / speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if not self._writable.is_set():
                    await self._writable.wait()
                if self.transport is None:
                    return
                if len(recorded.keys) > 1:
                    if i in self.sent_shared:
                        continue
                    self.sent_shared.add(i)
                self._send(recorded.data)
                if speed is None and n % 64 == 0:
                    await asyncio.sleep(0)  # other subscriptions and requests get their turn
            # A stream of one moment (a lone snapshot: instrument, a book that never changed)
            # is sent once: looping it would resend it back to back, flooding the client.
            if not self.server.loop or frames[indexes[-1]].received == start_ns:
                return
            self.sent_shared.clear()
            await asyncio.sleep(0)

    async def _heartbeats(self) -> None:
        beat = (
            b'{"channel":"heartbeat"}'
            if self.capture.protocol == "v2"
            else b'{"event":"heartbeat"}'
        )
        while self.transport is not None:
            await asyncio.sleep(_HEARTBEAT_S / 4)
            if time.monotonic() - self.last_sent >= _HEARTBEAT_S:
                self._send(beat)


class ReplayServer:
    """Serve a capture over WebSocket, as Kraken would have sent it.

    :param capture: a capture path, or a :class:`Capture` already loaded
    :param host: interface to bind (loopback by default)
    :param port: TCP port; 0 picks a free one (see :attr:`port` and :attr:`url`)
    :param speed: how many times faster than recorded; None sends as fast as the socket takes
    :param loop: start every subscription over from its snapshot at the end of the capture
    :param tls: a server TLS context: serve ``wss://``
    """

    def __init__(
        self,
        capture: str | Capture,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        speed: float | None = 1.0,
        loop: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.capture = capture if isinstance(capture, Capture) else load_capture(capture)
        self.keys = self.capture.keys
        self.host = host
        self.port = port
        self.speed = speed
        self.loop = loop
        self.tls = tls
        self.connections: set[_ReplayConnection] = set()
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        """The endpoint: ``ws://HOST:PORT/v2`` for a v2 capture, ``ws://HOST:PORT/`` for v1."""
        scheme = "ws" if self.tls is None else "wss"
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = "/v2" if self.capture.protocol == "v2" else "/"
        return f"{scheme}://{host}:{self.port}{path}"

    def channels(self) -> list[str]:
        """``channel symbol`` of every subscription the capture can serve, sorted."""
        return sorted(f"{channel} {symbol or ''}".strip() for channel, symbol in self.keys)

    async def start(self) -> None:
        """Bind the server."""

        def route(request: WSUpgradeRequest) -> _ReplayConnection:
            return _ReplayConnection(self)

        self._server = await ws_create_server(
            route, self.host, self.port, ssl=self.tls, websocket_handshake_timeout=5
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close every connection (CLOSE 1001) and the server."""
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.send_close(WSCloseCode.GOING_AWAY, b"replay stopping")
                conn.transport.disconnect()
        tasks = [
            t
            for conn in self.connections
            for t in [*conn.streams.values(), *([conn._heartbeat] if conn._heartbeat else [])]
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def __aenter__(self) -> ReplayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def keys_text(keys: Iterable[Key]) -> str:
    """``channel symbol`` pairs, comma separated (what the CLI prints)."""
    return ", ".join(sorted(f"{c} {s or ''}".strip() for c, s in keys))
