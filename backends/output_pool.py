"""A caching pool for the native kernel's outputs: what a framework's caching allocator does
(PyTorch's CUDA allocator, TensorFlow's BFC pool), for NumPy arrays.

Why: under glibc's default ``malloc`` a block over its mmap threshold (at most 32 MiB) is a
fresh mapping on every call, whose pages the Linux kernel faults in and zeroes before the
kernel can write them. For the native kernel, whose every output byte is written once, that
costs as much as the computation on output-bound shapes (``scripts/bench_output_pool.py``:
the pooled kernel 1.18-1.86x faster on outputs over 32 MiB). A pool hands the same resident
memory back instead.

How: every array it lends is a view of one of its buffers (arrays that own their memory),
and NumPy collapses a view's ``base`` to the array that owns the memory, so anything that
can still reach the memory (the array, any view of it, a ``memoryview``, a
``torch.from_numpy`` tensor) holds a reference to that buffer. A buffer is lent again only
when the pool's own references are the only ones left: never while anything can read or
write it. Reuse is by exact size (a training loop asks for the same shapes every step); free
buffers over ``limit`` bytes (default: a quarter of the machine's memory, at least 2 GiB)
are dropped, oldest first. A caller that keeps many outputs
(a list of every batch's) does not make each lend slower: past ``MAX_LENT`` lent buffers the
oldest are let go, theirs to keep, and freed as any array when they are dropped.
"""

from __future__ import annotations

import math
import os
import threading
from sys import getrefcount
from typing import Any

import numpy as np

ENV_LIMIT = "SHAREDCONV_NATIVE_POOL_BYTES"
MIN_DEFAULT_LIMIT = 2 << 30  # the default limit on free bytes kept, at least


def default_limit() -> int:
    """A quarter of this machine's memory, at least 2 GiB: the seed's 100-channel forward
    writes a 3.07 GB output, and a fixed 2 GiB default dropped its buffer on every call, so
    each call's output was fresh memory again (the kernel 561 ms against 226 ms with the
    buffer kept: docs/performance.md)."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        memory = 0
    return max(MIN_DEFAULT_LIMIT, memory // 4)


ALIGN = 64  # a cache line: the kernel's vector stores never split one
MAX_LENT = 128  # lent buffers followed at most (each lend looks at every one of them)


def limit_from_env(environ: dict[str, str] | None = None) -> int:
    """The pool's limit on free bytes kept: ``SHAREDCONV_NATIVE_POOL_BYTES`` (0 keeps none,
    so every output is fresh memory again), else ``default_limit()``."""
    text = (os.environ if environ is None else environ).get(ENV_LIMIT, "").strip()
    if not text:
        return default_limit()
    try:
        value = int(float(text))
    except ValueError:
        raise ValueError(
            f"{ENV_LIMIT}={text!r} is not a number of bytes; set it to e.g. 1073741824 (1 GiB), "
            "0 to keep no free buffers, or unset it for the default (a quarter of this machine's "
            "memory, at least 2 GiB)"
        ) from None
    if value < 0:
        raise ValueError(f"{ENV_LIMIT}={text!r} is negative; use 0 to keep no free buffers")
    return value


class OutputPool:
    """Lends C-contiguous arrays backed by buffers it keeps for reuse (module docstring)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit_from_env() if limit is None else int(limit)
        self._lock = threading.Lock()
        # entries [buffer, offset of its first ALIGN boundary, bytes it lends]; lent ones may
        # still have arrays alive
        self._lent: list[list[Any]] = []
        # nbytes -> free entries; a size's list stays when empty (a loop takes and gives back
        # the same sizes every step); the dict's order is the sizes' last use, oldest first
        self._free: dict[int, list[list[Any]]] = {}
        self.free_bytes = 0
        self.in_use = 0  # bytes of lent buffers not yet seen returned
        self.peak = 0  # the most ``in_use`` since the last ``reset_peak``
        self.lends = 0
        self.reuses = 0

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype`` (as ``np.empty``)."""
        dtype = _DTYPES.get(dtype) or np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        with self._lock:
            if self._lent:
                self._reclaim()
            bucket = self._free.get(nbytes)
            if bucket:
                entry = bucket.pop()
                self.free_bytes -= nbytes
                self.reuses += 1
            else:
                buffer = np.empty(nbytes + ALIGN, np.uint8)
                entry = [buffer, (-buffer.ctypes.data) % ALIGN, nbytes]
                del buffer
            self._lent.append(entry)
            self.lends += 1
            self.in_use += nbytes
            if self.in_use > self.peak:
                self.peak = self.in_use
            # one view of the buffer (its base: the buffer), starting on an ALIGN boundary;
            # made under the lock: until it exists, another thread's look would find the buffer
            # held by the pool alone, and lend it again
            return _view(shape, dtype, entry[0], entry[1])

    def _reclaim(self) -> None:
        """Move every lent buffer nothing outside the pool references to the free lists."""
        still = []
        free = self._free
        for entry in self._lent:
            # the buffer's references: its entry's, getrefcount's argument
            if getrefcount(entry[0]) > 2:
                still.append(entry)
                continue
            nbytes = entry[2]
            self.in_use -= nbytes
            if nbytes <= self.limit:
                bucket = free.pop(nbytes, None) or []
                bucket.append(entry)
                free[nbytes] = bucket  # re-inserted: now the most recently used size
                self.free_bytes += nbytes
        if len(still) > MAX_LENT:  # the oldest are the caller's now (module docstring)
            for entry in still[:-MAX_LENT]:
                self.in_use -= entry[2]
            still = still[-MAX_LENT:]
        self._lent = still
        while self.free_bytes > self.limit:
            nbytes, bucket = next((n, b) for n, b in free.items() if b)
            bucket.pop(0)
            self.free_bytes -= nbytes

    def reset_peak(self) -> int:
        """Bring the books up to date and start a new peak; returns the bytes in use now."""
        with self._lock:
            self._reclaim()
            self.peak = self.in_use
            return self.in_use

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "in_use": self.in_use,
                "peak": self.peak,
                "free_bytes": self.free_bytes,
                "limit": self.limit,
                "lends": self.lends,
                "reuses": self.reuses,
            }


_view = np.ndarray  # (a name of this module's: a test slows it down)
# the dtypes the kernel asks for, made once (np.dtype() costs a lend's tenth)
_DTYPES: dict[Any, np.dtype] = {t: np.dtype(t) for t in (np.float32, np.float64)}
