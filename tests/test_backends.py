"""Every built-in backend against the float64 oracle: one test per backend and strategy.

Ids read ``torch/fold``, ``keras-jax/grouped_predict``: one failing strategy never hides the
others. Each backend's battery runs once in its own worker processes (frameworks never share
the pytest process), two backends at a time (``backend_battery``). A framework that is not
installed is a skip that says how to install it; ``SHAREDCONV_TEST_BACKENDS=torch,jax`` limits
the backends.
"""

from __future__ import annotations

import pytest
from backend_battery import BATTERIES, check_strategy, run_battery, strategy_params


@pytest.mark.parametrize(
    ("backend", "strategy"), [p for name in BATTERIES for p in strategy_params(name)]
)
def test_strategy_agrees_with_oracle(backend, strategy):
    check_strategy(run_battery(backend)[strategy])
