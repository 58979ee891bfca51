# The v2 grammar: the JSON object envelope every v2 message has ({"channel", "type", "data"}),
# and the book channel's entries and price levels. It decodes into the stage (levels, groups,
# symbols in the arena) and never touches a book; the level3 entries' orders are parsed by the
# level3 grammar, the books are changed by the feed's commit.


cdef inline const uint8_t* _envelope_fast(const Scan* sc, const uint8_t* p, Channel* channel,
                                          MsgKind* mtype) noexcept nogil:
    """``"channel":"book"|"level3","type":"update"|"snapshot","data":`` exactly as Kraken
    writes a book message's first members, or NULL to read them with the general loop.
    Returns the start of the "data" value; ``p`` is just past the object's ``{``."""
    if not _lit(sc, p, b'"channel":"', 11):
        return NULL
    p += 11
    if _lit(sc, p, b'book","type":"', 14):
        channel[0] = CHAN_BOOK
        p += 14
    elif _lit(sc, p, b'level3","type":"', 16):
        channel[0] = CHAN_L3
        p += 16
    else:
        return NULL
    if _lit(sc, p, b'update","data":', 15):
        mtype[0] = MSG_UPDATE
        return p + 15
    if _lit(sc, p, b'snapshot","data":', 17):
        mtype[0] = MSG_SNAPSHOT
        return p + 17
    return NULL


cdef int _parse_v2(Stage* st, Scan* sc, const uint8_t* p) except -1:
    cdef const uint8_t* end = sc.end
    cdef const uint8_t* data_at = NULL
    cdef const uint8_t* q
    cdef bint parsed = False
    cdef Channel channel = CHAN_NONE
    cdef MsgKind mtype = MSG_UNKNOWN
    cdef int parsed_as = 0, more, which = 0, val
    cdef int32_t i
    p = _ws(p + 1, end)
    # Kraken's usual first members: the loop below starts at the "data" value, with what the
    # general path would have concluded from "channel" and "type"
    q = _envelope_fast(sc, p, &channel, &mtype)
    if q != NULL:
        st.chan_seen = True
        st.channel = channel
        p = _ws(q, end)
        which = 3
    if which == 0 and p < end and p[0] == 125:
        p = p + 1
    else:
        while True:
            if which == 0:
                p = _key(sc, p, V2_TOP_KEYS, &which, st.scratch)
                if p == NULL:
                    break
            if which == 1 or which == 2:      # channel, type
                if p < end and p[0] == 34:
                    p = _match_str(sc, p, BOOK_NAME if which == 1 else TYPE_NAMES,
                                   &val, st.scratch + 64)
                else:
                    val = 0
                    p = _skip_value(sc, p, 1)
                if which == 1:
                    st.chan_seen = True
                    channel = CHAN_BOOK if val == 1 else (CHAN_L3 if val == 2 else CHAN_OTHER)
                    st.channel = channel
                else:
                    mtype = (MSG_SNAPSHOT if val == 1
                             else MSG_UPDATE if val == 2 else MSG_UNKNOWN)
            elif which == 3:                  # data
                data_at = p
                if channel == CHAN_BOOK or channel == CHAN_L3:
                    q = _parse_book_data(st, sc, p, channel == CHAN_L3)
                    if q != NULL:
                        parsed = True
                        parsed_as = channel
                    else:
                        # a later "channel" may change the grammar: check it is JSON now,
                        # decide (and report) once the whole object has been read
                        sc.err = NULL
                        sc.at = NULL
                        q = _skip_value(sc, p, 1)
                        parsed = False
                    p = q
                else:
                    p = _skip_value(sc, p, 1)
                    parsed = False
            else:
                p = _skip_value(sc, p, 1)
            which = 0
            if p == NULL:
                break
            more = _next(sc, &p, 125)
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
    if channel != CHAN_BOOK and channel != CHAN_L3:
        return FRAME_OTHER
    if data_at == NULL:
        raise DecodeError("book message without 'data'")
    if not parsed or parsed_as != channel:
        # "data" came before "channel", or "channel" was repeated: the last one wins
        sc.err = NULL
        if _parse_book_data(st, sc, data_at, channel == CHAN_L3) == NULL:
            raise DecodeError(_describe(sc, sc.at, sc.err))
    if mtype == MSG_UNKNOWN:
        raise DecodeError("book message whose 'type' is neither 'snapshot' nor 'update'")
    for i in range(st.ngr):
        st.gr[i].kind = <uint8_t>mtype
    if channel == CHAN_L3 and mtype == MSG_UPDATE:
        for i in range(st.nlv):
            if st.lv[i].event == EV_NONE and st.lv[i].side != SIDE_DEAD:
                raise DecodeError("level3 update order without 'event'")
    return FRAME_BOOK

cdef const uint8_t* _parse_book_data(Stage* st, Scan* sc, const uint8_t* p,
                                     bint l3) except? NULL:
    cdef const uint8_t* end = sc.end
    cdef int more
    st.nlv = 0
    st.ngr = 0
    st.narena = 0
    if p >= end or p[0] != 91:
        return _fail(sc, p, "book 'data' must be an array")
    p = _ws(p + 1, end)
    if p < end and p[0] == 93:
        return p + 1
    while True:
        p = _parse_book_entry(st, sc, p, l3)
        if p == NULL:
            return NULL
        more = _next(sc, &p, 93)
        if more < 0:
            return NULL
        if more == 0:
            return p

cdef const uint8_t* _parse_book_entry(Stage* st, Scan* sc, const uint8_t* p,
                                      bint l3) except? NULL:
    cdef const uint8_t* end = sc.end
    cdef const uint8_t* ks
    cdef bint esc
    cdef Grp* g
    cdef Num num
    cdef int more, which
    cdef int32_t gi
    if p >= end or p[0] != 123:
        return _fail(sc, p, "book entry must be an object")
    g = _stage_group(st)
    g.l3 = l3
    gi = st.ngr - 1
    p = _ws(p + 1, end)
    if p < end and p[0] == 125:
        return _fail(sc, p, "book entry without 'symbol'")
    while True:
        p = _key(sc, p, V2_ENTRY_KEYS, &which, st.scratch)
        if p == NULL:
            return NULL
        if which == 1 or which == 2:
            if l3:
                p = _parse_l3_orders(st, sc, p, gi, SIDE_BID if which == 1 else SIDE_ASK)
            else:
                p = _parse_v2_levels(st, sc, p, gi, SIDE_BID if which == 1 else SIDE_ASK)
        elif which == 3:
            if p >= end or p[0] != 34:
                return _fail(sc, p, "'symbol' must be a string")
            ks = p + 1
            esc = False
            p = _scan_string(sc, p, &esc)
            if p == NULL:
                return NULL
            g = &st.gr[gi]
            g.sym_off = st.narena
            g.sym_len = _stash_string(st, sc, ks, p - 1, esc)
            g.has_symbol = 1
        elif which == 4:
            p = _scan_num_value(sc, p, &num)
            if p == NULL:
                return NULL
            if _checksum_value(&num, &st.gr[gi].checksum) < 0:
                return _fail(sc, sc.base + num.off, "checksum is not a 32-bit unsigned integer")
        else:
            p = _skip_value(sc, p, 2)
        if p == NULL:
            return NULL
        more = _next(sc, &p, 125)
        if more < 0:
            return NULL
        if more == 0:
            break
    g = &st.gr[gi]
    if not g.has_symbol:
        return _fail(sc, p, "book entry without 'symbol'")
    g.count = st.nlv - g.first
    return p

cdef const uint8_t* _parse_v2_levels(Stage* st, Scan* sc, const uint8_t* p, int32_t gi,
                                     uint8_t side) except? NULL:
    cdef const uint8_t* end = sc.end
    cdef const uint8_t* q
    cdef bint has_p, has_q
    cdef Lvl* lv
    cdef int more, mk, which
    cdef uint8_t bit = 1 << side
    if st.gr[gi].seen & bit:
        _supersede_from(st, st.gr[gi].first, side)
    st.gr[gi].seen |= bit
    if p >= end or p[0] != 91:
        return _fail(sc, p, "'bids'/'asks' must be an array")
    p = _ws(p + 1, end)
    if p < end and p[0] == 93:
        return p + 1
    while True:
        if p >= end or p[0] != 123:
            return _fail(sc, p, "a price level must be an object")
        lv = _stage_level(st)
        lv.side = side
        # Kraken's own layout, byte for byte; anything else takes the general loop below
        q = _level_fast(sc, p, lv)
        if q != NULL:
            p = q
        else:
            sc.err = NULL
            sc.at = NULL
            has_p = has_q = False
            p = _ws(p + 1, end)
            if p < end and p[0] == 125:
                return _fail(sc, p, "price level without 'price' and 'qty'")
            while True:
                p = _key(sc, p, V2_LEVEL_KEYS, &which, st.scratch)
                if p == NULL:
                    return NULL
                if which == 1:
                    p = _scan_num_value(sc, p, &lv.price)
                    has_p = True
                elif which == 2:
                    p = _scan_num_value(sc, p, &lv.qty)
                    has_q = True
                else:
                    p = _skip_value(sc, p, 4)
                if p == NULL:
                    return NULL
                mk = _next(sc, &p, 125)
                if mk < 0:
                    return NULL
                if mk == 0:
                    break
            if not (has_p and has_q):
                return _fail(sc, p, "price level without 'price' or 'qty'")
        more = _next(sc, &p, 93)
        if more < 0:
            return NULL
        if more == 0:
            return p


cdef inline const uint8_t* _level_fast(Scan* sc, const uint8_t* p, Lvl* lv) noexcept nogil:
    """``{"price":N,"qty":N}`` exactly as Kraken writes it, or NULL to use the general path."""
    if not _lit(sc, p, b'{"price":', 9):
        return NULL
    p = _scan_num_value(sc, p + 9, &lv.price)
    if p == NULL or not _lit(sc, p, b',"qty":', 7):
        return NULL
    p = _scan_num_value(sc, p + 7, &lv.qty)
    if p == NULL or not _at(sc, p, 125):
        return NULL
    return p + 1
