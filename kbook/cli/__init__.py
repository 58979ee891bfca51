"""The ``kbook`` command line: one module per command, each adding its own subparser.

- :mod:`~kbook.cli.verify`, :mod:`~kbook.cli.bench`: captures through the engine;
- :mod:`~kbook.cli.record`, :mod:`~kbook.cli.watch`: live subscriptions (a URL or ``sim``);
- :mod:`~kbook.cli.sim`: the embedded simulator as a server;
- :mod:`~kbook.cli.replay`: a recorded capture served as a Kraken endpoint (backtests);
- :mod:`~kbook.cli.doctor`: the way to a venue checked step by step;
- :mod:`~kbook.cli.history`: ``export``, ``plot`` and ``book-at`` (the ``research`` extra);
- :mod:`~kbook.cli.bus`: ``relay`` and ``bus-watch`` (the ``bus`` extra).

Optional dependencies load only when their command runs, so ``kbook --help`` works on a bare
install.
"""

from __future__ import annotations

import argparse
import os
import sys

from kbook._version import __version__
from kbook.cli import bench, bus, doctor, history, record, replay, sim, verify, watch
from kbook.cli._common import EXIT_UNREADABLE, add_logging_args, setup_logging

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the ``kbook`` parser; each subcommand sets ``func`` to its ``cmd_*`` function."""
    parser = argparse.ArgumentParser(
        prog="kbook", description="Kraken Spot WebSocket order books, exact and checksum-verified."
    )
    parser.add_argument("--version", action="version", version=f"kbook {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    commands.required = True
    for command in (verify, bench, record, watch, sim, replay, doctor):
        command.add_parser(commands)
    history.add_parsers(commands)
    bus.add_parser(commands)
    for sub in set(commands.choices.values()):
        if not any("--log-file" in a.option_strings for a in sub._actions):
            add_logging_args(sub)  # every command logs the same way
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``kbook`` command with ``argv`` (default: ``sys.argv[1:]``); return its status.

    Usage errors return 2 rather than raising :class:`SystemExit`, so tests and other callers
    can use the status directly.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # --help and --version exit with None/0, usage errors with 2.
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else EXIT_UNREADABLE
    func = args.func
    setup_logging(args)
    try:
        status: int = func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`kbook watch ... | head`): stop quietly, and keep the
        # interpreter's final flush from failing on the closed pipe again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by the pipe
    return status
