"""The profile-guided build's training run (``pgo_train.py`` beside ``setup.py``).

A training run that fails does not fail an install: ``setup.py`` falls back to a plain build with a
warning, which nobody reads in a ``pip install``. These tests are what notices instead: the run must
go through with this engine, from the module ``setup.py`` calls, and in a fresh interpreter the way
``setup.py`` starts it (the engine loaded from a path, before ``kbook`` is imported).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import kbook._core

TRAIN = Path(__file__).resolve().parents[2] / "pgo_train.py"

pytestmark = pytest.mark.skipif(
    not TRAIN.exists(), reason="pgo_train.py is in the source tree only (not in the wheel)"
)


def _train_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pgo_train", TRAIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_streams_all_verify_with_this_engine() -> None:
    train = _train_module()
    # 2 pairs x (3 level3 + 5 L2 streams), each a snapshot and 50 updates, nearly all checksummed
    verified = train.train(updates=50)
    assert 2 * 8 * 40 <= verified <= 2 * 8 * 51


def test_training_run_as_setup_py_starts_it() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import pgo_train; "
        "pgo_train.load_engine(sys.argv[2]); import kbook._core as c; "
        "assert c.__file__ == sys.argv[2], c.__file__; print(pgo_train.train(updates=20))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(TRAIN.parent), kbook._core.__file__],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) > 0


def test_wrong_arguments_are_a_usage_error() -> None:
    run = subprocess.run([sys.executable, str(TRAIN)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "usage" in run.stderr
