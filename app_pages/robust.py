"""Robustness lab: FGSM/PGD with a budget ε, robustness curves, a universal perturbation, defences
(adversarial training, input transforms) — attack, defend, re-attack in one place. Pixels in [0, 1]."""

import time

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app_pages.common import (
    ADV_TRAINED,
    SHIPPED,
    adv_trained_model,
    pick_digits,
    require_data,
    require_models,
    run_store,
    saved_model,
)
from cnn_core import robust as R
from cnn_core.attack_plots import attack_attribution_figure, perturbation_figure, robustness_figure
from cnn_core.data import to_float
from cnn_core.plots import digit_grid

st.title("Robustness lab")
data = require_data()
shipped = require_models()
adv = adv_trained_model()
MODELS = {**{n: m for n, (m, _) in shipped.items()}, **({ADV_TRAINED: adv[0]} if adv else {})}
LABELS = {**SHIPPED, ADV_TRAINED: "Adversarially trained"}
COLORS = {"baseline": "#1f77b4", "batchnorm": "#d62728", ADV_TRAINED: "#2ca02c"}
if adv is None:
    st.warning("`checkpoints/adv-trained` is missing, so the defended model is not shown. Restore it with "
               "`git checkout -- checkpoints` or train it (README, Shipped checkpoints).")
section = st.segmented_control("Show", ["Attacks", "Smallest ε", "Robustness curves", "Universal perturbation", "Defences"],
                               default="Attacks", key="rob_section") or "Attacks"
st.caption("Pixels are in [0, 1] here; a budget ε allows every pixel to move by at most ε (L∞), e.g. ε = 0.1 is 26 of "
           "255 grey levels. Adversarial images are clipped to [0, 1]. Model weights never change.")


def eps_slider(label: str, default: float, key: str) -> float:
    eps = st.slider(label, 0.0, 0.5, default, 0.01, key=key, format="%.2f")
    st.caption(f"ε = {eps:.2f} = {255 * eps:.0f}/255 grey levels")
    return eps


def model_radio(key: str) -> str:
    return st.radio("Model", list(MODELS), format_func=LABELS.get, horizontal=True, key=key)


def percent(v: float) -> str:
    return f"{100 * v:.1f}%"


def meaning(name: str, pgd: dict[str, dict[float, float]]) -> str:
    """One sentence per row of the defences table, from its measured numbers."""
    acc = pgd[name]
    if name == "baseline":
        return (f"{percent(acc[0.0])} on clean digits, yet PGD at ε = 0.2 (51/255 per pixel; the digits stay perfectly "
                f"readable) leaves {percent(acc[0.2])}: accuracy is not robustness.")
    if name == "batchnorm":
        base = pgd.get("baseline", {}).get(0.1)
        if base is not None and acc[0.1] < base - 0.1:
            return (f"a little more clean accuracy ({percent(acc[0.0])}) but far more fragile: PGD at ε = 0.1 leaves "
                    f"{percent(acc[0.1])} (baseline {percent(base)}). BatchNorm is known to make networks more "
                    "sensitive to small input changes (Galloway et al., 2019).")
        return f"BatchNorm changes clean accuracy ({percent(acc[0.0])}) but buys no robustness (ε = 0.1: {percent(acc[0.1])})."
    eps = float(adv[1]["config"]["adv_epsilon"])
    trained = acc[eps] if eps in acc else acc[0.2]
    return (f"trained on PGD examples at ε = {eps:g}: {percent(acc[0.0])} clean (the price of robustness), but "
            f"{percent(trained)} under PGD at its training budget; beyond it, at ε = 0.3, {percent(acc[0.3])}.")


@st.cache_data(max_entries=32, show_spinner="Attacking…")
def cached_attack(name: str, images: np.ndarray, labels: tuple, method: str, eps: float, steps: int,
                  step_size: float | None, random_start: bool, target: int | None):
    model = MODELS[name]
    x, y = torch.from_numpy(images)[:, None], torch.tensor(labels)
    t = None if target is None else torch.full_like(y, target)
    kw = dict(steps=steps, step_size=step_size, random_start=random_start) if method == "pgd" else {}
    xa = R.attack(model, x, y, method, eps, target=t, **kw)
    with torch.no_grad():
        before, after = model(x).softmax(1), model(xa).softmax(1)
    return xa[:, 0].numpy(), before.numpy(), after.numpy()


ATTRIBUTED = {"Saliency": "saliency", "Grad-CAM (conv2)": "Grad-CAM (conv2)"}  # method → short title


@st.cache_data(max_entries=32, show_spinner="Attributing the clean and the adversarial digits…")
def cached_attack_attributions(_model, name: str, version: float, images: np.ndarray, adv_images: np.ndarray) -> dict:
    """``robust.attributions_under_attack`` as numpy; ``name`` and ``version`` (the weights' mtime) key the model."""
    out = R.attributions_under_attack(_model, torch.from_numpy(images)[:, None], torch.from_numpy(adv_images)[:, None],
                                      tuple(ATTRIBUTED))
    return {"maps": {m: (c.numpy(), a.numpy()) for m, (c, a) in out["maps"].items()},
            "peaks": {m: v.numpy() for m, v in out["peaks"].items()},
            **{k: out[k].numpy() for k in ("pred_clean", "conf_clean", "pred_adv", "conf_adv")}}


@st.cache_data(max_entries=32, show_spinner="Bisecting ε with PGD…")
def cached_flip(_model, name: str, version: float, images: np.ndarray, labels: tuple, steps: int, max_eps: float) -> dict:
    """``robust.smallest_flipping_eps`` for one model (``name`` and ``version``, the weights' mtime, key it), the
    predictions at ε*, and the seconds it took."""
    x = torch.from_numpy(images)[:, None]
    y = R.reference_labels(_model, x, labels)
    t0 = time.perf_counter()
    eps, x_adv = R.smallest_flipping_eps(_model, x, y, max_eps=max_eps, steps=steps)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        conf, pred = _model(x_adv).softmax(1).max(1)
    return {"eps": eps.numpy(), "x_adv": x_adv[:, 0].numpy(), "pred": pred.numpy(), "conf": conf.numpy(),
            "reference": y.numpy(), "seconds": seconds}


def stored_curves(name: str) -> dict | None:
    return run_store().read_extra(name, "robustness.json")


@st.cache_data(max_entries=16, show_spinner="Attacking the test digits at 7 budgets…")
def live_curves(name: str, mtime: float, n: int, steps: int) -> dict:
    model = MODELS[name] if name in MODELS else saved_model(name, mtime)[0]
    return R.robustness_curves(model, to_float(data.test_images[:n]), data.test_labels[:n], pgd_steps=steps)


if section == "Attacks":
    st.markdown("**FGSM**: one step, x' = clip(x + ε·sign(∇ₓL), 0, 1). **PGD**: many small steps of size η, each "
                "followed by a projection back into the ε-ball around x (and [0, 1]); with a random start. "
                "**Targeted**: step *down* the loss of the target class instead.")
    name = model_radio("rob_model")
    digits = pick_digits(data, 6, "rob")
    if digits is None or None in digits.labels:
        if digits is not None:
            st.info("These attacks need the true class, so they use test digits: pick random, a class or indices.")
        st.stop()
    a, b, c = st.columns(3)
    with a:
        method = st.radio("Attack", ["fgsm", "pgd"], format_func=str.upper, horizontal=True, key="rob_method")
        eps = eps_slider("ε", 0.1, "rob_eps")
    with b:
        steps = st.slider("PGD steps", 1, 100, 20, key="rob_steps", disabled=method == "fgsm")
        auto = st.toggle("η = 2.5·ε / steps", True, key="rob_auto_eta", disabled=method == "fgsm")
        eta = None if auto else st.slider("η (step size)", 0.001, 0.1, 0.01, 0.001, format="%.3f", key="rob_eta")
        random_start = st.toggle("Random start", True, key="rob_random", disabled=method == "fgsm")
    with c:
        targeted = st.toggle("Targeted", key="rob_targeted")
        target = st.selectbox("Target class", list(range(10)), key="rob_target") if targeted else None
    xa, before, after = cached_attack(name, digits.images, tuple(digits.labels), method, eps, steps, eta, random_start,
                                      target)
    delta = xa - digits.images
    titles = [f"true {t}: {p}→{q} ({100 * c:.0f}%)" for t, p, q, c in
              zip(digits.labels, before.argmax(1), after.argmax(1), after.max(1), strict=True)]
    st.plotly_chart(perturbation_figure([("original", digits.images, False), ("δ", delta, True), ("x + δ", xa, False)],
                                        titles, pixel_max=1.0, unit="δ"), key="rob_examples")
    labels = np.array(digits.labels)
    if target is None:
        outcome = f"{int((after.argmax(1) != labels).sum())} of {len(labels)} now misclassified"
    else:
        eligible = labels != target
        outcome = f"{int((after.argmax(1)[eligible] == target).sum())} of {int(eligible.sum())} now classified as {target}"
    st.caption(f"{outcome} · largest |δ| = {np.abs(delta).max():.3f} ≤ ε = {eps:.2f} · "
               f"all pixels in [{xa.min():.2f}, {xa.max():.2f}]")

    st.subheader("Attributions under attack")
    st.markdown("Where does the model look, before and after the attack? For each digit: the clean and the adversarial "
                "image, then **saliency** (|∂ logit / ∂ pixel|) and **Grad-CAM** (conv2) of each. Every map is "
                "attributed to the class the model **predicts for that image**, so after a successful attack the "
                "adversarial maps explain the wrong answer.")
    att = cached_attack_attributions(MODELS[name], name, run_store().mtime(name), digits.images, xa)
    for i, digit in enumerate(digits.names):
        before_txt = f"{att['pred_clean'][i]} ({100 * att['conf_clean'][i]:.0f}%)"
        after_txt = f"{att['pred_adv'][i]} ({100 * att['conf_adv'][i]:.0f}%)"
        st.markdown(f"**{digit}**: clean → predicted **{before_txt}** · adversarial → predicted **{after_txt}**")
        st.plotly_chart(attack_attribution_figure(
            digits.images[i], xa[i], {ATTRIBUTED[m]: (c[i], a[i]) for m, (c, a) in att["maps"].items()},
            {ATTRIBUTED[m]: v[i] for m, v in att["peaks"].items()}, (before_txt, after_txt),
            (int(att["pred_clean"][i]), int(att["pred_adv"][i]))), key=f"rob_attr_{i}", config={"displayModeBar": False})
    with st.expander("What am I seeing?"):
        st.markdown(
            "Each row is one attacked digit. The two maps of a method share one colour scale (its bar, after the pair, "
            "goes from 0 to the larger of the two maxima), so their colours compare directly: transparent is 0, dark "
            "red the top. Each map answers *why this prediction?* for its own image: the clean digit's map for the "
            "clean prediction, the adversarial image's map for the new one. Hover for the values. What to look for: "
            "the baseline's saliency moves **off the strokes** under attack, onto background pixels a human ignores "
            "(on the first 30 test digits, PGD-10 at ε = 0.2: 56% of it lies off the strokes for the clean digits, "
            "73% for the adversarial ones), while the **adversarially trained** model's saliency stays on the strokes "
            "(3% off for clean digits) and looks like the digit itself — a known side effect of adversarial "
            "training. Grad-CAM (conv2, 14×14 upsampled) is coarser: it shows which region now supports the "
            "predicted class.")

elif section == "Smallest ε":
    st.markdown("How large must ε be before the model's answer changes? For each digit and model: the **smallest** "
                "L∞ budget at which PGD makes it misclassify the digit, to 1/255, found by bisection (ε on the grid "
                "k/255: try the middle of what is left, keep the half where the answer changes; ~7 PGD runs instead "
                "of 128). Robustness as a number for *your* digit.")
    digits = pick_digits(data, 3, "flip")
    if digits is None:
        st.stop()
    names = list(MODELS)
    a, b, c, d = st.columns([5, 5, 4, 5])
    name_a = a.selectbox("Model", names, names.index("baseline") if "baseline" in names else 0, format_func=LABELS.get,
                         key="flip_a")
    name_b = b.selectbox("compared with", names, names.index(ADV_TRAINED) if ADV_TRAINED in names else len(names) - 1,
                         format_func=LABELS.get, key="flip_b")
    steps = c.slider("PGD steps", 2, 40, 10, key="flip_steps")
    top = d.select_slider("Search ε up to", [26, 51, 77, 102, 128, 153], 128, key="flip_max",
                          format_func=lambda k: f"{k / 255:.2f} ({k}/255)")
    max_eps = top / 255
    limit = R.flip_search_limit(max_eps)
    pair = [name_a] if name_b == name_a else [name_a, name_b]
    res = {n: cached_flip(MODELS[n], n, run_store().mtime(n), digits.images, tuple(digits.labels), steps, max_eps)
           for n in pair}
    rows = []
    for i, digit in enumerate(digits.names):
        row = {"digit": digit}
        for n in pair:
            r = res[n]
            row[f"{n}: smallest ε"] = R.describe_flip_eps(float(r["eps"][i]), limit)
            row[f"{n}: prediction there"] = f"{r['reference'][i]} → {r['pred'][i]} ({100 * r['conf'][i]:.0f}%)"
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="flip_table")
    for i, digit in enumerate(digits.names):
        if len(pair) == 2:
            st.markdown(f"**{digit}**: " + R.flip_verdict(LABELS[name_a], float(res[name_a]["eps"][i]), LABELS[name_b],
                                                          float(res[name_b]["eps"][i]), limit))
        images, titles, flipped = [digits.images[i]], [digit], [False]
        for n in pair:
            r = res[n]
            e = float(r["eps"][i])
            k = round(255 * (limit if np.isinf(e) else e))
            images.append(r["x_adv"][i])
            titles.append(f"{n} at {k}/255 → {r['pred'][i]} ({100 * r['conf'][i]:.0f}%)")
            flipped.append(bool(r["pred"][i] != r["reference"][i]))
        grid = digit_grid(np.stack(images), titles, flipped, cols=1 + len(pair), cell_px=170)
        grid.update_annotations(yshift=8)  # titles clear of the red frame (one row, so no row above to run into)
        st.plotly_chart(grid, key=f"flip_images_{i}", config={"displayModeBar": False})
    st.caption(f"PGD-{steps} with η = 2.5·ε/steps and one seeded random start; tolerance 1/255; " + " · ".join(
        f"{n}: {len(digits.names)} digit(s) in {res[n]['seconds']:.2f} s" for n in pair) + " (then cached).")
    with st.expander("What am I seeing?"):
        st.markdown(
            "Left: the digit. Then, per model, the adversarial image **at that model's smallest ε** and what the model "
            "predicts for it (red frame: the answer changed). A digit the model already gets wrong needs ε = 0; one "
            "PGD cannot flip within the search range is reported as *not flipped up to ε = …*, with PGD's best try. "
            "For **your digit** there is no true class: flipping means changing the model's own answer. "
            "PGD is a heuristic — it can miss an adversarial image that exists — so each ε is an **upper bound** of the "
            "true smallest budget: the model is at most this robust on this digit." + (
                f" The adversarially trained model was trained against PGD at ε = {adv[1]['config']['adv_epsilon']:g} "
                f"({round(255 * float(adv[1]['config']['adv_epsilon']))}/255); compare its numbers with the baseline's."
                if adv else ""))

elif section == "Robustness curves":
    st.markdown("Accuracy on test digits attacked at each budget ε. PGD (solid) is usually the stronger attack — with "
                "enough steps its line lies below FGSM's (dashed); the adversarially trained model holds on much longer.")
    runs = [r["name"] for r in run_store().list_runs() if "error" not in r]
    chosen = st.multiselect("Runs (shipped, and any you trained — e.g. with adversarial training on the Train page)",
                            runs, default=[n for n in MODELS if n in runs], key="rob_runs")
    curves, missing = {}, []
    for n in chosen:
        stored = stored_curves(n)
        if stored:
            curves[n] = stored
        else:
            missing.append(n)
    with st.expander("Compute live (other runs or settings)", expanded=bool(missing)):
        a, b = st.columns(2)
        n_digits = a.select_slider("Test digits", [100, 200, 500, 1000], 200, key="rob_live_n")
        pgd_steps = b.slider("PGD steps", 1, 50, 10, key="rob_live_steps")
        todo = missing or chosen
        if st.button(f"Compute for {', '.join(todo) or '—'}", key="rob_live_go", disabled=not todo):
            st.session_state.rob_live = (tuple(todo), n_digits, pgd_steps)
        live = st.session_state.get("rob_live")
        if live and set(live[0]) <= set(runs):
            for n in live[0]:
                if n in chosen:
                    curves[n] = live_curves(n, run_store().mtime(n), live[1], live[2])
    palette = iter(["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"] * 5)
    colors = {n: COLORS.get(n) or next(palette) for n in curves}
    if curves:
        st.plotly_chart(robustness_figure(curves, colors), key="rob_curves")
        st.caption(" · ".join(f"{n}: first {c['n']:,} test digits, PGD-{c['pgd_steps']}" for n, c in curves.items()))
    still = [n for n in chosen if n not in curves]
    if still:
        st.info(f"No curve yet for {', '.join(still)}: press Compute above, or run "
                f"`python -m cnn_core robustness {still[0]}` to store one with the run.")

elif section == "Universal perturbation":
    st.markdown("One perturbation δ for **every** digit: ascend the average loss of a batch of training digits with "
                "respect to δ, keeping ‖δ‖∞ ≤ ε, then add the same δ to held-out test digits.")
    name = model_radio("uni_model")
    a, b, c = st.columns(3)
    with a:
        eps = eps_slider("ε", 0.3, "uni_eps")
    steps = b.slider("Steps (one batch of 256 training digits each)", 5, 200, 30, key="uni_steps")
    target = c.selectbox("Target", ["none (untargeted)", *range(10)], key="uni_target")
    target = None if isinstance(target, str) else int(target)

    @st.cache_data(max_entries=32, show_spinner="Optimizing one δ for all digits…")
    def cached_universal(name: str, eps: float, steps: int, target: int | None):
        model = MODELS[name]
        delta = R.universal_perturbation(model, to_float(data.train_images[:5000]), data.train_labels[:5000], eps,
                                         steps, target=target)
        x, y = to_float(data.test_images[:1000]), data.test_labels[:1000]
        rate = R.fooling_rate(model, x, y, delta, target)
        return delta[0, 0].numpy(), {k: v for k, v in rate.items() if k != "predicted"}, rate["predicted"][:8].numpy()

    delta, rate, predicted = cached_universal(name, eps, steps, target)
    m1, m2, m3 = st.columns(3)
    m1.metric("Fooling rate (1,000 held-out test digits)", percent(rate["fooling_rate"]),
              help="Of the digits classified correctly without δ: " +
                   ("those whose class changes" if target is None else f"those (not already {target}) that become {target}"))
    m2.metric("Accuracy without δ", percent(rate["clean_accuracy"]))
    m3.metric("Accuracy with δ", percent(rate["accuracy"]))
    x = data.test_images[:8].numpy() / 255.0
    titles = [f"true {t} → {p}" for t, p in zip(data.test_labels[:8].tolist(), predicted, strict=True)]
    st.plotly_chart(perturbation_figure([("δ (the same)", np.repeat(delta[None], 8, 0), True),
                                         ("x + δ", np.clip(x + delta, 0, 1), False)], titles, pixel_max=1.0, unit="δ"),
                    key="uni_examples")
    st.caption("Optimized on the first 5,000 training digits; measured on the first 1,000 test digits (never seen by the "
               "optimization). On MNIST one δ needs a large budget: around ε = 0.3 it fools a third or more of the digits "
               "for the baseline, at ε = 0.2 only a few percent — per-image attacks need far less.")

else:
    st.markdown("**Adversarial training** mixes PGD examples into every training batch (Train page, or "
                "`python -m cnn_core train --adversarial pgd --adv-epsilon 0.2`). Accuracy (%) on test digits attacked by "
                "FGSM and PGD at each budget ε:")
    rows, curves = [], {}
    for n in MODELS:
        c = stored_curves(n)
        if c is None:
            continue
        if not {0.0, *R.EPSILONS} <= set(c["epsilons"]):
            st.warning(f"`{n}/robustness.json` lacks some of ε = 0, {', '.join(map(str, R.EPSILONS))}: rerun "
                       f"`python -m cnn_core robustness {n}`.")
            continue
        curves[n] = c
        acc = dict(zip(c["epsilons"], zip(c["fgsm"], c["pgd"], strict=True), strict=True))
        row = {"model": LABELS[n], "clean": 100 * acc[0.0][0]}
        row.update({f"FGSM {e:g}": 100 * acc[e][0] for e in R.EPSILONS})
        row.update({f"PGD {e:g}": 100 * acc[e][1] for e in R.EPSILONS})
        rows.append(row)
    if rows:
        table = pd.DataFrame(rows)
        st.dataframe(table, hide_index=True, column_config={
            k: st.column_config.NumberColumn(format="%.1f") for k in table.columns if k != "model"})
        st.caption(" · ".join(f"{LABELS[n]}: first {c['n']:,} test digits, PGD-{c['pgd_steps']}" for n, c in curves.items()))
        pgd = {n: dict(zip(c["epsilons"], c["pgd"], strict=True)) for n, c in curves.items()}
        for n in curves:
            st.markdown(f"- **{LABELS[n]}**: {meaning(n, pgd)}")
        st.plotly_chart(robustness_figure(curves, COLORS), key="def_curves")
    else:
        st.info("No stored robustness curves: run `python -m cnn_core robustness checkpoints/baseline` (and batchnorm, "
                "adv-trained).")

    st.subheader("An input defence, and an attacker who knows it")
    a, b, c = st.columns(3)
    name = a.radio("Model", list(MODELS), format_func=LABELS.get, key="def_model")
    defence_name = b.selectbox("Defence", list(R.DEFENCES), key="def_kind")
    with c:
        eps = eps_slider("ε", 0.2, "def_eps")

    @st.cache_data(max_entries=32, show_spinner="Attacking 500 digits with and without the defence…")
    def cached_defence(name: str, defence_name: str, eps: float) -> dict:
        model, defence = MODELS[name], R.DEFENCES[defence_name]
        x, y = to_float(data.test_images[:500]), data.test_labels[:500]
        xa = R.attack(model, x, y, "pgd", eps, steps=10)  # made without knowing the defence: used with and without it
        through = R.robust_correct(R.ThroughDefence(model, defence), x, y, "pgd", eps, steps=10)
        with torch.no_grad():
            right = {k: model(v).argmax(1) == y for k, v in
                     {"clean": x, "clean + defence": defence(x), "PGD": xa, "PGD, defence on": defence(xa)}.items()}
        right["adaptive attacker"] = right["PGD, defence on"] & through  # the worse of both attacks, per digit
        return {k: v.float().mean().item() for k, v in right.items()}

    res = cached_defence(name, defence_name, eps)
    st.markdown("On the first **500** test digits (PGD-10 with random start):")
    for col, (label, v) in zip(st.columns(len(res)), res.items(), strict=True):
        col.metric(label, percent(v))
    on, adaptive, plain = res["PGD, defence on"], res["adaptive attacker"], res["PGD"]
    if on - plain < 0.02:
        verdict = f"the defence does not help here ({100 * (on - plain):+.1f} points under attack)."
    elif adaptive <= plain + 0.1:
        verdict = "the defence only worked against an attacker who did not know about it."
    elif adaptive < on - 0.03:
        verdict = "the adaptive attack takes back part of what the defence gained."
    elif R.DEFENCES[defence_name] is R.bit_depth:
        verdict = ("the threshold holds at this ε: MNIST pixels are nearly all 0 or 1, and a small change cannot push "
                   "them across 0.5. Raise ε to see where it stops holding; on natural images, whose pixels are not near "
                   "0 or 1, such input transforms are broken by adaptive attacks (Athalye et al., 2018).")
    else:
        verdict = ("this adaptive attack did not break it at this ε; stronger ones (more steps, restarts) should be tried "
                   "before trusting it.")
    st.markdown(f"With **{defence_name}** in front of the model, PGD that ignores it leaves **{percent(on)}** accuracy "
                f"(without the defence: {percent(plain)}). An *adaptive* attacker also runs PGD through the defence, "
                f"treating it as the identity on the way back (BPDA), and keeps whichever attack works on each digit: "
                f"**{percent(adaptive)}** — {verdict}")
    st.caption("A defence has to be judged against the attack designed for it.")
