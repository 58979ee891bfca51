"""``kbook export``, ``kbook plot`` and ``kbook book-at``: the research commands.

:func:`add_parsers` registers the three subcommands on the ``kbook`` parser. Importing this
module is cheap: pyarrow, polars and matplotlib load only when one of its commands runs, and a
missing ``research`` extra is one error line and exit status 2.

What it is not: the commands hold no logic of their own; they parse arguments and call
:func:`kbook.history.parquet.export`, :func:`kbook.history.plot.plot` and
:meth:`kbook.history.History.book_at`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_parsers"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNREADABLE = 2

_TABLES = ("book_updates", "book_snapshots", "level3_events", "trades", "quotes", "ticker", "ohlc")

_EXPORT_EPILOG = """\
tables (--table, comma-separated or repeated; several tables make OUT a directory):
  book_updates    one row per level change as applied, with the frame's checksum verdict
  book_snapshots  top --depth levels per side after every book message, or every --every MS
  level3_events   level3 order events (add/modify/delete) as received
  quotes          best bid/ask changes
  trades, ticker, ohlc  those channels' messages

prices and quantities are exact Parquet decimals; times are timestamp[ns, UTC].

exit status:
  0  written, every book frame verified or unverifiable
  1  written, but frames failed (checksum mismatch, crossed book, dropped while invalid)
     or could not be decoded (--keep-going)
  2  nothing written: unreadable capture, malformed line, bad arguments, missing extra

example:
  kbook export samples/btcusd-v2.capture -o quotes.parquet --table quotes
  kbook export session.capture.gz -o out/ --table book_updates,trades --symbols BTC/USD
"""

_PLOT_EPILOG = """\
times (--from, --to): ISO 8601 (2023-10-06T17:35:57Z; UTC without an offset) or epoch seconds.
depth draws the book at --to (default: the end of the capture).

example:
  kbook plot samples/btcusd-v2.capture --symbol ETH/USD --kind heatmap -o eth.png
"""


def _missing_extra(command: str) -> int | None:
    """Print one error line and return 2 if the research extra is not installed."""
    for module in ("pyarrow", "numpy"):
        try:
            __import__(module)
        except ImportError:
            print(
                f"kbook {command}: error: needs the research extra ({module} is missing): "
                "pip install 'kbook[research]'",
                file=sys.stderr,
            )
            return EXIT_UNREADABLE
    return None


def _time(text: str) -> int | str:
    """An ``--from``/``--to`` value: epoch seconds become nanoseconds, ISO text stays text."""
    if text.replace(".", "", 1).isdigit():
        whole, _, frac = text.partition(".")
        return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
    return text


def _symbols(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def cmd_export(args: argparse.Namespace) -> int:
    """Run ``kbook export``; return the exit status."""
    missing = _missing_extra("export")
    if missing is not None:
        return missing
    from kbook.history.parquet import ExportError, export

    tables = [t for spec in args.table or ["book_updates"] for t in _symbols(spec)]
    try:
        result = export(
            args.capture,
            args.output,
            tables,
            depth=args.depth,
            every_ms=args.every,
            symbols=args.symbols,
            strict=not args.keep_going,
        )
    except ExportError as exc:
        print(f"kbook export: error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    for table, path in result.paths.items():
        print(f"{table}: {result.rows.get(table, 0)} rows to {path}")
    failed = result.failed_frames
    line = f"{result.frames} frames replayed, {len(failed)} failed"
    if failed:
        first = min(failed)
        line += f" (first: line {first}, {failed[first]})"
    if result.decode_errors:
        first = min(result.decode_errors)
        line += (
            f", {len(result.decode_errors)} not decoded (first: line {first}: "
            f"{result.decode_errors[first]})"
        )
    print(line)
    return EXIT_FAILED if failed or result.decode_errors else EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    """Run ``kbook plot``; return the exit status."""
    missing = _missing_extra("plot")
    if missing is not None:
        return missing
    try:
        import matplotlib  # noqa: F401  # only to report a missing extra
    except ImportError:
        print(
            "kbook plot: error: needs the research extra (matplotlib is missing): "
            "pip install 'kbook[research]'",
            file=sys.stderr,
        )
        return EXIT_UNREADABLE
    from kbook.history.parquet import ExportError
    from kbook.history.plot import plot

    try:
        result = plot(
            args.capture,
            args.symbol,
            args.output,
            kind=args.kind,
            start=args.start,
            end=args.end,
            depth=args.depth,
        )
    except (ExportError, ValueError) as exc:
        print(f"kbook plot: error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    print(f"wrote {result.kind} of {result.symbol} to {result.path}")
    return EXIT_OK


def cmd_book_at(args: argparse.Namespace) -> int:
    """Run ``kbook book-at``: print a book as it was at a time; return the exit status."""
    missing = _missing_extra("book-at")
    if missing is not None:
        return missing
    from kbook.history.history import History
    from kbook.history.parquet import ExportError

    try:
        with History(args.capture) as history:
            book = history.book_at(args.symbol, args.at, protocol=args.protocol)
    except (ExportError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"kbook book-at: error: {message}", file=sys.stderr)
        return EXIT_UNREADABLE
    if book is None:
        print(f"kbook book-at: error: {args.symbol} had no book yet at that time", file=sys.stderr)
        return EXIT_FAILED
    report: dict[str, Any] = {
        "symbol": book.symbol,
        "valid": book.valid,
        "depth": book.depth,
        "bids": book.bids_str(args.levels),
        "asks": book.asks_str(args.levels),
    }
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{book.symbol} ({'valid' if book.valid else 'INVALID'}, depth {book.depth})")
        for (bp, bq), (ap, aq) in zip(report["bids"], report["asks"], strict=False):
            print(f"  {bq:>16} {bp:>14} | {ap:<14} {aq}")
    return EXIT_OK if book.valid else EXIT_FAILED


def add_parsers(commands: Any) -> None:
    """Register ``export``, ``plot`` and ``book-at`` on the ``kbook`` subparsers object."""
    export = commands.add_parser(
        "export",
        help="write a capture's books, trades, ... as exact Parquet tables",
        description="Replay a capture through the engine and write Parquet tables.",
        epilog=_EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("capture", metavar="CAPTURE", help="capture file (plain or gzip)")
    export.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="Parquet file (one table) or directory (several)",
    )
    export.add_argument(
        "--table",
        action="append",
        metavar="TABLE",
        help=f"one or more of {', '.join(_TABLES)} (default book_updates)",
    )
    export.add_argument(
        "--depth",
        type=int,
        default=10,
        metavar="N",
        help="levels per side in book_snapshots (default 10)",
    )
    export.add_argument(
        "--every",
        type=int,
        metavar="MS",
        help="book_snapshots once per MS milliseconds instead of every message",
    )
    export.add_argument(
        "--symbols", type=_symbols, metavar="S,S", help="only these symbols (comma-separated)"
    )
    export.add_argument(
        "--keep-going",
        action="store_true",
        help="skip lines that cannot be decoded instead of stopping",
    )
    export.set_defaults(func=cmd_export)

    plot = commands.add_parser(
        "plot",
        help="draw a captured book: liquidity heatmap, depth chart, spread",
        description="Draw one picture of a symbol's book from a capture (matplotlib).",
        epilog=_PLOT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plot.add_argument("capture", metavar="CAPTURE", help="capture file (plain or gzip)")
    plot.add_argument("--symbol", required=True, help="the pair, as the capture names it")
    plot.add_argument("--kind", choices=("heatmap", "depth", "spread"), default="heatmap")
    plot.add_argument("--from", dest="start", type=_time, metavar="T", help="first time shown")
    plot.add_argument(
        "--to",
        dest="end",
        type=_time,
        metavar="T",
        help="last time shown (depth: the moment drawn)",
    )
    plot.add_argument(
        "--depth",
        type=int,
        default=25,
        metavar="N",
        help="levels per side in the heatmap (default 25)",
    )
    plot.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="picture file: .png, .svg, ..."
    )
    plot.set_defaults(func=cmd_plot)

    book_at = commands.add_parser(
        "book-at",
        help="print a captured book as it was at a moment",
        description="Print the book of SYMBOL after the last frame received at or before T.",
    )
    book_at.add_argument("capture", metavar="CAPTURE", help="capture file (plain or gzip)")
    book_at.add_argument("--symbol", required=True)
    book_at.add_argument(
        "--at", required=True, type=_time, metavar="T", help="ISO 8601 time or epoch seconds"
    )
    book_at.add_argument(
        "--protocol", choices=("v2", "v1", "l3"), help="which book, when the symbol has several"
    )
    book_at.add_argument("--levels", type=int, default=10, help="levels shown per side")
    book_at.add_argument("--json", action="store_true", help="print one JSON object")
    book_at.set_defaults(func=cmd_book_at)
