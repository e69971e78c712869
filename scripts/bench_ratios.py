"""Ratio repeatability: the same pairs of strategies in separate runs, sequential and interleaved.

    python scripts/bench_ratios.py [--runs 3] [--budget 1] [--rounds-of 3] [--out docs/harness-benchmark.md]

Users act on which strategy is faster and by how much, so this measures how much that answer
moves between separate runs. Six pairs (three within a framework, three across frameworks),
timed in ``--runs`` separate ``sharedconv run`` invocations of each method, alternating
(sequential, interleaved, sequential, ...) so both meet the same hours of the machine:

- *sequential*: today's default, one case after another, each with its own budget;
- *interleaved*: ``--interleave``, the same budget per case, spent in cycles over all cases;
- *interleaved, 3 rounds* (``--rounds-of 3``): ``--interleave --rounds 3`` with a third of the
  budget, so the same sampling time per case, spent in three sets of fresh worker processes;
  a pair's ratio is the geometric mean of the rounds' paired ratios.

For each pair and method: the ratio in each run, its spread over the runs (max/min - 1; goal:
at most 3% interleaved) and whether the faster side flipped between runs (goal: never, for
pairs whose ratio is outside 0.95-1.05). The same runs' absolute medians show the machine's
drift. The section replaces the one between the markers in ``--out`` (or is printed).
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_section import write_section  # noqa: E402

SHAPE = "B=4,C=16,H=64,W=64,N=16,K=5"
PAIRS = [  # (a, b): the ratio reported is time(b) / time(a)
    ("torch/fold", "torch/conv3d"),
    ("tensorflow/fold", "tensorflow/conv3d"),
    ("jax/fold", "jax/shift_add"),
    ("torch/fold", "tensorflow/fold"),
    ("torch/fold", "jax/shift_add"),
    ("tensorflow/fold", "jax/fold"),
]
BEGIN, END = "<!-- ratio-repeatability -->", "<!-- /ratio-repeatability -->"


def one_run(
    root: Path, run_id: str, budget: float, extra: list[str],
    backends: str = "torch,tensorflow,jax", strategies: str = "fold,conv3d,shift_add",
    shape: str = SHAPE, env: dict[str, str] | None = None,
) -> dict[str, dict]:  # fmt: skip
    """One ``sharedconv run`` of its own (a child process): its timed records by
    backend/strategy."""
    cmd = [
        sys.executable, "-m", "sharedconv.harness.cli", "run", "-b", backends,
        "-s", strategies, "--shape", shape, "--mode", "forward",
        "--budget", str(budget), "--results", str(root), "--run-id", run_id, *extra,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode not in (0, 1):  # 1: some case failed, which the records say
        raise SystemExit(f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stderr[-2000:]}")
    records = {}
    for line in (root / run_id / "cases.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("timed"):
            records[f"{r['backend']}/{r['strategy']}"] = r
    return records


def pair_ratio(records: dict[str, dict], a: str, b: str) -> float | None:
    if a not in records or b not in records:
        return None
    paired = pair_interval(records, a, b)
    if paired is not None:
        return paired[0]
    return records[b]["timing"]["stats"]["median"] / records[a]["timing"]["stats"]["median"]


def pair_interval(records: dict[str, dict], a: str, b: str) -> tuple[float, float, float] | None:
    """The pair's paired ratio and 95% interval in one run (None: not timed interleaved)."""
    from sharedconv.harness.interleave import paired_between
    from sharedconv.harness.records import CaseRecord

    if a not in records or b not in records:
        return None
    return paired_between(CaseRecord.from_dict(records[a]), CaseRecord.from_dict(records[b]))


def interval_honesty(runs: list[dict[str, dict]]) -> tuple[int, int, float] | None:
    """How often a run's 95% interval for a pair holds another run's estimate of it (an honest
    interval for what a separate run would find: about 95%), and the intervals' median width
    (high/low - 1). None without intervals."""
    inside = total = 0
    widths = []
    for a, b in PAIRS:
        found = [pair_interval(run, a, b) for run in runs]
        if any(f is None for f in found):
            continue
        for i, (_, low, high) in enumerate(found):
            widths.append(high / low - 1)
            for j, other in enumerate(found):
                if i != j:
                    total += 1
                    inside += low <= other[0] <= high
    if not widths:
        return None
    return inside, total, sorted(widths)[len(widths) // 2]


def spread(values: list[float]) -> float:
    return max(values) / min(values) - 1


def flipped(values: list[float]) -> bool:
    return min(values) < 1 < max(values)


def section(results: dict[str, list[dict]], args: argparse.Namespace, when: str) -> str:
    lines = [
        BEGIN,
        "## Ratio repeatability: sequential against interleaved",
        "",
        f"Written by `python scripts/bench_ratios.py --runs {args.runs} --budget {args.budget:g} "
        f"--rounds-of {args.rounds_of}` on {when}. Problem `{SHAPE}`, forward, 2 threads, the "
        "default allocator; each run is its own `sharedconv run -b torch,tensorflow,jax -s "
        f"fold,conv3d,shift_add --budget {args.budget:g}` (interleaved: with `--interleave`"
        + (
            f"; in {args.rounds_of} rounds: `--interleave --rounds {args.rounds_of} --budget "
            f"{args.budget / args.rounds_of:.3g}`, the same sampling time in {args.rounds_of} "
            "sets of fresh workers"
            if args.rounds_of > 1
            else ""
        )
        + "), the methods alternating run by run. A pair's ratio is time(b) / time(a): "
        "interleaved, the median of its per-cycle ratios (paired); in rounds, the geometric mean "
        "of the rounds' paired ratios; sequential, the ratio of the two medians.",
        "",
        "| a | b | method | ratio in each run | spread (max/min - 1) | flip between runs |",
        "| --- | --- | --- | --- | ---: | --- |",
    ]
    methods = list(results)
    verdict: dict[str, list[bool]] = {m: [] for m in methods}
    flips: dict[str, int] = {m: 0 for m in methods}
    for a, b in PAIRS:
        for method in methods:
            ratios = [pair_ratio(run, a, b) for run in results[method]]
            if any(r is None for r in ratios):
                lines.append(f"| {a} | {b} | {method} | not timed in every run | | |")
                continue
            s = spread(ratios)
            decided = not all(0.95 <= r <= 1.05 for r in ratios)
            flip = flipped(ratios) and decided
            verdict[method].append(s <= 0.03)
            flips[method] += flip
            lines.append(
                f"| {a} | {b} | {method} | {', '.join(f'{r:.3f}' for r in ratios)} | {100 * s:.1f}% | "
                f"{'**yes**' if flip else 'no'} |"
            )
    lines += [
        "",
        "**Goal (spread at most 3%): met by "
        + ", ".join(f"{sum(verdict[m])} of {len(verdict[m])} pairs {m}" for m in reversed(methods))
        + ". Ranking flips between runs (pairs outside 0.95-1.05): "
        + ", ".join(f"{flips[m]} {m}" for m in reversed(methods))
        + ".**",
        "",
        "How far a run's own 95% intervals can be trusted for another run: how often a run's "
        "interval for a pair holds another run's estimate of that pair (all ordered pairs of "
        "runs), and the intervals' median width (high/low - 1).",
        "",
        "| method | another run's estimate inside the interval | median width |",
        "| --- | ---: | ---: |",
        *(
            f"| {m} | {h[0]} of {h[1]} ({h[0] / h[1]:.0%}) | {h[2]:.1%} |"
            for m in methods
            if (h := interval_honesty(results[m])) is not None
        ),
        "",
        "The machine's drift in the same runs: each case's absolute median, run by run.",
        "",
        "| case | method | median in each run (ms) | spread |",
        "| --- | --- | --- | ---: |",
    ]
    for label in sorted({k for run in results["sequential"] for k in run}):
        for method in methods:
            medians = [
                run[label]["timing"]["stats"]["median"] * 1e3
                for run in results[method]
                if label in run
            ]
            if len(medians) == len(results[method]):
                lines.append(
                    f"| {label} | {method} | {', '.join(f'{m:.3f}' for m in medians)} | "
                    f"{100 * spread(medians):.1f}% |"
                )
    lines.append(END)
    return "\n".join(lines)


def this_machine_now() -> str:
    """The machine and the minute, as the sections name them."""
    from sharedconv.harness.machine import machine_info

    info = machine_info()
    return f"{info.get('cpu_model')}, {info.get('usable_cores')} cores, {time.strftime('%Y-%m-%d %H:%M')}"


def keep_and_write(
    args: argparse.Namespace, results: dict, when: str, text: str, marks: tuple[str, str],
    **settings: object,
) -> None:  # fmt: skip
    """--json: the records with their date and the settings that made them (not for
    --from-json); --out: the section between ``marks``, else printed."""
    if args.json and not args.from_json:
        saved = {"when": when, "runs": args.runs, "budget": args.budget, **settings,
                 "results": results}  # fmt: skip
        Path(args.json).write_text(json.dumps(saved))
    if args.out:
        write_section(Path(args.out), marks[0], text, marks[1])
    else:
        print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--rounds-of", type=int, default=3,
        help="also time every run interleaved in this many rounds, each with budget/N (1: not)",
    )  # fmt: skip
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--out", help="Markdown file whose ratio section is replaced")
    parser.add_argument("--json", help="also write the raw records here")
    parser.add_argument(
        "--from-json",
        help="no runs: the section from records a --json saved (same --runs, --budget)",
    )
    args = parser.parse_args()
    methods = {"sequential": ([], args.budget), "interleaved": (["--interleave"], args.budget)}
    if args.rounds_of > 1:
        methods[f"interleaved, {args.rounds_of} rounds"] = (
            ["--interleave", "--rounds", str(args.rounds_of)],
            args.budget / args.rounds_of,
        )
    results: dict[str, list[dict]] = {m: [] for m in methods}
    when = this_machine_now()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        if "results" in saved:  # else: the records alone, as the first versions wrote them
            when, args.runs, args.budget = saved["when"], saved["runs"], saved["budget"]
            args.rounds_of = saved.get("rounds_of", 1)
            saved = saved["results"]
        else:
            when, args.rounds_of = "(the date and machine are not in the file)", 1
        results = saved
    with tempfile.TemporaryDirectory(prefix="sharedconv-ratios-") as tmp:
        for k in range(0 if args.from_json else args.runs):
            for method, (extra, budget) in methods.items():
                t0 = time.perf_counter()
                slug = method.replace(",", "").replace(" ", "-")
                run = one_run(Path(tmp), f"run-{len(results[method])}-{slug}", budget, extra)
                results[method].append(run)
                print(f"{method} run {k + 1}: {len(run)} timed cases, {time.perf_counter() - t0:.0f} s",
                      file=sys.stderr)  # fmt: skip
    text = section(results, args, when)
    keep_and_write(args, results, when, text, (BEGIN, END), rounds_of=args.rounds_of)


if __name__ == "__main__":
    main()
