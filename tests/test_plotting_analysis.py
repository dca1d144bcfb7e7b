import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from skvmf.plotting import (  # noqa: E402
    plot_adversarial_change,
    plot_distillation,
    plot_emergence,
    plot_findings,
    plot_knowledge_counts,
    plot_knowledge_masks,
    plot_layer_regions,
    plot_loss_curves,
    plot_sample_evolution,
    plot_sample_space,
)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _space(n=60, c=3, seed=0):
    rng = np.random.default_rng(seed)
    mu = np.linalg.qr(rng.normal(size=(3, 3)))[0][:c]
    y = rng.integers(0, c, n)
    g = mu[y] * rng.uniform(0.5, 3, (n, 1)) + 0.1 * rng.normal(size=(n, 3))
    return g, y, mu


@pytest.mark.parametrize("view", ["3d", "2d"])
def test_sample_space_draws_one_scatter_per_class(view):
    g, y, mu = _space()
    fig = plot_sample_space(g, y, mu, classes=["a", "b", "c"], view=view)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.collections) >= 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c"]


def test_sample_space_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        plot_sample_space(np.zeros(5), np.zeros(5), np.eye(3))
    with pytest.raises(ValueError, match="view"):
        plot_sample_space(np.ones((4, 3)), np.zeros(4, int), np.eye(3), view="4d")


def test_layer_regions_one_panel_per_layer():
    rng = np.random.default_rng(1)
    h = {name: rng.normal(size=(5, 4, 3)) for name in ("l1", "l2", "l3")}
    labels = {name: rng.integers(-1, 3, (5, 4)) for name in h}
    fig = plot_layer_regions(h, np.eye(3), region_labels=labels)
    assert [ax.get_title() for ax in fig.axes] == ["l1", "l2", "l3"]


def test_knowledge_masks_draw_one_patch_per_point():
    rng = np.random.default_rng(2)
    images = rng.normal(size=(3, 3, 8, 8))
    masks = np.zeros((3, 4), bool)
    masks[0, [0, 3]] = True
    masks[2, 1] = True
    cls = np.zeros((3, 4), int)
    cls[0, 3] = 1
    fig = plot_knowledge_masks(images, masks, cls, (2, 2), labels=[0, 1, 2])
    assert [len(ax.patches) for ax in fig.axes[:3]] == [2, 0, 1]
    solid = [p.get_linestyle() for p in fig.axes[0].patches]
    assert solid == ["-", "--"]  # region 0 is reliable (label 0), region 3 is not
    with pytest.raises(ValueError, match="grid"):
        plot_knowledge_masks(images, masks, cls, (3, 3))


def test_knowledge_counts_bars_match_the_table():
    table = [
        {"layer": "a", "mean_count": 2.0, "mean_reliable": 1.0, "reliable_ratio": 0.5},
        {"layer": "b", "mean_count": 5.0, "mean_reliable": 4.0, "reliable_ratio": 0.8},
    ]
    fig = plot_knowledge_counts(table)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [2.0, 5.0, 1.0, 4.0]


def test_emergence_one_line_per_layer_sorted_by_iteration():
    table = [
        {
            "iteration": it,
            "layer": layer,
            "mean_count": it / 10 + k,
            "mean_reliable": it / 20,
        }
        for k, layer in enumerate(["a", "b"])
        for it in (100, 0, 50)
    ]
    fig = plot_emergence(table)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    np.testing.assert_array_equal(lines[0].get_xdata(), [0, 50, 100])
    np.testing.assert_allclose(lines[1].get_ydata(), [1, 6, 11])


def test_adversarial_and_distillation_figures():
    adv = [
        {
            "layer": "a",
            "mean_one_minus_cos": 0.01,
            "mean_strength_change": 0.02,
            "points_clean": 3.0,
            "points_adversarial": 2.5,
        },
        {
            "layer": "b",
            "mean_one_minus_cos": 0.3,
            "mean_strength_change": 0.4,
            "points_clean": 6.0,
            "points_adversarial": 4.0,
        },
    ]
    fig = plot_adversarial_change(adv)
    assert len(fig.axes) == 2
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [0.01, 0.3])
    dist = [
        {"model": m, "layer": layer, "mean_count": v, "mean_reliable": v / 2}
        for m, v0 in (("teacher", 4.0), ("student", 2.0))
        for layer, v in (("a", v0), ("b", v0 + 1))
    ]
    fig = plot_distillation(dist)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [4.0, 5.0, 2.0, 3.0]


# ---------------------------------------------------------------------------
# bad input: a clear error naming the argument, never a silent wrong figure
# ---------------------------------------------------------------------------
def _masks_args(**change):
    args = {
        "images": np.zeros((2, 3, 4, 4)),
        "masks": np.zeros((2, 4), bool),
        "region_classes": np.zeros((2, 4), int),
        "grid": (2, 2),
    }
    args.update(change)
    return args


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda g, y, mu: plot_sample_space(np.where(g > 1, np.nan, g), y, mu), "g "),
        (lambda g, y, mu: plot_sample_space(g + 1j, y, mu), "g must be real"),
        (lambda g, y, mu: plot_sample_space(g, y + 1, mu), r"labels must lie"),
        (lambda g, y, mu: plot_sample_space(g[:0], y[:0], mu), "g is empty"),
        (lambda g, y, mu: plot_sample_space(g, y[:-1], mu), "labels must have"),
        (lambda g, y, mu: plot_sample_space(g, y, np.eye(4)), "directions"),
        (lambda g, y, mu: plot_sample_space(g, y, mu, max_points=0), "max_points"),
        (lambda g, y, mu: plot_sample_space(g, y, mu, ax="a"), "'ax'"),
        (
            lambda g, y, mu: plot_layer_regions(
                {"a": g.reshape(6, 10, 3), "b": g.reshape(10, 6, 3)}, mu
            ),
            r"h\['b'\]",
        ),
        (
            lambda g, y, mu: plot_layer_regions(
                {"a": g.reshape(6, 10, 3)},
                mu,
                region_labels={"a": np.full((6, 10), 3)},
            ),
            r"region_labels\['a'\] must lie",
        ),
        (
            lambda g, y, mu: plot_sample_evolution(
                [{"iteration": 0, "g": g, "directions": mu}, {"iteration": 1}], y
            ),
            r"frames\[1\]",
        ),
        (
            lambda *_: plot_knowledge_masks(
                **_masks_args(images=np.zeros((2, 4, 4, 3)))
            ),
            "channels last",
        ),
        (lambda *_: plot_knowledge_masks(**_masks_args(grid=(2, 0))), "grid"),
        (
            lambda *_: plot_knowledge_masks(**_masks_args(masks=np.full((2, 4), 0.5))),
            "masks must be boolean",
        ),
        (
            lambda *_: plot_knowledge_masks(
                **_masks_args(
                    masks=np.ones((2, 4), bool), region_classes=np.full((2, 4), -1)
                )
            ),
            "region_classes",
        ),
        (lambda *_: plot_knowledge_masks(**_masks_args(), std=[1.0, 2.0]), "std"),
        (lambda *_: plot_knowledge_counts([]), "table is empty"),
        (
            lambda *_: plot_knowledge_counts(
                [{"layer": "a", "mean_count": np.nan, "mean_reliable": 1.0}]
            ),
            r"table\[0\]\['mean_count'\] must be finite",
        ),
        (lambda *_: plot_emergence([{"layer": "a", "iteration": 0}]), "mean_count"),
        (lambda *_: plot_findings([{"name": "x", "value": np.inf}]), "value"),
        (
            lambda *_: plot_loss_curves(
                [{"network": "model", "layer": "a", "stage": "s", "curve": [1, np.nan]}]
            ),
            r"curves\[0\]\['curve'\]",
        ),
    ],
)
def test_bad_input_is_a_clear_value_error(make, match):
    g, y, mu = _space()
    with pytest.raises(ValueError, match=match):
        make(g, y, mu)


@pytest.mark.parametrize("scale", [1e-300, 1e-150, 1e150, 1e300])
def test_layer_regions_extreme_magnitudes_keep_their_frame(scale):
    # the axis limits are 1.05 * the largest norm, computed by hand in units
    # of the scale: no overflow to inf, no underflow to a zero-width frame
    rng = np.random.default_rng(3)
    h = {"a": rng.normal(size=(4, 5, 3))}
    expected = 1.05 * np.sqrt((h["a"] ** 2).sum(-1)).max()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fig = plot_layer_regions({"a": h["a"] * scale}, np.eye(3))
    # drawn in units of the scale's power of ten, which the title names
    unit = fig.skvmf_unit
    assert unit == (1.0 if 1e-100 < scale < 1e100 else scale)
    assert fig.axes[0].get_xlim()[1] * unit / scale == pytest.approx(expected, rel=1e-9)
    assert ("units of" in fig._suptitle.get_text()) == (unit != 1.0)


@settings(max_examples=12, deadline=None)
@given(st.integers(-300, 300), st.sampled_from(["2d", "3d"]))
def test_sample_space_is_scale_invariant(exponent, view):
    # the same picture in units of the scale, whatever the magnitude
    g, y, mu = _space(n=20)
    scale = 10.0**exponent
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ref = plot_sample_space(g, y, mu, view=view)
        fig = plot_sample_space(g * scale, y, mu, view=view)
    factor = fig.skvmf_unit / scale  # drawn coordinates -> units of g
    if view == "2d":
        for a, b in zip(ref.axes[0].collections, fig.axes[0].collections):
            np.testing.assert_allclose(b.get_offsets() * factor, a.get_offsets())
    else:
        for a, b in zip(ref.axes[0].collections[1:], fig.axes[0].collections[1:]):
            np.testing.assert_allclose(
                np.asarray(b._offsets3d) * factor, np.asarray(a._offsets3d)
            )
    plt.close("all")
