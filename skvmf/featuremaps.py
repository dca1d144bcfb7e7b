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
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from torch import nn

from ._torch.devices import resolve_device
from ._torch.hooks import (
    Capture,
    check_finite,
    evaluating,
    finite_logits,
    model_dtype,
)
from ._torch.images import check_batch, first_conv_channels, image_batches
from ._torch.layers import resolve_module
from ._torch.layout import check_reshape, layer_maps
from ._utils.progress import progress

# the constraints every function here shares
_RUN = {
    "model": [nn.Module],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "device": [None, str, torch.device],
}
_LAYER = {
    "images": "no_validation",  # checked by skvmf._torch.images (any image source)
    "layer": [str, nn.Module],
    "reshape": [None, str, callable],
}


def _run_layer(
    model,
    images,
    layer,
    *,
    reshape,
    batch_size,
    device,
    on_batch,
    verbose=0,
    desc="maps of",
):
    """Run ``model`` over ``images`` in batches and hand each batch's maps of
    ``layer`` to ``on_batch(start, maps)``.

    The one loop of this module: any image source (see :mod:`skvmf._torch.images`),
    evaluation mode with the modes and device restored, a hook that is
    removed also after an exception (raised by ``on_batch`` too), and the
    maps checked finite, so a network producing NaN is named at once.
    """
    name, module = layer
    channels = first_conv_channels(model)
    source = image_batches(images, batch_size, channels=channels)
    bar = progress(
        source,
        verbose=verbose,
        total=source.n_batches,
        desc=f"{desc} {name}",
        unit="batch",
    )
    with (
        evaluating(model, device),
        Capture(model, {0: layer}, detach=True) as cap,
        torch.no_grad(),
    ):
        for start, batch in bar:
            x = check_batch(
                batch,
                channels=channels,
                device=device,
                dtype=model_dtype(model),
                start=start,
            )
            cap.reset()
            model(x)
            cap.require()
            maps, _ = layer_maps(
                cap.outputs[0],
                x.shape[2:],
                model=model,
                module=module,
                reshape=reshape,
                name=name,
            )
            check_finite(
                maps, f"layer {name!r}", f" in batch starting at image {start}"
            )
            on_batch(start, maps)


# --------------------------------------------------------------------------
# feature maps


@validate_params({**_RUN, **_LAYER}, prefer_skip_nested_validation=True)
def feature_maps(model, images, layer, *, reshape=None, batch_size=256, device="cpu"):
    """A layer's output for a batch of images.

    Parameters
    ----------
    model : torch.nn.Module
        The network; run in evaluation mode, its modes restored afterwards.
    images : array-like of shape (N, C, H, W), Dataset or DataLoader
        Input images (numpy or torch), in the model's input space, or a
        dataset / data loader of images or (image, label) pairs.
    layer : str or torch.nn.Module
        A name from ``model.named_modules()``, one of the paper's layer
        aliases of a recognised VGG / ResNet / MobileNet-V2 (``"conv_53"``,
        ``"conv_5"`` ...), or the module itself. It must run once per
        forward pass.
    reshape : None, {"nchw", "nhwc", "tokens"} or callable, default=None
        The layout of the layer's output. ``None`` infers it: transformer
        tokens ``(N, P + H'*W', K)`` lose their P class/register tokens and fold
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
    chunks = []
    _run_layer(
        model,
        images,
        resolve_module(model, layer),
        reshape=check_reshape(reshape),
        batch_size=batch_size,
        device=resolve_device(device),
        on_batch=lambda start, maps: chunks.append(maps.contiguous().cpu()),
    )
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


@validate_params(
    {
        **_RUN,
        **_LAYER,
        "channels": [None, Integral, "array-like"],
        "k": [Interval(Integral, 1, None, closed="left")],
        "reduce": [StrOptions({"mean", "max"})],
        "verbose": ["verbose"],
    },
    prefer_skip_nested_validation=True,
)
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
    images : array-like of shape (N, C, H, W), Dataset or DataLoader
        The images, or a dataset (map-style or iterable) whose items are
        images or ``(image, label, ...)`` tuples, or a data loader. Indices
        refer to its order.
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
    layer = resolve_module(model, layer)
    run = {"reshape": check_reshape(reshape), "batch_size": batch_size}
    run.update(device=resolve_device(device), verbose=verbose)
    activations, chan_idx = _channel_scores(
        model, images, layer, channels, reduce=reduce, **run
    )
    if k > len(activations):
        raise ValueError(f"k={k} exceeds the number of images ({len(activations)})")
    indices, top_values = _top_k(activations, k)
    return TopActivating(
        layer=layer[0],
        channels=chan_idx,
        indices=indices,
        top_values=top_values,
        activations=activations,
        reduce=reduce,
    )


def _channel_scores(model, images, layer, channels, *, reduce, **run):
    """Step 1 of :func:`top_activating`: every image's score per channel.

    Each map is reduced to its mean or maximum over positions batch by batch,
    so memory is O(N * n_channels). Returns ``(activations (N, n_channels),
    channel indices)``.
    """
    chunks = []
    chosen = []

    def score(start, maps):
        if maps.ndim < 2:
            raise ValueError(
                f"layer {layer[0]!r} output has shape {tuple(maps.shape)}; need "
                "(N, K, ...) with a channel axis"
            )
        if not chosen:
            chosen.append(_check_channels(channels, int(maps.shape[1])))
        flat = maps[:, torch.as_tensor(chosen[0], device=maps.device)]
        flat = flat.reshape(flat.shape[0], flat.shape[1], -1)
        values = flat.mean(dim=2) if reduce == "mean" else flat.amax(dim=2)
        chunks.append(values.cpu().numpy())

    _run_layer(model, images, layer, on_batch=score, desc="top images of", **run)
    return np.concatenate(chunks), chosen[0]


def _top_k(activations, k):
    """Step 2 of :func:`top_activating`: per channel, the ``k`` strongest
    images and their values (a stable sort of the negated scores: strongest
    first, ties by index)."""
    order = np.argsort(-activations, axis=0, kind="stable")[:k].T
    return order, np.take_along_axis(activations.T, order, axis=1)


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


@validate_params(
    {
        **_RUN,
        "images_by_group": [Mapping],
        "class_names": [None, "array-like"],
    },
    prefer_skip_nested_validation=True,
)
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
    if not images_by_group:
        raise ValueError(
            "images_by_group must be a non-empty dict of group name -> images"
        )
    dev = resolve_device(device)
    counts, n_classes = [], None
    with evaluating(model, dev), torch.no_grad():
        for group, images in images_by_group.items():
            pred, n_classes = _predictions(
                model, images, batch_size, dev, f"images_by_group[{group!r}]"
            )
            counts.append(np.bincount(pred, minlength=n_classes))
    return OutOfSampleTable(
        groups=[str(g) for g in images_by_group],
        class_names=_class_names(class_names, n_classes),
        counts=np.array(counts),
    )


def _predictions(model, images, batch_size, device, name):
    """The predicted class of every image of one group, and the number of
    classes; NaN or infinite logits are refused (an argmax would hide them)."""
    channels = first_conv_channels(model)
    preds, n_classes = [], None
    for start, batch in image_batches(images, batch_size, channels=channels, name=name):
        x = check_batch(
            batch,
            channels=channels,
            device=device,
            dtype=model_dtype(model),
            name=name,
            start=start,
        )
        where = f" on {name}, batch starting at image {start}"
        logits = finite_logits(model(x), where=where)
        n_classes = logits.shape[1]
        preds.append(logits.argmax(dim=1).cpu())
    return torch.cat(preds).numpy(), n_classes


def _class_names(class_names, n_classes) -> list:
    if class_names is None:
        return [str(c) for c in range(n_classes)]
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        class_names = list(np.asarray(class_names).ravel())
    names = [str(c) for c in class_names]
    if len(names) != n_classes:
        raise ValueError(
            f"class_names has {len(names)} names but the model has {n_classes} outputs"
        )
    return names
