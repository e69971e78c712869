"""Compare runs: two runs or machines side by side, ratios and flagged regressions."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sharedconv.dashboard.common import (
    default_compare_pair,
    download,
    loaded,
    offer_run,
    require_results,
)
from sharedconv.dashboard.figures import compare_scatter
from sharedconv.harness.compare import compare_runs

st.title("Compare two runs")
data = loaded()
if require_results(data):
    ids = [r.run_id for r in data.runs]
    if len(ids) < 2:
        offer_run(
            "smoke",
            "Only one run is stored: a comparison needs a second (another day, machine, version or allocator).",
        )
        st.stop()
    fmt = lambda rid: data.run(rid).label  # noqa: E731
    index_a, index_b = default_compare_pair(data)
    a = st.selectbox("Run A (baseline)", ids, index=index_a, format_func=fmt, key="compare_a")
    b = st.selectbox("Run B", ids, index=index_b, format_func=fmt, key="compare_b")
    threshold = st.slider("Flag changes beyond (%)", 1, 100, 10, key="compare_threshold") / 100
    rows = pd.DataFrame(compare_runs(data.run(a), data.run(b), threshold))
    if rows.empty:
        st.warning(
            "These two runs have no timed case in common (different problems, strategies or modes)."
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
