"""Unit tests of ``kbook verify``: the bundled samples, broken copies of them, every input form.

Most tests call :func:`kbook.cli.main` in-process and read its output with ``capsys``; one runs
``python -m kbook`` in a subprocess, as the README's first command does. Broken captures are
made from copies of the samples in ``tmp_path``; the samples themselves are never modified.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kbook import crc32
from kbook.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
V2_SAMPLE = SAMPLES / "btcusd-v2.capture"
V1_SAMPLE = SAMPLES / "xbtusd-v1.capture"

# btcusd-v2: status, instrument ack, instrument snapshot, 2 book acks, 2 snapshots,
# 2000 BTC/USD + 700 ETH/USD updates and one heartbeat.
V2_LINES = 2708
V2_BOOK_MESSAGES = 2702
# xbtusd-v1: systemStatus, subscriptionStatus, a snapshot (no checksum in v1), 999 updates and
# one heartbeat.
V1_LINES = 1003
V1_BOOK_MESSAGES = 1000
V1_CHECKSUMS = 999

REQUIRED_KEYS = {
    "frames",
    "book_messages",
    "checksums_verified",
    "checksum_mismatches",
    "symbols",
    "engine_seconds",
    "first_mismatch",
    "skipped_lines",
    "decode_errors",
    "first_decode_error",
    "orphan_updates",
}
SYMBOL_KEYS = {
    "symbol",
    "protocol",
    "messages",
    "checksums_verified",
    "checksum_mismatches",
    "dropped_updates",
    "valid",
    "best_bid",
    "best_ask",
    "depth",
    "price_precision",
    "qty_precision",
}
BOOK_ACK = '"result":{"channel":"book"'
CHECKSUM = re.compile(r'"checksum":(\d+)|"c":"(\d+)"')


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """Run ``kbook verify --json ARGV`` in-process; return its status and parsed report."""
    code = main(["verify", "--json", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out)


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def by_symbol(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["symbol"]: entry for entry in report["symbols"]}


def altered_copy(source: Path, target: Path, symbol: str, nth: int) -> tuple[int, int, int]:
    """Copy ``source`` with the checksum of ``symbol``'s ``nth`` checksummed frame changed.

    :return: ``(line number, checksum sent, checksum now written)``
    """
    lines = lines_of(source)
    seen = 0
    for index, line in enumerate(lines):
        match = CHECKSUM.search(line)
        if match is None or symbol not in line:
            continue
        seen += 1
        if seen == nth:
            sent = int(match.group(1) or match.group(2))
            bad = (sent + 1) % 2**32
            digits = match.group(1) or match.group(2)
            start = match.start(1) if match.group(1) else match.start(2)
            lines[index] = line[:start] + str(bad) + line[start + len(digits) :]
            target.write_text("".join(lines), encoding="utf-8")
            return index + 1, sent, bad
    raise AssertionError(f"{source} has fewer than {nth} checksummed {symbol} frames")


# -- the samples ----------------------------------------------------------------------------


def test_verify_v2_sample_exit_zero_with_expected_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, report = run_json(capsys, str(V2_SAMPLE))

    assert code == 0
    assert report["status"] == "ok" and report["error"] is None
    assert report["lines"] == report["frames"] == V2_LINES
    assert report["book_messages"] == V2_BOOK_MESSAGES
    assert report["checksums_verified"] == V2_BOOK_MESSAGES  # v2 snapshots carry one too
    assert report["checksum_mismatches"] == 0 and report["first_mismatch"] is None
    assert report["decode_errors"] == 0 and report["skipped_lines"] == 0
    assert report["other_messages"] == 6
    assert report["orphan_updates"] == 0
    symbols = by_symbol(report)
    assert list(symbols) == ["BTC/USD", "ETH/USD"]
    btc, eth = symbols["BTC/USD"], symbols["ETH/USD"]
    assert (btc["depth"], btc["price_precision"], btc["qty_precision"]) == (10, 1, 8)
    assert (eth["depth"], eth["price_precision"], eth["qty_precision"]) == (25, 2, 8)
    assert btc["depth_source"] == eth["depth_source"] == "ack"
    assert btc["precision_source"] == eth["precision_source"] == "instrument"
    assert (btc["messages"], eth["messages"]) == (2001, 701)
    assert btc["checksums_verified"] + eth["checksums_verified"] == V2_BOOK_MESSAGES
    assert btc["valid"] and eth["valid"]
    # Exact strings at the pair precision, never floats.
    assert re.fullmatch(r"\d+\.\d", btc["best_bid"][0])
    assert re.fullmatch(r"\d+\.\d{8}", btc["best_bid"][1])
    assert re.fullmatch(r"\d+\.\d{2}", eth["best_ask"][0])
    assert float(btc["best_bid"][0]) < float(btc["best_ask"][0])


def test_verify_v1_sample_exit_zero_with_expected_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, report = run_json(capsys, str(V1_SAMPLE))

    assert code == 0
    assert report["frames"] == V1_LINES
    assert report["book_messages"] == V1_BOOK_MESSAGES
    assert report["checksums_verified"] == V1_CHECKSUMS
    assert report["checksum_mismatches"] == 0
    [xbt] = report["symbols"]
    assert (xbt["symbol"], xbt["protocol"], xbt["channel"]) == ("XBT/USD", "v1", "book-100")
    assert (xbt["depth"], xbt["depth_source"]) == (100, "channel")
    assert (xbt["price_precision"], xbt["qty_precision"]) == (5, 8)
    assert xbt["snapshots"] == 1 and xbt["valid"]


def test_verify_v2_sample_text_summary_one_line_per_symbol_then_ok(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["verify", str(V2_SAMPLE)])

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(out) == 4
    assert out[0].startswith("BTC/USD") and "2001 msgs" in out[0] and "valid" in out[0]
    assert out[1].startswith("ETH/USD") and "v2 depth 25" in out[1]
    assert out[2].startswith("total") and f"{V2_LINES} frames" in out[2]
    assert out[3] == f"OK: all {V2_BOOK_MESSAGES} checksums matched"


def test_verify_json_output_has_every_required_key(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, str(V2_SAMPLE))

    assert code == 0
    assert report.keys() >= REQUIRED_KEYS
    for entry in report["symbols"]:
        assert entry.keys() >= SYMBOL_KEYS
    assert isinstance(report["engine_seconds"], float)
    assert 0 < report["engine_seconds"] <= report["wall_seconds"]


def test_make_samples_rebuild_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No samples/__pycache__: MANIFEST.in ships everything under samples/.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    assert spec is not None and spec.loader is not None
    make_samples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_samples)

    for fresh in make_samples.build(tmp_path):
        assert fresh.read_bytes() == (SAMPLES / fresh.name).read_bytes(), fresh.name
        assert fresh.stat().st_size < 1_000_000


# -- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "symbol", "nth"),
    [(V2_SAMPLE, "BTC/USD", 300), (V2_SAMPLE, "ETH/USD", 1), (V1_SAMPLE, "XBT/USD", 500)],
)
def test_verify_altered_checksum_exit_one_first_mismatch_at_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sample: Path, symbol: str, nth: int
) -> None:
    broken = tmp_path / "broken.capture"
    line, sent, bad = altered_copy(sample, broken, symbol, nth)

    code, report = run_json(capsys, str(broken))

    assert code == 1
    assert report["status"] == "failed"
    assert report["checksum_mismatches"] == 1
    mismatch = report["first_mismatch"]
    assert mismatch["line"] == line
    assert mismatch["symbol"] == symbol
    assert mismatch["expected"] == bad
    # The book itself was right: it computes what the exchange originally sent.
    assert mismatch["computed"] == sent
    assert crc32(mismatch["checksum_input"]) == sent
    failed = by_symbol(report)[symbol]
    assert not failed["valid"] and failed["checksum_mismatches"] == 1
    assert failed["dropped_updates"] > 0


def test_verify_altered_checksum_text_summary_names_line_and_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.capture"
    line, sent, bad = altered_copy(V2_SAMPLE, broken, "BTC/USD", 300)

    code = main(["verify", str(broken)])

    out = capsys.readouterr().out
    assert code == 1
    assert f"first mismatch: BTC/USD at line {line}: expected {bad}, computed {sent}" in out
    assert out.splitlines()[-1].startswith("FAILED: 1 of ")


def test_verify_truncated_frame_exit_one_decode_error_with_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = lines_of(V2_SAMPLE)
    target = next(i for i, text in enumerate(lines) if i > 100 and '"BTC/USD"' in text)
    lines[target] = lines[target][: len(lines[target]) // 2] + "\n"
    broken = tmp_path / "truncated.capture"
    broken.write_text("".join(lines), encoding="utf-8")

    code, report = run_json(capsys, str(broken))

    assert code == 1
    assert report["decode_errors"] == 1
    assert report["first_decode_error"]["line"] == target + 1
    assert "at byte" in report["first_decode_error"]["error"]
    # Replay went on: every line was a frame, and the lost update shows as a later mismatch.
    assert report["frames"] == V2_LINES
    assert report["first_mismatch"]["symbol"] == "BTC/USD"
    assert report["first_mismatch"]["line"] > target + 1
    assert by_symbol(report)["ETH/USD"]["valid"]


def test_verify_truncated_non_book_frame_exit_one_without_mismatch(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = lines_of(V2_SAMPLE)
    target = next(i for i, text in enumerate(lines) if '"heartbeat"' in text)
    lines[target] = lines[target].replace('"heartbeat"}', '"heartb')
    broken = tmp_path / "truncated.capture"
    broken.write_text("".join(lines), encoding="utf-8")

    code = main(["verify", str(broken)])

    out = capsys.readouterr().out
    assert code == 1
    assert f"first decode error: line {target + 1}:" in out
    assert out.splitlines()[-1] == "FAILED: 1 frame could not be decoded"


def test_verify_crossed_book_exit_one_integrity_error_with_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Checksum of asks then bids at precision 1/8, so only the crossing is wrong.
    checksum = crc32("450000" + "100000000" + "450010" + "100000000")
    crossed = tmp_path / "crossed.capture"
    crossed.write_text(
        '{"channel":"heartbeat"}\n'
        '{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",'
        '"bids":[{"price":45001.0,"qty":1.0}],"asks":[{"price":45000.0,"qty":1.0}],'
        f'"checksum":{checksum}}}]}}\n'
    )

    code, report = run_json(capsys, "--precision", "BTC/USD=1:8", str(crossed))

    assert code == 1
    assert report["checksum_mismatches"] == 0
    assert report["integrity_errors"] == 1
    assert report["first_integrity_error"]["line"] == 2
    assert report["first_integrity_error"]["symbol"] == "BTC/USD"
    assert not by_symbol(report)["BTC/USD"]["valid"]


# -- input forms ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sample.capture.gz", "sample.capture"])
def test_verify_gzip_input_detected_by_magic_exit_zero(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    packed = tmp_path / name
    packed.write_bytes(gzip.compress(V1_SAMPLE.read_bytes()))

    code, report = run_json(capsys, str(packed))

    assert code == 0
    assert report["checksums_verified"] == V1_CHECKSUMS


@pytest.mark.parametrize("compress", [False, True])
def test_verify_stdin_dash_exit_zero(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, compress: bool
) -> None:
    data = V1_SAMPLE.read_bytes()
    stdin = io.TextIOWrapper(io.BytesIO(gzip.compress(data) if compress else data))
    monkeypatch.setattr(sys, "stdin", stdin)

    code, report = run_json(capsys, "-")

    assert code == 0
    assert report["file"] == "<stdin>"
    assert report["checksums_verified"] == V1_CHECKSUMS


def test_verify_frames_without_receive_time_blank_and_other_lines_skipped_exit_zero(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    frames = [line.split(": ", 1)[1] for line in lines_of(V1_SAMPLE)]
    mixed = tmp_path / "mixed.capture"
    mixed.write_text(
        "# recorded by hand\n\n"
        + "".join(frames[:10])
        + "   \nnot a frame\n"
        + "".join(frames[10:])
    )

    code, report = run_json(capsys, str(mixed))

    assert code == 0
    assert report["frames"] == V1_LINES
    assert report["skipped_lines"] == 4
    assert report["skipped"] == {"blank": 2, "not_a_frame": 2, "other_protocol": 0}
    assert report["checksums_verified"] == V1_CHECKSUMS


def test_verify_crlf_lines_and_utf8_bom_exit_zero(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    windows = tmp_path / "windows.capture"
    windows.write_bytes(b"\xef\xbb\xbf" + V1_SAMPLE.read_bytes().replace(b"\n", b"\r\n"))

    code, report = run_json(capsys, str(windows))

    assert code == 0
    assert report["frames"] == V1_LINES
    assert report["checksums_verified"] == V1_CHECKSUMS


def test_verify_protocol_filter_skips_other_protocol_frames(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    both = tmp_path / "both.capture"
    both.write_bytes(V2_SAMPLE.read_bytes() + V1_SAMPLE.read_bytes())

    code, report = run_json(capsys, "--protocol", "v1", str(both))

    assert code == 0
    assert report["frames"] == V1_LINES
    assert report["skipped"]["other_protocol"] == V2_LINES
    assert [entry["symbol"] for entry in report["symbols"]] == ["XBT/USD"]

    code, report = run_json(capsys, str(both))

    assert code == 0
    assert report["checksums_verified"] == V2_BOOK_MESSAGES + V1_CHECKSUMS
    assert len(report["symbols"]) == 3


def test_verify_protocol_filter_without_matching_frame_exit_two(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["verify", "--protocol", "v2", str(V1_SAMPLE)])

    captured = capsys.readouterr()
    assert code == 2
    assert "ERROR: no v2 frame in" in captured.out


# -- unreadable input -----------------------------------------------------------------------


def test_verify_missing_file_exit_two(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["verify", str(tmp_path / "absent.capture")])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert "cannot open" in captured.err and "absent.capture" in captured.err


@pytest.mark.parametrize(
    "content",
    [
        bytes(range(256)) * 4,  # binary
        gzip.compress(V1_SAMPLE.read_bytes())[:2000],  # a gzip stream cut short
    ],
    ids=["binary", "cut-gzip"],
)
def test_verify_unreadable_content_exit_two(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "junk.capture"
    path.write_bytes(content)

    code = main(["verify", str(path)])

    captured = capsys.readouterr()
    assert code == 2
    assert "kbook verify: error:" in captured.err


@pytest.mark.parametrize("content", ["", "\n\n", "hello\nworld\n"])
def test_verify_no_frame_at_all_exit_two(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str
) -> None:
    path = tmp_path / "empty.capture"
    path.write_text(content)

    code, report = run_json(capsys, str(path))

    assert code == 2
    assert report["status"] == "error" and report["frames"] == 0
    assert report["error"].startswith("no frame in")


def test_verify_v2_without_instrument_exit_two_with_precision_hint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bare = tmp_path / "bare.capture"
    bare.write_text("".join(line for line in lines_of(V2_SAMPLE) if "instrument" not in line))

    code = main(["verify", str(bare)])

    out = capsys.readouterr().out
    assert code == 2
    assert "BTC/USD" in out and "ETH/USD" in out
    assert "give --precision SYMBOL=PP:QP or record the instrument channel" in out


def test_verify_v2_without_instrument_with_precision_exit_zero(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bare = tmp_path / "bare.capture"
    bare.write_text("".join(line for line in lines_of(V2_SAMPLE) if "instrument" not in line))

    code, report = run_json(
        capsys, "--precision", "BTC/USD=1:8", "--precision", "ETH/USD=2:8", str(bare)
    )

    assert code == 0
    assert report["checksums_verified"] == V2_BOOK_MESSAGES
    assert {e["precision_source"] for e in report["symbols"]} == {"--precision"}


def test_verify_v2_one_precision_missing_exit_two_other_symbol_verified(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bare = tmp_path / "bare.capture"
    bare.write_text("".join(line for line in lines_of(V2_SAMPLE) if "instrument" not in line))

    code, report = run_json(capsys, "--precision", "BTC/USD=1:8", str(bare))

    assert code == 2
    assert report["unknown_precision"] == ["ETH/USD"]
    assert report["orphan_updates"] == 700
    assert by_symbol(report)["BTC/USD"]["checksums_verified"] == 2001
    assert "give --precision SYMBOL=PP:QP" in report["error"]


@pytest.mark.parametrize("bad", ["BTC/USD", "BTC/USD=1", "BTC/USD=a:8", "=1:8"])
def test_verify_malformed_precision_option_exit_two(
    capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    code = main(["verify", "--precision", bad, str(V2_SAMPLE)])

    assert code == 2
    assert "SYMBOL=PRICE_DP:QTY_DP" in capsys.readouterr().err


# -- depth ----------------------------------------------------------------------------------


def test_verify_depth_without_ack_applies_to_v2_books(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    no_ack = tmp_path / "no-ack.capture"
    no_ack.write_text("".join(line for line in lines_of(V2_SAMPLE) if BOOK_ACK not in line))

    code, report = run_json(capsys, str(no_ack))
    assert code == 0
    assert {e["symbol"]: (e["depth"], e["depth_source"]) for e in report["symbols"]} == {
        "BTC/USD": (10, "snapshot size"),
        "ETH/USD": (25, "snapshot size"),
    }

    code, report = run_json(capsys, "--depth", "25", str(no_ack))
    # BTC/USD was streamed at depth 10: kept at 25 levels it no longer matches Kraken's book.
    assert code == 1
    assert {e["symbol"]: (e["depth"], e["depth_source"]) for e in report["symbols"]} == {
        "BTC/USD": (25, "--depth"),
        "ETH/USD": (25, "--depth"),
    }
    assert report["first_mismatch"]["symbol"] == "BTC/USD"


def test_verify_depth_with_ack_present_ack_wins_exit_zero(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, report = run_json(capsys, "--depth", "25", str(V2_SAMPLE))

    assert code == 0
    assert by_symbol(report)["BTC/USD"]["depth"] == 10
    assert by_symbol(report)["BTC/USD"]["depth_source"] == "ack"


def test_verify_unsupported_depth_exit_two(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--depth", "42", str(V2_SAMPLE)]) == 2
    assert "invalid choice" in capsys.readouterr().err


# -- the command itself ---------------------------------------------------------------------


def test_main_without_command_exit_two(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: kbook" in capsys.readouterr().err


def test_verify_help_states_exit_rule_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--help"]) == 0
    out = capsys.readouterr().out
    assert "exit status:" in out
    assert "could not be decoded" in out


def test_module_subprocess_readme_command_exit_zero() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))

    done = subprocess.run(
        [sys.executable, "-m", "kbook", "verify", "samples/btcusd-v2.capture"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines()[-1] == f"OK: all {V2_BOOK_MESSAGES} checksums matched"


# -- kbook bench ----------------------------------------------------------------------------


def test_bench_sample_reports_ratios_and_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(SAMPLES / "btcusd-v2.capture"), "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "2702 checksums verified, 0 mismatched" in out
    assert "engine build: " in out
    assert "msgspec.json.decode" in out and "engine / this =" in out


def test_bench_corrupted_capture_exit_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = (SAMPLES / "btcusd-v2.capture").read_bytes().splitlines(keepends=True)
    target = next(i for i, line in enumerate(lines) if b'"channel":"book","type":"update"' in line)
    lines[target] = re.sub(rb'"checksum":[0-9]+', b'"checksum":1', lines[target], count=1)
    broken = tmp_path / "broken.capture"
    broken.write_bytes(b"".join(lines))
    assert main(["bench", str(broken), "--rounds", "1"]) == 1


def test_bench_missing_file_exit_two(tmp_path: Path) -> None:
    assert main(["bench", str(tmp_path / "nope.capture")]) == 2
