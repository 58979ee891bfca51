"""Hypothesis strategies for realistic and adversarial Kraken traffic.

Every strategy here is an ordinary :class:`hypothesis.strategies.SearchStrategy`: compose them
with ``st.tuples``, ``.map``, ``.filter`` and ``@given`` like any other. Their examples shrink
towards small readable ones: a book stream towards one snapshot of a full book and a few
single-level updates at the touch, a JSON style towards Kraken's own compact layout, a corruption
towards a change of one digit in the first book frame.

* :func:`pairs`: instruments with realistic and extreme decimals (:class:`~kbook.testing.Pair`);
* :func:`book_streams`, :func:`level3_streams`: self-describing checksummed streams
  (:class:`~kbook.testing.FrameStream`);
* :func:`json_styles`: equivalent respellings of any frame (:class:`JsonStyle`);
* :func:`corruptions`: labelled damage to a stream (:class:`~kbook.testing.Corruption`);
* :func:`public_messages`, :func:`executions`, :func:`balances`: the other channels' frames.

>>> from hypothesis import given, settings
>>> from kbook import Feed
>>> @settings(max_examples=5, database=None)
... @given(book_streams(protocol="v2"))
... def test_feed_verifies_every_checksum(stream):
...     feed = Feed()
...     for frame in stream:
...         feed.process(frame)
...     assert feed.checksums_verified == stream.checksums
>>> test_feed_verifies_every_checksum()

What it is not: a source of market data worth studying, nor of frames that are wrong by accident.
Every wrong frame comes from :func:`corruptions`, labelled.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

try:
    from hypothesis import strategies as st
except ImportError as exc:  # the extra is optional; the rest of kbook.testing works without it
    raise ImportError(
        "kbook.testing's strategies need Hypothesis: pip install 'kbook[testing]'"
    ) from exc

from kbook.testing.books import (
    OPS,
    PRESET_PAIRS,
    SHAPES,
    FrameStream,
    Op,
    Pair,
    Seeded,
    Snapshot,
    Step,
    Update,
    render_book_stream,
)
from kbook.testing.corrupt import CORRUPTION_KINDS, Corruption
from kbook.testing.level3 import render_level3_stream
from kbook.testing.messages import (
    balance_frame,
    execution_frame,
    heartbeat_frame,
    instrument_frame,
    ohlc_frame,
    status_frame,
    ticker_frame,
    trade_frame,
)
from kbook.testing.wire import MAX_TICKS, restyle

__all__ = [
    "JsonStyle",
    "balances",
    "book_streams",
    "corruptions",
    "executions",
    "json_styles",
    "level3_streams",
    "mid_prices",
    "pairs",
    "public_messages",
    "quantities",
    "style_seeds",
]

Protocol = Literal["v1", "v2"]

# Symbols of invented pairs: ASCII, Latin-1, beyond the BMP (a 4-byte UTF-8 character).
_SYMBOLS = ("BTC/USD", "MATIC/USD", "ETH/BTC", "\u00c6TH/\u20acUR", "\U0001d539/USD")
_DEPTHS = (10, 25, 100)


def mid_prices() -> st.SearchStrategy[int]:
    """Mid prices in ticks: near the bottom (levels run into price 1), ordinary, near 10**18.

    >>> from hypothesis import find
    >>> find(mid_prices(), lambda ticks: ticks >= 10**17) == 10**17
    True
    """
    return st.one_of(
        st.integers(2, 2_000), st.integers(2_000, 10**9), st.integers(10**17, MAX_TICKS - 1)
    )


@functools.cache
def quantities(qty_precision: int, max_lots: int | None = None) -> st.SearchStrategy[int]:
    """Quantities in lots: dust, ordinary sizes, round sizes, and up to ``max_lots``.

    :param qty_precision: the pair's quantity decimals.
    :param max_lots: the largest quantity (default 10**15 whole units, beyond int64 lots from
        five decimals on); it is drawn too, as the exact edge.
    """
    cap = 10 ** (qty_precision + 15) if max_lots is None else max_lots
    round_lot = 10 ** max(qty_precision - 2, 0)
    return st.one_of(
        st.integers(1, min(9, cap)),
        st.integers(1, min(3 * 10**qty_precision, cap)),
        st.integers(1, 300).map(lambda k: min(k * round_lot, cap)),
        st.integers(1, cap),
        st.just(cap),
    )


def style_seeds() -> st.SearchStrategy[int]:
    """Seeds of :class:`JsonStyle`: 0 (Kraken's compact layout) for about a third of them."""
    return st.one_of(st.just(0), st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1))


@st.composite
def _invented_pairs(draw: st.DrawFn) -> Pair:
    pp = draw(st.integers(0, 12), label="price decimals")
    qp = draw(st.integers(0, 18), label="qty decimals")
    mid = draw(mid_prices(), label="mid ticks")
    return Pair(
        draw(st.sampled_from(_SYMBOLS), label="symbol"),
        pp,
        qp,
        mid,
        10 ** (qp + draw(st.integers(0, 15), label="size digits")),
        draw(st.sampled_from((1000, 3, 1)), label="levels"),
    )


def pairs() -> st.SearchStrategy[Pair]:
    """Instruments: BTC-, DOGE- and SHIB-like presets, a thin pair, and invented extremes.

    Invented pairs have 0..12 price decimals, 0..18 quantity decimals, mid prices from 2 ticks
    to just under 10**18, sizes up to 10**15 whole units (beyond int64 lots), and symbols with
    non-ASCII characters. Shrinks towards BTC/USD.

    >>> from kbook.testing import BTC_USD
    >>> BTC_USD.price_text(450001), BTC_USD.qty_text(150_000_000)
    ('45000.1', '1.50000000')
    """
    return st.one_of(st.sampled_from(PRESET_PAIRS), _invented_pairs())


def _lots() -> st.SearchStrategy[int]:
    # a size choice, reduced modulo the pair's largest size: small, ordinary and huge ones
    return st.one_of(st.integers(0, 9), st.integers(0, 10**9), st.integers(0, 2**96))


_OPS = st.builds(
    Op, st.sampled_from(OPS), st.sampled_from(("bid", "ask")), st.integers(0, 2**16 - 1), _lots()
)
_UPDATES = st.builds(Update, st.lists(_OPS, max_size=6).map(tuple))


def _snapshots(first: bool) -> st.SearchStrategy[Snapshot]:
    jumps = st.just(0) if first else st.one_of(st.integers(-60, 60), st.integers(-(10**6), 10**6))
    return st.builds(Snapshot, st.sampled_from(SHAPES), st.integers(0, 2**32 - 1), jumps)


# Hypothesis keeps a few thousand choices per example: past this many messages the plan's tail
# comes from a drawn seed instead of one choice per operation (it still shrinks, by length).
_DRAWN_STEPS = 50


@st.composite
def _steps(draw: st.DrawFn, min_messages: int, max_messages: int) -> list[Step]:
    steps: list[Step] = [draw(_snapshots(True), label="snapshot")]
    later = _snapshots(False)
    # one message in twenty is a snapshot (a resubscription); the rest are updates
    gate = st.integers(0, 19)
    count = draw(st.integers(max(min_messages - 1, 0), max(max_messages - 1, 0)), label="updates")
    for _ in range(min(count, _DRAWN_STEPS)):
        steps.append(draw(later) if draw(gate) == 19 else draw(_UPDATES))
    if count > _DRAWN_STEPS:
        seed = draw(st.integers(0, 2**32 - 1), label="tail seed")
        steps.append(Seeded(seed, count - _DRAWN_STEPS))
    return steps


def _as_strategy(value: Any, default: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    if value is None:
        return default
    if isinstance(value, st.SearchStrategy):
        return value
    return st.just(value)


@st.composite
def _book_streams(
    draw: st.DrawFn,
    protocol: st.SearchStrategy[Protocol],
    depth: st.SearchStrategy[int],
    pair: st.SearchStrategy[Pair],
    min_messages: int,
    max_messages: int,
    style: st.SearchStrategy[JsonStyle] | None,
) -> FrameStream:
    chosen_protocol = draw(protocol, label="protocol")
    chosen_pair = draw(pair, label="pair")
    chosen_depth = draw(depth, label="depth")
    steps = draw(_steps(min_messages, max_messages), label="plan")
    stream = render_book_stream(chosen_pair, steps, protocol=chosen_protocol, depth=chosen_depth)
    if style is not None:
        stream = draw(style, label="style").apply(stream)
    return stream


def book_streams(
    protocol: Protocol | st.SearchStrategy[Protocol] | None = "v2",
    depth: int | st.SearchStrategy[int] | None = None,
    pair: Pair | st.SearchStrategy[Pair] | None = None,
    *,
    min_messages: int = 1,
    max_messages: int = 30,
    style: st.SearchStrategy[JsonStyle] | None = None,
) -> st.SearchStrategy[FrameStream]:
    """Checksummed ``book`` streams: the preamble, a snapshot, then updates and resnapshots.

    Updates change, insert and delete levels at the touch and deep in the book, open a new best
    price, add levels behind the worst one (a full side evicts its worst level, which later
    re-enters), delete prices that have no level, and repeat a price within one message.
    Snapshots are full, thin, one-sided, over-full (the client truncates to the depth) or empty,
    and a resnapshot may move the mid price far. Every frame carries Kraken's checksum, so a
    ``kbook.Feed().process(frame)`` loop over an example verifies ``stream.checksums`` of them.

    :param protocol: ``"v2"``, ``"v1"``, a strategy of them, or None for both.
    :param depth: the subscribed depth, or a strategy (default 10, 25 or 100).
    :param pair: a :class:`Pair` or a strategy of them (default :func:`pairs`).
    :param min_messages: fewest snapshot and update messages (the preamble not counted).
    :param max_messages: most messages; 1,000 renders in about 20 ms.
    :param style: a strategy of :class:`JsonStyle` to respell every frame (number spellings
        with exponents, escapes, whitespace; default: Kraken's compact layout).
    :raises ValueError: if ``min_messages > max_messages`` or ``min_messages < 1``.
    """
    if not 1 <= min_messages <= max_messages:
        raise ValueError("need 1 <= min_messages <= max_messages")
    protocols: st.SearchStrategy[Protocol] = _as_strategy(protocol, st.sampled_from(("v2", "v1")))
    return _book_streams(
        protocols,
        _as_strategy(depth, st.sampled_from(_DEPTHS)),
        _as_strategy(pair, pairs()),
        min_messages,
        max_messages,
        style,
    )


@st.composite
def _level3_streams(
    draw: st.DrawFn,
    depth: st.SearchStrategy[int],
    pair: st.SearchStrategy[Pair],
    min_messages: int,
    max_messages: int,
) -> FrameStream:
    chosen = draw(pair, label="pair")
    chosen_depth = draw(depth, label="depth")
    thin = draw(st.booleans(), label="thin") or chosen.levels < chosen_depth
    levels = draw(st.integers(1, min(chosen_depth, 9)), label="levels") if thin else None
    return render_level3_stream(
        chosen,
        depth=chosen_depth,
        levels=levels,
        seed=draw(st.integers(0, 2**32 - 1), label="seed"),
        messages=draw(st.integers(min_messages, max_messages), label="messages"),
        max_events=draw(st.integers(1, 8), label="max events"),
        orders_per_level=draw(st.integers(1, 5), label="orders per level"),
        resnapshot_every=draw(st.sampled_from((0, 7, 3)), label="resnapshot every"),
    )


def level3_streams(
    depth: int | st.SearchStrategy[int] | None = None,
    pair: Pair | st.SearchStrategy[Pair] | None = None,
    *,
    min_messages: int = 1,
    max_messages: int = 20,
) -> st.SearchStrategy[FrameStream]:
    """Checksummed v2 ``level3`` streams: instrument, ack, snapshot, then order events.

    Events are adds (joining a level or opening one, inside the spread too), partial fills,
    quantity modifies at the head, middle or tail of a queue, price-changing modifies (the order
    moves to the back of its new level), cancels anywhere in a queue, whole levels swept, deletes
    of ids nobody knows, and the republished adds of a level that comes back into the window.
    Books are full or thin; some streams resnapshot mid-way.

    :param depth: 10 or 100 (default both), or a strategy.
    :param pair: a :class:`Pair` or a strategy of them (default :func:`pairs`, with sizes capped
        under the 10**29 lots a level3 order may hold).
    :param min_messages: fewest snapshot and update messages.
    :param max_messages: most messages.
    """
    if not 1 <= min_messages <= max_messages:
        raise ValueError("need 1 <= min_messages <= max_messages")
    return _level3_streams(
        _as_strategy(depth, st.sampled_from((10, 100))),
        _as_strategy(pair, pairs()),
        min_messages,
        max_messages,
    )


@dataclass(frozen=True, slots=True)
class JsonStyle:
    """One way of spelling JSON, drawn from a seed; seed 0 is Kraken's compact layout.

    Seed 0 leaves a stream untouched (:meth:`apply`); called on one frame it writes the frame
    compactly with book-style numbers (``1e-08`` becomes ``0.00000001``).

    Calling it on a frame returns an equivalent frame: whitespace between tokens, shuffled keys,
    unknown extra members, ``\\uXXXX`` and ``\\/`` escapes, numbers with trailing zeros, in
    exponent form (``12345e-3``), as ``-0.0`` for a zero quantity or inside a string (v2 only).

    >>> JsonStyle(0)(b'{"channel":"heartbeat"}')
    b'{"channel":"heartbeat"}'
    """

    seed: int

    def __call__(self, frame: bytes) -> bytes:
        return restyle(frame, self.seed)

    def apply(self, stream: FrameStream) -> FrameStream:
        """Respell every frame of a stream, each with its own draw from this style."""
        if self.seed == 0:
            return stream
        frames = tuple(restyle(frame, self.seed + i) for i, frame in enumerate(stream))
        return FrameStream(
            frames,
            stream.protocol,
            stream.channel,
            stream.pair,
            stream.depth,
            stream.checksums,
            stream.bids,
            stream.asks,
            (*stream.notes, f"style {self.seed}"),
        )


def json_styles() -> st.SearchStrategy[JsonStyle]:
    """Equivalent JSON spellings of any frame; shrinks towards Kraken's compact layout.

    About a third of the examples are the compact layout itself.
    """
    return st.builds(JsonStyle, style_seeds())


def corruptions(
    kinds: Sequence[str] = CORRUPTION_KINDS,
) -> st.SearchStrategy[Corruption]:
    """Damage to apply to a stream: :meth:`Corruption.apply` labels whether it must be detected.

    Kinds: ``digit`` (one digit of a book frame changed), ``checksum`` (one digit of a
    checksum), ``drop``, ``duplicate``, ``reorder`` (a frame swapped with the next), ``truncate``
    (a frame cut short), ``garbage`` (a frame that is not JSON inserted). The position is a
    fraction of the stream, so one corruption fits any stream.

    >>> from kbook.testing import BTC_USD, Snapshot, Update, Op, render_book_stream
    >>> stream = render_book_stream(BTC_USD, [Snapshot(), Update((Op("change", "bid"),))])
    >>> damaged = Corruption("checksum", 1.0).apply(stream)
    >>> damaged.must_detect, damaged.detected_at
    (True, 3)

    :param kinds: the kinds to draw from (default all).
    """
    unknown = set(kinds) - set(CORRUPTION_KINDS)
    if unknown or not kinds:
        raise ValueError(f"kinds must be some of {CORRUPTION_KINDS}, got {list(kinds)}")
    return st.builds(
        Corruption,
        st.sampled_from(tuple(kinds)),
        st.integers(0, 1000).map(lambda k: k / 1000),
        st.integers(0, 2**16 - 1),
    )


_PUBLIC = {
    "ticker": ticker_frame,
    "trade": trade_frame,
    "ohlc": ohlc_frame,
    "instrument": instrument_frame,
    "status": status_frame,
    "heartbeat": heartbeat_frame,
}


@st.composite
def _public(draw: st.DrawFn, channel: str, pair: st.SearchStrategy[Pair]) -> bytes:
    chosen = draw(pair, label="pair")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    snapshot = draw(st.booleans(), label="snapshot")
    return _PUBLIC[channel](chosen, seed, snapshot)


def public_messages(
    channel: str,
    pair: Pair | st.SearchStrategy[Pair] | None = None,
) -> st.SearchStrategy[bytes]:
    """v2 frames of a public channel other than the books, in Kraken's shapes.

    >>> import json
    >>> from decimal import Decimal
    >>> from kbook.messages import parse_message
    >>> from kbook.testing import BTC_USD
    >>> from kbook.testing.messages import ticker_frame
    >>> [ticker] = parse_message(json.loads(ticker_frame(BTC_USD, 1, False), parse_float=Decimal))
    >>> ticker.symbol, ticker.bid < ticker.ask
    ('BTC/USD', True)

    :param channel: ``ticker``, ``trade``, ``ohlc``, ``instrument``, ``status`` or
        ``heartbeat``.
    :param pair: a :class:`Pair` or a strategy of them (default :func:`pairs`).
    :raises ValueError: for another channel.
    """
    if channel not in _PUBLIC:
        raise ValueError(f"channel must be one of {', '.join(_PUBLIC)}, got {channel!r}")
    return _public(channel, _as_strategy(pair, pairs()))


@st.composite
def _private(draw: st.DrawFn, kind: str, pair: st.SearchStrategy[Pair]) -> bytes:
    chosen = draw(pair, label="pair")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    snapshot = draw(st.booleans(), label="snapshot")
    if kind == "executions":
        return execution_frame(chosen, seed, snapshot)
    return balance_frame(chosen, seed, snapshot)


def executions(pair: Pair | st.SearchStrategy[Pair] | None = None) -> st.SearchStrategy[bytes]:
    """v2 ``executions`` frames: order status changes and trades of one account."""
    return _private("executions", _as_strategy(pair, st.sampled_from(PRESET_PAIRS)))


def balances(pair: Pair | st.SearchStrategy[Pair] | None = None) -> st.SearchStrategy[bytes]:
    """v2 ``balances`` frames: snapshots of assets and ledger updates."""
    return _private("balances", _as_strategy(pair, st.sampled_from(PRESET_PAIRS)))
