"""The simulator's market and derivation, without sockets: invariants, statuses, statistics.

The order-by-order book keeps its invariants under long seeded flow for every preset; the thin
pair stays below ten levels; the SHIB-like pair has huge quantities; every engine state is
honoured; ticker and candle figures equal a recomputation from the trades; the client mirrors of
every L2 and L3 depth stay equal to the truth (strict mode); and the modules' doctests run.
"""

from __future__ import annotations

import doctest
import importlib
from decimal import Decimal

import pytest

from kbook.sim import PRESETS, PairMarket
from kbook.sim.feeds import BookView, Level3View, ticker_data
from kbook.sim.wire import fixed, number, round_div


def _market(symbol: str, seed: int = 1, warmup: int = 300) -> PairMarket:
    return PairMarket(
        PRESETS[symbol],
        seed=seed,
        interval_ns=50_000_000,
        start_ns=1_700_000_000 * 10**9,
        warmup=warmup,
    )


@pytest.mark.parametrize("symbol", list(PRESETS))
def test_market_flow_keeps_every_invariant(symbol: str) -> None:
    market = _market(symbol)
    actions: set[str] = set()
    for i in range(3000):
        event = market.step()
        actions.add(event.action)
        if i % 250 == 0:
            market.check()
    market.check()
    assert {"add_near", "add_deep", "cancel", "amend", "take"} <= actions
    assert len(market.bids) > 1 and len(market.asks) > 1


def test_market_thin_pair_never_shows_ten_levels() -> None:
    market = _market("MATIC/GBP")
    for _ in range(5000):
        market.step()
        assert len(market.bids) < 10 and len(market.asks) < 10


def test_market_shib_has_huge_quantities() -> None:
    market = _market("SHIB/USD")
    totals = [lv.total for side in (market.bids, market.asks) for lv in side]
    # More than ten integer digits of SHIB at five decimals: 16+ digit lot counts.
    assert max(totals) > 10**15
    assert any(len(fixed(t, 5).split(".")[0]) >= 10 for t in totals)


def test_market_statuses_are_honoured() -> None:
    market = _market("ETH/USD")
    market.status = "maintenance"
    assert all(not market.step().changes for _ in range(200))
    market.status = "cancel_only"
    events = [market.step() for _ in range(300)]
    assert {c.event for e in events for c in e.changes} == {"delete"}
    assert not any(e.trades for e in events)
    market.status = "post_only"
    events = [market.step() for _ in range(500)]
    assert not any(e.trades for e in events)
    assert "add" in {c.event for e in events for c in e.changes}
    market.status = "online"
    assert any(market.step().trades for _ in range(500))
    market.check()


def test_market_ticker_and_candles_equal_a_recomputation() -> None:
    market = _market("BTC/USD", warmup=2000)
    trades = []
    for _ in range(3000):
        trades += market.step().trades
    data = ticker_data(market)
    day = list(market.day.trades)
    assert data.count == len(day) > 0
    assert day[-1] == (trades[-1].time_ns, trades[-1].price, trades[-1].qty)
    assert all(t > market.time_ns - 86_400 * 10**9 for t, _, _ in day)
    assert data.volume == sum(q for _, _, q in day)
    assert data.vwap == round_div(sum(p * q for _, p, q in day), data.volume)
    assert (data.low, data.high) == (min(p for _, p, _ in day), max(p for _, p, _ in day))
    assert data.open == day[0][1] and data.last == trades[-1].price
    for interval, series in market.candles.items():
        candle = series.current
        assert candle is not None
        inside = [t for t in trades if candle.begin_ns <= t.time_ns < candle.end_ns]
        if len(inside) == candle.trades:
            assert candle.close == inside[-1].price and candle.open == inside[0].price
            assert candle.volume == sum(t.qty for t in inside)
        assert candle.begin_ns % (interval * 60 * 10**9) == 0


@pytest.mark.parametrize("symbol", ["BTC/USD", "MATIC/GBP"])
def test_views_keep_mirrors_equal_to_the_truth_at_every_depth(symbol: str) -> None:
    market = _market(symbol, seed=7)
    views = [BookView(market, d, strict=True) for d in (10, 25, 100, 1000)]
    views3 = [Level3View(market, d, strict=True) for d in (10, 100)]
    published = 0
    for _ in range(600):
        event = market.step()
        for view in (*views, *views3):
            published += view.update(event) is not None  # each update checks its mirror
    assert published > 600


def test_wire_numbers_match_kraken_text() -> None:
    assert number(5660, 4) == "0.566" and number(7400, 1) == "740.0"
    assert number(-17, 5) == "-0.00017" and fixed(500, 8) == "0.00000500"
    assert Decimal(number(123456789012345678, 5)) == Decimal("1234567890123.45678")


@pytest.mark.parametrize(
    "module", ["wire", "market", "feeds", "venue", "faults", "server", "__init__"]
)
def test_module_doctests_pass(module: str) -> None:
    name = "kbook.sim" if module == "__init__" else f"kbook.sim.{module}"
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
