"""A run as a report for people who were not there: what the HTML and Markdown reports say.

``build`` reads one stored run (and, with ``compare``, a second) into a ``Report``: the machine,
one section per problem (the recommendation and the ranked rows), what disagreed with the oracle,
what was not run and why, and the comparison. ``to_markdown`` writes it for a pull request or an
issue comment; ``sharedconv.dashboard.html_report`` writes the same content, with the figures,
as one self-contained HTML file. Pure functions of stored records: nothing is measured here.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .allocators import run_text as allocator_text
from .compare import compare_runs
from .records import NOT_RUN, CaseRecord, Machine, Roofline
from .store import Run
from .summary import (
    Row,
    format_bytes,
    group_by_problem,
    rank,
    recommendation,
    row_text,
)

# GitHub refuses a comment or an issue body longer than this
GITHUB_COMMENT_LIMIT = 65_536
# What Markdown (CommonMark, GitHub's and Streamlit's extensions) gives a meaning anywhere in a
# line: emphasis, code, links and images, HTML and entities, table pipes, strikethrough, math,
# and Streamlit's :colour[...] and :emoji: directives
_MARKDOWN_SPECIALS = set("\\`*_[]<>|~$&:")
# ... and what it gives a meaning at the start of a line: headings, lists, quotes, rules
_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+(?=[.)](?:\s|$)))")


def _escape_line_start(m: re.Match) -> str:
    lead, mark = m.group(1), m.group(2)
    if mark.isdigit():  # '1. ' starts a list: the '.' or ')' after the number is escaped
        return lead + mark + "\\"
    return lead + "\\" + mark


def markdown_text(value: object) -> str:
    """``value`` as literal text inside Markdown (GitHub's, Streamlit's): strings from
    results files, plugins and frameworks are data, so a link, image, HTML tag, formula,
    mention or table pipe in them is shown as typed, never rendered, fetched or notified.
    Whitespace is folded to one line."""
    flat = " ".join(str(value).split())
    out = "".join("\\" + c if c in _MARKDOWN_SPECIALS else c for c in flat)
    out = _LINE_START.sub(_escape_line_start, out)
    # GitHub notifies '@name' even escaped; a word joiner after '@' keeps it text
    return out.replace("@", "@\u2060")


@dataclass
class ProblemSection:
    problem: str
    mode: str
    device: str
    malloc: str
    machine: str  # of a cluster run; "" for a run made on one machine
    rows: list[Row]
    recommendation: str
    not_timed: list[CaseRecord]  # the records of this problem that were not timed

    @property
    def title(self) -> str:
        where = f", machine {self.machine}" if self.machine else ""
        return f"{self.problem} [{self.mode}, {self.device}, allocator {self.malloc}{where}]"


@dataclass
class Report:
    run: Run
    facts: list[tuple[str, str]]
    sections: list[ProblemSection]
    failures: list[CaseRecord]
    not_run: list[tuple[str, str, str, int]]  # (backend/strategy, status, reason, cases)
    counts: dict[str, int]
    compare_run: Run | None = None
    comparison: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def machine_facts(run: Run) -> list[tuple[str, str]]:
    """What a reader needs to weigh the numbers: the machine, the settings, the versions."""
    meta = run.meta
    machine = meta.machine or Machine()
    roof = meta.roofline or Roofline()
    project = meta.project or {}

    def known(value: Any) -> str:
        return "?" if value is None else str(value)

    facts = [
        ("run", f"{run.run_id} ({known(meta.status)}), suite {meta.suite or 'ad hoc'}"),
        ("started / ended", f"{known(meta.started)} / {meta.ended or '-'}"),
        ("command", meta.command or ""),
        (
            "machine",
            f"{machine.gpu or known(machine.cpu_model)}; "
            f"{known(machine.usable_cores)} usable cores of {known(machine.logical_cores)}; "
            f"{format_bytes(machine.memory_bytes)} memory; {known(machine.os)}",
        ),
        ("device, threads", f"{meta.device}, {known(meta.threads)} threads"),
        ("allocator", allocator_text(meta)),
    ]
    if roof.peak_flops is not None:
        facts.append(
            (
                "roofline",
                f"{roof.peak_flops / 1e9:.1f} GFLOP/s peak, "
                f"{(roof.copy_bytes_per_s or 0) / 1e9:.1f} GB/s copy bandwidth "
                f"({roof.method or 'method not recorded'})",
            )
        )
    else:
        facts.append(("roofline", roof.error or "not measured"))
    versions: dict[str, str] = {"python": known(machine.python)}
    for worker in (meta.workers or {}).values():
        if isinstance(worker, dict):
            for name, version in (worker.get("versions") or {}).items():
                versions.setdefault(str(name), str(version))
    facts.append(("versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))))
    commit = project.get("commit") or "unknown"
    facts.append(
        (
            "sharedconv commit",
            commit + (" (with uncommitted changes)" if project.get("dirty") else ""),
        )
    )
    return facts


def build(
    run: Run, compare: Run | None = None, threshold: float = 0.10, alpha: float = 0.05
) -> Report:
    sections = []
    for (problem, mode, device, malloc, machine), group in group_by_problem(run.cases).items():
        rows = rank(group, run.meta.roofline_for(machine))
        sections.append(
            ProblemSection(
                problem,
                mode,
                device,
                malloc,
                machine,
                rows,
                recommendation(rows),
                [r for r in group if not (r.status == "pass" and r.timing)],
            )
        )
    failures = [r for r in run.cases if r.failed]
    reasons = Counter(
        (r.label, r.status.value, r.reason or "no reason recorded")
        for r in run.cases
        if r.status in NOT_RUN
    )
    not_run = sorted(((*k, n) for k, n in reasons.items()), key=lambda t: (t[0], t[2]))
    report = Report(
        run=run,
        facts=machine_facts(run),
        sections=sections,
        failures=failures,
        not_run=not_run,
        counts=dict(Counter(r.status.value for r in run.cases)),
        warnings=list(run.warnings),
    )
    if compare is not None:
        report.compare_run = compare
        report.comparison = compare_runs(run, compare, threshold, alpha)
        report.warnings += compare.warnings
    return report


def compact_rows(section: ProblemSection, top: int) -> list[tuple[int, Row]]:
    """The ``top`` fastest, and the fastest implementation of each seed option not among them
    (so a reader always sees where the question's three options stand), with their ranks."""
    chosen = list(enumerate(section.rows[:top], 1))
    seen = {row.record.seed_option for _, row in chosen}
    for i, row in enumerate(section.rows, 1):
        opt = row.record.seed_option
        if opt and opt not in seen:
            chosen.append((i, row))
            seen.add(opt)
    return chosen


# -- Markdown ---------------------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    lines = [
        "| " + " | ".join(markdown_text(h) for h in header) + " |",
        "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(markdown_text(c) or " " for c in r) + " |" for r in rows]
    return "\n".join(lines)


def to_markdown(report: Report, top: int = 5) -> str:
    """GitHub-flavoured Markdown: the machine in one line, then per problem the recommendation
    and a compact table (the ``top`` fastest and the seed's options); failures, skips and the
    comparison in short."""
    run = report.run
    facts = dict(report.facts)
    out = [
        f"## sharedconv: {markdown_text(run.run_id)}",
        "",
        f"- **Machine**: {markdown_text(facts['machine'])}; {markdown_text(facts['device, threads'])}",
        f"- **Allocator**: {markdown_text(facts['allocator'])}",
        f"- **Roofline**: {markdown_text(facts['roofline'])}",
        f"- **Versions**: {markdown_text(facts['versions'])}",
        f"- **Run**: {markdown_text(facts['run'])}, started {markdown_text(facts['started / ended'])}; "
        f"sharedconv {markdown_text(facts['sharedconv commit'])}",
        "",
        "Every strategy was checked against a float64 oracle before it was timed. "
        "*x opt k*: times faster than the best implementation of the seed's option k "
        + markdown_text(
            "(1: Conv3D (1,K,K), 2: TimeDistributed / map over C, 3: split + shared Conv2D)."
        ),
        "",
    ]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts.items()))
    out.append(f"{len(run.cases)} cases: {markdown_text(counts)}.")
    for section in report.sections:
        out += [
            "",
            f"### {markdown_text(section.title)}",
            "",
            f"**{markdown_text(section.recommendation)}**",
            "",
        ]
        if not section.rows:
            continue
        header = [
            "#",
            "backend/strategy",
            "median",
            "IQR",
            "x opt 1",
            "x opt 2",
            "x opt 3",
            "peak memory",
        ]
        rows = []
        for i, row in compact_rows(section, top):
            cells = row_text(row)
            opt = row.record.seed_option
            rows.append(
                [str(i), cells["backend/strategy"] + (f" (option {opt})" if opt else "")]
                + [cells[h] for h in header[2:]]
            )
        out.append(_md_table(header, rows, right={0, 2, 3, 4, 5, 6, 7}))
        more = len(section.rows) - len(rows)
        if more > 0:
            out += ["", f"{more} more strategies timed; the HTML report ranks all of them."]
    if report.failures:
        out += [
            "",
            f"### Not timed: disagreed with the oracle or failed ({len(report.failures)})",
            "",
        ]
        out.append(
            _md_table(
                ["backend/strategy", "problem", "mode", "status", "error / bound", "reason"],
                [
                    [
                        r.label,
                        r.problem,
                        r.mode,
                        r.status.value,
                        f"{ratio:.2g}" if (ratio := r.worst_ratio()) is not None else "",
                        (r.reason or "")[:200],
                    ]
                    for r in report.failures
                ],
            )
        )
    if report.not_run:
        out += [
            "",
            f"### Not run, and why ({sum(n for *_, n in report.not_run)} cases)",
            "",
            *_folded(
                f"{len(report.not_run)} strategies with a reason",
                _md_table(
                    ["backend/strategy", "status", "reason", "cases"],
                    [[s, st, why[:200], str(n)] for s, st, why, n in report.not_run],
                    right={3},
                ),
            ),
        ]
    if report.compare_run is not None:
        out += ["", *comparison_markdown(report)]
    return "\n".join(out) + "\n"


def comparison_markdown(report: Report, limit: int = 20) -> list[str]:
    rows = report.comparison
    other = report.compare_run
    a, b = report.run.run_id, other.run_id if other else "?"
    title = f"### Compared with {markdown_text(b)} (B) against {markdown_text(a)} (A)"
    if not rows:
        return [title, "", "The two runs have no timed case in common."]
    verdicts = Counter(r["verdict"] for r in rows)
    lines = [
        title,
        "",
        f"{len(rows)} cases in common: {verdicts.get('regression', 0)} slower in B, "
        f"{verdicts.get('improvement', 0)} faster in B (beyond the threshold, Mann-Whitney p below "
        "alpha), the rest the same.",
        "",
    ]
    changed = [r for r in rows if r["verdict"] != "same"]
    if changed:
        lines += _folded(
            f"the {min(limit, len(changed))} largest changes"
            + (f" of {len(changed)} (the HTML report lists all)" if len(changed) > limit else ""),
            _md_table(
                ["case", "A", "B", "B/A", "p", "verdict"],
                [
                    [r["case"], r["a"], r["b"], f"{r['ratio']:.3f}", f"{r['p']:.2g}", r["verdict"]]
                    for r in changed[:limit]
                ],
                right={1, 2, 3, 4},
            ),
        )
    return lines


def _folded(summary: str, body: str) -> list[str]:
    """A block GitHub shows folded (its Markdown takes <details>; the blank lines around the
    table let it render as one)."""
    return [f"<details><summary>{markdown_text(summary)}</summary>", "", body, "", "</details>"]
