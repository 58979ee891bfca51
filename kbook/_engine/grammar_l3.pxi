# The level3 grammar: the orders of a v2 level3 entry ({"event", "order_id", "limit_price",
# "order_qty", "timestamp"}), staged as levels with an event and an order id in the arena. It
# does not apply anything: Level3Book does, from the stage, once the frame has been read whole.


cdef const uint8_t* _order_fast(Stage* st, Scan* sc, const uint8_t* p, Lvl* lv) except? NULL:
    """``{"event":"add","order_id":"..","limit_price":N,"order_qty":N,"timestamp":".."}``
    exactly as Kraken writes it (``event`` absent in snapshots), or NULL."""
    cdef const uint8_t* ids
    if not _lit(sc, p, b'{"', 2):
        return NULL
    p += 1
    if _lit(sc, p, b'"event":"', 9):
        p += 9
        if _lit(sc, p, b'add"', 4):
            lv.event = EV_ADD
            p += 4
        elif _lit(sc, p, b'modify"', 7):
            lv.event = EV_MODIFY
            p += 7
        elif _lit(sc, p, b'delete"', 7):
            lv.event = EV_DELETE
            p += 7
        else:
            return NULL
        if not _at(sc, p, 44):
            return NULL
        p += 1
    if not _lit(sc, p, b'"order_id":"', 12):
        return NULL
    p += 12
    ids = p
    p = _plain_run(p, sc.end)
    if not _at(sc, p, 34) or p == ids or p - ids > IDCAP:
        return NULL   # escapes, odd bytes or a bad length: the general path decides
    lv.id_off = st.narena
    lv.id_len = <int32_t>(p - ids)
    _stash(st, <const char*>ids, p - ids)
    # hashed here, where nothing waits on it, rather than on the apply's lookup path
    lv.id_hash = _id_hash(<const char*>ids, lv.id_len)
    p += 1
    # Kraken writes both as JSON numbers; a quoted one takes the general path
    if not _lit(sc, p, b',"limit_price":', 15):
        return NULL
    p = _scan_number(sc, p + 15, &lv.price)
    if p == NULL or not _lit(sc, p, b',"order_qty":', 13):
        return NULL
    p = _scan_number(sc, p + 13, &lv.qty)
    if p == NULL:
        return NULL
    if _lit(sc, p, b',"timestamp":"', 14):
        # plain bytes up to the closing quote; an escape, a control or a non-ASCII byte sends
        # the order to the general path, which checks escapes and UTF-8
        p = _plain_run(p + 14, sc.end)
        if not _at(sc, p, 34):
            return NULL
        p += 1
    if not _at(sc, p, 125):
        return NULL
    return p + 1


cdef const uint8_t* _parse_l3_orders(Stage* st, Scan* sc, const uint8_t* p, int32_t gi,
                                     uint8_t side) except? NULL:
    cdef const uint8_t* end = sc.end
    cdef const uint8_t* q
    cdef const uint8_t* ks
    cdef bint esc, has_id, has_p, has_q
    cdef Lvl* lv
    cdef int more, mk, which, ev
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
            return _fail(sc, p, "a level3 order must be an object")
        lv = _stage_level(st)
        lv.side = side
        lv.event = EV_NONE
        # Kraken's own layout, byte for byte; anything else takes the general loop below
        q = _order_fast(st, sc, p, lv)
        if q != NULL:
            p = q
            more = _next(sc, &p, 93)
            if more < 0:
                return NULL
            if more == 0:
                return p
            continue
        sc.err = NULL
        sc.at = NULL
        lv.event = EV_NONE
        has_id = has_p = has_q = False
        p = _ws(p + 1, end)
        if p < end and p[0] == 125:
            return _fail(sc, p, "level3 order without 'order_id'")
        while True:
            p = _key(sc, p, V2_ORDER_KEYS, &which, st.scratch)
            if p == NULL:
                return NULL
            if which == 1:
                if p >= end or p[0] != 34:
                    return _fail(sc, p, "'event' must be a string")
                p = _match_str(sc, p, EVENT_NAMES, &ev, st.scratch + 64)
                if p != NULL and ev == 0:
                    return _fail(sc, p, "unknown level3 event")
                lv.event = <uint8_t>ev
            elif which == 2:
                if p >= end or p[0] != 34:
                    return _fail(sc, p, "'order_id' must be a string")
                ks = p + 1
                esc = False
                p = _scan_string(sc, p, &esc)
                if p == NULL:
                    return NULL
                lv.id_off = st.narena
                lv.id_len = _stash_string(st, sc, ks, p - 1, esc)
                if not 0 < lv.id_len <= IDCAP:
                    return _fail(sc, ks, "order id empty or longer than 30 bytes")
                lv.id_hash = _id_hash(st.arena + lv.id_off, lv.id_len)
                has_id = True
            elif which == 3:
                p = _scan_num_value(sc, p, &lv.price)
                has_p = True
            elif which == 4:
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
        if not (has_id and has_p and has_q):
            return _fail(sc, p, "level3 order without 'order_id', 'limit_price' or 'order_qty'")
        more = _next(sc, &p, 93)
        if more < 0:
            return NULL
        if more == 0:
            return p
