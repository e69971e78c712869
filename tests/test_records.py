"""The typed records: every stored record reads and writes back unchanged, wrong types are named
by their path, and what readers derive (worst error, throughput, samples) is computed once."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from sharedconv.backends.agreement import OutputError
from sharedconv.harness.records import (
    FAILED,
    CaseRecord,
    RecordError,
    Stats,
    Status,
    Timing,
    as_record,
)
from sharedconv.harness.store import RunWriter, case_line, read_run

REPO = Path(__file__).resolve().parent.parent


def _committed_lines():
    files = sorted(REPO.glob("results/*/cases.jsonl"))
    files += sorted(REPO.glob("docs/**/*.jsonl")) + sorted(REPO.glob("docs/**/*.jsonl.gz"))
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                record = json.loads(line)
                if isinstance(record, dict) and "case" in record:
                    yield f"{path.relative_to(REPO)}:{number}", record


def test_every_committed_record_round_trips_exactly():
    """What any version wrote reads into the types and writes back the same object: no field
    lost, none added, none changed (ints stay ints, absent fields stay absent)."""
    count = 0
    for where, data in _committed_lines():
        record = CaseRecord.from_dict(data)
        assert record.to_dict() == data, where
        count += 1
    assert count > 1000  # the reference runs and the benchmarks' raw records


def test_the_types_hold_what_readers_use():
    data = next(d for _, d in _committed_lines() if d.get("timing") and d.get("verify"))
    record = CaseRecord.from_dict(data)
    assert isinstance(record.timing, Timing) and isinstance(record.timing.stats, Stats)
    assert record.status is Status.PASS and record.median == data["timing"]["stats"]["median"]
    errors = data["verify"]["errors"]
    worst = max(OutputError(e["rel_fro"], e["max_norm"]).worst for e in errors.values())
    assert record.worst_error() == worst
    assert record.worst_ratio() == max(
        OutputError(e["rel_fro"], e["max_norm"]).worst / e["bound"] for e in errors.values()
    )
    assert record.gflops() == pytest.approx(data["flops"] / record.median / 1e9)
    block = data["timing"]["block_size"]
    assert record.timing.samples() == [t / block for t in data["timing"]["block_times"]]


def test_an_unknown_field_is_kept_and_written_back():
    data = {
        "case": "a/b/p/forward/cpu", "backend": "a", "strategy": "b", "problem": "p",
        "mode": "forward", "status": "pass", "from_a_newer_writer": {"x": 1},
        "timing": {"block_times": [1.0], "stats": {"median": 1.0}, "new_timing_field": 3},
    }  # fmt: skip
    record = CaseRecord.from_dict(data)
    assert record.extra == {"from_a_newer_writer": {"x": 1}}
    assert record.timing.extra == {"new_timing_field": 3}
    assert record.to_dict() == data
    changed = record.replace(reason="set since").to_dict()
    assert changed == {**data, "reason": "set since"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "fast"}, "status (unknown value 'fast')"),
        ({"status": 3}, "status (not text)"),
        ({"flops": "many"}, "flops (not a number)"),
        ({"threads": 1.5}, "threads (not an integer)"),
        ({"timing": {"stats": {"median": "1 ms"}}}, "timing.stats.median (not a number)"),
        ({"timing": {"block_times": [1.0, "x"]}}, "timing.block_times[1] (not a number)"),
        (
            {"verify": {"errors": {"y": {"rel_fro": None}}}},
            "verify.errors.y.rel_fro (not a number)",
        ),
        ({"memory": []}, "memory (not an object)"),
        ({"timing": {"stats": {"noisy": "yes"}}}, "timing.stats.noisy (not true or false)"),
    ],
)
def test_a_wrong_type_is_named_by_its_path(change, message):
    data = {
        "case": "a/b/p/forward/cpu", "backend": "a", "strategy": "b", "problem": "p",
        "mode": "forward", "status": "pass",
    }  # fmt: skip
    with pytest.raises(RecordError) as e:
        CaseRecord.from_dict({**data, **change})
    assert str(e.value) == message


def test_a_status_is_its_text():
    assert Status.MISMATCH in FAILED and Status.PASS == "pass" and f"{Status.PASS}" == "pass"
    assert {"pass": 1}[Status.PASS] == 1 and json.dumps(Status.CRASHED) == '"crashed"'


def test_the_writer_stores_what_readers_read_and_refuses_a_broken_record(tmp_path):
    """A record made in this process is written through the types: one whose field has the
    wrong type (a writer's bug) becomes the case's error, naming the field, so it is never a
    line every reader skips."""
    writer = RunWriter.create(tmp_path, "w", {"suite": "t"})
    good = {
        "case": "a/b/p/forward/cpu", "backend": "a", "strategy": "b", "problem": "p",
        "mode": "forward", "malloc": "jemalloc", "status": "pass",
        "timing": {"block_times": [2.0], "stats": {"median": 2.0}},
    }  # fmt: skip
    stored = writer.append(good)
    assert isinstance(stored, CaseRecord) and stored.median == 2.0
    bad = {**good, "case": "a/c/p/forward/cpu", "strategy": "c", "threads": "two"}
    assert writer.append(bad).status is Status.ERROR
    writer.finish()
    run = read_run(tmp_path / "w")
    assert not run.warnings
    by_case = {r.case: r for r in run.cases}
    assert by_case["a/b/p/forward/cpu"].to_dict() == {"case_schema": 1, **good}
    broken = by_case["a/c/p/forward/cpu"]
    assert broken.failed and "its field threads (not an integer)" in broken.reason
    line, record = case_line(as_record(good))
    assert json.loads(line)["case_schema"] == 1 and record.to_dict() == json.loads(line)


def test_every_committed_run_description_round_trips_exactly():
    from sharedconv.harness.records import Machine, Roofline, RunMeta

    paths = sorted(REPO.glob("results/*/run.json")) + sorted(REPO.glob("docs/**/*run.json"))
    assert len(paths) >= 10
    for path in paths:
        data = json.loads(path.read_text())
        meta = RunMeta.from_dict(data)
        assert meta.to_dict() == data, path
        assert isinstance(meta.machine, Machine) and meta.run_id == data["run_id"]
        if meta.roofline is not None:
            assert isinstance(meta.roofline, Roofline)
        for mid, machine in (meta.machines or {}).items():  # a cluster run's own rooflines
            assert machine.roofline is None or meta.roofline_for(mid) is machine.roofline
