"""One model chooser for every page: any saved run — shipped, trained here — or a run still training (its best weights
so far), in slot A and optionally slot B side by side. The choice follows the user across pages and lives in the URL
(``?a=baseline&b=batchnorm``)."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
import torch

from app_pages import live
from app_pages.loaders import ADV_TRAINED, SHIPPED, registry, run_store, saved_model
from cnn_core.model import MnistCNN, for_inference
from cnn_core.store import RunStore

NONE = "none"  # slot B empty: one model
LIVE = "live:"  # prefix of a run still training: live:<run id>
DEFAULTS = {"a": "baseline", "b": "batchnorm"}
LABELS = {**SHIPPED, ADV_TRAINED: "Adversarially trained"}


@dataclass(frozen=True)
class Chosen:
    """A model picked in a slot. ``key`` names its weights exactly (a saved run at its file's time, a live run at its
    best step): cached functions take it together with the model, never a name to look up."""

    key: str
    slot: str  # "a" or "b": widget keys take it (A and B may be the same run)
    name: str
    label: str
    model: torch.nn.Module
    info: dict  # run.json, or a live run's snapshot: config, results (None until tested)

    @property
    def saved_run(self) -> str | None:
        """The saved run's name (whose stored results are these weights'), or None for a live run."""
        return None if self.key.startswith(LIVE) else self.name

    @property
    def test_accuracy(self) -> float | None:
        return (self.info.get("results") or {}).get("accuracy")


def _options() -> dict[str, str]:
    """Choosable runs, value → label: shipped runs first, then the others saved here, then runs training now (from
their first validation on: before it they have no best weights)."""
    root = run_store().root
    stamp = tuple((p.name, p.stat().st_mtime) for p in sorted(root.iterdir())) if root.is_dir() else ()
    options = dict(_saved_options(str(root), stamp))
    reg = registry()
    for run in reg.runs():  # training, or ended a moment ago and not yet saved
        best = run.best_weights()
        if best is not None and not reg.settled(run.id):
            options[LIVE + run.id] = f"{run.name} — training, best so far (step {best[0]:,})"
    return options


@st.cache_data(max_entries=4, show_spinner=False)
def _saved_options(root: str, stamp: tuple) -> list[tuple[str, str]]:
    """(name, label) of the saved runs in ``root``, shipped first; ``stamp`` (the folder's entries and times) keys the
    cache, so the run.json files are read again only when a run is saved, replaced or deleted."""
    saved = sorted((i for i in RunStore(root).list_runs() if "error" not in i), key=lambda i: (not i["shipped"], i["name"]))
    return [(i["name"], LABELS.get(i["name"]) or _saved_label(i)) for i in saved]


def _saved_label(info: dict) -> str:
    results = info.get("results")
    return f"{info['name']} ({100 * results['accuracy']:.2f}%)" if results else f"{info['name']} (stopped, untested)"


@st.cache_resource(max_entries=4, show_spinner=False)
def _live_model(run_id: str, step: int, _config, _state: dict) -> torch.nn.Module:
    """A frozen eval-mode copy of a training run's best weights ``_state`` (those of ``step``, which keys the cache
    together with the run): the run keeps training its own model."""
    model = MnistCNN(_config.batchnorm, conv=_config.conv)
    model.load_state_dict(_state)
    return for_inference(model)


def _load(slot: str, value: str, label: str) -> Chosen:
    if value.startswith(LIVE):
        run = registry().get(value[len(LIVE):])
        step, state = run.best_weights()  # one read: the cache key and the weights belong together
        return Chosen(f"{value}@{step}", slot, run.name, label, _live_model(run.id, step, run.config, state), run.snapshot())
    mtime = run_store().mtime(value)
    model, info = saved_model(value, mtime)
    return Chosen(f"{value}@{mtime}", slot, value, label, model, info)


def _settle_live(value: str) -> str:
    """A live run that has ended and been saved is chosen by its saved name from then on."""
    if value.startswith(LIVE):
        run = registry().get(value[len(LIVE):])
        saved = registry().saved_name(run.id) if run is not None else None
        if run is not None and run.done and saved and not saved.startswith("error"):
            return saved
    return value


def choose_models(key: str, where=None, two: bool = True) -> list[Chosen]:
    """Model A (and, when ``two``, optionally model B beside it) chosen in ``where`` (a container; default: here);
    [A] or [A, B]. The choice is kept in plain session keys (widgets a page does not draw forget their state) and
    mirrored in the URL. A run that is gone gives a warning and the default in its place; with no run at all the page
    stops with a message."""
    options = _options()
    if not options:
        st.error("No saved model found (not even the shipped baseline and batchnorm). Restore them with "
                 "`git checkout -- checkpoints` or train one on the Train page.")
        st.stop()
    s = st.session_state
    chosen = {}
    slots = ("a", "b") if two else ("a",)
    for slot, col in zip(slots, (where or st).columns(len(slots)), strict=True):
        if f"model_{slot}" not in s:
            s[f"model_{slot}"] = st.query_params.get(slot, DEFAULTS[slot])
        value = _settle_live(s[f"model_{slot}"])
        allowed = options | ({NONE: "— none (one model) —"} if slot == "b" else {})
        if value not in allowed:
            fallback = DEFAULTS[slot] if DEFAULTS[slot] in allowed else next(iter(allowed))
            st.warning(f"Model {slot.upper()}: run `{value}` is not available here (deleted, or gone with a server "
                       f"restart) — showing {allowed[fallback]} instead.", icon=":material/warning:")
            value = fallback
        s[f"model_{slot}"] = value = col.selectbox(
            ("Model A" if two else "Model") if slot == "a" else "Model B, side by side", list(allowed), index=list(allowed).index(value),
            format_func=allowed.get, key=f"{key}_{slot}",
            help="Any saved run (shipped, or trained on the Train page) or a run still training (its best weights "
                 "so far). The choice follows you to the other pages and is kept in the link.")
        st.query_params[slot] = value
        chosen[slot] = value
    return [_load(slot, v, options[v]) for slot, v in chosen.items() if v != NONE]


def side_by_side(chosen: list[Chosen], render, job=None, stacked: bool = False) -> None:
    """In labelled columns when there are two (``stacked``: one below the other, for figures too wide for half a
    page): render(model) for each; or, with ``job(model)`` → a live.Job, the jobs of all models computed at once
    (partials drawn as they come) and then render(model, its result)."""
    cols = [st.container() for _ in chosen] if stacked else st.columns(len(chosen))
    if len(chosen) > 1:
        for col, c in zip(cols, chosen, strict=True):
            col.markdown(f"**{c.label}**")
    if job is None:
        for col, c in zip(cols, chosen, strict=True):
            with col:
                render(c)
        return
    jobs = [job(c) for c in chosen]
    # Jobs with partials draw them in a slot, where their result then replaces them; without, the previous result stays
    # in the column (dimmed while the page reruns) until the new one replaces it.
    slots = [col.empty() if j.draw else None for col, j in zip(cols, jobs, strict=True)]
    for col, slot, c, r in zip(cols, slots, chosen, live.compute(jobs, slots), strict=True):
        with slot.container() if slot else col:
            render(c, r)
