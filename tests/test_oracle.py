"""The oracle against SciPy (forward) and finite differences (gradients)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate2d
from sharedconv.backends import oracle
from sharedconv.backends.problem import make_inputs, parse_problem

CASES = [
    "B=2,C=3,H=9,W=8,N=4,K=3",
    "B=1,C=2,H=11,W=9,N=3,KH=3,KW=5",
    "B=2,C=2,H=13,W=12,N=2,K=3,stride=2",
    "B=1,C=2,H=9,W=11,N=2,KH=2,KW=3,stride=2x3",
    "B=1,C=2,H=13,W=14,N=3,K=3,dilation=2",
    "B=1,C=2,H=12,W=11,N=3,K=3,dilation=1x3,stride=2",
    "B=2,C=2,H=10,W=9,N=2,K=4,padding=same",
    "B=1,C=2,H=9,W=10,N=2,KH=2,KW=4,stride=2,padding=same",
    "B=1,C=1,H=8,W=9,N=2,K=3,padding=2x1",
    "B=2,C=3,H=6,W=7,N=4,K=1,bias=0",
]


def scipy_forward(p, x, w, b):
    (pt, pb), (pl, pr) = p.pads
    dh, dw = p.dilation
    ho, wo = p.out_hw
    kd = np.zeros((N := p.N, dh * (p.KH - 1) + 1, dw * (p.KW - 1) + 1))
    kd[:, ::dh, ::dw] = w
    y = np.zeros(p.y_shape)
    for bi in range(p.B):
        for c in range(p.C):
            xp = np.pad(x[bi, c], ((pt, pb), (pl, pr)))
            for n in range(N):
                full = correlate2d(xp, kd[n], mode="valid")
                y[bi, c, n] = full[
                    : (ho - 1) * p.stride[0] + 1 : p.stride[0],
                    : (wo - 1) * p.stride[1] + 1 : p.stride[1],
                ]
                if p.bias:
                    y[bi, c, n] += b[n]
    return y


@pytest.mark.parametrize("text", CASES)
def test_forward_matches_scipy(text):
    p = parse_problem(text + ",dtype=float64")
    a = make_inputs(p, seed=3)
    got = oracle.forward(p, a["x"], a["w"], a.get("b"))
    np.testing.assert_allclose(
        got, scipy_forward(p, a["x"], a["w"], a.get("b")), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("text", CASES)
def test_gradients_match_finite_differences(text):
    p = parse_problem(text + ",dtype=float64")
    a = make_inputs(p, seed=4, mode="train")
    g = oracle.gradients(p, a["x"], a["w"], a["dy"])

    def loss(x, w, b):
        return float(np.sum(oracle.forward(p, x, w, b) * a["dy"]))

    # The loss is linear in each argument, so central differences are exact up to rounding.
    eps = 1e-3
    rng = np.random.default_rng(0)
    for name in ("x", "w", "b") if p.bias else ("x", "w"):
        arr = a[name]
        flat_idx = rng.choice(arr.size, size=min(arr.size, 25), replace=False)
        for i in flat_idx:
            idx = np.unravel_index(i, arr.shape)
            args = {k: a[k].copy() for k in ("x", "w", "b") if k in a}
            args[name][idx] += eps
            up = loss(args["x"], args["w"], args.get("b"))
            args[name][idx] -= 2 * eps
            down = loss(args["x"], args["w"], args.get("b"))
            numeric = (up - down) / (2 * eps)
            assert g["d" + name][idx] == pytest.approx(numeric, rel=1e-7, abs=1e-9), (name, idx)
    if not p.bias:
        assert "db" not in g


def test_chunking_does_not_change_results():
    p = parse_problem("B=3,C=5,H=12,W=10,N=4,K=3,stride=2,padding=same,dtype=float64")
    a = make_inputs(p, seed=5, mode="train")
    whole = oracle.reference(p, a, "train")
    y = oracle.forward(p, a["x"], a["w"], a["b"], max_chunk_bytes=1)  # one image per chunk
    g = oracle.gradients(p, a["x"], a["w"], a["dy"], max_chunk_bytes=1)
    np.testing.assert_allclose(y, whole["y"], rtol=1e-13)
    for k in ("dx", "dw", "db"):
        np.testing.assert_allclose(g[k], whole[k], rtol=1e-12, atol=1e-12)


def test_float32_compute_dtype():
    p = parse_problem("B=2,C=3,H=16,N=4,K=5")
    a = make_inputs(p, seed=6)
    y32 = oracle.forward(p, a["x"], a["w"], a["b"], compute_dtype=np.float32)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, oracle.forward(p, a["x"], a["w"], a["b"]), rtol=1e-4, atol=1e-5)


def test_tf32_bound_applies_to_float32_only_and_is_labelled():
    from sharedconv.backends.agreement import compare_outputs

    p = parse_problem("B=1,C=2,H=9,W=8,N=2,K=3")
    rng = np.random.default_rng(0)
    ref = {"y": rng.standard_normal(p.y_shape)}
    # an error of 5e-4 of the output: what TF32's 10-bit products leave, far beyond float32's
    got = {"y": ref["y"] * (1 + 5e-4)}
    strict = compare_outputs(p, got, ref)
    assert strict["failures"] and "for float32)" in strict["failures"][0]
    loose = compare_outputs(p, got, ref, tf32=True)
    assert not loose["failures"] and loose["precision"] == "tf32"
    # a bigger error still fails under TF32, and says which bound it failed
    bad = compare_outputs(p, {"y": ref["y"] * 1.01}, ref, tf32=True)
    assert bad["failures"] and "float32 with TF32" in bad["failures"][0]
    # TF32 says nothing about float16
    p16 = parse_problem("B=1,C=2,H=9,W=8,N=2,K=3,dtype=float16")
    assert "precision" not in compare_outputs(p16, got, ref, tf32=True)
