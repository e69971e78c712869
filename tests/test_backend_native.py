"""The native backend (sharedconv's own kernel) against the float64 oracle.

The kernel has no framework to keep out of the pytest process, so besides the harness's
battery (worker processes, as every backend: test_backends.py) the conformance kit runs here
in-process, and
the tiling's edges are checked directly: every remainder of a row against the vector width
(8 float32 or 4 float64 lanes in the AVX2 build, 16 or 8 in the AVX-512 one; tiles of up to
3 or 4 vectors), every remainder of the filters against the forward's tile (4; 8 with
AVX-512), heights that leave a partial block of dx rows (tiles of 2 or 3 rows; 8 or 6), filter
heights compiled as constants (3, 5, 7) and not, and every build of the library (AVX-512,
AVX2+FMA, the baseline) this CPU runs.
"""

from __future__ import annotations

import numpy as np
import pytest
from sharedconv.backends import native_backend as nb
from sharedconv.backends.agreement import compare_outputs
from sharedconv.backends.conformance import conformance_suite
from sharedconv.backends.oracle import reference
from sharedconv.backends.problem import ConvProblem, make_inputs, parse_problem

BACKEND = "native"
missing = nb.NativeBackend().available()
needs_kernel = pytest.mark.skipif(bool(missing), reason=missing or "")


TestNativeConformance = conformance_suite(BACKEND, random_examples=40)


def _builds() -> list:
    found = []
    for name, stem in nb.BUILDS.items():
        if stem not in nb._candidates() and name != "baseline":
            continue  # this CPU cannot run it
        path = nb.library_file(stem)
        found.append(
            pytest.param(
                path, id=name, marks=[] if path else [pytest.mark.skip(reason=f"{stem} not built")]
            )
        )
    return found


def _agree(problem: ConvProblem, lib, threads: int = 2) -> None:
    arrays = make_inputs(problem, 3, "train")
    dtype = np.float64 if problem.dtype == "float64" else np.float32
    x, w, dy = (np.ascontiguousarray(arrays[k], dtype) for k in ("x", "w", "dy"))
    b = np.ascontiguousarray(arrays["b"], dtype) if problem.bias else None
    got = {"y": nb.forward(problem, x, w, b, threads, lib=lib)}
    grads = nb.backward(problem, x, w, dy, problem.bias, threads, lib=lib)
    got.update(zip(("dx", "dw", "db"), grads, strict=False))
    failures = compare_outputs(problem, got, reference(problem, arrays, "train"))["failures"]
    assert not failures, f"{problem.to_text()}: " + "; ".join(failures)


# widths: below one vector, between one and two, two and three, whole tiles, and past them;
# N: every remainder of the forward's 4 filters and the dw's 2
EDGES = [
    f"B=1,C=2,H={h},W={w},N={n},K={k}{extra}"
    for h, w, n, k, extra in [
        (5, 3, 1, 3, ""),
        (6, 9, 2, 3, ""),
        (7, 12, 3, 2, ""),
        (9, 19, 5, 3, ""),
        (8, 26, 6, 3, ",dtype=float64"),
        (11, 27, 7, 1, ""),
        (10, 35, 9, 5, ""),
        (7, 60, 4, 5, ",dtype=float64"),
        (13, 64, 16, 5, ""),
        (6, 66, 8, 3, ",padding=same"),
        (9, 70, 3, 7, ",padding=same,dtype=float64"),
        (12, 100, 5, 4, ",stride=2,padding=same"),
        (9, 50, 2, 3, ",dilation=2x3,padding=1"),
        (10, 41, 3, 3, ",stride=3x2,dilation=2,padding=2x0"),
        (5, 33, 1, 13, ",padding=same,bias=0"),
        # the AVX-512 build: 16 lanes, 8 filters a forward tile, 4 a dw tile, dx tiles of 8 x 2
        # vectors (heights and widths past them: bands of the rows left, tiles of the vectors left)
        (17, 16, 8, 3, ""),
        (19, 31, 11, 5, ""),
        (23, 47, 15, 7, ",padding=same"),
        (13, 49, 9, 5, ",dtype=float64"),
        (21, 97, 13, 3, ",padding=same,dtype=float64"),
        (15, 80, 17, 4, ",padding=same"),
        (26, 129, 10, 5, ",padding=2"),
    ]
]


@needs_kernel
@pytest.mark.parametrize("lib_path", _builds())
@pytest.mark.parametrize("text", EDGES)
def test_tiling_edges_agree_with_oracle(lib_path, text):
    _agree(parse_problem(text), nb.open_library(lib_path))


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_any_thread_count_agrees(threads):
    # more threads than images, and an odd count: the dw/db partial sums per thread
    _agree(parse_problem("B=1,C=2,H=20,W=30,N=6,K=3,padding=same"), nb.load_library(), threads)


def test_half_precision_is_refused_with_a_reason():
    strategy = nb.NativeBackend().strategy("direct")
    for dtype in ("float16", "bfloat16"):
        why = strategy.supports(
            parse_problem(f"B=1,C=1,H=8,W=8,N=2,K=3,dtype={dtype}"), "cpu", "forward"
        )
        assert why and dtype in why and "float32" in why


@needs_kernel
def test_a_build_from_another_source_is_refused(tmp_path):
    other = tmp_path / "native_kernel.cpp"
    other.write_text(nb.SOURCE.read_text() + "\n// edited\n")
    with pytest.raises(nb.NativeLibraryError, match="rebuild it"):
        nb.open_library(
            nb.library_file(nb._candidates()[0]) or nb.library_file("_native_baseline"),
            source=other,
        )


def test_an_unknown_build_name_is_refused(monkeypatch):
    monkeypatch.setenv("SHAREDCONV_NATIVE_BUILD", "avx9000")
    with pytest.raises(nb.NativeLibraryError, match="avx2, baseline"):
        nb._candidates()


@needs_kernel
def test_wrong_arrays_are_refused_before_the_kernel_sees_them():
    p = parse_problem("B=1,C=2,H=8,W=8,N=2,K=3")
    x = np.zeros(p.x_shape, np.float32)
    w = np.zeros(p.w_shape, np.float32)
    with pytest.raises(ValueError, match="x must be a C-contiguous float32"):
        nb.forward(p, x.astype(np.float64), w, None, 1)
    with pytest.raises(ValueError, match="not contiguous"):
        nb.forward(p, np.asfortranarray(x), w, None, 1)
