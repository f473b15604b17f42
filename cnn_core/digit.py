"""Your own digit: any drawing or image → a 28×28 MNIST-style input.

MNIST's own recipe (LeCun et al.): the digit is cropped to its bounding box, scaled to fit a 20×20
box keeping its aspect ratio (anti-aliased), and pasted into a 28×28 field so that its centre of mass
sits at the centre. White ink on black, intensities in [0, 1].
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 25_000_000  # larger uploads are refused before decoding (a 5000×5000 photo is fine)
INK = 0.2  # a pixel is ink when brighter than this fraction of the image's intensity range


class DigitError(ValueError):
    """The input cannot become a digit; the message says why, for the user."""


def decode_image(data: bytes) -> np.ndarray:
    """Uploaded bytes → H×W grayscale in [0, 1]. Transparent parts count as white paper."""
    unreadable = DigitError("that file is not an image this app can read (try PNG or JPEG)")
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
    except (UnidentifiedImageError, OSError) as exc:
        raise unreadable from exc
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise DigitError(f"the image is too large ({w:,}×{h:,} pixels); use one under {MAX_PIXELS // 1_000_000} megapixels")
    try:
        img.load()
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise unreadable from exc
    return rgba_to_gray(np.asarray(img.convert("RGBA"), dtype=np.float64) / 255.0, background=1.0)


def rgba_to_gray(rgba: np.ndarray, background: float) -> np.ndarray:
    """H×W×4 RGBA in [0, 1] composited over a ``background`` grey → H×W luminance in [0, 1]."""
    rgb, alpha = rgba[..., :3], rgba[..., 3:4]
    rgb = rgb * alpha + background * (1 - alpha)
    return rgb @ np.array([0.299, 0.587, 0.114])


def mnist_style(gray: np.ndarray) -> np.ndarray:
    """H×W grayscale (ink light or dark) → 28×28 float32 in [0, 1], white ink on black, as in MNIST.

    1. invert when the background (the border's median) is light;
    2. stretch to [0, 1] and crop to the bounding box of the ink;
    3. scale to fit 20×20 keeping the aspect ratio (anti-aliased);
    4. paste into 28×28 with the centre of mass at (14, 14).
    """
    g = np.asarray(gray, dtype=np.float64)
    if g.ndim != 2 or min(g.shape) < 2:
        raise DigitError("the image must be two-dimensional and at least 2×2 pixels")
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    if np.median(border) > 0.5:
        g = 1.0 - g
    lo, hi = np.percentile(g, 1), g.max()
    if hi - lo < 0.1:
        raise DigitError("the image is blank: draw a digit, or upload a picture of one")
    g = np.clip((g - lo) / (hi - lo), 0.0, 1.0)
    rows, cols = np.nonzero(g > INK)
    g = g[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = g.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray((g * 255).astype(np.uint8)).resize(size, Image.LANCZOS), dtype=np.float64) / 255.0
    return center_by_mass(small)


def center_by_mass(img: np.ndarray, size: int = 28) -> np.ndarray:
    """Paste ``img`` (at most size×size) into a size×size black field so that its centre of mass lands
    as close to (size/2, size/2) = (14, 14) as whole-pixel shifts allow — where MNIST's digits have it
    (measured on the test set: 14.0 ± 0.3 in both axes)."""
    h, w = img.shape
    com_r, com_c = center_of_mass(img)
    top = int(np.clip(round(size / 2 - com_r), 0, size - h))
    left = int(np.clip(round(size / 2 - com_c), 0, size - w))
    out = np.zeros((size, size), dtype=np.float32)
    out[top : top + h, left : left + w] = img
    return out


def center_of_mass(img: np.ndarray) -> tuple[float, float]:
    """(row, column) of the intensity-weighted mean pixel position."""
    r, c = np.indices(img.shape)
    return float((r * img).sum() / img.sum()), float((c * img).sum() / img.sum())
