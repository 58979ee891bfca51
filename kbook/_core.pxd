# The engine's C-level interface: the book and feed types, so that other Cython modules (the
# picows listener) can cimport them and call their C methods without Python dispatch. The
# implementation is kbook/_core.pyx and the rooms it includes from kbook/_engine/.

cimport cython
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

include "_engine/defs.pxi"


cdef inline int64_t _now_ns() noexcept nogil:
    """CLOCK_MONOTONIC in nanoseconds (the receive stamps of books)."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000000000 + ts.tv_nsec


cdef class BookBase:
    cdef Ladder* _bl                     # the subclass's bid and ask ladders
    cdef Ladder* _al
    cdef uint32_t _cs                    # the last checksum computed
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
    cdef readonly uint64_t absent_deletes
    cdef readonly int top_changed        # best rank the last message changed (UNCHANGED: none)
    cdef public object user_data
    cdef public object on_update         # called by the listener with the book after a change
    cdef public int64_t received_ns      # monotonic ns the client last received its message
    cdef public int notify_depth         # ... when the change reached one of this many levels

    cpdef clear(self)
    cdef int _raise_for(self, ApplyResult code, int64_t expected) except -1
    cdef int _notify(self, int64_t now) except -1


@cython.final
cdef class L2Book(BookBase):
    cdef L2Side _bids
    cdef L2Side _asks

    cdef int _load_side(self, L2Side* s, Lvl* lv, int32_t n, uint8_t side) except -1
    cdef ApplyResult _apply_staged(self, Lvl* lv, int32_t n, MsgKind kind,
                                   int64_t checksum) except APPLY_ERROR
    cdef int _scale_level(self, Lvl* lv, const uint8_t* base, object texts=*) except -1
    cdef uint32_t _checksum(self) noexcept
    cdef list _levels(self, L2Side* s, int sign, object n, int fmt)
    cdef object _array(self, L2Side* s, int sign, object n, object dtype)


@cython.final
cdef class Level3Book(BookBase):
    cdef L3Side _bids
    cdef L3Side _asks
    cdef L3Order** _chunks
    cdef int32_t _nchunks
    cdef int32_t _used          # pool slots ever handed out
    cdef int32_t _free          # head of the free list, -1 when empty
    cdef int32_t* _index        # open addressing over pool indices, -1 = empty
    cdef uint16_t* _meta        # per index slot: hash tag (high byte), probe distance (low)
    cdef uint32_t _imask
    cdef uint32_t _hit          # the slot where the last lookup ended (a hint: _find, erase)
    cdef readonly int32_t order_count
    cdef readonly uint64_t absent_modifies

    cdef int32_t _alloc(self) except -1
    cdef void _release(self, int32_t i) noexcept nogil
    cdef void _warm(self, uint64_t h) noexcept nogil
    cdef int32_t _lookup(self, const char* oid, int n) noexcept nogil
    cdef int32_t _find(self, const char* oid, int n, uint64_t h) noexcept nogil
    cdef int _index_put(self, int32_t i, uint64_t h, int64_t slot) except -1
    cdef void _index_erase(self, int32_t i) noexcept nogil
    cdef int _index_grow(self) except -1
    cdef int _index_alloc(self, uint32_t n) except -1
    cdef int32_t _level_for(self, L3Side* s, int64_t k) except -1
    cdef void _drop_level(self, L3Side* s, int32_t pos) noexcept
    cdef void _unlink(self, int32_t i) noexcept
    cdef int _append(self, uint8_t side, const char* oid, int n, uint64_t h, int64_t k,
                     u128 q, int64_t slot) except -1
    cdef int _event(self, uint8_t side, Event ev, const char* oid, int n, uint64_t h,
                    int64_t k, u128 q) except -1
    cdef void _truncate_side(self, L3Side* s) noexcept
    cdef int _scale_event(self, Lvl* lv, const uint8_t* base, object texts=*) except -1
    cdef ApplyResult _apply_staged(self, Lvl* lv, int32_t n, const char* ids, MsgKind kind,
                                   int64_t checksum) except APPLY_ERROR
    cdef int _format_level(self, L3Side* s, int32_t rank) except -1
    cdef int _rehash_side(self, L3Side* s) except -1
    cdef uint32_t _checksum(self) except? 0
    cdef object _agg(self, L3Side* s, int sign, int32_t pos)
    cdef list _levels(self, L3Side* s, int sign, object n)
    cdef list _levels_str(self, L3Side* s, int sign, object n)
    cdef list _queue(self, L3Side* s, int32_t pos)
    cdef L3Side* _side_of(self, str side) except NULL
    cdef object _array(self, L3Side* s, int sign, object n)


cdef class _SymbolIndex:
    cdef SymSlot* slots
    cdef uint32_t mask
    cdef uint32_t count
    cdef dict overflow    # keys longer than KEYCAP

    cdef PyObject* get(self, const char* k, Py_ssize_t n) noexcept
    cdef int put(self, bytes key, object obj) except -1
    cdef int _grow(self) except -1


@cython.final
cdef class Feed:
    cdef Stage _st
    cdef _SymbolIndex _index_v2
    cdef _SymbolIndex _index_v1
    cdef _SymbolIndex _index_l3
    cdef dict _books_l3         # symbol -> Level3Book
    cdef dict _l3_depths        # symbol -> level3 depth from an ack (Kraken's default is 10)
    cdef object _last_book      # the book of the previous message, with its index and key
    cdef int _last_index        # 0 v2, 1 v1, 2 level3
    cdef int32_t _last_len
    cdef char _last_key[KEYCAP]
    cdef list _created          # (kind, key) of books created by the frame being committed
    cdef dict _books_v2         # symbol -> L2Book
    cdef dict _books_v1         # "book-N|PAIR" -> L2Book
    cdef dict _precisions       # v2 symbol -> (price_precision, qty_precision)
    cdef dict _depths           # v2 symbol -> depth from a subscribe ack
    cdef set _instrument_symbols    # v2 symbols whose precision an instrument message gave
    cdef dict _acked_depths         # v2 symbol -> book depth a subscribe ack gave
    cdef dict _acked_l3_depths      # symbol -> level3 depth a subscribe ack gave
    cdef object _default_depth
    cdef bint _timing
    cdef int _frame_kind        # FrameKind of the last frame
    cdef object _frame_last     # the book the last book frame addressed (its last entry)
    cdef tuple _frame_many      # every book it addressed, when it had several entries
    cdef public bint autocreate     # a snapshot for a symbol without a book creates one
    cdef public object max_books    # ... only while the feed holds fewer books than this
    cdef readonly int64_t engine_ns
    cdef readonly uint64_t frames
    cdef readonly uint64_t book_messages
    cdef readonly uint64_t other_messages
    cdef readonly uint64_t orphan_updates
    cdef readonly uint64_t checksums_verified
    cdef readonly uint64_t checksum_mismatches
    cdef readonly uint64_t integrity_errors

    cdef bint _may_create(self)
    cdef object _process(self, const uint8_t* p, Py_ssize_t n, object frame)
    cdef object _process_raw(self, const uint8_t* p, Py_ssize_t n)
    cdef object _process_scan(self, Scan* sc, const uint8_t* p)
    cdef _attribute(self, exc, Scan* sc)
    cdef object _decode_other(self, object frame)
    cdef _forget_created(self, Py_ssize_t keep)
    cdef _rebuild_indexes(self)
    cdef _learn(self, dict msg)
    cdef object _resolve_l3(self, Grp* g)
    cdef object _resolve(self, Grp* g, bint v1)
    cdef object _commit(self, Scan* sc)
