"""kbook: a Kraken Spot WebSocket client built around an exact, checksum-verified book engine.

The engine (:mod:`kbook._core`) keeps L2 and level3 books as scaled integers, verifies every
Kraken CRC32 checksum incrementally, and decodes book frames straight from their bytes. The
client (:class:`Client`) keeps subscriptions to Kraken alive around it. This package's public
names are listed in ``__all__``; every exception is also in :mod:`kbook.errors`.

Importing ``kbook`` loads the engine only: the client and its socket library load on first use
of :class:`Client` and its companions.

>>> from kbook import Client, ConnectFailed, KBookError
>>> issubclass(ConnectFailed, KBookError) and Client.__module__
'kbook.client.client'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kbook._core import (
    BookIntegrityError,
    ChecksumMismatch,
    DecodeError,
    Feed,
    KBookError,
    L2Book,
    Level3Book,
    NumberError,
    UnknownPrecision,
    crc32,
    parse_scaled,
)
from kbook._version import __version__
from kbook.errors import (
    CallbackError,
    ClientError,
    ConnectFailed,
    QueueOverflow,
    RequestTimeout,
    SubscriptionError,
)

if TYPE_CHECKING:
    from kbook.client import Client, ClientEvent, ConnectionBudget, ReconnectPolicy

__all__ = [
    "BookIntegrityError",
    "CallbackError",
    "ChecksumMismatch",
    "Client",
    "ClientError",
    "ClientEvent",
    "ConnectFailed",
    "ConnectionBudget",
    "DecodeError",
    "Feed",
    "KBookError",
    "L2Book",
    "Level3Book",
    "NumberError",
    "QueueOverflow",
    "ReconnectPolicy",
    "RequestTimeout",
    "SubscriptionError",
    "UnknownPrecision",
    "__version__",
    "crc32",
    "parse_scaled",
]

_CLIENT_NAMES = ("Client", "ClientEvent", "ConnectionBudget", "ReconnectPolicy")


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        import kbook.client

        value = getattr(kbook.client, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kbook' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
