# The byte scanner: a JSON cursor over one frame. Every function takes the Scan context and a
# position, and returns the position after what it consumed, or NULL after recording why in
# the context. It validates whole values (strings, numbers, nesting) but builds no object;
# the grammars decide what a value means.

cdef uint8_t STR_PLAIN[256]     # 1 for bytes a JSON string scan can pass over without a look


cdef inline const uint8_t* _fail(Scan* sc, const uint8_t* at, const char* why) noexcept nogil:
    if sc.err == NULL:
        sc.err = why
        sc.at = at
    return NULL


cdef inline bint _at(const Scan* sc, const uint8_t* p, uint8_t c) noexcept nogil:
    """Whether the byte at ``p`` exists and is ``c``: the one guard a single-byte test needs."""
    return p < sc.end and p[0] == c


cdef inline bint _lit(const Scan* sc, const uint8_t* p, const char* lit,
                      Py_ssize_t n) noexcept nogil:
    """Whether the ``n`` bytes at ``p`` exist and spell ``lit`` (checked where it is used)."""
    return sc.end - p >= n and memcmp(p, lit, n) == 0


cdef inline const uint8_t* _ws(const uint8_t* p, const uint8_t* end) noexcept nogil:
    while p < end and (p[0] == 32 or p[0] == 10 or p[0] == 13 or p[0] == 9):
        p += 1
    return p


cdef inline bint _is_digit(uint8_t c) noexcept nogil:
    return 48 <= c <= 57


cdef inline uint64_t _load64(const uint8_t* p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline uint64_t _lanes_value(uint64_t d) noexcept nogil:
    """The value of 8 digit values, one per byte (first digit in the lowest byte), combining
    lanes pairwise."""
    d = (d * 10 + (d >> 8)) & 0x00FF00FF00FF00FFULL         # 16-bit lanes: 2-digit values
    d = (d * 100 + (d >> 16)) & 0x0000FFFF0000FFFFULL       # 32-bit lanes: 4-digit values
    return (d * 10000 + (d >> 32)) & 0xFFFFFFFFULL


cdef inline int _digit_run(uint64_t v, uint64_t* val) noexcept nogil:
    """How many of the 8 bytes of ``v`` (little-endian load) are ASCII digits before the first
    byte that is not (0..8), and in ``val`` their value.

    Bytes after the first non-digit may be garbled by carries and borrows between lanes; they
    are never counted, so only the leading digits are read exactly.
    """
    cdef uint64_t bad = (((v & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL)
                         | (((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL)
                            ^ 0x3030303030303030ULL))
    cdef int k = 8 if bad == 0 else _ctz64(bad) >> 3
    if k == 0:
        val[0] = 0
        return 0
    # the k digits move to the top lanes: the lanes below become leading zeros
    val[0] = _lanes_value((v - 0x3030303030303030ULL) << (64 - 8 * k))
    return k


cdef inline uint64_t _plain8(uint64_t v) noexcept nogil:
    """Nonzero unless all 8 bytes of ``v`` are plain string bytes (STR_PLAIN); its lowest set
    bit lies in the first byte that is not."""
    cdef uint64_t q = v ^ 0x2222222222222222ULL, b = v ^ 0x5C5C5C5C5C5C5C5CULL
    return (v | ((v - 0x2020202020202020ULL) & ~v)
            | ((q - 0x0101010101010101ULL) & ~q)
            | ((b - 0x0101010101010101ULL) & ~b)) & 0x8080808080808080ULL


cdef extern from *:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    /* index (0..15) of the first byte of p[0..16) that is a quote, a backslash, a control
       byte or a non-ASCII byte; 16 if none. One signed compare finds both < 0x20 and >= 0x80. */
    static inline int kb_plain16(const unsigned char* p) {
        __m128i v = _mm_loadu_si128((const __m128i*)p);
        __m128i bad = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(0x22)),
                         _mm_cmpeq_epi8(v, _mm_set1_epi8(0x5C))),
            _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
        int m = _mm_movemask_epi8(bad);
        return m ? __builtin_ctz((unsigned)m) : 16;
    }
    #define KB_PLAIN16 1
    #else
    /* the same answer byte by byte; _plain_run does not take this path (KB_PLAIN16 is 0) */
    static inline int kb_plain16(const unsigned char* p) {
        int i;
        for (i = 0; i < 16; i++)
            if (p[i] < 0x20 || p[i] >= 0x80 || p[i] == 0x22 || p[i] == 0x5C) return i;
        return 16;
    }
    #define KB_PLAIN16 0
    #endif
    """
    bint KB_PLAIN16    # compile-time constant: whether the 16-byte step below exists
    int _plain16 "kb_plain16"(const uint8_t* p) nogil


cdef inline const uint8_t* _plain_run(const uint8_t* p, const uint8_t* end) noexcept nogil:
    """The first position from ``p`` on whose byte is not a plain string byte (or ``end``).

    16 bytes a step where the target has SSE2 (every x86-64), then 8 a step (SWAR), then one.
    """
    cdef uint64_t bad
    cdef int k
    if KB_PLAIN16:
        while end - p >= 16:
            k = _plain16(p)
            if k < 16:
                return p + k
            p += 16
    while end - p >= 8:
        bad = _plain8(_load64(p))
        if bad != 0:
            return p + (_ctz64(bad) >> 3)
        p += 8
    while p < end and STR_PLAIN[p[0]]:
        p += 1
    return p


cdef const uint8_t* _scan_string(Scan* sc, const uint8_t* p, bint* esc) noexcept nogil:
    """``p`` is at the opening quote; validate escapes, control characters and UTF-8."""
    cdef const uint8_t* end = sc.end
    cdef uint8_t c, c1
    cdef int i, need
    p += 1
    while p < end:
        p = _plain_run(p, end)
        if p >= end:
            break
        c = p[0]
        if STR_PLAIN[c]:
            p += 1
            continue
        if c == 34:
            return p + 1
        if c == 92:
            esc[0] = True
            if p + 1 >= end:
                break
            c = p[1]
            if c == 117:  # \uXXXX
                if p + 6 > end:
                    break
                for i in range(2, 6):
                    c1 = p[i]
                    if not (_is_digit(c1) or 97 <= (c1 | 32) <= 102):
                        return _fail(sc, p, "invalid \\u escape")
                p += 6
            elif c in b'"\\/bfnrt':
                p += 2
            else:
                return _fail(sc, p, "invalid escape")
        elif c < 0x20:
            return _fail(sc, p, "control character in string")
        elif c < 0x80:
            p += 1
        else:
            if c < 0xC2:
                return _fail(sc, p, "invalid UTF-8")
            elif c < 0xE0:
                need = 1
            elif c < 0xF0:
                need = 2
            elif c < 0xF5:
                need = 3
            else:
                return _fail(sc, p, "invalid UTF-8")
            if p + need >= end:
                break
            c1 = p[1]
            if ((c1 & 0xC0) != 0x80
                    or (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 >= 0xA0)
                    or (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 >= 0x90)):
                return _fail(sc, p, "invalid UTF-8")
            for i in range(2, need + 1):
                if (p[i] & 0xC0) != 0x80:
                    return _fail(sc, p, "invalid UTF-8")
            p += need + 1
    return _fail(sc, end, "truncated string")


cdef inline int _hex(uint8_t c) noexcept nogil:
    if c <= 57:
        return c - 48
    return (c | 32) - 87


cdef Py_ssize_t _unescape(const uint8_t* s, Py_ssize_t n, char* out, Py_ssize_t cap) noexcept nogil:
    """Decode a validated JSON string body into UTF-8; -1 if it does not fit or is invalid."""
    cdef Py_ssize_t i = 0, o = 0
    cdef uint32_t cp, lo
    cdef uint8_t c
    while i < n:
        c = s[i]
        if c != 92:
            if o >= cap:
                return -1
            out[o] = <char>c
            o += 1
            i += 1
            continue
        c = s[i + 1]
        i += 2
        if c == 117:
            cp = (_hex(s[i]) << 12) | (_hex(s[i + 1]) << 8) | (_hex(s[i + 2]) << 4) | _hex(s[i + 3])
            i += 4
            if 0xD800 <= cp < 0xDC00:
                if i + 6 > n or s[i] != 92 or s[i + 1] != 117:
                    return -1
                lo = ((_hex(s[i + 2]) << 12) | (_hex(s[i + 3]) << 8)
                      | (_hex(s[i + 4]) << 4) | _hex(s[i + 5]))
                if not (0xDC00 <= lo < 0xE000):
                    return -1
                i += 6
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
            elif 0xDC00 <= cp < 0xE000:
                return -1
            if o + 4 > cap:
                return -1
            if cp < 0x80:
                out[o] = <char>cp
                o += 1
            elif cp < 0x800:
                out[o] = <char>(0xC0 | (cp >> 6))
                out[o + 1] = <char>(0x80 | (cp & 0x3F))
                o += 2
            elif cp < 0x10000:
                out[o] = <char>(0xE0 | (cp >> 12))
                out[o + 1] = <char>(0x80 | ((cp >> 6) & 0x3F))
                out[o + 2] = <char>(0x80 | (cp & 0x3F))
                o += 3
            else:
                out[o] = <char>(0xF0 | (cp >> 18))
                out[o + 1] = <char>(0x80 | ((cp >> 12) & 0x3F))
                out[o + 2] = <char>(0x80 | ((cp >> 6) & 0x3F))
                out[o + 3] = <char>(0x80 | (cp & 0x3F))
                o += 4
            continue
        if o >= cap:
            return -1
        if c == 98:
            out[o] = 8
        elif c == 102:
            out[o] = 12
        elif c == 110:
            out[o] = 10
        elif c == 114:
            out[o] = 13
        elif c == 116:
            out[o] = 9
        else:
            out[o] = <char>c
        o += 1
    return o


cdef struct Str:
    const char* p
    Py_ssize_t n      # -1: could not be decoded into the scratch buffer


cdef inline Str _view(const uint8_t* s, const uint8_t* e, bint esc, char* buf,
                      Py_ssize_t cap) noexcept nogil:
    """A string body as raw bytes; decoded into ``buf`` only when it holds escapes."""
    cdef Str r
    if not esc:
        r.p = <const char*>s
        r.n = e - s
    else:
        r.p = buf
        r.n = _unescape(s, e - s, buf, cap)
    return r


cdef inline bint _eq(Str s, const char* lit, Py_ssize_t n) noexcept nogil:
    return s.n == n and memcmp(s.p, lit, n) == 0


cdef inline const uint8_t* _digits(const uint8_t* p, const uint8_t* end,
                                   uint64_t* m) noexcept nogil:
    """Consume a run of ASCII digits, accumulating them into ``m`` (modulo 2**64: a run that
    overflows is re-read by the caller); return the position after the run."""
    cdef uint64_t v
    cdef int k
    while end - p >= 8:
        k = _digit_run(_load64(p), &v)
        m[0] = m[0] * POW10_64[k] + v
        p += k
        if k < 8:
            return p
    while p < end and _is_digit(p[0]):
        m[0] = m[0] * 10 + (p[0] - 48)
        p += 1
    return p


cdef const uint8_t* _scan_number(Scan* sc, const uint8_t* p, Num* num) noexcept nogil:
    """Parse a JSON number (RFC 8259 grammar) into mantissa and exponent, without rounding.

    Up to 19 digits accumulate in a 64-bit register; longer numbers are re-read by
    :func:`_scan_number_wide`.
    """
    cdef const uint8_t* end = sc.end
    cdef const uint8_t* start = p
    cdef const uint8_t* fs
    cdef uint64_t m = 0
    cdef int32_t nd = 0, frac = 0, e = 0
    cdef bint eneg = False
    num.neg = 0
    if p < end and p[0] == 45:
        num.neg = 1
        p += 1
    if p >= end or not _is_digit(p[0]):
        return _fail(sc, p, "expected a number")
    if p[0] == 48:
        p += 1
        if p < end and _is_digit(p[0]):
            return _fail(sc, p, "leading zero in number")
    else:
        p = _digits(p, end, &m)
        nd = <int32_t>(p - start) - num.neg
    if p < end and p[0] == 46:
        p += 1
        fs = p
        p = _digits(p, end, &m)
        if p == fs:
            return _fail(sc, p, "expected a digit after '.'")
        frac = <int32_t>(p - fs)
        nd += frac
    if p < end and (p[0] == 101 or p[0] == 69):
        p += 1
        if p < end and (p[0] == 43 or p[0] == 45):
            eneg = p[0] == 45
            p += 1
        if p >= end or not _is_digit(p[0]):
            return _fail(sc, p, "expected a digit in the exponent")
        while p < end and _is_digit(p[0]):
            if e < 1000000:
                e = e * 10 + (p[0] - 48)
            p += 1
    if nd > 19:
        return _scan_number_wide(sc, start, p, num)
    num.mant = m
    num.big = 0
    num.frac = frac
    num.exp = (-e if eneg else e) - frac
    num.off = <int32_t>(start - sc.base)
    num.len = <int32_t>(p - start)
    return p


cdef const uint8_t* _scan_number_wide(Scan* sc, const uint8_t* p, const uint8_t* stop,
                                      Num* num) noexcept nogil:
    """Re-read an already validated long number, keeping up to 38 significant digits."""
    cdef const uint8_t* start = p
    cdef Acc a
    cdef int32_t frac = 0, e = 0
    cdef bint eneg = False
    a.mant = 0
    a.nsig = 0
    a.pending = 0
    a.big = False
    if p[0] == 45:
        p += 1
    while p < stop and _is_digit(p[0]):
        _acc_digit(&a, p[0] - 48)
        p += 1
    if p < stop and p[0] == 46:
        p += 1
        while p < stop and _is_digit(p[0]):
            _acc_digit(&a, p[0] - 48)
            frac += 1
            p += 1
    if p < stop:
        p += 1
        if p[0] == 43 or p[0] == 45:
            eneg = p[0] == 45
            p += 1
        while p < stop:
            if e < 1000000:
                e = e * 10 + (p[0] - 48)
            p += 1
    num.mant = a.mant
    num.big = a.big
    num.frac = frac
    num.exp = (-e if eneg else e) - frac + a.pending
    num.off = <int32_t>(start - sc.base)
    num.len = <int32_t>(stop - start)
    return stop


cdef const uint8_t* _scan_num_value(Scan* sc, const uint8_t* p, Num* num) noexcept nogil:
    """A number written either as a JSON number or as a JSON string holding one."""
    if p < sc.end and p[0] == 34:
        p = _scan_number(sc, p + 1, num)
        if p == NULL:
            return NULL
        if p >= sc.end or p[0] != 34:
            return _fail(sc, p, "expected a number inside the string")
        return p + 1
    return _scan_number(sc, p, num)


cdef const uint8_t* _skip_value(Scan* sc, const uint8_t* p, int depth) noexcept nogil:
    """Validate and skip any JSON value."""
    cdef const uint8_t* end = sc.end
    cdef bint esc = False
    cdef uint8_t c
    cdef Num num
    if depth > MAX_NESTING:
        return _fail(sc, p, "nesting too deep")
    if p >= end:
        return _fail(sc, p, "truncated frame")
    c = p[0]
    if c == 34:
        return _scan_string(sc, p, &esc)
    if c == 123 or c == 91:
        p = _ws(p + 1, end)
        if p < end and p[0] == (125 if c == 123 else 93):
            return p + 1
        while True:
            if c == 123:
                if p >= end or p[0] != 34:
                    return _fail(sc, p, "expected a key")
                p = _scan_string(sc, p, &esc)
                if p == NULL:
                    return NULL
                p = _ws(p, end)
                if p >= end or p[0] != 58:
                    return _fail(sc, p, "expected ':'")
                p = _ws(p + 1, end)
            p = _skip_value(sc, p, depth + 1)
            if p == NULL:
                return NULL
            p = _ws(p, end)
            if p >= end:
                return _fail(sc, p, "truncated frame")
            if p[0] == 44:
                p = _ws(p + 1, end)
                continue
            if p[0] == (125 if c == 123 else 93):
                return p + 1
            return _fail(sc, p, "expected ',' or a closing bracket")
    if c == 116:
        if _lit(sc, p, b"true", 4):
            return p + 4
    elif c == 102:
        if _lit(sc, p, b"false", 5):
            return p + 5
    elif c == 110:
        if _lit(sc, p, b"null", 4):
            return p + 4
    elif c == 45 or _is_digit(c):
        return _scan_number(sc, p, &num)
    return _fail(sc, p, "unexpected character")


cdef inline const uint8_t* _colon(Scan* sc, const uint8_t* p) noexcept nogil:
    p = _ws(p, sc.end)
    if p >= sc.end or p[0] != 58:
        return _fail(sc, p, "expected ':'")
    return _ws(p + 1, sc.end)


cdef inline int _next(Scan* sc, const uint8_t** pp, uint8_t close) noexcept nogil:
    """After a member/element: 1 if another follows, 0 at the closing bracket, -1 on error."""
    cdef const uint8_t* p = _ws(pp[0], sc.end)
    if p < sc.end:
        if p[0] == 44:
            pp[0] = _ws(p + 1, sc.end)
            return 1
        if p[0] == close:
            pp[0] = p + 1
            return 0
        _fail(sc, p, "expected ',' or a closing bracket")
        return -1
    _fail(sc, p, "truncated frame")
    return -1


# Key and value names are packed as length-prefixed strings: b"\x04bids\x04asks".
cdef const char* V2_TOP_KEYS = b"\x07channel\x04type\x04data"
# "timestamp" is named only so that its key is matched without a scan (its value is skipped)
cdef const char* V2_ENTRY_KEYS = b"\x04bids\x04asks\x06symbol\x08checksum\x09timestamp"
cdef const char* V2_LEVEL_KEYS = b"\x05price\x03qty"
cdef const char* V1_PAYLOAD_KEYS = b"\x01a\x01b\x02as\x02bs\x01c"
cdef const char* BOOK_NAME = b"\x04book\x06level3"
cdef const char* V2_ORDER_KEYS = b"\x05event\x08order_id\x0blimit_price\x09order_qty"
cdef const char* EVENT_NAMES = b"\x03add\x06modify\x06delete"
cdef const char* TYPE_NAMES = b"\x08snapshot\x06update"


cdef inline bint _same(const uint8_t* a, const char* b, int n) noexcept nogil:
    """Byte equality for short names (a call to memcmp costs more than the loop)."""
    cdef int k
    for k in range(n):
        if a[k] != <uint8_t>b[k]:
            return False
    return True


cdef const uint8_t* _match_str(Scan* sc, const uint8_t* p, const char* names, int* which,
                               char* scratch) noexcept nogil:
    """Scan a string and say which of ``names`` it is (1-based), or 0 for none.

    Raw bytes equal to a name are matched without scanning (Kraken's usual layout); a string
    with escapes is decoded and compared, so every spelling of a name is recognised.
    """
    cdef const uint8_t* end = sc.end
    cdef const uint8_t* ks
    cdef const char* nm = names
    cdef int i = 1, n
    cdef bint esc = False
    cdef Str key
    if p >= end or p[0] != 34:
        return _fail(sc, p, "expected a string")
    while nm[0] != 0:
        n = nm[0]
        if (end - p > n + 1 and p[1] == <uint8_t>nm[1] and p[n + 1] == 34
                and _same(p + 2, nm + 2, n - 1)):
            which[0] = i
            return p + n + 2
        nm += n + 1
        i += 1
    which[0] = 0
    ks = p + 1
    p = _scan_string(sc, p, &esc)
    if p == NULL or not esc:
        return p
    key = _view(ks, p - 1, esc, scratch, 64)
    nm = names
    i = 1
    while nm[0] != 0:
        n = nm[0]
        if key.n == n and memcmp(key.p, nm + 1, n) == 0:
            which[0] = i
            break
        nm += n + 1
        i += 1
    return p


cdef inline const uint8_t* _key(Scan* sc, const uint8_t* p, const char* names, int* which,
                                char* scratch) noexcept nogil:
    """A member's key (see :func:`_match_str`), then the colon; returns the value's start."""
    p = _match_str(sc, p, names, which, scratch)
    if p == NULL:
        return NULL
    return _colon(sc, p)

cdef int _checksum_value(const Num* n, int64_t* out) noexcept nogil:
    """A checksum field as a 32-bit unsigned integer, or -1."""
    cdef u128 v
    if _scale(n, 0, 10, &v) != NUM_OK or v > <u128>(<uint32_t>0xFFFFFFFF):
        return -1
    out[0] = <int64_t>v
    return 0


cdef str _describe(Scan* sc, const uint8_t* at, const char* why):
    """The message of a DecodeError: the reason, the byte offset and an excerpt around it."""
    cdef Py_ssize_t off, lo, hi
    reason = (<bytes>why).decode() if why != NULL else "malformed frame"
    if at == NULL:
        return reason
    off = at - sc.base
    lo = max(0, off - 24)
    hi = min(sc.end - sc.base, off + 24)
    excerpt = (<const char*>sc.base)[lo:hi].decode("utf-8", "replace")
    return f"{reason} at byte {off}: ...{excerpt}..."


cdef void _init_scan_tables() noexcept:
    cdef int i
    for i in range(256):
        STR_PLAIN[i] = 1 if (0x20 <= i < 0x80 and i != 34 and i != 92) else 0
