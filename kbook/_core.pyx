"""The native engine of kbook: exact numbers, L2 and level3 books, CRC32 checksums and frame
decoding.

Private module; :mod:`kbook` re-exports the public names. It is not a JSON library: the
scanner validates a whole frame but materialises only what a book needs, and every message
that is not a book is handed back to a general decoder (msgspec). It is not a network client
either: the picows listener is its own module (:mod:`kbook._listener`), which cimports the
types declared in ``_core.pxd``.

Numbers never pass through ``float`` or ``Decimal`` here. A price is an ``int64`` count of
ticks (``10**-price_precision``), a quantity an unsigned 128-bit count of lots
(``10**-qty_precision``), parsed straight from the frame bytes. Kraken's checksum token of a
value is then simply the decimal digits of that integer.

This file is glue: the hot path stays one compilation unit, and its rooms live in
``kbook/_engine/``, included below in dependency order:

========================  ==================================================================
``defs.pxi``              enums, limits, structs (included by ``_core.pxd``)
``errors.pxi``            KBookError and its subclasses
``crc.pxi``               CRC32 tables, slicing-by-16, the carry-less combine step
``numbers.pxi``           scaling literals to ticks/lots, integers back to digits
``scan.pxi``              the byte scanner: a checked JSON cursor over one frame
``ladder.pxi``            one side's sorted price levels, shared by both books
``stage.pxi``             what a frame decodes into before any book changes
``book.pxi``              BookBase: what both books share
``l2.pxi``                L2Book and its incremental checksum
``l3.pxi``                Level3Book: order queues, pool, id index, checksum segments
``grammar_v2.pxi``        v2 envelope and book levels
``grammar_l3.pxi``        v2 level3 orders
``grammar_v1.pxi``        v1 array messages
``feed.pxi``              symbol index, resolve, commit, learning precisions and depths
========================  ==================================================================
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdlib cimport qsort
from libc.string cimport memcmp, memcpy, memmove, memset

import re
from decimal import Decimal

ALLOWED_DEPTHS = (10, 25, 100, 500, 1000)

include "_engine/errors.pxi"
include "_engine/crc.pxi"
include "_engine/numbers.pxi"
include "_engine/scan.pxi"
include "_engine/ladder.pxi"
include "_engine/stage.pxi"
include "_engine/book.pxi"
include "_engine/l2.pxi"
include "_engine/l3.pxi"
include "_engine/grammar_v2.pxi"
include "_engine/grammar_l3.pxi"
include "_engine/grammar_v1.pxi"
include "_engine/feed.pxi"


# --------------------------------------------------------------------------------------------
# How this engine was built

cdef extern from *:
    """
    #ifndef KBOOK_PROFILE_GUIDED
    #define KBOOK_PROFILE_GUIDED 0
    #endif
    """
    int KBOOK_PROFILE_GUIDED

#: Whether this engine was compiled with the profile of setup.py's training run (see setup.py);
#: benchmark figures say which build they timed.
PROFILE_GUIDED = KBOOK_PROFILE_GUIDED != 0


# --------------------------------------------------------------------------------------------
# Tables, filled once at import

_init_crc_tables()
_init_number_tables()
_init_scan_tables()


# --------------------------------------------------------------------------------------------
# Public functions

def crc32(data):
    """Return Kraken's (zlib's) CRC32 of ``data`` (bytes or str) as an unsigned int.

    >>> crc32(b"5005500") == __import__("zlib").crc32(b"5005500")
    True
    """
    if isinstance(data, str):
        data = (<str>data).encode("ascii")
    cdef bytes b = bytes(data)
    return _crc_update(CRC_INIT, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)) ^ CRC_INIT


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
    cdef NumStatus code
    if not (0 <= digits <= QTY_DIGITS and 0 <= precision <= QTY_DIGITS):
        raise ValueError(f"digits and precision must be within 0..{QTY_DIGITS}")
    _parse_text_number(text, &num, "")
    code = _scale(&num, precision, digits, &v)
    if code != NUM_OK:
        raise NumberError("", text, _num_reason(code, precision))
    return _u128_to_int(v)


def _mulmod_check(uint32_t a, uint32_t b):
    """(hardware-or-software product, software product): for tests of the combine step."""
    return _mulmod(a, b), _gf2_mulmod(a, b)


def _infer_depth(int levels):
    """The smallest subscribable L2 depth that holds ``levels`` levels (1000 at most)."""
    for d in ALLOWED_DEPTHS:
        if levels <= d:
            return d
    return 1000
