"""AppTest: the app starts, the Overview page shows real content, its widgets work, and the digit choice
follows the user from page to page."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")


def _app():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def _titles(at) -> str:
    return " | ".join(a["text"] for a in json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["annotations"])


def test_overview_shows_predictions_and_the_numbers():
    at = _app()
    assert at.title[0].value.startswith("CNN Lab")
    assert any("of 10 correct" in m.value and "**99.42%** on all 10,000 test digits" in m.value for m in at.markdown)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == "799,078"
    assert metrics["Neurons (conv + FC outputs)"] == "31,870"
    assert metrics["Units incl. input & pooling"] == "40,494"
    assert len(at.dataframe[0].value) == 11  # input … fc2, no BatchNorm rows
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "Baseline (no BatchNorm)**: 99.42%" in sidebar and "**BatchNorm**: 99.53%" in sidebar


def test_reshuffle_and_model_switch():
    at = _app()
    first = _titles(at)
    at.button(key="overview_shuffle").click().run()
    assert _titles(at) != first
    at.selectbox(key="overview_model_a").set_value("batchnorm").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Parameters"] == "800,206"
    assert len(at.dataframe[0].value) == 14  # bn1, bn2, bn3 added


def test_digits_by_index_go_in_the_url_and_follow_to_another_page():
    at = _app()
    at.radio(key="overview_mode").set_value("by index").run()
    at.text_input(key="overview_idx").input("0, 1, 2").run()
    assert at.query_params["digits"] == "0,1,2"
    assert "true 7<br>pred 7" in _titles(at) and "of 3 correct" in " ".join(m.value for m in at.markdown)
    at.switch_page(str(REPO / "app_pages" / "inside.py")).run()
    assert at.radio(key="occ_mode").value == "by index" and at.text_input(key="occ_idx").value == "0, 1, 2"
    at.text_input(key="occ_idx").input("7").run()
    at.switch_page(str(REPO / "app_pages" / "overview.py")).run()
    assert at.text_input(key="overview_idx").value == "7" and "of 1 correct" in " ".join(m.value for m in at.markdown)


def test_a_link_with_digits_opens_them():
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["digits"] = "3,4"
    at.run()
    assert at.radio(key="overview_mode").value == "by index" and "of 2 correct" in " ".join(m.value for m in at.markdown)


def test_your_digit_without_one_keeps_the_rest_of_the_page():
    at = _app()
    at.radio(key="overview_mode").set_value("your digit").run()
    assert "No digit of yours yet" in at.info[0].value
    assert {m.label: m.value for m in at.metric}["Parameters"] == "799,078"
