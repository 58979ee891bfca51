"""Authentication for Kraken's private WebSocket endpoints: REST signing and WebSocket tokens.

Private and level3 WebSocket connections need a token from the REST call
``GetWebSocketsToken``, signed as Kraken documents::

    API-Sign = base64(HMAC-SHA512(base64decode(secret), uri_path + SHA256(nonce + post_data)))

:class:`TokenProvider` fetches a fresh token for every connection; concurrent callers share one
request in flight. Errors from the exchange become typed exceptions. The secret never appears in
a ``repr``, a log line or an exception.

What it is not: a REST client for the rest of Kraken's API.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import ssl as ssl_module
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any

import httpx

from kbook.errors import (
    AuthError,
    AuthTimeout,
    AuthUnavailable,
    InvalidCredentials,
    InvalidKey,
    InvalidNonce,
    InvalidSignature,
    PermissionDenied,
)

__all__ = [
    "AuthError",
    "AuthTimeout",
    "AuthUnavailable",
    "Credentials",
    "InvalidCredentials",
    "InvalidKey",
    "InvalidNonce",
    "InvalidSignature",
    "NonceSource",
    "PermissionDenied",
    "TokenProvider",
    "sign",
]

TOKEN_PATH = "/0/private/GetWebSocketsToken"
DEFAULT_REST_URL = "https://api.kraken.com"
MAX_ANSWER = 1 << 20  # bytes of a token answer; Kraken's is a few hundred


_ERRORS: dict[str, type[AuthError]] = {
    "EAPI:Invalid key": InvalidKey,
    "EAPI:Invalid signature": InvalidSignature,
    "EAPI:Invalid nonce": InvalidNonce,
    "EGeneral:Permission denied": PermissionDenied,
}


def error_for(errors: list[str]) -> AuthError:
    """The typed exception for Kraken's error strings (``AuthError`` for unknown ones)."""
    for text in errors:
        for prefix, cls in _ERRORS.items():
            if text.startswith(prefix):
                return cls(text, errors)
    return AuthError("; ".join(errors) or "request refused", errors)


def sign(uri_path: str, nonce: str | int, post_data: str, secret_b64: str) -> str:
    """Kraken's ``API-Sign`` for one request.

    :param uri_path: the path from ``/0/private`` on, e.g. ``/0/private/GetWebSocketsToken``
    :param nonce: the request's nonce, exactly as it appears in ``post_data``
    :param post_data: the exact body that is sent (URL-encoded form, or JSON)
    :param secret_b64: the API secret as Kraken issues it (base64)
    """
    digest = hashlib.sha256((str(nonce) + post_data).encode()).digest()
    mac = hmac.new(base64.b64decode(secret_b64), uri_path.encode() + digest, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


class NonceSource:
    """Strictly increasing nonces (nanoseconds since the epoch, bumped when the clock stalls).

    One source per API key, shared by everything in the process that uses the key; it is safe
    across threads.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return self._last


def _header_safe(value: object) -> bool:
    """A non-empty string that can go into an HTTP header as is (printable ASCII, no space)."""
    return (
        isinstance(value, str)
        and bool(value)
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


@dataclass(frozen=True)
class Credentials:
    """An API key and its secret; the secret is left out of ``repr`` and of every message.

    :raises InvalidCredentials: a key or one-time password that is not a non-empty printable
        ASCII string, or a secret that is not a non-empty base64 string
    """

    key: str
    secret: str = field(repr=False)
    otp: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not _header_safe(self.key):
            raise InvalidCredentials("the API key must be a non-empty printable ASCII string")
        if not isinstance(self.secret, str) or not self.secret:
            raise InvalidCredentials("the API secret must be a non-empty base64 string")
        try:
            raw = base64.b64decode(self.secret, validate=True)
        except (ValueError, binascii.Error):
            raise InvalidCredentials("the API secret is not valid base64") from None
        if not raw:
            raise InvalidCredentials("the API secret decodes to nothing")
        if self.otp is not None and not _header_safe(self.otp):
            raise InvalidCredentials("the one-time password must be a printable ASCII string")


class TokenProvider:
    """Fetches WebSocket tokens with ``GetWebSocketsToken``; one request in flight at a time.

    Pass an instance as ``Client(token=provider)``: every (re)connection calls it and gets a
    fresh token, as Kraken asks. The request goes through httpx: TLS verified with the system's
    trust store (or ``ssl``), the same proxy rules as the WebSocket connections
    (:mod:`kbook.client.network`), one timeout for the whole exchange. Inside
    ``async with provider:`` one pooled HTTP client serves every request; outside, each request
    opens and closes its own.

    :param rest_url: base URL of the REST API (the simulator's, in tests)
    :param timeout: seconds for the whole HTTP exchange
    :param ssl: the TLS context of ``https://`` requests (``ssl_context`` is its older name)
    :param proxy: a proxy URL; None reads the environment, ``""`` forces a direct connection
    :param user_agent: the ``User-Agent`` (default ``kbook/<version>``)
    :param extra_headers: more request headers (never ``API-Key``/``API-Sign``: those are set
        per request)
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        rest_url: str = DEFAULT_REST_URL,
        timeout: float = 10.0,
        nonces: NonceSource | None = None,
        ssl: SSLContext | None = None,
        ssl_context: SSLContext | None = None,
        proxy: str | None = None,
        user_agent: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.credentials = credentials
        self.rest_url = rest_url.rstrip("/")
        self.timeout = timeout
        self.nonces = nonces or NonceSource()
        # imported here: signing (the simulator's REST uses sign()) must not load the client
        from kbook.client.network import request_headers

        self.ssl = ssl if ssl is not None else ssl_context
        self.proxy = proxy
        self.headers = request_headers(user_agent, extra_headers)
        self.requests = 0
        self._inflight: asyncio.Future[str] | None = None
        self._http: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"TokenProvider(key={self.credentials.key!r}, rest_url={self.rest_url!r})"

    async def __call__(self) -> str:
        return await self.token()

    async def __aenter__(self) -> TokenProvider:
        if self._http is None:
            self._http = self._client()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled HTTP client of ``async with`` (a no-op outside one)."""
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    def _client(self) -> httpx.AsyncClient:
        from kbook.client.network import proxy_for

        secure = self.rest_url.startswith("https:")
        verify: SSLContext | bool = (
            self.ssl or ssl_module.create_default_context() if secure else True
        )
        return httpx.AsyncClient(
            verify=verify,
            proxy=proxy_for(self.rest_url, self.proxy),
            trust_env=False,
            timeout=httpx.Timeout(self.timeout),
            headers=self.headers,
            follow_redirects=False,
        )

    async def token(self) -> str:
        """A fresh token; callers arriving while a request is in flight share its answer."""
        if self._inflight is not None and not self._inflight.done():
            return await asyncio.shield(self._inflight)
        loop = asyncio.get_running_loop()
        self._inflight = loop.create_future()
        inflight = self._inflight
        try:
            token = await self._fetch_typed()
        except BaseException as exc:
            if not inflight.done():
                failure = exc if isinstance(exc, Exception) else AuthError("cancelled")
                inflight.set_exception(failure)
                inflight.exception()  # retrieved: sharing callers re-raise it themselves
            raise
        inflight.set_result(token)
        return token

    async def _fetch_typed(self) -> str:
        """:meth:`_fetch` within ``timeout``, every failure an :class:`AuthError`."""
        try:
            return await asyncio.wait_for(self._fetch(), self.timeout)
        except AuthError:
            raise
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise AuthTimeout(
                f"GetWebSocketsToken: no answer from {self.rest_url} within {self.timeout} s"
            ) from exc
        except (OSError, EOFError, ValueError, httpx.HTTPError) as exc:
            # refused/reset connections, TLS errors, truncated bodies, unparsable answers; the
            # message names the kind and the endpoint, never a header that carried a secret
            raise AuthUnavailable(
                f"GetWebSocketsToken: {type(exc).__name__} from {self.rest_url}"
            ) from exc

    async def _fetch(self) -> str:
        self.requests += 1
        nonce = self.nonces()
        form = {"nonce": str(nonce)}
        if self.credentials.otp:
            form["otp"] = self.credentials.otp
        body = urllib.parse.urlencode(form)
        headers = {
            "API-Key": self.credentials.key,
            "API-Sign": sign(TOKEN_PATH, nonce, body, self.credentials.secret),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        http = self._http
        own = http is None
        if http is None:
            http = self._client()
        try:
            # the exact bytes that were signed go out: content=, never a re-encoded form
            async with http.stream(
                "POST", self.rest_url + TOKEN_PATH, content=body.encode(), headers=headers
            ) as response:
                status = response.status_code
                payload = bytearray()
                async for chunk in response.aiter_bytes():
                    payload += chunk
                    if len(payload) > MAX_ANSWER:
                        raise AuthUnavailable("GetWebSocketsToken: oversized answer")
        finally:
            if own:
                await http.aclose()
        try:
            answer: Any = json.loads(payload)
        except ValueError:
            raise AuthError(f"GetWebSocketsToken: HTTP {status}, not JSON") from None
        errors = answer.get("error") if isinstance(answer, dict) else None
        if errors:
            raise error_for([str(e) for e in errors])
        result = answer.get("result") if isinstance(answer, dict) else None
        token = result.get("token") if isinstance(result, dict) else None
        if status != 200 or not isinstance(token, str) or not token:
            raise AuthError(f"GetWebSocketsToken: HTTP {status}, no token in the answer")
        return token
