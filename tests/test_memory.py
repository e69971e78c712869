"""Memory: every method checked against the call's own outputs (docs/memory.md)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner
from sharedconv.backends.problem import parse_problem
from sharedconv.harness import timing
from sharedconv.harness.cli import cli
from sharedconv.harness.memory import output_bytes
from sharedconv.harness.records import CaseRecord, Memory
from sharedconv.harness.summary import (
    Row,
    memory_unknown_reason,
    parse_size,
    peak_bytes,
    recommendation,
)


class _Backend:
    """A backend whose framework accounting reports a given number."""

    def __init__(self, framework: int | None):
        self.framework = framework

    def device_memory(self, call):
        call()
        if self.framework is None:
            return None
        return {"peak_bytes": self.framework, "method": "framework counter"}

    def synchronize(self, out):
        return None


def _rss(value):
    return lambda call, sync: {"peak_bytes": value, "method": "VmHWM over one call"}


def test_the_first_method_at_or_above_the_floor_answers(monkeypatch):
    # the RSS saw a pool's reuse (below the outputs): rejected with the reason, the framework answers
    monkeypatch.setattr(timing, "measure_memory", _rss(10))
    got = timing.measure_peak(_Backend(5000), lambda: None, "cpu", floor=4000)
    assert got["peak_bytes"] == 5000 and got["method"] == "framework counter"
    rss = next(m for m in got["methods"] if m["source"] == "rss")
    assert "below the 4,000 bytes" in rss["rejected"]
    # on the CPU the RSS is preferred when it passes (it sees every allocator)
    monkeypatch.setattr(timing, "measure_memory", _rss(6000))
    got = timing.measure_peak(_Backend(5000), lambda: None, "cpu", floor=4000)
    assert got["peak_bytes"] == 6000
    # on a GPU only the framework's counters count
    got = timing.measure_peak(_Backend(5000), lambda: None, "cuda", floor=4000)
    assert got["peak_bytes"] == 5000 and [m["source"] for m in got["methods"]] == ["framework"]


def test_no_method_above_the_floor_is_unknown_with_the_reason(monkeypatch):
    monkeypatch.setattr(timing, "measure_memory", _rss(0))
    cold = {"peak_bytes": 9000, "method": "first call"}
    got = timing.measure_peak(_Backend(None), lambda: None, "cpu", floor=4000, first_call=cold)
    # the cold probe is kept for the cross-check but never answers (it includes compilation)
    assert got["peak_bytes"] is None
    assert "below the 4,000 bytes of the call's own outputs" in got["unknown_reason"]
    assert [m["source"] for m in got["methods"]] == ["rss", "first_call"]
    record = CaseRecord(memory=Memory.from_dict(got))
    assert "below" in memory_unknown_reason(record)
    # several methods below it: the reason says so once, with every reading
    got = timing.measure_peak(_Backend(1200), lambda: None, "cpu", floor=4000, first_call=cold)
    reason = got["unknown_reason"]
    assert reason.count("was not seen") == 1 and "rss 0, framework 1,200 bytes" in reason


def test_output_bytes_is_the_floor_of_forward_and_train():
    p = parse_problem("B=2,C=3,H=10,W=10,N=4,K=3")
    y = 2 * 3 * 4 * 8 * 8 * 4
    assert output_bytes(p, "forward") == y
    assert output_bytes(p, "train") == y + 2 * 3 * 10 * 10 * 4 + 4 * 3 * 3 * 4 + 4 * 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2GiB", 2 * 2**30),
        ("512 MiB", 512 * 2**20),
        ("1.5G", int(1.5 * 2**30)),
        ("800M", 800 * 2**20),
        ("1000", 1000),
        ("64kib", 64 * 1024),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "nanG", "2 XB", ""])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(ValueError, match="memory"):
        parse_size(text)


def _row(name, median, peak):
    record = CaseRecord(
        backend="b", strategy=name, memory=Memory(peak_bytes=peak, unknown_reason="pool")
    )
    return Row(
        record=record,
        median=median,
        iqr=0.0,
        noisy=False,
        peak_bytes=peak,
        gflops=None,
        gbps=None,
        roofline_fraction=None,
        vs_option={},
        faults=None,
    )


def test_recommendation_under_a_memory_limit():
    rows = [_row("fast", 1.0, 3 * 2**30), _row("unknown", 1.5, None), _row("light", 2.0, 2**30)]
    text = recommendation(rows, 2 * 2**30)
    assert text.startswith("Use b/light: 2.00 s")
    assert "faster but over the limit: b/fast (3.0 GiB)" in text
    assert "faster, peak unknown: b/unknown" in text
    assert recommendation(rows, 2**20).startswith("No strategy's measured peak fits in 1.0 MiB")
    assert "Within" not in recommendation(rows)


def test_a_real_run_obeys_the_floor_on_every_record(tmp_path):
    """TensorFlow's oneDNN pool serves a second strategy's warm call from memory the first one
    left: the RSS sees nothing there, and the allocator's statistics answer instead."""
    args = [
        "run",
        "-b",
        "tensorflow,torch",
        "-s",
        "fold,conv3d",
        "--shape",
        "B=2,C=4,H=64,W=64,N=8,K=3",
        "--mode",
        "forward",
        "--budget",
        "0.05",
        "--results",
        str(tmp_path),
        "--run-id",
        "m",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    records = [
        json.loads(line) for line in (tmp_path / "m" / "cases.jsonl").read_text().splitlines()
    ]
    timed = [r for r in records if r.get("timed")]
    assert len(timed) == 4, [(r["backend"], r["strategy"], r["status"]) for r in records]
    for r in timed:
        memory = r["memory"]
        floor = output_bytes(parse_problem(r["problem"]), r["mode"])
        if memory["peak_bytes"] is None:
            assert memory["unknown_reason"], r
        else:
            assert memory["peak_bytes"] >= floor, r
            assert peak_bytes(CaseRecord.from_dict(r)) == memory["peak_bytes"]
        for m in memory["methods"]:
            assert m.get("rejected") or m["peak_bytes"] is None or m["peak_bytes"] >= floor
    # jemalloc (the workers' default) counts the calling thread's allocations: for torch that is
    # the whole call, so the allocator's method is a second reading, independent of the RSS
    for r in timed:
        if r["backend"] == "torch":
            heap = next(m for m in r["memory"]["methods"] if m["source"] == "allocator")
            rss = next(m for m in r["memory"]["methods"] if m["source"] == "rss")
            assert not heap.get("rejected") and heap["peak_bytes"] >= 0.8 * rss["peak_bytes"], r
    tf = [r for r in timed if r["backend"] == "tensorflow"]
    assert all(r["memory"]["peak_bytes"] for r in tf), [r["memory"] for r in tf]
    assert all("pool's statistics plus the RSS" in r["memory"]["method"] for r in tf)
    assert all(
        "TensorFlow allocator statistics" in m["method"]
        for r in tf
        for m in r["memory"]["methods"]
        if m["source"] == "framework"
    )


class _Pool(_Backend):
    def device_memory(self, call):
        got = super().device_memory(call)
        return {**got, "adds_to_rss": True} if got else None


def test_a_pool_and_the_rss_add_up_for_a_pooled_framework(monkeypatch):
    # TensorFlow's oneDNN pool: its statistics miss the small malloc'd part, the RSS misses the pool
    monkeypatch.setattr(timing, "measure_memory", _rss(1500))
    got = timing.measure_peak(_Pool(3000), lambda: None, "cpu", floor=4000)
    assert got["peak_bytes"] == 4500 and "pool's statistics plus the RSS" in got["method"]
    assert [m["source"] for m in got["methods"]] == ["framework+rss", "rss", "framework"]


def test_under_tcmalloc_a_pool_adds_up_with_the_allocator_s_count(monkeypatch):
    # TensorFlow's small blocks come from tcmalloc's resident lists: the warm RSS reads 0, and
    # the pool plus tcmalloc's count of every thread's blocks is the call's peak
    from sharedconv.harness.allocators import JEMALLOC_PEAK, TCMALLOC_PEAK

    monkeypatch.setattr(timing, "measure_memory", _rss(0))
    heap = {"peak_bytes": 1500, "method": TCMALLOC_PEAK, "all_threads": True}
    monkeypatch.setattr(timing, "allocator_peak", lambda call, sync: heap)
    got = timing.measure_peak(_Pool(3000), lambda: None, "cpu", floor=4000)
    assert got["peak_bytes"] == 4500 and "count of every thread's blocks" in got["method"]
    sources = [m["source"] for m in got["methods"]]
    assert sources == ["framework+rss", "framework+allocator", "rss", "framework", "allocator"]
    # jemalloc's count is the calling thread's alone (TensorFlow's ops run in its own threads):
    # never added to the pool's
    heap = {"peak_bytes": 1500, "method": JEMALLOC_PEAK, "all_threads": False}
    got = timing.measure_peak(_Pool(3000), lambda: None, "cpu", floor=4000)
    assert got["peak_bytes"] is None
    assert "framework+allocator" not in [m["source"] for m in got["methods"]]


def test_keras_on_jax_has_xla_s_plan_beside_the_rss():
    """Keras on JAX runs a compiled executable: XLA's plan of it is a second method, as for JAX."""
    pytest.importorskip("keras")
    pytest.importorskip("jax")
    from sharedconv.harness.execute import Plan, execute

    records = []
    plan = Plan(
        backends=["keras-jax"],
        problems=[parse_problem("B=2,C=16,H=32,W=32,N=8,K=5")],
        modes=["forward", "train"],
        strategies=["fold"],
        threads=2,
        timing={"budget": 0.05, "precision": 0.5, "min_samples": 3},
    )
    execute(plan, records.append)
    assert [r["status"] for r in records] == ["pass", "pass"]
    for r in records:
        plan_reading = next(m for m in r["memory"]["methods"] if m["source"] == "framework")
        assert "XLA's memory plan" in plan_reading["method"], r["memory"]
        floor = output_bytes(parse_problem(r["problem"]), r["mode"])
        assert not plan_reading.get("rejected") and plan_reading["peak_bytes"] >= floor


def test_the_recommendation_says_the_winner_is_a_seed_option_and_puts_its_own_noise_first():
    """Not "option 1 (Conv3D (1,K,K)) 1.0x slower" of the strategy that is option 1, and a
    noisy note next to the winner's time, not after the other options' ratios."""
    best = _row("conv3d", 1.0, 2**20)
    best = dataclasses.replace(
        best,
        record=dataclasses.replace(best.record, seed_option=1),
        noisy=True,
        vs_option={1: 1.0, 2: 2.5},
    )
    text = recommendation([best, _row("fold", 1.2, 2**20)])
    assert "option 1 (Conv3D (1,K,K)) 1.0x slower" not in text
    assert "it is the seed's option 1 (Conv3D (1,K,K))" in text
    assert (
        "vs the seed's other options: option 2 (TimeDistributed / map over C) 2.5x slower" in text
    )
    assert text.index("(noisy") < text.index("seed's option 1")
    # a winner that is none of them: every option named, as before
    plain = dataclasses.replace(_row("shift_add", 1.0, 2**20), vs_option={1: 3.0})
    assert "vs the seed's options: option 1 (Conv3D (1,K,K)) 3.0x slower." in recommendation(
        [plain, _row("fold", 1.2, 2**20)]
    )


def test_the_native_pool_s_books_are_its_strategy_s_memory():
    """``direct_pooled``'s outputs come from resident memory its pool kept: the warm RSS reads
    about nothing, and the pool's books plus the RSS are the call's peak, its outputs; ``direct``
    (np.empty) is read by the RSS, as before."""
    from sharedconv.backends.registry import load_backend
    from sharedconv.harness.execute import Plan, execute

    missing = load_backend("native").available()
    if missing:
        pytest.skip(missing)
    problem = parse_problem("B=2,C=8,H=64,W=64,N=16,K=3")
    records = []
    plan = Plan(
        backends=["native"],
        problems=[problem],
        modes=["forward", "train"],
        strategies=["direct", "direct_pooled"],
        threads=2,
        timing={"budget": 0.05, "precision": 0.5, "min_samples": 3},
    )
    execute(plan, records.append)
    assert [r["status"] for r in records] == ["pass"] * 4, records
    for r in records:
        floor = output_bytes(problem, r["mode"])
        memory = r["memory"]
        assert floor <= memory["peak_bytes"] < 1.5 * floor, (r["strategy"], r["mode"], memory)
        if r["strategy"] == "direct_pooled":
            assert "pool's statistics plus the RSS" in memory["method"], memory
            books = next(m for m in memory["methods"] if m["source"] == "framework")
            assert books["peak_bytes"] == floor and "output pool" in books["method"]
        else:
            assert memory["method"] == next(
                m["method"] for m in memory["methods"] if m["source"] == "rss"
            )
