"""``sharedconv report``: the HTML report opens offline and draws its figures, the Markdown's
tables parse as tables, and strings from plugins stay text in both."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from markdown_it import MarkdownIt
from sharedconv.harness.cli import cli
from sharedconv.harness.share import build, markdown_text, to_markdown
from sharedconv.harness.store import read_run

PLUGINS = Path(__file__).parent / "plugins"
REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE = "<script>alert(1)</script>"  # in faulty/forward_only's float16 refusal


def _run(root: Path, run_id: str, *args: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["run", *args, "--results", str(root), "--run-id", run_id,
         "--budget", "0.05", "--precision", "0.5"],
    )  # fmt: skip
    # exit 1: the faulty strategies fail on purpose
    assert result.exit_code in (0, 1), result.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Run A: numpy and the test plugin's faulty backend (a mismatch, an error, a strategy
    that claims seed option 1 and refuses float16 with markup in its reason) over a C series
    in both modes; run B: one strategy of A again, for the comparison."""
    root = tmp_path_factory.mktemp("report-results")
    with pytest.MonkeyPatch.context() as mp:
        from sharedconv.backends import registry

        mp.syspath_prepend(str(PLUGINS))
        mp.setenv("PYTHONPATH", os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]))
        registry.refresh()
        _run(
            root, "fx-a",
            "--backends", "numpy,faulty", "--strategies", "oracle64,ok,wrong,raise,forward_only",
            "--shape", "B=1,C=2,4,H=12,N=2,K=3", "--shape", "B=1,C=2,H=12,N=2,K=3,dtype=float16",
            "--mode", "both",
        )  # fmt: skip
        _run(
            root, "fx-b",
            "--backends", "numpy", "--strategies", "oracle64",
            "--shape", "B=1,C=2,4,H=12,N=2,K=3", "--mode", "forward",
        )  # fmt: skip
    registry.refresh()
    return root


def _tables(tokens) -> list[list[list[str]]]:
    """Every table of a parsed Markdown document, as rows of cell texts (header first)."""
    tables, row, in_cell = [], None, False
    for tok in tokens:
        if tok.type == "table_open":
            tables.append([])
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "tr_close":
            tables[-1].append(row)
        elif tok.type in ("th_open", "td_open"):
            in_cell = True
            row.append("")
        elif tok.type in ("th_close", "td_close"):
            in_cell = False
        elif tok.type == "inline" and in_cell:  # the text as shown, escapes resolved
            row[-1] = "".join(c.content for c in tok.children or [] if c.type == "text")
    return tables


def test_markdown_report_parses_as_tables_and_keeps_plugin_strings_as_text(runs, tmp_path):
    out = tmp_path / "r.md"
    result = CliRunner().invoke(
        cli,
        ["report", "fx-a", "--results", str(runs), "--markdown", str(out), "--compare", "fx-b"],
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    md = MarkdownIt("commonmark").enable("table")
    tables = _tables(md.parse(text))
    # one per ranked problem section (3 problems x 2 modes), failures, skips, the comparison
    assert len(tables) >= 8, text
    for table in tables:
        assert len(table) >= 2 and len({len(r) for r in table}) == 1, table  # rectangular
    ranked = [t for t in tables if t[0][:2] == ["#", "backend/strategy"]]
    assert len(ranked) == 6
    assert any(r[1] == "faulty/forward_only (option 1)" for t in ranked for r in t[1:])
    for heading in (
        "Not timed: disagreed with the oracle or failed",
        "Not run, and why",
        "Compared with fx-b",
    ):
        assert heading in text, heading
    rendered = md.render(text)
    # the refusal's markup is shown, never live: no script element, no link
    assert "<script" not in rendered and "<a " not in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    # the failures name the disagreeing strategy and the one that raised
    assert "faulty/wrong" in text and "faulty/raise" in text


def test_report_prints_markdown_without_a_file_and_refuses_an_unknown_run(runs):
    result = CliRunner().invoke(cli, ["report", str(runs / "fx-b")])
    assert result.exit_code == 0 and result.output.startswith("## sharedconv: fx-b")
    result = CliRunner().invoke(cli, ["report", "no-such-run", "--results", str(runs)])
    assert result.exit_code == 2
    assert "no run.json" in result.output and "sharedconv runs" in result.output
    assert "Traceback" not in result.output


def test_markdown_of_the_reference_run_shows_the_seed_options_in_every_table():
    report = build(read_run(REFERENCE))
    text = to_markdown(report, top=3)
    assert len(text) < 65_536  # a GitHub comment takes it
    for section in report.sections:
        block = text.split(markdown_text(section.title), 1)[1].split("###", 1)[0]
        for option in (1, 2, 3):
            assert f"(option {option})" in block, (section.title, option)


def test_markdown_text_keeps_markup_literal():
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    for hostile in ("[x](http://e/)", "![i](http://e/i.png)", "<img src=x>", "1. list", "# head",
                    "a | b", "~~s~~", "*e* _e_", "&lt;", "- item", "`code`"):  # fmt: skip
        html = md.render(markdown_text(hostile))
        inner = re.sub(r"^<p>|</p>\n$", "", html)
        import html as html_lib

        assert html_lib.unescape(inner) == hostile, (hostile, html)


def test_html_report_has_every_section_and_escapes_plugin_strings(runs, tmp_path):
    out = tmp_path / "r.html"
    result = CliRunner().invoke(
        cli, ["report", "fx-a", "--results", str(runs), "--html", str(out), "--compare", "fx-b"]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    for anchor in ("machine", "problems", "scaling", "agreement", "skipped", "compare"):
        assert f'id="{anchor}"' in page, anchor
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'http-equiv="Content-Security-Policy"' in page and "default-src 'none'" in page
    # the C series (2, 4) is a scaling set: its curves are drawn, not the "nothing" note
    assert "against C (channels)" in page
    assert "has no set of problems that differ in only one size" not in page


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
def test_html_report_draws_every_figure_offline_in_chromium(runs, tmp_path):
    from playwright.sync_api import sync_playwright

    out = tmp_path / "r.html"
    result = CliRunner().invoke(
        cli, ["report", "fx-a", "--results", str(runs), "--html", str(out), "--compare", "fx-b"]
    )
    assert result.exit_code == 0, result.output
    requests, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
        # anything but the file itself is refused and recorded
        context.route(
            re.compile(r"^(?!file://).*"),
            lambda route: (requests.append(route.request.url), route.abort()),
        )
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(out.as_uri())
        page.wait_for_function("document.body.dataset.figures", timeout=60_000)
        state = page.evaluate("document.body.dataset.figures")
        drawn = page.locator(".js-plotly-plot").count()
        placed = page.locator("div.figure").count()
        svg_points = page.locator(".js-plotly-plot .scatterlayer .point").count()
        browser.close()
    assert state == "drawn" and errors == [] and requests == []
    assert drawn == placed >= 6  # tradeoffs, scaling, agreement, comparison
    assert svg_points > 0


def test_a_run_where_nothing_was_timed_prints_why_not_an_empty_ranking(tmp_path, test_plugins):
    result = CliRunner().invoke(
        cli,
        ["run", "--backends", "faulty", "--strategies", "forward_only", "--shape", "B=1,C=2,H=8,N=2,K=3",
         "--mode", "train", "--results", str(tmp_path), "--budget", "0.05"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # the title keeps its brackets (they are not console markup), the table says what happened
    assert "B=1,C=2,H=8,W=8,N=2,K=3  [train, cpu, allocator" in result.output
    assert "No strategy was timed for this problem." in result.output
    table = result.output.split("[train, cpu, allocator", 1)[1].split("No strategy was timed", 1)[0]
    assert (
        "faulty/forward_only" in table and "not differentiable" in table and "median" not in table
    )


def test_how_near_names_what_differs():
    from sharedconv.backends.problem import parse_problem
    from sharedconv.harness.summary import how_near

    asked = parse_problem("B=10,C=100,H=200,W=200,N=20,K=5")
    text = how_near(asked, "B=10,C=3,H=200,W=200,N=20,K=5")
    assert "C 3 instead of 100 (33.3x smaller)" in text and "B " not in text
    assert "output is 0.03x the size of yours" in text
    assert how_near(asked, asked.to_text()) == "the same problem"
    assert "dtype float32 instead of float64" in how_near(
        parse_problem("B=10,C=3,H=200,W=200,N=20,K=5,dtype=float64"),
        "B=10,C=3,H=200,W=200,N=20,K=5",
    )


@pytest.mark.parametrize(
    ("run", "doc"),
    [("reference", "reference.md"), ("reference-h100-tf32-off-channels", "h100-channels.md"),
     ("reference-seed", "seed.md")],
)  # fmt: skip
def test_the_committed_markdown_reports_are_what_the_command_writes(run, doc):
    """docs/reports/ is linked from the README: `make reports` rewrites it from results/."""
    committed = (REFERENCE.parent.parent / "docs" / "reports" / doc).read_text()
    assert to_markdown(build(read_run(REFERENCE.parent / run))) == committed, "run `make reports`"
    html_doc = REFERENCE.parent.parent / "docs" / "reports" / doc.replace(".md", ".html")
    if html_doc.exists():  # its figures are plotly-version bound; the sections are not
        assert 'id="problems"' in html_doc.read_text()
