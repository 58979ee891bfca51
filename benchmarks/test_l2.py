"""L2 book benchmarks: bytes -> book updated -> checksum verified, against same-run baselines.

Per stream (v2 at depths 10, 100 and 1000; v1 at 10 and 1000) three contenders share one
pytest-benchmark group, so the terminal table compares them directly:

* ``engine``: ``Feed.process`` over every update frame (the snapshot is fed in untimed setup);
* ``orjson``: ``orjson.loads`` alone over the same frames, decoding only;
* ``model``: ``RefFeed.process`` over the first 1/50 of the frames (it is ~100x slower).

The raw times cover different message counts; ``extra_info["ns_per_msg"]`` is the comparable
number (``report.py`` prints the table). Every benchmark asserts its final state afterwards.

The checksum group measures the incremental CRC-32 on a depth-1000 book: one quantity change at
bid rank 0, 9 or 500 followed by ``checksum()``, the same change alone, a checksum with nothing
changed, and two rebuilds from scratch.

What it is not: not a test of correctness beyond what the assertions cover (``tests/`` is).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import workloads
from pytest_benchmark.fixture import BenchmarkFixture
from workloads import Stream

ENGINE_ROUNDS = 15
ORJSON_ROUNDS = 15
MODEL_ROUNDS = 5


def _per_message(
    benchmark: BenchmarkFixture, messages: int, note: Callable[[str], None] | None = None
) -> None:
    """Attach comparable per-message times (ns) to the benchmark's JSON (and the run's notes)."""
    benchmark.extra_info["messages"] = messages
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        best = stats.stats.min * 1e9 / messages
        benchmark.extra_info["ns_per_msg"] = round(best, 1)
        benchmark.extra_info["ns_per_msg_median"] = round(stats.stats.median * 1e9 / messages, 1)
        if note is not None:
            note(
                f"{benchmark.group:>13} {benchmark.name.split('[')[0]:<12} {best:10,.0f} ns/msg "
                f"(best of {stats.stats.rounds} rounds over {messages:,} messages)"
            )


def test_engine(benchmark: BenchmarkFixture, stream: Stream, note: Callable[[str], None]) -> None:
    benchmark.group = stream.name
    updates = stream.updates

    def setup() -> tuple[tuple[object, ...], dict[str, object]]:
        return (workloads.prepare_engine(stream), updates), {}

    feed = benchmark.pedantic(
        workloads.run_engine, setup=setup, rounds=ENGINE_ROUNDS, warmup_rounds=1, iterations=1
    )
    _per_message(benchmark, len(updates), note)
    workloads.check_engine(stream, feed)


def test_orjson(benchmark: BenchmarkFixture, stream: Stream, note: Callable[[str], None]) -> None:
    benchmark.group = stream.name
    last = benchmark.pedantic(
        workloads.run_orjson,
        args=(stream.updates,),
        rounds=ORJSON_ROUNDS,
        warmup_rounds=1,
        iterations=1,
    )
    _per_message(benchmark, len(stream.updates), note)
    workloads.check_orjson(stream, last)


def test_model(benchmark: BenchmarkFixture, stream: Stream, note: Callable[[str], None]) -> None:
    benchmark.group = stream.name
    updates = stream.model_updates()

    def setup() -> tuple[tuple[object, ...], dict[str, object]]:
        return (workloads.prepare_model(stream), updates), {}

    feed = benchmark.pedantic(workloads.run_model, setup=setup, rounds=MODEL_ROUNDS, iterations=1)
    _per_message(benchmark, len(updates), note)
    workloads.check_model(stream, feed)


# -- incremental checksum --------------------------------------------------------------------------

_CHANGES: dict[str, tuple[Callable[[workloads.ChecksumBench], object], int]] = {
    # name -> (method, operations per call)
    "change+checksum": (workloads.ChecksumBench.change_then_checksum, 2),
    "change-only": (workloads.ChecksumBench.change_only, 2),
}


@pytest.mark.parametrize("op", list(_CHANGES))
@pytest.mark.parametrize("scenario", list(workloads.CHECKSUM_RANKS))
def test_checksum_incremental(
    benchmark: BenchmarkFixture, deep_stream: Stream, scenario: str, op: str
) -> None:
    """One bid quantity change at a given rank, with and without the checksum after it."""
    benchmark.group = "checksum"
    bench = workloads.checksum_bench(deep_stream, workloads.CHECKSUM_RANKS[scenario])
    method, per_call = _CHANGES[op]
    benchmark(method, bench)
    _per_message(benchmark, per_call)
    workloads.check_checksum_bench(deep_stream, bench)


@pytest.mark.parametrize("op", ["cached", "full-rebuild", "crc32-prebuilt"])
def test_checksum_reference_points(
    benchmark: BenchmarkFixture, deep_stream: Stream, op: str
) -> None:
    """Nothing changed (call overhead); the rebuild from scratch; zlib over a prebuilt string."""
    benchmark.group = "checksum"
    bench = workloads.checksum_bench(deep_stream, 0)
    expected = bench.book._checksum_full()
    fn = {
        "cached": bench.checksum_cached,
        "full-rebuild": bench.checksum_full,
        "crc32-prebuilt": bench.crc_prebuilt,
    }[op]
    result = benchmark(fn)
    _per_message(benchmark, 1)
    assert result == expected
    workloads.check_checksum_bench(deep_stream, bench)
