"""Read a recorded capture and replay it through the engine, for a test's assertions.

A capture holds one received frame per line, optionally after its receive time
(``"<epoch seconds>: <frame>"``, as ``kbook record`` and :func:`kbook.streams.write_capture`
write it), gzip-compressed or not. :func:`replay` feeds it to a fresh :class:`kbook.Feed`, so a
checksum mismatch or a malformed book frame raises the engine's typed error at the frame it is in.

>>> from kbook.testing.books import BTC_USD, Snapshot, render_book_stream
>>> feed = replay(render_book_stream(BTC_USD, [Snapshot()]))
>>> feed.checksums_verified
1

What it is not: ``kbook verify``, which reports on a whole capture and never stops at an error.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from pathlib import Path

from kbook import Feed

__all__ = ["read_capture", "replay"]

# The receive time a capture line may start with: epoch seconds, then ": ".
_STAMP = re.compile(rb"^[0-9]+(?:\.[0-9]+)?: ")


def read_capture(path: str | Path) -> list[bytes]:
    """Return the frames of a capture file (gzip recognised by its magic bytes).

    :raises OSError: if the file cannot be read.
    """
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    frames = []
    for line in data.split(b"\n"):
        line = line.rstrip(b"\r")
        if line.strip():
            frames.append(_STAMP.sub(b"", line, count=1))
    return frames


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
