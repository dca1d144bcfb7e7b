import os
import pickle
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.datasets import load_digits
from torch.nn import functional as F

from skvmf.datasets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageArrayDataset,
    as_arrays,
    load_cifar10,
    load_digits_images,
    load_image_folder,
    subset_per_class,
    subset_random,
)

DIGITS = load_digits()


def _blur_matrix(n=8):
    """Bilinear x4 upsampling (half-pixel centres, clamped edges) followed by
    4x4 block averaging equals the stencil [1/8, 3/4, 1/8] on the original."""
    B = np.zeros((n, n))
    for i in range(n):
        B[i, i] += 0.75
        B[i, max(i - 1, 0)] += 0.125
        B[i, min(i + 1, n - 1)] += 0.125
    return B


# ---------------------------------------------------------------- digits


def test_digits_shapes_and_types():
    train = load_digits_images("train")
    test = load_digits_images("test")
    full = load_digits_images("all")
    assert (len(train), len(test), len(full)) == (1347, 450, 1797)
    assert train.images.shape == (1347, 3, 32, 32)
    assert train.images.dtype == torch.float32
    assert train.targets.dtype == torch.int64
    assert train.classes == [str(i) for i in range(10)]
    image, label = train[5]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label.dtype == torch.int64 and int(label) == int(train.targets[5])
    # the three channels are the same grey image
    assert torch.equal(train.images[:, 0], train.images[:, 2])


def test_digits_split_is_fixed_stratified_and_disjoint():
    a = load_digits_images("train", size=8).indices
    b = load_digits_images("train", size=8).indices
    test = load_digits_images("test", size=8).indices
    np.testing.assert_array_equal(a, b)
    assert np.intersect1d(a, test).size == 0
    np.testing.assert_array_equal(np.union1d(a, test), np.arange(1797))
    counts = np.bincount(DIGITS.target, minlength=10)
    test_counts = np.bincount(DIGITS.target[test], minlength=10)
    # stratified: every class keeps its share, up to rounding
    assert np.all(np.abs(test_counts - 0.25 * counts) <= 1)
    other = load_digits_images("test", size=8, random_state=1).indices
    assert not np.array_equal(other, test)


def test_digits_normalisation_uses_train_statistics():
    train = load_digits_images("train")
    x = train.images.double()
    np.testing.assert_allclose(x.mean(dim=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(dim=(0, 2, 3)), 1.0, atol=1e-5)
    test = load_digits_images("test")
    assert test.mean == train.mean and test.std == train.std
    assert len(train.mean) == 3 and len(set(train.mean)) == 1


def test_digits_images_and_labels_match_sklearn():
    ds = load_digits_images("all", size=32)
    np.testing.assert_array_equal(ds.targets.numpy(), DIGITS.target[ds.indices])
    raw = ds.unnormalize(ds.images)[:, 0:1]  # back in [0, 1]
    down = F.interpolate(raw, size=(8, 8), mode="area")[:, 0].double().numpy()
    B = _blur_matrix()
    expected = B @ (DIGITS.images[ds.indices] / 16.0) @ B.T
    np.testing.assert_allclose(down, expected, atol=1e-5)
    # at the native size nothing is resampled
    native = load_digits_images("test", size=8, normalize=False)
    np.testing.assert_allclose(
        native.images[:, 1].numpy(), DIGITS.images[native.indices] / 16.0, atol=1e-7
    )
    assert native.mean == (0.0,) * 3 and native.std == (1.0,) * 3


def test_digits_class_subset():
    full = load_digits_images("train", size=16)
    sub = load_digits_images("train", size=16, classes=[7, 2])
    assert sub.classes == ["7", "2"]
    assert set(sub.targets.tolist()) == {0, 1}
    np.testing.assert_array_equal(
        np.array([7, 2])[sub.targets.numpy()], DIGITS.target[sub.indices]
    )
    # the same images, with the same normalisation, as in the full split
    assert set(sub.indices) <= set(full.indices)
    assert sub.mean == full.mean
    pos = np.searchsorted(full.indices, sub.indices)
    torch.testing.assert_close(sub.images, full.images[torch.as_tensor(pos)])
    assert load_digits_images("test", classes=["3"]).classes == ["3"]


def test_digits_explicit_normalisation():
    ds = load_digits_images("test", size=8, normalize=((0.5, 0.5, 0.5), (0.25,) * 3))
    raw = load_digits_images("test", size=8, normalize=False)
    torch.testing.assert_close(ds.images, (raw.images - 0.5) / 0.25)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "val"}, "split"),
        ({"size": 0}, "size"),
        ({"test_size": 1.5}, "test_size"),
        ({"classes": [11]}, "unknown class"),
        ({"classes": [1, 1]}, "twice"),
        ({"classes": []}, "at least one"),
        ({"normalize": "foo"}, "normalize"),
    ],
)
def test_digits_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_digits_images(**kwargs)


# ---------------------------------------------------------------- arrays


def test_image_array_dataset_lazy_path_matches_cached(monkeypatch):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(6, 3, 10, 10), dtype=np.uint8)
    eager = ImageArrayDataset(
        data, [0, 1, 2, 0, 1, 2], "abc", size=20, mean=0.5, std=0.2
    )
    monkeypatch.setattr(ImageArrayDataset, "_CACHE_BYTES", 0)
    lazy = ImageArrayDataset(
        data, [0, 1, 2, 0, 1, 2], "abc", size=20, mean=0.5, std=0.2
    )
    assert lazy._cache is None and eager._cache is not None
    torch.testing.assert_close(lazy[3][0], eager[3][0])
    torch.testing.assert_close(lazy.images, eager.images)
    expected = F.interpolate(
        torch.as_tensor(data).float() / 255, size=(20, 20), mode="bilinear"
    )
    torch.testing.assert_close(eager.unnormalize(eager.images), expected)
    sub = lazy.subset([4, 1])
    torch.testing.assert_close(sub.images, eager.images[[4, 1]])
    np.testing.assert_array_equal(sub.indices, [4, 1])


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros((2, 8, 8)), [0, 1], "ab"), "shape"),
        ((np.zeros((2, 1, 8, 8)), [0], "ab"), "targets"),
        ((np.zeros((2, 1, 8, 8)), [0, 2], "ab"), "0..1"),
        ((np.zeros((2, 1, 8, 8)), [0.0, 1.0], "ab"), "integers"),
    ],
)
def test_image_array_dataset_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        ImageArrayDataset(*args)


def test_subset_per_class_and_as_arrays():
    test = load_digits_images("test", size=16)
    a = subset_per_class(test, 7, random_state=3)
    b = subset_per_class(test, 7, random_state=3)
    c = subset_per_class(test, 7, random_state=4)
    assert isinstance(a, ImageArrayDataset)
    assert np.bincount(a.targets.numpy()).tolist() == [7] * 10
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    assert np.all(np.diff(a.indices) > 0)
    X, y = as_arrays(a)
    assert X.shape == (70, 3, 16, 16) and X.dtype == np.float32
    np.testing.assert_array_equal(y, DIGITS.target[a.indices])
    # a generic Dataset goes through a DataLoader and gives the same arrays
    generic = torch.utils.data.TensorDataset(test.images, test.targets)
    Xg, yg = as_arrays(subset_per_class(generic, 7, random_state=3))
    np.testing.assert_array_equal(Xg, X)
    np.testing.assert_array_equal(yg, y)
    with pytest.raises(ValueError, match="fewer than n_per_class"):
        subset_per_class(test, 1000)
    with pytest.raises(ValueError, match="n_per_class"):
        subset_per_class(test, 0)


# ---------------------------------------------------------------- ImageFolder


def _make_folder(root, sizes=((30, 40), (50, 20), (24, 24))):
    colours = {"zebra": (255, 0, 0), "apple": (0, 128, 255)}
    for name, colour in colours.items():
        (root / name).mkdir()
        for k, (w, h) in enumerate(sizes):
            Image.new("RGB", (w, h), colour).save(root / name / f"img{k}.png")
    (root / "apple" / "notes.txt").write_text("not an image")
    return colours


def test_image_folder(tmp_path):
    colours = _make_folder(tmp_path)
    ds = load_image_folder(tmp_path, size=16)
    assert ds.classes == ["apple", "zebra"]
    assert len(ds) == 6 and ds.targets == [0, 0, 0, 1, 1, 1]
    image, label = ds[4]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 1
    expected = (np.array(colours["zebra"]) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(image.mean(dim=(1, 2)), expected, atol=1e-5)
    assert ds.mean == IMAGENET_MEAN and ds.std == IMAGENET_STD
    raw = load_image_folder(tmp_path, size=8, normalize=None)
    np.testing.assert_allclose(
        raw[0][0][:, 3, 3], np.array(colours["apple"]) / 255, atol=1e-6
    )
    X, y = as_arrays(raw)
    assert X.shape == (6, 3, 8, 8) and y.tolist() == [0, 0, 0, 1, 1, 1]


def test_image_folder_max_per_class(tmp_path):
    _make_folder(tmp_path)
    first = load_image_folder(tmp_path, size=8, max_per_class=2)
    assert first.targets == [0, 0, 1, 1]
    assert [p.split("/")[-1] for p, _ in first.samples] == ["img0.png", "img1.png"] * 2
    drawn = load_image_folder(tmp_path, size=8, max_per_class=2, random_state=0)
    again = load_image_folder(tmp_path, size=8, max_per_class=2, random_state=0)
    assert drawn.samples == again.samples and drawn.targets == [0, 0, 1, 1]
    sub = subset_per_class(first, 1, random_state=0)
    assert isinstance(sub, torch.utils.data.Subset)
    assert sub.classes == ["apple", "zebra"] and sorted(sub.targets.tolist()) == [0, 1]


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ValueError, match="not a directory"):
        load_image_folder(tmp_path / "file.png")
    with pytest.raises(ValueError, match="no class subdirectories"):
        load_image_folder(tmp_path)
    (tmp_path / "cls").mkdir()
    with pytest.raises(ValueError, match="needs image files"):
        load_image_folder(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "cls" / "a.png")
    with pytest.raises(ValueError, match="max_per_class"):
        load_image_folder(tmp_path, max_per_class=0)


# ---------------------------------------------------------------- CIFAR-10

_NAMES = ["airplane", "automobile", "bird", "cat", "deer"] + [
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def _write_cifar(root, n_per_batch=12, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n_per_batch).tolist()
        entry = {"batch_label": name, "labels": labels, "data": data}
        entry["filenames"] = [f"{name}_{i}.png" for i in range(n_per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
        batches[name] = (data, np.array(labels))
    meta = {"num_cases_per_batch": n_per_batch, "label_names": _NAMES, "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f)
    return batches


def test_cifar10_from_disk(tmp_path):
    batches = _write_cifar(tmp_path)
    train = load_cifar10(tmp_path, "train")
    test = load_cifar10(tmp_path, "test", normalize=False)
    data = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    assert len(train) == 60 and len(test) == 12 and train.classes == _NAMES
    np.testing.assert_array_equal(train.targets.numpy(), labels)
    pixels = data.reshape(-1, 3, 32, 32) / 255.0
    mean = pixels.mean(axis=(0, 2, 3))
    std = pixels.transpose(1, 0, 2, 3).reshape(3, -1).std(axis=1, ddof=1)
    np.testing.assert_allclose(train.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(train.std, std, rtol=1e-10)
    expected = (pixels - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(train.images.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(
        test.images.numpy(),
        batches["test_batch"][0].reshape(-1, 3, 32, 32) / 255.0,
        atol=1e-7,
    )
    small = load_cifar10(tmp_path, "test", size=16, classes=["cat", 1])
    assert small.classes == ["cat", "automobile"]
    assert small.images.shape[1:] == (3, 16, 16)
    kept = np.isin(batches["test_batch"][1], [3, 1])
    assert len(small) == kept.sum()
    np.testing.assert_array_equal(
        np.array([3, 1])[small.targets.numpy()], batches["test_batch"][1][kept]
    )


def test_cifar10_missing(tmp_path):
    with pytest.raises(ValueError, match="never downloads") as info:
        load_cifar10(tmp_path)
    assert "cifar-10-batches-py" in str(info.value) and "data_batch_1" in str(
        info.value
    )
    _write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ValueError, match="data_batch_3"):
        load_cifar10(tmp_path, "test")  # train statistics need every train batch
    assert len(load_cifar10(tmp_path, "test", normalize=False)) == 12
    with pytest.raises(ValueError, match="split"):
        load_cifar10(tmp_path, "val")


class _System:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("target", ["batches.meta", "test_batch"])
def test_cifar10_crafted_pickle_runs_no_code(tmp_path, target):
    _write_cifar(tmp_path)
    marker = tmp_path / "marker"
    path = tmp_path / "cifar-10-batches-py" / target
    with open(path, "wb") as f:
        pickle.dump({"label_names": _NAMES, "data": _System(marker)}, f, protocol=2)
    with pytest.raises(ValueError) as info:
        load_cifar10(tmp_path, "test", normalize=False)
    message = str(info.value)
    assert repr(str(path)) in message and "refused without running it" in message
    assert "\n" not in message and not marker.exists()


def test_cifar10_bad_files_are_named(tmp_path):
    _write_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    raw = (folder / "test_batch").read_bytes()
    for cut in (0, 1, len(raw) // 2, len(raw) - 1):
        (folder / "test_batch").write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="'.*test_batch' is corrupt or truncated"):
            load_cifar10(tmp_path, "test", normalize=False)
    cases = [
        ({"data": np.zeros((2, 3072), np.uint8)}, "CIFAR-10 layout"),
        ({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, r"\(2, 100\)"),
        ({"data": np.zeros((2, 3072)), "labels": [0, 1]}, "float64"),
        ({"data": np.full((2, 3072), 300), "labels": [0, 1]}, "outside 0..255"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, "one per image"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0.5, 1]}, "float64"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, "0..10"),
        ([1, 2], "CIFAR-10 layout"),
    ]
    for entry, words in cases:
        with open(folder / "test_batch", "wb") as f:
            pickle.dump(entry, f)
        with pytest.raises(ValueError, match="test_batch") as info:
            load_cifar10(tmp_path, "test", normalize=False)
        assert re.search(words, str(info.value)), (words, str(info.value))
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [1, 2]}, f)
    with pytest.raises(ValueError, match="batches.meta' is not in the CIFAR-10"):
        load_cifar10(tmp_path, "test", normalize=False)


def test_cifar10_python2_names_and_protocols(tmp_path):
    """Label names pickled as bytes (Python 3 with protocol 2, or read with
    encoding='bytes') come back as str; every protocol reads the same."""
    batches = _write_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [n.encode() for n in _NAMES]}, f, protocol=2)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        data, labels = batches["test_batch"]
        entry = {"data": data, "labels": labels.tolist()}
        with open(folder / "test_batch", "wb") as f:
            pickle.dump(entry, f, protocol=protocol)
        test = load_cifar10(tmp_path, "test", normalize=False)
        assert test.classes == _NAMES
        np.testing.assert_array_equal(
            test.images.numpy(), data.reshape(-1, 3, 32, 32) / np.float32(255)
        )


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: load_image_folder(3), "'path' parameter"),
        (lambda: load_cifar10("x", size=0), "'size' parameter"),
        (lambda: load_cifar10("x", normalize="foo"), "'normalize' parameter"),
        (lambda: load_digits_images(test_size=1), "'test_size' parameter"),
        (lambda: load_digits_images(normalize=([0.5], [0.0, 1.0])), "std"),
        (lambda: load_digits_images(normalize=(0.5, 0.0)), "positive"),
        (lambda: subset_per_class([], 0), "'n_per_class' parameter"),
        (lambda: subset_random([], 1.5), "'n_images' parameter"),
        (lambda: as_arrays([], batch_size=0), "'batch_size' parameter"),
    ],
)
def test_parameters_are_validated(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_subset_random_draws_n_distinct_images_in_order(n, seed):
    data = _DIGITS_SMALL
    sub = subset_random(data, n, random_state=seed)
    assert len(sub) == n == len(set(sub.indices.tolist()))
    assert np.all(np.diff(sub.indices) > 0)
    assert set(sub.indices.tolist()) <= set(data.indices.tolist())
    position = {int(i): k for k, i in enumerate(data.indices)}
    rows = [position[int(i)] for i in sub.indices]
    torch.testing.assert_close(sub.images, data.images[rows])
    np.testing.assert_array_equal(sub.targets.numpy(), data.targets.numpy()[rows])
    again = subset_random(data, n, random_state=seed)
    np.testing.assert_array_equal(again.indices, sub.indices)


_DIGITS_SMALL = load_digits_images("test", size=8, classes=[0, 1, 2, 3])


def test_subset_random_on_a_folder_keeps_classes_and_targets(tmp_path):
    _make_folder(tmp_path)
    folder = load_image_folder(tmp_path, size=8)
    sub = subset_random(folder, 2, random_state=0)
    assert isinstance(sub, torch.utils.data.Subset) and sub.classes == folder.classes
    np.testing.assert_array_equal(sub.targets, np.asarray(folder.targets)[sub.indices])
    with pytest.raises(ValueError, match="exceeds the"):
        subset_random(folder, len(folder) + 1)
