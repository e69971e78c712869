"""The C allocator a worker runs with: a measured dimension, not an accident of the machine.

Why it matters (docs/allocator.md has the numbers): PyTorch, XLA (JAX, TensorFlow's
``jit_compile``) and TensorFlow's CPU kernels take their large outputs and scratch buffers
from ``malloc``. Under glibc's defaults a block over the mmap threshold (at most 32 MiB) is a
fresh mapping on every call, so the kernel zeroes every page of it again: on this project's
2-core machine torch's ``fold`` on ``B=4,C=32,H=64,N=16,K=5`` took 32.2 ms with 14,368 page
faults per call under glibc's defaults and 6.5 ms with none under jemalloc, and the fastest
strategy changed with the allocator on 7 of 10 problems.

Each choice is an environment for the worker (variables and a preloaded library), applied
before the framework starts. ``system`` leaves the user's environment as it is (the
out-of-the-box number); every other choice first removes the inherited allocator settings
(``LD_PRELOAD``, ``MALLOC_*``, ``GLIBC_TUNABLES``, ``TCMALLOC_*``) so that exactly the named
allocator is measured. The worker checks what it really got (:func:`probe`): which library
serves ``malloc`` and whether a freed 64 MiB block is reused (its touch faults under an
eighth of the pages a fresh one does).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Where Debian, Ubuntu, Fedora and most other distributions put shared libraries.
LIBRARY_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/lib/x86_64-linux-gnu",
    "/lib64",
)

if TYPE_CHECKING:
    from .records import RunMeta


class AllocatorError(ValueError):
    """An allocator that cannot be used here; the message names the fix."""


@dataclass(frozen=True)
class Allocator:
    name: str
    summary: str
    env: dict[str, str] = field(default_factory=dict)
    library: str | None = None  # the shared object preloaded into the worker
    install: str = ""  # how to get the library, for the error message
    inherit: bool = False  # keep the user's allocator settings (``system`` only)

    def library_path(self) -> str | None:
        """The library's absolute path, or None when it is not installed."""
        if self.library is None:
            return None
        override = os.environ.get(f"SHAREDCONV_{self.name.upper()}_LIBRARY")
        if override:
            return override if Path(override).is_file() else None
        for d in LIBRARY_DIRS:
            p = Path(d) / self.library
            if p.is_file():
                return str(p)
        return None

    def available(self) -> str | None:
        """None when usable, else why not and how to install it."""
        if self.library is None or self.library_path() is not None:
            return None
        return (
            f"--malloc {self.name} needs {self.library}, which is not installed here: {self.install} "
            f"(or point SHAREDCONV_{self.name.upper()}_LIBRARY at the file); "
            f"--malloc system measures without it"
        )

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` (the worker's environment) with this allocator applied."""
        env = dict(base)
        if not self.inherit:
            for key in [k for k in env if is_allocator_setting(k)]:
                del env[key]
        env.update(self.env)
        if self.library is not None:
            path = self.library_path()
            if path is None:
                raise AllocatorError(self.available() or self.name)
            env["LD_PRELOAD"] = path
        return env

    def settings(self) -> dict[str, str]:
        """What a run records: the variables and the preloaded file."""
        out = dict(self.env)
        if self.library is not None:
            out["LD_PRELOAD"] = self.library_path() or f"{self.library} (not installed)"
        return out

    def how_to_get(self) -> str:
        """The shell prefix that gives a script of yours this allocator."""
        return " ".join(f"{k}={v}" for k, v in self.settings().items())


INHERITED_KEYS = ("LD_PRELOAD", "GLIBC_TUNABLES", "MALLOC_CONF", "JE_MALLOC_CONF")


def is_allocator_setting(key: str) -> bool:
    """An environment variable that changes which allocator runs or how it behaves."""
    return key in INHERITED_KEYS or key.startswith(("MALLOC_", "TCMALLOC_"))


ALLOCATORS: dict[str, Allocator] = {
    a.name: a
    for a in (
        Allocator(
            "jemalloc",
            "jemalloc, preloaded, with page purging off: a freed block's pages stay mapped and "
            "are reused, so a steady call does not fault (its default purges large blocks at "
            "once and faults like glibc)",
            env={"MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"},
            library="libjemalloc.so.2",
            install="apt-get install libjemalloc2 (Debian/Ubuntu), dnf install jemalloc (Fedora)",
        ),
        Allocator(
            "tcmalloc",
            "tcmalloc (gperftools, minimal), preloaded with its defaults",
            library="libtcmalloc_minimal.so.4",
            install="apt-get install libtcmalloc-minimal4 (Debian/Ubuntu), dnf install gperftools-libs (Fedora)",
        ),
        Allocator(
            "glibc-tuned",
            "glibc with large blocks kept on one heap: no mmap (MALLOC_MMAP_MAX_=0), never "
            "trimmed, one arena (framework threads would otherwise get arenas of their own, "
            "whose large blocks are still fresh mappings)",
            env={
                "MALLOC_MMAP_MAX_": "0",
                "MALLOC_TRIM_THRESHOLD_": str(2**62),
                "MALLOC_ARENA_MAX": "1",
            },
        ),
        Allocator(
            "system",
            "as your environment has it (glibc's defaults unless you preload or tune something): "
            "large outputs may be fresh mappings, page faults included, on every call",
            inherit=True,
        ),
        Allocator(
            "fixed",
            "glibc with its mmap/trim thresholds set to 32/64 MiB (the first wave's setting, "
            "kept to reproduce its runs): blocks over 32 MiB still fault on every call",
            env={
                "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
                "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20),
            },
        ),
    )
}

# The default: every framework's best steady state on this project's machines (0 page faults
# per call for every framework measured in docs/allocator.md). Without jemalloc installed, the
# tuned glibc gets the same 0 faults with nothing to install.
DEFAULT = "jemalloc"
FALLBACK = "glibc-tuned"


def get(name: str) -> Allocator:
    try:
        return ALLOCATORS[name]
    except KeyError:
        raise AllocatorError(
            f"unknown allocator {name!r}; valid: {', '.join(ALLOCATORS)}"
        ) from None


def parse(text: str | None) -> list[str]:
    """``--malloc`` as given: a comma-separated list, checked for existence and availability.
    ``None`` or ``default`` means :data:`DEFAULT`, or :data:`FALLBACK` when it is missing."""
    if text is None or text.strip() in ("", "default"):
        return [default()]
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise AllocatorError("--malloc needs at least one allocator name")
    out = []
    for n in names:
        if n == "default":
            n = default()
        why = get(n).available()
        if why:
            raise AllocatorError(why)
        if n not in out:
            out.append(n)
    return out


def default() -> str:
    return DEFAULT if get(DEFAULT).available() is None else FALLBACK


def choice_note(mallocs: list[str], asked: str | None) -> str:
    """The console's line about the allocators of a run, with the fallback said."""
    text = f"allocator: {', '.join(mallocs)}"
    if asked is None and mallocs == [FALLBACK]:
        text += (
            f" (the default, {DEFAULT}, is not installed: {get(DEFAULT).install}; "
            f"{FALLBACK} needs nothing installed and also reuses freed memory)"
        )
    return text


def describe(name: str) -> dict[str, object]:
    """What a run records about one allocator it measured with."""
    a = ALLOCATORS.get(name)
    if a is None:
        return {"name": name, "summary": "unknown to this version of sharedconv"}
    return {"name": name, "summary": a.summary, "settings": a.settings()}


# ---- inside the worker -----------------------------------------------------------------
def _mapped_library() -> str | None:
    """The preloaded allocator library mapped into this process, by file name."""
    try:
        text = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        path = line.split()[-1] if len(line.split()) >= 6 else ""
        base = os.path.basename(path)
        if base.startswith(("libjemalloc", "libtcmalloc")):
            return path
    return None


def serving_library() -> str:
    """Which allocator serves this process's ``malloc`` (symbol lookup, then the mapping)."""
    me = ctypes.CDLL(None)
    if hasattr(me, "mallctl"):
        return "jemalloc"
    if hasattr(me, "MallocExtension_ReleaseFreeMemory") or hasattr(me, "tc_malloc"):
        return "tcmalloc"
    return "glibc"


def _faults() -> int:
    """Minor page faults of the calling thread so far (the process's where Linux's per-thread
    count is missing): other threads' faults are not the probe's."""
    who = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)
    return resource.getrusage(who).ru_minflt


def reuse_faults(size: int = 64 * 2**20) -> tuple[int, int]:
    """Minor page faults of touching a ``size`` block, then of touching a block of the same
    size malloc'ed right after the first was freed: ``(first, reuse)``. An allocator that
    reuses freed memory faults ``reuse`` near 0 (a page of its own bookkeeping may fault);
    one that maps every large block afresh (glibc's defaults over its mmap threshold) faults
    ``reuse`` about as often as ``first``: ``size / 4096`` small pages, far fewer with
    transparent huge pages. (-1, -1) when malloc fails."""
    me = ctypes.CDLL(None)
    me.malloc.restype = ctypes.c_void_p
    me.malloc.argtypes = [ctypes.c_size_t]
    me.free.argtypes = [ctypes.c_void_p]
    counts = []
    for fill in (1, 2):
        block = me.malloc(size)
        if not block:
            return -1, -1
        before = _faults()
        ctypes.memset(block, fill, size)
        counts.append(_faults() - before)
        me.free(block)
    return counts[0], counts[1]


def reuses_freed(first: int, reuse: int) -> bool:
    """Whether the probe's second block came from the freed first one: it faulted under an
    eighth of what the first touch did (or nothing, when the first was not fresh either)."""
    return reuse >= 0 and (reuse == 0 or reuse * 8 < first)


def probe() -> dict[str, object]:
    """What this process really runs with (recorded per worker, checked by the tests)."""
    facts: dict[str, object] = {
        "serving": serving_library(),
    }
    first, reuse = reuse_faults()
    facts.update(
        first_touch_faults_64MiB=first,
        reuse_faults_64MiB=reuse,
        reuses_freed=reuses_freed(first, reuse),
    )
    mapped = _mapped_library()
    if mapped:
        facts["library"] = mapped
    env = {k: v for k, v in sorted(os.environ.items()) if v and is_allocator_setting(k)}
    if env:
        facts["environment"] = env
    return facts


class Trimmer:
    """Hands free allocator memory back to the kernel before a memory measurement, whichever
    allocator serves this process, so a warm pool cannot hide a call's outputs from the RSS.

    glibc: ``malloc_trim(0)``; jemalloc: ``mallctl("arena.<all>.purge")``; tcmalloc:
    ``MallocExtension_ReleaseFreeMemory()``. Setting thresholds (``mallopt``) is avoided: it
    would change the timings of every later case in the worker.
    """

    def __init__(self) -> None:
        self.kind = serving_library()
        self._me = ctypes.CDLL(None)
        self._mallctl = None
        if self.kind == "jemalloc":
            self._mallctl = self._me.mallctl
            self._mallctl.argtypes = [
                ctypes.c_char_p,
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_size_t,
            ]
        name = ctypes.util.find_library("c")
        self._libc = None
        if name:
            try:
                libc = ctypes.CDLL(name)
                libc.malloc_trim  # noqa: B018 - glibc only
                self._libc = libc
            except (OSError, AttributeError):
                self._libc = None

    def trim(self) -> str | None:
        """Hand back what can be handed back; returns how, or None when nothing could."""
        how = []
        if self._mallctl is not None:
            mallctl = self._mallctl
            # this thread's cache first (blocks up to 32 KiB a call would reuse unseen), then
            # every arena (MALLCTL_ARENAS_ALL is 4096 in jemalloc 5)
            if mallctl(b"thread.tcache.flush", None, None, None, 0) == 0:
                how.append("jemalloc thread cache flushed")
            if mallctl(b"arena.4096.purge", None, None, None, 0) == 0:
                how.append("jemalloc arenas purged")
        elif self.kind == "tcmalloc":
            self._me.MallocExtension_ReleaseFreeMemory()
            how.append("tcmalloc free memory released")
        if self._libc is not None:
            self._libc.malloc_trim(0)
            how.append("malloc_trim")
        return ", ".join(how) or None

    def allocator_peak(self, call: Callable[[], Any]) -> tuple[int, str, bool] | None:
        """The allocator's own count of the bytes in use over ``call`` (allocated less freed,
        size-class rounding included), what it counts, and whether it counts every thread's
        allocations; None under glibc, which keeps no such count. Allocator accounting, not
        resident pages: independent of the RSS.

        - jemalloc (5.3+): ``thread.peak``, the calling thread's allocations only (not what a
          framework allocates in threads of its own);
        - tcmalloc: its new/delete hooks (``harness/malloc_peak.c``), every thread's, and only
          blocks allocated during ``call`` (one freed then that was held before does not lower
          the count).
        """
        if self._mallctl is not None:
            mallctl = self._mallctl
            if mallctl(b"thread.peak.reset", None, None, None, 0) != 0:
                return None  # a jemalloc before 5.3
            call()
            value, size = ctypes.c_uint64(0), ctypes.c_size_t(8)
            if mallctl(b"thread.peak.read", ctypes.byref(value), ctypes.byref(size), None, 0):
                return None
            return int(value.value), JEMALLOC_PEAK, False
        hooks = _hook_counter() if self.kind == "tcmalloc" else None
        if hooks is None or not hooks.sc_peak_begin():
            return None
        try:
            call()
        finally:
            peak = int(hooks.sc_peak_end())
        return (peak, TCMALLOC_PEAK, True) if peak >= 0 else None  # -1: more than it holds


JEMALLOC_PEAK = (
    "jemalloc's peak of bytes allocated (less freed) by the calling thread over one warm call "
    "(thread.peak; size-class rounding included, the framework's own threads not seen)"
)
TCMALLOC_PEAK = (
    "tcmalloc's peak of bytes in blocks allocated during one warm call and not yet freed, by "
    "every thread, counted by its new/delete hooks (allocated sizes; memory a framework serves "
    "from a pool of its own not seen)"
)


@functools.cache
def _hook_counter() -> ctypes.CDLL | None:
    """``harness/malloc_peak.c`` as built by setup.py, when it was and the allocator of this
    process offers the hooks it counts with."""
    from ..backends.native_backend import library_file

    path = library_file("_malloc_peak", Path(__file__).resolve().parent)
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError:
        return None
    lib.sc_peak_end.restype = ctypes.c_longlong
    return lib if lib.sc_peak_available() else None


# ---- words for people ------------------------------------------------------------------
def run_text(meta: RunMeta) -> str:
    """Which allocators a stored run measured under, in a sentence (Markdown-free)."""
    value = meta.malloc
    if value is None:
        return (
            "not recorded (a run from before --malloc): its memory probe fixed glibc's "
            "thresholds at 32/64 MiB before every timing, as --malloc fixed does; blocks over "
            "32 MiB were fresh mappings, page faults included, on every call."
        )
    names = value if isinstance(value, list) else [value]
    parts = []
    for name in names:
        a = ALLOCATORS.get(name)
        parts.append(f"{name} ({a.summary})" if a else f"{name} (unknown to this version)")
    lead = "every case under each of: " if len(names) > 1 else ""
    return lead + "; ".join(parts) + "."


def probe_text(probe: object) -> str:
    """What a worker's allocator probe found, in words."""
    if not probe:
        return "not probed"
    if not isinstance(probe, dict) or "serving" not in probe:
        # runs from before the probe stored the environment's allocator settings
        if isinstance(probe, dict):
            return ", ".join(f"{k}={v}" for k, v in probe.items())
        return str(probe)
    faults = probe.get("reuse_faults_64MiB")
    first = probe.get("first_touch_faults_64MiB")
    reused = probe.get("reuses_freed")
    if reused is None and isinstance(faults, int):  # runs from before the first-touch count
        reused = faults == 0
    if not isinstance(faults, int) or faults < 0:
        reuse = "reuse not measured"
    elif reused:
        reuse = "a freed 64 MiB block is reused"
        if faults:
            plural = "" if faults == 1 else "s"
            reuse += f" ({faults:,} page fault{plural} against {first:,} on first touch)"
        else:
            reuse += " without faults"
    else:
        reuse = f"a freed 64 MiB block faults {faults:,} pages when reused"
    return f"malloc served by {probe['serving']}, {reuse}"
