"""The Robustness lab's views stored ahead in a run are exactly the views computed live, for every slider ε."""

from pathlib import Path

import numpy as np
import pytest

from cnn_core import views as V
from cnn_core.model import for_inference
from cnn_core.store import RunStore

REPO = Path(__file__).resolve().parents[2]


def test_stored_views_are_the_live_views_at_every_stored_eps_and_none_elsewhere(tmp_path, tiny_run, mnist, monkeypatch):
    monkeypatch.setattr(V, "SLIDER_EPSILONS", (0.0, 0.1))  # a small grid on few digits: the same code, in a second
    monkeypatch.setattr(V, "DEFENCE_DIGITS", 40)
    monkeypatch.setattr(V, "UNIVERSAL_TRAIN", 300)
    monkeypatch.setattr(V, "UNIVERSAL_TEST", 100)
    monkeypatch.setattr(V, "UNIVERSAL_STEPS", 3)
    store = RunStore(tmp_path)
    store.save(tiny_run, "mine")
    model = for_inference(store.load_model("mine")[0])
    said = []
    V.store_views(store, "mine", model, mnist, progress=said.append)
    assert said == [f"{d}, ε = {e}" for d in ("median 3×3", "bit depth 1 (threshold)") for e in ("0.00", "0.10")] + \
        ["universal δ, ε = 0.00", "universal δ, ε = 0.10"]
    for eps in (0.0, 0.1):
        for d in ("median 3×3", "bit depth 1 (threshold)"):
            assert V.stored_defence(store, "mine", d, eps) == V.defence_view(model, mnist, d, eps)
        stored, live = V.stored_universal(store, "mine", eps), V.universal_view(model, mnist, eps)
        assert (stored.delta == live.delta).all() and (stored.predicted == live.predicted).all()
        assert stored.rate == pytest.approx(live.rate, abs=1e-7)  # float32 rates stored as float64
    assert np.abs(V.stored_universal(store, "mine", 0.1).delta).max() == pytest.approx(0.1)
    assert V.stored_universal(store, "mine", 0.05) is None and V.stored_defence(store, "mine", "median 3×3", 0.05) is None
    assert V.stored_defence(store, "other", "median 3×3", 0.1) is None and V.stored_universal(store, "other", 0.1) is None


def test_the_shipped_runs_store_every_slider_eps_and_agree_with_a_live_view(mnist):
    """One ε checked live against each shipped file (stored on another CPU: a digit's outcome may flip on rounding)."""
    store = RunStore(REPO / "checkpoints")
    for name in ("baseline", "batchnorm", "adv-trained"):
        defences = store.read_extra(name, V.DEFENCES_FILE)
        assert {d: sorted(t) for d, t in defences.items()} == {d: [f"{e:.2f}" for e in V.SLIDER_EPSILONS]
                                                                for d in ("median 3×3", "bit depth 1 (threshold)")}
        assert list(store.read_arrays(name, V.UNIVERSAL_FILE)["epsilons"]) == list(V.SLIDER_EPSILONS)
    model = for_inference(store.load_model("baseline")[0])
    live = V.defence_view(model, mnist, "median 3×3", 0.15)
    assert V.stored_defence(store, "baseline", "median 3×3", 0.15) == pytest.approx(live, abs=2 / V.DEFENCE_DIGITS)
    stored, live = V.stored_universal(store, "baseline", 0.25), V.universal_view(model, mnist, 0.25)
    assert stored.rate == pytest.approx(live.rate, abs=3 / V.UNIVERSAL_TEST)
    assert (np.abs(stored.delta - live.delta) < 1e-4).mean() > 0.98 and np.abs(stored.delta).max() <= 0.25 + 1e-6
