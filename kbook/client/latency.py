"""How old a book is when your code sees it: per-connection latency samples and their percentiles.

The listener (:class:`~kbook._listener.FeedListener`) samples one frame in
:attr:`LatencyRecorder.every` (a clock read costs tens of ns on a VM, more than the whole budget of
the instrumentation) and writes, in C, two samples of a sampled book frame into numpy rings a
:class:`LatencyRecorder` owns: **receive → callback** (the frame's arrival to the
moment its books' callbacks start: the engine's work included) and **exchange → receive** (the
``timestamp`` Kraken put in a v2 ``book`` frame to the frame's arrival, on the wall clock; it
includes any offset between the exchange's clock and this machine's). Percentiles are numpy's
over the newest :attr:`LatencyRecorder.size` samples, so they describe the recent past, not the
whole run.

What it is not: a clock synchroniser. Exchange → receive is only as good as this machine's NTP;
level3 and v1 frames give no exchange → receive sample (their timestamps are per order or per
level, not per message).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "ConnectionLatency",
    "LatencyRecorder",
    "LatencyReport",
    "LatencyStats",
    "wall_offset_ns",
]


def wall_offset_ns() -> int:
    """``CLOCK_REALTIME - CLOCK_MONOTONIC`` now, in ns: adds to a monotonic time to date it."""
    return time.time_ns() - time.monotonic_ns()


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Percentiles of one kind of latency, in nanoseconds (None without samples).

    ``count`` is every sample since the last reset, ``window`` how many of the newest of them the
    percentiles describe.
    """

    count: int = 0
    window: int = 0
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    p999: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, samples: npt.NDArray[np.int64], count: int) -> LatencyStats:
        """Summarise ``samples`` (ns) of ``count`` taken in all."""
        if not len(samples):
            return cls(count, 0)
        p50, p90, p99, p999 = np.percentile(samples, [50.0, 90.0, 99.0, 99.9])
        return cls(
            count,
            len(samples),
            float(p50),
            float(p90),
            float(p99),
            float(p999),
            float(samples.max()),
        )

    def text(self) -> str:
        """``p50 1.2 ms p99 4.0 ms`` style, or ``-`` without samples."""
        if self.p50 is None or self.p99 is None:
            return "-"
        return f"p50 {format_ns(self.p50)} p99 {format_ns(self.p99)}"


def format_ns(ns: float) -> str:
    """A duration in the unit that reads best: ``850 ns``, ``12.5 µs``, ``3.1 ms``, ``2.0 s``."""
    a = abs(ns)
    if a < 1e3:
        return f"{ns:.0f} ns"
    if a < 1e6:
        return f"{ns / 1e3:.1f} µs"
    if a < 1e9:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.1f} s"


@dataclass(frozen=True, slots=True)
class ConnectionLatency:
    """Both latencies of one connection (or of several together)."""

    exchange_to_receive: LatencyStats
    receive_to_callback: LatencyStats


@dataclass(frozen=True, slots=True)
class LatencyReport:
    """What :meth:`kbook.Client.latency` answers: every connection, and all of them together."""

    connections: dict[str, ConnectionLatency]
    exchange_to_receive: LatencyStats
    receive_to_callback: LatencyStats


class LatencyRecorder:
    """The sample rings of one connection, written by each listener it is attached to.

    :param size: samples kept per kind (a power of two); 16384 by default (256 KiB in all)
    :param every: sample one frame in ``every`` (a power of two; 1 samples every frame)

    Complexity: recording is O(1) in the listener; :meth:`stats` sorts the window (O(n log n)).

    >>> rec = LatencyRecorder(4)
    >>> rec.stats().receive_to_callback.count
    0
    """

    def __init__(self, size: int = 16384, every: int = 8) -> None:
        if size < 1 or size & (size - 1):
            raise ValueError("size must be a power of two")
        if every < 1 or every & (every - 1):
            raise ValueError("every must be a power of two")
        self.size = size
        self.every = every
        self.callback = np.zeros(size, np.int64)
        self.exchange = np.zeros(size, np.int64)
        # samples ever written, per kind; the listener increments them in place
        self.counts = np.zeros(2, np.int64)
        self._base = [0, 0]  # counts at the last reset

    def attach(self, listener: Any) -> None:
        """Make ``listener`` (a :class:`FeedListener`) write its samples here."""
        listener.wall_offset_ns = wall_offset_ns()
        listener.record_latency(self.callback, self.exchange, self.counts, self.every)

    @staticmethod
    def refresh(listener: Any) -> None:
        """Re-read the wall clock's offset for ``listener`` (NTP slews it slowly)."""
        listener.wall_offset_ns = wall_offset_ns()

    def reset(self) -> None:
        """Forget every sample so far."""
        self._base = [int(self.counts[0]), int(self.counts[1])]

    def samples(self, kind: int) -> npt.NDArray[np.int64]:
        """The newest samples since the last reset: kind 0 receive → callback, 1 exchange →
        receive (a copy, in no particular order)."""
        ring = self.callback if kind == 0 else self.exchange
        taken = int(self.counts[kind]) - self._base[kind]
        if taken <= 0:
            return ring[:0].copy()
        if taken >= self.size:
            return ring.copy()
        end = int(self.counts[kind]) & (self.size - 1)
        start = (end - taken) & (self.size - 1)
        if start < end:
            return ring[start:end].copy()
        return np.concatenate((ring[start:], ring[:end]))

    def taken(self, kind: int) -> int:
        """Samples of ``kind`` since the last reset."""
        return int(self.counts[kind]) - self._base[kind]

    def stats(self) -> ConnectionLatency:
        """The percentiles of both kinds now."""
        return ConnectionLatency(
            LatencyStats.of(self.samples(1), self.taken(1)),
            LatencyStats.of(self.samples(0), self.taken(0)),
        )


def report(recorders: dict[str, LatencyRecorder]) -> LatencyReport:
    """Each recorder's percentiles, and those of all their samples together."""

    def together(kind: int, recs: Iterable[LatencyRecorder]) -> LatencyStats:
        recs = list(recs)
        parts = [r.samples(kind) for r in recs]
        merged = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return LatencyStats.of(merged, sum(r.taken(kind) for r in recs))

    return LatencyReport(
        {name: rec.stats() for name, rec in recorders.items()},
        together(1, recorders.values()),
        together(0, recorders.values()),
    )
