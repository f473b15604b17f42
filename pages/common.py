"""Shared UI pieces: cached data and models, the sidebar. Not a page itself."""

from __future__ import annotations

import streamlit as st
import torch

from cnn_core.data import DataError, Mnist, load_mnist
from cnn_core.store import CheckpointError, RunStore

SHIPPED = {"baseline": "Baseline (no BatchNorm)", "batchnorm": "BatchNorm"}


@st.cache_resource(show_spinner="Loading MNIST (70,000 digits)…")
def mnist() -> Mnist:
    return load_mnist()


@st.cache_resource(show_spinner="Loading the shipped models…")
def shipped_models() -> dict[str, tuple[torch.nn.Module, dict]]:
    """name → (eval-mode model with frozen weights, run.json). Shared by all sessions: never mutate."""
    store, models = RunStore(), {}
    for name in SHIPPED:
        try:
            model, info = store.load_model(name)
        except CheckpointError:
            continue
        for p in model.parameters():
            p.requires_grad_(False)
        models[name] = (model, info)
    return models


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
