"""scripts/gpu-check --dry-run (the bootstrap, then `sharedconv gpu-check`): the GPU check's
code paths on the CPU, so no device time is spent on a typo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sharedconv.backends.registry import load_backend
from sharedconv.harness.store import read_run

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu-check"


@pytest.mark.slow  # `make test-all`, and before every device session (scripts/gpu-check)
@pytest.mark.skipif(
    load_backend("torch").available() is not None,
    reason="needs torch: pip install 'sharedconv[torch]'",
)
def test_gpu_check_dry_run(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", str(tmp_path), "--minutes", "0.4"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = {name: read_run(tmp_path / name) for name in ("verify", "tf32-off", "tf32-on")}
    assert all(r.meta.status == "complete" for r in runs.values())
    assert runs["tf32-on"].meta.precision == "TF32 on"
    assert runs["tf32-off"].meta.precision.startswith("TF32 off")
    verify = runs["verify"].cases
    assert any(c.status == "pass" for c in verify)
    assert not [c for c in verify if c.failed], json.dumps([c.to_dict() for c in verify])[:2000]
    timed = [c for c in runs["tf32-off"].cases if c.timing]
    assert timed and all(c.precision.startswith("TF32 off") for c in timed)
    # with TF32 allowed, float32 cases are held to TF32's bound, and say so
    on = [c for c in runs["tf32-on"].cases if c.verify]
    assert on and all(c.verify.precision == "tf32" for c in on)
    assert all(c.verify.precision is None for c in timed)
    assert "GPU check: fastest strategy and the seed's options per problem" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("done in")


def test_gpu_check_refuses_what_it_cannot_do_with_the_fix(tmp_path):
    from click.testing import CliRunner
    from sharedconv.harness.cli import cli

    bad = CliRunner().invoke(cli, ["gpu-check", str(tmp_path / "out"), "--phases", "warmup"])
    assert (
        bad.exit_code == 2 and "unknown 'warmup'; choose from verify,tf32-off,tf32-on" in bad.output
    )
    assert "Traceback" not in bad.output
    unknown = CliRunner().invoke(cli, ["gpu-check", str(tmp_path / "out"), "-b", "torhc"])
    assert unknown.exit_code == 2 and "unknown backend(s) torhc" in unknown.output
    assert not (tmp_path / "out").exists()  # refused before anything was made


def test_gpu_check_refuses_an_outdir_that_holds_its_runs(tmp_path):
    from click.testing import CliRunner
    from sharedconv.harness.cli import cli
    from sharedconv.harness.store import RunWriter

    if load_backend("torch").available() and load_backend("jax").available():
        pytest.skip("needs torch or jax")
    RunWriter.create(tmp_path, "verify", {"suite": "conformance"}).finish()
    result = CliRunner().invoke(
        cli, ["gpu-check", str(tmp_path), "--dry-run", "--phases", "verify"]
    )
    assert result.exit_code == 2, result.output
    assert "already exists" in result.output and "give the check an empty OUTDIR" in result.output
    assert "Traceback" not in result.output


def test_a_backends_share_of_the_time_skips_its_later_cases_with_the_reason():
    from sharedconv.backends.problem import parse_problem
    from sharedconv.harness.execute import Plan, execute

    records = []
    plan = Plan(
        backends=["numpy"],
        problems=[parse_problem("B=1,C=2,H=8,N=2,K=3")],
        modes=["forward", "train"],
        threads=1,
        backend_seconds=1e-9,
    )
    execute(plan, records.append)
    skipped = [r for r in records if r["status"] == "skipped"]
    assert len(records) == 4 and len(skipped) >= 3
    assert all("numpy's share of the time budget" in r["reason"] for r in skipped)
