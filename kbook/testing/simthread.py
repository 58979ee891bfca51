"""The simulator and a client on a background event loop, usable from sync and async tests alike.

:class:`SimulatorThread` runs a :class:`~kbook.sim.Simulator` on its own event loop in a daemon
thread, so a plain ``def test_...`` can use it, and so can an ``async def`` test under
pytest-asyncio, anyio or a hand-made ``asyncio.run``: its sockets are real loopback sockets, so a
:class:`~kbook.client.Client` made in the test's own loop connects to :attr:`url_v2` like to
Kraken. Whatever touches the simulator's objects (faults, scripts, replays) goes through
:meth:`SimulatorThread.call` or :meth:`SimulatorThread.run`, which hop onto its loop and wait.

:class:`BackgroundClient` is a :class:`~kbook.client.Client` living on that same loop, for sync
tests: ``subscribe_book`` returns the engine's books, ``events`` collects every client event, and
``wait_until`` waits for a condition evaluated on the loop (never a fixed sleep).

>>> with SimulatorThread(seed=3, rate=50, pairs=["BTC/USD"], warmup=100) as sim:
...     with BackgroundClient(sim) as client:
...         [book] = client.subscribe_book(["BTC/USD"], depth=10)
...         client.wait_until(lambda: book.valid and book.checksums_verified > 2)
...         print(book.symbol, book.valid)
BTC/USD True

What it is not: a way to share one client between loops. The client of a
:class:`BackgroundClient` belongs to the background loop; an async test that wants to ``await``
a client makes its own ``Client(sim.url_v2)``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from types import TracebackType

    from kbook.client import Client, ClientEvent
    from kbook.sim.server import Simulator
    from kbook.testing.books import FrameStream
    from kbook.testing.faults import FaultScript, RunningScript

__all__ = ["BackgroundClient", "SimulatorThread"]

T = TypeVar("T")

#: Seconds any one hop onto the background loop may take before the test fails.
DEFAULT_TIMEOUT = 30.0


class SimulatorThread:
    """A started simulator on a background loop; a context manager that stops it on exit.

    :param simulator_args: keyword arguments of :class:`~kbook.sim.Simulator` (``seed``,
        ``rate``, ``pairs``, ``warmup``, ...); the port is always an ephemeral loopback one
        unless ``host``/``port`` say otherwise.
    """

    def __init__(self, **simulator_args: Any) -> None:
        self.simulator_args = simulator_args
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="kbook-sim", daemon=True)
        self._sim: Simulator | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> SimulatorThread:
        """Start the loop thread and the simulator; return once it listens."""
        self._thread.start()

        async def begin() -> Simulator:
            from kbook.sim import Simulator

            sim = Simulator(**self.simulator_args)
            await sim.start()
            return sim

        self._sim = self.run(begin())
        return self

    def stop(self) -> None:
        """Stop the simulator (and every client of :meth:`run`'s loop), then the thread."""
        if not self._thread.is_alive():
            return
        try:
            if self._sim is not None:
                self.run(self._sim.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(DEFAULT_TIMEOUT)
            if not self._thread.is_alive():
                self.loop.close()

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # cancel what is left (a client's tasks), so the loop closes cleanly
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    # -- reaching the loop -----------------------------------------------------------------------

    @property
    def sim(self) -> Simulator:
        """The simulator; touch its objects only through :meth:`call` and :meth:`run`."""
        if self._sim is None:
            raise RuntimeError("the simulator is not started")
        return self._sim

    @property
    def url_v2(self) -> str:
        """The v2 WebSocket URL (``ws://127.0.0.1:PORT/v2``)."""
        return self.sim.url_v2

    @property
    def url_v1(self) -> str:
        """The v1 WebSocket URL (``ws://127.0.0.1:PORT/``)."""
        return self.sim.url_v1

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = DEFAULT_TIMEOUT) -> T:
        """Run a coroutine on the simulator's loop and wait for its result (from another thread).

        :raises TimeoutError: if it takes longer than ``timeout`` seconds (it is cancelled).
        """
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the simulator's loop, awaited from another (asyncio) loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call a plain function on the simulator's loop and return its result."""

        async def hop() -> T:
            return fn(*args, **kwargs)

        return self.run(hop())

    # -- conveniences ----------------------------------------------------------------------------

    def inject(self, fault: str, conn: int | None = None, **args: Any) -> None:
        """Inject one fault of :data:`kbook.sim.FAULTS` now (see ``sim.faults.inject``)."""
        self.call(self.sim.faults.inject, fault, conn, **args)

    def start_script(self, script: FaultScript) -> RunningScript:
        """Start a :class:`~kbook.testing.FaultScript` on the simulator."""
        return self.call(script.start, self.sim)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every connection has read its requests and flushed what it was sent."""
        self.run(self.sim.settle(timeout), timeout + 1.0)

    def fault_log(self) -> list[Any]:
        """A copy of the simulator's fault log (``(time, fault, target, details)`` records)."""
        return self.call(list, self.sim.fault_log)

    def replay(
        self, stream: FrameStream, repeat: int = 1, frames: Sequence[bytes] | None = None
    ) -> None:
        """Serve a generated ``book`` stream to every later subscription of its book.

        The stream's pair must be one the simulator serves (the presets of
        :data:`kbook.testing.PRESET_PAIRS` are), at the stream's depth. The subscriber gets
        the simulator's own ack, then the stream's book frames (the preamble left out), or
        ``frames`` instead (a damaged copy: ``Corrupted.frames`` past the preamble).
        """
        from kbook.sim.server import PregeneratedStream

        if stream.channel != "book":
            raise ValueError("replay serves book streams")
        served = list(stream.book_frames() if frames is None else frames)
        pregenerated = PregeneratedStream(
            stream.pair.symbol, "book", stream.depth, stream.protocol, 336, [], served, 0
        )
        self.call(self.sim.replay, pregenerated, repeat)


class BackgroundClient:
    """A :class:`~kbook.client.Client` connected to a :class:`SimulatorThread`, on its loop.

    :param sim: the running simulator thread.
    :param protocol: ``"v2"`` or ``"v1"``.
    :param client_args: more keyword arguments of :class:`~kbook.client.Client`.
    """

    def __init__(self, sim: SimulatorThread, protocol: str = "v2", **client_args: Any) -> None:
        self.thread = sim
        self.protocol = protocol
        self.client_args = client_args
        #: Every :class:`~kbook.client.ClientEvent`, in order.
        self.events: list[ClientEvent] = []
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        """The client; call its coroutines through :meth:`run`."""
        if self._client is None:
            raise RuntimeError("the client is not started")
        return self._client

    def start(self) -> BackgroundClient:
        """Connect the client."""

        async def begin() -> Client:
            from kbook.client import Client

            url = self.thread.url_v2 if self.protocol == "v2" else self.thread.url_v1
            client = Client(
                url,
                protocol=self.protocol,  # type: ignore[arg-type]
                on_event=self.events.append,
                **self.client_args,
            )
            await client.start()
            return client

        self._client = self.thread.run(begin())
        return self

    def close(self) -> None:
        """Close the client (its connections and tasks)."""
        if self._client is not None:
            client, self._client = self._client, None
            self.thread.run(client.close())

    def __enter__(self) -> BackgroundClient:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = DEFAULT_TIMEOUT) -> T:
        """Run a coroutine (``client.subscribe(...)``, ...) on the client's loop; wait for it."""
        return self.thread.run(coro, timeout)

    def subscribe_book(self, symbols: Sequence[str], depth: int = 10, **args: Any) -> list[Any]:
        """Subscribe to books and return them (``L2Book`` objects of the engine)."""
        books: list[Any] = self.run(self.client.subscribe_book(list(symbols), depth=depth, **args))
        return books

    def wait_until(
        self, predicate: Callable[[], bool], timeout: float = 10.0, poll: float = 0.005
    ) -> None:
        """Wait until ``predicate()`` holds, evaluating it on the client's loop.

        :raises TimeoutError: if it does not hold within ``timeout`` seconds.
        """

        async def wait() -> None:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await asyncio.sleep(poll)

        self.run(wait(), timeout + 1.0)

    def events_of(self, kind: str) -> list[ClientEvent]:
        """The events of one kind so far (``checksum_mismatch``, ``resync_done``, ...)."""
        return [event for event in list(self.events) if event.kind == kind]
