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
    data_subject,
    frame_symbols,
    parse_data_subject,
    snapshot_frame,
    subject_token,
    symbol_of_token,
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
