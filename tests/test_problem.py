from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sharedconv.backends.problem import (
    ConvProblem,
    ProblemError,
    make_inputs,
    parse_problem,
    parse_problems,
    round_to_dtype,
)

SEED = "B=10,C=3,H=200,W=200,N=20,K=5"


def test_seed_shape_sizes():
    p = parse_problem(SEED)
    assert p.y_shape == (10, 3, 20, 196, 196)
    assert p.flops == 2 * 10 * 3 * 20 * 196 * 196 * 25
    assert p.fewest_bytes() == 4 * (10 * 3 * 200 * 200 + 20 * 25 + 20 + 10 * 3 * 20 * 196 * 196)
    assert p.fewest_bytes("train") == 2 * p.fewest_bytes()  # read dy, write dx, dw, db


@pytest.mark.parametrize(
    "text, out_hw, pads",
    [
        ("C=1,H=10,W=9,N=1,K=3", (8, 7), ((0, 0), (0, 0))),
        ("C=1,H=10,W=9,N=1,K=3,stride=2", (4, 4), ((0, 0), (0, 0))),
        ("C=1,H=10,W=9,N=1,K=3,dilation=2", (6, 5), ((0, 0), (0, 0))),
        ("C=1,H=10,W=9,N=1,K=3,padding=2x1", (12, 9), ((2, 2), (1, 1))),
        # TensorFlow's "same": out = ceil(H / s); the odd pixel goes to the bottom/right
        ("C=1,H=10,W=9,N=1,K=4,padding=same", (10, 9), ((1, 2), (1, 2))),
        ("C=1,H=10,W=9,N=1,K=3,stride=2,padding=same", (5, 5), ((0, 1), (1, 1))),
        ("C=1,H=9,W=10,N=1,KH=2,KW=4,stride=2,padding=same", (5, 5), ((0, 1), (1, 1))),
        ("C=1,H=7,W=7,N=1,K=3,dilation=2,padding=same", (7, 7), ((2, 2), (2, 2))),
    ],
)
def test_output_shape_and_padding(text, out_hw, pads):
    p = parse_problem(text)
    assert p.out_hw == out_hw
    assert p.pads == pads


def test_same_padding_follows_tensorflow_rule():
    for h in range(3, 20):
        for k in range(1, 6):
            for s in (1, 2, 3):
                p = ConvProblem(1, 1, h, h, 1, k, k, stride=s, padding="same")
                assert p.out_hw[0] == math.ceil(h / s)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"B": 0}, "B must be a positive integer"),
        ({"C": -3}, "C must be a positive integer"),
        ({"N": 2.5}, "N must be a positive integer"),
        ({"KH": 9}, "larger than the padded input"),
        ({"dtype": "int8"}, "dtype must be one of float64, float32, float16, bfloat16"),
        ({"padding": "full"}, "padding must be 'valid', 'same'"),
        ({"padding": (-1, 0)}, "padding must be >= 0"),
        ({"stride": 0}, "stride must be >= 1"),
        ({"dilation": (1, 0)}, "dilation must be >= 1"),
        ({"dilation": 5}, "larger than the padded input"),
    ],
)
def test_impossible_problems_are_refused_with_the_field(kwargs, needle):
    base = dict(B=1, C=1, H=8, W=8, N=1, KH=3, KW=3)
    base.update(kwargs)
    with pytest.raises(ProblemError, match=needle):
        ConvProblem(**base)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "empty problem"),
        ("B=1,C=3,H=8", "lacks N, K"),
        ("C=3,H=8,N=2,K=3,Q=1", "unknown key 'Q'"),
        ("C=3,H=8,N=2,K=x", "K must be an integer"),
        ("C=3,H=8,N=2,K=3,KH=3,KW=3", "either K or KH and KW"),
        ("C=3,H=8,N=2,K=3,stride=2x2x2", "stride must be N or AxB"),
        ("C=3,H=8,N=2,K=3,dilation=x", "dilation must be N or AxB .* got 'x'"),
        ("C=3,H=8,N=2,K=3,bias=maybe", "bias must be 0 or 1"),
        ("C=3,H=8,N=2,K=3,C=4", "C is given twice"),
        ("3,C=3", "has no key"),
        ("C=4..1,H=8,N=2,K=3", "1 <= start <= end"),
        ("C=1..8:y2,H=8,N=2,K=3", "a range step is"),
        ("C=3,H=8,N=2,K=3,dtype=float8", "dtype must be one of"),
    ],
)
def test_text_form_errors_are_clear(text, needle):
    with pytest.raises(ProblemError, match=needle):
        parse_problems(text)


def test_text_form_defaults_and_keys():
    p = parse_problem(
        "C=3,H=8,W=12,N=2,KH=3,KW=5,stride=2x1,dilation=1x2,padding=1x0,bias=0,dtype=float16"
    )
    assert (p.B, p.W, p.KH, p.KW) == (1, 12, 3, 5)
    assert parse_problem("C=3,H=8,N=2,K=3").W == 8  # W defaults to H
    assert p.stride == (2, 1) and p.dilation == (1, 2) and p.padding == (1, 0)
    assert p.bias is False and p.dtype == "float16"
    assert parse_problem(p.to_text()) == p
    assert p.slug() == "B1-C3-8x12-N2-K3x5-s2x1-d1x2-p1x0-nobias-float16"


def test_grid_expansion():
    problems = parse_problems("B=8,C=1..128:x2,H=64,N=16,K=3,5")
    assert len(problems) == 16
    assert sorted({p.C for p in problems}) == [1, 2, 4, 8, 16, 32, 64, 128]
    assert sorted({p.KH for p in problems}) == [3, 5]
    assert [p.C for p in parse_problems("C=8..32:+8,H=64,N=1,K=1")] == [8, 16, 24, 32]
    with pytest.raises(ProblemError, match="describes 2 problems"):
        parse_problem("C=1,2,H=8,N=1,K=1")


problem_strategy = st.builds(
    ConvProblem,
    B=st.integers(1, 4),
    C=st.integers(1, 5),
    H=st.integers(8, 16),
    W=st.integers(8, 16),
    N=st.integers(1, 4),
    KH=st.integers(1, 3),
    KW=st.integers(1, 3),
    stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.one_of(
        st.sampled_from(["valid", "same"]), st.tuples(st.integers(0, 2), st.integers(0, 2))
    ),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    bias=st.booleans(),
    dtype=st.sampled_from(["float64", "float32", "float16", "bfloat16"]),
)


@settings(max_examples=200, deadline=None)
@given(problem_strategy)
def test_text_form_round_trips(p):
    assert parse_problem(p.to_text()) == p
    assert ConvProblem.from_dict(p.to_dict()) == p


def test_inputs_are_seeded_nonzero_and_rounded():
    p = parse_problem("B=2,C=3,H=8,N=4,K=3,dtype=bfloat16")
    a = make_inputs(p, seed=1, mode="train")
    b = make_inputs(p, seed=1, mode="train")
    c = make_inputs(p, seed=2, mode="train")
    assert set(a) == {"x", "w", "b", "dy"}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert not np.array_equal(a[k], c[k])
        assert np.count_nonzero(a[k]) > 0.95 * a[k].size
        # bfloat16 values travel in float32 with the low 16 bits clear
        assert a[k].dtype == np.float32
        assert not (a[k].view(np.uint32) & 0xFFFF).any()
    assert "b" not in make_inputs(p.with_(bias=False))
    # the forward inputs are the train inputs without dy
    fwd = make_inputs(p, seed=1)
    np.testing.assert_array_equal(fwd["x"], a["x"])


def test_round_to_dtype():
    v = np.array([1.0 + 2**-9, 1.0 + 2**-7, 3.14159])
    np.testing.assert_array_equal(round_to_dtype(v, "bfloat16")[:2], [1.0, 1.0 + 2**-7])
    assert round_to_dtype(v, "float16")[2] == np.float16(3.14159)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("C=1..1000,H=16..1000,N=1..1000,K=3", "expands to 985000000 problems"),
        ("C=1..1000000000,H=8,N=2,K=3", "expands to 1000000000 values; at most 1000"),
    ],
    ids=["grid of a billion", "range of a billion"],
)
def test_a_huge_grid_is_refused_before_anything_is_built(text, needle):
    """Counted from the ranges, not by building the combinations (which hung, RSS climbing):
    run in a child with a deadline, so a regression fails instead of hanging the suite."""
    import subprocess
    import sys

    probe = (
        "from sharedconv.backends.problem import ProblemError, parse_problems\n"
        f"try:\n    parse_problems({text!r})\nexcept ProblemError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert needle in out.stdout, out.stdout + out.stderr
