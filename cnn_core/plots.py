"""Figures as pure functions: data in, plotly Figure out (no streamlit here)."""

from __future__ import annotations

import base64
import csv
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from .compare import validation_points
from .store import SHIPPED_RUNS

WRONG = "#d62728"  # the frame and title of a wrongly classified digit
# Every chart text is at least 16 px (issue 14: legible on a projector at 1920 px), in a font installed on the machine
# that draws it: in the app's own web font ("Source Sans"), a chart saved as SVG or PNG (which plotly draws from an
# SVG, without the page's fonts) fell back to a wider font, and its legend ran out of the picture ("FGSl").
# Liberation Sans (Debian, with Chromium) has Arial's metrics, so both draw the same widths.
FONT = dict(size=16, family="Arial, 'Liberation Sans', Helvetica, sans-serif")
# Streamlit's chart theme draws what a figure does not size at 12 px (ticks) or 14 px (axis titles): visible axes and
# colour bars size theirs with these.
TICKS = dict(tickfont=FONT, title_font=FONT)  # for a visible axis: update_xaxes(**TICKS) or dict(..., **TICKS)


def colorbar(title: str = "", **kw) -> dict:
    """A trace's colour bar with its ticks and title at FONT."""
    return dict(tickfont=FONT, title=dict(text=title, font=FONT), **kw)


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
    title_px = 22 * (1 + max((t.count("<br>") for t in titles), default=0)) + 10  # above each row: its titles, the frame
    # Built as one dict and validated once: plotly validates every update, and styling the cells one call at a time
    # (update_xaxes(row=, col=) per wrong digit) took 0.17 s for 18 digits, against 0.04 s this way (0.01 s since
    # image_cells replaced make_subplots).
    layout, height, tops = image_cells(rows, cols, cell_px, [title_px] * rows)
    edge = dict(visible=True, showticklabels=False, ticks="", showgrid=False, zeroline=False, mirror=True, linewidth=4,
                showline=frame is not None, linecolor=frame or "white")
    for name, axis in layout.items():  # empty cells too
        axis.update(edge)
        axis.pop("autorange", None)  # ranges fixed to the image's pixels: the frame hugs the digit, with no padding
        axis["range"] = [-0.5, 27.5] if name[0] == "x" else [27.5, -0.5]
    for i in (i for i, w in enumerate(wrong) if w):
        for axis in ("xaxis", "yaxis"):
            layout[f"{axis}{axis_suffix(i)}"].update(showline=True, linecolor=WRONG)
    notes = [title_note(t, column_centre(layout, i), tops[i // cols], color=WRONG if w else "black",
                        yshift=4)  # clear of the 4-px frame
             for i, (t, w) in enumerate(zip(titles, wrong, strict=False))]
    # pad 0: Streamlit's theme pads the axis lines 8 px off the plot, which put each frame over the title above it.
    layout.update(annotations=notes, height=height + 30, margin=dict(l=10, r=10, t=10, b=10, pad=0), showlegend=False)
    data = [dict(type="image", z=np.repeat((np.clip(img, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2),
                 hoverinfo="skip", xaxis=f"x{axis_suffix(i)}", yaxis=f"y{axis_suffix(i)}")
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
                 cell_px: int = 90, frame: str = "#999999", row_labels: list[str] | None = None,
                 col_labels: list[str] | None = None) -> go.Figure:
    """``digit_grid`` for many digits (the 10×10 grid): one image of all digits (3× nearest-neighbour, a frame each,
    red when wrong) and one title above each as an annotation; ``row_labels`` on the left and ``col_labels`` on top if
    given. A figure of 100 subplots took 0.5 s to build and 2.5 s for the browser to draw; this one is a single raster
    and text."""
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
                                yanchor="bottom", font=dict(size=FONT["size"], color=WRONG if bad else "black")))
    png = io.BytesIO()
    Image.fromarray(mosaic).save(png, format="PNG")  # as a PNG: the same pixels as a list of numbers were 10 MB of JSON
    fig = go.Figure(go.Image(source="data:image/png;base64," + base64.b64encode(png.getvalue()).decode(), hoverinfo="skip"))
    for r, label in enumerate(row_labels or []):
        annotations.append(dict(text=f"<b>{label}</b>", x=0, xref="paper", xanchor="right", xshift=-6, showarrow=False,
                                y=r * step_y + band + cell / 2, yref="y", font=FONT))
    for c, label in enumerate(col_labels or []):
        annotations.append(dict(text=f"<b>{label}</b>", x=c * step_x + cell / 2, xref="x", y=1, yref="paper",
                                yanchor="bottom", yshift=4, showarrow=False, font=FONT))
    width_px = cols * (cell_px + 8)
    fig.update_layout(annotations=annotations, height=int(width_px * mosaic.shape[0] / mosaic.shape[1]) + 20 +
                      (30 if col_labels else 0), xaxis=dict(visible=False), yaxis=dict(visible=False),
                      margin=dict(l=70 if row_labels else 0, r=0, t=40 if col_labels else 10, b=10))
    return fig


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def prediction_titles(true: list[int | None], pred: list[int], conf: list[float]) -> tuple[list[str], list[bool]]:
    """'true 7<br>pred 7<br>99%' titles (short lines: they fit five digits across half a screen) and the
    wrong-mask for ``digit_grid``; a drawn digit (true None) is never wrong."""
    titles = [("yours" if t is None else f"true {t}") + f"<br>pred {p}<br>{100 * c:.0f}%" + (" ✗" if t not in (None, p) else "")
              for t, p, c in zip(true, pred, conf, strict=True)]
    return titles, [t not in (None, p) for t, p in zip(true, pred, strict=True)]


RUN_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
# The shipped runs keep one colour in every chart, the app's and the report's: baseline blue, BatchNorm red (the
# palette's first two, as a Train pair gets them), adversarially trained green.
SHIPPED_COLORS = dict(zip(SHIPPED_RUNS, RUN_PALETTE, strict=False))
RUN_DASH = {True: "solid", False: "dash"}  # BatchNorm runs solid, runs without it dashed: colour is the run's own


def run_colors(names: list[str]) -> dict[str, str]:
    """One colour per run (the same for a run in the table and in every chart): a shipped run its own; the others the
    palette's in the order given, from its start (a Train pair: blue, red), or past the shipped runs' colours when one
    is shown beside them."""
    names = list(dict.fromkeys(names))
    shipped = any(n in SHIPPED_COLORS for n in names)
    free = [c for c in RUN_PALETTE if not (shipped and c in SHIPPED_COLORS.values())]
    others = [n for n in names if n not in SHIPPED_COLORS]
    return {n: SHIPPED_COLORS.get(n) or free[others.index(n) % len(free)] for n in names}


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
    fig.update_xaxes(title_text="optimisation step", **TICKS)
    fig.update_yaxes(**TICKS)
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
                               colorbar=colorbar("errors"), hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    fig.add_trace(go.Heatmap(z=np.where(np.eye(10, dtype=bool), z, np.nan), x=list(range(10)), y=list(range(10)),
                             colorscale=[[0, "#e8f4e8"], [1, "#e8f4e8"]], showscale=False,
                             hovertemplate="true %{y}, predicted %{x}: %{z} correct<extra></extra>"))
    text = [[f"{int(v)}" if v else "" for v in row] for row in z]
    fig.update_traces(text=text, texttemplate="%{text}", textfont=FONT)
    fig.update_xaxes(title_text="predicted", dtick=1, side="top", **TICKS)
    fig.update_yaxes(title_text="true", dtick=1, autorange="reversed", **TICKS)
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


def _grid_heatmap(maps: np.ndarray, cols: int, what: str, colorscale, zmin, zmax, title: str, width: int, zmid=None,
                  scale_label: str = "") -> go.Figure:
    """K maps tiled ``cols`` across as one heatmap, numbered by the axes (row label + column label, at 16 px: numbers
    on the tiles covered a 3×3 filter's corner at that size) and named in the hover ('filter 3: 0.120')."""
    tiled = tile(maps, cols)
    k, h, w = maps.shape
    rows = -(-k // cols)
    index = tile(np.broadcast_to(np.arange(k, dtype=np.float32)[:, None, None], maps.shape), cols)
    # float32: half the bytes of float64 in the figure sent to the browser (32 maps of 28×28: 106 KB instead of 212 KB
    # before base64, on every 2 s poll of the Train page's live view), far more precision than a colour shows.
    fig = go.Figure(go.Heatmap(z=np.asarray(tiled, dtype=np.float32), customdata=index, colorscale=colorscale, zmin=zmin,
                               zmax=zmax, zmid=zmid, hoverongaps=False, colorbar=colorbar(scale_label),
                               hovertemplate=f"{what} %{{customdata:.0f}}: %{{z:.3f}}<extra></extra>"))
    numbered = k <= 64  # more would crowd the axes: the hover names each one
    fig.update_xaxes(visible=numbered, showgrid=False, zeroline=False, ticks="", side="top", constrain="domain", tickvals=[
        c * (w + 1) + (w - 1) / 2 for c in range(cols)], ticktext=[f"+{c}" if rows > 1 else str(c) for c in range(cols)],
        **TICKS)
    fig.update_yaxes(visible=numbered, showgrid=False, zeroline=False, ticks="", autorange="reversed", scaleanchor="x",
                     constrain="domain",  # the plot area shrinks to the tiles, so the numbers stay beside them
                     tickvals=[r * (h + 1) + (h - 1) / 2 for r in range(rows)], ticktext=[str(r * cols) for r in range(rows)],
                     **TICKS)
    fig.update_layout(title=title, height=126 + int(width * tiled.shape[0] / tiled.shape[1]),
                      margin=dict(l=10, r=10, t=86, b=10), font=FONT, plot_bgcolor="white")
    return fig


def filters_figure(kernels: np.ndarray, title: str, cols: int = 8, zmax: float | None = None, width: int = 600,
                   label: str = "weight", what: str = "filter") -> go.Figure:
    """K×k×k kernels in a grid on one diverging scale centred on 0 (blue −, red +), ``label`` on the colour bar, each
    numbered as ``what``. Pass ``zmax`` to share the scale with another figure."""
    zmax = float(np.abs(kernels).max()) if zmax is None else zmax
    return _grid_heatmap(np.asarray(kernels), cols, what, "RdBu_r", -zmax, zmax, title, width, zmid=0, scale_label=label)


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
    return _grid_heatmap(maps, cols, "map", "Viridis", zmin, zmax, title, width, scale_label=label)


def image_cells(rows: int, cols: int, cell_px: int, band_px: list[int], gap: float = 0.02) -> tuple[dict, int, list]:
    """Axes of a ``rows``×``cols`` grid of square image cells, row 0 on top, ``band_px[r]`` pixels of room above row r
    for its titles: (layout dict of xaxis…/yaxis… with hidden ticks, the plot's height in pixels, per row the y of its
    cells' top edge in paper units). Built by hand in well under a millisecond; ``make_subplots`` took 40 ms for 30
    cells, and every title placed by pixels here cannot collide with the row above."""
    height = rows * cell_px + sum(band_px)
    width = (1 - gap * (cols - 1)) / cols
    layout, tops, y = {}, [], 0
    for r in range(rows):
        y += band_px[r]
        top = 1 - y / height
        tops.append(top)
        y += cell_px
        for c in range(cols):
            s = axis_suffix(r * cols + c)
            x0 = c * (width + gap)
            layout[f"xaxis{s}"] = dict(domain=[x0, x0 + width], anchor=f"y{s}", visible=False, constrain="domain")
            layout[f"yaxis{s}"] = dict(domain=[max(0.0, top - cell_px / height), top], anchor=f"x{s}", visible=False,
                                       scaleanchor=f"x{s}", autorange="reversed", constrain="domain")
    return layout, height, tops


def axis_suffix(i: int) -> str:
    """The axis suffix of cell i (0-based): '', '2', '3', …"""
    return "" if i == 0 else str(i + 1)


def title_note(text: str, x: float, y: float, size: int = FONT["size"], color: str = "black", **kw) -> dict:
    """A title in paper units, centred above (x, y) unless ``kw`` says otherwise."""
    return {**dict(text=text, x=x, y=y, xref="paper", yref="paper", showarrow=False, xanchor="center", yanchor="bottom",
                   font=dict(size=size, color=color)), **kw}


def column_centre(layout: dict, i: int) -> float:
    """The middle of cell i's column, in paper units (for a title over it)."""
    return sum(layout[f"xaxis{axis_suffix(i)}"]["domain"]) / 2


def occlusion_figure(images: np.ndarray, prob: np.ndarray, pred: np.ndarray, labels: list[str], patch: int,
                     stride: int, cell_px: int = 170) -> go.Figure:
    """Per image (one row, its ``labels`` entry above it, left-aligned so that a long one is never clipped): the digit,
    P(class of interest) as a function of the patch's top-left corner, and the predicted class under occlusion. The
    column titles and the two colour bars (horizontal, one over each column) sit on top, out of the rows' way."""
    n, band = len(images), 30
    layout, height, tops = image_cells(n, 3, cell_px, [band] * n, gap=0.04)
    cells = (np.arange(prob.shape[1]) * stride).tolist()
    width = layout["xaxis"]["domain"][1]  # of a column
    bar = dict(orientation="h", x=column_centre(layout, 1), xanchor="center", len=width, thickness=12, y=1 + 8 / height,
               yanchor="bottom", tickfont=FONT)
    data, notes = [], []
    for i in range(n):
        a = [axis_suffix(3 * i + j) for j in range(3)]
        data += [dict(type="heatmap", z=images[i], colorscale="gray", showscale=False, hoverinfo="skip"),
                 dict(type="heatmap", z=prob[i], x=cells, y=cells, zmin=0, zmax=1, colorscale="Viridis", showscale=i == 0,
                      colorbar=dict(bar, tickformat=".1f"),
                      hovertemplate="patch at row %{y}, col %{x}: P = %{z:.3f}<extra></extra>"),
                 dict(type="heatmap", z=pred[i], x=cells, y=cells, zmin=-0.5, zmax=9.5, colorscale=_CLASS_COLORS,
                      showscale=i == 0, colorbar=dict(bar, x=column_centre(layout, 2), tickvals=list(range(10))),
                      hovertemplate="patch at row %{y}, col %{x}: predicted %{z}<extra></extra>")]
        for trace, s in zip(data[-3:], a, strict=True):
            trace.update(xaxis=f"x{s}", yaxis=f"y{s}")
        notes.append(title_note(labels[i], 0, tops[i], xanchor="left", yshift=3))
    notes += [title_note(t, column_centre(layout, j), 1 + 56 / height) for j, t in
              enumerate(("digit", "P(class of interest)", "predicted class"))]
    # The figure's title as a note (left, two short lines): a layout title sat partly outside Streamlit's chart frame.
    notes.append(title_note(f"<b>{patch}×{patch} patch, stride {stride}</b><br>each map cell: where the patch's top-left "
                            "corner was", 0, 1 + 90 / height, xanchor="left", align="left"))
    layout.update(annotations=notes, height=height + 160, margin=dict(l=10, r=10, t=150, b=10), font=FONT,
                  plot_bgcolor="white")
    return go.Figure(dict(data=data, layout=layout))


CLASS_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
_CLASS_COLORS = [[v, c] for i, c in enumerate(CLASS_PALETTE) for v in (i / 10, (i + 1) / 10)]


# Blue for negative, red for positive, fully transparent at 0 so the digit shows through.
_SIGNED_OVERLAY = [[0.0, "rgba(33,102,172,0.95)"], [0.5, "rgba(255,255,255,0)"], [1.0, "rgba(214,39,40,0.95)"]]


def attribution_figure(images: np.ndarray, maps: dict[str, np.ndarray], labels: list[str], cell_px: int = 170) -> go.Figure:
    """Per image (one row, its ``labels`` entry above it): the digit, then each attribution map blended over the digit,
    scaled to its own largest |value| (the colour bar on top: blue against the class, red for it)."""
    n, methods = len(images), list(maps)
    images = np.asarray(images, np.float32)  # float32: half the bytes to the browser of float64, ample for colours
    short = [m.replace("Integrated Gradients", "Int. Gradients").replace(" (conv2)", "") for m in methods]
    cols = 1 + len(methods)
    layout, height, tops = image_cells(n, cols, cell_px, [26] * n, gap=0.03)
    right = layout[f"xaxis{axis_suffix(cols - 1)}"]["domain"][1]
    bar = dict(orientation="h", x=(layout["xaxis2"]["domain"][0] + right) / 2 if cols > 1 else 0.5, xanchor="center",
               len=0.5, thickness=12, y=1 + 8 / height, yanchor="bottom", tickfont=FONT,
               tickvals=[-1, 0, 1], ticktext=["−max (against)", "0", "+max (for)"])
    data, notes = [], []
    for i in range(n):
        data.append(dict(type="heatmap", z=images[i], colorscale="gray", showscale=False, hoverinfo="skip",
                         xaxis=f"x{axis_suffix(i * cols)}", yaxis=f"y{axis_suffix(i * cols)}"))
        for j, m in enumerate(methods):
            a = maps[m][i]
            s = axis_suffix(i * cols + j + 1)
            data += [dict(type="heatmap", z=images[i], colorscale="gray", showscale=False, hoverinfo="skip",
                          xaxis=f"x{s}", yaxis=f"y{s}"),
                     dict(type="heatmap", z=(a / (float(np.abs(a).max()) or 1.0)).astype(np.float32), zmin=-1, zmax=1, colorscale=_SIGNED_OVERLAY,
                          showscale=i == 0 and j == 0, colorbar=bar, hovertemplate="%{z:.2f} of max<extra></extra>",
                          xaxis=f"x{s}", yaxis=f"y{s}")]
        notes.append(title_note(labels[i], 0, tops[i], xanchor="left"))
    notes += [title_note(t, column_centre(layout, j), 1 + 64 / height) for j, t in enumerate(("digit", *short))]
    layout.update(annotations=notes, height=height + 106, margin=dict(l=10, r=10, t=96, b=10), font=FONT,
                  plot_bgcolor="white")
    return go.Figure(dict(data=data, layout=layout))


def occlusion_strip_figure(maps: dict[int, np.ndarray], stride: int, title: str, cell_px: int = 130) -> go.Figure:
    """P(class of interest) maps of one digit for several patch sizes, side by side on one 0–1 scale."""
    sizes = list(maps)
    layout, height, tops = image_cells(1, len(sizes), cell_px, [26], gap=0.02)
    data = [dict(type="heatmap", z=maps[p], x=(np.arange(maps[p].shape[0]) * stride).tolist(),
                 y=(np.arange(maps[p].shape[0]) * stride).tolist(), zmin=0, zmax=1, colorscale="Viridis",
                 showscale=j == 0, colorbar=colorbar(thickness=12, len=1, tickformat=".1f"),
                 hovertemplate=f"patch {p}: top-left row %{{y}}, col %{{x}}: P = %{{z:.3f}}<extra></extra>",
                 xaxis=f"x{axis_suffix(j)}", yaxis=f"y{axis_suffix(j)}") for j, p in enumerate(sizes)]
    layout.update(annotations=[title_note(f"patch {p}×{p}", column_centre(layout, j), tops[0]) for j, p in enumerate(sizes)],
                  title=title, height=height + 60, margin=dict(l=10, r=10, t=50, b=10), font=FONT, plot_bgcolor="white")
    return go.Figure(dict(data=data, layout=layout))


def probability_bars(probs: dict[str, np.ndarray]) -> go.Figure:
    """Class probabilities of several models as grouped bars, one colour per model (``run_colors``)."""
    fig = go.Figure()
    colors = run_colors(list(probs))
    for name, p in probs.items():
        fig.add_trace(go.Bar(x=list(range(10)), y=100 * np.asarray(p), name=name, marker_color=colors[name],
                             text=[f"{100 * v:.0f}%" if v >= 0.05 else "" for v in p], textposition="outside",
                             textangle=-90 if len(probs) > 1 else 0,  # side by side, level labels ran together
                             hovertemplate="class %{x}: %{y:.1f}%<extra></extra>"))
    fig.update_layout(barmode="group", height=380, margin=dict(l=10, r=10, t=40, b=10), font=FONT,
                      xaxis=dict(title="class", dtick=1, **TICKS),
                      yaxis=dict(title="probability (%)", range=[0, 125 if len(probs) > 1 else 110], tickvals=[0, 25, 50, 75, 100],
                                 **TICKS),
                      legend=dict(orientation="h", y=1.08, x=0))
    return fig


MIN_FONT_PX = 16  # the smallest chart text a projector at 1920 px still shows legibly (issue 14)
# What Streamlit's chart theme draws a figure's unsized ticks ("tickfont") and axis or colour-bar titles ("font") at;
# builders size these with TICKS and colorbar().
THEMED_PX = {"tickfont": 12, "font": 14}


def _fonts(spec: dict):
    """(path, font dict, px the theme draws it at when its size is unset, else None) for every font of a figure's
    dict: explicit fonts anywhere, and the ticks and titles of visible axes and shown colour bars (added empty)."""
    layout, themed = spec["layout"], {}
    for t in spec["data"]:  # the axes a trace draws on exist even when the layout does not name them
        for ref in (t.get("xaxis", "x"), t.get("yaxis", "y")):
            layout.setdefault(f"{ref[0]}axis{ref[1:]}", {})
    shown = [v for k, v in layout.items() if k.startswith(("xaxis", "yaxis")) and v.get("visible", True)]
    shown += [t.setdefault("colorbar", {}) for t in spec["data"] if t.get("type") == "heatmap" and t.get("showscale", True)]
    for node in shown:
        if node.get("showticklabels", True):
            themed[id(node.setdefault("tickfont", {}))] = THEMED_PX["tickfont"]
        if node.get("title", {}).get("text"):
            themed[id(node["title"].setdefault("font", {}))] = THEMED_PX["font"]

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith("font") and isinstance(value, dict):
                    yield f"{path}.{key}", value, themed.get(id(value))
                else:
                    yield from walk(value, f"{path}.{key}")
        elif isinstance(node, list | tuple):
            for i, item in enumerate(node):
                yield from walk(item, f"{path}[{i}]")

    yield from walk({k: v for k, v in layout.items() if k != "template"}, "layout")
    yield from walk(spec["data"], "data")


def scaled_fonts(fig: go.Figure, k: float) -> go.Figure:
    """A copy of ``fig`` with every font ``k``× larger (presenter mode): the default font (plotly's 12 where unset) and
    every explicit size below it — titles, annotations, ticks, colour bars, legends, trace text."""
    spec = fig.to_dict()
    for _, font, _ in _fonts(spec):
        if "size" in font:
            font["size"] = round(font["size"] * k, 1)
    spec["layout"].pop("template", None)  # the template's sizes stay (the app's theme sets its own)
    spec["layout"].setdefault("font", {}).setdefault("size", round(12 * k, 1))
    return go.Figure(spec)


def small_fonts(fig: go.Figure, px: float = MIN_FONT_PX) -> list[str]:
    """Where ``fig`` shows text smaller than ``px``: explicit sizes, and unsized ticks and titles of visible axes and
    colour bars (which the theme draws at 12–14 px). Empty for a figure fit for a projector."""
    spec = fig.to_dict()
    default = spec["layout"].get("font", {}).get("size", 12)
    return [f"{path}: {size}" for path, font, themed in _fonts(spec)
            if (size := font.get("size", themed or default)) < px]


def _number(v) -> str:
    return "" if v is None or v != v else f"{float(v):.6g}"  # v != v: NaN


def figure_csv(fig: go.Figure) -> str:
    """The numbers a figure draws, as one long CSV table (for slides and spreadsheets): a row per point of a line or
    bar (x, y), a row per cell of a heatmap (row, column, its x and y labels when it has them, value; gaps left out).
    Raster images (the 10×10 mosaic) have no numbers here: their pixels are in the PNG."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["trace", "name", "type", "row", "col", "x", "y", "value"])
    for i, t in enumerate(fig.data):
        name = t.name or ""
        if t.type == "heatmap" and t.z is not None:
            z = np.asarray(t.z, dtype=float)
            xs = t.x if t.x is not None else range(z.shape[1])
            ys = t.y if t.y is not None else range(z.shape[0])
            for (r, c), v in np.ndenumerate(z):
                if not np.isnan(v):
                    w.writerow([i, name, t.type, r, c, xs[c], ys[r], _number(v)])
        elif t.type in ("scatter", "bar"):
            for j, (x, y) in enumerate(zip(t.x if t.x is not None else range(len(t.y)), t.y, strict=True)):
                w.writerow([i, name, t.type, j, "", x, _number(y), ""])
    return out.getvalue()
