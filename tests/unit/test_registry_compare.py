import time

import numpy as np
import pytest
import torch

from cnn_core.compare import (
    DIVERGED_MARGIN,
    GUESS_LOSS,
    comparison_table,
    misclassified,
    outcome,
    steps_to_accuracy,
    summary_row,
)
from cnn_core.plots import RUN_DASH, run_colors, smooth, thin, training_curves_figure
from cnn_core.registry import RunRegistry, TooManyRuns
from cnn_core.store import RunStore
from cnn_core.training import estimate_seconds
from tests.unit.records import diverged, snap


def test_pair_differs_only_in_batchnorm_and_is_saved(mnist_1k, tmp_path, tiny_config):
    reg = RunRegistry(lambda: mnist_1k, RunStore(tmp_path), max_active=2)
    no_bn, bn = reg.start_pair(tiny_config(epochs=1))
    assert no_bn.wait(120) and bn.wait(120)
    a, b = no_bn.snapshot()["config"], bn.snapshot()["config"]
    assert (a.pop("batchnorm"), b.pop("batchnorm")) == (False, True) and a == b
    assert no_bn.status == bn.status == "finished"
    saved = {reg.saved_name(no_bn.id), reg.saved_name(bn.id)}
    assert saved == {no_bn.name, bn.name} and {r["name"] for r in RunStore(tmp_path).list_runs()} == saved


def _wait_until(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_beyond_the_cap_groups_queue_in_order_start_whole_and_can_be_cancelled(mnist_1k, tmp_path, tiny_config):
    reg = RunRegistry(lambda: mnist_1k, RunStore(tmp_path), max_active=2)
    (first,) = reg.start([tiny_config(train_subset=0, epochs=50)], keep_stopped=False)
    pair = reg.start_pair(tiny_config(epochs=1))  # needs 2 slots: waits although one is free
    (single,) = reg.start([tiny_config(epochs=1)])  # fits in the free slot, but never jumps ahead of the pair
    third = reg.start_pair(tiny_config(epochs=1))
    assert [r.status for r in (*pair, single, *third)] == ["queued"] * 5 and reg.active() == [first]
    assert [reg.waiting(r.id)["place"] for r in (*pair, single, *third)] == [1, 1, 2, 3, 3]
    reg.stop(third[1].id)  # cancelling one run of a queued pair cancels the pair
    assert [r.status for r in third] == ["cancelled", "cancelled"] and reg.waiting(third[0].id) is None
    assert all(reg.settled(r.id) for r in third) and not reg.settled(first.id)
    reg.stop(first.id)
    assert first.wait(30) and first.status == "stopped"
    assert reg.saved_name(first.id) is None and RunStore(tmp_path).list_runs() == []  # discarded, as asked
    _wait_until(lambda: all(r.status != "queued" for r in pair))  # the pair starts as soon as the first ends
    assert single.status == "queued"
    assert all(r.wait(120) for r in pair)
    assert single.wait(120) and single.status == "finished" and third[0].status == "cancelled"
    assert {reg.saved_name(r.id) for r in (*pair, single)} == {r["name"] for r in RunStore(tmp_path).list_runs()}


def test_the_estimated_start_plays_the_queue_forward(mnist_1k, tmp_path, tiny_config):
    speed = {"train": 1000.0, "eval": 10000.0}
    reg = RunRegistry(lambda: mnist_1k, RunStore(tmp_path), max_active=2, speed=lambda: speed)
    runs = reg.start([tiny_config(train_subset=0, epochs=50)]) + reg.start([tiny_config(train_subset=0, epochs=50)])
    _wait_until(lambda: all(r.progress.get("eta_s") for r in runs))
    (a,) = reg.start([tiny_config()])
    b = reg.start_pair(tiny_config())
    etas = sorted(r.progress["eta_s"] for r in runs)  # read now: the queue is played from the same numbers
    wait_a, wait_b = reg.waiting(a.id), reg.waiting(b[0].id)
    # a starts when the first active run ends; the pair when a and the second active run have both ended.
    # rel=0.2: wall-clock estimates that move as the runs train between the reads, not float rounding.
    assert wait_a["starts_in_s"] == pytest.approx(etas[0], rel=0.2)
    duration_a = estimate_seconds(a.config, speed, 512)
    assert wait_b["starts_in_s"] == pytest.approx(max(etas[1], etas[0] + duration_a), rel=0.2)
    reg.stop_all()
    assert all(r.wait(30) for r in runs) and a.status == "cancelled"


def test_one_browser_session_holds_at_most_its_share_and_a_group_must_fit_the_cap(mnist_1k, tmp_path, tiny_config):
    reg = RunRegistry(lambda: mnist_1k, RunStore(tmp_path), max_active=2, max_per_owner=3)
    reg.start_pair(tiny_config(train_subset=0, epochs=50), owner="alice")
    reg.start([tiny_config()], owner="alice")
    with pytest.raises(TooManyRuns, match="you have 3 run\\(s\\) training or queued and asked for 1 more; one browser may hold 3"):
        reg.start([tiny_config()], owner="alice")
    (bobs,) = reg.start([tiny_config()], owner="bob")  # another browser still may
    with pytest.raises(TooManyRuns, match="3 runs cannot start together: this server trains 2 at a time"):
        reg.start([tiny_config()] * 3, owner="carol")
    reg.stop_all()
    assert all(r.wait(30) for r in reg.runs()) and bobs.status == "cancelled"


def test_a_stopped_run_is_saved_as_stopped_with_its_best_weights_so_far(mnist_1k, tmp_path, tiny_config):
    store = RunStore(tmp_path)
    reg = RunRegistry(lambda: mnist_1k, store, max_active=2)
    (run,) = reg.start([tiny_config(train_subset=2048, epochs=20)])  # keep_stopped is the default
    while len(run.snapshot()["vals"]) < 2:
        assert not run.done, run.error
        time.sleep(0.01)
    reg.stop(run.id)
    assert run.wait(30) and run.status == "stopped"
    _wait_until(lambda: reg.settled(run.id))  # saved by the worker right after it stops
    name = reg.saved_name(run.id)
    assert name is not None
    info = store.load_info(name)
    assert info["status"] == "stopped" and info["results"] is None and info["stopped_at_step"] == run.progress["step"]
    assert info["vals"] == run.snapshot()["vals"] and len(info["vals"]) >= 2
    model, _ = store.load_model(name)
    best = {k: v for k, v in run.best_state.items()}
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    assert store.load_history(name)["status"] == "stopped"
    assert [r["kind"] for r in store.load_metrics(name)].count("val") == len(info["vals"])


def test_cores_are_shared_out_among_active_runs(mnist_1k, tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr("cnn_core.registry.os.cpu_count", lambda: 2)
    reg = RunRegistry(lambda: mnist_1k, RunStore(tmp_path), max_active=2)

    def threads_once_running(run):
        while run.snapshot()["progress"].get("step", 0) < 2:
            assert not run.done, run.error
            time.sleep(0.01)
        return run.snapshot()["progress"]["threads"]

    (alone,) = reg.start([tiny_config(train_subset=0, epochs=50)])
    assert threads_once_running(alone) == 2
    (second,) = reg.start([tiny_config(train_subset=0, epochs=50)])
    assert threads_once_running(second) == 1
    step = alone.snapshot()["progress"]["step"]
    while alone.snapshot()["progress"]["step"] < step + 2:
        time.sleep(0.01)
    assert alone.snapshot()["progress"]["threads"] == 1  # rebalanced while it trains
    reg.stop_all()
    assert alone.wait(30) and second.wait(30)


def test_names_never_clash_with_saved_runs(mnist_1k, tmp_path, tiny_run, tiny_config):
    store = RunStore(tmp_path)
    store.save(tiny_run, "demo")
    reg = RunRegistry(lambda: mnist_1k, store)
    (run,) = reg.start([tiny_config(epochs=1)], names=["demo"])
    assert run.wait(120)
    assert reg.saved_name(run.id) == "demo-2"


def test_steps_to_98_and_the_table():
    record = snap("a", False, 0.99, 10, [0.97, 0.981, 0.99])
    assert steps_to_accuracy(record["epochs"]) == 200
    assert steps_to_accuracy(record["epochs"], 0.995) is None
    t = comparison_table([record, snap("b", True, 0.995, 12, [0.985])]).set_index("run")
    assert t.loc["a", "parameters"] == 799078 and t.loc["b", "parameters"] == 800206
    # 0.99 · 100 in float64: one rounding, default approx
    assert t.loc["b", "steps to 98% val"] == 100 and t.loc["a", "test accuracy (%)"] == pytest.approx(99.0)
    assert t.loc["a", "training digits"] == 54000


def test_curves_one_colour_per_run_batchnorm_by_line_style_decades_only():
    steps = [{"step": i, "loss": 1.0 / i} for i in range(1, 5001)]
    record = {**snap("a", False, 0.99, 10, [0.95, 0.99]), "steps": steps}
    bn = {**record, "name": "b", "config": {"batchnorm": True, "train_subset": 0, "val_fraction": 0.1}}
    fig = training_curves_figure([record, bn, {**record, "name": "a2"}])
    assert all(len(tr.x) <= 2000 for tr in fig.data) and fig.data[0].x[0] == 1
    assert {tr.type for tr in fig.data} == {"scatter"}  # SVG, not WebGL
    per_run = {}
    for tr in fig.data:
        per_run.setdefault(tr.legendgroup, set()).add((tr.line.color, tr.line.dash if tr.line.dash != "dot" else None))
    colors = {g: {c for c, _ in v} for g, v in per_run.items()}
    assert all(len(c) == 1 for c in colors.values()) and len({c.pop() for c in colors.values()}) == 3  # one colour each
    assert {d for _, d in per_run["b"]} - {None} == {RUN_DASH[True]} and {d for _, d in per_run["a"]} - {None} == {RUN_DASH[False]}
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.dtick == 1  # labels at decades only
    val_acc = [tr for tr in fig.data if tr.xaxis == "x2" and tr.legendgroup == "a" and tr.line.dash != "dot"][0]
    assert list(val_acc.x) == [100, 200] and list(val_acc.y) == [95, 99]
    assert run_colors(["x", "y", "x"]) == {"x": "#1f77b4", "y": "#d62728"}
    assert thin(10, 3) == slice(None, None, 4)


def test_a_shipped_run_has_one_colour_in_every_chart_and_other_runs_never_take_it_beside_it():
    shipped = run_colors(["baseline", "batchnorm", "adv-trained"])
    assert len(set(shipped.values())) == 3
    assert run_colors(["adv-trained", "mine", "baseline"]) == {
        "adv-trained": shipped["adv-trained"], "baseline": shipped["baseline"], "mine": "#9467bd"}  # 1st free: purple
    assert run_colors(["p", "q"]) == {"p": shipped["baseline"], "q": shipped["batchnorm"]}  # a Train pair: blue, red


def test_a_chart_with_nothing_yet_says_so():
    empty = training_curves_figure([{**snap("a", False, None, 10, []), "steps": []}])
    assert "No training step yet" in empty.layout.annotations[0].text and not empty.data
    early = training_curves_figure([{**snap("a", False, None, 10, []), "steps": [{"step": 1, "loss": 2.3}]}])
    assert any("first validation" in a.text for a in early.layout.annotations)
    queued = {**snap("q", True, None, 10, []), "steps": []}  # a run still queued beside one that trains
    assert len(training_curves_figure([queued, {**snap("a", False, None, 10, []), "steps": [{"step": 1, "loss": 2.3}]}]).data)


def test_centred_smoothing_does_not_lag():
    falling = [10.0 - i for i in range(9)]
    # means of 2 or 3 small integers in float64: exact
    assert smooth(falling, 3).tolist() == [9.5, 9, 8, 7, 6, 5, 4, 3, 2.5]  # exact in the middle, half a step off at the ends
    assert smooth([4.0], 25).tolist() == [4.0] and smooth([], 3).tolist() == []


def test_misclassified_orders_confident_mistakes_first():
    import numpy as np

    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]])
    labels = np.array([0, 0, 0, 1])
    idx, titles = misclassified(probs, labels)
    assert idx.tolist() == [1, 2] and titles[0] == "#1<br>true 0 → 1 (80%)"


def test_misclassified_ties_keep_test_set_order():
    """Equally confident mistakes are shown in test-set order, so the gallery is the same on every redraw."""
    probs = np.array([[0.1, 0.9], [0.4, 0.6]] * 20)  # 40 digits, all wrong (label 0), confidences 90%, 60%, 90%, ...
    idx, titles = misclassified(probs, np.zeros(40, dtype=int), limit=18)
    assert idx.tolist() == list(range(0, 36, 2))  # the 90% ones (even indices) in order; none of the 60% ones fit
    assert titles[:2] == ["#0<br>true 0 → 1 (90%)", "#2<br>true 0 → 1 (90%)"]
    idx, _ = misclassified(probs, np.zeros(40, dtype=int), limit=40)
    assert idx.tolist() == list(range(0, 40, 2)) + list(range(1, 40, 2))


def test_the_comparison_table_columns_a_user_reads():
    """Each column of the Result table: exactly 98% counts as reached, the test loss, the epoch count, the median
    training speed, peak memory from a live snapshot or from a saved run's timings, and the BatchNorm flag."""
    live = {**snap("live", False, 0.99, 10, [0.97, 0.98]), "peak_step_mib": 17.0}
    live["epochs"][0]["images_per_s_median"], live["epochs"][1]["images_per_s_median"] = 1000.0, 3000.0
    saved = {**snap("saved", True, 0.99, 10, [0.97, 0.99, 0.99]), "timings": {"peak_step_mib": 42.5}}
    t = comparison_table([live, saved]).set_index("run")
    assert list(t["BatchNorm"]) == [False, True]
    assert list(t["steps to 98% val"]) == [200, 200]  # 0.98 itself is "reached"
    # copied from the snapshots, and the median of 1000.0 and 3000.0: exact
    assert list(t["test loss"]) == [0.03, 0.03] and list(t["epochs"]) == [2, 3]
    assert list(t["peak MiB / step"]) == [17.0, 42.5]
    assert t.loc["live", "images/s (median)"] == 2000.0
    assert summary_row(saved)["images/s (median)"] is None  # runs saved before the speed was recorded: blank, not NaN
    assert summary_row(snap("x", True, 0.99, 10, []))["BatchNorm"] is True
    # Training digits follow the split: round(60,000 · f) validation digits, for any legal fraction.
    odd = snap("f", False, 0.99, 10, [0.99])
    odd["config"]["val_fraction"] = 0.49999
    assert summary_row(odd)["training digits"] == 30001


def test_outcome_judges_the_test_accuracy_and_diverges_only_above_the_margin():
    """The test accuracy, when there is one, decides "trained" / "did not learn" (not the last validation); a final
    training loss exactly at ln 10 + DIVERGED_MARGIN is not yet "diverged"."""
    assert outcome(snap("a", False, 0.5, 10, [0.1])) == "trained"
    assert outcome(snap("a", False, 0.1, 10, [0.5])) == "did not learn"
    assert outcome(diverged("a", False, GUESS_LOSS + DIVERGED_MARGIN, 0.5)) == "trained"


