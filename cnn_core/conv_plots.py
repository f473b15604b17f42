"""Figures of the Convolution page: a window sliding over a digit, and the matrices of im2col."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnn_core.plots import FONT, TICKS, colorbar, feature_maps_figure

HIGHLIGHT = "#d62728"
TITLE = dict(size=18, color="black")


def _readable(fig: go.Figure) -> go.Figure:
    """Projector-sized text: the app's plotly theme sets its own smaller tick, axis-title and title fonts, so the
    16 px of FONT is set on each of them."""
    fig.update_xaxes(**TICKS)
    fig.update_yaxes(**TICKS)
    fig.update_layout(font=FONT, title_font=TITLE)
    fig.update_annotations(font=TITLE)  # subplot titles
    return fig


def window_figure(image: np.ndarray, k: int, p: int, top_left: tuple[int, int], output: np.ndarray,
                  cell: tuple[int, int]) -> go.Figure:
    """Left: the H×W input with its zero padding (dashed frame = the real image) and the current K×K window (red).
    Right: the output map, the cell this window produces in red."""
    h, w = image.shape
    padded = np.pad(image, p)
    (r0, c0), (i, j) = top_left, cell
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
        f"input {h}×{w}, padding {p}: window at row {r0}, col {c0}",
        f"output {output.shape[0]}×{output.shape[1]}: cell ({i}, {j}) = {output[i, j]:.3f}"))
    fig.add_trace(go.Heatmap(z=padded, x=np.arange(-p, w + p), y=np.arange(-p, h + p), colorscale="gray", zmin=0, zmax=1,
                             showscale=False, hovertemplate="row %{y}, col %{x}: %{z:.2f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Heatmap(z=output, colorscale="gray", zmin=0, zmax=1, showscale=False,
                             hovertemplate="output row %{y}, col %{x}: %{z:.3f}<extra></extra>"), row=1, col=2)
    if p:
        fig.add_shape(type="rect", x0=-0.5, y0=-0.5, x1=w - 0.5, y1=h - 0.5, line=dict(color="#1f77b4", width=2, dash="dash"),
                      row=1, col=1)
    fig.add_shape(type="rect", x0=c0 - 0.5, y0=r0 - 0.5, x1=c0 + k - 0.5, y1=r0 + k - 0.5,
                  line=dict(color=HIGHLIGHT, width=4), row=1, col=1)
    fig.add_shape(type="rect", x0=j - 0.5, y0=i - 0.5, x1=j + 0.5, y1=i + 0.5, line=dict(color=HIGHLIGHT, width=4),
                  row=1, col=2)
    fig.update_xaxes(showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(showgrid=False, zeroline=False, autorange="reversed", constrain="domain")
    fig.update_yaxes(scaleanchor="x", row=1, col=1)
    fig.update_yaxes(scaleanchor="x2", row=1, col=2)
    fig.update_layout(height=540, margin=dict(l=10, r=10, t=60, b=10), plot_bgcolor="white")
    return _readable(fig)


def matrix_figure(z: np.ndarray, title: str, xaxis: str, yaxis: str, diverging: bool, height: int,
                  highlight_row: int | None = None) -> go.Figure:
    """One matrix as a heatmap (row 0 at the top): grey for patches of the input, blue–red around 0 for weights.
    ``highlight_row`` is framed in red."""
    z = np.asarray(z, dtype=np.float64)
    scale = dict(colorscale="RdBu_r", zmid=0) if diverging else dict(colorscale="gray")
    fig = go.Figure(go.Heatmap(z=z, **scale, colorbar=colorbar(thickness=14),
                               hovertemplate=f"{yaxis} %{{y}}, {xaxis} %{{x}}: %{{z:.3f}}<extra></extra>"))
    if highlight_row is not None:
        fig.add_shape(type="rect", x0=-0.5, x1=z.shape[1] - 0.5, y0=highlight_row - 0.5, y1=highlight_row + 0.5,
                      line=dict(color=HIGHLIGHT, width=3))
    fig.update_xaxes(title_text=xaxis, showgrid=False, zeroline=False)
    fig.update_yaxes(title_text=yaxis, showgrid=False, zeroline=False, autorange="reversed")
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=60, b=10))
    return _readable(fig)


def maps_figure(maps: np.ndarray, title: str) -> go.Figure:
    """32 maps on one shared scale (``plots.feature_maps_figure``) with projector-sized text."""
    return _readable(feature_maps_figure(maps, title, per_map=False, width=900))
