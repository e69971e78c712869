"""Plotly figure builders: pure functions of a table, unit-tested, no Streamlit here."""

from __future__ import annotations

import html
import math
import re

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
    "native": pc.sequential.Reds,
}


# One marker shape per strategy family (what the strategy does, whatever the framework), so
# the eye finds "every fold" or "every Conv3D" across frameworks by shape.
STRATEGY_FAMILIES = [
    # (family, name pattern, plotly marker symbol); the first match wins
    ("Conv3D (1,K,K)", r"conv3d", "square"),
    ("map over channels", r"vmap|map_fn|lax_map|vectorized_map|time_distributed", "triangle-up"),
    ("split + shared Conv2D", r"split", "triangle-down"),
    ("patches + einsum", r"patches|unfold|einsum", "cross"),
    ("channels folded into the batch", r"fold", "circle"),
    ("grouped / depthwise", r"grouped|depthwise", "pentagon"),
    ("shift-and-add", r"shift_add", "star"),
    ("FFT", r"fft", "hexagon"),
    ("reference / direct loops", r"oracle|direct|tuned|loop", "x"),
]
OTHER_FAMILY = ("other", "circle-open")
# sharedconv's own kernel is its own family, whatever its strategy is called
NATIVE_FAMILY = ("sharedconv's kernel", "diamond")
# The seed's three options carry a black outline on every figure (bars, markers, lines'
# markers), whichever framework implements them.
SEED_OUTLINE = {"color": "black", "width": 2}


def strategy_family(strategy: str) -> tuple[str, str]:
    """(family name, marker symbol) of a strategy name (``backend/`` prefix allowed)."""
    if strategy.startswith("native/"):
        return NATIVE_FAMILY
    name = strategy.split("/", 1)[-1].split(" @", 1)[0].lower()
    for family, pattern, symbol in STRATEGY_FAMILIES:
        if re.search(pattern, name):
            return family, symbol
    return OTHER_FAMILY


def text(value: object) -> str:
    """A string from a results file, plugin or framework as plain text inside a figure:
    plotly renders a little HTML (links among it) in names, labels and hover text."""
    return html.escape(str(value), quote=False)


def backend_of(label: str) -> str:
    return label.split("/", 1)[0]


def color_map(labels: list[str]) -> dict[str, str]:
    """One colour per backend/strategy, the same on every page (sorted, so stable): a hue
    family per backend (its strategies in shades of it, light to dark), and the qualitative
    palette for backends without a family (plugins)."""
    by_backend: dict[str, list[str]] = {}
    for label in sorted(set(labels)):
        by_backend.setdefault(backend_of(label), []).append(label)
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
            f"<b>{text(r['label'])}</b> ({strategy_family(r['label'])[0]})",
            text(f"{r['problem']} [{r['mode']}, {r['dtype']}, {r['device']}]"),
            f"median {r['median_s'] * 1e3:.3f} ms (IQR {r['iqr_s'] * 1e3:.3f} ms, n={r['samples']})"
            if pd.notna(r.get("median_s"))
            else "",
            f"peak memory {r['peak_bytes'] / 2**20:.1f} MiB"
            if pd.notna(r.get("peak_bytes"))
            else "",
            f"{r['gflops']:.2f} GFLOP/s" if pd.notna(r.get("gflops")) else "",
            f"seed {SEED_NAMES[int(r['seed_option'])]}" if pd.notna(r.get("seed_option")) else "",
            text(f"run {r['run_id']}"),
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
            y=[text(label) for label in data["label"]],
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
        title=text(title),
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
                        legendgroup=backend_of(label),
                    ),
                    row=row,
                    col=1,
                )
            seed = group["seed_option"].notna().any()
            fig.add_trace(
                go.Scatter(
                    x=group[axis],
                    y=group[column] * scale,
                    mode="lines+markers",
                    name=text(label),
                    legendgroup=backend_of(label),
                    legendgrouptitle_text=text(backend_of(label)),
                    showlegend=label not in shown,
                    line={"color": color, "dash": "dash" if seed else "solid"},
                    marker={
                        "symbol": strategy_family(label)[1],
                        "size": 9,
                        "line": SEED_OUTLINE if seed else {"width": 0},
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
        legend_title_text="backend/strategy<br>(shape: strategy family;<br>dashed, outlined: the seed's options)",
        legend={"groupclick": "toggleitem"},
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
        seed = group["seed_option"].notna().any()
        fig.add_trace(
            go.Scatter(
                x=group["peak_bytes"] / 2**20,
                y=group["median_s"] * 1e3,
                mode="markers",
                name=text(label),
                legendgroup=backend_of(label),
                legendgrouptitle_text=text(backend_of(label)),
                marker={
                    "color": colors.get(label, "#888"),
                    "size": 13 if seed else 11,
                    "symbol": strategy_family(label)[1],
                    "line": SEED_OUTLINE if seed else {"width": 0},
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
        title=text(title),
        xaxis_title="peak memory of one call above the prepared state (MiB, log scale)",
        yaxis_title="median time per call (ms, log scale)",
        xaxis_type="log",
        yaxis_type="log",
        height=560,
        legend_title_text="backend/strategy<br>(shape: strategy family;<br>black outline: the seed's options)",
        legend={"groupclick": "toggleitem"},
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
    cells = [[f"{v:.2f}x" if v == v else "" for v in row] for row in values]
    fig = go.Figure(
        go.Heatmap(
            z=logv,
            x=[text(c) for c in matrix.columns],
            y=[text(i) for i in matrix.index],
            text=cells,
            texttemplate="%{text}",
            colorscale="RdBu",
            zmid=0,
            colorbar={"title": "speedup vs baseline<br>(log2; blue = faster)"},
            hovertemplate="%{y}<br>%{x}<br>%{text} the speed of "
            + text(baseline)
            + "<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Speedup against {text(baseline)} (baseline time / strategy time)",
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
    cells = [[f"{v:.2g}" if v == v else "" for v in row] for row in pivot.to_numpy(dtype=float)]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[text(c) for c in pivot.columns],
            y=[text(i) for i in pivot.index],
            text=cells,
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
                    f"{text(c)}<br>B/A = {r:.3f}, p = {p:.2g}"
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
        title=f"Median time per case: {text(name_b)} against {text(name_a)}",
        xaxis_title=f"{text(name_a)}: median (ms, log scale)",
        yaxis_title=f"{text(name_b)}: median (ms, log scale)",
        xaxis_type="log",
        yaxis_type="log",
        height=520,
    )
    return fig
