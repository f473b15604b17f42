"""DeepFool (cnn_core.robust_attacks.deepfool) on an affine model, where its answer is known in closed form: the
distance from x to the boundary between its class c and class k is |f_k − f_c| / ‖w_k − w_c‖_q (q = 1 for an L∞
step, 2 for an L2 step), and the smallest perturbation that changes the class reaches the nearest of them."""

import math

import pytest
import torch
from torch import nn

from cnn_core.robust_attacks.deepfool import CROSS, deepfool

pytestmark = pytest.mark.numeric


def _affine(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    nn.init.normal_(model[1].weight, std=0.01)
    return model.eval().requires_grad_(False)


def _distances(model: nn.Module, x: torch.Tensor, q: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: the distance to each class's boundary (its own class: inf), and its class."""
    w, b = model[1].weight.double(), model[1].bias.double()
    f = x.flatten(1).double() @ w.T + b
    c = f.argmax(1)
    dist = (f - f.gather(1, c[:, None])).abs() / (w[None] - w[c][:, None]).norm(p=q, dim=2)
    return dist.scatter(1, c[:, None], math.inf), c


@pytest.mark.parametrize("norm, q", [(math.inf, 1), (2, 2)])
def test_on_an_affine_model_deepfool_finds_the_smallest_perturbation(norm, q):
    """Grey images (0.5: far from 0 and 1, so nothing is clipped): one step to the nearest boundary, of length
    (1 + overshoot)·(distance + CROSS); the class becomes the nearest one; 99% of that step does not change the class."""
    model = _affine()
    x = 0.5 + 0.01 * torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    dist, c = _distances(model, x, q)
    x_adv = deepfool(model, x, c, overshoot=0.02, norm=norm)
    r = (x_adv - x).flatten(1).double()
    # float32 logits and gradients of a 784-term dot product: relative error ~1e-6; 1e-4 leaves room for it
    assert r.norm(p=norm, dim=1).tolist() == pytest.approx((1.02 * (dist.min(1).values + CROSS)).tolist(), rel=1e-4)
    with torch.no_grad():
        assert torch.equal(model(x_adv).argmax(1), dist.argmin(1))  # across the nearest boundary
        assert torch.equal(model(x + 0.99 * (x_adv - x) / 1.02).argmax(1), c)  # and no shorter step of that kind crosses


def test_a_target_is_reached_at_the_distance_of_its_own_boundary():
    """Only the image's class c and the target t can win here (the other biases are −1000), so the way to t is one
    step to their boundary, of length d_t + CROSS (overshoot 0)."""
    model = _affine(2)
    x = torch.full((4, 1, 28, 28), 0.5)
    c = model(x).argmax(1)
    target = (c + 1) % 10
    model[1].bias[[k for k in range(10) if k not in (c[0], target[0])]] = -1000.0
    dist, c = _distances(model, x, 1)
    x_adv = deepfool(model, x, c, overshoot=0.0, target=target)
    with torch.no_grad():
        assert torch.equal(model(x_adv).argmax(1), target)
    # float32 logits and gradients of a 784-term dot product: relative error ~1e-6; 1e-4 leaves room for it
    want = dist.gather(1, target[:, None])[:, 0] + CROSS
    assert (x_adv - x).abs().flatten(1).amax(1).double().tolist() == pytest.approx(want.tolist(), rel=1e-4)


def test_digits_already_misclassified_or_that_cannot_move_stay_as_they_are():
    model = _affine(3)
    x = torch.full((3, 1, 28, 28), 0.5)
    with torch.no_grad():
        c = model(x).argmax(1)
    assert torch.equal(deepfool(model, x, (c + 1) % 10), x)  # "wrong" already: nothing to do
    flat = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval().requires_grad_(False)
    nn.init.zeros_(flat[1].weight)  # the output does not depend on the image: no boundary to reach
    out = deepfool(flat, x, flat(x).argmax(1), steps=3)
    assert torch.equal(out, x)


def test_pixels_stay_in_range_and_only_l2_or_linf_steps_exist():
    model = _affine(4)
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(5)).round()  # black and white: most pixels at a bound
    out = deepfool(model, x, model(x).argmax(1))
    assert out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="norm.*1"):
        deepfool(model, x, model(x).argmax(1), norm=1)
