"""The native engine of kbook: exact numbers, L2 books, CRC32 checksums and frame decoding.

Private module; :mod:`kbook` re-exports the public names. It is not a JSON library: the
scanner validates a whole frame but materialises only what a book needs, and every message
that is not a book is handed back to a general decoder (msgspec).

Numbers never pass through ``float`` or ``Decimal`` here. A price is an ``int64`` count of
ticks (``10**-price_precision``), a quantity an unsigned 128-bit count of lots
(``10**-qty_precision``), parsed straight from the frame bytes. Kraken's checksum token of a
value is then simply the decimal digits of that integer.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcmp, memcpy, memmove, memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

import re
from decimal import Decimal

import msgspec
import numpy as np

cdef extern from *:
    """
    typedef unsigned __int128 kb_u128;

    /* Carry-less 32x32 multiply for the CRC combine step, when the CPU has PCLMULQDQ.
       Compiled for that instruction set only inside this function; callers check
       kb_has_clmul() once at import, so the wheel runs on any x86-64. */
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #include <wmmintrin.h>
    __attribute__((target("pclmul,sse2")))
    static uint64_t kb_clmul32(uint32_t a, uint32_t b) {
        __m128i x = _mm_cvtsi32_si128((int)a);
        __m128i y = _mm_cvtsi32_si128((int)b);
        return (uint64_t)_mm_cvtsi128_si64(_mm_clmulepi64_si128(x, y, 0));
    }
    static int kb_has_clmul(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("pclmul");
    }
    #else
    static uint64_t kb_clmul32(uint32_t a, uint32_t b) { (void)a; (void)b; return 0; }
    static int kb_has_clmul(void) { return 0; }
    #endif
    """
    uint64_t kb_clmul32(uint32_t a, uint32_t b) nogil
    int kb_has_clmul() nogil
    # Cython only needs to know this is an unsigned integer; C sees the real 128-bit type.
    # It must never be coerced to a Python object implicitly: use _u128_to_int().
    ctypedef unsigned long long u128 "kb_u128"


cdef enum:
    TOP = 10            # Kraken's checksums cover the 10 best price levels of each side
    TOKCAP = 64         # bytes per cached checksum token: <= 18 price + <= 38 qty digits
    CLEAN = 127         # "no top-10 rank changed since the last checksum"
    UNCHANGED = 0x3FFFFFFF  # top_changed of a message that changed no level at any rank
    MAX_NESTING = 64    # deeper JSON than this is hostile, not a Kraken message
    PRICE_DIGITS = 18   # prices are < 10**18 ticks, so they fit int64
    QTY_DIGITS = 38     # quantities are < 10**38 lots, so they fit 128 bits
    MAX_PRECISION = 18  # more decimals than this is not a real pair
    KEYCAP = 80         # symbol-index keys up to this many bytes live in the C table
    BLOCKCAP = 640      # TOP * TOKCAP: one side's checksum tokens back to back
    NCHUNKS = 41        # BLOCKCAP / 16 + 1 CRC registers, one per 16-byte chunk boundary
    MAX_LITERAL = 100   # longest number literal a book takes (quotes excluded): exact counts
    L3_QTY_DIGITS = 29  # level3 orders are < 10**29 lots: 2**31 of them sum below 2**128
    LEVELS_FACTOR = 4   # a book message may address LEVELS_FACTOR * depth + LEVELS_SLACK
    LEVELS_SLACK = 64   # price levels per side; more is hostile, refused before any change
    STAGE_KEEP = 4096   # staged levels kept between frames after an outsized one
    ARENA_KEEP = 65536  # arena bytes kept likewise

cdef enum:
    SIDE_BID = 0
    SIDE_ASK = 1
    SIDE_DEAD = 255     # staged level superseded by a repeated key (last key wins, as in JSON)

cdef enum:
    KIND_OTHER = 0
    KIND_BOOK = 1
    KIND_L3 = 2

cdef enum:
    MSG_UNKNOWN = 0
    MSG_SNAPSHOT = 1
    MSG_UPDATE = 2

cdef enum:
    NUM_OK = 0
    NUM_NEGATIVE = 1
    NUM_TOO_PRECISE = 2
    NUM_RANGE = 3
    NUM_ZERO_PRICE = 4
    NUM_TOO_LONG = 5

cdef enum:
    SET_ABSENT = 0
    SET_UPDATED = 1
    SET_INSERTED = 2
    SET_DELETED = 3

cdef enum:
    APPLY_OK = 0
    APPLY_DROPPED = 1
    APPLY_MISMATCH = 2
    APPLY_CROSSED = 3

ALLOWED_DEPTHS = (10, 25, 100, 500, 1000)


# --------------------------------------------------------------------------------------------
# Errors

class KBookError(Exception):
    """Base class of every error kbook raises."""


class DecodeError(KBookError, ValueError):
    """A frame is not valid JSON, or not a valid message of the kind it claims to be.

    The books a frame addresses are left exactly as they were, so a dropped book frame means
    those books missed an update. ``channel`` (``"book"``, ``"level3"`` or None when the frame
    could not be attributed) and ``symbols`` say which: every symbol the frame named, also in
    entries after the one that failed (``symbol`` is the first of them). ``may_affect_books``
    is False when the frame certainly was not a book or level3 message (it named another
    channel, or has no book marker at all), so no book missed anything.
    """

    channel = None
    symbol = None
    symbols = ()
    may_affect_books = True


class NumberError(DecodeError):
    """A price or quantity that the book cannot hold exactly.

    Raised for negative values, values with more decimals than the pair's precision,
    non-numeric values and values out of range. Nothing is rounded.
    """

    def __init__(self, symbol, text, reason, channel=None):
        self.symbol = symbol
        self.text = text
        self.reason = reason
        self.channel = channel
        super().__init__(f"{symbol}: {reason}: {text!r}")


class UnknownPrecision(KBookError):
    """A v2 book arrived for a symbol whose price/qty precision is not known.

    Kraken's v2 checksum needs the pair's ``price_precision`` and ``qty_precision``: subscribe
    to the ``instrument`` channel first, or give them explicitly.
    """

    def __init__(self, symbol):
        self.symbol = symbol
        super().__init__(
            f"{symbol}: price/qty precision unknown (subscribe to 'instrument' or set it)")


class ChecksumMismatch(KBookError):
    """The book disagrees with the exchange's checksum; it stays invalid until a new snapshot.

    :ivar symbol: the book's symbol
    :ivar expected: the checksum the exchange sent
    :ivar computed: the CRC32 of the local book
    :ivar checksum_input: the exact string the local CRC32 was computed over
    """

    def __init__(self, symbol, expected, computed, checksum_input):
        self.symbol = symbol
        self.expected = expected
        self.computed = computed
        self.checksum_input = checksum_input
        super().__init__(f"{symbol}: checksum mismatch: expected {expected}, computed {computed}")


class BookIntegrityError(KBookError):
    """A book broke an invariant that a verified exchange state cannot break (e.g. crossed)."""

    def __init__(self, symbol, reason):
        self.symbol = symbol
        self.reason = reason
        super().__init__(f"{symbol}: {reason}")


# --------------------------------------------------------------------------------------------
# Tables

cdef uint32_t CRC_TAB[16][256]  # slicing-by-16 tables for the reflected IEEE polynomial
cdef uint32_t CRC_INIT = 0xFFFFFFFFU   # zlib's initial register and final xor
cdef uint8_t STR_PLAIN[256]     # 1 for bytes a JSON string scan can pass over without a look
cdef char DIGITS2[200]          # "000102...99": two decimal digits per lookup
cdef u128 POW10[QTY_DIGITS + 1]
cdef uint64_t POW10_64[20]
cdef uint32_t XPOW8N[BLOCKCAP + 1]  # x**(8n) mod P: appends n zero bytes to a CRC register


cdef inline uint32_t _gf2_mulmod(uint32_t a, uint32_t b) noexcept nogil:
    """Product of two polynomials modulo CRC32's, both in the reflected bit order.

    Walks ``a`` from x**0 upward while ``b`` is multiplied by x at each step; branch-free so
    the cost does not depend on the register's bits.
    """
    cdef uint32_t prod = 0
    cdef int i
    for i in range(32):
        prod ^= b & (<uint32_t>0 - ((a >> (31 - i)) & 1))
        b = (b >> 1) ^ (<uint32_t>0xEDB88320 & (<uint32_t>0 - (b & 1)))
    return prod


cdef void _init_tables() noexcept:
    cdef uint32_t c
    cdef int i, k
    cdef u128 v = 1
    for i in range(256):
        c = <uint32_t>i
        for _ in range(8):
            c = (c >> 1) ^ (0xEDB88320 if (c & 1) else 0)
        CRC_TAB[0][i] = c
    for i in range(256):
        c = CRC_TAB[0][i]
        for k in range(1, 16):
            c = (c >> 8) ^ CRC_TAB[0][c & 0xFF]
            CRC_TAB[k][i] = c
    for i in range(256):
        STR_PLAIN[i] = 1 if (0x20 <= i < 0x80 and i != 34 and i != 92) else 0
    for i in range(100):
        DIGITS2[2 * i] = <char>(48 + i // 10)
        DIGITS2[2 * i + 1] = <char>(48 + i % 10)
    for i in range(QTY_DIGITS + 1):
        POW10[i] = v
        if i < 20:
            POW10_64[i] = <uint64_t>v
        v = v * 10
    XPOW8N[0] = 0x80000000   # the polynomial 1 in the reflected representation
    for i in range(1, BLOCKCAP + 1):
        XPOW8N[i] = _gf2_mulmod(XPOW8N[i - 1], 0x00800000)   # times x**8


_init_tables()


# --------------------------------------------------------------------------------------------
# CRC32 and decimal digits

cdef inline uint32_t _le32(const uint8_t* p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint32_t _crc16(uint32_t crc, const uint8_t* p) noexcept nogil:
    """Advance a CRC32 register over 16 bytes (slicing-by-16)."""
    cdef uint32_t a = crc ^ _le32(p), b = _le32(p + 4), c = _le32(p + 8), d = _le32(p + 12)
    return (CRC_TAB[15][a & 0xFF] ^ CRC_TAB[14][(a >> 8) & 0xFF]
            ^ CRC_TAB[13][(a >> 16) & 0xFF] ^ CRC_TAB[12][a >> 24]
            ^ CRC_TAB[11][b & 0xFF] ^ CRC_TAB[10][(b >> 8) & 0xFF]
            ^ CRC_TAB[9][(b >> 16) & 0xFF] ^ CRC_TAB[8][b >> 24]
            ^ CRC_TAB[7][c & 0xFF] ^ CRC_TAB[6][(c >> 8) & 0xFF]
            ^ CRC_TAB[5][(c >> 16) & 0xFF] ^ CRC_TAB[4][c >> 24]
            ^ CRC_TAB[3][d & 0xFF] ^ CRC_TAB[2][(d >> 8) & 0xFF]
            ^ CRC_TAB[1][(d >> 16) & 0xFF] ^ CRC_TAB[0][d >> 24])


cdef inline uint32_t _crc_update(uint32_t crc, const char* buf, Py_ssize_t n) noexcept nogil:
    """Advance a CRC32 register (zlib's polynomial, no pre/post inversion) over ``n`` bytes."""
    cdef const uint8_t* p = <const uint8_t*>buf
    cdef uint32_t a, b
    while n >= 16:
        crc = _crc16(crc, p)
        p += 16
        n -= 16
    if n >= 8:
        a = crc ^ _le32(p)
        b = _le32(p + 4)
        crc = (CRC_TAB[7][a & 0xFF] ^ CRC_TAB[6][(a >> 8) & 0xFF]
               ^ CRC_TAB[5][(a >> 16) & 0xFF] ^ CRC_TAB[4][a >> 24]
               ^ CRC_TAB[3][b & 0xFF] ^ CRC_TAB[2][(b >> 8) & 0xFF]
               ^ CRC_TAB[1][(b >> 16) & 0xFF] ^ CRC_TAB[0][b >> 24])
        p += 8
        n -= 8
    while n > 0:
        crc = (crc >> 8) ^ CRC_TAB[0][(crc ^ p[0]) & 0xFF]
        p += 1
        n -= 1
    return crc


cdef bint HAVE_CLMUL = kb_has_clmul()


cdef inline uint32_t _mulmod(uint32_t a, uint32_t b) noexcept nogil:
    """``a * b mod P`` in the reflected domain: one carry-less multiply when the CPU has it.

    The 63-bit product, shifted left once, holds x**0..x**31 in its high half and
    x**32..x**63 in its low half; the low half is folded back by advancing it over four zero
    bytes with the CRC tables.
    """
    cdef uint64_t prod
    cdef uint32_t lo
    if HAVE_CLMUL:
        prod = kb_clmul32(a, b) << 1
        lo = <uint32_t>prod
        return (<uint32_t>(prod >> 32) ^ CRC_TAB[3][lo & 0xFF] ^ CRC_TAB[2][(lo >> 8) & 0xFF]
                ^ CRC_TAB[1][(lo >> 16) & 0xFF] ^ CRC_TAB[0][lo >> 24])
    return _gf2_mulmod(a, b)


def _mulmod_check(uint32_t a, uint32_t b):
    """(hardware-or-software product, software product): for tests of the combine step."""
    return _mulmod(a, b), _gf2_mulmod(a, b)


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


def crc32(data):
    """Return Kraken's (zlib's) CRC32 of ``data`` (bytes or str) as an unsigned int.

    >>> crc32(b"5005500") == __import__("zlib").crc32(b"5005500")
    True
    """
    if isinstance(data, str):
        data = (<str>data).encode("ascii")
    cdef bytes b = bytes(data)
    return _crc_update(CRC_INIT, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)) ^ CRC_INIT


# --------------------------------------------------------------------------------------------
# Numbers

cdef struct Num:
    u128 mant       # the digits as an integer (trailing zeros may remain)
    int32_t exp     # value == mant * 10**exp
    int32_t frac    # fraction digits as written (v1 strings carry the pair's precision)
    int32_t off     # text span inside the frame, quotes excluded, for error messages
    int32_t len
    uint8_t neg
    uint8_t big     # more significant digits than any book value can hold


cdef int _scale(const Num* n, int precision, int digits, u128* out) noexcept nogil:
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


cdef str _num_reason(int code, int precision):
    if code == NUM_NEGATIVE:
        return "negative value"
    if code == NUM_TOO_PRECISE:
        return f"more decimals than the pair's precision ({precision})"
    if code == NUM_ZERO_PRICE:
        return "price must be positive"
    if code == NUM_TOO_LONG:
        return f"number literal longer than {MAX_LITERAL} characters"
    return "value out of range"


# --------------------------------------------------------------------------------------------
# The JSON scanner. Every function takes the cursor and returns the position after what it
# consumed, or NULL after recording why in the Scan context.

cdef struct Scan:
    const uint8_t* base
    const uint8_t* end
    const char* err
    const uint8_t* at


cdef inline const uint8_t* _fail(Scan* sc, const uint8_t* at, const char* why) noexcept nogil:
    if sc.err == NULL:
        sc.err = why
        sc.at = at
    return NULL


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


cdef inline bint _eight_digits(uint64_t v) noexcept nogil:
    """Whether the 8 bytes of ``v`` (little-endian load) are all ASCII digits."""
    return ((v & 0xF0F0F0F0F0F0F0F0ULL) == 0x3030303030303030ULL
            and ((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) == 0x3030303030303030ULL)


cdef inline uint64_t _eight_value(uint64_t v) noexcept nogil:
    """The value of 8 ASCII digits (first digit in the lowest byte), combining lanes pairwise."""
    v -= 0x3030303030303030ULL
    v = (v * 10 + (v >> 8)) & 0x00FF00FF00FF00FFULL         # 16-bit lanes: 2-digit values
    v = (v * 100 + (v >> 16)) & 0x0000FFFF0000FFFFULL       # 32-bit lanes: 4-digit values
    return (v * 10000 + (v >> 32)) & 0xFFFFFFFFULL


cdef const uint8_t* _scan_string(Scan* sc, const uint8_t* p, bint* esc) noexcept nogil:
    """``p`` is at the opening quote; validate escapes, control characters and UTF-8."""
    cdef const uint8_t* end = sc.end
    cdef uint8_t c, c1
    cdef int i, need
    p += 1
    while p < end:
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
        while end - p >= 8 and _eight_digits(_load64(p)):
            m = m * 100000000 + _eight_value(_load64(p))
            nd += 8
            p += 8
        while p < end and _is_digit(p[0]):
            m = m * 10 + (p[0] - 48)
            nd += 1
            p += 1
    if p < end and p[0] == 46:
        p += 1
        fs = p
        while end - p >= 8 and _eight_digits(_load64(p)):
            m = m * 100000000 + _eight_value(_load64(p))
            p += 8
        while p < end and _is_digit(p[0]):
            m = m * 10 + (p[0] - 48)
            p += 1
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
        if end - p >= 4 and memcmp(p, b"true", 4) == 0:
            return p + 4
    elif c == 102:
        if end - p >= 5 and memcmp(p, b"false", 5) == 0:
            return p + 5
    elif c == 110:
        if end - p >= 4 and memcmp(p, b"null", 4) == 0:
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
cdef const char* V2_ENTRY_KEYS = b"\x04bids\x04asks\x06symbol\x08checksum"
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


cdef inline const uint8_t* _level_fast(Scan* sc, const uint8_t* p, Lvl* lv) noexcept nogil:
    """``{"price":N,"qty":N}`` exactly as Kraken writes it, or NULL to use the general path."""
    cdef const uint8_t* end = sc.end
    if end - p < 18 or memcmp(p, b'{"price":', 9) != 0:
        return NULL
    p = _scan_num_value(sc, p + 9, &lv.price)
    if p == NULL or end - p < 8 or memcmp(p, b',"qty":', 7) != 0:
        return NULL
    p = _scan_num_value(sc, p + 7, &lv.qty)
    if p == NULL or p >= end or p[0] != 125:
        return NULL
    return p + 1


cdef int _checksum_value(const Num* n, int64_t* out) noexcept nogil:
    """A checksum field as a 32-bit unsigned integer, or -1."""
    cdef u128 v
    if _scale(n, 0, 10, &v) != NUM_OK or v > <u128>(<uint32_t>0xFFFFFFFF):
        return -1
    out[0] = <int64_t>v
    return 0


# --------------------------------------------------------------------------------------------
# One side of an L2 book: a sorted array with the best level at the top end, so that the
# near-touch changes that dominate real feeds move few elements; a gap below `lo` lets deep
# changes shift the short lower part instead. Keys ascend: bids store the price, asks its
# negation, so "best" is always the last element for both.

cdef struct Side:
    int64_t* key
    u128* qty
    int32_t lo
    int32_t hi
    int32_t cap
    # checksum cache, by rank (0 = best): token text of the 10 best levels
    uint16_t stale          # bit r: token r must be re-formatted
    int32_t dirty           # lowest top-10 rank changed since the last checksum, or CLEAN
    int32_t touched         # lowest rank (any depth) the message being applied changed
    uint8_t toklen[TOP]
    char tok[TOP][TOKCAP]
    # the tokens of ranks 0..nblock-1 back to back, with the CRC register after every 16-byte
    # chunk, so a change at rank r re-hashes only from the chunk where rank r starts
    int32_t nblock
    uint32_t crc            # register after the whole block
    uint16_t off[TOP + 1]
    uint32_t chunk[NCHUNKS]
    char block[BLOCKCAP + TOKCAP]


cdef int _side_init(Side* s, int32_t cap) except -1:
    s.key = <int64_t*>PyMem_Malloc(cap * sizeof(int64_t))
    s.qty = <u128*>PyMem_Malloc(cap * sizeof(u128))
    if s.key == NULL or s.qty == NULL:
        raise MemoryError()
    s.cap = cap
    s.lo = s.hi = cap // 4
    s.stale = (1 << TOP) - 1
    s.dirty = 0
    s.touched = 0
    s.nblock = 0
    s.off[0] = 0
    return 0


cdef void _side_free(Side* s) noexcept:
    PyMem_Free(s.key)
    PyMem_Free(s.qty)
    s.key = NULL
    s.qty = NULL


cdef inline void _side_clear(Side* s) noexcept nogil:
    s.lo = s.hi = s.cap // 4
    s.stale = (1 << TOP) - 1
    s.dirty = 0
    s.touched = 0


cdef int _side_reserve(Side* s, int32_t n) except -1:
    """Make room for ``n`` levels, recentred so both ends have a gap."""
    cdef int32_t cap = s.cap, count = s.hi - s.lo, lo
    cdef int64_t* key
    cdef u128* qty
    if n + 2 > cap:
        while n + 2 > cap:
            cap *= 2
        key = <int64_t*>PyMem_Malloc(cap * sizeof(int64_t))
        qty = <u128*>PyMem_Malloc(cap * sizeof(u128))
        if key == NULL or qty == NULL:
            PyMem_Free(key)
            PyMem_Free(qty)
            raise MemoryError()
        lo = (cap - count) // 2
        memcpy(&key[lo], &s.key[s.lo], count * sizeof(int64_t))
        memcpy(&qty[lo], &s.qty[s.lo], count * sizeof(u128))
        PyMem_Free(s.key)
        PyMem_Free(s.qty)
        s.key = key
        s.qty = qty
        s.cap = cap
    else:
        lo = (cap - count) // 2
        memmove(&s.key[lo], &s.key[s.lo], count * sizeof(int64_t))
        memmove(&s.qty[lo], &s.qty[s.lo], count * sizeof(u128))
    s.lo = lo
    s.hi = lo + count
    return 0


cdef inline int32_t _side_find(const Side* s, int64_t k) noexcept nogil:
    """Index of the first key >= ``k``; probes the best few levels before bisecting."""
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


cdef inline void _mark(Side* s, int32_t rank) noexcept nogil:
    if rank < s.dirty:
        s.dirty = rank


cdef inline void _cache_insert(Side* s, int32_t r) noexcept nogil:
    """A level entered at rank ``r``: cached tokens at r.. move down one rank."""
    cdef uint16_t low
    if r >= TOP:
        return
    if r < TOP - 1:
        memmove(&s.tok[r + 1][0], &s.tok[r][0], (TOP - 1 - r) * TOKCAP)
        memmove(&s.toklen[r + 1], &s.toklen[r], TOP - 1 - r)
    low = s.stale & ((1 << r) - 1)
    s.stale = (low | ((s.stale >> r) << (r + 1)) | (1 << r)) & ((1 << TOP) - 1)
    _mark(s, r)


cdef inline void _cache_delete(Side* s, int32_t r) noexcept nogil:
    """The level at rank ``r`` left: cached tokens below it move up one rank."""
    cdef uint16_t low
    if r >= TOP:
        return
    if r < TOP - 1:
        memmove(&s.tok[r][0], &s.tok[r + 1][0], (TOP - 1 - r) * TOKCAP)
        memmove(&s.toklen[r], &s.toklen[r + 1], TOP - 1 - r)
    low = s.stale & ((1 << r) - 1)
    s.stale = (low | ((s.stale >> (r + 1)) << r) | (1 << (TOP - 1))) & ((1 << TOP) - 1)
    _mark(s, r)


cdef int _side_set(Side* s, int64_t k, u128 q) except -1:
    """Set the level at key ``k`` to quantity ``q`` (0 deletes). Returns a SET_* code.

    Complexity: O(log n) to find, O(min(rank, n - rank)) to insert or delete.
    """
    cdef int32_t pos = _side_find(s, k)
    cdef bint found = pos < s.hi and s.key[pos] == k
    cdef int32_t rank
    if q == 0:
        if not found:
            return SET_ABSENT
        rank = s.hi - 1 - pos
        if rank < s.touched:
            s.touched = rank
        if pos - s.lo < s.hi - 1 - pos:
            memmove(&s.key[s.lo + 1], &s.key[s.lo], (pos - s.lo) * sizeof(int64_t))
            memmove(&s.qty[s.lo + 1], &s.qty[s.lo], (pos - s.lo) * sizeof(u128))
            s.lo += 1
        else:
            memmove(&s.key[pos], &s.key[pos + 1], (s.hi - 1 - pos) * sizeof(int64_t))
            memmove(&s.qty[pos], &s.qty[pos + 1], (s.hi - 1 - pos) * sizeof(u128))
            s.hi -= 1
        _cache_delete(s, rank)
        return SET_DELETED
    if found:
        s.qty[pos] = q
        rank = s.hi - 1 - pos
        if rank < s.touched:
            s.touched = rank
        if rank < TOP:
            s.stale |= 1 << rank
            _mark(s, rank)
        return SET_UPDATED
    rank = s.hi - pos
    if rank < s.touched:
        s.touched = rank
    if (pos - s.lo < s.hi - pos and s.lo > 0) or s.hi == s.cap:
        if s.lo == 0:
            pos -= s.lo
            _side_reserve(s, s.hi - s.lo + 1)
            pos += s.lo
            return _side_insert_at(s, pos, k, q, rank)
        memmove(&s.key[s.lo - 1], &s.key[s.lo], (pos - s.lo) * sizeof(int64_t))
        memmove(&s.qty[s.lo - 1], &s.qty[s.lo], (pos - s.lo) * sizeof(u128))
        s.lo -= 1
        s.key[pos - 1] = k
        s.qty[pos - 1] = q
    else:
        memmove(&s.key[pos + 1], &s.key[pos], (s.hi - pos) * sizeof(int64_t))
        memmove(&s.qty[pos + 1], &s.qty[pos], (s.hi - pos) * sizeof(u128))
        s.hi += 1
        s.key[pos] = k
        s.qty[pos] = q
    _cache_insert(s, rank)
    return SET_INSERTED


cdef int _side_insert_at(Side* s, int32_t pos, int64_t k, u128 q, int32_t rank) except -1:
    # after a recentre both ends have room; shift the upper part
    memmove(&s.key[pos + 1], &s.key[pos], (s.hi - pos) * sizeof(int64_t))
    memmove(&s.qty[pos + 1], &s.qty[pos], (s.hi - pos) * sizeof(u128))
    s.hi += 1
    s.key[pos] = k
    s.qty[pos] = q
    _cache_insert(s, rank)
    return SET_INSERTED


cdef inline void _side_truncate(Side* s, int32_t depth) noexcept nogil:
    # Kraken sends no delete for levels pushed out of the subscribed depth; the dropped levels
    # are the worst ones, far below the top 10, so the checksum cache is unaffected.
    if s.hi - s.lo > depth:
        s.lo = s.hi - depth


cdef inline int _side_token(Side* s, int32_t rank) noexcept nogil:
    cdef int32_t i = s.hi - 1 - rank
    cdef int64_t k = s.key[i]
    cdef char* out = &s.tok[rank][0]
    cdef int n = _fmt_u64(<uint64_t>(k if k > 0 else -k), out)
    n += _fmt_u128(s.qty[i], out + n)
    s.toklen[rank] = <uint8_t>n
    return n


cdef inline void _side_refresh(Side* s, int32_t n) noexcept nogil:
    """Re-format the stale tokens among the ``n`` best levels."""
    cdef uint16_t pending = s.stale & ((1 << n) - 1)
    cdef int32_t r = 0
    while pending:
        if pending & 1:
            _side_token(s, r)
        pending >>= 1
        r += 1
    s.stale &= ~((1 << n) - 1)


cdef inline void _side_rehash(Side* s, int32_t n, uint32_t init) noexcept nogil:
    """Bring the side's token block and CRC register up to date for its ``n`` best levels."""
    cdef int32_t r = min(s.dirty, n), k, c, total
    cdef uint16_t o
    cdef uint32_t crc
    _side_refresh(s, n)
    o = s.off[r]
    for k in range(r, n):
        memcpy(&s.block[o], &s.tok[k][0], TOKCAP)   # fixed size: a few vector moves
        o += s.toklen[k]
        s.off[k + 1] = o
    total = o
    c = s.off[r] >> 4
    crc = init if c == 0 else s.chunk[c]
    while (c + 1) * 16 <= total:
        crc = _crc16(crc, <const uint8_t*>&s.block[c * 16])
        c += 1
        s.chunk[c] = crc
    s.crc = _crc_update(crc, &s.block[c * 16], total - c * 16)
    s.nblock = n
    s.dirty = CLEAN


# --------------------------------------------------------------------------------------------
# Staging: a frame is parsed completely before any book changes, so that a malformed or
# impossible frame leaves every book exactly as it was.

cdef struct Lvl:
    Num price
    Num qty
    int64_t key
    u128 lots
    uint8_t side
    uint8_t event       # level3: EV_* (0 until known)
    int32_t id_off      # level3: order id in the symbol arena
    int32_t id_len


cdef struct Grp:
    int32_t first       # index of the first staged level
    int32_t count
    int64_t checksum    # -1 when the message carries none
    int32_t sym_off     # decoded symbol (v2) or "channel|pair" (v1) in the symbol arena
    int32_t sym_len
    int32_t name_len    # v1: length of the channel-name prefix of the key
    int32_t depth       # v1: from the channel name
    uint8_t kind        # MSG_*
    uint8_t l3          # a level3 message
    int8_t pp           # v1: precisions this message is scaled at (-1: the book's own)
    int8_t qp
    uint8_t has_symbol
    uint8_t seen        # bit 0: bids seen, bit 1: asks seen (a repeated key replaces)
    PyObject* book


@cython.final
cdef class L2Book:
    """An exact, checksum-verified L2 order book for one symbol.

    Prices are kept as integer ticks of ``10**-price_precision`` and quantities as integer lots
    of ``10**-qty_precision``; the conversions to ``str``, ``Decimal`` or ``float`` happen only in
    the accessors that say so. A book is *valid* once a snapshot has been applied and every
    checksum since then matched; after a mismatch it stays invalid (and drops updates) until
    the next snapshot.

    >>> book = L2Book("BTC/USD", depth=10, price_precision=1, qty_precision=8)
    >>> book.apply([("45283.5", "0.1")], [("45285.2", "0.001")], snapshot=True)
    >>> book.best_bid(), book.best_ask(), book.spread()
    ((452835, 10000000), (452852, 100000), 17)
    """

    cdef Side _bids
    cdef Side _asks
    cdef uint32_t _asks_shifted   # asks register advanced over len(bids block) zero bytes
    cdef uint32_t _cs             # the last checksum computed
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
    cdef public object on_update         # called by FeedListener with the book after a change
    cdef public int64_t received_ns      # monotonic ns the client last received its message
    cdef public int notify_depth         # ... when the change reached one of this many best levels

    def __cinit__(self, str symbol, int depth=10, price_precision=None, qty_precision=None):
        cdef int32_t cap
        if depth not in ALLOWED_DEPTHS:
            raise ValueError(f"depth must be one of {ALLOWED_DEPTHS}, not {depth}")
        self.symbol = symbol
        self.depth = depth
        self.price_precision = -1
        self.qty_precision = -1
        if price_precision is not None or qty_precision is not None:
            self.set_precision(price_precision, qty_precision)
        cap = depth + depth // 2 + 16
        _side_init(&self._bids, cap)
        _side_init(&self._asks, cap)
        self.top_changed = UNCHANGED
        self.notify_depth = UNCHANGED + 1   # every message

    def __dealloc__(self):
        _side_free(&self._bids)
        _side_free(&self._asks)

    def set_precision(self, price_precision, qty_precision):
        """Set the pair's decimals (``instrument``'s ``price_precision``/``qty_precision``).

        Changing the precision of a book that holds levels clears it and marks it invalid.
        """
        if price_precision is None or qty_precision is None:
            raise ValueError("give both price_precision and qty_precision")
        if not (0 <= price_precision <= MAX_PRECISION and 0 <= qty_precision <= MAX_PRECISION):
            raise ValueError(f"precision must be within 0..{MAX_PRECISION}")
        if (price_precision, qty_precision) != (self.price_precision, self.qty_precision):
            if self.price_precision >= 0:
                self.clear()
            self.price_precision = price_precision
            self.qty_precision = qty_precision

    cpdef clear(self):
        """Drop every level and mark the book invalid (awaiting a snapshot)."""
        _side_clear(&self._bids)
        _side_clear(&self._asks)
        self.valid = False

    def invalidate(self):
        """Mark the book invalid (it missed data) but keep its levels; updates are dropped
        until the next snapshot."""
        self.valid = False

    # -- applying --------------------------------------------------------------------------

    cdef int _load_side(self, Side* s, Lvl* lv, int32_t n, uint8_t side) except -1:
        """Snapshot levels of one side; direct fill when they arrive best-first and distinct."""
        cdef int32_t i, m = 0, idx
        cdef int64_t prev = 0
        cdef bint ordered = True
        for i in range(n):
            if lv[i].side != side or lv[i].lots == 0:
                continue
            if m and lv[i].key >= prev:
                ordered = False
                break
            prev = lv[i].key
            m += 1
        if not ordered:
            for i in range(n):
                if lv[i].side == side:
                    if _side_set(s, lv[i].key, lv[i].lots) == SET_ABSENT:
                        self.absent_deletes += 1
            return 0
        if m + 2 > s.cap:
            _side_reserve(s, m)
        s.lo = (s.cap - m) // 2
        s.hi = s.lo + m
        idx = s.hi
        for i in range(n):
            if lv[i].side != side or lv[i].lots == 0:
                continue
            idx -= 1
            s.key[idx] = lv[i].key
            s.qty[idx] = lv[i].lots
        return 0

    cdef int _apply_staged(self, Lvl* lv, int32_t n, int kind, int64_t checksum) except -1:
        """Apply one message's staged, already-scaled levels. Returns an APPLY_* code."""
        cdef int32_t i
        cdef uint32_t computed
        cdef int r
        if kind == MSG_SNAPSHOT:
            self.clear()
            self._load_side(&self._bids, lv, n, SIDE_BID)
            self._load_side(&self._asks, lv, n, SIDE_ASK)
            self.snapshots += 1
            self.valid = True
        else:
            if not self.valid:
                self.dropped_updates += 1
                return APPLY_DROPPED
            self._bids.touched = UNCHANGED
            self._asks.touched = UNCHANGED
            for i in range(n):
                if lv[i].side == SIDE_BID:
                    r = _side_set(&self._bids, lv[i].key, lv[i].lots)
                elif lv[i].side == SIDE_ASK:
                    r = _side_set(&self._asks, lv[i].key, lv[i].lots)
                else:
                    continue
                if r == SET_ABSENT:
                    self.absent_deletes += 1
        _side_truncate(&self._bids, self.depth)
        _side_truncate(&self._asks, self.depth)
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
            # a valid book is never crossed, verified or not: it waits for a snapshot
            self.valid = False
            return APPLY_CROSSED
        return APPLY_OK

    cdef inline bint _crossed(self) noexcept:
        return (self._bids.hi > self._bids.lo and self._asks.hi > self._asks.lo
                and self._bids.key[self._bids.hi - 1] >= -self._asks.key[self._asks.hi - 1])

    cdef inline int _scale_level(self, Lvl* lv, const uint8_t* base,
                                 object texts=None) except -1:
        return _scale_staged(lv, self.price_precision, self.qty_precision, self.symbol, base,
                             texts)

    def apply(self, bids, asks, *, bint snapshot=False, checksum=None):
        """Apply one message's levels: the checked entry point for already-decoded data.

        :param bids: iterable of ``(price, qty)``, each a decimal ``str`` (exact, as on the
            wire) in message order; qty ``"0"`` deletes the level
        :param asks: likewise
        :param snapshot: replace the book instead of updating it
        :param checksum: the exchange's CRC32 for the book after this message, if any: an int
            within ``0 <= checksum < 2**32``
        :raises NumberError: a value the book cannot hold exactly (nothing is applied)
        :raises DecodeError: more than ``4 * depth + 64`` levels on one side (nothing is applied)
        :raises ValueError: ``checksum`` out of range (``TypeError``: not an int)
        :raises ChecksumMismatch: the book now disagrees with ``checksum`` (it is invalid)
        :raises BookIntegrityError: the verified book is crossed (it is invalid)

        Complexity: O(m log n) for m levels, plus O(distance to the nearer end) per insert.
        """
        cdef int64_t expected = _checksum_arg(checksum)
        if self.price_precision < 0:
            raise UnknownPrecision(self.symbol)
        cdef list items = [(SIDE_BID, p, q) for p, q in bids] + [(SIDE_ASK, p, q) for p, q in asks]
        cdef int32_t n = len(items), i
        cdef Lvl* lv = <Lvl*>PyMem_Malloc(max(n, 1) * sizeof(Lvl))
        cdef int code
        if lv == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                side, price, qty = items[i]
                lv[i].side = side
                _parse_text_number(price, &lv[i].price, self.symbol)
                _parse_text_number(qty, &lv[i].qty, self.symbol)
                self._scale_level(&lv[i], NULL, (price, qty))
            if snapshot:
                kind = MSG_SNAPSHOT
            else:
                kind = MSG_UPDATE
                if not self.valid:
                    raise KBookError(f"{self.symbol}: book is not valid; apply a snapshot first")
            _check_l2_message(lv, n, self.depth, self.symbol)
            code = self._apply_staged(lv, n, kind, expected)
        finally:
            PyMem_Free(lv)
        self._raise_for(code, expected)

    cdef int _raise_for(self, int code, int64_t expected) except -1:
        return _raise_apply(self, code, expected)

    # -- checksum --------------------------------------------------------------------------

    cdef uint32_t _checksum(self) noexcept:
        """CRC32 of the top 10 (asks then bids), re-hashing only what changed.

        The asks block is hashed from zlib's initial register and the bids block from zero;
        CRC32 is affine in its register, so the whole string's CRC is the asks register
        advanced over len(bids) zero bytes (one carry-less multiply) xor the bids register.
        """
        cdef Side* a = &self._asks
        cdef Side* b = &self._bids
        cdef int32_t na = min(a.hi - a.lo, TOP)
        cdef int32_t nb = min(b.hi - b.lo, TOP)
        cdef uint16_t blen = b.off[b.nblock]
        cdef bint shift = False
        if a.dirty != CLEAN:
            _side_rehash(a, na, CRC_INIT)
            shift = True
        if b.dirty != CLEAN:
            _side_rehash(b, nb, 0)
            shift = shift or b.off[nb] != blen
        if shift:
            self._asks_shifted = _mulmod(a.crc, XPOW8N[b.off[nb]])
        self._cs = self._asks_shifted ^ b.crc ^ CRC_INIT
        return self._cs

    def checksum(self):
        """Kraken's CRC32 of the current top 10 (asks then bids), as an unsigned int."""
        return self._checksum()

    def checksum_input(self):
        """The exact string the checksum is computed over (for diagnostics)."""
        cdef list parts = []
        cdef char buf[TOKCAP]
        cdef int n
        cdef int32_t r
        cdef Side* side
        for s in (0, 1):
            side = &self._asks if s == 0 else &self._bids
            for r in range(min(side.hi - side.lo, TOP)):
                n = _fmt_u64(<uint64_t>abs(side.key[side.hi - 1 - r]), buf)
                n += _fmt_u128(side.qty[side.hi - 1 - r], buf + n)
                parts.append(buf[:n].decode("ascii"))
        return "".join(parts)

    # -- reading ---------------------------------------------------------------------------

    @property
    def bid_count(self):
        """Number of bid levels held."""
        return self._bids.hi - self._bids.lo

    @property
    def ask_count(self):
        """Number of ask levels held."""
        return self._asks.hi - self._asks.lo

    def __len__(self):
        return (self._bids.hi - self._bids.lo) + (self._asks.hi - self._asks.lo)

    def best_bid(self):
        """``(price_ticks, qty_lots)`` of the best bid, or None. Complexity: O(1)."""
        cdef Side* s = &self._bids
        if s.hi == s.lo:
            return None
        return (s.key[s.hi - 1], _u128_to_int(s.qty[s.hi - 1]))

    def best_ask(self):
        """``(price_ticks, qty_lots)`` of the best ask, or None. Complexity: O(1)."""
        cdef Side* s = &self._asks
        if s.hi == s.lo:
            return None
        return (-s.key[s.hi - 1], _u128_to_int(s.qty[s.hi - 1]))

    @property
    def best_bid_price(self):
        """Best bid in ticks, or None."""
        return self._bids.key[self._bids.hi - 1] if self._bids.hi > self._bids.lo else None

    @property
    def best_ask_price(self):
        """Best ask in ticks, or None."""
        return -self._asks.key[self._asks.hi - 1] if self._asks.hi > self._asks.lo else None

    def spread(self):
        """Best ask minus best bid, in ticks; None when a side is empty."""
        if self._bids.hi == self._bids.lo or self._asks.hi == self._asks.lo:
            return None
        return -self._asks.key[self._asks.hi - 1] - self._bids.key[self._bids.hi - 1]

    def mid(self):
        """Mid price as a float (a convenience view; the book itself stays exact)."""
        if self._bids.hi == self._bids.lo or self._asks.hi == self._asks.lo:
            return None
        cdef double bid = <double>self._bids.key[self._bids.hi - 1]
        cdef double ask = -<double>self._asks.key[self._asks.hi - 1]
        return (bid + ask) / 2.0 / (10.0 ** self.price_precision)

    cdef list _levels(self, Side* s, int sign, object n, int fmt):
        cdef int32_t count = s.hi - s.lo
        cdef int32_t k = count if n is None else min(<int32_t>n, count)
        cdef int32_t r, i
        cdef list out = []
        if k < 0:
            raise ValueError("n must be >= 0")
        for r in range(k):
            i = s.hi - 1 - r
            price = sign * s.key[i]
            qty = _u128_to_int(s.qty[i])
            if fmt == 1:
                out.append((_fixed_text(price, self.price_precision),
                            _fixed_text(qty, self.qty_precision)))
            elif fmt == 2:
                out.append((Decimal(_fixed_text(price, self.price_precision)),
                            Decimal(_fixed_text(qty, self.qty_precision))))
            else:
                out.append((price, qty))
        return out

    def bids(self, n=None):
        """Best-first ``[(price_ticks, qty_lots), ...]`` of the ``n`` best bids (all if None)."""
        return self._levels(&self._bids, 1, n, 0)

    def asks(self, n=None):
        """Best-first ``[(price_ticks, qty_lots), ...]`` of the ``n`` best asks (all if None)."""
        return self._levels(&self._asks, -1, n, 0)

    def bids_str(self, n=None):
        """Best bids as exact decimal strings at the pair's precision (``"0.10000000"``)."""
        return self._levels(&self._bids, 1, n, 1)

    def asks_str(self, n=None):
        """Best asks as exact decimal strings at the pair's precision."""
        return self._levels(&self._asks, -1, n, 1)

    def bids_decimal(self, n=None):
        """Best bids as exact ``Decimal`` pairs."""
        return self._levels(&self._bids, 1, n, 2)

    def asks_decimal(self, n=None):
        """Best asks as exact ``Decimal`` pairs."""
        return self._levels(&self._asks, -1, n, 2)

    cdef object _array(self, Side* s, int sign, object n, object dtype):
        cdef int32_t count = s.hi - s.lo
        cdef int32_t k = count if n is None else max(0, min(<int32_t>n, count))
        cdef int32_t r, i
        cdef int64_t[:, ::1] iv
        cdef double[:, ::1] fv
        cdef double pscale, qscale
        dt = np.dtype(np.int64 if dtype is None else dtype)
        if dt == np.int64:
            arr = np.empty((k, 2), dtype=np.int64)
            iv = arr
            for r in range(k):
                i = s.hi - 1 - r
                if (s.qty[i] >> 63) != 0:
                    raise OverflowError(
                        f"{self.symbol}: quantity exceeds int64 lots; use dtype=float64 or bids()")
                iv[r, 0] = sign * s.key[i]
                iv[r, 1] = <int64_t>s.qty[i]
            return arr
        if dt == np.float64:
            arr = np.empty((k, 2), dtype=np.float64)
            fv = arr
            pscale = 10.0 ** self.price_precision
            qscale = 10.0 ** self.qty_precision
            for r in range(k):
                i = s.hi - 1 - r
                fv[r, 0] = sign * s.key[i] / pscale
                fv[r, 1] = <double>s.qty[i] / qscale
            return arr
        raise TypeError("dtype must be int64 (ticks/lots) or float64 (prices/quantities)")

    def bids_array(self, n=None, dtype=None):
        """Best bids as a ``(k, 2)`` numpy array: int64 ticks/lots (default) or float64."""
        return self._array(&self._bids, 1, n, dtype)

    def asks_array(self, n=None, dtype=None):
        """Best asks as a ``(k, 2)`` numpy array: int64 ticks/lots (default) or float64."""
        return self._array(&self._asks, -1, n, dtype)

    def price_text(self, ticks):
        """Exact decimal text of a price given in ticks."""
        return _fixed_text(ticks, self.price_precision)

    def qty_text(self, lots):
        """Exact decimal text of a quantity given in lots."""
        return _fixed_text(lots, self.qty_precision)

    # -- invariants ------------------------------------------------------------------------

    def _checksum_full(self):
        """The checksum rebuilt from scratch, bypassing every cache (tests and benchmarks)."""
        return crc32(self.checksum_input())

    def _check(self):
        """Assert every structural invariant; raise ``AssertionError`` naming the broken one."""
        cdef Side* s
        cdef int32_t i, r, n
        cdef char buf[TOKCAP]
        for name, sidx in (("bids", 0), ("asks", 1)):
            s = &self._bids if sidx == 0 else &self._asks
            if not (0 <= s.lo <= s.hi <= s.cap):
                raise AssertionError(f"{name}: bounds lo={s.lo} hi={s.hi} cap={s.cap}")
            if s.hi - s.lo > self.depth:
                raise AssertionError(f"{name}: {s.hi - s.lo} levels exceed depth {self.depth}")
            for i in range(s.lo, s.hi):
                if s.qty[i] == 0:
                    raise AssertionError(f"{name}: zero quantity at index {i}")
                if s.key[i] == 0:
                    raise AssertionError(f"{name}: zero price at index {i}")
                if (s.key[i] > 0) != (sidx == 0):
                    raise AssertionError(f"{name}: price sign at index {i}")
                if i > s.lo and s.key[i - 1] >= s.key[i]:
                    raise AssertionError(f"{name}: not strictly sorted at index {i}")
            for r in range(min(s.hi - s.lo, TOP)):
                if s.stale & (1 << r):
                    continue
                i = s.hi - 1 - r
                n = _fmt_u64(<uint64_t>abs(s.key[i]), buf)
                n += _fmt_u128(s.qty[i], buf + n)
                if n != s.toklen[r] or memcmp(buf, &s.tok[r][0], n) != 0:
                    raise AssertionError(f"{name}: cached checksum token of rank {r} is stale")
        if self.valid and self._crossed():
            raise AssertionError("valid book is crossed")
        if self._checksum() != self._checksum_full():
            raise AssertionError("incremental checksum differs from a full rebuild")

    def __repr__(self):
        state = "valid" if self.valid else "invalid"
        return (f"<L2Book {self.symbol} depth={self.depth} {state} "
                f"bids={self.bid_count} asks={self.ask_count}>")


cdef inline int _scale_fast(Lvl* lv, int pp, int qp, int qd=QTY_DIGITS) noexcept nogil:
    """Scale a staged level or order to ticks/lots (a qty below ``10**qd``): 0, or 1/2 when the
    price/qty is bad."""
    cdef u128 v
    if _scale(&lv.price, pp, PRICE_DIGITS, &v) != NUM_OK or v == 0:
        return 1
    lv.key = <int64_t>v if lv.side == SIDE_BID else -<int64_t>v
    if _scale(&lv.qty, qp, qd, &lv.lots) != NUM_OK:
        return 2
    return 0


cdef int _scale_staged(Lvl* lv, int pp, int qp, str symbol, const uint8_t* base,
                       object texts, int qd=QTY_DIGITS) except -1:
    """Scale a staged level or order to ticks/lots, raising :class:`NumberError` when it
    cannot be held exactly; ``texts`` gives (price, qty) text when there is no frame."""
    cdef u128 v
    cdef int code
    if _scale_fast(lv, pp, qp, qd) == 0:
        return 0
    code = _scale(&lv.price, pp, PRICE_DIGITS, &v)
    if code == NUM_OK and v == 0:
        code = NUM_ZERO_PRICE
    if code != NUM_OK:
        raise NumberError(symbol, str(texts[0]) if texts is not None else _span(base, &lv.price),
                          _num_reason(code, pp))
    code = _scale(&lv.qty, qp, qd, &lv.lots)
    raise NumberError(symbol, str(texts[1]) if texts is not None else _span(base, &lv.qty),
                      _num_reason(code, qp))


cdef object _refused(str symbol, str channel, str reason):
    """A :class:`DecodeError` for a message refused whole, attributed to its book."""
    exc = DecodeError(f"{symbol}: {reason}")
    exc.symbol = symbol
    exc.channel = channel
    return exc


cdef inline int32_t _levels_cap(int32_t depth) noexcept nogil:
    return LEVELS_FACTOR * depth + LEVELS_SLACK


cdef int _check_l2_message(const Lvl* lv, int32_t n, int32_t depth, str symbol) except -1:
    """Refuse an L2 message that addresses more price levels on one side than
    ``LEVELS_FACTOR * depth + LEVELS_SLACK``: the work a message costs (O(m * (depth + m)) for m
    levels) stays bounded whatever a hostile frame holds.

    :raises DecodeError: nothing has been applied
    """
    cdef int32_t i, nb = 0, na = 0, cap = _levels_cap(depth)
    for i in range(n):
        if lv[i].side == SIDE_BID:
            nb += 1
        elif lv[i].side == SIDE_ASK:
            na += 1
    if nb > cap or na > cap:
        raise _refused(symbol, "book",
                       f"{max(nb, na)} price levels on one side exceed {cap} "
                       f"({LEVELS_FACTOR} x depth {depth} + {LEVELS_SLACK})")
    return 0


cdef int64_t _checksum_arg(object checksum) except -2:
    """The checked entry points' ``checksum``: -1 for None, else an int in 0..2**32-1."""
    if checksum is None:
        return -1
    if isinstance(checksum, bool) or not isinstance(checksum, int):
        raise TypeError(f"checksum must be an int, not {type(checksum).__name__}")
    if not 0 <= checksum <= 0xFFFFFFFF:
        raise ValueError(f"checksum must be within 0..2**32-1, not {checksum}")
    return <int64_t>checksum


cdef object _apply_error(object book, int code, int64_t expected):
    """The exception an APPLY_* failure code means for ``book`` (None for success codes)."""
    if code == APPLY_MISMATCH:
        return ChecksumMismatch(book.symbol, expected, book.checksum(), book.checksum_input())
    if code == APPLY_CROSSED:
        return BookIntegrityError(
            book.symbol,
            f"crossed book: best bid {book.best_bid()} >= best ask {book.best_ask()}")
    return None


cdef int _raise_apply(object book, int code, int64_t expected) except -1:
    """Raise what an APPLY_* code means for ``book`` (an L2Book or Level3Book)."""
    exc = _apply_error(book, code, expected)
    if exc is not None:
        raise exc
    return 0


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


def parse_scaled(text, int precision, int digits=QTY_DIGITS):
    """Exact ``text * 10**precision`` as an int (any JSON number form, or a numeric string).

    A literal longer than 100 characters (``MAX_LITERAL``, the book engine's limit too) is
    refused whatever its value: no Kraken number comes near it, and the limit keeps the digit
    and exponent counts exact, so a value is either represented exactly or refused.

    >>> parse_scaled("1e-08", 8), parse_scaled("45285.2", 1), parse_scaled("0.566", 4)
    (1, 452852, 5660)

    :raises NumberError: negative, too precise, out of range, longer than 100 characters or
        not a number
    """
    cdef Num num
    cdef u128 v
    if not (0 <= digits <= QTY_DIGITS and 0 <= precision <= QTY_DIGITS):
        raise ValueError(f"digits and precision must be within 0..{QTY_DIGITS}")
    _parse_text_number(text, &num, "")
    code = _scale(&num, precision, digits, &v)
    if code != NUM_OK:
        raise NumberError("", text, _num_reason(code, precision))
    return _u128_to_int(v)


include "_l3.pxi"
include "_listener.pxi"


# --------------------------------------------------------------------------------------------
# The symbol index: frame symbol bytes -> book, without creating a Python object per message.

cdef struct SymSlot:
    uint64_t h
    PyObject* obj      # borrowed; the Feed's dicts own the books
    int32_t n
    char key[KEYCAP]


cdef inline uint64_t _fnv1a(const char* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <uint8_t>p[i]) * 1099511628211ULL
    return h


cdef class _SymbolIndex:
    cdef SymSlot* slots
    cdef uint32_t mask
    cdef uint32_t count
    cdef dict overflow    # keys longer than KEYCAP

    def __cinit__(self):
        self.slots = <SymSlot*>PyMem_Malloc(16 * sizeof(SymSlot))
        if self.slots == NULL:
            raise MemoryError()
        memset(self.slots, 0, 16 * sizeof(SymSlot))
        self.mask = 15
        self.count = 0
        self.overflow = {}

    def __dealloc__(self):
        PyMem_Free(self.slots)

    cdef PyObject* get(self, const char* k, Py_ssize_t n) noexcept:
        cdef uint64_t h
        cdef uint32_t i
        cdef SymSlot* s
        if n > KEYCAP:
            o = self.overflow.get(PyBytes_FromStringAndSize(k, n))
            return NULL if o is None else <PyObject*>o
        h = _fnv1a(k, n)
        i = <uint32_t>h & self.mask
        while True:
            s = &self.slots[i]
            if s.obj == NULL:
                return NULL
            if s.h == h and s.n == n and memcmp(s.key, k, n) == 0:
                return s.obj
            i = (i + 1) & self.mask

    cdef int put(self, bytes key, object obj) except -1:
        cdef Py_ssize_t n = len(key)
        cdef uint64_t h
        cdef uint32_t i
        cdef SymSlot* s
        if n > KEYCAP:
            self.overflow[key] = obj
            return 0
        if (self.count + 1) * 2 > self.mask + 1:
            self._grow()
        h = _fnv1a(PyBytes_AS_STRING(key), n)
        i = <uint32_t>h & self.mask
        while True:
            s = &self.slots[i]
            if s.obj == NULL or (s.h == h and s.n == n
                                 and memcmp(s.key, PyBytes_AS_STRING(key), n) == 0):
                if s.obj == NULL:
                    self.count += 1
                s.h = h
                s.n = <int32_t>n
                memcpy(s.key, PyBytes_AS_STRING(key), n)
                s.obj = <PyObject*>obj
                return 0
            i = (i + 1) & self.mask

    cdef int _grow(self) except -1:
        cdef SymSlot* old = self.slots
        cdef uint32_t oldn = self.mask + 1, i, j
        cdef uint32_t newn = oldn * 2
        self.slots = <SymSlot*>PyMem_Malloc(newn * sizeof(SymSlot))
        if self.slots == NULL:
            self.slots = old
            raise MemoryError()
        memset(self.slots, 0, newn * sizeof(SymSlot))
        self.mask = newn - 1
        for i in range(oldn):
            if old[i].obj != NULL:
                j = <uint32_t>old[i].h & self.mask
                while self.slots[j].obj != NULL:
                    j = (j + 1) & self.mask
                self.slots[j] = old[i]
        PyMem_Free(old)
        return 0


# --------------------------------------------------------------------------------------------
# The feed: raw frames in, books updated and verified.

_other_decoder = msgspec.json.Decoder(float_hook=Decimal)


cdef inline int64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline bint _depth_ok(int32_t depth) noexcept nogil:
    return depth == 10 or depth == 25 or depth == 100 or depth == 500 or depth == 1000


def _infer_depth(int levels):
    for d in ALLOWED_DEPTHS:
        if levels <= d:
            return d
    return 1000


@cython.final
cdef class Feed:
    """Decode raw Kraken frames (v2 objects and v1 arrays) into verified L2 books.

    Book frames are scanned straight from the bytes and applied without building a Python
    object per level; every other frame is decoded by msgspec and returned (numbers that are
    not integers become ``Decimal``). The feed learns what books need from the stream itself:
    v2 precisions from ``instrument`` messages, v2 depths from subscribe acks, v1 depths from
    channel names and v1 precisions from the wire strings.

    Repeated keys follow one rule on every path (v2 objects, v1 payload objects, levels and
    orders): the last occurrence of a key in one JSON object wins, as JSON readers do; Kraken's
    separate ask and bid payload objects of one v1 frame both apply. A v1 frame that mixes
    snapshot (``as``/``bs``) and update (``a``/``b``) keys is refused.

    Work per frame is bounded: a book message addressing more than ``4 * depth + 64`` price
    levels on one side, a level3 update of more than ``4 * depth + 1024`` events, or a level3
    snapshot repeating an order id is refused (:class:`DecodeError`, no book changed); number
    literals longer than 100 characters are refused (:class:`NumberError`). Staging memory
    grown by an outsized frame is given back after it.

    :param precisions: ``{symbol: (price_precision, qty_precision)}`` for v2 pairs
    :param default_depth: v2 depth (and level3 depth, when it is 10, 100 or 1000) when no
        subscribe ack was seen; None infers an L2 depth from the snapshot's size and takes
        Kraken's default of 10 for level3
    :param timing: accumulate the time spent inside :meth:`process` in :attr:`engine_ns`
    :param autocreate: a snapshot for a symbol without a book creates its book; when False
        only books made with :meth:`add_book`/:meth:`add_level3_book` are kept, and any other
        book message is an orphan (counted in :attr:`orphan_updates`, ``process`` returns None)
    :param max_books: when set, a snapshot creates a book only while the feed holds fewer books
        than this (explicitly added ones included); beyond it the message is an orphan, as
        with ``autocreate=False``. Explicit :meth:`add_book` calls are never refused.

    >>> feed = Feed(precisions={"BTC/USD": (1, 8)})
    >>> book = feed.process(b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",'
    ...     b'"bids":[{"price":45283.5,"qty":0.1}],"asks":[{"price":45285.2,"qty":0.001}],'
    ...     b'"checksum":2383917627}]}')
    >>> book.valid, book.best_bid()
    (True, (452835, 10000000))
    """

    cdef Lvl* _lv
    cdef int32_t _nlv
    cdef int32_t _caplv
    cdef Grp* _gr
    cdef int32_t _ngr
    cdef int32_t _capgr
    cdef char* _arena
    cdef int32_t _narena
    cdef int32_t _caparena
    cdef char _scratch[256]
    cdef _SymbolIndex _index_v2
    cdef _SymbolIndex _index_v1
    cdef _SymbolIndex _index_l3
    cdef dict _books_l3         # symbol -> Level3Book
    cdef dict _l3_depths        # symbol -> level3 depth from an ack (Kraken's default is 10)
    cdef object _last_book      # the book of the previous message, with its index key
    cdef bint _last_v1
    cdef int32_t _last_len
    cdef char _last_key[KEYCAP]
    cdef list _created          # (kind, key) of books created by the frame being committed
    cdef dict _books_v2         # symbol -> L2Book
    cdef dict _books_v1         # "book-N|PAIR" -> L2Book
    cdef dict _precisions       # v2 symbol -> (price_precision, qty_precision)
    cdef dict _depths           # v2 symbol -> depth from a subscribe ack
    cdef object _default_depth
    cdef bint _timing
    cdef object _channel        # channel of the frame being decoded, once known
    cdef int _chan_seen         # the frame named a channel (book, level3 or another one)
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

    def __cinit__(self, precisions=None, default_depth=None, bint timing=False,
                  bint autocreate=True, max_books=None):
        self._caplv = 256
        self._lv = <Lvl*>PyMem_Malloc(self._caplv * sizeof(Lvl))
        self._capgr = 4
        self._gr = <Grp*>PyMem_Malloc(self._capgr * sizeof(Grp))
        self._caparena = 256
        self._arena = <char*>PyMem_Malloc(self._caparena)
        if self._lv == NULL or self._gr == NULL or self._arena == NULL:
            raise MemoryError()
        self._index_v2 = _SymbolIndex()
        self._index_v1 = _SymbolIndex()
        self._index_l3 = _SymbolIndex()
        self._books_l3 = {}
        self._l3_depths = {}
        self._books_v2 = {}
        self._books_v1 = {}
        self._created = []
        self._precisions = {}
        self._depths = {}
        if default_depth is not None and default_depth not in ALLOWED_DEPTHS:
            raise ValueError(f"depth must be one of {ALLOWED_DEPTHS}")
        self._default_depth = default_depth
        self._timing = timing
        if max_books is not None and (isinstance(max_books, bool) or not isinstance(max_books, int)
                                      or max_books < 0):
            raise ValueError("max_books must be None or an int >= 0")
        self.autocreate = autocreate
        self.max_books = max_books
        self._last_len = -1
        for symbol, (pp, qp) in (precisions or {}).items():
            self.set_precision(symbol, pp, qp)

    def __dealloc__(self):
        PyMem_Free(self._lv)
        PyMem_Free(self._gr)
        PyMem_Free(self._arena)

    # -- configuration ---------------------------------------------------------------------

    def set_precision(self, str symbol, int price_precision, int qty_precision):
        """Record a v2 pair's precisions (and apply them to its book if it exists)."""
        if not (0 <= price_precision <= MAX_PRECISION and 0 <= qty_precision <= MAX_PRECISION):
            raise ValueError(f"precision must be within 0..{MAX_PRECISION}")
        self._precisions[symbol] = (price_precision, qty_precision)
        book = self._books_v2.get(symbol)
        if book is not None:
            (<L2Book>book).set_precision(price_precision, qty_precision)
        book = self._books_l3.get(symbol)
        if book is not None:
            (<Level3Book>book).set_precision(price_precision, qty_precision)

    def set_depth(self, str symbol, int depth):
        """Record the subscribed depth of a v2 symbol (as a subscribe ack would)."""
        if depth not in ALLOWED_DEPTHS:
            raise ValueError(f"depth must be one of {ALLOWED_DEPTHS}")
        self._depths[symbol] = depth
        book = self._books_v2.get(symbol)
        if book is not None and (<L2Book>book).depth != depth:
            (<L2Book>book).depth = depth
            (<L2Book>book).clear()

    def level3_book(self, str symbol):
        """The level3 book of ``symbol``, or None."""
        return self._books_l3.get(symbol)

    def book(self, str symbol, int depth=0):
        """The v2 book of ``symbol``, or with ``depth`` the v1 book of channel ``book-<depth>``."""
        if depth:
            return self._books_v1.get(f"book-{depth}|{symbol}")
        return self._books_v2.get(symbol)

    @property
    def books(self):
        """Every book, keyed ``("v2", symbol)``, ``("v1", "book-N|PAIR")`` or ``("l3", symbol)``."""
        out = {("v2", k): v for k, v in self._books_v2.items()}
        out.update({("v1", k): v for k, v in self._books_v1.items()})
        out.update({("l3", k): v for k, v in self._books_l3.items()})
        return out

    def add_book(self, str symbol, int depth=10, price_precision=None, qty_precision=None,
                 str protocol="v2"):
        """Create (or replace) the book of ``symbol``: v2, or v1 channel ``book-<depth>``.

        A v1 book without precisions learns them from its first snapshot's strings.
        """
        if protocol == "v1":
            book = L2Book(symbol, depth, price_precision, qty_precision)
            key = f"book-{depth}|{symbol}"
            self._books_v1[key] = book
            self._index_v1.put(key.encode(), book)
            self._last_len = -1
            return book
        if protocol != "v2":
            raise ValueError("protocol must be 'v2' or 'v1'")
        if price_precision is None and symbol in self._precisions:
            price_precision, qty_precision = self._precisions[symbol]
        book = L2Book(symbol, depth, price_precision, qty_precision)
        self._books_v2[symbol] = book
        self._index_v2.put(symbol.encode(), book)
        self._depths[symbol] = depth
        self._last_len = -1
        return book

    def add_level3_book(self, str symbol, int depth=10, price_precision=None,
                        qty_precision=None):
        """Create (or replace) the level3 book of ``symbol``, as its first snapshot would.

        Precisions default to those known for ``symbol`` (``instrument`` or
        :meth:`set_precision`); without them the book's snapshot raises
        :class:`UnknownPrecision` until they are known.

        :raises ValueError: a depth other than 10, 100 or 1000
        """
        if price_precision is None and symbol in self._precisions:
            price_precision, qty_precision = self._precisions[symbol]
        book = Level3Book(symbol, depth, price_precision, qty_precision)
        self._books_l3[symbol] = book
        self._index_l3.put(symbol.encode(), book)
        self._l3_depths[symbol] = depth
        self._last_len = -1
        return book

    def _staging(self):
        """``(levels, groups, arena bytes)`` the staging areas hold now (for tests)."""
        return self._caplv, self._capgr, self._caparena

    cdef bint _may_create(self):
        """Whether a snapshot for a symbol without a book may create one (see the class)."""
        if not self.autocreate:
            return False
        return self.max_books is None or (len(self._books_v2) + len(self._books_v1)
                                          + len(self._books_l3)) < self.max_books

    def set_level3_depth(self, str symbol, int depth):
        """Record the subscribed level3 depth of ``symbol`` (Kraken's ack does not echo it)."""
        if depth not in (10, 100, 1000):
            raise ValueError("level3 depth must be 10, 100 or 1000")
        self._l3_depths[symbol] = depth
        book = self._books_l3.get(symbol)
        if book is not None and (<Level3Book>book).depth != depth:
            (<Level3Book>book).depth = depth
            (<Level3Book>book).clear()

    # -- processing ------------------------------------------------------------------------

    def process(self, frame):
        """Decode one frame and apply it.

        :param frame: ``bytes`` or any buffer (e.g. a ``memoryview``) holding one WebSocket
            message. It is only read during the call.
        :return: the :class:`L2Book` a book frame updated (also when the update was dropped
            because the book awaits a snapshot), None for an update of a symbol that has no
            book yet, or the decoded object for any other message
        :raises DecodeError: malformed frame; no book was changed
        :raises UnknownPrecision: a v2 snapshot for a pair without known precisions
        :raises ChecksumMismatch: after applying, a book disagrees with the exchange's checksum
            (the book is invalid until its next snapshot)
        :raises BookIntegrityError: a verified book is crossed (invalid until its next snapshot)
        """
        cdef Py_buffer view
        cdef int64_t t0 = 0
        if self._timing:
            t0 = _now_ns()
        if type(frame) is bytes:
            try:
                return self._process(<const uint8_t*>PyBytes_AS_STRING(frame),
                                     PyBytes_GET_SIZE(frame), frame)
            finally:
                if self._timing:
                    self.engine_ns += _now_ns() - t0
        PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE)
        try:
            return self._process(<const uint8_t*>view.buf, view.len, frame)
        finally:
            PyBuffer_Release(&view)
            if self._timing:
                self.engine_ns += _now_ns() - t0

    cdef object _process(self, const uint8_t* p, Py_ssize_t n, object frame):
        cdef object result = self._process_raw(p, n)
        if result is _NOT_BOOK:
            return self._decode_other(frame)
        return result

    cdef object _process_raw(self, const uint8_t* p, Py_ssize_t n):
        """Apply a book frame (returning its book or None) or return _NOT_BOOK untouched."""
        cdef Scan sc
        sc.base = p
        sc.end = p + n
        sc.err = NULL
        sc.at = NULL
        self.frames += 1
        self._nlv = 0
        self._ngr = 0
        self._narena = 0
        p = _ws(p, sc.end)
        self._channel = None
        self._chan_seen = 0
        self._frame_many = None
        self._frame_last = None
        try:
            return self._process_scan(&sc, p)
        finally:
            if (self._caplv > STAGE_KEEP or self._caparena > ARENA_KEEP
                    or self._capgr > STAGE_KEEP):
                self._shrink()

    cdef void _shrink(self) noexcept:
        """Give memory back after an outsized frame: staging returns to a moderate size.

        Invariant: called between frames only (nothing staged is read afterwards).
        """
        cdef Lvl* lv
        cdef Grp* g
        cdef char* a
        self._nlv = 0
        self._ngr = 0
        self._narena = 0
        if self._caplv > STAGE_KEEP:
            lv = <Lvl*>PyMem_Malloc(STAGE_KEEP * sizeof(Lvl))
            if lv != NULL:
                PyMem_Free(self._lv)
                self._lv = lv
                self._caplv = STAGE_KEEP
        if self._capgr > STAGE_KEEP:
            g = <Grp*>PyMem_Malloc(STAGE_KEEP * sizeof(Grp))
            if g != NULL:
                PyMem_Free(self._gr)
                self._gr = g
                self._capgr = STAGE_KEEP
        if self._caparena > ARENA_KEEP:
            a = <char*>PyMem_Malloc(ARENA_KEEP)
            if a != NULL:
                PyMem_Free(self._arena)
                self._arena = a
                self._caparena = ARENA_KEEP

    cdef object _process_scan(self, Scan* sc, const uint8_t* p):
        cdef int kind
        try:
            if p < sc.end and p[0] == 123:
                kind = self._parse_v2(sc, p)
            elif p < sc.end and p[0] == 91:
                kind = self._parse_v1(sc, p)
            else:
                raise DecodeError(_describe(sc, p, "expected a JSON object or array"))
            if kind == KIND_BOOK:
                return self._commit(sc)
        except DecodeError as exc:
            self._attribute(exc, sc)
            raise
        return _NOT_BOOK

    cdef _attribute(self, exc, Scan* sc):
        """Say which books a refused frame concerned (the error path only: may be slow)."""
        if exc.channel is None:
            exc.channel = self._channel
        raw = (<const char*>sc.base)[:sc.end - sc.base]
        symbols = list(self._staged_symbols()) if self._channel is not None else []
        if raw[:1] != b"[":
            # entries after the failing one were never staged: find every symbol they name
            for m in _SYMBOL_FIELD.finditer(raw):
                name = m.group(1).decode("utf-8", "replace")
                if name not in symbols:
                    symbols.append(name)
        exc.symbols = tuple(symbols)
        if exc.symbol is None and symbols:
            exc.symbol = symbols[0]
        if self._channel is None:
            # a frame that named another channel, or carries no book marker at all, cannot
            # have been a book message; a v1 array cut before its name, or a v2 object cut
            # inside its channel, can
            exc.may_affect_books = not self._chan_seen and (
                raw.lstrip()[:1] == b"[" or b'"channel"' in raw or b"book" in raw
                or b"level3" in raw)

    cdef list _staged_symbols(self):
        cdef int32_t i
        cdef Grp* g
        cdef list out = []
        for i in range(self._ngr):
            g = &self._gr[i]
            if g.has_symbol and g.sym_off + g.sym_len <= self._narena:
                key = (self._arena + g.sym_off)[:g.sym_len].decode("utf-8", "replace")
                key = key.partition("|")[2] if g.name_len else key
                if key not in out:
                    out.append(key)
        return out

    @property
    def frame_books(self):
        """Every book the last book frame addressed (a v2 frame can carry several symbols).

        :meth:`process` returns the last of them; updates of books awaiting a snapshot are
        included (they were dropped), symbols without a book are not.
        """
        if self._frame_many is not None:
            return self._frame_many
        return () if self._frame_last is None else (self._frame_last,)

    cdef object _decode_other(self, object frame):
        try:
            obj = _other_decoder.decode(frame)
        except msgspec.DecodeError as exc:
            err = DecodeError(f"malformed frame: {exc}")
            err.may_affect_books = False   # the scanner read it whole: not a book message
            raise err from None
        self.other_messages += 1
        if type(obj) is dict:
            self._learn(obj)
        return obj

    cdef _forget_created(self, Py_ssize_t keep):
        """Drop the books created since ``self._created[keep]`` (their frame was refused)."""
        cdef Py_ssize_t i
        for i in range(len(self._created) - 1, keep - 1, -1):
            kind, key = self._created[i]
            table = self._books_v1 if kind == 1 else (self._books_l3 if kind == 2
                                                      else self._books_v2)
            table.pop(key, None)
        del self._created[keep:]
        self._rebuild_indexes()

    cdef _rebuild_indexes(self):
        self._index_v2 = _SymbolIndex()
        self._index_v1 = _SymbolIndex()
        self._index_l3 = _SymbolIndex()
        for key, book in self._books_v2.items():
            self._index_v2.put(key.encode(), book)
        for key, book in self._books_v1.items():
            self._index_v1.put(key.encode(), book)
        for key, book in self._books_l3.items():
            self._index_l3.put(key.encode(), book)
        self._last_len = -1

    cdef _learn(self, dict msg):
        """Take what books need from non-book messages: precisions and subscribed depths."""
        channel = msg.get("channel")
        if channel == "instrument":
            data = msg.get("data")
            pairs = data.get("pairs") if isinstance(data, dict) else None
            if isinstance(pairs, list):
                for pair in pairs:
                    # an instrument entry the engine cannot use is skipped, never fatal
                    try:
                        pp, qp = pair["price_precision"], pair["qty_precision"]
                        if not (_small_number(pp) and _small_number(qp)):
                            continue    # JSON true, 1e999999999 (int() would not end)...
                        if pp != int(pp) or qp != int(qp):
                            continue    # a fractional precision is no precision
                        self.set_precision(pair["symbol"], int(pp), int(qp))
                    except (KeyError, TypeError, ValueError, OverflowError, ArithmeticError):
                        continue
        elif msg.get("method") == "subscribe" and msg.get("success") is True:
            result = msg.get("result")
            if isinstance(result, dict) and result.get("channel") == "book":
                depth = result.get("depth", 10)
                symbol = result.get("symbol")
                if isinstance(symbol, str) and type(depth) is int and depth in ALLOWED_DEPTHS:
                    self.set_depth(symbol, depth)
            elif isinstance(result, dict) and result.get("channel") == "level3":
                depth = result.get("depth", 10)
                symbol = result.get("symbol")
                if isinstance(symbol, str) and type(depth) is int and depth in (10, 100, 1000):
                    self.set_level3_depth(symbol, depth)

    # -- staging helpers -------------------------------------------------------------------

    cdef Lvl* _new_level(self) except NULL:
        cdef Lvl* lv
        if self._nlv == self._caplv:
            lv = <Lvl*>PyMem_Realloc(self._lv, 2 * self._caplv * sizeof(Lvl))
            if lv == NULL:
                raise MemoryError()
            self._lv = lv
            self._caplv *= 2
        self._nlv += 1
        return &self._lv[self._nlv - 1]

    cdef Grp* _new_group(self) except NULL:
        cdef Grp* g
        if self._ngr == self._capgr:
            g = <Grp*>PyMem_Realloc(self._gr, 2 * self._capgr * sizeof(Grp))
            if g == NULL:
                raise MemoryError()
            self._gr = g
            self._capgr *= 2
        g = &self._gr[self._ngr]
        self._ngr += 1
        memset(g, 0, sizeof(Grp))
        g.first = self._nlv
        g.checksum = -1
        return g

    cdef int32_t _stash(self, const char* p, Py_ssize_t n) except -1:
        """Copy bytes into the per-frame arena; return their offset."""
        cdef char* a
        cdef int32_t off = self._narena
        while self._narena + n > self._caparena:
            a = <char*>PyMem_Realloc(self._arena, 2 * self._caparena)
            if a == NULL:
                raise MemoryError()
            self._arena = a
            self._caparena *= 2
        memcpy(self._arena + off, p, n)
        self._narena += <int32_t>n
        return off

    cdef int32_t _stash_string(self, Scan* sc, const uint8_t* s, const uint8_t* e,
                               bint esc) except -1:
        """Stash a string body (decoded when it holds escapes); return its decoded length."""
        cdef Py_ssize_t n
        cdef char* tmp
        if not esc:
            self._stash(<const char*>s, e - s)
            return <int32_t>(e - s)
        tmp = <char*>PyMem_Malloc((e - s) + 4)
        if tmp == NULL:
            raise MemoryError()
        try:
            n = _unescape(s, e - s, tmp, (e - s) + 4)
            if n < 0:
                raise DecodeError(_describe(sc, s, "invalid string escape"))
            self._stash(tmp, n)
        finally:
            PyMem_Free(tmp)
        return <int32_t>n

    # -- v2 --------------------------------------------------------------------------------

    cdef int _parse_v2(self, Scan* sc, const uint8_t* p) except -1:
        cdef const uint8_t* end = sc.end
        cdef const uint8_t* data_at = NULL
        cdef const uint8_t* q
        cdef bint parsed = False
        cdef int channel = 0, parsed_as = 0, mtype = MSG_UNKNOWN, more, which, val
        cdef int32_t i
        p = _ws(p + 1, end)
        if p < end and p[0] == 125:
            p = p + 1
        else:
            while True:
                p = _key(sc, p, V2_TOP_KEYS, &which, self._scratch)
                if p == NULL:
                    break
                if which == 1 or which == 2:      # channel, type
                    if p < end and p[0] == 34:
                        p = _match_str(sc, p, BOOK_NAME if which == 1 else TYPE_NAMES,
                                       &val, self._scratch + 64)
                    else:
                        val = 0
                        p = _skip_value(sc, p, 1)
                    if which == 1:
                        self._chan_seen = 1
                        channel = KIND_BOOK if val == 1 else (KIND_L3 if val == 2 else 3)
                        self._channel = ("book" if channel == KIND_BOOK
                                         else "level3" if channel == KIND_L3 else None)
                    else:
                        mtype = (MSG_SNAPSHOT if val == 1
                                 else MSG_UPDATE if val == 2 else MSG_UNKNOWN)
                elif which == 3:                  # data
                    data_at = p
                    if channel == KIND_BOOK or channel == KIND_L3:
                        q = self._parse_book_data(sc, p, channel == KIND_L3)
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
        if channel != KIND_BOOK and channel != KIND_L3:
            return KIND_OTHER
        if data_at == NULL:
            raise DecodeError("book message without 'data'")
        if not parsed or parsed_as != channel:
            # "data" came before "channel", or "channel" was repeated: the last one wins
            sc.err = NULL
            if self._parse_book_data(sc, data_at, channel == KIND_L3) == NULL:
                raise DecodeError(_describe(sc, sc.at, sc.err))
        if mtype == MSG_UNKNOWN:
            raise DecodeError("book message whose 'type' is neither 'snapshot' nor 'update'")
        for i in range(self._ngr):
            self._gr[i].kind = <uint8_t>mtype
        if channel == KIND_L3 and mtype == MSG_UPDATE:
            for i in range(self._nlv):
                if self._lv[i].event == EV_NONE and self._lv[i].side != SIDE_DEAD:
                    raise DecodeError("level3 update order without 'event'")
        return KIND_BOOK

    cdef const uint8_t* _parse_book_data(self, Scan* sc, const uint8_t* p,
                                         bint l3) except? NULL:
        cdef const uint8_t* end = sc.end
        cdef int more
        self._nlv = 0
        self._ngr = 0
        self._narena = 0
        if p >= end or p[0] != 91:
            return _fail(sc, p, "book 'data' must be an array")
        p = _ws(p + 1, end)
        if p < end and p[0] == 93:
            return p + 1
        while True:
            p = self._parse_book_entry(sc, p, l3)
            if p == NULL:
                return NULL
            more = _next(sc, &p, 93)
            if more < 0:
                return NULL
            if more == 0:
                return p

    cdef const uint8_t* _parse_book_entry(self, Scan* sc, const uint8_t* p,
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
        g = self._new_group()
        g.l3 = l3
        gi = self._ngr - 1
        p = _ws(p + 1, end)
        if p < end and p[0] == 125:
            return _fail(sc, p, "book entry without 'symbol'")
        while True:
            p = _key(sc, p, V2_ENTRY_KEYS, &which, self._scratch)
            if p == NULL:
                return NULL
            if which == 1 or which == 2:
                if l3:
                    p = self._parse_l3_orders(sc, p, gi, SIDE_BID if which == 1 else SIDE_ASK)
                else:
                    p = self._parse_v2_levels(sc, p, gi, SIDE_BID if which == 1 else SIDE_ASK)
            elif which == 3:
                if p >= end or p[0] != 34:
                    return _fail(sc, p, "'symbol' must be a string")
                ks = p + 1
                esc = False
                p = _scan_string(sc, p, &esc)
                if p == NULL:
                    return NULL
                g = &self._gr[gi]
                g.sym_off = self._narena
                g.sym_len = self._stash_string(sc, ks, p - 1, esc)
                g.has_symbol = 1
            elif which == 4:
                p = _scan_num_value(sc, p, &num)
                if p == NULL:
                    return NULL
                if _checksum_value(&num, &self._gr[gi].checksum) < 0:
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
        g = &self._gr[gi]
        if not g.has_symbol:
            return _fail(sc, p, "book entry without 'symbol'")
        g.count = self._nlv - g.first
        return p

    cdef void _supersede(self, int32_t gi, uint8_t side) noexcept:
        """A repeated 'bids'/'asks' key: the last one wins, as in any JSON object decoder."""
        self._supersede_from(self._gr[gi].first, side)

    cdef void _supersede_from(self, int32_t first, uint8_t side) noexcept:
        """Mark the levels of ``side`` staged since ``first`` as superseded."""
        cdef int32_t i
        for i in range(first, self._nlv):
            if self._lv[i].side == side:
                self._lv[i].side = SIDE_DEAD

    cdef const uint8_t* _parse_v2_levels(self, Scan* sc, const uint8_t* p, int32_t gi,
                                         uint8_t side) except? NULL:
        cdef const uint8_t* end = sc.end
        cdef const uint8_t* q
        cdef bint has_p, has_q
        cdef Lvl* lv
        cdef int more, mk, which
        cdef uint8_t bit = 1 << side
        if self._gr[gi].seen & bit:
            self._supersede(gi, side)
        self._gr[gi].seen |= bit
        if p >= end or p[0] != 91:
            return _fail(sc, p, "'bids'/'asks' must be an array")
        p = _ws(p + 1, end)
        if p < end and p[0] == 93:
            return p + 1
        while True:
            if p >= end or p[0] != 123:
                return _fail(sc, p, "a price level must be an object")
            lv = self._new_level()
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
                    p = _key(sc, p, V2_LEVEL_KEYS, &which, self._scratch)
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

    cdef const uint8_t* _order_fast(self, Scan* sc, const uint8_t* p, Lvl* lv) except? NULL:
        """``{"event":"add","order_id":"..","limit_price":N,"order_qty":N,"timestamp":".."}``
        exactly as Kraken writes it (``event`` absent in snapshots), or NULL."""
        cdef const uint8_t* end = sc.end
        cdef const uint8_t* ids
        cdef bint esc = False
        if end - p < 40 or memcmp(p, b'{"', 2) != 0:
            return NULL
        p += 1
        if memcmp(p, b'"event":"', 9) == 0:
            p += 9
            if end - p >= 4 and memcmp(p, b'add"', 4) == 0:
                lv.event = EV_ADD
                p += 4
            elif end - p >= 7 and memcmp(p, b'modify"', 7) == 0:
                lv.event = EV_MODIFY
                p += 7
            elif end - p >= 7 and memcmp(p, b'delete"', 7) == 0:
                lv.event = EV_DELETE
                p += 7
            else:
                return NULL
            if p >= end or p[0] != 44:
                return NULL
            p += 1
        if end - p < 13 or memcmp(p, b'"order_id":"', 12) != 0:
            return NULL
        p += 12
        ids = p
        while p < end and STR_PLAIN[p[0]]:
            p += 1
        if p >= end or p[0] != 34 or p == ids or p - ids > IDCAP:
            return NULL   # escapes, odd bytes or a bad length: the general path decides
        lv.id_off = self._narena
        lv.id_len = <int32_t>(p - ids)
        self._stash(<const char*>ids, p - ids)
        p += 1
        if end - p < 15 or memcmp(p, b',"limit_price":', 15) != 0:
            return NULL
        p = _scan_num_value(sc, p + 15, &lv.price)
        if p == NULL or end - p < 13 or memcmp(p, b',"order_qty":', 13) != 0:
            return NULL
        p = _scan_num_value(sc, p + 13, &lv.qty)
        if p == NULL or p >= end:
            return NULL
        if p[0] == 44:
            if end - p < 14 or memcmp(p, b',"timestamp":"', 14) != 0:
                return NULL
            p = _scan_string(sc, p + 13, &esc)
            if p == NULL or p >= end:
                return NULL
        if p[0] != 125:
            return NULL
        return p + 1

    cdef const uint8_t* _parse_l3_orders(self, Scan* sc, const uint8_t* p, int32_t gi,
                                         uint8_t side) except? NULL:
        cdef const uint8_t* end = sc.end
        cdef const uint8_t* q
        cdef const uint8_t* ks
        cdef bint esc, has_id, has_p, has_q
        cdef Lvl* lv
        cdef int more, mk, which, ev
        cdef uint8_t bit = 1 << side
        if self._gr[gi].seen & bit:
            self._supersede(gi, side)
        self._gr[gi].seen |= bit
        if p >= end or p[0] != 91:
            return _fail(sc, p, "'bids'/'asks' must be an array")
        p = _ws(p + 1, end)
        if p < end and p[0] == 93:
            return p + 1
        while True:
            if p >= end or p[0] != 123:
                return _fail(sc, p, "a level3 order must be an object")
            lv = self._new_level()
            lv.side = side
            lv.event = EV_NONE
            # Kraken's own layout, byte for byte; anything else takes the general loop below
            q = self._order_fast(sc, p, lv)
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
                p = _key(sc, p, V2_ORDER_KEYS, &which, self._scratch)
                if p == NULL:
                    return NULL
                if which == 1:
                    if p >= end or p[0] != 34:
                        return _fail(sc, p, "'event' must be a string")
                    p = _match_str(sc, p, EVENT_NAMES, &ev, self._scratch + 64)
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
                    lv.id_off = self._narena
                    lv.id_len = self._stash_string(sc, ks, p - 1, esc)
                    if not 0 < lv.id_len <= IDCAP:
                        return _fail(sc, ks, "order id empty or longer than 30 bytes")
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

    # -- v1 --------------------------------------------------------------------------------

    cdef int _parse_v1(self, Scan* sc, const uint8_t* p) except -1:
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
        g = self._new_group()
        p = _ws(p + 1, end)
        if p < end and p[0] == 93:
            p += 1
        else:
            while True:
                if idx == 0:
                    p = _skip_value(sc, p, 1)
                elif p < end and p[0] == 123:
                    q = self._parse_v1_payload(sc, p, &kind, &checksum)
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
            return KIND_OTHER
        name = _view(s_start[0], s_end[0], s_esc[0], self._scratch, 64)
        if name.n < 6 or memcmp(name.p, b"book-", 5) != 0:
            return KIND_OTHER
        self._channel = "book"
        g = &self._gr[0]
        g.name_len = self._stash_string(sc, s_start[0], s_end[0], s_esc[0])
        self._stash("|", 1)
        g.sym_off = 0
        g.sym_len = g.name_len + 1 + self._stash_string(sc, s_start[1], s_end[1], s_esc[1])
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
        elif kind < 0:
            raise DecodeError(
                "v1 book message mixes snapshot ('as'/'bs') and update ('a'/'b') keys")
        # the key "<channel>|<pair>" was stashed above; the pair alone is the symbol
        g = &self._gr[0]
        g.kind = <uint8_t>kind
        g.checksum = checksum
        g.depth = depth
        g.count = self._nlv - g.first
        return KIND_BOOK

    cdef const uint8_t* _parse_v1_payload(self, Scan* sc, const uint8_t* p, int* kind,
                                          int64_t* checksum) except? NULL:
        cdef const uint8_t* end = sc.end
        cdef Num num
        cdef int more, this, which
        cdef int32_t first = self._nlv   # this payload's first staged level
        cdef uint8_t seen = 0, bit
        cdef uint8_t side
        p = _ws(p + 1, end)
        if p < end and p[0] == 125:
            return p + 1
        while True:
            p = _key(sc, p, V1_PAYLOAD_KEYS, &which, self._scratch)
            if p == NULL:
                return NULL
            if 1 <= which <= 4:       # a, b (update) / as, bs (snapshot)
                this = MSG_UPDATE if which <= 2 else MSG_SNAPSHOT
                if kind[0] == MSG_UNKNOWN:
                    kind[0] = this
                elif kind[0] != this:
                    kind[0] = -1
                side = SIDE_ASK if which % 2 == 1 else SIDE_BID
                bit = 1 << side
                if seen & bit:
                    # a repeated key inside one payload object: the last one wins, as in JSON
                    # (Kraken's separate ask and bid objects of one frame both apply)
                    self._supersede_from(first, side)
                seen |= bit
                p = self._parse_v1_levels(sc, p, side)
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

    cdef const uint8_t* _parse_v1_levels(self, Scan* sc, const uint8_t* p,
                                         uint8_t side) except? NULL:
        cdef const uint8_t* end = sc.end
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
            lv = self._new_level()
            lv.side = side
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

    # -- commit ----------------------------------------------------------------------------

    cdef object _resolve_l3(self, Grp* g):
        cdef const char* key = self._arena + g.sym_off
        cdef PyObject* found = self._index_l3.get(key, g.sym_len)
        cdef Level3Book book
        if found != NULL:
            return <Level3Book>found
        if g.kind != MSG_SNAPSHOT or not self._may_create():
            return None
        keyb = PyBytes_FromStringAndSize(key, g.sym_len)
        symbol = keyb.decode("utf-8")
        prec = self._precisions.get(symbol)
        if prec is None:
            raise UnknownPrecision(symbol)
        # an ack's depth, else the owner's default where level3 allows it, else Kraken's 10
        depth = self._l3_depths.get(
            symbol, self._default_depth if self._default_depth in (10, 100, 1000) else 10)
        book = Level3Book(symbol, depth, prec[0], prec[1])
        self._books_l3[symbol] = book
        self._index_l3.put(keyb, book)
        self._created.append((2, symbol))
        return book

    cdef object _resolve(self, Grp* g, bint v1):
        """Find (or, for a snapshot, create) the book a staged message addresses."""
        cdef const char* key = self._arena + g.sym_off
        cdef PyObject* found
        cdef L2Book book
        cdef int32_t i, nb = 0, na = 0
        if g.l3:
            return self._resolve_l3(g)
        if (self._last_len == g.sym_len and self._last_v1 == v1
                and memcmp(self._last_key, key, g.sym_len) == 0):
            found = <PyObject*>self._last_book
        else:
            found = (self._index_v1 if v1 else self._index_v2).get(key, g.sym_len)
            if found != NULL and g.sym_len <= KEYCAP:
                self._last_book = <object>found
                self._last_v1 = v1
                self._last_len = g.sym_len
                memcpy(self._last_key, key, g.sym_len)
        if found != NULL:
            book = <L2Book>found
            if v1 and g.kind == MSG_SNAPSHOT and book.depth != g.depth:
                book.depth = g.depth
            return book
        if g.kind != MSG_SNAPSHOT or not self._may_create():
            return None
        keyb = PyBytes_FromStringAndSize(key, g.sym_len)
        if v1:
            symbol = keyb[g.name_len + 1:].decode("utf-8")
            book = L2Book(symbol, g.depth)
            self._books_v1[keyb.decode("utf-8")] = book
            self._index_v1.put(keyb, book)
            self._created.append((1, keyb.decode("utf-8")))
            return book
        symbol = keyb.decode("utf-8")
        prec = self._precisions.get(symbol)
        if prec is None:
            raise UnknownPrecision(symbol)
        depth = self._depths.get(symbol, self._default_depth)
        if depth is None:
            for i in range(g.first, g.first + g.count):
                if self._lv[i].side == SIDE_BID:
                    nb += 1
                elif self._lv[i].side == SIDE_ASK:
                    na += 1
            depth = _infer_depth(max(nb, na))
        book = L2Book(symbol, depth, prec[0], prec[1])
        self._books_v2[symbol] = book
        self._index_v2.put(keyb, book)
        self._created.append((0, symbol))
        return book

    cdef object _commit(self, Scan* sc):
        cdef int32_t gi, i
        cdef int pp, qp
        cdef Grp* g
        cdef L2Book book
        cdef Level3Book l3
        cdef object last = None, target
        cdef Lvl* lv
        cdef bint v1
        cdef int code
        cdef list failures = None
        # phase 1: resolve books and scale every number; nothing is applied yet, and books
        # this frame created are dropped again if any of its numbers is refused
        # invariant: _created is empty between frames; it lists the books this frame created
        try:
            for gi in range(self._ngr):
                g = &self._gr[gi]
                v1 = g.name_len > 0
                g.pp = g.qp = -1
                target = self._resolve(g, v1)
                if target is None:
                    g.book = NULL
                    continue
                g.book = <PyObject*>target
                if g.l3:
                    l3 = <Level3Book>target
                    if g.kind != MSG_SNAPSHOT and not l3.valid:
                        continue
                    if l3.price_precision < 0:
                        raise UnknownPrecision(l3.symbol)
                    for i in range(g.first, g.first + g.count):
                        if (self._lv[i].side != SIDE_DEAD and _scale_fast(
                                &self._lv[i], l3.price_precision, l3.qty_precision,
                                L3_QTY_DIGITS)):
                            l3._scale_event(&self._lv[i], sc.base)   # raises with the details
                    _check_l3_message(&self._lv[g.first], g.count, self._arena, l3.depth,
                                      g.kind == MSG_SNAPSHOT, l3.symbol)
                    continue
                book = <L2Book>target
                if g.kind != MSG_SNAPSHOT and not book.valid:
                    continue
                pp = book.price_precision
                qp = book.qty_precision
                if v1 and (g.kind == MSG_SNAPSHOT or pp < 0):
                    # v1 strings are written at the pair's full precision; every snapshot says
                    # it again (a pair's decimals can change)
                    for i in range(g.first, g.first + g.count):
                        lv = &self._lv[i]
                        if lv.side != SIDE_DEAD:
                            pp = min(lv.price.frac, MAX_PRECISION)
                            qp = min(lv.qty.frac, MAX_PRECISION)
                            break
                    if pp < 0:
                        continue        # nothing to scale, nothing learned
                    g.pp = <int8_t>pp
                    g.qp = <int8_t>qp
                elif pp < 0:
                    raise UnknownPrecision(book.symbol)
                for i in range(g.first, g.first + g.count):
                    if self._lv[i].side != SIDE_DEAD and _scale_fast(&self._lv[i], pp, qp):
                        _scale_staged(&self._lv[i], pp, qp, book.symbol, sc.base, None)
                _check_l2_message(&self._lv[g.first], g.count, g.depth if v1 else book.depth,
                                  book.symbol)
        except BaseException:
            if self._created:
                self._forget_created(0)
            raise
        if self._created:
            self._created.clear()
        # phase 2: apply
        many = [] if self._ngr > 1 else None
        for gi in range(self._ngr):
            g = &self._gr[gi]
            if g.book == NULL:
                self.orphan_updates += 1
                continue
            target = <object>g.book
            last = target
            if many is not None and target not in many:
                many.append(target)
            self.book_messages += 1
            if g.l3:
                code = (<Level3Book>target)._apply_staged(&self._lv[g.first], g.count, self._arena,
                                                          g.kind, g.checksum)
            else:
                book = <L2Book>target
                if g.pp >= 0 and (g.pp != book.price_precision or g.qp != book.qty_precision):
                    book.set_precision(g.pp, g.qp)
                code = book._apply_staged(&self._lv[g.first], g.count, g.kind, g.checksum)
            if g.checksum >= 0 and code != APPLY_DROPPED:
                if code == APPLY_MISMATCH:
                    self.checksum_mismatches += 1
                else:
                    self.checksums_verified += 1
            if code == APPLY_MISMATCH or code == APPLY_CROSSED:
                if code == APPLY_CROSSED:
                    self.integrity_errors += 1
                if failures is None:
                    failures = []
                failures.append((target, code, g.checksum))
        self._frame_last = last
        if many is not None:
            self._frame_many = tuple(many)
        if failures is not None:
            # the first failure is raised; the others of the same frame ride along in ``also``
            errors = [_apply_error(t, c, e) for t, c, e in failures]
            errors[0].also = tuple(errors[1:])
            raise errors[0]
        return last


_SYMBOL_FIELD = re.compile(rb'"symbol"\s*:\s*"((?:[^"\\]|\\.){1,100})"')
cdef bint _small_number(object v):
    """An int, or a finite Decimal below 1000 in magnitude: cheap to compare with int(v)."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, Decimal) and v.is_finite() and v.adjusted() < 3


cdef str _describe(Scan* sc, const uint8_t* at, const char* why):
    cdef Py_ssize_t off, lo, hi
    reason = (<bytes>why).decode() if why != NULL else "malformed frame"
    if at == NULL:
        return reason
    off = at - sc.base
    lo = max(0, off - 24)
    hi = min(sc.end - sc.base, off + 24)
    excerpt = (<const char*>sc.base)[lo:hi].decode("utf-8", "replace")
    return f"{reason} at byte {off}: ...{excerpt}..."
