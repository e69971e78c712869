"""Recommend: which strategy to use for a shape, ranked, with the seed's options highlighted."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sharedconv.backends.problem import ProblemError, parse_problem
from sharedconv.dashboard.common import (
    colors,
    download,
    loaded,
    md,
    pick_machine,
    pick_run,
    require_results,
)
from sharedconv.dashboard.figures import SEED_NAMES, ranking_bar
from sharedconv.harness.allocators import ALLOCATORS
from sharedconv.harness.recommend import Question, allocators_of, answer
from sharedconv.harness.summary import (
    how_near,
    memory_unknown_reason,
    paired_text,
    rank,
    recommendation,
)

st.title("Which strategy should I use?")
st.caption(
    "Every strategy computes the same shared-channel convolution and was checked against a float64 "
    "oracle before it was timed. Pick a measured problem or type your own shape."
)
data = loaded()


if require_results(data):
    run = data.run(pick_run(data, "recommend_run"))
    machine = pick_machine(data, run.run_id, "recommend_machine")
    records = [r for r in run.cases if r.median and r.status == "pass" and r.machine_id == machine]
    # a ranking never mixes allocators: a run measured under several shows one at a time
    mallocs = allocators_of(records) or ["fixed"]
    malloc = (
        st.sidebar.selectbox("Allocator", mallocs, key="recommend_malloc")
        if len(mallocs) > 1
        else mallocs[0]
    )
    records = [r for r in records if r.malloc_name == malloc]
    modes = sorted({r.mode for r in records}) or ["forward"]
    mode = st.sidebar.radio("Mode", modes, horizontal=True, key="recommend_mode")
    dtypes = sorted({r.dtype for r in records if r.mode == mode and r.dtype})
    dtype = st.sidebar.selectbox("dtype", dtypes, key="recommend_dtype") if dtypes else None
    measured = sorted({r.problem for r in records if r.mode == mode and r.dtype == dtype})
    if not measured:
        st.warning(f"Run {run.run_id} has no timed {mode} cases in {dtype}.")
        st.stop()
    col1, col2 = st.columns([2, 3])
    chosen = col1.selectbox("Measured problem", measured, key="recommend_problem")
    typed = col2.text_input(
        "…or type a shape",
        placeholder="e.g. B=10,C=100,H=200,W=200,N=20,K=5",
        key="recommend_typed",
    )
    problem_text = chosen
    if typed.strip():
        try:
            wanted = parse_problem(
                typed if "dtype=" in typed or dtype is None else f"{typed},dtype={dtype}"
            )
        except ProblemError as e:
            st.error(f"That shape does not parse: {e}")
            st.stop()
        found = answer(
            [run],
            Question(wanted, mode, run.meta.device, True, malloc, machine or None),
        )
        nearest = problem_text = found.problem
        if not found.exact:
            st.warning(
                f"**{wanted.to_text()}** was not measured in this run. The nearest measured problem is "
                f"**{nearest}**: {md(how_near(wanted, nearest))}. The ranking below is for that one. "
                f"To measure yours: `sharedconv recommend --shape '{wanted.to_text()}' --mode {mode} --measure`."
            )
    rows = rank(
        [r for r in records if r.problem == problem_text and r.mode == mode],
        run.meta.roofline_for(machine),
    )
    limit_mib = st.sidebar.number_input(
        "Memory limit (MiB, 0 = none)",
        min_value=0,
        value=0,
        step=256,
        key="recommend_memory_limit",
        help="Recommend the fastest strategy whose measured peak memory fits.",
    )
    memory_limit = int(limit_mib) * 2**20 or None
    st.success(md(recommendation(rows, memory_limit)))
    known = ALLOCATORS.get(malloc)
    how = known.how_to_get() if known else ""
    st.caption(
        f"Measured under the {malloc} allocator"
        + (f"; for your own script: {how}" if how else " (the environment as it was)")
        + ". docs/allocator.md shows how much the allocator changes these times."
    )
    table = pd.DataFrame(
        [
            {
                "rank": i,
                "backend/strategy": row.label,
                "seed option": SEED_NAMES.get(row.record.seed_option, ""),
                "median (ms)": row.median * 1e3,
                "IQR (ms)": row.iqr * 1e3,
                "noisy": row.noisy,
                "peak memory (MiB)": row.peak_bytes / 2**20
                if row.peak_bytes is not None
                else float("nan"),
                **(
                    {}
                    if memory_limit is None
                    else {
                        "fits the limit": "unknown"
                        if row.peak_bytes is None
                        else ("yes" if row.peak_bytes <= memory_limit else "no")
                    }
                ),
                "memory unknown because": memory_unknown_reason(row.record) or "",
                "page faults per call": row.faults.minor_per_call if row.faults else None,
                "GFLOP/s": row.gflops,
                "% roofline": 100 * row.roofline_fraction
                if row.roofline_fraction is not None
                else float("nan"),
                **{f"x option {k}": row.vs_option.get(k) for k in (1, 2, 3)},
                "x fastest, paired (95% CI)": paired_text(row.record),
                "first call (s)": row.record.first_call_s,
                "timed region": row.record.timed_region or "",
            }
            for i, row in enumerate(rows, 1)
        ]
    )

    def highlight(r: pd.Series) -> list[str]:
        return [
            "font-weight: bold; background-color: rgba(255, 200, 0, 0.18)"
            if r["seed option"]
            else ""
            for _ in r
        ]

    st.subheader(f"{problem_text} — {mode}, {len(rows)} strategies ranked")
    st.caption(
        "x option k: how many times faster than the best implementation of the seed's option k "
        "(1: Conv3D with a (1,K,K) kernel, 2: TimeDistributed / map over channels, 3: split + one shared Conv2D). "
        "Rows of the seed's options are highlighted. An empty peak memory is unknown, and the row says why "
        "(docs/memory.md: every peak is checked against the call's own outputs, and a method that saw less is rejected); "
        "under x option k it means this run timed no implementation of that option for this problem."
    )
    st.dataframe(
        table.style.apply(highlight, axis=1).format(precision=3, na_rep=""),
        hide_index=True,
        use_container_width=True,
        height=min(38 * (len(table) + 1), 640),
    )
    download(table, f"recommend-{run.run_id}-{mode}", "recommend_csv")
    frame = data.cases[
        (data.cases["run_id"] == run.run_id)
        & (data.cases["problem"] == problem_text)
        & (data.cases["mode"] == mode)
        & (data.cases["malloc"] == malloc)
        & (data.cases["machine_id"] == machine)
    ]
    frame = frame[frame["median_s"].notna() & (frame["status"] == "pass")]
    st.plotly_chart(
        ranking_bar(
            frame, colors(data), f"{problem_text} [{mode}]: median time, IQR as error bars"
        ),
        use_container_width=True,
    )
    other = data.cases[
        (data.cases["run_id"] == run.run_id)
        & (data.cases["problem"] == problem_text)
        & (data.cases["mode"] == mode)
        & (data.cases["status"] != "pass")
    ]
    if not other.empty:
        with st.expander(f"{len(other)} strategies not timed for this problem, and why"):
            st.dataframe(
                other[["label", "status", "reason"]], hide_index=True, use_container_width=True
            )
