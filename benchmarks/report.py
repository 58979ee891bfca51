"""Print the benchmark results tables (Markdown) for ``benchmarks/README.md``.

Times the same workloads as ``test_l2.py`` and ``test_l3.py`` directly with
``time.perf_counter_ns``: every round
runs every contender of every stream once, in turn, so machine noise (a shared, noisy VM) hits
them alike; each contender's figure is its best round, and the ratios come from the same run.
Every workload's result is checked exactly as in the pytest suite before anything is printed.

Usage::

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/report.py [--rounds 15]

What it is not: not a replacement for ``pytest benchmarks`` (which keeps history and
statistics), and its absolute nanoseconds describe this machine only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import orjson
import workloads
from workloads import L3_DEPTHS, STREAMS, L3Stream, Stream

import kbook
from kbook._core import PROFILE_GUIDED

ROOT = Path(__file__).resolve().parent.parent
TARGET_NS = 400
TARGET_DEPTH_RATIO = 1.5
TARGET_BYTES_PER_LEVEL = 64
L3_TARGET_NS = 1000
L3_TARGET_BYTES_PER_ORDER = 96
L3_FLAT_LIMIT = 4096
CHECKSUM_LOOP = 2000  # calls per timed checksum round


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}; "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "kbook"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out + (" + uncommitted kbook/ changes" if dirty else "")


def _floor(updates: tuple[bytes, ...]) -> None:
    """The same interpreter loop as the contenders, calling a trivial C function."""
    fn = len
    for frame in updates:
        fn(frame)


# -- L2 streams -----------------------------------------------------------------------------------


def time_streams(
    streams: dict[tuple[str, int], Stream], rounds: int
) -> dict[tuple[str, int], dict[str, list[int]]]:
    """Per stream and contender, the ns per message of every round."""
    out: dict[tuple[str, int], dict[str, list[int]]] = {
        key: {"engine": [], "orjson": [], "model": [], "floor": []} for key in streams
    }
    for _ in range(rounds):
        for key, s in streams.items():
            per = out[key]
            n, nm = len(s.updates), len(s.model_updates())
            feed = workloads.prepare_engine(s)
            t0 = time.perf_counter_ns()
            workloads.run_engine(feed, s.updates)
            per["engine"].append((time.perf_counter_ns() - t0) / n)
            workloads.check_engine(s, feed)

            t0 = time.perf_counter_ns()
            last = workloads.run_orjson(s.updates)
            per["orjson"].append((time.perf_counter_ns() - t0) / n)
            workloads.check_orjson(s, last)

            ref = workloads.prepare_model(s)
            t0 = time.perf_counter_ns()
            workloads.run_model(ref, s.model_updates())
            per["model"].append((time.perf_counter_ns() - t0) / nm)
            workloads.check_model(s, ref)

            t0 = time.perf_counter_ns()
            _floor(s.updates)
            per["floor"].append((time.perf_counter_ns() - t0) / n)
    return out


def time_l3_streams(streams: dict[int, L3Stream], rounds: int) -> dict[int, dict[str, list[float]]]:
    """Per level3 stream and contender, the ns per message of every round."""
    out: dict[int, dict[str, list[float]]] = {
        key: {"engine": [], "orjson": [], "model": [], "floor": []} for key in streams
    }
    for _ in range(rounds):
        for key, s in streams.items():
            per = out[key]
            n, nm = len(s.updates), len(s.model_updates())
            feed = workloads.prepare_l3_engine(s)
            t0 = time.perf_counter_ns()
            workloads.run_engine(feed, s.updates)
            per["engine"].append((time.perf_counter_ns() - t0) / n)
            workloads.check_l3_engine(s, feed)

            t0 = time.perf_counter_ns()
            last = workloads.run_orjson(s.updates)
            per["orjson"].append((time.perf_counter_ns() - t0) / n)
            workloads.check_l3_orjson(s, last)

            ref = workloads.prepare_l3_model(s)
            t0 = time.perf_counter_ns()
            workloads.run_model(ref, s.model_updates())
            per["model"].append((time.perf_counter_ns() - t0) / nm)
            workloads.check_l3_model(s, ref)

            t0 = time.perf_counter_ns()
            _floor(s.updates)
            per["floor"].append((time.perf_counter_ns() - t0) / n)
    return out


def _median_iqr(values: list[float]) -> tuple[float, str]:
    """Median and interquartile range of per-round ratios."""
    if len(values) < 2:
        return values[0], f"{values[0]:.2f}–{values[0]:.2f}"
    q = statistics.quantiles(values, n=4)
    return statistics.median(values), f"{q[0]:.2f}–{q[2]:.2f}"


# -- checksum -------------------------------------------------------------------------------------


def _checksum_loops(bench: workloads.ChecksumBench, k: int) -> dict[str, Callable[[], None]]:
    book = bench.book
    apply, checksum, full = book.apply, book.checksum, book._checksum_full
    a = [(bench.price, workloads._QTY_A)]
    b = [(bench.price, workloads._QTY_B)]
    crc, prebuilt = zlib.crc32, bench.prebuilt

    def change_only() -> None:
        for _ in range(k):
            apply(a, (), checksum=None)
            apply(b, (), checksum=None)

    def change_checksum() -> None:
        for _ in range(k):
            apply(a, (), checksum=None)
            checksum()
            apply(b, (), checksum=None)
            checksum()

    def cached() -> None:
        for _ in range(k):
            checksum()
            checksum()

    def rebuild() -> None:
        for _ in range(k):
            full()
            full()

    def crc_only() -> None:
        for _ in range(k):
            crc(prebuilt)
            crc(prebuilt)

    return {
        "change": change_only,
        "change+checksum": change_checksum,
        "cached": cached,
        "full": rebuild,
        "crc": crc_only,
    }


def time_checksum(deep: Stream, rounds: int) -> tuple[dict[str, dict[str, float]], int]:
    """Best ns per operation (two operations per loop turn) of each loop, ranks interleaved."""
    benches = {
        name: workloads.checksum_bench(deep, rank)
        for name, rank in workloads.CHECKSUM_RANKS.items()
    }
    loops = {name: _checksum_loops(b, CHECKSUM_LOOP) for name, b in benches.items()}
    best: dict[str, dict[str, float]] = {name: {} for name in loops}
    for _ in range(rounds):
        for name, fns in loops.items():
            for op, fn in fns.items():
                t0 = time.perf_counter_ns()
                fn()
                ns = (time.perf_counter_ns() - t0) / (2 * CHECKSUM_LOOP)
                best[name][op] = min(best[name].get(op, float("inf")), ns)
    for b in benches.values():
        workloads.check_checksum_bench(deep, b)
    return best, len(benches["rank0"].prebuilt)


# -- output ---------------------------------------------------------------------------------------


def _yes(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=workloads.FULL_UPDATES)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--memory-books", type=int, default=1000)
    parser.add_argument("--long-run", type=int, default=200_000)
    parser.add_argument(
        "--l3-memory-books",
        type=int,
        default=100,
        help="level3 books per depth in the bytes-per-order measurement",
    )
    parser.add_argument(
        "--l3-long-run", type=int, default=10_000_000, help="order events in the level3 long run"
    )
    parser.add_argument("--skip-l2", action="store_true", help="print the level3 part only")
    args = parser.parse_args(argv)

    p = print
    p(f"Machine: {machine()}.  ")
    build = "profile-guided" if PROFILE_GUIDED else "plain -O3, no profile-guided pass"
    p(
        f"kbook {kbook.__version__} at commit {commit()} (engine build: {build}); "
        f"orjson {orjson.__version__}.  "
    )
    if not args.skip_l2:
        report_l2(args)
    report_l3(args)
    return 0


def report_l2(args: argparse.Namespace) -> None:
    t_start = time.perf_counter()
    streams = {key: workloads.load_stream(*key, updates=args.updates) for key in STREAMS}
    timings = time_streams(streams, args.rounds)
    checksum, input_len = time_checksum(streams[("v2", 1000)], args.rounds)
    footprint = workloads.measure_footprint(streams[("v2", 1000)], args.memory_books)
    run = workloads.long_run(streams[("v2", 1000)], args.long_run)
    elapsed = time.perf_counter() - t_start

    p = print
    p(
        f"Run: `python benchmarks/report.py --rounds {args.rounds}`: {args.updates:,} update "
        f"frames per stream, {args.rounds} interleaved rounds; ns columns are the best round, "
        f"ratios the median of the same-round ratios (interquartile range in brackets); "
        f"{elapsed:.0f} s."
    )
    p()
    p(
        "| stream | engine ns/msg | `orjson.loads` ns/msg | model ns/msg | loop floor ns/msg "
        "| engine / orjson | depth N / depth 10 | model / engine |"
    )
    p("|---|---:|---:|---:|---:|---:|---:|---:|")
    engine_best: dict[tuple[str, int], float] = {}
    ratio_orjson: dict[tuple[str, int], float] = {}
    ratio_depth: dict[tuple[str, int], float] = {}
    for key, per in timings.items():
        protocol, depth = key
        eng, orj, mod, flo = (min(per[c]) for c in ("engine", "orjson", "model", "floor"))
        engine_best[key] = eng
        ratio_orjson[key], orj_iqr = _median_iqr(
            [e / o for e, o in zip(per["engine"], per["orjson"], strict=True)]
        )
        ratio_depth[key], depth_iqr = _median_iqr(
            [e / b for e, b in zip(per["engine"], timings[(protocol, 10)]["engine"], strict=True)]
        )
        model_ratio, _ = _median_iqr(
            [m / e for m, e in zip(per["model"], per["engine"], strict=True)]
        )
        depth_cell = "1 (base)" if depth == 10 else f"{ratio_depth[key]:.2f} [{depth_iqr}]"
        p(
            f"| {protocol} depth {depth} | {eng:.0f} | {orj:.0f} | {mod:,.0f} | {flo:.0f} "
            f"| {ratio_orjson[key]:.2f} [{orj_iqr}] | {depth_cell} | {model_ratio:.0f}× |"
        )
    p()

    p(
        "Incremental checksum, depth-1000 book, one bid quantity change (ns per operation, best "
        f"of {args.rounds} rounds of {2 * CHECKSUM_LOOP:,}):"
    )
    p()
    p(
        "| changed bid rank | `apply()` alone | `apply()` + `checksum()` | checksum's share "
        "| `checksum()` with nothing changed |"
    )
    p("|---|---:|---:|---:|---:|")
    for name, ops in checksum.items():
        share = ops["change+checksum"] - ops["change"]
        p(
            f"| {workloads.CHECKSUM_RANKS[name]} | {ops['change']:.0f} "
            f"| {ops['change+checksum']:.0f} | {share:.0f} | {ops['cached']:.0f} |"
        )
    full = min(ops["full"] for ops in checksum.values())
    crc = min(ops["crc"] for ops in checksum.values())
    cached = min(ops["cached"] for ops in checksum.values())
    p()
    p(
        f"Rebuild from scratch (`_checksum_full()`: 20 tokens into a str, then CRC-32): "
        f"{full:.0f} ns; `zlib.crc32` of the prebuilt 20-level string ({input_len} bytes) "
        f"alone: {crc:.0f} ns."
    )
    p()
    p(
        f"Memory: {footprint.books:,} books × depth {streams[('v2', 1000)].depth} (full on both "
        f"sides, {footprint.levels:,} levels): {footprint.traced_bytes:,} B traced = "
        f"**{footprint.per_level:.1f} B/level**, {footprint.per_book / 1024:.1f} KiB/book; "
        f"1000 symbols × depth 1000 = **{footprint.per_book * 1000 / 2**20:.1f} MiB** "
        + ("(measured)." if footprint.books == 1000 else "(projected from the measured books).")
    )
    p(
        f"Long run: {run.messages:,} updates on one depth-1000 book: traced memory "
        f"{run.warm_bytes:,} B after the first pass, {run.final_bytes:,} B at the end "
        f"(growth {run.growth:+,} B)."
    )
    p()

    worst_ns = max(engine_best.values())
    worst_orjson = max(ratio_orjson.values())
    worst_depth = max(v for k, v in ratio_depth.items() if k[1] == 1000)
    rank0 = checksum["rank0"]["change+checksum"] - checksum["rank0"]["change"]
    deep = checksum["rank500"]["change+checksum"] - checksum["rank500"]["change"]
    over = [f"{p_} depth {d} ({ns:.0f})" for (p_, d), ns in engine_best.items() if ns > TARGET_NS]
    slower = [f"{p_} depth {d} ({r:.2f})" for (p_, d), r in ratio_orjson.items() if r >= 0.95]
    p("| target | measured | |")
    p("|---|---|---|")
    p(
        f"| ≤ {TARGET_NS} ns per message at every depth | {min(engine_best.values()):.0f}–"
        f"{worst_ns:.0f} ns | "
        + (_yes(True) if not over else f"**missed** by {', '.join(over)}")
        + " |"
    )
    p(
        f"| faster than `orjson.loads` alone on the same frames | engine/orjson "
        f"{min(ratio_orjson.values()):.2f}–{worst_orjson:.2f} | "
        + (
            _yes(True)
            if not slower
            else f"**{'tie' if worst_orjson < 1.05 else 'missed'}** (within 5 % or slower): "
            f"{', '.join(slower)}"
        )
        + " |"
    )
    p(
        f"| depth 1000 within {TARGET_DEPTH_RATIO}× of depth 10 | worst {worst_depth:.2f}× "
        f"| {_yes(worst_depth <= TARGET_DEPTH_RATIO)} |"
    )
    p(
        f"| ≤ {TARGET_BYTES_PER_LEVEL} B per level | {footprint.per_level:.1f} B "
        f"| {_yes(footprint.per_level <= TARGET_BYTES_PER_LEVEL)} |"
    )
    p(
        f"| untouched top 10 does not re-hash | checksum after a rank-500 change {deep:.0f} ns vs "
        f"{cached:.0f} ns with nothing changed | {_yes(deep <= cached * 1.25 + 5)} |"
    )
    p(
        f"| touching the top 10 costs clearly less than rebuilding the 20-level string "
        f"| rank 0: {rank0:.0f} ns vs {full:.0f} ns for the rebuild | {_yes(rank0 < full / 2)} |"
    )
    p(
        f"| (stricter) ... and less than only CRC-ing a prebuilt string | rank 0: {rank0:.0f} ns "
        f"vs {crc:.0f} ns for `zlib.crc32` | {_yes(rank0 < crc)} |"
    )
    p()


def report_l3(args: argparse.Namespace) -> None:
    t_start = time.perf_counter()
    streams = {d: workloads.load_l3_stream(d, updates=args.updates) for d in L3_DEPTHS}
    timings = time_l3_streams(streams, args.rounds)
    footprints = {
        d: workloads.measure_l3_footprint(s, args.l3_memory_books) for d, s in streams.items()
    }
    run = workloads.l3_long_run(streams[1000], args.l3_long_run)
    elapsed = time.perf_counter() - t_start

    p = print
    sizes = {d: sum(map(len, s.updates)) / len(s.updates) for d, s in streams.items()}
    events = {d: s.events / len(s.updates) for d, s in streams.items()}
    p(
        f"Level3: `python benchmarks/report.py --rounds {args.rounds}`: {args.updates:,} update "
        f"frames per depth ({min(events.values()):.2f}–{max(events.values()):.2f} order events and "
        f"{min(sizes.values()):.0f}–{max(sizes.values()):.0f} bytes per update on average), "
        f"{args.rounds} interleaved rounds; ns columns are the best round, ratios the median of "
        f"the same-round ratios (interquartile range in brackets); {elapsed:.0f} s."
    )
    p()
    p(
        "| stream | engine ns/msg | engine ns/event | `orjson.loads` ns/msg | model ns/msg "
        "| loop floor ns/msg | engine / orjson | depth N / depth 10 | model / engine |"
    )
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    engine_best: dict[int, float] = {}
    ratio_orjson: dict[int, float] = {}
    for depth, per in timings.items():
        eng, orj, mod, flo = (min(per[c]) for c in ("engine", "orjson", "model", "floor"))
        engine_best[depth] = eng
        ratio_orjson[depth], orj_iqr = _median_iqr(
            [e / o for e, o in zip(per["engine"], per["orjson"], strict=True)]
        )
        ratio_depth, depth_iqr = _median_iqr(
            [e / b for e, b in zip(per["engine"], timings[10]["engine"], strict=True)]
        )
        model_ratio, _ = _median_iqr(
            [m / e for m, e in zip(per["model"], per["engine"], strict=True)]
        )
        depth_cell = "1 (base)" if depth == 10 else f"{ratio_depth:.2f} [{depth_iqr}]"
        p(
            f"| level3 depth {depth} | {eng:.0f} | {eng / events[depth]:.0f} | {orj:.0f} "
            f"| {mod:,.0f} | {flo:.0f} | {ratio_orjson[depth]:.2f} [{orj_iqr}] | {depth_cell} "
            f"| {model_ratio:.0f}× |"
        )
    p()
    p(
        f"Level3 memory: {args.l3_memory_books} books per depth, each from its stream's snapshot, "
        f"in one feed (traced with `tracemalloc`, and as `Level3Book.memory_bytes()` reports it):"
    )
    p()
    p(
        "| depth | orders per book | orders per level | traced B/order | `memory_bytes()` B/order "
        "| traced KiB/book | feed staging buffers |"
    )
    p("|---|---:|---:|---:|---:|---:|---:|")
    for depth, fp in footprints.items():
        p(
            f"| {depth} | {fp.orders // fp.books:,} | {fp.orders / fp.levels:.2f} "
            f"| {fp.per_order:.1f} | {fp.native_per_order:.1f} | {fp.per_book / 1024:.1f} "
            f"| {fp.feed_bytes / 1024:,.0f} KiB once per feed |"
        )
    p()
    n_updates = len(streams[1000].updates)
    p(
        f"Level3 long run: one depth-1000 book, one snapshot, then the stream's {n_updates:,} "
        f"updates and a checksum-valid rewind update in a cycle ({run.cycles} cycles): "
        f"{run.events:,} order events from the updates (+{run.rewind_events:,} from the "
        f"rewinds) in {run.messages:,} messages, every checksum verified. Traced memory "
        f"{run.warm_bytes:,} B after the first cycle, {run.final_bytes:,} B at the end (growth "
        f"{run.growth:+,} B, the last of it after {run.settled_after:,} events; second half "
        f"{run.second_half_growth:+,} B); `memory_bytes()` {run.native[0]:,} B → "
        f"{run.native[-1]:,} B."
    )
    p()
    worst = max(engine_best.values())
    over = [f"depth {d} ({ns:.0f})" for d, ns in engine_best.items() if ns > L3_TARGET_NS]
    slower = [f"depth {d} ({r:.2f})" for d, r in ratio_orjson.items() if r >= 0.95]
    deep = footprints[1000]
    p("| level3 target | measured | |")
    p("|---|---|---|")
    p(
        f"| ≤ {L3_TARGET_NS} ns per update message, checksum verified, at every depth "
        f"| {min(engine_best.values()):.0f}–{worst:.0f} ns | "
        + (_yes(True) if not over else f"**missed** by {', '.join(over)}")
        + " |"
    )
    p(
        f"| faster than `orjson.loads` alone on the same frames | engine/orjson "
        f"{min(ratio_orjson.values()):.2f}–{max(ratio_orjson.values()):.2f} | "
        + (
            _yes(True)
            if not slower
            else f"**{'tie' if max(ratio_orjson.values()) < 1.05 else 'missed'}** (within 5 % or "
            f"slower): {', '.join(slower)}"
        )
        + " |"
    )
    p(
        f"| ≤ {L3_TARGET_BYTES_PER_ORDER} B per resting order (depth 1000) | "
        f"{deep.per_order:.1f} B traced, {deep.native_per_order:.1f} B `memory_bytes()` "
        f"| {_yes(deep.per_order <= L3_TARGET_BYTES_PER_ORDER)} |"
    )
    flat = run.second_half_growth <= L3_FLAT_LIMIT
    p(
        f"| flat memory over a {run.events:,}-event run (target 10,000,000) | second half "
        f"{run.second_half_growth:+,} B; {run.growth:+,} B in all, settled after "
        f"{run.settled_after:,} events | {_yes(flat and run.events >= 10_000_000)} |"
    )


if __name__ == "__main__":
    sys.exit(main())
