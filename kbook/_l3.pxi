# Level3 (order-by-order) books: included into _core.pyx, so it shares the numbers, the CRC
# machinery and the scanner, and compiles into the same module.
#
# Layout: price levels per side in a sorted array (best at the top end, like an L2 side), each
# level the head and tail of a doubly linked FIFO of orders; orders live in a chunked pool (no
# pointer moves when it grows, at most one spare chunk) and an open-addressing index maps an
# order id to its pool slot, so modify and delete are O(1) after the hash probe.
#
# Checksum: every top-10 level caches its checksum segment (price+qty of each order, in queue
# order) and that segment's raw CRC; a side's CRC is the segments combined with carry-less
# multiplies, recomputed from the first level that changed. A change therefore re-formats one
# level, never the whole top 10.

cdef enum:
    IDCAP = 30          # bytes of an order id kept inline (Kraken's ids have 19)
    CHUNK_SHIFT = 6     # 64 orders (4 KiB) per pool chunk: small books stay small
    CHUNK = 64
    EV_NONE = 0
    EV_ADD = 1
    EV_MODIFY = 2
    EV_DELETE = 3
    L3_EVENTS_SLACK = 1024  # an update may carry LEVELS_FACTOR * depth + this many events


cdef struct L3Order:
    u128 qty
    int64_t key         # the level's key (price for bids, -price for asks)
    int32_t prev        # queue neighbours (pool indices, -1 at the ends); next doubles as
    int32_t next        # the free-list link of a free slot
    uint8_t idlen
    uint8_t side
    char id[IDCAP]


cdef struct LevelSlot:
    char* buf           # checksum segment of one top-10 level
    int32_t len
    int32_t cap
    uint32_t crc        # CRC register over the segment, started from zero


cdef struct L3Side:
    int64_t* key
    u128* total
    int32_t* head
    int32_t* tail
    int32_t* count
    int32_t lo
    int32_t hi
    int32_t cap
    uint16_t stale      # bit r: the segment of rank r must be re-formatted
    int32_t dirty       # lowest rank whose segment or position changed, or CLEAN
    int32_t dirty_hi    # highest such rank (-1: none)
    int32_t touched     # lowest rank (any depth) the message being applied changed
    LevelSlot slot[TOP]
    # suffix registers: suf[r] combines the segments of ranks r..n-1, so a change at rank r
    # (mostly the touch) recombines ranks r..0 only
    uint32_t suf[TOP + 1]
    int64_t slen[TOP + 1]   # their total length


_EVENT_CODES = {"add": EV_ADD, "modify": EV_MODIFY, "delete": EV_DELETE}

cdef uint32_t XPOW2K[48]    # x**(8 * 2**k) mod P, for strings longer than the direct table


cdef void _init_l3_tables() noexcept:
    cdef int k
    XPOW2K[0] = XPOW8N[1]
    for k in range(1, 48):
        XPOW2K[k] = _gf2_mulmod(XPOW2K[k - 1], XPOW2K[k - 1])


_init_l3_tables()


cdef inline uint32_t _xpow(int64_t n) noexcept nogil:
    """x**(8n) mod P: the operator that appends n zero bytes to a CRC register."""
    cdef uint32_t r
    cdef int k = 0
    if n <= BLOCKCAP:
        return XPOW8N[n]
    r = 0x80000000
    while n:
        if n & 1:
            r = _mulmod(r, XPOW2K[k])
        n >>= 1
        k += 1
    return r


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
        memcpy(&w, p + i, n - i)
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL
        h ^= h >> 31
    h *= 0x94D049BB133111EBULL
    return h ^ (h >> 29)


cdef int _l3side_init(L3Side* s, int32_t cap) except -1:
    cdef int r
    s.key = <int64_t*>PyMem_Malloc(cap * sizeof(int64_t))
    s.total = <u128*>PyMem_Malloc(cap * sizeof(u128))
    s.head = <int32_t*>PyMem_Malloc(cap * sizeof(int32_t))
    s.tail = <int32_t*>PyMem_Malloc(cap * sizeof(int32_t))
    s.count = <int32_t*>PyMem_Malloc(cap * sizeof(int32_t))
    if s.key == NULL or s.total == NULL or s.head == NULL or s.tail == NULL or s.count == NULL:
        raise MemoryError()
    s.cap = cap
    s.lo = s.hi = cap // 4
    s.stale = (1 << TOP) - 1
    s.dirty = 0
    s.dirty_hi = TOP - 1
    s.touched = 0
    for r in range(TOP):
        s.slot[r].buf = NULL
        s.slot[r].len = 0
        s.slot[r].cap = 0
        s.slot[r].crc = 0
    return 0


cdef void _l3side_free(L3Side* s) noexcept:
    cdef int r
    PyMem_Free(s.key)
    PyMem_Free(s.total)
    PyMem_Free(s.head)
    PyMem_Free(s.tail)
    PyMem_Free(s.count)
    s.key = NULL
    s.total = NULL
    s.head = NULL
    s.tail = NULL
    s.count = NULL
    for r in range(TOP):
        PyMem_Free(s.slot[r].buf)
        s.slot[r].buf = NULL


cdef int _l3side_reserve(L3Side* s, int32_t n) except -1:
    """Room for ``n`` levels, recentred."""
    cdef int32_t cap = s.cap, count = s.hi - s.lo, lo
    cdef int64_t* key
    cdef u128* total
    cdef int32_t* head
    cdef int32_t* tail
    cdef int32_t* cnt
    while n + 2 > cap:
        cap *= 2
    lo = (cap - count) // 2
    if cap != s.cap:
        key = <int64_t*>PyMem_Malloc(cap * sizeof(int64_t))
        total = <u128*>PyMem_Malloc(cap * sizeof(u128))
        head = <int32_t*>PyMem_Malloc(cap * sizeof(int32_t))
        tail = <int32_t*>PyMem_Malloc(cap * sizeof(int32_t))
        cnt = <int32_t*>PyMem_Malloc(cap * sizeof(int32_t))
        if key == NULL or total == NULL or head == NULL or tail == NULL or cnt == NULL:
            PyMem_Free(key)
            PyMem_Free(total)
            PyMem_Free(head)
            PyMem_Free(tail)
            PyMem_Free(cnt)
            raise MemoryError()
        memcpy(&key[lo], &s.key[s.lo], count * sizeof(int64_t))
        memcpy(&total[lo], &s.total[s.lo], count * sizeof(u128))
        memcpy(&head[lo], &s.head[s.lo], count * sizeof(int32_t))
        memcpy(&tail[lo], &s.tail[s.lo], count * sizeof(int32_t))
        memcpy(&cnt[lo], &s.count[s.lo], count * sizeof(int32_t))
        PyMem_Free(s.key)
        PyMem_Free(s.total)
        PyMem_Free(s.head)
        PyMem_Free(s.tail)
        PyMem_Free(s.count)
        s.key = key
        s.total = total
        s.head = head
        s.tail = tail
        s.count = cnt
        s.cap = cap
    else:
        memmove(&s.key[lo], &s.key[s.lo], count * sizeof(int64_t))
        memmove(&s.total[lo], &s.total[s.lo], count * sizeof(u128))
        memmove(&s.head[lo], &s.head[s.lo], count * sizeof(int32_t))
        memmove(&s.tail[lo], &s.tail[s.lo], count * sizeof(int32_t))
        memmove(&s.count[lo], &s.count[s.lo], count * sizeof(int32_t))
    s.lo = lo
    s.hi = lo + count
    return 0


cdef inline void _l3side_move(L3Side* s, int32_t dst, int32_t src, int32_t n) noexcept nogil:
    """Move ``n`` levels (all five arrays) from index ``src`` to ``dst``."""
    memmove(&s.key[dst], &s.key[src], n * sizeof(int64_t))
    memmove(&s.total[dst], &s.total[src], n * sizeof(u128))
    memmove(&s.head[dst], &s.head[src], n * sizeof(int32_t))
    memmove(&s.tail[dst], &s.tail[src], n * sizeof(int32_t))
    memmove(&s.count[dst], &s.count[src], n * sizeof(int32_t))


cdef inline int32_t _l3side_find(const L3Side* s, int64_t k) noexcept nogil:
    """Index of the first level key >= ``k`` (probing the best few before bisecting)."""
    cdef int32_t i = s.hi - 1
    cdef int32_t stop = s.hi - 5
    cdef int32_t lo, hi, mid
    if stop < s.lo - 1:
        stop = s.lo - 1
    while i > stop:
        if s.key[i] <= k:
            return i if s.key[i] == k else i + 1
        i -= 1
    lo = s.lo
    hi = stop + 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if s.key[mid] < k:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline void _l3_touch(L3Side* s, int32_t rank) noexcept nogil:
    """Rank ``rank``'s segment changed (already re-formatted or to be)."""
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
    """A level entered at rank ``r``: cached segments move down; rank 9's buffer is reused."""
    cdef LevelSlot spare
    cdef uint16_t low
    _l3_seen(s, r)
    if r >= TOP:
        return
    spare = s.slot[TOP - 1]
    memmove(&s.slot[r + 1], &s.slot[r], (TOP - 1 - r) * sizeof(LevelSlot))
    s.slot[r] = spare
    low = s.stale & ((1 << r) - 1)
    s.stale = (low | ((s.stale >> r) << (r + 1)) | (1 << r)) & ((1 << TOP) - 1)
    _l3_touch(s, r)
    s.dirty_hi = TOP - 1    # every rank below r moved


cdef void _l3_slots_delete(L3Side* s, int32_t r) noexcept nogil:
    """The level at rank ``r`` left: cached segments below it move up; its buffer goes last."""
    cdef LevelSlot spare
    cdef uint16_t low
    _l3_seen(s, r)
    if r >= TOP:
        return
    spare = s.slot[r]
    memmove(&s.slot[r], &s.slot[r + 1], (TOP - 1 - r) * sizeof(LevelSlot))
    s.slot[TOP - 1] = spare
    low = s.stale & ((1 << r) - 1)
    s.stale = (low | ((s.stale >> (r + 1)) << r) | (1 << (TOP - 1))) & ((1 << TOP) - 1)
    _l3_touch(s, r)
    s.dirty_hi = TOP - 1


cdef inline bint _slot_live(const L3Side* s, int32_t rank) noexcept nogil:
    """Whether the cached segment of ``rank`` still matches its level's queue exactly."""
    return rank < TOP and not (s.stale & (1 << rank))


cdef inline int _order_token(int64_t k, u128 q, char* out) noexcept nogil:
    cdef int n = _fmt_u64(<uint64_t>(k if k > 0 else -k), out)
    return n + _fmt_u128(q, out + n)


cdef int _slot_reserve(LevelSlot* slot, int32_t need) except -1:
    cdef char* buf
    if need > slot.cap:
        need = max(need, 2 * slot.cap)
        buf = <char*>PyMem_Realloc(slot.buf, need)
        if buf == NULL:
            raise MemoryError()
        slot.buf = buf
        slot.cap = need
    return 0


cdef int _slot_append(L3Side* s, int32_t rank, int64_t k, u128 q) except -1:
    """An order joined the back of a live top-10 level: extend its segment and CRC register."""
    cdef LevelSlot* slot = &s.slot[rank]
    cdef int n
    _slot_reserve(slot, slot.len + TOKCAP)
    n = _order_token(k, q, slot.buf + slot.len)
    slot.crc = _crc_update(slot.crc, slot.buf + slot.len, n)
    slot.len += n
    _l3_touch(s, rank)
    return 0


cdef int _slot_replace_head(L3Side* s, int32_t rank, int64_t k, u128 old_q,
                            u128 new_q) except -1:
    """The first order of a live top-10 level changed quantity (a fill), or left (new_q 0).

    CRC(T + B) = CRC(T) * x**(8|B|) + CRC(B): the rest's register comes out with one
    carry-less multiply, and the new head's goes back in with another.
    """
    cdef LevelSlot* slot = &s.slot[rank]
    cdef char old_tok[TOKCAP]
    cdef char new_tok[TOKCAP]
    cdef int n_old = _order_token(k, old_q, old_tok), n_new = 0
    cdef int32_t rest = slot.len - n_old
    cdef uint32_t tail = slot.crc ^ _mulmod(_crc_update(0, old_tok, n_old), _xpow(rest))
    if new_q != 0:
        n_new = _order_token(k, new_q, new_tok)
        _slot_reserve(slot, rest + n_new)
        tail ^= _mulmod(_crc_update(0, new_tok, n_new), _xpow(rest))
    if n_new != n_old:
        memmove(slot.buf + n_new, slot.buf + n_old, rest)
    memcpy(slot.buf, new_tok, n_new)
    slot.len = rest + n_new
    slot.crc = tail
    _l3_touch(s, rank)
    return 0


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
cdef class Level3Book:
    """An exact, checksum-verified level3 (order-by-order) book for one symbol.

    Price levels are kept in price order and the orders of a level in queue (time) order. An
    ``add`` joins the back of its level; a ``modify`` that only changes the quantity keeps the
    order's place, one that changes the price moves it to the back of the new level; deleting or
    modifying an unknown order id is counted, never an error. After each message empty levels are
    gone and each side is truncated to the subscribed depth in price levels, freeing the orders
    that fell out (Kraken sends no delete for them).

    Prices are ticks and quantities lots, as in :class:`L2Book`.

    >>> book = Level3Book("BTC/USD", depth=10, price_precision=1, qty_precision=8)
    >>> book.apply([("bid", "add", "A", "10.0", "1"), ("bid", "add", "B", "10.0", "2"),
    ...             ("ask", "add", "C", "10.5", "3")], snapshot=True)
    >>> book.bids(), book.queue_position("B")
    ([(100, 300000000, 2)], ('bid', 100, 1, 100000000))
    """

    cdef L3Side _bids
    cdef L3Side _asks
    cdef L3Order** _chunks
    cdef int32_t _nchunks
    cdef int32_t _used          # pool slots ever handed out
    cdef int32_t _free          # head of the free list, -1 when empty
    cdef int32_t* _index        # open addressing over pool indices, -1 = empty
    cdef uint32_t _imask
    cdef readonly int32_t order_count
    cdef uint32_t _cs
    cdef readonly str symbol
    cdef readonly int depth
    cdef readonly int price_precision
    cdef readonly int qty_precision
    cdef readonly bint valid
    cdef readonly uint64_t messages
    cdef readonly uint64_t snapshots
    cdef readonly uint64_t checksums_verified
    cdef readonly uint64_t checksum_mismatches
    cdef readonly uint64_t unverified_updates
    cdef readonly uint64_t dropped_updates
    cdef readonly uint64_t unknown_deletes
    cdef readonly uint64_t unknown_modifies
    cdef readonly int top_changed        # best rank the last message changed (UNCHANGED: none)
    cdef public object user_data
    cdef public object on_update         # called by FeedListener with the book after a change
    cdef public int64_t received_ns      # monotonic ns the client last received its message
    cdef public int notify_depth         # ... when the change reached one of this many levels

    def __cinit__(self, str symbol, int depth=10, price_precision=None, qty_precision=None):
        if depth not in (10, 100, 1000):
            raise ValueError(f"level3 depth must be 10, 100 or 1000, not {depth}")
        self.symbol = symbol
        self.depth = depth
        self.price_precision = -1
        self.qty_precision = -1
        _l3side_init(&self._bids, depth + depth // 2 + 16)
        _l3side_init(&self._asks, depth + depth // 2 + 16)
        self._chunks = NULL
        self._nchunks = 0
        self._used = 0
        self._free = -1
        self._imask = 63
        self._index = <int32_t*>PyMem_Malloc(64 * sizeof(int32_t))
        if self._index == NULL:
            raise MemoryError()
        memset(self._index, 0xFF, 64 * sizeof(int32_t))
        self.top_changed = UNCHANGED
        self.notify_depth = UNCHANGED + 1   # every message
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

    def set_precision(self, price_precision, qty_precision):
        """Set the pair's decimals; changing them on a non-empty book clears it."""
        if price_precision is None or qty_precision is None:
            raise ValueError("give both price_precision and qty_precision")
        if not (0 <= price_precision <= MAX_PRECISION and 0 <= qty_precision <= MAX_PRECISION):
            raise ValueError(f"precision must be within 0..{MAX_PRECISION}")
        if (price_precision, qty_precision) != (self.price_precision, self.qty_precision):
            if self.price_precision >= 0:
                self.clear()
            self.price_precision = price_precision
            self.qty_precision = qty_precision

    def invalidate(self):
        """Mark the book invalid (it missed data) but keep its orders; updates are dropped
        until the next snapshot."""
        self.valid = False

    cpdef clear(self):
        """Drop every order and mark the book invalid (awaiting a snapshot)."""
        cdef L3Side* s
        for sidx in range(2):
            s = &self._bids if sidx == 0 else &self._asks
            s.lo = s.hi = s.cap // 4
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

    cdef inline L3Order* _order(self, int32_t i) noexcept nogil:
        return &self._chunks[i >> CHUNK_SHIFT][i & (CHUNK - 1)]

    cdef int32_t _alloc(self) except -1:
        cdef int32_t i
        cdef L3Order** chunks
        if self._free >= 0:
            i = self._free
            self._free = self._order(i).next
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

    cdef inline void _release(self, int32_t i) noexcept nogil:
        self._order(i).next = self._free
        self._free = i

    cdef int32_t _lookup(self, const char* oid, int n) noexcept nogil:
        """Pool index of the order ``oid``, or -1."""
        cdef uint32_t j = <uint32_t>_id_hash(oid, n) & self._imask
        cdef int32_t i
        cdef L3Order* o
        while True:
            i = self._index[j]
            if i < 0:
                return -1
            o = self._order(i)
            if o.idlen == n and memcmp(o.id, oid, n) == 0:
                return i
            j = (j + 1) & self._imask

    cdef int _index_put(self, int32_t i) except -1:
        cdef L3Order* o = self._order(i)
        cdef uint32_t j
        if (<uint32_t>self.order_count + 1) * 10 > (self._imask + 1) * 7:
            self._index_grow()
        j = <uint32_t>_id_hash(o.id, o.idlen) & self._imask
        while self._index[j] >= 0:
            j = (j + 1) & self._imask
        self._index[j] = i
        self.order_count += 1
        return 0

    cdef void _index_erase(self, int32_t i) noexcept nogil:
        """Remove pool index ``i`` from the table by backward-shift deletion (no tombstones)."""
        cdef L3Order* o = self._order(i)
        cdef uint32_t mask = self._imask
        cdef uint32_t j = <uint32_t>_id_hash(o.id, o.idlen) & mask, k, home
        while self._index[j] != i:
            j = (j + 1) & mask
        k = j
        while True:
            k = (k + 1) & mask
            if self._index[k] < 0:
                break
            o = self._order(self._index[k])
            home = <uint32_t>_id_hash(o.id, o.idlen) & mask
            # move k back into the hole at j unless its home lies cyclically in (j, k]
            if ((k - home) & mask) >= ((k - j) & mask):
                self._index[j] = self._index[k]
                j = k
        self._index[j] = -1
        self.order_count -= 1

    cdef int _index_grow(self) except -1:
        cdef uint32_t newn = (self._imask + 1) * 2, j
        cdef int32_t* old = self._index
        cdef uint32_t oldn = self._imask + 1, t
        cdef L3Order* o
        self._index = <int32_t*>PyMem_Malloc(newn * sizeof(int32_t))
        if self._index == NULL:
            self._index = old
            raise MemoryError()
        memset(self._index, 0xFF, newn * sizeof(int32_t))
        self._imask = newn - 1
        for t in range(oldn):
            if old[t] >= 0:
                o = self._order(old[t])
                j = <uint32_t>_id_hash(o.id, o.idlen) & self._imask
                while self._index[j] >= 0:
                    j = (j + 1) & self._imask
                self._index[j] = old[t]
        PyMem_Free(old)
        return 0

    # -- levels and queues -----------------------------------------------------------------

    cdef int32_t _level_for(self, L3Side* s, int64_t k) except -1:
        """Index of the level at key ``k``, created empty if absent."""
        cdef int32_t pos = _l3side_find(s, k)
        cdef int32_t rank
        if pos < s.hi and s.key[pos] == k:
            return pos
        if (pos - s.lo < s.hi - pos and s.lo > 0) or s.hi == s.cap:
            if s.lo == 0:
                pos -= s.lo
                _l3side_reserve(s, s.hi - s.lo + 1)
                pos += s.lo
            else:
                # the worse part is shorter (a level entering at the back of a deep side):
                # shift it down into the room truncation leaves below lo
                _l3side_move(s, s.lo - 1, s.lo, pos - s.lo)
                s.lo -= 1
                pos -= 1
                return self._init_level(s, pos, k)
        _l3side_move(s, pos + 1, pos, s.hi - pos)
        s.hi += 1
        return self._init_level(s, pos, k)

    cdef inline int32_t _init_level(self, L3Side* s, int32_t pos, int64_t k) noexcept:
        cdef int32_t rank
        s.key[pos] = k
        s.total[pos] = 0
        s.head[pos] = -1
        s.tail[pos] = -1
        s.count[pos] = 0
        rank = s.hi - 1 - pos
        _l3_slots_insert(s, rank)
        return pos

    cdef void _drop_level(self, L3Side* s, int32_t pos) noexcept:
        cdef int32_t rank = s.hi - 1 - pos
        if pos - s.lo < s.hi - 1 - pos:
            _l3side_move(s, s.lo + 1, s.lo, pos - s.lo)   # the worse part is shorter
            s.lo += 1
        else:
            _l3side_move(s, pos, pos + 1, s.hi - 1 - pos)
            s.hi -= 1
        _l3_slots_delete(s, rank)

    cdef void _unlink(self, int32_t i) except *:
        """Take a resting order out of its level's queue (dropping the level if it empties)."""
        cdef L3Order* o = self._order(i)
        cdef L3Side* s = &self._bids if o.side == SIDE_BID else &self._asks
        cdef int32_t pos = _l3side_find(s, o.key)
        cdef int32_t rank = s.hi - 1 - pos
        cdef bint head = o.prev < 0
        if o.prev >= 0:
            self._order(o.prev).next = o.next
        else:
            s.head[pos] = o.next
        if o.next >= 0:
            self._order(o.next).prev = o.prev
        else:
            s.tail[pos] = o.prev
        s.count[pos] -= 1
        s.total[pos] -= o.qty
        if s.count[pos] == 0:
            self._drop_level(s, pos)
        elif head and _slot_live(s, rank):
            _slot_replace_head(s, rank, o.key, o.qty, 0)   # fills and cancels at the front
        else:
            _l3_mark(s, rank)

    cdef int _append(self, uint8_t side, const char* oid, int n, int64_t k, u128 q) except -1:
        """A new order at the back of the queue of level ``k``."""
        cdef L3Side* s = &self._bids if side == SIDE_BID else &self._asks
        cdef int32_t pos = self._level_for(s, k)
        cdef bint existed = s.count[pos] > 0
        cdef int32_t i = self._alloc()
        cdef L3Order* o = self._order(i)
        o.qty = q
        o.key = k
        o.side = side
        o.idlen = <uint8_t>n
        memcpy(o.id, oid, n)
        o.next = -1
        o.prev = s.tail[pos]
        if o.prev >= 0:
            self._order(o.prev).next = i
        else:
            s.head[pos] = i
        s.tail[pos] = i
        s.count[pos] += 1
        s.total[pos] += q
        if existed and _slot_live(s, s.hi - 1 - pos):
            _slot_append(s, s.hi - 1 - pos, k, q)
        else:
            _l3_mark(s, s.hi - 1 - pos)
        self._index_put(i)
        return 0

    cdef int _event(self, uint8_t side, int ev, const char* oid, int n, int64_t k,
                    u128 q) except -1:
        """Apply one add/modify/delete (already validated and scaled)."""
        cdef int32_t i = self._lookup(oid, n)
        cdef L3Order* o
        cdef L3Side* s
        cdef int32_t pos
        if ev == EV_DELETE:
            if i < 0:
                self.unknown_deletes += 1
                return 0
            self._unlink(i)
            self._index_erase(i)
            self._release(i)
            return 0
        if ev == EV_MODIFY:
            if i < 0:
                self.unknown_modifies += 1
                return 0
            o = self._order(i)
            if o.side == side and o.key == k and q != 0:
                # a quantity change (a partial fill) keeps the order's place in the queue
                s = &self._bids if side == SIDE_BID else &self._asks
                pos = _l3side_find(s, k)
                s.total[pos] = s.total[pos] - o.qty + q
                if o.prev < 0 and _slot_live(s, s.hi - 1 - pos):
                    _slot_replace_head(s, s.hi - 1 - pos, k, o.qty, q)
                else:
                    _l3_mark(s, s.hi - 1 - pos)
                o.qty = q
                return 0
        # an add, a re-add of a resting id, or a price-changing modify: to the back of the queue
        if i >= 0:
            self._unlink(i)
            self._index_erase(i)
            self._release(i)
        if q != 0:
            self._append(side, oid, n, k, q)
        return 0

    cdef void _truncate_side(self, L3Side* s) noexcept:
        # the dropped levels are the worst ones, beyond every checksum rank: free their orders
        cdef int32_t i, nxt
        while s.hi - s.lo > self.depth:
            i = s.head[s.lo]
            while i >= 0:
                nxt = self._order(i).next
                self._index_erase(i)
                self._release(i)
                i = nxt
            s.lo += 1

    # -- applying --------------------------------------------------------------------------

    cdef inline int _scale_event(self, Lvl* lv, const uint8_t* base,
                                 object texts=None) except -1:
        return _scale_staged(lv, self.price_precision, self.qty_precision, self.symbol, base,
                             texts, L3_QTY_DIGITS)

    cdef int _apply_staged(self, Lvl* lv, int32_t n, const char* ids, int kind,
                           int64_t checksum) except -1:
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
            self._event(lv[j].side, EV_ADD if kind == MSG_SNAPSHOT else lv[j].event,
                        ids + lv[j].id_off, lv[j].id_len, lv[j].key, lv[j].lots)
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
        if self._crossed():
            self.valid = False
            return APPLY_CROSSED
        return APPLY_OK

    cdef inline bint _crossed(self) noexcept:
        return (self._bids.hi > self._bids.lo and self._asks.hi > self._asks.lo
                and self._bids.key[self._bids.hi - 1] >= -self._asks.key[self._asks.hi - 1])

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
        """
        cdef int64_t expected = _checksum_arg(checksum)
        if self.price_precision < 0:
            raise UnknownPrecision(self.symbol)
        cdef list items = list(events)
        cdef int32_t n = len(items), j
        cdef Lvl* lv = <Lvl*>PyMem_Malloc(max(n, 1) * sizeof(Lvl))
        cdef bytearray ids = bytearray()
        cdef int code
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

    cdef int _raise_for(self, int code, int64_t expected) except -1:
        return _raise_apply(self, code, expected)

    # -- checksum --------------------------------------------------------------------------

    cdef int _format_level(self, L3Side* s, int32_t rank) except -1:
        """Re-build one top-10 level's checksum segment and its CRC register."""
        cdef int32_t pos = s.hi - 1 - rank, i
        cdef LevelSlot* slot = &s.slot[rank]
        cdef char price[24]
        cdef int plen
        cdef int64_t k = s.key[pos]
        cdef int32_t need = s.count[pos] * (PRICE_DIGITS + QTY_DIGITS + 2)
        cdef char* buf
        cdef int32_t o = 0
        if need > slot.cap:
            buf = <char*>PyMem_Realloc(slot.buf, need)
            if buf == NULL:
                raise MemoryError()
            slot.buf = buf
            slot.cap = need
        plen = _fmt_u64(<uint64_t>(k if k > 0 else -k), price)
        i = s.head[pos]
        while i >= 0:
            memcpy(slot.buf + o, price, plen)   # the price repeats for every order
            o += plen
            o += _fmt_u128(self._order(i).qty, slot.buf + o)
            i = self._order(i).next
        slot.len = o
        slot.crc = _crc_update(0, slot.buf, o)
        return 0

    cdef int _rehash_side(self, L3Side* s) except -1:
        cdef int32_t n = min(s.hi - s.lo, TOP), r
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
        self._cs = (_mulmod(CRC_INIT, _xpow(la + lb)) ^ _mulmod(self._asks.suf[0], _xpow(lb))
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
            for r in range(min(s.hi - s.lo, TOP)):
                pos = s.hi - 1 - r
                i = s.head[pos]
                while i >= 0:
                    n = _fmt_u64(<uint64_t>abs(s.key[pos]), buf)
                    n += _fmt_u128(self._order(i).qty, buf + n)
                    parts.append(buf[:n].decode("ascii"))
                    i = self._order(i).next
        return "".join(parts)

    def _checksum_full(self):
        """The checksum rebuilt from scratch, bypassing every cache."""
        return crc32(self.checksum_input())

    # -- reading ---------------------------------------------------------------------------

    @property
    def bid_levels(self):
        """Number of bid price levels."""
        return self._bids.hi - self._bids.lo

    @property
    def ask_levels(self):
        """Number of ask price levels."""
        return self._asks.hi - self._asks.lo

    def __len__(self):
        return self.order_count

    cdef object _agg(self, L3Side* s, int sign, int32_t pos):
        return (sign * s.key[pos], _u128_to_int(s.total[pos]), s.count[pos])

    def best_bid(self):
        """``(price_ticks, total_lots, order_count)`` of the best bid level, or None."""
        if self._bids.hi == self._bids.lo:
            return None
        return self._agg(&self._bids, 1, self._bids.hi - 1)

    def best_ask(self):
        """``(price_ticks, total_lots, order_count)`` of the best ask level, or None."""
        if self._asks.hi == self._asks.lo:
            return None
        return self._agg(&self._asks, -1, self._asks.hi - 1)

    cdef list _levels(self, L3Side* s, int sign, object n):
        cdef int32_t count = s.hi - s.lo
        cdef int32_t k = count if n is None else max(0, min(<int32_t>n, count))
        return [self._agg(s, sign, s.hi - 1 - r) for r in range(k)]

    def bids(self, n=None):
        """L2 view of the best bid levels: ``[(price_ticks, total_lots, order_count), ...]``."""
        return self._levels(&self._bids, 1, n)

    def asks(self, n=None):
        """L2 view of the best ask levels: ``[(price_ticks, total_lots, order_count), ...]``."""
        return self._levels(&self._asks, -1, n)

    cdef list _levels_str(self, L3Side* s, int sign, object n):
        cdef int32_t count = s.hi - s.lo
        cdef int32_t k = count if n is None else max(0, min(<int32_t>n, count))
        cdef int32_t pos
        cdef list out = []
        for r in range(k):
            pos = s.hi - 1 - r
            out.append((_fixed_text(sign * s.key[pos], self.price_precision),
                        _fixed_text(_u128_to_int(s.total[pos]), self.qty_precision)))
        return out

    def bids_str(self, n=None):
        """Best bid levels as exact strings ``(price, total qty)`` at the pair's precision."""
        return self._levels_str(&self._bids, 1, n)

    def asks_str(self, n=None):
        """Best ask levels as exact strings ``(price, total qty)`` at the pair's precision."""
        return self._levels_str(&self._asks, -1, n)

    def price_text(self, ticks):
        """Exact decimal text of a price given in ticks."""
        return _fixed_text(ticks, self.price_precision)

    def qty_text(self, lots):
        """Exact decimal text of a quantity given in lots."""
        return _fixed_text(lots, self.qty_precision)

    cdef list _queue(self, L3Side* s, int32_t pos):
        cdef list out = []
        cdef int32_t i = s.head[pos]
        cdef L3Order* o
        while i >= 0:
            o = self._order(i)
            out.append((o.id[:o.idlen].decode("utf-8", "replace"), _u128_to_int(o.qty)))
            i = o.next
        return out

    def level_orders(self, str side, int rank=0):
        """Orders of the level at ``rank`` (0 = best) in queue order: ``[(order_id, lots)]``."""
        cdef L3Side* s = self._side_of(side)
        if not 0 <= rank < s.hi - s.lo:
            raise IndexError(f"no {side} level at rank {rank}")
        return self._queue(s, s.hi - 1 - rank)

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
        o = self._order(i)
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
        o = self._order(i)
        s = &self._bids if o.side == SIDE_BID else &self._asks
        pos = _l3side_find(s, o.key)
        j = s.head[pos]
        while j != i:
            ahead += self._order(j).qty
            index += 1
            j = self._order(j).next
        return ("bid" if o.side == SIDE_BID else "ask", o.key if o.side == SIDE_BID else -o.key,
                index, _u128_to_int(ahead))

    cdef object _array(self, L3Side* s, int sign, object n):
        cdef int32_t count = s.hi - s.lo
        cdef int32_t k = count if n is None else max(0, min(<int32_t>n, count))
        cdef int32_t r, pos
        cdef int64_t[:, ::1] v
        arr = np.empty((k, 3), dtype=np.int64)
        v = arr
        for r in range(k):
            pos = s.hi - 1 - r
            if (s.total[pos] >> 63) != 0:
                raise OverflowError(f"{self.symbol}: level quantity exceeds int64 lots")
            v[r, 0] = sign * s.key[pos]
            v[r, 1] = <int64_t>s.total[pos]
            v[r, 2] = s.count[pos]
        return arr

    def bids_array(self, n=None):
        """Best bid levels as a ``(k, 3)`` int64 array: price ticks, total lots, order count."""
        return self._array(&self._bids, 1, n)

    def asks_array(self, n=None):
        """Best ask levels as a ``(k, 3)`` int64 array: price ticks, total lots, order count."""
        return self._array(&self._asks, -1, n)

    def memory_bytes(self):
        """Bytes held by the book's native structures (pool, index, levels, checksum cache)."""
        cdef int64_t total = self._nchunks * CHUNK * sizeof(L3Order)
        cdef L3Side* s
        cdef int r
        total += (self._imask + 1) * sizeof(int32_t) + self._nchunks * sizeof(L3Order*)
        for sidx in range(2):
            s = &self._bids if sidx == 0 else &self._asks
            total += s.cap * (sizeof(int64_t) + sizeof(u128) + 3 * sizeof(int32_t))
            for r in range(TOP):
                total += s.slot[r].cap
        return total

    # -- invariants ------------------------------------------------------------------------

    def _check(self):
        """Assert every structural invariant; raise ``AssertionError`` naming the broken one."""
        cdef L3Side* s
        cdef int32_t pos, i, prev, n, seen = 0
        cdef u128 total
        cdef L3Order* o
        for name, sidx in (("bids", 0), ("asks", 1)):
            s = &self._bids if sidx == 0 else &self._asks
            if s.hi - s.lo > self.depth:
                raise AssertionError(f"{name}: {s.hi - s.lo} levels exceed depth {self.depth}")
            for pos in range(s.lo, s.hi):
                if pos > s.lo and s.key[pos - 1] >= s.key[pos]:
                    raise AssertionError(f"{name}: levels not strictly sorted at {pos}")
                if (s.key[pos] > 0) != (sidx == 0) or s.key[pos] == 0:
                    raise AssertionError(f"{name}: bad price key at {pos}")
                if s.count[pos] <= 0:
                    raise AssertionError(f"{name}: empty level at {pos}")
                n = 0
                total = 0
                prev = -1
                i = s.head[pos]
                while i >= 0:
                    o = self._order(i)
                    if o.prev != prev or o.key != s.key[pos] or o.side != sidx or o.qty == 0:
                        raise AssertionError(f"{name}: broken queue at level {pos}")
                    if self._lookup(o.id, o.idlen) != i:
                        raise AssertionError(f"{name}: order {o.id[:o.idlen]!r} not indexed")
                    n += 1
                    total += o.qty
                    prev = i
                    i = o.next
                if n != s.count[pos] or total != s.total[pos] or s.tail[pos] != prev:
                    raise AssertionError(f"{name}: level {pos} count/total/tail disagree")
                seen += n
        if seen != self.order_count:
            raise AssertionError(f"{seen} orders in queues but {self.order_count} indexed")
        if self.valid and self._crossed():
            raise AssertionError("valid book is crossed")
        if self._checksum() != self._checksum_full():
            raise AssertionError("incremental checksum differs from a full rebuild")

    def __repr__(self):
        state = "valid" if self.valid else "invalid"
        return (f"<Level3Book {self.symbol} depth={self.depth} {state} "
                f"orders={self.order_count} bid_levels={self.bid_levels} "
                f"ask_levels={self.ask_levels}>")
