"""``Simulator.settle``: answers and streams have arrived when it returns, and a stuck reader
makes it fail instead of hang."""

from __future__ import annotations

import json

import pytest

from kbook.sim import Simulator
from tests.integration.simclient import T0, SimClient, run


def test_settle_every_request_sent_before_is_answered_and_received() -> None:
    async def scenario() -> list[int]:
        async with Simulator(
            seed=51, rate=20.0, pairs=["BTC/USD"], start_time=T0, warmup=100
        ) as sim:
            client = await SimClient.connect(sim.url_v2)
            for req_id in range(1, 41):
                client.send({"method": "ping", "req_id": req_id})
            await sim.settle()
            pongs = [m["req_id"] for m in client.decoded() if m.get("method") == "pong"]
            await client.close()
            return pongs

    assert run(scenario()) == list(range(1, 41))


def test_settle_waits_for_a_whole_replayed_stream() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        async with Simulator(
            seed=52, rate=20.0, pairs=["BTC/USD"], start_time=T0, warmup=100
        ) as sim:
            stream = sim.pregenerate("BTC/USD", "book", depth=10, count=3000)
            sim.replay(stream)
            client = await SimClient.connect(sim.url_v2)
            client.send(
                {
                    "method": "subscribe",
                    "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10},
                }
            )
            await client.wait_match(b'"method":"subscribe"')
            await sim.settle()
            books = [f for f in client.frames if f.startswith(b'{"channel":"book"')]
            await client.close()
            return books, stream.frames

    books, frames = run(scenario())
    assert books == frames


def test_settle_with_a_reader_that_stopped_reading_times_out_naming_it() -> None:
    async def scenario() -> str:
        async with Simulator(
            seed=53,
            rate=None,
            pairs=["BTC/USD"],
            start_time=T0,
            warmup=100,
            socket_send_buffer=16384,
        ) as sim:
            client = await SimClient.connect(sim.url_v2, receive_buffer=16384)
            client.send(
                {
                    "method": "subscribe",
                    "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 1000},
                }
            )
            await client.wait_count(50)
            assert client.transport is not None
            client.transport.underlying_transport.pause_reading()
            with pytest.raises(TimeoutError) as caught:
                await sim.settle(timeout=0.5)
            client.transport.underlying_transport.resume_reading()
            await client.close()
            return str(caught.value)

    message = run(scenario())
    assert message.startswith("simulator not settled after 0.5 s: {1: {")
    assert "buffered" in message or "unsent" in message


def test_settle_idle_simulator_without_connections_returns() -> None:
    async def scenario() -> int:
        async with Simulator(
            seed=54, rate=20.0, pairs=["BTC/USD"], start_time=T0, warmup=100
        ) as sim:
            await sim.settle()
            return len(sim.connections)

    assert run(scenario()) == 0


def test_settle_after_halting_the_market_nothing_more_arrives() -> None:
    async def scenario() -> tuple[int, int, str]:
        # No heartbeat may slip in between the two settles, however slow the machine.
        async with Simulator(
            seed=55,
            rate=None,
            pairs=["ETH/USD"],
            start_time=T0,
            warmup=200,
            heartbeat_interval=3600.0,
        ) as sim:
            client = await SimClient.connect(sim.url_v2)
            client.send(
                {
                    "method": "subscribe",
                    "params": {"channel": "book", "symbol": ["ETH/USD"], "depth": 10},
                }
            )
            await client.wait_count(100)
            sim.faults.status("maintenance")
            await sim.settle()
            settled = len(client.frames)
            # A round trip behind everything the simulator sent: it arrives last.
            client.send({"method": "ping", "req_id": 9})
            await sim.settle()
            last = json.loads(client.frames[-1])
            await client.close()
            return settled, len(client.frames), last["method"]

    settled, total, last = run(scenario())
    assert total == settled + 1 and last == "pong"
