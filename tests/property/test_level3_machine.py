"""Stateful property test: level3 books in the engine's ``Feed`` and in the reference model.

A hypothesis ``RuleBasedStateMachine`` keeps one or two level3 books (depth 10 or 100, their own
precisions, learned from an ``instrument`` message and level3 subscribe acks) and sends the same
random ``level3`` frames to :class:`kbook.Feed` (the Cython engine) and to
:class:`kbook.reference.RefFeed` (the slow model). Updates are drawn against the model's current
book: adds joining a level or opening one (at the touch, in a gap, behind the worst level, or a
burst of new levels that evicts the worst ones), quantity modifies at the head, middle or tail of
a queue (to zero too), price-changing modifies (to another level or a new one, also out of the
window), deletes, deletes and modifies of unknown or evicted ids, re-adds of resting ids, whole
levels emptied (and refilled) inside one message, and evicted levels coming back as adds with
their old ids, as Kraken republishes them. Snapshots are full, thin, one-sided, over-full (the
client truncates) or empty, and hold up to 25 orders per level. Frames are written in random but
equivalent JSON (``kbook.testing.wire.Style``: key order, whitespace, escapes, numbers with
exponents or inside strings, unknown members, duplicate keys whose last occurrence counts).

Every frame carries the checksum the model computes, and after every message both must agree on:
the checksum and its input, every aggregated level (price, total, order count), every level's
queue (``level_orders``), ``order_count``, the unknown-id counters, ``queue_position`` and
``order`` of a few resting orders, ``order`` being None for a few evicted or deleted ids, and the
engine's ``_check()``. One rule corrupts a quantity in the frame the engine gets and expects a
``ChecksumMismatch``, an invalid book that drops updates, and a resync by snapshot.

What it is not: no malformed frames (``tests/unit/test_level3.py`` has those), no depth 1000
(the same code paths as 100, much slower to compare), and no repeated ``"channel"`` key holding
``book`` before ``level3`` (a known engine divergence, pinned by the strict xfail
``test_feed_level3_repeated_channel_key_last_one_wins`` in ``tests/unit/test_level3.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume
from hypothesis import event as label_run
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sortedcontainers import SortedDict

from kbook import ChecksumMismatch, Feed, Level3Book
from kbook.reference import RefFeed, RefL3Book, RefResult
from kbook.testing.strategies import mid_prices, quantities, style_seeds
from kbook.testing.wire import MAX_TICKS, Num, Obj, Style, decimal_of, units_of

BID, ASK = "bid", "ask"
Event = tuple[str, str, str, int, int]  # side, event, order id, price ticks, quantity lots

SYMBOLS = ("BTC/USD", "MATIC/USD", "\u00c6TH/\u20acUR")
DEPTHS = (10, 100)
TS = "2024-01-08T12:26:39.526146327Z"
OLD_TS = "2024-01-08T12:18:05.770906486Z"
STYLE_SEEDS = style_seeds()
CENTERS = mid_prices()
# Order id shapes: Kraken's, short, exactly 30 bytes, and multi-byte UTF-8 (at most 30 bytes).
ID_SHAPES = ("kraken", "short", "long", "unicode")
POSITIONS = ("head", "middle", "tail")


def lots_strategy(qp: int) -> st.SearchStrategy[int]:
    """Quantities in lots: dust, ordinary sizes, round sizes and up to 10**15 whole units, below
    the 10**29 lots a level3 order may hold."""
    return quantities(qp, min(10 ** (qp + 15), 10**29 - 1))


@dataclass
class Book:
    """One level3 subscription the machine drives."""

    name: str
    depth: int
    pp: int
    qp: int
    center: int
    next_id: int = 0
    # ids and prices that ever rested, to delete, modify or re-add them once they are gone
    seen_ids: dict[str, int] = field(default_factory=dict)  # id -> lots when last seen
    seen_prices: dict[str, set[int]] = field(default_factory=lambda: {BID: set(), ASK: set()})


def clone(book: RefL3Book) -> RefL3Book:
    """A deep copy of a model book (the model is never mutated by drawing)."""
    copy = RefL3Book(book.symbol, book.depth, book.price_precision, book.qty_precision)
    copy.bids = SortedDict({p: dict(q) for p, q in book.bids.items()})
    copy.asks = SortedDict({p: dict(q) for p, q in book.asks.items()})
    copy.orders = dict(book.orders)
    copy.absent_deletes, copy.absent_modifies = book.absent_deletes, book.absent_modifies
    return copy


def apply_event(book: RefL3Book, b: Book, ev: Event) -> None:
    side, event, oid, price, lots = ev
    p, q = decimal_of(price, b.pp), decimal_of(lots, b.qp)
    if event == "add":
        book.add(side, oid, p, q)  # type: ignore[arg-type]  # side is "bid" or "ask"
    elif event == "modify":
        book.modify(side, oid, p, q)  # type: ignore[arg-type]
    else:
        book.delete(side, oid)  # type: ignore[arg-type]


def level3_frame(style: Style, kind: str, b: Book, events: list[Event], checksum: int) -> bytes:
    """Write one level3 message; bids before asks, each side in event order."""
    rng = style.rng

    def order(ev: Event) -> Obj:
        _, event, oid, price, lots = ev
        pairs: list[tuple[str, Any]] = [] if kind == "snapshot" else [("event", event)]
        pairs += [
            ("order_id", oid),
            ("limit_price", Num(price, b.pp)),
            ("order_qty", Num(lots, b.qp)),
            ("timestamp", OLD_TS if rng.randrange(4) else TS),
        ]
        decoys = {
            "order_id": "DECOY",
            "limit_price": Num(rng.randint(1, 10**6), rng.randint(0, 12)),
            "order_qty": Num(rng.randint(0, 10**6), rng.randint(0, 18)),
        }
        if kind != "snapshot":
            decoys["event"] = rng.choice(("add", "modify", "delete"))
        return Obj(pairs, decoys=decoys)

    decoy_orders = [
        Obj(
            [
                ("event", "add"),
                ("order_id", "D"),
                ("limit_price", Num(5, 0)),
                ("order_qty", Num(1, 0)),
            ],
            extras=False,
        )
    ]
    entry = Obj(
        [
            ("symbol", b.name),
            ("checksum", checksum),
            ("bids", [order(ev) for ev in events if ev[0] == BID]),
            ("asks", [order(ev) for ev in events if ev[0] == ASK]),
        ],
        decoys={
            "symbol": "DECOY/" + b.name,
            "checksum": Num(rng.randrange(2**32), 0),
            "bids": decoy_orders,
            "asks": decoy_orders,
        },
    )
    top = Obj(
        [("channel", "level3"), ("type", kind), ("data", [entry])],
        # a decoy "book" channel before the data is a known engine divergence: never drawn here
        decoys={
            "channel": rng.choice(("ticker", "level3x", "heartbeat")),
            "type": rng.choice(("update", "snapshot", "delta")),
        },
    )
    return style.value(top).encode("utf-8")


class Level3Machine(RuleBasedStateMachine):
    """Engine and model side by side on random level3 traffic for one or two symbols."""

    def __init__(self) -> None:
        super().__init__()
        self.books: list[Book] = []
        self.feed = Feed()
        self.model = RefFeed()
        self.corruptions = 0

    # -- setup ---------------------------------------------------------------------------------

    @initialize(data=st.data())
    def subscribe(self, data: st.DataObject) -> None:
        names = data.draw(
            st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=2, unique=True), label="symbols"
        )
        pairs = []
        for name in names:
            b = Book(
                name=name,
                depth=data.draw(st.sampled_from(DEPTHS), label="depth"),
                pp=data.draw(st.integers(0, 8), label="pp"),
                qp=data.draw(st.integers(0, 18), label="qp"),
                center=data.draw(CENTERS, label="center"),
            )
            self.books.append(b)
            pairs.append(
                Obj(
                    [
                        ("symbol", name),
                        ("price_precision", b.pp),
                        ("qty_precision", b.qp),
                        ("status", "online"),
                    ]
                )
            )
        style = Style(data.draw(STYLE_SEEDS, label="style"))
        frames = [
            style.value(
                Obj(
                    [
                        ("channel", "instrument"),
                        ("type", "snapshot"),
                        ("data", Obj([("assets", []), ("pairs", pairs)])),
                    ]
                )
            ).encode()
        ]
        for b in self.books:
            result = Obj(
                [("channel", "level3"), ("depth", b.depth), ("snapshot", True), ("symbol", b.name)]
            )
            frames.append(
                style.value(
                    Obj([("method", "subscribe"), ("result", result), ("success", True)])
                ).encode()
            )
        for frame in frames:
            assert self.feed.process(frame) == json.loads(frame, parse_float=Decimal)
            assert self.model.process(frame) == RefResult("other", None, None)
        for b in self.books:
            self.send_snapshot(data, b)

    # -- helpers -------------------------------------------------------------------------------

    def model_book(self, b: Book) -> RefL3Book:
        return self.model.l3books[b.name]

    def engine_book(self, b: Book) -> Level3Book:
        book = self.feed.level3_book(b.name)
        assert book is not None
        return book

    def pick(self, data: st.DataObject) -> Book:
        return self.books[data.draw(st.integers(0, len(self.books) - 1), label="book")]

    def new_id(self, data: st.DataObject, b: Book) -> str:
        b.next_id += 1
        n = b.next_id
        shape = data.draw(st.sampled_from(ID_SHAPES), label="id shape")
        if shape == "kraken":
            return f"O{n:05d}-{b.name[:5].upper():X<5}-{n * 7919 % 10**6:06d}"
        if shape == "short":
            return f"o{n}"
        if shape == "long":
            return f"{n}".rjust(30, "X")
        return "\u00e9\u20ac\U0001d539" + str(n)  # 9 bytes of UTF-8 + digits

    @staticmethod
    def prices(book: RefL3Book, side: str, pp: int) -> list[int]:
        """Prices of one side, best first, in ticks."""
        levels = book.bids if side == BID else book.asks
        keys = reversed(levels.keys()) if side == BID else iter(levels.keys())
        return [units_of(p, pp) for p in keys]

    @staticmethod
    def queue(book: RefL3Book, side: str, price: int, b: Book) -> list[tuple[str, int]]:
        levels = book.bids if side == BID else book.asks
        return [(oid, units_of(q, b.qp)) for oid, q in levels[decimal_of(price, b.pp)].items()]

    def new_price(self, data: st.DataObject, b: Book, work: RefL3Book, side: str) -> int | None:
        """A price on ``side``'s half of the book: at the touch, in the book or behind it."""
        own, other = (
            self.prices(work, side, b.pp),
            self.prices(work, BID if side == ASK else ASK, b.pp),
        )
        offset = data.draw(
            st.one_of(st.integers(0, 3), st.integers(0, 2 * b.depth + 20)), label="offset"
        )
        sign = -1 if side == BID else 1
        if own:
            price = own[0] + sign * (offset - 3)  # up to 3 ticks better than the touch
        else:
            price = (other[0] - sign if other else b.center) + sign * offset
        if other and (price >= other[0] if side == BID else price <= other[0]):
            price = other[0] + sign  # through the touch: the uncrossing pass fixes the rest
        return price if 1 <= price <= MAX_TICKS else None

    # -- drawing an update ---------------------------------------------------------------------

    def draw_event(
        self, data: st.DataObject, b: Book, work: RefL3Book, used: dict[str, str]
    ) -> list[Event]:
        """One operation's events (applied to ``work`` as they are drawn).

        ``used`` maps the ids this message already names to their side. An id is never named on
        both sides of one message: Kraken cannot send that (an order has one side), and the two
        decoders disagree on it by design when ``"asks"`` precedes ``"bids"`` in the object
        (the engine applies the sides in wire order, the model bids first).
        """
        other_side = {BID: ASK, ASK: BID}
        side = data.draw(st.sampled_from((BID, ASK)), label="side")
        op = data.draw(
            st.sampled_from(
                (
                    "join",
                    "new_level",
                    "modify",
                    "reprice",
                    "delete",
                    "empty_level",
                    "unknown",
                    "readd",
                    "refill",
                    "burst",
                    "deep",
                    "modify_zero",
                )
            ),
            label="op",
        )
        own = self.prices(work, side, b.pp)
        lots = lots_strategy(b.qp)
        out: list[Event] = []

        def resting() -> tuple[int, str, int] | None:
            if not own:
                return None
            price = own[data.draw(st.integers(0, len(own) - 1), label="rank")]
            q = self.queue(work, side, price, b)
            where = data.draw(st.sampled_from(POSITIONS), label="position")
            index = {"head": 0, "tail": len(q) - 1}.get(where, len(q) // 2)
            return price, q[index][0], q[index][1]

        if op == "join" and own:
            price = own[data.draw(st.integers(0, len(own) - 1), label="rank")]
            out.append((side, "add", self.new_id(data, b), price, data.draw(lots)))
        elif op in ("modify", "modify_zero") and (found := resting()):
            price, oid, old = found
            new = 0 if op == "modify_zero" else data.draw(lots, label="lots")
            out.append((side, "modify", oid, price, new))
        elif op == "reprice" and (found := resting()):
            price, oid, old = found
            to = (
                own[data.draw(st.integers(0, len(own) - 1), label="to rank")]
                if data.draw(st.booleans(), label="existing level")
                else self.new_price(data, b, work, side)
            )
            if to is not None and to != price:
                same = data.draw(st.booleans(), label="same qty")
                out.append((side, "modify", oid, to, old if same else data.draw(lots)))
        elif op == "delete" and (found := resting()):
            price, oid, old = found
            out.append((side, "delete", oid, price, old))
        elif op == "empty_level" and own:
            price = own[data.draw(st.integers(0, len(own) - 1), label="rank")]
            q = self.queue(work, side, price, b)
            order = data.draw(st.permutations(range(len(q))), label="delete order")
            out += [(side, "delete", q[i][0], price, q[i][1]) for i in order]
            if data.draw(st.booleans(), label="refill level"):
                out.append((side, "add", self.new_id(data, b), price, data.draw(lots)))
        elif op == "unknown":
            gone = sorted(
                oid
                for oid in set(b.seen_ids) - work.orders.keys()
                if used.get(oid) != other_side[side]
            )
            oid = (
                data.draw(st.sampled_from(gone), label="gone id")
                if gone and data.draw(st.booleans(), label="evicted id")
                else self.new_id(data, b)
            )
            event = data.draw(st.sampled_from(("delete", "modify")), label="unknown event")
            price = own[0] if own else b.center
            out.append((side, event, oid, price, data.draw(lots)))
        elif op == "readd" and (found := resting()):
            price, oid, old = found
            out.append((side, "add", oid, price, old))  # a resting id added again: to the back
        elif op == "refill":
            # Kraken republishes a level that re-enters the window: old ids, as adds
            gone_ids = sorted(
                oid
                for oid in set(b.seen_ids) - work.orders.keys()
                if used.get(oid) != other_side[side]
            )
            behind = [
                p
                for p in sorted(b.seen_prices[side] - set(own))
                if not own or (p < own[-1] if side == BID else p > own[-1])
            ]
            if gone_ids and behind:
                price = data.draw(st.sampled_from(behind), label="refill price")
                picked = data.draw(
                    st.lists(st.sampled_from(gone_ids), min_size=1, max_size=5, unique=True),
                    label="refill ids",
                )
                out += [(side, "add", oid, price, b.seen_ids[oid]) for oid in picked]
        elif op == "burst" and own:
            # new levels better than the worst one: a full side evicts its worst levels
            count = data.draw(st.integers(1, max(2, b.depth // 4)), label="burst")
            start = own[0]
            step = -1 if side == BID else 1
            candidates = [start + step * k for k in range(1, 4 * b.depth)]
            free = [p for p in candidates if p not in set(own) and 1 <= p <= MAX_TICKS]
            for price in free[:count]:
                out.append((side, "add", self.new_id(data, b), price, data.draw(lots)))
        elif op == "deep" and own:
            gap = data.draw(st.integers(1, 30), label="gap")
            price = own[-1] - gap if side == BID else own[-1] + gap
            if 1 <= price <= MAX_TICKS:
                out.append((side, "add", self.new_id(data, b), price, data.draw(lots)))
        if not out:
            price_or_none = self.new_price(data, b, work, side)
            if price_or_none is not None:
                out.append((side, "add", self.new_id(data, b), price_or_none, data.draw(lots)))
        for ev in out:
            used[ev[2]] = ev[0]
            apply_event(work, b, ev)
        if out:
            label_run(f"op {op}")
        return out

    def draw_update(self, data: st.DataObject, b: Book) -> tuple[list[Event], RefL3Book]:
        """Events of one update and the model book after it; never crossed."""
        work = clone(self.model_book(b))
        events: list[Event] = []
        used: dict[str, str] = {}
        for _ in range(data.draw(st.integers(0, 8), label="operations")):
            events += self.draw_event(data, b, work, used)
        if len(work.bids) > b.depth or len(work.asks) > b.depth:
            label_run("levels evicted by truncation")
        work.truncate()
        while work.is_crossed():
            # Kraken never publishes a crossed book: empty the touch level of one side
            side = data.draw(st.sampled_from((BID, ASK)), label="uncross")
            price = self.prices(work, side, b.pp)[0]
            for oid, lots in self.queue(work, side, price, b):
                ev = (side, "delete", oid, price, lots)
                events.append(ev)
                apply_event(work, b, ev)
            work.truncate()
        # the wire lists bids before asks: re-derive the book in that order, as clients apply it
        final = clone(self.model_book(b))
        ordered = [ev for ev in events if ev[0] == BID] + [ev for ev in events if ev[0] == ASK]
        for ev in ordered:
            apply_event(final, b, ev)
        final.truncate()
        assert not final.is_crossed()
        return ordered, final

    def draw_snapshot(self, data: st.DataObject, b: Book) -> list[Event]:
        shape = data.draw(
            st.sampled_from(("thin", "empty", "one_side", "full", "over")), label="shape"
        )
        if data.draw(st.booleans(), label="move"):
            b.center = data.draw(CENTERS, label="center")
        levels = {
            "full": (b.depth, b.depth),
            "thin": (3, 2),
            "one_side": (0, 5),
            "over": (b.depth + 3, b.depth + 1),
            "empty": (0, 0),
        }[shape]
        spread = data.draw(st.sampled_from((1, 2, 7)), label="spread")
        gap = data.draw(st.sampled_from((1, 3)), label="gap")
        crowd = data.draw(st.integers(1, 25), label="crowded touch")
        lots = lots_strategy(b.qp)
        events: list[Event] = []
        best_bid = max(b.center - spread // 2, 1)
        for side, count, start, step in (
            (BID, levels[0], best_bid, -gap),
            (ASK, levels[1], best_bid + spread, gap),
        ):
            price = start
            for rank in range(count):
                if not 1 <= price <= MAX_TICKS:
                    break
                n = crowd if rank == 0 else data.draw(st.integers(1, 4), label="orders")
                for _ in range(n):
                    events.append((side, "add", self.new_id(data, b), price, data.draw(lots)))
                price += step
        return events

    # -- sending -------------------------------------------------------------------------------

    def remember(self, b: Book) -> None:
        model = self.model_book(b)
        for side in (BID, ASK):
            levels = model.bids if side == BID else model.asks
            for p, queue in levels.items():
                b.seen_prices[side].add(units_of(p, b.pp))
                for oid, q in queue.items():
                    b.seen_ids[oid] = units_of(q, b.qp)

    def send(
        self, data: st.DataObject, b: Book, kind: str, events: list[Event], expected: RefL3Book
    ) -> None:
        style = Style(data.draw(STYLE_SEEDS, label="style"))
        frame = level3_frame(style, kind, b, events, expected.checksum())
        assert self.model.process(frame) == RefResult("book", b.name, True)
        book = self.feed.process(frame)
        assert book is self.engine_book(b)
        self.remember(b)
        self.compare_orders(data, b)

    def send_snapshot(self, data: st.DataObject, b: Book) -> None:
        events = self.draw_snapshot(data, b)
        expected = RefL3Book(b.name, b.depth, b.pp, b.qp)
        for ev in events:
            apply_event(expected, b, ev)
        expected.truncate()
        self.send(data, b, "snapshot", events, expected)

    # -- checks --------------------------------------------------------------------------------

    def assert_same(self, book: Level3Book, model: RefL3Book, b: Book) -> None:
        assert book.checksum_input() == model.checksum_input()
        assert book.checksum() == model.checksum()
        assert book.depth == model.depth == b.depth
        for side, read, count in (
            (BID, book.bids, book.bid_levels),
            (ASK, book.asks, book.ask_levels),
        ):
            prices = self.prices(model, side, b.pp)
            assert count == len(prices)
            queues = [self.queue(model, side, p, b) for p in prices]
            assert read() == [
                (p, sum(q for _, q in queue), len(queue))
                for p, queue in zip(prices, queues, strict=True)
            ]
            for rank, queue in enumerate(queues):
                assert book.level_orders(side, rank) == queue
        assert book.order_count == len(model.orders)
        book._check()

    def compare_orders(self, data: st.DataObject, b: Book) -> None:
        """queue_position and order of a few resting ids; None for a few that are gone."""
        book, model = self.engine_book(b), self.model_book(b)
        if not book.valid:
            return
        resting = sorted(model.orders)
        if resting:
            for oid in data.draw(st.lists(st.sampled_from(resting), max_size=3), label="probe"):
                side, price_dec = model.orders[oid]
                price = units_of(price_dec, b.pp)
                # from the queue in integers: the model's own queue_position() sums Decimals in
                # the default 28-digit context, which rounds the largest quantities drawn here
                queue = self.queue(model, side, price, b)
                index = [q_id for q_id, _ in queue].index(oid)
                ahead = sum(lots for _, lots in queue[:index])
                assert model.queue_position(oid)[:3] == (side, price_dec, index)
                assert book.queue_position(oid) == (side, price, index, ahead)
                assert book.order(oid) == (side, price, queue[index][1])
        gone = sorted(set(b.seen_ids) - model.orders.keys())
        if gone:
            for oid in data.draw(st.lists(st.sampled_from(gone), max_size=3), label="gone"):
                assert book.order(oid) is None
                with pytest.raises(KeyError):
                    book.queue_position(oid)

    @invariant()
    def books_equal_model(self) -> None:
        for b in self.books:
            book, model = self.engine_book(b), self.model_book(b)
            assert book.valid and self.model.is_valid(("l3", b.name))
            self.assert_same(book, model, b)
            assert book.absent_deletes == model.absent_deletes
            assert book.absent_modifies == model.absent_modifies

    @invariant()
    def counters_agree(self) -> None:
        assert self.model.mismatches == 0
        assert self.feed.checksum_mismatches == self.corruptions
        assert self.feed.checksums_verified + self.corruptions == self.model.verified

    # -- rules ---------------------------------------------------------------------------------

    @rule(data=st.data())
    def update(self, data: st.DataObject) -> None:
        b = self.pick(data)
        events, expected = self.draw_update(data, b)
        self.send(data, b, "update", events, expected)

    @rule(data=st.data())
    def snapshot(self, data: st.DataObject) -> None:
        self.send_snapshot(data, self.pick(data))

    @rule(data=st.data())
    def corrupted_update(self, data: st.DataObject) -> None:
        b = self.pick(data)
        events, honest = self.draw_update(data, b)
        top = [
            (side, p, oid)
            for side in (BID, ASK)
            for p in self.prices(honest, side, b.pp)[:10]
            for oid, _ in self.queue(honest, side, p, b)
        ]
        if top:
            side, price, oid = data.draw(st.sampled_from(top), label="corrupt")
            lots = dict(self.queue(honest, side, price, b))[oid]
            delta = data.draw(st.integers(1, 10**6), label="delta")
            # another quantity, kept under the 10**29 lots a level3 order may hold
            wrong = lots + delta if lots + delta < 10**29 else lots - delta
            # the engine is told the order was modified to another quantity
            bad_events = [*events, (side, "modify", oid, price, wrong)]
        else:  # both sides empty: one stray bid cannot cross anything
            bad_events = [*events, (BID, "add", self.new_id(data, b), b.center, 1)]
        bad = clone(self.model_book(b))
        for ev in bad_events:
            apply_event(bad, b, ev)
        bad.truncate()
        assume(bad.checksum() != honest.checksum())  # a CRC32 collision would be invisible
        seed = data.draw(STYLE_SEEDS, label="style")
        good_frame = level3_frame(Style(seed), "update", b, events, honest.checksum())
        bad_frame = level3_frame(Style(seed), "update", b, bad_events, honest.checksum())
        assert self.model.process(good_frame) == RefResult("book", b.name, True)
        self.remember(b)
        with pytest.raises(ChecksumMismatch) as caught:
            self.feed.process(bad_frame)
        self.corruptions += 1
        book = self.engine_book(b)
        err = caught.value
        assert (err.symbol, err.expected) == (b.name, honest.checksum())
        assert err.computed == bad.checksum() == book.checksum()
        assert err.checksum_input == bad.checksum_input()
        assert not book.valid
        self.assert_same(book, bad, b)  # applied, then marked invalid
        if data.draw(st.booleans(), label="update while invalid"):
            more, _ = self.draw_update(data, b)
            frame = level3_frame(Style(seed), "update", b, more, 0)
            dropped = book.dropped_updates
            assert self.feed.process(frame) is book
            assert book.dropped_updates == dropped + 1 and not book.valid
            self.assert_same(book, bad, b)
        self.send_snapshot(data, b)  # the resync


def test_feed_level3_random_messages_match_reference_model() -> None:
    run_state_machine_as_test(Level3Machine)
