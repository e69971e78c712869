"""docs/writing-a-backend.md: every command in it runs, and its pyproject is the example's."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "writing-a-backend.md"
EXAMPLE = ROOT / "examples" / "numba-backend"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def commands() -> list[str]:
    out = []
    for block in blocks("bash"):
        out += [
            line.strip()
            for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    return out


def test_the_doc_shows_the_real_pyproject():
    assert blocks("toml")[0].strip() == (EXAMPLE / "pyproject.toml").read_text().strip()


def test_the_doc_shows_the_real_conformance_test():
    assert (
        blocks("python")[0].strip()
        == (EXAMPLE / "tests" / "test_conformance.py").read_text().split('"""', 2)[2].strip()
    )


@pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import numba"]).returncode != 0,
    reason="needs numba: pip install numba",
)
def test_every_command_in_the_doc_runs():
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    cmds = commands()
    assert len(cmds) >= 5
    outputs = {}
    for cmd in cmds:
        argv = shlex.split(cmd)
        if argv[0] in ("pip", "pytest"):
            argv = [sys.executable, "-m", *argv]
        result = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, (
            f"`{cmd}` failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        outputs[argv[-1] if argv[0] == "sharedconv" else cmd] = result.stdout
    listing = next(out for cmd, out in outputs.items() if cmd == "backends")
    assert "numba" in listing and "sharedconv-numba" in listing
