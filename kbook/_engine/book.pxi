# What both books share: BookBase (symbol, depth, precisions, validity, counters, the
# notification hook, the ladder-based reads) and the checked-path helpers that scale staged
# values and turn APPLY_* codes into exceptions. It is not a book: L2Book and Level3Book
# derive from it and own their ladders and checksum caches.


cdef class BookBase:
    """What every kbook book has: identity, precisions, validity, counters and a callback.

    Not instantiated directly: :class:`L2Book` and :class:`Level3Book` derive from it.
    ``len(book)`` is the number of price levels held on both sides, for both kinds of book
    (a level3 book's orders are :attr:`Level3Book.order_count`).

    Counters: ``messages`` applied, ``snapshots``, ``checksums_verified``,
    ``checksum_mismatches``, ``unverified_updates`` (applied without a checksum),
    ``dropped_updates`` (arrived while the book awaited a snapshot) and ``absent_deletes``
    (a delete of a level, or level3 order, the book does not hold: counted, never an error).
    """

    def __cinit__(self, *args, **kwargs):
        self.price_precision = -1
        self.qty_precision = -1
        self.top_changed = UNCHANGED
        self.notify_depth = UNCHANGED + 1   # every message

    def set_precision(self, price_precision, qty_precision):
        """Set the pair's decimals (``instrument``'s ``price_precision``/``qty_precision``).

        Changing the precision of a book that holds levels clears it and marks it invalid.

        :raises ValueError: a precision missing or outside 0..18
        """
        if price_precision is None or qty_precision is None:
            raise ValueError("give both price_precision and qty_precision")
        if not (0 <= price_precision <= MAX_PRECISION and 0 <= qty_precision <= MAX_PRECISION):
            raise ValueError(f"precision must be within 0..{MAX_PRECISION}")
        if (price_precision, qty_precision) != (self.price_precision, self.qty_precision):
            if self.price_precision >= 0:
                self.clear()
            self.price_precision = price_precision
            self.qty_precision = qty_precision

    cpdef clear(self):
        """Drop every level and mark the book invalid (awaiting a snapshot)."""
        raise NotImplementedError

    def invalidate(self):
        """Mark the book invalid (it missed data) but keep its levels; updates are dropped
        until the next snapshot."""
        self.valid = False

    cdef int _raise_for(self, ApplyResult code, int64_t expected) except -1:
        """Raise what an APPLY_* code means for this book (nothing for success codes)."""
        exc = _apply_error(self, code, expected)
        if exc is not None:
            raise exc
        return 0

    cdef int _notify(self, int64_t now) except -1:
        """Stamp the receive time, then call ``on_update`` when the book is valid and the last
        message changed one of its ``notify_depth`` best levels."""
        self.received_ns = now
        if self.on_update is not None and self.valid and self.top_changed < self.notify_depth:
            self.on_update(self)
        return 0

    # -- reading ---------------------------------------------------------------------------

    @property
    def bid_levels(self):
        """Number of bid price levels held."""
        return _ladder_size(self._bl)

    @property
    def ask_levels(self):
        """Number of ask price levels held."""
        return _ladder_size(self._al)

    def __len__(self):
        """Number of price levels held, bids and asks together."""
        return _ladder_size(self._bl) + _ladder_size(self._al)

    @property
    def best_bid_price(self):
        """Best bid in ticks, or None. Complexity: O(1)."""
        return self._bl.key[self._bl.hi - 1] if self._bl.hi > self._bl.lo else None

    @property
    def best_ask_price(self):
        """Best ask in ticks, or None. Complexity: O(1)."""
        return -self._al.key[self._al.hi - 1] if self._al.hi > self._al.lo else None

    def spread(self):
        """Best ask minus best bid, in ticks; None when a side is empty."""
        if self._bl.hi == self._bl.lo or self._al.hi == self._al.lo:
            return None
        return -self._al.key[self._al.hi - 1] - self._bl.key[self._bl.hi - 1]

    def mid(self):
        """Mid price as a float (a convenience view; the book itself stays exact)."""
        if self._bl.hi == self._bl.lo or self._al.hi == self._al.lo:
            return None
        cdef double bid = <double>self._bl.key[self._bl.hi - 1]
        cdef double ask = -<double>self._al.key[self._al.hi - 1]
        return (bid + ask) / 2.0 / (10.0 ** self.price_precision)

    def price_text(self, ticks):
        """Exact decimal text of a price given in ticks."""
        return _fixed_text(ticks, self.price_precision)

    def qty_text(self, lots):
        """Exact decimal text of a quantity given in lots."""
        return _fixed_text(lots, self.qty_precision)


# per-rank bit masks of the top-10 caches (both books): where the ranks go when a level
# enters or leaves the top 10
cdef inline uint16_t _bits_insert(uint16_t bits, int32_t r) noexcept nogil:
    """A rank mask after a level entered at rank ``r``: bits r.. move down, bit r is set."""
    return ((bits & ((1 << r) - 1)) | ((bits >> r) << (r + 1)) | (1 << r)) & ((1 << TOP) - 1)


cdef inline uint16_t _bits_delete(uint16_t bits, int32_t r) noexcept nogil:
    """A rank mask after the level at rank ``r`` left: bits r+1.. move up, the last is set."""
    return ((bits & ((1 << r) - 1)) | ((bits >> (r + 1)) << r) | (1 << (TOP - 1))) & (
        (1 << TOP) - 1)


cdef inline bint _scale_short(const Num* n, int precision, int digits, u128* out) noexcept nogil:
    """:func:`_scale` for the usual literal: a non-negative mantissa below 2**64 needing at most
    19 more digits, whose scaled value fits in ``digits`` digits. False: ask :func:`_scale`."""
    cdef int32_t s = n.exp + precision
    cdef uint64_t m = <uint64_t>n.mant
    if (n.mant >> 64) != 0 or n.neg or n.big or n.len > MAX_LITERAL or not 0 <= s <= 19:
        return False
    if s > digits:
        return False
    if digits - s <= 19 and m >= POW10_64[digits - s]:
        return False
    out[0] = <u128>m * POW10_64[s]
    return True


cdef inline int _scale_fast(Lvl* lv, int pp, int qp, int qd=QTY_DIGITS) noexcept nogil:
    """Scale a staged level or order to ticks/lots (a qty below ``10**qd``): 0, or 1/2 when the
    price/qty is bad."""
    cdef u128 v
    if not _scale_short(&lv.price, pp, PRICE_DIGITS, &v):
        if _scale(&lv.price, pp, PRICE_DIGITS, &v) != NUM_OK:
            return 1
    if v == 0:
        return 1
    lv.key = <int64_t>v if lv.side == SIDE_BID else -<int64_t>v
    if not _scale_short(&lv.qty, qp, qd, &lv.lots):
        if _scale(&lv.qty, qp, qd, &lv.lots) != NUM_OK:
            return 2
    return 0


cdef int _scale_staged(Lvl* lv, int pp, int qp, str symbol, const uint8_t* base,
                       object texts, int qd=QTY_DIGITS) except -1:
    """Scale a staged level or order to ticks/lots, raising :class:`NumberError` when it
    cannot be held exactly; ``texts`` gives (price, qty) text when there is no frame."""
    cdef u128 v
    cdef NumStatus code
    if _scale_fast(lv, pp, qp, qd) == 0:
        return 0
    code = _scale(&lv.price, pp, PRICE_DIGITS, &v)
    if code == NUM_OK and v == 0:
        code = NUM_ZERO_PRICE
    if code != NUM_OK:
        raise NumberError(symbol, str(texts[0]) if texts is not None else _span(base, &lv.price),
                          _num_reason(code, pp))
    code = _scale(&lv.qty, qp, qd, &lv.lots)
    raise NumberError(symbol, str(texts[1]) if texts is not None else _span(base, &lv.qty),
                      _num_reason(code, qp))


cdef object _refused(str symbol, str channel, str reason):
    """A :class:`DecodeError` for a message refused whole, attributed to its book."""
    exc = DecodeError(f"{symbol}: {reason}")
    exc.symbol = symbol
    exc.channel = channel
    return exc


cdef inline int32_t _levels_cap(int32_t depth) noexcept nogil:
    return LEVELS_FACTOR * depth + LEVELS_SLACK


cdef int64_t _checksum_arg(object checksum) except -2:
    """The checked entry points' ``checksum``: -1 for None, else an int in 0..2**32-1."""
    if checksum is None:
        return -1
    if isinstance(checksum, bool) or not isinstance(checksum, int):
        raise TypeError(f"checksum must be an int, not {type(checksum).__name__}")
    if not 0 <= checksum <= 0xFFFFFFFF:
        raise ValueError(f"checksum must be within 0..2**32-1, not {checksum}")
    return <int64_t>checksum


cdef object _apply_error(object book, ApplyResult code, int64_t expected):
    """The exception an APPLY_* failure code means for ``book`` (None for success codes)."""
    if code == APPLY_MISMATCH:
        return ChecksumMismatch(book.symbol, expected, book.checksum(), book.checksum_input())
    if code == APPLY_CROSSED:
        return BookIntegrityError(
            book.symbol,
            f"crossed book: best bid {book.best_bid()} >= best ask {book.best_ask()}")
    return None
