"""What every page shares: the cached loader, the run picker, empty-state guidance, CSV."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from .data import Loaded, load, results_roots
from .figures import color_map


@st.cache_data(show_spinner="Reading results…", ttl=60)
def _load_cached(roots: tuple[str, ...]) -> Loaded:
    from pathlib import Path

    return load([Path(r) for r in roots])


def loaded() -> Loaded:
    roots = tuple(str(r) for r in results_roots(os.environ.get("SHAREDCONV_RESULTS")))
    data = _load_cached(roots)
    if data.skipped:
        with st.sidebar.expander(f"{len(data.skipped)} file(s) skipped"):
            for line in data.skipped:
                st.caption(line)
    return data


def require_results(data: Loaded) -> bool:
    """Guidance instead of an exception when there is nothing to show."""
    if data.empty or data.cases.empty:
        roots = ", ".join(str(r) for r in results_roots(os.environ.get("SHAREDCONV_RESULTS")))
        st.info(
            f"No results found in {roots}. Measure this machine with `sharedconv run --suite smoke` "
            "(or use the **Run** page), then reload."
        )
        return False
    return True


def pick_run(data: Loaded, key: str, label: str = "Run (machine)") -> str:
    options = [r.run_id for r in data.runs]
    return st.sidebar.selectbox(
        label, options, format_func=lambda rid: data.run(rid).label, key=key
    )


def colors(data: Loaded) -> dict[str, str]:
    return color_map(list(data.cases["label"].unique())) if not data.cases.empty else {}


def download(frame: pd.DataFrame, name: str, key: str) -> None:
    st.download_button(
        f"Download this data (CSV, {len(frame)} rows)",
        frame.to_csv(index=False).encode(),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=key,
    )
