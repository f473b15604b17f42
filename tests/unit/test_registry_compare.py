import time

import pytest
import torch

from cnn_core.compare import bn_verdict, comparison_table, misclassified, steps_to_accuracy
from cnn_core.plots import ema, epoch_figure, step_loss_figure, thin
from cnn_core.registry import RunRegistry, TooManyRuns
from cnn_core.store import RunStore


def test_pair_differs_only_in_batchnorm_and_is_saved(mnist, tmp_path, tiny_config):
    reg = RunRegistry(lambda: mnist, RunStore(tmp_path), max_active=2)
    no_bn, bn = reg.start_pair(tiny_config(epochs=1))
    assert no_bn.wait(120) and bn.wait(120)
    a, b = no_bn.snapshot()["config"], bn.snapshot()["config"]
    assert (a.pop("batchnorm"), b.pop("batchnorm")) == (False, True) and a == b
    assert no_bn.status == bn.status == "finished"
    saved = {reg.saved_name(no_bn.id), reg.saved_name(bn.id)}
    assert saved == {no_bn.name, bn.name} and {r["name"] for r in RunStore(tmp_path).list_runs()} == saved


def test_the_cap_refuses_whole_groups_and_frees_up_after_a_stop(mnist, tmp_path, tiny_config):
    reg = RunRegistry(lambda: mnist, RunStore(tmp_path), max_active=2)
    (first,) = reg.start([tiny_config(train_subset=0, epochs=50)], keep_stopped=False)
    with pytest.raises(TooManyRuns, match="1 run\\(s\\) already training; this server allows 2"):
        reg.start_pair(tiny_config())
    assert len(reg.runs()) == 1  # no half pair was started
    reg.stop(first.id)
    assert first.wait(30) and first.status == "stopped"
    assert reg.saved_name(first.id) is None and RunStore(tmp_path).list_runs() == []  # discarded, as asked
    pair = reg.start_pair(tiny_config(epochs=1))
    assert all(r.wait(120) for r in pair)


def test_a_stopped_run_is_saved_as_stopped_with_its_best_weights_so_far(mnist, tmp_path, tiny_config):
    store = RunStore(tmp_path)
    reg = RunRegistry(lambda: mnist, store, max_active=2)
    (run,) = reg.start([tiny_config(train_subset=2048, epochs=20)])  # keep_stopped is the default
    while len(run.snapshot()["vals"]) < 2:
        assert not run.done, run.error
        time.sleep(0.01)
    reg.stop(run.id)
    assert run.wait(30) and run.status == "stopped"
    deadline = time.monotonic() + 30
    while reg.saved_name(run.id) is None:  # saved by the worker right after it stops
        assert time.monotonic() < deadline
        time.sleep(0.01)
    name = reg.saved_name(run.id)
    info = store.load_info(name)
    assert info["status"] == "stopped" and info["results"] is None and info["stopped_at_step"] == run.progress["step"]
    assert info["vals"] == run.snapshot()["vals"] and len(info["vals"]) >= 2
    model, _ = store.load_model(name)
    best = {k: v for k, v in run.best_state.items()}
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    assert store.load_history(name)["status"] == "stopped"
    assert [r["kind"] for r in store.load_metrics(name)].count("val") == len(info["vals"])


def test_cores_are_shared_out_among_active_runs(mnist, tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr("cnn_core.registry.os.cpu_count", lambda: 2)
    reg = RunRegistry(lambda: mnist, RunStore(tmp_path), max_active=2)

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


def test_names_never_clash_with_saved_runs(mnist, tmp_path, tiny_run, tiny_config):
    store = RunStore(tmp_path)
    store.save(tiny_run, "demo")
    reg = RunRegistry(lambda: mnist, store)
    (run,) = reg.start([tiny_config(epochs=1)], names=["demo"])
    assert run.wait(120)
    assert reg.saved_name(run.id) == "demo-2"


def _snap(name, bn, acc, secs, val_accs, steps_per_epoch=100):
    return {"name": name, "config": {"batchnorm": bn, "train_subset": 0, "val_fraction": 0.1},
            "results": {"accuracy": acc, "loss": 0.03},
            "epochs": [{"epoch": i + 1, "step": (i + 1) * steps_per_epoch, "val_accuracy": v, "seconds": secs,
                        "val_loss": 1 - v, "train_loss": 0.5 - v / 2, "train_accuracy": v}
                       for i, v in enumerate(val_accs)]}


def test_steps_to_98_and_the_table():
    snap = _snap("a", False, 0.99, 10, [0.97, 0.981, 0.99])
    assert steps_to_accuracy(snap["epochs"]) == 200
    assert steps_to_accuracy(snap["epochs"], 0.995) is None
    t = comparison_table([snap, _snap("b", True, 0.995, 12, [0.985])]).set_index("run")
    assert t.loc["a", "parameters"] == 799078 and t.loc["b", "parameters"] == 800206
    assert t.loc["b", "steps to 98% val"] == 100 and t.loc["a", "test accuracy (%)"] == pytest.approx(99.0)
    assert t.loc["a", "training digits"] == 54000


def test_bn_verdict_reads_the_numbers():
    no_bn, bn = _snap("a", False, 0.9900, 10.0, [0.97, 0.985]), _snap("b", True, 0.9950, 12.0, [0.981, 0.99])
    assert bn_verdict(no_bn, bn) == ("BatchNorm improved test accuracy by 0.50 points (99.50% vs 99.00% without), "
                                     "and took 20% longer per epoch (12.0 s vs 10.0 s); "
                                     "it reached 98% validation accuracy after 100 steps vs 200.")
    same = _snap("c", True, 0.9905, 10.2, [0.9])
    assert bn_verdict(no_bn, same).startswith("BatchNorm left test accuracy about the same (99.05% vs 99.00%), "
                                              "and cost about the same time per epoch")
    assert "only the run without BatchNorm reached" in bn_verdict(no_bn, same)


def test_curves_are_thinned_smoothed_and_coloured():
    steps = [{"step": i, "loss": 1.0 / i} for i in range(1, 5001)]
    snap = {**_snap("a", False, 0.99, 10, [0.99]), "steps": steps}
    fig = step_loss_figure([snap, {**snap, "name": "b", "config": {"batchnorm": True, "train_subset": 0, "val_fraction": 0.1}}])
    assert all(len(tr.x) <= 2000 for tr in fig.data) and fig.data[0].x[0] == 1
    assert {tr.type for tr in fig.data} == {"scatter"}  # SVG, not WebGL
    assert fig.data[1].line.color != fig.data[3].line.color
    twins = step_loss_figure([snap, {**snap, "name": "a2"}])
    assert twins.data[1].line.color == twins.data[3].line.color and twins.data[1].line.dash != twins.data[3].line.dash
    assert ema([4.0, 4.0, 4.0]) == pytest.approx([4.0, 4.0, 4.0])  # debiased: no warm-up dip
    assert thin(10, 3) == slice(None, None, 4)
    assert len(epoch_figure([snap]).data) == 4


def test_misclassified_orders_confident_mistakes_first():
    import numpy as np

    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]])
    labels = np.array([0, 0, 0, 1])
    idx, titles = misclassified(probs, labels)
    assert idx.tolist() == [1, 2] and titles[0] == "#1: true 0 → 1 (80%)"
