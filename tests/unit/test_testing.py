"""kbook.testing: the strategies' examples are what they claim, by the engine and the oracle.

Streams from :func:`book_streams` and :func:`level3_streams` must verify every checksum in a bare
``Feed`` and in the reference model and end with the book they announce; each case the issue
lists is produced by a plan built for it; JSON styles keep the meaning; corruptions are labelled
as the engine itself sees them; the other channels' frames parse as Kraken's do; fault scripts
read, write and reject what they should; and a failing property shrinks to a small stream.

What it is not: the simulator side of fault scripts and the pytest fixtures
(``tests/integration/test_testing_sim.py``).
"""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from kbook import BookIntegrityError, ChecksumMismatch, DecodeError, Feed, KBookError
from kbook.capture import write_capture
from kbook.messages import (
    BalanceSnapshot,
    Candle,
    Execution,
    Instrument,
    LedgerEntry,
    SystemStatus,
    Ticker,
    Trade,
    parse_message,
)
from kbook.reference import RefFeed
from kbook.testing import (
    BTC_USD,
    CORRUPTION_KINDS,
    PRESET_PAIRS,
    SHIB_USD,
    Corruption,
    FaultScript,
    FrameStream,
    JsonStyle,
    Op,
    Pair,
    Seeded,
    Snapshot,
    Update,
    balances,
    book_streams,
    corruptions,
    executions,
    json_styles,
    level3_streams,
    pairs,
    public_messages,
    read_capture,
    render_book_stream,
    replay,
)

CHEAP = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


def engine_book(feed: Feed, stream: FrameStream) -> object:
    if stream.channel == "level3":
        return feed.level3_book(stream.symbol)
    if stream.protocol == "v1":
        return feed.book(stream.symbol, stream.depth)
    return feed.book(stream.symbol)


def assert_engine_ends_with_stream_book(stream: FrameStream) -> Feed:
    feed = Feed()
    for frame in stream:
        feed.process(frame)
    assert feed.checksums_verified == stream.checksums
    assert feed.checksum_mismatches == 0
    book = engine_book(feed, stream)
    assert book is not None
    bids, asks = book.bids(stream.depth), book.asks(stream.depth)  # type: ignore[attr-defined]
    if stream.channel == "level3":  # (price, total, orders): the stream knows the totals
        bids, asks = [lv[:2] for lv in bids], [lv[:2] for lv in asks]
    assert (bids, asks) == (list(stream.bids), list(stream.asks))
    return feed


# -- book streams ----------------------------------------------------------------------------


@CHEAP
@given(book_streams(protocol=None))
def test_book_streams_example_verifies_every_checksum_in_bare_feed(stream: FrameStream) -> None:
    assert_engine_ends_with_stream_book(stream)
    model = RefFeed()
    for frame in stream:
        model.process(frame)
    assert model.mismatches == 0
    assert model.verified == stream.checksums


@CHEAP
@given(book_streams(protocol="v2"))
def test_book_streams_v2_example_is_self_describing_preamble_first(stream: FrameStream) -> None:
    first, ack = json.loads(stream[0]), json.loads(stream[1])
    assert first["channel"] == "instrument"
    [pair] = first["data"]["pairs"]
    assert (pair["price_precision"], pair["qty_precision"]) == (
        stream.pair.price_precision,
        stream.pair.qty_precision,
    )
    assert ack["result"] == {
        "channel": "book",
        "depth": stream.depth,
        "snapshot": True,
        "symbol": stream.pair.symbol,
    }


def test_book_stream_full_side_evicts_worst_level_and_reenters_it() -> None:
    plan = [
        Snapshot("full"),
        Update((Op("top", "bid", pick=0, lots=5),)),
        Update((Op("delete", "bid", pick=0),)),
        Update((Op("reenter", "bid", pick=0),)),
    ]
    stream = render_book_stream(BTC_USD, plan, depth=10)
    snapshot_bids = [level["price"] for level in json.loads(stream[2])["data"][0]["bids"]]
    evicted = snapshot_bids[-1]
    after_top = json.loads(stream[3])["data"][0]["bids"]
    assert len(after_top) == 1 and after_top[0]["price"] > snapshot_bids[0]
    reentered = json.loads(stream[5])["data"][0]["bids"]
    assert [level["price"] for level in reentered] == [evicted]
    assert_engine_ends_with_stream_book(stream)


def test_book_stream_absent_delete_and_repeated_price_reach_the_engine() -> None:
    plan = [
        Snapshot("full"),
        Update(
            (
                Op("absent", "ask", pick=4),
                Op("insert", "bid", pick=3, lots=7),
                Op("repeat", "bid", pick=1, lots=9),
            )
        ),
    ]
    stream = render_book_stream(BTC_USD, plan, depth=10)
    entries = json.loads(stream[3], parse_float=Decimal)["data"][0]
    assert [level["qty"] for level in entries["asks"]] == [0]
    prices = [level["price"] for level in entries["bids"]]
    assert len(prices) == 2 and prices[0] == prices[1]
    feed = assert_engine_ends_with_stream_book(stream)
    book = feed.book("BTC/USD")
    assert book is not None and book.absent_deletes == 1


@pytest.mark.parametrize("protocol", ["v2", "v1"])
def test_book_stream_snapshot_shapes_thin_empty_one_sided_and_over_full(protocol: str) -> None:
    plan = [
        Snapshot("over", seed=3),
        Snapshot("empty"),
        Snapshot("one_side", seed=1),
        Snapshot("thin", seed=2),
        Update((Op("insert", "ask"),)),
    ]
    stream = render_book_stream(
        BTC_USD,
        plan,
        protocol=protocol,  # type: ignore[arg-type]
        depth=10,
    )
    sizes = []
    for frame in stream.book_frames()[:4]:
        decoded = json.loads(frame)
        if protocol == "v2":
            entry = decoded["data"][0]
            sizes.append((len(entry["bids"]), len(entry["asks"])))
        else:
            sizes.append((len(decoded[1]["bs"]), len(decoded[1]["as"])))
    assert max(sizes[0]) > 10  # over-full: the client truncates to the depth
    assert sizes[1] == (0, 0) if protocol == "v2" else sum(sizes[1]) == 1  # v1 teaches decimals
    assert 0 in sizes[2] and sum(sizes[2]) > 0
    assert_engine_ends_with_stream_book(stream)


def test_book_stream_shib_quantities_exceed_int64_lots() -> None:
    stream = render_book_stream(SHIB_USD, [Snapshot(), Seeded(2, 300)], depth=25)
    lots = [
        q
        for frame in stream.book_frames()
        for side in ("bids", "asks")
        for q in (lv["qty"] for lv in json.loads(frame, parse_float=Decimal)["data"][0][side])
    ]
    assert max(lots) * 10**SHIB_USD.qty_precision > 2**63
    assert_engine_ends_with_stream_book(stream)


def test_book_stream_extreme_pair_prices_near_int64_top_verify() -> None:
    pair = Pair("\U0001d539/USD", 12, 18, 10**18 - 3, 10**33)
    for protocol in ("v2", "v1"):
        stream = render_book_stream(pair, [Snapshot(), Seeded(5, 200)], protocol=protocol, depth=25)  # type: ignore[arg-type]
        assert_engine_ends_with_stream_book(stream)


def test_book_streams_failing_property_shrinks_to_one_snapshot_and_one_level() -> None:
    # "some update inserts a level": the smallest such stream has one update of one entry
    def has_update(stream: FrameStream) -> bool:
        return any(b'"type":"update"' in frame and b'"price"' in frame for frame in stream)

    found = find(
        book_streams(pair=BTC_USD, depth=10, max_messages=8),
        has_update,
        settings=settings(database=None, phases=[Phase.generate, Phase.shrink]),
    )
    assert len(found) == 4  # instrument, ack, snapshot, the update
    update = json.loads(found[3])["data"][0]
    assert len(update["bids"]) + len(update["asks"]) == 1
    assert "4 frames" in repr(found)


def test_book_streams_message_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="min_messages"):
        book_streams(min_messages=5, max_messages=4)
    with pytest.raises(ValueError, match="protocol"):
        render_book_stream(BTC_USD, [], protocol="v3")  # type: ignore[arg-type]


@CHEAP
@given(pairs())
def test_pairs_example_has_decimals_and_sizes_in_engine_range(pair: Pair) -> None:
    assert 0 <= pair.price_precision <= 12 and 0 <= pair.qty_precision <= 18
    assert 1 < pair.mid < 10**18
    assert 1 <= pair.max_lots < 10**38
    assert pair.qty_text(pair.max_lots).replace(".", "").lstrip("0") == str(pair.max_lots)


def test_preset_pairs_have_the_simulator_decimals() -> None:
    from kbook.sim import PRESETS

    for pair in PRESET_PAIRS:
        spec = PRESETS[pair.symbol]
        assert (pair.price_precision, pair.qty_precision) == (
            spec.price_precision,
            spec.qty_precision,
        )
        assert pair.v1_name == spec.v1_name


# -- level3 ----------------------------------------------------------------------------------


@CHEAP
@given(level3_streams(max_messages=12))
def test_level3_streams_example_verifies_every_checksum_in_bare_feed(stream: FrameStream) -> None:
    feed = assert_engine_ends_with_stream_book(stream)
    book = feed.level3_book(stream.symbol)
    assert book is not None and book.valid
    book._check()


# -- JSON styles -----------------------------------------------------------------------------


@CHEAP
@given(book_streams(protocol=None, max_messages=8), json_styles())
def test_json_style_keeps_every_checksum_and_the_final_book(
    stream: FrameStream, style: JsonStyle
) -> None:
    styled = style.apply(stream)
    assert len(styled) == len(stream)
    assert_engine_ends_with_stream_book(styled)


def test_json_style_zero_is_kraken_compact_layout() -> None:
    stream = render_book_stream(BTC_USD, [Snapshot(), Update((Op("change", "ask"),))])
    assert JsonStyle(0).apply(stream).frames == stream.frames
    # book frames come back byte for byte; the instrument's 1e-08 is respelled 0.00000001
    assert all(JsonStyle(0)(frame) == frame for frame in stream.book_frames())


def test_json_style_writes_exponents_and_escapes_somewhere() -> None:
    stream = render_book_stream(BTC_USD, [Snapshot(), Seeded(1, 30)])
    styled = b"".join(JsonStyle(12345).apply(stream).frames)
    assert styled != b"".join(stream.frames)
    seen = {marker for marker in (b"e-", b"E", b"\\u", b'"0.', b"  ") if marker in styled}
    assert len(seen) >= 2, seen


# -- corruptions -----------------------------------------------------------------------------


def engine_notices(frames: tuple[bytes, ...], stream: FrameStream) -> bool:
    """Whether the engine raises, or leaves a book invalid, somewhere in the frames."""
    feed = Feed()
    for frame in frames:
        try:
            feed.process(frame)
        except (ChecksumMismatch, DecodeError, BookIntegrityError):
            return True
        except KBookError:
            return True
        if any(not book.valid for book in feed.books.values() if book.snapshots):
            return True
    return False


@CHEAP
@given(book_streams(protocol=None, max_messages=10, style=json_styles()), corruptions())
def test_corruption_must_detect_label_agrees_with_engine(
    stream: FrameStream, corruption: Corruption
) -> None:
    damaged = corruption.apply(stream)
    assert damaged.must_detect == engine_notices(damaged.frames, stream), damaged
    assert damaged.must_detect == (damaged.detected_at is not None)


def test_corruption_kinds_change_the_frames_as_named() -> None:
    stream = render_book_stream(BTC_USD, [Snapshot(), Seeded(4, 6)])
    n = len(stream)
    assert len(Corruption("drop", 0.5).apply(stream)) == n - 1
    assert len(Corruption("duplicate", 0.5).apply(stream)) == n + 1
    assert len(Corruption("garbage", 0.5).apply(stream)) == n + 1
    reordered = Corruption("reorder", 0.5).apply(stream)
    assert sorted(reordered.frames) == sorted(stream.frames) != list(reordered.frames)
    cut = Corruption("truncate", 0.5, 7).apply(stream)
    assert cut.must_detect and len(cut[cut.position]) == 8
    flipped = Corruption("checksum", 0.5).apply(stream)
    assert flipped.must_detect
    assert sum(a != b for a, b in zip(flipped.frames, stream.frames, strict=True)) == 1


def test_corruption_digit_beyond_checksummed_levels_is_invisible_but_changes_book() -> None:
    # level 12 of a depth-25 snapshot: outside the ten levels a checksum covers
    stream = render_book_stream(BTC_USD, [Snapshot("full", seed=1)], depth=25)
    spans = 12 * 2 * 9  # pick a digit of the 12th bid's price (detail indexes digits)
    damaged = next(
        d
        for d in (Corruption("digit", 0.0, spans + k).apply(stream) for k in range(40))
        if not d.must_detect
    )
    assert damaged.changes_book
    assert not engine_notices(damaged.frames, stream)


def test_corruptions_kinds_are_checked() -> None:
    with pytest.raises(ValueError, match="kinds"):
        corruptions(["bitrot"])
    assert set(CORRUPTION_KINDS) >= {"digit", "checksum", "drop", "truncate"}


# -- other channels --------------------------------------------------------------------------

EXPECTED_TYPES = {
    "ticker": Ticker,
    "trade": Trade,
    "ohlc": Candle,
    "status": SystemStatus,
    "instrument": Instrument,
}


@CHEAP
@given(st.data())
def test_public_messages_parse_as_their_channel(data: st.DataObject) -> None:
    channel = data.draw(st.sampled_from(sorted(EXPECTED_TYPES)))
    frame = data.draw(public_messages(channel))
    messages = parse_message(json.loads(frame, parse_float=Decimal))
    assert messages and all(isinstance(m, EXPECTED_TYPES[channel]) for m in messages)
    assert Feed().process(frame) == json.loads(frame, parse_float=Decimal)


@CHEAP
@given(executions())
def test_executions_parse_as_execution_reports(frame: bytes) -> None:
    [execution] = parse_message(json.loads(frame, parse_float=Decimal))
    assert isinstance(execution, Execution)
    assert execution.cum_qty <= execution.order_qty


@CHEAP
@given(balances())
def test_balances_parse_as_snapshot_or_ledger_entry(frame: bytes) -> None:
    messages = parse_message(json.loads(frame, parse_float=Decimal))
    assert messages and all(isinstance(m, (BalanceSnapshot, LedgerEntry)) for m in messages)


def test_public_messages_unknown_channel_rejected() -> None:
    with pytest.raises(ValueError, match="channel"):
        public_messages("book")


# -- fault scripts ---------------------------------------------------------------------------


def test_fault_script_json_and_toml_read_the_same_steps(tmp_path: Path) -> None:
    toml = tmp_path / "faults.toml"
    toml.write_text(
        '[[faults]]\nat_message = 500\nfault = "corrupt_checksum"\n'
        'symbol = "BTC/USD"\n\n[[faults]]\nat_seconds = 2.0\nfault = "drop"\n\n'
        '[[faults]]\nat_seconds = 2.0\nfault = "refuse_upgrades"\ncount = 3\n'
    )
    script = FaultScript.load(toml)
    expected = (
        FaultScript()
        .at_message(500, "corrupt_checksum", symbol="BTC/USD")
        .at(2, "drop")
        .at(2, "refuse_upgrades", count=3)
    )
    assert script == expected
    as_json = tmp_path / "faults.json"
    as_json.write_text(script.to_json())
    assert FaultScript.load(as_json) == script


@pytest.mark.parametrize(
    "document, error",
    [
        ({"faults": [{"fault": "explode", "at_seconds": 1}]}, "unknown fault"),
        ({"faults": [{"fault": "drop"}]}, "exactly one"),
        ({"faults": [{"fault": "drop", "at_seconds": 1, "at_message": 2}]}, "exactly one"),
        ({"faults": [{"fault": "drop", "at_message": 0}]}, "at_message"),
        ({"faults": [{"fault": "drop", "at_seconds": 1, "symbol": "X"}]}, "no argument symbol"),
        ({"faults": [], "extra": 1}, "nothing else"),
        ({"faults": ["drop"]}, "'fault' name"),
    ],
)
def test_fault_script_malformed_document_rejected(document: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        FaultScript.from_dict(document)


# -- captures --------------------------------------------------------------------------------


def test_read_capture_gzip_and_receive_times_give_the_frames(tmp_path: Path) -> None:
    stream = render_book_stream(BTC_USD, [Snapshot(), Seeded(9, 20)])
    path = tmp_path / "s.capture"
    write_capture(str(path), list(stream.frames))
    gz = tmp_path / "s.capture.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_capture(path) == read_capture(gz) == list(stream.frames)
    assert replay(gz).checksums_verified == stream.checksums


def test_replay_damaged_capture_raises_at_the_mismatch() -> None:
    stream = render_book_stream(BTC_USD, [Snapshot(), Seeded(9, 5)])
    damaged = Corruption("checksum", 1.0).apply(stream)
    with pytest.raises(ChecksumMismatch):
        replay(damaged)


def test_kbook_testing_every_public_name_resolves_lazily() -> None:
    import subprocess
    import sys

    import kbook.testing as testing

    assert all(getattr(testing, name) is not None for name in testing.__all__)
    # the package itself (what the pytest plugin's import pulls in) stays free of Hypothesis
    code = "import sys, kbook.testing, kbook.testing.plugin; print('hypothesis' in sys.modules)"
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert ran.stdout.strip() == "False"
