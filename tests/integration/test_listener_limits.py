"""FeedListener against a hostile loopback server: fragmented messages stay within one frame's cap.

A local picows server sends messages split into continuation frames; the client side is the real
:class:`kbook.FeedListener` (what :class:`kbook.client.Client` connects with), with a small
``max_message_size`` so the test stays light. No external network.
"""

from __future__ import annotations

from typing import Any

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
    ws_create_server,
)

from kbook import Feed
from kbook._listener import FeedListener
from tests.integration.simclient import run, wait_until


class Owner:
    """What a FeedListener reports to: records every call."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.errors: list[Exception] = []
        self.connected = 0
        self.disconnected = 0

    def _on_connected(self, transport: WSTransport) -> None:
        self.connected += 1

    def _on_disconnected(self, transport: WSTransport) -> None:
        self.disconnected += 1

    def _on_message(self, obj: Any) -> None:
        self.messages.append(obj)

    def _on_book_error(self, exc: Exception) -> None:
        self.errors.append(exc)

    def _on_callback_error(self, book: Any, exc: Exception) -> None:
        self.errors.append(exc)


class Sender(WSListener):  # type: ignore[misc]
    """Server side: sends the fragments it is given on connect, records the close it gets."""

    def __init__(self, fragments: list[bytes], closes: list[int]) -> None:
        self.fragments = fragments
        self.closes = closes

    def on_ws_connected(self, transport: WSTransport) -> None:
        last = len(self.fragments) - 1
        for i, part in enumerate(self.fragments):
            kind = WSMsgType.TEXT if i == 0 else WSMsgType.CONTINUATION
            transport.send(kind, part, fin=i == last)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self.closes.append(int(frame.get_close_code()))
            transport.disconnect()


async def exchange(fragments: list[bytes], limit: int) -> tuple[Owner, list[int]]:
    closes: list[int] = []
    server = await ws_create_server(lambda _request: Sender(fragments, closes), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    owner = Owner()

    def make() -> FeedListener:
        listener = FeedListener(Feed(), owner, b'{"method":"ping"}')
        listener.max_message_size = limit
        return listener

    try:
        transport, _ = await ws_connect(make, f"ws://127.0.0.1:{port}/")
        await wait_until(lambda: bool(owner.messages or owner.disconnected), timeout=5)
        if not owner.disconnected:
            transport.disconnect()
        await transport.wait_disconnected()
    finally:
        server.close()
        await server.wait_closed()
    return owner, closes


def test_listener_fragmented_message_within_limit_is_delivered() -> None:
    message = b'{"channel":"heartbeat","pad":"' + b"x" * 1500 + b'"}'
    parts = [message[:600], message[600:1200], message[1200:]]

    async def main() -> None:
        owner, closes = await exchange(parts, limit=len(message))
        assert owner.messages == [{"channel": "heartbeat", "pad": "x" * 1500}]
        assert closes == []

    run(main())


def test_listener_fragmented_message_over_limit_closes_1009_and_disconnects() -> None:
    message = b'{"channel":"heartbeat","pad":"' + b"x" * 1500 + b'"}'
    parts = [message[:600], message[600:1200], message[1200:]]

    async def main() -> None:
        owner, closes = await exchange(parts, limit=len(message) - 1)
        await wait_until(lambda: bool(closes), timeout=5)
        assert owner.messages == [] and owner.errors == []
        assert closes == [int(WSCloseCode.MESSAGE_TOO_BIG)]
        assert owner.disconnected == 1

    run(main())


def test_listener_first_fragment_alone_over_limit_closes_1009() -> None:
    async def main() -> None:
        owner, closes = await exchange([b"[" * 2000, b"]" * 2000], limit=1000)
        await wait_until(lambda: bool(closes), timeout=5)
        assert closes == [int(WSCloseCode.MESSAGE_TOO_BIG)] and owner.messages == []

    run(main())


def test_listener_default_limit_is_one_frame_cap() -> None:
    owner = Owner()
    listener = FeedListener(Feed(), owner, b"{}")
    assert listener.max_message_size == 10 * 1024 * 1024
