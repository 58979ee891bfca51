"""The typed errors of :mod:`kbook.bus`, all under :class:`kbook.KBookError`.

A consumer never raises these out of its message handlers: each is reported as a
:class:`~kbook.client.ClientEvent` (``kind="bus_error"``, the error in ``detail``) and logged,
and the book it concerns (if any) is left invalid rather than guessed.

What it is not: the engine's errors (:class:`~kbook.ChecksumMismatch` and friends are reused as
they are when a consumer's engine refuses a frame).
"""

from __future__ import annotations

from kbook._core import DecodeError, KBookError

__all__ = [
    "BusDecodeError",
    "BusError",
    "BusUnavailable",
    "LeaseLost",
    "RelayLost",
    "SequenceError",
    "UnknownSubject",
]


class BusError(KBookError):
    """Base class of the bus layer's own errors."""


class BusUnavailable(BusError):
    """The bus (nats-server) could not be reached, or its stream could not be set up."""


class BusDecodeError(BusError, DecodeError):
    """A bus message that is not what its subject says: bad headers, garbage payload, or a
    payload about another symbol. Nothing was applied to any book."""

    def __init__(self, subject: str, reason: str, symbol: str | None = None,
                 channel: str | None = None) -> None:
        self.subject = subject
        self.reason = reason
        self.symbol = symbol
        self.channel = channel
        super().__init__(f"{subject}: {reason}")


class UnknownSubject(BusError):
    """A message arrived on a subject outside the documented scheme."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(f"unknown subject {subject!r}")


class SequenceError(BusError):
    """A book message out of sequence: ``got`` is not ``expected`` (a gap or a duplicate)."""

    def __init__(self, symbol: str, expected: int, got: int) -> None:
        self.symbol = symbol
        self.expected = expected
        self.got = got
        what = "duplicate" if got < expected else "gap"
        super().__init__(f"{symbol}: sequence {what}: expected {expected}, got {got}")

    @property
    def kind(self) -> str:
        """``"duplicate"`` or ``"gap"``."""
        return "duplicate" if self.got < self.expected else "gap"


class RelayLost(BusError):
    """The relay feeding a book went silent (no heartbeat or message within the timeout)."""

    def __init__(self, relay: str, silent_for: float) -> None:
        self.relay = relay
        self.silent_for = silent_for
        super().__init__(f"relay {relay} silent for {silent_for:.1f} s")


class LeaseLost(BusError):
    """An active relay could not renew its lease; it stops publishing (another may own it)."""
