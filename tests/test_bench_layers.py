"""scripts/bench_layers.py's page: the control column, the dispatch goal, old runs still render."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "bench_layers.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_layers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(framework: str, auto_best: float, control: list[float] | None) -> dict:
    return {
        "framework": framework,
        "device": "cpu",
        "problem": "B=1,C=2,H=8,W=8,N=2,K=3",
        "mode": "forward",
        "pick": "fold",
        "source": "autotune",
        "tuning_s": 1.0,
        "auto_s": 1e-3 * auto_best,
        "best": "fold",
        "best_s": 1e-3,
        "ratio": auto_best,
        "pick_s": 1e-3,
        "paired": {
            "auto_best": [auto_best, auto_best - 0.01, auto_best + 0.01],
            "pick_best": None,
            "control_best": control,
        },
    }


def _overhead(layer_us: float, direct_us: float) -> dict:
    return {
        "layer_s": layer_us * 1e-6,
        "direct_s": direct_us * 1e-6,
        "overhead_s": (layer_us - direct_us) * 1e-6,
        "note": "n",
    }


def test_the_page_shows_each_rows_control_and_which_dispatch_meets_the_goal(bench) -> None:
    data = {
        "rows": [
            _row("torch", 1.01, [1.062, 1.0, 1.1]),
            _row("jax", 0.99, None),  # a run from before the control: "-"
        ],
        "overhead": {
            "torch": _overhead(15.4, 11.8),  # 31% of a tiny call, but under 20 µs: met
            "keras-tensorflow": _overhead(1075.4, 1045.4),  # 30 µs, 2.9%: over
            "keras-jax": _overhead(2371.0, 2341.0),  # 30 µs, 1.3%: met
        },
        "versions": {},
        "failed": {},
    }
    page = bench.markdown(data, "python scripts/bench_layers.py", "a machine")
    table = [ln for ln in page.splitlines() if ln.startswith("| ") and "`B=" in ln]
    cells = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[1:-1]] for ln in table}
    header = next(ln for ln in page.splitlines() if ln.startswith("| framework | problem"))
    column = [c.strip() for c in header.split("|")[1:-1]].index("control / best, paired")
    assert cells["torch"][column] == "1.062 (1.000-1.100) **over**"
    assert cells["jax"][column] == "-"
    assert "The control (a second layer pinned to the best, 1 rows) read 1.062" in page
    assert "over 1.05 in 1" in page
    dispatch = [ln for ln in page.splitlines() if ln.startswith("| ") and " µs |" in ln]
    goals = {ln.split("|")[1].strip(): ln.split("|")[6].strip() for ln in dispatch}
    assert goals == {"torch": "met", "keras-tensorflow": "**over**", "keras-jax": "met"}


def test_every_stored_cpu_run_still_renders(bench, tmp_path, monkeypatch) -> None:
    runs = sorted((REPO / "docs" / "layers-bench").glob("cpu*.json*"))
    assert runs
    for run in runs:
        out = tmp_path / f"{run.name}.md"
        monkeypatch.setattr(
            "sys.argv", ["bench_layers.py", "--render", str(run), "--out", str(out)]
        )
        bench.main()
        text = out.read_text()
        rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "`B=" in ln]
        data = json.loads(bench._read_text(str(run)))
        assert len(rows) == len(data["rows"]), run.name
