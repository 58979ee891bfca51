"""Stateful property tests: the engine's ``Feed`` and the reference model, fed the same frames.

Two hypothesis ``RuleBasedStateMachine`` classes, one per protocol, keep one or two books each and
send random ``book`` messages to :class:`kbook.Feed` (the Cython engine) and to
:class:`kbook.reference.RefFeed` (the slow model) side by side. Messages are generated from integer
ticks and lots around the model's current book: quantity changes, inserts at the touch and deep
in the book (so a full side evicts its worst level), deletes, deletes of absent or evicted prices,
re-entries of evicted prices, and repeated prices within one message; never a crossed result.
Precisions span 0..12 price decimals and 0..18 quantity decimals, and quantities go up to 10**15
units (beyond 64-bit lots). Every update carries the checksum the model computes, and the
frames are written in random but equivalent JSON (see :mod:`kbook.testing.wire`).

After every message both books must be equal level by level (exact strings at the pair's
precision), have the same checksum input and CRC, and the engine's ``_check()`` must pass. One
rule corrupts a single level in the frame the engine gets, expects ``ChecksumMismatch`` carrying the
model's checksum, checks that the book is invalid and drops updates, then resyncs both with a
snapshot.

A pair's decimals may also change mid-stream (v2: an ``instrument`` update; v1: the strings of the
next snapshot), after which a snapshot must bring both to the new precision.

What it is not: it does not test malformed frames (``test_decoder_robustness.py`` does).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from kbook import ChecksumMismatch, Feed, L2Book
from kbook.reference import RefBook, RefFeed, RefResult
from kbook.testing.strategies import mid_prices, quantities, style_seeds
from kbook.testing.wire import (
    MAX_TICKS,
    Fixed,
    Num,
    Obj,
    Style,
    decimal_of,
    fixed_text,
    units_of,
    v1_book_frame,
    v2_book_frame,
)

BID, ASK = "bid", "ask"
Entry = tuple[str, int, int]  # side, price ticks, quantity lots (0 deletes)
Levels = dict[str, dict[int, int]]  # side -> price ticks -> lots

# 2023-10-06T17:35:55.440295Z, the docs' MATIC/USD example time, in microseconds since the epoch.
T0_US = 1_696_613_755_440_295
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

V2_SYMBOLS = ("BTC/USD", "MATIC/USD", "\u00c6TH/\u20acUR", "\U0001d539/USD")
V1_PAIRS = ("XBT/USD", "ETH/XBT", "\u00c6TH/\u20acUR")
DEPTHS = (10, 25, 100)

# Operations of an update entry; the order matters only for shrinking (towards the first).
OPS_ANYWHERE = ("change", "insert", "delete", "absent", "reenter", "deep", "repeat", "top")
OPS_TOUCH = ("change", "top", "delete", "repeat", "absent", "reenter")

# seed 0 is Kraken's compact layout (about a third of the frames); any other seed is a random style
STYLE_SEEDS = style_seeds()
# Mid prices in ticks: near the bottom (levels run into price 1), ordinary, and near the int64 top.
CENTERS = mid_prices()


def lots_strategy(qp: int) -> st.SearchStrategy[int]:
    """Quantities in lots: dust, ordinary sizes, round sizes and up to 10**15 whole units."""
    return quantities(qp)


def random_lots(rng: random.Random, qp: int) -> int:
    """The same mixture as :func:`lots_strategy`, for bulk snapshot levels."""
    roll = rng.randrange(10)
    if roll < 2:
        return rng.randint(1, 9)
    if roll < 5:
        return rng.randint(1, 3 * 10**qp)
    if roll < 7:
        return rng.randint(1, 300) * 10 ** max(qp - 2, 0)
    if roll < 9:
        return rng.randint(1, 10 ** (qp + 15))
    return 10 ** (qp + 15)


@dataclass
class Stream:
    """One book the machine drives: its wire name, subscription and what it has seen."""

    name: str  # v2 symbol, or v1 pair, unescaped
    depth: int
    pp: int
    qp: int
    center: int
    channel: str = ""  # v1 channel name, "book-<depth>"
    channel_id: int = 0
    # prices ever present per side, to re-enter them or delete them once they are gone
    seen: dict[str, set[int]] = field(default_factory=lambda: {BID: set(), ASK: set()})
    # engine.absent_deletes - model.absent_deletes, fixed at each snapshot (see _after_snapshot)
    absent_offset: int = 0

    @property
    def key(self) -> tuple[str, str]:
        """The model's book key."""
        if self.channel:
            return ("v1", f"{self.channel}:{self.name}")
        return ("v2", self.name)


def split(entries: list[Entry]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Return ``(bids, asks)`` of a message, each in wire order."""
    bids = [(p, q) for side, p, q in entries if side == BID]
    asks = [(p, q) for side, p, q in entries if side == ASK]
    return bids, asks


def crossed(levels: Levels) -> bool:
    return bool(levels[BID] and levels[ASK] and max(levels[BID]) >= min(levels[ASK]))


class _FeedMachine(RuleBasedStateMachine):
    """Engine and model side by side; subclasses choose the protocol and write the frames."""

    v1 = False

    def __init__(self) -> None:
        super().__init__()
        self.streams: list[Stream] = []
        self.feed = Feed()
        self.model = RefFeed()
        self.clock_us = T0_US
        self.corruptions = 0

    # -- protocol hooks ------------------------------------------------------------------------

    def frame(
        self,
        s: Stream,
        seed: int,
        kind: str,
        entries: list[Entry],
        checksum: int | None,
    ) -> bytes:
        raise NotImplementedError

    def engine_book(self, s: Stream) -> L2Book | None:
        if s.channel:
            return self.feed.book(s.name, s.depth)
        return self.feed.book(s.name)

    def other_frames(self, data: st.DataObject) -> tuple[bytes, str | None]:
        """A frame that is not book data for a live book, and the orphan's symbol if it is one."""
        raise NotImplementedError

    # -- model helpers -------------------------------------------------------------------------

    def pick(self, data: st.DataObject) -> Stream:
        return self.streams[data.draw(st.integers(0, len(self.streams) - 1), label="stream")]

    def levels(self, s: Stream) -> Levels:
        """The model's book of ``s`` as integers (an empty book before the first snapshot)."""
        book = self.model.books.get(s.key)
        if book is None:
            return {BID: {}, ASK: {}}
        return {
            BID: {units_of(p, s.pp): units_of(q, s.qp) for p, q in book.bids.items()},
            ASK: {units_of(p, s.pp): units_of(q, s.qp) for p, q in book.asks.items()},
        }

    def after(self, s: Stream, entries: list[Entry], snapshot: bool) -> RefBook:
        """A copy of the model's book with one more message applied (the model is untouched)."""
        book = RefBook(s.name, s.depth, s.pp, s.qp)
        current = self.model.books.get(s.key)
        if current is not None and not snapshot:
            book.bids.update(current.bids)
            book.asks.update(current.asks)
        bids, asks = split(entries)
        book.apply_message(
            [(decimal_of(p, s.pp), decimal_of(q, s.qp)) for p, q in bids],
            [(decimal_of(p, s.pp), decimal_of(q, s.qp)) for p, q in asks],
            snapshot=snapshot,
        )
        return book

    def tick(self) -> None:
        self.clock_us += 1_000

    def rfc3339(self) -> str:
        return (EPOCH + timedelta(microseconds=self.clock_us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    # -- drawing messages ----------------------------------------------------------------------

    def draw_price(self, data: st.DataObject, s: Stream, side: str, work: Levels) -> int | None:
        """A price near the book on ``side``'s own half of it (crossing is repaired later)."""
        other = work[ASK if side == BID else BID]
        own = work[side]
        offset = data.draw(
            st.one_of(st.integers(1, 12), st.integers(1, 4 * s.depth + 20)), label="offset"
        )
        if side == BID:
            ref = min(other) if other else (max(own) + 1 if own else s.center)
            price = ref - offset
        else:
            ref = max(other) if other else (min(own) - 1 if own else s.center)
            price = ref + offset
        return price if 1 <= price <= MAX_TICKS else None

    def draw_op(
        self,
        data: st.DataObject,
        s: Stream,
        ops: tuple[str, ...],
        work: Levels,
        entries: list[Entry],
    ) -> Entry | None:
        side = data.draw(st.sampled_from((BID, ASK)), label="side")
        op = data.draw(st.sampled_from(ops), label="op")
        own, other = work[side], work[ASK if side == BID else BID]
        best_first = sorted(own, reverse=side == BID)
        lots = lots_strategy(s.qp)
        if op in ("change", "delete") and best_first:
            rank = data.draw(st.integers(0, len(best_first) - 1), label="rank")
            price = best_first[rank]
            if op == "delete":
                return (side, price, 0)
            new = data.draw(lots, label="lots")
            return (side, price, new if new != own[price] else new + 1)
        if op == "repeat" and entries:
            side, price, _ = entries[data.draw(st.integers(0, len(entries) - 1), label="repeat")]
            return (side, price, data.draw(st.one_of(st.just(0), lots), label="lots"))
        if op in ("absent", "reenter"):
            gone = sorted(s.seen[side] - own.keys())
            if op == "reenter" and other:
                # re-entering at the back of the book, never through the other side's touch
                gone = [p for p in gone if (p < min(other) if side == BID else p > max(other))]
            if gone and (op == "reenter" or data.draw(st.booleans(), label="evicted")):
                price = data.draw(st.sampled_from(gone), label="gone")
                return (side, price, 0 if op == "absent" else data.draw(lots, label="lots"))
            if op == "absent":
                price_or_none = self.draw_price(data, s, side, work)
                if price_or_none is None or price_or_none in own:
                    return None
                return (side, price_or_none, 0)
        if op == "top" and best_first:
            best = best_first[0]
            if side == BID:
                lo, hi = best + 1, (min(other) - 1 if other else best + 20)
            else:
                lo, hi = (max(other) + 1 if other else best - 20), best - 1
            lo, hi = max(lo, 1), min(hi, MAX_TICKS)
            if lo <= hi:
                return (side, data.draw(st.integers(lo, hi), label="top"), data.draw(lots))
        if op == "deep" and best_first:
            gap = data.draw(st.integers(1, 50), label="gap")
            price = best_first[-1] - gap if side == BID else best_first[-1] + gap
            if 1 <= price <= MAX_TICKS:
                return (side, price, data.draw(lots, label="lots"))
        price_or_none = self.draw_price(data, s, side, work)
        if price_or_none is None:
            return None
        return (side, price_or_none, data.draw(lots, label="lots"))

    def draw_entries(
        self, data: st.DataObject, s: Stream, ops: tuple[str, ...] = OPS_ANYWHERE
    ) -> list[Entry]:
        """Entries of one update, applied in order to the current book; never crossed after."""
        work = self.levels(s)
        entries: list[Entry] = []
        count = data.draw(st.integers(1 if self.v1 else 0, 8), label="entries")
        for _ in range(count):
            entry = self.draw_op(data, s, ops, work, entries)
            if entry is None:
                continue
            side, price, lots = entry
            entries.append(entry)
            if lots:
                work[side][price] = lots
            else:
                work[side].pop(price, None)
        while crossed(work):
            # Kraken never publishes a crossed book: take levels off the touch in this message.
            side = data.draw(st.sampled_from((BID, ASK)), label="uncross")
            price = max(work[BID]) if side == BID else min(work[ASK])
            entries.append((side, price, 0))
            del work[side][price]
        if self.v1 and not entries:
            # a v1 update has at least one level; a delete of an absent price never crosses
            price = 1 if 1 not in work[BID] else MAX_TICKS
            entries.append((BID, price, 0))
        return entries

    def draw_snapshot(
        self, data: st.DataObject, s: Stream, *, nonempty: bool = False
    ) -> list[Entry]:
        """A fresh uncrossed book: full, thin, one-sided, over-full or empty; usually best-first."""
        shape = data.draw(
            st.sampled_from(("full", "thin", "one_side", "over", "empty")), label="shape"
        )
        move = data.draw(st.sampled_from(("stay", "drift", "jump")), label="move")
        if move == "jump":
            s.center = data.draw(CENTERS, label="center")
        rng = random.Random(data.draw(st.integers(0, 2**32 - 1), label="snapshot seed"))
        if move == "drift":
            s.center = min(max(s.center + rng.randint(-60, 60), 2), MAX_TICKS - 1)
        if shape == "full":
            nb = na = s.depth
        elif shape == "thin":
            nb, na = rng.randint(0, 9), rng.randint(0, 9)
        elif shape == "one_side":
            nb, na = (0, rng.randint(1, s.depth)) if rng.getrandbits(1) else (rng.randint(1, 9), 0)
        elif shape == "over":  # more levels than the depth: the client truncates
            nb, na = s.depth + rng.randint(1, 5), s.depth + rng.randint(0, 5)
        else:
            nb = na = 0
        spread = rng.choice((1, 1, 2, 5, 100))
        gap = rng.choice((1, 2, 5, 50))
        best_bid = max(s.center - spread // 2, 1)
        entries: list[Entry] = []
        price = best_bid
        for _ in range(nb):
            if price < 1:
                break
            entries.append((BID, price, random_lots(rng, s.qp)))
            price -= rng.randint(1, gap)
        price = best_bid + spread
        for _ in range(na):
            if price > MAX_TICKS:
                break
            entries.append((ASK, price, random_lots(rng, s.qp)))
            price += rng.randint(1, gap)
        if nonempty and not entries:
            entries.append((BID, best_bid, random_lots(rng, s.qp)))
        if rng.randrange(10) == 0:
            rng.shuffle(entries)  # not Kraken's order; the engine has a slower path for it
        return entries

    # -- sending -------------------------------------------------------------------------------

    def send(self, s: Stream, seed: int, kind: str, entries: list[Entry]) -> L2Book:
        """Send one honest message to both, check the model verified it and the engine took it."""
        snapshot = kind == "snapshot"
        expected = self.after(s, entries, snapshot)
        checksum = None if (self.v1 and snapshot) else expected.checksum()
        self.tick()
        frame = self.frame(s, seed, kind, entries, checksum)
        assert self.model.process(frame) == RefResult(
            "book", s.name, None if checksum is None else True
        )
        book = self.feed.process(frame)
        assert isinstance(book, L2Book)
        assert book is self.engine_book(s)
        self.remember(s, entries)
        if snapshot:
            s.absent_offset = book.absent_deletes - self.model.books[s.key].absent_deletes
        return book

    def remember(self, s: Stream, entries: list[Entry]) -> None:
        for side, price, lots in entries:
            if lots:
                s.seen[side].add(price)
        current = self.levels(s)
        s.seen[BID].update(current[BID])
        s.seen[ASK].update(current[ASK])

    def send_snapshot(self, data: st.DataObject, s: Stream, *, nonempty: bool = False) -> None:
        entries = self.draw_snapshot(data, s, nonempty=nonempty)
        self.send(s, data.draw(STYLE_SEEDS, label="style"), "snapshot", entries)

    def change_decimals(self, s: Stream, pp: int, qp: int) -> None:
        """Move a stream to new decimals; its prices keep their value as far as ticks allow."""
        if pp >= s.pp:
            s.center *= 10 ** (pp - s.pp)
        else:
            s.center //= 10 ** (s.pp - pp)
        s.center = min(max(s.center, 2), MAX_TICKS - 1)
        s.pp, s.qp = pp, qp
        s.seen = {BID: set(), ASK: set()}  # ticks at the old precision mean nothing now

    # -- checks --------------------------------------------------------------------------------

    def assert_same_levels(self, book: L2Book, model: RefBook, s: Stream) -> None:
        bids = [(units_of(p, s.pp), units_of(q, s.qp)) for p, q in model.top_bids(len(model.bids))]
        asks = [(units_of(p, s.pp), units_of(q, s.qp)) for p, q in model.top_asks(len(model.asks))]
        assert book.bids() == bids
        assert book.asks() == asks
        if book.price_precision >= 0:  # a v1 book learns it from its first level
            assert (book.price_precision, book.qty_precision) == (s.pp, s.qp)
            assert book.bids_str() == [(fixed_text(p, s.pp), fixed_text(q, s.qp)) for p, q in bids]
            assert book.asks_str() == [(fixed_text(p, s.pp), fixed_text(q, s.qp)) for p, q in asks]
        assert book.checksum_input() == model.checksum_input()
        assert book.checksum() == model.checksum()
        book._check()

    @invariant()
    def books_equal_model(self) -> None:
        for s in self.streams:
            book = self.engine_book(s)
            model = self.model.books[s.key]
            assert book is not None
            assert book.valid and self.model.is_valid(s.key)
            assert book.depth == model.depth == s.depth
            self.assert_same_levels(book, model, s)
            assert book.absent_deletes - model.absent_deletes == s.absent_offset

    @invariant()
    def counters_agree(self) -> None:
        assert self.model.mismatches == 0
        assert self.feed.checksum_mismatches == self.corruptions
        assert self.feed.checksums_verified + self.corruptions == self.model.verified

    # -- rules ---------------------------------------------------------------------------------

    @rule(data=st.data())
    def update(self, data: st.DataObject) -> None:
        s = self.pick(data)
        entries = self.draw_entries(data, s)
        self.send(s, data.draw(STYLE_SEEDS, label="style"), "update", entries)

    @rule(data=st.data())
    def update_near_touch(self, data: st.DataObject) -> None:
        s = self.pick(data)
        entries = self.draw_entries(data, s, OPS_TOUCH)
        self.send(s, data.draw(STYLE_SEEDS, label="style"), "update", entries)

    @rule(data=st.data())
    def snapshot(self, data: st.DataObject) -> None:
        self.send_snapshot(data, self.pick(data))

    @rule(data=st.data())
    def corrupted_update(self, data: st.DataObject) -> None:
        s = self.pick(data)
        entries = self.draw_entries(data, s)
        honest = self.after(s, entries, snapshot=False)
        tops = [(BID, units_of(p, s.pp), units_of(q, s.qp)) for p, q in honest.top_bids()]
        tops += [(ASK, units_of(p, s.pp), units_of(q, s.qp)) for p, q in honest.top_asks()]
        if tops:
            # one top-10 level gets another quantity, where the message sets it or appended
            side, price, lots = data.draw(st.sampled_from(tops), label="corrupt")
            wrong = lots + data.draw(st.integers(1, 10**6), label="delta")
            last = [i for i, (sd, p, _) in enumerate(entries) if (sd, p) == (side, price)]
            bad_entries = list(entries)
            if last:
                bad_entries[last[-1]] = (side, price, wrong)
            else:
                bad_entries.append((side, price, wrong))
        else:  # both sides empty: one new bid cannot cross anything
            bad_entries = [*entries, (BID, s.center, 1)]
        bad = self.after(s, bad_entries, snapshot=False)
        assert bad.checksum_input() != honest.checksum_input()
        assume(bad.checksum() != honest.checksum())  # a CRC32 collision would be invisible
        seed = data.draw(STYLE_SEEDS, label="style")
        self.tick()
        good_frame = self.frame(s, seed, "update", entries, honest.checksum())
        bad_frame = self.frame(s, seed, "update", bad_entries, honest.checksum())

        assert self.model.process(good_frame) == RefResult("book", s.name, True)
        self.remember(s, entries)
        with pytest.raises(ChecksumMismatch) as caught:
            self.feed.process(bad_frame)
        self.corruptions += 1
        book = self.engine_book(s)
        assert book is not None
        err = caught.value
        assert err.symbol == s.name
        assert err.expected == honest.checksum()
        assert err.computed == bad.checksum() == book.checksum()
        assert err.checksum_input == bad.checksum_input()
        assert not book.valid
        self.assert_same_levels(book, bad, s)  # applied, then marked invalid

        if data.draw(st.booleans(), label="update while invalid"):
            more = self.draw_entries(data, s)
            checksum = self.after(s, more, snapshot=False).checksum()
            self.tick()
            dropped = book.dropped_updates
            frame = self.frame(s, data.draw(STYLE_SEEDS, label="style"), "update", more, checksum)
            assert self.feed.process(frame) is book
            assert book.dropped_updates == dropped + 1
            assert not book.valid
            self.assert_same_levels(book, bad, s)
        self.send_snapshot(data, s)  # the resync: both agree again (checked by the invariants)

    @rule(data=st.data())
    def other_message(self, data: st.DataObject) -> None:
        before = {key: (b.checksum(), b.messages) for key, b in self.feed.books.items()}
        frame, orphan = self.other_frames(data)
        result = self.feed.process(frame)
        if orphan is not None:
            assert result is None
            assert self.model.process(frame) == RefResult("orphan", orphan, None)
        else:
            assert result == json.loads(frame, parse_float=Decimal)
            assert self.model.process(frame) == RefResult("other", None, None)
        assert {key: (b.checksum(), b.messages) for key, b in self.feed.books.items()} == before


class V2FeedMachine(_FeedMachine):
    """v2 JSON objects: one or two symbols with their own precision and depth."""

    @initialize(data=st.data())
    def subscribe(self, data: st.DataObject) -> None:
        symbols = data.draw(
            st.lists(st.sampled_from(V2_SYMBOLS), min_size=1, max_size=2, unique=True),
            label="symbols",
        )
        pairs = []
        for symbol in symbols:
            s = Stream(
                name=symbol,
                depth=data.draw(st.sampled_from(DEPTHS), label="depth"),
                pp=data.draw(st.integers(0, 12), label="pp"),
                qp=data.draw(st.integers(0, 18), label="qp"),
                center=data.draw(CENTERS, label="center"),
            )
            self.streams.append(s)
            pairs.append(
                Obj(
                    [
                        ("symbol", symbol),
                        ("price_precision", s.pp),
                        ("qty_precision", s.qp),
                        ("price_increment", Num(1, s.pp)),
                        ("qty_increment", Num(1, s.qp)),
                        ("status", "online"),
                    ]
                )
            )
        # precisions from the instrument channel, depths from the subscribe acks: the feed and
        # the model both learn them from the stream, as a live client does
        seed = data.draw(STYLE_SEEDS, label="style")
        instrument = Obj(
            [
                ("channel", "instrument"),
                ("type", "snapshot"),
                ("data", Obj([("assets", []), ("pairs", pairs)])),
            ]
        )
        frames = [Style(seed).value(instrument).encode()]
        for s in self.streams:
            ack = Obj(
                [
                    ("method", "subscribe"),
                    (
                        "result",
                        Obj(
                            [
                                ("channel", "book"),
                                ("depth", s.depth),
                                ("snapshot", True),
                                ("symbol", s.name),
                            ]
                        ),
                    ),
                    ("success", True),
                    ("time_in", self.rfc3339()),
                    ("time_out", self.rfc3339()),
                ]
            )
            frames.append(Style(seed + 1).value(ack).encode())
        for frame in frames:
            assert self.feed.process(frame) == json.loads(frame, parse_float=Decimal)
            assert self.model.process(frame) == RefResult("other", None, None)
        for s in self.streams:
            self.send_snapshot(data, s)

    def frame(
        self, s: Stream, seed: int, kind: str, entries: list[Entry], checksum: int | None
    ) -> bytes:
        bids, asks = split(entries)
        return v2_book_frame(
            Style(seed), kind, s.name, bids, asks, s.pp, s.qp, checksum, self.rfc3339()
        )

    @rule(data=st.data())
    def new_decimals(self, data: st.DataObject) -> None:
        """The instrument channel announces new decimals; a snapshot at them follows."""
        s = self.pick(data)
        pp = data.draw(st.integers(0, 12), label="new pp")
        qp = data.draw(st.integers(0, 18), label="new qp")
        book = self.engine_book(s)
        assert book is not None
        had_levels = len(book) > 0
        changed = (pp, qp) != (s.pp, s.qp)
        pair = Obj([("symbol", s.name), ("price_precision", pp), ("qty_precision", qp)])
        msg = Obj(
            [
                ("channel", "instrument"),
                ("type", "update"),
                ("data", Obj([("assets", []), ("pairs", [pair])])),
            ]
        )
        frame = Style(data.draw(STYLE_SEEDS, label="style")).value(msg).encode()
        assert self.feed.process(frame) == json.loads(frame, parse_float=Decimal)
        assert self.model.process(frame) == RefResult("other", None, None)
        assert (book.price_precision, book.qty_precision) == (pp, qp)
        if changed and had_levels:
            # documented: new decimals clear the book, which waits for its snapshot
            assert not book.valid and len(book) == 0
        self.change_decimals(s, pp, qp)
        self.send_snapshot(data, s)

    def other_frames(self, data: st.DataObject) -> tuple[bytes, str | None]:
        kind = data.draw(st.sampled_from(("heartbeat", "ticker", "status", "orphan")))
        style = Style(data.draw(STYLE_SEEDS, label="style"))
        s = self.streams[0]
        if kind == "orphan":
            # an update of a symbol without a book: nothing to apply, nothing created
            frame = v2_book_frame(style, "update", "NOPE/USD", [(5, 1)], [], 0, 0, 1, "t")
            return frame, "NOPE/USD"
        if kind == "heartbeat":
            return style.value(Obj([("channel", "heartbeat")])).encode(), None
        if kind == "status":
            data_ = [
                Obj(
                    [
                        ("system", "online"),
                        ("api_version", "v2"),
                        ("connection_id", 13834774380200032777),
                        ("version", "2.0.0"),
                    ]
                )
            ]
            msg = Obj([("channel", "status"), ("type", "update"), ("data", data_)])
            return style.value(msg).encode(), None
        ticker = Obj(
            [
                ("symbol", s.name),
                ("bid", Num(s.center, s.pp)),
                ("bid_qty", Num(10 ** (s.qp + 15), s.qp)),
                ("ask", Num(s.center + 1, s.pp)),
                ("change_pct", Fixed(123, 2)),
            ]
        )
        msg = Obj([("channel", "ticker"), ("type", "update"), ("data", [ticker])])
        return style.value(msg).encode(), None


class V1FeedMachine(_FeedMachine):
    """v1 arrays: one or two ``book-N`` channels, possibly two depths of the same pair."""

    v1 = True

    @initialize(data=st.data())
    def subscribe(self, data: st.DataObject) -> None:
        precisions: dict[str, tuple[int, int]] = {}
        keys = data.draw(
            st.lists(
                st.tuples(st.sampled_from(V1_PAIRS), st.sampled_from(DEPTHS)),
                min_size=1,
                max_size=2,
                unique=True,
            ),
            label="books",
        )
        for pair, depth in keys:
            if pair not in precisions:
                precisions[pair] = (
                    data.draw(st.integers(0, 12), label="pp"),
                    data.draw(st.integers(0, 18), label="qp"),
                )
            pp, qp = precisions[pair]
            self.streams.append(
                Stream(
                    name=pair,
                    depth=depth,
                    pp=pp,
                    qp=qp,
                    center=data.draw(CENTERS, label="center"),
                    channel=f"book-{depth}",
                    channel_id=data.draw(st.integers(0, 2**31), label="channel id"),
                )
            )
        # v1 learns precisions from the snapshot strings; the model needs them only for an empty
        # first snapshot, and the engine then learns them from the first level it sees
        self.model = RefFeed(precisions)
        for s in self.streams:
            self.send_snapshot(data, s)

    def frame(
        self, s: Stream, seed: int, kind: str, entries: list[Entry], checksum: int | None
    ) -> bytes:
        bids, asks = split(entries)
        return v1_book_frame(
            Style(seed, numbers_as_strings=False),
            s.channel,
            s.name,
            bids,
            asks,
            s.pp,
            s.qp,
            checksum,
            self.clock_us,
            snapshot=kind == "snapshot",
            channel_id=s.channel_id,
        )

    @rule(data=st.data())
    def new_decimals(self, data: st.DataObject) -> None:
        """A pair's decimals change: each of its books gets a snapshot written at the new ones.

        v1 has no instrument channel; the strings of a snapshot carry the precision, so each
        snapshot must teach it again. The snapshots are not empty: an empty one teaches nothing
        (and the model would fall back to its table).
        """
        pair = self.pick(data).name
        pp = data.draw(st.integers(0, 12), label="new pp")
        qp = data.draw(st.integers(0, 18), label="new qp")
        self.model.precisions[pair] = (pp, qp)
        for s in self.streams:
            if s.name == pair:
                self.change_decimals(s, pp, qp)
                self.send_snapshot(data, s, nonempty=True)

    def other_frames(self, data: st.DataObject) -> tuple[bytes, str | None]:
        kind = data.draw(st.sampled_from(("heartbeat", "ticker", "orphan", "status")))
        style = Style(data.draw(STYLE_SEEDS, label="style"), numbers_as_strings=False)
        s = self.streams[0]
        if kind == "orphan":
            # a depth of the same pair that was never subscribed: its own (absent) book
            depth = next(
                d
                for d in (500, 1000)
                if (s.name, d) not in {(t.name, t.depth) for t in self.streams}
            )
            frame = v1_book_frame(
                style,
                f"book-{depth}",
                s.name,
                [(5, 1)],
                [],
                s.pp,
                s.qp,
                7,
                self.clock_us,
                snapshot=False,
            )
            return frame, s.name
        if kind == "heartbeat":
            return style.value(Obj([("event", "heartbeat")])).encode(), None
        if kind == "status":
            msg = Obj(
                [
                    ("connectionID", 8628615390848610000),
                    ("event", "systemStatus"),
                    ("status", "online"),
                    ("version", "1.0.0"),
                ]
            )
            return style.value(msg).encode(), None
        payload = Obj(
            [
                ("a", [Fixed(s.center + 1, s.pp), 1, Fixed(10**s.qp, s.qp)]),
                ("b", [Fixed(s.center, s.pp), 2, Fixed(2 * 10**s.qp, s.qp)]),
            ]
        )
        return style.value([s.channel_id, payload, "ticker", s.name]).encode(), None


def test_feed_v2_random_book_messages_match_reference_model() -> None:
    run_state_machine_as_test(V2FeedMachine)


def test_feed_v1_random_book_messages_match_reference_model() -> None:
    run_state_machine_as_test(V1FeedMachine)
