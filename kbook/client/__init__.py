"""The Kraken Spot WebSocket client.

- :mod:`~kbook.client.client`: :class:`Client`, what users hold: subscriptions, books,
  messages and events over one or more connections;
- :mod:`~kbook.client.connection`: :class:`Connection`, one WebSocket kept alive (connect loop,
  watchdog, restore, resync, request bookkeeping, message routing);
- :mod:`~kbook.client.policy`: how often to try (:class:`ReconnectPolicy`,
  :class:`ConnectionBudget`, :class:`Pacer`);
- :mod:`~kbook.client.events`: :class:`ClientEvent` and the queues behind the iterators;
- :mod:`~kbook.client.endpoints`: Kraken's URLs and limits.

The client's exceptions live in :mod:`kbook.errors` and are re-exported here.
"""

from kbook.client.client import Client
from kbook.client.connection import Connection
from kbook.client.endpoints import (
    ENDPOINTS,
    LEVEL3_SYMBOLS_PER_CONNECTION,
    PRIVATE_CHANNELS,
    Protocol,
)
from kbook.client.events import ClientEvent, EventQueue
from kbook.client.policy import ConnectionBudget, Pacer, ReconnectPolicy
from kbook.errors import (
    CallbackError,
    ClientError,
    ConnectFailed,
    HandshakeRefused,
    QueueOverflow,
    RequestTimeout,
    SubscriptionError,
    TLSFailed,
)

__all__ = [
    "ENDPOINTS",
    "LEVEL3_SYMBOLS_PER_CONNECTION",
    "PRIVATE_CHANNELS",
    "CallbackError",
    "Client",
    "ClientError",
    "ClientEvent",
    "ConnectFailed",
    "Connection",
    "ConnectionBudget",
    "EventQueue",
    "HandshakeRefused",
    "Pacer",
    "Protocol",
    "QueueOverflow",
    "ReconnectPolicy",
    "RequestTimeout",
    "SubscriptionError",
    "TLSFailed",
]
