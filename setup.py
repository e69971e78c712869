"""Builds sharedconv's own CPU kernel (backends/native_kernel.cpp) at install time; everything
else is declared in pyproject.toml.

Builds of one source: a baseline one every CPU of the platform runs, and on x86-64 one with
AVX2 and FMA and one with AVX-512 (F, VL, BW, DQ); `sharedconv.backends.native_backend` loads
the best one this CPU can run. They are plain shared libraries loaded with ctypes (no Python
headers). All are optional: an
install without a C++ compiler succeeds, and the `native` backend then says how to build it.
"""

import hashlib
import platform
from pathlib import Path

from setuptools import Extension, setup

SOURCE = ["backends/native_kernel.cpp"]
# the library records the hash of the source it was built from: a checkout whose source is
# newer than its build is told to rebuild, not measured with the old kernel
SOURCE_SHA = hashlib.sha256(Path(SOURCE[0]).read_bytes()).hexdigest()[:16]
# gnu++17, not c++17: ISO mode turns off the fusion of a*b+c into one FMA instruction
# -Wno-psabi: the baseline build passes no vectors between functions (all are inlined)
# -fno-wrapv: Python's own compile flags, which setuptools puts first, carry -fwrapv (signed
# overflow wraps), which can keep the compiler from simplifying index arithmetic: the same
# forward source built without it was faster in a short paired run
# (scripts/bench_native_builds.py --before, 2026-11-29; docs/performance.md, lesson 10)
FLAGS = [
    "-O3",
    "-std=gnu++17",
    "-ffp-contract=fast",
    "-fopenmp",
    "-fPIC",
    "-Wno-psabi",
    "-fno-wrapv",
]


def native_extensions() -> list[Extension]:
    def build(name: str, extra: list[str]) -> Extension:
        return Extension(
            f"sharedconv.backends.{name}",
            SOURCE,
            extra_compile_args=FLAGS + extra,
            extra_link_args=["-fopenmp"],
            define_macros=[("SC_SOURCE_SHA", f'"{SOURCE_SHA}"')],
            language="c++",
            optional=True,
        )

    extensions = [build("_native_baseline", [])]
    if platform.machine().lower() in ("x86_64", "amd64"):
        avx2 = ["-mavx2", "-mfma", "-mf16c"]
        extensions.append(build("_native_avx2", avx2))
        avx512 = ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"]
        extensions.append(build("_native_avx512", avx2 + avx512))
    return extensions


setup(ext_modules=native_extensions())
