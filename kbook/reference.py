"""Reference model of a Kraken Spot L2 order book: slow, plain Python, obviously correct.

This module is the oracle. Tests run it side by side with the Cython engine, and the exchange
simulator uses it to compute the checksums it publishes. It is public and stable: run it next to
your own book code (``RefFeed().process(frame)`` for raw frames, :class:`RefBook` and
:class:`RefL3Book` for books you feed yourself), as :mod:`kbook.testing` does to label the damage
its ``corruptions()`` strategy does. It follows the Kraken documentation
(book channel of WebSocket v1 and v2, book checksum guides) as literally as possible: prices and
quantities are :class:`decimal.Decimal`, each side is a :class:`sortedcontainers.SortedDict`, and a
checksum token is built exactly as the guides describe it (write the value with the pair's decimals,
drop the ``'.'``, strip leading ``'0'``).

:class:`RefL3Book` does the same for level3 (order-by-order) books: price levels in price order,
orders inside a level in queue order, and the level3 checksum over every order of the ten best
levels.

What it is not: it is not fast, it does not talk to the network, and it does not import or share
code with ``kbook._core`` (an oracle that shares the engine's code would share its bugs). No float
ever touches a price, a quantity or a checksum here.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import Any, Literal

from sortedcontainers import SortedDict

__all__ = ["RefBook", "RefFeed", "RefL3Book", "RefResult", "crc32", "token"]

#: Kraken checksums cover this many levels per side, whatever the subscribed depth.
CHECKSUM_LEVELS = 10
#: The longest number literal (characters, quotes excluded) a book takes; longer is refused
#: whatever its value, as the engine does.
MAX_LITERAL = 100
#: Prices are below 10**18 ticks, quantities below 10**38 lots; a level3 order's quantity is below
#: 10**29 lots, so that no sum of a level's orders can leave the engine's 128-bit integers.
PRICE_DIGITS = 18
QTY_DIGITS = 38
L3_QTY_DIGITS = 29
#: A book message may address at most LEVELS_FACTOR * depth + LEVELS_SLACK price levels per side,
#: a level3 update at most LEVELS_FACTOR * depth + L3_EVENTS_SLACK events: more is refused whole.
LEVELS_FACTOR = 4
LEVELS_SLACK = 64
L3_EVENTS_SLACK = 1024

Side = Literal["bid", "ask"]
ResultKind = Literal["book", "other", "orphan", "dropped"]
L3Event = Literal["add", "modify", "delete"]
L3Level = tuple[Decimal, list[tuple[str, Decimal]]]
BookKey = tuple[str, str]


def _units(value: Decimal, dp: int, digits: int = QTY_DIGITS) -> int:
    """Return ``value * 10**dp`` as an int, refusing anything that would need rounding.

    Huge exponents are refused before any power of ten is computed, so this is fast for every
    input.

    :raises ValueError: if ``value`` is not finite, is negative, has more than ``dp`` decimals,
        or is ``10**digits`` units or more.
    """
    if dp < 0:
        raise ValueError(f"decimals must be >= 0, got {dp}")
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    if value < 0:
        raise ValueError(f"negative value: {value}")
    _, figures, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite Decimals always carry an int exponent
    coefficient = int("".join(map(str, figures)))
    if coefficient == 0:
        return 0
    shift = exponent + dp
    if len(figures) + shift > digits:  # coefficient >= 10**(len - 1): at least 10**digits units
        raise ValueError(f"{value} is out of range")
    if -shift > len(figures):  # 0 < coefficient < 10**-shift: a non-zero remainder
        raise ValueError(f"{value} has more than {dp} decimals")
    if shift >= 0:
        scale: int = 10**shift  # mypy types int ** int as Any: the exponent's sign is unknown
        return coefficient * scale
    divisor: int = 10**-shift
    units, rest = divmod(coefficient, divisor)
    if rest:
        # Rounding here would make the oracle agree with a buggy engine that also rounds.
        raise ValueError(f"{value} has more than {dp} decimals")
    return units


def token(value: Decimal, dp: int) -> str:
    """Return the checksum token of ``value`` at ``dp`` decimals.

    The value is written with exactly ``dp`` decimals, the ``'.'`` is removed and leading ``'0'``
    characters are stripped; trailing zeros stay, they are significant. Zero strips to the empty
    string, as the rule implies (Kraken never checksums a zero quantity, since qty 0 deletes).

    :param value: a price or quantity; integral values and exponent forms are fine.
    :param dp: the pair's ``price_precision`` or ``qty_precision``.
    :return: the ASCII token.
    :raises ValueError: if ``value`` is negative, not finite, or needs more than ``dp`` decimals.

    >>> token(Decimal("0.566"), 4)
    '5660'
    >>> token(Decimal("45281.0"), 1)
    '452810'
    >>> token(Decimal("0.00100000"), 8)
    '100000'
    >>> token(Decimal("1e-08"), 8)
    '1'
    """
    units = _units(value, dp)
    whole, fraction = divmod(units, 10**dp)
    fixed = f"{whole}.{fraction:0{dp}d}" if dp else str(whole)
    return fixed.replace(".", "").lstrip("0")


def crc32(text: str) -> int:
    """Return the unsigned 32-bit zlib CRC-32 of ``text`` encoded as ASCII.

    :raises UnicodeEncodeError: if ``text`` is not ASCII (a token never is anything else).

    >>> crc32("5005500")
    3735470871
    """
    # zlib.crc32 is unsigned on Python 3; the mask documents the contract rather than fixing a sign.
    return zlib.crc32(text.encode("ascii")) & 0xFFFFFFFF


def _inferred_depth(levels: int) -> int:
    """The smallest of Kraken's L2 depths that holds ``levels`` levels (1000 at most).

    >>> _inferred_depth(0), _inferred_depth(25), _inferred_depth(26), _inferred_depth(5000)
    (10, 25, 100, 1000)
    """
    return next((d for d in (10, 25, 100, 500, 1000) if levels <= d), 1000)


def _levels_cap(depth: int) -> int:
    return LEVELS_FACTOR * depth + LEVELS_SLACK


def _check_book_args(depth: int, price_precision: int, qty_precision: int) -> None:
    """The arguments every reference book takes, checked once for all of them."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if price_precision < 0 or qty_precision < 0:
        raise ValueError("precisions must be >= 0")


class RefBook:
    """One L2 book for one pair, kept the way the Kraken guides describe it.

    ``bids`` and ``asks`` map price to quantity, both ``Decimal``; only positive quantities are
    stored. Both sides are sorted ascending by price, so the best bid is the *last* key and the best
    ask the *first*.

    >>> book = RefBook("BTC/USD", depth=10, price_precision=1, qty_precision=8)
    >>> book.apply_message([(Decimal("45283.5"), Decimal("0.1"))],
    ...                    [(Decimal("45285.2"), Decimal("0.001"))], snapshot=True)
    >>> book.checksum_input()
    '45285210000045283510000000'
    >>> book.is_crossed()
    False
    """

    def __init__(self, symbol: str, depth: int, price_precision: int, qty_precision: int) -> None:
        """Create an empty book.

        :param symbol: the pair as it appears on the wire (``BTC/USD`` in v2, ``XBT/USD`` in v1).
        :param depth: the subscribed depth; :meth:`truncate` keeps this many levels per side.
        :param price_precision: decimals of a price, from the ``instrument`` channel.
        :param qty_precision: decimals of a quantity, from the ``instrument`` channel.
        :raises ValueError: on a depth below 1 or a negative precision.
        """
        _check_book_args(depth, price_precision, qty_precision)
        self.symbol = symbol
        self.depth = depth
        self.price_precision = price_precision
        self.qty_precision = qty_precision
        self.bids: SortedDict[Decimal, Decimal] = SortedDict()
        self.asks: SortedDict[Decimal, Decimal] = SortedDict()
        self.absent_deletes = 0

    def __repr__(self) -> str:
        return (
            f"RefBook({self.symbol!r}, depth={self.depth}, bids={len(self.bids)}, "
            f"asks={len(self.asks)})"
        )

    def clear(self) -> None:
        """Remove every level of both sides (the absent-delete counter is kept).

        Complexity: O(n).
        """
        self.bids.clear()
        self.asks.clear()

    def apply(self, side: Side, price: Decimal, qty: Decimal) -> None:
        """Set the total quantity at one price; a quantity of zero deletes the level.

        Does not truncate: Kraken's rule is to apply the whole message first.

        :param side: ``'bid'`` or ``'ask'``.
        :param price: level price, positive, at most ``price_precision`` decimals.
        :param qty: new total quantity, at most ``qty_precision`` decimals.
        :raises ValueError: on an unknown side or a value the pair's precision cannot hold.

        Complexity: O(log n).
        """
        if side == "bid":
            levels = self.bids
        elif side == "ask":
            levels = self.asks
        else:
            raise ValueError(f"side must be 'bid' or 'ask', got {side!r}")
        if _units(price, self.price_precision, PRICE_DIGITS) == 0:
            raise ValueError(f"price must be positive, got {price}")
        if _units(qty, self.qty_precision) == 0:
            if levels.pop(price, None) is None:
                # Kraken may delete a level the client already truncated: counted, not an error.
                self.absent_deletes += 1
        else:
            levels[price] = qty

    def truncate(self) -> None:
        """Keep only the best ``depth`` levels of each side.

        Kraken sends no delete for a level pushed out of the subscribed window, so the client must
        drop it after applying each message.

        Complexity: O(k log n) for k dropped levels.
        """
        while len(self.bids) > self.depth:
            self.bids.popitem(0)  # the lowest bid is the worst
        while len(self.asks) > self.depth:
            self.asks.popitem(-1)  # the highest ask is the worst

    def apply_message(
        self,
        bids: list[tuple[Decimal, Decimal]],
        asks: list[tuple[Decimal, Decimal]],
        snapshot: bool,
    ) -> None:
        """Apply one whole book message, then truncate once.

        Entries are applied in wire order because one message may touch the same price twice and
        the later entry wins.

        :param bids: ``(price, qty)`` pairs in wire order.
        :param asks: ``(price, qty)`` pairs in wire order.
        :param snapshot: start from an empty book (a snapshot is authoritative, never merged).
        :raises ValueError: as :meth:`apply`, or (before any change) more than
            ``4 * depth + 64`` entries on one side.

        Complexity: O((m + k) log n) for m entries and k truncated levels.
        """
        cap = _levels_cap(self.depth)
        if len(bids) > cap or len(asks) > cap:
            raise ValueError(f"more than {cap} price levels on one side")
        if snapshot:
            self.clear()
        for price, qty in bids:
            self.apply("bid", price, qty)
        for price, qty in asks:
            self.apply("ask", price, qty)
        self.truncate()

    def top_bids(self, n: int = CHECKSUM_LEVELS) -> list[tuple[Decimal, Decimal]]:
        """Return up to ``n`` bids, best (highest price) first.

        Complexity: O(n).
        """
        return [(p, self.bids[p]) for p in islice(reversed(self.bids.keys()), max(n, 0))]

    def top_asks(self, n: int = CHECKSUM_LEVELS) -> list[tuple[Decimal, Decimal]]:
        """Return up to ``n`` asks, best (lowest price) first.

        Complexity: O(n).
        """
        return [(p, self.asks[p]) for p in self.asks.keys()[: max(n, 0)]]

    def checksum_input(self) -> str:
        """Return the text Kraken's CRC-32 runs over.

        Top 10 asks low to high, then top 10 bids high to low, each level ``token(price)`` followed
        by ``token(qty)``, with no separators.

        Complexity: O(1) (at most 20 levels).
        """
        pp, qp = self.price_precision, self.qty_precision
        asks = "".join(token(p, pp) + token(q, qp) for p, q in self.top_asks(CHECKSUM_LEVELS))
        bids = "".join(token(p, pp) + token(q, qp) for p, q in self.top_bids(CHECKSUM_LEVELS))
        return asks + bids

    def checksum(self) -> int:
        """Return the unsigned CRC-32 Kraken would send for this book."""
        return crc32(self.checksum_input())

    def is_crossed(self) -> bool:
        """Return whether the best bid is at or above the best ask (an empty side never crosses)."""
        if not self.bids or not self.asks:
            return False
        best_bid: Decimal = self.bids.keys()[-1]
        best_ask: Decimal = self.asks.keys()[0]
        return best_bid >= best_ask

    def _check(self) -> None:
        """Assert every structural invariant; tests call this after mutations."""
        for levels in (self.bids, self.asks):
            assert len(levels) <= self.depth, "truncate() was not applied"
            for price, qty in levels.items():
                assert _units(price, self.price_precision) > 0
                assert _units(qty, self.qty_precision) > 0, "zero quantities must be deleted"
        assert not self.is_crossed(), "crossed book"


class RefL3Book:
    """One level3 (order-by-order) book, kept the way Kraken's level3 guide describes it.

    Each side maps price to an insertion-ordered ``dict`` of ``order_id -> qty``; the dict's order
    is the queue (time priority). ``orders`` maps every resting order id to ``(side, price)``.

    >>> book = RefL3Book("BTC/USD", depth=10, price_precision=1, qty_precision=8)
    >>> book.apply_message([("bid", "add", "A", Decimal("10.0"), Decimal("1")),
    ...                     ("bid", "add", "B", Decimal("10.0"), Decimal("2")),
    ...                     ("ask", "add", "C", Decimal("10.5"), Decimal("3"))], snapshot=True)
    >>> book.checksum_input()
    '105300000000100100000000100200000000'
    >>> book.queue_position("B")
    ('bid', Decimal('10.0'), 1, Decimal('1'))
    """

    def __init__(self, symbol: str, depth: int, price_precision: int, qty_precision: int) -> None:
        """Create an empty book.

        :param depth: the subscribed depth in price levels (10, 100 or 1000 on Kraken).
        :raises ValueError: on a depth below 1 or a negative precision.
        """
        _check_book_args(depth, price_precision, qty_precision)
        self.symbol = symbol
        self.depth = depth
        self.price_precision = price_precision
        self.qty_precision = qty_precision
        self.bids: SortedDict[Decimal, dict[str, Decimal]] = SortedDict()
        self.asks: SortedDict[Decimal, dict[str, Decimal]] = SortedDict()
        self.orders: dict[str, tuple[Side, Decimal]] = {}
        self.absent_deletes = 0
        self.absent_modifies = 0

    def __repr__(self) -> str:
        return (
            f"RefL3Book({self.symbol!r}, depth={self.depth}, orders={len(self.orders)}, "
            f"bid_levels={len(self.bids)}, ask_levels={len(self.asks)})"
        )

    def _side(self, side: Side) -> SortedDict[Decimal, dict[str, Decimal]]:
        if side == "bid":
            return self.bids
        if side == "ask":
            return self.asks
        raise ValueError(f"side must be 'bid' or 'ask', got {side!r}")

    def _check_values(self, price: Decimal, qty: Decimal) -> None:
        if _units(price, self.price_precision, PRICE_DIGITS) == 0:
            raise ValueError(f"price must be positive, got {price}")
        _units(qty, self.qty_precision, L3_QTY_DIGITS)

    def clear(self) -> None:
        """Remove every order (the unknown-id counters are kept)."""
        self.bids.clear()
        self.asks.clear()
        self.orders.clear()

    def _remove(self, order_id: str) -> None:
        side, price = self.orders.pop(order_id)
        levels = self._side(side)
        queue = levels[price]
        del queue[order_id]
        if not queue:
            del levels[price]  # an empty level is no level

    def add(self, side: Side, order_id: str, price: Decimal, qty: Decimal) -> None:
        """Append an order to the back of its level's queue.

        An id that is already resting is first removed (a re-add is a new queue position); an add
        with zero quantity leaves nothing resting.

        :raises ValueError: on an unknown side or a value the pair's precision cannot hold.
        """
        self._check_values(price, qty)
        levels = self._side(side)
        if order_id in self.orders:
            self._remove(order_id)
        if _units(qty, self.qty_precision) == 0:
            return
        levels.setdefault(price, {})[order_id] = qty
        self.orders[order_id] = (side, price)

    def modify(self, side: Side, order_id: str, price: Decimal, qty: Decimal) -> None:
        """Change an order's visible quantity in place; a new price re-queues it at the back.

        A modify to zero removes the order; a modify of an unknown id is counted and ignored.
        """
        self._check_values(price, qty)
        self._side(side)
        if order_id not in self.orders:
            self.absent_modifies += 1
            return
        old_side, old_price = self.orders[order_id]
        if old_side != side or old_price != price or _units(qty, self.qty_precision) == 0:
            # Real feeds carry price-changing modifies: the order joins the back of its new level,
            # as a cancel-and-replace would.
            self._remove(order_id)
            self.add(side, order_id, price, qty)
        else:
            self._side(side)[price][order_id] = qty

    def delete(self, side: Side, order_id: str) -> None:
        """Remove an order; deleting an unknown id is counted and ignored."""
        self._side(side)
        if order_id not in self.orders:
            self.absent_deletes += 1
            return
        self._remove(order_id)

    def truncate(self) -> None:
        """Keep the best ``depth`` price levels of each side ; the rest get no delete."""
        while len(self.bids) > self.depth:
            _, queue = self.bids.popitem(0)
            for order_id in queue:
                del self.orders[order_id]
        while len(self.asks) > self.depth:
            _, queue = self.asks.popitem(-1)
            for order_id in queue:
                del self.orders[order_id]

    def apply_message(
        self,
        events: list[tuple[Side, L3Event, str, Decimal, Decimal]],
        snapshot: bool,
    ) -> None:
        """Apply one whole level3 message in wire order, then truncate once.

        :param events: ``(side, event, order_id, price, qty)``; snapshot orders use ``'add'``.
        :param snapshot: clear the book first.
        :raises ValueError: (before any change) orders at more than ``4 * depth + 64`` prices on
            one side, an update of more than ``4 * depth + 1024`` events, or a snapshot that
            repeats an order id; or as :meth:`add`.
        """
        cap = _levels_cap(self.depth)
        if not snapshot and len(events) > LEVELS_FACTOR * self.depth + L3_EVENTS_SLACK:
            raise ValueError(f"more than {LEVELS_FACTOR * self.depth + L3_EVENTS_SLACK} events")
        for which in ("bid", "ask"):
            if len({price for side, _, _, price, _ in events if side == which}) > cap:
                raise ValueError(f"orders at more than {cap} prices on one side")
        if snapshot and len({order_id for _, _, order_id, _, _ in events}) < len(events):
            raise ValueError("order id repeated in a snapshot")
        if snapshot:
            self.clear()
        for side, event, order_id, price, qty in events:
            if event == "add":
                self.add(side, order_id, price, qty)
            elif event == "modify":
                self.modify(side, order_id, price, qty)
            elif event == "delete":
                self.delete(side, order_id)
            else:
                raise ValueError(f"unknown level3 event {event!r}")
        self.truncate()

    def levels(self, side: Side, n: int = CHECKSUM_LEVELS) -> list[L3Level]:
        """The ``n`` best price levels of one side, best first, each with its queue in order."""
        levels = self._side(side)
        prices = reversed(levels) if side == "bid" else iter(levels)
        return [(price, list(levels[price].items())) for price in islice(prices, n)]

    def aggregated(
        self, side: Side, n: int = CHECKSUM_LEVELS
    ) -> list[tuple[Decimal, Decimal, int]]:
        """L2 view: ``(price, total qty, order count)`` of the ``n`` best levels."""
        return [
            (price, sum((q for _, q in queue), Decimal(0)), len(queue))
            for price, queue in self.levels(side, n)
        ]

    def queue_position(self, order_id: str) -> tuple[Side, Decimal, int, Decimal]:
        """``(side, price, index in the queue, quantity ahead of it)`` of a resting order.

        :raises KeyError: if the order is not resting.
        """
        side, price = self.orders[order_id]
        ahead = Decimal(0)
        for index, (oid, qty) in enumerate(self._side(side)[price].items()):
            if oid == order_id:
                return side, price, index, ahead
            ahead += qty
        raise AssertionError("order index and queue disagree")  # pragma: no cover

    def checksum_input(self) -> str:
        """Every order of the 10 best ask levels (low to high), then of the 10 best bid levels."""
        sides: tuple[Side, Side] = ("ask", "bid")
        return "".join(
            token(price, self.price_precision) + token(qty, self.qty_precision)
            for side in sides
            for price, queue in self.levels(side)
            for _, qty in queue
        )

    def checksum(self) -> int:
        """CRC32 of :meth:`checksum_input`, unsigned."""
        return crc32(self.checksum_input())

    def is_crossed(self) -> bool:
        """Whether the best bid is at or above the best ask."""
        if not self.bids or not self.asks:
            return False
        best_bid: Decimal = self.bids.peekitem(-1)[0]
        best_ask: Decimal = self.asks.peekitem(0)[0]
        return best_bid >= best_ask

    def _check(self) -> None:
        """Assert the model's own invariants (used by its tests)."""
        count = 0
        sides: tuple[tuple[Side, SortedDict[Decimal, dict[str, Decimal]]], ...] = (
            ("bid", self.bids),
            ("ask", self.asks),
        )
        for side, levels in sides:
            assert len(levels) <= self.depth
            for price, queue in levels.items():
                assert queue, f"empty level {price}"
                for order_id, qty in queue.items():
                    assert qty > 0
                    assert self.orders[order_id] == (side, price)
                    count += 1
        assert count == len(self.orders)


@dataclass(frozen=True, slots=True)
class RefResult:
    """What :meth:`RefFeed.process` made of one frame.

    ``kind`` is ``'book'`` (applied to a live book), ``'orphan'`` (an update for a book never
    snapshotted), ``'dropped'`` (an update for a book invalidated by a checksum mismatch) or
    ``'other'`` (anything that is not book data). ``checksum_ok`` is ``None`` when no checksum was
    checked.
    """

    kind: ResultKind
    symbol: str | None
    checksum_ok: bool | None


_OTHER = RefResult("other", None, None)


class _LongLiteral(Decimal):
    """A JSON number literal longer than :data:`MAX_LITERAL`: decoded, but never a book value."""


def _json_number(text: str) -> Decimal:
    """``json.loads``' hook for every number: exact, and marked when its literal is too long."""
    return _LongLiteral(text) if len(text) > MAX_LITERAL else Decimal(text)


_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _decimal(raw: Any) -> Decimal:
    """Turn a decoded price or quantity (JSON number as Decimal, or JSON string) into a Decimal.

    A string must hold a JSON number, as the engine reads it: no sign but ``-``, no leading
    zeros, no whitespace, digits on both sides of a ``.`` (``"05"``, ``"+5"``, ``".5"`` and
    ``" 5"`` are refused, though :class:`~decimal.Decimal` would take them).

    :raises ValueError: on anything else, including booleans, non-numeric strings and literals
        longer than :data:`MAX_LITERAL` characters.
    """
    if isinstance(raw, _LongLiteral) or (isinstance(raw, str) and len(raw) > MAX_LITERAL):
        raise ValueError(f"number literal longer than {MAX_LITERAL} characters")
    if isinstance(raw, Decimal):
        value = raw
    elif isinstance(raw, str):
        if _JSON_NUMBER.fullmatch(raw) is None:
            raise ValueError(f"not a JSON number: {raw!r}")
        try:
            value = Decimal(raw)
        except ArithmeticError:  # decimal.InvalidOperation is not a ValueError
            raise ValueError(f"not a decimal number: {raw!r}") from None
    else:
        raise ValueError(f"expected a number or a numeric string, got {raw!r}")
    if not value.is_finite():
        raise ValueError(f"not a finite number: {raw!r}")
    return value


def _integer(raw: Any) -> int:
    """Turn a decoded JSON integer (a Decimal here) or decimal string into an int.

    :raises ValueError: if it is not integral.
    """
    value = _decimal(raw)
    if value.is_zero():
        return 0
    if value.adjusted() > QTY_DIGITS:  # int() of 1e999999999 would take forever
        raise ValueError(f"integer out of range: {raw!r:.40}")
    if value != value.to_integral_value():
        raise ValueError(f"expected an integer, got {raw!r:.40}")
    return int(value)


def _precision(raw: Any) -> int:
    """An ``instrument`` precision: an integral JSON number within 0..18.

    :raises ValueError: on anything else (booleans and strings included).
    """
    if (
        isinstance(raw, bool)
        or not isinstance(raw, Decimal)
        or not raw.is_finite()
        or raw != raw.to_integral_value()
        or not 0 <= raw <= 18
    ):
        raise ValueError(f"not a precision: {raw!r:.40}")
    return int(raw)


def _decimals_of(text: str) -> int:
    """Return the number of decimals a v1 wire string is written with (``"0.05000"`` -> 5)."""
    exponent = _decimal(text).as_tuple().exponent
    assert isinstance(exponent, int)
    return max(-exponent, 0)


class RefFeed:
    """Frame-level oracle: feeds raw WebSocket texts (v1 or v2) into :class:`RefBook` objects.

    Mirrors what the engine's ``Feed`` does, with plain ``json.loads`` and Decimals. Books are keyed
    ``("v2", symbol)`` or ``("v1", "<channelName>:<pair>")``. A checksum mismatch invalidates the
    book until its next snapshot; updates in between are ``'dropped'``.

    >>> feed = RefFeed({"BTC/USD": (1, 8)})
    >>> feed.process('{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",'
    ...              '"bids":[{"price":45283.5,"qty":0.1}],"asks":[],"checksum":2647523524}]}')
    RefResult(kind='book', symbol='BTC/USD', checksum_ok=True)
    >>> feed.process('{"channel":"heartbeat"}')
    RefResult(kind='other', symbol=None, checksum_ok=None)
    """

    def __init__(
        self, precisions: dict[str, tuple[int, int]] | None = None, default_depth: int | None = None
    ) -> None:
        """Create a feed with no books.

        :param precisions: v2 symbol -> ``(price_precision, qty_precision)``; ``instrument``
            messages seen later add to (and override) this table. v1 learns precisions from its
            own wire strings and uses this table only for an empty v1 snapshot.
        :param default_depth: depth of a v2 book whose subscribe ack was not seen; None (as
            the engine's ``Feed``): the smallest of Kraken's depths that holds the creating
            snapshot's longer side, and an existing book keeps its depth.
        """
        self.precisions: dict[str, tuple[int, int]] = dict(precisions or {})
        self.default_depth = default_depth
        self.books: dict[BookKey, RefBook] = {}
        self.l3books: dict[str, RefL3Book] = {}  # level3 books by v2 symbol
        self.mismatches = 0
        self.verified = 0
        self._depths: dict[str, int] = {}  # v2 symbol -> depth from its subscribe ack
        self._l3_depths: dict[str, int] = {}
        self._valid: set[BookKey] = set()

    def is_valid(self, key: BookKey) -> bool:
        """Return whether the book under ``key`` has a snapshot and no mismatch since."""
        return key in self._valid

    def process(self, frame: str | bytes) -> RefResult:
        """Decode one frame and apply it.

        A v2 book message carries one element in ``data`` in practice; if there are several, each
        is applied and the result describes the last one (the counters see all of them).

        :param frame: one WebSocket text frame.
        :return: what the frame was and, for book data, whether its checksum matched.
        :raises ValueError: on malformed JSON or book data, or a v2 snapshot for a symbol whose
            precisions are unknown.
        """
        msg = json.loads(frame, parse_float=_json_number, parse_int=_json_number)
        if isinstance(msg, list):
            return self._process__v1_array(msg)
        if isinstance(msg, dict):
            return self._process__v2_object(msg)
        return _OTHER

    def _process__v2_object(self, msg: dict[str, Any]) -> RefResult:
        channel = msg.get("channel")
        if channel == "book" and msg.get("type") in ("snapshot", "update"):
            snapshot = msg["type"] == "snapshot"
            result = _OTHER
            for element in msg["data"]:
                result = self._process__v2_book(element, snapshot)
            return result
        if channel == "level3" and msg.get("type") in ("snapshot", "update"):
            snapshot = msg["type"] == "snapshot"
            result = _OTHER
            for element in msg["data"]:
                result = self._process__v2_level3(element, snapshot)
            return result
        if channel == "instrument":
            self._learn_instrument(msg.get("data"))
        elif msg.get("method") == "subscribe" and msg.get("success") is True:
            self._learn_ack(msg.get("result"))
        return _OTHER

    def _learn_instrument(self, data: Any) -> None:
        # An entry that carries no usable precision (not an integral number within 0..18, or no
        # string symbol) is skipped, never fatal, as the engine does. A changed precision
        # restarts the pair's books: their levels were scaled at the old one.
        pairs = data.get("pairs") if isinstance(data, dict) else None
        if not isinstance(pairs, list):
            return
        for pair in pairs:
            if not isinstance(pair, dict) or not isinstance(pair.get("symbol"), str):
                continue
            try:
                pp, qp = (
                    _precision(pair.get("price_precision")),
                    _precision(pair.get("qty_precision")),
                )
            except ValueError:
                continue
            symbol = pair["symbol"]
            self.precisions[symbol] = (pp, qp)
            for key, book in (
                (("v2", symbol), self.books.get(("v2", symbol))),
                (("l3", symbol), self.l3books.get(symbol)),
            ):
                if book is not None and (book.price_precision, book.qty_precision) != (pp, qp):
                    book.clear()
                    book.price_precision, book.qty_precision = pp, qp
                    self._valid.discard(key)

    def _learn_ack(self, result: Any) -> None:
        # Malformed acks are ignored, as the engine does; a changed depth restarts the book. Any
        # depth >= 1 is taken (the engine takes Kraken's depths only): tests use small ones.
        if not isinstance(result, dict) or not isinstance(result.get("symbol"), str):
            return
        symbol = result["symbol"]
        depth = result.get("depth", 10)
        if (
            isinstance(depth, bool)
            or not isinstance(depth, Decimal)
            or not depth.is_finite()
            or depth.adjusted() > 6
            or depth != int(depth)
        ):
            return
        if int(depth) < 1:
            return
        if result.get("channel") == "book":
            self._depths[symbol] = int(depth)
            key: BookKey = ("v2", symbol)
            book = self.books.get(key)
            if book is not None and book.depth != int(depth):
                book.clear()
                book.depth = int(depth)
                self._valid.discard(key)
        elif result.get("channel") == "level3":
            # the documented level3 ack omits the depth; Kraken's default is 10
            self._l3_depths[symbol] = int(depth)
            l3 = self.l3books.get(symbol)
            if l3 is not None and l3.depth != int(depth):
                l3.clear()
                l3.depth = int(depth)
                self._valid.discard(("l3", symbol))

    def _process__v2_level3(self, element: dict[str, Any], snapshot: bool) -> RefResult:
        symbol: str = element["symbol"]
        key: BookKey = ("l3", symbol)
        events: list[tuple[Side, L3Event, str, Decimal, Decimal]] = []
        for side_name, side in (("bids", "bid"), ("asks", "ask")):
            for order in element.get(side_name, []):
                event = "add" if snapshot else order["event"]
                if event not in ("add", "modify", "delete"):
                    raise ValueError(f"unknown level3 event {event!r}")
                events.append(
                    (
                        side,
                        event,  # type: ignore[arg-type]
                        order["order_id"],
                        _decimal(order["limit_price"]),
                        _decimal(order["order_qty"]),
                    )
                )
        book = self.l3books.get(symbol)
        if snapshot:
            if symbol not in self.precisions:
                raise ValueError(f"no price/qty precision known for {symbol!r}")
            pp, qp = self.precisions[symbol]
            depth = self._l3_depths.get(symbol, 10)
            if book is None:
                book = self.l3books[symbol] = RefL3Book(symbol, depth, pp, qp)
            else:
                book.depth, book.price_precision, book.qty_precision = depth, pp, qp
            book.apply_message(events, snapshot=True)
            self._valid.add(key)
        elif book is None:
            return RefResult("orphan", symbol, None)
        elif key not in self._valid:
            return RefResult("dropped", symbol, None)
        else:
            book.apply_message(events, snapshot=False)
        checksum = element.get("checksum")
        ok = None if checksum is None else self._verify(key, book, _integer(checksum))
        self._check_crossed(key, book)
        return RefResult("book", symbol, ok)

    def _process__v2_book(self, element: dict[str, Any], snapshot: bool) -> RefResult:
        symbol: str = element["symbol"]
        key: BookKey = ("v2", symbol)
        book = self.books.get(key)
        # the values of an update no book will apply are not read, as the engine does
        if not snapshot and book is None:
            return RefResult("orphan", symbol, None)
        if not snapshot and key not in self._valid:
            return RefResult("dropped", symbol, None)
        bids = [(_decimal(lv["price"]), _decimal(lv["qty"])) for lv in element.get("bids", [])]
        asks = [(_decimal(lv["price"]), _decimal(lv["qty"])) for lv in element.get("asks", [])]
        if snapshot:
            if symbol not in self.precisions:
                raise ValueError(f"no price/qty precision known for {symbol!r}")
            pp, qp = self.precisions[symbol]
            depth = self._depths.get(symbol, self.default_depth)
            if book is None:
                if depth is None:
                    depth = _inferred_depth(max(len(bids), len(asks)))
                book = self.books[key] = RefBook(symbol, depth, pp, qp)
            else:
                # A snapshot restarts the book, so it also picks up a resubscription's new depth.
                book.depth = book.depth if depth is None else depth
                book.price_precision, book.qty_precision = pp, qp
            book.apply_message(bids, asks, snapshot=True)
            self._valid.add(key)
        elif book is None:
            return RefResult("orphan", symbol, None)
        elif key not in self._valid:
            return RefResult("dropped", symbol, None)
        else:
            book.apply_message(bids, asks, snapshot=False)
        checksum = element.get("checksum")
        ok = None if checksum is None else self._verify(key, book, _integer(checksum))
        self._check_crossed(key, book)
        return RefResult("book", symbol, ok)

    def _process__v1_array(self, msg: list[Any]) -> RefResult:
        # Index from the end: the docs' schema text and their examples disagree on the order of
        # the trailing elements, and the examples (channelName, then pair) match the live feed.
        if len(msg) < 4 or not isinstance(msg[-2], str) or not msg[-2].startswith("book-"):
            return _OTHER
        channel_name, pair = msg[-2], msg[-1]
        if not isinstance(pair, str):
            raise ValueError(f"v1 book message without a pair: {msg!r}")
        depth = int(channel_name.removeprefix("book-"))
        payloads: list[dict[str, Any]] = msg[1:-2]
        if not all(isinstance(p, dict) for p in payloads):
            raise ValueError(f"v1 book payloads must be objects: {msg!r}")
        snapshot = any("as" in p or "bs" in p for p in payloads)
        if snapshot and any("a" in p or "b" in p for p in payloads):
            raise ValueError("v1 book message mixes snapshot and update keys")
        asks: list[tuple[Decimal, Decimal]] = []
        bids: list[tuple[Decimal, Decimal]] = []
        checksum: int | None = None
        for payload in payloads:
            for entry in payload.get("as", []) + payload.get("a", []):
                asks.append((_decimal(entry[0]), _decimal(entry[1])))
            for entry in payload.get("bs", []) + payload.get("b", []):
                bids.append((_decimal(entry[0]), _decimal(entry[1])))
            if "c" in payload:
                checksum = _integer(payload["c"])
        key: BookKey = ("v1", f"{channel_name}:{pair}")
        book = self.books.get(key)
        if snapshot:
            pp, qp = self._v1_precisions(pair, msg, payloads)
            if book is None:
                book = self.books[key] = RefBook(pair, depth, pp, qp)
            else:
                book.price_precision, book.qty_precision = pp, qp
            book.apply_message(bids, asks, snapshot=True)
            self._valid.add(key)
        elif book is None:
            return RefResult("orphan", pair, None)
        elif key not in self._valid:
            return RefResult("dropped", pair, None)
        else:
            book.apply_message(bids, asks, snapshot=False)
        ok = None if checksum is None else self._verify(key, book, checksum)
        self._check_crossed(key, book)
        return RefResult("book", pair, ok)

    def _v1_precisions(
        self, pair: str, msg: list[Any], payloads: list[dict[str, Any]]
    ) -> tuple[int, int]:
        # v1 writes every price and volume at the pair's full precision, so the first snapshot
        # level tells both precisions; the checksum guide formats these strings directly.
        for payload in payloads:
            for entry in payload.get("as", []) + payload.get("bs", []):
                return _decimals_of(entry[0]), _decimals_of(entry[1])
        if pair in self.precisions:
            return self.precisions[pair]
        raise ValueError(f"empty v1 snapshot and no precision known for {pair!r}: {msg!r}")

    def _check_crossed(self, key: BookKey, book: RefBook | RefL3Book) -> None:
        # a crossed book is never valid, verified or not: it waits for its next snapshot
        if book.is_crossed():
            self._valid.discard(key)

    def _verify(self, key: BookKey, book: RefBook | RefL3Book, expected: int) -> bool:
        if book.checksum() == expected:
            self.verified += 1
            return True
        self.mismatches += 1
        self._valid.discard(key)
        return False
