"""How near the machine's limit is each problem's best strategy? (docs/performance.md)

    python scripts/bench_floor.py [--budget 0.2] [--malloc jemalloc,system] [--write-doc docs/performance.md]
    python scripts/bench_floor.py --run docs/performance-bench/floor-jemalloc [--run ...]   # from stored data

Runs every framework strategy (TensorFlow, PyTorch, JAX, Keras 3 on each of its backends) and
the native kernel on the `seed` and `channels` suites, forward and train, float32: one
`sharedconv run` per allocator setting (jemalloc with purging off; the system's glibc), one
after another (one run with both would give each worker half the memory, and the seed's
100-channel problem would not fit). Lists for every problem, mode and allocator:

- the floor: max(FLOPs / peak FLOP/s, fewest bytes / copy bandwidth), from the roofline the
  run measured on this machine at its start, and which of the two bounds it is;
- the best framework strategy, and the native kernel (the faster of its strategies: `direct`,
  outputs from the process's malloc, and `direct_pooled`, from its caching pool), each with its
  median and its share of the floor (floor / median);
- which strategy is best, and whether the best verified one reaches 60% of the floor.

Every number is a median of one case in one run; every strategy was checked against the
float64 oracle before it was timed (a disagreeing one is listed, never timed). The runs'
records are kept (gzipped) in docs/performance-bench/<run id>/.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_section import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MARK = "<!-- floor-benchmark -->"
OURS = "native"  # the backend of the project's kernel: its fastest strategy is "ours"
BACKENDS = "torch,tensorflow,jax,keras-tensorflow,keras-jax,keras-torch,native"
GOAL = 0.60
RAW = ROOT / "docs" / "performance-bench"


MAIN = [
    "B=10,C=3,H=200,W=200,N=20,K=5",  # the seed suite's first problem
    "B=4,C=1..128:x2,H=64,W=64,N=16,K=5",  # the channels suite
]
BIG = "B=10,C=100,H=200,W=200,N=20,K=5"  # the seed suite's second problem
# the problems whose forward ranking picks the strategies timed on BIG
PICK_FROM = ("B=10,C=3,H=200,W=200,N=20,K=5", "B=4,C=128,H=64,W=64,N=16,K=5")


def sharedconv_run(run_id: str, results: Path, extra: list[str]) -> Path:
    args = [str(BIN / "sharedconv"), "run", *extra, "--results", str(results), "--run-id", run_id]
    print("running:", " ".join(args[1:]), flush=True)
    t0 = time.perf_counter()
    done = subprocess.run(args, text=True, capture_output=True)
    # exit code 1: the run is complete, and some of its cases failed (a timeout, a mismatch)
    complete = (results / run_id / "run.json").exists() and json.loads(
        (results / run_id / "run.json").read_text()
    ).get("status") == "complete"
    if done.returncode not in (0, 1) or not complete:
        sys.exit(f"the run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(f"{run_id} took {time.perf_counter() - t0:.0f} s", flush=True)
    return results / run_id


def contenders(
    folder: Path, per_backend: int, problems: tuple[str, ...] | None, modes: tuple[str, ...]
) -> list[str]:
    """The names of each backend's ``per_backend`` fastest strategies on each of ``problems``
    (all when None) in each of ``modes``."""
    from sharedconv.harness.store import read_run

    ranked: dict[tuple[str, str, str], list[tuple[float, str]]] = defaultdict(list)
    for r in (c.to_dict() for c in read_run(folder).cases):
        if r.get("status") != "pass" or not r.get("timed") or r["mode"] not in modes:
            continue
        if problems is None or r["problem"] in problems:
            ranked[(r["backend"], r["problem"], r["mode"])].append(
                (r["timing"]["stats"]["median"], r["strategy"])
            )
    names = {name for times in ranked.values() for _, name in sorted(times)[:per_backend]}
    return sorted(names | set(native_strategies()))


def native_strategies() -> list[str]:
    """Every strategy of the project's kernel: each is timed in every run (the point of it)."""
    from sharedconv.backends.registry import load_backend

    return [s.name for s in load_backend(OURS).strategies]


def run_benchmark(
    malloc: str, budget: float, results: Path, first: Path | None, main: Path | None = None,
    tag: str = "", interleave: bool = False, big_modes: tuple[str, ...] = ("forward", "train"),
) -> list[Path]:  # fmt: skip
    """The allocator's runs: every framework strategy and the native kernel on MAIN, forward
    and train (after the first allocator: every strategy whose name was some backend's fastest
    there on some problem and mode, so the runs fit a session), then BIG in each of
    ``big_modes``, one run a mode, for each backend's fastest on PICK_FROM in that mode (every
    backend's strategy of that name; a case takes 1 to 2 minutes, so 3 samples a case). The
    big train step fits a worker since its oracle's reference is counted as the 48 images it
    checks (until 2026-12-08 it was refused, needing 19.2 GiB). With ``interleave``: the
    main run only, each problem's candidates timed together (`sharedconv run
    --interleave`); the big problem's outputs (3 GB a strategy) are too many to hold every
    candidate's at once."""
    common = ["--backends", BACKENDS, "--malloc", malloc, "--budget", str(budget)]
    shapes = [arg for shape in MAIN for arg in ("--shape", shape)]
    picked = (
        []
        if first is None
        else ["--strategies", ",".join(contenders(first, 1, None, ("forward", "train")))]
    )
    if main is None:  # else: this allocator's main run was made before (--main-from)
        main = sharedconv_run(
            f"floor-{malloc}{tag}", results,
            [*shapes, "--mode", "both", *common, *picked, *(["--interleave"] if interleave else [])],
        )  # fmt: skip
    if interleave:
        return [main]
    runs = [main]
    for mode in big_modes:
        names = contenders(main, 1, PICK_FROM, (mode,))
        big = sharedconv_run(
            f"floor-{malloc}-big{'' if mode == 'forward' else '-train'}{tag}", results,
            ["--shape", BIG, "--mode", mode, *common, "--min-samples", "3", "--strategies", ",".join(names)],
        )  # fmt: skip
        runs.append(big)
    return runs


def unpack(stored: Path) -> Path:
    """A run folder from the stored data (run.json and cases.jsonl.gz)."""
    if (stored / "cases.jsonl").exists():
        return stored
    folder = Path(tempfile.mkdtemp(prefix="sharedconv-floor-")) / stored.name
    folder.mkdir()
    shutil.copy(stored / "run.json", folder / "run.json")
    with (
        gzip.open(stored / "cases.jsonl.gz", "rb") as src,
        open(folder / "cases.jsonl", "wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    return folder


def keep(folder: Path) -> None:
    where = RAW / folder.name
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / "run.json", where / "run.json")
    with (
        open(folder / "cases.jsonl", "rb") as src,
        gzip.GzipFile(where / "cases.jsonl.gz", "wb", mtime=0) as dst,
    ):
        shutil.copyfileobj(src, dst)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def table_key(meta: dict[str, Any]) -> tuple[str, str, str]:
    """The table a run goes in: its allocator, its machine and its day. One model name ("AMD
    EPYC") covers VMs with and without AVX-512, so the machine is its CPU with its vector ISA
    (recorded since the evening of 2026-11-28). An interleaved run (`sharedconv run
    --interleave`) has a table of its own beside the sequential run of its day."""
    machine = meta.get("machine", {})
    where = (machine.get("cpu_model") or "?") + (
        f", {machine['vector_isa']}" if machine.get("vector_isa") else ", ISA not recorded"
    )
    day = meta.get("started", "")[:10] + (", interleaved" if meta.get("interleave") else "")
    return ",".join(meta.get("malloc", [])), where, day


def roofline_key(meta: dict[str, Any]) -> tuple[str, str, str]:
    """The runs whose rooflines are one machine's: a table's (``table_key``), its sequential
    and interleaved runs together. The big problem's run is never interleaved (its outputs are
    too large to hold every candidate's at once), so it has a table of its own beside an
    interleaved main run, and a roofline probed in a slow spell of the machine (103.8 GFLOP/s
    there, 2026-11-29 13:36, against 187.2 at 12:48) would make its floor the slow spell's."""
    malloc, where, day = table_key(meta)
    return malloc, where, day.removesuffix(", interleaved")


def best_rooflines(runs: list[Any]) -> dict[tuple[str, str, str], Any]:
    """Per ``roofline_key``, the highest peak and bandwidth its runs measured: a probe that ran
    in a slow spell of this shared machine (one measured 107 GFLOP/s half an hour after another
    measured 185) would put the floor above what the machine does, and a share over 100%."""
    from sharedconv.harness.records import Roofline

    best: dict[tuple[str, str, str], Any] = {}
    for run in runs:
        meta = run.meta
        roof, key = meta.roofline, roofline_key(meta.to_dict())
        if roof is None or not roof.usable:
            continue
        if key in best:
            peak = max(best[key].peak_flops, roof.peak_flops)
            bandwidth = max(best[key].copy_bytes_per_s, roof.copy_bytes_per_s)
            roof = Roofline(peak_flops=peak, copy_bytes_per_s=bandwidth)
        best[key] = roof
    return best


def analyse(run: Any, roof: Any = None) -> dict[str, Any]:
    """The rows of one stored run (``read_run``), shares against ``roof`` (default: the run's
    own roofline)."""
    from sharedconv.harness.summary import roofline_fraction

    measured = run.meta.roofline
    roof = roof or measured
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    typed = {c.case: c for c in run.cases}
    for r in (c.to_dict() for c in run.cases):
        groups[(r["malloc"], r["problem"], r["mode"])].append(r)
    rows = []
    for (malloc, problem, mode), records in groups.items():
        timed = [r for r in records if r.get("status") == "pass" and r.get("timed")]
        for r in timed:
            r["_median"] = r["timing"]["stats"]["median"]
            r["_share"] = roofline_fraction(typed[r["case"]], roof)
        timed.sort(key=lambda r: r["_median"])
        # ours: the kernel's fastest timed strategy, else its first record (its status)
        ours = [r for r in timed if r["backend"] == OURS] or [
            r for r in records if r["backend"] == OURS
        ]
        others = [r for r in timed if r["backend"] != OURS]
        any_record = records[0]
        flops, nbytes = any_record["flops"], any_record["fewest_bytes"]
        by_flops, by_bytes = flops / roof.peak_flops, nbytes / roof.copy_bytes_per_s
        skipped = sorted({r.get("reason", "") for r in records if r.get("status") != "pass"})
        rows.append(
            {
                "malloc": malloc,
                "problem": problem,
                "mode": mode,
                "floor": max(by_flops, by_bytes),
                "bound": "FLOPs" if by_flops >= by_bytes else "bytes",
                "best": timed[0] if timed else None,
                "other": others[0] if others else None,
                "ours": ours[0] if ours else None,
                "all": timed,
                "reasons": skipped,
            }
        )
    return {
        "meta": run.meta.to_dict(),
        "roof": roof.to_dict(),
        "measured": measured.to_dict() if measured else {},
        "rows": rows,
    }


def name(r: dict[str, Any]) -> str:
    return f"{r['backend']}/{r['strategy']}"


def cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    return f"{ms(r['_median'])}, {r['_share']:.0%}"


def ours_cell(row: dict[str, Any]) -> str:
    r = row["ours"]
    if r is None:
        return "not in the run"
    if r.get("status") != "pass" or not r.get("timed"):
        return f"{r.get('status')}: {r.get('reason', '')[:80]}"
    return f"{cell(r)} ({r['strategy']})"


def render(results: list[dict[str, Any]], command: str) -> str:
    """One section per allocator setting: its runs (machine, roofline, command), a summary
    against the goal, and one table over the runs' problems."""
    lines = [
        MARK,
        "Shares are floor / median (100% = at the floor); bold where the best verified "
        f"strategy reaches {GOAL:.0%}. The runs: `{command}`; these tables from the stored "
        "data: `python scripts/bench_floor.py "
        + " ".join(f"--run {RAW.relative_to(ROOT)}/{r['meta']['run_id']}" for r in results)
        + " --write-doc docs/performance.md`.",
        "",
    ]
    # one table per machine, day and allocator (table_key)
    by_malloc: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        by_malloc[table_key(result["meta"])].append(result)
    order = {p: i for i, p in enumerate([PICK_FROM[0], BIG])}
    for (malloc, where, day), runs in sorted(
        by_malloc.items(), key=lambda kv: (kv[0][0] != "jemalloc", kv[0][2], kv[0][1])
    ):
        rows = sorted(
            (row for run in runs for row in run["rows"]),
            key=lambda x: (
                order.get(x["problem"], 2),
                int(x["problem"].split("C=")[1].split(",")[0]),
                x["mode"],
            ),
        )
        ran = [r for r in rows if r["best"] is not None]
        reached = [r for r in ran if r["best"]["_share"] >= GOAL]
        ours_best = [r for r in ran if r["ours"] is not None and r["best"] is r["ours"]]
        lines += [f"### {where}, {day}; allocator: {malloc}", ""]
        used = runs[0]["roof"]
        for run in runs:
            meta, roof = run["meta"], run["measured"] or run["roof"]
            machine = meta.get("machine", {})
            cpu = machine.get("cpu_model") or machine.get("cpu") or "?"
            timed = len({(c["backend"], c["strategy"]) for row in run["rows"] for c in row["all"]})
            native = (meta.get("workers", {}).get("native") or {}).get("facts", {}).get("build")
            lines.append(
                f"- run `{meta['run_id']}`, {meta.get('started', '')[:16].replace('T', ' ')} UTC on {cpu}, "
                f"{meta.get('threads')} threads, {timed} strategies timed"
                + (f" (the native kernel: its {native} build)" if native else "")
                + "; the roofline it measured: "
                f"{roof['peak_flops'] / 1e9:.1f} GFLOP/s, {roof['copy_bytes_per_s'] / 1e9:.1f} GB/s; "
                f"`{meta.get('command', '?')}`"
            )
        lines += [
            "",
            "The floors below from the highest roofline this allocator's runs of the day "
            "measured on this machine (this table's and, sequential or interleaved, the "
            f"other's): {used['peak_flops'] / 1e9:.1f} GFLOP/s, "
            f"{used['copy_bytes_per_s'] / 1e9:.1f} GB/s (a probe in a slow spell of the "
            "machine would set the floor above what it does).",
            "",
            f"**The best verified strategy at {GOAL:.0%} of the floor or more: {len(reached)} of "
            f"{len(ran)}** problem x mode pairs timed; **the native kernel the fastest: "
            f"{len(ours_best)} of {len(ran)}**.",
            "",
            "| problem | mode | floor (bound) | best framework strategy: median, share | native kernel: median, share (its strategy) | framework / native | best |",
            "|---|---|---:|---|---:|---:|---|",
        ]
        for r in rows:
            head = f"| {r['problem']} | {r['mode']} | {ms(r['floor'])} ({r['bound']}) |"
            if r["best"] is None:
                why = "; ".join(r["reasons"])[:200] or "nothing timed"
                lines.append(f"{head} not run: {why} | | | |")
                continue
            other, best = r["other"], r["best"]
            mark = "**" if best["_share"] >= GOAL else ""
            theirs = f"{name(other)}: {cell(other)}" if other else "-"
            ours = r["ours"]
            ratio = (
                f"{other['_median'] / ours['_median']:.2f}x"
                if other and ours and ours.get("_median")
                else "-"
            )
            lines.append(
                f"{head} {theirs} | {ours_cell(r)} | {ratio} | {mark}{name(best)} ({best['_share']:.0%}){mark} |"
            )
        lines.append("")
    lines.append(MARK)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run", type=Path, action="append",
        help="Use this run folder (or stored data) instead of running; once per allocator.",
    )  # fmt: skip
    parser.add_argument("--budget", type=float, default=0.2, help="Seconds of sampling per case.")
    parser.add_argument(
        "--malloc", default="jemalloc,system", help="The allocator settings, one run each."
    )
    parser.add_argument(
        "--contenders-from", type=Path,
        help="A first allocator's main run (folder or stored data): time only the names that were some backend's fastest on some problem and mode there.",
    )  # fmt: skip
    parser.add_argument(
        "--main-from", type=Path,
        help="The first allocator's main run, made already (e.g. by a run stopped before its big problem).",
    )  # fmt: skip
    parser.add_argument(
        "--tag", default="",
        help="Appended to the runs' ids (floor-<allocator>[-big]-<tag>): another machine's runs beside the stored ones.",
    )  # fmt: skip
    parser.add_argument(
        "--interleave", action="store_true",
        help="Time each main problem's candidates together (sharedconv run --interleave): a slow spell of the machine hits them alike. No big-problem run.",
    )  # fmt: skip
    parser.add_argument(
        "--big-modes", default="forward,train",
        help=f"The modes of the big problem ({BIG}), a run each.",
    )  # fmt: skip
    parser.add_argument("--write-doc", type=Path, help="Replace the section in this Markdown file.")
    parser.add_argument(
        "--keep", action="store_true",
        help=f"With --run FOLDER: store its data in {RAW.relative_to(ROOT)}/",
    )  # fmt: skip
    args = parser.parse_args()
    command = (
        "python scripts/bench_floor.py"
        + (f" --budget {args.budget}" if args.budget != 0.2 else "")
        + (" --interleave" if args.interleave else "")
    )
    tmp = None
    if args.run:
        folders = [unpack(run) for run in args.run]
        if args.keep:
            for folder in folders:
                keep(folder)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="sharedconv-floor-"))
        folders = []
        first = unpack(args.contenders_from) if args.contenders_from else None
        for malloc in args.malloc.split(","):
            main = unpack(args.main_from) if args.main_from and not folders else None
            runs = run_benchmark(
                malloc.strip(), args.budget, tmp, folders[0] if folders else first, main,
                f"-{args.tag}" if args.tag else "", args.interleave,
                tuple(m.strip() for m in args.big_modes.split(",") if m.strip()),
            )  # fmt: skip
            for folder in runs:
                keep(folder)
            folders += runs
    from sharedconv.harness.store import read_run

    runs = [read_run(folder) for folder in folders]
    roofs = best_rooflines(runs)
    text = render(
        [analyse(run, roofs.get(roofline_key(run.meta.to_dict()))) for run in runs], command
    )
    print(text)
    if args.write_doc:
        write_section(args.write_doc, MARK, text)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
