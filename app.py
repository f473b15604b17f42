"""CNN Lab — entry point: page config, navigation over app_pages/, shared sidebar."""

from pathlib import Path

import streamlit as st

# The tab icon is a shipped file: a material icon here is fetched from a font CDN, which fails offline.
st.set_page_config(page_title="CNN Lab", page_icon=str(Path(__file__).parent / "assets" / "icon.png"), layout="wide",
                   initial_sidebar_state="collapsed" if st.query_params.get("present") == "1" else "auto")  # common.PRESENT

from app_pages.common import sidebar  # noqa: E402  (after set_page_config)
from app_pages.scenes import PAGES, lecture_bar, scene_link  # noqa: E402

pages = {name: st.Page(f"app_pages/{name}.py", title=title, icon=icon, default=name == "overview")
         for name, (title, icon) in PAGES.items()}
nav = st.navigation(list(pages.values()))
page = next(name for name, p in pages.items() if p is nav)
sidebar()
lecture_bar(page)
nav.run()
scene_link(page)
