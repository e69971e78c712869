"""pytest plugin: sharedconv cases as pytest-benchmark benchmarks.

Registered through the ``pytest11`` entry point, so it is active wherever sharedconv is
installed. A test that asks for the ``sharedconv_case`` fixture is parametrized over the
selected backends x strategies x problems x modes, with ids like
``torch/fold/B10-C3-200x200-N20-K5/forward``; the fixture is prepared, verified against the
float64 oracle (a mismatch fails the test) and offers a synchronized call. A benchmark in
three lines::

    def test_shared_conv(benchmark, sharedconv_case):
        benchmark.extra_info.update(sharedconv_case.extra_info)
        benchmark(sharedconv_case.call)

Options: ``--sharedconv-backend torch`` (default ``numpy``), ``--sharedconv-suite seed``
(default ``tiny``), ``--sharedconv-mode forward|train|both``, ``--sharedconv-strategies``.
Frameworks must not share a process, so backends of different frameworks in one pytest run
are refused; ``sharedconv pytest-bench`` runs one pytest process per backend and merges the
JSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sharedconv", "sharedconv benchmarks")
    group.addoption(
        "--sharedconv-backend",
        default="numpy",
        help="backend(s) to benchmark, comma-separated, one framework per process (default: numpy)",
    )
    group.addoption(
        "--sharedconv-suite",
        default="tiny",
        help="suite(s) of problems, comma-separated (default: tiny)",
    )
    group.addoption(
        "--sharedconv-mode",
        default="both",
        choices=("forward", "train", "both"),
        help="forward, train or both (default)",
    )
    group.addoption(
        "--sharedconv-strategies", default=None, help="only these strategies (comma-separated)"
    )
    group.addoption(
        "--sharedconv-threads",
        type=int,
        default=None,
        help="threads for the framework (default: usable cores)",
    )


def _selection(config: pytest.Config) -> tuple[list[str], list[Any], list[str], list[str] | None]:
    from sharedconv.backends.registry import UnknownBackendError, parse_backend_list
    from sharedconv.backends.suites import SuiteError, load_suite

    try:
        backends = parse_backend_list(config.getoption("--sharedconv-backend"))
    except UnknownBackendError as e:
        raise pytest.UsageError(f"--sharedconv-backend: {e}") from None
    if len(set(backends) - {"numpy"}) > 1:  # numpy imports no framework
        raise pytest.UsageError(
            f"--sharedconv-backend {','.join(backends)} mixes frameworks in one process, where they distort "
            "each other; run `sharedconv pytest-bench` (one pytest process per backend) instead"
        )
    problems = []
    for name in config.getoption("--sharedconv-suite").split(","):
        try:
            problems.extend(load_suite(name.strip()).problems)
        except SuiteError as e:
            raise pytest.UsageError(f"--sharedconv-suite: {e}") from None
    mode = config.getoption("--sharedconv-mode")
    modes = ["forward", "train"] if mode == "both" else [mode]
    strategies = config.getoption("--sharedconv-strategies")
    return backends, problems, modes, strategies.split(",") if strategies else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sharedconv_case" not in metafunc.fixturenames:
        return
    from sharedconv.backends.registry import BackendLoadError, load_backend

    backends, problems, modes, only = _selection(metafunc.config)
    params = []
    for name in backends:
        try:
            backend = load_backend(name)
            missing = backend.available()
        except BackendLoadError as e:
            backend, missing = None, str(e)
        strategies = [s.name for s in backend.strategies] if backend else ["-"]
        for sname in strategies:
            if only and sname not in only:
                continue
            for problem in problems:
                for mode in modes:
                    ident = f"{name}/{sname}/{problem.slug()}/{mode}"
                    marks = []
                    if missing:
                        marks.append(pytest.mark.skip(reason=missing))
                    else:
                        why = backend.supports(problem, backend.strategy(sname), "cpu", mode)
                        if why:
                            marks.append(pytest.mark.skip(reason=why))
                    params.append(pytest.param((name, sname, problem, mode), id=ident, marks=marks))
    metafunc.parametrize("sharedconv_case", params, indirect=True)


@dataclass
class PreparedCase:
    """A prepared, verified case: ``call()`` runs it once and waits for the device."""

    backend: Any
    strategy: Any
    problem: Any
    mode: str
    fn: Any
    extra_info: dict[str, Any] = field(default_factory=dict)

    def call(self) -> Any:
        out = self.fn()
        self.backend.synchronize(out)
        return out


_CONFIGURED: set[str] = set()


@pytest.fixture
def sharedconv_case(request: pytest.FixtureRequest) -> PreparedCase:
    """A backend x strategy x problem x mode, prepared and verified against the oracle."""
    from sharedconv.backends import oracle
    from sharedconv.backends.agreement import compare_outputs as compare
    from sharedconv.backends.contract import canonical_outputs
    from sharedconv.backends.problem import make_inputs
    from sharedconv.backends.registry import load_backend
    from sharedconv.harness.cases import one_blas_thread
    from sharedconv.harness.worker import default_threads

    name, sname, problem, mode = request.param
    threads = request.config.getoption("--sharedconv-threads") or default_threads()
    backend = load_backend(name)
    if name not in _CONFIGURED:
        backend.configure(threads, "cpu")
        _CONFIGURED.add(name)
    strategy = backend.strategy(sname)
    arrays = make_inputs(problem, 0, mode)
    t0 = time.perf_counter()
    fn = backend.prepare(problem, arrays, strategy, "cpu", mode)
    t1 = time.perf_counter()
    outputs = fn()
    backend.synchronize(outputs)
    t2 = time.perf_counter()
    got = canonical_outputs(strategy, problem, mode, backend.to_numpy(outputs))
    # the oracle and the comparison on one BLAS thread, as in the harness's workers: OpenBLAS's
    # pool keeps spinning after a multi-threaded call, into the benchmark that follows
    with one_blas_thread():
        verdict = compare(problem, got, oracle.reference(problem, arrays, mode))
    if verdict["failures"]:
        pytest.fail(
            f"{name}/{sname} on {problem} ({mode}) disagrees with the oracle: "
            + "; ".join(verdict["failures"]),
            pytrace=False,
        )
    from .records import Verification

    worst = Verification.from_dict(verdict).worst()
    extra = {
        "sharedconv_case": f"{name}/{sname}/{problem.slug()}/{mode}/cpu",
        "backend": name,
        "strategy": sname,
        "problem": problem.to_text(),
        "params": problem.to_dict(),
        "mode": mode,
        "device": "cpu",
        "dtype": problem.dtype,
        "threads": threads,
        "flops": problem.flops_for(mode),
        "fewest_bytes": problem.fewest_bytes(mode),
        "input_layout": strategy.input_layout,
        "output_layout": strategy.output_layout,
        "seed_option": strategy.seed_option,
        "timed_region": strategy.timed + " (+ synchronize)",
        "verify_error": worst,
        "verify": verdict,
        "setup_s": t1 - t0,
        "first_call_s": t2 - t1,
    }
    return PreparedCase(backend, strategy, problem, mode, fn, extra)


@pytest.fixture
def sharedconv_benchmark(benchmark: Any, sharedconv_case: PreparedCase):
    """``benchmark`` bound to the case, its ``extra_info`` filled in, GFLOP/s added after."""
    benchmark.extra_info.update(sharedconv_case.extra_info)
    benchmark.group = f"{sharedconv_case.problem.to_text()} [{sharedconv_case.mode}]"

    def run() -> Any:
        result = benchmark(sharedconv_case.call)
        stats = getattr(benchmark, "stats", None)
        median = (
            getattr(getattr(stats, "stats", None), "median", None) if stats is not None else None
        )
        if median:
            from .records import giga_per_second

            flops = sharedconv_case.extra_info["flops"]
            benchmark.extra_info["gflops"] = giga_per_second(flops, median)
        return result

    return run
