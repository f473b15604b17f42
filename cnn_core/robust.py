"""Attacks with a budget and defences (seed 004): robust accuracy and curves under the attacks of the registry
(``cnn_core.robust_attacks``: FGSM, PGD, DeepFool, one file each), the smallest flipping budget, a universal
perturbation, input defences.

Pixel space is [0, 1] here (ε = 0.1 is 25.5 grey levels). Adversarial images always stay in [0, 1] and
within ε of the original (L∞). Models are used in eval mode and never changed: gradients are taken with
respect to the input only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

# The attacks live in robust_attacks, one file each; their names are here too, for callers of this module.
from .robust_attacks import ATTACKS, DEFAULTS, AttackSettings, get_attack, input_gradient, project  # noqa: F401
from .robust_attacks.fgsm import fgsm  # noqa: F401
from .robust_attacks.pgd import pgd

EPSILONS = (0.05, 0.1, 0.2, 0.3)  # the defences table's budgets
CURVE_EPSILONS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def flip_search_limit(max_eps: float, tol: float = 1 / 255) -> float:
    """The largest budget ``smallest_flipping_eps`` tries: K·tol, K = ⌈max_eps / tol⌉ (0.5 → 128/255)."""
    return math.ceil(max_eps / tol - 1e-9) * tol


def smallest_flipping_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tol: float = 1 / 255,
                          max_eps: float = 0.5, steps: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the smallest L∞ budget at which PGD makes the model misclassify it:
    ε* = min{ε = k·tol : argmax f(PGD_ε(x)) ≠ y},  k ∈ {0, 1, …, K},  K = ⌈max_eps / tol⌉,
    by bisection on k, all images at once (each its own interval; one PGD call per round for the images not settled):
      argmax f(x) ≠ y already          → ε* = 0, x_adv = x;
      PGD at K·tol does not flip it    → ε* = inf, x_adv = that failed attempt;
      else lo, hi = 0, K;  while hi − lo > 1: mid = ⌊(lo + hi) / 2⌋, PGD at mid·tol flips ? hi = mid : lo = mid;
      ε* = hi·tol, x_adv = PGD's image at ε*.
    At most ⌈log₂ K⌉ + 1 PGD calls instead of K for a scan. PGD (``steps`` steps, η = 2.5·ε/steps, a random start
    x⁰ = Π(x + ε·u) with one u ~ U(−1, 1)²⁸ˣ²⁸ drawn from ``seed`` and used for every image and every ε, so an image's
    result does not depend on the batch it is in) is a heuristic: it can miss an adversarial image that exists, so ε*
    is an upper bound of the true smallest budget. Bisection assumes PGD's success grows with ε, which is usual but
    not guaranteed; what always holds is that PGD flips the image at ε* and not at ε* − tol (at 0: the clean image).
    Returns (ε* as N float32, x_adv N×1×28×28)."""
    n, k_max = len(y), round(flip_search_limit(max_eps, tol) / tol)
    u = 2 * torch.rand((1, *x.shape[1:]), generator=torch.Generator().manual_seed(seed)).to(x) - 1

    def flips(i: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa = pgd(model, x[i], y[i], k * tol, steps=steps, start=u)
        with torch.no_grad():
            return model(xa).argmax(1) != y[i], xa

    with torch.no_grad():
        wrong = model(x).argmax(1) != y
    lo, hi = torch.zeros(n, device=x.device), torch.full((n,), float(k_max), device=x.device)
    x_adv = x.detach().clone()
    todo = torch.nonzero(~wrong).flatten()
    flipped, x_adv[todo] = flips(todo, hi[todo])
    hi[todo[~flipped]] = math.inf
    todo = todo[flipped]
    while len(todo := todo[hi[todo] - lo[todo] > 1]):
        mid = torch.floor((lo[todo] + hi[todo]) / 2)
        flipped, xa = flips(todo, mid)
        hi[todo[flipped]], lo[todo[~flipped]] = mid[flipped], mid[~flipped]
        x_adv[todo[flipped]] = xa[flipped]
    return torch.where(wrong, 0.0, hi * tol), x_adv


def reference_labels(model: nn.Module, x: torch.Tensor, labels) -> torch.Tensor:
    """The class an attack must move each image away from: its true class, or for a drawn digit (label None) the
    model's own prediction of it — "misclassified" then means "the answer changes"."""
    with torch.no_grad():
        predicted = model(x).argmax(1).tolist()
    return torch.tensor([p if t is None else int(t) for t, p in zip(labels, predicted, strict=True)])


def describe_flip_eps(eps: float, limit: float) -> str:
    """ε* for people: '0.141 = 36/255', '0 (already misclassified)', or 'not flipped up to ε = 0.502 (128/255)'
    (``limit``: the largest budget tried, ``flip_search_limit``)."""
    if eps == 0:
        return "0 (already misclassified)"
    if math.isinf(eps):
        return f"not flipped up to ε = {limit:.3f} ({round(255 * limit)}/255)"
    return f"{eps:.3f} = {round(255 * eps)}/255"


def flip_verdict(name_a: str, eps_a: float, name_b: str, eps_b: float, limit: float) -> str:
    """One sentence comparing two models' smallest flipping budgets for one digit (ε* from
    ``smallest_flipping_eps``, ``limit`` the largest budget tried)."""
    if eps_a == 0 or eps_b == 0:
        wrong = " and ".join(n for n, e in ((name_a, eps_a), (name_b, eps_b)) if e == 0)
        return f"{wrong} already get{'' if ' and ' in wrong else 's'} it wrong without any attack."
    top = round(255 * limit)
    if math.isinf(eps_a) and math.isinf(eps_b):
        return f"Neither model was flipped up to ε = {top}/255."
    (strong, es), (weak, ew) = sorted(((name_a, eps_a), (name_b, eps_b)), key=lambda t: -t[1])
    if math.isinf(es):
        return (f"{strong} was not flipped up to ε = {top}/255; {weak} flips at {round(255 * ew)}/255: more than "
                f"{limit / ew:.1f}× the budget.")
    if round(255 * es) == round(255 * ew):
        return f"Both flip at the same budget, {round(255 * es)}/255."
    return (f"{strong} needs {es / ew:.1f}× the budget of {weak}: {round(255 * es)} vs {round(255 * ew)} grey levels "
            "per pixel.")


def attributions_under_attack(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
                              methods=("Saliency", "Grad-CAM (conv2)")) -> dict:
    """Attributions (``cnn_core.inside.attribution``) of the clean and the adversarial images, each to its own
    predicted class: {"pred_clean", "conf_clean", "pred_adv", "conf_adv": N each, "maps": {method: (clean, adv),
    N×28×28 each}, "peaks": {method: N}}, where a digit's peak is the larger of its two maps' maxima, the top of
    the colour scale both share."""
    from .inside import attribution

    with torch.no_grad():
        conf_clean, pred_clean = model(x).softmax(1).max(1)
        conf_adv, pred_adv = model(x_adv).softmax(1).max(1)
    maps = {m: (attribution(model, x, pred_clean, m), attribution(model, x_adv, pred_adv, m)) for m in methods}
    peaks = {m: torch.maximum(c.amax((1, 2)), a.amax((1, 2))) for m, (c, a) in maps.items()}
    return {"pred_clean": pred_clean, "conf_clean": conf_clean, "pred_adv": pred_adv, "conf_adv": conf_adv,
            "maps": maps, "peaks": peaks}


def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str, eps: float,
           settings: AttackSettings = DEFAULTS) -> torch.Tensor:
    """``method``: "clean" (x itself) or the name of a registered attack (``robust_attacks.ATTACKS``)."""
    if method == "clean" or eps == 0:
        return x
    return get_attack(method).run(model, x, y, eps, settings)


def robust_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str, eps: float, batch: int = 500,
                   defence=None, settings: AttackSettings = DEFAULTS) -> torch.Tensor:
    """Per digit: still classified correctly after ``method`` at budget ε (in batches)? ``defence`` (an input
    transform) is applied before classifying — the attack does not know about it."""
    xa = torch.cat([attack(model, x[i : i + batch], y[i : i + batch], method, eps, settings) for i in range(0, len(y), batch)])
    return classified_correctly(model, xa, y, batch, defence)


def classified_correctly(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500, defence=None) -> torch.Tensor:
    """Per image: argmax f(defence(x)) = y, in batches."""
    correct = []
    for i in range(0, len(y), batch):
        xb = x[i : i + batch] if defence is None else defence(x[i : i + batch])
        with torch.no_grad():
            correct.append(model(xb).argmax(1) == y[i : i + batch])
    return torch.cat(correct)


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str, eps: float, batch: int = 500,
                    defence=None, settings: AttackSettings = DEFAULTS) -> float:
    """Fraction of ``robust_correct``."""
    return robust_correct(model, x, y, method, eps, batch, defence, settings).float().mean().item()


@dataclass
class RobustnessCurves:
    """Accuracy on the same ``n`` test digits under each attack at each budget (what ``robustness.json`` stores)."""

    epsilons: list[float]
    accuracy: dict[str, list[float]]  # attack name (a key of ATTACKS) → accuracy at each ε, in [0, 1]
    n: int  # the first n test digits
    steps: int  # of the iterative attacks (PGD-20: the assignment's evaluation)

    def at(self, attack: str) -> dict[float, float]:
        """ε → accuracy under ``attack``."""
        return dict(zip(self.epsilons, self.accuracy[attack], strict=True))

    def to_json(self) -> dict:
        return asdict(self)

    def keeping(self, old: RobustnessCurves | None) -> RobustnessCurves:
        """These curves plus those of ``old``'s attacks that these lack, when ``old`` measured the same digits, budgets
        and steps (so one attack can be added to a stored file without rerunning the others); registry order."""
        if old is None or (old.epsilons, old.n, old.steps) != (self.epsilons, self.n, self.steps):
            return self
        both, order = {**old.accuracy, **self.accuracy}, list(ATTACKS)
        ranked = sorted(both, key=lambda m: (order.index(m) if m in order else len(order), m))
        return RobustnessCurves(self.epsilons, {m: both[m] for m in ranked}, self.n, self.steps)

    @classmethod
    def from_json(cls, d: dict) -> RobustnessCurves:
        """Also reads the files written before the registry: {"epsilons", "fgsm", "pgd", "n", "pgd_steps"}."""
        if "accuracy" in d:
            return cls(list(d["epsilons"]), dict(d["accuracy"]), int(d["n"]), int(d["steps"]))
        return cls(list(d["epsilons"]), {m: d[m] for m in ("fgsm", "pgd")}, int(d["n"]), int(d["pgd_steps"]))


def robustness_curves(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons=CURVE_EPSILONS, steps: int = 20,
                      attacks=None, defence=None, progress=None, batch: int = 500) -> RobustnessCurves:
    """Accuracy under each of ``attacks`` (default: every registered one; iterative ones with ``steps`` steps) at
    each ε, on the same digits. A minimal-perturbation attack searches once and is cut to each ε (what its ``run``
    does at that ε, without searching again). ``progress(fraction)`` is called after each attack and ε."""
    names = list(ATTACKS) if attacks is None else list(attacks)
    settings, out = AttackSettings(steps=steps), RobustnessCurves(list(epsilons), {}, len(y), steps)
    for k, m in enumerate(names):
        search = get_attack(m).minimal
        found = None if search is None else torch.cat(
            [search(model, x[i : i + batch], y[i : i + batch], settings) for i in range(0, len(y), batch)])
        out.accuracy[m] = []
        for i, eps in enumerate(epsilons):
            right = (robust_correct(model, x, y, m, eps, batch, defence, settings) if found is None else
                     classified_correctly(model, project(found, x, eps), y, batch, defence))
            out.accuracy[m].append(right.float().mean().item())
            if progress:
                progress((k * len(epsilons) + i + 1) / (len(names) * len(epsilons)))
    return out


def robustness_rows(curves: dict[str, RobustnessCurves], epsilons=EPSILONS) -> list[dict]:
    """The defences table, one row per run and attack (registry order): {"model": run, "attack": label, "clean": %,
    "ε = 0.05": %, …}. Each run needs clean digits (ε = 0) and ``epsilons`` in its curves (``missing_epsilons``)."""
    rows = []
    for name, c in curves.items():
        for m in (m for m in ATTACKS if m in c.accuracy):
            acc = c.at(m)
            rows.append({"model": name, "attack": ATTACKS[m].label, "clean": 100 * acc[0.0],
                         **{f"ε = {e:g}": 100 * acc[e] for e in epsilons}})
    return rows


def missing_epsilons(curves: RobustnessCurves, epsilons=EPSILONS) -> list[float]:
    """The budgets of the defences table (and 0, clean) that ``curves`` lacks."""
    return [e for e in (0.0, *epsilons) if e not in curves.epsilons]


class ThroughDefence(nn.Module):
    """The model behind an input defence, differentiable for an adaptive attacker: forward = f(defence(x)),
    backward treats the defence as the identity (BPDA, Athalye et al. 2018)."""

    def __init__(self, model: nn.Module, defence):
        super().__init__()
        self.model, self.defence = model, defence

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + (self.defence(x) - x).detach())


def universal_perturbation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 40,
                           step_size: float | None = None, target: int | None = None, batch: int = 256,
                           seed: int = 0, progress: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """One δ (1×1×28×28) for all images: gradient ascent with ‖δ‖∞ ≤ ε on
    Σᵢ L(f(clip(xᵢ + δ, 0, 1)), yᵢ) (untargeted) or on −Σᵢ L(f(clip(xᵢ + δ, 0, 1)), t) (towards ``target``):
    δ ← clip(δ ± η·sign(∇_δ), −ε, ε), one mini-batch of ``batch`` images per step, η = 2.5·ε/steps by default.
    ``progress(k, δ)`` after each step but the last (a page draws δ as it forms; raising from it stops the ascent)."""
    eta = 2.5 * eps / max(steps, 1) if step_size is None else step_size
    g = torch.Generator().manual_seed(seed)
    delta = torch.zeros(1, *x.shape[1:], device=x.device)
    for k in range(steps):
        if progress is not None and k:
            progress(k, delta.clone())
        idx = torch.randint(len(y), (min(batch, len(y)),), generator=g)
        xb, yb = x[idx], y[idx]
        with torch.enable_grad():
            d = delta.detach().requires_grad_(True)
            logits = model((xb + d).clamp(0, 1))
            loss = F.cross_entropy(logits, yb) if target is None else -F.cross_entropy(logits, torch.full_like(yb, target))
            (grad,) = torch.autograd.grad(loss, d)
        delta = (delta + eta * grad.sign()).clamp(-eps, eps)
    return delta.detach()


def fooling_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, target: int | None = None) -> dict:
    """Of the digits classified correctly without δ: the fraction whose class changes with δ (untargeted)
    or becomes ``target`` (targeted, over those not already of that class); plus accuracy with and without δ."""
    with torch.no_grad():
        clean = model(x).argmax(1)
        adv = model((x + delta).clamp(0, 1)).argmax(1)
    ok = clean == y
    if target is not None:
        ok &= y != target
    fooled = (adv != y) if target is None else (adv == target)
    return {"fooling_rate": (fooled & ok).sum().item() / max(ok.sum().item(), 1),
            "clean_accuracy": (clean == y).float().mean().item(), "accuracy": (adv == y).float().mean().item(),
            "predicted": adv}


def bit_depth(x: torch.Tensor, bits: int = 1) -> torch.Tensor:
    """Bit-depth reduction: round(x·(2ᵇ − 1)) / (2ᵇ − 1); 1 bit = threshold at 0.5."""
    levels = 2**bits - 1
    return torch.round(x * levels) / levels


def median_filter(x: torch.Tensor, k: int = 3) -> torch.Tensor:
    """k×k median of each pixel's neighbourhood (edges padded by reflection)."""
    p = k // 2
    patches = F.unfold(F.pad(x, (p, p, p, p), mode="reflect"), k)  # N × k² × H·W
    return patches.median(1).values.view_as(x)


DEFENCES = {"median 3×3": median_filter, "bit depth 1 (threshold)": bit_depth}


def attack_outcome(labels: torch.Tensor, predicted: torch.Tensor, target: int | None = None) -> tuple[int, int]:
    """(hits, out of): untargeted, the digits now misclassified of all; targeted, the digits now classified as the
    target of those not already of the target class (they cannot be "made" into it)."""
    if target is None:
        return int((predicted != labels).sum()), len(labels)
    eligible = labels != target
    return int((predicted[eligible] == target).sum()), int(eligible.sum())


def evaluate_defence(model: nn.Module, defence, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
                     progress: Callable[[str], None] | None = None) -> dict:
    """Accuracy of ``model`` with an input ``defence`` in front, against PGD-``steps`` at ``eps``: on clean digits
    without / with the defence; under PGD made without knowing the defence, used without / with it; and against an
    adaptive attacker who also runs PGD through the defence (straight-through gradient, ``ThroughDefence``) and, per
    digit, keeps whichever of the two attacks works — the worse of both for the defender. ``progress(what)`` names
    each of the two attacks as it starts."""
    progress = progress or (lambda what: None)
    progress("PGD that ignores the defence")
    xa = attack(model, x, y, "pgd", eps, AttackSettings(steps=steps))
    progress("the adaptive attacker's PGD through the defence")
    through = robust_correct(ThroughDefence(model, defence), x, y, "pgd", eps, settings=AttackSettings(steps=steps))
    with torch.no_grad():
        right = {k: model(v).argmax(1) == y for k, v in
                 {"clean": x, "clean + defence": defence(x), "PGD": xa, "PGD, defence on": defence(xa)}.items()}
    right["adaptive attacker"] = right["PGD, defence on"] & through
    return {k: v.float().mean().item() for k, v in right.items()}


def defence_verdict(res: dict, threshold_defence: bool) -> str:
    """What ``evaluate_defence``'s numbers say, in one clause: no help (under 2 points gained against PGD), a gain
    that only held against an attacker who ignored the defence (the adaptive attack within 10 points of no defence),
    a gain partly taken back (adaptive more than 3 points below), or one that held — for a threshold defence
    (``bit_depth``) with MNIST's reason why."""
    on, adaptive, plain = res["PGD, defence on"], res["adaptive attacker"], res["PGD"]

    def points(a: float, b: float) -> float:  # a − b in percentage points, rounded: float32 means of 500 digits
        return round(100 * (a - b), 1)          # put exactly 2 points at 1.9999…, which read "does not help"

    if points(on, plain) < 2:
        return f"the defence does not help here ({points(on, plain):+.1f} points under attack)."
    if points(adaptive, plain) <= 10:
        return "the defence only worked against an attacker who did not know about it."
    if points(on, adaptive) > 3:
        return "the adaptive attack takes back part of what the defence gained."
    if threshold_defence:
        return ("the threshold holds at this ε: MNIST pixels are nearly all 0 or 1, and a small change cannot push "
                "them across 0.5. Raise ε to see where it stops holding; on natural images, whose pixels are not near "
                "0 or 1, such input transforms are broken by adaptive attacks (Athalye et al., 2018).")
    return ("this adaptive attack did not break it at this ε; stronger ones (more steps, restarts) should be tried "
            "before trusting it.")


def robustness_sentence(config: dict, pgd: dict[float, float], reference: dict[float, float] | None = None) -> str:
    """One sentence on a run's PGD accuracies (ε → accuracy, with 0, 0.1, 0.2 and 0.3) from what the run is: trained
    on adversarial examples, with BatchNorm (compared with ``reference``, a run without it, where given), or plain."""
    def pct(v: float) -> str:
        return f"{100 * v:.1f}%"

    if config.get("adversarial", "none") != "none":
        eps = float(config["adv_epsilon"])
        # At its training budget when that was measured, else at the nearest measured budget, named.
        near = min(pgd, key=lambda e: (abs(e - eps), e))
        at = "at its training budget" if abs(near - eps) < 1e-9 else f"at ε = {near:g} (its budget {eps:g} was not measured)"
        beyond = f"; beyond it, at ε = 0.3, {pct(pgd[0.3])}" if eps < 0.3 - 1e-9 else ""
        return (f"trained on {config['adversarial'].upper()} examples at ε = {eps:g}: {pct(pgd[0.0])} clean (the price "
                f"of robustness), but {pct(pgd[near])} under PGD {at}{beyond}.")
    if config.get("batchnorm"):
        base = (reference or {}).get(0.1)
        if base is not None and pgd[0.1] < base - 0.1:
            return (f"a little more clean accuracy ({pct(pgd[0.0])}) but far more fragile: PGD at ε = 0.1 leaves "
                    f"{pct(pgd[0.1])} (without BatchNorm {pct(base)}). BatchNorm is known to make networks more "
                    "sensitive to small input changes (Galloway et al., 2019).")
        return f"BatchNorm changes clean accuracy ({pct(pgd[0.0])}) but buys no robustness (ε = 0.1: {pct(pgd[0.1])})."
    return (f"{pct(pgd[0.0])} on clean digits, yet PGD at ε = 0.2 (51/255 per pixel; the digits stay perfectly "
            f"readable) leaves {pct(pgd[0.2])}: accuracy is not robustness.")
