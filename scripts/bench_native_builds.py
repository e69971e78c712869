"""The native kernel's builds side by side on this CPU (docs/performance.md).

    python scripts/bench_native_builds.py [--seconds 3] [--threads 2] [--json out.json]
    python scripts/bench_native_builds.py --before REV [--json out.json]
    python scripts/bench_native_builds.py --from-json out.json [--write-doc docs/performance.md]

Every x86-64 build of `native/direct` this CPU runs (AVX-512 where it has it, AVX2+FMA; the
baseline with --baseline) on the seed's first problem and every channels-suite problem,
forward and train, float32: the calls the harness's strategy makes (np.empty of the outputs,
then the kernel), in alternating blocks of about 20 ms per build, a new order every cycle,
for --seconds a problem and mode (at least 12 cycles). Per build: the median per-call time
and its share of the floor (floor / median; the floor from a roofline measured at the start in
a child process with the same threads, as `sharedconv run` does); and each build's time over
the first one's as a paired ratio with its 95% interval (the i-th blocks of two builds come
from one cycle, so drift that lasts a cycle cancels in their ratio). Run under the harness's
default allocator (the script re-executes itself with it), so np.empty reuses freed memory.

With --before REV, the kernel's source at git revision REV, compiled with the flags of this
CPU's best build (scripts/native_parts.py's), runs as one more contender: a change to the
kernel measured against what it replaced, paired, in one process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_layers import alternating_blocks  # noqa: E402
from doc_section import write_section  # noqa: E402
from native_parts import ROOT  # noqa: E402
from sharedconv.backends import native_flags  # noqa: E402

PROBLEMS = ["B=10,C=3,H=200,W=200,N=20,K=5"] + [
    f"B=4,C={c},H=64,W=64,N=16,K=5" for c in (1, 2, 4, 8, 16, 32, 64, 128)
]
BLOCK_S = 0.02
MIN_CYCLES, MAX_CYCLES = 12, 400
MARKER = "SHAREDCONV_BENCH_BUILDS_ALLOCATOR"
MARK = "<!-- native-builds -->"


def under_default_allocator() -> None:
    """Re-execute this script with the harness's default allocator preloaded (once)."""
    from sharedconv.harness import allocators

    if os.environ.get(MARKER):
        return
    allocator = allocators.get(allocators.default())
    env = {**allocator.environment(dict(os.environ)), MARKER: allocator.name}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def build_before(rev: str, build: str, tmp: Path):
    """The kernel's source at git revision `rev`, compiled like `build`; opened."""
    from sharedconv.backends import native_backend as nb

    text = subprocess.run(
        ["git", "show", f"{rev}:backends/native_kernel.cpp"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if text.returncode:
        sys.exit(f"--before {rev}: git has no kernel source there ({text.stderr.strip()})")
    source = tmp / "native_kernel.cpp"
    source.write_text(text.stdout)
    sha = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    library = tmp / "before.so"
    flags = [*native_flags.COMMON, *native_flags.LIBRARY, *native_flags.ISA[build], "-shared"]
    subprocess.run(
        ["g++", *flags, f'-DSC_SOURCE_SHA="{sha}"', str(source), "-o", str(library)], check=True
    )
    return nb.open_library(library, source=source)


def calls_for(problem, mode: str, lib, threads: int):
    from sharedconv.backends import native_backend as nb
    from sharedconv.backends.problem import make_inputs

    arrays = make_inputs(problem, 0, mode)
    x, w = (np.ascontiguousarray(arrays[k], np.float32) for k in ("x", "w"))
    b = np.ascontiguousarray(arrays["b"], np.float32) if problem.bias else None
    if mode == "forward":
        return lambda: nb.forward(problem, x, w, b, threads, lib=lib)
    dy = np.ascontiguousarray(arrays["dy"], np.float32)
    return lambda: (
        nb.forward(problem, x, w, b, threads, lib=lib),
        nb.backward(problem, x, w, dy, problem.bias, threads, lib=lib),
    )


def measure(args) -> dict:
    from sharedconv.backends import native_backend as nb
    from sharedconv.backends.problem import parse_problem
    from sharedconv.harness.machine import cpu_model
    from sharedconv.harness.roofline import measure as roofline
    from sharedconv.harness.stats import paired_ratio

    names = [n for n in ("avx512", "avx2") if nb.BUILDS[n] in nb._candidates()]
    if args.baseline:
        names.append("baseline")
    libs = {}
    for name in names:
        path = nb.library_file(nb.BUILDS[name])
        if path is None:
            sys.exit(f"the {name} build is missing: {nb.BUILD_HINT}")
        libs[name] = nb.open_library(path)
    if args.before:
        before = f"{names[0]}@{args.before}"
        libs[before] = build_before(args.before, names[0], args.tmp)
        names.append(before)
    roof = roofline(args.threads)
    out = {
        "command": "python scripts/bench_native_builds.py"
        + (f" --seconds {args.seconds:g}" if args.seconds != 3 else "")
        + (f" --threads {args.threads}" if args.threads != 2 else "")
        + (" --baseline" if args.baseline else "")
        + (f" --before {args.before}" if args.before else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu_model(),
        "allocator": os.environ.get(MARKER, "as inherited"),
        "threads": args.threads,
        "roofline": {k: roof.get(k) for k in ("peak_flops", "copy_bytes_per_s")},
        "builds": {n: libs[n].sc_build().decode() for n in names},
        "rows": [],
    }
    for text in PROBLEMS:
        problem = parse_problem(text)
        for mode in ("forward", "train"):
            calls = {n: calls_for(problem, mode, libs[n], args.threads) for n in names}
            one = {}
            for n, call in calls.items():
                call()  # warm: the OpenMP threads, the scratch, the allocator's blocks
                t0 = time.perf_counter()
                call()
                one[n] = time.perf_counter() - t0
            per_call = alternating_blocks(
                calls,
                lambda result: result,
                {n: max(1, round(BLOCK_S / max(one[n], 1e-9))) for n in names},
                args.seconds,
                MIN_CYCLES,
                MAX_CYCLES,
            )
            floor = max(
                problem.flops_for(mode) / roof["peak_flops"],
                problem.fewest_bytes(mode) / roof["copy_bytes_per_s"],
            )
            row = {
                "problem": text,
                "mode": mode,
                "floor_s": floor,
                "cycles": len(per_call[names[0]]),
            }
            for n in names:
                row[n] = {"median_s": float(np.median(per_call[n]))}
                if n != names[0]:
                    row[n]["ratio"] = paired_ratio(per_call[n], per_call[names[0]])
            out["rows"].append(row)
            print(render_row(row, names), flush=True)
    return out


def render_row(row: dict, names: list[str]) -> str:
    cells = [row["problem"], row["mode"], f"{row['floor_s'] * 1e3:.3g} ms"]
    for n in names:
        median = row[n]["median_s"]
        cells.append(f"{median * 1e3:.3g} ms, {row['floor_s'] / median:.0%}")
        if "ratio" in row[n]:
            r, lo, hi = row[n]["ratio"]
            cells.append(f"{r:.3f} [{lo:.3f}, {hi:.3f}]")
    return "| " + " | ".join(cells) + " |"


def render(out: dict) -> str:
    names = list(out["builds"])
    head = ["problem", "mode", "floor"]
    for n in names:
        head.append(f"{n} ({out['builds'][n]}): median, share of floor")
        if n != names[0]:
            head.append(f"{n} / {names[0]} (paired, 95% CI)")
    roof = out["roofline"]
    lines = [
        MARK,
        f"`{out['command']}`, {out['date']} on {out['cpu']}, {out['threads']} threads, "
        f"allocator {out['allocator']}; roofline {roof['peak_flops'] / 1e9:.1f} GFLOP/s, "
        f"{roof['copy_bytes_per_s'] / 1e9:.1f} GB/s.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += [render_row(row, names) for row in out["rows"]]
    reached = {
        n: sum(row["floor_s"] / row[n]["median_s"] >= 0.6 for row in out["rows"]) for n in names
    }
    lines += [
        "",
        "At 60% of the floor or more: "
        + ", ".join(f"{n} {reached[n]} of {len(out['rows'])}" for n in names)
        + ".",
        MARK,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="Alternating time per problem and mode."
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline", action="store_true", help="Time the baseline build too.")
    parser.add_argument(
        "--before",
        metavar="REV",
        help="Time also the kernel's source at this git revision, built like the best build.",
    )
    parser.add_argument("--json", type=Path, help="Store the measurements here.")
    parser.add_argument(
        "--from-json", type=Path, help="Render stored measurements; measure nothing."
    )
    parser.add_argument("--write-doc", type=Path, help="Replace the section in this Markdown file.")
    args = parser.parse_args()
    if args.from_json:
        out = json.loads(args.from_json.read_text())
    else:
        under_default_allocator()
        with tempfile.TemporaryDirectory() as tmp:
            args.tmp = Path(tmp)
            out = measure(args)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=1))
        print()
    print(render(out))
    if args.write_doc:
        write_section(args.write_doc, MARK, render(out))


if __name__ == "__main__":
    main()
