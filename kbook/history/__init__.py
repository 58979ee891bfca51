"""Books for research: captures as exact Parquet tables, the book at any moment, pictures.

Optional: needs the ``research`` extra (``pip install 'kbook[research]'``: pyarrow, polars,
duckdb, matplotlib). Submodules:

* :mod:`kbook.history.export`: ``export()``/``export_tables()``, captures to Parquet;
* :mod:`kbook.history.history`: :class:`History`, ``book_at()`` with checkpoints, iteration
  and top-of-book series;
* :mod:`kbook.history.plot`: heatmap, depth and spread pictures (matplotlib, Agg);
* :mod:`kbook.history.cli`: the ``kbook export`` and ``kbook plot`` commands.

What it is not: not part of the live client; nothing here is imported by ``import kbook``, and
every number it stores is exact (floats appear only in pictures).
"""

from __future__ import annotations

__all__ = ["History", "export", "export_tables"]

from kbook.history.export import export, export_tables
from kbook.history.history import History
