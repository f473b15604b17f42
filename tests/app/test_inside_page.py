"""AppTest: every section of the Inside page renders, for one model and for both side by side."""

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cnn_core.store import RunStore

PAGE = "inside.py"  # the `at` fixture (conftest) runs it
INSIDE = str(Path(__file__).resolve().parents[2] / "app_pages" / PAGE)



def test_occlusion_is_the_default_and_reports_its_work(at):
    caption = at.caption[0].value
    assert caption == "1,010 images through the model in " + caption.split(" in ")[1]  # 10 digits × 10×10 + 10 (patch 10)
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
    assert not page.exception and page.caption[0].value.startswith("101 images through the model")  # 1 × 10×10 + 1
    spec = page.get("plotly_chart")[0].proto.spec
    assert "your digit, class of interest" in spec


def test_filters_over_training_time_of_a_saved_run(runs_dir, tiny_run, captions):
    RunStore(runs_dir).save(tiny_run, "tiny-snapshots", overwrite=True)
    page = AppTest.from_file(INSIDE, default_timeout=180).run()
    page.segmented_control(key="inside_section").set_value("Filters").run()
    assert not page.exception, page.exception
    why = ("The shipped models have no filters over training time: their weights are the verified reference every stored "
           "result rests on")
    assert why in captions(page)  # the shipped baseline is shown: why it has no time slider
    assert page.selectbox(key="filters_time_run_baseline").value == "tiny-snapshots"  # the newest run that kept them
    page.selectbox(key="inside_model_a").set_value("tiny-snapshots").run()  # model A's own, once it has them
    assert page.selectbox(key="filters_time_run_tiny-snapshots").value == "tiny-snapshots"
    slider = page.select_slider(key="filters_time_step_tiny-snapshots")
    assert slider.options == ["step 0 · before training", "step 1 · epoch 0.12", "step 5 · epoch 0.62", "step 8 · epoch 1",
                              "step 16 · epoch 2"]
    assert slider.value == 0

    def conv1_figure(at):
        return json.loads(next(c for c in at.get("plotly_chart") if "conv1 at step" in c.proto.spec).proto.spec)

    first = conv1_figure(page)
    assert first["layout"]["title"]["text"] == "conv1 at step 0 · before training"
    slider.set_value(16).run()
    assert not page.exception, page.exception
    last = conv1_figure(page)
    assert last["layout"]["title"]["text"] == "conv1 at step 16 · epoch 2"
    assert last["data"][0]["z"] != first["data"][0]["z"]  # the filters changed
    assert last["data"][0]["zmax"] == first["data"][0]["zmax"]  # on one scale for all steps
    assert "Since step 0, conv1's weights have moved by" in captions(page)
    page.radio(key="filters_time_show").set_value("change since step 0").run()
    change = conv1_figure(page)
    assert change["layout"]["title"]["text"] == "change of conv1 at step 16 · epoch 2"
    assert change["data"][0]["zmax"] < last["data"][0]["zmax"]  # the scale of W − W₀, not of W
