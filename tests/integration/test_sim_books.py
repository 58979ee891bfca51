"""Books from the simulator, verified by the engine and the reference model, against the truth.

Thousands of book frames from every pair, at every depth, in both protocol versions go through
``kbook.Feed`` (learning precisions from the ``instrument`` channel and depths from the acks):
no checksum may mismatch, and once the market is halted the engine's books must equal the
simulator's own book, level by level. Level3 frames are verified with the reference model's
``RefL3Book`` (and the engine's level3 books, now that it has them) and compared with the true
order queues. Determinism: the same seed gives the same bytes; the pace does not change the
market's sequence of events.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import kbook
from kbook.reference import RefFeed
from kbook.sim import PRESETS, PairMarket, Simulator
from tests.integration.simclient import T0, SimClient, feed_frames, run

ALL_PAIRS = list(PRESETS)


async def _halt_and_settle(sim: Simulator) -> None:
    """Stop the market (maintenance) and wait until every client has what was sent to it."""
    sim.faults.status("maintenance")
    await sim.settle()


def _truth(sim: Simulator, symbol: str, depth: int) -> tuple[list[tuple[int, int]], ...]:
    market = sim.venue.markets[symbol]
    return market.bids.top(depth), market.asks.top(depth)


def test_books_v2_all_pairs_and_depths_verify_and_equal_the_truth() -> None:
    depths = {"BTC/USD": 1000, "ETH/USD": 500, "DOGE/USD": 100, "SHIB/USD": 25, "MATIC/GBP": 10}

    async def scenario() -> tuple[list[bytes], dict[str, Any]]:
        async with Simulator(seed=21, rate=None, start_time=T0, warmup=500) as sim:
            client = await SimClient.connect(sim.url_v2)
            client.send({"method": "subscribe", "params": {"channel": "instrument"}})
            for symbol, depth in depths.items():
                client.send(
                    {
                        "method": "subscribe",
                        "params": {"channel": "book", "symbol": [symbol], "depth": depth},
                    }
                )
            await client.wait_count(5000, timeout=20)
            await _halt_and_settle(sim)
            truth = {s: _truth(sim, s, d) for s, d in depths.items()}
            await client.close()
            return client.frames, truth

    frames, truth = run(scenario())
    feed = kbook.Feed()
    assert feed_frames(feed, frames) == (0, [])
    assert feed.checksums_verified >= 4900
    for symbol, depth in depths.items():
        book = feed.book(symbol)
        assert book is not None and book.valid and book.depth == depth
        assert (book.bids(), book.asks()) == truth[symbol], symbol
    # The reference model agrees with the engine on every one of those checksums.
    ref = RefFeed()
    for frame in frames:
        ref.process(frame)
    assert ref.mismatches == 0 and ref.verified == feed.checksums_verified


def test_books_v1_all_pairs_verify_and_equal_the_truth() -> None:
    depths = {"XBT/USD": 25, "ETH/USD": 10, "XDG/USD": 500, "SHIB/USD": 100, "MATIC/GBP": 1000}

    async def scenario() -> tuple[list[bytes], dict[str, Any]]:
        async with Simulator(seed=22, rate=None, start_time=T0, warmup=500) as sim:
            client = await SimClient.connect(sim.url_v1)
            for pair, depth in depths.items():
                client.send(
                    {
                        "event": "subscribe",
                        "pair": [pair],
                        "subscription": {"name": "book", "depth": depth},
                    }
                )
            await client.wait_count(4000, timeout=20)
            await _halt_and_settle(sim)
            truth = {p: _truth(sim, sim.venue.by_v1[p].symbol, d) for p, d in depths.items()}
            await client.close()
            return client.frames, truth

    frames, truth = run(scenario())
    feed = kbook.Feed()
    assert feed_frames(feed, frames) == (0, [])
    assert feed.checksums_verified >= 3900
    for pair, depth in depths.items():
        book = feed.book(pair, depth)
        assert book is not None and book.valid
        assert (book.bids(), book.asks()) == truth[pair], pair


def test_books_shared_feed_serves_v1_and_v2_the_same_book() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes], list[bytes]]:
        async with Simulator(
            seed=23, rate=None, pairs=["ETH/USD"], start_time=T0, warmup=300
        ) as sim:
            v2a = await SimClient.connect(sim.url_v2)
            v2a.send({"method": "subscribe", "params": {"channel": "instrument"}})
            v2a.send(
                {
                    "method": "subscribe",
                    "params": {"channel": "book", "symbol": ["ETH/USD"], "depth": 25},
                }
            )
            await v2a.wait_count(200)
            # Late joiners get a snapshot of the same window, then the same updates.
            v2b = await SimClient.connect(sim.url_v2)
            v2b.send({"method": "subscribe", "params": {"channel": "instrument"}})
            v2b.send(
                {
                    "method": "subscribe",
                    "params": {"channel": "book", "symbol": ["ETH/USD"], "depth": 25},
                }
            )
            v1 = await SimClient.connect(sim.url_v1)
            v1.send(
                {
                    "event": "subscribe",
                    "pair": ["ETH/USD"],
                    "subscription": {"name": "book", "depth": 25},
                }
            )
            await v1.wait_count(1000, timeout=10)
            await _halt_and_settle(sim)
            for client in (v2a, v2b, v1):
                await client.close()
            return v2a.frames, v2b.frames, v1.frames

    a, b, one = run(scenario())
    books = []
    for frames, key in ((a, None), (b, None), (one, 25)):
        feed = kbook.Feed()
        assert feed_frames(feed, frames) == (0, [])
        book = feed.book("ETH/USD", key or 0)
        assert book is not None and book.valid
        books.append((book.bids(), book.asks()))
    assert books[0] == books[1] == books[2]
    # Both v2 clients received byte-identical updates once the second one joined.
    tail = [f for f in b if f.startswith(b'{"channel":"book","type":"update"')][-50:]
    assert len(tail) == 50 and all(frame in a for frame in tail)


def test_level3_verifies_with_the_reference_model_and_matches_the_queues() -> None:
    async def scenario() -> tuple[list[bytes], dict[str, Any]]:
        async with Simulator(seed=24, rate=None, start_time=T0, warmup=500) as sim:
            client = await SimClient.connect(sim.url_v2)
            token = sim.issue_token()
            client.send({"method": "subscribe", "params": {"channel": "instrument"}})
            client.send(
                {
                    "method": "subscribe",
                    "params": {
                        "channel": "level3",
                        "symbol": ["BTC/USD", "SHIB/USD"],
                        "depth": 100,
                        "token": token,
                    },
                }
            )
            client.send(
                {
                    "method": "subscribe",
                    "params": {
                        "channel": "level3",
                        "symbol": ["MATIC/GBP", "DOGE/USD"],
                        "token": token,
                    },
                }
            )
            await client.wait_count(4000, timeout=20)
            await _halt_and_settle(sim)
            queues = {}
            for symbol, depth in (
                ("BTC/USD", 100),
                ("SHIB/USD", 100),
                ("MATIC/GBP", 10),
                ("DOGE/USD", 10),
            ):
                market = sim.venue.markets[symbol]
                queues[symbol] = {
                    side.name: [
                        (lv.price, [(o.order_id, o.qty) for o in lv.orders.values()])
                        for lv in side.levels(0, depth)
                    ]
                    for side in (market.bids, market.asks)
                }
            await client.close()
            return client.frames, queues

    frames, queues = run(scenario())
    ref = RefFeed()
    for frame in frames:
        ref.process(frame)
    assert ref.mismatches == 0 and ref.verified > 3900
    for symbol, sides in queues.items():
        book = ref.l3books[symbol]
        pp, qp = book.price_precision, book.qty_precision
        for side, levels in sides.items():
            held = book.levels(side, len(levels) + 1)  # type: ignore[arg-type]
            assert held == [
                (
                    Decimal(price).scaleb(-pp),
                    [(oid, Decimal(qty).scaleb(-qp)) for oid, qty in orders],
                )
                for price, orders in levels
            ], (symbol, side)
    if hasattr(kbook.Feed, "level3_book"):
        feed = kbook.Feed()
        assert feed_frames(feed, frames) == (0, [])
        for symbol in queues:
            engine_book = feed.level3_book(symbol)
            assert engine_book is not None and engine_book.valid
            assert engine_book.checksum() == ref.l3books[symbol].checksum()


def test_pregenerate_same_seed_same_bytes_other_seed_other_bytes() -> None:
    def frames(seed: int) -> list[bytes]:
        sim = Simulator(seed=seed, rate=20.0, pairs=["SHIB/USD"], start_time=T0, warmup=300)
        return sim.pregenerate("SHIB/USD", depth=10, count=300).frames

    assert frames(5) == frames(5)
    assert frames(5) != frames(6)


def test_market_events_do_not_depend_on_the_pace() -> None:
    spec = PRESETS["ETH/USD"]
    slow = PairMarket(spec, seed=3, interval_ns=1_000_000_000, start_ns=0, warmup=200).run(500)
    fast = PairMarket(spec, seed=3, interval_ns=1_000, start_ns=0, warmup=200).run(500)
    # Same orders, prices, sizes and trades; only the clock's scale differs.
    assert [(e.action, [c[:5] for c in e.changes], [t[:5] for t in e.trades]) for e in slow] == [
        (e.action, [c[:5] for c in e.changes], [t[:5] for t in e.trades]) for e in fast
    ]
