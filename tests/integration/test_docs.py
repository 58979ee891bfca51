"""The README's Python blocks and every script in ``examples/`` run against the simulator.

Each snippet runs as its own process, as a reader would run it, while a :class:`Simulator` in the
test's event loop serves it; where a snippet names Kraken (``Client()``, ``TokenProvider``'s
default REST URL) the simulator's URL is substituted in the text, and the test fails if the text
to substitute is gone, so an edited snippet cannot silently stop being tested. Credentials come
from an account the simulator opens. A snippet that runs until interrupted is stopped once its
output shows it working.

What it is not: a check of the numbers printed (other tests verify books and trading); it proves
the documented code still runs and does what the text around it says.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kbook.sim import Simulator
from tests.integration.simclient import run

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLES = ROOT / "examples"


def readme_blocks() -> dict[str, str]:
    """The README's ``python`` blocks, named by what they show."""
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.M | re.S)
    named: dict[str, str] = {}
    for block in blocks:
        if "PrivateSession" in block:
            named["private"] = block
        elif "from kbook.history import" in block:
            named["research"] = block
        elif "from kbook.bus import" in block:
            named["bus"] = block  # compiled here; test_bus runs the demo against nats-server
        elif "kbook_sim" in block:
            named["fixtures"] = block  # a test module: pytest runs it from outside the tree
        elif "from kbook.testing import" in block:
            named["testing"] = block
        elif "from kbook.sim import Simulator" in block:
            named["simulator"] = block
        elif "from kbook import Client" in block:
            named["client"] = block
        else:
            named[f"unknown-{len(named)}"] = block
    return named


def substitute(code: str, replacements: dict[str, str]) -> str:
    """Replace each key of ``replacements`` once; fail if a snippet no longer contains it."""
    for old, new in replacements.items():
        assert code.count(old) == 1, f"the snippet no longer contains {old!r}: update test_docs"
        code = code.replace(old, new)
    return code


Lines = list[str]


async def run_process(
    args: list[str],
    env: dict[str, str] | None = None,
    until: Callable[[Lines], bool] | None = None,
    timeout: float = 60.0,
) -> tuple[int | None, Lines, str]:
    """Run ``args`` to the end, or until ``until(stdout lines)`` holds (then stop it).

    :return: the exit status (None when stopped by ``until``), stdout lines and stderr.
    :raises AssertionError: when it neither ends nor satisfies ``until`` within ``timeout``.
    """
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
            # The `kbook` command of this interpreter's environment, activated or not.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        },
    )
    assert proc.stdout is not None and proc.stderr is not None
    errors = asyncio.ensure_future(proc.stderr.read())
    lines: Lines = []
    stopped = False
    try:
        async with asyncio.timeout(timeout):
            while line := await proc.stdout.readline():
                lines.append(line.decode().rstrip("\n"))
                if until is not None and until(lines):
                    stopped = True
                    break
            if stopped:
                proc.terminate()
            code = await proc.wait()
    except TimeoutError:
        what = "the snippet" if args[1] == "-c" else args[-1]
        raise AssertionError(
            f"{what} neither finished nor showed its output in {timeout} s; stdout {lines[-5:]!r}"
        ) from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = (await errors).decode()
    return (None if stopped else code), lines, stderr


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# -- the README ----------------------------------------------------------------------------


def test_readme_every_python_block_is_covered_here() -> None:
    assert sorted(readme_blocks()) == [
        "bus",
        "client",
        "fixtures",
        "private",
        "research",
        "simulator",
        "testing",
    ]


def test_readme_research_block_reads_what_the_export_command_wrote(tmp_path: Path) -> None:
    # the README's shell line first (into a temporary folder), then its python block
    readme = README.read_text()
    [export] = re.findall(r"^kbook export .*$", readme, flags=re.M)
    args = export.split()[1:]
    args[args.index("/tmp/btc")] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "kbook", *args],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    code = readme_blocks()["research"].replace("/tmp/btc", str(tmp_path))
    ran = subprocess.run(
        python(code + "\nprint(book.valid, len(top.time))"),
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1].startswith("True ")


def test_readme_every_python_block_compiles() -> None:
    for name, code in readme_blocks().items():
        compile(code, f"README.md ({name})", "exec")  # top-level await was a SyntaxError


def test_readme_testing_block_property_passes() -> None:
    # a few seconds on an idle machine; the bound only cuts a hang short on a loaded one
    ran = subprocess.run(
        python(readme_blocks()["testing"]),
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr


def test_readme_fixtures_block_passes_under_pytest_outside_the_tree(tmp_path: Path) -> None:
    # the plugin comes from the installed entry point, not from this repository's conftest
    test_file = tmp_path / "test_readme_fixtures.py"
    test_file.write_text(readme_blocks()["fixtures"])
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 passed" in ran.stdout


def test_readme_simulator_block_runs_and_the_client_resyncs_after_the_fault() -> None:
    async def scenario() -> tuple[int | None, Lines, str]:
        return await run_process(python(readme_blocks()["simulator"]))

    code, lines, stderr = run(scenario(), timeout=90)
    assert code == 0, stderr
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/v2 ws://127\.0\.0\.1:\d+/", lines[0])
    assert "checksum_mismatch BTC/USD" in lines and lines[-1] == "resync_done BTC/USD"


def test_readme_client_block_streams_books_and_trades_from_the_simulator() -> None:
    def books_and_trades(lines: Lines) -> bool:
        return any(line.startswith("BTC/USD ") for line in lines) and any(
            line.split(" ", 1)[0] in ("buy", "sell") for line in lines
        )

    async def scenario() -> tuple[int | None, Lines, str]:
        async with Simulator(seed=61, rate=50, pairs=["BTC/USD", "ETH/USD"]) as sim:
            code = substitute(readme_blocks()["client"], {"Client()": f"Client({sim.url_v2!r})"})
            return await run_process(python(code), until=books_and_trades)

    code, lines, stderr = run(scenario(), timeout=90)
    assert code is None, f"the snippet ended on its own: {stderr}"  # it streams until stopped
    assert books_and_trades(lines)


async def _private_block() -> tuple[int | None, Lines, str]:
    async with Simulator(seed=62, rate=20, pairs=["BTC/USD"]) as sim:
        key, secret = sim.add_account()
        replacements = {
            "TokenProvider(Credentials(api_key, api_secret))": (
                f"TokenProvider(Credentials(api_key, api_secret), rest_url={sim.rest_url!r})"
            ),
            "Client(token=provider)": f"Client({sim.url_v2!r}, token=provider)",
        }
        code = substitute(readme_blocks()["private"], replacements)
        # Against loopback it takes well under a second; the bound only cuts a hang short.
        result = await run_process(
            python(code), timeout=15, env={"KRAKEN_API_KEY": key, "KRAKEN_API_SECRET": secret}
        )
        assert len(sim.account(key).fills) + len(sim.account(key).orders) == 1
        return result


def _check_private(result: tuple[int | None, Lines, str]) -> None:
    code, lines, stderr = result
    assert code == 0, stderr
    state, order_id, usd = lines[-1].split()
    assert state == "accepted" and order_id and usd == "100000.0"


def test_readme_private_block_trades_on_the_simulator_exchange() -> None:
    # PrivateSession(client) takes the client's endpoint: the block as printed trades
    _check_private(run(_private_block(), timeout=90))


# -- examples/ -----------------------------------------------------------------------------

#: What each example must print: a pattern one stdout line matches.
EXPECTED = {
    "watch_book.py": r"BTC/USD .* @ .*spread \d+",
    "async_iterators.py": r"ETH/USD best .*",
    "strategy_skeleton.py": r"\{.*'BTC/USD': \d+.*\} tight-spread signals: \d+",
    "level3_queue_position.py": r"O\S+: (bid .* place \d+ .* ahead .*|left the book .*)",
    "record_and_verify.sh": r"recorded \d+ frames \([\d.]+ [KMG]?B\) in .*",
    "differential_test.py": r"shrunk to \d+ frames: the book kept more than its 10 levels",
    "fuzz_my_strategy.py": (
        r"\d+ fuzzed feeds, \d+ quotes: the bot never quoted from an unverified book"
    ),
}


def test_examples_every_script_is_covered_here() -> None:
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh")) == sorted(
        EXPECTED
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_against_the_simulator(name: str, tmp_path: Path) -> None:
    script = EXAMPLES / name

    async def scenario() -> tuple[int | None, Lines, str]:
        async with Simulator(seed=63, rate=50, pairs=["BTC/USD", "ETH/USD", "DOGE/USD"]) as sim:
            env = {
                "KBOOK_URL": sim.url_v2,
                "KBOOK_TOKEN": sim.issue_token(),
                "KBOOK_CAPTURE": str(tmp_path / "demo.capture.gz"),
            }
            args = ["bash", str(script)] if name.endswith(".sh") else [sys.executable, str(script)]
            return await run_process(args, env=env)

    code, lines, stderr = run(scenario(), timeout=90)
    assert code == 0, stderr
    assert any(re.fullmatch(EXPECTED[name], line) for line in lines), lines[-10:]
