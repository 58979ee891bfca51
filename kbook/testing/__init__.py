"""Test your Kraken code with kbook: Hypothesis strategies, the oracle, fixtures, fault scripts.

Install the extra, ``pip install 'kbook[testing]'`` (it brings Hypothesis), then:

* :mod:`kbook.testing.strategies`: :func:`pairs`, :func:`book_streams`, :func:`level3_streams`,
  :func:`json_styles`, :func:`corruptions`, :func:`public_messages`, :func:`executions`,
  :func:`balances`, and the building blocks :func:`mid_prices`, :func:`quantities` and
  :func:`style_seeds` (all re-exported here);
* :mod:`kbook.reference`: the slow, obviously-correct model (books, checksums, level3 queues)
  to run next to your own code;
* :class:`FaultScript`: "at message 500 corrupt BTC/USD's checksum, at 2 s drop the connection,
  then refuse 3 reconnects", for the in-process simulator and ``kbook sim --faults FILE``;
* a pytest plugin (registered as ``kbook`` through the ``pytest11`` entry point): the fixtures
  ``kbook_sim`` and ``kbook_client`` and the ``kbook_sim`` marker (:mod:`kbook.testing.plugin`);
* :func:`read_capture` and :func:`replay` to check a recorded capture in a test.

Names are resolved on first use, so the pytest plugin (imported by every pytest run of an
environment that has kbook) does not import Hypothesis or the simulator until a test asks.

What it is not: a test runner or a mock of Kraken. Frames go through the real engine, the real
client and the real simulator over loopback sockets.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kbook.testing.books import (
        BTC_USD,
        DOGE_USD,
        PRESET_PAIRS,
        SHIB_USD,
        THIN_PAIR,
        FrameStream,
        Op,
        Pair,
        Seeded,
        Snapshot,
        Update,
        book_checksum,
        render_book_stream,
    )
    from kbook.testing.capture import read_capture, replay
    from kbook.testing.corrupt import CORRUPTION_KINDS, Corrupted, Corruption
    from kbook.testing.faults import FaultScript, FaultStep, RunningScript
    from kbook.testing.level3 import render_level3_stream
    from kbook.testing.simthread import BackgroundClient, SimulatorThread
    from kbook.testing.strategies import (
        JsonStyle,
        balances,
        book_streams,
        corruptions,
        executions,
        json_styles,
        level3_streams,
        mid_prices,
        pairs,
        public_messages,
        quantities,
        style_seeds,
    )

__all__ = [
    "BTC_USD",
    "CORRUPTION_KINDS",
    "DOGE_USD",
    "PRESET_PAIRS",
    "SHIB_USD",
    "THIN_PAIR",
    "BackgroundClient",
    "Corrupted",
    "Corruption",
    "FaultScript",
    "FaultStep",
    "FrameStream",
    "JsonStyle",
    "Op",
    "Pair",
    "RunningScript",
    "Seeded",
    "SimulatorThread",
    "Snapshot",
    "Update",
    "balances",
    "book_checksum",
    "book_streams",
    "corruptions",
    "executions",
    "json_styles",
    "level3_streams",
    "mid_prices",
    "pairs",
    "public_messages",
    "quantities",
    "read_capture",
    "render_book_stream",
    "render_level3_stream",
    "replay",
    "style_seeds",
]

_HOMES = {
    "BTC_USD": "books",
    "DOGE_USD": "books",
    "PRESET_PAIRS": "books",
    "SHIB_USD": "books",
    "THIN_PAIR": "books",
    "FrameStream": "books",
    "Op": "books",
    "Pair": "books",
    "Seeded": "books",
    "Snapshot": "books",
    "Update": "books",
    "book_checksum": "books",
    "render_book_stream": "books",
    "read_capture": "capture",
    "replay": "capture",
    "CORRUPTION_KINDS": "corrupt",
    "Corrupted": "corrupt",
    "Corruption": "corrupt",
    "FaultScript": "faults",
    "FaultStep": "faults",
    "RunningScript": "faults",
    "render_level3_stream": "level3",
    "BackgroundClient": "simthread",
    "SimulatorThread": "simthread",
    "JsonStyle": "strategies",
    "balances": "strategies",
    "book_streams": "strategies",
    "corruptions": "strategies",
    "executions": "strategies",
    "json_styles": "strategies",
    "level3_streams": "strategies",
    "pairs": "strategies",
    "public_messages": "strategies",
    "mid_prices": "strategies",
    "quantities": "strategies",
    "style_seeds": "strategies",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kbook.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"kbook.testing.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
