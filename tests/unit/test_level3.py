"""Unit tests of the level3 (order-by-order) book: Kraken's worked example, then each event rule.

Kraken's level3 checksum guide example comes first (checksum, both intermediate strings, queues,
aggregation, queue positions). Then every rule of the issue on tiny hand-made frames sent
through :class:`kbook.Feed`: ``add`` joins the back of its level, a quantity ``modify`` keeps the
order's place, a price-changing ``modify`` moves it to the back of its new level, unknown ids are
counted and ignored, empty levels disappear, truncation to the subscribed depth frees the orders
it drops, and an evicted level comes back as ``add`` events. Each frame carries the CRC32 of the
checksum input the test writes out by hand, so the engine verifies every step. Then malformed
frames (``DecodeError``/``NumberError``, book unchanged), checksum mismatches, and the checked
:meth:`kbook.Level3Book.apply` entry point.

Prices are BTC/USD-like at precision 1 and quantities at precision 8, so a price token is the
price without its point (``10.0`` -> ``100``) and a quantity token is the number of 1e-8 lots
(``1`` -> ``100000000``, ``0.5`` -> ``50000000``).

What it is not: the random comparison with the reference model lives in
``tests/property/test_level3_machine.py``; the API-reference MATIC/USD level3 examples are
abbreviated books whose checksums cannot be recomputed, so they are only used for their shape.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kbook import (
    BookIntegrityError,
    ChecksumMismatch,
    DecodeError,
    Feed,
    KBookError,
    Level3Book,
    NumberError,
    UnknownPrecision,
)
from kbook.reference import RefFeed, crc32

SYMBOL = "BTC/USD"
TS = "2024-01-08T12:26:39.526146327Z"
OLD_TS = "2024-01-08T12:18:05.770906486Z"

# Checksum tokens of the values used below (precision 1 for prices, 8 for quantities).
P100, P99, P98, P105 = "100", "99", "98", "105"
Q1, Q2, Q3, QH = "100000000", "200000000", "300000000", "50000000"

Order = tuple[str | None, str, str, str]  # event (None in a snapshot), order id, price, qty


def order_json(event: str | None, oid: str, price: str, qty: str, ts: str = TS) -> str:
    """One level3 order object; price and qty are written as raw JSON numbers."""
    head = f'{{"event":{json.dumps(event)},' if event is not None else "{"
    return (
        f'{head}"order_id":{json.dumps(oid)},"limit_price":{price},"order_qty":{qty},'
        f'"timestamp":"{ts}"}}'
    )


def frame(
    kind: str,
    bids: list[Order],
    asks: list[Order],
    checksum: int | None,
    symbol: str = SYMBOL,
) -> bytes:
    """A compact level3 frame, as Kraken writes it."""
    entry = f'{{"symbol":{json.dumps(symbol)},'
    if checksum is not None:
        entry += f'"checksum":{checksum},'
    entry += (
        f'"bids":[{",".join(order_json(*o) for o in bids)}],'
        f'"asks":[{",".join(order_json(*o) for o in asks)}]}}'
    )
    return f'{{"channel":"level3","type":"{kind}","data":[{entry}]}}'.encode()


def ack(depth: int, symbol: str = SYMBOL) -> bytes:
    return (
        f'{{"method":"subscribe","result":{{"channel":"level3","depth":{depth},'
        f'"snapshot":true,"symbol":"{symbol}"}},"success":true}}'
    ).encode()


class Session:
    """A feed with BTC/USD precisions; every frame carries the checksum of a hand-written input."""

    def __init__(self, depth: int | None = None) -> None:
        self.feed = Feed(precisions={SYMBOL: (1, 8)})
        if depth is not None:
            self.feed.process(ack(depth))

    def send(self, kind: str, bids: list[Order], asks: list[Order], expected: str) -> Level3Book:
        """Send one message whose checksum is ``crc32(expected)`` and check the book's input."""
        book = self.feed.process(frame(kind, bids, asks, crc32(expected)))
        assert isinstance(book, Level3Book)
        assert book.valid
        assert book.checksum_input() == expected
        book._check()
        return book

    @property
    def book(self) -> Level3Book:
        book = self.feed.level3_book(SYMBOL)
        assert book is not None
        return book


def ids(book: Level3Book, side: str, rank: int = 0) -> list[str]:
    return [oid for oid, _ in book.level_orders(side, rank)]


def state(book: Level3Book) -> tuple[Any, ...]:
    """Everything observable of a book, to show that a rejected frame changed nothing."""
    return (
        book.valid,
        book.checksum(),
        book.checksum_input(),
        book.order_count,
        book.bids(),
        book.asks(),
        book.messages,
        book.absent_deletes,
        book.absent_modifies,
        [book.level_orders("bid", r) for r in range(book.bid_levels)],
        [book.level_orders("ask", r) for r in range(book.ask_levels)],
    )


# -- Kraken's level3 checksum guide example ------------------------------------------------------


@pytest.fixture(scope="module")
def guide(vectors_dir: Path) -> dict[str, Any]:
    vector: dict[str, Any] = json.loads(
        (vectors_dir / "v2_level3_checksum_guide_example.json").read_text()
    )
    return vector


@pytest.fixture()
def guide_book(guide: dict[str, Any]) -> Level3Book:
    feed = Feed(precisions={SYMBOL: (1, 8)})
    book = feed.process(guide["messages"][0].encode())
    assert isinstance(book, Level3Book)
    return book


def guide_orders(guide: dict[str, Any], key: str) -> list[dict[str, str]]:
    orders: list[dict[str, str]] = json.loads(guide["messages"][0])["data"][0][key]
    return orders


def units(text: str, dp: int) -> int:
    return int(Decimal(text).scaleb(dp))


def guide_levels(guide: dict[str, Any], key: str) -> list[tuple[int, list[tuple[str, int]]]]:
    """The example's levels in wire order (which is best first), with their queues."""
    levels: dict[int, list[tuple[str, int]]] = {}
    for o in guide_orders(guide, key):
        levels.setdefault(units(o["limit_price"], 1), []).append(
            (o["order_id"], units(o["order_qty"], 8))
        )
    return list(levels.items())


def test_level3book_guide_vector_checksum_matches_published(
    guide: dict[str, Any], guide_book: Level3Book
) -> None:
    assert guide["expected_checksum"] == 1063832831
    assert guide_book.valid
    assert guide_book.checksum() == 1063832831 == guide_book._checksum_full()
    assert (guide_book.checksums_verified, guide_book.checksum_mismatches) == (1, 0)
    assert (guide_book.order_count, guide_book.bid_levels, guide_book.ask_levels) == (35, 10, 10)
    guide_book._check()


def test_level3book_guide_vector_checksum_input_equals_both_guide_strings(
    guide: dict[str, Any], guide_book: Level3Book
) -> None:
    asks, bids = guide["expected_checksum_input_asks"], guide["expected_checksum_input_bids"]
    text = guide_book.checksum_input()
    assert text[: len(asks)] == asks
    assert text[len(asks) :] == bids
    assert bids.count("449394") == 8  # the price repeats for each of the level's 8 orders


def test_level3book_guide_vector_queues_keep_wire_order(
    guide: dict[str, Any], guide_book: Level3Book
) -> None:
    for side, key in (("bid", "bids"), ("ask", "asks")):
        for rank, (_, queue) in enumerate(guide_levels(guide, key)):
            assert guide_book.level_orders(side, rank) == queue
    assert ids(guide_book, "bid")[0] == "OTCFZG-YOE2Q-LQKNM3"
    assert len(guide_book.level_orders("bid", 0)) == 8
    with pytest.raises(IndexError):
        guide_book.level_orders("bid", 10)
    with pytest.raises(ValueError, match="side"):
        guide_book.level_orders("buy", 0)


def test_level3book_guide_vector_bids_and_asks_aggregate_levels(
    guide: dict[str, Any], guide_book: Level3Book
) -> None:
    for side, key, read in (("bid", "bids", guide_book.bids), ("ask", "asks", guide_book.asks)):
        expected = [
            (p, sum(q for _, q in queue), len(queue)) for p, queue in guide_levels(guide, key)
        ]
        assert read() == expected, side
        assert read(3) == expected[:3]
        assert read(0) == []
    assert guide_book.best_bid() == (449394, 355788870, 8)
    assert guide_book.best_ask() == (449395, 453519654, 4)
    assert guide_book.bids_str(2) == [("44939.4", "3.55788870"), ("44937.1", "0.03346877")]
    assert guide_book.asks_str(1) == [("44939.5", "4.53519654")]


def test_level3book_guide_vector_queue_position_counts_lots_ahead(
    guide: dict[str, Any], guide_book: Level3Book
) -> None:
    ahead = 0
    for index, (oid, lots) in enumerate(guide_levels(guide, "bids")[0][1]):
        assert guide_book.queue_position(oid) == ("bid", 449394, index, ahead)
        assert guide_book.order(oid) == ("bid", 449394, lots)
        ahead += lots
    assert guide_book.queue_position("OFO525-PHRVS-236RMN") == ("ask", 449792, 0, 0)
    assert guide_book.order("OOF2V5-RYOHC-GLRNPM") == ("ask", 449596, 35630000)
    assert guide_book.order("NOT-AN-ORDER") is None
    assert guide_book.order("X" * 40) is None
    with pytest.raises(KeyError):
        guide_book.queue_position("NOT-AN-ORDER")


def test_level3book_guide_vector_bids_array_matches_bids(guide_book: Level3Book) -> None:
    arr = guide_book.bids_array()
    assert arr.dtype == np.int64 and arr.shape == (10, 3)
    assert arr.tolist() == [list(level) for level in guide_book.bids()]
    assert guide_book.asks_array(4).tolist() == [list(level) for level in guide_book.asks(4)]
    assert guide_book.bids_array(0).shape == (0, 3)


def test_level3book_guide_vector_through_apply_gives_same_checksum(
    guide: dict[str, Any],
) -> None:
    book = Level3Book(SYMBOL, depth=10, price_precision=1, qty_precision=8)
    events = [
        (side, "add", o["order_id"], o["limit_price"], o["order_qty"])
        for side, key in (("bid", "bids"), ("ask", "asks"))
        for o in guide_orders(guide, key)
    ]
    book.apply(events, snapshot=True, checksum=1063832831)
    assert book.valid and book.checksums_verified == 1
    assert book.checksum_input() == (
        guide["expected_checksum_input_asks"] + guide["expected_checksum_input_bids"]
    )


def test_level3book_guide_vector_reference_model_agrees(guide: dict[str, Any]) -> None:
    model = RefFeed({SYMBOL: (1, 8)})
    result = model.process(guide["messages"][0])
    assert result.checksum_ok is True
    assert model.l3books[SYMBOL].checksum() == 1063832831


@pytest.mark.parametrize("name", ["v2_level3_reference_snapshot_matic.json"])
def test_feed_level3_abbreviated_reference_example_shape_only_agrees_with_model(
    vectors_dir: Path, name: str
) -> None:
    # The example's checksum covers a book the page does not show: only its shape is usable.
    vector = json.loads((vectors_dir / name).read_text())
    assert vector["verified"] is False
    msg = json.loads(vector["messages"][0])
    del msg["data"][0]["checksum"]
    text = json.dumps(msg)
    feed, model = Feed(precisions={"MATIC/USD": (4, 8)}), RefFeed({"MATIC/USD": (4, 8)})
    book = feed.process(text.encode())
    assert model.process(text).kind == "book"
    assert isinstance(book, Level3Book) and book.valid
    assert book.checksum_input() == model.l3books["MATIC/USD"].checksum_input()
    assert ids(book, "bid", 1) == ["OEP26Y-YAFEF-OFR62B", "OKNAY7-67JRK-AIZ4JO"]


# -- event rules ---------------------------------------------------------------------------------


def base_session(depth: int | None = None) -> Session:
    """Bids A, B, C at 10.0 (qty 1, 2, 3) and D at 9.9 (qty 1); ask E at 10.5 (qty 1)."""
    s = Session(depth)
    s.send(
        "snapshot",
        [
            (None, "A", "10.0", "1"),
            (None, "B", "10.0", "2"),
            (None, "C", "10.0", "3"),
            (None, "D", "9.9", "1"),
        ],
        [(None, "E", "10.5", "1")],
        P105 + Q1 + P100 + Q1 + P100 + Q2 + P100 + Q3 + P99 + Q1,
    )
    return s


def test_level3book_add_joins_back_of_level() -> None:
    s = base_session()
    book = s.send(
        "update",
        [("add", "F", "10.0", "0.5")],
        [],
        P105 + Q1 + P100 + Q1 + P100 + Q2 + P100 + Q3 + P100 + QH + P99 + Q1,
    )
    assert ids(book, "bid") == ["A", "B", "C", "F"]
    assert book.queue_position("F") == ("bid", 100, 3, 600000000)
    assert book.best_bid() == (100, 650000000, 4)


@pytest.mark.parametrize(("oid", "index"), [("A", 0), ("B", 1), ("C", 2)])
def test_level3book_modify_quantity_keeps_queue_place(oid: str, index: int) -> None:
    s = base_session()
    tokens = {"A": Q1, "B": Q2, "C": Q3, oid: QH}
    book = s.send(
        "update",
        [("modify", oid, "10.0", "0.5")],
        [],
        P105 + Q1 + "".join(P100 + tokens[k] for k in "ABC") + P99 + Q1,
    )
    assert ids(book, "bid") == ["A", "B", "C"]
    assert book.queue_position(oid)[2] == index
    assert book.order(oid) == ("bid", 100, 50000000)
    lots = {"A": 100000000, "B": 200000000, "C": 300000000}
    assert book.best_bid() == (100, 600000000 - lots[oid] + 50000000, 3)


def test_level3book_modify_quantity_updates_level_total() -> None:
    s = base_session()
    book = s.send(
        "update",
        [("modify", "B", "10.0", "0.5")],
        [],
        P105 + Q1 + P100 + Q1 + P100 + QH + P100 + Q3 + P99 + Q1,
    )
    assert book.best_bid() == (100, 450000000, 3)
    assert book.queue_position("C") == ("bid", 100, 2, 150000000)


@pytest.mark.parametrize("oid", ["A", "B", "C"])
def test_level3book_modify_price_moves_to_back_of_existing_level(oid: str) -> None:
    s = base_session()
    rest = [k for k in "ABC" if k != oid]
    qty = {"A": Q1, "B": Q2, "C": Q3}
    book = s.send(
        "update",
        [("modify", oid, "9.9", "0.5")],
        [],
        P105 + Q1 + "".join(P100 + qty[k] for k in rest) + P99 + Q1 + P99 + QH,
    )
    assert ids(book, "bid") == rest
    assert ids(book, "bid", 1) == ["D", oid]
    assert book.queue_position(oid) == ("bid", 99, 1, 100000000)


def test_level3book_modify_price_same_quantity_still_requeues() -> None:
    s = base_session()
    # A moves from the head of 10.0 to a new level 9.8, then back to 10.0: the back of the queue
    s.send(
        "update",
        [("modify", "A", "9.8", "1")],
        [],
        P105 + Q1 + P100 + Q2 + P100 + Q3 + P99 + Q1 + P98 + Q1,
    )
    book = s.send(
        "update",
        [("modify", "A", "10.0", "1")],
        [],
        P105 + Q1 + P100 + Q2 + P100 + Q3 + P100 + Q1 + P99 + Q1,
    )
    assert ids(book, "bid") == ["B", "C", "A"]
    assert book.bid_levels == 2


def test_level3book_modify_price_of_only_order_drops_old_level() -> None:
    s = base_session()
    book = s.send(
        "update",
        [("modify", "D", "9.8", "1")],
        [],
        P105 + Q1 + P100 + Q1 + P100 + Q2 + P100 + Q3 + P98 + Q1,
    )
    assert [p for p, _, _ in book.bids()] == [100, 98]
    assert book.order("D") == ("bid", 98, 100000000)


def test_level3book_delete_unknown_id_counted_and_ignored() -> None:
    s = base_session()
    before = s.book.checksum_input()
    book = s.send(
        "update", [("delete", "NOPE", "10.0", "1")], [("delete", "ZZZ", "10.5", "1")], before
    )
    assert book.absent_deletes == 2
    assert book.order_count == 5
    book = s.send("update", [("modify", "NOPE", "10.0", "2")], [], before)
    assert book.absent_modifies == 1
    assert book.order("NOPE") is None


def test_level3book_delete_removes_from_head_middle_tail() -> None:
    s = base_session()
    book = s.send(
        "update", [("delete", "B", "10.0", "2")], [], P105 + Q1 + P100 + Q1 + P100 + Q3 + P99 + Q1
    )
    assert ids(book, "bid") == ["A", "C"]
    book = s.send(
        "update",
        [("delete", "C", "10.0", "3"), ("delete", "A", "10.0", "1"), ("add", "F", "10.0", "2")],
        [],
        P105 + Q1 + P100 + Q2 + P99 + Q1,
    )
    assert ids(book, "bid") == ["F"]


def test_level3book_level_emptied_in_message_is_dropped() -> None:
    s = base_session()
    book = s.send(
        "update",
        [("delete", "A", "10.0", "1"), ("delete", "B", "10.0", "2"), ("delete", "C", "10.0", "3")],
        [],
        P105 + Q1 + P99 + Q1,
    )
    assert book.bid_levels == 1
    assert book.best_bid() == (99, 100000000, 1)
    assert ids(book, "bid") == ["D"]
    assert book.order_count == 2


def test_level3book_level_emptied_then_refilled_in_one_message_has_new_queue() -> None:
    s = base_session()
    book = s.send(
        "update",
        [
            ("delete", "A", "10.0", "1"),
            ("delete", "B", "10.0", "2"),
            ("delete", "C", "10.0", "3"),
            ("add", "G", "10.0", "0.5"),
            ("add", "A", "10.0", "1"),
        ],
        [],
        P105 + Q1 + P100 + QH + P100 + Q1 + P99 + Q1,
    )
    assert ids(book, "bid") == ["G", "A"]


def test_level3book_last_ask_deleted_leaves_one_sided_book() -> None:
    s = base_session()
    book = s.send(
        "update", [], [("delete", "E", "10.5", "1")], P100 + Q1 + P100 + Q2 + P100 + Q3 + P99 + Q1
    )
    assert book.ask_levels == 0 and book.best_ask() is None and book.asks() == []


def full_session() -> tuple[Session, list[Order]]:
    """A depth-10 book: bid levels 20.0 down to 19.1, two orders each; one ask at 30.0."""
    bids: list[Order] = []
    for i in range(10):
        price = f"{20 - i / 10:.1f}"
        bids += [(None, f"B{i}a", price, "1"), (None, f"B{i}b", price, "2")]
    s = Session(depth=10)
    s.send("snapshot", bids, [(None, "S", "30.0", "1")], expected_input(bids, ["300" + Q1]))
    return s, bids


def expected_input(bids: list[Order], asks: list[str]) -> str:
    """Checksum input of an ask block (already tokens) and of bid orders (best level first)."""
    tok = {"1": Q1, "2": Q2, "0.5": QH}
    return "".join(asks) + "".join(p.replace(".", "") + tok[q] for _, _, p, q in bids)


def test_level3book_truncation_frees_evicted_orders() -> None:
    s, bids = full_session()
    assert s.book.order_count == 21
    new = [("add", "N", "20.5", "0.5")]
    kept = [(None, "N", "20.5", "0.5"), *bids[:18]]
    book = s.send("update", new, [], expected_input(kept, ["300" + Q1]))
    assert book.bid_levels == 10
    assert book.order_count == 20  # one added, the two of the worst level evicted
    assert book.order("B9a") is None and book.order("B9b") is None
    with pytest.raises(KeyError):
        book.queue_position("B9b")
    assert book.bids()[-1] == (192, 300000000, 2)


def test_level3book_evicted_level_reenters_as_adds() -> None:
    s, bids = full_session()
    s.send(
        "update",
        [("add", "N", "20.5", "0.5")],
        [],
        expected_input([(None, "N", "20.5", "0.5"), *bids[:18]], ["300" + Q1]),
    )
    # N is cancelled, so Kraken publishes the orders of the level that re-enters the window as
    # adds, in queue order, with their original timestamps
    back = [("add", "B9a", "19.1", "1", OLD_TS), ("add", "B9b", "19.1", "2", OLD_TS)]
    frame_bids: list[Any] = [("delete", "N", "20.5", "0.5"), *back]
    book = s.feed.process(
        frame("update", frame_bids, [], crc32(expected_input(bids, ["300" + Q1])))
    )
    assert isinstance(book, Level3Book) and book.valid
    assert ids(book, "bid", 9) == ["B9a", "B9b"]
    assert book.queue_position("B9b") == ("bid", 191, 1, 100000000)
    assert book.order_count == 21
    book._check()


def test_level3book_delete_of_evicted_id_counts_as_unknown() -> None:
    s, bids = full_session()
    s.send(
        "update",
        [("add", "N", "20.5", "0.5")],
        [],
        expected_input([(None, "N", "20.5", "0.5"), *bids[:18]], ["300" + Q1]),
    )
    book = s.send(
        "update",
        [("delete", "B9a", "19.1", "1")],
        [],
        expected_input([(None, "N", "20.5", "0.5"), *bids[:18]], ["300" + Q1]),
    )
    assert book.absent_deletes == 1


def test_level3book_insert_and_delete_in_one_message_keeps_pushed_level() -> None:
    s, bids = full_session()
    # the new level pushes 19.1 to rank 10 mid-message, the delete brings it back: no truncation
    book = s.send(
        "update",
        [
            ("add", "N", "20.5", "0.5"),
            ("delete", "B0a", "20.0", "1"),
            ("delete", "B0b", "20.0", "2"),
        ],
        [],
        expected_input([(None, "N", "20.5", "0.5"), *bids[2:]], ["300" + Q1]),
    )
    assert book.bid_levels == 10 and ids(book, "bid", 9) == ["B9a", "B9b"]


def test_level3book_repeated_eviction_and_reentry_memory_flat() -> None:
    s, bids = full_session()
    book = s.book
    samples = []
    for i in range(400):
        s.send(
            "update",
            [("add", f"N{i}", "20.5", "0.5")],
            [],
            expected_input([(None, "N", "20.5", "0.5"), *bids[:18]], ["300" + Q1]),
        )
        back = [("add", "B9a", "19.1", "1"), ("add", "B9b", "19.1", "2")]
        s.send(
            "update",
            [("delete", f"N{i}", "20.5", "0.5"), *back],
            [],
            expected_input(bids, ["300" + Q1]),
        )
        samples.append(book.memory_bytes())
    assert book.order_count == 21
    assert samples[10] == samples[-1]


def test_level3book_thin_book_keeps_fewer_levels_than_depth() -> None:
    s = Session(depth=100)
    book = s.send(
        "snapshot", [(None, "A", "10.0", "1")], [(None, "E", "10.5", "1")], P105 + Q1 + P100 + Q1
    )
    assert book.depth == 100
    book = s.send(
        "update",
        [("add", "B", "9.9", "1"), ("add", "C", "9.8", "2")],
        [],
        P105 + Q1 + P100 + Q1 + P99 + Q1 + P98 + Q2,
    )
    assert book.bid_levels == 3


def test_feed_level3_depth_defaults_to_10_and_follows_ack() -> None:
    assert base_session().book.depth == 10
    assert base_session(depth=1000).book.depth == 1000
    feed = Feed(precisions={SYMBOL: (1, 8)})
    feed.process(ack(25))  # not a level3 depth: ignored
    book = feed.process(frame("snapshot", [(None, "A", "10.0", "1")], [], None))
    assert isinstance(book, Level3Book) and book.depth == 10


def test_feed_level3_resubscription_ack_depth_applies_to_existing_book() -> None:
    s = base_session(depth=10)
    s.feed.process(ack(100))
    book = s.feed.process(frame("snapshot", [(None, "A", "10.0", "1")], [], None))
    assert isinstance(book, Level3Book)
    assert book.depth == 100


def test_feed_level3_resubscription_at_larger_depth_keeps_levels_beyond_10() -> None:
    # After a resubscription at depth 100 the client already holds level 11: when the touch is
    # filled, Kraken sends no add for it, and the checksum covers it.
    s = Session(depth=10)
    bids: list[Order] = [(None, f"B{i}", f"{20 - i / 10:.1f}", "1") for i in range(12)]
    s.feed.process(ack(100))
    book = s.send("snapshot", bids, [], expected_input(bids[:10], []))
    assert (book.depth, book.bid_levels) == (100, 12)
    book = s.send("update", [("delete", "B0", "20.0", "1")], [], expected_input(bids[1:11], []))
    assert book.bid_levels == 11


def test_feed_level3_repeated_channel_key_last_one_wins() -> None:
    feed = Feed(precisions={SYMBOL: (1, 8)})
    text = frame("snapshot", [(None, "A", "10.0", "1")], [], crc32(P100 + Q1))
    text = text.replace(b'{"channel":"level3",', b'{"channel":"book",', 1)[:-1]
    book = feed.process(text + b',"channel":"level3"}')
    assert isinstance(book, Level3Book) and book.checksum_input() == P100 + Q1


def test_feed_level3_update_for_unknown_symbol_is_orphan() -> None:
    s = base_session()
    assert s.feed.process(frame("update", [("add", "X", "1.0", "1")], [], 1, "ETH/USD")) is None
    assert s.feed.orphan_updates == 1


def test_feed_level3_frames_interleaved_with_other_books_reach_their_own_book() -> None:
    # level3 and L2 books of one symbol share its key bytes, and the feed remembers the book of
    # the previous frame: every frame must still land on its own book, also after a replacement
    feed = Feed(precisions={SYMBOL: (1, 8), "ETH/USD": (1, 8)})
    btc = feed.process(frame("snapshot", [(None, "A", "10.0", "1")], [], crc32(P100 + Q1)))
    eth = feed.process(frame("snapshot", [(None, "E", "9.9", "1")], [], crc32(P99 + Q1), "ETH/USD"))
    l2 = feed.process(
        b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",'
        b'"bids":[{"price":10.0,"qty":1}],"asks":[{"price":10.5,"qty":1}]}]}'
    )
    l2_update = (
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD",'
        b'"bids":[{"price":9.8,"qty":1}],"asks":[]}]}'
    )
    assert isinstance(btc, Level3Book) and isinstance(eth, Level3Book)
    assert not isinstance(l2, Level3Book) and l2 is feed.book(SYMBOL)
    steps = [
        (btc, frame("update", [("add", "B", "10.0", "2")], [], crc32(P100 + Q1 + P100 + Q2))),
        (
            eth,
            frame("update", [("add", "F", "9.9", "2")], [], crc32(P99 + Q1 + P99 + Q2), "ETH/USD"),
        ),
        (
            btc,
            frame(
                "update", [("add", "C", "9.9", "1")], [], crc32(P100 + Q1 + P100 + Q2 + P99 + Q1)
            ),
        ),
    ]
    for book, text in steps:
        assert feed.process(text) is book
        assert feed.process(l2_update) is l2
    assert ids(btc, "bid") == ["A", "B"] and ids(btc, "bid", 1) == ["C"]
    assert ids(eth, "bid") == ["E", "F"]
    assert btc.valid and eth.valid and btc.checksums_verified == 3 and eth.checksums_verified == 2
    assert l2.bid_levels == 2
    new = feed.add_level3_book(SYMBOL)
    assert feed.process(frame("update", [("add", "D", "10.0", "1")], [], 1)) is new
    assert new.dropped_updates == 1 and btc.order_count == 3


def test_feed_level3_snapshot_without_precision_raises_unknown_precision() -> None:
    feed = Feed()
    with pytest.raises(UnknownPrecision):
        feed.process(frame("snapshot", [(None, "A", "10.0", "1")], [], None))
    assert feed.level3_book(SYMBOL) is None


def test_feed_level3_instrument_message_sets_precision() -> None:
    feed = Feed()
    feed.process(
        b'{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{'
        b'"symbol":"BTC/USD","price_precision":1,"qty_precision":8}]}}'
    )
    book = feed.process(frame("snapshot", [(None, "A", "10.0", "1")], [], crc32(P100 + Q1)))
    assert isinstance(book, Level3Book)
    assert (book.price_precision, book.qty_precision) == (1, 8)


# -- malformed frames ----------------------------------------------------------------------------

ORDER = '"order_id":"F","limit_price":10.0,"order_qty":1,"timestamp":"t"'


def raw_update(bids: str) -> bytes:
    return (
        f'{{"channel":"level3","type":"update","data":[{{"symbol":"BTC/USD",'
        f'"checksum":1,"bids":[{bids}],"asks":[]}}]}}'
    ).encode()


@pytest.mark.parametrize(
    ("bids", "match"),
    [
        (f"{{{ORDER}}}", "without 'event'"),
        (f'{{"event":"add",{ORDER}}},{{{ORDER}}}', "without 'event'"),
        (f'{{"event":"amend",{ORDER}}}', "unknown level3 event"),
        (f'{{"event":"ADD",{ORDER}}}', "unknown level3 event"),
        (f'{{"event":1,{ORDER}}}', "'event' must be a string"),
        ('{"event":"add","limit_price":10.0,"order_qty":1}', "order_id"),
        ('{"event":"add","order_id":7,"limit_price":10.0,"order_qty":1}', "must be a string"),
        ('{"event":"add","order_id":"","limit_price":10.0,"order_qty":1}', "30 bytes"),
        (
            '{"event":"add","order_id":"' + "X" * 31 + '","limit_price":10.0,"order_qty":1}',
            "30 bytes",
        ),
        (
            '{"event":"add","order_id":"' + "\u00e9" * 16 + '","limit_price":10.0,"order_qty":1}',
            "30 bytes",
        ),
        ('{"event":"add","order_id":"F","order_qty":1}', "limit_price"),
        ('{"event":"add","order_id":"F","limit_price":10.0}', "order_qty"),
        ('{"event":"add","order_id":"F","limit_price":true,"order_qty":1}', None),
        ('{"event":"add","order_id":"F","limit_price":"10.0x","order_qty":1}', "number"),
        ('{"event":"add","order_id":"F","limit_price":10.0,"order_qty":1', None),
        ('["add","F",10.0,1]', "must be an object"),
    ],
)
def test_feed_level3_malformed_update_raises_decode_error_book_unchanged(
    bids: str, match: str | None
) -> None:
    s = base_session()
    before = state(s.book)
    with pytest.raises(DecodeError, match=match):
        s.feed.process(raw_update(bids))
    assert state(s.book) == before


@pytest.mark.parametrize(
    ("price", "qty", "match"),
    [
        ("10.05", "1", "decimals"),
        ("10.0", "0.000000001", "decimals"),
        ("10.0", "-1", "negative"),
        ("-10.0", "1", "negative"),
        ("0", "1", "positive"),
        ("0.0", "1", "positive"),
        ("1e18", "1", None),
        ("10.0", "1e40", None),
    ],
)
def test_feed_level3_bad_number_raises_number_error_book_unchanged(
    price: str, qty: str, match: str | None
) -> None:
    s = base_session()
    before = state(s.book)
    good = order_json("add", "G", "9.9", "1")
    bad = order_json("add", "F", price, qty)
    with pytest.raises(NumberError, match=match):
        s.feed.process(raw_update(f"{good},{bad}"))  # nothing applied, not even the good one
    assert state(s.book) == before


def test_feed_level3_order_id_of_30_bytes_accepted() -> None:
    s = base_session()
    long_id, wide_id = "X" * 30, "\u00e9" * 15  # 30 bytes of UTF-8
    book = s.send(
        "update",
        [("add", long_id, "10.0", "1"), ("add", wide_id, "10.0", "2")],
        [],
        P105 + Q1 + P100 + Q1 + P100 + Q2 + P100 + Q3 + P100 + Q1 + P100 + Q2 + P99 + Q1,
    )
    assert ids(book, "bid")[-2:] == [long_id, wide_id]
    assert book.queue_position(wide_id)[2] == 4


ADD_F_INPUT = P105 + Q1 + P100 + Q1 + P100 + Q2 + P100 + Q3 + P100 + QH + P99 + Q1


def with_checksum(text: bytes, expected: str) -> bytes:
    """A :func:`raw_update` frame with the checksum of ``expected`` in place of its 1."""
    return text.replace(b'"checksum":1', b'"checksum":%d' % crc32(expected), 1)


@pytest.mark.parametrize("n", range(1, 31))
def test_feed_level3_ids_of_every_length_are_found_again(n: int) -> None:
    # a frame's ids are hashed while decoding and a lookup by name re-hashes the stored id: the
    # two must agree at every length (whole 8-byte words and a tail), escaped or not
    s = base_session()
    plain, other = "P" * n, "Q" * n
    escaped = order_json("add", other, "10.0", "2").replace(other, "Q" * (n - 1) + "\\u0051")
    text = raw_update(order_json("add", plain, "10.0", "1") + "," + escaped)
    book = s.feed.process(
        with_checksum(
            text, P105 + Q1 + P100 + Q1 + P100 + Q2 + P100 + Q3 + P100 + Q1 + P100 + Q2 + P99 + Q1
        )
    )
    assert isinstance(book, Level3Book) and book.valid
    assert book.queue_position(plain) == ("bid", 100, 3, 600000000)
    assert book.queue_position(other) == ("bid", 100, 4, 700000000)
    s.send(
        "update",
        [("delete", other, "10.0", "2"), ("modify", plain, "10.0", "0.5")],
        [],
        ADD_F_INPUT,
    )
    assert book.order(other) is None and book.order_count == 6
    assert book.absent_deletes == 0 and book.absent_modifies == 0


@pytest.mark.parametrize("at", range(0, 34))
@pytest.mark.parametrize(
    ("inner", "error"),
    [
        (b'\\"', None),
        (b"\\u00e9", None),
        ("\u00e9".encode(), None),
        (b"\x7f", None),
        (b"\x01", "control character"),
        (b"\xff", "invalid UTF-8"),
    ],
)
def test_feed_level3_timestamp_byte_at_any_offset(at: int, inner: bytes, error: str | None) -> None:
    # a timestamp is passed over 16 bytes a step: an escape, a multi-byte character, a control
    # byte or bad UTF-8 is handled the same wherever it falls in the string
    s = base_session()
    before = state(s.book)
    ts = "2" * at + "@" + "Z" * (33 - at)
    text = raw_update(order_json("add", "F", "10.0", "0.5", ts=ts)).replace(b"@", inner)
    text = with_checksum(text, ADD_F_INPUT)
    if error is None:
        book = s.feed.process(text)
        assert isinstance(book, Level3Book) and book.valid and ids(book, "bid")[-1] == "F"
    else:
        with pytest.raises(DecodeError, match=error):
            s.feed.process(text)
        assert state(s.book) == before


def test_feed_level3_snapshot_orders_may_carry_event() -> None:
    s = Session()
    book = s.send("snapshot", [("delete", "A", "10.0", "1")], [], P100 + Q1)
    assert ids(book, "bid") == ["A"]


# -- checksum mismatch ---------------------------------------------------------------------------


def test_feed_level3_checksum_mismatch_raises_and_invalidates_until_snapshot() -> None:
    s = base_session()
    honest = P105 + Q1 + P100 + Q1 + P100 + Q2 + P100 + Q3 + P99 + Q1 + P99 + Q2
    with pytest.raises(ChecksumMismatch) as caught:
        # the exchange added F with qty 2; this frame says 1
        s.feed.process(frame("update", [("add", "F", "9.9", "1")], [], crc32(honest)))
    err = caught.value
    book = s.book
    assert (err.symbol, err.expected) == (SYMBOL, crc32(honest))
    assert err.computed == book.checksum() == crc32(err.checksum_input)
    assert err.checksum_input == honest[: -len(Q2)] + Q1
    assert not book.valid
    assert (book.checksum_mismatches, s.feed.checksum_mismatches) == (1, 1)
    before = state(book)
    assert s.feed.process(frame("update", [("add", "H", "9.9", "1")], [], 0)) is book
    assert book.dropped_updates == 1 and state(book) == before
    book = s.send("snapshot", [(None, "A", "10.0", "1")], [], P100 + Q1)
    assert book.valid and book.order_count == 1 and book.snapshots == 2


def test_feed_level3_update_without_checksum_counted_unverified() -> None:
    s = base_session()
    book = s.feed.process(frame("update", [("add", "F", "9.9", "1")], [], None))
    assert isinstance(book, Level3Book)
    assert book.valid and book.unverified_updates == 1 and book.order_count == 6


# -- the checked entry point ---------------------------------------------------------------------


def new_book(depth: int = 10) -> Level3Book:
    book = Level3Book(SYMBOL, depth=depth, price_precision=1, qty_precision=8)
    book.apply(
        [
            ("bid", "add", "A", "10.0", "1"),
            ("bid", "add", "B", "10.0", "2"),
            ("ask", "add", "C", "10.5", "3"),
        ],
        snapshot=True,
    )
    return book


def test_level3book_apply_snapshot_and_update_verifies_checksum() -> None:
    book = new_book()
    assert book.queue_position("B") == ("bid", 100, 1, 100000000)
    book.apply(
        [
            ("bid", "modify", "A", "10.0", "0.5"),
            ("ask", "delete", "C", "10.5", "3"),
            ("ask", "add", "D", "11.0", "1"),
        ],
        checksum=crc32("110" + Q1 + P100 + QH + P100 + Q2),
    )
    assert book.checksums_verified == 1
    assert book.level_orders("bid") == [("A", 50000000), ("B", 200000000)]
    assert book.asks() == [(110, 100000000, 1)]
    assert len(book) == 2 and book.order_count == 3  # len() counts price levels
    book._check()


def test_level3book_apply_bad_number_raises_and_applies_nothing() -> None:
    book = new_book()
    before = state(book)
    with pytest.raises(NumberError):
        book.apply([("bid", "add", "X", "9.0", "1"), ("bid", "add", "Y", "9.05", "1")])
    assert state(book) == before


@pytest.mark.parametrize(
    "event",
    [
        ("buy", "add", "X", "9.0", "1"),
        ("bid", "amend", "X", "9.0", "1"),
        ("bid", "add", "X" * 31, "9.0", "1"),
        ("bid", "add", "", "9.0", "1"),
    ],
)
def test_level3book_apply_bad_side_event_or_id_raises_value_error(
    event: tuple[str, str, str, str, str],
) -> None:
    book = new_book()
    before = state(book)
    with pytest.raises(ValueError):
        book.apply([("bid", "add", "OK", "9.0", "1"), event])
    assert state(book) == before


def test_level3book_apply_update_on_invalid_book_raises() -> None:
    book = Level3Book(SYMBOL, price_precision=1, qty_precision=8)
    with pytest.raises(KBookError, match="not valid"):
        book.apply([("bid", "add", "A", "10.0", "1")])


def test_level3book_apply_wrong_checksum_raises_mismatch_and_invalidates() -> None:
    book = new_book()
    with pytest.raises(ChecksumMismatch) as caught:
        book.apply([("bid", "add", "D", "9.9", "1")], checksum=12345)
    assert caught.value.expected == 12345
    assert not book.valid and book.checksum_mismatches == 1
    with pytest.raises(KBookError):
        book.apply([("bid", "add", "E", "9.8", "1")])
    book.apply([("bid", "add", "A", "10.0", "1")], snapshot=True, checksum=crc32(P100 + Q1))
    assert book.valid


def test_level3book_apply_crossed_verified_book_raises_integrity_error() -> None:
    book = new_book()
    crossed = crc32("105" + Q3 + "110" + Q1 + P100 + Q1 + P100 + Q2)
    with pytest.raises(BookIntegrityError, match="crossed"):
        book.apply([("bid", "add", "X", "11.0", "1")], checksum=crossed)
    assert not book.valid


def test_level3book_apply_without_precision_raises_unknown_precision() -> None:
    with pytest.raises(UnknownPrecision):
        Level3Book(SYMBOL).apply([("bid", "add", "A", "10.0", "1")], snapshot=True)


@pytest.mark.parametrize("depth", [1, 25, 500, 0])
def test_level3book_depth_not_offered_by_kraken_raises_value_error(depth: int) -> None:
    with pytest.raises(ValueError, match="10, 100 or 1000"):
        Level3Book(SYMBOL, depth=depth)


def test_level3book_set_precision_change_clears_book() -> None:
    book = new_book()
    book.set_precision(1, 8)
    assert book.valid and book.order_count == 3  # unchanged precisions keep the book
    book.set_precision(2, 8)
    assert not book.valid and book.order_count == 0 and book.bids() == []
    with pytest.raises(ValueError):
        book.set_precision(None, 8)


def test_level3book_clear_drops_orders_and_invalidates() -> None:
    book = new_book()
    book.clear()
    assert (book.valid, book.order_count, book.bid_levels, book.ask_levels) == (False, 0, 0, 0)
    assert book.order("A") is None
    book._check()
    assert "invalid" in repr(book)
