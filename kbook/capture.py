"""Capture files: the one reader and writer of kbook's recording format.

A capture holds one received WebSocket text frame per line, optionally preceded by its receive
time in epoch seconds and ``": "``::

    1700000000.000000: {"channel":"book","type":"snapshot","data":[...]}

Readers accept what people actually have: plain or gzip files (recognised by their magic bytes,
whatever the file is called), ``-`` for stdin, a UTF-8 byte order mark, CRLF line ends, blank
lines and lines that are not frames (reported, never fatal). Receive times are read exactly, as
integer nanoseconds. Writers write to ``<path>.partial`` and rename on success, so a capture
that exists is complete, and a ``.gz`` capture is always a valid gzip file.

Used by ``kbook verify``/``bench``/``record``, :mod:`kbook.history`, the simulator's replay and
the stream generators.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "demo.capture")
>>> with CaptureWriter(path) as out:
...     out.write(b'{"channel":"heartbeat"}', received_ns=1_700_000_000_250_000_000)
>>> [(f.line, f.received, f.data) for f in read_frames(path)]
[(1, 1700000000250000000, b'{"channel":"heartbeat"}')]
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import io
import os
import re
import sys
import time
import zlib
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import IO, NamedTuple, cast

from kbook.errors import CaptureError

__all__ = [
    "CaptureWriter",
    "Frame",
    "Line",
    "display_name",
    "epoch_ns",
    "open_capture",
    "read_frames",
    "read_lines",
    "write_capture",
]

_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
# the receive time before a frame: epoch seconds, then ": "
_RECEIVE_TIME = re.compile(rb"[0-9]+(?:\.[0-9]*)?: ")


class Line(NamedTuple):
    """One line of a capture.

    :ivar number: 1-based line number
    :ivar offset: byte offset of ``data`` in the (decompressed) capture
    :ivar received: receive time in epoch nanoseconds, None when the line has none
    :ivar data: the line without its receive time and line end (a frame, or other text)
    """

    number: int
    offset: int
    received: int | None
    data: bytes

    @property
    def is_frame(self) -> bool:
        """Whether the line holds a JSON frame (an object or an array)."""
        return self.data.lstrip()[:1] in (b"{", b"[")


class Frame(NamedTuple):
    """One frame line of a capture (see :class:`Line`; ``line`` is its number)."""

    line: int
    offset: int
    received: int | None
    data: bytes


def epoch_ns(text: bytes | str) -> int:
    """Exact epoch nanoseconds of ``"1696613756.010000"`` (no float on the way).

    >>> epoch_ns("1696613756.01")
    1696613756010000000
    """
    s = text.decode() if isinstance(text, bytes) else text
    whole, _, frac = s.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"not an epoch time in seconds: {s!r}")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def display_name(path: str) -> str:
    """How messages name a capture (``-`` is stdin)."""
    return "<stdin>" if path == "-" else path


def _looks_utf8(head: bytes) -> bool:
    """Whether ``head`` is UTF-8 text, allowing a character cut off at its end."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def open_capture(path: str, stack: contextlib.ExitStack[bool | None]) -> io.BufferedIOBase:
    """Open a capture for binary reading, decompressing gzip whatever the file is called.

    Files opened here are closed by ``stack``; stdin is left open.

    :raises CaptureError: missing, unreadable, or not text.
    """
    name = display_name(path)
    if path == "-":
        stdin = sys.stdin.buffer
        if isinstance(stdin, io.BufferedReader):
            reader = stdin
        else:
            # peek() needs a buffered reader; a replaced stdin (tests, embedding) may not be one,
            # and BufferedReader accepts any stream with readinto(), which every binary one has
            reader = io.BufferedReader(cast(io.RawIOBase, stdin))
    else:
        try:
            reader = stack.enter_context(open(path, "rb"))  # noqa: SIM115  # the stack closes it
        except OSError as exc:
            raise CaptureError(f"cannot open {name}: {exc.strerror or exc}") from None
    try:
        if reader.peek(2)[:2] == _GZIP_MAGIC:
            unzipped = stack.enter_context(gzip.GzipFile(fileobj=reader, mode="rb"))
            head = unzipped.peek(8192)[:8192]
            stream: io.BufferedIOBase = unzipped
        else:
            head = reader.peek(8192)[:8192]
            stream = reader
    except (OSError, EOFError, zlib.error) as exc:
        raise CaptureError(f"cannot read {name}: {exc}") from None
    if b"\0" in head or not _looks_utf8(head):
        raise CaptureError(f"{name} is not a text capture (one frame per line)")
    return stream


def lines_of(reader: Iterable[bytes], name: str) -> Iterator[Line]:
    """Split an open capture into :class:`Line` s; a broken gzip stream is a CaptureError."""
    offset = 0
    number = 0
    try:
        for raw in reader:
            number += 1
            size = len(raw)
            skip = len(_UTF8_BOM) if number == 1 and raw.startswith(_UTF8_BOM) else 0
            stamp = _RECEIVE_TIME.match(raw, skip)
            start = stamp.end() if stamp else skip
            end = size - (2 if raw.endswith(b"\r\n") else 1 if raw.endswith(b"\n") else 0)
            received = epoch_ns(raw[stamp.start() : stamp.end() - 2]) if stamp else None
            yield Line(number, offset + start, received, raw[start : max(start, end)])
            offset += size
    except (OSError, EOFError, zlib.error) as exc:
        raise CaptureError(f"cannot read {name}: {exc}") from None


def read_lines(path: str) -> Iterator[Line]:
    """Every line of the capture at ``path`` (``-``: stdin).

    :raises CaptureError: the file is missing, unreadable or not a text capture
    """
    with contextlib.ExitStack() as stack:
        yield from lines_of(open_capture(path, stack), display_name(path))


def read_frames(path: str) -> Iterator[Frame]:
    """The frame lines of a capture; blank lines and other text are skipped.

    :raises CaptureError: the file is missing, unreadable or not a text capture
    """
    for line in read_lines(path):
        if line.is_frame:
            yield Frame(*line)


class CaptureWriter:
    """Write a capture: ``<path>.partial`` while it grows, renamed to ``path`` by
    :meth:`commit` (or by leaving the ``with`` block without an exception).

    A writer closed without a commit removes its partial file, so a capture that exists is
    complete. ``compress`` (default: ``path`` ends in ``.gz``) writes gzip.
    """

    def __init__(self, path: str, *, compress: bool | None = None) -> None:
        self.path = path
        self.partial = path + ".partial"
        self.frames = 0
        self.bytes = 0
        compress = path.endswith(".gz") if compress is None else compress
        # closed by commit() or discard()
        self._out: IO[bytes] = (
            cast(IO[bytes], gzip.open(self.partial, "wb"))  # noqa: SIM115
            if compress
            else open(self.partial, "wb")  # noqa: SIM115
        )
        self._closed = False

    def write(self, frame: bytes, received_ns: int | None = None) -> None:
        """Append one frame with its receive time (default: now).

        :raises ValueError: the frame holds a line end (it would become two lines)
        """
        if b"\n" in frame or b"\r" in frame:
            raise ValueError("a capture frame cannot hold a newline or other line end")
        if received_ns is None:
            received_ns = time.time_ns()
        seconds, ns = divmod(received_ns, 1_000_000_000)
        line = b"%d.%06d: %s\n" % (seconds, ns // 1000, frame)
        self._out.write(line)
        self.frames += 1
        self.bytes += len(line)

    def commit(self) -> None:
        """Close the file and give it its final name."""
        if self._closed:
            return
        self._closed = True
        self._out.close()
        os.replace(self.partial, self.path)

    def discard(self) -> None:
        """Close the file and remove it: nothing is left behind."""
        if self._closed:
            return
        self._closed = True
        self._out.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.partial)

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def write_capture(
    path: str, frames: Iterable[bytes], t0: float = 1_700_000_000.0, dt: float = 0.001
) -> None:
    """Write ``frames`` as a capture, the i-th received at ``t0 + i * dt`` epoch seconds.

    For generated streams and tests: the times are floats on purpose (they only order and pace
    a replay, and never reach a price, a quantity or a checksum), rounded to microseconds.

    :raises ValueError: a frame holds a line end
    """
    with CaptureWriter(path) as out:
        for i, frame in enumerate(frames):
            # t0 + i * dt rather than a running sum, so rounding error does not accumulate
            out.write(frame, round((t0 + i * dt) * 1e6) * 1000)
