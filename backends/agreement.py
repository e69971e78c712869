"""Agreement with the oracle: error metrics and the per-dtype bounds.

Two metrics per output: the relative Frobenius error ``||got - ref|| / ||ref||`` and the
largest absolute error over the largest reference magnitude ``max|got - ref| / max|ref|``.
An output agrees when both are within the dtype's bound. The bound is on the whole output,
so one wrong channel among a hundred still fails the max metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Per dtype, from DESIGN.md. float16/bfloat16 bounds leave room for rounding the output to
# 11 / 8 significant bits plus accumulation in that precision over K*K taps.
BOUNDS: dict[str, float] = {
    "float64": 1e-10,
    "float32": 1e-5,
    "float16": 2e-3,
    "bfloat16": 1.6e-2,
}


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


def bound_for(dtype: str) -> float:
    return BOUNDS[dtype]


def agrees(error: OutputError, dtype: str) -> bool:
    return error.shape_ok and error.finite and error.worst <= BOUNDS[dtype]


def describe_failure(
    name: str,
    error: OutputError,
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
        f"(bound {BOUNDS[dtype]:.0e} for {dtype})"
    )
