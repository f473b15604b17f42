"""Shared UI pieces: cached data, models and the run registry; the sidebar; the prediction grid.
Not a page itself."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from cnn_core.compare import comparison_table
from cnn_core.data import DataError, Mnist, load_mnist, to_float
from cnn_core.model import predict_proba
from cnn_core.plots import digit_grid, prediction_titles
from cnn_core.registry import RunRegistry
from cnn_core.store import DEFAULT_ROOT, CheckpointError, RunStore

SHIPPED = {"baseline": "Baseline (no BatchNorm)", "batchnorm": "BatchNorm"}
MAX_ACTIVE_RUNS = int(os.environ.get("CNN_LAB_MAX_RUNS", 2))  # concurrent training runs per server (README)
RUNS_DIR = Path(os.environ.get("CNN_LAB_RUNS_DIR", DEFAULT_ROOT))  # shipped and trained runs


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


@st.cache_resource(max_entries=8, show_spinner=False)
def saved_model(name: str, mtime: float) -> tuple[torch.nn.Module, dict]:
    """Any saved run's (frozen eval-mode model, run.json); ``mtime`` keys the cache to the file."""
    model, info = run_store().load_model(name)
    return _frozen(model), info


@st.cache_resource
def registry() -> RunRegistry:
    """The server's live training runs, shared by every browser session."""
    return RunRegistry(mnist, run_store(), max_active=MAX_ACTIVE_RUNS)


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


def prediction_grid(model: torch.nn.Module, data: Mnist, key: str, n: int = 12, test_accuracy: float | None = None) -> None:
    """n random test digits with true and predicted labels (wrong ones red) and a "New sample" button."""
    seed_key = f"{key}_seed"
    st.session_state.setdefault(seed_key, 0)
    if st.button("New sample", icon=":material/casino:", key=f"{key}_new"):
        st.session_state[seed_key] = int(np.random.default_rng().integers(2**31))
    idx = np.random.default_rng(st.session_state[seed_key]).choice(len(data.test_labels), n, replace=False)
    conf, pred = predict_proba(model, to_float(data.test_images[idx])).max(1)
    titles, wrong = prediction_titles(data.test_labels[idx].tolist(), pred.tolist(), conf.tolist())
    line = f"**{n - sum(wrong)} of {n} correct**"
    if test_accuracy is not None:
        line += f" — test-set accuracy of this model: **{100 * test_accuracy:.2f}%** on all 10,000 test digits"
    st.markdown(line + ". Wrong predictions are red.")
    st.plotly_chart(digit_grid(data.test_images[idx].numpy(), titles, wrong), key=f"{key}_grid")
    st.caption(f"Test indices: {', '.join(map(str, idx.tolist()))}")


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
        active = registry().active()
        if active:
            st.markdown(f"**Training now**: {', '.join(r.name for r in active)}")


def comparison_dataframe(runs: list[dict]) -> None:
    """The runs' headline numbers as one table (live snapshots or saved runs)."""
    table = comparison_table(runs)
    table["steps to 98% val"] = [f"{v:,.0f}" if pd.notna(v) else "not reached" for v in table["steps to 98% val"]]
    st.dataframe(table, hide_index=True, column_config={
        "test accuracy (%)": st.column_config.NumberColumn(format="%.2f"),
        "test loss": st.column_config.NumberColumn(format="%.4f"),
        "seconds / epoch": st.column_config.NumberColumn(format="%.1f"),
        "parameters": st.column_config.NumberColumn(format="localized"),
        "training digits": st.column_config.NumberColumn(format="localized")})


@dataclass
class Digits:
    """Input digits for a page: float32 N×28×28 in [0, 1], true labels (None for a drawn digit), names."""

    images: np.ndarray
    labels: list[int | None]
    names: list[str]

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.images)[:, None]


def pick_digits(data: Mnist, n_default: int, key: str) -> Digits:
    """Test digits (random with reshuffle, of one class, or typed indices) or the user's own digit from
    the Your-digit page; one digit when n_default is 1."""
    a, b, c = st.columns([2, 2, 3])
    mode = a.radio("Digits", ["random", "of one class", "by index", "your digit"], horizontal=True, key=f"{key}_mode")
    if mode == "your digit":
        own = st.session_state.get("own_digit")
        if own is None:
            st.info("No digit of yours yet: draw or upload one on the **Your digit** page, then come back.")
            st.stop()
        return Digits(own[None].astype(np.float32), [None], ["your digit"])
    seed_key = f"{key}_seed"
    st.session_state.setdefault(seed_key, 0)
    if mode == "by index":
        text = b.text_input("Test indices (0–9,999, comma-separated)", "0, 1, 2, 3, 4", key=f"{key}_idx")
        try:
            idx = [int(t) for t in text.replace(" ", "").split(",") if t]
            if not idx or any(not 0 <= i < 10000 for i in idx):
                raise ValueError
        except ValueError:
            st.error("Type test-set indices between 0 and 9,999, separated by commas (e.g. 7, 42, 1234).")
            st.stop()
        idx = idx[: max(1, n_default if n_default == 1 else 10)]
    else:
        n = b.slider("How many", 1, 10, n_default, key=f"{key}_n") if n_default > 1 else 1
        if c.button("Reshuffle", icon=":material/shuffle:", key=f"{key}_shuffle"):
            st.session_state[seed_key] += 1
        rng = np.random.default_rng(st.session_state[seed_key])
        pool = np.arange(len(data.test_labels))
        if mode == "of one class":
            cls = c.selectbox("Class", list(range(10)), key=f"{key}_class")
            pool = torch.nonzero(data.test_labels == cls).flatten().numpy()
        idx = rng.choice(pool, n, replace=False).tolist()
    images = data.test_images[idx].numpy().astype(np.float32) / 255.0
    labels = data.test_labels[idx].tolist()
    return Digits(images, labels, [f"#{i} (true {t})" for i, t in zip(idx, labels, strict=True)])
