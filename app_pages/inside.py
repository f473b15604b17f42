"""Inside the network: architecture, filters, activations, occlusion, attributions (assignment part 2)."""

import numpy as np
import streamlit as st
import torch

from app_pages import live
from app_pages.chooser import choose_models, side_by_side
from app_pages.common import SCENE, chart, explain, layer_dataframe
from app_pages.digits import pick_digits
from app_pages.loaders import require_data, run_store
from cnn_core.inside import (
    ATTRIBUTIONS,
    FILLS,
    INTERESTS,
    attribution,
    class_of_interest,
    feature_maps,
    filters_over_time,
    occlusion,
    relative_change,
)
from cnn_core.model import architecture_dot
from cnn_core.plots import attribution_figure, feature_maps_figure, filters_figure, occlusion_figure, occlusion_strip_figure
from cnn_core.store import SHIPPED_RUNS, RunStore
from cnn_core.training import EARLY_SNAPSHOT_STEPS, snapshot_label

st.title("Inside the network")
data = require_data()
chosen = choose_models("inside_model", st.columns([3, 2])[0])
section = st.segmented_control("Show", ["Architecture", "Filters", "Activations", "Occlusion", "Attributions"],
                               default="Occlusion", key="inside_section", bind=SCENE) or "Occlusion"


NO_SNAPSHOTS = ("The shipped models have no filters over training time: their weights are the verified reference every "
                "stored result rests on, and they were trained by an earlier engine (float32, per-epoch validation), so "
                "retraining them now would not reproduce their trajectory.")
# A digit's cell (px) in the occlusion (3 across) and attribution (up to 4 across) rows, by models shown: one model has
# the page's width; two share it, where wider cells would only add blank rows at 1280 px.
OCCLUSION_PX, ATTRIBUTION_PX = {1: 240, 2: 130}, {1: 200, 2: 120}


@st.cache_data(max_entries=16, show_spinner=False)
def filter_history(root: str, name: str, mtime: float) -> dict | None:
    """A saved run's filter snapshots; ``mtime`` keys the cache to the saved files."""
    return RunStore(root).load_filters(name)


def filters_over_training(shown: list[str]) -> None:
    """The time slider over a saved run's filter snapshots, below the filters of the ``shown`` models: model A's own
    when it kept them, else the newest run that did (any run trained since snapshots exist)."""
    st.subheader("Filters over training time")
    if any(n in SHIPPED_RUNS for n in shown):
        st.caption(NO_SNAPSHOTS)
    store = run_store()
    runs = sorted((r for r in store.list_runs() if "error" not in r and store.has_filters(r["name"])),
                  key=lambda r: r.get("created", ""), reverse=True)  # the run just trained first
    if not runs:
        st.info("No saved run has filter snapshots yet: every run trained on the **Train** page (or with "
                "`python -m cnn_core train`) keeps them. Train one, then come back.")
        return
    a, b = st.columns([2, 3])
    names = [r["name"] for r in runs]
    name = a.selectbox("Run with filter snapshots", names, index=names.index(shown[0]) if shown[0] in names else 0,
                       key=f"filters_time_run_{shown[0]}", bind=SCENE)
    history = filter_history(str(store.root), name, store.mtime(name))
    snapshots, per_epoch = history["snapshots"], history["steps_per_epoch"]
    step = b.select_slider("Training time", list(snapshots), value=0, key=f"filters_time_step_{name}", bind=SCENE,
                           format_func=lambda s: snapshot_label(s, per_epoch))
    label = snapshot_label(step, per_epoch)
    c, d, _ = st.columns([2, 1, 2])
    change = c.radio("Show", ["weights", "change since step 0"], horizontal=True, key="filters_time_show", bind=SCENE) != "weights"
    k = d.number_input("conv2 filter", 0, 31, 0, key="time_conv2_filter", bind=SCENE)
    conv1, zmax1 = filters_over_time(snapshots, "conv1.weight", change)
    conv2, zmax2 = filters_over_time(snapshots, "conv2.weight", change)
    what, bar = ("change of ", "W − W₀") if change else ("", "weight")
    left, right = st.columns(2)
    with left:
        chart(filters_figure(conv1[step], f"{what}conv1 at {label}", zmax=zmax1, width=450, label=bar),
              key="time_f1")
    with right:
        chart(filters_figure(conv2[step][k], f"{what}conv2 filter {k} at {label}", zmax=zmax2, width=450,
                             label=bar, what="input channel"), key="time_f2")
    shown = "W − W₀, what training has added" if change else "the weights"
    st.caption(f"Left: conv1's 32 filters; right: conv2 filter {k}'s 32 kernels, one per conv1 map it reads. One colour "
               f"scale per layer for all {len(snapshots)} snapshots of {shown} (conv1 ±{zmax1:.2f}, conv2 ±{zmax2:.2f}), "
               "so a weight that changes changes colour. Since step 0, conv1's weights have moved by "
               f"{100 * relative_change(snapshots, step, 'conv1.weight'):.0f}% of their initial size and conv2's by "
               f"{100 * relative_change(snapshots, step, 'conv2.weight'):.0f}% (‖W − W₀‖ / ‖W₀‖). Snapshots: step 0, "
               f"steps {', '.join(map(str, EARLY_SNAPSHOT_STEPS))} (those within the run) and every epoch end.")


if section == "Architecture":
    diagram, tables = st.columns([1, 2.5])
    diagram.graphviz_chart(architecture_dot(chosen[0].model))  # top to bottom at its own size: 16-pt text, unscaled
    with tables:
        side_by_side(chosen, lambda c: layer_dataframe(c.model), stacked=True)
    explain("The diagram is model A's data flow; the tables list every layer with its input and output shape. Output "
            "size of a convolution or pooling window: (W − K + 2P) / S + 1. 'neurons' counts conv and FC outputs "
            "(31,870); the last column also counts the 784 input pixels and the pooling outputs (40,494).")

elif section == "Filters":
    conv1 = {c.slot: c.model.conv1.weight.detach()[:, 0].numpy() for c in chosen}
    shared = max(float(np.abs(w).max()) for w in conv1.values())
    side_by_side(chosen, lambda c: chart(
        filters_figure(conv1[c.slot], "conv1: 32 filters, 3×3 (one shared scale)", zmax=shared), key=f"f1_{c.slot}"))
    conv2 = {c.slot: c.model.conv2.weight.detach().numpy() for c in chosen}  # filter × input channel × 3 × 3
    shared2 = max(float(np.abs(w).max()) for w in conv2.values())
    if st.toggle("conv2: overview of all 32×32 kernels", key="conv2_overview", bind=SCENE):
        side_by_side(chosen, lambda c: chart(filters_figure(
            conv2[c.slot].reshape(-1, 3, 3), "conv2: row = filter, column = input channel", cols=32, zmax=shared2,
            what="filter·32 + channel"),
            key=f"f2all_{c.slot}"))
    else:
        k = st.slider("conv2 filter", 0, 31, 0, key="conv2_filter", bind=SCENE)
        side_by_side(chosen, lambda c: chart(filters_figure(
            conv2[c.slot][k], f"conv2 filter {k}: its 32 input-channel kernels", zmax=shared2, what="input channel"),
            key=f"f2_{c.slot}"))
    if len({c.model.batchnorm for c in chosen}) > 1:
        st.caption("The BatchNorm model's weights are smaller: BatchNorm divides out the scale of each filter's output, "
                   "so weight decay shrinks the weights without changing what the network computes.")
    explain("Each conv1 filter is a 3×3 pattern the network slides over the digit: red weights reward ink, blue "
            "weights punish it, so many look like **edge and stroke detectors** in some direction, or **blob** "
            "detectors. conv2 filters look at 32 conv1 maps at once, so a single slice of them is much harder to "
            "read — their meaning lives in the combination.")
    filters_over_training([c.name for c in chosen])

elif section == "Activations":
    digits = pick_digits(data, 1, "act") or st.stop()
    a, b, c = st.columns(3)
    layer = a.radio("Layer", ["conv1", "conv2"], horizontal=True, key="act_layer", bind=SCENE)
    stage = b.radio("Stage", ["pre-ReLU", "post-ReLU", "post-pool"], index=1, horizontal=True, key="act_stage", bind=SCENE)
    per_map = c.radio("Scale", ["per map", "shared"], horizontal=True, key="act_scale", bind=SCENE) == "per map"
    x = digits.tensor()
    st.image(digits.images[0], caption=digits.names[0], width=140, clamp=True)
    maps = {c.slot: feature_maps(c.model, x, layer, stage)[0].numpy() for c in chosen}
    zmax = max(float(m.max()) for m in maps.values())
    side_by_side(chosen, lambda c: chart(feature_maps_figure(
        maps[c.slot], f"{layer} {stage}: 32 maps of {maps[c.slot].shape[1]}×{maps[c.slot].shape[2]}", per_map, zmax=zmax),
        key=f"act_{c.slot}"))
    explain("The 32 maps of the chosen layer and stage for this digit, one per filter (bright = strong response). "
            "Deeper maps are smaller and more abstract: conv1 maps still look like the digit's strokes and edges; "
            "after conv2 and pooling they are coarse 7×7 maps of where a part was found. 'shared' scale uses one "
            "colour range for all maps (and both models), so magnitudes can be compared.")

elif section == "Occlusion":
    st.markdown("Slide a patch over the digit and watch the probability of the **class of interest**: where it drops, the "
                "network was using that part of the image.")
    digits = pick_digits(data, 10, "occ") or st.stop()
    a, b, c, d = st.columns(4)
    patch = a.slider("Patch size", 1, 16, 10, key="occ_patch", bind=SCENE)
    stride = b.slider("Stride", 1, 4, 2, key="occ_stride", bind=SCENE)
    fill_name = c.selectbox("Fill", list(FILLS), key="occ_fill", bind=SCENE)
    interest = d.selectbox("Class of interest", INTERESTS, key="occ_interest", bind=SCENE)

    def occlude(model, images: np.ndarray, labels: tuple, patch: int, stride: int, fill: str, interest: str):
        x = torch.from_numpy(images)[:, None]
        targets = class_of_interest(model, x, labels, interest)
        o = occlusion(model, x, targets, patch, stride, FILLS[fill])
        return o.prob.numpy(), o.pred.numpy(), targets.numpy(), o.base_prob.numpy(), o.forwards, o.milliseconds

    @st.cache_data(max_entries=64, show_spinner="Occluding…")
    def cached_occlusion(model_key: str, _model, images: np.ndarray, labels: tuple, patch: int, stride: int, fill: str,
                         interest: str):
        return occlude(_model, images, labels, patch, stride, fill, interest)

    def job(c):  # both models at once (app_pages.live), keyed by every setting
        settings = (tuple(digits.labels), patch, stride, fill_name, interest)
        return live.Job(("occlusion", c.key, live.digest(digits.images), *settings),
                        lambda progress: occlude(c.model, digits.images, *settings))

    def render(c, result):
        prob, pred, targets, base, forwards, ms = result
        st.caption(f"{forwards:,} images through the model in {ms:,.0f} ms (batched; repeat settings come from the cache)")
        labels = [f"{d}, class of interest {t}, P = {p:.3f}" for d, t, p in zip(digits.names, targets, base, strict=True)]
        chart(occlusion_figure(digits.images, prob, pred, labels, patch, stride, cell_px=OCCLUSION_PX[len(chosen)]),
              key=f"occ_{c.slot}")

    side_by_side(chosen, render, job)

    st.subheader("One digit, growing patches")
    one = (digits.images[:1], tuple(digits.labels[:1]))
    strip = {p: cached_occlusion(chosen[0].key, chosen[0].model, *one, p, stride, fill_name, interest)[0][0]
             for p in range(2, 17, 2)}
    chart(occlusion_strip_figure(strip, stride, f"{digits.names[0]}, {chosen[0].label}: P(class of interest) "
                                 f"with patch 2, 4, …, 16 (stride {stride})"), key="occ_strip")
    explain("Each map shows, at every patch position, the probability of the class of interest with the digit "
            "covered there (the colour of the patch's top-left corner). Small patches barely matter: the network "
            "uses evidence spread over the strokes. Large patches remove whole strokes and the probability collapses "
            "where the decisive part of the digit is covered — the strip shows this for one digit as the patch grows.")

elif section == "Attributions":
    st.markdown("Which pixels does the decision depend on? **Saliency**: |∂ logit / ∂ pixel|. **Integrated Gradients**: "
                "gradients averaged along the path from a black image, so the maps add up to the logit change. "
                "**Grad-CAM**: conv2 maps weighted by their gradients — coarse (14×14) but class-specific. Red = "
                "supports the class, blue = against it (Captum).")
    digits = pick_digits(data, 4, "attr") or st.stop()
    a, b = st.columns([3, 1])
    methods = a.multiselect("Methods", ATTRIBUTIONS, default=list(ATTRIBUTIONS), key="attr_methods", bind=SCENE)
    interest = b.selectbox("Class of interest", INTERESTS, index=1, key="attr_interest", bind=SCENE)

    @st.cache_data(max_entries=32, show_spinner="Computing attributions…")
    def cached_attributions(model_key: str, _model, images: np.ndarray, labels: tuple, methods: tuple, interest: str):
        x = torch.from_numpy(images)[:, None]
        targets = class_of_interest(_model, x, labels, interest)
        return {m: attribution(_model, x, targets, m).numpy() for m in methods}, targets.numpy()

    def render(c):
        maps, targets = cached_attributions(c.key, c.model, digits.images, tuple(digits.labels), tuple(methods), interest)
        labels = [f"{d}, for class {t}" for d, t in zip(digits.names, targets, strict=True)]
        chart(attribution_figure(digits.images, maps, labels, cell_px=ATTRIBUTION_PX[len(chosen)]), key=f"attr_{c.slot}")

    if methods:
        side_by_side(chosen, render)
    explain("One row per digit, one map per method, each for the class of interest. Red pixels raise that class's "
            "score, blue ones lower it. Saliency is noisy but sharp; Integrated Gradients is less noisy and its map "
            "adds up to the logit change from a black image; Grad-CAM is coarse (conv2's 14×14 grid) but shows "
            "which region decides. Where the three agree, trust the map.")
