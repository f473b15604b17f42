"""CNN Lab — entry point: page config, navigation over app_pages/, shared sidebar."""

import streamlit as st

st.set_page_config(page_title="CNN Lab", page_icon=":material/neurology:", layout="wide")

from app_pages.common import sidebar  # noqa: E402  (after set_page_config)

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
