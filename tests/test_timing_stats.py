"""The statistics, the block-size and stopping rules, and the timer, with a fake clock."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sharedconv.harness import stats
from sharedconv.harness.timing import steady_state


def test_summary_matches_numpy():
    rng = random.Random(1)
    values = [rng.lognormvariate(0, 0.3) for _ in range(101)]
    s = stats.summarize(values)
    assert s.n == 101
    assert s.median == pytest.approx(np.median(values))
    assert s.q1 == pytest.approx(np.percentile(values, 25))
    assert s.q3 == pytest.approx(np.percentile(values, 75))
    assert s.mean == pytest.approx(np.mean(values))
    assert s.std == pytest.approx(np.std(values, ddof=1))
    assert s.ci_low <= s.median <= s.ci_high


def test_median_ci_covers_the_median_about_95_percent_of_the_time():
    rng = random.Random(7)
    hits = 0
    trials = 400
    for _ in range(trials):
        values = [rng.expovariate(1.0) for _ in range(41)]
        lo, hi = stats.median_ci(values)
        hits += lo <= math.log(2) <= hi  # the exponential's true median
    assert 0.90 <= hits / trials <= 0.99


def test_noisy_flag():
    assert not stats.summarize([1.0, 1.01, 0.99, 1.02, 0.98]).noisy
    assert stats.summarize([1.0, 1.5, 0.7, 1.3, 0.8]).noisy


def test_block_size_rule():
    # a 1 ms call with 50 µs of overhead needs 5 calls per block for < 1% overhead
    assert stats.block_size_for(1e-3, 50e-6) == 5
    assert stats.block_size_for(1.0, 50e-6) == 1
    assert stats.block_size_for(1e-6, 1e-5, limit=64) == 64


def test_stopping_rule():
    assert not stats.precise_enough([1.0] * 4, 0.02)  # fewer than min_samples
    assert stats.precise_enough([1.0] * 5, 0.02)
    spread = [1.0, 1.3, 0.7, 1.2, 0.8, 1.25, 0.75]
    assert not stats.precise_enough(spread, 0.02)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_timer_with_a_fake_clock_blocks_and_stops_on_precision():
    clock = FakeClock()
    call_s, sync_s = 200e-6, 30e-6
    calls = {"n": 0}

    def call():
        clock.now += call_s
        calls["n"] += 1
        return calls["n"]

    def sync(_):
        clock.now += sync_s

    options = {"budget": 5.0, "warmup": 0.0, "warmup_calls": 2}
    # the overhead rule alone (the window rules have a test of their own)
    options.update(max_samples=10_000, min_window=0.0)
    result = steady_state(call, sync, options, clock=clock)
    # 30 µs of overhead against a 200 µs call: ceil(30 / 2) = 15 calls per block for < 1%
    assert result["block_size"] == 15
    assert result["overhead_s"] == pytest.approx(sync_s)
    assert result["overhead_fraction"] < 0.01
    assert result["stopped_by"] == "precision"
    assert len(result["block_times"]) == 5  # constant times: the CI is tight at the minimum
    # each sample is a block time divided by the block size; sync is inside the block
    assert result["stats"]["median"] == pytest.approx(call_s + sync_s / 15)
    assert result["block_times"][0] == pytest.approx(15 * call_s + sync_s)


def test_short_calls_are_sampled_over_a_window_not_a_handful_of_calls():
    """A 0.3 ms call with no overhead: before, five one-call samples (1.5 ms) were 'precise'
    and ended the case; spells of the machine lasting a second decided its median. Now blocks
    are long enough that max_samples of them span the budget, and sampling lasts a quarter of
    the budget at least, however precise it looks."""
    clock = FakeClock()

    def call():
        clock.now += 300e-6

    result = steady_state(call, lambda _: None, {"budget": 2.0, "warmup": 0.0}, clock=clock)
    assert result["block_size"] == 34  # ceil(2 s / 200 samples / 0.3 ms)
    assert result["stopped_by"] == "precision"
    assert 0.5 <= result["steady_s"] < 0.5 + 2 * 34 * 300e-6
    # the window is an option: 0 restores stopping at the first precise samples
    clock = FakeClock()
    quick = steady_state(
        call, lambda _: None, {"budget": 2.0, "warmup": 0.0, "min_window": 0.0}, clock=clock
    )
    assert len(quick["block_times"]) == 5


def test_timer_stops_on_budget_when_noisy():
    clock = FakeClock()
    rng = random.Random(3)

    def call():
        clock.now += rng.uniform(1e-3, 3e-3)
        return None

    result = steady_state(
        call, lambda _: None, {"budget": 0.2, "warmup": 0.0, "precision": 0.001}, clock=clock
    )
    assert result["stopped_by"] == "budget"
    assert len(result["block_times"]) >= 5
    assert result["stats"]["noisy"]


def test_warmup_is_a_tenth_of_the_budget_at_most_0_2_s():
    for budget, expected in ((0.5, 0.05), (2.0, 0.2), (10.0, 0.2)):
        clock = FakeClock()

        def call(clock=clock):
            clock.now += 1e-3

        result = steady_state(call, lambda _: None, {"budget": budget}, clock=clock)
        # warm-up stops at the first call that ends past the target
        assert expected <= result["warmup_s"] < expected + 2e-3, (budget, result["warmup_s"])


def test_slow_calls_still_get_min_samples():
    clock = FakeClock()

    def call():
        clock.now += 2.0
        return None

    result = steady_state(
        call, lambda _: None, {"budget": 1.0, "warmup": 0.0, "warmup_calls": 1}, clock=clock
    )
    assert result["block_size"] == 1
    assert len(result["block_times"]) == 5


def test_mann_whitney_is_exact_for_small_samples():
    # 3 against 3, fully separated: 2 of the C(6,3) = 20 orderings are as extreme, p = 0.1
    u, p = stats.mann_whitney_u([1, 2, 3], [4, 5, 6])
    assert u == 0 and p == pytest.approx(0.1)
    rng = random.Random(5)
    a = [rng.gauss(1.0, 0.1) for _ in range(30)]
    b = [rng.gauss(1.3, 0.1) for _ in range(25)]
    assert stats.mann_whitney_u(a, b)[1] < 1e-6
    assert stats.mann_whitney_u([], [1.0])[1] == 1.0


def test_median_ci_ranks_are_the_exact_binomial_ones():
    # n = 41: the textbook 95% interval is the 14th to the 28th order statistic
    values = list(range(41))
    assert stats.median_ci(values) == (13.0, 27.0)
    assert stats.median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few samples: the range
