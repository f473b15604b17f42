"""AppTest: one model chooser on every page that shows a model — any saved run, a run still training (a copy of its
best weights), both side by side; the choice follows the user and is in the URL; a run that is gone gets a message."""

import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from app_pages.loaders import registry
from cnn_core.store import RunStore

REPO = Path(__file__).resolve().parents[2]
PAGES = {"overview.py": "overview_model", "inside.py": "inside_model", "attacks.py": "atk_model",
         "digit.py": "digit_model", "convolution.py": "conv_model", "robust.py": "rob_model"}


@pytest.fixture(scope="module")
def mine(runs_dir, cli):
    """A tiny run trained with the command line into the app's runs folder."""
    out = cli("--runs-dir", str(runs_dir), "train", "--name", "mine", "--train-subset", "256", "--epochs", "1",
              "--val-points", "1", "--no-progress", "--overwrite")
    assert out.returncode == 0, out.stderr
    return RunStore(runs_dir).load_info("mine")


def _open(page: str, **params) -> AppTest:
    at = AppTest.from_file(str(REPO / "app_pages" / page), default_timeout=300)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def _text(at) -> str:
    return " ".join(m.value for m in [*at.markdown, *at.caption, *at.warning])


@pytest.mark.parametrize("page", list(PAGES))
def test_a_run_trained_here_can_be_chosen_on_every_page(mine, page):
    key = PAGES[page]
    label = f"mine ({100 * mine['results']['accuracy']:.2f}%)"
    at = _open(page, a="mine")
    chooser = at.selectbox(key=f"{key}_a")
    assert chooser.value == "mine" and label in chooser.options
    assert at.query_params["a"] == "mine"
    if page != "convolution.py":  # one model there
        assert at.selectbox(key=f"{key}_b").value == "batchnorm" and at.query_params["b"] == "batchnorm"
        assert label in _text(at) or page in ("overview.py", "digit.py")  # columns or blocks labelled when two
    if page == "overview.py":
        assert f"**{100 * mine['results']['accuracy']:.2f}%** on all 10,000 test digits" in _text(at)


def test_the_default_is_baseline_beside_batchnorm_and_none_leaves_one():
    at = _open("inside.py")
    assert (at.selectbox(key="inside_model_a").value, at.selectbox(key="inside_model_b").value) == ("baseline", "batchnorm")
    assert [c.key for c in at.get("plotly_chart")] == ["occ_a", "occ_b", "occ_strip"]
    at.selectbox(key="inside_model_b").set_value("none").run()
    assert not at.exception and [c.key for c in at.get("plotly_chart")] == ["occ_a", "occ_strip"]
    assert at.query_params["b"] == "none"


def test_the_choice_follows_the_user_from_page_to_page(mine):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300).run()
    at.selectbox(key="overview_model_a").set_value("mine").run()
    at.selectbox(key="overview_model_b").set_value("adv-trained").run()
    for page, key in PAGES.items():
        at.switch_page(str(REPO / "app_pages" / page)).run()
        assert not at.exception, at.exception
        assert at.selectbox(key=f"{key}_a").value == "mine"
        if page != "convolution.py":
            assert at.selectbox(key=f"{key}_b").value == "adv-trained"


def test_a_run_that_is_gone_gets_a_message_and_the_page_still_works():
    at = _open("attacks.py", a="deleted-long-ago", b="live:0000dead")
    warnings = [w.value for w in at.warning]
    assert any("Model A: run `deleted-long-ago` is not available here" in w and "showing Baseline" in w for w in warnings)
    assert any("Model B: run `live:0000dead` is not available here" in w for w in warnings)
    assert at.selectbox(key="atk_model_a").value == "baseline" and at.get("plotly_chart")


def test_a_run_still_training_is_a_copy_of_its_best_weights_that_follows_it(runs_dir, tiny_config):
    (run,) = registry().start([tiny_config(train_subset=0, epochs=50, val_points=1000)])
    try:
        while run.best_weights() is None:
            assert not run.done, run.error
            time.sleep(0.05)
        at = _open("overview.py", a=f"live:{run.id}")
        label = at.selectbox(key="overview_model_a").format_func(f"live:{run.id}")
        assert label.startswith(f"{run.name} — training, best so far (step ")
        step, best = run.best_weights()
        from app_pages.chooser import _live_model

        copy = _live_model(run.id, step, run.config, best)
        assert all(torch.equal(v, best[k]) for k, v in copy.state_dict().items())  # loaded copies: exact
        assert all(not p.requires_grad for p in copy.parameters()) and not copy.training
        assert all(p.data_ptr() != q.data_ptr() for p in copy.parameters() for q in run.model.parameters())
    finally:
        registry().stop(run.id)
        assert run.wait(30)
    deadline = time.monotonic() + 30
    while not registry().settled(run.id):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    at = _open("overview.py", a=f"live:{run.id}")  # saved when stopped: from now on chosen by its saved name
    assert at.selectbox(key="overview_model_a").value == registry().saved_name(run.id) and not at.warning


def test_cached_models_keep_their_weights_after_attacks(mine, runs_dir):
    at = _open("attacks.py", a="mine", b="baseline")
    at.segmented_control(key="atk_section").set_value("Class models").run()
    at.selectbox(key="atk_model_b").set_value("adv-trained").run()
    assert not at.exception
    from app_pages.loaders import saved_model

    store = RunStore(runs_dir)
    for name in ("mine", "baseline", "adv-trained"):
        cached, _ = saved_model(name, (store.path(name) / "model.pt").stat().st_mtime)
        fresh, _ = store.load_model(name)
        assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in cached.state_dict().items()), name  # bit-identical
