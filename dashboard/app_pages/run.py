"""Run: start a small measurement from the page; results appear in the other pages."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import streamlit as st
from sharedconv.backends.problem import ProblemError, parse_problems
from sharedconv.backends.registry import backend_names
from sharedconv.backends.suites import load_suite, suite_names
from sharedconv.dashboard.data import results_roots
from sharedconv.harness.execute import Plan
from sharedconv.harness.runner import plan_size
from sharedconv.harness.store import new_run_id, read_cases

st.title("Measure on this machine")
allowed = (
    os.environ.get("SHAREDCONV_DASHBOARD_LOCAL", "1") == "1"
    or os.environ.get("SHAREDCONV_ALLOW_REMOTE_RUN") == "1"
)
if not allowed:
    st.warning(
        "Starting runs is disabled: the dashboard listens beyond 127.0.0.1. Restart it with --allow-remote-run to enable."
    )
    st.stop()

root = results_roots(os.environ.get("SHAREDCONV_RESULTS"))[0]
# another page's "measure it" link fills the form in: ?suite=channels&mode=forward
suites = suite_names()
asked_suite = st.query_params.get("suite")
asked_mode = st.query_params.get("mode")
MODES = ["forward", "train", "both"]
available = backend_names()
with st.form("run_form"):
    source = st.radio("What to measure", ["a suite", "a shape"], horizontal=True)
    suite = st.selectbox(
        "Suite", suites, index=suites.index(asked_suite) if asked_suite in suites else 0
    )
    shape = st.text_input("Shape (text form; ranges allowed)", "B=2,C=8,H=64,N=16,K=5")
    backends = st.multiselect(
        "Backends", available, default=[b for b in ("numpy", "torch") if b in available]
    )
    mode = st.radio(
        "Mode",
        MODES,
        index=MODES.index(asked_mode) if asked_mode in MODES else 0,
        horizontal=True,
    )
    budget = st.slider("Seconds of sampling per case", 0.1, 3.0, 0.5)
    go = st.form_submit_button("Start")

if go:
    args = [
        sys.executable,
        "-m",
        "sharedconv.harness.cli",
        "run",
        "--results",
        str(root),
        "--mode",
        mode,
        "--budget",
        str(budget),
    ]
    try:
        problems = (
            list(load_suite(suite).problems) if source == "a suite" else parse_problems(shape)
        )
    except ProblemError as e:
        st.error(f"That shape does not parse: {e}")
        st.stop()
    args += ["--suite", suite] if source == "a suite" else ["--shape", shape]
    if not backends:
        st.error("Pick at least one backend.")
        st.stop()
    modes = ["forward", "train"] if mode == "both" else [mode]
    total = plan_size(Plan(backends=backends, problems=problems, modes=modes, threads=1))
    run_id = new_run_id("dashboard")
    args += ["--backends", ",".join(backends), "--run-id", run_id]
    st.code(" ".join(["sharedconv", *args[3:]]), language="bash")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    bar = st.progress(0.0, text=f"starting workers for {total} cases…")
    cases = Path(root) / run_id / "cases.jsonl"
    while proc.poll() is None:
        time.sleep(0.5)
        if cases.exists():
            done, _ = read_cases(cases)
            last = done[-1]["case"] if done else "…"
            bar.progress(
                min(1.0, len(done) / max(total, 1)),
                text=f"{len(done)} of {total} cases; last: {last}",
            )
    err = proc.stderr.read() if proc.stderr else ""
    st.cache_data.clear()
    if proc.returncode in (0, 1):
        bar.progress(1.0, text="finished")
        st.success(
            f"Run {run_id} finished (exit {proc.returncode}: 1 means some case failed). Its results are in the other pages now."
        )
    else:
        st.error(f"The run failed (exit {proc.returncode}):\n\n{err[-2000:]}")
