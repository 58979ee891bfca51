# The L2 book: one u128 quantity per price level, in a ladder per side, and Kraken's checksum
# kept incrementally. Each side caches the CRC register and length of the checksum token of
# each of its 10 best levels (never the token's text), and suffix registers that combine them
# (CRC(A + B) is CRC(A) advanced over |B| zero bytes, xor CRC(B)); a change at rank r re-hashes
# that token from its numbers and recombines ranks r..0, one carry-less multiply each, instead
# of re-hashing the bytes after it.


cdef inline u128* _qty(const L2Side* s) noexcept nogil:
    """The side's quantities, parallel to its ladder's keys."""
    return <u128*>s.lad.val


cdef int _side_init(L2Side* s, int32_t cap) except -1:
    _ladder_init(&s.lad, cap, sizeof(u128))
    _side_clear(s)
    return 0


cdef inline void _side_clear(L2Side* s) noexcept nogil:
    _ladder_clear(&s.lad)
    s.stale = (1 << TOP) - 1
    s.pstale = (1 << TOP) - 1
    s.dirty = 0
    s.dirty_hi = TOP - 1
    s.touched = 0
    s.nsuf = -1


cdef inline void _mark(L2Side* s, int32_t rank) noexcept nogil:
    """The token of ``rank`` (< TOP) changed in place."""
    if rank < s.dirty:
        s.dirty = rank
    if rank > s.dirty_hi:
        s.dirty_hi = rank


cdef inline void _cache_insert(L2Side* s, int32_t r) noexcept nogil:
    """A level entered at rank ``r``: cached tokens at r.. move down one rank."""
    if r >= TOP:
        return
    if r < TOP - 1:
        memmove(&s.toklen[r + 1], &s.toklen[r], TOP - 1 - r)
        memmove(&s.tcrc[r + 1], &s.tcrc[r], (TOP - 1 - r) * sizeof(uint32_t))
        memmove(&s.plen[r + 1], &s.plen[r], TOP - 1 - r)
        memmove(&s.pcrc[r + 1], &s.pcrc[r], (TOP - 1 - r) * sizeof(uint32_t))
    s.stale = _bits_insert(s.stale, r)
    s.pstale = _bits_insert(s.pstale, r)
    _mark(s, r)
    s.dirty_hi = TOP - 1    # every rank below r holds another token now


cdef inline void _cache_delete(L2Side* s, int32_t r) noexcept nogil:
    """The level at rank ``r`` left: cached tokens below it move up one rank."""
    if r >= TOP:
        return
    if r < TOP - 1:
        memmove(&s.toklen[r], &s.toklen[r + 1], TOP - 1 - r)
        memmove(&s.tcrc[r], &s.tcrc[r + 1], (TOP - 1 - r) * sizeof(uint32_t))
        memmove(&s.plen[r], &s.plen[r + 1], TOP - 1 - r)
        memmove(&s.pcrc[r], &s.pcrc[r + 1], (TOP - 1 - r) * sizeof(uint32_t))
    s.stale = _bits_delete(s.stale, r)
    s.pstale = _bits_delete(s.pstale, r)
    _mark(s, r)
    s.dirty_hi = TOP - 1


cdef int _side_set(L2Side* s, int64_t k, u128 q) except -1:
    """Set the level at key ``k`` to quantity ``q`` (0 deletes). Returns a SetResult.

    Complexity: O(log n) to find, O(min(rank, n - rank)) to insert or delete.
    """
    cdef Ladder* lad = &s.lad
    cdef int32_t pos = _ladder_find(lad, k)
    cdef int32_t rank
    if q == 0:
        if not _ladder_has(lad, pos, k):
            return SET_ABSENT
        rank = _ladder_rank(lad, pos)
        if rank < s.touched:
            s.touched = rank
        _ladder_close(lad, pos)
        _cache_delete(s, rank)
        return SET_DELETED
    if _ladder_has(lad, pos, k):
        _qty(s)[pos] = q
        rank = _ladder_rank(lad, pos)
        if rank < s.touched:
            s.touched = rank
        if rank < TOP:
            s.stale |= 1 << rank
            _mark(s, rank)
        return SET_UPDATED
    rank = lad.hi - pos
    if rank < s.touched:
        s.touched = rank
    pos = _ladder_open(lad, pos, k)
    _qty(s)[pos] = q
    _cache_insert(s, rank)
    return SET_INSERTED


cdef inline void _side_truncate(L2Side* s, int32_t depth) noexcept nogil:
    # Kraken sends no delete for levels pushed out of the subscribed depth; the dropped levels
    # are the worst ones, far below the top 10, so the checksum cache is unaffected.
    if s.lad.hi - s.lad.lo > depth:
        s.lad.lo = s.lad.hi - depth


# L2 takes the digit hash through a pointer: inlined into the L2 checksum (GCC's choice once the
# level3 code calls it from fewer places) it made a v1 or v2 depth-10 message about 20 ns slower
cdef uint32_t (*_l2_digits_crc)(u128, int*) noexcept nogil
_l2_digits_crc = _digits_crc


cdef inline int _side_token(L2Side* s, int32_t rank) noexcept nogil:
    """Take the length and CRC register of the token of ``rank`` (price digits, then quantity
    digits), joined from the two numbers' registers: CRC(P + Q) = CRC(P) * x**(8|Q|) + CRC(Q).
    The price's register is kept per rank until a level enters or leaves above it."""
    cdef int32_t i = s.lad.hi - 1 - rank
    cdef int64_t k
    cdef int np, nq
    cdef uint32_t cp, cq
    if s.pstale & (1 << rank):
        k = s.lad.key[i]
        s.pcrc[rank] = _l2_digits_crc(<uint64_t>(k if k > 0 else -k), &np)
        s.plen[rank] = <uint8_t>np
        s.pstale &= ~(1 << rank)
    cp = s.pcrc[rank]
    np = s.plen[rank]
    cq = _l2_digits_crc(_qty(s)[i], &nq)
    s.toklen[rank] = <uint8_t>(np + nq)
    s.tcrc[rank] = _mulmod(cp, XPOW8N[nq]) ^ cq
    return np + nq


cdef inline void _side_rehash(L2Side* s, int32_t n) noexcept nogil:
    """Bring the tokens and suffix registers of the ``n`` best levels up to date."""
    cdef uint16_t pending = s.stale & ((1 << n) - 1)
    cdef int32_t r = 0, hi
    while pending:
        if pending & 1:
            _side_token(s, r)
        pending >>= 1
        r += 1
    s.stale &= ~((1 << n) - 1)
    hi = n - 1 if n != s.nsuf else min(s.dirty_hi, n - 1)
    s.suf[n] = 0
    s.slen[n] = 0
    for r in range(hi, -1, -1):
        s.slen[r] = s.slen[r + 1] + s.toklen[r]
        s.suf[r] = _mulmod(s.tcrc[r], _xpow(s.slen[r + 1])) ^ s.suf[r + 1]
    s.nsuf = n
    s.dirty = CLEAN
    s.dirty_hi = -1


@cython.final
cdef class L2Book(BookBase):
    """An exact, checksum-verified L2 order book for one symbol.

    Prices are kept as integer ticks of ``10**-price_precision`` and quantities as integer lots
    of ``10**-qty_precision``; the conversions to ``str``, ``Decimal`` or ``float`` happen only in
    the accessors that say so. A book is *valid* once a snapshot has been applied and every
    checksum since then matched; after a mismatch it stays invalid (and drops updates) until
    the next snapshot.

    >>> book = L2Book("BTC/USD", depth=10, price_precision=1, qty_precision=8)
    >>> book.apply([("45283.5", "0.1")], [("45285.2", "0.001")], snapshot=True)
    >>> book.best_bid(), book.best_ask(), book.spread()
    ((452835, 10000000), (452852, 100000), 17)
    """

    def __cinit__(self, str symbol, int depth=10, price_precision=None, qty_precision=None):
        cdef int32_t cap
        if depth not in ALLOWED_DEPTHS:
            raise ValueError(f"depth must be one of {ALLOWED_DEPTHS}, not {depth}")
        self.symbol = symbol
        self.depth = depth
        if price_precision is not None or qty_precision is not None:
            self.set_precision(price_precision, qty_precision)
        cap = depth + depth // 2 + 16
        _side_init(&self._bids, cap)
        _side_init(&self._asks, cap)
        self._bl = &self._bids.lad
        self._al = &self._asks.lad

    def __dealloc__(self):
        _ladder_free(&self._bids.lad)
        _ladder_free(&self._asks.lad)

    cpdef clear(self):
        """Drop every level and mark the book invalid (awaiting a snapshot)."""
        _side_clear(&self._bids)
        _side_clear(&self._asks)
        self.valid = False

    # -- applying --------------------------------------------------------------------------

    cdef int _load_side(self, L2Side* s, Lvl* lv, int32_t n, uint8_t side) except -1:
        """Snapshot levels of one side; direct fill when they arrive best-first and distinct."""
        cdef int32_t i, m = 0, idx
        cdef int64_t prev = 0
        cdef bint ordered = True
        for i in range(n):
            if lv[i].side != side or lv[i].lots == 0:
                continue
            if m and lv[i].key >= prev:
                ordered = False
                break
            prev = lv[i].key
            m += 1
        if not ordered:
            for i in range(n):
                if lv[i].side == side:
                    if _side_set(s, lv[i].key, lv[i].lots) == SET_ABSENT:
                        self.absent_deletes += 1
            return 0
        if m + 2 > s.lad.cap:
            _ladder_reserve(&s.lad, m)
        s.lad.lo = (s.lad.cap - m) // 2
        s.lad.hi = s.lad.lo + m
        idx = s.lad.hi
        for i in range(n):
            if lv[i].side != side or lv[i].lots == 0:
                continue
            idx -= 1
            s.lad.key[idx] = lv[i].key
            _qty(s)[idx] = lv[i].lots
        return 0

    cdef ApplyResult _apply_staged(self, Lvl* lv, int32_t n, MsgKind kind,
                                   int64_t checksum) except APPLY_ERROR:
        """Apply one message's staged, already-scaled levels. Returns an APPLY_* code."""
        cdef int32_t i
        cdef uint32_t computed
        cdef int r
        if kind == MSG_SNAPSHOT:
            self.clear()
            self._load_side(&self._bids, lv, n, SIDE_BID)
            self._load_side(&self._asks, lv, n, SIDE_ASK)
            self.snapshots += 1
            self.valid = True
        else:
            if not self.valid:
                self.dropped_updates += 1
                return APPLY_DROPPED
            self._bids.touched = UNCHANGED
            self._asks.touched = UNCHANGED
            for i in range(n):
                if lv[i].side == SIDE_BID:
                    r = _side_set(&self._bids, lv[i].key, lv[i].lots)
                elif lv[i].side == SIDE_ASK:
                    r = _side_set(&self._asks, lv[i].key, lv[i].lots)
                else:
                    continue
                if r == SET_ABSENT:
                    self.absent_deletes += 1
        _side_truncate(&self._bids, self.depth)
        _side_truncate(&self._asks, self.depth)
        self.messages += 1
        self.top_changed = min(self._bids.touched, self._asks.touched)
        if checksum >= 0:
            computed = self._checksum()
            if computed != <uint32_t>checksum:
                self.valid = False
                self.checksum_mismatches += 1
                return APPLY_MISMATCH
            self.checksums_verified += 1
        elif kind != MSG_SNAPSHOT:
            self.unverified_updates += 1
        if _ladders_crossed(&self._bids.lad, &self._asks.lad):
            # a valid book is never crossed, verified or not: it waits for a snapshot
            self.valid = False
            return APPLY_CROSSED
        return APPLY_OK

    cdef int _scale_level(self, Lvl* lv, const uint8_t* base, object texts=None) except -1:
        return _scale_staged(lv, self.price_precision, self.qty_precision, self.symbol, base,
                             texts)

    def apply(self, bids, asks, *, bint snapshot=False, checksum=None):
        """Apply one message's levels: the checked entry point for already-decoded data.

        :param bids: iterable of ``(price, qty)``, each a decimal ``str`` (exact, as on the
            wire) in message order; qty ``"0"`` deletes the level
        :param asks: likewise
        :param snapshot: replace the book instead of updating it
        :param checksum: the exchange's CRC32 for the book after this message, if any: an int
            within ``0 <= checksum < 2**32``
        :raises NumberError: a value the book cannot hold exactly (nothing is applied)
        :raises DecodeError: more than ``4 * depth + 64`` levels on one side (nothing is applied)
        :raises ValueError: ``checksum`` out of range (``TypeError``: not an int)
        :raises ChecksumMismatch: the book now disagrees with ``checksum`` (it is invalid)
        :raises BookIntegrityError: the verified book is crossed (it is invalid)

        Complexity: O(m log n) for m levels, plus O(distance to the nearer end) per insert.
        """
        cdef int64_t expected = _checksum_arg(checksum)
        if self.price_precision < 0:
            raise UnknownPrecision(self.symbol)
        cdef list items = [(SIDE_BID, p, q) for p, q in bids] + [(SIDE_ASK, p, q) for p, q in asks]
        cdef int32_t n = len(items), i
        cdef Lvl* lv = <Lvl*>PyMem_Malloc(max(n, 1) * sizeof(Lvl))
        cdef ApplyResult code
        cdef MsgKind kind
        if lv == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                side, price, qty = items[i]
                lv[i].side = side
                _parse_text_number(price, &lv[i].price, self.symbol)
                _parse_text_number(qty, &lv[i].qty, self.symbol)
                self._scale_level(&lv[i], NULL, (price, qty))
            if snapshot:
                kind = MSG_SNAPSHOT
            else:
                kind = MSG_UPDATE
                if not self.valid:
                    raise KBookError(f"{self.symbol}: book is not valid; apply a snapshot first")
            _check_l2_message(lv, n, self.depth, self.symbol)
            code = self._apply_staged(lv, n, kind, expected)
        finally:
            PyMem_Free(lv)
        self._raise_for(code, expected)

    # -- checksum --------------------------------------------------------------------------

    cdef uint32_t _checksum(self) noexcept:
        """CRC32 of the top 10 (asks then bids), recombining only what changed.

        CRC32 is affine in its register: the string's CRC is zlib's initial register advanced
        over |asks| + |bids| zero bytes, xor the asks' register (from zero) advanced over
        |bids| zero bytes, xor the bids' register, xor the final inversion.
        """
        cdef L2Side* a = &self._asks
        cdef L2Side* b = &self._bids
        cdef int32_t na = min(a.lad.hi - a.lad.lo, TOP)
        cdef int32_t nb = min(b.lad.hi - b.lad.lo, TOP)
        cdef bint changed = False
        if a.dirty != CLEAN or na != a.nsuf:
            _side_rehash(a, na)
            changed = True
        if b.dirty != CLEAN or nb != b.nsuf:
            _side_rehash(b, nb)
            changed = True
        if changed:
            self._cs = (_init_shifted(a.slen[0] + b.slen[0])
                        ^ _mulmod(a.suf[0], _xpow(b.slen[0])) ^ b.suf[0] ^ CRC_INIT)
        return self._cs

    def checksum(self):
        """Kraken's CRC32 of the current top 10 (asks then bids), as an unsigned int."""
        return self._checksum()

    def checksum_input(self):
        """The exact string the checksum is computed over (for diagnostics)."""
        cdef list parts = []
        cdef char buf[TOKCAP]
        cdef int n
        cdef int32_t r
        cdef L2Side* side
        for s in (0, 1):
            side = &self._asks if s == 0 else &self._bids
            for r in range(min(side.lad.hi - side.lad.lo, TOP)):
                n = _fmt_u64(<uint64_t>abs(side.lad.key[side.lad.hi - 1 - r]), buf)
                n += _fmt_u128(_qty(side)[side.lad.hi - 1 - r], buf + n)
                parts.append(buf[:n].decode("ascii"))
        return "".join(parts)

    # -- reading ---------------------------------------------------------------------------

    def best_bid(self):
        """``(price_ticks, qty_lots)`` of the best bid, or None. Complexity: O(1)."""
        cdef L2Side* s = &self._bids
        if s.lad.hi == s.lad.lo:
            return None
        return (s.lad.key[s.lad.hi - 1], _u128_to_int(_qty(s)[s.lad.hi - 1]))

    def best_ask(self):
        """``(price_ticks, qty_lots)`` of the best ask, or None. Complexity: O(1)."""
        cdef L2Side* s = &self._asks
        if s.lad.hi == s.lad.lo:
            return None
        return (-s.lad.key[s.lad.hi - 1], _u128_to_int(_qty(s)[s.lad.hi - 1]))

    cdef list _levels(self, L2Side* s, int sign, object n, int fmt):
        cdef int32_t count = s.lad.hi - s.lad.lo
        cdef int32_t k = count if n is None else min(<int32_t>n, count)
        cdef int32_t r, i
        cdef list out = []
        if k < 0:
            raise ValueError("n must be >= 0")
        for r in range(k):
            i = s.lad.hi - 1 - r
            price = sign * s.lad.key[i]
            qty = _u128_to_int(_qty(s)[i])
            if fmt == 1:
                out.append((_fixed_text(price, self.price_precision),
                            _fixed_text(qty, self.qty_precision)))
            elif fmt == 2:
                out.append((Decimal(_fixed_text(price, self.price_precision)),
                            Decimal(_fixed_text(qty, self.qty_precision))))
            else:
                out.append((price, qty))
        return out

    def bids(self, n=None):
        """Best-first ``[(price_ticks, qty_lots), ...]`` of the ``n`` best bids (all if None)."""
        return self._levels(&self._bids, 1, n, 0)

    def asks(self, n=None):
        """Best-first ``[(price_ticks, qty_lots), ...]`` of the ``n`` best asks (all if None)."""
        return self._levels(&self._asks, -1, n, 0)

    def bids_str(self, n=None):
        """Best bids as exact decimal strings at the pair's precision (``"0.10000000"``)."""
        return self._levels(&self._bids, 1, n, 1)

    def asks_str(self, n=None):
        """Best asks as exact decimal strings at the pair's precision."""
        return self._levels(&self._asks, -1, n, 1)

    def bids_decimal(self, n=None):
        """Best bids as exact ``Decimal`` pairs."""
        return self._levels(&self._bids, 1, n, 2)

    def asks_decimal(self, n=None):
        """Best asks as exact ``Decimal`` pairs."""
        return self._levels(&self._asks, -1, n, 2)

    cdef object _array(self, L2Side* s, int sign, object n, object dtype):
        cdef int32_t count = s.lad.hi - s.lad.lo
        cdef int32_t k = count if n is None else max(0, min(<int32_t>n, count))
        cdef int32_t r, i
        cdef int64_t[:, ::1] iv
        cdef double[:, ::1] fv
        cdef double pscale, qscale
        import numpy as np   # only the array exports need numpy: kept out of `import kbook`
        dt = np.dtype(np.int64 if dtype is None else dtype)
        if dt == np.int64:
            arr = np.empty((k, 2), dtype=np.int64)
            iv = arr
            for r in range(k):
                i = s.lad.hi - 1 - r
                if (_qty(s)[i] >> 63) != 0:
                    raise OverflowError(
                        f"{self.symbol}: quantity exceeds int64 lots; use dtype=float64 or bids()")
                iv[r, 0] = sign * s.lad.key[i]
                iv[r, 1] = <int64_t>_qty(s)[i]
            return arr
        if dt == np.float64:
            arr = np.empty((k, 2), dtype=np.float64)
            fv = arr
            pscale = 10.0 ** self.price_precision
            qscale = 10.0 ** self.qty_precision
            for r in range(k):
                i = s.lad.hi - 1 - r
                fv[r, 0] = sign * s.lad.key[i] / pscale
                fv[r, 1] = <double>_qty(s)[i] / qscale
            return arr
        raise TypeError("dtype must be int64 (ticks/lots) or float64 (prices/quantities)")

    def bids_array(self, n=None, dtype=None):
        """Best bids as a ``(k, 2)`` numpy array: int64 ticks/lots (default) or float64."""
        return self._array(&self._bids, 1, n, dtype)

    def asks_array(self, n=None, dtype=None):
        """Best asks as a ``(k, 2)`` numpy array: int64 ticks/lots (default) or float64."""
        return self._array(&self._asks, -1, n, dtype)

    # -- invariants ------------------------------------------------------------------------

    def _checksum_full(self):
        """The checksum rebuilt from scratch, bypassing every cache (tests and benchmarks)."""
        return crc32(self.checksum_input())

    def _check(self):
        """Assert every structural invariant; raise ``AssertionError`` naming the broken one."""
        cdef L2Side* s
        cdef int32_t i, r, n
        cdef char buf[TOKCAP]
        for name, sidx in (("bids", 0), ("asks", 1)):
            s = &self._bids if sidx == 0 else &self._asks
            if not (0 <= s.lad.lo <= s.lad.hi <= s.lad.cap):
                raise AssertionError(f"{name}: bounds lo={s.lad.lo} hi={s.lad.hi} cap={s.lad.cap}")
            if s.lad.hi - s.lad.lo > self.depth:
                raise AssertionError(
                    f"{name}: {_ladder_size(&s.lad)} levels exceed depth {self.depth}")
            for i in range(s.lad.lo, s.lad.hi):
                if _qty(s)[i] == 0:
                    raise AssertionError(f"{name}: zero quantity at index {i}")
                if s.lad.key[i] == 0:
                    raise AssertionError(f"{name}: zero price at index {i}")
                if (s.lad.key[i] > 0) != (sidx == 0):
                    raise AssertionError(f"{name}: price sign at index {i}")
                if i > s.lad.lo and s.lad.key[i - 1] >= s.lad.key[i]:
                    raise AssertionError(f"{name}: not strictly sorted at index {i}")
            for r in range(min(s.lad.hi - s.lad.lo, TOP)):
                i = s.lad.hi - 1 - r
                if not s.pstale & (1 << r):
                    n = _fmt_u64(<uint64_t>abs(s.lad.key[i]), buf)
                    if n != s.plen[r] or _crc_update(0, buf, n) != s.pcrc[r]:
                        raise AssertionError(f"{name}: cached price register of rank {r} is stale")
                if s.stale & (1 << r):
                    continue
                n = _fmt_u64(<uint64_t>abs(s.lad.key[i]), buf)
                n += _fmt_u128(_qty(s)[i], buf + n)
                if n != s.toklen[r] or _crc_update(0, buf, n) != s.tcrc[r]:
                    raise AssertionError(f"{name}: cached checksum token of rank {r} is stale")
        if self.valid and _ladders_crossed(&self._bids.lad, &self._asks.lad):
            raise AssertionError("valid book is crossed")
        if self._checksum() != self._checksum_full():
            raise AssertionError("incremental checksum differs from a full rebuild")

    def __repr__(self):
        state = "valid" if self.valid else "invalid"
        return (f"<L2Book {self.symbol} depth={self.depth} {state} "
                f"bids={self.bid_levels} asks={self.ask_levels}>")


cdef int _check_l2_message(const Lvl* lv, int32_t n, int32_t depth, str symbol) except -1:
    """Refuse an L2 message that addresses more price levels on one side than
    ``LEVELS_FACTOR * depth + LEVELS_SLACK``: the work a message costs (O(m * (depth + m)) for m
    levels) stays bounded whatever a hostile frame holds.

    :raises DecodeError: nothing has been applied
    """
    cdef int32_t i, nb = 0, na = 0, cap = _levels_cap(depth)
    for i in range(n):
        if lv[i].side == SIDE_BID:
            nb += 1
        elif lv[i].side == SIDE_ASK:
            na += 1
    if nb > cap or na > cap:
        raise _refused(symbol, "book",
                       f"{max(nb, na)} price levels on one side exceed {cap} "
                       f"({LEVELS_FACTOR} x depth {depth} + {LEVELS_SLACK})")
    return 0
