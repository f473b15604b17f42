"""The digit picker every page that takes a digit uses (random, of one class, by index, your digit), and the
prediction grid. Not a page itself."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from app_pages.common import chart
from cnn_core.data import Mnist
from cnn_core.model import predict_proba
from cnn_core.plots import digit_grid, prediction_titles


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


def prediction_grid(model: torch.nn.Module, digits: Digits, key: str, test_accuracy: float | None = None) -> None:
    """The picked digits with true and predicted labels (wrong ones red)."""
    conf, pred = predict_proba(model, digits.tensor()).max(1)
    titles, wrong = prediction_titles(digits.labels, pred.tolist(), conf.tolist())
    known = sum(t is not None for t in digits.labels)
    line = f"**{known - sum(wrong)} of {known} correct**. Wrong predictions are red." if known else ""
    if test_accuracy is not None:
        line += f" Test-set accuracy of this model: **{100 * test_accuracy:.2f}%** on all 10,000 test digits."
    st.markdown(line)
    chart(digit_grid(digits.images, titles, wrong, cols=5), key=f"{key}_grid")
