"""Small helpers shared by the framework adapters (no framework imported here)."""

from __future__ import annotations

import importlib.util
from importlib import metadata

from .problem import ConvProblem


def missing_module(module: str, hint: str) -> str | None:
    """``None`` when ``module`` can be imported, else a reason with the install hint.

    Looks the module up without importing it, so listing backends stays cheap.
    """
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"{module} is not installed; install it with: {hint}"


def dist_version(*names: str) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def dilated_extent(problem: ConvProblem) -> tuple[int, int]:
    """The kernel's footprint on the input, dilation included."""
    return (
        problem.dilation[0] * (problem.KH - 1) + 1,
        problem.dilation[1] * (problem.KW - 1) + 1,
    )


def tap_slices(problem: ConvProblem, p: int, q: int) -> tuple[slice, slice]:
    """The rows and columns of the padded input that kernel tap ``(p, q)`` multiplies."""
    ho, wo = problem.out_hw
    sh, sw = problem.stride
    r0, c0 = p * problem.dilation[0], q * problem.dilation[1]
    return slice(r0, r0 + (ho - 1) * sh + 1, sh), slice(c0, c0 + (wo - 1) * sw + 1, sw)


def refuse_low_precision_fft(problem: ConvProblem, framework: str) -> str | None:
    if problem.dtype in ("float16", "bfloat16"):
        return f"{framework} has no {problem.dtype} FFT on this device; an FFT in float32 would not be a {problem.dtype} strategy"
    return None
