"""Your own digit: draw or upload, see the 28×28 the model sees and what the chosen models say."""

import numpy as np
import streamlit as st
import torch

from app_pages.chooser import choose_models
from app_pages.common import SCENE, chart, explain
from cnn_core.digit import DigitError, decode_image, mnist_style, rgba_to_gray
from cnn_core.model import predict_proba
from cnn_core.plots import probability_bars

CANVAS_PX = 336  # 12 screen pixels per MNIST pixel: easy to draw with a mouse on a projector
MAX_UPLOAD_MB = 20

st.title("Your own digit")
st.markdown("Draw a digit (white on black, like MNIST) or upload a photo of one. It is prepared the way MNIST was: "
            "cropped to the ink, scaled to fit 20×20, and centred by its centre of mass in 28×28.")
chosen = choose_models("digit_model", st.columns([3, 2])[0])
st.session_state.setdefault("canvas_version", 0)

left, mid, right = st.columns([4, 2, 5])
with left:
    source = st.radio("Input", ["draw", "upload"], horizontal=True, key="digit_source", bind=SCENE)
    gray = None
    if source == "draw":
        from streamlit_drawable_canvas import st_canvas  # needs a running Streamlit server (Components v2)

        result = st_canvas(stroke_width=26, stroke_color="#FFFFFF", background_color="#000000", height=CANVAS_PX,
                           width=CANVAS_PX, drawing_mode="freedraw", return_image_data=True,
                           key=f"canvas_{st.session_state.canvas_version}")
        if st.button("Clear", icon=":material/ink_eraser:", key="digit_clear"):
            st.session_state.canvas_version += 1  # a new key gives a fresh, empty canvas
            st.rerun()
        if result is not None and result.image_data is not None:
            gray = rgba_to_gray(np.asarray(result.image_data, dtype=np.float64) / 255.0, background=0.0)
    else:
        upload = st.file_uploader("Image of a digit (PNG, JPEG, …)", key="digit_upload", max_upload_size=MAX_UPLOAD_MB)
        if upload is not None:
            try:
                gray = decode_image(upload.getvalue())
                st.image(gray, caption=f"{upload.name} in grey", width=240, clamp=True)
            except DigitError as exc:
                st.error(f"Can't use {upload.name}: {exc}.")

digit = None
if gray is not None:
    try:
        digit = mnist_style(gray)
    except DigitError as exc:
        if source == "upload":
            st.error(f"Can't use {upload.name}: {exc}.")
if digit is None and source == "draw":  # nothing drawn yet, or an empty canvas: one message either way
    st.info("Draw a digit on the black square with the mouse.")

if digit is not None:
    st.session_state["own_digit"] = digit  # kept for the other pages
    x = torch.from_numpy(digit)[None, None]
    label = (lambda c: f"{c.slot.upper()}: {c.label}") if len(chosen) > 1 else (lambda c: c.label)
    probs = {label(c): predict_proba(c.model, x)[0].numpy() for c in chosen}
    with mid:
        st.image(np.kron(digit, np.ones((8, 8))), caption="what the model sees (28×28)", clamp=True)
    with right:
        chart(probability_bars(probs), key="own_bars")
        verdicts = [f"**{name}**: {int(p.argmax())} ({100 * p.max():.0f}%)" for name, p in probs.items()]
        st.markdown("Prediction — " + " · ".join(verdicts))
    explain("Middle: your digit as the network receives it — 28×28 grey levels after MNIST's own preparation "
            "(crop to the ink, fit 20×20, centre of mass at the centre). Right: each model's probability for every "
            "class. A thin or off-centre stroke, or a 7 with a bar, can split the probability between classes: "
            "MNIST's writers shaped the model's idea of a digit. The digit stays available as *your digit* on every "
            "page that takes one.")
