"""Checksummed Kraken v2 ``level3`` streams for :func:`kbook.testing.level3_streams`.

A thin layer over :class:`kbook.sim.streams.Level3Stream`, the seeded order-by-order generator the
benchmarks and samples use: it adds the ``instrument`` message and the subscribe ack in front,
so that a bare ``kbook.Feed().process(frame)`` loop verifies every checksum, resnapshots now and
then (a resubscription), and returns a :class:`~kbook.testing.FrameStream` whose final book is the
aggregated window the exchange holds.

>>> from kbook.testing.books import BTC_USD
>>> stream = render_level3_stream(BTC_USD, depth=10, seed=1, messages=4)
>>> len(stream), stream.checksums, stream.channel
(6, 4, 'level3')

What it is not: a second level3 generator. Its events, and their coverage (modifies at the head,
middle and tail of a queue, price-changing modifies, unknown deletes, republished levels), are
:class:`~kbook.sim.streams.Level3Stream`'s.
"""

from __future__ import annotations

from kbook.sim.streams import Level3Stream
from kbook.testing.books import FrameStream, Pair

__all__ = ["render_level3_stream"]

# A level3 order holds fewer than 10**29 lots; the generator's sizes stay far below that, but
# the mid price is kept where a spread and a hundred levels of gaps fit below 10**18 ticks.
_MID_RANGE = (200, 10**17)


def render_level3_stream(
    pair: Pair,
    *,
    depth: int = 10,
    levels: int | None = None,
    seed: int = 0,
    messages: int = 10,
    max_events: int = 5,
    orders_per_level: int = 3,
    resnapshot_every: int = 0,
) -> FrameStream:
    """Render a level3 stream: instrument, ack, snapshot, then ``messages - 1`` more messages.

    :param pair: the instrument (its mid price is clamped into a range the generator handles).
    :param depth: the subscribed depth in price levels.
    :param levels: price levels per side (default ``depth``); fewer makes a thin book.
    :param seed: seeds the generator.
    :param messages: snapshot and update messages.
    :param max_events: most generated events in one update.
    :param orders_per_level: typical queue length.
    :param resnapshot_every: every this many messages a snapshot is sent again (0: never).
    :raises ValueError: if ``messages < 1`` or the generator refuses a parameter.
    """
    if messages < 1:
        raise ValueError(f"messages must be >= 1, got {messages}")
    mid = min(max(pair.mid, _MID_RANGE[0]), _MID_RANGE[1])
    gen = Level3Stream(
        pair.symbol,
        depth=depth,
        price_precision=pair.price_precision,
        qty_precision=pair.qty_precision,
        seed=seed,
        mid_ticks=mid,
        max_events=max_events,
        orders_per_level=orders_per_level,
        levels=levels,
    )
    frames = [gen.instrument_frame(), gen.ack_frame(), gen.snapshot()]
    for i in range(1, messages):
        again = resnapshot_every and i % resnapshot_every == 0
        frames.append(gen.snapshot() if again else gen.update())
    bids = tuple((p, sum(q for _, q in orders)) for p, orders in gen.window_levels("bid"))
    asks = tuple((p, sum(q for _, q in orders)) for p, orders in gen.window_levels("ask"))
    return FrameStream(tuple(frames), "v2", "level3", pair, depth, messages, bids, asks)
