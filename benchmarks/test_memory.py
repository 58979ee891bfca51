"""Memory of the engine's books, measured with :mod:`tracemalloc`.

The engine allocates its level arrays and buffers with ``PyMem_Malloc``, which tracemalloc
traces, so the traced total of a feed is its whole footprint: level arrays, checksum caches,
``L2Book`` objects, the symbol index, dicts and staging buffers.

* bytes per level: ``MEMORY_BOOKS`` depth-1000 books, full on both sides (2000 levels each), fed
  as snapshots into one feed; the target is at most 64 bytes per level, and the total is the
  1000-symbol x depth-1000 footprint (measured directly, not projected, in a measuring run).
* long run: ``LONG_RUN_MESSAGES`` update messages on one depth-1000 book must not grow traced
  memory beyond a small constant once the first pass has sized every buffer.
* level3 bytes per resting order: ``L3_MEMORY_BOOKS`` depth-1000 level3 books from one snapshot
  (about 3.9 orders per level), traced and as ``Level3Book.memory_bytes()`` reports it; the
  target is at most 96 bytes per resting order.
* level3 long run: ``L3_LONG_RUN_EVENTS`` order events on one depth-1000 level3 book after a
  single snapshot (the stream replayed in a checksum-valid cycle, see ``workloads.L3Stream``);
  the traced memory over the second half of the run must stay flat.

What it is not: not a timing benchmark (tracemalloc slows allocation; nothing here is timed).
"""

from __future__ import annotations

from collections.abc import Callable

import workloads
from workloads import L3Stream, Stream

BYTES_PER_LEVEL_TARGET = 64
MEMORY_BOOKS = {False: 1000, True: 50}  # smoke -> books
LONG_RUN_MESSAGES = {False: 200_000, True: 10_000}  # smoke -> update messages
# The loop itself allocates nothing that survives; allow allocator bookkeeping noise only.
LONG_RUN_GROWTH_LIMIT = 4096


def test_memory_bytes_per_level(
    deep_stream: Stream, smoke: bool, note: Callable[[str], None]
) -> None:
    fp = workloads.measure_footprint(deep_stream, MEMORY_BOOKS[smoke])
    note(
        f"memory: {fp.books} books x {deep_stream.depth} levels/side: {fp.traced_bytes:,} B "
        f"traced = {fp.per_level:.1f} B/level, {fp.per_book / 1024:.1f} KiB/book; "
        f"1000 x 1000 footprint {fp.per_book * 1000 / 2**20:.1f} MiB"
        + (" (projected)" if fp.books != 1000 else " (measured)")
    )
    assert fp.per_level <= BYTES_PER_LEVEL_TARGET, f"{fp.per_level:.1f} B/level"


def test_memory_long_run_does_not_grow(
    deep_stream: Stream, smoke: bool, note: Callable[[str], None]
) -> None:
    run = workloads.long_run(deep_stream, LONG_RUN_MESSAGES[smoke])
    note(
        f"long run: {run.messages:,} updates on one depth-1000 book; traced {run.warm_bytes:,} B "
        f"after the first pass, {run.final_bytes:,} B at the end (growth {run.growth:+,} B)"
    )
    assert run.messages >= LONG_RUN_MESSAGES[smoke]
    assert run.growth <= LONG_RUN_GROWTH_LIMIT, f"traced memory grew by {run.growth} B"


L3_BYTES_PER_ORDER_TARGET = 96
L3_MEMORY_BOOKS = {False: 100, True: 10}  # smoke -> books
L3_LONG_RUN_EVENTS = {False: 10_000_000, True: 200_000}  # smoke -> order events
# Flat means flat: the second half of the run may only show allocator bookkeeping noise.
L3_FLAT_LIMIT = 4096


def test_l3_memory_bytes_per_order(
    deep_l3_stream: L3Stream, smoke: bool, note: Callable[[str], None]
) -> None:
    fp = workloads.measure_l3_footprint(deep_l3_stream, L3_MEMORY_BOOKS[smoke])
    note(
        f"level3 memory: {fp.books} books x depth {deep_l3_stream.depth}, {fp.orders:,} orders on "
        f"{fp.levels:,} levels: {fp.traced_bytes:,} B traced = {fp.per_order:.1f} B/order "
        f"(memory_bytes(): {fp.native_per_order:.1f} B/order); feed staging buffers "
        f"{fp.feed_bytes:,} B once per feed"
    )
    assert fp.native_per_order <= fp.per_order
    assert fp.per_order <= L3_BYTES_PER_ORDER_TARGET, f"{fp.per_order:.1f} B/order"


def test_l3_memory_long_run_is_flat(
    deep_l3_stream: L3Stream, smoke: bool, note: Callable[[str], None]
) -> None:
    run = workloads.l3_long_run(deep_l3_stream, L3_LONG_RUN_EVENTS[smoke])
    note(
        f"level3 long run: {run.events:,} events ({run.messages:,} messages, {run.cycles} cycles, "
        f"+{run.rewind_events:,} orders of re-sent snapshots) on one depth-1000 book; "
        f"traced {run.warm_bytes:,} B after the first cycle, {run.final_bytes:,} B at the end "
        f"(growth {run.growth:+,} B, settled after {run.settled_after:,} events; second half "
        f"{run.second_half_growth:+,} B)"
    )
    assert run.events >= L3_LONG_RUN_EVENTS[smoke]
    assert run.second_half_growth <= L3_FLAT_LIMIT, f"grew {run.second_half_growth} B"
    assert max(run.traced) - run.final_bytes <= L3_FLAT_LIMIT
