"""The hand-written core-NATS connection against a real ``nats-server``, with nats-py on the
other end: what one publishes the other receives byte for byte (headers included), both ways;
a message too large for the server is refused without losing the connection; a restarted
server is found again with the subscriptions; credentials from the URL work and never show
up in logs, events, reprs or exceptions; a peer that breaks the protocol is dropped.

What it is not: a test of nats-server, or of timing (no assertion depends on how fast anything
is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.integration.simclient import run, wait_until

nats = pytest.importorskip("nats", reason="the bus tests need the kbook[bus] extra")

from kbook.bus.corenats import CoreNats, CoreNatsError, endpoints  # noqa: E402
from kbook.bus.transport import BusMessage, NatsTransport  # noqa: E402
from kbook.errors import BusUnavailable  # noqa: E402
from tests.integration.test_bus import NatsServer, nats_server  # noqa: E402, F401

PASSWORD = "pw-7Qx.s3cr3t~w0rd"  # kept out of every log line, event and exception
HEADERS = {"Kbook-Seq": "41", "Kbook-Relay": "relay-a", "Kbook-Time": "17 18 19"}
PAYLOADS = [b"", b"plain", b"with\r\nCRLF\r\nMSG x 1 3\r\n", bytes(range(256)) * 40]


async def _core(url: str, **kw: Any) -> CoreNats:
    servers = endpoints(url)
    assert servers is not None
    core = CoreNats(servers, **kw)
    await core.connect(5)
    return core


def test_corenats_and_nats_py_exchange_messages_byte_for_byte(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    async def main() -> None:
        core = await _core(nats_server.url)
        nc = await nats.connect(nats_server.url)
        try:
            at_py: list[Any] = []

            probes: list[Any] = []

            async def on_py(msg: Any) -> None:
                got = probes if msg.subject == "t.to_py.probe" else at_py
                got.append((msg.subject, msg.headers or {}, msg.data))

            await nc.subscribe("t.to_py.>", cb=on_py)
            # nats-py's first flush after connecting can return on the connect's own PONG,
            # before the server has the subscription: wait until a probe comes through
            while not probes:
                core.publish("t.to_py.probe", b"")
                await asyncio.sleep(0.02)
            for i, payload in enumerate(PAYLOADS):
                assert core.publish(f"t.to_py.{i}", payload, HEADERS if i % 2 else None)
            await core.flush()
            await wait_until(lambda: len(at_py) == len(PAYLOADS), 10)
            assert at_py == [
                (f"t.to_py.{i}", HEADERS if i % 2 else {}, p) for i, p in enumerate(PAYLOADS)
            ]

            at_core: list[Any] = []
            sid = await core.subscribe("t.to_core.*", lambda *m: at_core.append(m))
            for i, payload in enumerate(PAYLOADS):
                await nc.publish(f"t.to_core.{i}", payload, headers=HEADERS if i % 2 else None)
            await nc.flush()
            await wait_until(lambda: len(at_core) == len(PAYLOADS), 10)
            assert at_core == [
                (f"t.to_core.{i}", HEADERS if i % 2 else {}, p) for i, p in enumerate(PAYLOADS)
            ]
            # unsubscribed: nothing more arrives (a later message on another subscription
            # proves the server has handled the UNSUB)
            core.unsubscribe(sid)
            marker: list[Any] = []
            await core.subscribe("t.marker", lambda *m: marker.append(m))
            await nc.publish("t.to_core.9", b"late")
            await nc.publish("t.marker", b"m")
            await nc.flush()
            await wait_until(lambda: marker, 10)
            assert len(at_core) == len(PAYLOADS)
            with pytest.raises(ValueError):
                core.publish("has space", b"x")
            with pytest.raises(ValueError):
                core.publish("t.x", b"x", {"K": "line\r\nInjected: 1"})
        finally:
            await nc.close()
            await core.close()

    run(main(), 60)


def test_corenats_refuses_a_message_larger_than_the_server_takes_and_stays_connected(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    async def main() -> None:
        core = await _core(nats_server.url)
        try:
            got: list[Any] = []
            await core.subscribe("t.size", lambda *m: got.append(m))
            assert core.max_payload == 1024 * 1024  # from the server's INFO (its default)
            assert not core.publish("t.size", b"x" * (core.max_payload + 1))
            assert core.refused == 1
            assert core.publish("t.size", b"small")
            await wait_until(lambda: got, 10)
            assert got == [("t.size", {}, b"small")] and core.connected
        finally:
            await core.close()

    run(main(), 60)


def test_corenats_finds_a_restarted_server_again_with_its_subscriptions(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    async def main() -> None:
        states: list[tuple[str, str]] = []
        core = await _core(
            nats_server.url, on_state=lambda k, d: states.append((k, d)), reconnect_wait=0.05
        )
        try:
            got: list[Any] = []
            await core.subscribe("t.after", lambda *m: got.append(m))
            await asyncio.to_thread(nats_server.stop)
            await wait_until(lambda: not core.connected, 20)
            assert not core.publish("t.after", b"lost")  # not buffered: the caller is told
            await asyncio.to_thread(nats_server.start)
            await wait_until(lambda: core.connected, 30)
            nc = await nats.connect(nats_server.url)
            try:
                await nc.publish("t.after", b"found")
                await nc.flush()
            finally:
                await nc.close()
            await wait_until(lambda: got, 10)
            assert got == [("t.after", {}, b"found")]
            kinds = [k for k, _ in states]
            assert kinds.index("disconnected") < kinds.index("reconnected")
            assert core.reconnects == 1 and core.refused == 1
        finally:
            await core.close()

    run(main(), 90)


def test_transport_with_credentials_in_the_url_keeps_them_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    userinfo = f"kb:{PASSWORD}@"
    server = NatsServer(tmp_path / "js", "--user", "kb", "--pass", PASSWORD, userinfo=userinfo)
    server.start()
    caplog.set_level(logging.DEBUG)

    async def main() -> list[str]:
        transport = NatsTransport(server.url)
        states: list[str] = []
        transport.on_state = lambda k, d: states.append(f"{k} {d}")
        await transport.connect()
        try:
            assert "core" in repr(transport)  # the hand-written path logged in too
            got: list[BusMessage] = []
            await transport.listen("t.auth", got.append)
            transport.publish("t.auth", b"hello", {"K": "v"})
            await transport.flush()
            await wait_until(lambda: got, 10)
            assert (got[0].payload, dict(got[0].headers)) == (b"hello", {"K": "v"})
            shown = [repr(transport), *states]
        finally:
            await transport.close()
        wrong = server.url.replace(PASSWORD, PASSWORD[::-1])
        with pytest.raises(BusUnavailable) as refused:
            bad = NatsTransport(wrong, connect_timeout=2.0)
            await bad.connect()
        shown += [str(refused.value), repr(refused.value)]
        return shown

    try:
        shown = run(main(), 60)
    finally:
        server.stop()
    text = "\n".join(shown + [r.getMessage() for r in caplog.records])
    for secret in (PASSWORD, PASSWORD[::-1], "w0rd"):
        assert secret not in text
    assert "***@127.0.0.1" in text  # the URL is still shown, without its userinfo


def test_corenats_drops_a_peer_that_breaks_the_protocol() -> None:
    """Not nats-server: a loopback peer that speaks the protocol and then garbage."""

    async def main() -> None:
        sessions: list[asyncio.StreamWriter] = []

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            session = len(sessions)
            sessions.append(writer)
            writer.write(b'INFO {"server_id":"peer","max_payload":1024}\r\n')
            await reader.readuntil(b"PING\r\n")
            if session == 0:
                writer.write(b"NONSENSE\r\n")  # instead of PONG: the first connect fails
            else:
                writer.write(b"PONG\r\n")
                if session == 1:
                    await reader.readuntil(b"PING\r\n")  # a subscription's confirmation
                    writer.write(b"MSG t.x 1 3\r\nabcXY\r\n")  # 3 bytes promised, 5 sent
            await writer.drain()
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await reader.read()

        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        servers = endpoints(f"nats://127.0.0.1:{port}")
        assert servers is not None
        states: list[str] = []
        core = CoreNats(servers, on_state=lambda k, d: states.append(k), reconnect_wait=0.05)
        try:
            with pytest.raises(CoreNatsError, match="unknown protocol line"):
                await core.connect(5)
            await core.connect(5)
            assert core.max_payload == 1024
            with pytest.raises((CoreNatsError, ConnectionError)):
                await core.subscribe("t.x", lambda *m: None)
            await wait_until(lambda: "disconnected" in states, 10)
            assert states[0] == "error"  # the broken MSG, reported before the hang-up
            await wait_until(lambda: core.connected and "reconnected" in states, 10)
        finally:
            await core.close()
            server.close()
            for writer in sessions:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            await server.wait_closed()

    run(main(), 60)


@pytest.mark.parametrize("relay_fast", [True, False], ids=["relay-core", "relay-nats-py"])
def test_relay_and_consumers_on_either_path_agree_on_every_book(
    nats_server: NatsServer,  # noqa: F811
    relay_fast: bool,
) -> None:
    """The hand-written path and nats-py carry the same messages: a relay on one and a consumer
    on each follow the same verified books, and both consumers' books move to the live path."""
    from kbook.bus import BusClient, Relay
    from kbook.sim import Simulator
    from tests.integration.test_bus import FAST, PAIRS, Checker, Truth

    async def main() -> None:
        async with Simulator(seed=12, rate=80, pairs=PAIRS) as sim:
            relay = Relay(
                NatsTransport(nats_server.url, fast_path=relay_fast),
                PAIRS,
                url=sim.url_v2,
                venue="sim",
                snapshot_every=1.0,
                heartbeat_every=0.2,
                client_options={"policy": FAST},
            )
            truth = Truth(relay)
            async with (
                relay,
                BusClient(NatsTransport(nats_server.url), venue="sim") as core_bus,
                BusClient(NatsTransport(nats_server.url, fast_path=False), venue="sim") as py_bus,
            ):
                assert "via core" in repr(core_bus.transport)
                assert "via nats-py" in repr(py_bus.transport)
                checkers = [Checker(core_bus, truth), Checker(py_bus, truth)]
                books = [
                    *await core_bus.subscribe_book(PAIRS, 10, on_book=checkers[0]),
                    *await py_bus.subscribe_book(PAIRS, 10, on_book=checkers[1]),
                ]
                await wait_until(lambda: all(b.checksums_verified >= 30 for b in books), 60)
                await wait_until(lambda: core_bus.live_switches == py_bus.live_switches == 2, 30)
                assert all(b.checksum_mismatches == 0 for b in books)
                assert not checkers[0].bad and not checkers[1].bad
                assert all(sum(c.calls.values()) >= 30 for c in checkers)

    run(main(), 120)
