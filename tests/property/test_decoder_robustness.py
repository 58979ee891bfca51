"""Property tests of the engine's frame decoder and number parser on hostile input.

Three properties, against two oracles (the standard library's ``json`` for what is valid JSON, and
:mod:`kbook.reference` for what a valid book frame means):

* every proper prefix of a valid book frame raises ``DecodeError`` and changes no book;
* a valid frame with random byte mutations makes ``Feed.process`` raise a ``KBookError`` or
  return, never anything else; if stdlib ``json`` rejects the bytes the engine raises
  ``DecodeError`` and changes nothing, and if the engine returns a book (or reports a checksum
  mismatch) while the model accepts the frame, both hold the same books;
* ``parse_scaled`` is exact: ``int(Decimal(text) * 10**dp)`` when that is an integer in range,
  ``NumberError`` otherwise, for any JSON number text and for text that is not one.

The frames are generated ones in random JSON styles (:mod:`kbook.testing.wire`) and Kraken's
published examples (``vectors_dir``). Targeted tests at the end are regression tests for the
engine bugs these properties found (all fixed since).

What it is not: the equality of engine and model over long random message sequences is
``test_book_machine.py``'s job; here each example is one frame on a freshly set-up feed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kbook import (
    BookIntegrityError,
    ChecksumMismatch,
    DecodeError,
    Feed,
    KBookError,
    L2Book,
    NumberError,
    UnknownPrecision,
    parse_scaled,
)
from kbook.reference import RefBook, RefFeed, RefResult
from kbook.testing.wire import Style, decimal_of, units_of, v1_book_frame, v2_book_frame

#: RFC 8259 number grammar.
JSON_NUMBER = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"
JSON_NUMBER_RE = re.compile(JSON_NUMBER)
#: The engine's quantity range: values below 10**38 units of the precision (128-bit lots).
QTY_DIGITS = 38


def budget(factor: int, **overrides: Any) -> settings:
    """The profile's example budget times ``factor``, for properties whose examples are cheap.

    A one-frame example costs milliseconds where a state machine run costs a second, so these
    properties can afford many more examples within the same profile's time.
    """
    return settings(max_examples=settings.default.max_examples * factor, **overrides)


@dataclass(frozen=True)
class Case:
    """One frame to torment, and the frames that set up the feed before it."""

    name: str
    precisions: dict[str, tuple[int, int]]
    setup: tuple[bytes, ...]
    frame: bytes


# -- frame sources ------------------------------------------------------------------------------


@st.composite
def generated_cases(draw: st.DrawFn) -> Case:
    """A random uncrossed book (v1 or v2), then its snapshot or an update, in a random style."""
    v1 = draw(st.booleans(), label="v1")
    pp, qp = draw(st.integers(0, 12), label="pp"), draw(st.integers(0, 18), label="qp")
    center = draw(st.integers(60, 10**12), label="center")
    lots = st.one_of(st.integers(1, 10**qp), st.integers(1, 10 ** (qp + 15)))
    offsets = st.lists(st.integers(0, 40), max_size=12, unique=True)
    # bids at or below center, asks above it: neither the snapshot nor an update can cross
    bids = [(center - off, draw(lots)) for off in sorted(draw(offsets, label="bid offsets"))]
    asks = [(center + 1 + off, draw(lots)) for off in sorted(draw(offsets, label="ask offsets"))]
    if v1 and not (bids or asks):
        # v1 learns the precision from the snapshot strings: after an empty one the model uses its
        # table while the engine (which has none for v1) learns it from the next update's strings
        bids = [(center, draw(lots))]
    changes = draw(
        st.lists(
            st.tuples(st.booleans(), st.integers(0, 45), st.one_of(st.just(0), lots)),
            min_size=1,
            max_size=8,
        ),
        label="update",
    )
    update_bids = [(center - off, q) for is_bid, off, q in changes if is_bid]
    update_asks = [(center + 1 + off, q) for is_bid, off, q in changes if not is_bid]
    book = RefBook("X", 10, pp, qp)

    def apply(b: list[tuple[int, int]], a: list[tuple[int, int]], snapshot: bool) -> int:
        book.apply_message(
            [(decimal_of(p, pp), decimal_of(q, qp)) for p, q in b],
            [(decimal_of(p, pp), decimal_of(q, qp)) for p, q in a],
            snapshot=snapshot,
        )
        return book.checksum()

    snapshot_sum = apply(bids, asks, True)
    update_sum = apply(update_bids, update_asks, False)
    target = draw(st.sampled_from(("update", "snapshot")), label="target")
    style = Style(draw(st.integers(0, 2**32 - 1), label="style"), numbers_as_strings=not v1)
    plain = Style(0)
    if v1:
        pair, channel = "XBT/USD", "book-10"

        def v1_frame(s: Style, b: Any, a: Any, checksum: int | None, snap: bool) -> bytes:
            return v1_book_frame(s, channel, pair, b, a, pp, qp, checksum, 1, snapshot=snap)

        snapshot = v1_frame(plain, bids, asks, None, True)
        update = v1_frame(style, update_bids, update_asks, update_sum, False)
        if target == "snapshot":
            snapshot = v1_frame(style, bids, asks, None, True)
        precisions = {pair: (pp, qp)}
    else:
        symbol = "BTC/USD"

        def v2_frame(s: Style, kind: str, b: Any, a: Any, checksum: int) -> bytes:
            return v2_book_frame(s, kind, symbol, b, a, pp, qp, checksum, "t")

        snapshot = v2_frame(plain, "snapshot", bids, asks, snapshot_sum)
        update = v2_frame(style, "update", update_bids, update_asks, update_sum)
        if target == "snapshot":
            snapshot = v2_frame(style, "snapshot", bids, asks, snapshot_sum)
        precisions = {symbol: (pp, qp)}
    if target == "snapshot":
        return Case("generated snapshot", precisions, (), snapshot.rstrip())
    return Case("generated update", precisions, (snapshot,), update.rstrip())


@cache
def vector_cases(vectors_dir: Path) -> tuple[Case, ...]:
    """Kraken's published book examples, as frames (the v1 guide's bare book gets its envelope)."""

    def load(name: str) -> dict[str, Any]:
        vector: dict[str, Any] = json.loads((vectors_dir / name).read_text())
        return vector

    def encoded(vector: dict[str, Any]) -> list[bytes]:
        return [str(m).strip().encode() for m in vector["messages"]]

    guide = load("v2_book_checksum_guide_example.json")
    matic_snap = load("v2_book_reference_snapshot_matic.json")
    matic_update = load("v2_book_reference_update_matic.json")
    v1_book = encoded(load("v1_book_checksum_guide_example.json"))[0]
    v1_snapshot = b"[0," + v1_book + b',"book-1000","BTC/USD"]'
    v1_update = encoded(load("v1_book_update_with_checksum_guide.json"))[0]
    v1_subscribe = encoded(load("v1_book_subscribe_snapshot.json"))
    v1_xbt_snapshot = next(m for m in v1_subscribe if m.startswith(b"["))
    matic = {"MATIC/USD": (4, 8)}
    first, second = encoded(matic_update)[:2]
    return (
        Case("v2 checksum guide snapshot", {"BTC/USD": (1, 8)}, (), encoded(guide)[0]),
        Case("v2 MATIC/USD snapshot", matic, (), encoded(matic_snap)[0]),
        Case("v2 MATIC/USD update", matic, (first,), second),
        Case("v1 checksum guide book", {}, (), v1_snapshot),
        Case("v1 checksum guide update", {}, (v1_snapshot,), v1_update),
        Case("v1 XBT/USD snapshot", {}, (), v1_xbt_snapshot),
    )


def any_case(data: st.DataObject, vectors_dir: Path) -> Case:
    return data.draw(
        st.one_of(generated_cases(), st.sampled_from(vector_cases(vectors_dir))), label="case"
    )


def set_up(case: Case) -> tuple[Feed, RefFeed]:
    """A feed and a model that have both processed the case's setup frames."""
    feed = Feed(precisions=case.precisions, default_depth=10)
    model = RefFeed(case.precisions, default_depth=10)
    for frame in case.setup:
        feed.process(frame)
        model.process(frame)
    return feed, model


def state_of(feed: Feed) -> dict[tuple[str, str], Any]:
    """Everything a frame could change in a feed's books."""
    return {
        key: (b.bids(), b.asks(), b.checksum(), b.valid, b.messages)
        for key, b in feed.books.items()
    }


def engine_key(model_key: tuple[str, str]) -> tuple[str, str]:
    """The engine's key of a model book: v1 ``book-10:XBT/USD`` is ``book-10|XBT/USD`` there."""
    protocol, name = model_key
    return (protocol, name.replace(":", "|", 1)) if protocol == "v1" else model_key


def v1_exponent_precision(frame: bytes) -> bool:
    """Whether a v1 snapshot's first level writes a number with an exponent (not Kraken's form).

    v1 learns a pair's precision from how the first snapshot level is written: the engine counts
    the digits after the '.', the model takes the decimals of the value (``"10.0e1"`` gives 1 and
    0). Kraken's v1 strings are fixed-width decimals, where both agree; on an exponent, which
    Kraken never writes there, neither reading is more right than the other.
    """
    try:
        msg = json.loads(frame, parse_float=Decimal, parse_int=Decimal)
        for payload in msg[1:-2]:
            for entry in payload.get("as", []) + payload.get("bs", []):
                return any(c in str(v) for v in entry[:2] for c in "eE")
    except (ValueError, TypeError, AttributeError, IndexError, KeyError):
        return False
    return False


def assert_same_levels(book: L2Book, ref: RefBook) -> None:
    """The engine book holds exactly the model book's levels, precisions and checksum input."""
    pp, qp = ref.price_precision, ref.qty_precision
    assert (book.price_precision, book.qty_precision) == (pp, qp)
    bids = [(units_of(p, pp), units_of(q, qp)) for p, q in ref.bids.items()]
    assert book.bids() == bids[::-1]
    assert book.asks() == [(units_of(p, pp), units_of(q, qp)) for p, q in ref.asks.items()]
    assert book.checksum_input() == ref.checksum_input()


def assert_feeds_agree(feed: Feed, model: RefFeed, frame: bytes) -> None:
    """The engine holds exactly the model's books: same keys, validity and levels."""
    assert set(feed.books) == {engine_key(k) for k in model.books}
    for key, ref in model.books.items():
        book = feed.books[engine_key(key)]
        assert book.valid == model.is_valid(key)
        if book.price_precision < 0 and not (ref.bids or ref.asks):
            continue  # an empty v1 book: the engine learns the precision from its first level
        if key[0] == "v1" and v1_exponent_precision(frame):
            assume(
                (book.price_precision, book.qty_precision)
                == (ref.price_precision, ref.qty_precision)
            )
        assert_same_levels(book, ref)
        book._check()


def stdlib_accepts(frame: bytes) -> bool:
    """Whether the frame is valid JSON for the standard library (UTF-8, no NaN/Infinity)."""

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        json.loads(
            frame.decode("utf-8"),
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=no_constants,
        )
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        return False
    return True


# -- (a) truncation -----------------------------------------------------------------------------


# a few thousand prefixes per example: no deadline, speed is not the property here
@budget(3, deadline=None)
@given(data=st.data())
def test_feed_truncated_book_frame_raises_decode_error_and_keeps_books(
    vectors_dir: Path, data: st.DataObject
) -> None:
    case = any_case(data, vectors_dir)
    feed, model = set_up(case)
    before = state_of(feed)
    for end in range(len(case.frame)):
        with pytest.raises(DecodeError):
            feed.process(case.frame[:end])
        assert state_of(feed) == before, f"prefix of {end} bytes changed a book"
    # the whole frame is valid and verifies: the prefixes failed for being prefixes
    result = feed.process(case.frame)
    assert isinstance(result, L2Book) and result.valid
    assert model.process(case.frame).checksum_ok is not False
    assert_feeds_agree(feed, model, case.frame)


# -- (b) mutations ------------------------------------------------------------------------------

# Bytes that change a JSON frame's structure, plus arbitrary ones.
INTERESTING = b'{}[]",:0123456789-+.eE \\/untrfalsbcqypd\x00\x1f\x7f\x80\xc3\xff'
MUTATION = st.tuples(
    st.sampled_from(("replace", "insert", "delete", "duplicate", "swap")),
    st.integers(0, 2**16),
    st.integers(0, 2**16),
    st.one_of(st.sampled_from(list(INTERESTING)), st.integers(0, 255)),
)


def mutate(frame: bytes, mutations: list[tuple[str, int, int, int]]) -> bytes:
    out = bytearray(frame)
    for op, i, j, byte in mutations:
        if not out:
            out.append(byte)
            continue
        i %= len(out)
        j %= len(out)
        if op == "replace":
            out[i] = byte
        elif op == "insert":
            out.insert(i, byte)
        elif op == "delete":
            del out[i]
        elif op == "duplicate":
            lo, hi = min(i, j), max(i, j)
            out[hi:hi] = out[lo : min(hi + 1, lo + 16)]
        else:
            out[i], out[j] = out[j], out[i]
    return bytes(out)


@budget(10)
@given(data=st.data(), mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_feed_mutated_frame_raises_kbook_error_or_agrees_with_model(
    vectors_dir: Path, data: st.DataObject, mutations: list[tuple[str, int, int, int]]
) -> None:
    case = any_case(data, vectors_dir)
    frame = mutate(case.frame, mutations)
    assume(frame != case.frame)
    feed, model = set_up(case)
    before = state_of(feed)
    raised: KBookError | None = None
    result: Any = None
    try:
        result = feed.process(frame)
    except KBookError as exc:  # anything else fails the test, as it should
        raised = exc

    if isinstance(raised, (DecodeError, UnknownPrecision)):
        # no book changed, and none was created (not even an empty one for a refused snapshot)
        assert state_of(feed) == before, "a rejected frame changed the books"
    if not stdlib_accepts(frame):
        assert isinstance(raised, DecodeError), f"invalid JSON accepted: {frame!r}"
        return
    try:
        verdict: RefResult | None = model.process(frame)
    except Exception:  # the model refuses the frame: nothing to compare with
        verdict = None
    if verdict is None:
        return
    if raised is None and isinstance(result, L2Book):
        assert verdict.kind in ("book", "dropped"), verdict
        assert verdict.checksum_ok is not False, "the engine accepted a checksum the model refutes"
        assert_feeds_agree(feed, model, frame)
    elif isinstance(raised, ChecksumMismatch):
        assert verdict.kind == "book" and verdict.checksum_ok is False, verdict
        assert_feeds_agree(feed, model, frame)  # applied, then marked invalid, in both
    elif isinstance(raised, BookIntegrityError):
        # crossed after applying (verified or not): applied, then invalid until a snapshot; the
        # model does not judge crossing, so only its levels are compared
        assert verdict.kind == "book" and verdict.checksum_ok is not False, verdict
        crossed = [(key, ref) for key, ref in model.books.items() if ref.is_crossed()]
        assert crossed, "the engine calls a book crossed that the model does not"
        for key, ref in crossed:
            book = feed.books[engine_key(key)]
            assert not book.valid
            assert_same_levels(book, ref)


# -- (c) numbers --------------------------------------------------------------------------------


def expected_scaled(text: str, dp: int, digits: int = QTY_DIGITS) -> int | None:
    """``int(Decimal(text) * 10**dp)`` if that is an exact integer in ``[0, 10**digits)``.

    Computed from the grammar's parts with integers, so it is exact for any exponent: Decimal
    arithmetic rounds to its context's 28 digits, and ``Decimal()`` itself refuses exponents
    beyond about 10**18, which are valid JSON.
    """
    match = JSON_NUMBER_RE.fullmatch(text)
    if match is None:
        return None
    whole, fraction, exponent_text = match.groups()
    fraction = (fraction or ".")[1:]
    coefficient = int(whole + fraction)
    if coefficient == 0:
        return 0  # "-0" included: it is zero
    if text.startswith("-"):
        return None
    exponent = int(exponent_text[1:]) if exponent_text else 0
    exponent -= len(fraction)
    while coefficient % 10 == 0:
        coefficient //= 10
        exponent += 1
    shift = exponent + dp
    if shift < 0 or shift > digits:  # not an integer, or at least 10**(digits + 1)
        return None
    value: int = coefficient * 10**shift
    return value if value < 10**digits else None


@st.composite
def number_texts(draw: st.DrawFn) -> str:
    """JSON number texts: the grammar itself, and forms near the engine's limits."""
    kind = draw(st.sampled_from(("regex", "wide", "exponent")))
    if kind == "regex":
        return draw(st.from_regex(JSON_NUMBER, fullmatch=True))
    sign = draw(st.sampled_from(("", "", "-")))
    if kind == "wide":  # long mantissas whose trailing zeros keep them in range
        digits = str(draw(st.integers(1, 10**40)))
        zeros = "0" * draw(st.integers(0, 12))
        point = draw(st.integers(0, len(digits)))
        mantissa = digits[:point] + ("." + digits[point:] + zeros if point < len(digits) else zeros)
        mantissa = mantissa if not mantissa.startswith(".") else "0" + mantissa
        exponent = draw(st.integers(-60, 20))
        return f"{sign}{mantissa}e{exponent}"
    mantissa = draw(st.sampled_from(("1", "0", "12345", "1.2345", "0.000001", "9" * 38)))
    exponent = draw(st.one_of(st.integers(-50, 50), st.integers(-(10**12), 10**12)))
    return f"{sign}{mantissa}{draw(st.sampled_from('eE'))}{exponent:+d}"


@budget(10)
@given(text=number_texts(), dp=st.integers(0, 20), digits=st.integers(1, QTY_DIGITS))
def test_parse_scaled_json_number_is_exact_or_number_error(text: str, dp: int, digits: int) -> None:
    expected = expected_scaled(text, dp, digits)
    if expected is None:
        with pytest.raises(NumberError):
            parse_scaled(text, dp, digits)
    else:
        assert parse_scaled(text, dp, digits) == expected
    if digits == QTY_DIGITS:
        if expected is None:
            with pytest.raises(NumberError):
                parse_scaled(text, dp)
        else:
            assert parse_scaled(text, dp) == expected


@budget(5)
@given(text=st.text(alphabet=st.sampled_from("0123456789-+.eE x_\u0661\uff11"), max_size=30))
def test_parse_scaled_text_not_json_number_raises_number_error(text: str) -> None:
    assume(not JSON_NUMBER_RE.fullmatch(text))
    with pytest.raises(NumberError):
        parse_scaled(text, 8)


@budget(5)
@given(value=st.integers(-(10**40), 10**40), dp=st.integers(0, 20))
def test_parse_scaled_python_int_scales_exactly_or_number_error(value: int, dp: int) -> None:
    expected = value * 10**dp
    if 0 <= expected < 10**QTY_DIGITS:
        assert parse_scaled(value, dp) == expected
    else:
        with pytest.raises(NumberError):
            parse_scaled(value, dp)


@pytest.mark.parametrize(
    ("text", "dp", "expected"),
    [
        # leading zeros are not JSON
        ("00", 0, None),
        ("01", 2, None),
        ("-01", 2, None),
        ("00.5", 1, None),
        ("0001e2", 0, None),
        # huge exponents, both ways, on non-zero and zero mantissas
        ("1e999999999", 0, None),
        ("1e-999999999", 8, None),
        ("0e999999999", 3, 0),
        ("0.0E-999999", 8, 0),
        ("1e0000000000000000000005", 0, 100000),
        # 40-digit mantissas whose trailing zeros bring them back into range
        ("1" + "0" * 39 + "e-39", 0, 1),
        ("1234567890123456789012345678901234567800e-2", 0, 12345678901234567890123456789012345678),
        ("0.1" + "0" * 40, 1, 1),
        ("1" + "0" * 39, 0, None),
        ("1" + "0" * 37 + "10", 0, None),  # 39 significant digits
        ("9" * 38, 0, 10**38 - 1),
        ("1" + "0" * 38, 0, None),
        # Kraken's own forms
        ("1e-08", 8, 1),
        ("1e-08", 7, None),
        ("0.10000000000", 8, 10000000),
        ("12345e-3", 3, 12345),
        ("1.2345E+1", 4, 123450),
        ("0.566", 4, 5660),
        # negative values and non-numbers
        ("-1", 0, None),
        ("-0.5", 1, None),
        ("", 0, None),
        ("-", 0, None),
        (".1", 1, None),
        ("1.", 0, None),
        ("1e", 0, None),
        ("1e+", 0, None),
        ("+1", 0, None),
        (" 1", 0, None),
        ("1 ", 0, None),
        ("0x10", 0, None),
        ("1_000", 0, None),
        ("NaN", 0, None),
        ("Infinity", 0, None),
        ("\uff11", 0, None),
        ("1.0.0", 0, None),
    ],
)
def test_parse_scaled_edge_case_matches_decimal_oracle(
    text: str, dp: int, expected: int | None
) -> None:
    assert expected_scaled(text, dp) == expected  # the oracle agrees with the hand-written value
    if expected is None:
        with pytest.raises(NumberError):
            parse_scaled(text, dp)
    else:
        assert parse_scaled(text, dp) == expected


# -- engine bugs the properties above found, fixed since: kept as regression tests ------------


def test_parse_scaled_negative_zero_is_zero_and_deletes_level() -> None:
    for text in ("-0", "-0.0", "-0e5", "-0.000E-3"):
        assert parse_scaled(text, 8) == 0, text
    snapshot = (
        b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":'
        b'[{"price":45283.5,"qty":0.1},{"price":45283.4,"qty":0.2}],"asks":[]}]}'
    )
    update = (
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":'
        b'[{"price":45283.4,"qty":-0.0}],"asks":[]}]}'
    )
    feed, model = Feed({"BTC/USD": (1, 8)}, 10), RefFeed({"BTC/USD": (1, 8)})
    for frame in (snapshot, update):
        model.process(frame)
        book = feed.process(frame)
    assert book.bids() == [(452835, 10000000)]
    assert_feeds_agree(feed, model, update)


def test_feed_rejected_snapshot_creates_no_book_and_learns_no_precision() -> None:
    # first level at 6 decimals, second at 7: refused as a whole (NumberError)
    refused = b'[0,{"as":[["0.050050","0.00000500","1"],["0.0500501","0.00000500","1"]],"bs":[]},"book-10","BTC/USD"]'  # noqa: E501
    snapshot = b'[0,{"as":[["0.05005","0.00000500","1"]],"bs":[["0.05000","0.00000500","1"]]},"book-10","BTC/USD"]'  # noqa: E501
    feed, model = Feed(), RefFeed()
    with pytest.raises(NumberError):
        feed.process(refused)
    with pytest.raises(ValueError):
        model.process(refused)
    assert feed.books == {}, "the refused snapshot left a book"
    feed.process(snapshot)
    model.process(snapshot)
    assert_feeds_agree(feed, model, snapshot)  # was: 6 decimals, learned from the refused frame


def test_feed_v1_snapshot_with_other_decimals_relearns_precision() -> None:
    five = b'[0,{"as":[["0.05005","0.00000500","1"]],"bs":[["0.05000","0.00000500","1"]]},"book-10","BTC/USD"]'  # noqa: E501
    six = b'[0,{"as":[["0.050050","0.00000500","1"]],"bs":[["0.050000","0.00000500","1"]]},"book-10","BTC/USD"]'  # noqa: E501
    feed, model = Feed(), RefFeed()
    for frame in (five, six):
        feed.process(frame)
        model.process(frame)
    # "0.050050" -> token 50050, as written (was: the first snapshot's 5 decimals -> 5005)
    assert_feeds_agree(feed, model, six)


def test_feed_unverified_update_crossing_book_keeps_check_invariant() -> None:
    snapshot = (
        b'{"channel":"book","type":"snapshot","data":[{"symbol":"MATIC/USD","bids":'
        b'[{"price":0.5666,"qty":4831.75496356}],"asks":[{"price":0.5668,"qty":4410.79769741}],'
        b'"checksum":2652227746}]}'
    )
    # no "checksum": unverified; its bid 0.657 is above the best ask 0.5668
    update = (
        b'{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":'
        b'[{"price":0.657,"qty":1098.3947558}],"asks":[]}]}'
    )
    feed = Feed({"MATIC/USD": (4, 8)}, 10)
    book = feed.process(snapshot)
    assert book.valid
    with pytest.raises(BookIntegrityError):
        feed.process(update)
    assert book.best_bid() == (6570, 109839475580)  # applied, then invalid until a snapshot
    assert not book.valid
    book._check()  # was: AssertionError "valid book is crossed"


# These frames reach Feed._learn (instrument and subscribe-ack bookkeeping) with odd but valid
# JSON; process() must still raise only KBookError subclasses or return the decoded message.
LEARNED_FRAMES = [
    pytest.param(b'{"channel":"instrument","data":{"pairs":[]}}', id="no pairs"),
    pytest.param(b'{"channel":"instrument","data":{"pairs":[5,"x",null]}}', id="pair not object"),
    pytest.param(
        b'{"channel":"instrument","data":{"pairs":[{"symbol":5,"price_precision":1,'
        b'"qty_precision":8}]}}',
        id="symbol not string",
    ),
    pytest.param(
        b'{"channel":"instrument","data":{"pairs":[{"symbol":"X/Y","price_precision":-1,'
        b'"qty_precision":8}]}}',
        id="negative precision",
    ),
    pytest.param(
        b'{"method":"subscribe","result":{"channel":"book","depth":7,"symbol":"X/Y"},'
        b'"success":true}',
        id="ack unsupported depth",
    ),
    pytest.param(
        b'{"method":"subscribe","result":{"channel":"book","depth":[10],"symbol":"X/Y"},'
        b'"success":true}',
        id="ack depth not number",
    ),
    pytest.param(
        b'{"channel":"instrument","data":{"pairs":5}}',
        id="pairs not array",
    ),
    pytest.param(
        b'{"channel":"instrument","data":{"pairs":[{"symbol":"X/Y","price_precision":1e30,'
        b'"qty_precision":8}]}}',
        id="precision 1e30",
    ),
    pytest.param(
        b'{"channel":"instrument","data":{"pairs":[{"symbol":"X/Y",'
        b'"price_precision":99999999999999999999,"qty_precision":8}]}}',
        id="precision beyond C long",
    ),
]


@pytest.mark.parametrize("frame", LEARNED_FRAMES)
def test_feed_learned_message_with_odd_values_raises_only_kbook_errors(frame: bytes) -> None:
    feed = Feed()
    try:
        result = feed.process(frame)
    except KBookError:
        return
    assert result == json.loads(frame, parse_float=Decimal)
    assert feed.books == {}


def test_parse_scaled_digits_beyond_power_table_rejected_without_crash() -> None:
    # In a child process: the failure mode is a segmentation fault, which would end pytest.
    code = textwrap.dedent(
        """
        from kbook import NumberError, parse_scaled
        for digits in (39, 100, 10**6):
            try:
                value = parse_scaled("1", 0, digits)
            except NumberError:
                print(digits, "claims 1 is out of range")
            except ValueError:
                print(digits, "rejected")
            else:
                print(digits, "returned", value)
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert child.returncode == 0, f"child died with {child.returncode}: {child.stderr[-500:]}"
    assert "claims" not in child.stdout, child.stdout
