#!/usr/bin/env python
"""Benchmark the harness itself and write the figures to a Markdown file.

    python scripts/bench_harness.py --out docs/harness-benchmark.md

Measures, on this machine (run it when nothing else is running):

1. timer + synchronize overhead per block, for each available backend;
2. repeatability: the same 5 cases in 3 separate `sharedconv run` invocations, spread of the
   medians (max/min - 1); the goal is <= 3% for cases of 1 ms or more;
3. the wall time of `sharedconv run --suite smoke` (goal: under 2 minutes), and of `seed` when
   --with-seed is given;
4. a cross-check: two torch cases, our median against torch.utils.benchmark's
   Timer.adaptive_autorange with the same thread count (goal: within 5%).

This is a benchmark, not a test: it asserts nothing and prints what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPEAT_CASES = [
    ("torch", "fold", "B=4,C=16,H=64,W=64,N=16,K=5"),
    ("torch", "conv3d", "B=4,C=16,H=64,W=64,N=16,K=5"),
    ("jax", "fold", "B=4,C=16,H=64,W=64,N=16,K=5"),
    ("tensorflow", "fold_xla", "B=4,C=16,H=64,W=64,N=16,K=5"),
    ("numpy", "oracle32", "B=2,C=8,H=64,W=64,N=16,K=5"),
]
TORCH_CHECK = [("fold", "B=4,C=16,H=64,W=64,N=16,K=5"), ("split", "B=10,C=3,H=200,W=200,N=20,K=5")]


def sharedconv(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "sharedconv.harness.cli", *args], capture_output=True, text=True
    )
    return time.perf_counter() - t0, out


def read_cases(folder: Path) -> list[dict]:
    from sharedconv.harness.store import read_run

    return read_run(folder).cases


def repeatability(root: Path, threads: int) -> list[dict]:
    rows: dict[str, list[float]] = {}
    for i in range(3):
        for backend, strategy, shape in REPEAT_CASES:
            run_id = f"repeat-{i}-{backend}-{strategy}"
            _, out = sharedconv(
                "run", "--backends", backend, "--strategies", strategy, "--shape", shape, "--mode", "forward",
                "--results", str(root), "--run-id", run_id, "--threads", str(threads), "--budget", "2",
            )  # fmt: skip
            for case in read_cases(root / run_id):
                median = ((case.get("timing") or {}).get("stats") or {}).get("median")
                if median:
                    rows.setdefault(case["case"], []).append(median)
    return [
        {"case": k, "medians_ms": [m * 1e3 for m in v], "spread": max(v) / min(v) - 1}
        for k, v in rows.items()
    ]


def overheads(root: Path) -> list[dict]:
    out = []
    for backend, strategy, _shape in REPEAT_CASES:
        for case in read_cases(root / f"repeat-0-{backend}-{strategy}"):
            timing = case.get("timing") or {}
            if timing:
                out.append(
                    {
                        "backend": backend,
                        "overhead_us": timing["overhead_s"] * 1e6,
                        "block_size": timing["block_size"],
                        "fraction": timing["overhead_fraction"],
                    }
                )
    return out


TORCH_TIMER = """
import json, sys, torch
import torch.utils.benchmark
from sharedconv.backends.problem import parse_problem, make_inputs
from sharedconv.backends.registry import load_backend
threads = int(sys.argv[1])
backend = load_backend("torch"); backend.configure(threads, "cpu")
out = {}
for strategy, shape in json.loads(sys.argv[2]):
    p = parse_problem(shape)
    fn = backend.prepare(p, make_inputs(p, 0), backend.strategy(strategy), "cpu", "forward")
    t = torch.utils.benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    m = t.adaptive_autorange(threshold=0.02, min_run_time=1.0)
    out[strategy + "/" + p.slug()] = m.median
print(json.dumps(out))
"""


def torch_cross_check(root: Path, threads: int) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run(
        [sys.executable, "-c", TORCH_TIMER, str(threads), json.dumps(TORCH_CHECK)],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        return [
            {
                "case": "torch.utils.benchmark failed",
                "ours_ms": float("nan"),
                "torch_timer_ms": float("nan"),
                "ratio": float("nan"),
                "error": result.stderr[-300:],
            }
        ]
    theirs = json.loads(result.stdout)
    rows = []
    for strategy, shape in TORCH_CHECK:
        run_id = f"crosscheck-{strategy}"
        sharedconv(
            "run", "--backends", "torch", "--strategies", strategy, "--shape", shape, "--mode", "forward",
            "--results", str(root), "--run-id", run_id, "--threads", str(threads), "--budget", "3",
        )  # fmt: skip
        ours = read_cases(root / run_id)[0]["timing"]["stats"]["median"]
        key = next(k for k in theirs if k.startswith(strategy + "/"))
        rows.append(
            {
                "case": key,
                "ours_ms": ours * 1e3,
                "torch_timer_ms": theirs[key] * 1e3,
                "ratio": ours / theirs[key],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("docs/harness-benchmark.md"))
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--with-seed", action="store_true", help="also time the seed suite (long)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sharedconv-bench-"))

    smoke_s, smoke = sharedconv(
        "run",
        "--suite",
        "smoke",
        "--results",
        str(root),
        "--run-id",
        "smoke",
        "--threads",
        str(args.threads),
    )
    smoke_cases = len(read_cases(root / "smoke"))
    seed_s = None
    if args.with_seed:
        seed_s, _ = sharedconv(
            "run",
            "--suite",
            "seed",
            "--results",
            str(root),
            "--run-id",
            "seed",
            "--threads",
            str(args.threads),
        )
    rep = repeatability(root, args.threads)
    ovh = overheads(root)
    cross = torch_cross_check(root, args.threads)

    from sharedconv.harness.machine import cpu_model

    lines = [
        "# The harness, measured",
        "",
        f"Written by `python scripts/bench_harness.py --out {args.out}` on {cpu_model()}, {args.threads} threads, "
        f"{time.strftime('%Y-%m-%d %H:%M')}. Nothing else was meant to run at the time; the machine is shared, so "
        "treat single numbers with care and rerun the script to check them.",
        "",
        "## Timer and synchronize overhead per block",
        "",
        "| backend | overhead per block | calls per block | overhead fraction of a block |",
        "|---|---|---|---|",
        *[
            f"| {o['backend']} | {o['overhead_us']:.1f} µs | {o['block_size']} | {100 * o['fraction']:.2f}% |"
            for o in ovh
        ],
        "",
        "## Repeatability: 5 cases, 3 separate runs",
        "",
        "| case | medians (ms) | spread (max/min - 1) |",
        "|---|---|---|",
        *[
            f"| {r['case']} | {', '.join(f'{m:.3f}' for m in r['medians_ms'])} | {100 * r['spread']:.1f}% |"
            for r in rep
        ],
        "",
        f"Goal: at most 3% for cases of 1 ms or more. Met by {sum(r['spread'] <= 0.03 for r in rep if min(r['medians_ms']) >= 1)} "
        f"of {sum(1 for r in rep if min(r['medians_ms']) >= 1)} such cases.",
        "",
        "## Suite wall time",
        "",
        f"- `sharedconv run --suite smoke` (all available backends, both modes, {smoke_cases} cases): {smoke_s:.0f} s "
        f"(goal: under 120 s); exit code {smoke.returncode}.",
    ]
    if seed_s is not None:
        lines.append(f"- `sharedconv run --suite seed`: {seed_s:.0f} s.")
    lines += [
        "",
        "## Cross-check against torch.utils.benchmark",
        "",
        "| case | sharedconv median | Timer.adaptive_autorange median | ratio |",
        "|---|---|---|---|",
        *[
            f"| {c['case']} | {c['ours_ms']:.3f} ms | {c['torch_timer_ms']:.3f} ms | {c['ratio']:.3f} |"
            for c in cross
        ],
        "",
        "Goal: within 5% (ratio between 0.95 and 1.05).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
