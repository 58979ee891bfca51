"""Differential-test your own order book against kbook's with Hypothesis.

``NaiveBook`` is the book many people write first: a dict per side, sorted when read. It applies
snapshots and updates correctly, but it forgets that a Kraken book is only ``depth`` levels
deep: a level pushed out of the window gets no delete message, the client must drop it itself.
``book_streams`` finds that within a few examples and shrinks it to the smallest stream that
shows it, which this script prints: the instrument message, the subscribe ack and one snapshot
carrying more levels than the depth (or, on another run, a full book and one update inserting a
single level). The fixed book then passes the same property.

Run it: ``python examples/differential_test.py``. It needs ``kbook[testing]`` (Hypothesis) and
no network or simulator (``KBOOK_URL`` is not used).
"""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import HealthCheck, given, settings

from kbook import Feed
from kbook.testing import BTC_USD, FrameStream, book_streams


class NaiveBook:
    """A user's book: price -> quantity per side, best levels found by sorting."""

    def __init__(self, depth: int, truncate: bool) -> None:
        self.depth = depth
        self.truncate = truncate  # the fix: keep only `depth` levels a side
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def process(self, frame: bytes) -> None:
        msg = json.loads(frame, parse_float=Decimal)
        if not isinstance(msg, dict) or msg.get("channel") != "book":
            return
        for entry in msg["data"]:
            if msg["type"] == "snapshot":
                self.bids.clear()
                self.asks.clear()
            for side, levels in ((self.bids, entry["bids"]), (self.asks, entry["asks"])):
                for level in levels:
                    if level["qty"] == 0:
                        side.pop(level["price"], None)
                    else:
                        side[level["price"]] = level["qty"]
            if self.truncate:
                for price, _ in self.levels("bid")[self.depth :]:
                    del self.bids[price]
                for price, _ in self.levels("ask")[self.depth :]:
                    del self.asks[price]

    def levels(self, side: str) -> list[tuple[Decimal, Decimal]]:
        if side == "bid":
            return sorted(self.bids.items(), reverse=True)
        return sorted(self.asks.items())


def same_as_kbook(stream: FrameStream, truncate: bool) -> None:
    """After every frame, the user's book holds exactly what kbook's verified book holds."""
    feed = Feed()
    mine = NaiveBook(stream.depth, truncate)
    for frame in stream:
        feed.process(frame)  # raises ChecksumMismatch if a checksum does not match
        mine.process(frame)
        book = feed.book(stream.symbol)
        if book is None:
            continue
        theirs = (book.bids_decimal(), book.asks_decimal())
        assert (mine.levels("bid"), mine.levels("ask")) == theirs, "the books differ"


# derandomize: the same examples every run, so this script prints the same counter-example
SETTINGS = settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow],
)
STREAMS_DEPTH = 10
STREAMS = book_streams(protocol="v2", depth=STREAMS_DEPTH, pair=BTC_USD, max_messages=20)


@SETTINGS
@given(STREAMS)
def test_naive_book_matches_kbook(stream: FrameStream) -> None:
    same_as_kbook(stream, truncate=False)


@SETTINGS
@given(STREAMS)
def test_fixed_book_matches_kbook(stream: FrameStream) -> None:
    same_as_kbook(stream, truncate=True)


def main() -> None:
    try:
        test_naive_book_matches_kbook()
    except AssertionError as failure:
        notes = "\n".join(getattr(failure, "__notes__", []))
        print(f"Hypothesis found the bug: {failure}")
        print(notes)
        shrunk = notes.count("\n  b'")
        print(f"shrunk to {shrunk} frames: the book kept more than its {STREAMS_DEPTH} levels")
    else:
        raise SystemExit("the missing truncation went unnoticed")
    test_fixed_book_matches_kbook()
    print("with truncation to the depth, the book matches kbook on every example")


if __name__ == "__main__":
    main()
