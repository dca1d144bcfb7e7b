import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from skvmf.plotting import (  # noqa: E402
    plot_adversarial_change,
    plot_distillation,
    plot_emergence,
    plot_knowledge_counts,
    plot_knowledge_masks,
    plot_layer_regions,
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
