"""A run as one self-contained HTML file: the report's content (``harness.share``) with the
dashboard's figures (``figures.py``, the same builders), openable offline.

plotly.js travels inside the file, gzip-compressed and base64-encoded (1.9 MB instead of 4.8),
and is unpacked by the browser's own ``DecompressionStream``; the page's Content-Security-Policy
allows no request to leave it. Every string from a results file, plugin or framework is escaped:
it is shown as typed, never rendered as HTML.
"""

from __future__ import annotations

import base64
import gzip
import html
from functools import cache
from pathlib import Path

import pandas as pd
import plotly
import plotly.graph_objects as go
from sharedconv.harness.share import Report
from sharedconv.harness.summary import SEED_OPTIONS, row_text

from .data import SCALING_AXES, flatten, scaling_groups, timed
from .figures import (
    NATIVE_FAMILY,
    STRATEGY_FAMILIES,
    agreement_heatmap,
    color_map,
    compare_scatter,
    scaling_lines,
    tradeoff_scatter,
)

MAX_SCALING_FIGURES = 8  # per mode; the rest are named with the command that shows them
CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data:; font-src data:"
)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em;
       color: #1b1b1b; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.86em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.55em; vertical-align: top; }
th { background: #f3f3f3; text-align: left; } td.num { text-align: right; white-space: nowrap; }
tr.seed td { background: rgba(255, 200, 0, 0.18); font-weight: 600; }
.recommendation { background: #eef6ee; border-left: 4px solid #2e7d32; padding: 0.5em 0.8em; }
.figure { min-height: 420px; } .note { color: #555; font-size: 0.9em; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.2em 1em; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
nav ul { columns: 2; } code { background: #f3f3f3; padding: 0 0.25em; }
#plotly-status { color: #8a5a00; }
"""
LOADER = """
(async () => {
  const status = document.getElementById("plotly-status");
  try {
    if (typeof DecompressionStream === "undefined") {
      throw new Error("this browser has no DecompressionStream");
    }
    const packed = document.getElementById("plotly-gz").textContent.trim();
    const bytes = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    (0, eval)(await new Response(stream).text());
    for (const el of document.querySelectorAll("div.figure[data-figure]")) {
      const fig = JSON.parse(document.getElementById(el.dataset.figure).textContent);
      await Plotly.newPlot(el, fig.data, fig.layout, {responsive: true, displaylogo: false});
    }
    document.body.dataset.figures = "drawn";
    status.remove();
  } catch (e) {
    document.body.dataset.figures = "failed";
    status.textContent = "The figures could not be drawn in this browser (" + e +
      "); every number is in the tables.";
  }
})();
"""


def esc(value: object) -> str:
    return html.escape(str(value))


@cache
def _packed_plotly() -> str:
    source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return base64.b64encode(gzip.compress(source.read_bytes(), 9, mtime=0)).decode("ascii")


class _Page:
    """Collects the body and the figures (as JSON data blocks drawn by the loader)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures: list[str] = []
        self.toc: list[tuple[str, str, int]] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def heading(self, level: int, title: str, anchor: str) -> None:
        self.toc.append((anchor, title, level))
        self.add(f'<h{level} id="{anchor}">{esc(title)}</h{level}>')

    def figure(self, fig: go.Figure) -> None:
        fid = f"figure-{len(self.figures)}"
        # plotly's JSON writes '<' as \\u003c, so no data can close the script element
        self.figures.append(
            f'<script type="application/json" id="{fid}">{fig.to_json(engine="json")}</script>'
        )
        self.add(f'<div class="figure" data-figure="{fid}"></div>')

    def table(
        self,
        header: list[str],
        rows: list[list[str]],
        numeric: set[str] = frozenset(),
        marked: list[bool] | None = None,
    ) -> None:
        out = [
            "<table><thead><tr>",
            *(f"<th>{esc(h)}</th>" for h in header),
            "</tr></thead><tbody>",
        ]
        for i, row in enumerate(rows):
            cls = ' class="seed"' if marked and marked[i] else ""
            out.append(f"<tr{cls}>")
            out += [
                f'<td class="num">{esc(c)}</td>' if h in numeric else f"<td>{esc(c)}</td>"
                for h, c in zip(header, row, strict=True)
            ]
            out.append("</tr>")
        out.append("</tbody></table>")
        self.add("".join(out))


def _anchor(*parts: object) -> str:
    return "s-" + "-".join("".join(c if c.isalnum() else "-" for c in str(p)) for p in parts)


def to_html(report: Report) -> str:
    run = report.run
    frame = pd.DataFrame(flatten(run))
    labels = list(frame["label"].unique()) if not frame.empty else []
    if report.compare_run is not None:
        labels += [r.label for r in report.compare_run.cases]
    colors = color_map(labels)
    page = _Page()

    page.heading(2, "Machine and settings", "machine")
    page.add(
        '<dl class="facts">'
        + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in report.facts)
        + "</dl>"
    )
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts.items()))
    page.add(f"<p>{len(run.cases)} cases: {esc(counts)}.</p>")
    for warning in report.warnings:
        page.add(f'<p class="note">Skipped while reading: {esc(warning)}</p>')

    page.heading(2, "Recommendations, per problem", "problems")
    page.add(
        '<p class="note">Every strategy was checked against a float64 oracle before it was '
        "timed. <i>x opt k</i>: how many times faster than the best implementation of the "
        "seed's option k ("
        + esc(", ".join(f"{k}: {v}" for k, v in SEED_OPTIONS.items()))
        + "); rows of the seed's options are highlighted. Peak memory: of one call above the "
        "prepared state, checked against the call's own outputs (docs/memory.md).</p>"
    )
    timed_frame = timed(frame)
    for section in report.sections:
        page.heading(
            3,
            section.title,
            _anchor(section.problem, section.mode, section.device, section.malloc, section.machine),
        )
        page.add(f'<p class="recommendation">{esc(section.recommendation)}</p>')
        if section.rows:
            cells = [row_text(row) for row in section.rows]
            header = ["#", *cells[0]]
            numeric = {"#", "median", "IQR", "x opt 1", "x opt 2", "x opt 3", "peak memory"}
            numeric |= {"faults/call", "GFLOP/s", "% roofline", "x fastest, paired (95% CI)"}
            page.table(
                header,
                [[str(i), *(c.get(h, "") for h in header[1:])] for i, c in enumerate(cells, 1)],
                numeric,
                [bool(row.record.seed_option) for row in section.rows],
            )
            one = timed_frame[
                (timed_frame["problem"] == section.problem)
                & (timed_frame["mode"] == section.mode)
                & (timed_frame["malloc"] == section.malloc)
                & (timed_frame["machine_id"] == section.machine)
            ]
            if one["peak_bytes"].notna().any():
                page.figure(tradeoff_scatter(one, colors, f"{section.title}: time against memory"))
        if section.not_timed:
            page.add(
                f"<details><summary>{len(section.not_timed)} strategies not timed here, and why"
                "</summary>"
            )
            page.table(
                ["backend/strategy", "status", "reason"],
                [[r.label, r.status.value, r.reason or ""] for r in section.not_timed],
            )
            page.add("</details>")

    page.heading(2, "Scaling", "scaling")
    _scaling(page, timed_frame, colors)

    page.heading(2, "Agreement with the oracle", "agreement")
    verified = frame.dropna(subset=["error_vs_bound"]) if not frame.empty else frame
    if not verified.empty:
        page.figure(agreement_heatmap(verified))
    if report.failures:
        page.add(f"<p>{len(report.failures)} cases disagreed with the oracle or failed:</p>")
        page.table(
            ["backend/strategy", "problem", "mode", "status", "reason"],
            [[r.label, r.problem, r.mode, r.status.value, r.reason or ""] for r in report.failures],
        )
    else:
        page.add("<p>No strategy disagreed with the oracle, crashed or timed out in this run.</p>")

    page.heading(2, "Not run, and why", "skipped")
    if report.not_run:
        page.table(
            ["backend/strategy", "status", "reason", "cases"],
            [[s, st, why, str(n)] for s, st, why, n in report.not_run],
            {"cases"},
        )
    else:
        page.add("<p>Every case of the plan ran.</p>")

    if report.compare_run is not None:
        _comparison(page, report)

    return _document(run.run_id, page)


def _scaling(page: _Page, frame: pd.DataFrame, colors: dict[str, str]) -> None:
    drawn = 0
    for mode in sorted(frame["mode"].unique()) if not frame.empty else []:
        count = 0
        for axis_name, axis in SCALING_AXES.items():
            for desc, group in scaling_groups(frame[frame["mode"] == mode], axis):
                count += 1
                if count > MAX_SCALING_FIGURES:
                    continue
                page.add(f"<h3>{esc(f'{mode}: against {axis_name}, with {desc}')}</h3>")
                page.figure(scaling_lines(group, axis, axis_name, "time", colors, None))
                drawn += 1
        if count > MAX_SCALING_FIGURES:
            page.add(
                f'<p class="note">{count - MAX_SCALING_FIGURES} more sets of {esc(mode)} problems '
                "vary one size; the dashboard's Scaling page shows each (<code>sharedconv "
                "dashboard</code>).</p>"
            )
    if not drawn:
        page.add(
            "<p>This run has no set of problems that differ in only one size, so there is no "
            "scaling curve to draw. The <code>channels</code>, <code>spatial</code>, "
            "<code>filters</code>, <code>kernel</code> and <code>batch</code> suites each vary one "
            "size: <code>sharedconv run --suite channels</code>.</p>"
        )


def _comparison(page: _Page, report: Report) -> None:
    a, b = report.run.run_id, report.compare_run.run_id
    page.heading(2, f"Compared: {b} (B) against {a} (A)", "compare")
    rows = report.comparison
    if not rows:
        page.add("<p>The two runs have no timed case in common.</p>")
        return
    verdicts = {v: sum(r["verdict"] == v for r in rows) for v in ("regression", "improvement")}
    page.add(
        f"<p>{len(rows)} cases in common: {verdicts['regression']} slower in B and "
        f"{verdicts['improvement']} faster in B (beyond the threshold, Mann-Whitney U on the raw "
        "samples); the rest the same.</p>"
    )
    page.figure(compare_scatter(pd.DataFrame(rows), a, b))
    page.table(
        ["case", "A", "B", "B/A", "p", "verdict"],
        [
            [r["case"], r["a"], r["b"], f"{r['ratio']:.3f}", f"{r['p']:.2g}", r["verdict"]]
            for r in rows
        ],
        {"A", "B", "B/A", "p"},
    )


def _legend_note() -> str:
    families = [(family, symbol) for family, _, symbol in STRATEGY_FAMILIES] + [NATIVE_FAMILY]
    shapes = ", ".join(f"{family}: {symbol}" for family, symbol in families)
    return (
        '<p class="note">In the figures, a hue family per framework (its strategies in shades '
        "of it), a marker shape per strategy family ("
        + esc(shapes)
        + "), and a black outline on the seed's three options. Hover a point for everything "
        "measured about it.</p>"
    )


def _document(run_id: str, page: _Page) -> str:
    toc = "".join(
        f'<li style="margin-left:{(level - 2) * 1.2}em"><a href="#{anchor}">{esc(title)}</a></li>'
        for anchor, title, level in page.toc
    )
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>sharedconv report: {esc(run_id)}</title>",
            f"<style>{STYLE}</style></head><body>",
            f"<h1>sharedconv report: {esc(run_id)}</h1>",
            "<p>Which way of computing a channel-shared 2-D convolution is fastest, verified "
            "against a float64 oracle and timed on the machine below. Made with "
            "<code>sharedconv report</code>; it opens offline.</p>",
            '<p id="plotly-status">Drawing the figures…</p>',
            "<noscript><p>The figures need JavaScript; every number is in the tables.</p></noscript>",
            _legend_note(),
            f"<nav><ul>{toc}</ul></nav>",
            *page.parts,
            *page.figures,
            f'<script id="plotly-gz" type="application/octet-stream">{_packed_plotly()}</script>',
            f"<script>{LOADER}</script>",
            "</body></html>",
        ]
    )
