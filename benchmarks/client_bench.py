"""Socket to verified book: kbook's client against Python WebSocket clients, in the same run.

A :mod:`_blaster` subprocess serves a seeded v2 ``book`` depth-10 stream on loopback. This script
is the client side and measures three things:

1. **Throughput**, blast mode. The server writes snapshot + updates as fast as the socket takes
   them; the client's callback counts messages. Five contenders each get a fresh connection,
   in rotating order, for ``--rounds`` rounds after one warm-up round:

   * ``kbook Client``: the real :class:`kbook.client.Client` with ``precisions`` given (so it does
     not subscribe ``instrument``), ``subscribe_book(..., on_book=callback)``;
   * ``kbook FeedListener``: the Cython listener and :class:`kbook.Feed` over ``picows.ws_connect``,
     with the callback set as ``book.on_update`` directly (no ``Client`` layer);
   * ``websockets + orjson``, ``aiohttp + orjson``, ``picows + orjson``: ``orjson.loads`` of every
     frame, then the same callback with the dict (a Python parser's floor: no book at all).

   Reported per message: wall-clock throughput and client CPU (``time.process_time()``), both over
   the window from the first callback to the last, and the same-round CPU ratios against
   ``websockets`` and ``aiohttp``. The kbook contenders must end with every checksum verified,
   none mismatched, and the model's final book; the others with the model's final checksum in the
   last message.
2. **Latency**, paced mode. The server sends one frame per ``send`` at a fixed rate and records
   each send time (``time.monotonic_ns()``, CLOCK_MONOTONIC is shared across processes); the
   kbook ``Client``'s callback records ``time.monotonic_ns()``. Send-to-callback latency is
   reported per rate and placement: client and server on different cores, the same with the
   client's event loop busy-polling (its core never halts), and both on the same core.
3. **Engine cost in process**: ``Feed.process`` timed frame by frame over the same frames, and the
   ``Client``'s per-book callback wrapper timed alone.

Run: ``PYTHONPATH=. python benchmarks/client_bench.py`` (about 30 s once the frames are cached;
``--help``).

What it is not: not a pytest-benchmark suite (``test_client.py`` is the smoke test) and not a
test of reconnects or multi-symbol fan-out. Every loop is bounded; the blaster exits by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # run as a path, HERE is already first; imported by tests, too
    sys.path.insert(0, str(HERE))

import _blaster  # noqa: E402  (needs the path above when imported from elsewhere)
from _blaster import PRICE_PRECISION, QTY_PRECISION, SYMBOL, BlastStream  # noqa: E402

SUBSCRIBE = orjson.dumps(
    {
        "method": "subscribe",
        "req_id": 1,
        "params": {"channel": "book", "symbol": [SYMBOL], "depth": 10, "snapshot": True},
    }
)
PING = b'{"method":"ping"}'
WARMUP_FRAMES = 100  # latency samples dropped at the start of every paced run


@dataclass(frozen=True)
class Expect:
    """What one connection must deliver."""

    stream: BlastStream
    repeat: int = 1
    limit: int | None = None

    @property
    def frames(self) -> int:
        updates = len(self.stream.updates) if self.limit is None else self.limit
        return (updates + 1) * self.repeat

    @property
    def timeout(self) -> float:
        return 30.0 + self.frames * 20e-6  # 20 µs per message is 3x websockets' cost


@dataclass
class Measure:
    """One contender's connection: the receive window and what came through it."""

    messages: int  # callbacks inside the window (the first one opens it)
    wall: float  # seconds, first callback to last
    cpu: float  # process CPU seconds over the same window

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.wall

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.messages * 1e6


def _counter(target: int, done: asyncio.Future[Any]) -> tuple[Callable[[Any], None], list[Any]]:
    """The user callback every contender runs: count, and time the window's two ends.

    ``marks`` gets ``[wall0, cpu0, wall1, cpu1, last_object]``.
    """
    perf, cpu = time.perf_counter, time.process_time
    marks: list[Any] = [0.0, 0.0, 0.0, 0.0, None]
    n = 0

    def on_update(obj: Any) -> None:
        nonlocal n
        n += 1
        if n == 1:
            marks[0] = perf()
            marks[1] = cpu()
        elif n == target:
            marks[2] = perf()
            marks[3] = cpu()
            marks[4] = obj
            done.set_result(n)

    return on_update, marks


def _measure(expect: Expect, marks: list[Any]) -> Measure:
    return Measure(expect.frames - 1, marks[2] - marks[0], marks[3] - marks[1])


def check_book(expect: Expect, feed: Any, book: Any, live: bool = True) -> None:
    """The feed verified every checksum, saw no error, and holds the model's final book.

    ``live=False`` for kbook's ``Client``: the server closes after the stream, and the client
    marks the books of a lost connection invalid (its callback only ever saw valid ones).
    """
    assert feed.checksum_mismatches == 0, f"{feed.checksum_mismatches} checksum mismatches"
    assert feed.integrity_errors == 0, "crossed book"
    assert feed.checksums_verified == expect.frames, (
        f"{feed.checksums_verified} checksums verified, {expect.frames} expected"
    )
    assert book.valid or not live
    if expect.limit is None:
        assert tuple(book.bids_str()) == expect.stream.final_bids, "final bids differ"
        assert tuple(book.asks_str()) == expect.stream.final_asks, "final asks differ"
        assert book.checksum() == expect.stream.final_checksum


def _check_last(expect: Expect, marks: list[Any]) -> None:
    last = marks[4]
    assert isinstance(last, dict) and last["data"][0]["checksum"] == expect.stream.final_checksum


# -- contenders ---------------------------------------------------------------------------------


async def run_kbook_client(url: str, expect: Expect, keep: dict[str, Any] | None = None) -> Measure:
    """kbook's ``Client``: subscribe_book with a user callback.

    :param keep: receives the ``book`` and ``feed``, for callers that check more
    """
    from kbook.client import Client, ReconnectPolicy

    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    on_book, marks = _counter(expect.frames, done)
    # the server closes after the stream; a slow first retry keeps the client from reconnecting
    client = Client(
        url,
        precisions={SYMBOL: (PRICE_PRECISION, QTY_PRECISION)},
        policy=ReconnectPolicy(initial=60.0, maximum=60.0, give_up_after=1),
        idle_timeout=60.0,
        seed=0,
    )
    await client.start()
    try:
        [book] = await client.subscribe_book([SYMBOL], depth=10, on_book=on_book)
        await asyncio.wait_for(done, expect.timeout)
        feed = client.connections[0].feed
        if keep is not None:
            keep.update(book=book, feed=feed)
        check_book(expect, feed, book, live=False)
        errors = [
            e
            for e in client.events_seen
            if e.kind in ("checksum_mismatch", "integrity_error", "decode_error", "callback_error")
        ]
        assert not errors, errors
    finally:
        await client.close()
    return _measure(expect, marks)


class _Owner:
    """The least a :class:`FeedListener` owner must do: take the ack and any book error."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.acked: asyncio.Future[Any] = loop.create_future()
        self.errors: list[Exception] = []

    def _on_connected(self, transport: Any) -> None:
        pass

    def _on_disconnected(self, transport: Any) -> None:
        pass

    def _on_message(self, obj: Any) -> None:
        if isinstance(obj, dict) and obj.get("method") == "subscribe" and not self.acked.done():
            self.acked.set_result(obj)

    def _on_book_error(self, exc: Exception) -> None:
        self.errors.append(exc)


async def run_feed_listener(url: str, expect: Expect) -> Measure:
    """``FeedListener`` + ``Feed`` over ``picows.ws_connect``, callback on the book itself."""
    from picows import WSMsgType, ws_connect

    from kbook import Feed
    from kbook._listener import FeedListener

    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    on_book, marks = _counter(expect.frames, done)
    owner = _Owner(loop)
    feed = Feed(precisions={SYMBOL: (PRICE_PRECISION, QTY_PRECISION)})
    book = feed.add_book(SYMBOL, 10, PRICE_PRECISION, QTY_PRECISION)
    book.on_update = on_book  # the default notify_depth calls it for every message, as counted
    transport, _ = await ws_connect(lambda: FeedListener(feed, owner, PING), url)
    try:
        transport.send(WSMsgType.TEXT, SUBSCRIBE)
        await asyncio.wait_for(done, expect.timeout)
        assert not owner.errors, owner.errors
        check_book(expect, feed, book)
        await asyncio.wait_for(transport.wait_disconnected(), 10.0)  # the server's CLOSE
    finally:
        transport.disconnect()
    return _measure(expect, marks)


async def run_websockets(url: str, expect: Expect) -> Measure:
    """``websockets`` (asyncio API) + ``orjson.loads`` per frame."""
    from websockets.asyncio.client import connect

    loads = orjson.loads
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    on_book, marks = _counter(expect.frames, done)
    async with asyncio.timeout(expect.timeout), connect(url, compression=None, max_size=None) as ws:
        await ws.send(SUBSCRIBE.decode())
        async for message in ws:
            obj = loads(message)
            if obj.get("channel") == "book":
                on_book(obj)
    assert done.done(), "stream ended early"
    _check_last(expect, marks)
    return _measure(expect, marks)


async def run_aiohttp(url: str, expect: Expect) -> Measure:
    """``aiohttp`` client WebSocket + ``orjson.loads`` per frame."""
    import aiohttp

    loads = orjson.loads
    text = aiohttp.WSMsgType.TEXT
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    on_book, marks = _counter(expect.frames, done)
    async with (
        asyncio.timeout(expect.timeout),
        aiohttp.ClientSession() as session,
        session.ws_connect(url, max_msg_size=0, compress=0) as ws,
    ):
        await ws.send_str(SUBSCRIBE.decode())
        async for msg in ws:
            if msg.type == text:
                obj = loads(msg.data)
                if obj.get("channel") == "book":
                    on_book(obj)
    assert done.done(), "stream ended early"
    _check_last(expect, marks)
    return _measure(expect, marks)


def _json_listener_class() -> type:
    from picows import WSListener, WSMsgType

    loads = orjson.loads

    class JsonListener(WSListener):  # type: ignore[misc]  # picows' base class is untyped
        """picows core API, Python listener: ``orjson.loads`` of every payload."""

        def __init__(self, callback: Callable[[Any], None]) -> None:
            super().__init__()
            self.callback = callback

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            kind = frame.msg_type
            if kind == WSMsgType.TEXT:
                obj = loads(frame.get_payload_as_bytes())
                if obj.get("channel") == "book":
                    self.callback(obj)
            elif kind == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()

    return JsonListener


async def run_picows_orjson(url: str, expect: Expect) -> Measure:
    """picows core API with a Python listener + ``orjson.loads`` per frame."""
    from picows import WSMsgType, ws_connect

    listener_class = _json_listener_class()
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    on_book, marks = _counter(expect.frames, done)
    transport, _ = await ws_connect(lambda: listener_class(on_book), url)
    try:
        transport.send(WSMsgType.TEXT, SUBSCRIBE)
        await asyncio.wait_for(done, expect.timeout)
        await asyncio.wait_for(transport.wait_disconnected(), 10.0)
    finally:
        transport.disconnect()
    _check_last(expect, marks)
    return _measure(expect, marks)


Contender = Callable[[str, Expect], Awaitable[Measure]]
CONTENDERS: list[tuple[str, Contender]] = [
    ("kbook Client", run_kbook_client),
    ("kbook FeedListener (no Client)", run_feed_listener),
    ("websockets + orjson", run_websockets),
    ("aiohttp + orjson", run_aiohttp),
    ("picows + orjson", run_picows_orjson),
]
BASELINES = ("websockets + orjson", "aiohttp + orjson")


# -- the server subprocess ------------------------------------------------------------------------


class Blaster:
    """``_blaster.py`` in a subprocess; waits for its ``READY <port>`` line."""

    def __init__(self, *args: str, cpu: int | None = None, ready_timeout: float = 120.0) -> None:
        cmd = [sys.executable, str(HERE / "_blaster.py"), *args]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], ready_timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("READY "):
            self.close(0.0)
            raise RuntimeError(f"blaster did not start: {line!r}")
        self.url = f"ws://127.0.0.1:{int(line.split()[1])}/"

    def close(self, timeout: float = 15.0) -> int:
        """Wait for the server to exit by itself; stop it only if it overstays ``timeout``."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            return self.proc.wait(5.0)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def __enter__(self) -> Blaster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def blaster_args(stream: BlastStream, **options: Any) -> list[str]:
    args = [
        "--updates",
        str(len(stream.updates)),
        "--seed",
        str(stream.seed),
        "--depth",
        str(stream.depth),
    ]
    for key, value in options.items():
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


# -- throughput ---------------------------------------------------------------------------------


@dataclass
class Throughput:
    rounds: list[dict[str, Measure]] = field(default_factory=list)


async def measure_throughput(
    stream: BlastStream, repeat: int, rounds: int, server_cpu: int | None, loop_name: str
) -> Throughput:
    expect = Expect(stream, repeat=repeat)
    result = Throughput()
    connections = (rounds + 1) * len(CONTENDERS)
    args = blaster_args(
        stream, repeat=repeat, connections=connections, loop=loop_name, max_seconds=600
    )
    with Blaster(*args, cpu=server_cpu) as blaster:
        for r in range(rounds + 1):
            shift = r % len(CONTENDERS)
            order = CONTENDERS[shift:] + CONTENDERS[:shift]
            row: dict[str, Measure] = {}
            for name, run in order:
                gc.collect()
                row[name] = await run(blaster.url, expect)
                label = "warm-up" if r == 0 else f"round {r}"
                print(
                    f"  {label:8} {name:32} {row[name].msgs_per_s / 1e3:8.0f} k msg/s "
                    f"{row[name].cpu_us:6.2f} µs CPU/msg",
                    file=sys.stderr,
                )
            if r:
                result.rounds.append(row)
    return result


def _median_iqr(values: Sequence[float]) -> tuple[float, float, float]:
    q = np.percentile(values, [25, 50, 75])
    return float(q[1]), float(q[0]), float(q[2])


def throughput_table(result: Throughput) -> list[str]:
    lines = [
        "| client | msgs/s (best) | msgs/s (median) | CPU µs/msg (best) | CPU µs/msg (median) "
        "| msgs per CPU-second | websockets CPU / this | aiohttp CPU / this |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, _ in CONTENDERS:
        rates = [row[name].msgs_per_s for row in result.rounds]
        cpus = [row[name].cpu_us for row in result.rounds]
        ratios = []
        for base in BASELINES:
            if name == base:
                ratios.append("1 (base)")
                continue
            m, lo, hi = _median_iqr([row[base].cpu_us / row[name].cpu_us for row in result.rounds])
            ratios.append(f"{m:.2f}× [{lo:.2f}–{hi:.2f}]")
        lines.append(
            f"| {name} | {max(rates):,.0f} | {statistics.median(rates):,.0f} | "
            f"{min(cpus):.3f} | {statistics.median(cpus):.3f} | "
            f"{1e6 / statistics.median(cpus):,.0f} | {' | '.join(ratios)} |"
        )
    return lines


# -- latency ------------------------------------------------------------------------------------


async def _busy_poll(stop: asyncio.Event) -> None:
    """Keep the event loop polling (epoll_wait with a zero timeout): the core never halts."""
    deadline = time.monotonic() + 120.0
    while not stop.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0)


async def latency_client(url: str, expect: Expect, busy: bool) -> tuple[list[int], float]:
    """kbook ``Client`` recording ``monotonic_ns`` in its book callback: (times, CPU µs/msg)."""
    from kbook.client import Client, ClientEvent, ReconnectPolicy

    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()
    times: list[int] = []
    record, clock = times.append, time.monotonic_ns

    def on_book(_book: Any) -> None:
        record(clock())

    def on_event(event: ClientEvent) -> None:
        if event.kind == "disconnected" and not closed.done():
            closed.set_result(None)

    client = Client(
        url,
        precisions={SYMBOL: (PRICE_PRECISION, QTY_PRECISION)},
        policy=ReconnectPolicy(initial=60.0, maximum=60.0, give_up_after=1),
        idle_timeout=60.0,
        on_event=on_event,
        seed=0,
    )
    stop = asyncio.Event()
    spinner = loop.create_task(_busy_poll(stop)) if busy else None
    await client.start()
    try:
        [book] = await client.subscribe_book([SYMBOL], depth=10, on_book=on_book)
        cpu0 = time.process_time()
        await asyncio.wait_for(closed, expect.timeout + 60.0)
        cpu = time.process_time() - cpu0
        check_book(expect, client.connections[0].feed, book, live=False)
    finally:
        stop.set()
        if spinner is not None:
            await spinner
        await client.close()
    assert len(times) == expect.frames, f"{len(times)} callbacks for {expect.frames} frames"
    return times, cpu / len(times) * 1e6


@dataclass
class Latency:
    placement: str
    rate: float
    achieved: float
    samples: np.ndarray
    cpu_us: float
    busy: bool
    foreign: float = 0.0  # CPU seconds other processes used during the run
    wall: float = 0.0  # seconds the run took, blaster start to exit

    def row(self) -> str:
        us = self.samples / 1e3
        p50, p99, p999 = np.percentile(us, [50, 99, 99.9])
        within = float(np.mean(us <= 20.0)) * 100
        cpu = "(spins)" if self.busy else f"{self.cpu_us:.1f}"
        return (
            f"| {self.placement} | {self.rate:,.0f} ({self.achieved:,.0f}) | {len(us):,} | "
            f"{p50:.1f} | {p99:.1f} | {p999:.1f} | {us.max():,.0f} | {within:.1f} % | "
            f"{cpu} | {self.foreign:.2f} / {self.wall:.1f} |"
        )


LATENCY_HEADER = [
    "| placement | rate asked (achieved) msg/s | samples | p50 µs | p99 µs | p99.9 µs | max µs "
    "| ≤ 20 µs | client CPU µs/msg | other processes' CPU s / run s |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


async def measure_latency(
    stream: BlastStream,
    placement: str,
    rate: float,
    seconds: float,
    client_cpu: int | None,
    server_cpu: int | None,
    pace: str,
    busy: bool,
    loop_name: str,
) -> Latency:
    limit = min(len(stream.updates), int(rate * seconds))
    expect = Expect(stream, limit=limit)
    with tempfile.TemporaryDirectory() as tmp:
        times_out = Path(tmp) / "send_ns.bin"
        report = Path(tmp) / "report.json"
        args = blaster_args(
            stream,
            limit=limit,
            rate=rate,
            pace=pace,
            times_out=times_out,
            report=report,
            loop=loop_name,
            max_seconds=seconds * 3 + 60,
        )
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        with Blaster(*args, cpu=server_cpu) as blaster:
            callbacks, cpu_us = await latency_client(blaster.url, expect, busy)
        code = blaster.proc.returncode
        assert code == 0, f"blaster exited with {code}"
        sent = np.fromfile(times_out, dtype=np.int64)
        achieved = json.loads(report.read_text())[0]["rate_achieved"]
    assert len(sent) == len(callbacks), (len(sent), len(callbacks))
    lat = (np.asarray(callbacks, dtype=np.int64) - sent)[WARMUP_FRAMES:]
    assert (lat > 0).all(), "a callback before its frame was sent: clocks disagree"
    print(
        f"  {placement:38} {rate:8,.0f}/s p50 {np.median(lat) / 1e3:7.1f} µs "
        f"p99 {np.percentile(lat, 99) / 1e3:8.1f} µs",
        file=sys.stderr,
    )
    return Latency(placement, rate, achieved, lat, cpu_us, busy)


# -- engine cost in process ---------------------------------------------------------------------


def engine_cost(
    stream: BlastStream, calls: int = 200_000, bulk_rounds: int = 5
) -> dict[str, float]:
    """``Feed.process`` per frame (distribution and bulk mean) and the Client's callback wrapper.

    ``calls`` callback calls per round and ``bulk_rounds`` rounds (the smoke test runs few).
    """
    from kbook import Feed
    from kbook.client.connection import BookHooks

    def new_feed() -> tuple[Any, Any]:
        feed = Feed(precisions={SYMBOL: (PRICE_PRECISION, QTY_PRECISION)})
        book = feed.add_book(SYMBOL, 10, PRICE_PRECISION, QTY_PRECISION)
        feed.process(stream.snapshot)
        return feed, book

    updates = stream.updates
    clock = time.perf_counter_ns
    # timer overhead: two back-to-back reads
    pairs = []
    for _ in range(20_000):
        t0 = clock()
        pairs.append(clock() - t0)
    overhead = float(np.median(pairs))

    feed, book = new_feed()
    process = feed.process
    durations = np.empty(len(updates), dtype=np.int64)
    for i, frame in enumerate(updates):
        t0 = clock()
        process(frame)
        durations[i] = clock() - t0
    assert feed.checksum_mismatches == 0 and feed.checksums_verified == len(updates) + 1
    assert tuple(book.bids_str()) == stream.final_bids
    p50, p99, p999 = np.percentile(durations, [50, 99, 99.9]) - overhead

    best_bulk = float("inf")
    for _ in range(bulk_rounds):
        feed, _book = new_feed()
        process = feed.process
        t0 = clock()
        for frame in updates:
            process(frame)
        best_bulk = min(best_bulk, (clock() - t0) / len(updates))

    # the Client's per-book wrapper (BookHooks) vs calling the user callback directly
    class _Conn:
        def emit(self, *args: Any) -> None:
            pass

    def user(_book: Any) -> None:
        pass

    hooks = BookHooks(_Conn(), book, user)  # type: ignore[arg-type]  # a stub connection
    n = calls
    direct = wrapped = float("inf")
    for _ in range(bulk_rounds):
        t0 = clock()
        for _ in range(n):
            user(book)
        direct = min(direct, (clock() - t0) / n)
        t0 = clock()
        for _ in range(n):
            hooks(book)
        wrapped = min(wrapped, (clock() - t0) / n)
    return {
        "timer_ns": overhead,
        "p50_ns": p50,
        "p99_ns": p99,
        "p999_ns": p999,
        "max_ns": float(durations.max() - overhead),
        "bulk_ns": best_bulk,
        "callback_direct_ns": direct,
        "callback_via_client_ns": wrapped,
    }


# -- the run ------------------------------------------------------------------------------------


def _version(name: str) -> str:
    if name == "kbook":  # used in place (PYTHONPATH), usually not installed
        from kbook._version import __version__

        return __version__
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "?"


def machine() -> dict[str, str]:
    model = "?"
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "kbook"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "?", ""
    return {
        "cpu": model,
        "cpus": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpuidle": _read("/sys/devices/system/cpu/cpuidle/current_driver"),
        "guest_halt_poll_ns": _read("/sys/module/haltpoll/parameters/guest_halt_poll_ns"),
        "loadavg": _read("/proc/loadavg"),
        "commit": commit + (" (kbook/ modified)" if dirty else ""),
        "versions": ", ".join(
            f"{p} {_version(p)}"
            for p in ("kbook", "picows", "aiofastnet", "uvloop", "websockets", "aiohttp", "orjson")
        ),
    }


class ForeignCpu:
    """CPU time the rest of the machine used meanwhile: busy time in ``/proc/stat`` minus ours.

    Ours is this process plus its waited-for children (the blasters), from ``os.times()``; a
    section's figure is only exact once its blaster has exited. Anything well above zero means
    another process competed for the cores and the section's wall-clock figures are suspect.
    """

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float]:
        busy = 0
        try:
            with open("/proc/stat") as fh:
                fields = fh.readline().split()  # the "cpu" line: every CPU together
            # user nice system idle iowait irq softirq steal: all but idle and iowait
            busy = sum(int(x) for i, x in enumerate(fields[1:9]) if i not in (3, 4))
        except (OSError, ValueError, IndexError):
            pass
        t = os.times()
        ticks = os.sysconf("SC_CLK_TCK")
        return busy / ticks, t.user + t.system + t.children_user + t.children_system

    def seconds(self) -> float:
        busy, ours = self._sample()
        return max(0.0, (busy - self.start[0]) - (ours - self.start[1]))


async def _run(args: argparse.Namespace, stream: BlastStream, out: dict[str, Any]) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2
    client_cpu, server_cpu = (cpus[0], cpus[1]) if pinned else (None, None)
    out["pinning"] = (
        f"client on CPU {client_cpu}, server on CPU {server_cpu} (os.sched_setaffinity)"
        if pinned
        else "not pinned: fewer than 2 CPUs available"
    )
    print(f"pinning: {out['pinning']}", file=sys.stderr)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    if not args.skip_throughput:
        print(
            f"throughput: {len(stream.updates) + 1} frames x {args.repeat} per connection, "
            f"{args.rounds} rounds + warm-up",
            file=sys.stderr,
        )
        foreign, t0 = ForeignCpu(), time.perf_counter()
        out["throughput"] = await measure_throughput(
            stream, args.repeat, args.rounds, server_cpu, args.loop
        )
        out["throughput_foreign"] = (foreign.seconds(), time.perf_counter() - t0)
    if not args.skip_latency:
        placements = []
        if pinned:
            placements += [
                ("different cores", client_cpu, server_cpu, "spin", False),
                ("different cores, client busy-polls", client_cpu, server_cpu, "spin", True),
            ]
        same = client_cpu if pinned else None
        placements.append(("same core", same, same, "sleep", False))
        out["latency"] = []
        for rate in args.rates:
            for placement, ccpu, scpu, pace, busy in placements:
                gc.collect()
                foreign, t0 = ForeignCpu(), time.perf_counter()
                lat = await measure_latency(
                    stream, placement, rate, args.latency_seconds, ccpu, scpu, pace, busy, args.loop
                )
                lat.foreign = foreign.seconds()
                lat.wall = time.perf_counter() - t0
                out["latency"].append(lat)
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
    if not args.skip_engine:
        out["engine"] = engine_cost(stream)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=100_000, help="update frames in the stream")
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="throughput: stream (snapshot + updates) this many times",
    )
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds after warm-up")
    parser.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[2000.0, 20000.0],
        help="latency: comma-separated msg/s",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=3.0,
        help="latency: seconds per run (frames = rate x seconds)",
    )
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument("--json", default=None, help="also write the raw figures here")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    stream = _blaster.load_frames(args.updates)
    if stream.generated_in:
        print(
            f"generated {args.updates:,} updates in {stream.generated_in:.1f} s (cached now)",
            file=sys.stderr,
        )
    info = machine()
    out: dict[str, Any] = {}
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(_run(args, stream, out))
    else:
        asyncio.run(_run(args, stream, out))
    info["loadavg_end"] = _read("/proc/loadavg")

    size = sum(map(len, stream.updates)) / len(stream.updates)
    print(
        f"Machine: {info['cpu']}, {info['cpus']} CPUs, Linux {info['kernel']}, "
        f"cpuidle {info['cpuidle']} (guest_halt_poll_ns={info['guest_halt_poll_ns']}); "
        f"CPython {info['python']}."
    )
    print(f"Versions: {info['versions']}; event loop: {args.loop}; commit {info['commit']}.")
    print(f"Load average at start / end: {info['loadavg']} / {info['loadavg_end']}.")
    print(f"Pinning: {out['pinning']}.")
    print(
        f"Stream: BookStream(seed={stream.seed}) v2 BTC/USD depth {stream.depth}, "
        f"{len(stream.updates):,} updates averaging {size:.0f} B + snapshot."
    )
    if "throughput" in out:
        print(
            f"\nThroughput: blast mode, {(len(stream.updates) + 1) * args.repeat:,} messages per "
            f"connection, {args.rounds} rounds after a warm-up round, contenders in rotating "
            "order; ratios are medians of same-round ratios [IQR].\n"
        )
        print("\n".join(throughput_table(out["throughput"])))
        other, wall = out["throughput_foreign"]
        print(f"\nOther processes used {other:.2f} CPU-seconds during these {wall:.0f} s.")
    if "latency" in out:
        print(f"\nLatency: send → callback, first {WARMUP_FRAMES} frames of each run dropped.\n")
        print("\n".join(LATENCY_HEADER + [lat.row() for lat in out["latency"]]))
    if "engine" in out:
        e = out["engine"]
        print(
            f"\nEngine in process (`Feed.process`, {len(stream.updates):,} updates, timer "
            f"overhead {e['timer_ns']:.0f} ns subtracted): p50 {e['p50_ns']:.0f} ns, p99 "
            f"{e['p99_ns']:.0f} ns, p99.9 {e['p999_ns']:.0f} ns, max {e['max_ns']:,.0f} ns; "
            f"bulk mean {e['bulk_ns']:.0f} ns/msg (best of 5)."
        )
        print(
            f"Callback: user function called directly {e['callback_direct_ns']:.0f} ns, "
            f"through the Client's BookHooks {e['callback_via_client_ns']:.0f} ns."
        )
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    if args.json:
        dump: dict[str, Any] = {"machine": info, "pinning": out["pinning"]}
        if "throughput" in out:
            dump["throughput"] = [
                {k: vars(m) for k, m in row.items()} for row in out["throughput"].rounds
            ]
            dump["throughput_foreign_cpu_s"] = out["throughput_foreign"][0]
        if "latency" in out:
            dump["latency"] = [
                {
                    "placement": lat.placement,
                    "rate": lat.rate,
                    "achieved": lat.achieved,
                    "cpu_us": lat.cpu_us,
                    "busy": lat.busy,
                    "foreign_cpu_s": lat.foreign,
                    "percentiles_us": dict(
                        zip(
                            ("p50", "p99", "p99.9", "max"),
                            map(
                                float,
                                (
                                    *np.percentile(lat.samples / 1e3, [50, 99, 99.9]),
                                    lat.samples.max() / 1e3,
                                ),
                            ),
                            strict=True,
                        )
                    ),
                }
                for lat in out["latency"]
            ]
        if "engine" in out:
            dump["engine"] = out["engine"]
        Path(args.json).write_text(json.dumps(dump, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
