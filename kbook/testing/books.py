"""Checksummed Kraken book streams built from a plan of small operations, fast and exactly.

:class:`Pair` describes an instrument (symbol, decimals, a typical mid price and the largest size
worth generating). :func:`render_book_stream` turns a *plan* (a pair, a protocol, a depth and a
list of :class:`Snapshot` and :class:`Update` steps) into the frames a client would receive: the
v2 ``instrument`` message and subscribe ack (or the v1 ``subscriptionStatus``), then a snapshot
and updates, each carrying the checksum Kraken would send. The plan's operations are resolved
against the book as it is at that point, so any plan gives a valid, uncrossed stream, and a plan
of fewer or smaller operations gives a shorter, simpler stream: that is what lets Hypothesis
shrink a failing stream to a readable one (see :mod:`kbook.testing.strategies`).

Books are integers all the way (price ticks and quantity lots), and a checksum token is the
decimal text of the integer, so a stream of a thousand messages renders in milliseconds. The
result, :class:`FrameStream`, is a sequence of raw frames (``bytes``) that also knows the book a
correct client holds at the end.

>>> plan = [Snapshot("full"), Update((Op("insert", "bid"),)), Update((Op("delete", "ask"),))]
>>> stream = render_book_stream(BTC_USD, plan, depth=10)
>>> len(stream), stream.checksums
(5, 3)
>>> stream[0][:30]
b'{"channel":"instrument","type"'

What it is not: a market model (prices wander only as far as the operations push them), and it
never writes a wrong frame on purpose (:mod:`kbook.testing.corrupt` does, visibly labelled).
"""

from __future__ import annotations

import bisect
import json
import random
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, overload

from kbook.testing.wire import MAX_TICKS, fixed_text

__all__ = [
    "BTC_USD",
    "DOGE_USD",
    "OPS",
    "PRESET_PAIRS",
    "SHIB_USD",
    "SHAPES",
    "THIN_PAIR",
    "FrameStream",
    "Op",
    "Pair",
    "Seeded",
    "Snapshot",
    "Update",
    "book_checksum",
    "render_book_stream",
]

Protocol = Literal["v1", "v2"]
BookSide = Literal["bid", "ask"]
Level = tuple[int, int]  # (price ticks, quantity lots)

#: Operations of an update entry, in shrinking order (towards the first, the most common one).
OPS: tuple[str, ...] = ("change", "insert", "delete", "top", "deep", "absent", "reenter", "repeat")
#: Snapshot shapes, in shrinking order.
SHAPES: tuple[str, ...] = ("full", "thin", "one_side", "over", "empty")

# Kraken checksums cover the ten best levels of each side.
_CHECKSUM_LEVELS = 10
# 2023-10-06T17:35:55.440295Z, the docs' MATIC/USD example time, in microseconds.
_T0_US = 1_696_613_755_440_295
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A fixed v1 channel id; v1 clients key books by (channelName, pair), never by this.
_V1_CHANNEL_ID = 336
# Assets v1 still calls by their old Kraken codes.
_V1_ASSETS = {"BTC": "XBT", "DOGE": "XDG"}


@dataclass(frozen=True, slots=True)
class Pair:
    """An instrument to generate books for.

    :param symbol: the v2 symbol (``BTC/USD``); v1 frames use :attr:`v1_name`.
    :param price_precision: price decimals; one tick is ``10**-price_precision``.
    :param qty_precision: quantity decimals; one lot is ``10**-qty_precision``.
    :param mid: a typical mid price, in ticks.
    :param max_lots: the largest quantity generated, in lots (beyond ``2**63`` for SHIB-like
        pairs: engines that keep lots in an int64 overflow there).
    :param levels: how many levels a side usually has; fewer than the depth makes a thin pair.
    """

    symbol: str
    price_precision: int
    qty_precision: int
    mid: int
    max_lots: int
    levels: int = 1000

    @property
    def v1_name(self) -> str:
        """The v1 name: v1 still calls bitcoin XBT and dogecoin XDG."""
        return "/".join(_V1_ASSETS.get(part, part) for part in self.symbol.split("/"))

    def price_text(self, ticks: int) -> str:
        """Write a price with exactly the pair's decimals (``450001`` -> ``"45000.1"``)."""
        return fixed_text(ticks, self.price_precision)

    def qty_text(self, lots: int) -> str:
        """Write a quantity with exactly the pair's decimals."""
        return fixed_text(lots, self.qty_precision)


#: Bitcoin: one price decimal, eight quantity decimals, prices around 45000.
BTC_USD = Pair("BTC/USD", 1, 8, 450_000, 10**13)
#: A cheap coin: seven price decimals, prices around 0.08.
DOGE_USD = Pair("DOGE/USD", 7, 8, 812_345, 10**16)
#: A very cheap coin: quantities beyond int64 lots (10**15 whole units at five decimals).
SHIB_USD = Pair("SHIB/USD", 8, 5, 1_234, 10**20)
#: A thin pair: six levels a side at most, wide gaps.
THIN_PAIR = Pair("MATIC/GBP", 4, 8, 5_000, 10**12, levels=6)
#: The presets :func:`kbook.testing.strategies.pairs` starts from; the simulator serves each of
#: them with the same decimals (``kbook.sim.PRESETS``), so their streams can be replayed there.
PRESET_PAIRS: tuple[Pair, ...] = (BTC_USD, DOGE_USD, SHIB_USD, THIN_PAIR)


class Op(NamedTuple):
    """One update entry to resolve against the book.

    :param kind: one of :data:`OPS`: ``change`` a level's quantity, ``insert`` a new level near
        the touch, ``delete`` a level, ``top`` a new best price, ``deep`` a level behind the worst
        one (a full side evicts a level), ``absent`` delete a price that has no level, ``reenter``
        a price that was evicted or deleted, ``repeat`` a price already in this message.
    :param side: ``"bid"`` or ``"ask"``.
    :param pick: which level, gap or earlier entry (reduced modulo what there is; 0 is the touch).
    :param lots: the new quantity's choice (reduced into ``1..pair.max_lots``; 0 deletes where
        the kind allows it).
    """

    kind: str
    side: BookSide
    pick: int = 0
    lots: int = 1


class Update(NamedTuple):
    """One update message: its operations, in wire order within each side."""

    ops: tuple[Op, ...]


class Snapshot(NamedTuple):
    """A snapshot message (the first step, or a resubscription mid-stream).

    :param shape: one of :data:`SHAPES`: ``full`` (depth levels a side, or the pair's usual
        count), ``thin`` (a few), ``one_side`` (the other side empty), ``over`` (more levels than
        the depth, which the client truncates), ``empty``.
    :param seed: seeds the levels' gaps and sizes.
    :param jump: ticks the mid price moves by before this snapshot.
    """

    shape: str = "full"
    seed: int = 0
    jump: int = 0


class Seeded(NamedTuple):
    """``messages`` more messages drawn from a seeded generator, with the mixture Hypothesis draws.

    What a long plan ends with: Hypothesis keeps a few thousand choices per example, so a
    1,000-message stream draws its first steps one by one and the rest as this one step (it
    still shrinks, by ``messages`` and ``seed``).
    """

    seed: int
    messages: int


Step = Snapshot | Update | Seeded


def book_checksum(bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """Return Kraken's CRC32 of a book given best-first integer levels.

    A checksum token is a value written at the pair's decimals with the ``'.'`` and leading
    zeros removed, which is exactly the decimal text of its integer ticks or lots.

    >>> book_checksum([(450001, 1)], [(450002, 150_000_000)])
    3438450807
    >>> from kbook.reference import crc32
    >>> crc32("450002" "150000000" "450001" "1")
    3438450807
    """
    text = "".join(f"{p}{q}" for p, q in asks[:_CHECKSUM_LEVELS])
    text += "".join(f"{p}{q}" for p, q in bids[:_CHECKSUM_LEVELS])
    return zlib.crc32(text.encode("ascii"))


class Frames(Sequence[bytes]):
    """A sequence of raw frames held in a ``frames`` tuple: what :class:`FrameStream` and
    :class:`~kbook.testing.corrupt.Corrupted` share (index, slice, length, iteration)."""

    __slots__ = ()
    frames: tuple[bytes, ...]

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        return self.frames[index]

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.frames)


@dataclass(frozen=True, eq=False)
class FrameStream(Frames):
    """A self-describing stream of raw frames, as a client receives them.

    For v2 the ``instrument`` message and the subscribe ack come first, so a bare
    ``kbook.Feed().process(frame)`` loop knows the precision and the depth and verifies every
    checksum (:attr:`checksums` of them). :attr:`bids` and :attr:`asks` are the book a correct
    client holds after the last frame (best first, ticks and lots; for level3, each level's
    total). :attr:`notes` says what was done to the frames since (``"style 123"``).
    """

    frames: tuple[bytes, ...]
    protocol: str
    channel: str
    pair: Pair
    depth: int
    checksums: int
    bids: tuple[Level, ...] = ()
    asks: tuple[Level, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def symbol(self) -> str:
        """The book's name on the wire (the v1 pair name for v1)."""
        return self.pair.symbol if self.protocol == "v2" else self.pair.v1_name

    def book_frames(self) -> list[bytes]:
        """Return the frames that carry book data (the preamble left out)."""
        if self.protocol == "v1":
            return [f for f in self.frames if f.startswith(b"[") and b'"book-' in f[-80:]]
        marker = b'"channel":"level3"' if self.channel == "level3" else b'"channel":"book"'
        return [f for f in self.frames if marker in f[:40]]

    def top(self, side: BookSide, n: int = 10) -> list[tuple[str, str]]:
        """Return the final book's ``n`` best levels of one side as exact strings."""
        levels = self.bids if side == "bid" else self.asks
        return [(self.pair.price_text(p), self.pair.qty_text(q)) for p, q in levels[:n]]

    def __repr__(self) -> str:
        head = (
            f"FrameStream({self.protocol} {self.channel} {self.symbol!r} "
            f"depth={self.depth} decimals={self.pair.price_precision}/"
            f"{self.pair.qty_precision}, {len(self.frames)} frames"
        )
        return _frames_repr(head, self.frames)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints a falsifying example with this, rather than field by field
        printer.text(repr(self))


#: Frames shown by a stream's repr; the rest are counted (a shrunk example is far shorter).
REPR_FRAMES = 40


def _frames_repr(head: str, frames: Sequence[bytes]) -> str:
    """Write a head line, then one frame per line (at most :data:`REPR_FRAMES` of them)."""
    lines = [head + ":"] + [f"  {frame!r}" for frame in frames[:REPR_FRAMES]]
    if len(frames) > REPR_FRAMES:
        lines.append(f"  ... and {len(frames) - REPR_FRAMES} more frames")
    return "\n".join(lines) + "\n)"


class _Book:
    """The generator's integer book: prices ascending per side, lots by price."""

    def __init__(self) -> None:
        self.prices: dict[str, list[int]] = {"bid": [], "ask": []}
        self.lots: dict[str, dict[int, int]] = {"bid": {}, "ask": {}}
        self.seen: dict[str, set[int]] = {"bid": set(), "ask": set()}
        # each level's checksum token (price digits then quantity digits), kept with the level
        self.tokens: dict[str, dict[int, str]] = {"bid": {}, "ask": {}}

    def set(self, side: str, price: int, lots: int) -> None:
        book, prices = self.lots[side], self.prices[side]
        if lots:
            if price not in book:
                bisect.insort(prices, price)
                self.seen[side].add(price)
            book[price] = lots
            self.tokens[side][price] = f"{price}{lots}"
        elif price in book:
            del book[price]
            del self.tokens[side][price]
            del prices[bisect.bisect_left(prices, price)]

    def checksum_text(self) -> str:
        """Kraken's checksum input: the ten best asks, then the ten best bids."""
        asks, bids = self.tokens["ask"], self.tokens["bid"]
        text = "".join([asks[p] for p in self.prices["ask"][:_CHECKSUM_LEVELS]])
        return text + "".join([bids[p] for p in self.prices["bid"][: -_CHECKSUM_LEVELS - 1 : -1]])

    def best_first(self, side: str) -> list[int]:
        prices = self.prices[side]
        return prices[::-1] if side == "bid" else list(prices)

    def best(self, side: str) -> int | None:
        prices = self.prices[side]
        if not prices:
            return None
        return prices[-1] if side == "bid" else prices[0]

    def at_rank(self, side: str, rank: int) -> int:
        prices = self.prices[side]
        return prices[-1 - rank] if side == "bid" else prices[rank]

    def truncate(self, depth: int) -> None:
        for side in ("bid", "ask"):
            prices, book = self.prices[side], self.lots[side]
            tokens = self.tokens[side]
            while len(prices) > depth:
                price = prices.pop(0 if side == "bid" else -1)
                del book[price], tokens[price]

    def top(self, side: str, n: int) -> list[Level]:
        prices = self.prices[side]
        chosen = prices[: -n - 1 : -1] if side == "bid" else prices[:n]
        book = self.lots[side]
        return [(p, book[p]) for p in chosen]

    def clear(self) -> None:
        for side in ("bid", "ask"):
            self.prices[side].clear()
            self.lots[side].clear()
            self.tokens[side].clear()


class _Renderer:
    """Resolves a plan step by step and writes each message's frame."""

    def __init__(self, pair: Pair, protocol: Protocol, depth: int) -> None:
        self.pair = pair
        self.protocol = protocol
        self.depth = depth
        self.book = _Book()
        self.mid = min(max(pair.mid, 2), MAX_TICKS - 1)
        self.us = _T0_US
        self.checksums = 0
        p = pair.price_precision
        q = pair.qty_precision
        self._p_scale = 10**p
        self._q_scale = 10**q
        self._stamp_second = -1
        self._stamp_head = ""

    # -- number text -----------------------------------------------------------------------------

    def _v2_number(self, units: int, scale: int) -> str:
        # The live feed's float-style text: no trailing zeros, ".0" kept when integral.
        whole, fraction = divmod(units, scale)
        if fraction == 0:
            return f"{whole}.0"
        digits = str(fraction + scale)[1:].rstrip("0")
        return f"{whole}.{digits}"

    def _v1_number(self, units: int, scale: int) -> str:
        if scale == 1:
            return str(units)
        whole, fraction = divmod(units, scale)
        return f"{whole}.{str(fraction + scale)[1:]}"

    def _stamp(self) -> str:
        seconds, micros = divmod(self.us, 1_000_000)
        if seconds != self._stamp_second:
            # formatting a datetime costs more than the rest of a small frame: once a second
            self._stamp_second = seconds
            self._stamp_head = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._stamp_head}.{micros:06d}Z"

    # -- frames ----------------------------------------------------------------------------------

    def preamble(self) -> list[bytes]:
        pair = self.pair
        symbol = json.dumps(pair.symbol)
        if self.protocol == "v1":
            text = (
                f'{{"channelID":{_V1_CHANNEL_ID},"channelName":"book-{self.depth}",'
                f'"event":"subscriptionStatus","pair":{json.dumps(pair.v1_name)},'
                f'"status":"subscribed","subscription":{{"depth":{self.depth},'
                f'"name":"book"}}}}'
            )
            return [text.encode()]
        base, _, quote = pair.symbol.partition("/")
        instrument = (
            f'{{"channel":"instrument","type":"snapshot","data":{{"assets":[],"pairs":[{{'
            f'"symbol":{symbol},"base":{json.dumps(base)},"quote":{json.dumps(quote)},'
            f'"status":"online","qty_precision":{pair.qty_precision},'
            f'"qty_increment":{_increment(pair.qty_precision)},'
            f'"price_precision":{pair.price_precision},'
            f'"price_increment":{_increment(pair.price_precision)},'
            f'"marginable":false,"has_index":true}}]}}}}'
        )
        stamp = self._stamp()
        ack = (
            f'{{"method":"subscribe","result":{{"channel":"book","depth":{self.depth},'
            f'"snapshot":true,"symbol":{symbol}}},"success":true,'
            f'"time_in":"{stamp}","time_out":"{stamp}"}}'
        )
        return [instrument.encode(), ack.encode()]

    def _frame(self, kind: str, bids: list[Level], asks: list[Level], checksum: int) -> bytes:
        ps, qs = self._p_scale, self._q_scale
        if self.protocol == "v2":
            num = self._v2_number
            b = ",".join(f'{{"price":{num(p, ps)},"qty":{num(q, qs)}}}' for p, q in bids)
            a = ",".join(f'{{"price":{num(p, ps)},"qty":{num(q, qs)}}}' for p, q in asks)
            text = (
                f'{{"channel":"book","type":"{kind}","data":[{{"symbol":'
                f'{json.dumps(self.pair.symbol)},"bids":[{b}],"asks":[{a}],'
                f'"checksum":{checksum},"timestamp":"{self._stamp()}"}}]}}'
            )
            return text.encode()
        fix = self._v1_number
        stamp = f"{self.us // 1_000_000}.{self.us % 1_000_000:06d}"
        b = ",".join(f'["{fix(p, ps)}","{fix(q, qs)}","{stamp}"]' for p, q in bids)
        a = ",".join(f'["{fix(p, ps)}","{fix(q, qs)}","{stamp}"]' for p, q in asks)
        if kind == "snapshot":
            payloads = [f'{{"as":[{a}],"bs":[{b}]}}']
        else:
            payloads = []
            if asks:
                payloads.append(f'{{"a":[{a}]')
            if bids:
                payloads.append(f'{{"b":[{b}]')
            # both sides travel as two objects, and "c" belongs to the last one only
            payloads = [p + "}" for p in payloads[:-1]] + [payloads[-1] + f',"c":"{checksum}"}}']
        tail = f'"book-{self.depth}",{json.dumps(self.pair.v1_name)}'
        return f"[{_V1_CHANNEL_ID},{','.join(payloads)},{tail}]".encode()

    def checksum(self) -> int:
        return zlib.crc32(self.book.checksum_text().encode("ascii"))

    # -- steps -----------------------------------------------------------------------------------

    def snapshot(self, step: Snapshot) -> bytes:
        rng = random.Random(step.seed)
        self.us += 1 + rng.randrange(5_000)
        self.mid = min(max(self.mid + step.jump, 2), MAX_TICKS - 1)
        full = min(self.depth, self.pair.levels)
        shape = step.shape
        if shape == "full":
            nb = na = full
        elif shape == "thin":
            nb, na = rng.randint(0, min(9, full)), rng.randint(0, min(9, full))
        elif shape == "one_side":
            nb, na = (0, rng.randint(1, full)) if rng.getrandbits(1) else (rng.randint(1, full), 0)
        elif shape == "over":
            nb, na = self.depth + rng.randint(1, 5), self.depth + rng.randint(0, 5)
        else:
            nb = na = 0
        spread = rng.choice((1, 1, 2, 5, 100))
        gap_limit = 50 if self.pair.levels < self.depth else rng.choice((1, 2, 5))
        best_bid = max(self.mid - spread // 2, 1)
        bids: list[Level] = []
        price = best_bid
        while len(bids) < nb and price >= 1:
            bids.append((price, self._random_lots(rng)))
            price -= rng.randint(1, gap_limit)
        asks: list[Level] = []
        price = best_bid + spread
        while len(asks) < na and price <= MAX_TICKS:
            asks.append((price, self._random_lots(rng)))
            price += rng.randint(1, gap_limit)
        if self.protocol == "v1" and not (bids or asks):
            # a v1 snapshot teaches the pair's decimals through its strings: never an empty one
            bids.append((best_bid, self._random_lots(rng)))
        self.book.clear()
        for p, q in bids:
            self.book.set("bid", p, q)
        for p, q in asks:
            self.book.set("ask", p, q)
        self.book.truncate(self.depth)
        self.checksums += self.protocol == "v2"  # a v1 snapshot carries no checksum
        return self._frame("snapshot", bids, asks, self.checksum())

    def _random_lots(self, rng: random.Random) -> int:
        cap = self.pair.max_lots
        roll = rng.randrange(10)
        if roll < 3:
            round_lot: int = 10 ** max(self.pair.qty_precision - 2, 0)
            return min(rng.randint(1, 300) * round_lot, cap)
        if roll < 9:
            return rng.randint(1, min(3 * self._q_scale, cap))
        return rng.randint(1, cap)

    def _lots(self, choice: int) -> int:
        return choice % self.pair.max_lots + 1

    def update(self, step: Update) -> bytes | None:
        book = self.book
        entries: list[tuple[str, int, int]] = []
        # the highest bid and lowest ask at any point of the message: new bids stay below the
        # floor and new asks above the ceiling, so no order of applying the sides ever crosses
        ceiling = book.best("bid") or 0
        floor = book.best("ask")

        def placeable(side: str, price: int) -> bool:
            if not 1 <= price <= MAX_TICKS:
                return False
            if side == "bid":
                return floor is None or price < floor
            return price > ceiling

        for op in step.ops:
            entry = self._resolve(op, entries)
            if entry is None:
                continue
            side, price, lots = entry
            if lots and price not in book.lots[side] and not placeable(side, price):
                continue
            entries.append(entry)
            book.set(side, price, lots)
            if lots and side == "bid":
                ceiling = max(ceiling, price)
            elif lots:
                floor = price if floor is None else min(floor, price)
        if not entries and (self.protocol == "v1" or not step.ops):
            return None  # a v1 update has at least one level; an empty plan sends nothing
        self.us += 1 + len(entries) * 37
        book.truncate(self.depth)  # Kraken sends no delete for a level pushed out of the window
        self.checksums += 1
        bids = [(p, q) for s, p, q in entries if s == "bid"]
        asks = [(p, q) for s, p, q in entries if s == "ask"]
        return self._frame("update", bids, asks, self.checksum())

    def _resolve(self, op: Op, entries: list[tuple[str, int, int]]) -> tuple[str, int, int] | None:
        book, side, kind = self.book, op.side, op.kind
        own = book.prices[side]
        other_side = "ask" if side == "bid" else "bid"
        sign = -1 if side == "bid" else 1  # towards the back of this side
        lots = self._lots(op.lots)
        if kind in ("change", "delete") and own:
            price = book.at_rank(side, op.pick % len(own))
            if kind == "delete":
                return (side, price, 0)
            old = book.lots[side][price]
            return (side, price, lots if lots != old else lots % self.pair.max_lots + 1)
        if kind == "repeat" and entries:
            earlier, price, _ = entries[op.pick % len(entries)]
            return (earlier, price, 0 if op.lots == 0 else lots)
        if kind == "absent":
            gone = sorted(book.seen[side] - book.lots[side].keys())
            if gone and op.pick % 2:
                return (side, gone[(op.pick // 2) % len(gone)], 0)
            ref = book.best(side) or book.best(other_side) or self.mid
            price = ref + sign * (1 + op.pick % 40)
            while price in book.lots[side]:  # the first free price behind it
                price += sign
            return (side, price, 0) if 1 <= price <= MAX_TICKS else None
        if kind == "reenter":
            gone = sorted(book.seen[side] - book.lots[side].keys())
            if gone:
                return (side, gone[op.pick % len(gone)], lots)
            kind = "deep"
        if kind == "top" and own:
            best = book.best(side)
            assert best is not None
            return (side, best - sign * (1 + op.pick % 20), lots)
        if kind == "deep" and own:
            worst = book.at_rank(side, len(own) - 1)
            return (side, worst + sign * (1 + op.pick % 50), lots)
        # insert (and any kind with nothing to act on): a price near this side's touch
        other = book.best(other_side)
        if own:
            touch = book.best(side)
            assert touch is not None
            price = touch + sign * (op.pick % (2 * self.depth + 3))
        elif other is not None:
            price = other + sign * (1 + op.pick % 20)
        else:
            price = self.mid + (0 if side == "bid" else 1) + sign * (op.pick % 20)
        return (side, price, lots)


def _increment(dp: int) -> str:
    """Write ``10**-dp`` as a float repr would (``0.1``, ``1e-05``), as Kraken does."""
    if dp == 0:
        return "1.0"
    if dp <= 4:
        return "0." + "0" * (dp - 1) + "1"
    return f"1e-{dp:02d}"


def _expand(steps: Sequence[Step]) -> Iterator[Snapshot | Update]:
    """Yield the steps of a plan, a :class:`Seeded` step as the messages it stands for."""
    for step in steps:
        if not isinstance(step, Seeded):
            yield step
            continue
        # getrandbits alone (a C call) rather than randrange: this loop is most of a long
        # stream's cost; the small modulo bias does not matter to a test generator
        bits = random.Random(step.seed).getrandbits
        for _ in range(step.messages):
            if bits(16) % 20 == 19:  # one message in twenty is a resnapshot
                yield Snapshot(SHAPES[bits(16) % len(SHAPES)], bits(32), bits(16) % 121 - 60)
                continue
            ops = []
            for _ in range(1 + bits(16) % 6):
                roll = bits(16) % 3
                lots = bits(16) % 10 if roll == 0 else (bits(40) % 10**9 if roll == 1 else bits(96))
                ops.append(Op(OPS[bits(3)], "bid" if bits(1) else "ask", bits(16), lots))
            yield Update(tuple(ops))


def render_book_stream(
    pair: Pair, plan: Sequence[Step], *, protocol: Protocol = "v2", depth: int = 10
) -> FrameStream:
    """Render a plan into the frames a client receives, every checksum as Kraken computes it.

    The first step should be a :class:`Snapshot` (one is put in front otherwise). An update whose
    operations all resolve to nothing is not sent (v1), or sent with no levels (v2); an update
    with no operations is not sent. A :class:`Seeded` step stands for that many more messages.

    :param pair: the instrument.
    :param plan: snapshots and updates, in order.
    :param protocol: ``"v2"`` or ``"v1"``.
    :param depth: the subscribed depth (Kraken offers 10, 25, 100, 500 and 1000).
    :raises ValueError: on an unknown protocol or a depth below 1.

    Complexity: O(entries x depth) for the book, plus O(messages) checksums of 20 levels.
    """
    if protocol not in ("v1", "v2"):
        raise ValueError(f"protocol must be 'v1' or 'v2', got {protocol!r}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    renderer = _Renderer(pair, protocol, depth)
    frames = renderer.preamble()
    steps = list(plan)
    if not steps or not isinstance(steps[0], Snapshot):
        steps.insert(0, Snapshot())
    for step in _expand(steps):
        if isinstance(step, Snapshot):
            frames.append(renderer.snapshot(step))
        else:
            frame = renderer.update(step)
            if frame is not None:
                frames.append(frame)
    book = renderer.book
    return FrameStream(
        tuple(frames),
        protocol,
        "book",
        pair,
        depth,
        renderer.checksums,
        tuple(book.top("bid", depth)),
        tuple(book.top("ask", depth)),
    )
