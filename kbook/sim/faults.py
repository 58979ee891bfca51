"""Faults on demand: the menu, its targets, and the timestamped log tests assert against.

Every fault can hit one connection (by object or id) or every current connection (``conn=None``),
and message faults can be narrowed to a symbol and a channel. Faults that act at once (close,
drop, status change, malformed frame, snapshot, stall) are logged when injected; faults armed for
the next matching message (corrupt checksum, skip, duplicate) and for the next requests (rate
limit) are logged when they fire, once per connection and message, with what was actually sent.
A :class:`FaultRecord` is a plain tuple ``(time, fault, target, details)``: ``time`` is
:func:`time.monotonic`, ``target`` the connection id (None for the whole venue).

=====================  ==================================================================
fault                  effect
=====================  ==================================================================
``close``              WebSocket CLOSE (default 1001 "going away"), then disconnect
``drop``               abort the TCP connection without a CLOSE frame
``silence``            send nothing at all, heartbeats included, for N s or until resumed
``resume``             end a silence early
``corrupt_checksum``   the next book/level3 message carries a wrong checksum
``skip``               the next matching channel message is not sent
``duplicate``          the next matching channel message is sent twice
``rate_limit``         the next N requests are refused with ``Exceeded msg rate`` (v2's
                       request-level error, or v1's bare ``{"Error": ...}`` with ``bare``)
``lose_answers``       the next N subscribe/unsubscribe answers are not sent
``bad_entry``          the next book update of a symbol is sent inside a two-entry frame
                       whose second entry (that update) is malformed
``status``             system status maintenance / cancel_only / post_only / online
``malformed``          send a frame that is not valid JSON (a truncated book update, a
                       truncated ticker, binary garbage or whitespace)
``snapshot``           send a fresh snapshot of book/level3 subscriptions mid-stream
``stall_reads``        stop reading the client's socket for N s (a slow exchange)
``refuse_upgrades``    answer the next N WebSocket upgrades (None: all) with an HTTP status,
                       an HTML page as a CDN sends one, and optional headers
                       (``Retry-After`` among them)
``close_tls``          hang up on the next N TLS handshakes with a handshake-failure alert
                       (a TLS simulator only)
=====================  ==================================================================

A global ``status`` change also switches the market (no matching in maintenance, cancels only in
cancel_only, no marketable orders in post_only); a per-connection one only tells that client.

What it is not: a chaos monkey. Nothing here happens by chance; every fault is asked for, by a
test, by the CLI's ``--fault`` schedule, or by a user at the Python prompt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from kbook.sim.market import STATUSES

__all__ = ["FAULTS", "Armed", "FaultRecord", "FaultTarget", "Faults", "Refusal", "parse_fault_spec"]

#: Every fault name, as :meth:`Faults.inject` and the CLI accept them.
FAULTS: tuple[str, ...] = (
    "close",
    "drop",
    "silence",
    "resume",
    "corrupt_checksum",
    "skip",
    "duplicate",
    "rate_limit",
    "lose_answers",
    "bad_entry",
    "status",
    "malformed",
    "snapshot",
    "stall_reads",
    "refuse_upgrades",
    "close_tls",
)
_MESSAGE_FAULTS = ("corrupt_checksum", "skip", "duplicate", "bad_entry")
# RFC 6455 codes an endpoint may put in a CLOSE frame (1005 and 1006 are never sent).
_CLOSE_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
_MALFORMED = {
    "book": b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":',
    "ticker": b'{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":4',
    "garbage": b"\x00\x7fnot json at all\xff",
    "whitespace": b"   \n ",
}


#: The page a refused upgrade carries unless told otherwise: what a CDN's block page looks like.
REFUSAL_PAGE = (
    b"<!DOCTYPE html><html><head><title>Access denied</title></head><body>"
    b"<h1>Error %d</h1><p>The request was refused by the simulator's edge.</p>"
    b"</body></html>\n"
)


class Refusal(NamedTuple):
    """How one WebSocket upgrade is refused: ``status``, ``headers``, ``body``."""

    status: int
    headers: dict[str, str]
    body: bytes


class FaultRecord(NamedTuple):
    """One logged fault: monotonic time, fault name, connection id (None: venue), details."""

    time: float
    fault: str
    target: int | None
    details: dict[str, Any]


@dataclass(slots=True)
class Armed:
    """A message fault waiting for its next matching message on one connection."""

    kind: str
    remaining: int
    symbol: str | None = None
    channel: str | None = None
    other: str | None = None  # bad_entry: the symbol of the (harmless) first entry

    def matches(self, symbol: str | None, channel: str) -> bool:
        if self.symbol is not None and symbol != self.symbol:
            return False
        if self.kind in ("corrupt_checksum", "bad_entry"):
            # Only messages that carry a checksum can have it corrupted.
            return channel in ("book", "level3") and self.channel in (None, channel)
        return self.channel in (None, channel)


class FaultTarget(Protocol):
    """What a connection offers to the fault menu (see :class:`kbook.sim.server.SimConnection`)."""

    id: int

    def fault_close(self, code: int, reason: str) -> None: ...
    def fault_drop(self) -> None: ...
    def fault_silence(self, seconds: float | None) -> None: ...
    def fault_resume(self) -> None: ...
    def fault_arm(self, armed: Armed) -> None: ...
    def fault_refuse(self, count: int, bare: bool = False) -> None: ...
    def fault_lose_answers(self, count: int) -> None: ...
    def fault_status(self, status: str) -> None: ...
    def fault_raw(self, data: bytes) -> None: ...
    def fault_snapshot(self, symbol: str | None, channel: str | None) -> int: ...
    def fault_stall(self, seconds: float) -> None: ...


class Faults:
    """The fault menu of one simulator; ``sim.faults``.

    :param connections: returns the current connections.
    :param set_status: switches the venue's engine state (and tells every connection).
    :param log: the list records are appended to (``sim.fault_log``).
    """

    def __init__(
        self,
        connections: Callable[[], Sequence[FaultTarget]],
        set_status: Callable[[str], None],
        log: list[FaultRecord],
    ) -> None:
        self._connections = connections
        self._set_status = set_status
        self.log = log
        #: Called with every new record (the CLI prints them).
        self.listeners: list[Callable[[FaultRecord], None]] = []
        self._timers: list[asyncio.TimerHandle] = []
        #: (the refusal, upgrades left or None) while upgrades are refused
        self.upgrade_refusal: tuple[Refusal, int | None] | None = None
        #: TLS handshakes left to hang up on (``close_tls``)
        self.tls_closes = 0
        #: answers the next connection to open will lose (``lose_answers(next_connection=)``)
        self.lost_answers_next = 0

    # -- plumbing -------------------------------------------------------------------------------

    def record(self, fault: str, target: int | None, **details: Any) -> FaultRecord:
        """Append a record to the log (connections call this when an armed fault fires)."""
        entry = FaultRecord(time.monotonic(), fault, target, details)
        self.log.append(entry)
        for listener in self.listeners:
            listener(entry)
        return entry

    def _targets(self, conn: FaultTarget | int | None) -> list[FaultTarget]:
        current = list(self._connections())
        if conn is None:
            return current
        wanted = conn if isinstance(conn, int) else conn.id
        found = [c for c in current if c.id == wanted]
        if not found:
            raise LookupError(f"no open connection with id {wanted}")
        return found

    # -- the menu -------------------------------------------------------------------------------

    def close(
        self, conn: FaultTarget | int | None = None, code: int = 1001, reason: str = "going away"
    ) -> None:
        """Send CLOSE with ``code`` (a registered code a server may send) and disconnect."""
        if code not in _CLOSE_CODES:
            raise ValueError(f"close code must be one of {_CLOSE_CODES}, got {code}")
        for target in self._targets(conn):
            self.record("close", target.id, code=code, reason=reason)
            target.fault_close(code, reason)

    def drop(self, conn: FaultTarget | int | None = None) -> None:
        """Abort the TCP connection without a CLOSE frame."""
        for target in self._targets(conn):
            self.record("drop", target.id)
            target.fault_drop()

    def silence(self, conn: FaultTarget | int | None = None, seconds: float | None = None) -> None:
        """Send nothing (no data, no heartbeats, no answers) for ``seconds`` or until resumed."""
        for target in self._targets(conn):
            self.record("silence", target.id, seconds=seconds)
            target.fault_silence(seconds)

    def resume(self, conn: FaultTarget | int | None = None) -> None:
        """End a silence."""
        for target in self._targets(conn):
            self.record("resume", target.id)
            target.fault_resume()

    def _arm(
        self,
        kind: str,
        conn: FaultTarget | int | None,
        symbol: str | None,
        channel: str | None,
        count: int,
    ) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        targets = self._targets(conn)
        if not targets:
            # Armed on nobody would silently never fire; a script deserves to hear about it.
            raise LookupError(f"{kind}: no open connection to arm")
        for target in targets:
            target.fault_arm(Armed(kind, count, symbol, channel))

    def corrupt_checksum(
        self,
        conn: FaultTarget | int | None = None,
        symbol: str | None = None,
        channel: str | None = None,
        count: int = 1,
    ) -> None:
        """Give the next ``count`` book/level3 messages a wrong checksum (logged when sent)."""
        self._arm("corrupt_checksum", conn, symbol, channel, count)

    def skip(
        self,
        conn: FaultTarget | int | None = None,
        symbol: str | None = None,
        channel: str | None = None,
        count: int = 1,
    ) -> None:
        """Do not send the next ``count`` matching channel messages (logged when skipped)."""
        self._arm("skip", conn, symbol, channel, count)

    def duplicate(
        self,
        conn: FaultTarget | int | None = None,
        symbol: str | None = None,
        channel: str | None = None,
        count: int = 1,
    ) -> None:
        """Send the next ``count`` matching channel messages twice (logged when sent)."""
        self._arm("duplicate", conn, symbol, channel, count)

    def rate_limit(
        self, conn: FaultTarget | int | None = None, count: int = 1, bare: bool = False
    ) -> None:
        """Refuse the next ``count`` requests with ``Exceeded msg rate`` (logged when refused).

        The refusal names the request but no symbol (Kraken's request-level error); with
        ``bare`` it is v1's ``{"Error": "Exceeded msg rate"}``, which names nothing at all.
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        for target in self._targets(conn):
            target.fault_refuse(count, bare)

    def lose_answers(
        self, conn: FaultTarget | int | None = None, count: int = 1, next_connection: bool = False
    ) -> None:
        """Do not send the next ``count`` subscribe/unsubscribe answers (logged when lost).

        The request itself is carried out: a subscription goes live without its ack, as when
        an answer is lost on the way. With ``next_connection`` the answers lost are the first
        ones of the next connection to open (a reconnect's restore). Use
        ``skip(channel="instrument")`` to lose an ``instrument`` snapshot.
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if next_connection:
            self.lost_answers_next += count
            return
        for target in self._targets(conn):
            target.fault_lose_answers(count)

    def bad_entry(
        self,
        conn: FaultTarget | int | None = None,
        symbol: str | None = None,
        other: str = "BTC/USD",
        count: int = 1,
    ) -> None:
        """Send the next v2 book update of ``symbol`` as the second entry of a frame whose first
        entry is an empty update of ``other``, with the update's first level made malformed:
        the client must refuse the whole frame and resync both books (logged when sent)."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        targets = self._targets(conn)
        if not targets:
            raise LookupError("bad_entry: no open connection to arm")
        for target in targets:
            target.fault_arm(Armed("bad_entry", count, symbol, "book", other))

    def status(self, status: str, conn: FaultTarget | int | None = None) -> None:
        """Switch the system status for everyone (and the market), or tell one connection."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        if conn is None:
            self.record("status", None, status=status)
            self._set_status(status)
            return
        for target in self._targets(conn):
            self.record("status", target.id, status=status)
            target.fault_status(status)

    def malformed(self, conn: FaultTarget | int | None = None, kind: str = "book") -> None:
        """Send one frame that is not valid JSON: ``kind`` is ``book`` (a truncated book
        update), ``ticker`` (a truncated ticker), ``garbage`` or ``whitespace``."""
        if kind not in _MALFORMED:
            raise ValueError(f"kind must be one of {', '.join(_MALFORMED)}, got {kind!r}")
        frame = _MALFORMED[kind]
        for target in self._targets(conn):
            self.record("malformed", target.id, kind=kind, frame=frame.decode("utf-8", "replace"))
            target.fault_raw(frame)

    def snapshot(
        self,
        conn: FaultTarget | int | None = None,
        symbol: str | None = None,
        channel: str | None = None,
    ) -> None:
        """Send a fresh snapshot of each matching book/level3 subscription now."""
        for target in self._targets(conn):
            sent = target.fault_snapshot(symbol, channel)
            self.record("snapshot", target.id, symbol=symbol, channel=channel, sent=sent)

    def stall_reads(self, conn: FaultTarget | int | None = None, seconds: float = 1.0) -> None:
        """Stop reading the client's socket for ``seconds``; its requests wait unanswered."""
        if seconds <= 0:
            raise ValueError("seconds must be > 0")
        for target in self._targets(conn):
            self.record("stall_reads", target.id, seconds=seconds)
            target.fault_stall(seconds)

    def refuse_upgrades(
        self,
        status: int = 503,
        count: int | None = None,
        *,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> None:
        """Answer the next ``count`` WebSocket upgrades (None: every one until
        :meth:`accept_upgrades`) with HTTP ``status`` instead of switching protocols.

        :param retry_after: seconds sent as ``Retry-After``
        :param headers: more headers of the answer
        :param body: the answer's body; default an HTML page naming the status
        """
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status, got {status}")
        if count is not None and count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        answer = {"Content-Type": "text/html; charset=UTF-8", **(headers or {})}
        if retry_after is not None:
            answer["Retry-After"] = f"{retry_after:g}"
        page = REFUSAL_PAGE % status if body is None else body
        self.record("refuse_upgrades", None, status=status, count=count, retry_after=retry_after)
        self.upgrade_refusal = (Refusal(status, answer, page), count)

    def accept_upgrades(self) -> None:
        """End :meth:`refuse_upgrades`."""
        self.record("accept_upgrades", None)
        self.upgrade_refusal = None

    def take_upgrade_refusal(self) -> Refusal | None:
        """How to refuse the upgrade being served, or None (the server asks)."""
        if self.upgrade_refusal is None:
            return None
        refusal, count = self.upgrade_refusal
        if count is not None:
            self.upgrade_refusal = None if count <= 1 else (refusal, count - 1)
        return refusal

    def close_tls(self, count: int = 1) -> None:
        """Hang up on the next ``count`` TLS handshakes (an alert instead of the server's
        hello); only a simulator serving TLS has handshakes to hang up on."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.record("close_tls", None, count=count)
        self.tls_closes += count

    def take_tls_close(self) -> bool:
        """Whether to hang up on the TLS handshake being served (the server asks)."""
        if self.tls_closes <= 0:
            return False
        self.tls_closes -= 1
        return True

    # -- by name --------------------------------------------------------------------------------

    def inject(self, name: str, conn: FaultTarget | int | None = None, **kwargs: Any) -> None:
        """Inject fault ``name`` (one of :data:`FAULTS`) with its keyword arguments.

        :raises ValueError: for an unknown fault.
        """
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; faults are {', '.join(FAULTS)}")
        method: Callable[..., None] = getattr(self, name)
        if name == "status":
            method(kwargs.pop("status", "maintenance"), conn=conn, **kwargs)
        elif name in ("refuse_upgrades", "close_tls"):
            method(**kwargs)  # the whole venue: no connection to target
        else:
            method(conn=conn, **kwargs)

    def schedule(
        self, delay: float, name: str, conn: FaultTarget | int | None = None, **kwargs: Any
    ) -> None:
        """Inject ``name`` after ``delay`` seconds (on the running loop); errors are logged."""
        loop = asyncio.get_running_loop()

        def fire() -> None:
            try:
                self.inject(name, conn, **kwargs)
            except (LookupError, ValueError) as exc:
                self.record("error", None, name=name, error=str(exc))

        self._timers.append(loop.call_later(delay, fire))

    def cancel_scheduled(self) -> None:
        """Forget every scheduled fault that has not fired (the simulator does this on exit)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()


def parse_fault_spec(text: str) -> tuple[float, str, int | None, dict[str, Any]]:
    """Parse a CLI fault ``SECONDS:NAME[=VALUE][@CONN][/SYMBOL]``.

    ``VALUE`` is the status for ``status``, seconds for ``silence`` and ``stall_reads``, and a
    count for the message faults and ``rate_limit``; ``@CONN`` targets one connection id;
    ``/SYMBOL`` narrows a message fault or snapshot to a pair.

    >>> parse_fault_spec("30:corrupt_checksum")
    (30.0, 'corrupt_checksum', None, {})
    >>> parse_fault_spec("45.5:status=maintenance")
    (45.5, 'status', None, {'status': 'maintenance'})
    >>> parse_fault_spec("60:skip=3@2/ETH/USD")
    (60.0, 'skip', 2, {'count': 3, 'symbol': 'ETH/USD'})
    """
    when, colon, rest = text.partition(":")
    if not colon or not rest:
        raise ValueError(f"expected SECONDS:NAME, got {text!r}")
    try:
        delay = float(when)
    except ValueError:
        raise ValueError(f"bad time in fault {text!r}") from None
    if delay < 0:
        raise ValueError(f"negative time in fault {text!r}")
    rest, slash, symbol = rest.partition("/")
    rest, at, conn_text = rest.partition("@")
    name, eq, value = rest.partition("=")
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; faults are {', '.join(FAULTS)}")
    kwargs: dict[str, Any] = {}
    try:
        if eq:
            if name == "status":
                kwargs["status"] = value
            elif name in ("silence", "stall_reads"):
                kwargs["seconds"] = float(value)
            elif name in _MESSAGE_FAULTS or name in ("rate_limit", "lose_answers", "close_tls"):
                kwargs["count"] = int(value)
            elif name == "refuse_upgrades":
                kwargs["status"] = int(value)
            elif name == "close":
                kwargs["code"] = int(value)
            else:
                raise ValueError(f"fault {name} takes no value")
        conn = int(conn_text) if at else None
    except ValueError as exc:
        raise ValueError(f"bad fault {text!r}: {exc}") from None
    if slash:
        if name not in (*_MESSAGE_FAULTS, "snapshot"):
            raise ValueError(f"fault {name} takes no symbol")
        kwargs["symbol"] = symbol or None
    return delay, name, conn, kwargs
