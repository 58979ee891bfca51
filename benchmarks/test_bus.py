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


def test_bus_blast_relay_batches_and_consumer_verifies_every_frame() -> None:
    r = asyncio.run(bus_bench.blast_smoke(2000))
    relay, consumer = r["relay"], r["consumer"]
    assert relay["messages"] == consumer["messages"] == r["frames"] - 1
    assert consumer["verified"] >= r["frames"]
    # a blast arrives many frames per socket read: far fewer bus messages than updates
    assert relay["bus_messages"] < relay["messages"]


def test_bus_paced_hop_and_its_floors_are_measured() -> None:
    async def main() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with bus_bench.nats_server() as bus:
            hop = await bus_bench.paced_round(bus, 500.0, 2.0)
            floors = [
                await bus_bench.floor_round(bus, 500.0, 1.0, kind) for kind in bus_bench.FLOOR_KINDS
            ]
        return hop, floors

    hop, floors = asyncio.run(main())
    assert hop["n"] > 0 and 0 < hop["p50"] <= hop["p99"] <= hop["p99.9"]
    assert hop["live"] == 1  # the measured hop is the live path's, not the replay's
    for floor in floors:  # every kind delivered its timestamps (the sub waits for all of them)
        assert 0 < floor["p50"] <= floor["p99"]


def test_bus_fanout_every_consumer_follows_every_symbol() -> None:
    rows = asyncio.run(bus_bench.fanout(consumers=2, symbols=5, rates=[200.0], seconds=2.0))
    [row] = rows
    assert row["valid"], row
    assert all(c["verified"] > 0 for c in row["consumers"])
    assert all(c["live"] == 5 for c in row["consumers"])  # every book left its replay
