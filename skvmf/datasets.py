"""Images to analyse, from data on this machine only (nothing is downloaded).

- :func:`load_digits_images`: scikit-learn's handwritten digits (1797 real
  8 x 8 images shipped with scikit-learn), upsampled to a network-friendly
  size, three channels, normalised, with a fixed stratified train/test split.
  This is the built-in workload of ``skvmf demo``, the tests and examples.
- :func:`load_image_folder`: any local ImageFolder tree (``root/class/img``).
- :func:`load_cifar10`: CIFAR-10 in its usual on-disk Python format
  (``root/cifar-10-batches-py``), read here; skvmf never downloads it.
- :func:`subset_per_class`, :func:`subset_random` and :func:`as_arrays` for
  the few hundred images an analysis uses.

Every dataset yields ``(image, label)`` with a float32 image (C, H, W) and an
integer label, and carries ``classes`` (names), ``targets`` (labels) and the
``mean``/``std`` of its normalisation so images can be shown un-normalised.
"""

from __future__ import annotations

import os
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from sklearn.utils._param_validation import (
    Interval,
    RealNotInt,
    StrOptions,
    validate_params,
)
from torch.nn import functional as F
from torch.utils.data import Dataset, Subset

from ._torch.files import file_error, read_pickle

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageArrayDataset",
    "as_arrays",
    "load_cifar10",
    "load_digits_images",
    "load_image_folder",
    "subset_per_class",
    "subset_random",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = ("test_batch",)
_CIFAR_META = "batches.meta"
_CHUNK = 1024


class ImageArrayDataset(Dataset):
    """Labelled images held in memory, normalised on the way out.

    The stored images are the un-normalised source (uint8 in 0..255 or
    floats in [0, 1]); an item is that image as float32 in [0, 1], resized
    to ``size`` (bilinear) and normalised with ``mean``/``std``. Small
    datasets keep the prepared images in memory; large ones prepare each item
    when it is read.

    Parameters
    ----------
    source : tensor or ndarray of shape (N, C, H, W)
        The images, uint8 (0..255) or float (0..1).
    targets : tensor or ndarray of shape (N,)
        Integer labels in ``0 .. len(classes) - 1``.
    classes : sequence of str
        Class names, indexed by label.
    size : int, optional
        Side of the square output images; None keeps the stored size.
    mean, std : sequence of float, optional
        Per-channel normalisation; None leaves images in [0, 1].
    indices : array-like of int, optional
        Position of each image in its original collection (kept through
        :meth:`subset`).

    Attributes
    ----------
    images : torch.Tensor of shape (N, C, size, size)
        All items' images, float32 and normalised.
    targets : torch.Tensor of shape (N,)
        Labels, int64.
    classes : list of str
    mean, std : tuple of float
        Normalisation applied (zeros and ones when none).
    indices : ndarray of int
        Original positions of the images.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.datasets import ImageArrayDataset
    >>> images = np.zeros((4, 1, 8, 8), np.uint8)
    >>> ds = ImageArrayDataset(images, [0, 1, 0, 1], ["a", "b"], size=16)
    >>> image, label = ds[1]
    >>> tuple(image.shape), int(label), ds.classes[label]
    ((1, 16, 16), 1, 'b')
    """

    _CACHE_BYTES = 256 * 2**20

    def __init__(
        self, source, targets, classes, *, size=None, mean=None, std=None, indices=None
    ):
        source = torch.as_tensor(source)
        targets = torch.as_tensor(
            np.asarray(targets) if not torch.is_tensor(targets) else targets
        )
        if source.ndim != 4:
            raise ValueError(
                f"images must have shape (N, C, H, W); got {tuple(source.shape)}"
            )
        if targets.ndim != 1 or len(targets) != len(source):
            raise ValueError(
                f"targets must have shape ({len(source)},) to match the images; "
                f"got {tuple(targets.shape)}"
            )
        if targets.dtype.is_floating_point or targets.dtype == torch.bool:
            raise ValueError(f"targets must be integers; got dtype {targets.dtype}")
        self.classes = [str(c) for c in classes]
        if len(targets) and (
            int(targets.min()) < 0 or int(targets.max()) >= len(self.classes)
        ):
            raise ValueError(
                f"targets must lie in 0..{len(self.classes) - 1} "
                f"({len(self.classes)} classes); "
                f"got range {int(targets.min())}..{int(targets.max())}"
            )
        n_channels = source.shape[1]
        self.mean = _channel_tuple(mean, n_channels, "mean", default=0.0)
        self.std = _channel_tuple(std, n_channels, "std", default=1.0)
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive; got {self.std}")
        self.size = None if size is None else _check_size(size)
        self._source = source
        self.targets = targets.long()
        self.indices = (
            np.arange(len(source))
            if indices is None
            else np.asarray(indices, dtype=np.int64)
        )
        if self.indices.shape != (len(source),):
            raise ValueError(
                f"indices must have shape ({len(source)},); got {self.indices.shape}"
            )
        self._cache = None
        side = self.size or source.shape[-1]
        if len(source) * n_channels * side * side * 4 <= self._CACHE_BYTES:
            self._cache = self._prepare_all()

    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            shrink = x.shape[-1] > self.size or x.shape[-2] > self.size
            x = F.interpolate(
                x,
                size=(self.size, self.size),
                mode="bilinear",
                align_corners=False,
                antialias=shrink,
            )
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def _prepare_all(self) -> torch.Tensor:
        n, c, h, w = self._source.shape
        if n == 0:
            side = (self.size, self.size) if self.size else (h, w)
            return torch.empty((0, c, *side))
        chunks = [
            self._prepare(self._source[i : i + _CHUNK]) for i in range(0, n, _CHUNK)
        ]
        return torch.cat(chunks)

    @property
    def images(self) -> torch.Tensor:
        return self._cache if self._cache is not None else self._prepare_all()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index):
        if self._cache is not None:
            return self._cache[index], self.targets[index]
        return self._prepare(self._source[index][None])[0], self.targets[index]

    def subset(self, indices) -> ImageArrayDataset:
        """The images at ``indices``, with the same classes and normalisation.

        Parameters
        ----------
        indices : array-like of int or bool mask
            Positions in this dataset.

        Returns
        -------
        subset : ImageArrayDataset

        Examples
        --------
        >>> from skvmf.datasets import load_digits_images
        >>> ds = load_digits_images("test", size=8)
        >>> len(ds.subset([0, 1, 2]))
        3
        """
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(
                    f"a boolean mask must have shape ({len(self)},); got {idx.shape}"
                )
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise ValueError(
                f"indices must lie in [0, {len(self)}); "
                f"got range {idx.min()}..{idx.max()}"
            )
        t = torch.as_tensor(idx)
        new = object.__new__(type(self))
        new.classes = list(self.classes)
        new.mean, new.std, new.size = self.mean, self.std, self.size
        new._source = self._source[t]
        new.targets = self.targets[t]
        new.indices = self.indices[idx]
        new._cache = None if self._cache is None else self._cache[t]
        return new

    def unnormalize(self, images) -> torch.Tensor:
        """Undo the normalisation: images back in [0, 1] for display.

        Parameters
        ----------
        images : tensor of shape (N, C, H, W) or (C, H, W)

        Returns
        -------
        images : torch.Tensor
            ``images * std + mean`` per channel.

        Examples
        --------
        >>> from skvmf.datasets import load_digits_images
        >>> ds = load_digits_images("train", size=8)
        >>> bool(ds.unnormalize(ds.images).min() >= -1e-6)
        True
        """
        return _unnormalize(images, self.mean, self.std)

    def __repr__(self) -> str:
        shape = tuple(self.images.shape[1:]) if self._cache is not None else "lazy"
        name = type(self).__name__
        return f"{name}(n={len(self)}, image_shape={shape}, classes={self.classes})"


def _unnormalize(images, mean, std) -> torch.Tensor:
    x = torch.as_tensor(images).float()
    shape = (-1, 1, 1) if x.ndim == 3 else (1, -1, 1, 1)
    if x.ndim not in (3, 4) or x.shape[-3] != len(mean):
        raise ValueError(
            f"images must have shape (N, {len(mean)}, H, W) or ({len(mean)}, H, W); "
            f"got {tuple(x.shape)}"
        )
    return x * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)


def _channel_tuple(value, n_channels, name, default) -> tuple:
    if value is None:
        return (float(default),) * n_channels
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, n_channels)
    if arr.size != n_channels or not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} must be {n_channels} finite numbers (one per channel); "
            f"got {value!r}"
        )
    return tuple(float(v) for v in arr)


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer; got {size!r}")
    return int(size)


def _resolve_normalize(normalize, default_stats, n_channels):
    """(mean, std) or (None, None) from True, False, None, "imagenet" or a pair.

    The kind of ``normalize`` is validated by the public functions'
    constraints; a pair is checked here (one finite number per channel).
    """
    if normalize is None or normalize is False:
        return None, None
    if normalize is True:
        return default_stats()
    if isinstance(normalize, str):
        return IMAGENET_MEAN, IMAGENET_STD
    if len(normalize) != 2:
        raise ValueError(
            f"normalize must be 'imagenet', True, None or a (mean, std) "
            f"pair; got {normalize!r}"
        )
    mean = _channel_tuple(normalize[0], n_channels, "mean", 0.0)
    std = _channel_tuple(normalize[1], n_channels, "std", 1.0)
    if min(std) <= 0:
        raise ValueError(f"the std of normalize must be positive; got {std}")
    return mean, std


# what the loaders accept as ``normalize``
_NORMALIZE = ["boolean", None, StrOptions({"imagenet"}), tuple, list]


def _select_classes(classes, all_names):
    """Positions in ``all_names`` of the requested classes, in the order asked."""
    if classes is None:
        return list(range(len(all_names)))
    wanted = []
    for c in classes:
        if str(c) in all_names:
            name = str(c)
        elif isinstance(c, (int, np.integer)) and 0 <= int(c) < len(all_names):
            name = all_names[int(c)]
        else:
            raise ValueError(
                f"unknown class {c!r}; available classes are {list(all_names)}"
            )
        if name in wanted:
            raise ValueError(f"class {c!r} is listed twice in classes={list(classes)}")
        wanted.append(name)
    if not wanted:
        raise ValueError("classes must name at least one class; got an empty list")
    return [all_names.index(n) for n in wanted]


def _remap(targets: np.ndarray, keep: list[int]):
    """Mask of the kept images and their labels renumbered 0..len(keep)-1."""
    lookup = np.full(
        max(int(targets.max(initial=0)), max(keep)) + 1, -1, dtype=np.int64
    )
    lookup[keep] = np.arange(len(keep))
    new = lookup[targets]
    mask = new >= 0
    return mask, new[mask]


# --------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------

_DIGIT_NAMES = [str(i) for i in range(10)]


def _digits_source() -> tuple[torch.Tensor, np.ndarray]:
    """The 1797 digits as (N, 3, 8, 8) floats in [0, 1], and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    source = torch.as_tensor(digits.images / 16.0, dtype=torch.float32)
    return source[:, None].expand(-1, 3, -1, -1), digits.target.astype(np.int64)


def _digits_split(targets: np.ndarray, test_size, random_state):
    """Sorted positions of the fixed stratified train and test splits."""
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(targets))
    train, test = train_test_split(
        positions, test_size=test_size, random_state=random_state, stratify=targets
    )
    return np.sort(train), np.sort(test)


def _digits_train_stats(source, targets, train_idx, size):
    """Per-channel mean and std (ddof=1) of the training images at ``size``:
    one normalisation shared by every split and class subset."""
    plain = ImageArrayDataset(
        source[torch.as_tensor(train_idx)], targets[train_idx], _DIGIT_NAMES, size=size
    )
    x = plain.images.double()
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())


@validate_params(
    {
        "split": [StrOptions({"train", "test", "all"})],
        "size": [Interval(Integral, 1, None, closed="left")],
        "test_size": [Interval(RealNotInt, 0, 1, closed="neither")],
        "random_state": ["random_state"],
        "normalize": _NORMALIZE,
        "classes": [None, "array-like"],
    },
    prefer_skip_nested_validation=True,
)
def load_digits_images(
    split: str = "train",
    *,
    size: int = 32,
    test_size: float = 0.25,
    random_state=0,
    normalize=True,
    classes=None,
) -> ImageArrayDataset:
    """Scikit-learn's handwritten digits as network-ready images.

    The 1797 8 x 8 images (values 0..16) of :func:`sklearn.datasets.load_digits`,
    scaled to [0, 1], upsampled to ``size`` (bilinear), repeated over three
    channels and normalised with the per-channel mean and standard deviation
    of the training split (all ten digits, at this ``size``), so every split
    and every class subset shares one normalisation. The train/test split is
    stratified and fixed by ``random_state``: the same images on every call.

    Parameters
    ----------
    split : {"train", "test", "all"}, default="train"
        Which part of the fixed split.
    size : int, default=32
        Side of the output images (8 keeps the originals).
    test_size : float, default=0.25
        Fraction of images in the test split, in (0, 1).
    random_state : int, RandomState instance or None, default=0
        Seed of the split.
    normalize : bool, "imagenet" or (mean, std), default=True
        True uses the training statistics, False/None leaves images in
        [0, 1], "imagenet" the ImageNet statistics, a pair gives explicit
        per-channel values.
    classes : sequence of int or str, optional
        Digits to keep, e.g. ``[0, 1, 2]``; labels become their positions in
        this list and ``classes`` their names. Useful for out-of-sample
        studies (train on some digits, show others).

    Returns
    -------
    dataset : ImageArrayDataset
        Items ``(float32 image (3, size, size), int64 label)``; also
        ``images``, ``targets``, ``classes``, ``mean``, ``std`` and
        ``indices`` (positions in ``load_digits()``).

    Examples
    --------
    >>> from skvmf.datasets import load_digits_images
    >>> train = load_digits_images("train")
    >>> len(train), tuple(train.images.shape[1:]), train.classes[:3]
    (1347, (3, 32, 32), ['0', '1', '2'])
    >>> subset = load_digits_images("test", classes=[3, 5])
    >>> len(subset), subset.classes
    (92, ['3', '5'])
    """
    source, targets = _digits_source()
    train_idx, test_idx = _digits_split(targets, test_size, random_state)
    mean, std = _resolve_normalize(
        normalize, lambda: _digits_train_stats(source, targets, train_idx, size), 3
    )
    every = np.arange(len(targets))
    positions = {"train": train_idx, "test": test_idx, "all": every}[split]
    keep = _select_classes(classes, _DIGIT_NAMES)
    mask, labels = _remap(targets[positions], keep)
    positions = positions[mask]
    return ImageArrayDataset(
        source[torch.as_tensor(positions)],
        labels,
        [_DIGIT_NAMES[k] for k in keep],
        size=size,
        mean=mean,
        std=std,
        indices=positions,
    )


# --------------------------------------------------------------------------
# ImageFolder
# --------------------------------------------------------------------------


def _check_class_folder(root: Path) -> None:
    """``root`` exists, is a directory and has at least one class subfolder."""
    expected = "expected a directory with one subdirectory per class"
    if not root.exists():
        raise ValueError(f"image folder {str(root)!r} does not exist; {expected}")
    if not root.is_dir():
        raise ValueError(f"{str(root)!r} is not a directory; {expected}")
    if not any(entry.is_dir() for entry in os.scandir(root)):
        raise ValueError(
            f"image folder {str(root)!r} has no class subdirectories; "
            f"expected {str(root)}/<class name>/<image files>"
        )


def _folder_transform(size: int, mean, std):
    """Resize the short side, center-crop to a square, to tensor, normalise."""
    from torchvision import transforms

    steps = [
        transforms.Resize(size),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
    ]
    if mean is not None:
        steps.append(transforms.Normalize(mean, std))
    return transforms.Compose(steps)


def _open_image_folder(root: Path, transform):
    """torchvision's ImageFolder, with its missing-images error naming the folder."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    try:
        return ImageFolder(str(root), transform=transform)
    except FileNotFoundError as exc:
        raise ValueError(
            f"image folder {str(root)!r}: every class subdirectory needs image files "
            f"({', '.join(IMG_EXTENSIONS)}): {exc}"
        ) from exc


def _keep_per_class(dataset, max_per_class: int, random_state) -> None:
    """Keep at most ``max_per_class`` samples of each class, in file order:
    the first ones (``random_state=None``) or a seeded draw."""
    from sklearn.utils import check_random_state

    rng = None if random_state is None else check_random_state(random_state)
    targets = np.asarray(dataset.targets)
    keep = []
    for c in range(len(dataset.classes)):
        members = np.flatnonzero(targets == c)
        if rng is not None and len(members) > max_per_class:
            members = np.sort(rng.choice(members, size=max_per_class, replace=False))
        keep.extend(members[:max_per_class].tolist())
    keep.sort()
    dataset.samples = [dataset.samples[i] for i in keep]
    dataset.imgs = dataset.samples
    dataset.targets = [s[1] for s in dataset.samples]


@validate_params(
    {
        "path": [str, os.PathLike],
        "size": [Interval(Integral, 1, None, closed="left")],
        "normalize": _NORMALIZE,
        "max_per_class": [None, Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def load_image_folder(
    path,
    *,
    size: int = 224,
    normalize="imagenet",
    max_per_class=None,
    random_state=None,
):
    """A local ImageFolder tree (``path/<class>/<image>``) as a dataset.

    Images are converted to RGB, resized so the short side is ``size``,
    center-cropped to ``size`` x ``size`` and normalised. Nothing is
    downloaded.

    Parameters
    ----------
    path : str or path-like
        Root directory with one subdirectory per class.
    size : int, default=224
        Side of the output images.
    normalize : "imagenet", bool, None or (mean, std), default="imagenet"
        ImageNet statistics ("imagenet" or True; for networks trained on
        ImageNet-like data), none (False or None: images in [0, 1]) or
        explicit per-channel values.
    max_per_class : int, optional
        Keep at most this many images per class.
    random_state : int, RandomState instance or None, default=None
        Which images ``max_per_class`` keeps: None keeps the first ones in
        sorted file order (deterministic), otherwise a random draw.

    Returns
    -------
    dataset : torchvision.datasets.ImageFolder
        Items ``(float32 image (3, size, size), int label)``, with
        ``classes``, ``targets``, ``samples`` and the ``mean``/``std`` used.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> from skvmf.datasets import load_image_folder
    >>> with tempfile.TemporaryDirectory() as root:
    ...     for name in ("cat", "dog"):
    ...         (pathlib.Path(root) / name).mkdir()
    ...         image = Image.fromarray(np.zeros((40, 30, 3), np.uint8))
    ...         image.save(f"{root}/{name}/a.png")
    ...     ds = load_image_folder(root, size=24)
    ...     ds.classes, tuple(ds[0][0].shape), ds[1][1]
    (['cat', 'dog'], (3, 24, 24), 1)
    """
    root = Path(path).expanduser()
    _check_class_folder(root)
    mean, std = _resolve_normalize(normalize, lambda: (IMAGENET_MEAN, IMAGENET_STD), 3)
    dataset = _open_image_folder(root, _folder_transform(size, mean, std))
    if max_per_class is not None:
        _keep_per_class(dataset, max_per_class, random_state)
    dataset.mean = (0.0, 0.0, 0.0) if mean is None else tuple(float(m) for m in mean)
    dataset.std = (1.0, 1.0, 1.0) if std is None else tuple(float(s) for s in std)
    return dataset


# --------------------------------------------------------------------------
# CIFAR-10 on disk
# --------------------------------------------------------------------------


def _cifar_folder(root, split: str, normalize) -> Path:
    """``root/cifar-10-batches-py``, once every file this call reads is there."""
    folder = Path(root).expanduser() / _CIFAR_DIR
    batches = _CIFAR_TRAIN if split == "train" else _CIFAR_TEST
    if normalize is True:  # the training statistics need every training batch
        batches = (*_CIFAR_TRAIN, *_CIFAR_TEST)
    missing = [
        name for name in (*batches, _CIFAR_META) if not (folder / name).is_file()
    ]
    if missing:
        raise ValueError(
            f"CIFAR-10 not found: looked for {', '.join(missing)} in {str(folder)!r} "
            "(the python-version layout, cifar-10-batches-py); "
            "skvmf never downloads data, "
            "unpack cifar-10-python.tar.gz there first"
        )
    return folder


def _cifar_label_names(folder: Path) -> list[str]:
    """The class names of ``batches.meta`` (read without running code)."""
    path = folder / _CIFAR_META
    meta = read_pickle(path, what="CIFAR-10 metadata file")
    names = meta.get("label_names") if isinstance(meta, dict) else None
    if isinstance(names, (list, tuple)):
        names = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
    if not names or not all(isinstance(n, str) for n in names):
        raise file_error(
            path,
            "CIFAR-10 metadata file",
            "is not in the CIFAR-10 layout (a pickled dict whose 'label_names' "
            "is a list of class names)",
        )
    return names


def _read_cifar_batch(path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels of one batch file; any content
    that is not that layout is an error naming the file."""
    what = "CIFAR-10 batch"
    entry = read_pickle(path, what=what)
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        raise file_error(
            path,
            what,
            "is not in the CIFAR-10 layout (a dict with 'data' and 'labels')",
        )
    data, labels = np.asarray(entry["data"]), np.asarray(entry["labels"])
    if data.dtype.kind not in "ui" or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise file_error(
            path,
            what,
            f"has 'data' of shape {data.shape} and dtype {data.dtype}; "
            "expected integers of shape (N, 3072)",
        )
    if len(data) and (data.min() < 0 or data.max() > 255):
        raise file_error(path, what, "has pixel values outside 0..255")
    if labels.dtype.kind not in "ui" or labels.shape != (len(data),):
        raise file_error(
            path,
            what,
            f"has 'labels' of shape {labels.shape} and dtype {labels.dtype}; "
            f"expected {len(data)} integers, one per image",
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise file_error(
            path,
            what,
            f"has labels {labels.min()}..{labels.max()}; expected 0..{n_classes - 1} "
            f"({n_classes} classes in {_CIFAR_META})",
        )
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar_train_stats(folder: Path, n_classes: int):
    """Per-channel mean and std (ddof=1) of the training batches, in [0, 1]
    units, accumulated batch by batch."""
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for name in _CIFAR_TRAIN:
        data, _ = _read_cifar_batch(folder / name, n_classes)
        x = data.astype(np.float64) / 255.0
        total += x.sum(axis=(0, 2, 3))
        total_sq += (x**2).sum(axis=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 0.0) * count / max(count - 1, 1)
    return tuple(mean.tolist()), tuple(np.sqrt(var).tolist())


@validate_params(
    {
        "root": [str, os.PathLike],
        "split": [StrOptions({"train", "test"})],
        "size": [Interval(Integral, 1, None, closed="left")],
        "normalize": _NORMALIZE,
        "classes": [None, "array-like"],
    },
    prefer_skip_nested_validation=True,
)
def load_cifar10(
    root, split: str = "train", *, size: int = 32, normalize=True, classes=None
) -> ImageArrayDataset:
    """CIFAR-10 from its on-disk Python format; never downloads.

    Reads ``root/cifar-10-batches-py`` (``data_batch_1`` .. ``data_batch_5``,
    ``test_batch``, ``batches.meta``: the layout torchvision's ``CIFAR10``
    uses) directly, without checksums, so any data in that format loads. The
    pickled files are read by a restricted unpickler that builds numpy arrays
    and plain containers only: a file that names anything else (a crafted
    ``__reduce__``) is refused before any of it runs.

    Parameters
    ----------
    root : str or path-like
        Directory containing ``cifar-10-batches-py``.
    split : {"train", "test"}, default="train"
        The 50000 training or 10000 test images.
    size : int, default=32
        Side of the output images (bilinear resize).
    normalize : bool, "imagenet" or (mean, std), default=True
        True uses the per-channel mean and std of the training batches (at
        32 px), False/None leaves images in [0, 1].
    classes : sequence of int or str, optional
        Classes to keep (names or label numbers); labels become their
        positions in this list.

    Returns
    -------
    dataset : ImageArrayDataset
        Items ``(float32 image (3, size, size), int64 label)``.

    Raises
    ------
    ValueError
        When a file is missing, truncated, corrupt, not plain data or not in
        the CIFAR-10 layout; the message names the file.

    Examples
    --------
    >>> from skvmf.datasets import load_cifar10
    >>> load_cifar10("/nonexistent")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: CIFAR-10 not found: ... skvmf never downloads data...
    """
    folder = _cifar_folder(root, split, normalize)
    names = _cifar_label_names(folder)
    mean, std = _resolve_normalize(
        normalize, lambda: _cifar_train_stats(folder, len(names)), 3
    )
    files = _CIFAR_TRAIN if split == "train" else _CIFAR_TEST
    parts = [_read_cifar_batch(folder / name, len(names)) for name in files]
    data = np.concatenate([p[0] for p in parts])
    targets = np.concatenate([p[1] for p in parts])
    keep = _select_classes(classes, names)
    mask, labels = _remap(targets, keep)
    positions = np.flatnonzero(mask)
    return ImageArrayDataset(
        torch.from_numpy(data[positions]),
        labels,
        [names[k] for k in keep],
        size=size,
        mean=mean,
        std=std,
        indices=positions,
    )


# --------------------------------------------------------------------------
# subsets and arrays
# --------------------------------------------------------------------------


def _targets_of(dataset) -> np.ndarray:
    """Every label of ``dataset``: its ``targets`` when complete, else read."""
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        return np.asarray(
            targets.cpu() if torch.is_tensor(targets) else targets, dtype=np.int64
        )
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def _subset(dataset, idx: np.ndarray, targets: np.ndarray):
    """The images at sorted positions ``idx``, keeping classes and normalisation."""
    if isinstance(dataset, ImageArrayDataset):
        return dataset.subset(idx)
    sub = Subset(dataset, idx.tolist())
    sub.targets = targets[idx]
    for name in ("classes", "mean", "std"):
        if hasattr(dataset, name):
            setattr(sub, name, getattr(dataset, name))
    return sub


@validate_params(
    {
        "dataset": "no_validation",
        "n_per_class": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def subset_per_class(dataset, n_per_class: int, random_state=0):
    """A balanced subset: ``n_per_class`` images of every class.

    Parameters
    ----------
    dataset : Dataset
        Items ``(image, label)``; ``dataset.targets`` is used when present.
    n_per_class : int
        Images drawn (without replacement) from each class.
    random_state : int, RandomState instance or None, default=0
        Seed of the draw.

    Returns
    -------
    subset : ImageArrayDataset or torch.utils.data.Subset
        An :class:`ImageArrayDataset` for one, else a ``Subset`` carrying
        ``targets``, ``classes``, ``mean`` and ``std`` of the original.
        Images keep their original order.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.datasets import load_digits_images, subset_per_class
    >>> sub = subset_per_class(load_digits_images("test"), 20, random_state=0)
    >>> len(sub), np.bincount(sub.targets.numpy()).tolist() == [20] * 10
    (200, True)
    """
    from sklearn.utils import check_random_state

    targets = _targets_of(dataset)
    rng = check_random_state(random_state)
    classes = getattr(dataset, "classes", None)
    n_classes = len(classes) if classes else len(np.unique(targets))
    chosen = []
    for c in range(n_classes):
        members = np.flatnonzero(targets == c)
        if len(members) < n_per_class:
            name = f" ({classes[c]})" if classes else ""
            raise ValueError(
                f"class {c}{name} has {len(members)} images, "
                f"fewer than n_per_class={n_per_class}"
            )
        chosen.append(rng.choice(members, size=n_per_class, replace=False))
    return _subset(dataset, np.sort(np.concatenate(chosen)), targets)


@validate_params(
    {
        "dataset": "no_validation",
        "n_images": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def subset_random(dataset, n_images: int, random_state=0):
    """``n_images`` images drawn at random (without replacement), in order.

    Parameters
    ----------
    dataset : Dataset
        Items ``(image, label)``; ``dataset.targets`` is used when present.
    n_images : int
        Images drawn; at most ``len(dataset)``.
    random_state : int, RandomState instance or None, default=0
        Seed of the draw.

    Returns
    -------
    subset : ImageArrayDataset or torch.utils.data.Subset
        As :func:`subset_per_class` returns; images keep their original order.

    Examples
    --------
    >>> from skvmf.datasets import load_digits_images, subset_random
    >>> sub = subset_random(load_digits_images("test"), 30, random_state=0)
    >>> len(sub), sub.classes == [str(d) for d in range(10)]
    (30, True)
    """
    from sklearn.utils import check_random_state

    if n_images > len(dataset):
        raise ValueError(
            f"n_images={n_images} exceeds the {len(dataset)} images of the data"
        )
    rng = check_random_state(random_state)
    idx = np.sort(rng.choice(len(dataset), size=n_images, replace=False))
    return _subset(dataset, idx, _targets_of(dataset))


@validate_params(
    {
        "dataset": "no_validation",
        "batch_size": [Interval(Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def as_arrays(dataset, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """All images and labels of a dataset as numpy arrays.

    Parameters
    ----------
    dataset : Dataset
        Items ``(image, label)``.
    batch_size : int, default=256
        Images read per step for datasets that are not in memory.

    Returns
    -------
    images : ndarray of shape (N, C, H, W), float32
    labels : ndarray of shape (N,), int64

    Examples
    --------
    >>> from skvmf.datasets import as_arrays, load_digits_images
    >>> X, y = as_arrays(load_digits_images("test", size=16))
    >>> X.shape, X.dtype, y.dtype
    ((450, 3, 16, 16), dtype('float32'), dtype('int64'))
    """
    if isinstance(dataset, ImageArrayDataset):
        return dataset.images.numpy().astype(
            np.float32, copy=False
        ), dataset.targets.numpy().copy()
    if len(dataset) == 0:
        raise ValueError("dataset is empty")
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=0
    )
    images, labels = [], []
    for X, y in loader:
        images.append(torch.as_tensor(X).float().numpy())
        labels.append(torch.as_tensor(y).long().numpy())
    return np.concatenate(images), np.concatenate(labels)
