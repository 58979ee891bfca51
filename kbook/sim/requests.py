"""Parsing of order-entry request values shared by the v1 and v2 trading protocols.

Requests arrive as JSON decoded with ``parse_float=Decimal`` (v2 sends JSON numbers, v1 mostly
decimal strings), so a price or quantity is never a float here. Each helper turns one value into
what :mod:`kbook.sim.exchange` works in (ticks, lots, ledger units, epoch nanoseconds) or raises
:class:`~kbook.sim.exchange.Reject` with Kraken's error string: ``EGeneral:Invalid arguments:
<field>`` for a value of the wrong type or with too many decimals, and ``EOrder:Invalid price:
<pair> price can only be specified up to <n> decimals.`` for a price finer than the pair's tick
(the wording of Kraken's REST answer).

What it is not: validation of an order as a whole (minimums, funds, engine state: the exchange
does that) or a wire format.
"""

from __future__ import annotations

import calendar
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from kbook.sim.exchange import E_ARGS, E_DEADLINE
from kbook.sim.records import Reject
from kbook.sim.wire import units_of

__all__ = [
    "amount",
    "boolean",
    "check_cl_ord_id",
    "check_deadline",
    "price",
    "rfc3339_to_ns",
    "string",
    "userref",
]

_CL_ORD_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12}|[0-9a-fA-F]{32}|[\x20-\x7e]{1,18}"
)
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d\d):(\d\d))?"
)
#: Kraken accepts deadlines up to a minute ahead.
DEADLINE_MAX_NS = 60 * 10**9


def _decimal(value: Any, name: str, strings: bool) -> Decimal:
    if isinstance(value, bool):
        raise Reject(f"{E_ARGS}:{name}")
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif strings and isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise Reject(f"{E_ARGS}:{name}") from None
    else:
        raise Reject(f"{E_ARGS}:{name}")
    if not number.is_finite():
        raise Reject(f"{E_ARGS}:{name}")
    return number


def amount(value: Any, dp: int, name: str, strings: bool = False) -> int:
    """A quantity as an integer count of ``10**-dp`` (lots, or quote ledger units).

    :param strings: accept decimal strings (v1) as well as JSON numbers.
    """
    number = _decimal(value, name, strings)
    try:
        return units_of(number, dp)
    except ValueError:
        raise Reject(f"{E_ARGS}:{name}") from None


def price(value: Any, dp: int, symbol: str, name: str, strings: bool = False) -> int:
    """A limit price in ticks; a price finer than the tick is ``EOrder:Invalid price``."""
    number = _decimal(value, name, strings)
    try:
        return units_of(number, dp)
    except ValueError:
        raise Reject(
            f"EOrder:Invalid price:{symbol} price can only be specified up to {dp} decimals."
        ) from None


def boolean(value: Any, name: str, strings: bool = False) -> bool:
    """A flag; v1 documents ``"true"``/``"false"`` strings too."""
    if isinstance(value, bool):
        return value
    if strings and value in ("true", "false"):
        return bool(value == "true")
    raise Reject(f"{E_ARGS}:{name}")


def string(value: Any, name: str, choices: tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str) or (choices is not None and value not in choices):
        raise Reject(f"{E_ARGS}:{name}")
    return value


def userref(value: Any, name: str, strings: bool = False) -> int:
    """An ``order_userref`` (v1 ``userref``: an integer, or its decimal string)."""
    if isinstance(value, bool):
        raise Reject(f"{E_ARGS}:{name}")
    if isinstance(value, int):
        number = value
    elif strings and isinstance(value, str) and re.fullmatch(r"-?\d{1,10}", value):
        number = int(value)
    else:
        raise Reject(f"{E_ARGS}:{name}")
    if not -(2**31) <= number < 2**31:
        raise Reject(f"{E_ARGS}:{name}")
    return number


def check_cl_ord_id(value: Any) -> str:
    """A ``cl_ord_id``: a UUID, 32 hex digits, or up to 18 printable ASCII characters."""
    if not isinstance(value, str) or not _CL_ORD_ID.fullmatch(value):
        raise Reject(f"{E_ARGS}:cl_ord_id")
    return value


def rfc3339_to_ns(value: Any, name: str) -> int:
    """Epoch nanoseconds of an RFC 3339 time (lenient: any fraction length, ``Z`` optional).

    >>> rfc3339_to_ns("2023-10-06T17:35:55.440295Z", "t")
    1696613755440295000
    """
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise Reject(f"{E_ARGS}:{name}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    try:
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        raise Reject(f"{E_ARGS}:{name}") from None
    fraction = (match.group(7) or "").ljust(9, "0")
    if match.group(9):
        offset = (int(match.group(10)) * 60 + int(match.group(11))) * 60
        seconds -= offset if match.group(9) == "+" else -offset
    return seconds * 10**9 + int(fraction)


def check_deadline(value: Any, now_ns: int) -> None:
    """A ``deadline``: refused once elapsed, invalid more than a minute ahead."""
    deadline = rfc3339_to_ns(value, "deadline")
    if deadline <= now_ns:
        raise Reject(E_DEADLINE)
    if deadline > now_ns + DEADLINE_MAX_NS:
        raise Reject(f"{E_ARGS}:deadline")
