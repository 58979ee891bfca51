"""``kbook record --bus``: a capture of what a relay published, that ``kbook verify`` checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("nats", reason="the bus tests need the kbook[bus] extra")

from kbook.capture import read_frames  # noqa: E402
from kbook.cli import main as kbook_main  # noqa: E402
from kbook.cli.record import record  # noqa: E402
from kbook.sim import Simulator  # noqa: E402
from tests.integration.simclient import run  # noqa: E402
from tests.integration.test_bus import (  # noqa: E402, F401
    FAST,
    PAIRS,
    NatsServer,
    nats_server,
    relay_for,
)


def _verify(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = kbook_main(["verify", str(path)])
    return code, capsys.readouterr().out


def test_record_bus_book_capture_verifies_with_no_flags_across_a_resync(
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "relayed.capture.gz"

    async def main() -> None:
        async with (
            Simulator(seed=41, rate=80, pairs=PAIRS) as sim,
            relay_for(nats_server, sim, depth=25),
        ):

            async def corrupt_later() -> None:
                await asyncio.sleep(1.5)
                sim.faults.corrupt_checksum(symbol="BTC/USD")

            task = asyncio.ensure_future(corrupt_later())
            result = await record(
                None,
                "book",
                PAIRS,
                str(out),
                depth=25,
                duration=4.0,
                bus=nats_server.url,
                venue="sim",
            )
            await task
        assert result.frames > 50 and not result.interrupted
        kinds = [e.kind for e in result.events]
        assert "relay_state" in kinds  # the relay said BTC/USD stopped being verified

    run(main(), 60)
    lines = [f.data for f in read_frames(str(out))]
    # each symbol's first snapshot is preceded by its precision and depth, stated once
    instruments = [ln for ln in lines if ln.startswith(b'{"channel":"instrument"')]
    acks = [ln for ln in lines if ln.startswith(b'{"method":"subscribe"')]
    assert len(instruments) == len(acks) == len(PAIRS)
    assert all(b'"depth":25' in ack for ack in acks)
    snapshots = [ln for ln in lines if b'"type":"snapshot"' in ln and b'"channel":"book"' in ln]
    assert len(snapshots) >= len(PAIRS) + 1  # the resync's fresh snapshot too
    code, text = _verify(out, capsys)
    assert code == 0, text
    assert "OK: all" in text and text.count("v2 depth 25") == len(PAIRS), text


def test_record_bus_level3_capture_verifies(
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "level3.capture"

    async def main() -> None:
        async with Simulator(seed=43, rate=80, pairs=PAIRS) as sim:
            relay = relay_for(
                nats_server,
                sim,
                channel="level3",
                client_options={"policy": FAST, "token": sim.issue_token()},
            )
            async with relay:
                result = await record(
                    None,
                    "level3",
                    PAIRS,
                    str(out),
                    count=200,
                    duration=20.0,
                    bus=nats_server.url,
                    venue="sim",
                )
        assert result.frames == 200

    run(main(), 60)
    code, text = _verify(out, capsys)
    assert code == 0 and "OK: all" in text, text


def test_record_needs_a_url_or_bus_not_both(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = str(tmp_path / "x.capture")
    assert kbook_main(["record", "--count", "1", "-o", out]) == 2
    assert (
        kbook_main(["record", "sim", "--bus", "nats://127.0.0.1:1", "--count", "1", "-o", out]) == 2
    )
    assert "give either a URL or --bus" in capsys.readouterr().err
    assert not Path(out).exists()
