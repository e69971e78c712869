"""Loading runs for the dashboard: stored records flattened into one table.

Reads through the harness's store (JSON only, never pickles); damaged or foreign files are
listed as skipped with the reason and the rest loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sharedconv.harness.records import gbps, gflops, worst_error, worst_ratio
from sharedconv.harness.store import Run, find_runs
from sharedconv.harness.summary import (
    machine_of,
    malloc_of,
    memory_unknown_reason,
    peak_bytes,
    roofline_for,
    roofline_fraction,
)

REPO_RESULTS = Path(__file__).resolve().parent.parent / "results"
PARAMS = ["B", "C", "H", "W", "N", "KH", "KW"]
SCALING_AXES = {
    "C (channels)": "C",
    "H×W (pixels)": "HW",
    "N (filters)": "N",
    "K (kernel size)": "KH",
    "B (batch)": "B",
}


def results_roots(explicit: str | None = None) -> list[Path]:
    """Where runs are read from: ``--results``/``SHAREDCONV_RESULTS``, else ./results, else
    the repository's results folder (which holds the committed reference runs)."""
    chosen = explicit or os.environ.get("SHAREDCONV_RESULTS")
    if chosen:
        return [Path(p) for p in chosen.split(os.pathsep) if p]
    local = Path("results")
    if local.is_dir() and any(local.glob("*/run.json")):
        return [local]
    return [REPO_RESULTS]


@dataclass
class Loaded:
    runs: list[Run]
    cases: pd.DataFrame
    skipped: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.runs

    def run(self, run_id: str) -> Run:
        return next(r for r in self.runs if r.run_id == run_id)


def flatten(run: Run) -> list[dict[str, Any]]:
    rows = []
    machine = run.meta.get("machine", {})
    machines = run.meta.get("machines") or {}
    # a run measured under several allocators names each in its labels, so no page ranks
    # one strategy's jemalloc time against another's glibc time without saying so
    several = len({malloc_of(r) for r in run.cases}) > 1
    for r in run.cases:
        params = r.get("params", {})
        stats = ((r.get("timing") or {}).get("stats")) or {}
        median = stats.get("median")
        faults = (r.get("timing") or {}).get("faults") or {}
        machine_id = machine_of(r)
        where = machines.get(machine_id) if machine_id else None
        where = where if isinstance(where, dict) else machine
        roof = roofline_for(run.meta, machine_id)
        row = {
            "run_id": run.run_id,
            # a cluster run's machines apart (rankings never mix them); "" for a run on one
            "machine_id": machine_id,
            "machine": (where.get("gpu") or where.get("cpu_model", "?"))
            + (f" ({machine_id})" if machine_id else ""),
            "case": r["case"],
            "backend": r["backend"],
            "strategy": r["strategy"],
            "label": f"{r['backend']}/{r['strategy']}" + (f" @{malloc_of(r)}" if several else ""),
            "malloc": malloc_of(r),
            "problem": r["problem"],
            "mode": r["mode"],
            "device": r.get("device", "cpu"),
            "dtype": r.get("dtype", params.get("dtype")),
            "status": r["status"],
            "reason": r.get("reason", ""),
            "seed_option": r.get("seed_option"),
            "median_s": median,
            "q1_s": stats.get("q1"),
            "q3_s": stats.get("q3"),
            "iqr_s": stats.get("iqr"),
            "min_s": stats.get("min"),
            "samples": stats.get("n"),
            "noisy": stats.get("noisy"),
            "peak_bytes": peak_bytes(r),
            "memory_unknown": memory_unknown_reason(r) or "",
            "faults_per_call": faults.get("minor_per_call"),
            "kernel_share": faults.get("kernel_share"),
            "fault_bound": bool(faults.get("flagged")),
            "flops": r.get("flops"),
            "fewest_bytes": r.get("fewest_bytes"),
            "gflops": gflops(r),
            "gbps": gbps(r),
            "roofline_pct": 100 * roofline_fraction(r, roof)
            if median and roof and "peak_flops" in roof
            else None,
            "setup_s": r.get("setup_s"),
            "first_call_s": r.get("first_call_s"),
            "threads": r.get("threads"),
            "err_y": worst_error(r, "y"),
            "err_dx": worst_error(r, "dx"),
            "err_dw": worst_error(r, "dw"),
            "err_db": worst_error(r, "db"),
            "error_vs_bound": worst_ratio(r),
            "timed_region": r.get("timed_region", ""),
        }
        for p in PARAMS:
            row[p] = params.get(p)
        row["HW"] = (params.get("H") or 0) * (params.get("W") or 0)
        row["stride"] = "x".join(map(str, params.get("stride", [1, 1])))
        row["dilation"] = "x".join(map(str, params.get("dilation", [1, 1])))
        pad = params.get("padding", "valid")
        row["padding"] = pad if isinstance(pad, str) else "x".join(map(str, pad))
        row["bias"] = params.get("bias", True)
        rows.append(row)
    return rows


def load(roots: list[Path]) -> Loaded:
    runs, skipped = find_runs(roots)
    rows: list[dict[str, Any]] = []
    for run in runs:
        rows.extend(flatten(run))
        skipped.extend(run.warnings)
    frame = pd.DataFrame(rows)
    return Loaded(runs, frame, skipped)


def timed(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    return frame[(frame["status"] == "pass") & frame["median_s"].notna()]


def scaling_groups(frame: pd.DataFrame, axis: str) -> list[tuple[str, pd.DataFrame]]:
    """Sets of timed problems that differ only in ``axis`` (the other sizes fixed), largest
    first, each with a description of what is fixed."""
    data = timed(frame)
    if data.empty:
        return []
    varying = {"HW": ["H", "W"], "KH": ["KH", "KW"]}.get(axis, [axis])
    fixed = [
        c
        for c in [*PARAMS, "stride", "dilation", "padding", "bias", "dtype", "device"]
        if c not in varying
    ]
    groups = []
    for key, group in data.groupby(fixed, dropna=False):
        if group[axis].nunique() < 2:
            continue
        desc = ", ".join(
            f"{k}={v}"
            for k, v in zip(fixed, key, strict=True)
            if k in ("B", "C", "H", "W", "N", "KH", "dtype")
        )
        groups.append((desc, group))
    groups.sort(key=lambda g: -g[1][axis].nunique())
    return groups
