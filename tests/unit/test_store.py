import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from cnn_core import store as store_module
from cnn_core.store import SHIPPED_RUNS, CheckpointError, RunStore, sanitize_name
from cnn_core.training import Run, snapshot_steps

REPO = Path(__file__).resolve().parents[2]


def test_round_trip_is_bit_exact(tmp_path, tiny_run):
    store = RunStore(tmp_path / "new" / "runs")  # a runs folder not made yet, two levels deep (cli --runs-dir)
    path = store.save(tiny_run, "my run")
    assert path == tmp_path / "new" / "runs" / "my-run"
    model, info = store.load_model("my-run")
    assert not model.training
    x = torch.rand(16, 1, 28, 28)
    tiny_run.model.eval()
    assert torch.equal(model(x), tiny_run.model(x))  # the same bits in the same (standard) layout, same kernels: exact
    assert info["param_count"] == 799078 and info["torch_version"] == torch.__version__
    assert info["command"].startswith("python -m cnn_core train --name my-run --batchnorm false ")  # reproduces it
    assert "--train-subset 512 " in info["command"] and info["config"]["train_subset"] == 512
    assert info["results"]["accuracy"] == tiny_run.results["accuracy"]
    assert info["status"] == "finished" and info["stopped_at_step"] is None
    created = datetime.strptime(info["created"], "%Y-%m-%dT%H:%M:%S%z")  # the Inside page lists the newest run first
    assert abs(created.timestamp() - time.time()) < 600
    state = torch.load(path / "model.pt", weights_only=True)  # a plain state_dict
    assert set(state) == set(tiny_run.model.state_dict())
    rows = store.load_metrics("my-run")
    assert sum(r["kind"] == "step" for r in rows) == len(tiny_run.steps)
    assert sum(r["kind"] == "epoch" for r in rows) == 2
    assert [r["name"] for r in store.list_runs()] == ["my-run"]


def test_names_are_sanitized_and_never_escape_the_store(tmp_path):
    assert sanitize_name(" my run ") == "my-run"
    assert sanitize_name("My Run 2") == "My-Run-2" and sanitize_name("X-ray X") == "X-ray-X"
    assert sanitize_name("a" * 100) == "a" * 64  # cut to the longest folder name, not refused
    assert sanitize_name("../../etc/passwd") == "etc-passwd"
    assert sanitize_name("a/b\\c") == "a-b-c"
    for bad in ("", "...", "/", " - "):
        with pytest.raises(ValueError, match="no usable characters"):
            sanitize_name(bad)
    store = RunStore(tmp_path)
    assert store.path("../outside").parent == tmp_path


def test_run_json_holds_the_runs_own_numbers(tmp_path, tiny_run):
    """What the Results page and the CLI read back: the best epoch, the curves, and the timings (means over epochs)."""
    info = RunStore(tmp_path).load_info(RunStore(tmp_path).save(tiny_run, "r").name)
    snap = tiny_run.snapshot()
    curves = json.loads(json.dumps([snap["best"], snap["vals"], snap["epochs"]]))  # as JSON stores them
    assert [info["best"], info["vals"], info["epochs"]] == curves
    assert len(info["epochs"]) == 2 and info["best"]["epoch"] in (1, 2)
    seconds, speeds = [e["seconds"] for e in snap["epochs"]], [e["images_per_s"] for e in snap["epochs"]]
    assert info["timings"] == {"total_seconds": snap["total_seconds"], "seconds_per_epoch": sum(seconds) / 2,
                               "train_images_per_s": sum(speeds) / 2, "device": "cpu", "precision": "fp32",
                               "torch_threads": torch.get_num_threads(), "peak_step_mib": snap["peak_step_mib"]}


def test_saving_twice_needs_overwrite_and_unfinished_runs_cannot_be_saved(tmp_path, tiny_run, mnist_1k, tiny_config):
    store = RunStore(tmp_path)
    store.save(tiny_run, "r")
    with pytest.raises(FileExistsError, match="'r' already exists"):
        store.save(tiny_run, "r")
    store.save(tiny_run, "r", overwrite=True)
    assert len(store.list_runs()) == 1 and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="only finished or stopped runs"):
        store.save(Run(tiny_config(), mnist_1k), "pending")
    finished_without_numbers = Run(tiny_config(), mnist_1k)
    finished_without_numbers.status = "finished"  # no run gets here (its numbers come first): the save refuses it
    with pytest.raises(ValueError, match=r"\(run .* is finished\)"):
        store.save(finished_without_numbers, "half")


_CRASHING_SAVE = """
import dataclasses, os, sys
sys.path.insert(0, {repo!r})
import cnn_core.store as store
from cnn_core.data import load_mnist
from cnn_core.training import Run, TrainConfig
mnist = load_mnist()
mnist_1k = dataclasses.replace(mnist, test_images=mnist.test_images[:1000], test_labels=mnist.test_labels[:1000])
run = Run(TrainConfig(train_subset=64, epochs=1, batch_size=64, device="cpu", seed=7), mnist_1k).run()
real = store._write_metrics
def die(path, *a):
    real(path, *a)
    os._exit(9)  # the process is killed half-way through the save: no cleanup code runs
store._write_metrics = die
store.RunStore({root!r}).save(run, "r", overwrite=True)
"""


def test_a_save_killed_midway_leaves_no_listed_run_and_the_old_one_intact(tmp_path, tiny_run):
    store = RunStore(tmp_path)
    script = _CRASHING_SAVE.format(repo=str(REPO), root=str(tmp_path))
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert crashed.returncode == 9, crashed.stderr
    assert store.list_runs() == [] and not (tmp_path / "r").exists()
    assert any(p.name.startswith(".tmp-r-") for p in tmp_path.iterdir())  # the half-written folder is hidden

    store.save(tiny_run, "r")
    before = (tmp_path / "r" / "model.pt").read_bytes()
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert crashed.returncode == 9, crashed.stderr
    assert (tmp_path / "r" / "model.pt").read_bytes() == before
    assert store.load_info("r")["config"]["seed"] == 1  # still the tiny run, not the killed one
    assert [r["name"] for r in store.list_runs()] == ["r"]


def test_a_save_that_fails_removes_its_half_written_folder_and_raises_the_error(tmp_path, tiny_run, monkeypatch):
    def disk_full(*args):
        raise OSError("No space left on device")

    monkeypatch.setattr(store_module, "_write_metrics", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        RunStore(tmp_path).save(tiny_run, "r")
    assert list(tmp_path.iterdir()) == []


def test_damaged_or_mismatched_checkpoints_raise_naming_the_file(tmp_path, tiny_run):
    store = RunStore(tmp_path)
    path = store.save(tiny_run, "r")
    (path / "model.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"r/model\.pt could not be loaded"):
        store.load_model("r")
    store.save(tiny_run, "r", overwrite=True)
    info = json.loads((path / "run.json").read_text())
    info["config"]["batchnorm"] = True  # weights of a no-BN model, described as BN
    (path / "run.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=r"(?s)model\.pt could not be loaded.*bn1"):
        store.load_model("r")
    (path / "run.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"run\.json is damaged"):
        store.load_model("r")
    assert "damaged" in store.list_runs()[0]["error"]  # listing still works
    with pytest.raises(CheckpointError, match="no saved run named 'nope'"):
        store.load_model("nope")


class _MakesAFolder:
    """Unpickling it runs ``os.mkdir(path)``: what a crafted checkpoint could do with any code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


@pytest.mark.parametrize("file, load", [("model.pt", RunStore.load_model), ("filters.pt", RunStore.load_filters)])
def test_a_checkpoint_that_would_run_code_when_unpickled_is_refused_unrun(tmp_path, tiny_run, file, load):
    store = RunStore(tmp_path)
    store.save(tiny_run, "r")
    ran = tmp_path / "code-ran"
    torch.save({"weight": _MakesAFolder(ran)}, tmp_path / "r" / file)
    with pytest.raises(CheckpointError, match=rf"r/{file}"):
        load(store, "r")
    assert not ran.exists()


def test_a_run_without_its_weights_file_says_so(tmp_path, tiny_run):
    store = RunStore(tmp_path)
    store.save(tiny_run, "r")
    (tmp_path / "r" / "model.pt").unlink()
    with pytest.raises(CheckpointError, match=r"r/model\.pt does not exist$"):
        store.load_model("r")


def test_delete_protects_shipped_runs(tmp_path, tiny_run):
    store = RunStore(tmp_path)
    store.save(tiny_run, "mine")
    store.save(tiny_run, SHIPPED_RUNS[0])
    with pytest.raises(PermissionError):
        store.delete(SHIPPED_RUNS[0])
    store.delete("mine")
    assert [r["name"] for r in store.list_runs()] == [SHIPPED_RUNS[0]]
    assert sorted(os.listdir(tmp_path)) == [SHIPPED_RUNS[0]]


def _same_filters(a: dict, b: dict) -> bool:  # stored and loaded bits: exact
    return list(a) == list(b) and all(list(a[s]) == list(b[s]) and all(torch.equal(a[s][k], b[s][k]) for k in a[s])
                                      for s in a)


def test_filter_snapshots_round_trip_and_older_runs_have_none(tmp_path, tiny_run):
    store = RunStore(tmp_path)
    path = store.save(tiny_run, "r")
    expected = tiny_run.snapshot()["filters"]
    loaded = store.load_filters("r")
    assert store.has_filters("r") and loaded["steps_per_epoch"] == 8
    assert _same_filters(loaded["snapshots"], expected["snapshots"]) and list(loaded["snapshots"]) == [0, 1, 5, 8, 16]
    plain = torch.load(path / "filters.pt", weights_only=True)  # plain tensors, ints and dicts only
    assert _same_filters(plain["snapshots"], expected["snapshots"])
    (path / "filters.pt").unlink()  # a run saved before snapshots were kept
    assert store.load_filters("r") is None and not store.has_filters("r")
    assert store.load_model("r")[1]["name"] == "r"  # and it still loads
    (path / "filters.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"r/filters\.pt is damaged"):
        store.load_filters("r")
    shipped = RunStore(REPO / "checkpoints")
    assert [shipped.load_filters(n) for n in SHIPPED_RUNS] == [None, None, None]  # not retrained for snapshots


def test_a_stopped_run_saves_the_filter_snapshots_taken_so_far(tmp_path, mnist_1k, tiny_config):
    run = Run(tiny_config(train_subset=0, epochs=50), mnist_1k).start()  # 844 steps an epoch
    deadline = time.monotonic() + 60
    while 5 not in run.snapshot()["filters"]["snapshots"]:
        assert time.monotonic() < deadline and run.status != "failed", run.error
        time.sleep(0.01)
    run.stop()
    assert run.wait(timeout=30) and run.status == "stopped"
    taken = run.snapshot()["filters"]["snapshots"]
    assert list(taken) == snapshot_steps(844 * 50, 844)[: len(taken)] and len(taken) >= 3  # 0, 1, 5, …
    RunStore(tmp_path).save(run, "stopped")
    loaded = RunStore(tmp_path).load_filters("stopped")
    assert loaded["steps_per_epoch"] == 844 and _same_filters(loaded["snapshots"], taken)


def test_test_probabilities_are_computed_once_then_read_from_the_run(tmp_path, tiny_run):
    store = RunStore(tmp_path)
    store.save(tiny_run, "mine")
    probs = torch.rand(10000, 10).softmax(1).numpy()
    calls = []
    first = store.test_probabilities("mine", lambda: calls.append(1) or probs)
    again = store.test_probabilities("mine", lambda: calls.append(1) or probs * 0)
    assert calls == [1] and (first == probs).all() and (again == probs).all()
    store.save(tiny_run, "mine", overwrite=True)  # new weights: their probabilities are computed anew
    assert (store.test_probabilities("mine", lambda: probs * 0) == 0).all()


@pytest.mark.numeric
def test_the_shipped_test_probabilities_are_those_of_the_weights_and_match_run_json(mnist):
    """The Results page reads them instead of classifying 10,000 digits on its first visit: they must be exactly what
    the saved weights (standard layout, as training tested them) give, for every shipped run."""
    from cnn_core.data import to_float
    from cnn_core.model import predict_proba

    store = RunStore(REPO / "checkpoints")
    labels = mnist.test_labels.numpy()
    for name in SHIPPED_RUNS:
        stored = store.test_probabilities(name, lambda: pytest.fail("the shipped run has no test_probs.npy"))
        # k / 10,000 in float64 both ways (numpy's mean of bools, the engine's int / int): exact
        assert (stored.argmax(1) == labels).mean() == store.load_info(name)["results"]["accuracy"]
    model = store.load_model("baseline")[0].eval()
    fresh = predict_proba(model, to_float(mnist.test_images)).numpy()
    stored = store.test_probabilities("baseline", lambda: None)
    assert (fresh.argmax(1) == stored.argmax(1)).all() and abs(fresh - stored).max() < 1e-5  # rounding of another CPU


def test_deleting_a_run_that_is_a_symlink_unlists_it_and_keeps_the_linked_files(tmp_path, tiny_run):
    """A run linked in from elsewhere: delete succeeds, the run leaves the listing, the link itself is gone (no hidden
    '.del-…' link left behind), and the files it pointed to (another folder's run) are left alone."""
    kept = RunStore(tmp_path / "archive").save(tiny_run, "kept")
    store = RunStore(tmp_path / "runs")
    (tmp_path / "runs").mkdir(exist_ok=True)
    os.symlink(kept, tmp_path / "runs" / "linked", target_is_directory=True)
    assert len(store.list_runs()) == 1
    store.delete("linked")
    assert store.list_runs() == [] and (kept / "model.pt").is_file()
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_copied_run_is_listed_and_loaded_under_its_folders_name(tmp_path, tiny_run):
    """The folder names a run: a copy (as the bench makes of the baseline) is not listed a second time as the original."""
    import shutil

    store = RunStore(tmp_path)
    store.save(tiny_run, "original")
    shutil.copytree(tmp_path / "original", tmp_path / "copy")
    assert [r["name"] for r in store.list_runs()] == ["copy", "original"]
    assert store.load_info("copy")["name"] == "original"  # its run.json still says where it came from


def test_a_saved_runs_history_has_the_shape_of_a_live_snapshot(tmp_path, tiny_run):
    """What Results draws for a saved run: status, no validation points of its own, and every training step with its
    epoch and loss as the run recorded them."""
    store = RunStore(tmp_path)
    store.save(tiny_run, "r")
    history = store.load_history("r")
    assert history["status"] == "finished" and history["vals"] == store.load_info("r")["vals"] and history["name"] == "r"
    shipped = RunStore(Path(__file__).resolve().parents[2] / "checkpoints").load_history("baseline")
    assert shipped["status"] == "finished" and shipped["vals"] == []  # run.json of older runs has neither
    live = tiny_run.snapshot()["steps"]
    assert [(s["step"], s["epoch"]) for s in history["steps"]] == [(s["step"], s["epoch"]) for s in live]
    # the same floats, written as text (repr) and read back: exact; default approx is slack
    assert [s["loss"] for s in history["steps"]] == pytest.approx([s["loss"] for s in live])
    assert set(history["steps"][0]) == {"step", "epoch", "loss"}


def test_filter_snapshots_load_in_step_order_and_nothing_but_tensors(tmp_path, tiny_run):
    store = RunStore(tmp_path)
    store.save(tiny_run, "r")
    f = store.path("r") / "filters.pt"
    saved = torch.load(f, weights_only=True)
    saved["snapshots"] = dict(reversed(list(saved["snapshots"].items())))  # written out of order
    torch.save(saved, f)
    assert list(store.load_filters("r")["snapshots"]) == sorted(saved["snapshots"])
    torch.save({"steps_per_epoch": 1, "snapshots": {}, "code": print}, f)  # a pickled callable: refused, not run
    with pytest.raises(CheckpointError, match="filters.pt is damaged or not a CNN Lab filters file"):
        store.load_filters("r")


def test_delete_says_why_it_refuses(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(PermissionError, match="'baseline' is a shipped run and cannot be deleted"):
        store.delete("baseline")
    with pytest.raises(CheckpointError, match="gone does not exist"):
        store.delete("gone")


def test_stored_test_probabilities_are_float32_and_a_file_of_another_type_is_made_again(tmp_path, tiny_run):
    import numpy as np

    store = RunStore(tmp_path)
    store.save(tiny_run, "r")
    probs = np.full((10000, 10), 0.1)  # float64, as a caller may compute them
    assert store.test_probabilities("r", lambda: probs).dtype == np.float32
    assert np.load(store.path("r") / "test_probs.npy").dtype == np.float32
    np.save(store.path("r") / "test_probs.npy", probs)  # the right shape, the wrong type: not trusted
    assert store.test_probabilities("r", lambda: probs * 0 + 0.2)[0, 0] == np.float32(0.2)  # 0.2 cast to float32 once: exact


def test_extra_results_are_added_replaced_and_refused_for_a_folder_that_is_not_a_run(tmp_path, tiny_run):
    """robustness.json and the stored defence views live beside a run: written whole (no temporary file left),
    replaced whole, read back; a folder without run.json is not a run to add them to."""
    store = RunStore(tmp_path)
    store.save(tiny_run, "r")
    path = store.write_extra("r", "robustness.json", {"pgd": {"0.1": 0.5}})
    assert path == tmp_path / "r" / "robustness.json" and store.read_extra("r", "robustness.json") == {"pgd": {"0.1": 0.5}}
    store.write_extra("r", "robustness.json", {"pgd": {}})
    assert json.loads(path.read_text()) == {"pgd": {}} and not list((tmp_path / "r").glob(".tmp-*"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="is not a saved run"):
        store.write_extra("empty", "robustness.json", {})


def test_a_runs_mtime_is_its_weights_files_modification_time(tmp_path, tiny_run):
    """Pages key their caches on it, so a run saved over is never served from the old cache entry."""
    store = RunStore(tmp_path)
    store.save(tiny_run, "r")
    assert store.mtime("r") == (tmp_path / "r" / "model.pt").stat().st_mtime
    os.utime(tmp_path / "r" / "model.pt", (1_000_000, 1_000_000))
    assert store.mtime("r") == 1_000_000


def test_only_folders_with_weights_are_runs_and_shipped_ones_are_marked(tmp_path, tiny_run):
    """A folder with run.json but no model.pt (a save cut short by hand, a copy half done) is not listed and does not
    exist; the shipped names are marked, so the pages lock their delete button."""
    store = RunStore(tmp_path)
    store.save(tiny_run, "mine")
    store.save(tiny_run, SHIPPED_RUNS[0])
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "run.json").write_text("{}")
    assert not store.exists("half") and store.exists("mine")
    assert [(r["name"], r["shipped"]) for r in store.list_runs()] == sorted([("mine", False), (SHIPPED_RUNS[0], True)])


def test_a_folder_that_cannot_be_written_only_means_computing_again(tmp_path, tiny_run, monkeypatch):
    """Shipped runs may sit in a read-only install: writing the cache fails before any temporary file exists, and
    the probabilities still come back (root ignores chmod, so the failing write is simulated)."""
    store = RunStore(tmp_path)
    store.save(tiny_run, "mine")

    def read_only(path, mode="r", *args, **kwargs):
        if "w" in mode:
            raise PermissionError(13, "Read-only file system", str(path))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(store_module, "open", read_only, raising=False)
    probs = np.full((10000, 10), 0.1, dtype=np.float32)
    assert (store.test_probabilities("mine", lambda: probs) == probs).all()  # float32 in, float32 out: exact
    assert not list((tmp_path / "mine").glob(".tmp-*"))
    with pytest.raises(CheckpointError, match="is not a saved run"):
        store.write_arrays("nowhere", "views.npz", {"a": probs})
