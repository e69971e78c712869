"""Scaling: time, throughput or roofline fraction against one problem size."""

from __future__ import annotations

import streamlit as st
from sharedconv.dashboard.common import (
    colors,
    download,
    loaded,
    offer_run,
    pick_machine,
    pick_run,
    require_results,
)
from sharedconv.dashboard.data import SCALING_AXES, scaling_groups
from sharedconv.dashboard.figures import METRICS, scaling_lines

st.title("How does each strategy scale?")
data = loaded()
if require_results(data):
    run_id = pick_run(data, "scaling_run")
    machine = pick_machine(data, run_id, "scaling_machine")
    frame = data.cases[(data.cases["run_id"] == run_id) & (data.cases["machine_id"] == machine)]
    axis_name = st.sidebar.radio("Against", list(SCALING_AXES), key="scaling_axis")
    axis = SCALING_AXES[axis_name]
    metric = st.sidebar.radio("Show", list(METRICS), horizontal=True, key="scaling_metric")
    facet_name = st.sidebar.radio(
        "Facets", ["none", "backend", "mode"], horizontal=True, key="scaling_facet"
    )
    modes = sorted(frame["mode"].unique())
    mode = st.sidebar.multiselect("Modes", modes, default=modes[:1], key="scaling_modes")
    groups = scaling_groups(frame[frame["mode"].isin(mode)], axis)
    if not groups:
        suite = {"C": "channels", "HW": "spatial", "N": "filters", "KH": "kernel", "B": "batch"}[
            axis
        ]
        offer_run(
            suite,
            f"Run {run_id} has no set of problems that differ only in {axis_name}, so there is no "
            f"curve to draw. The `{suite}` suite varies {axis_name} with the rest fixed:",
            (mode or ["forward"])[0],
        )
        st.stop()
    labels = [f"{desc} ({g[axis].nunique()} sizes)" for desc, g in groups]
    pick = st.selectbox(
        "Problems (the other sizes held fixed)",
        range(len(groups)),
        format_func=lambda i: labels[i],
        key="scaling_group",
    )
    group = groups[pick][1]
    backends = sorted(group["backend"].unique())
    chosen = st.sidebar.multiselect("Backends", backends, default=backends, key="scaling_backends")
    group = group[group["backend"].isin(chosen)]
    strategies = sorted(group["label"].unique())
    picked = st.multiselect("Strategies", strategies, default=strategies, key="scaling_strategies")
    group = group[group["label"].isin(picked)]
    if group.empty:
        st.info("Pick at least one strategy.")
        st.stop()
    facet = None if facet_name == "none" else facet_name
    st.plotly_chart(
        scaling_lines(group, axis, axis_name, metric, colors(data), facet), use_container_width=True
    )
    st.caption(
        "Bands: interquartile range of the timing samples. Dashed lines: the seed's three options."
    )
    download(group.drop(columns=["timed_region"]), f"scaling-{axis}-{run_id}", "scaling_csv")
