"""Labelled damage to a frame stream: what a correct client must notice, and what it cannot.

A :class:`Corruption` is a recipe (a kind, a position as a fraction of the stream, and a detail
number that picks the digit or the cut), so one corruption fits any stream and shrinks like any
other Hypothesis example. :meth:`Corruption.apply` returns a :class:`Corrupted` stream labelled by
the oracle, :class:`kbook.reference.RefFeed`, which reads the damaged frames as a correct client
would:

* ``must_detect``: some frame fails to decode, a checksum does not match, or a book turns crossed;
  a client that goes on trusting its book after that is wrong;
* otherwise the damage is invisible on the wire (a digit beyond the ten checksummed levels, a
  duplicated update that sets the same values again), and ``changes_book`` says whether the book
  the client ends with differs from the honest one all the same.

>>> from kbook.testing.books import BTC_USD, Op, Snapshot, Update, render_book_stream
>>> stream = render_book_stream(BTC_USD, [Snapshot(), Update((Op("change", "bid"),))])
>>> damaged = Corruption("drop", 1.0).apply(stream)
>>> len(damaged) == len(stream) - 1, damaged.must_detect, damaged.changes_book
(True, False, True)

What it is not: a fuzzer of arbitrary bytes (``tests/fuzz`` is); every kind here is damage that
happens to real feeds: a flipped digit, a lost, repeated or late message, a cut frame, noise.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kbook.reference import RefFeed
from kbook.testing.books import Frames, FrameStream, _frames_repr

__all__ = ["CORRUPTION_KINDS", "Corrupted", "Corruption"]

#: Every kind of corruption, in shrinking order.
CORRUPTION_KINDS: tuple[str, ...] = (
    "digit",
    "checksum",
    "drop",
    "duplicate",
    "reorder",
    "truncate",
    "garbage",
)

# Digits of a level's price or quantity: v2 numbers after their key, v1 strings in an entry.
_V2_LEVEL_NUMBER = re.compile(rb'"(?:price|qty|limit_price|order_qty)":(-?[0-9][0-9.eE+-]*)')
_V1_LEVEL_NUMBER = re.compile(rb'\["([0-9.]+)","([0-9.]+)"')
_CHECKSUM = re.compile(rb'"checksum":([0-9]+)|"c":"([0-9]+)"')
_GARBAGE = (b"\x00\x7fnot json\xff", b"{", b"[]]", b'{"channel":"book"', b" ")


@dataclass(frozen=True, eq=False)
class Corrupted(Frames):
    """A damaged stream and its labels (see the module documentation).

    :attr:`position` is the index of the damaged (or inserted) frame in :attr:`frames`;
    :attr:`detected_at` the first frame at which a correct client notices, or None.
    """

    frames: tuple[bytes, ...]
    stream: FrameStream
    kind: str
    position: int
    must_detect: bool
    detected_at: int | None
    changes_book: bool

    def __repr__(self) -> str:
        seen = "must be detected" if self.must_detect else "invisible"
        if self.detected_at is not None:
            seen += f" at frame {self.detected_at}"
        head = f"Corrupted({self.kind} at frame {self.position}, {seen}"
        head += ", changes the book" if self.changes_book else ""
        return _frames_repr(head, self.frames)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@dataclass(frozen=True, slots=True)
class Corruption:
    """A recipe for damaging a stream.

    :param kind: one of :data:`CORRUPTION_KINDS` (``reorder`` swaps two book frames, and leaves
        a stream of one book frame as it is).
    :param where: which book frame, as a fraction of the stream's book frames (0: the first).
    :param detail: picks the digit and its new value, the cut, or the garbage.
    """

    kind: str
    where: float = 0.0
    detail: int = 0

    def apply(self, stream: FrameStream) -> Corrupted:
        """Damage ``stream`` and label the result with the reference model.

        Complexity: one pass of the reference model over the stream.
        """
        frames = list(stream.frames)
        books = [i for i, frame in enumerate(frames) if _is_book(frame)]
        if not books:
            raise ValueError("the stream has no book frame to damage")
        target = books[min(int(self.where * len(books)), len(books) - 1)]
        kind, detail = self.kind, self.detail
        if kind in ("digit", "checksum"):
            # a frame without levels has only its checksum to damage, and a v1 stream of one
            # snapshot has no checksum at all: each kind falls back on the other
            attempts = ("digit", "checksum") if kind == "digit" else ("checksum", "digit")
            for attempt in attempts:
                at = target
                if attempt == "digit":
                    changed = _change_digit(frames[at], detail, _level_spans(frames[at]))
                else:
                    with_sum = [i for i in books if _CHECKSUM.search(frames[i])]
                    if not with_sum:
                        continue
                    at = min(with_sum, key=lambda i: (i < target, abs(i - target)))
                    changed = _change_digit(frames[at], detail, _checksum_spans(frames[at]))
                if changed is not None:
                    frames[at], target = changed, at
                    break
            else:
                raise ValueError("the stream has no digit of a level or checksum to change")
        if kind == "drop":
            del frames[target]
        elif kind == "duplicate":
            frames.insert(target + 1, frames[target])
            target += 1
        elif kind == "reorder" and len(books) > 1:
            # book frames trade places with each other only: a snapshot overtaking its own
            # subscribe ack is not a feed's damage but a different conversation
            at = books.index(target)
            other = books[at + 1] if at + 1 < len(books) else books[at - 1]
            frames[target], frames[other] = frames[other], frames[target]
        elif kind == "truncate":
            frame = frames[target]
            frames[target] = frame[: 1 + detail % (len(frame) - 1)]
        elif kind == "garbage":
            frames.insert(target, _GARBAGE[detail % len(_GARBAGE)])
        elif kind not in ("digit", "checksum", "reorder"):
            raise ValueError(f"kind must be one of {CORRUPTION_KINDS}, got {self.kind!r}")
        detected_at, final = _read(frames, stream)
        _, honest = _read(list(stream.frames), stream)
        return Corrupted(
            tuple(frames),
            stream,
            self.kind,
            min(target, len(frames) - 1),
            detected_at is not None,
            detected_at,
            final != honest,
        )


def _is_book(frame: bytes) -> bool:
    # decoded rather than matched: a frame respelled by a JSON style has no fixed layout
    try:
        msg = json.loads(frame)
    except ValueError:
        return False
    if isinstance(msg, list):
        return any(isinstance(item, str) and item.startswith("book-") for item in msg)
    return isinstance(msg, dict) and msg.get("channel") in ("book", "level3")


def _level_spans(frame: bytes) -> list[tuple[int, int]]:
    """Where the levels' numbers are; in a respelled frame, every number outside a string (the
    label says what the change did, whatever it hit)."""
    if frame.startswith(b"["):
        spans = [m.span(g) for m in _V1_LEVEL_NUMBER.finditer(frame) for g in (1, 2)]
    else:
        spans = [m.span(1) for m in _V2_LEVEL_NUMBER.finditer(frame)]
    return spans or _number_spans(frame)


def _number_spans(frame: bytes) -> list[tuple[int, int]]:
    """Digit runs outside JSON strings: numbers, never a key, an escape or a timestamp."""
    spans = []
    in_string = escaped = False
    start = -1
    for i, byte in enumerate(frame):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
            continue
        if 48 <= byte <= 57:
            if start < 0:
                start = i
            continue
        if start >= 0:
            spans.append((start, i))
            start = -1
        in_string = byte == 0x22
    if start >= 0:
        spans.append((start, len(frame)))
    return spans


def _checksum_spans(frame: bytes) -> list[tuple[int, int]]:
    return [m.span(1) if m.group(1) is not None else m.span(2) for m in _CHECKSUM.finditer(frame)]


def _change_digit(frame: bytes, detail: int, spans: list[tuple[int, int]]) -> bytes | None:
    """Replace one digit inside one of ``spans`` by another digit; None if there is none."""
    positions = [i for start, end in spans for i in range(start, end) if 48 <= frame[i] <= 57]
    if not positions:
        return None
    at = positions[detail % len(positions)]
    old = frame[at] - 48
    new = (old + 1 + (detail // len(positions)) % 9) % 10
    return frame[:at] + bytes([48 + new]) + frame[at + 1 :]


Levels = dict[tuple[str, str], tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]]


def _read(frames: list[bytes], stream: FrameStream) -> tuple[int | None, Levels]:
    """Feed the reference model; return the first frame it notices damage at, and its books."""
    model = RefFeed()
    detected: int | None = None
    for i, frame in enumerate(frames):
        try:
            result = model.process(frame)
        except ValueError:
            detected = i if detected is None else detected
            continue
        if detected is None and (
            result.checksum_ok is False
            or any(not model.is_valid(key) for key in model.books)
            or any(not model.is_valid(("l3", symbol)) for symbol in model.l3books)
        ):
            detected = i
    books: Levels = {
        key: (list(book.bids.items()), list(book.asks.items())) for key, book in model.books.items()
    }
    for symbol, l3 in model.l3books.items():
        books[("level3", symbol)] = (
            [(price, qty) for price, qty, _ in l3.aggregated("bid", stream.depth)],
            [(price, qty) for price, qty, _ in l3.aggregated("ask", stream.depth)],
        )
    return detected, books
