"""Comparing two runs case by case (pure functions of stored records)."""

from __future__ import annotations

from typing import Any

from .records import median_s
from .stats import mann_whitney_u
from .store import Run
from .summary import format_seconds, samples_of


def compare_runs(
    a: Run, b: Run, threshold: float = 0.10, alpha: float = 0.05
) -> list[dict[str, Any]]:
    """Cases timed in both runs, with the ratio of medians (B/A), the Mann-Whitney p-value of
    the raw samples, and a verdict: ``regression`` / ``improvement`` when the change exceeds
    ``threshold`` and is significant, else ``same``."""
    timed_a = {r["case"]: r for r in a.cases if median_s(r)}
    rows = []
    for rb in b.cases:
        ra = timed_a.get(rb["case"])
        if ra is None or not median_s(rb):
            continue
        ma, mb = median_s(ra), median_s(rb)
        _, p = mann_whitney_u(samples_of(ra), samples_of(rb))
        ratio = mb / ma
        verdict = "same"
        if p < alpha and ratio > 1 + threshold:
            verdict = "regression"
        elif p < alpha and ratio < 1 / (1 + threshold):
            verdict = "improvement"
        rows.append(
            {
                "case": rb["case"],
                "a": format_seconds(ma),
                "b": format_seconds(mb),
                "a_s": ma,
                "b_s": mb,
                "ratio": ratio,
                "p": p,
                "verdict": verdict,
            }
        )
    rows.sort(key=lambda r: -r["ratio"])
    return rows
