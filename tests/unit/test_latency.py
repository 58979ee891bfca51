"""Latency sampling: the listener's rings and the recorder's percentiles."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kbook._core import Feed
from kbook._listener import FeedListener
from kbook.client.latency import LatencyRecorder, LatencyStats, format_ns


class _Owner:
    def _on_message(self, obj: object) -> None:
        pass

    def _on_book_error(self, exc: Exception) -> None:
        raise exc


SNAPSHOT = (
    b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":'
    b'[{"price":100.0,"qty":1.0}],"asks":[{"price":101.0,"qty":1.0}],'
    b'"checksum":%d,"timestamp":"2024-02-29T23:59:59.123456789Z"}]}'
)


def _snapshot() -> bytes:
    from kbook._core import L2Book

    book = L2Book("BTC/USD", 10, 1, 1)
    book.apply([("100.0", "1.0")], [("101.0", "1.0")], snapshot=True)
    return SNAPSHOT % book.checksum()


def test_listener_exchange_sample_is_arrival_minus_frame_timestamp() -> None:
    feed = Feed(precisions={"BTC/USD": (1, 1)}, default_depth=10)
    listener = FeedListener(feed, _Owner(), b"")
    recorder = LatencyRecorder(size=4, every=1)
    recorder.attach(listener)
    before = time.monotonic_ns()
    listener._handle_bytes(_snapshot())
    after = time.monotonic_ns()
    assert recorder.taken(0) == recorder.taken(1) == 1
    stamp = 1709251199 * 10**9 + 123456789  # 2024-02-29T23:59:59.123456789Z
    arrival = int(recorder.exchange[0]) + stamp - listener.wall_offset_ns
    assert before <= arrival <= after
    assert 0 <= recorder.callback[0] <= after - before


def test_listener_samples_one_frame_in_every() -> None:
    feed = Feed(precisions={"BTC/USD": (1, 1)}, default_depth=10)
    listener = FeedListener(feed, _Owner(), b"")
    recorder = LatencyRecorder(size=8, every=4)
    recorder.attach(listener)
    for _ in range(9):
        listener._handle_bytes(_snapshot())
    assert recorder.taken(0) == 2
    listener.record_latency(None)
    listener._handle_bytes(_snapshot())
    assert recorder.taken(0) == 2


def test_recorder_window_and_reset() -> None:
    recorder = LatencyRecorder(size=4)
    recorder.callback[:] = [10, 20, 30, 40]
    recorder.counts[0] = 6  # wrapped: the ring holds the newest four of six
    assert sorted(recorder.samples(0)) == [10, 20, 30, 40]
    stats = recorder.stats().receive_to_callback
    assert (stats.count, stats.window, stats.max) == (6, 4, 40.0)
    assert stats.p50 == pytest.approx(float(np.percentile([10, 20, 30, 40], 50)))
    recorder.reset()
    assert recorder.stats().receive_to_callback == LatencyStats(0, 0)
    recorder.callback[2] = 99
    recorder.counts[0] = 7
    assert list(recorder.samples(0)) == [99]


def test_recorder_rejects_sizes_that_are_not_powers_of_two() -> None:
    with pytest.raises(ValueError):
        LatencyRecorder(size=12)
    with pytest.raises(ValueError):
        LatencyRecorder(every=3)


def test_format_ns_picks_a_readable_unit() -> None:
    assert [format_ns(v) for v in (850, 12_500, 3_100_000, 2e9)] == [
        "850 ns",
        "12.5 µs",
        "3.1 ms",
        "2.0 s",
    ]
