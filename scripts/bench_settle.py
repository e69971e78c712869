"""What the parent's wait after each interleaved turn changes (harness/interleave.py: settle).

    python scripts/bench_settle.py [--runs 2] [--budget 3] [--json out.json] [--out docs/harness-benchmark.md]
    python scripts/bench_settle.py --from-json out.json [--out ...]

OpenMP runtimes (libgomp: PyTorch's, the native kernel's) keep their threads spinning for a
few milliseconds after a parallel region. In an interleaved run the next turn is often another
process's, which then shares the two cores with that spin. This runs one problem's candidates
of six frameworks interleaved (``sharedconv run --interleave``), ``--runs`` times with the wait
off (``SHAREDCONV_SETTLE=0``) and as many with it on, alternating. Each record says which
candidate's turn came just before each of its own (``timing.interleaved.after``), so within one
run a candidate's turns that came right after *another process's* spinning turn can be set
beside its turns after any other: their ratio is what the spin costs the next turn. A
spinning process is one whose settle wait (a run with the wait on) had a median over 2 ms.
Per case and run: that ratio, and the width of the case's paired 95% interval.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ratios import ROOT, keep_and_write, one_run, this_machine_now  # noqa: E402

sys.path.insert(0, str(ROOT))

BACKENDS = "native,torch,tensorflow,jax,keras-tensorflow,keras-torch"
STRATEGIES = "direct,fold"
SHAPE = "B=4,C=16,H=64,W=64,N=16,K=5"
SPINS_OVER_S = 0.002
BEGIN, END = "<!-- settle -->", "<!-- /settle -->"


def spinners(runs: list[dict[str, dict]]) -> set[str]:
    """The backends whose process was still busy after its turns (median wait over 2 ms)."""
    out = set()
    for records in runs:
        for r in records.values():
            settle = r["timing"]["interleaved"].get("settle")
            if isinstance(settle, dict) and settle["median_s"] > SPINS_OVER_S:
                out.add(r["backend"])
    return out


def neighbour_effect(r: dict, spinning: set[str]) -> tuple[float, int, int] | None:
    """Median per-call time of this case's turns right after another process's spinning turn,
    over that of its other turns (and how many of each), or None without both."""
    per_call = [t / r["timing"]["block_size"] for t in r["timing"]["block_times"]]
    after_spin, other = [], []
    for t, prev in zip(per_call, r["timing"]["interleaved"]["after"], strict=True):
        backend = None if prev is None else prev.split("/")[0]
        (after_spin if backend in spinning and backend != r["backend"] else other).append(t)
    if not after_spin or not other:
        return None
    return statistics.median(after_spin) / statistics.median(other), len(after_spin), len(other)


def section(results: dict[str, list[dict]], args: argparse.Namespace, when: str) -> str:
    spinning = spinners(results["on"])
    cases = sorted({c for runs in results.values() for run in runs for c in run})
    lines = [
        BEGIN,
        "## Waiting for the last turn's process to go quiet",
        "",
        f"Written by `python scripts/bench_settle.py --runs {args.runs} --budget {args.budget:g}` "
        f"on {when}. Problem `{SHAPE}`, forward, 2 threads: `sharedconv run -b {BACKENDS} -s "
        f"{STRATEGIES} --budget {args.budget:g} --interleave`, {args.runs} runs with the parent's "
        "wait after each turn off (`SHAREDCONV_SETTLE=0`) and as many with it on, alternating. "
        "Processes whose threads were still running after their turns (the wait's median over "
        f"2 ms): {', '.join(sorted(spinning)) or 'none'}. \"After a spin\": a case's turns that "
        "came right after another of those processes' turns, over its other turns (medians of "
        "per-call times, one run; 1.00 = no effect). \"95% CI\": the width of the case's paired "
        "interval against the fastest candidate, relative (\"fastest\": it was the baseline).",
        "",
        "| case | wait | after a spin, run by run | 95% CI width, run by run | wait after its turns (median) |",
        "| --- | --- | --- | --- | ---: |",
    ]  # fmt: skip
    for case in cases:
        for mode in ("off", "on"):
            effects, widths, waits = [], [], []
            for run in results[mode]:
                r = run.get(case)
                if r is None:
                    continue
                e = neighbour_effect(r, spinning)
                effects.append("-" if e is None else f"{e[0]:.3f} (n={e[1]})")
                p = r.get("paired") or {}
                if p.get("baseline") == case:
                    widths.append("fastest")
                elif p.get("ratio"):
                    widths.append(f"{(p['high'] - p['low']) / p['ratio']:.1%}")
                settle = r["timing"]["interleaved"].get("settle")
                if isinstance(settle, dict):
                    waits.append(settle["median_s"])
            wait = f"{statistics.median(waits) * 1e3:.1f} ms" if waits else "-"
            lines.append(
                f"| {case} | {mode} | {', '.join(effects)} | {', '.join(widths)} | {wait} |"
            )
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--budget", type=float, default=3.0)
    parser.add_argument("--out", help="Markdown file whose settle section is replaced")
    parser.add_argument("--json", help="also write the raw records here")
    parser.add_argument("--from-json", help="no runs: the section from a --json's records")
    args = parser.parse_args()
    from sharedconv.harness.interleave import SETTLE_ENV

    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        results, when = saved["results"], saved["when"]
        args.runs, args.budget = saved.get("runs", args.runs), saved.get("budget", args.budget)
    else:
        when = this_machine_now()
        results = {"off": [], "on": []}
        with tempfile.TemporaryDirectory(prefix="sharedconv-settle-") as tmp:
            for k in range(args.runs):
                for mode in ("off", "on"):
                    t0 = time.perf_counter()
                    run = one_run(
                        Path(tmp), f"{mode}-{k}", args.budget, ["--interleave"], BACKENDS, STRATEGIES, SHAPE,
                        {SETTLE_ENV: "0" if mode == "off" else "1"},
                    )  # fmt: skip
                    results[mode].append(run)
                    print(f"wait {mode}, run {k + 1}: {len(run)} timed cases, "
                          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)  # fmt: skip
    keep_and_write(args, results, when, section(results, args, when), (BEGIN, END))


if __name__ == "__main__":
    main()
