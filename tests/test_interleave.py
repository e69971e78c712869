"""Interleaved timing with a fake clock: drift cancels in paired ratios, intervals cover."""

from __future__ import annotations

import math
import random

import pytest
from sharedconv.harness import interleave
from sharedconv.harness.records import CaseRecord, RunMeta
from sharedconv.harness.stats import paired_ratio

TRUE = {"a": 1.0e-3, "b": 1.3e-3, "c": 2.0e-3}


class World:
    """Calls whose cost is their true time x the machine's mood x noise, on a fake clock.

    The mood is 1 except during a slow spell, [spell_start, spell_end) seconds, when every call
    takes ``spell`` times longer: a neighbour's job on a shared machine."""

    def __init__(self, spell=(0.5, 1.0), factor=1.6, noise=0.03, seed=0):
        self.now = 0.0
        self.spell, self.factor, self.noise = spell, factor, noise
        self.rng = random.Random(seed)

    def clock(self) -> float:
        return self.now

    def turn(self, name: str, calls: int = 20) -> float:
        mood = self.factor if self.spell[0] <= self.now < self.spell[1] else 1.0
        per_call = TRUE[name] * mood * math.exp(self.rng.gauss(0, self.noise))
        self.now += per_call * calls
        return per_call


def sequential(world: World, names, budget: float) -> dict[str, list[float]]:
    """Today's method: each candidate's samples, one candidate after the other."""
    out = {}
    for name in names:
        end = world.now + budget / len(names)
        out[name] = []
        while world.now < end:
            out[name].append(world.turn(name))
    return out


def median(values):
    s = sorted(values)
    return s[len(s) // 2]


def test_a_slow_spell_biases_sequential_ratios_and_not_interleaved_ones():
    world = World(spell=(0.5, 1.0))  # the second half of a 1 s measurement is slow
    seq = sequential(world, ["a", "b"], 1.0)
    seq_ratio = median(seq["b"]) / median(seq["a"])
    assert seq_ratio > 1.3 * 1.4  # b met the slow spell, a did not

    estimates = []
    for seed in range(10):
        world = World(spell=(0.5, 1.0), seed=seed)
        times = interleave.interleave(
            ["a", "b"], world.turn, 1.0, precision=0.0, clock=world.clock, seed=seed
        )
        assert len(times["a"]) == len(times["b"])  # aligned by cycle
        estimates.append(paired_ratio(times["b"], times["a"])[0])
    assert median(estimates) == pytest.approx(1.3, rel=0.015)  # unbiased
    assert max(estimates) < 1.3 * 1.06  # each run within its noise, never near the spell's 1.6x


def test_the_interval_covers_the_true_ratio_at_about_its_nominal_rate():
    hits, trials = 0, 200
    for seed in range(trials):
        rng = random.Random(seed)
        start = rng.uniform(0, 0.2)
        world = World(
            spell=(start, start + rng.uniform(0, 0.1)), factor=rng.uniform(1, 2), seed=seed
        )
        times = interleave.interleave(
            ["a", "b"], world.turn, budget_s=1e9, precision=0.0, clock=world.clock, seed=seed,
            min_cycles=20, max_cycles=20,
        )  # fmt: skip
        _, low, high = paired_ratio(times["b"], times["a"], seed=seed)
        hits += low <= 1.3 <= high
    assert 0.88 <= hits / trials <= 0.99, hits / trials


def test_it_stops_when_every_ratio_is_precise_or_the_budget_is_spent():
    world = World(noise=0.002, spell=(0, 0))
    times = interleave.interleave(
        ["a", "b", "c"], world.turn, 10.0, precision=0.01, clock=world.clock
    )
    assert len(times["a"]) == interleave.MIN_CYCLES  # precise at once: the minimum
    world = World(noise=0.5, spell=(0, 0))
    times = interleave.interleave(["a", "b"], world.turn, 0.05, precision=0.001, clock=world.clock)
    assert world.now >= 0.05 and len(times["a"]) < interleave.MAX_CYCLES


def test_each_cycle_is_in_a_new_random_order():
    order = []
    interleave.interleave(
        ["a", "b", "c"], lambda n: order.append(n) or TRUE[n], 1e9, precision=0.0,
        clock=lambda: 0.0, min_cycles=30, max_cycles=30,
    )  # fmt: skip
    cycles = {tuple(order[i : i + 3]) for i in range(0, 90, 3)}
    assert all(sorted(c) == ["a", "b", "c"] for c in cycles)
    assert len(cycles) >= 4  # not one fixed order


def _record(strategy: str, seconds: float, problem: str = "p", **timing) -> CaseRecord:
    samples = [seconds * f for f in (0.98, 0.99, 1.0, 1.01, 1.02, 1.0, 0.99, 1.01)]
    return CaseRecord.from_dict({
        "case": f"torch/{strategy}/{problem}", "backend": "torch", "strategy": strategy,
        "problem": problem, "mode": "forward", "device": "cpu", "malloc": "jemalloc",
        "status": "pass",
        "timing": timing or {"block_times": samples, "block_size": 1, "stats": {"median": seconds}},
    })  # fmt: skip


def test_compare_normalized_ignores_a_machine_slower_as_a_whole():
    from pathlib import Path

    from sharedconv.harness.compare import compare_runs
    from sharedconv.harness.store import Run

    day1 = Run("a", Path("a"), RunMeta(run_id="a"), [_record("fold", 1.0), _record("conv3d", 2.0)])
    # day 2: the whole machine is 30% slower, and conv3d got 20% slower on top of that
    day2 = Run(
        "b",
        Path("b"),
        RunMeta(run_id="b"),
        [_record("fold", 1.3), _record("conv3d", 2.0 * 1.3 * 1.2)],
    )
    plain = {r["case"]: r for r in compare_runs(day1, day2)}
    assert plain["torch/fold/p"]["verdict"] == "regression"  # the machine's mood
    rows = compare_runs(day1, day2, normalize="torch/fold")
    assert [r["case"] for r in rows] == ["torch/conv3d/p"]  # the reference itself is left out
    assert rows[0]["ratio"] == pytest.approx(1.2)
    assert rows[0]["verdict"] == "regression"


def test_the_recommendation_quotes_the_paired_interval():
    from sharedconv.harness.summary import rank, recommendation

    records = []
    for name, base in (("fold", 1.0e-3), ("conv3d", 1.02e-3)):
        cycles = [base * (1.5 if i % 4 == 0 else 1.0) * (1 + 0.01 * (i % 3)) for i in range(12)]
        timing = {
            "block_times": cycles, "block_size": 1, "stats": {"median": sorted(cycles)[6], "iqr": 0.0},
            "interleaved": {"group": "g", "cycles": 12},
        }  # fmt: skip
        records.append(_record(name, base, **timing))
    text = recommendation(rank(records))
    # the same slow cycles hit both: every cycle's ratio is 1.02, though the medians are noisy
    assert (
        "1.02x faster than the runner-up torch/conv3d (95% CI 1.02-1.02, timed interleaved)" in text
    )


def test_run_interleave_times_a_problems_candidates_together_across_frameworks(tmp_path):
    import json

    from click.testing import CliRunner
    from sharedconv.harness.cli import cli

    args = [
        "run", "-b", "numpy,torch", "-s", "oracle32,oracle64,fold,conv3d", "--shape",
        "B=2,C=4,H=32,W=32,N=8,K=3", "--mode", "both", "--budget", "0.2", "--results",
        str(tmp_path), "--run-id", "i", "--interleave",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in (tmp_path / "i" / "cases.jsonl").read_text().splitlines()]
    for mode in ("forward", "train"):
        timed = [r for r in records if r["mode"] == mode and r.get("timed")]
        assert {r["backend"] for r in timed} == {"numpy", "torch"}, records
        groups = {r["timing"]["interleaved"]["group"] for r in timed}
        cycles = {len(r["timing"]["block_times"]) for r in timed}
        assert len(groups) == 1 and len(cycles) == 1 and cycles.pop() >= interleave.MIN_CYCLES
        baseline = {r["paired"]["baseline"] for r in timed}
        assert len(baseline) == 1
        for r in timed:
            assert r["timing"]["stopped_by"] == "interleaved"
            assert r["paired"]["low"] <= r["paired"]["ratio"] <= r["paired"]["high"]
            # the parent waited for each turn's process to go quiet, and says how long
            settle = r["timing"]["interleaved"]["settle"]
            assert 0 <= settle["median_s"] <= settle["max_s"] <= interleave.SETTLE_LIMIT_S + 0.01
            # and which turn came before each of its own
            after = r["timing"]["interleaved"]["after"]
            assert len(after) == len(r["timing"]["block_times"])
            assert set(after) - {None} <= {f"{t['backend']}/{t['strategy']}" for t in timed}
            assert r["memory"]["peak_bytes"] or r["memory"]["unknown_reason"]
            if f"{r['backend']}/{r['strategy']}" in baseline:
                assert r["paired"]["ratio"] == pytest.approx(1.0)
        # one turn of the group came first: only its candidate has nothing before it
        firsts = [r for r in timed if r["timing"]["interleaved"]["after"][0] is None]
        assert len(firsts) == 1
        assert all(None not in r["timing"]["interleaved"]["after"][1:] for r in timed)
    assert json.loads((tmp_path / "i" / "run.json").read_text())["interleave"] is True


class _Worker:
    def __init__(self, pid: int | None):
        self.pid = pid

    def alive(self) -> bool:
        return self.pid is not None


def test_candidates_of_a_restarted_worker_leave_and_the_others_stay():
    """A later case's timeout restarted JAX's worker: the calls its process before held are
    gone, so those candidates are left out with the reason, not every candidate of the problem
    (a turn asked of them failed with a KeyError that stopped them all)."""
    torch, jax = _Worker(11), _Worker(20)
    held = {"torch/fold": (torch, 4, 1, 11), "jax/lax_map": (jax, 2, 1, 12)}
    records = [{"case": "torch/fold"}, {"case": "jax/lax_map"}]
    kept = interleave.still_held(held, records)
    assert list(kept) == ["torch/fold"]
    assert "restarted" in records[1]["timing"]["interleaved_error"]
    assert "timing" not in records[0]
    dead = {"jax/lax_map": (_Worker(None), 2, 1, 12)}
    assert interleave.still_held(dead, [{"case": "jax/lax_map"}]) == {}


class FakeThreads:
    """A process whose threads run for the first ``busy`` polls (an OpenMP pool spinning after
    its turn), on a fake clock that each poll's sleep advances."""

    def __init__(self, busy: int | None):
        self.busy, self.polls, self.now = busy, 0, 0.0

    def running(self, pid: int) -> int | None:
        self.polls += 1
        if self.busy is None:
            return None
        return 2 if self.polls <= self.busy else 0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _settle(threads: FakeThreads, pid: int | None = 7):
    return interleave.settle(
        pid, running=threads.running, clock=lambda: threads.now, sleep=threads.sleep
    )


def test_the_next_turn_waits_until_the_last_turn_s_process_stops_spinning():
    threads = FakeThreads(busy=16)  # 8 ms of polls at 0.5 ms: libgomp after a parallel region
    waited, quiet = _settle(threads)
    assert quiet is True
    # it saw QUIET_POLLS quiet polls in a row after the last busy one, and no more
    assert threads.polls == 16 + interleave.QUIET_POLLS
    assert waited == pytest.approx((16 + interleave.QUIET_POLLS - 1) * interleave.SETTLE_POLL_S)


def test_a_process_that_never_goes_quiet_is_waited_for_at_most_the_limit():
    threads = FakeThreads(busy=10**9)
    waited, quiet = _settle(threads)
    assert quiet is False
    assert interleave.SETTLE_LIMIT_S <= waited < interleave.SETTLE_LIMIT_S + 0.01
    # unreadable threads (another OS, a process gone) or no process: no wait at all
    assert _settle(FakeThreads(busy=None)) == (0.0, None)
    assert _settle(FakeThreads(busy=5), pid=None) == (0.0, None)


def test_the_parent_stops_waiting_for_a_process_that_spins_for_good():
    """GIVE_UP_AFTER turns not quiet within the limit, and that process's later turns cost no
    wait; the record says so. Another process's waits are kept per case."""
    calls = []

    def fake_settle(pid):
        calls.append(pid)
        return (interleave.SETTLE_LIMIT_S, False) if pid == 1 else (0.008, True)

    settler = interleave.Settler(fake_settle)
    for _ in range(interleave.GIVE_UP_AFTER + 4):
        settler.after("xla/spinner", 1)
        settler.after("torch/fold", 2)
    assert calls.count(1) == interleave.GIVE_UP_AFTER
    assert calls.count(2) == interleave.GIVE_UP_AFTER + 4
    summary = settler.summary({"xla/spinner": 1, "torch/fold": 2})
    assert summary["xla/spinner"]["gave_up"] is True
    assert summary["xla/spinner"]["not_quiet"] == interleave.GIVE_UP_AFTER
    assert summary["torch/fold"] == {
        "median_s": 0.008, "max_s": 0.008, "not_quiet": 0, "gave_up": False
    }  # fmt: skip
    assert settler.total_s == pytest.approx(
        interleave.GIVE_UP_AFTER * interleave.SETTLE_LIMIT_S
        + (interleave.GIVE_UP_AFTER + 4) * 0.008
    )


def test_running_threads_tells_a_spinning_process_from_a_sleeping_one():
    import subprocess
    import sys
    import time

    if interleave.running_threads(1) is None:
        pytest.skip("needs Linux /proc")
    spin = "import time\nt = time.time()\nwhile time.time() - t < 30: pass"
    procs = {
        "spinning": subprocess.Popen([sys.executable, "-c", spin]),
        "sleeping": subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]),
    }
    try:
        time.sleep(0.5)  # both past the interpreter's start
        seen = {k: [interleave.running_threads(p.pid) for _ in range(20)] for k, p in procs.items()}
        assert max(seen["spinning"]) >= 1, seen
        assert seen["sleeping"] == [0] * 20, seen
        assert interleave.settle(procs["sleeping"].pid)[1] is True
        waited, quiet = interleave.settle(procs["spinning"].pid, limit_s=0.05)
        assert quiet is False and waited >= 0.05
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
    assert interleave.running_threads(procs["spinning"].pid) is None  # gone


def _round(case: str, k: int, per_call: list[float], problem: str = "p") -> dict:
    """One round's record of a case timed interleaved: its per-cycle seconds in group k."""
    backend, strategy = case.split("/")
    return {
        "case": f"{case}/{problem}", "backend": backend, "strategy": strategy, "problem": problem,
        "mode": "forward", "device": "cpu", "malloc": "jemalloc", "status": "pass", "round": k,
        "timing": {
            "block_times": per_call, "block_size": 1, "stopped_by": "interleaved",
            "stats": {"median": median(per_call)},
            "interleaved": {"group": f"{problem}/forward/jemalloc/round {k}", "cycles": len(per_call)},
        },
        "paired": {"baseline": "whatever round 0 said", "ratio": 9.0, "low": 9.0, "high": 9.0},
    }  # fmt: skip


def test_rounds_of_interleaving_give_one_ratio_over_the_rounds_processes():
    """Each round's processes are fresh; in one of them torch ran 30% slower for its whole life
    (as in docs/harness-benchmark.md). Pairing within that round cannot cancel it; over three
    rounds the ratio is the rounds' geometric mean and its interval is over the rounds."""
    rng = random.Random(1)

    def cycles(seconds: float, n: int = 20) -> list[float]:
        return [seconds * math.exp(rng.gauss(0, 0.01)) for _ in range(n)]

    slow = {1: 1.3}  # round 1's torch process
    cases = [
        [_round("jax/fold", k, cycles(1.0e-3)) for k in range(3)],
        [_round("torch/fold", k, cycles(1.5e-3 * slow.get(k, 1.0))) for k in range(3)],
    ]
    merged = {m["strategy"] + m["backend"]: m for m in interleave.merge_interleaved_rounds(cases)}
    jax, torch = merged["foldjax"], merged["foldtorch"]
    assert jax["paired"] == {
        "baseline": "jax/fold",
        "ratio": 1.0,
        "low": 1.0,
        "high": 1.0,
        "rounds": 3,
    }
    p = torch["paired"]
    assert p["baseline"] == "jax/fold" and p["rounds"] == 3
    assert p["ratio"] == pytest.approx(1.5 * 1.3 ** (1 / 3), rel=0.01)  # the geometric mean
    # the interval is the rounds' (t, 2 degrees of freedom): it holds all three rounds' ratios
    assert p["low"] < 1.5 < 1.5 * 1.3 < p["high"]
    # the same through the records, as the recommendation reads them
    a, b = CaseRecord.from_dict(jax), CaseRecord.from_dict(torch)
    assert interleave.paired_between(a, b) == pytest.approx((p["ratio"], p["low"], p["high"]))
    assert torch["rounds"] == 3 and len(torch["timing"]["rounds"]) == 3


def test_the_baseline_over_rounds_is_the_fastest_paired_not_by_median_alone():
    """Round medians: torch/fold 1, 2, 10 ms, torch/conv3d 1.5, 1.9, 12 ms. conv3d has the
    smaller median of round medians (1.9 against 2), but fold is faster paired (the rounds'
    ratios 1.5, 0.95, 1.2: geometric mean 1.20): the baseline is fold, and no ratio is below
    1 (it was 0.84 for fold against conv3d)."""
    fold_ms, conv_ms = (1.0, 2.0, 10.0), (1.5, 1.9, 12.0)
    cases = [
        [_round("torch/fold", k, [fold_ms[k] * 1e-3] * 7) for k in range(3)],
        [_round("torch/conv3d", k, [conv_ms[k] * 1e-3] * 7) for k in range(3)],
    ]
    merged = {m["strategy"]: m for m in interleave.merge_interleaved_rounds(cases)}
    assert (
        merged["conv3d"]["timing"]["stats"]["median"] < merged["fold"]["timing"]["stats"]["median"]
    )
    assert merged["fold"]["paired"]["baseline"] == "torch/fold"
    assert merged["fold"]["paired"]["ratio"] == 1.0
    assert merged["conv3d"]["paired"]["ratio"] == pytest.approx((1.5 * 0.95 * 1.2) ** (1 / 3))


def test_over_rounds_needs_two_rounds_and_pairs_only_within_a_round():
    assert interleave.over_rounds([(1.2, 1.1, 1.3)]) is None
    ratio, low, high = interleave.over_rounds([(1.2, 1.1, 1.3), (1.2, 1.19, 1.21)])
    assert ratio == pytest.approx(1.2) and low == pytest.approx(1.2) and high == pytest.approx(1.2)
    # a case that missed a round (its worker crashed there) is paired over the rounds both had
    cases = [
        [_round("jax/fold", k, [1e-3] * 6) for k in range(3)],
        [_round("torch/fold", k, [2e-3] * 6) for k in (0, 2)],
    ]
    torch = [m for m in interleave.merge_interleaved_rounds(cases) if m["backend"] == "torch"][0]
    assert torch["paired"]["ratio"] == pytest.approx(2.0) and torch["paired"]["rounds"] == 2


def test_run_interleave_in_rounds_times_each_round_in_fresh_workers(tmp_path):
    import json

    from click.testing import CliRunner
    from sharedconv.harness.cli import cli

    args = [
        "run", "-b", "numpy,torch", "-s", "oracle32,fold", "--shape", "B=2,C=4,H=32,W=32,N=8,K=3",
        "--mode", "forward", "--budget", "0.2", "--results", str(tmp_path), "--run-id", "r",
        "--interleave", "--rounds", "2",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in (tmp_path / "r" / "cases.jsonl").read_text().splitlines()]
    timed = [r for r in records if r.get("timed")]
    assert {r["backend"] for r in timed} == {"numpy", "torch"}
    baseline = {r["paired"]["baseline"] for r in timed}
    assert len(baseline) == 1
    for r in timed:
        assert r["rounds"] == 2
        groups = [t["interleaved"]["group"] for t in r["timing"]["rounds"]]
        assert groups == [f"{r['problem']}/forward/{r['malloc']}/round {k}" for k in (0, 1)]
        assert r["paired"]["rounds"] == 2
        assert r["paired"]["low"] <= r["paired"]["ratio"] <= r["paired"]["high"]
    rounds = (tmp_path / "r" / "rounds.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["round"] for x in rounds) == [0, 0, 1, 1]
    assert "faster than the runner-up" in result.output or "indistinguishable" in result.output
