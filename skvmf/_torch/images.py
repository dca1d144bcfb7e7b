"""The one image-input checker and batcher for everything that runs a network.

Every module that feeds images to a network takes the same inputs, checked
the same way and refused with the same messages:

- numpy arrays, tensors and (nested) lists of shape (N, C, H, W), or lists
  of (C, H, W) images;
- map-style datasets whose items are images or ``(image, label, ...)``;
- iterable datasets yielding such items;
- data loaders whose batches are images or ``(images, labels, ...)``.

:func:`image_batches` validates what can be validated up front and yields
``(start, batch)`` CPU tensors; :func:`check_batch` validates one batch
(rank, channels, dtype: no bool, complex, object or text, finiteness) and
moves it to the model's device and dtype; :func:`as_images` and
:func:`all_images` do both for one batch or a whole input.

Per-image indices (a class or a channel for every image, or one per image)
are validated by :func:`per_image_index`; :func:`class_per_image` turns a
``target`` argument into one class per image.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from .hooks import model_dtype


def first_conv_channels(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


# --------------------------------------------------------------------------
# one batch


def check_dtype(dtype, name: str = "images") -> None:
    """Refuse anything but real numbers: bool, complex, object and text."""
    if isinstance(dtype, torch.dtype):
        ok = dtype != torch.bool and not dtype.is_complex
    else:
        ok = np.dtype(dtype).kind in "iuf"
    if not ok:
        raise ValueError(
            f"{name} must hold real numbers (integer or floating point); got dtype "
            f"{dtype} (complex values are never cast to their real part)"
        )


def check_shape(shape, channels: int | None, name: str = "images") -> None:
    """Rank 4, at least one image, and the channels the model takes."""
    shape = tuple(int(v) for v in shape)
    if 0 in shape[:1] or (len(shape) < 4 and 0 in shape):
        # an empty list or batch is "no images", whatever its rank
        raise ValueError(f"{name} is empty: shape {shape}; need at least one image")
    if len(shape) != 4:
        hint = " (add a batch axis: images[None])" if len(shape) == 3 else ""
        raise ValueError(
            f"{name} must be images of shape (N, C, H, W); got {len(shape)} "
            f"dimensions, shape {shape}{hint}"
        )
    if channels is not None and shape[1] != channels:
        raise ValueError(
            f"{name} has {shape[1]} channels (shape {shape}) but the model's "
            f"first convolution takes in_channels={channels}"
        )


def _from_numpy(block: np.ndarray, name: str) -> torch.Tensor:
    check_dtype(block.dtype, name)
    if not (
        block.flags.writeable and block.flags.c_contiguous and block.dtype.isnative
    ):
        # torch wants writeable, contiguous, native-endian memory
        block = np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("="))
        block = block if block.flags.writeable else block.copy()
    return torch.from_numpy(block)


def to_tensor(images, name: str = "images") -> torch.Tensor:
    """A tensor (detached, not copied when possible) from an array-like."""
    if isinstance(images, torch.Tensor):
        check_dtype(images.dtype, name)
        return images.detach()
    if (
        isinstance(images, (list, tuple))
        and images
        and all(isinstance(im, (torch.Tensor, np.ndarray)) for im in images)
    ):
        return _stack([_item_image(im, name) for im in images], name)
    try:
        arr = np.asarray(images)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} could not be read as an image array (N, C, H, W): {exc}"
        ) from exc
    return _from_numpy(arr, name)


def check_batch(
    x: torch.Tensor,
    *,
    channels: int | None,
    device,
    dtype: torch.dtype,
    name: str = "images",
    start: int | None = None,
) -> torch.Tensor:
    """Validate one CPU batch and move it to ``device`` and ``dtype``.

    ``start``, the index of the batch's first image, is named in messages.
    """
    if start is not None:
        name = f"{name} (batch starting at image {start})"
    check_dtype(x.dtype, name)
    check_shape(x.shape, channels, name)
    cast = x.to(device=device, dtype=dtype)
    # a sum is NaN/inf when any element is (cheap); confirm element-wise so
    # that a sum overflowing on huge finite values is not refused
    if not (bool(torch.isfinite(cast.sum())) or bool(torch.isfinite(cast).all())):
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        raise ValueError(
            f"{name} has values too large for the model's dtype {dtype} (they "
            "would become infinite)"
        )
    return cast


def as_images(
    images, model: nn.Module, device: torch.device, *, name: str = "images"
) -> torch.Tensor:
    """Validate one (N, C, H, W) batch (numpy or torch) and move it to the model.

    The batch is cast to the model's floating dtype; a channel count that the
    model's first ``Conv2d`` cannot take is refused here rather than deep
    inside torch.
    """
    return check_batch(
        to_tensor(images, name),
        channels=first_conv_channels(model),
        device=device,
        dtype=model_dtype(model),
        name=name,
    )


# --------------------------------------------------------------------------
# any image source, in batches


def _item_image(item, name: str) -> torch.Tensor:
    if isinstance(item, (tuple, list)):
        if not item:
            raise ValueError(
                f"an item of {name} is an empty sequence; expected an image"
            )
        item = item[0]
    if isinstance(item, torch.Tensor):
        check_dtype(item.dtype, name)
        return item.detach()
    if isinstance(item, np.ndarray):
        return _from_numpy(item, name)
    raise ValueError(
        f"the items of {name} must be image tensors/arrays or (image, label); got "
        f"{type(item).__name__} (add a transform that makes tensors, e.g. ToTensor)"
    )


def _stack(images, name: str) -> torch.Tensor:
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise ValueError(f"the images of {name} differ in shape: {sorted(shapes)}")
    return torch.stack(images)


def _loader_length(loader: DataLoader) -> int | None:
    if isinstance(loader.dataset, IterableDataset) or loader.batch_size is None:
        return None
    try:
        n = len(loader.sampler)
    except TypeError:
        return None
    if loader.drop_last:
        n = (n // loader.batch_size) * loader.batch_size
    return n


class ImageBatches:
    """``(start, batch)`` CPU tensors of an image source.

    Attributes
    ----------
    n : int or None
        Number of images, when the source knows it.
    n_batches : int or None
        Number of batches, when known.
    """

    def __init__(self, n, n_batches, batches):
        self.n = n
        self.n_batches = n_batches
        self._batches = batches

    def __iter__(self):
        start = 0
        for batch in self._batches:
            yield start, batch
            start += len(batch)


def _loader_batches(loader: DataLoader, name: str) -> ImageBatches:
    try:
        n_batches = len(loader)
    except TypeError:
        n_batches = None
    return ImageBatches(
        _loader_length(loader),
        n_batches,
        (_item_image(batch, name) for batch in loader),
    )


def _iterable_batches(source, batch_size: int, name: str) -> ImageBatches:
    def chunks():
        chunk = []
        for item in source:
            chunk.append(_item_image(item, name))
            if len(chunk) == batch_size:
                yield _stack(chunk, name)
                chunk = []
        if chunk:
            yield _stack(chunk, name)

    return ImageBatches(None, None, chunks())


def _dataset_batches(source, batch_size: int, name: str) -> ImageBatches:
    n = len(source)
    if n == 0:
        raise ValueError(f"{name} is an empty dataset; need at least one image")

    def chunks():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            yield _stack(
                [_item_image(source[i], name) for i in range(start, stop)], name
            )

    return ImageBatches(n, -(-n // batch_size), chunks())


def image_batches(
    images, batch_size: int, *, channels: int | None = None, name: str = "images"
) -> ImageBatches:
    """Batches of any image source, validated as far as it can be up front.

    Arrays, tensors and lists are checked whole (dtype, rank, emptiness,
    ``channels``) and sliced without copies where possible; datasets and
    loaders are read item by item. Each batch still goes through
    :func:`check_batch` (finiteness, and what a dataset only shows when read).
    """
    if isinstance(images, DataLoader):
        return _loader_batches(images, name)
    if isinstance(images, IterableDataset):
        return _iterable_batches(images, batch_size, name)
    if isinstance(images, Dataset):
        return _dataset_batches(images, batch_size, name)
    x = to_tensor(images, name)
    check_shape(x.shape, channels, name)
    n = int(x.shape[0])
    return ImageBatches(
        n,
        -(-n // batch_size),
        (x[start : start + batch_size] for start in range(0, n, batch_size)),
    )


def all_images(
    images,
    model: nn.Module,
    device: torch.device,
    *,
    name: str = "images",
    batch_size: int = 1024,
) -> torch.Tensor:
    """Every image of any source as one validated batch on the model."""
    channels = first_conv_channels(model)
    parts = [
        check_batch(
            batch,
            channels=channels,
            device=device,
            dtype=model_dtype(model),
            name=name,
            start=start,
        )
        for start, batch in image_batches(
            images, batch_size, channels=channels, name=name
        )
    ]
    if not parts:
        raise ValueError(f"{name} yielded no images; need at least one")
    return parts[0] if len(parts) == 1 else torch.cat(parts)


# --------------------------------------------------------------------------
# per-image indices


def per_image_index(value, n: int, size: int, what: str) -> torch.Tensor | int:
    """An int for every image, or one int per image (length n), in [0, size)."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{what} must be an integer; got {value!r}")
        if not 0 <= int(arr) < size:
            raise ValueError(f"{what} {int(arr)} is out of range [0, {size})")
        return int(arr)
    if arr.ndim != 1 or arr.shape[0] != n or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{what} must be an int or one int per image ({n}); got shape "
            f"{arr.shape} and dtype {arr.dtype}"
        )
    bad = arr[(arr < 0) | (arr >= size)]
    if bad.size:
        raise ValueError(f"{what} values {bad[:5].tolist()} out of range [0, {size})")
    return torch.as_tensor(arr, dtype=torch.long)


def class_per_image(target, logits: torch.Tensor) -> np.ndarray:
    """Class per image: the validated ``target`` or the predicted class."""
    n, n_classes = logits.shape
    if target is None:
        return logits.argmax(dim=1).cpu().numpy()
    if isinstance(target, torch.Tensor):
        target = target.detach().cpu().numpy()
    index = per_image_index(target, n, n_classes, "target")
    if isinstance(index, int):
        return np.full(n, index, dtype=np.int64)
    return index.numpy()
