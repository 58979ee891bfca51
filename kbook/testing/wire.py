"""Write Kraken frames in random but equivalent JSON spellings (kbook's tests and kbook.testing).

A frame is described as a small tree (:class:`Obj` for objects, lists, ``str``, ``int``, ``bool``,
``None``, :class:`Num` for a v2 price/quantity/checksum, :class:`Fixed` for a v1 string number)
and written by :class:`Style`. Every spelling decodes, under ``json.loads``, to the same meaning:
random whitespace between tokens, shuffled keys, unknown extra keys, duplicate keys whose *last*
occurrence is the real one, ``\\uXXXX`` and ``\\/`` escapes, and numbers as plain decimals, with
extra trailing zeros, in exponent form (``12345e-3``, ``1.2345E+1``), as a negative zero for a
zero quantity (``-0.0``), or inside a JSON string. Style seed 0 writes the compact layout Kraken
itself sends. :func:`tree_of` reads any frame back into a tree, so :func:`restyle` can respell a
frame that was written elsewhere:

>>> restyle(b'{"channel":"book","type":"update","data":[]}', 0)
b'{"channel":"book","type":"update","data":[]}'
>>> import json
>>> frame = b'[336,{"a":[["5541.30000","2.50700000","1534614248.456738"]]},"book-10","XBT/USD"]'
>>> json.loads(restyle(frame, 4)) == json.loads(frame)  # "book\\u002D10", ...
True
>>> restyle(frame, 4) != frame
True

What it is not: it never writes a frame whose meaning differs from its tree (that is the tests'
job, on purpose and visibly). Prices and quantities are integers (ticks and lots) all the way; no
float is involved.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "MAX_TICKS",
    "Fixed",
    "Num",
    "Obj",
    "Style",
    "decimal_of",
    "fixed_text",
    "restyle",
    "tree_of",
    "units_of",
    "v1_book_frame",
    "v2_book_frame",
]

#: Highest price the engine stores: prices are below 10**18 ticks (an int64).
MAX_TICKS = 10**18 - 1

_WHITESPACE = (" ", "\n", "\t", "\r", "  ", "\r\n", " \t ")
# Unknown keys, some of them near misses of the real ones: none equals a key either decoder reads.
_EXTRA_KEYS = (
    "timestamp_ns",
    "x",
    "",
    "Price",
    "QTY",
    "pric",
    "prices",
    "qty ",
    " bids",
    "ask",
    "symbol2",
    "check_sum",
    "chan\u00e9l",
    "\u20ac",
    'a"b',
    "data_",
    "tYpe",
    "\U0001d539",
    "k" * 70,
)
_EXTRA_STRINGS = (
    "",
    "x",
    "BTC/USD",
    "a/b\\c",
    'quote"d',
    "tab\there",
    "line\nbreak",
    "\u00e9t\u00e9",
    "\u20ac",
    "\U0001d539\U0001f600",
    "\x7f",
    "\b\f",
    "2023-10-06T17:35:55.440295Z",
)
_EXTRA_NUMBERS = (
    "0",
    "-1",
    "1.5",
    "-0.0",
    "1e400",
    "-2.5E-400",
    "123456789012345678901234567890",
    "0.000000000000000000000000000000000000000001",
    "1E+2",
    "7e0",
)


@dataclass(frozen=True, slots=True)
class Num:
    """The value ``units / 10**dp`` (``units >= 0``), written in any equivalent JSON form."""

    units: int
    dp: int


@dataclass(frozen=True, slots=True)
class Fixed:
    """A v1 number: a JSON string with exactly ``dp`` decimals, as Kraken's v1 feed writes it."""

    units: int
    dp: int


@dataclass(slots=True)
class Obj:
    """A JSON object in its logical key order.

    ``decoys`` maps a key to a plausible but wrong value that a style may write *before* the real
    member; JSON decoders keep the last occurrence of a repeated key, so the meaning is unchanged.
    ``extras`` allows unknown members; ``shuffle`` allows any member order.
    """

    pairs: list[tuple[str, Any]]
    decoys: dict[str, Any] = field(default_factory=dict)
    extras: bool = True
    shuffle: bool = True


def fixed_text(units: int, dp: int) -> str:
    """Write ``units / 10**dp`` with exactly ``dp`` decimals (``fixed_text(5, 3) == "0.005"``)."""
    whole, fraction = divmod(units, 10**dp)
    return f"{whole}.{fraction:0{dp}d}" if dp else str(whole)


def decimal_of(units: int, dp: int) -> Decimal:
    """Return ``units / 10**dp`` as an exact Decimal (through its text, never through a context)."""
    return Decimal(fixed_text(units, dp))


def units_of(value: Decimal, dp: int) -> int:
    """Return ``value * 10**dp`` exactly; the value must be non-negative with at most dp decimals.

    Arithmetic on Decimals would round beyond the context's 28 digits, and quantities here have
    up to 38, so this goes through the digit tuple.
    """
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int) and sign == 0, value
    coefficient = int("".join(map(str, digits)))
    shift = exponent + dp
    if shift >= 0:
        scaled: int = coefficient * 10**shift
        return scaled
    power: int = 10**-shift
    units, rest = divmod(coefficient, power)
    assert rest == 0, f"{value} has more than {dp} decimals"
    return units


@dataclass(frozen=True, slots=True)
class _RawNumber:
    """A number token written verbatim (only inside unknown members)."""

    text: str


class Style:
    """One frame's way of writing JSON, drawn from a seed (0: Kraken's own compact layout).

    Each seed first draws how heavy each kind of variation is, so that some frames are almost
    canonical and others are dense with escapes, exponents and extra members.
    """

    def __init__(self, seed: int, *, numbers_as_strings: bool = True) -> None:
        self.rng = random.Random(seed)
        self.plain = seed == 0
        rng = self.rng
        level = (0.0, 0.05, 0.3, 0.8)
        self.p_ws = 0.0 if self.plain else rng.choice(level)
        self.p_escape = 0.0 if self.plain else rng.choice(level)
        self.p_extra = 0.0 if self.plain else rng.choice(level[:3])
        self.p_decoy = 0.0 if self.plain else rng.choice(level[:3])
        self.p_shuffle = 0.0 if self.plain else rng.choice(level)
        self.p_odd_number = 0.0 if self.plain else rng.choice(level)
        self.p_string_number = 0.0 if self.plain or not numbers_as_strings else rng.choice(level)

    # -- primitives ----------------------------------------------------------------------------

    def _chance(self, p: float) -> bool:
        return p > 0.0 and self.rng.random() < p

    def ws(self) -> str:
        """Return the whitespace to write between two tokens (often none)."""
        if not self._chance(self.p_ws):
            return ""
        return "".join(self.rng.choice(_WHITESPACE) for _ in range(self.rng.randint(1, 3)))

    def _u_escape(self, char: str) -> str:
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            units: tuple[int, ...] = (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF))
        else:
            units = (code,)
        out = ""
        for unit in units:
            digits = f"{unit:04x}"
            if self.rng.getrandbits(1):
                digits = digits.upper()
            out += "\\u" + digits
        return out

    def string(self, text: str) -> str:
        """Write a JSON string; characters may be escaped, the decoded text is always ``text``."""
        out = ['"']
        for char in text:
            if char in '"\\' or ord(char) < 0x20:
                short = {
                    '"': '\\"',
                    "\\": "\\\\",
                    "\b": "\\b",
                    "\f": "\\f",
                    "\n": "\\n",
                    "\r": "\\r",
                    "\t": "\\t",
                }.get(char)
                out.append(short if short and self.rng.getrandbits(1) else self._u_escape(char))
            elif char == "/" and self._chance(self.p_escape):
                out.append("\\/")
            elif self._chance(self.p_escape):
                out.append(self._u_escape(char))
            else:
                out.append(char)
        out.append('"')
        return "".join(out)

    def number(self, units: int, dp: int, *, allow_string: bool = True) -> str:
        """Write ``units / 10**dp`` as a JSON number in a random form, or a JSON string of one."""
        assert units >= 0 and dp >= 0
        if self.plain:
            text = _minimal(units, dp, keep_point=True)
        elif not self._chance(self.p_odd_number):
            text = _minimal(units, dp, keep_point=bool(self.rng.getrandbits(1)))
        else:
            text = self._odd_number(units, dp)
            if units == 0 and self.rng.getrandbits(1):
                text = "-" + text  # JSON's negative zero is zero: a delete like any other
        if allow_string and self._chance(self.p_string_number):
            return f'"{text}"'
        return text

    def _odd_number(self, units: int, dp: int) -> str:
        rng = self.rng
        form = rng.randrange(3)
        if form == 0:  # trailing zeros beyond the precision: 0.10000000000
            return fixed_text(units * 10 ** (pad := rng.randint(0, 4)), dp + pad)
        zeros = rng.randint(0, 3)
        digits = str(units * 10**zeros)
        exponent = -(dp + zeros)
        if form == 1:  # d.ddd or dddd, with an exponent: 1.2345E+1, 12345e-3
            point = rng.randint(1, len(digits))
            exponent += len(digits) - point
            mantissa = digits[:point] + ("." + digits[point:] if point < len(digits) else "")
        else:  # 0.000ddd with an exponent: 0.0012345e4
            lead = rng.randint(0, 3)
            exponent += len(digits) + lead
            mantissa = "0." + "0" * lead + digits
        sign = "-" if exponent < 0 else rng.choice(("", "+"))
        width = rng.choice((1, 1, 2, 3))
        return f"{mantissa}{rng.choice('eE')}{sign}{abs(exponent):0{width}d}"

    # -- values --------------------------------------------------------------------------------

    def value(self, node: Any, depth: int = 0) -> str:
        """Write any tree node."""
        if isinstance(node, Obj):
            return self._object(node, depth)
        if isinstance(node, list):
            ws = self.ws
            inner = ("," + ws()).join(self.value(item, depth + 1) + ws() for item in node)
            return "[" + ws() + inner + "]"
        if isinstance(node, Num):
            return self.number(node.units, node.dp)
        if isinstance(node, Fixed):
            return '"' + fixed_text(node.units, node.dp) + '"'
        if isinstance(node, _RawNumber):
            return node.text
        if isinstance(node, bool):
            return "true" if node else "false"
        if node is None:
            return "null"
        if isinstance(node, int):
            return str(node)
        if isinstance(node, str):
            return self.string(node)
        raise TypeError(f"cannot write {node!r}")

    def _object(self, obj: Obj, depth: int) -> str:
        rng = self.rng
        members = [(key, value) for key, value in obj.pairs]
        if obj.shuffle and self._chance(self.p_shuffle):
            rng.shuffle(members)
        for key, decoy in obj.decoys.items():
            if self._chance(self.p_decoy) and any(k == key for k, _ in members):
                real = next(i for i, (k, _) in enumerate(members) if k == key)
                members.insert(rng.randint(0, real), (key, decoy))
        if obj.extras and depth < 6:
            while self._chance(self.p_extra):
                extra = (rng.choice(_EXTRA_KEYS), self._random_json(depth))
                members.insert(rng.randint(0, len(members)), extra)
        ws = self.ws
        body = ("," + ws()).join(
            self.string(key) + ws() + ":" + ws() + self.value(value, depth + 1) + ws()
            for key, value in members
        )
        return "{" + ws() + body + "}"

    def _random_json(self, depth: int) -> Any:
        """A random value for an unknown member (written as a tree, so it gets styled too)."""
        rng = self.rng
        kind = rng.randrange(8 if depth < 3 else 6)
        if kind == 0:
            return rng.choice(_EXTRA_STRINGS)
        if kind == 1:
            return _RawNumber(rng.choice(_EXTRA_NUMBERS))
        if kind == 2:
            return Num(rng.randrange(10 ** rng.randint(1, 30)), rng.randint(0, 20))
        if kind == 3:
            return rng.choice((True, False, None))
        if kind == 4:
            return rng.randrange(-(2**70), 2**70)
        if kind == 5:
            return []
        if kind == 6:
            return [self._random_json(depth + 1) for _ in range(rng.randint(1, 3))]
        return Obj([(rng.choice(_EXTRA_KEYS), self._random_json(depth + 1))])


def _minimal(units: int, dp: int, *, keep_point: bool) -> str:
    """Shortest decimal text, as a float repr prints it: ``0.566``, ``45281.0`` (or ``45281``)."""
    whole, fraction = divmod(units, 10**dp)
    if fraction == 0:
        return f"{whole}.0" if keep_point else str(whole)
    return f"{whole}.{f'{fraction:0{dp}d}'.rstrip('0')}"


Level = tuple[int, int]  # (price ticks, quantity lots)


def _v2_level(price: int, lots: int, pp: int, qp: int, rng: random.Random) -> Obj:
    decoy_price = Num(rng.randint(1, 10**6), rng.randint(0, 12))
    decoy_qty = Num(rng.randint(0, 10**6), rng.randint(0, 18))
    return Obj(
        [("price", Num(price, pp)), ("qty", Num(lots, qp))],
        decoys={"price": decoy_price, "qty": decoy_qty},
    )


def v2_book_frame(
    style: Style,
    kind: str,
    symbol: str,
    bids: list[Level],
    asks: list[Level],
    pp: int,
    qp: int,
    checksum: int | None,
    timestamp: str,
) -> bytes:
    """Write one v2 ``book`` message (``kind`` is ``"snapshot"`` or ``"update"``)."""
    rng = style.rng
    entry_pairs: list[tuple[str, Any]] = [
        ("symbol", symbol),
        ("bids", [_v2_level(p, q, pp, qp, rng) for p, q in bids]),
        ("asks", [_v2_level(p, q, pp, qp, rng) for p, q in asks]),
    ]
    if checksum is not None:
        # Kraken writes a JSON integer; other styles also try 3310070434.0, 3.310070434E9, "...".
        odd = not style.plain and rng.getrandbits(1)
        entry_pairs.append(("checksum", Num(checksum, 0) if odd else checksum))
    entry_pairs.append(("timestamp", timestamp))
    decoy_levels = [_v2_level(rng.randint(1, 999), rng.randint(1, 999), 0, 0, rng)]
    entry = Obj(
        entry_pairs,
        decoys={
            "symbol": "DECOY/" + symbol,
            "bids": decoy_levels,
            "asks": decoy_levels,
            "checksum": Num(rng.randrange(2**32), 0),
        },
    )
    decoy_data = [Obj([("symbol", "DECOY/X"), ("bids", decoy_levels), ("asks", [])])]
    top = Obj(
        [("channel", "book"), ("type", kind), ("data", [entry])],
        decoys={
            "channel": rng.choice(("ticker", "bookx", "heartbeat")),
            "type": rng.choice(("update", "snapshot", "delta")),
            "data": rng.choice(([], decoy_data)),
        },
    )
    return style.value(top).encode("utf-8")


def v1_book_frame(
    style: Style,
    channel_name: str,
    pair: str,
    bids: list[Level],
    asks: list[Level],
    pp: int,
    qp: int,
    checksum: int | None,
    epoch_us: int,
    *,
    snapshot: bool,
    channel_id: int = 336,
) -> bytes:
    """Write one v1 ``book-N`` message: a snapshot (``as``/``bs``) or an update (``a``/``b``).

    An update carries its asks and bids in two separate objects when both sides changed, with the
    checksum ``"c"`` only in the last one, as the v1 documentation shows.
    """
    rng = style.rng
    stamp = f"{epoch_us // 1_000_000}.{epoch_us % 1_000_000:06d}"

    def entries(levels: list[Level]) -> list[Any]:
        out: list[Any] = []
        for price, lots in levels:
            entry: list[Any] = [Fixed(price, pp), Fixed(lots, qp), stamp]
            if not snapshot and rng.random() < 0.1:
                entry.append("r")  # republish flag: applied like any other entry
            out.append(entry)
        return out

    payloads: list[Obj]
    if snapshot:
        payloads = [Obj([("as", entries(asks)), ("bs", entries(bids))])]
    else:
        payloads = []
        if asks:
            payloads.append(Obj([("a", entries(asks))]))
        if bids:
            payloads.append(Obj([("b", entries(bids))]))
        assert payloads, "a v1 update carries at least one level"
        if checksum is not None:
            # Digits only: the engine reads a number inside a string raw, as Kraken writes it.
            payloads[-1].pairs.append(("c", Fixed(checksum, 0)))
    message: list[Any] = [channel_id, *payloads, channel_name, pair]
    return style.value(message).encode("utf-8")


def _number_node(text: str) -> Any:
    """A number token read back: :class:`Num` when it is non-negative, else written verbatim."""
    value = Decimal(text)
    sign, _, exponent = value.as_tuple()
    if sign or not isinstance(exponent, int) or not value.is_finite():
        return _RawNumber(text)
    dp = max(-exponent, 0)
    return Num(units_of(value, dp), dp)


def _string_node(text: str) -> Any:
    """A string read back; a v1 number string (``"5541.30000"``) stays exactly as it was."""
    if text and text[0] != "-" and text.replace(".", "", 1).isdigit() and text.isascii():
        whole, _, fraction = text.partition(".")
        node = Fixed(int(whole + fraction), len(fraction))
        if fixed_text(node.units, node.dp) == text:
            return node
    return text


def _tree(value: Any) -> Any:
    if isinstance(value, list) and value and value[0] is _PAIRS:
        return Obj([(key, _tree(item)) for key, item in value[1:]])
    if isinstance(value, list):
        return [_tree(item) for item in value]
    if isinstance(value, str):
        return _string_node(value)
    return value


_PAIRS = object()  # marks an object's member list while a frame is read back


def tree_of(frame: bytes | str) -> Any:
    """Read a JSON frame back into a tree that :meth:`Style.value` writes with the same meaning.

    Objects keep their member order (and any repeated key), non-negative numbers become
    :class:`Num` so that a style may respell them, strings that spell a v1 number become
    :class:`Fixed` (written verbatim: Kraken's v1 numbers are strings the engine reads raw), and
    integers stay integers (depths, channel ids and checksums are read as integers).

    :raises ValueError: if ``frame`` is not JSON.
    """
    decoded = json.loads(
        frame,
        object_pairs_hook=lambda pairs: [_PAIRS, *pairs],
        parse_float=_number_node,
        parse_constant=_RawNumber,
    )
    return _tree(decoded)


def restyle(frame: bytes | str, seed: int) -> bytes:
    """Respell any Kraken frame in the JSON style drawn from ``seed`` (0: Kraken's compact one).

    v1 frames (JSON arrays) never get numbers inside strings, as their parser expects Kraken's
    own v1 layout there.

    :raises ValueError: if ``frame`` is not JSON.
    """
    tree = tree_of(frame)
    return Style(seed, numbers_as_strings=not isinstance(tree, list)).value(tree).encode("utf-8")
