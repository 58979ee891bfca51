"""Seeded synthetic Kraken book streams: realistic-looking v1 and v2 ``book`` frames, reproducibly.

:class:`BookStream` invents a book around a mid price and then evolves it with small update
messages (quantity changes near the touch, new levels, deletes, the occasional delete of a price
that is not there, the same price twice in one message). Every frame carries the checksum Kraken
would send, computed by :class:`kbook.reference.RefBook` after applying that very frame, so a
correct client never sees a mismatch. Benchmarks, the bundled sample capture and tests use it.

What it is not: it is not market data and does not model a matching engine, trades or a price
process worth studying; it is not a simulator of the connection (no acks ordering, no errors, no
resubscription logic); and it never produces a deliberately bad frame. Prices and quantities are
generated as integers (ticks and lots) and written out with integer arithmetic: no float reaches a
frame. The same seed and arguments always give the same bytes.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sortedcontainers import SortedDict

from kbook.reference import RefBook

__all__ = ["BookStream", "write_capture"]

# 2023-10-06T17:35:55.440295Z, the timestamp of the docs' MATIC/USD book example, in microseconds.
_T0_US = 1_696_613_755_440_295
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A fixed v1 channel id: it is deprecated and clients must key books by (channelName, pair).
_V1_CHANNEL_ID = 336

# Operation weights of an update; a quantity change at the touch is by far the most common event
# on a live book.
_W_CHANGE = 55
_W_INSERT = 20
_W_DELETE = 15
_W_ABSENT_DELETE = 3
_W_REPEAT = 7
_W_REFILL = 60  # only while a side is below depth, so the book stays roughly full


def _pow10(n: int) -> int:
    """Return ``10**n`` for ``n >= 0`` as an int (mypy types ``int ** int`` as Any)."""
    power: int = 10**n
    return power


def _fixed(units: int, dp: int) -> str:
    """Write ``units / 10**dp`` with exactly ``dp`` decimals (v1 strings: ``"5541.30000"``)."""
    whole, fraction = divmod(units, 10**dp)
    return f"{whole}.{fraction:0{dp}d}" if dp else str(whole)


def _number(units: int, dp: int) -> str:
    """Write ``units / 10**dp`` as a v2 JSON number: no trailing zeros, ``.0`` kept if integral.

    This is what the live feed's float-style printing looks like (``0.566``, ``45281.0``), which
    is exactly why clients must re-format to the pair precision before checksumming.
    """
    whole, fraction = divmod(units, 10**dp)
    if fraction == 0:
        return f"{whole}.0"
    return f"{whole}.{f'{fraction:0{dp}d}'.rstrip('0')}"


def _increment(dp: int) -> str:
    """Write ``10**-dp`` as a float repr would (``0.1``, ``0.0001``, ``1e-08``), as Kraken does."""
    if dp == 0:
        return "1.0"
    if dp <= 4:
        return "0." + "0" * (dp - 1) + "1"
    return f"1e-{dp:02d}"


def _v1_pair(symbol: str) -> str:
    """Return the v1 name of a v2 symbol; v1 still calls bitcoin XBT."""
    return "/".join("XBT" if part == "BTC" else part for part in symbol.split("/"))


def _rfc3339(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch_text(us: int) -> str:
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


class _Side:
    """One side of the generator's integer book: price ticks -> quantity lots.

    Keys are stored as ``sign * price`` with the sign chosen so that ascending key order is best
    first on both sides; rank 0 is always the touch.
    """

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self._sign = -1 if is_bid else 1
        self._levels: SortedDict[int, int] = SortedDict()

    def __len__(self) -> int:
        return len(self._levels)

    def __contains__(self, price: int) -> bool:
        return self._sign * price in self._levels

    def lots(self, price: int) -> int:
        lots: int = self._levels[self._sign * price]
        return lots

    def set(self, price: int, lots: int) -> None:
        if lots:
            self._levels[self._sign * price] = lots
        else:
            self._levels.pop(self._sign * price, None)

    def price_at(self, rank: int) -> int:
        key: int = self._levels.keys()[rank]
        return self._sign * key

    def best(self) -> int | None:
        return self.price_at(0) if self._levels else None

    def worst(self) -> int | None:
        return self.price_at(-1) if self._levels else None

    def worse(self, price: int, ticks: int) -> int:
        """Return the price ``ticks`` away from ``price`` towards the back of the book."""
        return price + self._sign * ticks

    def gap_below(self, rank: int) -> tuple[int, int] | None:
        """Return the inclusive price range strictly between ranks ``rank`` and ``rank + 1``."""
        a, b = self.price_at(rank), self.price_at(rank + 1)
        lo, hi = min(a, b) + 1, max(a, b) - 1
        return (lo, hi) if lo <= hi else None

    def truncate(self, depth: int) -> None:
        while len(self._levels) > depth:
            self._levels.popitem(-1)

    def levels(self) -> list[tuple[int, int]]:
        """Return ``(price, lots)`` best first."""
        return [(self._sign * key, lots) for key, lots in self._levels.items()]


class _Message:
    """The entries of one update while it is being generated, plus what keeps it uncrossed.

    ``bid_ceiling`` is the highest bid and ``ask_floor`` the lowest ask that existed at any point
    of the message. Placing new bids below ``ask_floor`` and new asks above ``bid_ceiling`` keeps
    the book uncrossed after *every* entry, whichever side a client applies first (v2 lists bids
    first, v1 asks first).
    """

    def __init__(self, bids: _Side, asks: _Side) -> None:
        self.entries: list[tuple[_Side, int, int, bool]] = []  # side, price, lots, republish
        self.bid_ceiling = bids.best() or 0
        self.ask_floor: int | None = asks.best()

    def can_place(self, side: _Side, price: int) -> bool:
        if price < 1 or price in side:
            return False
        if side.is_bid:
            return self.ask_floor is None or price < self.ask_floor
        return price > self.bid_ceiling

    def record(self, side: _Side, price: int, lots: int, republish: bool = False) -> None:
        side.set(price, lots)
        self.entries.append((side, price, lots, republish))
        if lots and side.is_bid:
            self.bid_ceiling = max(self.bid_ceiling, price)
        elif lots:
            self.ask_floor = price if self.ask_floor is None else min(self.ask_floor, price)


class BookStream:
    """A reproducible stream of Kraken ``book`` frames for one pair.

    :attr:`book` is the reference model after the last frame produced; a client that applies the
    same frames ends up with the same book and sees every checksum match.

    >>> stream = BookStream(seed=7, depth=10)
    >>> frames = stream.frames(3)
    >>> frames[0][:54]
    b'{"channel":"book","type":"snapshot","data":[{"symbol":'
    >>> len(stream.book.bids), len(stream.book.asks), stream.book.is_crossed()
    (10, 10, False)
    >>> BookStream(seed=7, depth=10).frames(3) == frames
    True
    """

    def __init__(
        self,
        symbol: str = "BTC/USD",
        *,
        protocol: str = "v2",
        depth: int = 10,
        price_precision: int = 1,
        qty_precision: int = 8,
        seed: int = 0,
        mid_ticks: int = 450_000,
        max_changes: int = 4,
        spread_ticks: int = 1,
    ) -> None:
        """Set up a stream; nothing is generated until :meth:`snapshot`.

        :param symbol: the v2 symbol (``BTC/USD``); v1 frames use its v1 name (``XBT/USD``).
        :param protocol: ``"v1"`` or ``"v2"``.
        :param depth: subscribed depth; the book holds about this many levels per side.
        :param price_precision: price decimals; one tick is ``10**-price_precision``.
        :param qty_precision: quantity decimals; one lot is ``10**-qty_precision``.
        :param seed: seed of the private :class:`random.Random`.
        :param mid_ticks: initial mid price in ticks (450_000 at precision 1 is 45000.0).
        :param max_changes: most level entries in one update (at least one per update).
        :param spread_ticks: initial spread in ticks, and the spread the book drifts back towards.
        :raises ValueError: on an unknown protocol or a parameter out of range.
        """
        if protocol not in ("v1", "v2"):
            raise ValueError(f"protocol must be 'v1' or 'v2', got {protocol!r}")
        if depth < 1 or max_changes < 1 or spread_ticks < 1:
            raise ValueError("depth, max_changes and spread_ticks must be >= 1")
        if price_precision < 0 or qty_precision < 0:
            raise ValueError("precisions must be >= 0")
        if mid_ticks - spread_ticks // 2 < 1:
            raise ValueError("mid_ticks is too small for a positive best bid")
        self.symbol = symbol
        self.protocol = protocol
        self.depth = depth
        self.price_precision = price_precision
        self.qty_precision = qty_precision
        self.max_changes = max_changes
        self.spread_ticks = spread_ticks
        self.mid_ticks = mid_ticks
        #: The pair as written in frames: ``symbol`` for v2, its v1 name for v1.
        self.wire_symbol = symbol if protocol == "v2" else _v1_pair(symbol)
        #: The v1 channel name (``book-<depth>``); unused by v2.
        self.channel_name = f"book-{depth}"
        self.book = RefBook(self.wire_symbol, depth, price_precision, qty_precision)
        self._rng = random.Random(seed)
        self._bids = _Side(is_bid=True)
        self._asks = _Side(is_bid=False)
        self._us = _T0_US
        self._seeded = False

    # -- public frames -------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Return a snapshot frame of the current book, inventing a full book on the first call.

        A later call republishes the current state, as Kraken does for a resubscription.

        Complexity: O(depth log depth).
        """
        if not self._seeded:
            self._seed_book()
            self._seeded = True
        self._advance_clock()
        self.book.apply_message(
            self._decimals(self._bids.levels()), self._decimals(self._asks.levels()), snapshot=True
        )
        if self.protocol == "v2":
            return self._v2_snapshot()
        return self._v1_snapshot()

    def update(self) -> bytes:
        """Return one update frame with 1 to ``max_changes`` level entries.

        :raises RuntimeError: before the first :meth:`snapshot` (a client would have no book).

        Complexity: O(max_changes log depth).
        """
        if not self._seeded:
            raise RuntimeError("call snapshot() before update()")
        self._advance_clock()
        msg = _Message(self._bids, self._asks)
        budget = self._rng.randint(1, self.max_changes)
        while len(msg.entries) < budget:
            self._one_change(msg, budget - len(msg.entries))
        # Kraken sends no delete for a level pushed out of the window; its clients truncate.
        self._bids.truncate(self.depth)
        self._asks.truncate(self.depth)
        bids = [(p, q) for side, p, q, _ in msg.entries if side.is_bid]
        asks = [(p, q) for side, p, q, _ in msg.entries if not side.is_bid]
        self.book.apply_message(self._decimals(bids), self._decimals(asks), snapshot=False)
        if len(self.book.bids) != len(self._bids) or len(self.book.asks) != len(self._asks):
            raise AssertionError("generator state and reference book diverged")
        if self.protocol == "v2":
            return self._v2_update(msg)
        return self._v1_update(msg)

    def frames(self, n: int) -> list[bytes]:
        """Return :meth:`snapshot` followed by ``n - 1`` :meth:`update` frames.

        :raises ValueError: if ``n < 1``.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        return [self.snapshot()] + [self.update() for _ in range(n - 1)]

    def instrument_frame(self) -> bytes:
        """Return a v2 ``instrument`` snapshot announcing this pair's precisions.

        Does not advance the clock or the random state, so it can be interleaved freely.

        :raises ValueError: for a v1 stream (v1 has no instrument channel).
        """
        if self.protocol != "v2":
            raise ValueError("the instrument channel exists only in v2")
        base, _, quote = self.symbol.partition("/")
        pair = (
            f'{{"symbol":{json.dumps(self.symbol)},"base":{json.dumps(base)},'
            f'"quote":{json.dumps(quote)},"status":"online",'
            f'"qty_precision":{self.qty_precision},"qty_increment":{_increment(self.qty_precision)},'
            f'"price_precision":{self.price_precision},'
            f'"price_increment":{_increment(self.price_precision)},'
            f'"marginable":false,"has_index":true}}'
        )
        text = (
            f'{{"channel":"instrument","type":"snapshot","data":{{"assets":[],"pairs":[{pair}]}}}}'
        )
        return text.encode()

    def ack_frame(self) -> bytes:
        """Return the subscription acknowledgement for this book (v2 ack or v1 subscriptionStatus).

        Does not advance the clock or the random state.
        """
        if self.protocol == "v2":
            text = (
                f'{{"method":"subscribe","result":{{"channel":"book","depth":{self.depth},'
                f'"snapshot":true,"symbol":{json.dumps(self.symbol)}}},"success":true,'
                f'"time_in":"{_rfc3339(self._us)}","time_out":"{_rfc3339(self._us + 45)}"}}'
            )
        else:
            text = (
                f'{{"channelID":{_V1_CHANNEL_ID},"channelName":"{self.channel_name}",'
                f'"event":"subscriptionStatus","pair":{json.dumps(self.wire_symbol)},'
                f'"status":"subscribed","subscription":{{"depth":{self.depth},"name":"book"}}}}'
            )
        return text.encode()

    # -- generation ----------------------------------------------------------------------------

    def _seed_book(self) -> None:
        best_bid = self.mid_ticks - self.spread_ticks // 2
        for side, best in ((self._bids, best_bid), (self._asks, best_bid + self.spread_ticks)):
            price = best
            for _ in range(self.depth):
                if price < 1:
                    break
                side.set(price, self._random_lots())
                price = side.worse(price, self._gap())

    def _advance_clock(self) -> None:
        self._us += self._rng.randint(1, 5_000)

    def _gap(self) -> int:
        """Return a tick distance of 1 or more, usually small (levels cluster near each other)."""
        return 1 + self._geometric(limit=50)

    def _geometric(self, limit: int) -> int:
        """Return 0, 1, 2, ... with halving probabilities, capped at ``limit``; integers only."""
        k = 0
        while k < limit and self._rng.getrandbits(1):
            k += 1
        return k

    def _rank(self, n: int) -> int:
        """Return a rank in ``[0, n)``, biased to the touch, with an occasional uniform pick."""
        if self._rng.randrange(8) == 0:
            return self._rng.randrange(n)
        return self._geometric(limit=n - 1)

    def _random_lots(self) -> int:
        qp = self.qty_precision
        roll = self._rng.randrange(10)
        if roll < 3:
            # Round sizes (0.37, 1.5): trailing zeros a v2 frame drops and the checksum keeps.
            return self._rng.randint(1, 300) * _pow10(max(qp - 2, 0))
        if roll < 9:
            return self._rng.randint(1, 3 * _pow10(qp))
        return self._rng.randint(1, _pow10(max(qp - 4, 0)))  # dust

    def _new_lots(self, old: int) -> int:
        lots = self._random_lots()
        while lots == old:
            lots = self._random_lots()
        return lots

    def _pick(self, weighted: list[tuple[int, str]]) -> str:
        """Choose by integer weights with an integer draw, so no float enters the generator."""
        roll = self._rng.randrange(sum(w for w, _ in weighted))
        for weight, name in weighted:
            if roll < weight:
                return name
            roll -= weight
        raise AssertionError("unreachable: roll is below the total weight")

    def _one_change(self, msg: _Message, remaining: int) -> None:
        """Add one operation's entries (one, or two for delete plus republish) to ``msg``."""
        side = self._bids if self._rng.getrandbits(1) else self._asks
        ops = [(_W_CHANGE, "change"), (_W_INSERT, "insert"), (_W_DELETE, "delete")]
        ops.append((_W_ABSENT_DELETE, "absent"))
        if msg.entries:
            ops.append((_W_REPEAT, "repeat"))
        if len(side) < self.depth:
            ops.append((_W_REFILL, "refill"))
        op = self._pick(ops)
        done = (
            (op == "insert" and self._insert(msg, side))
            or (op == "delete" and self._delete(msg, side, remaining))
            or (op == "absent" and self._absent_delete(msg, side))
            or (op == "repeat" and self._repeat(msg))
            or (op == "refill" and self._refill(msg, side))
        )
        if not done:
            # Always possible: neither side is ever emptied (deletes leave at least one level).
            self._change(msg, side)

    def _change(self, msg: _Message, side: _Side) -> bool:
        price = side.price_at(self._rank(min(len(side), self.depth)))
        msg.record(side, price, self._new_lots(side.lots(price)))
        return True

    def _insert(self, msg: _Message, side: _Side) -> bool:
        kinds = [(7, "gap")]
        inside = self._inside_range(msg, side)
        if inside is not None:
            wide = self._spread() > self.spread_ticks
            # A spread wider than configured closes quickly on a live book: more inside inserts.
            kinds.append((8 if wide else 2, "inside"))
        if len(side) < self.depth:
            kinds.append((3, "bottom"))
        kind = self._pick(kinds)
        if kind == "inside" and inside is not None:
            price = self._rng.randint(*inside)
        elif kind == "bottom":
            return self._refill(msg, side)
        else:
            gap = self._find_gap(side, self._rank(max(min(len(side), self.depth) - 1, 1)))
            if gap is None:
                return False
            price = self._rng.randint(*gap)
        if not msg.can_place(side, price):
            return False
        msg.record(side, price, self._random_lots())
        return True

    def _delete(self, msg: _Message, side: _Side, remaining: int) -> bool:
        if len(side) < 2:
            return False
        needs_republish = len(side) - 1 < self.depth
        if needs_republish and remaining < 2 and (self.max_changes >= 2 or len(side) < self.depth):
            # No room for the re-entering level. Only a one-change stream deletes anyway, and only
            # from a full side, so the book stays within one level of full.
            return False
        old_worst = side.worst()
        assert old_worst is not None
        price = side.price_at(self._rank(min(len(side), self.depth)))
        msg.record(side, price, 0)
        if needs_republish and remaining >= 2:
            # Kraken republishes the level that re-enters the window at the bottom.
            deeper = side.worse(old_worst, self._gap())
            if msg.can_place(side, deeper):
                msg.record(side, deeper, self._random_lots(), republish=True)
        return True

    def _absent_delete(self, msg: _Message, side: _Side) -> bool:
        gap = self._find_gap(side, self._rank(max(len(side) - 1, 1))) if len(side) > 1 else None
        if gap is not None and self._rng.getrandbits(1):
            price = self._rng.randint(*gap)
        else:
            worst = side.worst()
            assert worst is not None
            price = side.worse(worst, self._gap())
        if price < 1 or price in side:
            return False
        msg.record(side, price, 0)
        return True

    def _repeat(self, msg: _Message) -> bool:
        side, price, _, _ = msg.entries[self._rng.randrange(len(msg.entries))]
        if price in side:
            msg.record(side, price, self._new_lots(side.lots(price)))
            return True
        if msg.can_place(side, price):
            msg.record(side, price, self._random_lots())
            return True
        return False

    def _refill(self, msg: _Message, side: _Side) -> bool:
        worst = side.worst()
        assert worst is not None
        price = side.worse(worst, self._gap())
        if not msg.can_place(side, price):
            return False
        msg.record(side, price, self._random_lots(), republish=True)
        return True

    def _spread(self) -> int:
        best_bid, best_ask = self._bids.best(), self._asks.best()
        assert best_bid is not None and best_ask is not None
        return best_ask - best_bid

    def _inside_range(self, msg: _Message, side: _Side) -> tuple[int, int] | None:
        best_bid, best_ask = self._bids.best(), self._asks.best()
        assert best_bid is not None and best_ask is not None
        if side.is_bid:
            lo, hi = best_bid + 1, best_ask - 1
            if msg.ask_floor is not None:
                hi = min(hi, msg.ask_floor - 1)
        else:
            lo, hi = max(best_bid, msg.bid_ceiling) + 1, best_ask - 1
        return (lo, hi) if lo <= hi else None

    def _find_gap(self, side: _Side, start: int) -> tuple[int, int] | None:
        """Return the first free price range at or below rank ``start`` within the window."""
        last = min(len(side), self.depth) - 1
        for rank in range(start, min(start + 20, last)):
            gap = side.gap_below(rank)
            if gap is not None:
                return gap
        return None

    # -- encoding ------------------------------------------------------------------------------

    def _decimals(self, levels: list[tuple[int, int]]) -> list[tuple[Decimal, Decimal]]:
        pp, qp = self.price_precision, self.qty_precision
        # Through the exact text rather than scaleb(), which would round beyond 28 digits.
        return [(Decimal(_fixed(p, pp)), Decimal(_fixed(q, qp))) for p, q in levels]

    def _v2_levels(self, levels: list[tuple[int, int]]) -> str:
        pp, qp = self.price_precision, self.qty_precision
        return ",".join(f'{{"price":{_number(p, pp)},"qty":{_number(q, qp)}}}' for p, q in levels)

    def _v2_frame(
        self, kind: str, bids: list[tuple[int, int]], asks: list[tuple[int, int]]
    ) -> bytes:
        text = (
            f'{{"channel":"book","type":"{kind}","data":[{{"symbol":{json.dumps(self.symbol)},'
            f'"bids":[{self._v2_levels(bids)}],"asks":[{self._v2_levels(asks)}],'
            f'"checksum":{self.book.checksum()},"timestamp":"{_rfc3339(self._us)}"}}]}}'
        )
        return text.encode()

    def _v2_snapshot(self) -> bytes:
        return self._v2_frame("snapshot", self._bids.levels(), self._asks.levels())

    def _v2_update(self, msg: _Message) -> bytes:
        bids = [(p, q) for side, p, q, _ in msg.entries if side.is_bid]
        asks = [(p, q) for side, p, q, _ in msg.entries if not side.is_bid]
        return self._v2_frame("update", bids, asks)

    def _v1_entry(self, price: int, lots: int, us: int, republish: bool) -> str:
        p, q = _fixed(price, self.price_precision), _fixed(lots, self.qty_precision)
        flag = ',"r"' if republish else ""
        return f'["{p}","{q}","{_epoch_text(us)}"{flag}]'

    def _v1_frame(self, payloads: list[str]) -> bytes:
        text = (
            f"[{_V1_CHANNEL_ID},{','.join(payloads)},"
            f'"{self.channel_name}",{json.dumps(self.wire_symbol)}]'
        )
        return text.encode()

    def _v1_snapshot(self) -> bytes:
        def side_text(side: _Side) -> str:
            # Resting levels were last touched at various earlier times.
            return ",".join(
                self._v1_entry(p, q, self._us - self._rng.randrange(60_000_000), False)
                for p, q in side.levels()
            )

        asks, bids = side_text(self._asks), side_text(self._bids)
        return self._v1_frame([f'{{"as":[{asks}],"bs":[{bids}]}}'])

    def _v1_update(self, msg: _Message) -> bytes:
        members: list[str] = []
        for key, is_bid in (("a", False), ("b", True)):
            entries = [
                self._v1_entry(p, q, self._us, republish)
                for side, p, q, republish in msg.entries
                if side.is_bid == is_bid
            ]
            if entries:
                members.append(f'"{key}":[{",".join(entries)}]')
        # Both sides travel as two separate objects, and "c" belongs to the last one only.
        members[-1] += f',"c":"{self.book.checksum()}"'
        return self._v1_frame(["{" + member + "}" for member in members])


def write_capture(
    path: str, frames: list[bytes], t0: float = 1_700_000_000.0, dt: float = 0.001
) -> None:
    """Write frames as a capture file, one ``"<epoch seconds>: <frame>"`` line per frame.

    The receive times are floats on purpose: they only order and pace a replay and never reach a
    price, a quantity or a checksum.

    :param path: file to create or overwrite.
    :param frames: WebSocket text frames, each without a newline.
    :param t0: receive time of the first frame, in epoch seconds.
    :param dt: seconds between consecutive frames.
    :raises ValueError: if a frame contains a newline (it would split into two capture lines).
    """
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for i, frame in enumerate(frames):
            if b"\n" in frame:
                raise ValueError(f"frame {i} contains a newline")
            # t0 + i * dt rather than a running sum, so rounding error does not accumulate.
            out.write(f"{t0 + i * dt:.6f}: {frame.decode('utf-8')}\n")
