"""Compare runs: two runs or machines side by side, ratios and flagged regressions."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sharedconv.dashboard.common import (
    default_compare_pair,
    download,
    loaded,
    machine_text,
    offer_run,
    require_results,
)
from sharedconv.dashboard.figures import compare_scatter
from sharedconv.harness.compare import compare_runs, machine_view

st.title("Compare two runs")
data = loaded()
if require_results(data):
    ids = [r.run_id for r in data.runs]
    several_machines = any(len({r.machine_id for r in run.cases} - {""}) > 1 for run in data.runs)
    if len(ids) < 2 and not several_machines:
        offer_run(
            "smoke",
            "Only one run is stored: a comparison needs a second (another day, machine, version or allocator).",
        )
        st.stop()
    fmt = lambda rid: data.run(rid).label  # noqa: E731
    # one cluster run alone: its machines side by side
    index_a, index_b = default_compare_pair(data) if len(ids) > 1 else (0, 0)
    col_a, col_b = st.columns(2)
    a = col_a.selectbox("Run A (baseline)", ids, index=index_a, format_func=fmt, key="compare_a")
    b = col_b.selectbox("Run B", ids, index=index_b, format_func=fmt, key="compare_b")

    def side(run_id: str, column, key: str):
        """A run, or one machine of a cluster run (two machines of one run side by side)."""
        run = data.run(run_id)
        machines = sorted({r.machine_id for r in run.cases} - {""})
        if not machines:
            return run, run_id
        pick = column.selectbox(
            "Machine",
            machines,
            index=min(len(machines) - 1, 1 if key == "compare_machine_b" and same_run else 0),
            format_func=lambda m: machine_text(run, m),
            key=key,
        )
        return machine_view(run, pick), f"{run_id} on {pick}"

    same_run = a == b  # then B opens on the run's second machine
    run_a, a = side(a, col_a, "compare_machine_a")
    run_b, b = side(b, col_b, "compare_machine_b")
    threshold = st.slider("Flag changes beyond (%)", 1, 100, 10, key="compare_threshold") / 100
    rows = pd.DataFrame(compare_runs(run_a, run_b, threshold))
    if rows.empty:
        st.warning(
            "These two have no timed case in common (different problems, strategies or modes; "
            "two machines of one kind in a cluster run share its cases out, so only machines of "
            "different kinds ran the same ones)."
        )
        st.stop()
    regressions = int((rows["verdict"] == "regression").sum())
    improvements = int((rows["verdict"] == "improvement").sum())
    c1, c2, c3 = st.columns(3)
    c1.metric("cases in common", len(rows))
    c2.metric("slower in B (significant)", regressions)
    c3.metric("faster in B (significant)", improvements)
    st.plotly_chart(compare_scatter(rows, a, b), use_container_width=True)
    st.caption(
        "Verdicts use the Mann-Whitney U test on the raw samples (p < 0.05) and the threshold above."
    )
    st.dataframe(
        rows[["case", "a", "b", "ratio", "p", "verdict"]], hide_index=True, use_container_width=True
    )
    download(rows, f"compare-{a}-vs-{b}", "compare_csv")
