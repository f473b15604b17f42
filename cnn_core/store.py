"""Saved runs: ``<root>/<name>/{model.pt, run.json, metrics.csv[, filters.pt, test_probs.npy, robustness.json,
defences.json, universal.npz]}``.

A save writes everything into a hidden temporary folder and renames it into place, so a run killed
mid-save never leaves a half-written run that ``list_runs`` shows. ``model.pt`` is a state_dict only
and loads with ``torch.load(..., weights_only=True)``; so does ``filters.pt``, the run's conv filters over
training time (``{"steps_per_epoch": int, "snapshots": {step: {"conv1.weight": …, "conv1.bias": …,
"conv2.weight": …, "conv2.bias": …}}}``), which runs saved before it existed (the shipped ones) do not have.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from .model import MnistCNN, count_parameters
from .training import Run, TrainConfig

DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "checkpoints"
RUNS_DIR_ENV = "CNN_LAB_RUNS_DIR"  # where runs are saved and the shipped ones are read, for the app and the CLI alike
BASELINE, BATCHNORM, ADV_TRAINED = "baseline", "batchnorm", "adv-trained"  # the shipped runs, the only protected ones
SHIPPED_RUNS = (BASELINE, BATCHNORM, ADV_TRAINED)
LECTURE_PAIR = (BASELINE, BATCHNORM)  # without / with BatchNorm: what the report and Results compare by default
ROBUSTNESS_FILE = "robustness.json"  # FGSM/PGD accuracy curves (`python -m cnn_core robustness`)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
FILTERS_FILE = "filters.pt"
PROBS_FILE = "test_probs.npy"  # the weights' class probabilities on the 10,000 test digits (Results page)
METRIC_COLUMNS = ["kind", "step", "epoch", "loss", "accuracy", "lr", "train_loss", "train_accuracy",
                  "val_loss", "val_accuracy", "train_seconds", "seconds", "images_per_s"]


class CheckpointError(RuntimeError):
    """A saved run is missing, damaged or does not fit the model; the message names the file."""


def sanitize_name(name: str) -> str:
    """Turn a user-given run name into a safe folder name, or raise ValueError.

    Spaces and other characters become '-'; path separators and leading dots cannot survive, so a
    name can never escape the store.
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip(".-_")[:64]
    if not cleaned or not _NAME.fullmatch(cleaned):
        raise ValueError(f"run name {name!r} has no usable characters (use letters, digits, '.', '_' or '-')")
    return cleaned


def default_root() -> Path:
    """$CNN_LAB_RUNS_DIR if set, else checkpoints/ in the repository."""
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_ROOT)


class RunStore:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_root()

    def path(self, name: str) -> Path:
        return self.root / sanitize_name(name)

    def exists(self, name: str) -> bool:
        p = self.path(name)
        return (p / "run.json").is_file() and (p / "model.pt").is_file()

    def list_runs(self) -> list[dict]:
        """run.json of every complete saved run, sorted by name; damaged ones carry an 'error'."""
        runs = []
        if not self.root.is_dir():
            return runs
        for p in sorted(self.root.iterdir()):
            if p.name.startswith(".") or not p.is_dir() or not (p / "model.pt").is_file():
                continue
            try:
                info = self.load_info(p.name)
            except CheckpointError as exc:
                info = {"name": p.name, "error": str(exc)}
            info["name"] = p.name  # the folder names the run: a copied or renamed folder is not listed as its origin
            info["shipped"] = p.name in SHIPPED_RUNS
            runs.append(info)
        return runs

    def save(self, run: Run, name: str | None = None, overwrite: bool = False) -> Path:
        """Write a finished or stopped run atomically, with the command that reproduces it; returns its folder.
        A stopped run keeps its curves and its best weights so far, has no test results (``results`` None) and
        says at which step it stopped."""
        if run.status not in ("finished", "stopped") or (run.status == "finished" and run.results is None):
            raise ValueError(f"only finished or stopped runs can be saved (run {run.name} is {run.status})")
        name = sanitize_name(name or run.name)
        final = self.root / name
        if final.exists() and not overwrite:
            raise FileExistsError(f"a run named {name!r} already exists in {self.root}")
        snap = run.snapshot()
        info = {
            "name": name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "status": snap["status"],
            "stopped_at_step": snap["progress"].get("step") if snap["status"] == "stopped" else None,
            "config": snap["config"],
            "results": snap["results"],
            "best": snap["best"],
            "vals": snap["vals"],
            "epochs": snap["epochs"],
            "timings": {
                "total_seconds": snap["total_seconds"],
                "seconds_per_epoch": _mean(e["seconds"] for e in snap["epochs"]),
                "train_images_per_s": _mean(e["images_per_s"] for e in snap["epochs"]),
                "device": str(run.device),
                "precision": snap["precision"],
                "torch_threads": torch.get_num_threads(),
                "peak_step_mib": snap["peak_step_mib"],
            },
            "param_count": count_parameters(run.model),
            "torch_version": torch.__version__,
            "command": train_command(run.config, name),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            torch.save({k: v.cpu() for k, v in run.model.state_dict().items()}, tmp / "model.pt")
            _write_metrics(tmp / "metrics.csv", snap["steps"], snap["vals"], snap["epochs"])
            if snap["filters"]["snapshots"]:  # those taken so far, for a stopped run
                torch.save(snap["filters"], tmp / FILTERS_FILE)
            (tmp / "run.json").write_text(json.dumps(info, indent=1))
            if final.exists():  # replace: move the old one aside first, delete it only after the swap
                old = self.root / f".old-{name}-{uuid.uuid4().hex[:8]}"
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def load_info(self, name: str) -> dict:
        f = self.path(name) / "run.json"
        try:
            info = json.loads(f.read_text())
            TrainConfig.from_dict(info["config"])
            return info
        except FileNotFoundError as exc:
            raise CheckpointError(f"{f} does not exist: no saved run named {name!r}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{f} is damaged or not a CNN Lab run ({exc})") from exc

    def load_model(self, name: str, device: str | torch.device = "cpu") -> tuple[MnistCNN, dict]:
        """(eval-mode model, run.json) of a saved run; CheckpointError names the bad file."""
        info = self.load_info(name)
        f = self.path(name) / "model.pt"
        model = MnistCNN(batchnorm=bool(info["config"]["batchnorm"]), conv=info["config"].get("conv", "builtin"))
        try:
            state = torch.load(f, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except FileNotFoundError as exc:
            raise CheckpointError(f"{f} does not exist") from exc
        except Exception as exc:  # unpickling errors, size/key mismatches
            raise CheckpointError(f"{f} could not be loaded into the model its run.json describes: {exc}") from exc
        return model.to(device).eval(), info

    def has_filters(self, name: str) -> bool:
        """Whether the saved run kept its filters over training time (runs saved before they were kept did not)."""
        return (self.path(name) / FILTERS_FILE).is_file()

    def load_filters(self, name: str) -> dict | None:
        """The run's filter snapshots, ``{"steps_per_epoch": int, "snapshots": {step: {param name: tensor}}}`` in
        step order, or None when it has none (older runs, the shipped ones). CheckpointError names a damaged file."""
        f = self.path(name) / FILTERS_FILE
        try:
            filters = torch.load(f, map_location="cpu", weights_only=True)
            filters["snapshots"] = dict(sorted(filters["snapshots"].items()))
            return filters
        except FileNotFoundError:
            return None
        except Exception as exc:  # unpickling errors, a file of another shape
            raise CheckpointError(f"{f} is damaged or not a CNN Lab filters file: {exc}") from exc

    def load_metrics(self, name: str) -> list[dict]:
        with open(self.path(name) / "metrics.csv", newline="") as fh:
            return list(csv.DictReader(fh))

    def load_history(self, name: str) -> dict:
        """A saved run in the shape of ``Run.snapshot()`` (name, config, steps, epochs, results)."""
        info = self.load_info(name)
        steps = [{"step": int(r["step"]), "epoch": int(r["epoch"]), "loss": float(r["loss"])}
                 for r in self.load_metrics(name) if r["kind"] == "step"]
        return {"status": "finished", "vals": [], **info, "steps": steps}

    def write_extra(self, name: str, filename: str, data: dict) -> Path:
        """Add or replace a JSON file (e.g. robustness.json) in a saved run, atomically (temp file + rename)."""
        folder = self.path(name)
        if not (folder / "run.json").is_file():
            raise CheckpointError(f"{folder} is not a saved run")
        tmp = folder / f".tmp-{filename}-{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, folder / filename)
        return folder / filename

    def read_extra(self, name: str, filename: str) -> dict | None:
        """A JSON file written by ``write_extra``, or None when the run has none (or it is unreadable)."""
        try:
            return json.loads((self.path(name) / filename).read_text())
        except (OSError, ValueError):
            return None

    def write_arrays(self, name: str, filename: str, arrays: dict[str, np.ndarray]) -> Path:
        """Add or replace a .npz of named arrays in a saved run (``write_extra`` for arrays), atomically."""
        folder = self.path(name)
        if not (folder / "run.json").is_file():
            raise CheckpointError(f"{folder} is not a saved run")
        tmp = folder / f".tmp-{filename}-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, folder / filename)
        return folder / filename

    def read_arrays(self, name: str, filename: str) -> dict[str, np.ndarray] | None:
        """The arrays written by ``write_arrays``, or None when the run has none (or it is unreadable)."""
        try:
            with np.load(self.path(name) / filename) as npz:
                return {k: npz[k] for k in npz.files}
        except (OSError, ValueError, CheckpointError):
            return None

    def test_probabilities(self, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The run's class probabilities on the 10,000 test digits (10,000×10 float32): stored in the run the first
        time ``compute()`` makes them and read from there ever after (a saved run's weights never change; saving over
        a run replaces its whole folder). A folder that cannot be written to only means computing them again."""
        path = self.path(name) / PROBS_FILE
        try:
            probs = np.load(path)
            if probs.shape == (10000, 10) and probs.dtype == np.float32:
                return probs
        except (OSError, ValueError):
            pass
        probs = np.asarray(compute(), dtype=np.float32)
        tmp = path.with_name(f".tmp-{PROBS_FILE}-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as f:
                np.save(f, probs)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
        return probs

    def mtime(self, name: str) -> float:
        """Modification time of the run's weights (a cache key that changes when a run is replaced)."""
        return (self.path(name) / "model.pt").stat().st_mtime

    def delete(self, name: str) -> None:
        """Delete a saved run. Shipped runs are protected."""
        name = sanitize_name(name)
        if name in SHIPPED_RUNS:
            raise PermissionError(f"{name!r} is a shipped run and cannot be deleted")
        target = self.root / name
        if not target.is_dir():
            raise CheckpointError(f"{target} does not exist")
        trash = self.root / f".del-{name}-{uuid.uuid4().hex[:8]}"
        os.replace(target, trash)  # disappears from the listing atomically
        if trash.is_symlink():  # a run linked in from elsewhere: the link goes, what it points to stays
            trash.unlink()
        else:
            shutil.rmtree(trash, ignore_errors=True)


def train_command(cfg: TrainConfig, name: str) -> str:
    """The CLI command that reproduces a run, every config field explicit."""
    args = ["python", "-m", "cnn_core", "train", "--name", name]
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        args += [f"--{f.name.replace('_', '-')}", str(value).lower() if isinstance(value, bool) else str(value)]
    return shlex.join(args)


def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _write_metrics(path: Path, steps: list[dict], vals: list[dict], epochs: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for s in steps:
            w.writerow({"kind": "step", **s})
        for v in vals:
            w.writerow({"kind": "val", **v})
        for e in epochs:
            w.writerow({"kind": "epoch", **e})
