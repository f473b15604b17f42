"""CNN Lab — entry point: page config, navigation over app_pages/, shared sidebar."""

from pathlib import Path

import streamlit as st

# The tab icon is a shipped file: a material icon here is fetched from a font CDN, which fails offline.
st.set_page_config(page_title="CNN Lab", page_icon=str(Path(__file__).parent / "assets" / "icon.png"), layout="wide",
                   initial_sidebar_state="collapsed" if st.query_params.get("present") == "1" else "auto")  # common.PRESENT

from app_pages.common import scene_link, sidebar  # noqa: E402  (after set_page_config)

nav = st.navigation(
    [
        st.Page("app_pages/overview.py", title="Overview", icon=":material/home:", default=True),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("app_pages/results.py", title="Results", icon=":material/analytics:"),
        st.Page("app_pages/inside.py", title="Inside the network", icon=":material/visibility:"),
        st.Page("app_pages/convolution.py", title="Convolution by hand", icon=":material/grid_on:"),
        st.Page("app_pages/digit.py", title="Your digit", icon=":material/draw:"),
        st.Page("app_pages/attacks.py", title="Attack playground", icon=":material/bolt:"),
        st.Page("app_pages/robust.py", title="Robustness lab", icon=":material/shield:"),
    ]
)
sidebar()
nav.run()
scene_link()
