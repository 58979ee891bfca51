"""A loopback Kraken v2 ``book`` server for the client benchmarks: one seeded stream, fast or paced.

Run it as a subprocess (``python benchmarks/_blaster.py --help``). It listens on 127.0.0.1, prints
``READY <port>`` on stdout, then serves ``--connections`` clients one after another. Each client
gets acks for its ``subscribe``/``unsubscribe`` requests (v2 shape, ``req_id`` echoed; an
``instrument`` subscription also gets the instrument snapshot) and pongs for its pings. Once
``BTC/USD`` ``book`` is subscribed, the server sends the snapshot and the update frames, then a
CLOSE, and waits for the client to go away.

* Blast mode (default): the whole stream is WebSocket-framed once at start-up (server frames are
  not masked, so the wire bytes never change) and written in 64 KiB slices as fast as the socket
  takes them, waiting on picows' ``pause_writing``/``resume_writing`` whenever the transport's
  buffer is above its high-water mark. ``--repeat K`` sends snapshot + updates K times: each
  repeated snapshot resets the book to the same initial state, so every checksum still matches
  and the final book is the model's.
* Paced mode (``--rate R``): one frame per ``send``, at most ``R`` per second, each frame's send
  time (``time.monotonic_ns()`` just before the ``send`` call; CLOCK_MONOTONIC is shared by all
  processes) written to ``--times-out`` as native int64s, index 0 being the snapshot.
  ``--pace spin`` busy-waits between frames (exact rate; only for a core of its own),
  ``--pace sleep`` sleeps with a 1 ns timer slack (for sharing a core with the client: a
  spinning server would starve it).

Frames come from :class:`kbook.sim.streams.BookStream` via :func:`load_frames`, cached in
``benchmarks/.cache`` (keyed by every parameter and a digest of the generator's sources), so the
benchmark and its tests share them and know the expected final book.

What it is not: not the exchange simulator (``kbook.sim``): no other channels, no errors, no
resubscription logic, one symbol. Every loop is bounded: ``--max-seconds`` caps the process's
life and every wait has a timeout, so the process always exits by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import hashlib
import json
import os
import pickle
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYMBOL = "BTC/USD"
PRICE_PRECISION = 1
QTY_PRECISION = 8
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
_CHUNK = 64 * 1024  # bytes per write in blast mode
_CLOSE_WAIT = 10.0  # seconds a client gets to answer our CLOSE
_PR_SET_TIMERSLACK = 29  # prctl(2)


@dataclass(frozen=True)
class BlastStream:
    """A v2 book stream and what a correct client ends up with after it."""

    depth: int
    seed: int
    instrument: bytes
    snapshot: bytes
    updates: tuple[bytes, ...]
    #: The model's book after the last update, best first, at the pair's precision (as
    #: ``L2Book.bids_str()`` writes it).
    final_bids: tuple[tuple[str, str], ...]
    final_asks: tuple[tuple[str, str], ...]
    final_checksum: int
    #: Seconds the generator took (0.0 when loaded from the cache).
    generated_in: float = 0.0

    def frames(self, limit: int | None = None) -> list[bytes]:
        """The snapshot then the updates (the first ``limit`` of them when given)."""
        updates = self.updates if limit is None else self.updates[:limit]
        return [self.snapshot, *updates]


def _source_digest() -> str:
    import kbook.reference
    import kbook.sim.streams

    digest = hashlib.sha256()
    for module in (kbook.sim.streams, kbook.reference):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()[:16]


def _generate(updates: int, seed: int, depth: int) -> BlastStream:
    from kbook.sim.streams import BookStream

    t0 = time.perf_counter()
    gen = BookStream(
        SYMBOL,
        protocol="v2",
        depth=depth,
        seed=seed,
        price_precision=PRICE_PRECISION,
        qty_precision=QTY_PRECISION,
    )
    frames = gen.frames(updates + 1)
    book = gen.book
    return BlastStream(
        depth=depth,
        seed=seed,
        instrument=gen.instrument_frame(),
        snapshot=frames[0],
        updates=tuple(frames[1:]),
        final_bids=tuple(
            (f"{p:.{PRICE_PRECISION}f}", f"{q:.{QTY_PRECISION}f}") for p, q in book.top_bids(depth)
        ),
        final_asks=tuple(
            (f"{p:.{PRICE_PRECISION}f}", f"{q:.{QTY_PRECISION}f}") for p, q in book.top_asks(depth)
        ),
        final_checksum=book.checksum(),
        generated_in=time.perf_counter() - t0,
    )


def load_frames(updates: int, seed: int = 1, depth: int = 10, cache: bool = True) -> BlastStream:
    """Return the stream of ``updates`` v2 updates, from ``benchmarks/.cache`` when possible.

    Generating costs about 0.13 ms per frame (the reference model computes every checksum).
    """
    prefix = f"blaster-v2-d{depth}-s{seed}-n{updates}-"
    path = CACHE_DIR / f"{prefix}{_source_digest()}.pickle"
    if cache and path.exists():
        try:
            with path.open("rb") as fh:
                fields = pickle.load(fh)
            return dataclasses.replace(BlastStream(**fields), generated_in=0.0)
        except (OSError, pickle.UnpicklingError, EOFError, TypeError):
            pass  # torn or stale: regenerate
    stream = _generate(updates, seed, depth)
    if cache:
        CACHE_DIR.mkdir(exist_ok=True)
        # write-then-rename: a concurrent reader never sees half a file
        fd, tmp = tempfile.mkstemp(dir=CACHE_DIR, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            # a plain dict: the class lives in ``__main__`` when this file runs as a script
            pickle.dump(dataclasses.asdict(stream), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        for stale in CACHE_DIR.glob(f"{prefix}*.pickle"):
            if stale != path:
                stale.unlink(missing_ok=True)
    return stream


def ws_text_frame(payload: bytes) -> bytes:
    """One unmasked, final TEXT frame (what a server puts on the wire)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload


def _rfc3339_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _ack(
    method: str, channel: str, symbol: str | None, req_id: Any, params: dict[str, Any]
) -> bytes:
    result: dict[str, Any] = {"channel": channel}
    if channel == "book":
        result["depth"] = params.get("depth", 10)
        result["snapshot"] = params.get("snapshot", True)
    elif channel == "instrument":
        result["snapshot"] = params.get("snapshot", True)
    if symbol is not None:
        result["symbol"] = symbol
    now = _rfc3339_now()
    msg: dict[str, Any] = {
        "method": method,
        "result": result,
        "success": True,
        "time_in": now,
        "time_out": now,
    }
    if req_id is not None:
        msg["req_id"] = req_id
    return json.dumps(msg, separators=(",", ":")).encode()


class _Server:
    """Serves ``connections`` clients in turn, then lets ``main`` exit."""

    def __init__(self, args: argparse.Namespace, stream: BlastStream) -> None:
        self.args = args
        self.stream = stream
        self.frames = stream.frames(args.limit)
        self.wire = b""
        self.cuts: list[int] = []  # slice ends, always at a frame's end
        if args.rate is None:
            encoded = [ws_text_frame(f) for f in self.frames]
            self.wire = b"".join(encoded)
            size = 0
            for frame in encoded:
                size += len(frame)
                if not self.cuts or size - self.cuts[-1] >= _CHUNK:
                    self.cuts.append(size)
            if self.cuts[-1] != size:
                self.cuts.append(size)
        self.accepted = 0
        self.served = 0
        self.all_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.reports: list[dict[str, Any]] = []

    def session_finished(self, report: dict[str, Any]) -> None:
        self.reports.append(report)
        self.served += 1
        if self.served >= self.args.connections and not self.all_done.done():
            self.all_done.set_result(None)


def _make_listener_class() -> type:
    from picows import WSCloseCode, WSListener, WSMsgType

    class Session(WSListener):  # type: ignore[misc]  # picows' base class is untyped Cython
        """One client: acks, pongs, and the stream once the book is subscribed."""

        def __init__(self, server: _Server) -> None:
            super().__init__()
            self.server = server
            self.loop = asyncio.get_running_loop()
            self.transport: Any = None
            self.paused: asyncio.Future[None] | None = None
            self.gone: asyncio.Future[None] = self.loop.create_future()
            self.started = False
            self.requests: list[str] = []  # what the client asked for, for the report
            self.task: asyncio.Task[None] | None = None  # kept: the loop holds tasks weakly

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport

        def on_ws_disconnected(self, transport: Any) -> None:
            if not self.gone.done():
                self.gone.set_result(None)
            if self.paused is not None and not self.paused.done():
                self.paused.set_result(None)
            if not self.started:  # a client that left before subscribing still counts
                self.server.session_finished({"frames": 0, "aborted": True})

        def pause_writing(self) -> None:
            if self.paused is None or self.paused.done():
                self.paused = self.loop.create_future()

        def resume_writing(self) -> None:
            if self.paused is not None and not self.paused.done():
                self.paused.set_result(None)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            kind = frame.msg_type
            if kind == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
                return
            if kind != WSMsgType.TEXT:
                return
            try:
                msg = json.loads(frame.get_payload_as_bytes())
            except ValueError:
                return
            if not isinstance(msg, dict):
                return
            method = msg.get("method")
            req_id = msg.get("req_id")
            if method == "ping":
                now = _rfc3339_now()
                pong = {"method": "pong", "time_in": now, "time_out": now}
                if req_id is not None:
                    pong["req_id"] = req_id
                transport.send(WSMsgType.TEXT, json.dumps(pong).encode())
                return
            if method not in ("subscribe", "unsubscribe"):
                return
            params = msg.get("params") or {}
            channel = params.get("channel", "")
            symbols = params.get("symbol") or [None]
            self.requests.append(f"{method} {channel} {symbols} req_id={req_id}")
            for symbol in symbols:
                transport.send(WSMsgType.TEXT, _ack(method, channel, symbol, req_id, params))
            if method != "subscribe":
                return
            if channel == "instrument":
                transport.send(WSMsgType.TEXT, self.server.stream.instrument)
            elif channel == "book" and SYMBOL in symbols and not self.started:
                self.started = True
                self.task = self.loop.create_task(self._serve())

        async def _serve(self) -> None:
            args = self.server.args
            t0 = time.perf_counter()
            report: dict[str, Any] = {}
            try:
                if args.rate is None:
                    report = {"mode": "blast", "frames": await self._blast()}
                else:
                    report = self._paced()
                report["seconds"] = time.perf_counter() - t0
                if not self.transport.is_disconnected:
                    self.transport.send_close(WSCloseCode.OK)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self.gone), _CLOSE_WAIT)
                    self.transport.disconnect()
            except Exception as exc:
                report["error"] = repr(exc)
                print(f"blaster: session failed: {exc!r}", file=sys.stderr)
                self.transport.disconnect(graceful=False)
            finally:
                report["requests"] = self.requests
                self.server.session_finished(report)

        async def _blast(self) -> int:
            write = self.transport.underlying_transport.write
            wire = memoryview(self.server.wire)
            cuts = self.server.cuts
            for _ in range(self.server.args.repeat):
                start = 0
                # slices end on frame boundaries: an ack or pong sent meanwhile (picows queues it
                # behind our backlog) must not land inside a frame
                for end in cuts:
                    if self.gone.done():
                        return 0
                    write(wire[start:end])
                    start = end
                    if self.paused is not None:
                        await self.paused
            return len(self.server.frames) * self.server.args.repeat

        def _paced(self) -> dict[str, Any]:
            # Blocking on purpose: the loop has nothing else to do, and a frame per loop
            # iteration would add the loop's own jitter to every send time.
            args = self.server.args
            frames = self.server.frames
            send = self.transport.send
            text = WSMsgType.TEXT
            now = time.monotonic_ns
            times = array("q", bytes(8 * len(frames)))
            interval = int(1e9 / args.rate)
            spin = args.pace == "spin"
            deadline = now() + int(args.max_seconds * 1e9)
            # the loop is blocked here, so a closed peer shows only as a failed write, which
            # marks the socket transport closing (is_disconnected changes only in the loop)
            closing = self.transport.underlying_transport.is_closing
            target = now()
            sent = 0
            for i, payload in enumerate(frames):
                if spin:
                    while now() < target:
                        pass
                else:
                    wait = target - now()
                    if wait > 0:
                        time.sleep(wait / 1e9)
                t = now()
                if t > deadline or self.transport.is_disconnected or closing():
                    break
                times[i] = t
                send(text, payload)
                sent += 1
                # never closer than half an interval to the previous frame: no catch-up bursts
                target = max(target + interval, t + interval // 2)
            del times[sent:]
            with open(args.times_out, "wb") as fh:
                times.tofile(fh)
            span = (times[-1] - times[0]) / 1e9 if sent > 1 else 0.0
            return {
                "mode": "paced",
                "pace": args.pace,
                "frames": sent,
                "rate_asked": args.rate,
                "rate_achieved": (sent - 1) / span if span else 0.0,
            }

    return Session


async def _main(args: argparse.Namespace) -> int:
    from picows import ws_create_server

    stream = load_frames(args.updates, args.seed, args.depth)
    server = _Server(args, stream)
    session_class = _make_listener_class()

    def factory(_request: Any) -> Any:
        # clients come one after another, but the next may connect before the previous
        # session has finished closing: count connections, not concurrent sessions
        if server.accepted >= args.connections:
            return None  # 404
        server.accepted += 1
        return session_class(server)

    listening = await ws_create_server(factory, "127.0.0.1", args.port)
    port = listening.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    remaining = args.max_seconds - (time.monotonic() - _STARTED)
    code = 0
    try:
        await asyncio.wait_for(asyncio.shield(server.all_done), max(remaining, 0.1))
    except TimeoutError:
        print(
            f"blaster: gave up after {args.max_seconds} s with {server.served} of "
            f"{args.connections} connections served",
            file=sys.stderr,
        )
        code = 2
    listening.close()
    if args.report:
        Path(args.report).write_text(json.dumps(server.reports))
    return code


_STARTED = time.monotonic()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--updates", type=int, default=100_000, help="update frames generated")
    parser.add_argument("--limit", type=int, default=None, help="send only the first N updates")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="blast mode: stream K times")
    parser.add_argument("--connections", type=int, default=1, help="serve N clients, then exit")
    parser.add_argument("--rate", type=float, default=None, help="paced mode: frames per second")
    parser.add_argument("--pace", choices=("spin", "sleep"), default="spin")
    parser.add_argument("--times-out", default=None, help="paced mode: send times (int64 ns)")
    parser.add_argument("--report", default=None, help="write per-connection JSON here")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="hard cap on life")
    args = parser.parse_args(argv)
    if args.rate is not None and not args.times_out:
        parser.error("--rate needs --times-out")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.pace == "sleep":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            return asyncio.run(_main(args))
        return uvloop.run(_main(args))
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
