"""The venue: every pair's market, the shared channel feeds, fan-out and the market's pacing.

One :class:`Venue` owns a :class:`~kbook.sim.market.PairMarket` per pair and runs their events
in simulated-time order. Each distinct ``(channel, symbol, parameter)`` that at least one client
subscribes to has exactly one :class:`ChannelFeed`; the feed derives each message once (see
:mod:`kbook.sim.feeds`), renders it once per protocol version that has a subscriber, and hands
the same bytes to every subscriber. Subscribers (connections) implement :class:`Subscriber`;
renderers (the protocol modules) implement :class:`Renderer`, so this module knows neither
sockets nor wire formats.

Pacing: with a ``rate`` the simulated clock is tied to the wall clock (each pair publishes
``rate`` events per second on average, Poisson-like); with ``rate`` None or 0 events run as fast
as the subscribed sockets accept them and the market waits while any of them is paused, or while
nobody subscribes at all. Either way the *sequence* of market events depends only on the seed
and the pairs, never on connections or timing.

Book changes and trades made by the exchange's accounts (:mod:`kbook.sim.exchange`) are
published through :meth:`Venue.publish` exactly like the flow's events, at the simulated time
:meth:`Venue.now_ns` gives them.

What it is not: a network server (see :mod:`kbook.sim.server`), a request parser (see the
protocol modules), a fault injector (see :mod:`kbook.sim.faults`), or the exchange.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kbook.sim.feeds import (
    BookView,
    Level3View,
    OhlcMessage,
    SpreadMessage,
    TickerMessage,
    TradeMessage,
    ticker_data,
)
from kbook.sim.market import STATUSES, MarketEvent, PairMarket
from kbook.sim.pairs import PairSpec

__all__ = [
    "CHANNELS",
    "ChannelFeed",
    "InstrumentMessage",
    "Renderer",
    "Subscriber",
    "Subscription",
    "Venue",
]

#: Public channels the venue can feed.
CHANNELS: tuple[str, ...] = ("book", "level3", "ticker", "trade", "ohlc", "spread", "instrument")

#: Events run back to back before the pump yields to the event loop (unpaced mode, catch-up).
_BATCH = 64
#: Longest sleep of the paced pump, so a rate or status change is picked up quickly.
_MAX_SLEEP_S = 0.25
#: Default mean simulated time between two events of one pair when running unpaced.
_UNPACED_INTERVAL_NS = 1_000_000


class Subscriber(Protocol):
    """A connection as the venue sees it."""

    @property
    def paused(self) -> bool:
        """Whether the socket asked the writer to stop (flow control)."""
        ...

    def deliver(self, data: bytes, sub: Subscription) -> None:
        """Send one channel message for ``sub``; faults and flow control happen here."""
        ...


class Renderer(Protocol):
    """A protocol version's writer of channel messages."""

    name: str

    def render(self, feed: ChannelFeed, message: Any) -> bytes:
        """Write ``message`` (one of the feed message types) as this version's frame."""
        ...


@dataclass(slots=True)
class InstrumentMessage:
    """The ``instrument`` channel's content: every pair, with its current status."""

    snapshot: bool
    pairs: list[PairSpec]
    status: str


@dataclass(eq=False, slots=True)
class Subscription:
    """One client subscription: who, to which feed, in which protocol version.

    ``key`` is the connection's own name for it (v2: ``(channel, symbol)``; v1:
    ``(channelName, pair)``); ``options`` keeps what the ack and unsubscribe must echo.
    """

    conn: Subscriber
    feed: ChannelFeed
    renderer: Renderer
    key: tuple[str, str | None]
    options: dict[str, Any] = field(default_factory=dict)
    active: bool = True
    messages: int = 0


class ChannelFeed:
    """One ``(channel, symbol, parameter)`` stream shared by all its subscribers.

    ``parameter`` is the depth (book, level3), the interval in minutes (ohlc), the event trigger
    (ticker: ``"trades"`` or ``"bbo"``) or None.
    """

    __slots__ = (
        "channel",
        "channel_id",
        "channel_name",
        "market",
        "param",
        "spec",
        "subscribers",
        "symbol",
        "venue",
        "view",
        "_subs",
    )

    def __init__(
        self,
        venue: Venue,
        channel: str,
        market: PairMarket | None,
        param: int | str | None,
        channel_id: int,
        strict: bool,
        spec: PairSpec | None = None,
    ) -> None:
        self.venue = venue
        self.channel = channel
        self.market = market
        self.spec = market.spec if market is not None else spec
        self.symbol = self.spec.symbol if self.spec is not None else None
        self.param = param
        #: v1 ``channelID`` (deprecated by Kraken, still sent); one per feed.
        self.channel_id = channel_id
        #: v1 ``channelName``: ``book-10``, ``ohlc-5``, or the channel itself.
        self.channel_name = f"{channel}-{param}" if channel in ("book", "ohlc") else channel
        self.subscribers: list[Subscription] = []
        self._subs: tuple[Subscription, ...] = ()
        self.view: BookView | Level3View | None = None
        if market is not None and channel == "book":
            assert isinstance(param, int)
            self.view = BookView(market, param, strict)
        elif market is not None and channel == "level3":
            assert isinstance(param, int)
            self.view = Level3View(market, param, strict)

    def __repr__(self) -> str:
        return f"ChannelFeed({self.channel!r}, {self.symbol!r}, {self.param!r})"

    def add(self, sub: Subscription) -> None:
        self.subscribers.append(sub)
        self._subs = tuple(self.subscribers)

    def remove(self, sub: Subscription) -> None:
        self.subscribers.remove(sub)
        self._subs = tuple(self.subscribers)

    def snapshot(self) -> Any:
        """The message a new subscriber receives first (None if the channel has none)."""
        market = self.market
        if self.channel == "instrument":
            return InstrumentMessage(True, self.venue.specs, self.venue.status)
        assert market is not None
        if self.view is not None:
            return self.view.snapshot()
        if self.channel == "trade":
            return TradeMessage(True, list(market.recent_trades), market.time_ns)
        if self.channel == "ticker":
            return TickerMessage(True, ticker_data(market))
        if self.channel == "spread":
            bid, bid_qty, ask, ask_qty = market.bbo()
            return SpreadMessage(True, bid, ask, bid_qty, ask_qty, market.time_ns)
        if self.channel == "ohlc":
            assert isinstance(self.param, int)
            return OhlcMessage(True, market.candles[self.param].candles(), market.time_ns)
        return None

    def derive(self, event: MarketEvent) -> Any:
        """The message ``event`` causes on this feed, or None."""
        market = self.market
        assert market is not None
        if self.view is not None:
            return self.view.update(event)
        channel = self.channel
        if channel == "trade":
            return TradeMessage(False, event.trades, event.time_ns) if event.trades else None
        if channel == "ticker":
            fire = event.trades if self.param == "trades" else event.bbo_changed
            return TickerMessage(False, ticker_data(market)) if fire else None
        if channel == "spread":
            if not event.bbo_changed:
                return None
            bid, bid_qty, ask, ask_qty = market.bbo()
            return SpreadMessage(False, bid, ask, bid_qty, ask_qty, event.time_ns)
        if channel == "ohlc" and event.trades:
            assert isinstance(self.param, int)
            current = market.candles[self.param].current
            assert current is not None
            return OhlcMessage(False, [current], event.time_ns)
        return None

    def publish(self, message: Any) -> None:
        """Render ``message`` once per protocol version in use and deliver it to everyone."""
        rendered: dict[str, bytes] = {}
        for sub in self._subs:
            name = sub.renderer.name
            data = rendered.get(name)
            if data is None:
                data = rendered[name] = sub.renderer.render(self, message)
            sub.messages += 1
            sub.conn.deliver(data, sub)


class Venue:
    """Every pair's market, the live feeds, and the pump that runs the markets.

    >>> from kbook.sim.pairs import PRESETS
    >>> venue = Venue([PRESETS["MATIC/GBP"]], seed=1, rate=None, start_ns=10**18, warmup=100)
    >>> feed = venue.feed("book", "MATIC/GBP", 10)
    >>> venue.step().time_ns > 10**18 - 10**9
    True
    """

    def __init__(
        self,
        pairs: Iterable[PairSpec],
        seed: int,
        rate: float | None,
        start_ns: int,
        *,
        strict: bool = False,
        warmup: int = 2000,
        wall_clock: bool = False,
    ) -> None:
        """Create every market (running its warm-up) and no feed.

        :param pairs: the pairs to trade.
        :param seed: seed of every pair's order flow.
        :param rate: events per second per pair against the wall clock; None or 0 runs unpaced.
        :param start_ns: simulated epoch time (ns) of the first published event.
        :param strict: compare every book mirror with the truth after every message.
        :param warmup: unpublished events per pair before ``start_ns``.
        :param wall_clock: paced, tie the simulated clock to the wall clock itself (``start_ns``
            is a wall time): a published timestamp is the wall time of its event, so a client's
            exchange → receive latency measures the simulator's queue and the network, not the
            time between creating the venue and starting its pump
        """
        if rate is not None and rate < 0:
            raise ValueError(f"rate must be >= 0, got {rate}")
        self.rate = rate or None
        self.seed = seed
        self.strict = strict
        self.wall_clock = wall_clock
        interval_ns = int(1e9 / self.rate) if self.rate else _UNPACED_INTERVAL_NS
        self.specs = list(pairs)
        self.markets: dict[str, PairMarket] = {
            spec.symbol: PairMarket(spec, seed, max(1, interval_ns), start_ns, warmup)
            for spec in self.specs
        }
        self.by_v1 = {spec.v1_name: self.markets[spec.symbol] for spec in self.specs}
        self.status = "online"
        self.events = 0
        self.feeds: dict[tuple[str, str | None, int | str | None], ChannelFeed] = {}
        self._feeds_by_symbol: dict[str | None, list[ChannelFeed]] = {}
        self._next_channel_id = 1
        self._heap = [(m.next_time_ns, i) for i, m in enumerate(self.markets.values())]
        heapq.heapify(self._heap)
        self._market_list = list(self.markets.values())
        self._paused: set[int] = set()
        self._subscriptions = 0
        self._go = asyncio.Event()
        self._released = asyncio.Event()
        self._released.set()
        # (simulated ns, loop time) at the start of paced running: ties the two clocks.
        self._clock: tuple[int, float] | None = None

    # -- feeds and subscriptions ----------------------------------------------------------------

    def feed(self, channel: str, symbol: str | None, param: int | str | None = None) -> ChannelFeed:
        """The feed for ``(channel, symbol, param)``, created on first use.

        :raises KeyError: for an unknown symbol.
        :raises ValueError: for an unknown channel.
        """
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        key = (channel, symbol, param)
        found = self.feeds.get(key)
        if found is not None:
            return found
        market = None if symbol is None else self.markets[symbol]
        created = ChannelFeed(self, channel, market, param, self._next_channel_id, self.strict)
        self._next_channel_id += 1
        self.feeds[key] = created
        self._feeds_by_symbol.setdefault(symbol, []).append(created)
        return created

    def subscribe(
        self,
        conn: Subscriber,
        renderer: Renderer,
        channel: str,
        symbol: str | None,
        param: int | str | None,
        key: tuple[str, str | None],
        options: dict[str, Any] | None = None,
    ) -> Subscription:
        """Attach ``conn`` to a feed; nothing is sent (the caller acks, then snapshots)."""
        feed = self.feed(channel, symbol, param)
        sub = Subscription(conn, feed, renderer, key, dict(options or {}))
        feed.add(sub)
        self._subscriptions += 1
        self._update_go()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Detach ``sub``; a feed nobody listens to any more is dropped with its mirror."""
        if not sub.active:
            return
        sub.active = False
        feed = sub.feed
        feed.remove(sub)
        self._subscriptions -= 1
        if not feed.subscribers:
            del self.feeds[(feed.channel, feed.symbol, feed.param)]
            self._feeds_by_symbol[feed.symbol].remove(feed)
        self._update_go()

    def send_snapshot(self, sub: Subscription) -> None:
        """Deliver the feed's current snapshot to one subscriber."""
        message = sub.feed.snapshot()
        if message is not None:
            sub.conn.deliver(sub.renderer.render(sub.feed, message), sub)

    # -- status and flow control ----------------------------------------------------------------

    def set_status(self, status: str) -> None:
        """Switch the engine state; the order flow of every market honours it at once."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        self.status = status
        for market in self._market_list:
            market.status = status
        for feed in self._feeds_by_symbol.get(None, []):
            if feed.channel == "instrument":
                feed.publish(InstrumentMessage(False, self.specs, status))

    def note_paused(self, conn: Subscriber, paused: bool) -> None:
        """Flow control from a connection: unpaced mode waits for every socket to drain."""
        if paused:
            self._paused.add(id(conn))
        else:
            self._paused.discard(id(conn))
        self._update_go()

    def hold(self) -> None:
        """Stop every market where it is (nothing new is published) until :meth:`release`:
        tests compare a client's books with the truth while nothing moves."""
        self._released.clear()

    def release(self) -> None:
        """Let the markets go on from where they stood (their clocks skip the held time)."""
        self._released.set()

    def forget(self, conn: Subscriber) -> None:
        self._paused.discard(id(conn))
        self._update_go()

    def _update_go(self) -> None:
        if self._subscriptions and not self._paused:
            self._go.set()
        else:
            self._go.clear()

    # -- running --------------------------------------------------------------------------------

    def step(self) -> MarketEvent:
        """Run the earliest pending event of any pair and publish what it caused."""
        _, index = self._heap[0]
        market = self._market_list[index]
        event = market.step()
        heapq.heapreplace(self._heap, (market.next_time_ns, index))
        self.events += 1
        self.publish(market, event)
        return event

    def publish(self, market: PairMarket, event: MarketEvent) -> None:
        """Derive and send what ``event`` of ``market`` causes on every feed of the pair."""
        for feed in self._feeds_by_symbol.get(market.symbol, ()):
            message = feed.derive(event)
            if message is not None:
                feed.publish(message)

    def now_ns(self, market: PairMarket) -> int:
        """The simulated time an out-of-band event of ``market`` happens at, now.

        Paced, it is the simulated clock the wall clock has reached; unpaced (or before the
        pump runs) the market's own clock. :meth:`PairMarket.external_event` keeps it between
        the market's last and next events either way, so published times never go backwards.
        """
        if self._clock is None:
            return market.time_ns
        sim0, wall0 = self._clock
        return sim0 + int((asyncio.get_running_loop().time() - wall0) * 1e9)

    async def run(self) -> None:
        """Run the markets until cancelled, paced or unpaced (see the module docstring)."""
        loop = asyncio.get_running_loop()
        if self.rate is None:
            while True:
                await self._go.wait()
                await self._released.wait()
                for _ in range(_BATCH):
                    self.step()
                await asyncio.sleep(0)
        sim0 = self._heap[0][0]
        wall0 = loop.time()
        if self.wall_clock:
            # sim0 is due at its own wall time: the events since start_ns run at once (catch-up)
            wall0 += (sim0 - time.time_ns()) / 1e9
        self._clock = (sim0, wall0)
        while True:
            if not self._released.is_set():
                held_at = loop.time()
                await self._released.wait()
                wall0 += loop.time() - held_at  # the held time never happened on the market
                self._clock = (sim0, wall0)
            now_sim = sim0 + int((loop.time() - wall0) * 1e9)
            ran = 0
            while self._heap[0][0] <= now_sim and ran < _BATCH:
                self.step()
                ran += 1
            if ran == _BATCH:
                await asyncio.sleep(0)  # behind schedule: catch up, but let sockets breathe
                continue
            delay = (self._heap[0][0] - now_sim) / 1e9
            await asyncio.sleep(min(max(delay, 0.0), _MAX_SLEEP_S))
