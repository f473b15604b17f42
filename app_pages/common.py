"""Shared UI pieces: cached data, models and the run registry; the sidebar; the prediction grid.
Not a page itself."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st
import torch

from cnn_core.compare import comparison_table
from cnn_core.data import DataError, Mnist, load_mnist
from cnn_core.model import predict_proba
from cnn_core.plots import digit_grid, prediction_titles
from cnn_core.registry import RunRegistry
from cnn_core.store import CheckpointError, RunStore, default_root
from cnn_core.sweep import sweep_table
from cnn_core.training import measure_speeds, resolve_device, resolve_precision

SHIPPED = {"baseline": "Baseline (no BatchNorm)", "batchnorm": "BatchNorm"}
ADV_TRAINED = "adv-trained"  # shipped too, but only the Robustness lab uses it
MAX_ACTIVE_RUNS = int(os.environ.get("CNN_LAB_MAX_RUNS", 2))  # concurrent training runs per server (README)
MAX_RUNS_PER_SESSION = int(os.environ.get("CNN_LAB_MAX_RUNS_PER_SESSION", 6))  # queued or active, per browser session
RUNS_DIR = default_root()  # shipped and trained runs ($CNN_LAB_RUNS_DIR or checkpoints/)


def run_store() -> RunStore:
    return RunStore(RUNS_DIR)


@st.cache_resource(show_spinner="Loading MNIST (70,000 digits)…")
def mnist() -> Mnist:
    return load_mnist()


def _frozen(model: torch.nn.Module) -> torch.nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


@st.cache_resource(show_spinner="Loading the shipped models…")
def shipped_models() -> dict[str, tuple[torch.nn.Module, dict]]:
    """name → (eval-mode model with frozen weights, run.json). Shared by all sessions: never mutate."""
    store, models = run_store(), {}
    for name in SHIPPED:
        try:
            model, info = store.load_model(name)
        except CheckpointError:
            continue
        models[name] = (_frozen(model), info)
    return models


@st.cache_resource(show_spinner=False)
def adv_trained_model() -> tuple[torch.nn.Module, dict] | None:
    """The shipped adversarially trained run (Robustness lab), or None when it is missing."""
    try:
        model, info = run_store().load_model(ADV_TRAINED)
    except CheckpointError:
        return None
    return _frozen(model), info


@st.cache_resource(max_entries=8, show_spinner=False)
def saved_model(name: str, mtime: float) -> tuple[torch.nn.Module, dict]:
    """Any saved run's (frozen eval-mode model, run.json); ``mtime`` keys the cache to the file."""
    model, info = run_store().load_model(name)
    return _frozen(model), info


@st.cache_resource(show_spinner=False)
def shared_speeds(batchnorms: tuple[bool, ...], precision: str, device: str) -> list[dict]:
    """Measured images/s of runs with these BatchNorm settings training at the same time, once per server."""
    dev = resolve_device(device)
    return measure_speeds(list(batchnorms), resolve_precision(precision, dev), dev)


@st.cache_resource
def registry() -> RunRegistry:
    """The server's live training runs, shared by every browser session."""
    # The speed of the slowest of a full server's runs (no-BN, BN, …): with 2 at a time the very measurement the
    # Train page made for its promise, so a queue's estimate never measures while runs train (it slowed them 30%).
    full = tuple(i % 2 == 1 for i in range(MAX_ACTIVE_RUNS))
    return RunRegistry(mnist, run_store(), max_active=MAX_ACTIVE_RUNS, max_per_owner=MAX_RUNS_PER_SESSION,
                       speed=lambda: min(shared_speeds(full, "auto", "auto"), key=lambda s: s["train"]))


def browser_session() -> str:
    """A token for this browser session (what the per-session run limit counts); a reload starts a new one."""
    return st.session_state.setdefault("browser_session", uuid.uuid4().hex)


def require_data() -> Mnist:
    """MNIST, or a clear message and a stopped page."""
    try:
        return mnist()
    except DataError as exc:
        st.error(f"MNIST could not be loaded: {exc}")
        st.stop()


def require_models() -> dict[str, tuple[torch.nn.Module, dict]]:
    models = shipped_models()
    if not models:
        st.error("No shipped model found in `checkpoints/` (baseline, batchnorm). Restore them with "
                 "`git checkout -- checkpoints` or train them: see the README.")
        st.stop()
    return models


def explain(text: str) -> None:
    """Every view ends the same way: controls → figure → this expander, which says what the figure shows and how to
    read it (one idiom on every page)."""
    with st.expander("What am I seeing?"):
        st.markdown(text)


def prediction_grid(model: torch.nn.Module, digits: Digits, key: str, test_accuracy: float | None = None) -> None:
    """The picked digits with true and predicted labels (wrong ones red)."""
    conf, pred = predict_proba(model, digits.tensor()).max(1)
    titles, wrong = prediction_titles(digits.labels, pred.tolist(), conf.tolist())
    known = sum(t is not None for t in digits.labels)
    line = f"**{known - sum(wrong)} of {known} correct**. Wrong predictions are red." if known else ""
    if test_accuracy is not None:
        line += f" Test-set accuracy of this model: **{100 * test_accuracy:.2f}%** on all 10,000 test digits."
    st.markdown(line)
    st.plotly_chart(digit_grid(digits.images, titles, wrong, cols=5), key=f"{key}_grid")


def sidebar() -> None:
    with st.sidebar:
        st.markdown("### CNN Lab")
        st.caption("The assignment CNN on MNIST: conv 32 → pool → conv 32 → pool → FC 500 → FC 10.")
        models = shipped_models()
        for name, label in SHIPPED.items():
            if name in models:
                acc = models[name][1]["results"]["accuracy"]
                st.markdown(f"**{label}**: {100 * acc:.2f}% test accuracy")
            else:
                st.markdown(f"**{label}**: _missing_ (`checkpoints/{name}`)")
        adv = adv_trained_model()
        if adv is not None:
            c = adv[1]["config"]
            st.markdown(f"**Adversarially trained** ({c['adversarial'].upper()}, ε = {c['adv_epsilon']:g}): "
                        f"{100 * adv[1]['results']['accuracy']:.2f}%")
        active, queued = registry().active(), registry().queued()
        if active:
            st.markdown(f"**Training now**: {', '.join(r.name for r in active)}")
        if queued:
            st.markdown(f"**Queued**: {len(queued)} run(s)")


def comparison_dataframe(runs: list[dict], field: str | None = None) -> None:
    """The runs' headline numbers as one table (live snapshots or saved runs), led by the swept field when they
    are a sweep of ``field``."""
    table = sweep_table(runs, field) if field else comparison_table(runs)
    table["steps to 98% val"] = [f"{v:,.0f}" if pd.notna(v) else "not reached" for v in table["steps to 98% val"]]
    table["images/s (median)"] = pd.to_numeric(table["images/s (median)"]).round()  # None (older runs) → NaN
    st.dataframe(table, hide_index=True, column_config={
        "test accuracy (%)": st.column_config.NumberColumn(format="%.2f"),
        "test loss": st.column_config.NumberColumn(format="%.4f"),
        "seconds / epoch": st.column_config.NumberColumn(format="%.1f"),
        "peak MiB / step": st.column_config.NumberColumn(format="%.0f", help="Peak memory a training step allocates: "
                                                         "activations, gradients and optimizer state"),
        "parameters": st.column_config.NumberColumn(format="localized"),
        "images/s (median)": st.column_config.NumberColumn(format="localized", help="Training speed: the median over "
                                                           "8-step windows, which a page redraw does not move"),
        "training digits": st.column_config.NumberColumn(format="localized")})


@dataclass
class Digits:
    """Input digits for a page: float32 N×28×28 in [0, 1], true labels (None for a drawn digit), names."""

    images: np.ndarray
    labels: list[int | None]
    names: list[str]

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.images)[:, None]


PICKER_MODES = ["random", "of one class", "by index", "your digit"]


def _picker() -> dict:
    """The digit choice shared by every page (plain session keys: Streamlit forgets the state of widgets
    that a page does not draw, so widgets only mirror these). ``?digits=7,42`` in the URL opens by index."""
    s = st.session_state
    if "picker_mode" not in s:
        s.picker_mode, s.picker_class, s.picker_idx, s.picker_seed = "random", 0, "0, 1, 2, 3, 4", 0
        if st.query_params.get("digits"):
            s.picker_mode, s.picker_idx = "by index", st.query_params["digits"]
    return s


def _parse_indices(text: str) -> list[int]:
    """Comma-separated test-set indices, or [] after an error message."""
    try:
        idx = [int(t) for t in text.replace(" ", "").split(",") if t]
        if idx and all(0 <= i < 10000 for i in idx):
            return idx
    except ValueError:
        pass
    st.error("Type test-set indices between 0 and 9,999, separated by commas (e.g. 7, 42, 1234).")
    return []


def pick_digits(data: Mnist, n_default: int, key: str) -> Digits | None:
    """Test digits (random with reshuffle, of one class, or typed indices) or the user's own digit from
    the Your-digit page; one digit when n_default is 1. The choice follows the user across pages.
    None (after a message saying why) when there is nothing to show."""
    s = _picker()
    a, b, c = st.columns([2, 2, 3])
    s.picker_mode = mode = a.radio("Digits", PICKER_MODES, PICKER_MODES.index(s.picker_mode), horizontal=True,
                                   key=f"{key}_mode")
    if mode != "by index":
        st.query_params.pop("digits", None)
    if mode == "your digit":
        own = s.get("own_digit")
        if own is None:
            st.info("No digit of yours yet: draw or upload one on the **Your digit** page, then come back.")
            return None
        return Digits(own[None].astype(np.float32), [None], ["your digit"])
    if mode == "by index":
        s.picker_idx = b.text_input("Test indices (0–9,999, comma-separated)", s.picker_idx, key=f"{key}_idx")
        idx = _parse_indices(s.picker_idx)[:10]
        if not idx:
            return None
        st.query_params["digits"] = ",".join(map(str, idx))  # a shareable link to these digits
        if n_default == 1 and len(idx) > 1:
            b.caption(f"This view takes one digit: #{idx[0]}, the first of your list.")
            idx = idx[:1]
    else:
        n = b.slider("How many", 1, 10, n_default, key=f"{key}_n") if n_default > 1 else 1
        if c.button("Reshuffle", icon=":material/shuffle:", key=f"{key}_shuffle"):
            s.picker_seed += 1
        rng = np.random.default_rng(s.picker_seed)
        pool = np.arange(len(data.test_labels))
        if mode == "of one class":
            s.picker_class = c.selectbox("Class", list(range(10)), s.picker_class, key=f"{key}_class")
            pool = torch.nonzero(data.test_labels == s.picker_class).flatten().numpy()
        idx = rng.choice(pool, n, replace=False).tolist()
    images = data.test_images[idx].numpy().astype(np.float32) / 255.0
    labels = data.test_labels[idx].tolist()
    return Digits(images, labels, [f"#{i} (true {t})" for i, t in zip(idx, labels, strict=True)])
