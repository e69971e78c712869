"""Tables for the terminal: they only read records, they never compute measurements."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .records import NOT_RUN, CaseRecord, RunMeta

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


def error_text(record: CaseRecord) -> str:
    worst, ratio = record.worst_error(), record.worst_ratio()
    if worst is None or ratio is None:
        return ""
    return f"{worst:.1e} ({ratio:.2f}x bound)"


def failed(records: Iterable[CaseRecord]) -> list[CaseRecord]:
    return [r for r in records if r.failed]


def verify_table(records: list[CaseRecord], detailed: bool) -> list[Table]:
    tables = []
    if detailed:
        t = Table(title="Agreement with the float64 oracle", title_justify="left")
        for col in ("backend/strategy", "problem", "mode", "status", "error (of bound)", "note"):
            t.add_column(col, overflow="fold")
        for r in records:
            t.add_row(
                Text(r.label),
                Text(r.problem),
                r.mode,
                STATUS_STYLE[r.status],
                error_text(r),
                Text(r.reason or ""),
            )
        tables.append(t)
        return tables

    t = Table(title="Agreement with the float64 oracle (summary)", title_justify="left")
    for col in ("backend/strategy", "pass", "FAIL", "skipped", "other", "worst error (of bound)"):
        t.add_column(col, justify="right" if col not in ("backend/strategy",) else "left")
    groups: dict[str, list[CaseRecord]] = defaultdict(list)
    for r in records:
        groups[r.label].append(r)
    for name, rs in groups.items():
        counts = Counter(r.status.value for r in rs)
        ratios = [x for x in (r.worst_ratio() for r in rs) if x is not None]
        other = sum(v for k, v in counts.items() if k not in ("pass", "mismatch", "skipped"))
        other_kinds = ", ".join(k for k in counts if k not in ("pass", "mismatch", "skipped"))
        t.add_row(
            Text(name),
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
                Text(r.label), Text(r.problem), r.mode, STATUS_STYLE[r.status], Text(r.reason or "")
            )
        tables.append(f)

    tables.extend(skip_summary(records))
    return tables


def skip_summary(records: list[CaseRecord]) -> list[Table]:
    """Skipped and unavailable cases grouped by strategy and reason, with counts (reasons come
    from plugins and frameworks: data, not markup)."""
    reasons: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in records:
        if r.status in NOT_RUN:
            reasons[(r.label, r.reason or "")].append(f"{r.problem} {r.mode}")
    if not reasons:
        return []
    s = Table(title="Skipped and unavailable, with the reason", title_justify="left")
    s.add_column("backend/strategy")
    s.add_column("reason", overflow="fold")
    s.add_column("cases", justify="right")
    for (name, reason), cases in reasons.items():
        s.add_row(Text(name), Text(str(reason)), str(len(cases)))
    return [s]


def print_tables(tables: list[Table], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console = Console(width=160)  # logs and pipes: do not fold rows at 80 columns
    for t in tables:
        console.print(t)


def ranking_tables(
    records: Iterable[CaseRecord],
    meta: RunMeta | None,
    limit: int | None = None,
    memory_limit: int | None = None,
) -> list[Table]:
    """One table per problem and mode: strategies ranked by median time, and the verdict
    (``meta``: the run's, for each machine's roofline)."""
    from . import allocators
    from .summary import (
        SEED_OPTIONS,
        group_by_problem,
        rank,
        recommendation,
        row_text,
    )

    tables = []
    for (problem, mode, device, malloc, machine), group in group_by_problem(records).items():
        rows = rank(group, meta.roofline_for(machine) if meta is not None else None)
        known = allocators.ALLOCATORS.get(malloc)
        how = (
            f"; for your own script: {known.how_to_get()}"
            if known and known.settings()
            else " (the environment as it was)"
        )
        # Text: a title in brackets is not rich markup ("[train, cpu, ...]" vanished as one)
        where = f", machine {machine}" if machine else ""
        title = Text(f"{problem}  [{mode}, {device}, allocator {malloc}{where}]")
        if not rows:  # nothing timed: what happened to each, not an empty ranking
            t = Table(
                title=title,
                title_justify="left",
                caption=Text("No strategy was timed for this problem."),
                caption_justify="left",
            )
            for col in ("backend/strategy", "status", "reason"):
                t.add_column(col, overflow="fold")
            for r in group:
                t.add_row(Text(r.label), STATUS_STYLE[r.status], Text(r.reason or ""))
            tables.append(t)
            continue
        t = Table(
            title=title,
            title_justify="left",
            caption=Text(
                f"{recommendation(rows, memory_limit)}\nMeasured under the {malloc} allocator{how}."
            ),
            caption_justify="left",
        )
        # timed interleaved: each row's ratio to the problem's fastest, paired, with its interval
        paired = any(row.record.paired is not None for row in rows)
        for col, justify in (
            ("#", "right"),
            ("backend/strategy", "left"),
            ("median", "right"),
            ("IQR", "right"),
            ("x opt 1", "right"),
            ("x opt 2", "right"),
            ("x opt 3", "right"),
            ("peak mem", "right"),
            ("faults/call", "right"),
            ("GFLOP/s", "right"),
            ("% roofline", "right"),
            *([("x fastest, paired (95% CI)", "right")] if paired else []),
        ):
            t.add_column(col, justify=justify)
        for i, row in enumerate(rows[:limit] if limit else rows, 1):
            opt = row.record.seed_option
            cells = row_text(row)
            over = bool(memory_limit and (row.peak_bytes or 0) > memory_limit)
            t.add_row(
                str(i),
                Text(row.label + (f" [opt {opt}]" if opt else ""), style="bold" if opt else ""),
                Text(cells["median"], style="yellow" if row.noisy else ""),
                cells["IQR"],
                *(cells[f"x opt {k}"] for k in SEED_OPTIONS),
                Text(cells["peak memory"] + (" over" if over else ""), style="red" if over else ""),
                Text(
                    cells["faults/call"],
                    style="yellow" if row.faults and row.faults.flagged else "",
                ),
                cells["GFLOP/s"],
                cells["% roofline"],
                *([cells.get("x fastest, paired (95% CI)", "")] if paired else []),
            )
        failed_here = [r for r in group if r.failed]
        if failed_here:
            t.caption.append(
                "\nNot timed (failed): " + "; ".join(f"{r.label}: {r.status}" for r in failed_here)
            )
        tables.append(t)
    return tables


def backends_table(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    """``sharedconv backends``: the table, then each reason whole below it (a long install
    hint or error folded into a cell is unreadable). Names and reasons come from plugins:
    data, never markup."""
    console = console or Console()
    table = Table(title="Registered backends", title_justify="left")
    for col in ("backend", "status", "versions", "strategies", "from"):
        table.add_column(col, overflow="fold")
    for row in rows:
        status = {"available": "[green]available[/]", "unavailable": "[yellow]unavailable[/]"}.get(
            row["status"], "[red]error[/]"
        )
        table.add_row(
            Text(row["name"]),
            status,
            Text(", ".join(f"{k} {v}" for k, v in row.get("versions", {}).items())),
            Text(", ".join(s["name"] for s in row["strategies"])),
            Text(str(row["origin"])),
        )
    console.print(table)
    for row in rows:
        if row.get("reason"):
            console.print(
                f"{row['name']}: {row['reason']}", soft_wrap=True, highlight=False, markup=False
            )


def strategies_table(entries: list[tuple[str, Any]]) -> Table:
    """``sharedconv strategies``: ``entries`` are (backend name, backend or load error)."""
    table = Table(title="Strategies", title_justify="left")
    for col in (
        "backend/strategy",
        "layouts in -> out",
        "seed option",
        "description",
        "timed call",
    ):
        table.add_column(col, overflow="fold")
    for name, backend in entries:
        if isinstance(backend, Exception):
            table.add_row(Text(name), "", "", Text(str(backend), style="red"), "")
            continue
        for s in backend.strategies:
            about = [f"the {s.form} form of {s.base}"] if s.form else []
            about += [f"formerly {old}" for old in s.formerly]
            description = s.description + (f" ({'; '.join(about)})" if about else "")
            table.add_row(
                Text(f"{name}/{s.name}"),
                f"{s.input_layout} -> {s.output_layout}",
                str(s.seed_option or ""),
                Text(description),
                Text(s.timed),
            )
    return table


def compare_table(rows: list[dict[str, Any]], id_a: str, id_b: str) -> Table:
    """``sharedconv compare``: ratio of medians per case with the test's verdict."""
    table = Table(title=f"{id_b} vs {id_a} (ratio > 1: B is slower)", title_justify="left")
    for col in ("case", "A median", "B median", "B/A", "p", "verdict"):
        table.add_column(col, overflow="fold")
    for row in rows:
        style = {"regression": "bold red", "improvement": "green"}.get(row["verdict"], "")
        table.add_row(
            Text(row["case"]),
            row["a"],
            row["b"],
            f"{row['ratio']:.3f}",
            f"{row['p']:.3g}",
            Text(row["verdict"], style=style),
        )
    return table
