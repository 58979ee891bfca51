"""The bus wire format without a bus: subject tokens, frame splitting, synthesized snapshots.

Synthesized snapshots are checked the strong way: the engine rebuilds a book from them and must
verify the embedded checksum and hold exactly the source book's levels.

What it is not: a test of NATS (tests/integration/test_bus.py runs a real server).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kbook import Feed, L2Book
from kbook.bus.wire import (
    HEADER_COUNT,
    HEADER_LENGTHS,
    data_subject,
    frame_symbols,
    lone_update,
    pack_updates,
    parse_data_subject,
    snapshot_frame,
    subject_token,
    symbol_of_token,
    unpack_updates,
)


@given(st.text(min_size=1, max_size=20))
def test_subject_token_any_symbol_round_trips_and_is_one_safe_token(symbol: str) -> None:
    token = subject_token(symbol)
    assert symbol_of_token(token) == symbol
    assert not any(c in token for c in ".*> \t\r\n")


@pytest.mark.parametrize("token", ["", "~", "~4", "~ZZ", "a.b", "a b", "~FF"])
def test_symbol_of_token_not_a_token_raises_value_error(token: str) -> None:
    with pytest.raises(ValueError):
        symbol_of_token(token)


def test_data_subject_parses_back_and_rejects_other_subjects() -> None:
    subject = data_subject("kraken", "book", "ETH2.S/ETH", "snapshot")
    assert subject == "kbook.kraken.book.ETH2~2ES_ETH.snapshot"
    assert parse_data_subject(subject) == ("kraken", "book", "ETH2.S/ETH", "snapshot")
    assert parse_data_subject("kbook.kraken.book.BTC_USD.bogus") is None
    assert parse_data_subject("kbook.heartbeat.kraken.x.update") is None
    with pytest.raises(ValueError):
        data_subject("kra.ken", "book", "BTC/USD", "update")


def _book(symbol: str) -> L2Book:
    book = L2Book(symbol, 10, 1, 8)
    book.apply([("45283.5", "0.1"), ("45283.0", "2.5")], [("45285.2", "0.001")], snapshot=True)
    return book


def test_snapshot_frame_v2_engine_rebuilds_the_same_verified_book() -> None:
    book = _book("BTC/USD")
    frame = snapshot_frame("v2", "BTC/USD", 10, book.bids_str(), book.asks_str(), book.checksum())
    rebuilt = Feed(precisions={"BTC/USD": (1, 8)}).process(frame)
    assert isinstance(rebuilt, L2Book) and rebuilt.valid
    assert rebuilt.checksums_verified == 1
    assert (rebuilt.bids_str(), rebuilt.asks_str()) == (book.bids_str(), book.asks_str())


def test_snapshot_frame_v1_engine_learns_precision_and_levels() -> None:
    book = _book("XBT/USD")
    frame = snapshot_frame("v1", "XBT/USD", 10, book.bids_str(), book.asks_str(), book.checksum())
    rebuilt = Feed().process(frame)
    assert isinstance(rebuilt, L2Book) and rebuilt.valid
    assert (rebuilt.price_precision, rebuilt.qty_precision) == (1, 8)
    assert rebuilt.checksum() == book.checksum()


def test_frame_symbols_two_symbol_v2_frame_splits_byte_exact_parts() -> None:
    a, b = _book("BTC/USD"), _book("ETH/USD")
    fa = snapshot_frame("v2", "BTC/USD", 10, a.bids_str(), a.asks_str(), a.checksum())
    fb = snapshot_frame("v2", "ETH/USD", 10, b.bids_str(), b.asks_str(), b.checksum())
    item = fa[fa.index(b"[{") + 1 : -2]
    joined = fb[:-2] + b"," + item + b"]}"
    kind, snapshot, parts = frame_symbols(joined, "v2")
    assert (kind, snapshot) == ("snapshot", True)
    assert [s for s, _ in parts] == ["ETH/USD", "BTC/USD"]
    assert parts[1][1] == fa.replace(b" ", b"")
    feed = Feed(precisions={"BTC/USD": (1, 8), "ETH/USD": (1, 8)})
    assert all(feed.process(part).valid for _, part in parts)


def test_frame_symbols_v1_update_names_its_pair() -> None:
    frame = (
        b'[336,{"a":[["5541.30000","2.50700000","1534614248.456738"]],"c":"974942666"},'
        b'"book-10","XBT/USD"]'
    )
    assert frame_symbols(frame, "v1") == ("update", False, [("XBT/USD", frame)])


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**63), st.integers(0, 2**32 - 1), st.binary(min_size=1, max_size=40)
        ),
        min_size=1,
        max_size=30,
    ),
    st.booleans(),
)
def test_pack_updates_unpacks_to_the_same_frames_times_and_checksums(
    records: list[tuple[int, int, bytes]], with_checksums: bool
) -> None:
    times = [t for t, _, _ in records]
    checksums = [c for _, c, _ in records] if with_checksums else None
    frames = [f for _, _, f in records]
    payload, headers = pack_updates(times, checksums, frames)
    assert (HEADER_COUNT in headers) == (len(frames) > 1)
    expected = [(t, str(c) if with_checksums else None, f) for t, c, f in records]
    assert unpack_updates(headers, payload) == expected


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({HEADER_COUNT: "3"}, "needs 3 lengths"),
        ({HEADER_COUNT: "0"}, "batch of 0 frames"),
        ({HEADER_COUNT: "two"}, "invalid literal"),
        ({HEADER_LENGTHS: "2 4"}, "add up to 6 bytes"),
        ({HEADER_LENGTHS: "5 0"}, "empty"),
        ({HEADER_LENGTHS: "2 x"}, "invalid literal"),
        ({"Kbook-Time": "7"}, "needs 2 lengths"),
        ({"Kbook-Checksum": "1 2 3"}, "needs 2 lengths"),
    ],
)
def test_unpack_updates_headers_that_do_not_describe_the_payload_raise_value_error(
    change: dict[str, str], reason: str
) -> None:
    payload, headers = pack_updates([7, 8], [1, 2], [b"{}", b"[1]"])
    with pytest.raises(ValueError, match=reason):
        unpack_updates({**headers, **change}, payload)


def test_lone_update_is_false_for_snapshots_several_symbols_and_odd_spacing() -> None:
    a = _book("BTC/USD")
    snap = snapshot_frame("v2", "BTC/USD", 10, a.bids_str(), a.asks_str(), a.checksum())
    update = snap.replace(b'"snapshot"', b'"update"')
    assert not lone_update(snap, "v2") and lone_update(update, "v2")
    two = update[:-2] + b"," + update[update.index(b"[{") + 1 : -2] + b"]}"
    assert not lone_update(two, "v2")
    assert not lone_update(update.replace(b'"type":', b'"type": '), "v2")
    # an extra "type" key inside the data item: not certainly the message's own
    assert not lone_update(update.replace(b'{"symbol"', b'{"type":"update","symbol"'), "v2")
    assert lone_update(b'[1,{"a":[["1.0","2.0","3.0"]],"c":"9"},"book-10","XBT/USD"]', "v1")
    assert not lone_update(b'[1,{"as":[["1.0","2.0","3.0"]]},"book-10","XBT/USD"]', "v1")
    # whenever it says an update, frame_symbols agrees
    for frame in (update, snap, two):
        if lone_update(frame, "v2"):
            assert frame_symbols(frame, "v2")[1:] == (False, [("BTC/USD", frame)])


def test_cli_relay_without_the_bus_extra_is_one_error_line_and_status_2() -> None:
    code = (
        "import sys; sys.modules['nats'] = None\n"
        "from kbook.cli import main\n"
        "sys.exit(main(['relay', '--bus', 'nats://127.0.0.1:1', '--sim', "
        "'--symbols', 'BTC/USD']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "kbook relay: error: the bus extra is not installed (pip install 'kbook[bus]')"
    ]
