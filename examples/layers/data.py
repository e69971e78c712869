"""Synthetic many-band images for the layer examples: each class brightens a band range
with a class-specific texture, so a shared spatial filter bank plus a per-band read-out
separates them."""

from __future__ import annotations

import numpy as np

BANDS, SIZE, CLASSES = 64, 24, 4


def batch(
    rng: np.random.Generator, n: int, channels_last: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, CLASSES, n)
    x = rng.standard_normal((n, BANDS, SIZE, SIZE)).astype(np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for i, c in enumerate(labels):
        stripes = np.sin((xx if c % 2 else yy) * (1.0 + c) * 0.6).astype(np.float32)
        band = slice(c * BANDS // CLASSES, (c + 1) * BANDS // CLASSES)
        x[i, band] += 1.5 * stripes
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return x, labels.astype(np.int64)
