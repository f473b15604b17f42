"""Figures as pure functions: data in, plotly Figure out (no streamlit here)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# BatchNorm and no-BatchNorm keep these two colours everywhere in the app.
COLORS = {"no-BN": "#1f77b4", "BN": "#d62728"}
WRONG = "#d62728"
RIGHT = "#2ca02c"
FONT = dict(size=16)


def digit_grid(
    images: np.ndarray,
    titles: list[str],
    wrong: list[bool] | None = None,
    cols: int = 6,
    cell_px: int = 150,
) -> go.Figure:
    """Grid of 28×28 digits (uint8 or float in [0, 1]), one title each; wrong ones get a red title
    and a red frame. Rendered as one raster image per cell (no WebGL)."""
    images = np.asarray(images, dtype=np.float32)
    if images.max() > 1.0:
        images = images / 255.0
    n = len(images)
    wrong = wrong or [False] * n
    rows = max(1, -(-n // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.12 / rows)
    for i, img in enumerate(images):
        rgb = np.repeat((img * 255).astype(np.uint8)[..., None], 3, axis=2)
        fig.add_trace(go.Image(z=rgb, hoverinfo="skip"), row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, mirror=True, linewidth=4, linecolor="white")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, mirror=True, linewidth=4, linecolor="white")
    for i, is_wrong in enumerate(wrong):
        color = WRONG if is_wrong else "black"
        fig.layout.annotations[i].font = dict(size=FONT["size"], color=color)
        if is_wrong:
            fig.update_xaxes(showline=True, linecolor=WRONG, row=i // cols + 1, col=i % cols + 1)
            fig.update_yaxes(showline=True, linecolor=WRONG, row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(height=rows * (cell_px + 40) + 20, margin=dict(l=10, r=10, t=40, b=10), showlegend=False)
    return fig


def prediction_titles(true: list[int], pred: list[int], conf: list[float]) -> tuple[list[str], list[bool]]:
    """'true 7 → pred 7 (99%)' titles and the wrong-mask for ``digit_grid``."""
    titles = [f"true {t} → pred {p} ({100 * c:.0f}%)" + (" ✗" if t != p else "") for t, p, c in zip(true, pred, conf, strict=True)]
    return titles, [t != p for t, p in zip(true, pred, strict=True)]
