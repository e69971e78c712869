"""Timing one prepared case inside its worker.

Protocol (setup and the first call are timed by the caller, before this runs):

1. warm-up: at least ``warmup_calls`` calls and ``warmup`` seconds (default: a tenth of the
   budget, at most 0.2 s), each synchronized;
2. memory: the resident-set high-water mark is reset, one call runs, and the peak above the
   post-setup baseline is read (Linux ``/proc``; ``None`` elsewhere);
3. overhead: the cost of reading the clock and synchronizing an already-finished output;
4. block size: calls per timed block, grown until that overhead is under 1% of a block;
5. steady state: blocks of calls with one synchronization per block (every call's outputs
   released inside the block), until the median's 95%
   confidence interval is within ±``precision`` of it (at least ``min_samples`` blocks) or
   the ``budget`` is spent. Raw per-call block times are returned, with the page faults per
   call and the kernel's share of the CPU time over the same blocks (:func:`fault_counts`).

The clock is a parameter so the rules can be tested with a fake one.
"""

from __future__ import annotations

import functools
import gc
import math
import resource
import time
from collections.abc import Callable
from typing import Any

from .allocators import Trimmer
from .memory import peak_rss_since_reset, reset_peak_rss, rss_bytes
from .stats import block_size_for, precise_enough, summarize

DEFAULTS = {
    "budget": 2.0,
    "precision": 0.02,
    "min_samples": 5,
    "max_samples": 200,
    "warmup": None,  # None: min(0.2, budget / 10)
    "warmup_calls": 2,
    "max_overhead": 0.01,
    # Sampling lasts at least this long, however precise the first samples look: None, a
    # quarter of the budget. This machine runs in spells of two speeds lasting a second or so;
    # five samples of a 0.3 ms call (1.5 ms) caught whichever spell was on (docs/allocator.md).
    "min_window": None,
}


# A call that faults in more fresh pages than this (1 MiB) per call is flagged: its time is
# partly the kernel zeroing pages, which the allocator decides (docs/allocator.md).
FAULTS_FLAG_PER_CALL = 256


def usage() -> tuple[int, int, float, float]:
    """This process's (minor faults, major faults, user s, system s), every thread counted."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_minflt, r.ru_majflt, r.ru_utime, r.ru_stime


def fault_counts(
    before: tuple[int, int, float, float], after: tuple[int, int, float, float], calls: int
) -> dict[str, Any]:
    """Page faults per call and the kernel's share of the CPU time between two ``usage()``.

    The kernel share is the part of the call's CPU time spent in the kernel; for these calls
    that is almost all page faults (zeroing fresh pages), so it says how much of the time the
    allocator, not the convolution, decides.
    """
    minor, major = after[0] - before[0], after[1] - before[1]
    user, system = after[2] - before[2], after[3] - before[3]
    cpu = user + system
    per_call = minor / calls if calls else 0.0
    return {
        "calls": calls,
        "minor_per_call": per_call,
        "major_per_call": major / calls if calls else 0.0,
        "kernel_share": system / cpu if cpu > 0 else None,
        "flagged": per_call >= FAULTS_FLAG_PER_CALL,
    }


def sync_overhead(sync: Callable[[], None], clock: Callable[[], float], repeats: int = 25) -> float:
    """Median seconds for a clock read pair plus one synchronize of finished work."""
    values = []
    for _ in range(repeats):
        t0 = clock()
        sync()
        values.append(clock() - t0)
    values.sort()
    return values[len(values) // 2]


def timed_block(
    call: Callable[[], Any], sync: Callable[[Any], None], calls: int, clock: Callable[[], float]
) -> float:
    """Seconds for ``calls`` calls and one synchronize of the last: one timed block."""
    t0 = clock()
    for _ in range(calls - 1):
        call()
    out = call()
    sync(out)
    # Released inside the block, as every other call's output is: a loop that drops its
    # result pays for the free (unmapping a large output costs milliseconds), whatever the
    # block size.
    del out
    return clock() - t0


def steady_state(
    call: Callable[[], Any],
    sync: Callable[[Any], None],
    options: dict[str, Any],
    clock: Callable[[], float] = time.perf_counter,
    first_call_seconds: float | None = None,
    counters: Callable[[], tuple[int, int, float, float]] = usage,
) -> dict[str, Any]:
    """Warm-up, overhead, block size and the sampling loop; returns the timing record."""
    opt = {**DEFAULTS, **(options or {})}
    budget = float(opt["budget"])
    warmup = float(opt["warmup"]) if opt["warmup"] is not None else min(0.2, budget / 10)
    start = clock()

    # 1. warm-up
    calls = 0
    t0 = clock()
    last = call()
    sync(last)
    one_call = clock() - t0
    calls += 1
    while calls < int(opt["warmup_calls"]) or (clock() - start < warmup and calls < 1000):
        t0 = clock()
        last = call()
        sync(last)
        one_call = min(one_call, clock() - t0)
        calls += 1
    warmup_seconds = clock() - start

    # 3-4. overhead and block size
    held = [last]  # a finished output: synchronizing it costs only the overhead
    del last
    overhead = sync_overhead(lambda: sync(held[0]), clock)
    held.clear()
    # the warm-up timed call plus sync; the overhead part of it is not work
    work = max(one_call - overhead, one_call * 0.01)
    block = block_size_for(work, overhead, float(opt["max_overhead"]))
    max_samples = int(opt["max_samples"])
    min_window = float(opt["min_window"]) if opt["min_window"] is not None else budget / 4
    if one_call > 0:
        # blocks long enough that max_samples of them span the budget, so the sample count
        # never ends a window of short calls long before the budget would
        block = max(block, math.ceil(budget / max_samples / one_call))
        # never plan a block that alone would exceed a fifth of the budget
        block = max(1, min(block, int(budget / 5 / one_call) or 1))

    # 5. sampling
    samples: list[float] = []
    blocks: list[float] = []
    t_loop = clock()
    stopped = "budget"
    counted_from = counters()
    while True:
        elapsed = timed_block(call, sync, block, clock)
        blocks.append(elapsed)
        samples.append(elapsed / block)
        if len(samples) >= int(opt["min_samples"]):
            elapsed_loop = clock() - t_loop
            if elapsed_loop >= min_window and precise_enough(
                samples, float(opt["precision"]), int(opt["min_samples"])
            ):
                stopped = "precision"
                break
            if elapsed_loop >= budget:
                break
            if len(samples) >= max_samples:
                stopped = "max_samples"
                break
    faults = fault_counts(counted_from, counters(), block * len(blocks))
    stats = summarize(samples)
    return {
        "warmup_s": warmup_seconds,
        "warmup_calls": calls,
        "overhead_s": overhead,
        "block_size": block,
        "overhead_fraction": overhead / (block * stats.median) if stats.median > 0 else None,
        "block_times": blocks,
        "stats": stats.to_dict(),
        "stopped_by": stopped,
        "steady_s": clock() - t_loop,
        "faults": faults,
    }


UNAVAILABLE = {"peak_bytes": None, "method": "unavailable (needs Linux /proc/self/clear_refs)"}


def _rss_over(
    call: Callable[[], Any], sync: Callable[[Any], None]
) -> tuple[Any, float, int | None, str | None]:
    """One call with the allocators' free memory handed back first: its outputs, its seconds,
    the peak RSS over it above the RSS just before it (None off Linux), and how memory was
    handed back."""
    gc.collect()
    trimmed = _trimmer().trim()
    baseline = rss_bytes()
    ok = baseline is not None and reset_peak_rss()
    t0 = time.perf_counter()
    out = call()
    sync(out)
    seconds = time.perf_counter() - t0
    peak = peak_rss_since_reset() if ok else None
    grew = max(0, peak - baseline) if peak is not None and baseline is not None else None
    return out, seconds, grew, trimmed


def measure_memory(call: Callable[[], Any], sync: Callable[[Any], None]) -> dict[str, Any]:
    """Peak resident memory of one call above the resident set just before it.

    Runs after the first call (compilation done, outputs released), with the allocator's free
    memory handed back first (see :class:`~sharedconv.harness.allocators.Trimmer`), so outputs
    and temporaries show up in the high-water mark even when the allocator is warm.
    """
    out, _, grew, trimmed = _rss_over(call, sync)
    del out
    if grew is None:
        return dict(UNAVAILABLE)
    method = "VmHWM over one call minus the RSS before it (Linux /proc, reset via clear_refs)"
    if trimmed:
        method += f"; free allocator memory handed back ({trimmed}) before that call"
    else:
        method += "; allocator caches may hide reused memory"
    return {"peak_bytes": grew, "method": method}


@functools.cache
def _trimmer() -> Trimmer:
    return Trimmer()


def allocator_peak(call: Callable[[], Any], sync: Callable[[Any], None]) -> dict[str, Any] | None:
    """The allocator's own accounting of one warm call (``Trimmer.allocator_peak``: jemalloc's
    ``thread.peak``, tcmalloc's hooks), or None under glibc. ``all_threads``: whether it counts
    what every thread allocates (tcmalloc) or the calling thread's alone (jemalloc)."""

    def run() -> None:
        sync(call())

    got = _trimmer().allocator_peak(run)
    if got is None:
        return None
    return {"peak_bytes": got[0], "method": got[1], "all_threads": got[2]}


def first_call_memory(
    call: Callable[[], Any], sync: Callable[[Any], None]
) -> tuple[Any, float, dict[str, Any]]:
    """The case's first call, with the peak RSS over it above the RSS just before it.

    The *cold* method: the call compiles (JAX, TensorFlow) and fills the allocators' pools, so
    this counts compilation and the call's buffers as the process first had to find them; an
    earlier case's pool in the same worker can still serve part of it. Returns the outputs
    (the ones verified) and the call's seconds too."""
    out, seconds, grew, _ = _rss_over(call, sync)
    if grew is None:
        return out, seconds, dict(UNAVAILABLE)
    method = "first call: VmHWM over the case's first call (compilation included) minus the RSS before it"
    return out, seconds, {"peak_bytes": grew, "method": method}


# why a reading below the floor is rejected
UNSEEN = (
    "the call's own outputs: memory the call used was not seen (served from memory already "
    "resident: a pool an earlier call filled, or pages the allocator already had in use)"
)


def measure_peak(
    backend: Any,
    fn: Callable[[], Any],
    device: str,
    floor: int | None = None,
    first_call: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One warm call's peak memory, by every method this backend and device allow, checked.

    The methods: the framework's own accounting (``backend.device_memory``: GPU counters,
    TensorFlow's allocator statistics, XLA's plan), and on the CPU the process RSS over one
    call. A result below ``floor`` (the bytes of the call's own outputs) missed memory and is
    rejected with the reason. The first method that passes is the case's peak, in this order:

    - on a GPU: the framework's counters;
    - on the CPU, for a framework whose statistics describe a pool of its own
      (``adds_to_rss``: TensorFlow with oneDNN): the pool's statistics plus the warm call's RSS,
      disjoint parts of one call (the pool's blocks were resident before the call; what the
      framework allocates outside the pool is in the RSS); next, where the allocator counts every
      thread's blocks (tcmalloc, whose resident lists hide small blocks from the RSS), the pool's
      statistics plus that count; then each alone;
    - on the CPU otherwise: the RSS (it sees every allocator of the process), then the
      framework's accounting (XLA's plan);
    - on the CPU, last: the allocator's own accounting (jemalloc: of the calling thread, blind
      to the framework's own threads; tcmalloc: of every thread), independent of the RSS.

    ``first_call`` (the cold probe) is kept beside them for the cross-check and never chosen:
    it includes compilation.
    """
    framework = backend.device_memory(fn)  # the contract's optional hook (None by default)
    framework = {"source": "framework", **framework} if framework is not None else None
    rss = measure_memory(fn, backend.synchronize) if device == "cpu" else None
    rss = {"source": "rss", **rss} if rss is not None else None
    heap = allocator_peak(fn, backend.synchronize) if device == "cpu" else None
    heap = {"source": "allocator", **heap} if heap is not None else None
    candidates: list[dict[str, Any]] = []
    if device != "cpu":
        candidates = [framework]
    elif framework is not None and framework.get("adds_to_rss") and rss is not None:
        pool = framework.get("peak_bytes") or 0
        combined = {
            "source": "framework+rss",
            "peak_bytes": pool + (rss.get("peak_bytes") or 0),
            "method": "the framework pool's statistics plus the RSS over a warm call (the pool's "
            "blocks, and what the framework allocates outside the pool)",
        }
        candidates = [combined, rss, framework, heap]
        if heap is not None and heap.get("peak_bytes") is not None and heap.get("all_threads"):
            # an allocator that keeps freed small blocks resident (tcmalloc) hides them from the
            # RSS; a count of every thread's blocks sees them (a calling thread's count alone,
            # jemalloc's, would miss TensorFlow's ops: they run in threads of its own)
            candidates.insert(
                1,
                {
                    "source": "framework+allocator",
                    "peak_bytes": pool + heap["peak_bytes"],
                    "method": "the framework pool's statistics plus the allocator's count of every "
                    "thread's blocks allocated over a warm call (the pool's blocks, and what the "
                    "framework allocates outside the pool)",
                },
            )
    else:
        candidates = [rss, framework, heap]
    found = [m for m in candidates if m is not None]
    if first_call is not None:
        found.append({"source": "first_call", **first_call})
    chosen = None
    for m in found:
        peak = m.get("peak_bytes")
        if peak is None:
            continue
        if floor and peak < floor:
            m["rejected"] = f"{peak:,} bytes is below the {floor:,} bytes of {UNSEEN}"
        elif chosen is None and m["source"] != "first_call":
            chosen = m
    if chosen is not None:
        return {"peak_bytes": chosen["peak_bytes"], "method": chosen["method"], "methods": found}
    tried = [m for m in found if m["source"] != "first_call"]
    if tried and all(m.get("rejected") for m in tried):  # said once, with every reading
        readings = ", ".join(f"{m['source']} {m['peak_bytes']:,}" for m in tried)
        reason = f"every method read below the {floor:,} bytes of {UNSEEN} ({readings} bytes)"
    else:
        reason = "; ".join(
            f"{m['source']}: {m.get('rejected') or m.get('method', '')}" for m in tried
        )
    return {
        "peak_bytes": None,
        "method": "unknown",
        "unknown_reason": reason or "no method available here",
        "methods": found,
    }


def measure(
    backend: Any,
    fn: Callable[[], Any],
    options: dict[str, Any],
    device: str = "cpu",
    floor: int | None = None,
    first_call: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything after the first call: memory, then steady-state timing."""
    memory = measure_peak(backend, fn, device, floor, first_call)
    timing = steady_state(fn, backend.synchronize, options)
    return {"memory": memory, "timing": timing}
