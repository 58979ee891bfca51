"""Shared test configuration: hypothesis profiles and the location of Kraken's published vectors.

Profiles (chosen with the ``HYPOTHESIS_PROFILE`` environment variable, ``dev`` when unset):

* ``dev``: about 100 examples per property, for a local run of a few minutes at most;
* ``ci``: fewer examples, no per-example deadline (a shared 2-core runner has noisy timings) and no
  ``too_slow`` health check, so ``tests/property`` stays well under a minute there;
* ``sanitize``: ``ci``'s settings for the AddressSanitizer + UBSan build (``.ci/sanitize``), where
  every example runs several times slower; its budget keeps that CI stage within a few minutes.

What it is not: it defines no fixtures that build books or feeds; each test module owns its setup.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.data import VECTORS

settings.register_profile("dev", max_examples=100)
settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,  # a CI failure prints the @reproduce_failure blob to replay it locally
)
settings.register_profile("sanitize", settings.get_profile("ci"), max_examples=25)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """Return the directory of Kraken's published examples, ``tests/data/kraken``.

    Session-scoped so that hypothesis tests may use it without the function-scoped-fixture check.
    """
    return VECTORS
