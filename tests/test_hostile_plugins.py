"""Plugins cannot take sharedconv down where it loads them (#18, class 10): one that
segfaults at import, hangs in available() or raises there is tried in a child process and
reported as unavailable with the reason; a grandchild a plugin starts ends with its worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sharedconv.harness import discovery
from sharedconv.harness.cli import cli
from sharedconv.harness.store import read_run

HOSTILE = Path(__file__).parent / "hostile_plugins"


@pytest.fixture
def hostile_plugins(monkeypatch):
    from sharedconv.backends import registry

    monkeypatch.syspath_prepend(str(HOSTILE))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(HOSTILE), os.environ.get("PYTHONPATH", "")])
    )
    monkeypatch.setattr(discovery, "PROBE_TIMEOUT_S", 5.0)
    monkeypatch.setenv("SHAREDCONV_PLUGIN_TIMEOUT", "5")  # the CLI processes these tests start
    discovery._faults.cache_clear()
    registry.refresh()
    yield
    for name in ("sharedconv_hostileplugins", "sharedconv_hostile_segv"):
        sys.modules.pop(name, None)
    discovery._faults.cache_clear()
    registry.refresh()


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sharedconv.harness.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=os.environ.copy(),
    )  # fmt: skip


def test_backends_lists_every_plugin_with_the_reason(hostile_plugins):
    out = _cli("backends")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "segv_import: the process died of SIGSEGV at import or in available()" in out.stdout
    assert "hang_available: did not answer within" in out.stdout
    assert "raise_available: RuntimeError: the plugin's own bug" in out.stdout
    assert "numpy" in out.stdout and "Traceback" not in out.stdout + out.stderr


@pytest.mark.parametrize("name", ["segv_import", "hang_available", "raise_available"])
def test_a_run_naming_a_crashing_plugin_records_it_and_goes_on(hostile_plugins, tmp_path, name):
    out = _cli(
        "run", "-b", f"numpy,{name}", "--shape", "B=1,C=1,H=8,N=2,K=3", "--mode", "forward",
        "--budget", "0.05", "--results", str(tmp_path), "--run-id", "r",
    )  # fmt: skip
    assert "Traceback" not in out.stdout + out.stderr, out.stderr[-2000:]
    run = read_run(tmp_path / "r")
    assert run.meta.status == "complete"
    bad = [c for c in run.cases if c.backend == name]
    assert bad and all(c.status == "unavailable" for c in bad)
    assert any(c.status == "pass" for c in run.cases if c.backend == "numpy")


def test_a_grandchild_a_plugin_starts_ends_with_the_run(hostile_plugins, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["run", "-b", "spawner", "--shape", "B=1,C=1,H=8,N=2,K=3", "--mode", "forward",
         "--budget", "0.05", "--results", str(tmp_path), "--run-id", "s"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    time.sleep(0.5)
    left = subprocess.run(
        ["pgrep", "-f", "sharedconv-spawner-B1-C1"], capture_output=True, text=True
    ).stdout.split()
    assert not left, f"grandchildren still running: {left}"
