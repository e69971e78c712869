"""Machine: where each run's numbers come from."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sharedconv.dashboard.common import default_run_index, loaded, md, require_results
from sharedconv.harness.allocators import probe_text
from sharedconv.harness.allocators import run_text as allocator_text
from sharedconv.harness.records import Machine, Roofline
from sharedconv.harness.summary import format_bytes

st.title("Machines and settings")
data = loaded()
if require_results(data):
    opened = default_run_index(data)
    for i, run in enumerate(data.runs):
        meta = run.meta
        machine = meta.machine or Machine()
        with st.expander(md(run.label), expanded=i == opened):
            c1, c2, c3, c4 = st.columns(4)
            c1.metric("CPU / GPU", machine.gpu or machine.cpu_model or "?")
            c2.metric("cores used", f"{meta.threads} of {machine.usable_cores}")
            c3.metric("memory", format_bytes(machine.memory_bytes))
            roof = meta.roofline or Roofline()
            c4.metric(
                "peak float32",
                f"{roof.peak_flops / 1e9:.1f} GFLOP/s" if roof.peak_flops is not None else "n/a",
            )
            st.markdown(
                f"**CPU**: {md(machine.cpu_model or '?')}, {machine.logical_cores or '?'} logical "
                "cores; widest vector instructions: "
                + (
                    md(machine.vector_isa)
                    if machine.vector_isa
                    else "not recorded (a run from before they were)"
                )
            )
            if meta.machines:  # a cluster run: the figures above are the submitter's
                st.caption(
                    "The machine above submitted this cluster run; the cases ran on the machines "
                    "listed below, each with its own roofline."
                )
            elif roof.usable:
                st.markdown(
                    f"**Roofline**: {roof.peak_flops / 1e9:.1f} GFLOP/s peak, "
                    f"{roof.copy_bytes_per_s / 1e9:.1f} GB/s copy bandwidth; ridge point "
                    f"{roof.peak_flops / roof.copy_bytes_per_s:.1f} FLOP/byte. "
                    + md(roof.method or "")
                )
            else:
                st.markdown(f"**Roofline**: not measured ({md(roof.error or 'no record')})")
            project = meta.project or {}
            st.markdown(
                f"**Run**: {md(meta.command or '')} — suite {md(meta.suite or 'ad hoc')}, "
                f"status {md(meta.status)}, started {md(meta.started)}, ended "
                f"{md(meta.ended or '—')}; project commit "
                f"{md(project.get('commit') or 'unknown')}"
                + (" (with uncommitted changes)" if project.get("dirty") else "")
            )
            st.markdown("**Allocator** (`sharedconv run --malloc`, docs/allocator.md):")
            st.text(allocator_text(meta))  # plain text: settings hold '_' and '*'
            rounds = meta.rounds or 1
            st.markdown(
                f"**Rounds**: {rounds}: every case was measured in {rounds} fresh workers, round after "
                "round over the run; a case's median is the median of its rounds' medians, and cases "
                "whose rounds differ by more than 10% are marked noisy."
                if rounds > 1
                else "**Rounds**: 1: every case was measured in one worker (`--rounds N` measures "
                "each case in N workers spread over the run, and shows how much they differ)."
            )
            if meta.precision:
                st.markdown(f"**Precision**: {md(meta.precision)}")
            machines = meta.machines or {}
            if machines:
                executor = meta.executor or {}
                st.markdown(
                    f"**Machines**: a cluster run (`--executor {md(executor.get('kind', 'ray'))}`) "
                    f"on {len(machines)} machines; every case names the one that measured it, and "
                    "the other pages rank each machine on its own (docs/cluster.md)."
                )
                cases_on: dict[str, int] = {}
                for r in run.cases:
                    cases_on[str(r.machine)] = cases_on.get(str(r.machine), 0) + 1
                st.dataframe(
                    pd.DataFrame(
                        [
                            {
                                "machine": mid,
                                "host": m.hostname,
                                "CPU / GPU": m.gpu or m.cpu_model,
                                "cores": m.usable_cores,
                                "memory": format_bytes(m.memory_bytes),
                                "peak GFLOP/s": ((m.roofline and m.roofline.peak_flops) or 0) / 1e9,
                                "copy GB/s": ((m.roofline and m.roofline.copy_bytes_per_s) or 0)
                                / 1e9,
                                "cases": cases_on.get(mid, 0),
                                "versions": ", ".join(
                                    f"{b}: "
                                    + " ".join(f"{k} {v}" for k, v in w.get("versions", {}).items())
                                    for b, w in (m.workers or {}).items()
                                    if isinstance(w, dict)
                                ),
                                "Ray node": (m.ray_node_id or "")[:12],
                            }
                            for mid, m in machines.items()
                        ]
                    ),
                    hide_index=True,
                    use_container_width=True,
                )
            workers = meta.workers or {}
            if workers:
                rows = [
                    {
                        "backend": name,
                        "versions": ", ".join(
                            f"{k} {v}" for k, v in info.get("versions", {}).items()
                        ),
                        "thread settings and flags": ", ".join(
                            f"{k}={v}" for k, v in info.get("facts", {}).items() if k != "allocator"
                        ),
                        "allocator in the worker (probed)": "; ".join(
                            f"{m}: {probe_text(p)}"
                            for m, p in (info.get("allocators") or {}).items()
                        )
                        or probe_text(info.get("facts", {}).get("allocator")),
                    }
                    for name, info in workers.items()
                ]
                st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
            st.json(
                {
                    "machine": machine.to_dict(),
                    "timing options": meta.timing,
                    "blas": roof.blas,
                },
                expanded=False,
            )
