"""FGSM (Goodfellow et al. 2015): one signed gradient step of size ε."""

from __future__ import annotations

import torch
from torch import nn

from .base import Attack, input_gradient, targets


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, target: torch.Tensor | None = None) -> torch.Tensor:
    """Untargeted: x' = clip(x + ε·sign(∇ₓ L(f(x), y)), 0, 1).
    Targeted (towards ``target``): x' = clip(x − ε·sign(∇ₓ L(f(x), t)), 0, 1)."""
    if target is None:
        return (x + eps * input_gradient(model, x, y).sign()).clamp(0, 1)
    return (x - eps * input_gradient(model, x, target).sign()).clamp(0, 1)


ATTACK = Attack(
    name="fgsm", label="FGSM", order=10, dash="dash", uses=frozenset({"target"}),
    formula="**FGSM**: one step, x' = clip(x + ε·sign(∇ₓL), 0, 1).",
    run=lambda model, x, y, eps, s: fgsm(model, x, y, eps, targets(y, s)))
