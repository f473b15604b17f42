"""Training engine: a validated config, a stoppable run with a thread-safe history, evaluation.

A ``Run`` trains in the calling thread (``run()``) or a worker thread (``start()``); it never touches
any UI. Another thread may call ``stop()`` (honoured before the next step) and ``snapshot()`` (a
consistent copy of status, progress and history) at any time.
"""

from __future__ import annotations

import copy
import math
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .data import Mnist, iterate_batches, random_shift, stratified_split, to_float
from .model import MnistCNN
from .robust import fgsm, pgd

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
SCHEDULES = ("constant", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda", "mps")
ADVERSARIAL = ("none", "fgsm", "pgd")
CONVS = ("builtin", "unfold")  # nn.Conv2d, or cnn_core.unfold_conv's W·unfold(X) + b (same weights, same results)


@dataclass
class TrainConfig:
    """Every knob of a training run. Defaults are the lecture defaults (fast on a laptop CPU)."""

    batchnorm: bool = False
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 2
    schedule: str = "constant"
    seed: int = 0
    val_fraction: float = 0.1
    train_subset: int = 0  # 0 = the whole training split
    augment: bool = False  # random shifts of up to 2 pixels during training
    adversarial: str = "none"  # adversarial training: none, fgsm or pgd examples mixed into every batch
    adv_epsilon: float = 0.1  # L∞ budget of those examples, pixels in [0, 1]
    adv_steps: int = 5  # PGD steps (step size 2.5·ε/steps, random start)
    adv_mix: float = 0.5  # loss = (1 − mix)·L(clean) + mix·L(adversarial)
    device: str = "auto"
    conv: str = "builtin"  # how conv1/conv2 compute: builtin or unfold (CONVS); absent from older run.json files

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the field and its allowed range; return self when valid."""

        def bad(field: str, allowed: str) -> None:
            raise ValueError(f"{field} must be {allowed}, got {getattr(self, field)!r}")

        for flag in ("batchnorm", "augment"):
            if not isinstance(getattr(self, flag), bool):
                bad(flag, "true or false")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", "one of " + ", ".join(OPTIMIZERS))
        if self.schedule not in SCHEDULES:
            bad("schedule", "one of " + ", ".join(SCHEDULES))
        if self.device not in DEVICES:
            bad("device", "one of " + ", ".join(DEVICES))
        if self.adversarial not in ADVERSARIAL:
            bad("adversarial", "one of " + ", ".join(ADVERSARIAL))
        if self.conv not in CONVS:
            bad("conv", "one of " + ", ".join(CONVS))
        checks = {
            "lr": (0 < self.lr <= 10, "in (0, 10]"),
            "momentum": (0 <= self.momentum < 1, "in [0, 1)"),
            "weight_decay": (0 <= self.weight_decay <= 1, "in [0, 1]"),
            "batch_size": (_is_int(self.batch_size) and 1 <= self.batch_size <= 8192, "an integer in [1, 8192]"),
            "epochs": (_is_int(self.epochs) and 1 <= self.epochs <= 200, "an integer in [1, 200]"),
            "seed": (_is_int(self.seed) and 0 <= self.seed < 2**63, "an integer in [0, 2^63)"),
            "val_fraction": (0 < self.val_fraction <= 0.5, "in (0, 0.5]"),
            "train_subset": (_is_int(self.train_subset) and 0 <= self.train_subset, "an integer ≥ 0 (0 = all)"),
            "adv_epsilon": (0 < self.adv_epsilon <= 1, "in (0, 1]"),
            "adv_steps": (_is_int(self.adv_steps) and 1 <= self.adv_steps <= 100, "an integer in [1, 100]"),
            "adv_mix": (0 < self.adv_mix <= 1, "in (0, 1]"),
        }
        for field, (ok, allowed) in checks.items():
            if not ok:
                bad(field, allowed)
        return self

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**values).validate()


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def resolve_device(name: str = "auto") -> torch.device:
    """auto → cuda if available, else mps, else cpu. Asking for one that is absent is a ValueError."""
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    if not available.get(name, False):
        raise ValueError(f"device must be one available on this machine ({', '.join(d for d, ok in available.items() if ok)}"
                         f" or auto), got {name!r}")
    return torch.device(name)


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    momentum = cfg.momentum if cfg.optimizer == "momentum" else 0.0
    return torch.optim.SGD(params, lr=cfg.lr, momentum=momentum, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, total_steps: int):
    """Per-step schedule, or None for a constant learning rate."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps)
    return None


def evaluate(
    model: nn.Module,
    images_u8: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 2000,
    with_details: bool = True,
) -> dict:
    """Loss, accuracy, top-5 accuracy, 10×10 confusion matrix (rows = true, columns = predicted) and
    per-class precision/recall/F1 of ``model`` on uint8 images. Restores the model's train/eval mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, top5 = 0.0, 0
    confusion = torch.zeros(10, 10, dtype=torch.long)
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            x = to_float(images_u8[start : start + batch_size]).to(device)
            y = labels[start : start + batch_size].to(device)
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            top5 += (logits.topk(5, dim=1).indices == y[:, None]).any(dim=1).sum().item()
            confusion += torch.bincount(y.cpu() * 10 + logits.argmax(1).cpu(), minlength=100).view(10, 10)
    model.train(was_training)
    n = len(labels)
    out = {"loss": total_loss / n, "accuracy": confusion.trace().item() / n, "n": n}
    if with_details:
        out.update({"top5_accuracy": top5 / n, "confusion": confusion.tolist(), "per_class": per_class_metrics(confusion)})
    return out


def per_class_metrics(confusion: torch.Tensor) -> list[dict]:
    """precision_c = C[c,c] / Σ_i C[i,c];  recall_c = C[c,c] / Σ_j C[c,j];  F1 = 2PR / (P + R)."""
    c = confusion.double()
    tp = c.diag()
    precision = tp / c.sum(0).clamp(min=1)
    recall = tp / c.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return [
        {"class": k, "precision": precision[k].item(), "recall": recall[k].item(), "f1": f1[k].item(), "support": int(c[k].sum())}
        for k in range(len(tp))
    ]


class Run:
    """One training run that owns its model. Safe to ``snapshot()``/``stop()`` from other threads."""

    def __init__(
        self,
        config: TrainConfig,
        data: Mnist,
        name: str | None = None,
        callback: Callable[[str, dict], None] | None = None,
        threads: int | Callable[[], int] | None = None,
    ):
        """``threads``: intra-op threads for this run's worker (a number, or a function asked before
        every step so a registry can rebalance cores as runs start and end); None leaves torch's."""
        self.config = config.validate()
        self.data = data
        self.id = uuid.uuid4().hex[:8]
        self.name = name or f"{'bn' if config.batchnorm else 'nobn'}-{self.id}"
        self.callback = callback
        self.threads = threads
        self.device = resolve_device(config.device)
        self.model = MnistCNN(config.batchnorm, generator=torch.Generator().manual_seed(config.seed),
                              conv=config.conv).to(self.device)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.status = "pending"  # → running → finished | stopped | failed
        self.steps: list[dict] = []
        self.epochs: list[dict] = []
        self.progress: dict = {}
        self.results: dict | None = None
        self.error: str | None = None
        self.best = {"epoch": 0, "val_accuracy": -1.0}
        self.best_state: dict | None = None
        self.started_at: float | None = None
        self.total_seconds: float | None = None

    # ----- control -------------------------------------------------------------------------
    def start(self) -> Run:
        """Train in a daemon worker thread; returns at once."""
        self._thread = threading.Thread(target=self.run, name=f"run-{self.id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop; it does so before its next optimisation step."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a started run ends; True when it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.done

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "failed")

    def snapshot(self) -> dict:
        """A consistent copy of everything a UI shows. Step and epoch records are never changed once appended,
        so their lists are copied shallowly (a deep copy of 21k steps took 60 ms, on every 1 s poll); the rest is
        deep-copied."""
        with self._lock:
            snap = copy.deepcopy({
                "id": self.id,
                "name": self.name,
                "status": self.status,
                "config": asdict(self.config),
                "progress": self.progress,
                "results": self.results,
                "best": self.best,
                "error": self.error,
                "total_seconds": self.total_seconds,
            })
            snap["steps"], snap["epochs"] = list(self.steps), list(self.epochs)
            return snap

    # ----- training ------------------------------------------------------------------------
    def run(self) -> Run:
        """Train in the calling thread until done or stopped; never raises (see ``error``)."""
        try:
            self._train()
        except Exception:  # a UI must see the failure, not a dead thread
            self._end("failed", error=traceback.format_exc(limit=4))
        return self

    def _end(self, status: str, **fields) -> None:
        """Set the final status together with the total time, so no reader sees one without the other."""
        with self._lock:
            for name, value in fields.items():
                setattr(self, name, value)
            self.total_seconds = time.perf_counter() - self.started_at if self.started_at else 0.0
            self.status = status

    def _apply_threads(self) -> None:
        """torch.set_num_threads is per calling thread here (OpenMP), so this only touches this run."""
        if self.threads is not None:
            k = self.threads() if callable(self.threads) else self.threads
            if k != torch.get_num_threads():
                torch.set_num_threads(k)

    def _emit(self, event: str, info: dict) -> None:
        if self.callback:
            self.callback(event, info)

    def _adversarial_batch(self, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        """FGSM or PGD (random start, seeded by step) examples of the batch at ε = adv_epsilon, made with the
        current weights in eval mode (BatchNorm's running statistics are not fed attack batches)."""
        cfg = self.config
        self.model.eval()
        if cfg.adversarial == "fgsm":
            x_adv = fgsm(self.model, x, y, cfg.adv_epsilon)
        else:
            x_adv = pgd(self.model, x, y, cfg.adv_epsilon, cfg.adv_steps, seed=(cfg.seed * 100_003 + step) % 2**63)
        self.model.train()
        return x_adv

    def _train(self) -> None:
        cfg, data, dev = self.config, self.data, self.device
        train_idx, val_idx = stratified_split(data.train_labels, cfg.val_fraction, cfg.seed)
        order_gen = torch.Generator().manual_seed(cfg.seed)
        if cfg.train_subset:
            train_idx = train_idx[torch.randperm(len(train_idx), generator=order_gen)[: cfg.train_subset]]
        images, labels = data.train_images.to(dev), data.train_labels.to(dev)
        steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
        total_steps = steps_per_epoch * cfg.epochs
        opt = make_optimizer(cfg, self.model.parameters())
        sched = make_scheduler(cfg, opt, total_steps)
        self._apply_threads()
        self.started_at = time.perf_counter()
        with self._lock:
            self.status = "running"
            self.progress = {"epoch": 0, "epochs": cfg.epochs, "step": 0, "total_steps": total_steps,
                             "images_per_s": 0.0, "eta_s": None, "elapsed_s": 0.0, "train_size": len(train_idx),
                             "val_size": len(val_idx)}
        step = 0
        for epoch in range(1, cfg.epochs + 1):
            self.model.train()
            t0 = time.perf_counter()
            seen = loss_sum = correct = 0
            for x, y in iterate_batches(images, labels, train_idx, cfg.batch_size, order_gen, dev):
                if self._stop.is_set():
                    break
                self._apply_threads()
                if cfg.augment:
                    x = random_shift(x, 2, order_gen)
                logits = self.model(x)
                loss = F.cross_entropy(logits, y)
                if cfg.adversarial != "none":
                    x_adv = self._adversarial_batch(x, y, step)
                    loss = (1 - cfg.adv_mix) * loss + cfg.adv_mix * F.cross_entropy(self.model(x_adv), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched:
                    sched.step()
                step += 1
                n, loss_v, acc_n = len(y), loss.item(), (logits.argmax(1) == y).sum().item()
                seen, loss_sum, correct = seen + n, loss_sum + loss_v * n, correct + acc_n
                elapsed = time.perf_counter() - t0
                ips = seen / elapsed if elapsed > 0 else 0.0
                record = {"step": step, "epoch": epoch, "loss": loss_v, "accuracy": acc_n / n, "lr": opt.param_groups[0]["lr"]}
                with self._lock:
                    self.steps.append(record)
                    self.progress.update(epoch=epoch, step=step, images_per_s=ips, threads=torch.get_num_threads(),
                                         elapsed_s=time.perf_counter() - self.started_at,
                                         eta_s=(total_steps - step) * cfg.batch_size / ips if ips else None)
                self._emit("step", record)
            if self._stop.is_set():
                self._end("stopped")
                return
            train_seconds = time.perf_counter() - t0
            val = evaluate(self.model, data.train_images[val_idx], data.train_labels[val_idx], with_details=False)
            summary = {"epoch": epoch, "step": step, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                       "val_loss": val["loss"], "val_accuracy": val["accuracy"], "train_seconds": train_seconds,
                       "seconds": time.perf_counter() - t0, "images_per_s": seen / train_seconds}
            with self._lock:
                self.epochs.append(summary)
                if val["accuracy"] > self.best["val_accuracy"]:
                    self.best = {"epoch": epoch, "val_accuracy": val["accuracy"]}
                    self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self._emit("epoch", summary)
        self.model.load_state_dict(self.best_state)
        results = evaluate(self.model, data.test_images, data.test_labels)
        self._end("finished", results=results)
        self._emit("finished", results)
