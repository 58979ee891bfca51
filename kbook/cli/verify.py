"""``kbook verify``: replay a capture through the engine and check every book checksum.

Each frame of the capture (read by :mod:`kbook.capture`) goes through the same
:class:`~kbook.Feed` an application uses; this module only counts and reports, per book, whether
every Kraken checksum matched.

What it is not: book logic (there is none here), a connection to Kraken, or a repair tool.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

import msgspec

from kbook._core import (
    ALLOWED_DEPTHS,
    BookIntegrityError,
    ChecksumMismatch,
    DecodeError,
    Feed,
    L2Book,
    Level3Book,
    UnknownPrecision,
)
from kbook.capture import display_name, lines_of, open_capture
from kbook.cli._common import EXIT_FAILED, EXIT_OK, EXIT_UNREADABLE, precision_arg
from kbook.errors import CaptureError

__all__ = ["add_parser", "cmd_verify"]

_PRECISION_HINT = "give --precision SYMBOL=PP:QP or record the instrument channel"

_VERIFY_DESCRIPTION = """\
Replay a capture through the engine and check every book checksum.

A capture holds one received WebSocket frame per line, optionally preceded by its receive
time in epoch seconds and ": " (1618678134.045305: [1920,{"as":...}]). Blank lines and lines
that are not frames are counted and skipped. v1 and v2 frames and several symbols may be
interleaved. The book depth comes from the v1 channel name (book-1000), or from the v2
subscribe ack, else --depth, else the size of the first snapshot; v2 precisions come from
instrument messages in the capture, else --precision. Gzip input is recognised by its magic
bytes; FILE may be - for stdin.
"""

_VERIFY_EPILOG = """\
exit status:
  0  every checksum matched, and no frame was malformed
  1  a checksum mismatched, a book crossed, or a frame could not be decoded
     (a malformed frame is a failure: its book may have missed data)
  2  the capture could not be verified: missing or unreadable file, not text,
     no frame at all, or a v2 book whose precision is unknown (2 wins over 1)

example:
  kbook verify samples/btcusd-v2.capture
  kbook verify --json --precision BTC/USD=1:8 --depth 25 session.capture.gz
"""


class _Envelope(msgspec.Struct):
    """The keys that tell a v1 control object (``event``) from a v2 message."""

    event: Any = None
    channel: Any = None
    method: Any = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)


# -- the report -----------------------------------------------------------------------------


@dataclass
class _Tally:
    """Everything ``verify`` counts outside the engine, line by line."""

    lines: int = 0
    blank: int = 0
    not_frame: int = 0
    other_protocol: int = 0
    decode_errors: int = 0
    first_decode_error: dict[str, Any] | None = None
    first_mismatch: dict[str, Any] | None = None
    first_integrity_error: dict[str, Any] | None = None
    # symbol -> line of its first snapshot that could not be built
    unknown_precision: dict[str, int] = field(default_factory=dict)
    # id(book) -> line it first appeared on; books live as long as the feed, so ids are stable
    first_line: dict[int, int] = field(default_factory=dict)


def _origin(key: tuple[str, str] | None) -> tuple[str | None, str | None]:
    """Return ``(protocol, v1 channel name)`` from a ``Feed.books`` key.

    Keys are ``("v2", symbol)``, ``("v1", "book-N|PAIR")`` or ``("l3", symbol)`` (v2 level3);
    only v1 has a channel name.
    """
    if key is None:
        return None, None
    protocol, name = key
    return protocol, (name.partition("|")[0] if protocol == "v1" else None)


def _symbol_report(
    key: tuple[str, str],
    book: L2Book | Level3Book,
    tally: _Tally,
    args: argparse.Namespace,
    learned: dict[str, Any],
) -> dict[str, Any]:
    """One book's summary; ``learned`` is :attr:`Feed.learned` (what the capture itself said)."""
    protocol, channel = _origin(key)
    if protocol == "v1":
        depth_source, precision_source = "channel", "wire"
    elif protocol == "l3":
        depth_source = (
            "ack"
            if book.symbol in learned["level3_acks"]
            else "--depth"
            if args.depth in (10, 100, 1000)
            else "default"
        )
        precision_source = "instrument" if book.symbol in learned["instrument"] else "--precision"
    else:
        if book.symbol in learned["book_acks"]:
            depth_source = "ack"
        elif args.depth is not None:
            depth_source = "--depth"
        else:
            depth_source = "snapshot size"
        precision_source = "instrument" if book.symbol in learned["instrument"] else "--precision"
    bid, ask = book.bids_str(1), book.asks_str(1)
    return {
        "symbol": book.symbol,
        "protocol": protocol,
        "channel": channel,
        "first_line": tally.first_line.get(id(book)),
        "depth": book.depth,
        "depth_source": depth_source,
        "price_precision": book.price_precision,
        "qty_precision": book.qty_precision,
        "precision_source": precision_source,
        # Received: applied plus dropped while invalid, so the books add up to book_messages.
        "messages": book.messages + book.dropped_updates,
        "applied": book.messages,
        "snapshots": book.snapshots,
        "checksums_verified": book.checksums_verified,
        "checksum_mismatches": book.checksum_mismatches,
        "dropped_updates": book.dropped_updates,
        "unverified_updates": book.unverified_updates,
        "valid": book.valid,
        "best_bid": list(bid[0]) if bid else None,
        "best_ask": list(ask[0]) if ask else None,
    }


def _report(
    name: str, args: argparse.Namespace, feed: Feed, tally: _Tally, wall_seconds: float
) -> dict[str, Any]:
    """Build the ``--json`` object (the text summary is printed from it too)."""
    books = sorted(feed.books.items(), key=lambda kv: tally.first_line.get(id(kv[1]), 0))
    report: dict[str, Any] = {
        "file": name,
        "protocol": args.protocol,
        "lines": tally.lines,
        "frames": feed.frames,
        "skipped_lines": tally.blank + tally.not_frame + tally.other_protocol,
        "skipped": {
            "blank": tally.blank,
            "not_a_frame": tally.not_frame,
            "other_protocol": tally.other_protocol,
        },
        "book_messages": feed.book_messages,
        "other_messages": feed.other_messages,
        "checksums_verified": feed.checksums_verified,
        "checksum_mismatches": feed.checksum_mismatches,
        "first_mismatch": tally.first_mismatch,
        "integrity_errors": feed.integrity_errors,
        "first_integrity_error": tally.first_integrity_error,
        "decode_errors": tally.decode_errors,
        "first_decode_error": tally.first_decode_error,
        "orphan_updates": feed.orphan_updates,
        "unknown_precision": sorted(tally.unknown_precision),
        "engine_seconds": feed.engine_ns / 1e9,
        "wall_seconds": wall_seconds,
        "symbols": [_symbol_report(key, book, tally, args, feed.learned) for key, book in books],
    }
    error = None
    if feed.frames == 0:
        which = f"{args.protocol} " if args.protocol else ""
        error = f"no {which}frame in {name}"
    elif tally.unknown_precision:
        names = ", ".join(
            f"{sym} (line {line})" for sym, line in sorted(tally.unknown_precision.items())
        )
        error = f"v2 book with unknown precision: {names}; {_PRECISION_HINT}"
    if error is not None:
        status, code = "error", EXIT_UNREADABLE
    elif feed.checksum_mismatches or feed.integrity_errors or tally.decode_errors:
        status, code = "failed", EXIT_FAILED
    else:
        status, code = "ok", EXIT_OK
    report.update(status=status, exit_code=code, error=error)
    return report


# -- reading a capture ----------------------------------------------------------------------


def _frame_protocol(frame: bytes) -> str | None:
    """Return ``"v1"``, ``"v2"`` or None (unclassifiable) for a frame, without the engine.

    v1 data frames are arrays and v1 control frames objects with ``event``; v2 messages are
    objects with ``channel`` or ``method`` (Kraken framing, marketdata.md §1.2-1.3).
    """
    if frame.lstrip()[:1] == b"[":
        return "v1"
    try:
        env = _envelope_decoder.decode(frame)
    except msgspec.DecodeError:
        # Malformed: guess from the raw bytes; the engine reports the decode error itself.
        if b'"event"' in frame:
            return "v1"
        return "v2" if b'"channel"' in frame or b'"method"' in frame else None
    if env.event is not None:
        return "v1"
    return "v2" if env.channel is not None or env.method is not None else None


def _failing_book(feed: Feed, symbol: str) -> tuple[str, str] | None:
    """Return the ``Feed.books`` key of the (only) book of ``symbol`` that has mismatched."""
    for key, book in feed.books.items():
        if book.symbol == symbol and book.checksum_mismatches:
            return key
    return None


def _note_new_books(feed: Feed, first_line: dict[int, int], number: int) -> None:
    """Record books that the frame on line ``number`` created but did not return (it raised)."""
    for book in feed.books.values():
        first_line.setdefault(id(book), number)


def _replay(
    reader: io.BufferedIOBase, name: str, feed: Feed, protocol: str | None, tally: _Tally
) -> None:
    """Feed every frame line to the engine, counting what it says; never stops on bad data."""
    first_line = tally.first_line
    for line in lines_of(reader, name):
        number = tally.lines = line.number
        frame = line.data
        if not line.is_frame:
            if frame.strip():
                tally.not_frame += 1
            else:
                tally.blank += 1
            continue
        if protocol is not None and _frame_protocol(frame) not in (protocol, None):
            tally.other_protocol += 1
            continue
        try:
            result = feed.process(frame)
        except ChecksumMismatch as exc:
            _note_new_books(feed, first_line, number)
            if tally.first_mismatch is None:
                book_protocol, channel = _origin(_failing_book(feed, exc.symbol))
                tally.first_mismatch = {
                    "line": number,
                    "symbol": exc.symbol,
                    "protocol": book_protocol,
                    "channel": channel,
                    "expected": exc.expected,
                    "computed": exc.computed,
                    "checksum_input": exc.checksum_input,
                }
            continue
        except BookIntegrityError as exc:
            _note_new_books(feed, first_line, number)
            if tally.first_integrity_error is None:
                tally.first_integrity_error = {
                    "line": number,
                    "symbol": exc.symbol,
                    "reason": exc.reason,
                }
            continue
        except UnknownPrecision as exc:
            tally.unknown_precision.setdefault(exc.symbol, number)
            continue
        except DecodeError as exc:
            tally.decode_errors += 1
            if tally.first_decode_error is None:
                tally.first_decode_error = {"line": number, "error": str(exc)}
            continue
        if isinstance(result, L2Book | Level3Book) and id(result) not in first_line:
            first_line[id(result)] = number


# -- text output ----------------------------------------------------------------------------


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _print_summary(report: dict[str, Any], out: IO[str]) -> None:
    """Print one line per book, a totals line and the verdict."""
    rows: list[list[str]] = []
    for sym in report["symbols"]:
        if sym["protocol"] == "v1":
            where = f"v1 {sym['channel']}"
        elif sym["protocol"] == "l3":
            where = f"v2 level3 depth {sym['depth']}"
        else:
            where = f"v2 depth {sym['depth']}"
        state = "valid" if sym["valid"] else "INVALID"
        if sym["dropped_updates"]:
            state += f" ({sym['dropped_updates']} dropped)"
        bid = sym["best_bid"][0] if sym["best_bid"] else "-"
        ask = sym["best_ask"][0] if sym["best_ask"] else "-"
        rows.append(
            [
                sym["symbol"],
                where,
                f"{sym['messages']} msgs",
                f"{sym['checksums_verified']} verified",
                f"{sym['checksum_mismatches']} mismatched",
                state,
                f"bid {bid}",
                f"ask {ask}",
            ]
        )
    # The totals share the first five columns, so the counts line up under the books'.
    rows.append(
        [
            "total",
            f"{report['frames']} frames",
            f"{report['book_messages']} msgs",
            f"{report['checksums_verified']} verified",
            f"{report['checksum_mismatches']} mismatched",
        ]
    )
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    right = {2, 3, 4}
    for row in rows[:-1]:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=False))
        ]
        print("  ".join(cells).rstrip(), file=out)
    extra = [_plural(report["decode_errors"], "decode error")]
    if report["skipped_lines"]:
        extra.append(_plural(report["skipped_lines"], "line") + " skipped")
    extra.append(f"engine {report['engine_seconds'] * 1e3:.1f} ms")
    cells = [
        cell.rjust(width) if i in right else cell.ljust(width)
        for i, (cell, width) in enumerate(zip(rows[-1], widths, strict=False))
    ]
    print("  ".join([*cells, ", ".join(extra)]), file=out)
    mismatch = report["first_mismatch"]
    if mismatch is not None:
        print(
            f"first mismatch: {mismatch['symbol']} at line {mismatch['line']}: "
            f"expected {mismatch['expected']}, computed {mismatch['computed']} over "
            f"{mismatch['checksum_input']!r}",
            file=out,
        )
    crossed = report["first_integrity_error"]
    if crossed is not None:
        print(
            f"first integrity error: {crossed['symbol']} at line {crossed['line']}: "
            f"{crossed['reason']}",
            file=out,
        )
    bad = report["first_decode_error"]
    if bad is not None:
        print(f"first decode error: line {bad['line']}: {bad['error']}", file=out)
    if report["orphan_updates"]:
        print(
            f"note: {report['orphan_updates']} updates arrived for symbols without a book",
            file=out,
        )
    verified = report["checksums_verified"]
    total = verified + report["checksum_mismatches"]
    if report["status"] == "ok":
        if total:
            print(f"OK: all {total} checksums matched", file=out)
        else:
            print("OK: no checksum to verify (no book message with a checksum)", file=out)
    elif report["status"] == "failed":
        problems = []
        if report["checksum_mismatches"]:
            problems.append(f"{report['checksum_mismatches']} of {total} checksums mismatched")
        if report["integrity_errors"]:
            problems.append(_plural(report["integrity_errors"], "crossed book"))
        if report["decode_errors"]:
            problems.append(_plural(report["decode_errors"], "frame") + " could not be decoded")
        print(f"FAILED: {', '.join(problems)}", file=out)
    else:
        print(f"ERROR: {report['error']}", file=out)


# -- commands -------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    """Run ``kbook verify``: replay a capture, print the summary, return the exit status."""
    precisions = {symbol: (pp, qp) for symbol, pp, qp in args.precision or ()}
    try:
        feed = Feed(precisions=precisions, default_depth=args.depth, timing=True)
    except ValueError as exc:
        print(f"kbook verify: error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    tally = _Tally()
    started = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            reader = open_capture(args.file, stack)
            _replay(reader, display_name(args.file), feed, args.protocol, tally)
    except CaptureError as exc:
        print(f"kbook verify: error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    report = _report(display_name(args.file), args, feed, tally, time.perf_counter() - started)
    if not args.json:
        _print_summary(report, sys.stdout)
    else:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        if report["error"] is not None:
            print(f"kbook verify: error: {report['error']}", file=sys.stderr)
    code: int = report["exit_code"]
    return code


def add_parser(commands: Any) -> None:
    """Add ``kbook verify`` to the ``kbook`` subcommands."""
    verify = commands.add_parser(
        "verify",
        help="replay a capture and check every book checksum",
        description=_VERIFY_DESCRIPTION,
        epilog=_VERIFY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("file", metavar="FILE", help="capture file (plain or gzip), or - for stdin")
    verify.add_argument(
        "--protocol",
        choices=("v1", "v2"),
        help="replay only this protocol's frames; the others count as skipped lines",
    )
    verify.add_argument(
        "--depth",
        type=int,
        choices=ALLOWED_DEPTHS,
        metavar="N",
        help="v2 book depth for symbols without a subscribe ack in the capture (one of "
        f"{', '.join(map(str, ALLOWED_DEPTHS))}; default: inferred from the first snapshot)",
    )
    verify.add_argument(
        "--precision",
        type=precision_arg,
        action="append",
        metavar="SYMBOL=PP:QP",
        help="price and quantity decimals of a v2 symbol, e.g. ETH/USD=2:8 (repeatable); "
        "instrument messages in the capture take precedence",
    )
    verify.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the summary"
    )
    verify.set_defaults(func=cmd_verify)
