"""Integration tests of ``kbook.history``: Parquet export, ``History.book_at`` and the plots.

Every exported table is read back with DuckDB and with Polars and compared with a straight
replay of the same capture through :class:`kbook.Feed`, written here independently of the
exporter. Broken captures are made from copies of the samples in ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyarrow")
duckdb = pytest.importorskip("duckdb")
pl = pytest.importorskip("polars")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from kbook import ChecksumMismatch, Feed, KBookError, L2Book, Level3Book  # noqa: E402
from kbook.capture import write_capture  # noqa: E402
from kbook.cli import main  # noqa: E402
from kbook.history import History, export, export_tables  # noqa: E402
from kbook.history.history import to_ns  # noqa: E402
from kbook.history.parquet import CaptureError, ExportError, read_frames  # noqa: E402
from kbook.messages import Trade, parse_message  # noqa: E402
from kbook.sim.streams import BookStream  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "samples").glob("*.capture"))
BOOK_TABLES = ["book_updates", "book_snapshots", "quotes", "trades"]

Key = tuple[str, str]


# -- the reference: a straight replay, written without the exporter ----------------------


def _key(feed: Feed, book: L2Book | Level3Book) -> Key:
    return next(k for k, b in feed.books.items() if b is book)


def _levels(book: L2Book | Level3Book, side: str) -> list[tuple[Decimal, Decimal]]:
    levels = book.bids() if side == "bid" else book.asks()
    return [(Decimal(book.price_text(p)), Decimal(book.qty_text(q))) for p, q, *_ in levels]


def _replay(path: Path, until: int | None = None) -> dict[str, Any]:
    """Replay a capture: final books, the quote series per book, the trades."""
    feed = Feed()
    quotes: dict[Key, list[tuple[Any, ...]]] = {}
    last: dict[Key, tuple[Any, ...]] = {}
    trades: list[Trade] = []
    for frame in read_frames(str(path)):
        if until is not None and (frame.received or 0) > until:
            break
        result: Any = None
        with contextlib.suppress(KBookError):
            result = feed.process(frame.data)
        if result is not None and not isinstance(result, L2Book | Level3Book):
            trades += [m for m in parse_message(result) if isinstance(m, Trade)]
        for key, book in feed.books.items():
            valid = book.valid
            top = (None,) * 4
            if valid:
                bids, asks = _levels(book, "bid")[:1], _levels(book, "ask")[:1]
                top = (*(bids[0] if bids else (None, None)), *(asks[0] if asks else (None, None)))
            state = (*top, valid)
            if last.get(key) != state:
                last[key] = state
                quotes.setdefault(key, []).append((frame.line, *state))
    books = {
        key: (book.valid, _levels(book, "bid"), _levels(book, "ask"))
        for key, book in feed.books.items()
    }
    return {"books": books, "quotes": quotes, "trades": trades, "feed": feed}


def _with_trades(tmp_path: Path) -> Path:
    """The v2 sample with v2 trade messages between its lines (their times follow the book's)."""
    out = tmp_path / "v2-trades.capture"
    lines = (REPO / "samples" / "btcusd-v2.capture").read_bytes().splitlines(keepends=True)
    rng = random.Random(17)
    body = []
    trade_id = 1000
    for i, line in enumerate(lines):
        body.append(line)
        if i > 10 and i % 40 == 0:
            stamp = line.split(b": ", 1)[0].decode()
            symbol = rng.choice(["BTC/USD", "ETH/USD"])
            price = "45001.3" if symbol == "BTC/USD" else "1600.07"
            qty = f"{rng.randrange(1, 10**8) / 10**8:.8f}".rstrip("0")
            side = rng.choice(["buy", "sell"])
            trade_id += 1
            frame = (
                f'{{"channel":"trade","type":"update","data":[{{"symbol":"{symbol}",'
                f'"side":"{side}","price":{price},"qty":{qty},"ord_type":"limit",'
                f'"trade_id":{trade_id},"timestamp":"2023-10-06T17:35:5{i % 10}.1Z"}}]}}'
            )
            body.append(f"{stamp}: {frame}\n".encode())
    out.write_bytes(b"".join(body))
    return out


def _corrupt(tmp_path: Path, resnapshot: bool = False) -> tuple[Path, int]:
    """A copy of the v2 sample with one BTC/USD update's checksum changed; return its line."""
    lines = (REPO / "samples" / "btcusd-v2.capture").read_bytes().splitlines(keepends=True)
    target = next(
        i
        for i, line in enumerate(lines)
        if i > 1200 and b'"BTC/USD"' in line and b'"type":"update"' in line
    )
    checksum = re.search(rb'"checksum":(\d+)', lines[target])
    assert checksum is not None
    wrong = (int(checksum.group(1)) + 1) % 2**32
    lines[target] = lines[target].replace(checksum.group(0), b'"checksum":%d' % wrong)
    if resnapshot:
        # The BTC/USD snapshot again at the end: the book is valid again after it.
        head = b'"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD"'
        snapshot = next(line for line in lines if head in line)
        stamp = lines[-1].split(b": ", 1)[0]
        lines.append(stamp + b": " + snapshot.split(b": ", 1)[1])
    out = tmp_path / "corrupt.capture"
    out.write_bytes(b"".join(lines))
    return out, target + 1


# -- reading exported tables back -----------------------------------------------------------


_FINAL_BOOK_SQL = """
with snaps as (
    select symbol, protocol, max(line) as first_line from '{path}'
    where is_snapshot group by symbol, protocol),
current as (
    select u.* from '{path}' u join snaps s using (symbol, protocol)
    where u.line >= s.first_line)
select symbol, protocol, side, price, arg_max(qty, line) as qty
from current group by symbol, protocol, side, price
"""


def _final_books_duckdb(path: Path) -> dict[tuple[str, str], dict[str, list[Any]]]:
    rows = duckdb.sql(_FINAL_BOOK_SQL.format(path=path)).fetchall()
    out: dict[tuple[str, str], dict[str, list[Any]]] = {}
    for symbol, protocol, side, price, qty in rows:
        if qty > 0:
            out.setdefault((symbol, protocol), {"bid": [], "ask": []})[side].append((price, qty))
    for sides in out.values():
        sides["bid"].sort(reverse=True)
        sides["ask"].sort()
    return out


def _final_books_polars(path: Path) -> dict[tuple[str, str], dict[str, list[Any]]]:
    updates = pl.read_parquet(path)
    first = (
        updates.filter(pl.col("is_snapshot"))
        .group_by("symbol", "protocol")
        .agg(pl.col("line").max().alias("first_line"))
    )
    current = updates.join(first, on=["symbol", "protocol"]).filter(
        pl.col("line") >= pl.col("first_line")
    )
    latest = (
        current.sort("line")
        .group_by("symbol", "protocol", "side", "price")
        .agg(pl.col("qty").last())
        .filter(pl.col("qty") > 0)
    )
    out: dict[tuple[str, str], dict[str, list[Any]]] = {}
    for row in latest.iter_rows(named=True):
        sides = out.setdefault((row["symbol"], row["protocol"]), {"bid": [], "ask": []})
        sides[row["side"]].append((row["price"], row["qty"]))
    for sides in out.values():
        sides["bid"].sort(reverse=True)
        sides["ask"].sort()
    return out


def _symbol_protocol(key: Key, book_symbol: str) -> tuple[str, str]:
    return book_symbol, key[0]


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_export_sample_duckdb_and_polars_match_replay(sample: Path, tmp_path: Path) -> None:
    tables = [*BOOK_TABLES, "level3_events"]
    result = export(str(sample), str(tmp_path / "out"), tables, depth=10)
    assert result.failed_frames == {}
    reference = _replay(sample)
    path = {t: tmp_path / "out" / f"{t}.parquet" for t in tables}

    # the same final book, level for level, from the updates
    expected = {}
    for key, (valid, bids, asks) in reference["books"].items():
        assert valid
        symbol = reference["feed"].books[key].symbol
        expected[_symbol_protocol(key, symbol)] = {"bid": bids, "ask": asks}
    assert _final_books_duckdb(path["book_updates"]) == expected
    assert _final_books_polars(path["book_updates"]) == expected

    # the same final book from the last book snapshot row (top 10)
    snaps = pl.read_parquet(path["book_snapshots"])
    for (symbol, protocol), sides in expected.items():
        last = snaps.filter((pl.col("symbol") == symbol) & (pl.col("protocol") == protocol)).row(
            -1, named=True
        )
        assert last["valid"]
        for side in ("bid", "ask"):
            got = [(last[f"{side}_price_{r}"], last[f"{side}_qty_{r}"]) for r in range(10)]
            want = sides[side][:10]
            assert got == want + [(None, None)] * (10 - len(want))

    # the same top-of-book series
    for key, series in reference["quotes"].items():
        symbol = reference["feed"].books[key].symbol
        want = [tuple(row) for row in series]
        got_duck = duckdb.sql(
            f"select line, bid_price, bid_qty, ask_price, ask_qty, valid from "
            f"'{path['quotes']}' where symbol = ? and protocol = ? order by line",
            params=[symbol, key[0]],
        ).fetchall()
        got_polars = (
            pl.read_parquet(path["quotes"])
            .filter((pl.col("symbol") == symbol) & (pl.col("protocol") == key[0]))
            .sort("line")
            .select("line", "bid_price", "bid_qty", "ask_price", "ask_qty", "valid")
            .rows()
        )
        assert got_duck == want
        assert got_polars == want

    # the same trade count (the samples have none) and level3 events of level3 books only
    trades = duckdb.sql(f"select count(*) from '{path['trades']}'").fetchall()[0]
    assert trades == (len(reference["trades"]),)
    events = pl.read_parquet(path["level3_events"])
    has_l3 = any(k[0] == "l3" for k in reference["books"])
    assert (events.height > 0) == has_l3


def test_export_trades_exact_and_counted(tmp_path: Path) -> None:
    capture = _with_trades(tmp_path)
    reference = _replay(capture)
    assert len(reference["trades"]) > 50
    out = tmp_path / "trades.parquet"
    export(str(capture), str(out), "trades")
    got = duckdb.sql(
        f"select symbol, side, price, qty, trade_id from '{out}' order by trade_id"
    ).fetchall()
    want = sorted(
        ((t.symbol, t.side, t.price, t.qty, t.trade_id) for t in reference["trades"]),
        key=lambda r: r[4],
    )
    assert got == want
    assert pl.read_parquet(out).height == len(want)
    # row groups hold one symbol each (sorted by symbol at the end of the export)
    meta = pq.ParquetFile(out).metadata
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(2).statistics
        assert stats.min == stats.max


def test_export_decimals_are_exact_at_the_pairs_precision(tmp_path: Path) -> None:
    out = tmp_path / "u.parquet"
    export(str(REPO / "samples" / "xbtusd-v1.capture"), str(out), "book_updates")
    schema = pq.read_schema(out)
    assert str(schema.field("price").type) == "decimal128(18, 5)"
    assert str(schema.field("qty").type) == "decimal128(38, 8)"
    assert str(schema.field("receive_time").type) == "timestamp[ns, tz=UTC]"
    meta = pq.ParquetFile(out).metadata.metadata
    assert json.loads(meta[b"kbook.precision"]) == {"XBT/USD": [5, 8]}
    total = duckdb.sql(f"select sum(qty) from '{out}' where is_snapshot").fetchall()[0]
    feed = Feed()
    for frame in read_frames(str(REPO / "samples" / "xbtusd-v1.capture")):
        feed.process(frame.data)
        if feed.book_messages:
            break
    (book,) = feed.books.values()
    lots = sum(q for _, q in book.bids()) + sum(q for _, q in book.asks())
    assert total == (Decimal(lots).scaleb(-8),)


# -- broken captures ------------------------------------------------------------------------


def test_export_corrupted_checksum_marks_frames_and_reports_no_invalid_book(tmp_path: Path) -> None:
    capture, bad_line = _corrupt(tmp_path)
    with pytest.raises(ChecksumMismatch):
        feed = Feed()
        for frame in read_frames(str(capture)):
            feed.process(frame.data)
    out = tmp_path / "out"
    result = export(str(capture), str(out), ["book_updates", "book_snapshots", "quotes"])
    assert result.failed_frames[bad_line] == "mismatch"
    assert all(v == "dropped" for line, v in result.failed_frames.items() if line > bad_line)

    updates = pl.read_parquet(out / "book_updates.parquet")
    at_bad = updates.filter(pl.col("line") == bad_line)
    assert at_bad.height > 0
    assert at_bad["checksum"].unique().to_list() == ["mismatch"]
    assert not at_bad["valid"].any()
    btc_after = updates.filter((pl.col("symbol") == "BTC/USD") & (pl.col("line") >= bad_line))
    assert not btc_after["valid"].any()  # nothing between mismatch and snapshot is valid

    snaps = duckdb.sql(
        f"select valid, checksum, bid_price_0, ask_price_0 from '{out}/book_snapshots.parquet' "
        f"where symbol = 'BTC/USD' and line >= {bad_line} order by line"
    ).fetchall()
    assert snaps[0][:2] == (False, "mismatch")
    assert {s[1] for s in snaps[1:]} == {"dropped"}
    assert all(s[0] is False and s[2] is None and s[3] is None for s in snaps)
    valid_quotes = duckdb.sql(
        f"select count(*) from '{out}/quotes.parquet' "
        f"where symbol = 'BTC/USD' and line >= {bad_line} and valid"
    ).fetchall()[0]
    assert valid_quotes == (0,)
    eth = updates.filter(pl.col("symbol") == "ETH/USD")
    assert eth["valid"].all()


def test_export_corrupted_then_snapshot_valid_again(tmp_path: Path) -> None:
    capture, bad_line = _corrupt(tmp_path, resnapshot=True)
    out = tmp_path / "u.parquet"
    export(str(capture), str(out), "book_updates")
    updates = pl.read_parquet(out)
    last_line = int(updates["line"].max())
    tail = updates.filter(pl.col("line") == last_line)
    assert tail["is_snapshot"].all() and tail["valid"].all()
    between = updates.filter(
        (pl.col("symbol") == "BTC/USD")
        & (pl.col("line") >= bad_line)
        & (pl.col("line") < last_line)
    )
    assert between.height > 0 and not between["valid"].any()
    _, bids, asks = _replay(capture)["books"][("v2", "BTC/USD")]
    assert _final_books_polars(out)[("BTC/USD", "v2")] == {"bid": bids, "ask": asks}


def test_export_malformed_line_names_it(tmp_path: Path) -> None:
    lines = (REPO / "samples" / "btcusd-v2.capture").read_bytes().splitlines(keepends=True)
    lines[99] = lines[99][:60] + b"\n"  # a truncated frame on line 100
    capture = tmp_path / "broken.capture"
    capture.write_bytes(b"".join(lines))
    with pytest.raises(CaptureError, match=r"broken\.capture: line 100: "):
        export_tables(str(capture), "book_updates")
    _, result = export_tables(str(capture), "book_updates", strict=False)
    assert list(result.decode_errors) == [100]
    with pytest.raises(CaptureError, match="line 100"):
        History(str(capture))


def test_export_and_history_read_gzip_captures(tmp_path: Path) -> None:
    sample = REPO / "samples" / "btcusd-l3.capture"
    packed = tmp_path / "l3.capture.gz"
    packed.write_bytes(gzip.compress(sample.read_bytes()))
    plain, _ = export_tables(str(sample), ["book_updates", "level3_events"])
    zipped, _ = export_tables(str(packed), ["book_updates", "level3_events"])
    for table in plain:
        assert zipped[table].equals(plain[table])
    last = list(read_frames(str(sample)))[-1].received
    assert last is not None
    with History(str(packed), checkpoint_every=64) as history:
        got = history.book_at("BTC/USD", last)
    want = _straight(sample, ("l3", "BTC/USD"), last)
    assert got is not None and want is not None
    _same_book(got, want)


def test_export_bad_arguments_are_typed_errors(tmp_path: Path) -> None:
    sample = str(REPO / "samples" / "btcusd-v2.capture")
    with pytest.raises(ExportError, match="unknown table"):
        export_tables(sample, "books")
    with pytest.raises(ExportError, match="depth"):
        export_tables(sample, "book_snapshots", depth=0)
    with pytest.raises(CaptureError, match="cannot open"):
        export_tables(str(tmp_path / "missing.capture"), "quotes")
    with pytest.raises(ExportError, match="cannot write"):
        export(sample, str(tmp_path / "no" / "such" / "dir" / "q.parquet"), "quotes")


# -- layout ---------------------------------------------------------------------------------


def test_export_row_groups_hold_one_symbol_and_one_hour(tmp_path: Path) -> None:
    btc = BookStream("BTC/USD", depth=10, price_precision=1, qty_precision=8, seed=3)
    eth = BookStream(
        "ETH/USD", depth=10, price_precision=2, qty_precision=8, seed=4, mid_ticks=160_000
    )
    frames = [
        btc.instrument_frame(),
        eth.instrument_frame(),
        btc.ack_frame(),
        eth.ack_frame(),
        btc.snapshot(),
        eth.snapshot(),
    ]
    for i in range(3000):
        frames.append(btc.update() if i % 3 else eth.update())
    capture = tmp_path / "three-hours.capture"
    write_capture(str(capture), frames, t0=1_700_000_000.0, dt=4.0)  # 3000 x 4 s = 3.3 h
    out = tmp_path / "u.parquet"
    export(str(capture), str(out), "book_updates")
    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups >= 8
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    sym, when = names.index("symbol"), names.index("receive_time")
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        assert group.column(sym).statistics.min == group.column(sym).statistics.max
        lo, hi = group.column(when).statistics.min, group.column(when).statistics.max
        assert lo.replace(minute=0, second=0, microsecond=0) == hi.replace(
            minute=0, second=0, microsecond=0
        )
    # a one-symbol, one-hour query needs one row group of the file, by the statistics alone
    hour = np.datetime64("2023-11-14T23:00:00")
    wanted = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        lo = np.datetime64(group.column(when).statistics.min.replace(tzinfo=None))
        if group.column(sym).statistics.min == "ETH/USD" and hour <= lo < hour + np.timedelta64(
            1, "h"
        ):
            wanted += 1
    assert wanted == 1
    count = duckdb.sql(
        f"select count(*) from '{out}' where symbol = 'ETH/USD' "
        f"and receive_time >= '2023-11-14 23:00:00+00'::timestamptz "
        f"and receive_time < '2023-11-15 00:00:00+00'::timestamptz"
    ).fetchall()[0]
    assert count is not None and count[0] > 100


# -- book_at --------------------------------------------------------------------------------


def _same_book(a: L2Book | Level3Book, b: L2Book | Level3Book) -> None:
    assert a.valid == b.valid
    assert a.bids() == b.bids() and a.asks() == b.asks()
    if isinstance(a, Level3Book) and isinstance(b, Level3Book):
        for side, n in (("bid", a.bid_levels), ("ask", a.ask_levels)):
            for rank in range(n):
                assert a.level_orders(side, rank) == b.level_orders(side, rank)


def _straight(path: Path, key: Key, until: int) -> L2Book | Level3Book | None:
    feed = Feed()
    for frame in read_frames(str(path)):
        if (frame.received or 0) > until:
            break
        with contextlib.suppress(KBookError):
            feed.process(frame.data)
    return feed.books.get(key)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_history_book_at_equals_straight_replay(sample: Path) -> None:
    frames = list(read_frames(str(sample)))
    times = [f.received for f in frames if f.received is not None]
    rng = random.Random(sample.name)
    with History(str(sample), checkpoint_every=37) as history:
        for key in history.book_keys():
            symbol = key[1].partition("|")[2] or key[1]
            chosen = [
                times[0] - 1,
                times[-1],
                *rng.sample(times, 6),
                *(t + 1 for t in rng.sample(times, 3)),
            ]
            for when in chosen:
                got = history.book_at(symbol, when, protocol=key[0])
                want = _straight(sample, key, when)
                if want is None:
                    assert got is None
                    continue
                assert got is not None
                _same_book(got, want)


def test_history_book_at_corrupted_capture_comes_back_invalid(tmp_path: Path) -> None:
    capture, bad_line = _corrupt(tmp_path, resnapshot=True)
    frames = {f.line: f for f in read_frames(str(capture))}
    bad_time = frames[bad_line].received
    assert bad_time is not None
    with History(str(capture), checkpoint_every=50) as history:
        for when in (bad_time - 1, bad_time, bad_time + 300_000_000, 2**62):
            got = history.book_at("BTC/USD", when)
            want = _straight(capture, ("v2", "BTC/USD"), when)
            assert got is not None and want is not None
            _same_book(got, want)
        assert not history.book_at("BTC/USD", bad_time + 300_000_000).valid  # type: ignore[union-attr]
        assert history.book_at("BTC/USD", 2**62).valid  # type: ignore[union-attr]


def test_history_iteration_and_top_series_match_quotes() -> None:
    sample = REPO / "samples" / "btcusd-v2.capture"
    with History(str(sample), checkpoint_every=100) as history:
        start, end = "2023-10-06T17:35:57Z", "2023-10-06T17:35:58.5Z"
        seen = [
            (t, book.bids(1), book.asks(1))
            for t, book in history.books("ETH/USD", start, end, where=lambda b: b.valid)
        ]
        top = history.top("ETH/USD", 3, start, end)
    assert len(seen) == len(top.time) > 10
    assert all(to_ns(start) <= t <= to_ns(end) for t, *_ in seen)
    assert [t for t, *_ in seen] == top.time.astype(np.int64).tolist()
    assert [b[0] for _, b, _ in seen] == list(
        zip(top.bid_price[:, 0].tolist(), top.bid_qty[:, 0].tolist(), strict=True)
    )
    frame = top.to_polars()
    assert frame.height == len(seen)
    first_bid = seen[0][1][0]
    assert frame["bid_price_0"][0] == Decimal(first_bid[0]).scaleb(-2)
    assert str(frame.schema["bid_price_0"]).startswith("Decimal")


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_export_every_ms_rows_equal_book_at_interval_end(sample: Path) -> None:
    tables, _ = export_tables(str(sample), "book_snapshots", depth=5, every_ms=100)
    rows = tables["book_snapshots"].to_pylist()
    assert len(rows) > 8
    with History(str(sample)) as history:
        for row in rows:
            stamp = to_ns(row["receive_time"])
            assert stamp % 100_000_000 == 0
            # the row is the book after the last frame of the interval that ends at its stamp
            book = history.book_at(row["symbol"], stamp - 1, protocol=row["protocol"])
            assert book is not None and book.valid == row["valid"]
            for side, levels in (("bid", _levels(book, "bid")), ("ask", _levels(book, "ask"))):
                got = [(row[f"{side}_price_{r}"], row[f"{side}_qty_{r}"]) for r in range(5)]
                assert got == (levels[:5] + [(None, None)] * 5)[:5]


def test_to_ns_reads_every_form() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    ns = 1_696_613_757_500_000_000
    assert to_ns("2023-10-06T17:35:57.5Z") == ns
    assert to_ns("2023-10-06T17:35:57.500000000") == ns
    assert to_ns("2023-10-06T19:35:57.5+02:00") == ns
    assert to_ns(datetime(2023, 10, 6, 17, 35, 57, 500_000, tzinfo=UTC)) == ns
    tz = timezone(timedelta(hours=-5))
    assert to_ns(datetime(2023, 10, 6, 12, 35, 57, 500_000, tzinfo=tz)) == ns
    assert to_ns(np.datetime64(ns, "ns")) == ns
    with pytest.raises(ValueError, match="aware"):
        to_ns(datetime(2023, 10, 6))
    with pytest.raises(ValueError, match="ISO"):
        to_ns("yesterday")


# -- plots and the command line -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["heatmap", "depth", "spread"])
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_plot_writes_a_non_blank_picture(sample: Path, kind: str, tmp_path: Path) -> None:
    import matplotlib.image

    symbol = "XBT/USD" if "v1" in sample.name else "BTC/USD"
    out = tmp_path / f"{kind}.png"
    assert main(["plot", str(sample), "--symbol", symbol, "--kind", kind, "-o", str(out)]) == 0
    assert out.stat().st_size > 20_000
    pixels = matplotlib.image.imread(str(out))
    assert pixels.shape[0] >= 600 and pixels.shape[1] >= 1200
    # a blank canvas has no variance; a drawn one has many distinct colours
    assert float(pixels[..., :3].std()) > 0.05
    assert len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0)) > 50


def test_plot_heatmap_with_trades_and_svg(tmp_path: Path) -> None:
    capture = _with_trades(tmp_path)
    svg = tmp_path / "heat.svg"
    assert (
        main(
            [
                "plot",
                str(capture),
                "--symbol",
                "BTC/USD",
                "--from",
                "2023-10-06T17:35:57Z",
                "--to",
                "1696613759",
                "-o",
                str(svg),
            ]
        )
        == 0
    )
    text = svg.read_text()
    assert text.startswith("<?xml") and "trade, buyer took" in text


def test_cli_export_and_book_at(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = str(REPO / "samples" / "btcusd-v2.capture")
    out = tmp_path / "q.parquet"
    assert (
        main(["export", sample, "-o", str(out), "--table", "quotes", "--symbols", "ETH/USD"]) == 0
    )
    assert "quotes:" in capsys.readouterr().out
    assert set(pl.read_parquet(out)["symbol"].unique()) == {"ETH/USD"}
    btc = tmp_path / "btc.parquet"
    assert (
        main(["export", sample, "-o", str(btc), "--table", "quotes", "--symbols", "BTC/USD"]) == 0
    )
    assert str(pq.read_schema(btc).field("bid_price").type) == "decimal128(18, 1)"
    assert json.loads(pq.ParquetFile(btc).metadata.metadata[b"kbook.precision"]) == {
        "BTC/USD": [1, 8]
    }
    corrupt, bad_line = _corrupt(tmp_path)
    assert main(["export", str(corrupt), "-o", str(tmp_path / "c.parquet")]) == 1
    assert f"first: line {bad_line}, mismatch" in capsys.readouterr().out
    assert main(["book-at", sample, "--symbol", "BTC/USD", "--at", "1696613758", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    want = _straight(
        REPO / "samples" / "btcusd-v2.capture", ("v2", "BTC/USD"), 1_696_613_758_000_000_000
    )
    assert want is not None
    assert report["valid"] and report["bids"] == [list(b) for b in want.bids_str(10)]
    assert main(["book-at", sample, "--symbol", "DOGE/USD", "--at", "1696613758"]) == 2
    assert "no book of 'DOGE/USD'" in capsys.readouterr().err


def test_cli_missing_extra_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    status = main(
        ["export", str(REPO / "samples" / "btcusd-v2.capture"), "-o", str(tmp_path / "x.parquet")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err == [
        "kbook export: error: needs the research extra (pyarrow is missing): "
        "pip install 'kbook[research]'"
    ]


def test_cli_import_does_not_load_the_extra() -> None:
    code = (
        "import sys, kbook.cli; kbook.cli.build_parser(); "
        "print(sorted(m for m in ('pyarrow', 'polars', 'duckdb', 'matplotlib') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"


def test_history_rejects_capture_without_receive_times(tmp_path: Path) -> None:
    capture = tmp_path / "bare.capture"
    frames = [
        line.split(b": ", 1)[1]
        for line in (REPO / "samples" / "btcusd-v2.capture").read_bytes().splitlines(keepends=True)
    ]
    capture.write_bytes(b"".join(frames))
    with pytest.raises(CaptureError, match="line 1: no receive time"):
        History(str(capture))
    tables, _ = export_tables(str(capture), "quotes")
    assert tables["quotes"].column("receive_time").null_count == tables["quotes"].num_rows
