"""``kbook record``: write a subscription's frames, with receive times, to a capture file.

The venue is a URL or the embedded simulator (``sim``), started in-process on an ephemeral
loopback port. The capture is the format ``kbook verify`` reads (see :mod:`kbook.capture`).

On a terminal the command shows its progress (frames, bytes, rate, elapsed, frames per channel)
on stderr and a summary at the end. Ctrl-C ends the recording like ``--duration`` does: what
arrived is a complete, verifiable capture of that time, so it is committed (renamed from
``.partial``, a ``.gz`` closed as valid gzip), the summary says it was interrupted, and the
status is 130. Only a run with no frame at all leaves no file.

With ``--bus`` the frames come from a :class:`kbook.bus.BusClient` instead: the books a relay
published, re-verified here, byte for byte as the relay received them from Kraken (its
snapshots as it synthesized them), with the relay's receive times. Before each v2 book or
level3 snapshot whose precision or depth the capture does not state yet, an ``instrument``
message and a subscribe acknowledgement are written that carry the relay's precision and depth
headers, so ``kbook verify`` checks the capture as it checks one recorded from Kraken.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kbook.bus.corenats import redact
from kbook.capture import CaptureWriter
from kbook.cli._common import (
    EXIT_UNREADABLE,
    add_connection_options,
    add_logging_args,
    connection_kwargs,
    open_venue,
    setup_logging,
    within,
)
from kbook.client import Client, ClientError, ClientEvent
from kbook.errors import KBookError

if TYPE_CHECKING:
    from kbook.bus import BusFrame

__all__ = ["RecordResult", "add_parser", "cmd_record", "record"]


@dataclass
class RecordResult:
    """What :func:`record` wrote."""

    path: str
    frames: int = 0
    seconds: float = 0.0
    events: list[ClientEvent] = field(default_factory=list)
    bytes: int = 0
    channels: Counter[str] = field(default_factory=Counter)
    interrupted: bool = False  # ended by Ctrl-C (the capture holds what arrived until then)

    def summary(self) -> str:
        """One line: what was written where, per channel."""
        per = ", ".join(f"{name} {n}" for name, n in self.channels.most_common())
        return (
            f"recorded {self.frames} frames ({_size(self.bytes)}) in {self.seconds:.1f} s "
            f"to {self.path}"
            + (f" ({per})" if per else "")
            + (", interrupted" if self.interrupted else "")
        )


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def channel_of(frame: bytes) -> str:
    """The channel (or event) a frame belongs to, for the per-channel counts."""
    i = frame.find(b'"channel":"')
    if i >= 0:
        return frame[i + 11 : frame.find(b'"', i + 11)].decode(errors="replace")
    i = frame.find(b'"method":"')
    if i >= 0:
        return frame[i + 10 : frame.find(b'"', i + 10)].decode(errors="replace")
    if frame[:1] == b"[":  # v1 channel message: [id, payload, "name", "pair"]
        parts = frame.rsplit(b'"', 4)
        if len(parts) == 5:
            return parts[1].decode(errors="replace").partition("-")[0]
    i = frame.find(b'"event":"')
    if i >= 0:
        return frame[i + 9 : frame.find(b'"', i + 9)].decode(errors="replace")
    return "other"


async def record(
    url: str | None,
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
    progress: Callable[[RecordResult, float], Any] | None = None,
    interruptible: bool = False,
    connection: dict[str, Any] | None = None,
    bus: str | None = None,
    venue: str = "kraken",
) -> RecordResult:
    """Record a subscription's frames (with receive times) until ``duration`` or ``count``.

    A v2 ``book`` or ``level3`` recording also holds the ``instrument`` snapshot and the
    subscribe acks, so ``kbook verify`` needs no flags to check it. The whole run, connecting
    and subscribing included, ends by ``duration``. Frames go to ``out + ".partial"``, renamed
    to ``out`` once the run ends with at least one frame; a run that fails (the venue cannot
    be reached, the subscription is refused, nothing arrived) leaves no file and raises.

    :param progress: called about four times a second with the result so far and the seconds
        elapsed (the command's progress line)
    :param interruptible: SIGINT (Ctrl-C) ends the recording like ``duration`` does, and the
        capture of what arrived is committed (``result.interrupted`` is set)
    :param bus: record from this NATS server (``url`` is then unused): the verified messages of
        ``venue``'s relay, through a :class:`kbook.bus.BusClient`

    :raises ConnectFailed: the venue could not be reached
    :raises ClientError: the subscription was not confirmed in time, or no frame arrived
    """
    if duration is None and count is None:
        raise ValueError("give duration or count")
    result = RecordResult(out)
    done = asyncio.Event()
    sink = CaptureWriter(out, compress=compress)

    def write(frame: bytes, received_ns: int | None = None) -> None:
        if done.is_set():
            return
        sink.write(frame, received_ns)
        result.frames += 1
        result.channels[channel_of(frame)] += 1
        if count is not None and result.frames >= count:
            done.set()

    stated: dict[tuple[str, str], tuple[tuple[int, int] | None, int | None]] = {}

    def write_bus(frame: BusFrame) -> None:
        if frame.kind == "snapshot" and frame.protocol == "v2":
            key = (frame.channel, frame.symbol)
            if stated.get(key) != (frame.precision, frame.depth):
                stated[key] = (frame.precision, frame.depth)
                for line in bus_preamble(frame):
                    write(line, frame.received_ns)
        write(frame.payload, frame.received_ns)

    start = time.monotonic()
    deadline = None if duration is None else start + duration
    ok = False
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        result.interrupted = True
        done.set()

    async def report() -> None:
        while progress is not None:
            result.bytes = sink.bytes
            progress(result, time.monotonic() - start)
            await asyncio.sleep(0.25)

    if interruptible:
        loop.add_signal_handler(signal.SIGINT, interrupt)
    reporter = asyncio.ensure_future(report())
    try:
        if bus is not None:
            from kbook.bus import BusClient

            consumer = BusClient(bus, venue=venue, protocol=protocol, recorder=write_bus)
            await _run(consumer, bus, channel, symbols, depth, {}, done, deadline, result)
        else:
            if url is None:
                raise ValueError("give url or bus")
            async with open_venue(url, protocol, seed, rate, token) as (endpoint, tok):
                client = Client(
                    endpoint,
                    protocol=protocol,  # type: ignore[arg-type]
                    token=tok,
                    recorder=write,
                    level3_url=endpoint,
                    **(connection or {}),
                )
                params: dict[str, Any] = {}
                if interval is not None:
                    params["interval"] = interval
                await _run(
                    client, endpoint, channel, symbols, depth, params, done, deadline, result
                )
        ok = result.frames > 0
        if not ok:
            raise ClientError(
                f"no frame received from {redact(bus) if bus else url}"
                + (" before the interrupt" if result.interrupted else "")
            )
    finally:
        if interruptible:
            loop.remove_signal_handler(signal.SIGINT)
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)
        result.bytes = sink.bytes
        if ok:
            sink.commit()
        else:
            sink.discard()
    result.seconds = time.monotonic() - start
    return result


async def _run(
    client: Any,
    where: str,
    channel: str,
    symbols: list[str],
    depth: int | None,
    params: dict[str, Any],
    done: asyncio.Event,
    deadline: float | None,
    result: RecordResult,
) -> None:
    """Start ``client`` (a Client or a BusClient), subscribe, and wait for ``done`` or the
    deadline; the client's events go into ``result``."""
    try:
        await _unless(done, within(deadline, f"connecting to {where}", client.start()))
        if channel == "book":
            subscribing: Any = client.subscribe_book(symbols, depth or 10)
        elif channel == "level3":
            subscribing = client.subscribe_level3(symbols, depth or 10)
        elif channel in ("instrument", "status", "heartbeat"):
            subscribing = client.subscribe(channel, None, **params)
        else:
            subscribing = client.subscribe(channel, symbols, **params)
        await _unless(done, within(deadline, f"subscribing to {channel}", subscribing))
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), remaining)
        done.set()
        result.events = list(client.events_seen)
    finally:
        await client.close()


def bus_preamble(frame: BusFrame) -> list[bytes]:
    """The ``instrument`` message and subscribe acknowledgement that state a relayed v2
    snapshot's precision and depth in a capture (what a recording from Kraken holds).

    >>> from kbook.bus import BusFrame
    >>> snapshot = BusFrame("book", "BTC/USD", "snapshot", b"", 0, "v2", (1, 8), 25)
    >>> instrument, ack = (json.loads(line) for line in bus_preamble(snapshot))
    >>> instrument["data"]["pairs"], ack["result"]["depth"]
    ([{'symbol': 'BTC/USD', 'price_precision': 1, 'qty_precision': 8}], 25)
    """
    lines: list[dict[str, Any]] = []
    if frame.precision is not None:
        pair = {
            "symbol": frame.symbol,
            "price_precision": frame.precision[0],
            "qty_precision": frame.precision[1],
        }
        lines.append(
            {"channel": "instrument", "type": "snapshot", "data": {"assets": [], "pairs": [pair]}}
        )
    if frame.depth is not None:
        lines.append(
            {
                "method": "subscribe",
                "result": {
                    "channel": frame.channel,
                    "depth": frame.depth,
                    "snapshot": True,
                    "symbol": frame.symbol,
                },
                "success": True,
            }
        )
    return [json.dumps(line, separators=(",", ":")).encode() for line in lines]


async def _unless(stop: asyncio.Event, coro: Any) -> Any:
    """Await ``coro``, unless ``stop`` is set first (then None)."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


def cmd_record(args: argparse.Namespace) -> int:
    """Run ``kbook record``: write received frames, with receive times, to a capture file."""
    if args.duration is None and args.count is None:
        print("kbook record: error: give --duration or --count", file=sys.stderr)
        return EXIT_UNREADABLE
    if (args.url is None) == (args.bus is None):
        print("kbook record: error: give either a URL or --bus", file=sys.stderr)
        return EXIT_UNREADABLE
    setup_logging(args)
    symbols = [s.upper() for s in (args.symbols or "").split(",") if s]
    live = None
    show: Callable[[RecordResult, float], Any] | None = None
    if sys.stderr.isatty() and not args.quiet:
        import os

        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        # the terminal's own width: a COLUMNS inherited from a parent may be stale
        live = Live(
            console=Console(stderr=True, width=os.get_terminal_size(2).columns),
            transient=True,
            auto_refresh=False,
        )

        def show(result: RecordResult, elapsed: float) -> None:
            per = "  ".join(f"{name} {n}" for name, n in result.channels.most_common(6))
            rate = result.frames / elapsed if elapsed > 0 else 0.0
            live.update(
                Text(
                    f"recording: {result.frames} frames  {_size(result.bytes)}  "
                    f"{rate:,.0f} frames/s  {elapsed:.1f} s  {per}  (Ctrl-C stops and "
                    f"keeps the capture) to {result.path}",
                    no_wrap=True,
                    overflow="ellipsis",
                ),
                refresh=True,
            )

    try:
        with live or contextlib.nullcontext():
            result = asyncio.run(
                record(
                    args.url,
                    args.channel,
                    symbols,
                    args.output,
                    protocol=args.protocol,
                    depth=args.depth,
                    interval=args.interval,
                    duration=args.duration,
                    count=args.count,
                    compress=args.gzip or None,
                    token=args.token,
                    seed=args.seed,
                    rate=args.rate,
                    progress=show,
                    interruptible=True,
                    connection=connection_kwargs(args),
                    bus=args.bus,
                    venue=args.venue,
                )
            )
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise  # main() ends quietly
    except (OSError, KBookError) as exc:
        print(f"kbook record: error: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 130 if result.interrupted else 0


def add_parser(commands: Any) -> None:
    """Add ``kbook record`` to the ``kbook`` subcommands."""
    rec = commands.add_parser(
        "record",
        help="record a subscription's frames to a capture file (kbook verify reads it)",
        description="Record a subscription's frames, each with its receive time, to a capture "
        "file that kbook verify checks. The file is written as FILE.partial and "
        "renamed when the recording ends; Ctrl-C ends it early and keeps what "
        "arrived (exit status 130).",
        epilog="""examples:
  kbook record sim --symbols BTC/USD --duration 10 -o btc.capture.gz
  kbook record sim --channel level3 --depth 100 --count 1000 -o l3.capture
  kbook record wss://ws.kraken.com/v2 --symbols BTC/USD,ETH/USD --depth 25 --duration 60 \\
      -o books.capture.gz
  kbook record --bus nats://127.0.0.1:4222 --venue sim --symbols BTC/USD --duration 10 \\
      -o relayed.capture
  kbook verify btc.capture.gz
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rec.add_argument(
        "url",
        metavar="URL",
        nargs="?",
        help="WebSocket URL, or 'sim' for the embedded simulator (not with --bus)",
    )
    rec.add_argument(
        "--bus",
        metavar="NATS_URL",
        help="record the books and messages a relay publishes on this NATS server",
    )
    rec.add_argument(
        "--venue",
        default="kraken",
        help="the relay's venue, with --bus (default kraken; a relay of the simulator uses sim)",
    )
    rec.add_argument(
        "--channel",
        default="book",
        choices=(
            "book",
            "level3",
            "ticker",
            "trade",
            "ohlc",
            "spread",
            "instrument",
            "status",
            "heartbeat",
        ),
    )
    rec.add_argument("--symbols", default="BTC/USD", help="comma separated, e.g. BTC/USD,ETH/USD")
    rec.add_argument("--protocol", choices=("v2", "v1"), default="v2")
    rec.add_argument(
        "--depth",
        type=int,
        choices=(10, 25, 100, 500, 1000),
        help="book depth (10, 25, 100, 500, 1000) or level3 depth (10, 100, 1000)",
    )
    rec.add_argument("--interval", type=int, help="ohlc interval in minutes")
    rec.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    rec.add_argument("--count", type=int, metavar="N", help="stop after N frames")
    rec.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="capture file; gzip when it ends in .gz or with --gzip",
    )
    rec.add_argument("--gzip", action="store_true", help="compress the capture")
    rec.add_argument("--token", help="WebSocket token for level3 (the simulator issues its own)")
    rec.add_argument("--seed", type=int, default=1, help="simulator seed (URL 'sim')")
    rec.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help="simulator messages per second per pair (URL 'sim')",
    )
    add_logging_args(rec)
    add_connection_options(rec)
    rec.set_defaults(func=cmd_record)
