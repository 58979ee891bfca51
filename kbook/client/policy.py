"""How often the client may try: reconnect backoff, the per-IP connection budget, and the
request pacer.

Each takes its time source (and its wait) as arguments, so that tests can drive them with a
fake clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["ConnectionBudget", "Pacer", "ReconnectPolicy"]


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
    max_attempts: int = 140  # below Kraken's ~150 connection attempts ...
    window: float = 600.0  # ... per rolling 10 minutes per IP
    give_up_after: int | None = None  # consecutive failed attempts; None: never give up
    #: a first connection not made within this many seconds fails with ConnectFailed
    #: (None: keep trying); reconnects after a successful connect follow the policy above
    first_connect_timeout: float | None = 10.0

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

    def __init__(
        self,
        max_attempts: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.max_attempts = max_attempts
        self.window = window
        self._clock = clock
        self._sleep = sleep
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
            await self._sleep(delay)
        self._attempts.append(self._clock())

    @property
    def attempts_in_window(self) -> int:
        self.wait_time()
        return len(self._attempts)


_EPSILON = 1e-9


class Pacer:
    """A token bucket for outgoing requests (Kraken's message rate limit is load dependent):
    ``burst`` requests at once, then ``rate`` per second; :meth:`back_off` pauses it.

    ``clock`` and ``sleep`` are the time source and the wait (tests pass fake ones).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._last = clock()
        self.penalty_until = 0.0

    async def acquire(self) -> None:
        """Wait until a request may be sent, and take its token."""
        while True:
            now = self._clock()
            if now < self.penalty_until:
                await self._sleep(self.penalty_until - now)
                continue
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            # A wait of (1 - tokens) / rate refills to 1 only up to rounding: a token short by
            # less than _EPSILON counts as whole (otherwise the loop would sleep 0 forever).
            if self._tokens >= 1.0 - _EPSILON:
                self._tokens = max(0.0, self._tokens - 1.0)
                return
            await self._sleep((1.0 - self._tokens) / self.rate)

    def back_off(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the venue said the message rate was exceeded)."""
        self.penalty_until = max(self.penalty_until, self._clock() + seconds)
