# Definitions of the engine: the 128-bit quantity type, named enums, limits and the C structs
# every room shares. Included by _core.pxd, so the books' and the feed's layouts are visible to
# any Cython module that cimports kbook._core; it holds declarations only, no code.

from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from cpython.object cimport PyObject

cdef extern from *:
    """
    #if !defined(__SIZEOF_INT128__)
    #error "kbook needs a C compiler with unsigned __int128 (gcc or clang on a 64-bit target)"
    #endif
    typedef unsigned __int128 kb_u128;
    """
    # Cython only needs to know this is an unsigned integer; C sees the real 128-bit type.
    # It must never be coerced to a Python object implicitly: use _u128_to_int().
    ctypedef unsigned long long u128 "kb_u128"


cdef enum:
    TOP = 10            # Kraken's checksums cover the 10 best price levels of each side
    TOKCAP = 64         # bytes per checksum token buffer: <= 18 price + <= 38 qty digits
    CLEAN = 127         # "no top-10 rank changed since the last checksum"
    UNCHANGED = 0x3FFFFFFF  # top_changed of a message that changed no level at any rank
    MAX_NESTING = 64    # deeper JSON than this is hostile, not a Kraken message
    PRICE_DIGITS = 18   # prices are < 10**18 ticks, so they fit int64
    QTY_DIGITS = 38     # quantities are < 10**38 lots, so they fit 128 bits
    MAX_PRECISION = 18  # more decimals than this is not a real pair
    KEYCAP = 80         # symbol-index keys up to this many bytes live in the C table
    XPOW_TABLE = 1280   # 2 * TOP * TOKCAP: x**(8n) is tabled for both sides' top-10 tokens
    MAX_LITERAL = 100   # longest number literal a book takes (quotes excluded): exact counts
    L3_QTY_DIGITS = 29  # level3 orders are < 10**29 lots: 2**31 of them sum below 2**128
    LEVELS_FACTOR = 4   # a book message may address LEVELS_FACTOR * depth + LEVELS_SLACK
    LEVELS_SLACK = 64   # price levels per side; more is hostile, refused before any change
    L3_EVENTS_SLACK = 1024  # a level3 update may carry LEVELS_FACTOR * depth + this many events
    STAGE_KEEP = 4096   # staged levels kept between frames after an outsized one
    ARENA_KEEP = 65536  # arena bytes kept likewise
    IDCAP = 30          # bytes of an order id kept inline (Kraken's ids have 19)
    CHUNK_SHIFT = 6     # 64 orders (4 KiB) per level3 pool chunk: small books stay small
    CHUNK = 64
    SCRATCH = 256       # bytes of per-frame scratch for decoding escaped names


cdef enum Side:
    SIDE_BID = 0
    SIDE_ASK = 1
    SIDE_DEAD = 255     # staged level superseded by a repeated key (last key wins, as in JSON)


cdef enum FrameKind:        # what a frame turned out to be, once scanned
    FRAME_OTHER = 0         # not a book message: handed to the general decoder
    FRAME_BOOK = 1          # a book or level3 message, staged


cdef enum Channel:          # the channel a v2 frame names
    CHAN_NONE = 0
    CHAN_BOOK = 1
    CHAN_L3 = 2
    CHAN_OTHER = 3


cdef enum MsgKind:
    MSG_UNKNOWN = 0
    MSG_SNAPSHOT = 1
    MSG_UPDATE = 2
    MSG_MIXED = 3           # v1: snapshot and update keys in one frame (refused)


cdef enum Event:            # a level3 order event
    EV_NONE = 0
    EV_ADD = 1
    EV_MODIFY = 2
    EV_DELETE = 3


cdef enum NumStatus:
    NUM_OK = 0
    NUM_NEGATIVE = 1
    NUM_TOO_PRECISE = 2
    NUM_RANGE = 3
    NUM_ZERO_PRICE = 4
    NUM_TOO_LONG = 5


cdef enum SetResult:        # what setting an L2 level did
    SET_ABSENT = 0          # a delete of a level that is not there
    SET_UPDATED = 1
    SET_INSERTED = 2
    SET_DELETED = 3


cdef enum ApplyResult:
    APPLY_ERROR = -1        # an exception is set: the C functions' error return
    APPLY_OK = 0
    APPLY_DROPPED = 1       # an update for a book awaiting a snapshot
    APPLY_MISMATCH = 2
    APPLY_CROSSED = 3


# -- numbers and the scanner ----------------------------------------------------------------

cdef struct Num:
    u128 mant       # the digits as an integer (trailing zeros may remain)
    int32_t exp     # value == mant * 10**exp
    int32_t frac    # fraction digits as written (v1 strings carry the pair's precision)
    int32_t off     # text span inside the frame, quotes excluded, for error messages
    int32_t len
    uint8_t neg
    uint8_t big     # more significant digits than any book value can hold


cdef struct Scan:
    const uint8_t* base
    const uint8_t* end
    const char* err
    const uint8_t* at


# -- the ladder: one side's price levels, shared by both books -------------------------------

cdef struct Ladder:
    int64_t* key        # ascending: bids store the price, asks its negation; best at hi - 1
    char* val           # vsize bytes of per-level payload, parallel to key
    int32_t vsize
    int32_t lo          # levels live in [lo, hi); gaps at both ends absorb inserts
    int32_t hi
    int32_t cap


cdef struct L2Side:
    Ladder lad          # payload: the level's u128 quantity
    # checksum cache, by rank (0 = best): the length and CRC register (from zero) of the
    # token of each of the 10 best levels, and the suffix registers that combine them; the
    # token text itself is not kept (a changed token is re-hashed from its numbers)
    uint16_t stale          # bit r: token r must be re-hashed
    int32_t dirty           # lowest top-10 rank changed since the last checksum, or CLEAN
    int32_t dirty_hi        # highest rank whose suffix register must be recombined (-1: none)
    int32_t touched         # lowest rank (any depth) the message being applied changed
    int32_t nsuf            # how many ranks suf/slen were combined over (-1: none)
    uint8_t toklen[TOP]
    uint32_t tcrc[TOP]      # CRC register of each token alone, started from zero
    # the price digits' register of each rank, kept while only its quantity changes (the
    # usual update): a re-hash then reads one number's digits, not two
    uint16_t pstale         # bit r: the price register of rank r must be recomputed
    uint8_t plen[TOP]
    uint32_t pcrc[TOP]
    # suf[r] combines the tokens of ranks r..nsuf-1, so a change at rank r (mostly near the
    # touch) recombines ranks r..0 only, one carry-less multiply each
    uint32_t suf[TOP + 1]
    int32_t slen[TOP + 1]   # their total length


cdef struct L3Level:        # a level3 ladder's payload: the level's FIFO of orders
    u128 total
    int32_t head        # pool indices of the first and last order (-1: none)
    int32_t tail
    int32_t orders


cdef struct L3Order:
    u128 qty
    int64_t key         # the level's key (price for bids, -price for asks)
    int32_t prev        # queue neighbours (pool indices, -1 at the ends); next doubles as
    int32_t next        # the free-list link of a free slot
    uint8_t idlen
    uint8_t side
    char id[IDCAP]


cdef struct LevelSlot:     # the checksum segment of one top-10 level (its text is not kept)
    int64_t len         # its length in bytes
    uint32_t crc        # CRC register over the segment, started from zero
    uint32_t pcrc       # CRC register (from zero) of the level's price digits
    int32_t np          # and their count: both set when the segment is hashed whole


cdef struct L3Side:
    Ladder lad          # payload: L3Level
    uint16_t stale      # bit r: the segment of rank r must be re-hashed
    int32_t dirty       # lowest rank whose segment or position changed, or CLEAN
    int32_t dirty_hi    # highest such rank (-1: none)
    int32_t touched     # lowest rank (any depth) the message being applied changed
    LevelSlot slot[TOP]
    # suffix registers: suf[r] combines the segments of ranks r..n-1, so a change at rank r
    # (mostly the touch) recombines ranks r..0 only
    uint32_t suf[TOP + 1]
    int64_t slen[TOP + 1]   # their total length


# -- staging: a frame is decoded completely before any book changes ---------------------------

cdef struct Lvl:
    Num price
    Num qty
    int64_t key
    uint64_t id_hash    # level3: _id_hash of the order id, taken while decoding (it fills what
    u128 lots           # would be padding before lots: a staged level stays 144 bytes)
    uint8_t side        # Side
    uint8_t event       # level3: Event (EV_NONE until known)
    int32_t id_off      # level3: order id in the stage's arena
    int32_t id_len


cdef struct Grp:
    int32_t first       # index of the first staged level
    int32_t count
    int64_t checksum    # -1 when the message carries none
    int32_t sym_off     # decoded symbol (v2) or "channel|pair" (v1) in the arena
    int32_t sym_len
    int32_t name_len    # v1: length of the channel-name prefix of the key
    int32_t depth       # v1: from the channel name
    uint8_t kind        # MsgKind
    uint8_t l3          # a level3 message
    int8_t pp           # v1: precisions this message is scaled at (-1: the book's own)
    int8_t qp
    uint8_t has_symbol
    uint8_t seen        # bit 0: bids seen, bit 1: asks seen (a repeated key replaces)
    PyObject* book


cdef struct Stage:
    Lvl* lv
    int32_t nlv
    int32_t caplv
    Grp* gr
    int32_t ngr
    int32_t capgr
    char* arena         # symbols and order ids of the frame, decoded
    int32_t narena
    int32_t caparena
    int32_t channel     # Channel the frame named, once known (v1 book frames: CHAN_BOOK)
    bint chan_seen      # the frame named a channel (book, level3 or another one)
    char scratch[SCRATCH]


cdef struct SymSlot:
    uint64_t h
    PyObject* obj      # borrowed; the Feed's dicts own the books
    int32_t n
    char key[KEYCAP]
