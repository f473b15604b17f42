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
    assert rgba_to_gray(rgba, background=0.0).tolist() == [[0.0, 0.0]]  # every term is a product with 0: exact
    # the luminance weights 0.299 + 0.587 + 0.114 make 1 only within float64 rounding: default approx
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
    assert np.array_equal(out, expected)  # pasting copies pixels: exact


# The recipe step by step, on inputs whose MNIST-style result can be worked out by hand.

def _rectangle(ink=1.0, paper=0.0, rows=10, cols=5):
    img = np.full((40, 40), paper)
    img[7 : 7 + rows, 22 : 22 + cols] = ink
    return img


@pytest.mark.parametrize("ink, paper", [(1.0, 0.0), (0.5, 0.1), (0.1, 0.9)])
def test_a_rectangle_is_cropped_stretched_scaled_to_20_and_centred_exactly(ink, paper):
    """10×5 of ink → 20×10 of 1.0 (stretched from any contrast, dark ink inverted); centre of mass (9.5, 4.5) goes to
    (14, 14): top = round(4.5) = 4, left = round(9.5) = 10 (Python rounds halves to even)."""
    want = np.zeros((28, 28), dtype=np.float32)
    want[4:24, 10:20] = 1.0
    assert np.array_equal(mnist_style(_rectangle(ink, paper)), want)  # (ink − lo) / (ink − lo) = 1, then uint8 levels: exact


def test_a_pixel_exactly_at_the_ink_threshold_is_not_ink():
    img = _rectangle()
    img[6, 22] = 0.2  # just above the rectangle, at INK: not part of the crop
    want = np.zeros((28, 28), dtype=np.float32)
    want[4:24, 10:20] = 1.0
    assert np.array_equal(mnist_style(img), want)  # a 0/1 image stretched by 1 / (1 − 0), uint8 levels: exact


def test_anything_darker_than_the_first_percentile_is_black():
    """The stretch maps the 1st percentile to 0 and clips below: the darkest 1% of pixels cannot come out bright."""
    img = np.full((40, 40), 0.3)
    img[5, 5] = img[30, 30] = 1.0  # two ink dots: the crop spans rows and columns 5…30
    dark = img.copy()
    dark[10, 10] = dark[20, 12] = 0.0  # 2 of 1,600 pixels, inside the crop
    assert np.percentile(dark, 1) == pytest.approx(0.3)  # interpolated between two 0.3s in float64: default approx
    out = mnist_style(dark)
    assert np.array_equal(out, mnist_style(img)) and out.max() <= 1.0  # the same stretch, then uint8 grey levels: exact


def test_the_digit_is_scaled_with_lanczos():
    """A 40×40 crop of varied intensities is resized to 20×20 with PIL's Lanczos filter (what MNIST's anti-aliasing
    resembles most), then centred by mass."""
    rng = np.random.default_rng(0)
    img = rng.uniform(0.0, 1.0, (40, 40))
    img[[0, -1]], img[:, [0, -1]] = img[[0, -1]] * 0.4, img[:, [0, -1]] * 0.4  # darker paper at the border …
    img[0, 0] = img[-1, -1] = 1.0  # … with ink at two corners: the crop is everything
    lo = np.percentile(img, 1)
    g = np.clip((img - lo) / (1.0 - lo), 0.0, 1.0)
    small = np.asarray(Image.fromarray((g * 255).astype(np.uint8)).resize((20, 20), Image.LANCZOS)) / 255.0
    assert np.array_equal(mnist_style(img), center_by_mass(small))  # the same float64 formula, then uint8 levels: exact


@pytest.mark.parametrize("shape, want", [((1, 40), (1, 20)), ((40, 1), (20, 1))])
def test_a_one_pixel_line_stays_one_pixel_thick(shape, want):
    img = np.zeros((50, 50))
    img[5 : 5 + shape[0], 5 : 5 + shape[1]] = 1.0
    rows, cols = np.nonzero(mnist_style(img))
    assert (np.ptp(rows) + 1, np.ptp(cols) + 1) == want


def test_the_outer_ring_alone_decides_the_paper_and_half_light_is_not_light():
    """The paper is light when the median of the outermost ring exceeds 0.5. Here that ring alternates light and dark
    (median exactly 0.5, so no inversion) while the ring inside it is all light: looking one ring further in would
    invert, and the dark middle would become ink."""
    n = 40
    img = np.zeros((n, n))
    img[1:-1, 1:-1] = 1.0
    img[2:-2, 2:-2] = 0.0  # a light second ring around a dark middle
    i, j = np.indices((n, n))
    ring = (i == 0) | (j == 0) | (i == n - 1) | (j == n - 1)
    img[ring] = ((i + j) % 2 == 0)[ring]
    out = mnist_style(img)
    assert out[14, 14] == 0.0 and out.max() > 0.5  # the light rings are the ink; the dark middle stays paper


def test_a_faint_digit_of_exactly_10_percent_contrast_is_not_blank():
    img = np.zeros((20, 20))
    img[5:15, 8:12] = 0.1
    assert mnist_style(img).max() == 1.0  # (0.1 − 0) / (0.1 − 0) is exactly 1, grey level 255 / 255


@pytest.mark.parametrize("gray", [np.zeros(50), np.zeros((1, 50)), np.zeros((20, 20, 3))])
def test_an_image_that_is_not_two_dimensional_or_too_thin_is_refused(gray):
    with pytest.raises(DigitError, match="two-dimensional.*2×2"):
        mnist_style(gray)


def test_a_two_by_two_image_is_small_enough():
    assert mnist_style(np.array([[1.0, 0.0], [0.0, 0.0]])).sum() > 0


def test_the_blank_message_says_what_to_do():
    with pytest.raises(DigitError, match="blank.*draw a digit"):
        mnist_style(np.zeros((5, 5)))


@pytest.mark.parametrize("col, left", [(19, 0), (0, 8)])
def test_a_digit_heavy_at_one_side_is_pasted_as_far_as_the_field_allows(col, left):
    img = np.zeros((20, 20), dtype=np.float32)
    img[:, col] = 1.0
    expected = np.zeros((28, 28), dtype=np.float32)
    expected[4:24, left : left + 20] = img
    assert np.array_equal(center_by_mass(img), expected)  # pasting copies pixels: exact


def test_decoding_reads_grey_levels_and_transparent_paper_as_white():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3], rgba[..., 3] = 51, 255  # opaque grey 51 = 0.2
    rgba[0, 0, 3] = 0  # one transparent pixel: paper
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    gray = decode_image(buf.getvalue())
    # 51 / 255 times luminance weights that make 1 only within float64 rounding: default approx
    assert gray[0, 0] == pytest.approx(1.0) and gray[1:, 1:] == pytest.approx(np.full((3, 3), 0.2))


def test_the_size_limit_and_the_refusals_name_what_to_do(monkeypatch):
    """The limit's boundary, on a 200-pixel stand-in: at the real 25 megapixels (a 30-megapixel image is refused in
    the test above) the two images of this boundary took 5 s to encode and decode."""
    import cnn_core.digit as digit

    with pytest.raises(DigitError, match="not an image.*PNG or JPEG"):
        decode_image(b"not an image")
    monkeypatch.setattr(digit, "MAX_PIXELS", 200)

    def png(w, h):
        buf = io.BytesIO()
        Image.new("L", (w, h)).save(buf, format="PNG")
        return buf.getvalue()

    assert decode_image(png(20, 10)).shape == (10, 20)  # exactly at the limit: allowed
    with pytest.raises(DigitError, match="21×10"):
        decode_image(png(21, 10))
