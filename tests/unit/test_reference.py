"""Unit tests of the reference model: Kraken's published checksum examples first, then the rules."""

from __future__ import annotations

import doctest
import json
import re
import zlib
from decimal import Decimal
from typing import Any

import pytest

import kbook.reference
from kbook import DecodeError, Feed
from kbook.reference import RefBook, RefFeed, RefResult, crc32, token
from tests.data import vector as load_vector

D = Decimal


def precisions_of(vector: dict[str, Any], symbol: str) -> dict[str, tuple[int, int]]:
    precision = vector["precision"]
    return {symbol: (precision["price_precision"], precision["qty_precision"])}


def v2_book_frame(
    kind: str, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], checksum: int
) -> str:
    """Write a compact v2 book frame with prices and quantities as JSON numbers."""

    def levels(side: list[tuple[str, str]]) -> str:
        return ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in side)

    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}",'
        f'"bids":[{levels(bids)}],"asks":[{levels(asks)}],"checksum":{checksum}}}]}}'
    )


def expected_checksum(
    depth: int, pp: int, qp: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]]
) -> int:
    """Checksum of a hand-built book, for frames whose state the test spells out itself."""
    book = RefBook("X/Y", depth, pp, qp)
    book.apply_message(
        [(D(p), D(q)) for p, q in bids], [(D(p), D(q)) for p, q in asks], snapshot=True
    )
    return book.checksum()


# -- token / crc32 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "dp", "expected"),
    [
        ("45285.2", 1, "452852"),
        ("0.00100000", 8, "100000"),
        ("0.05005", 5, "5005"),
        ("0.00000500", 8, "500"),
        ("0.00000304", 8, "304"),
        ("44939.5", 1, "449395"),
        ("4.52308393", 8, "452308393"),
        ("44928.0", 1, "449280"),
        ("45281.0", 1, "452810"),
        ("0.566", 4, "5660"),
    ],
)
def test_token_guide_examples_match_documented_tokens(text: str, dp: int, expected: str) -> None:
    assert token(D(text), dp) == expected


def test_token_short_number_text_pads_to_precision() -> None:
    # The MATIC/USD reference example prints 18097.1547 for a qty that the checksum writes at 8 dp.
    assert token(D("18097.1547"), 8) == "1809715470000"
    assert token(D("0.10000000"), 8) == token(D("0.1"), 8) == "10000000"


def test_token_integral_and_exponent_forms_expand_to_fixed_point() -> None:
    assert token(D("45281"), 1) == "452810"
    assert token(D("45281"), 0) == "45281"
    assert token(D("1e-08"), 8) == "1"
    assert token(D("1E+3"), 1) == "10000"


def test_token_zero_strips_to_empty_string() -> None:
    assert token(D("0"), 8) == ""
    assert token(D("0.00000000"), 8) == ""


def test_token_excess_decimals_raises_instead_of_rounding() -> None:
    assert token(D("0.12340"), 4) == "1234"  # extra zeros are not extra precision
    with pytest.raises(ValueError, match="more than 4 decimals"):
        token(D("0.12345"), 4)


@pytest.mark.parametrize("text", ["-1", "-0.5", "NaN", "Infinity", "-Infinity"])
def test_token_negative_or_non_finite_raises(text: str) -> None:
    with pytest.raises(ValueError):
        token(D(text), 2)


def test_token_negative_precision_raises() -> None:
    with pytest.raises(ValueError, match="decimals must be >= 0"):
        token(D("1"), -1)


def test_crc32_guide_inputs_give_unsigned_published_values() -> None:
    v1 = load_vector("v1_book_checksum_guide_example.json")
    v2 = load_vector("v2_book_checksum_guide_example.json")
    v2_input = v2["expected_checksum_input_asks"] + v2["expected_checksum_input_bids"]
    assert crc32(v1["expected_checksum_input"]) == 974947235
    assert crc32(v2_input) == 3310070434  # above 2**31: would be negative if signed
    assert crc32("") == 0
    assert crc32("5005500") == zlib.crc32(b"5005500")


# -- Kraken's published vectors -------------------------------------------------------------------


def test_refbook_v1_guide_example_reproduces_input_and_checksum() -> None:
    vector = load_vector("v1_book_checksum_guide_example.json")
    state = json.loads(vector["messages"][0])
    book = RefBook("BTC/USD", depth=1000, price_precision=5, qty_precision=8)
    book.apply_message(
        [(D(p), D(q)) for p, q, _ in state["bs"]],
        [(D(p), D(q)) for p, q, _ in state["as"]],
        snapshot=True,
    )
    assert book.checksum_input() == vector["expected_checksum_input"]
    assert book.checksum() == vector["expected_checksum"] == 974947235
    book._check()


def test_reffeed_v1_guide_update_on_guide_book_verifies() -> None:
    state = load_vector("v1_book_checksum_guide_example.json")["messages"][0]
    update = load_vector("v1_book_update_with_checksum_guide.json")
    feed = RefFeed()
    # The guide prints the book as a bare object; wrap it as the snapshot frame it stands for.
    snapshot = feed.process(f'[0,{state},"book-1000","BTC/USD"]')
    result = feed.process(update["messages"][0])
    assert snapshot == RefResult("book", "BTC/USD", None)  # v1 snapshots carry no checksum
    assert result == RefResult("book", "BTC/USD", True)
    book = feed.books[("v1", "book-1000:BTC/USD")]
    assert (book.depth, book.price_precision, book.qty_precision) == (1000, 5, 8)
    assert (len(book.asks), len(book.bids)) == (12, 12)  # the update's levels lie below the top 10
    assert book.checksum() == update["expected_checksum"]
    assert (feed.verified, feed.mismatches) == (1, 0)


def test_reffeed_v2_guide_example_verifies_at_precision_1_8() -> None:
    vector = load_vector("v2_book_checksum_guide_example.json")
    feed = RefFeed(precisions_of(vector, "BTC/USD"))
    result = feed.process(vector["messages"][0])
    book = feed.books[("v2", "BTC/USD")]
    assert result == RefResult("book", "BTC/USD", True)
    assert book.checksum_input() == (
        vector["expected_checksum_input_asks"] + vector["expected_checksum_input_bids"]
    )
    assert book.checksum() == vector["expected_checksum"]


def test_reffeed_v2_guide_example_as_json_numbers_still_verifies() -> None:
    # The guide writes values as strings; the live feed sends numbers. Both must decode the same.
    vector = load_vector("v2_book_checksum_guide_example.json")
    as_numbers = re.sub(r'"(\d+\.\d+)"', r"\1", vector["messages"][0])
    assert '"45283.5"' not in as_numbers
    feed = RefFeed(precisions_of(vector, "BTC/USD"))
    assert feed.process(as_numbers.encode()) == RefResult("book", "BTC/USD", True)


def test_reffeed_v2_matic_snapshot_verifies_at_precision_4_8() -> None:
    vector = load_vector("v2_book_reference_snapshot_matic.json")
    feed = RefFeed(precisions_of(vector, "MATIC/USD"))
    assert feed.process(vector["messages"][0]) == RefResult("book", "MATIC/USD", True)
    assert feed.books[("v2", "MATIC/USD")].checksum() == 2439117997


def test_reffeed_v2_matic_update_verifies_after_snapshot() -> None:
    vector = load_vector("v2_book_reference_update_matic.json")
    feed = RefFeed(precisions_of(vector, "MATIC/USD"))
    results = [feed.process(raw) for raw in vector["messages"]]
    book = feed.books[("v2", "MATIC/USD")]
    assert [r.checksum_ok for r in results] == [True, True]
    assert book.checksum() == vector["expected_checksum"]
    assert book.bids[D("0.5657")] == D("1098.3947558")
    assert (feed.verified, feed.mismatches) == (2, 0)


def test_reffeed_v2_matic_wrong_precision_mismatches_and_invalidates() -> None:
    vector = load_vector("v2_book_reference_update_matic.json")
    feed = RefFeed({"MATIC/USD": (5, 8)})  # the docs' note: 5 dp prices do not reproduce
    snapshot, update = (feed.process(raw) for raw in vector["messages"])
    assert snapshot == RefResult("book", "MATIC/USD", False)
    assert update == RefResult("dropped", "MATIC/USD", None)
    assert not feed.is_valid(("v2", "MATIC/USD"))
    assert (feed.verified, feed.mismatches) == (0, 1)


def test_reffeed_instrument_message_supplies_precision() -> None:
    feed = RefFeed()
    for raw in load_vector("v2_instrument_snapshot.json")["messages"]:
        assert feed.process(raw) == RefResult("other", None, None)
    guide = load_vector("v2_book_checksum_guide_example.json")
    assert feed.precisions == {"BTC/USD": (1, 8), "MATIC/GBP": (4, 8)}
    assert feed.process(guide["messages"][0]).checksum_ok is True


def test_reffeed_subscribe_ack_sets_book_depth() -> None:
    feed = RefFeed({"MATIC/USD": (4, 8)}, default_depth=1000)
    for raw in load_vector("v2_book_subscribe_ack_unsubscribe.json")["messages"]:
        assert feed.process(raw).kind == "other"
    feed.process(load_vector("v2_book_reference_snapshot_matic.json")["messages"][0])
    assert feed.books[("v2", "MATIC/USD")].depth == 10


def test_reffeed_v2_snapshot_without_precision_raises() -> None:
    raw = load_vector("v2_book_reference_snapshot_matic.json")["messages"][0]
    with pytest.raises(ValueError, match="no price/qty precision known for 'MATIC/USD'"):
        RefFeed({"BTC/USD": (1, 8)}).process(raw)


def test_reffeed_update_before_snapshot_is_orphan() -> None:
    raw = load_vector("v2_book_reference_update_matic.json")["messages"][1]
    feed = RefFeed({"MATIC/USD": (4, 8)})
    assert feed.process(raw) == RefResult("orphan", "MATIC/USD", None)
    assert feed.books == {}


@pytest.mark.parametrize(
    "name",
    [
        "v2_heartbeat.json",
        "v2_status_update.json",
        "v2_ping_pong.json",
        "v2_ticker_messages.json",
        "v2_trade_messages.json",
        "v2_ohlc_messages.json",
        "v2_level3_subscribe_ack.json",
        "v1_admin_messages.json",
        "v1_ticker.json",
        "v1_trade.json",
        "v1_spread.json",
        "v1_ohlc.json",
    ],
)
def test_reffeed_non_book_vectors_are_other(name: str) -> None:
    feed = RefFeed()
    results = [feed.process(raw) for raw in load_vector(name)["messages"]]
    assert results and all(r == RefResult("other", None, None) for r in results)
    assert feed.books == {}


def test_reffeed_v1_keys_books_by_channel_name_and_pair() -> None:
    feed = RefFeed()
    subscribe, snapshot = load_vector("v1_book_subscribe_snapshot.json")["messages"]
    updates = load_vector("v1_book_updates_reference.json")["messages"]
    assert feed.process(subscribe).kind == "other"
    assert feed.process(snapshot) == RefResult("book", "XBT/USD", None)
    book = feed.books[("v1", "book-100:XBT/USD")]
    assert (book.depth, book.price_precision, book.qty_precision) == (100, 5, 8)
    # The reference updates are on book-10 and book-25: other subscriptions, so no book yet.
    assert [feed.process(raw).kind for raw in updates] == ["orphan"] * 4
    assert len(book.asks) == len(book.bids) == 3


def test_reffeed_v1_two_payload_update_applies_both_and_reads_last_c() -> None:
    feed = RefFeed()
    feed.process(load_vector("v1_book_subscribe_snapshot.json")["messages"][1])
    after_bids = [("5541.20000", "1.52900000"), ("5539.90000", "0.30000000")]
    after_asks = [("5541.30000", "2.50700000"), ("5541.80000", "0.33000000")]
    after_asks += [("5542.50000", "0.40100000"), ("5542.70000", "0.64700000")]
    crc = expected_checksum(100, 5, 8, after_bids, after_asks)
    frame = (
        '[1234,{"a":[["5542.50000","0.40100000","1534614248.456738","r"]]},'
        '{"b":[["5539.50000","0.00000000","1534614335.345903"],'
        f'["5541.30000","0.00000000","1534614335.345903"]],"c":"{crc}"}},"book-100","XBT/USD"]'
    )
    assert feed.process(frame) == RefResult("book", "XBT/USD", True)
    book = feed.books[("v1", "book-100:XBT/USD")]
    assert book.absent_deletes == 1  # 5541.3 is an ask, not a bid
    assert D("5539.5") not in book.bids and book.asks[D("5542.5")] == D("0.401")


def test_reffeed_v1_empty_snapshot_without_precision_raises() -> None:
    with pytest.raises(ValueError, match="empty v1 snapshot"):
        RefFeed().process('[1,{"as":[],"bs":[]},"book-10","XBT/USD"]')


def test_reffeed_mismatch_then_snapshot_revalidates() -> None:
    bids, asks = [("100.0", "1.5")], [("101.0", "2.0")]
    good = expected_checksum(10, 1, 8, bids, asks)
    feed = RefFeed({"A/B": (1, 8)})
    first = feed.process(v2_book_frame("snapshot", "A/B", bids, asks, good))
    bad = feed.process(v2_book_frame("update", "A/B", [("99.0", "1.0")], [], 12345))
    dropped = feed.process(v2_book_frame("update", "A/B", [("98.0", "1.0")], [], 12345))
    again = feed.process(v2_book_frame("snapshot", "A/B", bids, asks, good))
    assert [first, bad, dropped, again] == [
        RefResult("book", "A/B", True),
        RefResult("book", "A/B", False),
        RefResult("dropped", "A/B", None),
        RefResult("book", "A/B", True),
    ]
    assert D("98.0") not in feed.books[("v2", "A/B")].bids  # dropped updates are not applied
    assert (feed.verified, feed.mismatches) == (2, 1)


def test_reffeed_v2_update_truncates_to_subscribed_depth() -> None:
    bids = [("100.0", "1"), ("99.0", "2"), ("98.0", "3")]
    asks = [("101.0", "1")]
    after = [("100.5", "4"), ("100.0", "1"), ("99.0", "2")]
    feed = RefFeed({"A/B": (1, 8)}, default_depth=50)
    ack = (
        '{"method":"subscribe","result":{"channel":"book","depth":3,"symbol":"A/B"},"success":true}'
    )
    feed.process(ack)
    feed.process(
        v2_book_frame("snapshot", "A/B", bids, asks, expected_checksum(3, 1, 8, bids, asks))
    )
    crc = expected_checksum(3, 1, 8, after, asks)
    result = feed.process(v2_book_frame("update", "A/B", [("100.5", "4")], [], crc))
    assert result.checksum_ok is True
    assert list(feed.books[("v2", "A/B")].bids) == [D("99.0"), D("100.0"), D("100.5")]


# -- RefBook rules --------------------------------------------------------------------------------


def make_book(depth: int = 10) -> RefBook:
    return RefBook("A/B", depth=depth, price_precision=1, qty_precision=2)


def test_refbook_truncate_keeps_best_levels_per_side() -> None:
    book = make_book(depth=3)
    for price in ("95", "96", "97", "98", "99"):
        book.apply("bid", D(price), D("1"))
    for price in ("101", "102", "103", "104", "105"):
        book.apply("ask", D(price), D("1"))
    book.truncate()
    assert [p for p, _ in book.top_bids()] == [D("99"), D("98"), D("97")]
    assert [p for p, _ in book.top_asks()] == [D("101"), D("102"), D("103")]
    book._check()


def test_refbook_apply_message_truncates_once_after_all_levels() -> None:
    book = make_book(depth=2)
    book.apply_message([(D("10"), D("1")), (D("9"), D("1"))], [], snapshot=True)
    # Truncating after the insert would lose 9 for good; Kraken's rule keeps it.
    book.apply_message([(D("11"), D("1")), (D("10"), D("0"))], [], snapshot=False)
    assert book.top_bids() == [(D("11"), D("1")), (D("9"), D("1"))]


def test_refbook_absent_delete_counts_and_leaves_book_unchanged() -> None:
    book = make_book()
    book.apply_message([(D("10"), D("1"))], [(D("11"), D("2"))], snapshot=True)
    before = book.checksum()
    book.apply_message([(D("9.5"), D("0"))], [(D("10"), D("0.00"))], snapshot=False)
    assert book.absent_deletes == 2
    assert book.checksum() == before
    assert (len(book.bids), len(book.asks)) == (1, 1)


def test_refbook_same_price_twice_in_message_last_entry_wins() -> None:
    book = make_book()
    book.apply_message([(D("10"), D("1")), (D("10"), D("0")), (D("10"), D("3.5"))], [], False)
    assert book.top_bids() == [(D("10"), D("3.5"))]
    assert book.absent_deletes == 0


def test_refbook_snapshot_replaces_previous_state() -> None:
    book = make_book()
    book.apply_message([(D("10"), D("1"))], [(D("12"), D("1"))], snapshot=True)
    book.apply_message([(D("20"), D("1"))], [(D("21"), D("1"))], snapshot=True)
    assert list(book.bids) == [D("20")] and list(book.asks) == [D("21")]


def test_refbook_checksum_covers_top_ten_only() -> None:
    deep, shallow = make_book(depth=100), make_book(depth=100)
    for i in range(15):
        deep.apply("bid", D(100 - i), D("1"))
        deep.apply("ask", D(101 + i), D("1"))
        if i < 10:
            shallow.apply("bid", D(100 - i), D("1"))
            shallow.apply("ask", D(101 + i), D("1"))
    assert len(deep.top_bids(100)) == 15
    assert deep.checksum_input() == shallow.checksum_input()
    assert deep.checksum() == shallow.checksum()


def test_refbook_top_levels_are_best_first_and_limited() -> None:
    book = make_book()
    book.apply_message(
        [(D("9"), D("1")), (D("10"), D("2")), (D("8"), D("3"))],
        [(D("12"), D("1")), (D("11"), D("2"))],
        snapshot=True,
    )
    assert book.top_bids(2) == [(D("10"), D("2")), (D("9"), D("1"))]
    assert book.top_asks() == [(D("11"), D("2")), (D("12"), D("1"))]
    assert book.top_bids(0) == [] and book.top_asks(-1) == []


def test_refbook_is_crossed_detects_touching_prices() -> None:
    book = make_book()
    assert not book.is_crossed()
    book.apply_message([(D("10"), D("1"))], [(D("10.1"), D("1"))], snapshot=True)
    assert not book.is_crossed()
    book.apply("bid", D("10.1"), D("1"))
    assert book.is_crossed()


@pytest.mark.parametrize(
    ("side", "price", "qty", "message"),
    [
        ("buy", "10", "1", "side must be"),
        ("bid", "0", "1", "price must be positive"),
        ("bid", "10.05", "1", "more than 1 decimals"),
        ("ask", "10", "0.001", "more than 2 decimals"),
        ("ask", "10", "-1", "negative value"),
    ],
)
def test_refbook_apply_invalid_input_raises(side: Any, price: str, qty: str, message: str) -> None:
    book = make_book()
    with pytest.raises(ValueError, match=message):
        book.apply(side, D(price), D(qty))
    assert not book.bids and not book.asks


def test_refbook_invalid_construction_raises() -> None:
    with pytest.raises(ValueError, match="depth"):
        RefBook("A/B", 0, 1, 8)
    with pytest.raises(ValueError, match="precisions"):
        RefBook("A/B", 10, -1, 8)


def test_reference_doctests_pass() -> None:
    outcome = doctest.testmod(kbook.reference)
    assert outcome.attempted > 0
    assert outcome.failed == 0


@pytest.mark.parametrize("text", ["05", "00.5", "+5", ".5", "5.", " 5", "5 ", "1_0", "Infinity"])
def test_reference_v1_price_strings_follow_the_engines_number_grammar(text: str) -> None:
    """A price string the engine refuses (not a JSON number) is refused by the model too, so
    a corruption that writes one is labelled as detected (found by hypothesis: a digit flip
    that made a leading zero)."""
    ack = (
        b'{"channelID":336,"channelName":"book-10","event":"subscriptionStatus",'
        b'"pair":"XBT/USD","status":"subscribed","subscription":{"depth":10,"name":"book"}}'
    )
    frame = b'[336,{"as":[],"bs":[["%s","1","1696613755.443451"]]},"book-10","XBT/USD"]' % (
        text.encode()
    )
    model, feed = RefFeed(), Feed()
    model.process(ack)
    feed.process(ack)
    with pytest.raises(ValueError):
        model.process(frame)
    with pytest.raises(DecodeError):
        feed.process(frame)


@pytest.mark.parametrize("ack_first", [True, False])
def test_reference_and_engine_agree_when_the_ack_follows_the_snapshot(ack_first: bool) -> None:
    """With no subscribe ack yet, both take the smallest Kraken depth holding the snapshot
    (25 for 25 levels), so an ack arriving after it with that depth changes nothing: the book
    stays valid in both and the next update verifies (the model once used depth 10, dropped
    15 levels, then restarted the book on the ack and waited for a snapshot that never came)."""
    bids = [(f"{100 - i}.0", "1") for i in range(25)]
    asks = [(f"{101 + i}.0", "2") for i in range(25)]
    snapshot = v2_book_frame("snapshot", "A/B", bids, asks, expected_checksum(25, 1, 8, bids, asks))
    bids2 = [("100.0", "3"), *bids[1:]]
    update = v2_book_frame(
        "update", "A/B", [("100.0", "3")], [], expected_checksum(25, 1, 8, bids2, asks)
    )
    ack = (
        '{"method":"subscribe","result":{"channel":"book","depth":25,"snapshot":true,'
        '"symbol":"A/B"},"success":true}'
    )
    frames = [ack, snapshot, update] if ack_first else [snapshot, ack, update]
    model, feed = RefFeed({"A/B": (1, 8)}), Feed(precisions={"A/B": (1, 8)})
    results = [model.process(frame) for frame in frames]
    for frame in frames:
        feed.process(frame.encode())
    book = feed.book("A/B")
    assert results[-1] == RefResult("book", "A/B", True)
    assert model.is_valid(("v2", "A/B")) and book.valid
    assert model.books[("v2", "A/B")].depth == book.depth == 25
    assert book.checksums_verified == 2 and model.verified == 2
    assert model.books[("v2", "A/B")].checksum() == book.checksum()
