"""Interactive 3-D views (plotly) of the projected space: turn, zoom, hover.

The static matplotlib spheres occlude themselves; these views can be rotated
and zoomed, show what a point is on hover (image, class, predicted class,
strength, knowledge point) and replace small multiples by a slider (layers,
training checkpoints). Every function returns a
:class:`plotly.graph_objects.Figure`, which shows inline in Jupyter;
:func:`skvmf.report.write_report` embeds the same figures, with plotly's own
JavaScript bundle, in the HTML report so that it stays self-contained.

The points drawn are the same subsample as the matching matplotlib figure
(same ``max_points`` and seed), in the first three coordinates of the space.
Every point carries, in its trace's ``ids``, where it comes from: ``"i"``
for image row ``i`` of the inputs, ``"i:k"`` for region ``k`` of that image
(row-major on the region grid). The report reads them to show the image
behind a clicked point.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from numbers import Integral

import numpy as np
from matplotlib.colors import to_hex
from sklearn.utils._param_validation import Interval, validate_params

from .._numerics.arrays import safe_norm
from .._utils.figures import subsample
from ._common import (
    check_frames,
    class_colors,
    class_names,
    directions_for,
    int_array,
    per_item,
    points,
    reach,
    real_array,
    region_sample,
    unit,
    xyz,
)

__all__ = [
    "plot_adversarial_regions_interactive",
    "plot_layer_regions_interactive",
    "plot_sample_evolution_interactive",
    "plot_sample_space_interactive",
]

_HEIGHT = 600
_POSITIVE = [Interval(Integral, 1, None, closed="left")]
# float32 halves the figure's JSON, but only where it keeps the values
_FLOAT32_RANGE = (1e-30, 1e30)


def _go():
    try:
        import plotly.graph_objects as go
    except ImportError as exc:  # a dependency of skvmf; only a broken install
        raise ImportError(
            "interactive figures need plotly (pip install plotly)"
        ) from exc
    return go


def _labels_text(classes, n):
    # plotly reads tags and entities in labels: escape so that a class name
    # such as "<b>" is shown as written
    return [html.escape(name, quote=False) for name in class_names(classes, n)]


def _xyz(points) -> np.ndarray:
    """First three coordinates (zero-padded when d' = 2), as float32 where
    that keeps them (the figure JSON carries them base64-encoded, half the
    bytes of float64); float64 for magnitudes float32 would turn into inf
    or 0."""
    out = xyz(np.asarray(points, dtype=float))
    top = float(np.max(np.abs(out))) if out.size else 0.0
    if top == 0 or _FLOAT32_RANGE[0] <= top <= _FLOAT32_RANGE[1]:
        return out.astype(np.float32)
    return out


def _hover_number(value) -> float:
    """A strength for the hover text: six significant digits, so that 1e-300
    is not rounded to 0."""
    return float(f"{float(value):.6g}")


def _scene(reach: float) -> dict:
    axis = {
        "range": [-reach, reach],
        "zeroline": True,
        "showspikes": False,
        "backgroundcolor": "white",
        "gridcolor": "#e6e6e6",
    }
    return {
        "xaxis": {**axis, "title": {"text": "x0"}},
        "yaxis": {**axis, "title": {"text": "x1"}},
        "zaxis": {**axis, "title": {"text": "x2"}},
        "aspectmode": "cube",
    }


def _layout(title: str, reach: float) -> dict:
    return {
        "title": {"text": html.escape(title, quote=False), "x": 0.02},
        "scene": _scene(reach),
        "height": _HEIGHT,
        "margin": {"l": 0, "r": 0, "t": 40, "b": 10},
        "legend": {"itemsizing": "constant"},
        # keep the reader's camera when a slider changes what is visible
        "uirevision": "skvmf",
    }


def _slider(steps, prefix: str) -> dict:
    # inset so that the first and last step labels are not cut off
    return {
        "active": 0,
        "currentvalue": {"prefix": prefix},
        "x": 0.05,
        "len": 0.9,
        "pad": {"t": 10, "b": 10},
        "steps": steps,
    }


def _make_room_for_slider(fig) -> None:
    # the scene above the slider, taller page: the two would overlap otherwise
    fig.update_layout(height=_HEIGHT + 80, scene_domain={"x": [0, 1], "y": [0.17, 1]})


def _direction_traces(go, directions, colors, names, length, visible=True):
    """One line per category from the origin to ``length * mu_c`` (unit
    directions), named at its end."""
    traces = []
    # the WebGL scene writes its text as is: unescape what the svg parts need
    raw = [html.unescape(name) for name in names]
    for c, mu in enumerate(xyz(directions)):
        end = _xyz((mu * length)[None])[0]
        traces.append(
            go.Scatter3d(
                x=[0.0, float(end[0])],
                y=[0.0, float(end[1])],
                z=[0.0, float(end[2])],
                mode="lines+text",
                text=["", raw[c]],
                textfont={"color": colors[c], "size": 12},
                line={"color": colors[c], "width": 6},
                legendgroup=f"class{c}",
                showlegend=False,
                hovertemplate=f"direction of {names[c]}<extra></extra>",
                visible=visible,
            )
        )
    return traces


def _sphere_trace(go, radius: float):
    """A light wireframe sphere (one line trace, segments broken by None)."""
    u = np.linspace(0, 2 * np.pi, 25)
    v = np.linspace(0, np.pi, 13)
    xs, ys, zs = [], [], []
    for phi in v[1:-1]:  # parallels
        xs += [*(np.cos(u) * np.sin(phi)), None]
        ys += [*(np.sin(u) * np.sin(phi)), None]
        zs += [*(np.full(len(u), np.cos(phi))), None]
    for theta in u[:-1:2]:  # meridians
        xs += [*(np.cos(theta) * np.sin(v)), None]
        ys += [*(np.sin(theta) * np.sin(v)), None]
        zs += [*(np.cos(v)), None]
    # 4 digits of the unit sphere are plenty for a guide and keep the page
    # small; scaled afterwards so that no radius rounds to 0
    xs, ys, zs = (
        [None if v is None else radius * round(float(v), 4) for v in a]
        for a in (xs, ys, zs)
    )
    return go.Scatter3d(
        x=xs,
        y=ys,
        z=zs,
        mode="lines",
        line={"color": "#d9d9d9", "width": 1},
        hoverinfo="skip",
        showlegend=False,
    )


def _image_keys(rows, regions=None) -> list[str]:
    """Each point's origin, as its trace's ``ids``: ``"i"`` (image row) or
    ``"i:k"`` (region k of image row i)."""
    if regions is None:
        return [str(int(i)) for i in rows]
    return [f"{int(i)}:{int(k)}" for i, k in zip(rows, regions)]


def _class_of(values, names, i) -> str:
    """Name of the class index ``values[i]``, "-" when none was given."""
    return "-" if values is None else names[int(values[i])]


def _points_trace(go, xyz, sel, *, name, group, color, custom, hover, **kwargs):
    """The markers of the points ``sel`` with their hover data."""
    style = {"size": 3, "opacity": 0.75}
    style.update(kwargs.pop("marker", {}))
    return go.Scatter3d(
        x=xyz[sel, 0],
        y=xyz[sel, 1],
        z=xyz[sel, 2],
        mode="markers",
        name=name,
        legendgroup=group,
        marker={"color": color, **style},
        customdata=custom,
        hovertemplate=hover,
        **kwargs,
    )


# ---------------------------------------------------------------------------
# the sample space
# ---------------------------------------------------------------------------
def _space_inputs(g, labels, directions, predicted, image_ids):
    """Checked g, labels and predictions (class indices in [0, C)), image
    ids and unit directions."""
    g = points(g, "g")
    n = len(g)
    mu = directions_for(directions, g.shape[1])
    c = len(mu)
    labels = int_array(labels, "labels", n, low=0, high=c)
    if predicted is not None:
        predicted = int_array(predicted, "predicted", n, low=0, high=c)
    ids = per_item(image_ids, n, np.arange(n), "image_ids")
    return g, labels, predicted, ids, mu


@validate_params(
    {
        "g": ["array-like"],
        "labels": ["array-like"],
        "directions": ["array-like"],
        "classes": [None, "array-like"],
        "predicted": [None, "array-like"],
        "image_ids": [None, "array-like"],
        "title": [str],
        "max_points": _POSITIVE,
    },
    prefer_skip_nested_validation=True,
)
def plot_sample_space_interactive(
    g,
    labels,
    directions,
    *,
    classes=None,
    predicted=None,
    image_ids=None,
    title: str = "Sample features g and category directions",
    max_points: int = 2000,
):
    """Sample features ``g`` with the category directions, to turn and hover.

    Parameters
    ----------
    g : array-like of shape (N, d')
        Projected sample features; the first three coordinates are drawn.
    labels : array-like of shape (N,)
        Integer class index of each image (colour), in ``[0, C)``.
    directions : array-like of shape (C, d')
        Category directions, drawn (as unit vectors) as long as the largest g.
    classes : sequence of str, optional
        Class names.
    predicted : array-like of shape (N,), optional
        The network's predicted class index of each image (shown on hover).
    image_ids : array-like of shape (N,), optional
        Identifier of each image shown on hover (default: its row).
    title : str, default="Sample features g and category directions"
    max_points : int, default=2000
        Images drawn at most (a fixed random subsample beyond).

    Returns
    -------
    plotly.graph_objects.Figure
        One trace per class; hover shows the image, its class, the
        predicted class and the strength ``||g||``. Each point's ``ids``
        entry is its row in ``g`` (as a string).
    """
    go = _go()
    g, labels, predicted, ids, mu = _space_inputs(
        g, labels, directions, predicted, image_ids
    )
    colors = [to_hex(c) for c in class_colors(len(mu))]
    names = _labels_text(classes, len(mu))
    keep = subsample(len(g), max_points)
    strength = safe_norm(g, dim=1)
    radius = reach(g[keep])
    xyz = _xyz(g)
    traces = [_sphere_trace(go, radius)]
    for c in range(len(mu)):
        sel = keep[labels[keep] == c]
        custom = [
            [str(ids[i]), _class_of(predicted, names, i), _hover_number(strength[i])]
            for i in sel
        ]
        hover = (
            f"image %{{customdata[0]}}<br>class: {names[c]}<br>"
            "predicted: %{customdata[1]}<br>"
            "strength ||g||: %{customdata[2]:.4g}<extra></extra>"
        )
        traces.append(
            _points_trace(
                go,
                xyz,
                sel,
                name=names[c],
                group=f"class{c}",
                color=colors[c],
                custom=custom,
                hover=hover,
                ids=_image_keys(sel),
            )
        )
    traces += _direction_traces(go, mu, colors, names, radius * 1.1)
    fig = go.Figure(data=traces)
    fig.update_layout(**_layout(title, radius * 1.2))
    return fig


# ---------------------------------------------------------------------------
# regions per layer
# ---------------------------------------------------------------------------
def _region_about(keep, r, ids, labels, predicted, names, grid):
    """Hover text of each drawn region that does not change with the layer:
    image id, region (grid cell when ``grid`` is given), class, prediction."""
    image, region = keep // r, keep % r
    if grid is not None:
        width = int(grid[1])
        where = [f"({k // width}, {k % width})" for k in region]
    else:
        where = [str(k) for k in region]
    return [
        [
            str(ids[i]),
            where[j],
            _class_of(labels, names, i),
            _class_of(predicted, names, i),
        ]
        for j, i in enumerate(image)
    ]


def _layer_traces(go, pts, lab, about, keys, names, colors, visible):
    """One layer's regions: a grey trace for the regions that are not
    knowledge points, one trace per category for the others."""
    strength = safe_norm(pts, dim=1)
    xyz = _xyz(pts)
    head = (
        "image %{customdata[0]}, region %{customdata[1]}<br>"
        "class: %{customdata[2]}<br>predicted: %{customdata[3]}<br>"
        "strength ||h||: %{customdata[4]:.4g}<br>"
    )
    groups = [(-1, "not a knowledge point", "#b3b3b3", 2, 0.35)]
    groups += [(c, names[c], colors[c], 3, 0.8) for c in range(len(names))]
    traces = []
    for c, name, color, size, opacity in groups:
        sel = np.flatnonzero(lab == c if c >= 0 else lab < 0)
        point = "no" if c < 0 else f"yes, points to {names[c]}"
        custom = [[*about[j], _hover_number(strength[j])] for j in sel]
        traces.append(
            _points_trace(
                go,
                xyz,
                sel,
                name=name,
                group="none" if c < 0 else f"class{c}",
                color=color,
                custom=custom,
                hover=head + f"knowledge point: {point}<extra></extra>",
                marker={"size": size, "opacity": opacity},
                visible=visible,
                ids=[keys[j] for j in sel],
            )
        )
    return traces


def _slider_steps(labels, owner, n_traces, title, texts):
    """One slider step per label: shows the traces whose owner is that step
    (and every trace past ``owner``: the shared ones) and retitles."""
    shared = [True] * (n_traces - len(owner))
    return [
        {
            "label": label,
            "method": "update",
            "args": [
                {"visible": [o == k for o in owner] + shared},
                {"title.text": title + text},
            ],
        }
        for k, (label, text) in enumerate(zip(labels, texts))
    ]


@validate_params(
    {
        "h": [Mapping],
        "directions": ["array-like"],
        "region_labels": [None, Mapping],
        "classes": [None, "array-like"],
        "labels": [None, "array-like"],
        "predicted": [None, "array-like"],
        "image_ids": [None, "array-like"],
        "grid": [None, "array-like"],
        "max_points": _POSITIVE,
        "random_state": [
            None,
            Interval(Integral, 0, None, closed="left"),
            np.random.Generator,
        ],
    },
    prefer_skip_nested_validation=True,
)
def plot_layer_regions_interactive(
    h: Mapping[str, np.ndarray],
    directions,
    *,
    region_labels: Mapping[str, np.ndarray] | None = None,
    classes=None,
    labels=None,
    predicted=None,
    image_ids=None,
    grid=None,
    max_points: int = 1500,
    random_state: int = 0,
):
    """Every layer's regions in the same 3-D space, one layer at a time on a
    slider (forward propagation).

    Parameters
    ----------
    h : dict of layer -> ndarray (N, R, d')
        Embedded regions, each layer rescaled as for knowledge points (mean
        strength 1) so that the layers share one scale.
    directions : array-like of shape (C, d')
    region_labels : dict of layer -> ndarray (N, R), optional
        The category index each knowledge point points to, -1 for regions
        that are not knowledge points (grey). Default: all grey.
    classes : sequence of str, optional
    labels, predicted : array-like of shape (N,), optional
        True and predicted class index of each image (shown on hover).
    image_ids : array-like of shape (N,), optional
        Identifier of each image (default: its row).
    grid : tuple (H, W), optional
        The region grid (``H * W = R``), to show a region as (row, column).
    max_points : int, default=1500
        Regions drawn per layer: the same ones at every layer, and the same
        as :func:`skvmf.plotting.plot_layer_regions` draws.
    random_state : int, default=0

    Returns
    -------
    plotly.graph_objects.Figure
        For each layer a grey trace and one trace per category; the slider
        shows one layer. Hover shows the image, region, class, predicted
        class, strength ``||h||`` and whether the region is a knowledge
        point (and of which category). Each point's ``ids`` entry is
        ``"i:k"``: region ``k`` of image row ``i`` of ``h``.
    """
    go = _go()
    layers, keep, drawn, region_of, (n, r), mu = region_sample(
        h, directions, region_labels, max_points, random_state
    )
    if grid is not None and int(np.prod(np.asarray(grid, dtype=float))) != r:
        raise ValueError(f"grid {tuple(grid)} does not have the {r} regions of h")
    colors = [to_hex(c) for c in class_colors(len(mu))]
    names = _labels_text(classes, len(mu))
    labels, predicted = (
        None if v is None else int_array(v, name, n, low=0, high=len(mu))
        for v, name in ((labels, "labels"), (predicted, "predicted"))
    )
    ids = per_item(image_ids, n, np.arange(n), "image_ids")
    about = _region_about(keep, r, ids, labels, predicted, names, grid)
    keys = _image_keys(keep // r, keep % r)
    lim = max(reach(v) for v in drawn.values())
    per_layer = [
        _layer_traces(
            go, drawn[layer], region_of[layer], about, keys, names, colors, li == 0
        )
        for li, layer in enumerate(layers)
    ]
    title = "Regional features h (coloured: knowledge points) at "
    return _layer_slider_figure(
        go, per_layer, list(layers), (mu, colors, names, lim), title, layers[0]
    )


# ---------------------------------------------------------------------------
# sample features over training
# ---------------------------------------------------------------------------
def _frame_traces(go, g, mu, keep, labels, ids, names, colors, length, visible):
    """One checkpoint: one trace per class (hover: the closest direction by
    cosine) and the direction lines."""
    strength = safe_norm(g, dim=1)
    # largest cosine: the category model's choice under equal priors, and
    # overflow-free for any magnitude of g
    closest = (unit(g) @ mu.T).argmax(1)
    xyz = _xyz(g)
    traces = []
    for c in range(len(mu)):
        sel = keep[labels[keep] == c]
        custom = [
            [str(ids[i]), names[closest[i]], _hover_number(strength[i])] for i in sel
        ]
        hover = (
            f"image %{{customdata[0]}}<br>class: {names[c]}<br>"
            "closest direction: %{customdata[1]}<br>"
            "strength ||g||: %{customdata[2]:.4g}<extra></extra>"
        )
        traces.append(
            _points_trace(
                go,
                xyz,
                sel,
                name=names[c],
                group=f"class{c}",
                color=colors[c],
                custom=custom,
                hover=hover,
                visible=visible,
                ids=_image_keys(sel),
            )
        )
    traces += _direction_traces(go, mu, colors, names, length, visible)
    return traces


@validate_params(
    {
        "frames": [list, tuple],
        "labels": ["array-like"],
        "classes": [None, "array-like"],
        "image_ids": [None, "array-like"],
        "max_points": _POSITIVE,
    },
    prefer_skip_nested_validation=True,
)
def plot_sample_evolution_interactive(
    frames: Sequence[dict],
    labels,
    *,
    classes=None,
    image_ids=None,
    max_points: int = 800,
):
    """Sample features g and the category directions at each training
    checkpoint, on a checkpoint slider (one shared frame).

    Parameters
    ----------
    frames : sequence of dict
        ``iteration``, ``g`` (N, d') and ``directions`` (C, d') per checkpoint,
        in one coordinate system (:meth:`skvmf.SampleProjector.fit_sequence`).
    labels : array-like of shape (N,)
        True class index of each image, in ``[0, C)``.
    classes : sequence of str, optional
    image_ids : array-like of shape (N,), optional
        Identifier of each image (default: its row).
    max_points : int, default=800
        Images drawn at most: the same ones at every checkpoint.

    Returns
    -------
    plotly.graph_objects.Figure
        Hover shows the image, its class, the closest category direction at
        that checkpoint (largest cosine: the category model's choice under
        equal priors; the network's prediction at each checkpoint is not
        kept) and the strength ``||g||``. Every checkpoint shares the axis
        range of the widest one. Each point's ``ids`` entry is its row in
        the frames' ``g``.
    """
    go = _go()
    checked = check_frames(frames)
    n, n_classes = len(checked[0][1]), len(checked[0][2])
    labels = int_array(labels, "labels", n, low=0, high=n_classes)
    ids = per_item(image_ids, n, np.arange(n), "image_ids")
    colors = [to_hex(c) for c in class_colors(n_classes)]
    names = _labels_text(classes, n_classes)
    keep = subsample(n, max_points)
    lim = max(reach(g) for _, g, _ in checked)
    traces, owner = [], []
    for fi, (_, g, mu) in enumerate(checked):
        frame_traces = _frame_traces(
            go, g, mu, keep, labels, ids, names, colors, lim * 1.1, fi == 0
        )
        traces += frame_traces
        owner += [fi] * len(frame_traces)
    fig = go.Figure(data=traces)
    title = "Sample features during training (one shared frame), iteration "
    iterations = [str(it) for it, _, _ in checked]
    steps = _slider_steps(iterations, owner, len(traces), title, iterations)
    fig.update_layout(
        **_layout(f"{title}{iterations[0]}", lim * 1.2),
        sliders=[_slider(steps, "iteration: ")],
    )
    _make_room_for_slider(fig)
    return fig


# ---------------------------------------------------------------------------
# the same regions before and after an attack
# ---------------------------------------------------------------------------
_CLEAN, _ATTACKED = "#4C72B0", "#C44E52"


def _pair_inputs(embeddings, n_images, grid):
    """Checked layers of clean/attacked region pairs: per layer the image
    rows, regions, clean and attacked points (d' >= 2) and ``fooled``."""
    if not embeddings:
        raise ValueError("embeddings must hold at least one layer")
    n_regions = None if grid is None else int(grid[0]) * int(grid[1])
    out, dim = {}, None
    for layer, pairs in embeddings.items():
        if not isinstance(pairs, Mapping):
            raise ValueError(
                f"embeddings[{layer!r}] must be a dict with image, region, clean, "
                f"adversarial and fooled; got {type(pairs).__name__}"
            )
        missing = {"image", "region", "clean", "adversarial", "fooled"} - set(pairs)
        if missing:
            raise ValueError(f"embeddings[{layer!r}] lacks {sorted(missing)}")
        clean, adv = (
            real_array(
                pairs[key], f"embeddings[{layer!r}][{key!r}]", ndim=2, allow_empty=True
            )
            for key in ("clean", "adversarial")
        )
        if clean.shape != adv.shape or clean.shape[1] < 2:
            raise ValueError(
                f"embeddings[{layer!r}]: clean {clean.shape} and adversarial "
                f"{adv.shape} must be the same (m, d') with d' >= 2"
            )
        if dim is not None and clean.shape[1] != dim:
            raise ValueError(
                f"embeddings[{layer!r}] has d' = {clean.shape[1]}, other layers {dim}"
            )
        dim, m = clean.shape[1], len(clean)
        image = int_array(
            pairs["image"], f"embeddings[{layer!r}]['image']", m, low=0, high=n_images
        )
        region = int_array(
            pairs["region"],
            f"embeddings[{layer!r}]['region']",
            m,
            low=0,
            high=n_regions,
        )
        fooled = np.asarray(pairs["fooled"])
        if fooled.shape != (m,) or fooled.dtype.kind not in "bi":
            raise ValueError(
                f"embeddings[{layer!r}]['fooled'] must be {m} booleans; got "
                f"{fooled.dtype} of shape {fooled.shape}"
            )
        out[str(layer)] = (image, region, clean, adv, fooled.astype(bool))
    if not any(len(pairs[0]) for pairs in out.values()):
        raise ValueError("embeddings holds no region pair to draw")
    return out, dim


def _pair_lines(go, clean, adv, sel, name, color, visible):
    """One line per pair in ``sel``: clean point, attacked point, then a NaN
    row that breaks the line (a typed array: a third of the bytes of a
    list broken by None)."""
    seg = np.full((3 * len(sel), 3), np.nan, dtype=clean.dtype)
    seg[0::3], seg[1::3] = clean[sel], adv[sel]
    return go.Scatter3d(
        x=seg[:, 0],
        y=seg[:, 1],
        z=seg[:, 2],
        mode="lines",
        name=name,
        legendgroup=name,
        line={"color": color, "width": 2},
        connectgaps=False,
        hoverinfo="skip",
        visible=visible,
    )


def _pair_traces(go, pairs, ids, grid, keep, visible):
    """One layer: lines from each clean region to its attacked self (fooled
    images darker), then the clean and the attacked points."""
    image, region, clean, adv, fooled = pairs
    width = None if grid is None else int(grid[1])
    where = [
        f"({k // width}, {k % width})" if width else str(int(k)) for k in region[keep]
    ]
    about = [
        [str(i if ids is None else ids[i]), w, "yes" if f else "no"]
        for i, w, f in zip(image[keep], where, fooled[keep])
    ]
    keys = _image_keys(image[keep], region[keep])
    # one dtype for both ends (float32 unless a magnitude needs float64)
    both = _xyz(np.concatenate([clean[keep], adv[keep]]))
    c_xyz, a_xyz = both[: len(keep)], both[len(keep) :]
    every = np.arange(len(keep))
    traces = [
        _pair_lines(
            go,
            c_xyz,
            a_xyz,
            every[fooled[keep]],
            "moved (image fooled)",
            "#555555",
            visible,
        ),
        _pair_lines(
            go,
            c_xyz,
            a_xyz,
            every[~fooled[keep]],
            "moved (not fooled)",
            "#cccccc",
            visible,
        ),
    ]
    for pts, name, color, symbol in (
        (clean[keep], "clean", _CLEAN, "circle"),
        (adv[keep], "attacked", _ATTACKED, "diamond"),
    ):
        strength = safe_norm(pts, dim=1)
        custom = [[*a, _hover_number(s)] for a, s in zip(about, strength)]
        traces.append(
            _points_trace(
                go,
                _xyz(pts),
                every,
                name=name,
                group=name,
                color=color,
                custom=custom,
                hover=(
                    "image %{customdata[0]}, region %{customdata[1]}<br>"
                    f"{name}<br>attack fooled the image: %{{customdata[2]}}<br>"
                    "strength ||h||: %{customdata[3]:.4g}<extra></extra>"
                ),
                marker={"symbol": symbol, "size": 3},
                visible=visible,
                ids=keys,
            )
        )
    return traces


@validate_params(
    {
        "embeddings": [Mapping],
        "directions": ["array-like"],
        "classes": [None, "array-like"],
        "image_ids": [None, "array-like"],
        "n_images": [None, Interval(Integral, 1, None, closed="left")],
        "grid": [None, "array-like"],
        "max_points": _POSITIVE,
    },
    prefer_skip_nested_validation=True,
)
def plot_adversarial_regions_interactive(
    embeddings: Mapping[str, Mapping],
    directions,
    *,
    classes=None,
    image_ids=None,
    n_images: int | None = None,
    grid=None,
    max_points: int = 400,
):
    """The same regions before and after an adversarial attack, each pair
    joined by a line, one layer at a time on a slider.

    Parameters
    ----------
    embeddings : dict of layer -> dict
        Per layer: ``image`` (m,) image rows, ``region`` (m,) region indices
        (row-major on ``grid``), ``clean`` and ``adversarial`` (m, d') the
        region embedded from the clean and from the attacked image (with the
        clean images' mapping, on one scale), ``fooled`` (m,) whether the
        attack changed that image's predicted class.
    directions : array-like of shape (C, d')
        Category directions, drawn as lines for orientation.
    classes : sequence of str, optional
        Class names (of the direction lines).
    image_ids : array-like, optional
        Identifier of each image row shown on hover (default: the row).
    n_images : int, optional
        Number of image rows (``image`` must be below it; default: the
        length of ``image_ids``, else unchecked).
    grid : tuple (H, W), optional
        The region grid, to show a region as (row, column).
    max_points : int, default=400
        Pairs drawn per layer at most (a fixed random subsample beyond).

    Returns
    -------
    plotly.graph_objects.Figure
        Per layer two line traces (pairs of fooled images dark grey, of
        images the attack did not fool light grey), the clean points (blue
        circles) and the attacked ones (red diamonds); the slider shows one
        layer. Hover shows the image, region, side and whether the attack
        fooled the image. Each point's ``ids`` entry is ``"i:k"``: region
        ``k`` of image row ``i``.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.plotting import plot_adversarial_regions_interactive
    >>> rng = np.random.default_rng(0)
    >>> pairs = {"image": np.array([0, 0, 1]), "region": np.array([0, 3, 1]),
    ...          "clean": rng.normal(size=(3, 3)),
    ...          "adversarial": rng.normal(size=(3, 3)),
    ...          "fooled": np.array([True, True, False])}
    >>> fig = plot_adversarial_regions_interactive(
    ...     {"conv_53": pairs}, np.eye(3), grid=(2, 2), n_images=2)
    >>> len(fig.data) >= 4
    True
    """
    go = _go()
    if image_ids is not None and n_images is None:
        n_images = len(image_ids)
    ids = per_item(image_ids, n_images, None, "image_ids")
    if grid is not None:
        grid = tuple(int(v) for v in np.asarray(grid).ravel())
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"grid must be (H, W) of positive ints; got {grid}")
    layers, dim = _pair_inputs(embeddings, n_images, grid)
    mu = directions_for(directions, dim)
    names = _labels_text(classes, len(mu))
    colors = [to_hex(c) for c in class_colors(len(mu))]
    lim = max(
        (reach(np.concatenate([c, a])) for _, _, c, a, _ in layers.values() if len(c)),
        default=1.0,
    )
    per_layer = [
        _pair_traces(
            go, pairs, ids, grid, subsample(len(pairs[0]), max_points), li == 0
        )
        for li, pairs in enumerate(layers.values())
    ]
    title = "The same regions clean (circles) and attacked (diamonds) at "
    names_ = list(layers)
    return _layer_slider_figure(
        go,
        per_layer,
        names_,
        (mu, colors, names, lim),
        title,
        html.escape(names_[0], quote=False),
    )


def _layer_slider_figure(go, per_layer, layers, directions, title, first):
    """One figure of every layer's traces (a layer slider shows one layer at
    a time) and the category directions, titled ``title + first`` at the
    start."""
    mu, colors, names, lim = directions
    traces, owner = [], []
    for li, layer_traces in enumerate(per_layer):
        traces += layer_traces
        owner += [li] * len(layer_traces)
    traces += _direction_traces(go, mu, colors, names, lim)
    fig = go.Figure(data=traces)
    escaped = [html.escape(layer, quote=False) for layer in layers]
    steps = _slider_steps(escaped, owner, len(traces), title, escaped)
    fig.update_layout(
        **_layout(title + first, lim * 1.05), sliders=[_slider(steps, "layer: ")]
    )
    _make_room_for_slider(fig)
    return fig
