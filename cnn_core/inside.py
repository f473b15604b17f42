"""Looking inside a trained model: feature maps, occlusion maps, attributions (assignment part 2).

All functions take eval-mode models and pixel-space inputs N×1×28×28 in [0, 1] and never change the
model's weights.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .model import MNIST_MEAN, MNIST_STD

FILLS = {"grey (0.5)": 0.5, "black (0)": 0.0, "image mean": "mean"}
INTERESTS = ["true class", "predicted class", *[f"class {k}" for k in range(10)]]


def class_of_interest(model: nn.Module, x: torch.Tensor, labels: tuple, interest: str) -> torch.Tensor:
    """The class each occlusion or attribution map is about, one per image: its true class, its predicted class, or
    one fixed class (``interest`` ∈ INTERESTS). A drawn digit has no true class (label None): its prediction stands
    in."""
    if interest.startswith("class "):
        return torch.full((len(labels),), int(interest.split()[-1]))
    with torch.inference_mode():
        predicted = model(x).argmax(1)
    if interest == "predicted class":
        return predicted
    if interest != "true class":
        raise ValueError(f"interest must be one of {', '.join(INTERESTS)}, got {interest!r}")
    return torch.tensor([p if t is None else t for t, p in zip(labels, predicted.tolist(), strict=True)])


def feature_maps(model: nn.Module, x: torch.Tensor, layer: str, stage: str) -> torch.Tensor:
    """Activations of ``layer`` ∈ {conv1, conv2} at ``stage`` ∈ {pre-ReLU, post-ReLU, post-pool}:
    N×32×H×W (H = 28 or 14 before pooling, 14 or 7 after)."""
    key = {"pre-ReLU": "conv", "post-ReLU": "relu", "post-pool": "pool"}[stage] + layer[-1]
    with torch.inference_mode():
        return model.stages(x)[key]


def conv1_feature_maps(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """ReLU(conv1(x)), N×32×28×28, computed by a separate one-layer module loaded with copies of ``weight``
    (32×1×3×3) and ``bias`` (32), after the model's own normalisation. The tensors are only read, so they may be the
    copies a run takes while it trains (``Run.latest_conv1``); the training model itself is never used. No BatchNorm:
    for a BatchNorm run these are conv1's outputs before bn1."""
    out_ch, in_ch, k, _ = weight.shape
    conv = nn.Conv2d(in_ch, out_ch, k, padding=k // 2)
    with torch.inference_mode():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        return F.relu(conv((x - torch.tensor(MNIST_MEAN)) / torch.tensor(MNIST_STD)))


def filters_over_time(snapshots: dict[int, dict[str, torch.Tensor]], param: str,
                      since_start: bool = False) -> tuple[dict[int, np.ndarray], float]:
    """``param``'s weights at every snapshot step as arrays (conv1.weight: 32×3×3, its one input channel dropped;
    conv2.weight: 32×32×3×3) — or, ``since_start``, what training has added to them, W_step − W_0 — and the largest
    absolute value over all steps: one colour scale for the whole time slider, so a weight that changes changes colour."""
    w0 = snapshots[0][param] if since_start else 0
    frames = {step: (p[param] - w0).numpy() for step, p in snapshots.items()}
    if param == "conv1.weight":
        frames = {step: f[:, 0] for step, f in frames.items()}
    return frames, max(float(np.abs(f).max()) for f in frames.values())


def relative_change(snapshots: dict[int, dict[str, torch.Tensor]], step: int, param: str) -> float:
    """How far ``param`` has moved since step 0, relative to where it started: ‖W_step − W_0‖ / ‖W_0‖."""
    w0 = snapshots[0][param]
    return float(torch.linalg.vector_norm(snapshots[step][param] - w0) / torch.linalg.vector_norm(w0))


def live_conv1(snap: dict, x: torch.Tensor) -> dict | None:
    """What a page shows of a training run's conv1 at a poll: its kernels (32×3×3) as of the latest recorded step,
    the feature maps ReLU(conv1(x)) of one digit ``x`` (1×1×28×28) through a separate module, and a colour scale
    for the kernels that holds across polls (the largest |weight| of the filter snapshots so far and of now). Read
    from a ``Run.snapshot()`` only; None before the run has recorded a step."""
    latest = snap.get("latest_conv1")
    if latest is None:
        return None
    weight = latest["weight"]
    so_far = [p["conv1.weight"] for p in snap["filters"]["snapshots"].values()]
    zmax = max(float(w.abs().max()) for w in [weight, *so_far])
    maps = conv1_feature_maps(weight, latest["bias"], x)[0].numpy()
    return {"step": latest["step"], "kernels": weight[:, 0].numpy(), "maps": maps, "zmax": zmax}


def occlusion_positions(size: int, patch: int, stride: int) -> torch.Tensor:
    """Top-left corners 0, stride, 2·stride, … ≤ size − patch of a patch sliding along one axis."""
    if not (1 <= patch <= size and stride >= 1):
        raise ValueError(f"patch must be in [1, {size}] and stride ≥ 1, got patch={patch}, stride={stride}")
    return torch.arange(0, size - patch + 1, stride)


def occluded_images(image: torch.Tensor, patch: int, stride: int, fill: float | str) -> torch.Tensor:
    """All occluded copies of one 1×H×W image, one per patch position (row-major): P·Q×1×H×W.
    x_occ[(i, j)] = x with x[r_i : r_i + patch, c_j : c_j + patch] set to ``fill``."""
    _, h, w = image.shape
    rows, cols = occlusion_positions(h, patch, stride), occlusion_positions(w, patch, stride)
    ar_h, ar_w = torch.arange(h), torch.arange(w)
    in_rows = (ar_h[None, :] >= rows[:, None]) & (ar_h[None, :] < rows[:, None] + patch)  # P×H
    in_cols = (ar_w[None, :] >= cols[:, None]) & (ar_w[None, :] < cols[:, None] + patch)  # Q×W
    mask = (in_rows[:, None, :, None] & in_cols[None, :, None, :]).reshape(-1, 1, h, w)
    value = image.mean() if fill == "mean" else torch.tensor(float(fill))
    return torch.where(mask, value.to(image.dtype), image.unsqueeze(0))


@dataclass
class Occlusion:
    prob: torch.Tensor  # N×P×Q probability of each image's class of interest, patch at (row i, col j)
    pred: torch.Tensor  # N×P×Q predicted class under occlusion
    rows: torch.Tensor  # P top-left row of each position
    cols: torch.Tensor  # Q top-left column of each position
    base_prob: torch.Tensor  # N probability of the class of interest without occlusion
    forwards: int  # images pushed through the model
    milliseconds: float


def occlusion(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, patch: int, stride: int = 1,
    fill: float | str = 0.5, chunk: int = 512,
) -> Occlusion:
    """Probability of each image's class of interest with a patch at every position: all positions of
    all images go through the model in batches of ``chunk`` under inference mode."""
    n, _, h, w = images.shape
    rows, cols = occlusion_positions(h, patch, stride), occlusion_positions(w, patch, stride)
    batch = torch.cat([occluded_images(img, patch, stride, fill) for img in images])  # N·P·Q×1×H×W
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    with torch.inference_mode():
        probs = torch.cat([model(batch[i : i + chunk].to(device)).softmax(1).cpu() for i in range(0, len(batch), chunk)])
        base = model(images.to(device)).softmax(1).cpu()
    ms = 1000 * (time.perf_counter() - t0)
    probs = probs.view(n, len(rows), len(cols), -1)
    prob = probs.gather(3, targets.view(n, 1, 1, 1).expand(n, len(rows), len(cols), 1)).squeeze(3)
    return Occlusion(prob, probs.argmax(3), rows, cols, base.gather(1, targets.view(n, 1)).squeeze(1),
                     len(batch) + n, ms)


ATTRIBUTIONS = ("Saliency", "Integrated Gradients", "Grad-CAM (conv2)")


def attribution(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, method: str) -> torch.Tensor:
    """N×28×28 attribution of each image's class of interest, by Captum:
    Saliency |∂logit_t/∂x|; Integrated Gradients from a black baseline (32 steps);
    Grad-CAM on conv2, upsampled from 14×14 to 28×28 (bilinear), ReLU'd."""
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

    x = x.clone().requires_grad_(True)
    targets = targets.tolist()
    if method == "Saliency":
        a = Saliency(model).attribute(x, target=targets, abs=True)
    elif method == "Integrated Gradients":
        a = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=targets, n_steps=32)
    elif method == "Grad-CAM (conv2)":
        private = copy.deepcopy(model)  # Captum hooks conv2: never on a model other sessions use
        cam = LayerGradCam(private, private.conv2).attribute(x, target=targets, relu_attributions=True)
        a = LayerAttribution.interpolate(cam, (x.shape[2], x.shape[3]), "bilinear")
    else:
        raise ValueError(f"method must be one of {', '.join(ATTRIBUTIONS)}, got {method!r}")
    return a.detach()[:, 0]
