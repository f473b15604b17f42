"""AppTest: the Robustness lab's sections show measured numbers, respect the budget, and keep running on
bad choices; the shared models keep their weights."""

import json
import re

import numpy as np
import torch

import app_pages.common as common

PAGE = "robust.py"  # the `at` fixture (conftest) runs it




def test_attacks_stay_within_the_budget(at, captions):
    assert "largest |δ| = 0.100 ≤ ε = 0.10" in captions(at)
    at.radio(key="rob_method").set_value("pgd")
    at.slider(key="rob_eps").set_value(0.3).run()
    assert "largest |δ| = 0.300 ≤ ε = 0.30" in captions(at) and "all pixels in [0.00, 1.00]" in captions(at)
    assert "6 of 6 now misclassified" in captions(at)  # PGD at ε = 0.3 breaks the baseline
    at.toggle(key="rob_targeted").set_value(True).run()
    assert re.search(r"\d of \d now classified as 0", captions(at)) and not at.exception


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
    assert names == ["baseline — PGD", "baseline — FGSM"]


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


def test_the_shared_models_kept_their_weights(at):
    for name, (model, _) in common.shipped_models().items():
        fresh = torch.load(common.RUNS_DIR / name / "model.pt", weights_only=True)
        assert all(torch.equal(fresh[k], v) for k, v in model.state_dict().items()), name
