"""The bus's wire format: subjects, headers, and the exact Kraken frames a relay publishes.

Subjects (NATS tokens are separated by ``.``; ``*`` and ``>`` are wildcards)::

    kbook.<venue>.<channel>.<SYMBOL>.<kind>      data: kind = snapshot | update | state
    kbook.heartbeat.<venue>.<relay name>         relay liveness (not stored)
    kbook.request.<venue>.<channel>              snapshot requests from consumers (not stored)

``<SYMBOL>`` is the Kraken symbol made subject-safe by :func:`subject_token`: ``/`` becomes
``_``; ASCII letters, digits and ``-`` stay; every other byte of its UTF-8 form becomes ``~``
and two upper-case hex digits (``BTC/USD`` → ``BTC_USD``, ``ETH2.S/ETH`` → ``ETH2~2ES_ETH``).
The mapping is reversible (:func:`symbol_of_token`).

``<channel>`` is the Kraken channel: ``book`` and ``level3`` are books (snapshots, sequence
numbers, checksums); any other channel is relayed as messages.

A data message's payload is one Kraken WebSocket message about one symbol, byte for byte as the
exchange sent it (or, for a ``snapshot`` the relay synthesized from its verified book, a Kraken
snapshot message of the same protocol and channel, checksum included for v2; a level3 snapshot
lists every order of the relayed levels in queue order, without timestamps). Headers:

``Kbook-Seq``        per-symbol sequence number, +1 for every data message of that symbol
``Kbook-Relay``      the publishing relay instance (a new one after every relay start)
``Kbook-Time``       relay receive time of the frame, ns since the Unix epoch
``Kbook-Protocol``   ``v2`` or ``v1`` (book channels; level3 is v2 only)
``Kbook-Checksum``   the relay's verified book checksum after this message (book channels)
``Kbook-Precision``  ``price,qty`` decimals (book snapshots)
``Kbook-Depth``      the relayed book depth (book snapshots)
``Kbook-Count``      frames in a batched ``update`` (absent: one)
``Kbook-Lengths``    the byte length of each frame of a batched ``update``, space-separated

Batched updates: when a relay has verified several updates of one symbol before its event loop
comes round to publishing (a burst that arrived in one socket read), it publishes them as one
``update`` message: the payload is the frames concatenated, ``Kbook-Seq`` is the first frame's
sequence (the batch takes ``Kbook-Count`` numbers), and ``Kbook-Time`` and ``Kbook-Checksum``
list one value per frame, space-separated (:func:`pack_updates`, :func:`unpack_updates`). A
lone update is published exactly as described above. Batching only gathers what is already
waiting; it never holds a frame back for company.

A ``state`` message's payload is JSON ``{"symbol", "state", "reason"}`` (state ``invalid``):
the relay's book stopped being verified; the consumer waits for the next snapshot.

A heartbeat's payload is JSON ``{"relay", "name", "channel", "seqs": {symbol: last Kbook-Seq},
"time"}``, published every ``heartbeat_every`` seconds by the active relay only (core NATS, not
stored). A consumer treats a relay without heartbeat or message for ``heartbeat_timeout`` as
lost, and a count in ``seqs`` that its messages do not reach within that time as a lost tail.

What it is not: a new book encoding. Consumers re-verify with the same engine and the same
Kraken checksums as a direct connection; nothing here is specific to NATS.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = [
    "HEADER_CHECKSUM",
    "HEADER_COUNT",
    "HEADER_DEPTH",
    "HEADER_LENGTHS",
    "HEADER_PRECISION",
    "HEADER_PROTOCOL",
    "HEADER_RELAY",
    "HEADER_SEQ",
    "HEADER_TIME",
    "KINDS",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_FRAMES",
    "data_subject",
    "frame_symbols",
    "level3_snapshot_frame",
    "lone_update",
    "heartbeat_subject",
    "pack_updates",
    "parse_data_subject",
    "request_subject",
    "snapshot_frame",
    "state_payload",
    "stream_name",
    "subject_token",
    "symbol_of_token",
    "unpack_updates",
]

HEADER_SEQ = "Kbook-Seq"
HEADER_RELAY = "Kbook-Relay"
HEADER_TIME = "Kbook-Time"
HEADER_PROTOCOL = "Kbook-Protocol"
HEADER_CHECKSUM = "Kbook-Checksum"
HEADER_PRECISION = "Kbook-Precision"
HEADER_DEPTH = "Kbook-Depth"
HEADER_COUNT = "Kbook-Count"
HEADER_LENGTHS = "Kbook-Lengths"

MAX_BATCH_FRAMES = 1000  # frames in one batched update message, at most
MAX_BATCH_BYTES = 256 * 1024  # payload bytes of one batched update, about (NATS's limit: 1 MiB)

KINDS = ("snapshot", "update", "state")
_SAFE = frozenset(string.ascii_letters + string.digits + "-")
_HEX = frozenset("0123456789ABCDEF")


def subject_token(symbol: str) -> str:
    """Return the subject-safe token of a Kraken symbol (reversible).

    >>> subject_token("BTC/USD"), subject_token("ETH2.S/ETH")
    ('BTC_USD', 'ETH2~2ES_ETH')
    """
    if not symbol:
        raise ValueError("empty symbol")
    out: list[str] = []
    for ch in symbol:
        if ch == "/":
            out.append("_")
        elif ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"~{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def symbol_of_token(token: str) -> str:
    """Return the Kraken symbol of a subject token.

    :raises ValueError: not a token :func:`subject_token` could have made
    """
    raw = bytearray()
    i = 0
    while i < len(token):
        ch = token[i]
        if ch == "_":
            raw += b"/"
        elif ch == "~":
            pair = token[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise ValueError(f"not a symbol token: {token!r}")
            raw.append(int(pair, 16))
            i += 3
            continue
        elif ch in _SAFE:
            raw += ch.encode()
        else:
            raise ValueError(f"not a symbol token: {token!r}")
        i += 1
    if not raw:
        raise ValueError("empty symbol token")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"not a symbol token: {token!r}") from None


_RESERVED = ("heartbeat", "request")  # second tokens that are not venues


def _check_name(what: str, name: str) -> str:
    if not name or any(c not in _SAFE and c != "_" for c in name):
        raise ValueError(f"{what} must be letters, digits, '-' or '_': {name!r}")
    if what == "venue" and name in _RESERVED:
        raise ValueError(f"venue {name!r} is reserved")
    return name


def data_subject(venue: str, channel: str, symbol: str, kind: str) -> str:
    """Return the subject of one data message (``kind``: snapshot, update or state).

    >>> data_subject("kraken", "book", "BTC/USD", "update")
    'kbook.kraken.book.BTC_USD.update'
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    return (
        f"kbook.{_check_name('venue', venue)}.{_check_name('channel', channel)}."
        f"{subject_token(symbol)}.{kind}"
    )


def parse_data_subject(subject: str) -> tuple[str, str, str, str] | None:
    """Return ``(venue, channel, symbol, kind)`` of a data subject, None if it is not one."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[0] != "kbook" or parts[1] in _RESERVED or parts[4] not in KINDS:
        return None
    try:
        symbol = symbol_of_token(parts[3])
    except ValueError:
        return None
    return parts[1], parts[2], symbol, parts[4]


def heartbeat_subject(venue: str, name: str = "*") -> str:
    """Return the heartbeat subject of relay ``name`` (``*``: every relay of the venue)."""
    return (
        f"kbook.heartbeat.{_check_name('venue', venue)}."
        f"{name if name == '*' else _check_name('relay name', name)}"
    )


def request_subject(venue: str, channel: str) -> str:
    """Return the subject on which consumers ask the relay of ``channel`` for fresh snapshots
    (payload: JSON ``{"symbols": [...]}``; not stored)."""
    return f"kbook.request.{_check_name('venue', venue)}.{_check_name('channel', channel)}"


def stream_name(venue: str) -> str:
    """Return the JetStream stream (or other bus log) holding ``kbook.<venue>.>``."""
    return f"KBOOK_{_check_name('venue', venue).replace('-', '_').upper()}"


# -- batched updates ------------------------------------------------------------------------


def pack_updates(
    times: list[int], checksums: list[int] | None, frames: list[bytes]
) -> tuple[bytes, dict[str, str]]:
    """Return the payload and the per-frame headers of an ``update`` carrying ``frames``.

    One frame is published as it is; several are concatenated, with ``Kbook-Count`` and
    ``Kbook-Lengths``. ``checksums`` is None for channels without checksums.

    >>> pack_updates([7], [42], [b"{}"])
    (b'{}', {'Kbook-Time': '7', 'Kbook-Checksum': '42'})
    >>> payload, headers = pack_updates([7, 8], [42, 43], [b"{}", b"[1]"])
    >>> payload, headers[HEADER_COUNT], headers[HEADER_LENGTHS], headers[HEADER_CHECKSUM]
    (b'{}[1]', '2', '2 3', '42 43')
    """
    if len(frames) == 1:
        headers = {HEADER_TIME: str(times[0])}
        if checksums is not None:
            headers[HEADER_CHECKSUM] = str(checksums[0])
        return frames[0], headers
    headers = {
        HEADER_TIME: " ".join(map(str, times)),
        HEADER_COUNT: str(len(frames)),
        HEADER_LENGTHS: " ".join([str(len(f)) for f in frames]),
    }
    if checksums is not None:
        headers[HEADER_CHECKSUM] = " ".join(map(str, checksums))
    return b"".join(frames), headers


def unpack_updates(
    headers: Mapping[str, str], payload: bytes
) -> list[tuple[int, str | None, bytes]]:
    """Split an ``update`` message into ``(receive time, checksum text or None, frame)``.

    The checksum stays text: the consumer reports a bad one as a bad header of that frame.

    :raises ValueError: the headers do not describe the payload (counts or lengths disagree,
        a number is not one)

    >>> unpack_updates({"Kbook-Count": "2", "Kbook-Lengths": "2 3", "Kbook-Time": "7 8",
    ...                 "Kbook-Checksum": "42 43"}, b"{}[1]")
    [(7, '42', b'{}'), (8, '43', b'[1]')]
    >>> unpack_updates({"Kbook-Time": "7"}, b"{}")
    [(7, None, b'{}')]
    >>> unpack_updates({"Kbook-Count": "2", "Kbook-Lengths": "2 9", "Kbook-Time": "7 8"},
    ...                b"{}[1]")
    Traceback (most recent call last):
    ...
    ValueError: frame lengths add up to 11 bytes, the payload has 5
    """
    count_text = headers.get(HEADER_COUNT)
    checksum_text = headers.get(HEADER_CHECKSUM)
    if count_text is None:
        return [(int(headers.get(HEADER_TIME, "0")), checksum_text, payload)]
    count = int(count_text)
    if not 1 <= count <= MAX_BATCH_FRAMES:
        raise ValueError(f"batch of {count} frames")
    lengths = [int(x) for x in headers.get(HEADER_LENGTHS, "").split()]
    times = [int(x) for x in headers.get(HEADER_TIME, "").split()]
    checksums: list[str | None] = (
        [None] * count if checksum_text is None else list(checksum_text.split())
    )
    if not len(lengths) == len(times) == len(checksums) == count:
        raise ValueError(f"a batch of {count} frames needs {count} lengths, times and checksums")
    if any(n <= 0 for n in lengths):
        raise ValueError("a batched frame is empty")
    if sum(lengths) != len(payload):
        raise ValueError(
            f"frame lengths add up to {sum(lengths)} bytes, the payload has {len(payload)}"
        )
    out = []
    offset = 0
    for n, received, checksum in zip(lengths, times, checksums, strict=True):
        out.append((received, checksum, payload[offset : offset + n]))
        offset += n
    return out


# -- frames ---------------------------------------------------------------------------------


class _V2Frame(msgspec.Struct):
    channel: str = ""
    type: str = ""
    data: list[msgspec.Raw] = []


class _V2Item(msgspec.Struct):
    symbol: str = ""


_V2_FRAME = msgspec.json.Decoder(_V2Frame)
_V2_ITEM = msgspec.json.Decoder(_V2Item)
_V1_FRAME = msgspec.json.Decoder(list[msgspec.Raw])
_STR = msgspec.json.Decoder(str)
_DICT_RAW = msgspec.json.Decoder(dict[str, msgspec.Raw])


def frame_symbols(frame: bytes, protocol: str) -> tuple[str, bool, list[tuple[str, bytes]]]:
    """Split a Kraken channel message by symbol, keeping every byte of each part.

    :return: ``(type, is_snapshot, [(symbol, frame_for_that_symbol), ...])``; ``type`` is the
        v2 ``type`` (``snapshot``/``update``) or, for v1, ``snapshot``/``update`` by the book
        keys. A frame about one symbol is returned as it is.
    :raises msgspec.DecodeError: not JSON of the expected shape
    """
    if protocol == "v2":
        msg = _V2_FRAME.decode(frame)
        items = [(_V2_ITEM.decode(raw).symbol, raw) for raw in msg.data]
        snapshot = msg.type == "snapshot"
        if len(items) == 1:
            return msg.type, snapshot, [(items[0][0], frame)]
        head = (
            b'{"channel":'
            + msgspec.json.encode(msg.channel)
            + b',"type":'
            + msgspec.json.encode(msg.type)
            + b',"data":['
        )
        return msg.type, snapshot, [(sym, head + bytes(raw) + b"]}") for sym, raw in items]
    parts = _V1_FRAME.decode(frame)
    if len(parts) < 4:
        raise msgspec.DecodeError("a v1 channel message has at least 4 elements")
    symbol = _STR.decode(parts[-1])
    snapshot = any(key in ("as", "bs") for key in _DICT_RAW.decode(parts[1]))
    return ("snapshot" if snapshot else "update"), snapshot, [(symbol, frame)]


def lone_update(frame: bytes, protocol: str) -> bool:
    """True if ``frame``, when it is valid JSON, is certainly a book update about one symbol;
    False sends the caller to :func:`frame_symbols`.

    Byte tests, exact for valid JSON: a quote inside a JSON string is escaped, so ``"symbol"``
    and ``"type"`` occur only as tokens. A v2 frame with one ``"symbol"`` token has one data
    item, and with one ``"type"`` token (the message's own) followed by ``"update"`` it is an
    update. A v1 book frame names one symbol, and is a snapshot only with ``"as"``/``"bs"``
    keys. Anything else (whitespace between tokens included) answers False. The frame itself
    is not validated: the engine does that when it applies it.

    >>> lone_update(b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD"}]}', "v2")
    True
    >>> lone_update(b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD"}]}', "v2")
    False
    >>> lone_update(b'[336,{"as":[["5541.3","2.5","1534614248.1"]]},"book-10","XBT/USD"]', "v1")
    False
    """
    if protocol == "v2":
        return (
            frame.count(b'"symbol"') == 1
            and frame.count(b'"type"') == 1
            and b'"type":"update"' in frame
        )
    return b'"as"' not in frame and b'"bs"' not in frame


def _number(text: str) -> bytes:
    # the engine reads JSON numbers exactly from their text, so the exact string is the number
    return text.encode()


def snapshot_frame(
    protocol: str,
    symbol: str,
    depth: int,
    bids: list[tuple[str, str]],
    asks: list[tuple[str, str]],
    checksum: int,
) -> bytes:
    """Return a Kraken book snapshot message holding exactly these levels.

    :param bids: best first, exact decimal strings at the pair's precision (``L2Book.bids_str``)
    :param checksum: the book's Kraken checksum (carried in the v2 message; v1 snapshots carry
        none, the ``Kbook-Checksum`` header covers them)

    >>> snapshot_frame("v2", "BTC/USD", 10, [("45283.5", "0.10000000")],
    ...                [("45285.2", "0.00100000")], 2529910240)[:60]
    b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/U'
    """
    if protocol == "v2":

        def side(levels: list[tuple[str, str]]) -> bytes:
            return b",".join(
                b'{"price":' + _number(p) + b',"qty":' + _number(q) + b"}" for p, q in levels
            )

        return (
            b'{"channel":"book","type":"snapshot","data":[{"symbol":'
            + msgspec.json.encode(symbol)
            + b',"bids":['
            + side(bids)
            + b'],"asks":['
            + side(asks)
            + b'],"checksum":'
            + str(checksum).encode()
            + b"}]}"
        )
    if protocol == "v1":

        def side1(levels: list[tuple[str, str]]) -> list[list[str]]:
            return [[p, q, "0.000000"] for p, q in levels]

        body: dict[str, Any] = {"as": side1(asks), "bs": side1(bids)}
        return msgspec.json.encode([0, body, f"book-{depth}", symbol])
    raise ValueError("protocol must be 'v2' or 'v1'")


def level3_snapshot_frame(
    symbol: str,
    bids: list[tuple[str, list[tuple[str, str]]]],
    asks: list[tuple[str, list[tuple[str, str]]]],
    checksum: int,
) -> bytes:
    """Return a Kraken level3 snapshot message holding exactly these orders.

    :param bids: best level first: ``(price, [(order_id, qty), ...])`` with the orders in queue
        order and exact decimal strings at the pair's precision
    :param checksum: the book's Kraken level3 checksum

    >>> level3_snapshot_frame("BTC/USD", [("45283.5", [("OA", "0.10000000")])], [], 7)[74:]
    b'{"order_id":"OA","limit_price":45283.5,"order_qty":0.10000000}],"asks":[],"checksum":7}]}'
    """

    def side(levels: list[tuple[str, list[tuple[str, str]]]]) -> bytes:
        out: list[bytes] = []
        for price, orders in levels:
            at = b',"limit_price":' + _number(price) + b',"order_qty":'
            out.extend(
                b'{"order_id":' + msgspec.json.encode(oid) + at + _number(qty) + b"}"
                for oid, qty in orders
            )
        return b",".join(out)

    return (
        b'{"channel":"level3","type":"snapshot","data":[{"symbol":'
        + msgspec.json.encode(symbol)
        + b',"bids":['
        + side(bids)
        + b'],"asks":['
        + side(asks)
        + b'],"checksum":'
        + str(checksum).encode()
        + b"}]}"
    )


def state_payload(symbol: str, reason: str) -> bytes:
    """Return the payload of a ``state`` message: the book is invalid for ``reason``."""
    return msgspec.json.encode({"symbol": symbol, "state": "invalid", "reason": reason})
