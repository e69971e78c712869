"""The NumPy oracle: forward and gradients of the shared-channel convolution.

Computed in float64 by default, in the canonical layout, chunked over the B*C images so
that the extra memory (the patch matrix of one chunk) never exceeds ``max_chunk_bytes``
whatever the problem's size.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .problem import ConvProblem

DEFAULT_CHUNK_BYTES = 256 * 2**20


def _padded(problem: ConvProblem, x: np.ndarray) -> np.ndarray:
    (pt, pb), (pl, pr) = problem.pads
    if pt == pb == pl == pr == 0:
        return x
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr)))


def _windows(problem: ConvProblem, xpad: np.ndarray) -> np.ndarray:
    """A view ``(n, H', W', KH, KW)`` of the receptive fields of ``xpad (n, Hp, Wp)``."""
    dh, dw = problem.dilation
    sh, sw = problem.stride
    ho, wo = problem.out_hw
    eff = (dh * (problem.KH - 1) + 1, dw * (problem.KW - 1) + 1)
    view = sliding_window_view(xpad, eff, axis=(1, 2))[:, :, :, ::dh, ::dw]
    return view[:, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]


def _chunk_rows(problem: ConvProblem, itemsize: int, max_chunk_bytes: int) -> int:
    ho, wo = problem.out_hw
    k = problem.KH * problem.KW
    per_image = itemsize * (
        ho * wo * k  # the patch matrix
        + 2 * problem.N * ho * wo  # the product and its transpose
        + (problem.H + sum(problem.pads[0])) * (problem.W + sum(problem.pads[1]))
    )
    return max(1, int(max_chunk_bytes // max(per_image, 1)))


def forward(
    problem: ConvProblem,
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    *,
    compute_dtype: type = np.float64,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> np.ndarray:
    """``y (B, C, N, H', W')`` in ``compute_dtype``."""
    B, C, H, W = problem.x_shape
    ho, wo = problem.out_hw
    n_images = B * C
    xs = np.asarray(x, dtype=compute_dtype).reshape(n_images, H, W)
    wk = np.asarray(w, dtype=compute_dtype).reshape(problem.N, -1)  # (N, K)
    y = np.empty((n_images, problem.N, ho, wo), dtype=compute_dtype)
    rows = _chunk_rows(problem, np.dtype(compute_dtype).itemsize, max_chunk_bytes)
    for start in range(0, n_images, rows):
        stop = min(start + rows, n_images)
        patches = _windows(problem, _padded(problem, xs[start:stop]))
        patches = patches.reshape(stop - start, ho * wo, -1)  # copies the strided view
        # (n, HW, K) @ (K, N) -> (n, HW, N) -> (n, N, HW)
        y[start:stop] = np.matmul(patches, wk.T).transpose(0, 2, 1).reshape(-1, problem.N, ho, wo)
    if problem.bias and b is not None:
        y += np.asarray(b, dtype=compute_dtype)[None, :, None, None]
    return y.reshape(problem.y_shape)


def gradients(
    problem: ConvProblem,
    x: np.ndarray,
    w: np.ndarray,
    dy: np.ndarray,
    *,
    compute_dtype: type = np.float64,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> dict[str, np.ndarray]:
    """``dx (B,C,H,W)``, ``dw (N,KH,KW)`` and, when the problem has a bias, ``db (N,)``."""
    B, C, H, W = problem.x_shape
    ho, wo = problem.out_hw
    sh, sw = problem.stride
    dh, dwl = problem.dilation
    (pt, pb), (pl, pr) = problem.pads
    n_images = B * C
    xs = np.asarray(x, dtype=compute_dtype).reshape(n_images, H, W)
    wk = np.asarray(w, dtype=compute_dtype).reshape(problem.N, -1)
    # dy is the largest input (N times x): converted a chunk at a time, not whole (the seed's
    # 100-channel problem's dy is 3 GB in float32, 6 GB in float64)
    dys = np.asarray(dy).reshape(n_images, problem.N, ho * wo)
    dw_acc = np.zeros((problem.N, problem.KH * problem.KW), dtype=compute_dtype)
    db_acc = np.zeros(problem.N, dtype=compute_dtype)
    dx = np.empty((n_images, H, W), dtype=compute_dtype)
    rows = _chunk_rows(problem, np.dtype(compute_dtype).itemsize, max_chunk_bytes)
    for start in range(0, n_images, rows):
        stop = min(start + rows, n_images)
        n = stop - start
        dyc = dys[start:stop].astype(compute_dtype, copy=False)
        patches = _windows(problem, _padded(problem, xs[start:stop])).reshape(n, ho * wo, -1)
        # dw[N, K] += sum over images and positions of dy[n, N, HW] * patches[n, HW, K]
        dw_acc += np.einsum("anp,apk->nk", dyc, patches, optimize=True)
        db_acc += dyc.sum(axis=(0, 2))
        # the gradient of each patch entry, then scattered back onto the padded input
        dpatch = np.matmul(dyc.transpose(0, 2, 1), wk)  # (n, HW, K)
        dpatch = dpatch.reshape(n, ho, wo, problem.KH, problem.KW)
        dxpad = np.zeros((n, H + pt + pb, W + pl + pr), dtype=compute_dtype)
        for p in range(problem.KH):
            for q in range(problem.KW):
                r0, c0 = p * dh, q * dwl
                dxpad[:, r0 : r0 + (ho - 1) * sh + 1 : sh, c0 : c0 + (wo - 1) * sw + 1 : sw] += (
                    dpatch[:, :, :, p, q]
                )
        dx[start:stop] = dxpad[:, pt : pt + H, pl : pl + W]
    grads = {"dx": dx.reshape(problem.x_shape), "dw": dw_acc.reshape(problem.w_shape)}
    if problem.bias:
        grads["db"] = db_acc
    return grads


def reference(
    problem: ConvProblem,
    arrays: dict[str, np.ndarray],
    mode: str = "forward",
    *,
    compute_dtype: type = np.float64,
) -> dict[str, np.ndarray]:
    """Every output of ``mode`` for canonical ``arrays``: ``y`` and, in train mode, the gradients."""
    out = {
        "y": forward(
            problem, arrays["x"], arrays["w"], arrays.get("b"), compute_dtype=compute_dtype
        )
    }
    if mode == "train":
        out.update(
            gradients(problem, arrays["x"], arrays["w"], arrays["dy"], compute_dtype=compute_dtype)
        )
    return out
