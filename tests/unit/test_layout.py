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
