"""AppTest: every section of the Inside page renders, for one model and for both side by side."""

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

PAGE = "inside.py"  # the `at` fixture (conftest) runs it
INSIDE = str(Path(__file__).resolve().parents[2] / "app_pages" / PAGE)



def test_occlusion_is_the_default_and_reports_its_work(at):
    caption = at.caption[0].value
    assert caption == "1,450 images through the model in " + caption.split(" in ")[1]  # 10 digits × 12×12 + 10
    at.slider(key="occ_patch").set_value(16).run()
    assert at.caption[0].value.startswith("500 images through the model")  # 10 × 7×7 corners (0, 2, …, 12) + 10
    at.selectbox(key="occ_fill").set_value("image mean").run()
    at.selectbox(key="occ_interest").set_value("class 3").run()
    assert not at.exception


def test_bad_indices_get_a_message(at):
    at.radio(key="occ_mode").set_value("by index").run()
    at.text_input(key="occ_idx").input("7, 99999").run()
    assert "between 0 and 9,999" in at.error[0].value
    at.text_input(key="occ_idx").input("7, 42").run()
    assert not at.error and at.caption[0].value.startswith("100 images")  # 2 × 7×7 + 2


@pytest.mark.parametrize("section", ["Architecture", "Filters", "Activations", "Attributions"])
def test_every_section_renders_for_both_models(at, section):
    at.selectbox(key="inside_model_b").set_value("batchnorm")
    at.segmented_control(key="inside_section").set_value(section).run()
    assert not at.exception, at.exception
    if section == "Attributions":
        at.selectbox(key="attr_interest").set_value("class 0").run()
        figures = [c.proto.spec for c in at.get("plotly_chart")]
        assert not at.exception and len(figures) == 2 and all("for class 0" in f for f in figures)
    if section == "Filters":
        at.toggle(key="conv2_overview").set_value(True).run()
        assert not at.exception


def test_your_digit_is_used_when_there_is_one():
    page = AppTest.from_file(INSIDE, default_timeout=180).run()
    page.radio(key="occ_mode").set_value("your digit").run()
    assert "No digit of yours yet" in page.info[0].value
    seven = np.zeros((28, 28), dtype=np.float32)
    seven[6, 8:21] = 1.0
    seven[6:23, 19] = 1.0
    page.session_state["own_digit"] = seven
    page.run()
    assert not page.exception and page.caption[0].value.startswith("145 images through the model")  # 1 × 12×12 + 1
    spec = page.get("plotly_chart")[0].proto.spec
    assert "your digit, class of interest" in spec
