"""``kbook record``: write a subscription's frames, with receive times, to a capture file.

The venue is a URL or the embedded simulator (``sim``), started in-process on an ephemeral
loopback port. The capture is the format ``kbook verify`` reads (see :mod:`kbook.capture`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from kbook.capture import CaptureWriter
from kbook.cli._common import (
    EXIT_UNREADABLE,
    add_connection_options,
    connection_kwargs,
    open_venue,
    within,
)
from kbook.client import Client, ClientError, ClientEvent
from kbook.errors import KBookError

__all__ = ["RecordResult", "add_parser", "cmd_record", "record"]


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
    connection: dict[str, Any] | None = None,
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
    sink = CaptureWriter(out, compress=compress)

    def write(frame: bytes) -> None:
        if done.is_set():
            return
        sink.write(frame)
        result.frames += 1
        if count is not None and result.frames >= count:
            done.set()

    start = time.monotonic()
    deadline = None if duration is None else start + duration
    ok = False
    try:
        async with open_venue(url, protocol, seed, rate, token) as (endpoint, tok):
            client = Client(endpoint, protocol=protocol,  # type: ignore[arg-type]
                            token=tok, recorder=write, level3_url=endpoint,
                            **(connection or {}))
            try:
                await within(deadline, f"connecting to {endpoint}", client.start())
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
                await within(deadline, f"subscribing to {channel}", subscribing)
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
        if ok:
            sink.commit()
        else:
            sink.discard()
    result.seconds = time.monotonic() - start
    return result


def cmd_record(args: argparse.Namespace) -> int:
    """Run ``kbook record``: write received frames, with receive times, to a capture file."""
    if args.duration is None and args.count is None:
        print("kbook record: error: give --duration or --count", file=sys.stderr)
        return EXIT_UNREADABLE
    symbols = [s for s in (args.symbols or "").split(",") if s]
    try:
        result = asyncio.run(record(
            args.url, args.channel, symbols, args.output, protocol=args.protocol,
            depth=args.depth, interval=args.interval, duration=args.duration, count=args.count,
            compress=args.gzip or None, token=args.token, seed=args.seed, rate=args.rate,
            connection=connection_kwargs(args)))
    except KeyboardInterrupt:
        return 130
    except (OSError, KBookError) as exc:
        print(f"kbook record: error: {exc}", file=sys.stderr)
        return 1
    print(f"recorded {result.frames} frames in {result.seconds:.1f} s to {result.path}")
    return 0


def add_parser(commands: Any) -> None:
    """Add ``kbook record`` to the ``kbook`` subcommands."""
    rec = commands.add_parser(
        "record", help="record a subscription's frames to a capture file (kbook verify reads it)")
    rec.add_argument("url", metavar="URL",
                     help="WebSocket URL, or 'sim' for the embedded simulator")
    rec.add_argument("--channel", default="book",
                     choices=("book", "level3", "ticker", "trade", "ohlc", "spread",
                              "instrument", "status", "heartbeat"))
    rec.add_argument("--symbols", default="BTC/USD", help="comma separated, e.g. BTC/USD,ETH/USD")
    rec.add_argument("--protocol", choices=("v2", "v1"), default="v2")
    rec.add_argument("--depth", type=int, help="book or level3 depth")
    rec.add_argument("--interval", type=int, help="ohlc interval in minutes")
    rec.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    rec.add_argument("--count", type=int, metavar="N", help="stop after N frames")
    rec.add_argument("-o", "--output", required=True, metavar="FILE",
                     help="capture file; gzip when it ends in .gz or with --gzip")
    rec.add_argument("--gzip", action="store_true", help="compress the capture")
    rec.add_argument("--token", help="WebSocket token for level3 (the simulator issues its own)")
    rec.add_argument("--seed", type=int, default=1, help="simulator seed (URL 'sim')")
    rec.add_argument("--rate", type=float, default=50.0,
                     help="simulator messages per second per pair (URL 'sim')")
    add_connection_options(rec)
    rec.set_defaults(func=cmd_record)
