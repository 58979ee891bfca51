"""``kbook watch`` in a real terminal: tmux runs it, ``capture-pane`` reads the screen back,
``send-keys`` presses the keys. Skipped where tmux is not installed.

Each test waits for what the screen should show (never a fixed sleep) and asserts on the text.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

ROOT = Path(__file__).resolve().parents[2]


class Pane:
    """One detached tmux session of a fixed size running one command."""

    def __init__(self, command: list[str], width: int, height: int) -> None:
        self.name = f"kbook-test-{uuid.uuid4().hex[:8]}"
        # the shell stays after the command, so the summary it prints can be read back
        line = f"cd {shlex.quote(str(ROOT))} && {shlex.join(command)}; echo EXITED $?; sleep 60"
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                str(width),
                "-y",
                str(height),
                line,
            ],
            check=True,
        )

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, ok: Callable[[str], bool], timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if ok(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"the screen never showed what was expected:\n{text}")
            time.sleep(0.1)  # polling the pane, not waiting for something to happen

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], check=False)


@pytest.fixture
def pane() -> Iterator[Callable[..., Pane]]:
    made: list[Pane] = []

    def make(args: list[str], width: int = 80, height: int = 24) -> Pane:
        p = Pane([sys.executable, "-m", "kbook", *args], width, height)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def _fits(text: str, width: int, height: int) -> None:
    rows = text.rstrip("\n").split("\n")
    assert len(rows) <= height and all(len(r) <= width for r in rows)


def test_watch_tmux_l2_screen_and_keys(pane: Callable[..., Pane]) -> None:
    p = pane(["watch", "btc/usd", "--sim", "--rate", "200", "--duration", "60"])
    text = p.wait_for(lambda t: "VALID" in t and "verified" in t and "recv→cb" in t)
    _fits(text, 80, 24)
    top = text.splitlines()[0]
    assert "BTC/USD" in top and "spread" in top and "bps" in top and "mid" in top
    assert "price" in text and "cum" in text and "q quit" in text
    assert "mismatches 0" in text and "venue online" in text
    p.keys("+")
    p.wait_for(lambda t: "depth shown (15)" in t)
    p.keys("-", "-")
    p.wait_for(lambda t: "depth shown (5)" in t)
    p.keys("p")
    p.wait_for(lambda t: "PAUSED" in t)
    p.keys("p")
    p.wait_for(lambda t: "PAUSED" not in t)
    p.keys("q")
    end = p.wait_for(lambda t: "EXITED" in t)
    assert "BTC/USD:" in end and "checksums verified" in end and "EXITED 0" in end


def test_watch_tmux_level3_shows_counts_and_queue(pane: Callable[..., Pane]) -> None:
    p = pane(["watch", "BTC/USD", "--sim", "--level3", "--duration", "60"])
    text = p.wait_for(lambda t: "VALID" in t and "bid queue:" in t and "ask queue:" in t)
    _fits(text, 80, 24)
    assert "L3 depth 10" in text and "#" in text
    p.keys("q")
    p.wait_for(lambda t: "EXITED 0" in t)


def test_watch_tmux_many_symbols_in_a_grid(pane: Callable[..., Pane]) -> None:
    symbols = ["BTC/USD", "ETH/USD", "DOGE/USD", "SHIB/USD"]
    p = pane(["watch", *symbols, "--sim", "--duration", "60"], 200, 60)
    text = p.wait_for(lambda t: t.count("VALID") == 4)
    _fits(text, 200, 60)
    first = text.splitlines()[0]
    assert all(s in first for s in symbols[:3]), text  # three panels across 200 columns
    # panels too narrow for a tape show the newest trade, once each pair has traded
    p.wait_for(lambda t: t.count("last trade") == 4)
    # a smaller terminal: one column of shorter panels, nothing wrapped
    subprocess.run(["tmux", "resize-window", "-t", p.name, "-x", "80", "-y", "24"], check=True)
    small = p.wait_for(
        lambda t: (
            t.count("VALID") == 4
            and "BTC/USD" in t.splitlines()[0]
            and "ETH/USD" not in t.splitlines()[0]
        )
    )
    _fits(small, 80, 24)
    p.keys("q")
    p.wait_for(lambda t: "EXITED 0" in t)


def test_record_tmux_progress_then_ctrl_c_keeps_a_valid_capture(
    pane: Callable[..., Pane], tmp_path: Path
) -> None:
    out = tmp_path / "btc.capture.gz"
    p = pane(
        ["record", "sim", "--symbols", "btc/usd", "--duration", "120", "-o", str(out)], 160, 10
    )
    p.wait_for(lambda t: "recording" in t and "frames/s" in t and "book" in t)
    assert (tmp_path / "btc.capture.gz.partial").exists() and not out.exists()
    p.keys("C-c")
    end = p.wait_for(lambda t: "EXITED" in t).replace("\n", "")  # the terminal wraps it
    assert "EXITED 130" in end and "interrupted" in end and "recorded" in end
    assert out.exists() and not (tmp_path / "btc.capture.gz.partial").exists()
    verified = subprocess.run(
        [sys.executable, "-m", "kbook", "verify", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
