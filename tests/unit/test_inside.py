import numpy as np
import pytest
import torch

from cnn_core.data import to_float
from cnn_core.inside import (
    ATTRIBUTIONS,
    attribution,
    class_of_interest,
    conv1_feature_maps,
    feature_maps,
    filters_over_time,
    live_conv1,
    occluded_images,
    occlusion,
    occlusion_positions,
    relative_change,
)
from cnn_core.model import MnistCNN
from cnn_core.plots import tile

pytestmark = pytest.mark.numeric  # compares floats from torch kernels: `make test` reruns it on the float32 AVX2 path


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model, before):
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_positions_are_top_left_corners():
    assert occlusion_positions(28, 6, 2).tolist() == list(range(0, 23, 2))
    assert occlusion_positions(28, 16, 4).tolist() == [0, 4, 8, 12]
    with pytest.raises(ValueError, match="patch must be in"):
        occlusion_positions(28, 0, 1)


@pytest.mark.parametrize("patch, stride, fill", [(3, 2, 0.5), (1, 4, 0.0), (16, 3, "mean")])
def test_occluded_images_equal_a_naive_copy_and_paste(mnist, patch, stride, fill):
    img = to_float(mnist.test_images[:1])[0]
    got = occluded_images(img, patch, stride, fill)
    value = img.mean() if fill == "mean" else fill
    expected = []
    for r in range(0, 28 - patch + 1, stride):
        for c in range(0, 28 - patch + 1, stride):
            x = img.clone()
            x[0, r : r + patch, c : c + patch] = value
            expected.append(x)
    assert torch.equal(got, torch.stack(expected))  # pasting copies values (the same img.mean()): exact


@pytest.mark.parametrize("name", ["baseline", "batchnorm"])
def test_batched_occlusion_equals_a_naive_per_position_loop(mnist, shipped, name):
    model = shipped[name]
    before = _state(model)
    x, targets = to_float(mnist.test_images[:3]), mnist.test_labels[:3]
    o = occlusion(model, x, targets, patch=5, stride=3, fill=0.5, chunk=7)  # chunks cut across images
    rows = list(range(0, 24, 3))
    assert o.prob.shape == o.pred.shape == (3, len(rows), len(rows)) and o.forwards == 3 * 64 + 3
    with torch.no_grad():
        for n in range(3):
            for i, r in enumerate(rows):
                for j, c in enumerate(rows):
                    occluded = x[n : n + 1].clone()
                    occluded[0, 0, r : r + 5, c : c + 5] = 0.5
                    p = model(occluded).softmax(1)[0]
                    # One forward of a single image vs batches: same numbers up to float32 summation order.
                    assert abs(o.prob[n, i, j].item() - p[targets[n]].item()) < 1e-6
                    assert o.pred[n, i, j].item() == p.argmax().item()
    assert _unchanged(model, before)


def test_black_patches_on_background_change_nothing_and_on_the_digit_hurt(mnist, shipped):
    x, y = to_float(mnist.test_images[:10]), mnist.test_labels[:10]
    o = occlusion(shipped["baseline"], x, y, patch=10, stride=2, fill=0.0)
    untouched = 0
    for n in range(10):
        for i, r in enumerate(o.rows.tolist()):
            for j, c in enumerate(o.cols.tolist()):
                if x[n, 0, r : r + 10, c : c + 10].max() == 0:  # only background under the patch: same image
                    # the same image in another batch (10 vs all positions): float32 sums in another order
                    assert abs(o.prob[n, i, j] - o.base_prob[n]) < 1e-5
                    untouched += 1
    assert untouched > 50
    assert o.prob.amin(dim=(1, 2)).mean() < 0.5  # somewhere on the digit the evidence is gone


@pytest.mark.parametrize("name", ["baseline", "batchnorm"])
def test_attributions_run_on_both_models_and_leave_weights_alone(mnist, shipped, name):
    model = shipped[name]
    before = _state(model)
    x, y = to_float(mnist.test_images[:4]), mnist.test_labels[:4]
    maps = {m: attribution(model, x, y, m) for m in ATTRIBUTIONS}
    for m, a in maps.items():
        assert a.shape == (4, 28, 28) and torch.isfinite(a).all() and a.abs().sum() > 0, m
    assert (maps["Saliency"] >= 0).all() and (maps["Grad-CAM (conv2)"] >= 0).all()
    ink = x[:, 0] > 0.5
    assert maps["Saliency"][ink].mean() > maps["Saliency"][~ink].mean()  # the strokes matter more than the background
    assert _unchanged(model, before) and not model.training
    assert all(p.grad is None for p in model.parameters())


def test_feature_map_shapes_and_relu(mnist, shipped):
    x = to_float(mnist.test_images[:2])
    m = shipped["batchnorm"]
    assert feature_maps(m, x, "conv1", "pre-ReLU").shape == (2, 32, 28, 28)
    assert feature_maps(m, x, "conv2", "post-pool").shape == (2, 32, 7, 7)
    pre, post = feature_maps(m, x, "conv2", "pre-ReLU"), feature_maps(m, x, "conv2", "post-ReLU")
    assert pre.min() < 0 and torch.equal(post, pre.clamp(min=0))  # same forward, same kernels; ReLU is exact


def test_tile_places_maps_row_major_with_gaps():
    maps = np.arange(3 * 2 * 2, dtype=float).reshape(3, 2, 2)
    t = tile(maps, cols=2)
    assert t.shape == (5, 5) and np.isnan(t[2]).all() and np.isnan(t[:, 2]).all()
    assert (t[:2, 3:] == maps[1]).all() and (t[3:, :2] == maps[2]).all() and np.isnan(t[3:, 3:]).all()  # copies: exact


def test_the_class_of_interest_is_the_true_the_predicted_or_a_fixed_class(shipped, mnist, weights_kept):
    model = shipped["baseline"]
    x = to_float(mnist.test_images[:4])
    predicted = model(x).argmax(1)
    labels = (7, None, 3, 0)  # the second one is "drawn": no true class
    assert class_of_interest(model, x, labels, "true class").tolist() == [7, int(predicted[1]), 3, 0]
    assert torch.equal(class_of_interest(model, x, labels, "predicted class"), predicted)
    assert class_of_interest(model, x, labels, "class 4").tolist() == [4, 4, 4, 4]
    with pytest.raises(ValueError, match="interest must be one of true class, predicted class, class 0"):
        class_of_interest(model, x, labels, "the best class")


def test_conv1_maps_from_copied_weights_equal_the_models_own(mnist, shipped, weights_kept):
    model = shipped["baseline"]
    x = to_float(mnist.test_images[:3])
    maps = conv1_feature_maps(model.conv1.weight, model.conv1.bias, x)
    own = feature_maps(model, x, "conv1", "post-ReLU")  # channels_last (for_inference): the same up to rounding
    assert maps.shape == (3, 32, 28, 28) and torch.allclose(maps, own, atol=1e-5)


def test_live_conv1_reads_a_runs_latest_copy_and_leaves_the_run_alone(mnist, tiny_run):
    before = _state(tiny_run.model)
    snap = tiny_run.snapshot()
    x = to_float(mnist.test_images[:1])
    view = live_conv1(snap, x)
    latest = snap["latest_conv1"]
    model = MnistCNN(False)  # a model holding the copy: its conv1 → ReLU is what the view must show
    with torch.no_grad():
        model.conv1.weight.copy_(latest["weight"])
        model.conv1.bias.copy_(latest["bias"])
    # kernels and zmax are copies and maxima (no arithmetic); the maps are the same normalisation and conv1 on the
    # same (standard) layout, same kernels: all exact
    assert view["step"] == 16 and np.array_equal(view["kernels"], latest["weight"][:, 0].numpy())
    assert np.array_equal(view["maps"], feature_maps(model, x, "conv1", "post-ReLU")[0].numpy())
    weights = [p["conv1.weight"] for p in snap["filters"]["snapshots"].values()] + [latest["weight"]]
    assert view["zmax"] == max(float(w.abs().max()) for w in weights)
    assert _unchanged(tiny_run.model, before)
    assert live_conv1({**snap, "latest_conv1": None}, x) is None  # before the first recorded step


def test_filters_over_time_share_one_scale_and_changes_are_relative_to_step_0():
    w0 = torch.ones(32, 1, 3, 3)
    snapshots = {0: {"conv1.weight": w0, "conv2.weight": torch.zeros(32, 32, 3, 3)},
                 5: {"conv1.weight": -3 * w0, "conv2.weight": torch.full((32, 32, 3, 3), 0.5)}}
    frames, zmax = filters_over_time(snapshots, "conv1.weight")  # small integers and halves in float32: exact below
    assert list(frames) == [0, 5] and frames[5].shape == (32, 3, 3) and zmax == 3.0 and frames[5][0, 0, 0] == -3
    frames2, zmax2 = filters_over_time(snapshots, "conv2.weight")
    assert frames2[0].shape == (32, 32, 3, 3) and zmax2 == 0.5
    change, zmax3 = filters_over_time(snapshots, "conv1.weight", since_start=True)
    assert zmax3 == 4.0 and np.all(change[5] == -4) and np.all(change[0] == 0)  # W_5 − W_0 = −3 − 1
    # two float32 norms of 288 equal values (sums of squares, square roots): a few roundings, default approx
    assert relative_change(snapshots, 5, "conv1.weight") == pytest.approx(4.0)  # ‖−3 − 1‖ / ‖1‖
    assert relative_change(snapshots, 0, "conv1.weight") == 0.0  # W₀ − W₀ is exactly 0


def test_a_patch_as_large_as_the_image_or_a_stride_of_one_is_allowed():
    assert occlusion_positions(28, 28, 1).tolist() == [0]
    assert occlusion_positions(5, 3, 1).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="patch=29"):
        occlusion_positions(28, 29, 1)


def test_occlusion_reports_its_positions_defaults_and_wall_time(monkeypatch, mnist, shipped):
    """The page labels the heat map's axes with rows/cols and prints the milliseconds."""
    from cnn_core import inside

    ticks = iter([4.0, 4.125])
    monkeypatch.setattr(inside.time, "perf_counter", lambda: next(ticks))
    x, y = to_float(mnist.test_images[:2]), mnist.test_labels[:2]
    o = occlusion(shipped["baseline"], x, y, patch=20, stride=4)
    assert o.rows.tolist() == o.cols.tolist() == [0, 4, 8] and o.milliseconds == 125.0  # 1000 · 0.125: exact in binary


def test_each_attribution_is_its_formula(mnist, shipped):
    """Saliency |∂logit_t/∂x| by autograd; Integrated Gradients from black in 32 steps; Grad-CAM on conv2 upsampled
    bilinearly (not nearest: the page's maps would turn blocky)."""
    import torch.nn.functional as F
    from captum.attr import IntegratedGradients, LayerGradCam

    model = shipped["baseline"]
    x, y = to_float(mnist.test_images[:2]), mnist.test_labels[:2]
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xg).gather(1, y[:, None]).sum(), xg)
    # the same model, batch and captum calls as attribution's: same kernels, same order (default tolerances)
    assert torch.allclose(attribution(model, x, y, "Saliency"), grad.abs()[:, 0])
    ig = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=y.tolist(), n_steps=32)
    assert torch.allclose(attribution(model, x, y, "Integrated Gradients"), ig[:, 0])
    cam = LayerGradCam(model, model.conv2).attribute(x, target=y.tolist(), relu_attributions=True)
    want = F.interpolate(cam, (28, 28), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(attribution(model, x, y, "Grad-CAM (conv2)"), want.detach(), atol=1e-6)  # same kernels; slack
    with pytest.raises(ValueError, match="method.*'LRP'"):
        attribution(model, x, y, "LRP")
