"""Plotly figure builders: pure functions of a table, unit-tested, no Streamlit here."""

from __future__ import annotations

import math

import pandas as pd
import plotly.colors as pc
import plotly.graph_objects as go

PALETTE = pc.qualitative.Dark24 + pc.qualitative.Alphabet + pc.qualitative.Light24
SEED_NAMES = {1: "option 1: Conv3D", 2: "option 2: TimeDistributed/map", 3: "option 3: split"}
METRICS = {
    "time": ("median_s", "median time per call (ms, log scale)", 1e3),
    "GFLOP/s": ("gflops", "throughput (GFLOP/s)", 1.0),
    "% roofline": ("roofline_pct", "attained fraction of this machine's roofline (%)", 1.0),
}


# One hue family per backend, so the eye finds a framework before a strategy.
FAMILIES = {
    "torch": pc.sequential.Oranges,
    "tensorflow": pc.sequential.Blues,
    "jax": pc.sequential.Greens,
    "keras-torch": pc.sequential.YlOrBr,
    "keras-tensorflow": pc.sequential.Purples,
    "keras-jax": pc.sequential.Teal,
    "numpy": pc.sequential.Greys,
    "numba": pc.sequential.RdPu,
}


def color_map(labels: list[str]) -> dict[str, str]:
    """One colour per backend/strategy, the same on every page (sorted, so stable): a hue
    family per backend (its strategies in shades of it, light to dark), and the qualitative
    palette for backends without a family (plugins)."""
    by_backend: dict[str, list[str]] = {}
    for label in sorted(set(labels)):
        by_backend.setdefault(label.split("/", 1)[0], []).append(label)
    out: dict[str, str] = {}
    others = 0
    for backend, members in by_backend.items():
        family = FAMILIES.get(backend)
        if family is None:
            for label in members:
                out[label] = PALETTE[others % len(PALETTE)]
                others += 1
            continue
        # the family's darker two thirds: its lightest shades vanish on a white page
        for i, label in enumerate(members):
            t = 0.35 + 0.65 * (i / (len(members) - 1) if len(members) > 1 else 0.5)
            out[label] = pc.sample_colorscale(pc.make_colorscale(family), [t])[0]
    return out


def _hover(frame: pd.DataFrame) -> list[str]:
    out = []
    for _, r in frame.iterrows():
        parts = [
            f"<b>{r['label']}</b>",
            f"{r['problem']} [{r['mode']}, {r['dtype']}, {r['device']}]",
            f"median {r['median_s'] * 1e3:.3f} ms (IQR {r['iqr_s'] * 1e3:.3f} ms, n={r['samples']})"
            if pd.notna(r.get("median_s"))
            else "",
            f"peak memory {r['peak_bytes'] / 2**20:.1f} MiB"
            if pd.notna(r.get("peak_bytes"))
            else "",
            f"{r['gflops']:.2f} GFLOP/s" if pd.notna(r.get("gflops")) else "",
            f"seed {SEED_NAMES[int(r['seed_option'])]}" if pd.notna(r.get("seed_option")) else "",
            f"run {r['run_id']}",
        ]
        out.append("<br>".join(p for p in parts if p))
    return out


def ranking_bar(frame: pd.DataFrame, colors: dict[str, str], title: str) -> go.Figure:
    """Median time per strategy, fastest on top, IQR as error bars, seed options outlined."""
    data = frame.sort_values("median_s", ascending=False)
    ms = data["median_s"] * 1e3
    fig = go.Figure(
        go.Bar(
            x=ms,
            y=data["label"],
            orientation="h",
            marker={
                "color": [colors.get(label, "#888") for label in data["label"]],
                "line": {
                    "color": [
                        "black" if pd.notna(s) else "rgba(0,0,0,0)" for s in data["seed_option"]
                    ],
                    "width": 2,
                },
            },
            error_x={
                "type": "data",
                "symmetric": False,
                "array": (data["q3_s"] - data["median_s"]).clip(lower=0) * 1e3,
                "arrayminus": (data["median_s"] - data["q1_s"]).clip(lower=0) * 1e3,
            },
            hovertext=_hover(data),
            hoverinfo="text",
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title="median time per call (ms, log scale); bars outlined in black are the seed's options",
        xaxis_type="log",
        yaxis_title="backend/strategy",
        height=max(320, 24 * len(data) + 120),
        margin={"l": 10, "r": 10, "t": 50, "b": 50},
    )
    return fig


def scaling_lines(
    frame: pd.DataFrame,
    axis: str,
    axis_title: str,
    metric: str,
    colors: dict[str, str],
    facet: str | None,
) -> go.Figure:
    """One line per strategy against ``axis``, IQR bands for time, optional facets."""
    column, y_title, scale = METRICS[metric]
    facets = sorted(frame[facet].unique()) if facet else [None]
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=len(facets),
        cols=1,
        shared_xaxes=True,
        subplot_titles=[f"{facet} = {f}" for f in facets] if facet else None,
        vertical_spacing=0.08,
    )
    shown: set[str] = set()
    for row, value in enumerate(facets, 1):
        part = frame if value is None else frame[frame[facet] == value]
        for label, group in part.groupby("label"):
            group = group.sort_values(axis)
            color = colors.get(label, "#888")
            if metric == "time":
                upper = group["q3_s"] * scale
                lower = group["q1_s"] * scale
                fig.add_trace(
                    go.Scatter(
                        x=list(group[axis]) + list(group[axis])[::-1],
                        y=list(upper) + list(lower)[::-1],
                        fill="toself",
                        fillcolor=color,
                        opacity=0.15,
                        line={"width": 0},
                        hoverinfo="skip",
                        showlegend=False,
                        legendgroup=label,
                    ),
                    row=row,
                    col=1,
                )
            fig.add_trace(
                go.Scatter(
                    x=group[axis],
                    y=group[column] * scale,
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    showlegend=label not in shown,
                    line={
                        "color": color,
                        "dash": "dash" if group["seed_option"].notna().any() else "solid",
                    },
                    hovertext=_hover(group),
                    hoverinfo="text",
                ),
                row=row,
                col=1,
            )
            shown.add(label)
        fig.update_yaxes(
            title_text=y_title, type="log" if metric == "time" else "linear", row=row, col=1
        )
    fig.update_xaxes(title_text=f"{axis_title} (log scale)", type="log", row=len(facets), col=1)
    fig.update_layout(
        height=380 * len(facets) + 80,
        legend_title_text="backend/strategy (dashed: seed options)",
        margin={"t": 50},
    )
    return fig


def pareto_front(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows not beaten on both time and memory by another row (ties kept)."""
    data = frame.dropna(subset=["median_s", "peak_bytes"]).sort_values(["median_s", "peak_bytes"])
    front = []
    best_mem = math.inf
    for _, r in data.iterrows():
        if r["peak_bytes"] < best_mem:
            front.append(r)
            best_mem = r["peak_bytes"]
    return pd.DataFrame(front)


def tradeoff_scatter(frame: pd.DataFrame, colors: dict[str, str], title: str) -> go.Figure:
    data = frame.dropna(subset=["median_s", "peak_bytes"])
    front = pareto_front(data)
    fig = go.Figure()
    for label, group in data.groupby("label"):
        fig.add_trace(
            go.Scatter(
                x=group["peak_bytes"] / 2**20,
                y=group["median_s"] * 1e3,
                mode="markers",
                name=label,
                marker={
                    "color": colors.get(label, "#888"),
                    "size": 11,
                    "symbol": "diamond" if group["seed_option"].notna().any() else "circle",
                },
                hovertext=_hover(group),
                hoverinfo="text",
            )
        )
    if not front.empty:
        fig.add_trace(
            go.Scatter(
                x=front["peak_bytes"] / 2**20,
                y=front["median_s"] * 1e3,
                mode="lines",
                name="Pareto front",
                line={"color": "black", "dash": "dot", "shape": "hv"},
                hoverinfo="skip",
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="peak memory of one call above the prepared state (MiB, log scale)",
        yaxis_title="median time per call (ms, log scale)",
        xaxis_type="log",
        yaxis_type="log",
        height=560,
        legend_title_text="backend/strategy (diamonds: seed options)",
    )
    return fig


def speedup_matrix(frame: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Strategy x problem table of (baseline time / strategy time); > 1 is faster."""
    pivot = frame.pivot_table(index="label", columns="problem", values="median_s", aggfunc="min")
    if baseline not in pivot.index:
        return pd.DataFrame()
    return pivot.rdiv(pivot.loc[baseline], axis=1)


def speedup_heatmap(matrix: pd.DataFrame, baseline: str) -> go.Figure:
    values = matrix.to_numpy(dtype=float)
    logv = [
        [math.log2(v) if v and v > 0 and not math.isnan(v) else None for v in row] for row in values
    ]
    text = [[f"{v:.2f}x" if v == v else "" for v in row] for row in values]
    fig = go.Figure(
        go.Heatmap(
            z=logv,
            x=list(matrix.columns),
            y=list(matrix.index),
            text=text,
            texttemplate="%{text}",
            colorscale="RdBu",
            zmid=0,
            colorbar={"title": "speedup vs baseline<br>(log2; blue = faster)"},
            hovertemplate="%{y}<br>%{x}<br>%{text} the speed of " + baseline + "<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Speedup against {baseline} (baseline time / strategy time)",
        xaxis_title="problem",
        yaxis_title="backend/strategy",
        height=max(400, 22 * len(matrix) + 200),
        xaxis={"tickangle": -30, "dtick": 1},
        yaxis={"dtick": 1},  # every strategy labelled, not every other one
    )
    return fig


def agreement_heatmap(frame: pd.DataFrame) -> go.Figure:
    """Worst error over its bound per strategy and problem+mode (1 = the bound)."""
    data = frame.dropna(subset=["error_vs_bound"]).copy()
    data["column"] = data["problem"] + " [" + data["mode"] + "]"
    pivot = data.pivot_table(
        index="label", columns="column", values="error_vs_bound", aggfunc="max"
    )
    z = [
        [math.log10(max(v, 1e-6)) if v == v else None for v in row]
        for row in pivot.to_numpy(dtype=float)
    ]
    text = [[f"{v:.2g}" if v == v else "" for v in row] for row in pivot.to_numpy(dtype=float)]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(pivot.columns),
            y=list(pivot.index),
            text=text,
            colorscale=[[0, "#1a9850"], [0.75, "#fee08b"], [0.8, "#d73027"], [1, "#67001f"]],
            zmin=-4,
            zmax=1,
            colorbar={"title": "worst error / bound<br>(log10; 0 = at the bound)"},
            hovertemplate="%{y}<br>%{x}<br>error = %{text} x the bound<extra></extra>",
        )
    )
    fig.update_layout(
        title="Agreement with the float64 oracle: worst output error over its bound (above 1 fails)",
        xaxis_title="problem [mode]",
        yaxis_title="backend/strategy",
        height=max(400, 20 * len(pivot) + 220),
        xaxis={"tickangle": -35, "dtick": 1},
        yaxis={"dtick": 1},  # every strategy labelled, not every other one
    )
    return fig


def compare_scatter(rows: pd.DataFrame, name_a: str, name_b: str) -> go.Figure:
    colors = {"regression": "#d62728", "improvement": "#2ca02c", "same": "#7f7f7f"}
    fig = go.Figure()
    for verdict, group in rows.groupby("verdict"):
        fig.add_trace(
            go.Scatter(
                x=group["a_s"] * 1e3,
                y=group["b_s"] * 1e3,
                mode="markers",
                name=verdict,
                marker={"color": colors.get(verdict, "#333"), "size": 8},
                hovertext=[
                    f"{c}<br>B/A = {r:.3f}, p = {p:.2g}"
                    for c, r, p in zip(group["case"], group["ratio"], group["p"], strict=True)
                ],
                hoverinfo="text",
            )
        )
    if not rows.empty:
        lo = min(rows["a_s"].min(), rows["b_s"].min()) * 1e3
        hi = max(rows["a_s"].max(), rows["b_s"].max()) * 1e3
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[lo, hi],
                mode="lines",
                name="equal",
                line={"color": "black", "dash": "dot"},
            )
        )
    fig.update_layout(
        title=f"Median time per case: {name_b} against {name_a}",
        xaxis_title=f"{name_a}: median (ms, log scale)",
        yaxis_title=f"{name_b}: median (ms, log scale)",
        xaxis_type="log",
        yaxis_type="log",
        height=520,
    )
    return fig
