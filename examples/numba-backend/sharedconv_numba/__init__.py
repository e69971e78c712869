"""A Numba backend for sharedconv, written only against ``sharedconv.backends.api``.

Two strategies:

- ``direct``: the definition, loop by loop (bounds checks instead of padding), one thread;
- ``tuned``: pads once, runs in parallel over the B*C images (``prange``), and keeps the N
  filters innermost so that loop vectorizes; its output is (B, C, H', W', N), which is the
  layout that suits it, declared as ``BCHWN``.

Both compute forward and, in train mode, dx, dw and db by hand. Numba compiles on the first
call (the harness reports it as first-call time).
"""

from __future__ import annotations

import importlib.util
from importlib import metadata
from typing import Any

import numpy as np
from sharedconv.backends.api import Backend, ConvProblem, Strategy, from_canonical

HINT = "pip install sharedconv-numba (or pip install -e examples/numba-backend)"


def _float_only(problem: ConvProblem, device: str, mode: str) -> str | None:
    if problem.dtype not in ("float32", "float64"):
        return f"Numba has no {problem.dtype} arithmetic on the CPU; use float32 or float64"
    return None


_KERNELS: dict[str, Any] = {}


def _kernels() -> dict[str, Any]:
    """Compile-on-first-use Numba functions (numba is imported only here)."""
    if _KERNELS:
        return _KERNELS
    import numba
    from numba import njit, prange

    @njit(cache=False)
    def direct_forward(x, w, b, use_bias, sh, sw, dh, dw, pt, pl, out):
        B, C, H, W = x.shape
        N, KH, KW = w.shape
        HO, WO = out.shape[3], out.shape[4]
        for bi in range(B):
            for c in range(C):
                for n in range(N):
                    for i in range(HO):
                        for j in range(WO):
                            acc = b[n] if use_bias else 0.0
                            for p in range(KH):
                                r = i * sh + p * dh - pt
                                if r < 0 or r >= H:
                                    continue
                                for q in range(KW):
                                    s = j * sw + q * dw - pl
                                    if 0 <= s < W:
                                        acc += w[n, p, q] * x[bi, c, r, s]
                            out[bi, c, n, i, j] = acc

    @njit(cache=False)
    def direct_backward(x, w, dy, sh, sw, dh, dw, pt, pl, dx, dwt, db):
        B, C, H, W = x.shape
        N, KH, KW = w.shape
        HO, WO = dy.shape[3], dy.shape[4]
        for bi in range(B):
            for c in range(C):
                for n in range(N):
                    for i in range(HO):
                        for j in range(WO):
                            g = dy[bi, c, n, i, j]
                            db[n] += g
                            for p in range(KH):
                                r = i * sh + p * dh - pt
                                if r < 0 or r >= H:
                                    continue
                                for q in range(KW):
                                    s = j * sw + q * dw - pl
                                    if 0 <= s < W:
                                        dwt[n, p, q] += g * x[bi, c, r, s]
                                        dx[bi, c, r, s] += g * w[n, p, q]

    @njit(parallel=True, cache=False)
    def tuned_forward(xp, wt, b, use_bias, sh, sw, dh, dw, out):
        # xp: (B*C, Hp, Wp) padded; wt: (KH, KW, N); out: (B*C, HO, WO, N)
        BC = xp.shape[0]
        KH, KW, N = wt.shape
        HO, WO = out.shape[1], out.shape[2]
        for img in prange(BC):
            for i in range(HO):
                for j in range(WO):
                    acc = out[img, i, j]
                    for n in range(N):
                        acc[n] = b[n] if use_bias else 0.0
                    for p in range(KH):
                        r = i * sh + p * dh
                        for q in range(KW):
                            v = xp[img, r, j * sw + q * dw]
                            for n in range(N):  # contiguous: vectorizes
                                acc[n] += v * wt[p, q, n]

    @njit(parallel=True, cache=False)
    def tuned_backward(xp, wt, dy, sh, sw, dh, dw, dxp, dw_parts, db_parts):
        # dy: (B*C, HO, WO, N); per-image partial sums keep threads independent
        BC = xp.shape[0]
        KH, KW, N = wt.shape
        HO, WO = dy.shape[1], dy.shape[2]
        for img in prange(BC):
            for i in range(HO):
                for j in range(WO):
                    g = dy[img, i, j]
                    for n in range(N):
                        db_parts[img, n] += g[n]
                    for p in range(KH):
                        r = i * sh + p * dh
                        for q in range(KW):
                            s = j * sw + q * dw
                            v = xp[img, r, s]
                            acc = 0.0
                            for n in range(N):
                                dw_parts[img, p, q, n] += g[n] * v
                                acc += g[n] * wt[p, q, n]
                            dxp[img, r, s] += acc

    _KERNELS.update(
        numba=numba,
        direct_forward=direct_forward,
        direct_backward=direct_backward,
        tuned_forward=tuned_forward,
        tuned_backward=tuned_backward,
    )
    return _KERNELS


class NumbaBackend(Backend):
    name = "numba"
    install_hint = HINT
    devices = ("cpu",)
    strategies = (
        Strategy(
            "direct",
            "the definition as nested loops, bounds checks instead of padding, one thread",
            timed="one compiled loop nest (forward; plus the backward loop nest in train mode)",
            supports_fn=_float_only,
        ),
        Strategy(
            "tuned",
            "padded once, parallel over B*C images (prange), the N filters innermost (vectorized)",
            output_layout="BCHWN",
            timed="np.pad, one parallel compiled loop nest (and its backward, plus two partial-sum reductions, in train mode)",
            supports_fn=_float_only,
        ),
    )

    def available(self) -> str | None:
        return None if importlib.util.find_spec("numba") else f"numba is not installed: {HINT}"

    def versions(self) -> dict[str, str]:
        return {"numba": metadata.version("numba")}

    def configure(self, threads: int, device: str) -> dict[str, Any]:
        numba = _kernels()["numba"]
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        return {
            "numba_threads": numba.get_num_threads(),
            "threading_layer": str(numba.config.THREADING_LAYER),
        }

    def prepare(
        self,
        problem: ConvProblem,
        arrays: dict[str, np.ndarray],
        strategy: Strategy,
        device: str,
        mode: str,
    ):
        k = _kernels()
        dtype = np.dtype(problem.dtype)
        x = np.ascontiguousarray(arrays["x"], dtype=dtype)  # copies: inputs stay untouched
        w = np.ascontiguousarray(arrays["w"], dtype=dtype)
        b = (
            np.ascontiguousarray(arrays["b"], dtype=dtype)
            if problem.bias
            else np.zeros(problem.N, dtype)
        )
        sh, sw = problem.stride
        dh, dw = problem.dilation
        (pt, pb), (pl, pr) = problem.pads
        B, C, H, W = problem.x_shape
        N, KH, KW = problem.w_shape
        HO, WO = problem.out_hw
        train = mode == "train"

        if strategy.name == "direct":
            dy = np.ascontiguousarray(arrays["dy"], dtype=dtype) if train else None

            def direct() -> tuple[np.ndarray, ...]:
                y = np.empty(problem.y_shape, dtype)
                k["direct_forward"](x, w, b, problem.bias, sh, sw, dh, dw, pt, pl, y)
                if not train:
                    return (y,)
                dx = np.zeros_like(x)
                dwt = np.zeros_like(w)
                db = np.zeros(N, dtype)
                k["direct_backward"](x, w, dy, sh, sw, dh, dw, pt, pl, dx, dwt, db)
                return (y, dx, dwt, db) if problem.bias else (y, dx, dwt)

            return direct

        wt = np.ascontiguousarray(np.transpose(w, (1, 2, 0)))  # (KH, KW, N)
        dy = (
            np.ascontiguousarray(from_canonical(arrays["dy"], "BCHWN"), dtype=dtype).reshape(
                B * C, HO, WO, N
            )
            if train
            else None
        )

        def tuned() -> tuple[np.ndarray, ...]:
            xp = np.pad(x.reshape(B * C, H, W), ((0, 0), (pt, pb), (pl, pr)))
            y = np.empty((B * C, HO, WO, N), dtype)
            k["tuned_forward"](xp, wt, b, problem.bias, sh, sw, dh, dw, y)
            y = y.reshape(B, C, HO, WO, N)
            if not train:
                return (y,)
            dxp = np.zeros_like(xp)
            dw_parts = np.zeros((B * C, KH, KW, N), dtype)
            db_parts = np.zeros((B * C, N), dtype)
            k["tuned_backward"](xp, wt, dy, sh, sw, dh, dw, dxp, dw_parts, db_parts)
            dx = np.ascontiguousarray(dxp[:, pt : pt + H, pl : pl + W]).reshape(B, C, H, W)
            dwt = np.ascontiguousarray(dw_parts.sum(axis=0).transpose(2, 0, 1))
            out = [y, dx, dwt]
            if problem.bias:
                out.append(db_parts.sum(axis=0))
            return tuple(out)

        return tuned
