"""kbook: a Kraken Spot WebSocket client built around an exact, checksum-verified book engine.

The engine (:mod:`kbook._core`) keeps L2 books as scaled integers, verifies every Kraken CRC32
checksum incrementally, and decodes book frames straight from their bytes. This package's
public names are listed in ``__all__``; everything else is private.
"""

from kbook._core import (
    BookIntegrityError,
    ChecksumMismatch,
    DecodeError,
    Feed,
    KBookError,
    L2Book,
    Level3Book,
    NumberError,
    UnknownPrecision,
    crc32,
    parse_scaled,
)
from kbook._version import __version__

__all__ = [
    "BookIntegrityError",
    "ChecksumMismatch",
    "DecodeError",
    "Feed",
    "KBookError",
    "L2Book",
    "Level3Book",
    "NumberError",
    "UnknownPrecision",
    "__version__",
    "crc32",
    "parse_scaled",
]
