# Staging: a frame is decoded completely before any book changes, so that a malformed or
# impossible frame leaves every book exactly as it was. The stage holds what the grammars
# decoded from one frame: levels (or level3 orders), one group per book message, and an arena
# with the decoded symbols and order ids. It is not a book and knows no book.


cdef int _stage_init(Stage* st) except -1:
    st.caplv = 256
    st.lv = <Lvl*>PyMem_Malloc(st.caplv * sizeof(Lvl))
    st.capgr = 4
    st.gr = <Grp*>PyMem_Malloc(st.capgr * sizeof(Grp))
    st.caparena = 256
    st.arena = <char*>PyMem_Malloc(st.caparena)
    if st.lv == NULL or st.gr == NULL or st.arena == NULL:
        raise MemoryError()
    _stage_reset(st)
    return 0


cdef void _stage_free(Stage* st) noexcept:
    PyMem_Free(st.lv)
    PyMem_Free(st.gr)
    PyMem_Free(st.arena)
    st.lv = NULL
    st.gr = NULL
    st.arena = NULL


cdef inline void _stage_reset(Stage* st) noexcept nogil:
    """Empty the stage for the next frame (capacity is kept)."""
    st.nlv = 0
    st.ngr = 0
    st.narena = 0
    st.channel = CHAN_NONE
    st.chan_seen = False


cdef inline bint _stage_outsized(const Stage* st) noexcept nogil:
    return st.caplv > STAGE_KEEP or st.caparena > ARENA_KEEP or st.capgr > STAGE_KEEP


cdef void _stage_shrink(Stage* st) noexcept:
    """Give memory back after an outsized frame: staging returns to a moderate size.

    Invariant: called between frames only (nothing staged is read afterwards).
    """
    cdef Lvl* lv
    cdef Grp* g
    cdef char* a
    st.nlv = 0
    st.ngr = 0
    st.narena = 0
    if st.caplv > STAGE_KEEP:
        lv = <Lvl*>PyMem_Malloc(STAGE_KEEP * sizeof(Lvl))
        if lv != NULL:
            PyMem_Free(st.lv)
            st.lv = lv
            st.caplv = STAGE_KEEP
    if st.capgr > STAGE_KEEP:
        g = <Grp*>PyMem_Malloc(STAGE_KEEP * sizeof(Grp))
        if g != NULL:
            PyMem_Free(st.gr)
            st.gr = g
            st.capgr = STAGE_KEEP
    if st.caparena > ARENA_KEEP:
        a = <char*>PyMem_Malloc(ARENA_KEEP)
        if a != NULL:
            PyMem_Free(st.arena)
            st.arena = a
            st.caparena = ARENA_KEEP


cdef Lvl* _stage_level(Stage* st) except NULL:
    """A new staged level (or level3 order), uninitialised but for what the caller sets."""
    cdef Lvl* lv
    if st.nlv == st.caplv:
        lv = <Lvl*>PyMem_Realloc(st.lv, 2 * st.caplv * sizeof(Lvl))
        if lv == NULL:
            raise MemoryError()
        st.lv = lv
        st.caplv *= 2
    st.nlv += 1
    return &st.lv[st.nlv - 1]


cdef Grp* _stage_group(Stage* st) except NULL:
    """A new group (one book message), zeroed, starting at the next staged level."""
    cdef Grp* g
    if st.ngr == st.capgr:
        g = <Grp*>PyMem_Realloc(st.gr, 2 * st.capgr * sizeof(Grp))
        if g == NULL:
            raise MemoryError()
        st.gr = g
        st.capgr *= 2
    g = &st.gr[st.ngr]
    st.ngr += 1
    memset(g, 0, sizeof(Grp))
    g.first = st.nlv
    g.checksum = -1
    return g


cdef int32_t _stash(Stage* st, const char* p, Py_ssize_t n) except -1:
    """Copy bytes into the per-frame arena; return their offset."""
    cdef char* a
    cdef int32_t off = st.narena
    while st.narena + n > st.caparena:
        a = <char*>PyMem_Realloc(st.arena, 2 * st.caparena)
        if a == NULL:
            raise MemoryError()
        st.arena = a
        st.caparena *= 2
    memcpy(st.arena + off, p, n)
    st.narena += <int32_t>n
    return off


cdef int32_t _stash_string(Stage* st, Scan* sc, const uint8_t* s, const uint8_t* e,
                           bint esc) except -1:
    """Stash a string body (decoded when it holds escapes); return its decoded length."""
    cdef Py_ssize_t n
    cdef char* tmp
    if not esc:
        _stash(st, <const char*>s, e - s)
        return <int32_t>(e - s)
    tmp = <char*>PyMem_Malloc((e - s) + 4)
    if tmp == NULL:
        raise MemoryError()
    try:
        n = _unescape(s, e - s, tmp, (e - s) + 4)
        if n < 0:
            raise DecodeError(_describe(sc, s, "invalid string escape"))
        _stash(st, tmp, n)
    finally:
        PyMem_Free(tmp)
    return <int32_t>n


cdef void _supersede_from(Stage* st, int32_t first, uint8_t side) noexcept:
    """Mark the levels of ``side`` staged since ``first`` as superseded: a repeated
    'bids'/'asks' key, where the last one wins, as in any JSON object decoder."""
    cdef int32_t i
    for i in range(first, st.nlv):
        if st.lv[i].side == side:
            st.lv[i].side = SIDE_DEAD


cdef list _stage_symbols(const Stage* st):
    """The symbols of the groups staged so far (the error path: may be slow)."""
    cdef int32_t i
    cdef const Grp* g
    cdef list out = []
    for i in range(st.ngr):
        g = &st.gr[i]
        if g.has_symbol and g.sym_off + g.sym_len <= st.narena:
            key = (st.arena + g.sym_off)[:g.sym_len].decode("utf-8", "replace")
            key = key.partition("|")[2] if g.name_len else key
            if key not in out:
                out.append(key)
    return out
