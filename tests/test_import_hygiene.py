"""Importing sharedconv, asking for help or listing backends imports no framework."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = ("torch", "tensorflow", "jax", "keras")

PROBE = """
import sys
import sharedconv, sharedconv.backends, sharedconv.harness, sharedconv.backends.api
from click.testing import CliRunner
from sharedconv.harness.cli import cli
from sharedconv.backends.registry import backend_names, load_backend
for args in (["--help"], ["backends"], ["strategies"], ["verify", "--help"]):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (args, result.output)
for name in backend_names():
    backend = load_backend(name)          # loads the adapter module, not its framework
    backend.available()
    [s.describe() for s in backend.strategies]
print(" ".join(m for m in FRAMEWORKS if m in sys.modules))
""".replace("FRAMEWORKS", repr(FRAMEWORKS))


def test_no_framework_is_imported():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"


def test_console_script_help_is_fast_and_clean():
    out = subprocess.run(
        [sys.executable, "-m", "sharedconv.harness.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    assert "verify" in out.stdout and "backends" in out.stdout
