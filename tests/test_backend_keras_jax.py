"""The keras-jax backend against the float64 oracle, one test per strategy."""

from __future__ import annotations

import pytest
from backend_battery import check_strategy, run_battery, strategy_params

BACKEND = "keras-jax"


@pytest.fixture(scope="module")
def battery():
    return run_battery(BACKEND)


@pytest.mark.parametrize("strategy", strategy_params(BACKEND))
def test_strategy_agrees_with_oracle(battery, strategy):
    check_strategy(battery[strategy])
