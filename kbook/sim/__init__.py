"""kbook's local Kraken-compatible exchange simulator (``kbook sim``, or in-process for tests).

It speaks Kraken Spot WebSocket v2 at ``/v2`` and v1 at ``/`` over real sockets (picows), from
seeded order-by-order markets whose L2 and L3 books, trades, ticker, spread and OHLC all derive
from one book per pair, with every book checksum computed by the pure-Python reference model
(:mod:`kbook.reference`), never by the engine under test. Faults can be injected on demand and
are logged with their time.

>>> import asyncio
>>> from kbook.sim import Simulator
>>> async def main() -> int:
...     async with Simulator(seed=1, rate=20.0, pairs=["ETH/USD"], warmup=100) as sim:
...         return len(sim.connections)
>>> asyncio.run(main())
0

It is also a small exchange: ``sim.add_account()`` opens an account whose API key signs
``GetWebSocketsToken`` at ``sim.rest_url``; with that token the same WebSocket paths serve the
private channels (v2 ``executions``/``balances``, v1 ``ownTrades``/``openOrders``) and the trading
methods, and account orders are matched price-time against the simulated books
(:mod:`kbook.sim.exchange`).

What it is not: Kraken. Prices, sizes and order flow are invented; only the protocol (message
shapes, number text, checksums, acks and errors) is meant to be faithful. Triggered orders,
icebergs and margin are not modelled, and it never listens beyond loopback unless told.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kbook.sim.accounts import TIERS, Tier
    from kbook.sim.exchange import Exchange
    from kbook.sim.faults import FAULTS, FaultRecord, Faults
    from kbook.sim.market import INTERVALS, STATUSES, PairMarket
    from kbook.sim.pairs import PRESETS, PairSpec
    from kbook.sim.records import Account, ExOrder, Reject
    from kbook.sim.server import PregeneratedStream, SimConnection, Simulator

__all__ = [
    "FAULTS",
    "INTERVALS",
    "PRESETS",
    "STATUSES",
    "TIERS",
    "Account",
    "SimConnection",
    "ExOrder",
    "Exchange",
    "FaultRecord",
    "Faults",
    "PairMarket",
    "PairSpec",
    "PregeneratedStream",
    "Reject",
    "Simulator",
    "Tier",
]

# Names are resolved on first use, so `kbook --help` and `kbook verify` (which register the
# `sim` subcommand) do not pay for importing the server and picows.
_HOMES = {
    "TIERS": "accounts",
    "Account": "records",
    "Tier": "accounts",
    "Exchange": "exchange",
    "ExOrder": "records",
    "Reject": "records",
    "FAULTS": "faults",
    "FaultRecord": "faults",
    "Faults": "faults",
    "INTERVALS": "market",
    "STATUSES": "market",
    "PairMarket": "market",
    "PRESETS": "pairs",
    "PairSpec": "pairs",
    "SimConnection": "server",
    "PregeneratedStream": "server",
    "Simulator": "server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kbook.sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"kbook.sim.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
