"""The pytest plugin, `sharedconv pytest-bench` and `sharedconv import`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from sharedconv.harness.cli import cli
from sharedconv.harness.store import read_run

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_benchmark() -> str:
    section = README.read_text().split("## pytest-benchmark", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_three_line_benchmark_runs(tmp_path):
    test_file = tmp_path / "test_mine.py"
    test_file.write_text(readme_benchmark())
    assert len([line for line in readme_benchmark().splitlines() if line.strip()]) == 3
    out_json = tmp_path / "mine.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(test_file), "-q", "--benchmark-enable", "--benchmark-min-rounds=3",
         "--benchmark-max-time=0.05", f"--benchmark-json={out_json}", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(out_json.read_text())
    names = {b["name"] for b in doc["benchmarks"]}
    assert "test_my_shared_conv[numpy/oracle64/B1-C2-8x8-N2-K3/forward]" in names
    extra = doc["benchmarks"][0]["extra_info"]
    assert {"flops", "threads", "dtype", "input_layout", "output_layout", "verify_error"} <= set(
        extra
    )


def test_mixing_frameworks_in_one_process_is_refused(tmp_path):
    (tmp_path / "test_x.py").write_text(readme_benchmark())
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path / "test_x.py"), "--sharedconv-backend", "torch,jax", "-p", "no:cacheprovider"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    assert "mixes frameworks in one process" in result.stderr + result.stdout
    assert "sharedconv pytest-bench" in result.stderr + result.stdout


def test_pytest_bench_merges_and_import_makes_a_run(tmp_path):
    out = tmp_path / "out.json"
    backends = (
        "numpy,torch"
        if subprocess.run([sys.executable, "-c", "import torch"]).returncode == 0
        else "numpy"
    )
    result = subprocess.run(
        [sys.executable, "-m", "sharedconv.harness.cli", "pytest-bench", "--backends", backends, "--sharedconv-mode", "forward",
         "--sharedconv-strategies", "oracle32,fold,conv3d", "--benchmark-max-time=0.02", "--benchmark-min-rounds=3",
         "--benchmark-json", str(out), "-q"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(out.read_text())
    cases = {b["extra_info"]["sharedconv_case"] for b in doc["benchmarks"]}
    assert "numpy/oracle32/B1-C2-8x8-N2-K3/forward/cpu" in cases
    if "torch" in backends:
        assert "torch/conv3d/B1-C2-8x8-N2-K3/forward/cpu" in cases
    # pytest-benchmark reads the merged file
    compare = subprocess.run(
        [str(Path(sys.executable).parent / "pytest-benchmark"), "compare", str(out)],
        capture_output=True,
        text=True,
    )
    assert compare.returncode == 0 and "test_shared_conv" in compare.stdout + compare.stderr, (
        compare.args,
        compare.stdout,
        compare.stderr,
        out.read_text()[:300],
    )
    imported = CliRunner().invoke(
        cli, ["import", str(out), "--results", str(tmp_path / "results"), "--run-id", "imp"]
    )
    assert imported.exit_code == 0, imported.output
    run = read_run(tmp_path / "results" / "imp")
    # timed in the pytest process, under the allocator its environment had
    assert {c.case for c in run.cases} == {f"{c}/system" for c in cases}
    assert run.meta.malloc == ["system"]
    assert all(c.median > 0 for c in run.cases)


def test_import_refuses_foreign_files(tmp_path):
    foreign = tmp_path / "foreign.json"
    foreign.write_text(
        json.dumps(
            {"benchmarks": [{"name": "test_sort", "stats": {"median": 1.0}, "extra_info": {}}]}
        )
    )
    result = CliRunner().invoke(cli, ["import", str(foreign), "--results", str(tmp_path)])
    assert result.exit_code == 2
    assert "none carries sharedconv's extra_info" in result.output
    (tmp_path / "not.json").write_text("hello")
    result = CliRunner().invoke(
        cli, ["import", str(tmp_path / "not.json"), "--results", str(tmp_path)]
    )
    assert result.exit_code == 2 and "is not JSON" in result.output
    result = CliRunner().invoke(cli, ["import", str(tmp_path / "missing.json")])
    assert result.exit_code == 2 and "no such file" in result.output
