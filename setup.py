"""Builds sharedconv's own CPU kernel (backends/native_kernel.cpp) at install time; everything
else is declared in pyproject.toml.

Builds of the kernel's one source: a baseline one every CPU of the platform runs, and on x86-64
one with AVX2 and FMA and one with AVX-512 (F, VL, BW, DQ); `sharedconv.backends.native_backend`
loads the best one this CPU can run. Beside them, harness/malloc_peak.c (tcmalloc's count of a
call's peak heap bytes, for the memory measurement). They are plain shared libraries loaded
with ctypes (no Python headers). All are optional: an install without a C++ compiler succeeds,
and the `native` backend then says how to build it.
"""

import hashlib
import platform
import runpy
from pathlib import Path

from setuptools import Extension, setup

SOURCE = ["backends/native_kernel.cpp"]
# the library records the hash of the source it was built from: a checkout whose source is
# newer than its build is told to rebuild, not measured with the old kernel
SOURCE_SHA = hashlib.sha256(Path(SOURCE[0]).read_bytes()).hexdigest()[:16]
# the flags, shared with the scripts that build the kernel outside the install
FLAGS = runpy.run_path("backends/native_flags.py")


def native_extensions() -> list[Extension]:
    def build(name: str, extra: list[str]) -> Extension:
        return Extension(
            f"sharedconv.backends.{name}",
            SOURCE,
            extra_compile_args=FLAGS["COMMON"] + FLAGS["LIBRARY"] + extra,
            extra_link_args=["-fopenmp"],
            define_macros=[("SC_SOURCE_SHA", f'"{SOURCE_SHA}"')],
            language="c++",
            optional=True,
        )

    isa = FLAGS["ISA"]
    extensions = [build("_native_baseline", isa["baseline"])]
    if platform.machine().lower() in ("x86_64", "amd64"):
        extensions.append(build("_native_avx2", isa["avx2"]))
        extensions.append(build("_native_avx512", isa["avx512"]))
    return extensions


def malloc_peak() -> Extension:
    """harness/malloc_peak.c: tcmalloc's hooks counting a call's peak heap bytes (the memory
    measurement's allocator method under tcmalloc); optional like the kernel."""
    return Extension(
        "sharedconv.harness._malloc_peak",
        ["harness/malloc_peak.c"],
        extra_compile_args=["-O2"],
        libraries=["dl"],
        optional=True,
    )


# The kernel's builds compile in parallel, one a core (each is one g++ process): on 2 cores an
# editable install took 33 s against 50 s one at a time, test_wheel's wheel build 30 s against 53.
setup(ext_modules=[*native_extensions(), malloc_peak()], options={"build_ext": {"parallel": True}})
