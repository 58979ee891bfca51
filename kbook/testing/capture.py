"""Read a recorded capture and replay it through the engine, for a test's assertions.

A capture holds one received frame per line, optionally after its receive time
(``"<epoch seconds>: <frame>"``, as ``kbook record`` and :func:`kbook.capture.write_capture`
write it), gzip-compressed or not. :func:`replay` feeds it to a fresh :class:`kbook.Feed`, so a
checksum mismatch or a malformed book frame raises the engine's typed error at the frame it is in.

>>> from kbook.testing.books import BTC_USD, Snapshot, render_book_stream
>>> feed = replay(render_book_stream(BTC_USD, [Snapshot()]))
>>> feed.checksums_verified
1

What it is not: ``kbook verify``, which reports on a whole capture and never stops at an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from kbook import Feed
from kbook.capture import read_frames

__all__ = ["read_capture", "replay"]


def read_capture(path: str | Path) -> list[bytes]:
    """Return the frames of a capture file, read by :mod:`kbook.capture` (gzip, BOM, receive
    times and stdin as ``-``, as everywhere else in kbook).

    :raises kbook.errors.CaptureError: if the file is missing or is not a capture.
    """
    return [frame.data for frame in read_frames(str(path))]


def replay(source: str | Path | Iterable[bytes], feed: Feed | None = None) -> Feed:
    """Feed every frame of a capture file (or of an iterable of frames) to the engine.

    :param source: a capture path, or frames (a :class:`~kbook.testing.FrameStream`, a list).
    :param feed: the feed to use (default a new one).
    :return: the feed, with its books and counters.
    :raises kbook.ChecksumMismatch: at the first frame whose checksum does not match.
    :raises kbook.DecodeError: at the first malformed frame.
    """
    frames = read_capture(source) if isinstance(source, (str, Path)) else source
    engine = Feed() if feed is None else feed
    for frame in frames:
        engine.process(frame)
    return engine
