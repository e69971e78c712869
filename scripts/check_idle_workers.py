"""Do workers started ahead and left idle disturb the timings of the cases that run meanwhile?

    python scripts/check_idle_workers.py [--pairs 4]

First every available framework's worker is started and left idle for 10 s: the memory each
holds (its RSS) and the CPU time it used meanwhile (``--pairs 0``: only this). Then pairs of runs, alternating which goes first: torch's and TensorFlow's fold, conv3d and split
on one small problem, with four more frameworks' workers started ahead and idle beside them
(the default, ``SHAREDCONV_START_AHEAD=1``), or each started only at its turn (``=0``). Prints
each run's medians and, per case, the ratio ahead / alone in each pair.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from sharedconv.backends.problem import parse_problem
from sharedconv.backends.registry import backend_names
from sharedconv.harness import allocators
from sharedconv.harness.execute import Plan, execute
from sharedconv.harness.worker import WorkerProcess

TIMED = ("torch", "tensorflow")  # the rest are there to sit idle (ahead) or never start
BACKENDS = [*TIMED, "keras-tensorflow", "keras-torch", "keras-jax", "jax"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of a process (/proc)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def idle_cpu(seconds: float = 10.0) -> None:
    workers = [WorkerProcess(n, 2, "cpu", malloc=allocators.default()) for n in backend_names()]
    for w in workers:
        w.spawn()
    for w in workers:
        w.await_hello()
    try:
        time.sleep(1)
        live = [w for w in workers if w.alive() and w.hello]
        before = {w.backend: cpu_seconds(w.hello["pid"]) for w in live}
        time.sleep(seconds)
        for w in live:
            pid = w.hello["pid"]
            used = cpu_seconds(pid) - before[w.backend]
            rss = next(
                int(line.split()[1]) * 1024
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")
            )
            print(
                f"{w.backend}: holds {rss / 2**30:.2f} GiB, used {used:.2f} s of CPU "
                f"while idle for {seconds:.0f} s"
            )
    finally:
        for w in workers:
            w.close()


def one_run(ahead: bool) -> dict[str, float]:
    os.environ["SHAREDCONV_START_AHEAD"] = "1" if ahead else "0"
    plan = Plan(
        backends=BACKENDS,
        problems=[parse_problem("B=2,C=16,H=32,W=32,N=8,K=5")],
        modes=["forward"],
        strategies=["fold", "conv3d", "split"],
        threads=2,
        timing={"budget": 0.5, "precision": 0.01, "min_samples": 5},
    )
    records: list[dict] = []
    execute(plan, records.append)
    return {
        f"{r['backend']}/{r['strategy']}": r["timing"]["stats"]["median"]
        for r in records
        if r.get("timed") and r["backend"] in TIMED
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=4)
    args = parser.parse_args()
    idle_cpu()
    pairs = []
    for i in range(args.pairs):
        order = (True, False) if i % 2 == 0 else (False, True)
        got = {ahead: one_run(ahead) for ahead in order}
        for ahead in order:
            name = "ahead" if ahead else "alone"
            print(name, {k: round(v * 1e6) for k, v in got[ahead].items()}, "(µs)", flush=True)
        pairs.append(got)
    for case in pairs[0][True] if pairs else ():
        ratios = [p[True][case] / p[False][case] for p in pairs if case in p[False]]
        print(
            f"{case}: ahead / alone per pair {[round(r, 3) for r in ratios]}, "
            f"median {statistics.median(ratios):.3f}"
        )


if __name__ == "__main__":
    main()
