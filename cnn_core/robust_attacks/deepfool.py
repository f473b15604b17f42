"""DeepFool (Moosavi-Dezfooli, Fawzi and Frossard, CVPR 2016): the smallest step that crosses the nearest decision
boundary of the model linearised at the current image, repeated until the class changes."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import Attack, AttackSettings, cut_to_budget, targets

CROSS = 1e-4  # added to each step's length so that it ends just past the boundary, not on it (the paper's code)


def deepfool(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 50, overshoot: float = 0.02,
             norm: float = math.inf, target: torch.Tensor | None = None) -> torch.Tensor:
    """Per image, until its class is no longer y (targeted: until it is t) or after ``steps`` iterations:
      at the current image xᵢ with predicted class c, for every other class k (targeted: k = t only)
        w_k = ∇f_k(xᵢ) − ∇f_c(xᵢ), kept where a pixel can move that way (not below 0 or above 1),
        g_k = f_k(xᵢ) − f_c(xᵢ) ≤ 0   (f: logits),
        d_k = |g_k| / ‖w_k‖_q   — the distance to the boundary between c and k of the model linearised at xᵢ,
              in the norm ``norm`` = p (q its dual: p = ∞ → q = 1; p = 2 → q = 2);
      l = argmin d_k,  rᵢ = (d_l + CROSS)·u_l with u_l the unit step towards it (p = ∞: sign(w_l); p = 2: w_l / ‖w_l‖₂),
      r = Σ rᵢ,  xᵢ₊₁ = clip(x + (1 + ``overshoot``)·r, 0, 1).
    For an affine model one iteration is exact: ‖r‖_p = (1 + overshoot)·(min_k d_k + CROSS), the smallest perturbation
    that changes its class. Returns the images (not bound by any budget; ``ATTACK`` projects them)."""
    if norm not in (2, math.inf):
        raise ValueError(f"norm must be 2 or inf, got {norm!r}")
    x = x.detach()
    x_adv, r = x.clone(), torch.zeros_like(x)
    todo = torch.arange(len(y), device=x.device)  # the images whose class has not changed yet
    for _ in range(steps):
        with torch.enable_grad():
            xi = x_adv[todo].requires_grad_(True)
            logits = model(xi)
            n, classes = logits.shape
            grads = torch.stack([torch.autograd.grad(logits[:, k].sum(), xi, retain_graph=k < classes - 1)[0]
                                 for k in range(classes)], 1)  # n × classes × image: each image's own gradients
        f, rows = logits.detach(), torch.arange(n, device=x.device)
        c = f.argmax(1)
        left = c == y[todo] if target is None else c != target[todo]
        if not left.any():
            break
        w = grads - grads[rows, c][:, None]
        # Only pixels that can move in w's direction count: one at 0 (or 1) that w pushes below 0 (above 1) would have
        # its share of the step clipped away. MNIST's pixels are mostly 0, so without this an L∞ step lost about half
        # its length to the clip, and DeepFool took many more rounds.
        inside = xi.detach()[:, None]
        w = w * ((w > 0) & (inside < 1) | (w < 0) & (inside > 0))
        dist = (f - f[rows, c][:, None]).abs() / w.flatten(2).norm(p=1 if norm == math.inf else 2, dim=2).clamp_min(1e-12)
        towards = (torch.arange(classes, device=x.device) != c[:, None] if target is None else
                   torch.arange(classes, device=x.device) == target[todo][:, None])
        nearest = dist.masked_fill(~towards, math.inf).argmin(1)
        w_l, d_l = w[rows, nearest], dist[rows, nearest]
        unit = w_l.sign() if norm == math.inf else w_l / w_l.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        step = (d_l + CROSS).view(-1, *[1] * (x.dim() - 1)) * unit
        todo = todo[left]
        r[todo] += step[left]
        x_adv[todo] = (x[todo] + (1 + overshoot) * r[todo]).clamp(0, 1)
    return x_adv


def _search(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: AttackSettings) -> torch.Tensor:
    return deepfool(model, x, y, settings.steps, target=targets(y, settings))


ATTACK = Attack(
    name="deepfool", label="DeepFool", order=30, dash="dot", uses=frozenset({"steps", "target"}),
    formula="**DeepFool**: the smallest L∞ step to the nearest class boundary of the model made linear at the image, "
            "repeated until the class changes; then cut to the ε-ball (it fools a digit only if that smallest step fits).",
    minimal=_search, run=cut_to_budget(_search))
