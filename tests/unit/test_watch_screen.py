"""The ``kbook watch`` screen at fixed terminal sizes: what it shows, and that it never wraps.

The screen is rendered by :func:`kbook.cli.watch.render_lines` and printed through a recording
``rich`` console of the terminal's size, as ``rich.live`` would; the tmux tests in
``tests/integration/test_watch_tmux.py`` check the same in a real terminal.
"""

from __future__ import annotations

import io
from collections import deque
from decimal import Decimal

import pytest
from rich.console import Console, Group

from kbook._core import L2Book, Level3Book
from kbook.cli.watch import WatchState, render_lines
from kbook.client.latency import LatencyStats
from kbook.messages import Ticker, Trade


def _l2(symbol: str = "BTC/USD") -> L2Book:
    book = L2Book(symbol, 10, 1, 8)
    bids = [(f"{65000 - i}.0", f"{i + 1}.5") for i in range(10)]
    asks = [(f"{65001 + i}.0", f"{i + 1}.25") for i in range(10)]
    book.apply(bids, asks, snapshot=True)
    return book


def _l3() -> Level3Book:
    book = Level3Book("BTC/USD", 10, 1, 8)
    events = [("bid", "add", f"OB{i}", f"{65000 - i // 2}.0", "0.5") for i in range(8)]
    events += [("ask", "add", f"OA{i}", f"{65001 + i // 2}.0", "0.25") for i in range(8)]
    book.apply(events, snapshot=True)
    return book


def _state(books: list[L2Book | Level3Book]) -> WatchState:
    state = WatchState(books)
    for book in books:
        state.trades[book.symbol] = deque(
            Trade(
                book.symbol,
                "buy" if i % 2 else "sell",
                Decimal("65000.5"),
                Decimal("0.01"),
                "limit",
                f"2026-12-05T03:0{i}:00.000000Z",
            )
            for i in range(5)
        )
        state.tickers[book.symbol] = Ticker(
            book.symbol,
            Decimal("65000"),
            Decimal("1"),
            Decimal("65001"),
            Decimal("1"),
            Decimal("65000.5"),
            Decimal("12.5"),
            Decimal("65000"),
            Decimal("64000"),
            Decimal("66000"),
            change_pct=Decimal("0.5"),
        )
    state.rate = 1234.0
    state.exchange = LatencyStats(100, 100, 1.5e6, 2e6, 4e6, 5e6, 6e6)
    state.callback = LatencyStats(100, 100, 9e3, 1e4, 2e4, 3e4, 4e4)
    return state


def _screen(state: WatchState, width: int, height: int) -> list[str]:
    console = Console(
        width=width,
        height=height,
        record=True,
        force_terminal=True,
        color_system="truecolor",
        file=io.StringIO(),
    )
    lines = render_lines(state, width, height)
    assert len(lines) == height
    assert all(line.cell_len == width for line in lines)
    console.print(Group(*lines))
    text = console.export_text()
    rows = text.rstrip("\n").split("\n")
    assert len(rows) == height, "a line wrapped"
    return rows


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_watch_screen_l2_fits_and_shows_the_ladder(size: tuple[int, int]) -> None:
    rows = _screen(_state([_l2()]), *size)
    text = "\n".join(rows)
    assert "BTC/USD" in rows[0] and "VALID" in rows[0]
    assert "spread 1.0 (0.15 bps)" in rows[0] and "mid 65000.50" in rows[0]
    assert "65001.0" in text and "65000.0" in text
    assert "4.00000000" in text  # cumulative bid size of the two best levels: 1.5 + 2.5
    assert "1,234 msg/s" in rows[-3] and "mismatches 0" in rows[-3]
    assert "exch→recv 1.5ms/4.0ms" in rows[-2] and "recv→cb 9.0µs/20.0µs" in rows[-2]
    assert "q quit" in rows[-1] and "p pause" in rows[-1]
    if size[0] >= 90:
        assert "trades" in text and "03:03:00 buy" in text
    else:
        assert "last trade sell 65000.5 x 0.01" in text


def test_watch_screen_shows_state_unmistakably() -> None:
    book = _l2()
    state = _state([book])
    state.live = False
    assert "DISCONNECTED" in _screen(state, 80, 24)[0]
    state.live = True
    state.resyncing.add("BTC/USD")
    assert "RESYNCING" in _screen(state, 80, 24)[0]
    state.resyncing.clear()
    book.invalidate()
    assert "STALE" in _screen(state, 80, 24)[0]


def test_watch_screen_level3_shows_counts_and_the_queue() -> None:
    rows = _screen(_state([_l3()]), 80, 24)
    text = "\n".join(rows)
    assert "L3 depth 10" in rows[0] and "#" in text
    assert "bid queue: OB0 0.50000000" in text and "OB1 0.50000000" in text
    assert "ask queue: OA0 0.25000000" in text


def test_watch_screen_many_symbols_share_a_grid() -> None:
    books: list[L2Book | Level3Book] = [
        _l2(s) for s in ("BTC/USD", "ETH/USD", "XBT/EUR", "DOGE/USD")
    ]
    rows = _screen(_state(books), 200, 60)
    assert all(s in rows[0] for s in ("BTC/USD", "ETH/USD", "XBT/EUR"))  # three across
    assert any("DOGE/USD" in r for r in rows[1:])
    small = _screen(_state(books), 80, 24)  # one column: the panels get shorter, never wrap
    assert sum("VALID" in r for r in small) == 4


def test_watch_screen_depth_shown_follows_levels() -> None:
    state = _state([_l2()])
    state.levels = 3
    rows = _screen(state, 200, 60)
    ladder = [r for r in rows if r.startswith(" 6")]
    assert len(ladder) == 6
    assert "depth shown (3)" in rows[-1]
