"""What a protocol session needs from the connection it runs on.

:mod:`kbook.sim.protocol_v1` and :mod:`kbook.sim.protocol_v2` parse requests and write answers;
they reach the socket, the venue and the connection's subscriptions only through :class:`Host`,
which :class:`kbook.sim.server.SimConnection` implements. Keeping this seam explicit lets the
protocol code be exercised without a socket and keeps the server free of wire formats.

What it is not: an implementation; it holds only the interface and the wall-clock helper both
sessions use for ``time_in``/``time_out``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from kbook.sim.venue import Renderer, Subscription, Venue

if TYPE_CHECKING:
    from kbook.sim.exchange import Exchange

__all__ = ["Host", "wall_ns"]


def wall_ns() -> int:
    """Wall-clock epoch nanoseconds: request times are real times, unlike market times."""
    return time.time_ns()


class Host(Protocol):
    """The connection, as a protocol session uses it."""

    venue: Venue
    exchange: Exchange
    subscriptions: dict[tuple[str, str | None], Subscription]

    def send_control(self, data: bytes) -> None:
        """Send a non-channel message (ack, error, pong, status)."""
        ...

    def admit_request(self) -> bool:
        """Charge one request to the rate limit; False means answer ``Exceeded msg rate``."""
        ...

    def token_ok(self, token: str) -> bool:
        """Whether ``token`` was issued by this simulator (to an account or not)."""
        ...

    def subscribe(
        self,
        renderer: Renderer,
        channel: str,
        symbol: str | None,
        param: int | str | None,
        key: tuple[str, str | None],
        options: dict[str, Any],
    ) -> Subscription:
        """Register a subscription (nothing is sent yet)."""
        ...

    def activate(self, sub: Subscription, snapshot: bool) -> None:
        """Start the subscription's stream, with its snapshot if ``snapshot``."""
        ...

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop and forget a subscription."""
        ...
