#!/usr/bin/env python
"""The allocator benchmark: every backend's best strategies under each C allocator.

    python scripts/bench_allocator.py --out docs/allocator.md

1. One `sharedconv run` over problems from the suites (few and many channels, small and
   large images, forward and train) with ``--malloc`` set to every allocator installed here:
   each case is measured under each allocator in turn (one worker per allocator), so the
   allocators of a case are seconds apart and see the same machine. Medians and page faults
   per call come from the stored run.
2. A standalone script (``STANDALONE`` below, no harness timing code) times the same calls
   under the default allocator in a process warmed as a training loop would be (the call
   repeated for a few seconds first), and its medians are set beside the harness's.

This is a benchmark, not a test: it asserts nothing and writes what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBLEMS = [  # (problem, modes): each from a suite (smoke, channels, seed)
    ("B=2,C=3,H=32,W=32,N=8,K=3", ["forward"]),
    ("B=2,C=16,H=32,W=32,N=8,K=5", ["forward", "train"]),
    ("B=4,C=4,H=64,W=64,N=16,K=5", ["forward"]),
    ("B=4,C=32,H=64,W=64,N=16,K=5", ["forward", "train"]),
    ("B=4,C=128,H=64,W=64,N=16,K=5", ["forward", "train"]),
    ("B=10,C=3,H=200,W=200,N=20,K=5", ["forward", "train"]),
]
STRATEGIES = {  # every backend's best strategies in the committed reference runs
    "torch": ["fold", "conv3d"],
    "tensorflow": ["fold", "fold_xla"],
    "jax": ["fold", "shift_add"],
    "numpy": ["oracle32"],
    "keras-tensorflow": ["fold"],
    "keras-jax": ["fold"],
    "keras-torch": ["fold"],
}
BUDGET = 0.5

STANDALONE = r"""
import json, resource, sys, time
from sharedconv.backends.problem import make_inputs, parse_problem
from sharedconv.backends.registry import load_backend

backend_name, threads, cases, warm_s, n = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
window_s = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0  # time at least n calls and this long
backend = load_backend(backend_name)
backend.configure(threads, "cpu")
out = {}
for strategy, text, mode in cases:
    problem = parse_problem(text)
    arrays = make_inputs(problem, 0, mode)
    try:
        call = backend.prepare(problem, arrays, backend.strategy(strategy), "cpu", mode)
    except Exception as e:
        out[f"{strategy}|{text}|{mode}"] = {"error": str(e)[:200]}
        continue
    t_end = time.perf_counter() + warm_s  # a training loop's first seconds
    while time.perf_counter() < t_end:
        backend.synchronize(call())
    times = []
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t_end = time.perf_counter() + window_s
    while len(times) < n or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        y = call()
        backend.synchronize(y)
        del y
        times.append(time.perf_counter() - t0)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / len(times)
    times.sort()
    q = lambda f: times[min(len(times) - 1, int(f * len(times)))]
    # a training loop's time per call: it dispatches ahead (JAX and TensorFlow are asynchronous)
    # and waits for a result now and then (here: every ~10 ms of calls)
    group = max(1, round(0.01 / q(0.5)))
    loop_calls, t0 = 0, time.perf_counter()
    while loop_calls == 0 or time.perf_counter() - t0 < window_s:
        for _ in range(group - 1):
            call()
        y = call()
        backend.synchronize(y)
        del y
        loop_calls += group
    loop = (time.perf_counter() - t0) / loop_calls
    out[f"{strategy}|{text}|{mode}"] = {"median": q(0.5), "loop": loop, "q1": q(0.25), "q3": q(0.75), "faults": faults, "calls": len(times)}
    del call, arrays
print(json.dumps(out))
"""


def run_harness(root: Path, mallocs: list[str], threads: int, redo: set[str]) -> None:
    """One stored run per problem and mode; each backend with its own strategies. A complete
    run already in ``root`` is kept unless its id is in ``redo`` (a run disturbed by other
    load on the machine is measured again)."""
    import shutil

    from sharedconv.backends.problem import parse_problem
    from sharedconv.harness.execute import OracleStore, Plan, execute
    from sharedconv.harness.runner import start_run
    from sharedconv.harness.store import StoreError, read_run

    for text, modes in PROBLEMS:
        problem = parse_problem(text)
        for mode in modes:
            plans = [
                Plan(
                    backends=[backend],
                    problems=[problem],
                    modes=[mode],
                    strategies=strategies,
                    threads=threads,
                    mallocs=mallocs,
                    timeout=240,
                    timing={"budget": BUDGET, "precision": 0.02, "min_samples": 5},
                )
                for backend, strategies in STRATEGIES.items()
            ]
            run_id = f"allocators-{problem.slug()}-{mode}"
            if (root / run_id).exists():
                try:
                    complete = read_run(root / run_id).meta.status == "complete"
                except StoreError:
                    complete = False
                if complete and run_id not in redo:
                    print(f"  {run_id}: kept", flush=True)
                    continue
                shutil.rmtree(root / run_id)
            print(f"  {run_id} ...", flush=True)
            writer = start_run(plans[0], root, "allocator-benchmark", run_id)
            writer.meta["backends"] = list(STRATEGIES)
            oracles = OracleStore()
            try:
                for plan in plans:
                    execute(plan, writer.append, oracle_store=oracles)
            finally:
                oracles.close()
            writer.finish("complete")


def run_standalone(
    records: list[dict], malloc: str, threads: int, window_s: float = 0.0
) -> dict[str, dict]:
    """The standalone script's medians: 2 s of calls first, then 15 calls timed, or as many
    as ``window_s`` seconds take if more (the paired check times the harness's window)."""
    from sharedconv.harness.allocators import get
    from sharedconv.harness.worker import thread_env

    env = get(malloc).environment({**os.environ, **thread_env(threads)})
    by_backend: dict[str, list] = {}
    for r in records:
        by_backend.setdefault(r["backend"], []).append([r["strategy"], r["problem"], r["mode"]])
    out = {}
    for backend, cases in by_backend.items():
        if backend.startswith("keras-"):
            env["KERAS_BACKEND"] = backend.split("-", 1)[1]
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                STANDALONE,
                backend,
                str(threads),
                json.dumps(cases),
                "2",
                "15",
                str(window_s),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if result.returncode != 0:
            print(f"  standalone {backend} failed: {result.stderr[-300:]}", flush=True)
            continue
        for key, value in json.loads(result.stdout.strip().splitlines()[-1]).items():
            out[f"{backend}|{key}"] = value
    return out


def allocator_summary(timed: list[dict], mallocs: list[str], default: str) -> list[str]:
    """Per allocator, over every case timed under all of them: the geometric mean of its time
    over the best allocator's time for that case, its worst such ratio, and how many of its
    cases were flagged for page faults (256 or more per call)."""
    from math import exp, log

    by_case: dict[tuple, dict[str, dict]] = {}
    for r in timed:
        key = (r["backend"], r["strategy"], r["problem"], r["mode"])
        by_case.setdefault(key, {})[r["malloc"]] = r
    complete = {k: v for k, v in by_case.items() if all(m in v for m in mallocs)}
    lines = [
        "## Which allocator gives every framework its best steady state?",
        "",
        f"Over the {len(complete)} cases timed under every allocator: each allocator's time over "
        "the fastest allocator's time for the same case (geometric mean and worst), how often it "
        "was the fastest or within 10% of it, and how many of its cases fault 256 or more pages "
        "per call (flagged).",
        "",
        "| allocator | mean time / best | worst time / best | within 10% of best | flagged for faults |",
        "|---|---|---|---|---|",
    ]
    for m in mallocs:
        ratios, flagged = [], 0
        for rs in complete.values():
            best = min(r["timing"]["stats"]["median"] for r in rs.values())
            ratios.append(rs[m]["timing"]["stats"]["median"] / best)
            flagged += bool((rs[m]["timing"].get("faults") or {}).get("flagged"))
        if not ratios:
            continue
        mean = exp(sum(log(x) for x in ratios) / len(ratios))
        near = sum(x <= 1.10 for x in ratios)
        name = f"`{m}` (default)" if m == default else f"`{m}`"
        lines.append(
            f"| {name} | {mean:.2f} | {max(ratios):.2f} | {near} of {len(ratios)} | "
            f"{flagged} of {len(ratios)} |"
        )
    return [*lines, ""]


PAIRED = [  # (backend, strategy, problem, mode): one per framework, small to large
    ("torch", "fold", "B=4,C=32,H=64,W=64,N=16,K=5", "forward"),
    ("torch", "conv3d", "B=2,C=16,H=32,W=32,N=8,K=5", "train"),
    ("tensorflow", "fold", "B=4,C=4,H=64,W=64,N=16,K=5", "forward"),
    ("tensorflow", "fold_xla", "B=10,C=3,H=200,W=200,N=20,K=5", "forward"),
    ("jax", "fold", "B=2,C=3,H=32,W=32,N=8,K=3", "forward"),
    ("jax", "shift_add", "B=4,C=32,H=64,W=64,N=16,K=5", "train"),
    ("numpy", "oracle32", "B=4,C=32,H=64,W=64,N=16,K=5", "forward"),
    ("keras-tensorflow", "fold", "B=10,C=3,H=200,W=200,N=20,K=5", "forward"),
]
PAIRED_BUDGETS = (BUDGET, 2.0)  # 2.0: warm-up 0.2 s instead of 0.05 s


def _paired_harness(root: Path, record: dict, k: int, malloc: str) -> dict[float, float]:
    """One round's `sharedconv run` of one case at each budget: budget -> median."""
    from sharedconv.harness.store import read_run

    out = {}
    backend, strategy, problem, mode = (
        record[f] for f in ("backend", "strategy", "problem", "mode")
    )
    for budget in PAIRED_BUDGETS:
        run_id = f"p-{backend}-{strategy}-{mode}-{k}-{budget}"
        subprocess.run(
            [sys.executable, "-m", "sharedconv.harness.cli", "run", "-b", backend, "-s", strategy,
             "--shape", problem, "--mode", mode, "--budget", str(budget), "--malloc", malloc,
             "--results", str(root), "--run-id", run_id],
            capture_output=True, text=True,
        )  # fmt: skip
        cases = [c.to_dict() for c in read_run(root / run_id).cases if c.timing]
        if cases:
            out[budget] = cases[0]["timing"]["stats"]["median"]
    return out


def _paired_alone(record: dict, malloc: str, threads: int, window: float) -> dict:
    key = "|".join(record[f] for f in ("backend", "strategy", "problem", "mode"))
    return run_standalone([record], malloc, threads, window).get(key, {})


def paired_cross_check(rounds: int, threads: int) -> list[str]:
    """Each case: `sharedconv run` (fresh worker, default allocator) at each budget, and the
    standalone script timing calls for as long as the longest budget, seconds apart,
    ``rounds`` times, the order of the two reversed every other round; the ratio
    standalone/harness per round, so the machine's drift over minutes cancels (the unpaired
    table above cannot tell drift from a bias of the harness)."""
    import shutil

    from sharedconv.harness.allocators import default

    malloc = default()
    window = max(PAIRED_BUDGETS)
    root = Path(tempfile.mkdtemp(prefix="sharedconv-paired-"))
    rows = []
    for backend, strategy, problem, mode in PAIRED:
        ratios: dict[float, list[float]] = {b: [] for b in PAIRED_BUDGETS}
        medians: dict[str, list[float]] = {}
        spreads: list[tuple[float, float]] = []  # the standalone window's quartiles
        single: list[float] = []  # standalone's median single call / harness, per round
        record = {"backend": backend, "strategy": strategy, "problem": problem, "mode": mode}
        for k in range(rounds):
            if k % 2 == 0:  # the order alternates, so neither side always runs second
                harness = _paired_harness(root, record, k, malloc)
                alone = _paired_alone(record, malloc, threads, window)
            else:
                alone = _paired_alone(record, malloc, threads, window)
                harness = _paired_harness(root, record, k, malloc)
            if "median" not in alone:
                continue
            medians.setdefault("standalone", []).append(alone["loop"])
            spreads.append((alone["q1"], alone["q3"]))
            for budget, median in harness.items():
                medians.setdefault(str(budget), []).append(median)
                ratios[budget].append(alone["loop"] / median)
            if window in harness:
                single.append(alone["median"] / harness[window])
        rows.append((backend, strategy, problem, mode, ratios, medians, spreads, single))
        print(f"  {backend}/{strategy} {problem} {mode}: {medians}", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    lines = [
        "## The harness against a standalone script, paired",
        "",
        f"Written by `python scripts/bench_allocator.py --paired {rounds}`. The unpaired table "
        "above sets numbers measured up to an hour apart side by side, and this machine drifts by "
        "more than 10% over minutes (docs/harness-benchmark.md). Here each case is measured by "
        f"`sharedconv run` (a fresh worker, `--malloc {malloc}`) with budget {PAIRED_BUDGETS[0]} s "
        f"(warm-up 0.05 s) and {PAIRED_BUDGETS[1]} s (warm-up 0.2 s), and by the standalone "
        f"script (2 s of calls first, then {window} s of calls timed one by one, as long as the "
        f"harness's longer window), seconds apart, {rounds} times, the order reversed every "
        "other round. The standalone script times its window twice: each call on its own "
        "(synchronized; its quartiles are the last column), then as a training loop runs it, "
        "calls dispatched one after another and a result waited for about every 10 ms (JAX and "
        "TensorFlow dispatch asynchronously, so a loop overlaps one call's Python with the "
        "previous call's work). The loop's time per call is the standalone number; the "
        "harness's is its median (of blocks of calls, each block's time over its calls). The "
        "ratio is standalone / harness per round; its median over the rounds is shown. Goal: "
        "within 10% (0.90-1.10). For comparison, the standalone script's median single call "
        f"against the harness at {window} s. Where the quartiles are wide, the call runs in "
        "spells of two speeds, in any process.",
        "",
        f"| case | ratio, budget {PAIRED_BUDGETS[0]} s | ratio, budget {PAIRED_BUDGETS[1]} s | "
        f"median single call / harness {window} s | ms per call (harness {PAIRED_BUDGETS[0]} s "
        f"/ {PAIRED_BUDGETS[1]} s / standalone), per round | standalone calls' quartiles ms, "
        "per round |",
        "|---|---|---|---|---|---|",
    ]
    met = {b: 0 for b in PAIRED_BUDGETS}
    total = 0
    for backend, strategy, problem, mode, ratios, medians, spreads, single in rows:
        if not all(ratios[b] for b in PAIRED_BUDGETS):
            lines.append(f"| {backend}/{strategy} {problem} {mode} | not measured | | | | |")
            continue
        total += 1
        cells = []
        for b in PAIRED_BUDGETS:
            r = statistics.median(ratios[b])
            met[b] += 0.90 <= r <= 1.10
            cells.append(f"{r:.2f}")
        per_round = " / ".join(
            ", ".join(_ms(v) for v in medians.get(key, []))
            for key in (str(PAIRED_BUDGETS[0]), str(PAIRED_BUDGETS[1]), "standalone")
        )
        quartiles = ", ".join(f"{_ms(a)}-{_ms(b)}" for a, b in spreads)
        lines.append(
            f"| {backend}/{strategy} {problem} {mode} | {cells[0]} | {cells[1]} | "
            f"{statistics.median(single) if single else float('nan'):.2f} | {per_round} | {quartiles} |"
        )
    lines += [
        "",
        f"Within 10%: {met[PAIRED_BUDGETS[0]]} of {total} at budget {PAIRED_BUDGETS[0]} s, "
        f"{met[PAIRED_BUDGETS[1]]} of {total} at budget {PAIRED_BUDGETS[1]} s.",
        "",
    ]
    return lines


def _ms(v: float | None) -> str:
    return "" if v is None else (f"{v * 1e3:.1f}" if v >= 0.01 else f"{v * 1e3:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/allocator.md")
    ap.add_argument(
        "--keep",
        metavar="DIR",
        help="Keep the runs in DIR (default: a temp folder); complete runs already there are reused.",
    )
    ap.add_argument(
        "--redo",
        default="",
        metavar="RUN_IDS",
        help="Comma-separated run ids in DIR to measure again.",
    )
    ap.add_argument(
        "--paired",
        type=int,
        metavar="ROUNDS",
        help="Only the paired cross-check, ROUNDS rounds; its section in --out is replaced.",
    )
    args = ap.parse_args()
    if args.paired:
        from sharedconv.harness.worker import default_threads

        section = paired_cross_check(args.paired, default_threads())
        out = Path(args.out)
        text = out.read_text() if out.exists() else ""
        head = text.split("## The harness against a standalone script, paired")[0].rstrip()
        out.write_text(head + "\n\n" + "\n".join(section))
        print("\n".join(section))
        return

    from sharedconv.harness import allocators
    from sharedconv.harness.machine import machine_info
    from sharedconv.harness.store import find_runs
    from sharedconv.harness.worker import default_threads

    threads = default_threads()
    mallocs = [m for m in allocators.ALLOCATORS if allocators.get(m).available() is None]
    default = allocators.default()
    root = Path(args.keep or tempfile.mkdtemp(prefix="sharedconv-alloc-"))
    t0 = time.perf_counter()
    print(f"harness: {len(PROBLEMS)} problems, allocators {', '.join(mallocs)}", flush=True)
    run_harness(root, mallocs, threads, {r for r in args.redo.split(",") if r})
    runs, _ = find_runs([root])
    records = [r.to_dict() for run in runs for r in run.cases]
    timed = [r for r in records if (r.get("timing") or {}).get("stats")]
    print("standalone script, default allocator ...", flush=True)
    standalone = run_standalone([r for r in timed if r["malloc"] == default], default, threads)
    wall = time.perf_counter() - t0

    machine = machine_info()
    lines = [
        "# The allocator decides the winner",
        "",
        "Written by `python scripts/bench_allocator.py --out docs/allocator.md` "
        f"({time.strftime('%Y-%m-%d')}, {wall / 60:.0f} min) on {machine.get('cpu_model', '?')}, "
        f"{threads} threads. Each case was measured under every allocator in turn, in one "
        f"worker per allocator (`sharedconv run --malloc {','.join(mallocs)}`), budget {BUDGET} s "
        "per case, so the allocators of one case are seconds apart. Times are medians in ms; "
        "faults are minor page faults per call over the timed blocks (`getrusage`, every "
        "thread of the worker).",
        "",
        "Nothing else may run while it measures: on this 2-core machine another process, even at `nice 19`, made OpenMP threads wait for a core and quantized some times to about 24 ms and 96 ms; runs disturbed that way were measured again (`--keep DIR --redo RUN_IDS`).",
        "",
        "The allocators (`sharedconv run --malloc NAME`):",
        "",
    ]
    for m in mallocs:
        a = allocators.get(m)
        how = a.how_to_get()
        lines.append(f"- `{m}`: {a.summary}." + (f" For your own script: `{how}`." if how else ""))
    lines += ["", "## Medians and page faults per call", ""]
    problems = list(dict.fromkeys((r["problem"], r["mode"]) for r in records))
    winners = []
    for problem, mode in problems:
        here = [r for r in timed if r["problem"] == problem and r["mode"] == mode]
        labels = list(dict.fromkeys(f"{r['backend']}/{r['strategy']}" for r in here))
        best = {}
        for m in mallocs:
            rs = [r for r in here if r["malloc"] == m]
            if rs:
                best[m] = min(rs, key=lambda r: r["timing"]["stats"]["median"])
        winners.append((problem, mode, best))
        lines += [f"### {problem}, {mode}", ""]
        lines.append("| strategy | " + " | ".join(f"{m} ms (faults)" for m in mallocs) + " |")
        lines.append("|---|" + "---|" * len(mallocs))
        for label in labels:
            cells = []
            for m in mallocs:
                r = next(
                    (
                        r
                        for r in here
                        if r["malloc"] == m and f"{r['backend']}/{r['strategy']}" == label
                    ),
                    None,
                )
                if r is None:
                    cells.append("")
                    continue
                faults = (r["timing"].get("faults") or {}).get("minor_per_call")
                text = f"{_ms(r['timing']['stats']['median'])} ({faults:,.0f})"
                if best.get(m) is r:
                    text = f"**{text}**"
                cells.append(text)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += allocator_summary(timed, mallocs, default)
    lines += [
        "## Does the allocator change the winner?",
        "",
        "The fastest strategy per problem under each allocator (bold above).",
        "",
        "| problem | mode | " + " | ".join(mallocs) + " |",
        "|---|---|" + "---|" * len(mallocs),
    ]
    changed = 0
    for problem, mode, best in winners:
        names = {m: f"{r['backend']}/{r['strategy']}" for m, r in best.items()}
        if names.get("system") and names.get(default) and names["system"] != names[default]:
            changed += 1
        lines.append(
            f"| {problem} | {mode} | " + " | ".join(names.get(m, "") for m in mallocs) + " |"
        )
    lines += [
        "",
        f"The winner under `{default}` (the default) differs from the winner under `system` "
        f"(glibc out of the box) on {changed} of {len(winners)} problems.",
        "",
        "## The harness against a standalone script",
        "",
        f"The same calls under `{default}`, in a plain Python loop (`STANDALONE` in the script: "
        "the backend's prepared call, 2 s of calls first as a training loop's start would make, "
        "then 15 calls timed one by one). The standalone process runs all of a backend's cases "
        "in one process, after one another, as a training script with several layers would. "
        "Goal: within 10%.",
        "",
        "| case | harness ms | standalone ms | standalone / harness | standalone faults/call |",
        "|---|---|---|---|---|",
    ]
    within = total = 0
    ratios = []
    for r in timed:
        if r["malloc"] != default:
            continue
        s = standalone.get(f"{r['backend']}|{r['strategy']}|{r['problem']}|{r['mode']}")
        if not s or "median" not in s:
            continue
        ratio = s["median"] / r["timing"]["stats"]["median"]
        ratios.append(ratio)
        total += 1
        within += abs(ratio - 1) <= 0.10
        lines.append(
            f"| {r['backend']}/{r['strategy']} {r['problem']} {r['mode']} | "
            f"{_ms(r['timing']['stats']['median'])} | {_ms(s['median'])} | {ratio:.2f} | {s['faults']:,.0f} |"
        )
    if ratios:
        lines += [
            "",
            f"Within 10%: {within} of {total} cases; median ratio {statistics.median(ratios):.2f}, "
            f"range {min(ratios):.2f}-{max(ratios):.2f}.",
        ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
