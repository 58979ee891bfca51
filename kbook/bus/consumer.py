"""The bus consumer: verified books from a relay, rebuilt and re-verified in this process.

:class:`BusClient` has the book API of :class:`kbook.client.Client` (``subscribe_book``,
``subscribe_level3``, ``subscribe``, ``messages``, ``book_updates``, ``events``, async context
manager), so a strategy moves from a direct Kraken connection to the bus by changing one
constructor. Each book starts from the newest snapshot its relay published (the bus replays from
there; the consumer also asks the relay for a fresh one), then applies the following messages in
sequence through the same Cython engine (:class:`kbook.Feed`), which verifies every Kraken checksum
again; the relay's own checksum (``Kbook-Checksum``) is compared too. Once a message on the live
subjects continues the replayed book, the book follows the live subjects alone and the replay
ends: the hop then skips the store's delivery path.

A sequence gap, a duplicate, a checksum mismatch, a relay ``state`` message, a silent relay
(no heartbeat or message within ``heartbeat_timeout``) or a lost tail (the relay's heartbeat
counts messages that do not arrive within ``heartbeat_timeout``) makes that book invalid: it is
not passed to ``on_book`` until the next snapshot verifies. Other books are untouched. Bad input
on the bus (garbage, a subject outside the scheme, a payload about another symbol) is reported as
a typed :class:`~kbook.bus.BusError` in a ``bus_error`` event and a log line; it never reaches a
book.

Level3 books (:meth:`BusClient.subscribe_level3`) follow the same rules with the engine's
:class:`kbook.Level3Book`: the relay's snapshot lists every order, each update is Kraken's level3
frame with its checksum.

What it is not: a Kraken client. Nothing here contacts the exchange.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, NamedTuple

import msgspec

from kbook._core import ALLOWED_DEPTHS, ChecksumMismatch, Feed, KBookError, L2Book, Level3Book
from kbook.bus.transport import BusMessage, NatsTransport, Subscription, Transport
from kbook.bus.wire import (
    HEADER_CHECKSUM,
    HEADER_DEPTH,
    HEADER_PRECISION,
    HEADER_PROTOCOL,
    HEADER_RELAY,
    HEADER_SEQ,
    HEADER_TIME,
    KINDS,
    data_subject,
    frame_symbols,
    heartbeat_subject,
    lone_update,
    parse_data_subject,
    request_subject,
    unpack_updates,
)
from kbook.client import ClientError, ClientEvent, EventQueue
from kbook.errors import (
    BusDecodeError,
    BusError,
    RelayLost,
    SequenceError,
    UnknownSubject,
)
from kbook.messages import Message, parse_message

__all__ = ["BusClient", "BusFrame"]

log = logging.getLogger("kbook.bus.consumer")

_HEARTBEAT = msgspec.json.Decoder(dict[str, Any])
# the engine's own decoding of non-book messages: numbers that are not integers are Decimal
_MESSAGE = msgspec.json.Decoder(float_hook=Decimal)


class BusFrame(NamedTuple):
    """One verified message a :class:`BusClient` took from the bus (its ``recorder`` gets each).

    ``payload`` is the Kraken message byte for byte as the relay published it; ``kind`` is
    ``snapshot`` or ``update`` for a book channel and ``message`` for any other; ``precision``
    (``(price, qty)`` decimals) and ``depth`` come with book snapshots, None otherwise.
    """

    channel: str
    symbol: str
    kind: str
    payload: bytes
    received_ns: int  # the relay's receive time (Kbook-Time), ns since epoch
    protocol: str
    precision: tuple[int, int] | None = None
    depth: int | None = None


@dataclass(eq=False)
class _BookState:
    """What the consumer knows about one relayed book."""

    channel: str  # book or level3
    symbol: str
    book: L2Book | Level3Book
    feed: Feed
    on_book: Callable[[Any], Any] | None
    notify_depth: int
    relay: str | None = None  # the relay whose snapshot started the book (None: waiting)
    seq: int = 0  # sequence of the last message applied
    received_ns: int = 0  # Kbook-Time of the last message applied
    waiters: list[asyncio.Event] | None = None
    # (sequence a heartbeat said the relay had published, when): set while we are behind it
    behind: tuple[int, float] | None = None
    # this book's data subjects and their kinds (the subject need not be parsed per message)
    kinds: dict[str, str] = field(default_factory=dict)
    # the replay from the newest stored snapshot, until a live message continues the book
    replay: Subscription | None = None


class BusClient:
    """Books and channel messages from a :class:`~kbook.bus.Relay`, over the bus.

    :param bus: ``nats://HOST:PORT`` or a :class:`~kbook.bus.transport.Transport`
    :param venue: the relay's venue (the ``<venue>`` token of the subjects)
    :param protocol: the relay's Kraken protocol (``v2`` symbols ``BTC/USD``, ``v1`` ``XBT/USD``)
    :param heartbeat_timeout: seconds without a heartbeat or message from a book's relay after
        which the book is invalid
    :param recorder: called with a :class:`BusFrame` for every book message that verified and
        every channel message delivered, in order (``kbook record --bus`` writes them); an
        exception in it is reported as a ``callback_error`` event
    :param on_event: called with every :class:`~kbook.client.ClientEvent` (``connection="bus"``):
        ``connected``, ``disconnected``, ``reconnected``, ``error`` (the bus connection's; detail:
        its text), ``snapshot`` (a book (re)started,
        verified), ``invalid`` (detail: the reason), ``checksum_mismatch``, ``sequence_gap``,
        ``duplicate``, ``relay_state``, ``relay_silent``, ``bus_error`` (detail: the
        :class:`~kbook.bus.BusError`), ``callback_error``

    A book starts from a replay of the bus's log at its newest snapshot, then follows the live
    subjects directly (no store between the relay and this process) from the first live message
    that continues it; ``live_switches`` counts the books that have made that move.

    ::

        async with BusClient("nats://127.0.0.1:4222") as bus:
            [book] = await bus.subscribe_book(["BTC/USD"], depth=10, on_book=print_top)
    """

    def __init__(
        self,
        bus: str | Transport,
        *,
        venue: str = "kraken",
        protocol: str = "v2",
        heartbeat_timeout: float = 3.0,
        on_event: Callable[[ClientEvent], Any] | None = None,
        recorder: Callable[[BusFrame], Any] | None = None,
    ) -> None:
        heartbeat_subject(venue)  # validates the venue
        if protocol not in ("v2", "v1"):
            raise ValueError("protocol must be 'v2' or 'v1'")
        self.protocol = protocol
        self.transport: Transport = NatsTransport(bus) if isinstance(bus, str) else bus
        self.venue = venue
        self.heartbeat_timeout = heartbeat_timeout
        self.on_event = on_event
        self.recorder = recorder
        self.events_seen: list[ClientEvent] = []
        self.max_event_log = 10_000
        self._books: dict[tuple[str, str], _BookState] = {}  # (channel, symbol) ->
        self.last_seen: dict[str, float] = {}  # relay id -> monotonic time of its last sign
        self.messages_received = 0
        self.foreign_messages = 0  # updates from a relay other than the one feeding the book
        self._channels: dict[tuple[str, str], int] = {}  # (channel, symbol) -> last seq
        self._callbacks: dict[str, list[Callable[[Message], Any]]] = {}
        self._message_queues: list[tuple[str | None, EventQueue[Message]]] = []
        self._event_queues: list[EventQueue[ClientEvent]] = []
        self._subs: list[Subscription] = []
        self._retiring: set[asyncio.Task[None]] = set()  # replays being unsubscribed
        self.live_switches = 0  # books that left their replay for the live subjects
        self._watchdog: asyncio.Task[None] | None = None
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> BusClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect to the bus and listen to relay heartbeats.

        :raises kbook.bus.BusUnavailable: the bus cannot be reached
        """
        if self._started:
            return
        self.transport.on_state = self._on_bus_state
        await self.transport.connect()
        try:
            # a consumer may start before any relay: the log exists from now on (a relay's
            # own retention replaces this default when it starts)
            await self.transport.ensure_log(self.venue, max_age=60.0, replace=False)
            self._subs.append(
                await self.transport.listen(heartbeat_subject(self.venue, "*"), self._on_heartbeat)
            )
        except BaseException:
            await self.transport.close()
            raise
        self._watchdog = asyncio.ensure_future(self._watch_relays())
        self._started = True

    async def close(self) -> None:
        """Stop every subscription and disconnect; the client cannot be reused."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        for state in self._books.values():
            if state.replay is not None:
                self._subs.append(state.replay)
                state.replay = None
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs.clear()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.transport.close()
        closed = ClientError("bus client closed")
        for _, queue in self._message_queues:
            queue.close(closed)
        for equeue in self._event_queues:
            equeue.close(closed)

    # -- subscribing ---------------------------------------------------------------------

    def _require_started(self) -> None:
        if not self._started:
            raise ClientError("bus client not started")

    async def subscribe_book(
        self,
        symbols: Iterable[str],
        depth: int = 10,
        *,
        on_book: Callable[[L2Book], Any] | None = None,
        notify_depth: int | None = None,
    ) -> list[L2Book]:
        """Follow the relayed L2 books of ``symbols``; return them (invalid until their first
        snapshot arrives; wait on ``book.valid`` or :meth:`book_updates`).

        A v2 book takes the relayed depth (the relay's ``--depth``) from its snapshot; a v1
        book's ``depth`` must be the relayed one (v1 names the channel ``book-<depth>``).

        :param on_book: called with the book after every verified update that changed one of
            its ``notify_depth`` best levels (all by default), only while the book is valid
        :raises kbook.client.SubscriptionError: a depth Kraken does not offer
        :raises kbook.bus.BusUnavailable: the bus did not answer
        """
        from kbook.client import SubscriptionError

        self._require_started()
        symbols = list(dict.fromkeys(symbols))
        if depth not in ALLOWED_DEPTHS:
            raise SubscriptionError("book", ",".join(symbols), "Subscription depth not supported")
        return await self._follow_books("book", symbols, depth, on_book, notify_depth)

    async def _follow_books(
        self,
        channel: str,
        symbols: list[str],
        depth: int,
        on_book: Callable[[Any], Any] | None,
        notify_depth: int | None,
    ) -> list[Any]:
        out = []
        for symbol in symbols:
            state = self._books.get((channel, symbol))
            if state is None:
                feed = Feed()
                book: L2Book | Level3Book
                if channel == "level3":
                    book = feed.add_level3_book(symbol, depth)
                else:
                    book = feed.add_book(symbol, depth, protocol=self.protocol)
                state = _BookState(
                    channel,
                    symbol,
                    book,
                    feed,
                    on_book,
                    notify_depth if notify_depth is not None else 1 << 20,
                )
                self._books[(channel, symbol)] = state
                handler = self._book_handler(state)
                base = data_subject(self.venue, channel, symbol, "update")[: -len("update")]
                state.kinds = {base + kind: kind for kind in KINDS}
                # the live subjects first (a plain subscription: what the relay publishes from
                # now on, with no store or consumer in between), then the replay from the
                # newest stored snapshot, which starts the book; the first live message that
                # continues the book's sequence ends the replay (see _live_handler)
                self._subs.append(
                    await self.transport.listen(base + "*", self._live_handler(state, handler))
                )
                state.replay = await self.transport.replay_from_snapshot(
                    self.venue, base + "*", base + "snapshot", self._replay_handler(state, handler)
                )
            out.append(state.book)
        self.request_snapshots(symbols, channel)
        return out

    def request_snapshots(self, symbols: Iterable[str], channel: str = "book") -> None:
        """Ask the relay of ``channel`` (``book`` or ``level3``) for fresh snapshots of
        ``symbols`` (a joining consumer does, so that it need not wait for the periodic one;
        the relay answers at most every 0.25 s)."""
        payload = msgspec.json.encode({"symbols": list(symbols)})
        self.transport.publish(request_subject(self.venue, channel), payload, None, stored=False)

    async def subscribe_level3(
        self,
        symbols: Iterable[str],
        depth: int = 10,
        *,
        on_book: Callable[[Level3Book], Any] | None = None,
        notify_depth: int | None = None,
    ) -> list[Level3Book]:
        """Follow the relayed level3 books of ``symbols``; return them (invalid until their
        first snapshot arrives). The book takes the relayed depth from its snapshot.

        :param on_book: as for :meth:`subscribe_book`
        :raises kbook.client.SubscriptionError: a depth Kraken does not offer for level3
        :raises kbook.bus.BusUnavailable: the bus did not answer
        """
        from kbook.client import SubscriptionError

        self._require_started()
        symbols = list(dict.fromkeys(symbols))
        if depth not in (10, 100, 1000):
            raise SubscriptionError("level3", ",".join(symbols), "Subscription depth not supported")
        return await self._follow_books("level3", symbols, depth, on_book, notify_depth)

    async def subscribe(
        self,
        channel: str,
        symbols: Iterable[str],
        *,
        on_message: Callable[[Message], Any] | None = None,
    ) -> None:
        """Follow a relayed non-book channel (``trade``, ``ticker``, ...) from now on."""
        self._require_started()
        if channel in ("book", "level3"):
            raise ClientError(f"use subscribe_book or subscribe_level3 for {channel}")
        if on_message is not None:
            self._callbacks.setdefault(channel, []).append(on_message)
        for symbol in dict.fromkeys(symbols):
            if (channel, symbol) in self._channels:
                continue
            self._channels[(channel, symbol)] = 0
            base = data_subject(self.venue, channel, symbol, "update")
            # no snapshot subject: a non-book channel is followed from its next message
            self._subs.append(
                await self.transport.replay_from_snapshot(
                    self.venue,
                    base[:-6] + "*",
                    base[:-6] + "snapshot",
                    self._channel_handler(channel, symbol),
                )
            )

    # -- reading -------------------------------------------------------------------------

    def book(self, symbol: str, depth: int = 10) -> L2Book | None:
        """The L2 book of ``symbol`` (None when not subscribed; ``depth`` is accepted for
        :meth:`kbook.Client.book`'s signature: a relayed symbol has one depth)."""
        state = self._books.get(("book", symbol))
        return None if state is None else state.book  # type: ignore[return-value]

    def level3_book(self, symbol: str) -> Level3Book | None:
        """The level3 book of ``symbol`` (None when not subscribed)."""
        state = self._books.get(("level3", symbol))
        return None if state is None else state.book  # type: ignore[return-value]

    def position(self, symbol: str, channel: str = "book") -> tuple[str | None, int]:
        """``(relay id, sequence)`` of the book's last applied message (relay None: invalid,
        waiting for a snapshot)."""
        state = self._books[(channel, symbol)]
        return state.relay, state.seq

    def last_received_ns(self, symbol: str, channel: str = "book") -> int:
        """The relay's receive time (ns since the epoch) of the book's last applied message."""
        return self._books[(channel, symbol)].received_ns

    async def messages(
        self,
        channel: str | None = None,
        maxsize: int = 10_000,
        overflow: Literal["drop_oldest", "drop_newest", "error"] = "drop_oldest",
    ) -> AsyncIterator[Message]:
        """Typed non-book messages as they arrive (all channels, or one).

        ``maxsize`` and ``overflow`` work as in :meth:`kbook.Client.messages`: a full queue
        drops (and reports every drop: a ``messages_dropped`` event and a WARNING) or raises
        :class:`~kbook.errors.QueueOverflow`.
        """
        if overflow not in ("drop_oldest", "drop_newest", "error"):
            raise ValueError("overflow must be 'drop_oldest', 'drop_newest' or 'error'")

        def dropped(queue: EventQueue[Message], count: int) -> None:
            self._emit(
                "messages_dropped",
                None,
                {
                    "channel": channel,
                    "dropped": count,
                    "total": queue.dropped,
                    "overflow": overflow,
                },
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
        """The book each time it changed while valid (a slow consumer sees the latest state)."""
        state = next((s for s in self._books.values() if s.book is book), None)
        if state is None:
            raise ClientError(f"{book.symbol}: not a book of this client")
        changed = asyncio.Event()
        if state.waiters is None:
            state.waiters = []
        state.waiters.append(changed)
        try:
            while True:
                await changed.wait()
                changed.clear()
                yield book
        finally:
            state.waiters.remove(changed)

    async def events(self) -> AsyncIterator[ClientEvent]:
        """Every :class:`~kbook.client.ClientEvent` from now on."""
        queue: EventQueue[ClientEvent] = EventQueue(0, "drop_oldest", None)
        self._event_queues.append(queue)
        try:
            while True:
                try:
                    yield await queue.get()
                except ClientError:
                    return  # closed
        finally:
            self._event_queues.remove(queue)

    # -- events --------------------------------------------------------------------------

    def _emit(self, kind: str, symbol: str | None = None, detail: Any = None) -> None:
        event = ClientEvent(kind, "bus", symbol, detail)
        if len(self.events_seen) >= self.max_event_log:
            del self.events_seen[: self.max_event_log // 2]
        self.events_seen.append(event)
        level = (
            logging.WARNING
            if kind in ("bus_error", "invalid", "relay_silent", "messages_dropped")
            else logging.INFO
        )
        log.log(level, "bus %s %s %s", kind, symbol or "", detail if detail is not None else "")
        for queue in self._event_queues:
            queue.put(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("on_event callback failed")

    def _error(self, error: BusError, symbol: str | None = None) -> None:
        self._emit("bus_error", symbol, error)

    def _on_bus_state(self, kind: str, detail: str) -> None:
        self._emit(kind, None, detail)

    def _invalidate(self, state: _BookState, reason: str, detail: Any = None) -> None:
        was_valid = state.book.valid
        state.book.invalidate()
        state.relay = None  # only a snapshot restarts the book
        state.behind = None
        if was_valid:
            self._emit("invalid", state.symbol, reason if detail is None else f"{reason}: {detail}")
            # the relay's answer restarts the book sooner than its periodic snapshot
            self.request_snapshots([state.symbol], state.channel)

    # -- relay liveness ------------------------------------------------------------------

    def _on_heartbeat(self, msg: BusMessage) -> None:
        try:
            beat = _HEARTBEAT.decode(msg.payload)
            relay = beat["relay"]
            if not isinstance(relay, str):
                raise TypeError("relay is not a string")
        except (msgspec.DecodeError, KeyError, TypeError) as exc:
            self._error(BusDecodeError(msg.subject, f"bad heartbeat: {exc}"))
            return
        now = time.monotonic()
        self.last_seen[relay] = now
        seqs = beat.get("seqs")
        channel = beat.get("channel")
        if not isinstance(seqs, dict) or not isinstance(channel, str):
            return
        for symbol, seq in seqs.items():
            state = self._books.get((channel, symbol))
            if state is None or state.relay != relay or not isinstance(seq, int):
                continue
            # a heartbeat may overtake the messages it counts; only a shortfall that outlives
            # heartbeat_timeout is a lost tail (checked by _watch_relays)
            if state.seq < seq and state.behind is None:
                state.behind = (seq, now)

    async def _watch_relays(self) -> None:
        period = max(0.05, self.heartbeat_timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for state in self._books.values():
                if state.relay is None or not state.book.valid:
                    continue
                silent = now - self.last_seen.get(state.relay, 0.0)
                if silent > self.heartbeat_timeout:
                    error = RelayLost(state.relay, silent)
                    self._emit("relay_silent", state.symbol, error)
                    self._invalidate(state, "relay_silent", error)
                    continue
                if state.behind is not None:
                    seq, since = state.behind
                    if state.seq >= seq:
                        state.behind = None
                    elif now - since > self.heartbeat_timeout:
                        # the relay published messages we never received: a lost tail
                        gap = SequenceError(state.symbol, state.seq + 1, seq)
                        self._emit("sequence_gap", state.symbol, gap)
                        self._invalidate(state, "gap", gap)

    # -- book messages -------------------------------------------------------------------

    def _book_handler(self, state: _BookState) -> Callable[[BusMessage], None]:
        def handle(msg: BusMessage) -> None:
            try:
                self._on_book_message(state, msg)
            except Exception as exc:  # a bug must cost this book its validity, never the feed
                log.exception("bus: book message handler failed")
                self._invalidate(state, "internal_error", repr(exc))

        return handle

    @staticmethod
    def _replay_handler(
        state: _BookState, handle: Callable[[BusMessage], None]
    ) -> Callable[[BusMessage], None]:
        def replayed(msg: BusMessage) -> None:
            if state.replay is not None:  # else: retired, and the live path has this message
                handle(msg)

        return replayed

    def _live_handler(
        self, state: _BookState, handle: Callable[[BusMessage], None]
    ) -> Callable[[BusMessage], None]:
        """While the replay runs, live messages are left to it (it delivers each of them too,
        later), except the first one that continues the book exactly: same relay, next
        sequence number. From that one on, the book follows the live subjects alone and the
        replay is unsubscribed; a gap or a duplicate there is caught as on any path."""

        def live(msg: BusMessage) -> None:
            if state.replay is not None:
                if not self._continues(state, msg):
                    return
                self._retire_replay(state)
            handle(msg)

        return live

    @staticmethod
    def _continues(state: _BookState, msg: BusMessage) -> bool:
        if state.relay is None or msg.headers.get(HEADER_RELAY) != state.relay:
            return False
        try:
            return int(msg.headers.get(HEADER_SEQ, "")) == state.seq + 1
        except ValueError:
            return False  # the replay's copy reports it

    def _retire_replay(self, state: _BookState) -> None:
        replay, state.replay = state.replay, None
        if replay is None:
            return
        self.live_switches += 1
        task = asyncio.ensure_future(replay.unsubscribe())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _headers(self, msg: BusMessage, symbol: str) -> tuple[int, str, int] | None:
        headers = msg.headers
        try:
            seq = int(headers[HEADER_SEQ])
            relay = headers[HEADER_RELAY]
            # a batch lists one time per frame: this is its first frame's
            received = int(headers.get(HEADER_TIME, "0").partition(" ")[0])
        except (KeyError, ValueError) as exc:
            self._error(BusDecodeError(msg.subject, f"missing or bad header {exc}", symbol), symbol)
            return None
        return seq, relay, received

    def _on_book_message(self, state: _BookState, msg: BusMessage) -> None:
        self.messages_received += 1
        symbol = state.symbol
        kind = state.kinds.get(msg.subject)
        if kind is None:
            self._error(UnknownSubject(msg.subject), symbol)
            return
        got = self._headers(msg, symbol)
        if got is None:
            return
        seq, relay, received = got
        if kind == "state":
            try:
                reason = str(msgspec.json.decode(msg.payload, type=dict[str, Any])["reason"])
            except (msgspec.DecodeError, KeyError) as exc:
                self._error(
                    BusDecodeError(msg.subject, f"bad state message: {exc}", symbol), symbol
                )
                reason = "relay_state"
            self.last_seen[relay] = time.monotonic()
            if state.relay is not None and relay != state.relay:
                # about another relay's stream (one that lost the lease): not this book's
                self._emit("relay_state", symbol, f"{reason} (relay {relay}, not this book's)")
                return
            self._emit("relay_state", symbol, reason)
            self._invalidate(state, "relay_state", reason)
            return
        protocol = msg.headers.get(HEADER_PROTOCOL, "v2")
        if kind == "snapshot":
            if self._attributable(state, msg.subject, kind, msg.payload, protocol):
                self.last_seen[relay] = time.monotonic()
                # set before applying: on_book may read it (last_received_ns)
                state.received_ns = received
                self._apply_snapshot(state, msg, seq, relay, protocol)
            return
        try:
            frames = unpack_updates(msg.headers, msg.payload)
        except ValueError as exc:
            # the frames are not applied: if the relay sent them, the next message is a gap
            self._error(
                BusDecodeError(msg.subject, f"bad batch: {exc}", symbol, state.channel), symbol
            )
            return
        for offset, (received, checksum, frame) in enumerate(frames):
            if not lone_update(frame, protocol) and not self._attributable(
                state, msg.subject, kind, frame, protocol
            ):
                return
            self.last_seen[relay] = time.monotonic()
            state.received_ns = received
            if not self._apply_update(
                state, msg.subject, frame, seq + offset, relay, checksum, protocol
            ):
                return

    def _attributable(
        self, state: _BookState, subject: str, kind: str, frame: bytes, protocol: str
    ) -> bool:
        """Check that a frame is a Kraken book message about this book's symbol, of the
        subject's kind; report it as a bus error if not."""
        symbol = state.symbol
        try:
            _, is_snapshot, parts = frame_symbols(frame, protocol)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            self._error(
                BusDecodeError(subject, f"not a Kraken book message: {exc}", symbol, state.channel),
                symbol,
            )
            return False
        if len(parts) != 1 or parts[0][0] != symbol:
            others = ",".join(p[0] for p in parts)
            self._error(
                BusDecodeError(
                    subject,
                    f"payload is about {others!r}, not the subject's symbol",
                    symbol,
                    state.channel,
                ),
                symbol,
            )
            return False
        if is_snapshot != (kind == "snapshot"):
            self._error(
                BusDecodeError(
                    subject, "payload kind differs from the subject's", symbol, state.channel
                ),
                symbol,
            )
            return False
        return True

    def _apply_snapshot(
        self, state: _BookState, msg: BusMessage, seq: int, relay: str, protocol: str
    ) -> None:
        symbol = state.symbol
        book = state.book
        try:
            price_p, qty_p = (int(x) for x in msg.headers[HEADER_PRECISION].split(","))
            depth = int(msg.headers[HEADER_DEPTH])
        except (KeyError, ValueError) as exc:
            self._error(
                BusDecodeError(
                    msg.subject, f"snapshot without precision/depth: {exc}", symbol, state.channel
                ),
                symbol,
            )
            return
        wanted = "v2" if state.channel == "level3" else self.protocol
        if protocol != wanted or (protocol == "v1" and depth != book.depth):
            self._error(
                BusDecodeError(
                    msg.subject,
                    f"relayed {protocol} depth {depth}, subscribed {wanted} depth {book.depth}",
                    symbol,
                    state.channel,
                ),
                symbol,
            )
            self._invalidate(state, "shape")
            return
        try:
            if protocol == "v2":
                state.feed.set_precision(symbol, price_p, qty_p)
                if depth != book.depth and state.channel == "level3":
                    state.feed.set_level3_depth(symbol, depth)
                elif depth != book.depth:
                    state.feed.set_depth(symbol, depth)
            result = state.feed.process(msg.payload)
        except (KBookError, ValueError) as exc:
            self._emit(
                "checksum_mismatch" if isinstance(exc, ChecksumMismatch) else "bus_error",
                symbol,
                exc,
            )
            self._invalidate(state, "snapshot_refused", repr(exc))
            return
        if result is not book or not self._verified(
            state, msg.subject, msg.headers.get(HEADER_CHECKSUM)
        ):
            return
        was_valid = state.relay is not None
        state.relay = relay
        state.seq = seq
        if not was_valid:
            self._emit("snapshot", symbol, relay)
        self._record(
            BusFrame(
                state.channel,
                symbol,
                "snapshot",
                msg.payload,
                state.received_ns,
                protocol,
                (price_p, qty_p),
                depth,
            )
        )
        self._deliver_book(state)

    def _apply_update(
        self,
        state: _BookState,
        subject: str,
        frame: bytes,
        seq: int,
        relay: str,
        checksum: str | None,
        protocol: str,
    ) -> bool:
        """Apply one relayed update; False when the rest of its batch cannot follow."""
        symbol = state.symbol
        if state.relay is None:
            return False  # waiting for a snapshot
        if relay != state.relay:
            # another relay's stream (a relay that lost its lease, or one whose snapshot we
            # have not seen yet): it cannot apply to this book; its next snapshot switches over
            self.foreign_messages += 1
            return False
        if seq != state.seq + 1:
            error = SequenceError(symbol, state.seq + 1, seq)
            self._emit("duplicate" if error.kind == "duplicate" else "sequence_gap", symbol, error)
            self._invalidate(state, error.kind, error)
            return False
        try:
            result = state.feed.process(frame)
        except KBookError as exc:
            state.seq = seq
            self._emit(
                "checksum_mismatch" if isinstance(exc, ChecksumMismatch) else "bus_error",
                symbol,
                exc,
            )
            self._invalidate(state, "refused", repr(exc))
            return False
        if result is not state.book:
            # not about this book after all (the quick test cannot know the symbol): nothing
            # of ours was applied, and the sequence number is still the relay's to use. The
            # full check names what it is about.
            if self._attributable(state, subject, "update", frame, protocol):
                self._error(BusDecodeError(subject, "payload changed no book", symbol), symbol)
            return False
        state.seq = seq
        if not self._verified(state, subject, checksum):
            return False
        if self.recorder is not None:
            self._record(
                BusFrame(state.channel, symbol, "update", frame, state.received_ns, protocol)
            )
        self._deliver_book(state)
        return True

    def _record(self, frame: BusFrame) -> None:
        if self.recorder is None:
            return
        try:
            self.recorder(frame)
        except Exception as exc:
            self._emit("callback_error", frame.symbol, repr(exc))

    def _verified(self, state: _BookState, subject: str, text: str | None) -> bool:
        """Compare the relay's checksum (header text) with ours (the engine checked Kraken's)."""
        book = state.book
        if not book.valid:
            self._invalidate(state, "invalid_after_apply")
            return False
        if text is None:
            return True
        try:
            expected = int(text)
        except ValueError:
            self._error(
                BusDecodeError(
                    subject, f"bad checksum header {text!r}", state.symbol, state.channel
                ),
                state.symbol,
            )
            self._invalidate(state, "bad_header")
            return False
        computed = book.checksum()
        if computed != expected:
            exc = ChecksumMismatch(state.symbol, expected, computed, book.checksum_input())
            self._emit("checksum_mismatch", state.symbol, exc)
            self._invalidate(state, "checksum_mismatch", exc)
            return False
        return True

    def _deliver_book(self, state: _BookState) -> None:
        book = state.book
        if state.on_book is not None and book.top_changed < state.notify_depth:
            try:
                state.on_book(book)
            except Exception as exc:
                self._emit("callback_error", state.symbol, repr(exc))
        if state.waiters:
            for event in state.waiters:
                event.set()

    # -- channel messages ----------------------------------------------------------------

    def _channel_handler(self, channel: str, symbol: str) -> Callable[[BusMessage], None]:
        def handle(msg: BusMessage) -> None:
            try:
                self._on_channel_message(channel, symbol, msg)
            except Exception as exc:
                log.exception("bus: channel message handler failed")
                self._error(BusDecodeError(msg.subject, repr(exc), symbol, channel), symbol)

        return handle

    def _on_channel_message(self, channel: str, symbol: str, msg: BusMessage) -> None:
        self.messages_received += 1
        parsed = parse_data_subject(msg.subject)
        if parsed is None or parsed[1] != channel or parsed[2] != symbol:
            self._error(UnknownSubject(msg.subject), symbol)
            return
        got = self._headers(msg, symbol)
        if got is None:
            return
        seq, relay, received = got
        self.last_seen[relay] = time.monotonic()
        last = self._channels[(channel, symbol)]
        if last and seq != last + 1:
            self._emit("sequence_gap", symbol, SequenceError(symbol, last + 1, seq))
        self._channels[(channel, symbol)] = seq
        if parsed[3] != "update":
            return
        try:
            messages = parse_message(_MESSAGE.decode(msg.payload))
        except (msgspec.DecodeError, ValueError) as exc:
            self._error(
                BusDecodeError(msg.subject, f"not a Kraken message: {exc}", symbol, channel), symbol
            )
            return
        ours = [m for m in messages if getattr(m, "symbol", None) == symbol]
        for _ in range(len(messages) - len(ours)):
            self._error(
                BusDecodeError(msg.subject, "message about another symbol", symbol, channel), symbol
            )
        if ours and len(ours) == len(messages):  # a payload only partly ours is not recorded
            self._record(BusFrame(channel, symbol, "message", msg.payload, received, self.protocol))
        for message in ours:
            self._deliver(channel, message)

    def _deliver(self, channel: str, msg: Message) -> None:
        for callback in self._callbacks.get(channel, ()):
            try:
                callback(msg)
            except Exception as exc:
                self._emit("callback_error", getattr(msg, "symbol", None), repr(exc))
        for wanted, queue in self._message_queues:
            if wanted is None or wanted == channel:
                queue.put(msg)
