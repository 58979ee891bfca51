"""A multi-symbol strategy skeleton: book callbacks for decisions, events for safety.

Callbacks run inside the frame handler, so they see every verified update with no queueing;
keep them short. The client resynchronises a book whose checksum fails and tells you through
events; a book that is not valid is never passed to ``on_book``.

``python examples/strategy_skeleton.py`` (embedded simulator); with ``KBOOK_URL`` set it
connects there instead.
"""

import asyncio
import os
from collections import defaultdict

from kbook import L2Book
from kbook.client import Client, ClientEvent
from kbook.sim import Simulator

SYMBOLS = ["BTC/USD", "ETH/USD", "DOGE/USD"]


class Strategy:
    def __init__(self) -> None:
        self.updates: dict[str, int] = defaultdict(int)
        self.crossed_spread_signals = 0

    def on_book(self, book: L2Book) -> None:
        self.updates[book.symbol] += 1
        spread = book.spread()
        if spread is not None and spread <= 1:
            self.crossed_spread_signals += 1  # decide, then send an order (kbook.trading)

    def on_event(self, event: ClientEvent) -> None:
        if event.kind in (
            "checksum_mismatch",
            "resync_started",
            "resync_done",
            "status",
            "disconnected",
            "connected",
        ):
            print("event:", event.kind, event.symbol or "", event.detail or "")


async def trade(url: str, strategy: Strategy) -> None:
    async with Client(url, on_event=strategy.on_event) as client:
        await client.subscribe_book(SYMBOLS, depth=25, on_book=strategy.on_book, notify_depth=3)
        await asyncio.sleep(5)


async def main() -> None:
    strategy = Strategy()
    if url := os.environ.get("KBOOK_URL"):
        await trade(url, strategy)
    else:
        async with Simulator(seed=11, rate=50) as sim:
            await trade(sim.url_v2, strategy)
    print(dict(strategy.updates), "tight-spread signals:", strategy.crossed_spread_signals)


if __name__ == "__main__":
    asyncio.run(main())
