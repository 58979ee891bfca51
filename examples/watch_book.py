"""Watch one verified book with a callback that fires only when the top 5 levels change.

Runs against the embedded simulator (no network needed): ``python examples/watch_book.py``.
"""

import asyncio

from kbook import L2Book
from kbook.client import Client
from kbook.sim import Simulator


def on_book(book: L2Book) -> None:
    (bid, bid_qty), (ask, ask_qty) = book.bids_str(1)[0], book.asks_str(1)[0]
    print(f"{book.symbol}  {bid_qty:>14} @ {bid}  |  {ask} @ {ask_qty:<14}  spread {book.spread()}")


async def main() -> None:
    async with Simulator(seed=7, rate=20) as sim, Client(sim.url_v2) as client:
        await client.subscribe_book(["BTC/USD"], depth=10, on_book=on_book, notify_depth=5)
        await asyncio.sleep(3)


if __name__ == "__main__":
    asyncio.run(main())
