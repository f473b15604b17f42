import math
import time

import pytest
import torch

from cnn_core.training import Run, TrainConfig, evaluate, per_class_metrics


@pytest.mark.parametrize(
    "field, value",
    [("optimizer", "lbfgs"), ("schedule", "step"), ("device", "tpu"), ("lr", 0), ("lr", -1e-3), ("momentum", 1.0),
     ("weight_decay", -0.1), ("batch_size", 0), ("batch_size", 2.5), ("epochs", 0), ("seed", -1),
     ("val_fraction", 0.0), ("val_fraction", 0.9), ("train_subset", -5), ("batchnorm", "yes"),
     ("augment", 1)],
)
def test_invalid_config_names_the_field_and_range(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be .* got"):
        TrainConfig(**{field: value}).validate()


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
    best = max(snap["epochs"], key=lambda e: e["val_accuracy"])
    assert snap["best"] == {"epoch": best["epoch"], "val_accuracy": best["val_accuracy"]}
    r = snap["results"]
    assert r["n"] == 10000 and sum(map(sum, r["confusion"])) == 10000
    assert r["accuracy"] == pytest.approx(sum(r["confusion"][k][k] for k in range(10)) / 10000)
    assert r["top5_accuracy"] >= r["accuracy"] > 0.5  # 512 digits, 2 epochs: well above chance
    assert [c["support"] for c in r["per_class"]] == torch.bincount(mnist.test_labels).tolist()
    # The run's model holds the best weights, and they give exactly the reported test numbers.
    assert evaluate(tiny_run.model, mnist.test_images, mnist.test_labels)["accuracy"] == r["accuracy"]


def test_same_seed_gives_an_identical_loss_curve(mnist, tiny_run, tiny_config):
    again = Run(tiny_config(), mnist).run()
    assert [s["loss"] for s in again.steps] == [s["loss"] for s in tiny_run.steps]
    other = Run(tiny_config(seed=2), mnist).run()
    assert [s["loss"] for s in other.steps] != [s["loss"] for s in tiny_run.steps]


@pytest.mark.parametrize("optimizer, schedule", [("sgd", "onecycle"), ("momentum", "cosine"), ("rmsprop", "constant")])
def test_every_optimizer_and_schedule_trains(mnist, optimizer, schedule, tiny_config):
    lr = {"sgd": 0.1, "momentum": 0.05, "rmsprop": 1e-3}[optimizer]
    run = Run(tiny_config(optimizer=optimizer, schedule=schedule, lr=lr, batchnorm=True, epochs=1), mnist).run()
    assert run.status == "finished", run.error
    assert run.results["accuracy"] > 0.3
    lrs = [s["lr"] for s in run.steps]
    if schedule == "constant":
        assert set(lrs) == {lr}
    else:
        assert max(lrs) <= lr + 1e-12 and lrs[-1] < lr / 10  # annealed by the end


def test_augmentation_changes_training_but_not_evaluation(mnist, tiny_run, tiny_config):
    run = Run(tiny_config(augment=True), mnist).run()
    assert run.status == "finished" and run.results["accuracy"] > 0.5
    assert [s["loss"] for s in run.steps] != [s["loss"] for s in tiny_run.steps]
    assert Run(tiny_config(augment=True), mnist).run().steps == run.steps  # still seeded


def test_unavailable_device_is_a_clear_error(mnist, tiny_config):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device must be one available on this machine"):
        Run(tiny_config(device="cuda"), mnist)


def test_stop_from_another_thread_stops_within_one_step(mnist, tiny_config):
    run = Run(tiny_config(train_subset=0, epochs=50), mnist).start()
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


def test_a_failing_run_reports_instead_of_raising(mnist, tiny_config):
    def explode(event, info):
        raise RuntimeError("boom in callback")

    run = Run(tiny_config(), mnist, callback=explode).run()
    assert run.status == "failed" and "boom in callback" in run.error and run.total_seconds > 0


def test_a_finished_status_always_comes_with_its_numbers(mnist, tiny_config):
    seen = []

    def on_event(event, info):  # runs in the worker; a UI polling now must see complete data
        if event == "finished":
            snap = run.snapshot()
            seen.append((snap["status"], snap["total_seconds"], snap["results"] is not None))

    run = Run(tiny_config(epochs=1), mnist, callback=on_event)
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
    assert r["accuracy"] == zeros / 1000
    assert [row[0] for row in r["confusion"]] == torch.bincount(labels, minlength=10).tolist()
    assert r["per_class"][0]["recall"] == 1.0 and r["per_class"][0]["precision"] == zeros / 1000
    expected_loss = torch.nn.functional.cross_entropy(torch.eye(10)[torch.zeros(1000, dtype=torch.long)], labels)
    assert r["loss"] == pytest.approx(expected_loss.item(), rel=1e-6)


def test_per_class_metrics_formula():
    confusion = torch.tensor([[8, 2], [1, 9]])
    m = per_class_metrics(confusion)
    assert m[0]["precision"] == pytest.approx(8 / 9) and m[0]["recall"] == pytest.approx(0.8)
    assert m[0]["f1"] == pytest.approx(2 * (8 / 9) * 0.8 / (8 / 9 + 0.8)) and m[1]["support"] == 10


def test_the_best_validation_epoch_is_reloaded_when_a_later_one_is_worse(mnist, tiny_config):
    """Through the public callback, epoch 1's weights are copied when it ends and every step of epoch 2 wipes
    them, so epoch 1 is the best: the finished model must hold epoch 1's weights and give the test results."""
    epoch_1 = {}

    def copy_then_wipe(event, info):
        if event == "epoch" and info["epoch"] == 1:
            epoch_1.update({k: v.clone() for k, v in run.model.state_dict().items()})
        if event == "step" and info["epoch"] == 2:
            with torch.no_grad():
                for p in run.model.parameters():
                    p.zero_()

    run = Run(tiny_config(val_fraction=0.01), mnist, callback=copy_then_wipe)
    run.run()
    assert run.status == "finished", run.error
    first, second = run.epochs
    assert second["val_accuracy"] < first["val_accuracy"] and run.best == {"epoch": 1, "val_accuracy": first["val_accuracy"]}
    kept = [k for k, v in run.model.state_dict().items() if torch.equal(v, epoch_1[k])]
    assert kept == list(epoch_1), "the finished model does not hold the best epoch's weights"
    zeros = int((mnist.test_labels == 0).sum())  # what the wiped model scores: it predicts 0 for every digit
    assert run.results["accuracy"] > 0.5 and run.results["accuracy"] != zeros / 10000


def test_momentum_optimizer_uses_the_configured_momentum_and_plain_sgd_none():
    from cnn_core.training import make_optimizer

    params = [torch.nn.Parameter(torch.zeros(2))]
    group = make_optimizer(TrainConfig(optimizer="momentum", lr=0.05, momentum=0.8, weight_decay=5e-4), params).param_groups[0]
    assert (group["momentum"], group["lr"], group["weight_decay"]) == (0.8, 0.05, 5e-4)
    sgd = make_optimizer(TrainConfig(optimizer="sgd", lr=0.1, momentum=0.8), params)
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0.0


def _first_step_loss(mnist, cfg) -> float:
    """Loss of a run's first step (the run is stopped right after it)."""
    run = Run(cfg, mnist, callback=lambda event, info: run.stop())
    run.run()
    assert run.status == "stopped" and len(run.steps) == 1, run.error
    return run.steps[0]["loss"]


def test_adv_mix_weights_the_adversarial_loss(mnist, tiny_config):
    """loss = (1 − mix)·L(clean) + mix·L(adversarial), on the first batch with the initial weights: mix = 1 is the
    adversarial loss alone, and adversarial="none" the clean loss."""
    clean = _first_step_loss(mnist, tiny_config())
    adversarial = _first_step_loss(mnist, tiny_config(adversarial="fgsm", adv_epsilon=0.3, adv_mix=1.0))
    mixed = _first_step_loss(mnist, tiny_config(adversarial="fgsm", adv_epsilon=0.3, adv_mix=0.25))
    assert adversarial > clean + 0.05, (clean, adversarial)  # FGSM at ε = 0.3 raises the loss
    assert mixed == pytest.approx(0.75 * clean + 0.25 * adversarial, rel=1e-6)


def test_unknown_fields_are_all_named():
    with pytest.raises(ValueError, match=r"^unknown TrainConfig field\(s\): epoch, learning_rate$"):
        TrainConfig.from_dict({"learning_rate": 0.1, "epoch": 3})


def test_a_started_run_trains_in_a_named_daemon_thread(mnist, tiny_config):
    """Daemon, so a server shutting down does not wait for a training run; named after the run for debugging."""
    import threading

    workers = []

    def on_step(event, info):  # runs in the worker
        workers.append(threading.current_thread())
        run.stop()

    run = Run(tiny_config(epochs=1), mnist, callback=on_step).start()
    assert run.wait(timeout=30) and run.status == "stopped"
    assert [(w.name, w.daemon) for w in workers] == [(f"run-{run.id}", True)]


def test_wait_returns_at_its_timeout_while_the_run_goes_on(mnist, tiny_config):
    import threading

    release = threading.Event()
    run = Run(tiny_config(epochs=1), mnist, callback=lambda event, info: event == "step" and release.wait(5)).start()
    assert run.wait(timeout=0.05) is False and not run.done  # held in its first step's callback
    release.set()
    assert run.wait(timeout=60) is True and run.status == "finished", run.error
