"""Every built-in backend against the float64 oracle: one test per backend and strategy.

Ids read ``torch/fold``, ``keras-jax/grouped_predict``: one failing strategy never hides the
others. Each backend's battery runs once in its own worker processes (frameworks never share
the pytest process), two backends at a time (``backend_battery``). A framework that is not
installed is a skip that says how to install it; ``SHAREDCONV_TEST_BACKENDS=torch,jax`` limits
the backends.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from backend_battery import BATTERIES, check_strategy, run_battery, strategy_params
from sharedconv.backends.conformance import conformance_suite
from sharedconv.backends.registry import load_backend


@pytest.mark.parametrize(
    ("backend", "strategy"), [p for name in BATTERIES for p in strategy_params(name)]
)
def test_strategy_agrees_with_oracle(backend, strategy):
    check_strategy(run_battery(backend)[strategy])


# The conformance kit offered to plugin authors, run on built-ins too: numpy here, in-process
# (no framework to keep out of pytest); native in test_backend_native.py; torch, JAX,
# TensorFlow and the three Keras backends each in a process of its own below (minutes each:
# marked slow, `make test-all`).
TestNumpyConformance = conformance_suite("numpy", random_examples=20)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["torch", "jax", "tensorflow", "keras-torch", "keras-jax", "keras-tensorflow"]
)
def test_the_plugin_conformance_kit_passes_on_a_framework_backend(backend, tmp_path):
    if load_backend(backend).available() is not None:
        pytest.skip(load_backend(backend).available())
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--sharedconv-conformance", backend],
        cwd=tmp_path, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
