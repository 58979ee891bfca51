"""Every exception kbook raises, in one place.

All derive from :class:`KBookError`. The engine's (decoding, numbers, checksums) are defined by
the Cython engine and re-exported here; the others are defined here and re-exported by the
modules that raise them, so ``from kbook.errors import ConnectFailed`` and ``from kbook.client
import ConnectFailed`` name the same class.

- engine: :class:`DecodeError` (and :class:`NumberError`), :class:`UnknownPrecision`,
  :class:`ChecksumMismatch`, :class:`BookIntegrityError`
- client: :class:`ClientError` and its kinds (connecting, subscribing, queues, callbacks)
- trading: :class:`AuthError` (tokens and signatures), :class:`OrderError` (order requests)
- bus: :class:`BusError` (relay and consumers)
- research: :class:`ExportError` (Parquet export, capture files)
"""

from __future__ import annotations

from kbook._core import (
    BookIntegrityError,
    ChecksumMismatch,
    DecodeError,
    KBookError,
    NumberError,
    UnknownPrecision,
)

__all__ = [
    "AuthError",
    "AuthTimeout",
    "AuthUnavailable",
    "BookIntegrityError",
    "BusDecodeError",
    "BusError",
    "BusUnavailable",
    "CallbackError",
    "CaptureError",
    "ChecksumMismatch",
    "ClientError",
    "ConnectFailed",
    "DecodeError",
    "ExportError",
    "HandshakeRefused",
    "InsufficientFunds",
    "InvalidArguments",
    "InvalidCredentials",
    "InvalidKey",
    "InvalidNonce",
    "InvalidSignature",
    "KBookError",
    "LeaseLost",
    "MarketClosed",
    "NumberError",
    "OrderError",
    "OrderMinimumNotMet",
    "OrderRateLimited",
    "PermissionDenied",
    "PostOnlyRejected",
    "QueueOverflow",
    "RelayLost",
    "RequestTimeout",
    "SequenceError",
    "SubscriptionError",
    "TLSFailed",
    "TokenExpired",
    "UnknownOrder",
    "UnknownPrecision",
    "UnknownSubject",
    "ValidationError",
]

# -- client (kbook.client) --------------------------------------------------------------------


class ClientError(KBookError):
    """Base class of the client's own errors."""


class SubscriptionError(ClientError):
    """The exchange refused a subscription (unknown symbol, unsupported depth, ...)."""

    def __init__(self, channel: str, symbol: str | None, error: str) -> None:
        self.channel = channel
        self.symbol = symbol
        self.error = error
        super().__init__(f"{channel} {symbol or ''}: {error}".replace("  ", " "))


class RequestTimeout(ClientError):
    """A request got no (complete) answer in time; its outcome is unknown.

    From a ``subscribe*`` call it means the subscription is not confirmed yet: the client keeps
    retrying it in the background (``subscription_retry`` events) until it is acknowledged or
    refused, or until it is unsubscribed.
    """


class ConnectFailed(ClientError, ConnectionError):
    """A connection could not be made: ``url`` and ``cause`` say where and why.

    ``permanent`` is True for causes that retrying cannot cure (certificate verification, an
    HTTP 4xx answer to the upgrade, an unknown host, a refused API key).
    """

    def __init__(self, url: str, cause: str, *, permanent: bool = False) -> None:
        self.url = url
        self.cause = cause
        self.permanent = permanent
        super().__init__(f"cannot connect to {url}: {cause}")


class HandshakeRefused(ConnectFailed):
    """The server answered the WebSocket upgrade with an HTTP status instead of switching.

    Kraken's edge (Cloudflare) answers some upgrades with 403, 429 or 503 and an HTML page.

    :ivar status: the HTTP status of the answer
    :ivar headers: the answer's headers, names lower-cased
    :ivar body: the first bytes of the answer's body, decoded leniently (at most 200 characters)
    :ivar retry_after: seconds the server asked to wait (``Retry-After``), or None
    """

    def __init__(
        self,
        url: str,
        status: int,
        headers: dict[str, str] | None = None,
        body: str = "",
        retry_after: float | None = None,
        *,
        permanent: bool = False,
    ) -> None:
        self.status = status
        self.headers = dict(headers or {})
        self.body = body
        self.retry_after = retry_after
        cause = f"HTTP {status} answered the WebSocket upgrade"
        if retry_after is not None:
            cause += f" (Retry-After {retry_after:g} s)"
        if body:
            cause += f": {body}"
        super().__init__(url, cause, permanent=permanent)


class TLSFailed(ConnectFailed):
    """The TLS handshake failed: ``host`` and ``problem`` say with whom and why.

    ``permanent`` (certificate verification, a host name mismatch) means retrying cannot cure
    it; a connection closed during the TLS handshake is not permanent.
    """

    def __init__(self, url: str, host: str, problem: str, *, permanent: bool) -> None:
        self.host = host
        self.problem = problem
        super().__init__(url, f"TLS with {host} failed: {problem}", permanent=permanent)


class QueueOverflow(ClientError):
    """A :meth:`Client.messages` queue with ``overflow="error"`` was full: messages were lost."""

    def __init__(self, dropped: int) -> None:
        self.dropped = dropped
        super().__init__(f"message queue full: {dropped} message(s) dropped")


class CallbackError(ClientError):
    """A user callback raised while the client runs with ``callback_errors="raise"``.

    The client stopped; the callback's exception is the ``__cause__``.
    """


# -- trading: tokens and signatures (kbook.trading.auth) --------------------------------------


class AuthError(KBookError):
    """The exchange refused an authenticated request, or did not answer it properly."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors = list(errors or [])
        super().__init__(message)


class InvalidKey(AuthError):
    """``EAPI:Invalid key``: the API key is unknown or malformed."""


class InvalidSignature(AuthError):
    """``EAPI:Invalid signature``: the secret does not match the key, or the body was altered."""


class InvalidNonce(AuthError):
    """``EAPI:Invalid nonce``: a nonce was not larger than the key's previous one."""


class PermissionDenied(AuthError):
    """``EGeneral:Permission denied``: the key lacks the WebSocket permission."""


class InvalidCredentials(AuthError, ValueError):
    """The key, secret or one-time password given to :class:`Credentials` is malformed.

    Checked locally at construction, before any request; the message never quotes the secret.
    """


class AuthUnavailable(AuthError):
    """The token endpoint could not be reached or did not answer in HTTP (refused connection,
    reset, TLS failure, malformed status line or headers, truncated or oversized body)."""


class AuthTimeout(AuthUnavailable):
    """The token endpoint did not answer completely within the provider's ``timeout``."""


# -- trading: order requests (kbook.trading) --------------------------------------------------


class OrderError(KBookError):
    """The exchange rejected a trading request; ``code`` is Kraken's error string."""

    def __init__(self, code: str, request: str | None = None) -> None:
        self.code = code
        self.request = request
        super().__init__(f"{request}: {code}" if request else code)


class ValidationError(OrderError, ValueError):
    """A request was refused before sending: it breaks a rule the exchange would enforce."""


class InsufficientFunds(OrderError):
    """``EOrder:Insufficient funds``."""


class InvalidArguments(OrderError):
    """``EGeneral:Invalid arguments`` (and its detailed variants)."""


class UnknownOrder(OrderError):
    """``EOrder:Unknown order`` / ``EOrder:Invalid order``: no such open order."""


class OrderRateLimited(OrderError):
    """``EOrder:Rate limit exceeded`` (the per-pair trading counter) or a message-rate refusal."""


class OrderMinimumNotMet(OrderError):
    """``EOrder:Order minimum not met`` / ``EOrder:Cost minimum not met``."""


class PostOnlyRejected(OrderError):
    """``EOrder:Post only order`` / the market is in post-only mode."""


class MarketClosed(OrderError):
    """``EService:Unavailable`` or the market is in cancel-only / maintenance mode."""


class TokenExpired(OrderError):
    """``ESession:Invalid session`` / ``EAPI:Invalid token``: fetch a fresh token and retry."""


# -- bus (kbook.bus) --------------------------------------------------------------------------


class BusError(KBookError):
    """Base class of the bus layer's own errors.

    A consumer never raises these out of its message handlers: each is reported as a
    :class:`~kbook.client.ClientEvent` (``kind="bus_error"``, the error in ``detail``) and
    logged, and the book it concerns (if any) is left invalid rather than guessed. When a
    consumer's engine refuses a frame, the engine's own errors are reported as they are.
    """


class BusUnavailable(BusError):
    """The bus (nats-server) could not be reached, or its stream could not be set up."""


class BusDecodeError(BusError, DecodeError):
    """A bus message that is not what its subject says: bad headers, garbage payload, or a
    payload about another symbol. Nothing was applied to any book."""

    def __init__(
        self, subject: str, reason: str, symbol: str | None = None, channel: str | None = None
    ) -> None:
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


# -- research (kbook.history) ----------------------------------------------------------------


class ExportError(KBookError, ValueError):
    """A capture or a value that cannot be exported exactly (the message says which and why)."""


class CaptureError(ExportError):
    """A capture line that cannot be used (the message names the file and the line)."""
