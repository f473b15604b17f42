"""Loaders shared by the pages: MNIST, saved models, the run registry, the server's measured speed, all cached once
per server. Not a page itself."""

from __future__ import annotations

import os
import uuid

import streamlit as st
import torch

from cnn_core.data import DataError, Mnist, load_mnist
from cnn_core.model import for_inference
from cnn_core.registry import RunRegistry
from cnn_core.store import ADV_TRAINED, BASELINE, BATCHNORM, CheckpointError, RunStore, default_root
from cnn_core.training import measure_speeds, resolve_device, resolve_precision

SHIPPED = {BASELINE: "Baseline (no BatchNorm)", BATCHNORM: "BatchNorm"}  # adv-trained is shipped too: Robustness lab only
MAX_ACTIVE_RUNS = int(os.environ.get("CNN_LAB_MAX_RUNS", 2))  # concurrent training runs per server (README)
MAX_RUNS_PER_SESSION = int(os.environ.get("CNN_LAB_MAX_RUNS_PER_SESSION", 6))  # queued or active, per browser session
RUNS_DIR = default_root()  # shipped and trained runs ($CNN_LAB_RUNS_DIR or checkpoints/)


def run_store() -> RunStore:
    return RunStore(RUNS_DIR)


@st.cache_resource(show_spinner="Loading MNIST (70,000 digits)…")
def mnist() -> Mnist:
    return load_mnist()


@st.cache_resource(show_spinner="Loading the shipped models…")
def shipped_models() -> dict[str, tuple[torch.nn.Module, dict]]:
    """name → (eval-mode model with frozen weights, run.json). Shared by all sessions: never mutate."""
    store, models = run_store(), {}
    for name in SHIPPED:
        try:
            model, info = store.load_model(name)
        except CheckpointError:
            continue
        models[name] = (for_inference(model), info)
    return models


@st.cache_resource(show_spinner=False)
def adv_trained_model() -> tuple[torch.nn.Module, dict] | None:
    """The shipped adversarially trained run (Robustness lab), or None when it is missing."""
    try:
        model, info = run_store().load_model(ADV_TRAINED)
    except CheckpointError:
        return None
    return for_inference(model), info


@st.cache_resource(max_entries=8, show_spinner=False)
def saved_model(name: str, mtime: float) -> tuple[torch.nn.Module, dict]:
    """Any saved run's (frozen eval-mode model, run.json); ``mtime`` keys the cache to the file."""
    model, info = run_store().load_model(name)
    return for_inference(model), info


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
