"""AppTest: the Robustness lab's sections show measured numbers, respect the budget, and keep running on
bad choices; the shared models keep their weights."""

import json
import re

import numpy as np
import torch

import app_pages.loaders as common
from cnn_core import robust as R
from cnn_core.data import to_float

PAGE = "robust.py"  # the `at` fixture (conftest) runs it




def test_attacks_stay_within_the_budget(at, captions):
    assert "largest |δ| = 0.200 ≤ ε = 0.20" in captions(at)
    at.radio(key="rob_method").set_value("pgd")
    at.slider(key="rob_eps").set_value(0.3).run()
    assert "largest |δ| = 0.300 ≤ ε = 0.30" in captions(at) and "all pixels in [0.00, 1.00]" in captions(at)
    assert "6 of 6 now misclassified" in captions(at)  # PGD at ε = 0.3 breaks the baseline
    at.toggle(key="rob_targeted").set_value(True).run()
    assert re.search(r"\d of \d now classified as 0", captions(at)) and not at.exception
    assert at.radio(key="rob_method").options == [a.label for a in R.ATTACKS.values()]  # every registered attack
    at.radio(key="rob_method").set_value("deepfool").run()
    assert re.search(r"\d of \d now classified as 0 · largest \|δ\| = 0\.\d{3} ≤ ε = 0\.30", captions(at)), captions(at)
    assert at.toggle(key="rob_random").disabled and not at.slider(key="rob_steps").disabled  # the controls it reads


def test_a_drawn_digit_has_no_true_class_and_gets_a_message(at):
    at.session_state["own_digit"] = np.zeros((28, 28), dtype=np.float32)
    at.radio(key="rob_mode").set_value("your digit").run()
    assert "need the true class" in at.info[0].value and not at.exception
    at.radio(key="rob_mode").set_value("random").run()


def test_curves_come_from_the_stored_runs_or_are_computed_live(at, captions):
    at.segmented_control(key="rob_section").set_value("Robustness curves").run()
    at.multiselect(key="rob_runs").set_value(["baseline"]).run()
    assert "baseline: first 1,000 test digits, PGD-20" in captions(at)  # checkpoints/baseline/robustness.json
    at.select_slider(key="rob_live_n").set_value(100)
    at.slider(key="rob_live_steps").set_value(2)
    next(b for b in at.button if b.key == "rob_live_go").click().run()
    assert "baseline: first 100 test digits, PGD-2" in captions(at)
    names = [t["name"] for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]]
    assert names == [f"baseline — {a.label}" for a in R.ATTACKS.values()]  # a line for every registered attack


def test_universal_perturbation_reports_its_fooling_rate(at):
    at.segmented_control(key="rob_section").set_value("Universal perturbation").run()
    at.slider(key="uni_steps").set_value(10).run()
    metrics = {m.label: m.value for m in at.metric}
    rate = float(metrics["Fooling rate (1,000 held-out test digits)"].rstrip("%"))
    clean, attacked = (float(metrics[k].rstrip("%")) for k in ("Accuracy without δ", "Accuracy with δ"))
    assert 0 <= rate <= 100 and attacked < clean


def test_defences_measure_an_adaptive_attack(at):
    at.segmented_control(key="rob_section").set_value("Defences").run()
    at.slider(key="def_eps").set_value(0.1).run()
    metrics = {m.label: float(m.value.rstrip("%")) for m in at.metric}
    assert metrics["PGD, defence on"] > metrics["PGD"]  # a median filter helps an attacker who ignores it …
    assert metrics["adaptive attacker"] < metrics["PGD, defence on"]  # … less so one who attacks through it
    assert any("BPDA" in m.value for m in at.markdown)


def _chart_texts(at, key_prefix: str) -> list[list[str]]:
    """Annotation texts of each plotly chart whose element id carries ``key_prefix``, in page order."""
    return [[a["text"] for a in json.loads(c.proto.spec)["layout"].get("annotations", [])]
            for c in at.get("plotly_chart") if key_prefix in c.proto.id]


def test_attributions_under_attack_show_the_predictions_before_and_after(at):
    at.segmented_control(key="rob_section").set_value("Attacks").run()
    at.selectbox(key="rob_model_b").set_value("none").run()  # model A alone: the baseline
    at.radio(key="rob_mode").set_value("by index").run()
    at.text_input(key="rob_idx").set_value("0, 1").run()
    at.toggle(key="rob_targeted").set_value(False)  # an earlier test turned it on: bound to the URL, it stays on
    at.radio(key="rob_method").set_value("pgd")
    at.slider(key="rob_eps").set_value(0.3).run()
    assert not at.exception
    model = common.shipped_models()["baseline"][0]
    data = common.mnist()
    x, y = to_float(data.test_images[:2]), data.test_labels[:2]
    x_adv = R.attack(model, x, y, "pgd", 0.3, R.AttackSettings(steps=20, step_size=None, random_start=True))  # as the page
    att = R.attributions_under_attack(model, x, x_adv)
    assert (att["pred_adv"] != att["pred_clean"]).all()
    (chart,) = _chart_texts(at, "rob_attr")  # one figure: a row per digit, each under its line
    lines = [t for t in chart if t.startswith("<b>#")]
    assert len(lines) == 2 and chart.count("<b>saliency</b>") == chart.count("<b>Grad-CAM (conv2)</b>") == 2
    for i in range(2):
        before = f"{int(att['pred_clean'][i])} ({100 * att['conf_clean'][i]:.0f}%)"
        after = f"{int(att['pred_adv'][i])} ({100 * att['conf_adv'][i]:.0f}%)"
        assert lines[i] == (f"<b>#{i} (true {int(y[i])})</b>: clean → predicted <b>{before}</b> · adversarial → "
                            f"predicted <b>{after}</b>")
        assert {before, after, f"for {int(att['pred_clean'][i])}", f"for {int(att['pred_adv'][i])}"} <= set(chart)


def _flip_expected(name: str, images, labels, steps: int, max_eps: float):
    model = common.adv_trained_model()[0] if name == common.ADV_TRAINED else common.shipped_models()[name][0]
    x = torch.from_numpy(images)[:, None]
    y = R.reference_labels(model, x, labels)
    eps, x_adv = R.smallest_flipping_eps(model, x, y, max_eps=max_eps, steps=steps)
    with torch.no_grad():
        conf, pred = model(x_adv).softmax(1).max(1)
    limit = R.flip_search_limit(max_eps)
    return [(R.describe_flip_eps(float(e), limit), f"{int(t)} → {int(p)} ({100 * c:.0f}%)")
            for e, t, p, c in zip(eps, y, pred, conf, strict=True)], eps


def test_smallest_eps_shows_what_cnn_core_computes(at):
    """Test digits 0 and 1 (by index, from the picker), baseline vs adv-trained, PGD-5: the table and the sentences
    are smallest_flipping_eps's numbers; then the user's digit, and a search range too small to flip anything."""
    at.segmented_control(key="rob_section").set_value("Smallest ε").run()
    at.selectbox(key="rob_model_b").set_value(common.ADV_TRAINED)  # the page's chooser: A baseline, B adv-trained
    at.slider(key="flip_steps").set_value(5).run()
    assert not at.exception and at.selectbox(key="rob_model_a").value == "baseline"
    data = common.mnist()
    images, labels = data.test_images[:2].numpy().astype(np.float32) / 255, data.test_labels[:2].tolist()
    table = at.dataframe[0].value
    assert table["digit"].tolist() == ["#0 (true 7)", "#1 (true 2)"]
    eps = {}
    for name in ("baseline", common.ADV_TRAINED):
        # the page's computation repeated on the same cached model and batch: same kernels, the same strings
        rows, eps[name] = _flip_expected(name, images, labels, 5, 128 / 255)
        assert list(zip(table[f"{name}: smallest ε"], table[f"{name}: prediction there"], strict=True)) == rows
        assert all(e.endswith("/255") and not e.startswith("0 ") for e, _ in rows)  # flipped, at a real budget
    lines = [m.value for m in at.markdown if m.value.startswith("**#")]
    assert lines == [f"**{d}**: " + R.flip_verdict("Baseline (no BatchNorm)", float(eps["baseline"][i]),
                                                   "Adversarially trained", float(eps[common.ADV_TRAINED][i]), 128 / 255)
                     for i, d in enumerate(["#0 (true 7)", "#1 (true 2)"])]
    assert all("Adversarially trained needs" in line for line in lines)  # adversarial training buys budget

    at.session_state["own_digit"] = images[1]  # "your digit": a 2 without a true class
    at.radio(key="flip_mode").set_value("your digit").run()
    table = at.dataframe[0].value
    assert table["digit"].tolist() == ["your digit"] and not at.exception
    for name in ("baseline", common.ADV_TRAINED):
        rows, _ = _flip_expected(name, images[1:], [None], 5, 128 / 255)
        assert list(zip(table[f"{name}: smallest ε"], table[f"{name}: prediction there"], strict=True)) == rows

    at.select_slider(key="flip_max").set_value(26).run()  # 0.10: below what either model needs for this 2
    table = at.dataframe[0].value
    assert table[f"{common.ADV_TRAINED}: smallest ε"].tolist() == ["not flipped up to ε = 0.102 (26/255)"]
    assert table["baseline: smallest ε"].tolist() == ["not flipped up to ε = 0.102 (26/255)"]
    assert any(m.value == "**your digit**: Neither model was flipped up to ε = 26/255." for m in at.markdown)
    at.radio(key="flip_mode").set_value("random").run()


def test_the_shared_models_kept_their_weights(at):
    cached = [m for m, _ in common.shipped_models().values()]
    names = [*common.shipped_models(), "baseline", "batchnorm", common.ADV_TRAINED]
    cached += [common.saved_model(n, common.run_store().mtime(n))[0] for n in names[len(cached):]]  # the chooser's
    for name, model in zip(names, cached, strict=True):
        fresh = torch.load(common.RUNS_DIR / name / "model.pt", weights_only=True)
        assert all(torch.equal(fresh[k], v) for k, v in model.state_dict().items()), name


def test_stored_views_of_a_shipped_run_are_shown_without_attacking(at, monkeypatch):
    """Dragging ε over a shipped model: the defences and the universal perturbation come from the run's stored views
    (python -m cnn_core views), exactly, with no attack run (ε values no other test computes, so no cache hit)."""
    from cnn_core import views as V

    def no_attack(*args, **kwargs):
        raise AssertionError("a stored view was computed again")

    monkeypatch.setattr(V, "defence_view", no_attack)
    monkeypatch.setattr(V, "universal_view", no_attack)
    store = common.run_store()
    at.selectbox(key="rob_model_b").set_value("none").run()  # model A: the baseline
    at.segmented_control(key="rob_section").set_value("Defences").run()
    at.slider(key="def_eps").set_value(0.27).run()
    stored = V.stored_defence(store, "baseline", "median 3×3", 0.27)
    assert not at.exception and {m.label: m.value for m in at.metric} == {k: f"{100 * v:.1f}%" for k, v in stored.items()}
    at.segmented_control(key="rob_section").set_value("Universal perturbation").run()
    at.slider(key="uni_steps").set_value(V.UNIVERSAL_STEPS)
    at.slider(key="uni_eps").set_value(0.33).run()
    rate = V.stored_universal(store, "baseline", 0.33).rate
    assert not at.exception and at.metric[0].value == f"{100 * rate['fooling_rate']:.1f}%"
