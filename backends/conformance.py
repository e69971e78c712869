"""The conformance kit for backend authors.

Run it on your backend in either of two ways::

    pytest --sharedconv-conformance mybackend

or, from a test file of your own::

    from sharedconv.backends.conformance import conformance_suite

    TestMyBackend = conformance_suite("mybackend")

Every strategy of the backend is checked, each check its own test with an id like
``mybackend/direct``:

- ``available()`` returns None or a reason, and never raises;
- forward output and, for differentiable strategies, dx, dw and db agree with the float64
  oracle on every problem of the conformance suite the strategy accepts, and on randomized
  problems (hypothesis, bounded sizes);
- ``supports()`` is honest: every refusal carries a reason a person can act on, and every
  accepted problem passes;
- the declared input/output layouts match the shapes the strategy really returns;
- inputs are not mutated; two calls give identical results; ``synchronize`` accepts the outputs.

Failures name the backend, strategy, problem and mode. The kit runs in the pytest process,
so test one framework per process.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from .agreement import BOUNDS, bound_for, compare_outputs, output_error, reduction_terms
from .contract import MODES, OutputShapeError, canonical_outputs
from .oracle import forward as oracle_forward
from .oracle import gradients as oracle_gradients
from .oracle import reference
from .problem import ConvProblem, make_inputs, parse_problems
from .registry import load_backend
from .suites import load_suite

# The kit's public helpers, for a plugin's own tests: the oracle, the error bounds and the
# seeded inputs every check uses.
__all__ = [
    "BOUNDS",
    "bound_for",
    "conformance_suite",
    "make_inputs",
    "oracle_forward",
    "oracle_gradients",
    "output_error",
    "parse_problems",
    "reduction_terms",
    "reference",
    "configured",
    "run_once",
]

ENV = "SHAREDCONV_CONFORMANCE"


def _where(backend: Any, strategy: Any, problem: ConvProblem, mode: str) -> str:
    return f"{backend.name}/{strategy.name} on {problem.to_text()} ({mode})"


_CONFIGURED: dict[int, Any] = {}  # id -> the backend itself, so no id is ever reused


def configured(backend: Any) -> Any:
    """``backend`` after its ``configure(threads, "cpu")``, called once per process as the
    harness's worker calls it before any case (JAX enables float64 there, frameworks set
    their thread pools): the kit checks a backend as the harness runs it."""
    if id(backend) not in _CONFIGURED:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        backend.configure(threads, "cpu")
        _CONFIGURED[id(backend)] = backend
    return backend


def run_once(
    backend: Any, strategy: Any, problem: ConvProblem, mode: str, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], tuple]:
    """Prepare and call once: (canonical outputs, canonical inputs, raw host outputs)."""
    configured(backend)
    arrays = make_inputs(problem, seed, mode)
    fn = backend.prepare(problem, arrays, strategy, "cpu", mode)
    outputs = fn()
    backend.synchronize(outputs)
    raw = backend.to_numpy(outputs)
    try:
        got = canonical_outputs(strategy, problem, mode, raw, strict=True)
    except OutputShapeError as e:
        raise AssertionError(f"{_where(backend, strategy, problem, mode)}: {e}") from None
    return got, arrays, raw


def check_agreement(backend: Any, strategy: Any, problem: ConvProblem, mode: str) -> None:
    got, arrays, _ = run_once(backend, strategy, problem, mode)
    failures = compare_outputs(problem, got, reference(problem, arrays, mode))["failures"]
    assert not failures, (
        f"{_where(backend, strategy, problem, mode)} disagrees with the oracle: "
        + "; ".join(failures)
    )


def _modes(strategy: Any) -> list[str]:
    return list(MODES) if strategy.differentiable else ["forward"]


def conformance_suite(name: str, suite: str = "conformance", random_examples: int = 20) -> type:
    """A pytest test class that runs the whole battery on backend ``name``."""
    backend = load_backend(name)
    missing = backend.available()
    strategies = list(backend.strategies)
    params = [pytest.param(s, id=f"{name}/{s.name}") for s in strategies]
    skip = pytest.mark.skipif(bool(missing), reason=missing or "")
    problems = list(load_suite(suite).problems)

    class TestConformance:
        def test_available_never_raises(self) -> None:
            try:
                reason = load_backend(name).available()
            except Exception as e:  # pragma: no cover - the failure is the point
                pytest.fail(
                    f"{name}.available() raised {type(e).__name__}: {e}; it must return None or a reason"
                )
            assert reason is None or (isinstance(reason, str) and reason), (
                f"{name}.available() must return None or a non-empty reason"
            )

        @skip
        @pytest.mark.parametrize("strategy", params)
        def test_agrees_on_the_conformance_suite(self, strategy: Any) -> None:
            ran = 0
            for problem in problems:
                for mode in _modes(strategy):
                    why = backend.supports(problem, strategy, "cpu", mode)
                    if why:
                        assert isinstance(why, str) and len(why) >= 10, (
                            f"{_where(backend, strategy, problem, mode)}: supports() refused with {why!r}; say why, so users can act on it"
                        )
                        continue
                    check_agreement(backend, strategy, problem, mode)
                    ran += 1
            assert ran, f"{name}/{strategy.name} accepted no problem of the {suite} suite"

        @skip
        @pytest.mark.parametrize("strategy", params)
        def test_agrees_on_random_problems(self, strategy: Any) -> None:
            from hypothesis import HealthCheck, given, settings
            from hypothesis import strategies as st

            @st.composite
            def problems_st(draw: Any) -> ConvProblem:
                kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
                dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
                h = draw(st.integers(dh * (kh - 1) + 1, 14))
                w = draw(st.integers(dw * (kw - 1) + 1, 14))
                padding = draw(
                    st.one_of(
                        st.sampled_from(["valid", "same"]),
                        st.tuples(st.integers(0, 2), st.integers(0, 2)),
                    )
                )
                return ConvProblem(
                    B=draw(st.integers(1, 3)),
                    C=draw(st.integers(1, 4)),
                    H=h,
                    W=w,
                    N=draw(st.integers(1, 4)),
                    KH=kh,
                    KW=kw,
                    stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
                    padding=padding,
                    dilation=(dh, dw),
                    bias=draw(st.booleans()),
                    dtype=draw(st.sampled_from(["float32", "float64"])),
                )

            @settings(
                max_examples=random_examples,
                deadline=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(problems_st(), st.sampled_from(_modes(strategy)))
            def check(problem: ConvProblem, mode: str) -> None:
                if backend.supports(problem, strategy, "cpu", mode):
                    return
                check_agreement(backend, strategy, problem, mode)

            check()

        @skip
        @pytest.mark.parametrize("strategy", params)
        def test_inputs_untouched_and_calls_deterministic(self, strategy: Any) -> None:
            problem = ConvProblem(2, 3, 9, 8, 4, 3, 3, padding="same")
            for mode in _modes(strategy):
                if backend.supports(problem, strategy, "cpu", mode):
                    continue
                arrays = make_inputs(problem, 1, mode)
                before = {k: v.copy() for k, v in arrays.items()}
                fn = configured(backend).prepare(problem, arrays, strategy, "cpu", mode)
                first = fn()
                assert backend.synchronize(first) is None, (
                    f"{_where(backend, strategy, problem, mode)}: synchronize() should return None"
                )
                a = [np.array(x, copy=True) for x in backend.to_numpy(first)]
                second = fn()
                backend.synchronize(second)
                b = [np.asarray(x) for x in backend.to_numpy(second)]
                for k in arrays:
                    assert np.array_equal(arrays[k], before[k]), (
                        f"{_where(backend, strategy, problem, mode)} changed its input {k!r}"
                    )
                for i, (x, y) in enumerate(zip(a, b, strict=True)):
                    assert np.array_equal(x, y), (
                        f"{_where(backend, strategy, problem, mode)}: two calls gave different output #{i}; results must be deterministic"
                    )

    TestConformance.__name__ = f"TestConformance_{name.replace('-', '_')}"
    return TestConformance


# ---- the pytest plugin: `pytest --sharedconv-conformance NAME` -------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("sharedconv").addoption(
        "--sharedconv-conformance",
        metavar="NAME",
        default=None,
        help="run sharedconv's conformance kit on backend NAME",
    )


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("--sharedconv-conformance", default=None)
    if name:
        os.environ[ENV] = name
        target = os.path.join(os.path.dirname(__file__), "conformance_target.py")
        given = [
            a
            for a in config.invocation_params.args
            if isinstance(a, str) and not a.startswith("-") and os.path.exists(a.split("::")[0])
        ]
        # only the kit, unless the author also named test paths of their own
        config.args[:] = [*given, target]
