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
from sharedconv.harness.records import Stats
from sharedconv.harness.store import Run, find_runs
from sharedconv.harness.summary import (
    memory_unknown_reason,
    peak_bytes,
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
    # a run measured under several allocators names each in its labels, so no page ranks
    # one strategy's jemalloc time against another's glibc time without saying so
    several = len({r.malloc_name for r in run.cases}) > 1
    for r in run.cases:
        params = r.params or {}
        stats = (r.timing.stats if r.timing else None) or Stats()
        median = stats.median
        faults = r.timing.faults if r.timing else None
        machine_id = r.machine_id
        where = run.meta.machine_for(machine_id)
        roof = run.meta.roofline_for(machine_id)
        row = {
            "run_id": run.run_id,
            # a cluster run's machines apart (rankings never mix them); "" for a run on one
            "machine_id": machine_id,
            "machine": (where.gpu or where.cpu_model or "?")
            + (f" ({machine_id})" if machine_id else ""),
            "case": r.case,
            "backend": r.backend,
            "strategy": r.strategy,
            "label": r.label + (f" @{r.malloc_name}" if several else ""),
            "malloc": r.malloc_name,
            "problem": r.problem,
            "mode": r.mode,
            "device": r.device,
            "dtype": r.dtype or params.get("dtype"),
            "status": r.status.value,
            "reason": r.reason or "",
            "seed_option": r.seed_option,
            "median_s": median,
            "q1_s": stats.q1,
            "q3_s": stats.q3,
            "iqr_s": stats.iqr,
            "min_s": stats.min,
            "samples": stats.n if r.timing and r.timing.stats else None,
            "noisy": stats.noisy if r.timing and r.timing.stats else None,
            "peak_bytes": peak_bytes(r),
            "memory_unknown": memory_unknown_reason(r) or "",
            "faults_per_call": faults.minor_per_call if faults else None,
            "kernel_share": faults.kernel_share if faults else None,
            "fault_bound": bool(faults and faults.flagged),
            "flops": r.flops,
            "fewest_bytes": r.fewest_bytes,
            "gflops": r.gflops(),
            "gbps": r.gbps(),
            "roofline_pct": 100 * fraction
            if (fraction := roofline_fraction(r, roof)) is not None
            else None,
            "setup_s": r.setup_s,
            "first_call_s": r.first_call_s,
            "threads": r.threads,
            "err_y": r.worst_error("y"),
            "err_dx": r.worst_error("dx"),
            "err_dw": r.worst_error("dw"),
            "err_db": r.worst_error("db"),
            "error_vs_bound": r.worst_ratio(),
            "timed_region": r.timed_region or "",
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
