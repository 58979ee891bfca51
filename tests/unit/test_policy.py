"""Reconnect and request timing without waiting: ``ReconnectPolicy.delay`` with a scripted random
source, and ``ConnectionBudget`` and ``Pacer`` on a clock the test moves by hand (their waits move
that clock instead of sleeping). Every expected value is exact.

What it is not: a test of the client's reconnect loop (``tests/integration/test_client_e2e.py``
drives that against the simulator).
"""

from __future__ import annotations

import asyncio
import random

import pytest

from kbook.client import ConnectionBudget, Pacer, ReconnectPolicy


class ScriptedRandom(random.Random):
    """A ``random.Random`` whose ``random()`` returns the given values in turn."""

    def __init__(self, *values: float) -> None:
        super().__init__(0)
        self._values = list(values)

    def random(self) -> float:
        return self._values.pop(0)


class ManualClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeSleep:
    """An ``asyncio.sleep`` stand-in that records each wait and moves the clock by it."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.now += seconds


# -- ReconnectPolicy.delay ---------------------------------------------------------------------


@pytest.mark.parametrize("failures", [0, -1])
def test_policy_delay_first_retry_is_immediate(failures: int) -> None:
    policy = ReconnectPolicy()
    assert policy.delay(failures, ScriptedRandom()) == 0.0  # no random draw either


def test_policy_delay_without_jitter_doubles_from_initial_up_to_the_cap() -> None:
    policy = ReconnectPolicy(initial=1.0, maximum=60.0, multiplier=2.0, jitter=0.0)
    rng = ScriptedRandom(*[0.5] * 9)
    assert [policy.delay(k, rng) for k in range(1, 10)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        32.0,
        60.0,
        60.0,
        60.0,
    ]


def test_policy_delay_jitter_scales_the_base_down_by_at_most_jitter() -> None:
    policy = ReconnectPolicy(initial=1.0, maximum=60.0, multiplier=2.0, jitter=0.5)
    rng = ScriptedRandom(0.0, 0.5, 0.75, 0.5)
    # base 1, 2, 4 and the capped 60, times (1 - 0.5 * draw)
    assert [policy.delay(k, rng) for k in (1, 2, 3, 8)] == [1.0, 1.5, 2.5, 45.0]


def test_policy_delay_other_multiplier_and_initial() -> None:
    policy = ReconnectPolicy(initial=0.25, maximum=10.0, multiplier=3.0, jitter=0.0)
    rng = ScriptedRandom(*[0.0] * 5)
    assert [policy.delay(k, rng) for k in range(1, 6)] == [0.25, 0.75, 2.25, 6.75, 10.0]


def test_policy_delay_same_seed_gives_the_same_delays() -> None:
    policy = ReconnectPolicy()
    first = [policy.delay(k, random.Random(7)) for k in range(1, 8)]
    again = [policy.delay(k, random.Random(7)) for k in range(1, 8)]
    assert first == again
    assert all(
        0.5 * min(60.0, 2.0 ** (k - 1)) < d <= min(60.0, 2.0 ** (k - 1))
        for k, d in zip(range(1, 8), first, strict=True)
    )


# -- ConnectionBudget --------------------------------------------------------------------------


def _acquire(budget: ConnectionBudget) -> None:
    """Record one attempt; only called where it fits, so ``acquire`` never sleeps."""
    assert budget.wait_time() == 0.0
    asyncio.run(budget.acquire())


def test_budget_fresh_allows_attempts_at_once() -> None:
    budget = ConnectionBudget(max_attempts=3, window=10.0, clock=ManualClock())
    assert budget.wait_time() == 0.0 and budget.attempts_in_window == 0


def test_budget_full_waits_until_the_oldest_attempt_leaves_the_window() -> None:
    clock = ManualClock(100.0)
    budget = ConnectionBudget(max_attempts=3, window=10.0, clock=clock)
    for at in (100.0, 101.0, 102.0):
        clock.now = at
        _acquire(budget)
    assert budget.attempts_in_window == 3
    assert budget.wait_time() == 8.0  # the attempt at 100 leaves at 110
    clock.now = 109.5
    assert budget.wait_time() == 0.5
    clock.now = 110.0
    assert budget.wait_time() == 0.0 and budget.attempts_in_window == 2
    _acquire(budget)
    assert budget.wait_time() == 1.0  # now the attempt at 101 is the oldest


def test_budget_attempts_older_than_the_window_are_forgotten() -> None:
    clock = ManualClock(0.0)
    budget = ConnectionBudget(max_attempts=2, window=600.0, clock=clock)
    _acquire(budget)
    clock.now = 300.0
    _acquire(budget)
    assert budget.wait_time() == 300.0
    clock.now = 700.0
    assert budget.attempts_in_window == 1 and budget.wait_time() == 0.0
    clock.now = 900.0  # exactly one window after 300: gone too
    assert budget.attempts_in_window == 0


def test_budget_a_burst_at_one_instant_waits_a_whole_window() -> None:
    clock = ManualClock(50.0)
    budget = ConnectionBudget(max_attempts=140, window=600.0, clock=clock)
    for _ in range(140):
        _acquire(budget)
    assert budget.attempts_in_window == 140 and budget.wait_time() == 600.0


def test_budget_acquire_waits_out_the_window_on_the_fake_clock() -> None:
    clock = ManualClock(0.0)
    sleep = FakeSleep(clock)
    budget = ConnectionBudget(max_attempts=2, window=10.0, clock=clock, sleep=sleep)

    async def three() -> None:
        for _ in range(3):
            await budget.acquire()

    asyncio.run(three())
    assert sleep.waits == [10.0] and clock.now == 10.0 and budget.attempts_in_window == 1


# -- Pacer -------------------------------------------------------------------------------------


def _paced(pacer: Pacer, n: int) -> None:
    async def run() -> None:
        for _ in range(n):
            await pacer.acquire()

    asyncio.run(run())


def test_pacer_sends_the_burst_at_once_then_one_per_interval() -> None:
    clock = ManualClock(0.0)
    sleep = FakeSleep(clock)
    pacer = Pacer(rate=4.0, burst=3, clock=clock, sleep=sleep)
    _paced(pacer, 3)
    assert sleep.waits == [] and clock.now == 0.0
    _paced(pacer, 2)  # the bucket is empty: 1/rate each
    assert sleep.waits == [0.25, 0.25] and clock.now == 0.5


def test_pacer_refills_while_idle_but_never_beyond_the_burst() -> None:
    clock = ManualClock(0.0)
    sleep = FakeSleep(clock)
    pacer = Pacer(rate=10.0, burst=2, clock=clock, sleep=sleep)
    _paced(pacer, 2)
    clock.now = 100.0  # idle for long: two tokens, not a thousand
    _paced(pacer, 3)
    assert sleep.waits == [pytest.approx(0.1)]


def test_pacer_back_off_holds_every_request_until_the_penalty_ends() -> None:
    clock = ManualClock(10.0)
    sleep = FakeSleep(clock)
    pacer = Pacer(rate=100.0, burst=5, clock=clock, sleep=sleep)
    pacer.back_off(2.0)
    pacer.back_off(1.0)  # a shorter penalty does not shorten the first
    _paced(pacer, 1)
    assert sleep.waits == [2.0] and clock.now == 12.0
