# CRC32 (zlib's reflected IEEE polynomial): slicing-by-16 tables, and the combine step that
# joins the registers of two strings (a carry-less multiply by x**(8n) mod P). It is not a
# checksum policy: which bytes a book hashes is each book's business.

cdef extern from *:
    """
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


cdef uint32_t CRC_TAB[16][256]  # slicing-by-16 tables for the reflected IEEE polynomial
cdef uint32_t CRC_INIT = 0xFFFFFFFFU   # zlib's initial register and final xor
cdef uint32_t XPOW8N[XPOW_TABLE + 1]  # x**(8n) mod P: appends n zero bytes to a CRC register
cdef uint32_t XPOW2K[48]    # x**(8 * 2**k) mod P, for strings longer than XPOW8N covers
cdef uint32_t XINV8N[TOKCAP + 1]  # x**(-8n) mod P: undoes appending n zero bytes
cdef uint32_t XINIT8N[XPOW_TABLE + 1]  # zlib's initial register advanced over n zero bytes


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


cdef inline uint32_t _crc8(uint32_t crc, uint64_t w) noexcept nogil:
    """Advance a CRC32 register over the 8 bytes of ``w``, lowest byte first (slicing-by-8)."""
    cdef uint32_t a = crc ^ <uint32_t>w, b = <uint32_t>(w >> 32)
    return (CRC_TAB[7][a & 0xFF] ^ CRC_TAB[6][(a >> 8) & 0xFF]
            ^ CRC_TAB[5][(a >> 16) & 0xFF] ^ CRC_TAB[4][a >> 24]
            ^ CRC_TAB[3][b & 0xFF] ^ CRC_TAB[2][(b >> 8) & 0xFF]
            ^ CRC_TAB[1][(b >> 16) & 0xFF] ^ CRC_TAB[0][b >> 24])


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


cdef inline uint32_t _xpow(int64_t n) noexcept nogil:
    """x**(8n) mod P: the operator that appends n zero bytes to a CRC register."""
    cdef uint32_t r
    cdef int k = 0
    if n <= XPOW_TABLE:
        return XPOW8N[n]
    r = 0x80000000
    while n:
        if n & 1:
            r = _mulmod(r, XPOW2K[k])
        n >>= 1
        k += 1
    return r


cdef inline uint32_t _init_shifted(int64_t n) noexcept nogil:
    """zlib's initial register advanced over n zero bytes (``CRC_INIT * x**(8n) mod P``): the
    term every checksum of an n-byte string starts from; a table lookup up to XPOW_TABLE."""
    if n <= XPOW_TABLE:
        return XINIT8N[n]
    return _mulmod(CRC_INIT, _xpow(n))


cdef void _init_crc_tables() noexcept:
    cdef uint32_t c
    cdef int i, k
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
    XPOW8N[0] = 0x80000000   # the polynomial 1 in the reflected representation
    for i in range(1, XPOW_TABLE + 1):
        XPOW8N[i] = _gf2_mulmod(XPOW8N[i - 1], 0x00800000)   # times x**8
    for i in range(XPOW_TABLE + 1):
        XINIT8N[i] = _gf2_mulmod(CRC_INIT, XPOW8N[i])
    # x**-1 is (P - 1) / x: in the reflected order, P's low 32 coefficients without x**0,
    # shifted one place towards x**0's bit, plus x**31 (P's x**32 divided by x)
    XINV8N[0] = 0x80000000
    c = 0x80000000
    for k in range(8):
        c = _gf2_mulmod(c, ((<uint32_t>0xEDB88320 & 0x7FFFFFFF) << 1) | 1)
    for i in range(1, TOKCAP + 1):
        XINV8N[i] = _gf2_mulmod(XINV8N[i - 1], c)   # times x**-8
    XPOW2K[0] = XPOW8N[1]
    for k in range(1, 48):
        XPOW2K[k] = _gf2_mulmod(XPOW2K[k - 1], XPOW2K[k - 1])
