"""``kbook watch`` into a pipe: periodic one-line summaries, and a reader that goes away
(``| head``) ends it quietly."""

from __future__ import annotations

import subprocess
import sys


def test_watch_piped_into_head_prints_summaries_and_exits_quietly() -> None:
    proc = subprocess.run(
        f"{sys.executable} -m kbook watch btc/usd eth/usd --sim --rate 200 --duration 30 "
        "--every 0.3 | head -4",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 4, proc.stdout + proc.stderr
    assert {ln.split()[1] for ln in lines} == {"BTC/USD", "ETH/USD"}
    assert all(" valid " in ln and "msg/s" in ln and "spread" in ln for ln in lines)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
