"""Kraken's WebSocket endpoints and the limits that come with them."""

from __future__ import annotations

from typing import Literal

__all__ = ["ENDPOINTS", "LEVEL3_SYMBOLS_PER_CONNECTION", "PRIVATE_CHANNELS", "Protocol"]

Protocol = Literal["v2", "v1"]

#: Kraken's endpoints, by (protocol, kind, beta). ``level3`` is v2 only.
ENDPOINTS: dict[tuple[str, str, bool], str] = {
    ("v2", "public", False): "wss://ws.kraken.com/v2",
    ("v2", "private", False): "wss://ws-auth.kraken.com/v2",
    ("v2", "level3", False): "wss://ws-l3.kraken.com/v2",
    ("v2", "public", True): "wss://beta-ws.kraken.com/v2",
    ("v2", "private", True): "wss://beta-ws-auth.kraken.com/v2",
    ("v2", "level3", True): "wss://ws-l3.kraken.com/v2",
    ("v1", "public", False): "wss://ws.kraken.com",
    ("v1", "private", False): "wss://ws-auth.kraken.com",
    ("v1", "public", True): "wss://beta-ws.kraken.com",
    ("v1", "private", True): "wss://beta-ws-auth.kraken.com",
}

LEVEL3_SYMBOLS_PER_CONNECTION = 200  # Kraken's level3 limit
PRIVATE_CHANNELS = ("level3", "executions", "balances", "ownTrades", "openOrders")
