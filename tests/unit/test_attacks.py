"""Assignment part 3 on the shipped models: each attack does what its formula says, all targets in one
batch equal one-at-a-time, and no weight changes by a single bit."""

import numpy as np
import pytest
import torch

from cnn_core import attacks as A

pytestmark = [pytest.mark.usefixtures("weights_kept"), pytest.mark.numeric]  # numeric: `make test` reruns it on the float32 AVX2 path
MODELS = ["baseline", "batchnorm"]


def _seven(mnist) -> torch.Tensor:
    return mnist.test_images[0].float()  # test digit 0 is a 7, 0–255


@pytest.mark.parametrize("name", MODELS)
def test_fooling_images_raise_their_cost_and_win(shipped, name):
    r = A.fooling_images(shipped[name], steps=200, step_size=1000.0, seed=0)
    assert r.images.shape == (10, 28, 28) and r.costs.shape == (201, 10)
    assert (r.costs[-1] > r.costs[0] + 5).all()  # logits[t] rose by more than 5 for every target
    assert (np.diff(r.costs, axis=0) > -1e-3).mean() > 0.95  # and rose at almost every step
    assert r.predicted.tolist() == list(range(10)) and (r.confidence > 0.95).all()
    assert r.images.min() >= 0 and r.images.max() <= 255


def test_one_batch_equals_one_target_at_a_time(shipped):
    model = shipped["baseline"]
    batched = A.fooling_images(model, steps=30, step_size=1000.0, seed=3)
    for t in (0, 4, 9):
        x0 = A.noise_image(1, seed=3)
        alone = A.gradient_ascent(model, x0, lambda x, t=t: A.fooling_cost(A.scores(model, x), torch.tensor([t])), 30, 1000.0)
        np.testing.assert_allclose(alone.images[0], batched.images[t], atol=1e-2)  # float32 sums differ by batch size
        # the same batch-size difference over 30 steps: logits ≤ 2.3e-6 apart measured (both paths); atol for costs near 0
        np.testing.assert_allclose(alone.costs[:, 0], batched.costs[:, t], rtol=1e-4, atol=1e-4)


def test_gradient_ascent_is_the_update_rule(shipped):
    """One step by hand: x₁ = clamp(x₀ + step·∂C/∂x₀, 0, 255), and with sign: x₀ + step·sign(∂C/∂x₀)."""
    model, t = shipped["batchnorm"], torch.tensor([3])
    x0 = A.noise_image(1, seed=1).requires_grad_(True)
    (d,) = torch.autograd.grad(A.fooling_cost(A.scores(model, x0), t).sum(), x0)
    cost = lambda x: A.fooling_cost(A.scores(model, x), t)  # noqa: E731
    plain = A.gradient_ascent(model, x0, cost, 1, 5000.0)
    signed = A.gradient_ascent(model, x0, cost, 1, 2.0, sign=True, clamp=False)
    # same model, same batch of 1, same kernels as the ascent's own step: default tolerance, and sign(d) exactly
    assert torch.allclose(torch.from_numpy(plain.images), (x0 + 5000.0 * d).clamp(0, 255).detach()[:, 0])
    assert torch.equal(torch.from_numpy(signed.images), (x0 + 2.0 * d.sign()).detach()[:, 0])


def test_no_clamp_lets_pixels_leave_the_valid_range(shipped):
    r = A.fooling_images(shipped["baseline"], steps=100, step_size=20000.0, clamp=False)
    assert r.images.min() < 0 or r.images.max() > 255


def test_the_prior_makes_the_images_look_like_the_target_image(mnist, shipped):
    model, seven = shipped["baseline"], _seven(mnist)
    mse = {}
    for beta in (0.0, 1e-3, 1e-2):
        r = A.targeted_images(model, seven[None], beta=beta, steps=200)
        mse[beta] = A.mse(torch.from_numpy(r.images), seven).numpy()
        if beta <= 1e-3:  # a reasonable β: every image ends classified as its target
            assert r.predicted.tolist() == list(range(10)), (beta, r.predicted)
    assert (mse[1e-2] < mse[1e-3]).all() and (mse[1e-3] < mse[0.0]).all()
    assert mse[1e-2].mean() < 0.1 * mse[0.0].mean()


def test_targeted_grid_rows_are_image_then_target(mnist, shipped):
    looks = mnist.test_images[:2].float()
    r = A.targeted_images(shipped["baseline"], looks, beta=1e-3, steps=50, start="image")
    assert r.images.shape == (20, 28, 28)
    assert r.costs.shape == (51, 20)
    ref = A.targeted_images(shipped["baseline"], looks[1:], beta=1e-3, steps=50, start="image")
    np.testing.assert_allclose(r.images[10:], ref.images, atol=1e-2)  # float32 sums differ by batch size (20 vs 10)


@pytest.mark.parametrize("name", MODELS)
def test_adversarial_noise_reaches_every_target_and_stops_there(mnist, shipped, name):
    model, seven = shipped[name], _seven(mnist)
    r = A.adversarial_noise(model, seven, steps=300)
    assert r.reached.all() and r.probs.argmax(1).tolist() == list(range(10))
    assert r.steps[7] == 0 and np.abs(r.noise[7]).max() == 0  # already a 7: no step, no noise
    assert (r.steps[np.arange(10) != 7] >= 1).all() and (r.steps < 300).all()
    np.testing.assert_allclose(r.images, seven.numpy() + r.noise, atol=1e-4)  # the attack's own float32 sum: exact, 1e-4 slack
    assert r.images.min() >= 0 and r.images.max() <= 255
    # stopped at the first win: one step fewer and the target did not win yet
    for t in (0, 3):
        short = A.adversarial_noise(model, seven, torch.tensor([t]), steps=int(r.steps[t]) - 1)
        assert not short.reached[0] and short.steps[0] == r.steps[t] - 1


def test_adversarial_noise_respects_the_linf_bound_and_reports_misses(mnist, shipped):
    seven = _seven(mnist)
    r = A.adversarial_noise(shipped["baseline"], seven, steps=100, linf=64.0)
    assert np.abs(r.noise).max() <= 64.0 + 1e-4 and r.reached.sum() >= 5  # clamp(x + n) − x rounds by ≤ 1.5e-5 at ≤ 255
    tiny = A.adversarial_noise(shipped["baseline"], seven, steps=5, linf=2.0)
    missed = ~tiny.reached
    assert missed.sum() == 9 and (tiny.steps[missed] == 5).all()


def test_noise_step_size_is_one_over_the_gradient_std():
    d = torch.randn(3, 1, 28, 28) * torch.tensor([1.0, 1e-3, 50.0])[:, None, None, None]
    alpha = A.noise_step_size(d)
    torch.testing.assert_close(alpha, 1 / (d.flatten(1).std(1) + 1e-8))  # the same formula and kernels: default
    # std / (std + 1e-8) is 1 − 1e-5 for the 1e-3 row, plus float32 rounding of a 784-value std (~1e-6)
    assert torch.allclose((alpha[:, None] * d.flatten(1)).std(1), torch.ones(3), atol=1e-4)


def test_transfer_matrix_equals_a_naive_loop(mnist, shipped):
    model = shipped["batchnorm"]
    idx = A.one_per_class(mnist.test_images, mnist.test_labels)
    assert mnist.test_labels[idx].tolist() == list(range(10)) and idx[7] == 0
    avoiding = A.one_per_class(mnist.test_images, mnist.test_labels, _seven(mnist))  # the attacked 7 is left out
    assert avoiding[7] != 0 and avoiding[:7] == idx[:7]
    examples = mnist.test_images[idx].float()
    noises = torch.from_numpy(A.adversarial_noise(model, _seven(mnist), steps=100).noise)
    got = A.transfer_matrix(model, examples, noises)
    for i in range(10):
        for j in range(10):
            x = (examples[j] + noises[i]).clamp(0, 255)[None, None] / 255
            assert got[i, j] == model(x).argmax().item()


def test_transfer_summary_counts_only_real_transfers():
    pred = np.tile(np.arange(10), (10, 1))  # every example kept its class …
    pred[3, 5] = 3  # … except example 5 under the noise for 3
    steps = np.full(10, 4)
    steps[7] = 0  # the original's own class: zero noise
    assert A.transfer_summary(pred, list(range(10)), steps) == {"cells": 81, "won": 1, "kept": 80}


@pytest.mark.parametrize("name", MODELS)
def test_class_models_raise_the_class_score(shipped, name):
    # 300 steps: at 200 the baseline's 6 is a near tie (46% vs 44% for a 5 in the channels_last layout, whose
    # max-pool breaks the zero image's ties differently); from 300 on every class wins clearly in both layouts.
    r = A.class_models(shipped[name], steps=300, step_size=1000.0, lam=1e-6)
    assert (r.costs[-1] > r.costs[0] + 1).all() and (np.diff(r.costs, axis=0) > -1e-3).mean() > 0.95
    assert r.predicted.tolist() == list(range(10))
    heavy = A.class_models(shipped[name], steps=200, step_size=1000.0, lam=1e-4)  # a strong ‖I‖² keeps it dark
    assert (heavy.images ** 2).sum() < 0.01 * (r.images ** 2).sum()


@pytest.mark.parametrize("layer, size", [("conv1", 3), ("conv2", 8)])
def test_unit_models_change_only_the_units_receptive_field(shipped, layer, size):
    r = A.unit_models(shipped["baseline"], layer, list(range(8)), steps=100, step_size=1e4)
    assert (r.costs[-1] >= r.costs[0]).all() and (r.costs[-1] > r.costs[0] + 0.5).sum() >= 6
    rows, cols = np.nonzero(r.images.max(0))
    field = A.receptive_field(layer)
    assert set(rows) == set(cols) == set(range(field.start, field.stop)) and len(set(rows)) == size


def test_unit_models_of_fc1_and_bad_units(shipped):
    r = A.unit_models(shipped["batchnorm"], "fc1", [0, 499], steps=50, step_size=1e4)
    assert (r.costs[-1] > r.costs[0]).all()
    with pytest.raises(ValueError, match="conv1 has units 0…31"):
        A.unit_models(shipped["batchnorm"], "conv1", [32])


def test_images_outside_the_pixel_range_are_shown_clipped_not_black():
    from cnn_core.attack_plots import images_figure

    img = np.full((1, 28, 28), 895.0)  # unclamped ascent leaves the 0–255 range
    img[0, 0, 0] = -459.0
    z = np.asarray(images_figure(img, ["x"]).data[0].z)
    assert z[1, 1].tolist() == [255, 255, 255] and z[0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("step, beta, diverges", [(1000.0, 1e-2, False), (78_400.0, 1e-2, False),
                                                  (80_000.0, 1e-2, True), (1e6, 1.0, True)])
def test_the_prior_diverges_exactly_when_its_own_ascent_overshoots(step, beta, diverges):
    assert A.prior_diverges(step, beta) is diverges
    # The prior alone, C = −β·MSE(x, target), by plain gradient ascent: the distance to the target shrinks or grows.
    target = torch.zeros(1, 28, 28)
    x = torch.full((1, 28, 28), 10.0, requires_grad=True)
    distances = []
    for _ in range(5):
        cost = -beta * A.mse(x, target).sum()
        (grad,) = torch.autograd.grad(cost, x)
        x = (x + step * grad).detach().requires_grad_(True)
        distances.append(float((x.detach() - target).abs().max()))
    assert (distances[-1] > distances[0]) is diverges


def test_progress_shows_the_ascent_as_it_goes_and_can_stop_it(shipped):
    """The page draws the images every 20 steps: each partial is exactly the ascent stopped there."""
    model, seen = shipped["baseline"], []
    full = A.fooling_images(model, steps=50, progress=lambda k, x, c: seen.append((k, x, c)))
    assert [k for k, _, _ in seen] == [20, 40]
    for k, images, costs in seen:
        short = A.fooling_images(model, steps=k)
        assert np.array_equal(images, short.images) and np.array_equal(costs, full.costs[:k])  # same kernels, same order

    class Moved(Exception):
        pass

    def stop(k, x, c):
        raise Moved

    with pytest.raises(Moved):
        A.fooling_images(model, steps=50, progress=stop)


def test_the_prior_divergence_threshold_is_step_times_beta_above_784():
    """The warning's threshold is step·β·2/784 > 2, i.e. step·β > 784 (784 pixels), not 785."""
    assert A.prior_diverges(78_450.0, 1e-2) is True  # step·β = 784.5
    assert A.prior_diverges(78_350.0, 1e-2) is False  # step·β = 783.5


def test_transfer_summary_counts_noise_found_in_a_single_step():
    """A target reached after one step (steps = 1) has real noise: its row counts; only steps = 0 rows are left out."""
    pred = np.tile(np.arange(10), (10, 1))
    pred[2, 4] = 2
    steps = np.ones(10, dtype=int)
    steps[7] = 0
    assert A.transfer_summary(pred, list(range(10)), steps) == {"cells": 81, "won": 1, "kept": 80}


# What the mutation run (README, "Mutation testing") showed no test noticing: the settings each entry point passes on
# and the numbers the page prints.

def test_every_ascent_passes_on_its_start_sign_and_clamp(mnist, shipped):
    model, seven = shipped["baseline"], _seven(mnist)
    wide = dict(std=200.0, clamp=False, steps=0)  # noise this wide leaves 0–255 unless clamped
    raw = A.noise_image(10, std=200.0, clamp=False)[:, 0].numpy()
    assert raw.min() < 0 and raw.max() > 255
    # steps=0: the start images themselves, the same generator and clamp, no arithmetic: exact
    assert np.array_equal(A.fooling_images(model, **wide).images, raw)
    assert np.array_equal(A.targeted_images(model, seven[None], beta=1e-3, **wide).images, raw)
    clamped = A.targeted_images(model, seven[None], beta=1e-3, std=200.0, steps=0).images
    assert np.array_equal(clamped, raw.clip(0, 255)) and np.array_equal(A.fooling_images(model, std=200.0, steps=0).images, clamped)
    start = A.targeted_images(model, seven[None], beta=1e-3, steps=0, start="image").images
    assert np.array_equal(start, seven.expand(10, 28, 28).numpy())
    # sign of gradient: every pixel the gradient reaches moves by exactly the step, in grey levels
    runs = {"fooling": A.fooling_images(model, steps=1, step_size=3.0, sign=True, clamp=False),
            "targeted": A.targeted_images(model, seven[None], beta=1e-3, steps=1, step_size=3.0, sign=True, clamp=False),
            "class": A.class_models(model, steps=1, step_size=3.0, sign=True, clamp=False),
            "unit": A.unit_models(model, "conv2", [0, 1], steps=1, step_size=3.0, sign=True, clamp=False)}
    noise = A.noise_image(10, clamp=False)[:, 0].numpy()  # clamp=False starts from the unclamped noise too
    starts = {"fooling": noise, "targeted": noise, "class": np.zeros((10, 28, 28)), "unit": np.zeros((2, 28, 28))}
    for name, r in runs.items():
        moved = np.abs(r.images - starts[name])
        assert set(np.unique(moved[moved > 0]).round(4)) == {3.0}, name  # x ± 3 rounds by ≤ 1.5e-5 below 512
    # clamp: a huge step leaves 0–255 unless clamped
    for clamp in (True, False):
        r = A.targeted_images(model, seven[None], beta=1e-3, steps=2, step_size=1e6, clamp=clamp)
        c = A.class_models(model, steps=2, step_size=1e6, clamp=clamp)
        u = A.unit_models(model, "conv1", [0, 1], steps=2, step_size=1e7, clamp=clamp)
        for images in (r.images, c.images, u.images):
            assert images.shape[1:] == (28, 28) and bool(images.min() >= 0 and images.max() <= 255) is clamp
    # progress: the page draws every ascent as it forms, 20 steps at a time
    runs = {"targeted": lambda p: A.targeted_images(model, seven[None], beta=1e-3, steps=30, progress=p),
            "class": lambda p: A.class_models(model, steps=30, progress=p),
            "unit": lambda p: A.unit_models(model, "fc1", [0], steps=30, progress=p)}
    for name, run in runs.items():
        seen = []
        run(lambda k, x, c, seen=seen: seen.append(k))
        assert seen == [20], name


def test_noise_is_one_seeded_gaussian_image_repeated():
    """Every target starts from the same image, 128 + 40·N(0, 1) from torch's generator seeded with the page's seed."""
    g = torch.Generator().manual_seed(5)
    want = (128 + 40 * torch.randn(1, 1, 28, 28, generator=g)).clamp(0, 255)
    assert torch.equal(A.noise_image(3, seed=5), want.expand(3, 1, 28, 28))


def test_mse_is_per_image():
    x, y = torch.zeros(2, 28, 28), torch.zeros(2, 28, 28)
    x[0, :14] = 2.0  # half the pixels off by 2: mean square 2
    assert A.mse(x, y).tolist() == [2.0, 0.0]  # integers summed in float32, 1568 / 784: exact


def test_a_unit_model_ascends_its_activation_minus_the_norm_penalty(shipped):
    model, lam, units = shipped["batchnorm"], 1e-4, [3, 4]
    r = A.unit_models(model, "conv2", units, steps=30, step_size=1e4, lam=lam)
    x = torch.from_numpy(r.images)[:, None]
    with torch.no_grad():
        final = A.unit_activation(model, x, "conv2", torch.tensor(units)) - lam * (x ** 2).flatten(1).sum(1)
    np.testing.assert_allclose(r.costs[-1], final.numpy(), rtol=1e-5)  # the same formula on the same batch: rtol is slack
    assert (r.images ** 2).sum() < (A.unit_models(model, "conv2", units, steps=30, step_size=1e4, lam=0.0).images ** 2).sum()


def test_a_units_receptive_field_is_a_square_of_whole_rows():
    """The page crops r.images[:, field, field] and prints its size (stop − start); 28 reads "the whole image"."""
    sizes = {}
    for layer in A.UNIT_LAYERS:
        f = A.receptive_field(layer)
        assert isinstance(f.start, int) and isinstance(f.stop, int) and f.step is None
        sizes[layer] = (f.start, f.stop)
    assert sizes == {"conv1": (13, 16), "conv2": (11, 19), "fc1": (0, 28)}


def test_an_unknown_layer_is_named_in_the_message(shipped):
    with pytest.raises(ValueError, match="conv3 is not one of conv1, conv2, fc1"):
        A.unit_models(shipped["baseline"], "conv3", [0])


def test_adversarial_noise_with_a_fixed_step_takes_exactly_that_step(mnist, shipped):
    model, seven, alpha = shipped["batchnorm"], _seven(mnist), 0.5
    targets = torch.tensor([1, 7, 8])  # 7 already wins: no step for it
    r = A.adversarial_noise(model, seven, targets, steps=1, alpha=alpha, clamp=False)
    noise = torch.zeros(3, 1, 28, 28, requires_grad=True)
    logits = A.scores(model, seven.expand(3, 1, 28, 28) + noise)
    (d,) = torch.autograd.grad(A.fooling_cost(logits, targets).sum(), noise)
    want = alpha * d[:, 0] * torch.tensor([1.0, 0.0, 1.0])[:, None, None]
    # the same forward and backward on the same batch of 3, same kernels: equal but for α·d's rounding; rtol is slack
    np.testing.assert_allclose(r.noise, want.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(r.costs[0], A.fooling_cost(logits, targets).detach().numpy(), rtol=1e-6)
    assert r.costs.shape == (2, 3)
    assert r.steps.tolist() == [1, 0, 1] and r.steps.dtype.kind == "i"  # the page titles read "1 step", not "1.0"


def test_an_attack_reports_its_own_wall_time_in_milliseconds(monkeypatch, mnist, shipped):
    ticks = iter([10.0, 10.25])
    monkeypatch.setattr(A.time, "perf_counter", lambda: next(ticks))
    # 1000 · (10.25 − 10.0) and 1000 · (3.5 − 3.0) are exact in binary
    assert A.adversarial_noise(shipped["baseline"], _seven(mnist), steps=1).milliseconds == 250.0
    ticks = iter([3.0, 3.5])
    assert A.fooling_images(shipped["baseline"], steps=1).milliseconds == 500.0


def test_the_transfer_matrix_clamps_at_zero_not_above():
    """A model that answers 1 when every pixel is above zero and 0 otherwise: a digit minus noise clamps to 0."""
    class AllPositive(torch.nn.Module):
        def forward(self, x):
            out = torch.zeros(len(x), 10)
            out[:, 1] = (x.flatten(1).min(1).values > 0).float()
            return out

    examples = torch.full((2, 28, 28), 100.0)
    noises = torch.stack([torch.zeros(28, 28), torch.full((28, 28), -300.0)])
    assert A.transfer_matrix(AllPositive(), examples, noises).tolist() == [[1, 1], [0, 0]]


def test_a_negative_step_count_or_size_is_refused_and_zero_or_small_steps_are_not(shipped):
    model, x0 = shipped["baseline"], A.noise_image(1)
    cost = lambda x: A.fooling_cost(A.scores(model, x), torch.tensor([3]))  # noqa: E731
    for steps, size in ((-1, 1.0), (0, -1.0)):
        with pytest.raises(ValueError, match=f"got {steps} and {size}"):
            A.gradient_ascent(model, x0, cost, steps, size)
    assert np.array_equal(A.gradient_ascent(model, x0, cost, 1, 0.0).images, x0[:, 0].numpy())  # x + 0·d is x exactly
    assert not np.array_equal(A.gradient_ascent(model, x0, cost, 1, 0.5).images, x0[:, 0].numpy())
