"""The simulator's network side: a picows server speaking Kraken v2 at ``/v2`` and v1 at ``/``.

:class:`Simulator` is the public object. ``async with Simulator(seed=1) as sim:`` starts a
:class:`~kbook.sim.venue.Venue` (every pair's market and the pump that runs it), a picows
WebSocket server on the loopback interface (an ephemeral port unless told otherwise) and a
heartbeat timer; leaving the block closes every connection with CLOSE 1001, stops the tasks and
the server, and waits for all of it.

Each accepted socket gets a :class:`SimConnection`, a picows ``WSListener``. It answers the
client's CLOSE (picows' core API does not), parses requests through the protocol session of its
path, delivers channel messages the venue fans out, sends ``status``/``systemStatus`` on connect
and heartbeats after a second of silence, and applies the faults armed on it. Flow control: the
socket's ``pause_writing`` makes an unpaced venue wait; a paced venue keeps publishing, and a
connection whose unsent backlog passes ``max_backlog`` bytes is closed as a slow consumer (1008),
which is logged like a fault.

Waiting: :meth:`Simulator.settle` returns once every connection has read its requests and its
output has left the simulator (user-space buffer and kernel send queue empty, no replay running),
so tests wait for that instead of sleeping.

Clocks: every market timestamp on the wire (book, trade, ticker, ohlc, level3 times) comes from
the simulated clock, which starts at ``start_time`` and advances with each event, so a fixed
``start_time`` gives byte-identical market data; ``time_in``/``time_out`` of acks and pongs are
wall-clock times, because they describe the request, not the market.

Load tests: :meth:`Simulator.pregenerate` runs an independent copy of one pair's market and
records a checksummed stream (checksums still come from the reference model), and
:meth:`Simulator.replay` serves such a stream to every matching subscription at full speed. A
replay writes pre-framed WebSocket frames (server frames are unmasked, RFC 6455 section 5.1)
straight to the socket transport in large batches instead of one ``send`` per message, which is
what lets one Python process saturate a loopback socket.

The exchange: :attr:`Simulator.exchange` (:mod:`kbook.sim.exchange`) holds accounts made with
:meth:`Simulator.add_account`, and :attr:`Simulator.rest_url` serves ``GetWebSocketsToken``
(:mod:`kbook.sim.rest`) on its own loopback port; the tokens it issues open the private channels
and trading methods on the same WebSocket paths (:mod:`kbook.sim.private_v2`,
:mod:`kbook.sim.private_v1`). ``issue_token()`` without a key still hands out a public token
(level3 only).

TLS: given a server context (``tls=``, or ``kbook sim --tls-cert/--tls-key``) the simulator
serves ``wss://`` and its REST endpoint ``https://``, with the same certificate. Every upgrade
request's headers are kept in :attr:`Simulator.upgrade_headers` (tests check the client's
``User-Agent`` there).

What it is not: the rest of Kraken's REST API, or a public server: it binds to 127.0.0.1 unless
a host is given explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import socket
import ssl
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from kbook.sim import protocol_v1, protocol_v2
from kbook.sim.exchange import Exchange
from kbook.sim.faults import Armed, FaultRecord, Faults
from kbook.sim.market import PairMarket
from kbook.sim.pairs import PairSpec, resolve_pairs
from kbook.sim.records import Account
from kbook.sim.rest import RestServer
from kbook.sim.venue import ChannelFeed, InstrumentMessage, Renderer, Subscription, Venue
from kbook.sim.wire import rfc3339_us

__all__ = ["SimConnection", "PregeneratedStream", "Simulator"]

#: A fragmented request larger than this is refused (Kraken's requests are tiny).
_MAX_REQUEST = 64 * 1024
#: Pre-framed replay frames are written in batches of about this many bytes.
_REPLAY_BATCH = 256 * 1024
#: Heartbeat timer granularity.
_HEARTBEAT_TICK_S = 0.2
#: Consecutive event-loop passes with nothing pending before :meth:`Simulator.settle` returns;
#: the later passes give a client on the same loop its read callbacks for the last bytes.
_SETTLE_PASSES = 3
_CLOSE_GOING_AWAY = 1001
_CLOSE_POLICY = 1008
#: Starting balances of :meth:`Simulator.add_account` when none are given.
DEFAULT_BALANCES: dict[str, Decimal] = {
    "USD": Decimal("100000"),
    "GBP": Decimal("100000"),
    "BTC": Decimal("10"),
    "ETH": Decimal("100"),
    "DOGE": Decimal("1000000"),
    "SHIB": Decimal("10000000000"),
    "MATIC": Decimal("100000"),
}


def _ws_frame(payload: bytes) -> bytes:
    """A complete unmasked server TEXT frame around ``payload``."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload


def _bad_entry(data: bytes, other: str) -> bytes | None:
    """A v2 book update re-sent as the second entry of a two-entry frame, its first level made
    malformed (a price that is no number); None for frames that are not v2 book updates."""
    try:
        msg = json.loads(data)
    except ValueError:
        return None
    if not (
        isinstance(msg, dict)
        and msg.get("channel") == "book"
        and msg.get("type") == "update"
        and isinstance(msg.get("data"), list)
        and msg["data"]
    ):
        return None
    entry = msg["data"][0]
    side = "bids" if entry.get("bids") else "asks"
    levels = entry.get(side) or [{"price": 0, "qty": 0}]
    levels[0] = dict(levels[0], price="not a number")
    entry[side] = levels
    first = {
        "symbol": other,
        "bids": [],
        "asks": [],
        "checksum": 0,
        "timestamp": entry.get("timestamp"),
    }
    msg["data"] = [first, entry]
    return json.dumps(msg, separators=(",", ":")).encode()


def _corrupt(data: bytes) -> tuple[bytes, int, int] | None:
    """Replace the checksum in a rendered book/level3 frame; None if it carries none."""
    for marker, closing in ((b'"checksum":', (b",", b"}")), (b'"c":"', (b'"',))):
        start = data.find(marker)
        if start < 0:
            continue
        start += len(marker)
        end = start
        while end < len(data) and data[end : end + 1] not in closing:
            end += 1
        good = int(data[start:end])
        # Any other 32-bit value would do; flipping the low bit keeps the text the same length.
        bad = good ^ 1
        return data[:start] + str(bad).encode() + data[end:], good, bad
    return None


def _socket_queues(fd: int) -> tuple[int, int]:
    """``(unread, unsent)`` bytes in a socket's kernel queues; ``(0, 0)`` where unknown.

    Linux answers both with ioctls: ``FIONREAD`` for the receive queue and ``TIOCOUTQ``
    (``SIOCOUTQ`` for a TCP socket) for sent-but-unacknowledged bytes. On loopback a byte is
    acknowledged once it lies in the peer's receive queue.
    """
    if sys.platform != "linux":
        return 0, 0
    import fcntl
    import struct
    import termios

    counts = []
    for request in (termios.FIONREAD, termios.TIOCOUTQ):
        try:
            counts.append(struct.unpack("i", fcntl.ioctl(fd, request, b"\0\0\0\0"))[0])
        except OSError:  # the socket closed under us: nothing is pending on it any more
            counts.append(0)
    return counts[0], counts[1]


@dataclass(slots=True)
class PregeneratedStream:
    """A recorded, checksummed channel stream for load tests (see :meth:`Simulator.pregenerate`).

    ``frames`` starts with the snapshot; ``preamble`` holds what a client sees before it (the
    ``instrument`` snapshot and the subscribe ack for v2, the subscription status for v1), so
    ``preamble + frames`` is a self-contained capture for ``kbook verify``.
    """

    symbol: str
    channel: str
    depth: int
    protocol: str
    channel_id: int
    preamble: list[bytes]
    frames: list[bytes]
    final_checksum: int
    _batches: list[tuple[bytes, int]] = field(default_factory=list, repr=False)

    def batches(self) -> list[tuple[bytes, int]]:
        """``frames`` as pre-framed WebSocket bytes in large batches, with message counts."""
        if not self._batches:
            chunk: list[bytes] = []
            size = 0
            for frame in self.frames:
                framed = _ws_frame(frame)
                chunk.append(framed)
                size += len(framed)
                if size >= _REPLAY_BATCH:
                    self._batches.append((b"".join(chunk), len(chunk)))
                    chunk, size = [], 0
            if chunk:
                self._batches.append((b"".join(chunk), len(chunk)))
        return self._batches

    def write_capture(self, path: str) -> None:
        """Write ``preamble + frames`` in ``kbook verify``'s capture format."""
        from kbook.capture import write_capture

        write_capture(path, self.preamble + self.frames)


class _Replay:
    __slots__ = ("repeat", "stream")

    def __init__(self, stream: PregeneratedStream, repeat: int) -> None:
        self.stream = stream
        self.repeat = repeat


class SimConnection(WSListener):
    """One client connection (v1 or v2): requests in, channel messages out, faults applied.

    Read-only for users: ``id`` (small sequential number used to target faults),
    ``connection_id`` (the large id sent in ``status``), ``protocol``, ``subscriptions``,
    ``messages_sent``, ``requests``, ``dropped`` (messages a fault or silence swallowed).
    """

    def __init__(self, sim: Simulator, protocol: str, conn_id: int, connection_id: int) -> None:
        super().__init__()
        self.sim = sim
        self.venue: Venue = sim.venue
        self.exchange: Exchange = sim.exchange
        self.id = conn_id
        self.connection_id = connection_id
        self.protocol = protocol
        self.subscriptions: dict[tuple[str, str | None], Subscription] = {}
        self.session: protocol_v1.V1Session | protocol_v2.V2Session = (
            protocol_v2.V2Session(self) if protocol == "v2" else protocol_v1.V1Session(self)
        )
        self.transport: WSTransport | None = None
        self.open = False
        self.connected_at = time.monotonic()
        self.last_sent = self.connected_at
        self.messages_sent = 0
        self.requests = 0
        self.dropped = 0
        # v1 heartbeats from the start; v2 once something is subscribed (Kraken's behaviour).
        self.heartbeats = protocol == "v1"
        self._paused = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._silent = False
        self._armed: list[Armed] = []
        self._refuse = 0
        self._refuse_bare = False
        self._lose_answers = 0
        self._bucket = float(sim.request_burst)
        self._bucket_at = time.monotonic()
        self._fragments: list[bytes] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return (
            f"SimConnection(id={self.id}, {self.protocol}, "
            f"subscriptions={len(self.subscriptions)}, sent={self.messages_sent})"
        )

    # -- picows callbacks -----------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.open = True
        if self.sim.socket_send_buffer is not None:
            # A small kernel buffer makes a slow reader visible to flow control at once
            # instead of after megabytes of autotuned buffering (tests of back-pressure).
            sock = transport.underlying_transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sim.socket_send_buffer)
        self.sim._attach(self)
        self._send_status(self.venue.status)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == WSMsgType.CLOSE:
            # picows' core API leaves the CLOSE handshake to the application; echo the code.
            try:
                code = frame.get_close_code()
            except ValueError:  # an application code (4000-4999) picows has no name for
                code = WSCloseCode.OK
            transport.send_close(code, frame.get_close_message())
            transport.disconnect()
            return
        if msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            if frame.fin:
                self._request(frame.get_payload_as_bytes())
            else:
                self._fragments = [frame.get_payload_as_bytes()]
        elif msg_type == WSMsgType.CONTINUATION and self._fragments:
            self._fragments.append(frame.get_payload_as_bytes())
            if sum(map(len, self._fragments)) > _MAX_REQUEST:
                self._fragments = []
                transport.send_close(WSCloseCode.MESSAGE_TOO_BIG, b"request too large")
                transport.disconnect()
            elif frame.fin:
                raw, self._fragments = b"".join(self._fragments), []
                self._request(raw)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.open = False
        for sub in list(self.subscriptions.values()):
            self.unsubscribe(sub)
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        self._resumed.set()
        self.exchange.detach_connection(self)
        self.sim._detach(self)

    def pause_writing(self) -> None:
        self._paused = True
        self._resumed.clear()
        self.venue.note_paused(self, True)

    def resume_writing(self) -> None:
        self._paused = False
        self._resumed.set()
        self.venue.note_paused(self, False)

    # -- sending --------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused

    def pending(self) -> dict[str, int]:
        """What this connection still has to do, by kind; empty when it is idle.

        ``unread``: request bytes the kernel holds that the simulator has not read yet;
        ``buffered``: bytes written but still in the transport's user-space buffer;
        ``unsent``: bytes in the kernel's send queue the peer has not acknowledged (Linux only);
        ``replays``: replay streams still being written.
        """
        if self.transport is None or not self.open:
            return {}
        raw = self.transport.underlying_transport
        counts = {"buffered": raw.get_write_buffer_size(), "replays": len(self._tasks)}
        sock = raw.get_extra_info("socket")
        if sock is not None:
            counts["unread"], counts["unsent"] = _socket_queues(sock.fileno())
        return {kind: n for kind, n in counts.items() if n}

    def _write(self, data: bytes) -> None:
        if self._silent:
            self.dropped += 1
            return
        transport = self.transport
        if transport is None or not self.open:
            return
        transport.send(WSMsgType.TEXT, data)
        self.messages_sent += 1
        self.last_sent = time.monotonic()
        if self._paused and self.venue.rate is not None:
            backlog = transport.underlying_transport.get_write_buffer_size()
            if backlog > self.sim.max_backlog:
                self.sim.faults.record("slow_consumer", self.id, backlog=backlog)
                # CLOSE goes behind the backlog the client is not reading, so abort rather than
                # wait for a flush that may never come.
                transport.send_close(WSCloseCode(_CLOSE_POLICY), b"slow consumer")
                transport.disconnect(graceful=False)
                self.open = False

    def deliver(self, data: bytes, sub: Subscription) -> None:
        """Send one channel message (the venue's fan-out calls this for every subscriber)."""
        if not sub.active:
            return
        sim = self.sim
        sim.messages_delivered += 1
        if sim.delivery_hooks:
            # before the armed faults, so that a fault a hook arms can hit this very message
            for hook in list(sim.delivery_hooks):
                hook(self, sub.feed.symbol, sub.feed.channel)
        if self._armed and self._fire(data, sub):
            return
        self._write(data)

    def send_control(self, data: bytes) -> None:
        """Send an ack, error, pong or status message."""
        if self._lose_answers and (
            b'"method":"subscribe"' in data
            or b'"method":"unsubscribe"' in data
            or b'"event":"subscriptionStatus"' in data
        ):
            self._lose_answers -= 1
            self.dropped += 1
            self.sim.faults.record(
                "lose_answers", self.id, answer=data[:200].decode(errors="replace")
            )
            return
        self._write(data)

    def _send_status(self, status: str) -> None:
        if self.protocol == "v2":
            self.send_control(protocol_v2.status_message(self.connection_id, status))
        else:
            self.send_control(protocol_v1.system_status(self.connection_id, status))

    def _heartbeat(self, now: float) -> None:
        if self.heartbeats and self.open and now - self.last_sent >= self.sim.heartbeat_interval:
            self._write(protocol_v2.HEARTBEAT if self.protocol == "v2" else protocol_v1.HEARTBEAT)

    def _fire(self, data: bytes, sub: Subscription) -> bool:
        """Apply the first armed fault matching this message; True if it took care of sending."""
        feed = sub.feed
        for armed in self._armed:
            if not armed.matches(feed.symbol, feed.channel):
                continue
            details: dict[str, Any] = {"symbol": feed.symbol, "channel": feed.channel}
            if armed.kind == "corrupt_checksum":
                corrupted = _corrupt(data)
                if corrupted is None:
                    continue  # a v1 snapshot has no checksum: wait for the next update
                data, details["checksum"], details["sent"] = corrupted
                self._write(data)
            elif armed.kind == "duplicate":
                self._write(data)
                self._write(data)
            elif armed.kind == "bad_entry":
                merged = _bad_entry(data, armed.other or "BTC/USD")
                if merged is None:
                    continue  # only v2 updates carry entries to break: wait for the next one
                data = merged
                self._write(data)
            else:
                self.dropped += 1
            details["frame"] = data[:200].decode(errors="replace")
            self.sim.faults.record(armed.kind, self.id, **details)
            armed.remaining -= 1
            if not armed.remaining:
                self._armed.remove(armed)
            return True
        return False

    # -- requests (Host) ------------------------------------------------------------------------

    def _request(self, raw: bytes) -> None:
        self.requests += 1
        if self._refuse:
            self._refuse -= 1
            request = raw[:200].decode(errors="replace")
            self.sim.faults.record("rate_limit", self.id, request=request, bare=self._refuse_bare)
            if self._refuse_bare:
                self.send_control(b'{"Error":"Exceeded msg rate"}')
            else:
                self.session.refuse_rate(raw)
            return
        self.session.on_text(raw)

    def admit_request(self) -> bool:
        """A token bucket: ``request_burst`` deep, refilled at ``request_rate`` per second."""
        rate = self.sim.request_rate
        if rate is None:
            return True
        now = time.monotonic()
        self._bucket = min(
            float(self.sim.request_burst), self._bucket + (now - self._bucket_at) * rate
        )
        self._bucket_at = now
        if self._bucket < 1.0:
            return False
        self._bucket -= 1.0
        return True

    def token_ok(self, token: str) -> bool:
        return token in self.sim._tokens or self.exchange.tokens.valid(token)

    def subscribe(
        self,
        renderer: Renderer,
        channel: str,
        symbol: str | None,
        param: int | str | None,
        key: tuple[str, str | None],
        options: dict[str, Any],
    ) -> Subscription:
        replay = self.sim._replay_for(self.protocol, channel, symbol, param)
        if replay is not None:
            # A detached feed: it only names the stream for acks; the frames are pre-rendered.
            spec = self.venue.markets[replay.stream.symbol].spec
            feed = ChannelFeed(
                self.venue, channel, None, param, replay.stream.channel_id, False, spec
            )
            sub = Subscription(self, feed, renderer, key, dict(options, replay=replay))
        else:
            sub = self.venue.subscribe(self, renderer, channel, symbol, param, key, options)
        self.subscriptions[key] = sub
        self.heartbeats = True
        return sub

    def activate(self, sub: Subscription, snapshot: bool) -> None:
        replay: _Replay | None = sub.options.get("replay")
        if replay is not None:
            task = asyncio.get_running_loop().create_task(self._run_replay(sub, replay))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif snapshot:
            self.venue.send_snapshot(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscriptions.pop(sub.key, None)
        if "replay" in sub.options:
            sub.active = False
        else:
            self.venue.unsubscribe(sub)

    async def _run_replay(self, sub: Subscription, replay: _Replay) -> None:
        transport = self.transport
        assert transport is not None
        raw = transport.underlying_transport
        batches = replay.stream.batches()
        for _ in range(replay.repeat):
            for batch, count in batches:
                await self._resumed.wait()
                if not (self.open and sub.active):
                    return
                raw.write(batch)
                self.messages_sent += count
                sub.messages += count
                self.last_sent = time.monotonic()
                # Yield after every batch so other connections and requests are served.
                await asyncio.sleep(0)

    # -- faults (FaultTarget) -------------------------------------------------------------------

    def fault_close(self, code: int, reason: str) -> None:
        if self.transport is not None and self.open:
            self.transport.send_close(WSCloseCode(code), reason.encode())
            self.transport.disconnect()

    def fault_drop(self) -> None:
        if self.transport is not None and self.open:
            self.transport.disconnect(graceful=False)

    def fault_silence(self, seconds: float | None) -> None:
        self._silent = True
        if seconds is not None:
            self._later(seconds, self.fault_resume)

    def fault_resume(self) -> None:
        self._silent = False

    def fault_arm(self, armed: Armed) -> None:
        self._armed.append(armed)

    def fault_refuse(self, count: int, bare: bool = False) -> None:
        self._refuse += count
        self._refuse_bare = bare

    def fault_lose_answers(self, count: int) -> None:
        self._lose_answers += count

    def fault_status(self, status: str) -> None:
        self._send_status(status)

    def fault_raw(self, data: bytes) -> None:
        self._write(data)

    def fault_snapshot(self, symbol: str | None, channel: str | None) -> int:
        sent = 0
        for sub in list(self.subscriptions.values()):
            feed = sub.feed
            if feed.channel not in ("book", "level3") or "replay" in sub.options:
                continue
            if (symbol is not None and feed.symbol != symbol) or channel not in (
                None,
                feed.channel,
            ):
                continue
            self.venue.send_snapshot(sub)
            sent += 1
        return sent

    def fault_stall(self, seconds: float) -> None:
        if self.transport is None or not self.open:
            return
        raw = self.transport.underlying_transport
        raw.pause_reading()

        def resume() -> None:
            if self.open:
                raw.resume_reading()

        self._later(seconds, resume)

    def _later(self, seconds: float, callback: Any) -> None:
        self._timers.append(asyncio.get_running_loop().call_later(seconds, callback))


class Simulator:
    """A local Kraken-compatible exchange: markets, v1 and v2 WebSocket endpoints, faults.

    >>> import asyncio
    >>> async def demo() -> str:
    ...     async with Simulator(seed=1, rate=20.0, pairs=["BTC/USD"], warmup=100) as sim:
    ...         return sim.url_v2.rsplit(":", 1)[0]
    >>> asyncio.run(demo())
    'ws://127.0.0.1'

    :param seed: seeds every pair's order flow; the same seed gives the same market events.
    :param rate: market events per second per pair, paced on the wall clock; 0 or None runs
        as fast as the subscribed sockets take (and waits while nobody subscribes).
    :param pairs: preset names or :class:`PairSpec` objects; None for all presets.
    :param host: interface to bind; loopback by default.
    :param port: TCP port; 0 picks a free one (see :attr:`port`).
    :param start_time: simulated epoch seconds of the first published event; None uses the wall
        clock, and a paced simulator then stamps each event with its wall time (a held market
        falls behind it by the time held). Give a fixed value for byte-identical runs.
    :param strict: compare every client mirror with the truth after every message (slower).
    :param heartbeat_interval: seconds of silence after which a heartbeat is sent.
    :param request_rate: requests per second per connection before ``Exceeded msg rate``
        (a token bucket ``request_burst`` deep); None disables the limit.
    :param max_backlog: unsent bytes at which a paced connection is closed as a slow consumer.
    :param socket_send_buffer: ``SO_SNDBUF`` of accepted sockets; None keeps the kernel's
        autotuning. Small values make flow control react at once (back-pressure tests).
    :param warmup: unpublished events per pair run at construction to give the book a history.
    :param maker_fee: the exchange's fee rate for fills of resting account orders.
    :param taker_fee: the exchange's fee rate for fills of account orders that take.
    :param rest_port: TCP port of the REST endpoint; 0 picks a free one (see :attr:`rest_url`).
    :param tls: a server TLS context (certificate and key loaded): serve ``wss://`` and
        ``https://`` instead of ``ws://`` and ``http://``.
    """

    def __init__(
        self,
        seed: int = 1,
        rate: float | None = 20.0,
        pairs: Sequence[str | PairSpec] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        start_time: float | None = None,
        strict: bool = False,
        heartbeat_interval: float = 1.0,
        request_rate: float | None = 50.0,
        request_burst: int = 100,
        max_backlog: int = 64 * 1024 * 1024,
        socket_send_buffer: int | None = None,
        warmup: int = 2000,
        maker_fee: Decimal = Decimal("0.0016"),
        taker_fee: Decimal = Decimal("0.0026"),
        rest_port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if rate is not None and rate < 0:
            raise ValueError(f"rate must be >= 0, got {rate}")
        self.seed = seed
        self.rate = rate or None
        self.specs = resolve_pairs(pairs)
        self.host = host
        self._requested_port = port
        start_s = time.time() if start_time is None else start_time
        self.start_ns = int(start_s * 1_000_000) * 1000
        self.strict = strict
        self.heartbeat_interval = heartbeat_interval
        self.request_rate = request_rate
        self.request_burst = request_burst
        self.max_backlog = max_backlog
        self.socket_send_buffer = socket_send_buffer
        self.warmup = warmup
        self.venue = Venue(
            self.specs,
            seed,
            self.rate,
            self.start_ns,
            strict=strict,
            warmup=warmup,
            wall_clock=start_time is None,
        )
        #: Accounts, their orders and the matching engine.
        self.exchange = Exchange(self.venue, seed, maker_fee, taker_fee)
        self.tls = tls
        self.rest = RestServer(self.exchange, host, rest_port, tls=tls)
        #: the headers of every WebSocket upgrade request, oldest first (names lower-cased)
        self.upgrade_headers: list[dict[str, str]] = []
        #: Every fault and slow-consumer disconnect, in order: ``(time, fault, target, details)``.
        self.fault_log: list[FaultRecord] = []
        #: Channel messages handed to connections so far (fault scripts count them).
        self.messages_delivered = 0
        #: Called with ``(connection, symbol, channel)`` before each channel message is sent.
        self.delivery_hooks: list[Callable[[SimConnection, str | None, str], None]] = []
        self.faults = Faults(
            lambda: list(self._connections.values()), self._set_status, self.fault_log
        )
        if tls is not None:
            # the TLS-close fault hangs up on a ClientHello; one callback, installed once
            tls.sni_callback = self._tls_hello
        self._connections: dict[int, SimConnection] = {}
        self._next_conn_id = 1
        # SimConnection ids are part of the wire (status messages), so they are seeded too.
        self._ids = random.Random(f"kbook.sim:{seed}:connections")
        self._tokens: set[str] = set()
        self._replays: dict[tuple[str, str, str, int | str | None], _Replay] = {}
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the server and start the market and heartbeat tasks."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._server = await ws_create_server(
            self._route,
            self.host,
            self._requested_port,
            websocket_handshake_timeout=5,
            ssl=self.tls,
            # aiofastnet's TLS engine crashes the process when the context has an SNI callback
            # (measured, picows 2.3.1 / aiofastnet 1.2); asyncio's own TLS calls it correctly
            use_aiofastnet=False if self.tls is not None else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        await self.rest.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.venue.run()), loop.create_task(self._heartbeats())]

    async def stop(self) -> None:
        """Close every connection (CLOSE 1001), stop the tasks and the server, and wait."""
        self.faults.cancel_scheduled()
        self.exchange.stop()
        await self.rest.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        closing: list[asyncio.Task[None]] = []
        leftovers: list[asyncio.Task[None]] = []
        for conn in list(self._connections.values()):
            leftovers += conn._tasks
            if conn.transport is not None and conn.open:
                conn.transport.send_close(WSCloseCode.GOING_AWAY, b"simulator shutting down")
                conn.transport.disconnect()
                closing.append(asyncio.ensure_future(conn.transport.wait_disconnected()))
        if closing:
            # A client that never answers CLOSE gets two seconds, all of them together.
            _, late = await asyncio.wait(closing, timeout=2.0)
            for task in late:
                task.cancel()
            for conn in list(self._connections.values()):
                if conn.transport is not None:
                    conn.transport.disconnect(graceful=False)
            results = await asyncio.gather(*closing, return_exceptions=True)
            del results  # a peer's protocol error at shutdown is not the simulator's concern
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        if self.tls is not None:
            # a TLS handshake that just failed closes its socket from a loop callback; give it
            # its turn before the caller's loop ends (else the socket is left to the collector)
            for _ in range(_SETTLE_PASSES):
                await asyncio.sleep(0)

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until every connection has read all requests and flushed everything it sent.

        Returns once, on several consecutive passes of the event loop, no open connection has
        unread request bytes, bytes in its transport's write buffer, bytes the peer has not
        acknowledged in the kernel's send queue (Linux; elsewhere only the first two are known)
        or a replay still running. Requests are answered as they are read, so every request a
        client sent before the call has been answered by then, and every answer and channel
        message sent so far lies in the client's receive buffer. The passes after the first let
        a client on the same event loop (kbook's ``Client``, the tests' clients) run its read
        callback; a client in another process or thread may still be reading.

        It does not stop the market: a running market goes on publishing, and a paced one
        between two events, or one in ``maintenance``, is what makes a final state. Timers set
        for later (scheduled faults, a dead-man switch) are not pending work.

        :param timeout: seconds to wait before giving up.
        :raises TimeoutError: when the simulator is still busy after ``timeout`` (a reader that
            stopped reading, a stalled connection, an unpaced market with subscribers); the
            message names each busy connection and what it still holds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet = 0
        while quiet < _SETTLE_PASSES:
            await asyncio.sleep(0)
            busy = {conn.id: conn.pending() for conn in list(self._connections.values())}
            busy = {conn_id: counts for conn_id, counts in busy.items() if counts}
            if busy:
                quiet = 0
                if loop.time() > deadline:
                    raise TimeoutError(f"simulator not settled after {timeout} s: {busy}")
                if any("buffered" in counts or "unsent" in counts for counts in busy.values()):
                    # Bytes wait for the peer to read: give its callbacks and the kernel a moment
                    # rather than spinning the loop.
                    await asyncio.sleep(0.001)
            else:
                quiet += 1

    # -- public properties ----------------------------------------------------------------------

    @property
    def url_v2(self) -> str:
        """``ws://HOST:PORT/v2`` (``wss://`` with TLS)."""
        return f"{self._scheme()}://{self._url_host()}:{self.port}/v2"

    @property
    def url_v1(self) -> str:
        """``ws://HOST:PORT/`` (``wss://`` with TLS)."""
        return f"{self._scheme()}://{self._url_host()}:{self.port}/"

    def _scheme(self) -> str:
        return "ws" if self.tls is None else "wss"

    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def connections(self) -> list[SimConnection]:
        """The open connections, oldest first."""
        return list(self._connections.values())

    @property
    def markets(self) -> dict[str, PairMarket]:
        """The pair markets by v2 symbol (their books are the truth every feed derives from)."""
        return dict(self.venue.markets)

    @property
    def rest_url(self) -> str:
        """``http://HOST:PORT`` of the REST endpoint (``GetWebSocketsToken``; ``https`` with
        TLS)."""
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{self._url_host()}:{self.rest.port}"

    def issue_token(self, key: str | None = None) -> str:
        """A new WebSocket token, as ``GetWebSocketsToken`` would give, without REST.

        :param key: an account's API key: the token opens that account's private channels and
            trading (and expires unused after 15 minutes, like the REST one). Without a key the
            token is public: ``level3`` only, never expiring.
        :raises KeyError: for an unknown key.
        """
        if key is not None:
            return self.exchange.tokens.issue(self.exchange.accounts[key])
        token = secrets.token_urlsafe(32)
        self._tokens.add(token)
        return token

    def add_account(
        self,
        key: str | None = None,
        secret: str | None = None,
        balances: Mapping[str, Decimal | int | str] | None = None,
        tier: str = "intermediate",
        ws_permission: bool = True,
    ) -> tuple[str, str]:
        """Open an exchange account; returns ``(key, secret)`` for REST signing.

        :param key: the API key; random (56 base64 characters) when None.
        :param secret: the base64 API secret; a random 64-byte one when None.
        :param balances: starting balances by asset (:data:`DEFAULT_BALANCES` when None).
        :param tier: ``starter``, ``intermediate`` or ``pro``: the trading rate counter's
            ceiling and decay and the open-order limit.
        :param ws_permission: without it, ``GetWebSocketsToken`` answers
            ``EGeneral:Permission denied``.
        :raises ValueError: duplicate key, bad secret, unknown tier, balance too precise.
        """
        account = self.exchange.add_account(
            key,
            secret,
            dict(DEFAULT_BALANCES if balances is None else balances),
            tier,
            ws_permission,
        )
        return account.key, account.secret

    def account(self, key: str) -> Account:
        """The account of an API key (its ``orders``, ``fills``, ``balances`` in ledger units).

        :raises KeyError: for an unknown key.
        """
        return self.exchange.accounts[key]

    def balances(self, key: str) -> dict[str, Decimal]:
        """An account's balances by asset, as exact decimals."""
        account = self.exchange.accounts[key]
        return {
            asset: self.exchange.balance_decimal(account, asset)
            for asset in sorted(account.balances)
        }

    def deposit(self, key: str, asset: str, amount: Decimal | int | str) -> None:
        """Credit an account (a ``deposit`` ledger entry on its balances streams)."""
        self.exchange.deposit(self.exchange.accounts[key], asset, amount)

    # -- load-test streams ----------------------------------------------------------------------

    def pregenerate(
        self,
        symbol: str = "BTC/USD",
        channel: str = "book",
        depth: int = 10,
        count: int = 1000,
        protocol: str = "v2",
    ) -> PregeneratedStream:
        """Record ``count`` frames (snapshot first) of one channel from a fresh copy of a market.

        The copy uses the simulator's seed, rate and start time, so the stream is reproducible
        and the live market is untouched. Checksums come from the reference model, as live.

        :raises ValueError: for an unknown pair, a channel other than book/level3, a protocol
            without that channel, or ``count < 1``.
        """
        if count < 1:
            raise ValueError("count must be >= 1")
        if channel not in ("book", "level3") or (channel == "level3" and protocol != "v2"):
            raise ValueError("pre-generation covers book (v1, v2) and level3 (v2)")
        if protocol not in ("v1", "v2"):
            raise ValueError(f"protocol must be 'v1' or 'v2', got {protocol!r}")
        spec = resolve_pairs([symbol])[0]
        venue = Venue(
            [spec], self.seed, self.rate, self.start_ns, strict=self.strict, warmup=self.warmup
        )
        feed = venue.feed(channel, spec.symbol, depth)
        renderer: Renderer = protocol_v2.RENDERER if protocol == "v2" else protocol_v1.RENDERER
        frames = [renderer.render(feed, feed.snapshot())]
        view = feed.view
        assert view is not None
        market = venue.markets[spec.symbol]
        while len(frames) < count:
            message = feed.derive(market.step())
            if message is not None:
                frames.append(renderer.render(feed, message))
        now = rfc3339_us(market.time_ns)
        if protocol == "v2":
            result: dict[str, Any] = {"channel": channel, "snapshot": True, "symbol": spec.symbol}
            result["depth"] = depth
            preamble = [
                protocol_v2.instrument_message(InstrumentMessage(True, [spec], "online")),
                protocol_v2.control(
                    {
                        "method": "subscribe",
                        "result": result,
                        "success": True,
                        "time_in": now,
                        "time_out": now,
                    }
                ),
            ]
        else:
            preamble = [
                protocol_v1._control(
                    {
                        "channelID": feed.channel_id,
                        "channelName": feed.channel_name,
                        "event": "subscriptionStatus",
                        "pair": spec.v1_name,
                        "status": "subscribed",
                        "subscription": {"depth": depth, "name": "book"},
                    }
                )
            ]
        return PregeneratedStream(
            spec.symbol,
            channel,
            depth,
            protocol,
            feed.channel_id,
            preamble,
            frames,
            view.mirror.checksum(),
        )

    def replay(self, stream: PregeneratedStream, repeat: int = 1) -> None:
        """Serve ``stream`` to every later subscription of its channel, symbol and depth.

        The subscriber gets the usual ack, then the stream's frames ``repeat`` times (each
        pass starts with its snapshot) as fast as its socket takes them, instead of live data.
        """
        if repeat < 1:
            raise ValueError("repeat must be >= 1")
        self._replays[(stream.protocol, stream.channel, stream.symbol, stream.depth)] = _Replay(
            stream, repeat
        )

    def _replay_for(
        self, protocol: str, channel: str, symbol: str | None, param: int | str | None
    ) -> _Replay | None:
        if not self._replays or symbol is None:
            return None
        return self._replays.get((protocol, channel, symbol, param))

    # -- internals ------------------------------------------------------------------------------

    def _route(
        self,
        request: WSUpgradeRequest,
    ) -> SimConnection | WSUpgradeResponseWithListener | None:
        self.upgrade_headers.append({str(k).lower(): str(v) for k, v in request.headers.items()})
        refusal = self.faults.take_upgrade_refusal()
        if refusal is not None:
            self.faults.record("upgrade_refused", None, status=refusal.status)
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_error_response(
                    refusal.status, refusal.body, refusal.headers
                ),
                None,
            )
        path = request.path.split(b"?", 1)[0].rstrip(b"/")
        if path == b"/v2":
            protocol = "v2"
        elif path == b"":
            protocol = "v1"
        else:
            return None  # picows answers 404
        conn_id = self._next_conn_id
        self._next_conn_id += 1
        return SimConnection(self, protocol, conn_id, self._ids.getrandbits(64))

    def _tls_hello(
        self, tls: ssl.SSLObject, name: str | None, context: ssl.SSLContext
    ) -> int | None:
        """Refuse the TLS handshake with an alert while the ``close_tls`` fault is armed."""
        if self.faults.take_tls_close():
            self.faults.record("tls_closed", None, server_name=name)
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        return None

    def _attach(self, conn: SimConnection) -> None:
        self._connections[conn.id] = conn
        if self.faults.lost_answers_next:
            conn.fault_lose_answers(self.faults.lost_answers_next)
            self.faults.lost_answers_next = 0

    def _detach(self, conn: SimConnection) -> None:
        self._connections.pop(conn.id, None)
        self.venue.forget(conn)

    def _set_status(self, status: str) -> None:
        self.venue.set_status(status)
        for conn in list(self._connections.values()):
            conn._send_status(status)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(_HEARTBEAT_TICK_S)
            now = time.monotonic()
            for conn in list(self._connections.values()):
                conn._heartbeat(now)
