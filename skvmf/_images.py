"""The one image-input checker and batcher for everything that runs a network.

Images come as numpy arrays, tensors, lists, map-style datasets or data
loaders; :func:`as_images` validates one batch (rank, channels, dtype, no
complex or object values, finiteness) and moves it to the model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ._hooks import model_dtype


def first_conv_channels(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


def as_images(
    images, model: nn.Module, device: torch.device, *, name: str = "images"
) -> torch.Tensor:
    """Validate a (N, C, H, W) batch (numpy or torch) and move it to the model.

    The batch is cast to the model's floating dtype; a channel count that the
    model's first ``Conv2d`` cannot take is refused here rather than deep
    inside torch.
    """
    if isinstance(images, torch.Tensor):
        x = images.detach()
    else:
        try:
            x = torch.as_tensor(np.asarray(images))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(
                f"{name} must be an array of shape (N, C, H, W); got "
                f"{type(images).__name__}"
            ) from exc
    if x.ndim != 4:
        raise ValueError(
            f"{name} must have shape (N, C, H, W); got shape {tuple(x.shape)} "
            "(add a batch axis with images[None] for one image)"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"{name} must be real numbers; got dtype {x.dtype}")
    in_channels = first_conv_channels(model)
    if in_channels is not None and x.shape[1] != in_channels:
        raise ValueError(
            f"{name} have {x.shape[1]} channels but the model's first Conv2d "
            f"takes {in_channels}; got shape {tuple(x.shape)}"
        )
    x = x.to(device=device, dtype=model_dtype(model))
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return x


def batches(source, batch_size: int):
    """Yield ``(start, batch)`` from an array/tensor or a map-style dataset."""
    if isinstance(source, (np.ndarray, torch.Tensor)):
        for start in range(0, len(source), batch_size):
            yield start, source[start : start + batch_size]
        return
    loader = torch.utils.data.DataLoader(source, batch_size=batch_size, shuffle=False)
    start = 0
    for batch in loader:
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        yield start, batch
        start += len(batch)


def n_items(source) -> int:
    try:
        return len(source)
    except TypeError as exc:
        raise ValueError(
            "images must be an array of shape (N, C, H, W) or a map-style dataset "
            f"with a length; got {type(source).__name__}"
        ) from exc


def check_source(source):
    """Arrays become tensors; datasets pass through; others are refused."""
    if isinstance(source, torch.utils.data.Dataset):
        return source
    if isinstance(source, torch.Tensor):
        return source.detach()
    if isinstance(source, (np.ndarray, list, tuple)):
        arr = np.asarray(source)
        if arr.ndim != 4:
            raise ValueError(
                f"images must have shape (N, C, H, W); got shape {arr.shape}"
            )
        return torch.as_tensor(arr)
    raise ValueError(
        "images must be an array of shape (N, C, H, W) or a torch Dataset; got "
        f"{type(source).__name__}"
    )


def check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    return int(batch_size)
