"""Seeded synthetic Kraken book streams: realistic-looking v1 and v2 ``book`` frames, reproducibly.

:class:`BookStream` invents a book around a mid price and then evolves it with small update
messages (quantity changes near the touch, new levels, deletes, the occasional delete of a price
that is not there, the same price twice in one message). Every frame carries the checksum Kraken
would send, computed by :class:`kbook.reference.RefBook` after applying that very frame, so a
correct client never sees a mismatch. Benchmarks, the bundled sample capture and tests use it.

:class:`Level3Stream` does the same for the v2 ``level3`` channel: an order-by-order exchange
book (visible window plus a few hidden levels behind it) evolved with ``add`` / ``modify`` /
``delete`` events, published the way Kraken publishes them, with the checksum computed by
:class:`kbook.reference.RefL3Book`, the client's mirror.

What it is not: it is not market data and does not model a matching engine, trades or a price
process worth studying; it is not a simulator of the connection (no acks ordering, no errors, no
resubscription logic); and it never produces a deliberately bad frame. Prices and quantities are
generated as integers (ticks and lots) and written out with integer arithmetic: no float reaches a
frame. The same seed and arguments always give the same bytes.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sortedcontainers import SortedDict

from kbook.reference import L3Event, RefBook, RefL3Book, Side

__all__ = ["BookStream", "Level3Stream"]

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


def _instrument_frame(symbol: str, price_precision: int, qty_precision: int) -> bytes:
    """Return a v2 ``instrument`` snapshot announcing one pair's precisions."""
    base, _, quote = symbol.partition("/")
    pair = (
        f'{{"symbol":{json.dumps(symbol)},"base":{json.dumps(base)},'
        f'"quote":{json.dumps(quote)},"status":"online",'
        f'"qty_precision":{qty_precision},"qty_increment":{_increment(qty_precision)},'
        f'"price_precision":{price_precision},'
        f'"price_increment":{_increment(price_precision)},'
        f'"marginable":false,"has_index":true}}'
    )
    text = f'{{"channel":"instrument","type":"snapshot","data":{{"assets":[],"pairs":[{pair}]}}}}'
    return text.encode()


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
        return _instrument_frame(self.symbol, self.price_precision, self.qty_precision)

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


# -- level3 ----------------------------------------------------------------------------------------

# 2024-01-08T12:26:39.526146327Z, the first bid order of the docs' level3 checksum example, in ns.
_L3_T0_NS = 1_704_716_799_526_146_327
# Kraken's order ids are 16 base32 characters after an "O", grouped 6-5-6: OTCFZG-YOE2Q-LQKNM3.
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

# Operation weights of a level3 update. Joins, partial fills and cancels near the touch dominate
# a live order-by-order feed; amends that move the price and whole-level sweeps are rarer.
_W3_JOIN = 16  # add to the back of an existing level
_W3_NEW_LEVEL = 7  # add at a price that has no level yet, inside the window
_W3_FILL = 14  # modify down at the head of a level (a partial fill)
_W3_MODIFY = 9  # quantity modify at the head, middle or tail of a queue
_W3_REPRICE = 5  # price-changing modify: to the back of another level
_W3_CANCEL = 18  # delete at the head, middle or tail of a queue
_W3_SWEEP = 3  # delete every order of one level
_W3_UNKNOWN = 2  # delete of an id the client never saw
_W3_DEEP = 30  # thin book only: a new level behind the worst one


def _rfc3339_ns(ns: int) -> str:
    """Write epoch nanoseconds as RFC 3339 with 9 fractional digits, as level3 timestamps are."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:09d}Z"


class _L3Order:
    """One resting order of the generator's exchange book."""

    __slots__ = ("order_id", "lots", "ts")

    def __init__(self, order_id: str, lots: int, ts: int) -> None:
        self.order_id = order_id
        self.lots = lots
        #: Insert (or last price amend) time in ns: what a republishing ``add`` carries.
        self.ts = ts


class _L3Side:
    """One side of the exchange book: price ticks -> FIFO of orders, every level (hidden too).

    Keys are ``sign * price`` so that ascending key order is best first; rank 0 is the touch and
    a level's ``dict`` keeps its queue in time priority.
    """

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.name: Side = "bid" if is_bid else "ask"
        self._sign = -1 if is_bid else 1
        self._levels: SortedDict[int, dict[str, _L3Order]] = SortedDict()
        self.orders = 0

    def __len__(self) -> int:
        return len(self._levels)

    def __contains__(self, price: int) -> bool:
        return self._sign * price in self._levels

    def queue(self, price: int) -> dict[str, _L3Order]:
        queue: dict[str, _L3Order] = self._levels[self._sign * price]
        return queue

    def price_at(self, rank: int) -> int:
        key: int = self._levels.keys()[rank]
        return self._sign * key

    def rank(self, price: int) -> int:
        """Return how many levels are better than ``price``."""
        rank: int = self._levels.bisect_left(self._sign * price)
        return rank

    def best(self) -> int | None:
        return self.price_at(0) if self._levels else None

    def worst(self) -> int | None:
        return self.price_at(-1) if self._levels else None

    def worse(self, price: int, ticks: int) -> int:
        """Return the price ``ticks`` away from ``price`` towards the back of the book."""
        return price + self._sign * ticks

    def prices(self, n: int) -> list[int]:
        """Return the ``n`` best prices, best first."""
        return [self._sign * key for key in self._levels.keys()[:n]]

    def gap_below(self, rank: int) -> tuple[int, int] | None:
        """Return the inclusive price range strictly between ranks ``rank`` and ``rank + 1``."""
        a, b = self.price_at(rank), self.price_at(rank + 1)
        lo, hi = min(a, b) + 1, max(a, b) - 1
        return (lo, hi) if lo <= hi else None

    def append(self, price: int, order: _L3Order) -> bool:
        """Put ``order`` at the back of its level; return whether the level is new."""
        key = self._sign * price
        queue = self._levels.get(key)
        self.orders += 1
        if queue is None:
            self._levels[key] = {order.order_id: order}
            return True
        queue[order.order_id] = order
        return False

    def remove(self, price: int, order_id: str) -> bool:
        """Take an order out of its level; return whether the level emptied (and is gone)."""
        key = self._sign * price
        queue = self._levels[key]
        del queue[order_id]
        self.orders -= 1
        if queue:
            return False
        del self._levels[key]
        return True

    def pop_worst(self) -> list[_L3Order]:
        """Remove the worst level; return its orders."""
        _, queue = self._levels.popitem(-1)
        self.orders -= len(queue)
        return list(queue.values())


class _L3Message:
    """The events of one level3 update while it is generated, per side, in publication order.

    ``view`` holds, per side, the prices the client holds right now: the window it had after the
    previous message, plus levels this message created, minus levels it emptied. Hidden levels
    (behind the window) are always worse than every level in the view, so the view is exactly the
    best ``len(view)`` levels of the exchange book. ``bid_ceiling`` / ``ask_floor`` are the highest
    bid and lowest ask that existed at any point of the message; new bids stay below the floor and
    new asks above the ceiling, so the book is never crossed, whichever side a client applies
    first.
    """

    def __init__(self, bids: _L3Side, asks: _L3Side, depth: int) -> None:
        self.view: dict[bool, set[int]] = {
            True: set(bids.prices(depth)),
            False: set(asks.prices(depth)),
        }
        self.events: dict[bool, list[tuple[L3Event, str, int, int, int]]] = {True: [], False: []}
        self.count = 0
        self.bid_ceiling = bids.best() or 0
        self.ask_floor: int | None = asks.best()

    def publish(
        self, side: _L3Side, event: L3Event, order_id: str, price: int, lots: int, ts: int
    ) -> None:
        self.events[side.is_bid].append((event, order_id, price, lots, ts))
        self.count += 1

    def placed(self, side: _L3Side, price: int) -> None:
        """Note a price that now has a level (for the uncrossing bounds)."""
        self.view[side.is_bid].add(price)
        if side.is_bid:
            self.bid_ceiling = max(self.bid_ceiling, price)
        else:
            self.ask_floor = price if self.ask_floor is None else min(self.ask_floor, price)


class Level3Stream:
    """A reproducible stream of Kraken v2 ``level3`` frames for one pair.

    The generator keeps the exchange's order-by-order book: the subscribed window of ``depth``
    price levels per side and, behind it, ``reserve`` hidden levels the client does not see.
    Updates carry several events: adds at the touch and away from it (joining the back of a level
    or opening a new one, inside the spread too), partial fills (quantity modifies at the head),
    quantity modifies at the head, middle or tail of a queue, price-changing modifies (the order
    joins the back of its new level), cancels at the head, middle or tail, whole levels emptied,
    and now and then a delete of an id nobody knows. Events only touch orders in the window, as
    Kraken only publishes those.

    Publication follows Kraken's level3 rules: a level pushed out of the window gets no delete
    (the client truncates); when the window has room after a message (a level emptied, swept or
    repriced away), every order of the next hidden level is published as an ``add`` carrying
    the order's original timestamp, in queue order, after the message's own events. The hidden
    levels are replenished behind the worst one, as resting orders the exchange had all along.
    With ``levels < depth`` the book is thin: it holds about ``levels`` levels per side, has
    nothing hidden, and grows new levels behind its worst one with ordinary adds.

    :attr:`book` is the client's mirror (:class:`kbook.reference.RefL3Book`) after the last
    frame; every frame's checksum is the mirror's, so a correct client never sees a mismatch.
    :attr:`stats` counts what the updates contained.

    >>> stream = Level3Stream(seed=7, depth=10)
    >>> frames = stream.frames(3)
    >>> frames[0][:56]
    b'{"channel":"level3","type":"snapshot","data":[{"symbol":'
    >>> len(stream.book.bids), len(stream.book.asks), stream.book.is_crossed()
    (10, 10, False)
    >>> Level3Stream(seed=7, depth=10).frames(3) == frames
    True
    """

    def __init__(
        self,
        symbol: str = "BTC/USD",
        *,
        depth: int = 10,
        price_precision: int = 1,
        qty_precision: int = 8,
        seed: int = 0,
        mid_ticks: int = 450_000,
        min_events: int = 1,
        max_events: int = 5,
        orders_per_level: int = 3,
        levels: int | None = None,
        reserve: int = 4,
        spread_ticks: int = 1,
    ) -> None:
        """Set up a stream; nothing is generated until :meth:`snapshot`.

        :param symbol: the v2 symbol.
        :param depth: subscribed depth in price levels (Kraken offers 10, 100 and 1000).
        :param price_precision: price decimals; one tick is ``10**-price_precision``.
        :param qty_precision: quantity decimals; one lot is ``10**-qty_precision``.
        :param seed: seed of the private :class:`random.Random`.
        :param mid_ticks: initial mid price in ticks (450_000 at precision 1 is 45000.0).
        :param min_events: fewest generated events in one update (republished adds come on top).
        :param max_events: most generated events in one update (a sweep may run a few over).
        :param orders_per_level: typical queue length the book is seeded with and drifts towards.
        :param levels: price levels per side (default ``depth``); fewer makes a thin book.
        :param reserve: hidden levels kept behind a full window (ignored for a thin book).
        :param spread_ticks: initial spread in ticks.
        :raises ValueError: on a parameter out of range.
        """
        levels = depth if levels is None else levels
        if depth < 1 or not 1 <= levels <= depth:
            raise ValueError("depth must be >= 1 and levels within 1..depth")
        if not 1 <= min_events <= max_events or orders_per_level < 1 or spread_ticks < 1:
            raise ValueError(
                "need 1 <= min_events <= max_events, orders_per_level >= 1 and spread_ticks >= 1"
            )
        if reserve < 0 or price_precision < 0 or qty_precision < 0:
            raise ValueError("reserve and precisions must be >= 0")
        if mid_ticks - spread_ticks // 2 < 1:
            raise ValueError("mid_ticks is too small for a positive best bid")
        self.symbol = symbol
        self.depth = depth
        self.price_precision = price_precision
        self.qty_precision = qty_precision
        self.mid_ticks = mid_ticks
        self.spread_ticks = spread_ticks
        self.min_events = min_events
        self.max_events = max_events
        self.orders_per_level = orders_per_level
        self.levels = levels
        self.thin = levels < depth
        self.reserve = 0 if self.thin else reserve
        self.book = RefL3Book(symbol, depth, price_precision, qty_precision)
        #: What the updates so far contained, by kind (``modify_head``, ``republished_level``, ...).
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._bids = _L3Side(is_bid=True)
        self._asks = _L3Side(is_bid=False)
        self._where: dict[str, tuple[_L3Side, int]] = {}  # resting id -> side, price
        self._ns = _L3_T0_NS
        self._seeded = False

    # -- public frames -------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Return a snapshot frame of the window, inventing a book on the first call.

        A later call republishes the current window, as Kraken does for a resubscription.

        Complexity: O(orders in the window).
        """
        if not self._seeded:
            self._seed_book()
            self._seeded = True
        self._advance_clock()
        events: list[tuple[Side, L3Event, str, Decimal, Decimal]] = []
        texts: dict[bool, list[str]] = {}
        for side in (self._bids, self._asks):
            window = [(p, o) for p in side.prices(self.depth) for o in side.queue(p).values()]
            events += [
                (side.name, "add", o.order_id, *self._decimals(p, o.lots)) for p, o in window
            ]
            texts[side.is_bid] = [
                self._order_text(None, o.order_id, p, o.lots, o.ts) for p, o in window
            ]
        self.book.apply_message(events, snapshot=True)
        return self._frame("snapshot", texts[True], texts[False])

    def update(self) -> bytes:
        """Return one update frame: ``min_events`` to ``max_events`` events, plus republished adds.

        :raises RuntimeError: before the first :meth:`snapshot` (a client would have no book).

        Complexity: O(events log levels) for the book, plus the mirror's checksum.
        """
        if not self._seeded:
            raise RuntimeError("call snapshot() before update()")
        self._advance_clock()
        msg = _L3Message(self._bids, self._asks, self.depth)
        budget = self._rng.randint(self.min_events, self.max_events)
        while msg.count < budget:
            self._one_op(msg, budget - msg.count)
        for side in (self._bids, self._asks):
            self._keep_reserve(side)
            self._republish(msg, side)
        events = [
            (side.name, event, oid, *self._decimals(price, lots))
            for side in (self._bids, self._asks)
            for event, oid, price, lots, _ in msg.events[side.is_bid]
        ]
        self.book.apply_message(events, snapshot=False)
        if (len(self.book.bids), len(self.book.asks)) != (
            min(len(self._bids), self.depth),
            min(len(self._asks), self.depth),
        ):
            raise AssertionError("generator state and client mirror diverged")
        texts = {
            is_bid: [self._order_text(*event) for event in msg.events[is_bid]]
            for is_bid in (True, False)
        }
        return self._frame("update", texts[True], texts[False])

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
        """
        return _instrument_frame(self.symbol, self.price_precision, self.qty_precision)

    def ack_frame(self) -> bytes:
        """Return the level3 subscription acknowledgement, with the depth (as the feed reads it).

        Does not advance the clock or the random state.
        """
        us = self._ns // 1000
        text = (
            f'{{"method":"subscribe","result":{{"channel":"level3","depth":{self.depth},'
            f'"snapshot":true,"symbol":{json.dumps(self.symbol)}}},"success":true,'
            f'"time_in":"{_rfc3339(us)}","time_out":"{_rfc3339(us + 45)}"}}'
        )
        return text.encode()

    def window_levels(self, side: Side) -> list[tuple[int, list[tuple[str, int]]]]:
        """The window of one side as the exchange holds it: ``(price, [(order_id, lots)])``.

        A client that applied every frame holds exactly this (tests compare the two).
        """
        book = self._bids if side == "bid" else self._asks
        return [
            (p, [(o.order_id, o.lots) for o in book.queue(p).values()])
            for p in book.prices(self.depth)
        ]

    # -- generation ----------------------------------------------------------------------------

    def _advance_clock(self) -> None:
        self._ns += self._rng.randint(1_000, 5_000_000)

    def _new_id(self) -> str:
        while True:
            bits = self._rng.getrandbits(80)
            chars = "".join(_BASE32[(bits >> (5 * i)) & 31] for i in range(16))
            order_id = f"O{chars[:5]}-{chars[5:10]}-{chars[10:]}"
            if order_id not in self._where:
                return order_id

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

    def _gap(self) -> int:
        return 1 + self._geometric(limit=50)

    def _queue_length(self) -> int:
        """A seeded level's number of orders: 1 to about 3x ``orders_per_level``."""
        return 1 + self._rng.randrange(2 * self.orders_per_level - 1) + self._geometric(limit=6)

    def _random_lots(self) -> int:
        qp = self.qty_precision
        roll = self._rng.randrange(10)
        if roll < 3:
            # Round sizes (0.37, 1.5): trailing zeros the frame drops and the checksum keeps.
            return self._rng.randint(1, 300) * _pow10(max(qp - 2, 0))
        if roll < 9:
            return self._rng.randint(1, 3 * _pow10(qp))
        return self._rng.randint(1, _pow10(max(qp - 4, 0)))  # dust

    def _pick(self, weighted: list[tuple[int, str]]) -> str:
        roll = self._rng.randrange(sum(w for w, _ in weighted))
        for weight, name in weighted:
            if roll < weight:
                return name
            roll -= weight
        raise AssertionError("unreachable: roll is below the total weight")

    def _rest(self, side: _L3Side, price: int, order: _L3Order) -> bool:
        self._where[order.order_id] = (side, price)
        return side.append(price, order)

    def _old_level(self, side: _L3Side, price: int) -> None:
        """Invent a resting level that has been on the exchange for a while."""
        ts = sorted(
            self._ns - 1 - self._rng.randrange(600 * 10**9) for _ in range(self._queue_length())
        )
        for t in ts:
            self._rest(side, price, _L3Order(self._new_id(), self._random_lots(), t))

    def _seed_book(self) -> None:
        best_bid = self.mid_ticks - self.spread_ticks // 2
        for side, best in ((self._bids, best_bid), (self._asks, best_bid + self.spread_ticks)):
            price = best
            for _ in range(self.levels + self.reserve):
                if price < 1:
                    break
                self._old_level(side, price)
                price = side.worse(price, self._gap())

    def _keep_reserve(self, side: _L3Side) -> None:
        """Trim or replenish the levels behind the window, before the window is republished.

        Levels invented here have been resting on the exchange all along; one that lands inside
        the window (it had room) is then published by :meth:`_republish` like any level entering
        it. A thin book invents nothing, and bids stop at price 1.
        """
        while len(side) > self.depth + 2 * self.reserve:
            for order in side.pop_worst():
                del self._where[order.order_id]
        while not self.thin and len(side) < self.depth + self.reserve:
            worst = side.worst()
            assert worst is not None
            price = side.worse(worst, self._gap())
            if price < 1:
                break
            self._old_level(side, price)

    def _republish(self, msg: _L3Message, side: _L3Side) -> None:
        """Publish every order of each level that entered the window, as Kraken does."""
        view = msg.view[side.is_bid]
        window = side.prices(self.depth)
        for price in window:
            if price not in view:
                self.stats["republished_level"] += 1
                for order in side.queue(price).values():
                    self.stats["republished_order"] += 1
                    msg.publish(side, "add", order.order_id, price, order.lots, order.ts)
        self.stats["pushed_out_level"] += len(view) - len(view.intersection(window))

    def _one_op(self, msg: _L3Message, remaining: int) -> None:
        side = self._bids if self._rng.getrandbits(1) else self._asks
        top = side.prices(min(len(side), 10, self.depth))
        resting = sum(len(side.queue(p)) for p in top)
        crowded = resting > self.orders_per_level * len(top)
        add, remove = (1, 2) if crowded else (2, 1)
        ops = [
            (_W3_JOIN * add, "join"),
            (_W3_NEW_LEVEL * add, "new_level"),
            (_W3_FILL, "fill"),
            (_W3_MODIFY, "modify"),
            (_W3_REPRICE, "reprice"),
            (_W3_CANCEL * remove, "cancel"),
            (_W3_SWEEP * remove, "sweep"),
            (_W3_UNKNOWN, "unknown"),
        ]
        if self.thin and len(side) < self.levels:
            ops.append((_W3_DEEP, "deep"))
        op = self._pick(ops)
        done = (
            (op == "join" and self._join(msg, side))
            or (op == "new_level" and self._new_level(msg, side, deep=False))
            or (op == "deep" and self._new_level(msg, side, deep=True))
            or (op == "fill" and self._fill(msg, side))
            or (op == "modify" and self._modify(msg, side))
            or (op == "reprice" and self._reprice(msg, side))
            or (op == "cancel" and self._cancel(msg, side))
            or (op == "sweep" and self._sweep(msg, side, remaining))
            or (op == "unknown" and self._unknown(msg, side))
        )
        if not done:
            # Always possible: a side's view is never emptied, and its best level is in it.
            self._join(msg, side, rank=0)

    def _target(self, msg: _L3Message, side: _L3Side, rank: int | None = None) -> int | None:
        """A price of a level the client holds and the window contains, rank-biased; or None."""
        n = min(len(side), self.depth)
        if n == 0:
            return None
        rank = self._rank(n) if rank is None else min(rank, n - 1)
        price = side.price_at(rank)
        return price if price in msg.view[side.is_bid] else None

    def _placeable(self, msg: _L3Message, side: _L3Side, price: int) -> bool:
        """Whether a new level at ``price`` is in the window, uncrossed and ahead of the hidden."""
        if price < 1 or price in side:
            return False
        if side.is_bid:
            if msg.ask_floor is not None and price >= msg.ask_floor:
                return False
        elif price <= msg.bid_ceiling:
            return False
        # every level better than it must be one the client holds, and it must be in the window
        return side.rank(price) <= min(len(msg.view[side.is_bid]), self.depth - 1)

    def _position(self, queue: dict[str, _L3Order]) -> tuple[str, _L3Order]:
        """Pick the head (half of the time), the tail or a middle order of a queue."""
        orders = list(queue.values())
        roll = self._rng.randrange(4)
        if len(orders) == 1 or roll < 2:
            return "head", orders[0]
        if roll == 2 or len(orders) == 2:
            return "tail", orders[-1]
        return "middle", orders[self._rng.randrange(1, len(orders) - 1)]

    def _take(self, msg: _L3Message, side: _L3Side, price: int, order_id: str) -> None:
        del self._where[order_id]
        if side.remove(price, order_id):
            msg.view[side.is_bid].discard(price)
            self.stats["level_emptied"] += 1

    def _last_order(self, msg: _L3Message, side: _L3Side, price: int) -> bool:
        """Whether removing one order at ``price`` could leave the side's view empty."""
        return len(msg.view[side.is_bid]) == 1 and len(side.queue(price)) == 1

    def _join(self, msg: _L3Message, side: _L3Side, rank: int | None = None) -> bool:
        price = self._target(msg, side, rank)
        if price is None:
            return False
        if rank is None and len(side.queue(price)) >= 3 * self.orders_per_level:
            return False  # a long queue: something else happens instead
        order = _L3Order(self._new_id(), self._random_lots(), self._ns)
        self._rest(side, price, order)
        msg.publish(side, "add", order.order_id, price, order.lots, order.ts)
        self.stats["add_touch" if price == side.best() else "add_away"] += 1
        return True

    def _new_price(self, msg: _L3Message, side: _L3Side, deep: bool) -> tuple[int, str] | None:
        """A price for a new level: inside the spread, in a gap of the window, or behind it."""
        view = len(msg.view[side.is_bid])
        if deep:
            worst = side.price_at(view - 1)
            return side.worse(worst, self._gap()), "deep_add"
        kinds = [(6, "gap")]
        best, other = side.best(), (self._asks if side.is_bid else self._bids).best()
        if best is not None and other is not None and abs(other - best) > 1:
            kinds.append((8 if abs(other - best) > self.spread_ticks else 2, "inside"))
        kind = self._pick(kinds)
        if kind == "inside" and best is not None and other is not None:
            lo, hi = min(best, other) + 1, max(best, other) - 1
            return self._rng.randint(lo, hi), "add_inside"
        start = self._rank(max(min(view, self.depth) - 1, 1))
        for rank in range(start, min(start + 20, view - 1)):
            gap = side.gap_below(rank)
            if gap is not None:
                return self._rng.randint(*gap), "add_new_level"
        return None

    def _new_level(self, msg: _L3Message, side: _L3Side, deep: bool) -> bool:
        found = self._new_price(msg, side, deep)
        if found is None or not self._placeable(msg, side, found[0]):
            return False
        price, kind = found
        order = _L3Order(self._new_id(), self._random_lots(), self._ns)
        self._rest(side, price, order)
        msg.placed(side, price)
        msg.publish(side, "add", order.order_id, price, order.lots, order.ts)
        self.stats[kind] += 1
        return True

    def _fill(self, msg: _L3Message, side: _L3Side) -> bool:
        price = self._target(msg, side, rank=self._geometric(limit=min(len(side), 3) - 1))
        if price is None:
            return False
        head = next(iter(side.queue(price).values()))
        if head.lots < 2:
            return False
        head.lots = self._rng.randint(1, head.lots - 1)
        msg.publish(side, "modify", head.order_id, price, head.lots, self._ns)
        self.stats["modify_head"] += 1
        return True

    def _modify(self, msg: _L3Message, side: _L3Side) -> bool:
        price = self._target(msg, side)
        if price is None:
            return False
        where, order = self._position(side.queue(price))
        if order.lots > 1 and self._rng.randrange(4):
            lots = self._rng.randint(1, order.lots - 1)  # mostly a fill or a reduction
        else:
            lots = self._random_lots()
            while lots == order.lots:
                lots = self._random_lots()
        order.lots = lots
        msg.publish(side, "modify", order.order_id, price, lots, self._ns)
        self.stats[f"modify_{where}"] += 1
        return True

    def _reprice(self, msg: _L3Message, side: _L3Side) -> bool:
        price = self._target(msg, side)
        if price is None:
            return False
        _, order = self._position(side.queue(price))
        if self._rng.getrandbits(1):
            new = self._target(msg, side)  # onto another existing level
            if new is None or new == price:
                return False
        else:
            found = self._new_price(msg, side, deep=False)
            if found is None or not self._placeable(msg, side, found[0]):
                return False
            new = found[0]
        self._take(msg, side, price, order.order_id)
        if self._rng.getrandbits(1):
            order.lots = self._random_lots()
        order.ts = self._ns  # an amend that moves the price re-queues: a new priority time
        if self._rest(side, new, order):
            msg.placed(side, new)
        msg.publish(side, "modify", order.order_id, new, order.lots, self._ns)
        self.stats["reprice"] += 1
        return True

    def _cancel(self, msg: _L3Message, side: _L3Side) -> bool:
        price = self._target(msg, side)
        if price is None or self._last_order(msg, side, price):
            return False
        where, order = self._position(side.queue(price))
        self._take(msg, side, price, order.order_id)
        msg.publish(side, "delete", order.order_id, price, order.lots, self._ns)
        self.stats[f"delete_{where}"] += 1
        return True

    def _sweep(self, msg: _L3Message, side: _L3Side, remaining: int) -> bool:
        price = self._target(msg, side, rank=self._geometric(limit=min(len(side), 4) - 1))
        if price is None or len(msg.view[side.is_bid]) < 2:
            return False
        queue = side.queue(price)
        if len(queue) > remaining + 2:
            return False
        for order in list(queue.values()):  # filled from the head
            self._take(msg, side, price, order.order_id)
            msg.publish(side, "delete", order.order_id, price, order.lots, self._ns)
        self.stats["sweep"] += 1
        return True

    def _unknown(self, msg: _L3Message, side: _L3Side) -> bool:
        best = side.best()
        assert best is not None
        price = max(side.worse(best, self._rng.randint(0, 5)), 1)
        msg.publish(side, "delete", self._new_id(), price, self._random_lots(), self._ns)
        self.stats["delete_unknown"] += 1
        return True

    # -- encoding ------------------------------------------------------------------------------

    def _decimals(self, price: int, lots: int) -> tuple[Decimal, Decimal]:
        # Through the exact text rather than scaleb(), which would round beyond 28 digits.
        return (
            Decimal(_fixed(price, self.price_precision)),
            Decimal(_fixed(lots, self.qty_precision)),
        )

    def _order_text(
        self, event: L3Event | None, order_id: str, price: int, lots: int, ts: int
    ) -> str:
        head = f'{{"event":"{event}",' if event else "{"
        return (
            f'{head}"order_id":"{order_id}",'
            f'"limit_price":{_number(price, self.price_precision)},'
            f'"order_qty":{_number(lots, self.qty_precision)},"timestamp":"{_rfc3339_ns(ts)}"}}'
        )

    def _frame(self, kind: str, bids: list[str], asks: list[str]) -> bytes:
        text = (
            f'{{"channel":"level3","type":"{kind}","data":[{{"symbol":{json.dumps(self.symbol)},'
            f'"checksum":{self.book.checksum()},"bids":[{",".join(bids)}],'
            f'"asks":[{",".join(asks)}]}}]}}'
        )
        return text.encode()
