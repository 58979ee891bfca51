"""Regression tests of issue 10 (hostile input), engine side: each defect the fuzzer found.

Every test feeds the engine (and, where the rule is shared, :mod:`kbook.reference`) one input a
hostile or broken server could send, and checks the typed error or the agreed reading. The
bounded-cost tests assert the refusal and its place (before any change), never a duration: the
measured worst cases are in the issue's closing note.

What it is not: the mutation fuzzer (``tests/fuzz``) or the message parser's typed errors
(``test_messages_hostile.py``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from kbook import DecodeError, Feed, L2Book, Level3Book, NumberError, crc32, parse_scaled
from kbook.reference import RefBook, RefFeed, RefL3Book

PREC = {"BTC/USD": (1, 8)}


def v2_book(
    kind: str,
    bids: list[tuple[str, str]],
    asks: list[tuple[str, str]],
    checksum: int | None = None,
    symbol: str = "BTC/USD",
) -> bytes:
    levels = [",".join(f'{{"price":{p},"qty":{q}}}' for p, q in side) for side in (bids, asks)]
    tail = "" if checksum is None else f',"checksum":{checksum}'
    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}",'
        f'"bids":[{levels[0]}],"asks":[{levels[1]}]{tail}}}]}}'
    ).encode()


def l3_frame(
    kind: str,
    bids: list[tuple[str, str, str]],
    asks: list[tuple[str, str, str]] = (),
    event: str | None = None,
    symbol: str = "BTC/USD",
) -> bytes:
    def order(oid: str, price: str, qty: str) -> str:
        head = f'"event":"{event}",' if event else ""
        return f'{{{head}"order_id":"{oid}","limit_price":{price},"order_qty":{qty}}}'

    sides = [",".join(order(*o) for o in side) for side in (bids, asks)]
    return (
        f'{{"channel":"level3","type":"{kind}","data":[{{"symbol":"{symbol}",'
        f'"bids":[{sides[0]}],"asks":[{sides[1]}]}}]}}'
    ).encode()


def fingerprint(feed: Feed) -> list[Any]:
    out = []
    for key, book in sorted(feed.books.items()):
        out.append((key, book.valid, book.checksum_input(), book.bids(), book.asks()))
    return out


# -- 1. long number literals -------------------------------------------------------------------

HUGE = "1" + "0" * 1_100_000 + "e-11000000"  # = 1E-9900000, parsed as 1 before the fix


def test_parse_scaled_long_literal_with_saturated_exponent_refused() -> None:
    with pytest.raises(NumberError, match="longer than 100"):
        parse_scaled(HUGE, 0)


def test_parse_scaled_literal_at_the_limit_accepted_one_over_refused() -> None:
    at_limit = "1." + "0" * 98
    assert len(at_limit) == 100 and parse_scaled(at_limit, 0) == 1
    with pytest.raises(NumberError):
        parse_scaled(at_limit + "0", 0)


def test_parse_scaled_huge_int_refused_as_number_error() -> None:
    with pytest.raises(NumberError):
        parse_scaled(10**5000, 0)


def test_feed_long_literal_in_snapshot_refused_book_unchanged() -> None:
    feed = Feed(precisions=PREC, default_depth=10)
    feed.process(v2_book("snapshot", [("100.0", "1.0")], [("101.0", "1.0")]))
    before = fingerprint(feed)
    with pytest.raises(NumberError):
        feed.process(v2_book("update", [("100.0", HUGE)], []))
    assert fingerprint(feed) == before


def test_reference_long_literal_refused_like_engine() -> None:
    ref = RefFeed(PREC)
    ref.process(v2_book("snapshot", [("100.0", "1.0")], [("101.0", "1.0")]))
    with pytest.raises(ValueError, match="longer than 100"):
        ref.process(v2_book("update", [("100.0", HUGE)], []))
    with pytest.raises(ValueError, match="longer than 100"):
        ref.process(
            b'[1,{"b":[["100.0","' + ("1" + "0" * 200).encode() + b'","1.0"]]},"book-10","XBT/USD"]'
        )


# -- 10. the reference model refuses huge exponents quickly -----------------------------------


@pytest.mark.parametrize("literal", ["1e999999999999", "1e-999999999999", "0e999999999999"])
def test_reference_huge_exponent_answers_without_hanging(literal: str) -> None:
    book = RefBook("BTC/USD", 10, 1, 8)
    if literal.startswith("0"):
        book.apply("bid", Decimal("100.0"), Decimal(literal))  # zero: a delete, no 10**n
        assert book.absent_deletes == 1
        return
    with pytest.raises(ValueError):
        book.apply("bid", Decimal("100.0"), Decimal(literal))
    with pytest.raises(NumberError):
        parse_scaled(literal, 8)


def test_reference_checksum_with_huge_exponent_refused() -> None:
    ref = RefFeed(PREC)
    with pytest.raises(ValueError, match="out of range"):
        ref.process(
            v2_book("snapshot", [("100.0", "1.0")], []).replace(
                b'"asks":[]', b'"asks":[],"checksum":1e999999999'
            )
        )


# -- 2. repeated keys: one rule on every path ---------------------------------------------------

V1_SNAP = (
    b'[0,{"as":[["101.00000","1.00000000","1.0"]],"bs":[["50.00000","7.00000000","1.0"]],'
    b'"bs":[["99.00000","1.00000000","1.0"]]},"book-10","XBT/USD"]'
)


def test_v1_snapshot_repeated_key_last_one_wins_engine_and_reference() -> None:
    feed = Feed()
    book = feed.process(V1_SNAP)
    assert isinstance(book, L2Book)
    assert book.bids_str() == [("99.00000", "1.00000000")]
    ref = RefFeed()
    ref.process(V1_SNAP)
    assert list(ref.books[("v1", "book-10:XBT/USD")].bids.items()) == [
        (Decimal("99.00000"), Decimal("1.00000000"))
    ]


def _v1_update_checksum(bids: list[tuple[str, str]]) -> int:
    """The checksum of the V1_SNAP book after replacing bid levels as given (last-key reading)."""
    book = RefBook("XBT/USD", 10, 5, 8)
    book.apply_message(
        [(Decimal("99.00000"), Decimal("1.00000000"))],
        [(Decimal("101.00000"), Decimal("1.00000000"))],
        snapshot=True,
    )
    book.apply_message([(Decimal(p), Decimal(q)) for p, q in bids], [], snapshot=False)
    return book.checksum()


@pytest.mark.parametrize("reading", ["last", "merged"])
def test_v1_update_repeated_b_key_engine_and_reference_agree(reading: str) -> None:
    # the fuzzer's case: a "b" key repeated in one payload with the checksum of one reading
    last = [("98.00000", "2.00000000")]
    merged = [("97.00000", "3.00000000"), ("98.00000", "2.00000000")]
    checksum = _v1_update_checksum(last if reading == "last" else merged)
    frame = (
        b'[1,{"b":[["97.00000","3.00000000","2.0"]],"b":[["98.00000","2.00000000","2.0"]],'
        b'"c":"' + str(checksum).encode() + b'"},"book-10","XBT/USD"]'
    )
    feed, ref = Feed(), RefFeed()
    feed.process(V1_SNAP)
    ref.process(V1_SNAP)
    outcome = ref.process(frame)
    try:
        feed.process(frame)
        engine_ok = True
    except Exception:
        engine_ok = False
    assert engine_ok is outcome.checksum_ok is (reading == "last")


def test_v1_frame_mixing_snapshot_and_update_keys_refused_by_both() -> None:
    frame = (
        b'[0,{"as":[["101.00000","1.00000000","1.0"]]},{"b":[["99.00000","1.00000000",'
        b'"1.0"]]},"book-10","XBT/USD"]'
    )
    with pytest.raises(DecodeError):
        Feed().process(frame)
    with pytest.raises(ValueError):
        RefFeed().process(frame)


def test_v2_repeated_bids_key_engine_and_reference_agree() -> None:
    frame = (
        b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",'
        b'"bids":[{"price":50.0,"qty":7.0}],"asks":[{"price":101.0,"qty":1.0}],'
        b'"bids":[{"price":99.0,"qty":1.0}]}]}'
    )
    book = Feed(precisions=PREC).process(frame)
    ref = RefFeed(PREC)
    ref.process(frame)
    assert isinstance(book, L2Book)
    assert book.bids_str() == [("99.0", "1.00000000")]
    assert list(ref.books[("v2", "BTC/USD")].bids.items()) == [(Decimal("99.0"), Decimal("1.0"))]


# -- 3. level3 sums never wrap ---------------------------------------------------------------


def test_level3_order_of_38_nines_lots_refused_number_error() -> None:
    book = Level3Book("X/Y", 10, 0, 0)
    orders = [("bid", "add", f"O{i}", "1", "9" * 38) for i in range(4)]
    with pytest.raises(NumberError):
        book.apply(orders, snapshot=True)
    feed = Feed(precisions={"BTC/USD": (0, 0)})
    with pytest.raises(NumberError):
        feed.process(l3_frame("snapshot", [(f"O{i}", "1", "9" * 38) for i in range(4)]))
    assert feed.level3_book("BTC/USD") is None
    ref = RefL3Book("X/Y", 10, 0, 0)
    with pytest.raises(ValueError, match="out of range"):
        ref.apply_message([("bid", "add", "O0", Decimal(1), Decimal("9" * 38))], snapshot=True)


def test_level3_largest_orders_sum_exactly() -> None:
    big = 10**29 - 1
    book = Level3Book("X/Y", 10, 0, 0)
    book.apply([("bid", "add", f"O{i}", "1", str(big)) for i in range(4)], snapshot=True)
    assert book.bids() == [(1, 4 * big, 4)]
    assert book.queue_position("O3") == ("bid", 1, 3, 3 * big)
    with pytest.raises(NumberError):
        book.apply([("bid", "add", "O9", "1", str(big + 1))])


# -- 4. checksum arguments -----------------------------------------------------------------------


def _l2() -> tuple[L2Book, int]:
    book = L2Book("BTC/USD", 10, 1, 8)
    book.apply([("100.0", "1.0")], [("101.0", "1.0")], snapshot=True)
    return book, book.checksum()


@pytest.mark.parametrize("delta,error", [(2**32, ValueError), (-(2**40), ValueError)])
def test_l2book_apply_checksum_out_of_range_refused(delta: int, error: type[Exception]) -> None:
    book, good = _l2()
    with pytest.raises(error):
        book.apply([("100.0", "2.0")], [], checksum=good + delta)
    assert book.bids_str() == [("100.0", "1.00000000")] and book.valid


@pytest.mark.parametrize("bad", [-1, 2**32, True, "12", 1.0])
def test_checked_entry_points_refuse_bad_checksum_values(bad: Any) -> None:
    book, _ = _l2()
    with pytest.raises((ValueError, TypeError)):
        book.apply([("100.0", "2.0")], [], checksum=bad)
    l3 = Level3Book("X/Y", 10, 1, 8)
    with pytest.raises((ValueError, TypeError)):
        l3.apply([("bid", "add", "A", "1.0", "1.0")], snapshot=True, checksum=bad)
    assert len(l3.bids()) == 0


def test_checked_entry_points_accept_checksum_bounds() -> None:
    book, good = _l2()
    book.apply([], [], checksum=good)
    assert book.valid
    l3 = Level3Book("X/Y", 10, 1, 8)
    l3.apply([("bid", "add", "A", "1.0", "1.0")], snapshot=True)
    l3.apply([], checksum=l3.checksum())
    assert l3.valid


# -- 6. bounded cost per frame -----------------------------------------------------------------


def _levels(n: int, start: int = 1000) -> list[tuple[str, str]]:
    return [(f"{start + i}.0", "1.0") for i in range(n)]


def test_feed_snapshot_with_too_many_levels_refused_book_unchanged() -> None:
    feed = Feed(precisions=PREC, default_depth=10)
    feed.process(v2_book("snapshot", _levels(104)[::-1], []))  # 4 x 10 + 64: accepted
    before = fingerprint(feed)
    with pytest.raises(DecodeError, match="exceed 104") as info:
        feed.process(v2_book("snapshot", _levels(105)[::-1], []))
    assert info.value.symbol == "BTC/USD" and info.value.channel == "book"
    assert fingerprint(feed) == before
    with pytest.raises(ValueError):
        RefBook("BTC/USD", 10, 1, 8).apply_message(
            [(Decimal(p), Decimal(q)) for p, q in _levels(105)], [], snapshot=True
        )


def test_l2book_apply_too_many_levels_refused() -> None:
    book = L2Book("BTC/USD", 10, 1, 8)
    with pytest.raises(DecodeError):
        book.apply(_levels(105), [], snapshot=True)
    assert len(book) == 0 and not book.valid


def test_feed_level3_snapshot_with_too_many_prices_refused() -> None:
    feed = Feed(precisions=PREC)
    orders = [(f"O{i}", f"{1000 + i}.0", "1.0") for i in range(105)]
    with pytest.raises(DecodeError, match="prices"):
        feed.process(l3_frame("snapshot", orders))
    assert feed.level3_book("BTC/USD") is None
    feed.process(l3_frame("snapshot", orders[:104]))
    assert len(feed.level3_book("BTC/USD").bids()) == 10


def test_feed_level3_snapshot_repeating_an_order_id_refused_by_both() -> None:
    orders = [("A", "100.0", "1.0"), ("B", "100.0", "1.0"), ("A", "99.0", "1.0")]
    with pytest.raises(DecodeError, match="repeated"):
        Feed(precisions=PREC).process(l3_frame("snapshot", orders))
    with pytest.raises(ValueError, match="repeated"):
        RefFeed(PREC).process(l3_frame("snapshot", orders))


def test_feed_level3_update_with_too_many_events_refused_book_unchanged() -> None:
    feed = Feed(precisions=PREC)
    book = feed.process(l3_frame("snapshot", [("A", "100.0", "1.0")]))
    assert isinstance(book, Level3Book)
    events = [("A", "100.0", f"{1 + i % 7}.0") for i in range(4 * 10 + 1025)]
    with pytest.raises(DecodeError, match="events"):
        feed.process(l3_frame("update", events, event="modify"))
    assert book.bids() == [(1000, 10**8, 1)]
    feed.process(l3_frame("update", events[:-1], event="modify"))
    assert book.valid


def test_feed_staging_memory_given_back_after_outsized_frame() -> None:
    feed = Feed(precisions=PREC, default_depth=1000)
    feed.process(v2_book("snapshot", _levels(3000)[::-1], _levels(1000, 9000)))
    big = feed._staging()
    with pytest.raises(DecodeError):
        feed.process(v2_book("snapshot", _levels(30000)[::-1], []))
    levels, groups, arena = feed._staging()
    assert levels <= 4096 and groups <= 4096 and arena <= 65536
    assert big[0] <= 4096  # 4000 levels fit the kept size: no churn for ordinary frames


# -- 7. the owner limits book creation -----------------------------------------------------------


def test_feed_autocreate_false_snapshot_is_orphan() -> None:
    feed = Feed(precisions=PREC, autocreate=False)
    assert feed.process(v2_book("snapshot", [("100.0", "1.0")], [])) is None
    assert feed.process(b'[0,{"as":[["1.00000","1.00000000","1.0"]]},"book-10","XBT/USD"]') is None
    assert feed.process(l3_frame("snapshot", [("A", "100.0", "1.0")])) is None
    assert feed.books == {} and feed.orphan_updates == 3
    book = feed.add_book("BTC/USD", 10)
    assert feed.process(v2_book("snapshot", [("100.0", "1.0")], [])) is book


def test_feed_max_books_caps_automatic_creation() -> None:
    feed = Feed(precisions={"BTC/USD": (1, 8), "ETH/USD": (1, 8)}, max_books=1)
    assert isinstance(feed.process(v2_book("snapshot", [("100.0", "1.0")], [])), L2Book)
    assert feed.process(v2_book("snapshot", [("100.0", "1.0")], [], symbol="ETH/USD")) is None
    assert len(feed.books) == 1 and feed.orphan_updates == 1
    assert isinstance(feed.add_book("ETH/USD"), L2Book)  # explicit creation is never refused
    with pytest.raises(ValueError):
        Feed(max_books=-1)


def test_feed_add_level3_book_takes_snapshots_with_autocreate_off() -> None:
    feed = Feed(precisions=PREC, autocreate=False)
    book = feed.add_level3_book("BTC/USD", depth=10)
    assert feed.level3_book("BTC/USD") is book and book.price_precision == 1
    assert feed.process(l3_frame("snapshot", [("A", "100.0", "1.0")])) is book
    assert book.valid and book.queue_position("A") == ("bid", 1000, 0, 0)
    bare = feed.add_level3_book("ETH/USD")
    assert bare.price_precision == -1
    with pytest.raises(Exception, match="precision"):
        feed.process(l3_frame("snapshot", [("A", "100.0", "1.0")], symbol="ETH/USD"))


def test_feed_level3_snapshot_within_bounds_verifies() -> None:
    # the refusal checks leave an ordinary snapshot, with its checksum, as it was
    feed = Feed(precisions=PREC)
    plain = l3_frame("snapshot", [("A", "100.0", "1.0"), ("B", "100.0", "2.0")])
    checksum = crc32("1000100000000" + "1000200000000")
    frame = plain.replace(b'"asks":[]', b'"asks":[],"checksum":' + str(checksum).encode())
    book = feed.process(frame)
    assert isinstance(book, Level3Book)
    assert book.valid and book.checksums_verified == 1
    assert book.queue_position("B") == ("bid", 1000, 1, 10**8)


# -- found by tests/fuzz: non-book messages the feed learns from ------------------------------


@pytest.mark.parametrize("value", ["1e999999999", "true", "1.5", "-1", "19"])
def test_feed_instrument_with_unusable_precision_skipped_quickly(value: str) -> None:
    feed = Feed()
    frame = (
        '{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{"symbol":'
        f'"BTC/USD","price_precision":{value},"qty_precision":8}}]}}}}'
    ).encode()
    feed.process(frame)
    with pytest.raises(Exception, match="precision"):
        feed.process(v2_book("snapshot", [("100.0", "1.0")], []))
    ref = RefFeed()
    ref.process(frame)
    assert "BTC/USD" not in ref.precisions


@pytest.mark.parametrize("depth", ["10.0", "1e999999999", "true"])
def test_feed_ack_with_non_integer_depth_ignored(depth: str) -> None:
    feed = Feed(precisions=PREC)
    feed.process(
        (
            '{"method":"subscribe","success":true,"result":{"channel":"book",'
            f'"symbol":"BTC/USD","depth":{depth}}}}}'
        ).encode()
    )
    book = feed.process(v2_book("snapshot", [("100.0", "1.0")], []))
    assert isinstance(book, L2Book) and book.depth == 10
