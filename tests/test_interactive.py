"""Interactive 3-D views (plotly): points, hover text, sliders, escaping."""

import json
import re

import numpy as np
import pytest
from matplotlib.colors import to_hex

from skvmf._utils.figures import figure_script as _figure_script
from skvmf.plotting import (
    plot_layer_regions_interactive,
    plot_sample_evolution_interactive,
    plot_sample_space_interactive,
)
from skvmf.plotting._common import class_colors as _class_colors

go = pytest.importorskip("plotly.graph_objects")

CLASSES = ["cat", "<b>dog</b>", "a&b"]
ESCAPED = ["cat", "&lt;b&gt;dog&lt;/b&gt;", "a&amp;b"]


def _unit(rng, c, d=3):
    mu = rng.normal(size=(c, d))
    return mu / np.linalg.norm(mu, axis=1, keepdims=True)


def _points(fig):
    """Traces that hold points (they carry hover data)."""
    return [t for t in fig.data if t.customdata is not None]


def _xyz(trace):
    return np.stack([np.asarray(trace[k], float) for k in "xyz"], axis=1)


def test_sample_space_points_and_hover():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(40, 4))
    labels = rng.integers(0, 3, 40)
    predicted = rng.integers(0, 3, 40)
    ids = np.arange(100, 140)
    mu = _unit(rng, 3, 4)
    fig = plot_sample_space_interactive(
        g, labels, mu, classes=CLASSES, predicted=predicted, image_ids=ids
    )
    assert isinstance(fig, go.Figure)
    points = _points(fig)
    assert [t.name for t in points] == ESCAPED
    assert sum(len(t.x) for t in points) == 40
    colours = [to_hex(c) for c in _class_colors(3)]
    for c, trace in enumerate(points):
        assert trace.marker.color == colours[c]  # as in the matplotlib figure
        assert f"class: {ESCAPED[c]}" in trace.hovertemplate
        for field in ("image %{customdata[0]}", "predicted:", "strength"):
            assert field in trace.hovertemplate
        for (image, pred, strength), xyz in zip(trace.customdata, _xyz(trace)):
            k = int(image) - 100
            assert labels[k] == c
            assert pred == ESCAPED[predicted[k]]
            assert strength == pytest.approx(np.linalg.norm(g[k]), abs=1e-4)
            # the first three coordinates are drawn
            np.testing.assert_allclose(xyz, g[k, :3], rtol=1e-6)
    # the direction lines reach past the largest g, named by the raw class
    # name (the WebGL scene shows text as is)
    lines = [t for t in fig.data if t.mode == "lines+text"]
    assert [t.text[1] for t in lines] == CLASSES
    reach = np.linalg.norm(g, axis=1).max()
    for t, direction in zip(lines, mu):
        np.testing.assert_allclose(_xyz(t)[1], 1.1 * reach * direction[:3], rtol=1e-5)
    assert fig.layout.scene.aspectmode == "cube"


def test_sample_space_two_dimensions_and_subsample():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(50, 2))
    fig = plot_sample_space_interactive(
        g, np.zeros(50, int), _unit(rng, 1, 2), max_points=20
    )
    (trace,) = _points(fig)
    assert len(trace.x) == 20
    assert np.all(np.asarray(trace.z) == 0)  # padded third coordinate
    assert all(row[1] == "-" for row in trace.customdata)  # no prediction given


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"g": np.zeros(5)}, "g must have shape"),
        ({"predicted": np.zeros(3, int)}, "predicted must have one entry"),
        ({"image_ids": np.zeros(3)}, "image_ids must have one entry"),
    ],
)
def test_sample_space_bad_input(kwargs, match):
    args = {"g": np.ones((4, 3)), "labels": np.zeros(4, int)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        plot_sample_space_interactive(
            args.pop("g"), args.pop("labels"), np.eye(3), **args
        )


def _regions(seed=0, n=12, grid=(3, 4), layers=("low", "mid", "high")):
    rng = np.random.default_rng(seed)
    r = grid[0] * grid[1]
    h = {layer: rng.normal(size=(n, r, 3)) * (k + 1) for k, layer in enumerate(layers)}
    region_labels = {layer: rng.integers(-1, 3, size=(n, r)) for layer in layers}
    labels = rng.integers(0, 3, n)
    predicted = rng.integers(0, 3, n)
    return h, region_labels, labels, predicted, _unit(rng, 3)


def test_layer_regions_slider_shows_one_layer_at_a_time():
    h, region_labels, labels, predicted, mu = _regions()
    fig = plot_layer_regions_interactive(
        h,
        mu,
        region_labels=region_labels,
        classes=CLASSES,
        labels=labels,
        predicted=predicted,
        grid=(3, 4),
        max_points=50,
    )
    (slider,) = fig.layout.sliders
    assert [s.label for s in slider.steps] == list(h)
    n_points = 4 * len(h)  # grey + one trace per class, per layer
    assert len(fig.data) == n_points + 3  # + the three direction lines
    initial = [t.visible in (True, None) for t in fig.data]
    assert slider.steps[0].args[0]["visible"] == initial
    drawn_sets = []
    for li, (step, layer) in enumerate(zip(slider.steps, h)):
        visible = step.args[0]["visible"]
        assert visible[n_points:] == [True] * 3  # directions always shown
        shown = [t for t, v in zip(fig.data[:n_points], visible) if v]
        assert len(shown) == 4
        assert step.args[1]["title.text"].endswith(layer)
        keys = set()
        for trace in shown:
            for row, xyz in zip(trace.customdata, _xyz(trace)):
                image, where, label, pred, strength = row
                i = int(image)
                r0, c0 = (int(v) for v in where.strip("()").split(","))
                region = r0 * 4 + c0
                keys.add((i, region))
                np.testing.assert_allclose(xyz, h[layer][i, region], rtol=1e-6)
                assert strength == pytest.approx(
                    np.linalg.norm(h[layer][i, region]), abs=1e-4
                )
                assert label == ESCAPED[labels[i]] and pred == ESCAPED[predicted[i]]
                category = region_labels[layer][i, region]
                if trace.name == "not a knowledge point":
                    assert category < 0
                    assert "knowledge point: no" in trace.hovertemplate
                else:
                    assert trace.name == ESCAPED[category]
                    assert (
                        f"knowledge point: yes, points to {ESCAPED[category]}"
                        in trace.hovertemplate
                    )
        assert len(keys) == 50
        drawn_sets.append(keys)
        # every layer's traces are hidden at the start except the first
        assert all(t.visible == (li == 0) for t in shown)
    # the same regions at every layer (forward propagation of the same cells)
    assert drawn_sets[0] == drawn_sets[1] == drawn_sets[2]
    # one axis range for all layers: the largest region fits
    reach = max(np.linalg.norm(v.reshape(-1, 3), axis=1).max() for v in h.values())
    assert fig.layout.scene.xaxis.range[1] <= 1.05 * reach + 1e-9


def test_layer_regions_without_labels_is_grey():
    h, *_, mu = _regions(n=4)
    fig = plot_layer_regions_interactive(h, mu)
    grey = [t for t in _points(fig) if t.name == "not a knowledge point"]
    assert sum(len(t.x) for t in grey) == 3 * 4 * 12
    assert all(row[2] == "-" and row[1].isdigit() for t in grey for row in t.customdata)
    with pytest.raises(ValueError, match="no layers"):
        plot_layer_regions_interactive({}, mu)


def test_sample_evolution_checkpoint_slider():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 30)
    frames = [
        {
            "iteration": it,
            "g": rng.normal(size=(30, 3)) * s,
            "directions": _unit(rng, 3),
        }
        for it, s in ((0, 0.1), (50, 1.0), (100, 3.0))
    ]
    fig = plot_sample_evolution_interactive(
        frames, labels, classes=CLASSES, image_ids=np.arange(30) + 7
    )
    (slider,) = fig.layout.sliders
    assert [s.label for s in slider.steps] == ["0", "50", "100"]
    per_frame = len(fig.data) // 3
    assert per_frame == 6  # a trace and a direction line per class
    for step, frame in zip(slider.steps, frames):
        shown = [t for t, v in zip(fig.data, step.args[0]["visible"]) if v]
        assert len(shown) == per_frame
        assert step.args[1]["title.text"].endswith(f"iteration {frame['iteration']}")
        for trace in shown:
            if trace.customdata is None:
                continue
            for (image, closest, strength), xyz in zip(trace.customdata, _xyz(trace)):
                k = int(image) - 7
                np.testing.assert_allclose(xyz, frame["g"][k], rtol=1e-6)
                best = int(np.argmax(frame["directions"] @ frame["g"][k]))
                assert closest == ESCAPED[best]
                assert strength == pytest.approx(
                    np.linalg.norm(frame["g"][k]), abs=1e-4
                )
    # one range for every checkpoint: the widest frame fits
    reach = max(np.linalg.norm(f["g"], axis=1).max() for f in frames)
    assert fig.layout.scene.xaxis.range[1] == pytest.approx(1.2 * reach, rel=1e-6)
    with pytest.raises(ValueError, match="frames is empty"):
        plot_sample_evolution_interactive([], labels)


def test_figure_script_cannot_close_its_element():
    rng = np.random.default_rng(3)
    names = ["</script><script>alert(1)</script>", "<!--", "ok"]
    fig = plot_sample_space_interactive(
        rng.normal(size=(9, 3)), np.arange(9) % 3, _unit(rng, 3), classes=names
    )
    script = _figure_script(fig, "plot3d-x")
    assert script.startswith("<script>") and script.endswith("</script>")
    inner = script[len("<script>") : -len("</script>")]
    assert "<" not in inner  # not even "<!--" or "</script"
    spec = re.fullmatch(r"\(function\(\)\{var f=(\{.*\});Plotly.*", inner, re.S)
    data = json.loads(spec.group(1))["data"]
    # the raw name survives the escape in the WebGL label text
    assert names[0] in [t.get("text", ["", ""])[1] for t in data]


@pytest.mark.parametrize("scale", [1e-300, 1e300])
def test_sample_space_keeps_extreme_magnitudes(scale):
    # float32 would turn 1e300 into inf and 1e-300 into 0: such points are
    # kept in float64, and the hover strength to six significant digits
    rng = np.random.default_rng(4)
    g = rng.normal(size=(12, 3))
    fig = plot_sample_space_interactive(g * scale, np.arange(12) % 3, _unit(rng, 3))
    for trace in _points(fig):
        for (image, _, strength), xyz in zip(trace.customdata, _xyz(trace)):
            k = int(image)
            np.testing.assert_allclose(xyz / scale, g[k], rtol=1e-12)
            assert strength / scale == pytest.approx(np.linalg.norm(g[k]), rel=1e-5)
    reach = np.linalg.norm(g, axis=1).max()
    assert fig.layout.scene.xaxis.range[1] / scale == pytest.approx(1.2 * reach)


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda g, y, mu: plot_sample_space_interactive(g, y + 1, mu),
            "labels must lie in",
        ),
        (
            lambda g, y, mu: plot_sample_space_interactive(g, y, mu, predicted=y - 1),
            "predicted must lie in",
        ),
        (
            lambda g, y, mu: plot_sample_space_interactive(g * np.nan, y, mu),
            "g contains NaN",
        ),
        (
            lambda g, y, mu: plot_sample_space_interactive(g + 0j, y, mu),
            "g must be real",
        ),
        (
            lambda g, y, mu: plot_sample_space_interactive(g, y, mu, max_points=-1),
            "max_points",
        ),
        (
            lambda g, y, mu: plot_layer_regions_interactive(
                {"a": g.reshape(3, 3, 3)}, mu, grid=(2, 2)
            ),
            "grid",
        ),
        (
            lambda g, y, mu: plot_sample_evolution_interactive(
                [
                    {"iteration": 0, "g": g, "directions": mu},
                    {"iteration": 1, "g": g * np.inf, "directions": mu},
                ],
                y,
            ),
            r"frames\[1\]\['g'\]",
        ),
    ],
)
def test_bad_input_is_a_clear_value_error(make, match):
    rng = np.random.default_rng(5)
    g, y, mu = rng.normal(size=(9, 3)), np.arange(9) % 3, _unit(rng, 3)
    with pytest.raises(ValueError, match=match):
        make(g, y, mu)
