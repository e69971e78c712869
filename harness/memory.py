"""Memory: this process's resident set (Linux ``/proc``), and what a case will need.

The estimate lets the harness skip a case that would drive the machine into swap or the
OOM killer, with the reason, instead of losing the worker (and the minutes) to it.
"""

from __future__ import annotations

import math
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


def output_bytes(problem: ConvProblem, mode: str) -> int:
    """Bytes of what one call returns and holds when it ends: y, and dx, dw, db in train mode.

    Every honest peak is at least this (the lower-bound rule of docs/memory.md)."""
    elements = math.prod(problem.y_shape)
    if mode == "train":
        elements += math.prod(problem.x_shape) + math.prod(problem.w_shape)
        elements += problem.N if problem.bias else 0
    return elements * problem.itemsize


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


def estimate_bytes(
    problem: ConvProblem, strategy: Strategy, mode: str, checked_images: int | None = None
) -> int:
    """A deliberately generous estimate of a case's peak memory, worker included.

    Inputs, the output (twice: frameworks hold the previous result while computing the next),
    in train mode ``dy``, ``dx`` and saved activations, plus the known temporaries of the
    strategy's family, from its tags (``contract.TAGS``): the K*K patch tensor, FFT spectra,
    per-tap products. ``checked_images``: how many of the ``B*C`` images the oracle's
    reference holds (``execute.checked_images``; None: all of them), which the worker loads
    in float64 beside the strategy's outputs.
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
    # the oracle's reference copy, loaded as float64 by the worker (memory-mapped, but read
    # whole): for a huge problem only the sampled images' y (and dx), so the 100-channel
    # train step of the seed suite is not refused for a 6 GB copy the worker never loads
    share = 1.0 if checked_images is None else min(1.0, checked_images / (B * C))
    elements += int((y + (x if mode == "train" else 0)) * 2 * share)
    worker_overhead = 1_500 * 2**20  # a framework runtime, compiled code, allocator pools
    return int(elements * item + worker_overhead)


def refuse_if_too_big(
    problem: ConvProblem,
    strategy: Strategy,
    mode: str,
    headroom: float = 0.8,
    have: int | None = None,
    checked_images: int | None = None,
) -> str | None:
    """``have``: the memory available to a fresh worker, measured once when a run starts (the
    previous case's worker still holds its inputs while the next case is planned);
    ``checked_images`` as for :func:`estimate_bytes`."""
    need = estimate_bytes(problem, strategy, mode, checked_images)
    have = available_bytes() if have is None else have
    if need > headroom * have:
        return (
            f"needs about {need / 2**30:.1f} GiB (inputs, outputs, {mode} temporaries), more than "
            f"{headroom:.0%} of the {have / 2**30:.1f} GiB available; not run, to keep the machine out of swap"
        )
    return None
