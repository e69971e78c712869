"""Does a multi-threaded BLAS call slow the timed calls right after it?

The harness verifies a case (NumPy: norms of the differences, BLAS dot products) just before
it times it. OpenBLAS's threads keep spinning for a while after a call on its pool; this
alternates windows of 20 timed calls of the native kernel right after a 2-thread BLAS call
and after a quiet pause, in one process, and prints each window's median.

    OPENBLAS_NUM_THREADS=2 python scripts/blas_spin.py [PROBLEM] [REPEATS]

`harness.cases.one_blas_thread` (verification on one BLAS thread) is the answer to it.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from sharedconv.backends import native_backend as nb
from sharedconv.backends.problem import make_inputs, parse_problem


def main() -> None:
    problem = parse_problem(sys.argv[1] if len(sys.argv) > 1 else "B=4,C=1,H=64,W=64,N=16,K=5")
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    a = make_inputs(problem)
    x, w, b = (np.ascontiguousarray(a[k], np.float32) for k in ("x", "w", "b"))
    m = np.ones((400, 400), np.float32)
    windows: dict[str, list[float]] = {"after a BLAS call": [], "after a pause": []}
    for _ in range(repeats):
        for kind in windows:
            if kind == "after a BLAS call":
                m @ m
            else:
                time.sleep(0.3)
            times = []
            for _ in range(20):
                t0 = time.perf_counter()
                nb.forward(problem, x, w, b, 2)
                times.append(time.perf_counter() - t0)
            windows[kind].append(float(np.median(times)))
    for kind, medians in windows.items():
        shown = " ".join(f"{1e3 * t:.2f}" for t in medians)
        print(f"{kind:18s} window medians (ms): {shown}")


if __name__ == "__main__":
    main()
