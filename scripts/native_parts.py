"""Where the native kernel's time goes on this machine (docs/performance.md).

    python scripts/native_parts.py [B C H W N K] ...

For each problem (stride 1, no padding, float32; default: the seed's first problem and the
channels suite's largest) and each x86-64 build this CPU runs (AVX2+FMA; AVX-512 where the CPU
has it), with the flags of that build (backends/native_flags.py, as setup.py): compiles
scripts/native_parts.cpp, times the forward and the parts of the backward (dw; dx with db) on one thread, and prints them
beside one thread's float32 2048^3 matmul (NumPy's BLAS, as the roofline's peak); then forward
and backward on two threads, beside two threads' matmul.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from sharedconv.backends import native_flags

ROOT = Path(__file__).resolve().parent.parent
# the installed builds' flags (backends/native_flags.py, which setup.py reads); an executable
# needs none of the library's
FLAGS = native_flags.COMMON
BUILDS = {name: native_flags.ISA[name] for name in ("avx2", "avx512")}
PROBLEMS = [["10", "3", "200", "200", "20", "5"], ["4", "128", "64", "64", "16", "5"]]
MATMUL = (
    "import time, numpy as np; a = np.random.rand(2048, 2048).astype(np.float32); a @ a; "
    "t = min((lambda t0: (a @ a, time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(5)); "
    "print(f'{2 * 2048**3 / t / 1e9:.1f}')"
)


def main() -> None:
    args = sys.argv[1:]
    problems = [args[i : i + 6] for i in range(0, len(args), 6)] if args else PROBLEMS
    from sharedconv.backends.native_backend import BUILDS as STEMS
    from sharedconv.backends.native_backend import _candidates

    runs = [name for name in BUILDS if STEMS[name] in _candidates()]
    with tempfile.TemporaryDirectory() as tmp:
        exes = []
        for name in runs:
            exes.append(Path(tmp) / f"parts-{name}")
            source = str(ROOT / "scripts" / "native_parts.cpp")
            subprocess.run(["g++", *FLAGS, *BUILDS[name], source, "-o", str(exes[-1])], check=True)
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
            for exe in exes:
                print(
                    subprocess.run(
                        [str(exe), *problem], capture_output=True, text=True, check=True
                    ).stdout
                )


if __name__ == "__main__":
    main()
