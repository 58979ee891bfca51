"""The client end to end against the simulator, over loopback sockets: channels, faults, budget.

Every test bounds its own time; books are checked the way a user would rely on them: a book
handed to a callback is valid and its checksum matches a rebuild from scratch.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from kbook import L2Book
from kbook.client import Client, ClientEvent, ConnectionBudget, ReconnectPolicy, SubscriptionError
from kbook.messages import Candle, Instrument, Spread, Ticker, Trade
from kbook.sim import Simulator
from tests.integration.simclient import BookChecker as Checker
from tests.integration.simclient import kinds, run, wait_until

FAST = ReconnectPolicy(initial=0.05, maximum=0.2, give_up_after=5)


# -- channels ------------------------------------------------------------------------------


def test_client_v2_book_many_symbols_verified_under_load() -> None:
    async def main() -> None:
        checker = Checker()
        async with (
            Simulator(seed=2, rate=400, pairs=["BTC/USD", "ETH/USD", "DOGE/USD"]) as sim,
            Client(sim.url_v2, policy=FAST) as client,
        ):
            books = await client.subscribe_book(
                ["BTC/USD", "ETH/USD", "DOGE/USD"], depth=25, on_book=checker
            )
            await wait_until(lambda: all(b.checksums_verified >= 1500 for b in books), 40)
            for book in books:
                assert book.valid and book.checksum_mismatches == 0
                book._check()
            assert not checker.bad
            assert "checksum_mismatch" not in kinds(client)

    run(main())


def test_client_v2_level3_and_every_public_channel_typed() -> None:
    async def main() -> None:
        checker = Checker()
        async with (
            Simulator(seed=3, rate=100, pairs=["BTC/USD", "ETH/USD"]) as sim,
            Client(
                sim.url_v2, level3_url=sim.url_v2, token=sim.issue_token(), policy=FAST
            ) as client,
        ):
            seen: Counter[type] = Counter()
            for channel, params in (
                ("ticker", {"event_trigger": "bbo"}),
                ("trade", {"snapshot": True}),
                ("ohlc", {"interval": 5}),
            ):
                await client.subscribe(channel, ["BTC/USD"], on_message=lambda m: None, **params)
            await client.subscribe("instrument")

            async def collect() -> None:
                async for msg in client.messages():
                    seen[type(msg)] += 1

            task = asyncio.create_task(collect())
            [l3] = await client.subscribe_level3(["ETH/USD"], depth=10, on_book=checker)
            await wait_until(
                lambda: (
                    l3.checksums_verified >= 200
                    and all(seen[t] for t in (Ticker, Trade, Candle, Instrument))
                ),
                30,
            )
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert l3.valid and l3.checksum_mismatches == 0
            l3._check()
            assert not checker.bad

    run(main())


def test_client_v1_book_and_every_public_channel_typed() -> None:
    async def main() -> None:
        checker = Checker()
        async with (
            Simulator(seed=4, rate=100, pairs=["BTC/USD"]) as sim,
            Client(sim.url_v1, protocol="v1", policy=FAST) as client,
        ):
            seen: Counter[type] = Counter()

            def note(msg: Any) -> None:
                seen[type(msg)] += 1

            for channel, params in (
                ("ticker", {}),
                ("trade", {}),
                ("spread", {}),
                ("ohlc", {"interval": 1}),
            ):
                await client.subscribe(channel, ["XBT/USD"], on_message=note, **params)
            [book] = await client.subscribe_book(["XBT/USD"], depth=100, on_book=checker)
            await wait_until(
                lambda: (
                    book.checksums_verified >= 300
                    and all(seen[t] for t in (Ticker, Trade, Spread, Candle))
                ),
                30,
            )
            assert book.valid and book.checksum_mismatches == 0
            assert (book.depth, book.price_precision) == (100, book.price_precision)
            assert client.system_status == "online"
            assert not checker.bad

    run(main())


def test_client_subscription_errors_are_typed() -> None:
    async def main() -> None:
        async with (
            Simulator(seed=5, rate=20, pairs=["BTC/USD"]) as sim,
            Client(sim.url_v2, policy=FAST) as client,
        ):
            with pytest.raises(SubscriptionError) as unknown:
                await client.subscribe("ticker", ["NOPE/USD"])
            assert unknown.value.symbol == "NOPE/USD"
            with pytest.raises(SubscriptionError, match="depth"):
                await client.subscribe_book(["BTC/USD"], depth=42)  # refused before sending
            with pytest.raises(SubscriptionError, match="depth") as refused:
                await client.subscribe("book", ["BTC/USD"], depth=42)  # refused by the exchange
            assert refused.value.symbol == "BTC/USD"
            [book] = await client.subscribe_book(["BTC/USD"], depth=10)
            await wait_until(lambda: book.valid)

    run(main())


# -- faults --------------------------------------------------------------------------------


def test_fault_close_reconnects_and_restores_every_subscription() -> None:
    async def main() -> None:
        async with (
            Simulator(seed=6, rate=100, pairs=["BTC/USD", "ETH/USD"]) as sim,
            Client(sim.url_v2, policy=FAST) as client,
        ):
            books = await client.subscribe_book(["BTC/USD", "ETH/USD"], depth=10)
            await wait_until(lambda: all(b.checksums_verified > 20 for b in books))
            sim.faults.close()
            await wait_until(lambda: kinds(client).count("connected") == 2)
            before = [b.snapshots for b in books]
            await wait_until(lambda: all(b.valid and b.snapshots >= 2 for b in books))
            assert before  # every book was rebuilt from a new snapshot
            assert kinds(client).count("disconnected") == 1

    run(main())


def test_fault_silence_idle_watchdog_reconnects() -> None:
    async def main() -> None:
        async with (
            Simulator(seed=7, rate=50, pairs=["BTC/USD"]) as sim,
            Client(sim.url_v2, policy=FAST, idle_timeout=0.8) as client,
        ):
            [book] = await client.subscribe_book(["BTC/USD"])
            await wait_until(lambda: book.valid)
            sim.faults.silence()
            await wait_until(lambda: "idle_timeout" in kinds(client), 5)
            await wait_until(lambda: kinds(client).count("connected") >= 2 and book.valid, 10)

    run(main())


def test_fault_corrupt_checksum_resyncs_that_symbol_only() -> None:
    async def main() -> None:
        checker = Checker()
        async with (
            Simulator(seed=8, rate=200, pairs=["BTC/USD", "ETH/USD"]) as sim,
            Client(sim.url_v2, policy=FAST) as client,
        ):
            btc, eth = await client.subscribe_book(
                ["BTC/USD", "ETH/USD"], depth=10, on_book=checker
            )
            await wait_until(lambda: btc.checksums_verified > 20 and eth.checksums_verified > 20)
            sim.faults.corrupt_checksum(symbol="BTC/USD")
            await wait_until(lambda: "resync_done" in kinds(client, "BTC/USD"), 10)
            eth_during = eth.checksums_verified
            await wait_until(lambda: btc.valid and eth.checksums_verified > eth_during + 20)
            assert btc.checksum_mismatches == 1 and eth.checksum_mismatches == 0
            assert kinds(client, "BTC/USD")[:3] == [
                "checksum_mismatch",
                "resync_started",
                "resync_done",
            ]
            assert not any(
                e.symbol == "ETH/USD" for e in client.events_seen if e.kind.startswith("resync")
            )
            assert kinds(client).count("connected") == 1  # no reconnect for one bad book
            assert not checker.bad

    run(main())


@pytest.mark.parametrize("fault", ["skip", "duplicate"])
def test_fault_skip_or_duplicate_never_yields_a_wrong_valid_book(fault: str) -> None:
    async def main() -> None:
        checker = Checker()
        async with (
            Simulator(seed=9, rate=200, pairs=["BTC/USD"]) as sim,
            Client(
                sim.url_v2, level3_url=sim.url_v2, token=sim.issue_token(), policy=FAST
            ) as client,
        ):
            [l3] = await client.subscribe_level3(["BTC/USD"], on_book=checker)
            await wait_until(lambda: l3.checksums_verified > 20)
            getattr(sim.faults, fault)(symbol="BTC/USD", channel="level3", count=3)
            verified = l3.checksums_verified
            await wait_until(lambda: l3.valid and l3.checksums_verified > verified + 50, 15)
            assert not checker.bad
            logged = [r for r in sim.fault_log if r[1] == fault]
            assert logged  # the simulator really injected it

    run(main())


def test_fault_rate_limit_backs_off_and_subscribes() -> None:
    async def main() -> None:
        async with (
            Simulator(seed=10, rate=50, pairs=["BTC/USD", "ETH/USD"]) as sim,
            Client(sim.url_v2, policy=FAST) as client,
        ):
            sim.faults.rate_limit(count=2)
            books = await client.subscribe_book(["BTC/USD", "ETH/USD"])
            await wait_until(lambda: all(b.valid for b in books))
            assert "rate_limited" in kinds(client)

    run(main())


def test_fault_status_changes_surface_as_events() -> None:
    async def main() -> None:
        events: list[ClientEvent] = []
        async with (
            Simulator(seed=11, rate=50, pairs=["BTC/USD"]) as sim,
            Client(sim.url_v2, policy=FAST, on_event=events.append) as client,
        ):
            await client.subscribe_book(["BTC/USD"])
            for status in ("maintenance", "cancel_only", "post_only", "online"):
                sim.faults.status(status)
                await wait_until(lambda s=status: client.system_status == s)
            statuses = [e.detail for e in events if e.kind == "status"]
            assert statuses == ["online", "maintenance", "cancel_only", "post_only", "online"]

    run(main())


def test_fault_malformed_frame_invalidates_and_resyncs_books() -> None:
    async def main() -> None:
        checker = Checker()
        async with (
            Simulator(seed=12, rate=100, pairs=["BTC/USD"]) as sim,
            Client(sim.url_v2, policy=FAST) as client,
        ):
            [book] = await client.subscribe_book(["BTC/USD"], on_book=checker)
            await wait_until(lambda: book.checksums_verified > 10)
            sim.faults.malformed()
            await wait_until(lambda: "decode_error" in kinds(client))
            await wait_until(lambda: "resync_done" in kinds(client, "BTC/USD") and book.valid)
            assert not checker.bad

    run(main())


@pytest.mark.parametrize("fault", ["snapshot", "stall_reads"])
def test_fault_snapshot_or_stall_keeps_the_book_verified(fault: str) -> None:
    async def main() -> None:
        checker = Checker()
        async with (
            Simulator(seed=13, rate=100, pairs=["BTC/USD"]) as sim,
            Client(sim.url_v2, policy=FAST) as client,
        ):
            [book] = await client.subscribe_book(["BTC/USD"], on_book=checker)
            await wait_until(lambda: book.checksums_verified > 10)
            if fault == "snapshot":
                sim.faults.snapshot(symbol="BTC/USD", channel="book")
                await wait_until(lambda: book.snapshots >= 2)
            else:
                sim.faults.stall_reads(seconds=0.5)
                await asyncio.sleep(0.7)
            verified = book.checksums_verified
            await wait_until(lambda: book.checksums_verified > verified + 20)
            assert book.valid and book.checksum_mismatches == 0 and not checker.bad

    run(main())


# -- reconnect budget ----------------------------------------------------------------------


def test_reconnect_budget_never_exceeded_against_a_refusing_server() -> None:
    async def main() -> int:
        attempts = 0

        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal attempts
            attempts += 1
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        budget = ConnectionBudget(max_attempts=5, window=30.0)
        client = Client(
            f"ws://127.0.0.1:{port}/v2",
            budget=budget,
            connect_timeout=0.05,
            policy=ReconnectPolicy(initial=0.01, maximum=0.01, jitter=0.0),
        )
        start = asyncio.ensure_future(client.start())
        await asyncio.sleep(1.5)  # far longer than 5 attempts need without a budget
        start.cancel()
        await asyncio.gather(start, return_exceptions=True)
        await client.close()
        server.close()
        await server.wait_closed()
        assert budget.wait_time() > 25.0
        return attempts

    assert run(main()) == 5


def test_client_close_leaves_no_tasks_behind() -> None:
    async def main() -> None:
        async with Simulator(seed=14, rate=50, pairs=["BTC/USD"]) as sim:
            client = Client(sim.url_v2, policy=FAST)
            await client.start()
            [book] = await client.subscribe_book(["BTC/USD"])
            await wait_until(lambda: book.valid)
            await client.close()
            current = asyncio.current_task()
            leftover = [
                t
                for t in asyncio.all_tasks()
                if t is not current and "kbook/client" in repr(t.get_coro())
            ]
            assert not leftover

    run(main())


def test_subscribe_right_after_start_sends_each_subscription_once() -> None:
    async def main() -> None:
        frames: list[bytes] = []
        async with Simulator(seed=15, rate=50, pairs=["BTC/USD", "ETH/USD"]) as sim:
            client = Client(sim.url_v2, policy=FAST, recorder=frames.append)
            await client.start()
            books = await client.subscribe_book(["BTC/USD", "ETH/USD"], depth=10)
            await wait_until(lambda: all(b.valid for b in books))
            await sim.settle()  # a duplicate subscription's ack would have arrived by now
            await client.close()
        acks = [f for f in frames if b'"method":"subscribe"' in f and b'"channel":"book"' in f]
        assert len(acks) == 2 and all(b'"success":true' in f for f in acks)

    run(main())


def test_a_failing_callback_is_reported_and_the_feed_goes_on() -> None:
    async def main() -> None:
        calls = 0

        def explode(book: L2Book) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("strategy bug")

        async with (
            Simulator(seed=16, rate=100, pairs=["BTC/USD"]) as sim,
            Client(sim.url_v2, policy=FAST) as client,
        ):
            [book] = await client.subscribe_book(["BTC/USD"], on_book=explode)
            await wait_until(lambda: calls >= 20)
            assert book.valid and kinds(client).count("connected") == 1
            assert "callback_error" in kinds(client, "BTC/USD")

    run(main())
