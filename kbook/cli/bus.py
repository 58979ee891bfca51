"""``kbook relay`` and ``kbook bus-watch``: the bus from the command line.

:func:`add_parser` registers both subcommands on the ``kbook`` parser. ``kbook relay`` runs a
:class:`~kbook.bus.Relay` (against Kraken, a given URL, or an in-process simulator with
``--sim``) until Ctrl-C, SIGTERM or ``--duration``; ``kbook bus-watch`` follows one relayed book
with a :class:`~kbook.bus.BusClient` and ends with the same summary line as ``kbook watch``.

What it is not: a second implementation; every option maps onto a constructor argument. Nothing
here imports ``nats`` until a command runs, so ``kbook --help`` stays cheap, and a missing
``kbook[bus]`` extra is one error line and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import IO, Any

from kbook.cli._common import until_stopped

__all__ = ["add_parser", "run_relay", "run_watch"]

EXIT_MISSING_EXTRA = 2

_RELAY_EPILOG = """\
subjects: kbook.<venue>.<channel>.<SYMBOL>.{snapshot,update,state} (BTC/USD -> BTC_USD),
heartbeats on kbook.heartbeat.<venue>.<name>; see kbook.bus.wire.

examples:
  nats-server -js -sd /tmp/nats &
  kbook relay --bus nats://127.0.0.1:4222 --sim --symbols BTC/USD,ETH/USD
  kbook relay --bus nats://127.0.0.1:4222 --channel book --symbols BTC/USD --depth 25
  kbook bus-watch BTC/USD --bus nats://127.0.0.1:4222 --venue sim --duration 10
"""


def _symbols(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("at least one symbol")
    return names


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_parser(subparsers: Any) -> None:
    """Register ``kbook relay`` and ``kbook bus-watch`` (each sets ``func``).

    :param subparsers: what :meth:`argparse.ArgumentParser.add_subparsers` returned.
    """
    relay = subparsers.add_parser(
        "relay",
        help="publish verified books/channels to a NATS JetStream bus (kbook[bus])",
        description="Hold the exchange connections, verify every book, and publish only "
        "verified messages to the bus, with sequence numbers, heartbeats, periodic snapshots "
        "and a lease for a standby relay of the same --name.",
        epilog=_RELAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    relay.add_argument("--bus", required=True, metavar="nats://HOST:PORT", help="the NATS server")
    source = relay.add_mutually_exclusive_group()
    source.add_argument("--url", help="exchange WebSocket URL (default: Kraken's)")
    source.add_argument("--sim", action="store_true", help="relay an in-process simulator")
    relay.add_argument("--protocol", choices=("v2", "v1"), default="v2")
    relay.add_argument(
        "--channel",
        default="book",
        help="book, level3 (v2, --token), trade, ticker, ohlc, spread (v1) ... (default book)",
    )
    relay.add_argument("--token", help="WebSocket token for level3 (the simulator issues its own)")
    relay.add_argument("--symbols", type=_symbols, required=True, metavar="A,B,...")
    relay.add_argument("--depth", type=int, default=10, help="book depth (default 10)")
    relay.add_argument(
        "--name",
        default="default",
        help="relay name; relays with one name share a lease (default 'default')",
    )
    relay.add_argument(
        "--venue",
        default=None,
        help="venue token of the subjects (default kraken, or sim with --sim)",
    )
    relay.add_argument(
        "--snapshot-every",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between snapshots of each book (default 5; 0: never)",
    )
    relay.add_argument("--heartbeat-every", type=_positive, default=0.5, metavar="S")
    relay.add_argument(
        "--lease-ttl",
        type=_positive,
        default=3.0,
        metavar="S",
        help="a standby takes over after about this long (default 3)",
    )
    relay.add_argument(
        "--duration",
        type=_positive,
        default=None,
        metavar="S",
        help="stop after S seconds (default: until interrupted)",
    )
    relay.add_argument("--seed", type=int, default=1, help="simulator seed (--sim)")
    relay.add_argument(
        "--rate", type=float, default=20.0, help="simulator events per second per pair (--sim)"
    )
    relay.set_defaults(func=run_relay)

    watch = subparsers.add_parser(
        "bus-watch",
        help="follow one relayed book from the bus, then a summary (kbook[bus])",
        description="Rebuild and re-verify one book from a kbook relay over NATS.",
    )
    watch.add_argument("symbol")
    watch.add_argument("--bus", required=True, metavar="nats://HOST:PORT")
    watch.add_argument("--venue", default="kraken", help="the relay's venue (default kraken)")
    watch.add_argument("--protocol", choices=("v2", "v1"), default="v2")
    watch.add_argument("--depth", type=int, default=10, help="subscribed depth (v1: relayed)")
    watch.add_argument("--levels", type=int, default=5, help="levels shown per side")
    watch.add_argument("--duration", type=_positive, default=None, metavar="S")
    watch.add_argument("--heartbeat-timeout", type=_positive, default=3.0, metavar="S")
    watch.set_defaults(func=run_watch)


def _have_extra(command: str) -> bool:
    try:
        import nats  # noqa: F401  (the extra's client; imported here, not at `kbook --help`)
    except ImportError:
        print(
            f"kbook {command}: error: the bus extra is not installed (pip install 'kbook[bus]')",
            file=sys.stderr,
        )
        return False
    return True


async def _relay(args: argparse.Namespace, out: IO[str]) -> int:
    from kbook.bus.relay import Relay
    from kbook.client import ClientEvent

    def show(event: ClientEvent) -> None:
        if event.connection == "relay" or event.kind in (
            "connected",
            "disconnected",
            "checksum_mismatch",
            "resync_started",
        ):
            print(
                f"kbook relay: {event.kind} {event.symbol or ''} "
                f"{event.detail if event.detail is not None else ''}".rstrip(),
                file=out,
                flush=True,
            )

    from kbook.bus.corenats import redact

    async with contextlib.AsyncExitStack() as stack:
        url, token = args.url, args.token
        if args.sim:
            from kbook.sim.server import Simulator

            sim = await stack.enter_async_context(
                Simulator(seed=args.seed, rate=args.rate, pairs=args.symbols)
            )
            url = sim.url_v2 if args.protocol == "v2" else sim.url_v1
            token = token or sim.issue_token()
        venue = args.venue or ("sim" if args.sim else "kraken")
        relay = Relay(
            args.bus,
            args.symbols,
            channel=args.channel,
            url=url,
            protocol=args.protocol,
            depth=args.depth,
            name=args.name,
            venue=venue,
            snapshot_every=args.snapshot_every,
            heartbeat_every=args.heartbeat_every,
            lease_ttl=args.lease_ttl,
            on_event=show,
            client_options={"token": token} if token is not None else None,
        )
        print(
            f"kbook relay: {args.channel} {','.join(args.symbols)} from "
            f"{url or 'Kraken'} to {redact(args.bus)} as {venue}/{args.name} "
            f"(relay {relay.relay_id}); Ctrl-C to stop",
            file=out,
            flush=True,
        )
        await stack.enter_async_context(relay)
        await until_stopped(args.duration)
    print(
        f"kbook relay: published {relay.published['snapshot']} snapshots, "
        f"{relay.published['update']} updates, {relay.published['state']} state messages",
        file=out,
        flush=True,
    )
    return 0


def run_relay(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Run ``kbook relay``; return 0 after a clean stop, 1 on an error, 2 without the extra."""
    if not _have_extra("relay"):
        return EXIT_MISSING_EXTRA
    from kbook._core import KBookError

    try:
        return asyncio.run(_relay(args, sys.stdout if out is None else out))
    except KeyboardInterrupt:
        return 0
    except (OSError, KBookError, ValueError) as exc:
        print(f"kbook relay: error: {exc}", file=sys.stderr)
        return 1


async def _watch(args: argparse.Namespace, out: IO[str]) -> int:
    from kbook.bus.consumer import BusClient

    started = time.monotonic()
    async with BusClient(
        args.bus, venue=args.venue, protocol=args.protocol, heartbeat_timeout=args.heartbeat_timeout
    ) as bus:
        [book] = await bus.subscribe_book([args.symbol], args.depth)

        async def show() -> None:
            while True:
                await asyncio.sleep(1.0)
                if book.valid:
                    bids = " ".join(f"{q}@{p}" for p, q in book.bids_str(args.levels))
                    asks = " ".join(f"{q}@{p}" for p, q in book.asks_str(args.levels))
                    print(f"{book.symbol} bids {bids} | asks {asks}", file=out, flush=True)
                else:
                    print(
                        f"{book.symbol}: book invalid (waiting for a snapshot)",
                        file=out,
                        flush=True,
                    )

        shower = asyncio.ensure_future(show())
        try:
            await until_stopped(args.duration)
        finally:
            shower.cancel()
            await asyncio.gather(shower, return_exceptions=True)
        kinds = [e.kind for e in bus.events_seen]
        restarts = max(0, kinds.count("snapshot") - 1)
        print(
            f"{book.symbol}: {book.messages} messages in {time.monotonic() - started:.1f} s, "
            f"{book.checksums_verified} checksums verified, "
            f"{book.checksum_mismatches + kinds.count('checksum_mismatch')} mismatches, "
            f"{restarts} resyncs, {kinds.count('reconnected')} reconnects, "
            f"book {'valid' if book.valid else 'INVALID'}",
            file=out,
            flush=True,
        )
        return 0 if book.valid and book.checksums_verified > 0 else 1


def run_watch(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Run ``kbook bus-watch``; 0 when the book ended valid and verified, 2 without the extra."""
    if not _have_extra("bus-watch"):
        return EXIT_MISSING_EXTRA
    from kbook._core import KBookError

    try:
        return asyncio.run(_watch(args, sys.stdout if out is None else out))
    except KeyboardInterrupt:
        return 130
    except (OSError, KBookError) as exc:
        print(f"kbook bus-watch: error: {exc}", file=sys.stderr)
        return 1
