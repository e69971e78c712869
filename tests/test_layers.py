"""The drop-in layers against the float64 oracle, per framework, each in a process of its own
(frameworks never share the pytest process): every strategy a layer can pick, forward and
``dx``/``dw``/``db``; serialization; the framework's transforms; ``auto``. The checks are in
``tests/layer_checks.py``; each group here is one test that lists every failing item."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from parallel import two_at_a_time
from sharedconv.backends.registry import load_backend

CHECKS = Path(__file__).with_name("layer_checks.py")
FRAMEWORKS = ["torch", "jax", "keras-tensorflow", "keras-jax", "keras-torch"]
GROUPS = ["oracle", "serialization", "transforms", "auto"]


def _run_checks(framework: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(CHECKS), framework],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


@cache
def _all_checks() -> dict:
    return two_at_a_time(_run_checks, [f for f in FRAMEWORKS if not _missing(f)])


def checks(framework: str) -> dict:
    proc = _all_checks()[framework].result()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("LAYER-CHECKS ")]
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"{framework} layer checks crashed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1].removeprefix("LAYER-CHECKS "))


def _missing(framework: str) -> str | None:
    if framework == "jax":
        return load_backend("jax").available()
    return load_backend(framework).available()


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_layer_checks(framework: str, group: str) -> None:
    missing = _missing(framework)
    if missing:
        pytest.skip(missing)
    items = checks(framework)[group]
    assert items, f"no {group} checks ran for {framework}"
    failed = [f"{name}: {detail}" for name, ok, detail in items if not ok]
    assert not failed, f"{len(failed)} of {len(items)} failed:\n" + "\n".join(failed)


EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "layers"


def _run_example(framework: str) -> subprocess.CompletedProcess:
    import tempfile

    script = "train_keras.py" if framework.startswith("keras-") else f"train_{framework}.py"
    with tempfile.TemporaryDirectory(prefix="sharedconv-example-cache-") as cache_dir:
        env = {
            **os.environ,
            "SHAREDCONV_CACHE_DIR": cache_dir,
            "SHAREDCONV_TUNE_BUDGET": "0.2",
            "KERAS_BACKEND": framework.removeprefix("keras-"),
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        return subprocess.run(
            [sys.executable, str(EXAMPLES / script), "--steps", "3", "--batch", "4", "--eval", "8"],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )


@cache
def _all_examples() -> dict:
    # each prints what its autotune picked; the test asks that it trains and says so, not
    # which one is fastest
    return two_at_a_time(_run_example, [f for f in FRAMEWORKS if not _missing(f)])


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_example_trains_and_says_what_it_picked(framework: str) -> None:
    missing = _missing(framework)
    if missing:
        pytest.skip(missing)
    proc = _all_examples()[framework].result()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(autotune: fastest of" in proc.stdout, proc.stdout
    assert "held-out accuracy" in proc.stdout
