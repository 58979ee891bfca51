"""Truth under failure, end to end: every way a feed can fail, against the simulator's faults.

Each test reproduces one failure over real loopback sockets and asserts what a strategy relies
on: the callback never sees an invalid, stale or wrong book (books are compared with the
simulator's own market while it is held still), every failure is an event and a log record, and
the client converges (books valid again) or answers with a typed error in bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kbook import L2Book
from kbook.cli.record import record
from kbook.cli.watch import watch
from kbook.client import (
    CallbackError,
    Client,
    ConnectFailed,
    QueueOverflow,
    ReconnectPolicy,
    RequestTimeout,
)
from kbook.messages import Execution
from kbook.sim import Simulator
from kbook.trading import AddOrder
from kbook.trading.auth import Credentials, TokenProvider
from kbook.trading.session import PrivateSession
from tests.integration.simclient import BookChecker, events, free_port, kinds, run, wait_until

FAST = ReconnectPolicy(initial=0.05, maximum=0.2, first_connect_timeout=3.0)
BTC, ETH = "BTC/USD", "ETH/USD"


async def held_equal_to_truth(sim: Simulator, books: list[L2Book]) -> None:
    """Hold the markets, let the client catch up, and compare every level with the truth."""
    sim.venue.hold()
    try:
        await wait_until(lambda: all(b.valid for b in books), 10)
        await sim.settle()  # everything sent before the hold has reached the client's books
        for book in books:
            market = sim.venue.markets[book.symbol]
            truth = (market.bids.top(book.depth), market.asks.top(book.depth))
            assert (book.bids(), book.asks()) == truth, book.symbol
    finally:
        sim.venue.release()


def new_tasks(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """Tasks still running that were not running at ``before`` (the test's own excepted)."""
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]


# -- liveness --------------------------------------------------------------------------------


def test_liveness_server_gone_books_go_stale_at_once_with_an_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        checker = BookChecker()
        sim = Simulator(seed=11, rate=100, pairs=[BTC, ETH])
        await sim.start()
        client = Client(sim.url_v2, policy=FAST)
        await client.start()
        books = await client.subscribe_book([BTC, ETH], depth=10, on_book=checker)
        await wait_until(lambda: all(b.checksums_verified > 5 for b in books))
        assert all(b.received_ns > 0 for b in books)
        calls = sum(checker.calls.values())
        await sim.stop()  # the venue is gone; reconnects are refused
        await wait_until(lambda: not any(b.valid for b in books), 5)
        [stale] = events(client, "books_stale")
        assert sorted(stale.detail["symbols"]) == [BTC, ETH]
        assert "closed by the server" in stale.detail["reason"]
        await asyncio.sleep(0.5)
        assert sum(checker.calls.values()) == calls  # no callback on a dead feed
        assert not checker.bad
        assert any(
            "disconnected from" in r.getMessage() and r.levelno == logging.WARNING
            for r in caplog.records
        )
        await client.close()

    run(main())


def test_liveness_silent_server_is_dropped_and_books_recover_equal_to_truth() -> None:
    async def main() -> None:
        checker = BookChecker()
        async with (
            Simulator(seed=12, rate=100, pairs=[BTC]) as sim,
            Client(sim.url_v2, policy=FAST, idle_timeout=1.0) as client,
        ):
            [book] = await client.subscribe_book([BTC], depth=25, on_book=checker)
            await wait_until(lambda: book.checksums_verified > 5)
            sim.faults.silence(seconds=3.0)
            await wait_until(lambda: "books_stale" in kinds(client), 5)
            assert not book.valid
            [stale] = events(client, "books_stale")
            assert stale.detail["reason"].startswith("no message for")
            await held_equal_to_truth(sim, [book])
            assert not checker.bad

    run(main())


def test_watch_summary_tells_the_truth_when_the_venue_goes_away() -> None:
    async def main() -> None:
        sim = Simulator(seed=13, rate=50, pairs=[BTC])
        await sim.start()

        async def stop_later() -> None:
            await asyncio.sleep(1.5)
            await sim.stop()

        stopper = asyncio.ensure_future(stop_later())
        out = open(os.devnull, "w")  # noqa: SIM115
        try:
            result = await watch(BTC, url=sim.url_v2, duration=3.0, out=out, live=False)
        finally:
            out.close()
            await stopper
        assert result.checksums_verified > 0
        assert not result.valid and not result.live
        assert result.reconnects == 0

    run(main())


# -- attribution -----------------------------------------------------------------------------


def test_bad_second_entry_resyncs_every_book_the_frame_named() -> None:
    async def main() -> None:
        checker = BookChecker()
        async with (
            Simulator(seed=14, rate=200, pairs=[BTC, ETH]) as sim,
            Client(sim.url_v2, policy=FAST) as client,
        ):
            books = await client.subscribe_book([BTC, ETH], depth=100, on_book=checker)
            await wait_until(lambda: all(b.checksums_verified > 5 for b in books))
            sim.faults.bad_entry(symbol=ETH, other=BTC)
            await wait_until(lambda: "decode_error" in kinds(client), 5)
            [error] = events(client, "decode_error")
            assert set(error.detail.symbols) == {BTC, ETH}
            await wait_until(
                lambda: {e.symbol for e in events(client, "resync_done")} == {BTC, ETH}, 10
            )
            await held_equal_to_truth(sim, books)  # every level of depth 100, not the top 10
            assert not checker.bad

    run(main())


@pytest.mark.parametrize("kind", ["ticker", "garbage", "whitespace"])
def test_malformed_frame_of_another_channel_never_touches_books(kind: str) -> None:
    async def main() -> None:
        async with (
            Simulator(seed=15, rate=100, pairs=[BTC, ETH]) as sim,
            Client(sim.url_v2, policy=FAST) as client,
        ):
            books = await client.subscribe_book([BTC, ETH], depth=10)
            await wait_until(lambda: all(b.checksums_verified > 5 for b in books))
            sim.faults.malformed(kind=kind)
            await wait_until(lambda: "decode_error" in kinds(client), 5)
            verified = [b.checksums_verified for b in books]
            await wait_until(
                lambda: all(
                    b.checksums_verified > v + 5 for b, v in zip(books, verified, strict=True)
                )
            )
            assert "resync_started" not in kinds(client)
            assert all(b.valid for b in books)

    run(main())


def test_frame_with_several_entries_notifies_every_book_and_fails_every_bad_one() -> None:
    async def main() -> None:
        checker = BookChecker()
        async with (
            Simulator(seed=16, rate=50, pairs=[BTC, ETH]) as sim,
            Client(sim.url_v2, policy=FAST) as client,
        ):
            books = await client.subscribe_book([BTC, ETH], depth=10, on_book=checker)
            await wait_until(lambda: all(b.checksums_verified > 3 for b in books))
            sim.venue.hold()
            await asyncio.sleep(0.3)
            calls = dict(checker.calls)

            def frame(checksums: list[int]) -> bytes:
                data = [
                    {
                        "symbol": b.symbol,
                        "bids": [],
                        "asks": [],
                        "checksum": c,
                        "timestamp": "2023-11-14T22:13:20.000000Z",
                    }
                    for b, c in zip(books, checksums, strict=True)
                ]
                return json.dumps({"channel": "book", "type": "update", "data": data}).encode()

            [conn] = sim.connections
            conn.fault_raw(frame([b.checksum() for b in books]))
            await wait_until(
                lambda: all(checker.calls[b.symbol] > calls[b.symbol] for b in books), 5
            )
            conn.fault_raw(frame([b.checksum() ^ 1 for b in books]))
            # both mismatches are reported and resynced at once, not after a watchdog period
            await wait_until(
                lambda: {e.symbol for e in events(client, "checksum_mismatch")} == {BTC, ETH}, 2
            )
            await wait_until(
                lambda: {e.symbol for e in events(client, "resync_started")} == {BTC, ETH}, 2
            )
            sim.venue.release()
            await held_equal_to_truth(sim, books)
            assert not checker.bad

    run(main())


@pytest.mark.parametrize(("notify_depth", "notified"), [(25, True), (10, False)])
def test_notify_depth_above_ten_sees_changes_below_rank_ten(
    notify_depth: int, notified: bool
) -> None:
    async def main() -> None:
        checker = BookChecker()
        async with (
            Simulator(seed=17, rate=50, pairs=[BTC]) as sim,
            Client(sim.url_v2, policy=FAST) as client,
        ):
            [book] = await client.subscribe_book(
                [BTC], depth=25, on_book=checker, notify_depth=notify_depth
            )
            await wait_until(lambda: book.checksums_verified > 3 and len(book.bids()) > 15)
            sim.venue.hold()
            await asyncio.sleep(0.3)
            calls = checker.calls[BTC]
            ticks, lots = book.bids(16)[15]  # rank 15: below every checksum rank
            price = book.price_text(ticks)
            qty = book.qty_text(lots + 1)
            frame = json.dumps(
                {
                    "channel": "book",
                    "type": "update",
                    "data": [
                        {
                            "symbol": BTC,
                            "bids": [{"price": float(price), "qty": float(qty)}],
                            "asks": [],
                            "checksum": book.checksum(),
                            "timestamp": "2023-11-14T22:13:20.000000Z",
                        }
                    ],
                }
            ).encode()
            [conn] = sim.connections
            messages = book.messages
            conn.fault_raw(frame)
            await wait_until(lambda: book.messages > messages, 5)
            assert book.top_changed == 15 and book.valid
            assert (checker.calls[BTC] > calls) is notified
            sim.venue.release()

    run(main())


# -- subscriptions converge ------------------------------------------------------------------


def test_lost_answer_after_reconnect_is_retried_with_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        checker = BookChecker()
        async with (
            Simulator(seed=18, rate=100, pairs=[BTC, ETH]) as sim,
            Client(sim.url_v2, policy=FAST, request_timeout=1.0) as client,
        ):
            books = await client.subscribe_book([BTC, ETH], depth=10, on_book=checker)
            await wait_until(lambda: all(b.checksums_verified > 3 for b in books))
            # the reconnect's first answers (the instrument's, then the books') are lost
            sim.faults.lose_answers(count=2, next_connection=True)
            sim.faults.close()
            await wait_until(lambda: "subscription_retry" in kinds(client), 10)
            await wait_until(lambda: all(s.active for s in client.connections[0].subs.values()), 10)
            await held_equal_to_truth(sim, books)
            assert not checker.bad
        assert any(
            "retrying" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
        )

    run(main())


def test_lost_instrument_snapshot_is_asked_again() -> None:
    async def main() -> None:
        async with (
            Simulator(seed=19, rate=100, pairs=[BTC]) as sim,
            Client(sim.url_v2, policy=FAST, request_timeout=1.0) as client,
        ):
            [book] = await client.subscribe_book([BTC], depth=10)
            await wait_until(lambda: book.checksums_verified > 3)
            conn = client.connections[0]
            connects = conn.connects
            sim.faults.close()
            await wait_until(lambda: conn.connects > connects and bool(sim.connections), 5)
            sim.faults.skip(channel="instrument")
            await wait_until(lambda: book.valid and book.checksums_verified > 3, 15)

    run(main())


def test_first_connect_lost_answer_raises_and_keeps_retrying() -> None:
    async def main() -> None:
        async with (
            Simulator(seed=20, rate=100, pairs=[BTC]) as sim,
            Client(
                sim.url_v2, policy=FAST, request_timeout=1.0, precisions={BTC: (1, 8)}
            ) as client,
        ):
            sim.faults.lose_answers(count=1)
            with pytest.raises(RequestTimeout):
                await client.subscribe_book([BTC], depth=10)
            book = client.book(BTC)
            assert book is not None
            await wait_until(lambda: book.valid and book.checksums_verified > 3, 10)
            sub = client.connections[0].subs[("book", BTC)]
            await wait_until(lambda: sub.active, 10)  # the background retry confirmed it

    run(main())


@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_rate_limit_of_either_spelling_retries_the_same_symbols(protocol: str) -> None:
    async def main() -> None:
        async with Simulator(seed=21, rate=100, pairs=[BTC, ETH]) as sim:
            url = sim.url_v2 if protocol == "v2" else sim.url_v1
            symbols = [BTC, ETH] if protocol == "v2" else ["XBT/USD", "ETH/USD"]
            async with Client(
                url,
                protocol=protocol,
                policy=FAST,  # type: ignore[arg-type]
                request_timeout=2.0,
            ) as client:
                await client.start()
                sim.faults.rate_limit(count=1, bare=protocol == "v1")
                books = await client.subscribe_book(symbols, depth=10)
                await wait_until(
                    lambda: all(b.valid and b.checksums_verified > 2 for b in books), 10
                )
                assert "rate_limited" in kinds(client)
                assert sorted(
                    s.symbol
                    for s in client.connections[0].subs.values()
                    if s.channel == "book" and s.active
                ) == sorted(symbols)

    run(main())


# -- failing is an answer --------------------------------------------------------------------


def test_unreachable_venue_fails_in_bounded_time_with_url_and_cause() -> None:
    async def main() -> None:
        before = asyncio.all_tasks()
        url = f"ws://127.0.0.1:{free_port()}/v2"
        client = Client(url, policy=ReconnectPolicy(initial=0.1, first_connect_timeout=1.5))
        start = time.monotonic()
        with pytest.raises(ConnectFailed) as failed:
            await client.start()
        assert time.monotonic() - start < 10
        assert failed.value.url == url and "refused" in failed.value.cause
        assert "gave_up" in kinds(client)
        await asyncio.sleep(0.2)
        assert not new_tasks(before)

    run(main())


@pytest.mark.parametrize(("status", "permanent"), [(503, False), (403, True)])
def test_http_error_on_upgrade_is_a_typed_failure(status: int, permanent: bool) -> None:
    async def main() -> None:
        async with Simulator(seed=22, rate=50, pairs=[BTC]) as sim:
            sim.faults.refuse_upgrades(status)
            client = Client(
                sim.url_v2,
                policy=ReconnectPolicy(initial=0.05, maximum=0.1, first_connect_timeout=1.5),
            )
            with pytest.raises(ConnectFailed) as failed:
                await client.start()
            assert f"HTTP {status}" in failed.value.cause
            assert failed.value.permanent is permanent
            attempts = kinds(client).count("connect_failed")
            assert (attempts == 1) if permanent else (attempts > 1)
            await client.close()

    run(main())


def test_cancelled_start_leaves_nothing_running() -> None:
    async def main() -> None:
        before = asyncio.all_tasks()
        client = Client(
            f"ws://127.0.0.1:{free_port()}/v2",
            policy=ReconnectPolicy(initial=0.05, maximum=0.1, first_connect_timeout=None),
        )
        task = asyncio.ensure_future(client.start())
        await wait_until(lambda: kinds(client).count("connect_failed") >= 2, 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        attempts = kinds(client).count("connecting")
        await asyncio.sleep(0.5)
        assert kinds(client).count("connecting") == attempts
        assert not new_tasks(before)

    run(main())


def test_refused_credentials_and_a_silent_token_source_fail_fast() -> None:
    async def main() -> None:
        async with Simulator(seed=23, rate=50, pairs=[BTC]) as sim:
            _, secret = sim.add_account()
            bad = TokenProvider(Credentials("nope", secret), rest_url=sim.rest_url)
            client = Client(sim.url_v2, token=bad, policy=FAST)
            await client.start()
            with pytest.raises(ConnectFailed) as refused:
                await client.open_private()
            assert refused.value.permanent and "Invalid key" in refused.value.cause
            assert kinds(client).count("connect_failed") == 1
            await client.close()

            async def never() -> str:
                await asyncio.Event().wait()
                return ""

            client = Client(
                sim.url_v2,
                token=never,
                request_timeout=0.3,
                policy=ReconnectPolicy(initial=0.05, first_connect_timeout=1.0),
            )
            await client.start()
            with pytest.raises(ConnectFailed, match="no token"):
                await client.open_private()
            await client.close()

    run(main())


def _kbook(*args: str, timeout: float = 40.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kbook", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_cli_unreachable_venue_one_line_non_zero_exit_no_file(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}/v2"
    start = time.monotonic()
    watched = _kbook("watch", BTC, "--url", url, "--duration", "30")
    assert watched.returncode != 0
    assert time.monotonic() - start < 20
    lines = [ln for ln in watched.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and url in lines[0], watched.stderr
    out = tmp_path / "rec.capture"
    recorded = _kbook(
        "record", url, "--channel", "book", "--symbols", BTC, "--duration", "5", "-o", str(out)
    )
    assert recorded.returncode != 0
    assert [p.name for p in tmp_path.iterdir()] == []


def test_cli_duration_bounds_a_venue_that_never_answers(tmp_path: Path) -> None:
    async def main() -> tuple[float, int, list[str]]:
        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read(-1)  # accepts, reads, never answers the upgrade
            finally:
                writer.close()

        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        out = tmp_path / "rec.capture"
        start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kbook",
            "record",
            f"ws://127.0.0.1:{port}/v2",
            "--channel",
            "book",
            "--symbols",
            BTC,
            "--duration",
            "3",
            "-o",
            str(out),
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        server.close()
        await server.wait_closed()
        return time.monotonic() - start, proc.returncode or 0, err.decode().splitlines()

    elapsed, code, err = run(main(), 40)
    assert code != 0 and elapsed < 12
    assert len([ln for ln in err if ln.strip()]) == 1, err
    assert list(tmp_path.iterdir()) == []


# -- no silent loss ----------------------------------------------------------------------------


def test_full_message_queue_reports_what_it_dropped(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with (
            Simulator(seed=24, rate=2000, pairs=[BTC]) as sim,
            Client(sim.url_v2, policy=FAST) as client,
        ):
            stream = client.messages("trade", maxsize=5)
            first = asyncio.ensure_future(anext(stream))
            await client.subscribe("trade", [BTC])
            await first
            await wait_until(lambda: "messages_dropped" in kinds(client), 10)
            [dropped, *_] = events(client, "messages_dropped")
            assert dropped.detail["dropped"] >= 1 and dropped.detail["channel"] == "trade"
            await stream.aclose()

            overflow = client.messages("trade", maxsize=5, overflow="error")
            with pytest.raises(QueueOverflow) as lost:
                # on a loaded machine one socket read can carry more than five trades, so
                # even the first read may be the one that reports the loss
                await anext(overflow)
                await asyncio.sleep(1.0)  # trades pile up while nobody reads
                for _ in range(10):
                    await anext(overflow)
            assert lost.value.dropped >= 1
            await overflow.aclose()
        assert any(
            "dropped" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
        )

    run(main())


def test_callback_exception_is_logged_with_traceback_or_stops_the_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(book: L2Book) -> None:
        raise RuntimeError("strategy bug")

    async def main() -> None:
        async with Simulator(seed=25, rate=100, pairs=[BTC]) as sim:
            async with Client(sim.url_v2, policy=FAST) as client:
                [book] = await client.subscribe_book([BTC], depth=10, on_book=boom)
                await wait_until(lambda: book.checksums_verified > 20)
                assert "callback_error" in kinds(client) and book.valid
            errors = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert errors and errors[0].exc_info is not None
            assert len(errors) < 5  # rate-limited, not one per frame

            client = Client(sim.url_v2, policy=FAST, callback_errors="raise")
            await client.start()
            await client.subscribe_book([BTC], depth=10, on_book=boom)
            with pytest.raises(CallbackError) as stopped:
                await asyncio.wait_for(client.wait(), 5)
            assert isinstance(stopped.value.__cause__, RuntimeError)
            await client.close()

    run(main())


def test_quiet_connection_is_not_churned_by_the_idle_watchdog() -> None:
    async def main() -> None:
        async with (
            Simulator(seed=26, rate=50, pairs=[BTC]) as sim,
            Client(
                sim.url_v2, policy=FAST, idle_timeout=0.3, ping_interval=0.5, pong_timeout=0.3
            ) as client,
        ):
            await asyncio.sleep(3.0)  # no subscription: only pings and pongs
            assert client.connections[0].connects == 1
            assert "idle_timeout" not in kinds(client)

    run(main())


def test_fills_reach_listeners_once_across_reconnects() -> None:
    async def main() -> None:
        async with Simulator(seed=27, rate=50, pairs=[BTC]) as sim:
            key, secret = sim.add_account()
            provider = TokenProvider(Credentials(key, secret), rest_url=sim.rest_url)
            async with Client(
                sim.url_v2, token=provider, policy=FAST, precisions={BTC: (1, 8)}
            ) as client:
                private = PrivateSession(client, request_timeout=3.0)  # endpoint from client
                await private.start()
                fills: Counter[str] = Counter()
                private.on_message(
                    lambda m: (
                        isinstance(m, Execution)
                        and m.exec_type == "trade"
                        and fills.update([m.exec_id or ""])
                    )
                )
                for _ in range(2):
                    done = await private.add_order(
                        AddOrder(
                            order_type="market", side="buy", order_qty=Decimal("0.01"), symbol=BTC
                        )
                    )
                    await wait_until(lambda d=done: d.order_id in private.closed)
                await wait_until(lambda: sum(fills.values()) >= 2)
                conn = next(c for c in client.connections if c.name == "private")
                for _ in range(3):
                    connects = conn.connects
                    sim.faults.close(conn=sim.connections[-1])  # the private one
                    await wait_until(lambda n=connects: conn.connects > n, 10)
                    await wait_until(lambda: conn.subs[("executions", None)].active, 10)
                await wait_until(lambda: private.duplicate_fills >= 1, 10)
                assert fills and all(n == 1 for n in fills.values()), fills

    run(main())


# -- smaller lies ----------------------------------------------------------------------------


def test_instrument_is_subscribed_once_per_connection() -> None:
    async def main() -> None:
        frames: list[bytes] = []
        async with (
            Simulator(seed=28, rate=50, pairs=[BTC, ETH]) as sim,
            Client(sim.url_v2, policy=FAST, recorder=frames.append) as client,
        ):
            await client.subscribe_book([BTC], depth=10)
            await client.subscribe_book([ETH], depth=10)
            conn = client.connections[0]
            sim.faults.close()
            await wait_until(
                lambda: conn.connects == 2 and all(s.active for s in conn.subs.values()), 10
            )
            await asyncio.sleep(0.5)
        assert not [f for f in frames if b"Already subscribed" in f]
        acks = [f for f in frames if b'"channel":"instrument"' in f and b'"method"' in f]
        assert len(acks) == 2, acks  # one per connection

    run(main())


def test_level3_watch_counts_no_reconnect() -> None:
    async def main() -> None:
        async with Simulator(seed=29, rate=50, pairs=[BTC]) as sim:
            out = open(os.devnull, "w")  # noqa: SIM115
            try:
                result = await watch(
                    BTC,
                    url=sim.url_v2,
                    duration=2.0,
                    level3=True,
                    token=sim.issue_token(),
                    out=out,
                    live=False,
                )
            finally:
                out.close()
        assert result.reconnects == 0 and result.valid and result.live

    run(main())


def test_verify_depth_applies_to_level3_books_without_an_ack(tmp_path: Path) -> None:
    capture = tmp_path / "l3.capture"
    run(record("sim", "level3", [BTC], str(capture), depth=100, count=400, rate=200.0))
    stripped = tmp_path / "noack.capture"
    lines = capture.read_bytes().splitlines(keepends=True)
    stripped.write_bytes(b"".join(ln for ln in lines if b'"method":"subscribe"' not in ln))
    assert len(lines) > len(stripped.read_bytes().splitlines())
    result = _kbook("verify", str(stripped), "--depth", "100", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    [symbol] = [s for s in report["symbols"] if s["protocol"] == "l3"]
    assert symbol["depth"] == 100 and symbol["depth_source"] == "--depth"


def test_record_writes_the_file_only_when_done(tmp_path: Path) -> None:
    out = tmp_path / "book.capture.gz"
    result = run(record("sim", "book", [BTC], str(out), depth=10, count=50))
    assert result.frames == 50 and out.exists()
    assert not (tmp_path / "book.capture.gz.partial").exists()
    with gzip.open(out) as f:
        assert len(f.read().splitlines()) == 50
