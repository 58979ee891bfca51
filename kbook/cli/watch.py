"""``kbook watch``: a live view of one book, refreshed in place, then a summary.

The venue is a URL or the embedded simulator (``--sim``), started in-process on an ephemeral
loopback port. What it is not: a general UI toolkit; the view is plain ANSI text, redrawn a few
times a second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from typing import IO, Any

from kbook._core import L2Book, Level3Book
from kbook.cli._common import (
    add_connection_options,
    connection_kwargs,
    open_venue,
    reconnects,
    within,
)
from kbook.client import Client, ClientEvent
from kbook.errors import KBookError

__all__ = ["WatchResult", "add_parser", "cmd_watch", "watch"]


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
    connection: dict[str, Any] | None = None,
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

    async with open_venue(url, protocol, seed, rate, token) as (endpoint, tok):
        client = Client(endpoint, protocol=protocol,  # type: ignore[arg-type]
                        token=tok, on_event=on_event, level3_url=endpoint,
                        **(connection or {}))
        try:
            await within(deadline, f"connecting to {endpoint}", client.start())
            book: L2Book | Level3Book
            if level3:
                [book] = await within(deadline, f"subscribing to {symbol}",
                                       client.subscribe_level3([symbol], depth))
            else:
                [book] = await within(deadline, f"subscribing to {symbol}",
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
            result.reconnects = reconnects(client)
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
    result.reconnects = reconnects(client)
    if not live:
        out.write(_render(book, result, result.messages / max(result.seconds, 1e-9),
                          levels).replace("\x1b[32m", "").replace("\x1b[31m", "")
                  .replace("\x1b[0m", "") + "\n")


def cmd_watch(args: argparse.Namespace) -> int:
    """Run ``kbook watch``: a live view of one book, then a summary."""
    url = "sim" if args.sim else (args.url or None)
    if url is None:
        from kbook.client import ENDPOINTS

        url = ENDPOINTS[(args.protocol, "level3" if args.level3 else "public", False)]
    try:
        result = asyncio.run(watch(
            args.symbol, url=url, protocol=args.protocol, depth=args.depth, levels=args.levels,
            duration=args.duration, level3=args.level3, token=args.token, seed=args.seed,
            rate=args.rate, connection=connection_kwargs(args)))
    except KeyboardInterrupt:
        return 130
    except (OSError, KBookError) as exc:
        print(f"kbook watch: error: {exc}", file=sys.stderr)
        return 1
    print(f"{result.symbol}: {result.messages} messages in {result.seconds:.1f} s, "
          f"{result.checksums_verified} checksums verified, "
          f"{result.checksum_mismatches} mismatches, {result.resyncs} resyncs, "
          f"{result.reconnects} reconnects, book {'valid' if result.valid else 'INVALID'}"
          f"{'' if result.live else ' (disconnected)'}")
    return 0 if result.valid and result.checksums_verified > 0 else 1


def add_parser(commands: Any) -> None:
    """Add ``kbook watch`` to the ``kbook`` subcommands."""
    wat = commands.add_parser("watch", help="a live terminal view of one book")
    wat.add_argument("symbol", metavar="SYMBOL")
    wat.add_argument("--sim", action="store_true",
                     help="start the embedded simulator in-process and watch it")
    wat.add_argument("--url", help="WebSocket URL (default: Kraken's public endpoint)")
    wat.add_argument("--protocol", choices=("v2", "v1"), default="v2")
    wat.add_argument("--depth", type=int, default=10, help="subscribed depth")
    wat.add_argument("--levels", type=int, default=10, help="levels shown per side")
    wat.add_argument("--level3", action="store_true", help="watch the level3 book")
    wat.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    wat.add_argument("--token", help="WebSocket token for level3")
    wat.add_argument("--seed", type=int, default=1, help="simulator seed (--sim)")
    wat.add_argument("--rate", type=float, default=50.0,
                     help="simulator messages per second per pair (--sim)")
    add_connection_options(wat)
    wat.set_defaults(func=cmd_watch)
