"""Agreement: verification errors per strategy and problem, failures and skip reasons."""

from __future__ import annotations

import streamlit as st
from sharedconv.dashboard.common import download, loaded, pick_run, require_results
from sharedconv.dashboard.figures import agreement_heatmap
from sharedconv.harness.records import FAILED

st.title("Do they all agree with the oracle?")
st.caption(
    "Every case is compared with a float64 NumPy oracle before it is timed: forward output and, in train mode, "
    "dx, dw and db. Error = max(relative Frobenius, max abs / max |ref|); bounds per dtype, widened by "
    "sqrt(terms/4096) for long reductions."
)
data = loaded()
if require_results(data):
    run_id = pick_run(data, "agreement_run")
    frame = data.cases[data.cases["run_id"] == run_id]
    counts = frame["status"].value_counts()
    cols = st.columns(5)
    for col, status in zip(
        cols, ["pass", "mismatch", "skipped", "unavailable", "crashed"], strict=True
    ):
        col.metric(status, int(counts.get(status, 0)))
    verified = frame.dropna(subset=["error_vs_bound"])
    if not verified.empty:
        st.plotly_chart(agreement_heatmap(verified), use_container_width=True)
    failed = frame[frame["status"].isin(sorted(FAILED))]
    st.subheader(f"Failures ({len(failed)})")
    if failed.empty:
        st.success("No strategy disagreed with the oracle, crashed or timed out in this run.")
    else:
        st.dataframe(
            failed[["label", "problem", "mode", "status", "reason"]],
            hide_index=True,
            use_container_width=True,
        )
    skipped = frame[frame["status"].isin(["skipped", "unavailable"])]
    st.subheader(f"Not run, with the reason ({len(skipped)})")
    if not skipped.empty:
        reasons = skipped.groupby(["label", "status", "reason"]).size().reset_index(name="cases")
        st.dataframe(reasons, hide_index=True, use_container_width=True)
    columns = [
        "label",
        "problem",
        "mode",
        "dtype",
        "status",
        "err_y",
        "err_dx",
        "err_dw",
        "err_db",
        "error_vs_bound",
        "reason",
    ]
    download(frame[columns], f"agreement-{run_id}", "agreement_csv")
