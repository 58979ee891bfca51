"""The Kraken Spot WebSocket client: picows connections that keep every subscription alive.

A :class:`Client` owns one public connection (v2 or v1) and, for ``level3``, as many
authenticated level3 connections as it needs (Kraken allows 200 symbols per connection). Each
connection's frames go straight from picows into the Cython :class:`~kbook.Feed` through
:class:`~kbook._core.FeedListener`; only non-book messages reach Python, typed by
:mod:`kbook.messages`.

Staying alive follows Kraken's rules: an application ping well inside 60 s (picows' periodic
auto-ping sending Kraken's JSON ping), an idle watchdog that reconnects when nothing at all
arrives, reconnects with exponential backoff and jitter inside a budget of connection attempts
per rolling window, every subscription restored on reconnect, a book that fails its checksum
resubscribed alone (with backoff when it keeps failing), paced subscription bursts that back off
on ``Exceeded msg rate``, and system status changes surfaced as events.

What it is not: private channels and order entry (a later layer builds on this one), or a
strategy framework. Callbacks run on the event loop thread, inside the frame handler: keep them
short.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from picows import WSAutoPingStrategy, WSCloseCode, WSMsgType, WSTransport, ws_connect

from kbook._core import (
    ALLOWED_DEPTHS,
    BookIntegrityError,
    ChecksumMismatch,
    DecodeError,
    Feed,
    FeedListener,
    KBookError,
    L2Book,
    Level3Book,
    UnknownPrecision,
)
from kbook.messages import (
    Ack,
    ErrorMessage,
    Heartbeat,
    Instrument,
    Message,
    Pong,
    SystemStatus,
    parse_message,
)

__all__ = [
    "ENDPOINTS",
    "Client",
    "ClientError",
    "ClientEvent",
    "ConnectionBudget",
    "ReconnectPolicy",
    "RequestTimeout",
    "SubscriptionError",
]

log = logging.getLogger("kbook.client")

Protocol = Literal["v2", "v1"]

#: Kraken's endpoints, by (protocol, kind, beta). ``level3`` is v2 only.
ENDPOINTS: dict[tuple[str, str, bool], str] = {
    ("v2", "public", False): "wss://ws.kraken.com/v2",
    ("v2", "private", False): "wss://ws-auth.kraken.com/v2",
    ("v2", "level3", False): "wss://ws-l3.kraken.com/v2",
    ("v2", "public", True): "wss://beta-ws.kraken.com/v2",
    ("v2", "private", True): "wss://beta-ws-auth.kraken.com/v2",
    ("v2", "level3", True): "wss://ws-l3.kraken.com/v2",
    ("v1", "public", False): "wss://ws.kraken.com",
    ("v1", "private", False): "wss://ws-auth.kraken.com",
    ("v1", "public", True): "wss://beta-ws.kraken.com",
    ("v1", "private", True): "wss://beta-ws-auth.kraken.com",
}

LEVEL3_SYMBOLS_PER_CONNECTION = 200   # Kraken's level3 limit
PRIVATE_CHANNELS = ("level3", "executions", "balances", "ownTrades", "openOrders")
_RATE_LIMITED = "Exceeded msg rate"
_JSON = msgspec.json.Encoder()


class ClientError(KBookError):
    """Base class of the client's own errors."""


class SubscriptionError(ClientError):
    """The exchange refused a subscription (unknown symbol, unsupported depth, ...)."""

    def __init__(self, channel: str, symbol: str | None, error: str) -> None:
        self.channel = channel
        self.symbol = symbol
        self.error = error
        super().__init__(f"{channel} {symbol or ''}: {error}".replace("  ", " "))


class RequestTimeout(ClientError):
    """A request got no (complete) answer in time; its outcome is unknown."""


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """Something the client did or saw, for logs, dashboards and tests.

    ``kind`` is one of: ``connecting``, ``connected``, ``connect_failed``, ``disconnected``,
    ``idle_timeout``, ``status`` (detail: the system state), ``checksum_mismatch``,
    ``integrity_error``, ``decode_error``, ``resync_started``, ``resync_done``,
    ``stale_subscription``, ``rate_limited``, ``subscription_error``, ``callback_error``.
    """

    kind: str
    connection: str
    symbol: str | None = None
    detail: Any = None
    time: float = field(default_factory=time.monotonic)


@dataclass
class ReconnectPolicy:
    """How fast to reconnect: exponential backoff with jitter, reset once a connection is stable.

    The first retry after a drop is immediate (a random drop rarely repeats); later ones wait
    ``initial * multiplier**k`` seconds (capped at ``maximum``), each scaled by a random factor in
    ``[1 - jitter, 1]`` so that many clients do not reconnect in step. After maintenance the wait
    is at least ``after_maintenance``, as Kraken asks.
    """

    initial: float = 1.0
    maximum: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.5
    stable_after: float = 30.0
    after_maintenance: float = 5.0
    max_attempts: int = 140           # below Kraken's ~150 connection attempts ...
    window: float = 600.0             # ... per rolling 10 minutes per IP
    give_up_after: int | None = None  # consecutive failed attempts; None: never give up

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait before attempt number ``failures + 1`` of a reconnect streak."""
        if failures <= 0:
            return 0.0
        base = min(self.maximum, self.initial * self.multiplier ** (failures - 1))
        return base * (1.0 - self.jitter * rng.random())


class ConnectionBudget:
    """At most ``max_attempts`` connection attempts per rolling ``window`` seconds.

    Shared by every connection of a process that talks to one host (Kraken counts per IP).
    """

    def __init__(self, max_attempts: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_attempts = max_attempts
        self.window = window
        self._clock = clock
        self._attempts: deque[float] = deque()

    def wait_time(self) -> float:
        """Seconds until another attempt fits the budget (0 when it fits now)."""
        now = self._clock()
        while self._attempts and now - self._attempts[0] >= self.window:
            self._attempts.popleft()
        if len(self._attempts) < self.max_attempts:
            return 0.0
        return self._attempts[0] + self.window - now

    async def acquire(self) -> None:
        """Wait until an attempt fits, then record it."""
        while (delay := self.wait_time()) > 0:
            await asyncio.sleep(delay)
        self._attempts.append(self._clock())

    @property
    def attempts_in_window(self) -> int:
        self.wait_time()
        return len(self._attempts)


class _Pacer:
    """A token bucket for outgoing requests (Kraken's message rate limit is load dependent)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()
        self.penalty_until = 0.0

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            if now < self.penalty_until:
                await asyncio.sleep(self.penalty_until - now)
                continue
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return
            await asyncio.sleep((1.0 - self._tokens) / self.rate)

    def back_off(self, seconds: float) -> None:
        self.penalty_until = max(self.penalty_until, time.monotonic() + seconds)


@dataclass
class _Sub:
    """One (channel, symbol) subscription the client keeps alive."""

    channel: str
    symbol: str | None
    params: dict[str, Any]
    active: bool = False
    subscribed_at: float = 0.0
    mismatches: deque[float] = field(default_factory=deque)
    resyncing: bool = False


@dataclass
class _MethodWait:
    """An outstanding trading request: ``expected`` answers (None: until ``done`` says so)."""

    future: asyncio.Future[list[Ack]]
    expected: int | None
    answers: list[Ack] = field(default_factory=list)


@dataclass
class _Request:
    """An outstanding subscribe/unsubscribe awaiting one ack per symbol."""

    symbols: set[str | None]
    future: asyncio.Future[list[Ack]]
    acks: list[Ack] = field(default_factory=list)


class _BookHooks:
    """What a book does after an update: the user's callback, plus, only while needed, the
    resync notice and the async iterators' wake-ups.

    The book's ``on_update`` is the user's own function whenever nothing else is needed, so the
    listener calls it directly (a Python wrapper would cost a fifth of the client's CPU);
    :meth:`install` switches to this object while a resync or an iterator is pending.
    """

    __slots__ = ("book", "conn", "events", "resyncing", "user")

    def __init__(self, conn: _Connection, book: Any, user: Callable[[Any], Any] | None) -> None:
        self.conn = conn
        self.book = book
        self.user = user
        self.events: list[asyncio.Event] = []
        self.resyncing = False

    def install(self) -> None:
        self.book.on_update = self if (self.resyncing or self.events) else self.user

    def __call__(self, book: Any) -> None:
        if self.resyncing:
            self.resyncing = False
            self.conn._emit("resync_done", book.symbol)
            self.install()
        if self.user is not None:
            self.user(book)   # its exceptions are reported by the listener
        for event in self.events:
            event.set()


class _Connection:
    """One WebSocket connection with its subscriptions, kept alive by :meth:`run`."""

    def __init__(self, client: Client, name: str, url: str, protocol: Protocol,
                 token: Callable[[], Awaitable[str]] | str | None = None) -> None:
        self.client = client
        self.name = name
        self.url = url
        self.protocol = protocol
        self.token_source = token
        self.feed = Feed(precisions=client.precisions)
        self.subs: dict[tuple[str, str | None], _Sub] = {}
        self.transport: WSTransport | None = None
        self.listener: FeedListener | None = None
        self.connected = asyncio.Event()
        self.instrument_ready = asyncio.Event()
        self.system_status: str | None = None
        self._requests: dict[int, _Request] = {}
        self._methods: dict[int, _MethodWait] = {}
        self.private_handler: Callable[[Message], Any] | None = None
        self._req_ids = itertools.count(1)
        self._pacer = _Pacer(client.subscribe_rate, client.subscribe_burst)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._connected_at = 0.0
        self._failures = 0
        self._token: str | None = None
        self._pong_waiters: dict[int, asyncio.Future[float]] = {}
        self.connects = 0
        self.hooks: dict[tuple[str, str], _BookHooks] = {}
        self._to_restore: list[_Sub] = []

    # -- events and tasks ----------------------------------------------------------------

    def _emit(self, kind: str, symbol: str | None = None, detail: Any = None) -> None:
        self.client._emit(ClientEvent(kind, self.name, symbol, detail))

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, (ConnectionError, RequestTimeout, asyncio.CancelledError)):
                log.error("%s: background task failed: %r", self.name, exc)

    # -- the connection loop -------------------------------------------------------------

    def _ping_message(self) -> bytes:
        if self.protocol == "v2":
            return b'{"method":"ping"}'
        return b'{"event":"ping"}'

    async def _token_value(self) -> str | None:
        if self.token_source is None:
            return None
        if isinstance(self.token_source, str):
            return self.token_source
        return await self.token_source()   # a fresh token for every connection

    async def run(self, first: asyncio.Future[None]) -> None:
        """Connect, serve, reconnect: until :meth:`close`; no error ends the loop."""
        while not self._closing:
            try:
                await self._run(first)
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # a bug must cost a reconnect, never the feed
                log.exception("%s: connection loop failed", self.name)
                self._failures += 1
                self._emit("connect_failed", detail=repr(exc))

    async def _run(self, first: asyncio.Future[None]) -> None:
        client = self.client
        policy = client.policy
        while not self._closing:
            wait = policy.delay(self._failures, client.rng)
            if self.system_status == "maintenance":
                wait = max(wait, policy.after_maintenance)
            if wait:
                await asyncio.sleep(wait)
            await client.budget.acquire()
            if self._closing:
                break
            self._emit("connecting", detail=self.url)
            try:
                self._token = await self._token_value()
                # bound the whole connect (TCP, TLS, upgrade): a peer that accepts and then goes
                # quiet or hangs up mid-handshake must not stall the reconnect loop
                transport, listener = await asyncio.wait_for(ws_connect(
                    self._make_listener, self.url,
                    enable_auto_ping=True,
                    auto_ping_idle_timeout=client.ping_interval,
                    auto_ping_reply_timeout=client.pong_timeout,
                    auto_ping_strategy=WSAutoPingStrategy.PING_PERIODICALLY,
                    websocket_handshake_timeout=client.connect_timeout,
                    disconnect_on_exception=False,
                ), client.connect_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._attempt_failed(first, repr(exc)):
                    return
                continue
            if not isinstance(listener, FeedListener) or transport.is_disconnected:
                # picows hands back (transport, None) when the peer hung up mid-handshake
                if self._attempt_failed(first, "closed during the handshake"):
                    return
                continue
            self.connects += 1
            self.listener = listener
            self._connected_at = time.monotonic()
            if not first.done():
                first.set_result(None)
            watchdog = self._spawn(self._watchdog(transport, listener))
            self._spawn(self._restore())
            try:
                await transport.wait_disconnected()
            except Exception as exc:  # a local failure: treat like any other drop
                log.warning("%s: disconnected with %r", self.name, exc)
            watchdog.cancel()
            stable = time.monotonic() - self._connected_at >= policy.stable_after
            self._failures = 0 if stable else self._failures + 1
            # the first retry after a drop from a stable connection is immediate
            if stable:
                self._failures = 0
        self._emit("closed")

    def _attempt_failed(self, first: asyncio.Future[None], detail: str) -> bool:
        """Count a failed connection attempt; True when the first connect should give up."""
        self._failures += 1
        self._emit("connect_failed", detail=detail)
        give_up = self.client.policy.give_up_after
        if not first.done() and give_up is not None and self._failures >= give_up:
            first.set_exception(ConnectionError(f"{self.url}: {detail}"))
            self._closing = True
            return True
        return False

    def _make_listener(self) -> FeedListener:
        listener = FeedListener(self.feed, self, self._ping_message())
        listener.recorder = self.client.recorder
        return listener

    def _on_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.connected.set()
        self.instrument_ready.clear()
        # every book restarts from Kraken's next snapshot
        for book in self.feed.books.values():
            book.clear()
        for sub in self.subs.values():
            sub.active = False
        # replayed by _restore; what is subscribed from now on is sent by subscribe() itself
        self._to_restore = list(self.subs.values())
        self._emit("connected", detail=self.url)

    def _on_disconnected(self, transport: WSTransport) -> None:
        self.connected.clear()
        self.transport = None
        for request in self._requests.values():
            if not request.future.done():
                request.future.set_exception(ConnectionError("connection lost"))
        self._requests.clear()
        for wait in self._methods.values():
            if not wait.future.done():
                # sent but unanswered: the caller reports an unknown outcome, never a guess
                wait.future.set_result(wait.answers)
        self._methods.clear()
        for waiter in self._pong_waiters.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("connection lost"))
        self._pong_waiters.clear()
        close = transport.close_handshake
        detail = None if close is None else (
            close.recv.code if close.recv is not None else None,
            close.sent.code if close.sent is not None else None)
        self._emit("disconnected", detail=detail)

    async def _watchdog(self, transport: WSTransport, listener: FeedListener) -> None:
        """Close a silent connection; resubscribe a book that was acked but never snapshotted."""
        client = self.client
        period = max(0.05, min(client.idle_timeout, client.snapshot_timeout) / 4)
        last_frames = -1
        last_change = time.monotonic()
        while True:
            await asyncio.sleep(period)
            frames = listener.frames
            now = time.monotonic()
            if frames != last_frames:
                last_frames, last_change = frames, now
            elif now - last_change >= client.idle_timeout:
                self._emit("idle_timeout", detail=now - last_change)
                transport.disconnect(graceful=False)
                return
            for sub in list(self.subs.values()):
                if sub.channel not in ("book", "level3") or not sub.active or sub.resyncing:
                    continue
                book = self._book_of(sub)
                if (book is not None and not book.valid
                        and now - sub.subscribed_at >= client.snapshot_timeout):
                    self._emit("stale_subscription", sub.symbol)
                    self._spawn(self._resync(sub))

    # -- subscriptions -------------------------------------------------------------------

    def _book_of(self, sub: _Sub) -> L2Book | Level3Book | None:
        if sub.symbol is None:
            return None
        if sub.channel == "level3":
            return self.feed.level3_book(sub.symbol)
        if self.protocol == "v1":
            return self.feed.book(sub.symbol, depth=int(sub.params.get("depth", 10)))
        return self.feed.book(sub.symbol)

    def _needs_instrument(self) -> bool:
        return self.protocol == "v2" and any(
            s.channel in ("book", "level3") and s.symbol not in self.client.precisions
            for s in self.subs.values())

    async def _restore(self) -> None:
        """After a (re)connect: learn precisions, then replay every subscription."""
        try:
            if self._needs_instrument():
                await self._ensure_instrument()
            restore, self._to_restore = self._to_restore, []
            await self._subscribe_many([s for s in restore
                                        if self.subs.get((s.channel, s.symbol)) is s])
        except (ConnectionError, RequestTimeout) as exc:
            log.info("%s: restore interrupted: %r", self.name, exc)
        except SubscriptionError as exc:
            self._emit("subscription_error", exc.symbol, exc.error)

    async def _ensure_instrument(self) -> None:
        if self.instrument_ready.is_set():
            return
        await self._send_request("subscribe", "instrument", [None], {})
        await asyncio.wait_for(self.instrument_ready.wait(), self.client.request_timeout)

    def _request_message(self, method: str, channel: str, symbols: Sequence[str | None],
                         params: dict[str, Any], req_id: int) -> bytes:
        if self.protocol == "v2":
            body: dict[str, Any] = {"channel": channel, **params}
            if symbols != [None]:
                body["symbol"] = list(symbols)
            if channel in PRIVATE_CHANNELS and self._token:
                body["token"] = self._token
            return _JSON.encode({"method": method, "params": body, "req_id": req_id})
        subscription: dict[str, Any] = {"name": channel, **params}
        if channel in PRIVATE_CHANNELS and self._token:
            subscription["token"] = self._token
        msg: dict[str, Any] = {"event": method, "reqid": req_id, "subscription": subscription}
        if symbols != [None]:
            msg["pair"] = list(symbols)
        return _JSON.encode(msg)

    async def _send_request(self, method: str, channel: str, symbols: Sequence[str | None],
                            params: dict[str, Any]) -> list[Ack]:
        """Send one request and wait for one ack per symbol, retrying when rate limited."""
        pending = list(symbols)
        acks: list[Ack] = []
        for attempt in range(6):
            await self._pacer.acquire()
            transport = self.transport
            if transport is None:
                raise ConnectionError("not connected")
            req_id = next(self._req_ids)
            future: asyncio.Future[list[Ack]] = asyncio.get_running_loop().create_future()
            self._requests[req_id] = _Request(set(pending), future)
            message = self._request_message(method, channel, pending, params, req_id)
            transport.send(WSMsgType.TEXT, message)
            try:
                got = await asyncio.wait_for(future, self.client.request_timeout)
            except TimeoutError:
                raise RequestTimeout(f"{method} {channel} {pending}: no answer") from None
            finally:
                self._requests.pop(req_id, None)
            retry = [a.symbol for a in got if not a.success and _RATE_LIMITED in (a.error or "")]
            acks.extend(a for a in got if a.symbol not in retry or a.success)
            if not retry:
                return acks
            delay = min(30.0, 0.5 * 2**attempt)
            self._pacer.back_off(delay)
            self._emit("rate_limited", detail=delay)
            pending = retry
        raise RequestTimeout(f"{method} {channel}: still rate limited")

    async def _subscribe_many(self, subs: list[_Sub]) -> list[Ack]:
        """Subscribe in multi-symbol batches grouped by channel and parameters."""
        groups: dict[tuple[str, str], list[_Sub]] = {}
        for sub in subs:
            key = (sub.channel, _JSON.encode(sub.params).decode())
            groups.setdefault(key, []).append(sub)
        acks: list[Ack] = []
        errors: list[SubscriptionError] = []
        for (channel, _), members in groups.items():
            for i in range(0, len(members), self.client.batch_size):
                batch = members[i:i + self.client.batch_size]
                for sub in batch:
                    sub.subscribed_at = time.monotonic()
                got = await self._send_request(
                    "subscribe", channel, [s.symbol for s in batch], batch[0].params)
                by_symbol = {a.symbol: a for a in got}
                for sub in batch:
                    ack = by_symbol.get(sub.symbol)
                    if ack is None and len(got) == 1 and len(batch) == 1:
                        ack = got[0]
                    if ack is not None and ack.success:
                        sub.active = True
                    elif ack is not None:
                        error = ack.error or "refused"
                        if "already subscribed" in error.lower():
                            sub.active = True
                            continue
                        self.subs.pop((sub.channel, sub.symbol), None)
                        self._emit("subscription_error", sub.symbol, error)
                        errors.append(SubscriptionError(channel, sub.symbol, error))
                acks.extend(got)
        if errors:
            raise errors[0]
        return acks

    async def subscribe(self, channel: str, symbols: Sequence[str | None],
                        params: dict[str, Any]) -> list[Ack]:
        new = []
        for symbol in symbols:
            sub = _Sub(channel, symbol, dict(params))
            self.subs[(channel, symbol)] = sub
            new.append(sub)
        if not self.connected.is_set():
            return []   # replayed by _restore once connected
        if channel in ("book", "level3") and self._needs_instrument():
            await self._ensure_instrument()
        return await self._subscribe_many(new)

    async def unsubscribe(self, channel: str, symbols: Sequence[str | None],
                          params: dict[str, Any]) -> None:
        for symbol in symbols:
            self.subs.pop((channel, symbol), None)
        if self.connected.is_set():
            await self._send_request("unsubscribe", channel, list(symbols), params)

    async def _resync(self, sub: _Sub) -> None:
        """Resubscribe one symbol's book to get a fresh snapshot; other symbols are untouched."""
        if sub.resyncing or sub.symbol is None:
            return
        sub.resyncing = True
        try:
            now = time.monotonic()
            while sub.mismatches and now - sub.mismatches[0] > 300.0:
                sub.mismatches.popleft()
            # a book that keeps failing waits longer each time before the next snapshot
            delay = min(30.0, 0.25 * 2 ** max(0, len(sub.mismatches) - 1))
            self._emit("resync_started", sub.symbol, delay)
            if len(sub.mismatches) > 1:
                await asyncio.sleep(delay)
            hooks = self.hooks.get((sub.channel, sub.symbol))
            if hooks is not None:
                hooks.resyncing = True
                hooks.install()
            params = {k: v for k, v in sub.params.items() if k != "snapshot"}
            await self._send_request("unsubscribe", sub.channel, [sub.symbol], params)
            sub.subscribed_at = time.monotonic()
            await self._send_request("subscribe", sub.channel, [sub.symbol], sub.params)
        except (ConnectionError, RequestTimeout) as exc:
            log.info("%s: resync of %s interrupted: %r", self.name, sub.symbol, exc)
        finally:
            sub.resyncing = False

    # -- frames handed up by the listener -------------------------------------------------

    def _on_callback_error(self, book: Any, exc: Exception) -> None:
        """A user's book callback raised: report it, keep the feed running."""
        self._emit("callback_error", getattr(book, "symbol", None), repr(exc))

    def _on_book_error(self, exc: KBookError) -> None:
        if isinstance(exc, ChecksumMismatch | BookIntegrityError):
            kind = "checksum_mismatch" if isinstance(exc, ChecksumMismatch) else "integrity_error"
            self._emit(kind, exc.symbol, exc)
            channel = "level3" if self.feed.level3_book(exc.symbol) is not None else "book"
            sub = self.subs.get((channel, exc.symbol))
            if sub is not None:
                sub.mismatches.append(time.monotonic())
                self._spawn(self._resync(sub))
        elif isinstance(exc, UnknownPrecision):
            self._emit("decode_error", exc.symbol, exc)
            self.instrument_ready.clear()
            self._spawn(self._ensure_then_resync(exc.symbol))
        elif isinstance(exc, DecodeError):
            # A dropped book frame means that book missed an update: it must not look valid.
            # A frame that cannot be attributed could have been any book's.
            self._emit("decode_error", exc.symbol, exc)
            if exc.channel is None and not any(s.channel in ("book", "level3")
                                               for s in self.subs.values()):
                return
            for sub in list(self.subs.values()):
                if sub.channel not in ("book", "level3"):
                    continue
                if exc.channel is not None and sub.channel != exc.channel:
                    continue
                if exc.symbol is not None and sub.symbol != exc.symbol:
                    continue
                book = self._book_of(sub)
                if book is not None:
                    book.invalidate()
                self._spawn(self._resync(sub))
        else:
            self._emit("decode_error", None, exc)

    async def _ensure_then_resync(self, symbol: str) -> None:
        try:
            await self._send_request("subscribe", "instrument", [None], {})
        except (ConnectionError, RequestTimeout, SubscriptionError):
            return
        for channel in ("book", "level3"):
            sub = self.subs.get((channel, symbol))
            if sub is not None:
                await self._resync(sub)

    def _on_message(self, obj: Any) -> None:
        try:
            messages = parse_message(obj)
        except ValueError as exc:
            self._emit("decode_error", None, exc)
            return
        for msg in messages:
            self._dispatch(msg)

    def _dispatch(self, msg: Message) -> None:
        if isinstance(msg, Ack):
            if msg.method in ("subscribe", "unsubscribe"):
                self._on_ack(msg)
            else:
                self._on_method(msg)
            return
        if isinstance(msg, Heartbeat):
            return
        if isinstance(msg, Pong):
            if self.transport is not None:
                self.transport.notify_user_specific_pong_received()
            waiter = self._pong_waiters.pop(msg.req_id or -1, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(time.monotonic())
            return
        if isinstance(msg, SystemStatus):
            if msg.system != self.system_status:
                self.system_status = msg.system
                self.client.system_status = msg.system
                self._emit("status", None, msg.system)
        elif isinstance(msg, Instrument):
            if msg.snapshot:
                self.instrument_ready.set()
        elif self.private_handler is not None and type(msg).__name__ in _PRIVATE_TYPES:
            self.private_handler(msg)
            return
        elif isinstance(msg, ErrorMessage):
            wait = self._methods.get(msg.req_id or -1)
            if wait is not None and not wait.future.done():
                wait.future.set_result([Ack("error", False, None, None, msg.error, msg.req_id)])
                return
            request = self._requests.get(msg.req_id or -1)
            if request is not None and not request.future.done():
                fail = [Ack("subscribe", False, None, s, msg.error, msg.req_id)
                        for s in request.symbols]
                request.future.set_result(fail)
            elif _RATE_LIMITED in msg.error:
                self._pacer.back_off(1.0)
                self._emit("rate_limited", detail=msg.error)
        self.client._deliver(msg)

    def _on_ack(self, ack: Ack) -> None:
        request = self._requests.get(ack.req_id) if ack.req_id is not None else None
        if request is None or request.future.done():
            return
        request.acks.append(ack)
        if ack.symbol in request.symbols:
            request.symbols.discard(ack.symbol)
        elif not ack.success:
            request.symbols.clear()   # a request-level failure answers every symbol at once
        else:
            request.symbols.discard(None)
        if not request.symbols:
            request.future.set_result(request.acks)

    def _on_method(self, ack: Ack) -> None:
        wait = self._methods.get(ack.req_id) if ack.req_id is not None else None
        if wait is None or wait.future.done():
            return
        wait.answers.append(ack)
        if wait.expected is not None and len(wait.answers) >= wait.expected:
            wait.future.set_result(wait.answers)

    @property
    def token(self) -> str | None:
        """The token this connection authenticated with (None for public connections)."""
        return self._token

    def next_req_id(self) -> int:
        return next(self._req_ids)

    async def call(self, req_id: int, message: bytes, expected: int | None,
                   timeout: float) -> list[Ack] | None:
        """Send one trading request and collect its answers; None when none came in time.

        ``expected`` answers complete the call (``cancel_order`` answers once per order); with
        None, the answers that arrived by the timeout are returned.
        """
        transport = self.transport
        if transport is None:
            raise ConnectionError("not connected")
        future: asyncio.Future[list[Ack]] = asyncio.get_running_loop().create_future()
        wait = _MethodWait(future, expected)
        self._methods[req_id] = wait
        transport.send(WSMsgType.TEXT, message)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return wait.answers or None
        finally:
            self._methods.pop(req_id, None)

    async def ping(self) -> float:
        """Round-trip time of one application ping, in seconds."""
        transport = self.transport
        if transport is None:
            raise ConnectionError("not connected")
        req_id = next(self._req_ids)
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pong_waiters[req_id] = future
        start = time.monotonic()
        key = "req_id" if self.protocol == "v2" else "reqid"
        method = {"method": "ping"} if self.protocol == "v2" else {"event": "ping"}
        transport.send(WSMsgType.TEXT, _JSON.encode({**method, key: req_id}))
        try:
            return await asyncio.wait_for(future, self.client.request_timeout) - start
        finally:
            self._pong_waiters.pop(req_id, None)

    async def close(self) -> None:
        self._closing = True
        transport = self.transport
        if transport is not None:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
            try:
                await asyncio.wait_for(transport.wait_disconnected(), 2.0)
            except Exception as exc:
                log.debug("%s: close: %r", self.name, exc)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class Client:
    """A Kraken Spot WebSocket client with verified books and subscriptions that survive.

    :param url: the public endpoint; default Kraken's (``ENDPOINTS``) for ``protocol``/``beta``
    :param protocol: ``"v2"`` (symbols like ``BTC/USD``) or ``"v1"`` (pairs like ``XBT/USD``)
    :param level3_url: the level3 endpoint (v2 only)
    :param token: a WebSocket token, or an async callable returning a fresh one per connection
        (required by ``level3``)
    :param precisions: known ``{symbol: (price_precision, qty_precision)}``; otherwise a v2
        connection subscribes to ``instrument`` first
    :param on_event: called with every :class:`ClientEvent`
    :param recorder: called with the bytes of every message received (``kbook record``)

    Use it as an async context manager::

        async with Client() as client:
            [book] = await client.subscribe_book(["BTC/USD"], depth=10, on_book=print_top)
            async for message in client.messages("trade"):
                ...
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        protocol: Protocol = "v2",
        beta: bool = False,
        level3_url: str | None = None,
        token: Callable[[], Awaitable[str]] | str | None = None,
        precisions: dict[str, tuple[int, int]] | None = None,
        policy: ReconnectPolicy | None = None,
        budget: ConnectionBudget | None = None,
        ping_interval: float = 20.0,
        pong_timeout: float = 10.0,
        idle_timeout: float = 10.0,
        snapshot_timeout: float = 10.0,
        request_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        subscribe_rate: float = 20.0,
        subscribe_burst: int = 10,
        batch_size: int = 50,
        on_event: Callable[[ClientEvent], Any] | None = None,
        recorder: Callable[[bytes], Any] | None = None,
        seed: int | None = None,
    ) -> None:
        if protocol not in ("v2", "v1"):
            raise ValueError("protocol must be 'v2' or 'v1'")
        if pong_timeout > ping_interval:
            raise ValueError("pong_timeout must not exceed ping_interval")
        self.protocol: Protocol = protocol
        self.url = url or ENDPOINTS[(protocol, "public", beta)]
        self.level3_url = level3_url or ENDPOINTS[("v2", "level3", beta)]
        self.token = token
        self.precisions: dict[str, tuple[int, int]] = dict(precisions or {})
        self.policy = policy or ReconnectPolicy()
        self.budget = budget or ConnectionBudget(self.policy.max_attempts, self.policy.window)
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.idle_timeout = idle_timeout
        self.snapshot_timeout = snapshot_timeout
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.subscribe_rate = subscribe_rate
        self.subscribe_burst = subscribe_burst
        self.batch_size = batch_size
        self.on_event = on_event
        self.recorder = recorder
        self.rng = random.Random(seed)
        self.system_status: str | None = None
        self._public: _Connection | None = None
        self._level3: list[_Connection] = []
        self._private: _Connection | None = None
        self._runners: list[asyncio.Task[None]] = []
        self._message_queues: list[tuple[str | None, asyncio.Queue[Message]]] = []
        self._event_queues: list[asyncio.Queue[ClientEvent]] = []
        self._callbacks: dict[str, list[Callable[[Message], Any]]] = {}
        self.events_seen: list[ClientEvent] = []
        self.max_event_log = 10_000

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the public connection; returns once it is connected (reconnects run on)."""
        if self._public is None:
            self._public = await self._open("public", self.url, self.protocol, None)

    async def open_private(self, url: str | None = None, *, beta: bool = False,
                           token: Callable[[], Awaitable[str]] | str | None = None
                           ) -> _Connection:
        """Open (once) the authenticated connection for private channels and trading."""
        if self._private is not None:
            return self._private
        source = token if token is not None else self.token
        if source is None:
            raise ClientError("a token (or a TokenProvider) is required for private access")
        endpoint = url or ENDPOINTS[(self.protocol, "private", beta)]
        self._private = await self._open("private", endpoint, self.protocol, source)
        return self._private

    async def _open(self, name: str, url: str, protocol: Protocol,
                    token: Callable[[], Awaitable[str]] | str | None) -> _Connection:
        conn = _Connection(self, name, url, protocol, token)
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        runner = asyncio.ensure_future(conn.run(first))
        self._runners.append(runner)
        await first
        return conn

    async def close(self) -> None:
        """Close every connection and stop every task; the client cannot be reused."""
        for conn in self.connections:
            await conn.close()
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        self._runners.clear()

    # -- subscribing ---------------------------------------------------------------------

    def _conn(self) -> _Connection:
        if self._public is None:
            raise ClientError("client not started")
        return self._public

    async def subscribe_book(
        self,
        symbols: Iterable[str],
        depth: int = 10,
        *,
        on_book: Callable[[L2Book], Any] | None = None,
        notify_depth: int | None = None,
    ) -> list[L2Book]:
        """Subscribe to L2 books; return them once every symbol is acknowledged.

        :param on_book: called with the book after every update that changed one of its
            ``notify_depth`` best levels (all levels by default), only while the book is valid
        :raises SubscriptionError: the exchange refused a symbol or the depth
        """
        conn = self._conn()
        symbols = list(symbols)
        if depth not in ALLOWED_DEPTHS:
            # checked before sending, with the error Kraken would give
            raise SubscriptionError("book", ",".join(symbols), "Subscription depth not supported")
        params: dict[str, Any] = {"depth": depth}
        if self.protocol == "v2":
            params["snapshot"] = True
        for symbol in symbols:
            book = conn.feed.book(symbol, depth=depth if self.protocol == "v1" else 0)
            if book is None:
                book = self._create_book(conn, symbol, depth)
            hooks = conn.hooks[("book", symbol)] = _BookHooks(conn, book, on_book)
            hooks.install()
            book.notify_depth = notify_depth if notify_depth is not None else 1 << 20
        await conn.subscribe("book", symbols, params)
        out = []
        for symbol in symbols:
            book = conn.feed.book(symbol, depth=depth if self.protocol == "v1" else 0)
            assert book is not None
            out.append(book)
        return out

    def _create_book(self, conn: _Connection, symbol: str, depth: int) -> L2Book:
        if self.protocol == "v2":
            precision = self.precisions.get(symbol, (None, None))
            return conn.feed.add_book(symbol, depth, *precision)
        # a v1 book learns its precision from its snapshot's strings
        return conn.feed.add_book(symbol, depth, protocol="v1")

    async def subscribe_level3(
        self,
        symbols: Iterable[str],
        depth: int = 10,
        *,
        on_book: Callable[[Level3Book], Any] | None = None,
        notify_depth: int | None = None,
    ) -> list[Level3Book]:
        """Subscribe to level3 books (v2 only, token required), 200 symbols per connection."""
        symbols = list(symbols)
        if depth not in (10, 100, 1000):
            raise SubscriptionError("level3", ",".join(symbols), "Subscription depth not supported")
        out: list[Level3Book] = []
        while symbols:
            conn = next((c for c in self._level3 if self._room(c) > 0), None)
            if conn is None:
                conn = await self._open(f"level3-{len(self._level3)}", self.level3_url, "v2",
                                        self.token)
                self._level3.append(conn)
            take, symbols = symbols[:self._room(conn)], symbols[self._room(conn):]
            for symbol in take:
                conn.feed.set_level3_depth(symbol, depth)
            await conn.subscribe("level3", take, {"depth": depth, "snapshot": True})
            for symbol in take:
                book = conn.feed.level3_book(symbol)
                if book is None:
                    await self._wait_for(conn.feed.level3_book, symbol)
                    book = conn.feed.level3_book(symbol)
                assert book is not None
                hooks = conn.hooks[("level3", symbol)] = _BookHooks(conn, book, on_book)
                hooks.install()
                book.notify_depth = notify_depth if notify_depth is not None else 1 << 20
                out.append(book)
        return out

    async def _wait_for(self, probe: Callable[[str], Any], symbol: str) -> None:
        deadline = time.monotonic() + self.snapshot_timeout
        while probe(symbol) is None:
            if time.monotonic() > deadline:
                raise RequestTimeout("no snapshot in time")
            await asyncio.sleep(0.01)

    def _room(self, conn: _Connection) -> int:
        return LEVEL3_SYMBOLS_PER_CONNECTION - sum(
            1 for s in conn.subs.values() if s.channel == "level3")

    async def subscribe(
        self,
        channel: str,
        symbols: Iterable[str] | None = None,
        *,
        on_message: Callable[[Message], Any] | None = None,
        **params: Any,
    ) -> list[Ack]:
        """Subscribe to any other channel (``ticker``, ``trade``, ``ohlc``, ``instrument``,
        ``spread`` (v1), ``status``, ``heartbeat``), with Kraken's parameters as keywords
        (``event_trigger="bbo"``, ``snapshot=True``, ``interval=5``, ...).

        :raises SubscriptionError: the exchange refused a symbol or a parameter
        """
        if on_message is not None:
            self._callbacks.setdefault(channel, []).append(on_message)
        syms: list[str | None] = list(symbols) if symbols is not None else [None]
        return await self._conn().subscribe(channel, syms, params)

    async def unsubscribe(self, channel: str, symbols: Iterable[str] | None = None,
                          **params: Any) -> None:
        """Stop a subscription (books stay readable but are no longer updated)."""
        syms: list[str | None] = list(symbols) if symbols is not None else [None]
        await self._conn().unsubscribe(channel, syms, params)

    # -- reading -------------------------------------------------------------------------

    def book(self, symbol: str, depth: int = 10) -> L2Book | None:
        """The L2 book of ``symbol`` (v1: of channel ``book-<depth>``)."""
        conn = self._conn()
        return conn.feed.book(symbol, depth=depth if self.protocol == "v1" else 0)

    def level3_book(self, symbol: str) -> Level3Book | None:
        for conn in self._level3:
            book = conn.feed.level3_book(symbol)
            if book is not None:
                return book
        return None

    @property
    def connections(self) -> list[_Connection]:
        return [c for c in [self._public, *self._level3, self._private] if c is not None]

    async def ping(self) -> float:
        """Round-trip time of one application ping on the public connection, in seconds."""
        return await self._conn().ping()

    async def messages(self, channel: str | None = None,
                       maxsize: int = 10_000) -> AsyncIterator[Message]:
        """Typed non-book messages as they arrive (all channels, or one)."""
        queue: asyncio.Queue[Message] = asyncio.Queue(maxsize)
        entry = (channel, queue)
        self._message_queues.append(entry)
        try:
            while True:
                yield await queue.get()
        finally:
            self._message_queues.remove(entry)

    async def book_updates(self, book: L2Book | Level3Book) -> AsyncIterator[L2Book | Level3Book]:
        """The book each time it changed (a slow consumer sees only the latest state)."""
        hooks = next((h for c in self.connections for h in c.hooks.values() if h.book is book),
                     None)
        if hooks is None:
            raise ClientError(f"{book.symbol}: not a book of this client")
        changed = asyncio.Event()
        hooks.events.append(changed)
        hooks.install()
        try:
            while True:
                await changed.wait()
                changed.clear()
                yield book
        finally:
            hooks.events.remove(changed)
            hooks.install()

    async def events(self) -> AsyncIterator[ClientEvent]:
        """Every :class:`ClientEvent` from now on."""
        queue: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self._event_queues.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._event_queues.remove(queue)

    # -- fan-out ---------------------------------------------------------------------------

    def _emit(self, event: ClientEvent) -> None:
        if len(self.events_seen) >= self.max_event_log:
            del self.events_seen[: self.max_event_log // 2]
        self.events_seen.append(event)
        log.debug("%s", event)
        for queue in self._event_queues:
            queue.put_nowait(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("on_event callback failed")

    def _deliver(self, msg: Message) -> None:
        channel = _CHANNEL_OF.get(type(msg))
        for callback in self._callbacks.get(channel or "", ()):
            try:
                callback(msg)
            except Exception as exc:
                self._emit(ClientEvent("callback_error", "public", None, repr(exc)))
        for wanted, queue in self._message_queues:
            if (wanted is None or wanted == channel) and not queue.full():
                queue.put_nowait(msg)


def _channel_map() -> dict[type, str]:
    from kbook import messages as m

    return {m.Ticker: "ticker", m.Trade: "trade", m.Candle: "ohlc", m.Spread: "spread",
            m.SystemStatus: "status", m.Instrument: "instrument", m.Ack: "ack",
            m.ErrorMessage: "error"}


_CHANNEL_OF = _channel_map()
_PRIVATE_TYPES = ("Execution", "BalanceSnapshot", "LedgerEntry", "OwnTrade", "OpenOrder")
