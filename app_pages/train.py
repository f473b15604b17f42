"""Train: live training, and BatchNorm vs no-BatchNorm side by side (assignment part 1)."""

import uuid
from dataclasses import replace

import streamlit as st

from app_pages.common import SCENE, chart, comparison_dataframe, explain
from app_pages.loaders import MAX_ACTIVE_RUNS, browser_session, registry, require_data, shared_speeds
from cnn_core.compare import across_seeds, bn_verdict, outcome, seeds_verdict
from cnn_core.data import to_float, training_digits
from cnn_core.inside import live_conv1
from cnn_core.plots import RUN_DASH, feature_maps_figure, filters_figure, run_colors, training_curves_figure
from cnn_core.registry import TooManyRuns
from cnn_core.sweep import SWEEPS, parse_values, sweep_configs, sweep_field, sweep_verdict, value_label
from cnn_core.training import (
    ADVERSARIAL,
    CONVS,
    DEVICES,
    FAST_99,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    TrainConfig,
    estimate_seconds,
)

SIZES = {1000: "1,000 digits (seconds)", 5000: "5,000", 10000: "10,000", 27000: "27,000", 0: "all 54,000 (minutes)"}
POLL_SECONDS = 2.0  # every poll re-renders the page in the browser: the pair demo took 15.9 s at 1 s, 12.5 s at 2 s (README)
LIVE_DIGIT = 0  # the test digit (#0, a 7) whose conv1 feature maps the live view shows
LIVE_WIDTH = 450  # the live figures' heights are set for this width: half the page at 1280 px, no blank band above them
PHASES = {"training": "training", "validating": "validating on {total:,} held-out digits",
          "testing": "testing on the {total:,} test digits"}

st.title("Train: does BatchNorm help, and what does it cost?")
st.markdown("Train the assignment network live. **Train BN vs no-BN** starts two runs together with the same seed, "
            "data order and hyper-parameters — they differ only in BatchNorm. **Compare** does the same for any one "
            "setting over several values (seed 003's experiment: SGD, Momentum, RMSProp and Adam trained alike). "
            "Each run has its own colour; BatchNorm runs are drawn **solid**, runs without it **dashed**.")

data = require_data()
reg = registry()


def promised_seconds(config: TrainConfig) -> float:
    """How long the pair should take here: the slower of its two runs, at the speed measured for two such runs
    training at the same time."""
    train_size = training_digits(config.train_subset, config.val_fraction)
    speeds = shared_speeds((False, True), config.precision, config.device)
    return max(estimate_seconds(replace(config, batchnorm=bn), speed, train_size) for bn, speed in zip((False, True), speeds, strict=True))


# The runs this browser session follows: kept in session state, mirrored in the URL so a reload reattaches.
if "followed" not in st.session_state:
    st.session_state.followed = [i for i in st.query_params.get("runs", "").split(",") if reg.get(i)]
followed = [i for i in st.session_state.followed if reg.get(i)]

with st.form("train_form"):
    c1, c2, c3, c4 = st.columns(4)
    subset = c1.selectbox("Training set", list(SIZES), index=2, key="cfg_subset", bind=SCENE, format_func=SIZES.get,
                          help="A random subset of the 54,000 training digits, for fast demos")
    epochs = c2.number_input("Epochs", min_value=0, max_value=200, value=2, key="cfg_epochs", bind=SCENE)
    batch_size = c3.selectbox("Batch size", [32, 64, 100, 128, 256, 512], index=3, key="cfg_batch", bind=SCENE)
    optimizer = c4.selectbox("Optimizer", OPTIMIZERS, index=OPTIMIZERS.index("adam"), key="cfg_optimizer", bind=SCENE)
    lr = c1.number_input("Learning rate", min_value=0.0, max_value=10.0, value=1e-3, step=1e-4, format="%g", key="cfg_lr", bind=SCENE)
    schedule = c2.selectbox("Learning-rate schedule", SCHEDULES, key="cfg_schedule", bind=SCENE)
    momentum = c3.number_input("Momentum (momentum optimizer)", min_value=0.0, max_value=0.999, value=0.9, key="cfg_momentum", bind=SCENE)
    weight_decay = c4.number_input("Weight decay", min_value=0.0, max_value=1.0, value=0.0, step=1e-4, format="%g", key="cfg_wd", bind=SCENE)
    seed = c1.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="cfg_seed", bind=SCENE)
    val_fraction = c2.number_input("Validation fraction", min_value=0.0, max_value=0.5, value=0.1, step=0.05, key="cfg_val", bind=SCENE,
                                   help="Stratified share of the 60,000 training digits held out for validation")
    device = c3.selectbox("Device", DEVICES, key="cfg_device", bind=SCENE)
    precision = c4.selectbox("Precision", PRECISIONS, key="cfg_precision", bind=SCENE,
                             help="bf16: convolutions and matrix products in bfloat16, weights in float32 — about 2× "
                                  "faster on CPUs with AMX/AVX512-BF16 and on GPUs, same accuracy. auto uses it where the "
                                  "hardware has it. The test set is always evaluated in float32.")
    a1, a2, a3, a4 = st.columns(4)
    adversarial = a1.selectbox("Adversarial training", ADVERSARIAL, key="cfg_adv", bind=SCENE,
                               help="Mix FGSM or PGD examples of every batch into its loss (Robustness lab); PGD costs "
                                    "about (steps + 2)× the time of plain training")
    adv_epsilon = a2.number_input("ε (pixels in [0, 1])", min_value=0.01, max_value=1.0, value=0.1, step=0.05,
                                  key="cfg_adv_eps", bind=SCENE)
    adv_steps = a3.number_input("PGD steps", min_value=1, max_value=100, value=5, key="cfg_adv_steps", bind=SCENE)
    adv_mix = a4.number_input("Adversarial share of the loss", min_value=0.05, max_value=1.0, value=0.5, step=0.05,
                              key="cfg_adv_mix", bind=SCENE)
    o1, o2, o3, o4 = st.columns(4)
    batchnorm = o1.checkbox("BatchNorm (single run)", value=False, key="cfg_bn", bind=SCENE)
    augment = o2.checkbox("Augment (shifts)", value=False, key="cfg_augment", bind=SCENE,
                          help="Each training digit is moved by up to 2 pixels every time it is seen: less overfitting")
    keep_stopped = o3.checkbox("Keep a run I stop", value=True, key="cfg_keep_stopped", bind=SCENE,
                               help="Save a stopped run as stopped (its curves and best weights so far) so it can be "
                                    "opened on Results; unticked, a stopped run is discarded")
    conv = o4.selectbox("Convolution", CONVS, key="cfg_conv", bind=SCENE,
                        help="builtin: PyTorch's convolution. unfold: the same layer computed by hand as a matrix product "
                             "of unfolded patches (Convolution by hand page) — same numbers, slower, more memory")
    s1, s2 = st.columns([1, 3])
    field = s1.selectbox("Compare one setting…", list(SWEEPS), format_func=lambda f: SWEEPS[f][0], key="cfg_sweep_field", bind=SCENE)
    sweep_text = s2.text_input(
        "…over these values (comma-separated; empty: the usual ones)", key="cfg_sweep_values", bind=SCENE,
        placeholder="e.g. sgd, momentum, rmsprop, adam  ·  1e-4, 1e-3, 1e-2  ·  32, 128, 512  ·  off, on",
        help="Empty compares: " + "; ".join(f"{label} {', '.join(value_label(f, v) for v in values)}"
                                            for f, (label, values) in SWEEPS.items())
             + ". Every other setting is taken from above; the runs share the seed and the data order.")
    b1, b2, b3, b4 = st.columns([1, 1, 1, 1])
    train_one = b1.form_submit_button("Train", icon=":material/play_arrow:", key="train_one")
    train_pair = b2.form_submit_button("Train BN vs no-BN", icon=":material/compare_arrows:", type="primary", key="train_pair")
    train_sweep = b3.form_submit_button("Compare", icon=":material/stacked_line_chart:", key="train_sweep",
                                        help="One run per value of the setting chosen above, all else alike; up to "
                                             f"{MAX_ACTIVE_RUNS} train at once, the others wait in the queue")
    train_fast = b4.form_submit_button("99% fast", icon=":material/bolt:", key="train_fast",
                                       help="The same network to ≥ 99% test accuracy as fast as this machine allows: all "
                                            "54,000 digits, 3 epochs, Adam with a one-cycle learning rate (peak 3e-3), "
                                            "batch 256. Ignores the settings above.")

config = TrainConfig(batchnorm=batchnorm, optimizer=optimizer, lr=float(lr), momentum=float(momentum),
                     weight_decay=float(weight_decay), batch_size=int(batch_size), epochs=int(epochs),
                     schedule=schedule, seed=int(seed), val_fraction=float(val_fraction),
                     train_subset=int(subset), augment=augment, adversarial=adversarial,
                     adv_epsilon=float(adv_epsilon), adv_steps=int(adv_steps), adv_mix=float(adv_mix), device=device,
                     precision=precision, conv=conv)
if train_one or train_pair or train_sweep or train_fast:
    try:
        config.validate()
        owner = browser_session()
        if train_fast:
            runs = reg.start([replace(FAST_99, device=device)], names=[f"99-fast-{uuid.uuid4().hex[:4]}"],
                             keep_stopped=keep_stopped, owner=owner)
        elif train_sweep:
            runs = reg.start_sweep(sweep_configs(config, field, parse_values(field, sweep_text)), keep_stopped, owner)
        else:
            runs = (list(reg.start_pair(config, keep_stopped, owner)) if train_pair
                    else reg.start([config], keep_stopped=keep_stopped, owner=owner))
    except (ValueError, TooManyRuns) as exc:
        st.error(f"Not started: {exc}", icon=":material/error:")
    else:
        # Follow the new runs, plus earlier ones that are still training (so they keep a Stop button).
        followed = [r.id for r in runs] + [i for i in followed if not reg.get(i).done]
st.session_state.followed = followed
if followed:
    st.query_params["runs"] = ",".join(followed)

any_active = any(not reg.settled(i) for i in followed)  # polls until every run has ended and been saved


@st.fragment(run_every=POLL_SECONDS if any_active else None)
def live_view() -> None:
    runs = [reg.get(i) for i in followed]
    if not runs:
        try:
            config.validate()
            if config.adversarial == "none":
                st.info(f"No run yet: press **Train BN vs no-BN**. With these settings the pair trains in about "
                        f"**{promised_seconds(config):.0f} s** on this machine (computed from its measured speed).")
        except ValueError:
            st.info("No run yet: choose settings above and press **Train BN vs no-BN**.")
        return
    snaps = [r.snapshot() for r in runs]
    colors = run_colors([s["name"] for s in snaps])
    for run, snap in zip(runs, snaps, strict=True):
        progress_row(run, snap, colors[snap["name"]])
    chart(training_curves_figure(snaps, colors), key="live_curves")
    st.caption("Left: training loss of every step (faint) and its centred average, validation loss at each validation "
               "point (markers). Right: validation accuracy (solid markers) and training accuracy over the steps since "
               "the point before (open markers, dotted). Validation uses the same held-out digits every time.")
    if all(r.done for r in runs):
        result(runs, snaps)
    live_filters(runs, snaps)
    if any_active and all(reg.settled(r.id) for r in runs):
        st.rerun(scope="app")  # everything ended and saved: one full rerun switches polling off


def live_filters(runs, snaps: list[dict]) -> None:
    """conv1 of one followed run as it trains: its 32 kernels and one test digit's feature maps through them, from
    the copy the run takes between steps (live_conv1; the training model itself is never used). Below the result
    once there is one, so the result appears right under the curves."""
    shown = {r.id: s for r, s in zip(runs, snaps, strict=True) if s["latest_conv1"] is not None}
    if not shown:
        return
    st.subheader("conv1 as it trains")
    run_id = next(iter(shown))
    if len(shown) > 1:
        run_id = st.columns([2, 3])[0].selectbox("Run", list(shown), format_func=lambda i: shown[i]["name"],
                                                 key="live_filters_" + "-".join(shown))  # new runs start at the first
    snap = shown[run_id]
    view = live_conv1(snap, to_float(data.test_images[LIVE_DIGIT : LIVE_DIGIT + 1]))
    left, right = st.columns(2)
    with left:
        chart(filters_figure(view["kernels"], f"conv1 filters at step {view['step']:,}", zmax=view["zmax"],
                             width=LIVE_WIDTH), key="live_filters")
    with right:
        chart(feature_maps_figure(view["maps"], f"test digit #{LIVE_DIGIT} through them (conv1 → ReLU)", True,
                                  width=LIVE_WIDTH), key="live_maps")
    bn = " For a BatchNorm run these maps are before bn1." if snap["config"]["batchnorm"] else ""
    st.caption(f"`{snap['name']}`, updated every {POLL_SECONDS:.0f} s while it trains. Left: its 32 conv1 filters (red "
               "rewards ink, blue punishes it; the scale only grows, so change shows as colour). Right: test digit "
               f"#{LIVE_DIGIT} (a {int(data.test_labels[LIVE_DIGIT])}) through them, each map stretched to its own range: "
               f"the strokes and edges each filter finds.{bn} Every saved run keeps its filters at a few steps: "
               "Inside the network → Filters replays them.")


def result(runs, snaps: list[dict]) -> None:
    ended = [s for s in snaps if s["status"] in ("finished", "stopped")]
    if not ended:
        return
    st.subheader("Result")
    field = sweep_field(ended)
    comparison_dataframe(ended, field if field != "batchnorm" else None)
    no_bn = [s for s in ended if not s["config"]["batchnorm"]]
    bn = [s for s in ended if s["config"]["batchnorm"]]
    if len({s["config"]["seed"] for s in ended}) > 1:
        st.markdown("**Across seeds** (mean and sample standard deviation over the runs that trained)")
        st.dataframe(across_seeds(ended), hide_index=True, column_config={
            c: st.column_config.NumberColumn(format="%.2f") for c in ("test accuracy mean (%)", "test accuracy sd",
                                                                      "seconds / epoch mean", "seconds / epoch sd")})
        st.markdown(f"**{seeds_verdict(ended)}**")
    elif field not in (None, "batchnorm"):
        st.markdown(f"**{sweep_verdict(ended, field)}**")
    elif len(no_bn) == 1 and len(bn) == 1:
        st.markdown(f"**{bn_verdict(no_bn[0], bn[0])}**")
        if outcome(no_bn[0]) == outcome(bn[0]) == "trained" and st.button(
                "Repeat with 3 seeds", icon=":material/replay:", key="repeat_seeds",
                help="Train the same pair with the next two seeds (queued if the server is busy), then compare means"):
            repeat_with_seeds(no_bn[0]["config"])
    for run, snap in zip(runs, snaps, strict=True):
        saved = reg.saved_name(run.id)
        if snap["status"] == "stopped" and not reg.keeps_stopped(run.id):
            st.caption(f"`{snap['name']}` was stopped and discarded, as chosen (not saved).")
        elif saved and saved.startswith("error"):
            st.error(f"`{snap['name']}` could not be saved: {saved}")
        elif saved:
            kind = " — stopped: its curves and best weights so far, tested when opened" if snap["status"] == "stopped" else ""
            st.caption(f"Saved as `{saved}`{kind} — open it on the Results page.")
        elif snap["status"] in ("finished", "stopped"):
            st.caption(f"`{snap['name']}`: saving…")


def repeat_with_seeds(config: dict) -> None:
    """Start the pair of ``config`` for its next two seeds and follow them beside the pair already here."""
    base = TrainConfig.from_dict(config)
    try:
        new = [r.id for seed in (base.seed + 1, base.seed + 2)
               for r in reg.start_pair(replace(base, seed=seed), owner=browser_session())]
    except TooManyRuns as exc:
        st.error(f"Not started: {exc}", icon=":material/error:")
        return
    st.session_state.followed = followed + new
    st.rerun(scope="app")  # polling on


def progress_row(run, snap: dict, color: str) -> None:
    p, status = snap["progress"], snap["status"]
    bn = snap["config"]["batchnorm"]
    name_col, bar_col, stop_col = st.columns([2, 6, 1], vertical_alignment="center")
    line = "━━" if RUN_DASH[bn] == "solid" else "╍╍"
    name_col.markdown(f"<span style='color:{color};font-weight:600'>{line} {snap['name']}</span><br>"
                      f"{'BatchNorm' if bn else 'no BatchNorm'} · {status}", unsafe_allow_html=True)
    total, step = p.get("total_steps") or 1, p.get("step", 0)
    phase, fraction = p.get("phase", "training"), min(step / total, 1.0)
    if status == "running" and phase != "training":
        done, of = p.get("phase_done", 0), p.get("phase_total") or 1
        fraction = done / of
        text = f"{PHASES[phase].format(total=of)}: {done:,}/{of:,} · step {step:,}/{total:,}"
    elif status == "running":
        eta = f"{p['eta_s']:.0f} s" if p.get("eta_s") is not None else "…"
        text = (f"epoch {p['epoch']}/{p['epochs']} · step {step:,}/{total:,} · "
                f"{p['images_per_s']:,.0f} images/s · {p.get('threads', '?')} thread(s) · {snap['precision']} · ETA {eta}")
    elif status == "queued":
        wait = reg.waiting(run.id)
        fraction = 0.0
        if wait is None:
            text = "starting…"
        else:
            place = "next" if wait["place"] == 1 else f"place {wait['place']}"
            eta = f" · starts in about {wait['starts_in_s']:.0f} s" if wait["starts_in_s"] is not None else ""
            text = f"queued: {place} in the queue (this server trains {MAX_ACTIVE_RUNS} at a time){eta}"
    elif status == "cancelled":
        text = "cancelled before it started"
    elif status == "finished":
        text = f"finished in {snap['total_seconds']:.1f} s · test accuracy {100 * snap['results']['accuracy']:.2f}%"
    elif status == "stopped":
        text = f"stopped at step {step:,} of {total:,} after {snap['total_seconds']:.1f} s"
    elif status == "failed":
        text = "failed — see the error below"
    else:
        text = "starting…"
    bar_col.progress(fraction, text=text)
    queued = status == "queued"
    if stop_col.button("Cancel" if queued else "Stop", key=f"stop_{run.id}", icon=":material/stop:", disabled=run.done,
                       help="Cancel this queued run (with its pair)" if queued else "Stop: within a second, in every phase"):
        reg.stop(run.id)
    if status == "failed":
        st.error(f"Run {snap['name']} failed:\n\n```\n{snap['error']}\n```")


live_view()
explain("The curves of every run followed here, one colour per run (BatchNorm solid, without dashed), over "
        "optimisation steps: the left panel's loss on a log scale, the right panel's accuracy. Validation points use "
        "the same held-out digits every time, so they compare across runs and steps. When the runs end, the table "
        "and the sentence under the curves answer the question from the measured numbers; a sentence resting on one "
        "seed says so. Below them, the conv1 filters of a run as it trains.")

others = [r for r in reg.active() + reg.queued() if r.id not in followed]
if others:
    with st.expander(f"{len(others)} other run(s) training or queued on this server"):
        for run in others:
            c1, c2 = st.columns([4, 1])
            where = "queued" if run.status == "queued" else f"{run.progress.get('step', 0):,}/{run.progress.get('total_steps', 0):,} steps"
            c1.write(f"{run.name} — {where}")
            if c2.button("Stop", key=f"stop_other_{run.id}"):
                reg.stop(run.id)
                st.rerun()
