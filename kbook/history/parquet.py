"""Captures to exact Parquet tables: every row from the engine's verified replay.

:func:`export` replays a capture through :class:`kbook.Feed` (the engine every client uses,
reading lines with the same helpers as ``kbook verify``) and writes the requested tables with
pyarrow; :func:`export_tables` returns them in memory instead. Tables:

``book_updates``
    One row per price level change as the engine applied it: receive time, exchange time (v2:
    the message's ``timestamp``; v1: the level's own timestamp; null for level3 books, whose
    events carry their times in ``level3_events``), symbol, protocol (``v2``,
    ``v1``, ``l3`` for level3 books aggregated by price), side, price, quantity (0 = the level
    left the book), ``is_snapshot`` (the rows of a snapshot are the whole book; reset before
    applying them), the frame's checksum verdict and whether the book was valid afterwards.
``book_snapshots``
    The top ``depth`` levels of both sides, one column per rank (``bid_price_0``,
    ``bid_qty_0``, ``ask_price_0`` ...), after every book message, or with ``every_ms`` once per
    interval in which the book received a frame, stamped at the interval's end.
``level3_events``
    Every level3 order event as received (add/modify/delete; snapshot orders as ``add``).
``quotes``
    A row whenever the best bid or ask (price or quantity) or the book's validity changed.
    Its ``exchange_time``, and ``book_snapshots``', is the v2 message's time (null for v1 and
    level3 books, whose messages have no time of their own).
``trades``, ``ticker``, ``ohlc``
    The decoded messages of those channels (:mod:`kbook.messages`), when the capture has any.

**How level changes are found.** The engine keeps no per-level log, so after each book frame
the book's full levels (``bids()``/``asks()``: exact int ticks and lots, at most the subscribed
depth) are compared with its levels before that frame. This is exact by construction: the rows
are the difference between two states of the engine's own book (verified ones unless the
verdict says otherwise), after Kraken's truncation to the subscribed depth, with repeated
keys resolved and deletes of absent levels (which change nothing) left out; replaying the
rows from a snapshot gives the engine's book, level for level. Decoding the frame alongside
would instead give the wire's levels, which are not what the book holds. The wire is read
only for what the book does not keep: exchange times, and level3 order events (which are wire
events by definition; they carry their frame's verdict).

**Checksum verdicts** come from the engine's own counters around each frame: ``ok`` (checksum
matched), ``unverified`` (the frame had none), ``mismatch``, ``crossed`` (a verified book that
crossed), ``dropped`` (the book was invalid and waited for a snapshot). Rows of a frame that
left the book invalid have ``valid = false``; book snapshots and quotes of an invalid book have
null levels, so no query can read an invalid book as if it were valid; a dropped frame is still
written to ``book_snapshots`` (null levels, verdict ``dropped``) so the gap is visible.

**Numbers** are Parquet ``DECIMAL`` columns: prices ``decimal(18, S)`` (physically INT64,
since prices are below 10**18 ticks), quantities ``decimal(38, S)``, with ``S`` the largest
precision among the file's symbols (the pair's own precision in a one-pair file), fixed when
the first row group is written: a symbol that appears later with more decimals is an
:class:`ExportError` naming it (export it on its own with ``symbols``). Decimals were
chosen over scaled integers because DuckDB, Polars, pandas and Spark all read them as exact
numbers with no convention to know: a scaled integer that a query forgets to divide is off by
10**8 without a warning. Each pair's own precision is in the file's key-value metadata
(``kbook.precision``: ``{"BTC/USD": [1, 8]}``); ``trades``/``ticker``/``ohlc`` columns take the
most decimals any value of theirs was written with. No float is on the path: ticks and lots go
into the decimals' 128-bit words directly.

**Times** are ``timestamp[ns, tz=UTC]``, parsed from the capture's text without float.

**Layout**: each row group holds one symbol and at most one UTC hour (and at most
``ROW_GROUP_ROWS`` rows), rows in receive order, so the row groups' statistics let DuckDB or
Polars read only the groups of one symbol's hour.

What it is not: no repair of a capture, no resampling beyond ``every_ms``, no float anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from kbook._core import (
    BookIntegrityError,
    ChecksumMismatch,
    DecodeError,
    Feed,
    L2Book,
    Level3Book,
    UnknownPrecision,
    parse_scaled,
)
from kbook.capture import Frame, display_name, read_frames
from kbook.errors import CaptureError
from kbook.history._arrow import (
    TIME,
    ExportError,
    decimal_array,
    decimals_of,
    epoch_ns,
    rfc3339_ns,
    scaled,
    time_array,
)
from kbook.messages import Candle, Ticker, Trade, parse_message

__all__ = [
    "ROW_GROUP_ROWS",
    "TABLES",
    "CaptureError",
    "ExportError",
    "ExportResult",
    "Frame",
    "export",
    "export_tables",
    "read_frames",
]

TABLES = (
    "book_updates",
    "book_snapshots",
    "level3_events",
    "trades",
    "quotes",
    "ticker",
    "ohlc",
)
ROW_GROUP_ROWS = 131_072
_HOUR_NS = 3_600_000_000_000
_PRICE_DIGITS = 18
_QTY_DIGITS = 38


# -- reading frames ------------------------------------------------------------------------


# -- exchange times from the wire ---------------------------------------------------------


class _V2Entry(msgspec.Struct):
    symbol: str = ""
    timestamp: str | None = None


class _V2Book(msgspec.Struct):
    data: list[_V2Entry] = []


class _L3Event(msgspec.Struct):
    order_id: str
    limit_price: Decimal
    order_qty: Decimal
    event: str = "add"
    timestamp: str | None = None


class _L3Entry(msgspec.Struct):
    symbol: str
    bids: list[_L3Event] = []
    asks: list[_L3Event] = []


class _L3Message(msgspec.Struct):
    type: str = ""
    data: list[_L3Entry] = []


_v2_book_decoder = msgspec.json.Decoder(_V2Book)
_l3_decoder = msgspec.json.Decoder(_L3Message)
_any_decoder = msgspec.json.Decoder()


def _v2_times(frame: bytes) -> dict[str, int]:
    """Exchange time of each symbol of a v2 book frame (empty if it has none)."""
    try:
        msg = _v2_book_decoder.decode(frame)
    except msgspec.DecodeError:
        return {}
    out = {}
    for entry in msg.data:
        if entry.timestamp:
            with contextlib.suppress(ValueError):
                out[entry.symbol] = rfc3339_ns(entry.timestamp)
    return out


def _v1_times(frame: bytes, book: L2Book) -> dict[tuple[int, int], int]:
    """``{(side, price ticks): exchange time}`` of a v1 book frame's levels (side 0 bid, 1 ask)."""
    out: dict[tuple[int, int], int] = {}
    try:
        msg = _any_decoder.decode(frame)
    except msgspec.DecodeError:
        return out
    if not isinstance(msg, list):
        return out
    for part in msg[1:-2]:
        if not isinstance(part, dict):
            continue
        for key, levels in part.items():
            if key not in ("a", "b", "as", "bs") or not isinstance(levels, list):
                continue
            side = 0 if key[0] == "b" else 1
            for level in levels:
                with contextlib.suppress(Exception):
                    ticks = parse_scaled(level[0], book.price_precision, _PRICE_DIGITS)
                    out[(side, ticks)] = epoch_ns(level[2])
    return out


# -- tables --------------------------------------------------------------------------------


@dataclass
class _Column:
    name: str
    kind: str  # time, str, bool, int, price, qty, dec


def _book_columns(table: str, depth: int) -> list[_Column]:
    head = [
        _Column("receive_time", "time"),
        _Column("exchange_time", "time"),
        _Column("symbol", "str"),
        _Column("protocol", "str"),
    ]
    tail = [_Column("checksum", "str"), _Column("valid", "bool"), _Column("line", "int")]
    if table == "book_updates":
        return [
            *head,
            _Column("side", "str"),
            _Column("price", "price"),
            _Column("qty", "qty"),
            _Column("is_snapshot", "bool"),
            *tail,
        ]
    if table == "quotes":
        return [
            *head,
            _Column("bid_price", "price"),
            _Column("bid_qty", "qty"),
            _Column("ask_price", "price"),
            _Column("ask_qty", "qty"),
            *tail,
        ]
    if table == "level3_events":
        return [
            *head,
            _Column("side", "str"),
            _Column("event", "str"),
            _Column("order_id", "str"),
            _Column("price", "price"),
            _Column("qty", "qty"),
            _Column("is_snapshot", "bool"),
            *tail,
        ]
    ranks = []
    for r in range(depth):
        ranks += [
            _Column(f"bid_price_{r}", "price"),
            _Column(f"bid_qty_{r}", "qty"),
            _Column(f"ask_price_{r}", "price"),
            _Column(f"ask_qty_{r}", "qty"),
        ]
    return [*head, _Column("bid_levels", "int"), _Column("ask_levels", "int"), *ranks, *tail]


_MESSAGE_COLUMNS: dict[str, list[_Column]] = {
    "trades": [
        _Column("receive_time", "time"),
        _Column("exchange_time", "time"),
        _Column("symbol", "str"),
        _Column("side", "str"),
        _Column("price", "dec"),
        _Column("qty", "dec"),
        _Column("ord_type", "str"),
        _Column("trade_id", "int"),
        _Column("line", "int"),
    ],
    "ticker": [
        _Column("receive_time", "time"),
        _Column("exchange_time", "time"),
        _Column("symbol", "str"),
        *(
            _Column(n, "dec")
            for n in (
                "bid",
                "bid_qty",
                "ask",
                "ask_qty",
                "last",
                "volume",
                "vwap",
                "low",
                "high",
                "change",
                "change_pct",
                "open",
            )
        ),
        _Column("line", "int"),
    ],
    "ohlc": [
        _Column("receive_time", "time"),
        _Column("interval_begin", "time"),
        _Column("symbol", "str"),
        _Column("interval", "int"),
        *(_Column(n, "dec") for n in ("open", "high", "low", "close", "vwap", "volume")),
        _Column("trades", "int"),
        _Column("line", "int"),
    ],
}


def _arrow_type(kind: str, price_scale: int, qty_scale: int, scale: int = 0) -> pa.DataType:
    return {
        "time": TIME,
        "str": pa.string(),
        "bool": pa.bool_(),
        "int": pa.int64(),
        "price": pa.decimal128(_PRICE_DIGITS, price_scale),
        "qty": pa.decimal128(_QTY_DIGITS, qty_scale),
        "dec": pa.decimal128(_QTY_DIGITS, scale),
    }[kind]


class _Sink:
    """Where one table's row groups go: a Parquet file, or a list of in-memory tables."""

    def __init__(self, table: str, path: str | None, source: str) -> None:
        self.table = table
        self.path = path
        self.source = source
        self.writer: pq.ParquetWriter | None = None
        self.parts: list[pa.Table] = []
        self.rows = 0

    def write(self, chunk: pa.Table) -> None:
        self.rows += chunk.num_rows
        if self.path is None:
            self.parts.append(chunk)
            return
        if self.writer is None:
            self.writer = pq.ParquetWriter(
                self.path, chunk.schema, compression="zstd", store_decimal_as_integer=True
            )
        self.writer.write_table(chunk, row_group_size=max(chunk.num_rows, 1))

    def close(self, schema: pa.Schema, metadata: dict[str, str]) -> pa.Table | None:
        if self.writer is None and self.path is not None:
            self.writer = pq.ParquetWriter(
                self.path, schema, compression="zstd", store_decimal_as_integer=True
            )
            self.writer.write_table(schema.empty_table())
        if self.writer is not None:
            self.writer.add_key_value_metadata(metadata)
            self.writer.close()
            return None
        table = pa.concat_tables(self.parts) if self.parts else schema.empty_table()
        return table.replace_schema_metadata({**(schema.metadata or {}), **metadata})


class _Pending:
    """One symbol's rows not yet written: all in the UTC hour ``[lo, hi)`` (or all untimed)."""

    __slots__ = ("lo", "hi", "precision", "rows")

    def __init__(self, lo: int, hi: int, precision: tuple[int, int]) -> None:
        self.lo = lo
        self.hi = hi
        self.precision = precision
        self.rows: list[tuple[Any, ...]] = []


class _BookTable:
    """A book table written a row group at a time: one symbol, at most one hour per group."""

    def __init__(
        self,
        name: str,
        columns: list[_Column],
        sink: _Sink,
        precisions: Callable[[], dict[str, tuple[int, int]]],
    ) -> None:
        self.name = name
        self.columns = columns
        self.sink = sink
        self.precisions = precisions
        self.scales: tuple[int, int] | None = None
        self.pending: dict[str, _Pending] = {}

    def add(self, symbol: str, precision: tuple[int, int], row: tuple[Any, ...]) -> None:
        self.extend(symbol, precision, row[0], [row])

    def extend(
        self,
        symbol: str,
        precision: tuple[int, int],
        received: int | None,
        rows: list[tuple[Any, ...]],
    ) -> None:
        """Add rows that share one receive time (one frame's)."""
        buf = self.pending.get(symbol)
        if (
            buf is None
            or buf.precision != precision
            or len(buf.rows) >= ROW_GROUP_ROWS
            or (not buf.lo <= received < buf.hi if received is not None else buf.lo >= 0)
        ):
            if buf is not None:
                self._flush(symbol)
            lo = -1 if received is None else received // _HOUR_NS * _HOUR_NS
            buf = self.pending[symbol] = _Pending(lo, lo + _HOUR_NS, precision)
        buf.rows.extend(rows)

    def _scales(self) -> tuple[int, int]:
        if self.scales is None:
            known = self.precisions()
            self.scales = (
                max((p for p, _ in known.values()), default=0),
                max((q for _, q in known.values()), default=0),
            )
        return self.scales

    def schema(self) -> pa.Schema:
        ps, qs = self._scales()
        return pa.schema([pa.field(c.name, _arrow_type(c.kind, ps, qs)) for c in self.columns])

    def _flush(self, symbol: str) -> None:
        buf = self.pending.pop(symbol)
        pp, qp = buf.precision
        values = list(zip(*buf.rows, strict=True))
        ps, qs = self._scales()
        if pp > ps or qp > qs:
            raise ExportError(
                f"{symbol} has {pp}:{qp} decimals but {self.name} was started at {ps}:{qs}; "
                "export it on its own with --symbols"
            )
        arrays = []
        for column, data in zip(self.columns, values, strict=True):
            if column.kind == "price":
                m = 10 ** (ps - pp)
                arrays.append(
                    decimal_array(
                        data if m == 1 else [None if v is None else v * m for v in data],
                        _PRICE_DIGITS,
                        ps,
                    )
                )
            elif column.kind == "qty":
                m = 10 ** (qs - qp)
                arrays.append(
                    decimal_array(
                        data if m == 1 else [None if v is None else v * m for v in data],
                        _QTY_DIGITS,
                        qs,
                    )
                )
            elif column.kind == "time":
                arrays.append(time_array(data))
            else:
                arrays.append(pa.array(data, type=_arrow_type(column.kind, ps, qs)))
        self.sink.write(pa.Table.from_arrays(arrays, schema=self.schema()))

    def close(self, metadata: dict[str, str]) -> pa.Table | None:
        for symbol in list(self.pending):
            self._flush(symbol)
        return self.sink.close(self.schema(), metadata)


class _MessageTable:
    """A table of decoded messages, kept whole and written at the end, sorted by symbol."""

    def __init__(self, name: str, sink: _Sink) -> None:
        self.name = name
        self.columns = _MESSAGE_COLUMNS[name]
        self.sink = sink
        self.rows: list[Sequence[Any]] = []

    def add(self, row: Sequence[Any]) -> None:
        self.rows.append(row)

    def close(self, metadata: dict[str, str]) -> pa.Table | None:
        scales = {}
        for i, column in enumerate(self.columns):
            if column.kind == "dec":
                scales[i] = max(
                    (decimals_of(r[i]) for r in self.rows if r[i] is not None), default=0
                )
        fields = [
            pa.field(c.name, _arrow_type(c.kind, 0, 0, scales.get(i, 0)))
            for i, c in enumerate(self.columns)
        ]
        schema = pa.schema(fields)
        symbol_at = [c.name for c in self.columns].index("symbol")
        # stable: receive order within a symbol
        self.rows.sort(key=lambda r: r[symbol_at])
        start = 0
        while start < len(self.rows):
            symbol, first = self.rows[start][symbol_at], self.rows[start][0]
            hour = -1 if first is None else first // _HOUR_NS
            end = start
            while (
                end < len(self.rows)
                and end - start < ROW_GROUP_ROWS
                and self.rows[end][symbol_at] == symbol
                and (-1 if self.rows[end][0] is None else self.rows[end][0] // _HOUR_NS) == hour
            ):
                end += 1
            self.sink.write(self._chunk(self.rows[start:end], schema, scales))
            start = end
        return self.sink.close(schema, metadata)

    def _chunk(
        self, rows: list[Sequence[Any]], schema: pa.Schema, scales: dict[int, int]
    ) -> pa.Table:
        arrays = []
        for i, column in enumerate(self.columns):
            data = [r[i] for r in rows]
            if column.kind == "dec":
                s = scales[i]
                arrays.append(
                    decimal_array(
                        [None if v is None else scaled(v, s, column.name) for v in data],
                        _QTY_DIGITS,
                        s,
                    )
                )
            elif column.kind == "time":
                arrays.append(time_array(data))
            else:
                arrays.append(pa.array(data, type=schema.field(i).type))
        return pa.Table.from_arrays(arrays, schema=schema)


# -- the replay ----------------------------------------------------------------------------


@dataclass
class ExportResult:
    """What an export read and wrote.

    :ivar frames: frame lines replayed
    :ivar rows: rows written per table
    :ivar failed_frames: book frames whose verdict was not ``ok``/``unverified``
        (``mismatch``, ``crossed``, ``dropped``), by line
    :ivar decode_errors: lines that could not be decoded (only with ``strict=False``)
    :ivar paths: table -> file written (empty for :func:`export_tables`)
    """

    frames: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    failed_frames: dict[int, str] = field(default_factory=dict)
    decode_errors: dict[int, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


class _BookState:
    """What the export remembers of one book between its frames."""

    __slots__ = (
        "book",
        "protocol",
        "counts",
        "bids",
        "asks",
        "valid",
        "quote",
        "interval",
        "last_line",
        "last_exchange",
        "last_verdict",
    )

    def __init__(self, book: L2Book | Level3Book, protocol: str) -> None:
        self.book = book
        self.protocol = protocol
        self.counts = (0, 0, 0, 0, 0)
        self.bids: list[tuple[int, int]] = []
        self.asks: list[tuple[int, int]] = []
        self.valid = False
        self.quote: tuple[Any, ...] | None = None
        self.interval = -1
        self.last_line = 0
        self.last_exchange: int | None = None
        self.last_verdict = ""


def _counts(book: L2Book | Level3Book) -> tuple[int, int, int, int, int]:
    return (
        book.messages,
        book.snapshots,
        book.checksums_verified,
        book.checksum_mismatches,
        book.dropped_updates,
    )


def _levels(book: L2Book | Level3Book, side: int) -> list[tuple[int, int]]:
    if isinstance(book, L2Book):
        return book.bids() if side == 0 else book.asks()
    return [(p, q) for p, q, _ in (book.bids() if side == 0 else book.asks())]


class _Exporter:
    def __init__(
        self,
        tables: Sequence[str],
        depth: int,
        every_ms: int | None,
        symbols: Iterable[str] | None,
        strict: bool,
        sinks: dict[str, _Sink],
    ) -> None:
        unknown = [t for t in tables if t not in TABLES]
        if unknown:
            raise ExportError(f"unknown table {unknown[0]!r}; tables: {', '.join(TABLES)}")
        if depth < 1:
            raise ExportError("depth must be at least 1")
        if every_ms is not None and every_ms <= 0:
            raise ExportError("every_ms must be positive")
        self.depth = depth
        self.every_ns = None if every_ms is None else every_ms * 1_000_000
        self.symbols = None if symbols is None else set(symbols)
        self.strict = strict
        self.feed = Feed()
        self.states: dict[int, _BookState] = {}
        self.precision: dict[str, tuple[int, int]] = {}
        self.result = ExportResult()
        self.book_tables: dict[str, _BookTable] = {}
        self.message_tables: dict[str, _MessageTable] = {}
        for name in tables:
            if name in _MESSAGE_COLUMNS:
                self.message_tables[name] = _MessageTable(name, sinks[name])
            else:
                self.book_tables[name] = _BookTable(
                    name, _book_columns(name, depth), sinks[name], self._precisions
                )
        self.want_levels = bool({"book_updates", "book_snapshots", "quotes"} & set(tables))

    def _precisions(self) -> dict[str, tuple[int, int]]:
        """Precisions of the symbols this export writes (all, without a symbol filter)."""
        return {
            s: p for s, p in self.precision.items() if self.symbols is None or s in self.symbols
        }

    # -- per frame --

    def run(self, frames: Iterable[Frame], name: str) -> None:
        feed = self.feed
        for frame in frames:
            self.result.frames += 1
            before = feed.book_messages
            result: Any = None
            try:
                result = feed.process(frame.data)
            except (ChecksumMismatch, BookIntegrityError):
                pass  # the book's counters say which; _book_frame reads them
            except (UnknownPrecision, DecodeError) as exc:
                if self.strict:
                    raise CaptureError(f"{name}: line {frame.line}: {exc}") from None
                self.result.decode_errors[frame.line] = str(exc)
                continue
            if feed.book_messages != before:
                if isinstance(result, L2Book | Level3Book) and feed.book_messages == before + 1:
                    # one book message: the returned book is the only one it touched
                    touched = [self._state(result)]
                else:
                    touched = [self._state(b) for b in feed.books.values()]
                self._books(frame, touched)
            elif result is not None and not isinstance(result, L2Book | Level3Book):
                self._other(frame, result, name)

    def _state(self, book: L2Book | Level3Book) -> _BookState:
        state = self.states.get(id(book))
        if state is None:
            protocol = next(key[0] for key, b in self.feed.books.items() if b is book)
            state = self.states[id(book)] = _BookState(book, protocol)
        return state

    def _books(self, frame: Frame, touched: list[_BookState]) -> None:
        times: dict[str, int] | None = None
        for state in touched:
            book = state.book
            if self.symbols is not None and book.symbol not in self.symbols:
                state.counts = _counts(book)
                continue
            if times is None:
                times = _v2_times(frame.data) if state.protocol != "v1" else {}
            self._book_frame(frame, state, times.get(book.symbol))

    def _book_frame(self, frame: Frame, state: _BookState, exchange: int | None) -> None:
        book = state.book
        counts = _counts(book)
        old = state.counts
        if counts == old:
            return  # a frame of several books that did not touch this one
        state.counts = counts
        snapshot = counts[1] > old[1]
        if counts[4] > old[4]:
            verdict = "dropped"
        elif counts[3] > old[3]:
            verdict = "mismatch"
        elif not book.valid:
            verdict = "crossed"
        elif counts[2] > old[2]:
            verdict = "ok"
        else:
            verdict = "unverified"
        if verdict not in ("ok", "unverified"):
            self.result.failed_frames[frame.line] = verdict
        symbol = book.symbol
        if book.price_precision >= 0:
            self.precision[symbol] = (book.price_precision, book.qty_precision)
        precision = self.precision.get(symbol, (0, 0))
        valid = book.valid
        received = frame.received
        # interval sampling: the previous state closes its interval before this frame counts
        snaps = self.book_tables.get("book_snapshots")
        if snaps is not None and self.every_ns is not None and received is not None:
            interval = received // self.every_ns
            if state.interval not in (-1, interval):
                self._snapshot_row(snaps, state, (state.interval + 1) * self.every_ns, precision)
            state.interval = interval
        if verdict == "dropped":
            state.last_line, state.last_verdict = frame.line, verdict
            state.valid = False
            if snaps is not None and self.every_ns is None:
                self._snapshot_row(snaps, state, received, precision, exchange)
            return
        if self.want_levels:
            bids, asks = _levels(book, 0), _levels(book, 1)
        else:
            bids, asks = state.bids, state.asks
        updates = self.book_tables.get("book_updates")
        if updates is not None:
            v1_times = (
                _v1_times(frame.data, book)
                if state.protocol == "v1" and isinstance(book, L2Book)
                else None
            )
            rows: list[tuple[Any, ...]] = []
            for side, new, prev in ((0, bids, state.bids), (1, asks, state.asks)):
                name = "bid" if side == 0 else "ask"
                if snapshot:
                    changes = new
                elif new == prev:
                    continue
                else:
                    now = dict(new)
                    before = set(prev)
                    changes = [lv for lv in new if lv not in before]
                    changes += [(p, 0) for p, _ in prev if p not in now]
                    changes.sort(key=lambda lv: -lv[0] if side == 0 else lv[0])
                protocol, line = state.protocol, frame.line
                if v1_times is None:
                    rows += [
                        (
                            received,
                            exchange,
                            symbol,
                            protocol,
                            name,
                            price,
                            qty,
                            snapshot,
                            verdict,
                            valid,
                            line,
                        )
                        for price, qty in changes
                    ]
                else:
                    rows += [
                        (
                            received,
                            v1_times.get((side, price)),
                            symbol,
                            protocol,
                            name,
                            price,
                            qty,
                            snapshot,
                            verdict,
                            valid,
                            line,
                        )
                        for price, qty in changes
                    ]
            if rows:
                updates.extend(symbol, precision, received, rows)
        state.bids, state.asks = bids, asks
        state.valid = valid
        state.last_line, state.last_exchange, state.last_verdict = frame.line, exchange, verdict
        if snaps is not None and self.every_ns is None:
            self._snapshot_row(snaps, state, received, precision, exchange)
        quotes = self.book_tables.get("quotes")
        if quotes is not None:
            top = (
                (bids[0] if bids else (None, None)) + (asks[0] if asks else (None, None))
                if valid
                else (None, None, None, None)
            )
            key = (*top, valid)
            if key != state.quote:
                state.quote = key
                quotes.add(
                    symbol,
                    precision,
                    (received, exchange, symbol, state.protocol, *top, verdict, valid, frame.line),
                )
        events = self.book_tables.get("level3_events")
        if events is not None and state.protocol == "l3":
            self._l3_events(events, frame, state, precision, snapshot, verdict, valid)

    def _snapshot_row(
        self,
        table: _BookTable,
        state: _BookState,
        when: int | None,
        precision: tuple[int, int],
        exchange: int | None = None,
    ) -> None:
        n = self.depth
        ranks: list[Any] = []
        if state.valid:
            bids, asks = state.bids, state.asks
            for r in range(n):
                b = bids[r] if r < len(bids) else (None, None)
                a = asks[r] if r < len(asks) else (None, None)
                ranks += [b[0], b[1], a[0], a[1]]
            counts: tuple[Any, Any] = (len(bids), len(asks))
        else:
            ranks = [None] * (4 * n)
            counts = (None, None)
        table.add(
            state.book.symbol,
            precision,
            (
                when,
                exchange if exchange is not None else state.last_exchange,
                state.book.symbol,
                state.protocol,
                *counts,
                *ranks,
                state.last_verdict,
                state.valid,
                state.last_line,
            ),
        )

    def _l3_events(
        self,
        table: _BookTable,
        frame: Frame,
        state: _BookState,
        precision: tuple[int, int],
        snapshot: bool,
        verdict: str,
        valid: bool,
    ) -> None:
        try:
            msg = _l3_decoder.decode(frame.data)
        except msgspec.DecodeError:
            return
        pp, qp = precision
        symbol = state.book.symbol
        for entry in msg.data:
            if entry.symbol != symbol:
                continue
            for side, events in (("bid", entry.bids), ("ask", entry.asks)):
                for ev in events:
                    when = None
                    if ev.timestamp:
                        with contextlib.suppress(ValueError):
                            when = rfc3339_ns(ev.timestamp)
                    table.add(
                        symbol,
                        precision,
                        (
                            frame.received,
                            when,
                            symbol,
                            "l3",
                            side,
                            "add" if snapshot else ev.event,
                            ev.order_id,
                            scaled(ev.limit_price, pp, f"{symbol} price"),
                            scaled(ev.order_qty, qp, f"{symbol} qty"),
                            snapshot,
                            verdict,
                            valid,
                            frame.line,
                        ),
                    )

    def _other(self, frame: Frame, obj: Any, name: str) -> None:
        if isinstance(obj, dict) and obj.get("channel") == "instrument":
            data = obj.get("data")
            for pair in (data.get("pairs") if isinstance(data, dict) else None) or ():
                if isinstance(pair, dict) and isinstance(pair.get("symbol"), str):
                    pp, qp = pair.get("price_precision"), pair.get("qty_precision")
                    if isinstance(pp, int) and isinstance(qp, int):
                        self.precision.setdefault(pair["symbol"], (pp, qp))
        if not self.message_tables:
            return
        try:
            messages = parse_message(obj)
        except ValueError as exc:
            if self.strict:
                raise CaptureError(f"{name}: line {frame.line}: {exc}") from None
            self.result.decode_errors[frame.line] = str(exc)
            return
        for msg in messages:
            if self.symbols is not None and getattr(msg, "symbol", None) not in self.symbols:
                continue
            try:
                self._message(frame, msg)
            except ValueError as exc:
                raise CaptureError(f"{name}: line {frame.line}: {exc}") from None

    def _message(self, frame: Frame, msg: Any) -> None:
        received = frame.received
        if isinstance(msg, Trade) and "trades" in self.message_tables:
            self.message_tables["trades"].add(
                (
                    received,
                    rfc3339_ns(msg.timestamp),
                    msg.symbol,
                    msg.side,
                    msg.price,
                    msg.qty,
                    msg.ord_type,
                    msg.trade_id,
                    frame.line,
                )
            )
        elif isinstance(msg, Ticker) and "ticker" in self.message_tables:
            self.message_tables["ticker"].add(
                (
                    received,
                    rfc3339_ns(msg.timestamp) if msg.timestamp else None,
                    msg.symbol,
                    msg.bid,
                    msg.bid_qty,
                    msg.ask,
                    msg.ask_qty,
                    msg.last,
                    msg.volume,
                    msg.vwap,
                    msg.low,
                    msg.high,
                    msg.change,
                    msg.change_pct,
                    msg.open,
                    frame.line,
                )
            )
        elif isinstance(msg, Candle) and "ohlc" in self.message_tables:
            self.message_tables["ohlc"].add(
                (
                    received,
                    rfc3339_ns(msg.interval_begin),
                    msg.symbol,
                    msg.interval,
                    msg.open,
                    msg.high,
                    msg.low,
                    msg.close,
                    msg.vwap,
                    msg.volume,
                    msg.trades,
                    frame.line,
                )
            )

    # -- the end --

    def finish(self, source: str) -> dict[str, pa.Table]:
        snaps = self.book_tables.get("book_snapshots")
        if snaps is not None and self.every_ns is not None:
            for state in self.states.values():
                if state.interval >= 0 and (
                    self.symbols is None or state.book.symbol in self.symbols
                ):
                    precision = self.precision.get(state.book.symbol, (0, 0))
                    self._snapshot_row(
                        snaps, state, (state.interval + 1) * self.every_ns, precision
                    )
        out: dict[str, pa.Table] = {}
        every: list[tuple[str, _BookTable | _MessageTable]] = [
            *self.book_tables.items(),
            *self.message_tables.items(),
        ]
        for name, table in every:
            metadata = {
                "kbook.table": name,
                "kbook.source": source,
                "kbook.precision": json.dumps(
                    {s: list(p) for s, p in sorted(self._precisions().items())}
                ),
                "kbook.depth": str(self.depth),
                "kbook.every_ms": "" if self.every_ns is None else str(self.every_ns // 1_000_000),
            }
            written = table.close(metadata)
            self.result.rows[name] = table.sink.rows
            if written is not None:
                out[name] = written
        return out


def _normalise(tables: str | Sequence[str]) -> list[str]:
    names = [tables] if isinstance(tables, str) else list(tables)
    out: list[str] = []
    for name in names:
        for part in name.split(","):
            if part and part not in out:
                out.append(part)
    if not out:
        raise ExportError("no table to export")
    return out


def export_tables(
    capture: str,
    tables: str | Sequence[str] = ("book_updates",),
    *,
    depth: int = 10,
    every_ms: int | None = None,
    symbols: Iterable[str] | None = None,
    strict: bool = True,
) -> tuple[dict[str, pa.Table], ExportResult]:
    """Replay ``capture`` and return the requested tables in memory (see the module docstring).

    :param capture: capture path (plain or gzip)
    :param tables: names from :data:`TABLES` (a list, or one comma-separated string)
    :param depth: levels per side in ``book_snapshots``
    :param every_ms: ``book_snapshots`` once per interval of this many milliseconds
    :param symbols: only rows of these symbols
    :param strict: raise on a frame that cannot be decoded instead of skipping it
    :return: ``({table: pyarrow.Table}, ExportResult)``
    :raises CaptureError: unreadable capture, or (``strict``) a malformed line
    :raises ExportError: bad arguments, or a value that cannot be stored exactly

    >>> tables, result = export_tables("samples/btcusd-v2.capture", "quotes")
    >>> tables["quotes"].num_rows > 0, result.failed_frames
    (True, {})
    """
    names = _normalise(tables)
    source = os.path.basename(capture)
    sinks = {name: _Sink(name, None, source) for name in names}
    exporter = _Exporter(names, depth, every_ms, symbols, strict, sinks)
    exporter.run(read_frames(capture), display_name(capture))
    return exporter.finish(source), exporter.result


def export(
    capture: str,
    out: str,
    tables: str | Sequence[str] = ("book_updates",),
    *,
    depth: int = 10,
    every_ms: int | None = None,
    symbols: Iterable[str] | None = None,
    strict: bool = True,
) -> ExportResult:
    """Replay ``capture`` and write the requested tables as Parquet.

    With one table ``out`` is the file written; with several it is a directory (created if
    needed) that receives ``<table>.parquet`` each. Arguments as in :func:`export_tables`.

    :return: counts of what was read and written, and the paths
    :raises CaptureError: unreadable capture, or (``strict``) a malformed line
    :raises ExportError: bad arguments, or a value that cannot be stored exactly
    """
    names = _normalise(tables)
    if len(names) == 1:
        paths = {names[0]: out}
    else:
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"cannot create {out}: {exc.strerror or exc}") from None
        paths = {name: os.path.join(out, f"{name}.parquet") for name in names}
    source = os.path.basename(capture)
    sinks = {name: _Sink(name, paths[name], source) for name in names}
    exporter = _Exporter(names, depth, every_ms, symbols, strict, sinks)
    try:
        exporter.run(read_frames(capture), display_name(capture))
        exporter.finish(source)
    except OSError as exc:
        raise ExportError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from None
    finally:
        for sink in sinks.values():
            if sink.writer is not None and sink.writer.is_open:
                sink.writer.close()
    exporter.result.paths = paths
    return exporter.result
