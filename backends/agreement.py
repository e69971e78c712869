"""Agreement with the oracle: error metrics and the per-dtype bounds.

Two metrics per output: the relative Frobenius error ``||got - ref|| / ||ref||`` and the
largest absolute error over the largest reference magnitude ``max|got - ref| / max|ref|``.
An output agrees when both are within its bound. The bound is on the whole output, so one
wrong channel among a hundred still fails the max metric.

The bound starts from the dtype's value in the original brief and grows with the square root of the
length of the sum behind each element once that sum exceeds 4096 terms: rounding errors of
a long reduction grow like sqrt(n) * eps, so ``dw`` and ``db`` of a large problem (a sum over
B*C*H'*W' positions, over a million for the seed's shape) cannot meet a bound made for a
25-term sum in any honest float32 implementation. A wrong result is off by O(1), far above
either bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .problem import ConvProblem

# Per dtype, from the original brief. float16/bfloat16 bounds leave room for rounding the output to
# 11 / 8 significant bits plus accumulation in that precision over K*K taps.
BOUNDS: dict[str, float] = {
    "float64": 1e-10,
    "float32": 1e-5,
    "float16": 2e-3,
    "bfloat16": 1.6e-2,
}
# float32 computed with TF32 tensor cores (GPUs, Plan.tf32 / Backend.tf32): the products see 10
# mantissa bits, as float16 does, and are summed in float32.
TF32_BOUND = BOUNDS["float16"]


@dataclass(frozen=True)
class OutputError:
    rel_fro: float
    max_norm: float
    shape_ok: bool = True
    finite: bool = True

    @property
    def worst(self) -> float:
        return max(self.rel_fro, self.max_norm)

    def to_dict(self) -> dict[str, float | bool]:
        return {
            "rel_fro": self.rel_fro,
            "max_norm": self.max_norm,
            "shape_ok": self.shape_ok,
            "finite": self.finite,
        }


def output_error(got: np.ndarray, ref: np.ndarray) -> OutputError:
    """Errors of ``got`` against ``ref``; a wrong shape or a NaN is an infinite error."""
    got = np.asarray(got)
    ref = np.asarray(ref)
    if got.shape != ref.shape:
        return OutputError(float("inf"), float("inf"), shape_ok=False)
    g = got.astype(np.float64, copy=False)
    r = ref.astype(np.float64, copy=False)
    if not np.isfinite(g).all():
        return OutputError(float("inf"), float("inf"), finite=False)
    diff = g - r
    ref_norm = float(np.linalg.norm(r.ravel()))
    ref_max = float(np.abs(r).max()) if r.size else 0.0
    diff_norm = float(np.linalg.norm(diff.ravel()))
    diff_max = float(np.abs(diff).max()) if diff.size else 0.0
    rel = diff_norm / ref_norm if ref_norm > 0 else diff_norm
    mx = diff_max / ref_max if ref_max > 0 else diff_max
    return OutputError(rel, mx)


REDUCTION_FREE_TERMS = 4096


def reduction_terms(problem: ConvProblem, output: str) -> int:
    """How many products are summed into one element of ``output``."""
    ho, wo = problem.out_hw
    k = problem.KH * problem.KW
    if output == "y":
        return k
    if output == "dx":
        return problem.N * k
    return problem.B * problem.C * ho * wo  # dw and db


def bound_for(dtype: str, terms: int = 1, tf32: bool = False) -> float:
    """The bound for ``dtype``; ``tf32`` loosens float32's to TF32's (other dtypes ignore it)."""
    base = TF32_BOUND if tf32 and dtype == "float32" else BOUNDS[dtype]
    return base * max(1.0, math.sqrt(terms / REDUCTION_FREE_TERMS))


def agrees(error: OutputError, bound: float) -> bool:
    return error.shape_ok and error.finite and error.worst <= bound


def describe_failure(
    name: str,
    error: OutputError,
    bound: float,
    dtype: str,
    expected_shape: tuple[int, ...] | None = None,
    got_shape: tuple[int, ...] | None = None,
) -> str:
    if not error.shape_ok:
        return f"{name}: shape {got_shape} but the oracle's is {expected_shape} (is the declared layout right?)"
    if not error.finite:
        return f"{name}: contains NaN or inf"
    return (
        f"{name}: rel. Frobenius error {error.rel_fro:.2e}, max error {error.max_norm:.2e} of max|ref| "
        f"(bound {bound:.1e} for {dtype})"
    )


def compare_outputs(
    problem: ConvProblem,
    got: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    tf32: bool = False,
) -> dict:
    """Errors of every output, and whether all agree within the dtype's bound.

    ``tf32`` says the run allowed TF32 for float32 (a labelled GPU precision mode): float32
    outputs are then held to TF32's bound, and the verdict says so.
    """
    tf32 = tf32 and problem.dtype == "float32"
    label = "float32 with TF32" if tf32 else problem.dtype
    errors: dict = {}
    bounds: dict[str, float] = {}
    failures = []
    for name, ref in reference.items():
        if name not in got:
            failures.append(f"{name}: missing from the outputs")
            continue
        err = output_error(got[name], ref)
        bound = bounds[name] = bound_for(problem.dtype, reduction_terms(problem, name), tf32)
        errors[name] = {**err.to_dict(), "bound": bound}
        if not agrees(err, bound):
            failures.append(describe_failure(name, err, bound, label, ref.shape, got[name].shape))
    verdict = {"errors": errors, "bound": min(bounds.values(), default=0.0), "failures": failures}
    if tf32:
        verdict["precision"] = "tf32"
    return verdict
