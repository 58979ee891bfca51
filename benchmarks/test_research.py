"""Research benchmark smoke: export and ``book_at`` over a generated capture, checked afterwards.

The capture is ``research_bench.make_capture``'s: seeded BTC/USD and ETH/USD book sessions
repeated, every checksum matching. With ``--benchmark-disable`` (CI) it is small (2 x 2,000
updates) and each contender runs once; a measuring run uses 2 x 20,000. The full comparison
against ``kbook verify``'s replay, with same-run ratios and 1,000,000 frames, is
``research_bench.py``; this file keeps its assertions running in CI.

What it is not: not the source of the README's figures (``research_bench.py`` is).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import research_bench
from pytest_benchmark.fixture import BenchmarkFixture

pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    smoke = bool(request.config.getoption("benchmark_disable", default=False))
    path = tmp_path_factory.mktemp("research") / "long.capture"
    research_bench.make_capture(path, 2_000 if smoke else 20_000, 2)
    return path


def test_verify_replay(benchmark: BenchmarkFixture, capture: Path) -> None:
    benchmark.group = "research"
    feed = benchmark.pedantic(research_bench.verify_replay, args=(capture,), rounds=3, iterations=1)
    assert feed.checksum_mismatches == 0 and feed.checksums_verified > 0


def test_export_book_updates_and_quotes(
    benchmark: BenchmarkFixture, capture: Path, tmp_path: Path
) -> None:
    from kbook.history import export

    benchmark.group = "research"
    updates, quotes = tmp_path / "u.parquet", tmp_path / "q.parquet"

    def both() -> None:
        export(str(capture), str(updates), "book_updates")
        export(str(capture), str(quotes), "quotes")

    benchmark.pedantic(both, rounds=3, iterations=1)
    feed = research_bench.verify_replay(capture)
    research_bench.check_export(capture, feed, updates, quotes)


def test_book_at(benchmark: BenchmarkFixture, capture: Path) -> None:
    from kbook.history import History

    benchmark.group = "research"
    feed = research_bench.verify_replay(capture)
    with History(str(capture), checkpoint_every=500) as history:
        rng = random.Random(3)
        first = research_bench.T0_NS
        last = first + (feed.frames - 1) * research_bench.DT_NS
        times = [rng.randrange(first, last) for _ in range(50)]

        def many() -> int:
            valid = 0
            for when in times:
                book = history.book_at("BTC/USD", when)
                valid += book is not None and book.valid
            return valid

        assert benchmark.pedantic(many, rounds=3, iterations=1) == len(times)
        for book in feed.books.values():
            got = history.book_at(book.symbol, last)
            assert got is not None
            assert got.bids() == book.bids() and got.asks() == book.asks()
