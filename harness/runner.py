"""``sharedconv run``: a suite over every backend and strategy, timed, into the store."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .execute import Plan, execute, plan_cases
from .machine import machine_info, project_commit
from .roofline import measure as measure_roofline
from .store import RunWriter, new_run_id

DEFAULT_RESULTS = Path("results")


def plan_size(plan: Plan) -> int:
    return sum(1 for _ in plan_cases(plan))


def start_run(
    plan: Plan,
    root: Path,
    suite: str | None,
    run_id: str | None = None,
    roofline: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> RunWriter:
    meta = {
        "command": " ".join(["sharedconv", *sys.argv[1:]]) if sys.argv else "sharedconv",
        "suite": suite,
        "problems": [p.to_text() for p in plan.problems],
        "backends": plan.backends,
        "strategies": plan.strategies,
        "modes": plan.modes,
        "device": plan.device,
        "threads": plan.threads,
        "malloc": plan.malloc,
        "seed": plan.seed,
        "timing": plan.timing,
        "timeout_s": plan.timeout,
        "machine": machine_info(),
        "project": project_commit(),
        "workers": {},
        **(extra or {}),
    }
    writer = RunWriter.create(root, run_id or new_run_id(suite or "adhoc"), meta)
    writer.meta["roofline"] = roofline if roofline is not None else measure_roofline(plan.threads)
    writer.save_meta()
    return writer


def plan_from_meta(meta: dict[str, Any]) -> Plan:
    from sharedconv.backends.problem import parse_problem

    return Plan(
        backends=meta["backends"],
        problems=[parse_problem(t) for t in meta["problems"]],
        modes=meta["modes"],
        strategies=meta.get("strategies"),
        device=meta.get("device", "cpu"),
        threads=meta["threads"],
        malloc=meta.get("malloc", "fixed"),
        seed=meta.get("seed", 0),
        timeout=meta.get("timeout_s", 120.0),
        timing=meta.get("timing"),
    )


def run_plan(
    plan: Plan,
    writer: RunWriter,
    done: set[str] | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Execute ``plan`` into ``writer``; returns this session's records. An interruption
    marks the run ``interrupted`` (resumable) and re-raises."""
    records: list[dict[str, Any]] = []

    def record(r: dict[str, Any]) -> None:
        writer.append(r)
        records.append(r)
        if on_record is not None:
            on_record(r)

    def hello(backend: str, info: dict[str, Any]) -> None:
        writer.meta["workers"][backend] = {
            "versions": info.get("versions", {}),
            "facts": info.get("facts", {}),
            "available": info.get("available"),
        }
        writer.save_meta()

    try:
        execute(plan, record, skip=done or set(), on_worker=hello)
    except BaseException:
        writer.finish("interrupted")
        raise
    writer.finish("complete")
    return records
