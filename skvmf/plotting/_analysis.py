"""Figures of the paper's analysis: the projected space, knowledge points,
emergence over training, adversarial change and distillation.

Every function returns a :class:`matplotlib.figure.Figure`. Tables are the
records (lists of dict rows) produced by :func:`skvmf.analyze`. Data is
checked before drawing (see :mod:`skvmf.plotting._common`): NaN, inf, complex
values, wrong shapes and class indices out of range are a ``ValueError``
naming the argument, never a figure with points silently missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral, Real

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from .._utils.figures import channel_stats, rescale_unit, subsample
from .._utils.tables import verdict_of
from ._common import (
    check_frames,
    check_records,
    class_colors,
    class_names,
    directions_for,
    display_unit,
    finite_number,
    images_nchw,
    int_array,
    points,
    reach,
    real_array,
    region_sample,
    unit_note,
    xyz,
)

_TITLE = [None, str]
_TABLE = [list, tuple]
_POSITIVE = [Interval(Integral, 1, None, closed="left")]
_SEED = [None, Interval(Integral, 0, None, closed="left"), np.random.Generator]


def _new_fig(ax, figsize, projection=None):
    if ax is not None:
        return ax.figure, ax
    fig = plt.figure(figsize=figsize)
    return fig, fig.add_subplot(111, projection=projection)


def _draw_sphere(ax, radius: float):
    u, v = np.mgrid[0 : 2 * np.pi : 25j, 0 : np.pi : 13j]
    ax.plot_wireframe(
        radius * np.cos(u) * np.sin(v),
        radius * np.sin(u) * np.sin(v),
        radius * np.cos(v),
        color="0.85",
        linewidth=0.4,
    )


def _errors(rows, key):
    """Asymmetric error bars (2, n) from ``key_low``/``key_high`` columns, or
    None when the rows carry no interval."""
    if not rows or not all(
        row.get(f"{key}_low") is not None and row.get(f"{key}_high") is not None
        for row in rows
    ):
        return None
    value, low, high = (
        np.array([finite_number(row[k], k) for row in rows])
        for k in (key, f"{key}_low", f"{key}_high")
    )
    return np.vstack([np.maximum(value - low, 0), np.maximum(high - value, 0)])


def _line(ax, x, y, err, fmt, **kwargs):
    """A line through the values, with error bars of the same colour when
    ``err`` (from :func:`_errors`) is given; returns the line."""
    (line,) = ax.plot(x, y, fmt, **kwargs)
    if err is not None:
        ax.errorbar(x, y, yerr=err, fmt="none", ecolor=line.get_color(), capsize=3)
    return line


def _pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes of ``points`` (about the origin, which is meaningful
    here: strength is the distance from it), and the points on them.

    The points are divided by their largest magnitude for the products (a
    sum of squares of 1e200 overflows) and the coordinates scaled back.
    """
    scale = float(np.max(np.abs(points))) or 1.0
    _, _, vt = np.linalg.svd(points / scale, full_matrices=False)
    axes = vt[:2].T
    return axes, ((points / scale) @ axes) * scale


# ---------------------------------------------------------------------------
# the projected sample space
# ---------------------------------------------------------------------------
def _space_data(g, labels, directions, max_points):
    """Checked points g, labels (in [0, C)) and unit directions, with the
    fixed random subsample of at most ``max_points`` points."""
    g = points(g, "g")
    mu = directions_for(directions, g.shape[1])
    labels = int_array(labels, "labels", len(g), low=0, high=len(mu))
    keep = subsample(len(g), max_points)
    g, labels = g[keep], labels[keep]
    return g, labels, mu


def _draw_space_3d(ax, g, labels, mu, colors, names, radius):
    """The first three coordinates on a reference sphere, one arrow per
    category as long as the largest g."""
    _draw_sphere(ax, radius)
    for c in range(len(mu)):
        sel = labels == c
        ax.scatter(*g[sel, :3].T, s=6, color=colors[c], alpha=0.6, label=names[c])
        end = mu[c, :3] * radius * 1.1
        ax.plot(*np.stack([np.zeros(3), end]).T, color=colors[c], linewidth=2.5)
        ax.text(*end, names[c], color=colors[c], fontsize=9, weight="bold")
    ax.set_box_aspect((1, 1, 1))


def _draw_space_2d(ax, g, labels, mu, colors, names, radius):
    """The projection on the two principal axes of g, each category's
    in-plane part as an arrow."""
    axes, g2 = _pca_2d(g)
    mu2 = mu @ axes
    for c in range(len(mu)):
        sel = labels == c
        ax.scatter(*g2[sel].T, s=6, color=colors[c], alpha=0.6, label=names[c])
        # in-plane part of mu_c: shorter when mu_c points out of the plane
        end = mu2[c] * radius * 1.1
        ax.annotate(
            "",
            xy=end,
            xytext=(0, 0),
            arrowprops={"arrowstyle": "->", "color": colors[c], "lw": 2},
        )
        ax.text(*end, names[c], color=colors[c], fontsize=9, weight="bold")
    ax.axhline(0, color="0.8", lw=0.5)
    ax.axvline(0, color="0.8", lw=0.5)
    ax.set_aspect("equal")


@validate_params(
    {
        "g": ["array-like"],
        "labels": ["array-like"],
        "directions": ["array-like"],
        "classes": [None, "array-like"],
        "view": [StrOptions({"3d", "2d"})],
        "ax": [None, Axes],
        "title": _TITLE,
        "max_points": _POSITIVE,
    },
    prefer_skip_nested_validation=True,
)
def plot_sample_space(
    g,
    labels,
    directions,
    *,
    classes=None,
    view: str = "3d",
    ax=None,
    title: str | None = "Sample features g and category directions",
    max_points: int = 2000,
) -> Figure:
    """Projected sample features ``g`` with the category directions mu_c.

    Parameters
    ----------
    g : array-like of shape (N, d')
        Finite, real, N >= 1, d' >= 2.
    labels : array-like of shape (N,)
        Integer class index of each point (colour), in ``[0, C)``.
    directions : array-like of shape (C, d')
        Category directions, drawn (as unit vectors) as arrows as long as
        the largest g.
    classes : sequence of str, optional
        Class names for the legend.
    view : {"3d", "2d"}
        ``"3d"``: the first three coordinates with a reference sphere;
        ``"2d"``: projection on the two principal axes of g (about the
        origin, so strength stays visible as distance from the centre).
    ax : matplotlib Axes, optional
        Axes to draw on (3-D axes for the 3-D view).
    title : str or None
    max_points : int, default=2000
        Points drawn at most (a fixed random subsample beyond).

    Returns
    -------
    matplotlib.figure.Figure
        Coordinates beyond 1e-100..1e100 are drawn in units of their power
        of ten (named in the title, kept as ``fig.skvmf_unit``; 1 otherwise).
    """
    g, labels, mu = _space_data(g, labels, directions, max_points)
    colors = class_colors(len(mu))
    names = class_names(classes, len(mu))
    unit = display_unit(reach(g))
    g = g / unit
    radius = reach(g)
    if view == "3d" and g.shape[1] >= 3:
        fig, ax = _new_fig(ax, (6.5, 6), projection="3d")
        _draw_space_3d(ax, g, labels, mu, colors, names, radius)
    else:
        fig, ax = _new_fig(ax, (6, 6))
        _draw_space_2d(ax, g, labels, mu, colors, names, radius)
    if title or unit != 1.0:
        ax.set_title((title or "") + unit_note(unit))
    ax.legend(loc="upper left", fontsize=7, markerscale=2, ncol=2, frameon=False)
    fig.skvmf_unit = unit
    return fig


@validate_params(
    {
        "frames": _TABLE,
        "labels": ["array-like"],
        "classes": [None, "array-like"],
        "max_points": _POSITIVE,
    },
    prefer_skip_nested_validation=True,
)
def plot_sample_evolution(
    frames: Sequence[dict], labels, *, classes=None, max_points: int = 800
) -> Figure:
    """Sample features g and category directions at each training checkpoint.

    ``frames`` are dicts with ``iteration``, ``g`` (N, d') and ``directions``
    (C, d'), all in one coordinate system (as produced by
    :meth:`skvmf.SampleProjector.fit_sequence`), so the panels show the
    categories separating as training goes on. Every panel shares the axis
    limits of the widest one.
    """
    checked = check_frames(frames)
    n = len(checked)
    fig = plt.figure(figsize=(3.3 * n, 3.6))
    # one unit for every panel, so that they stay comparable
    unit = display_unit(max(reach(g) for _, g, _ in checked))
    lim = max(reach(g / unit) for _, g, _ in checked) * 1.1
    for i, (iteration, g, mu) in enumerate(checked):
        ax = fig.add_subplot(1, n, i + 1, projection="3d")
        plot_sample_space(
            g / unit,
            labels,
            mu,
            classes=classes,
            ax=ax,
            title=f"iteration {iteration}",
            max_points=max_points,
        )
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_zlim(-lim, lim)
        ax.tick_params(labelsize=6)
        if i < n - 1 and ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.suptitle("Sample features during training (one shared frame)" + unit_note(unit))
    fig.skvmf_unit = unit
    return fig


# ---------------------------------------------------------------------------
# regions per layer
# ---------------------------------------------------------------------------
def _draw_layer_panel(ax, pts, lab, mu, colors, lim):
    """One layer: grey regions, coloured knowledge points, one line per
    category direction, in a cube of half-width ``lim``."""
    grey = lab < 0
    ax.scatter(*pts[grey].T, s=2, color="0.7", alpha=0.3)
    for c in range(len(mu)):
        sel = lab == c
        if sel.any():
            ax.scatter(*pts[sel].T, s=3, color=colors[c], alpha=0.7)
        end = mu[c, :3] * lim
        ax.plot(*np.stack([np.zeros(3), end]).T, color=colors[c], lw=1.5)
    ax.set_xlim(-lim * 1.05, lim * 1.05)
    ax.set_ylim(-lim * 1.05, lim * 1.05)
    ax.set_zlim(-lim * 1.05, lim * 1.05)
    ax.set_box_aspect((1, 1, 1))
    ax.tick_params(labelsize=6)


def _class_legend(fig, colors, names):
    """One legend entry per category under the panels."""
    handles = [
        plt.Line2D([], [], color=color, marker="o", ls="", label=name)
        for color, name in zip(colors, names)
    ]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=min(len(names), 10),
        fontsize=7,
        frameon=False,
    )


@validate_params(
    {
        "h": [Mapping],
        "directions": ["array-like"],
        "region_labels": [None, Mapping],
        "classes": [None, "array-like"],
        "max_points": _POSITIVE,
        "random_state": _SEED,
    },
    prefer_skip_nested_validation=True,
)
def plot_layer_regions(
    h: Mapping[str, np.ndarray],
    directions,
    *,
    region_labels: Mapping[str, np.ndarray] | None = None,
    classes=None,
    max_points: int = 1500,
    random_state: int = 0,
) -> Figure:
    """Each layer's embedded regional features in the same 3-D space.

    Forward propagation, as in the paper: the same regions of the same
    images, layer by layer; low layers lie weak near the origin, high layers
    long along their category direction.

    Parameters
    ----------
    h : dict of layer -> ndarray (N, R, d')
        Embedded regions, each layer already rescaled as for knowledge points
        (mean strength 1) so the panels share one scale.
    directions : array-like of shape (C, d')
    region_labels : dict of layer -> ndarray (N, R), optional
        Colour of each region (its category index in ``[0, C)``, or -1 for
        "not a knowledge point", drawn grey). Default: grey.
    classes : sequence of str, optional
    max_points : int, default=1500
        Regions drawn per layer (the same ones at every layer).
    random_state : int, default=0
        Seed of that subsample.
    """
    layers, _, drawn, labels, _, mu = region_sample(
        h, directions, region_labels, max_points, random_state
    )
    colors = class_colors(len(mu))
    names = class_names(classes, len(mu))
    unit = display_unit(max(reach(v) for v in drawn.values()))
    lim = max(reach(v / unit) for v in drawn.values())
    fig = plt.figure(figsize=(3.4 * len(layers), 3.8))
    for i, layer in enumerate(layers):
        ax = fig.add_subplot(1, len(layers), i + 1, projection="3d")
        pts = xyz(drawn[layer] / unit)
        _draw_layer_panel(ax, pts, labels[layer], mu, colors, lim)
        ax.set_title(layer, fontsize=10)
    _class_legend(fig, colors, names)
    fig.suptitle(
        "Regional features h per layer (coloured: knowledge points)" + unit_note(unit)
    )
    fig.skvmf_unit = unit
    return fig


# ---------------------------------------------------------------------------
# knowledge points over the images
# ---------------------------------------------------------------------------
def _check_grid(grid) -> tuple[int, int]:
    """The region grid (h, w): two positive integers."""
    try:
        gh, gw = (int(v) for v in grid)
        ok = gh == float(grid[0]) and gw == float(grid[1]) and gh > 0 and gw > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"grid must be two positive integers (h, w); got {grid!r}")
    return gh, gw


def _mask_inputs(images, masks, region_classes, grid, labels, classes):
    """Checked images (N, C, H, W), masks (N, R), region classes, labels and
    the number of categories coloured."""
    images = images_nchw(images)
    gh, gw = _check_grid(grid)
    n = len(images)
    masks = real_array(masks, "masks", allow_empty=True)
    if masks.shape != (n, gh * gw):
        raise ValueError(
            f"masks must have shape (N, {gh * gw}) for grid {(gh, gw)}; "
            f"got {masks.shape}"
        )
    if not np.all((masks == 0) | (masks == 1)):
        raise ValueError("masks must be boolean (True at a knowledge point)")
    masks = masks.astype(bool)
    region_classes = int_array(region_classes, "region_classes")
    if region_classes.shape != masks.shape:
        raise ValueError(
            f"region_classes must have shape {masks.shape} like masks; "
            f"got {region_classes.shape}"
        )
    if np.any(region_classes[masks] < 0):
        raise ValueError("region_classes must be a class index >= 0 at every point")
    if labels is not None:
        labels = int_array(labels, "labels", n, low=0)
    n_classes = int(region_classes.max()) + 1 if region_classes.size else 1
    if labels is not None and len(labels):
        n_classes = max(n_classes, int(labels.max()) + 1)
    if classes is not None:
        n_classes = max(n_classes, len(classes))
    return images, masks, region_classes, (gh, gw), labels, n_classes


def _pixels(images, mean, std) -> np.ndarray:
    """(N, H, W, C) in [0, 1]: the normalisation undone, then one min-max
    scaling over all images (overflow-safe) so they stay comparable."""
    c = images.shape[1]
    pix = images
    std = channel_stats(std, c, "std")
    mean = channel_stats(mean, c, "mean")
    if std is not None:
        pix = pix * std.reshape(1, -1, 1, 1)
    if mean is not None:
        pix = pix + mean.reshape(1, -1, 1, 1)
    if not np.all(np.isfinite(pix)):
        raise ValueError("images * std + mean overflows: check mean and std")
    return rescale_unit(pix.transpose(0, 2, 3, 1))


def _draw_masks(ax, mask, cls, label, grid, cell, colors):
    """One image's knowledge points: its grid cells coloured by category,
    solid border when the category is the image's label."""
    from matplotlib.patches import Rectangle

    gw = grid[1]
    ch, cw = cell
    for r in np.flatnonzero(mask):
        c = int(cls[r])
        reliable = label is not None and c == int(label)
        ax.add_patch(
            Rectangle(
                ((r % gw) * cw - 0.5, (r // gw) * ch - 0.5),
                cw,
                ch,
                facecolor=(*colors[c][:3], 0.35),
                edgecolor=colors[c],
                linestyle="-" if reliable else "--",
                linewidth=1.2,
            )
        )


@validate_params(
    {
        "images": ["array-like"],
        "masks": ["array-like"],
        "region_classes": ["array-like"],
        "grid": ["array-like"],
        "labels": [None, "array-like"],
        "classes": [None, "array-like"],
        "mean": [None, "array-like", Real],
        "std": [None, "array-like", Real],
        "n_cols": _POSITIVE,
        "title": _TITLE,
    },
    prefer_skip_nested_validation=True,
)
def plot_knowledge_masks(
    images,
    masks,
    region_classes,
    grid,
    *,
    labels=None,
    classes=None,
    mean=None,
    std=None,
    n_cols: int = 6,
    title: str | None = None,
) -> Figure:
    """Knowledge points drawn over the input images.

    Each knowledge point colours its grid cell by the category it points to;
    a solid border marks a reliable point (its category is the image's label),
    a dashed border an unreliable one.

    Parameters
    ----------
    images : array-like of shape (N, C, H, W)
        Inputs, C = 1 or 3 (normalised: give ``mean``/``std`` to restore
        pixels). Channels-last arrays are refused.
    masks : array-like of bool of shape (N, R)
    region_classes : array-like of int of shape (N, R)
    grid : tuple (h, w)
        The region grid, ``h * w = R``.
    labels : array-like of shape (N,), optional
    """
    images, masks, region_classes, grid, labels, n_classes = _mask_inputs(
        images, masks, region_classes, grid, labels, classes
    )
    pix = _pixels(images, mean, std)
    colors = class_colors(n_classes)
    names = class_names(classes, n_classes)
    n = len(images)
    n_cols = min(n_cols, n)
    n_rows = int(np.ceil(n / n_cols))
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(2.0 * n_cols, 2.2 * n_rows), squeeze=False
    )
    cell = (pix.shape[1] / grid[0], pix.shape[2] / grid[1])
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(pix[k] if pix.shape[3] == 3 else pix[k, ..., 0], cmap="gray")
        label = None if labels is None else labels[k]
        _draw_masks(ax, masks[k], region_classes[k], label, grid, cell, colors)
        if labels is not None:
            ax.set_title(f"label {names[label]}", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------
@validate_params(
    {"table": _TABLE, "ax": [None, Axes], "title": _TITLE},
    prefer_skip_nested_validation=True,
)
def plot_knowledge_counts(
    table: Sequence[dict], *, ax=None, title: str | None = "Knowledge points per layer"
) -> Figure:
    """Mean knowledge points per image, total and reliable, per layer.

    ``table`` rows need ``layer``, ``mean_count``, ``mean_reliable`` and
    ``reliable_ratio``; ``*_low``/``*_high`` columns become error bars (the
    intervals of :func:`skvmf.analyze`).
    """
    numeric = ("mean_count", "mean_reliable")
    table = check_records(table, "table", ("layer", *numeric), numeric)
    fig, ax = _new_fig(ax, (6.5, 4))
    layers = [row["layer"] for row in table]
    x = np.arange(len(layers))
    for shift, key, label, color in (
        (-0.2, "mean_count", "all knowledge points", "#4C72B0"),
        (0.2, "mean_reliable", "reliable", "#55A868"),
    ):
        ax.bar(
            x + shift,
            np.array([row[key] for row in table], dtype=float),
            0.4,
            yerr=_errors(table, key),
            capsize=3,
            label=label,
            color=color,
        )
    for xi, row in zip(x, table):
        if row.get("reliable_ratio") is None:
            continue  # no knowledge point: no ratio
        ratio = finite_number(row["reliable_ratio"], "reliable_ratio")
        ax.text(
            xi + 0.2,
            row["mean_reliable"],
            f"{100 * ratio:.0f}%",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(x, layers)
    ax.set_ylabel("per image")
    ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


@validate_params(
    {"table": _TABLE, "metric": [str], "title": _TITLE},
    prefer_skip_nested_validation=True,
)
def plot_emergence(
    table: Sequence[dict], *, metric: str = "mean_count", title: str | None = None
) -> Figure:
    """Knowledge points over training checkpoints, one line per layer.

    ``table`` rows need ``iteration``, ``layer`` and ``metric`` (and
    ``mean_reliable`` for the right panel); ``*_low``/``*_high`` columns
    become error bars.
    """
    numeric = ("iteration", metric, "mean_reliable")
    table = check_records(table, "table", ("layer", *numeric), numeric)
    layers = list(dict.fromkeys(row["layer"] for row in table))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    cmap = plt.get_cmap("viridis")
    for i, layer in enumerate(layers):
        rows = sorted(
            (r for r in table if r["layer"] == layer), key=lambda r: r["iteration"]
        )
        it = [r["iteration"] for r in rows]
        color = cmap(i / max(len(layers) - 1, 1))
        for ax, key in ((axes[0], metric), (axes[1], "mean_reliable")):
            values = [r[key] for r in rows]
            err = _errors(rows, key)
            _line(ax, it, values, err, "o-", color=color, label=layer)
    axes[0].set_ylabel("knowledge points per image")
    axes[1].set_ylabel("reliable knowledge points per image")
    for ax in axes:
        ax.set_xlabel("training iteration")
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle(title or "Emergence of knowledge points during training")
    fig.tight_layout()
    return fig


def _points_before_after(ax, table, x, layers):
    """Bars of knowledge points per image, clean and adversarial."""
    for shift, key, label in (
        (-0.2, "points_clean", "clean"),
        (0.2, "points_adversarial", "adversarial"),
    ):
        ax.bar(
            x + shift,
            [r[key] for r in table],
            0.4,
            yerr=_errors(table, key),
            capsize=3,
            label=label,
        )
    ax.set_xticks(x, layers)
    ax.set_ylabel("knowledge points per image")
    ax.legend(frameon=False)
    ax.set_title("Knowledge points before and after")


@validate_params(
    {"table": _TABLE, "title": _TITLE},
    prefer_skip_nested_validation=True,
)
def plot_adversarial_change(table: Sequence[dict], title: str | None = None) -> Figure:
    """Per layer: how far adversarial regions moved, and knowledge points
    before and after the attack.

    ``table`` rows need ``layer``, ``mean_one_minus_cos``,
    ``mean_strength_change``, and optionally ``points_clean`` /
    ``points_adversarial``.
    """
    numeric = ("mean_one_minus_cos", "mean_strength_change")
    table = check_records(table, "table", ("layer", *numeric), numeric)
    has_points = all("points_clean" in row for row in table)
    if has_points:
        both = ("points_clean", "points_adversarial")
        check_records(table, "table", both, both)
    layers = [row["layer"] for row in table]
    x = np.arange(len(layers))
    fig, axes = plt.subplots(
        1, 2 if has_points else 1, figsize=(11 if has_points else 6, 4), squeeze=False
    )
    ax = axes[0, 0]
    for key, fmt, label in (
        ("mean_one_minus_cos", "o-", "mean 1 - cos"),
        ("mean_strength_change", "s-", "mean |strength change|"),
    ):
        _line(ax, x, [r[key] for r in table], _errors(table, key), fmt, label=label)
    ax.set_xticks(x, layers)
    ax.set_ylabel("change of embedded regions")
    ax.legend(frameon=False)
    ax.set_title("Adversarial change per layer")
    if has_points:
        _points_before_after(axes[0, 1], table, x, layers)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


@validate_params(
    {"table": _TABLE, "title": _TITLE},
    prefer_skip_nested_validation=True,
)
def plot_distillation(table: Sequence[dict], title: str | None = None) -> Figure:
    """Knowledge points of teacher and students per layer.

    ``table`` rows need ``model``, ``layer``, ``mean_count``,
    ``mean_reliable``.
    """
    numeric = ("mean_count", "mean_reliable")
    table = check_records(table, "table", ("model", "layer", *numeric), numeric)
    models = list(dict.fromkeys(row["model"] for row in table))
    layers = list(dict.fromkeys(row["layer"] for row in table))
    width = 0.8 / len(models)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(layers))
    for i, model in enumerate(models):
        rows = {r["layer"]: r for r in table if r["model"] == model}
        present = [rows[layer] for layer in layers if layer in rows]
        for ax, key in zip(axes, ("mean_count", "mean_reliable")):
            ax.bar(
                x - 0.4 + width * (i + 0.5),
                # a layer the model lacks: no bar (NaN is how matplotlib skips)
                [rows[layer][key] if layer in rows else np.nan for layer in layers],
                width,
                yerr=_errors(present, key) if len(present) == len(layers) else None,
                capsize=3,
                label=model,
            )
    axes[0].set_ylabel("knowledge points per image")
    axes[1].set_ylabel("reliable knowledge points per image")
    for ax in axes:
        ax.set_xticks(x, layers)
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle(title or "Knowledge distillation: teacher vs students")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------
# findings and loss curves
# ---------------------------------------------------------------------------
def _check_findings(findings) -> list[dict]:
    """The evaluated findings (value not None), their value and bounds
    finite; a missing bound becomes the value."""
    rows = []
    for i, f in enumerate(findings):
        if not isinstance(f, Mapping) or "name" not in f:
            raise ValueError(f"findings[{i}] must be a dict with a 'name'")
        if f.get("value") is None:
            continue
        value = finite_number(f["value"], f"findings[{i}]['value']")
        low, high = (
            value if f.get(k) is None else finite_number(f[k], f"findings[{i}][{k!r}]")
            for k in ("low", "high")
        )
        rows.append({**f, "value": value, "low": low, "high": high})
    return rows


def _draw_finding(ax, f, colors):
    """One finding: its value with its interval, and the threshold line."""
    low, high, value = f["low"], f["high"], f["value"]
    verdict = verdict_of(f)
    color = colors.get(verdict, "#999999")
    xerr = [[value - low], [high - value]]
    ax.errorbar([value], [0], xerr=xerr, fmt="o", capsize=4, color=color)
    ref = f.get("threshold")
    if ref is None:  # a record without its claim
        ref = 0.9 if f["name"] == "projection_mimics_network" else 0.0
    ax.axvline(ref, color="k", lw=0.8, ls="--")
    lo, hi = min(low, ref), max(high, ref)
    pad = 0.15 * (hi - lo or 1.0)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_yticks([])
    ax.set_title(
        f"{f['name']}: {value:.3g} [{low:.3g}, {high:.3g}] ({verdict})",
        fontsize=9,
        loc="left",
    )


@validate_params(
    {"findings": _TABLE, "title": _TITLE},
    prefer_skip_nested_validation=True,
)
def plot_findings(findings: Sequence[dict], title: str | None = None) -> Figure:
    """Each finding's value and interval, coloured by its verdict.

    ``findings`` are the records of :attr:`skvmf.AnalysisResult.findings`:
    ``name``, ``value``, ``low``, ``high``, ``verdict`` (green: holds, red:
    contradicted, amber: inconclusive; records with only ``holds`` read
    False as "does not hold", red) and ``threshold``. Findings on different
    scales get their own row; the dashed line is each statement's threshold
    (without ``threshold``: 0, or 0.9 for the agreement). Findings without
    a value are left out; with none at all the figure says so.
    """
    rows = _check_findings(findings)
    fig, axes = plt.subplots(
        max(len(rows), 1), 1, figsize=(7, 0.9 * max(len(rows), 1) + 0.8), squeeze=False
    )
    colors = {
        "holds": "#2a9d8f",
        "contradicted": "#e76f51",
        "does not hold": "#e76f51",
        "inconclusive": "#e9a23b",
    }
    for ax, f in zip(axes[:, 0], rows):
        _draw_finding(ax, f, colors)
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no finding evaluated", ha="center")
        axes[0, 0].set_axis_off()
    fig.suptitle(title or "Findings with their intervals")
    fig.tight_layout()
    return fig


def _check_curves(curves) -> list[dict]:
    """Curve records with their ``curve`` as a finite 1-D array (a NaN would
    silently cut the line)."""
    keys = ("network", "layer", "stage", "curve")
    rows = []
    for i, c in enumerate(curves):
        if not isinstance(c, Mapping) or not set(keys) <= set(c):
            raise ValueError(f"curves[{i}] must be a dict with {', '.join(keys)}")
        curve = real_array(
            c["curve"], f"curves[{i}]['curve']", ndim=1, allow_empty=True
        )
        rows.append({**c, "curve": curve})
    return rows


@validate_params(
    {"curves": _TABLE, "title": _TITLE},
    prefer_skip_nested_validation=True,
)
def plot_loss_curves(curves: Sequence[dict], title: str | None = None) -> Figure:
    """Loss curves of every fitted stage: one panel per stage, one line per
    (network, layer, repeat); the main network's in colour, others grey.

    ``curves`` are the records of :attr:`skvmf.AnalysisResult.loss_curves`:
    ``network``, ``layer``, ``stage``, ``repeat``, ``curve``.
    """
    curves = _check_curves(curves)
    stages = list(dict.fromkeys(c["stage"] for c in curves)) or ["projection"]
    fig, axes = plt.subplots(
        1, len(stages), figsize=(4.2 * len(stages), 3.6), squeeze=False
    )
    layers = list(dict.fromkeys(c["layer"] for c in curves))
    cmap = plt.get_cmap("viridis")
    for ax, stage in zip(axes[0], stages):
        labelled = set()
        for c in curves:
            if c["stage"] != stage or not len(c["curve"]):
                continue
            main = c["network"] == "model"
            i = layers.index(c["layer"])
            color = cmap(i / max(len(layers) - 1, 1)) if main else "#cccccc"
            label = c["layer"] if main and c["layer"] not in labelled else None
            labelled.add(c["layer"] if main else None)
            ax.plot(
                np.arange(len(c["curve"])),
                c["curve"],
                color=color,
                lw=1.2 if main else 0.6,
                zorder=2 if main else 1,
                label=label,
            )
        ax.set_title(stage)
        ax.set_xlabel("step" if stage != "alignment" else "epoch")
        ax.set_ylabel("loss")
        if labelled - {None}:
            ax.legend(frameon=False, fontsize=7)
    fig.suptitle(title or "Loss of every fitted stage (grey: other networks)")
    fig.tight_layout()
    return fig
