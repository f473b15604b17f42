"""Convolution by hand: im2col (``unfold``) and a matrix product, with its own backward pass.

For an input X (N×C×H×W), weights W (O×C×K×K), bias b (O), stride S and zero padding P:

    unfold(X)  N × (C·K·K) × L      one column per window position, L = H_out·W_out,
                                    H_out = (H + 2P − K) / S + 1 (rounded down)
    forward    Y  = W·unfold(X) + b                    (W flattened to O × C·K·K; Y reshaped to N×O×H_out×W_out)
    backward   dW = Σ_batch dY·unfold(X)ᵀ              (O × C·K·K, reshaped to O×C×K×K)
               dX = fold(Wᵀ·dY)                        (fold adds every column back onto the pixels it came from)
               db = Σ_{batch, positions} dY

Only ``torch.nn.functional.unfold``/``fold`` and matrix products are used: no conv2d, no conv_transpose.
Square kernels with the same stride and padding in both directions are enough here (dilation 1, groups 1,
zero padding); anything else is a ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


class UnfoldConv2dFunction(torch.autograd.Function):
    """Y = W·unfold(X) + b with the explicit backward of the module docstring.

    The unfolded input is saved for the backward (it is dW's right-hand factor), so this costs K²× the input's
    memory between forward and backward where the built-in convolution keeps the input itself.
    Layouts were chosen by measurement (``python -m cnn_core.bench --conv``): one batched ``baddbmm`` that adds the
    bias in the same kernel (no Python loop over batch, channels or bias), and dW as a batched product summed over
    the batch.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride: int, padding: int):
        n, _, h, w = x.shape
        o, _, k, _ = weight.shape
        cols = F.unfold(x, k, padding=padding, stride=stride)  # N × C·K·K × L
        w2 = weight.reshape(o, -1).expand(n, -1, -1)  # a view: the same O × C·K·K matrix for every image
        y = torch.bmm(w2, cols) if bias is None else torch.baddbmm(bias.view(1, o, 1), w2, cols)
        ctx.save_for_backward(cols, weight)
        ctx.geometry = (h, w, k, stride, padding, bias is not None)
        h_out, w_out = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
        return y.view(n, o, h_out, w_out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        cols, weight = ctx.saved_tensors
        h, w, k, stride, padding, has_bias = ctx.geometry
        n, o = grad_y.shape[:2]
        # Under bf16 autocast grad_y (and the patches of a bf16 input) are bfloat16 while the weights are float32:
        # the backward computes in the weights' dtype; each gradient has the dtype of what it is the gradient of.
        dy = grad_y.reshape(n, o, -1).to(weight.dtype)  # N × O × L
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = F.fold(weight.reshape(o, -1).t() @ dy, (h, w), k, padding=padding, stride=stride).to(cols.dtype)
        if ctx.needs_input_grad[1]:
            dw = torch.bmm(dy, cols.to(weight.dtype).transpose(1, 2)).sum(0).view_as(weight)
        if has_bias and ctx.needs_input_grad[2]:
            db = dy.sum((0, 2))
        return dx, dw, db, None, None


def unfold_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1,
                  padding: int = 0) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding)`` computed as W·unfold(X) + b (square kernels, int stride/padding)."""
    if weight.shape[-1] != weight.shape[-2]:
        raise ValueError(f"only square kernels are supported, got {tuple(weight.shape[-2:])}")
    return UnfoldConv2dFunction.apply(x, weight, bias, int(stride), int(padding))


class UnfoldConv2d(nn.Conv2d):
    """A drop-in ``nn.Conv2d`` (same constructor, same ``weight``/``bias`` parameters and initialisation, so a
    state_dict loads into either) whose forward and backward are ``UnfoldConv2dFunction``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        square = len(set(self.kernel_size)) == 1 and len(set(self.stride)) == 1 and not isinstance(self.padding, str)
        if not (square and len(set(self.padding)) == 1 and self.dilation == (1, 1) and self.groups == 1
                and self.padding_mode == "zeros"):
            raise ValueError("UnfoldConv2d supports square kernels with equal stride and padding in both directions, "
                             "dilation 1, groups 1 and zero padding only")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return UnfoldConv2dFunction.apply(x, self.weight, self.bias, self.stride[0], self.padding[0])


@dataclass
class Im2col:
    """conv1 of a model on one digit, as a matrix product (``im2col_demo``)."""

    patches: torch.Tensor  # 784 × 9: row = output pixel (row-major), its 3×3 window of the normalized input
    filters: torch.Tensor  # 9 × 32: column = one conv1 filter, flattened row-major
    bias: torch.Tensor  # 32
    maps: torch.Tensor  # 32 × 28 × 28: (patches · filters + bias), each column reshaped to a 28×28 map
    reference: torch.Tensor  # 32 × 28 × 28: the model's own conv1 (before BatchNorm and ReLU)
    max_difference: float  # max |maps − reference|


def im2col_demo(model: nn.Module, image: torch.Tensor) -> Im2col:
    """conv1 of ``model`` on one 28×28 (or 1×28×28) pixel-space image computed as patches · filters + bias,
    beside the model's own conv1 output. Patches are of the normalized input, which is what conv1 sees."""
    conv = model.conv1
    with torch.inference_mode():
        x = image.reshape(1, 1, *image.shape[-2:]).to(conv.weight.dtype)
        h = (x - model.mean) / model.std
        k, p, s = conv.kernel_size[0], conv.padding[0], conv.stride[0]
        patches = F.unfold(h, k, padding=p, stride=s)[0].t()  # L × K²
        filters = conv.weight.reshape(conv.out_channels, -1).t()  # K² × O
        bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
        h_out = (h.shape[-2] + 2 * p - k) // s + 1
        w_out = (h.shape[-1] + 2 * p - k) // s + 1
        maps = (patches @ filters + bias).t().reshape(-1, h_out, w_out)
        reference = conv(h)[0]
    return Im2col(patches, filters, bias, maps, reference, float((maps - reference).abs().max()))


# ----- the Convolution page's arithmetic ------------------------------------------------------------------------
def size_steps(w: int, k: int, p: int, s: int, pool: int = 0) -> list[dict]:
    """Output size of a convolution (K, P, S) on a W×W input, then of a pool×pool/stride-pool max-pooling when
    ``pool`` > 0. One dict per step: w, k, p, s, out = ⌊(W − K + 2P) / S⌋ + 1 and ``exact`` (S divides
    W − K + 2P, so the last window ends on the last pixel; otherwise the last rows/columns are never covered).
    ValueError when the window does not fit."""
    steps = []
    for name, kk, pp, ss in [("conv", k, p, s)] + ([("pool", pool, 0, pool)] if pool else []):
        if not (kk >= 1 and pp >= 0 and ss >= 1 and w + 2 * pp >= kk):
            raise ValueError(f"a {kk}×{kk} {name} window does not fit in {w}×{w} with padding {pp}")
        span = w - kk + 2 * pp
        steps.append({"name": name, "w": w, "k": kk, "p": pp, "s": ss, "out": span // ss + 1, "exact": span % ss == 0})
        w = steps[-1]["out"]
    return steps


def digit_at(image: torch.Tensor, size: int) -> torch.Tensor:
    """A 28×28 digit as the network sees its size at each stage: 28, 14 (after pool1) or 7 (after pool2), by
    averaging 1×1, 2×2 or 4×4 blocks."""
    if size not in (28, 14, 7):
        raise ValueError(f"size must be 28, 14 or 7, got {size}")
    return F.avg_pool2d(image.reshape(1, 1, 28, 28), 28 // size)[0, 0]


@dataclass
class Window:
    """One position of a K×K window sliding over an image (``sliding_window``)."""

    cell: tuple[int, int]  # the output (row, col) this position produces
    top_left: tuple[int, int]  # the window's first input (row, col); negative = in the zero padding
    output: torch.Tensor  # H_out×W_out: every window's mean (a K×K averaging filter, zero padding counted)


def sliding_window(image: torch.Tensor, k: int, p: int, s: int, position: int) -> Window:
    """Window number ``position`` (row-major over the output) of a K×K, stride S, padding P convolution of an H×W
    image; the output is computed with ``unfold_conv2d`` and an all-1/K² kernel."""
    out = unfold_conv2d(image[None, None].float(), torch.full((1, 1, k, k), 1 / k**2), None, s, p)[0, 0]
    if not 0 <= position < out.numel():
        raise ValueError(f"position must be in [0, {out.numel() - 1}], got {position}")
    i, j = divmod(position, out.shape[1])
    return Window((i, j), (i * s - p, j * s - p), out)
