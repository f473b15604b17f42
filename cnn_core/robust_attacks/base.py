"""What every attack of the Robustness lab is: one call shape, ``run(model, x, y, eps, settings) → x_adv``, and
the two operations they share (the input gradient and the projection into the budget).

Pixel space is [0, 1]. An attack's image stays in [0, 1] and within ε of x in L∞ (``project``). The model is used
as given (eval mode, by the callers) and never changed: gradients are taken with respect to the input only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AttackSettings:
    """What the Robustness lab's controls set. An attack reads only the fields it names in ``Attack.uses``."""

    steps: int = 20  # iterations (PGD-20 is the assignment's evaluation; DeepFool stops earlier once a digit flips)
    step_size: float | None = None  # η of a signed step; None = 2.5·ε/steps, so the walk can cross the whole ball
    random_start: bool = True  # start PGD from a uniform point of the ball (Madry et al. 2018), not from x
    target: int | None = None  # targeted: move every digit to this class; None = away from its own class
    seed: int = 0  # of the random start, so a view is the same each time it is drawn


@dataclass(frozen=True)
class Attack:
    """One attack, as the registry (``cnn_core.robust_attacks.ATTACKS``) lists it."""

    name: str  # its key: stored curves, the command line, links (lower case, no spaces)
    label: str  # what a page and a legend show
    formula: str  # one line for the page: what one attack computes (markdown)
    run: Callable[[nn.Module, torch.Tensor, torch.Tensor, float, AttackSettings], torch.Tensor]
    uses: frozenset[str] = frozenset()  # the AttackSettings fields it reads; a page disables the other controls
    dash: str = "solid"  # its line in the robustness curves (plotly dash), one per attack
    order: int = 0  # its place in lists: the registry sorts by it, then by name
    # An attack that searches the smallest perturbation whatever the budget (DeepFool): that search, images not bound
    # by ε. Its ``run`` is the search cut to the ε-ball (``cut_to_budget``), and a curve searches once for every ε.
    minimal: Callable[[nn.Module, torch.Tensor, torch.Tensor, AttackSettings], torch.Tensor] | None = None


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇ₓ L(f(x), y), L = cross-entropy summed over the batch (so each image gets its own gradient)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return g


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
    """Π(x') = clip(x', x − ε, x + ε) ∩ [0, 1]: the nearest image within the budget (ε broadcast to x)."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)


def cut_to_budget(search: Callable[[nn.Module, torch.Tensor, torch.Tensor, AttackSettings], torch.Tensor]):
    """``run`` of a minimal-perturbation attack: its search's images projected into the ε-ball (and [0, 1])."""
    return lambda model, x, y, eps, settings: project(search(model, x, y, settings), x, eps)


def targets(y: torch.Tensor, settings: AttackSettings) -> torch.Tensor | None:
    """The target class of every digit (a tensor like ``y``), or None for an untargeted attack."""
    return None if settings.target is None else torch.full_like(y, settings.target)


DEFAULTS = AttackSettings()  # frozen, so one shared default is safe
