"""Layouts: permutations of the canonical axes ``BCHW`` (inputs) and ``BCNHW`` (outputs)."""

from __future__ import annotations

import numpy as np

CANONICAL_INPUT = "BCHW"
CANONICAL_OUTPUT = "BCNHW"


def validate_layout(layout: str, canonical: str, what: str = "layout") -> None:
    if sorted(layout) != sorted(canonical):
        raise ValueError(f"{what} must be a permutation of {canonical!r}, got {layout!r}")


def permutation(src: str, dst: str) -> tuple[int, ...]:
    """Axes to pass to ``transpose`` to turn an array in ``src`` layout into ``dst``."""
    validate_layout(src, dst)
    return tuple(src.index(axis) for axis in dst)


def from_canonical(a: np.ndarray, layout: str) -> np.ndarray:
    """A canonical array (``BCHW`` or ``BCNHW``) transposed into ``layout`` (a view)."""
    canonical = CANONICAL_INPUT if a.ndim == 4 else CANONICAL_OUTPUT
    return a.transpose(permutation(canonical, layout))


def to_canonical(a: np.ndarray, layout: str) -> np.ndarray:
    """An array in ``layout`` transposed into the canonical layout of its rank (a view)."""
    canonical = CANONICAL_INPUT if len(layout) == 4 else CANONICAL_OUTPUT
    if a.ndim != len(layout):
        raise ValueError(f"array of rank {a.ndim} cannot be in layout {layout!r}")
    return a.transpose(permutation(layout, canonical))


def shape_in(layout: str, canonical_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape an array of ``canonical_shape`` has in ``layout``."""
    canonical = CANONICAL_INPUT if len(canonical_shape) == 4 else CANONICAL_OUTPUT
    sizes = dict(zip(canonical, canonical_shape, strict=True))
    return tuple(sizes[axis] for axis in layout)
