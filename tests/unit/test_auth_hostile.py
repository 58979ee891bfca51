"""Token fetching against broken or hostile endpoints, and malformed credentials (issue 10).

Every failure is an :class:`kbook.errors.AuthError` subclass whose text never holds the secret.
The endpoints are local asyncio servers on loopback; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kbook.trading.auth import (
    AuthError,
    AuthTimeout,
    AuthUnavailable,
    Credentials,
    InvalidCredentials,
    TokenProvider,
)

SECRET = base64.b64encode(b"\x01\x02hostile-test-secret\xfe\xff" * 3).decode()


def secret_forms() -> list[str]:
    raw = base64.b64decode(SECRET)
    return [SECRET, raw.hex(), raw.decode("latin-1"), base64.urlsafe_b64encode(raw).decode()]


def assert_no_secret(text: str) -> None:
    for form in secret_forms():
        assert form not in text


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def fetch_from(handler: Handler, timeout: float = 2.0) -> AuthError:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = TokenProvider(
        Credentials("KEY", SECRET), rest_url=f"http://127.0.0.1:{port}", timeout=timeout
    )
    try:
        with pytest.raises(AuthError) as info:
            await provider.token()
    finally:
        server.close()
        await server.wait_closed()
    return info.value


async def read_request(reader: asyncio.StreamReader) -> None:
    while (await reader.readline()) not in (b"\r\n", b""):
        pass


def test_token_endpoint_that_hangs_raises_auth_timeout() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
            await asyncio.sleep(30)
        finally:
            writer.close()

    async def main() -> None:
        exc = await fetch_from(hang, timeout=0.2)
        assert isinstance(exc, AuthTimeout)
        assert_no_secret(str(exc) + repr(exc))

    asyncio.run(main())


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}",  # truncated body
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunk size
        b"garbage\r\n\r\n",
    ],
)
def test_token_endpoint_malformed_http_raises_auth_unavailable(answer: bytes) -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
            writer.write(answer)
            await writer.drain()
        finally:
            writer.close()

    async def main() -> None:
        exc = await fetch_from(reply)
        assert isinstance(exc, AuthUnavailable) and not isinstance(exc, AuthTimeout)
        assert_no_secret(str(exc) + repr(exc))

    asyncio.run(main())


def test_token_endpoint_refusing_connections_raises_auth_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there

    async def main() -> None:
        provider = TokenProvider(
            Credentials("KEY", SECRET), rest_url=f"http://127.0.0.1:{port}", timeout=2.0
        )
        with pytest.raises(AuthUnavailable) as info:
            await provider.token()
        assert_no_secret(str(info.value) + repr(info.value))

    asyncio.run(main())


@pytest.mark.parametrize(
    "key,secret,otp",
    [
        ("KEY", None, None),
        ("KEY", 12345, None),
        ("KEY", b"AAAA", None),
        ("KEY", "", None),
        ("KEY", "not base64 !!", None),
        ("KEY", "AAA", None),  # bad padding
        ("KEY", "====", None),
        ("", SECRET, None),
        (None, SECRET, None),
        ("KEY\r\nX-Injected: 1", SECRET, None),
        ("KEY", SECRET, 123456),
        ("KEY", SECRET, "12\n34"),
    ],
)
def test_credentials_malformed_refused_at_construction(key: Any, secret: Any, otp: Any) -> None:
    with pytest.raises(InvalidCredentials) as info:
        Credentials(key, secret, otp)
    assert isinstance(info.value, AuthError) and isinstance(info.value, ValueError)
    if isinstance(secret, str) and secret:
        assert secret not in str(info.value)


def test_credentials_valid_accepted() -> None:
    credentials = Credentials("KEY", SECRET, otp="123456")
    assert credentials.key == "KEY"
    assert_no_secret(repr(credentials))
