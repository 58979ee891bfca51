"""The fuzz harness: mutated frames through ``kbook.Feed``, with invariants after every frame.

Sessions, visited round robin, each step taking the next unmutated frame of its stream and
feeding ``mutants`` mutations of it (see :mod:`tests.fuzz.mutators`) before the frame itself:

* long-lived L2 v2 sessions (:class:`kbook.sim.streams.BookStream`), each with a
  :class:`kbook.reference.RefFeed` that receives every frame the engine accepted: the
  differential check;
* long-lived L2 v1 and level3 sessions (``BookStream(protocol="v1")``,
  :class:`~kbook.sim.streams.Level3Stream`);
* capture sessions over ``samples/*.capture``: each mutant goes to a fresh ``Feed`` primed with
  the capture's first frames (instrument, acks, the first snapshots), so instrument, ack and
  status messages are mutated too.

Invariants, per frame: only :class:`kbook.KBookError` subclasses escape ``Feed.process``; a
refused frame (``DecodeError``, ``UnknownPrecision``) changes no book (every book's validity
and levels compared before and after); in v2 sessions the engine and the reference agree on
every book's validity and levels after each accepted frame; ``_check()`` holds on every book
every 64 steps. A long-lived book that fell out of step with its stream is resynchronised with
a republished snapshot, as a client would resubscribe.

What it is not: a coverage-guided fuzzer; it is seeded and reproducible, and cheap enough for CI.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from kbook import (
    BookIntegrityError,
    ChecksumMismatch,
    DecodeError,
    Feed,
    KBookError,
    L2Book,
    Level3Book,
    UnknownPrecision,
)
from kbook.capture import read_frames
from kbook.reference import RefBook, RefFeed, _units
from kbook.sim.streams import BookStream, Level3Stream

from .mutators import mutate, parse

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
CHECK_EVERY = 64


@dataclass
class Stats:
    """What one run did; ``failures`` lists every broken invariant (empty on success)."""

    mutants: int = 0
    frames: int = 0  # every frame the engine processed: mutants, originals, ...
    accepted: int = 0
    differential: int = 0  # accepted frames compared with the reference
    resyncs: int = 0
    checks: int = 0
    raised: dict[str, int] = field(default_factory=dict)
    mutations: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        raised = ", ".join(f"{k} {v}" for k, v in sorted(self.raised.items()))
        return (
            f"{self.mutants} mutants, {self.frames} frames in {self.seconds:.1f} s: "
            f"{self.accepted} accepted, {self.differential} compared with the reference, "
            f"{self.resyncs} resyncs, {self.checks} _check() calls; raised: {raised}; "
            f"{len(self.failures)} failures"
        )


def load_capture(path: Path) -> list[bytes]:
    """The frames of a ``.capture`` file, as :mod:`kbook.capture` reads them."""
    return [frame.data for frame in read_frames(str(path))]


def _book_state(book: Any) -> tuple[Any, ...]:
    return (book.valid, tuple(book.bids()), tuple(book.asks()))


def fingerprint(feed: Feed) -> tuple[Any, ...]:
    """Every book's validity and levels: what a refused frame must leave unchanged."""
    return tuple(sorted((key, _book_state(book)) for key, book in feed.books.items()))


def _brief(frame: bytes) -> str:
    return repr(frame[:240]) + ("..." if len(frame) > 240 else "")


def process(feed: Feed, frame: bytes, stats: Stats, label: str) -> bool:
    """Feed one frame, checking the per-frame invariants; return whether it was applied."""
    stats.frames += 1
    before = fingerprint(feed)
    try:
        feed.process(frame)
    except (DecodeError, UnknownPrecision) as exc:
        name = type(exc).__name__
        stats.raised[name] = stats.raised.get(name, 0) + 1
        if fingerprint(feed) != before:
            stats.failures.append(
                f"{label}: refused frame changed a book ({exc!r:.160}): {_brief(frame)}"
            )
        return False
    except (ChecksumMismatch, BookIntegrityError) as exc:
        name = type(exc).__name__
        stats.raised[name] = stats.raised.get(name, 0) + 1
        return True
    except KBookError as exc:
        stats.failures.append(f"{label}: unexpected KBookError {exc!r:.160}: {_brief(frame)}")
        return False
    except Exception as exc:
        stats.failures.append(
            f"{label}: untyped {type(exc).__name__} {exc!r:.160}: {_brief(frame)}"
        )
        return False
    stats.accepted += 1
    return True


def _ref_levels(book: RefBook, pp: int, qp: int) -> tuple[Any, ...]:
    # exact integer scaling: Decimal arithmetic would round at the context's 28 digits
    bids = tuple((_units(p, pp), _units(q, qp)) for p, q in reversed(book.bids.items()))
    asks = tuple((_units(p, pp), _units(q, qp)) for p, q in book.asks.items())
    return bids, asks


def compare_v2(feed: Feed, ref: RefFeed) -> str | None:
    """Where the engine's v2 books and the reference's disagree, or None."""
    symbols = {k for kind, k in feed.books if kind == "v2"}
    symbols |= {k for kind, k in ref.books if kind == "v2"}
    for symbol in sorted(symbols):
        book, rbook = feed.book(symbol), ref.books.get(("v2", symbol))
        if book is None or rbook is None:
            if (book is None) != (rbook is None) and (
                book is None or book.valid or ref.is_valid(("v2", symbol))
            ):
                return f"{symbol}: book exists in one model only"
            continue
        valid = ref.is_valid(("v2", symbol))
        if book.valid != valid:
            return f"{symbol}: valid engine={book.valid} reference={valid}"
        if valid:
            ours = (tuple(book.bids()), tuple(book.asks()))
            theirs = _ref_levels(rbook, book.price_precision, book.qty_precision)
            if ours != theirs:
                return f"{symbol}: levels differ: engine={ours!r} reference={theirs!r}"
    return None


class _Session:
    name = "session"

    def step(self, rng: random.Random, mutants: int, stats: Stats) -> None:
        raise NotImplementedError

    def books(self) -> list[Any]:
        return []


class StreamSession(_Session):
    """A long-lived feed over a generated stream (L2 v2/v1 or level3)."""

    def __init__(self, kind: str, seed: int, depth: int, differential: bool) -> None:
        self.kind = kind
        self.seed = seed
        self.depth = depth
        self.differential = differential and kind == "v2"
        self.name = f"{kind}-seed{seed}-depth{depth}"
        self.corpus: list[bytes] = []
        self.trees: list[Any] = []
        self._reset()

    def _reset(self) -> None:
        if self.kind == "l3":
            self.stream: BookStream | Level3Stream = Level3Stream(seed=self.seed, depth=self.depth)
        else:
            self.stream = BookStream(
                seed=self.seed, depth=self.depth, protocol=self.kind, max_changes=6
            )
        precisions = {"BTC/USD": (1, 8)}
        self.feed = Feed(precisions=precisions, default_depth=self.depth)
        self.ref = RefFeed(precisions, default_depth=self.depth) if self.differential else None
        if self.kind == "l3":
            self.feed.set_level3_depth("BTC/USD", self.depth)
        first = self.stream.snapshot()
        self._feed_pair(first, Stats(), "setup")

    def _feed_pair(self, frame: bytes, stats: Stats, label: str) -> bool:
        applied = process(self.feed, frame, stats, label)
        if applied and self.ref is not None:
            stats.differential += 1
            try:
                self.ref.process(frame)
            except Exception as exc:
                stats.failures.append(
                    f"{label}: the reference refused a frame the engine "
                    f"applied ({exc!r:.160}): {_brief(frame)}"
                )
                self._reset()
                return applied
            problem = compare_v2(self.feed, self.ref)
            if problem is not None:
                stats.failures.append(f"{label}: {problem}: {_brief(frame)}")
                self._reset()
        return applied

    def _book(self) -> Any:
        if self.kind == "l3":
            return self.feed.level3_book("BTC/USD")
        if self.kind == "v1":
            return self.feed.book("XBT/USD", self.depth)
        return self.feed.book("BTC/USD")

    def books(self) -> list[Any]:
        return list(self.feed.books.values())

    def _in_step(self) -> bool:
        book = self._book()
        return book is not None and book.valid and book.checksum() == self.stream.book.checksum()

    def step(self, rng: random.Random, mutants: int, stats: Stats) -> None:
        frame = self.stream.update()
        if len(self.corpus) < 64 or rng.random() < 0.02:
            if len(self.corpus) >= 64:
                k = rng.randrange(64)
                self.corpus[k], self.trees[k] = frame, parse(frame)
            else:
                self.corpus.append(frame)
                self.trees.append(parse(frame))
        for _ in range(mutants):
            mutant = mutate(rng, frame, self.corpus, self.trees, stats.mutations)
            stats.mutants += 1
            self._feed_pair(mutant, stats, self.name)
        self._feed_pair(frame, stats, self.name)
        if not self._in_step():
            stats.resyncs += 1
            self._feed_pair(self.stream.snapshot(), stats, self.name + " resync")


class CaptureSession(_Session):
    """Mutants of a capture's frames, each on a fresh feed primed with the capture's start."""

    def __init__(self, path: Path) -> None:
        self.name = path.name
        frames = load_capture(path)
        prime = Feed()
        self.prefix: list[bytes] = []
        # the prefix: every frame up to the first snapshot of each book the capture holds
        seen = 0
        for i, frame in enumerate(frames):
            prime.process(frame)
            self.prefix.append(frame)
            if len(prime.books) > seen:
                seen = len(prime.books)
                last = i
            if i > 12:
                break
        self.prefix = self.prefix[: last + 1]
        self.body = frames[len(self.prefix) :]
        self.corpus = frames[:200]
        self.trees = [parse(f) for f in self.corpus]
        self.position = 0

    def _fresh(self) -> Feed:
        feed = Feed()
        for frame in self.prefix:
            feed.process(frame)
        return feed

    def step(self, rng: random.Random, mutants: int, stats: Stats) -> None:
        pool = self.body if rng.random() < 0.8 else self.prefix
        frame = pool[self.position % len(pool)]
        self.position += 1
        for _ in range(mutants):
            mutant = mutate(rng, frame, self.corpus, self.trees, stats.mutations)
            stats.mutants += 1
            feed = self._fresh()
            process(feed, mutant, stats, self.name)
            if stats.mutants % CHECK_EVERY == 0:
                _check_books(list(feed.books.values()), stats, self.name)


def _check_books(books: list[Any], stats: Stats, label: str) -> None:
    for book in books:
        stats.checks += 1
        try:
            book._check()
        except AssertionError as exc:
            stats.failures.append(f"{label}: {book!r}: _check() failed: {exc}")


def sessions(seed: int) -> list[_Session]:
    """The sessions of one run (the seed varies the generated streams)."""
    out: list[_Session] = [
        StreamSession("v2", seed, 10, differential=True),
        StreamSession("v2", seed + 1, 25, differential=True),
        StreamSession("v1", seed + 2, 10, differential=False),
        StreamSession("l3", seed + 3, 10, differential=False),
    ]
    out += [CaptureSession(path) for path in sorted(SAMPLES.glob("*.capture"))]
    return out


def run(mutants: int, seed: int = 0, per_frame: int = 8) -> Stats:
    """Feed at least ``mutants`` mutated frames; return what happened.

    :param per_frame: mutants made of each unmutated frame before it is applied itself
    """
    rng = random.Random(seed)
    stats = Stats()
    start = time.perf_counter()
    todo = sessions(seed)
    steps = 0
    while stats.mutants < mutants:
        for session in todo:
            session.step(rng, per_frame, stats)
        steps += 1
        if steps % CHECK_EVERY == 0:
            for session in todo:
                _check_books(session.books(), stats, session.name)
    stats.seconds = time.perf_counter() - start
    return stats


def as_decimal_text(value: Any) -> str:
    """Exact decimal text of a price/qty (for failure reports)."""
    return str(Decimal(value))


__all__ = [
    "CaptureSession",
    "Stats",
    "StreamSession",
    "compare_v2",
    "fingerprint",
    "load_capture",
    "process",
    "run",
    "sessions",
    "L2Book",
    "Level3Book",
]
