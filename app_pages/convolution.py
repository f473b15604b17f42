"""Convolution by hand: output sizes and a sliding window, im2col on the real conv1, the backward in unfold/fold form."""

import streamlit as st
import torch

from app_pages.chooser import choose_models
from app_pages.common import SCENE, chart, explaining
from app_pages.digits import pick_digits
from app_pages.loaders import require_data
from cnn_core.conv_plots import maps_figure, matrix_figure, window_figure
from cnn_core.unfold_conv import digit_at, im2col_demo, size_steps, sliding_window

st.title("Convolution by hand")
st.markdown("A convolution is a small window sliding over the image; computed all at once it is **one matrix product**: "
            "unfold every window into a row, multiply by the filters. The same for the backward pass.")
data = require_data()
digits = pick_digits(data, 1, "conv") or st.stop()
image = torch.from_numpy(digits.images[0])

# ----- (a) output size and the sliding window ----------------------------------------------------------------
st.header("Output size and the sliding window")
a, b, c, d, e = st.columns(5)
size = a.selectbox("Input width W", [28, 14, 7], key="conv_w", bind=SCENE, help="28: the digit; 14 and 7: its size after pool1, pool2")
k = b.slider("Kernel K", 1, 7, 3, key="conv_k", bind=SCENE)
p = c.slider("Padding P", 0, 3, 1, key="conv_p", bind=SCENE)
s = d.slider("Stride S", 1, 3, 1, key="conv_s", bind=SCENE)
pool = e.selectbox("Then max-pool", [0, 2, 3], index=1, key="conv_pool", bind=SCENE,
                   format_func=lambda v: f"{v}×{v}, stride {v}" if v else "none")
try:
    steps = size_steps(size, k, p, s, pool)
except ValueError as exc:
    st.error(f"{exc}: make the kernel smaller, add padding, or pick a larger input.")
    steps = []
for step in steps:
    w_, k_, p_, s_, out = step["w"], step["k"], step["p"], step["s"], step["out"]
    st.latex(rf"\text{{{step['name']}: }} \left\lfloor \frac{{W - K + 2P}}{{S}} \right\rfloor + 1 = "
             rf"\left\lfloor \frac{{{w_} - {k_} + 2 \cdot {p_}}}{{{s_}}} \right\rfloor + 1 = {out}")
    if not step["exact"]:
        left = (w_ - k_ + 2 * p_) % s_
        st.caption(f"{step['name']}: S = {s_} does not divide W − K + 2P = {w_ - k_ + 2 * p_}: the last {left} "
                   f"row(s) and column(s) of the padded input are never covered by a window.")
if steps:
    n_out = steps[0]["out"]
    if "conv_pos" not in st.session_state:  # open on the centre of the digit, where the strokes are
        st.session_state.conv_pos = (n_out // 2) * n_out + n_out // 2
    elif st.session_state.conv_pos >= n_out**2:  # the settings shrank the output: stay inside it
        st.session_state.conv_pos = n_out**2 - 1
    position = st.slider("Window position (row by row over the output; arrow keys step it)", 0, n_out**2 - 1, key="conv_pos", bind=SCENE)
    win = sliding_window(digit_at(image, size), k, p, s, position)
    chart(window_figure(digit_at(image, size).numpy(), k, p, win.top_left, win.output.numpy(), win.cell),
          key="conv_window")
with explaining():
    st.markdown(
        "Left: the digit (or its 14×14 / 7×7 version, the size the network's later layers see) with P rows and columns "
        "of zeros around it (dashed frame: the real image). The red square is the K×K window; it moves S pixels at a "
        "time, row by row. Right: the output map. Each cell is what one window position produces — here the window's "
        "**mean** (an all-1/K² filter, so you can see the image in it); a trained filter weights the pixels instead. "
        "The number of positions along a side is the formula above; pooling is the same arithmetic with K = S = "
        "pool size and no padding. The assignment's conv1: W = 28, K = 3, P = 1, S = 1 → 28, then 2×2 pooling → 14.")

# ----- (b) im2col on the real conv1 --------------------------------------------------------------------------------
st.header("im2col: conv1 as one matrix product")
a, b = st.columns([2, 3])
model = choose_models("conv_model", a, two=False)[0].model
row = b.slider("Highlighted patch row = output pixel (row-major: row r is pixel (r ÷ 28, r mod 28))", 0, 783, 29,
               key="conv_row", bind=SCENE)
demo = im2col_demo(model, image)
st.metric("Largest |im2col product − the model's own conv1 output|", f"{demo.max_difference:.1e}",
          help="Over all 32 × 28 × 28 values; float32 rounding only.")
a, b = st.columns([2, 3])
with a:
    chart(matrix_figure(demo.patches.numpy(), "Patches: 784 × 9", "position in the 3×3 window", "output pixel",
                        diverging=False, height=560, highlight_row=row), key="conv_patches")
with b:
    chart(matrix_figure(demo.filters.numpy(), "Filters: 9 × 32", "filter", "position in the 3×3 window",
                        diverging=True, height=360), key="conv_filters")
    st.latex(r"\underbrace{P}_{784 \times 9}\;\underbrace{F}_{9 \times 32} + b \;=\; \underbrace{Y}_{784 \times 32}"
             r"\;\to\; 32 \text{ maps of } 28 \times 28")
    st.caption(f"Patch row {row} = output pixel ({row // 28}, {row % 28}): its 9 values times filter f give map f at "
               f"that pixel, e.g. map 0 there = {float(demo.maps[0, row // 28, row % 28]):.4f}.")
chart(maps_figure(demo.maps.numpy(), "Patches · filters + bias, each column reshaped to 28×28"), key="conv_maps")
with explaining():
    st.markdown(
        "**Patches**: `unfold` cuts the (normalized) digit into its 784 overlapping 3×3 windows, one row each (padding 1 "
        "puts zeros in the border windows: after normalization the black background is −0.42, so the zeros show as "
        "slightly lighter cells in the first and last rows of the matrix). **Filters**: "
        "conv1's 32 kernels, each flattened into a column of 9 weights. Their product, plus each filter's bias, is a "
        "784 × 32 matrix; each column reshaped to 28 × 28 is one feature map. The number above compares it with the "
        "model's own conv1 output — **before** BatchNorm and ReLU, which come after the convolution (the model "
        "normalizes the pixels with the MNIST mean and std first, so the patches are of the normalized digit). It is "
        "0 or float32 rounding (~1e-7), depending on whether both sum the 9 products in the same order.")

# ----- (c) the backward pass -----------------------------------------------------------------------------------------
st.header("The backward pass, in unfold/fold form")
st.markdown("For a batch X (N×C×H×W), weights W flattened to O × C·K·K, and the upstream gradient dY = ∂L/∂Y "
            "(N × O × L, L output positions):")
st.latex(r"Y_n = W\,\mathrm{unfold}(X)_n + b")
st.latex(r"\frac{\partial L}{\partial W} = \sum_{n=1}^{N} dY_n\,\mathrm{unfold}(X)_n^{\top}"
         r"\qquad (O \times L)(L \times CK^2) = O \times CK^2")
st.latex(r"\frac{\partial L}{\partial X_n} = \mathrm{fold}\!\left(W^{\top} dY_n\right)"
         r"\qquad (CK^2 \times O)(O \times L) = CK^2 \times L \;\to\; C \times H \times W")
st.latex(r"\frac{\partial L}{\partial b_o} = \sum_{n=1}^{N} \sum_{\ell=1}^{L} dY_{n,o,\ell}")
with explaining():
    st.markdown(
        "The forward pass is a matrix product, so its gradients are matrix products too: dW multiplies the output "
        "gradient by the patches that produced it, summed over the batch. dX sends the gradient back through the "
        "weights to every patch (Wᵀ·dY, one column per window), then **fold** adds each column back onto the pixels "
        "its window covered — a pixel in 9 windows receives 9 contributions. The bias touches every output position, "
        "so its gradient is the sum of dY. `cnn_core/unfold_conv.py` implements exactly these lines as its own "
        "autograd backward; `python -m cnn_core train --conv unfold` trains the network with it (same loss curve as "
        "the built-in convolution) and `python -m cnn_core.bench --conv` measures what it costs.")
