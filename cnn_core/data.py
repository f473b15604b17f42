"""MNIST, offline: shipped gz files → verified raw IDX cache → uint8 tensors in memory.

The gzipped IDX files live in ``data/MNIST`` (committed). On first load they are decompressed into
torchvision's raw layout under a git-ignored cache, every decompressed file is checked against the
canonical MD5 (``data/MNIST/MD5SUMS``) with torchvision's integrity helpers, and the files are read
with ``torchvision.datasets.MNIST(download=False)``. All 70,000 digits stay in memory as uint8
tensors; batches are made by tensor indexing (no PIL, no DataLoader).
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.datasets import MNIST
from torchvision.datasets.utils import check_integrity

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_DIR = REPO_ROOT / "data" / "MNIST"
CACHE_DIR = REPO_ROOT / "data" / ".cache"
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DataError(RuntimeError):
    """MNIST could not be loaded; the message names the file and what to do."""


@dataclass(frozen=True)
class Mnist:
    """The whole data set as uint8 tensors: images N×28×28, labels N (int64)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def read_md5sums(path: Path) -> dict[str, str]:
    """Parse an ``md5sum``-style file: ``<hex>  <name>`` per line."""
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    return sums


def _decompress_verified(gz: Path, out: Path, md5: str) -> None:
    """Decompress ``gz`` to ``out`` atomically, then check the MD5 of the result."""
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    try:
        with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, EOFError) as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"{gz} is not a readable gzip file ({exc}). Restore it with `git checkout -- {gz.name}` "
            f"in {gz.parent}, or copy it again from the canonical MNIST files."
        ) from exc
    if not check_integrity(str(tmp), md5):
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"{gz} decompresses to data whose MD5 is not the canonical {md5} — the file is corrupt "
            f"or not MNIST. Restore it with `git checkout -- {gz.name}` in {gz.parent}."
        )
    os.replace(tmp, out)


def prepare_raw(shipped_dir: Path = SHIPPED_DIR, cache_dir: Path = CACHE_DIR) -> Path | None:
    """Make ``cache_dir/MNIST/raw/<file>`` verified copies of the shipped files.

    Returns the torchvision root (``cache_dir``), or None when no shipped file exists at all (then
    the caller may try a download). Cached files are re-checked against the MD5 on every call.
    """
    sums_file = shipped_dir / "MD5SUMS"
    present = [name for name in RAW_FILES if (shipped_dir / f"{name}.gz").exists()]
    if not present:
        return None
    if not sums_file.exists():
        raise DataError(f"{sums_file} is missing: it holds the checksums that verify MNIST.")
    missing = [f"{name}.gz" for name in RAW_FILES if name not in present]
    if missing:
        raise DataError(
            f"{shipped_dir} lacks {', '.join(missing)}. Restore it with `git checkout -- data/MNIST`."
        )
    sums = read_md5sums(sums_file)
    raw = cache_dir / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in RAW_FILES:
        out = raw / name
        if out.exists() and out.stat().st_mtime >= (shipped_dir / f"{name}.gz").stat().st_mtime:
            if check_integrity(str(out), sums[name]):
                continue
        _decompress_verified(shipped_dir / f"{name}.gz", out, sums[name])
    return cache_dir


def load_mnist(shipped_dir: Path = SHIPPED_DIR, cache_dir: Path = CACHE_DIR) -> Mnist:
    """Load all 70,000 MNIST digits as uint8 tensors, verified against the canonical MD5s.

    Falls back to torchvision's download only when none of the shipped files exist.
    """
    root = prepare_raw(shipped_dir, cache_dir)
    download = root is None
    root = cache_dir if root is None else root
    try:
        train = MNIST(str(root), train=True, download=download)
        test = MNIST(str(root), train=False, download=download)
    except Exception as exc:  # torchvision raises RuntimeError/URLError variants
        raise DataError(
            f"MNIST could not be loaded from {root} ({exc}). The shipped files belong in {shipped_dir}; "
            "restore them with `git checkout -- data/MNIST`."
        ) from exc
    return Mnist(train.data.contiguous(), train.targets.long(), test.data.contiguous(), test.targets.long())


MNIST_TRAIN = 60000  # digits in MNIST's training file, before the validation split


def training_digits(train_subset: int, val_fraction: float) -> int:
    """How many digits a run trains on: its subset, or the training file less the validation split (54,000 at the
    default 0.1; ``stratified_split`` rounds per class to the same total)."""
    return train_subset or MNIST_TRAIN - round(MNIST_TRAIN * val_fraction)


def stratified_split(
    labels: torch.Tensor, val_fraction: float = 0.1, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split of indices into (train, val) with every class in proportion.

    The validation size is round(N · val_fraction) (60,000 → 54,000 / 6,000 by default); class c gets
    ⌊n_c · val_fraction⌋ of it and the remaining slots go to the largest remainders, so every class
    is within one digit of its exact share.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * val_fraction
    n_val = exact.floor().long()
    leftover = int(round(len(labels) * val_fraction)) - int(n_val.sum())
    n_val[torch.argsort(exact - exact.floor(), descending=True, stable=True)[:leftover]] += 1
    gen = torch.Generator().manual_seed(seed)
    train_parts, val_parts = [], []
    for c, k in zip(classes.tolist(), n_val.tolist(), strict=True):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        val_parts.append(idx[:k])
        train_parts.append(idx[k:])
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values


def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 H×W (or N×H×W) → float N×1×28×28 intensities in [0, 1]."""
    x = images_u8.float().div_(255.0)
    if x.dim() == 2:
        x = x.unsqueeze(0)
    return x.unsqueeze(1)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image of a batch N×1×H×W by its own random (sy, sx) ∈ [−max_shift, max_shift]²,
    filling with 0 (background): x'[i, 0, r, c] = x[i, 0, r − sy_i, c − sx_i]."""
    n, _, h, w = x.shape
    p = max_shift
    padded = torch.nn.functional.pad(x[:, 0], (p, p, p, p))  # x[a, b] = padded[a + p, b + p]
    sy, sx = (torch.randint(-p, p + 1, (2, n), generator=generator)).to(x.device)
    rows = torch.arange(h, device=x.device)[None, :] - sy[:, None] + p
    cols = torch.arange(w, device=x.device)[None, :] - sx[:, None] + p
    return padded[torch.arange(n, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def iterate_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    indices: torch.Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (float [0,1] N×1×28×28, labels) batches by tensor indexing.

    With a generator the order is a fresh seeded permutation of ``indices`` (one per call = one
    epoch); without one the order is ``indices`` as given (evaluation).
    """
    order = indices if generator is None else indices[torch.randperm(len(indices), generator=generator)]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield to_float(images[idx]).to(device, non_blocking=True), labels[idx].to(device, non_blocking=True)

