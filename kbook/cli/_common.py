"""What the ``kbook`` commands share: exit statuses, the venue a command talks to (a URL or
the embedded simulator), the connection options (``--cafile``, ``--insecure``, ``--proxy``),
the TLS options of the servers (``--tls-cert``, ``--tls-key``), deadlines, argument types, and the
logging options."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from kbook.client import Client, ClientError

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREADABLE",
    "add_connection_options",
    "add_logging_args",
    "add_tls_server_options",
    "connection_kwargs",
    "open_venue",
    "precision_arg",
    "reconnects",
    "setup_logging",
    "tls_server_context",
    "until_stopped",
    "within",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNREADABLE = 2


@contextlib.asynccontextmanager
async def open_venue(
    url: str, protocol: str, seed: int, rate: float | None, token: str | None
) -> AsyncIterator[tuple[str, str | None]]:
    """Yield ``(url, token)``: the given URL, or the embedded simulator's when ``url == 'sim'``."""
    if url != "sim":
        yield url, token
        return
    from kbook.sim import Simulator

    async with Simulator(seed=seed, rate=rate) as sim:
        yield (sim.url_v2 if protocol == "v2" else sim.url_v1), (token or sim.issue_token())


#: how long a command without ``duration`` waits for its subscription before giving up
SETUP_TIMEOUT = 30.0


async def within(deadline: float | None, what: str, coro: Any) -> Any:
    """Await ``coro`` before ``deadline`` (monotonic; None: SETUP_TIMEOUT from now)."""
    limit = SETUP_TIMEOUT if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        return await asyncio.wait_for(coro, limit)
    except TimeoutError:
        raise ClientError(f"{what}: not done within {limit:.1f} s") from None


def reconnects(client: Client) -> int:
    """Reconnections over all of a client's connections (a first connect is no reconnect)."""
    return sum(max(0, conn.connects - 1) for conn in client.connections)


def precision_arg(text: str) -> tuple[str, int, int]:
    """Parse ``SYMBOL=PRICE_DP:QTY_DP`` (``ETH/USD=2:8``) for ``--precision``."""
    symbol, eq, rest = text.rpartition("=")
    pp, colon, qp = rest.partition(":")
    if not (symbol and eq and colon and pp.isdigit() and qp.isdigit()):
        raise argparse.ArgumentTypeError(
            f"expected SYMBOL=PRICE_DP:QTY_DP such as BTC/USD=1:8, not {text!r}"
        )
    return symbol, int(pp), int(qp)


def add_logging_args(parser: argparse.ArgumentParser) -> None:
    """``-v/--verbose`` (INFO, twice: DEBUG), ``-q/--quiet`` (ERROR only) and ``--log-file``."""
    group = parser.add_argument_group("logging")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more: -v INFO (connects, disconnects), -vv DEBUG",
    )
    group.add_argument("-q", "--quiet", action="store_true", help="log errors only")
    group.add_argument(
        "--log-file", metavar="FILE", help="write the kbook.* log here instead of stderr"
    )


def setup_logging(args: argparse.Namespace) -> None:
    """Route the ``kbook.*`` loggers to stderr (or ``--log-file``) at the level asked for:
    WARNING by default, so failed attempts, resyncs and mismatches are seen."""
    verbose = getattr(args, "verbose", 0) or 0
    level = (
        logging.ERROR
        if getattr(args, "quiet", False)
        else logging.DEBUG
        if verbose >= 2
        else logging.INFO
        if verbose
        else logging.WARNING
    )
    path = getattr(args, "log_file", None)
    handler: logging.Handler = (
        logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("kbook")
    for old in [h for h in logger.handlers if getattr(h, "kbook_cli", False)]:
        logger.removeHandler(old)
    handler.kbook_cli = True  # type: ignore[attr-defined]  # marks the handler this set up
    logger.addHandler(handler)
    logger.setLevel(level)


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--cafile``, ``--insecure`` and ``--proxy`` to a command that connects."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--cafile", metavar="FILE", help="also trust the certificate authorities in this PEM file"
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify certificates or host names (warns on stderr)",
    )
    group.add_argument(
        "--proxy",
        metavar="URL",
        help="http://, https://, socks4:// or socks5:// proxy (default: "
        "HTTPS_PROXY/HTTP_PROXY/ALL_PROXY unless NO_PROXY matches; '' for none)",
    )


def connection_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Client`` keywords of :func:`add_connection_options`' options (``ssl``, ``proxy``).

    :raises OSError: the CA file cannot be read
    :raises ssl.SSLError: it holds no usable certificate
    """
    from kbook.client.network import tls_context

    kwargs: dict[str, Any] = {"proxy": getattr(args, "proxy", None)}
    cafile = getattr(args, "cafile", None)
    insecure = bool(getattr(args, "insecure", False))
    if insecure:
        print(
            "kbook: warning: --insecure: certificates and host names are NOT verified; "
            "anyone on the path can read and alter the feed",
            file=sys.stderr,
        )
    if cafile is not None or insecure:
        kwargs["ssl"] = tls_context(cafile, insecure=insecure)
    return kwargs


def add_tls_server_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--tls-cert`` and ``--tls-key`` to a command that serves."""
    parser.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve wss:// (and https://) with this PEM certificate chain",
    )
    parser.add_argument(
        "--tls-key",
        metavar="FILE",
        help="the certificate's private key (PEM; default: in --tls-cert)",
    )


def tls_server_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server context of :func:`add_tls_server_options`' options, or None without them.

    :raises ValueError: ``--tls-key`` without ``--tls-cert``
    """
    cert = getattr(args, "tls_cert", None)
    key = getattr(args, "tls_key", None)
    if cert is None:
        if key is not None:
            raise ValueError("--tls-key needs --tls-cert")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def until_stopped(duration: float | None) -> None:
    """Return after ``duration`` seconds (None: never) or at SIGINT/SIGTERM, whichever is first:
    how a serving command (``sim``, ``replay``, ``relay``) runs until the user stops it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
