"""Tables for the terminal: they only read records, they never compute measurements."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

FAILED = ("mismatch", "crashed", "timeout", "error")
STATUS_STYLE = {
    "pass": "[green]pass[/]",
    "mismatch": "[bold red]FAIL[/]",
    "crashed": "[bold red]CRASHED[/]",
    "timeout": "[bold red]TIMEOUT[/]",
    "error": "[bold red]ERROR[/]",
    "skipped": "[yellow]skipped[/]",
    "unavailable": "[dim]unavailable[/]",
    "unverified": "[dim]unverified[/]",
}


def worst_error(record: dict[str, Any]) -> float | None:
    errors = (record.get("verify") or {}).get("errors") or {}
    values = [max(e["rel_fro"], e["max_norm"]) for e in errors.values()]
    return max(values) if values else None


def worst_ratio(record: dict[str, Any]) -> float | None:
    """The largest error over its bound, across the outputs (1.0 is the limit)."""
    errors = (record.get("verify") or {}).get("errors") or {}
    values = [
        max(e["rel_fro"], e["max_norm"]) / e["bound"] for e in errors.values() if e.get("bound")
    ]
    return max(values) if values else None


def error_text(record: dict[str, Any]) -> str:
    worst, ratio = worst_error(record), worst_ratio(record)
    if worst is None or ratio is None:
        return ""
    return f"{worst:.1e} ({ratio:.2f}x bound)"


def failed(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") in FAILED]


def verify_table(records: list[dict[str, Any]], detailed: bool) -> list[Table]:
    tables = []
    if detailed:
        t = Table(title="Agreement with the float64 oracle", title_justify="left")
        for col in ("backend/strategy", "problem", "mode", "status", "error (of bound)", "note"):
            t.add_column(col, overflow="fold")
        for r in records:
            t.add_row(
                f"{r['backend']}/{r['strategy']}",
                r["problem"],
                r["mode"],
                STATUS_STYLE.get(r["status"], r["status"]),
                error_text(r),
                r.get("reason", "") or "",
            )
        tables.append(t)
        return tables

    t = Table(title="Agreement with the float64 oracle (summary)", title_justify="left")
    for col in ("backend/strategy", "pass", "FAIL", "skipped", "other", "worst error (of bound)"):
        t.add_column(col, justify="right" if col not in ("backend/strategy",) else "left")
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[f"{r['backend']}/{r['strategy']}"].append(r)
    for name, rs in groups.items():
        counts = Counter(r["status"] for r in rs)
        ratios = [x for x in (worst_ratio(r) for r in rs) if x is not None]
        other = sum(v for k, v in counts.items() if k not in ("pass", "mismatch", "skipped"))
        other_kinds = ", ".join(k for k in counts if k not in ("pass", "mismatch", "skipped"))
        t.add_row(
            name,
            str(counts.get("pass", 0)),
            f"[bold red]{counts['mismatch']}[/]" if counts.get("mismatch") else "0",
            str(counts.get("skipped", 0)),
            f"{other} ({other_kinds})" if other else "0",
            f"{max(ratios):.2f}x" if ratios else "",
        )
    tables.append(t)

    bad = failed(records)
    if bad:
        f = Table(title="Failures", title_justify="left")
        for col in ("backend/strategy", "problem", "mode", "status", "why"):
            f.add_column(col, overflow="fold")
        for r in bad:
            f.add_row(
                f"{r['backend']}/{r['strategy']}",
                r["problem"],
                r["mode"],
                STATUS_STYLE[r["status"]],
                r.get("reason", ""),
            )
        tables.append(f)

    reasons: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in records:
        if r["status"] in ("skipped", "unavailable"):
            reasons[(f"{r['backend']}/{r['strategy']}", r.get("reason", ""))].append(
                f"{r['problem']} {r['mode']}"
            )
    if reasons:
        s = Table(title="Skipped and unavailable, with the reason", title_justify="left")
        s.add_column("backend/strategy")
        s.add_column("reason", overflow="fold")
        s.add_column("cases", justify="right")
        for (name, reason), cases in reasons.items():
            s.add_row(name, reason, str(len(cases)))
        tables.append(s)
    return tables


def print_tables(tables: list[Table], console: Console | None = None) -> None:
    console = console or Console()
    for t in tables:
        console.print(t)
