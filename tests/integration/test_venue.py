"""The path to the real venue, end to end: TLS, proxies, headers, and handshakes that fail.

Every test runs the real :class:`~kbook.client.Client` (and the real ``TokenProvider``) against
the simulator over loopback: with a throwaway CA from ``trustme`` for ``wss://``/``https://``,
through a real HTTP CONNECT proxy (``proxy.py``) started by the test, and against the fault menu's
refused upgrades (HTTP 403/429/503 with an HTML page and ``Retry-After``) and TLS hang-ups.
No certificate is committed and nothing leaves the machine.
"""

from __future__ import annotations

import io
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from kbook.client import (
    Client,
    ConnectFailed,
    HandshakeRefused,
    ReconnectPolicy,
    TLSFailed,
)
from kbook.client.network import DEFAULT_USER_AGENT, proxy_for
from kbook.sim import Simulator
from kbook.trading.auth import Credentials, TokenProvider
from tests.integration.simclient import run, wait_until

BTC = "BTC/USD"
FAST = ReconnectPolicy(initial=0.05, maximum=0.2, first_connect_timeout=3.0)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def verified_books(client: Client, count: int = 3, timeout: float = 10.0) -> int:
    """Subscribe to BTC/USD and wait for ``count`` verified updates; return the updates seen."""
    seen: list[int] = []
    [book] = await client.subscribe_book(
        [BTC], depth=10, on_book=lambda b: seen.append(1) if b.valid else None
    )
    await wait_until(lambda: len(seen) >= count, timeout)
    assert book.valid
    return len(seen)


# -- TLS ------------------------------------------------------------------------------------------


def test_tls_client_trusting_the_ca_verifies_books_over_wss(ca: trustme.CA) -> None:
    async def main() -> None:
        async with Simulator(seed=3, rate=50.0, pairs=[BTC], warmup=200, tls=server_tls(ca)) as sim:
            assert sim.url_v2.startswith("wss://") and sim.rest_url.startswith("https://")
            async with Client(sim.url_v2, ssl=client_tls(ca), policy=FAST) as client:
                await verified_books(client)
                transport = client.connections[0].transport
                assert transport is not None and transport.is_secure

    run(main())


def test_tls_untrusted_certificate_fails_at_once_with_the_host_and_problem(ca: trustme.CA) -> None:
    async def main() -> None:
        async with Simulator(seed=3, pairs=[BTC], warmup=50, tls=server_tls(ca)) as sim:
            started = time.monotonic()
            policy = ReconnectPolicy(initial=0.05, first_connect_timeout=10.0)
            with pytest.raises(TLSFailed) as info:
                await Client(sim.url_v2, policy=policy).start()  # the system store only
            elapsed = time.monotonic() - started
            # permanent: no retry loop, and only one upgrade attempt reached the server's TLS
            assert info.value.permanent and elapsed < 2.0
            assert info.value.host == "127.0.0.1"
            assert "unable to get local issuer certificate" in info.value.problem
            assert "127.0.0.1" in str(info.value)
            assert sim.upgrade_headers == []

    run(main())


def test_tls_token_request_over_https_trusts_the_given_ca(ca: trustme.CA) -> None:
    async def main() -> None:
        async with Simulator(seed=3, pairs=[BTC], warmup=50, tls=server_tls(ca)) as sim:
            key, secret = sim.add_account()
            provider = TokenProvider(
                Credentials(key, secret), rest_url=sim.rest_url, ssl=client_tls(ca)
            )
            async with provider:
                first = await provider.token()
                second = await provider.token()
            assert first and second and first != second
            assert sim.rest.headers_seen[-1]["user-agent"] == DEFAULT_USER_AGENT
            untrusted = TokenProvider(Credentials(key, secret), rest_url=sim.rest_url)
            from kbook.errors import AuthUnavailable

            with pytest.raises(AuthUnavailable):
                await untrusted.token()

    run(main())


def test_tls_server_hanging_up_mid_handshake_is_retried_then_connects(ca: trustme.CA) -> None:
    async def main() -> None:
        async with Simulator(seed=3, rate=50.0, pairs=[BTC], warmup=200, tls=server_tls(ca)) as sim:
            sim.faults.close_tls(count=2)
            events: list[str] = []
            async with Client(
                sim.url_v2,
                ssl=client_tls(ca),
                policy=FAST,
                on_event=lambda e: events.append(e.kind),
            ) as client:
                await verified_books(client)
            assert events.count("connect_failed") == 2
            assert [r.fault for r in sim.fault_log].count("tls_closed") == 2

    run(main())


# -- headers --------------------------------------------------------------------------------------


def test_user_agent_default_and_override_seen_by_the_server() -> None:
    async def main() -> None:
        async with Simulator(seed=3, pairs=[BTC], warmup=50) as sim:
            async with Client(sim.url_v2, policy=FAST):
                pass
            async with Client(
                sim.url_v2, policy=FAST, user_agent="desk-7/1.0", extra_headers={"X-Desk": "seven"}
            ):
                pass
            first, second = sim.upgrade_headers
            assert first["user-agent"] == DEFAULT_USER_AGENT
            assert DEFAULT_USER_AGENT.startswith("kbook/")
            assert second["user-agent"] == "desk-7/1.0" and second["x-desk"] == "seven"

    run(main())


# -- proxies --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def http_proxy(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP CONNECT proxy (proxy.py) on loopback; yields its URL and its log file."""
    port = free_port()
    log = tmp_path / "proxy.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "proxy",
            "--hostname",
            "127.0.0.1",
            "--port",
            str(port),
            "--num-workers",
            "1",
            "--num-acceptors",
            "1",
            "--log-file",
            str(log),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("proxy.py did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", log
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_proxy_books_verify_over_wss_through_a_connect_tunnel(
    ca: trustme.CA, http_proxy: tuple[str, Path]
) -> None:
    proxy, log = http_proxy

    async def main() -> None:
        async with Simulator(seed=3, rate=50.0, pairs=[BTC], warmup=200, tls=server_tls(ca)) as sim:
            async with Client(sim.url_v2, ssl=client_tls(ca), proxy=proxy, policy=FAST) as client:
                await verified_books(client)
            key, secret = sim.add_account()
            token = await TokenProvider(
                Credentials(key, secret), rest_url=sim.rest_url, ssl=client_tls(ca), proxy=proxy
            ).token()
            assert token
            return sim.port, sim.rest.port

    ws_port, rest_port = run(main())
    deadline = time.monotonic() + 5
    pattern_ws = f"CONNECT 127.0.0.1:{ws_port}"
    pattern_rest = f"CONNECT 127.0.0.1:{rest_port}"
    while time.monotonic() < deadline:  # proxy.py logs a tunnel when it closes
        text = log.read_text() if log.exists() else ""
        if pattern_ws in text and pattern_rest in text:
            break
        time.sleep(0.05)
    assert pattern_ws in text and pattern_rest in text, text[-2000:]


def test_proxy_environment_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for("wss://ws.kraken.com/v2") is None
    monkeypatch.setenv("ALL_PROXY", "socks5://10.0.0.1:1080")
    assert proxy_for("wss://ws.kraken.com/v2") == "socks5://10.0.0.1:1080"
    monkeypatch.setenv("HTTPS_PROXY", "http://10.0.0.2:3128")
    assert proxy_for("wss://ws.kraken.com/v2") == "http://10.0.0.2:3128"
    assert proxy_for("https://api.kraken.com") == "http://10.0.0.2:3128"
    assert proxy_for("ws://127.0.0.2:1/v2") == "socks5://10.0.0.1:1080"
    monkeypatch.setenv("NO_PROXY", "kraken.com,localhost")
    assert proxy_for("wss://ws.kraken.com/v2") is None
    assert proxy_for("wss://ws.kraken.com/v2", "http://explicit:1") == "http://explicit:1"
    monkeypatch.delenv("NO_PROXY")
    assert proxy_for("wss://ws.kraken.com/v2", "") is None


def test_proxy_from_the_environment_is_used_by_the_client(
    http_proxy: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, log = http_proxy
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)

    async def main() -> int:
        async with Simulator(seed=3, rate=50.0, pairs=[BTC], warmup=200) as sim:
            async with Client(sim.url_v2, policy=FAST) as client:
                await verified_books(client)
            return sim.port

    port = run(main())
    deadline = time.monotonic() + 5
    while f"CONNECT 127.0.0.1:{port}" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the proxy never saw the tunnel"
        time.sleep(0.05)


# -- handshakes that fail -------------------------------------------------------------------------


def test_handshake_403_gives_up_at_once_with_status_and_body() -> None:
    async def main() -> None:
        async with Simulator(seed=3, pairs=[BTC], warmup=50) as sim:
            sim.faults.refuse_upgrades(403)
            started = time.monotonic()
            with pytest.raises(HandshakeRefused) as info:
                await Client(sim.url_v2, policy=FAST).start()
            assert time.monotonic() - started < 1.0
            refused = info.value
            assert isinstance(refused, ConnectFailed) and refused.permanent
            assert refused.status == 403 and "Error 403" in refused.body
            assert refused.headers["content-type"].startswith("text/html")
            assert len(sim.upgrade_headers) == 1  # never retried

    run(main())


@pytest.mark.parametrize("status", [429, 503])
def test_handshake_retry_after_is_honoured_then_connects(status: int) -> None:
    async def main() -> None:
        async with Simulator(seed=3, rate=50.0, pairs=[BTC], warmup=200) as sim:
            sim.faults.refuse_upgrades(status, count=1, retry_after=1)
            started = time.monotonic()
            async with Client(sim.url_v2, policy=FAST) as client:
                elapsed = time.monotonic() - started
                await verified_books(client)
            assert 1.0 <= elapsed < 2.5  # FAST alone would retry after 0.05 s
            assert len(sim.upgrade_headers) == 2

    run(main())


def test_handshake_503_past_the_first_connect_timeout_raises_the_typed_error() -> None:
    async def main() -> None:
        async with Simulator(seed=3, pairs=[BTC], warmup=50) as sim:
            sim.faults.refuse_upgrades(503)
            policy = ReconnectPolicy(initial=0.05, maximum=0.1, first_connect_timeout=1.0)
            started = time.monotonic()
            with pytest.raises(HandshakeRefused) as info:
                await Client(sim.url_v2, policy=policy).start()
            assert time.monotonic() - started < 2.0
            assert info.value.status == 503 and not info.value.permanent
            assert 2 <= len(sim.upgrade_headers) <= 30  # backed off, counted, bounded

    run(main())


def test_handshake_403_after_a_drop_backs_off_and_is_counted() -> None:
    async def main() -> None:
        async with Simulator(seed=3, rate=50.0, pairs=[BTC], warmup=200) as sim:
            policy = ReconnectPolicy(initial=0.1, maximum=0.4, jitter=0.0)
            async with Client(sim.url_v2, policy=policy) as client:
                await verified_books(client)
                before = client.budget.attempts_in_window
                sim.faults.refuse_upgrades(403)
                sim.faults.drop()
                await wait_until(lambda: len(sim.upgrade_headers) >= 5, 10.0)
                started = time.monotonic()
                seen = len(sim.upgrade_headers)
                await wait_until(lambda: len(sim.upgrade_headers) >= seen + 2, 10.0)
                # capped backoff: attempts come no faster than the policy's maximum
                assert time.monotonic() - started >= 0.3
                assert client.budget.attempts_in_window - before >= 5
                sim.faults.accept_upgrades()
                await verified_books(client)

    run(main(), timeout=40.0)


# -- kbook doctor ---------------------------------------------------------------------------------


def test_doctor_passes_every_step_against_the_simulator_plain_and_tls(ca: trustme.CA) -> None:
    from kbook.cli.doctor import doctor

    async def main(tls: bool) -> list[str]:
        async with Simulator(
            seed=3, rate=50.0, pairs=[BTC], warmup=200, tls=server_tls(ca) if tls else None
        ) as sim:
            out = io.StringIO()
            steps = await doctor(
                sim.url_v2,
                checksums=3,
                timeout=5.0,
                proxy="",
                ssl_context=client_tls(ca) if tls else None,
                out=out,
            )
            assert all(step.ok for step in steps), out.getvalue()
            return [step.name for step in steps]

    assert run(main(False)) == ["DNS", "TCP", "upgrade", "status", "ping", "book"]
    assert run(main(True)) == ["DNS", "TCP", "TLS", "upgrade", "status", "ping", "book"]


def test_doctor_stops_at_the_refused_upgrade_and_says_why() -> None:
    from kbook.cli.doctor import doctor

    async def main() -> None:
        async with Simulator(seed=3, pairs=[BTC], warmup=50) as sim:
            sim.faults.refuse_upgrades(403)
            out = io.StringIO()
            steps = await doctor(sim.url_v2, timeout=5.0, proxy="", out=out)
            *passed, failed = steps
            assert [s.name for s in passed] == ["DNS", "TCP"] and all(s.ok for s in passed)
            assert failed.name == "upgrade" and not failed.ok
            assert "HTTP 403" in failed.detail and "Error 403" in failed.detail

    run(main())


def test_doctor_stops_at_tls_when_the_certificate_is_not_trusted(ca: trustme.CA) -> None:
    from kbook.cli.doctor import doctor

    async def main() -> None:
        async with Simulator(seed=3, pairs=[BTC], warmup=50, tls=server_tls(ca)) as sim:
            steps = await doctor(sim.url_v2, timeout=5.0, proxy="", out=io.StringIO())
            assert steps[-1].name == "TLS" and not steps[-1].ok
            assert "certificate verification failed" in steps[-1].detail

    run(main())


def test_doctor_command_exit_status_names_the_failing_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kbook.cli import main

    assert (
        main(
            ["doctor", "--url", f"ws://127.0.0.1:{free_port()}/v2", "--proxy", "", "--timeout", "2"]
        )
        == 1
    )
    assert "kbook doctor: TCP failed" in capsys.readouterr().out
