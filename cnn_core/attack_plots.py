"""Figures of the attack pages: image rows, cost curves, noises and perturbations, the transfer matrix,\nrobustness curves."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cnn_core.plots import CLASS_PALETTE, FONT, digit_grid, digit_mosaic, square_cells, thin


def images_figure(images: np.ndarray, titles: list[str], wrong: list[bool] | None = None, cols: int = 10,
                  cell_px: int = 110) -> go.Figure:
    """0–255 images in a grid (values outside [0, 255], possible without the clamp, shown clipped); many images as one
    raster (``digit_mosaic``)."""
    if len(images) > 20:
        return digit_mosaic(np.clip(images, 0, 255).astype(np.float32) / 255.0, titles, wrong, cols=cols, cell_px=cell_px)
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


# Transparent at 0 so the digit shows through, red at the top of the shared scale (attributions here are ≥ 0).
_ATTRIBUTION_OVERLAY = [[0.0, "rgba(255,255,255,0)"], [0.15, "rgba(252,187,161,0.55)"], [1.0, "rgba(165,15,21,0.95)"]]


def attack_attribution_figure(clean: np.ndarray, adv: np.ndarray, maps: dict[str, tuple[np.ndarray, np.ndarray]],
                              peaks: dict[str, float], predictions: tuple[str, str], classes: tuple[int, int],
                              height: int = 250) -> go.Figure:
    """One digit in one row: the clean and the adversarial image (``predictions`` under them), then per method (the
    keys of ``maps``, also the column titles) its map of the clean and of the adversarial image (28×28 each, ≥ 0,
    attributed to ``classes``, the prediction of each) over that image, both on one scale 0 … ``peaks[method]``
    with its colour bar after the pair."""
    methods = list(maps)
    cells = 2 + 2 * len(methods)
    cell, gap, bar = 1.0, 0.06, 0.55  # widths in cells: between images, and the colour bar after each pair of maps
    total = cells * cell + (cells - 1) * gap + len(methods) * bar
    domains, x0 = [], 0.0
    for j in range(cells):
        domains.append((x0 / total, (x0 + cell) / total))
        x0 += cell + gap + (bar if j >= 2 and j % 2 == 1 else 0)
    top, bottom = 1 - 58 / height, 26 / height  # the images' band, in paper units: two header lines, one label line
    fig = go.Figure()
    for j in range(cells):
        axis = "" if j == 0 else str(j + 1)
        fig.add_trace(go.Heatmap(z=(clean, adv)[j % 2], zmin=0, zmax=1, colorscale="gray", showscale=False,
                                 hoverinfo="skip", xaxis=f"x{axis}", yaxis=f"y{axis}"))
        below = predictions[j % 2] if j < 2 else f"for {classes[j % 2]}"
        if j >= 2:
            m = methods[(j - 2) // 2]
            fig.add_trace(go.Heatmap(z=maps[m][j % 2], zmin=0, zmax=float(peaks[m]) or 1.0, colorscale=_ATTRIBUTION_OVERLAY,
                                     showscale=j % 2 == 1, xaxis=f"x{axis}", yaxis=f"y{axis}",
                                     colorbar=dict(x=domains[j][1] + 0.004, xanchor="left", y=bottom, yanchor="bottom",
                                                   len=top - bottom, thickness=12, tickformat=".2g",
                                                   tickfont=dict(size=12)),
                                     hovertemplate="%{z:.3g}<extra></extra>"))
        fig.layout[f"xaxis{axis}"] = dict(domain=domains[j], visible=False, constrain="domain")
        fig.layout[f"yaxis{axis}"] = dict(domain=[bottom, top], visible=False, scaleanchor=f"x{axis}", autorange="reversed",
                                          constrain="domain")
        middle = sum(domains[j]) / 2
        fig.add_annotation(text=("clean", "adversarial")[j % 2], x=middle, y=top, yanchor="bottom", yshift=2, xref="paper",
                           yref="paper", showarrow=False, font=dict(size=13, color="#444"))
        fig.add_annotation(text=below, x=middle, y=bottom, yanchor="top", yshift=-2, xref="paper", yref="paper",
                           showarrow=False, font=dict(size=14, color="black"))
        if j % 2 == 0:
            fig.add_annotation(text=f"<b>{'image' if j == 0 else methods[(j - 2) // 2]}</b>",
                               x=(domains[j][0] + domains[j + 1][1]) / 2, y=1, yanchor="top", xref="paper", yref="paper",
                               showarrow=False, font=dict(size=15, color="black"))
    fig.update_layout(height=height, margin=dict(l=4, r=4, t=4, b=4), font=FONT, plot_bgcolor="white")
    return fig
