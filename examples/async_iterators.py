"""Consume trades and book changes with ``async for`` instead of callbacks.

``python examples/async_iterators.py`` (embedded simulator); with ``KBOOK_URL`` set it connects
there instead.
"""

import asyncio
import os

from kbook.client import Client
from kbook.messages import Trade
from kbook.sim import Simulator


async def trades(client: Client) -> None:
    async for msg in client.messages("trade"):
        if isinstance(msg, Trade):
            print(f"trade {msg.symbol} {msg.side} {msg.qty} @ {msg.price}")


async def books(client: Client) -> None:
    [book] = await client.subscribe_book(["ETH/USD"], depth=10)
    async for changed in client.book_updates(book):  # a slow consumer sees the latest state
        print("ETH/USD best", changed.bids_str(1), changed.asks_str(1))


async def consume(url: str) -> None:
    async with Client(url) as client:
        await client.subscribe("trade", ["ETH/USD"])
        tasks = [asyncio.create_task(trades(client)), asyncio.create_task(books(client))]
        await asyncio.sleep(3)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def main() -> None:
    if url := os.environ.get("KBOOK_URL"):
        await consume(url)
    else:
        async with Simulator(seed=5, rate=20) as sim:
            await consume(sim.url_v2)


if __name__ == "__main__":
    asyncio.run(main())
