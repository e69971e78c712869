"""Machine: where each run's numbers come from."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from sharedconv.dashboard.common import default_run_index, loaded, md, require_results
from sharedconv.harness.allocators import probe_text
from sharedconv.harness.allocators import run_text as allocator_text
from sharedconv.harness.summary import format_bytes

st.title("Machines and settings")
data = loaded()
if require_results(data):
    opened = default_run_index(data)
    for i, run in enumerate(data.runs):
        meta = run.meta
        machine = meta.get("machine", {})
        with st.expander(md(run.label), expanded=i == opened):
            c1, c2, c3, c4 = st.columns(4)
            c1.metric("CPU / GPU", machine.get("gpu") or machine.get("cpu_model", "?"))
            c2.metric("cores used", f"{meta.get('threads')} of {machine.get('usable_cores')}")
            c3.metric("memory", format_bytes(machine.get("memory_bytes")))
            roof = meta.get("roofline") or {}
            c4.metric(
                "peak float32",
                f"{roof.get('peak_flops', 0) / 1e9:.1f} GFLOP/s" if "peak_flops" in roof else "n/a",
            )
            if meta.get("machines"):  # a cluster run: the figures above are the submitter's
                st.caption(
                    "The machine above submitted this cluster run; the cases ran on the machines "
                    "listed below, each with its own roofline."
                )
            elif "peak_flops" in roof:
                st.markdown(
                    f"**Roofline**: {roof.get('peak_flops', 0) / 1e9:.1f} GFLOP/s peak, "
                    f"{roof.get('copy_bytes_per_s', 0) / 1e9:.1f} GB/s copy bandwidth; ridge point "
                    f"{roof.get('peak_flops', 0) / max(roof.get('copy_bytes_per_s', 1), 1):.1f} FLOP/byte. "
                    + md(roof.get("method", ""))
                )
            else:
                st.markdown(f"**Roofline**: not measured ({md(roof.get('error', 'no record'))})")
            st.markdown(
                f"**Run**: {md(meta.get('command', ''))} — suite {md(meta.get('suite') or 'ad hoc')}, "
                f"status {md(meta.get('status'))}, started {md(meta.get('started'))}, ended "
                f"{md(meta.get('ended', '—'))}; project commit "
                f"{md((meta.get('project') or {}).get('commit') or 'unknown')}"
                + (
                    " (with uncommitted changes)"
                    if (meta.get("project") or {}).get("dirty")
                    else ""
                )
            )
            st.markdown("**Allocator** (`sharedconv run --malloc`, docs/allocator.md):")
            st.text(allocator_text(meta))  # plain text: settings hold '_' and '*'
            rounds = meta.get("rounds", 1)
            st.markdown(
                f"**Rounds**: {rounds}: every case was measured in {rounds} fresh workers, round after "
                "round over the run; a case's median is the median of its rounds' medians, and cases "
                "whose rounds differ by more than 10% are marked noisy."
                if rounds > 1
                else "**Rounds**: 1: every case was measured in one worker (`--rounds N` measures "
                "each case in N workers spread over the run, and shows how much they differ)."
            )
            if meta.get("precision"):
                st.markdown(f"**Precision**: {md(meta['precision'])}")
            machines = meta.get("machines") or {}
            if machines:
                executor = meta.get("executor") or {}
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
                                "host": m.get("hostname"),
                                "CPU / GPU": m.get("gpu") or m.get("cpu_model"),
                                "cores": m.get("usable_cores"),
                                "memory": format_bytes(m.get("memory_bytes")),
                                "peak GFLOP/s": (m.get("roofline") or {}).get("peak_flops", 0)
                                / 1e9,
                                "copy GB/s": (m.get("roofline") or {}).get("copy_bytes_per_s", 0)
                                / 1e9,
                                "cases": cases_on.get(mid, 0),
                                "versions": ", ".join(
                                    f"{b}: "
                                    + " ".join(f"{k} {v}" for k, v in w.get("versions", {}).items())
                                    for b, w in (m.get("workers") or {}).items()
                                ),
                                "Ray node": str(m.get("ray_node_id", ""))[:12],
                            }
                            for mid, m in machines.items()
                            if isinstance(m, dict)
                        ]
                    ),
                    hide_index=True,
                    use_container_width=True,
                )
            workers = meta.get("workers", {})
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
                    "machine": machine,
                    "timing options": meta.get("timing"),
                    "blas": roof.get("blas"),
                },
                expanded=False,
            )
