"""Typed use of kbook's public API; ``mypy --strict tests/typing`` checks it against the stubs.

Not collected by pytest (no test functions): it exists to be type-checked.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import numpy.typing as npt

from kbook import ChecksumMismatch, DecodeError, Feed, L2Book, Level3Book, parse_scaled
from kbook.client import Client, ClientEvent
from kbook.messages import Message, Trade
from kbook.trading import AddOrder, Outcome, OutcomeState
from kbook.trading.session import PrivateSession


def read_book(book: L2Book) -> tuple[int, int] | None:
    best: tuple[int, int] | None = book.best_bid()
    levels: list[tuple[str, str]] = book.bids_str(5)
    ticks: npt.NDArray[np.int64] | npt.NDArray[np.float64] = book.asks_array(10)
    spread: int | None = book.spread()
    assert levels is not None and ticks is not None and spread is not None
    return best


def read_level3(book: Level3Book) -> int:
    side, price, index, ahead = book.queue_position("OTCFZG-YOE2Q-LQKNM3")
    orders: list[tuple[str, int]] = book.level_orders("bid", 0)
    assert side in ("bid", "ask") and orders
    return price + index + ahead


def owned_feed() -> Level3Book:
    feed = Feed(precisions={"BTC/USD": (1, 8)}, autocreate=False, max_books=10)
    feed.max_books = None
    return feed.add_level3_book("BTC/USD", depth=100)


def process(feed: Feed, frame: bytes) -> L2Book | Level3Book | None:
    try:
        result = feed.process(frame)
    except ChecksumMismatch as exc:
        print(exc.symbol, exc.expected, exc.computed, exc.checksum_input)
        return None
    except DecodeError as exc:
        print(exc.channel, exc.symbol)
        return None
    return result if isinstance(result, L2Book | Level3Book) else None


def on_event(event: ClientEvent) -> None:
    print(event.kind, event.symbol)


def on_trade(message: Message) -> None:
    if isinstance(message, Trade):
        total: Decimal = message.price * message.qty
        print(total)


async def trade(client: Client) -> OutcomeState:
    books: list[L2Book] = await client.subscribe_book(["BTC/USD"], depth=25, on_book=read_book)
    await client.subscribe("trade", ["BTC/USD"], on_message=on_trade)
    private = PrivateSession(client)
    await private.start()
    outcome: Outcome = await private.add_order(
        AddOrder(
            order_type="limit",
            side="buy",
            order_qty=Decimal("0.01"),
            symbol="BTC/USD",
            limit_price=Decimal("45000.0"),
        )
    )
    assert books and parse_scaled("45000.0", 1) == 450000
    return outcome.state
