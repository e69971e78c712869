"""A run has an owner (#18, class 4): one writer at a time, atomic creation, and a run whose
writer died reads as interrupted, not as running."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner
from sharedconv.harness.cli import cli
from sharedconv.harness.store import RunWriter, StoreError, read_run

HOLD = """
import sys, time
from sharedconv.harness.store import RunWriter
writer = RunWriter.create(sys.argv[1], "live", {"backends": ["numpy"], "problems": [], "modes": ["forward"], "threads": 1})
print("ready", flush=True)
time.sleep(60)
"""


def test_a_live_run_cannot_be_resumed_and_a_dead_one_reads_as_interrupted(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert read_run(tmp_path / "live").meta.status == "running"
        result = CliRunner().invoke(cli, ["run", "--resume", "live", "--results", str(tmp_path)])
        assert result.exit_code == 2, result.output
        assert f"being written by another process (pid {holder.pid})" in result.output
    finally:
        holder.kill()
        holder.wait()
    assert read_run(tmp_path / "live").meta.status == "interrupted"


CREATE = """
import sys
from sharedconv.harness.store import RunWriter, StoreError
try:
    RunWriter.create(sys.argv[1], "same", {}).finish()
    print("created")
except StoreError as e:
    print("refused:", e)
"""


def test_two_processes_creating_one_run_never_both_succeed(tmp_path):
    for trial in range(6):
        root = tmp_path / str(trial)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CREATE, str(root)], stdout=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=60)[0] for p in procs]
        assert sum(o.startswith("created") for o in outs) == 1, outs
        assert sum(o.startswith("refused:") for o in outs) == 1, outs


def test_a_second_writer_in_the_same_process_is_refused(tmp_path):
    first = RunWriter.create(tmp_path, "one", {})
    try:
        RunWriter.resume(tmp_path, "one")
    except StoreError as e:
        assert "being written by another process" in str(e)
    else:
        raise AssertionError("a second writer got the run")
    finally:
        first.finish()
    second, _ = RunWriter.resume(tmp_path, "one")  # free again once the first finished
    second.finish()
    assert read_run(tmp_path / "one").meta.status == "complete"
