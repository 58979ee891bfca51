"""Bus benchmark smoke: ``bus_bench`` end to end with a short window, its results checked.

A real ``nats-server``, the simulator, a relay, a bus consumer and a direct ``Client`` (three
processes); the consumer must end with a valid, verified book and have received about what the
direct client did. With ``--benchmark-disable`` (CI) the window is 2 s; a measuring run uses
10 s and puts the CPU ratios and hop percentiles in ``extra_info``.

What it is not: the tabulated run (``python benchmarks/bus_bench.py``, see README.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

pytest.importorskip("nats", reason="the bus benchmark needs the kbook[bus] extra")

import bus_bench  # noqa: E402  (benchmarks/ is on sys.path: pytest's rootdir-less import)


def test_bus_hop_consumer_keeps_up_with_a_direct_client(
    benchmark: BenchmarkFixture, pytestconfig: pytest.Config
) -> None:
    smoke = bool(pytestconfig.getoption("benchmark_disable", default=False))
    seconds = 2.0 if smoke else 10.0
    results: list[dict[str, Any]] = []

    def one_round() -> None:
        results.extend(asyncio.run(bus_bench.measure([200.0], seconds)))

    benchmark.pedantic(one_round, rounds=1, iterations=1)
    [r] = results
    direct, consumer, relay = r["direct"], r["consumer"], r["relay"]
    assert direct["messages"] > 0 and relay["messages"] > 0
    # same stream, same window length (started a moment apart): about the same count
    assert consumer["messages"] >= 0.8 * direct["messages"]
    assert consumer["hop_us"]["n"] == consumer["messages"]
    benchmark.extra_info.update(
        {
            "relay_cpu_ratio": relay["cpu_us_per_msg"] / direct["cpu_us_per_msg"],
            "consumer_cpu_ratio": consumer["cpu_us_per_msg"] / direct["cpu_us_per_msg"],
            "hop_p50_us": consumer["hop_us"]["p50"],
            "hop_p99_us": consumer["hop_us"]["p99"],
        }
    )
