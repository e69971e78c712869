"""The results store, `sharedconv run`, resume after kill -9, compare, recommend."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sharedconv.backends.problem import parse_problem
from sharedconv.backends.registry import load_backend
from sharedconv.harness import allocators, memory
from sharedconv.harness.cli import cli
from sharedconv.harness.store import RunWriter, find_runs, read_cases, read_run

FAST = ["--budget", "0.05", "--precision", "0.5"]


def test_damaged_and_foreign_lines_are_skipped_with_a_warning(tmp_path):
    path = tmp_path / "cases.jsonl"
    good = {
        "case": "a",
        "backend": "numpy",
        "strategy": "oracle64",
        "problem": "B=1",
        "mode": "forward",
        "status": "pass",
    }
    path.write_text(
        json.dumps(good)
        + "\n"
        + "{not json\n"
        + json.dumps({"hello": 1})
        + "\n"
        + json.dumps({**good, "case": "b"})
        + "\n"
        + '{"case": "c", "trunc'
    )
    records, warnings = read_cases(path)
    assert [r.case for r in records] == ["a", "b"]
    assert len(warnings) == 3
    assert "damaged line" in warnings[0] and "not a sharedconv case record" in warnings[1]


def test_find_runs_skips_foreign_folders(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hi")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{")
    writer = RunWriter.create(tmp_path, "r1", {"suite": "smoke"})
    writer.finish()
    runs, skipped = find_runs([tmp_path])
    assert [r.run_id for r in runs] == ["r1"]
    assert any("junk" in s and "not a sharedconv run" in s for s in skipped)
    assert any("broken" in s and "damaged" in s for s in skipped)


def test_run_writes_run_and_cases_and_prints_rankings(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--backends",
            "numpy",
            "--shape",
            "B=2,C=3,H=16,N=4,K=3",
            "--mode",
            "both",
            "--results",
            str(tmp_path),
            "--run-id",
            "t1",
            *FAST,
        ],
    )
    assert result.exit_code == 0, result.output
    run = read_run(tmp_path / "t1")
    assert run.meta.status == "complete"
    assert run.meta.roofline.peak_flops > 1e8
    assert run.meta.machine.cpu_model
    assert run.meta.machine.vector_isa  # every x86-64 or arm64 Linux machine has one
    assert run.meta.workers["numpy"]["versions"]["numpy"]
    assert len(run.cases) == 4
    case = next(c for c in run.cases if c.strategy == "oracle64" and c.mode == "train")
    assert case.status == "pass" and case.timed
    timing = case.timing
    assert len(timing.block_times) >= 5 and timing.stats.median > 0
    assert set(timing.stats.to_dict()) >= {
        "median",
        "iqr",
        "min",
        "mean",
        "std",
        "ci_low",
        "ci_high",
        "noisy",
        "n",
    }
    assert case.memory.method.startswith("VmHWM")
    assert case.first_call_s > 0 and case.setup_s >= 0
    assert "Use numpy/" in result.output
    # the allocator the workers ran with is part of the run, of every case, and of its faults
    assert run.meta.malloc == [allocators.default()]
    assert all(c.malloc == allocators.default() for c in run.cases)
    assert case.timing.faults.calls >= 1
    probe = run.meta.workers["numpy"]["allocators"][allocators.default()]
    assert probe["reuses_freed"], probe  # the default reuses freed memory


def test_the_vector_isa_tells_apart_vms_of_one_model_name():
    from sharedconv.harness.machine import vector_isa

    zen3 = "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
    zen4 = zen3.replace("fma", "fma avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni")
    assert vector_isa(zen3) == "AVX2+FMA"
    assert vector_isa(zen4) == "AVX-512 (bf16, vnni)"
    assert vector_isa("flags : fpu sse2 avx512f\n") == "SSE2"  # F alone is not the build's set
    assert vector_isa("Features : fp asimd evtstrm\n") == "NEON"
    assert vector_isa("processor : 0\n") is None


def test_a_record_of_another_vector_isa_is_another_machine():
    from sharedconv.harness.machine import cpu_model, machine_key, same_cpu, this_machine
    from sharedconv.harness.records import Machine

    here = Machine(hostname=this_machine()[0], cpu_model=cpu_model(), logical_cores=os.cpu_count())
    mine = dataclasses.replace(here, vector_isa=this_machine()[2])
    other = dataclasses.replace(
        here, vector_isa="SSE2" if mine.vector_isa != "SSE2" else "AVX2+FMA"
    )
    assert machine_key(mine) == this_machine() and same_cpu(mine)
    assert machine_key(other) != this_machine() and not same_cpu(other)
    assert same_cpu(here)  # a record from before the ISA was recorded: the model decides


def test_system_malloc_leaves_the_environment_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    args = ["run", "-b", "numpy", "-s", "oracle32", "--shape", "B=1,C=2,H=8,N=2,K=3"]
    result = CliRunner().invoke(
        cli,
        [*args, "--mode", "forward", "--malloc", "system", "--results", str(tmp_path)]
        + ["--run-id", "sys", *FAST],
    )
    assert result.exit_code == 0, result.output
    meta = read_run(tmp_path / "sys").meta
    assert meta.malloc == ["system"]
    probe = meta.workers["numpy"]["facts"]["allocator"]
    assert probe["environment"] == {"MALLOC_ARENA_MAX": "2"}
    assert probe["serving"] == "glibc"


def test_memory_of_one_call_sees_a_block_the_heap_could_have_reused():
    """After warm-up a freed 16 MiB block would be served again from glibc's heap; the
    measurement still has to see it (malloc_trim before the call)."""
    import numpy as np
    from sharedconv.harness.timing import measure_memory

    def call():
        return np.ones(4 * 2**20, dtype=np.float32)  # 16 MiB, written

    for _ in range(3):
        call()
    result = measure_memory(call, lambda _: None)
    assert result["peak_bytes"] >= 15 * 2**20, result
    assert "malloc_trim" in result["method"]


def test_mismatch_is_not_timed_unless_asked(tmp_path, test_plugins):
    args = [
        "run",
        "--backends",
        "faulty",
        "--strategies",
        "wrong,ok",
        "--shape",
        "B=1,C=2,H=8,N=2,K=3",
        "--mode",
        "forward",
        "--results",
        str(tmp_path),
        *FAST,
    ]
    result = CliRunner().invoke(cli, [*args, "--run-id", "plain"])
    assert result.exit_code == 1
    cases = {c.strategy: c for c in read_run(tmp_path / "plain").cases}
    assert cases["wrong"].status == "mismatch" and cases["wrong"].timing is None
    assert cases["ok"].median > 0
    CliRunner().invoke(cli, [*args, "--run-id", "anyway", "--time-anyway"])
    cases = {c.strategy: c for c in read_run(tmp_path / "anyway").cases}
    assert cases["wrong"].status == "mismatch" and cases["wrong"].median > 0


def test_resume_after_kill_9_loses_at_most_the_case_in_flight(tmp_path, test_plugins):
    cmd = [
        sys.executable, "-m", "sharedconv.harness.cli", "run", "--backends", "faulty", "--strategies", "slow",
        "--shape", "B=1,C=1..12,H=8,N=2,K=3", "--mode", "forward", "--results", str(tmp_path), "--run-id", "killme",
        "--budget", "0.3", "--precision", "0.0001", "--threads", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ.copy(),
    )
    cases = tmp_path / "killme" / "cases.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if cases.exists() and len(cases.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with open(cases, "a") as f:
        f.write('{"case": "half-written')  # what a kill in the middle of a write leaves
    before, _ = read_cases(cases)
    assert 3 <= len(before) < 12
    # never marked complete, and its killed writer holds no lock: readers say interrupted
    assert read_run(tmp_path / "killme").meta.status == "interrupted"

    result = CliRunner().invoke(cli, ["run", "--resume", "killme", "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    after = read_run(tmp_path / "killme")
    assert not after.warnings, after.warnings
    idents = [c.case for c in after.cases]
    assert len(idents) == 12 and len(set(idents)) == 12
    assert after.meta.status == "complete" and after.meta.resumed


def test_memory_estimate_refuses_what_does_not_fit(monkeypatch):
    torch_fold = load_backend("torch").strategy("fold")
    huge = parse_problem("B=64,C=128,H=512,N=64,K=5")
    small = parse_problem("B=2,C=3,H=32,N=4,K=3")
    monkeypatch.setattr(memory, "available_bytes", lambda: 16 * 2**30)
    reason = memory.refuse_if_too_big(huge, torch_fold, "train")
    assert reason and "GiB" in reason and "not run" in reason
    assert memory.refuse_if_too_big(small, torch_fold, "train") is None
    patches = load_backend("torch").strategy("patches_einsum")
    assert memory.estimate_bytes(small, patches, "forward") > memory.estimate_bytes(
        small, torch_fold, "forward"
    )


def test_a_sampled_oracle_is_counted_as_the_sample_the_worker_loads(monkeypatch):
    """The seed's 100-channel problem checks 48 of its 1,000 images against the oracle, so the
    worker loads their y and dx, not a 6 GB float64 copy of every output: its train step fits
    the 23 GiB this machine has (it was refused, needing 19.2 GiB, for that copy alone)."""
    from sharedconv.harness import execute

    seed_big = parse_problem("B=10,C=100,H=200,W=200,N=20,K=5")
    assert execute.checked_images(seed_big) == execute.SAMPLE_IMAGES
    assert execute.checked_images(parse_problem("B=4,C=16,H=64,W=64,N=16,K=5")) is None
    # numpy's oracle32: the strategy every install has (the estimate reads only its tags)
    strategy = load_backend("numpy").strategy("oracle32")
    whole = memory.estimate_bytes(seed_big, strategy, "train")
    sampled = memory.estimate_bytes(seed_big, strategy, "train", checked_images=48)
    y, x = math.prod(seed_big.y_shape), math.prod(seed_big.x_shape)
    assert whole - sampled == pytest.approx((y + x) * 2 * 4 * (1 - 48 / 1000), rel=1e-6)
    have = 23 * 2**30
    assert memory.refuse_if_too_big(seed_big, strategy, "train", have=have)
    assert (
        memory.refuse_if_too_big(seed_big, strategy, "train", have=have, checked_images=48) is None
    )

    monkeypatch.setattr(execute, "available_bytes", lambda: have)
    plan = execute.Plan(
        backends=["numpy"], problems=[seed_big], modes=["train"], strategies=["oracle32"]
    )
    ((key, decided, _),) = list(execute.plan_cases(plan))
    assert key.mode == "train" and decided is None  # planned for a worker, not skipped


def test_compare_flags_regressions(tmp_path):
    def write(run_id, median):
        w = RunWriter.create(tmp_path, run_id, {"suite": "x"})
        import random

        rng = random.Random(run_id)
        samples = [median * rng.uniform(0.98, 1.02) for _ in range(30)]
        for strategy, scale in (("fast", 1.0), ("steady", 1.0)):
            s = [v * (scale if strategy == "fast" else 1 / median) for v in samples]
            w.append(
                {
                    "case": f"numpy/{strategy}/P/forward/cpu", "backend": "numpy", "strategy": strategy, "problem": "B=1,C=1,H=8,W=8,N=1,K=1",
                    "mode": "forward", "status": "pass", "timing": {"block_times": s, "block_size": 1, "stats": {"median": sorted(s)[15]}},
                }
            )  # fmt: skip
        w.finish()

    write("a", 1.0)
    write("b", 1.5)
    result = CliRunner().invoke(cli, ["compare", "a", "b", "--results", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "regression" in result.output and "1 regressions" in result.output
    result = CliRunner().invoke(cli, ["compare", "b", "a", "--results", str(tmp_path)])
    assert result.exit_code == 0 and "1 improvements" in result.output
    bad = CliRunner().invoke(cli, ["compare", "a", "nope", "--results", str(tmp_path)])
    assert bad.exit_code == 2 and "no run.json" in bad.output


def test_recommend_names_the_nearest_measured_problem(tmp_path):
    CliRunner().invoke(
        cli,
        [
            "run",
            "--backends",
            "numpy",
            "--shape",
            "B=2,C=3,H=16,N=4,K=3",
            "--mode",
            "forward",
            "--results",
            str(tmp_path),
            *FAST,
        ],
    )
    result = CliRunner().invoke(
        cli, ["recommend", "--shape", "B=2,C=4,H=16,N=4,K=3", "--results", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert (
        "was not measured; the nearest measured problem is B=2,C=3,H=16,W=16,N=4,K=3"
        in result.output
    )
    assert "Use numpy/" in result.output
    exact = CliRunner().invoke(
        cli, ["recommend", "--shape", "B=2,C=3,H=16,N=4,K=3", "--results", str(tmp_path)]
    )
    assert "was not measured" not in exact.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--budget", "0"], "'0' is outside (0, 86400]"),
        (["run", "--resume", "nope", "--results", "/tmp/definitely-not-here-sc"], "no run 'nope'"),
        (["recommend", "--shape", "C=1..4,H=8,N=1,K=1"], "give one problem"),
        (["recommend"], "Missing option '--shape'"),
        (["compare", "x"], "Missing argument 'RUN_B'"),
    ],
)
def test_run_family_bad_input(args, needle):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert needle in result.output


def test_runs_lists_runs(tmp_path):
    RunWriter.create(tmp_path, "r-listed", {"suite": "smoke"}).finish()
    result = CliRunner().invoke(cli, ["runs", "--results", str(tmp_path)])
    assert "r-listed" in result.output and "[complete]" in result.output
    assert Path(tmp_path / "r-listed" / "run.json").exists()


def test_a_peak_below_the_outputs_size_is_reported_unknown():
    from sharedconv.harness.records import CaseRecord, Memory
    from sharedconv.harness.summary import output_bytes, peak_bytes

    record = CaseRecord(
        params=parse_problem("B=10,C=3,H=200,W=200,N=20,K=5").to_dict(),
        mode="forward",
        memory=Memory(peak_bytes=16_000, method="VmHWM over one call"),
    )
    assert output_bytes(record) == 10 * 3 * 20 * 196 * 196 * 4
    assert peak_bytes(record) is None  # pooled allocator: RSS did not see the output
    record = record.replace(memory=Memory(peak_bytes=200 * 2**20, method="VmHWM over one call"))
    assert peak_bytes(record) == 200 * 2**20
    record = record.replace(
        memory=Memory(peak_bytes=1000, method="torch.cuda.max_memory_allocated")
    )
    assert peak_bytes(record) is None  # the rule holds for every method


def test_recommend_answers_per_device_from_the_fullest_run(tmp_path):
    """Stored answers come from the asked device only, full float32 unless --tf32, and from
    the run that timed the most strategies for the problem (not merely the newest)."""
    repo = Path(__file__).resolve().parent.parent
    template = next(
        r.to_dict()
        for r in read_run(repo / "results" / "reference-h100-tf32-off").cases
        if r.timing and r.mode == "forward"
    )

    def make(run_id, started, device, strategies, precision=None):
        meta = {"suite": "t", "device": device, "started": started, "roofline": {}}
        if precision:
            meta["precision"] = precision
        writer = RunWriter.create(tmp_path, run_id, meta)
        for i, s in enumerate(strategies):
            record = json.loads(json.dumps(template))
            record.update(backend="numpy", strategy=s, device=device, seed_option=None)
            record["case"] = f"numpy/{s}/{template['problem']}/forward/{device}"
            record["timing"]["stats"]["median"] = 1e-3 * (i + 1)
            if precision:
                record["precision"] = precision
            if precision == "TF32 on":  # what compare_outputs writes for a Plan(tf32=True)
                record["verify"]["precision"] = "tf32"
            writer.append(record)
        writer.finish()

    make("cpu-full", "2026-01-01", "cpu", ["a", "b"])
    make("cpu-newer", "2026-01-02", "cpu", ["c"])
    make("gpu-off", "2026-01-03", "cuda", ["g_off"], "TF32 off (full float32)")
    make("gpu-on", "2026-01-04", "cuda", ["g_on", "g_on2"], "TF32 on")

    def ask(*extra):
        result = CliRunner().invoke(
            cli,
            ["recommend", "--shape", template["problem"], "--results", str(tmp_path), *extra],
        )
        assert result.exit_code == 0, result.output
        return result.output

    cpu = ask()
    assert "From run cpu-full" in cpu and "Use numpy/a" in cpu and "g_o" not in cpu
    gpu = ask("--device", "gpu")
    assert "From run gpu-off" in gpu and "Use numpy/g_off" in gpu and "g_on" not in gpu
    tf32 = ask("--device", "cuda", "--tf32")
    assert "From run gpu-on" in tf32 and "Use numpy/g_on" in tf32
    none = CliRunner().invoke(
        cli,
        [
            "recommend",
            "--shape",
            template["problem"],
            "--results",
            str(tmp_path),
            "--mode",
            "train",
        ],
    )
    assert none.exit_code == 2 and "no stored train timings on cpu" in none.output


def _round(k, median, block=1, n=6, status="pass"):
    times = [median * block] * n
    return {
        "case": "numpy/x/p/forward/cpu",
        "round": k,
        "status": status,
        "wall_s": 1.0,
        "setup_s": 0.1 * (k + 1),
        "timing": {
            "block_size": block,
            "block_times": times,
            "stats": {"median": median},
            "overhead_fraction": 0.001,
            "steady_s": 0.5,
        }
        if status == "pass"
        else None,
    }


def test_merge_rounds_pools_samples_and_flags_unsteady_rounds():
    from sharedconv.harness.records import Timing
    from sharedconv.harness.runner import merge_rounds

    steady = merge_rounds([_round(1, 1.02e-3, block=4), _round(0, 1.0e-3), _round(2, 1.01e-3)])
    t = steady["timing"]
    assert steady["rounds"] == 3 and steady["setup_s"] == 0.1  # round 0's setup
    assert len(Timing.from_dict(t).samples()) == 18 and t["stats"]["n"] == 18
    assert t["round_medians"] == [1.0e-3, 1.02e-3, 1.01e-3]
    assert abs(t["round_spread"] - 0.02) < 1e-9 and not t["unsteady"]
    assert t["stats"]["median"] == pytest.approx(1.01e-3)
    assert (t["stats"]["ci_low"], t["stats"]["ci_high"]) == (1.0e-3, 1.02e-3)
    # one vote per round: a noisy round with many samples does not outvote two steady ones
    voted = merge_rounds([_round(0, 5e-3, n=200), _round(1, 3e-3, n=5), _round(2, 3.1e-3, n=5)])
    assert voted["timing"]["stats"]["median"] == pytest.approx(3.1e-3)
    assert voted["timing"]["stats"]["n"] == 210
    shaky = merge_rounds([_round(0, 1.0e-3), _round(1, 1.3e-3)])
    assert shaky["timing"]["unsteady"] and shaky["timing"]["stats"]["noisy"]
    # a later round that crashed is the case's outcome; one the time budget skipped is not
    crashed = merge_rounds(
        [_round(0, 1e-3), {**_round(1, 0, status="crashed"), "reason": "SIGSEGV"}]
    )
    assert crashed["status"] == "crashed" and crashed["failed_round"] == 1
    late = merge_rounds([_round(0, 1e-3), {**_round(1, 0, status="skipped"), "reason": "budget"}])
    assert late["status"] == "pass" and late["rounds"] == 1


def test_run_in_rounds_and_resume_from_a_partial_round_log(tmp_path):
    args = [
        "run", "--backends", "numpy", "--strategies", "oracle32,oracle64", "--shape", "B=1,C=2,H=12,N=2,K=3",
        "--mode", "forward", "--results", str(tmp_path), "--run-id", "r", "--rounds", "3", *FAST,
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    run = read_run(tmp_path / "r")
    assert run.meta.rounds == 3 and len(run.cases) == 2
    for case in run.cases:
        assert case.rounds == 3 and len(case.timing.round_medians) == 3
    log = (tmp_path / "r" / "rounds.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["round"] for line in log) == [0, 0, 1, 1, 2, 2]

    # as a kill during round 2 leaves it: rounds 0 and 1 logged, no merged record yet
    kept = [line for line in log if json.loads(line)["round"] < 2]
    (tmp_path / "r" / "rounds.jsonl").write_text("\n".join(kept) + '\n{"case": "half')
    (tmp_path / "r" / "cases.jsonl").write_text("")
    resumed = CliRunner().invoke(cli, ["run", "--resume", "r", "--results", str(tmp_path)])
    assert resumed.exit_code == 0, resumed.output
    again = read_run(tmp_path / "r")
    assert len(again.cases) == 2
    before = {
        json.loads(line)["case"]: json.loads(line)
        for line in kept
        if json.loads(line)["round"] == 0
    }
    for case in again.cases:
        assert case.rounds == 3  # round 0 not rerun:
        assert case.timing.rounds[0].to_dict() == before[case.case]["timing"]

    # a kill after a case's last round but before its merged record: resume merges, reruns nothing
    full = (tmp_path / "r" / "rounds.jsonl").read_text()
    (tmp_path / "r" / "cases.jsonl").write_text("")
    merged = CliRunner().invoke(cli, ["run", "--resume", "r", "--results", str(tmp_path)])
    assert merged.exit_code == 0, merged.output
    assert (tmp_path / "r" / "rounds.jsonl").read_text() == full
    assert [c.rounds for c in read_run(tmp_path / "r").cases] == [3, 3]


def test_isolate_gives_every_case_a_worker_of_its_own(tmp_path):
    args = [
        "run", "--backends", "numpy", "--strategies", "oracle32,oracle64",
        "--shape", "B=1,C=2,H=12,N=2,K=3", "--shape", "B=1,C=3,H=12,N=2,K=3",
        "--mode", "forward", "--results", str(tmp_path), *FAST,
    ]  # fmt: skip
    plain = CliRunner().invoke(cli, [*args, "--run-id", "plain"])
    assert plain.exit_code == 0, plain.output
    cases = read_run(tmp_path / "plain").cases
    # one worker for the backend: only its first case met a fresh one
    assert [c.fresh_worker for c in cases] == [True, False, False, False]

    isolated = CliRunner().invoke(cli, [*args, "--run-id", "iso", "--isolate"])
    assert isolated.exit_code == 0, isolated.output
    run = read_run(tmp_path / "iso")
    assert run.meta.isolate is True and len(run.cases) == 4
    for case in run.cases:
        assert case.timed and case.fresh_worker is True
        methods = {m.source for m in case.memory.methods}
        assert "first_call" in methods

    refused = CliRunner().invoke(cli, [*args, "--run-id", "both", "--isolate", "--interleave"])
    assert refused.exit_code == 2 and "choose one" in refused.output
