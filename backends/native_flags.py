"""The native kernel's compiler flags, in one place: setup.py builds the installed libraries with
them, and scripts/native_parts.py and scripts/bench_native_builds.py build the kernel (or its
parts) outside the install with the same ones. Plain data with no imports: setup.py reads this
file by path, before the package is installed.
"""

# gnu++17, not c++17: ISO mode turns off the fusion of a*b+c into one FMA instruction
COMMON = ["-O3", "-std=gnu++17", "-ffp-contract=fast", "-fopenmp"]

# What a library for ctypes adds. -Wno-psabi: the baseline build passes no vectors between
# functions (all are inlined). -fno-wrapv: Python's own compile flags, which setuptools puts
# first, carry -fwrapv (signed overflow wraps), which can keep the compiler from simplifying
# index arithmetic: the same forward source built without it was faster in a short paired run
# (scripts/bench_native_builds.py --before, 2026-11-29; docs/performance.md, lesson 10).
LIBRARY = ["-fPIC", "-Wno-psabi", "-fno-wrapv"]

# Each build's instruction sets, by the name native_backend.BUILDS gives its library; x86-64
# only, but the baseline's.
AVX2 = ["-mavx2", "-mfma", "-mf16c"]
ISA = {
    "baseline": [],
    "avx2": AVX2,
    "avx512": AVX2 + ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"],
}
