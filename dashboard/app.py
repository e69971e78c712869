"""The sharedconv dashboard: `sharedconv dashboard` runs this with Streamlit.

Pages only describe the page; loading lives in `data.py`, figures in `figures.py`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).parent / "app_pages"

st.set_page_config(page_title="sharedconv", page_icon=":material/grid_on:", layout="wide")

navigation = st.navigation(
    [
        st.Page(
            PAGES / "recommend.py", title="Recommend", icon=":material/recommend:", default=True
        ),
        st.Page(PAGES / "scaling.py", title="Scaling", icon=":material/show_chart:"),
        st.Page(PAGES / "tradeoffs.py", title="Tradeoffs", icon=":material/scatter_plot:"),
        st.Page(PAGES / "agreement.py", title="Agreement", icon=":material/verified:"),
        st.Page(PAGES / "compare.py", title="Compare runs", icon=":material/compare_arrows:"),
        st.Page(PAGES / "machine.py", title="Machine", icon=":material/memory:"),
        st.Page(PAGES / "run.py", title="Run", icon=":material/play_arrow:"),
    ]
)
navigation.run()
