"""Tradeoffs: time against memory with the Pareto front, and a speedup heatmap."""

from __future__ import annotations

import streamlit as st
from sharedconv.dashboard.common import (
    colors,
    download,
    loaded,
    pick_machine,
    pick_run,
    require_results,
)
from sharedconv.dashboard.data import timed
from sharedconv.dashboard.figures import (
    pareto_front,
    speedup_heatmap,
    speedup_matrix,
    tradeoff_scatter,
)

st.title("Time against memory")
data = loaded()
if require_results(data):
    run_id = pick_run(data, "tradeoffs_run")
    machine = pick_machine(data, run_id, "tradeoffs_machine")
    frame = timed(
        data.cases[(data.cases["run_id"] == run_id) & (data.cases["machine_id"] == machine)]
    )
    if frame.empty:
        st.info(f"Run {run_id} timed nothing.")
        st.stop()
    mode = st.sidebar.radio(
        "Mode", sorted(frame["mode"].unique()), horizontal=True, key="tradeoffs_mode"
    )
    frame = frame[frame["mode"] == mode]
    problem = st.selectbox("Problem", sorted(frame["problem"].unique()), key="tradeoffs_problem")
    one = frame[frame["problem"] == problem]
    st.plotly_chart(
        tradeoff_scatter(one, colors(data), f"{problem} [{mode}]"), use_container_width=True
    )
    unknown = one[one["peak_bytes"].isna()]
    if not unknown.empty:
        st.caption(
            "Not placed (peak memory unknown): "
            + "; ".join(
                f"{label} ({why})"
                for label, why in sorted(
                    zip(unknown["label"], unknown["memory_unknown"], strict=True)
                )
            )
        )
    front = pareto_front(one)
    if not front.empty:
        st.markdown(
            "**Pareto front** (nothing else is both faster and lighter): "
            + ", ".join(front["label"])
        )
    download(one.drop(columns=["timed_region"]), f"tradeoffs-{run_id}", "tradeoffs_csv")

    st.header("Speedup heatmap")
    labels = sorted(frame["label"].unique())
    default = next((i for i, label in enumerate(labels) if label.endswith("/conv3d")), 0)
    baseline = st.selectbox("Baseline strategy", labels, index=default, key="tradeoffs_baseline")
    matrix = speedup_matrix(frame, baseline)
    if matrix.empty:
        st.info(f"{baseline} was not timed in this mode.")
    else:
        st.plotly_chart(speedup_heatmap(matrix, baseline), use_container_width=True)
        download(matrix.reset_index(), f"speedup-vs-{baseline.replace('/', '_')}", "speedup_csv")
