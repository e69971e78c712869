"""What every page shares: the cached loader, the run picker, empty-state guidance, CSV."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st
from sharedconv.harness.machine import machine_key, this_machine
from sharedconv.harness.records import Machine
from sharedconv.harness.share import markdown_text
from streamlit.errors import StreamlitAPIException

from .data import Loaded, load, results_roots
from .figures import color_map

RUN_PAGE = Path(__file__).parent / "app_pages" / "run.py"


@st.cache_data(show_spinner="Reading results…", ttl=60)
def _load_cached(roots: tuple[str, ...]) -> Loaded:
    from pathlib import Path

    return load([Path(r) for r in roots])


def loaded() -> Loaded:
    roots = tuple(str(r) for r in results_roots(os.environ.get("SHAREDCONV_RESULTS")))
    data = _load_cached(roots)
    if data.skipped:
        with st.sidebar.expander(f"{len(data.skipped)} file(s) skipped"):
            for line in data.skipped:
                st.caption(md(line))
    return data


# strings from results files, plugins and frameworks as literal text in Markdown: one rule
# for the dashboard and the shared reports
md = markdown_text


def offer_run(suite: str, why: str, mode: str = "forward") -> None:
    """A page with nothing to show says what would fill it, and offers it: a link to the
    Run page with the suite filled in (the command for a terminal beside it)."""
    st.info(f"{why} `sharedconv run --suite {suite} --mode {mode}` measures it.")
    try:
        st.page_link(
            RUN_PAGE,
            label=f"Measure the {suite} suite on this machine",
            icon=":material/play_arrow:",
            query_params={"suite": suite, "mode": mode},
        )
    except StreamlitAPIException:  # the page alone, outside the app's navigation (tests)
        st.caption("Open the **Run** page to measure it from here.")


def require_results(data: Loaded) -> bool:
    """Guidance instead of an exception when there is nothing to show."""
    if data.empty or data.cases.empty:
        roots = ", ".join(str(r) for r in results_roots(os.environ.get("SHAREDCONV_RESULTS")))
        offer_run("smoke", f"No results found in {roots}. Measure this machine first, then reload:")
        return False
    return True


def default_run_index(data: Loaded) -> int:
    """Which run a page opens on: the newest made on this machine, else the newest CPU run
    (the committed GPU reference runs are for looking at, not this machine's answer), else
    the newest. ``data.runs`` is newest first."""
    here = this_machine()
    for test in (
        lambda r: machine_key(r.meta.machine or Machine()) == here,
        lambda r: r.meta.device == "cpu",
    ):
        for i, run in enumerate(data.runs):
            if test(run):
                return i
    return 0


def default_compare_pair(data: Loaded) -> tuple[int, int]:
    """(baseline, run) indices the Compare page opens on: the default run, against the other
    run that shares the most timed cases with it (the newest of equals)."""
    b = default_run_index(data)

    def timed(run) -> set[str]:
        return {c.case for c in run.cases if c.timing}

    mine = timed(data.runs[b])
    others = [i for i in range(len(data.runs)) if i != b]
    a = max(others, key=lambda i: (len(mine & timed(data.runs[i])), -i))
    return a, b


def pick_run(data: Loaded, key: str, label: str = "Run (machine)") -> str:
    options = [r.run_id for r in data.runs]
    return st.sidebar.selectbox(
        label,
        options,
        index=default_run_index(data),
        format_func=lambda rid: data.run(rid).label,
        key=key,
    )


def machine_text(run, machine_id: str) -> str:
    entry = (run.meta.machines or {}).get(machine_id) or Machine()
    cores = entry.usable_cores if entry.usable_cores is not None else "?"
    what = entry.gpu or entry.cpu_model or "?"
    return f"{machine_id}: {what}, {cores} cores, {entry.hostname or '?'}"


def pick_machine(data: Loaded, run_id: str, key: str) -> str:
    """The machine of a cluster run whose timings a page shows (a ranking never mixes two
    machines); "" for a run made on one machine, which has nothing to pick."""
    frame = data.cases[data.cases["run_id"] == run_id]
    ids = sorted(i for i in frame["machine_id"].unique() if i)
    if not ids:
        return ""
    if len(ids) == 1:
        return ids[0]
    run = data.run(run_id)
    return st.sidebar.selectbox(
        "Machine (of this cluster run)",
        ids,
        format_func=lambda i: machine_text(run, i),
        key=key,
        help="A cluster run measured on several machines; each is ranked on its own.",
    )


def colors(data: Loaded) -> dict[str, str]:
    return color_map(list(data.cases["label"].unique())) if not data.cases.empty else {}


def download(frame: pd.DataFrame, name: str, key: str) -> None:
    st.download_button(
        f"Download this data (CSV, {len(frame)} rows)",
        frame.to_csv(index=False).encode(),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=key,
    )
