"""What the ``kbook`` commands share: exit statuses, the venue a command talks to (a URL or
the embedded simulator), deadlines, and argument types."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from kbook.client import Client, ClientError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_UNREADABLE", "open_venue", "precision_arg", "reconnects",
           "within"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNREADABLE = 2


@contextlib.asynccontextmanager
async def open_venue(url: str, protocol: str, seed: int, rate: float | None,
                    token: str | None) -> AsyncIterator[tuple[str, str | None]]:
    """Yield ``(url, token)``: the given URL, or the embedded simulator's when ``url == 'sim'``."""
    if url != "sim":
        yield url, token
        return
    from kbook.sim import Simulator

    async with Simulator(seed=seed, rate=rate) as sim:
        yield (sim.url_v2 if protocol == "v2" else sim.url_v1), (token or sim.issue_token())


#: how long a command without ``duration`` waits for its subscription before giving up
SETUP_TIMEOUT = 30.0


async def within(deadline: float | None, what: str, coro: Any) -> Any:
    """Await ``coro`` before ``deadline`` (monotonic; None: SETUP_TIMEOUT from now)."""
    limit = SETUP_TIMEOUT if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        return await asyncio.wait_for(coro, limit)
    except TimeoutError:
        raise ClientError(f"{what}: not done within {limit:.1f} s") from None


def reconnects(client: Client) -> int:
    """Reconnections over all of a client's connections (a first connect is no reconnect)."""
    return sum(max(0, conn.connects - 1) for conn in client.connections)


def precision_arg(text: str) -> tuple[str, int, int]:
    """Parse ``SYMBOL=PRICE_DP:QTY_DP`` (``ETH/USD=2:8``) for ``--precision``."""
    symbol, eq, rest = text.rpartition("=")
    pp, colon, qp = rest.partition(":")
    if not (symbol and eq and colon and pp.isdigit() and qp.isdigit()):
        raise argparse.ArgumentTypeError(
            f"expected SYMBOL=PRICE_DP:QTY_DP such as BTC/USD=1:8, not {text!r}"
        )
    return symbol, int(pp), int(qp)
