"""Assignment part 3 and its optional part: inputs optimized against a trained model.

Scale: every image and noise here is in the assignment's 0–255 pixel scale (noise "centred around 128",
β against an MSE of 0–255 pixels); the model sees x / 255. The model's weights are never changed: only
the input (or the noise) gets gradients. All targets go through the model as one batch: in eval mode
each sample's cost depends on its own input only, so one backward of the summed cost gives every
sample its own gradient ∂Cᵢ/∂xᵢ.

The ε-bounded attacks of the Robustness lab (pixels in [0, 1]) live in cnn_core/robust.py: ``fgsm`` (one signed
gradient step) and ``pgd`` (projected signed steps from a random start).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

PIXEL_MAX = 255.0
CLASSES = torch.arange(10)
UNIT_LAYERS = {"conv1": 32, "conv2": 32, "fc1": 500}  # layer → number of units (channels or neurons)


def scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of 0–255 images: the model takes x / 255."""
    return model(x / PIXEL_MAX)


def fooling_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """C = logits[t] (part a)."""
    return logits.gather(1, targets[:, None])[:, 0]


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MSE(x, y) = mean over the 784 pixels of (x − y)², per image (0–255 pixels)."""
    return ((x - y) ** 2).flatten(1).mean(1)


def prior_cost(logits: torch.Tensor, targets: torch.Tensor, x: torch.Tensor, look_like: torch.Tensor,
               beta: float) -> torch.Tensor:
    """C = logits[t] − β·MSE(x, target image) (part b)."""
    return fooling_cost(logits, targets) - beta * mse(x, look_like)


def prior_diverges(step_size: float, beta: float) -> bool:
    """Does plain gradient ascent on C = logits[t] − β·MSE(x, target) overshoot its own prior? The prior's gradient
    is −β·2(x − target)/784, so a step multiplies the distance to the target by (1 − step·β·2/784): beyond
    step·β·2/784 > 2 that factor is below −1 and the distance grows every step (with sign-of-gradient steps it
    cannot happen)."""
    return step_size * beta * 2 / 784 > 2


def norm_penalty(x: torch.Tensor, lam: float) -> torch.Tensor:
    """λ‖I‖²₂ per image, ‖I‖²₂ = sum of squared 0–255 pixels."""
    return lam * (x**2).flatten(1).sum(1)


def class_model_cost(logits: torch.Tensor, targets: torch.Tensor, x: torch.Tensor, lam: float) -> torch.Tensor:
    """J(I) = S_c(I) − λ‖I‖²₂ (optional part), S_c = logits[c]."""
    return fooling_cost(logits, targets) - norm_penalty(x, lam)


def noise_step_size(d: torch.Tensor) -> torch.Tensor:
    """α = 1 / (std(d) + 1e-8), one per sample (part c): each step moves the noise by about one grey
    level per pixel, whatever the gradient's scale."""
    return 1.0 / (d.flatten(1).std(1) + 1e-8)


@dataclass
class Ascent:
    """Result of gradient ascent on a batch of inputs (numpy, 0–255)."""

    images: np.ndarray  # B×28×28 final inputs
    costs: np.ndarray  # (steps + 1)×B: the cost before each step and after the last
    probs: np.ndarray  # B×10 softmax of the final inputs
    milliseconds: float

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(1)

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(1)


Progress = Callable[[int, np.ndarray, np.ndarray], None]  # (k steps done, images B×28×28 after them, their costs k×B)


def gradient_ascent(model: nn.Module, x0: torch.Tensor, cost: Callable[[torch.Tensor], torch.Tensor], steps: int,
                    step_size: float, sign: bool = False, clamp: bool = True, progress: Progress | None = None,
                    every: int = 20) -> Ascent:
    """x ← x + step_size · d with d = ∂C/∂x (or sign(d)); x is clamped to [0, 255] after every step
    when ``clamp``. ``cost(x)`` returns one cost per image (B). The model must be in eval mode.
    ``progress(k, x, costs)`` is called after every ``every`` steps (not after the last): a page draws the images
    as they form, and may stop the ascent by raising from it."""
    if steps < 0 or step_size < 0:
        raise ValueError(f"steps and step size must be ≥ 0, got {steps} and {step_size}")
    start = time.perf_counter()
    x, costs = x0.detach().clone(), []
    with torch.enable_grad():
        for k in range(steps):
            if progress is not None and k and k % every == 0:
                progress(k, x[:, 0].numpy().copy(), torch.stack(costs).numpy())
            x.requires_grad_(True)
            c = cost(x)
            (d,) = torch.autograd.grad(c.sum(), x)
            costs.append(c.detach())
            x = x.detach() + step_size * (d.sign() if sign else d)
            if clamp:
                x = x.clamp(0, PIXEL_MAX)
    with torch.no_grad():
        costs.append(cost(x))
        probs = scores(model, x).softmax(1)
    return Ascent(x[:, 0].numpy(), torch.stack(costs).numpy(), probs.numpy(), 1000 * (time.perf_counter() - start))


def noise_image(n: int, mean: float = 128.0, std: float = 40.0, seed: int = 0, clamp: bool = True) -> torch.Tensor:
    """n copies of one Gaussian noise image N(mean, std²) (0–255), so every target starts alike."""
    g = torch.Generator().manual_seed(seed)
    x = (mean + std * torch.randn(1, 1, 28, 28, generator=g)).expand(n, 1, 28, 28).clone()
    return x.clamp(0, PIXEL_MAX) if clamp else x


def fooling_images(model: nn.Module, steps: int = 200, step_size: float = 1000.0, mean: float = 128.0,
                   std: float = 40.0, seed: int = 0, sign: bool = False, clamp: bool = True,
                   progress: Progress | None = None) -> Ascent:
    """Part a: from one noise image, ascend C = logits[t] for all 10 targets t at once (row t = target t)."""
    x0 = noise_image(10, mean, std, seed, clamp)
    return gradient_ascent(model, x0, lambda x: fooling_cost(scores(model, x), CLASSES), steps, step_size, sign, clamp, progress)


def targeted_images(model: nn.Module, look_like: torch.Tensor, beta: float, steps: int = 200,
                    step_size: float = 1000.0, start: str = "noise", mean: float = 128.0, std: float = 40.0,
                    seed: int = 0, sign: bool = False, clamp: bool = True, progress: Progress | None = None) -> Ascent:
    """Part b: for each of the K images to look like (K×28×28, 0–255) and each target t, ascend
    C = logits[t] − β·MSE(x, image). Row k·10 + t: looks like image k, pushed towards class t.
    ``start``: "noise" (as in part a) or "image" (start from the image to look like)."""
    k = len(look_like)
    like = look_like.float().repeat_interleave(10, 0)[:, None]
    targets = CLASSES.repeat(k)
    x0 = like.clone() if start == "image" else noise_image(10 * k, mean, std, seed, clamp)
    return gradient_ascent(model, x0, lambda x: prior_cost(scores(model, x), targets, x, like, beta),
                           steps, step_size, sign, clamp, progress)


def class_models(model: nn.Module, steps: int = 200, step_size: float = 1000.0, lam: float = 1e-6,
                 sign: bool = False, clamp: bool = True, progress: Progress | None = None) -> Ascent:
    """Optional part: from the zero (black) image, ascend J(I) = S_c(I) − λ‖I‖² for all 10 classes."""
    x0 = torch.zeros(10, 1, 28, 28)
    return gradient_ascent(model, x0, lambda x: class_model_cost(scores(model, x), CLASSES, x, lam),
                           steps, step_size, sign, clamp, progress)


def unit_activation(model: nn.Module, x: torch.Tensor, layer: str, units: torch.Tensor) -> torch.Tensor:
    """Pre-ReLU activation of unit ``units[i]`` for image i: an fc1 neuron, or the centre unit of a conv1/conv2
    channel's map (a channel's mean would be pointless for conv1: it is linear in the input)."""
    h = model.stages(x / PIXEL_MAX)["fc1_pre" if layer == "fc1" else layer]
    if h.dim() == 4:
        h = h[:, :, h.shape[2] // 2, h.shape[3] // 2]
    return h.gather(1, units[:, None])[:, 0]


def receptive_field(layer: str) -> slice:
    """Rows (and columns) of the input that the centre unit of ``layer`` sees: conv1's (14, 14) sees 13…15;
    conv2's (7, 7) sees pool1 rows 6…8 = conv1 rows 12…17 = input rows 11…18; an fc1 neuron sees everything."""
    return {"conv1": slice(13, 16), "conv2": slice(11, 19), "fc1": slice(0, 28)}[layer]


def unit_models(model: nn.Module, layer: str, units: list[int], steps: int = 200, step_size: float = 1e5,
                lam: float = 1e-6, sign: bool = False, clamp: bool = True, progress: Progress | None = None) -> Ascent:
    """Optional part, a unit instead of a class: from the zero image ascend a(I) − λ‖I‖², a = ``unit_activation``;
    one image per unit. Only the unit's receptive field can change: 3×3 for conv1, 8×8 for conv2."""
    if layer not in UNIT_LAYERS:
        raise ValueError(f"{layer} is not one of {', '.join(UNIT_LAYERS)}")
    if not units or any(not 0 <= u < UNIT_LAYERS[layer] for u in units):
        raise ValueError(f"{layer} has units 0…{UNIT_LAYERS[layer] - 1}, got {units}")
    idx = torch.tensor(units)
    x0 = torch.zeros(len(units), 1, 28, 28)
    return gradient_ascent(model, x0, lambda x: unit_activation(model, x, layer, idx) - norm_penalty(x, lam),
                           steps, step_size, sign, clamp, progress)


@dataclass
class NoiseAttack:
    """Part c for one image and each target (numpy, 0–255)."""

    noise: np.ndarray  # T×28×28
    images: np.ndarray  # T×28×28 the image plus its noise, as the model saw it
    probs: np.ndarray  # T×10
    steps: np.ndarray  # T updates applied to each noise
    reached: np.ndarray  # T bool: the target won
    costs: np.ndarray  # (max steps + 1)×T logits[t]
    milliseconds: float


def adversarial_noise(model: nn.Module, image: torch.Tensor, targets: torch.Tensor = CLASSES, steps: int = 200,
                      alpha: float | None = None, linf: float | None = None, clamp: bool = True) -> NoiseAttack:
    """Part c: noise₀ = 0, C = logits[t](x + noise), noise ← noise + α·∂C/∂noise with
    α = 1/(std(d) + 1e-8) per target (``alpha=None``) or a fixed α. After each step the noise is kept
    within ±``linf`` and, with ``clamp``, so that x + noise stays in [0, 255]. Each target's noise stops
    at the first step where the target wins, or after ``steps`` updates."""
    start = time.perf_counter()
    x = image.float().reshape(1, 1, 28, 28).expand(len(targets), 1, 28, 28)
    noise = torch.zeros_like(x)
    taken = torch.zeros(len(targets), dtype=torch.long)
    costs = []
    with torch.enable_grad():
        for k in range(steps + 1):
            noise.requires_grad_(True)
            logits = scores(model, x + noise)
            c = fooling_cost(logits, targets)
            costs.append(c.detach())
            active = logits.argmax(1) != targets
            if k == steps or not active.any():
                break
            (d,) = torch.autograd.grad(c.sum(), noise)
            step = (noise_step_size(d) if alpha is None else torch.full((len(targets),), float(alpha)))
            noise = noise.detach() + (step * active)[:, None, None, None] * d
            if linf is not None:
                noise = noise.clamp(-linf, linf)
            if clamp:
                noise = (x + noise).clamp(0, PIXEL_MAX) - x
            taken += active.long()
    with torch.no_grad():
        probs = logits.softmax(1)
    adv = (x + noise.detach())[:, 0]
    return NoiseAttack(noise.detach()[:, 0].numpy(), adv.numpy(), probs.numpy(), taken.numpy(),
                       (probs.argmax(1) == targets).numpy(), torch.stack(costs).numpy(),
                       1000 * (time.perf_counter() - start))


def transfer_matrix(model: nn.Module, examples: torch.Tensor, noises: torch.Tensor, clamp: bool = True) -> np.ndarray:
    """Predicted class of every example plus every noise, in one batch: pred[i, j] = class of
    examples[j] + noises[i] (both 0–255, clamped to [0, 255] when ``clamp``)."""
    x = examples.float()[None] + noises.float()[:, None]
    if clamp:
        x = x.clamp(0, PIXEL_MAX)
    with torch.no_grad():
        return scores(model, x.reshape(-1, 1, 28, 28)).argmax(1).reshape(len(noises), len(examples)).numpy()


def one_per_class(images: torch.Tensor, labels: torch.Tensor, avoid: torch.Tensor | None = None) -> list[int]:
    """The first test index of each class 0…9 whose image is not ``avoid`` (the attacked digit itself must not
    count as a transfer): the transfer matrix's fixed examples."""
    out = []
    for k in range(10):
        idx = torch.nonzero(labels == k).flatten()
        if avoid is not None:
            idx = idx[(images[idx].float() != avoid.float().reshape(images.shape[1:])).flatten(1).any(1)]
        out.append(int(idx[0]))
    return out


def transfer_summary(pred: np.ndarray, example_labels: list[int], steps: np.ndarray) -> dict:
    """Counts over the cells that test a transfer: rows whose noise is not zero (steps > 0) and examples not already
    of the noise's target class. won: the example became the target; kept: it kept its own class."""
    targets = np.arange(len(pred))[:, None]
    cells = (steps[:, None] > 0) & (np.asarray(example_labels)[None, :] != targets)
    return {"cells": int(cells.sum()), "won": int(((pred == targets) & cells).sum()),
            "kept": int(((pred == np.asarray(example_labels)[None, :]) & cells).sum())}
