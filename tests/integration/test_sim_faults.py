"""Every fault of the menu, observed from a real client socket and found in the fault log.

Each test injects one fault, checks what the client actually saw (a CLOSE code, a gap, a frame
too many or too few, a wrong checksum the engine rejects, an answer that waits), and checks the
log entry with its time. Checksum corruption is counted by the engine: exactly as many
mismatches as were injected.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

import kbook
from kbook.sim import Simulator
from kbook.sim.faults import parse_fault_spec
from tests.integration.simclient import T0, SimClient, feed_frames, run, wait_until


def _book(symbols: list[str], depth: int = 10) -> dict[str, Any]:
    return {"method": "subscribe", "params": {"channel": "book", "symbol": symbols, "depth": depth}}


_INSTRUMENT = {"method": "subscribe", "params": {"channel": "instrument"}}


def _logged(sim: Simulator, fault: str) -> list[Any]:
    return [r for r in sim.fault_log if r.fault == fault]


def test_fault_close_sends_close_and_is_logged() -> None:
    async def scenario() -> tuple[int | None, list[Any], float, float]:
        async with Simulator(seed=31, rate=20.0, start_time=T0, warmup=100) as sim:
            client = await SimClient.connect(sim.url_v2)
            await client.wait_count(1)
            before = time.monotonic()
            sim.faults.close(client_id(sim), code=1001, reason="maintenance")
            await asyncio.wait_for(client.disconnected.wait(), 2)
            return client.close_code, sim.fault_log, before, time.monotonic()

    code, log, before, after = run(scenario())
    assert code == 1001
    assert len(log) == 1 and log[0].fault == "close" and log[0].target == 1
    assert before <= log[0].time <= after
    assert log[0].details == {"code": 1001, "reason": "maintenance"}


def client_id(sim: Simulator) -> int:
    [conn] = sim.connections
    return conn.id


def test_fault_drop_disconnects_without_close_frame() -> None:
    async def scenario() -> tuple[int | None, list[Any]]:
        async with Simulator(seed=32, rate=20.0, start_time=T0, warmup=100) as sim:
            client = await SimClient.connect(sim.url_v1)
            await client.wait_count(1)
            sim.faults.drop()
            await asyncio.wait_for(client.disconnected.wait(), 2)
            return client.close_code, _logged(sim, "drop")

    code, log = run(scenario())
    assert code is None and len(log) == 1 and log[0].target == 1


def test_fault_silence_stops_data_and_heartbeats_then_resumes() -> None:
    async def scenario() -> tuple[list[float], float, list[Any]]:
        async with Simulator(
            seed=33, rate=5.0, pairs=["BTC/USD"], start_time=T0, warmup=100, heartbeat_interval=0.1
        ) as sim:
            client = await SimClient.connect(sim.url_v2)
            client.send(
                {"method": "subscribe", "params": {"channel": "ticker", "symbol": ["BTC/USD"]}}
            )
            await client.wait_count(5)
            sim.faults.silence(seconds=0.6)
            start = time.monotonic()
            # Until the first frame after the silence (heartbeats resume within a timer tick).
            await client.wait_for(
                lambda f: client.times[-1] > start + 0.6,
                timeout=5,
                what="a frame after the silence",
            )
            await client.close()
            return client.times, start, _logged(sim, "silence")

    times, start, log = run(scenario())
    inside = [t for t in times if start + 0.02 < t < start + 0.58]
    after = [t for t in times if t > start + 0.6]
    assert inside == [] and after, "silence must swallow everything, then end"
    assert len(log) == 1 and log[0].details == {"seconds": 0.6}


def test_fault_corrupt_checksum_gives_exactly_the_injected_engine_mismatches() -> None:
    injected = 3

    async def scenario() -> tuple[list[bytes], list[Any]]:
        async with Simulator(
            seed=34, rate=None, pairs=["BTC/USD", "ETH/USD"], start_time=T0, warmup=300
        ) as sim:
            client = await SimClient.connect(sim.url_v2)
            client.send(_INSTRUMENT)
            client.send(_book(["BTC/USD", "ETH/USD"]))
            await client.wait_count(200)
            for round_ in range(injected):
                sim.faults.corrupt_checksum(symbol="BTC/USD")
                await wait_until(lambda: len(_logged(sim, "corrupt_checksum")) > round_)  # noqa: B023
                await client.wait_count(len(client.frames) + 50)
                # A fresh snapshot lets the engine trust the book again.
                sim.faults.snapshot(symbol="BTC/USD")
                await client.wait_count(len(client.frames) + 50)
            await client.close()
            return client.frames, _logged(sim, "corrupt_checksum")

    frames, log = run(scenario())
    feed = kbook.Feed()
    mismatches, errors = feed_frames(feed, frames)
    assert errors == [] and mismatches == injected == len(log)
    btc, eth = feed.book("BTC/USD"), feed.book("ETH/USD")
    assert btc is not None and eth is not None
    assert btc.checksum_mismatches == injected and btc.valid
    assert eth.checksum_mismatches == 0 and eth.valid
    for record in log:
        assert record.details["symbol"] == "BTC/USD"
        assert record.details["sent"] != record.details["checksum"]
        assert f'"checksum":{record.details["sent"]}'.encode() in b"".join(frames)


def test_fault_corrupt_checksum_v1_update_is_one_mismatch() -> None:
    async def scenario() -> list[bytes]:
        async with Simulator(
            seed=35, rate=None, pairs=["BTC/USD"], start_time=T0, warmup=300
        ) as sim:
            client = await SimClient.connect(sim.url_v1)
            client.send(
                {
                    "event": "subscribe",
                    "pair": ["XBT/USD"],
                    "subscription": {"name": "book", "depth": 10},
                }
            )
            await client.wait_count(100)
            sim.faults.corrupt_checksum()
            await client.wait_count(300)
            await client.close()
            return client.frames

    feed = kbook.Feed()
    assert feed_frames(feed, run(scenario())) == (1, [])


def test_fault_skip_and_duplicate_change_exactly_one_message() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes], list[bytes], list[Any]]:
        async with Simulator(
            seed=36, rate=None, pairs=["ETH/USD"], start_time=T0, warmup=300
        ) as sim:
            clients = [await SimClient.connect(sim.url_v2) for _ in range(3)]
            for client in clients:
                client.send(_book(["ETH/USD"]))
            for client in clients:
                await client.wait_count(50)
            sim.faults.status("maintenance")  # freeze while arming, so all see the same
            await sim.settle()
            sim.faults.skip(2, channel="book")
            sim.faults.duplicate(3, channel="book")
            sim.faults.status("online")
            await clients[0].wait_count(len(clients[0].frames) + 200)
            sim.faults.status("maintenance")
            await sim.settle()
            for client in clients:
                await client.close()
            return (clients[0].frames, clients[1].frames, clients[2].frames, sim.fault_log)

    plain, skipped, doubled, log = run(scenario())

    def updates(frames: list[bytes]) -> list[bytes]:
        return [f for f in frames if f.startswith(b'{"channel":"book","type":"update"')]

    # Each connection got its own snapshot at a different moment: compare from the first
    # update all three received.
    common = next(f for f in updates(plain) if f in updates(skipped) and f in updates(doubled))
    a = updates(plain)[updates(plain).index(common) :]
    b = updates(skipped)[updates(skipped).index(common) :]
    c = updates(doubled)[updates(doubled).index(common) :]
    [skip] = [r for r in log if r.fault == "skip"]
    [dup] = [r for r in log if r.fault == "duplicate"]
    assert skip.target == 2 and dup.target == 3
    missing = [f for f in a if f not in b]
    assert len(b) == len(a) - 1 and len(missing) == 1
    assert missing[0].decode().startswith(skip.details["frame"])
    assert len(c) == len(a) + 1
    twice = [f for i, f in enumerate(c[:-1]) if c[i + 1] == f]
    assert len(twice) == 1 and twice[0].decode().startswith(dup.details["frame"])


def test_fault_rate_limit_refuses_the_next_requests_only() -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        async with Simulator(seed=37, rate=20.0, start_time=T0, warmup=100) as sim:
            client = await SimClient.connect(sim.url_v2)
            await client.wait_count(1)
            sim.faults.rate_limit(count=2)
            for req_id in (1, 2, 3):
                client.send({"method": "ping", "req_id": req_id})
            await client.wait_match(b'"req_id":3')
            await client.close()
            return client.decoded(1), _logged(sim, "rate_limit")

    answers, log = run(scenario())
    assert [a.get("error") for a in answers[:3]] == ["Exceeded msg rate"] * 2 + [None]
    assert [a["method"] for a in answers[:3]] == ["ping", "ping", "pong"]
    assert len(log) == 2 and all('"ping"' in r.details["request"] for r in log)


def test_fault_status_halts_the_market_for_everyone_and_comes_back() -> None:
    async def scenario() -> tuple[list[Any], list[Any], int, int]:
        async with Simulator(
            seed=38, rate=None, pairs=["BTC/USD"], start_time=T0, warmup=200
        ) as sim:
            v2 = await SimClient.connect(sim.url_v2)
            v1 = await SimClient.connect(sim.url_v1)
            v2.send(_INSTRUMENT)
            v2.send(_book(["BTC/USD"]))
            await v2.wait_count(100)
            sim.faults.status("maintenance")
            await sim.settle()
            halted = len(v2.frames)
            events = sim.venue.events
            await wait_until(lambda: sim.venue.events > events + 1000)
            await sim.settle()
            quiet = len(v2.frames) - halted
            assert sim.venue.events > events  # the clock runs; nothing happens in the book
            sim.faults.status("cancel_only")
            sim.faults.status("post_only")
            sim.faults.status("online")
            await v2.wait_count(halted + 100)
            await v2.close()
            await v1.close()
            return v2.decoded(), v1.decoded(), quiet, len(_logged(sim, "status"))

    v2, v1, quiet, logged = run(scenario())
    assert quiet == 0 and logged == 4
    systems = [m["data"][0]["system"] for m in v2 if m.get("channel") == "status"]
    assert systems == ["online", "maintenance", "cancel_only", "post_only", "online"]
    statuses = [m["status"] for m in v1 if m.get("event") == "systemStatus"]
    assert statuses == ["online", "maintenance", "cancel_only", "post_only", "online"]
    # The instrument channel announces the pairs' new status with each change.
    pair_statuses = [
        m["data"]["pairs"][0]["status"]
        for m in v2
        if m.get("channel") == "instrument" and m["type"] == "update"
    ]
    assert pair_statuses == ["maintenance", "cancel_only", "post_only", "online"]


def test_fault_status_for_one_connection_tells_only_that_client() -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        async with Simulator(seed=39, rate=20.0, start_time=T0, warmup=100) as sim:
            first = await SimClient.connect(sim.url_v2)
            second = await SimClient.connect(sim.url_v2)
            await second.wait_count(1)
            sim.faults.status("post_only", conn=2)
            await second.wait_count(2)
            await sim.settle()
            await first.close()
            await second.close()
            assert sim.venue.status == "online"
            return first.decoded(), second.decoded()

    first, second = run(scenario())
    assert [m["data"][0]["system"] for m in first] == ["online"]
    assert [m["data"][0]["system"] for m in second] == ["online", "post_only"]


def test_fault_malformed_frame_is_a_decode_error_for_the_engine() -> None:
    async def scenario() -> tuple[list[bytes], list[Any]]:
        async with Simulator(seed=40, rate=20.0, start_time=T0, warmup=100) as sim:
            client = await SimClient.connect(sim.url_v2)
            await client.wait_count(1)
            sim.faults.malformed()
            await client.wait_count(2)
            await client.close()
            return client.frames, _logged(sim, "malformed")

    frames, log = run(scenario())
    with pytest.raises(ValueError):
        json.loads(frames[1])
    with pytest.raises(kbook.DecodeError):
        kbook.Feed().process(frames[1])
    assert len(log) == 1 and log[0].details["frame"] == frames[1].decode()


def test_fault_snapshot_mid_stream_is_a_valid_fresh_snapshot() -> None:
    async def scenario() -> tuple[list[bytes], list[Any]]:
        async with Simulator(
            seed=41, rate=None, pairs=["DOGE/USD", "ETH/USD"], start_time=T0, warmup=200
        ) as sim:
            client = await SimClient.connect(sim.url_v2)
            token = sim.issue_token()
            client.send(_INSTRUMENT)
            client.send(_book(["DOGE/USD", "ETH/USD"]))
            client.send(
                {
                    "method": "subscribe",
                    "params": {"channel": "level3", "symbol": ["DOGE/USD"], "token": token},
                }
            )
            await client.wait_count(300)
            sim.faults.snapshot(symbol="DOGE/USD")
            await client.wait_count(len(client.frames) + 100)
            await client.close()
            return client.frames, _logged(sim, "snapshot")

    frames, log = run(scenario())
    snapshots = [
        f
        for f in frames
        if b'"type":"snapshot"' in f
        and b"DOGE/USD" in f
        and (f.startswith(b'{"channel":"book"') or f.startswith(b'{"channel":"level3"'))
    ]
    assert len(snapshots) == 4  # subscribe + mid-stream, for book and for level3
    assert log[0].details["sent"] == 2
    feed = kbook.Feed()
    assert feed_frames(feed, frames) == (0, [])
    doge = feed.book("DOGE/USD")
    assert doge is not None and doge.snapshots == 2 and doge.valid


def test_fault_stall_reads_holds_answers_until_reading_resumes() -> None:
    async def scenario() -> tuple[float, list[Any]]:
        async with Simulator(seed=42, rate=20.0, start_time=T0, warmup=100) as sim:
            client = await SimClient.connect(sim.url_v2)
            await client.wait_count(1)
            sim.faults.stall_reads(seconds=0.4)
            sent = time.monotonic()
            client.send({"method": "ping", "req_id": 5})
            index = await client.wait_match(b'"method":"pong"')
            waited = client.times[index] - sent
            await client.close()
            return waited, _logged(sim, "stall_reads")

    waited, log = run(scenario())
    assert 0.35 <= waited < 2.0
    assert len(log) == 1 and log[0].details == {"seconds": 0.4}


def test_flow_control_unpaced_market_waits_for_a_paused_reader() -> None:
    async def scenario() -> tuple[int, int]:
        async with Simulator(
            seed=43,
            rate=None,
            pairs=["BTC/USD"],
            start_time=T0,
            warmup=100,
            socket_send_buffer=16384,
        ) as sim:
            client = await SimClient.connect(sim.url_v2, receive_buffer=16384)
            client.send(_book(["BTC/USD"], depth=1000))
            await client.wait_count(500)
            assert client.transport is not None
            raw = client.transport.underlying_transport
            raw.pause_reading()
            # The socket buffers fill, the server pauses writing.
            await wait_until(lambda: sim.connections[0].paused)
            first = sim.venue.events
            await asyncio.sleep(0.4)  # a window in which nothing may happen: only time shows it
            stalled = sim.venue.events - first
            raw.resume_reading()
            await client.wait_count(len(client.frames) + 500, timeout=10)
            await client.close()
            return stalled, sim.venue.events - first

    stalled, total = run(scenario())
    assert stalled == 0 and total > 0


def test_fault_slow_consumer_of_a_paced_market_is_closed_and_logged() -> None:
    async def scenario() -> tuple[bool, list[Any]]:
        async with Simulator(
            seed=44,
            rate=5000.0,
            pairs=["BTC/USD"],
            start_time=T0,
            warmup=100,
            max_backlog=256 * 1024,
            socket_send_buffer=16384,
        ) as sim:
            client = await SimClient.connect(sim.url_v2, receive_buffer=16384)
            client.send(_book(["BTC/USD"], depth=1000))
            await client.wait_count(100)
            assert client.transport is not None
            client.transport.underlying_transport.pause_reading()
            await wait_until(lambda: bool(_logged(sim, "slow_consumer")))
            client.transport.underlying_transport.resume_reading()
            await asyncio.wait_for(client.disconnected.wait(), 5)
            return client.disconnected.is_set(), _logged(sim, "slow_consumer")

    disconnected, log = run(scenario())
    assert disconnected and len(log) == 1 and log[0].details["backlog"] > 256 * 1024


def test_fault_schedule_by_name_fires_later_and_logs_bad_targets() -> None:
    async def scenario() -> list[Any]:
        async with Simulator(seed=45, rate=20.0, start_time=T0, warmup=100) as sim:
            client = await SimClient.connect(sim.url_v2)
            await client.wait_count(1)
            delay, name, conn, kwargs = parse_fault_spec("0.1:status=maintenance")
            sim.faults.schedule(delay, name, conn, **kwargs)
            sim.faults.schedule(0.15, "close", conn=99)
            sim.faults.schedule(0.2, "status", status="online")
            await wait_until(lambda: len(sim.fault_log) == 3)
            await client.close()
            return list(sim.fault_log)

    log = run(scenario())
    assert [(r.fault, r.target) for r in log] == [
        ("status", None),
        ("error", None),
        ("status", None),
    ]
    assert log[1].details == {"name": "close", "error": "no open connection with id 99"}
    assert log[0].time < log[1].time < log[2].time
