"""AppTest: every section of the attack playground renders with real results, its knobs change them, bad
settings get a message, and the shared models' weights are bit-identical afterwards."""


import numpy as np
import pytest
import torch

import app_pages.loaders as common

PAGE = "attacks.py"  # the `at` fixture (conftest) runs it




def test_fooling_images_reach_every_target(at, captions):
    assert "10 of 10 classified as their target · 200 steps" in captions(at)
    assert any("rose at 100% of the steps" in m.value for m in at.markdown)
    at.toggle(key="fool_sign").set_value(True).run()
    assert at.select_slider(key="fool_step_s").value == 1.0 and "10 of 10 classified" in captions(at)


def test_beta_moves_the_targeted_images_and_an_unstable_step_is_flagged(at, captions):
    at.segmented_control(key="atk_section").set_value("Targeted + prior").run()
    at.radio(key="like_mode").set_value("by index").run()
    at.text_input(key="like_idx").input("0").run()  # a 7
    spec = at.get("plotly_chart")[0].proto.spec
    at.select_slider(key="beta").set_value(1e-3).run()
    assert "10 of 10 classified as their target" in captions(at) and at.get("plotly_chart")[0].proto.spec != spec
    assert not at.warning
    at.select_slider(key="beta").set_value(10.0).run()
    assert "step · β · 2/784 = 26 > 2" in at.warning[0].value
    at.select_slider(key="beta").set_value(1e-2)
    at.toggle(key="like_grid").set_value(True).run()
    assert not at.exception and "of 100 reached their target" in captions(at)


def test_adversarial_noise_and_its_bound(at, captions):
    at.segmented_control(key="atk_section").set_value("Adversarial noise").run()
    assert at.text_input(key="orig_idx").value == "0"  # the digit chosen above follows along
    at.text_input(key="orig_idx").input("0, 1, 2").run()
    assert "This view takes one digit: #0, the first of your list." in captions(at)
    assert at.query_params["digits"] == "0,1,2"  # the link keeps the whole list
    assert "10 of 10 targets reached" in captions(at)
    transfer = next(m.value for m in at.markdown if m.value.startswith("**Transfer:**"))
    assert " of 81** cases" in transfer  # the attacked 7 (test #0) is not among the examples; its own row is zero
    at.toggle(key="noise_bounded").set_value(True).run()
    at.slider(key="noise_linf").set_value(2).run()
    at.slider(key="noise_steps").set_value(5).run()
    assert "1 of 10 targets reached" in captions(at) and "largest |noise| 2 grey levels" in captions(at)
    at.radio(key="noise_alpha_mode").set_value("fixed").run()
    assert not at.exception


@pytest.mark.parametrize("layer", ["conv1", "conv2", "fc1"])
def test_class_and_unit_models_for_both_models(at, captions, layer):
    at.selectbox(key="atk_model_b").set_value("batchnorm")
    at.segmented_control(key="atk_section").set_value("Class models").run()
    assert captions(at).count("classified as their target") == 2
    at.segmented_control(key="atk_section").set_value("Maximize a unit").run()
    at.radio(key="unit_layer").set_value(layer).run()
    size = {"conv1": "3×3", "conv2": "8×8", "fc1": "28×28"}[layer]
    assert captions(at).count(f"{size} receptive field") == 2 and not at.exception
    if layer == "fc1":
        at.number_input(key="unit_first_fc1").set_value(484).run()
        assert "fc1[499]" in at.get("plotly_chart")[0].proto.spec


def test_a_missing_own_digit_gets_a_message(at):
    at.segmented_control(key="atk_section").set_value("Adversarial noise").run()
    at.radio(key="orig_mode").set_value("your digit").run()
    assert "No digit of yours yet" in at.info[0].value and not at.exception


def test_the_shared_models_kept_their_weights(at):
    """After every section above ran on the app's cached models, they still equal the checkpoints."""
    for name, (model, _) in common.shipped_models().items():
        fresh = torch.load(common.RUNS_DIR / name / "model.pt", weights_only=True)
        assert all(np.array_equal(fresh[k].numpy(), v.numpy()) for k, v in model.state_dict().items()), name
