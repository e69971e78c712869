"""The ``native`` backend: sharedconv's own CPU kernel (``backends/native_kernel.cpp``).

No framework offers a kernel for this operation: they reshape it into a Conv2D/Conv3D of
one channel, or into shifted multiply-adds, and either pay for a layout or for reading
the input K*K times. The kernel computes all N filters from a tile of one channel's padded
rows kept in cache, with the outputs of a tile in vector registers, and writes every output
once (the source explains the tiling; docs/performance.md what it reaches and why).

It is built at install time by ``setup.py`` into plain shared libraries (baseline and, on
x86-64, AVX2+FMA and AVX-512) loaded here with ctypes; the arrays are NumPy arrays, so the strategy's
inputs are the harness's own canonical arrays and its outputs need no conversion.

Two strategies run the kernel: ``direct`` writes into ``np.empty`` arrays (the process's
malloc, page faults and all under glibc's defaults), ``direct_pooled`` into arrays from a
caching pool (``output_pool.py``), the way the frameworks' own allocators keep memory.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.machinery
import os
import platform
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .contract import Backend, Strategy, StrategyTable
from .output_pool import OutputPool, limit_from_env
from .problem import ConvProblem

ABI_VERSION = 1
HERE = Path(__file__).resolve().parent
SOURCE = HERE / "native_kernel.cpp"
BUILD_HINT = "pip install --force-reinstall --no-deps sharedconv (or `pip install -e .` in a checkout); the build needs g++ with OpenMP"
_DTYPES = {"float32": ("f32", np.float32), "float64": ("f64", np.float64)}


class NativeLibraryError(RuntimeError):
    """The kernel library is missing, stale, or not loadable on this CPU."""


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags from ``cpuinfo`` (/proc/cpuinfo's text; read when None): what
    decides which builds run here, and what a run records as the machine's vector ISA
    (``harness.machine.vector_isa``)."""
    if cpuinfo is None:
        return set(_this_cpu_flags())
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


@cache
def _this_cpu_flags() -> frozenset[str]:
    try:
        return frozenset(cpu_flags(Path("/proc/cpuinfo").read_text()))
    except OSError:
        return frozenset()


def library_file(stem: str, folder: Path = HERE) -> Path | None:
    """The compiled library ``stem`` in ``folder`` (an extension setup.py built), if there."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.exists():
            return path
    return None


BUILDS = {"avx512": "_native_avx512", "avx2": "_native_avx2", "baseline": "_native_baseline"}
AVX512 = {"avx512f", "avx512vl", "avx512bw", "avx512dq"}


def _candidates() -> list[str]:
    """The builds this CPU can run, best first; ``SHAREDCONV_NATIVE_BUILD=baseline`` (or
    ``avx2``, ``avx512``) asks for one build, e.g. to compare them."""
    wanted = os.environ.get("SHAREDCONV_NATIVE_BUILD", "").strip().lower()
    if wanted:
        if wanted not in BUILDS:
            raise NativeLibraryError(
                f"SHAREDCONV_NATIVE_BUILD={wanted!r} is not a build; use one of {', '.join(BUILDS)} or unset it"
            )
        return [BUILDS[wanted]]
    names = []
    flags = cpu_flags()
    if platform.machine().lower() in ("x86_64", "amd64") and {"avx2", "fma"} <= flags:
        if AVX512.issubset(flags):
            names.append("_native_avx512")
        names.append("_native_avx2")
    names.append("_native_baseline")
    return names


def open_library(path: Path, source: Path = SOURCE) -> ctypes.CDLL:
    """One build of the kernel, checked against this module's ABI and, in a checkout (where
    ``source`` exists), against the source it was built from."""
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise NativeLibraryError(
            f"the kernel library {path.name} does not load ({exc}); rebuild it: {BUILD_HINT}"
        ) from None
    lib.sc_abi_version.restype = ctypes.c_int
    if lib.sc_abi_version() != ABI_VERSION:
        raise NativeLibraryError(
            f"the kernel library {path.name} was built for another version of sharedconv; rebuild it: {BUILD_HINT}"
        )
    lib.sc_source_sha.restype = ctypes.c_char_p
    if source.exists():
        built = lib.sc_source_sha().decode()
        if built != hashlib.sha256(source.read_bytes()).hexdigest()[:16]:
            raise NativeLibraryError(
                f"the kernel library {path.name} was built from another {source.name} than this "
                f"checkout's (edited since?); rebuild it: {BUILD_HINT}"
            )
    lib.sc_build.restype = ctypes.c_char_p
    lib.sc_openmp.restype = ctypes.c_int
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    for suffix in ("f32", "f64"):
        getattr(lib, f"sc_forward_{suffix}").argtypes = [pointer] * 5 + [integer]
        getattr(lib, f"sc_forward_{suffix}").restype = None
        getattr(lib, f"sc_backward_{suffix}").argtypes = [pointer] * 7 + [integer]
        getattr(lib, f"sc_backward_{suffix}").restype = None
    return lib


@cache
def load_library() -> ctypes.CDLL:
    """The best build of the kernel this CPU runs (``open_library``'s checks)."""
    stems = _candidates()
    for stem in stems:
        path = library_file(stem)
        if path is not None:
            return open_library(path)
    raise NativeLibraryError(
        f"the kernel library ({' or '.join(stems)}) was not built (no C++ compiler at install time?): {BUILD_HINT}"
    )


def library_facts() -> dict[str, Any]:
    lib = load_library()
    return {
        "build": lib.sc_build().decode(),
        "openmp": bool(lib.sc_openmp()),
        "source_sha": lib.sc_source_sha().decode(),
    }


_pool: OutputPool | None = None  # the process's pool, made at its first use


def output_pool() -> OutputPool:
    """The process's pool for the kernel's outputs (``output_pool.OutputPool``; its limit from
    ``SHAREDCONV_NATIVE_POOL_BYTES``, read when it is made: at the first use)."""
    global _pool
    if _pool is None:
        _pool = OutputPool()
    return _pool


def _empty(shape: tuple[int, ...], dtype: type, pool: OutputPool | None) -> np.ndarray:
    return np.empty(shape, dtype) if pool is None else pool.empty(shape, dtype)


def geometry_values(problem: ConvProblem) -> tuple[int, ...]:
    """B, C, H, W, N, KH, KW, sh, sw, dh, dw, pt, pl, Ho, Wo: what the kernel is told."""
    (pt, _), (pl, _) = problem.pads
    ho, wo = problem.out_hw
    return (
        problem.B,
        problem.C,
        problem.H,
        problem.W,
        problem.N,
        problem.KH,
        problem.KW,
        *problem.stride,
        *problem.dilation,
        pt,
        pl,
        ho,
        wo,
    )


@lru_cache(maxsize=64)
def geometry(problem: ConvProblem) -> np.ndarray:
    """The kernel's geometry argument, made once per problem (not in every timed call)."""
    values = np.array(geometry_values(problem), dtype=np.int32)
    values.flags.writeable = False
    return values


def _refuse(problem: ConvProblem, device: str, mode: str) -> str | None:
    if problem.dtype not in _DTYPES:
        return (
            f"the native kernel computes in float32 and float64 only: it has no {problem.dtype} "
            "arithmetic (x86 CPUs without AVX-512 FP16/BF16 have none), and converting to float32 "
            f"inside would not be a {problem.dtype} strategy"
        )
    if max(geometry_values(problem)) >= 2**31:
        return "a size over 2**31 does not fit the kernel's 32-bit geometry"
    return None


def forward(
    problem: ConvProblem,
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    threads: int,
    out: np.ndarray | None = None,
    lib: ctypes.CDLL | None = None,
    pool: OutputPool | None = None,
) -> np.ndarray:
    """y of ``problem`` from C-contiguous arrays of the problem's dtype (checked), written to
    ``out``, else to an array from ``pool``, else to a fresh ``np.empty``."""
    suffix, dtype = _DTYPES[problem.dtype]
    _check(x, problem.x_shape, dtype, "x")
    _check(w, problem.w_shape, dtype, "w")
    if b is not None:
        _check(b, (problem.N,), dtype, "b")
    y = _empty(problem.y_shape, dtype, pool) if out is None else out
    _check(y, problem.y_shape, dtype, "y")
    geom = geometry(problem)
    getattr(lib or load_library(), f"sc_forward_{suffix}")(
        geom.ctypes.data,
        x.ctypes.data,
        w.ctypes.data,
        None if b is None else b.ctypes.data,
        y.ctypes.data,
        threads,
    )
    return y


def backward(
    problem: ConvProblem,
    x: np.ndarray,
    w: np.ndarray,
    dy: np.ndarray,
    bias: bool,
    threads: int,
    lib: ctypes.CDLL | None = None,
    pool: OutputPool | None = None,
) -> tuple[np.ndarray, ...]:
    """(dx, dw) or (dx, dw, db) of ``problem`` for the upstream gradient ``dy`` (in arrays from
    ``pool``, else fresh ones)."""
    suffix, dtype = _DTYPES[problem.dtype]
    _check(x, problem.x_shape, dtype, "x")
    _check(w, problem.w_shape, dtype, "w")
    _check(dy, problem.y_shape, dtype, "dy")
    dx = _empty(problem.x_shape, dtype, pool)
    dw = _empty(problem.w_shape, dtype, pool)
    db = _empty((problem.N,), dtype, pool) if bias else None
    geom = geometry(problem)
    getattr(lib or load_library(), f"sc_backward_{suffix}")(
        geom.ctypes.data,
        x.ctypes.data,
        w.ctypes.data,
        dy.ctypes.data,
        dx.ctypes.data,
        dw.ctypes.data,
        None if db is None else db.ctypes.data,
        threads,
    )
    return (dx, dw) if db is None else (dx, dw, db)


def _check(a: np.ndarray, shape: tuple[int, ...], dtype: type, name: str) -> None:
    if a.shape != tuple(shape) or a.dtype != dtype or not a.flags.c_contiguous:
        raise ValueError(
            f"native kernel: {name} must be a C-contiguous {np.dtype(dtype).name} array of shape "
            f"{tuple(shape)}, got {a.dtype.name} {a.shape}{'' if a.flags.c_contiguous else ' (not contiguous)'}"
        )


# The strategies with their builders ``f(problem, arrays, mode, threads) -> call``.
TABLE = StrategyTable()


def _refuse_pooled(problem: ConvProblem, device: str, mode: str) -> str | None:
    try:
        limit_from_env()
    except ValueError as exc:
        return str(exc)
    return _refuse(problem, device, mode)


def _kernel_call(
    problem: ConvProblem,
    arrays: dict[str, np.ndarray],
    mode: str,
    threads: int,
    pool: OutputPool | None,
) -> Callable[[], tuple[np.ndarray, ...]]:
    _, dtype = _DTYPES[problem.dtype]
    x = np.ascontiguousarray(arrays["x"], dtype=dtype)
    w = np.ascontiguousarray(arrays["w"], dtype=dtype)
    b = np.ascontiguousarray(arrays["b"], dtype=dtype) if problem.bias else None
    dy = np.ascontiguousarray(arrays["dy"], dtype=dtype) if mode == "train" else None

    def call() -> tuple[np.ndarray, ...]:
        y = forward(problem, x, w, b, threads, pool=pool)
        if dy is None:
            return (y,)
        return (y, *backward(problem, x, w, dy, problem.bias, threads, pool=pool))

    return call


def _builder(pooled: bool) -> Callable[..., Callable[[], tuple[np.ndarray, ...]]]:
    def build(
        problem: ConvProblem, arrays: dict[str, np.ndarray], mode: str, threads: int
    ) -> Callable[[], tuple[np.ndarray, ...]]:
        return _kernel_call(problem, arrays, mode, threads, output_pool() if pooled else None)

    return build


KERNEL = (
    "one call of the compiled kernel on the OpenMP threads: forward, and in train mode "
    "dx, dw, db from the given dy"
)
# name: (description, where the timed call's outputs come from, its refusals, pooled)
_STRATEGIES = {
    "direct": (
        "sharedconv's own kernel (C++, vectorised, OpenMP): all N filters from a tile of one "
        "channel's padded rows in cache, outputs in registers, each output written once",
        "np.empty of the outputs (the process's malloc)",
        _refuse,
        False,
    ),
    "direct_pooled": (
        "the same kernel as direct, its outputs from sharedconv's caching pool (as a "
        "framework's caching allocator): memory the previous outputs freed is lent again, "
        "resident, instead of fresh pages the OS zeroes on every call (glibc's malloc for "
        "large blocks)",
        "the outputs lent by the native output pool (resident memory once warm)",
        _refuse_pooled,
        True,
    ),
}
for _name, (_description, _outputs, _refusals, _pooled) in _STRATEGIES.items():
    TABLE.strategy(
        _name,
        _description,
        timed=f"{_outputs}, then {KERNEL}",
        supports_fn=_refusals,
        tags=("project-kernel",),
    )(_builder(_pooled))


class NativeBackend(Backend):
    name = "native"
    install_hint = BUILD_HINT
    devices = ("cpu",)
    strategies = TABLE.strategies

    def __init__(self) -> None:
        self.threads = 1

    def available(self) -> str | None:
        try:
            load_library()
        except NativeLibraryError as exc:
            return str(exc)
        return None

    def versions(self) -> dict[str, str]:
        try:
            facts = library_facts()
        except NativeLibraryError:
            return {}
        return {"sharedconv-native": f"{facts['build']}, source {facts['source_sha']}"}

    def configure(self, threads: int, device: str) -> dict[str, Any]:
        self.threads = max(1, int(threads))
        return {"native_threads": self.threads, **library_facts()}

    def prepare(
        self,
        problem: ConvProblem,
        arrays: dict[str, np.ndarray],
        strategy: Strategy,
        device: str,
        mode: str,
    ) -> Callable[[], tuple[Any, ...]]:
        return TABLE.builder_of(strategy)(problem, arrays, mode, self.threads)

    def device_memory(self, call: Callable[[], tuple[Any, ...]]) -> dict[str, Any] | None:
        """The output pool's books over one call, for a strategy that draws on it (``None``
        for one that does not: the RSS sees its ``np.empty``)."""
        pool = _pool
        if pool is None:  # no pooled strategy was prepared in this process
            return None
        before = pool.reset_peak()
        lends = pool.lends
        out = call()
        if pool.lends == lends:
            return None
        peak = pool.peak
        del out
        return {
            "peak_bytes": max(0, peak - before),
            "method": "the native output pool's books: the most bytes lent over one call and "
            "not yet given back, minus those lent before (its buffers are resident before a warm "
            "call, so the RSS does not see them)",
            # what the call allocates outside the pool (NumPy's, OpenMP's) is in the RSS
            "adds_to_rss": True,
        }
