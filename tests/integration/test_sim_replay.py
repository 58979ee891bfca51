"""Pre-generated streams replayed at full speed to several sockets, still checksum-correct.

``Simulator.pregenerate`` records a stream from an independent copy of a market (checksums from
the reference model) and ``Simulator.replay`` serves it, pre-framed, to every matching
subscription; the clients' engines verify every frame.
"""

from __future__ import annotations

import kbook
from kbook.reference import RefFeed
from kbook.sim import Simulator
from tests.integration.simclient import T0, SimClient, feed_frames, run


def test_replay_serves_the_stream_to_each_subscriber_intact() -> None:
    async def scenario() -> tuple[list[list[bytes]], list[bytes], int]:
        async with Simulator(
            seed=61, rate=20.0, pairs=["BTC/USD", "ETH/USD"], start_time=T0, warmup=200
        ) as sim:
            stream = sim.pregenerate("BTC/USD", depth=10, count=2000)
            sim.replay(stream, repeat=2)
            clients = [await SimClient.connect(sim.url_v2) for _ in range(3)]
            for client in clients:
                client.send({"method": "subscribe", "params": {"channel": "instrument"}})
                client.send(
                    {
                        "method": "subscribe",
                        "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10},
                    }
                )
            for client in clients:
                await client.wait_for(
                    lambda f: sum(x.startswith(b'{"channel":"book"') for x in f) >= 4000,
                    timeout=10,
                    what="the replayed stream twice",
                )
            await sim.settle()  # anything sent beyond the stream would have arrived by now
            for client in clients:
                await client.close()
            return [c.frames for c in clients], stream.frames, stream.final_checksum

    received, frames, final = run(scenario())
    for got in received:
        books = [f for f in got if f.startswith(b'{"channel":"book"')]
        assert books == frames + frames
        feed = kbook.Feed()
        assert feed_frames(feed, got) == (0, [])
        book = feed.book("BTC/USD")
        assert book is not None and book.checksums_verified == 4000
        assert book.checksum() == final


def test_pregenerate_level3_and_v1_streams_verify() -> None:
    sim = Simulator(seed=62, rate=None, pairs=["DOGE/USD"], start_time=T0, warmup=200)
    level3 = sim.pregenerate("DOGE/USD", channel="level3", depth=10, count=800)
    ref = RefFeed()
    for frame in level3.preamble + level3.frames:
        ref.process(frame)
    assert ref.verified == 800 and ref.mismatches == 0
    v1 = sim.pregenerate("XDG/USD", depth=25, count=800, protocol="v1")
    feed = kbook.Feed()
    assert feed_frames(feed, v1.preamble + v1.frames) == (0, [])
    assert feed.checksums_verified == 799
