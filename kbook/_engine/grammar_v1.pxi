# The v1 grammar: Kraken's array messages ([channelID, payload..., "book-N", "PAIR"]), whose
# payload objects hold "as"/"bs" (snapshot) or "a"/"b" (update) level arrays and a checksum "c".
# The channel name and pair make the book's key; the frame decodes into the stage and never
# touches a book.


cdef int _parse_v1(Stage* st, Scan* sc, const uint8_t* p) except -1:
    cdef const uint8_t* end = sc.end
    cdef const uint8_t* q
    cdef const uint8_t* s_start[2]
    cdef const uint8_t* s_end[2]
    cdef bint s_esc[2]
    cdef int32_t s_idx[2]
    cdef bint esc, payload_ok = True, array_payload = False
    cdef const char* payload_err = NULL
    cdef const uint8_t* payload_at = NULL
    cdef int32_t idx = 0, last = -1, depth = 0
    cdef int more, kind = MSG_UNKNOWN, k
    cdef int64_t checksum = -1
    cdef Grp* g
    cdef Str name
    s_idx[0] = s_idx[1] = -1
    s_start[0] = s_start[1] = s_end[0] = s_end[1] = NULL
    s_esc[0] = s_esc[1] = False
    g = _stage_group(st)
    p = _ws(p + 1, end)
    if p < end and p[0] == 93:
        p += 1
    else:
        while True:
            if idx == 0:
                p = _skip_value(sc, p, 1)
            elif p < end and p[0] == 123:
                q = _parse_v1_payload(st, sc, p, &kind, &checksum)
                if q == NULL:
                    if payload_ok:
                        payload_ok = False
                        payload_err = sc.err
                        payload_at = sc.at
                    sc.err = NULL
                    p = _skip_value(sc, p, 1)
                else:
                    p = q
            elif p < end and p[0] == 34:
                s_start[0] = s_start[1]
                s_end[0] = s_end[1]
                s_esc[0] = s_esc[1]
                s_idx[0] = s_idx[1]
                esc = False
                q = _scan_string(sc, p, &esc)
                s_start[1] = p + 1
                s_end[1] = q - 1 if q != NULL else NULL
                s_esc[1] = esc
                s_idx[1] = idx
                p = q
            else:
                if p < end and p[0] == 91:
                    array_payload = True
                p = _skip_value(sc, p, 1)
            if p == NULL:
                break
            last = idx
            idx += 1
            more = _next(sc, &p, 93)
            if more < 0:
                p = NULL
                break
            if more == 0:
                break
    if p != NULL:
        p = _ws(p, end)
        if p != end:
            _fail(sc, p, "data after the end of the message")
            p = NULL
    if p == NULL:
        raise DecodeError(_describe(sc, sc.at, sc.err))
    if last < 3 or s_idx[1] != last or s_idx[0] != last - 1:
        return FRAME_OTHER
    name = _view(s_start[0], s_end[0], s_esc[0], st.scratch, 64)
    if name.n < 6 or memcmp(name.p, b"book-", 5) != 0:
        return FRAME_OTHER
    st.channel = CHAN_BOOK
    g = &st.gr[0]
    g.name_len = _stash_string(st, sc, s_start[0], s_end[0], s_esc[0])
    _stash(st, "|", 1)
    g.sym_off = 0
    g.sym_len = g.name_len + 1 + _stash_string(st, sc, s_start[1], s_end[1], s_esc[1])
    g.has_symbol = 1
    for k in range(5, name.n):
        if not (48 <= <uint8_t>name.p[k] <= 57) or depth > 100000:
            raise DecodeError(f"v1 book channel with an invalid depth: {name.p[:name.n]!r}")
        depth = depth * 10 + (name.p[k] - 48)
    if not _depth_ok(depth):
        raise DecodeError(f"v1 book channel with an unsupported depth: {depth}")
    if array_payload or not payload_ok:
        if payload_err == NULL:
            payload_err = "book payload must be an object"
        raise DecodeError(_describe(sc, payload_at, payload_err))
    if kind == MSG_UNKNOWN:
        kind = MSG_UPDATE
    elif kind == MSG_MIXED:
        raise DecodeError(
            "v1 book message mixes snapshot ('as'/'bs') and update ('a'/'b') keys")
    # the key "<channel>|<pair>" was stashed above; the pair alone is the symbol
    g = &st.gr[0]
    g.kind = <uint8_t>kind
    g.checksum = checksum
    g.depth = depth
    g.count = st.nlv - g.first
    return FRAME_BOOK

cdef const uint8_t* _parse_v1_payload(Stage* st, Scan* sc, const uint8_t* p, int* kind,
                                      int64_t* checksum) except? NULL:
    cdef const uint8_t* end = sc.end
    cdef Num num
    cdef int more, this, which
    cdef int32_t first = st.nlv   # this payload's first staged level
    cdef uint8_t seen = 0, bit
    cdef uint8_t side
    p = _ws(p + 1, end)
    if p < end and p[0] == 125:
        return p + 1
    while True:
        p = _key(sc, p, V1_PAYLOAD_KEYS, &which, st.scratch)
        if p == NULL:
            return NULL
        if 1 <= which <= 4:       # a, b (update) / as, bs (snapshot)
            this = MSG_UPDATE if which <= 2 else MSG_SNAPSHOT
            if kind[0] == MSG_UNKNOWN:
                kind[0] = this
            elif kind[0] != this:
                kind[0] = MSG_MIXED
            side = SIDE_ASK if which % 2 == 1 else SIDE_BID
            bit = 1 << side
            if seen & bit:
                # a repeated key inside one payload object: the last one wins, as in JSON
                # (Kraken's separate ask and bid objects of one frame both apply)
                _supersede_from(st, first, side)
            seen |= bit
            p = _parse_v1_levels(st, sc, p, side)
        elif which == 5:
            p = _scan_num_value(sc, p, &num)
            if p == NULL:
                return NULL
            if _checksum_value(&num, checksum) < 0:
                return _fail(sc, sc.base + num.off, "checksum is not a 32-bit unsigned integer")
        else:
            p = _skip_value(sc, p, 2)
        if p == NULL:
            return NULL
        more = _next(sc, &p, 125)
        if more < 0:
            return NULL
        if more == 0:
            return p

cdef const uint8_t* _parse_v1_levels(Stage* st, Scan* sc, const uint8_t* p,
                                     uint8_t side) except? NULL:
    cdef const uint8_t* end = sc.end
    cdef const uint8_t* q
    cdef Lvl* lv
    cdef int more, field
    if p >= end or p[0] != 91:
        return _fail(sc, p, "book levels must be an array")
    p = _ws(p + 1, end)
    if p < end and p[0] == 93:
        return p + 1
    while True:
        if p >= end or p[0] != 91:
            return _fail(sc, p, "a price level must be an array")
        lv = _stage_level(st)
        lv.side = side
        # Kraken's own layout, byte for byte; anything else takes the general loop below
        q = _v1_level_fast(sc, p, lv)
        if q != NULL:
            p = q
        else:
            sc.err = NULL
            sc.at = NULL
            p = _ws(p + 1, end)
            field = 0
            if p < end and p[0] == 93:
                return _fail(sc, p, "price level without price and volume")
            while True:
                if field == 0:
                    p = _scan_num_value(sc, p, &lv.price)
                elif field == 1:
                    p = _scan_num_value(sc, p, &lv.qty)
                else:
                    p = _skip_value(sc, p, 4)   # timestamp, republish flag
                if p == NULL:
                    return NULL
                field += 1
                more = _next(sc, &p, 93)
                if more < 0:
                    return NULL
                if more == 0:
                    break
            if field < 2:
                return _fail(sc, p, "price level without volume")
        more = _next(sc, &p, 93)
        if more < 0:
            return NULL
        if more == 0:
            return p


cdef inline const uint8_t* _v1_level_fast(Scan* sc, const uint8_t* p, Lvl* lv) noexcept nogil:
    """``["price","volume","timestamp"]``, or with a fourth ``"r"`` (a republished level), exactly
    as Kraken writes a v1 level; NULL to use the general path."""
    if not _lit(sc, p, b'["', 2):
        return NULL
    p = _scan_number(sc, p + 2, &lv.price)
    if p == NULL or not _lit(sc, p, b'","', 3):
        return NULL
    p = _scan_number(sc, p + 3, &lv.qty)
    if p == NULL or not _lit(sc, p, b'","', 3):
        return NULL
    p = _plain_run(p + 3, sc.end)       # the timestamp: plain bytes up to its closing quote
    if not _at(sc, p, 34):
        return NULL
    p += 1
    if _at(sc, p, 93):
        return p + 1
    if _lit(sc, p, b',"r"]', 5):
        return p + 5
    return NULL
