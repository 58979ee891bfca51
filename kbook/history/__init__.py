"""Books for research: captures as exact Parquet tables, the book at any moment, pictures.

Optional: needs the ``research`` extra (``pip install 'kbook[research]'``: pyarrow, polars,
duckdb, matplotlib). Submodules:

* :mod:`kbook.history.parquet`: ``export()``/``export_tables()``, captures to Parquet;
* :mod:`kbook.history.history`: :class:`History`, ``book_at()`` with checkpoints, iteration
  and top-of-book series;
* :mod:`kbook.history.plot`: heatmap, depth and spread pictures (matplotlib, Agg);
* :mod:`kbook.cli.history`: the ``kbook export``, ``kbook plot`` and ``kbook book-at``
  commands (importing it loads none of the extra's packages).

The names below are loaded on first use, so ``import kbook.history`` stays cheap.

What it is not: not part of the live client; nothing here is imported by ``import kbook``, and
every number it stores is exact (floats appear only in pictures).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["History", "export", "export_tables", "plot"]

if TYPE_CHECKING:
    from kbook.history.history import History
    from kbook.history.parquet import export, export_tables
    from kbook.history.plot import plot


_HOMES = {"export": "parquet", "export_tables": "parquet", "History": "history", "plot": "plot"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kbook.history' has no attribute {name!r}")
    return getattr(importlib.import_module(f"kbook.history.{home}"), name)
