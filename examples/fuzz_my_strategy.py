"""Fuzz a trading strategy against adversarial Kraken feeds, through the real client.

``QuoteBot`` is a toy strategy: on every book notification it quotes one tick inside the spread.
The rule it must never break: **never quote from a book that is not verified**. Hypothesis
draws a checksummed book stream (``book_streams``), damages it (``corruptions``: a flipped digit,
a lost, repeated or late frame, a cut frame, noise) and picks a fault script (a dropped
connection, a CLOSE, refused reconnects); the simulator serves the damaged stream to a real
:class:`kbook.client.Client` over a loopback socket, then the script runs. After each example:

* every quote came from a valid book whose checksum is one the honest stream published;
* if the damage was visible on the wire (``must_detect``), the client reported it.

Run it: ``python examples/fuzz_my_strategy.py``. It needs ``kbook[testing]`` (Hypothesis) and
starts its own simulator (it drives the simulator's faults, so ``KBOOK_URL`` is not used);
``KBOOK_FUZZ_EXAMPLES`` sets the number of examples (default 12).
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kbook.client import ReconnectPolicy
from kbook.testing import (
    PRESET_PAIRS,
    BackgroundClient,
    Corruption,
    FaultScript,
    FrameStream,
    SimulatorThread,
    book_streams,
    corruptions,
)

# What a client reports when it notices damage.
DETECTIONS = ("checksum_mismatch", "decode_error", "integrity_error")
SCRIPTS = st.sampled_from(
    [
        FaultScript(),
        FaultScript().at(0, "drop"),
        FaultScript().at(0, "close", code=1011),
        FaultScript().at(0, "refuse_upgrades", count=2).at(0, "drop"),
    ]
)
# Reconnect at once: a test has no reason to wait out Kraken's backoff.
FAST = ReconnectPolicy(initial=0.01, maximum=0.05, first_connect_timeout=5.0)


class QuoteBot:
    """Quote one tick inside the spread of every book it is shown."""

    def __init__(self) -> None:
        self.quotes: list[tuple[bool, int, int, int]] = []  # valid, checksum, bid, ask

    def on_book(self, book: Any) -> None:
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None and ask[0] - bid[0] > 2:
            self.quotes.append((book.valid, book.checksum(), bid[0] + 1, ask[0] - 1))


def published_checksums(stream: FrameStream) -> set[int]:
    """Every checksum the honest stream carries: the only book states worth trusting."""
    import json

    sums = set()
    for frame in stream.book_frames():
        for entry in json.loads(frame)["data"]:
            sums.add(entry["checksum"])
    return sums


def fuzz(
    sim: SimulatorThread, stream: FrameStream, corruption: Corruption, script: FaultScript
) -> int:
    """Run one example; return how many quotes the bot made."""
    damaged = corruption.apply(stream)
    preamble = len(stream) - len(stream.book_frames())
    sim.replay(stream, frames=damaged.frames[preamble:])
    bot = QuoteBot()
    with BackgroundClient(sim, policy=FAST) as client:
        client.subscribe_book([stream.pair.symbol], depth=stream.depth, on_book=bot.on_book)
        sim.settle()
        client.run(client.client.ping())  # the pong comes after every frame of the replay
        running = sim.start_script(script)
        sim.run(running.wait(5.0))
        if any(step.fault in ("drop", "close") for step in script.steps):
            client.wait_until(lambda: len(client.events_of("connected")) >= 2)
            sim.settle()
            client.run(client.client.ping())
        events = [event.kind for event in client.events]
    honest = published_checksums(stream)
    for valid, checksum, _, _ in bot.quotes:
        assert valid, "quoted from an invalid book"
        assert checksum in honest, f"quoted from a book the exchange never published: {damaged}"
    if damaged.must_detect:
        assert any(kind in DETECTIONS for kind in events), f"damage went unnoticed: {damaged}"
    return len(bot.quotes)


def main() -> None:
    examples = int(os.environ.get("KBOOK_FUZZ_EXAMPLES", "12"))
    pairs = [pair.symbol for pair in PRESET_PAIRS]
    quotes = 0
    with SimulatorThread(seed=5, rate=5, pairs=pairs, warmup=50) as sim:

        @settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(
            stream=book_streams(pair=st.sampled_from(PRESET_PAIRS), depth=10, max_messages=12),
            corruption=corruptions(),
            script=SCRIPTS,
        )
        def test_bot_never_quotes_on_an_invalid_book(
            stream: FrameStream, corruption: Corruption, script: FaultScript
        ) -> None:
            nonlocal quotes
            quotes += fuzz(sim, stream, corruption, script)

        test_bot_never_quotes_on_an_invalid_book()
    assert quotes > 0, "the bot never quoted at all: the property was never exercised"
    print(f"{examples} fuzzed feeds, {quotes} quotes: the bot never quoted from an unverified book")


if __name__ == "__main__":
    main()
