# The ladder: one side of a book as a sorted array of price keys, with a fixed-size payload per
# level (an L2 quantity, or a level3 queue). It is not a book: it knows nothing of checksums,
# depth or orders.
#
# Keys ascend and the best level is the last element for both sides (bids store the price, asks
# its negation), so that the near-touch changes that dominate real feeds move few elements; a
# gap below `lo` lets deep changes shift the short lower part instead.
#
# Complexity: find is O(1) for the best few levels and O(log n) beyond; opening or closing a
# level moves min(rank, n - rank) elements.

cdef int _ladder_init(Ladder* l, int32_t cap, int32_t vsize) except -1:
    l.key = <int64_t*>PyMem_Malloc(cap * sizeof(int64_t))
    l.val = <char*>PyMem_Malloc(cap * vsize)
    if l.key == NULL or l.val == NULL:
        raise MemoryError()
    l.vsize = vsize
    l.cap = cap
    l.lo = l.hi = cap // 4
    return 0


cdef void _ladder_free(Ladder* l) noexcept:
    PyMem_Free(l.key)
    PyMem_Free(l.val)
    l.key = NULL
    l.val = NULL


cdef inline void _ladder_clear(Ladder* l) noexcept nogil:
    l.lo = l.hi = l.cap // 4


cdef inline int32_t _ladder_size(const Ladder* l) noexcept nogil:
    return l.hi - l.lo


cdef inline int32_t _ladder_rank(const Ladder* l, int32_t pos) noexcept nogil:
    """Rank (0 = best) of the level at index ``pos``."""
    return l.hi - 1 - pos


cdef inline char* _ladder_val(const Ladder* l, int32_t pos) noexcept nogil:
    return l.val + <Py_ssize_t>pos * l.vsize


cdef inline void _ladder_move(Ladder* l, int32_t dst, int32_t src, int32_t n) noexcept nogil:
    """Move ``n`` levels (keys and payloads) from index ``src`` to ``dst``."""
    if n == 0:      # a level opening or closing at the touch: no library call
        return
    memmove(&l.key[dst], &l.key[src], n * sizeof(int64_t))
    memmove(l.val + <Py_ssize_t>dst * l.vsize, l.val + <Py_ssize_t>src * l.vsize, n * l.vsize)


cdef int _ladder_reserve(Ladder* l, int32_t n) except -1:
    """Make room for ``n`` levels, recentred so both ends have a gap."""
    cdef int32_t cap = l.cap, count = l.hi - l.lo, lo
    cdef int64_t* key
    cdef char* val
    while n + 2 > cap:
        cap *= 2
    lo = (cap - count) // 2
    if cap != l.cap:
        key = <int64_t*>PyMem_Malloc(cap * sizeof(int64_t))
        val = <char*>PyMem_Malloc(cap * l.vsize)
        if key == NULL or val == NULL:
            PyMem_Free(key)
            PyMem_Free(val)
            raise MemoryError()
        memcpy(&key[lo], &l.key[l.lo], count * sizeof(int64_t))
        memcpy(val + <Py_ssize_t>lo * l.vsize, l.val + <Py_ssize_t>l.lo * l.vsize,
               count * l.vsize)
        PyMem_Free(l.key)
        PyMem_Free(l.val)
        l.key = key
        l.val = val
        l.cap = cap
    else:
        _ladder_move(l, lo, l.lo, count)
    l.lo = lo
    l.hi = lo + count
    return 0


cdef inline int32_t _ladder_find(const Ladder* l, int64_t k) noexcept nogil:
    """Index of the first key >= ``k``; probes the best few levels before bisecting."""
    cdef int32_t i = l.hi - 1
    cdef int32_t stop = l.hi - 5
    cdef int32_t lo, hi, mid
    if stop < l.lo - 1:
        stop = l.lo - 1
    while i > stop:
        if l.key[i] <= k:
            return i if l.key[i] == k else i + 1
        i -= 1
    lo = l.lo
    hi = stop + 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if l.key[mid] < k:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline bint _ladder_has(const Ladder* l, int32_t pos, int64_t k) noexcept nogil:
    """Whether ``pos`` (from :func:`_ladder_find`) holds the key ``k``."""
    return pos < l.hi and l.key[pos] == k


cdef int32_t _ladder_open(Ladder* l, int32_t pos, int64_t k) except -1:
    """Insert key ``k`` before index ``pos``; return the new level's index (payload unset).

    The shorter part moves: the worse levels shift down into the gap below ``lo`` (a level
    entering deep in the book), or the better ones shift up (the usual near-touch insert).
    """
    if (pos - l.lo < l.hi - pos and l.lo > 0) or l.hi == l.cap:
        if l.lo == 0:
            pos -= l.lo
            _ladder_reserve(l, l.hi - l.lo + 1)
            pos += l.lo
        else:
            _ladder_move(l, l.lo - 1, l.lo, pos - l.lo)
            l.lo -= 1
            l.key[pos - 1] = k
            return pos - 1
    _ladder_move(l, pos + 1, pos, l.hi - pos)
    l.hi += 1
    l.key[pos] = k
    return pos


cdef inline void _ladder_close(Ladder* l, int32_t pos) noexcept nogil:
    """Remove the level at index ``pos``, moving the shorter part."""
    if pos - l.lo < l.hi - 1 - pos:
        _ladder_move(l, l.lo + 1, l.lo, pos - l.lo)
        l.lo += 1
    else:
        _ladder_move(l, pos, pos + 1, l.hi - 1 - pos)
        l.hi -= 1


cdef inline bint _ladders_crossed(const Ladder* bids, const Ladder* asks) noexcept nogil:
    """Whether the best bid is at or above the best ask (both sides non-empty)."""
    return (bids.hi > bids.lo and asks.hi > asks.lo
            and bids.key[bids.hi - 1] >= -asks.key[asks.hi - 1])
