"""Exact column builders shared by the export and the history: scaled integers into Arrow.

Every price and quantity here is an integer count of units at a known scale (ticks, lots); these
helpers turn lists of them into Arrow ``decimal128`` arrays without going through ``float`` or
``Decimal``, by writing the 128-bit two's complement words Arrow stores directly.

What it is not: not a general Arrow toolkit; it knows only the column kinds kbook writes.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from kbook.capture import epoch_ns
from kbook.errors import ExportError

__all__ = [
    "TIME",
    "ExportError",
    "decimal_array",
    "epoch_ns",
    "rfc3339_ns",
    "scaled",
    "time_array",
]

# Timestamps with a time zone, nanosecond resolution (the contract).
TIME = pa.timestamp("ns", tz="UTC")
_I64_MAX = 2**63 - 1
_U64 = 2**64


def decimal_array(values: Sequence[int | None], precision: int, scale: int) -> pa.Array:
    """Return a ``decimal128(precision, scale)`` array whose unscaled values are ``values``.

    :param values: unscaled integers (``12345`` at scale 1 is ``1234.5``), None for null
    :raises ExportError: a value with more than ``precision`` digits
    """
    n = len(values)
    limit = 10**precision
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
    plain = [0 if v is None else v for v in values]
    words = np.zeros((n, 2), dtype=np.int64)
    try:
        ints = np.array(plain, dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
    except OverflowError:
        ints = None
    if ints is not None:
        if n and (int(ints.max()) >= limit or int(ints.min()) <= -limit):
            bad = next(v for v in plain if abs(v) >= limit)
            raise ExportError(f"{bad} does not fit decimal({precision}, {scale})")
        words[:, 0] = ints
        words[:, 1] = ints >> 63  # sign extension of the low word
    else:
        for i, v in enumerate(plain):
            if abs(v) >= limit:
                raise ExportError(f"{v} does not fit decimal({precision}, {scale})")
            u = v % (2**128)
            lo, hi = u % _U64, u // _U64
            words[i, 0] = lo - _U64 if lo > _I64_MAX else lo
            words[i, 1] = hi - _U64 if hi > _I64_MAX else hi
    nulls = n - int(valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(
        pa.decimal128(precision, scale), n, [bitmap, pa.py_buffer(words)], null_count=nulls
    )


def time_array(values: Sequence[int | None] | npt.NDArray[np.int64]) -> pa.Array:
    """Return a UTC nanosecond timestamp array from epoch nanoseconds (None for null)."""
    return pa.array(values, type=pa.int64()).cast(TIME)


def rfc3339_ns(text: str) -> int:
    """Return exact epoch nanoseconds of an RFC 3339 UTC time such as ``...T17:35:55.440295Z``."""
    head, dot, rest = text.partition(".")
    if dot:
        digits = rest.rstrip("Zz")
        if "+" in digits or "-" in digits or not digits.isdigit():
            raise ValueError(f"not an RFC 3339 UTC time: {text!r}")
    else:
        head, digits = text.rstrip("Zz"), ""
    seconds = _seconds(head)
    return seconds * 1_000_000_000 + int((digits + "000000000")[:9])


@functools.lru_cache(maxsize=4096)
def _seconds(head: str) -> int:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS`` (cached: a stream repeats its seconds)."""
    try:
        moment = datetime.fromisoformat(head)
    except ValueError:
        raise ValueError(f"not an RFC 3339 UTC time: {head!r}") from None
    return calendar.timegm(moment.utctimetuple())


def scaled(value: Decimal, scale: int, what: str) -> int:
    """Return ``value * 10**scale`` as an int, refusing any rounding.

    :raises ExportError: ``value`` has more than ``scale`` decimals
    """
    unscaled = value.scaleb(scale)
    if unscaled != unscaled.to_integral_value():
        raise ExportError(f"{what} {value} has more than {scale} decimals")
    return int(unscaled)


def decimals_of(value: Decimal) -> int:
    """Return how many decimals ``value`` is written with (``45000.10`` has 2, ``1E-8`` has 8)."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def fits_int64(value: int) -> bool:
    """Whether ``value`` fits a signed 64-bit integer."""
    return -_I64_MAX - 1 <= value <= _I64_MAX
