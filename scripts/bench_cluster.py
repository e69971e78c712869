"""The Ray executor against a local run: wall time and per-case medians (docs/cluster.md).

    python scripts/bench_cluster.py [--write-doc docs/cluster.md]

Runs one 40-case plan (numpy and torch, 8 small problems x 5 strategies, forward, one thread,
up to 2 s of sampling per case) three times, one after another, on this machine:

1. ``local``: ``sharedconv run`` as usual, pinned to core 0 (``taskset -c 0``);
2. ``ray-1``: ``--executor ray`` on a one-node cluster whose node is pinned to core 0;
3. ``ray-2``: the same cluster with a second node pinned to core 1.

Each Ray node is started with ``ray start`` under ``taskset``, so its raylet and every process
it starts (the runner, the framework workers) stay on that node's core. Prints and stores the
wall times, the speedup of two nodes over one, and every case's median in the three runs side
by side (raw records in docs/cluster-bench/).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_section import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# 8 problems x 5 strategies; a case samples until its budget or 200 blocks (--precision 0.0001), so the
# wall time is mostly measuring, as in a real sweep, not start-up
PLAN = [
    "--backends", "numpy,torch",
    "--strategies", "oracle64,fold,conv3d,vmap,split",
    "--shape", "B=1,C=8..64:x2,H=64,128,N=8,K=3",
    "--mode", "forward", "--budget", "2", "--precision", "0.0001", "--threads", "1",
]  # fmt: skip
PORT = 6391
MARK = "<!-- cluster-benchmark -->"


def sh(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(args, env=env, text=True, capture_output=True, **kw)


def timed_run(name: str, results: Path, extra: list[str], prefix: list[str] = ()) -> float:
    t0 = time.perf_counter()
    out = sh([*prefix, str(BIN / "sharedconv"), "run", *PLAN, *extra,
              "--results", str(results), "--run-id", name], timeout=3600)  # fmt: skip
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"{name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return wall


def node(core: int, resource: str, head: bool) -> None:
    args = ["taskset", "-c", str(core), str(BIN / "ray"), "start", "--num-cpus=1",
            "--disable-usage-stats", "--resources", json.dumps({"sharedconv": 1, resource: 1})]  # fmt: skip
    args += (
        [f"--port={PORT}", "--head", "--include-dashboard=false"]
        if head
        else [f"--address=127.0.0.1:{PORT}"]
    )
    out = sh(args, timeout=300)
    if out.returncode != 0:
        sys.exit(f"ray start failed:\n{out.stderr[-2000:]}")


def medians(folder: Path) -> dict[str, float]:
    out = {}
    for line in (folder / "cases.jsonl").read_text().splitlines():
        r = json.loads(line)
        med = ((r.get("timing") or {}).get("stats") or {}).get("median")
        if med:
            out[r["case"].rsplit("/", 2)[0]] = med  # without device/allocator
    return out


def busy(folder: Path) -> dict[str, float]:
    """Per machine, the seconds its cases took (the records' ``wall_s``): the work, without
    the run's start."""
    out: dict[str, float] = {}
    for line in (folder / "cases.jsonl").read_text().splitlines():
        r = json.loads(line)
        key = r.get("machine") or "local"
        out[key] = out.get(key, 0.0) + (r.get("wall_s") or 0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-doc", type=Path, help="Replace the section in this Markdown file.")
    args = parser.parse_args()
    if shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs taskset and two cores")
    results = Path(tempfile.mkdtemp(prefix="sharedconv-cluster-bench-"))
    sh([str(BIN / "ray"), "stop", "--force"])
    walls = {"local": timed_run("local", results, [], ["taskset", "-c", "0"])}
    try:
        node(0, "node_a", head=True)
        address = ["--executor", "ray", "--address", f"127.0.0.1:{PORT}"]
        walls["ray-1"] = timed_run("ray-1", results, address)
        node(1, "node_b", head=False)
        time.sleep(3)  # the second node registers
        walls["ray-2"] = timed_run("ray-2", results, address)
    finally:
        sh([str(BIN / "ray"), "stop", "--force"])
    runs = {name: medians(results / name) for name in walls}
    cases = sorted(set.intersection(*(set(m) for m in runs.values())))
    machines = {
        name: sorted(json.loads((results / name / "run.json").read_text()).get("machines", {}))
        for name in walls
    }
    raw = ROOT / "docs" / "cluster-bench"
    raw.mkdir(parents=True, exist_ok=True)
    for name in walls:
        shutil.copy(results / name / "cases.jsonl", raw / f"{name}.cases.jsonl")
        shutil.copy(results / name / "run.json", raw / f"{name}.run.json")
    (raw / "walls.json").write_text(json.dumps(walls, indent=1) + "\n")
    work = {name: busy(results / name) for name in walls}
    fixed = {name: walls[name] - max(work[name].values()) for name in walls}
    one, two = work["ray-1"], work["ray-2"]
    alone, together = sum(one.values()), sum(two.values())
    imbalance = max(two.values()) - min(two.values())
    # the same runs with every case twice as long: the fixed part stays, the work doubles
    doubled = (fixed["ray-1"] + 2 * alone) / (fixed["ray-2"] + 2 * max(two.values()))
    ratio = lambda a, b: [runs[a][c] / runs[b][c] for c in cases]  # noqa: E731
    r1, r2, r21 = ratio("ray-1", "local"), ratio("ray-2", "local"), ratio("ray-2", "ray-1")

    def spread(values: list[float]) -> str:
        q = statistics.quantiles(values, n=4)
        return f"median {statistics.median(values):.3f}, quartiles {q[0]:.3f}-{q[2]:.3f}, range {min(values):.3f}-{max(values):.3f}"

    lines = [
        MARK,
        f"Measured {time.strftime('%Y-%m-%d')} on this machine ({len(cases)} cases timed in all "
        f"three runs), with `python scripts/bench_cluster.py --write-doc docs/cluster.md`:",
        "",
        "| run | nodes | wall time |",
        "|---|---|---:|",
        f"| local (`taskset -c 0`) | - | {walls['local']:.1f} s |",
        f"| `--executor ray`, 1 node (core 0) | {', '.join(machines['ray-1'])} | {walls['ray-1']:.1f} s |",
        f"| `--executor ray`, 2 nodes (cores 0, 1) | {', '.join(machines['ray-2'])} | {walls['ray-2']:.1f} s |",
        "",
        f"**Speedup of two nodes over one: {walls['ray-1'] / walls['ray-2']:.2f}x** (goal 1.7x); "
        f"over the local run: {walls['local'] / walls['ray-2']:.2f}x.",
        "",
        "Where the time goes (each machine's work: the sum of its cases' `wall_s`; the fixed "
        "part: the wall time less the busiest machine's work):",
        "",
        f"- work: one node alone {alone:.1f} s; two nodes "
        + " and ".join(f"{v:.1f} s" for v in sorted(two.values()))
        + f", together {together / alone - 1:+.0%} against one node alone;",
        f"- fixed part: local {fixed['local']:.1f} s, 1 node {fixed['ray-1']:.1f} s, "
        f"2 nodes {fixed['ray-2']:.1f} s;",
        f"- the two nodes' work differs by {imbalance:.1f} s;",
        f"- the same arithmetic with every case twice as long: {doubled:.2f}x.",
        "",
        "Per-case medians, as ratios (each case against itself):",
        "",
        f"- 1 node / local: {spread(r1)}",
        f"- 2 nodes / local: {spread(r2)}",
        f"- 2 nodes / 1 node: {spread(r21)}",
        "",
        "<details><summary>Every case's median (µs)</summary>",
        "",
        "| case | local | 1 node | 2 nodes | 2 nodes / 1 node |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {c} | {runs['local'][c] * 1e6:.1f} | {runs['ray-1'][c] * 1e6:.1f} | "
            f"{runs['ray-2'][c] * 1e6:.1f} | {runs['ray-2'][c] / runs['ray-1'][c]:.3f} |"
            for c in cases
        ),
        "",
        "</details>",
        MARK,
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_doc:
        write_section(args.write_doc, MARK, text)
    shutil.rmtree(results, ignore_errors=True)


if __name__ == "__main__":
    main()
