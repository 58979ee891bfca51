"""Follow an order's place in its level's queue on a level3 (order-by-order) book.

``python examples/level3_queue_position.py`` (embedded simulator, which issues its own token).
"""

import asyncio

from kbook import Level3Book
from kbook.client import Client
from kbook.sim import Simulator


async def main() -> None:
    async with Simulator(seed=3, rate=20) as sim, Client(
        sim.url_v2, level3_url=sim.url_v2, token=sim.issue_token()
    ) as client:
        [book] = await client.subscribe_level3(["BTC/USD"], depth=10)
        await asyncio.sleep(1)
        watched = book.level_orders("bid", 0)[-1][0]   # the last order at the best bid
        for _ in range(10):
            try:
                side, price, index, ahead = book.queue_position(watched)
            except KeyError:
                print(f"{watched} left the book (filled or cancelled)")
                break
            print(f"{watched}: {side} {book.price_text(price)}  place {index}  "
                  f"{book.qty_text(ahead)} ahead  ({book.order_count} orders resting)")
            await asyncio.sleep(0.5)


def show(book: Level3Book) -> None:
    for price, total, count in book.bids(3):
        print(f"  {book.price_text(price)}  {book.qty_text(total)}  ({count} orders)")


if __name__ == "__main__":
    asyncio.run(main())
