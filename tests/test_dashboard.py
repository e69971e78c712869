"""The dashboard: loaders, figure builders, every page under AppTest, and a real browser."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from sharedconv.dashboard import data as dash_data
from sharedconv.dashboard import figures
from sharedconv.harness.cli import cli

PAGES = Path(__file__).resolve().parent.parent / "dashboard" / "app_pages"
PAGE_FILES = sorted(p.name for p in PAGES.glob("*.py"))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Two small real runs (numpy backend), a foreign folder and a damaged line."""
    root = tmp_path_factory.mktemp("results")
    for run_id in ("run-a", "run-b"):
        result = CliRunner().invoke(
            cli,
            [
                "run", "--backends", "numpy", "--shape", "B=1,C=1,2,4,H=12,N=2,K=3", "--mode", "both",
                "--results", str(root), "--run-id", run_id, "--budget", "0.05", "--precision", "0.5",
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    (root / "foreign").mkdir()
    (root / "foreign" / "data.csv").write_text("a,b\n1,2\n")
    with open(root / "run-b" / "cases.jsonl", "a") as f:
        f.write('{"case": "damaged')
    return root


@pytest.fixture
def env_results(results, monkeypatch):
    monkeypatch.setenv("SHAREDCONV_RESULTS", str(results))
    return results


def test_load_skips_foreign_and_damaged(results):
    loaded = dash_data.load([results])
    assert {r.run_id for r in loaded.runs} == {"run-a", "run-b"}
    assert any("foreign" in s for s in loaded.skipped)
    assert any("damaged line" in s for s in loaded.skipped)
    assert len(loaded.cases) == 2 * 3 * 2 * 2  # runs x problems x modes x strategies
    timed = dash_data.timed(loaded.cases)
    assert (timed["median_s"] > 0).all() and (timed["roofline_pct"] > 0).all()


def test_load_empty_folder(tmp_path):
    loaded = dash_data.load([tmp_path])
    assert loaded.empty and loaded.cases.empty


def test_scaling_groups_hold_the_other_sizes_fixed(results):
    frame = dash_data.load([results]).cases
    groups = dash_data.scaling_groups(frame[frame["run_id"] == "run-a"], "C")
    assert len(groups) == 1
    desc, group = groups[0]
    assert sorted(group["C"].unique()) == [1, 2, 4]
    assert "H=12" in desc
    assert dash_data.scaling_groups(frame, "N") == []


def test_figures(results):
    frame = dash_data.timed(dash_data.load([results]).cases)
    one = frame[(frame["run_id"] == "run-a") & (frame["mode"] == "forward")]
    colors = figures.color_map(list(frame["label"]))
    assert colors == figures.color_map(list(reversed(frame["label"])))  # stable across pages
    # a hue family per backend: a framework's strategies share it, another framework's do not
    fam = figures.color_map(["torch/fold", "torch/conv3d", "tensorflow/fold", "plugin/x"])

    def hue(color):
        import colorsys

        r, g, b = (int(v) / 255 for v in color.removeprefix("rgb(").removesuffix(")").split(","))
        return colorsys.rgb_to_hsv(r, g, b)[0]

    assert abs(hue(fam["torch/fold"]) - hue(fam["torch/conv3d"])) < 0.05
    assert abs(hue(fam["torch/fold"]) - hue(fam["tensorflow/fold"])) > 0.2
    assert fam["plugin/x"].startswith("#")  # no family: the qualitative palette
    bar = figures.ranking_bar(one[one["C"] == 2], colors, "t")
    assert bar.layout.xaxis.type == "log" and "ms" in bar.layout.xaxis.title.text
    assert "numpy/oracle" in bar.data[0].hovertext[0]
    lines = figures.scaling_lines(one, "C", "C (channels)", "time", colors, "backend")
    assert lines.layout.xaxis.title.text is None or "log" in str(lines.layout)
    names = {t.name for t in lines.data if t.name}
    assert names == {"numpy/oracle64", "numpy/oracle32"}
    scatter = figures.tradeoff_scatter(one[one["C"] == 4], colors, "t")
    assert "MiB" in scatter.layout.xaxis.title.text
    matrix = figures.speedup_matrix(one, "numpy/oracle64")
    assert (matrix.loc["numpy/oracle64"] == 1.0).all()
    figures.speedup_heatmap(matrix, "numpy/oracle64")
    heat = figures.agreement_heatmap(frame)
    assert "bound" in heat.layout.title.text


def test_pareto_front():
    frame = pd.DataFrame(
        {"label": list("abcd"), "median_s": [1.0, 2.0, 3.0, 1.5], "peak_bytes": [100, 50, 10, 200]}
    )
    front = figures.pareto_front(frame)
    assert list(front["label"]) == ["a", "b", "c"]  # d is beaten by a on both


@pytest.mark.parametrize("page", PAGE_FILES)
def test_every_page_runs_without_exception(env_results, page):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGES / page), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title, "every page has a title"


def test_recommend_page_values(env_results):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGES / "recommend.py"), default_timeout=60)
    at.run()
    assert at.success[0].value.startswith("Use numpy/")
    frame = at.dataframe[0].value
    assert {"median (ms)", "peak memory (MiB)", "% roofline", "x option 1"} <= set(frame.columns)
    at.text_input(key="recommend_typed").input("B=1,C=3,H=12,N=2,K=3").run()
    assert "was not measured" in at.warning[0].value
    # how near the answer is: the size that differs, with the factor
    assert "C 4 instead of 3 (1.33x larger)" in at.warning[0].value
    assert not at.exception
    at.text_input(key="recommend_typed").input("C=3,H=12").run()
    assert "does not parse" in at.error[0].value


def test_pages_with_an_empty_results_folder_give_guidance(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SHAREDCONV_RESULTS", str(tmp_path))
    for page in (
        "recommend.py",
        "scaling.py",
        "tradeoffs.py",
        "agreement.py",
        "compare.py",
        "machine.py",
    ):
        at = AppTest.from_file(str(PAGES / page), default_timeout=60)
        at.run()
        assert not at.exception
        assert "No results found" in at.info[0].value
        assert "sharedconv run --suite smoke" in at.info[0].value


def test_a_page_with_nothing_to_draw_offers_the_suite_that_fills_it(env_results):
    """Scaling against N on runs that vary only C: it names the suite, and the Run page
    opens with that suite chosen."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGES / "scaling.py"), default_timeout=60)
    at.run()
    at.sidebar.radio(key="scaling_axis").set_value("N (filters)").run()
    assert not at.exception
    assert "sharedconv run --suite filters --mode forward" in at.info[0].value
    run = AppTest.from_file(str(PAGES / "run.py"), default_timeout=60)
    run.query_params["suite"] = "filters"
    run.query_params["mode"] = "train"
    run.run()
    assert not run.exception
    assert run.selectbox[0].value == "filters" and run.radio[1].value == "train"


def test_machine_page_says_which_allocator_measured(env_results):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGES / "machine.py"), default_timeout=60)
    at.run()
    assert not at.exception
    from sharedconv.harness import allocators

    text = " ".join(m.value for m in at.markdown)
    assert "**Allocator**" in text
    assert "**Rounds**: 1: every case was measured in one worker" in text
    default = allocators.get(allocators.default())
    assert f"{default.name} ({default.summary})" in " ".join(t.value for t in at.text)
    # what the worker really ran with, probed there
    probed = at.dataframe[0].value["allocator in the worker (probed)"]
    assert probed.str.contains("a freed 64 MiB block is reused").all()


def test_pages_read_a_run_made_in_rounds(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    result = CliRunner().invoke(
        cli,
        [
            "run", "--backends", "numpy", "--shape", "B=1,C=1,2,H=12,N=2,K=3", "--mode", "forward",
            "--results", str(tmp_path), "--run-id", "rounds", "--rounds", "2", "--budget", "0.05",
            "--precision", "0.5",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("SHAREDCONV_RESULTS", str(tmp_path))
    at = AppTest.from_file(str(PAGES / "machine.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert any(m.value.startswith("**Rounds**: 2: every case") for m in at.markdown)
    for page in ("recommend.py", "tradeoffs.py", "agreement.py", "scaling.py"):
        at = AppTest.from_file(str(PAGES / page), default_timeout=60)
        at.run()
        assert not at.exception, page


def test_compare_page_shows_two_runs(env_results):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGES / "compare.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert at.metric[0].value == "12"  # cases in common (forward+train, 3 problems, 2 strategies)


# ---- a real browser ---------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _dashboard(results: Path):
    """A dashboard server on a free port over ``results``; yields the port."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sharedconv.harness.cli", "dashboard", "--results", str(results),
         "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        else:
            pytest.fail("the dashboard did not start listening within 60 s")
        yield port
    finally:
        os.killpg(server.pid, 9)
        server.wait()


BROWSER_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium: apt-get install chromium"
)


def _reference_only(tmp_path: Path) -> Path:
    shutil.copytree(REFERENCE, tmp_path / "reference")
    return tmp_path


def test_tradeoffs_places_every_timed_strategy_of_the_reference_run(tmp_path, monkeypatch):
    """Every timed case of the committed reference run has a checked peak (docs/memory.md), so
    the Tradeoffs page places all of them, on every problem and mode."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SHAREDCONV_RESULTS", str(_reference_only(tmp_path)))
    at = AppTest.from_file(str(PAGES / "tradeoffs.py"), default_timeout=60)
    at.run()
    seen = 0
    for mode in at.radio(key="tradeoffs_mode").options:
        at.radio(key="tradeoffs_mode").set_value(mode).run()
        for problem in at.selectbox(key="tradeoffs_problem").options:
            at.selectbox(key="tradeoffs_problem").select(problem).run()
            assert not at.exception
            captions = [c.value for c in at.caption]
            assert not [c for c in captions if c.startswith("Not placed")], (
                mode,
                problem,
                captions,
            )
            seen += 1
    assert seen == 6  # 3 problems x 2 modes


@needs_chromium
def test_tradeoffs_of_the_reference_run_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    with _dashboard(_reference_only(tmp_path)) as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/tradeoffs")
        page.wait_for_selector(".js-plotly-plot", timeout=30_000)
        page.wait_for_timeout(1500)
        text = page.locator("body").inner_text()
        browser.close()
    assert "Pareto front" in text
    assert "Not placed" not in text


@needs_chromium
def test_every_page_in_headless_chromium(results, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("SHAREDCONV_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    report = {}
    with _dashboard(results) as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for name in ("recommend", "scaling", "tradeoffs", "agreement", "compare", "machine", "run"):
            page.goto(f"http://127.0.0.1:{port}/{'' if name == 'recommend' else name}")
            page.wait_for_selector("h1", timeout=30_000)
            page.wait_for_timeout(1500)
            if name not in ("machine", "run"):
                page.wait_for_selector(".js-plotly-plot", timeout=30_000)
            errors = page.locator("[data-testid='stException']").count()
            plots = page.locator(".js-plotly-plot").count()
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            report[name] = {
                "errors": errors,
                "plots": plots,
                "title": page.locator("h1").first.inner_text(),
            }
        browser.close()
    print(f"\nscreenshots in {shots}\n{json.dumps(report, indent=1)}")
    assert all(r["errors"] == 0 for r in report.values()), report
    for name in ("recommend", "scaling", "tradeoffs", "agreement", "compare"):
        assert report[name]["plots"] >= 1, (name, report[name])
    assert report["run"]["title"] == "Measure on this machine"


def test_pages_open_on_this_machines_run_else_a_cpu_run(monkeypatch):
    """The committed GPU reference runs are newer than the CPU ones; a page must not open on a
    GPU run for someone on a CPU machine, and Compare opens on two runs that share cases."""
    from sharedconv.dashboard import common
    from sharedconv.harness.records import CaseRecord, Machine, RunMeta, Timing
    from sharedconv.harness.store import Run

    def run(run_id, device, host, cases=()):
        meta = RunMeta(run_id=run_id, device=device, machine=Machine(hostname="vm", cpu_model=host))
        return Run(
            run_id,
            Path(run_id),
            meta,
            [CaseRecord(case=c, timing=Timing(block_times=[1.0])) for c in cases],
        )

    runs = [  # newest first, as find_runs orders them
        run("gpu", "cuda", "h100", ["x"]),  # same host name "vm" as all the others
        run("cpu-elsewhere", "cpu", "ci", ["a", "b"]),
        run("cpu-old", "cpu", "ci", ["a"]),
        run("cpu-unrelated", "cpu", "ci", ["z"]),
    ]
    data = dash_data.Loaded(runs, pd.DataFrame())
    monkeypatch.setattr(common, "this_machine", lambda: ("vm", "laptop", None, None))
    assert common.default_run_index(data) == 1
    assert common.default_compare_pair(data) == (2, 1)
    monkeypatch.setattr(common, "this_machine", lambda: ("vm", "h100", None, None))
    assert common.default_run_index(data) == 0  # your own run, whatever its device
    only_gpu = dash_data.Loaded(runs[:1], pd.DataFrame())
    assert common.default_run_index(only_gpu) == 0


def test_results_strings_reach_the_machine_page_as_text_not_markdown(tmp_path, monkeypatch):
    """A results file is data: an image or a link in its fields is shown, never fetched or
    followed (#18, class 12)."""
    from streamlit.testing.v1 import AppTest

    result = CliRunner().invoke(
        cli,
        ["run", "--backends", "numpy", "--shape", "B=1,C=1,H=8,N=2,K=3", "--mode", "forward",
         "--budget", "0.05", "--results", str(tmp_path), "--run-id", "evil"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta_path = tmp_path / "evil" / "run.json"
    meta = json.loads(meta_path.read_text())
    meta["suite"] = "![x](http://203.0.113.9/x.png)"
    meta["roofline"]["method"] = "[click](http://203.0.113.9/) <img src=x>"
    meta_path.write_text(json.dumps(meta))
    monkeypatch.setenv("SHAREDCONV_RESULTS", str(tmp_path))
    at = AppTest.from_file(str(PAGES / "machine.py"), default_timeout=60)
    at.run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "!\\[x\\](http\\:" in text and "\\[click\\](http\\:" in text
    # nothing of them is left live: every bracket, tag and scheme colon carries its backslash
    for live in (r"(?<!\\)!(?<!\\)\[x", r"(?<!\\)\[click", r"(?<!\\)<img"):
        assert not re.search(live, text), (live, text)
