# Exact numbers: scaling a decimal literal to integer ticks or lots, and writing integers back
# as decimal digits (the checksum token of a value is simply the digits of its scaled integer).
# No float or Decimal on this path. Parsing the literal itself is the scanner's job.

cdef extern from *:
    """
    static inline int kb_ctz64(unsigned long long v) { return __builtin_ctzll(v); }
    """
    int _ctz64 "kb_ctz64"(unsigned long long v) nogil    # v != 0


cdef char DIGITS2[200]          # "000102...99": two decimal digits per lookup
cdef u128 POW10[QTY_DIGITS + 1]
cdef uint64_t POW10_64[20]


cdef inline int _fmt_u64(uint64_t v, char* out) noexcept nogil:
    """Write ``v`` in decimal (no leading zeros) to ``out``; return the digit count."""
    cdef char tmp[20]
    cdef int i = 20
    cdef uint64_t q, r
    while v >= 100:
        q = v // 100
        r = v - q * 100
        v = q
        i -= 2
        tmp[i] = DIGITS2[2 * r]
        tmp[i + 1] = DIGITS2[2 * r + 1]
    if v >= 10:
        i -= 2
        tmp[i] = DIGITS2[2 * v]
        tmp[i + 1] = DIGITS2[2 * v + 1]
    else:
        i -= 1
        tmp[i] = <char>(48 + v)
    memcpy(out, &tmp[i], 20 - i)
    return 20 - i


cdef inline int _fmt_u128(u128 v, char* out) noexcept nogil:
    """Decimal digits of a value below 10**38 (the quantity range)."""
    cdef char tmp[20]
    cdef u128 hi
    cdef uint64_t lo
    cdef int n, k
    if (v >> 64) == 0:
        return _fmt_u64(<uint64_t>v, out)
    hi = v / POW10[19]
    lo = <uint64_t>(v - hi * POW10[19])
    n = _fmt_u64(<uint64_t>hi, out)
    k = _fmt_u64(lo, tmp)
    memset(out + n, 48, 19 - k)
    memcpy(out + n + 19 - k, tmp, k)
    return n + 19


cdef inline uint64_t _digit_lanes(uint64_t x) noexcept nogil:
    """The 8 decimal digits of ``x`` < 10**8, leading zeros included, as one digit value per
    byte with the first digit in the lowest byte (the order they have in memory); the lanes
    are split by halves with multiply-shift divisions that are exact in these ranges."""
    cdef uint64_t hi = x // 10000, v, t
    v = hi | ((x - hi * 10000) << 32)                       # two 4-digit lanes
    t = ((v * 5243) >> 19) & 0x0000007F0000007FULL          # each lane // 100
    v = t | ((v - t * 100) << 16)                           # four 2-digit lanes
    t = ((v * 103) >> 10) & 0x000F000F000F000FULL           # each lane // 10
    return t | ((v - t * 10) << 8)


cdef inline uint32_t _digits_crc(u128 v, int* n) noexcept nogil:
    """CRC register (started from zero) of the decimal digits of ``v`` < 10**38, without writing
    them to memory; their count in ``n``.

    The digits go through the register 8 at a time. The first word's leading zero digits
    become zero bytes, which leave a register at zero unchanged: the word then hashes as
    exactly the significant digits.
    """
    cdef uint64_t chunk[5]      # 8-digit chunks, least significant first
    cdef uint64_t w, x
    cdef u128 q
    cdef int i = 0, lead
    cdef uint32_t crc
    if (v >> 64) == 0:
        x = <uint64_t>v
        while x >= 100000000:
            chunk[i] = x % 100000000
            x //= 100000000
            i += 1
    else:
        while v >= <u128>100000000:
            q = v / 100000000
            chunk[i] = <uint64_t>(v - q * 100000000)
            v = q
            i += 1
        x = <uint64_t>v
    w = _digit_lanes(x)
    lead = 7 if w == 0 else _ctz64(w) >> 3      # a zero value keeps its one digit
    crc = _crc8(0, (w + 0x3030303030303030ULL) & (~0ULL << (8 * lead)))
    n[0] = 8 - lead + 8 * i
    while i > 0:
        i -= 1
        crc = _crc8(crc, _digit_lanes(chunk[i]) + 0x3030303030303030ULL)
    return crc


cdef object _u128_to_int(u128 v):
    return (<object>(<uint64_t>(v >> 64)) << 64) | <object>(<uint64_t>v)


cdef str _fixed_text(object scaled, int precision):
    """Exact decimal text of ``scaled * 10**-precision`` (an int)."""
    cdef str digits = str(scaled)
    if precision <= 0:
        return digits
    if len(digits) <= precision:
        digits = "0" * (precision - len(digits) + 1) + digits
    return digits[:-precision] + "." + digits[-precision:]


cdef NumStatus _scale(const Num* n, int precision, int digits, u128* out) noexcept nogil:
    """Exact ``n * 10**precision`` as an integer below ``10**digits``, or a NUM_* error code."""
    cdef int32_t s
    cdef u128 m = n.mant, q
    if n.len > MAX_LITERAL:
        return NUM_TOO_LONG
    if n.big:
        return NUM_NEGATIVE if n.neg else NUM_RANGE
    if m == 0:
        out[0] = 0          # "-0" and "-0.0" are zero, as JSON and Decimal agree
        return NUM_OK
    if n.neg:
        return NUM_NEGATIVE
    s = n.exp + precision
    if s < 0:
        # more decimals than the precision is fine only when the extra ones are zeros
        if s < -QTY_DIGITS:
            return NUM_TOO_PRECISE
        q = POW10[-s]
        if (m >> 64) == 0 and (q >> 64) == 0:
            if <uint64_t>m % <uint64_t>q:
                return NUM_TOO_PRECISE
            m = <uint64_t>m // <uint64_t>q
        else:
            if m % q:
                return NUM_TOO_PRECISE
            m = m / q
        s = 0
    if s > digits or m >= POW10[digits - s]:
        return NUM_RANGE
    out[0] = m * POW10[s]
    return NUM_OK


cdef str _num_reason(NumStatus code, int precision):
    if code == NUM_NEGATIVE:
        return "negative value"
    if code == NUM_TOO_PRECISE:
        return f"more decimals than the pair's precision ({precision})"
    if code == NUM_ZERO_PRICE:
        return "price must be positive"
    if code == NUM_TOO_LONG:
        return f"number literal longer than {MAX_LITERAL} characters"
    return "value out of range"


cdef struct Acc:
    u128 mant           # significant digits with trailing zeros stripped
    int32_t nsig
    int32_t pending     # zeros seen after the last non-zero digit
    bint big


cdef inline void _acc_digit(Acc* a, int d) noexcept nogil:
    cdef int32_t k
    if d == 0:
        if a.nsig:
            a.pending += 1
        return
    k = a.nsig + a.pending + 1
    if k > QTY_DIGITS:
        a.big = True
        return
    a.mant = a.mant * POW10[a.pending + 1] + <u128>d
    a.nsig = k
    a.pending = 0


cdef void _init_number_tables() noexcept:
    cdef int i
    cdef u128 v = 1
    for i in range(100):
        DIGITS2[2 * i] = <char>(48 + i // 10)
        DIGITS2[2 * i + 1] = <char>(48 + i % 10)
    for i in range(QTY_DIGITS + 1):
        POW10[i] = v
        if i < 20:
            POW10_64[i] = <uint64_t>v
        v = v * 10


cdef str _span(const uint8_t* base, const Num* n):
    if base == NULL:
        return "?"
    return (<const char*>base)[n.off:n.off + n.len].decode("utf-8", "replace")


cdef int _parse_text_number(object value, Num* num, str symbol) except -1:
    """The checked path's number parser: a decimal str (exact) or an int."""
    cdef bytes b
    cdef Scan sc
    cdef const uint8_t* p
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 4 * MAX_LITERAL:    # str() of a huge int is itself costly
            raise NumberError(symbol, f"<int of {value.bit_length()} bits>",
                              _num_reason(NUM_TOO_LONG, 0))
        b = str(value).encode()
    elif isinstance(value, str):
        b = (<str>value).encode()
    else:
        raise NumberError(symbol, repr(value), "expected a decimal string or an int")
    sc.base = <const uint8_t*>PyBytes_AS_STRING(b)
    sc.end = sc.base + PyBytes_GET_SIZE(b)
    sc.err = NULL
    p = _scan_number(&sc, sc.base, num)
    if p == NULL or p != sc.end:
        raise NumberError(symbol, value, "not a number")
    num.off = 0
    return 0
