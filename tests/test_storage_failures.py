"""Storage failures are clean (#18, class 7): one line naming the path and the operating
system's reason, exit code 1, the run marked interrupted, no half line, no temp file left."""

from __future__ import annotations

import json
import os

import pytest
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


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_disk_full_mid_run_interrupts_cleanly(tmp_path):
    assert _run("--results", str(tmp_path), "--run-id", "full").exit_code == 0
    folder = tmp_path / "full"
    (folder / "cases.jsonl").unlink()
    (folder / "cases.jsonl").symlink_to("/dev/full")  # every write: No space left on device
    result = CliRunner().invoke(cli, ["run", "--resume", "full", "--results", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "cannot write" in result.output and "No space left on device" in result.output
    assert "Traceback" not in result.output
    meta = json.loads((folder / "run.json").read_text())
    assert meta["status"] == "interrupted"
    assert "No space left on device" in meta["status_note"]
    assert not (folder / "run.json.tmp").exists()
