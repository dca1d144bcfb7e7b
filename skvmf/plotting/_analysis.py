"""Figures of the paper's analysis: the projected space, knowledge points,
emergence over training, adversarial change and distillation.

Every function returns a :class:`matplotlib.figure.Figure`. Tables are the
records (lists of dict rows) produced by :func:`skvmf.analyze`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

_CMAP = "tab10"


def _class_colors(n_classes: int):
    cmap = plt.get_cmap(_CMAP if n_classes <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n_classes)]


def _names(classes, n):
    if classes is None:
        return [str(i) for i in range(n)]
    return [str(c) for c in classes]


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
    value = np.array([row[key] for row in rows], dtype=float)
    low = np.array([row[f"{key}_low"] for row in rows], dtype=float)
    high = np.array([row[f"{key}_high"] for row in rows], dtype=float)
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
    here: strength is the distance from it)."""
    _, _, vt = np.linalg.svd(points, full_matrices=False)
    return vt[:2].T, points @ vt[:2].T


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
    labels : array-like of shape (N,)
        Integer class index of each point (colour).
    directions : array-like of shape (C, d')
        Unit category directions, drawn as arrows as long as the largest g.
    classes : sequence of str, optional
        Class names for the legend.
    view : {"3d", "2d"}
        ``"3d"``: the first three coordinates with a reference sphere;
        ``"2d"``: projection on the two principal axes of g (about the
        origin, so strength stays visible as distance from the centre).
    """
    g = np.asarray(g, dtype=float)
    labels = np.asarray(labels)
    mu = np.asarray(directions, dtype=float)
    if g.ndim != 2 or g.shape[1] < 2:
        raise ValueError(f"g must have shape (N, d') with d' >= 2; got {g.shape}")
    if view not in ("3d", "2d"):
        raise ValueError(f"view must be '3d' or '2d'; got {view!r}")
    if view == "3d" and g.shape[1] < 3:
        view = "2d"
    if len(g) > max_points:
        keep = np.random.default_rng(0).choice(len(g), max_points, replace=False)
        g, labels = g[keep], labels[keep]
    colors = _class_colors(len(mu))
    names = _names(classes, len(mu))
    radius = float(np.linalg.norm(g, axis=1).max()) if len(g) else 1.0
    if view == "3d":
        fig, ax = _new_fig(ax, (6.5, 6), projection="3d")
        _draw_sphere(ax, radius)
        for c in range(len(mu)):
            sel = labels == c
            ax.scatter(*g[sel, :3].T, s=6, color=colors[c], alpha=0.6, label=names[c])
            end = mu[c, :3] * radius * 1.1
            ax.plot(*np.stack([np.zeros(3), end]).T, color=colors[c], linewidth=2.5)
            ax.text(*end, names[c], color=colors[c], fontsize=9, weight="bold")
        ax.set_box_aspect((1, 1, 1))
    else:
        fig, ax = _new_fig(ax, (6, 6))
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
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize=7, markerscale=2, ncol=2, frameon=False)
    return fig


def plot_sample_evolution(
    frames: Sequence[dict], labels, *, classes=None, max_points: int = 800
) -> Figure:
    """Sample features g and category directions at each training checkpoint.

    ``frames`` are dicts with ``iteration``, ``g`` (N, d') and ``directions``
    (C, d'), all in one coordinate system (as produced by
    :meth:`skvmf.SampleProjector.fit_sequence`), so the panels show the
    categories separating as training goes on. Every panel shares the axis
    limits of the last one.
    """
    if not frames:
        raise ValueError("frames is empty")
    n = len(frames)
    fig = plt.figure(figsize=(3.3 * n, 3.6))
    reach = max(float(np.linalg.norm(np.asarray(f["g"]), axis=1).max()) for f in frames)
    for i, frame in enumerate(frames):
        ax = fig.add_subplot(1, n, i + 1, projection="3d")
        plot_sample_space(
            frame["g"],
            labels,
            frame["directions"],
            classes=classes,
            ax=ax,
            title=f"iteration {frame['iteration']}",
            max_points=max_points,
        )
        lim = reach * 1.1
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_zlim(-lim, lim)
        ax.tick_params(labelsize=6)
        if i < n - 1 and ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.suptitle("Sample features during training (one shared frame)")
    return fig


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
        Colour of each region (e.g. its argmax category, -1 for "not a
        knowledge point", drawn grey). Default: grey.
    """
    layers = list(h)
    if not layers:
        raise ValueError("h has no layers to plot")
    mu = np.asarray(directions, dtype=float)
    colors = _class_colors(len(mu))
    names = _names(classes, len(mu))
    rng = np.random.default_rng(random_state)
    n, r = next(iter(h.values())).shape[:2]
    keep = rng.choice(n * r, min(max_points, n * r), replace=False)
    reach = max(
        float(
            np.linalg.norm(np.asarray(v).reshape(-1, v.shape[-1])[keep], axis=1).max()
        )
        for v in h.values()
    )
    fig = plt.figure(figsize=(3.4 * len(layers), 3.8))
    for i, layer in enumerate(layers):
        pts = np.asarray(h[layer], dtype=float).reshape(n * r, -1)[keep]
        ax = fig.add_subplot(1, len(layers), i + 1, projection="3d")
        if region_labels is not None and layer in region_labels:
            lab = np.asarray(region_labels[layer]).reshape(-1)[keep]
        else:
            lab = np.full(len(pts), -1)
        grey = lab < 0
        ax.scatter(*pts[grey, :3].T, s=2, color="0.7", alpha=0.3)
        for c in range(len(mu)):
            sel = lab == c
            if sel.any():
                ax.scatter(*pts[sel, :3].T, s=3, color=colors[c], alpha=0.7)
            end = mu[c, :3] * reach
            ax.plot(*np.stack([np.zeros(3), end]).T, color=colors[c], lw=1.5)
        lim = reach * 1.05
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_zlim(-lim, lim)
        ax.set_box_aspect((1, 1, 1))
        ax.set_title(layer, fontsize=10)
        ax.tick_params(labelsize=6)
    handles = [
        plt.Line2D([], [], color=colors[c], marker="o", ls="", label=names[c])
        for c in range(len(mu))
    ]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=min(len(mu), 10),
        fontsize=7,
        frameon=False,
    )
    fig.suptitle("Regional features h per layer (coloured: knowledge points)")
    return fig


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
        Inputs (normalised: give ``mean``/``std`` to restore pixels).
    masks : array-like of bool of shape (N, R)
    region_classes : array-like of int of shape (N, R)
    grid : tuple (h, w)
    labels : array-like of shape (N,), optional
    """
    from matplotlib.patches import Rectangle

    images = np.asarray(images, dtype=float)
    masks = np.asarray(masks, dtype=bool)
    region_classes = np.asarray(region_classes)
    gh, gw = grid
    if masks.shape != (len(images), gh * gw):
        raise ValueError(
            f"masks must have shape (N, {gh * gw}) for grid {tuple(grid)}; "
            f"got {masks.shape}"
        )
    pix = images
    if std is not None:
        pix = pix * np.asarray(std).reshape(1, -1, 1, 1)
    if mean is not None:
        pix = pix + np.asarray(mean).reshape(1, -1, 1, 1)
    pix = pix.transpose(0, 2, 3, 1)
    lo, hi = pix.min(), pix.max()
    pix = (pix - lo) / (hi - lo) if hi > lo else np.zeros_like(pix)
    n = len(images)
    n_cols = min(n_cols, n)
    n_rows = int(np.ceil(n / n_cols))
    n_classes = int(region_classes.max()) + 1 if region_classes.size else 1
    if labels is not None and len(labels):
        n_classes = max(n_classes, int(np.max(labels)) + 1)
    if classes is not None:
        n_classes = max(n_classes, len(classes))
    colors = _class_colors(n_classes)
    names = _names(classes, n_classes)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(2.0 * n_cols, 2.2 * n_rows), squeeze=False
    )
    height, width = pix.shape[1:3]
    ch, cw = height / gh, width / gw
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        img = pix[k]
        ax.imshow(img if img.shape[2] == 3 else img[..., 0], cmap="gray")
        for r in np.flatnonzero(masks[k]):
            c = int(region_classes[k, r])
            reliable = labels is not None and c == int(np.asarray(labels)[k])
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
        if labels is not None:
            ax.set_title(f"label {names[int(np.asarray(labels)[k])]}", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_knowledge_counts(
    table: Sequence[dict], *, ax=None, title: str | None = "Knowledge points per layer"
) -> Figure:
    """Mean knowledge points per image, total and reliable, per layer.

    ``table`` rows need ``layer``, ``mean_count``, ``mean_reliable`` and
    ``reliable_ratio``; ``*_low``/``*_high`` columns become error bars (the
    intervals of :func:`skvmf.analyze`).
    """
    fig, ax = _new_fig(ax, (6.5, 4))
    layers = [row["layer"] for row in table]
    total = np.array([row["mean_count"] for row in table], dtype=float)
    reliable = np.array([row["mean_reliable"] for row in table], dtype=float)
    x = np.arange(len(layers))
    ax.bar(
        x - 0.2,
        total,
        0.4,
        yerr=_errors(table, "mean_count"),
        capsize=3,
        label="all knowledge points",
        color="#4C72B0",
    )
    ax.bar(
        x + 0.2,
        reliable,
        0.4,
        yerr=_errors(table, "mean_reliable"),
        capsize=3,
        label="reliable",
        color="#55A868",
    )
    for xi, row in zip(x, table):
        if row.get("reliable_ratio") is None:
            continue  # no knowledge point: no ratio
        ax.text(
            xi + 0.2,
            row["mean_reliable"],
            f"{100 * row['reliable_ratio']:.0f}%",
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


def plot_emergence(
    table: Sequence[dict], *, metric: str = "mean_count", title: str | None = None
) -> Figure:
    """Knowledge points over training checkpoints, one line per layer.

    ``table`` rows need ``iteration``, ``layer`` and ``metric`` (and
    ``mean_reliable`` for the right panel); ``*_low``/``*_high`` columns
    become error bars.
    """
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
            _line(
                ax,
                it,
                [r[key] for r in rows],
                _errors(rows, key),
                "o-",
                color=color,
                label=layer,
            )
    axes[0].set_ylabel("knowledge points per image")
    axes[1].set_ylabel("reliable knowledge points per image")
    for ax in axes:
        ax.set_xlabel("training iteration")
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle(title or "Emergence of knowledge points during training")
    fig.tight_layout()
    return fig


def plot_adversarial_change(table: Sequence[dict], title: str | None = None) -> Figure:
    """Per layer: how far adversarial regions moved, and knowledge points
    before and after the attack.

    ``table`` rows need ``layer``, ``mean_one_minus_cos``,
    ``mean_strength_change``, and optionally ``points_clean`` /
    ``points_adversarial``.
    """
    layers = [row["layer"] for row in table]
    x = np.arange(len(layers))
    has_points = all("points_clean" in row for row in table)
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
        ax = axes[0, 1]
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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_distillation(table: Sequence[dict], title: str | None = None) -> Figure:
    """Knowledge points of teacher and students per layer.

    ``table`` rows need ``model``, ``layer``, ``mean_count``,
    ``mean_reliable``.
    """
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


def plot_findings(findings: Sequence[dict], title: str | None = None) -> Figure:
    """Each finding's value and interval, coloured by whether it holds.

    ``findings`` are the records of :attr:`skvmf.AnalysisResult.findings`:
    ``name``, ``value``, ``low``, ``high``, ``holds``. Findings on different
    scales get their own row; the dashed line is each statement's threshold
    side (0, or 0.9 for the agreement).
    """
    rows = [f for f in findings if f.get("value") is not None]
    fig, axes = plt.subplots(
        max(len(rows), 1), 1, figsize=(7, 0.9 * max(len(rows), 1) + 0.8), squeeze=False
    )
    colors = {True: "#2a9d8f", False: "#e76f51", None: "#999999"}
    for ax, f in zip(axes[:, 0], rows):
        low = f["low"] if f["low"] is not None else f["value"]
        high = f["high"] if f["high"] is not None else f["value"]
        color = colors[f.get("holds")]
        ax.errorbar(
            [f["value"]],
            [0],
            xerr=[[f["value"] - low], [high - f["value"]]],
            fmt="o",
            capsize=4,
            color=color,
        )
        ref = 0.9 if f["name"] == "projection_mimics_network" else 0.0
        ax.axvline(ref, color="k", lw=0.8, ls="--")
        lo, hi = min(low, ref), max(high, ref)
        pad = 0.15 * (hi - lo or 1.0)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_yticks([])
        verdict = {True: "holds", False: "does not hold", None: "not evaluated"}
        ax.set_title(
            f"{f['name']}: {f['value']:.3g} [{low:.3g}, {high:.3g}] "
            f"({verdict[f.get('holds')]})",
            fontsize=9,
            loc="left",
        )
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no finding evaluated", ha="center")
        axes[0, 0].set_axis_off()
    fig.suptitle(title or "Findings with their intervals")
    fig.tight_layout()
    return fig


def plot_loss_curves(curves: Sequence[dict], title: str | None = None) -> Figure:
    """Loss curves of every fitted stage: one panel per stage, one line per
    (network, layer, repeat); the main network's in colour, others grey.

    ``curves`` are the records of :attr:`skvmf.AnalysisResult.loss_curves`:
    ``network``, ``layer``, ``stage``, ``repeat``, ``curve``.
    """
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
