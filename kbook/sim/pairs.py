"""The simulator's instruments: pair specifications, the built-in presets and their assets.

A :class:`PairSpec` carries what the ``instrument`` channel announces (precisions, increments,
minimums) and what the order flow needs to look plausible (a starting mid price, a typical order
size, how many price levels each side should hold). The presets cover the cases a client must get
right: a deep book with one-decimal prices (BTC/USD, whose v1 name is XBT/USD), two-decimal prices
(ETH/USD), seven-decimal prices and a renamed v1 asset (DOGE/USD is XDG/USD in v1), quantities
far beyond a float's exact range (SHIB/USD), and a thin book with fewer than ten levels per side
(MATIC/GBP).

What it is not: a copy of Kraken's asset-pair table. The precisions of the presets follow Kraken's
published ones; the prices, sizes and depths are invented.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ASSETS", "PRESETS", "AssetSpec", "PairSpec", "resolve_pairs"]


@dataclass(frozen=True, slots=True)
class AssetSpec:
    """One asset of the ``instrument`` channel's ``assets`` list."""

    id: str
    precision: int
    precision_display: int
    borrowable: bool = False
    collateral_value: str = "0.0"
    margin_rate: str | None = None


@dataclass(frozen=True, slots=True)
class PairSpec:
    """One tradable pair: what clients are told about it, and how its order flow behaves.

    Prices and sizes are given as decimal text so nothing float-shaped reaches the market; they
    are converted to integer ticks and lots once, by :class:`kbook.sim.market.PairMarket`.

    :param symbol: v2 name, ``BASE/QUOTE`` (``BTC/USD``).
    :param v1_name: v1 name (``XBT/USD``), as REST AssetPairs ``wsname`` reports it.
    :param price_precision: decimals of a price; one tick is ``10**-price_precision``.
    :param qty_precision: decimals of a quantity; one lot is ``10**-qty_precision``.
    :param mid: starting mid price.
    :param order_size: a typical resting order's quantity; actual sizes spread around it.
    :param levels: price levels per side the flow keeps the book near.
    :param level_gap: mean distance in ticks between neighbouring levels.
    :param max_spread: spread in ticks beyond which new orders go inside the spread.
    :param qty_min: smallest order quantity (``instrument``: ``qty_min``).
    :param cost_min: smallest order cost in quote currency (``instrument``: ``cost_min``).
    :param cost_precision: decimals of an order cost.
    :param marginable: announced as-is; margin fields are announced for marginable pairs.
    """

    symbol: str
    v1_name: str
    price_precision: int
    qty_precision: int
    mid: str
    order_size: str
    levels: int
    level_gap: int = 2
    max_spread: int = 20
    qty_min: str = "0.0001"
    cost_min: str = "0.5"
    cost_precision: int = 5
    marginable: bool = False

    def __post_init__(self) -> None:
        if "/" not in self.symbol or "/" not in self.v1_name:
            raise ValueError(f"symbols are BASE/QUOTE, got {self.symbol!r} / {self.v1_name!r}")
        if not (0 <= self.price_precision <= 18 and 0 <= self.qty_precision <= 18):
            raise ValueError("precisions must be within 0..18")
        if self.levels < 2 or self.level_gap < 1 or self.max_spread < 1:
            raise ValueError("levels must be >= 2, level_gap and max_spread >= 1")

    @property
    def base(self) -> str:
        return self.symbol.partition("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.partition("/")[2]


#: Assets the presets trade; a custom pair's unknown asset is announced with 8/5 precision.
ASSETS: dict[str, AssetSpec] = {
    spec.id: spec
    for spec in (
        AssetSpec("USD", 4, 2, True, "1.0", "0.015"),
        AssetSpec("GBP", 4, 2, True, "1.0", "0.015"),
        AssetSpec("BTC", 10, 5, True, "1.0", "0.01"),
        AssetSpec("ETH", 10, 5, True, "1.0", "0.01"),
        AssetSpec("DOGE", 8, 2, False, "0.0"),
        AssetSpec("SHIB", 5, 0, False, "0.0"),
        AssetSpec("MATIC", 10, 5, False, "0.0"),
    )
}

#: The built-in pairs, keyed by v2 symbol; ``pairs=None`` means all of them.
PRESETS: dict[str, PairSpec] = {
    spec.symbol: spec
    for spec in (
        # Deep enough for depth-1000 subscriptions to stay full.
        PairSpec(
            "BTC/USD",
            "XBT/USD",
            1,
            8,
            mid="65000.0",
            order_size="0.05",
            levels=1200,
            level_gap=2,
            max_spread=30,
            qty_min="0.0001",
            cost_min="0.5",
            cost_precision=5,
            marginable=True,
        ),
        PairSpec(
            "ETH/USD",
            "ETH/USD",
            2,
            8,
            mid="3500.00",
            order_size="0.8",
            levels=400,
            level_gap=3,
            max_spread=40,
            qty_min="0.002",
            cost_min="0.5",
            cost_precision=5,
            marginable=True,
        ),
        # v1 still calls DOGE by its old Kraken code.
        PairSpec(
            "DOGE/USD",
            "XDG/USD",
            7,
            8,
            mid="0.1500000",
            order_size="4000",
            levels=200,
            level_gap=20,
            max_spread=300,
            qty_min="50",
            cost_min="0.5",
            cost_precision=5,
        ),
        # Billions of units per order at 5 decimals: 15-17 digit lot counts, far beyond what a
        # float holds exactly (2**53), so float-parsing clients fail here first.
        PairSpec(
            "SHIB/USD",
            "SHIB/USD",
            8,
            5,
            mid="0.00002500",
            order_size="2000000000",
            levels=120,
            level_gap=1,
            max_spread=6,
            qty_min="200000",
            cost_min="0.5",
            cost_precision=5,
        ),
        # Thin: the flow never lets a side reach ten levels.
        PairSpec(
            "MATIC/GBP",
            "MATIC/GBP",
            4,
            8,
            mid="0.5000",
            order_size="1500",
            levels=6,
            level_gap=3,
            max_spread=25,
            qty_min="4",
            cost_min="0.43",
            cost_precision=6,
        ),
    )
}


def resolve_pairs(pairs: Iterable[str | PairSpec] | None) -> list[PairSpec]:
    """Turn the ``pairs`` argument of the simulator into specifications.

    :param pairs: ``None`` for every preset, or preset names (v2 or v1 spelling) and/or
        :class:`PairSpec` objects.
    :raises ValueError: on an unknown name, a duplicate, or an empty selection.
    """
    if pairs is None:
        return list(PRESETS.values())
    by_v1 = {spec.v1_name: spec for spec in PRESETS.values()}
    out: list[PairSpec] = []
    for item in pairs:
        if isinstance(item, PairSpec):
            spec = item
        else:
            name = item.strip().upper()
            found = PRESETS.get(name) or by_v1.get(name)
            if found is None:
                known = ", ".join(PRESETS)
                raise ValueError(f"unknown pair {item!r}; built-in pairs are {known}")
            spec = found
        if any(spec.symbol == s.symbol or spec.v1_name == s.v1_name for s in out):
            raise ValueError(f"pair {spec.symbol} given twice")
        out.append(spec)
    if not out:
        raise ValueError("at least one pair is needed")
    return out
