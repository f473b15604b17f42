"""Figures of the attack pages: image rows, cost curves, noises and perturbations, the transfer matrix,\nrobustness curves."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnn_core.plots import CLASS_PALETTE, FONT, digit_grid, square_cells, thin


def images_figure(images: np.ndarray, titles: list[str], wrong: list[bool] | None = None, cols: int = 10,
                  cell_px: int = 110) -> go.Figure:
    """0–255 images in a grid (values outside [0, 255], possible without the clamp, shown clipped)."""
    return digit_grid(np.clip(images, 0, 255).astype(np.float32) / 255.0, titles, wrong, cols=cols, cell_px=cell_px,
                      frame="#999999")


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


def perturbation_figure(rows: list[tuple[str, np.ndarray, bool]], titles: list[str], pixel_max: float = 255.0,
                        unit: str = "grey levels") -> go.Figure:
    """One column per example, one row per (label, N×28×28 arrays, signed): signed rows (a noise or a
    perturbation) on one diverging scale centred on 0 (blue −, red +), the others as grey images in
    [0, pixel_max]."""
    n = len(titles)
    fig = make_subplots(rows=len(rows), cols=n, subplot_titles=titles + [""] * n * (len(rows) - 1),
                        horizontal_spacing=0.01, vertical_spacing=0.04, row_titles=[r[0] for r in rows])
    for i, (_, arrays, signed) in enumerate(rows):
        zmax = float(np.abs(arrays).max()) or 1.0
        for j in range(n):
            if signed:
                trace = go.Heatmap(z=arrays[j], zmin=-zmax, zmax=zmax, zmid=0, colorscale="RdBu_r", showscale=j == 0,
                                   colorbar=dict(title=unit, len=0.9 / len(rows), y=1 - i / len(rows), yanchor="top"),
                                   hovertemplate="%{z:.3g}<extra></extra>")
            else:
                trace = go.Heatmap(z=arrays[j], zmin=0, zmax=pixel_max, colorscale="gray", showscale=False,
                                   hovertemplate="pixel %{z:.3g}<extra></extra>")
            fig.add_trace(trace, row=i + 1, col=j + 1)
    square_cells(fig)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font=dict(size=15, color="black"))
    fig.update_layout(height=60 + 180 * len(rows), margin=dict(l=10, r=40, t=60, b=10), font=FONT)
    return fig


def robustness_figure(curves: dict[str, dict], colors: dict[str, str]) -> go.Figure:
    """Accuracy against the L∞ budget ε for several models: PGD solid, FGSM dashed, one colour per model."""
    fig = go.Figure()
    for name, c in curves.items():
        eps = c["epsilons"]
        for method, dash in (("pgd", "solid"), ("fgsm", "dash")):
            fig.add_trace(go.Scatter(x=eps, y=[100 * a for a in c[method]], name=f"{name} — {method.upper()}",
                                     mode="lines+markers", line=dict(color=colors[name], dash=dash, width=3),
                                     hovertemplate="ε = %{x}: %{y:.1f}%<extra></extra>"))
    ticks = sorted({e for c in curves.values() for e in c["epsilons"]})
    fig.update_layout(height=450, margin=dict(l=10, r=10, t=50, b=10), font=FONT, legend=dict(font=dict(size=13)),
                      title="Accuracy under attack (PGD solid, FGSM dashed)",
                      xaxis=dict(title="ε (pixels in [0, 1]; in grey levels /255 below)", tickvals=ticks,
                                 ticktext=[f"{e:g}<br>{round(255 * e)}/255" for e in ticks]),
                      yaxis=dict(title="accuracy (%)", range=[0, 101]))
    return fig


def transfer_figure(pred: np.ndarray, targets: list[int], example_labels: list[int]) -> go.Figure:
    """pred[i, j]: class of test example j plus the noise made for target i. Red: the noise's target
    won (off the diagonal, where the example already is the target); grey: the example kept its own class;
    orange: some other class."""
    pred = np.asarray(pred)
    won = (pred == np.asarray(targets)[:, None]) & (np.asarray(targets)[:, None] != np.asarray(example_labels)[None, :])
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
