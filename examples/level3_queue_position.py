"""Follow an order's place in its level's queue on a level3 (order-by-order) book.

``python examples/level3_queue_position.py`` (embedded simulator, which issues its own token).
With ``KBOOK_URL`` set it connects there for level3 too, with the token in ``KBOOK_TOKEN``
(``kbook sim`` prints one; for Kraken, a ``GetWebSocketsToken`` token and its ws-l3 URL).
"""

import asyncio
import os

from kbook import Level3Book
from kbook.client import Client
from kbook.sim import Simulator


async def follow(url: str, token: str | None) -> None:
    async with Client(url, level3_url=url, token=token) as client:
        [book] = await client.subscribe_level3(["BTC/USD"], depth=10)
        await asyncio.sleep(1)
        watched = book.level_orders("bid", 0)[-1][0]  # the last order at the best bid
        for _ in range(10):
            try:
                side, price, index, ahead = book.queue_position(watched)
            except KeyError:
                print(f"{watched} left the book (filled or cancelled)")
                break
            print(
                f"{watched}: {side} {book.price_text(price)}  place {index}  "
                f"{book.qty_text(ahead)} ahead  ({book.order_count} orders resting)"
            )
            await asyncio.sleep(0.5)


async def main() -> None:
    if url := os.environ.get("KBOOK_URL"):
        await follow(url, os.environ.get("KBOOK_TOKEN"))
    else:
        async with Simulator(seed=3, rate=20) as sim:
            await follow(sim.url_v2, sim.issue_token())


def show(book: Level3Book) -> None:
    for price, total, count in book.bids(3):
        print(f"  {book.price_text(price)}  {book.qty_text(total)}  ({count} orders)")


if __name__ == "__main__":
    asyncio.run(main())
