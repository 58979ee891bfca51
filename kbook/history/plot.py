"""Pictures of a captured book: liquidity heatmap, depth chart, spread and mid (matplotlib).

Every picture is drawn from exported columns (:func:`kbook.history.parquet.export_tables`, or
for ``depth`` the exact book of :meth:`kbook.history.History.book_at`) with numpy: the heatmap
samples the book once per time column with ``every_ms`` and lays the levels into an image by
array indexing, so drawing costs the same whether the capture holds a thousand frames or a day.
matplotlib runs on its Agg backend (no display needed); the file type follows the name
(``.png``, ``.svg``, anything matplotlib writes).

Prices and quantities become floats here and only here, for drawing.

What it is not: not an interactive viewer, and not a source of numbers (read the Parquet).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from kbook.history.history import History, to_ns
from kbook.history.parquet import ExportError, export_tables, read_frames

__all__ = ["KINDS", "PlotResult", "plot"]

KINDS = ("heatmap", "depth", "spread")
_COLUMNS = 600  # heatmap time columns across the range
_PRICE_ROWS = 400  # at most this many price rows; finer books are binned
_DEPTH = 25  # levels per side sampled for the heatmap

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PlotResult:
    """What was drawn: the file, its kind, and the time range shown (epoch ns, UTC)."""

    path: str
    kind: str
    symbol: str
    start: int
    end: int


def _span(capture: str) -> tuple[int, int]:
    first = last = None
    for frame in read_frames(capture):
        if frame.received is not None:
            if first is None:
                first = frame.received
            last = frame.received
    if first is None or last is None:
        raise ExportError(f"{capture}: no frame with a receive time to plot")
    return first, last


def _floats(table: pa.Table, name: str) -> F64:
    column = table.column(name)
    return np.asarray(
        pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
    )


def _times(table: pa.Table, name: str = "receive_time") -> npt.NDArray[np.int64]:
    return np.asarray(
        pc.cast(table.column(name), pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64
    )


def _only(table: pa.Table, start: int, end: int) -> pa.Table:
    """Rows of the most common protocol (a symbol may have an L2 and a level3 book) in range."""
    if table.num_rows == 0:
        return table
    if "protocol" in table.column_names:
        counts = pc.value_counts(table.column("protocol")).to_pylist()
        protocol = max(counts, key=lambda c: c["counts"])["values"]
        table = table.filter(pc.equal(table.column("protocol"), protocol))
    t = _times(table)
    return table.filter(pa.array((t >= start) & (t <= end)))


def _title(ax: Any, what: str, symbol: str, source: str, start: int, end: int) -> None:
    fmt = "%Y-%m-%d %H:%M:%S"
    a = np.datetime64(start, "ns").astype("datetime64[ms]").item().strftime(fmt)
    b = np.datetime64(end, "ns").astype("datetime64[ms]").item().strftime(fmt)
    when = f"at {a}" if start == end else f"{a} to {b}"
    ax.set_title(f"{symbol} {what}\n{source}, {when} UTC", fontsize=11)


def _time_axis(ax: Any) -> None:
    import matplotlib.dates as mdates

    # matplotlib.dates has no annotations: these two calls are untyped
    locator = mdates.AutoDateLocator(minticks=4, maxticks=8)  # type: ignore[no-untyped-call]
    formatter = mdates.ConciseDateFormatter(locator, tz="UTC")  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(formatter)
    ax.set_xlabel("time (UTC)")


def _dates(ns: npt.NDArray[np.int64]) -> Any:
    import matplotlib.dates as mdates

    # date2num has no annotations in matplotlib
    return mdates.date2num(  # type: ignore[no-untyped-call]
        ns.astype("datetime64[ns]").astype("datetime64[us]")
    )


def plot(
    capture: str,
    symbol: str,
    out: str,
    *,
    kind: str = "heatmap",
    start: int | str | datetime | None = None,
    end: int | str | datetime | None = None,
    depth: int = _DEPTH,
) -> PlotResult:
    """Draw one picture of ``symbol`` from ``capture`` into ``out``.

    :param kind: ``heatmap`` (resting quantity by price over time, best bid/ask lines sampled
        with it, trades as marks sized by quantity), ``depth`` (cumulative depth at ``end``),
        or ``spread`` (mid and spread over time)
    :param start: first time shown (default: the capture's first frame); see
        :func:`kbook.history.history.to_ns`
    :param end: last time shown (default: the capture's last frame)
    :param depth: levels per side sampled for the heatmap
    :raises ExportError: unknown kind, an empty range, or no book of ``symbol``
    :raises CaptureError: unreadable capture
    """
    if kind not in KINDS:
        raise ExportError(f"unknown plot kind {kind!r}; kinds: {', '.join(KINDS)}")
    import matplotlib

    matplotlib.use("Agg")
    first, last = _span(capture)
    lo = first if start is None else to_ns(start)
    hi = last if end is None else to_ns(end)
    if hi < lo:
        raise ExportError("the range ends before it starts")
    source = os.path.basename(capture)
    if kind == "heatmap":
        fig = _heatmap(capture, symbol, lo, hi, depth, source)
    elif kind == "spread":
        fig = _spread(capture, symbol, lo, hi, source)
    else:
        fig = _depth(capture, symbol, hi, lo, source)
    fig.savefig(out, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return PlotResult(out, kind, symbol, lo, hi)


def _heatmap(capture: str, symbol: str, lo: int, hi: int, depth: int, source: str) -> Any:
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap, LogNorm

    every_ms = max(1, math.ceil((hi - lo) / _COLUMNS / 1_000_000))
    tables, _ = export_tables(
        capture, ["book_snapshots", "trades"], depth=depth, every_ms=every_ms, symbols=[symbol]
    )
    snaps = _only(tables["book_snapshots"], lo - every_ms * 1_000_000, hi + every_ms * 1_000_000)
    trades = _only(tables["trades"], lo, hi)
    if snaps.num_rows == 0:
        raise ExportError(f"no book of {symbol} between the times asked")
    precision = json.loads(tables["book_snapshots"].schema.metadata[b"kbook.precision"])
    pp = precision.get(symbol, [0, 0])[0]
    tick = 10.0**-pp
    bin_ns = every_ms * 1_000_000
    ncols = max(1, int((hi - lo) // bin_ns) + 1)
    t = _times(snaps)
    col_of_row = (t - lo) // bin_ns - 1  # a row closes the interval before its stamp
    # each column shows the last row at or before it (the book holds until its next frame)
    row_for_col = np.searchsorted(col_of_row, np.arange(ncols), side="right") - 1
    prices = np.stack(
        [_floats(snaps, f"{s}_price_{r}") for s in ("bid", "ask") for r in range(depth)], axis=1
    )
    qtys = np.stack(
        [_floats(snaps, f"{s}_qty_{r}") for s in ("bid", "ask") for r in range(depth)], axis=1
    )
    shown = row_for_col >= 0
    p = prices[row_for_col[shown]]
    q = qtys[row_for_col[shown]]
    cols = np.broadcast_to(np.nonzero(shown)[0][:, None], p.shape)
    ok = np.isfinite(p) & np.isfinite(q) & (q > 0)
    if not ok.any():
        raise ExportError(f"{symbol} has no valid book between the times asked")
    pmin, pmax = float(np.nanmin(p[ok])), float(np.nanmax(p[ok]))
    steps = int(round((pmax - pmin) / tick)) + 1
    per_row = max(1, math.ceil(steps / _PRICE_ROWS))
    nrows = math.ceil(steps / per_row)
    rows = (np.rint((p[ok] - pmin) / tick).astype(np.int64)) // per_row
    grid = np.zeros((nrows, ncols), dtype=np.float64)
    np.add.at(grid, (rows, cols[ok]), q[ok])
    grid[grid == 0] = np.nan

    fig, ax = plt.subplots(figsize=(11, 6), layout="constrained")
    x0, x1 = _dates(np.array([lo, lo + ncols * bin_ns], dtype=np.int64))
    y0, y1 = pmin - tick * per_row / 2, pmin + tick * per_row * (nrows - 0.5)
    positive = grid[np.isfinite(grid)]
    # percentiles, so a few dust orders or one huge level do not wash out the rest
    vmin, vmax = np.percentile(positive, [5, 99.5])
    ax.set_facecolor("#0b0b12")
    # plasma without its darkest fifth: the emptiest cell must not look like an empty price
    cmap = ListedColormap(plt.get_cmap("plasma")(np.linspace(0.2, 1.0, 256)))
    image = ax.imshow(
        grid,
        origin="lower",
        aspect="auto",
        extent=(x0, x1, y0, y1),
        cmap=cmap,
        interpolation="nearest",
        norm=LogNorm(vmin=float(vmin), vmax=float(max(vmax, vmin * 1.01))),
    )
    fig.colorbar(image, ax=ax, label="resting quantity (base units, log scale)", pad=0.01)
    # best bid and ask per column, from the same samples as the image (rank 0 of each side)
    col_x = _dates(lo + np.nonzero(shown)[0].astype(np.int64) * bin_ns)
    ax.plot(
        col_x, p[:, 0], drawstyle="steps-post", color="#00e5ff", linewidth=1.3, label="best bid"
    )
    ax.plot(
        col_x, p[:, depth], drawstyle="steps-post", color="#ff3b3b", linewidth=1.3, label="best ask"
    )
    if trades.num_rows:
        size = _floats(trades, "qty")
        buy = np.asarray(trades.column("side").to_pylist()) == "buy"
        area = 12 + 200 * size / max(float(size.max()), 1e-12)
        tt = _dates(_times(trades))
        tp = _floats(trades, "price")
        ax.scatter(
            tt[buy],
            tp[buy],
            s=area[buy],
            facecolors="none",
            edgecolors="#ffffff",
            linewidths=0.9,
            label="trade, buyer took",
        )
        ax.scatter(
            tt[~buy],
            tp[~buy],
            s=area[~buy],
            facecolors="none",
            edgecolors="#ff5ec4",
            linewidths=0.9,
            label="trade, seller took",
        )
    ax.set_xlim(x0, _dates(np.array([hi], dtype=np.int64))[0])
    ax.set_ylim(y0, y1)
    ax.set_ylabel("price (quote currency)")
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
    _time_axis(ax)
    levels = pc.max(pc.max_element_wise(snaps.column("bid_levels"), snaps.column("ask_levels")))
    per_side = min(depth, int(levels.as_py() or depth))
    _title(
        ax,
        f"liquidity heatmap (top {per_side} levels per side, {every_ms} ms columns)",
        symbol,
        source,
        lo,
        hi,
    )
    return fig


def _spread(capture: str, symbol: str, lo: int, hi: int, source: str) -> Any:
    import matplotlib.pyplot as plt

    tables, _ = export_tables(capture, ["quotes"], symbols=[symbol])
    quotes = _only(tables["quotes"], lo, hi)
    if quotes.num_rows == 0:
        raise ExportError(f"no quote of {symbol} between the times asked")
    t = _dates(_times(quotes))
    bid, ask = _floats(quotes, "bid_price"), _floats(quotes, "ask_price")
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 6), sharex=True, layout="constrained", height_ratios=(2, 1)
    )
    top.plot(
        t, (bid + ask) / 2, drawstyle="steps-post", color="#1f77b4", linewidth=1.0, label="mid"
    )
    top.fill_between(
        t, bid, ask, step="post", color="#1f77b4", alpha=0.25, label="best bid to best ask"
    )
    top.set_ylabel("price (quote currency)")
    top.ticklabel_format(axis="y", useOffset=False, style="plain")
    top.legend(loc="upper left", fontsize=8)
    bottom.plot(t, ask - bid, drawstyle="steps-post", color="#d62728", linewidth=1.0)
    bottom.set_ylabel("spread (quote currency)")
    bottom.set_ylim(bottom=0)
    _time_axis(bottom)
    _title(top, "mid and spread", symbol, source, lo, hi)
    return fig


def _depth(capture: str, symbol: str, at: int, lo: int, source: str) -> Any:
    import matplotlib.pyplot as plt

    with History(capture) as history:
        book = history.book_at(symbol, at)
    if book is None:
        raise ExportError(f"no book of {symbol} at that time")
    if not book.valid:
        raise ExportError(f"the book of {symbol} was invalid at that time (checksum mismatch)")
    bids = np.array([(p, q) for p, q, *_ in book.bids()], dtype=np.float64).reshape(-1, 2)
    asks = np.array([(p, q) for p, q, *_ in book.asks()], dtype=np.float64).reshape(-1, 2)
    pscale, qscale = 10.0**-book.price_precision, 10.0**-book.qty_precision
    fig, ax = plt.subplots(figsize=(11, 6), layout="constrained")
    if len(bids):
        ax.fill_between(
            bids[:, 0] * pscale,
            np.cumsum(bids[:, 1]) * qscale,
            step="post",
            color="#2ca02c",
            alpha=0.4,
            label=f"bids ({len(bids)} levels)",
        )
        ax.step(bids[:, 0] * pscale, np.cumsum(bids[:, 1]) * qscale, where="post", color="#2ca02c")
    if len(asks):
        ax.fill_between(
            asks[:, 0] * pscale,
            np.cumsum(asks[:, 1]) * qscale,
            step="post",
            color="#d62728",
            alpha=0.4,
            label=f"asks ({len(asks)} levels)",
        )
        ax.step(asks[:, 0] * pscale, np.cumsum(asks[:, 1]) * qscale, where="post", color="#d62728")
    ax.set_xlabel("price (quote currency)")
    ax.set_ylabel("cumulative quantity (base units)")
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.legend(loc="upper center", fontsize=9)
    _title(ax, "cumulative depth", symbol, source, at, at)
    del lo
    return fig
