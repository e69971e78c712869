"""What the native kernel's output pool buys, and what it costs (docs/performance.md).

    python scripts/bench_output_pool.py [--malloc system,jemalloc] [--seconds 6] [--json FILE]

For each allocator setting, one child process (the allocator applied as `sharedconv run
--malloc` applies it) times `native/direct` (outputs from `np.empty`, the process's malloc)
and `native/direct_pooled` (outputs from the pool) on the floor benchmark's problems, forward
and train, float32, 2 threads: alternating timed blocks of about 20 ms, a new random order
every cycle, for ``--seconds`` a problem and mode, so both meet the same minutes. Reports each
one's median per call, the paired ratio direct / pooled with its 95% interval, and the minor
page faults per call of each (getrusage over its blocks). A ratio above 1: the pool is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

PROBLEMS = [
    "B=10,C=3,H=200,W=200,N=20,K=5",
    *(f"B=4,C={c},H=64,W=64,N=16,K=5" for c in (1, 2, 4, 8, 16, 32, 64, 128)),
]
BLOCK_S = 0.02
MARK = "CHILD-RESULT "


def child(seconds: float, threads: int) -> None:
    import numpy as np
    from sharedconv.backends.problem import make_inputs, parse_problem
    from sharedconv.backends.registry import load_backend
    from sharedconv.harness.stats import paired_ratio
    from sharedconv.harness.timing import timed_block

    backend = load_backend("native")
    backend.configure(threads, "cpu")
    rows = []
    for text in PROBLEMS:
        problem = parse_problem(text)
        for mode in ("forward", "train"):
            arrays = make_inputs(problem, 0, mode)
            calls = {
                name: backend.prepare(problem, arrays, backend.strategy(name), "cpu", mode)
                for name in ("direct", "direct_pooled")
            }
            for call in calls.values():  # warm: the pool holds this shape's buffers now
                call()
                call()
            one = {n: _one_call(c) for n, c in calls.items()}
            sizes = {n: max(1, round(BLOCK_S / max(t, 1e-7))) for n, t in one.items()}
            per_call = {n: [] for n in calls}
            faults = {n: 0 for n in calls}
            rng = random.Random(0)
            start = time.perf_counter()
            while time.perf_counter() - start < seconds or len(per_call["direct"]) < 8:
                order = list(calls)
                rng.shuffle(order)
                for n in order:
                    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                    block = timed_block(calls[n], lambda _out: None, sizes[n], time.perf_counter)
                    faults[n] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
                    per_call[n].append(block / sizes[n])
            ratio = paired_ratio(per_call["direct"], per_call["direct_pooled"])
            cycles = len(per_call["direct"])
            rows.append(
                {
                    "problem": text,
                    "mode": mode,
                    "cycles": cycles,
                    "median_s": {n: float(np.median(v)) for n, v in per_call.items()},
                    "faults_per_call": {n: faults[n] / (sizes[n] * cycles) for n in per_call},
                    "direct_over_pooled": [float(x) for x in ratio],
                }
            )
            print(f"{text} {mode}: {ratio[0]:.3f}", file=sys.stderr, flush=True)
    print(MARK + json.dumps(rows), flush=True)


def _one_call(call) -> float:
    t = time.perf_counter()
    call()
    return time.perf_counter() - t


def run(mallocs: list[str], seconds: float, threads: int) -> dict:
    from sharedconv.harness import allocators
    from sharedconv.harness.machine import machine_info

    out = {
        "command": "python scripts/bench_output_pool.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="minutes"),
        "machine": machine_info(),
        "threads": threads,
        "python": platform.python_version(),
        "runs": {},
    }
    for malloc in mallocs:
        env = allocators.get(malloc).environment(dict(os.environ))
        env.update(OMP_NUM_THREADS=str(threads))
        print(f"== {malloc}", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                "--seconds",
                str(seconds),
                "--threads",
                str(threads),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
        if proc.returncode != 0 or not lines:
            sys.exit(f"the {malloc} child failed (exit {proc.returncode})")
        out["runs"][malloc] = json.loads(lines[-1].removeprefix(MARK))
    return out


def render(result: dict) -> str:
    machine = result["machine"]
    lines = [
        f"`{result['command']}` ({result['date']} UTC, {machine.get('cpu_model', '?')}, "
        f"{result['threads']} threads; Python {result.get('python', '?')})",
        "",
    ]
    for malloc, rows in result["runs"].items():
        lines += [
            f"Allocator `{malloc}`:",
            "",
            "| problem | mode | direct | direct_pooled | direct / pooled, paired (95% CI) | page faults per call: direct, pooled |",
            "|---|---|---:|---:|---|---|",
        ]
        for r in rows:
            m, f = r["median_s"], r["faults_per_call"]
            ratio, low, high = r["direct_over_pooled"]
            lines.append(
                f"| {r['problem']} | {r['mode']} | {m['direct'] * 1e3:.3g} ms | "
                f"{m['direct_pooled'] * 1e3:.3g} ms | {ratio:.3f} ({low:.3f}-{high:.3f}) | "
                f"{f['direct']:.0f}, {f['direct_pooled']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--malloc", default="system,jemalloc", help="Allocator settings, one child each."
    )
    parser.add_argument(
        "--seconds", type=float, default=6.0, help="Alternating blocks per problem and mode."
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="Keep the results here.")
    parser.add_argument("--from-json", type=Path, help="Render stored results instead of running.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.seconds, args.threads)
        return
    if args.from_json:
        result = json.loads(args.from_json.read_text())
    else:
        result = run([m.strip() for m in args.malloc.split(",")], args.seconds, args.threads)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(render(result))


if __name__ == "__main__":
    main()
