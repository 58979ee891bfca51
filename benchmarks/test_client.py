"""Client benchmark smoke: a loopback stream through kbook's ``Client`` into a verified book.

A :mod:`_blaster` subprocess serves 20,000 seeded v2 ``book`` depth-10 updates (plus snapshot)
as fast as the socket takes them; the real :class:`kbook.client.Client` (precisions given, so no
``instrument`` subscription) subscribes with a user callback. Afterwards every checksum must be
verified, none mismatched, and the book must equal the generator's model book
(``BookStream(...).book``, its top levels formatted at the pair's precision).

With ``--benchmark-disable`` (CI) one connection runs; a measuring run times ``ROUNDS``
connections and puts messages/s and client CPU per message in ``extra_info``. The comparison with
websockets/aiohttp, pinning and latency live in ``client_bench.py``, which is too slow for CI.

What it is not: not a test of reconnects or error handling (``tests/integration`` covers those).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import _blaster
import client_bench
import pytest
from _blaster import BlastStream
from pytest_benchmark.fixture import BenchmarkFixture

UPDATES = 20_000
ROUNDS = 3


@pytest.fixture(scope="module")
def blast_stream() -> BlastStream:
    """The seeded stream, generated once (about 2.5 s) and then read from benchmarks/.cache."""
    return _blaster.load_frames(UPDATES)


def test_client_blast_stream_verifies_every_checksum(
    benchmark: BenchmarkFixture,
    blast_stream: BlastStream,
    pytestconfig: pytest.Config,
    note: Callable[[str], None],
) -> None:
    smoke = bool(pytestconfig.getoption("benchmark_disable", default=False))
    rounds = 1 if smoke else ROUNDS
    expect = client_bench.Expect(blast_stream)
    measures: list[client_bench.Measure] = []
    keep: dict[str, Any] = {}
    args = client_bench.blaster_args(
        blast_stream, connections=rounds + (0 if smoke else 1), max_seconds=120
    )

    with client_bench.Blaster(*args) as blaster:

        def one_connection() -> client_bench.Measure:
            measure = asyncio.run(client_bench.run_kbook_client(blaster.url, expect, keep))
            measures.append(measure)
            return measure

        if smoke:
            benchmark.pedantic(one_connection, rounds=1, iterations=1)
        else:
            benchmark.pedantic(one_connection, rounds=rounds, warmup_rounds=1, iterations=1)
    assert blaster.proc.returncode == 0

    # the last connection's book against the generator's model (final_bids/final_asks are
    # BookStream(...).book's top levels at the pair's precision), whatever check_book did
    feed, book = keep["feed"], keep["book"]
    assert feed.checksum_mismatches == 0
    assert feed.integrity_errors == 0
    assert feed.checksums_verified == len(blast_stream.updates) + 1
    assert feed.checksum_mismatches == 0  # valid to the end; stale once the blaster hung up
    assert len(blast_stream.final_bids) == len(blast_stream.final_asks) == blast_stream.depth
    assert tuple(book.bids_str()) == blast_stream.final_bids
    assert tuple(book.asks_str()) == blast_stream.final_asks
    assert book.checksum() == blast_stream.final_checksum

    best = max(measures, key=lambda m: m.msgs_per_s)
    benchmark.extra_info["messages"] = best.messages
    benchmark.extra_info["msgs_per_s"] = round(best.msgs_per_s)
    benchmark.extra_info["cpu_us_per_msg"] = round(min(m.cpu_us for m in measures), 3)
    if not smoke:
        note(
            f"{'client':>13} kbook Client {best.msgs_per_s:12,.0f} msgs/s "
            f"{benchmark.extra_info['cpu_us_per_msg']:.3f} µs CPU/msg (best of {rounds} "
            f"connections, {best.messages:,} messages, client and server not pinned)"
        )


def test_client_bench_engine_section_runs(
    blast_stream: BlastStream, pytestconfig: pytest.Config
) -> None:
    """client_bench.py's in-process engine section, as its main run calls it (fewer rounds)."""
    smoke = bool(pytestconfig.getoption("benchmark_disable", default=False))
    figures = client_bench.engine_cost(
        blast_stream, calls=2_000 if smoke else 200_000, bulk_rounds=1 if smoke else 5
    )
    assert figures["bulk_ns"] > 0 and figures["callback_via_client_ns"] > 0
    assert figures["p50_ns"] <= figures["p999_ns"]
