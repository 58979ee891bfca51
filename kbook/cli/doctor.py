"""``kbook doctor``: check the whole way to a venue, one step at a time, and say where it breaks.

The steps, in order, each timed: DNS (the venue's host, or the proxy's), TCP, TLS (protocol,
certificate subject and issuer, host name, days to expiry; through an HTTP proxy's CONNECT
tunnel when one is used), the WebSocket upgrade (status and the headers worth knowing), the
``status`` message, a ping round trip, and one book subscription through the real
:class:`~kbook.client.Client` until ``--checksums`` checksums verify. The first step that fails
ends the run with its reason; exit status 0 only when every step passed.

What it is not: a monitor. It runs once, opens two short connections, and closes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from kbook.cli._common import EXIT_FAILED, EXIT_OK, add_connection_options, connection_kwargs

__all__ = ["Step", "add_parser", "doctor", "run"]

DEFAULT_URL = "wss://ws.kraken.com/v2"
# upgrade answer headers that help tell a CDN from the venue, and why an answer was what it was
_TOLD_HEADERS = ("server", "cf-ray", "retry-after", "date", "sec-websocket-extensions")


@dataclass
class Step:
    """One check: its name, whether it passed, how long it took, and what it found."""

    name: str
    ok: bool
    seconds: float
    detail: str


class _Failed(Exception):
    """A step failed; the message says why."""


class _Probe:
    """A bare picows listener: keeps text frames, wakes the waiter (steps 4 to 6)."""

    def __init__(self) -> None:
        from picows import WSListener

        class Listener(WSListener):  # defined here: picows loads only when doctor runs
            def __init__(inner) -> None:
                super().__init__()

            def on_ws_frame(inner, transport: Any, frame: Any) -> None:
                from picows import WSMsgType

                if frame.msg_type == WSMsgType.TEXT:
                    self.frames.append(frame.get_payload_as_bytes())
                    self.arrived.set()

        self.listener_type = Listener
        self.frames: list[bytes] = []
        self.arrived = asyncio.Event()

    async def wait(self, match: Callable[[Any], bool], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for raw in self.frames[seen:]:
                seen += 1
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                if match(obj):
                    return obj
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Failed(f"nothing within {timeout:g} s")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)


def _print(step: Step, out: IO[str]) -> None:
    mark = "ok  " if step.ok else "FAIL"
    print(
        f"  {mark}  {step.name:<8} {step.seconds * 1000:9.1f} ms  {step.detail}",
        file=out,
        flush=True,
    )


async def _tunnel(
    proxy: str, host: str, port: int, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP stream to ``host:port`` through an HTTP proxy's CONNECT."""
    parts = urllib.parse.urlsplit(proxy)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname, parts.port or 80), timeout
    )
    writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status = answer.split(b" ", 2)[1:2]
    if status != [b"200"]:
        writer.close()
        raise _Failed(f"the proxy refused CONNECT: {answer.splitlines()[0].decode('latin-1')}")
    return reader, writer


async def doctor(
    url: str = DEFAULT_URL,
    *,
    symbol: str = "BTC/USD",
    checksums: int = 5,
    timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    proxy: str | None = None,
    out: IO[str] = sys.stdout,
) -> list[Step]:
    """Run the checks against ``url``; print each step; return them (the last may have failed).

    :param proxy: as ``Client(proxy=)``: None reads the environment, ``""`` goes direct
    """
    from picows import ws_connect

    from kbook.client import Client, ReconnectPolicy
    from kbook.client.network import DEFAULT_USER_AGENT, connect_error, proxy_for

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    v2 = parts.path.rstrip("/").endswith("/v2")
    via = proxy_for(url, proxy)
    context = ssl_context or ssl.create_default_context()
    steps: list[Step] = []
    print(f"kbook doctor: {url}" + (f" via {via}" if via else ""), file=out)

    async def step(name: str, check: Callable[[], Awaitable[str]]) -> bool:
        started = time.monotonic()
        try:
            detail = await asyncio.wait_for(check(), timeout)
            ok = True
        except TimeoutError:
            detail, ok = f"no answer within {timeout:g} s", False
        except (_Failed, OSError, ssl.SSLError, ValueError) as exc:
            typed = connect_error(url, exc)
            detail = typed.cause if typed is not None else (str(exc) or type(exc).__name__)
            ok = False
        except Exception as exc:  # a library's own error type: told, never a traceback
            typed = connect_error(url, exc)
            detail = typed.cause if typed is not None else f"{type(exc).__name__}: {exc}"
            ok = False
        result = Step(name, ok, time.monotonic() - started, detail)
        steps.append(result)
        _print(result, out)
        return ok

    target_host, target_port = host, port
    if via is not None:
        proxy_parts = urllib.parse.urlsplit(via)
        target_host, target_port = proxy_parts.hostname or "", proxy_parts.port or 80
    addresses: list[str] = []

    async def dns() -> str:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target_host, target_port, type=0, proto=6
        )
        addresses.extend(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise _Failed(f"{target_host}: no address")
        return f"{target_host} -> {', '.join(addresses[:4])}"

    async def tcp() -> str:
        _, writer = await asyncio.open_connection(addresses[0], target_port)
        writer.close()
        return f"{addresses[0]}:{target_port}" + (" (the proxy)" if via else "")

    async def tls() -> str:
        if via is not None:
            if not via.startswith("http://"):
                return f"not checked separately through {via.split(':', 1)[0]} proxies"
            reader, writer = await _tunnel(via, host, port, timeout)
            await writer.start_tls(context, server_hostname=host)
        else:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host
            )
        ssl_object = writer.get_extra_info("ssl_object")
        cert = writer.get_extra_info("peercert") or {}
        writer.close()
        subject = dict(x[0] for x in cert.get("subject", ()))
        issuer = dict(x[0] for x in cert.get("issuer", ()))
        detail = f"{ssl_object.version()} {ssl_object.cipher()[0]}"
        if cert:
            expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), UTC)
            days = (expires - datetime.now(UTC)).days
            detail += (
                f"; {subject.get('commonName', '?')} issued by "
                f"{issuer.get('organizationName') or issuer.get('commonName', '?')}; "
                f"host name {host} verified; expires {expires:%Y-%m-%d} ({days} days)"
            )
            if days < 14:
                raise _Failed(f"{detail}: the certificate expires in {days} days")
        else:
            detail += "; certificate NOT verified (--insecure)"
        return detail

    probe = _Probe()
    transport_box: list[Any] = []

    async def upgrade() -> str:
        transport, _ = await ws_connect(
            probe.listener_type,
            url,
            ssl_context=context if secure else None,
            proxy=via,
            extra_headers={"User-Agent": DEFAULT_USER_AGENT},
            websocket_handshake_timeout=timeout,
        )
        transport_box.append(transport)
        response = transport.response
        told = [
            f"{name}: {response.headers[name]}"
            for name in _TOLD_HEADERS
            if name in response.headers
        ]
        return f"HTTP {int(response.status)}" + (f"; {'; '.join(told)}" if told else "")

    async def status() -> str:
        if v2:
            msg = await probe.wait(
                lambda m: isinstance(m, dict) and m.get("channel") == "status", timeout
            )
            data = msg["data"][0]
            return f"{data.get('system')} (API {data.get('api_version')} {data.get('version')})"
        msg = await probe.wait(
            lambda m: isinstance(m, dict) and m.get("event") == "systemStatus", timeout
        )
        return f"{msg.get('status')} (v1 {msg.get('version')})"

    async def ping() -> str:
        from picows import WSMsgType

        transport = transport_box[0]
        started = time.monotonic()
        if v2:
            transport.send(WSMsgType.TEXT, b'{"method":"ping","req_id":4242}')
            await probe.wait(lambda m: isinstance(m, dict) and m.get("method") == "pong", timeout)
        else:
            transport.send(WSMsgType.TEXT, b'{"event":"ping","reqid":4242}')
            await probe.wait(lambda m: isinstance(m, dict) and m.get("event") == "pong", timeout)
        return f"pong after {(time.monotonic() - started) * 1000:.1f} ms"

    async def book() -> str:
        policy = ReconnectPolicy(first_connect_timeout=timeout)
        client = Client(
            url, protocol="v2" if v2 else "v1", ssl=context, proxy=via or "", policy=policy
        )
        try:
            await client.start()
            [subscribed] = await client.subscribe_book([symbol], depth=10)
            while subscribed.checksums_verified < checksums:
                await asyncio.sleep(0.02)
            return f"{symbol}: {subscribed.checksums_verified} checksums verified"
        finally:
            await client.close()

    checks: list[tuple[str, Callable[[], Awaitable[str]]]] = [("DNS", dns), ("TCP", tcp)]
    if secure:
        checks.append(("TLS", tls))
    checks += [("upgrade", upgrade), ("status", status), ("ping", ping), ("book", book)]
    try:
        for name, check in checks:
            if not await step(name, check):
                break
    finally:
        for transport in transport_box:
            transport.disconnect()
    return steps


def add_parser(subparsers: Any) -> None:
    """Register ``kbook doctor`` (sets ``func`` to :func:`run`)."""
    doc = subparsers.add_parser(
        "doctor",
        help="check the way to the venue step by step (DNS, TCP, TLS, upgrade, books)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    doc.add_argument("--url", default=DEFAULT_URL, help=f"WebSocket URL (default {DEFAULT_URL})")
    doc.add_argument("--symbol", default="BTC/USD", help="the book to verify (default BTC/USD)")
    doc.add_argument(
        "--checksums",
        type=int,
        default=5,
        metavar="N",
        help="checksums that must verify (default 5)",
    )
    doc.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds each step may take (default 10)",
    )
    add_connection_options(doc)
    doc.set_defaults(func=run)


def run(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Run ``kbook doctor``; 0 when every step passed, 1 otherwise (the failing step is told)."""
    stream = sys.stdout if out is None else out
    try:
        kwargs = connection_kwargs(args)
    except (OSError, ssl.SSLError) as exc:
        print(f"kbook doctor: error: --cafile: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        steps = asyncio.run(
            doctor(
                args.url,
                symbol=args.symbol,
                checksums=args.checksums,
                timeout=args.timeout,
                ssl_context=kwargs.get("ssl"),
                proxy=kwargs.get("proxy"),
                out=stream,
            )
        )
    except KeyboardInterrupt:
        return 130
    failed = [s for s in steps if not s.ok]
    if failed:
        print(f"kbook doctor: {failed[0].name} failed: {failed[0].detail}", file=stream)
        return EXIT_FAILED
    total = sum(s.seconds for s in steps)
    print(f"kbook doctor: all {len(steps)} steps passed in {total:.2f} s", file=stream)
    return EXIT_OK
