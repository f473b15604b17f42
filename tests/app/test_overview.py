"""AppTest: the app starts, the Overview page shows real content, its widgets work."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def _app():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def test_overview_shows_predictions_and_the_numbers():
    at = _app()
    assert at.title[0].value.startswith("CNN Lab")
    assert any("of 12 correct" in m.value and "**99.42%** on all 10,000 test digits" in m.value for m in at.markdown)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == "799,078"
    assert metrics["Neurons (conv + FC outputs)"] == "31,870"
    assert metrics["Units incl. input & pooling"] == "40,494"
    assert len(at.dataframe[0].value) == 11  # input … fc2, no BatchNorm rows
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "Baseline (no BatchNorm)**: 99.42%" in sidebar and "**BatchNorm**: 99.53%" in sidebar


def test_new_sample_and_model_switch():
    at = _app()
    first = at.caption[0].value
    assert first.startswith("Test indices:") and len(first.split(",")) == 12
    at.button[0].click().run()
    assert at.caption[0].value != first
    at.radio[0].set_value("batchnorm").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Parameters"] == "800,206"
    assert len(at.dataframe[0].value) == 14  # bn1, bn2, bn3 added
