"""Sweeps: parsing, runs that differ in one field only (same start, same data order), fair threads in the
registry, the table and the measured sentence; peak memory of a step."""

import threading
import time
from dataclasses import asdict

import pytest
import torch

from cnn_core.data import random_shift
from cnn_core.memory import peak_bytes
from cnn_core.registry import RunRegistry
from cnn_core.store import RunStore
from cnn_core.sweep import (
    SWEEPS,
    differing_fields,
    parse_sweep,
    parse_values,
    sweep_configs,
    sweep_field,
    sweep_table,
    sweep_verdict,
)
from cnn_core.training import Run, TrainConfig, training_batches
from tests.unit.records import sweep_run


def test_values_are_parsed_by_the_fields_type_and_default_to_the_usual_ones():
    assert parse_sweep("optimizer=sgd,momentum,rmsprop,adam") == ("optimizer", ["sgd", "momentum", "rmsprop", "adam"])
    assert parse_sweep("optimizer") == ("optimizer", ["sgd", "momentum", "rmsprop", "adam"])
    assert parse_sweep("lr=") == ("lr", [1e-4, 1e-3, 1e-2])
    field, sizes = parse_sweep("batch-size= 32, 512 ")
    assert field == "batch_size" and sizes == [32, 512] and all(type(v) is int for v in sizes)
    assert parse_values("batch_size", "64, 2e2") == [64, 200]
    assert parse_values("batchnorm", "off, ON") == [False, True] and parse_values("augment", "no,yes") == [False, True]
    assert parse_values("lr", "1e-3, 0.01") == [1e-3, 1e-2] and parse_values("conv", "") == ["builtin", "unfold"]


@pytest.mark.parametrize("spec, message", [
    ("colour=red,blue", "a sweep compares one of optimizer, lr, batch_size, batchnorm, augment, schedule, conv; got 'colour'"),
    ("seed=1,2", "a sweep compares one of"),
    ("lr=1e-3,0.001", "lr: 0.001, 1e-3 given twice"),
    ("lr=1e-3", "a sweep needs 2 to 8 values of lr, got 1"),
    ("lr=" + ",".join(str(k / 100) for k in range(1, 10)), "a sweep needs 2 to 8 values of lr, got 9"),
    ("lr=1e-3,20", "lr must be in (0, 10], got 20.0"),
    ("batch_size=32,abc", "batch_size: 'abc' is not an integer"),
    ("batch_size=32,2.5", "batch_size: '2.5' is not an integer"),
    ("batchnorm=off,maybe", "batchnorm: 'maybe' is not on or off"),
    ("lr=1e-3,fast", "lr: 'fast' is not a number"),
    ("optimizer=sgd,lbfgs", "optimizer must be one of sgd, momentum, rmsprop, adam, got 'lbfgs'"),
])
def test_bad_sweeps_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError) as err:
        parse_sweep(spec)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("field", list(SWEEPS))
def test_the_runs_of_a_sweep_differ_in_that_field_only(field):
    base = TrainConfig(train_subset=1000, epochs=1, seed=7, lr=3e-3, batch_size=64)
    values = parse_values(field, "")
    configs = sweep_configs(base, field, values)
    assert [getattr(c, field) for c in configs] == values
    for c in configs:
        assert {k: v for k, v in asdict(c).items() if k != field} == {k: v for k, v in asdict(base).items() if k != field}
    dicts = [asdict(c) for c in configs]
    assert differing_fields(dicts) == [field]
    assert sweep_field([{"config": d} for d in dicts]) == field
    assert sweep_field([{"config": d} for d in dicts[:1]]) is None
    two_fields = [dicts[0], {**dicts[1], "seed": 8}]
    assert sweep_field([{"config": d} for d in two_fields]) is None


def _labels_seen(cfg, mnist, train_idx):
    batches = training_batches(cfg, mnist.train_images, mnist.train_labels, train_idx,
                               torch.Generator().manual_seed(cfg.seed), torch.device("cpu"))
    xs, ys = zip(*batches, strict=True)
    return torch.cat(ys), torch.cat(xs)


def test_runs_of_a_sweep_see_the_digits_in_the_same_order(mnist):
    idx = torch.arange(300)
    base = TrainConfig(epochs=2, batch_size=64, seed=3)
    order, plain = _labels_seen(base, mnist, idx)
    for other in (TrainConfig(epochs=2, batch_size=100, seed=3), TrainConfig(epochs=2, batch_size=64, seed=3, optimizer="sgd")):
        labels, images = _labels_seen(other, mnist, idx)
        # the pipeline's own pixel / 255 and pixel-copying shifts, the same ops in the same order: exact
        assert torch.equal(labels, order) and torch.equal(images, plain)
    labels, shifted = _labels_seen(TrainConfig(epochs=2, batch_size=64, seed=3, augment=True), mnist, idx)
    assert torch.equal(labels, order) and not torch.equal(shifted, plain)  # the same digits, shifted
    shifts = torch.Generator().manual_seed(4)  # the seed + 1: a stream of its own, one shift of ≤ 2 pixels per digit
    bounds = [(e * 300 + a, e * 300 + min(a + 64, 300)) for e in range(2) for a in range(0, 300, 64)]
    assert torch.equal(shifted, torch.cat([random_shift(plain[a:b], 2, shifts) for a, b in bounds]))
    assert not torch.equal(_labels_seen(TrainConfig(epochs=2, batch_size=64, seed=4), mnist, idx)[0], order)


def test_a_sweep_queues_beyond_the_cap_trains_each_run_on_the_same_threads_and_starts_alike(
        mnist_1k, tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr("cnn_core.registry.os.cpu_count", lambda: 4)
    reg = RunRegistry(lambda: mnist_1k, RunStore(tmp_path), max_active=2)
    configs = sweep_configs(tiny_config(epochs=1), "optimizer", ["sgd", "momentum", "adam"])
    runs = reg.start_sweep(configs)
    assert [r.status != "queued" for r in runs] == [True, True, False]  # two at once, the third waits
    assert [reg.waiting(r.id) for r in runs][2]["place"] == 1
    assert all(r.wait(120) for r in runs) and [r.status for r in runs] == ["finished"] * 3
    assert [r.snapshot()["progress"]["threads"] for r in runs] == [2, 2, 2]  # 4 cores / 2, even for the last alone
    first = [r.steps[0]["loss"] for r in runs]
    assert first[0] == first[1] == first[2]  # same initial weights, same first batch
    assert len({r.steps[-1]["loss"] for r in runs}) == 3  # then each optimizer goes its own way
    assert {reg.saved_name(r.id) for r in runs} == {i["name"] for i in RunStore(tmp_path).list_runs()}

    long = reg.start_sweep(sweep_configs(tiny_config(train_subset=0, epochs=50), "lr", [1e-3, 2e-3, 3e-3]))
    reg.stop(long[2].id)  # a queued run of a long sweep is cancelled alone
    assert long[2].status == "cancelled" and [r.status for r in long[:2]] != ["cancelled"] * 2
    reg.stop_all()
    assert all(r.wait(30) for r in long) and [r.status for r in long[:2]] == ["stopped"] * 2


def test_peak_bytes_counts_what_the_calling_thread_allocates():
    cpu = torch.device("cpu")
    assert 2**20 <= peak_bytes(lambda: torch.ones(2**20, dtype=torch.uint8), cpu) < 1.05 * 2**20

    def temporary_then_small():
        big = torch.ones(4 * 2**20, dtype=torch.uint8)
        del big
        return torch.ones(2**20, dtype=torch.uint8)

    assert 4 * 2**20 <= peak_bytes(temporary_then_small, cpu) < 4.2 * 2**20  # a freed temporary still counts
    stop = threading.Event()

    def allocate_elsewhere():
        while not stop.is_set():
            torch.ones(8 * 2**20, dtype=torch.uint8)
            time.sleep(0.001)

    other = threading.Thread(target=allocate_elsewhere)
    other.start()
    try:
        assert 2**20 <= peak_bytes(lambda: torch.ones(2**20, dtype=torch.uint8), cpu) < 1.05 * 2**20
    finally:
        stop.set()
        other.join()


def test_a_run_measures_its_step_memory_without_touching_its_weights(mnist_1k, tiny_config, tiny_run):
    assert 5 < tiny_run.snapshot()["peak_step_mib"] < 500
    assert all(e["images_per_s_median"] > 0 for e in tiny_run.epochs)
    again = Run(tiny_config(), mnist_1k).run()  # the probe step must not change what the run trains
    assert [s["loss"] for s in again.steps] == [s["loss"] for s in tiny_run.steps]  # same config, seed, kernels, order
    unfold = Run(tiny_config(conv="unfold", epochs=1, val_points=1), mnist_1k).run()
    assert unfold.peak_step_bytes > 1.5 * tiny_run.peak_step_bytes  # unfolded patches are stored for backward


def test_a_lead_of_exactly_ten_test_digits_is_a_lead():
    """99.10% over 99.00% is 0.0999… in floats but 10 test digits: the threshold, so a lead and not 'about the same'."""
    runs = [sweep_run("adam", 0.991, 4400), sweep_run("sgd", 0.990, 5000)]
    assert "adam is best, 0.10 points ahead of sgd" in sweep_verdict(runs, "optimizer")


def test_a_sweep_of_exactly_eight_values_is_accepted():
    """MAX_VALUES is inclusive: eight learning rates are a sweep; nine are refused (test_bad_sweeps_say_what_is_wrong)."""
    text = ",".join(str(k / 100) for k in range(1, 9))
    assert parse_values("lr", text) == [k / 100 for k in range(1, 9)]  # str(float) → float round-trips exactly


def test_every_kind_of_failure_is_named_and_the_rest_still_ranked():
    """Each outcome that is not "trained" reads its own way, all of them joined by commas after the ranking."""
    stalled = sweep_run("rmsprop", 0.15, 4000)  # final loss fine, 15% accuracy: under twice chance
    empty = sweep_run("momentum", None, 4000) | {"vals": [], "epochs": []}  # no validation yet
    runs = [sweep_run("adam", 0.99, 4000), sweep_run("sgd", 0.09, 4000, final_loss=9.0), stalled, empty]
    assert sweep_verdict(runs, "optimizer").startswith(
        "Only adam trained: test accuracy 99.00%; sgd diverged, rmsprop did not learn, momentum ended before its first "
        "validation; about the same training speed")
    assert sweep_verdict([], "optimizer") == "No verdict: no run has finished."


@pytest.mark.parametrize("mib, reads", [(22.0, "peak memory per step from 20 MiB (sgd) to 22 MiB (adam)"),
                                        (21.9, "about the same peak memory per step (20 MiB to 22 MiB)")])
def test_a_measured_range_is_a_difference_from_10_percent_up(mib, reads):
    """20 → 22 MiB is exactly 10% more: a difference (the threshold is inclusive), 21.9 is not; speeds likewise."""
    runs = [sweep_run("sgd", 0.99, 4000, mib=20.0), sweep_run("adam", 0.98, 4400, mib=mib)]
    verdict = sweep_verdict(runs, "optimizer")
    assert reads in verdict and "training speed from 4,000 images/s (sgd) to 4,400 images/s (adam)" in verdict


def test_a_run_without_a_measured_speed_is_left_out_of_the_range():
    runs = [sweep_run("rmsprop", 0.97, 5000), sweep_run("sgd", 0.99, 4000), sweep_run("adam", 0.98, 4400)]
    runs[0]["epochs"][0]["images_per_s_median"] = float("nan")  # first: min() and max() would keep a NaN there
    assert "training speed from 4,000 images/s (sgd) to 4,400 images/s (adam)" in sweep_verdict(runs, "optimizer")


@pytest.mark.parametrize("field, values, labels", [
    ("batchnorm", [False, True], ["no BatchNorm", "BatchNorm"]),
    ("augment", [False, True], ["off", "on"]),
    ("lr", [1e-3, 1e-2], ["1e-3", "1e-2"]),
    ("batch_size", [32, 512], ["32", "512"]),
])
def test_a_sweeps_values_read_as_words_in_its_table(field, values, labels):
    table = sweep_table([sweep_run(v, 0.99, 4000, field=field) for v in values], field)
    assert list(table[SWEEPS[field][0]]) == labels
