"""Training engine: a validated config, a stoppable run with a thread-safe history, evaluation.

A ``Run`` trains in the calling thread (``run()``) or a worker thread (``start()``); it never touches
any UI. Another thread may call ``stop()`` (honoured before the next step) and ``snapshot()`` (a
consistent copy of status, progress and history) at any time.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .data import Mnist, iterate_batches, random_shift, stratified_split, to_float, training_digits
from .memory import peak_bytes
from .model import MnistCNN
from .robust_attacks.fgsm import fgsm
from .robust_attacks.pgd import pgd

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
SCHEDULES = ("constant", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda", "mps")
ADVERSARIAL = ("none", "fgsm", "pgd")
PRECISIONS = ("auto", "fp32", "bf16")
EVAL_BATCH = 500  # evaluation batches: small enough that Stop is honoured within a fraction of a second
CONVS = ("builtin", "unfold")  # nn.Conv2d, or cnn_core.unfold_conv's W·unfold(X) + b (same weights, same results)
# Filter snapshots (conv1 and conv2 weights and biases, 9,568 numbers, ~38 KB) are kept at step 0, at these early
# steps and at every epoch end. The early steps are spaced ~4–5× apart because that is where conv1 changes fastest
# relative to what it already is: one Adam step moves each weight by about lr (1e-3, invisible against the ±1/3 of
# its initialisation), a few tens of steps by a visible fraction, and after ~100 steps the filters drift slowly,
# which the epoch ends show well enough. Steps beyond the run's length are left out.
EARLY_SNAPSHOT_STEPS = (1, 5, 20, 100)
SNAPSHOT_PARAMS = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias")


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
    # bf16 autocast runs convolutions and matrix products in bfloat16 (weights, optimizer and loss stay float32):
    # 2–2.7× the images/s on a CPU with AMX/AVX512-BF16 (README), same accuracy. auto = bf16 where the device
    # computes it natively (such CPUs, CUDA with bf16), else fp32; the run records what it used.
    precision: str = "auto"
    # Validation curve: this many evaluations spread evenly over the run (epoch ends included), each on the same
    # stratified subset of the validation split, sized to cost about 8% of the training time (see val_size).
    val_points: int = 10
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
        if self.precision not in PRECISIONS:
            bad("precision", "one of " + ", ".join(PRECISIONS))
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
            "val_points": (_is_int(self.val_points) and 1 <= self.val_points <= 1000, "an integer in [1, 1000]"),
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


# "99% fast": the assignment network unchanged (no BatchNorm), the whole training split, one-cycle Adam with a large
# batch — ≥ 99.0% test accuracy in a few tens of seconds on 2 CPU cores (README, measured over 3 seeds).
FAST_99 = TrainConfig(optimizer="adam", schedule="onecycle", lr=3e-3, batch_size=256, epochs=3, train_subset=0)


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


# Set to 0, auto never picks bf16: an AMX machine then computes what a CPU without bf16 computes (`make test-fp32`).
BF16_ENV = "CNN_LAB_BF16"


def resolve_precision(name: str, device: torch.device) -> str:
    """auto → bf16 where ``device`` computes bfloat16 natively (CUDA with bf16; a CPU with AMX or AVX512-BF16, read
    from /proc/cpuinfo), else fp32. Emulated bf16 is slower than fp32, so auto never picks it there; nor where the
    environment sets ``CNN_LAB_BF16=0``."""
    if name != "auto":
        return name
    if os.environ.get(BF16_ENV) == "0":
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text().split()
        except OSError:
            flags = []
        if {"amx_bf16", "avx512_bf16"} & set(flags) and torch.backends.mkldnn.is_available():
            return "bf16"
    return "fp32"


def val_size(cfg: TrainConfig, train_size: int, val_split: int) -> int:
    """Digits in the fixed validation subset: a forward pass costs about a third of a training step, so
    val_points evaluations of train_images / (4 · val_points) digits cost ≈ 8% of the training time.
    At least 300 (accuracy to 1/3 point), at most the whole validation split."""
    return min(val_split, max(300, train_size * cfg.epochs // (4 * cfg.val_points)))


def validation_steps(total_steps: int, steps_per_epoch: int, points: int) -> set[int]:
    """Steps after which the run validates: ``points`` evenly spaced over the run, plus every epoch end."""
    even = {max(1, round(total_steps * k / points)) for k in range(1, points + 1)}
    return even | set(range(steps_per_epoch, total_steps + 1, steps_per_epoch))


def snapshot_steps(total_steps: int, steps_per_epoch: int) -> list[int]:
    """Steps after which a run keeps its conv filters: 0 (before any update), the early steps that fit, every epoch end."""
    early = {s for s in EARLY_SNAPSHOT_STEPS if s <= total_steps}
    return sorted({0} | early | set(range(steps_per_epoch, total_steps + 1, steps_per_epoch)))


def snapshot_label(step: int, steps_per_epoch: int) -> str:
    """'step 0 · before training', 'step 20 · epoch 0.25', 'step 158 · epoch 2' (epochs done, two decimals)."""
    if step == 0:
        return "step 0 · before training"
    return f"step {step:,} · epoch {round(step / steps_per_epoch, 2):g}"


def conv_params(model: nn.Module) -> dict[str, torch.Tensor]:
    """A float32 CPU copy of conv1's and conv2's weights and biases (SNAPSHOT_PARAMS), in the standard layout:
    the copies share nothing with the model, so a reader can use them while it trains."""
    params = dict(model.named_parameters())
    return {k: params[k].detach().to("cpu", torch.float32, memory_format=torch.contiguous_format, copy=True)
            for k in SNAPSHOT_PARAMS}


def run_name(cfg: TrainConfig, run_id: str) -> str:
    """A name that says what a run is: bn-adam-1e-3-2ep-10k[-b256][-aug][-cosine][-pgd0.2][-unfold][-s1]-a1b2
    (batch size and convolution only when not the defaults, 128 and builtin)."""
    train = training_digits(cfg.train_subset, cfg.val_fraction)
    parts = ["bn" if cfg.batchnorm else "nobn", cfg.optimizer, short_number(cfg.lr), f"{cfg.epochs}ep", f"{train / 1000:g}k"]
    parts += [f"b{cfg.batch_size}"] * (cfg.batch_size != 128)
    parts += ["aug"] * cfg.augment + [cfg.schedule] * (cfg.schedule != "constant")
    parts += [f"{cfg.adversarial}{cfg.adv_epsilon:g}"] * (cfg.adversarial != "none") + ["unfold"] * (cfg.conv == "unfold")
    parts += [f"s{cfg.seed}"] * (cfg.seed != 0)
    return "-".join([*parts, run_id[:4]])


def short_number(v: float) -> str:
    """0.001 → 1e-3, 0.0015 → 1.5e-3, 0.05 → 5e-2, 0.1 → 0.1, 2 → 2."""
    if v >= 0.1:
        return f"{v:g}"
    mantissa, exponent = f"{v:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def measure_speed(batchnorm: bool, precision: str, device: torch.device, threads: int, batch_size: int = 128,
                  steps: int = 6) -> dict:
    """Images per second of this machine for training steps and for evaluation, measured on random digits the
    way a Run computes (channels_last, the precision), with ``threads`` intra-op threads. Takes a few tenths of a
    second; see ``measure_speeds`` for runs that train at the same time."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = MnistCNN(batchnorm, generator=torch.Generator().manual_seed(0)).to(device, memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters())
        x = torch.rand(batch_size, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(
            device, memory_format=torch.channels_last)
        y = torch.arange(batch_size, device=device) % 10
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        times = []
        for _ in range(steps + 1):  # the first step warms up
            t0 = time.perf_counter()
            with autocast:
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
            times.append(time.perf_counter() - t0)
        model.eval()
        with torch.inference_mode(), autocast:
            model(x).float().sum().item()
            t0 = time.perf_counter()
            model(x).float().sum().item()
            eval_seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(previous)
    return {"train": batch_size / statistics.median(times[1:]), "eval": batch_size / eval_seconds}


def measure_speeds(batchnorms: list[bool], precision: str, device: torch.device) -> list[dict]:
    """``measure_speed`` of several runs measured at the same time, the cores shared out among them as the
    registry does: what each run of a pair really gets (on 2 cores, two runs at once each train ~30% slower than
    one alone, README)."""
    threads = max(1, (os.cpu_count() or 1) // len(batchnorms))
    results: list[dict | BaseException] = [{}] * len(batchnorms)

    def measure(i: int) -> None:
        try:
            results[i] = measure_speed(batchnorms[i], precision, device, threads)
        except BaseException as exc:  # raised in the caller below: a thread would only print it
            results[i] = exc

    workers = [threading.Thread(target=measure, args=(i,)) for i in range(len(batchnorms))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def estimate_seconds(cfg: TrainConfig, speed: dict, train_size: int, val_split: int = 6000, test_size: int = 10000) -> float:
    """Seconds a run of ``cfg`` should take at ``speed`` (``measure_speed``): its training images (adversarial
    training costs about 3× with FGSM, (steps + 2)× with PGD: one forward and backward per attack step and one more
    for the adversarial loss), its validation points on the validation subset, and the test set."""
    steps_per_epoch = math.ceil(train_size / cfg.batch_size)
    points = len(validation_steps(steps_per_epoch * cfg.epochs, steps_per_epoch, cfg.val_points))
    evaluated = points * val_size(cfg, train_size, val_split) + test_size
    passes = {"none": 1, "fgsm": 3, "pgd": cfg.adv_steps + 2}[cfg.adversarial]
    return passes * train_size * cfg.epochs / speed["train"] + evaluated / speed["eval"]


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


def training_batches(cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor, train_idx: torch.Tensor,
                     order: torch.Generator, device: torch.device):
    """Training batches of every epoch in turn, channels_last on ``device``: one permutation of ``train_idx`` per
    epoch drawn from ``order``, and — with ``cfg.augment`` — shifts drawn from a generator of their own, so runs
    that differ in batch size, optimizer, augmentation or anything else but the seed see the digits in the same
    order (a sweep compares one field, not two)."""
    shifts = torch.Generator().manual_seed(cfg.seed + 1)
    for _ in range(cfg.epochs):
        for x, y in iterate_batches(images, labels, train_idx, cfg.batch_size, order, device):
            if cfg.augment:
                x = random_shift(x, 2, shifts)
            yield x.contiguous(memory_format=torch.channels_last), y


class Stopped(Exception):
    """Raised inside a run at its next stop point (a training step or an evaluation batch) once Stop was asked."""


def evaluate(
    model: nn.Module,
    images_u8: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 2000,
    with_details: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> dict:
    """Loss, accuracy, top-5 accuracy, 10×10 confusion matrix (rows = true, columns = predicted) and
    per-class precision/recall/F1 of ``model`` on uint8 images (in the caller's autocast, if any; the loss in float32).
    Restores the model's train/eval mode. ``on_batch(digits done)`` is called after every batch (progress; it may raise to stop)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    top5 = torch.zeros((), dtype=torch.long, device=device)
    confusion = torch.zeros(100, dtype=torch.long, device=device)
    try:
        with torch.inference_mode():
            for start in range(0, len(labels), batch_size):
                x = to_float(images_u8[start : start + batch_size].to(device))
                y = labels[start : start + batch_size].to(device)
                logits = model(x).float()
                total_loss += F.cross_entropy(logits, y, reduction="sum")
                top5 += (logits.topk(5, dim=1).indices == y[:, None]).any(dim=1).sum()
                confusion += torch.bincount(y * 10 + logits.argmax(1), minlength=100)
                if on_batch:
                    on_batch(min(start + batch_size, len(labels)))
    finally:
        model.train(was_training)
    n = len(labels)
    confusion = confusion.view(10, 10).cpu()
    out = {"loss": total_loss.item() / n, "accuracy": confusion.trace().item() / n, "n": n}
    if with_details:
        out.update({"top5_accuracy": top5.item() / n, "confusion": confusion.tolist(), "per_class": per_class_metrics(confusion)})
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
    """One training run that owns its model. Safe to ``snapshot()``/``stop()`` from other threads.

    The loop, at a glance (``_train``): ``_train_steps`` until the next validation point → ``_validate`` on
    the fixed subset (best weights kept) → … → the best weights back → ``_test`` on the 10,000 test digits.
    """

    SYNC_EVERY = 8  # steps between reads of losses from the device: no per-step host sync (stalls a GPU)

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
        self.name = name or run_name(config, self.id)
        self.callback = callback
        self.threads = threads
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        # channels_last: oneDNN's and cuDNN's fast convolution layout (+20–25% here, README); same numbers.
        self.model = MnistCNN(config.batchnorm, generator=torch.Generator().manual_seed(config.seed),
                              conv=config.conv).to(self.device, memory_format=torch.channels_last)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.status = "pending"  # (→ queued) → running → finished | stopped | failed; queued → cancelled
        self.steps: list[dict] = []
        self.vals: list[dict] = []  # one record per validation point
        self.epochs: list[dict] = []
        self.progress: dict = {}
        self.results: dict | None = None
        self.error: str | None = None
        self.best = {"epoch": 0, "step": 0, "val_accuracy": -1.0}
        self.best_state: dict | None = None
        # Peak bytes a training step allocates (activations, gradients, optimizer state), measured on a copy
        # before training (_probe): what the run's training costs in memory beyond its weights and data.
        self.peak_step_bytes: int | None = None
        self.started_at: float | None = None
        self.total_seconds: float | None = None
        # step → conv_params at that step (snapshot_steps), and the steps per epoch that label them. Each entry is
        # added once and never changed, so snapshot() hands out the same tensors without copying them.
        self.filters: dict[int, dict[str, torch.Tensor]] = {}
        self.steps_per_epoch: int | None = None
        # conv1's weight and bias as of the latest recorded step, copied by the training thread itself between two
        # steps (every SYNC_EVERY steps, never torn by an optimizer step): what a page shows live. Replaced, never
        # changed in place.
        self.latest_conv1: dict | None = None

    # ----- control -------------------------------------------------------------------------
    def start(self) -> Run:
        """Train in a daemon worker thread; returns at once (the run is pending until the worker sets it running)."""
        with self._lock:
            self.status = "pending"
            self._thread = threading.Thread(target=self.run, name=f"run-{self.id}", daemon=True)
        self._thread.start()
        return self

    def queue(self) -> Run:
        """Mark a run that waits for a free slot (a registry's queue) as queued, until start() or cancel(); a run that
        has started or ended keeps its status. A registry changes a run's status only through these three."""
        with self._lock:
            if self._thread is None and not self.done:
                self.status = "queued"
        return self

    def stop(self) -> None:
        """Ask the run to stop: honoured before the next training step or evaluation batch (well under 1 s).
        The run then holds its best weights so far."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a started run ends; True when it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.done

    def cancel(self) -> bool:
        """End a run that has not started (a queued one) as cancelled; False if it has started."""
        with self._lock:
            if self._thread is not None or self.done:
                return False
            self.status, self.total_seconds = "cancelled", 0.0
            return True

    def best_weights(self) -> tuple[int, dict] | None:
        """(step, state_dict) of the best weights so far, None before the first validation: safe to read while the
        run trains — each best is a fresh copy that is replaced, never changed. Copy them into a model of your own."""
        with self._lock:
            return None if self.best_state is None else (self.best["step"], self.best_state)

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "failed", "cancelled")

    def snapshot(self) -> dict:
        """A consistent copy of everything a UI shows. Step, validation and epoch records are never changed once
        appended, so their lists are copied shallowly (a deep copy of 21k steps took 60 ms, on every 1 s poll);
        the rest is deep-copied. Filter snapshots and the latest conv1 copy are never changed either: "filters"
        ({"steps_per_epoch", "snapshots": step → tensors}) and "latest_conv1" ({"step", "weight", "bias"} or None)
        share their tensors with the run, so readers must not modify them."""
        with self._lock:
            snap = copy.deepcopy({
                "id": self.id,
                "name": self.name,
                "status": self.status,
                "config": asdict(self.config),
                "precision": self.precision,
                "progress": self.progress,
                "results": self.results,
                "best": self.best,
                "error": self.error,
                "total_seconds": self.total_seconds,
                "peak_step_mib": None if self.peak_step_bytes is None else self.peak_step_bytes / 2**20,
            })
            snap["steps"], snap["vals"], snap["epochs"] = list(self.steps), list(self.vals), list(self.epochs)
            snap["filters"] = {"steps_per_epoch": self.steps_per_epoch, "snapshots": dict(self.filters)}
            snap["latest_conv1"] = self.latest_conv1
            return snap

    # ----- training ------------------------------------------------------------------------
    def run(self) -> Run:
        """Train in the calling thread until done or stopped; never raises (see ``error``)."""
        try:
            self._train()
        except Stopped:
            self._restore_best()
            self._end("stopped")
        except Exception:  # a UI must see the failure, not a dead thread
            self._end("failed", error=traceback.format_exc(limit=4))
        for event in ("stopped", "ended") if self.status == "stopped" else ("ended",):
            try:
                self._emit(event, {"status": self.status})
            except Exception:  # the run has ended and says how; a failing listener must not escape the worker
                pass
        return self

    def _end(self, status: str, **fields) -> None:
        """Set the final status together with the total time, so no reader sees one without the other."""
        with self._lock:
            for name, value in fields.items():
                setattr(self, name, value)
            self.total_seconds = time.perf_counter() - self.started_at if self.started_at else 0.0
            self.status = status
            self.progress["phase"] = status

    def _apply_threads(self) -> None:
        """torch.set_num_threads is per calling thread here (OpenMP), so this only touches this run."""
        if self.threads is not None:
            k = self.threads() if callable(self.threads) else self.threads
            if k != torch.get_num_threads():
                torch.set_num_threads(k)

    def _emit(self, event: str, info: dict) -> None:
        if self.callback:
            self.callback(event, info)

    def _set_phase(self, phase: str, done: int, total: int) -> None:
        """What the run is doing now ("training", "validating", "testing") and how far that phase is."""
        with self._lock:
            self.progress.update(phase=phase, phase_done=done, phase_total=total,
                                 elapsed_s=time.perf_counter() - self.started_at)

    def _check_stop(self, done: int = 0) -> None:
        if self._stop.is_set():
            raise Stopped
        if done:
            with self._lock:
                self.progress["phase_done"] = done

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

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

    def _loss(self, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits) of one batch, adversarial examples mixed in when configured."""
        cfg = self.config
        with self._autocast():
            logits = self.model(x)
            loss = F.cross_entropy(logits.float(), y)
        if cfg.adversarial != "none":
            x_adv = self._adversarial_batch(x, y, step)
            with self._autocast():
                loss = (1 - cfg.adv_mix) * loss + cfg.adv_mix * F.cross_entropy(self.model(x_adv).float(), y)
        return loss, logits

    def _train(self) -> None:
        cfg, data, dev = self.config, self.data, self.device
        train_idx, val_idx = stratified_split(data.train_labels, cfg.val_fraction, cfg.seed)
        self._order = torch.Generator().manual_seed(cfg.seed)
        if cfg.train_subset:
            train_idx = train_idx[torch.randperm(len(train_idx), generator=self._order)[: cfg.train_subset]]
        n_val = val_size(cfg, len(train_idx), len(val_idx))
        if n_val < len(val_idx):  # a fixed, stratified subset of the validation split
            val_idx = val_idx[stratified_split(data.train_labels[val_idx], 1 - n_val / len(val_idx), cfg.seed)[0]]
        self._val = data.train_images[val_idx].to(dev), data.train_labels[val_idx].to(dev)
        self._images, self._labels = data.train_images.to(dev), data.train_labels.to(dev)
        steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
        total_steps = steps_per_epoch * cfg.epochs
        self._opt = make_optimizer(cfg, self.model.parameters())
        self._sched = make_scheduler(cfg, self._opt, total_steps)
        self._apply_threads()
        self.peak_step_bytes = self._probe(train_idx[: cfg.batch_size])
        self.started_at = time.perf_counter()
        with self._lock:
            self.status = "running"
            self.progress = {"epoch": 0, "epochs": cfg.epochs, "step": 0, "total_steps": total_steps,
                             "images_per_s": 0.0, "eta_s": None, "elapsed_s": 0.0,
                             "train_size": len(train_idx), "val_size": len(val_idx), "phase": "training",
                             "phase_done": 0, "phase_total": total_steps}
        self._checkpoints = sorted(validation_steps(total_steps, steps_per_epoch, cfg.val_points))
        self._snapshot_at = set(snapshot_steps(total_steps, steps_per_epoch))
        with self._lock:
            self.steps_per_epoch = steps_per_epoch
        self._keep_filters(0)  # the initial weights (the probe above trained a copy)
        batches = training_batches(cfg, self._images, self._labels, train_idx, self._order, dev)
        self._train_seconds, self._window_speeds = 0.0, []
        step = 0
        for until in self._checkpoints:
            since = self._train_steps(batches, step, until, steps_per_epoch)
            step = until
            self._validate(step, steps_per_epoch, since)
        self._restore_best()
        self._end("finished", results=self._test())
        self._emit("finished", self.results)

    def _train_steps(self, batches, step: int, until: int, steps_per_epoch: int) -> dict:
        """Optimisation steps step+1 … until; returns the training loss and accuracy over them. Losses are
        read from the device every SYNC_EVERY steps, not after each step."""
        self._set_phase("training", step, self.progress["total_steps"])
        self.model.train()
        t0, pending, seen, loss_sum, correct = time.perf_counter(), [], 0, 0.0, 0
        window = t0
        while step < until:
            self._check_stop()
            self._apply_threads()
            x, y = next(batches)
            loss, logits = self._step(x, y, step)
            step += 1
            if step in self._snapshot_at:
                self._keep_filters(step)
            pending.append((step, len(y), self._opt.param_groups[0]["lr"], loss.detach(), (logits.argmax(1) == y).sum()))
            if len(pending) == self.SYNC_EVERY or step == until:
                seen_now, loss_now, correct_now = self._record(pending, steps_per_epoch, t0, seen)
                seen, loss_sum, correct = seen + seen_now, loss_sum + loss_now, correct + correct_now
                self._window_speeds.append(seen_now / (time.perf_counter() - window))
                pending, window = [], time.perf_counter()
        self._train_seconds += time.perf_counter() - t0
        return {"train_loss": loss_sum / seen, "train_accuracy": correct / seen}

    def _probe(self, idx: torch.Tensor) -> int:
        """One training step on a copy of the model and optimizer, before the clock starts: it warms up the
        kernels (a process's first run would otherwise count their set-up in its first epoch — 0.4 s vs 0.1 s
        per epoch on 1,000 digits) and measures the peak memory of a step. The run's own weights are untouched."""
        x = to_float(self._images[idx]).contiguous(memory_format=torch.channels_last)
        model, opt, sched = self.model, self._opt, self._sched
        self.model = copy.deepcopy(model)
        self._opt, self._sched = make_optimizer(self.config, self.model.parameters()), None
        try:
            return peak_bytes(lambda: self._step(x, self._labels[idx], 0), self.device)
        finally:
            self.model, self._opt, self._sched = model, opt, sched

    def _step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on a batch; returns its (loss, logits)."""
        loss, logits = self._loss(x, y, step)
        self._opt.zero_grad(set_to_none=True)
        loss.backward()
        self._opt.step()
        if self._sched:
            self._sched.step()
        return loss, logits

    def _keep_filters(self, step: int) -> None:
        """Keep conv1's and conv2's weights and biases as they are after ``step`` updates."""
        params = conv_params(self.model)
        with self._lock:
            self.filters[step] = params

    def _record(self, pending: list, steps_per_epoch: int, t0: float, seen_before: int) -> tuple[int, float, int]:
        """Append the pending steps' records (one host sync for all of them) and update the progress, with a copy
        of conv1 as it is now (320 numbers, taken here between steps so it is never half-updated)."""
        values = torch.stack([torch.stack([p[3].float(), p[4].float()]) for p in pending]).tolist()
        conv1 = self.model.conv1
        latest = {"step": pending[-1][0],
                  "weight": conv1.weight.detach().to("cpu", torch.float32, memory_format=torch.contiguous_format, copy=True),
                  "bias": conv1.bias.detach().to("cpu", torch.float32, copy=True)}
        records = [{"step": s, "epoch": (s - 1) // steps_per_epoch + 1, "loss": lv, "accuracy": c / n, "lr": lr}
                   for (s, n, lr, _, _), (lv, c) in zip(pending, values, strict=True)]
        seen = sum(p[1] for p in pending)
        ips = (seen_before + seen) / (time.perf_counter() - t0)
        step = records[-1]["step"]
        with self._lock:
            self.steps.extend(records)
            self.latest_conv1 = latest
            self.progress.update(epoch=records[-1]["epoch"], step=step, phase_done=step, images_per_s=ips,
                                 threads=torch.get_num_threads(), elapsed_s=time.perf_counter() - self.started_at,
                                 eta_s=self._eta(step, ips))
        for r in records:
            self._emit("step", r)
        return seen, sum(r["loss"] * p[1] for r, p in zip(records, pending, strict=True)), int(sum(v[1] for v in values))

    def _eta(self, step: int, ips: float) -> float:
        """Seconds left: the remaining training steps at the measured speed, plus the remaining validations and
        the test at the measured speed of the last validation (before the first: forward ≈ 3× training speed)."""
        p = self.progress
        val_seconds_per_digit = self.vals[-1]["seconds"] / p["val_size"] if self.vals else 1 / (3 * ips)
        vals_left = sum(1 for s in self._checkpoints if s > step)
        return ((p["total_steps"] - step) * self.config.batch_size / ips
                + (vals_left * p["val_size"] + len(self.data.test_labels)) * val_seconds_per_digit)

    def _validate(self, step: int, steps_per_epoch: int, since: dict) -> None:
        """Evaluate on the fixed validation subset; keep the weights if they are the best so far; close the
        epoch's record at an epoch end."""
        t0 = time.perf_counter()
        images, labels = self._val
        self._set_phase("validating", 0, len(labels))
        with self._autocast():
            val = evaluate(self.model, images, labels, EVAL_BATCH, with_details=False, on_batch=self._check_stop)
        epoch = step / steps_per_epoch
        record = {"step": step, "epoch": epoch, "train_loss": since["train_loss"], "train_accuracy": since["train_accuracy"],
                  "val_loss": val["loss"], "val_accuracy": val["accuracy"], "seconds": time.perf_counter() - t0}
        with self._lock:
            self.vals.append(record)
            if val["accuracy"] > self.best["val_accuracy"]:
                self.best = {"epoch": math.ceil(epoch), "step": step, "val_accuracy": val["accuracy"]}
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self._emit("validation", record)
        if step % steps_per_epoch == 0:
            self._close_epoch(step // steps_per_epoch, step, steps_per_epoch)

    def _close_epoch(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        """The epoch's summary: training loss/accuracy over its steps, validation at its end, its seconds."""
        steps = self.steps[step - steps_per_epoch : step]
        sizes = [self.config.batch_size] * (len(steps) - 1) + [self.progress["train_size"] - self.config.batch_size * (len(steps) - 1)]
        seen = sum(sizes)
        vals = [v for v in self.vals if step - steps_per_epoch < v["step"] <= step]
        summary = {"epoch": epoch, "step": step,
                   "train_loss": sum(s["loss"] * n for s, n in zip(steps, sizes, strict=True)) / seen,
                   "train_accuracy": sum(s["accuracy"] * n for s, n in zip(steps, sizes, strict=True)) / seen,
                   "val_loss": vals[-1]["val_loss"], "val_accuracy": vals[-1]["val_accuracy"],
                   "train_seconds": self._train_seconds, "seconds": self._train_seconds + sum(v["seconds"] for v in vals)}
        summary["images_per_s"] = seen / summary["train_seconds"]
        # The median speed of the epoch's SYNC_EVERY-step windows: what the run computes when nothing else
        # interrupts it (a page redraw or another run's evaluation slows a few windows, not the median).
        summary["images_per_s_median"] = statistics.median(self._window_speeds)
        self._train_seconds, self._window_speeds = 0.0, []
        with self._lock:
            self.epochs.append(summary)
        self._emit("epoch", summary)

    def _restore_best(self) -> None:
        """The best weights so far back in the model, in the standard memory layout: the test numbers are then
        exactly those a model loaded from the saved run gives (channels_last convolutions round differently)."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.model.to(memory_format=torch.contiguous_format)

    def _test(self) -> dict:
        """The best weights on all 10,000 test digits (float32)."""
        images, labels = self.data.test_images, self.data.test_labels
        self._set_phase("testing", 0, len(labels))
        return evaluate(self.model, images, labels, EVAL_BATCH, on_batch=self._check_stop)
