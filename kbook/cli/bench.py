"""``kbook bench``: time the engine over a capture against plain JSON decoding."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import msgspec

from kbook._core import ALLOWED_DEPTHS, PROFILE_GUIDED, Feed, KBookError
from kbook.capture import display_name, read_frames
from kbook.cli._common import EXIT_UNREADABLE, precision_arg
from kbook.errors import CaptureError

__all__ = ["add_parser", "cmd_bench"]

_BENCH_DESCRIPTION = """\
Time the engine over every frame of a capture against plain JSON decoders, in the same run.

Method: each round runs a fresh Feed over all frames in a plain loop (`for frame in frames:
feed.process(frame)`, resumed after a refused frame), then each baseline (msgspec.json.decode,
and orjson.loads when installed) in the same plain loop over the same bytes; rounds interleave
the candidates so machine noise hits all alike. Reported: the best round per candidate in ns per
frame, and the median of the same-round ratios engine / baseline. Nothing else is timed: no
per-frame bookkeeping of this tool, no capture reading, and no book or decoder set-up.
"""


def cmd_bench(args: argparse.Namespace) -> int:
    """Run ``kbook bench``: time the engine over a capture against plain JSON decoding."""
    try:
        frames = [frame.data for frame in read_frames(args.file)]
    except CaptureError as exc:
        print(f"kbook bench: error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if not frames:
        print("kbook bench: error: no frame in the capture", file=sys.stderr)
        return EXIT_UNREADABLE
    precisions = {symbol: (pp, qp) for symbol, pp, qp in args.precision or ()}
    decode = msgspec.json.decode
    baselines: dict[str, Any] = {"msgspec.json.decode": decode}
    try:
        import orjson

        baselines["orjson.loads"] = orjson.loads
    except ImportError:
        pass

    def engine() -> tuple[int, int, int]:
        feed = Feed(precisions=precisions, default_depth=args.depth)
        process = feed.process
        remaining = iter(frames)
        start = time.perf_counter_ns()
        while True:
            # the plain loop a user writes; a refused frame (counted by the feed) resumes it
            # from the next frame, so no per-frame handler is timed as engine work
            try:
                for frame in remaining:
                    process(frame)
                break
            except KBookError:
                continue
        elapsed = time.perf_counter_ns() - start
        return elapsed, feed.checksums_verified, feed.checksum_mismatches

    def baseline(fn: Any) -> int:
        start = time.perf_counter_ns()
        for frame in frames:
            fn(frame)
        return time.perf_counter_ns() - start

    best = {"kbook engine": float("inf"), **{name: float("inf") for name in baselines}}
    ratios: dict[str, list[float]] = {name: [] for name in baselines}
    verified = mismatches = 0
    for _ in range(args.rounds):  # interleaved, so machine noise hits every candidate alike
        took, verified, mismatches = engine()
        best["kbook engine"] = min(best["kbook engine"], took)
        for name, fn in baselines.items():
            other = baseline(fn)
            best[name] = min(best[name], other)
            ratios[name].append(took / other)
    n = len(frames)
    build = "profile-guided" if PROFILE_GUIDED else "plain -O3 (no profile-guided pass)"
    print(
        f"{display_name(args.file)}: {n} frames, {args.rounds} interleaved rounds, "
        f"{verified} checksums verified, {mismatches} mismatched; engine build: {build}"
    )
    for name, ns in best.items():
        line = f"  {name:22s} {ns / n:9.0f} ns/frame (best round)"
        if name in ratios:
            middle = sorted(ratios[name])[len(ratios[name]) // 2]
            line += f"   engine / this = {middle:.2f} (median of same-round ratios)"
        print(line)
    return 0 if mismatches == 0 else 1


def add_parser(commands: Any) -> None:
    """Add ``kbook bench`` to the ``kbook`` subcommands."""
    bench = commands.add_parser(
        "bench",
        help="time the engine over a capture against plain JSON decoding",
        description=_BENCH_DESCRIPTION,
        epilog="""examples:
  kbook record sim --count 5000 -o btc.capture.gz && kbook bench btc.capture.gz
  kbook bench samples/btcusd-v2.capture --rounds 15
  kbook bench old.capture --depth 25 --precision BTC/USD=1:8
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("file", metavar="FILE", help="capture file (plain or gzip)")
    bench.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    bench.add_argument(
        "--depth",
        type=int,
        choices=ALLOWED_DEPTHS,
        metavar="N",
        help="v2 book depth for symbols without a subscribe ack: one of "
        + ", ".join(map(str, ALLOWED_DEPTHS)),
    )
    bench.add_argument(
        "--precision",
        type=precision_arg,
        action="append",
        metavar="SYMBOL=PP:QP",
        help="price and quantity decimals of a v2 symbol (repeatable)",
    )
    bench.set_defaults(func=cmd_bench)
