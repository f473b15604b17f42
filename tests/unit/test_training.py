import dataclasses
import inspect
import math
import re
import threading
import time
import types

import pytest
import torch

import cnn_core.training as training
from cnn_core.data import stratified_split, to_float
from cnn_core.model import MnistCNN
from cnn_core.robust import AttackSettings, fgsm, pgd, robust_accuracy
from cnn_core.training import (
    ADVERSARIAL,
    CONVS,
    DEVICES,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    SNAPSHOT_PARAMS,
    Run,
    TrainConfig,
    conv_params,
    estimate_seconds,
    evaluate,
    measure_speed,
    measure_speeds,
    per_class_metrics,
    resolve_precision,
    run_name,
    snapshot_label,
    snapshot_steps,
    val_size,
    validation_steps,
)

# Each numeric field: what its message says is allowed, values just inside its range, values just outside it.
RANGES = {
    "lr": ("in (0, 10]", [1e-9, 10], [0, -1e-3, 10.001]),
    "momentum": ("in [0, 1)", [0, 0.999], [-0.001, 1.0]),
    "weight_decay": ("in [0, 1]", [0, 1], [-0.1, 1.001]),
    "batch_size": ("an integer in [1, 8192]", [1, 8192], [0, 8193, 2.5, True]),
    "epochs": ("an integer in [1, 200]", [1, 200], [0, 201, 1.5]),
    "seed": ("an integer in [0, 2^63)", [0, 2**63 - 1], [-1, 2**63, 1.5]),
    "val_fraction": ("in (0, 0.5]", [1e-6, 0.5], [0.0, 0.501, 0.9]),
    "train_subset": ("an integer ≥ 0 (0 = all)", [0, 60000], [-5, 1.5]),
    "adv_epsilon": ("in (0, 1]", [1e-6, 1], [0, 1.001]),
    "adv_steps": ("an integer in [1, 100]", [1, 100], [0, 101, 1.5]),
    "adv_mix": ("in (0, 1]", [1e-6, 1], [0, 1.001]),
    "val_points": ("an integer in [1, 1000]", [1, 1000], [0, 1001, 1.5]),
}
# Each field with a fixed set of values: the values, and what its message says is allowed.
CHOICES = {
    "optimizer": (OPTIMIZERS, "one of sgd, momentum, rmsprop, adam"),
    "schedule": (SCHEDULES, "one of constant, cosine, onecycle"),
    "device": (DEVICES, "one of auto, cpu, cuda, mps"),
    "adversarial": (ADVERSARIAL, "one of none, fgsm, pgd"),
    "precision": (PRECISIONS, "one of auto, fp32, bf16"),
    "conv": (CONVS, "one of builtin, unfold"),
    "batchnorm": ((True, False), "true or false"),
    "augment": ((True, False), "true or false"),
}


@pytest.mark.parametrize("field", RANGES)
def test_a_numeric_field_accepts_its_range_up_to_both_ends_and_names_it_when_outside(field):
    allowed, inside, outside = RANGES[field]
    for value in inside:
        config = TrainConfig(**{field: value})
        assert config.validate() is config
    for value in outside:
        with pytest.raises(ValueError) as error:
            TrainConfig(**{field: value}).validate()
        assert f"{field} must be" in str(error.value) and repr(value) in str(error.value)  # the field and the value


@pytest.mark.parametrize("field", CHOICES)
def test_a_choice_field_accepts_each_of_its_values_and_lists_them_when_given_another(field):
    values, allowed = CHOICES[field]
    for value in values:
        TrainConfig(**{field: value}).validate()
    for value in ("lbfgs", 1, None):
        with pytest.raises(ValueError) as error:
            TrainConfig(**{field: value}).validate()
        message = str(error.value)  # names the field, the value and every choice (the CLI and the form show it)
        assert f"{field} must be" in message and repr(value) in message and all(str(v).lower() in message for v in values)


def test_from_dict_rejects_unknown_fields():
    assert TrainConfig.from_dict({"lr": 0.1}).lr == 0.1
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_a_run_records_history_keeps_best_weights_and_evaluates_the_test_set(tiny_run, mnist):
    snap = tiny_run.snapshot()
    assert snap["status"] == "finished" and snap["error"] is None and snap["total_seconds"] > 0
    assert len(snap["steps"]) == math.ceil(512 / 64) * 2 == snap["progress"]["total_steps"]
    assert [e["epoch"] for e in snap["epochs"]] == [1, 2]
    for e in snap["epochs"]:
        assert 0 <= e["val_accuracy"] <= 1 and e["images_per_s"] > 0 and e["seconds"] >= e["train_seconds"] > 0
    best = max(snap["vals"], key=lambda v: v["val_accuracy"])  # the first of equals: only a better one replaces it
    assert snap["best"] == {"epoch": math.ceil(best["epoch"]), "step": best["step"], "val_accuracy": best["val_accuracy"]}
    r = snap["results"]
    assert r["n"] == 10000 and sum(map(sum, r["confusion"])) == 10000
    assert r["accuracy"] == pytest.approx(sum(r["confusion"][k][k] for k in range(10)) / 10000)  # int / int: exact
    assert r["top5_accuracy"] >= r["accuracy"] > 0.5  # 512 digits, 2 epochs: well above chance
    assert [c["support"] for c in r["per_class"]] == torch.bincount(mnist.test_labels).tolist()
    # The run's model holds the best weights, and they give exactly the reported test numbers.
    # a count of argmaxes (batches of 2,000 here, 500 in the run: no near-tie moves), then int / int: exact
    assert evaluate(tiny_run.model, mnist.test_images, mnist.test_labels)["accuracy"] == r["accuracy"]
    assert tiny_run.model.conv2.weight.is_contiguous()  # in the standard layout again (it trained channels_last)


def test_same_seed_gives_an_identical_loss_curve(mnist_1k, tiny_run, tiny_config):
    again = Run(tiny_config(), mnist_1k).run()
    assert [s["loss"] for s in again.steps] == [s["loss"] for s in tiny_run.steps]  # same kernels, same order
    other = Run(tiny_config(seed=2), mnist_1k).run()
    assert [s["loss"] for s in other.steps] != [s["loss"] for s in tiny_run.steps]


@pytest.mark.parametrize("optimizer, schedule", [("sgd", "onecycle"), ("momentum", "cosine"), ("rmsprop", "constant")])
def test_every_optimizer_and_schedule_trains(mnist_1k, optimizer, schedule, tiny_config):
    lr = {"sgd": 0.1, "momentum": 0.05, "rmsprop": 1e-3}[optimizer]
    run = Run(tiny_config(optimizer=optimizer, schedule=schedule, lr=lr, batchnorm=True, epochs=1), mnist_1k).run()
    assert run.status == "finished", run.error
    assert run.results["accuracy"] > 0.3
    lrs = [s["lr"] for s in run.steps]
    if schedule == "constant":
        assert set(lrs) == {lr}  # the base lr, never recomputed: exact
    else:
        # the schedules compute lr in float64 (~1e-17 off at its peak): 1e-12 is that with slack
        assert max(lrs) <= lr + 1e-12 and lrs[-1] < lr / 10  # annealed by the end


def test_augmentation_changes_training_but_not_evaluation(mnist_1k, tiny_run, tiny_config):
    run = Run(tiny_config(augment=True), mnist_1k).run()
    assert run.status == "finished" and run.results["accuracy"] > 0.5
    assert [s["loss"] for s in run.steps] != [s["loss"] for s in tiny_run.steps]
    assert Run(tiny_config(augment=True), mnist_1k).run().steps == run.steps  # still seeded


def test_unavailable_device_is_a_clear_error(mnist_1k, tiny_config):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device must be one available on this machine"):
        Run(tiny_config(device="cuda"), mnist_1k)


def test_stop_from_another_thread_stops_within_one_step(mnist_1k, tiny_config):
    run = Run(tiny_config(train_subset=0, epochs=50), mnist_1k).start()
    deadline = time.monotonic() + 60
    while run.snapshot()["progress"].get("step", 0) < 3:
        assert time.monotonic() < deadline and run.status != "failed", run.error
        time.sleep(0.01)
    run.stop()
    steps_when_asked = len(run.snapshot()["steps"])
    assert run.wait(timeout=30)
    snap = run.snapshot()
    assert snap["status"] == "stopped" and snap["results"] is None
    assert len(snap["steps"]) <= steps_when_asked + 1  # at most the step already under way


def test_snapshot_is_a_copy(tiny_run):
    snap = tiny_run.snapshot()
    snap["steps"].clear()
    snap["progress"]["step"] = -1
    assert len(tiny_run.steps) > 0 and tiny_run.progress["step"] > 0


def test_a_snapshot_holds_the_runs_own_values_under_their_names(tiny_run):
    """What the Train page polls, key for key."""
    r, snap = tiny_run, tiny_run.snapshot()
    assert {k: snap[k] for k in ("id", "name", "status", "precision", "progress", "results", "best", "error",
                                 "total_seconds", "steps", "vals", "epochs", "latest_conv1")} == \
        {"id": r.id, "name": "tiny", "status": "finished", "precision": "fp32", "progress": r.progress,
         "results": r.results, "best": r.best, "error": None, "total_seconds": r.total_seconds, "steps": r.steps,
         "vals": r.vals, "epochs": r.epochs, "latest_conv1": r.latest_conv1}
    # the same division by a power of 2: exact
    assert snap["config"] == dataclasses.asdict(r.config) and snap["peak_step_mib"] == r.peak_step_bytes / 2**20
    assert snap["filters"] == {"steps_per_epoch": 8, "snapshots": r.filters}
    assert len(snap) == 16


def test_a_new_run_is_pending_with_nothing_recorded_and_its_seeded_initial_weights(mnist_1k, tiny_config):
    config = tiny_config(seed=7, batchnorm=True)
    run = Run(config, mnist_1k)
    snap = run.snapshot()
    assert re.fullmatch("[0-9a-f]{8}", run.id) and run.name == run_name(config, run.id)
    assert {k: v for k, v in snap.items() if k not in ("id", "name", "config")} == {
        "status": "pending", "precision": "fp32", "progress": {}, "results": None, "error": None,
        "best": {"epoch": 0, "step": 0, "val_accuracy": -1.0}, "total_seconds": None, "peak_step_mib": None,
        "steps": [], "vals": [], "epochs": [], "filters": {"steps_per_epoch": None, "snapshots": {}},
        "latest_conv1": None}
    assert (run.best_weights(), run.started_at, run.done, run.device) == (None, None, False, torch.device("cpu"))
    expected = MnistCNN(True, generator=torch.Generator().manual_seed(7)).state_dict()
    # the same draws from the same seed (channels_last moves them, it does not change them): exact
    assert run.model.batchnorm and all(torch.equal(v, expected[k]) for k, v in run.model.state_dict().items())
    assert run.model.conv2.weight.is_contiguous(memory_format=torch.channels_last)  # conv1 has one channel: both
    assert type(Run(tiny_config(conv="unfold"), mnist_1k).model.conv1).__name__ == "UnfoldConv2d"
    assert Run(config, mnist_1k, name="mine").name == "mine" and run.threads is None
    assert Run(config, mnist_1k, threads=3).threads == 3
    assert Run(tiny_config(precision="auto"), mnist_1k).precision == resolve_precision("auto", torch.device("cpu"))


def test_a_failing_run_reports_instead_of_raising(mnist_1k, tiny_config):
    def explode(event, info):
        raise RuntimeError("boom in callback")

    run = Run(tiny_config(), mnist_1k, callback=explode).run()
    assert run.status == "failed" and "boom in callback" in run.error and run.total_seconds > 0
    # The page shows the last 4 frames (run → _train → _train_steps → _record → _emit → explode is 6 deep).
    assert run.error.startswith("Traceback") and run.error.count('\n  File "') == 4


def test_a_run_that_fails_before_training_starts_took_no_time(mnist_1k, tiny_config, monkeypatch):
    def broken(*args):
        raise ValueError("no split today")

    monkeypatch.setattr(training, "stratified_split", broken)
    run = Run(tiny_config(), mnist_1k).run()
    assert (run.status, run.total_seconds, run.started_at) == ("failed", 0.0, None) and "no split today" in run.error
    assert run.progress == {"phase": "failed"}


def test_a_runs_threads_are_a_number_or_asked_of_a_function_before_each_step(mnist_1k, tiny_config):
    asked = []

    def threads():
        asked.append(len(asked))
        return 2

    for setting in (2, threads):
        run = Run(tiny_config(epochs=1), mnist_1k, threads=setting).start()  # its own thread: the setting is per thread
        assert run.wait(120) and run.status == "finished", run.error
        assert run.progress["threads"] == 2
    assert len(asked) >= 8  # at least once per step (8 here)


def test_a_stopped_run_announces_stopped_then_ended(mnist_1k, tiny_config):
    events = []

    def on_event(event, info):
        events.append((event, info))
        if event == "step":
            run.stop()

    run = Run(tiny_config(), mnist_1k, callback=on_event)
    run.run()
    names = [e for e, _ in events]
    assert run.status == "stopped" and names == ["step"] * run.steps[-1]["step"] + ["stopped", "ended"]
    assert run.progress["phase"] == "stopped"
    assert events[-2:] == [("stopped", {"status": "stopped"}), ("ended", {"status": "stopped"})]


def test_a_finished_status_always_comes_with_its_numbers(mnist_1k, tiny_config):
    seen = []

    def on_event(event, info):  # runs in the worker; a UI polling now must see complete data
        if event == "finished":
            snap = run.snapshot()
            seen.append((snap["status"], snap["total_seconds"], snap["results"] is not None))

    run = Run(tiny_config(epochs=1), mnist_1k, callback=on_event)
    run.run()
    assert run.status == "finished", run.error
    assert seen and seen[0][0] == "finished" and seen[0][1] > 0 and seen[0][2]


class _Constant(torch.nn.Module):
    """Predicts class 0 for every input."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(len(x), 10)
        out[:, 0] = 1.0
        return out + 0 * self.w


def test_evaluate_against_hand_computed_numbers(mnist):
    labels = mnist.test_labels[:1000]
    r = evaluate(_Constant(), mnist.test_images[:1000], labels)
    zeros = int((labels == 0).sum())
    assert r["accuracy"] == zeros / 1000  # int / int in float64 both ways (recall, precision too): exact
    assert [row[0] for row in r["confusion"]] == torch.bincount(labels, minlength=10).tolist()
    assert r["per_class"][0]["recall"] == 1.0 and r["per_class"][0]["precision"] == zeros / 1000
    # float32 sum of 1,000 losses divided in float64 vs one float32 mean: ~log2(1000) roundings of 6e-8 < 1e-6
    expected_loss = torch.nn.functional.cross_entropy(torch.eye(10)[torch.zeros(1000, dtype=torch.long)], labels)
    assert r["loss"] == pytest.approx(expected_loss.item(), rel=1e-6)


class _Table(torch.nn.Module):
    """Logits looked up by the digit's id, written in its first pixel; records whether it ran in eval mode."""

    def __init__(self, rankings):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.logits = torch.stack([torch.zeros(10).index_put_((torch.tensor(r),), torch.arange(10.0, 10 - len(r), -1))
                                   for r in rankings])
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.logits[(x[:, 0, 0, 0] * 255).round().long()] + 0 * self.w


@pytest.mark.numeric
def test_evaluate_counts_top1_top5_and_the_confusion_batch_by_batch_in_eval_mode():
    # Five digits, labels 0 1 2 3 9; each row ranks classes best first: right; 2nd; right; 6th (not top 5); 5th.
    model = _Table([[0], [7, 1], [2], [5, 0, 1, 2, 4, 3], [4, 0, 1, 2, 9]])
    images = torch.arange(5, dtype=torch.uint8)[:, None, None].expand(5, 28, 28).contiguous()
    labels, done = torch.tensor([0, 1, 2, 3, 9]), []
    r = evaluate(model.train(), images, labels, batch_size=2, on_batch=done.append)
    assert done == [2, 4, 5] and model.modes == [False] * 3 and model.training  # eval inside, train mode back
    assert (r["n"], r["accuracy"], r["top5_accuracy"]) == (5, 2 / 5, 4 / 5)  # int / int in float64: exact
    confusion = torch.zeros(10, 10, dtype=torch.long)
    confusion[labels, torch.tensor([0, 7, 2, 5, 4])] = 1
    assert r["confusion"] == confusion.tolist() and r["per_class"] == per_class_metrics(confusion)
    assert {type(v) for row in r["confusion"] for v in row} == {int}  # counts, as run.json stores them
    # float32 sums per batch of 2, added in float64, vs one float32 mean of 5: a few roundings of 6e-8
    assert r["loss"] == pytest.approx(torch.nn.functional.cross_entropy(model.logits, labels).item(), rel=1e-6)
    brief = evaluate(model.eval(), images, labels, batch_size=3, with_details=False)
    assert (brief["accuracy"], brief["n"], model.training) == (2 / 5, 5, False) and set(brief) == {"loss", "accuracy", "n"}
    # Batches of 3 sum each batch's float32 losses in another order than batches of 2: equal to float32 rounding
    # (relative 2⁻²⁴ ≈ 6e-8 per addition, a few additions), not bit for bit — AMD and Intel kernels differed at 1e-8.
    assert brief["loss"] == pytest.approx(r["loss"], rel=1e-6)


def test_evaluate_sums_the_loss_in_float64_so_a_small_loss_after_a_huge_one_still_counts():
    model = _Table([[0], [1]])
    model.logits[0, 3] = 3e7  # digit 0 (label 0): a loss of 3e7 − 10, where float32 steps by 2
    model.logits[1] = 0.0  # digit 1 (label 1): uniform, a loss of log 10 ≈ 2.3
    images, labels = torch.arange(2, dtype=torch.uint8)[:, None, None].expand(2, 28, 28), torch.tensor([0, 1])
    per_digit = [torch.nn.functional.cross_entropy(model.logits[k : k + 1], labels[k : k + 1]).item() for k in (0, 1)]
    # the same float32 per-digit losses (batch 1 both), added in float64 in the same order: 1e-12 is float64 rounding
    assert evaluate(model, images, labels, batch_size=1)["loss"] == pytest.approx(sum(per_digit) / 2, rel=1e-12)


def test_per_class_metrics_formula():
    confusion = torch.tensor([[8, 2], [1, 9]])
    m = per_class_metrics(confusion)  # float64 ratios of counts, one or two roundings: default approx
    assert m[0]["precision"] == pytest.approx(8 / 9) and m[0]["recall"] == pytest.approx(0.8)
    assert m[0]["f1"] == pytest.approx(2 * (8 / 9) * 0.8 / (8 / 9 + 0.8)) and m[1]["support"] == 10
    # A class predicted once, two whose precision + recall < 1, and one never seen nor predicted (all 0, not NaN).
    m = per_class_metrics(torch.tensor([[1, 0, 0, 0], [0, 1, 3, 0], [0, 2, 1, 0], [0, 0, 0, 0]]))
    expected = [{"class": 0, "precision": 1, "recall": 1, "f1": 1, "support": 1},
                {"class": 1, "precision": 1 / 3, "recall": 1 / 4, "f1": 2 / 7, "support": 4},
                {"class": 2, "precision": 1 / 4, "recall": 1 / 3, "f1": 2 / 7, "support": 3},
                {"class": 3, "precision": 0, "recall": 0, "f1": 0, "support": 0}]
    assert m == [pytest.approx(e) for e in expected]


def test_validation_points_are_spread_evenly_and_include_every_epoch_end():
    assert validation_steps(157 * 2, 157, 10) == {31, 63, 94, 126, 157, 188, 220, 251, 283, 314}
    assert validation_steps(8 * 3, 8, 2) == {8, 12, 16, 24}  # epoch ends are always there
    assert validation_steps(3, 3, 10) == {1, 2, 3}  # never more points than steps
    assert validation_steps(3, 1, 2) == {1, 2, 3}  # one step an epoch: never past the last
    assert validation_steps(5, 1, 2) == {1, 2, 3, 4, 5}  # ... and every epoch end, step 4 too (evenly: only 2, 5)


def test_validation_subset_costs_about_8_percent_of_training_within_bounds():
    cfg = TrainConfig(train_subset=10000, epochs=2, val_points=10)
    assert val_size(cfg, 10000, 6000) == 500  # 20,000 training images / (4 · 10)
    assert val_size(TrainConfig(epochs=1), 1000, 6000) == 300  # never fewer than 300
    assert val_size(TrainConfig(epochs=15), 54000, 6000) == 6000  # never more than the split
    n = val_size(TrainConfig(epochs=1, val_points=1), 1399, 6000)
    assert (n, type(n)) == (349, int)  # whole digits: 1,399 / 4 rounded down


def test_a_run_validates_on_one_fixed_stratified_subset(tiny_run, mnist, mnist_1k, tiny_config, monkeypatch):
    snap = tiny_run.snapshot()
    cfg = tiny_config()
    assert [v["step"] for v in snap["vals"]] == sorted(validation_steps(16, 8, cfg.val_points))
    assert snap["progress"]["val_size"] == 300
    # The subset is stratified: every class within one digit of its share of the validation split.
    _, val_idx = stratified_split(mnist.train_labels, cfg.val_fraction, cfg.seed)
    sub = val_idx[stratified_split(mnist.train_labels[val_idx], 1 - 300 / len(val_idx), cfg.seed)[0]]
    share = torch.bincount(mnist.train_labels[val_idx], minlength=10) * 300 / len(val_idx)
    assert len(sub) == 300 and ((torch.bincount(mnist.train_labels[sub], minlength=10) - share).abs() <= 1).all()
    validated = []  # what each validation of the same run evaluates (not the test phase's 1,000 digits)
    real_evaluate = training.evaluate

    def evaluate_spy(model, images, labels, *args, **kwargs):
        if len(labels) != len(mnist_1k.test_labels):
            validated.append((images, labels))
        return real_evaluate(model, images, labels, *args, **kwargs)

    monkeypatch.setattr(training, "evaluate", evaluate_spy)
    assert Run(cfg, mnist_1k).run().status == "finished"
    assert len(validated) == len(snap["vals"])
    assert all(torch.equal(x, mnist.train_images[sub]) and torch.equal(y, mnist.train_labels[sub]) for x, y in validated)
    # The epoch records close each epoch with its last validation; their training numbers are over the epoch's steps.
    for e in snap["epochs"]:
        last = [v for v in snap["vals"] if v["step"] == e["step"]][0]
        assert (e["val_loss"], e["val_accuracy"]) == (last["val_loss"], last["val_accuracy"])  # copied: exact
        losses = [s["loss"] for s in snap["steps"] if s["epoch"] == e["epoch"]]
        # float64: Σ 64·loss / 512 in the run vs Σ loss / 8 here, a few roundings: default approx
        assert e["train_loss"] == pytest.approx(sum(losses) / len(losses))  # 512 = 8 full batches of 64


def test_readable_run_names():
    assert run_name(TrainConfig(train_subset=10000, batchnorm=True), "a1b2c3d4") == "bn-adam-1e-3-2ep-10k-a1b2"
    cfg = TrainConfig(optimizer="momentum", lr=0.05, epochs=15, augment=True, schedule="cosine", seed=3,
                      adversarial="pgd", adv_epsilon=0.2)
    assert run_name(cfg, "ffff0000") == "nobn-momentum-5e-2-15ep-54k-aug-cosine-pgd0.2-s3-ffff"
    assert run_name(TrainConfig(lr=0.0015, train_subset=1000), "12345678") == "nobn-adam-1.5e-3-2ep-1k-1234"
    assert run_name(TrainConfig(batch_size=256, conv="unfold", train_subset=1000), "12345678") == \
        "nobn-adam-1e-3-2ep-1k-b256-unfold-1234"
    # 60,000 − round(60,000 × 0.41667) = 60,000 − round(25,000.2) = 35,000 training digits
    assert run_name(TrainConfig(val_fraction=0.41667), "12345678") == "nobn-adam-1e-3-2ep-35k-1234"


def test_learning_rates_below_0_1_are_written_in_short_scientific_notation():
    examples = {0.001: "1e-3", 0.0015: "1.5e-3", 0.05: "5e-2", 0.099: "9.9e-2", 0.1: "0.1", 0.5: "0.5", 2: "2", 1e-5: "1e-5"}
    assert {v: training.short_number(v) for v in examples} == examples


@pytest.mark.parametrize("cuda, mps, auto, listed", [(True, True, "cuda", "cpu, cuda, mps"), (False, True, "mps", "cpu, mps"),
                                                      (True, False, "cuda", "cpu, cuda"), (False, False, "cpu", "cpu")])
def test_auto_picks_cuda_then_mps_then_cpu_and_an_absent_device_is_named(monkeypatch, cuda, mps, auto, listed):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert training.resolve_device() == training.resolve_device("auto") == torch.device(auto)
    assert training.resolve_device("cpu") == torch.device("cpu")
    for name in ("cuda", "mps", "tpu"):
        if name not in listed:
            with pytest.raises(ValueError) as error:
                training.resolve_device(name)
            assert all(word in str(error.value) for word in ("device", listed, repr(name)))


@pytest.mark.parametrize("cpuinfo, mkldnn, expected", [
    ("flags : fpu sse2 avx512_bf16 avx512f", True, "bf16"), ("flags : fpu amx_bf16 amx_tile", True, "bf16"),
    ("flags : fpu sse2 avx512f", True, "fp32"),  # bf16 would be emulated, slower than fp32
    ("flags : fpu amx_bf16", False, "fp32"), (OSError, True, "fp32")])  # no oneDNN; no /proc/cpuinfo
def test_auto_precision_on_a_cpu_is_bf16_only_where_it_computes_it_natively(monkeypatch, cpuinfo, mkldnn, expected):
    class FakePath:
        def __init__(self, path):
            assert path == "/proc/cpuinfo"

        def read_text(self):
            if cpuinfo is OSError:
                raise OSError("no such file")
            return cpuinfo

    monkeypatch.setattr(training, "Path", FakePath)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: mkldnn)
    monkeypatch.delenv(training.BF16_ENV, raising=False)  # `make test`'s float32 pass sets it
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32" and resolve_precision("bf16", torch.device("cpu")) == "bf16"
    monkeypatch.setenv(training.BF16_ENV, "0")  # bf16 forced off: auto is fp32 even where bf16 is native
    assert resolve_precision("auto", torch.device("cpu")) == "fp32" and resolve_precision("bf16", torch.device("cpu")) == "bf16"


@pytest.mark.parametrize("supported", [True, False])
def test_auto_precision_on_cuda_follows_the_gpus_bf16_support_and_mps_stays_fp32(monkeypatch, supported):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
    monkeypatch.delenv(training.BF16_ENV, raising=False)
    assert resolve_precision("auto", torch.device("cuda")) == ("bf16" if supported else "fp32")
    assert resolve_precision("auto", torch.device("mps")) == "fp32"


def test_a_run_trains_in_bfloat16_only_when_its_precision_is_bf16(mnist_1k, tiny_config):
    """What the model sees in its training forwards: bfloat16 autocast for bf16, none for fp32."""
    for precision in ("fp32", "bf16"):
        seen = []

        def on_forward(module, args, out, seen=seen):
            if module.training:
                seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), out.dtype))

        run = Run(tiny_config(precision=precision, train_subset=64, epochs=1, val_points=1), mnist_1k)
        run.model.register_forward_hook(on_forward)
        run.run()
        assert run.status == "finished", run.error
        want = (True, torch.bfloat16, torch.bfloat16) if precision == "bf16" else (False, torch.bfloat16, torch.float32)
        assert set(seen) == {want}, precision  # the probe's step (on a copy) and the run's one step


def test_bf16_trains_like_fp32(mnist, mnist_1k, tiny_config, tiny_run):
    assert tiny_run.precision == "fp32"  # the tiny config asks for fp32: exact, machine-independent numbers
    bf16 = Run(tiny_config(precision="bf16"), mnist_1k).run()
    assert bf16.status == "finished", bf16.error
    # Both models on the same 10,000 test digits (tiny_run's own test): bf16 and fp32 training ended 0.04–0.3 points
    # apart (seeds 1–3, measured on the AMX machine); 3 points allowed.
    tested = evaluate(bf16.model, mnist.test_images, mnist.test_labels, with_details=False)["accuracy"]
    assert tested == pytest.approx(tiny_run.results["accuracy"], abs=0.03)
    assert [s["loss"] for s in bf16.steps] != [s["loss"] for s in tiny_run.steps]  # it did compute in bf16


def test_validation_and_test_report_their_progress_digit_by_digit_in_small_batches(mnist_1k, tiny_config, monkeypatch):
    """The Train page's "validating on 300 digits" and "testing on the 1,000 test digits" bars: 0 of all when the
    phase starts, then each batch of EVAL_BATCH digits (small, so that Stop is honoured within a fraction of a
    second) as it is done."""
    real, seen = training.evaluate, []

    def spy(model, images, labels, batch_size, with_details=True, on_batch=None):
        p = run.progress
        seen.append((p["phase"], p["phase_done"], p["phase_total"], batch_size, with_details))

        def step(done):
            on_batch(done)
            seen.append(run.progress["phase_done"])

        return real(model, images, labels, batch_size, with_details, step)

    monkeypatch.setattr(training, "evaluate", spy)
    run = Run(tiny_config(epochs=1, val_points=1), mnist_1k)
    run.run()
    assert run.status == "finished", run.error
    # Validation needs only the loss and accuracy; the test also its confusion matrix and per-class numbers.
    assert seen == [("validating", 0, 300, 500, False), 300, ("testing", 0, 1000, 500, True), 500, 1000]
    assert training.EVAL_BATCH == 500


def test_an_epochs_summary_weights_each_step_by_its_batch_and_counts_its_own_validations(mnist_1k, tiny_config):
    run = Run(tiny_config(train_subset=600, val_points=4), mnist_1k).run()
    assert run.status == "finished", run.error
    n, per = run.progress["train_size"], run.steps_per_epoch
    sizes = [64] * (per - 1) + [n - 64 * (per - 1)]
    assert sizes[-1] < 64  # the last batch of an epoch is smaller
    for e, summary in enumerate(run.epochs, 1):
        steps = run.steps[(e - 1) * per : e * per]
        vals = [v for v in run.vals if (e - 1) * per < v["step"] <= e * per]
        assert len(vals) == 2 and vals[-1]["step"] == e * per
        # the run's own float64 formulas in the same order, and copies: exact; default approx is slack
        assert summary["train_loss"] == pytest.approx(sum(s["loss"] * k for s, k in zip(steps, sizes, strict=True)) / n)
        assert summary["train_accuracy"] == pytest.approx(sum(s["accuracy"] * k for s, k in zip(steps, sizes, strict=True)) / n)
        assert (summary["val_loss"], summary["val_accuracy"]) == (vals[-1]["val_loss"], vals[-1]["val_accuracy"])
        assert summary["seconds"] == pytest.approx(summary["train_seconds"] + sum(v["seconds"] for v in vals))
        assert summary["images_per_s"] == pytest.approx(n / summary["train_seconds"])


def _stopped_in(mnist, tiny_config, phase: str) -> Run:
    """A run stopped as soon as it reports ``phase``; asserts it ends within a second."""
    run = Run(tiny_config(train_subset=4000, epochs=1, val_points=1, val_fraction=0.5), mnist).start()
    deadline = time.monotonic() + 120
    while run.snapshot()["progress"].get("phase") != phase:
        assert time.monotonic() < deadline and not run.done, (run.status, run.error)
        time.sleep(0.001)
    asked = time.monotonic()
    run.stop()
    assert run.wait(timeout=1.0), f"still {run.status} a second after Stop during {phase}"
    assert time.monotonic() - asked < 1.0 and run.status == "stopped" and run.results is None
    return run


def test_stop_during_validation_and_testing_within_a_second(mnist_1k, tiny_config):
    run = _stopped_in(mnist_1k, tiny_config, "validating")
    assert run.vals == [] and run.best_state is None
    run = _stopped_in(mnist_1k, tiny_config, "testing")
    assert len(run.vals) == 1  # the best weights so far (the only validation) are back in the model
    assert all(torch.equal(v, run.best_state[k]) for k, v in run.model.state_dict().items())  # loaded copies: exact


def test_a_promised_time_is_computed_from_measured_speed():
    speed = measure_speed(False, "fp32", torch.device("cpu"), threads=1, steps=2)
    assert speed["train"] > 0 and speed["eval"] > speed["train"]  # a forward pass alone is faster than a step
    pair = measure_speeds([False, True], "fp32", torch.device("cpu"))  # measured while both step at once
    assert len(pair) == 2 and all(s["train"] > 0 and s["eval"] > 0 for s in pair)
    cfg = TrainConfig(train_subset=10000, epochs=2)
    # 20,000 training images, 10 validations of 500 digits and the 10,000 test digits.
    # float64, the same divisions in another order: default approx
    assert estimate_seconds(cfg, {"train": 2000.0, "eval": 7500.0}, 10000) == pytest.approx(20000 / 2000 + 15000 / 7500)


def test_the_best_validation_epoch_is_reloaded_when_a_later_one_is_worse(mnist_1k, tiny_config):
    """Through the public callback, epoch 1's weights are copied when it ends and the steps of epoch 2 are wiped
    before its validation, so epoch 1 is the best: the finished model must hold epoch 1's weights and give the test
    results. One validation point per epoch end (val_points=1)."""
    epoch_1 = {}

    def copy_then_wipe(event, info):
        if event == "epoch" and info["epoch"] == 1:
            epoch_1.update({k: v.clone() for k, v in run.model.state_dict().items()})
        if event == "step" and info["epoch"] == 2:
            with torch.no_grad():
                for p in run.model.parameters():
                    p.zero_()

    run = Run(tiny_config(val_fraction=0.01, val_points=1), mnist_1k, callback=copy_then_wipe)
    run.run()
    assert run.status == "finished", run.error
    first, second = run.epochs
    assert second["val_accuracy"] < first["val_accuracy"]
    assert run.best == {"epoch": 1, "step": 8, "val_accuracy": first["val_accuracy"]}
    kept = [k for k, v in run.model.state_dict().items() if torch.equal(v, epoch_1[k])]  # copies: exact
    assert kept == list(epoch_1), "the finished model does not hold the best epoch's weights"
    labels = mnist_1k.test_labels
    zeros = int((labels == 0).sum())  # what the wiped model scores: it predicts 0 for every digit
    assert run.results["accuracy"] > 0.5 and run.results["accuracy"] != zeros / len(labels)


def test_each_optimizer_gets_the_configured_lr_and_weight_decay_and_only_momentum_gets_momentum():
    params = [torch.nn.Parameter(torch.zeros(2))]
    kinds = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam}
    for name, kind in kinds.items():
        opt = training.make_optimizer(TrainConfig(optimizer=name, lr=0.05, momentum=0.8, weight_decay=5e-4), params)
        group = opt.param_groups[0]
        assert type(opt) is kind and (group["lr"], group["weight_decay"]) == (0.05, 5e-4)
        if kind is torch.optim.SGD:
            assert group["momentum"] == (0.8 if name == "momentum" else 0.0)


def test_the_schedules_span_the_whole_run_and_constant_has_none():
    opt = training.make_optimizer(TrainConfig(optimizer="sgd", lr=0.05), [torch.nn.Parameter(torch.zeros(2))])
    assert training.make_scheduler(TrainConfig(schedule="constant"), opt, 300) is None
    cosine = training.make_scheduler(TrainConfig(schedule="cosine"), opt, 300)
    assert type(cosine) is torch.optim.lr_scheduler.CosineAnnealingLR and cosine.T_max == 300
    onecycle = training.make_scheduler(TrainConfig(schedule="onecycle", lr=0.05), opt, 300)
    assert type(onecycle) is torch.optim.lr_scheduler.OneCycleLR and onecycle.total_steps == 300
    assert opt.param_groups[0]["max_lr"] == 0.05


def _first_step_loss(mnist, cfg) -> float:
    """Loss of a run's first step (the run is stopped as soon as it reports steps: they come 8 at a time)."""
    run = Run(cfg, mnist, callback=lambda event, info: run.stop())
    run.run()
    assert run.status == "stopped" and run.steps[0]["step"] == 1, run.error
    return run.steps[0]["loss"]


def test_adv_mix_weights_the_adversarial_loss(mnist_1k, tiny_config, monkeypatch):
    """loss = (1 − mix)·L(clean) + mix·L(adversarial), on the first batch with the initial weights: mix = 1 is the
    adversarial loss alone, and adversarial="none" the clean loss."""
    clean = _first_step_loss(mnist_1k, tiny_config())
    losses = []

    def fgsm_spy(model, x, y, eps, *args):  # the loss of the examples the run made, under the weights it attacked
        x_adv = fgsm(model, x, y, eps, *args)
        with torch.no_grad():
            losses.append(torch.nn.functional.cross_entropy(model(x_adv), y).item())
        return x_adv

    monkeypatch.setattr(training, "fgsm", fgsm_spy)
    run = Run(tiny_config(adversarial="fgsm", adv_epsilon=0.3, adv_mix=1.0), mnist_1k,
              callback=lambda event, info: run.stop())
    run.run()
    adversarial = run.steps[0]["loss"]
    # losses[0]: the memory probe's step, on a copy. Eval mode (the attack's) and train mode compute the same here (no
    # BatchNorm, no dropout) with the same kernels; 1e-6 covers the order of the batch mean's float32 sum.
    assert adversarial == pytest.approx(losses[1], rel=1e-6)
    mixed = _first_step_loss(mnist_1k, tiny_config(adversarial="fgsm", adv_epsilon=0.3, adv_mix=0.25))
    assert adversarial > clean + 0.05, (clean, adversarial)  # FGSM at ε = 0.3 raises the loss
    # the same float32 losses (same first batch and weights), mixed in float32 by the run and in float64 here
    assert mixed == pytest.approx(0.75 * clean + 0.25 * adversarial, rel=1e-6)


def test_unknown_fields_are_all_named():
    with pytest.raises(ValueError, match="epoch, learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1, "epoch": 3})


def test_a_started_run_trains_in_a_named_daemon_thread(mnist_1k, tiny_config):
    """Daemon, so a server shutting down does not wait for a training run; named after the run for debugging."""
    import threading

    workers = []

    def on_step(event, info):  # runs in the worker
        workers.append(threading.current_thread())
        run.stop()

    run = Run(tiny_config(epochs=1), mnist_1k, callback=on_step).start()
    assert run.wait(timeout=30) and run.status == "stopped"
    assert {(w.name, w.daemon) for w in workers} == {(f"run-{run.id}", True)}  # every event, from the worker


def test_wait_returns_at_its_timeout_while_the_run_goes_on(mnist_1k, tiny_config):
    import threading

    release = threading.Event()
    run = Run(tiny_config(epochs=1), mnist_1k, callback=lambda event, info: event == "step" and release.wait(5)).start()
    assert run.wait(timeout=0.05) is False and not run.done  # held in its first step's callback
    release.set()
    assert run.wait(timeout=60) is True and run.status == "finished", run.error


def test_filter_snapshot_steps_are_0_the_early_steps_that_fit_and_every_epoch_end():
    assert snapshot_steps(16, 8) == [0, 1, 5, 8, 16]  # the tiny run: 20 and 100 are beyond its end
    assert snapshot_steps(158, 79) == [0, 1, 5, 20, 79, 100, 158]  # the lecture pair: 10,000 digits, batch 128, 2 epochs
    assert snapshot_steps(633, 211) == [0, 1, 5, 20, 100, 211, 422, 633]  # 99% fast
    assert snapshot_steps(20, 20) == [0, 1, 5, 20]  # an epoch end on an early step counts once
    assert snapshot_steps(1, 1) == [0, 1]
    assert snapshot_label(0, 79) == "step 0 · before training"
    assert snapshot_label(20, 79) == "step 20 · epoch 0.25"
    assert snapshot_label(158, 79) == "step 158 · epoch 2"
    assert snapshot_label(1100, 1000) == "step 1,100 · epoch 1.1"


def test_a_run_keeps_its_conv_filters_at_step_0_the_early_steps_and_each_epoch_end(mnist_1k, tiny_config):
    at_epoch_end = {}

    def on_event(event, info):  # in the worker after the epoch's validation: the weights after its last step
        if event == "epoch":
            at_epoch_end[info["step"]] = {k: v.detach().clone() for k, v in run.model.named_parameters()}

    run = Run(tiny_config(), mnist_1k, callback=on_event)
    run.run()
    assert run.status == "finished", run.error
    filters = run.snapshot()["filters"]
    snapshots = filters["snapshots"]
    assert filters["steps_per_epoch"] == 8 and list(snapshots) == [0, 1, 5, 8, 16]  # 512 digits / 64, 2 epochs
    for params in snapshots.values():
        assert list(params) == list(SNAPSHOT_PARAMS) and sum(t.numel() for t in params.values()) == 9568
        assert all(t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous() for t in params.values())
    initial = dict(MnistCNN(False, generator=torch.Generator().manual_seed(1)).named_parameters())  # the run's seed
    assert all(torch.equal(snapshots[0][k], initial[k]) for k in SNAPSHOT_PARAMS)  # same seed, copies below: exact
    assert not torch.equal(snapshots[1]["conv1.weight"], snapshots[0]["conv1.weight"])  # one update moved them
    for step in (8, 16):  # what the model held at that step, not the best weights restored at the end
        assert all(torch.equal(snapshots[step][k], at_epoch_end[step][k]) for k in SNAPSHOT_PARAMS), step
    latest = run.snapshot()["latest_conv1"]  # the live copy, taken at the last recorded step
    assert latest["step"] == 16 and torch.equal(latest["weight"], at_epoch_end[16]["conv1.weight"])
    assert torch.equal(latest["bias"], at_epoch_end[16]["conv1.bias"])
    # Copies: nothing is shared with the model, whose conv weights are now the best epoch's.
    assert snapshots[16]["conv1.weight"].data_ptr() != run.model.conv1.weight.data_ptr()
    assert conv_params(run.model)["conv2.bias"].data_ptr() != run.model.conv2.bias.data_ptr()


def test_snapshot_hands_out_the_filter_history_without_copying_it(tiny_run):
    first, second = tiny_run.snapshot(), tiny_run.snapshot()
    assert first["filters"]["snapshots"] is not second["filters"]["snapshots"]  # its own dict: safe to iterate
    assert first["filters"]["snapshots"][16]["conv1.weight"] is tiny_run.filters[16]["conv1.weight"]  # no tensor copy
    first["filters"]["snapshots"].clear()
    assert list(tiny_run.filters) == [0, 1, 5, 8, 16]


def test_each_validation_is_recorded_and_announced_with_the_training_numbers_since_the_last(mnist_1k, tiny_config):
    """512 digits in batches of 64 (8 steps an epoch), 2 epochs, validated after steps 4, 8, 12 and 16. A learning
    rate of 1e-9 keeps every validation accuracy equal: the best is then the first (only a better one replaces it)."""
    events = []
    run = Run(tiny_config(lr=1e-9, val_points=4), mnist_1k, callback=lambda event, info: events.append((event, info)))
    run.run()
    assert run.status == "finished", run.error
    # the same count of 300 digits each time, int / int: exact
    assert [v["step"] for v in run.vals] == [4, 8, 12, 16] and len({v["val_accuracy"] for v in run.vals}) == 1
    for v, since in zip(run.vals, [0, 4, 8, 12], strict=True):
        assert set(v) == {"step", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}
        assert v["epoch"] == v["step"] / 8  # a division by a power of 2: exact
        steps = run.steps[since : v["step"]]
        # float64: Σ 64·loss / 256 in the run vs Σ loss / 4 here, a few roundings: default approx
        assert v["train_loss"] == pytest.approx(sum(s["loss"] for s in steps) / 4)
        assert v["train_accuracy"] == pytest.approx(sum(s["accuracy"] for s in steps) / 4)
    assert run.best == {"epoch": 1, "step": 4, "val_accuracy": run.vals[0]["val_accuracy"]}
    assert [info for event, info in events if event == "validation"] == run.vals
    assert [info for event, info in events if event == "epoch"] == run.epochs
    assert [(e["epoch"], type(e["epoch"])) for e in run.epochs] == [(1, int), (2, int)]
    assert events[-2:] == [("finished", run.results), ("ended", {"status": "finished"})] and run.results["n"] == 1000


def test_each_step_is_recorded_with_its_progress_and_the_latest_conv1_in_groups_up_to_each_validation(
        mnist_1k, tiny_config, monkeypatch):
    """Steps are read from the device in groups (SYNC_EVERY, cut at each validation: 4 here), and each group
    updates the progress and the live copy of conv1 before its records are announced. The run's clock is a fake one
    that only the model moves: each training forward of 64 digits takes 0.5 s, each evaluation 2⁻¹⁰ s per digit (300
    validation digits, 1,000 test digits), and 0.25 s pass after each validation; so speeds, times and the ETA are
    exact (all binary fractions)."""
    now, per_digit, seen, conv1s = [100.0], 2.0**-10, [], {}
    monkeypatch.setattr(training, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    batches = []  # what the run trains on, in order, from the public batch stream it asks for
    real_batches = training.training_batches

    def batches_spy(*args):
        for x, y in real_batches(*args):
            batches.append(y)
            yield x, y

    monkeypatch.setattr(training, "training_batches", batches_spy)

    def on_event(event, info):
        if event == "step":
            seen.append((info, dict(run.progress), run.latest_conv1["step"]))
            conv1s[run.latest_conv1["step"]] = run.latest_conv1
        if event == "validation":  # 0.25 s pass after each validation, before the next phase starts
            now[0] += 0.25

    run = Run(tiny_config(lr=2e-3, val_points=4), mnist_1k, callback=on_event)
    stepped, logits = [], []

    def on_forward(model, args, out):  # the probe's step (on a copy, before the run has progress) does not count
        if not run.progress:
            return
        if model.training:
            p = run.progress
            stepped.append((p["phase"], p["phase_done"], p["phase_total"], p["elapsed_s"], len(out)))
            logits.append(out.detach().clone())  # the weights the step starts from
            now[0] += 0.5
        else:
            now[0] += per_digit * len(out)

    run.model.register_forward_hook(on_forward)
    run.run()
    assert run.status == "finished", run.error
    validation = 300 * per_digit + 0.25  # a validation and the pause after it
    # Each step trains a batch in train mode; the bar shows the steps done (and the time) when the group started.
    assert stepped == [("training", s // 4 * 4, 16, s // 4 * (4 * 0.5 + validation), 64) for s in range(16)]
    assert [info for info, _, _ in seen] == run.steps and [s["step"] for s in run.steps] == list(range(1, 17))
    # Each record is its batch's loss and accuracy under the weights the step started from. Same kernels, same
    # batch; 1e-6 covers the mean's float32 summation order (the run reads losses in groups).
    expected = [torch.nn.functional.cross_entropy(z, y).item() for z, y in zip(logits, batches, strict=False)]
    assert [r["loss"] for r in run.steps] == pytest.approx(expected, rel=1e-6)
    # k / 64, a binary fraction, both ways: exact
    assert [r["accuracy"] for r in run.steps] == [(z.argmax(1) == y).sum().item() / 64 for z, y in zip(logits, batches, strict=False)]
    for record, progress, conv1_step in seen:
        last = (record["step"] + 3) // 4 * 4  # the last step of its group
        assert set(record) == {"step", "epoch", "loss", "accuracy", "lr"} and record["lr"] == 2e-3
        assert record["epoch"] == (record["step"] - 1) // 8 + 1
        assert record["loss"] > 0 and conv1_step == last
        assert (progress["step"], progress["phase_done"], progress["epoch"]) == (last, last, (last - 1) // 8 + 1)
        assert progress["threads"] == torch.get_num_threads()
        # 4 steps of 64 digits in 2 s. The ETA: the steps left at that speed, then the validations after this step and
        # the 1,000 test digits: before any validation at 3× the training speed, after one at the last one's speed.
        evaluations = sum(1 for v in (4, 8, 12, 16) if v > last) * 300 + 1000
        eta = (16 - last) * 0.5 + (evaluations / (3 * 128) if last == 4 else evaluations * per_digit)
        assert (progress["images_per_s"], progress["elapsed_s"]) == (128.0, last * 0.5 + (last // 4 - 1) * validation)
        assert progress["eta_s"] == pytest.approx(eta, rel=1e-15)  # 1 / (3 · 128) is no binary fraction: last bit
    for e in run.epochs:  # two validations an epoch
        assert (e["train_seconds"], e["seconds"], e["images_per_s"], e["images_per_s_median"]) == \
            (4.0, 4.0 + 2 * 300 * per_digit, 128.0, 128.0)
    assert run.total_seconds == 16 * 0.5 + 4 * validation + 1000 * per_digit
    # Copies, as the filters were then (training on did not change them), taken at steps 8 and 16 like the snapshots.
    assert run.latest_conv1 is conv1s[16] and conv1s[8]["step"] == 8
    for at in (8, 16):
        assert torch.equal(conv1s[at]["weight"], run.filters[at]["conv1.weight"])
        assert torch.equal(conv1s[at]["bias"], run.filters[at]["conv1.bias"])


def test_a_run_trains_on_its_seeded_subset_of_the_training_split_and_keeps_the_stream_for_the_epochs(
        mnist_1k, tiny_config, monkeypatch):
    real, seen = training.training_batches, []

    def spy(cfg, images, labels, train_idx, order, device):
        seen.append((train_idx, order.get_state(), images, labels))
        assert (run.status, run.progress) == ("running", {  # as training starts
            "epoch": 0, "epochs": 2, "step": 0, "total_steps": 16, "images_per_s": 0.0, "eta_s": None, "elapsed_s": 0.0,
            "train_size": 512, "val_size": 300, "phase": "training", "phase_done": 0, "phase_total": 16})
        return real(cfg, images, labels, train_idx, order, device)

    monkeypatch.setattr(training, "training_batches", spy)
    run = Run(tiny_config(seed=5), mnist_1k)
    run.run()
    assert run.status == "finished", run.error
    split, _ = stratified_split(mnist_1k.train_labels, 0.1, 5)
    order = torch.Generator().manual_seed(5)
    subset = split[torch.randperm(len(split), generator=order)[:512]]
    [(train_idx, state, images, labels)] = seen
    assert torch.equal(train_idx, subset) and torch.equal(state, order.get_state())  # the epochs continue this stream
    assert torch.equal(images, mnist_1k.train_images) and torch.equal(labels, mnist_1k.train_labels)
    assert run.steps_per_epoch == 8 and run.peak_step_bytes > 0


def test_estimate_seconds_counts_every_training_image_validation_point_and_the_test_set():
    speed = {"train": 1000.0, "eval": 4000.0}
    # The whole training split for 15 epochs: 422 steps an epoch (54,000 / 128, rounded up), 6,330 in all; 10 even
    # points (every 633 steps) and 15 epoch ends, 5 of them shared (multiples of 1,266): 20 validations, each on the
    # whole default validation split (54,000 · 15 / 40 = 20,250 > 6,000).
    cfg = TrainConfig(epochs=15, val_points=10)  # float64, the same divisions in another order: default approx
    assert estimate_seconds(cfg, speed, 54000) == pytest.approx(810000 / 1000 + (20 * 6000 + 10000) / 4000)
    # 3 steps of 100 (300 digits, 1 epoch): validation points are steps, so 3 of them, not 10, on 300 digits each.
    cfg = TrainConfig(batch_size=100, epochs=1, val_points=10)
    assert estimate_seconds(cfg, {"train": 100.0, "eval": 1000.0}, 300) == pytest.approx(300 / 100 + (3 * 300 + 10000) / 1000)


@pytest.mark.parametrize("adversarial, adv_steps, passes", [("fgsm", 5, 3), ("pgd", 5, 7), ("pgd", 10, 12)])
def test_adversarial_training_multiplies_the_training_time_only(adversarial, adv_steps, passes):
    """FGSM: clean pass, attack pass, adversarial pass (3×); PGD: one pass per attack step + 2. Evaluation unchanged."""
    cfg = TrainConfig(train_subset=10000, epochs=2, adversarial=adversarial, adv_steps=adv_steps)
    # 20,000 training images at 2,000/s a pass; 10 validations of 500 digits and the 10,000 test digits at 7,500/s.
    expected = passes * 20000 / 2000 + 15000 / 7500  # float64 in another order: default approx
    assert estimate_seconds(cfg, {"train": 2000.0, "eval": 7500.0}, 10000) == pytest.approx(expected)


def test_a_queued_run_cancels_once(mnist_1k, tiny_config):
    run = Run(tiny_config(), mnist_1k)
    assert run.cancel() is True
    assert (run.status, run.total_seconds, run.done) == ("cancelled", 0.0, True)
    assert run.cancel() is False and run.status == "cancelled"  # it has ended: nothing more to cancel


def test_a_run_is_queued_until_it_starts_and_a_started_or_ended_run_stays_as_it_is(mnist_1k, tiny_config, tiny_run):
    run = Run(tiny_config(epochs=50), mnist_1k)
    assert run.status == "pending" and run.queue() is run and run.status == "queued" and not run.done
    run.start()
    try:
        assert run.status in ("pending", "running")  # the worker sets running when it begins
        run.queue()
        assert run.status in ("pending", "running")  # started: no longer queued
    finally:
        run.stop()
    assert run.wait(timeout=30) and run.queue().status == "stopped"
    assert tiny_run.queue().status == "finished"


def test_a_started_or_finished_run_is_not_cancelled(mnist_1k, tiny_config, tiny_run):
    before = (tiny_run.status, tiny_run.total_seconds)
    assert tiny_run.cancel() is False and (tiny_run.status, tiny_run.total_seconds) == before
    run = Run(tiny_config(epochs=50), mnist_1k).start()
    try:
        assert run.cancel() is False and run.status != "cancelled"
    finally:
        run.stop()
    assert run.wait(timeout=30) and run.status == "stopped", run.error


def test_best_weights_are_none_before_any_validation_then_the_best_step_and_its_state(mnist_1k, tiny_config, tiny_run):
    assert Run(tiny_config(), mnist_1k).best_weights() is None
    step, state = tiny_run.best_weights()
    best = max(tiny_run.vals, key=lambda v: v["val_accuracy"])  # the first of equals
    assert step == best["step"] == tiny_run.best["step"]
    assert state is tiny_run.best_state  # the run's own copy, replaced (never changed) at each new best
    # loaded copies of the best state: exact
    assert all(torch.equal(v, state[k]) for k, v in tiny_run.model.state_dict().items())  # the weights it finished with


class _StepClock:
    """time.perf_counter for the calling thread (others get the real one): the k-th timed interval (calls 2k and 2k + 1)
    starts at 100·k and lasts k + 1 seconds."""

    def __init__(self):
        self.real, self.thread, self.calls = time.perf_counter, threading.get_ident(), 0

    def __call__(self) -> float:
        if threading.get_ident() != self.thread:
            return self.real()
        k, end = divmod(self.calls, 2)
        self.calls += 1
        return 100.0 * k + end * (k + 1)


def test_measure_speed_is_the_median_of_the_steps_after_the_warm_up_and_one_evaluation(monkeypatch):
    monkeypatch.setattr("cnn_core.training.time.perf_counter", _StepClock())
    speed = measure_speed(False, "fp32", torch.device("cpu"), threads=1)
    # Defaults, 6 steps of 128 digits: 7 steps take 1 … 7 s, the first (1 s) warms up, median of 2 … 7 = 4.5 s;
    # the evaluation is the 8th interval (8 s).
    assert speed == {"train": 128 / 4.5, "eval": 128 / 8}  # the same double divisions of whole fake seconds: exact
    monkeypatch.setattr("cnn_core.training.time.perf_counter", _StepClock())
    # 3 steps of 32: 4 steps of 1 … 4 s, median of 2 … 4 = 3 s; evaluation 5 s.
    assert measure_speed(False, "fp32", torch.device("cpu"), threads=1, batch_size=32, steps=3) == {"train": 32 / 3, "eval": 32 / 5}


def _recording_model(calls: list, models: list, fail: bool = False) -> type:
    """An MnistCNN that records, for every forward, what measure_speed runs it on (and raises there if ``fail``)."""

    class Recording(MnistCNN):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            models.append(self)

        def forward(self, x):
            calls.append({"shape": tuple(x.shape), "training": self.training, "inference": torch.is_inference_mode_enabled(),
                          "autocast": torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"),
                          "threads": torch.get_num_threads()})
            if fail:
                raise RuntimeError("boom in forward")
            return super().forward(x)

    return Recording


@pytest.mark.parametrize("batchnorm, precision", [(False, "fp32"), (True, "bf16")])
def test_measure_speed_computes_what_a_run_computes(monkeypatch, batchnorm, precision):
    """The run's network (BatchNorm or not) in channels_last, steps+1 training steps then two evaluations (a warm-up and
    the timed one) on batches of MNIST-sized digits, in bfloat16 autocast for bf16 only. The CPU's autocast default is
    switched to float16 here: bf16 must mean bfloat16 whatever the default is (CUDA's is float16)."""
    calls, models = [], []
    monkeypatch.setattr("cnn_core.training.MnistCNN", _recording_model(calls, models))
    default = torch.get_autocast_dtype("cpu")
    torch.set_autocast_dtype("cpu", torch.float16)
    try:
        measure_speed(batchnorm, precision, torch.device("cpu"), threads=1, batch_size=4, steps=2)
    finally:
        torch.set_autocast_dtype("cpu", default)
    autocast = torch.bfloat16 if precision == "bf16" else False
    step = {"shape": (4, 1, 28, 28), "training": True, "inference": False, "autocast": autocast, "threads": 1}
    evaluation = {**step, "training": False, "inference": True}
    assert calls == [step] * 3 + [evaluation] * 2
    [model] = models
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == batchnorm
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)


def test_measure_speed_restores_torch_threads_also_when_it_fails(monkeypatch):
    previous = torch.get_num_threads()
    calls, models = [], []
    measure_speed(False, "fp32", torch.device("cpu"), threads=previous + 1, batch_size=4, steps=1)
    assert torch.get_num_threads() == previous
    monkeypatch.setattr("cnn_core.training.MnistCNN", _recording_model(calls, models, fail=True))
    with pytest.raises(RuntimeError, match="boom in forward"):
        measure_speed(False, "fp32", torch.device("cpu"), threads=previous + 1, batch_size=4, steps=1)
    assert [c["threads"] for c in calls] == [previous + 1] and torch.get_num_threads() == previous


def test_measure_speed_draws_its_digits_from_a_generator_of_its_own():
    """Measuring the machine must not change what a caller's seeded torch.rand draws next beyond what building the
    network does (nn.Conv2d and nn.Linear draw their default initialisation from the global RNG before MnistCNN
    re-draws the weights from its generator; nothing at all once MnistCNN stops doing that)."""
    saved = torch.get_rng_state()
    try:
        torch.manual_seed(5)
        MnistCNN(False, generator=torch.Generator().manual_seed(0))
        expected = torch.rand(4)
        torch.manual_seed(5)
        measure_speed(False, "fp32", torch.device("cpu"), threads=1, batch_size=4, steps=1)
        assert torch.equal(torch.rand(4), expected)  # the same generator state draws the same bits
    finally:
        torch.set_rng_state(saved)


@pytest.mark.parametrize("cpus, runs, threads", [(8, 2, 4), (7, 2, 3), (2, 2, 1), (1, 2, 1), (None, 1, 1), (None, 2, 1)])
def test_measure_speeds_shares_the_cores_out_and_measures_every_run_at_once(monkeypatch, cpus, runs, threads):
    """cpu_count // runs threads each (at least 1; an unknown count is 1 core), all runs measuring at the same time,
    each result in its run's place."""
    batchnorms = [False, True][:runs]
    together = threading.Barrier(runs, timeout=10)  # every measurement has started before any returns

    def fake_speed(batchnorm, precision, device, threads):
        together.wait()
        return {"batchnorm": batchnorm, "precision": precision, "device": device, "threads": threads}

    monkeypatch.setattr("cnn_core.training.os.cpu_count", lambda: cpus)
    monkeypatch.setattr("cnn_core.training.measure_speed", fake_speed)
    results = measure_speeds(batchnorms, "bf16", torch.device("cpu"))
    assert results == [{"batchnorm": b, "precision": "bf16", "device": torch.device("cpu"), "threads": threads}
                       for b in batchnorms]
    assert all(type(r["threads"]) is int for r in results)


def test_measure_speeds_raises_what_a_measurement_raised(monkeypatch):
    """A failing measurement (e.g. on a device that is not there) is raised to the caller, not printed by its thread
    and found later as a missing key."""
    def fake_speed(batchnorm, precision, device, threads):
        if batchnorm:
            raise RuntimeError("no such device")
        return {"train": 1.0, "eval": 1.0}

    monkeypatch.setattr("cnn_core.training.measure_speed", fake_speed)
    with pytest.raises(RuntimeError, match="no such device"):
        measure_speeds([False, True], "fp32", torch.device("cpu"))


def test_adversarial_training_improves_pgd_accuracy(mnist_1k, tiny_config):
    """The whole effect, on 2,000 digits: PGD-10 accuracy at ε = 0.1 on 300 test digits rises by far more than 5
    points (84% against 73% when measured). Not `numeric`: a training run's outcome, with a margin no kernel path moves."""
    x, y = to_float(mnist_1k.test_images[:300]), mnist_1k.test_labels[:300]
    pgd_accuracy = {}
    for adversarial in ("none", "pgd"):
        cfg = tiny_config(train_subset=2000, epochs=2, adversarial=adversarial, adv_epsilon=0.1, adv_steps=3)
        run = Run(cfg, mnist_1k).run()
        assert run.status == "finished", run.error
        pgd_accuracy[adversarial] = robust_accuracy(run.model.eval(), x, y, "pgd", 0.1, settings=AttackSettings(steps=10))
    assert pgd_accuracy["pgd"] > pgd_accuracy["none"] + 0.05, pgd_accuracy


def test_adversarial_training_attacks_with_the_configured_method(mnist_1k, tiny_config, monkeypatch):
    """FGSM at ε, or PGD at ε with adv_steps steps and a seed of its own per step ((seed · 100,003 + step) mod 2⁶³),
    made in eval mode. 64 digits in batches of 16, validated at steps 2 and 4: a run stopped at its first recorded
    steps attacks three batches, the probe's (step 0, on a copy), then those of steps 0 and 1."""
    calls = []

    def spy(real):
        def attack(model, x, y, eps, *args, **kwargs):
            bound = inspect.signature(real).bind(model, x, y, eps, *args, **kwargs)
            bound.apply_defaults()
            given = bound.arguments
            calls.append((real.__name__, model.training, given["eps"], given.get("steps"), given.get("seed")))
            return real(*bound.args, **bound.kwargs)

        return attack

    monkeypatch.setattr("cnn_core.training.fgsm", spy(fgsm))
    monkeypatch.setattr("cnn_core.training.pgd", spy(pgd))

    def attacks_of_first_steps(**overrides) -> None:
        # A worker thread with one intra-op thread: fast on a busy machine, and this thread's torch settings untouched.
        cfg = tiny_config(train_subset=64, batch_size=16, epochs=1, val_points=2, **overrides)
        run = Run(cfg, mnist_1k, threads=1, callback=lambda event, info: run.stop()).start()
        assert run.wait(timeout=60) and run.status == "stopped" and run.steps[0]["step"] == 1, run.error

    attacks_of_first_steps(adversarial="fgsm", adv_epsilon=0.2)
    assert calls == [("fgsm", False, 0.2, None, None)] * 3
    calls.clear()
    attacks_of_first_steps(adversarial="pgd", adv_epsilon=0.1, adv_steps=3, seed=1)
    assert calls == [("pgd", False, 0.1, 3, 100_003), ("pgd", False, 0.1, 3, 100_003), ("pgd", False, 0.1, 3, 100_004)]
    calls.clear()
    # A large seed stays a valid one: 2⁶² · 100,003 = 50,001 · 2⁶³ + 2⁶² ≡ 2⁶² (mod 2⁶³).
    attacks_of_first_steps(adversarial="pgd", adv_epsilon=0.1, adv_steps=3, seed=2**62)
    assert [c[4] for c in calls] == [2**62, 2**62, 2**62 + 1]
