"""Figures as pure functions: data in, plotly Figure out (no streamlit here)."""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from .compare import validation_points

# BatchNorm and no-BatchNorm keep these two colours everywhere in the app.
COLORS = {"no-BN": "#1f77b4", "BN": "#d62728"}
WRONG = "#d62728"
FONT = dict(size=16)


def digit_grid(
    images: np.ndarray,
    titles: list[str],
    wrong: list[bool] | None = None,
    cols: int = 6,
    cell_px: int = 150,
    frame: str | None = None,
) -> go.Figure:
    """Grid of 28×28 digits (uint8 or float in [0, 1]), one title each; wrong ones get a red title
    and a red frame, the others a ``frame`` of that colour if given. One raster image per cell (no WebGL)."""
    images = np.asarray(images, dtype=np.float32)
    if images.max() > 1.0:
        images = images / 255.0
    n = len(images)
    wrong = wrong or [False] * n
    rows = max(1, -(-n // cols))
    title_px = 22 * (1 + max((t.count("<br>") for t in titles), default=0))  # room above each row for its titles
    # Built as one dict and validated once: plotly validates every update, and styling the cells one call at a time
    # (update_xaxes(row=, col=) per wrong digit) took 0.17 s for 18 digits, against 0.04 s this way.
    layout = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.02,
                           vertical_spacing=min(0.3, title_px / (rows * (cell_px + title_px)))).to_dict()["layout"]
    edge = dict(showticklabels=False, showgrid=False, zeroline=False, mirror=True, linewidth=4,
                showline=frame is not None, linecolor=frame or "white")
    for name in [k for k in layout if k.startswith(("xaxis", "yaxis"))]:  # empty cells too
        layout[name].update(edge)
    for i in (i for i, w in enumerate(wrong) if w):  # image i sits in subplot i + 1 (row-major)
        for axis in ("xaxis", "yaxis"):
            layout[f"{axis}{i + 1 if i else ''}"].update(showline=True, linecolor=WRONG)
    for note, w in zip(layout["annotations"], wrong, strict=False):
        note["font"] = dict(size=FONT["size"], color=WRONG if w else "black")
    layout.update(height=rows * (cell_px + title_px) + 30, margin=dict(l=10, r=10, t=title_px + 10, b=10),
                  showlegend=False)
    data = [dict(type="image", z=np.repeat((np.clip(img, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2),
                 hoverinfo="skip", xaxis=f"x{i + 1 if i else ''}", yaxis=f"y{i + 1 if i else ''}")
            for i, img in enumerate(images)]
    return go.Figure(dict(data=data, layout=layout))


def digit_strip(images: np.ndarray, cols: int = 10, scale: int = 3, gap: int = 2, pixel_max: float = 255.0) -> np.ndarray:
    """Digits (N×28×28 in [0, ``pixel_max``], clipped) tiled ``cols`` across into one uint8 grey image, each pixel a
    ``scale``×``scale`` block, white gaps between: a partial result drawn as one small PNG instead of a figure."""
    n = len(images)
    rows, cell = -(-n // cols), 28 * scale + gap
    out = np.full((rows * cell - gap, min(n, cols) * cell - gap), 255, np.uint8)
    tiles = (np.clip(np.asarray(images, np.float32) / pixel_max, 0, 1) * 255).round().astype(np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * cell:r * cell + 28 * scale, c * cell:c * cell + 28 * scale] = tile.repeat(scale, 0).repeat(scale, 1)
    return out


def digit_mosaic(images: np.ndarray, titles: list[str], wrong: list[bool] | None = None, cols: int = 10,
                 cell_px: int = 90, frame: str = "#999999") -> go.Figure:
    """``digit_grid`` for many digits (the 10×10 grid): one image of all digits (3× nearest-neighbour, a frame each,
    red when wrong) and one title above each as an annotation. A figure of 100 subplots took 0.5 s to build and 2.5 s
    for the browser to draw; this one is a single raster and text."""
    images = np.asarray(images, dtype=np.float32)
    if images.max() > 1.0:
        images = images / 255.0
    n, scale, pad, band = len(images), 3, 3, 22  # pad: the frame's width; band: the title's height, in image pixels
    wrong = wrong or [False] * n
    rows, cell = max(1, -(-n // cols)), 28 * scale + 2 * pad
    step_x, step_y = cell + 8, cell + band
    mosaic = np.full((rows * step_y, cols * step_x - 8, 3), 255, np.uint8)
    colours = {False: np.array(_rgb(frame), np.uint8), True: np.array(_rgb(WRONG), np.uint8)}
    annotations = []
    for i, (img, bad) in enumerate(zip(images, wrong, strict=True)):
        r, c = divmod(i, cols)
        y, x = r * step_y + band, c * step_x
        mosaic[y:y + cell, x:x + cell] = colours[bool(bad)]
        tile = (np.clip(img, 0, 1) * 255).round().astype(np.uint8).repeat(scale, 0).repeat(scale, 1)
        mosaic[y + pad:y + pad + 28 * scale, x + pad:x + pad + 28 * scale] = tile[..., None]
        annotations.append(dict(text=titles[i], x=x + cell / 2, y=y - 2, xref="x", yref="y", showarrow=False,
                                yanchor="bottom", font=dict(size=FONT["size"] - 2, color=WRONG if bad else "black")))
    png = io.BytesIO()
    Image.fromarray(mosaic).save(png, format="PNG")  # as a PNG: the same pixels as a list of numbers were 10 MB of JSON
    fig = go.Figure(go.Image(source="data:image/png;base64," + base64.b64encode(png.getvalue()).decode(), hoverinfo="skip"))
    width_px = cols * (cell_px + 8)
    fig.update_layout(annotations=annotations, height=int(width_px * mosaic.shape[0] / mosaic.shape[1]) + 20,
                      margin=dict(l=0, r=0, t=10, b=10), xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def prediction_titles(true: list[int | None], pred: list[int], conf: list[float]) -> tuple[list[str], list[bool]]:
    """'true 7<br>pred 7<br>99%' titles (short lines: they fit five digits across half a screen) and the
    wrong-mask for ``digit_grid``; a drawn digit (true None) is never wrong."""
    titles = [("yours" if t is None else f"true {t}") + f"<br>pred {p}<br>{100 * c:.0f}%" + (" ✗" if t not in (None, p) else "")
              for t, p, c in zip(true, pred, conf, strict=True)]
    return titles, [t not in (None, p) for t, p in zip(true, pred, strict=True)]


def run_color(batchnorm: bool) -> str:
    """The shipped models' colours (baseline blue, BatchNorm red) wherever the two are shown side by side."""
    return COLORS["BN" if batchnorm else "no-BN"]


RUN_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
RUN_DASH = {True: "solid", False: "dash"}  # BatchNorm runs solid, runs without it dashed: colour is the run's own


def run_colors(names: list[str]) -> dict[str, str]:
    """One colour per run, in the order given (the same colour for a run in the table and in every chart)."""
    return {n: RUN_PALETTE[i % len(RUN_PALETTE)] for i, n in enumerate(dict.fromkeys(names))}


def smooth(values: list[float], window: int) -> np.ndarray:
    """Centred moving average over ``window`` points (odd), fewer at the ends: no lag behind a falling loss,
    unlike an exponential average. Non-finite values stay non-finite."""
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return v
    half = max(0, min(window // 2, (len(v) - 1) // 2))  # np.convolve "same" needs the kernel no longer than v
    kernel = np.ones(2 * half + 1)
    sums = np.convolve(v, kernel, mode="same")
    counts = np.convolve(np.ones_like(v), kernel, mode="same")
    return sums / counts


def thin(n: int, max_points: int = 2000) -> slice:
    """A stride that keeps at most ``max_points`` of ``n`` points (always keeping the first)."""
    return slice(None, None, max(1, -(-n // max_points)))


def _message_figure(text: str, height: int) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, font=dict(size=20, color="#555"), x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def training_curves_figure(runs: list[dict], colors: dict[str, str] | None = None, height: int = 460,
                           max_points: int = 2000) -> go.Figure:
    """Loss (log scale, decades labelled) and accuracy (%) of each run over optimisation steps: training loss per
    step (raw faint, centred average bold), validation loss and accuracy at each validation point, training
    accuracy over the steps since the point before. One colour per run; BatchNorm solid, without dashed."""
    if not any(r.get("steps") for r in runs):
        return _message_figure("No training step yet: the curves start with the first steps.", height)
    colors = colors or run_colors([r["name"] for r in runs])
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss (log scale)", "accuracy (%)"), horizontal_spacing=0.1)
    for run in runs:
        name, steps, vals = run["name"], run.get("steps") or [], validation_points(run)
        color, dash = colors[name], RUN_DASH[bool(run["config"]["batchnorm"])]
        x, raw = [s["step"] for s in steps], [s["loss"] for s in steps]
        keep = thin(len(x), max_points)
        line = dict(color=color, dash=dash)
        fig.add_trace(go.Scatter(x=x[keep], y=raw[keep], mode="lines", line=dict(color=color, width=1), opacity=0.25,
                                 legendgroup=name, showlegend=False, hoverinfo="skip"), row=1, col=1)
        fig.add_trace(go.Scatter(x=x[keep], y=smooth(raw, max(3, len(raw) // 25) | 1)[keep], mode="lines",
                                 line=dict(width=3, **line), name=f"{name}: training", legendgroup=name), row=1, col=1)
        vx = [v["step"] for v in vals]
        fig.add_trace(go.Scatter(x=vx, y=[v["val_loss"] for v in vals], mode="lines+markers", marker=dict(size=8, color=color),
                                 line=dict(width=2, **line), name=f"{name}: validation", legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=vx, y=[100 * v["val_accuracy"] for v in vals], mode="lines+markers",
                                 marker=dict(size=8, color=color), line=dict(width=3, **line), legendgroup=name,
                                 showlegend=False, name=f"{name}: validation"), row=1, col=2)
        fig.add_trace(go.Scatter(x=vx, y=[100 * v["train_accuracy"] for v in vals], mode="lines+markers",
                                 marker=dict(size=7, color=color, symbol="circle-open"), line=dict(width=1.5, color=color, dash="dot"),
                                 legendgroup=name, showlegend=False, name=f"{name}: training"), row=1, col=2)
    if not any(validation_points(r) for r in runs):
        fig.add_annotation(text="first validation soon", showarrow=False, font=dict(size=20, color="#555"),
                           xref="x2 domain", yref="y2 domain", x=0.5, y=0.5)
        fig.update_yaxes(showticklabels=False, row=1, col=2)
    fig.update_xaxes(title_text="optimisation step")
    fig.update_yaxes(type="log", dtick=1, row=1, col=1)  # a label at each decade only: 0.01, 0.1, 1
    fig.update_annotations(font=dict(size=20, color="#222"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), font=FONT,
                      legend=dict(orientation="h", y=-0.22, font=dict(size=16)))
    return fig


def confusion_figure(confusion: list[list[int]], title: str = "Confusion matrix (test set)") -> go.Figure:
    """10×10 counts, rows = true class, columns = predicted; the diagonal is left out of the colour
    scale so the few mistakes stay visible next to ~1,000 correct digits per class."""
    z = np.asarray(confusion, dtype=float)
    off = z.copy()
    np.fill_diagonal(off, np.nan)
    fig = go.Figure(go.Heatmap(z=off, x=list(range(10)), y=list(range(10)), colorscale=[[0, "#fff5f0"], [1, "#f4a582"]], showscale=True,
                               colorbar=dict(title="errors"), hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    fig.add_trace(go.Heatmap(z=np.where(np.eye(10, dtype=bool), z, np.nan), x=list(range(10)), y=list(range(10)),
                             colorscale=[[0, "#e8f4e8"], [1, "#e8f4e8"]], showscale=False,
                             hovertemplate="true %{y}, predicted %{x}: %{z} correct<extra></extra>"))
    text = [[f"{int(v)}" if v else "" for v in row] for row in z]
    fig.update_traces(text=text, texttemplate="%{text}", textfont=dict(size=13))
    fig.update_xaxes(title_text="predicted", dtick=1, side="top")
    fig.update_yaxes(title_text="true", dtick=1, autorange="reversed")
    fig.update_layout(title=title, height=520, margin=dict(l=10, r=10, t=90, b=10), font=FONT)
    return fig



def tile(maps: np.ndarray, cols: int, gap: int = 1) -> np.ndarray:
    """K×h×w maps → one (rows·(h+gap))×(cols·(w+gap)) array, maps in row-major order, NaN gaps."""
    k, h, w = maps.shape
    rows = -(-k // cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for i, m in enumerate(maps):
        r, c = divmod(i, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = m
    return out


def _grid_heatmap(tiled: np.ndarray, colorscale, zmin, zmax, title: str, height: int, zmid=None, colorbar: str = "") -> go.Figure:
    # float32: half the bytes of float64 in the figure sent to the browser (32 maps of 28×28: 106 KB instead of 212 KB
    # before base64, on every 2 s poll of the Train page's live view), far more precision than a colour shows.
    fig = go.Figure(go.Heatmap(z=np.asarray(tiled, dtype=np.float32), colorscale=colorscale, zmin=zmin, zmax=zmax, zmid=zmid, hoverongaps=False,
                               colorbar=dict(title=colorbar), hovertemplate="%{z:.3f}<extra></extra>"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=50, b=10), font=FONT,
                      plot_bgcolor="white")
    return fig


def filters_figure(kernels: np.ndarray, title: str, cols: int = 8, zmax: float | None = None, width: int = 600,
                   label: str = "weight") -> go.Figure:
    """K×k×k kernels in a grid on one diverging scale centred on 0 (blue −, red +), ``label`` on the colour bar. Pass
    ``zmax`` to share the scale with another figure."""
    zmax = float(np.abs(kernels).max()) if zmax is None else zmax
    tiled = tile(kernels, cols)
    height = 110 + int(width * tiled.shape[0] / tiled.shape[1])
    return _grid_heatmap(tiled, "RdBu_r", -zmax, zmax, title, height, zmid=0, colorbar=label)


def feature_maps_figure(maps: np.ndarray, title: str, per_map: bool, zmax: float | None = None, cols: int = 8,
                        width: int = 600) -> go.Figure:
    """C×H×W activations in a grid. ``per_map``: each map stretched to its own range (shapes);
    otherwise one scale for all (magnitudes), up to ``zmax`` when given (to share with another model)."""
    maps = np.asarray(maps, dtype=np.float64)
    if per_map:
        lo = maps.min(axis=(1, 2), keepdims=True)
        span = maps.max(axis=(1, 2), keepdims=True) - lo
        maps = np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1), 0.0)
        zmin, zmax, label = 0.0, 1.0, "per map"
    else:
        zmin = min(0.0, float(maps.min()))
        zmax = float(maps.max()) if zmax is None else zmax
        label = "activation"
    tiled = tile(maps, cols)
    return _grid_heatmap(tiled, "Viridis", zmin, zmax, title, 110 + int(width * tiled.shape[0] / tiled.shape[1]),
                         colorbar=label)


def occlusion_figure(images: np.ndarray, prob: np.ndarray, pred: np.ndarray, labels: list[str], patch: int,
                     stride: int) -> go.Figure:
    """Per image (one row): the digit, P(class of interest) as a function of the patch's top-left
    corner, and the predicted class under occlusion."""
    n = len(images)
    fig = make_subplots(rows=n, cols=3, horizontal_spacing=0.04, vertical_spacing=0.25 / max(n, 1),
                        subplot_titles=[t for lab in labels for t in (lab, "P(class of interest)", "predicted class")])
    cells = np.arange(prob.shape[1]) * stride
    for i in range(n):
        fig.add_trace(go.Heatmap(z=images[i], colorscale="gray", showscale=False, hoverinfo="skip"), row=i + 1, col=1)
        fig.add_trace(go.Heatmap(z=prob[i], x=cells, y=cells, zmin=0, zmax=1, colorscale="Viridis", showscale=i == 0,
                                 colorbar=dict(title="P", len=0.3, x=1.02, y=1, yanchor="top", tickformat=".1f"),
                                 hovertemplate="patch at row %{y}, col %{x}: P = %{z:.3f}<extra></extra>"),
                      row=i + 1, col=2)
        fig.add_trace(go.Heatmap(z=pred[i], x=cells, y=cells, zmin=-0.5, zmax=9.5, colorscale=_CLASS_COLORS,
                                 showscale=i == 0, colorbar=dict(title="class", tickvals=list(range(10)), len=0.3, x=1.12,
                                                                 y=1, yanchor="top"),
                                 hovertemplate="patch at row %{y}, col %{x}: predicted %{z}<extra></extra>"),
                      row=i + 1, col=3)
    square_cells(fig)
    fig.update_layout(height=230 * n + 90, margin=dict(l=10, r=120, t=80, b=10), font=FONT,
                      title=f"{patch}×{patch} patch, stride {stride}: each cell is the patch's top-left corner")
    return fig


def square_cells(fig: go.Figure) -> go.Figure:
    """Each subplot's y axis anchored to its own x axis (square pixels), image-style (row 0 on top). One layout
    update for all axes: plotly validates each call, and one call per axis cost a tenth of a second per figure."""
    names = [k for k in fig.layout if k.startswith(("xaxis", "yaxis"))]
    fig.update_layout({n: dict(scaleanchor=f"x{n[5:]}", autorange="reversed", showticklabels=False) if n[0] == "y"
                       else dict(showticklabels=False, constrain="domain") for n in names})
    return fig


CLASS_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
_CLASS_COLORS = [[v, c] for i, c in enumerate(CLASS_PALETTE) for v in (i / 10, (i + 1) / 10)]


# Blue for negative, red for positive, fully transparent at 0 so the digit shows through.
_SIGNED_OVERLAY = [[0.0, "rgba(33,102,172,0.95)"], [0.5, "rgba(255,255,255,0)"], [1.0, "rgba(214,39,40,0.95)"]]


def attribution_figure(images: np.ndarray, maps: dict[str, np.ndarray], labels: list[str]) -> go.Figure:
    """Per image (one row): the digit, then each attribution map blended over the digit."""
    n, methods = len(images), list(maps)
    short = [m.replace("Integrated Gradients", "Int. Gradients").replace(" (conv2)", "") for m in methods]
    fig = make_subplots(rows=n, cols=1 + len(methods), horizontal_spacing=0.03, vertical_spacing=0.25 / max(n, 1),
                        subplot_titles=[t for i in range(n) for t in (labels[i], *short)])
    for i in range(n):
        fig.add_trace(go.Heatmap(z=images[i], colorscale="gray", showscale=False, hoverinfo="skip"), row=i + 1, col=1)
        for j, m in enumerate(methods):
            a = maps[m][i]
            peak = float(np.abs(a).max()) or 1.0
            fig.add_trace(go.Heatmap(z=images[i], colorscale="gray", showscale=False, hoverinfo="skip"), row=i + 1, col=j + 2)
            fig.add_trace(go.Heatmap(z=a / peak, zmin=-1, zmax=1, colorscale=_SIGNED_OVERLAY, showscale=False,
                                     hovertemplate="%{z:.2f} of max<extra></extra>"), row=i + 1, col=j + 2)
    square_cells(fig)
    fig.update_layout(height=230 * n + 40, margin=dict(l=10, r=10, t=40, b=10), font=FONT)
    return fig


def occlusion_strip_figure(maps: dict[int, np.ndarray], stride: int, title: str) -> go.Figure:
    """P(class of interest) maps of one digit for several patch sizes, side by side on one 0–1 scale."""
    sizes = list(maps)
    fig = make_subplots(rows=1, cols=len(sizes), subplot_titles=[f"patch {p}×{p}" for p in sizes], horizontal_spacing=0.02)
    for j, p in enumerate(sizes):
        cells = np.arange(maps[p].shape[0]) * stride
        fig.add_trace(go.Heatmap(z=maps[p], x=cells, y=cells, zmin=0, zmax=1, colorscale="Viridis", showscale=j == 0,
                                 hovertemplate=f"patch {p}: top-left row %{{y}}, col %{{x}}: P = %{{z:.3f}}<extra></extra>"),
                      row=1, col=j + 1)
    square_cells(fig)
    fig.update_layout(title=title, height=260, margin=dict(l=10, r=10, t=70, b=10), font=FONT)
    return fig


def probability_bars(probs: dict[str, np.ndarray]) -> go.Figure:
    """Class probabilities of several models as grouped bars, one colour per model (``run_colors``)."""
    fig = go.Figure()
    colors = run_colors(list(probs))
    for name, p in probs.items():
        fig.add_trace(go.Bar(x=list(range(10)), y=100 * np.asarray(p), name=name, marker_color=colors[name],
                             text=[f"{100 * v:.0f}%" if v >= 0.05 else "" for v in p], textposition="outside",
                             hovertemplate="class %{x}: %{y:.1f}%<extra></extra>"))
    fig.update_layout(barmode="group", height=380, margin=dict(l=10, r=10, t=40, b=10), font=FONT,
                      xaxis=dict(title="class", dtick=1), yaxis=dict(title="probability (%)", range=[0, 110]),
                      legend=dict(orientation="h", y=1.08, x=0))
    return fig
