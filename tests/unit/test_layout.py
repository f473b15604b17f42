import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def test_no_legacy_pages_folder_beside_the_entry_script():
    """Streamlit runs a `pages/` folder next to app.py as a legacy multipage app until st.navigation first
    runs: a fresh server whose first request is /train would then bypass app.py for everyone."""
    assert not (REPO / "pages").exists()
    assert (REPO / "app_pages" / "train.py").exists()


def test_cnn_core_never_imports_streamlit():
    imports = re.compile(r"^\s*(import|from)\s+streamlit\b", re.M)
    offenders = [p.name for p in (REPO / "cnn_core").rglob("*.py") if imports.search(p.read_text())]
    assert offenders == []


def test_digit_strip_tiles_upscaled_digits_with_gaps():
    import numpy as np

    from cnn_core.plots import digit_strip

    images = np.stack([np.full((28, 28), v, np.float32) for v in (0, 255, 300)])  # 300: clipped to white
    images[0, 0, 0] = 128
    strip = digit_strip(images, cols=2, scale=2, gap=1)
    assert strip.shape == (2 * 57 - 1, 2 * 57 - 1) and strip.dtype == np.uint8
    assert (strip[:2, :2] == 128).all() and strip[2, 2] == 0 and strip[0, 56] == 255  # pixel block, digit, gap
    assert (strip[57:, :56] == 255).all() and (strip[57:, 57:] == 255).all()  # the third digit, and the empty cell


def test_digit_mosaic_is_one_png_with_red_frames_and_titles_for_the_wrong_ones():
    import base64
    import io

    import numpy as np
    from PIL import Image

    from cnn_core.plots import WRONG, digit_mosaic

    images = np.zeros((30, 28, 28), np.float32)
    images[1, 0, 0] = 1.0
    wrong = [i == 1 for i in range(30)]
    fig = digit_mosaic(images, [f"t{i}" for i in range(30)], wrong, cols=10)
    assert len(fig.data) == 1 and fig.data[0].type == "image"
    png = Image.open(io.BytesIO(base64.b64decode(fig.data[0].source.split(",", 1)[1])))
    mosaic = np.asarray(png)
    cell = 28 * 3 + 6  # 3× pixels and a 3-pixel frame
    x1 = cell + 8  # the second digit's left edge (8 pixels between cells), below its 22-pixel title band
    assert tuple(mosaic[22, x1]) == (0xD6, 0x27, 0x28) and tuple(mosaic[22, 0]) == (0x99, 0x99, 0x99)  # frames
    assert (mosaic[25:28, x1 + 3:x1 + 6] == 255).all() and (mosaic[25:28, x1 + 6] == 0).all()  # its white pixel, 3×3
    assert mosaic.shape[:2] == (3 * (cell + 22), 10 * (cell + 8) - 8)
    notes = fig.layout.annotations
    assert [a.text for a in notes] == [f"t{i}" for i in range(30)]
    assert [a.font.color for a in notes].count(WRONG) == 1 and notes[1].font.color == WRONG


def test_digit_grid_marks_wrong_digits_red_and_hides_every_axis():
    import numpy as np

    from cnn_core.plots import WRONG, digit_grid

    fig = digit_grid(np.random.rand(7, 28, 28), [f"t{i}" for i in range(7)], [i == 2 for i in range(7)], cols=4)
    assert [d.xaxis for d in fig.data] == ["x", "x2", "x3", "x4", "x5", "x6", "x7"]
    assert fig.layout.xaxis3.linecolor == fig.layout.yaxis3.linecolor == WRONG and fig.layout.xaxis3.showline
    assert not fig.layout.xaxis.showline and not fig.layout.xaxis8.showticklabels  # no frame; the empty 8th cell
    assert [a.font.color for a in fig.layout.annotations] == ["black", "black", WRONG, *["black"] * 4]
    assert [a.text for a in fig.layout.annotations] == [f"t{i}" for i in range(7)]


def test_image_cells_leave_each_row_its_title_band_and_never_overlap():
    from cnn_core.plots import image_cells

    layout, height, tops = image_cells(3, 2, cell_px=100, band_px=[50, 20, 20])
    assert height == 3 * 100 + 90 and len(layout) == 12

    def px(y: float) -> float:  # paper units → pixels from the top; rounded to 6 places: (1 − y)·height rounds by ~1e-13
        return round((1 - y) * height, 6)

    assert [px(t) for t in tops] == [50, 170, 290]  # 50 of band, 100 of cell, 20 of band, …
    assert [px(layout[f"yaxis{s}"]["domain"][0]) for s in ("", "3", "5")] == [150, 270, 390]
    assert layout["xaxis2"]["domain"][0] > layout["xaxis"]["domain"][1]  # columns apart
    assert layout["yaxis4"]["scaleanchor"] == "x4" and layout["xaxis4"]["anchor"] == "y4"


def test_occlusion_rows_have_their_label_at_the_left_edge_and_the_colour_bars_apart_on_top():
    """The defects seen side by side: row titles centred over the narrow digit were clipped at the left, and both colour
    bars sat at the right edge over each other's ticks."""
    from cnn_core.plots import occlusion_figure

    n = 4
    fig = occlusion_figure(np.random.rand(n, 28, 28), np.random.rand(n, 10, 10), np.zeros((n, 10, 10), int),
                           [f"a rather long title for digit {i}" for i in range(n)], 10, 2)
    rows = [a for a in fig.layout.annotations if a.text.startswith("a rather long")]
    assert len(rows) == n and all(a.x == 0 and a.xanchor == "left" for a in rows)
    bars = [d.colorbar for d in fig.data if d.showscale]
    assert len(bars) == 2 and all(b.orientation == "h" and b.y > 1 for b in bars)
    (l0, r0), (l1, r1) = [(b.x - b.len / 2, b.x + b.len / 2) for b in bars]
    assert 0 <= l0 < r0 < l1 < r1 <= 1  # side by side, inside the figure
    assert len(fig.data) == 3 * n and {d.xaxis for d in fig.data} == {"x"} | {f"x{i}" for i in range(2, 3 * n + 1)}


def test_digit_grid_frames_hug_the_digit_below_a_clear_title_band():
    """Results' red titles were struck through by the red frames: Streamlit's theme pads axis lines 8 px off the plot
    and the band above a row was exactly the title's height."""
    from cnn_core.plots import digit_grid

    fig = digit_grid(np.random.rand(12, 28, 28), [f"#{i}: true 5 → 3 (99%)" for i in range(12)], [True] * 12, cols=6)
    assert fig.layout.margin.pad == 0
    assert tuple(fig.layout.xaxis.range) == (-0.5, 27.5) and tuple(fig.layout.yaxis.range) == (27.5, -0.5)
    y_title_row2 = fig.layout.annotations[6].y
    bottom_row1 = fig.layout.yaxis.domain[0]
    plot_px = fig.layout.height - 20
    assert (bottom_row1 - y_title_row2) * plot_px >= 30  # room for a 22-px title line, its 4-px lift and the frame


def test_perturbation_rows_are_labelled_on_the_left_and_titled_once():
    from cnn_core.attack_plots import perturbation_figure

    x = np.random.rand(6, 28, 28)
    fig = perturbation_figure([("original", x, False), ("δ", x - 0.5, True), ("x + δ", x, False)],
                              [f"true {i}<br>{i} → 3, 90%" for i in range(6)], pixel_max=1.0, unit="δ")
    labels = {a.text: a for a in fig.layout.annotations}
    assert all(labels[t].x == 0 and labels[t].xanchor == "right" for t in ("original", "δ", "x + δ"))
    assert sum(a.text.startswith("true") for a in fig.layout.annotations) == 6
    assert [d.showscale for d in fig.data].count(True) == 1 and fig.data[6].colorscale[0][1] != fig.data[0].colorscale[0][1]


def test_transfer_matrix_names_classes_and_frames_the_examples_already_of_the_target():
    from cnn_core.attack_plots import transfer_figure

    fig = transfer_figure(np.tile(np.arange(10), (10, 1)), list(range(10)), list(range(10)))
    assert list(fig.layout.xaxis.ticktext) == [str(c) for c in range(10)]  # not "a 0"
    assert [(s.x0, s.y0) for s in fig.layout.shapes] == [(i - 0.5, i - 0.5) for i in range(10)]  # halves: exact


def test_the_ten_by_ten_mosaic_labels_its_rows_and_columns():
    from cnn_core.plots import digit_mosaic

    fig = digit_mosaic(np.random.rand(100, 28, 28), [str(i) for i in range(100)], row_labels=[f"like {i}" for i in range(10)],
                       col_labels=[f"→ {j}" for j in range(10)])
    notes = [a.text for a in fig.layout.annotations]
    assert notes[:100] == [str(i) for i in range(100)]
    assert notes[100:110] == [f"<b>like {i}</b>" for i in range(10)] and notes[110:] == [f"<b>→ {j}</b>" for j in range(10)]
    rows = [a.y for a in fig.layout.annotations[100:110]]
    assert rows == sorted(rows) and fig.layout.margin.l >= 60 and fig.layout.margin.t >= 30  # room for them


def test_side_by_side_probability_labels_stand_upright():
    """'100%100%': two models' level labels over neighbouring bars ran together."""
    from cnn_core.plots import probability_bars

    p = np.eye(10)[3]
    assert {d.textangle for d in probability_bars({"a": p, "b": p}).data} == {-90}
    assert probability_bars({"a": p}).data[0].textangle == 0


def test_scaled_fonts_grows_every_explicit_size_once_and_the_default():
    import plotly.graph_objects as go

    from cnn_core.plots import occlusion_figure, scaled_fonts

    fig = occlusion_figure(np.random.rand(2, 28, 28), np.random.rand(2, 10, 10), np.zeros((2, 10, 10), int), ["a", "b"], 10, 2)
    big = scaled_fonts(fig, 1.5)
    assert big.layout.font.size == 24 and [a.font.size for a in big.layout.annotations] == \
        [1.5 * a.font.size for a in fig.layout.annotations]
    assert big.data[1].colorbar.tickfont.size == 24 and fig.data[1].colorbar.tickfont.size == 16  # a copy
    assert scaled_fonts(go.Figure(), 2).layout.font.size == 24  # plotly's default 12 where none is set


def test_filter_and_map_grids_number_each_tile_and_name_it_in_the_hover():
    from cnn_core.plots import feature_maps_figure, filters_figure

    fig = filters_figure(np.random.randn(32, 3, 3), "conv1", cols=8)
    x, y = fig.layout.xaxis, fig.layout.yaxis
    assert list(x.ticktext) == [f"+{c}" for c in range(8)] and list(y.ticktext) == ["0", "8", "16", "24"]
    assert (x.tickvals[1], y.tickvals[1]) == (5, 5)  # the middle of filter 9 (row 8, column +1): 3×3 tiles, 1-px gaps
    index = np.asarray(fig.data[0].customdata, dtype=float)
    assert index[4, 4] == 9 and np.isnan(index[3, 3]) and fig.data[0].hovertemplate.startswith("filter %{customdata")
    assert filters_figure(np.random.randn(1024, 3, 3), "all", cols=32).layout.xaxis.visible is False  # too many to number
    assert feature_maps_figure(np.random.rand(32, 14, 14), "maps", per_map=True).data[0].hovertemplate.startswith("map ")


def test_stacked_rows_keep_each_row_its_axes_notes_and_colour_bars_one_below_the_other():
    """The Robustness lab's attribution rows: 6 digits × 2 models were 12 plots for the browser; now one per model."""
    from cnn_core.attack_plots import attack_attribution_figure, stacked_rows

    rng = np.random.default_rng(0)
    maps = {"saliency": (rng.random((28, 28)), rng.random((28, 28)))}
    rows = [attack_attribution_figure(rng.random((28, 28)), rng.random((28, 28)), maps, {"saliency": 1.0},
                                      ("5 (99%)", "8 (80%)"), (5, 8), height=200) for _ in range(3)]
    fig = stacked_rows(rows, ["<b>#0</b>", "<b>#1</b>", "<b>#2</b>"], title_px=30)
    assert fig.layout.height == 3 * (200 + 30) + 8 and len(fig.data) == 3 * len(rows[0].data)
    cells = len([k for k in rows[0].layout if k.startswith("xaxis")])  # 4: two images, a map pair
    assert fig.data[len(rows[0].data)].xaxis == f"x{cells + 1}" and fig.layout[f"yaxis{cells + 1}"].scaleanchor == f"x{cells + 1}"
    tops = [fig.layout[f"yaxis{r * cells + 1}"].domain[1] for r in range(3)]
    bottoms = [fig.layout[f"yaxis{r * cells + 1}"].domain[0] for r in range(3)]
    assert tops[0] > bottoms[0] > tops[1] > bottoms[1] > tops[2] > bottoms[2] > 0  # rows apart, top to bottom
    titles = [a for a in fig.layout.annotations if a.text.startswith("<b>#")]
    assert [a.text for a in titles] == ["<b>#0</b>", "<b>#1</b>", "<b>#2</b>"] and all(a.x == 0 for a in titles)
    bars = [d.colorbar for d in fig.data if d.showscale]
    assert len(bars) == 3 and all(abs(b.len - rows[0].data[3].colorbar.len * 200 / 690) < 1e-9 for b in bars)


def test_ascent_titles_name_target_prediction_confidence_and_mark_misses():
    from cnn_core.attack_plots import ascent_titles

    titles, wrong = ascent_titles(np.array([0, 1, 7]), np.array([0.994, 0.5, 0.81]))
    assert titles == ["target 0<br>→ 0, 99%", "target 1<br>→ 1, 50%", "target 2<br>→ 7, 81%"] and wrong == [False, False, True]


def _every_figure():
    """One of each figure the app draws, built from small inputs."""
    from cnn_core import attack_plots as A
    from cnn_core import conv_plots as C
    from cnn_core import plots as P
    from cnn_core.robust import RobustnessCurves

    rng = np.random.default_rng(0)
    im = rng.random((3, 28, 28)).astype(np.float32)
    run = {"name": "r", "config": {"batchnorm": True}, "steps": [{"step": s, "loss": 1 / s} for s in range(1, 50)],
           "epochs": [], "vals": [{"step": 49, "val_loss": 0.1, "val_accuracy": 0.98, "train_accuracy": 0.97}]}
    yield "training curves", P.training_curves_figure([run])
    yield "confusion", P.confusion_figure(rng.integers(0, 1000, (10, 10)).tolist())
    yield "filters", P.filters_figure(rng.standard_normal((32, 3, 3)), "f")
    yield "feature maps", P.feature_maps_figure(rng.random((32, 28, 28)), "m", per_map=True)
    yield "digit grid", P.digit_grid(im, ["a", "b", "c"], [True, False, False])
    yield "mosaic", P.digit_mosaic(rng.random((100, 28, 28)), [f"t{i}" for i in range(100)], cols=10,
                                   row_labels=[str(i) for i in range(10)], col_labels=[str(i) for i in range(10)])
    yield "occlusion", P.occlusion_figure(im, rng.random((3, 10, 10)), np.zeros((3, 10, 10), int), ["a", "b", "c"], 10, 2)
    yield "attribution", P.attribution_figure(im, {"Saliency": im, "Integrated Gradients": im}, ["a", "b", "c"])
    yield "occlusion strip", P.occlusion_strip_figure({4: rng.random((13, 13)), 8: rng.random((11, 11))}, 2, "s")
    yield "probabilities", P.probability_bars({"a": np.full(10, 0.1), "b": np.full(10, 0.1)})
    yield "cost curves", A.cost_curves_figure(rng.random((20, 10)), [f"target {t}" for t in range(10)], "c")
    yield "perturbation", A.perturbation_figure([("x", im, False), ("δ", im - 0.5, True)], ["1", "2", "3"])
    yield "robustness", A.robustness_figure(
        {"m": RobustnessCurves([0, 0.1, 0.2], {"fgsm": [1, 0.6, 0.3], "pgd": [1, 0.5, 0.1], "deepfool": [1, 0.6, 0.2]}, 3, 20)},
        {"m": "#1f77b4"})
    yield "transfer", A.transfer_figure(rng.integers(0, 10, (10, 10)), list(range(10)), list(range(10)))
    maps = {"Saliency": (im[0], im[1])}
    row = A.attack_attribution_figure(im[0], im[1], maps, {"Saliency": 1.0}, ("→ 1", "→ 2"), (1, 2))
    yield "attack attribution", row
    yield "stacked rows", A.stacked_rows([row, row], ["#1", "#2"])
    yield "window", C.window_figure(im[0], 3, 1, (0, 0), im[0], (0, 0))
    yield "matrix", C.matrix_figure(rng.random((9, 32)), "m", "x", "y", True, 300)


@pytest.mark.parametrize("name, fig", list(_every_figure()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_chart_text_is_at_least_16_px_for_a_projector(name, fig):
    from cnn_core.plots import MIN_FONT_PX, small_fonts

    assert MIN_FONT_PX == 16 and small_fonts(fig) == []


def test_small_fonts_finds_explicit_sizes_and_the_themes_unsized_ticks_and_titles():
    import plotly.graph_objects as go

    from cnn_core.plots import FONT, TICKS, colorbar, small_fonts

    fig = go.Figure(go.Heatmap(z=[[1]], colorbar=dict(title="c")), layout=dict(font=FONT, xaxis_title="x"))
    assert sorted(small_fonts(fig)) == ["data[0].colorbar.tickfont: 12", "data[0].colorbar.title.font: 14",
                                        "layout.xaxis.tickfont: 12", "layout.xaxis.title.font: 14",
                                        "layout.yaxis.tickfont: 12"]
    fig.update_xaxes(**TICKS).update_yaxes(visible=False).update_traces(colorbar=colorbar("c"))
    assert small_fonts(fig) == []
    fig.add_annotation(text="n", font=dict(size=15))
    assert small_fonts(fig) == ["layout.annotations[0].font: 15"]


def test_figure_csv_lists_every_point_and_heatmap_cell_with_its_labels():
    import plotly.graph_objects as go

    from cnn_core.plots import figure_csv

    fig = go.Figure([go.Heatmap(z=[[1, None], [0.5, 2]], x=[0, 4], y=["a", "b"], name="map"),
                     go.Scatter(x=[1, 2], y=[0.25, None], name="line"), go.Bar(y=[3]),
                     go.Image(z=np.zeros((2, 2, 3)))])
    assert figure_csv(fig).splitlines() == [
        "trace,name,type,row,col,x,y,value",
        "0,map,heatmap,0,0,0,a,1", "0,map,heatmap,1,0,0,b,0.5", "0,map,heatmap,1,1,4,b,2",  # the gap left out
        "1,line,scatter,0,,1,0.25,", "1,line,scatter,1,,2,,",
        "2,,bar,0,,0,3,"]  # the image has no numbers here
