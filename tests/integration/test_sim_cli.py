"""``kbook sim`` from the command line: URLs printed, faults scripted and printed, clean exit."""

from __future__ import annotations

import argparse
import io

import pytest

from kbook.cli import sim as cli


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kbook")
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_sim_prints_urls_and_scripted_faults_then_stops() -> None:
    args = _parse(
        [
            "sim",
            "--pairs",
            "XBT/USD,ETH/USD",
            "--seed",
            "3",
            "--rate",
            "50",
            "--duration",
            "0.8",
            "--fault",
            "0.2:status=maintenance",
            "--fault",
            "0.4:status=online",
            "--fault",
            "0.5:close@7",
        ]
    )
    out = io.StringIO()
    assert cli.run(args, out) == 0
    text = out.getvalue()
    assert "ws://127.0.0.1:" in text and "/v2" in text
    assert "BTC/USD (v1 XBT/USD, price 1 dp, qty 8 dp)" in text
    assert "level3 token " in text
    assert "fault status (all) status=maintenance" in text
    assert "fault status (all) status=online" in text
    assert "fault error (all) name=close error=no open connection with id 7" in text
    assert "stopping after" in text


def test_cli_sim_rejects_bad_arguments() -> None:
    for argv in (
        ["sim", "--fault", "later:close"],
        ["sim", "--fault", "1:explode"],
        ["sim", "--pairs", "FOO/BAR"],
        ["sim", "--rate", "-1"],
    ):
        with pytest.raises(SystemExit) as exc:
            _parse(argv)
        assert exc.value.code == 2


def test_cli_sim_reports_a_port_in_use() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = _parse(["sim", "--port", str(port), "--duration", "0.1", "--pairs", "MATIC/GBP"])
        assert cli.run(args, io.StringIO()) == 2


def test_cli_kbook_sim_is_a_kbook_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    from kbook.cli import main

    assert main(["sim", "--duration", "0.2", "--pairs", "MATIC/GBP", "--seed", "9"]) == 0
    out = capsys.readouterr().out
    assert "kbook sim: v2 ws://127.0.0.1:" in out and "kbook sim: v1 ws://127.0.0.1:" in out
