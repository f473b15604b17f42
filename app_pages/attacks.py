"""Attack playground (assignment part 3 and its optional part): fooling images, targeted images with an
image prior, adversarial noise, class models and unit maximization, on the 0–255 scale."""

import numpy as np
import streamlit as st
import torch

from app_pages import live
from app_pages.chooser import choose_models, side_by_side
from app_pages.common import SCENE, chart, explain
from app_pages.digits import pick_digits
from app_pages.loaders import require_data
from cnn_core import attacks as A
from cnn_core.attack_plots import ascent_titles, cost_curves_figure, images_figure, perturbation_figure, transfer_figure
from cnn_core.plots import digit_strip

st.title("Attack playground")
data = require_data()

SECTIONS = ["Fooling images", "Targeted + prior", "Adversarial noise", "Class models", "Maximize a unit"]
section = st.segmented_control("Show", SECTIONS, default=SECTIONS[0], key="atk_section", bind=SCENE) or SECTIONS[0]
chosen = choose_models("atk_model", st.columns([3, 2])[0])
st.caption("**Scale:** images and noise are on the assignment's 0–255 pixel scale (the model sees x / 255), so noise "
           "'around 128' and β are as in the text. A gradient is in logits per grey level — about 0.0005 — so plain "
           "gradient steps need step sizes near 1,000; with **sign of gradient** the step is in grey levels. "
           "The model's weights never change: only the image or the noise is updated.")
CLASSES = list(range(10))


def log_options(lo: int, hi: int) -> list[float]:
    """1, 2, 5 × 10^k for k in lo…hi: the values of a log-scale slider."""
    return [m * 10.0**k for k in range(lo, hi + 1) for m in (1, 2, 5) if m * 10.0**k <= 10.0**hi]


def fmt(v: float) -> str:
    return f"{v:g}"


def ascent_controls(key: str, steps: int = 200, step: float = 1000.0, step_range=(-1, 6)) -> dict:
    """Steps, step size, sign and clamp: the knobs every gradient-ascent section shares."""
    a, b, c = st.columns([3, 3, 2])
    sign = c.toggle("Sign of gradient", key=f"{key}_sign", bind=SCENE, help="x ← x + step · sign(∂C/∂x): the step is in grey levels")
    clamp = c.toggle("Clamp to valid pixels [0, 255]", True, key=f"{key}_clamp", bind=SCENE)
    options = log_options(-1, 2) if sign else log_options(*step_range)
    default = 1.0 if sign else step
    return dict(steps=a.slider("Steps", 1, 1000, steps, key=f"{key}_steps", bind=SCENE),
                step_size=b.select_slider("Step size", options, default, format_func=fmt, key=f"{key}_step{'_s' * sign}", bind=SCENE),
                sign=sign, clamp=clamp)


def show_ascent(r: A.Ascent, slot: str, cols: int, notes: list[str] | None = None) -> None:
    """The optimized images titled 'target t', '→ predicted, confidence' (red where the target did not win)."""
    titles, wrong = ascent_titles(r.predicted, r.confidence)
    titles = [f"{t}<br>{n}" for t, n in zip(titles, notes, strict=True)] if notes else titles
    chart(images_figure(r.images, titles, wrong, cols=cols), key=f"img_{slot}")
    st.caption(f"{10 - sum(wrong)} of 10 classified as their target · {len(r.costs) - 1} steps "
               f"in {r.milliseconds:,.0f} ms, all targets in one batch")


def ascent_job(name: str, c, run, steps: int, cols: int, **settings) -> live.Job:
    """Model ``c``'s gradient ascent ``run(model, progress=…, steps=…, **settings)`` as a live job: keyed by the
    model's key (it names the weights exactly, see app_pages.chooser) and every setting, its images drawn every
    20 steps as they form. The model is passed in, never looked up from a global."""
    def job(progress):
        return run(c.model, steps=steps, progress=lambda k, x, costs: progress((k, x)), **settings)

    def draw(partial):
        k, images = partial
        st.progress(k / steps, text=f"Optimizing: step {k} of {steps}")
        st.image(digit_strip(images, cols))

    key = tuple((k, live.digest(v) if isinstance(v, np.ndarray) else v) for k, v in sorted(settings.items()))
    small = len(settings.get("look_like", [None])) == 1  # 10 or 16 images: one thread (app_pages.live.Job)
    return live.Job((name, c.key, steps, key), job, draw, threads=1 if small else None)


def targeted_run(model, look_like: np.ndarray, **kw) -> A.Ascent:
    return A.targeted_images(model, torch.from_numpy(look_like), **kw)


@st.cache_data(max_entries=64, show_spinner="Optimizing…")
def noise_attack(model_key: str, _model, image: np.ndarray, examples: np.ndarray, **kw) -> tuple[A.NoiseAttack, np.ndarray]:
    r = A.adversarial_noise(_model, torch.from_numpy(image), **kw)
    return r, A.transfer_matrix(_model, torch.from_numpy(examples), torch.from_numpy(r.noise), clamp=kw["clamp"])


cols = 10 if len(chosen) == 1 else 5

if section == "Fooling images":
    st.markdown("**a) Fooling images.** Start from one noise image and push it up the score of each class t by gradient "
                "ascent on **C = logits[t]** — all 10 targets in one batch.")
    a, b, c = st.columns(3)
    mean = a.slider("Noise mean (grey level)", 0, 255, 128, key="fool_mean", bind=SCENE)
    std = b.slider("Noise std (grey levels)", 0, 128, 40, key="fool_std", bind=SCENE)
    seed = c.number_input("Seed", 0, 10_000, 0, key="fool_seed", bind=SCENE)
    kw = ascent_controls("fool")

    def render(c, r):
        show_ascent(r, c.slot, cols)
        chart(cost_curves_figure(r.costs, [f"target {t}" for t in CLASSES], "Cost C = logits[t] per step"),
              key=f"cost_{c.slot}")
        rising = (np.diff(r.costs, axis=0) >= 0).mean()
        target_p = r.probs[np.arange(10), CLASSES].mean()
        st.markdown(f"The cost **rose at {100 * rising:.0f}% of the steps** (gradient ascent). Mean probability of the "
                    f"target class: **{100 * target_p:.0f}%**.")

    side_by_side(chosen, render, lambda c: ascent_job("fooling", c, A.fooling_images, cols=cols, mean=float(mean),
                                                      std=float(std), seed=int(seed), **kw))
    explain("**Why don't they look like digits?** Nothing in C asks the image to look like anything: the ascent only "
            "raises one score. The network has seen digits only — noise images lie far from anything it was trained on, "
            "where its scores are nearly linear in the pixels, so a tiny push on all 784 pixels at once adds up to a "
            "large change of score. High confidence here means *far on the class's side of a boundary*, not *looks "
            "like a 7*.")

elif section == "Targeted + prior":
    st.markdown("**b) Targeted, with an image prior.** Ascend **C = logits[t] − β·MSE(x, target image)**: raise the "
                "score of class t while staying close to the image to look like. Small β: the score wins (noise); "
                "large β: the image wins (it keeps its own class).")
    digits = pick_digits(data, 1, "like")
    if digits is None:
        st.stop()
    a, b, c = st.columns([3, 2, 2])
    beta = a.select_slider("β (log scale)", log_options(-6, 1), 1e-2, format_func=fmt, key="beta", bind=SCENE)
    start = b.radio("Start from", ["noise", "image"], horizontal=True, key="like_start", bind=SCENE,
                    format_func=lambda s: {"noise": "noise (as in a)", "image": "the image itself"}[s])
    grid = c.toggle("Full 10×10 grid", key="like_grid", bind=SCENE, help="every test class as the image to look like × every target")
    kw = ascent_controls("like")
    like = (digits.images * 255).astype(np.float32)
    st.image(digits.images[0], caption=f"image to look like: {digits.names[0]}", width=120, clamp=True)
    if not kw["sign"] and A.prior_diverges(kw["step_size"], beta):
        st.warning(f"step · β · 2/784 = {kw['step_size'] * beta * 2 / 784:.2g} > 2: the prior's own gradient ascent "
                   "diverges (each step overshoots the target image by more than it corrects). Lower β or the step size.")

    def render(c, r):
        mse = A.mse(torch.from_numpy(r.images), torch.from_numpy(like)).numpy()
        show_ascent(r, c.slot, cols, [f"MSE {m:,.0f}" for m in mse])
        chart(cost_curves_figure(r.costs, [f"target {t}" for t in CLASSES],
                                 f"C = logits[t] − β·MSE, β = {fmt(beta)}"), key=f"cost_{c.slot}")

    def render_grid(c, g):
        titles = [f"{p} ({100 * q:.0f}%)" for p, q in zip(g.predicted, g.confidence, strict=True)]
        wrong = [int(p) != k % 10 for k, p in enumerate(g.predicted)]
        chart(images_figure(g.images, titles, wrong, cols=10, cell_px=90,
                            row_labels=[f"like {i}" for i in CLASSES], col_labels=[f"→ {j}" for j in CLASSES]),
              key=f"grid_{c.slot}")
        st.caption(f"Row 'like i' looks like the first test digit of class i, column '→ j' is pushed towards class j; "
                   f"titles: predicted class (confidence), red where it is not j. {100 - sum(wrong)} of 100 reached "
                   "their target.")

    side_by_side(chosen, render, lambda c: ascent_job("targeted", c, targeted_run, cols=cols, look_like=like, beta=beta,
                                                      start=start, **kw))
    if grid:
        st.markdown("**The full 10×10 grid**")
        looks = data.test_images[A.one_per_class(data.test_images, data.test_labels)].float().numpy()
        side_by_side(chosen, render_grid, lambda c: ascent_job("targeted", c, targeted_run, cols=10, look_like=looks,
                                                               beta=beta, start=start, **kw), stacked=True)
    explain("Each image was pushed towards its target t while the prior pulls it back to the image to look like; "
            "titles: the target, the prediction (→) with its confidence, and the MSE to that image. Small β: the score "
            "wins, and the images are noise the model calls t. Large β: the prior wins, the images stay the digit and keep its "
            "class. In between they still look like the digit yet are classified as t — adversarial examples. The "
            "curves show C for every target at every step.")

elif section == "Adversarial noise":
    st.markdown("**c) Adversarial noise.** Keep the digit, learn a noise: **x_noise = x + noise**, ascend "
                "**C = logits[t]** with respect to the noise, **noise ← noise + α·∂C/∂noise**; stop as soon as t wins.")
    digits = pick_digits(data, 1, "orig")
    if digits is None:
        st.stop()
    a, b, c, d = st.columns(4)
    steps = a.slider("Max steps", 1, 1000, 200, key="noise_steps", bind=SCENE)
    auto = b.radio("α", ["1/(std(d) + 1e-8)", "fixed"], key="noise_alpha_mode", bind=SCENE) != "fixed"
    alpha = None if auto else b.select_slider("fixed α", log_options(0, 6), 1000.0, format_func=fmt, key="noise_alpha", bind=SCENE)
    bounded = c.toggle("Bound the noise (L∞)", key="noise_bounded", bind=SCENE)
    linf = c.slider("max |noise| (grey levels)", 1, 255, 64, key="noise_linf", bind=SCENE) if bounded else None
    clamp = d.toggle("Clamp x + noise to [0, 255]", True, key="noise_clamp", bind=SCENE)
    image = (digits.images[0] * 255).astype(np.float32)
    examples = data.test_images[A.one_per_class(data.test_images, data.test_labels, torch.from_numpy(image))].float().numpy()

    def render(c):
        r, pred = noise_attack(c.key, c.model, image, examples, steps=steps, alpha=alpha, linf=linf, clamp=clamp)
        conf = r.probs.max(1)
        titles = [f"target {t}<br>→ {p}, {100 * q:.0f}%<br>{s} {'step' if s == 1 else 'steps'}" if ok else
                  f"target {t}<br>→ {p}: missed<br>{s} steps" for t, p, q, s, ok in
                  zip(CLASSES, r.probs.argmax(1), conf, r.steps, r.reached, strict=True)]
        chart(perturbation_figure([("noise", r.noise, True), ("x + noise", r.images, False)], titles,
                                  cell_px=90), key=f"noise_{c.slot}")
        st.caption(f"{int(r.reached.sum())} of 10 targets reached (stopped at the first step where the target won); "
                   f"largest |noise| {np.abs(r.noise).max():.0f} grey levels; {r.milliseconds:,.0f} ms.")
        chart(transfer_figure(pred, CLASSES, CLASSES), key=f"transfer_{c.slot}")
        t = A.transfer_summary(pred, CLASSES, r.steps)
        st.caption("Each row adds one of the noises above to 10 other test digits (the first of each class). Red: the "
                   "noise's target won; grey: the digit kept its class; orange: another class. The diagonal (the digit "
                   "already is the target) and a zero noise (the original's own class) are not counted.")
        st.markdown(f"**Transfer:** in **{t['won']} of {t['cells']}** cases the noise made another digit its target, and "
                    f"**{t['kept']} of {t['cells']}** kept their own class: the noise was tailored to one image and one "
                    "model's gradient, not a general 'make it a t' pattern.")

    st.image(digits.images[0], caption=f"original: {digits.names[0]}", width=120, clamp=True)
    side_by_side(chosen, render, stacked=True)  # ten noises and a 10×10 matrix need the page's width
    explain("Top: the noise learned for each target t (blue takes grey away, red adds it; one scale per row, in grey "
            "levels). Below: the digit plus that noise, titled with the target, the prediction and the steps it took. "
            "The caption's largest |noise| says how far the digit had to move, against 255 grey levels per pixel: "
            "the decision boundary runs that close to it. The transfer matrix asks whether a noise is a general "
            "'make it a t' pattern: its sentence counts how often it worked on other digits.")

elif section == "Class models":
    st.markdown("**Class models (optional part).** Start from the zero (black) image and ascend "
                "**J(I) = S_c(I) − λ‖I‖²** for each class c: the image each class's score likes most, kept dark by λ.")
    lam = st.select_slider("λ (log scale)", log_options(-9, -3), 1e-6, format_func=fmt, key="cls_lam", bind=SCENE)
    kw = ascent_controls("cls")

    def render(c, r):
        show_ascent(r, c.slot, cols)
        chart(cost_curves_figure(r.costs, [f"class {t}" for t in CLASSES], "J(I) = S_c(I) − λ‖I‖² per step",
                                 "J"), key=f"cost_{c.slot}")

    side_by_side(chosen, render, lambda c: ascent_job("class", c, A.class_models, cols=cols, lam=lam, **kw))
    explain("Blurry strokes appear where the class's digits usually have ink (a 0's ring, a 1's bar), mixed with "
            "pixels that merely *raise the score*. A stronger prior (larger λ, or smoothing) makes them more digit-like; "
            "too large a λ keeps the image black.")

else:
    st.markdown("**Maximize a unit.** Instead of a class score, ascend one unit's pre-ReLU activation − λ‖I‖², "
                "from the zero image. For conv1 and conv2 it is the unit at the centre of a channel's map: only its "
                "receptive field can change, so that is what is shown.")
    a, b, c = st.columns(3)
    layer = a.radio("Layer", list(A.UNIT_LAYERS), index=1, horizontal=True, key="unit_layer", bind=SCENE)
    first = b.number_input(f"First of 16 units (0–{A.UNIT_LAYERS[layer] - 16})", 0, A.UNIT_LAYERS[layer] - 16, 0,
                           key=f"unit_first_{layer}", bind=SCENE)
    lam = c.select_slider("λ (log scale)", log_options(-9, -3), 1e-6, format_func=fmt, key="unit_lam", bind=SCENE)
    kw = ascent_controls("unit", step=1e4, step_range=(1, 7))
    units = tuple(range(int(first), int(first) + 16))
    field = A.receptive_field(layer)
    size = field.stop - field.start

    def render(c, r):
        crops = r.images[:, field, field]
        gain = r.costs[-1] - r.costs[0]
        titles = [f"{layer}[{u}]: {g:+.1f}" for u, g in zip(units, gain, strict=True)]
        chart(images_figure(crops, titles, cols=8), key=f"img_{c.slot}")
        st.caption(f"{size}×{size} receptive field{' (the whole image)' if size == 28 else ''}; title: gain of the objective a(I) − λ‖I‖². "
                   f"{len(units)} units in one batch, {r.milliseconds:,.0f} ms.")

    side_by_side(chosen, render, lambda c: ascent_job("unit", c, A.unit_models, cols=8, layer=layer, units=units,
                                                      lam=lam, **kw))
    explain("conv1 units are linear in their 3×3 patch, so the best input is the filter's own pattern of positive weights. "
            "conv2 units see 8×8 pixels and prefer short strokes and corners; fc1 neurons see the whole image and prefer "
            "parts of digits.")
