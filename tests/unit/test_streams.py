"""Unit tests of the synthetic book streams, checked frame by frame against the reference model.

``BookStream`` (L2, v1 and v2) first, then ``Level3Stream``: every level3 frame must verify
through a fresh ``RefFeed`` and the engine, the client's book must equal the generator's window
order for order, and republished levels must look exactly as Kraken publishes them.
"""

from __future__ import annotations

import doctest
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import kbook.sim.streams
from kbook import Feed
from kbook.capture import write_capture
from kbook.reference import RefBook, RefFeed, RefL3Book, RefResult
from kbook.sim.streams import BookStream, Level3Stream

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
    outcome = doctest.testmod(kbook.sim.streams)
    assert outcome.attempted > 0
    assert outcome.failed == 0


# -- Level3Stream ----------------------------------------------------------------------------------

KRAKEN_ID = re.compile(r"O[A-Z2-7]{5}-[A-Z2-7]{5}-[A-Z2-7]{6}")
L3_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")


def l3_feed_for(stream: Level3Stream) -> RefFeed:
    """A fresh RefFeed that learned precision and depth from the stream's own frames."""
    feed = RefFeed()
    assert feed.process(stream.instrument_frame()) == RefResult("other", None, None)
    assert feed.process(stream.ack_frame()) == RefResult("other", None, None)
    return feed


def l3_orders(frame: bytes) -> list[tuple[str, dict[str, str]]]:
    """``(side, order)`` of a level3 frame with numbers as text, bids first, in wire order."""
    element = json.loads(frame, parse_float=str, parse_int=str)["data"][0]
    return [("bid", o) for o in element["bids"]] + [("ask", o) for o in element["asks"]]


def queues(book: RefL3Book, side: str) -> list[tuple[Decimal, list[str]]]:
    return [(price, [oid for oid, _ in queue]) for price, queue in book.levels(side, 10**6)]


@pytest.mark.parametrize(("depth", "count"), [(10, 600), (100, 400), (1000, 120)])
def test_level3stream_every_frame_verifies_through_reffeed_and_engine(
    depth: int, count: int
) -> None:
    stream = Level3Stream(depth=depth, seed=depth)
    model = l3_feed_for(stream)
    engine = Feed()
    engine.process(stream.instrument_frame())
    engine.process(stream.ack_frame())
    for frame in stream.frames(count):
        assert model.process(frame) == RefResult("book", "BTC/USD", True)
        engine.process(frame)
    assert (model.verified, model.mismatches) == (count, 0)
    assert (engine.checksums_verified, engine.checksum_mismatches) == (count, 0)
    book = model.l3books["BTC/USD"]
    assert (book.depth, book.price_precision, book.qty_precision) == (depth, 1, 8)
    for side in ("bid", "ask"):
        # the client's book is exactly the exchange's window: levels and queues
        window = [
            (Decimal(p).scaleb(-1), [oid for oid, _ in q]) for p, q in stream.window_levels(side)
        ]
        assert queues(book, side) == window == queues(stream.book, side)
    engine_book = engine.level3_book("BTC/USD")
    assert engine_book is not None and engine_book.order_count == len(book.orders)


def test_level3stream_same_seed_gives_identical_frames() -> None:
    first = Level3Stream(seed=42).frames(200)
    assert first == Level3Stream(seed=42).frames(200)
    assert first != Level3Stream(seed=43).frames(200)


def test_level3stream_ack_and_instrument_frames_leave_stream_unchanged() -> None:
    plain = Level3Stream(seed=5).frames(50)
    chatty = Level3Stream(seed=5)
    chatty.instrument_frame()
    mixed = [chatty.snapshot()]
    for _ in range(49):
        chatty.ack_frame()
        mixed.append(chatty.update())
    assert mixed == plain


def test_level3stream_ack_carries_depth_and_instrument_precisions() -> None:
    stream = Level3Stream("MATIC/GBP", depth=100, price_precision=4, qty_precision=8)
    ack = json.loads(stream.ack_frame())
    assert ack["method"] == "subscribe" and ack["success"] is True
    assert ack["result"] == {
        "channel": "level3",
        "depth": 100,
        "snapshot": True,
        "symbol": "MATIC/GBP",
    }
    (pair,) = json.loads(stream.instrument_frame())["data"]["pairs"]
    assert (pair["symbol"], pair["price_precision"], pair["qty_precision"]) == ("MATIC/GBP", 4, 8)


def test_level3stream_content_mix_covers_every_kind_of_event() -> None:
    stream = Level3Stream(depth=10, seed=3)
    stream.frames(2000)
    kinds = [
        "add_touch",
        "add_away",
        "add_inside",
        "add_new_level",
        "modify_head",
        "modify_middle",
        "modify_tail",
        "reprice",
        "delete_head",
        "delete_middle",
        "delete_tail",
        "delete_unknown",
        "sweep",
        "level_emptied",
        "pushed_out_level",
        "republished_level",
        "republished_order",
    ]
    assert all(stream.stats[k] > 0 for k in kinds), stream.stats
    # partial fills and cancels at the touch dominate, as on a live order-by-order feed
    assert stream.stats["modify_head"] > stream.stats["modify_middle"] + stream.stats["reprice"]


def test_level3stream_updates_hold_several_events_and_640_bytes_on_average() -> None:
    stream = Level3Stream(depth=1000, seed=4)
    frames = stream.frames(2001)[1:]
    events = [len(l3_orders(f)) for f in frames]
    assert min(events) >= 1
    assert 3.5 <= sum(events) / len(events) <= 5.5
    assert 500 <= sum(map(len, frames)) / len(frames) <= 700


def test_level3stream_republished_level_carries_original_timestamps_in_queue_order() -> None:
    stream = Level3Stream(depth=10, seed=6)
    model = l3_feed_for(stream)
    model.process(stream.snapshot())
    republished = 0
    for _ in range(800):
        frame = stream.update()
        before = {
            side: {p for p, _ in queues(model.l3books["BTC/USD"], side)} for side in ("bid", "ask")
        }
        model.process(frame)
        orders = l3_orders(frame)
        now = max(o["timestamp"] for _, o in orders)  # the message's own events carry it
        old_adds = [(s, o) for s, o in orders if o["event"] == "add" and o["timestamp"] < now]
        for side in ("bid", "ask"):
            entering: dict[Decimal, list[str]] = {}
            for s, o in old_adds:
                if s == side:
                    entering.setdefault(Decimal(o["limit_price"]), []).append(o["order_id"])
            after = dict(queues(model.l3books["BTC/USD"], side))
            for price, ids in entering.items():
                assert price not in before[side]  # a level the client did not hold
                assert after[price] == ids  # all of it, in queue order, nothing else
                republished += 1
            # republished adds come last on their side, after the message's own events
            side_orders = [o for s, o in orders if s == side]
            tail = side_orders[len(side_orders) - sum(map(len, entering.values())) :]
            assert all(o["timestamp"] < now for o in tail)
    assert republished > 50


def test_level3stream_book_never_crossed_and_window_stays_full() -> None:
    stream = Level3Stream(depth=10, seed=7)
    stream.snapshot()
    for _ in range(1000):
        stream.update()
        assert not stream.book.is_crossed()
        assert (len(stream.book.bids), len(stream.book.asks)) == (10, 10)
    stream.book._check()


def test_level3stream_thin_book_stays_below_depth_and_never_crossed() -> None:
    stream = Level3Stream(depth=100, levels=5, seed=8)
    stream.snapshot()
    sizes = set()
    for _ in range(1000):
        stream.update()
        assert not stream.book.is_crossed()
        sizes |= {len(stream.book.bids), len(stream.book.asks)}
    assert max(sizes) < 100 and min(sizes) >= 1
    assert stream.stats["deep_add"] > 0 and stream.stats["republished_level"] == 0


def test_level3stream_frames_follow_kraken_wire_shape() -> None:
    stream = Level3Stream(seed=9)
    frames = stream.frames(300)
    messages = [json.loads(f, parse_float=Decimal) for f in frames]
    assert all(b" " not in f and b"\n" not in f for f in frames)
    assert [m["type"] for m in messages] == ["snapshot"] + ["update"] * 299
    assert all(m["channel"] == "level3" and len(m["data"]) == 1 for m in messages)
    assert all(list(m["data"][0]) == ["symbol", "checksum", "bids", "asks"] for m in messages)
    snapshot_orders = [o for _, o in l3_orders(frames[0])]
    assert all(
        list(o) == ["order_id", "limit_price", "order_qty", "timestamp"] for o in snapshot_orders
    )
    update_orders = [o for f in frames[1:] for _, o in l3_orders(f)]
    assert all(
        list(o) == ["event", "order_id", "limit_price", "order_qty", "timestamp"]
        for o in update_orders
    )
    assert {o["event"] for o in update_orders} == {"add", "modify", "delete"}
    everything = snapshot_orders + update_orders
    assert all(KRAKEN_ID.fullmatch(o["order_id"]) for o in everything)
    assert all(L3_STAMP.fullmatch(o["timestamp"]) for o in everything)
    texts = [o[k] for o in everything for k in ("limit_price", "order_qty")]
    assert all(V2_NUMBER.match(t) for t in texts)
    assert any(len(t.split(".")[1]) < 8 for t in texts[1::2])  # quantities lose trailing zeros


def test_level3stream_later_snapshot_republishes_current_window() -> None:
    stream = Level3Stream(seed=12, depth=100)
    stream.frames(100)
    model = l3_feed_for(stream)
    assert model.process(stream.snapshot()).checksum_ok is True
    assert queues(model.l3books["BTC/USD"], "bid") == queues(stream.book, "bid")
    assert model.process(stream.update()).checksum_ok is True


@pytest.mark.parametrize(
    ("price_precision", "qty_precision", "mid_ticks"), [(4, 8, 5_666), (0, 0, 200), (2, 3, 12)]
)
def test_level3stream_other_precisions_verify_without_mismatch(
    price_precision: int, qty_precision: int, mid_ticks: int
) -> None:
    stream = Level3Stream(
        "MATIC/USD",
        depth=10,
        price_precision=price_precision,
        qty_precision=qty_precision,
        mid_ticks=mid_ticks,
        seed=11,
    )
    model = l3_feed_for(stream)
    for frame in stream.frames(300):
        model.process(frame)
    assert (model.verified, model.mismatches) == (300, 0)


def test_level3stream_update_before_snapshot_raises() -> None:
    with pytest.raises(RuntimeError, match="snapshot"):
        Level3Stream().update()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"depth": 0},
        {"levels": 0},
        {"depth": 10, "levels": 11},
        {"min_events": 0},
        {"min_events": 4, "max_events": 3},
        {"orders_per_level": 0},
        {"reserve": -1},
        {"qty_precision": -1},
        {"mid_ticks": 0},
    ],
)
def test_level3stream_invalid_arguments_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Level3Stream(**kwargs)


def test_level3stream_frames_zero_raises() -> None:
    with pytest.raises(ValueError, match="n must be >= 1"):
        Level3Stream().frames(0)
