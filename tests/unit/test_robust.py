"""FGSM/PGD against the textbook update rules, budget invariants, universal perturbation, input defences and
adversarial training, on the shipped models (whose weights must not change by a bit)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnn_core import robust as R
from cnn_core.attack_plots import attack_attribution_figure
from cnn_core.data import to_float
from cnn_core.store import RunStore
from cnn_core.training import TrainConfig

pytestmark = [pytest.mark.usefixtures("weights_kept"), pytest.mark.numeric]  # numeric: `make test` reruns it on the float32 AVX2 path


@pytest.fixture(scope="module")
def test_batch(mnist):
    return to_float(mnist.test_images[:300]), mnist.test_labels[:300]


def _within_budget(x_adv, x, eps):
    # x ± ε rounds to float32 (≤ 6e-8 at pixels ≤ 1) and ε itself is stored in float32: 1e-6 is that with slack
    return x_adv.min() >= 0 and x_adv.max() <= 1 and (x_adv - x).abs().max() <= eps + 1e-6


@pytest.mark.parametrize("eps", [0.05, 0.3])
@pytest.mark.parametrize("name", ["baseline", "batchnorm"])
def test_fgsm_and_pgd_stay_in_the_ball_and_in_pixel_range(shipped, test_batch, name, eps):
    x, y = test_batch
    model = shipped[name]
    assert _within_budget(R.fgsm(model, x, y, eps), x, eps)
    assert _within_budget(R.pgd(model, x, y, eps, steps=5), x, eps)
    assert _within_budget(R.pgd(model, x, y, eps, steps=5, target=torch.full_like(y, 3)), x, eps)


def test_fgsm_is_the_textbook_rule(shipped, test_batch):
    x, y = test_batch
    model = shipped["baseline"]
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(model(xr), y, reduction="sum").backward()
    # the same batch, model and kernels as fgsm's own gradient, then the same elementwise ops: exact
    assert torch.equal(R.fgsm(model, x, y, 0.1), (x + 0.1 * xr.grad.sign()).clamp(0, 1))
    t = torch.full_like(y, 2)
    xt = x.clone().requires_grad_(True)
    F.cross_entropy(model(xt), t, reduction="sum").backward()
    assert torch.equal(R.fgsm(model, x, y, 0.1, target=t), (x - 0.1 * xt.grad.sign()).clamp(0, 1))


def test_pgd_is_the_textbook_rule(shipped, test_batch):
    """Without random start, one step of size ε is FGSM; three steps follow x ← Π(x + η·sign(∇))."""
    x, y = test_batch
    model = shipped["batchnorm"]
    # the same batch, kernels and elementwise ops as pgd's own steps: exact
    assert torch.equal(R.pgd(model, x, y, 0.1, steps=1, step_size=0.1, random_start=False), R.fgsm(model, x, y, 0.1))
    xk = x.clone()
    for _ in range(3):
        xg = xk.clone().requires_grad_(True)
        F.cross_entropy(model(xg), y, reduction="sum").backward()
        xk = torch.min(torch.max(xk + 0.04 * xg.grad.sign(), x - 0.1), x + 0.1).clamp(0, 1)
    assert torch.equal(R.pgd(model, x, y, 0.1, steps=3, step_size=0.04, random_start=False), xk)


@pytest.mark.parametrize("name", ["baseline", "batchnorm"])
def test_pgd_is_at_least_as_strong_as_fgsm(shipped, test_batch, name):
    x, y = test_batch
    model = shipped[name]
    clean = R.robust_accuracy(model, x, y, "clean", 0.0)
    fgsm = R.robust_accuracy(model, x, y, "fgsm", 0.1)
    pgd = R.robust_accuracy(model, x, y, "pgd", 0.1, settings=R.AttackSettings(steps=10))
    assert clean > 0.98 and pgd <= fgsm < clean, (clean, fgsm, pgd)


def test_targeted_pgd_moves_digits_to_the_target(shipped, test_batch):
    x, y = test_batch
    model = shipped["baseline"]
    t = torch.full_like(y, 8)
    with torch.no_grad():
        before = (model(x).argmax(1) == 8).float().mean()
        after = (model(R.pgd(model, x, y, 0.2, steps=20, target=t)).argmax(1) == 8).float().mean()
    assert after > before + 0.3


def test_pgd_is_seeded(shipped, test_batch):
    x, y = test_batch
    a, b, c = (R.pgd(shipped["baseline"], x[:20], y[:20], 0.1, steps=2, seed=s) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)  # same seed, same batch, same kernels: exact


def test_universal_perturbation_is_bounded_and_beats_random_noise(shipped, mnist, test_batch):
    """One δ for every digit needs a large budget on MNIST: at ε = 0.3 it fools about a third of held-out test
    digits (at ε = 0.2 only a few percent, measured), far more than random ±ε noise."""
    model = shipped["baseline"]
    train_x, train_y = to_float(mnist.train_images[:2000]), mnist.train_labels[:2000]
    delta = R.universal_perturbation(model, train_x, train_y, eps=0.3, steps=30)
    assert delta.shape == (1, 1, 28, 28) and delta.abs().max() <= 0.3 + 1e-6  # ε clamped in float32: ≤ 2e-8 above 0.3
    x, y = test_batch  # held out: the test set
    fooled = R.fooling_rate(model, x, y, delta)["fooling_rate"]
    noise = 0.3 * torch.sign(torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert fooled > 0.2 and fooled > 3 * R.fooling_rate(model, x, y, noise)["fooling_rate"]
    towards = R.universal_perturbation(model, train_x, train_y, eps=0.3, steps=30, target=3)  # 0 and 1: ~1–4%
    assert R.fooling_rate(model, x, y, towards, target=3)["fooling_rate"] > 0.3


def test_bit_depth_and_median_filter_equal_naive_versions():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 6, 5, generator=g)
    assert torch.equal(R.bit_depth(x, 1), (x >= 0.5).float())  # round(x) / 1 is 0 or 1: exact
    levels = R.bit_depth(x, 2).unique()
    assert len(levels) <= 4 and torch.allclose(levels * 3, (levels * 3).round())  # float32 k / 3 times 3: one rounding
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    naive = torch.empty_like(x)
    for n in range(2):
        for i in range(6):
            for j in range(5):
                naive[n, 0, i, j] = padded[n, 0, i : i + 3, j : j + 3].flatten().median()
    assert torch.equal(R.median_filter(x), naive)  # a median selects a value: no arithmetic, exact


def test_adversarial_training_config_is_validated():
    with pytest.raises(ValueError, match="adversarial must be one of none, fgsm, pgd"):
        TrainConfig(adversarial="pdg").validate()
    with pytest.raises(ValueError, match=r"adv_epsilon must be in \(0, 1\]"):
        TrainConfig(adv_epsilon=0.0).validate()
    with pytest.raises(ValueError, match=r"adv_steps must be an integer in \[1, 100\]"):
        TrainConfig(adv_steps=0).validate()


def test_pgd_default_step_size_is_two_and_a_half_epsilon_over_steps(shipped, test_batch):
    x, y = test_batch[0][:50], test_batch[1][:50]
    model = shipped["baseline"]
    default = R.pgd(model, x, y, 0.1, steps=4)  # below: the same double step sizes, batch and kernels: exact
    assert torch.equal(default, R.pgd(model, x, y, 0.1, steps=4, step_size=2.5 * 0.1 / 4)), "default step is not 2.5·ε/steps"
    assert not torch.equal(default, R.pgd(model, x, y, 0.1, steps=4, step_size=0.1 / 4))  # the step size matters here
    assert torch.equal(R.pgd(model, x, y, 0.1, steps=1), R.pgd(model, x, y, 0.1, steps=1, step_size=0.25))  # one step: 2.5·ε
    assert torch.equal(R.pgd(model, x, y, 0.1), R.pgd(model, x, y, 0.1, steps=20, random_start=True, seed=0))  # defaults


def test_through_defence_is_the_defended_model_forward_and_the_identity_backward(shipped, test_batch):
    """BPDA: f(defence(x)) forward; backward, the defence counts as the identity, so the input gradient is the
    model's gradient at defence(x) — not zero, although 1-bit rounding itself has zero gradient everywhere."""
    x, y = test_batch[0][:50], test_batch[1][:50]
    model = shipped["baseline"]
    through = R.ThroughDefence(model, R.bit_depth)
    with torch.no_grad():  # x + (round(x) − x) is exact: −x, or 1 − x (exact for x ≥ 0.5), added back
        assert torch.equal(through(x), model(R.bit_depth(x)))
    grad = R.input_gradient(through, x, y)
    assert grad.abs().sum() > 0, "no gradient passes the defence (not straight-through)"
    # the same input values, batch and kernels: exact
    assert torch.equal(grad, R.input_gradient(model, R.bit_depth(x), y)), "not the model's gradient at defence(x)"


class _FirstTenPixels(torch.nn.Module):
    """Logits = the first ten pixels: an image whose largest of them is pixel c is classified c (ties: the lower c).
    Records the range of every input it is given."""

    def __init__(self):
        super().__init__()
        self.ranges = []

    def forward(self, x):
        self.ranges.append((x.min().item(), x.max().item()))
        return x.flatten(1)[:, :10]


def _image(**pixels):
    """A 1×28×28 image, zero except the given pixels (p3=0.5: pixel 3 is 0.5)."""
    x = torch.zeros(1, 28, 28)
    for name, value in pixels.items():
        x.view(-1)[int(name[1:])] = value
    return x


def test_targeted_fooling_rate_leaves_out_digits_already_of_the_target_class():
    # δ adds 0.6 to pixel 3 (the target), 0.3 to pixel 8, and −0.4 to pixel 20 (not a logit: only clipping shows it).
    delta = _image(p3=0.6, p8=0.3, p20=-0.4)[None]
    cases = [(3, _image(p3=0.5)), (3, _image(p3=0.9)),  # already the target: not counted
             (1, _image(p1=0.5)), (2, _image(p2=0.9)), (5, _image(p5=0.3)),  # 1 and 5 move to 3, 2 holds
             (4, _image(p4=0.5, p8=0.45)),  # moves, but to 8: not fooled towards 3
             (7, _image(p0=0.5))]  # misclassified (as 0) without δ: not counted, although δ moves it to 3
    x, y = torch.stack([image for _, image in cases]), torch.tensor([label for label, _ in cases])
    model = _FirstTenPixels()
    r = R.fooling_rate(model, x, y, delta, target=3)
    assert r["predicted"].tolist() == [3, 3, 3, 2, 3, 8, 3]
    assert r["fooling_rate"] == 2 / 4  # digits 1 and 5 of the four that count (1, 2, 5, 4); int / int in float64: exact
    assert r["clean_accuracy"] == pytest.approx(6 / 7) and r["accuracy"] == pytest.approx(3 / 7)  # float32 means
    assert all(0 <= lo and hi <= 1 for lo, hi in model.ranges), f"the model saw pixels outside [0, 1]: {model.ranges}"
    assert R.fooling_rate(model, x[2:3], y[2:3], delta, target=3)["fooling_rate"] == 1.0  # one digit, fooled; 1 / 1: exact


def test_input_gradient_of_a_batch_is_each_images_own_gradient(shipped, test_batch):
    """Summed, not averaged, over the batch: image i's gradient does not shrink with the batch's size."""
    model, (x, y) = shipped["baseline"], (test_batch[0][:6], test_batch[1][:6])
    alone = torch.cat([R.input_gradient(model, x[i : i + 1], y[i : i + 1]) for i in range(6)])
    together = R.input_gradient(model, x, y)
    # A batch of 6 and a batch of 1 take other kernel blockings, so float32 sums in another order. A pixel's gradient
    # is a sum of terms up to the image's largest gradient, with cancellation: its error is ~1e-6 of that largest
    # value (2⁻²⁴ per addition, over conv2's 288 and fc1's 1,568 terms), whatever its own size (measured: 8e-7 of it
    # on the AVX-512 path, 1.3e-6 on the AVX2 path). Averaging instead of summing would be off by 5/6 of each value.
    scale = alone.flatten(1).abs().amax(1).view(-1, 1, 1, 1)
    assert ((together - alone).abs() <= 1e-5 * scale).all()


def test_a_pixel_the_model_does_not_read_is_never_moved(test_batch):
    """sign(0) = 0: FGSM and PGD (untargeted and targeted) leave the pixels whose gradient is exactly 0 (here all
    but the first ten) where they are, and move the others."""
    x, y = test_batch[0][:8], test_batch[1][:8]
    model = _FirstTenPixels()
    for xa in (R.fgsm(model, x, y, 0.1), R.pgd(model, x, y, 0.1, steps=3, random_start=False),
               R.pgd(model, x, y, 0.1, steps=3, random_start=False, target=(y + 1) % 10)):
        read, rest = xa.flatten(1)[:, :10], xa.flatten(1)[:, 10:]
        assert torch.equal(rest, x.flatten(1)[:, 10:]) and not torch.equal(read, x.flatten(1)[:, :10])  # x + η·0 is x


def test_universal_perturbation_step_seed_and_pixel_range(shipped, mnist):
    """Default η = 2.5·ε/steps and an explicit step size is used; the mini-batches are seeded; the model only ever
    sees images clipped to [0, 1]."""
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append((x.min().item(), x.max().item()))
            return shipped["baseline"](x)

    x, y = to_float(mnist.train_images[:100]), mnist.train_labels[:100]
    default = R.universal_perturbation(Spy(), x, y, eps=0.3, steps=5, batch=20)
    assert len(seen) == 5 and min(lo for lo, _ in seen) == 0 and max(hi for _, hi in seen) == 1  # clamp's bounds: exact
    model = shipped["baseline"]
    # the same seed, batches, double step size (2.5 · 0.3 / 5 either way) and kernels: exact
    assert torch.equal(default, R.universal_perturbation(model, x, y, eps=0.3, steps=5, batch=20)), "not seeded"
    assert not torch.equal(default, R.universal_perturbation(model, x, y, eps=0.3, steps=5, batch=20, seed=1))
    explicit = R.universal_perturbation(model, x, y, eps=0.3, steps=5, batch=20, step_size=2.5 * 0.3 / 5)
    assert torch.equal(default, explicit), "default step is not 2.5·ε/steps"
    one_step = R.universal_perturbation(model, x, y, eps=0.3, steps=1, batch=20, step_size=0.01)
    assert one_step.abs().max().item() == pytest.approx(0.01)  # float32 0.01 read as float64: ~1e-9 off


def test_bit_depth_levels_by_hand_and_one_bit_by_default():
    x = torch.tensor([0.0, 0.1, 0.2, 0.6, 0.95, 1.0])
    assert torch.equal(R.bit_depth(x), torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]))  # the page's "bit depth 1"
    assert torch.equal(R.bit_depth(x, 2), torch.tensor([0, 0, 1, 2, 3, 3]) / 3)  # the same float32 k / levels: exact
    assert torch.equal(R.bit_depth(x, 3), torch.tensor([0, 1, 1, 4, 7, 7]) / 7)


def test_median_filter_5x5_keeps_the_image_size():
    x = torch.rand(2, 1, 7, 6, generator=torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    assert torch.equal(R.median_filter(x, 5)[1, 0, 3, 2], padded[1, 0, 3:8, 2:7].flatten().median())  # a selection: exact
    assert R.median_filter(x, 5).shape == x.shape


def test_robustness_curves_are_robust_accuracy_at_each_epsilon(shipped, test_batch):
    x, y = test_batch[0][:40], test_batch[1][:40]
    model = shipped["baseline"]
    fractions = []
    three = R.AttackSettings(steps=3)
    out = R.robustness_curves(model, x, y, epsilons=(0.0, 0.2), steps=3, progress=fractions.append)
    # the same calls on the same batch of 40, same kernels: the same float32 means, exact; every registered attack
    assert out == R.RobustnessCurves([0.0, 0.2], {m: [R.robust_accuracy(model, x, y, m, e, settings=three)
                                                      for e in (0.0, 0.2)] for m in R.ATTACKS}, 40, 3)
    # after each attack and ε: k/6 computed as (k · 1)/(3 · 2) or so, float64 of small integers: exact either way
    assert out.accuracy["pgd"][1] < out.accuracy["pgd"][0] and fractions == [k / 6 for k in range(1, 7)]
    defended = R.robustness_curves(model, x, y, epsilons=(0.2,), steps=3, attacks=["fgsm"], defence=R.bit_depth)
    assert defended.accuracy == {"fgsm": [R.robust_accuracy(model, x, y, "fgsm", 0.2, defence=R.bit_depth)]}
    assert defended.accuracy["fgsm"] != out.accuracy["fgsm"][1:]
    assert R.robustness_curves(model, x, y, epsilons=(0.0,)).steps == 20  # PGD-20 unless told otherwise


def test_robustness_curves_read_what_they_wrote_and_the_files_of_before_the_registry():
    curves = R.RobustnessCurves([0.0, 0.1], {"fgsm": [0.9, 0.5], "deepfool": [0.9, 0.7]}, 200, 10)
    assert R.RobustnessCurves.from_json(json.loads(json.dumps(curves.to_json()))) == curves
    legacy = {"epsilons": [0.0, 0.1], "fgsm": [0.9, 0.5], "pgd": [0.9, 0.2], "n": 1000, "pgd_steps": 20}
    assert R.RobustnessCurves.from_json(legacy) == R.RobustnessCurves([0.0, 0.1], {"fgsm": [0.9, 0.5], "pgd": [0.9, 0.2]},
                                                                      1000, 20)
    assert curves.at("deepfool") == {0.0: 0.9, 0.1: 0.7}


def test_the_defences_table_has_a_row_per_run_and_attack_and_names_what_is_missing():
    curves = {"a": R.RobustnessCurves([0.0, 0.1, 0.2], {"pgd": [1.0, 0.5, 0.25], "fgsm": [1.0, 0.75, 0.5]}, 10, 20)}
    assert R.robustness_rows(curves, epsilons=(0.1, 0.2)) == [  # registry order: FGSM before PGD
        {"model": "a", "attack": "FGSM", "clean": 100.0, "ε = 0.1": 75.0, "ε = 0.2": 50.0},
        {"model": "a", "attack": "PGD", "clean": 100.0, "ε = 0.1": 50.0, "ε = 0.2": 25.0}]
    assert R.missing_epsilons(curves["a"], epsilons=(0.1, 0.3)) == [0.3]
    assert R.missing_epsilons(curves["a"], epsilons=(0.1, 0.2)) == []


def test_fgsm_leaves_pixels_with_zero_gradient_alone():
    """sign(0) = 0: pixels the loss does not depend on (all but the first ten here) stay as they were."""
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, 2, 3])
    for target in (None, torch.tensor([4, 5, 6])):
        x_adv = R.fgsm(_FirstTenPixels(), x, y, 0.1, target=target)
        assert torch.equal(x_adv.flatten(1)[:, 10:], x.flatten(1)[:, 10:]), f"target={target}"  # x + ε·0 is x
        assert ((x_adv - x).flatten(1)[:, :10].abs() > 0).all()


def test_pgd_takes_one_budget_per_image(shipped, test_batch):
    """A tensor of budgets attacks each image as a scalar budget would alone (step size 2.5·εᵢ/steps each)."""
    x, y = test_batch[0][:3], test_batch[1][:3]
    model = shipped["baseline"]
    budgets = (0.05, 0.2, 0.0)
    together = R.pgd(model, x, y, torch.tensor(budgets), steps=3, random_start=False)
    alone = torch.cat([R.pgd(model, x[i : i + 1], y[i : i + 1], e, steps=3, random_start=False)
                       for i, e in enumerate(budgets)])
    # Each image stays in its own ball and uses all of it; one shared budget would move image 0 by 0.2.
    # x ± ε rounds to float32 (≤ 6e-8 at pixels ≤ 1), and ε itself is a float32 read as float64
    assert (together - x).flatten(1).abs().amax(1).tolist() == pytest.approx(budgets, abs=1e-6)
    # Batched and alone take the sign of gradients summed in another order (other kernel blocking): a pixel whose
    # gradient is within rounding of 0 may step the other way, and the next steps follow it. None did on the AVX-512
    # or the AVX2 path (with MKL also held to AVX2, 7–11% did); 2% may: a budget or step size mixed up moves most.
    assert ((together - alone).abs() < 1e-6).flatten(1).float().mean(1).min() >= 0.98
    assert torch.equal(together[2], x[2])  # ε = 0 leaves the image alone
    u = torch.ones(1, 1, 28, 28)  # a given start: x⁰ = Π(x + ε·u), then no step: the same elementwise ops, exact
    assert torch.equal(R.pgd(model, x, y, torch.tensor(budgets), steps=0, start=u),
                       R.project(x + torch.tensor(budgets).view(-1, 1, 1, 1), x, torch.tensor(budgets).view(-1, 1, 1, 1)))


def _flips_at(model, x, y, k, steps=10, seed=0):
    """Does PGD at ε = k/255 flip each image? Same start as smallest_flipping_eps: one seeded u for all images."""
    u = 2 * torch.rand((1, 1, 28, 28), generator=torch.Generator().manual_seed(seed)) - 1
    xa = R.pgd(model, x, y, torch.full((len(y),), float(k)) * (1 / 255), steps=steps, start=u)
    with torch.no_grad():
        return model(xa).argmax(1) != y


@pytest.mark.parametrize("name", ["baseline", "batchnorm"])
def test_smallest_flipping_eps_agrees_with_a_scan_of_every_budget(shipped, test_batch, name):
    """Bisection against PGD at every k/255, k = 0 … the largest ε* (same steps, seed and start). Always true: PGD
    flips the digit at ε* and not at ε* − 1/255, so the scan's first flip is at most ε*. Equal on these digits
    because PGD's success grows with ε here; bisection assumes that and cannot ensure it (measured: the adv-trained
    model's test digit 11 flips at 76/255 and 77/255, not at 78/255; bisection still found 76)."""
    model = shipped[name]
    x, y = test_batch[0][:4], test_batch[1][:4]
    eps, x_adv = R.smallest_flipping_eps(model, x, y, steps=10)
    k = (eps * 255).round().long()
    assert torch.allclose(eps, k / 255) and (k >= 1).all() and (k <= 128).all(), eps  # k · (1/255) vs k / 255: 1 rounding
    scan = torch.stack([_flips_at(model, x, y, j) for j in range(int(k.max()) + 1)], 1)  # N × (max k + 1)
    rows = torch.arange(4)
    assert scan[rows, k].all() and not scan[rows, k - 1].any()  # the bracket bisection ended on
    assert torch.equal(scan.int().argmax(1), k)  # the smallest budget the scan flips
    assert ((x_adv - x).abs().amax((1, 2, 3)) <= eps + 1e-6).all()  # x ± ε rounds to float32: ≤ 6e-8
    with torch.no_grad():
        assert (model(x_adv).argmax(1) != y).all()


def test_smallest_flipping_eps_batched_equals_one_image_at_a_time(shipped, test_batch, mnist):
    model = shipped["baseline"]
    x = torch.cat([test_batch[0][:3], to_float(mnist.test_images[247])])  # #247 is misclassified by the baseline
    y = torch.cat([test_batch[1][:3], mnist.test_labels[247:248]])
    eps, x_adv = R.smallest_flipping_eps(model, x, y, steps=5)
    alone = [R.smallest_flipping_eps(model, x[i : i + 1], y[i : i + 1], steps=5) for i in range(4)]
    assert torch.equal(eps, torch.cat([e for e, _ in alone]))  # k·tol for the integer k each bisection ends on: exact
    # The images: a batch of 4 (or of the unsettled ones) and a batch of 1 sum gradients in another order (other kernel
    # blocking), so a pixel whose gradient is within rounding of 0 may step the other way, as in
    # test_pgd_takes_one_budget_per_image: the pixels that agree agree exactly, ≥ 98% of each image must.
    alone_adv = torch.cat([xa for _, xa in alone])
    assert ((x_adv - alone_adv).abs() < 1e-6).flatten(1).float().mean(1).min() >= 0.98


def test_an_already_misclassified_digit_needs_no_budget(shipped, mnist):
    model = shipped["baseline"]
    x, y = to_float(mnist.test_images[[247, 0]]), mnist.test_labels[[247, 0]]
    with torch.no_grad():
        assert model(x).argmax(1).tolist()[0] != y[0]
    eps, x_adv = R.smallest_flipping_eps(model, x, y, steps=5)
    assert eps[0] == 0 and torch.equal(x_adv[0], x[0]) and eps[1] > 0


def test_a_digit_not_flipped_within_max_eps_gets_infinity(shipped, test_batch):
    """ε is searched up to ⌈max_eps/tol⌉·tol = 6/255 for max_eps = 0.02; nothing flips there, so all get inf and
    x_adv is PGD's failed attempt at 6/255."""
    model = shipped["baseline"]
    x, y = test_batch[0][:3], test_batch[1][:3]
    eps, x_adv = R.smallest_flipping_eps(model, x, y, max_eps=0.02, steps=5)
    assert torch.isinf(eps).all()
    assert 5 / 255 < (x_adv - x).abs().max() <= 6 / 255 + 1e-6  # x ± ε rounds to float32: ≤ 6e-8
    with torch.no_grad():
        assert torch.equal(model(x_adv).argmax(1), y)


def test_adversarial_training_raises_the_flipping_budget_and_no_weight_changes(shipped, test_batch):
    """The teaching case: on each of 4 test digits the adv-trained model needs a larger budget than the baseline
    (measured ~2×: 36, 45, 31, 23 vs 74, 83, 69, 71 /255 with PGD-10). Weights bit-identical afterwards."""
    adv = RunStore().load_model("adv-trained")[0].requires_grad_(False).eval()
    before = {k: v.clone() for k, v in adv.state_dict().items()}
    x, y = test_batch[0][:4], test_batch[1][:4]
    base_eps, _ = R.smallest_flipping_eps(shipped["baseline"], x, y, steps=10)
    adv_eps, _ = R.smallest_flipping_eps(adv, x, y, steps=10)
    assert (adv_eps > base_eps + 20 / 255).all(), (base_eps * 255, adv_eps * 255)
    assert all(torch.equal(before[k], v) for k, v in adv.state_dict().items())  # nothing may write them: bit-identical


def test_reference_labels_are_the_true_class_or_the_models_own_answer(shipped, test_batch):
    model = shipped["baseline"]
    x = test_batch[0][:3]
    predicted = model(x).argmax(1)
    assert R.reference_labels(model, x, [7, None, 3]).tolist() == [7, int(predicted[1]), 3]


def test_attributions_under_attack_explain_each_images_own_prediction(shipped, test_batch):
    from cnn_core.inside import attribution

    model = shipped["baseline"]
    x, y = test_batch[0][:3], test_batch[1][:3]
    x_adv = R.pgd(model, x, y, 0.2, steps=10)
    out = R.attributions_under_attack(model, x, x_adv)
    with torch.no_grad():
        clean, adv = model(x).softmax(1), model(x_adv).softmax(1)
    # the same forward passes and captum calls on the same batches, same kernels: exact
    assert torch.equal(out["pred_clean"], clean.argmax(1)) and torch.equal(out["pred_adv"], adv.argmax(1))
    assert torch.equal(out["conf_adv"], adv.max(1).values) and (out["pred_adv"] != y).all()  # PGD at 0.2 flips all 3
    assert torch.equal(out["conf_clean"], clean.max(1).values)
    for m in ("Saliency", "Grad-CAM (conv2)"):
        c, a = out["maps"][m]
        assert torch.equal(c, attribution(model, x, out["pred_clean"], m))
        assert torch.equal(a, attribution(model, x_adv, out["pred_adv"], m))
        assert torch.equal(out["peaks"][m], torch.stack([c.amax((1, 2)), a.amax((1, 2))]).amax(0))
        assert (c >= 0).all() and (a >= 0).all()


def test_attack_attribution_figure_puts_clean_and_adversarial_on_one_scale_per_method():
    rng = np.random.default_rng(0)
    img = rng.random((2, 28, 28))
    maps = {"saliency": (rng.random((28, 28)), 3 * rng.random((28, 28))), "Grad-CAM": (rng.random((28, 28)), rng.random((28, 28)))}
    peaks = {m: max(c.max(), a.max()) for m, (c, a) in maps.items()}
    fig = attack_attribution_figure(img[0], img[1], maps, peaks, ("5 (100%)", "8 (97%)"), (5, 8))
    overlays = [t for t in fig.data if t.zmax != 1]  # the grey images are on 0 … 1
    # the peaks, copied into the figure: exact
    assert [(t.zmin, t.zmax) for t in overlays] == [(0, peaks["saliency"])] * 2 + [(0, peaks["Grad-CAM"])] * 2
    assert [t.showscale for t in overlays] == [False, True, False, True]  # one colour bar per method, after the pair
    texts = [a.text for a in fig.layout.annotations]
    assert {"5 (100%)", "8 (97%)", "for 5", "for 8", "<b>saliency</b>", "<b>Grad-CAM</b>"} <= set(texts)


def test_saliency_leaves_the_strokes_under_attack_but_not_for_the_adversarially_trained_model(mnist):
    """What the Attacks section's explanation claims, on the first 30 test digits with PGD-10 at ε = 0.2: the share
    of saliency off the strokes (pixels ≤ 0.2) is, as medians, 0.56 → 0.73 for the baseline and 0.03 for the
    adv-trained model's clean digits (measured; 0.58 → 0.72 and 0.03 on 60 digits with PGD-20)."""
    x, y = to_float(mnist.test_images[:30]), mnist.test_labels[:30]
    off = x[:, 0] <= 0.2
    shares = {}
    for name in ("baseline", "adv-trained"):
        model = RunStore().load_model(name)[0].requires_grad_(False).eval()
        out = R.attributions_under_attack(model, x, R.pgd(model, x, y, 0.2, steps=10), ("Saliency",))
        shares[name] = [((m * off).sum((1, 2)) / m.sum((1, 2))).median().item() for m in out["maps"]["Saliency"]]
    (base_clean, base_adv), (robust_clean, _) = shares["baseline"], shares["adv-trained"]
    assert 0.5 < base_clean < base_adv - 0.1 and robust_clean < 0.1, shares


def test_attack_outcome_counts_flips_and_targets_among_the_eligible():
    labels = torch.tensor([3, 3, 5, 7, 0])
    predicted = torch.tensor([3, 8, 0, 0, 0])
    assert R.attack_outcome(labels, predicted) == (3, 5)  # #1, #2, #3 changed; #4 was a 0 and stays 0
    assert R.attack_outcome(labels, predicted, target=0) == (2, 4)  # the 0 already was one: not counted


def test_evaluate_defence_keeps_the_worse_attack_per_digit(shipped, test_batch):
    x, y = test_batch
    x, y = x[:40], y[:40]
    model = shipped["baseline"]
    res = R.evaluate_defence(model, R.median_filter, x, y, 0.2, steps=5)
    assert list(res) == ["clean", "clean + defence", "PGD", "PGD, defence on", "adaptive attacker"]
    # fractions of the 40 digits: a float32 k / 40 is off by ≤ 2⁻²⁵ (half an ulp below 1), so v·40 by ≤ 1.2e-6
    assert all(abs(v * 40 - round(v * 40)) < 1e-5 for v in res.values())
    with torch.no_grad():  # the same batch of 40, same kernels, the same float32 mean: exact
        assert res["clean"] == (model(x).argmax(1) == y).float().mean().item()
        assert res["clean + defence"] == (model(R.median_filter(x)).argmax(1) == y).float().mean().item()
    through = R.robust_accuracy(R.ThroughDefence(model, R.median_filter), x, y, "pgd", 0.2, settings=R.AttackSettings(steps=5))
    assert res["adaptive attacker"] <= min(res["PGD, defence on"], through)
    assert res["PGD"] < res["PGD, defence on"]  # the median filter helps against PGD that ignores it


def test_universal_progress_shows_delta_as_it_forms_and_defence_names_its_attacks(shipped, mnist):
    model = shipped["baseline"]
    x, y = to_float(mnist.test_images[:64]), mnist.test_labels[:64]
    seen = []
    full = R.universal_perturbation(model, x, y, 0.2, steps=4, batch=32, progress=lambda k, d: seen.append((k, d)))
    assert [k for k, _ in seen] == [1, 2, 3]
    for k, d in seen:  # each partial is the ascent stopped after k steps: same batches, η and kernels, exact
        assert torch.equal(d, _universal_prefix(model, x, y, k))
    assert torch.equal(full, R.universal_perturbation(model, x, y, 0.2, steps=4, batch=32))
    phases = []
    R.evaluate_defence(model, R.bit_depth, x[:16], y[:16], 0.1, steps=2, progress=phases.append)
    assert phases == ["PGD that ignores the defence", "the adaptive attacker's PGD through the defence"]


def _universal_prefix(model, x, y, k):
    """The first k steps of a 4-step universal ascent (same η = 2.5·0.2/4, same batches)."""
    return R.universal_perturbation(model, x, y, 0.2, steps=k, step_size=2.5 * 0.2 / 4, batch=32)


def test_reference_labels_refuse_a_label_list_of_the_wrong_length(shipped, test_batch):
    """One label per image: a list that is too short or too long is an error, not silently truncated."""
    model = shipped["baseline"]
    x = test_batch[0][:3]
    with pytest.raises(ValueError):
        R.reference_labels(model, x, [7, None])
    with pytest.raises(ValueError):
        R.reference_labels(model, x, [7, None, 3, 1])


def test_targeted_attack_outcome_counts_only_digits_that_became_the_target():
    """Targeted at 8: of five eligible digits only #1 became an 8 — the others changed (or not) to something else."""
    labels = torch.tensor([3, 3, 5, 7, 0])
    predicted = torch.tensor([3, 8, 0, 0, 0])
    assert R.attack_outcome(labels, predicted, target=8) == (1, 5)


class _SumModel(torch.nn.Module):
    """Two classes, logits (0, (s − c) / 100) with s = the sum of the pixels (small, so the softmax never saturates
    and the gradient never vanishes): from a black digit of class 0, PGD at budget ε ends at ε on every pixel (each
    step's gradient sign is +1 everywhere), so it flips the digit exactly when 784·ε > c. A bisection's answer can be
    worked out by hand."""

    def __init__(self, flips_above: float):
        super().__init__()
        self.c = 784 * flips_above

    def forward(self, x):
        s = x.flatten(1).sum(1)
        return torch.stack([torch.zeros_like(s), (s - self.c) / 100], 1)


@pytest.mark.parametrize("tol, max_eps, want", [(1 / 255, 0.5, 78 / 255), (2 / 255, 0.3, 78 / 255),
                                                (1 / 255, 0.2, float("inf"))])
def test_the_bisection_finds_the_first_budget_on_its_grid_that_flips(tol, max_eps, want):
    """Flips above 77.5/255: on the 1/255 grid that is 78/255; on the 2/255 grid up to 0.3 the search must reach
    ⌈0.3 / (2/255)⌉ = 39 steps = 78/255 (38 would stop at 76/255 and report 'not flipped'); up to 0.2, nothing."""
    model, x = _SumModel(77.5 / 255), torch.zeros(3, 1, 28, 28)
    eps, x_adv = R.smallest_flipping_eps(model, x, torch.tensor([0, 0, 1]), tol=tol, max_eps=max_eps)
    # ε* = k·tol in float32, read as float64 (~1e-7 relative); x_adv = 0 + ε* clipped in float32: default tolerances
    assert eps[:2].tolist() == pytest.approx([want, want]) and eps[2] == 0  # the third is already "wrong"
    if want < 1:
        assert torch.allclose(x_adv[:2], torch.full_like(x_adv[:2], want))


def test_attack_dispatches_by_method_and_budget(shipped, test_batch):
    model, (x, y) = shipped["baseline"], test_batch
    x, y = x[:7], y[:7]
    assert R.attack(model, x, y, "clean", 0.3) is x and R.attack(model, x, y, "pgd", 0.0) is x
    t, to_3 = torch.full_like(y, 3), R.AttackSettings(target=3)
    assert torch.equal(R.attack(model, x, y, "fgsm", 0.2, to_3), R.fgsm(model, x, y, 0.2, t))  # the same call: exact
    assert not torch.equal(R.attack(model, x, y, "fgsm", 0.2, to_3), R.fgsm(model, x, y, 0.2))
    with pytest.raises(ValueError, match="'cw'.*pgd"):  # names what was asked and what there is
        R.attack(model, x, y, "cw", 0.1)
    # in batches of 3 (3 + 3 + 1 digits): the same answers as all at once, one per digit
    assert torch.equal(R.robust_correct(model, x, y, "fgsm", 0.1, batch=3), R.robust_correct(model, x, y, "fgsm", 0.1))
    assert len(R.robust_correct(model, x, y, "fgsm", 0.1, batch=3)) == 7
