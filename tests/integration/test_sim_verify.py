"""Streams recorded from the simulator, verified offline by ``kbook verify``.

A live session (v2 books of every pair, v1 books, plus the channels a verifier must skip) is
recorded with its receive times in ``kbook verify``'s capture format: zero mismatches. The same
session with checksum faults injected shows exactly the injected number of mismatches, and the
pre-generated load-test stream verifies as well.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kbook.capture import write_capture
from kbook.cli import main as kbook_main
from kbook.sim import Simulator
from tests.integration.simclient import T0, SimClient, run, wait_until


async def _record(corruptions: int) -> tuple[list[bytes], int]:
    async with Simulator(seed=51, rate=None, start_time=T0, warmup=300) as sim:
        v2 = await SimClient.connect(sim.url_v2)
        v1 = await SimClient.connect(sim.url_v1)
        v2.send({"method": "subscribe", "params": {"channel": "instrument"}})
        v2.send(
            {
                "method": "subscribe",
                "params": {
                    "channel": "book",
                    "symbol": ["BTC/USD", "ETH/USD", "DOGE/USD", "SHIB/USD", "MATIC/GBP"],
                    "depth": 25,
                },
            }
        )
        v2.send({"method": "subscribe", "params": {"channel": "trade", "symbol": ["BTC/USD"]}})
        v1.send(
            {
                "event": "subscribe",
                "pair": ["XBT/USD", "XDG/USD"],
                "subscription": {"name": "book", "depth": 10},
            }
        )
        v1.send({"event": "subscribe", "pair": ["XBT/USD"], "subscription": {"name": "spread"}})
        await v2.wait_count(1500, timeout=15)
        for round_ in range(corruptions):
            sim.faults.corrupt_checksum(conn=1, symbol="ETH/USD")
            await wait_until(
                lambda: sum(r.fault == "corrupt_checksum" for r in sim.fault_log) > round_  # noqa: B023
            )
            await v2.wait_count(len(v2.frames) + 100)
            sim.faults.snapshot(conn=1, symbol="ETH/USD")
            await v2.wait_count(len(v2.frames) + 100)
        await v1.wait_count(1500, timeout=15)
        await v2.close()
        await v1.close()
        logged = sum(r.fault == "corrupt_checksum" for r in sim.fault_log)
        return v2.frames + v1.frames, logged


def _verify(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = kbook_main(["verify", "--json", str(path)])
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return code, report


def test_verify_recorded_stream_has_no_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames, logged = run(_record(0))
    path = tmp_path / "session.capture"
    write_capture(str(path), frames)
    code, report = _verify(path, capsys)
    assert logged == 0
    assert code == 0, report
    assert report["checksum_mismatches"] == 0 and report["decode_errors"] == 0
    assert report["checksums_verified"] > 2500
    assert len(report["symbols"]) == 7  # five v2 books, two v1 books


def test_verify_counts_exactly_the_injected_checksum_faults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames, logged = run(_record(3))
    path = tmp_path / "faulty.capture"
    write_capture(str(path), frames)
    code, report = _verify(path, capsys)
    assert logged == 3
    assert code == 1
    assert report["checksum_mismatches"] == 3
    [eth] = [s for s in report["symbols"] if s["symbol"] == "ETH/USD"]
    assert eth["checksum_mismatches"] == 3 and eth["valid"]
    others = [s for s in report["symbols"] if s["symbol"] != "ETH/USD"]
    assert all(s["checksum_mismatches"] == 0 for s in others)


def test_verify_pregenerated_streams(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim = Simulator(seed=52, rate=None, pairs=["SHIB/USD", "BTC/USD"], start_time=T0, warmup=200)
    for protocol, symbol, depth in (("v2", "SHIB/USD", 100), ("v1", "BTC/USD", 1000)):
        stream = sim.pregenerate(symbol, depth=depth, count=500, protocol=protocol)
        path = tmp_path / f"{protocol}.capture"
        stream.write_capture(str(path))
        code, report = _verify(path, capsys)
        assert code == 0, report
        expected = 500 if protocol == "v2" else 499  # v1 snapshots carry no checksum
        assert report["checksums_verified"] == expected
        [book] = report["symbols"]
        assert book["depth"] == depth
