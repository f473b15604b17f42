"""The assignment report: one self-contained HTML file that answers seed 001's questions in their order with this
project's numbers and figures (plotly.js embedded once, so it opens offline). ``python -m cnn_core report`` writes it;
the Results page offers the same file. Everything comes from the saved runs and cnn_core's own functions: stored
curves, test probabilities and robustness views where a run has them, a few seconds of attacks otherwise."""

from __future__ import annotations

import html
import time
from collections.abc import Callable

import numpy as np
import plotly.graph_objects as go
import plotly.offline
import torch

from . import attacks as A
from . import views as V
from .attack_plots import (
    ascent_titles,
    cost_curves_figure,
    images_figure,
    perturbation_figure,
    robustness_figure,
    transfer_figure,
)
from .compare import bn_verdict, comparison_table
from .data import Mnist, to_float
from .inside import class_of_interest, feature_maps, occlusion
from .model import for_inference, layer_table, neuron_counts, parameter_split, predict_proba
from .plots import (
    digit_grid,
    feature_maps_figure,
    filters_figure,
    occlusion_figure,
    prediction_titles,
    run_colors,
    training_curves_figure,
)
from .robust import DEFENCES, bit_depth, defence_verdict
from .robust_attacks import ATTACKS
from .store import LECTURE_PAIR, SHIPPED_RUNS, RunStore

# The sections, in the assignment's order (a test checks that each is there).
SECTIONS = (
    "1. Training curves and test accuracy",
    "Random test images: true and predicted class",
    "Dimensions of the input and output at each layer",
    "Parameters: convolutional and fully connected",
    "Neurons: convolutional and fully connected",
    "Batch normalization: accuracy and training time",
    "2. conv1 filters",
    "Filters of a higher layer (conv2)",
    "Activations of the convolutional layers",
    "Occlusion: P(class of interest) by patch position, 10 digits",
    "3 a) Non-targeted attack: fooling images",
    "3 b) Targeted attack: images that look like a digit",
    "3 c) Adding noise",
    "Optional 1: class models",
    "Optional 2: preventing adversarial attacks",
)
REPORT_SEED = 0  # which random test digits are shown: fixed, so that a report can be compared with another
OCCLUSION_PATCH, OCCLUSION_STRIDE = 10, 2  # as the Inside page opens
TARGETED_BETA = 0.01  # the Attack playground's default β: the images look like the digit yet are classified as t


class _Doc:
    """The report as it is written: headings, paragraphs, tables and figures, in order."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures = 0

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def para(self, text: str) -> None:  # text is HTML written here: only numbers and names are interpolated
        self.parts.append(f"<p>{text}</p>")

    def table(self, frame) -> None:
        frame = frame.copy()
        for c in frame.select_dtypes("number"):  # 784,500 rather than 784500
            frame[c] = [f"{v:,}" if float(v).is_integer() else f"{v:,.2f}" for v in frame[c]]
        self.parts.append(frame.to_html(index=False, border=0, classes="table"))

    def figure(self, fig: go.Figure) -> None:
        self.figures += 1
        self.parts.append(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))


def build_report(store: RunStore, data: Mnist, runs: tuple[str, str] = LECTURE_PAIR,
                 progress: Callable[[str], None] = lambda what: None) -> tuple[str, int]:
    """(the HTML, the number of figures) for the runs without and with BatchNorm (``runs``; the attacks use the one
    with the higher test accuracy, as the assignment asks)."""
    start = time.perf_counter()
    infos = {n: store.load_info(n) for n in runs}
    models = {n: store.load_model(n)[0].eval() for n in runs}
    best = max(runs, key=lambda n: infos[n]["results"]["accuracy"])
    attacked = for_inference(models[best])  # the pages' own inference copy: the run's weights are never touched
    doc = _Doc()
    # One torch thread: these batches are small, and two threads beside another busy process (the app's server, a
    # test) were 6–9× slower (fooling images 0.9 s → 6 s, measured); set_num_threads is per calling thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for part in (_training, _network, _visualizing, _attacks, _defences):
            progress(part.__doc__.split(":")[0])
            part(doc, store, data, runs, infos, models, best, attacked)
    finally:
        torch.set_num_threads(threads)
    head = (f"<h1>CNN Lab: the assignment report</h1><p>Runs: {', '.join(f'<b>{n}</b>' for n in runs)} (without and "
            f"with BatchNorm); the attacks use <b>{best}</b>, the more accurate. Written in "
            f"{time.perf_counter() - start:.0f} s by <code>python -m cnn_core report</code>.</p>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>CNN Lab report</title><style>{_CSS}</style>"
            f"<script>{plotly.offline.get_plotlyjs()}</script></head><body>{head}{''.join(doc.parts)}</body></html>")
    return page, doc.figures


def _training(doc, store, data, runs, infos, models, best, attacked) -> None:
    """Training: curves, test accuracy, random test images"""
    doc.heading(SECTIONS[0])
    doc.figure(training_curves_figure([store.load_history(n) for n in runs], run_colors(list(runs))))
    for n in runs:
        r = infos[n]["results"]
        doc.para(f"<b>{n}</b>: test accuracy <b>{100 * r['accuracy']:.2f}%</b> ({round(r['accuracy'] * r['n']):,} of "
                 f"{r['n']:,} test images), test loss {r['loss']:.4f}.")
    doc.heading(SECTIONS[1])
    idx = np.random.default_rng(REPORT_SEED).choice(len(data.test_labels), 10, replace=False)
    for n in runs:
        probs = store.test_probabilities(n, lambda n=n: predict_proba(models[n], to_float(data.test_images)).numpy())[idx]
        titles, wrong = prediction_titles(data.test_labels[idx].tolist(), probs.argmax(1).tolist(), probs.max(1).tolist())
        doc.para(f"<b>{n}</b>: {10 - sum(wrong)} of 10 correct (red: wrong).")
        doc.figure(digit_grid(data.test_images[idx].numpy(), titles, wrong, cols=10, cell_px=90))


def _network(doc, store, data, runs, infos, models, best, attacked) -> None:
    """The network: dimensions, parameters, neurons, BatchNorm"""
    model = models[runs[0]]
    doc.heading(SECTIONS[2])
    doc.table(layer_table(model))
    p, neurons = parameter_split(model), neuron_counts(model)
    doc.heading(SECTIONS[3])
    doc.para(f"<b>{p['total']:,}</b> parameters: <b>{p['conv']:,}</b> in the convolutional layers and "
             f"<b>{p['fc']:,}</b> in the fully connected ones ({100 * p['fc'] / p['total']:.1f}%).")
    doc.heading(SECTIONS[4])
    doc.para(f"<b>{neurons['total']:,}</b> neurons (units computing a weighted sum): <b>{neurons['conv']:,}</b> "
             f"convolutional and <b>{neurons['fc']:,}</b> fully connected; {neurons['incl_input_and_pooling']:,} if "
             "the 784 input pixels and the pooling outputs are counted as well.")
    doc.heading(SECTIONS[5])
    no_bn, bn = (infos[n] for n in runs)
    doc.para(html.escape(bn_verdict(no_bn, bn)))
    doc.table(comparison_table([no_bn, bn])[["run", "BatchNorm", "test accuracy (%)", "seconds / epoch"]])


def _visualizing(doc, store, data, runs, infos, models, best, attacked) -> None:
    """Visualizing: filters, activations, occlusion"""
    n, model = runs[0], models[runs[0]]
    doc.heading(SECTIONS[6])
    doc.figure(filters_figure(model.conv1.weight.detach()[:, 0].numpy(), f"{n}: conv1, 32 filters 3×3"))
    doc.heading(SECTIONS[7])
    doc.figure(filters_figure(model.conv2.weight.detach()[0].numpy(), f"{n}: conv2 filter 0, its 32 input-channel "
                              "kernels", what="input channel"))
    doc.heading(SECTIONS[8])
    x = to_float(data.test_images[:1])
    for layer in ("conv1", "conv2"):
        maps = feature_maps(model, x, layer, "post-ReLU")[0].numpy()
        doc.figure(feature_maps_figure(maps, f"{n}: {layer} after ReLU, test digit #0 (true {int(data.test_labels[0])})",
                                       per_map=True))
    doc.heading(SECTIONS[9])
    idx = np.random.default_rng(REPORT_SEED + 1).choice(len(data.test_labels), 10, replace=False)
    xs, labels = to_float(data.test_images[idx]), tuple(data.test_labels[idx].tolist())
    o = occlusion(attacked, xs, class_of_interest(attacked, xs, labels, "true class"), OCCLUSION_PATCH,
                  OCCLUSION_STRIDE, 0.5)
    titles = [f"#{i} (true {t}), P = {p:.3f}" for i, t, p in zip(idx, labels, o.base_prob.tolist(), strict=True)]
    doc.figure(occlusion_figure(xs[:, 0].numpy(), o.prob.numpy(), o.pred.numpy(), titles, OCCLUSION_PATCH,
                                OCCLUSION_STRIDE))


def _attacks(doc, store, data, runs, infos, models, best, attacked) -> None:
    """Adversarial examples: a, b, c and class models"""
    classes = [f"target {t}" for t in range(10)]

    def ascent(r: A.Ascent, cost_title: str, yaxis: str = "cost C") -> None:
        titles, wrong = ascent_titles(r.predicted, r.confidence)
        doc.figure(images_figure(r.images, titles, wrong, cols=10, cell_px=90))
        doc.figure(cost_curves_figure(r.costs, classes, cost_title, yaxis))
        rising = (np.diff(r.costs, axis=0) >= 0).mean()
        doc.para(f"{10 - sum(wrong)} of 10 classified as their target, mean confidence "
                 f"{100 * r.confidence.mean():.0f}%; the cost rose at {100 * rising:.0f}% of the steps (gradient ascent).")

    doc.heading(SECTIONS[10])
    ascent(A.fooling_images(attacked), "C = logits[t] per step")
    doc.para("They do not look like digits: nothing in C asks them to; the ascent only raises one score, and far from "
             "the digits it was trained on the network's scores change a lot for small changes of all 784 pixels.")
    doc.heading(SECTIONS[11])
    two = data.test_images[A.one_per_class(data.test_images, data.test_labels)[2]].float()
    ascent(A.targeted_images(attacked, two[None], beta=TARGETED_BETA), f"C = logits[t] − β·MSE, β = {TARGETED_BETA:g}")
    doc.para(f"Each image was pushed towards class t while looking like a test 2 (β = {TARGETED_BETA:g}): they now "
             "look like the 2, yet are classified as t.")
    doc.heading(SECTIONS[12])
    nine = data.test_images[A.one_per_class(data.test_images, data.test_labels)[9]].float()
    r = A.adversarial_noise(attacked, nine)
    titles = [f"target {t}<br>→ {p}" for t, p in enumerate(r.probs.argmax(1))]
    doc.figure(perturbation_figure([("noise", r.noise, True), ("x + noise", r.images, False)], titles, cell_px=90))
    examples = data.test_images[A.one_per_class(data.test_images, data.test_labels, nine)].float()
    pred = A.transfer_matrix(attacked, examples, torch.from_numpy(r.noise))
    doc.figure(transfer_figure(pred, list(range(10)), list(range(10))))
    t = A.transfer_summary(pred, list(range(10)), r.steps)
    doc.para(f"A test 9 plus each target's noise: {int(r.reached.sum())} of 10 targets reached, largest |noise| "
             f"{np.abs(r.noise).max():.0f} grey levels. Added to 10 other test digits (one per class), the noise made "
             f"its target win in {t['won']} of {t['cells']} cases; {t['kept']} kept their own class.")
    doc.heading(SECTIONS[13])
    ascent(A.class_models(attacked), "J(I) = S_c(I) − λ‖I‖² per step", "J")


def _defences(doc, store, data, runs, infos, models, best, attacked) -> None:
    """Defences: robustness curves and an input defence"""
    doc.heading(SECTIONS[14])
    shipped = [n for n in SHIPPED_RUNS if store.exists(n)]
    curves = {n: c for n in dict.fromkeys([*runs, *shipped]) if (c := V.stored_curves(store, n))}
    if curves:
        attacks = [a.label for m, a in ATTACKS.items() if any(m in c.accuracy for c in curves.values())]
        doc.figure(robustness_figure(curves, run_colors(list(curves))))
        named = " and ".join(filter(None, (", ".join(attacks[:-1]), attacks[-1])))  # "FGSM, PGD and DeepFool"
        doc.para(f"Accuracy on the first test digits under {named} at each L∞ budget ε "
                 "(pixels in [0, 1]). Adversarial training (PGD examples in every batch) is the defence that holds, up "
                 "to its budget.")
    for d, fn in DEFENCES.items():
        res = V.stored_defence(store, best, d, 0.2) or V.defence_view(attacked, data, d, 0.2)
        doc.para(f"Input defence <b>{html.escape(d)}</b> on {best} at ε = 0.2: PGD that ignores it leaves "
                 f"{100 * res['PGD, defence on']:.1f}% (without the defence {100 * res['PGD']:.1f}%); an adaptive "
                 f"attacker who attacks through it: {100 * res['adaptive attacker']:.1f}% — "
                 f"{html.escape(defence_verdict(res, fn is bit_depth))}")


_CSS = """body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
p { font-size: 1.05em; line-height: 1.5; } .table { border-collapse: collapse; font-size: 0.95em; }
.table th, .table td { padding: 4px 10px; border-bottom: 1px solid #eee; text-align: right; }"""
