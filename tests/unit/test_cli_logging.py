"""What every ``kbook`` command shares: -v/-q/--log-file, and where its log goes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbook.cli import build_parser
from kbook.cli._common import setup_logging


@pytest.fixture(autouse=True)
def _restore_kbook_logger() -> Iterator[None]:
    logger = logging.getLogger("kbook")
    handlers, level = list(logger.handlers), logger.level
    yield
    for h in logger.handlers:
        if h not in handlers:
            h.close()
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_every_command_takes_verbose_quiet_and_log_file() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands is not None
    for name, sub in commands.items():
        options = {o for a in sub._actions for o in a.option_strings}
        assert {"-v", "--verbose", "-q", "--quiet", "--log-file"} <= options, name


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        ([], logging.WARNING),
        (["-v"], logging.INFO),
        (["-vv"], logging.DEBUG),
        (["-q"], logging.ERROR),
    ],
)
def test_setup_logging_levels(argv: list[str], level: int) -> None:
    args = build_parser().parse_args(["watch", "BTC/USD", *argv])
    setup_logging(args)
    assert logging.getLogger("kbook").level == level


def test_log_file_receives_kbook_records(tmp_path: Path) -> None:
    path = tmp_path / "kbook.log"
    args = build_parser().parse_args(["record", "sim", "-o", "x", "--log-file", str(path), "-v"])
    setup_logging(args)
    logging.getLogger("kbook.client").info("connected to somewhere")
    for h in logging.getLogger("kbook").handlers:
        h.flush()
    assert "INFO kbook.client: connected to somewhere" in path.read_text()


def test_watch_help_lists_depths_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    from kbook.cli import main

    assert main(["watch", "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "10, 25, 100, 500, 1000" in out and "q quits" in out
