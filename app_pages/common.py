"""Shared page furniture: the sidebar, the "What am I seeing?" idiom, the runs' comparison table. Not a page itself.
(Loaders live in app_pages/loaders.py, the model chooser in chooser.py, the digit picker in digits.py.)"""

from __future__ import annotations

from contextlib import contextmanager

import pandas as pd
import streamlit as st

from app_pages.loaders import SHIPPED, adv_trained_model, registry, shipped_models
from cnn_core.compare import comparison_table
from cnn_core.model import layer_table
from cnn_core.plots import figure_csv, scaled_fonts
from cnn_core.sweep import sweep_table

SCENE = "query-params"  # a page's controls take bind=SCENE: their values live in the URL, so a link restores the view
PRESENT = "present"  # the sidebar's presenter-mode toggle, mirrored in the URL as ?present=1
# Presenter mode: text and controls 130 % (they are sized in rem; charts through ``chart``), compact spacing, and each
# view's "What am I seeing?" open in large type. The sidebar starts collapsed (app.py). (CSS zoom on the whole page was
# tried: plotly and the dataframes measure their containers unzoomed, and cut or overflowed.)
PRESENTER_CSS = """<style>
html { font-size: 130%; }
[data-testid="stMainBlockContainer"] { padding-top: 4.5rem; }
[data-testid="stMainBlockContainer"] [data-testid="stVerticalBlock"] { gap: 0.5rem; }
[data-testid="stMainBlockContainer"] h1 { padding: 0 0 0.5rem 0; }
[data-testid="stExpanderDetails"] p { font-size: 1.3rem; line-height: 1.5; }
</style>"""


PRESENTER_FONTS = 1.3  # chart fonts in presenter mode (st.html's CSS scales the page's own text)
CHART_FORMAT = "chart_format"  # the sidebar's choice of what a chart's camera button saves
# The camera button of every chart, for slides: a PNG at 3× its size on screen, or an SVG (plotly draws both in the
# browser; a server-side SVG would need kaleido and a second Chromium).
CHART_FORMATS = {"PNG (3×)": {"format": "png", "scale": 3}, "SVG": {"format": "svg", "scale": 1}}


def presenting() -> bool:
    return bool(st.session_state.get(PRESENT))


def chart(fig, *, key: str, **kwargs) -> None:
    """Every page's st.plotly_chart: larger fonts in presenter mode, the camera button saving the sidebar's format,
    and the figure's numbers as a CSV download below it (made only when clicked)."""
    image = CHART_FORMATS[st.session_state.get(CHART_FORMAT) or next(iter(CHART_FORMATS))]
    config = {"toImageButtonOptions": {**image, "filename": f"cnn-lab-{key}"}, **kwargs.pop("config", {})}
    st.plotly_chart(scaled_fonts(fig, PRESENTER_FONTS) if presenting() else fig, config=config, key=key, **kwargs)
    st.download_button("Data (CSV)", lambda: figure_csv(fig), file_name=f"cnn-lab-{key}.csv", mime="text/csv",
                       key=f"{key}_csv", on_click="ignore", type="tertiary", icon=":material/download:")


def explain(text: str) -> None:
    """Every view ends the same way: controls → figure → this expander, which says what the figure shows and how to
    read it (one idiom on every page)."""
    with explaining():
        st.markdown(text)


@contextmanager
def explaining():
    """The "What am I seeing?" expander, for an explanation of more than one paragraph; open in presenter mode."""
    with st.expander("What am I seeing?", expanded=presenting()):
        yield


def sidebar() -> None:
    if PRESENT not in st.session_state:  # a link with ?present=1 opens in presenter mode
        st.session_state[PRESENT] = st.query_params.get(PRESENT) == "1"
    with st.sidebar:
        st.toggle("Presenter mode", key=PRESENT, help="Larger type and figures for a projector; the sidebar starts "
                  "collapsed and each view's explanation open. Shareable: the link carries ?present=1.")
        st.segmented_control("Charts' camera icon saves", list(CHART_FORMATS), default=next(iter(CHART_FORMATS)),
                             key=CHART_FORMAT, help="The camera icon at a chart's top right downloads the chart as it "
                             "is drawn, legend included: a PNG at 3× its size, or an SVG for slides. Below each chart, "
                             "**Data (CSV)** downloads its numbers.")
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
    if presenting():
        st.query_params[PRESENT] = "1"
        st.html(PRESENTER_CSS)
    else:
        st.query_params.pop(PRESENT, None)


def layer_dataframe(model) -> None:
    """The model's layer table (Overview, Inside): every row shown, no inner scroll (fc2 was hidden behind one), the
    counts with thousands separators."""
    rows = layer_table(model)
    st.dataframe(rows, hide_index=True, width="stretch", height="content",
                 column_config={c: st.column_config.NumberColumn(format="localized") for c in rows.select_dtypes("number")})


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
