"""Fixtures of the benchmark suite: seeded frame streams, generated once per session.

L2 streams (``stream``, ``deep_stream``) and level3 streams (``l3_stream``, ``deep_l3_stream``)
are separate session fixtures, so a run that selects only one suite generates only its streams.
A measuring run (``pytest benchmarks``) uses ``workloads.FULL_UPDATES`` update frames per stream;
a smoke run (``pytest benchmarks --benchmark-disable``, as CI does) uses ``SMOKE_UPDATES`` so it
stays well under a minute while every correctness assertion still runs. ``KBOOK_BENCH_UPDATES``
overrides either. Generated frames are cached under ``benchmarks/.cache/`` (gitignored), keyed by
every generation parameter and a digest of the generator's source.

What it is not: plain ``pytest`` never loads this file (``testpaths = ["tests"]``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

# pytest's default import mode puts this directory (it has no __init__.py) on sys.path
import workloads
from workloads import L3_DEPTHS, STREAMS, L3Stream, Stream

_NOTES: list[str] = []


def is_smoke(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_disable", default=False))


def update_count(config: pytest.Config) -> int:
    override = os.environ.get("KBOOK_BENCH_UPDATES")
    if override:
        return int(override)
    return workloads.SMOKE_UPDATES if is_smoke(config) else workloads.FULL_UPDATES


@pytest.fixture(scope="session")
def smoke(pytestconfig: pytest.Config) -> bool:
    """True in a ``--benchmark-disable`` run: small workloads, same assertions."""
    return is_smoke(pytestconfig)


@pytest.fixture(scope="session")
def all_streams(pytestconfig: pytest.Config) -> dict[tuple[str, int], Stream]:
    n = update_count(pytestconfig)
    t0 = time.perf_counter()
    streams = {key: workloads.load_stream(*key, updates=n) for key in STREAMS}
    generated = sum(s.generated_in for s in streams.values())
    _NOTES.append(
        f"streams: {len(streams)} x {n} updates ready in {time.perf_counter() - t0:.1f} s "
        f"({generated:.1f} s generating, the rest from benchmarks/.cache)"
    )
    return streams


@pytest.fixture(scope="session", params=STREAMS, ids=[f"{p}-depth{d}" for p, d in STREAMS])
def stream(request: pytest.FixtureRequest, all_streams: dict[tuple[str, int], Stream]) -> Stream:
    """Each benchmarked stream in turn."""
    return all_streams[request.param]


@pytest.fixture(scope="session")
def deep_stream(all_streams: dict[tuple[str, int], Stream]) -> Stream:
    """The v2 depth-1000 stream (memory and checksum benchmarks)."""
    return all_streams[("v2", 1000)]


@pytest.fixture(scope="session")
def all_l3_streams(pytestconfig: pytest.Config) -> dict[int, L3Stream]:
    n = update_count(pytestconfig)
    t0 = time.perf_counter()
    streams = {depth: workloads.load_l3_stream(depth, updates=n) for depth in L3_DEPTHS}
    generated = sum(s.generated_in for s in streams.values())
    _NOTES.append(
        f"level3 streams: {len(streams)} x {n} updates ready in {time.perf_counter() - t0:.1f} s "
        f"({generated:.1f} s generating, the rest from benchmarks/.cache)"
    )
    return streams


@pytest.fixture(scope="session", params=L3_DEPTHS, ids=[f"l3-depth{d}" for d in L3_DEPTHS])
def l3_stream(request: pytest.FixtureRequest, all_l3_streams: dict[int, L3Stream]) -> L3Stream:
    """Each benchmarked level3 stream in turn."""
    return all_l3_streams[request.param]


@pytest.fixture(scope="session")
def deep_l3_stream(all_l3_streams: dict[int, L3Stream]) -> L3Stream:
    """The level3 depth-1000 stream (memory benchmarks)."""
    return all_l3_streams[1000]


@pytest.fixture(scope="session")
def note() -> Callable[[str], None]:
    """Append a line to the summary printed at the end of the run."""
    return _NOTES.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _NOTES:
        terminalreporter.section("kbook benchmark notes")
        for line in _NOTES:
            terminalreporter.write_line(line)
