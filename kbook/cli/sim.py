"""``kbook sim``: run the exchange simulator from the command line until interrupted.

:func:`add_parser` registers the subcommand on the ``kbook`` parser and :func:`run` executes it:
it starts a :class:`~kbook.sim.Simulator`, prints its URLs (WebSocket and REST), the pairs with
their precisions, a level3 token and the API key and secret of a demo trading account (invented
credentials for the loopback exchange, with the default balances), schedules the ``--fault``
script and the ``--faults`` script file (:class:`kbook.testing.FaultScript`), prints every
fault as it happens, and serves until Ctrl-C, SIGTERM or ``--duration``
seconds.

What it is not: a second implementation of anything; every option maps onto a
:class:`~kbook.sim.Simulator` argument or a :class:`~kbook.sim.faults.Faults` call.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import IO, Any

from kbook.cli._common import add_tls_server_options, tls_server_context, until_stopped
from kbook.sim.faults import FAULTS, FaultRecord, parse_fault_spec
from kbook.sim.pairs import PRESETS, resolve_pairs

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Serve a local Kraken-compatible exchange: Spot WebSocket v2 at ws://HOST:PORT/v2 and v1 at
ws://HOST:PORT/, with seeded order-by-order markets whose books, trades, ticker, spread and
OHLC agree, every checksum computed by kbook's reference model, and faults on demand.
"""

_EPILOG = f"""\
faults (--fault SECONDS:NAME[=VALUE][@CONN][/SYMBOL], repeatable):
  {", ".join(FAULTS)}
  VALUE: status for status (maintenance, cancel_only, post_only, online); seconds for silence
  and stall_reads; a count for corrupt_checksum, skip, duplicate, rate_limit and close_tls; a
  close code for close; an HTTP status for refuse_upgrades. @CONN targets one connection id
  (default: every connection); /SYMBOL narrows a message fault or a snapshot to one pair.

examples:
  kbook sim
  kbook sim --port 8765 --pairs BTC/USD,ETH/USD --seed 7 --rate 5
  kbook sim --rate 0 --fault 30:corrupt_checksum --fault 45:close
  kbook sim --fault 10:status=maintenance --fault 20:status=online --duration 30
  kbook sim --tls-cert server.pem --tls-key server.key     (wss:// and https://)
  kbook sim --faults script.toml    (a kbook.testing.FaultScript: at_seconds/at_message steps)

built-in pairs: {", ".join(PRESETS)}
"""


def _pairs(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    try:
        resolve_pairs(names)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return names


def _fault(text: str) -> tuple[float, str, int | None, dict[str, Any]]:
    try:
        return parse_fault_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fault_script(path: str) -> Any:
    from kbook.testing.faults import FaultScript  # only when the option is given

    try:
        return FaultScript.load(path)
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{path}: {exc}") from None


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_parser(subparsers: Any) -> None:
    """Register ``kbook sim`` on the ``kbook`` subcommand parsers (sets ``func`` to :func:`run`).

    :param subparsers: what :meth:`argparse.ArgumentParser.add_subparsers` returned.
    """
    sim = subparsers.add_parser(
        "sim",
        help="serve a local Kraken-compatible exchange (v1 and v2 WebSocket)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1; anything else is exposed)",
    )
    sim.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    sim.add_argument(
        "--pairs",
        type=_pairs,
        default=None,
        metavar="P1,P2,...",
        help="pairs to trade, v2 or v1 names (default: all built-in pairs)",
    )
    sim.add_argument("--seed", type=int, default=1, help="seed of the order flow (default 1)")
    sim.add_argument(
        "--rate",
        type=_non_negative,
        default=20.0,
        metavar="MSGS_PER_S",
        help="market events per second per pair; 0 = as fast as sockets take (default 20)",
    )
    sim.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="SECONDS:NAME[=VALUE][@CONN][/SYMBOL]",
        help="inject a fault SECONDS after start (repeatable; see below)",
    )
    sim.add_argument(
        "--faults",
        type=_fault_script,
        default=None,
        metavar="FILE",
        help="run a fault script (JSON, or TOML for a .toml file; see "
        "kbook.testing.FaultScript) from the start",
    )
    sim.add_argument(
        "--duration",
        type=_non_negative,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until interrupted)",
    )
    sim.add_argument(
        "--start-time",
        type=float,
        default=None,
        metavar="EPOCH_SECONDS",
        help="simulated time of the first event (default: now); fix it for byte-identical runs",
    )
    sim.add_argument(
        "--strict",
        action="store_true",
        help="check every client mirror against the market after every message",
    )
    add_tls_server_options(sim)
    sim.set_defaults(func=run)


def _print_record(record: FaultRecord, started: float, out: IO[str]) -> None:
    target = "all" if record.target is None else f"conn {record.target}"
    details = " ".join(f"{k}={v}" for k, v in record.details.items() if k != "frame")
    print(
        f"[{record.time - started:9.3f}s] fault {record.fault} ({target}) {details}".rstrip(),
        file=out,
        flush=True,
    )


async def _serve(args: argparse.Namespace, out: IO[str]) -> int:
    from kbook.sim.server import Simulator  # the server and picows only when serving

    sim = Simulator(
        seed=args.seed,
        rate=args.rate,
        pairs=args.pairs,
        host=args.host,
        port=args.port,
        start_time=args.start_time,
        strict=args.strict,
        tls=tls_server_context(args),
    )
    async with sim:
        started = time.monotonic()
        sim.faults.listeners.append(lambda record: _print_record(record, started, out))
        token = sim.issue_token()
        key, secret = sim.add_account()
        print(f"kbook sim: v2 {sim.url_v2}", file=out)
        print(f"kbook sim: v1 {sim.url_v1}", file=out)
        print(f"kbook sim: rest {sim.rest_url} (GetWebSocketsToken)", file=out)
        pairs = ", ".join(
            f"{s.symbol} (v1 {s.v1_name}, price {s.price_precision} dp, qty {s.qty_precision} dp)"
            for s in sim.specs
        )
        print(f"kbook sim: pairs {pairs}", file=out)
        pace = "as fast as sockets take" if sim.rate is None else f"{sim.rate:g}/s per pair"
        print(f"kbook sim: seed {sim.seed}, events {pace}", file=out)
        print(f"kbook sim: level3 token {token}", file=out)
        print(f"kbook sim: demo account key {key}", file=out)
        print(f"kbook sim: demo account secret {secret}", file=out)
        if args.host not in ("127.0.0.1", "::1", "localhost"):
            print(f"kbook sim: warning: listening on {args.host}, not only loopback", file=out)
        for delay, name, conn, kwargs in args.fault:
            sim.faults.schedule(delay, name, conn, **kwargs)
        script = args.faults.start(sim) if args.faults is not None else None
        print("kbook sim: serving; Ctrl-C to stop", file=out, flush=True)
        await until_stopped(args.duration)
        if script is not None:
            script.cancel()
        print(
            f"kbook sim: stopping after {sim.venue.events} events, {len(sim.fault_log)} faults",
            file=out,
            flush=True,
        )
    return 0


def run(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Run ``kbook sim`` with parsed ``args``; return the exit status.

    :param out: where to print (default: stdout).
    :return: 0 after a clean stop, 2 if the server could not start (e.g. port in use).
    """
    stream = sys.stdout if out is None else out
    try:
        return asyncio.run(_serve(args, stream))
    except (OSError, ValueError) as exc:  # a port in use, an unreadable certificate
        print(f"kbook sim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
