"""The book at any moment of a capture: ``History(path).book_at(symbol, time)``.

:class:`History` replays a capture once through :class:`kbook.Feed` to index it: for every book
it keeps each of its frames' receive time and byte range, and a checkpoint (the book's exact
levels, or orders for level3, and its validity) every ``checkpoint_every`` of its frames.
:meth:`History.book_at` then builds the book in a fresh feed from the last checkpoint before
the time asked and replays only that book's frames from there, through the same engine, so the
book it returns has the levels, validity and checksums the live client had after the last frame
received at or before that time.

Cost: indexing is one replay of the whole capture plus a few list appends per frame; memory is
24 bytes per book frame plus one checkpoint per ``checkpoint_every`` book frames (two sides of
at most the subscribed depth, as exact strings; level3: one entry per resting order). A
``book_at`` replays at most ``checkpoint_every`` frames of that book (frames of other symbols
are never read) plus one restore of O(depth) (level3: O(orders)). Measured by
``benchmarks/research_bench.py`` on a 1,000,050-frame capture (two v2 books, 2-vCPU VM):
indexing 6.1 s (2.9x ``kbook verify``'s replay of the same file in the same run),
``book_at`` median 0.98 ms (the cost of replaying about 500 frames) with the default
``checkpoint_every=1000``. Plain captures are memory-mapped; a gzip
capture is decompressed into memory once.

What is not restored: the book's counters (``messages``, ``checksums_verified``, ...) count what
the private feed replayed, not what the live feed had seen; a subscribe ack that changes a
book's depth in the middle of a capture is not replayed (the snapshot after it is).

What it is not: not a Parquet reader (export with :mod:`kbook.history.parquet` for that), and
it never repairs a capture: a book that was invalid at that time comes back invalid.
"""

from __future__ import annotations

import bisect
import calendar
import contextlib
import gzip
import mmap
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from kbook._core import (
    BookIntegrityError,
    ChecksumMismatch,
    DecodeError,
    Feed,
    KBookError,
    L2Book,
    Level3Book,
    UnknownPrecision,
)
from kbook.history.parquet import CaptureError, Frame, read_frames

__all__ = ["History", "TopOfBook", "to_ns"]

Book = L2Book | Level3Book


_ISO = re.compile(
    r"(\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d)?)?)(?:\.(\d{1,9}))?(Z|z|[+-]\d\d:\d\d)?"
)


def to_ns(when: int | str | datetime | np.datetime64) -> int:
    """Return epoch nanoseconds (UTC) of ``when``.

    :param when: epoch nanoseconds, an aware ``datetime``, ``numpy.datetime64``, or an ISO 8601
        string (``"2023-10-06T17:35:57.5Z"``, up to nanoseconds; without an offset it is UTC)
    :raises ValueError: a naive ``datetime`` or an unreadable string
    """
    if isinstance(when, bool):
        raise ValueError("a time cannot be a bool")
    if isinstance(when, int | np.integer):
        return int(when)
    if isinstance(when, np.datetime64):
        return int(when.astype("datetime64[ns]").astype(np.int64))
    if isinstance(when, str):
        match = _ISO.fullmatch(when.strip())
        if match is None:
            raise ValueError(f"not an ISO 8601 time: {when!r}")
        base, frac, zone = match.groups()
        seconds = calendar.timegm(datetime.fromisoformat(base).timetuple())
        offset = 0
        if zone and zone not in ("Z", "z"):
            sign = -1 if zone[0] == "-" else 1
            offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
        return (seconds - offset) * 1_000_000_000 + int(((frac or "") + "000000000")[:9])
    if when.tzinfo is None:
        raise ValueError("give an aware datetime (tzinfo=UTC), not a naive one")
    return calendar.timegm(when.utctimetuple()) * 1_000_000_000 + when.microsecond * 1000


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    frame: int  # index into the book's frames: the state is after this frame
    valid: bool
    depth: int
    precision: tuple[int, int]
    bids: list[Any]  # L2: [(price, qty)] as exact strings; level3: add events
    asks: list[Any]


class _BookIndex:
    """One book's frames and checkpoints."""

    def __init__(self, key: tuple[str, str], symbol: str) -> None:
        self.key = key
        self.symbol = symbol
        self.received: list[int] = []
        self.offsets: list[int] = []
        self.sizes: list[int] = []
        self.snapshots: list[int] = []  # indexes of frames that were snapshots
        self.checkpoints: list[_Checkpoint] = []
        # (depth, (price dp, qty dp)) after each snapshot frame, parallel to `snapshots`
        self.setups: list[tuple[int, tuple[int, int]]] = []
        # after indexing: the same as arrays, 24 bytes per frame
        self.times: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self.starts: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self.lengths: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)

    def freeze(self) -> None:
        """Turn the frame lists into arrays once indexing is done."""
        self.times = np.array(self.received, dtype=np.int64)
        self.starts = np.array(self.offsets, dtype=np.int64)
        self.lengths = np.array(self.sizes, dtype=np.int64)
        self.received, self.offsets, self.sizes = [], [], []


@dataclass(frozen=True)
class TopOfBook:
    """Top-N series of one book: exact integers, one row per book frame.

    :ivar time: receive times, ``datetime64[ns]`` (UTC)
    :ivar valid: whether the book was valid after the frame
    :ivar bid_price: ``(frames, n)`` int64 ticks (0 where the side had fewer levels or the book
        was invalid); likewise ``bid_qty`` (lots), ``ask_price``, ``ask_qty``
    :ivar price_precision: decimals of a tick; ``qty_precision`` of a lot
    """

    symbol: str
    time: npt.NDArray[np.datetime64]
    valid: npt.NDArray[np.bool_]
    bid_price: npt.NDArray[np.int64]
    bid_qty: npt.NDArray[np.int64]
    ask_price: npt.NDArray[np.int64]
    ask_qty: npt.NDArray[np.int64]
    price_precision: int
    qty_precision: int

    def to_polars(self) -> Any:
        """Return a Polars frame: ``time``, ``valid``, then exact decimal columns per rank.

        Levels a side did not have, and every level of an invalid book, are null.
        """
        import polars as pl
        import pyarrow as pa

        from kbook.history._arrow import decimal_array, time_array

        arrays: dict[str, pa.Array] = {
            "time": time_array(self.time.astype(np.int64)),
            "valid": pa.array(self.valid),
        }
        n = self.bid_price.shape[1] if self.bid_price.ndim == 2 else 0
        for r in range(n):
            for name, values, digits, scale in (
                ("bid_price", self.bid_price, 18, self.price_precision),
                ("bid_qty", self.bid_qty, 38, self.qty_precision),
                ("ask_price", self.ask_price, 18, self.price_precision),
                ("ask_qty", self.ask_qty, 38, self.qty_precision),
            ):
                price_col = self.bid_price if name.startswith("bid") else self.ask_price
                column = [
                    int(v) if ok and p else None
                    for v, p, ok in zip(values[:, r], price_col[:, r], self.valid, strict=True)
                ]
                arrays[f"{name}_{r}"] = decimal_array(column, digits, scale)
        return pl.from_arrow(pa.table(arrays))


class History:
    """An indexed capture: the book of any symbol at any receive time.

    :param path: capture file (plain or gzip); every frame line needs its receive time
    :param checkpoint_every: book frames between checkpoints (the most ``book_at`` replays)
    :param precisions: ``{symbol: (price_dp, qty_dp)}`` for v2 pairs the capture does not
        describe (as ``kbook verify --precision``)
    :param default_depth: v2 depth for books without a subscribe ack
    :raises CaptureError: unreadable capture, a line without a receive time, or a frame that
        cannot be decoded (the message names the line)

    >>> with History("samples/btcusd-v2.capture") as h:
    ...     book = h.book_at("BTC/USD", "2023-10-06T17:35:58Z")
    >>> book.valid, book.symbol
    (True, 'BTC/USD')
    """

    def __init__(
        self,
        path: str,
        *,
        checkpoint_every: int = 1000,
        precisions: dict[str, tuple[int, int]] | None = None,
        default_depth: int | None = None,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.path = path
        self.checkpoint_every = checkpoint_every
        self._precisions = dict(precisions or {})
        self._default_depth = default_depth
        self._books: dict[tuple[str, str], _BookIndex] = {}
        self._buffer: bytes | mmap.mmap = b""
        self._stack = contextlib.ExitStack()
        self.frames = 0
        # book key -> messages + dropped updates, and snapshots, at its last recorded frame
        self._seen: dict[tuple[str, str], int] = {}
        self._snaps: dict[tuple[str, str], int] = {}
        self._index()

    def close(self) -> None:
        """Release the capture's memory map."""
        self._stack.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- indexing --

    def _open_buffer(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                if handle.read(2) == b"\x1f\x8b":
                    handle.seek(0)
                    self._buffer = gzip.decompress(handle.read())
                elif handle.seek(0, 2) > 0:
                    # the map keeps its own descriptor; the file can be closed
                    self._buffer = self._stack.enter_context(
                        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                    )
        except (OSError, EOFError) as exc:
            raise CaptureError(f"cannot read {self.path}: {exc}") from None

    def _index(self) -> None:
        feed = self._new_feed()
        for frame in read_frames(self.path):
            self.frames += 1
            if frame.received is None:
                raise CaptureError(
                    f"{self.path}: line {frame.line}: no receive time "
                    "(History needs the 'EPOCH_SECONDS: ' prefix on every frame)"
                )
            before = feed.book_messages
            result: Any = None
            try:
                result = feed.process(frame.data)
            except (ChecksumMismatch, BookIntegrityError):
                pass  # the book is invalid now; the index records that at its checkpoint
            except (DecodeError, UnknownPrecision) as exc:
                raise CaptureError(f"{self.path}: line {frame.line}: {exc}") from None
            if feed.book_messages == before:
                continue
            if isinstance(result, L2Book | Level3Book) and feed.book_messages == before + 1:
                touched: list[tuple[tuple[str, str], Book]] = [(self._key(feed, result), result)]
            else:
                touched = [(k, b) for k, b in feed.books.items() if self._changed(k, b)]
            for key, book in touched:
                self._record(key, book, frame)
        self._open_buffer()
        for index in self._books.values():
            index.freeze()

    def _new_feed(self) -> Feed:
        return Feed(precisions=self._precisions, default_depth=self._default_depth)

    def _changed(self, key: tuple[str, str], book: Book) -> bool:
        return self._seen.get(key) != book.messages + book.dropped_updates

    @staticmethod
    def _key(feed: Feed, book: Book) -> tuple[str, str]:
        symbol = book.symbol
        if isinstance(book, Level3Book):
            return ("l3", symbol)
        if feed.book(symbol) is book:
            return ("v2", symbol)
        return ("v1", f"book-{book.depth}|{symbol}")

    def _record(self, key: tuple[str, str], book: Book, frame: Frame) -> None:
        self._seen[key] = book.messages + book.dropped_updates
        index = self._books.get(key)
        if index is None:
            index = self._books[key] = _BookIndex(key, book.symbol)
        i = len(index.received)  # frames of this book so far
        index.received.append(frame.received or 0)
        index.offsets.append(frame.offset)
        index.sizes.append(len(frame.data))
        if book.snapshots > self._snaps.get(key, 0):
            self._snaps[key] = book.snapshots
            index.snapshots.append(i)
            index.setups.append((book.depth, (book.price_precision, book.qty_precision)))
        if (i + 1) % self.checkpoint_every == 0:
            index.checkpoints.append(_checkpoint(i, book))

    # -- questions --

    @property
    def symbols(self) -> list[str]:
        """Every symbol with a book in the capture."""
        return sorted({index.symbol for index in self._books.values()})

    def book_keys(self) -> list[tuple[str, str]]:
        """Every book as ``(protocol, name)``, the keys of :attr:`kbook.Feed.books`."""
        return list(self._books)

    def _find(self, symbol: str, protocol: str | None) -> _BookIndex:
        found = [
            i for k, i in self._books.items() if i.symbol == symbol and protocol in (None, k[0])
        ]
        if not found:
            raise KeyError(
                f"no book of {symbol!r} in {self.path}"
                + (f" for protocol {protocol}" if protocol else "")
            )
        if len(found) > 1:
            raise ValueError(
                f"{symbol} has several books ({[i.key for i in found]}); "
                "give protocol='v2', 'v1' or 'l3'"
            )
        return found[0]

    def book_at(
        self,
        symbol: str,
        time: int | str | datetime | np.datetime64,
        *,
        protocol: str | None = None,
    ) -> Book | None:
        """Return the book of ``symbol`` after the last frame received at or before ``time``.

        :param symbol: the pair as the capture names it (v1: ``XBT/USD``)
        :param time: see :func:`to_ns`
        :param protocol: ``"v2"``, ``"v1"`` or ``"l3"`` when the symbol has several books
        :return: a new book, owned by the caller; None if the book had no frame yet
        :raises KeyError: no book of that symbol
        :raises ValueError: several books of that symbol and no ``protocol``

        Complexity: O(checkpoint_every) frame replays plus one restore of O(depth).
        """
        index = self._find(symbol, protocol)
        end = int(np.searchsorted(index.times, to_ns(time), side="right"))
        if end == 0:
            return None
        return self._restore(index, end - 1)[1]

    def _restore(self, index: _BookIndex, last: int) -> tuple[Feed, Book]:
        """A fresh feed whose book of ``index`` is as it was after frame ``last``."""
        # the latest checkpoint at or before `last`, or the latest snapshot frame
        c = bisect.bisect_right([cp.frame for cp in index.checkpoints], last) - 1
        checkpoint = index.checkpoints[c] if c >= 0 else None
        s = bisect.bisect_right(index.snapshots, last) - 1
        snap = index.snapshots[s] if s >= 0 else 0
        feed = self._new_feed()
        if checkpoint is not None and checkpoint.frame >= snap:
            self._setup(feed, index, checkpoint.depth, checkpoint.precision)
            # a snapshot frame creates the book under its key; the checkpoint replaces it
            first = index.snapshots[0] if index.snapshots else 0
            self._feed_one(feed, index, first)
            book = self._book(feed, index)
            with contextlib.suppress(KBookError):
                if isinstance(book, L2Book):
                    book.apply(checkpoint.bids, checkpoint.asks, snapshot=True)
                else:
                    book.apply([*checkpoint.bids, *checkpoint.asks], snapshot=True)
            if not checkpoint.valid:
                book.invalidate()
            start = checkpoint.frame + 1
        else:
            if s >= 0:
                self._setup(feed, index, *index.setups[s])
            start = snap
        for i in range(start, last + 1):
            self._feed_one(feed, index, i)
        return feed, self._book(feed, index)

    @staticmethod
    def _setup(feed: Feed, index: _BookIndex, depth: int, precision: tuple[int, int]) -> None:
        """Tell a fresh feed what the capture's acks and instrument messages told the live one."""
        protocol, _ = index.key
        if protocol == "v1" or precision[0] < 0:
            return
        feed.set_precision(index.symbol, *precision)
        if protocol == "v2":
            feed.set_depth(index.symbol, depth)
        else:
            feed.set_level3_depth(index.symbol, depth)

    def _feed_one(self, feed: Feed, index: _BookIndex, i: int) -> None:
        off = int(index.starts[i])
        with contextlib.suppress(KBookError):
            feed.process(self._buffer[off : off + int(index.lengths[i])])

    @staticmethod
    def _book(feed: Feed, index: _BookIndex) -> Book:
        book = feed.books.get(index.key)
        if book is None:
            raise CaptureError(f"book {index.key} could not be rebuilt")
        return book

    def books(
        self,
        symbol: str,
        start: int | str | datetime | np.datetime64 | None = None,
        end: int | str | datetime | np.datetime64 | None = None,
        *,
        protocol: str | None = None,
        where: Callable[[Book], bool] | None = None,
    ) -> Iterator[tuple[int, Book]]:
        """Yield ``(receive time ns, book)`` after each frame of ``symbol`` in ``[start, end]``.

        :param where: yield only when this returns true (e.g. ``lambda b: b.valid``)

        .. warning:: the book is the same object each time, changed in place by the next
           frame: copy what you keep (``book.bids()``) before advancing the iterator.
        """
        index = self._find(symbol, protocol)
        times = index.times
        first = 0 if start is None else int(np.searchsorted(times, to_ns(start), side="left"))
        stop = len(times) if end is None else int(np.searchsorted(times, to_ns(end), side="right"))
        if first >= stop:
            return
        feed, book = self._restore(index, first)
        if where is None or where(book):
            yield int(times[first]), book
        for i in range(first + 1, stop):
            self._feed_one(feed, index, i)
            if where is None or where(book):
                yield int(times[i]), book

    def top(
        self,
        symbol: str,
        n: int = 1,
        start: int | str | datetime | np.datetime64 | None = None,
        end: int | str | datetime | np.datetime64 | None = None,
        *,
        protocol: str | None = None,
    ) -> TopOfBook:
        """Return the top ``n`` levels of both sides after every frame in ``[start, end]``.

        :raises OverflowError: a quantity beyond int64 lots (use :meth:`books` instead)
        """
        index = self._find(symbol, protocol)
        rows = []
        pp = qp = 0
        for when, book in self.books(symbol, start, end, protocol=index.key[0]):
            pp, qp = book.price_precision, book.qty_precision
            if book.valid:
                bids, asks = book.bids_array(n)[:, :2], book.asks_array(n)[:, :2]
            else:
                bids = asks = np.zeros((0, 2), dtype=np.int64)
            rows.append((when, book.valid, bids, asks))
        k = len(rows)
        out = {
            name: np.zeros((k, n), dtype=np.int64)
            for name in ("bid_price", "bid_qty", "ask_price", "ask_qty")
        }
        for r, (_, _, bids, asks) in enumerate(rows):
            out["bid_price"][r, : len(bids)] = bids[:, 0]
            out["bid_qty"][r, : len(bids)] = bids[:, 1]
            out["ask_price"][r, : len(asks)] = asks[:, 0]
            out["ask_qty"][r, : len(asks)] = asks[:, 1]
        return TopOfBook(
            symbol=symbol,
            time=np.array([w for w, *_ in rows], dtype=np.int64).astype("datetime64[ns]"),
            valid=np.array([v for _, v, *_ in rows], dtype=bool),
            price_precision=pp,
            qty_precision=qp,
            **out,
        )


def _checkpoint(i: int, book: Book) -> _Checkpoint:
    precision = (book.price_precision, book.qty_precision)
    if isinstance(book, L2Book):
        return _Checkpoint(i, book.valid, book.depth, precision, book.bids_str(), book.asks_str())
    sides: list[list[Any]] = []
    for side, levels in (("bid", book.bids()), ("ask", book.asks())):
        events = []
        for rank, (price, _, _) in enumerate(levels):
            text = book.price_text(price)
            for order_id, lots in book.level_orders(side, rank):
                events.append((side, "add", order_id, text, book.qty_text(lots)))
        sides.append(events)
    return _Checkpoint(i, book.valid, book.depth, precision, sides[0], sides[1])
