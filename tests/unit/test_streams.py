"""Unit tests of the synthetic book streams, checked frame by frame against the reference model."""

from __future__ import annotations

import doctest
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import kbook.streams
from kbook.reference import RefBook, RefFeed, RefResult
from kbook.streams import BookStream, write_capture

# float-repr style without exponent: digits, '.', then either a lone 0 or digits ending in non-zero.
V2_NUMBER = re.compile(r"^(0|[1-9]\d*)\.(0|\d*[1-9])$")


def feed_for(stream: BookStream) -> RefFeed:
    """Return a fresh RefFeed that learned precision and depth from the stream's own frames."""
    feed = RefFeed(default_depth=1)
    if stream.protocol == "v2":
        assert feed.process(stream.instrument_frame()) == RefResult("other", None, None)
    assert feed.process(stream.ack_frame()).kind == "other"
    return feed


def book_key(stream: BookStream) -> tuple[str, str]:
    if stream.protocol == "v2":
        return ("v2", stream.symbol)
    return ("v1", f"{stream.channel_name}:{stream.wire_symbol}")


def entries(frame: bytes) -> list[tuple[str, str, str]]:
    """Return ``(side, price text, qty text)`` of a book frame, bids before asks, in wire order."""
    msg = json.loads(frame, parse_float=str, parse_int=str)
    if isinstance(msg, dict):
        element = msg["data"][0]
        return [("bid", lv["price"], lv["qty"]) for lv in element["bids"]] + [
            ("ask", lv["price"], lv["qty"]) for lv in element["asks"]
        ]
    out: list[tuple[str, str, str]] = []
    for payload in msg[1:-2]:
        for key, side in (("bs", "bid"), ("b", "bid"), ("as", "ask"), ("a", "ask")):
            out += [(side, e[0], e[1]) for e in payload.get(key, [])]
    return out


@pytest.mark.parametrize("protocol", ["v1", "v2"])
@pytest.mark.parametrize("depth", [10, 100, 1000])
def test_bookstream_every_frame_verifies_through_fresh_reffeed(protocol: str, depth: int) -> None:
    stream = BookStream(protocol=protocol, depth=depth, seed=depth)
    feed = feed_for(stream)
    results = [feed.process(frame) for frame in stream.frames(300)]
    book = feed.books[book_key(stream)]
    checked = 300 if protocol == "v2" else 299  # v1 snapshots carry no checksum
    assert all(r.kind == "book" and r.symbol == stream.wire_symbol for r in results)
    assert (feed.verified, feed.mismatches) == (checked, 0)
    assert (book.depth, book.price_precision, book.qty_precision) == (depth, 1, 8)
    assert dict(book.bids) == dict(stream.book.bids)
    assert dict(book.asks) == dict(stream.book.asks)


@pytest.mark.parametrize(
    ("price_precision", "qty_precision", "mid_ticks"),
    [(4, 8, 5_666), (0, 0, 200), (2, 3, 1_234_567), (5, 8, 5_005)],
)
@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_bookstream_other_precisions_verify_without_mismatch(
    protocol: str, price_precision: int, qty_precision: int, mid_ticks: int
) -> None:
    stream = BookStream(
        "MATIC/USD",
        protocol=protocol,
        depth=25,
        price_precision=price_precision,
        qty_precision=qty_precision,
        mid_ticks=mid_ticks,
        seed=11,
    )
    feed = feed_for(stream)
    for frame in stream.frames(200):
        feed.process(frame)
    assert feed.mismatches == 0
    assert feed.verified == (200 if protocol == "v2" else 199)


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_bookstream_same_seed_gives_identical_frames(protocol: str) -> None:
    first = BookStream(protocol=protocol, seed=42).frames(200)
    second = BookStream(protocol=protocol, seed=42).frames(200)
    other = BookStream(protocol=protocol, seed=43).frames(200)
    assert first == second
    assert first != other


def test_bookstream_ack_and_instrument_frames_leave_stream_unchanged() -> None:
    plain = BookStream(seed=5).frames(50)
    chatty = BookStream(seed=5)
    chatty.ack_frame()
    chatty.instrument_frame()
    mixed = [chatty.snapshot()]
    for _ in range(49):
        chatty.ack_frame()
        mixed.append(chatty.update())
    assert mixed == plain


@pytest.mark.parametrize("max_changes", [1, 2, 4, 9])
@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_bookstream_update_holds_one_to_max_changes_entries(
    protocol: str, max_changes: int
) -> None:
    stream = BookStream(protocol=protocol, max_changes=max_changes, seed=max_changes)
    stream.snapshot()
    counts = {len(entries(stream.update())) for _ in range(400)}
    assert min(counts) >= 1
    assert max(counts) <= max_changes
    assert max(counts) == max_changes  # the whole range is used, not just single changes


@pytest.mark.parametrize("max_changes", [1, 4])
@pytest.mark.parametrize("depth", [1, 10, 100])
def test_bookstream_book_never_crossed_and_stays_full(depth: int, max_changes: int) -> None:
    stream = BookStream(depth=depth, max_changes=max_changes, seed=depth)
    stream.snapshot()
    fullest = {len(stream.book.bids), len(stream.book.asks)}
    lengths = set()
    for _ in range(500):
        stream.update()
        assert not stream.book.is_crossed()
        lengths |= {len(stream.book.bids), len(stream.book.asks)}
    stream.book._check()
    assert fullest == {depth}
    assert min(lengths) >= depth - 1 and max(lengths) == depth


def test_bookstream_content_mix_covers_every_kind_of_change() -> None:
    stream = BookStream(depth=10, seed=3)
    before = RefBook("BTC/USD", 10, 1, 8)
    stream.snapshot()
    before.apply_message(stream.book.top_bids(10), stream.book.top_asks(10), snapshot=True)
    seen: dict[str, int] = dict.fromkeys(
        ["change", "insert", "inside", "delete", "absent", "repeat", "push_out"], 0
    )
    for _ in range(1500):
        frame_entries = entries(stream.update())
        prices = [(side, Decimal(p)) for side, p, _ in frame_entries]
        seen["repeat"] += len(prices) != len(set(prices))
        best_bid, best_ask = before.bids.keys()[-1], before.asks.keys()[0]
        for side, price_text, qty_text in frame_entries:
            price, qty = Decimal(price_text), Decimal(qty_text)
            levels = before.bids if side == "bid" else before.asks
            if qty == 0:
                seen["delete" if price in levels else "absent"] += 1
            elif price in levels:
                seen["change"] += 1
            else:
                seen["insert"] += 1
                seen["inside"] += best_bid < price < best_ask
        kept = set(stream.book.bids) | set(stream.book.asks)
        removed = {p for _, p in prices}
        seen["push_out"] += any(
            p not in kept and p not in removed for p in set(before.bids) | set(before.asks)
        )
        before.apply_message(stream.book.top_bids(10), stream.book.top_asks(10), snapshot=True)
    assert all(count > 0 for count in seen.values()), seen
    assert seen["change"] > seen["insert"] and seen["change"] > seen["delete"]  # changes dominate


def test_bookstream_v2_numbers_have_no_trailing_zeros() -> None:
    stream = BookStream(seed=8)
    texts = [t for frame in stream.frames(300) for _, p, q in entries(frame) for t in (p, q)]
    bad = [t for t in texts if not V2_NUMBER.match(t)]
    assert not bad
    assert any(t.endswith(".0") for t in texts)  # integral values keep one decimal digit
    assert any(len(t.split(".")[1]) < 8 for t in texts[1::2])  # quantities lose trailing zeros


def test_bookstream_v2_frames_follow_kraken_wire_shape() -> None:
    stream = BookStream(seed=9)
    frames = stream.frames(50)
    messages = [json.loads(f, parse_float=Decimal) for f in frames]
    stamps = [m["data"][0]["timestamp"] for m in messages]
    assert all(b" " not in f and b"\n" not in f for f in frames)
    assert [m["type"] for m in messages] == ["snapshot"] + ["update"] * 49
    assert all(
        list(m["data"][0]) == ["symbol", "bids", "asks", "checksum", "timestamp"] for m in messages
    )
    assert stamps == sorted(stamps) and len(set(stamps)) == 50
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", s) for s in stamps)


def test_bookstream_v1_frames_follow_kraken_wire_shape() -> None:
    stream = BookStream(protocol="v1", seed=10, price_precision=1, qty_precision=8)
    frames = stream.frames(300)
    messages = [json.loads(f) for f in frames]
    assert all(m[0] == 336 and m[-2:] == ["book-10", "XBT/USD"] for m in messages)
    assert set(messages[0][1]) == {"as", "bs"} and len(messages[0]) == 4
    for msg in messages[1:]:
        payloads = msg[1:-2]
        assert [set(p) - {"c"} for p in payloads] in ([{"a"}], [{"b"}], [{"a"}, {"b"}])
        assert "c" in payloads[-1] and all("c" not in p for p in payloads[:-1])
        assert int(payloads[-1]["c"]) < 2**32
    levels = [
        e for m in messages for p in m[1:-2] for k in ("as", "bs", "a", "b") for e in p.get(k, [])
    ]
    assert all(re.fullmatch(r"\d+\.\d", e[0]) and re.fullmatch(r"\d+\.\d{8}", e[1]) for e in levels)
    assert all(re.fullmatch(r"\d{10}\.\d{6}", e[2]) for e in levels)
    assert any(e[3:] == ["r"] for e in levels)  # republished levels carry the flag
    assert any(len(m) == 5 for m in messages)  # both sides changed: two payload objects


def test_bookstream_v1_uses_xbt_name_and_v2_keeps_btc() -> None:
    v1, v2 = BookStream(protocol="v1"), BookStream(protocol="v2")
    ack: dict[str, Any] = json.loads(v1.ack_frame())
    assert (v1.wire_symbol, v2.wire_symbol) == ("XBT/USD", "BTC/USD")
    assert ack["pair"] == "XBT/USD" and ack["channelName"] == "book-10"
    assert json.loads(v2.ack_frame())["result"] == {
        "channel": "book",
        "depth": 10,
        "snapshot": True,
        "symbol": "BTC/USD",
    }


def test_bookstream_instrument_frame_announces_precisions() -> None:
    frame = BookStream("MATIC/GBP", price_precision=4, qty_precision=8).instrument_frame()
    assert b'"price_increment":0.0001' in frame and b'"qty_increment":1e-08' in frame
    (pair,) = json.loads(frame)["data"]["pairs"]
    assert (pair["symbol"], pair["base"], pair["quote"]) == ("MATIC/GBP", "MATIC", "GBP")
    assert (pair["price_precision"], pair["qty_precision"]) == (4, 8)


def test_bookstream_instrument_frame_on_v1_raises() -> None:
    with pytest.raises(ValueError, match="only in v2"):
        BookStream(protocol="v1").instrument_frame()


def test_bookstream_update_before_snapshot_raises() -> None:
    with pytest.raises(RuntimeError, match="snapshot"):
        BookStream().update()


def test_bookstream_later_snapshot_republishes_current_book() -> None:
    stream = BookStream(seed=12, depth=25)
    stream.frames(100)
    feed = feed_for(stream)
    assert feed.process(stream.snapshot()).checksum_ok is True
    assert dict(feed.books[("v2", "BTC/USD")].bids) == dict(stream.book.bids)
    assert feed.process(stream.update()).checksum_ok is True


@pytest.mark.parametrize(
    "kwargs",
    [
        {"protocol": "v3"},
        {"depth": 0},
        {"max_changes": 0},
        {"spread_ticks": 0},
        {"price_precision": -1},
        {"mid_ticks": 0},
    ],
)
def test_bookstream_invalid_arguments_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BookStream(**kwargs)


def test_bookstream_frames_zero_raises() -> None:
    with pytest.raises(ValueError, match="n must be >= 1"):
        BookStream().frames(0)


def test_write_capture_writes_one_timestamped_frame_per_line(tmp_path: Path) -> None:
    frames = BookStream(seed=4).frames(3)
    path = tmp_path / "capture.txt"
    write_capture(str(path), frames, t0=1_700_000_000.0, dt=0.25)
    lines = path.read_text().splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        "1700000000.000000",
        "1700000000.250000",
        "1700000000.500000",
    ]
    assert [line.split(": ", 1)[1].encode() for line in lines] == frames


def test_write_capture_frame_with_newline_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="newline"):
        write_capture(str(tmp_path / "bad.txt"), [b'{"a":\n1}'])


def test_streams_doctests_pass() -> None:
    outcome = doctest.testmod(kbook.streams)
    assert outcome.attempted > 0
    assert outcome.failed == 0
