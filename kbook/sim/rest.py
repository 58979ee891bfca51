"""The simulator's REST endpoint: ``POST /0/private/GetWebSocketsToken``, signed as Kraken's.

A plain asyncio HTTP/1.1 server on its own loopback port (``Simulator.rest_url``), one request
per connection (``Connection: close``). It checks a request the way Kraken documents (trading.md
section 1): the ``API-Key`` header names an account (else ``EAPI:Invalid key``), ``API-Sign`` is
``base64(HMAC-SHA512(base64decode(secret), path + SHA256(nonce + body)))`` computed with
:func:`kbook.trading.auth.sign` over the exact body bytes (else ``EAPI:Invalid signature``), and the
form's ``nonce`` is larger than every nonce the key used before (else ``EAPI:Invalid nonce``;
the signature is checked first, so a forged request cannot burn nonces). A key without the
WebSocket permission gets ``EGeneral:Permission denied``. Answers are Kraken's JSON,
``{"error":[],"result":{"token":...,"expires":900}}`` or ``{"error":["EAPI:..."],"result":{}}``,
with HTTP 200 (Kraken reports API errors in the body); an unknown path is a 404 with
``EGeneral:Unknown method``.

With a server TLS context (the simulator's ``tls=``) it serves HTTPS.

What it is not: the rest of Kraken's REST API, keep-alive, or a server for anything beyond
loopback tests (headers and bodies are capped, every read has a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import ssl
import urllib.parse
from typing import Any

from kbook.sim.accounts import TOKEN_LIFETIME_S
from kbook.sim.exchange import Exchange
from kbook.trading.auth import sign

__all__ = ["TOKEN_PATH", "RestServer"]

TOKEN_PATH = "/0/private/GetWebSocketsToken"
_MAX_HEADER_LINES = 100
_MAX_BODY = 64 * 1024
_READ_TIMEOUT_S = 5.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
}


class _BadRequest(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class RestServer:
    """The HTTP side of the exchange; ``requests`` counts the requests answered."""

    def __init__(
        self,
        exchange: Exchange,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.exchange = exchange
        self.host = host
        self.port = port
        self.tls = tls
        self.requests = 0
        #: the headers of every request, oldest first (names lower-cased)
        self.headers_seen: list[dict[str, str]] = []
        self._server: asyncio.AbstractServer | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            try:
                status, answer = await asyncio.wait_for(self._answer(reader), _READ_TIMEOUT_S)
            except _BadRequest as bad:
                status, answer = bad.status, {"error": ["EGeneral:Invalid arguments"], "result": {}}
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            body = json.dumps(answer, separators=(",", ":")).encode()
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            self._handlers.discard(task)
            writer.close()
            try:
                # a TLS close waits for the peer's close_notify, which a tunnel may never pass on
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (ConnectionError, TimeoutError, asyncio.CancelledError):
                writer.transport.abort()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
        request_line = (await reader.readline()).decode("latin-1").split()
        if len(request_line) != 3:
            raise _BadRequest(400)
        method, target, _ = request_line
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADER_LINES):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            raise _BadRequest(400)
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BadRequest(400) from None
        if not 0 <= length <= _MAX_BODY:
            raise _BadRequest(413)
        body = await reader.readexactly(length)
        self.requests += 1
        self.headers_seen.append(headers)
        path = urllib.parse.urlsplit(target).path
        if path != TOKEN_PATH:
            return 404, {"error": ["EGeneral:Unknown method"], "result": {}}
        if method != "POST":
            return 405, {"error": ["EGeneral:Invalid arguments"], "result": {}}
        return 200, self._token(path, headers, body)

    def _token(self, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        def refuse(code: str) -> dict[str, Any]:
            return {"error": [code], "result": {}}

        account = self.exchange.accounts.get(headers.get("api-key", ""))
        if account is None:
            return refuse("EAPI:Invalid key")
        text = body.decode("latin-1")
        form = urllib.parse.parse_qs(text, keep_blank_values=True)
        nonce_text = (form.get("nonce") or [""])[0]
        if not nonce_text.isdigit() or len(nonce_text) > 20:
            return refuse("EAPI:Invalid nonce")
        expected = sign(path, nonce_text, text, account.secret)
        if not hmac.compare_digest(expected, headers.get("api-sign", "")):
            return refuse("EAPI:Invalid signature")
        nonce = int(nonce_text)
        if nonce <= account.last_nonce:
            return refuse("EAPI:Invalid nonce")
        account.last_nonce = nonce
        if not account.ws_permission:
            return refuse("EGeneral:Permission denied")
        token = self.exchange.tokens.issue(account)
        return {"error": [], "result": {"token": token, "expires": TOKEN_LIFETIME_S}}
