import gzip
import shutil

import pytest
import torch

from cnn_core.data import (
    SHIPPED_DIR,
    DataError,
    iterate_batches,
    load_mnist,
    random_shift,
    stratified_split,
    to_float,
    training_digits,
)


def test_all_70000_digits_load_as_uint8(mnist):
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_images.dtype == torch.uint8 and mnist.train_labels.dtype == torch.int64
    assert mnist.test_labels[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]  # the canonical first test digits
    assert torch.bincount(mnist.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert int(mnist.train_images.max()) == 255


def _copy_shipped(tmp_path):
    ship = tmp_path / "ship"
    shutil.copytree(SHIPPED_DIR, ship)
    return ship


def test_corrupted_file_is_named_in_the_error(tmp_path):
    ship = _copy_shipped(tmp_path)
    name = "t10k-labels-idx1-ubyte"
    with gzip.open(ship / f"{name}.gz", "rb") as fh:
        content = bytearray(fh.read())
    content[100] ^= 0xFF  # one flipped byte: still valid gzip, wrong MD5
    (ship / f"{name}.gz").chmod(0o644)
    with gzip.open(ship / f"{name}.gz", "wb") as fh:
        fh.write(bytes(content))
    with pytest.raises(DataError, match=f"{name}.gz.*MD5.*git checkout"):
        load_mnist(ship, tmp_path / "cache")
    assert not (tmp_path / "cache" / "MNIST" / "raw" / name).exists()  # nothing unverified is left behind


def test_missing_and_non_gzip_files_get_clear_errors(tmp_path):
    ship = _copy_shipped(tmp_path)
    (ship / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="lacks train-labels-idx1-ubyte.gz"):
        load_mnist(ship, tmp_path / "cache")
    ship2 = _copy_shipped(tmp_path / "b")
    (ship2 / "t10k-images-idx3-ubyte.gz").chmod(0o644)
    (ship2 / "t10k-images-idx3-ubyte.gz").write_bytes(b"not a gzip file")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is not a readable gzip"):
        load_mnist(ship2, tmp_path / "cache2")


def test_a_damaged_cache_is_rebuilt_from_the_shipped_files(tmp_path):
    ship = _copy_shipped(tmp_path)
    cache = tmp_path / "cache"
    first = load_mnist(ship, cache)
    raw = cache / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    raw.write_bytes(raw.read_bytes()[:-1] + b"\x00")  # tamper with the cached copy
    again = load_mnist(ship, cache)
    assert torch.equal(first.test_labels, again.test_labels)


def test_stratified_split_is_54k_6k_proportional_and_seeded(mnist):
    labels = mnist.train_labels
    train, val = stratified_split(labels, 0.1, seed=0)
    assert (len(train), len(val)) == (54000, 6000)
    both = torch.cat([train, val])
    assert len(torch.unique(both)) == 60000  # disjoint and complete
    share = torch.bincount(labels).double() * 0.1
    assert (torch.bincount(labels[val]).double() - share).abs().max() < 1
    assert torch.equal(val, stratified_split(labels, 0.1, seed=0)[1])
    assert not torch.equal(val, stratified_split(labels, 0.1, seed=1)[1])
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(labels, 1.5)


def test_a_run_trains_on_its_subset_or_on_what_the_split_leaves(mnist):
    """The number the pages, the registry's estimate and the comparison table show is the split's real size."""
    for fraction in (0.1, 0.05, 0.5):
        assert training_digits(0, fraction) == len(stratified_split(mnist.train_labels, fraction)[0])
    assert training_digits(0, 0.1) == 54000 and training_digits(512, 0.1) == 512


def test_stratified_split_gives_the_leftover_slots_to_the_largest_remainders_ties_in_class_order(mnist):
    # 10% of each class: 592.3 674.2 595.8 613.1 584.2 542.1 591.8 626.5 585.1 594.9 → floors sum to 5,996, and the
    # 4 slots left go to the remainders .9 (class 9), .8 (2 and 6) and .5 (7).
    train, val = stratified_split(mnist.train_labels)  # the defaults: 10%, seed 0
    assert torch.equal(val, stratified_split(mnist.train_labels, 0.1, seed=0)[1])
    assert torch.bincount(mnist.train_labels[val]).tolist() == [592, 674, 596, 613, 584, 542, 592, 627, 585, 595]
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)
    labels = torch.arange(3).repeat_interleave(5)  # 0.5 each; round(1.5) = 2 slots for three equal remainders
    assert torch.bincount(labels[stratified_split(labels, 0.1)[1]], minlength=3).tolist() == [1, 1, 0]
    train, val = stratified_split(labels, 0.0)  # the whole range [0, 1): nothing to validate on
    assert torch.equal(train, torch.arange(15)) and len(val) == 0
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError) as error:
            stratified_split(labels, bad)
        assert "val_fraction" in str(error.value) and str(bad) in str(error.value)


def test_to_float_gives_n_1_28_28_intensities_for_one_digit_or_many():
    digits = torch.tensor([0, 51, 255], dtype=torch.uint8)[:, None, None].expand(3, 28, 28)
    many = to_float(digits)
    assert many.shape == (3, 1, 28, 28) and many.dtype == torch.float32
    assert many[:, 0, 5, 5].tolist() == pytest.approx([0.0, 0.2, 1.0], abs=1e-7)  # 51 / 255 in float32, read as float64
    assert torch.equal(to_float(digits[1]), many[1:2])  # the same division of the same pixels: exact


def test_batches_are_float_pixels_and_one_seeded_permutation_per_epoch(mnist):
    idx = torch.arange(1000)
    gen = torch.Generator().manual_seed(3)
    epoch1 = list(iterate_batches(mnist.train_images, mnist.train_labels, idx, 128, gen))
    epoch2 = list(iterate_batches(mnist.train_images, mnist.train_labels, idx, 128, gen))
    x, y = epoch1[0]
    assert x.shape == (128, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (128,)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) == 1.0  # 255 / 255 is exactly 1
    assert [len(b[1]) for b in epoch1] == [128] * 7 + [104]
    seen = torch.cat([b[1] for b in epoch1])
    assert torch.equal(seen.sort().values, mnist.train_labels[idx].sort().values)  # every digit once
    assert not torch.equal(torch.cat([b[1] for b in epoch2]), seen)  # a new order each epoch
    again = list(iterate_batches(mnist.train_images, mnist.train_labels, idx, 128, torch.Generator().manual_seed(3)))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(again, epoch1, strict=True))  # same seed, same pixels: exact


def test_random_shift_equals_a_naive_per_pixel_shift():
    x = torch.rand(6, 1, 28, 28)
    shifted = random_shift(x, 2, torch.Generator().manual_seed(4))
    sy, sx = torch.randint(-2, 3, (2, 6), generator=torch.Generator().manual_seed(4))
    expected = torch.zeros_like(x)
    for i in range(6):
        for r in range(28):
            for c in range(28):
                a, b = r - int(sy[i]), c - int(sx[i])
                if 0 <= a < 28 and 0 <= b < 28:
                    expected[i, 0, r, c] = x[i, 0, a, b]
    assert torch.equal(shifted, expected)  # a shift only copies pixels: exact
    assert len({(int(a), int(b)) for a, b in zip(sy, sx, strict=True)}) > 1  # each image its own shift


def test_a_file_that_cannot_be_opened_is_a_data_error_and_leaves_nothing_behind(tmp_path):
    """Decompressing a shipped file that vanished (or cannot be read) is reported as a DataError naming it, never as
    a bare FileNotFoundError from cleaning up a temporary file that was never made."""
    from cnn_core.data import _decompress_verified

    gz = tmp_path / "train-images-idx3-ubyte.gz"
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is not a readable gzip file"):
        _decompress_verified(gz, tmp_path / "out", "0" * 32)
    assert list(tmp_path.iterdir()) == []


def test_missing_checksums_and_several_missing_files_are_named(tmp_path):
    ship = _copy_shipped(tmp_path)
    (ship / "MD5SUMS").chmod(0o644)
    (ship / "MD5SUMS").unlink()
    with pytest.raises(DataError, match="MD5SUMS is missing"):
        load_mnist(ship, tmp_path / "cache")
    ship2 = _copy_shipped(tmp_path / "b")
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        (ship2 / name).unlink()
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz, t10k-images-idx3-ubyte\.gz"):
        load_mnist(ship2, tmp_path / "cache2")


def test_a_verified_cache_is_used_as_it_is(tmp_path, monkeypatch):
    """The second load decompresses nothing: every cached file is newer than its shipped one and passes its MD5."""
    import cnn_core.data as data

    ship, cache = _copy_shipped(tmp_path), tmp_path / "cache"
    data.prepare_raw(ship, cache)
    decompressed = []
    monkeypatch.setattr(data, "_decompress_verified", lambda gz, out, md5: decompressed.append(gz.name))
    assert data.prepare_raw(ship, cache) == cache and decompressed == []


class _FakeMNIST:
    """torchvision's MNIST as load_mnist calls it: records (root, train, download)."""
    calls: list = []

    def __init__(self, root, train=True, download=False):
        type(self).calls.append((root, train, download))
        n = 3 if train else 2
        self.data, self.targets = torch.zeros(n, 28, 28, dtype=torch.uint8), torch.arange(n)


def test_torchvision_loads_the_verified_files_and_downloads_only_when_none_is_shipped(tmp_path, monkeypatch):
    import cnn_core.data as data

    monkeypatch.setattr(data, "MNIST", _FakeMNIST)
    _FakeMNIST.calls = []
    ship, cache = _copy_shipped(tmp_path), tmp_path / "cache"
    m = load_mnist(ship, cache)
    assert _FakeMNIST.calls == [(str(cache), True, False), (str(cache), False, False)]
    assert (len(m.train_labels), len(m.test_labels)) == (3, 2)
    _FakeMNIST.calls = []
    load_mnist(tmp_path / "nothing-shipped", tmp_path / "cache2")
    assert _FakeMNIST.calls == [(str(tmp_path / "cache2"), True, True), (str(tmp_path / "cache2"), False, True)]


def test_a_load_that_fails_says_where_the_files_belong_and_how_to_restore_them(tmp_path, monkeypatch):
    import cnn_core.data as data

    def broken(root, train=True, download=False):
        raise RuntimeError("Dataset not found")

    monkeypatch.setattr(data, "MNIST", broken)
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path / "nothing-shipped", tmp_path / "cache")
    message = str(e.value)  # where it looked, why it failed, where the files belong and how to restore them
    assert all(part in message for part in (str(tmp_path / "cache"), "Dataset not found", str(tmp_path / "nothing-shipped"),
                                            "git checkout -- data/MNIST"))


def test_md5sums_in_binary_mode_name_their_files_without_the_star(tmp_path):
    from cnn_core.data import read_md5sums

    (tmp_path / "MD5SUMS").write_text("0123  train-images-idx3-ubyte\n\n4567 *t10k-labels-idx1-ubyte*\n")
    assert read_md5sums(tmp_path / "MD5SUMS") == {"train-images-idx3-ubyte": "0123", "t10k-labels-idx1-ubyte*": "4567"}


def test_without_a_generator_batches_keep_the_order_given():
    """Evaluation order: the indices as given, batch by batch (with the global RNG untouched by it)."""
    images, labels = torch.arange(10, dtype=torch.uint8)[:, None, None].expand(10, 28, 28), torch.arange(10)
    batches = [y.tolist() for _, y in iterate_batches(images, labels, torch.tensor([7, 2, 9, 0, 4]), 2)]
    assert batches == [[7, 2], [9, 0], [4]]
