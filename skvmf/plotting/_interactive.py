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
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import to_hex

from ._analysis import _class_colors, _names

__all__ = [
    "plot_layer_regions_interactive",
    "plot_sample_evolution_interactive",
    "plot_sample_space_interactive",
]

_HEIGHT = 600


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
    return [html.escape(name, quote=False) for name in _names(classes, n)]


def _xyz(points) -> np.ndarray:
    """First three coordinates (zero-padded when d' = 2), as float32: the
    figure JSON carries them base64-encoded, half the bytes of float64."""
    points = np.asarray(points, dtype=float)
    if points.shape[1] < 3:
        points = np.hstack([points, np.zeros((len(points), 3 - points.shape[1]))])
    return points[:, :3].astype(np.float32)


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
    """One line per category from the origin to ``length * mu_c``, named at
    its end."""
    traces = []
    # the WebGL scene writes its text as is: unescape what the svg parts need
    raw = [html.unescape(name) for name in names]
    for c, mu in enumerate(_xyz(directions)):
        end = mu * length
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
        xs += [*(radius * np.cos(u) * np.sin(phi)), None]
        ys += [*(radius * np.sin(u) * np.sin(phi)), None]
        zs += [*(np.full(len(u), radius * np.cos(phi))), None]
    for theta in u[:-1:2]:  # meridians
        xs += [*(radius * np.cos(theta) * np.sin(v)), None]
        ys += [*(radius * np.sin(theta) * np.sin(v)), None]
        zs += [*(radius * np.cos(v)), None]
    # 4 digits are plenty for a guide and keep the page small
    xs, ys, zs = (
        [None if v is None else round(float(v), 4) for v in a] for a in (xs, ys, zs)
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


def _subsample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """The same subsample as the matplotlib figures draw."""
    if n <= max_points:
        return np.arange(n)
    return np.random.default_rng(seed).choice(n, max_points, replace=False)


def _per_image(value, n, default, name):
    if value is None:
        return default
    value = np.asarray(value)
    if len(value) != n:
        raise ValueError(
            f"{name} must have one entry per image ({n}); got {len(value)}"
        )
    return value


def _class_name(names, index) -> str:
    index = int(index)
    return names[index] if 0 <= index < len(names) else "?"


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
        Integer class index of each image (colour).
    directions : array-like of shape (C, d')
        Unit category directions, drawn as lines as long as the largest g.
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
        predicted class and the strength ``||g||``.
    """
    go = _go()
    g = np.asarray(g, dtype=float)
    if g.ndim != 2 or g.shape[1] < 2:
        raise ValueError(f"g must have shape (N, d') with d' >= 2; got {g.shape}")
    n = len(g)
    labels = _per_image(np.asarray(labels), n, None, "labels").astype(int)
    predicted = _per_image(predicted, n, None, "predicted")
    ids = _per_image(image_ids, n, np.arange(n), "image_ids")
    mu = np.asarray(directions, dtype=float)
    colors = [to_hex(c) for c in _class_colors(len(mu))]
    names = _labels_text(classes, len(mu))
    keep = _subsample(n, max_points)
    strength = np.linalg.norm(g, axis=1)
    radius = float(strength[keep].max()) if n else 1.0
    xyz = _xyz(g)
    traces = [_sphere_trace(go, radius)]
    for c in range(len(mu)):
        sel = keep[labels[keep] == c]
        custom = [
            [
                str(ids[i]),
                "-" if predicted is None else _class_name(names, predicted[i]),
                round(float(strength[i]), 4),
            ]
            for i in sel
        ]
        traces.append(
            go.Scatter3d(
                x=xyz[sel, 0],
                y=xyz[sel, 1],
                z=xyz[sel, 2],
                mode="markers",
                name=names[c],
                legendgroup=f"class{c}",
                marker={"size": 3, "color": colors[c], "opacity": 0.75},
                customdata=custom,
                hovertemplate=(
                    "image %{customdata[0]}<br>"
                    f"class: {names[c]}<br>"
                    "predicted: %{customdata[1]}<br>"
                    "strength ||g||: %{customdata[2]:.3f}<extra></extra>"
                ),
            )
        )
    traces += _direction_traces(go, mu, colors, names, radius * 1.1)
    fig = go.Figure(data=traces)
    fig.update_layout(**_layout(title, radius * 1.2))
    return fig


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
        The region grid, to show a region as (row, column).
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
        point (and of which category).
    """
    go = _go()
    layers = list(h)
    if not layers:
        raise ValueError("h has no layers to plot")
    mu = np.asarray(directions, dtype=float)
    colors = [to_hex(c) for c in _class_colors(len(mu))]
    names = _labels_text(classes, len(mu))
    n, r = np.asarray(h[layers[0]]).shape[:2]
    rng = np.random.default_rng(random_state)
    keep = rng.choice(n * r, min(max_points, n * r), replace=False)
    image, region = keep // r, keep % r
    labels = _per_image(labels, n, None, "labels")
    predicted = _per_image(predicted, n, None, "predicted")
    ids = _per_image(image_ids, n, np.arange(n), "image_ids")
    if grid is not None:
        width = int(grid[1])
        where = [f"({k // width}, {k % width})" for k in region]
    else:
        where = [str(k) for k in region]
    # the per-region text that does not change with the layer
    about = [
        [
            str(ids[i]),
            where[j],
            "-" if labels is None else _class_name(names, labels[i]),
            "-" if predicted is None else _class_name(names, predicted[i]),
        ]
        for j, i in enumerate(image)
    ]
    drawn = {
        layer: np.asarray(h[layer], dtype=float).reshape(n * r, -1)[keep]
        for layer in layers
    }
    reach = max(float(np.linalg.norm(v, axis=1).max()) for v in drawn.values())
    head = (
        "image %{customdata[0]}, region %{customdata[1]}<br>"
        "class: %{customdata[2]}<br>predicted: %{customdata[3]}<br>"
        "strength ||h||: %{customdata[4]:.3f}<br>"
    )
    traces, owner = [], []
    for li, layer in enumerate(layers):
        pts = drawn[layer]
        strength = np.linalg.norm(pts, axis=1)
        xyz = _xyz(pts)
        if region_labels is not None and layer in region_labels:
            lab = np.asarray(region_labels[layer]).reshape(-1)[keep].astype(int)
        else:
            lab = np.full(len(pts), -1)
        groups = [(-1, "not a knowledge point", "#b3b3b3", 2, 0.35)]
        groups += [(c, names[c], colors[c], 3, 0.8) for c in range(len(mu))]
        for c, name, color, size, opacity in groups:
            sel = np.flatnonzero(lab == c if c >= 0 else lab < 0)
            point = "no" if c < 0 else f"yes, points to {names[c]}"
            traces.append(
                go.Scatter3d(
                    x=xyz[sel, 0],
                    y=xyz[sel, 1],
                    z=xyz[sel, 2],
                    mode="markers",
                    name=name,
                    legendgroup="none" if c < 0 else f"class{c}",
                    marker={"size": size, "color": color, "opacity": opacity},
                    customdata=[[*about[j], round(float(strength[j]), 4)] for j in sel],
                    hovertemplate=head + f"knowledge point: {point}<extra></extra>",
                    visible=li == 0,
                )
            )
            owner.append(li)
    n_points = len(traces)
    traces += _direction_traces(go, mu, colors, names, reach)
    fig = go.Figure(data=traces)
    title = "Regional features h (coloured: knowledge points) at "
    steps = [
        {
            "label": html.escape(layer, quote=False),
            "method": "update",
            "args": [
                {
                    "visible": [o == li for o in owner]
                    + [True] * (len(traces) - n_points)
                },
                {"title.text": title + html.escape(layer, quote=False)},
            ],
        }
        for li, layer in enumerate(layers)
    ]
    fig.update_layout(
        **_layout(title + layers[0], reach * 1.05), sliders=[_slider(steps, "layer: ")]
    )
    _make_room_for_slider(fig)
    return fig


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
        True class index of each image.
    classes : sequence of str, optional
    image_ids : array-like of shape (N,), optional
        Identifier of each image (default: its row).
    max_points : int, default=800
        Images drawn at most: the same ones at every checkpoint.

    Returns
    -------
    plotly.graph_objects.Figure
        Hover shows the image, its class, the closest category direction at
        that checkpoint (the category model's choice under equal priors; the
        network's prediction at each checkpoint is not kept) and the
        strength ``||g||``. Every checkpoint shares the axis range of the
        widest one.
    """
    go = _go()
    if not frames:
        raise ValueError("frames is empty")
    first = np.asarray(frames[0]["g"])
    n = len(first)
    labels = _per_image(np.asarray(labels), n, None, "labels").astype(int)
    ids = _per_image(image_ids, n, np.arange(n), "image_ids")
    mu0 = np.asarray(frames[0]["directions"], dtype=float)
    colors = [to_hex(c) for c in _class_colors(len(mu0))]
    names = _labels_text(classes, len(mu0))
    keep = _subsample(n, max_points)
    reach = max(float(np.linalg.norm(np.asarray(f["g"]), axis=1).max()) for f in frames)
    traces, owner = [], []
    for fi, frame in enumerate(frames):
        g = np.asarray(frame["g"], dtype=float)
        mu = np.asarray(frame["directions"], dtype=float)
        if len(g) != n:
            raise ValueError("every frame needs the same images")
        strength = np.linalg.norm(g, axis=1)
        closest = (g @ mu.T).argmax(1)
        xyz = _xyz(g)
        for c in range(len(mu)):
            sel = keep[labels[keep] == c]
            traces.append(
                go.Scatter3d(
                    x=xyz[sel, 0],
                    y=xyz[sel, 1],
                    z=xyz[sel, 2],
                    mode="markers",
                    name=names[c],
                    legendgroup=f"class{c}",
                    marker={"size": 3, "color": colors[c], "opacity": 0.75},
                    customdata=[
                        [str(ids[i]), names[closest[i]], round(float(strength[i]), 4)]
                        for i in sel
                    ],
                    hovertemplate=(
                        "image %{customdata[0]}<br>"
                        f"class: {names[c]}<br>"
                        "closest direction: %{customdata[1]}<br>"
                        "strength ||g||: %{customdata[2]:.3f}<extra></extra>"
                    ),
                    visible=fi == 0,
                )
            )
            owner.append(fi)
        for trace in _direction_traces(go, mu, colors, names, reach * 1.1, fi == 0):
            traces.append(trace)
            owner.append(fi)
    fig = go.Figure(data=traces)
    title = "Sample features during training (one shared frame), iteration "
    steps = [
        {
            "label": str(frame["iteration"]),
            "method": "update",
            "args": [
                {"visible": [o == fi for o in owner]},
                {"title.text": f"{title}{frame['iteration']}"},
            ],
        }
        for fi, frame in enumerate(frames)
    ]
    fig.update_layout(
        **_layout(f"{title}{frames[0]['iteration']}", reach * 1.2),
        sliders=[_slider(steps, "iteration: ")],
    )
    _make_room_for_slider(fig)
    return fig


# ---------------------------------------------------------------------------
# embedding in a self-contained HTML page
# ---------------------------------------------------------------------------
def _plotly_bundle() -> str:
    """The plotly.js bundle shipped inside the installed plotly package."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _script_safe(text: str) -> str:
    # inside <script>, "</script" or "<!--" in a string (a class or layer
    # name) would end or confuse the element; in JSON every "<" lies in a
    # string, where the escape \u003c means the same character
    return text.replace("<", "\\u003c")


def _figure_script(fig, element_id: str) -> str:
    """``<script>`` that draws ``fig`` into the element ``element_id``."""
    config = {"displaylogo": False, "responsive": True}
    spec = _script_safe(fig.to_json())
    return (
        f"<script>(function(){{var f={spec};"
        f'Plotly.newPlot("{element_id}",f.data,f.layout,'
        f"{_script_safe(_json(config))});}})();</script>"
    )


def _json(value) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))
