"""Memory of the engine's books, measured with :mod:`tracemalloc`.

The engine allocates its level arrays and buffers with ``PyMem_Malloc``, which tracemalloc
traces, so the traced total of a feed is its whole footprint: level arrays, checksum caches,
``L2Book`` objects, the symbol index, dicts and staging buffers.

* bytes per level: ``MEMORY_BOOKS`` depth-1000 books, full on both sides (2000 levels each), fed
  as snapshots into one feed; the target is at most 64 bytes per level, and the total is the
  1000-symbol x depth-1000 footprint (measured directly, not projected, in a measuring run).
* long run: ``LONG_RUN_MESSAGES`` update messages on one depth-1000 book must not grow traced
  memory beyond a small constant once the first pass has sized every buffer.

What it is not: not a timing benchmark (tracemalloc slows allocation; nothing here is timed).
"""

from __future__ import annotations

from collections.abc import Callable

import workloads
from workloads import Stream

BYTES_PER_LEVEL_TARGET = 64
MEMORY_BOOKS = {False: 1000, True: 50}  # smoke -> books
LONG_RUN_MESSAGES = {False: 200_000, True: 10_000}  # smoke -> update messages
# The loop itself allocates nothing that survives; allow allocator bookkeeping noise only.
LONG_RUN_GROWTH_LIMIT = 4096


def test_memory_bytes_per_level(
    deep_stream: Stream, smoke: bool, note: Callable[[str], None]
) -> None:
    fp = workloads.measure_footprint(deep_stream, MEMORY_BOOKS[smoke])
    note(f"memory: {fp.books} books x {deep_stream.depth} levels/side: {fp.traced_bytes:,} B "
         f"traced = {fp.per_level:.1f} B/level, {fp.per_book / 1024:.1f} KiB/book; "
         f"1000 x 1000 footprint {fp.per_book * 1000 / 2**20:.1f} MiB"
         + (" (projected)" if fp.books != 1000 else " (measured)"))
    assert fp.per_level <= BYTES_PER_LEVEL_TARGET, f"{fp.per_level:.1f} B/level"


def test_memory_long_run_does_not_grow(
    deep_stream: Stream, smoke: bool, note: Callable[[str], None]
) -> None:
    run = workloads.long_run(deep_stream, LONG_RUN_MESSAGES[smoke])
    note(f"long run: {run.messages:,} updates on one depth-1000 book; traced {run.warm_bytes:,} B "
         f"after the first pass, {run.final_bytes:,} B at the end (growth {run.growth:+,} B)")
    assert run.messages >= LONG_RUN_MESSAGES[smoke]
    assert run.growth <= LONG_RUN_GROWTH_LIMIT, f"traced memory grew by {run.growth} B"
