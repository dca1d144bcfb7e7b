"""Category hierarchies from CNN features (seed 003, Algorithm 1).

One of two clustering views of what a trained network has learned, after
the report *What do CNN neurons learn: Visualization & Clustering* (the
project's seed 003):

* :class:`CategoryHierarchy` clusters the categories. Each category is
  represented by the mean feature of its images; two categories are at
  distance ``(1 - cos) / 2`` (0 for the same direction, 1 for opposite ones).
  The closest two nodes are merged repeatedly under a new node whose distance
  to every other node is the plain mean of its two children's distances
  (WPGMA, scipy's ``method="weighted"``). The merge tree is stored as a
  scipy linkage matrix; the minimum spanning tree of the category graph is
  computed as well.
* :class:`~skvmf.prediction_tree.FilterPredictionTree` (Algorithm 2, in
  :mod:`skvmf.prediction_tree`) clusters the images of one category by their
  filters; it is re-exported here, where it used to live, with
  :func:`~skvmf.prediction_tree.critical_filter` and its node types.

Features are numpy arrays (class-wise feature vectors, or feature maps that
are flattened). They are rescaled by one exact power of two and their norms
taken safely, so scaling them by 1e300 or 1e-200 gives the same hierarchy.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from skvmf._numerics.arrays import (
    power_of_two_scale,
    real_array,
    refuse_complex,
    safe_norm,
)
from skvmf._numerics.ties import first_min
from skvmf.prediction_tree import (
    FilterPredictionTree,
    PredictionPath,
    PredictionTreeNode,
    critical_filter,
)

__all__ = [
    "CategoryHierarchy",
    "FilterPredictionTree",
    "PredictionPath",
    "PredictionTreeNode",
    "cosine_distance_matrix",
    "critical_filter",
]


# --------------------------------------------------------------------------
# shared numerics
# --------------------------------------------------------------------------


@validate_params({"V": ["array-like"]}, prefer_skip_nested_validation=True)
def cosine_distance_matrix(V):
    """Pairwise distance ``(1 - cos) / 2`` between the rows of ``V``.

    Each row is normalised with an overflow- and underflow-safe norm, so the
    result does not depend on the rows' scales (1e-300 to 1e300).

    Parameters
    ----------
    V : array-like of shape (n, D)
        Row vectors; none may be all zero (a zero vector has no direction).

    Returns
    -------
    D : ndarray of shape (n, n)
        Symmetric, in ``[0, 1]``, with an exact zero diagonal.

    Examples
    --------
    >>> from skvmf.hierarchy import cosine_distance_matrix
    >>> cosine_distance_matrix([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    array([[0. , 0.5, 1. ],
           [0.5, 0. , 0.5],
           [1. , 0.5, 0. ]])
    """
    V = real_array(V, "V", np.float64)
    if V.ndim != 2:
        raise ValueError(f"expected a 2-D array of row vectors; got shape {V.shape}")
    if not np.all(np.isfinite(V)):
        raise ValueError("the vectors contain NaN or infinite values")
    # norms rescaled before squaring: rows of 1e300 or 1e-200 keep a direction
    norms = safe_norm(V, dim=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(
            f"rows {zero.tolist()} are all zero: a zero vector has no direction, "
            "so its cosine distance is undefined"
        )
    U = V / norms[:, None]
    cos = np.clip(U @ U.T, -1.0, 1.0)
    D = 0.5 * (1.0 - cos)
    D = 0.5 * (D + D.T)
    np.fill_diagonal(D, 0.0)
    return D


def _lance_williams(method, d_a, d_b, n_a, n_b):
    """Distance from the union of clusters a and b to the other clusters."""
    if method == "weighted":
        return 0.5 * (d_a + d_b)
    if method == "average":
        return (n_a * d_a + n_b * d_b) / (n_a + n_b)
    if method == "single":
        return np.minimum(d_a, d_b)
    return np.maximum(d_a, d_b)  # complete


def _agglomerate(dist, method):
    """Greedy agglomeration of a distance matrix into a scipy linkage matrix.

    Every step merges the closest pair of current nodes; among equal
    distances the pair with the smallest (lower id, higher id) wins. Node
    ``n + k`` is created by step ``k``, as in scipy's convention.
    """
    n = dist.shape[0]
    size = 2 * n - 1
    D = np.full((size, size), np.inf)
    D[:n, :n] = dist
    np.fill_diagonal(D, np.inf)
    counts = np.ones(size)
    active = np.arange(n)
    Z = np.empty((n - 1, 4))
    for step in range(n - 1):
        sub = D[np.ix_(active, active)]
        sub[np.tril_indices(len(active))] = np.inf
        i, j = np.unravel_index(first_min(sub), sub.shape)
        a, b = int(active[i]), int(active[j])  # a < b: ``active`` is sorted
        new = n + step
        Z[step] = (a, b, D[a, b], counts[a] + counts[b])
        others = active[(active != a) & (active != b)]
        d_new = _lance_williams(
            method, D[a, others], D[b, others], counts[a], counts[b]
        )
        D[new, others] = d_new
        D[others, new] = d_new
        counts[new] = counts[a] + counts[b]
        active = np.append(others, new)  # ``new`` is the largest id: stays sorted
    return Z


def _minimum_spanning_tree(D):
    """Prim's algorithm on a dense symmetric distance matrix, O(n^2)."""
    n = D.shape[0]
    in_tree = np.zeros(n, dtype=bool)
    in_tree[0] = True
    best = D[0].astype(np.float64, copy=True)
    parent = np.zeros(n, dtype=np.intp)
    edges = []
    for _ in range(n - 1):
        k = int(np.argmin(np.where(in_tree, np.inf, best)))
        a, b = sorted((int(parent[k]), k))
        edges.append((a, b, float(best[k])))
        in_tree[k] = True
        closer = D[k] < best
        best = np.where(closer, D[k], best)
        parent = np.where(closer, k, parent)
    edges.sort(key=lambda e: (e[2], e[0], e[1]))
    return edges


def _class_means(X, inverse, counts, scale):
    """Mean of the rows of ``X / scale`` per class (float64, one sparse product)."""
    n = len(inverse)
    onehot = sparse.csr_matrix(
        (np.full(n, 1.0 / scale), (inverse, np.arange(n))), shape=(counts.size, n)
    )
    return np.asarray(onehot @ X.astype(np.float64, copy=False)) / counts[:, None]


def _flatten_samples(X):
    """(N, K, H, W) or any (N, ...) array -> (N, prod(...)); 2-D passes through."""
    if sparse.issparse(X):
        return X
    arr = np.asarray(X)
    if arr.ndim > 2:
        return arr.reshape(arr.shape[0], -1)
    return X


_NEWICK_SPECIAL = set(" \t\n()[]':;,")


def _newick_name(name):
    name = str(name)
    if not name or any(ch in _NEWICK_SPECIAL for ch in name):
        return "'" + name.replace("'", "''") + "'"
    return name


# --------------------------------------------------------------------------
# Algorithm 1: category hierarchy
# --------------------------------------------------------------------------


class CategoryHierarchy(BaseEstimator):
    """Hierarchical clustering of categories from their mean features.

    Seed 003's Algorithm 1 in our words: represent every category by the mean
    feature vector of its images, and join every two categories by an edge of
    weight ``(1 - cos(mu_a, mu_b)) / 2``. Then, until a single node is left,
    take the lightest edge between two nodes that have no parent yet, put a
    new parent node above its two ends, and connect the parent to every other
    parentless node with the plain mean of the two children's weights. This is
    WPGMA clustering (scipy's ``linkage(..., method="weighted")``): a merged
    node counts its two children equally, whatever their sizes. The minimum
    spanning tree of the original category graph is computed as well; its
    edges are exactly the merges of single linkage.

    Parameters
    ----------
    linkage : {"weighted", "average", "single", "complete"}, default="weighted"
        How the distance from a new node to the others is formed from its
        children's distances ``d_a``, ``d_b``: ``"weighted"`` (the paper's
        rule) ``(d_a + d_b) / 2``; ``"average"`` the size-weighted mean
        (UPGMA); ``"single"`` the minimum; ``"complete"`` the maximum.
    class_names : array-like of str of shape (n_classes,), default=None
        Display names of the classes in sorted label order (``classes_``);
        by default ``str(label)``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The sorted distinct labels of ``y``.
    class_names_ : list of str
        Display name of every class, aligned with ``classes_``.
    class_counts_ : ndarray of shape (n_classes,)
        Number of training images per class.
    class_means_ : ndarray of shape (n_classes, n_features)
        Mean feature of every class (the paper's representative vector).
    distances_ : ndarray of shape (n_classes, n_classes)
        ``(1 - cos) / 2`` between class means.
    linkage_ : ndarray of shape (n_classes - 1, 4)
        scipy linkage matrix: row ``k`` merges nodes ``linkage_[k, 0] <
        linkage_[k, 1]`` at distance ``linkage_[k, 2]`` into node
        ``n_classes + k``, which holds ``linkage_[k, 3]`` classes. Usable with
        :func:`scipy.cluster.hierarchy.dendrogram`. Among equal distances
        (within 1e-12) the pair with the smallest (lower id, higher id) merges
        first.
    tree_ : dict
        The merge tree as nested dicts (the root), JSON-serialisable. Every
        node has ``"id"`` (linkage numbering), ``"name"`` (the class name for
        a leaf, ``None`` otherwise), ``"height"`` (merge distance; 0 for a
        leaf), ``"size"``, ``"classes"`` (names of the classes below it) and
        ``"children"`` (empty for a leaf).
    mst_edges_ : list of (int, int, float)
        The minimum spanning tree of the category graph, as ``(a, b, weight)``
        with class indices ``a < b`` into ``classes_``, sorted by weight.
    n_features_in_ : int
        Number of features per image after flattening.

    See Also
    --------
    skvmf.prediction_tree.FilterPredictionTree : the filter-wise tree of one
        category (Algorithm 2).
    skvmf.plotting._structure.plot_dendrogram : draw ``linkage_``.

    Notes
    -----
    Every merge scans all pairs of current nodes with numpy, so a fit costs
    O(C^3) for C classes (a fraction of a second for C in the hundreds).
    Features of feature-map shape ``(N, K, H, W)`` are flattened per image.
    A class whose mean feature is the zero vector has no direction: ``fit``
    raises a ``ValueError``.

    References
    ----------
    Seed 003, *What do CNN neurons learn: Visualization & Clustering*,
    Algorithm 1 and Section 3.1. Sokal & Michener (1958) for WPGMA.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.hierarchy import CategoryHierarchy
    >>> X = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0],
    ...               [0.0, 1.0, 0.1], [0.0, 0.0, 1.0]])
    >>> h = CategoryHierarchy(class_names=["cat", "dog", "car", "ship"])
    >>> h = h.fit(X, [0, 1, 2, 3])
    >>> h.linkage_[:, :2].astype(int).tolist()
    [[0, 1], [2, 3], [4, 5]]
    >>> h.to_newick(precision=3)
    '((cat:0.00306,dog:0.00306):0.483,(car:0.45,ship:0.45):0.036);'
    """

    _parameter_constraints: dict = {
        "linkage": [StrOptions({"weighted", "average", "single", "complete"})],
        "class_names": ["array-like", None],
    }

    def __init__(self, linkage="weighted", class_names=None):
        self.linkage = linkage
        self.class_names = class_names

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Compute class means, their distances, the merge tree and the MST.

        The features are divided by one power of two before the means are
        summed (exact), so features of 1e300 neither overflow nor, at
        1e-200, underflow; ``class_means_`` is in the caller's units.

        Parameters
        ----------
        X : array-like of shape (N, D) or (N, K, H, W)
            Features of N images; maps are flattened per image.
        y : array-like of shape (N,)
            Class label of every image; at least two classes.

        Returns
        -------
        self : CategoryHierarchy
            The fitted estimator.
        """
        refuse_complex(X, "X")
        X = _flatten_samples(X)
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        if classes.size < 2:
            raise ValueError(
                f"a category hierarchy needs at least 2 classes; got 1 class "
                f"({classes[0]!r}) in y"
            )
        names = self._resolve_names(classes)
        scale = power_of_two_scale(X.data if sparse.issparse(X) else X)
        means = _class_means(X, inverse, counts, scale)
        zero = np.flatnonzero(~np.any(means != 0, axis=1))
        if zero.size:
            raise ValueError(
                f"the mean feature of class(es) {[names[k] for k in zero]} is the "
                "zero vector, which has no direction; cosine distances are undefined"
            )
        self.classes_ = classes
        self.class_names_ = names
        self.class_counts_ = counts
        self.class_means_ = means * scale  # exact: back to the caller's units
        self.distances_ = cosine_distance_matrix(means)
        self.linkage_ = _agglomerate(self.distances_, self.linkage)
        self.tree_ = self._build_tree()
        self.mst_edges_ = _minimum_spanning_tree(self.distances_)
        return self

    def _resolve_names(self, classes):
        if self.class_names is None:
            return [str(c) for c in classes]
        names = [str(c) for c in np.asarray(self.class_names, dtype=object).ravel()]
        if len(names) != classes.size:
            raise ValueError(
                f"class_names has {len(names)} entries but y has {classes.size} "
                f"classes ({classes.tolist()!r})"
            )
        return names

    def _build_tree(self):
        # Built bottom-up in id order (children always have smaller ids), so a
        # chain of hundreds of merges needs no recursion.
        n = len(self.class_names_)
        nodes = [
            {
                "id": k,
                "name": self.class_names_[k],
                "height": 0.0,
                "size": 1,
                "classes": [self.class_names_[k]],
                "children": [],
            }
            for k in range(n)
        ]
        for step, (a, b, height, size) in enumerate(self.linkage_):
            left, right = nodes[int(a)], nodes[int(b)]
            nodes.append(
                {
                    "id": n + step,
                    "name": None,
                    "height": float(height),
                    "size": int(size),
                    "classes": left["classes"] + right["classes"],
                    "children": [left, right],
                }
            )
        return nodes[-1]

    def to_dict(self):
        """Export the fitted hierarchy as plain Python data (JSON-serialisable).

        Returns
        -------
        data : dict
            ``"classes"`` (display names), ``"linkage"`` (the method),
            ``"distances"`` (nested lists), ``"tree"`` (a copy of ``tree_``)
            and ``"mst"`` (a list of ``{"a", "b", "weight"}`` with class names).

        Examples
        --------
        >>> import json
        >>> from skvmf.hierarchy import CategoryHierarchy
        >>> h = CategoryHierarchy().fit([[1.0, 0.0], [0.0, 1.0]], ["a", "b"])
        >>> d = h.to_dict()
        >>> d["mst"]
        [{'a': 'a', 'b': 'b', 'weight': 0.5}]
        >>> isinstance(json.dumps(d), str)
        True
        """
        check_is_fitted(self, "tree_")
        import copy

        names = self.class_names_
        return {
            "classes": list(names),
            "linkage": self.linkage,
            "distances": self.distances_.tolist(),
            "tree": copy.deepcopy(self.tree_),
            "mst": [
                {"a": names[a], "b": names[b], "weight": w}
                for a, b, w in self.mst_edges_
            ],
        }

    @validate_params(
        {"precision": [Interval(Integral, 1, None, closed="left")]},
        prefer_skip_nested_validation=True,
    )
    def to_newick(self, precision=6):
        """The merge tree in Newick format, branch lengths from merge heights.

        A branch's length is its parent's height minus the child's, so the
        distance from the root to every leaf is the root's height. Names with
        Newick's special characters are single-quoted.

        Parameters
        ----------
        precision : int, default=6
            Significant digits of the branch lengths.

        Returns
        -------
        newick : str
            The tree, ending in ``";"``.

        Examples
        --------
        >>> from skvmf.hierarchy import CategoryHierarchy
        >>> h = CategoryHierarchy().fit([[1.0, 0.0], [0.0, 1.0]], ["a", "b c"])
        >>> h.to_newick()
        "(a:0.5,'b c':0.5);"
        """
        check_is_fitted(self, "linkage_")
        n = len(self.class_names_)
        text = [_newick_name(name) for name in self.class_names_]
        heights = np.concatenate([np.zeros(n), self.linkage_[:, 2]])
        for a, b, height, _ in self.linkage_:
            parts = []
            for child in (int(a), int(b)):
                length = max(float(height - heights[child]), 0.0)
                parts.append(f"{text[child]}:{length:.{precision}g}")
            text.append("(" + ",".join(parts) + ")")
        return text[-1] + ";"
