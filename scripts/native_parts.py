"""Where the native kernel's time goes on this machine (docs/performance.md).

    python scripts/native_parts.py [B C H W N K] ...

For each problem (stride 1, no padding, float32; default: the seed's first problem and the
channels suite's largest): compiles scripts/native_parts.cpp with the flags of the AVX2 build
(setup.py), times the forward and the parts of the backward (dw, dx, db) on one thread, and
prints them beside one thread's float32 2048^3 matmul (NumPy's BLAS, as the roofline's peak);
then forward and backward on two threads, beside two threads' matmul.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["-O3", "-std=gnu++17", "-ffp-contract=fast", "-fopenmp", "-mavx2", "-mfma", "-mf16c"]
PROBLEMS = [["10", "3", "200", "200", "20", "5"], ["4", "128", "64", "64", "16", "5"]]
MATMUL = (
    "import time, numpy as np; a = np.random.rand(2048, 2048).astype(np.float32); a @ a; "
    "t = min((lambda t0: (a @ a, time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(5)); "
    "print(f'{2 * 2048**3 / t / 1e9:.1f}')"
)


def main() -> None:
    args = sys.argv[1:]
    problems = [args[i : i + 6] for i in range(0, len(args), 6)] if args else PROBLEMS
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "parts"
        subprocess.run(
            ["g++", *FLAGS, str(ROOT / "scripts" / "native_parts.cpp"), "-o", str(exe)], check=True
        )
        for threads in ("1", "2"):
            env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
            gemm = subprocess.run(
                [sys.executable, "-c", MATMUL], env=env, capture_output=True, text=True, check=True
            )
            print(
                f"float32 matmul (NumPy BLAS), {threads} thread(s): {gemm.stdout.strip()} GFLOP/s"
            )
        print()
        for problem in problems:
            print(
                subprocess.run(
                    [str(exe), *problem], capture_output=True, text=True, check=True
                ).stdout
            )


if __name__ == "__main__":
    main()
