"""The seam between the relay/consumer and a message bus: :class:`Transport`, and its NATS
JetStream implementation :class:`NatsTransport`.

A transport offers exactly what :class:`~kbook.bus.Relay` and :class:`~kbook.bus.BusClient`
need: ordered non-blocking publishing into a persisted log, a replay that starts at the newest
snapshot of one symbol, plain subscriptions that deliver what is published from now on without
going through the log (heartbeats, and the live path a book moves to once its replay has caught
up), and a lease with a time to live for relay fail-over. Another bus (Redis Streams:
``XADD``/``XREVRANGE``/``SET NX PX`` and pub/sub; Kafka: compacted snapshot topics and a
consumer-group lease) would implement the same protocol without touching the book code.

What it is not: a broker. NATS (``nats-server`` with JetStream) stores, orders and delivers the
messages; this module only maps kbook's needs onto two clients: ``nats-py`` for JetStream, and
:class:`~kbook.bus.corenats.CoreNats` for the hot path (publishing, live subscriptions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

from kbook.bus.corenats import CoreNats, CoreNatsError, endpoints, redact, secrets
from kbook.bus.wire import stream_name
from kbook.errors import BusUnavailable

__all__ = ["BusMessage", "NatsTransport", "Subscription", "Transport"]

log = logging.getLogger("kbook.bus")


@dataclass(frozen=True, slots=True)
class BusMessage:
    """One message as a transport delivers it."""

    subject: str
    headers: Mapping[str, str]
    payload: bytes


Handler = Callable[[BusMessage], None]


class Subscription(Protocol):
    """What a transport's subscribe calls return."""

    async def unsubscribe(self) -> None:
        """Stop delivering."""


class Transport(Protocol):
    """A message bus as kbook uses it. ``on_state`` (if set) is called with ``"connected"``,
    ``"disconnected"``, ``"reconnected"`` or ``"error"`` and a detail."""

    on_state: Callable[[str, str], None] | None

    async def connect(self) -> None:
        """Connect (raises :class:`BusUnavailable` when the bus cannot be reached)."""

    async def close(self) -> None:
        """Flush what was published and disconnect."""

    async def ensure_log(self, venue: str, max_age: float, replace: bool = True) -> None:
        """Create the persisted log of ``kbook.<venue>.>``, keeping ``max_age`` s; an existing
        log takes these limits when ``replace`` (a relay), else is left as it is (a consumer)."""

    def publish(
        self, subject: str, payload: bytes, headers: Mapping[str, str] | None, stored: bool = True
    ) -> None:
        """Queue one message; messages go out in the order of the calls. ``stored=False``:
        not persisted (heartbeats)."""

    async def flush(self) -> None:
        """Wait until every queued message was handed to the bus."""

    async def replay_from_snapshot(
        self, venue: str, subjects: str, snapshot_subject: str, handler: Handler
    ) -> Subscription:
        """Deliver ``subjects`` in log order, starting at the newest message on
        ``snapshot_subject`` (or at the next new message when there is none)."""

    async def listen(self, subject: str, handler: Handler) -> Subscription:
        """Deliver what is published on ``subject`` (wildcards allowed) from now on, as it is
        published, whether or not the log also stores it; nothing is replayed, and a message
        lost in an outage is simply not delivered."""

    async def hold_lease(self, key: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease ``key`` for ``holder``; True while ``holder`` owns it.
        A lease not renewed within ``ttl`` s expires."""

    async def release_lease(self, key: str, holder: str) -> None:
        """Give the lease up now (if ``holder`` owns it)."""


class _NatsSub:
    def __init__(self, sub: object) -> None:
        self._sub = sub

    async def unsubscribe(self) -> None:
        try:
            await self._sub.unsubscribe()  # type: ignore[attr-defined]
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            log.debug("unsubscribe: %r", exc)


class _CoreSub:
    def __init__(self, core: CoreNats, sid: int) -> None:
        self._core = core
        self._sid = sid

    async def unsubscribe(self) -> None:
        self._core.unsubscribe(self._sid)


def _scrub(text: str, url: str) -> str:
    """``text`` without any credential of ``url`` (client libraries quote the URL they were
    given in their errors)."""
    for secret in secrets(url):
        text = text.replace(secret, "***")
    return text


class NatsTransport:
    """:class:`Transport` over NATS with JetStream (``nats-py``).

    Data subjects go into one stream per venue (``KBOOK_<VENUE>``, file storage by default, so
    a restarted ``nats-server`` keeps them); publishing is core-NATS publishing into that stream,
    without waiting for a per-message acknowledgement (a lost message shows up as a sequence gap
    at the consumer, never as a wrong book). Replays are ordered push consumers starting at the
    newest snapshot's stream sequence. Leases are keys of a key-value bucket whose TTL expires a
    lease nobody renews.

    Two connections: nats-py for JetStream (the log, replays, leases), and a
    :class:`~kbook.bus.corenats.CoreNats` connection for the hot path, through which every
    ``publish`` is written in the caller's call and every ``listen`` subscription is delivered
    from the socket read. Where the URL asks for what ``CoreNats`` does not do (``tls://``, a
    server that requires TLS) or ``fast_path=False``, nats-py carries those too.

    :param url: ``nats://HOST:PORT`` (several comma-separated URLs for a cluster; credentials
        as ``nats://USER:PASSWORD@HOST`` or ``nats://TOKEN@HOST`` never appear in logs, events
        or exceptions)
    :param storage: ``"file"`` or ``"memory"`` for the data stream
    :param lease_bucket: the key-value bucket of relay leases
    :param lease_ttl: how long a lease lives without renewal (the bucket's TTL), seconds
    :param connect_timeout: seconds to reach the bus at start (afterwards reconnects never stop)
    :param fast_path: publish and listen through the hand-written core-NATS connection
    """

    def __init__(
        self,
        url: str,
        *,
        storage: str = "file",
        lease_bucket: str = "kbook_relays",
        lease_ttl: float = 3.0,
        connect_timeout: float = 5.0,
        fast_path: bool = True,
    ) -> None:
        if storage not in ("file", "memory"):
            raise ValueError("storage must be 'file' or 'memory'")
        self.url = url
        self.storage = storage
        self.lease_bucket = lease_bucket
        self.lease_ttl = lease_ttl
        self.connect_timeout = connect_timeout
        self.fast_path = fast_path
        self._core: CoreNats | None = None
        self.on_state: Callable[[str, str], None] | None = None
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._kv: KeyValue | None = None
        self._lease_revision: dict[str, int] = {}
        self._queue: deque[tuple[str, bytes, dict[str, str] | None]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pump: asyncio.Task[None] | None = None
        self.published = 0
        self.publish_errors = 0

    # -- connection ----------------------------------------------------------------------

    def __repr__(self) -> str:
        path = "core" if self._core is not None else "nats-py"
        return f"<NatsTransport {redact(self.url)} publish/listen via {path}>"

    def _state(self, kind: str, detail: str = "") -> None:
        log.info("nats %s %s", kind, detail)
        if self.on_state is not None:
            try:
                self.on_state(kind, detail)
            except Exception:
                log.exception("on_state callback failed")

    async def connect(self) -> None:
        shown = redact(self.url)

        async def disconnected() -> None:
            self._state("disconnected", shown)

        async def reconnected() -> None:
            self._state("reconnected", shown)

        async def error(exc: Exception) -> None:
            self._state("error", _scrub(repr(exc), self.url))

        try:
            # nats-py retries a first connect forever when reconnects are unbounded; a bus that
            # cannot be reached at start is an error the caller must see
            self._nc = await asyncio.wait_for(
                nats.connect(
                    servers=[u.strip() for u in self.url.split(",")],
                    connect_timeout=max(1, round(self.connect_timeout)),
                    reconnect_time_wait=0.25,  # a restarted server is found again quickly
                    max_reconnect_attempts=-1,  # a relay or consumer outlives any bus outage
                    ping_interval=5,
                    max_outstanding_pings=2,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    error_cb=error,
                    allow_reconnect=True,
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(
                f"{shown}: {type(exc).__name__}: {_scrub(str(exc), self.url)}"
            ) from None
        self._js = self._nc.jetstream()
        self._pump = asyncio.ensure_future(self._drain())
        servers = endpoints(self.url) if self.fast_path else None
        if servers is not None:
            core = CoreNats(servers, name="kbook", on_state=self._core_state)
            try:
                await core.connect(self.connect_timeout)
                self._core = core
            except CoreNatsError as exc:  # e.g. TLS required: nats-py carries everything
                log.info("nats fast path off: %s", _scrub(str(exc), self.url))
            except (OSError, TimeoutError) as exc:
                await self.close()
                raise BusUnavailable(
                    f"{shown} (fast path): {type(exc).__name__}: {_scrub(str(exc), self.url)}"
                ) from None
        self._state("connected", shown)

    def _core_state(self, kind: str, detail: str) -> None:
        # the hot-path connection's outages matter as much as nats-py's: a relay re-snapshots
        # every book after "reconnected", a consumer reports it
        self._state(kind, f"fast path {detail}")

    def _client(self) -> NatsClient:
        if self._nc is None:
            raise BusUnavailable("transport not connected")
        return self._nc

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise BusUnavailable("transport not connected")
        return self._js

    async def close(self) -> None:
        if self._nc is None:
            return
        if self._core is not None:
            core, self._core = self._core, None
            with contextlib.suppress(ConnectionError, TimeoutError):
                await core.flush(2.0)
            await core.close()
        try:
            await asyncio.wait_for(self.flush(), 2.0)
        except (TimeoutError, BusUnavailable) as exc:
            log.info("close: unflushed messages dropped: %r", exc)
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        try:
            await asyncio.wait_for(self._nc.close(), 5.0)
        except (TimeoutError, nats.errors.Error) as exc:
            log.info("close: %r", exc)
        self._nc = None
        self._js = None

    # -- the log -------------------------------------------------------------------------

    async def ensure_log(self, venue: str, max_age: float, replace: bool = True) -> None:
        js = self._jetstream()
        config = api.StreamConfig(
            name=stream_name(venue),
            subjects=[f"kbook.{venue}.>"],
            max_age=max_age,
            storage=api.StorageType.FILE if self.storage == "file" else api.StorageType.MEMORY,
            discard=api.DiscardPolicy.OLD,
        )
        try:
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:
                if replace:  # exists with other limits: take ours
                    await js.update_stream(config)
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            raise BusUnavailable(f"stream {config.name}: {exc!r}") from exc

    def publish(
        self, subject: str, payload: bytes, headers: Mapping[str, str] | None, stored: bool = True
    ) -> None:
        # stored or not is decided by the subject (the stream captures kbook.<venue>.>)
        core = self._core
        if core is not None:
            if core.publish(subject, payload, headers):
                self.published += 1
            else:
                self._publish_failed(subject, "fast path down, message too large or socket full")
            return
        self._queue.append((subject, payload, dict(headers) if headers else None))
        self._idle.clear()
        self._wake.set()

    async def _drain(self) -> None:
        """Hand queued messages to nats-py in order (callers publish from sync callbacks)."""
        nc = self._client()
        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                subject, payload, headers = queue.popleft()
                try:
                    await nc.publish(subject, payload, headers=headers)
                    self.published += 1
                except nats.errors.Error as exc:
                    self._publish_failed(subject, repr(exc))
            self._idle.set()

    def _publish_failed(self, subject: str, why: str) -> None:
        # the consumer sees the loss as a sequence gap; the relay republishes snapshots on
        # reconnect
        self.publish_errors += 1
        # an outage fails every message: log the 1st, 10th, 100th, then every 1000th
        n = self.publish_errors
        if n in (1, 10, 100) or n % 1000 == 0:
            log.warning("publish %s failed (%d so far): %s", subject, n, why)

    async def flush(self) -> None:
        await self._idle.wait()
        nc = self._client()
        try:
            await nc.flush(timeout=5)
            if self._core is not None:
                await self._core.flush(5)
        except (nats.errors.Error, TimeoutError, ConnectionError) as exc:
            raise BusUnavailable(f"flush: {exc!r}") from exc

    # -- consuming -----------------------------------------------------------------------

    @staticmethod
    def _wrap(handler: Handler) -> Callable[[Msg], Awaitable[None]]:
        async def on_msg(msg: Msg) -> None:
            handler(BusMessage(msg.subject, msg.headers or {}, msg.data))

        return on_msg

    async def replay_from_snapshot(
        self, venue: str, subjects: str, snapshot_subject: str, handler: Handler
    ) -> Subscription:
        js = self._jetstream()
        stream = stream_name(venue)
        try:
            try:
                last = await js.get_last_msg(stream, snapshot_subject)
                start = last.seq
            except nats.js.errors.NotFoundError:
                # no snapshot yet: everything from the next message on (the relay's next
                # snapshot starts the book)
                info = await js.stream_info(stream)
                start = info.state.last_seq + 1
            assert start is not None
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
            )
            sub = await js.subscribe(
                subjects,
                stream=stream,
                config=config,
                ordered_consumer=True,
                idle_heartbeat=1.0,
                cb=self._wrap(handler),
            )
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            raise BusUnavailable(f"replay of {subjects}: {exc!r}") from exc
        return _NatsSub(sub)

    async def listen(self, subject: str, handler: Handler) -> Subscription:
        core = self._core
        if core is not None:

            def on_msg(subj: str, headers: Mapping[str, str], payload: bytes) -> None:
                handler(BusMessage(subj, headers, payload))

            sid = core.subscribe_nowait(subject, on_msg)
            try:
                await core.flush(5)  # from now on: the server has the subscription
            except (ConnectionError, TimeoutError) as exc:
                # kept: the subscription is made again on the next reconnect
                log.info("subscribe %s not confirmed: %r", subject, exc)
            return _CoreSub(core, sid)
        try:
            sub = await self._client().subscribe(subject, cb=self._wrap(handler))
        except nats.errors.Error as exc:
            raise BusUnavailable(f"subscribe {subject}: {exc!r}") from exc
        return _NatsSub(sub)

    # -- leases --------------------------------------------------------------------------

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            js = self._jetstream()
            try:
                self._kv = await js.key_value(self.lease_bucket)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await js.create_key_value(
                    bucket=self.lease_bucket,
                    ttl=self.lease_ttl,
                    history=1,
                    storage=api.StorageType.MEMORY,
                )
        return self._kv

    async def hold_lease(self, key: str, holder: str, ttl: float) -> bool:
        """Take or renew ``key``. The TTL is the bucket's (``lease_ttl``); ``ttl`` is checked
        against it so that a relay never believes in a longer lease than the bus keeps."""
        if ttl < self.lease_ttl:
            raise ValueError("ttl shorter than the bucket's lease_ttl")
        try:
            kv = await self._bucket()
            revision = self._lease_revision.get(key)
            try:
                if revision is None:
                    self._lease_revision[key] = await kv.create(key, holder.encode())
                else:
                    self._lease_revision[key] = await kv.update(key, holder.encode(), last=revision)
                return True
            except nats.js.errors.KeyWrongLastSequenceError:
                self._lease_revision.pop(key, None)
                return False
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            # unknown: the bus may have expired it; only a renewed lease counts as held. A
            # restarted server may have lost the (memory) bucket: look it up again next time.
            self._lease_revision.pop(key, None)
            self._kv = None
            log.info("lease %s: %r", key, exc)
            return False

    async def release_lease(self, key: str, holder: str) -> None:
        revision = self._lease_revision.pop(key, None)
        if revision is None or self._kv is None:
            return
        try:
            await self._kv.delete(key, last=revision)
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            log.info("release lease %s: %r", key, exc)
