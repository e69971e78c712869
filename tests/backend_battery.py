"""Shared machinery for the built-in backends' oracle tests (tests/test_backends.py).

One worker process per backend runs the battery once (frameworks must not share the pytest
process); each strategy is then its own test with an id like ``torch/fold``, so one failing
strategy never hides the others. A missing framework is a skip that says how to install it.

``SHAREDCONV_TEST_BACKENDS=torch,jax`` limits the backends; ``SHAREDCONV_TEST_FULL=1`` runs
the whole conformance suite instead of the quick subset.
"""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import Future
from functools import cache
from typing import Any

import pytest
from parallel import two_at_a_time
from sharedconv.backends.problem import parse_problem
from sharedconv.backends.registry import load_backend
from sharedconv.backends.suites import load_suite
from sharedconv.harness.execute import Plan, execute

# A subset of the conformance suite that still covers every edge case, small enough for CI on
# two cores; the seed's full shape is exercised by `sharedconv verify` and the benchmarks.
QUICK = [
    "B=2,C=3,H=20,W=20,N=5,K=5",
    "B=2,C=1,H=9,W=9,N=4,K=3",
    "B=2,C=3,H=8,W=8,N=1,K=3",
    "B=2,C=3,H=6,W=7,N=4,K=1",
    "B=2,C=3,H=11,W=9,N=4,KH=3,KW=5",
    "B=2,C=3,H=13,W=12,N=4,K=3,stride=2",
    "B=2,C=3,H=13,W=14,N=4,K=3,dilation=2",
    "B=2,C=3,H=10,W=9,N=4,K=4,padding=same",
    "B=2,C=3,H=9,W=10,N=4,KH=2,KW=4,stride=2,padding=same",
    "B=2,C=3,H=8,W=9,N=4,K=3,padding=2x1",
    "B=2,C=3,H=8,W=8,N=4,K=3,bias=0",
    "B=2,C=3,H=12,W=11,N=5,K=3,stride=2x1,dilation=1x2,padding=1",
    "B=2,C=3,H=12,W=12,N=4,K=3,padding=same,dtype=float64",
    "B=2,C=3,H=12,W=12,N=4,K=3,padding=same,dtype=float16",
    "B=2,C=3,H=12,W=12,N=4,K=3,padding=same,dtype=bfloat16",
]


def selected(name: str) -> bool:
    wanted = os.environ.get("SHAREDCONV_TEST_BACKENDS")
    return not wanted or name in [w.strip() for w in wanted.split(",")]


def strategy_params(name: str) -> list[Any]:
    backend = load_backend(name)
    missing = backend.available()
    marks = []
    if missing:
        marks.append(pytest.mark.skip(reason=missing))
    elif not selected(name):
        marks.append(pytest.mark.skip(reason=f"SHAREDCONV_TEST_BACKENDS excludes {name}"))
    return [
        pytest.param(name, s.name, id=f"{name}/{s.name}", marks=marks) for s in backend.strategies
    ]


# the built-in backends tested against the oracle, the slowest first
BATTERIES = ["tensorflow", "keras-jax", "jax", "keras-tensorflow", "torch", "keras-torch", "native"]


@cache
def _batteries() -> dict[str, Future]:
    """Every selected, available backend's battery, two at a time from the first request on
    (the test modules that wait for them come one after another)."""
    wanted = [n for n in BATTERIES if selected(n) and load_backend(n).available() is None]
    return two_at_a_time(_run_battery, wanted)


def run_battery(name: str) -> dict[str, list[dict[str, Any]]]:
    futures = _batteries()
    if name in futures:
        return futures[name].result()
    return _run_battery(name)


def _run_battery(name: str) -> dict[str, list[dict[str, Any]]]:
    if os.environ.get("SHAREDCONV_TEST_FULL") == "1":
        problems = list(load_suite("conformance").problems)
    else:
        problems = [parse_problem(t) for t in QUICK]
    records: list[dict[str, Any]] = []
    execute(
        Plan(backends=[name], problems=problems, modes=["forward", "train"], timeout=300),
        records.append,
    )
    by_strategy: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_strategy[r["strategy"]].append(r)
    return by_strategy


def check_strategy(records: list[dict[str, Any]]) -> None:
    """Every supported case passes; every refusal has a reason a person can act on."""
    assert records, "no cases ran"
    bad = [
        f"{r['problem']} {r['mode']}: {r['status']}: {r.get('reason', '')}"
        for r in records
        if r["status"] not in ("pass", "skipped")
    ]
    assert not bad, "\n".join(bad)
    for r in records:
        if r["status"] == "skipped":
            assert len(r["reason"]) > 20, r
    assert any(r["status"] == "pass" for r in records)
    # the float32 base problem must always be supported, in every mode the strategy has
    base = [
        r
        for r in records
        if (r["problem"] == QUICK[0] or r["problem"].startswith("B=10,C=3,H=200"))
        and "is not differentiable" not in r.get("reason", "")
    ]
    assert base and all(r["status"] == "pass" for r in base), [
        (r["mode"], r["status"], r.get("reason")) for r in base
    ]
