"""The ``kbook`` command line: one argparse subcommand per task, each in its own function.

``kbook verify FILE`` replays a capture (one received frame per line, optionally after its
receive time, as :func:`kbook.streams.write_capture` writes it) through the engine's
:class:`~kbook.Feed` and reports, per book, whether every Kraken checksum matched.

What it is not: the command line holds no book logic of its own; every frame goes through the
same :class:`~kbook.Feed` an application uses, and this module only reads lines, counts and
reports. It does not connect to Kraken, and it never repairs a capture.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import gzip
import io
import json
import re
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, cast

import msgspec

from kbook._core import (
    ALLOWED_DEPTHS,
    BookIntegrityError,
    ChecksumMismatch,
    DecodeError,
    Feed,
    KBookError,
    L2Book,
    Level3Book,
    UnknownPrecision,
)
from kbook._version import __version__
from kbook.sim import cli as sim_cli

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNREADABLE = 2

_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
# The receive time write_capture puts before a frame: epoch seconds, then ": ".
_RECEIVE_TIME = re.compile(rb"[0-9]+(?:\.[0-9]*)?: ")
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


class _InputError(Exception):
    """The capture cannot be read at all (exit status 2, no report)."""


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
    ack_depths: dict[str, int] = field(default_factory=dict)
    l3_acks: set[str] = field(default_factory=set)
    instrument_symbols: set[str] = field(default_factory=set)
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
    key: tuple[str, str], book: L2Book | Level3Book, tally: _Tally, args: argparse.Namespace
) -> dict[str, Any]:
    protocol, channel = _origin(key)
    if protocol == "v1":
        depth_source, precision_source = "channel", "wire"
    elif protocol == "l3":
        depth_source = ("ack" if book.symbol in tally.l3_acks
                        else "--depth" if args.depth in (10, 100, 1000) else "default")
        precision_source = (
            "instrument" if book.symbol in tally.instrument_symbols else "--precision"
        )
    else:
        if book.symbol in tally.ack_depths:
            depth_source = "ack"
        elif args.depth is not None:
            depth_source = "--depth"
        else:
            depth_source = "snapshot size"
        precision_source = (
            "instrument" if book.symbol in tally.instrument_symbols else "--precision"
        )
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
        "symbols": [_symbol_report(key, book, tally, args) for key, book in books],
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


def _display_name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _open_capture(path: str, stack: contextlib.ExitStack[bool | None]) -> io.BufferedIOBase:
    """Open a capture for binary reading, decompressing gzip whatever the file is called.

    Files opened here are closed by ``stack``; stdin is left open.

    :raises _InputError: missing, unreadable, or not text.
    """
    name = _display_name(path)
    if path == "-":
        stdin = sys.stdin.buffer
        if isinstance(stdin, io.BufferedReader):
            reader = stdin
        else:
            # peek() needs a buffered reader; a replaced stdin (tests, embedding) may not be one,
            # and BufferedReader accepts any stream with readinto(), which every binary one has.
            reader = io.BufferedReader(cast(io.RawIOBase, stdin))
    else:
        try:
            reader = stack.enter_context(open(path, "rb"))  # noqa: SIM115  # the stack closes it
        except OSError as exc:
            raise _InputError(f"cannot open {name}: {exc.strerror or exc}") from None
    try:
        if reader.peek(2)[:2] == _GZIP_MAGIC:
            unzipped = stack.enter_context(gzip.GzipFile(fileobj=reader, mode="rb"))
            head = unzipped.peek(8192)[:8192]
            stream: io.BufferedIOBase = unzipped
        else:
            head = reader.peek(8192)[:8192]
            stream = reader
    except (OSError, EOFError, zlib.error) as exc:
        raise _InputError(f"cannot read {name}: {exc}") from None
    if b"\0" in head or not _looks_utf8(head):
        raise _InputError(f"{name} is not a text capture (one frame per line)")
    return stream


def _looks_utf8(head: bytes) -> bool:
    """Whether ``head`` is UTF-8 text, allowing a character cut off at its end."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _lines(reader: io.BufferedIOBase, name: str) -> Iterator[bytes]:
    """Yield the capture's lines; a broken gzip stream is an input error."""
    try:
        yield from reader
    except (OSError, EOFError, zlib.error) as exc:
        raise _InputError(f"cannot read {name}: {exc}") from None


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


def _learn(obj: Any, tally: _Tally) -> None:
    """Note which v2 symbols got their depth from an ack and their precision from the capture."""
    if not isinstance(obj, dict):
        return
    if obj.get("channel") == "instrument":
        data = obj.get("data")
        pairs = data.get("pairs") if isinstance(data, dict) else None
        for pair in pairs or ():
            if isinstance(pair, dict) and isinstance(pair.get("symbol"), str):
                tally.instrument_symbols.add(pair["symbol"])
    elif obj.get("method") == "subscribe" and obj.get("success") is True:
        result = obj.get("result")
        if isinstance(result, dict) and result.get("channel") == "book":
            symbol, depth = result.get("symbol"), result.get("depth", 10)
            if isinstance(symbol, str) and depth in ALLOWED_DEPTHS:
                tally.ack_depths[symbol] = depth
        elif (
            isinstance(result, dict)
            and result.get("channel") == "level3"
            and isinstance(result.get("symbol"), str)
        ):
            tally.l3_acks.add(result["symbol"])


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
    for number, line in enumerate(_lines(reader, name), start=1):
        tally.lines = number
        if number == 1 and line.startswith(_UTF8_BOM):
            line = line[len(_UTF8_BOM) :]
        stamp = _RECEIVE_TIME.match(line)
        # One copy without the receive time and the line end, so errors quote the frame alone.
        end = len(line) - (2 if line.endswith(b"\r\n") else 1 if line.endswith(b"\n") else 0)
        frame = line[stamp.end() if stamp else 0 : end]
        start = frame.lstrip()[:1]
        if start not in (b"{", b"["):
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
        if isinstance(result, L2Book | Level3Book):
            if id(result) not in first_line:
                first_line[id(result)] = number
        elif result is not None:
            _learn(result, tally)


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


def _precision(text: str) -> tuple[str, int, int]:
    """Parse ``SYMBOL=PRICE_DP:QTY_DP`` (``ETH/USD=2:8``) for ``--precision``."""
    symbol, eq, rest = text.rpartition("=")
    pp, colon, qp = rest.partition(":")
    if not (symbol and eq and colon and pp.isdigit() and qp.isdigit()):
        raise argparse.ArgumentTypeError(
            f"expected SYMBOL=PRICE_DP:QTY_DP such as BTC/USD=1:8, not {text!r}"
        )
    return symbol, int(pp), int(qp)


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
            reader = _open_capture(args.file, stack)
            _replay(reader, _display_name(args.file), feed, args.protocol, tally)
    except _InputError as exc:
        print(f"kbook verify: error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    report = _report(_display_name(args.file), args, feed, tally, time.perf_counter() - started)
    if not args.json:
        _print_summary(report, sys.stdout)
    else:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        if report["error"] is not None:
            print(f"kbook verify: error: {report['error']}", file=sys.stderr)
    code: int = report["exit_code"]
    return code


def cmd_record(args: argparse.Namespace) -> int:
    """Run ``kbook record``: write received frames, with receive times, to a capture file."""
    from kbook.commands import record

    if args.duration is None and args.count is None:
        print("kbook record: error: give --duration or --count", file=sys.stderr)
        return EXIT_UNREADABLE
    symbols = [s for s in (args.symbols or "").split(",") if s]
    try:
        result = asyncio.run(record(
            args.url, args.channel, symbols, args.output, protocol=args.protocol,
            depth=args.depth, interval=args.interval, duration=args.duration, count=args.count,
            compress=args.gzip or None, token=args.token, seed=args.seed, rate=args.rate))
    except KeyboardInterrupt:
        return 130
    except (OSError, KBookError) as exc:
        print(f"kbook record: error: {exc}", file=sys.stderr)
        return 1
    print(f"recorded {result.frames} frames in {result.seconds:.1f} s to {result.path}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """Run ``kbook watch``: a live view of one book, then a summary."""
    from kbook.commands import watch

    url = "sim" if args.sim else (args.url or None)
    if url is None:
        from kbook.client import ENDPOINTS

        url = ENDPOINTS[(args.protocol, "level3" if args.level3 else "public", False)]
    try:
        result = asyncio.run(watch(
            args.symbol, url=url, protocol=args.protocol, depth=args.depth, levels=args.levels,
            duration=args.duration, level3=args.level3, token=args.token, seed=args.seed,
            rate=args.rate))
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


def _capture_frames(path: str) -> list[bytes]:
    """Every frame of a capture (receive times and non-frame lines dropped)."""
    frames: list[bytes] = []
    with contextlib.ExitStack() as stack:
        reader = _open_capture(path, stack)
        for number, line in enumerate(_lines(reader, _display_name(path)), start=1):
            if number == 1 and line.startswith(_UTF8_BOM):
                line = line[len(_UTF8_BOM) :]
            stamp = _RECEIVE_TIME.match(line)
            frame = line[stamp.end() if stamp else 0 :].rstrip(b"\r\n")
            if frame.lstrip()[:1] in (b"{", b"["):
                frames.append(frame)
    return frames


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
        frames = _capture_frames(args.file)
    except _InputError as exc:
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
    for _ in range(args.rounds):   # interleaved, so machine noise hits every candidate alike
        took, verified, mismatches = engine()
        best["kbook engine"] = min(best["kbook engine"], took)
        for name, fn in baselines.items():
            other = baseline(fn)
            best[name] = min(best[name], other)
            ratios[name].append(took / other)
    n = len(frames)
    print(f"{_display_name(args.file)}: {n} frames, {args.rounds} interleaved rounds, "
          f"{verified} checksums verified, {mismatches} mismatched")
    for name, ns in best.items():
        line = f"  {name:22s} {ns / n:9.0f} ns/frame (best round)"
        if name in ratios:
            middle = sorted(ratios[name])[len(ratios[name]) // 2]
            line += f"   engine / this = {middle:.2f} (median of same-round ratios)"
        print(line)
    return 0 if mismatches == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    """Return the ``kbook`` parser; each subcommand sets ``func`` to its ``cmd_*`` function."""
    parser = argparse.ArgumentParser(
        prog="kbook", description="Kraken Spot WebSocket order books, exact and checksum-verified."
    )
    parser.add_argument("--version", action="version", version=f"kbook {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    commands.required = True

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
        type=_precision,
        action="append",
        metavar="SYMBOL=PP:QP",
        help="price and quantity decimals of a v2 symbol, e.g. ETH/USD=2:8 (repeatable); "
        "instrument messages in the capture take precedence",
    )
    verify.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the summary"
    )
    verify.set_defaults(func=cmd_verify)

    bench = commands.add_parser(
        "bench", help="time the engine over a capture against plain JSON decoding",
        description=_BENCH_DESCRIPTION)
    bench.add_argument("file", metavar="FILE", help="capture file (plain or gzip)")
    bench.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    bench.add_argument("--depth", type=int, choices=ALLOWED_DEPTHS, metavar="N",
                       help="v2 book depth for symbols without a subscribe ack")
    bench.add_argument("--precision", type=_precision, action="append", metavar="SYMBOL=PP:QP",
                       help="price and quantity decimals of a v2 symbol (repeatable)")
    bench.set_defaults(func=cmd_bench)

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
    rec.set_defaults(func=cmd_record)

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
    wat.set_defaults(func=cmd_watch)

    sim_cli.add_parser(commands)
    from kbook.history import cli as history_cli  # cheap: the research extra loads on use

    history_cli.add_parsers(commands)

    # `relay` and `bus-watch`; nats is imported only when one of them runs
    from kbook.bus import cli as bus_cli

    bus_cli.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``kbook`` command with ``argv`` (default: ``sys.argv[1:]``); return its status.

    Usage errors return 2 rather than raising :class:`SystemExit`, so tests and other callers
    can use the status directly.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # --help and --version exit with None/0, usage errors with 2.
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else EXIT_UNREADABLE
    func = args.func
    status: int = func(args)
    return status
