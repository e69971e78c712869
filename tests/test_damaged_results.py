"""Damaged results never take a reader down (#18, classes 1, 8 and 9).

One wrong-typed value, a non-UTF-8 byte, a duplicated line or a damaged run.json is skipped
with a warning that names the file, the line and the field; the healthy runs and lines beside
it load, and every reader (runs, compare, recommend, the dashboard's loader, --resume) keeps
working.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sharedconv.harness.cli import cli
from sharedconv.harness.store import find_runs, read_cases, read_run

GOOD = {
    "case_schema": 1,
    "case": "numpy/oracle32/B1-C2-8x8-N2-K3/forward/cpu/system",
    "backend": "numpy",
    "strategy": "oracle32",
    "problem": "B=1,C=2,H=8,W=8,N=2,K=3",
    "params": {"B": 1, "C": 2, "H": 8, "W": 8, "N": 2, "KH": 3, "KW": 3},
    "mode": "forward",
    "device": "cpu",
    "malloc": "system",
    "status": "pass",
    "flops": 1000,
    "fewest_bytes": 100,
    "timing": {"block_size": 1, "block_times": [1e-3, 1e-3], "stats": {"median": 1e-3, "iqr": 0}},
}
META = {
    "schema": 1,
    "run_id": "good",
    "status": "complete",
    "malloc": ["system"],
    "machine": {"cpu_model": "x"},
}


def _run(root: Path, run_id: str, meta: dict, lines: list) -> Path:
    folder = root / run_id
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({**meta, "run_id": run_id}))
    with open(folder / "cases.jsonl", "wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else (json.dumps(line) + "\n").encode())
    return folder


BAD_RECORDS = [
    ({"case_schema": "1"}, "case_schema (not an integer)"),
    ({"status": 3}, "status (not text)"),
    ({"status": "fast"}, "status (unknown value 'fast')"),
    ({"backend": ["torch"]}, "backend (not text)"),
    ({"timing": {"stats": {"median": "fast"}}}, "timing.stats.median (not a number)"),
    ({"timing": "fast"}, "timing (not an object)"),
    ({"timing": {"stats": {"median": 1e-3}, "block_times": ["x"]}}, "timing.block_times"),
    ({"memory": {"peak_bytes": "big"}}, "memory.peak_bytes (not an integer)"),
    ({"flops": "many"}, "flops (not a number)"),
    ({"verify": [1, 2]}, "verify (not an object)"),
]


@pytest.mark.parametrize("change, field", BAD_RECORDS, ids=[f for _, f in BAD_RECORDS])
def test_a_wrong_typed_field_skips_that_line_with_its_name(tmp_path, change, field):
    bad = {**GOOD, "case": GOOD["case"] + "-bad", **change}
    folder = _run(tmp_path, "mixed", META, [GOOD, bad])
    records, warnings = read_cases(folder / "cases.jsonl")
    assert [r.case for r in records] == [GOOD["case"]]
    assert (
        len(warnings) == 1 and f"cases.jsonl:2: skipped a record whose field {field}" in warnings[0]
    )


def test_non_utf8_and_duplicate_lines_are_said_and_counted_once(tmp_path):
    newer = {**GOOD, "timing": {**GOOD["timing"], "stats": {"median": 2e-3, "iqr": 0}}}
    raw = (json.dumps({**GOOD, "strategy": "ora"}) + "\n").encode().replace(b"ora", b"or\xff")
    folder = _run(tmp_path, "dups", META, [GOOD, raw, newer])
    records, warnings = read_cases(folder / "cases.jsonl")
    assert len(records) == 1 and records[0].median == 2e-3
    assert any(":2: skipped a line that is not UTF-8" in w for w in warnings)
    assert any(":3: case" in w and "the last line counts" in w for w in warnings)


BAD_META = [
    ({"schema": "1"}, "schema (not an integer)"),
    ({"machine": "x"}, "machine (not an object)"),
    ({"malloc": 5}, "malloc (not a list or text)"),
    (
        {"roofline": {"peak_flops": "fast", "copy_bytes_per_s": 1}},
        "roofline.peak_flops (not a number)",
    ),
    ({"workers": []}, "workers (not an object)"),
]


@pytest.mark.parametrize("change, needle", BAD_META, ids=[n for _, n in BAD_META])
def test_a_damaged_run_hides_no_other_run_and_breaks_no_reader(tmp_path, change, needle):
    _run(tmp_path, "good", META, [GOOD])
    _run(tmp_path, "bad", {**META, **change}, [GOOD])
    runs, skipped = find_runs([tmp_path])
    assert [r.run_id for r in runs] == ["good"]
    assert any("bad" in s and needle in s for s in skipped), skipped
    for args in (
        ["runs", "--results", str(tmp_path)],
        ["recommend", "--shape", GOOD["problem"], "--results", str(tmp_path), "--malloc", "system"],
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
    resumed = CliRunner().invoke(cli, ["run", "--resume", "bad", "--results", str(tmp_path)])
    assert resumed.exit_code == 2 and needle in resumed.output
    # refused before anything was written into the damaged run
    assert json.loads((tmp_path / "bad" / "run.json").read_text())["status"] == "complete"


def test_the_dashboard_loader_skips_the_damaged_run(tmp_path):
    from sharedconv.dashboard import data

    _run(tmp_path, "good", META, [GOOD])
    _run(tmp_path, "bad", {**META, "schema": "1"}, [GOOD])
    loaded = data.load([tmp_path])
    assert [r.run_id for r in loaded.runs] == ["good"]
    assert len(loaded.cases) == 1 and any("schema (not an integer)" in s for s in loaded.skipped)


def test_compare_names_damaged_lines(tmp_path):
    _run(tmp_path, "a", META, [GOOD])
    _run(tmp_path, "b", META, [GOOD, b"{not json\n"])
    result = CliRunner().invoke(cli, ["compare", "a", "b", "--results", str(tmp_path)])
    assert result.exit_code in (0, 1), result.output
    assert "skipped a damaged line" in result.output
    assert read_run(tmp_path / "b").warnings
