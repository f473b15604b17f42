"""Presenter mode (?present=1 or the sidebar toggle): every page renders, charts' fonts grow, explanations open."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from app_pages.common import PRESENTER_FONTS

REPO = Path(__file__).resolve().parents[2]
PAGES = ["overview.py", "train.py", "results.py", "inside.py", "convolution.py", "digit.py", "attacks.py", "robust.py", "lecture.py"]


def _fonts(at) -> list[float]:
    """The default font size of every chart on the page."""
    return [json.loads(c.proto.spec)["layout"]["font"]["size"] for c in at.get("plotly_chart")]


def test_presenter_mode_renders_every_page_with_larger_charts_and_open_explanations():
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.query_params["present"] = "1"
    at.run()
    assert at.toggle(key="present").value and at.query_params["present"] == "1"
    for page in PAGES:
        at.switch_page(str(REPO / "app_pages" / page)).run()
        assert not at.exception, (page, at.exception)
        assert all(e.proto.expanded for e in at.expander if e.label == "What am I seeing?"), page
    at.switch_page(str(REPO / "app_pages" / "inside.py")).run()
    assert set(_fonts(at)) == {round(16 * PRESENTER_FONTS, 1)}  # occlusion: every figure's FONT, scaled
    at.toggle(key="present").set_value(False).run()
    assert set(_fonts(at)) == {16} and "present" not in at.query_params
    assert not any(e.proto.expanded for e in at.expander if e.label == "What am I seeing?")
