"""Number and time text exactly as Kraken puts it on the wire, from integers only.

Every price and quantity in the simulator is an integer count of ticks or lots; this module turns
those integers (and integer nanosecond timestamps) into the text the two protocol versions use:

* v1 quotes decimals as strings written with the pair's full precision (``"5541.30000"``), and
  timestamps as epoch seconds with six decimals (``"1534614248.456738"``);
* v2 writes decimals as JSON numbers the way a float printer would, so trailing zeros disappear
  (``0.566`` for ``0.5660``) but an integral value keeps its ``.0`` (``740.0``); increments in the
  ``instrument`` channel use float ``repr`` style, exponent included (``1e-08``); timestamps are
  RFC 3339 with six or nine fractional digits depending on the field.

What it is not: a general formatter. No float is ever involved, negative zero does not exist, and
the v2 number text never uses an exponent for a price or a quantity (the engine's book scanner is
entitled to refuse one).
"""

from __future__ import annotations

import time
from decimal import Decimal

__all__ = [
    "decimal_of",
    "epoch_text",
    "fixed",
    "increment",
    "number",
    "pow10",
    "rfc3339_ns",
    "rfc3339_us",
    "round_div",
    "units_of",
]

_NS_PER_S = 1_000_000_000


def pow10(n: int) -> int:
    """Return ``10**n`` for ``n >= 0`` (typed as int; mypy types ``int ** int`` as Any)."""
    power: int = 10**n
    return power


def fixed(units: int, dp: int) -> str:
    """Write ``units / 10**dp`` with exactly ``dp`` decimals, as v1 strings are written.

    >>> fixed(55413, 1), fixed(500, 8), fixed(-17, 5), fixed(7, 0)
    ('5541.3', '0.00000500', '-0.00017', '7')
    """
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), pow10(dp))
    return f"{sign}{whole}.{fraction:0{dp}d}" if dp else f"{sign}{whole}"


def number(units: int, dp: int) -> str:
    """Write ``units / 10**dp`` as a v2 JSON number: trailing zeros dropped, ``.0`` kept.

    This is how Kraken's float printer renders engine values, and it is the reason a v2 client
    must re-apply the pair's precision before it checksums.

    >>> number(5660, 4), number(7400, 1), number(-17, 5), number(100000000, 8)
    ('0.566', '740.0', '-0.00017', '1.0')
    """
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), pow10(dp))
    if fraction == 0:
        return f"{sign}{whole}.0"
    return f"{sign}{whole}.{f'{fraction:0{dp}d}'.rstrip('0')}"


def increment(dp: int) -> str:
    """Write ``10**-dp`` as Python's float ``repr`` would (``0.1``, ``0.0001``, ``1e-05``).

    The ``instrument`` channel prints increments this way (``"qty_increment":1e-08``).

    >>> increment(0), increment(1), increment(4), increment(8)
    ('1.0', '0.1', '0.0001', '1e-08')
    """
    if dp == 0:
        return "1.0"
    if dp <= 4:
        return "0." + "0" * (dp - 1) + "1"
    return f"1e-{dp:02d}"


def decimal_of(units: int, dp: int) -> Decimal:
    """Return ``units / 10**dp`` as an exact :class:`~decimal.Decimal` (any size, no context).

    >>> decimal_of(5660, 4), decimal_of(12345678901234567890123, 5)
    (Decimal('0.5660'), Decimal('123456789012345678.90123'))
    """
    # Through the exponent form: Decimal's constructor is exact, arithmetic would round at 28
    # digits and SHIB-sized quantities have more.
    return Decimal(f"{units}E-{dp}")


def units_of(value: Decimal, dp: int) -> int:
    """Return ``value * 10**dp`` as an exact int (the inverse of :func:`decimal_of`).

    :raises ValueError: if ``value`` has more than ``dp`` decimals or is not finite.

    >>> units_of(Decimal("0.566"), 4), units_of(Decimal("123456789012345678.90123"), 5)
    (5660, 12345678901234567890123)
    """
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"not a finite number: {value}")
    coefficient = int("".join(map(str, digits)) or "0")
    shift = exponent + dp
    if shift >= 0:
        units = coefficient * pow10(shift)
    else:
        units, rest = divmod(coefficient, pow10(-shift))
        if rest:
            raise ValueError(f"{value} has more than {dp} decimals")
    return -units if sign else units


def round_div(numerator: int, denominator: int) -> int:
    """Return ``numerator / denominator`` rounded half away from zero, in integers.

    >>> round_div(5, 2), round_div(-5, 2), round_div(4, 3)
    (3, -3, 1)
    """
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    q, r = divmod(abs(numerator), denominator)
    if 2 * r >= denominator:
        q += 1
    return -q if numerator < 0 else q


# The date part changes once a second at most; caching it keeps timestamp text cheap on the hot
# path (several timestamps per message).
_cached_second = -1
_cached_prefix = ""


def _prefix(seconds: int) -> str:
    global _cached_second, _cached_prefix
    if seconds != _cached_second:
        _cached_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _cached_second = seconds
    return _cached_prefix


def rfc3339_us(ns: int) -> str:
    """RFC 3339 UTC with microseconds, as v2 book, ticker, trade and ack times are written.

    >>> rfc3339_us(1_696_613_755_440_295_123)
    '2023-10-06T17:35:55.440295Z'
    """
    seconds, rest = divmod(ns, _NS_PER_S)
    return f"{_prefix(seconds)}.{rest // 1000:06d}Z"


def rfc3339_ns(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds, as level3 order times and ohlc ``interval_begin`` are.

    >>> rfc3339_ns(1_696_613_755_440_295_123)
    '2023-10-06T17:35:55.440295123Z'
    """
    seconds, rest = divmod(ns, _NS_PER_S)
    return f"{_prefix(seconds)}.{rest:09d}Z"


def epoch_text(ns: int) -> str:
    """Epoch seconds with six decimals, as v1 writes every timestamp.

    >>> epoch_text(1_534_614_248_456_738_999)
    '1534614248.456738'
    """
    seconds, rest = divmod(ns, _NS_PER_S)
    return f"{seconds}.{rest // 1000:06d}"
