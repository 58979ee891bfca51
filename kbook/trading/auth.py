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
import contextlib
import hashlib
import hmac
import json
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

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
MAX_ANSWER = 1 << 20    # bytes of a token answer; Kraken's is a few hundred


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
    return (isinstance(value, str) and bool(value) and value.isascii() and value.isprintable()
            and " " not in value)


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
    fresh token, as Kraken asks.

    :param rest_url: base URL of the REST API (the simulator's, in tests)
    :param timeout: seconds for the whole HTTP exchange
    """

    def __init__(self, credentials: Credentials, *, rest_url: str = DEFAULT_REST_URL,
                 timeout: float = 10.0, nonces: NonceSource | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.credentials = credentials
        self.rest_url = rest_url.rstrip("/")
        self.timeout = timeout
        self.nonces = nonces or NonceSource()
        self.ssl_context = ssl_context
        self.requests = 0
        self._inflight: asyncio.Future[str] | None = None

    def __repr__(self) -> str:
        return f"TokenProvider(key={self.credentials.key!r}, rest_url={self.rest_url!r})"

    async def __call__(self) -> str:
        return await self.token()

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
        except TimeoutError as exc:
            raise AuthTimeout(f"GetWebSocketsToken: no answer from {self.rest_url} within "
                              f"{self.timeout} s") from exc
        except (OSError, EOFError, ValueError) as exc:
            # refused/reset connections, TLS errors, truncated bodies, unparsable lines; the
            # message names the kind and the endpoint, never a header that carried a secret
            raise AuthUnavailable(f"GetWebSocketsToken: {type(exc).__name__} from "
                                  f"{self.rest_url}") from exc

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
            "User-Agent": "kbook",
        }
        status, payload = await _http_post(self.rest_url + TOKEN_PATH, body.encode(), headers,
                                           self.ssl_context)
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


async def _http_post(url: str, body: bytes, headers: dict[str, str],
                     ssl_context: ssl.SSLContext | None) -> tuple[int, bytes]:
    """One HTTP/1.1 POST (``Connection: close``); returns (status, body)."""
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    context = (ssl_context or ssl.create_default_context()) if secure else None
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=host if secure else None)
    try:
        head = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}",
                f"Content-Length: {len(body)}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        try:
            status = int(status_line.split()[1])
        except (IndexError, ValueError):
            raise AuthUnavailable("malformed HTTP response: bad status line") from None
        length: int | None = None
        chunked = False
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                if not value.strip().isdigit() or int(value.strip()) > MAX_ANSWER:
                    raise AuthUnavailable("malformed HTTP response: bad Content-Length")
                length = int(value.strip())
            elif name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            data = bytearray()
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                if size < 0 or len(data) + size > MAX_ANSWER:
                    raise AuthUnavailable("malformed HTTP response: oversized body")
                data += await reader.readexactly(size)
                await reader.readline()
            return status, bytes(data)
        if length is not None:
            return status, await reader.readexactly(length)
        body = await reader.read(MAX_ANSWER + 1)
        while len(body) <= MAX_ANSWER and (more := await reader.read(MAX_ANSWER + 1 - len(body))):
            body += more
        if len(body) > MAX_ANSWER:
            raise AuthUnavailable("malformed HTTP response: oversized body")
        return status, body
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
