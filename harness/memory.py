"""Memory: this process's resident set (Linux ``/proc``), and what a case will need.

The estimate lets the harness skip a case that would drive the machine into swap or the
OOM killer, with the reason, instead of losing the worker (and the minutes) to it.
"""

from __future__ import annotations

import os
from pathlib import Path

from sharedconv.backends.contract import Strategy
from sharedconv.backends.problem import ConvProblem

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_bytes() -> int | None:
    return _status_kib("VmRSS")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_since_reset() -> int | None:
    return _status_kib("VmHWM")


MALLOC_MODES = ("fixed", "system")

# glibc's ceiling for its own dynamic mmap threshold (64-bit), and twice that for trimming.
FIXED_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20),
}


def malloc_env(mode: str) -> dict[str, str]:
    """Environment for a worker's C allocator.

    glibc's malloc moves its mmap threshold with the history of the process: a block over
    the threshold (128 KiB at the start) is a fresh mapping on every call, page faults
    included, until a large enough block has been freed once, and from then on it comes from
    the heap. For a framework that allocates its outputs with ``malloc`` (PyTorch and XLA on
    CPU do) that decides between two very different times for the same call (7x for one torch
    case in docs/harness-benchmark.md), and what ran earlier in the worker decides which.

    ``fixed`` (the default) sets the thresholds to 32 MiB / 64 MiB, glibc's own ceiling and
    where a warmed process ends up, so a case's time does not depend on the cases before it;
    it is about what jemalloc, tcmalloc or a hand-set ``MALLOC_MMAP_THRESHOLD_`` give.
    ``system`` leaves the allocator as the environment has it (dynamic thresholds, preloads):
    closer to a cold script of yours, but order-dependent.
    """
    if mode not in MALLOC_MODES:
        raise ValueError(f"malloc mode must be one of {', '.join(MALLOC_MODES)}, got {mode!r}")
    return dict(FIXED_MALLOC_ENV) if mode == "fixed" else {}


def allocator_facts() -> dict[str, str]:
    """What decides this process's allocator: glibc's knobs in the environment, preloads."""
    keys = ("LD_PRELOAD", "GLIBC_TUNABLES")
    return {
        k: v for k, v in sorted(os.environ.items()) if v and (k in keys or k.startswith("MALLOC_"))
    }


class _Glibc:
    """glibc's malloc, for an honest RSS measurement of one call.

    A warmed process serves a freed block again from its heap, so a call's outputs and
    temporaries may not raise the RSS. Before the measured call, ``malloc_trim(0)`` hands
    every free page back to the kernel, so whatever the call allocates is touched afresh and
    the high-water mark sees it. ``mallopt`` is deliberately not used: setting a threshold
    switches glibc's dynamic threshold off for the rest of the process, which would change
    the timings of this and every later case in the worker.
    """

    def __init__(self) -> None:
        import ctypes
        import ctypes.util

        self.libc = None
        name = ctypes.util.find_library("c")
        if name:
            try:
                libc = ctypes.CDLL(name)
                libc.malloc_trim  # noqa: B018 - glibc only
                self.libc = libc
            except (OSError, AttributeError):
                self.libc = None

    def trim(self) -> bool:
        if self.libc is None:
            return False
        self.libc.malloc_trim(0)
        return True


GLIBC = _Glibc()


def available_bytes() -> int:
    """Memory available to new allocations (psutil when installed, else /proc/meminfo)."""
    try:
        import psutil
    except ImportError:
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 1 << 62  # unknown: do not refuse anything
    return int(psutil.virtual_memory().available)


def estimate_bytes(problem: ConvProblem, strategy: Strategy, mode: str) -> int:
    """A deliberately generous estimate of a case's peak memory, worker included.

    Inputs, the output (twice: frameworks hold the previous result while computing the next),
    in train mode ``dy``, ``dx`` and saved activations, plus the known temporaries of the
    strategy's family: the K*K patch tensor, FFT spectra, per-tap products.
    """
    item = problem.itemsize
    B, C, H, W = problem.x_shape
    ho, wo = problem.out_hw
    (pt, pb), (pl, pr) = problem.pads
    x = B * C * H * W
    y = B * C * problem.N * ho * wo
    k = problem.KH * problem.KW
    elements = x * 2 + y * 2  # host copies made by the harness plus framework copies
    tags = set(strategy.tags)
    if "patches" in tags:
        elements += B * C * k * ho * wo
    if "fft" in tags:
        hp, wp = H + pt + pb, W + pl + pr
        spectrum = hp * (wp // 2 + 1) * 2  # complex
        elements += B * C * problem.N * spectrum + B * C * spectrum + B * C * problem.N * hp * wp
    if "elementwise" in tags:
        elements += y  # one tap product alive beside the accumulator
    if mode == "train":
        elements += y * 2 + x * 2  # dy, the gradient flowing back, dx
        if "patches" in tags:
            elements += B * C * k * ho * wo
        if "fft" in tags:
            elements += B * C * problem.N * (H + pt + pb) * (W + pl + pr) * 2
    # the oracle's reference copy, loaded as float64 by the worker (memory-mapped, but read whole)
    elements += y * 2
    worker_overhead = 1_500 * 2**20  # a framework runtime, compiled code, allocator pools
    return int(elements * item + worker_overhead)


def refuse_if_too_big(
    problem: ConvProblem,
    strategy: Strategy,
    mode: str,
    headroom: float = 0.8,
    have: int | None = None,
) -> str | None:
    """``have``: the memory available to a fresh worker, measured once when a run starts (the
    previous case's worker still holds its inputs while the next case is planned)."""
    need = estimate_bytes(problem, strategy, mode)
    have = available_bytes() if have is None else have
    if need > headroom * have:
        return (
            f"needs about {need / 2**30:.1f} GiB (inputs, outputs, {mode} temporaries), more than "
            f"{headroom:.0%} of the {have / 2**30:.1f} GiB available; not run, to keep the machine out of swap"
        )
    return None
