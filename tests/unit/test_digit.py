import io

import numpy as np
import pytest
import torch
from PIL import Image

from cnn_core.digit import DigitError, center_by_mass, center_of_mass, decode_image, mnist_style, rgba_to_gray
from cnn_core.model import predict_proba
from cnn_core.store import RunStore


@pytest.fixture(scope="module")
def baseline():
    return RunStore().load_model("baseline")[0]


def _classify(model, img28):
    return int(predict_proba(model, torch.from_numpy(img28).float()[None, None]).argmax())


def _png(gray: np.ndarray, mode="L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray((gray * 255).astype(np.uint8)).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("i", range(8))
def test_a_shifted_scaled_digit_comes_back_centred_and_still_right(mnist, baseline, i):
    digit = mnist.test_images[i].numpy() / 255.0
    big = np.kron(digit, np.ones((4, 4)))  # 112×112: four times larger
    canvas = np.zeros((300, 240))
    canvas[150:262, 20:132] = big  # far off-centre
    out = mnist_style(canvas)
    assert out.shape == (28, 28) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    com = center_of_mass(out)
    assert abs(com[0] - 14) <= 0.5 and abs(com[1] - 14) <= 0.5
    rows, cols = np.nonzero(out > 0.05)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 21  # fits the 20×20 box (plus anti-aliasing)
    assert _classify(baseline, out) == int(mnist.test_labels[i])


def test_dark_ink_on_white_paper_is_inverted(mnist, baseline):
    digit = mnist.test_images[0].numpy() / 255.0
    paper = 1.0 - np.pad(digit, 30)  # black 7 on white
    out = mnist_style(paper)
    assert out[0, 0] == 0 and _classify(baseline, out) == 7


def test_uploads_decode_including_transparency(mnist, baseline):
    digit = mnist.test_images[1].numpy() / 255.0  # a 2
    assert _classify(baseline, mnist_style(decode_image(_png(1 - digit)))) == 2
    rgba = np.zeros((40, 40, 4))
    rgba[6:34, 6:34, 3] = digit  # black ink drawn only through alpha on a transparent sheet
    buf = io.BytesIO()
    Image.fromarray((rgba * 255).astype(np.uint8), "RGBA").save(buf, format="PNG")
    assert _classify(baseline, mnist_style(decode_image(buf.getvalue()))) == 2


@pytest.mark.parametrize("gray", [np.zeros((50, 50)), np.ones((50, 50)), np.full((10, 10), 0.5)])
def test_blank_inputs_get_a_clear_message(gray):
    with pytest.raises(DigitError, match="blank"):
        mnist_style(gray)


def test_non_images_and_huge_images_are_refused():
    with pytest.raises(DigitError, match="not an image"):
        decode_image(b"%PDF-1.4 definitely not a png")
    huge = Image.new("L", (6000, 5000))
    buf = io.BytesIO()
    huge.save(buf, format="PNG")
    with pytest.raises(DigitError, match="too large \\(6,000×5,000 pixels\\)"):
        decode_image(buf.getvalue())


def test_rgba_composite():
    rgba = np.array([[[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])
    assert rgba_to_gray(rgba, background=0.0).tolist() == [[0.0, 0.0]]
    assert rgba_to_gray(rgba, background=1.0)[0].tolist() == pytest.approx([1.0, 0.0])


@pytest.mark.parametrize("row, top", [(19, 0), (0, 8)])
def test_a_digit_heavy_at_one_end_is_pasted_as_far_as_the_field_allows(row, top):
    """A 20×20 crop whose ink is all in its bottom (top) row cannot bring its centre of mass to row 14: it is pasted
    flush with the field's top (bottom) edge, whole, instead of shifted outside the 28×28 field."""
    img = np.zeros((20, 20), dtype=np.float32)
    img[row] = 1.0
    out = center_by_mass(img)
    expected = np.zeros((28, 28), dtype=np.float32)
    expected[top : top + 20, 4:24] = img  # columns: centre 9.5 → shift round(4.5) = 4
    assert np.array_equal(out, expected)
