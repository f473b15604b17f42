"""AppTest: the Train page's validation, a live BN-vs-no-BN pair, the cap and Stop; the Results page."""

import json
import re
import time
from dataclasses import replace
from pathlib import Path

from streamlit.testing.v1 import AppTest

from app_pages.loaders import registry
from cnn_core.store import RunStore
from cnn_core.training import FAST_99

TRAIN = str(Path(__file__).resolve().parents[2] / "app_pages" / "train.py")
RESULTS = str(Path(__file__).resolve().parents[2] / "app_pages" / "results.py")


def _page(path):
    at = AppTest.from_file(path, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def _press(at, key):
    next(b for b in at.button if b.key == key).click().run()
    assert not at.exception, at.exception
    return at


def test_invalid_settings_get_a_message_and_start_nothing():
    at = _page(TRAIN)
    before = len(registry().runs())
    at.number_input(key="cfg_lr").set_value(0.0)
    _press(at, "train_pair")
    assert [e.value for e in at.error] == ["Not started: lr must be in (0, 10], got 0.0"]
    at.number_input(key="cfg_lr").set_value(1e-3)
    at.number_input(key="cfg_epochs").set_value(0)
    _press(at, "train_one")
    assert "epochs must be an integer in [1, 200], got 0" in at.error[0].value
    assert len(registry().runs()) == before


def _wait_for(at, condition, timeout=180):
    deadline = time.monotonic() + timeout
    while not condition(at):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
        at.run()
        assert not at.exception, at.exception
    return at


def test_pair_trains_live_and_ends_with_a_comparison(runs_dir):
    at = _page(TRAIN)
    promise = re.search(r"the pair trains in about \*\*(\d+) s\*\* on this machine", at.info[0].value)
    assert promise and 1 <= int(promise.group(1)) <= 600, at.info[0].value
    at.selectbox(key="cfg_subset").set_value(1000)
    at.number_input(key="cfg_epochs").set_value(1)
    _press(at, "train_pair")
    ids = at.session_state.followed
    assert len(ids) == 2 and at.query_params["runs"] == ",".join(ids)
    no_bn, bn = (registry().get(i) for i in ids)
    assert (no_bn.config.batchnorm, bn.config.batchnorm) == (False, True)
    _wait_for(at, lambda a: any(s.value == "Result" for s in a.subheader))
    table = at.dataframe[0].value
    assert list(table["BatchNorm"]) == [False, True] and list(table["parameters"]) == [799078, 800206]
    verdict = next(m.value for m in at.markdown if m.value.startswith("**BatchNorm"))
    assert "test accuracy" in verdict and "per epoch" in verdict
    assert (runs_dir / no_bn.name / "model.pt").exists() and (runs_dir / bn.name / "run.json").exists()

    # The same pair for seeds 1 and 2, then means and spreads over the three seeds.
    _press(at, "repeat_seeds")
    assert len(at.session_state.followed) == 6
    seeds = sorted((registry().get(i).config.seed, registry().get(i).config.batchnorm) for i in at.session_state.followed)
    assert seeds == [(s, bn) for s in (0, 1, 2) for bn in (False, True)]
    _wait_for(at, lambda a: any(m.value.startswith("**Over 3 seeds, BatchNorm") for m in a.markdown), timeout=300)
    assert list(at.dataframe[1].value["seeds"]) == ["0, 1, 2", "0, 1, 2"]
    at.session_state.followed = ids  # back to the first pair for the reload below

    # A reload (new session, same URL) reattaches to the runs.
    again = AppTest.from_file(TRAIN, default_timeout=120)
    again.query_params["runs"] = ",".join(ids)
    again.run()
    assert again.session_state.followed == ids and any(s.value == "Result" for s in again.subheader)


def test_adversarial_training_from_the_train_page(runs_dir):
    at = _page(TRAIN)
    at.selectbox(key="cfg_subset").set_value(1000)
    at.number_input(key="cfg_epochs").set_value(1)
    at.selectbox(key="cfg_adv").set_value("pgd")
    at.number_input(key="cfg_adv_eps").set_value(0.2)
    at.number_input(key="cfg_adv_steps").set_value(2)
    _press(at, "train_one")
    run = registry().get(at.session_state.followed[0])
    assert (run.config.adversarial, run.config.adv_epsilon, run.config.adv_steps) == ("pgd", 0.2, 2)
    _wait_for(at, lambda a: any(s.value == "Result" for s in a.subheader))
    assert run.status == "finished", run.error
    saved = RunStore(runs_dir).load_info(registry().saved_name(run.id))
    assert saved["config"]["adversarial"] == "pgd" and "--adversarial pgd --adv-epsilon 0.2" in saved["command"]


def test_beyond_the_cap_a_pair_is_queued_shows_its_place_and_can_be_cancelled():
    registry().stop_all()  # whatever earlier tests left running
    assert all(r.wait(30) for r in registry().runs())
    at = _page(TRAIN)
    at.selectbox(key="cfg_subset").set_value(0)
    at.number_input(key="cfg_epochs").set_value(50)
    _press(at, "train_one")
    (run_id,) = [i for i in at.session_state.followed if not registry().get(i).done]
    _press(at, "train_pair")
    queued = [i for i in at.session_state.followed if registry().get(i).status == "queued"]
    assert len(queued) == 2 and not at.error
    _wait_for(at, lambda a: registry().get(run_id).progress.get("eta_s"))
    bars = [p.text for p in at.get("progress")]
    assert sum(re.fullmatch(r"queued: next in the queue \(this server trains 2 at a time\) · starts in about \d+ s", t)
               is not None for t in bars) == 2, bars
    _press(at, f"stop_{queued[0]}")  # Cancel
    assert [registry().get(i).status for i in queued] == ["cancelled", "cancelled"]
    _press(at, f"stop_{run_id}")
    assert registry().get(run_id).wait(30) and registry().get(run_id).status == "stopped"


def _stop_after_first_validation(at, keep: bool):
    at.selectbox(key="cfg_subset").set_value(5000)
    at.number_input(key="cfg_epochs").set_value(20)
    at.checkbox(key="cfg_keep_stopped").set_value(keep)
    _press(at, "train_one")
    run = registry().get(at.session_state.followed[0])
    _wait_for(at, lambda a: run.snapshot()["vals"])
    _press(at, f"stop_{run.id}")
    assert run.wait(10) and run.status == "stopped"
    return run


def test_a_stopped_run_is_kept_or_discarded_as_chosen_and_opens_on_results(runs_dir):
    registry().stop_all()
    at = _page(TRAIN)
    kept = _stop_after_first_validation(at, keep=True)
    _wait_for(at, lambda a: any("— stopped: its curves and best weights so far" in c.value for c in a.caption))
    name = registry().saved_name(kept.id)
    assert RunStore(runs_dir).load_info(name)["status"] == "stopped"
    at = _page(TRAIN)
    dropped = _stop_after_first_validation(at, keep=False)
    _wait_for(at, lambda a: any(c.value == f"`{dropped.name}` was stopped and discarded, as chosen (not saved)."
                                for c in a.caption))
    assert registry().saved_name(dropped.id) is None and not (runs_dir / dropped.name).exists()

    results = _page(RESULTS)
    results.selectbox(key="results_run").set_value(name).run()
    assert not results.exception, results.exception
    assert results.warning[0].value.startswith(f"This run was stopped at step {kept.progress['step']:,}")
    tested = float(next(m.value for m in results.metric if m.label == "Test accuracy").rstrip("%"))
    assert tested > 50  # its best weights, evaluated on the test set when opened


def test_a_diverged_pair_gets_no_verdict(runs_dir):
    registry().stop_all()
    at = _page(TRAIN)
    at.selectbox(key="cfg_subset").set_value(1000)
    at.number_input(key="cfg_epochs").set_value(1)
    at.number_input(key="cfg_lr").set_value(10.0)
    _press(at, "train_pair")
    _wait_for(at, lambda a: any(s.value == "Result" for s in a.subheader))
    verdict = next(m.value for m in at.markdown if m.value.startswith("**No verdict"))
    assert "run diverged (final training loss" in verdict and "try a smaller learning rate" in verdict


def test_compare_trains_one_run_per_value_and_ends_with_a_table_and_a_sentence(runs_dir):
    registry().stop_all()
    at = _page(TRAIN)
    at.selectbox(key="cfg_subset").set_value(1000)
    at.number_input(key="cfg_epochs").set_value(1)
    at.selectbox(key="cfg_sweep_field").set_value("optimizer")
    at.text_input(key="cfg_sweep_values").set_value("sgd, momentum, adam")
    _press(at, "train_sweep")
    runs = [registry().get(i) for i in at.session_state.followed]
    assert [r.config.optimizer for r in runs] == ["sgd", "momentum", "adam"]
    assert [r.status == "queued" for r in runs] == [False, False, True]  # two at a time, the third waits its turn
    _wait_for(at, lambda a: any(s.value == "Result" for s in a.subheader), timeout=300)
    table = at.dataframe[0].value
    assert list(table["optimizer"]) == ["sgd", "momentum", "adam"] and list(table["run"]) == [r.name for r in runs]
    assert all(table["peak MiB / step"] > 0)
    sentence = next(m.value for m in at.markdown if m.value.startswith(("**Test accuracy, best first:", "**Only", "**No verdict")))
    assert "adam" in sentence and sentence.endswith("within the run-to-run spread.**")
    assert {registry().saved_name(r.id) for r in runs} <= {p.name for p in runs_dir.iterdir()}

    at.text_input(key="cfg_sweep_values").set_value("sgd, lbfgs")
    _press(at, "train_sweep")
    assert at.error[0].value == "Not started: optimizer must be one of sgd, momentum, rmsprop, adam, got 'lbfgs'"


def test_results_page_shows_a_run_compares_and_deletes(runs_dir, tiny_run):
    RunStore(runs_dir).save(tiny_run, "to-delete", overwrite=True)
    at = _page(RESULTS)
    assert at.selectbox(key="results_run").value == "baseline"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"].startswith("99.") and metrics["Best epoch (by validation)"].endswith("of 15")
    wrong = next(m.value for m in at.markdown if "of 10,000 test digits are misclassified" in m.value)
    n_wrong = int(wrong.split("**")[1])
    # the shown 2 decimals are whole digits of 10,000; round() absorbs the float64 error (~1e-12) of (1 − p) · 10000
    assert n_wrong == round((1 - float(metrics["Test accuracy"].rstrip("%")) / 100) * 10000)
    compare = at.dataframe[1].value
    assert list(compare["run"]) == ["baseline", "batchnorm"]
    downloads = at.get("download_button")
    (report,) = [d for d in downloads if d.proto.label != "Data (CSV)"]  # the assignment report of the pair compared
    assert len(downloads) - 1 == len(at.get("plotly_chart"))  # and each chart's numbers
    assert report.proto.label == "Assignment report: baseline and batchnorm (HTML)" and not report.proto.disabled
    assert "baseline" not in at.selectbox(key="delete_run").options  # shipped runs are protected
    at.selectbox(key="delete_run").set_value("to-delete").run()
    delete = next(b for b in at.button if b.label == "Delete")
    assert delete.disabled  # needs the confirmation first
    at.checkbox(key="delete_confirm").check().run()
    next(b for b in at.button if b.label == "Delete").click().run()
    assert not at.exception
    assert "to-delete" not in at.selectbox(key="results_run").options and not (runs_dir / "to-delete").exists()


def test_99_fast_starts_the_preset_whatever_the_form_says():
    registry().stop_all()
    at = _page(TRAIN)
    at.selectbox(key="cfg_subset").set_value(1000)  # ignored by the preset
    _press(at, "train_fast")
    run = registry().get(at.session_state.followed[0])
    assert run.config == replace(FAST_99, device="auto") and run.name.startswith("99-fast-")
    assert (run.config.train_subset, run.config.epochs, run.config.batch_size, run.config.schedule) == (0, 3, 256, "onecycle")
    registry().stop(run.id)
    assert run.wait(30)


def test_live_conv1_filters_and_feature_maps_follow_a_training_run():
    registry().stop_all()
    assert all(r.wait(30) for r in registry().runs())
    at = _page(TRAIN)
    at.selectbox(key="cfg_subset").set_value(0)
    at.number_input(key="cfg_epochs").set_value(50)  # still training while the test looks
    _press(at, "train_pair")
    no_bn, bn = (registry().get(i) for i in at.session_state.followed)

    def live_titles(a):
        specs = [json.loads(c.proto.spec) for c in a.get("plotly_chart")]
        return [s["layout"]["title"]["text"] for s in specs if "title" in s["layout"]]

    _wait_for(at, lambda a: any(t.startswith("conv1 filters at step") for t in live_titles(a)))
    assert any(s.value == "conv1 as it trains" for s in at.subheader)
    first = next(int(t.split()[-1].replace(",", "")) for t in live_titles(at) if t.startswith("conv1 filters at step"))
    assert first >= 8 and first % 8 == 0  # the copy the run takes every 8 steps
    assert "test digit #0 through them (conv1 → ReLU)" in live_titles(at)
    live = next(c.value for c in at.caption if c.value.startswith("`"))
    assert live.startswith(f"`{no_bn.name}`, updated every 2 s while it trains") and "before bn1" not in live
    _wait_for(at, lambda a: f"conv1 filters at step {first:,}" not in live_titles(a))  # it moves on as the run trains
    at.selectbox(key=f"live_filters_{no_bn.id}-{bn.id}").set_value(bn.id).run()  # the other run of the pair
    live = next(c.value for c in at.caption if c.value.startswith("`"))
    assert live.startswith(f"`{bn.name}`") and "For a BatchNorm run these maps are before bn1." in live
    registry().stop_all()
    assert no_bn.wait(30) and bn.wait(30)
