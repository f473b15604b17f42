"""Figures of the attack playground (0–255 images): image rows, cost curves, noise, the transfer matrix."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnn_core.plots import CLASS_PALETTE, FONT, digit_grid, square_cells, thin


def images_figure(images: np.ndarray, titles: list[str], wrong: list[bool] | None = None, cols: int = 10,
                  cell_px: int = 110) -> go.Figure:
    """0–255 images in a grid (values outside [0, 255], possible without the clamp, shown clipped)."""
    return digit_grid(np.asarray(images, dtype=np.float32) / 255.0, titles, wrong, cols=cols, cell_px=cell_px)


def cost_curves_figure(costs: np.ndarray, labels: list[str], title: str, yaxis: str = "cost C") -> go.Figure:
    """One line per column of ``costs`` ((steps + 1)×B), coloured by class when there are 10."""
    fig = go.Figure()
    steps = np.arange(len(costs))
    keep = thin(len(costs), 500)
    for i, label in enumerate(labels):
        fig.add_trace(go.Scatter(x=steps[keep], y=costs[keep, i], name=label, mode="lines",
                                 line=dict(color=CLASS_PALETTE[i % 10], width=2.5)))
    fig.update_layout(title=title, height=380, margin=dict(l=10, r=10, t=50, b=10), font=FONT,
                      xaxis=dict(title="step"), yaxis=dict(title=yaxis), legend=dict(font=dict(size=13)))
    return fig


def noise_figure(noise: np.ndarray, images: np.ndarray, titles: list[str]) -> go.Figure:
    """Per target (one column): the noise on a diverging scale centred on 0 (blue −, red +, one scale for
    all), and the image plus noise as the model saw it (0–255 grey)."""
    n = len(noise)
    zmax = float(np.abs(noise).max()) or 1.0
    fig = make_subplots(rows=2, cols=n, subplot_titles=titles + [""] * n, horizontal_spacing=0.01, vertical_spacing=0.04,
                        row_titles=["noise", "x + noise"])
    for j in range(n):
        fig.add_trace(go.Heatmap(z=noise[j], zmin=-zmax, zmax=zmax, zmid=0, colorscale="RdBu_r", showscale=j == 0,
                                 colorbar=dict(title="grey levels", len=0.45, y=1, yanchor="top"),
                                 hovertemplate="noise %{z:.1f}<extra></extra>"), row=1, col=j + 1)
        fig.add_trace(go.Heatmap(z=images[j], zmin=0, zmax=255, colorscale="gray", showscale=False,
                                 hovertemplate="pixel %{z:.0f}<extra></extra>"), row=2, col=j + 1)
    square_cells(fig)
    fig.update_annotations(font=dict(size=14))
    fig.update_layout(height=420, margin=dict(l=10, r=40, t=60, b=10), font=FONT)
    return fig


def transfer_figure(pred: np.ndarray, targets: list[int], example_labels: list[int]) -> go.Figure:
    """pred[i, j]: class of test example j plus the noise made for target i. Red: the noise's target
    won; grey: the example kept its own class; orange: some other class."""
    pred = np.asarray(pred)
    won = pred == np.asarray(targets)[:, None]
    kept = pred == np.asarray(example_labels)[None, :]
    z = np.where(won, 2, np.where(kept, 0, 1))
    scale = [[0, "#e8e8e8"], [0.33, "#e8e8e8"], [0.33, "#ffbb78"], [0.66, "#ffbb78"], [0.66, "#d62728"], [1, "#d62728"]]
    fig = go.Figure(go.Heatmap(z=z, zmin=0, zmax=2, colorscale=scale, showscale=False, text=pred,
                               texttemplate="%{text}", textfont=dict(size=18), xgap=2, ygap=2,
                               x=[f"a {c}" for c in example_labels], y=[f"→ {t}" for t in targets],
                               hovertemplate="%{x} + noise for %{y}: predicted %{text}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title="noise made for target", type="category")
    fig.update_xaxes(title="test example (true class)", side="top", type="category")
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=80, b=10), font=FONT)
    return fig
