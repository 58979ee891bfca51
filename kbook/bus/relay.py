"""The relay: one process holds the Kraken connections, verifies the books and publishes only
verified data to the bus.

A :class:`Relay` runs a :class:`kbook.client.Client` (reconnects, resyncs, budget and pacing
are the client's) and publishes, per symbol and in order, every message that the client's engine
verified: Kraken's own frame, byte for byte, with a sequence number, the receive time and the
book's checksum (see :mod:`kbook.bus.wire`). A frame whose checksum fails is never published; a
``state`` message says the book is invalid instead, and the next snapshot restarts it. Every
(re)start of a book begins with a snapshot, and a snapshot synthesized from the verified book is
published every ``snapshot_every`` seconds so that a late consumer replays little.

Two relays with the same ``name`` share a lease on the bus: one publishes, the other holds its
own Kraken connections and books, ready; when the lease is not renewed within its TTL, the
standby takes over and starts with snapshots of all its verified books.

``book`` and ``level3`` (v2, token required, as for a direct client) are relayed as books;
every other channel as messages.

Book updates of one symbol that verify within one turn of the event loop (a burst that arrived
in one socket read) go out as one batched bus message (:func:`kbook.bus.wire.pack_updates`) at
the end of that turn; a lone update goes out alone, at once. Each update keeps its own sequence
number, receive time and checksum.

What it is not: a strategy host or a second book engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from kbook._core import L2Book, Level3Book
from kbook.bus.transport import BusMessage, NatsTransport, Subscription, Transport
from kbook.bus.wire import (
    HEADER_CHECKSUM,
    HEADER_DEPTH,
    HEADER_PRECISION,
    HEADER_PROTOCOL,
    HEADER_RELAY,
    HEADER_SEQ,
    HEADER_TIME,
    MAX_BATCH_BYTES,
    MAX_BATCH_FRAMES,
    data_subject,
    frame_symbols,
    heartbeat_subject,
    level3_snapshot_frame,
    lone_update,
    pack_updates,
    request_subject,
    snapshot_frame,
    state_payload,
)
from kbook.client import Client, ClientEvent, Protocol
from kbook.errors import LeaseLost
from kbook.messages import Message

__all__ = ["Relay"]

log = logging.getLogger("kbook.bus.relay")

REQUEST_INTERVAL = 0.25  # seconds: at most one requested snapshot per symbol per interval
# client events after which a book's published stream must restart from a snapshot
_BREAKS = (
    "checksum_mismatch",
    "integrity_error",
    "decode_error",
    "resync_started",
    "disconnected",
    "stale_subscription",
    "idle_timeout",
    "books_stale",
    "gave_up",
)


class Relay:
    """Publish one channel of a set of symbols from Kraken (or the simulator) to the bus.

    :param bus: ``nats://HOST:PORT`` or a :class:`~kbook.bus.transport.Transport`
    :param symbols: the symbols (v2 ``BTC/USD`` or v1 ``XBT/USD`` names)
    :param channel: ``book``, ``level3`` or any other public channel (``trade``, ``ticker``, ...)
    :param url: the exchange endpoint (default: Kraken's for ``protocol``); with ``level3``
        also the level3 endpoint unless ``client_options`` names one (``level3_url``), and
        ``client_options`` must carry the ``token``
    :param depth: book depth subscribed and relayed
    :param name: relays with the same name, venue and channel are one logical relay (one
        publishes)
    :param venue: the venue token of the subjects (``kraken``; ``sim`` for a simulator)
    :param snapshot_every: seconds between synthesized snapshots of each valid book (0: never)
    :param heartbeat_every: seconds between heartbeats
    :param lease_ttl: seconds a lease lives unrenewed; a standby takes over after about this long
    :param params: Kraken parameters of a non-book subscription (``event_trigger="bbo"``, ...)
    :param client_options: more :class:`~kbook.client.Client` keywords (policy, precisions, ...)
    :param on_event: called with every :class:`~kbook.client.ClientEvent` of the client and of
        the relay (``connection="relay"``: ``active``, ``standby``, ``lease_lost``, ``bus``)
    """

    def __init__(
        self,
        bus: str | Transport,
        symbols: Iterable[str],
        *,
        channel: str = "book",
        url: str | None = None,
        protocol: Protocol = "v2",
        depth: int = 10,
        name: str = "default",
        venue: str = "kraken",
        snapshot_every: float = 5.0,
        heartbeat_every: float = 0.5,
        lease_ttl: float = 3.0,
        params: dict[str, Any] | None = None,
        client_options: dict[str, Any] | None = None,
        on_event: Callable[[ClientEvent], Any] | None = None,
    ) -> None:
        if channel == "level3" and protocol != "v2":
            raise ValueError("level3 is a v2 channel")
        self.symbols = list(dict.fromkeys(symbols))
        if not self.symbols:
            raise ValueError("at least one symbol")
        heartbeat_subject(venue, name)  # validates venue and name
        for symbol in self.symbols:
            data_subject(venue, channel, symbol, "update")
        self.transport: Transport = (
            NatsTransport(bus, lease_ttl=lease_ttl) if isinstance(bus, str) else bus
        )
        self.channel = channel
        self.url = url
        self.protocol: Protocol = protocol
        self.depth = depth
        self.name = name
        self.venue = venue
        self.snapshot_every = snapshot_every
        self.heartbeat_every = heartbeat_every
        self.lease_ttl = lease_ttl
        self.params = dict(params or {})
        self.client_options = dict(client_options or {})
        self.on_event = on_event
        #: called with ``(symbol, kind, seq, payload)`` after each data message is queued
        self.on_publish: Callable[[str, str, int, bytes], Any] | None = None
        self.relay_id = uuid.uuid4().hex[:12]
        self.active = False
        self.client: Client | None = None
        self.seq: dict[str, int] = dict.fromkeys(self.symbols, 0)
        self.published: dict[str, int] = {"snapshot": 0, "update": 0, "state": 0}
        self._wanted = frozenset(self.symbols)
        self._subjects = {
            s: {k: data_subject(venue, channel, s, k) for k in ("snapshot", "update", "state")}
            for s in self.symbols
        }
        self._heartbeat_subject = heartbeat_subject(venue, name)
        # a book relay and a level3 relay of one name are two logical relays, not rivals
        self._lease_key = f"{venue}_{channel}_{name}"
        self._book_channel = channel in ("book", "level3")
        self._halted: set[str] = set(self.symbols)  # next publication must be a snapshot
        self._stale: set[str] = set()  # no synthesized snapshot until the exchange's next one
        self._pending: bytes | None = None
        self._pending_time = 0
        self._pending_done: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._requests: Subscription | None = None
        self._requested: dict[str, float] = {}  # symbol -> when a request was last answered
        self._deferred: set[str] = set()  # requested inside the interval, answered at its end
        self._resnapshot = asyncio.Event()
        self._batches: dict[str, _Batch] = {}  # symbol -> updates not yet handed to the bus
        self._flush_handle: asyncio.Handle | None = None
        #: bus messages that carried book updates (fewer than ``published["update"]`` when
        #: bursts were batched)
        self.update_messages = 0

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Relay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect to the bus, take or wait for the lease, connect to the exchange, subscribe.

        :raises kbook.bus.BusUnavailable: the bus cannot be reached
        :raises kbook.client.SubscriptionError: the exchange refused a symbol
        """
        self.transport.on_state = self._on_bus_state
        await self.transport.connect()
        try:
            await self.transport.ensure_log(self.venue, max_age=max(60.0, 10 * self.snapshot_every))
            await self._lease_step()
            self._tasks.append(asyncio.ensure_future(self._lease_loop()))
            options: dict[str, Any] = {"protocol": self.protocol, **self.client_options}
            if self.channel == "level3" and self.url is not None:
                options.setdefault("level3_url", self.url)
            self.client = Client(
                self.url, on_event=self._on_client_event, recorder=self._record, **options
            )
            await self.client.start()
            if self.channel == "book":
                await self.client.subscribe_book(self.symbols, self.depth, on_book=self._on_book)
            elif self.channel == "level3":
                await self.client.subscribe_level3(self.symbols, self.depth, on_book=self._on_book)
            else:
                await self.client.subscribe(
                    self.channel, self.symbols, on_message=self._on_message, **self.params
                )
            self._tasks.append(asyncio.ensure_future(self._heartbeat_loop()))
            self._tasks.append(asyncio.ensure_future(self._snapshot_loop()))
            if self._book_channel:
                self._requests = await self.transport.listen(
                    request_subject(self.venue, self.channel), self._on_request
                )
        except BaseException:
            await self.close()  # nothing half-started is left behind
            raise

    async def close(self) -> None:
        """Say the books are no longer relayed, give the lease up, close everything."""
        self._flush_batches()
        if self.active and self._book_channel:
            for symbol in self.symbols:
                self._publish_state(symbol, "relay_stopped")
                self._halted.add(symbol)  # said once: closing the client says nothing more
        if self._requests is not None:
            await self._requests.unsubscribe()
            self._requests = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.client is not None:
            await self.client.close()
        with contextlib.suppress(Exception):
            await self.transport.release_lease(self._lease_key, self.relay_id)
        self.active = False
        await self.transport.close()

    def book(self, symbol: str) -> L2Book | Level3Book | None:
        """The relay's own verified book of ``symbol`` (level3 for a level3 relay; None before
        its first snapshot)."""
        if self.client is None:
            return None
        if self.channel == "level3":
            return self.client.level3_book(symbol)
        return self.client.book(symbol, self.depth)

    # -- events --------------------------------------------------------------------------

    def _event(self, kind: str, symbol: str | None = None, detail: Any = None) -> None:
        event = ClientEvent(kind, "relay", symbol, detail)
        log.info(
            "relay %s (%s): %s %s %s",
            self.name,
            self.relay_id,
            kind,
            symbol or "",
            detail if detail is not None else "",
        )
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("on_event callback failed")

    def _on_bus_state(self, kind: str, detail: str) -> None:
        self._event("bus", None, f"{kind} {detail}".strip())
        if kind == "reconnected":
            # messages queued during the outage may be lost: every book restarts from a
            # snapshot (consumers would see the gap anyway)
            self._halted.update(self.symbols)
            self._resnapshot.set()

    def _on_client_event(self, event: ClientEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("on_event callback failed")
        if not self._book_channel or event.kind not in _BREAKS:
            return
        if event.kind in ("checksum_mismatch", "integrity_error", "decode_error"):
            # other symbols of the same frame were applied and verified: they still go out
            self._settle(skip=event.symbol)
        if event.kind in ("disconnected", "gave_up"):
            broken = list(self.symbols)
        elif event.kind == "books_stale":
            # clients that invalidate a lost connection's books say which (detail["symbols"])
            detail = event.detail if isinstance(event.detail, dict) else {}
            named = detail.get("symbols")
            broken = (
                [s for s in self.symbols if s in named]
                if isinstance(named, list)
                else list(self.symbols)
            )
        elif event.symbol is not None:
            broken = [event.symbol] if event.symbol in self._wanted else []
        else:
            broken = [s for s in self.symbols if not self._valid(s)]
        for symbol in broken:
            # after a drop the book still looks valid until the reconnect clears it: only the
            # exchange's next snapshot may restart it
            self._stale.add(symbol)
            if symbol not in self._halted:
                self._halted.add(symbol)
                self._publish_state(symbol, event.kind)

    # -- frames --------------------------------------------------------------------------

    def _record(self, frame: bytes) -> None:
        # called by the client's listener before the frame is applied; _on_book or
        # _on_message (same call stack) then says it was verified
        self._pending = frame
        self._pending_time = time.time_ns()
        if self._pending_done:
            self._pending_done.clear()

    def _valid(self, symbol: str) -> bool:
        book = self.book(symbol)
        return book is not None and book.valid

    def _on_book(self, book: L2Book | Level3Book) -> None:
        self._settle(book=book)

    def _settle(self, skip: str | None = None, book: L2Book | Level3Book | None = None) -> None:
        """Publish the pending frame's parts whose books are valid after applying it."""
        frame = self._pending
        self._pending = None
        if frame is None or not (self.active or self._stale):
            return
        if (
            book is not None
            and self.active
            and book.valid
            and lone_update(frame, self.protocol)
            and (symbol := book.symbol) in self._wanted
            and symbol not in self._halted
            and symbol not in self._stale
        ):
            # the common case, without decoding the frame again: one symbol's update
            self._queue_update(symbol, frame, book, self._pending_time)
            return
        try:
            _, snapshot, parts = frame_symbols(frame, self.protocol)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("relay %s: verified frame not attributable: %r", self.name, exc)
            return
        if not self.active:
            # a standby publishes nothing, but must know which books the exchange restarted,
            # so that it can take over with snapshots of them
            if snapshot:
                self._stale.difference_update(symbol for symbol, _ in parts if self._valid(symbol))
            return
        for symbol, part in parts:
            if symbol == skip or symbol not in self._wanted:
                continue
            book = self.book(symbol)
            if book is None or not book.valid:
                continue
            if snapshot:
                self._stale.discard(symbol)
                self._publish_book(symbol, "snapshot", part, book, self._pending_time)
            elif symbol in self._stale:
                continue
            elif symbol in self._halted:
                self._publish_snapshot(symbol, book)
            else:
                self._publish_book(symbol, "update", part, book, self._pending_time)

    def _on_message(self, msg: Message) -> None:
        symbol = getattr(msg, "symbol", None)
        frame = self._pending
        if (
            frame is None
            or not self.active
            or symbol not in self._wanted
            or symbol in self._pending_done
        ):
            return
        assert isinstance(symbol, str)
        self._pending_done.add(symbol)
        try:
            _, _, parts = frame_symbols(frame, self.protocol)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("relay %s: message not attributable: %r", self.name, exc)
            return
        for part_symbol, part in parts:
            if part_symbol == symbol:
                self._publish(symbol, "update", part, {HEADER_TIME: str(self._pending_time)})

    # -- publishing ----------------------------------------------------------------------

    def _publish(self, symbol: str, kind: str, payload: bytes, headers: dict[str, str]) -> None:
        if symbol in self._batches:
            self._flush_symbol(symbol)  # what was verified before this goes out before it
        seq = self.seq[symbol] + 1
        self.seq[symbol] = seq
        headers[HEADER_SEQ] = str(seq)
        headers[HEADER_RELAY] = self.relay_id
        self.transport.publish(self._subjects[symbol][kind], payload, headers)
        self.published[kind] += 1
        if self.on_publish is not None:
            self.on_publish(symbol, kind, seq, payload)

    def _publish_book(
        self, symbol: str, kind: str, payload: bytes, book: L2Book | Level3Book, received: int
    ) -> None:
        if kind == "update":
            self._queue_update(symbol, payload, book, received)
            return
        headers = {
            HEADER_TIME: str(received),
            HEADER_PROTOCOL: self.protocol,
            HEADER_CHECKSUM: str(book.checksum()),
        }
        if kind == "snapshot":
            headers[HEADER_PRECISION] = f"{book.price_precision},{book.qty_precision}"
            headers[HEADER_DEPTH] = str(book.depth)
            self._halted.discard(symbol)
        self._publish(symbol, kind, payload, headers)

    def _queue_update(
        self, symbol: str, frame: bytes, book: L2Book | Level3Book, received: int
    ) -> None:
        """Number a verified update and add it to its symbol's batch, which goes out at the end
        of this turn of the event loop (or now, when full)."""
        seq = self.seq[symbol] + 1
        self.seq[symbol] = seq
        batch = self._batches.get(symbol)
        if batch is None:
            batch = self._batches[symbol] = _Batch(seq)
            if self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_soon(self._flush_batches)
        batch.times.append(received)
        batch.checksums.append(book.checksum())
        batch.frames.append(frame)
        batch.size += len(frame)
        self.published["update"] += 1
        if self.on_publish is not None:
            self.on_publish(symbol, "update", seq, frame)
        if len(batch.frames) >= MAX_BATCH_FRAMES or batch.size >= MAX_BATCH_BYTES:
            self._flush_symbol(symbol)

    def _flush_batches(self) -> None:
        self._flush_handle = None
        batches = self._batches
        self._batches = {}
        for symbol, batch in batches.items():
            self._send_batch(symbol, batch)

    def _flush_symbol(self, symbol: str) -> None:
        batch = self._batches.pop(symbol, None)
        if batch is not None:
            self._send_batch(symbol, batch)

    def _send_batch(self, symbol: str, batch: _Batch) -> None:
        payload, headers = pack_updates(batch.times, batch.checksums, batch.frames)
        headers[HEADER_SEQ] = str(batch.first)
        headers[HEADER_RELAY] = self.relay_id
        headers[HEADER_PROTOCOL] = self.protocol
        self.transport.publish(self._subjects[symbol]["update"], payload, headers)
        self.update_messages += 1

    def _publish_snapshot(self, symbol: str, book: L2Book | Level3Book) -> None:
        if isinstance(book, Level3Book):
            frame = level3_snapshot_frame(
                symbol, _orders(book, "bid"), _orders(book, "ask"), book.checksum()
            )
        else:
            frame = snapshot_frame(
                self.protocol, symbol, book.depth, book.bids_str(), book.asks_str(), book.checksum()
            )
        self._publish_book(symbol, "snapshot", frame, book, time.time_ns())

    def _publish_state(self, symbol: str, reason: str) -> None:
        if self.active:
            self._publish(
                symbol, "state", state_payload(symbol, reason), {HEADER_TIME: str(time.time_ns())}
            )

    def publish_snapshots(self) -> int:
        """Publish a snapshot of every valid book now; return how many."""
        if not self.active or not self._book_channel:
            return 0
        count = 0
        for symbol in self.symbols:
            book = self.book(symbol)
            if book is not None and book.valid and symbol not in self._stale:
                self._publish_snapshot(symbol, book)
                count += 1
        return count

    def _on_request(self, msg: BusMessage) -> None:
        """A consumer asks for fresh snapshots (it joined, or lost its place)."""
        if not self.active:
            return
        try:
            symbols = msgspec.json.decode(msg.payload, type=dict[str, list[str]])["symbols"]
        except (msgspec.DecodeError, KeyError) as exc:
            log.warning("relay %s: bad snapshot request on %s: %r", self.name, msg.subject, exc)
            return
        now = time.monotonic()
        for symbol in symbols:
            if symbol not in self._wanted or symbol in self._deferred:
                continue
            # many consumers asking at once cost one snapshot per symbol per interval; a
            # request inside the interval is answered when it ends, never dropped
            wait = self._requested.get(symbol, -1e9) + REQUEST_INTERVAL - now
            if wait > 0:
                self._deferred.add(symbol)
                asyncio.get_running_loop().call_later(wait, self._answer, symbol)
            else:
                self._answer(symbol)

    def _answer(self, symbol: str) -> None:
        self._deferred.discard(symbol)
        book = self.book(symbol)
        # an invalid or stale book restarts with the exchange's snapshot, published anyway
        if not self.active or book is None or not book.valid or symbol in self._stale:
            return
        self._requested[symbol] = time.monotonic()
        self._publish_snapshot(symbol, book)

    # -- background loops ----------------------------------------------------------------

    async def _lease_step(self) -> None:
        held = await self.transport.hold_lease(self._lease_key, self.relay_id, self.lease_ttl)
        if held and not self.active:
            self.active = True
            self._halted.update(self.symbols)
            self._event("active", detail=self.relay_id)
            self.publish_snapshots()
        elif not held and self.active:
            self.active = False
            self._event("lease_lost", detail=LeaseLost(f"{self._lease_key}: not renewed"))
        elif not held and not self._tasks:
            self._event("standby", detail=self._lease_key)

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl / 4)
            try:
                await self._lease_step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay %s: lease step failed", self.name)

    async def _heartbeat_loop(self) -> None:
        encoder = msgspec.json.Encoder()
        while True:
            if self.active:
                payload = encoder.encode(
                    {
                        "relay": self.relay_id,
                        "name": self.name,
                        "channel": self.channel,
                        "seqs": self.seq,
                        "time": time.time_ns(),
                    }
                )
                self.transport.publish(self._heartbeat_subject, payload, None, stored=False)
            await asyncio.sleep(self.heartbeat_every)

    async def _snapshot_loop(self) -> None:
        while True:
            timeout = self.snapshot_every if self.snapshot_every > 0 else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resnapshot.wait(), timeout)
            self._resnapshot.clear()
            if not self._book_channel or not self.active:
                continue
            self.publish_snapshots()


class _Batch:
    """Verified updates of one symbol waiting for the end of the event loop's turn."""

    __slots__ = ("first", "times", "checksums", "frames", "size")

    def __init__(self, first: int) -> None:
        self.first = first  # sequence number of the first frame
        self.times: list[int] = []
        self.checksums: list[int] = []
        self.frames: list[bytes] = []
        self.size = 0


def _orders(book: Level3Book, side: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Every order of one side of a level3 book: ``(price, [(order_id, qty), ...])`` per
    level, best first, in queue order (what a level3 snapshot lists)."""
    levels = book.bids() if side == "bid" else book.asks()
    return [
        (
            book.price_text(price),
            [(oid, book.qty_text(lots)) for oid, lots in book.level_orders(side, rank)],
        )
        for rank, (price, _, _) in enumerate(levels)
    ]
