"""Figures of category hierarchies, spanning trees, prediction trees and
embeddings: structure of what is drawn, checked against the fitted objects."""

import warnings

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import dendrogram
from scipy.spatial.distance import pdist
from sklearn.decomposition import PCA

from skvmf.hierarchy import CategoryHierarchy, FilterPredictionTree
from skvmf.plotting._structure import (
    classical_mds,
    plot_dendrogram,
    plot_embedding,
    plot_mst,
    plot_prediction_tree,
)

NAMES = ["plane", "car", "bird", "cat", "deer", "dog"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def hierarchy(rng):
    X = rng.normal(size=(60, 5))
    y = np.repeat(np.arange(6), 10)
    X += 3 * rng.normal(size=(6, 5))[y]
    return CategoryHierarchy(class_names=NAMES).fit(X, y)


@pytest.fixture
def tree(rng):
    return FilterPredictionTree().fit(np.abs(rng.normal(size=(9, 6, 4))))


def _segments(ax):
    return [
        s
        for c in ax.collections
        if isinstance(c, LineCollection)
        for s in c.get_segments()
    ]


def test_dendrogram_draws_linkage_with_class_names(hierarchy):
    fig = plot_dendrogram(hierarchy)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    ref = dendrogram(hierarchy.linkage_, labels=NAMES, no_plot=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ref["ivl"]
    assert fig.skvmf_dendrogram["ivl"] == ref["ivl"]
    # one U-shaped link per merge, its top at the merge height
    links = _segments(ax)
    assert len(links) == len(NAMES) - 1
    tops = sorted(float(np.max(seg[:, 1])) for seg in links)
    np.testing.assert_allclose(tops, np.sort(hierarchy.linkage_[:, 2]))
    assert "cos" in ax.get_ylabel()


def test_dendrogram_labels_orientation_and_given_axes(hierarchy):
    fig0, ax = plt.subplots()
    labels = [n.upper() for n in NAMES]
    fig = plot_dendrogram(hierarchy, labels=labels, orientation="left", ax=ax)
    assert fig is fig0
    assert {t.get_text() for t in ax.get_yticklabels()} == set(labels)
    with pytest.raises(ValueError, match="one name per class"):
        plot_dendrogram(hierarchy, labels=["a"])
    with pytest.raises(ValueError, match="fitted"):
        plot_dendrogram(CategoryHierarchy())


def test_classical_mds_recovers_euclidean_configurations(rng):
    P = rng.normal(size=(10, 3))
    D = np.linalg.norm(P[:, None] - P[None], axis=-1)
    np.testing.assert_allclose(
        pdist(classical_mds(D, n_components=3)), pdist(P), atol=1e-9
    )
    # in 2-D it is PCA: the same pairwise distances as the top-2 PCA scores
    np.testing.assert_allclose(
        pdist(classical_mds(D)), pdist(PCA(n_components=2).fit_transform(P)), atol=1e-9
    )
    with pytest.raises(ValueError, match="square"):
        classical_mds(np.ones((2, 3)))


def test_mst_plot_edges_and_positions(hierarchy):
    fig = plot_mst(hierarchy)
    ax = fig.axes[0]
    pos = fig.skvmf_positions
    # positions: the 2-D PCA of the unit class means (MDS of sqrt distances)
    U = hierarchy.class_means_ / np.linalg.norm(hierarchy.class_means_, axis=1)[:, None]
    np.testing.assert_allclose(
        pdist(pos), pdist(PCA(n_components=2).fit_transform(U / 2)), atol=1e-9
    )
    segs = _segments(ax)
    assert len(segs) == len(hierarchy.mst_edges_) == len(NAMES) - 1
    for seg, (a, b, _) in zip(segs, hierarchy.mst_edges_):
        np.testing.assert_allclose(seg, [pos[a], pos[b]])
    texts = [t.get_text() for t in ax.texts]
    assert set(NAMES) <= set(texts)
    assert sum(t not in NAMES for t in texts) == len(NAMES) - 1  # weights
    fig2 = plot_mst(hierarchy, show_weights=False)
    assert len(fig2.axes[0].texts) == len(NAMES)


def test_prediction_tree_layout_and_labels(tree):
    fig = plot_prediction_tree(tree)
    ax = fig.axes[0]
    pos = fig.skvmf_positions
    nodes = tree.nodes_
    assert pos.shape == (len(nodes) + 1, 2)
    for node in nodes:
        if node.children:
            # a merge sits above its children, centred between them
            assert all(pos[node.id, 1] > pos[c, 1] for c in node.children)
            assert pos[node.id, 0] == pytest.approx(
                np.mean(pos[list(node.children), 0])
            )
        else:
            assert pos[node.id, 1] == 0
    leaves_x = sorted(pos[[n.id for n in nodes if not n.children], 0])
    assert leaves_x == list(range(9))
    assert pos[-1, 1] > pos[:-1, 1].max()  # root on top
    # one edge per parent-child link, plus root links
    n_edges = sum(len(n.children) for n in nodes) + len(tree.root_children_)
    assert len(_segments(ax)) == n_edges
    labels = sorted(t.get_text() for t in ax.texts)
    assert labels == sorted(f"f{n.critical_filter}" for n in nodes if n.children)
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        str(k) for k in sorted(range(9), key=lambda k: pos[k, 0])
    ]


def test_prediction_tree_highlights_path(tree, rng):
    path = tree.path(np.abs(rng.normal(size=(6, 4))))
    fig = plot_prediction_tree(tree, path=path, path_color="tab:red")
    ax = fig.axes[0]
    expected = [(-1, path.nodes[0]), *zip(path.nodes[:-1], path.nodes[1:])]
    assert fig.skvmf_path_edges == expected
    red = [
        c
        for c in ax.collections
        if isinstance(c, LineCollection)
        and np.allclose(c.get_colors()[0], matplotlib.colors.to_rgba("tab:red"))
    ]
    assert len(red) == 1 and len(red[0].get_segments()) == len(expected)
    # the highlighted elbow of the last edge ends at the leaf
    pos = fig.skvmf_positions
    np.testing.assert_allclose(red[0].get_segments()[-1][-1], pos[path.leaf])
    with pytest.raises(ValueError, match="chain of parent and child"):
        plot_prediction_tree(tree, path=[path.nodes[0], 10**6])
    with pytest.raises(ValueError, match="must start at a child of the root"):
        plot_prediction_tree(tree, path=[0])


def test_embedding_2d_one_collection_per_class(rng):
    Z = rng.normal(size=(30, 2))
    y = np.repeat(["b", "a", "c"], 10)
    fig = plot_embedding(Z, y, class_names={"a": "alpha", "c": "gamma"}, title="t")
    ax = fig.axes[0]
    cols = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(cols) == 3
    for col, cls in zip(cols, ["a", "b", "c"]):
        np.testing.assert_allclose(col.get_offsets(), Z[y == cls])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "alpha",
        "b",
        "gamma",
    ]
    colors = {tuple(np.round(c.get_facecolor()[0][:3], 6)) for c in cols}
    assert len(colors) == 3 and ax.get_title() == "t"


def test_embedding_3d_and_many_classes(rng):
    Z = rng.normal(size=(60, 3))
    y = np.arange(60) % 12
    fig = plot_embedding(Z, y)
    ax = fig.axes[0]
    assert ax.name == "3d"
    cols = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(cols) == 12
    colors = {tuple(np.round(c.get_facecolor()[0][:3], 6)) for c in cols}
    assert len(colors) == 12  # tab20 above 10 classes
    fig2 = plot_embedding(Z[:, :2])
    assert fig2.axes[0].get_legend() is None


def test_embedding_bad_input(rng):
    with pytest.raises(ValueError, match=r"\(N, 2\) or \(N, 3\); got \(5, 4\)"):
        plot_embedding(rng.normal(size=(5, 4)))
    with pytest.raises(ValueError, match=r"labels must have shape \(5,\)"):
        plot_embedding(rng.normal(size=(5, 2)), [0, 1])
    with pytest.raises(ValueError, match="one name per class"):
        plot_embedding(rng.normal(size=(4, 2)), [0, 0, 1, 1], class_names=["a"])
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="3-D axes"):
        plot_embedding(rng.normal(size=(4, 3)), ax=ax)
    with pytest.raises(ValueError, match="NaN"):
        plot_embedding(np.full((3, 2), np.nan))


@settings(max_examples=20, deadline=None)
@given(st.integers(-300, 300))
def test_classical_mds_is_scale_equivariant(exponent):
    # D**2 of 1e200 overflows: MDS works in units of the largest distance,
    # so scaling the distances scales the configuration, at any magnitude
    P = np.random.default_rng(7).normal(size=(6, 3))
    D = np.linalg.norm(P[:, None] - P[None], axis=-1)
    scale = 10.0**exponent
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        Y = classical_mds(D * scale, n_components=3)
    np.testing.assert_allclose(Y / scale, classical_mds(D, n_components=3), atol=1e-9)


@pytest.mark.parametrize("scale", [1e-300, 1e300])
def test_embedding_extreme_magnitudes_in_named_units(rng, scale):
    Z = rng.normal(size=(10, 2))
    fig = plot_embedding(Z * scale, np.arange(10) % 2)
    ax = fig.axes[0]
    assert fig.skvmf_unit == scale and "units of" in ax.get_title()
    drawn = np.vstack([c.get_offsets() for c in ax.collections])
    np.testing.assert_allclose(np.sort(drawn, axis=0), np.sort(Z, axis=0))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda h, t: plot_dendrogram(h, orientation="up"), "orientation"),
        (lambda h, t: plot_dendrogram("h"), "hierarchy"),
        (lambda h, t: plot_mst(h, show_weights="yes"), "show_weights"),
        (lambda h, t: plot_mst(CategoryHierarchy()), "not fitted"),
        (lambda h, t: plot_prediction_tree(FilterPredictionTree()), "not fitted"),
        (lambda h, t: plot_prediction_tree(t, show_leaf_labels=3), "show_leaf"),
        (lambda h, t: plot_embedding(np.ones((3, 2)) + 1j), "Z must be real"),
        (lambda h, t: plot_embedding(np.ones((0, 2))), "Z is empty"),
        (
            lambda h, t: plot_embedding(np.ones((3, 2)), [0.0, np.nan, 1.0]),
            "labels contains NaN",
        ),
        (lambda h, t: plot_embedding(np.ones((3, 2)), [1j, 1, 2]), "complex"),
        (lambda h, t: plot_embedding(np.ones((3, 2)), alpha=1.5), "alpha"),
        (lambda h, t: plot_embedding(np.ones((3, 2)), cmap="nope"), "colormap"),
        (lambda h, t: classical_mds([[0.0, np.inf], [1.0, 0.0]]), "D contains NaN"),
    ],
)
def test_bad_input_is_a_clear_value_error(hierarchy, tree, make, match):
    with pytest.raises(ValueError, match=match):
        make(hierarchy, tree)
