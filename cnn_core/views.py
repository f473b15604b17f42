"""The Robustness lab's two heavy views (an input defence against PGD, a universal perturbation) as functions of a
model and the slider values, and both computed ahead for every ε of the slider and stored in a saved run
(``python -m cnn_core views RUN``): dragging ε over a shipped model then shows each view at once instead of after
2–4 s of attacks. Stored and live views are the same computation on the same digits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import robust as R
from .data import Mnist, to_float
from .store import ROBUSTNESS_FILE, RunStore

SLIDER_EPSILONS = tuple(round(0.01 * i, 2) for i in range(51))  # the pages' ε sliders: 0 … 0.5 in steps of 0.01
DEFENCE_DIGITS = 500  # the defences are judged on the first 500 test digits: two PGD-10 runs take ~3 s on 2 cores
DEFENCE_STEPS = 10
UNIVERSAL_TRAIN, UNIVERSAL_TEST, UNIVERSAL_STEPS = 5000, 1000, 30  # δ from 5,000 training digits, measured on 1,000
DEFENCES_FILE, UNIVERSAL_FILE = "defences.json", "universal.npz"
RATE_KEYS = ("fooling_rate", "clean_accuracy", "accuracy")  # the universal view's rates, in UNIVERSAL_FILE's order


def defence_view(model: nn.Module, data: Mnist, defence: str, eps: float,
                 progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """``robust.evaluate_defence`` of the ``defence`` (a key of ``robust.DEFENCES``) at ``eps`` on the first
    ``DEFENCE_DIGITS`` test digits, PGD-``DEFENCE_STEPS``: five accuracies."""
    x, y = to_float(data.test_images[:DEFENCE_DIGITS]), data.test_labels[:DEFENCE_DIGITS]
    return R.evaluate_defence(model, R.DEFENCES[defence], x, y, eps, steps=DEFENCE_STEPS, progress=progress)


@dataclass
class UniversalView:
    delta: np.ndarray  # 28×28, |δ| ≤ ε
    rate: dict[str, float]  # fooling_rate, clean_accuracy, accuracy on UNIVERSAL_TEST held-out test digits
    predicted: np.ndarray  # the classes of the first 8 test digits with δ


def universal_view(model: nn.Module, data: Mnist, eps: float, steps: int = UNIVERSAL_STEPS, target: int | None = None,
                   progress: Callable[[int, torch.Tensor], None] | None = None) -> UniversalView:
    """``robust.universal_perturbation`` on the first ``UNIVERSAL_TRAIN`` training digits, measured by
    ``robust.fooling_rate`` on the first ``UNIVERSAL_TEST`` test digits."""
    delta = R.universal_perturbation(model, to_float(data.train_images[:UNIVERSAL_TRAIN]),
                                     data.train_labels[:UNIVERSAL_TRAIN], eps, steps, target=target, progress=progress)
    x, y = to_float(data.test_images[:UNIVERSAL_TEST]), data.test_labels[:UNIVERSAL_TEST]
    rate = R.fooling_rate(model, x, y, delta, target)
    return UniversalView(delta[0, 0].numpy(), {k: v for k, v in rate.items() if k != "predicted"},
                         rate["predicted"][:8].numpy())


def store_views(store: RunStore, name: str, model: nn.Module, data: Mnist,
                progress: Callable[[str], None] = lambda what: None) -> None:
    """Every defence and the untargeted universal perturbation (default steps) at every slider ε, written into the
    run as ``DEFENCES_FILE`` and ``UNIVERSAL_FILE`` (about 20 minutes of CPU for one run on 2 cores)."""
    defences = {}
    for d in R.DEFENCES:
        defences[d] = {}
        for eps in SLIDER_EPSILONS:
            progress(f"{d}, ε = {eps:.2f}")
            defences[d][f"{eps:.2f}"] = defence_view(model, data, d, eps)
    store.write_extra(name, DEFENCES_FILE, defences)
    views = []
    for eps in SLIDER_EPSILONS:
        progress(f"universal δ, ε = {eps:.2f}")
        views.append(universal_view(model, data, eps))
    store.write_arrays(name, UNIVERSAL_FILE, {
        "epsilons": np.array(SLIDER_EPSILONS), "delta": np.stack([v.delta for v in views]).astype(np.float32),
        "rates": np.array([[v.rate[k] for k in RATE_KEYS] for v in views]),
        "predicted": np.stack([v.predicted for v in views])})


def stored_curves(store: RunStore, name: str) -> R.RobustnessCurves | None:
    """The run's robustness curves (``python -m cnn_core robustness``), or None when it has none or the file is not
    one (then the page offers to compute them)."""
    try:
        return R.RobustnessCurves.from_json(store.read_extra(name, ROBUSTNESS_FILE))
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def stored_defence(store: RunStore, name: str, defence: str, eps: float) -> dict[str, float] | None:
    """The stored ``defence_view`` of a saved run at ``eps`` (to 0.01), or None."""
    return ((store.read_extra(name, DEFENCES_FILE) or {}).get(defence) or {}).get(f"{eps:.2f}")


def stored_universal(store: RunStore, name: str, eps: float) -> UniversalView | None:
    """The stored untargeted ``universal_view`` (``UNIVERSAL_STEPS`` steps) of a saved run at ``eps`` (to 0.01), or
    None."""
    arrays = store.read_arrays(name, UNIVERSAL_FILE)
    if arrays is None:
        return None
    hit = np.flatnonzero(np.isclose(arrays["epsilons"], eps, atol=1e-6))
    if not len(hit):
        return None
    i = int(hit[0])
    return UniversalView(arrays["delta"][i], dict(zip(RATE_KEYS, map(float, arrays["rates"][i]), strict=True)),
                         arrays["predicted"][i])
