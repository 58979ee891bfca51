"""Unit tests of the native engine: Kraken's published vectors first, then every rule and error."""

from __future__ import annotations

import contextlib
import json
import os
import random
import zlib
from decimal import Decimal, localcontext
from typing import Any

import numpy as np
import pytest

from kbook import (
    BookIntegrityError,
    ChecksumMismatch,
    DecodeError,
    Feed,
    KBookError,
    L2Book,
    NumberError,
    UnknownPrecision,
    _core,
    crc32,
    parse_scaled,
)
from tests.data import vector


def v2_frame(
    symbol: str,
    kind: str,
    bids: list[tuple[str, str]],
    asks: list[tuple[str, str]],
    checksum: int | None = None,
) -> bytes:
    entry: dict[str, Any] = {
        "symbol": symbol,
        "bids": [{"price": p, "qty": q} for p, q in bids],
        "asks": [{"price": p, "qty": q} for p, q in asks],
    }
    if checksum is not None:
        entry["checksum"] = checksum
    # numbers go out as raw JSON number text, exactly as given
    text = json.dumps({"channel": "book", "type": kind, "data": [entry]})
    for p, q in bids + asks:
        text = text.replace(f'"{p}"', p, 1).replace(f'"{q}"', q, 1)
    return text.encode()


def btc_book(depth: int = 10) -> tuple[Feed, L2Book]:
    feed = Feed(precisions={"BTC/USD": (1, 8)}, default_depth=depth)
    book = feed.process(vector("v2_book_checksum_guide_example.json")["messages"][0].encode())
    assert isinstance(book, L2Book)
    return feed, book


# -- CRC32 -----------------------------------------------------------------------------------


def test_crc32_random_inputs_match_zlib() -> None:
    rng = random.Random(7)
    for n in list(range(0, 70)) + [255, 256, 640, 1000]:
        data = bytes(rng.getrandbits(8) for _ in range(n))
        assert crc32(data) == zlib.crc32(data)


def test_crc32_str_input_is_ascii_encoded() -> None:
    assert crc32("5005500") == zlib.crc32(b"5005500")


def test_combine_multiply_hardware_and_software_agree() -> None:
    rng = random.Random(3)
    for _ in range(5000):
        a, b = rng.getrandbits(32), rng.getrandbits(32)
        fast, slow = _core._mulmod_check(a, b)
        assert fast == slow


# -- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "precision", "expected"),
    [
        ("45285.2", 1, 452852),
        ("4.0", 8, 400000000),
        ("0.001", 8, 100000),
        ("1e-08", 8, 1),
        ("1E+2", 0, 100),
        ("0.566", 4, 5660),
        ("18097.1547", 8, 1809715470000),
        ("0.10000000", 8, 10000000),
        ("0.1000000000", 8, 10000000),  # extra decimals are fine when they are zeros
        ("0", 8, 0),
        ("0.0", 8, 0),
        ("12345678901234567890", 0, 12345678901234567890),
        ("1000000000000000", 8, 10**23),  # 10**15 units at 8 decimals: beyond int64, exact
        ("123456789012345678901234567890", 8, 123456789012345678901234567890 * 10**8),
        ("0.00000500", 8, 500),
        ("5541.30000", 5, 554130000),
        ("12345e-3", 3, 12345),
        ("1.2345E+1", 4, 123450),
    ],
)
def test_parse_scaled_json_forms_exact(text: str, precision: int, expected: int) -> None:
    assert parse_scaled(text, precision) == expected


@pytest.mark.parametrize(
    ("text", "precision", "reason"),
    [
        ("0.56601", 4, "more decimals"),
        ("1e-9", 8, "more decimals"),
        ("-1", 8, "negative"),
        ("-0.5", 4, "negative"),
        ("1e40", 0, "out of range"),
        ("1" * 40, 0, "out of range"),
        ("abc", 2, "not a number"),
        ("01", 0, "not a number"),
        ("1.", 0, "not a number"),
        (".5", 1, "not a number"),
        ("1e", 0, "not a number"),
        ("", 0, "not a number"),
        ("NaN", 0, "not a number"),
    ],
)
def test_parse_scaled_bad_values_raise_number_error(text: str, precision: int, reason: str) -> None:
    with pytest.raises(NumberError, match=reason):
        parse_scaled(text, precision)


def test_parse_scaled_random_decimals_match_decimal_arithmetic() -> None:
    rng = random.Random(11)
    for _ in range(3000):
        digits = str(rng.randrange(1, 10 ** rng.randint(1, 30)))
        point = rng.randint(0, len(digits))
        text = (digits[:point] or "0") + ("." + digits[point:] if point < len(digits) else "")
        text = text.lstrip("0") or "0"
        if text.startswith("."):
            text = "0" + text
        precision = rng.randint(0, 18)
        with localcontext() as ctx:
            ctx.prec = 100  # the default 28 digits would round the oracle itself
            scaled = Decimal(text) * (Decimal(10) ** precision)
        if scaled == scaled.to_integral_value() and scaled < Decimal(10) ** 38:
            assert parse_scaled(text, precision) == int(scaled), text
        else:
            with pytest.raises(NumberError):
                parse_scaled(text, precision)


# -- Kraken's checksum vectors ---------------------------------------------------------------


def test_v2_guide_example_checksum_and_input_string_match() -> None:
    vec = vector("v2_book_checksum_guide_example.json")
    _, book = btc_book()
    assert book.valid
    assert book.checksum() == vec["expected_checksum"] == 3310070434
    assert book.checksum_input() == (
        vec["expected_checksum_input_asks"] + vec["expected_checksum_input_bids"]
    )
    book._check()


@pytest.mark.parametrize(
    "name", ["v2_book_reference_snapshot_matic.json", "v2_book_reference_update_matic.json"]
)
def test_v2_matic_reference_examples_verify_at_precision_4_8(name: str) -> None:
    vec = vector(name)
    feed = Feed(precisions={"MATIC/USD": (4, 8)})
    for message in vec["messages"]:
        book = feed.process(message.encode())
    assert isinstance(book, L2Book)
    assert book.valid
    assert book.checksum() == vec["expected_checksum"]
    assert feed.checksums_verified == len(vec["messages"])
    assert feed.checksum_mismatches == 0
    book._check()


def test_v2_matic_at_wrong_precision_mismatches_and_drops_updates() -> None:
    vec = vector("v2_book_reference_update_matic.json")
    feed = Feed(precisions={"MATIC/USD": (5, 8)})
    with pytest.raises(ChecksumMismatch) as info:
        feed.process(vec["messages"][0].encode())
    err = info.value
    assert err.symbol == "MATIC/USD"
    assert err.expected == 2439117997
    assert err.computed == zlib.crc32(err.checksum_input.encode())
    assert err.computed != err.expected
    book = feed.book("MATIC/USD")
    assert book is not None and not book.valid
    assert feed.process(vec["messages"][1].encode()) is book
    assert book.dropped_updates == 1
    assert feed.checksum_mismatches == 1


def v1_guide_snapshot() -> bytes:
    state = json.loads(vector("v1_book_checksum_guide_example.json")["messages"][0])
    return json.dumps([0, {"as": state["as"], "bs": state["bs"]}, "book-1000", "BTC/USD"]).encode()


def test_v1_guide_example_and_update_verify() -> None:
    feed = Feed()
    book = feed.process(v1_guide_snapshot())
    assert isinstance(book, L2Book)
    assert (book.depth, book.price_precision, book.qty_precision) == (1000, 5, 8)
    assert book.checksum() == 974947235
    assert (
        book.checksum_input()
        == vector("v1_book_checksum_guide_example.json")["expected_checksum_input"]
    )
    update = vector("v1_book_update_with_checksum_guide.json")["messages"][0].encode()
    assert feed.process(update) is book
    assert book.valid and book.checksums_verified == 1
    assert (book.bid_levels, book.ask_levels) == (12, 12)
    assert feed.book("BTC/USD", depth=1000) is book
    book._check()


def test_v1_reference_update_shapes_parse_without_a_book() -> None:
    feed = Feed()
    for message in vector("v1_book_updates_reference.json")["messages"]:
        assert feed.process(message.encode()) is None
    assert feed.orphan_updates == 4


def test_v1_reference_updates_apply_to_a_snapshot_and_mismatch_the_placeholder() -> None:
    feed = Feed()
    snapshot = json.loads(vector("v1_book_subscribe_snapshot.json")["messages"][1])
    snapshot[-2] = "book-10"
    book = feed.process(json.dumps(snapshot).encode())
    assert isinstance(book, L2Book) and book.valid
    first = vector("v1_book_updates_reference.json")["messages"][0]
    # the docs reuse one placeholder checksum for every example: it cannot match this book
    with pytest.raises(ChecksumMismatch) as info:
        feed.process(first.encode())
    assert info.value.expected == 974942666
    assert book.asks_str(2) == [("5541.30000", "2.50700000"), ("5541.80000", "0.33000000")]


# -- book rules ------------------------------------------------------------------------------


def test_update_truncates_to_depth_without_deletes() -> None:
    feed, book = btc_book(depth=10)
    worst = book.bids(10)[-1][0]
    frame = v2_frame("BTC/USD", "update", [("45284.0", "1.0")], [])
    feed.process(frame)
    assert book.bid_levels == 10
    assert all(price != worst for price, _ in book.bids())
    assert book.best_bid() == (452840, 100000000)
    book._check()


def test_update_repeated_price_applies_in_order() -> None:
    feed, book = btc_book()
    frame = v2_frame("BTC/USD", "update", [("45283.5", "0.5"), ("45283.5", "0.25")], [])
    feed.process(frame)
    assert book.best_bid() == (452835, 25000000)


def test_update_delete_of_absent_level_is_counted_and_ignored() -> None:
    feed, book = btc_book()
    before = book.bids()
    feed.process(v2_frame("BTC/USD", "update", [("1.0", "0")], []))
    assert book.absent_deletes == 1
    assert book.bids() == before


def test_update_checksum_is_verified_after_whole_message() -> None:
    _, ref = btc_book()
    ref.apply([("45283.5", "0"), ("45270.0", "2.0")], [("45285.2", "0.5")])
    expected = ref.checksum()
    feed, book = btc_book()
    frame = v2_frame(
        "BTC/USD", "update", [("45283.5", "0"), ("45270.0", "2.0")], [("45285.2", "0.5")], expected
    )
    assert feed.process(frame) is book
    assert book.valid and book.checksums_verified == 2


def test_checksum_mismatch_marks_invalid_until_next_snapshot() -> None:
    feed, book = btc_book()
    with pytest.raises(ChecksumMismatch):
        feed.process(v2_frame("BTC/USD", "update", [("45283.5", "0.2")], [], 1))
    assert not book.valid
    feed.process(v2_frame("BTC/USD", "update", [("45283.5", "0.3")], []))
    assert book.dropped_updates == 1
    assert book.best_bid() == (452835, 20000000)  # the dropped update did not apply
    feed.process(vector("v2_book_checksum_guide_example.json")["messages"][0].encode())
    assert book.valid


def test_crossed_verified_book_raises_integrity_error() -> None:
    book = L2Book("X/Y", 10, 1, 8)
    with pytest.raises(BookIntegrityError, match="crossed"):
        book.apply([("10.0", "1")], [("9.9", "1")], snapshot=True)
    assert not book.valid


def test_checked_apply_rejects_bad_values_atomically() -> None:
    _, book = btc_book()
    before = (book.bids(), book.asks(), book.checksum())
    with pytest.raises(NumberError) as info:
        book.apply([("45283.5", "1.0"), ("45283.45", "1.0")], [])
    assert info.value.symbol == "BTC/USD" and info.value.text == "45283.45"
    assert (book.bids(), book.asks(), book.checksum()) == before


@pytest.mark.parametrize(
    ("price", "qty", "reason"),
    [
        ("45283.55", "1.0", "more decimals"),
        ("-45283.5", "1.0", "negative"),
        ("45283.5", "-1.0", "negative"),
        ("0", "1.0", "price must be positive"),
        ("1e30", "1.0", "out of range"),
        ("45283.5", "1e40", "out of range"),
    ],
)
def test_frame_with_impossible_number_raises_and_leaves_book(
    price: str, qty: str, reason: str
) -> None:
    feed, book = btc_book()
    before = (book.bids(), book.asks(), book.checksum())
    frame = v2_frame("BTC/USD", "update", [("45280.0", "1.0"), (price, qty)], [])
    with pytest.raises(NumberError, match=reason) as info:
        feed.process(frame)
    assert info.value.symbol == "BTC/USD"
    assert (book.bids(), book.asks(), book.checksum()) == before


def test_quantities_beyond_int64_stay_exact() -> None:
    book = L2Book("SHIB/USD", 10, 8, 8)
    huge = "1000000000000000.12345678"  # 10**15 units, 8 decimals
    book.apply([("0.00001234", huge)], [("0.00001235", "1")], snapshot=True)
    lots = 100000000000000012345678
    assert book.best_bid() == (1234, lots)
    assert book.bids_str() == [("0.00001234", huge)]
    assert book.checksum_input().startswith("1235100000000")
    assert book.checksum() == zlib.crc32(b"1235100000000" + b"1234" + str(lots).encode())
    with pytest.raises(OverflowError):
        book.bids_array()
    floats = book.bids_array(dtype=np.float64)
    assert floats[0, 1] == pytest.approx(1e15)


# -- reading ---------------------------------------------------------------------------------


def test_read_accessors_give_exact_views() -> None:
    _, book = btc_book()
    assert book.best_bid() == (452835, 10000000)
    assert book.best_ask() == (452852, 100000)
    assert (book.best_bid_price, book.best_ask_price) == (452835, 452852)
    assert book.spread() == 17
    assert book.mid() == pytest.approx(45284.35)
    assert book.bids_str(2) == [("45283.5", "0.10000000"), ("45283.4", "1.54582015")]
    assert book.asks_decimal(1) == [(Decimal("45285.2"), Decimal("0.00100000"))]
    assert len(book.bids()) == 10 and len(book.asks(3)) == 3
    ints = book.asks_array(3)
    assert ints.dtype == np.int64 and ints.tolist() == [
        [452852, 100000],
        [452864, 154571953],
        [452866, 154571109],
    ]
    floats = book.bids_array(2, dtype=np.float64)
    assert floats.tolist() == [[45283.5, 0.1], [45283.4, 1.54582015]]
    assert book.price_text(452835) == "45283.5" and book.qty_text(5) == "0.00000005"
    assert len(book) == 20


def test_empty_book_accessors_return_none() -> None:
    book = L2Book("X/Y", 10, 2, 2)
    assert book.best_bid() is None and book.best_ask() is None
    assert book.spread() is None and book.mid() is None
    assert book.bids_array().shape == (0, 2)
    assert book.checksum() == zlib.crc32(b"")


def test_book_constructor_validates_depth_and_precision() -> None:
    with pytest.raises(ValueError, match="depth"):
        L2Book("X/Y", 11)
    with pytest.raises(ValueError, match="precision"):
        L2Book("X/Y", 10, 40, 8)


# -- frames ----------------------------------------------------------------------------------


def test_frame_any_key_order_whitespace_and_escapes_decodes_the_same() -> None:
    _, reference = btc_book()
    guide = json.loads(vector("v2_book_checksum_guide_example.json")["messages"][0])
    entry = guide["data"][0]
    # data before channel, qty before price, numbers as JSON numbers, escaped key and symbol
    levels = ",\n ".join(
        f'{{ "qty" : {lv["qty"]} , "pr\\u0069ce":{lv["price"]} }}' for lv in entry["bids"]
    )
    asks = ",".join(
        f'{{"price":"{lv["price"]}","qty":{lv["qty"]},"x":[1,{{"y":null}}]}}'
        for lv in entry["asks"]
    )
    checksum = entry["checksum"]
    frame = (
        f'{{ "data" : [ {{ "checksum" : {checksum} , "asks":[{asks}], "symbol":"BTC\\/USD",'
        f' "bids" :\t[ {levels} ] }} ] ,\r\n "type":"snapshot", "channel" : "b\\u006fok" }}'
    )
    feed = Feed(precisions={"BTC/USD": (1, 8)})
    book = feed.process(frame.encode())
    assert isinstance(book, L2Book)
    assert book.valid and book.bids() == reference.bids() and book.asks() == reference.asks()


def test_frame_repeated_key_last_one_wins() -> None:
    feed, book = btc_book()
    frame = (
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD",'
        b'"bids":[{"price":1.0,"qty":1.0}],"bids":[{"price":45283.5,"qty":0.5}],"asks":[]}]}'
    )
    feed.process(frame)
    assert book.best_bid() == (452835, 50000000)
    assert all(price != 10 for price, _ in book.bids())


def test_frame_memoryview_and_bytearray_inputs_work() -> None:
    raw = vector("v2_book_checksum_guide_example.json")["messages"][0].encode()
    for wrapped in (memoryview(raw), bytearray(raw)):
        feed = Feed(precisions={"BTC/USD": (1, 8)})
        book = feed.process(wrapped)
        assert isinstance(book, L2Book) and book.checksum() == 3310070434


def test_frame_with_several_data_entries_applies_all_atomically() -> None:
    guide = json.loads(vector("v2_book_checksum_guide_example.json")["messages"][0])
    eth = dict(guide["data"][0], symbol="ETH/USD")
    frame = json.dumps(dict(guide, data=[guide["data"][0], eth])).encode()
    feed = Feed(precisions={"BTC/USD": (1, 8), "ETH/USD": (1, 8)})
    last = feed.process(frame)
    assert last is feed.book("ETH/USD")
    assert feed.checksums_verified == 2
    bad = json.dumps(dict(guide, data=[guide["data"][0], dict(eth, bids="x")])).encode()
    feed2 = Feed(precisions={"BTC/USD": (1, 8), "ETH/USD": (1, 8)})
    with pytest.raises(DecodeError):
        feed2.process(bad)
    assert feed2.book("BTC/USD") is None


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"   ",
        b"not json",
        b'{"channel":"book"',
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":1,"qty":',
        b'{"channel":"book","type":"update","data":[{"bids":[]}]}',
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":1}]}]}',
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":1,'
        b'"qty":"x"}]}]}',
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","checksum":-1}]}',
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","checksum":4294967296}]}',
        b'{"channel":"book","type":"delta","data":[{"symbol":"BTC/USD"}]}',
        b'{"channel":"book","type":"update"}',
        b'{"channel":"book","type":"update","data":[]} trailing',
        b'{"channel":"book","type":"update","data":{"symbol":"BTC/USD"}}',
        b'{"channel":"heartbeat",}',
        b'{"channel":"book\x01","type":"update"}',
        b'{"channel":"\xff\xfe"}',
        b"[1,",
        b'[1,{"a":[["1.0","1.0","1.0"]]},"book-10"',
        b'[1,{"a":[["1.0"]]},"book-10","XBT/USD"]',
        b'[1,{"a":[["1.0","1.0"]],"as":[["1.0","1.0"]]},"book-10","XBT/USD"]',
        b'[1,{"a":[["1.0","1.0"]]},"book-11","XBT/USD"]',
        b'[1,["1.0","1.0"],"book-10","XBT/USD"]',
        b"[" * 200 + b"]" * 200,
    ],
)
def test_malformed_frame_raises_decode_error_and_leaves_books(frame: bytes) -> None:
    feed, book = btc_book()
    before = (book.bids(), book.asks(), book.checksum(), book.valid)
    with pytest.raises(DecodeError):
        feed.process(frame)
    assert (book.bids(), book.asks(), book.checksum(), book.valid) == before


def test_truncated_frames_all_raise_decode_error() -> None:
    raw = vector("v2_book_checksum_guide_example.json")["messages"][0].encode()
    for cut in range(len(raw) - 1):
        feed = Feed(precisions={"BTC/USD": (1, 8)})
        with pytest.raises(KBookError):
            feed.process(raw[:cut])
        assert feed.book("BTC/USD") is None


def test_random_garbage_never_escapes_the_error_hierarchy() -> None:
    rng = random.Random(5)
    raw = vector("v2_book_checksum_guide_example.json")["messages"][0].encode()
    for _ in range(3000):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        feed = Feed(precisions={"BTC/USD": (1, 8)})
        with contextlib.suppress(KBookError):
            feed.process(bytes(data))
    for _ in range(500):
        with contextlib.suppress(KBookError):
            Feed().process(os.urandom(rng.randint(0, 64)))


def test_unknown_precision_for_v2_snapshot_raises() -> None:
    feed = Feed()
    with pytest.raises(UnknownPrecision) as info:
        feed.process(vector("v2_book_checksum_guide_example.json")["messages"][0].encode())
    assert info.value.symbol == "BTC/USD"


def test_update_before_snapshot_is_an_orphan() -> None:
    feed = Feed(precisions={"BTC/USD": (1, 8)})
    assert feed.process(v2_frame("BTC/USD", "update", [("1.0", "1.0")], [])) is None
    assert feed.orphan_updates == 1


# -- non-book messages -----------------------------------------------------------------------


def test_instrument_and_ack_teach_precision_and_depth() -> None:
    feed = Feed()
    instrument = feed.process(vector("v2_instrument_snapshot.json")["messages"][0].encode())
    assert instrument["channel"] == "instrument"
    assert instrument["data"]["pairs"][0]["qty_increment"] == Decimal("1e-08")
    ack = json.loads(vector("v2_book_subscribe_ack_unsubscribe.json")["messages"][1])
    ack["result"].update(symbol="BTC/USD", depth=25)
    feed.process(json.dumps(ack).encode())
    book = feed.process(vector("v2_book_checksum_guide_example.json")["messages"][0].encode())
    assert isinstance(book, L2Book)
    assert (book.depth, book.price_precision, book.qty_precision) == (25, 1, 8)
    assert book.checksum() == 3310070434
    learned = feed.learned
    assert learned["book_acks"] == {"BTC/USD": 25} and learned["level3_acks"] == {}
    assert "BTC/USD" in learned["instrument"]


def test_learned_says_only_what_the_stream_set() -> None:
    feed = Feed(precisions={"ETH/USD": (2, 8)})
    feed.set_depth("ETH/USD", 100)  # given, not learned
    pairs = [
        {"symbol": "BTC/USD", "price_precision": 1, "qty_precision": 8},
        {"symbol": "XRP/USD", "price_precision": True, "qty_precision": 8},  # unusable: skipped
    ]
    feed.process(
        json.dumps(
            {"channel": "instrument", "type": "snapshot", "data": {"assets": [], "pairs": pairs}}
        ).encode()
    )
    for channel, depth in (("book", 7), ("level3", 100), ("book", 10)):
        ack = {
            "method": "subscribe",
            "success": True,
            "result": {"channel": channel, "symbol": "BTC/USD", "depth": depth},
        }
        feed.process(json.dumps(ack).encode())  # depth 7 is not a Kraken depth: ignored
    assert feed.learned == {
        "instrument": {"BTC/USD"},
        "book_acks": {"BTC/USD": 10},
        "level3_acks": {"BTC/USD": 100},
    }
    feed.learned["instrument"].add("ETH/USD")  # a copy: the feed is unchanged
    assert feed.learned["instrument"] == {"BTC/USD"}


@pytest.mark.parametrize(
    "name",
    [
        "v2_status_update.json",
        "v2_heartbeat.json",
        "v2_ping_pong.json",
        "v2_ticker_messages.json",
        "v2_trade_messages.json",
        "v2_ohlc_messages.json",
        "v1_admin_messages.json",
        "v1_ticker.json",
        "v1_trade.json",
        "v1_spread.json",
        "v1_ohlc.json",
        "v2_level3_subscribe_ack.json",
    ],
)
def test_non_book_vectors_come_back_as_python_objects(name: str) -> None:
    feed = Feed()
    for message in vector(name)["messages"]:
        obj = feed.process(message.encode())
        assert obj == json.loads(message, parse_float=Decimal)
    assert feed.other_messages == len(vector(name)["messages"])
    assert feed.book_messages == 0


def test_status_connection_id_beyond_int64_is_exact() -> None:
    status = Feed().process(vector("v2_status_update.json")["messages"][0].encode())
    assert status["data"][0]["connection_id"] == 13834774380200032777


def test_timing_accumulates_engine_time() -> None:
    feed = Feed(precisions={"BTC/USD": (1, 8)}, timing=True)
    feed.process(vector("v2_book_checksum_guide_example.json")["messages"][0].encode())
    assert feed.engine_ns > 0
