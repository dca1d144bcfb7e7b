"""What a layer responds to: its maps, its top images, and out-of-sample votes.

Three classic views of a trained classifier (SPEC section 8; seed 003,
sections 2.3 and 2.5; Zeiler and Fergus, ECCV 2014):

- :func:`feature_maps`: a layer's per-channel maps for some images;
- :func:`top_activating`: for each filter, the dataset images that activate it
  most, with every image's activation for the histogram of that filter;
- :func:`out_of_sample_table`: how images of classes unseen in training (and
  noise) are classified, in percent per predicted class.

Transformer layers are read as maps too: tokens (N, P + H*W, K) as their
patch grid (class and register tokens dropped), channels-last maps
(N, H, W, K) transposed; ``reshape=`` overrides the inferred layout.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ._hooks import (
    Capture,
    as_logits,
    evaluating,
    resolve_layer,
)
from ._images import as_images, batches, check_batch_size, check_source, n_items
from ._layout import check_reshape, layer_maps
from ._progress import progress
from ._torch_utils import resolve_device

# --------------------------------------------------------------------------
# feature maps


def feature_maps(model, images, layer, *, reshape=None, batch_size=256, device="cpu"):
    """A layer's output for a batch of images.

    Parameters
    ----------
    model : torch.nn.Module
        The network; run in evaluation mode, its modes restored afterwards.
    images : array-like of shape (N, C, H, W)
        Input images (numpy or torch), in the model's input space.
    layer : str or torch.nn.Module
        A name from ``model.named_modules()``, one of the paper's layer
        aliases of a recognised VGG / ResNet / MobileNet-V2 (``"conv_53"``,
        ``"conv_5"`` ...), or the module itself. It must run once per
        forward pass.
    reshape : None, {"nchw", "nhwc", "tokens"} or callable, default=None
        The layout of the layer's output. ``None`` infers it: transformer
        tokens (N, P + H'*W', K) lose their P class/register tokens and fold
        into the patch grid, channels-last maps (N, H', W', K) (Swin) are
        transposed (see :ref:`transformers`). A callable maps the raw output
        to (N, K, H', W'). An undecidable layout is a ``ValueError`` asking
        for it.
    batch_size : int, default=256
        Images per forward pass.
    device : str or torch.device, default="cpu"
        Where to compute; the model is moved there and back.

    Returns
    -------
    maps : ndarray of shape (N, K, H', W')
        The layer's maps (``(N, K)`` for a linear layer), copied out of the
        forward pass so later in-place operations of the network do not
        change them.

    Examples
    --------
    >>> import torch
    >>> from skvmf.featuremaps import feature_maps
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU())
    >>> feature_maps(net, torch.randn(2, 1, 8, 8), "0").shape
    (2, 4, 6, 6)
    """
    dev = resolve_device(device)
    batch_size = check_batch_size(batch_size)
    x_all = as_images(images, model, torch.device("cpu"))
    name, module = resolve_layer(model, layer)
    reshape = check_reshape(reshape)
    chunks = []
    with (
        evaluating(model, dev),
        Capture(model, {0: (name, module)}, detach=True) as cap,
        torch.no_grad(),
    ):
        for _, x in batches(x_all, batch_size):
            cap.reset()
            model(x.to(dev))
            if 0 not in cap.outputs:
                raise ValueError(f"layer {name!r} did not run in the forward pass")
            maps, _ = layer_maps(
                cap.outputs[0],
                x.shape[2:],
                model=model,
                module=module,
                reshape=reshape,
                name=name,
            )
            chunks.append(maps.contiguous().cpu())
    return torch.cat(chunks).numpy()


# --------------------------------------------------------------------------
# top-activating images


@dataclasses.dataclass
class TopActivating:
    """Result of :func:`top_activating`.

    Attributes
    ----------
    layer : str
        Name of the layer.
    channels : ndarray of shape (n_channels,)
        The channels (filters) analysed.
    indices : ndarray of shape (n_channels, k)
        For each channel, the indices of its ``k`` most activating images,
        strongest first (ties: lower index first).
    top_values : ndarray of shape (n_channels, k)
        Their activations.
    activations : ndarray of shape (N, n_channels)
        Every image's activation of every channel (for the histogram).
    reduce : str
        How a map became one number: ``"mean"`` or ``"max"`` over positions.
    """

    layer: str
    channels: np.ndarray
    indices: np.ndarray
    top_values: np.ndarray
    activations: np.ndarray
    reduce: str

    @property
    def k(self) -> int:
        """Number of top images per channel."""
        return int(self.indices.shape[1])


def top_activating(
    model,
    images,
    layer,
    channels=None,
    *,
    k=9,
    reduce="mean",
    reshape=None,
    batch_size=64,
    device="cpu",
    verbose=0,
):
    """The images that activate each filter of a layer most.

    Each image's map of channel ``c`` is reduced to one number (its mean or
    its maximum over positions); the images are ranked by it. Streams over
    batches: memory is O(N * n_channels), never the maps of all images.

    Parameters
    ----------
    model : torch.nn.Module
        The network (evaluation mode; modes restored).
    images : array-like of shape (N, C, H, W) or torch.utils.data.Dataset
        The images, or a map-style dataset whose items are images or
        ``(image, label, ...)`` tuples. Indices refer to its order.
    layer : str or torch.nn.Module
        The layer to analyse: a module name, a paper alias or the module.
    channels : int, sequence of int or None, default=None
        Channels to rank; ``None`` means all of them.
    k : int, default=9
        Images kept per channel (at most the number of images).
    reduce : {"mean", "max"}, default="mean"
        Spatial reduction of each map.
    reshape : None, {"nchw", "nhwc", "tokens"} or callable, default=None
        The layout of the layer's output, as in :func:`feature_maps`
        (transformer tokens are ranked over patch tokens only).
    batch_size : int, default=64
        Images per forward pass.
    device : str or torch.device, default="cpu"
        Where to compute.
    verbose : int, default=0
        Show a progress bar over batches when positive.

    Returns
    -------
    TopActivating
        Indices and values of the top images, and all activations.

    Examples
    --------
    >>> import torch
    >>> from skvmf.featuremaps import top_activating
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU())
    >>> res = top_activating(net, torch.randn(20, 1, 8, 8), "1", k=4)
    >>> res.indices.shape, res.activations.shape
    ((3, 4), (20, 3))
    """
    dev = resolve_device(device)
    batch_size = check_batch_size(batch_size)
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce must be 'mean' or 'max'; got {reduce!r}")
    source = check_source(images)
    n_images = n_items(source)
    if n_images == 0:
        raise ValueError("images is empty: no image to rank")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    if k > n_images:
        raise ValueError(f"k={k} exceeds the number of images ({n_images})")
    name, module = resolve_layer(model, layer)
    reshape = check_reshape(reshape)

    activations = None
    chan_idx = None
    n_batches = -(-n_images // batch_size)
    with (
        evaluating(model, dev),
        Capture(model, {0: (name, module)}, detach=True) as cap,
        torch.no_grad(),
    ):
        for start, batch in progress(
            batches(source, batch_size),
            verbose=verbose,
            total=n_batches,
            desc=f"top images of {name}",
            unit="batch",
        ):
            x = as_images(batch, model, dev)
            cap.reset()
            model(x)
            if 0 not in cap.outputs:
                raise ValueError(f"layer {name!r} did not run in the forward pass")
            maps, _ = layer_maps(
                cap.outputs[0],
                x.shape[2:],
                model=model,
                module=module,
                reshape=reshape,
                name=name,
            )
            if maps.ndim < 2:
                raise ValueError(
                    f"layer {name!r} output has shape {tuple(maps.shape)}; need "
                    "(N, K, ...) with a channel axis"
                )
            if activations is None:
                chan_idx = _check_channels(channels, int(maps.shape[1]))
                activations = np.empty(
                    (n_images, len(chan_idx)),
                    dtype=np.float64 if maps.dtype == torch.float64 else np.float32,
                )
            flat = maps[:, torch.as_tensor(chan_idx, device=maps.device)]
            flat = flat.reshape(flat.shape[0], flat.shape[1], -1)
            scores = flat.mean(dim=2) if reduce == "mean" else flat.amax(dim=2)
            activations[start : start + len(x)] = scores.cpu().numpy()

    # stable sort of the negated scores: strongest first, ties by index
    order = np.argsort(-activations, axis=0, kind="stable")[:k].T
    top_values = np.take_along_axis(activations.T, order, axis=1)
    return TopActivating(
        layer=name,
        channels=np.asarray(chan_idx),
        indices=order,
        top_values=top_values,
        activations=activations,
        reduce=reduce,
    )


def _check_channels(channels, n_channels: int) -> np.ndarray:
    if channels is None:
        return np.arange(n_channels)
    arr = np.atleast_1d(np.asarray(channels))
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"channels must be an int or a non-empty sequence of ints; got {channels!r}"
        )
    bad = arr[(arr < 0) | (arr >= n_channels)]
    if bad.size:
        raise ValueError(
            f"channels {bad.tolist()} out of range for a layer with {n_channels} "
            "channels"
        )
    return arr.astype(np.int64)


# --------------------------------------------------------------------------
# out-of-sample prediction table


@dataclasses.dataclass
class OutOfSampleTable:
    """How each group of images is classified (result of :func:`out_of_sample_table`).

    Attributes
    ----------
    groups : list of str
        Group names (rows), in input order.
    class_names : list of str
        Predicted classes (columns), in the order of the model's outputs.
    counts : ndarray of shape (n_groups, n_classes)
        Number of images of each group predicted as each class.
    """

    groups: list
    class_names: list
    counts: np.ndarray

    @property
    def n_images(self) -> np.ndarray:
        """Images per group."""
        return self.counts.sum(axis=1)

    @property
    def percent(self) -> np.ndarray:
        """Percent of each group predicted as each class; rows sum to 100."""
        return 100.0 * self.counts / self.n_images[:, None]

    def to_dict(self) -> dict:
        """``{group: {class: percent}}``."""
        pct = self.percent
        return {
            g: {c: float(pct[i, j]) for j, c in enumerate(self.class_names)}
            for i, g in enumerate(self.groups)
        }

    def to_records(self) -> list:
        """One dict per group: ``group``, ``n_images`` and a percent per class."""
        pct = self.percent
        return [
            {
                "group": g,
                "n_images": int(self.n_images[i]),
                **{c: float(pct[i, j]) for j, c in enumerate(self.class_names)},
            }
            for i, g in enumerate(self.groups)
        ]

    def to_csv(self, path=None) -> str:
        """Write the table as CSV (percentages at full precision); return the text."""
        buf = io.StringIO()
        fields = ["group", "n_images", *self.class_names]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.to_records())
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def __str__(self) -> str:
        width = max(len("group"), *(len(g) for g in self.groups))
        cols = [max(6, len(c)) for c in self.class_names]
        head = "group".ljust(width) + "".join(
            "  " + c.rjust(w) for c, w in zip(self.class_names, cols)
        )
        rows = [
            g.ljust(width)
            + "".join(f"  {v:{w}.1f}" for v, w in zip(self.percent[i], cols))
            for i, g in enumerate(self.groups)
        ]
        return "\n".join([head, *rows])


def out_of_sample_table(
    model, images_by_group, *, class_names=None, batch_size=256, device="cpu"
):
    """Percent of each group of images predicted as each class.

    Seed 003 (section 2.5) asks which class a network assigns to images of
    classes it never saw, and to noise: a table with one row per group and
    one column per predicted class, each row summing to 100.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits of shape (N, n_classes).
    images_by_group : dict of str to array-like of shape (N_g, C, H, W)
        The images of each group (e.g. ``{"horse": ..., "noise": ...}``).
    class_names : sequence of str, optional
        Names of the model's classes; default ``"0"``, ``"1"``, ...
    batch_size : int, default=256
        Images per forward pass.
    device : str or torch.device, default="cpu"
        Where to compute.

    Returns
    -------
    OutOfSampleTable
        Counts and percentages; ``.to_dict()``, ``.to_csv(path)``.

    Examples
    --------
    >>> import torch
    >>> from skvmf.featuremaps import out_of_sample_table
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    >>> with torch.no_grad():
    ...     _ = net[1].bias.copy_(torch.tensor([0.0, 100.0]))
    >>> table = out_of_sample_table(net, {"noise": torch.rand(5, 1, 4, 4)},
    ...                             class_names=["cat", "dog"])
    >>> table.to_dict()
    {'noise': {'cat': 0.0, 'dog': 100.0}}
    """
    dev = resolve_device(device)
    batch_size = check_batch_size(batch_size)
    if not isinstance(images_by_group, Mapping) or not images_by_group:
        raise ValueError(
            "images_by_group must be a non-empty dict of group name -> images; got "
            f"{type(images_by_group).__name__}"
        )
    groups = [str(g) for g in images_by_group]
    counts = []
    n_classes = None
    with evaluating(model, dev), torch.no_grad():
        for group, images in images_by_group.items():
            x_all = as_images(images, model, torch.device("cpu"), name=f"{group!r}")
            preds = []
            for _, x in batches(x_all, batch_size):
                logits = as_logits(model(x.to(dev)))
                n_classes = logits.shape[1]
                preds.append(logits.argmax(dim=1).cpu())
            pred = torch.cat(preds).numpy()
            counts.append(np.bincount(pred, minlength=n_classes))
    if class_names is None:
        names = [str(c) for c in range(n_classes)]
    else:
        if isinstance(class_names, str) or not isinstance(class_names, Sequence):
            class_names = list(np.asarray(class_names).ravel())
        names = [str(c) for c in class_names]
        if len(names) != n_classes:
            raise ValueError(
                f"class_names has {len(names)} names but the model has {n_classes} "
                "outputs"
            )
    return OutOfSampleTable(groups=groups, class_names=names, counts=np.array(counts))
