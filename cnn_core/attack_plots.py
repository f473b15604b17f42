"""Figures of the attack pages: image rows, cost curves, noises and perturbations, the transfer matrix,
robustness curves."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from cnn_core.plots import (
    CLASS_PALETTE,
    FONT,
    TICKS,
    axis_suffix,
    colorbar,
    column_centre,
    digit_grid,
    digit_mosaic,
    image_cells,
    thin,
    title_note,
)
from cnn_core.robust import RobustnessCurves
from cnn_core.robust_attacks import ATTACKS


def images_figure(images: np.ndarray, titles: list[str], wrong: list[bool] | None = None, cols: int = 10,
                  cell_px: int = 110, row_labels: list[str] | None = None, col_labels: list[str] | None = None
                  ) -> go.Figure:
    """0–255 images in a grid (values outside [0, 255], possible without the clamp, shown clipped); many images as one
    raster (``digit_mosaic``, with its row and column labels)."""
    if len(images) > 20:
        return digit_mosaic(np.clip(images, 0, 255).astype(np.float32) / 255.0, titles, wrong, cols=cols, cell_px=cell_px,
                            row_labels=row_labels, col_labels=col_labels)
    return digit_grid(np.clip(images, 0, 255).astype(np.float32) / 255.0, titles, wrong, cols=cols, cell_px=cell_px,
                      frame="#999999")


def ascent_titles(predicted, confidence) -> tuple[list[str], list[bool]]:
    """Titles 'target t / → predicted, confidence' of an ascent's 10 images (image t was pushed towards class t) and
    which did not reach their target (drawn red): the Attack playground and the report show them alike."""
    titles = [f"target {t}<br>→ {p}, {100 * c:.0f}%" for t, (p, c) in enumerate(zip(predicted, confidence, strict=True))]
    return titles, [int(p) != t for t, p in enumerate(predicted)]


def cost_curves_figure(costs: np.ndarray, labels: list[str], title: str, yaxis: str = "cost C") -> go.Figure:
    """One line per column of ``costs`` ((steps + 1)×B), coloured by class when there are 10."""
    fig = go.Figure()
    steps = np.arange(len(costs))
    keep = thin(len(costs), 500)
    for i, label in enumerate(labels):
        fig.add_trace(go.Scatter(x=steps[keep], y=costs[keep, i], name=label, mode="lines",
                                 line=dict(color=CLASS_PALETTE[i % 10], width=2.5)))
    fig.update_layout(title=title, height=380, margin=dict(l=10, r=10, t=50, b=10), font=FONT,
                      xaxis=dict(title="step", **TICKS), yaxis=dict(title=yaxis, **TICKS), legend=dict(font=FONT))
    return fig


def perturbation_figure(rows: list[tuple[str, np.ndarray, bool]], titles: list[str], pixel_max: float = 255.0,
                        unit: str = "grey levels", cell_px: int = 110) -> go.Figure:
    """One column per example (``titles`` on top), one row per (label, N×28×28 arrays, signed), the label on the left:
    signed rows (a noise or a perturbation) on one diverging scale centred on 0 (blue −, red +, its colour bar on the
    right of the row), the others as grey images in [0, pixel_max]."""
    n = len(titles)
    title_px = 19 * (1 + max(t.count("<br>") for t in titles)) + 8
    layout, height, tops = image_cells(len(rows), n, cell_px, [title_px] + [8] * (len(rows) - 1), gap=0.015)
    data, notes = [], []
    for i, (label, arrays, signed) in enumerate(rows):
        zmax = float(np.abs(arrays).max()) or 1.0
        middle = tops[i] - cell_px / height / 2
        for j in range(n):
            trace = dict(type="heatmap", z=arrays[j], xaxis=f"x{axis_suffix(i * n + j)}", yaxis=f"y{axis_suffix(i * n + j)}")
            if signed:
                trace.update(zmin=-zmax, zmax=zmax, zmid=0, colorscale="RdBu_r", showscale=j == 0,
                             colorbar=colorbar(unit, x=1.005, xanchor="left", y=middle, yanchor="middle",
                                               len=cell_px / height, thickness=12, nticks=3),  # 3 fit one cell at 16 px
                             hovertemplate="%{z:.3g}<extra></extra>")
            else:
                trace.update(zmin=0, zmax=pixel_max, colorscale="gray", showscale=False,
                             hovertemplate="pixel %{z:.3g}<extra></extra>")
            data.append(trace)
        notes.append(title_note(label, 0, middle, xanchor="right", yanchor="middle", xshift=-8))
    notes += [title_note(t, column_centre(layout, j), tops[0]) for j, t in enumerate(titles)]
    left = 20 + 11 * max(len(label) for label, _, _ in rows)  # room for the row labels, also at presenter size
    layout.update(annotations=notes, height=height + 20, margin=dict(l=left, r=80, t=10, b=10), font=FONT,
                  plot_bgcolor="white")
    return go.Figure(dict(data=data, layout=layout))


DASH_WORDS = {"solid": "solid", "dash": "dashed", "dot": "dotted", "dashdot": "dash-dotted", "longdash": "long dashes"}


def robustness_figure(curves: dict[str, RobustnessCurves], colors: dict[str, str]) -> go.Figure:
    """Accuracy against the L∞ budget ε for several models: one colour per model, one line style per attack (its
    ``dash`` in the registry), in the registry's order."""
    fig = go.Figure()
    shown = [a for a in ATTACKS.values() if any(a.name in c.accuracy for c in curves.values())]
    for name, c in curves.items():
        for a in shown:
            if a.name in c.accuracy:
                fig.add_trace(go.Scatter(x=c.epsilons, y=[100 * v for v in c.accuracy[a.name]], name=f"{name} — {a.label}",
                                         mode="lines+markers", line=dict(color=colors[name], dash=a.dash, width=3),
                                         hovertemplate="ε = %{x}: %{y:.1f}%<extra></extra>"))
    ticks = sorted({e for c in curves.values() for e in c.epsilons})
    styles = ", ".join(f"{a.label} {DASH_WORDS.get(a.dash, a.dash)}" for a in shown)
    fig.update_layout(height=450, margin=dict(l=10, r=10, t=50, b=10), font=FONT, legend=dict(font=FONT),
                      title=f"Accuracy under attack ({styles})",
                      xaxis=dict(title="ε (pixels in [0, 1]; in grey levels /255 below)", tickvals=ticks,
                                 ticktext=[f"{e:g}<br>{round(255 * e)}/255" for e in ticks], **TICKS),
                      yaxis=dict(title="accuracy (%)", range=[0, 101], **TICKS))
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
                               customdata=np.stack(np.meshgrid(example_labels, targets), axis=-1),
                               hovertemplate="a %{customdata[0]} + the noise for %{customdata[1]}: predicted %{text}"
                                             "<extra></extra>"))
    # The example that already is the noise's target (not counted) framed in black.
    fig.update_layout(shapes=[dict(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, line=dict(width=3))
                              for i, t in enumerate(targets) for j, c in enumerate(example_labels) if t == c])
    fig.update_yaxes(autorange="reversed", title="noise made for target", tickvals=list(range(len(targets))),
                     ticktext=[str(t) for t in targets], **TICKS)
    fig.update_xaxes(title="added to a test digit of class (framed: already the target)", side="top",
                     tickvals=list(range(len(example_labels))), ticktext=[str(c) for c in example_labels], **TICKS)
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
    # Built as lists and validated once in go.Figure (as digit_grid): one add_trace / add_annotation at a time validated
    # the growing figure on every call.
    data, notes, layout = [], [], {}
    for j in range(cells):
        axis = axis_suffix(j)
        data.append(dict(type="heatmap", z=(clean, adv)[j % 2], zmin=0, zmax=1, colorscale="gray", showscale=False,
                         hoverinfo="skip", xaxis=f"x{axis}", yaxis=f"y{axis}"))
        below = predictions[j % 2] if j < 2 else f"for {classes[j % 2]}"
        if j >= 2:
            m = methods[(j - 2) // 2]
            data.append(dict(type="heatmap", z=maps[m][j % 2], zmin=0, zmax=float(peaks[m]) or 1.0,
                             colorscale=_ATTRIBUTION_OVERLAY, showscale=j % 2 == 1, xaxis=f"x{axis}", yaxis=f"y{axis}",
                             colorbar=dict(x=domains[j][1] + 0.004, xanchor="left", y=bottom, yanchor="bottom",
                                           len=top - bottom, thickness=12, tickformat=".2g", tickfont=FONT),
                             hovertemplate="%{z:.3g}<extra></extra>"))
        layout[f"xaxis{axis}"] = dict(domain=domains[j], visible=False, constrain="domain")
        layout[f"yaxis{axis}"] = dict(domain=[bottom, top], visible=False, scaleanchor=f"x{axis}", autorange="reversed",
                                      constrain="domain")
        middle = sum(domains[j]) / 2
        notes += [title_note(("clean", "adversarial")[j % 2], middle, top, color="#444", yshift=2),
                  title_note(below, middle, bottom, yanchor="top", yshift=-2)]
        if j % 2 == 0:
            notes.append(title_note(f"<b>{'image' if j == 0 else methods[(j - 2) // 2]}</b>",
                                    (domains[j][0] + domains[j + 1][1]) / 2, 1, yanchor="top"))
    layout.update(annotations=notes, height=height, margin=dict(l=4, r=4, t=4, b=4), font=FONT, plot_bgcolor="white")
    return go.Figure(dict(data=data, layout=layout))



def stacked_rows(figures: list[go.Figure], titles: list[str], title_px: int = 30) -> go.Figure:
    """One figure of single-row figures (their axes, traces, paper-placed notes and colour bars) one below the other,
    each under its ``titles`` line: the browser draws one plot instead of one per row (Robustness lab: 12 rows for two
    models were 12 plots). Each figure's own margins are dropped; its height is kept."""
    heights = [f.layout.height for f in figures]
    total = sum(heights) + title_px * len(figures)
    data, notes, layout, top, offset = [], [], {}, 0, 0

    for fig, h, title in zip(figures, heights, titles, strict=True):
        spec = fig.to_dict()
        top += title_px

        def y(v, top=top, h=h):  # this row's paper y → the stack's
            return 1 - (top + (1 - v) * h) / total

        names = sorted(int(k[5:] or 1) for k in spec["layout"] if k.startswith("xaxis"))

        def ref(r: str, offset=offset) -> str:  # this row's axis reference → the stack's ("x3" → "x13")
            return r[0] + axis_suffix(int(r[1:] or 1) + offset - 1)
        for trace in spec["data"]:
            trace["xaxis"], trace["yaxis"] = ref(trace.get("xaxis", "x")), ref(trace.get("yaxis", "y"))
            if "colorbar" in trace:
                bar = trace["colorbar"]
                bar["y"], bar["len"] = y(bar.get("y", 0.5)), bar.get("len", 1) * h / total
            data.append(trace)
        for n in names:
            for a in "xy":
                axis = dict(spec["layout"][f"{a}axis{axis_suffix(n - 1)}"])
                if a == "y":
                    axis["domain"] = [y(v) for v in axis["domain"]]
                for key in ("anchor", "scaleanchor"):
                    if key in axis:
                        axis[key] = ref(axis[key])
                layout[f"{a}axis{axis_suffix(n + offset - 1)}"] = axis
        notes += [{**a, "y": y(a["y"])} for a in spec["layout"].get("annotations", [])]
        notes.append(title_note(title, 0, y(1), xanchor="left", yshift=4))
        offset += len(names)
        top += h
    layout.update(annotations=notes, height=total + 8, margin=dict(l=4, r=4, t=4, b=4), font=FONT, plot_bgcolor="white")
    return go.Figure(dict(data=data, layout=layout))
