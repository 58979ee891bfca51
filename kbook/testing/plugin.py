"""kbook's pytest plugin: the ``kbook_sim``, ``kbook_client`` and ``kbook_replay`` fixtures.

Installed with kbook and registered through the ``pytest11`` entry point (name ``kbook``; turn it
off with ``-p no:kbook``). Importing it costs nothing: the simulator, the client and Hypothesis
are imported by the fixtures, when a test asks for one.

* ``kbook_sim``: a started :class:`~kbook.testing.SimulatorThread` on an ephemeral loopback port,
  seeded (seed 1 unless the ``kbook_sim`` marker says otherwise), its fault menu, fault scripts
  and replays within reach; stopped after the test.
* ``kbook_client``: a :class:`~kbook.testing.BackgroundClient` connected to ``kbook_sim`` (v2);
  closed after the test.
* ``kbook_replay``: :func:`kbook.testing.replay`, to run a capture through the engine.

Both simulator fixtures run on a background thread's event loop, so they serve plain ``def``
tests and ``async def`` tests (pytest-asyncio, anyio) alike: an async test connects its own
``Client(kbook_sim.url_v2)`` in its own loop, and reaches the simulator's objects with
``await kbook_sim.arun(coro)`` or ``kbook_sim.call(fn)``::

    @pytest.mark.kbook_sim(seed=7, rate=50, pairs=["BTC/USD"])
    def test_my_strategy_survives_a_drop(kbook_sim, kbook_client):
        [book] = kbook_client.subscribe_book(["BTC/USD"], depth=10)
        kbook_sim.inject("drop")
        kbook_client.wait_until(lambda: book.valid and book.snapshots >= 2)

What it is not: an event-loop plugin; it neither needs nor replaces pytest-asyncio or anyio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from kbook.testing.simthread import BackgroundClient, SimulatorThread

__all__ = ["SIMULATOR_DEFAULTS", "kbook_client", "kbook_replay", "kbook_sim"]

#: Arguments of the ``kbook_sim`` fixture's simulator; the marker's keyword arguments override
#: them. A short warmup keeps start-up quick, a fixed start time keeps runs byte-identical.
SIMULATOR_DEFAULTS: dict[str, Any] = {
    "seed": 1,
    "rate": 20.0,
    "warmup": 200,
    "start_time": 1_700_000_000.0,
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kbook_sim(**args): Simulator arguments (seed, rate, pairs, warmup, ...) of the "
        "kbook_sim fixture",
    )


@pytest.fixture
def kbook_sim(request: pytest.FixtureRequest) -> Iterator[SimulatorThread]:
    """A started simulator on a background loop, stopped after the test."""
    from kbook.testing.simthread import SimulatorThread

    args = dict(SIMULATOR_DEFAULTS)
    marker = request.node.get_closest_marker("kbook_sim")
    if marker is not None:
        args.update(marker.kwargs)
    with SimulatorThread(**args) as sim:
        yield sim


@pytest.fixture
def kbook_client(kbook_sim: SimulatorThread) -> Iterator[BackgroundClient]:
    """A v2 client connected to ``kbook_sim``, closed after the test."""
    from kbook.testing.simthread import BackgroundClient

    with BackgroundClient(kbook_sim) as client:
        yield client


@pytest.fixture
def kbook_replay() -> Callable[..., Any]:
    """:func:`kbook.testing.replay`: feed a capture (path or frames) to the engine."""
    from kbook.testing.capture import replay

    return replay
