import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_no_legacy_pages_folder_beside_the_entry_script():
    """Streamlit runs a `pages/` folder next to app.py as a legacy multipage app until st.navigation first
    runs: a fresh server whose first request is /train would then bypass app.py for everyone."""
    assert not (REPO / "pages").exists()
    assert (REPO / "app_pages" / "train.py").exists()


def test_cnn_core_never_imports_streamlit():
    imports = re.compile(r"^\s*(import|from)\s+streamlit\b", re.M)
    offenders = [p.name for p in (REPO / "cnn_core").glob("*.py") if imports.search(p.read_text())]
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
