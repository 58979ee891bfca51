"""Level3 book benchmarks: bytes -> order-by-order book updated -> checksum verified.

Per level3 stream (depths 10, 100 and 1000; ``Level3Stream``, about 4 order events and 640 bytes
per update) three contenders share one pytest-benchmark group, as in ``test_l2.py``:

* ``engine``: ``Feed.process`` over every update frame (ack and snapshot fed in untimed setup);
* ``orjson``: ``orjson.loads`` alone over the same frames, decoding only;
* ``model``: ``RefFeed.process`` over the first 1/50 of the frames.

``extra_info["ns_per_msg"]`` is the comparable number. Every benchmark asserts its final state:
the engine's whole aggregated book, its top-10 queues, order count and checksum must equal the
generator's model, with every checksum verified and none mismatched.

What it is not: not a test of correctness beyond what the assertions cover (``tests/`` is).
"""

from __future__ import annotations

from collections.abc import Callable

import workloads
from pytest_benchmark.fixture import BenchmarkFixture
from test_l2 import ENGINE_ROUNDS, MODEL_ROUNDS, ORJSON_ROUNDS, _per_message
from workloads import L3Stream


def test_l3_engine(
    benchmark: BenchmarkFixture, l3_stream: L3Stream, note: Callable[[str], None]
) -> None:
    benchmark.group = l3_stream.name
    updates = l3_stream.updates

    def setup() -> tuple[tuple[object, ...], dict[str, object]]:
        return (workloads.prepare_l3_engine(l3_stream), updates), {}

    feed = benchmark.pedantic(
        workloads.run_engine, setup=setup, rounds=ENGINE_ROUNDS, warmup_rounds=1, iterations=1
    )
    _per_message(benchmark, len(updates), note)
    workloads.check_l3_engine(l3_stream, feed)


def test_l3_orjson(
    benchmark: BenchmarkFixture, l3_stream: L3Stream, note: Callable[[str], None]
) -> None:
    benchmark.group = l3_stream.name
    last = benchmark.pedantic(
        workloads.run_orjson,
        args=(l3_stream.updates,),
        rounds=ORJSON_ROUNDS,
        warmup_rounds=1,
        iterations=1,
    )
    _per_message(benchmark, len(l3_stream.updates), note)
    workloads.check_l3_orjson(l3_stream, last)


def test_l3_model(
    benchmark: BenchmarkFixture, l3_stream: L3Stream, note: Callable[[str], None]
) -> None:
    benchmark.group = l3_stream.name
    updates = l3_stream.model_updates()

    def setup() -> tuple[tuple[object, ...], dict[str, object]]:
        return (workloads.prepare_l3_model(l3_stream), updates), {}

    feed = benchmark.pedantic(workloads.run_model, setup=setup, rounds=MODEL_ROUNDS, iterations=1)
    _per_message(benchmark, len(updates), note)
    workloads.check_l3_model(l3_stream, feed)
