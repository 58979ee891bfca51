"""What the client tells its user: events, the queues behind the async iterators, and
rate-limited log lines."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kbook.errors import QueueOverflow

__all__ = ["ClientEvent", "EventQueue", "Throttle"]


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """Something the client did or saw, for logs, dashboards and tests.

    ``kind`` is one of: ``connecting``, ``connected``, ``connect_failed`` (one failed attempt),
    ``gave_up`` (the connection stopped for good: detail the :class:`ConnectFailed`),
    ``disconnected``, ``books_stale`` (detail ``{"symbols": [...], "reason": str}``: the books
    of a lost connection are invalid until their next snapshot), ``idle_timeout``, ``status``
    (detail: the system state), ``checksum_mismatch``, ``integrity_error``, ``decode_error``,
    ``resync_started``, ``resync_done``, ``resync_failed``, ``stale_subscription``,
    ``rate_limited``, ``subscription_retry`` (detail ``{"symbols", "cause", "delay"}``),
    ``subscription_error``, ``callback_error``, ``messages_dropped`` (detail ``{"channel",
    "dropped", "total"}``), ``sequence_gap``, ``dead_man_switch``, ``closed``.
    """

    kind: str
    connection: str
    symbol: str | None = None
    detail: Any = None
    time: float = field(default_factory=time.monotonic)


class Throttle:
    """At most one log line per ``period`` seconds for one kind of failure; counts the rest."""

    __slots__ = ("clock", "last", "period", "suppressed")

    def __init__(self, period: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self.clock = clock
        self.last = -1e18
        self.suppressed = 0

    def ready(self) -> int | None:
        """None to stay quiet; else how many lines were held back since the last one."""
        now = self.clock()
        if now - self.last < self.period:
            self.suppressed += 1
            return None
        held, self.suppressed, self.last = self.suppressed, 0, now
        return held


_T = TypeVar("_T")


class EventQueue(Generic[_T]):
    """A bounded queue for one consumer (behind :meth:`Client.messages`, :meth:`Client.events`
    and the bus consumer's) that never blocks the producer and never drops in silence:
    ``on_drop(queue, count)`` hears of every overflow (at most once a second, with the count
    since the last report), and ``overflow="error"`` makes the consumer raise."""

    def __init__(
        self, maxsize: int, overflow: str, on_drop: Callable[[EventQueue[_T], int], Any] | None
    ) -> None:
        self.maxsize = maxsize
        self.overflow = overflow
        self.on_drop = on_drop
        self.dropped = 0
        self._unreported = 0
        self._reported_at = -1e18
        self._items: deque[_T] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    def put(self, item: _T) -> None:
        if self.maxsize and len(self._items) >= self.maxsize:
            self.dropped += 1
            self._unreported += 1
            if self.overflow == "drop_oldest":
                self._items.popleft()
                self._items.append(item)
            elif self.overflow == "error" and self._error is None:
                self._error = QueueOverflow(self.dropped)
            now = time.monotonic()
            if self.on_drop is not None and now - self._reported_at >= 1.0:
                self._reported_at = now
                count, self._unreported = self._unreported, 0
                self.on_drop(self, count)
        else:
            self._items.append(item)
        self._wake()

    def close(self, error: BaseException) -> None:
        """Wake the consumer to raise ``error`` once the queue is empty."""
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> _T:
        while True:
            if isinstance(self._error, QueueOverflow):
                error, self._error = self._error, None
                error.dropped = self.dropped
                raise error
            if self._items:
                return self._items.popleft()
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
