"""What :func:`~skvmf.analysis.analyze` is given: the images and labels,
their normalisation, and the analysed networks (the model, its training
checkpoints and the students), resolved before any network runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._numerics.arrays import to_numpy
from .._torch.images import all_images

_MAIN = "model"  # the analysed model's key among the networks


def _images_and_labels(images, labels, model):
    """The images as a finite float32 (N, C, H, W) array and integer labels.

    The images pass the one image checker every network-running function
    uses (:mod:`skvmf._torch.images`: rank, channels against the model's
    first convolution, real dtype, finite values that fit the model's
    dtype), so a bad batch fails here, with the same message as anywhere
    else, before any network runs; labels must be one class index >= 0 per
    image.
    """
    if isinstance(images, torch.utils.data.Dataset):
        from ..datasets import as_arrays

        X, y = as_arrays(images)
        y = y if labels is None else to_numpy(labels)
    else:
        if labels is None:
            raise ValueError("labels are required when images are an array or tensor")
        X, y = images, to_numpy(labels)
    X = all_images(X, model, torch.device("cpu")).numpy()
    X = X.astype(np.float32, copy=False)
    if y.shape != (X.shape[0],):
        raise ValueError(
            f"labels must have shape ({X.shape[0]},), one per image; got {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices; got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError(f"labels must be class indices >= 0; got {y.min()}")
    return X, y.astype(np.int64)


def _checkpoint_models(
    checkpoints, device, model=None
) -> list[tuple[int, torch.nn.Module]]:
    """(iteration, model) pairs from a folder, files, models or pairs.

    Files are read as ``skvmf analyze --checkpoints-dir`` reads them
    (:func:`skvmf.sources.load_checkpoints`: ``weights_only``, errors that
    name the file): an skvmf checkpoint rebuilds its own network, plain
    weights are loaded into a copy of ``model``.
    """
    import copy
    import functools

    from ..sources import load_checkpoints

    if checkpoints is None:
        return []
    build = None if model is None else functools.partial(copy.deepcopy, model)
    if isinstance(checkpoints, (str, Path)):
        return load_checkpoints(checkpoints, build=build, device=device)
    out, files = [], []
    for k, item in enumerate(checkpoints):
        if isinstance(item, tuple) and len(item) == 2:
            it, net = item
            if isinstance(net, (str, Path)):
                [(_, net)] = load_checkpoints([net], build=build, device=device)
            out.append((int(it), net))
        elif isinstance(item, (str, Path)):
            files.append(item)
        elif isinstance(item, torch.nn.Module):
            out.append((k, item))
        else:
            raise ValueError(
                "checkpoints must be a directory, checkpoint paths, models or "
                f"(iteration, model) pairs; item {k} is {type(item).__name__}"
            )
    if files:
        out += load_checkpoints(files, build=build, device=device)
    return sorted(out, key=lambda pair: pair[0])


def _normalisation(images, mean, std):
    if mean is None:
        mean = getattr(images, "mean", None)
    if std is None:
        std = getattr(images, "std", None)
    if mean is not None and not isinstance(mean, (list, tuple, np.ndarray)):
        mean = None  # a Dataset's method, not a normalisation
    if std is not None and not isinstance(std, (list, tuple, np.ndarray)):
        std = None
    return mean, std


def _floats(values):
    """A tuple of floats, or None."""
    return None if values is None else tuple(float(v) for v in np.ravel(values))


def _network_name(key) -> str:
    if key == _MAIN:
        return _MAIN
    kind, name = key
    return f"checkpoint {name}" if kind == "checkpoint" else str(name)


def _networks(model, checkpoints, students, device) -> dict:
    """Step 2: the analysed networks by key: the model, its checkpoints
    (``("checkpoint", iteration)``) and the students (``("student", name)``)."""
    networks = {_MAIN: model}
    for iteration, net in _checkpoint_models(checkpoints, device, model):
        networks[("checkpoint", iteration)] = net
    for name, student in (students or {}).items():
        networks[("student", str(name))] = student
    return networks
