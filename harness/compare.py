"""Comparing two runs case by case (pure functions of stored records)."""

from __future__ import annotations

from typing import Any

from .records import CaseRecord
from .stats import mann_whitney_u
from .store import Run
from .summary import format_seconds


def machine_view(run: Run, machine: str) -> Run:
    """The records of one machine of a cluster run, as a run of their own, their case ids
    without their kind of machine (``…@AMD-EPYC-2c``, in ``machine_kind``), so two kinds of
    machine that ran the same plan compare case by case."""
    from dataclasses import replace

    cases = [
        r.replace(case=r.case.removesuffix(f"@{r.machine_kind}"))
        for r in run.cases
        if r.machine_id == machine
    ]
    return replace(run, run_id=f"{run.run_id} on {machine}", cases=cases)


def _group(record: CaseRecord) -> tuple:
    return (record.problem, record.mode, record.device, record.malloc)


def _scales(run: Run, normalize: str | None) -> dict[tuple, float]:
    """Per problem group: the median of the ``normalize`` strategy (``backend/strategy``)."""
    if normalize is None:
        return {}
    return {_group(r): r.median for r in run.cases if r.label == normalize and r.median}


def compare_runs(
    a: Run, b: Run, threshold: float = 0.10, alpha: float = 0.05, normalize: str | None = None
) -> list[dict[str, Any]]:
    """Cases timed in both runs, with the ratio of medians (B/A), the Mann-Whitney p-value of
    the raw samples, and a verdict: ``regression`` / ``improvement`` when the change exceeds
    ``threshold`` and is significant, else ``same``.

    ``normalize`` (``backend/strategy``): each run's times are first divided by that
    strategy's median on the same problem in the same run, so a machine that was slower on
    the second day as a whole changes nothing; what is compared is each case's time relative
    to the reference. Cases of problems where either run lacks the reference are left out."""
    timed_a = {r.case: r for r in a.cases if r.median}
    scale_a, scale_b = _scales(a, normalize), _scales(b, normalize)
    rows = []
    for rb in b.cases:
        ra = timed_a.get(rb.case)
        if ra is None or not rb.median:
            continue
        sa, sb = 1.0, 1.0
        if normalize is not None:
            if rb.label == normalize:
                continue
            sa, sb = scale_a.get(_group(ra)), scale_b.get(_group(rb))
            if not sa or not sb:
                continue
        ma, mb = ra.median / sa, rb.median / sb
        _, p = mann_whitney_u(
            [v / sa for v in ra.timing.samples()], [v / sb for v in rb.timing.samples()]
        )
        ratio = mb / ma
        verdict = "same"
        if p < alpha and ratio > 1 + threshold:
            verdict = "regression"
        elif p < alpha and ratio < 1 / (1 + threshold):
            verdict = "improvement"
        rows.append(
            {
                "case": rb.case,
                "a": format_seconds(ma) if normalize is None else f"{ma:.3f}x",
                "b": format_seconds(mb) if normalize is None else f"{mb:.3f}x",
                "a_s": ma,
                "b_s": mb,
                "ratio": ratio,
                "p": p,
                "verdict": verdict,
            }
        )
    rows.sort(key=lambda r: -r["ratio"])
    return rows
