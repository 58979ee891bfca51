"""The Kraken Spot WebSocket client: connections that keep every subscription alive.

A :class:`Client` owns one public connection (v2 or v1) and, for ``level3``, as many
authenticated level3 connections as it needs (Kraken allows 200 symbols per connection); each
is a :class:`~kbook.client.connection.Connection`. Books are the Cython engine's, verified on
every update; other messages arrive typed (:mod:`kbook.messages`) through callbacks and async
iterators.

Truth under failure: a book is valid only while verified *and live*. A first connection that
cannot be made fails within ``ReconnectPolicy.first_connect_timeout`` with
:class:`~kbook.errors.ConnectFailed`; after that every failure is an event and a log line
(WARNING or ERROR, rate-limited), and the books of a lost connection are invalid until their
next snapshot verifies.

What it is not: order entry (:mod:`kbook.trading` builds it on the private connection opened
here), or a strategy framework. Callbacks run on the event loop thread, inside the frame
handler: keep them short.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from ssl import SSLContext
from typing import Any, Literal

from kbook._core import ALLOWED_DEPTHS, L2Book, Level3Book
from kbook.client.connection import BookHooks, Connection
from kbook.client.endpoints import ENDPOINTS, LEVEL3_SYMBOLS_PER_CONNECTION, Protocol
from kbook.client.events import ClientEvent, EventQueue, Throttle
from kbook.client.latency import LatencyReport, report
from kbook.client.network import request_headers
from kbook.client.policy import ConnectionBudget, ReconnectPolicy
from kbook.errors import CallbackError, ClientError, SubscriptionError
from kbook.messages import Ack, Message

__all__ = ["Client"]

log = logging.getLogger("kbook.client")


class Client:
    """A Kraken Spot WebSocket client with verified books and subscriptions that survive.

    :param url: the public endpoint; default Kraken's (``ENDPOINTS``) for ``protocol``/``beta``
    :param protocol: ``"v2"`` (symbols like ``BTC/USD``) or ``"v1"`` (pairs like ``XBT/USD``)
    :param level3_url: the level3 endpoint (v2 only)
    :param token: a WebSocket token, or an async callable returning a fresh one per connection
        (required by ``level3``)
    :param precisions: known ``{symbol: (price_precision, qty_precision)}``; otherwise a v2
        connection subscribes to ``instrument`` first
    :param private_url: the authenticated endpoint for :meth:`open_private`; by default
        Kraken's ``ws-auth`` when ``url`` is Kraken's public endpoint, else ``url`` itself
        (the simulator serves both on one port)
    :param on_event: called with every :class:`ClientEvent`
    :param recorder: called with the bytes of every message received (``kbook record``)
    :param callback_errors: what an exception from ``on_book``/``on_message`` does:
        ``"log"`` (default) logs it at ERROR with its traceback (rate-limited), reports a
        ``callback_error`` event and goes on; ``"raise"`` stops the client, and
        :meth:`wait` and every iterator raise :class:`CallbackError`
    :param ssl: the TLS context of ``wss://`` connections; default: the system's trust store,
        certificates and host names verified (:func:`~kbook.client.network.tls_context` makes
        one that also trusts a CA file)
    :param proxy: ``http://``, ``https://``, ``socks4://`` or ``socks5://`` proxy URL; None
        reads ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``/``NO_PROXY``, ``""`` forces a direct
        connection (precedence: :mod:`kbook.client.network`)
    :param user_agent: the ``User-Agent`` of the upgrade (default ``kbook/<version>``; ``""``
        sends none)
    :param extra_headers: more headers for the upgrade request
    :param record_latency: sample every book frame's receive → callback and exchange → receive
        latency (see :meth:`latency`; a clock read and a short scan per frame)

    A first connection that cannot be made raises :class:`ConnectFailed` from :meth:`start`
    within ``policy.first_connect_timeout`` (immediately for permanent causes); once
    connected, drops are reconnected under the policy, and the books of a lost connection are
    invalid until their next snapshot verifies.

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
        private_url: str | None = None,
        callback_errors: Literal["log", "raise"] = "log",
        ssl: SSLContext | None = None,
        proxy: str | None = None,
        user_agent: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        record_latency: bool = True,
    ) -> None:
        if protocol not in ("v2", "v1"):
            raise ValueError("protocol must be 'v2' or 'v1'")
        if pong_timeout > ping_interval:
            raise ValueError("pong_timeout must not exceed ping_interval")
        if callback_errors not in ("log", "raise"):
            raise ValueError("callback_errors must be 'log' or 'raise'")
        self.protocol: Protocol = protocol
        self.url = url or ENDPOINTS[(protocol, "public", beta)]
        self.level3_url = level3_url or ENDPOINTS[("v2", "level3", beta)]
        if private_url is None:
            kraken = {
                ENDPOINTS[(protocol, "public", b)]: ENDPOINTS[(protocol, "private", b)]
                for b in (False, True)
            }
            private_url = kraken.get(self.url, self.url)
        self.private_url = private_url
        self.callback_errors = callback_errors
        self.record_latency = record_latency
        self.ssl = ssl
        self.proxy = proxy
        self.headers = request_headers(user_agent, extra_headers)
        self.error: BaseException | None = None  # why the client stopped, if it did
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
        self._public: Connection | None = None
        self._level3: list[Connection] = []
        self._private: Connection | None = None
        self._runners: list[asyncio.Task[None]] = []
        self._message_queues: list[tuple[str | None, EventQueue[Message]]] = []
        self._event_queues: list[EventQueue[ClientEvent]] = []
        self._callbacks: dict[str, list[Callable[[Message], Any]]] = {}
        self.events_seen: list[ClientEvent] = []
        self.max_event_log = 10_000
        # one ERROR line per callback site (on_book/on_message and symbol) per interval
        self._callback_logs: dict[tuple[str, str | None], Throttle] = {}
        self._stopper: asyncio.Task[None] | None = None
        self._closed_by_user = False

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

    async def open_private(
        self,
        url: str | None = None,
        *,
        beta: bool = False,
        token: Callable[[], Awaitable[str]] | str | None = None,
    ) -> Connection:
        """Open (once) the authenticated connection for private channels and trading.

        :param url: the endpoint; default :attr:`private_url` (``beta=True``: Kraken's beta)
        :raises ConnectFailed: the connection could not be made (see :class:`Client`)
        """
        if self._private is not None:
            return self._private
        source = token if token is not None else self.token
        if source is None:
            raise ClientError("a token (or a TokenProvider) is required for private access")
        endpoint = url or (
            ENDPOINTS[(self.protocol, "private", True)] if beta else self.private_url
        )
        self._private = await self._open("private", endpoint, self.protocol, source)
        return self._private

    async def _open(
        self,
        name: str,
        url: str,
        protocol: Protocol,
        token: Callable[[], Awaitable[str]] | str | None,
    ) -> Connection:
        if self.error is not None:
            raise ClientError(f"the client stopped: {self.error}") from self.error
        conn = Connection(self, name, url, protocol, token)
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        runner = asyncio.ensure_future(conn.run(first))
        self._runners.append(runner)
        try:
            await first
        except BaseException:
            # failed or cancelled: nothing of this connection may go on reconnecting
            await conn.close()
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            self._runners.remove(runner)
            raise
        return conn

    async def close(self) -> None:
        """Close every connection and stop every task; the client cannot be reused."""
        for conn in self.connections:
            await conn.close()
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        self._runners.clear()
        if self.error is None:
            self.error = ClientError("client closed")
            self._closed_by_user = True
        for _, queue in self._message_queues:
            queue.close(self.error)
        for equeue in self._event_queues:
            equeue.close(self.error)

    async def wait(self) -> None:
        """Wait until the client stops: return after :meth:`close`, raise what stopped it
        otherwise (:class:`CallbackError`, or :class:`ConnectFailed` when a connection gave up
        for good, e.g. refused credentials)."""
        while True:
            if self.error is not None:
                if self._closed_by_user:
                    return
                raise self.error
            queue: EventQueue[ClientEvent] = EventQueue(0, "drop_oldest", None)
            self._event_queues.append(queue)
            try:
                while self.error is None:
                    try:
                        event = await queue.get()
                    except ClientError:
                        break
                    if event.kind == "gave_up" and self.error is None:
                        self.error = event.detail
            finally:
                if queue in self._event_queues:
                    self._event_queues.remove(queue)

    def _stop(self, exc: BaseException) -> None:
        """Stop the client because of ``exc`` (raised by :meth:`wait` and the iterators)."""
        if self.error is not None:
            return
        self.error = exc
        for _, queue in self._message_queues:
            queue.close(exc)
        for equeue in self._event_queues:
            equeue.close(exc)
        self._stopper = asyncio.ensure_future(self._close_quietly())

    async def _close_quietly(self) -> None:
        for conn in self.connections:
            await conn.close()

    def callback_failed(
        self, where: str, symbol: str | None, exc: BaseException, connection: str
    ) -> None:
        """A user callback raised: an ERROR log with traceback (at most one per callback site
        and symbol per 10 s, then the count held back) and an event; with
        ``callback_errors="raise"`` the client stops."""
        self.report(ClientEvent("callback_error", connection, symbol, repr(exc)))
        held = self._callback_logs.setdefault((where, symbol), Throttle()).ready()
        if held is not None:
            more = f" ({held} more since the last report)" if held else ""
            log.error(
                "%s callback raised%s%s",
                where,
                f" for {symbol}" if symbol else "",
                more,
                exc_info=exc,
            )
        if self.callback_errors == "raise":
            error = CallbackError(f"{where} callback raised {exc!r}")
            error.__cause__ = exc
            self._stop(error)

    # -- subscribing ---------------------------------------------------------------------

    def _conn(self) -> Connection:
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

        :param on_book: called with the book after every message that changed one of its
            ``notify_depth`` best levels (every message by default), only while the book is
            valid and its connection is live
        :raises SubscriptionError: the exchange refused a symbol or the depth
        :raises RequestTimeout: no answer in time; the subscription is retried in the
            background (``subscription_retry`` events)
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
            hooks = conn.hooks[("book", symbol)] = BookHooks(conn, book, on_book)
            hooks.install()
            if notify_depth is not None:
                book.notify_depth = notify_depth
        await conn.subscribe("book", symbols, params)
        out = []
        for symbol in symbols:
            book = conn.feed.book(symbol, depth=depth if self.protocol == "v1" else 0)
            assert book is not None
            out.append(book)
        return out

    def _create_book(self, conn: Connection, symbol: str, depth: int) -> L2Book:
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
                conn = await self._open(
                    f"level3-{len(self._level3)}", self.level3_url, "v2", self.token
                )
                self._level3.append(conn)
            take, symbols = symbols[: self._room(conn)], symbols[self._room(conn) :]
            for symbol in take:
                conn.feed.set_level3_depth(symbol, depth)
                if conn.feed.level3_book(symbol) is None:
                    conn.feed.add_level3_book(
                        symbol, depth, *self.precisions.get(symbol, (None, None))
                    )
            await conn.subscribe("level3", take, {"depth": depth, "snapshot": True})
            for symbol in take:
                book = conn.feed.level3_book(symbol)
                assert book is not None
                hooks = conn.hooks[("level3", symbol)] = BookHooks(conn, book, on_book)
                hooks.install()
                if notify_depth is not None:
                    book.notify_depth = notify_depth
                out.append(book)
        return out

    def _room(self, conn: Connection) -> int:
        return LEVEL3_SYMBOLS_PER_CONNECTION - sum(
            1 for s in conn.subs.values() if s.channel == "level3"
        )

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

    async def unsubscribe(
        self, channel: str, symbols: Iterable[str] | None = None, **params: Any
    ) -> None:
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
    def connections(self) -> list[Connection]:
        return [c for c in [self._public, *self._level3, self._private] if c is not None]

    def latency(self) -> LatencyReport:
        """Percentiles of exchange → receive and receive → callback, per connection and for all
        of them together, over the newest samples since :meth:`reset_latency` (nanoseconds).

        Empty unless the client was made with ``record_latency=True`` (the default).
        """
        return report({c.name: c.latency for c in self.connections if c.latency is not None})

    def reset_latency(self) -> None:
        """Forget the latency samples so far (for example after a warm-up)."""
        for conn in self.connections:
            if conn.latency is not None:
                conn.latency.reset()

    async def ping(self) -> float:
        """Round-trip time of one application ping on the public connection, in seconds."""
        return await self._conn().ping()

    async def messages(
        self,
        channel: str | None = None,
        maxsize: int = 10_000,
        overflow: Literal["drop_oldest", "drop_newest", "error"] = "drop_oldest",
    ) -> AsyncIterator[Message]:
        """Typed non-book messages as they arrive (all channels, or one).

        :param maxsize: messages held for a slow consumer (0: no limit)
        :param overflow: what a full queue does: ``"drop_oldest"`` (default: keep the newest),
            ``"drop_newest"`` (keep the oldest), or ``"error"`` (the iterator raises
            :class:`QueueOverflow`). Every drop is reported: a ``messages_dropped`` event with
            the counts and a WARNING log line (both at most once a second).
        """
        if overflow not in ("drop_oldest", "drop_newest", "error"):
            raise ValueError("overflow must be 'drop_oldest', 'drop_newest' or 'error'")

        def dropped(queue: EventQueue[Message], count: int) -> None:
            detail = {
                "channel": channel,
                "dropped": count,
                "total": queue.dropped,
                "overflow": overflow,
            }
            self.report(ClientEvent("messages_dropped", "public", None, detail))
            log.warning(
                "message queue (%s, maxsize %d) full: %d message(s) dropped, %d in all",
                channel or "all channels",
                maxsize,
                count,
                queue.dropped,
            )

        queue: EventQueue[Message] = EventQueue(maxsize, overflow, dropped)
        entry = (channel, queue)
        self._message_queues.append(entry)
        try:
            while True:
                yield await queue.get()
        finally:
            self._message_queues.remove(entry)

    async def book_updates(self, book: L2Book | Level3Book) -> AsyncIterator[L2Book | Level3Book]:
        """The book each time it changed (a slow consumer sees only the latest state)."""
        hooks = next(
            (h for c in self.connections for h in c.hooks.values() if h.book is book), None
        )
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
        """Every :class:`ClientEvent` from now on (ends when the client is closed)."""
        queue: EventQueue[ClientEvent] = EventQueue(0, "drop_oldest", None)
        self._event_queues.append(queue)
        try:
            while True:
                try:
                    yield await queue.get()
                except ClientError:
                    if self._closed_by_user:
                        return
                    raise
        finally:
            if queue in self._event_queues:
                self._event_queues.remove(queue)

    # -- fan-out ---------------------------------------------------------------------------

    def report(self, event: ClientEvent) -> None:
        """Record ``event`` and hand it to :meth:`events` iterators and ``on_event``."""
        if len(self.events_seen) >= self.max_event_log:
            del self.events_seen[: self.max_event_log // 2]
        self.events_seen.append(event)
        log.debug("%s", event)
        for queue in self._event_queues:
            queue.put(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("on_event callback failed")

    def deliver(self, msg: Message) -> None:
        """Hand a typed message to the ``on_message`` callbacks and :meth:`messages` queues."""
        channel = _CHANNEL_OF.get(type(msg))
        for callback in self._callbacks.get(channel or "", ()):
            try:
                callback(msg)
            except Exception as exc:
                self.callback_failed("on_message", getattr(msg, "symbol", None), exc, "public")
        for wanted, queue in self._message_queues:
            if wanted is None or wanted == channel:
                queue.put(msg)


def _channel_map() -> dict[type, str]:
    from kbook import messages as m

    return {
        m.Ticker: "ticker",
        m.Trade: "trade",
        m.Candle: "ohlc",
        m.Spread: "spread",
        m.SystemStatus: "status",
        m.Instrument: "instrument",
        m.Ack: "ack",
        m.ErrorMessage: "error",
    }


_CHANNEL_OF = _channel_map()
