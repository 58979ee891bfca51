"""The long-running commands behind ``kbook record`` and ``kbook watch``.

Both take a URL, or the embedded simulator (``sim``), which they start in-process on an
ephemeral loopback port. ``record`` writes every received message with its receive time in the
capture format ``kbook verify`` reads; ``watch`` draws a live view of one book, refreshing in
place, and ends with a summary.

What it is not: argument parsing (``kbook.cli``) or a general UI toolkit — the view is plain
ANSI text, redrawn a few times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO, Any

from kbook._core import L2Book, Level3Book
from kbook.client import Client, ClientError, ClientEvent

__all__ = ["RecordResult", "WatchResult", "record", "watch"]


@contextlib.asynccontextmanager
async def _endpoint(url: str, protocol: str, seed: int, rate: float | None,
                    token: str | None) -> AsyncIterator[tuple[str, str | None]]:
    """Yield ``(url, token)``: the given URL, or the embedded simulator's when ``url == 'sim'``."""
    if url != "sim":
        yield url, token
        return
    from kbook.sim import Simulator

    async with Simulator(seed=seed, rate=rate) as sim:
        yield (sim.url_v2 if protocol == "v2" else sim.url_v1), (token or sim.issue_token())


#: how long a command without ``duration`` waits for its subscription before giving up
SETUP_TIMEOUT = 30.0


async def _within(deadline: float | None, what: str, coro: Any) -> Any:
    """Await ``coro`` before ``deadline`` (monotonic; None: SETUP_TIMEOUT from now)."""
    limit = SETUP_TIMEOUT if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        return await asyncio.wait_for(coro, limit)
    except TimeoutError:
        raise ClientError(f"{what}: not done within {limit:.1f} s") from None


def _reconnects(client: Client) -> int:
    """Reconnections over all of a client's connections (a first connect is no reconnect)."""
    return sum(max(0, conn.connects - 1) for conn in client.connections)


@dataclass
class RecordResult:
    """What :func:`record` wrote."""

    path: str
    frames: int = 0
    seconds: float = 0.0
    events: list[ClientEvent] = field(default_factory=list)


async def record(
    url: str,
    channel: str,
    symbols: list[str],
    out: str,
    *,
    protocol: str = "v2",
    depth: int | None = None,
    interval: int | None = None,
    duration: float | None = None,
    count: int | None = None,
    compress: bool | None = None,
    token: str | None = None,
    seed: int = 1,
    rate: float | None = 50.0,
) -> RecordResult:
    """Record a subscription's frames (with receive times) until ``duration`` or ``count``.

    A v2 ``book`` or ``level3`` recording also holds the ``instrument`` snapshot and the
    subscribe acks, so ``kbook verify`` needs no flags to check it. The whole run, connecting
    and subscribing included, ends by ``duration``. Frames go to ``out + ".partial"``, renamed
    to ``out`` once the run ends with at least one frame; a run that fails (the venue cannot
    be reached, the subscription is refused, nothing arrived) leaves no file and raises.

    :raises ConnectFailed: the venue could not be reached
    :raises ClientError: the subscription was not confirmed in time, or no frame arrived
    """
    if duration is None and count is None:
        raise ValueError("give duration or count")
    result = RecordResult(out)
    done = asyncio.Event()
    compress = out.endswith(".gz") if compress is None else compress
    partial = out + ".partial"
    sink: Any = gzip.open(partial, "wb") if compress else open(partial, "wb")  # noqa: SIM115

    def write(frame: bytes) -> None:
        if done.is_set():
            return
        sink.write(b"%.6f: " % time.time() + frame + b"\n")
        result.frames += 1
        if count is not None and result.frames >= count:
            done.set()

    start = time.monotonic()
    deadline = None if duration is None else start + duration
    ok = False
    try:
        async with _endpoint(url, protocol, seed, rate, token) as (endpoint, tok):
            client = Client(endpoint, protocol=protocol,  # type: ignore[arg-type]
                            token=tok, recorder=write, level3_url=endpoint)
            try:
                await _within(deadline, f"connecting to {endpoint}", client.start())
                params: dict[str, Any] = {}
                if interval is not None:
                    params["interval"] = interval
                if channel == "book":
                    subscribing: Any = client.subscribe_book(symbols, depth or 10)
                elif channel == "level3":
                    subscribing = client.subscribe_level3(symbols, depth or 10)
                elif channel in ("instrument", "status", "heartbeat"):
                    subscribing = client.subscribe(channel, None, **params)
                else:
                    subscribing = client.subscribe(channel, symbols, **params)
                await _within(deadline, f"subscribing to {channel}", subscribing)
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), remaining)
                done.set()
                result.events = list(client.events_seen)
            finally:
                await client.close()
        ok = result.frames > 0
        if not ok:
            raise ClientError(f"no frame received from {url}")
    finally:
        sink.close()
        if ok:
            os.replace(partial, out)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
    result.seconds = time.monotonic() - start
    return result


@dataclass
class WatchResult:
    """The summary :func:`watch` prints at the end."""

    symbol: str
    seconds: float = 0.0
    messages: int = 0
    checksums_verified: int = 0
    checksum_mismatches: int = 0
    resyncs: int = 0
    reconnects: int = 0
    valid: bool = False
    live: bool = False
    status: str | None = None


def _fmt_levels(book: L2Book | Level3Book, levels: int, width: int) -> list[str]:
    asks = book.asks_str(levels)
    bids = book.bids_str(levels)
    rows = []
    for price, qty in reversed(asks):
        rows.append(f"  {'':>{width}}  {price:>14}  {qty:<{width}}  ask")
    best_bid, best_ask = book.bids(1), book.asks(1)
    if best_bid and best_ask:
        spread = book.price_text(best_ask[0][0] - best_bid[0][0])
        rows.append(f"  {'spread ' + spread:^{2 * width + 18}}")
    else:
        rows.append("")
    for price, qty in bids:
        rows.append(f"  {qty:>{width}}  {price:>14}  {'':<{width}}  bid")
    return rows


def _render(book: L2Book | Level3Book, result: WatchResult, rate: float, levels: int) -> str:
    if not result.live:
        state = "\x1b[31mDISCONNECTED\x1b[0m"
    else:
        state = "\x1b[32mvalid\x1b[0m" if book.valid else "\x1b[31mINVALID\x1b[0m"
    head = (f"kbook watch  {book.symbol}  depth {book.depth}  {state}  "
            f"{rate:8.1f} msg/s  verified {book.checksums_verified}  "
            f"mismatches {book.checksum_mismatches}  resyncs {result.resyncs}  "
            f"status {result.status or '-'}")
    return "\n".join([head, "", *_fmt_levels(book, levels, 18), ""])


async def watch(
    symbol: str,
    *,
    url: str = "sim",
    protocol: str = "v2",
    depth: int = 10,
    levels: int = 10,
    duration: float | None = None,
    refresh: float = 0.25,
    level3: bool = False,
    token: str | None = None,
    seed: int = 1,
    rate: float | None = 50.0,
    out: IO[str] = sys.stdout,
    live: bool | None = None,
) -> WatchResult:
    """Show one book live until ``duration`` (or interrupted); return the summary.

    The whole run, connecting and subscribing included, ends by ``duration``. The summary's
    ``valid`` is the book's state at the end: a book whose connection was lost is invalid.

    :raises ConnectFailed: the venue could not be reached
    :raises ClientError: the subscription was not confirmed in time
    """
    result = WatchResult(symbol)
    live = out.isatty() if live is None else live
    start = time.monotonic()
    deadline = None if duration is None else start + duration

    def on_event(event: ClientEvent) -> None:
        if event.kind == "resync_started":
            result.resyncs += 1
        elif event.kind == "status":
            result.status = event.detail

    async with _endpoint(url, protocol, seed, rate, token) as (endpoint, tok):
        client = Client(endpoint, protocol=protocol,  # type: ignore[arg-type]
                        token=tok, on_event=on_event, level3_url=endpoint)
        try:
            await _within(deadline, f"connecting to {endpoint}", client.start())
            book: L2Book | Level3Book
            if level3:
                [book] = await _within(deadline, f"subscribing to {symbol}",
                                       client.subscribe_level3([symbol], depth))
            else:
                [book] = await _within(deadline, f"subscribing to {symbol}",
                                       client.subscribe_book([symbol], depth))
            await _watch_loop(client, book, result, start, duration, refresh, levels, out, live)
        finally:
            await client.close()
    return result


async def _watch_loop(client: Client, book: L2Book | Level3Book, result: WatchResult,
                      start: float, duration: float | None, refresh: float, levels: int,
                      out: IO[str], live: bool) -> None:
    conns = [c for c in client.connections if book in c.feed.books.values()]
    if live:
        out.write("\x1b[2J")
    last_count, last_time = book.messages, time.monotonic()
    try:
        while duration is None or time.monotonic() - start < duration:
            await asyncio.sleep(refresh)
            now = time.monotonic()
            msg_rate = (book.messages - last_count) / max(now - last_time, 1e-9)
            last_count, last_time = book.messages, now
            result.live = all(c.connected.is_set() for c in conns)
            result.reconnects = _reconnects(client)
            if live:
                out.write("\x1b[H" + _render(book, result, msg_rate, levels)
                          + "\x1b[J")
                out.flush()
    except asyncio.CancelledError:
        pass
    result.seconds = time.monotonic() - start
    result.messages = book.messages
    result.checksums_verified = book.checksums_verified
    result.checksum_mismatches = book.checksum_mismatches
    result.live = all(c.connected.is_set() for c in conns)
    result.valid = book.valid and result.live
    result.reconnects = _reconnects(client)
    if not live:
        out.write(_render(book, result, result.messages / max(result.seconds, 1e-9),
                          levels).replace("\x1b[32m", "").replace("\x1b[31m", "")
                  .replace("\x1b[0m", "") + "\n")
