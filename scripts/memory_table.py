"""The memory methods of a stored run, side by side (the table of docs/memory.md).

    python scripts/memory_table.py RUN_FOLDER... [--problem TEXT] [--malloc NAME]

One row per timed case: the call's own outputs (the floor every peak must reach), each
method's reading (rejected ones struck through, with why), the peak the run kept, and how far
two methods that both passed agree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sharedconv.harness.store import read_run  # noqa: E402
from sharedconv.harness.summary import format_bytes, output_bytes  # noqa: E402

SOURCES = (
    ("rss", "RSS, warm call"),
    ("framework", "framework's own"),
    ("first_call", "RSS, first call"),
    ("allocator", "allocator's own"),
)


def allocator_own(memory: dict, malloc: str | None) -> str:
    """Whose count the allocator method is: the allocator's, of every thread or of the calling
    one (records from before ``all_threads`` was stored: tcmalloc's hooks counted every thread,
    jemalloc's ``thread.peak`` the calling one)."""
    method = next((m for m in memory.get("methods", []) if m["source"] == "allocator"), {})
    every = method.get("all_threads", malloc == "tcmalloc")
    scope = "every thread" if every else "calling thread"
    return f"{malloc or 'jemalloc'}'s own ({scope})"


def cell(method: dict | None) -> str:
    if method is None:
        return "–"
    peak = method.get("peak_bytes")
    if peak is None:
        return "n/a"
    text = format_bytes(peak)
    return f"~~{text}~~ (below the floor)" if method.get("rejected") else text


def short_method(text: str) -> str:
    if text.startswith("the framework pool's statistics plus"):
        return "TF stats + RSS"
    if text.startswith("TensorFlow allocator"):
        return "TF allocator stats"
    if text.startswith("XLA's memory plan"):
        return "XLA plan"
    if text.startswith("VmHWM"):
        return "RSS"
    return text.split(":")[0][:30]


def table(folders: list[Path], malloc: str | None, problem: str | None = None) -> str:
    cases = [r for folder in folders for r in read_run(folder).cases]  # typed records
    lines = [
        "| backend | strategy | mode | outputs (floor) | "
        + " | ".join(name for _, name in SOURCES)
        + " | kept | framework / RSS |",
        "| --- | --- | --- | ---: | " + " | ".join("---:" for _ in SOURCES) + " | --- | ---: |",
    ]
    for r in cases:
        if not r.timed or (malloc and r.malloc_name != malloc):
            continue
        if problem and r.problem != problem:
            continue
        floor = output_bytes(r)
        r, memory = r.to_dict(), r.to_dict().get("memory") or {}
        methods = {m["source"]: m for m in memory.get("methods", [])}
        kept = (
            f"{format_bytes(memory['peak_bytes'])} ({short_method(memory.get('method', ''))})"
            if memory.get("peak_bytes") is not None
            else f"unknown: {memory.get('unknown_reason', '?')}"
        )
        rss, fw = methods.get("rss"), methods.get("framework")
        ratio = "–"
        if rss and fw and not rss.get("rejected") and not fw.get("rejected") and rss["peak_bytes"]:
            ratio = f"{fw['peak_bytes'] / rss['peak_bytes']:.2f}"
        lines.append(
            f"| {r['backend']} | {r['strategy']} | {r['mode']} | {format_bytes(floor)} | "
            + " | ".join(cell(methods.get(src)) for src, _ in SOURCES)
            + f" | {kept} | {ratio} |"
        )
    return "\n".join(lines)


def agreement(
    folders: list[Path], problem: str | None = None, mode: str | None = None, by: str | None = None
) -> str:
    """Per backend (and per value of the problem's parameter ``by``, e.g. ``C``): how far two
    methods that both passed agree (ratio ranges and medians)."""
    # (backend, the value of ``by`` or None, methods compared) -> ratios
    pairs: dict[tuple[str, Any, str], list[float]] = {}
    for folder in folders:
        for case in read_run(folder).cases:
            if not case.timed or (problem and case.problem != problem):
                continue
            if mode and case.mode != mode:
                continue
            r = case.to_dict()
            group = None
            if by:  # one row per value: "tensorflow, C=8", "jax, strategy=fold"
                group = r.get(by) if by in ("strategy", "mode") else (case.params or {}).get(by)

            memory = r.get("memory") or {}
            ok = {
                m["source"]: m["peak_bytes"]
                for m in memory.get("methods", [])
                if m.get("peak_bytes") and not m.get("rejected")
            }
            kept = memory.get("peak_bytes")
            # a worker's first case meets empty framework pools: its first call is cold
            first = {True: "cold first-call RSS", False: "first-call RSS (warm worker)"}.get(
                case.fresh_worker, "first-call RSS"
            )
            found = []  # (methods compared, ratio)
            if "rss" in ok and "allocator" in ok:
                own = allocator_own(memory, case.malloc_name)
                found.append((f"{own} / warm RSS", ok["allocator"] / ok["rss"]))
            if "rss" in ok and "framework" in ok:
                found.append(("framework's own / warm RSS", ok["framework"] / ok["rss"]))
            if "framework" in ok and "first_call" in ok:
                found.append((f"{first} / framework's own", ok["first_call"] / ok["framework"]))
            if kept and "first_call" in ok:
                found.append((f"{first} / kept peak", ok["first_call"] / kept))
            for what, ratio in found:
                pairs.setdefault((r["backend"], group, what), []).append(ratio)
    lines = [
        "| backend | methods compared | cases | median ratio | quartiles | within 0.8-1.25 | range |",
        "| --- | --- | ---: | ---: | --- | ---: | --- |",
    ]
    for (backend, group, what), ratios in sorted(
        pairs.items(), key=lambda i: (i[0][0], i[0][2], _in_order(i[0][1]))
    ):
        q1, med, q3 = (
            statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
        )
        near = sum(0.8 <= r <= 1.25 for r in ratios) / len(ratios)
        label = backend if by is None else f"{backend}, {by}={group}"
        lines.append(
            f"| {label} | {what} | {len(ratios)} | {med:.2f} | {q1:.2f} to {q3:.2f} | "
            f"{near:.0%} | {min(ratios):.2f} to {max(ratios):.2f} |"
        )
    return "\n".join(lines)


def _in_order(value: Any) -> tuple:
    """Numbers by size (C=2 before C=16), names alphabetically."""
    return (0, value, "") if isinstance(value, int | float) else (1, 0, str(value))


SEED = "B=10,C=3,H=200,W=200,N=20,K=5"


def write_doc(path: Path, run: Path) -> None:
    """Refresh the generated blocks of docs/memory.md (between ``<!-- name -->`` markers)."""
    blocks = {
        "seed-table": table([run], None, SEED),
        "agreement-all": agreement([run]),
        "agreement-seed": agreement([run], SEED),
    }
    text = path.read_text()
    for name, body in blocks.items():
        begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
        head, rest = text.split(begin, 1)
        text = head + begin + "\n" + body + "\n" + end + rest.split(end, 1)[1]
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--problem", help="only this problem, e.g. B=10,C=3,H=200,W=200,N=20,K=5")
    parser.add_argument("--mode", choices=("forward", "train"), help="only this mode")
    parser.add_argument("--malloc", help="only cases measured under this allocator")
    parser.add_argument("--json", action="store_true", help="the rows' raw methods as JSON")
    parser.add_argument(
        "--agreement", action="store_true", help="per backend, how far two passing methods agree"
    )
    parser.add_argument(
        "--by",
        metavar="PARAM",
        help="with --agreement: a row per value of this problem parameter (e.g. C), or per strategy or mode",
    )
    parser.add_argument(
        "--write-doc", type=Path, help="refresh the generated tables of this page from RUN"
    )
    args = parser.parse_args()
    if args.json:
        cases = [r for folder in args.runs for r in read_run(folder).cases if r.timed]
        print(json.dumps([r.to_dict().get("memory") for r in cases], indent=1))
        return
    if args.write_doc:
        write_doc(args.write_doc, args.runs[0])
        return
    if args.agreement:
        print(agreement(args.runs, args.problem, args.mode, args.by))
        return
    print(table(args.runs, args.malloc, args.problem))


if __name__ == "__main__":
    main()
