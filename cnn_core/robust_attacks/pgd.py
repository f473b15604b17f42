"""PGD (Madry et al. 2018): signed gradient steps, each projected back into the ε-ball, from a random start."""

from __future__ import annotations

import torch
from torch import nn

from .base import Attack, input_gradient, project, targets


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor, steps: int = 20,
        step_size: float | None = None, random_start: bool = True, target: torch.Tensor | None = None, seed: int = 0,
        start: torch.Tensor | None = None) -> torch.Tensor:
    """x⁰ = x (+ U(−ε, ε) with ``random_start``), then k times
    xᵏ⁺¹ = Π(xᵏ + η·sign(∇ₓ L(f(xᵏ), y)))   (targeted: Π(xᵏ − η·sign(∇ₓ L(f(xᵏ), t)))),
    η = ``step_size`` (default 2.5·ε/steps, so the walk can cross the whole ball).
    ``eps`` may also be a tensor of N budgets, one per image (η then per image too). ``start``: the random start's
    noise u ∈ [−1, 1] (broadcast to x), x⁰ = Π(x + ε·u); default u ~ U(−1, 1) drawn per image from ``seed``."""
    if torch.is_tensor(eps):
        eps = eps.to(x).view(-1, *[1] * (x.dim() - 1))
    eta = 2.5 * eps / max(steps, 1) if step_size is None else step_size
    x = x.detach()
    x_adv = x.clone()
    if random_start and (torch.is_tensor(eps) or eps > 0):
        if start is None:
            g = torch.Generator(device=x.device).manual_seed(seed)
            start = 2 * torch.rand(x.shape, generator=g, device=x.device) - 1
        x_adv = project(x + eps * start, x, eps)
    for _ in range(steps):
        if target is None:
            x_adv = project(x_adv + eta * input_gradient(model, x_adv, y).sign(), x, eps)
        else:
            x_adv = project(x_adv - eta * input_gradient(model, x_adv, target).sign(), x, eps)
    return x_adv


ATTACK = Attack(
    name="pgd", label="PGD", order=20, dash="solid", uses=frozenset({"steps", "step_size", "random_start", "target", "seed"}),
    formula="**PGD**: many small steps of size η, each followed by a projection back into the ε-ball around x (and "
            "[0, 1]); with a random start.",
    run=lambda model, x, y, eps, s: pgd(model, x, y, eps, s.steps, s.step_size, s.random_start, targets(y, s), s.seed))
