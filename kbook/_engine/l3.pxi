# The level3 (order-by-order) book. It shares the ladder, the numbers and the CRC combine step
# with the L2 book; it is not a decoder (the level3 grammar stages orders, this applies them).
#
# Layout: price levels per side in a ladder (best at the top end, like an L2 side) whose payload
# is the head and tail of a doubly linked FIFO of orders; orders live in a chunked pool (no
# pointer moves when it grows, at most one spare chunk) and an open-addressing index maps an
# order id to its pool slot. Finding an order is O(1) after the hash probe; a modify or delete
# then finds its level in the ladder (O(1) near the touch, O(log n) beyond), and only a level
# that appears or empties moves other levels.
#
# Checksum: every top-10 level caches the length and raw CRC register of its checksum segment
# (price+qty of each order, in queue order) and the register of its price's digits, never its
# text: a token's register comes from its digits (see _digits_crc) and joins the segment's with
# carry-less multiplies. A side's CRC is the segments combined likewise, recomputed from the
# first level that changed. A change therefore re-hashes one level, never the whole top 10.


_EVENT_CODES = {"add": EV_ADD, "modify": EV_MODIFY, "delete": EV_DELETE}


cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define kb_prefetch(p) __builtin_prefetch((p))
    #else
    #define kb_prefetch(p) ((void)(p))
    #endif
    """
    void _prefetch "kb_prefetch"(const void* p) noexcept nogil


cdef inline L3Level* _lvl(const L3Side* s, int32_t pos) noexcept nogil:
    """The queue record of the level at ladder index ``pos``."""
    return <L3Level*>s.lad.val + pos


cdef inline L3Order* _pool_at(L3Order** chunks, int32_t i) noexcept nogil:
    return &chunks[i >> CHUNK_SHIFT][i & (CHUNK - 1)]


cdef inline uint64_t _id_hash(const char* p, int n) noexcept nogil:
    """A fast mixing hash of an order id (8 bytes per step)."""
    cdef uint64_t h = 0x9E3779B97F4A7C15ULL ^ <uint64_t>n, w
    cdef int i = 0
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL
        h ^= h >> 31
        i += 8
    if i < n:
        w = 0
        while i < n:    # the tail byte by byte: a variable-length memcpy is a library call
            w = (w << 8) | <uint8_t>p[i]
            i += 1
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL
        h ^= h >> 31
    h *= 0x94D049BB133111EBULL
    return h ^ (h >> 29)


cdef inline void _id_copy(char* dst, const char* src, int n) noexcept nogil:
    """Copy an order id of ``n`` bytes: fixed-size, overlapping moves for the usual lengths
    (constant-size copies are inlined; a variable-length memcpy is a library call)."""
    if n >= 16:
        memcpy(dst, src, 16)
        memcpy(dst + n - 16, src + n - 16, 16)
    elif n >= 8:
        memcpy(dst, src, 8)
        memcpy(dst + n - 8, src + n - 8, 8)
    else:
        memcpy(dst, src, n)


cdef inline bint _id_eq(const char* a, const char* b, int n) noexcept nogil:
    """Equality of two order ids of ``n`` bytes, 8 at a time (ids are short: no memcmp call)."""
    cdef uint64_t x, y
    cdef int i = 0
    while i + 8 <= n:
        memcpy(&x, a + i, 8)
        memcpy(&y, b + i, 8)
        if x != y:
            return False
        i += 8
    while i < n:
        if a[i] != b[i]:
            return False
        i += 1
    return True


cdef inline uint32_t _probe_distance(const int32_t* index, const uint16_t* meta,
                                     L3Order** chunks, uint32_t mask,
                                     uint32_t k) noexcept nogil:
    """How far the order in index slot ``k`` sits from its home slot: stored in the slot's low
    meta byte, or re-hashed from the order when it saturated there (255)."""
    cdef uint32_t d = meta[k] & 0xFF
    cdef L3Order* o
    if d < 255:
        return d
    o = _pool_at(chunks, index[k])
    return (k - <uint32_t>_id_hash(o.id, o.idlen)) & mask


cdef int _l3side_init(L3Side* s, int32_t cap) except -1:
    cdef int r
    _ladder_init(&s.lad, cap, sizeof(L3Level))
    s.stale = (1 << TOP) - 1
    s.dirty = 0
    s.dirty_hi = TOP - 1
    s.touched = 0
    for r in range(TOP):
        s.slot[r].len = 0
        s.slot[r].crc = 0
    return 0


cdef void _l3side_free(L3Side* s) noexcept:
    _ladder_free(&s.lad)


cdef inline void _l3_touch(L3Side* s, int32_t rank) noexcept nogil:
    """Rank ``rank``'s segment changed (already re-hashed or to be)."""
    _l3_seen(s, rank)
    if rank < s.dirty:
        s.dirty = rank
    if rank > s.dirty_hi:
        s.dirty_hi = rank


cdef inline void _l3_seen(L3Side* s, int32_t rank) noexcept nogil:
    if rank < s.touched:
        s.touched = rank


cdef inline void _l3_mark(L3Side* s, int32_t rank) noexcept nogil:
    _l3_seen(s, rank)
    if rank < TOP:
        s.stale |= 1 << rank
        _l3_touch(s, rank)


cdef void _l3_slots_insert(L3Side* s, int32_t r) noexcept nogil:
    """A level entered at rank ``r``: cached segments move down; rank 9's slot is reused."""
    cdef LevelSlot spare
    _l3_seen(s, r)
    if r >= TOP:
        return
    spare = s.slot[TOP - 1]
    memmove(&s.slot[r + 1], &s.slot[r], (TOP - 1 - r) * sizeof(LevelSlot))
    s.slot[r] = spare
    s.stale = _bits_insert(s.stale, r)
    _l3_touch(s, r)
    s.dirty_hi = TOP - 1    # every rank below r moved


cdef void _l3_slots_delete(L3Side* s, int32_t r) noexcept nogil:
    """The level at rank ``r`` left: cached segments below it move up; its slot goes last."""
    cdef LevelSlot spare
    _l3_seen(s, r)
    if r >= TOP:
        return
    spare = s.slot[r]
    memmove(&s.slot[r], &s.slot[r + 1], (TOP - 1 - r) * sizeof(LevelSlot))
    s.slot[TOP - 1] = spare
    s.stale = _bits_delete(s.stale, r)
    _l3_touch(s, r)
    s.dirty_hi = TOP - 1


cdef inline bint _slot_live(const L3Side* s, int32_t rank) noexcept nogil:
    """Whether the cached segment of ``rank`` still matches its level's queue exactly."""
    return rank < TOP and not (s.stale & (1 << rank))


cdef inline uint32_t _order_crc(uint32_t cp, int np, u128 q, int* n) noexcept nogil:
    """CRC register (from zero) of an order's token, its price digits (register ``cp``, ``np``
    digits) then its quantity's; the token's length in ``n``."""
    cdef int nq
    cdef uint32_t cq = _digits_crc(q, &nq)
    n[0] = np + nq
    return _mulmod(cp, XPOW8N[nq]) ^ cq


cdef inline uint32_t _price_crc(int64_t k, int* np) noexcept nogil:
    """CRC register (from zero) of the digits of the price of key ``k``."""
    return _digits_crc(<uint64_t>(k if k > 0 else -k), np)


cdef int _slot_append(L3Side* s, int32_t rank, u128 q) except -1:
    """An order joined the back of a live top-10 level: extend its segment's register."""
    cdef LevelSlot* slot = &s.slot[rank]
    cdef int n
    cdef uint32_t tok = _order_crc(slot.pcrc, slot.np, q, &n)
    slot.crc = _mulmod(slot.crc, XPOW8N[n]) ^ tok
    slot.len += n
    _l3_touch(s, rank)
    return 0


cdef inline uint32_t _tokens_crc(L3Order** chunks, int32_t j, int32_t stop, uint32_t cp, int np,
                                 int64_t* length) noexcept nogil:
    """CRC register (from zero) of the tokens of the orders from ``j`` up to, not including,
    ``stop`` (-1: the queue's end), at a level whose price digits have register ``cp`` and
    ``np`` digits; their total length in ``length``."""
    cdef int nq, last = -1
    cdef uint32_t crc = 0, cq, shifted = 0
    cdef int64_t n = 0
    while j != stop:
        cq = _digits_crc(_pool_at(chunks, j).qty, &nq)
        if nq != last:
            # the price's register advanced over the quantity: the same for every order of
            # the level whose quantity has as many digits
            shifted = _mulmod(cp, XPOW8N[nq])
            last = nq
        crc = _mulmod(crc, XPOW8N[np + nq]) ^ shifted ^ cq
        n += np + nq
        j = _pool_at(chunks, j).next
    length[0] = n
    return crc


cdef void _slot_replace_at(L3Side* s, int32_t rank, L3Order** chunks, const L3Level* lvl,
                           int32_t i, u128 old_q, u128 new_q) noexcept nogil:
    """Order ``i`` of the live top-10 level ``lvl`` changed quantity, or is leaving it
    (``new_q`` 0); the queue's links are still those of the segment.

    With A the tokens ahead of the order, T its token and B the rest, the segment's register is
    CRC(A) * x**(8(|T|+|B|)) + CRC(T) * x**(8|B|) + CRC(B). Swapping T for T' swaps T's term and
    re-weights A's by x**(8(|T'|-|T|)) (x is invertible modulo P), so only one of A and B is
    re-hashed: the shorter, found by walking from both ends of the queue at once. Neither is
    for the head or the tail, where most fills and cancels happen. From B, A's term is the
    register less T's and B's terms.
    """
    cdef LevelSlot* slot = &s.slot[rank]
    cdef int np = slot.np, n_old, n_new = 0
    cdef uint32_t cp = slot.pcrc, ca, cb, xb, told, crc, wa
    cdef int64_t la, lb
    cdef int32_t a = lvl.head, b = lvl.tail
    told = _order_crc(cp, np, old_q, &n_old)
    while a != i and b != i:     # a walks from the head, b from the tail
        a = _pool_at(chunks, a).next
        b = _pool_at(chunks, b).prev
    if a == i:
        ca = _tokens_crc(chunks, lvl.head, i, cp, np, &la)
        lb = slot.len - la - n_old
        xb = _xpow(lb)
        crc = slot.crc ^ _mulmod(told, xb)
        if new_q != 0:
            crc ^= _mulmod(_order_crc(cp, np, new_q, &n_new), xb)
        if la != 0 and n_new != n_old:
            crc ^= _mulmod(ca, _xpow(n_old + lb) ^ _xpow(n_new + lb))
    else:
        cb = _tokens_crc(chunks, _pool_at(chunks, i).next, -1, cp, np, &lb)
        xb = _xpow(lb)
        wa = slot.crc ^ _mulmod(told, xb) ^ cb      # CRC(A) * x**(8(|T|+|B|))
        crc = cb
        if new_q != 0:
            crc ^= _mulmod(_order_crc(cp, np, new_q, &n_new), xb)
        if n_new > n_old:
            wa = _mulmod(wa, XPOW8N[n_new - n_old])
        elif n_new < n_old:
            wa = _mulmod(wa, XINV8N[n_old - n_new])
        crc ^= wa
    slot.len += n_new - n_old
    slot.crc = crc
    _l3_touch(s, rank)


cdef const Lvl* _SORT_LV = NULL       # qsort's comparators take no context: set around a call
cdef const char* _SORT_IDS = NULL


cdef int _cmp_key(const void* a, const void* b) noexcept nogil:
    cdef int64_t x = (<const int64_t*>a)[0], y = (<const int64_t*>b)[0]
    return (x > y) - (x < y)


cdef int _cmp_id(const void* a, const void* b) noexcept nogil:
    cdef const Lvl* x = &_SORT_LV[(<const int32_t*>a)[0]]
    cdef const Lvl* y = &_SORT_LV[(<const int32_t*>b)[0]]
    if x.id_len != y.id_len:
        return (x.id_len > y.id_len) - (x.id_len < y.id_len)
    return memcmp(_SORT_IDS + x.id_off, _SORT_IDS + y.id_off, x.id_len)


cdef int _check_l3_message(const Lvl* lv, int32_t n, const char* ids, int32_t depth,
                           bint snapshot, str symbol) except -1:
    """Refuse a level3 message whose cost a hostile server could make unbounded.

    A message may carry orders at no more than ``LEVELS_FACTOR * depth + LEVELS_SLACK`` distinct
    prices per side, an update no more than ``LEVELS_FACTOR * depth + L3_EVENTS_SLACK`` events,
    and a snapshot no order id twice (Kraken's never does; a repeated id could empty and
    re-create levels without bound). Level creation then costs O(depth) at most a bounded
    number of times; the check itself is O(n log n).

    :raises DecodeError: nothing has been applied
    """
    global _SORT_LV, _SORT_IDS
    cdef int32_t i, k, side, m, distinct, cap = _levels_cap(depth)
    cdef int64_t* keys
    cdef int32_t* order
    cdef str reason = None
    m = 0
    for i in range(n):
        m += lv[i].side != SIDE_DEAD
    if not snapshot and m > LEVELS_FACTOR * depth + L3_EVENTS_SLACK:
        raise _refused(symbol, "level3", f"{m} events exceed "
                       f"{LEVELS_FACTOR * depth + L3_EVENTS_SLACK} ({LEVELS_FACTOR} x depth "
                       f"{depth} + {L3_EVENTS_SLACK})")
    if n <= cap and not snapshot:
        return 0
    keys = <int64_t*>PyMem_Malloc(max(n, 1) * sizeof(int64_t))
    order = <int32_t*>PyMem_Malloc(max(n, 1) * sizeof(int32_t))
    if keys == NULL or order == NULL:
        PyMem_Free(keys)
        PyMem_Free(order)
        raise MemoryError()
    try:
        for side in (SIDE_BID, SIDE_ASK):
            m = 0
            for i in range(n):
                if lv[i].side == side:
                    keys[m] = lv[i].key
                    m += 1
            if m <= cap:
                continue
            qsort(keys, m, sizeof(int64_t), _cmp_key)
            distinct = 1
            for i in range(1, m):
                distinct += keys[i] != keys[i - 1]
            if distinct > cap:
                reason = (f"orders at {distinct} prices on one side exceed {cap} "
                          f"({LEVELS_FACTOR} x depth {depth} + {LEVELS_SLACK})")
                break
        if reason is None and snapshot:
            m = 0
            for i in range(n):
                if lv[i].side != SIDE_DEAD:
                    order[m] = i
                    m += 1
            _SORT_LV = lv
            _SORT_IDS = ids
            qsort(order, m, sizeof(int32_t), _cmp_id)
            for k in range(1, m):
                if _cmp_id(&order[k - 1], &order[k]) == 0:
                    i = order[k]
                    reason = ("order id repeated in a snapshot: "
                              + ids[lv[i].id_off:lv[i].id_off + lv[i].id_len].decode(
                                  "utf-8", "replace"))
                    break
    finally:
        _SORT_LV = NULL
        _SORT_IDS = NULL
        PyMem_Free(keys)
        PyMem_Free(order)
    if reason is not None:
        raise _refused(symbol, "level3", reason)
    return 0


@cython.final
cdef class Level3Book(BookBase):
    """An exact, checksum-verified level3 (order-by-order) book for one symbol.

    Price levels are kept in price order and the orders of a level in queue (time) order. An
    ``add`` joins the back of its level; a ``modify`` that only changes the quantity keeps the
    order's place, one that changes the price moves it to the back of the new level; deleting or
    modifying an order id the book does not hold is counted (``absent_deletes``,
    ``absent_modifies``), never an error. After each message empty levels are gone and each side
    is truncated to the subscribed depth in price levels, freeing the orders that fell out
    (Kraken sends no delete for them).

    Prices are ticks and quantities lots, as in :class:`L2Book`. ``len(book)`` is the number of
    price levels, as for an L2 book; the number of resting orders is :attr:`order_count`.

    >>> book = Level3Book("BTC/USD", depth=10, price_precision=1, qty_precision=8)
    >>> book.apply([("bid", "add", "A", "10.0", "1"), ("bid", "add", "B", "10.0", "2"),
    ...             ("ask", "add", "C", "10.5", "3")], snapshot=True)
    >>> book.bids(), book.queue_position("B")
    ([(100, 300000000, 2)], ('bid', 100, 1, 100000000))
    """

    def __cinit__(self, str symbol, int depth=10, price_precision=None, qty_precision=None):
        if depth not in (10, 100, 1000):
            raise ValueError(f"level3 depth must be 10, 100 or 1000, not {depth}")
        self.symbol = symbol
        self.depth = depth
        _l3side_init(&self._bids, depth + depth // 2 + 16)
        _l3side_init(&self._asks, depth + depth // 2 + 16)
        self._bl = &self._bids.lad
        self._al = &self._asks.lad
        self._chunks = NULL
        self._nchunks = 0
        self._used = 0
        self._free = -1
        self._index_alloc(64)
        if price_precision is not None or qty_precision is not None:
            self.set_precision(price_precision, qty_precision)

    def __dealloc__(self):
        cdef int32_t i
        _l3side_free(&self._bids)
        _l3side_free(&self._asks)
        for i in range(self._nchunks):
            PyMem_Free(self._chunks[i])
        PyMem_Free(self._chunks)
        PyMem_Free(self._index)
        PyMem_Free(self._meta)

    cpdef clear(self):
        """Drop every order and mark the book invalid (awaiting a snapshot)."""
        cdef L3Side* s
        for sidx in range(2):
            s = &self._bids if sidx == 0 else &self._asks
            s.lad.lo = s.lad.hi = s.lad.cap // 4
            s.stale = (1 << TOP) - 1
            s.dirty = 0
            s.dirty_hi = TOP - 1
            s.touched = 0
        self._used = 0
        self._free = -1
        self.order_count = 0
        memset(self._index, 0xFF, (self._imask + 1) * sizeof(int32_t))
        self.valid = False

    # -- the order pool and index ----------------------------------------------------------

    cdef int32_t _alloc(self) except -1:
        cdef int32_t i
        cdef L3Order** chunks
        if self._free >= 0:
            i = self._free
            self._free = _pool_at(self._chunks, i).next
            return i
        if self._used == self._nchunks * CHUNK:
            chunks = <L3Order**>PyMem_Realloc(self._chunks, (self._nchunks + 1) * sizeof(L3Order*))
            if chunks == NULL:
                raise MemoryError()
            self._chunks = chunks
            self._chunks[self._nchunks] = <L3Order*>PyMem_Malloc(CHUNK * sizeof(L3Order))
            if self._chunks[self._nchunks] == NULL:
                raise MemoryError()
            self._nchunks += 1
        i = self._used
        self._used += 1
        return i

    cdef void _release(self, int32_t i) noexcept nogil:
        _pool_at(self._chunks, i).next = self._free
        self._free = i

    cdef int _index_alloc(self, uint32_t n) except -1:
        """Install an empty index of ``n`` slots (a power of two); the old one is the caller's."""
        cdef int32_t* index = <int32_t*>PyMem_Malloc(n * sizeof(int32_t))
        cdef uint16_t* meta = <uint16_t*>PyMem_Malloc(n * sizeof(uint16_t))
        if index == NULL or meta == NULL:
            PyMem_Free(index)
            PyMem_Free(meta)
            raise MemoryError()
        memset(index, 0xFF, n * sizeof(int32_t))
        self._index = index
        self._meta = meta       # read only where the index holds an order
        self._imask = n - 1
        self._hit = 0
        return 0

    cdef inline void _warm(self, uint64_t h) noexcept nogil:
        """Start loading the index slot where a lookup of an id hashing to ``h`` begins."""
        _prefetch(&self._index[<uint32_t>h & self._imask])
        _prefetch(&self._meta[<uint32_t>h & self._imask])

    cdef int32_t _lookup(self, const char* oid, int n) noexcept nogil:
        """Pool index of the order ``oid``, or -1."""
        return self._find(oid, n, _id_hash(oid, n))

    cdef int32_t _find(self, const char* oid, int n, uint64_t h) noexcept nogil:
        """Pool index of the order ``oid`` whose id hashes to ``h``, or -1.

        An id is compared only where the slot's hash tag agrees, so a probe past other orders
        rarely reads the pool. The slot it stopped at is left in ``_hit``: the order's, or the
        empty slot where :meth:`_index_put` would index it while the index is unchanged.
        """
        cdef uint32_t j = <uint32_t>h & self._imask
        cdef uint16_t tag = <uint16_t>(h >> 56) << 8
        cdef int32_t i
        cdef L3Order* o
        while True:
            i = self._index[j]
            if i < 0:
                self._hit = j
                return -1
            if (self._meta[j] & 0xFF00) == tag:
                o = _pool_at(self._chunks, i)
                if o.idlen == n and _id_eq(o.id, oid, n):
                    self._hit = j
                    return i
            j = (j + 1) & self._imask

    cdef int _index_put(self, int32_t i, uint64_t h, int64_t slot) except -1:
        """Index pool slot ``i``, whose id hashes to ``h``; ``slot`` is -1, or where a
        :meth:`_find` of that id ended on the index as it still is (no second probe)."""
        cdef uint32_t j, d = 0
        if (<uint32_t>self.order_count + 1) * 10 > (self._imask + 1) * 7:
            self._index_grow()
            slot = -1
        if slot >= 0:
            j = <uint32_t>slot
            d = (j - <uint32_t>h) & self._imask
        else:
            j = <uint32_t>h & self._imask
            while self._index[j] >= 0:
                j = (j + 1) & self._imask
                d += 1
        self._index[j] = i
        self._meta[j] = (<uint16_t>(h >> 56) << 8) | <uint16_t>min(d, 255)
        self.order_count += 1
        return 0

    cdef void _index_erase(self, int32_t i) noexcept nogil:
        """Remove pool index ``i`` from the table by backward-shift deletion (no tombstones).

        The slot comes from the last lookup when it still holds ``i`` (a delete looks the order
        up first), and the orders after it move by their stored probe distances: the pool is
        read only for a distance of 255 or more.
        """
        cdef L3Order* o
        cdef uint32_t mask = self._imask
        cdef uint32_t j = self._hit & mask, k, d
        if self._index[j] != i:
            o = _pool_at(self._chunks, i)
            j = <uint32_t>_id_hash(o.id, o.idlen) & mask
            while self._index[j] != i:
                j = (j + 1) & mask
        k = j
        while True:
            k = (k + 1) & mask
            if self._index[k] < 0:
                break
            d = _probe_distance(self._index, self._meta, self._chunks, mask, k)
            # move k back into the hole at j unless its home lies cyclically in (j, k]
            if d >= ((k - j) & mask):
                d -= (k - j) & mask
                self._index[j] = self._index[k]
                self._meta[j] = (self._meta[k] & 0xFF00) | <uint16_t>min(d, 255)
                j = k
        self._index[j] = -1
        self.order_count -= 1

    cdef int _index_grow(self) except -1:
        cdef int32_t* old = self._index
        cdef uint16_t* old_meta = self._meta
        cdef uint32_t oldn = self._imask + 1, t, j, d
        cdef uint64_t h
        cdef L3Order* o
        self._index_alloc(oldn * 2)     # on MemoryError the old index is still installed
        for t in range(oldn):
            if old[t] >= 0:
                o = _pool_at(self._chunks, old[t])
                h = _id_hash(o.id, o.idlen)
                j = <uint32_t>h & self._imask
                d = 0
                while self._index[j] >= 0:
                    j = (j + 1) & self._imask
                    d += 1
                self._index[j] = old[t]
                self._meta[j] = (<uint16_t>(h >> 56) << 8) | <uint16_t>min(d, 255)
        PyMem_Free(old)
        PyMem_Free(old_meta)
        return 0

    # -- levels and queues -----------------------------------------------------------------

    cdef int32_t _level_for(self, L3Side* s, int64_t k) except -1:
        """Index of the level at key ``k``, created empty if absent."""
        cdef int32_t pos = _ladder_find(&s.lad, k)
        cdef L3Level* lv
        if _ladder_has(&s.lad, pos, k):
            return pos
        pos = _ladder_open(&s.lad, pos, k)
        lv = _lvl(s, pos)
        lv.total = 0
        lv.head = -1
        lv.tail = -1
        lv.orders = 0
        _l3_slots_insert(s, _ladder_rank(&s.lad, pos))
        return pos

    cdef void _drop_level(self, L3Side* s, int32_t pos) noexcept:
        cdef int32_t rank = _ladder_rank(&s.lad, pos)
        _ladder_close(&s.lad, pos)
        _l3_slots_delete(s, rank)

    cdef void _unlink(self, int32_t i) noexcept:
        """Take a resting order out of its level's queue (dropping the level if it empties)."""
        cdef L3Order* o = _pool_at(self._chunks, i)
        cdef L3Side* s = &self._bids if o.side == SIDE_BID else &self._asks
        cdef int32_t pos = _ladder_find(&s.lad, o.key)
        cdef int32_t rank = s.lad.hi - 1 - pos
        cdef bint live = _lvl(s, pos).orders > 1 and _slot_live(s, rank)
        if live:
            _slot_replace_at(s, rank, self._chunks, _lvl(s, pos), i, o.qty, 0)
        if o.prev >= 0:
            _pool_at(self._chunks, o.prev).next = o.next
        else:
            _lvl(s, pos).head = o.next
        if o.next >= 0:
            _pool_at(self._chunks, o.next).prev = o.prev
        else:
            _lvl(s, pos).tail = o.prev
        _lvl(s, pos).orders -= 1
        _lvl(s, pos).total -= o.qty
        if _lvl(s, pos).orders == 0:
            self._drop_level(s, pos)
        elif not live:
            _l3_mark(s, rank)

    cdef int _append(self, uint8_t side, const char* oid, int n, uint64_t h, int64_t k,
                     u128 q, int64_t slot) except -1:
        """A new order at the back of the queue of level ``k``; ``h`` is its id's hash and
        ``slot`` its index slot from :meth:`_find` (-1: probe for it)."""
        cdef L3Side* s = &self._bids if side == SIDE_BID else &self._asks
        cdef int32_t pos = self._level_for(s, k)
        cdef bint existed = _lvl(s, pos).orders > 0
        cdef int32_t i = self._alloc()
        cdef L3Order* o = _pool_at(self._chunks, i)
        o.qty = q
        o.key = k
        o.side = side
        o.idlen = <uint8_t>n
        _id_copy(o.id, oid, n)
        o.next = -1
        o.prev = _lvl(s, pos).tail
        if o.prev >= 0:
            _pool_at(self._chunks, o.prev).next = i
        else:
            _lvl(s, pos).head = i
        _lvl(s, pos).tail = i
        _lvl(s, pos).orders += 1
        _lvl(s, pos).total += q
        if existed and _slot_live(s, s.lad.hi - 1 - pos):
            _slot_append(s, s.lad.hi - 1 - pos, q)
        else:
            _l3_mark(s, s.lad.hi - 1 - pos)
        self._index_put(i, h, slot)
        return 0

    cdef int _event(self, uint8_t side, Event ev, const char* oid, int n, uint64_t h,
                    int64_t k, u128 q) except -1:
        """Apply one add/modify/delete (already validated and scaled); ``h`` is the order id's
        :func:`_id_hash`."""
        cdef int32_t i = self._find(oid, n, h)
        cdef L3Order* o
        cdef L3Side* s
        cdef int32_t pos
        if ev == EV_DELETE:
            if i < 0:
                self.absent_deletes += 1
                return 0
            self._unlink(i)
            self._index_erase(i)
            self._release(i)
            return 0
        if ev == EV_MODIFY:
            if i < 0:
                self.absent_modifies += 1
                return 0
            o = _pool_at(self._chunks, i)
            if o.side == side and o.key == k and q != 0:
                # a quantity change (a partial fill) keeps the order's place in the queue
                s = &self._bids if side == SIDE_BID else &self._asks
                pos = _ladder_find(&s.lad, k)
                _lvl(s, pos).total = _lvl(s, pos).total - o.qty + q
                if _slot_live(s, s.lad.hi - 1 - pos):
                    _slot_replace_at(s, s.lad.hi - 1 - pos, self._chunks, _lvl(s, pos), i,
                                     o.qty, q)
                else:
                    _l3_mark(s, s.lad.hi - 1 - pos)
                o.qty = q
                return 0
        # an add, a re-add of a resting id, or a price-changing modify: to the back of the queue
        if i >= 0:
            self._unlink(i)
            self._index_erase(i)
            self._release(i)
        if q != 0:
            # a new id's slot is where the lookup ended; an erase may have moved it
            self._append(side, oid, n, h, k, q, self._hit if i < 0 else -1)
        return 0

    cdef void _truncate_side(self, L3Side* s) noexcept:
        # the dropped levels are the worst ones, beyond every checksum rank: free their orders
        cdef int32_t i, nxt
        while s.lad.hi - s.lad.lo > self.depth:
            i = _lvl(s, s.lad.lo).head
            while i >= 0:
                nxt = _pool_at(self._chunks, i).next
                self._index_erase(i)
                self._release(i)
                i = nxt
            s.lad.lo += 1

    # -- applying --------------------------------------------------------------------------

    cdef int _scale_event(self, Lvl* lv, const uint8_t* base, object texts=None) except -1:
        return _scale_staged(lv, self.price_precision, self.qty_precision, self.symbol, base,
                             texts, L3_QTY_DIGITS)

    cdef ApplyResult _apply_staged(self, Lvl* lv, int32_t n, const char* ids, MsgKind kind,
                                   int64_t checksum) except APPLY_ERROR:
        """Apply one message's staged, scaled events; order ids are in ``ids``. APPLY_* code."""
        cdef int32_t j
        cdef uint32_t computed
        if kind == MSG_SNAPSHOT:
            self.clear()
            self.snapshots += 1
            self.valid = True
        elif not self.valid:
            self.dropped_updates += 1
            return APPLY_DROPPED
        else:
            self._bids.touched = UNCHANGED
            self._asks.touched = UNCHANGED
        for j in range(n):
            if lv[j].side == SIDE_DEAD:
                continue
            self._event(lv[j].side, EV_ADD if kind == MSG_SNAPSHOT else <Event>lv[j].event,
                        ids + lv[j].id_off, lv[j].id_len, lv[j].id_hash, lv[j].key, lv[j].lots)
        self._truncate_side(&self._bids)
        self._truncate_side(&self._asks)
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
            self.valid = False
            return APPLY_CROSSED
        return APPLY_OK

    def apply(self, events, *, bint snapshot=False, checksum=None):
        """Apply one message's events: the checked entry point for already-decoded data.

        :param events: iterable of ``(side, event, order_id, price, qty)`` with side ``"bid"`` or
            ``"ask"``, event ``"add"``, ``"modify"`` or ``"delete"`` (ignored in a snapshot, where
            every order is an add), and price/qty as exact decimal strings
        :param snapshot: replace the book instead of updating it
        :param checksum: the exchange's CRC32 after this message, if any: an int within
            ``0 <= checksum < 2**32``
        :raises NumberError: a value the book cannot hold exactly, or an order of ``10**29`` lots
            or more (nothing is applied)
        :raises DecodeError: orders at more than ``4 * depth + 64`` prices on one side, an update
            of more than ``4 * depth + 1024`` events, or a snapshot repeating an order id (the
            message is refused whole; nothing is applied)
        :raises ValueError: an unknown side or event, an order id longer than 30 bytes, or
            ``checksum`` out of range (``TypeError``: not an int)
        :raises ChecksumMismatch: the book now disagrees with ``checksum`` (it is invalid)
        :raises BookIntegrityError: the verified book is crossed (it is invalid)

        Complexity: per event, O(1) to find the order by id, then O(1) to find its level near the
        touch and O(log n) deeper, plus a shift of the side's shorter part when a level appears or
        empties; a snapshot's repeated-id check is O(m log m) for m orders.
        """
        cdef int64_t expected = _checksum_arg(checksum)
        if self.price_precision < 0:
            raise UnknownPrecision(self.symbol)
        cdef list items = list(events)
        cdef int32_t n = len(items), j
        cdef Lvl* lv = <Lvl*>PyMem_Malloc(max(n, 1) * sizeof(Lvl))
        cdef bytearray ids = bytearray()
        cdef ApplyResult code
        if lv == NULL:
            raise MemoryError()
        try:
            for j in range(n):
                side, event, order_id, price, qty = items[j]
                if side not in ("bid", "ask"):
                    raise ValueError(f"side must be 'bid' or 'ask', not {side!r}")
                lv[j].side = SIDE_BID if side == "bid" else SIDE_ASK
                lv[j].event = _EVENT_CODES.get(event, 0)
                if lv[j].event == 0:
                    raise ValueError(f"unknown level3 event {event!r}")
                oid = str(order_id).encode()
                if not 0 < len(oid) <= IDCAP:
                    raise ValueError(f"order id must be 1..{IDCAP} bytes: {order_id!r}")
                lv[j].id_off = len(ids)
                lv[j].id_len = len(oid)
                lv[j].id_hash = _id_hash(<const char*>oid, len(oid))
                ids += oid
                _parse_text_number(price, &lv[j].price, self.symbol)
                _parse_text_number(qty, &lv[j].qty, self.symbol)
                self._scale_event(&lv[j], NULL, (price, qty))
            if not snapshot and not self.valid:
                raise KBookError(f"{self.symbol}: book is not valid; apply a snapshot first")
            ids += b"\0"
            _check_l3_message(lv, n, <const char*>(<char*>ids), self.depth, snapshot,
                              self.symbol)
            code = self._apply_staged(lv, n, <const char*>(<char*>ids),
                                      MSG_SNAPSHOT if snapshot else MSG_UPDATE, expected)
        finally:
            PyMem_Free(lv)
        self._raise_for(code, expected)

    # -- checksum --------------------------------------------------------------------------

    cdef int _format_level(self, L3Side* s, int32_t rank) except -1:
        """Re-hash one top-10 level's checksum segment: its length and CRC register."""
        cdef int32_t pos = s.lad.hi - 1 - rank
        cdef LevelSlot* slot = &s.slot[rank]
        cdef int np
        cdef uint32_t cp = _price_crc(s.lad.key[pos], &np)
        cdef int64_t length
        slot.crc = _tokens_crc(self._chunks, _lvl(s, pos).head, -1, cp, np, &length)
        slot.len = length
        slot.pcrc = cp
        slot.np = np
        return 0

    cdef int _rehash_side(self, L3Side* s) except -1:
        cdef int32_t n = min(s.lad.hi - s.lad.lo, TOP), r
        cdef uint16_t pending
        if s.dirty == CLEAN:
            return 0
        pending = s.stale & ((1 << n) - 1)
        r = 0
        while pending:
            if pending & 1:
                self._format_level(s, r)
            pending >>= 1
            r += 1
        s.stale &= ~((1 << n) - 1)
        s.suf[n] = 0
        s.slen[n] = 0
        for r in range(min(s.dirty_hi, n - 1), -1, -1):
            s.slen[r] = s.slen[r + 1] + s.slot[r].len
            s.suf[r] = _mulmod(s.slot[r].crc, _xpow(s.slen[r + 1])) ^ s.suf[r + 1]
        s.dirty = CLEAN
        s.dirty_hi = -1
        return 0

    cdef uint32_t _checksum(self) except? 0:
        """CRC32 of every order of the top 10 levels, asks then bids, from cached segments."""
        cdef int64_t la, lb
        if self._asks.dirty == CLEAN and self._bids.dirty == CLEAN:
            return self._cs
        self._rehash_side(&self._asks)
        self._rehash_side(&self._bids)
        la = self._asks.slen[0]
        lb = self._bids.slen[0]
        # CRC32(A + B) = init advanced over |A|+|B| zero bytes, xor A's register advanced over
        # |B| zero bytes, xor B's register, xor the final inversion
        self._cs = (_init_shifted(la + lb) ^ _mulmod(self._asks.suf[0], _xpow(lb))
                    ^ self._bids.suf[0] ^ CRC_INIT)
        return self._cs

    def checksum(self):
        """Kraken's level3 CRC32 of the current book, as an unsigned int."""
        return self._checksum()

    def checksum_input(self):
        """The exact string the checksum covers (built from scratch, for diagnostics)."""
        cdef list parts = []
        cdef L3Side* s
        cdef int32_t r, pos, i
        cdef char buf[TOKCAP]
        cdef int n
        for sidx in range(2):
            s = &self._asks if sidx == 0 else &self._bids
            for r in range(min(s.lad.hi - s.lad.lo, TOP)):
                pos = s.lad.hi - 1 - r
                i = _lvl(s, pos).head
                while i >= 0:
                    n = _fmt_u64(<uint64_t>abs(s.lad.key[pos]), buf)
                    n += _fmt_u128(_pool_at(self._chunks, i).qty, buf + n)
                    parts.append(buf[:n].decode("ascii"))
                    i = _pool_at(self._chunks, i).next
        return "".join(parts)

    def _checksum_full(self):
        """The checksum rebuilt from scratch, bypassing every cache."""
        return crc32(self.checksum_input())

    # -- reading ---------------------------------------------------------------------------

    cdef object _agg(self, L3Side* s, int sign, int32_t pos):
        return (sign * s.lad.key[pos], _u128_to_int(_lvl(s, pos).total), _lvl(s, pos).orders)

    def best_bid(self):
        """``(price_ticks, total_lots, order_count)`` of the best bid level, or None."""
        if self._bids.lad.hi == self._bids.lad.lo:
            return None
        return self._agg(&self._bids, 1, self._bids.lad.hi - 1)

    def best_ask(self):
        """``(price_ticks, total_lots, order_count)`` of the best ask level, or None."""
        if self._asks.lad.hi == self._asks.lad.lo:
            return None
        return self._agg(&self._asks, -1, self._asks.lad.hi - 1)

    cdef list _levels(self, L3Side* s, int sign, object n):
        cdef int32_t count = s.lad.hi - s.lad.lo
        cdef int32_t k = count if n is None else max(0, min(<int32_t>n, count))
        return [self._agg(s, sign, s.lad.hi - 1 - r) for r in range(k)]

    def bids(self, n=None):
        """L2 view of the best bid levels: ``[(price_ticks, total_lots, order_count), ...]``."""
        return self._levels(&self._bids, 1, n)

    def asks(self, n=None):
        """L2 view of the best ask levels: ``[(price_ticks, total_lots, order_count), ...]``."""
        return self._levels(&self._asks, -1, n)

    cdef list _levels_str(self, L3Side* s, int sign, object n):
        cdef int32_t count = s.lad.hi - s.lad.lo
        cdef int32_t k = count if n is None else max(0, min(<int32_t>n, count))
        cdef int32_t pos
        cdef list out = []
        for r in range(k):
            pos = s.lad.hi - 1 - r
            out.append((_fixed_text(sign * s.lad.key[pos], self.price_precision),
                        _fixed_text(_u128_to_int(_lvl(s, pos).total), self.qty_precision)))
        return out

    def bids_str(self, n=None):
        """Best bid levels as exact strings ``(price, total qty)`` at the pair's precision."""
        return self._levels_str(&self._bids, 1, n)

    def asks_str(self, n=None):
        """Best ask levels as exact strings ``(price, total qty)`` at the pair's precision."""
        return self._levels_str(&self._asks, -1, n)

    cdef list _queue(self, L3Side* s, int32_t pos):
        cdef list out = []
        cdef int32_t i = _lvl(s, pos).head
        cdef L3Order* o
        while i >= 0:
            o = _pool_at(self._chunks, i)
            out.append((o.id[:o.idlen].decode("utf-8", "replace"), _u128_to_int(o.qty)))
            i = o.next
        return out

    def level_orders(self, str side, int rank=0):
        """Orders of the level at ``rank`` (0 = best) in queue order: ``[(order_id, lots)]``."""
        cdef L3Side* s = self._side_of(side)
        if not 0 <= rank < s.lad.hi - s.lad.lo:
            raise IndexError(f"no {side} level at rank {rank}")
        return self._queue(s, s.lad.hi - 1 - rank)

    cdef L3Side* _side_of(self, str side) except NULL:
        if side == "bid":
            return &self._bids
        if side == "ask":
            return &self._asks
        raise ValueError(f"side must be 'bid' or 'ask', not {side!r}")

    def order(self, order_id):
        """``(side, price_ticks, qty_lots)`` of a resting order, or None."""
        cdef bytes oid = str(order_id).encode()
        cdef int32_t i
        cdef L3Order* o
        if len(oid) > IDCAP:
            return None
        i = self._lookup(oid, len(oid))
        if i < 0:
            return None
        o = _pool_at(self._chunks, i)
        return ("bid" if o.side == SIDE_BID else "ask", o.key if o.side == SIDE_BID else -o.key,
                _u128_to_int(o.qty))

    def queue_position(self, order_id):
        """``(side, price_ticks, index, lots_ahead)`` of a resting order.

        ``index`` is its place in the level's queue (0 = first to fill) and ``lots_ahead`` the
        quantity resting in front of it. Complexity: O(index).

        :raises KeyError: the order is not in the book
        """
        cdef bytes oid = str(order_id).encode()
        cdef int32_t i, j, pos, index = 0
        cdef L3Order* o
        cdef L3Side* s
        cdef u128 ahead = 0
        i = self._lookup(oid, len(oid)) if len(oid) <= IDCAP else -1
        if i < 0:
            raise KeyError(order_id)
        o = _pool_at(self._chunks, i)
        s = &self._bids if o.side == SIDE_BID else &self._asks
        pos = _ladder_find(&s.lad, o.key)
        j = _lvl(s, pos).head
        while j != i:
            ahead += _pool_at(self._chunks, j).qty
            index += 1
            j = _pool_at(self._chunks, j).next
        return ("bid" if o.side == SIDE_BID else "ask", o.key if o.side == SIDE_BID else -o.key,
                index, _u128_to_int(ahead))

    cdef object _array(self, L3Side* s, int sign, object n):
        cdef int32_t count = s.lad.hi - s.lad.lo
        cdef int32_t k = count if n is None else max(0, min(<int32_t>n, count))
        cdef int32_t r, pos
        cdef int64_t[:, ::1] v
        import numpy as np   # only the array exports need numpy: kept out of `import kbook`
        arr = np.empty((k, 3), dtype=np.int64)
        v = arr
        for r in range(k):
            pos = s.lad.hi - 1 - r
            if (_lvl(s, pos).total >> 63) != 0:
                raise OverflowError(f"{self.symbol}: level quantity exceeds int64 lots")
            v[r, 0] = sign * s.lad.key[pos]
            v[r, 1] = <int64_t>_lvl(s, pos).total
            v[r, 2] = _lvl(s, pos).orders
        return arr

    def bids_array(self, n=None):
        """Best bid levels as a ``(k, 3)`` int64 array: price ticks, total lots, order count."""
        return self._array(&self._bids, 1, n)

    def asks_array(self, n=None):
        """Best ask levels as a ``(k, 3)`` int64 array: price ticks, total lots, order count."""
        return self._array(&self._asks, -1, n)

    def memory_bytes(self):
        """Bytes held by the book's native structures outside the object itself (pool, index,
        levels; the checksum cache lives in the object)."""
        cdef int64_t total = self._nchunks * CHUNK * sizeof(L3Order)
        cdef L3Side* s
        total += ((self._imask + 1) * (sizeof(int32_t) + sizeof(uint16_t))
                  + self._nchunks * sizeof(L3Order*))
        for sidx in range(2):
            s = &self._bids if sidx == 0 else &self._asks
            total += s.lad.cap * (sizeof(int64_t) + s.lad.vsize)
        return total

    # -- invariants ------------------------------------------------------------------------

    def _check(self):
        """Assert every structural invariant; raise ``AssertionError`` naming the broken one."""
        cdef L3Side* s
        cdef int32_t pos, i, prev, n, seen = 0
        cdef u128 total
        cdef L3Order* o
        cdef L3Level* lvl
        for name, sidx in (("bids", 0), ("asks", 1)):
            s = &self._bids if sidx == 0 else &self._asks
            if s.lad.hi - s.lad.lo > self.depth:
                raise AssertionError(
                    f"{name}: {_ladder_size(&s.lad)} levels exceed depth {self.depth}")
            for pos in range(s.lad.lo, s.lad.hi):
                if pos > s.lad.lo and s.lad.key[pos - 1] >= s.lad.key[pos]:
                    raise AssertionError(f"{name}: levels not strictly sorted at {pos}")
                if (s.lad.key[pos] > 0) != (sidx == 0) or s.lad.key[pos] == 0:
                    raise AssertionError(f"{name}: bad price key at {pos}")
                if _lvl(s, pos).orders <= 0:
                    raise AssertionError(f"{name}: empty level at {pos}")
                n = 0
                total = 0
                prev = -1
                i = _lvl(s, pos).head
                while i >= 0:
                    o = _pool_at(self._chunks, i)
                    if o.prev != prev or o.key != s.lad.key[pos] or o.side != sidx or o.qty == 0:
                        raise AssertionError(f"{name}: broken queue at level {pos}")
                    if self._lookup(o.id, o.idlen) != i:
                        raise AssertionError(f"{name}: order {o.id[:o.idlen]!r} not indexed")
                    n += 1
                    total += o.qty
                    prev = i
                    i = o.next
                lvl = _lvl(s, pos)
                if n != lvl.orders or total != lvl.total or lvl.tail != prev:
                    raise AssertionError(f"{name}: level {pos} count/total/tail disagree")
                seen += n
        if seen != self.order_count:
            raise AssertionError(f"{seen} orders in queues but {self.order_count} indexed")
        if self.valid and _ladders_crossed(&self._bids.lad, &self._asks.lad):
            raise AssertionError("valid book is crossed")
        if self._checksum() != self._checksum_full():
            raise AssertionError("incremental checksum differs from a full rebuild")

    def __repr__(self):
        state = "valid" if self.valid else "invalid"
        return (f"<Level3Book {self.symbol} depth={self.depth} {state} "
                f"orders={self.order_count} bid_levels={self.bid_levels} "
                f"ask_levels={self.ask_levels}>")
