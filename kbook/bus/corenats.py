"""A core-NATS connection for the bus's hot path, written against the NATS client protocol.

The relay publishes every bus message through one :class:`CoreNats`, and a consumer's live
subscriptions (the path a book follows once its replay has caught up, and relay heartbeats)
are delivered by one: ``publish`` writes the protocol line to the socket in the caller's call,
and a received message reaches its handler from ``data_received``, in the same turn of the
event loop as the socket read. nats-py goes through a flusher task on the way out and a
per-subscription queue and task on the way in; ``benchmarks/bus_bench.py --paced`` measures the
difference (its floor columns: nats-py core subscription against the hand-written protocol).

JetStream (the log, replays, the lease bucket) stays with nats-py; :class:`NatsTransport
<kbook.bus.transport.NatsTransport>` holds both connections.

What it is not: a general NATS client. Plain TCP only (no TLS: a server that requires it is
refused with :class:`CoreNatsError` and the transport falls back to nats-py); user/password or
token authentication from the URL, no NKEY/JWT credentials; no request/reply, no queue groups,
no JetStream API. Messages published while the connection is down are not buffered: the
caller is told (``publish`` returns False), and a bus consumer sees the loss as a sequence gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["CoreNats", "CoreNatsError", "Endpoint", "Parser", "endpoints", "redact", "secrets"]

log = logging.getLogger("kbook.bus")

#: Longest control line accepted from a server (``MSG``/``HMSG``/``INFO``/``-ERR``); a longer one
#: is a protocol error rather than a buffer that grows without bound.
MAX_CONTROL_LINE = 64 * 1024

MsgHandler = Callable[[str, Mapping[str, str], bytes], None]


class CoreNatsError(Exception):
    """The server broke the protocol, refused the connection (``-ERR``), or asked for what this
    module does not do (TLS)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One server of a bus URL. ``password`` and ``token`` never appear in its repr."""

    host: str
    port: int
    user: str | None = None
    password: str | None = None
    token: str | None = None

    def __repr__(self) -> str:
        auth = "user=<set>, " if self.user else ("token=<set>, " if self.token else "")
        return f"Endpoint({auth}{self.host}:{self.port})"


def endpoints(url: str) -> list[Endpoint] | None:
    """The servers of a bus URL (comma-separated for a cluster), or None when one of them needs
    what :class:`CoreNats` does not do (a scheme other than ``nats://``, a path or query).

    >>> endpoints("nats://127.0.0.1:4222")
    [Endpoint(127.0.0.1:4222)]
    >>> endpoints("nats://alice:s3cret@bus-a:4222, nats://bus-b")
    [Endpoint(user=<set>, bus-a:4222), Endpoint(bus-b:4222)]
    >>> endpoints("tls://bus-a:4222") is None
    True
    """
    out = []
    for part in url.split(","):
        part = part.strip()
        if "://" not in part:
            part = "nats://" + part
        u = urlsplit(part)
        if u.scheme != "nats" or u.path not in ("", "/") or u.query or u.fragment or not u.hostname:
            return None
        try:
            port = u.port or 4222
        except ValueError:
            return None
        # taken as written, as nats-py does (both connections must present the same secret)
        user = u.username or None
        password = u.password
        if user is not None and password is None:
            out.append(Endpoint(u.hostname, port, token=user))  # nats://TOKEN@host
        else:
            out.append(Endpoint(u.hostname, port, user, password))
    return out


def secrets(url: str) -> list[str]:
    """The passwords and tokens in a bus URL, whatever its scheme (to scrub them from text that
    quotes the URL).

    >>> secrets("tls://alice:s3cret@bus-a:4222,nats://tok@bus-b,nats://bus-c")
    ['s3cret', 'tok']
    """
    out: list[str] = []
    for part in url.split(","):
        rest = part.partition("://")[2] or part
        at = rest.rfind("@")
        if at > 0:
            user, sep, password = rest[:at].partition(":")
            secret = password if sep else user
            if secret and secret not in out:
                out.append(secret)
    return out


def redact(url: str) -> str:
    """``url`` with any credentials replaced, for logs, events and exceptions.

    >>> redact("nats://alice:s3cret@bus-a:4222,nats://tok@bus-b")
    'nats://***@bus-a:4222,nats://***@bus-b'
    >>> redact("nats://127.0.0.1:4222")
    'nats://127.0.0.1:4222'
    """
    parts = []
    for part in url.split(","):
        scheme, sep, rest = part.partition("://")
        if not sep:
            scheme, rest = "", part
        at = rest.rfind("@")
        if at >= 0:
            rest = "***" + rest[at:]
        parts.append(f"{scheme}{sep}{rest}")
    return ",".join(parts)


def _headers(block: bytes) -> dict[str, str]:
    """The header block of an ``HMSG`` (``NATS/1.0[ status]\\r\\nKey: Value\\r\\n...\\r\\n``)."""
    try:
        text = block.decode()
    except UnicodeDecodeError as exc:
        raise CoreNatsError(f"message headers are not UTF-8: {exc}") from None
    lines = text.split("\r\n")
    if not lines[0].startswith("NATS/1.0"):
        raise CoreNatsError(f"message headers start with {lines[0][:40]!r}")
    out: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise CoreNatsError(f"malformed message header {line[:40]!r}")
        out[key.strip()] = value.strip()
    return out


def _check_subject(subject: str) -> None:
    if not subject or any(c in subject for c in " \t\r\n"):
        raise ValueError(f"not a NATS subject: {subject!r}")


class Parser:
    """The server side of the protocol, fed in arbitrary pieces.

    Calls ``on_msg(subject, sid, headers, payload)`` for every ``MSG``/``HMSG`` and
    ``on_op(op, arg)`` for ``PING``, ``PONG``, ``INFO`` (arg: the JSON text), ``-ERR`` (arg: the
    server's message) and ``+OK``. Raises :class:`CoreNatsError` on anything else; after that
    the parser is spent (the connection must be dropped).

    >>> got = []
    >>> p = Parser(lambda *m: got.append(m), lambda *o: got.append(o))
    >>> p.feed(b"PING\\r\\nHMSG a.b 7 18 20\\r\\nNATS/1.0\\r\\nK: v\\r\\n\\r\\nhi\\r")
    >>> p.feed(b"\\nMSG a.c 7 0\\r\\n\\r\\n")
    >>> got
    [('PING', ''), ('a.b', 7, {'K': 'v'}, b'hi'), ('a.c', 7, {}, b'')]
    """

    __slots__ = ("_parts", "_have", "_need", "on_msg", "on_op", "max_payload")

    def __init__(
        self,
        on_msg: Callable[[str, int, Mapping[str, str], bytes], None],
        on_op: Callable[[str, str], None],
        max_payload: int = 64 * 1024 * 1024,
    ) -> None:
        # an incomplete tail waits in pieces until ``_need`` bytes are there, so a large message
        # arriving in many reads is joined once, not once per read
        self._parts: list[bytes] = []
        self._have = 0
        self._need = 0
        self.on_msg = on_msg
        self.on_op = on_op
        self.max_payload = max_payload

    def feed(self, data: bytes) -> None:
        if self._parts:
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            data = b"".join(self._parts)
            self._parts = []
        n = len(data)
        pos = 0
        on_msg = self.on_msg
        while pos < n:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                if n - pos > MAX_CONTROL_LINE:
                    raise CoreNatsError("control line too long")
                self._need = n - pos + 1  # any more bytes may end the line
                break
            if eol - pos > MAX_CONTROL_LINE:
                raise CoreNatsError("control line too long")
            head = data[pos : pos + 4]
            if head == b"MSG " or head == b"HMSG":
                args = data[pos:eol].split()
                hmsg = head == b"HMSG"
                # MSG subject sid [reply] size | HMSG subject sid [reply] hsize size
                if len(args) not in ((5, 6) if hmsg else (4, 5)):
                    raise CoreNatsError(f"malformed {args[0].decode(errors='replace')} line")
                try:
                    sid = int(args[2])
                    size = int(args[-1])
                    hsize = int(args[-2]) if hmsg else 0
                except ValueError:
                    raise CoreNatsError("malformed message sizes") from None
                if not 0 <= hsize <= size <= self.max_payload:
                    raise CoreNatsError(f"impossible message sizes {hsize}/{size}")
                start = eol + 2
                end = start + size
                if end + 2 > n:
                    self._need = end + 2 - pos  # the rest of this message is on its way
                    break
                if data[end : end + 2] != b"\r\n":
                    raise CoreNatsError("message not followed by CRLF")
                try:
                    subject = args[1].decode()
                except UnicodeDecodeError:
                    raise CoreNatsError("subject is not UTF-8") from None
                if hsize:
                    on_msg(
                        subject,
                        sid,
                        _headers(data[start : start + hsize]),
                        data[start + hsize : end],
                    )
                else:
                    on_msg(subject, sid, {}, data[start:end])
                pos = end + 2
                continue
            line = data[pos:eol]
            pos = eol + 2
            op, _, arg = line.partition(b" ")
            op = op.upper()
            if op in (b"PING", b"PONG", b"+OK") and not arg.strip():
                self.on_op(op.decode(), "")
            elif op in (b"INFO", b"-ERR"):
                self.on_op(op.decode(), arg.decode(errors="replace").strip())
            else:
                raise CoreNatsError(f"unknown protocol line {line[:40]!r}")
        if pos < n:
            self._parts = [data[pos:]]
            self._have = n - pos


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: CoreNats) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.error: CoreNatsError | None = None  # why this connection was dropped
        self.parser = Parser(owner._dispatch, self._op)
        self.info: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed(data)
        except CoreNatsError as exc:
            self.owner._fail(self, exc)

    def _op(self, op: str, arg: str) -> None:
        owner = self.owner
        if op == "PING":
            if self.transport is not None:
                self.transport.write(b"PONG\r\n")
        elif op == "PONG":
            owner._pong(self)
        elif op == "INFO":
            try:
                info = json.loads(arg)
            except ValueError:
                raise CoreNatsError("INFO is not JSON") from None
            if not isinstance(info, dict):
                raise CoreNatsError("INFO is not an object")
            if not self.info.done():
                self.info.set_result(info)
            owner._info(info)
        elif op == "-ERR":
            owner._server_error(self, arg)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.lost.done():
            self.lost.set_result(None)
        if not self.info.done():
            self.info.set_exception(ConnectionError("connection closed before INFO"))
        self.owner._lost(self, exc)


class CoreNats:
    """One core-NATS connection that reconnects until closed.

    :param servers: from :func:`endpoints`; tried in order, on every (re)connect
    :param name: the connection name the server shows (``nats-server`` monitoring)
    :param on_state: called with ``"disconnected"``, ``"reconnected"`` or ``"error"`` and a
        detail that holds no credentials
    :param ping_interval: seconds between keep-alive PINGs; ``max_outstanding_pings`` unanswered
        ones drop the connection (a silent server is a lost server)
    :param reconnect_wait: seconds between reconnect rounds over ``servers``
    :param max_pending: bytes the socket may hold unsent before ``publish`` refuses (a stalled
        server must not grow this process without bound)
    """

    def __init__(
        self,
        servers: list[Endpoint],
        *,
        name: str = "kbook",
        on_state: Callable[[str, str], None] | None = None,
        ping_interval: float = 5.0,
        max_outstanding_pings: int = 2,
        reconnect_wait: float = 0.25,
        max_pending: int = 8 * 1024 * 1024,
    ) -> None:
        if not servers:
            raise ValueError("no servers")
        self.servers = servers
        self.name = name
        self.on_state = on_state
        self.ping_interval = ping_interval
        self.max_outstanding_pings = max_outstanding_pings
        self.reconnect_wait = reconnect_wait
        self.max_pending = max_pending
        self.max_payload = 1024 * 1024  # until the server's INFO says
        self._proto: _Protocol | None = None
        self._write: Callable[[bytes], None] | None = None
        self._pongs: deque[asyncio.Future[None] | None] = deque()
        self._subs: dict[int, tuple[str, MsgHandler]] = {}
        self._next_sid = 1
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._server = ""
        self._subjects: set[str] = set()  # subjects published before, known to be valid
        self.reconnects = 0
        self.refused = 0  # publishes not sent: disconnected, too large, or the socket backed up

    def __repr__(self) -> str:
        state = "connected" if self._write is not None else "disconnected"
        return f"<CoreNats {state} {self._server or self.servers[0].host} subs={len(self._subs)}>"

    @property
    def connected(self) -> bool:
        return self._write is not None

    # -- connecting --------------------------------------------------------------------

    async def connect(self, timeout: float = 5.0) -> None:
        """The first connection: every server in turn until one answers; raises the last
        server's error (``OSError``, ``TimeoutError`` or :class:`CoreNatsError`)."""
        error: BaseException | None = None
        for server in self.servers:
            try:
                await asyncio.wait_for(self._open(server), timeout)
                break
            except (OSError, TimeoutError, CoreNatsError) as exc:
                error = exc
        else:
            assert error is not None
            raise error
        self._spawn(self._keepalive())

    async def _open(self, server: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_connection(
            lambda: _Protocol(self), server.host, server.port
        )
        try:
            info = await proto.info
            if info.get("tls_required"):
                raise CoreNatsError("the server requires TLS (not on the hand-written path)")
            options: dict[str, object] = {
                "verbose": False,
                "pedantic": False,
                "headers": True,
                "no_responders": False,
                "protocol": 1,
                "lang": "python-kbook",
                "version": "1",
                "name": self.name,
            }
            if server.user is not None:
                options["user"] = server.user
                options["pass"] = server.password or ""
            elif server.token is not None:
                options["auth_token"] = server.token
            lines = [b"CONNECT " + json.dumps(options).encode() + b"\r\n"]
            lines += [
                b"SUB %s %d\r\n" % (subj.encode(), sid) for sid, (subj, _) in self._subs.items()
            ]
            lines.append(b"PING\r\n")
            transport.write(b"".join(lines))
            # the server answers PONG once CONNECT (and every SUB) took effect, or -ERR and hangs
            # up; either comes back through _pong/_server_error/_lost on this protocol
            ready = loop.create_future()
            self._pongs = deque([ready])
            self._proto = proto
            await asyncio.shield(ready)
            # the same read may have carried the PONG and then garbage, or the hang-up
            if proto.error is not None:
                raise proto.error
            if proto.transport is None or proto.transport.is_closing():
                raise ConnectionError("connection lost while connecting")
        except BaseException:
            if self._proto is proto:
                self._proto = None
                self._pongs = deque()
            transport.abort()
            raise
        self._write = transport.write
        self._server = f"{server.host}:{server.port}"

    def _info(self, info: dict[str, object]) -> None:
        size = info.get("max_payload")
        if isinstance(size, int) and size > 0:
            self.max_payload = size

    async def _reconnect(self) -> None:
        while not self._closing:
            for server in self.servers:
                if self._closing:
                    return
                try:
                    await asyncio.wait_for(self._open(server), max(1.0, 4 * self.reconnect_wait))
                except (OSError, TimeoutError, CoreNatsError) as exc:
                    log.debug("core nats: reconnect to %s:%d: %r", server.host, server.port, exc)
                    continue
                self.reconnects += 1
                self._state("reconnected", self._server)
                return
            await asyncio.sleep(self.reconnect_wait)

    async def _keepalive(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.ping_interval)
            proto, write = self._proto, self._write
            if proto is None or write is None or proto.transport is None:
                continue
            if len(self._pongs) >= self.max_outstanding_pings:
                self._fail(proto, CoreNatsError(f"{len(self._pongs)} PINGs unanswered"))
                continue
            self._pongs.append(None)
            write(b"PING\r\n")

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _state(self, kind: str, detail: str) -> None:
        log.info("core nats %s %s", kind, detail)
        if self.on_state is not None:
            try:
                self.on_state(kind, detail)
            except Exception:
                log.exception("on_state callback failed")

    # -- events from the protocol -----------------------------------------------------------

    def _pong(self, proto: _Protocol) -> None:
        if proto is not self._proto or not self._pongs:
            return
        waiter = self._pongs.popleft()
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _server_error(self, proto: _Protocol, message: str) -> None:
        # a -ERR before the first PONG refuses the connection; later ones (a permissions
        # violation, a slow consumer) are reported, and the server hangs up if it means to
        log.warning("core nats: server error %s", message)
        if self._pongs and self._pongs[0] is not None and self._write is None:
            first = self._pongs[0]
            if not first.done():
                first.set_exception(CoreNatsError(f"server refused the connection: {message}"))
            return
        self._state("error", f"server: {message}")

    def _fail(self, proto: _Protocol, exc: CoreNatsError) -> None:
        proto.error = exc
        log.warning("core nats: dropping the connection: %s", exc)
        if self._write is not None and proto is self._proto:
            self._state("error", str(exc))
        if self._pongs and self._pongs[0] is not None and not self._pongs[0].done():
            self._pongs[0].set_exception(exc)
        if proto.transport is not None:
            proto.transport.abort()

    def _lost(self, proto: _Protocol, exc: Exception | None) -> None:
        if proto is not self._proto:
            return
        was_up = self._write is not None
        self._proto = None
        self._write = None
        pongs, self._pongs = self._pongs, deque()
        for waiter in pongs:
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("connection lost"))
        if was_up and not self._closing:
            self._state("disconnected", f"{self._server}: {exc!r}" if exc else self._server)
            self._spawn(self._reconnect())

    def _dispatch(self, subject: str, sid: int, headers: Mapping[str, str], payload: bytes) -> None:
        sub = self._subs.get(sid)
        if sub is None:
            return  # unsubscribed while the message was on its way
        try:
            sub[1](subject, headers, payload)
        except Exception:
            log.exception("core nats: handler of %s failed", sub[0])

    # -- the API -----------------------------------------------------------------------

    def publish(
        self, subject: str, payload: bytes, headers: Mapping[str, str] | None = None
    ) -> bool:
        """Write one message now; False when it was not sent (disconnected, larger than the
        server's ``max_payload``, or ``max_pending`` bytes already wait for the socket).

        :raises ValueError: a subject with whitespace, or a header with CR or LF (it would
            change the protocol stream)
        """
        write = self._write
        if (
            write is None
            or len(payload) > self.max_payload
            or self._proto is None
            or self._proto.transport is None
            or self._proto.transport.get_write_buffer_size() > self.max_pending
        ):
            self.refused += 1
            return False
        if subject not in self._subjects:
            _check_subject(subject)
            if len(self._subjects) < 65536:
                self._subjects.add(subject)
        if headers:
            lines = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
            if lines.count("\n") != len(headers) or lines.count("\r") != len(headers):
                raise ValueError("a header name or value holds CR or LF")
            block = b"NATS/1.0\r\n" + lines.encode() + b"\r\n"
            write(
                b"HPUB %s %d %d\r\n%s%s\r\n"
                % (subject.encode(), len(block), len(block) + len(payload), block, payload)
            )
        else:
            write(b"PUB %s %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
        return True

    async def subscribe(self, subject: str, handler: MsgHandler, timeout: float = 5.0) -> int:
        """Deliver ``subject`` (wildcards allowed) to ``handler(subject, headers, payload)``,
        called from the socket read; returns once the server confirmed the subscription. Kept
        across reconnects."""
        sid = self.subscribe_nowait(subject, handler)
        if self._write is not None:
            await self.flush(timeout)
        return sid

    def subscribe_nowait(self, subject: str, handler: MsgHandler) -> int:
        """:meth:`subscribe` without waiting for the server's confirmation."""
        _check_subject(subject)
        sid = self._next_sid
        self._next_sid += 1
        self._subs[sid] = (subject, handler)
        if self._write is not None:
            self._write(b"SUB %s %d\r\n" % (subject.encode(), sid))
        return sid

    def unsubscribe(self, sid: int) -> None:
        if self._subs.pop(sid, None) is not None and self._write is not None:
            self._write(b"UNSUB %d\r\n" % sid)

    async def flush(self, timeout: float = 5.0) -> None:
        """Return once the server has read everything written so far (a PING/PONG round trip).

        :raises ConnectionError: not connected, or the connection was lost meanwhile
        :raises TimeoutError: no answer within ``timeout`` s
        """
        if self._write is None:
            raise ConnectionError("core nats connection is down")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(waiter)
        self._write(b"PING\r\n")
        await asyncio.wait_for(waiter, timeout)

    async def close(self) -> None:
        """Stop reconnecting and hang up (what the socket still holds is sent first)."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        proto, self._proto, self._write = self._proto, None, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proto.lost), 2.0)
