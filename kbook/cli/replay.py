"""``kbook replay``: serve a recorded capture as a Kraken WebSocket endpoint, for backtests.

:func:`add_parser` registers the subcommand and :func:`run` executes it: it loads the capture
with :mod:`kbook.capture`, starts a :class:`~kbook.sim.replay.ReplayServer`, prints its URL and
what it can serve, and serves until Ctrl-C, SIGTERM or ``--duration`` seconds. Point your own
code (``Client(url)``) at the printed URL: it runs the live code path over recorded data.

What it is not: a simulator. Nothing is generated; the recorded frames go out byte for byte.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import IO, Any

from kbook.cli._common import (
    EXIT_UNREADABLE,
    add_tls_server_options,
    tls_server_context,
    until_stopped,
)

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Serve a recorded capture (v1 or v2, as kbook record wrote it) over WebSocket. A client gets the
capture's status message; its subscriptions are acknowledged and then receive the recorded
frames of their channel and symbol, snapshot first, paced by the recorded receive times.
Subscriptions the capture cannot serve get Kraken's error answer.
"""

_EPILOG = """\
examples:
  kbook replay samples/btcusd-v2.capture --port 8765
  kbook replay day.capture.gz --max                 (as fast as the client reads)
  kbook replay day.capture --speed 10 --loop        (ten times faster, forever)
  python my_strategy.py --url ws://127.0.0.1:8765/v2
"""


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_parser(subparsers: Any) -> None:
    """Register ``kbook replay`` (sets ``func`` to :func:`run`)."""
    rep = subparsers.add_parser(
        "replay",
        help="serve a recorded capture as a Kraken endpoint (backtests)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument("capture", metavar="CAPTURE", help="capture file (plain or gzip), or -")
    rep.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    rep.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        metavar="X",
        help="X times faster than recorded (default 1)",
    )
    pace.add_argument("--max", action="store_true", help="as fast as the socket takes the frames")
    rep.add_argument(
        "--loop",
        action="store_true",
        help="start each subscription over from its snapshot at the end",
    )
    rep.add_argument(
        "--duration",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: until interrupted)",
    )
    add_tls_server_options(rep)
    rep.set_defaults(func=run)


async def _serve(args: argparse.Namespace, out: IO[str]) -> int:
    from kbook.sim.replay import ReplayServer, load_capture

    capture = load_capture(args.capture)
    server = ReplayServer(
        capture,
        args.host,
        args.port,
        speed=None if args.max else args.speed,
        loop=args.loop,
        tls=tls_server_context(args),
    )
    async with server:
        pace = "as fast as sockets take" if server.speed is None else f"x{server.speed:g}"
        print(
            f"kbook replay: {server.url} ({capture.protocol}, {len(capture.frames)} "
            f"frames, {pace}{', looping' if server.loop else ''})",
            file=out,
        )
        print(f"kbook replay: serves {', '.join(server.channels())}", file=out, flush=True)
        await until_stopped(args.duration)
    return 0


def run(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Run ``kbook replay`` with parsed ``args``; return the exit status.

    :return: 0 after a clean stop; 2 when the capture or certificate cannot be read or the port
        cannot be bound
    """
    from kbook.errors import CaptureError

    try:
        return asyncio.run(_serve(args, sys.stdout if out is None else out))
    except (OSError, ValueError, CaptureError) as exc:
        print(f"kbook replay: error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    except KeyboardInterrupt:
        return 0
