"""Figures for the classic views: feature maps, saliency, top images, synthesis.

Each function draws on a new figure (or on the ``fig`` / ``ax`` given) and
returns the :class:`matplotlib.figure.Figure`. Images come in the model's
input space, shape (N, C, H, W) or (C, H, W); pass the normalisation's
``mean`` and ``std`` (per channel) to show them in pixel values, otherwise
each image is shown as is when it lies in [0, 1] and min-max scaled when not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from sklearn.utils._param_validation import HasMethods, Interval, validate_params

from .._utils.figures import display_pixels
from ._common import (
    drawable,
    finite_number,
    images_nchw,
    real_array,
)

__all__ = [
    "plot_feature_maps",
    "plot_out_of_sample",
    "plot_saliency",
    "plot_synthesis",
    "plot_top_activating",
]

_STATS = [None, Real, "array-like"]
_FIG = [None, Figure]
_CMAP = [str, Colormap]
_CHANNELS = [None, Integral, "array-like"]


def _display(image, mean=None, std=None) -> np.ndarray:
    """(C, H, W) model-space image -> (H, W) or (H, W, 3) in [0, 1] for imshow
    (:func:`skvmf._utils.figures.display_pixels`)."""
    return display_pixels(image, mean, std)


def _show_image(ax, image, mean, std):
    img = _display(image, mean, std)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    return img.shape[:2]


def _new_figure(fig, nrows, ncols, cell=1.8):
    import matplotlib.pyplot as plt

    if fig is None:
        fig = plt.figure(figsize=(cell * ncols, cell * nrows), layout="constrained")
    else:
        fig.clear()
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _check_fields(result, fields, name):
    """``result`` must carry ``fields`` (a result object of skvmf)."""
    missing = [f for f in fields if not hasattr(result, f)]
    if missing:
        raise ValueError(
            f"{name} must be a result with {', '.join(fields)}; "
            f"{type(result).__name__} has no {missing[0]!r}"
        )


# ---------------------------------------------------------------------------
# feature maps
# ---------------------------------------------------------------------------
def _maps_of(maps) -> np.ndarray:
    """One image's maps (K, H, W), from (K, H, W) or (1, K, H, W)."""
    arr = real_array(maps, "maps", ndim=(1, 2, 3, 4, 5))
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(
            f"maps must be one image's maps of shape (K, H, W); got {arr.shape} "
            "(index one image, e.g. maps[0])"
        )
    return arr


def _channels_of(channels, max_channels, n_channels) -> np.ndarray:
    """The channels to show: the given ones (checked) or the first few."""
    if channels is None:
        return np.arange(min(n_channels, int(max_channels)))
    chans = np.atleast_1d(np.asarray(channels))
    if chans.size == 0 or not np.issubdtype(chans.dtype, np.integer):
        raise ValueError(f"channels must be a sequence of ints; got {channels!r}")
    if chans.min() < 0 or chans.max() >= n_channels:
        raise ValueError(f"channels must be in [0, {n_channels}); got {chans.tolist()}")
    return chans


def _draw_maps(fig, axes, arr, chans, cmap, shared_scale):
    """One panel per channel (empty slots removed), with one colour scale
    for all or one per panel."""
    shown = drawable(arr[chans])
    vmin, vmax = (shown.min(), shown.max()) if shared_scale else (None, None)
    for slot, ax in enumerate(axes.ravel()):
        if slot >= len(chans):
            fig.delaxes(ax)
            continue
        ax.imshow(shown[slot], cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(f"ch {int(chans[slot])}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])


@validate_params(
    {
        "maps": ["array-like"],
        "channels": _CHANNELS,
        "max_channels": [Interval(Integral, 1, None, closed="left")],
        "ncols": [None, Interval(Integral, 1, None, closed="left")],
        "cmap": _CMAP,
        "shared_scale": ["boolean"],
        "title": [None, str],
        "fig": _FIG,
    },
    prefer_skip_nested_validation=True,
)
def plot_feature_maps(
    maps,
    *,
    channels=None,
    max_channels=64,
    ncols=None,
    cmap="viridis",
    shared_scale=False,
    title=None,
    fig=None,
):
    """A grid of one image's feature maps, one panel per channel.

    Parameters
    ----------
    maps : array-like of shape (K, H, W) or (1, K, H, W)
        One image's maps, e.g. ``feature_maps(model, x[:1], layer)``;
        finite and real.
    channels : sequence of int, optional
        Channels to show; default the first ``max_channels``.
    max_channels : int, default=64
        Most channels shown when ``channels`` is not given.
    ncols : int, optional
        Panels per row; default about the square root of the count.
    cmap : str, default="viridis"
        Colour map.
    shared_scale : bool, default=False
        One colour scale for all panels (compare strengths across channels)
        instead of one per panel (see each channel's pattern).
    title : str, optional
        Figure title.
    fig : matplotlib.figure.Figure, optional
        Figure to draw on (cleared first).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per channel shown.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.plotting._images import plot_feature_maps
    >>> import matplotlib.pyplot as plt
    >>> fig = plot_feature_maps(np.random.rand(6, 5, 5))
    >>> len(fig.axes)
    6
    >>> plt.close(fig)
    """
    arr = _maps_of(maps)
    chans = _channels_of(channels, max_channels, arr.shape[0])
    ncols = ncols or math.ceil(math.sqrt(len(chans)))
    fig, axes = _new_figure(fig, math.ceil(len(chans) / ncols), ncols, cell=1.5)
    _draw_maps(fig, axes, arr, chans, cmap, shared_scale)
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------
# saliency overlays
# ---------------------------------------------------------------------------
def _saliency_maps(maps) -> dict[str, np.ndarray]:
    """Every method's maps as (N, h, w), gradients (N, C, H, W) as
    ``max_c |g|``; all with one entry per image."""
    named = dict(maps) if isinstance(maps, Mapping) else {"saliency": maps}
    if not named:
        raise ValueError("maps is empty: give at least one map per image")
    arrays = {}
    for name, value in named.items():
        arr = real_array(value, f"maps[{name!r}]", ndim=(1, 2, 3, 4, 5))
        if arr.ndim == 4:
            arr = np.abs(arr).max(axis=1)
        if arr.ndim != 3:
            raise ValueError(
                f"maps[{name!r}] must have shape (N, h, w) or (N, C, H, W); got "
                f"{arr.shape}"
            )
        arrays[name] = drawable(arr)
    n = next(iter(arrays.values())).shape[0]
    for name, arr in arrays.items():
        if arr.shape[0] != n:
            raise ValueError(
                f"every map needs one entry per image; maps[{name!r}] has "
                f"{arr.shape[0]}, expected {n}"
            )
    return arrays


def _overlay(ax, image, heat, mean, std, cmap, alpha):
    """The image with ``heat`` stretched over its pixels."""
    h, w = _show_image(ax, image, mean, std)
    ax.imshow(
        heat,
        cmap=cmap,
        alpha=alpha,
        extent=(-0.5, w - 0.5, h - 0.5, -0.5),
        interpolation="bilinear",
    )


@validate_params(
    {
        "images": ["array-like"],
        "maps": [Mapping, "array-like"],
        "mean": _STATS,
        "std": _STATS,
        "alpha": [Interval(Real, 0, 1, closed="both")],
        "cmap": _CMAP,
        "titles": [None, "array-like"],
        "fig": _FIG,
    },
    prefer_skip_nested_validation=True,
)
def plot_saliency(
    images,
    maps,
    *,
    mean=None,
    std=None,
    alpha=0.5,
    cmap="jet",
    titles=None,
    fig=None,
):
    """Images next to their saliency, CAM or Grad-CAM overlays.

    One row per image: the image, then one overlay per map method. Maps of
    any resolution are stretched over the image (a CAM at the feature grid
    lines up with the pixels); gradients of shape (N, C, H, W) are shown as
    ``max_c |g|``.

    Parameters
    ----------
    images : array-like of shape (N, C, H, W)
        Images in the model's input space, C = 1 or 3 (channels-last arrays
        are refused).
    maps : array-like of shape (N, h, w) or (N, C, H, W), or dict of str to those
        One map per image, or several methods by name (one column each).
    mean, std : float or sequence of float, optional
        Normalisation to undo for display.
    alpha : float, default=0.5
        Opacity of the overlay.
    cmap : str, default="jet"
        Colour map of the overlays.
    titles : sequence of str, optional
        Row labels (e.g. the predicted classes).
    fig : matplotlib.figure.Figure, optional
        Figure to draw on.

    Returns
    -------
    matplotlib.figure.Figure
        ``N * (1 + n_methods)`` axes.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.plotting._images import plot_saliency
    >>> x = np.random.rand(2, 3, 8, 8)
    >>> fig = plot_saliency(x, {"Grad-CAM": np.random.rand(2, 8, 8),
    ...                         "CAM": np.random.rand(2, 2, 2)})
    >>> len(fig.axes)
    6
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    arrays = _saliency_maps(maps)
    n = next(iter(arrays.values())).shape[0]
    imgs = images_nchw(images, "images", n)
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles needs {n} entries; got {len(titles)}")
    fig, axes = _new_figure(fig, n, 1 + len(arrays))
    for row in range(n):
        _show_image(axes[row, 0], imgs[row], mean, std)
        if titles is not None:
            axes[row, 0].set_ylabel(str(titles[row]))
        for col, (name, arr) in enumerate(arrays.items(), start=1):
            _overlay(axes[row, col], imgs[row], arr[row], mean, std, cmap, alpha)
            if row == 0:
                axes[row, col].set_title(name)
    axes[0, 0].set_title("image")
    return fig


# ---------------------------------------------------------------------------
# top activating images
# ---------------------------------------------------------------------------
def _image_at(images, index):
    if isinstance(images, np.ndarray) or hasattr(images, "detach"):
        return images[index]
    item = images[index]
    return item[0] if isinstance(item, (tuple, list)) else item


def _top_rows(result, channels) -> list[int]:
    """Rows of ``result`` for the channels asked (default all), checked."""
    fields = ("channels", "indices", "top_values", "activations", "reduce")
    _check_fields(result, fields, "result")
    real_array(result.top_values, "result.top_values", ndim=2)
    real_array(result.activations, "result.activations", ndim=2)
    all_channels = [int(c) for c in np.asarray(result.channels)]
    if channels is None:
        return list(range(len(all_channels)))
    wanted = [int(c) for c in np.atleast_1d(channels)]
    missing = [c for c in wanted if c not in all_channels]
    if missing:
        raise ValueError(
            f"channels {missing} were not analysed; result has {all_channels}"
        )
    return [all_channels.index(c) for c in wanted]


def _activation_histogram(ax, values, top, bins, reduce):
    """Histogram of every image's activation, the top images' range marked."""
    ax.hist(values, bins=bins, color="0.6")
    ax.axvspan(top.min(), values.max(), color="C3", alpha=0.3)
    ax.set_yticks([])
    ax.set_title(f"{reduce} activation", fontsize=7)


@validate_params(
    {
        "images": ["array-like"],
        "result": "no_validation",  # a TopActivating, checked field by field
        "channels": _CHANNELS,
        "mean": _STATS,
        "std": _STATS,
        "bins": [Interval(Integral, 1, None, closed="left")],
        "fig": _FIG,
    },
    prefer_skip_nested_validation=True,
)
def plot_top_activating(
    images,
    result,
    *,
    channels=None,
    mean=None,
    std=None,
    bins=30,
    fig=None,
):
    """Each filter's top images with the histogram of its activations.

    One row per channel: its ``k`` most activating images (strongest first)
    and the histogram of the activation of every image in the dataset, with
    the top images' range marked (seed 003, figure 5).

    Parameters
    ----------
    images : array-like of shape (N, C, H, W) or a dataset
        The images ranked by :func:`skvmf.featuremaps.top_activating`.
    result : TopActivating
        Its result.
    channels : sequence of int, optional
        Channels (of ``result.channels``) to show; default all.
    mean, std : float or sequence of float, optional
        Normalisation to undo for display.
    bins : int, default=30
        Histogram bins.
    fig : matplotlib.figure.Figure, optional
        Figure to draw on.

    Returns
    -------
    matplotlib.figure.Figure
        ``n_channels * (k + 1)`` axes.

    Examples
    --------
    >>> import torch
    >>> from skvmf.featuremaps import top_activating
    >>> from skvmf.plotting._images import plot_top_activating
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    >>> x = torch.rand(12, 1, 6, 6)
    >>> fig = plot_top_activating(x, top_activating(net, x, "1", k=3))
    >>> len(fig.axes)
    8
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    rows = _top_rows(result, channels)
    k = result.indices.shape[1]
    fig, axes = _new_figure(fig, len(rows), k + 1)
    for r, row in enumerate(rows):
        for col in range(k):
            idx = int(result.indices[row, col])
            if not 0 <= idx < len(images):
                raise ValueError(
                    f"result.indices has image {idx}; images has {len(images)}"
                )
            _show_image(axes[r, col], _image_at(images, idx), mean, std)
            title = f"#{idx}: {result.top_values[row, col]:.3g}"
            axes[r, col].set_title(title, fontsize=7)
        axes[r, 0].set_ylabel(f"ch {int(np.asarray(result.channels)[row])}")
        values = np.asarray(result.activations)[:, row]
        top = np.asarray(result.top_values)[row]
        _activation_histogram(axes[r, k], values, top, bins, result.reduce)
    return fig


# ---------------------------------------------------------------------------
# synthesis
# ---------------------------------------------------------------------------
def _synthesis_rows(result, index) -> list[int]:
    """The images to show (default all), with the result's arrays checked."""
    fields = ("images", "start_images", "pixel_change", "trace")
    _check_fields(result, fields, "result")
    for field in ("pixel_change", "trace"):
        real_array(getattr(result, field), f"result.{field}")
    n = result.images.shape[0]
    rows = list(range(n)) if index is None else [int(i) for i in np.atleast_1d(index)]
    bad = [i for i in rows if not 0 <= i < n]
    if bad:
        raise ValueError(f"index {bad} out of range for {n} images")
    return rows


@validate_params(
    {
        "result": "no_validation",  # a SynthesisResult, checked field by field
        "index": [None, Integral, "array-like"],
        "mean": _STATS,
        "std": _STATS,
        "fig": _FIG,
    },
    prefer_skip_nested_validation=True,
)
def plot_synthesis(result, *, index=None, mean=None, std=None, fig=None):
    """Start image, optimised image, pixel-change heatmap and objective trace.

    Parameters
    ----------
    result : SynthesisResult
        From :class:`skvmf.synthesis.ActivationMaximizer`.
    index : int or sequence of int, optional
        Images to show (rows); default all.
    mean, std : float or sequence of float, optional
        Normalisation to undo for display.
    fig : matplotlib.figure.Figure, optional
        Figure to draw on.

    Returns
    -------
    matplotlib.figure.Figure
        Per image shown: four panels and the heatmap's colour bar (five axes).

    Examples
    --------
    >>> import torch
    >>> from skvmf.synthesis import maximize_activation, logit
    >>> from skvmf.plotting._images import plot_synthesis
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    >>> res = maximize_activation(net, logit(1), image_shape=(1, 4, 4), steps=5,
    ...                           random_state=0)
    >>> fig = plot_synthesis(res)
    >>> len(fig.axes)
    5
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    rows = _synthesis_rows(result, index)
    fig, axes = _new_figure(fig, len(rows), 4, cell=2.0)
    for r, i in enumerate(rows):
        _show_image(axes[r, 0], result.start_images[i], mean, std)
        _show_image(axes[r, 1], result.images[i], mean, std)
        heat = axes[r, 2].imshow(drawable(result.pixel_change[i]), cmap="magma")
        axes[r, 2].set_xticks([])
        axes[r, 2].set_yticks([])
        fig.colorbar(heat, ax=axes[r, 2], shrink=0.8)
        axes[r, 3].plot(np.arange(1, len(result.trace) + 1), result.trace[:, i])
        axes[r, 3].set_xlabel("step")
    for ax, name in zip(axes[0], ("start", "optimised", "pixel change", "objective")):
        ax.set_title(name)
    return fig


# ---------------------------------------------------------------------------
# out-of-sample predictions
# ---------------------------------------------------------------------------
def _percent_table(table):
    """Rows, classes and the (rows, classes) percentages, each in [0, 100]."""
    data = table.to_dict() if hasattr(table, "to_dict") else table
    if not isinstance(data, Mapping) or not data:
        raise ValueError(
            "table must be an OutOfSampleTable or a non-empty dict of dicts"
        )
    groups = list(data)
    classes = list(next(iter(data.values())))
    for g in groups:
        if list(data[g]) != classes:
            raise ValueError(
                f"every row needs the same classes; row {g!r} has {list(data[g])}, "
                f"expected {classes}"
            )
    values = np.array(
        [
            [finite_number(data[g][c], f"table[{g!r}][{c!r}]") for c in classes]
            for g in groups
        ]
    )
    if values.min() < 0 or values.max() > 100 + 1e-9:
        raise ValueError(
            "table must hold percentages in [0, 100]; got values from "
            f"{values.min()} to {values.max()}"
        )
    return groups, classes, values


def _annotate_cells(ax, values, fmt):
    """Each percentage written in its cell, white on dark cells."""
    for i, j in np.ndindex(values.shape):
        ax.text(
            j,
            i,
            format(values[i, j], fmt),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if values[i, j] > 60 else "black",
        )


@validate_params(
    {
        "table": [Mapping, HasMethods(["to_dict"])],
        "ax": [None, Axes],
        "cmap": _CMAP,
        "annotate": ["boolean"],
        "fmt": [str],
        "colorbar": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def plot_out_of_sample(
    table, *, ax=None, cmap="Blues", annotate=True, fmt=".1f", colorbar=True
):
    """Heatmap of an out-of-sample prediction table (percent per class).

    Parameters
    ----------
    table : OutOfSampleTable or dict of dict
        From :func:`skvmf.featuremaps.out_of_sample_table`, or
        ``{group: {class: percent}}`` (finite percentages in [0, 100]).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; default a new figure.
    cmap : str, default="Blues"
        Colour map (0 to 100 %).
    annotate : bool, default=True
        Write each percentage in its cell.
    fmt : str, default=".1f"
        Number format of the annotations.
    colorbar : bool, default=True
        Add a colour bar.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from skvmf.plotting._images import plot_out_of_sample
    >>> fig = plot_out_of_sample({"horse": {"cat": 27.5, "dog": 72.5},
    ...                           "noise": {"cat": 100.0, "dog": 0.0}})
    >>> len(fig.axes)
    2
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    import matplotlib.pyplot as plt

    groups, classes, values = _percent_table(table)
    if ax is None:
        fig, ax = plt.subplots(
            figsize=(1.0 + 0.8 * len(classes), 0.8 + 0.5 * len(groups)),
            layout="constrained",
        )
    else:
        fig = ax.figure
    image = ax.imshow(values, cmap=cmap, vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(classes)), [str(c) for c in classes], rotation=45)
    ax.set_yticks(range(len(groups)), [str(g) for g in groups])
    ax.set_xlabel("predicted class")
    if annotate:
        _annotate_cells(ax, values, fmt)
    if colorbar:
        fig.colorbar(image, ax=ax, label="%")
    return fig
