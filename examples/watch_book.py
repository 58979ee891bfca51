"""Watch one verified book with a callback that fires only when the top 5 levels change.

Runs against the embedded simulator (no network needed): ``python examples/watch_book.py``;
with ``KBOOK_URL`` set (``kbook sim``'s ``ws://.../v2``, or Kraken's) it connects there instead.
"""

import asyncio
import os

from kbook import L2Book
from kbook.client import Client
from kbook.sim import Simulator


def on_book(book: L2Book) -> None:
    (bid, bid_qty), (ask, ask_qty) = book.bids_str(1)[0], book.asks_str(1)[0]
    print(f"{book.symbol}  {bid_qty:>14} @ {bid}  |  {ask} @ {ask_qty:<14}  spread {book.spread()}")


async def watch(url: str) -> None:
    async with Client(url) as client:
        await client.subscribe_book(["BTC/USD"], depth=10, on_book=on_book, notify_depth=5)
        await asyncio.sleep(3)


async def main() -> None:
    if url := os.environ.get("KBOOK_URL"):
        await watch(url)
    else:
        async with Simulator(seed=7, rate=20) as sim:
            await watch(sim.url_v2)


if __name__ == "__main__":
    asyncio.run(main())
