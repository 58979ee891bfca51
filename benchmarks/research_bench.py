"""Research benchmarks: Parquet export and ``History.book_at`` against ``kbook verify``'s replay.

A long v2 capture is generated from seeded :class:`kbook.sim.streams.BookStream` runs: BTC/USD
(depth 10) and ETH/USD (depth 25) updates interleaved 3:1, each book frame with its checksum
from the generator's reference model. Generating a frame costs about 160 µs in Python, so one
*session* of ``--session`` update frames is generated (and cached under ``benchmarks/.cache/``)
and the capture repeats it ``--repeat`` times, each repetition starting with the instrument
snapshot, the acks and fresh book snapshots, as a recorder that resubscribes would write. Every
checksum in the file matches; receive times advance 1 ms per frame.

Contenders, timed in the same run over the same file, in interleaved rounds:

* ``verify replay`` (the baseline): :func:`kbook.cli.verify._replay`, what ``kbook verify`` does;
* ``export book_updates``, ``export quotes``, ``export book_snapshots`` (top 10, every 1 s):
  :func:`kbook.history.export` to a Parquet file, one table per run;
* ``History index``: building :class:`kbook.history.History` (one replay plus the index);
* ``book_at``: latency of ``History.book_at`` at ``--samples`` seeded random times.

Reported: frames/s, rows/s, and each contender's time over the verify replay's in the same
round (median over rounds); ``book_at`` as median and 99th percentile, and as a count of
"verify frames" (how many frames ``kbook verify`` replays in the same time).

Every contender is checked afterwards: the verify replay must see no mismatch, the exported
``book_updates`` must rebuild the engine's final books, the quotes must end at the engine's
final best bid/ask, and ``book_at`` at the last frame must equal the replay's final books.

Run: ``PYTHONPATH=. python benchmarks/research_bench.py`` (``--help``; the default 1,000,000+
frames take several minutes on a 2-core VM), or the smoke test ``pytest benchmarks
--benchmark-disable -k research``.

What it is not: not a measure of Parquet readers (DuckDB and Polars read what they read).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from kbook import Feed, L2Book
from kbook.capture import display_name, open_capture
from kbook.cli.verify import _replay, _Tally
from kbook.sim.streams import BookStream

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
T0_NS = 1_700_000_000_000_000_000  # receive time of the first frame, epoch ns
DT_NS = 1_000_000  # 1 ms between frames


def _instrument(streams: list[BookStream]) -> bytes:
    head = b'{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":['
    tail = b"]}}"
    pairs = [s.instrument_frame()[len(head) : -len(tail)] for s in streams]
    return head + b",".join(pairs) + tail


def _session(updates: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """Return (session head frames, update frames), cached by parameters and generator source."""
    source = Path(sys.modules[BookStream.__module__].__file__ or "").read_bytes()
    digest = hashlib.sha256(source + f"{updates}:{seed}".encode()).hexdigest()[:16]
    path = CACHE / f"research-{digest}.frames"
    if path.exists():
        lines = path.read_bytes().split(b"\n")
        n_head = int(lines[0])
        return lines[1 : 1 + n_head], lines[1 + n_head : -1]
    btc = BookStream("BTC/USD", depth=10, price_precision=1, qty_precision=8, seed=seed)
    eth = BookStream(
        "ETH/USD", depth=25, price_precision=2, qty_precision=8, seed=seed + 1, mid_ticks=160_000
    )
    head = [
        _instrument([btc, eth]),
        btc.ack_frame(),
        eth.ack_frame(),
        btc.snapshot(),
        eth.snapshot(),
    ]
    body = [eth.update() if i % 4 == 3 else btc.update() for i in range(updates)]
    CACHE.mkdir(exist_ok=True)
    path.write_bytes(b"\n".join([str(len(head)).encode(), *head, *body]) + b"\n")
    return head, body


def make_capture(path: Path, session: int, repeat: int, seed: int = 1) -> int:
    """Write the long capture; return its frame count."""
    head, body = _session(session, seed)
    frames = 0
    with open(path, "wb") as out:
        for _ in range(repeat):
            for frame in (*head, *body):
                ns = T0_NS + frames * DT_NS
                stamp = f"{ns // 10**9}.{ns % 10**9 // 1000:06d}: ".encode()
                out.write(stamp + frame + b"\n")
                frames += 1
    return frames


def verify_replay(path: Path) -> Feed:
    """What ``kbook verify`` does with the file (no report printing)."""
    feed = Feed()
    with contextlib.ExitStack() as stack:
        reader = open_capture(str(path), stack)
        _replay(reader, display_name(str(path)), feed, None, _Tally())
    return feed


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def check_export(path: Path, feed: Feed, updates_path: Path, quotes_path: Path) -> None:
    """The exported tables must rebuild the replay's final books and best prices."""
    import duckdb

    rows = duckdb.sql(f"""
        with snaps as (select symbol, max(line) as l from '{updates_path}' where is_snapshot
                       group by symbol)
        select u.symbol, side, price, arg_max(qty, line) from '{updates_path}' u
        join snaps s using (symbol) where u.line >= s.l group by u.symbol, side, price
    """).fetchall()
    for key, book in feed.books.items():
        assert isinstance(book, L2Book) and book.valid, key
        for side, levels in (("bid", book.bids()), ("ask", book.asks())):
            want = [(Decimal(book.price_text(p)), Decimal(book.qty_text(q))) for p, q in levels]
            got = sorted(
                ((p, q) for s, sd, p, q in rows if s == book.symbol and sd == side and q > 0),
                reverse=side == "bid",
            )
            assert got == want, (key, side)
        last = duckdb.sql(
            f"select bid_price, ask_price from '{quotes_path}' "
            f"where symbol = '{book.symbol}' order by line desc limit 1"
        ).fetchall()[0]
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is not None and ask is not None
        assert last == (Decimal(book.price_text(bid[0])), Decimal(book.price_text(ask[0])))


def run(
    session: int, repeat: int, rounds: int, samples: int, out: Any = sys.stdout
) -> dict[str, Any]:
    """Run every contender ``rounds`` times, interleaved; print and return the figures."""
    from kbook.history import History, export

    tmp = Path(tempfile.mkdtemp(prefix="kbook-research-bench-"))
    capture = tmp / "long.capture"
    started = time.perf_counter()
    frames = make_capture(capture, session, repeat)
    print(
        f"capture: {frames:,} frames, {capture.stat().st_size / 1e6:,.0f} MB, written in "
        f"{time.perf_counter() - started:.1f} s",
        file=out,
    )
    times: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    rows: dict[str, int] = {}
    latencies: list[float] = []
    feed: Feed | None = None
    for _ in range(rounds):
        base, feed = _timed(lambda: verify_replay(capture))
        assert feed.checksum_mismatches == 0 and feed.checksums_verified > 0
        times.setdefault("verify replay", []).append(base)
        for table, kwargs in (
            ("book_updates", {}),
            ("quotes", {}),
            ("book_snapshots", {"every_ms": 1000}),
        ):
            target = tmp / f"{table}.parquet"
            took, result = _timed(
                lambda t=table, k=kwargs, p=target: export(str(capture), str(p), t, **k)
            )
            name = f"export {table}"
            times.setdefault(name, []).append(took)
            ratios.setdefault(name, []).append(took / base)
            rows[name] = result.rows[table]
        took, history = _timed(lambda: History(str(capture)))
        times.setdefault("History index", []).append(took)
        ratios.setdefault("History index", []).append(took / base)
        rng = random.Random(7)
        first, last = T0_NS, T0_NS + (frames - 1) * DT_NS
        for _ in range(samples):
            when = rng.randrange(first, last)
            symbol = rng.choice(("BTC/USD", "ETH/USD"))
            start = time.perf_counter()
            book = history.book_at(symbol, when)
            latencies.append(time.perf_counter() - start)
            assert book is not None and book.valid
        for book in feed.books.values():
            got = history.book_at(book.symbol, last)
            assert got is not None and got.bids() == book.bids() and got.asks() == book.asks()
        history.close()
    assert feed is not None
    check_export(capture, feed, tmp / "book_updates.parquet", tmp / "quotes.parquet")
    base = statistics.median(times["verify replay"])
    print(f"\n{rounds} interleaved rounds; medians", file=out)
    print(
        f"  {'contender':26} {'seconds':>9} {'frames/s':>12} {'rows/s':>12} {'/ verify':>9}",
        file=out,
    )
    report: dict[str, Any] = {"frames": frames, "rounds": rounds}
    for name, values in times.items():
        sec = statistics.median(values)
        ratio = statistics.median(ratios[name]) if name in ratios else 1.0
        row_rate = rows[name] / sec if name in rows else None
        print(
            f"  {name:26} {sec:9.2f} {frames / sec:12,.0f} "
            f"{'' if row_rate is None else f'{row_rate:,.0f}':>12} {ratio:9.1f}",
            file=out,
        )
        report[name] = {
            "seconds": sec,
            "frames_per_s": frames / sec,
            "ratio": ratio,
            "rows": rows.get(name),
        }
    latencies.sort()
    med = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    per_frame = base / frames
    print(
        f"  book_at ({len(latencies)} random times): median {med * 1e3:.2f} ms, "
        f"p99 {p99 * 1e3:.2f} ms = {med / per_frame:,.0f} / {p99 / per_frame:,.0f} frames "
        f"of verify replay (whole file: {frames:,})",
        file=out,
    )
    report["book_at"] = {"median_s": med, "p99_s": p99, "verify_frames_median": med / per_frame}
    for path in tmp.iterdir():
        path.unlink()
    tmp.rmdir()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--session",
        type=int,
        default=100_000,
        help="update frames generated per session (default 100,000)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=10,
        help="sessions in the capture (default 10: 1,000,050 frames)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--samples", type=int, default=200, help="book_at calls per round (default 200)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    run(args.session, args.repeat, args.rounds, args.samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
