"""This machine's roofline: peak FLOP/s (a large float32 matmul) and copy bandwidth.

Measured at the start of every run in a process of its own with the run's thread settings,
and stored with the run, so "% of roofline" always refers to the machine and threads that
produced the numbers. Run as ``python -m sharedconv.harness.roofline`` (prints JSON).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def probe(matmul_n: int = 2048, copy_mib: int = 256, repeats: int = 5) -> dict[str, Any]:
    import numpy as np

    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # optional: only names the BLAS
        threadpool_info = list

    rng = np.random.default_rng(0)
    a = rng.standard_normal((matmul_n, matmul_n), dtype=np.float32)
    b = rng.standard_normal((matmul_n, matmul_n), dtype=np.float32)
    c = np.empty_like(a)
    np.matmul(a, b, out=c)  # warm-up: thread pool start, page faults
    t_mm = _best(lambda: np.matmul(a, b, out=c), repeats)
    src = np.ones(copy_mib * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    t_copy = _best(lambda: np.copyto(dst, src), repeats)
    blas = [
        {k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return {
        "peak_flops": 2 * matmul_n**3 / t_mm,
        "copy_bytes_per_s": 2 * src.nbytes / t_copy,  # read + write
        "method": f"best of {repeats}: float32 {matmul_n}^3 matmul (NumPy BLAS); copy of {copy_mib} MiB (np.copyto, read+write)",
        "blas": blas,
    }


def measure(threads: int, timeout: float = 120.0) -> dict[str, Any]:
    """Run :func:`probe` in a fresh process with the run's thread environment."""
    from .worker import thread_env

    env = {**os.environ, **thread_env(threads)}
    try:
        out = subprocess.run(
            [sys.executable, "-m", "sharedconv.harness.roofline"],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"the roofline probe took more than {timeout:.0f} s"}
    if out.returncode != 0:
        return {"error": f"the roofline probe failed: {out.stderr.strip()[-300:]}"}
    result = json.loads(out.stdout)
    result["threads"] = threads
    return result


if __name__ == "__main__":
    print(json.dumps(probe()))
