"""Storage failures are clean (#18, class 7): one line naming the path and the operating
system's reason, exit code 1, the run marked interrupted, no half line, no temp file left."""

from __future__ import annotations

import errno
import json
import os

from click.testing import CliRunner
from sharedconv.harness.cli import cli

SHAPE = ["-b", "numpy", "-s", "oracle32", "--shape", "B=1,C=1..2,H=8,N=2,K=3", "--mode", "forward"]
FAST = ["--budget", "0.05", "--precision", "0.5"]


def _run(*args: str):
    return CliRunner().invoke(cli, ["run", *SHAPE, *FAST, *args])


def test_results_folder_that_is_a_file(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    result = _run("--results", str(target))
    assert result.exit_code == 1, result.output
    assert f"cannot create {target}" in result.output
    assert "Traceback" not in result.output


def test_results_folder_the_kernel_refuses(tmp_path):
    result = _run("--results", "/proc/sharedconv-results")
    assert result.exit_code == 1, result.output
    assert "cannot create /proc/sharedconv-results" in result.output
    assert "Traceback" not in result.output


def test_disk_full_mid_run_interrupts_cleanly(tmp_path, monkeypatch):
    """The device fills while the first record is being made durable: the OS's ENOSPC,
    raised where the kernel would raise it (fsync of cases.jsonl)."""
    real_fsync = os.fsync

    def full(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("cases.jsonl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    result = _run("--results", str(tmp_path), "--run-id", "full")
    assert result.exit_code == 1, result.output
    folder = tmp_path / "full"
    assert f"cannot write {folder / 'cases.jsonl'}: No space left on device" in result.output
    assert "Traceback" not in result.output
    assert (folder / "cases.jsonl").read_text() == ""  # the line was cut back, not left half
    meta = json.loads((folder / "run.json").read_text())
    assert meta["status"] == "interrupted"
    assert "No space left on device" in meta["status_note"]
    assert not (folder / "run.json.tmp").exists()


def test_resume_of_a_run_whose_cases_file_is_a_folder_is_one_line(tmp_path):
    assert _run("--results", str(tmp_path), "--run-id", "x").exit_code == 0
    (tmp_path / "x" / "cases.jsonl").unlink()
    (tmp_path / "x" / "cases.jsonl").mkdir()
    # the readers list the run with a warning, and resume refuses it in one line
    listed = CliRunner().invoke(cli, ["runs", "--results", str(tmp_path)])
    assert listed.exit_code == 0 and "cannot be read" in listed.output, listed.output
    resumed = CliRunner().invoke(cli, ["run", "--resume", "x", "--results", str(tmp_path)])
    assert (
        resumed.exit_code == 1
        and "cannot use" in resumed.output
        and "Is a directory" in resumed.output
    )
    assert "Traceback" not in resumed.output


def test_non_finite_numbers_are_written_as_null_and_named(tmp_path):
    import math

    from sharedconv.harness.store import to_json

    line = to_json({"a": float("nan"), "b": {"c": [1.0, float("inf")]}, "d": 2.0})
    assert "NaN" not in line and "Infinity" not in line
    assert json.loads(line) == {
        "a": None,
        "b": {"c": [1.0, None]},
        "d": 2.0,
        "non_finite": ["a", "b.c[1]"],
    }
    assert math.isfinite(json.loads(to_json({"x": 1.5}))["x"])
