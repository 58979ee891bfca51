"""Message shapes learned from Kraken's published examples, and a validator for frames.

:func:`schema` merges the example messages of one kind (``tests/data/kraken``) into a
schema: for an object, the exact key sequences seen (order matters: the simulator must write keys
in Kraken's order) and a merged schema per key; for an array, per-position schemas when the
examples are short tuples (v1's ``[price, volume, time]``), else one schema for every element;
for a leaf, the lexical kinds seen. Kinds keep what the examples promise a parser: JSON integer
vs JSON number with a fraction or exponent, decimal string, RFC 3339 time with 6 or 9 fractional
digits, and other strings.

What it is not: a JSON Schema implementation, or a check of values (numbers and checksums are
verified elsewhere, against the engine and the reference model).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tests.data import VECTORS

_DECIMAL = re.compile(r"-?\d+\.\d+")
_TS6 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_TS9 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")


class Num:
    """A JSON number token kept as text: ``int`` or ``float`` lexically."""

    __slots__ = ("kind", "text")

    def __init__(self, kind: str, text: str) -> None:
        self.kind = kind
        self.text = text

    def __repr__(self) -> str:
        return self.text


def load(raw: str | bytes) -> Any:
    """``json.loads`` keeping every number's text and lexical kind."""
    return json.loads(raw, parse_int=lambda t: Num("int", t), parse_float=lambda t: Num("float", t))


def kind(value: Any) -> str:
    if isinstance(value, Num):
        return value.kind
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "null"
    if isinstance(value, str):
        if _TS9.fullmatch(value):
            return "ts9"
        if _TS6.fullmatch(value):
            return "ts6"
        if _DECIMAL.fullmatch(value):
            return "decstr"
        return "str"
    raise TypeError(type(value))


@dataclass
class Schema:
    kinds: set[str] = field(default_factory=set)
    key_orders: set[tuple[str, ...]] = field(default_factory=set)
    members: dict[str, Schema] = field(default_factory=dict)
    lengths: set[int] = field(default_factory=set)
    positions: list[Schema] | None = None
    element: Schema | None = None

    def learn(self, value: Any) -> None:
        if isinstance(value, dict):
            self.kinds.add("object")
            self.key_orders.add(tuple(value))
            for key, member in value.items():
                self.members.setdefault(key, Schema()).learn(member)
        elif isinstance(value, list):
            self.kinds.add("array")
            self.lengths.add(len(value))
            if self.element is None:
                self.element = Schema()
            for item in value:
                self.element.learn(item)
            if value and len(value) <= 9 and not any(isinstance(v, dict | list) for v in value):
                if self.positions is None:
                    self.positions = []
                while len(self.positions) < len(value):
                    self.positions.append(Schema())
                for i, item in enumerate(value):
                    self.positions[i].learn(item)
        else:
            self.kinds.add(kind(value))

    def errors(self, value: Any, path: str = "$") -> list[str]:
        """Every way ``value`` departs from what the examples showed."""
        if isinstance(value, dict):
            if "object" not in self.kinds:
                return [f"{path}: object where examples have {sorted(self.kinds)}"]
            out = []
            if tuple(value) not in self.key_orders:
                out.append(f"{path}: keys {list(value)} not in examples {sorted(self.key_orders)}")
            for key, member in value.items():
                if key in self.members:
                    out += self.members[key].errors(member, f"{path}.{key}")
            return out
        if isinstance(value, list):
            if "array" not in self.kinds:
                return [f"{path}: array where examples have {sorted(self.kinds)}"]
            out = []
            if self.positions is not None and len(value) in self.lengths:
                for i, item in enumerate(value):
                    out += self.positions[i].errors(item, f"{path}[{i}]")
            elif self.element is not None:
                for i, item in enumerate(value):
                    out += self.element.errors(item, f"{path}[{i}]")
            return out
        k = kind(value)
        if k not in self.kinds:
            return [f"{path}: {k} {value!r} where examples have {sorted(self.kinds)}"]
        return []


def vector_messages(name: str, *indexes: int) -> list[Any]:
    raw = json.loads((VECTORS / f"{name}.json").read_text())["messages"]
    picked = raw if not indexes else [raw[i] for i in indexes]
    return [load(m) for m in picked]


def _swapped(value: Any) -> Any:
    """``value`` with the contents of every ``bids`` and ``asks`` pair exchanged.

    Bids and asks share one element shape, but an example may leave one side empty (the level3
    update example has no bid events); learning the swapped copy too teaches both sides.
    """
    if isinstance(value, dict):
        out = {k: _swapped(v) for k, v in value.items()}
        if "bids" in value and "asks" in value:
            out["bids"], out["asks"] = out["asks"], out["bids"]
        return out
    if isinstance(value, list):
        return [_swapped(v) for v in value]
    return value


def schema(*sources: tuple[str, tuple[int, ...]]) -> Schema:
    merged = Schema()
    for name, indexes in sources:
        for message in vector_messages(name, *indexes):
            merged.learn(message)
            merged.learn(_swapped(message))
    return merged


#: Key orders of messages Kraken has published no example of, as the simulator writes them:
#: the ohlc unsubscribe ack (echoing the interval, as the book one echoes the depth) and a
#: ticker subscribe ack for a request that named its ``event_trigger`` (echoed, as the
#: unsubscribe ack does). Tests that meet them allow exactly these.
EXTENSIONS: dict[str, set[tuple[str, ...]]] = {
    "ack.result": {
        ("channel", "interval", "symbol"),
        ("channel", "event_trigger", "snapshot", "symbol"),
    },
}


def v1_payload_schema(*sources: tuple[str, tuple[int, ...]]) -> Schema:
    """Merged schema of the payload elements of v1 arrays (everything between id and name)."""
    merged = Schema()
    for name, indexes in sources:
        for message in vector_messages(name, *indexes):
            for payload in message[1:-2]:
                merged.learn(payload)
                if isinstance(payload, dict) and not {"as", "bs"} <= set(payload):
                    # Asks and bids share one entry shape (only an ask example shows "r").
                    renamed = {_V1_SIDES.get(k, k): v for k, v in payload.items()}
                    merged.learn(renamed)
    return merged


_V1_SIDES = {"a": "b", "b": "a", "as": "bs", "bs": "as"}


def v1_errors(message: Any, payload: Schema) -> list[str]:
    """Check a v1 data array: int id, payload(s), then channel name and pair strings."""
    if not isinstance(message, list) or len(message) < 4:
        return [f"not a v1 data array: {message!r}"]
    out = []
    if kind(message[0]) != "int":
        out.append(f"channelID {message[0]!r} is not an integer")
    if not (isinstance(message[-2], str) and isinstance(message[-1], str)):
        out.append("channelName and pair must be the last two strings")
    for i, item in enumerate(message[1:-2]):
        out += payload.errors(item, f"$[{i + 1}]")
    return out


# -- the kinds of message the simulator sends, each with the examples it must look like --------

V2_SCHEMAS: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "status": (("v2_status_update", ()),),
    "heartbeat": (("v2_heartbeat", (0,)),),
    "pong": (("v2_ping_pong", (1,)),),
    "ack": (
        ("v2_book_subscribe_ack_unsubscribe", (1, 2, 4)),
        ("v2_level3_subscribe_ack", (1, 2, 4)),
        ("v2_ticker_messages", (1, 5)),
        ("v2_trade_messages", (1, 5)),
        ("v2_ohlc_messages", (1,)),
        ("v2_instrument_subscribe_and_ack", (1, 3)),
    ),
    "book": (("v2_book_reference_snapshot_matic", ()), ("v2_book_reference_update_matic", ())),
    "level3": (
        ("v2_level3_reference_snapshot_matic", ()),
        ("v2_level3_reference_update_matic", ()),
    ),
    "ticker": (("v2_ticker_messages", (2, 3)),),
    "trade": (("v2_trade_messages", (2, 3)),),
    "ohlc": (("v2_ohlc_messages", (2, 3)),),
    "instrument": (("v2_instrument_snapshot", ()), ("v2_instrument_update", ())),
}

V1_EVENT_SCHEMAS: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "pong": (("v1_admin_messages", (1,)),),
    "heartbeat": (("v1_admin_messages", (2,)),),
    "systemStatus": (("v1_admin_messages", (3,)),),
    "subscriptionStatus": (("v1_admin_messages", (4, 5, 6, 7)),),
}

V1_DATA_SCHEMAS: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "book": (
        ("v1_book_subscribe_snapshot", (1,)),
        ("v1_book_updates_reference", ()),
        ("v1_book_update_with_checksum_guide", ()),
    ),
    "ticker": (("v1_ticker", (1,)),),
    "trade": (("v1_trade", (1,)),),
    "spread": (("v1_spread", (1,)),),
    "ohlc": (("v1_ohlc", (1,)),),
}


def v2_kind(message: dict[str, Any]) -> str:
    """Which :data:`V2_SCHEMAS` entry a v2 frame belongs to."""
    if "channel" in message:
        channel: str = message["channel"]
        return channel
    if message.get("method") == "pong":
        return "pong"
    if "method" in message and message.get("success") is True:
        return "ack"
    return "error"
