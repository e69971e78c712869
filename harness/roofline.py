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

    result = _in_child([], {**os.environ, **thread_env(threads)}, timeout, "the roofline probe")
    if "error" not in result:
        result["threads"] = threads
    return result


def _in_child(args: list[str], env: dict[str, str] | None, timeout: float, what: str) -> dict:
    """``python -m sharedconv.harness.roofline ARGS`` in a fresh process: its JSON, or
    ``{"error": ...}`` saying why not."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "sharedconv.harness.roofline", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"{what} took more than {timeout:.0f} s"}
    if out.returncode != 0:
        return {"error": f"{what} failed: {out.stderr.strip()[-300:]}"}
    return json.loads(out.stdout)


def probe_gpu(n: int = 8192, copy_mib: int = 1024, repeats: int = 10) -> dict[str, Any]:
    """The GPU's matmul rates (float32 with TF32 off, TF32, bfloat16) and device copy
    bandwidth, with torch (imported here only: this runs in a process of its own)."""
    import torch

    if not torch.cuda.is_available():
        return {"error": "torch sees no CUDA device"}
    dev = torch.device("cuda")
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)

    def rate(dtype: Any, tf32: bool) -> float:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        x, y = a.to(dtype), b.to(dtype)
        for _ in range(3):
            x @ y
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            x @ y
        torch.cuda.synchronize()
        return 2 * n**3 / ((time.perf_counter() - t0) / repeats)

    fp32, tf32 = rate(torch.float32, False), rate(torch.float32, True)
    bf16 = rate(torch.bfloat16, False)
    torch.backends.cuda.matmul.allow_tf32 = False
    src = torch.empty(copy_mib * 2**20 // 4, device=dev)
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    torch.cuda.synchronize()
    bandwidth = 2 * src.numel() * 4 / ((time.perf_counter() - t0) / repeats)
    return {
        "peak_flops": fp32,
        "peak_flops_tf32": tf32,
        "peak_flops_bf16": bf16,
        "copy_bytes_per_s": bandwidth,
        "gpu": torch.cuda.get_device_name(0),
        "method": f"torch on {torch.cuda.get_device_name(0)}: {n}^3 matmul, mean of {repeats} "
        f"(fp32 with TF32 off, TF32, bf16); {copy_mib} MiB device copy (read+write)",
    }


def measure_gpu(timeout: float = 300.0) -> dict[str, Any]:
    """Run :func:`probe_gpu` in a fresh process (the CLI process never imports a framework);
    ``{"error": ...}`` when it cannot."""
    return _in_child(["--gpu"], None, timeout, "the GPU roofline probe")


if __name__ == "__main__":
    print(json.dumps(probe_gpu() if "--gpu" in sys.argv[1:] else probe()))
