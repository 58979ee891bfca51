"""kbook.testing against the real simulator: fault scripts, the pytest fixtures, ``--faults``.

Fault scripts fire at the message and the time they name, on the in-process simulator and on
``kbook sim --faults FILE``; the ``kbook_sim``/``kbook_client`` fixtures (registered by the
``pytest11`` entry point, so this file also proves the plugin loads in the project's own run)
serve a plain sync test and an ``asyncio`` test; a generated stream replayed by the simulator
reaches a real client and verifies.

What it is not: the strategies' own properties (``tests/unit/test_testing.py``).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kbook.client import Client, ReconnectPolicy
from kbook.testing import (
    BTC_USD,
    BackgroundClient,
    FaultScript,
    Seeded,
    SimulatorThread,
    Snapshot,
    render_book_stream,
)

FAST = ReconnectPolicy(initial=0.01, maximum=0.05, first_connect_timeout=5.0)


def test_fault_script_at_message_corrupts_that_book_and_client_resyncs() -> None:
    with (
        SimulatorThread(seed=11, rate=200, pairs=["BTC/USD", "ETH/USD"], warmup=100) as sim,
        BackgroundClient(sim) as client,
    ):
        [btc, eth] = client.subscribe_book(["BTC/USD", "ETH/USD"], depth=10)
        client.wait_until(lambda: btc.valid and eth.valid)
        running = sim.start_script(
            FaultScript().at_message(20, "corrupt_checksum", symbol="BTC/USD")
        )
        sim.run(running.wait(10.0))
        client.wait_until(lambda: bool(client.events_of("resync_done")))
        log = sim.fault_log()
    [record] = [r for r in log if r.fault == "corrupt_checksum"]
    assert record.details["symbol"] == "BTC/USD" and record.details["channel"] == "book"
    assert [e.symbol for e in client.events_of("checksum_mismatch")] == ["BTC/USD"]
    assert running.fired == list(running.script.steps)


def test_fault_script_drop_then_refused_reconnects_client_comes_back() -> None:
    script = FaultScript().at(0.0, "drop").at(0.0, "refuse_upgrades", count=3)
    with (
        SimulatorThread(seed=12, rate=50, pairs=["BTC/USD"], warmup=100) as sim,
        BackgroundClient(sim, policy=FAST) as client,
    ):
        [book] = client.subscribe_book(["BTC/USD"], depth=10)
        client.wait_until(lambda: book.valid)
        sim.run(sim.start_script(script).wait(5.0))
        client.wait_until(lambda: len(client.events_of("connected")) >= 2 and book.valid)
        log = sim.fault_log()
    assert [r.fault for r in log].count("upgrade_refused") == 3
    assert len(client.events_of("connect_failed")) == 3
    assert client.events_of("books_stale")


def test_fault_script_fault_with_nobody_to_hit_is_logged_as_error() -> None:
    with SimulatorThread(seed=13, rate=20, pairs=["BTC/USD"], warmup=50) as sim:
        running = sim.start_script(FaultScript().at(0.0, "corrupt_checksum"))
        sim.run(running.wait(5.0))
        log = sim.fault_log()
    assert [(r.fault, r.details["name"]) for r in log] == [("error", "corrupt_checksum")]


def test_replayed_generated_stream_verifies_in_real_client() -> None:
    stream = render_book_stream(BTC_USD, [Snapshot(), Seeded(3, 200)], depth=10)
    with SimulatorThread(seed=14, rate=5, pairs=["BTC/USD"], warmup=50) as sim:
        sim.replay(stream)
        with BackgroundClient(sim) as client:
            [book] = client.subscribe_book(["BTC/USD"], depth=10)
            client.wait_until(lambda: book.checksums_verified == stream.checksums)
            assert book.valid
            assert book.bids(10) == list(stream.bids)
            assert book.asks(10) == list(stream.asks)


# -- the pytest fixtures ---------------------------------------------------------------------


@pytest.mark.kbook_sim(seed=7, rate=100, pairs=["BTC/USD"])
def test_kbook_fixtures_sync_test_sees_corruption_and_resync(
    kbook_sim: Any, kbook_client: Any
) -> None:
    assert kbook_sim.sim.seed == 7 and [s.symbol for s in kbook_sim.sim.specs] == ["BTC/USD"]
    [book] = kbook_client.subscribe_book(["BTC/USD"], depth=10)
    kbook_client.wait_until(lambda: book.valid)
    kbook_sim.inject("corrupt_checksum", symbol="BTC/USD")
    kbook_client.wait_until(lambda: bool(kbook_client.events_of("resync_done")))
    assert kbook_client.events_of("checksum_mismatch")


@pytest.mark.kbook_sim(rate=100, pairs=["ETH/USD"])
def test_kbook_sim_fixture_serves_client_of_test_own_event_loop(kbook_sim: Any) -> None:
    async def scenario() -> int:
        async with Client(kbook_sim.url_v2) as client:
            [book] = await client.subscribe_book(["ETH/USD"], depth=10)
            async with asyncio.timeout(10):
                while not book.valid:
                    await asyncio.sleep(0.01)
            return await kbook_sim.arun(_connections(kbook_sim))

    assert asyncio.run(scenario()) == 1


async def _connections(sim: SimulatorThread) -> int:
    return len(sim.sim.connections)


def test_kbook_replay_fixture_runs_a_capture(kbook_replay: Any, tmp_path: Path) -> None:
    stream = render_book_stream(BTC_USD, [Snapshot(), Seeded(2, 50)])
    path = tmp_path / "x.capture"
    path.write_bytes(b"\n".join(stream.frames) + b"\n")
    assert kbook_replay(path).checksums_verified == stream.checksums


# -- kbook sim --faults ----------------------------------------------------------------------


def test_kbook_sim_faults_file_runs_the_script(tmp_path: Path) -> None:
    script = tmp_path / "faults.toml"
    script.write_text(
        '[[faults]]\nat_seconds = 0.2\nfault = "status"\nstatus = "maintenance"\n'
        '\n[[faults]]\nat_seconds = 0.4\nfault = "status"\nstatus = "online"\n'
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kbook",
            "sim",
            "--pairs",
            "BTC/USD",
            "--rate",
            "20",
            "--duration",
            "1.5",
            "--faults",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    faults = [line for line in done.stdout.splitlines() if "] fault status" in line]
    assert [line.rsplit("=", 1)[1] for line in faults] == ["maintenance", "online"]


def test_kbook_sim_faults_file_malformed_is_a_usage_error(tmp_path: Path) -> None:
    script = tmp_path / "faults.json"
    script.write_text('{"faults": [{"fault": "explode", "at_seconds": 1}]}')
    done = subprocess.run(
        [sys.executable, "-m", "kbook", "sim", "--faults", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown fault 'explode'" in done.stderr
