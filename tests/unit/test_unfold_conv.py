import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnn_core.data import load_mnist, to_float
from cnn_core.unfold_conv import (
    UnfoldConv2d,
    UnfoldConv2dFunction,
    digit_at,
    im2col_demo,
    size_steps,
    sliding_window,
    unfold_conv2d,
)

pytestmark = pytest.mark.numeric  # compares floats from torch kernels: `make test` reruns it on the float32 AVX2 path

# kernel × stride × padding, each with one of the channel counts, batch sizes and bias on/off, on odd 7×6 inputs.
GRID = [
    (k, s, p, cin, batch, bias)
    for i, (k, s, p) in enumerate(itertools.product((1, 3, 5), (1, 2), (0, 1, 2)))
    for cin, batch, bias in [((1, 3, 32)[i % 3], 1 + i % 2, i % 4 < 2)]
]


def test_the_grid_covers_every_kernel_stride_padding_and_channel_count():
    assert len(GRID) == 18
    assert {g[3] for g in GRID} == {1, 3, 32} and {g[4] for g in GRID} == {1, 2} and {g[5] for g in GRID} == {True, False}


@pytest.mark.parametrize("k, s, p, cin, batch, bias", GRID, ids=lambda v: str(v))
def test_gradcheck_float64(k, s, p, cin, batch, bias):
    g = torch.Generator().manual_seed(k * 100 + s * 10 + p)
    x = torch.randn(batch, cin, 7, 6, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, cin, k, k, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=g, requires_grad=True) if bias else None
    # 32 input channels: ~6k inputs, so the random-projection check (fast_mode) keeps the test to seconds.
    # float64 finite differences against the analytic gradient: gradcheck's own default tolerances.
    assert torch.autograd.gradcheck(lambda x, w, b: UnfoldConv2dFunction.apply(x, w, b, s, p), (x, w, b),
                                    fast_mode=cin == 32)


CASES = [  # (in, out, kernel, stride, padding, H, W, batch): the assignment's two layers and odd ones
    (1, 32, 3, 1, 1, 28, 28, 4), (32, 32, 3, 1, 1, 14, 14, 4), (3, 5, 5, 2, 2, 11, 9, 1), (3, 8, 1, 2, 0, 7, 7, 2),
    (32, 6, 3, 2, 0, 10, 13, 3),
]


def largest_error(mine: torch.Tensor, ref: torch.Tensor) -> float:
    """max |mine − ref| relative to the largest |ref|: dW and db sum N·L float32 products (up to 3,136 here, entries
    up to ~100), so both implementations round differently at ~1e-7 of that scale, not at 1e-5 absolute."""
    return float((mine - ref).detach().abs().max() / ref.detach().abs().max())


@pytest.mark.parametrize("cin, cout, k, s, p, h, w, n", CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_output_and_gradients_equal_nn_conv2d_in_float32(cin, cout, k, s, p, h, w, n, bias):
    torch.manual_seed(0)
    ref = nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias)
    mine = UnfoldConv2d(cin, cout, k, stride=s, padding=p, bias=bias)
    mine.load_state_dict(ref.state_dict())
    x = torch.rand(n, cin, h, w)
    x_ref, x_mine = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y_mine = ref(x_ref), mine(x_mine)
    assert y_mine.shape == y_ref.shape == (n, cout, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
    assert largest_error(y_mine, y_ref) < 1e-5
    dy = torch.randn_like(y_ref)
    y_ref.backward(dy)
    y_mine.backward(dy)
    assert largest_error(x_mine.grad, x_ref.grad) < 1e-5
    assert largest_error(mine.weight.grad, ref.weight.grad) < 1e-5
    if bias:
        assert largest_error(mine.bias.grad, ref.bias.grad) < 1e-5


def test_the_module_has_nn_conv2d_parameters_and_state_dicts_load_both_ways():
    ref, mine = nn.Conv2d(32, 16, 5, 2, 2), UnfoldConv2d(32, 16, 5, 2, 2)
    assert [(n, p.shape) for n, p in mine.named_parameters()] == [(n, p.shape) for n, p in ref.named_parameters()]
    assert [n for n, _ in UnfoldConv2d(1, 4, 3, bias=False).named_parameters()] == ["weight"]
    mine.load_state_dict(ref.state_dict())
    assert torch.equal(mine.weight, ref.weight) and torch.equal(mine.bias, ref.bias)  # loaded copies: exact
    ref.load_state_dict(UnfoldConv2d(32, 16, 5, 2, 2).state_dict())


def test_no_input_gradient_is_computed_when_the_input_needs_none():
    conv = UnfoldConv2d(1, 2, 3, padding=1)
    x = torch.rand(1, 1, 5, 5)  # like conv1's input: a leaf without requires_grad
    conv(x).sum().backward()
    assert x.grad is None and conv.weight.grad.shape == (2, 1, 3, 3)
    assert torch.equal(conv.bias.grad, torch.full((2,), 25.0))  # db = Σ dY = 25 positions × 1; a sum of ones: exact


@pytest.mark.parametrize("kwargs", [dict(kernel_size=(3, 5)), dict(kernel_size=3, stride=(1, 2)),
                                    dict(kernel_size=3, padding="same"), dict(kernel_size=3, dilation=2),
                                    dict(kernel_size=3, padding=1, padding_mode="reflect")])
def test_what_it_does_not_support_is_refused(kwargs):
    with pytest.raises(ValueError, match="UnfoldConv2d supports"):
        UnfoldConv2d(2, 2, **kwargs)


def test_functional_form_refuses_non_square_kernels():
    with pytest.raises(ValueError, match="only square kernels"):
        unfold_conv2d(torch.rand(1, 1, 5, 5), torch.rand(1, 1, 3, 2))


@pytest.fixture(scope="module")
def digit():
    return to_float(load_mnist().test_images[:1])[0, 0]  # 28×28, a 7


@pytest.mark.parametrize("name", ["baseline", "batchnorm"])
def test_im2col_product_equals_the_models_conv1(shipped, digit, name):
    model = shipped[name]
    demo = im2col_demo(model, digit)
    assert demo.patches.shape == (784, 9) and demo.filters.shape == (9, 32) and demo.maps.shape == (32, 28, 28)
    h = (digit - model.mean) / model.std  # the demo's own normalisation: patches, filters and bias are exact copies
    assert torch.equal(demo.patches[0], torch.cat([torch.zeros(4), h[0, 0:2], torch.zeros(1), h[1, 0:2]]))  # padded corner
    assert torch.equal(demo.patches[29], h[0:3, 0:3].flatten())  # output (1, 1): the window at rows 0–2, cols 0–2
    assert torch.equal(demo.filters[:, 5], model.conv1.weight[5, 0].flatten()) and torch.equal(demo.bias, model.conv1.bias)
    expected = F.conv2d(h[None, None], model.conv1.weight, model.conv1.bias, padding=1)[0]
    # the same conv call on the same tensors: exact. The im2col maps sum 9 products and a bias in another order
    # (a matmul): float32 rounding of values up to ~10, ~1e-6; max_difference is the same formula: exact.
    assert torch.equal(demo.reference, expected)  # conv1 before BatchNorm, not the BN output
    assert demo.max_difference == float((demo.maps - expected).abs().max()) < 1e-5
    torch.testing.assert_close(demo.maps, expected, rtol=0, atol=1e-5)
    if name == "batchnorm":
        assert not torch.allclose(model.stages(digit[None, None])["conv1"][0], demo.reference)  # stages' conv1 is after BN


def test_size_steps_follow_the_formula_and_say_when_the_stride_does_not_divide():
    assert size_steps(28, 3, 1, 1, pool=2) == [
        {"name": "conv", "w": 28, "k": 3, "p": 1, "s": 1, "out": 28, "exact": True},
        {"name": "pool", "w": 28, "k": 2, "p": 0, "s": 2, "out": 14, "exact": True},
    ]
    assert size_steps(28, 5, 0, 2) == [{"name": "conv", "w": 28, "k": 5, "p": 0, "s": 2, "out": 12, "exact": False}]
    assert [st["out"] for st in size_steps(7, 3, 0, 2, pool=2)] == [3, 1]  # (7 − 3)/2 + 1 = 3, then (3 − 2)/2 + 1 = 1
    with pytest.raises(ValueError, match="does not fit"):
        size_steps(7, 7, 0, 1, pool=2)  # 1×1 after the conv: no room for a 2×2 pool
    with pytest.raises(ValueError, match="does not fit"):
        size_steps(3, 7, 1, 1)


def test_digit_at_averages_blocks():
    img = torch.arange(784.0).reshape(28, 28)
    assert torch.equal(digit_at(img, 28), img)  # a 1×1 average of each pixel is the pixel
    assert digit_at(img, 14)[0, 0] == (0 + 1 + 28 + 29) / 4 and digit_at(img, 7).shape == (7, 7)  # ÷ 4: exact
    with pytest.raises(ValueError):
        digit_at(img, 10)


def test_sliding_window_positions_and_output():
    img = torch.arange(36.0).reshape(6, 6)
    w = sliding_window(img, 3, 1, 2, position=4)  # out = (6 − 3 + 2)/2 + 1 = 3 → position 4 = row 1, col 1
    assert w.output.shape == (3, 3) and w.cell == (1, 1) and w.top_left == (1, 1)
    # the window sums 9 pixels times float32 1/9 (a matmul), the reference sums and divides by 9: float32 roundings
    # in another order, a few of 6e-8 relative — equal only by luck, so to 1e-6
    assert w.output[1, 1].item() == pytest.approx(img[1:4, 1:4].mean().item(), rel=1e-6)
    first = sliding_window(img, 3, 1, 2, position=0)
    assert first.top_left == (-1, -1)
    assert first.output[0, 0].item() == pytest.approx((img[0:2, 0:2].sum() / 9).item(), rel=1e-6)  # padding counts as 0
    with pytest.raises(ValueError, match=r"position must be in \[0, 8\]"):
        sliding_window(img, 3, 1, 2, position=9)


def test_functional_form_defaults_to_stride_1_padding_0_and_adds_the_bias():
    """``unfold_conv2d(x, w[, b])`` is ``F.conv2d(x, w[, b])``: stride 1 and no padding by default, bias added."""
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.rand(2, 3, 6, 5, generator=g), torch.rand(4, 3, 3, 3, generator=g), torch.rand(4, generator=g)
    plain = unfold_conv2d(x, w)
    assert plain.shape == (2, 4, 4, 3)
    # 27 products of values in [0, 1) summed in another order (a matmul vs the conv kernel): float32 rounding ~1e-6
    torch.testing.assert_close(plain, F.conv2d(x, w), rtol=0, atol=1e-5)
    torch.testing.assert_close(unfold_conv2d(x, w, b), F.conv2d(x, w, b), rtol=0, atol=1e-5)


def test_functional_form_names_the_kernel_size_it_refuses():
    """The refusal names the kernel's height × width, not the channel count too."""
    with pytest.raises(ValueError) as err:
        unfold_conv2d(torch.rand(1, 1, 5, 5), torch.rand(1, 1, 3, 2))
    assert "(3, 2)" in str(err.value) and "(1, 1, 3, 2)" not in str(err.value)


def test_size_steps_at_the_edges_of_fitting():
    """The Convolution page's size formula for a 1×1 kernel, a window that fits only thanks to the padding, one that
    exactly fills the input, and the error text when padding is not enough."""
    assert size_steps(5, 1, 0, 1) == [{"name": "conv", "w": 5, "k": 1, "p": 0, "s": 1, "out": 5, "exact": True}]
    assert size_steps(2, 3, 1, 1) == [{"name": "conv", "w": 2, "k": 3, "p": 1, "s": 1, "out": 2, "exact": True}]
    assert size_steps(7, 7, 0, 1) == [{"name": "conv", "w": 7, "k": 7, "p": 0, "s": 1, "out": 1, "exact": True}]
    with pytest.raises(ValueError) as err:
        size_steps(3, 6, 1, 1)  # 3 + 2·1 = 5 < 6
    assert all(part in str(err.value) for part in ("6×6", "3×3", "padding 1"))


def test_digit_at_says_which_sizes_it_takes():
    """A size other than 28, 14 or 7 is refused with a message naming the allowed sizes and the one given."""
    with pytest.raises(ValueError) as err:
        digit_at(torch.zeros(28, 28), 10)
    assert all(part in str(err.value) for part in ("28, 14 or 7", "10"))
