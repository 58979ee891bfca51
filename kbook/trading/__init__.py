"""Trading on Kraken: credentials and tokens, order requests and their outcomes, the session.

- :mod:`~kbook.trading.auth`: API keys, request signing, nonces, WebSocket tokens
  (:class:`TokenProvider`);
- :mod:`~kbook.trading.orders`: order requests checked before sending, the wire encoding of
  both protocols, Kraken's error strings typed, :class:`Outcome`;
- :mod:`~kbook.trading.session`: :class:`PrivateSession`, order entry, executions, balances and
  the dead-man switch over a :class:`~kbook.client.Client`'s private connection.

Importing this package does not open anything; :class:`PrivateSession` is loaded on first use
(it needs the client and its socket library).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kbook.trading.auth import (
    AuthError,
    AuthTimeout,
    AuthUnavailable,
    Credentials,
    InvalidCredentials,
    InvalidKey,
    InvalidNonce,
    InvalidSignature,
    NonceSource,
    PermissionDenied,
    TokenProvider,
    sign,
)
from kbook.trading.orders import (
    BATCH_ADD_MAX,
    BATCH_CANCEL_MAX,
    CANCEL_AFTER_MAX,
    ORDER_TYPES,
    AddOrder,
    Conditional,
    InsufficientFunds,
    InvalidArguments,
    OrderError,
    OrderRateLimited,
    Outcome,
    OutcomeState,
    Triggers,
    UnknownOrder,
    ValidationError,
    check_batch_cancel,
    check_cancel_after,
    chunk_batch,
    encode_request,
    error_for,
    v1_add_order,
    validate_add,
)

if TYPE_CHECKING:
    from kbook.trading.session import OrderView, PrivateSession

__all__ = [
    "BATCH_ADD_MAX",
    "BATCH_CANCEL_MAX",
    "CANCEL_AFTER_MAX",
    "ORDER_TYPES",
    "AddOrder",
    "AuthError",
    "AuthTimeout",
    "AuthUnavailable",
    "Conditional",
    "Credentials",
    "InsufficientFunds",
    "InvalidArguments",
    "InvalidCredentials",
    "InvalidKey",
    "InvalidNonce",
    "InvalidSignature",
    "NonceSource",
    "OrderError",
    "OrderRateLimited",
    "OrderView",
    "Outcome",
    "OutcomeState",
    "PermissionDenied",
    "PrivateSession",
    "TokenProvider",
    "Triggers",
    "UnknownOrder",
    "ValidationError",
    "check_batch_cancel",
    "check_cancel_after",
    "chunk_batch",
    "encode_request",
    "error_for",
    "sign",
    "v1_add_order",
    "validate_add",
]


def __getattr__(name: str) -> Any:
    if name in ("OrderView", "PrivateSession"):
        from kbook.trading import session

        value = getattr(session, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kbook.trading' has no attribute {name!r}")
