"""The smoke suite's wall time, with the workers started ahead (the default) and without.

    python scripts/bench_smoke.py [--pairs 2]

Runs ``sharedconv run --suite smoke`` (every available backend) ``--pairs`` times each way,
alternating (ahead, one by one, ahead, ...) so both meet the same hours of this machine, and
prints each run's wall time and where its cases' time went (the records' ``setup_s``,
``first_call_s``, the timing's ``warmup_s`` + ``steady_s``, and the rest of ``wall_s``: worker
starts, verification, memory probes). ``SHAREDCONV_START_AHEAD=0`` is the one-by-one side.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_harness import read_cases, sharedconv  # noqa: E402


def one(results: Path, run_id: str, ahead: bool) -> dict[str, float]:
    os.environ["SHAREDCONV_START_AHEAD"] = "1" if ahead else "0"  # the run inherits it
    wall, done = sharedconv(
        "run", "--suite", "smoke", "--results", str(results), "--run-id", run_id
    )
    if done.returncode not in (0, 1):  # 1: some case failed, which the table shows
        sys.exit(f"{run_id} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    parts = {"wall": wall, "cases": 0.0, "setup": 0.0, "first call": 0.0, "timing": 0.0}
    for r in read_cases(results / run_id):
        t = r.get("timing") or {}
        parts["cases"] += r.get("wall_s") or 0.0
        parts["setup"] += r.get("setup_s") or 0.0
        parts["first call"] += r.get("first_call_s") or 0.0
        parts["timing"] += (t.get("warmup_s") or 0.0) + (t.get("steady_s") or 0.0)
    parts["rest of the cases"] = (
        parts["cases"] - parts["setup"] - parts["first call"] - parts["timing"]
    )
    parts["outside the cases"] = wall - parts["cases"]
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    results = Path(tempfile.mkdtemp(prefix="sharedconv-smoke-bench-"))
    rows = []
    for i in range(args.pairs):
        for ahead in (True, False):
            name = f"{'ahead' if ahead else 'one-by-one'}-{i}"
            rows.append((name, one(results, name, ahead)))
            print(f"{name}: {rows[-1][1]['wall']:.1f} s", file=sys.stderr, flush=True)
    keys = list(rows[0][1])
    print("| run | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name, parts in rows:
        print(f"| {name} | " + " | ".join(f"{parts[k]:.1f} s" for k in keys) + " |")


if __name__ == "__main__":
    main()
