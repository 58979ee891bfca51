"""``kbook replay``: every bundled sample served as a Kraken endpoint and read by the real Client.

The counts each test expects are ``kbook verify``'s for the same file, so a replayed capture and
a verified capture cannot disagree: every book message reaches the client's book, and every
checksum in it verifies.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme

from kbook.cli import main
from kbook.client import Client, ClientEvent, ReconnectPolicy, SubscriptionError
from kbook.sim.replay import ReplayServer, load_capture
from tests.integration.simclient import SimClient, run, wait_until

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FAST = ReconnectPolicy(initial=0.05, maximum=0.2, first_connect_timeout=3.0)


def verify_counts(path: Path) -> dict[str, tuple[int, int]]:
    """``{symbol: (messages, checksums verified)}`` as ``kbook verify --json`` reports them."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["verify", "--json", str(path)]) == 0
    report = json.loads(buffer.getvalue())
    return {s["symbol"]: (s["messages"], s["checksums_verified"]) for s in report["symbols"]}


async def replay_through_client(
    path: Path, speed: float | None = None, tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None
) -> dict[str, tuple[int, int]]:
    capture = load_capture(str(path))
    async with ReplayServer(capture, speed=speed, tls=None if tls is None else tls[0]) as server:
        events: list[ClientEvent] = []
        level3 = any(channel == "level3" for channel, _ in capture.keys)
        client = Client(
            server.url,
            protocol=capture.protocol,  # type: ignore[arg-type]
            level3_url=server.url,
            token="replayed",
            policy=FAST,
            ssl=None if tls is None else tls[1],
            on_event=events.append,
        )
        async with client:
            books = []
            for (channel, symbol), ack in sorted(capture.acks.items(), key=str):
                if channel not in ("book", "level3") or symbol is None:
                    continue
                depth = ack.get("depth", ack.get("subscription", {}).get("depth", 10))
                if level3:
                    books += await client.subscribe_level3([symbol], depth=depth)
                else:
                    books += await client.subscribe_book([symbol], depth=depth)
            expected = verify_counts(path)
            await wait_until(lambda: all(b.messages >= expected[b.symbol][0] for b in books), 20.0)
            assert not [e for e in events if e.kind in ("checksum_mismatch", "decode_error")]
            assert all(b.valid for b in books)
            return {b.symbol: (b.messages, b.checksums_verified) for b in books}


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.capture")))
def test_replay_each_sample_verifies_every_checksum_like_kbook_verify(sample: str) -> None:
    path = SAMPLES / sample
    got = run(replay_through_client(path))
    assert got == verify_counts(path)


def test_replay_paced_by_receive_times_and_speed() -> None:
    path = SAMPLES / "btcusd-v2.capture"
    capture = load_capture(str(path))
    frames = capture.frames
    span = (frames[-1].received - frames[0].received) / 1e9
    speed = span / 1.0  # the whole capture in about one second

    async def main() -> float:
        started = time.monotonic()
        await replay_through_client(path, speed=speed)
        return time.monotonic() - started

    elapsed = run(main())
    assert 0.9 <= elapsed < 5.0


def test_replay_over_tls() -> None:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    path = SAMPLES / "btcusd-v2.capture"
    assert run(replay_through_client(path, tls=(server, client))) == verify_counts(path)


def test_replay_subscription_it_cannot_satisfy_gets_krakens_error() -> None:
    async def main() -> None:
        # nested: the client needs the port the server bound
        async with ReplayServer(str(SAMPLES / "btcusd-v2.capture"), speed=None) as server:  # noqa: SIM117
            async with Client(server.url, policy=FAST, precisions={"DOGE/USD": (7, 8)}) as client:
                with pytest.raises(SubscriptionError, match="Currency pair not supported"):
                    await client.subscribe_book(["DOGE/USD"], depth=10)
                with pytest.raises(SubscriptionError, match="depth"):
                    await client.subscribe_book(["BTC/USD"], depth=100)
                with pytest.raises(SubscriptionError, match="not available"):
                    await client.subscribe("trade", ["BTC/USD"])

    run(main())


def test_replay_sends_status_first_answers_pings_and_frames_byte_for_byte() -> None:
    path = SAMPLES / "btcusd-v2.capture"
    recorded = path.read_bytes().splitlines()

    async def main() -> None:
        async with ReplayServer(str(path), speed=None) as server:
            sim_client = await SimClient.connect(server.url)
            await sim_client.wait_count(1)
            assert b'"channel":"status"' in sim_client.frames[0]
            sim_client.send({"method": "ping", "req_id": 7})
            await sim_client.wait_for(
                lambda frames: any(b'"pong"' in f and b'"req_id":7' in f for f in frames)
            )
            sim_client.send(
                {
                    "method": "subscribe",
                    "req_id": 8,
                    "params": {"channel": "book", "symbol": ["ETH/USD"], "depth": 25},
                }
            )
            await wait_until(lambda: sum(b'"update"' in f for f in sim_client.frames) >= 700)
            data = [f for f in sim_client.frames if f.startswith(b'{"channel":"book"')]
            assert b'"type":"snapshot"' in data[0]
            bodies = {line.split(b": ", 1)[1] for line in recorded}
            assert all(f in bodies for f in data)
            assert not any(b"BTC/USD" in f for f in data)
            await sim_client.close()

    run(main())


def test_replay_loop_starts_again_from_the_snapshot() -> None:
    async def main() -> None:
        path = SAMPLES / "btcusd-l3.capture"
        # nested: the client needs the port the server bound
        async with ReplayServer(str(path), speed=None, loop=True) as server:  # noqa: SIM117
            async with Client(server.url, level3_url=server.url, token="t", policy=FAST) as client:
                [book] = await client.subscribe_level3(["BTC/USD"], depth=10)
                await wait_until(lambda: book.messages >= 3 * 497, 20.0)
                assert book.valid

    run(main())


def test_replay_loop_paced_sends_the_lone_instrument_snapshot_once() -> None:
    """A subscription whose capture is one moment (v2 ``instrument``) is not looped: resent back
    to back it would flood the client and starve the book (found at --speed 8 --loop)."""
    frames: list[bytes] = []

    async def main() -> None:
        path = SAMPLES / "btcusd-v2.capture"
        async with ReplayServer(str(path), speed=50.0, loop=True) as server:  # noqa: SIM117
            async with Client(server.url, policy=FAST, recorder=frames.append) as client:
                [book] = await client.subscribe_book(["BTC/USD"], depth=10)
                await wait_until(lambda: book.checksums_verified >= 2000, 20.0)
                assert book.valid

    run(main())
    instruments = [f for f in frames if f.startswith(b'{"channel":"instrument"')]
    assert len(instruments) == 1, len(instruments)


def test_replay_command_serves_a_sample_to_the_client() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = SAMPLES / "xbtusd-v1.capture"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from kbook.cli import main; sys.exit(main())",
            "replay",
            str(path),
            "--port",
            str(port),
            "--max",
            "--duration",
            "30",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"ws://127.0.0.1:{port}/ (v1" in banner

        async def main() -> tuple[int, int]:
            async with Client(f"ws://127.0.0.1:{port}/", protocol="v1", policy=FAST) as client:
                [book] = await client.subscribe_book(["XBT/USD"], depth=100)
                await wait_until(lambda: book.messages >= 1000, 20.0)
                return book.messages, book.checksums_verified

        assert run(main()) == verify_counts(path)["XBT/USD"]
    finally:
        process.terminate()
        process.communicate(timeout=10)
