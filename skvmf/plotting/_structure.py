"""Figures of structure: category dendrograms, spanning trees, prediction trees
and feature embeddings. Every function returns its matplotlib Figure."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_params,
)
from sklearn.utils.validation import check_is_fitted

from ._common import display_unit, real_array, unit_note

_ESTIMATOR = [HasMethods(["fit"])]
_COLOR = [str, "array-like"]

__all__ = ["plot_dendrogram", "plot_embedding", "plot_mst", "plot_prediction_tree"]


def _figure_and_axes(ax, figsize, projection=None):
    import matplotlib.pyplot as plt

    if ax is not None:
        if projection == "3d" and getattr(ax, "name", "") != "3d":
            raise ValueError(
                "a 3-D embedding needs 3-D axes (projection='3d'); "
                f"got axes of kind {getattr(ax, 'name', type(ax).__name__)!r}"
            )
        return ax.figure, ax
    fig = plt.figure(figsize=figsize)
    ax = fig.add_subplot(projection=projection)
    return fig, ax


def _leaf_names(hierarchy, labels):
    """Class names of a hierarchy, or the ``labels`` given (one per class)."""
    names = list(hierarchy.class_names_)
    if labels is None:
        return names
    labels = [str(x) for x in labels]
    if len(labels) != len(names):
        raise ValueError(
            f"labels needs one name per class ({len(names)}); got {len(labels)}"
        )
    return labels


def classical_mds(D, n_components=2):
    """Classical (Torgerson) multidimensional scaling of a distance matrix.

    Double-centre the squared distances, ``B = -J D^2 J / 2`` with
    ``J = I - 11^T / n``, and take the top eigenvectors scaled by the square
    roots of their (non-negative part of the) eigenvalues. For Euclidean
    distances this recovers the points up to a rigid motion.

    Parameters
    ----------
    D : array-like of shape (n, n)
        Symmetric distances.
    n_components : int, default=2
        Output dimension.

    Returns
    -------
    Y : ndarray of shape (n, n_components)
        Coordinates, centred, with signs fixed so each column's largest
        absolute entry is positive.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.plotting._structure import classical_mds
    >>> P = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    >>> D = np.linalg.norm(P[:, None] - P[None], axis=-1)
    >>> Y = classical_mds(D)
    >>> np.allclose(np.linalg.norm(Y[:, None] - Y[None], axis=-1), D)
    True
    """
    D = real_array(D, "D")
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"D must be a square distance matrix; got shape {D.shape}")
    # D**2 overflows above 1e154: work in units of the largest distance
    scale = float(np.max(np.abs(D))) or 1.0
    n = D.shape[0]
    J = np.eye(n) - 1.0 / n
    B = -0.5 * J @ ((D / scale) ** 2) @ J
    B = 0.5 * (B + B.T)
    w, V = np.linalg.eigh(B)
    order = np.argsort(w)[::-1][:n_components]
    w, V = np.clip(w[order], 0.0, None), V[:, order]
    Y = V * np.sqrt(w)
    if Y.shape[1] < n_components:  # fewer points than dimensions
        Y = np.hstack([Y, np.zeros((n, n_components - Y.shape[1]))])
    flip = np.sign(Y[np.argmax(np.abs(Y), axis=0), np.arange(Y.shape[1])])
    return Y * np.where(flip == 0, 1.0, flip) * scale


@validate_params(
    {
        "hierarchy": _ESTIMATOR,
        "labels": [None, "array-like"],
        "orientation": [StrOptions({"top", "bottom", "left", "right"})],
        "color_threshold": [None, Interval(Real, 0, None, closed="left")],
        "ax": [None, Axes],
        "figsize": ["array-like"],
        "title": [None, str],
    },
    prefer_skip_nested_validation=True,
)
def plot_dendrogram(
    hierarchy,
    *,
    labels=None,
    orientation="top",
    color_threshold=None,
    ax=None,
    figsize=(8, 4.5),
    title="Category hierarchy",
    **kwargs,
):
    """Dendrogram of a fitted :class:`~skvmf.hierarchy.CategoryHierarchy`.

    Parameters
    ----------
    hierarchy : CategoryHierarchy
        A fitted hierarchy (its ``linkage_`` is drawn).
    labels : sequence of str, default=None
        Leaf names in ``classes_`` order; default ``hierarchy.class_names_``.
    orientation : {"top", "bottom", "left", "right"}, default="top"
        Where the root is drawn.
    color_threshold : float, default=None
        Passed to :func:`scipy.cluster.hierarchy.dendrogram`: clusters below
        this height get their own colour.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure otherwise.
    figsize : tuple, default=(8, 4.5)
        Size of a new figure.
    title : str or None, default="Category hierarchy"
        Axes title.
    **kwargs
        More arguments of :func:`scipy.cluster.hierarchy.dendrogram`.

    Returns
    -------
    fig : matplotlib Figure
        The figure; the dendrogram's dict (leaf order ``"ivl"`` ...) is kept as
        ``fig.skvmf_dendrogram``.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from skvmf.hierarchy import CategoryHierarchy
    >>> from skvmf.plotting._structure import plot_dendrogram
    >>> X = np.array([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0]])
    >>> h = CategoryHierarchy(class_names=["cat", "dog", "car"]).fit(X, [0, 1, 2])
    >>> fig = plot_dendrogram(h)
    >>> fig.skvmf_dendrogram["ivl"]
    ['car', 'cat', 'dog']
    >>> plt.close(fig)
    """
    from scipy.cluster.hierarchy import dendrogram

    check_is_fitted(hierarchy, ["linkage_", "class_names_"])
    names = _leaf_names(hierarchy, labels)
    fig, ax = _figure_and_axes(ax, figsize)
    result = dendrogram(
        hierarchy.linkage_,
        labels=names,
        orientation=orientation,
        color_threshold=color_threshold,
        ax=ax,
        **kwargs,
    )
    value_label = "distance (1 - cos) / 2"
    if orientation in ("top", "bottom"):
        ax.set_ylabel(value_label)
    else:
        ax.set_xlabel(value_label)
    if title:
        ax.set_title(title)
    fig.skvmf_dendrogram = result
    return fig


def _draw_graph(ax, pos, edges, names, node_color, edge_color):
    """Edges as one line collection under the nodes, each node named."""
    from matplotlib.collections import LineCollection

    segments = [(pos[a], pos[b]) for a, b, _ in edges]
    ax.add_collection(
        LineCollection(segments, colors=edge_color, linewidths=1.5, zorder=1)
    )
    ax.scatter(pos[:, 0], pos[:, 1], s=60, c=node_color, zorder=2)
    for k, name in enumerate(names):
        ax.annotate(
            name,
            pos[k],
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=9,
            zorder=3,
        )


def _edge_weights(ax, pos, edges, color):
    """Each edge's weight written at its midpoint."""
    for a, b, w in edges:
        mid = 0.5 * (pos[a] + pos[b])
        ax.text(mid[0], mid[1], f"{w:.3g}", fontsize=7, color=color, ha="center")


@validate_params(
    {
        "hierarchy": _ESTIMATOR,
        "labels": [None, "array-like"],
        "show_weights": ["boolean"],
        "ax": [None, Axes],
        "figsize": ["array-like"],
        "title": [None, str],
        "node_color": _COLOR,
        "edge_color": _COLOR,
    },
    prefer_skip_nested_validation=True,
)
def plot_mst(
    hierarchy,
    *,
    labels=None,
    show_weights=True,
    ax=None,
    figsize=(6, 6),
    title="Minimum spanning tree of categories",
    node_color="tab:blue",
    edge_color="0.4",
):
    """Minimum spanning tree of the category graph, drawn as a graph.

    Nodes are placed by classical MDS of ``sqrt(distances_)``: for class
    directions ``o_a``, ``sqrt((1 - cos) / 2) = |o_a - o_b| / 2`` is a
    Euclidean distance, so the layout is the best planar view of the unit
    class means (their 2-D PCA).

    Parameters
    ----------
    hierarchy : CategoryHierarchy
        A fitted hierarchy (``mst_edges_`` and ``distances_`` are used).
    labels : sequence of str, default=None
        Node names in ``classes_`` order; default ``hierarchy.class_names_``.
    show_weights : bool, default=True
        Write each edge's weight at its midpoint.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure otherwise.
    figsize : tuple, default=(6, 6)
        Size of a new figure.
    title : str or None, default="Minimum spanning tree of categories"
        Axes title.
    node_color, edge_color : color, default="tab:blue", "0.4"
        Colours of nodes and edges.

    Returns
    -------
    fig : matplotlib Figure
        The figure; node positions are kept as ``fig.skvmf_positions``
        (shape ``(n_classes, 2)``).

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from skvmf.hierarchy import CategoryHierarchy
    >>> from skvmf.plotting._structure import plot_mst
    >>> X = np.array([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0]])
    >>> fig = plot_mst(CategoryHierarchy().fit(X, [0, 1, 2]))
    >>> fig.skvmf_positions.shape
    (3, 2)
    >>> plt.close(fig)
    """
    check_is_fitted(hierarchy, ["mst_edges_", "distances_", "class_names_"])
    names = _leaf_names(hierarchy, labels)
    distances = real_array(hierarchy.distances_, "hierarchy.distances_")
    pos = classical_mds(np.sqrt(np.clip(distances, 0.0, None)), n_components=2)
    fig, ax = _figure_and_axes(ax, figsize)
    _draw_graph(ax, pos, hierarchy.mst_edges_, names, node_color, edge_color)
    if show_weights:
        _edge_weights(ax, pos, hierarchy.mst_edges_, edge_color)
    ax.set_aspect("equal", adjustable="datalim")
    ax.autoscale_view()
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    fig.skvmf_positions = pos
    return fig


def _tree_layout(tree):
    """x by depth-first leaf order (root children in order), y = node depth."""
    nodes = tree.nodes_
    x = np.zeros(len(nodes))
    next_leaf = 0
    for root_child in tree.root_children_:
        # iterative post-order: children before parents, no recursion limit
        stack = [(root_child, False)]
        while stack:
            node, done = stack.pop()
            children = nodes[node].children
            if not children:
                x[node] = next_leaf
                next_leaf += 1
            elif done:
                x[node] = np.mean([x[c] for c in children])
            else:
                stack.append((node, True))
                stack.extend((c, False) for c in reversed(children))
    y = np.array([float(n.depth) for n in nodes])
    return x, y


def _path_nodes(tree, path) -> list[int]:
    """The node ids of ``path`` (a PredictionPath or ids), checked to be a
    chain of parent and child nodes starting at a child of the root."""
    nodes = tree.nodes_
    ids = path.nodes if hasattr(path, "nodes") else ([] if path is None else path)
    path_nodes = [int(k) for k in ids]
    for a, b in zip(path_nodes[:-1], path_nodes[1:]):
        if not 0 <= a < len(nodes) or b not in nodes[a].children:
            raise ValueError(
                f"path is not a chain of parent and child nodes: {path_nodes}"
            )
    if path_nodes and path_nodes[0] not in tree.root_children_:
        raise ValueError(
            f"path must start at a child of the root {tree.root_children_}; "
            f"got {path_nodes[0]}"
        )
    return path_nodes


def _tree_positions(tree) -> np.ndarray:
    """(x, y) of every node, and of the root last (so that node -1 is the
    root): centred above the root's children, one level above the top."""
    x, y = _tree_layout(tree)
    root = (float(np.mean(x[tree.root_children_])), float(y.max()) + 1.0)
    return np.vstack([np.column_stack([x, y]), root])


def _path_edges(path_nodes) -> list[tuple[int, int]]:
    """The edges of a path, from the root (-1) down."""
    if not path_nodes:
        return []
    return [(-1, path_nodes[0]), *zip(path_nodes[:-1], path_nodes[1:])]


def _draw_tree_edges(ax, tree, pos, highlighted, path_color):
    """Every parent-child link as an elbow (down, across, down); the
    highlighted ones on top in ``path_color``. ``pos[k]`` is the (x, y) of
    node ``k``, ``pos[-1]`` the root's."""
    from matplotlib.collections import LineCollection

    def elbow(a, b):
        (xa, ya), (xb, yb) = pos[a], pos[b]
        return [(xa, ya), (xb, ya), (xb, yb)]

    edges = [(-1, c) for c in tree.root_children_]
    edges += [(n.id, c) for n in tree.nodes_ for c in n.children]
    hl = set(highlighted)
    plain = [elbow(a, b) for a, b in edges if (a, b) not in hl]
    ax.add_collection(LineCollection(plain, colors="0.5", linewidths=1.0))
    if highlighted:
        ax.add_collection(
            LineCollection(
                [elbow(a, b) for a, b in highlighted], colors=path_color, linewidths=2.5
            )
        )


def _label_merges(ax, nodes, pos, path_nodes, path_color):
    """A dot at every merge, labelled with its critical filter."""
    x, y = pos[:-1, 0], pos[:-1, 1]
    internal = [n.id for n in nodes if n.children]
    ax.scatter(x[internal], y[internal], s=18, c="0.2", zorder=3)
    for k in internal:
        ax.annotate(
            f"f{nodes[k].critical_filter}",
            (x[k], y[k]),
            xytext=(3, 3),
            textcoords="offset points",
            fontsize=7,
            color=path_color if k in path_nodes else "0.1",
        )


def _leaf_axis(ax, nodes, x, show_leaf_labels):
    """Image indices under the leaves (by default up to 60 leaves)."""
    leaves = sorted((n.id for n in nodes if not n.children), key=lambda k: x[k])
    if show_leaf_labels is None:
        show_leaf_labels = len(leaves) <= 60
    ax.set_xticks(x[leaves] if show_leaf_labels else [])
    if show_leaf_labels:
        ax.set_xticklabels([str(k) for k in leaves], fontsize=7)
        ax.set_xlabel("image")


@validate_params(
    {
        "tree": _ESTIMATOR,
        "path": "no_validation",  # a PredictionPath or node ids, checked
        "show_leaf_labels": [None, "boolean"],
        "ax": [None, Axes],
        "figsize": [None, "array-like"],
        "title": [None, str],
        "path_color": _COLOR,
    },
    prefer_skip_nested_validation=True,
)
def plot_prediction_tree(
    tree,
    *,
    path=None,
    show_leaf_labels=None,
    ax=None,
    figsize=None,
    title="Filter-wise prediction tree",
    path_color="tab:red",
):
    """A fitted :class:`~skvmf.prediction_tree.FilterPredictionTree` with its filters.

    Leaves (training images) lie at the bottom in depth-first order; each
    merge sits at its height above the leaves and is labelled with its
    critical filter (``f12``). The root is drawn on top, joined to the root's
    children. A path from :meth:`FilterPredictionTree.path` is highlighted.

    Parameters
    ----------
    tree : FilterPredictionTree
        A fitted tree.
    path : PredictionPath or sequence of int, default=None
        Node ids to highlight, from a root child downwards.
    show_leaf_labels : bool, default=None
        Write the image index under each leaf; default when there are at most
        60 leaves.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure otherwise.
    figsize : tuple, default=None
        Size of a new figure; grows with the number of leaves by default.
    title : str or None, default="Filter-wise prediction tree"
        Axes title.
    path_color : color, default="tab:red"
        Colour of the highlighted path.

    Returns
    -------
    fig : matplotlib Figure
        The figure; node coordinates are kept as ``fig.skvmf_positions``
        (shape ``(n_nodes + 1, 2)``, the root last) and the highlighted edges
        as ``fig.skvmf_path_edges``.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from skvmf.hierarchy import FilterPredictionTree
    >>> from skvmf.plotting._structure import plot_prediction_tree
    >>> maps = np.array([[2.0, 1.0, 0.0, 1.0],
    ...                  [2.0, 1.0, 1.0, 0.0],
    ...                  [0.0, 1.0, 2.0, 2.0]])
    >>> tree = FilterPredictionTree().fit(maps)
    >>> fig = plot_prediction_tree(tree, path=tree.path(maps[0]))
    >>> fig.skvmf_path_edges
    [(-1, 4), (4, 3), (3, 0)]
    >>> plt.close(fig)
    """
    check_is_fitted(tree, ["nodes_", "root_children_"])
    nodes = tree.nodes_
    path_nodes = _path_nodes(tree, path)
    pos = _tree_positions(tree)
    n_leaves = sum(1 for n in nodes if not n.children)
    if figsize is None:
        figsize = (min(max(6.0, 0.25 * n_leaves), 30.0), 5.0)
    fig, ax = _figure_and_axes(ax, figsize)
    highlighted = _path_edges(path_nodes)
    _draw_tree_edges(ax, tree, pos, highlighted, path_color)
    _label_merges(ax, nodes, pos, path_nodes, path_color)
    ax.scatter([pos[-1, 0]], [pos[-1, 1]], s=40, c="k", marker="s", zorder=3)
    _leaf_axis(ax, nodes, pos[:-1, 0], show_leaf_labels)
    ax.set_ylabel("merge level")
    ax.set_xlim(-1, max(n_leaves, 1))
    ax.set_ylim(-0.5, pos[-1, 1] + 0.5)
    if title:
        ax.set_title(title)
    fig.skvmf_positions = pos
    fig.skvmf_path_edges = highlighted
    return fig


def _embedding_inputs(Z, labels):
    """Checked points (N, 2) or (N, 3) and labels (N,) (zeros when None);
    NaN or complex labels are refused (a NaN class would draw nothing)."""
    Z = real_array(Z, "Z", allow_empty=True)
    if Z.ndim != 2 or Z.shape[1] not in (2, 3):
        raise ValueError(f"Z must have shape (N, 2) or (N, 3); got {Z.shape}")
    if len(Z) == 0:
        raise ValueError("Z is empty: no point to draw")
    if labels is None:
        return Z, np.zeros(len(Z), dtype=int)
    labels = np.asarray(labels)
    if labels.shape != (len(Z),):
        raise ValueError(
            f"labels must have shape ({len(Z)},) like Z's rows; got {labels.shape}"
        )
    if labels.dtype.kind == "c":
        raise ValueError(f"labels must not be complex; got dtype {labels.dtype}")
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
        raise ValueError("labels contains NaN or infinite values")
    return Z, labels


def _legend_names(classes, class_names) -> list[str]:
    """Legend names: the classes, renamed by a dict or a sequence."""
    if class_names is None:
        return [str(c) for c in classes]
    if isinstance(class_names, Mapping):
        return [str(class_names.get(c, c)) for c in classes.tolist()]
    class_names = list(class_names)
    if len(class_names) != classes.size:
        raise ValueError(
            f"class_names needs one name per class ({classes.size}); "
            f"got {len(class_names)}"
        )
    return [str(n) for n in class_names]


def _class_colormap(cmap, n_classes):
    """The colour of each class: a qualitative map in steps (``tab20`` for
    the default above 10 classes), a continuous one evenly sampled."""
    import matplotlib as mpl

    if not isinstance(cmap, Colormap):
        if cmap not in mpl.colormaps:
            raise ValueError(f"cmap {cmap!r} is not a matplotlib colormap")
        cmap = mpl.colormaps["tab20" if n_classes > 10 and cmap == "tab10" else cmap]
    n_colors = getattr(cmap, "N", 256)
    return [
        cmap(k % n_colors if n_colors < 256 else k / max(n_classes - 1, 1))
        for k in range(n_classes)
    ]


@validate_params(
    {
        "Z": ["array-like"],
        "labels": [None, "array-like"],
        "class_names": [None, Mapping, "array-like"],
        "ax": [None, Axes],
        "figsize": ["array-like"],
        "title": [None, str],
        "marker_size": [Interval(Real, 0, None, closed="left")],
        "alpha": [Interval(Real, 0, 1, closed="both")],
        "legend": ["boolean"],
        "cmap": [str, Colormap],
    },
    prefer_skip_nested_validation=True,
)
def plot_embedding(
    Z,
    labels=None,
    *,
    class_names=None,
    ax=None,
    figsize=(6, 5),
    title=None,
    marker_size=12.0,
    alpha=0.8,
    legend=True,
    cmap="tab10",
):
    """Scatter plot of a 2-D or 3-D embedding, coloured by class.

    Parameters
    ----------
    Z : array-like of shape (N, 2) or (N, 3)
        Embedded points (e.g. from :func:`skvmf.embedding.embed_features`).
    labels : array-like of shape (N,), default=None
        Class of every point; one colour and legend entry per class (sorted).
    class_names : mapping or sequence, default=None
        Legend names: a dict label -> name, or a sequence indexed by the
        position of the label among the sorted classes.
    ax : matplotlib Axes, default=None
        Axes to draw on (3-D axes for 3-D points); a new figure otherwise.
    figsize : tuple, default=(6, 5)
        Size of a new figure.
    title : str, default=None
        Axes title.
    marker_size, alpha : float, default=12.0, 0.8
        Marker area and opacity.
    legend : bool, default=True
        Draw a legend (when ``labels`` are given).
    cmap : str, default="tab10"
        Qualitative colormap; ``"tab20"`` is used above 10 classes.

    Returns
    -------
    fig : matplotlib Figure
        The figure with one scatter collection per class. Coordinates beyond
        1e-100..1e100 are drawn in units of their power of ten (named in the
        title, kept as ``fig.skvmf_unit``; 1 otherwise).

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from skvmf.plotting._structure import plot_embedding
    >>> Z = np.random.default_rng(0).normal(size=(30, 2))
    >>> fig = plot_embedding(Z, np.repeat([0, 1, 2], 10), class_names=["a", "b", "c"])
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['a', 'b', 'c']
    >>> plt.close(fig)
    """
    Z, labels_ = _embedding_inputs(Z, labels)
    unit = display_unit(float(np.max(np.abs(Z))))
    Z = Z / unit
    legend = legend and labels is not None
    classes = np.unique(labels_)
    names = _legend_names(classes, class_names)
    three_d = Z.shape[1] == 3
    fig, ax = _figure_and_axes(ax, figsize, projection="3d" if three_d else None)
    colors = _class_colormap(cmap, classes.size)
    for c, name, color in zip(classes, names, colors):
        sel = labels_ == c
        coords = [Z[sel, j] for j in range(Z.shape[1])]
        ax.scatter(*coords, s=marker_size, alpha=alpha, color=color, label=name)
    if legend:
        ax.legend(markerscale=2.0, fontsize=8, loc="best")
    if title or unit != 1.0:
        ax.set_title((title or "") + unit_note(unit))
    fig.skvmf_unit = unit
    return fig
