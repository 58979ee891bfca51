"""What the integration tests share: a minimal picows WebSocket client for the simulator, bounded
waits, a book callback that checks what strategies rely on, and event helpers.

:class:`SimClient` records every text frame with its arrival time and answers the server's
CLOSE; every wait has a timeout, so a test can never hang on the network.

What it is not: kbook's client. :class:`SimClient` does no reconnection, no book keeping and no
parsing beyond what a test asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect


class SimClient(WSListener):
    """Collects frames; ``frames[i]`` arrived at ``times[i]`` (monotonic seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] = []
        self.times: list[float] = []
        self.transport: WSTransport | None = None
        self.close_code: int | None = None
        self.disconnected = asyncio.Event()
        self._arrived = asyncio.Event()

    # -- picows callbacks ------------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self.close_code = int(frame.get_close_code())
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        self.frames.append(frame.get_payload_as_bytes())
        self.times.append(time.monotonic())
        self._arrived.set()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected.set()
        self._arrived.set()

    # -- helpers ---------------------------------------------------------------------------------

    @classmethod
    async def connect(cls, url: str, receive_buffer: int | None = None) -> SimClient:
        """Connect; ``receive_buffer`` sets a small ``SO_RCVBUF`` (back-pressure tests)."""

        def small_socket(_: Any) -> socket.socket | None:
            if receive_buffer is None:
                return None
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            return sock

        _, client = await ws_connect(cls, url, socket_factory=small_socket)
        assert isinstance(client, SimClient)
        return client

    def send(self, request: dict[str, Any] | bytes) -> None:
        assert self.transport is not None
        data = request if isinstance(request, bytes) else json.dumps(request).encode()
        self.transport.send(WSMsgType.TEXT, data)

    def decoded(self, start: int = 0) -> list[Any]:
        return [json.loads(f) for f in self.frames[start:]]

    async def wait_for(
        self,
        predicate: Callable[[list[bytes]], bool],
        timeout: float = 5.0,
        what: str = "condition",
    ) -> None:
        """Wait until ``predicate(frames)`` holds; fail the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.frames):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.disconnected.is_set() and not predicate(self.frames):
                raise AssertionError(
                    f"timed out waiting for {what}; got {len(self.frames)} "
                    f"frames, last {self.frames[-3:]!r}"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.2))

    async def wait_count(self, n: int, timeout: float = 5.0) -> None:
        await self.wait_for(lambda frames: len(frames) >= n, timeout, f"{n} frames")

    async def wait_match(self, needle: bytes, timeout: float = 5.0, start: int = 0) -> int:
        """Wait for a frame containing ``needle`` (at index >= start); return its index."""
        found: list[int] = []

        def seen(frames: list[bytes]) -> bool:
            for i in range(start, len(frames)):
                if needle in frames[i]:
                    found.append(i)
                    return True
            return False

        await self.wait_for(seen, timeout, repr(needle))
        return found[0]

    async def close(self) -> None:
        if self.transport is not None and not self.disconnected.is_set():
            self.transport.send_close()
            self.transport.disconnect()
            try:
                await asyncio.wait_for(self.disconnected.wait(), 2.0)
            except TimeoutError:
                self.transport.disconnect(graceful=False)


#: A fixed simulated start (2023-11-14T22:13:20Z) so runs are reproducible.
T0 = 1_700_000_000.0


def run(coro: Any, timeout: float = 30.0) -> Any:
    """Run a test scenario on a fresh event loop, failing it after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    """Poll ``predicate()`` until it holds; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def feed_frames(feed: Any, frames: list[bytes]) -> tuple[int, list[str]]:
    """Push frames through a ``kbook.Feed``; return (checksum mismatches, other errors)."""
    from kbook import ChecksumMismatch

    mismatches, errors = 0, []
    for frame in frames:
        try:
            feed.process(frame)
        except ChecksumMismatch:
            mismatches += 1
        except Exception as exc:  # any other engine error is a test failure, with context
            errors.append(f"{type(exc).__name__}: {exc} in {frame[:160]!r}")
    return mismatches, errors


class BookChecker:
    """A book callback that records every violation of what a strategy relies on: an invalid
    book handed to a callback, a cached checksum that differs from a rebuild, a crossed book."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.bad: list[str] = []

    def __call__(self, book: Any) -> None:
        self.calls[book.symbol] += 1
        if not book.valid:
            self.bad.append(f"{book.symbol}: invalid book passed to the callback")
        if book.checksum() != book._checksum_full():
            self.bad.append(f"{book.symbol}: cached checksum differs from a rebuild")
        best_bid, best_ask = book.best_bid(), book.best_ask()
        if best_bid is not None and best_ask is not None and best_bid[0] >= best_ask[0]:
            self.bad.append(f"{book.symbol}: crossed")


def kinds(client: Any, symbol: str | None = None) -> list[str]:
    """The kinds of the events a client (or bus client) has seen, optionally of one symbol."""
    return [e.kind for e in client.events_seen if symbol is None or e.symbol == symbol]


def events(client: Any, kind: str) -> list[Any]:
    """The events of one kind a client has seen."""
    return [e for e in client.events_seen if e.kind == kind]


def free_port() -> int:
    """A loopback port nobody listens on (free when asked; tests bind it soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
