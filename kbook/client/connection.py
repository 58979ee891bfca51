"""One Kraken WebSocket connection, kept alive: connect, watch, restore, resync, route.

A :class:`Connection` owns a picows transport whose frames go straight into the Cython
:class:`~kbook.Feed` through :class:`~kbook._listener.FeedListener`; only non-book messages reach
Python, typed by :mod:`kbook.messages`.

Staying alive follows Kraken's rules: an application ping well inside 60 s (picows' periodic
auto-ping sending Kraken's JSON ping), an idle watchdog that reconnects when nothing at all
arrives, reconnects with exponential backoff and jitter inside a budget of connection attempts
per rolling window, every subscription restored on reconnect, a book that fails its checksum
resubscribed alone (with backoff when it keeps failing), paced subscription bursts that back off
on ``Exceeded msg rate``, and system status changes surfaced as events.

Truth under failure: the moment the connection is lost every book it carried is invalid
(``books_stale`` event) until a fresh snapshot verifies after reconnecting. A subscription is
active, being retried (``subscription_retry`` events), or refused with a typed error; never
inactive in silence.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from picows import WSAutoPingStrategy, WSCloseCode, WSError, WSMsgType, WSTransport, ws_connect

from kbook._core import (
    BookIntegrityError,
    ChecksumMismatch,
    DecodeError,
    Feed,
    KBookError,
    L2Book,
    Level3Book,
    UnknownPrecision,
)
from kbook._listener import FeedListener
from kbook.client.endpoints import PRIVATE_CHANNELS, Protocol
from kbook.client.events import ClientEvent, Throttle
from kbook.client.latency import LatencyRecorder
from kbook.client.network import connect_error, proxy_for
from kbook.client.policy import Pacer
from kbook.errors import (
    AuthError,
    ConnectFailed,
    HandshakeRefused,
    InvalidKey,
    InvalidSignature,
    PermissionDenied,
    RequestTimeout,
    SubscriptionError,
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

if TYPE_CHECKING:
    from kbook.client.client import Client

__all__ = ["Connection"]

log = logging.getLogger("kbook.client")

_RATE_LIMITED = "Exceeded msg rate"
_JSON = msgspec.json.Encoder()
# message types that go to the connection's private handler (the trading session)
_PRIVATE_TYPES = ("Execution", "BalanceSnapshot", "LedgerEntry", "OwnTrade", "OpenOrder")


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
    in_flight: bool = False  # a subscribe for it is on the wire


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
    requested: tuple[str | None, ...] = ()


_TOKEN_REFUSED = "token refused"


def _fail_first(first: asyncio.Future[None], exc: BaseException) -> None:
    """Fail a first-connect future; marked retrieved, since its caller may be gone."""
    if not first.done():
        first.set_exception(exc)
        first.exception()


def _describe_failure(exc: BaseException) -> tuple[str, bool]:
    """A connect failure's cause in words, and whether retrying cannot cure it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message}", True
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}", False
    if isinstance(exc, socket.gaierror):
        return f"host name lookup failed: {exc.strerror or exc}", True
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused", False
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out", False
    if isinstance(exc, (InvalidKey, InvalidSignature, PermissionDenied)):
        return f"{_TOKEN_REFUSED}: {exc}", True
    if isinstance(exc, AuthError):
        return f"token request failed: {exc}", False
    if isinstance(exc, WSError):
        status = getattr(getattr(exc, "response", None), "status", None)
        code = int(status) if status is not None else None
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if code is not None:
            # 4xx (but 408 and 429) will answer the same next time; 5xx and the rest may not
            return f"HTTP {code} from the upgrade: {text}", (
                400 <= code < 500 and code not in (408, 429)
            )
        return f"WebSocket handshake failed: {text}", False
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or exc}", False
    return f"{type(exc).__name__}: {exc}", False


class BookHooks:
    """What a book does after an update: the user's callback, plus, only while needed, the
    resync notice and the async iterators' wake-ups.

    The book's ``on_update`` is the user's own function whenever nothing else is needed, so the
    listener calls it directly (a Python wrapper would cost a fifth of the client's CPU);
    :meth:`install` switches to this object while a resync or an iterator is pending.
    """

    __slots__ = ("book", "conn", "events", "resyncing", "user")

    def __init__(self, conn: Connection, book: Any, user: Callable[[Any], Any] | None) -> None:
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
            self.conn.emit("resync_done", book.symbol)
            self.install()
        if self.user is not None:
            self.user(book)  # its exceptions are reported by the listener
        for event in self.events:
            event.set()


class Connection:
    """One WebSocket connection with its subscriptions, kept alive by :meth:`run`.

    A :class:`~kbook.client.Client` makes them; code that builds on a connection (the trading
    session of :mod:`kbook.trading`) uses its public side: :meth:`subscribe`,
    :meth:`unsubscribe`, :meth:`call` with :meth:`next_req_id`, :meth:`ping`, :attr:`token`,
    :attr:`private_handler` (where private-channel messages go), :meth:`emit` and
    :meth:`callback_failed` (report through the client's events and logs).
    """

    def __init__(
        self,
        client: Client,
        name: str,
        url: str,
        protocol: Protocol,
        token: Callable[[], Awaitable[str]] | str | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.url = url
        self.protocol = protocol
        self.token_source = token
        # books exist only for what was subscribed: unsolicited snapshots are orphans
        self.feed = Feed(precisions=client.precisions, autocreate=False)
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
        self._pacer = Pacer(client.subscribe_rate, client.subscribe_burst)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._connected_at = 0.0
        self._failures = 0
        self._token: str | None = None
        self._pong_waiters: dict[int, asyncio.Future[float]] = {}
        self.connects = 0
        self.hooks: dict[tuple[str, str], BookHooks] = {}
        self.failure: ConnectFailed | None = None  # why the connection stopped for good
        self._instrument: asyncio.Task[None] | None = None  # the one instrument request
        self._instrument_subscribed = False  # on this connection (reset by every connect)
        self._restorer: asyncio.Task[None] | None = None
        self._drop_reason: str | None = None
        self._throttles: dict[str, Throttle] = {}
        self._learned: set[str] = set()  # symbols an instrument snapshot gave precisions for
        self._failed_attempts = 0  # since the last successful connect
        self._last_cause = "no attempt made"
        # survives reconnects: every new listener writes into the same rings
        self.latency: LatencyRecorder | None = LatencyRecorder() if client.record_latency else None
        self._last_error: ConnectFailed | None = None  # the last attempt's typed failure
        self._not_before = 0.0  # monotonic time before which no attempt is made (Retry-After)

    # -- events, logs and tasks ----------------------------------------------------------

    def emit(self, kind: str, symbol: str | None = None, detail: Any = None) -> None:
        """Report a :class:`ClientEvent` of this connection through its client."""
        self.client.report(ClientEvent(kind, self.name, symbol, detail))

    def callback_failed(self, where: str, symbol: str | None, exc: BaseException) -> None:
        """A user callback fed by this connection raised: the client reports it (ERROR log,
        ``callback_error`` event) and, with ``callback_errors="raise"``, stops."""
        self.client.callback_failed(where, symbol, exc, self.name)

    def _warn(
        self,
        key: str,
        message: str,
        *args: Any,
        level: int = logging.WARNING,
        exc_info: BaseException | None = None,
    ) -> None:
        """Log a failure, at most once per 10 s per ``key`` (the count of the rest is told)."""
        throttle = self._throttles.setdefault(key, Throttle())
        held = throttle.ready()
        if held is None:
            return
        if held:
            message += " (%d similar message(s) suppressed)"
            args = (*args, held)
        log.log(level, "%s: " + message, self.name, *args, exc_info=exc_info)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # always retrieved: no "exception was never retrieved"
        if exc is not None and not isinstance(exc, (ConnectionError, RequestTimeout)):
            log.error("%s: background task failed", self.name, exc_info=exc)

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
        # a fresh token for every connection; a token source that never answers is a failure
        try:
            return await asyncio.wait_for(self.token_source(), self.client.request_timeout)
        except TimeoutError:
            raise TimeoutError(f"no token within {self.client.request_timeout:g} s") from None

    async def run(self, first: asyncio.Future[None]) -> None:
        """Connect, serve, reconnect: until :meth:`close` or a permanent failure."""
        try:
            while not self._closing:
                try:
                    await self._run(first)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug must cost a reconnect, never the feed
                    log.exception("%s: connection loop failed", self.name)
                    self._failures += 1
                    self.emit("connect_failed", detail=repr(exc))
        finally:
            _fail_first(first, self.failure or ConnectFailed(self.url, "connection closed"))
            self.emit("closed", detail=None if self.failure is None else str(self.failure))

    async def _run(self, first: asyncio.Future[None]) -> None:
        client = self.client
        policy = client.policy
        deadline = None
        if policy.first_connect_timeout is not None:
            deadline = time.monotonic() + policy.first_connect_timeout
        while not self._closing:
            wait = policy.delay(self._failures, client.rng)
            if self.system_status == "maintenance":
                wait = max(wait, policy.after_maintenance)
            wait = max(wait, self._not_before - time.monotonic())
            if not first.done() and deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            if wait:
                await asyncio.sleep(wait)
            await client.budget.acquire()
            if self._closing:
                break
            timeout = client.connect_timeout
            if not first.done() and deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    # a typed last failure (a refused upgrade, TLS) says most: status, body
                    self._give_up(
                        first,
                        self._last_error
                        or ConnectFailed(
                            self.url,
                            f"{self._last_cause} (no connection within "
                            f"{policy.first_connect_timeout:g} s)",
                        ),
                    )
                    return
                timeout = min(timeout, remaining)
            self.emit("connecting", detail=self.url)
            try:
                self._token = await self._token_value()
                # bound the whole connect (TCP, TLS, upgrade): a peer that accepts and then goes
                # quiet or hangs up mid-handshake must not stall the reconnect loop
                transport, listener = await asyncio.wait_for(
                    ws_connect(
                        self._make_listener,
                        self.url,
                        ssl_context=client.ssl if self.url.startswith("wss:") else None,
                        proxy=proxy_for(self.url, client.proxy),
                        extra_headers=client.headers,
                        enable_auto_ping=True,
                        auto_ping_idle_timeout=client.ping_interval,
                        auto_ping_reply_timeout=client.pong_timeout,
                        auto_ping_strategy=WSAutoPingStrategy.PING_PERIODICALLY,
                        websocket_handshake_timeout=timeout,
                        disconnect_on_exception=False,
                    ),
                    timeout,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                typed = connect_error(self.url, exc)
                if typed is not None:
                    cause, permanent = typed.cause, typed.permanent
                else:
                    cause, permanent = _describe_failure(exc)
                if isinstance(exc, TimeoutError) and cause == "timed out":
                    cause = f"no answer within {timeout:g} s"
                if isinstance(typed, HandshakeRefused) and typed.retry_after is not None:
                    # the server said when to come back: never sooner (a 429/503 from a CDN)
                    self._not_before = time.monotonic() + typed.retry_after
                if self._attempt_failed(first, cause, permanent, deadline, typed):
                    return
                continue
            if not isinstance(listener, FeedListener) or transport.is_disconnected:
                # picows hands back (transport, None) when the peer hung up mid-handshake
                if self._attempt_failed(first, "closed during the handshake", False, deadline):
                    return
                continue
            self.connects += 1
            self.listener = listener
            self._connected_at = time.monotonic()
            if not first.done():
                first.set_result(None)
            if self._failed_attempts:
                log.warning(
                    "%s: connected to %s after %d failed attempt(s)",
                    self.name,
                    self.url,
                    self._failed_attempts,
                )
                self._failed_attempts = 0
            else:
                log.info("%s: connected to %s", self.name, self.url)
            watchdog = self._spawn(self._watchdog(transport, listener))
            self._kick_restore()
            try:
                await transport.wait_disconnected()
            except Exception as exc:  # a local failure: treat like any other drop
                log.warning("%s: disconnected with %r", self.name, exc)
            watchdog.cancel()
            stable = time.monotonic() - self._connected_at >= policy.stable_after
            # the first retry after a drop from a stable connection is immediate
            self._failures = 0 if stable else self._failures + 1

    def _attempt_failed(
        self,
        first: asyncio.Future[None],
        cause: str,
        permanent: bool,
        deadline: float | None,
        typed: ConnectFailed | None = None,
    ) -> bool:
        """Count a failed connection attempt; True when the connection gives up.

        ``typed`` is the failure's own error (:class:`HandshakeRefused`, :class:`TLSFailed`):
        a first connect that gives up raises it, with its status, headers or TLS problem.
        """
        self._failures += 1
        self._failed_attempts += 1
        self._last_cause = cause
        self._last_error = typed
        self.emit("connect_failed", detail=cause)
        # before the first connect the caller gets the answer (ConnectFailed): INFO is enough;
        # a reconnect that fails is news nobody else will tell
        self._warn(
            "connect",
            "connection attempt %d to %s failed: %s",
            self._failed_attempts,
            self.url,
            cause,
            level=logging.INFO if not first.done() else logging.WARNING,
        )
        give_up = self.client.policy.give_up_after
        if not first.done():
            out_of_time = deadline is not None and time.monotonic() >= deadline
            if permanent or out_of_time or (give_up is not None and self._failures >= give_up):
                self._give_up(first, typed or ConnectFailed(self.url, cause, permanent=permanent))
                return True
        elif permanent and cause.startswith(_TOKEN_REFUSED):
            # the exchange refused the credentials themselves: retrying cannot cure it
            self._give_up(first, ConnectFailed(self.url, cause, permanent=True))
            return True
        return False

    def _give_up(self, first: asyncio.Future[None], failure: ConnectFailed) -> None:
        self.failure = failure
        self._closing = True
        # a first connect raises to its caller; a connection that was up stops with no caller
        log.log(
            logging.INFO if not first.done() else logging.ERROR,
            "%s: giving up: %s",
            self.name,
            failure,
        )
        self.emit("gave_up", detail=failure)
        self._mark_stale(str(failure))
        _fail_first(first, failure)

    def _make_listener(self) -> FeedListener:
        listener = FeedListener(self.feed, self, self._ping_message())
        listener.recorder = self.client.recorder
        if self.latency is not None:
            self.latency.attach(listener)
        return listener

    def _on_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.connected.set()
        self.instrument_ready.clear()
        self._instrument_subscribed = False
        self._drop_reason = None
        # every book restarts from Kraken's next snapshot
        for book in self.feed.books.values():
            book.clear()
        for sub in self.subs.values():
            sub.active = False
            sub.in_flight = False
        self.emit("connected", detail=self.url)

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
        for sub in self.subs.values():
            sub.active = False
            sub.in_flight = False
        close = transport.close_handshake
        detail = (
            None
            if close is None
            else (
                close.recv.code if close.recv is not None else None,
                close.sent.code if close.sent is not None else None,
            )
        )
        reason = self._drop_reason
        if reason is None:
            if self._closing:
                reason = "closed by the client"
            elif close is None:
                reason = "connection lost without a CLOSE frame"
            elif close.recv is not None and (close.sent is None or close.recv_then_sent):
                reason = f"closed by the server: {close.recv.code!s} {close.recv.reason!r}"
            elif close.sent is not None:
                # picows closes with 1001 when the peer misses the reply to its ping
                reason = f"closed locally: {close.sent.code!s} {close.sent.reason!r}"
            else:
                reason = "connection lost"
        self.emit("disconnected", detail=detail)
        if not self._closing:
            self._warn("disconnect", "disconnected from %s: %s", self.url, reason)
        else:
            log.info("%s: disconnected from %s: %s", self.name, self.url, reason)
        self._mark_stale(reason)

    def _mark_stale(self, reason: str) -> None:
        """Invalidate every book of this connection: a book is valid only while it is live."""
        stale = []
        for book in self.feed.books.values():
            if book.valid:
                book.invalidate()
                stale.append(book.symbol)
        if stale:
            self.emit("books_stale", None, {"symbols": stale, "reason": reason})

    def _idle_limit(self) -> float:
        """Seconds of silence that mean a dead connection.

        Kraken's heartbeats arrive about once a second only on connections with a public
        market-data subscription (and always on v1); elsewhere only the pongs of our own pings
        (every ``ping_interval + pong_timeout``) are traffic, and picows' ping timeout watches
        those, so a quiet private or level3 connection is not churned.
        """
        client = self.client
        beating = self.protocol == "v1" or any(
            s.active and s.channel not in PRIVATE_CHANNELS for s in self.subs.values()
        )
        if beating:
            return client.idle_timeout
        return client.idle_timeout + client.ping_interval + client.pong_timeout

    async def _watchdog(self, transport: WSTransport, listener: FeedListener) -> None:
        """Close a silent connection; resubscribe a book that was acked but never snapshotted;
        restart the restorer when a subscription is left inactive."""
        client = self.client
        period = max(0.05, min(client.idle_timeout, client.snapshot_timeout) / 4)
        last_frames = -1
        last_change = time.monotonic()
        while True:
            await asyncio.sleep(period)
            if self.latency is not None:
                self.latency.refresh(listener)
            frames = listener.frames
            now = time.monotonic()
            if frames != last_frames:
                last_frames, last_change = frames, now
            elif now - last_change >= self._idle_limit():
                self.emit("idle_timeout", detail=now - last_change)
                self._drop_reason = f"no message for {now - last_change:.1f} s"
                transport.disconnect(graceful=False)
                return
            for sub in list(self.subs.values()):
                if not sub.active and not sub.in_flight:
                    self._kick_restore()
                    continue
                if sub.channel not in ("book", "level3") or not sub.active or sub.resyncing:
                    continue
                book = self._book_of(sub)
                if (
                    book is not None
                    and not book.valid
                    and now - sub.subscribed_at >= client.snapshot_timeout
                ):
                    self.emit("stale_subscription", sub.symbol)
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
            for s in self.subs.values()
        )

    def _kick_restore(self) -> None:
        """Make sure the restorer runs (it ends once every subscription is active)."""
        if self._restorer is None or self._restorer.done():
            self._restorer = self._spawn(self._restore())

    async def _restore(self) -> None:
        """After a (re)connect, or whenever one is inactive: subscribe what is not active, with
        backoff while the venue does not answer, until every subscription is active or refused.
        """
        failures = 0
        while not self._closing and self.transport is not None:
            pending = [s for s in self.subs.values() if not s.active and not s.in_flight]
            if not pending:
                return
            try:
                if self._needs_instrument() and any(
                    s.channel in ("book", "level3") for s in pending
                ):
                    await self._ensure_instrument()
                await self._subscribe_many(pending)
                failures = 0
            except ConnectionError:
                return  # the next connection restores everything
            except (RequestTimeout, TimeoutError, SubscriptionError) as exc:
                if isinstance(exc, SubscriptionError) and exc.channel != "instrument":
                    continue  # reported and removed; the rest go on
                failures += 1
                delay = min(30.0, self.client.request_timeout * 0.1 * 2**failures)
                delay *= 1.0 - 0.25 * self.client.rng.random()
                symbols = [s.symbol for s in pending]
                self.emit(
                    "subscription_retry",
                    None,
                    {"symbols": symbols, "cause": str(exc) or "no answer", "delay": delay},
                )
                self._warn(
                    "restore",
                    "%d subscription(s) unanswered (%s); retrying in %.1f s",
                    len(symbols),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _ensure_instrument(self) -> None:
        """Subscribe ``instrument`` once per connection and wait for its snapshot.

        Concurrent callers share one request; a failed one is retried by the next caller.
        """
        if self.instrument_ready.is_set():
            return
        if self._instrument is None or self._instrument.done():
            self._instrument = asyncio.ensure_future(self._instrument_request())
        await asyncio.shield(self._instrument)

    async def _instrument_request(self) -> None:
        if self._instrument_subscribed:
            # subscribed, but the snapshot never came: only a fresh subscription sends one
            await self._send_request("unsubscribe", "instrument", [None], {})
            self._instrument_subscribed = False
        acks = await self._send_request("subscribe", "instrument", [None], {})
        refused = [
            a for a in acks if not a.success and "already subscribed" not in (a.error or "").lower()
        ]
        if refused:
            raise SubscriptionError("instrument", None, refused[0].error or "refused")
        self._instrument_subscribed = True
        try:
            await asyncio.wait_for(self.instrument_ready.wait(), self.client.request_timeout)
        except TimeoutError:
            raise RequestTimeout("instrument: no snapshot in time") from None

    def _request_message(
        self,
        method: str,
        channel: str,
        symbols: Sequence[str | None],
        params: dict[str, Any],
        req_id: int,
    ) -> bytes:
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

    async def _send_request(
        self, method: str, channel: str, symbols: Sequence[str | None], params: dict[str, Any]
    ) -> list[Ack]:
        """Send one request and wait for one ack per symbol, retrying when rate limited.

        A rate-limit answer that names no symbol (Kraken's request-level error) applies to
        every symbol of the request: all of them are sent again after the backoff.
        """
        pending = list(symbols)
        acks: list[Ack] = []
        for attempt in range(6):
            await self._pacer.acquire()
            transport = self.transport
            if transport is None:
                raise ConnectionError("not connected")
            req_id = next(self._req_ids)
            future: asyncio.Future[list[Ack]] = asyncio.get_running_loop().create_future()
            self._requests[req_id] = _Request(set(pending), future, requested=tuple(pending))
            message = self._request_message(method, channel, pending, params, req_id)
            transport.send(WSMsgType.TEXT, message)
            try:
                got = await asyncio.wait_for(future, self.client.request_timeout)
            except TimeoutError:
                raise RequestTimeout(f"{method} {channel} {pending}: no answer") from None
            finally:
                self._requests.pop(req_id, None)
            limited = [a for a in got if not a.success and _RATE_LIMITED in (a.error or "")]
            if any(a.symbol not in pending for a in limited):
                retry = list(pending)  # a request-level refusal: all of them again
            else:
                retry = [a.symbol for a in limited]
            acks.extend(a for a in got if not any(a is b for b in limited))
            if not retry:
                return acks
            delay = min(30.0, 0.5 * 2**attempt)
            self._pacer.back_off(delay)
            self.emit("rate_limited", detail=delay)
            self._warn(
                "rate",
                "%s %s rate limited; retrying %d symbol(s) in %.1f s",
                method,
                channel,
                len(retry),
                delay,
            )
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
                batch = [
                    s
                    for s in members[i : i + self.client.batch_size]
                    if self.subs.get((s.channel, s.symbol)) is s
                ]
                if not batch:
                    continue
                for sub in batch:
                    sub.subscribed_at = time.monotonic()
                    sub.in_flight = True
                try:
                    got = await self._send_request(
                        "subscribe", channel, [s.symbol for s in batch], batch[0].params
                    )
                finally:
                    for sub in batch:
                        sub.in_flight = False
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
                        self.emit("subscription_error", sub.symbol, error)
                        log.warning("%s: %s %s refused: %s", self.name, channel, sub.symbol, error)
                        errors.append(SubscriptionError(channel, sub.symbol, error))
                acks.extend(got)
        if errors:
            raise errors[0]
        return acks

    async def subscribe(
        self, channel: str, symbols: Sequence[str | None], params: dict[str, Any]
    ) -> list[Ack]:
        """Register and subscribe; see :class:`RequestTimeout` for what a timeout means."""
        new = []
        for symbol in symbols:
            key = (channel, symbol)
            existing = self.subs.get(key)
            if existing is not None and existing.params == dict(params):
                # one subscription per channel and symbol: it is already kept alive
                if existing.active or existing.in_flight:
                    continue
                new.append(existing)
                continue
            sub = _Sub(channel, symbol, dict(params))
            self.subs[key] = sub
            new.append(sub)
        if not new or not self.connected.is_set():
            return []  # replayed by the restorer once connected
        for sub in new:
            sub.in_flight = True  # this call sends them: the restorer keeps its hands off
        try:
            if channel in ("book", "level3") and self._needs_instrument():
                await self._ensure_instrument()
            return await self._subscribe_many(new)
        except (RequestTimeout, TimeoutError):
            self._kick_restore()  # keeps retrying with backoff, reported as events
            raise
        finally:
            for sub in new:
                sub.in_flight = False

    async def unsubscribe(
        self, channel: str, symbols: Sequence[str | None], params: dict[str, Any]
    ) -> None:
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
            self.emit("resync_started", sub.symbol, delay)
            self._warn(
                "resync_started",
                "resyncing %s %s (a fresh snapshot%s)",
                sub.channel,
                sub.symbol,
                f" in {delay:.2f} s" if len(sub.mismatches) > 1 else "",
            )
            if len(sub.mismatches) > 1:
                await asyncio.sleep(delay)
            hooks = self.hooks.get((sub.channel, sub.symbol))
            if hooks is not None:
                hooks.resyncing = True
                hooks.install()
            params = {k: v for k, v in sub.params.items() if k != "snapshot"}
            await self._send_request("unsubscribe", sub.channel, [sub.symbol], params)
            sub.subscribed_at = time.monotonic()
            sub.in_flight = True
            try:
                acks = await self._send_request("subscribe", sub.channel, [sub.symbol], sub.params)
            finally:
                sub.in_flight = False
            refused = [
                a
                for a in acks
                if not a.success and "already subscribed" not in (a.error or "").lower()
            ]
            if refused:
                sub.active = False  # the restorer takes it from here, and reports it
                self._kick_restore()
        except (ConnectionError, RequestTimeout) as exc:
            self.emit("resync_failed", sub.symbol, str(exc))
            self._warn("resync", "resync of %s failed (%s); retrying", sub.symbol, exc)
            if isinstance(exc, RequestTimeout) and self.subs.get((sub.channel, sub.symbol)) is sub:
                sub.active = False
                self._kick_restore()
        finally:
            sub.resyncing = False

    # -- frames handed up by the listener -------------------------------------------------

    def _on_callback_error(self, book: Any, exc: Exception) -> None:
        """A user's book callback raised: report it, keep the feed running (or stop)."""
        self.callback_failed("on_book", getattr(book, "symbol", None), exc)

    def _on_internal_error(self, exc: Exception) -> None:
        """The client's own error handling raised: a bug, reported loudly; the feed goes on."""
        log.error("%s: internal error while handling a frame", self.name, exc_info=exc)
        self.emit("decode_error", None, exc)

    def _on_book_error(self, exc: KBookError) -> None:
        if isinstance(exc, ChecksumMismatch | BookIntegrityError):
            kind = "checksum_mismatch" if isinstance(exc, ChecksumMismatch) else "integrity_error"
            self.emit(kind, exc.symbol, exc)
            self._warn(kind, "%s", exc)
            channel = "level3" if self.feed.level3_book(exc.symbol) is not None else "book"
            sub = self.subs.get((channel, exc.symbol))
            if sub is not None:
                sub.mismatches.append(time.monotonic())
                self._spawn(self._resync(sub))
        elif isinstance(exc, UnknownPrecision):
            self.emit("decode_error", exc.symbol, exc)
            if not any((c, exc.symbol) in self.subs for c in ("book", "level3")):
                # a snapshot nobody asked for: no book, no instrument request
                self._warn("unsolicited", "book data for unsubscribed %s ignored", exc.symbol)
                return
            self._warn("precision", "%s", exc)
            self._spawn(self._ensure_then_resync(exc.symbol))
        elif isinstance(exc, DecodeError):
            self.emit("decode_error", exc.symbol, exc)
            self._warn("decode", "malformed frame: %s", exc)
            if not exc.may_affect_books:
                return  # another channel's frame: no book missed anything
            # A dropped book frame means its books missed an update: they must not look valid.
            # A frame that cannot be attributed could have been any book's.
            symbols = set(exc.symbols)
            for sub in list(self.subs.values()):
                if sub.channel not in ("book", "level3"):
                    continue
                if exc.channel is not None and sub.channel != exc.channel:
                    continue
                if symbols and sub.symbol not in symbols:
                    continue
                book = self._book_of(sub)
                if book is not None:
                    book.invalidate()
                self._spawn(self._resync(sub))
        else:
            self.emit("decode_error", None, exc)
            self._warn("decode", "%s", exc)

    async def _ensure_then_resync(self, symbol: str) -> None:
        """A book arrived before its precision: learn it (once per connection), then resync."""
        try:
            await self._ensure_instrument()
        except (ConnectionError, RequestTimeout, SubscriptionError):
            return  # the watchdog's stale check tries again
        if self.protocol == "v2" and symbol not in self.feed_precisions():
            for channel in ("book", "level3"):
                sub = self.subs.pop((channel, symbol), None)
                if sub is not None:
                    error = "no precision: the symbol is not in the instrument snapshot"
                    self.emit("subscription_error", symbol, error)
                    log.warning("%s: %s %s: %s", self.name, channel, symbol, error)
            return
        for channel in ("book", "level3"):
            sub = self.subs.get((channel, symbol))
            if sub is not None:
                await self._resync(sub)

    def feed_precisions(self) -> set[str]:
        """Symbols whose precisions this connection knows (given, or learned from instrument)."""
        known = set(self.client.precisions)
        known.update(self._learned)
        return known

    def _on_message(self, obj: Any) -> None:
        try:
            messages = parse_message(obj)
        except (ValueError, KBookError) as exc:
            err = exc if isinstance(exc, DecodeError) else DecodeError(str(exc))
            err.may_affect_books = False  # a typed message, not a book
            self.emit("decode_error", None, err)
            self._warn("decode", "malformed message: %s", err)
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
            waiter = self._pong_waiters.pop(msg.req_id if isinstance(msg.req_id, int) else -1, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(time.monotonic())
            return
        if isinstance(msg, SystemStatus):
            if msg.system != self.system_status:
                self.system_status = msg.system
                self.client.system_status = msg.system
                self.emit("status", None, msg.system)
        elif isinstance(msg, Instrument):
            self._learned.update(
                str(p["symbol"]) for p in msg.pairs if isinstance(p, dict) and "symbol" in p
            )
            if msg.snapshot:
                self.instrument_ready.set()
        elif self.private_handler is not None and type(msg).__name__ in _PRIVATE_TYPES:
            self.private_handler(msg)
            return
        elif isinstance(msg, ErrorMessage):
            req_id = msg.req_id if isinstance(msg.req_id, int) else -1
            wait = self._methods.get(req_id)
            if wait is not None and not wait.future.done():
                wait.future.set_result([Ack("error", False, None, None, msg.error, msg.req_id)])
                return
            request = self._requests.get(req_id)
            if request is not None and not request.future.done():
                fail = [
                    Ack("subscribe", False, None, s, msg.error, msg.req_id) for s in request.symbols
                ]
                request.future.set_result(fail)
            elif _RATE_LIMITED in msg.error:
                # no request named (v1's {"Error": ...}): every pending subscribe was refused
                self._pacer.back_off(1.0)
                self.emit("rate_limited", detail=msg.error)
                for request in self._requests.values():
                    if not request.future.done():
                        request.future.set_result(
                            [
                                Ack("subscribe", False, None, s, msg.error, None)
                                for s in request.requested
                            ]
                        )
            else:
                self._warn("venue_error", "error from the venue: %s", msg.error)
        self.client.deliver(msg)

    def _on_ack(self, ack: Ack) -> None:
        req_id = ack.req_id if isinstance(ack.req_id, int) else None
        request = self._requests.get(req_id) if req_id is not None else None
        if request is None or request.future.done():
            return
        request.acks.append(ack)
        if ack.symbol in request.symbols:
            request.symbols.discard(ack.symbol)
        elif not ack.success:
            request.symbols.clear()  # a request-level failure answers every symbol at once
        else:
            request.symbols.discard(None)
        if not request.symbols:
            request.future.set_result(request.acks)

    def _on_method(self, ack: Ack) -> None:
        req_id = ack.req_id if isinstance(ack.req_id, int) else None
        wait = self._methods.get(req_id) if req_id is not None else None
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

    async def call(
        self, req_id: int, message: bytes, expected: int | None, timeout: float
    ) -> list[Ack] | None:
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
        if self._instrument is not None:
            self._instrument.cancel()
        pending = [*self._tasks, *([self._instrument] if self._instrument else [])]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
