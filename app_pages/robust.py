"""Robustness lab: FGSM/PGD with a budget ε, robustness curves, a universal perturbation, defences
(adversarial training, input transforms) — attack, defend, re-attack in one place. Pixels in [0, 1]."""

import time

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app_pages import live
from app_pages.chooser import LABELS, choose_models
from app_pages.common import SCENE, chart, explain, explaining
from app_pages.digits import pick_digits
from app_pages.loaders import require_data, run_store, saved_model
from cnn_core import robust as R
from cnn_core import views as V
from cnn_core.attack_plots import attack_attribution_figure, perturbation_figure, robustness_figure, stacked_rows
from cnn_core.data import to_float
from cnn_core.plots import digit_grid, digit_strip, run_colors
from cnn_core.robust_attacks import ATTACKS, AttackSettings
from cnn_core.store import ROBUSTNESS_FILE, SHIPPED_RUNS

st.title("Robustness lab")
data = require_data()
chosen = choose_models("rob_model", st.columns([3, 2])[0])
section = st.segmented_control("Show", ["Attacks", "Smallest ε", "Robustness curves", "Universal perturbation", "Defences"],
                               default="Attacks", key="rob_section", bind=SCENE) or "Attacks"
st.caption("Pixels are in [0, 1] here; a budget ε allows every pixel to move by at most ε (L∞), e.g. ε = 0.1 is 26 of "
           "255 grey levels. Adversarial images are clipped to [0, 1]. Model weights never change.")


def eps_slider(label: str, default: float, key: str) -> float:
    eps = st.slider(label, 0.0, 0.5, default, 0.01, key=key, bind=SCENE, format="%.2f")
    st.caption(f"ε = {eps:.2f} = {255 * eps:.0f}/255 grey levels")
    return eps


def percent(v: float) -> str:
    return f"{100 * v:.1f}%"


@st.cache_data(max_entries=32, show_spinner="Attacking…")
def cached_attack(model_key: str, _model, images: np.ndarray, labels: tuple, method: str, eps: float, steps: int,
                  step_size: float | None, random_start: bool, target: int | None):
    """The attacked images and the predictions before and after; ``model_key`` names the weights of ``_model``
    (app_pages.chooser): every cached function here takes the model it uses, never looks it up."""
    x, y = torch.from_numpy(images)[:, None], torch.tensor(labels)
    xa = R.attack(_model, x, y, method, eps, AttackSettings(steps, step_size, random_start, target))
    with torch.no_grad():
        before, after = _model(x).softmax(1), _model(xa).softmax(1)
    return xa[:, 0].numpy(), before.numpy(), after.numpy()


ATTRIBUTED = {"Saliency": "saliency", "Grad-CAM (conv2)": "Grad-CAM (conv2)"}  # method → short title


@st.cache_data(max_entries=32, show_spinner="Attributing the clean and the adversarial digits…")
def cached_attack_attributions(model_key: str, _model, images: np.ndarray, adv_images: np.ndarray) -> dict:
    """``robust.attributions_under_attack`` as numpy."""
    out = R.attributions_under_attack(_model, torch.from_numpy(images)[:, None], torch.from_numpy(adv_images)[:, None],
                                      tuple(ATTRIBUTED))
    return {"maps": {m: (c.numpy(), a.numpy()) for m, (c, a) in out["maps"].items()},
            "peaks": {m: v.numpy() for m, v in out["peaks"].items()},
            **{k: out[k].numpy() for k in ("pred_clean", "conf_clean", "pred_adv", "conf_adv")}}


@st.cache_data(max_entries=32, show_spinner="Bisecting ε with PGD…")
def cached_flip(model_key: str, _model, images: np.ndarray, labels: tuple, steps: int, max_eps: float) -> dict:
    """``robust.smallest_flipping_eps`` for one model, the predictions at ε*, and the seconds it took."""
    x = torch.from_numpy(images)[:, None]
    y = R.reference_labels(_model, x, labels)
    t0 = time.perf_counter()
    eps, x_adv = R.smallest_flipping_eps(_model, x, y, max_eps=max_eps, steps=steps)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        conf, pred = _model(x_adv).softmax(1).max(1)
    return {"eps": eps.numpy(), "x_adv": x_adv[:, 0].numpy(), "pred": pred.numpy(), "conf": conf.numpy(),
            "reference": y.numpy(), "seconds": seconds}


@st.cache_data(max_entries=16, show_spinner="Attacking the test digits at 7 budgets…")
def live_curves(model_key: str, _model, _data, n: int, steps: int) -> R.RobustnessCurves:
    """Robustness curves on the first ``n`` test digits of ``_data`` (MNIST: the same for the server's life)."""
    return R.robustness_curves(_model, to_float(_data.test_images[:n]), _data.test_labels[:n], steps=steps)


if section == "Attacks":
    st.markdown(" ".join(a.formula for a in ATTACKS.values()) +
                " **Targeted**: step *down* the loss of the target class instead (DeepFool: towards its boundary).")
    digits = pick_digits(data, 6, "rob")
    if digits is None or None in digits.labels:
        if digits is not None:
            st.info("These attacks need the true class, so they use test digits: pick random, a class or indices.")
        st.stop()
    a, b, c = st.columns(3)
    with a:
        method = st.radio("Attack", list(ATTACKS), format_func=lambda m: ATTACKS[m].label, horizontal=True,
                          key="rob_method", bind=SCENE)
        eps = eps_slider("ε", 0.2, "rob_eps")  # at 0.1 FGSM flipped none of the 6 digits of the baseline
    uses = ATTACKS[method].uses  # the controls this attack reads; the others are shown disabled
    with b:
        steps = st.slider("Steps", 1, 100, 20, key="rob_steps", bind=SCENE, disabled="steps" not in uses)
        auto = st.toggle("η = 2.5·ε / steps", True, key="rob_auto_eta", bind=SCENE, disabled="step_size" not in uses)
        eta = None if auto else st.slider("η (step size)", 0.001, 0.1, 0.01, 0.001, format="%.3f", key="rob_eta", bind=SCENE,
                                          disabled="step_size" not in uses)
        random_start = st.toggle("Random start", True, key="rob_random", bind=SCENE, disabled="random_start" not in uses)
    with c:
        targeted = st.toggle("Targeted", key="rob_targeted", bind=SCENE, disabled="target" not in uses)
        target = st.selectbox("Target class", list(range(10)), key="rob_target", bind=SCENE) if targeted else None
    attacked = {}
    for c in chosen:  # one block per model, stacked: six digits need the page's width
        if len(chosen) > 1:
            st.markdown(f"#### {c.slot.upper()}: {c.label}")
        xa, before, after = cached_attack(c.key, c.model, digits.images, tuple(digits.labels), method, eps, steps, eta,
                                          random_start, target)
        attacked[c.slot] = xa
        delta = xa - digits.images
        titles = [f"true {t}<br>{p} → {q}, {100 * q_conf:.0f}%" for t, p, q, q_conf in
                  zip(digits.labels, before.argmax(1), after.argmax(1), after.max(1), strict=True)]
        chart(perturbation_figure([("original", digits.images, False), ("δ", delta, True), ("x + δ", xa, False)],
                                  titles, pixel_max=1.0, unit="δ"), key=f"rob_examples_{c.slot}")
        hits, of = R.attack_outcome(torch.tensor(digits.labels), torch.from_numpy(after.argmax(1)), target)
        outcome = f"{hits} of {of} now " + ("misclassified" if target is None else f"classified as {target}")
        st.caption(f"{outcome} · largest |δ| = {np.abs(delta).max():.3f} ≤ ε = {eps:.2f} · "
                   f"all pixels in [{xa.min():.2f}, {xa.max():.2f}]")

    st.subheader("Attributions under attack")
    st.markdown("Where does the model look, before and after the attack? For each digit: the clean and the adversarial "
                "image, then **saliency** (|∂ logit / ∂ pixel|) and **Grad-CAM** (conv2) of each. Every map is "
                "attributed to the class the model **predicts for that image**, so after a successful attack the "
                "adversarial maps explain the wrong answer.")
    for c in chosen:
        if len(chosen) > 1:
            st.markdown(f"#### {c.slot.upper()}: {c.label}")
        xa = attacked[c.slot]
        att = cached_attack_attributions(c.key, c.model, digits.images, xa)
        rows, titles = [], []
        for i, digit in enumerate(digits.names):
            before_txt = f"{att['pred_clean'][i]} ({100 * att['conf_clean'][i]:.0f}%)"
            after_txt = f"{att['pred_adv'][i]} ({100 * att['conf_adv'][i]:.0f}%)"
            titles.append(f"<b>{digit}</b>: clean → predicted <b>{before_txt}</b> · adversarial → predicted "
                          f"<b>{after_txt}</b>")
            rows.append(attack_attribution_figure(
                digits.images[i], xa[i], {ATTRIBUTED[m]: (clean[i], adv[i]) for m, (clean, adv) in att["maps"].items()},
                {ATTRIBUTED[m]: v[i] for m, v in att["peaks"].items()}, (before_txt, after_txt),
                (int(att["pred_clean"][i]), int(att["pred_adv"][i]))))
        chart(stacked_rows(rows, titles), key=f"rob_attr_{c.slot}")
    with explaining():
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
    c, d = st.columns(2)
    steps = c.slider("PGD steps", 2, 40, 10, key="flip_steps", bind=SCENE)
    top = d.select_slider("Search ε up to", [26, 51, 77, 102, 128, 153], 128, key="flip_max", bind=SCENE,
                          format_func=lambda k: f"{k / 255:.2f} ({k}/255)")
    max_eps = top / 255
    limit = R.flip_search_limit(max_eps)
    pair = chosen if len(chosen) == 1 or chosen[0].key != chosen[1].key else chosen[:1]
    res = {m.slot: cached_flip(m.key, m.model, digits.images, tuple(digits.labels), steps, max_eps) for m in pair}
    rows = []
    for i, digit in enumerate(digits.names):
        row = {"digit": digit}
        for m in pair:
            r = res[m.slot]
            row[f"{m.name}: smallest ε"] = R.describe_flip_eps(float(r["eps"][i]), limit)
            row[f"{m.name}: prediction there"] = f"{r['reference'][i]} → {r['pred'][i]} ({100 * r['conf'][i]:.0f}%)"
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="flip_table")
    for i, digit in enumerate(digits.names):
        if len(pair) == 2:
            st.markdown(f"**{digit}**: " + R.flip_verdict(pair[0].label, float(res["a"]["eps"][i]), pair[1].label,
                                                          float(res["b"]["eps"][i]), limit))
        images, titles, flipped = [digits.images[i]], [digit], [False]
        for m in pair:
            r = res[m.slot]
            e = float(r["eps"][i])
            k = round(255 * (limit if np.isinf(e) else e))
            images.append(r["x_adv"][i])
            titles.append(f"{m.name} at {k}/255 → {r['pred'][i]} ({100 * r['conf'][i]:.0f}%)")
            flipped.append(bool(r["pred"][i] != r["reference"][i]))
        grid = digit_grid(np.stack(images), titles, flipped, cols=1 + len(pair), cell_px=170)
        grid.update_annotations(yshift=8)  # titles clear of the red frame (one row, so no row above to run into)
        chart(grid, key=f"flip_images_{i}")
    st.caption(f"PGD-{steps} with η = 2.5·ε/steps and one seeded random start; tolerance 1/255; " + " · ".join(
        f"{m.name}: {len(digits.names)} digit(s) in {res[m.slot]['seconds']:.2f} s" for m in pair) + " (then cached).")
    with explaining():
        st.markdown(
            "Left: the digit. Then, per model, the adversarial image **at that model's smallest ε** and what the model "
            "predicts for it (red frame: the answer changed). A digit the model already gets wrong needs ε = 0; one "
            "PGD cannot flip within the search range is reported as *not flipped up to ε = …*, with PGD's best try. "
            "For **your digit** there is no true class: flipping means changing the model's own answer. "
            "PGD is a heuristic — it can miss an adversarial image that exists — so each ε is an **upper bound** of the "
            "true smallest budget: the model is at most this robust on this digit. Compare the baseline with the "
            "**adversarially trained** model (choose it as model B above): it was trained against PGD at ε = 0.2 "
            "(51/255) and needs two to three times the baseline's budget.")

elif section == "Robustness curves":
    st.markdown("Accuracy on test digits attacked at each budget ε, one line style per attack. PGD (solid) is usually "
                "the strongest — with enough steps its line lies lowest; the adversarially trained model holds on much "
                "longer.")
    runs = [r["name"] for r in run_store().list_runs() if "error" not in r]
    picked = st.multiselect("Runs (shipped, and any you trained — e.g. with adversarial training on the Train page)",
                            runs, default=[n for n in dict.fromkeys([*SHIPPED_RUNS, *(c.name for c in chosen)]) if n in runs],
                            key="rob_runs", bind=SCENE)
    curves, missing = {}, []
    for n in picked:
        stored = V.stored_curves(run_store(), n)
        if stored:
            curves[n] = stored
        else:
            missing.append(n)
    with st.expander("Compute live (other runs or settings)", expanded=bool(missing)):
        a, b = st.columns(2)
        n_digits = a.select_slider("Test digits", [100, 200, 500, 1000], 200, key="rob_live_n", bind=SCENE)
        steps = b.slider("Steps (iterative attacks)", 1, 50, 10, key="rob_live_steps", bind=SCENE)
        todo = missing or picked
        if st.button(f"Compute for {', '.join(todo) or '—'}", key="rob_live_go", disabled=not todo):
            st.session_state.rob_live = (tuple(todo), n_digits, steps)
        live = st.session_state.get("rob_live")
        if live and set(live[0]) <= set(runs):
            for n in live[0]:
                if n in picked:
                    mtime = run_store().mtime(n)
                    curves[n] = live_curves(f"{n}@{mtime}", saved_model(n, mtime)[0], data, live[1], live[2])
    if curves:
        chart(robustness_figure(curves, run_colors(list(curves))), key="rob_curves")
        st.caption(" · ".join(f"{n}: first {c.n:,} test digits, PGD-{c.steps}" for n, c in curves.items()))
    still = [n for n in picked if n not in curves]
    if still:
        st.info(f"No curve yet for {', '.join(still)}: press Compute above, or run "
                f"`python -m cnn_core robustness {still[0]}` to store one with the run.")
    explain("One line per attack and run: accuracy on the same test digits, each attacked with a budget ε (x axis; "
            "0 = clean digits). PGD (solid) searches harder than FGSM's single step (dashed), so it is the honest "
            "measure of robustness. DeepFool (dotted) looks for the *smallest* change that flips a digit, in L∞ steps "
            "of a model made linear; cut to a budget, it fools a digit only where that smallest change fits, so its "
            "line shows how far each digit is from a boundary, not the worst case. A plain network falls to almost nothing by ε = 0.2, while the digits stay "
            "readable to a person; adversarial training holds up to the budget it was trained at.")

elif section == "Universal perturbation":
    st.markdown("One perturbation δ for **every** digit: ascend the average loss of a batch of training digits with "
                "respect to δ, keeping ‖δ‖∞ ≤ ε, then add the same δ to held-out test digits.")
    model = chosen[0]
    if len(chosen) > 1:
        st.caption(f"For model A, {model.label} (one δ takes seconds to optimize: choose the model in slot A).")
    a, b, c = st.columns(3)
    with a:
        eps = eps_slider("ε", 0.3, "uni_eps")
    steps = b.slider("Steps (one batch of 256 training digits each)", 5, 200, V.UNIVERSAL_STEPS, key="uni_steps", bind=SCENE)
    target = c.selectbox("Target", ["none (untargeted)", *range(10)], key="uni_target", bind=SCENE)
    target = None if isinstance(target, str) else int(target)

    def draw(partial):
        k, d = partial
        st.progress(k / steps, text=f"Optimizing one δ for all digits: step {k} of {steps}")
        st.image(digit_strip(((d / max(eps, 1e-9) + 1) / 2)[None], scale=4, pixel_max=1.0), caption="δ so far (grey 0)")

    slot = st.empty()  # the partial δ, then the result, in one place
    stored = (V.stored_universal(run_store(), model.saved_run, eps) if model.saved_run and target is None
              and steps == V.UNIVERSAL_STEPS else None)  # computed ahead for every ε (python -m cnn_core views)
    view = stored or live.compute([live.Job(("universal", model.key, eps, steps, target), lambda p: V.universal_view(
        model.model, data, eps, steps, target, progress=lambda k, d: p((k, d[0, 0].numpy()))), draw)], [slot])[0]
    delta, rate, predicted = view.delta, view.rate, view.predicted
    with slot.container():
        m1, m2, m3 = st.columns(3)
        m1.metric("Fooling rate (1,000 held-out test digits)", percent(rate["fooling_rate"]),
                  help="Of the digits classified correctly without δ: " +
                       ("those whose class changes" if target is None else f"those (not already {target}) that become {target}"))
        m2.metric("Accuracy without δ", percent(rate["clean_accuracy"]))
        m3.metric("Accuracy with δ", percent(rate["accuracy"]))
        x = data.test_images[:8].numpy() / 255.0
        titles = [f"true {t} → {p}" for t, p in zip(data.test_labels[:8].tolist(), predicted, strict=True)]
        chart(perturbation_figure([("δ (the same)", np.repeat(delta[None], 8, 0), True),
                                   ("x + δ", np.clip(x + delta, 0, 1), False)], titles, pixel_max=1.0, unit="δ"),
              key="uni_examples")
    explain("Top row: the one perturbation δ (blue −, red +), the same for every digit; below, eight test digits "
            "with δ added and what the model now says. Optimized on the first 5,000 training digits; measured on the "
            "first 1,000 test digits (never seen by the optimization). On MNIST one δ needs a large budget: around "
            "ε = 0.3 it fools a third or more of the digits for the baseline, at ε = 0.2 only a few percent — "
            "per-image attacks need far less.")

else:
    st.markdown("**Adversarial training** mixes PGD examples into every training batch (Train page, or "
                "`python -m cnn_core train --adversarial pgd --adv-epsilon 0.2`). Accuracy (%) on test digits attacked at "
                "each budget ε, per attack:")
    curves, configs = {}, {}
    store = run_store()  # only the runs shown are read (the ε slider below reruns this page)
    for n in dict.fromkeys([*SHIPPED_RUNS, *(c.name for c in chosen)]):
        c = V.stored_curves(store, n) if store.exists(n) else None
        if c is None:
            continue
        if R.missing_epsilons(c):
            st.warning(f"`{n}/{ROBUSTNESS_FILE}` lacks ε = {', '.join(f'{e:g}' for e in R.missing_epsilons(c))}: rerun "
                       f"`python -m cnn_core robustness {n}`.")
            continue
        curves[n], configs[n] = c, store.load_info(n)["config"]
    if curves:
        table = pd.DataFrame(R.robustness_rows({LABELS.get(n, n): c for n, c in curves.items()}))
        st.dataframe(table, hide_index=True, column_config={
            k: st.column_config.NumberColumn(format="%.1f") for k in table.columns if k not in ("model", "attack")})
        st.caption(" · ".join(f"{LABELS.get(n, n)}: first {c.n:,} test digits, PGD-{c.steps}" for n, c in curves.items()))
        pgd = {n: c.at("pgd") for n, c in curves.items()}
        for n in curves:
            st.markdown(f"- **{LABELS.get(n, n)}**: {R.robustness_sentence(configs[n], pgd[n], pgd.get('baseline'))}")
        chart(robustness_figure(curves, run_colors(list(curves))), key="def_curves")
    else:
        st.info("No stored robustness curves: run `python -m cnn_core robustness checkpoints/baseline` (and batchnorm, "
                "adv-trained).")

    st.subheader("An input defence, and an attacker who knows it")
    a, b, c = st.columns(3)
    slot = a.radio("Model", [m.slot for m in chosen], format_func=lambda s: f"{s.upper()}: " + next(
        m.label for m in chosen if m.slot == s), key="def_model", bind=SCENE)
    model = next(m for m in chosen if m.slot == slot)
    defence_name = b.selectbox("Defence", list(R.DEFENCES), key="def_kind", bind=SCENE)
    with c:
        eps = eps_slider("ε", 0.2, "def_eps")

    def draw_phase(partial):
        done, what = partial
        st.progress(done / 2, text=f"Attacking {V.DEFENCE_DIGITS} digits: {what} ({done + 1} of 2)")

    def defend(progress) -> dict:
        phases = iter(range(2))
        return V.defence_view(model.model, data, defence_name, eps, progress=lambda what: progress((next(phases), what)))

    slot = st.empty()  # the attacks' progress, then the result, in one place
    res = (model.saved_run and V.stored_defence(run_store(), model.saved_run, defence_name, eps)) or \
        live.compute([live.Job(("defence", model.key, defence_name, eps), defend, draw_phase)], [slot])[0]
    with slot.container():
        st.markdown(f"On the first **{V.DEFENCE_DIGITS}** test digits (PGD-{V.DEFENCE_STEPS} with random start):")
        for col, (label, v) in zip(st.columns(len(res)), res.items(), strict=True):
            col.metric(label, percent(v))
        on, adaptive, plain = res["PGD, defence on"], res["adaptive attacker"], res["PGD"]
        verdict = R.defence_verdict(res, R.DEFENCES[defence_name] is R.bit_depth)
        st.markdown(f"With **{defence_name}** in front of the model, PGD that ignores it leaves **{percent(on)}** accuracy "
                    f"(without the defence: {percent(plain)}). An *adaptive* attacker also runs PGD through the defence, "
                    f"treating it as the identity on the way back (BPDA), and keeps whichever attack works on each digit: "
                    f"**{percent(adaptive)}** — {verdict}")
    explain("Five accuracies on the same 500 test digits: clean, clean through the defence, PGD made without "
            "knowing the defence (without and with it in front), and the adaptive attacker, who attacks through the "
            "defence and keeps, per digit, whichever attack works. A defence has to be judged against the attack "
            "designed for it: the last number is the one to trust.")
