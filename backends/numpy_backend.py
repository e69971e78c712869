"""The ``numpy`` backend: the oracle's algorithm as a backend, in float64 and in float32.

It is registered first so that everything (verify, run, the dashboard) works with no
deep-learning framework installed, and it is the simplest example of the contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import oracle
from .contract import Backend, Strategy, StrategyTable
from .problem import ConvProblem, round_to_dtype, storage_dtype


def _refuse_float64(problem: ConvProblem, device: str, mode: str) -> str | None:
    if problem.dtype == "float64":
        return "computes in float32, which cannot meet the float64 error bound"
    return None


class Kit(NamedTuple):
    problem: ConvProblem
    arrays: dict[str, np.ndarray]
    mode: str


def _oracle_call(k: Kit, compute: type) -> Callable[[], tuple[np.ndarray, ...]]:
    """The oracle computing in ``compute``, its outputs rounded to the problem's dtype, as a
    framework computing in it would return them. The inputs are cast before, untimed."""
    problem, arrays, mode = k
    x = arrays["x"].astype(compute)
    w = arrays["w"].astype(compute)
    b = arrays["b"].astype(compute) if problem.bias else None
    dy = arrays["dy"].astype(compute) if mode == "train" else None
    store = storage_dtype(problem.dtype)

    def finish(a: np.ndarray) -> np.ndarray:
        return round_to_dtype(a, problem.dtype).astype(store, copy=False)

    def call() -> tuple[np.ndarray, ...]:
        y = oracle.forward(problem, x, w, b, compute_dtype=compute)
        if mode != "train":
            return (finish(y),)
        g = oracle.gradients(problem, x, w, dy, compute_dtype=compute)
        out = [finish(y), finish(g["dx"]), finish(g["dw"])]
        if problem.bias:
            out.append(finish(g["db"]))
        return tuple(out)

    return call


# Each strategy with its builder ``f(kit) -> call``: the prepared call itself (the gradients
# are the oracle's own, not an autodiff's).
TABLE = StrategyTable()


@TABLE.strategy(
    "oracle64",
    "the oracle: patch matrix times filters (BLAS), computed in float64, rounded to the dtype",
    timed="float64 patch-matrix matmul over chunks of B*C images, cast to the problem dtype",
)
def oracle64(k: Kit) -> Callable[[], tuple[np.ndarray, ...]]:
    return _oracle_call(k, np.float64)


@TABLE.strategy(
    "oracle32",
    "the oracle's algorithm computed in float32 (float16/bfloat16 problems round the result)",
    timed="float32 patch-matrix matmul over chunks of B*C images, cast to the problem dtype",
    supports_fn=_refuse_float64,
)
def oracle32(k: Kit) -> Callable[[], tuple[np.ndarray, ...]]:
    return _oracle_call(k, np.float32)


class NumpyBackend(Backend):
    name = "numpy"
    install_hint = "pip install sharedconv"
    devices = ("cpu",)
    strategies = TABLE.strategies

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__}

    def configure(self, threads: int, device: str) -> dict[str, Any]:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # the worker's OMP/OPENBLAS_NUM_THREADS still apply
            return {"blas_threads": "from OMP_NUM_THREADS / OPENBLAS_NUM_THREADS"}
        threadpool_limits(threads)
        return {"blas_threads": threads}

    def prepare(
        self,
        problem: ConvProblem,
        arrays: dict[str, np.ndarray],
        strategy: Strategy,
        device: str,
        mode: str,
    ) -> Callable[[], tuple[Any, ...]]:
        return TABLE.builder_of(strategy)(Kit(problem, arrays, mode))
