"""Category hierarchies and filter-wise prediction trees from CNN features.

Two clustering views of what a trained network has learned, after the
report *What do CNN neurons learn: Visualization & Clustering* (the project's
seed 003, Algorithms 1 and 2):

* :class:`CategoryHierarchy` clusters the categories. Each category is
  represented by the mean feature of its images; two categories are at
  distance ``(1 - cos) / 2`` (0 for the same direction, 1 for opposite ones).
  The closest two nodes are merged repeatedly under a new node whose distance
  to every other node is the plain mean of its two children's distances
  (WPGMA, scipy's ``method="weighted"``). The merge tree is stored as a
  scipy linkage matrix; the minimum spanning tree of the category graph is
  computed as well.
* :class:`FilterPredictionTree` clusters the images of one category and
  records, for every merge, the *critical filter*: the filter both merged
  nodes share whose removal lowers their cosine similarity the most. Each
  node keeps the shared filters minus its critical one, so the tree says
  which filters decide along which path an image is recognised.

Both take features as numpy arrays (class-wise feature vectors, or feature
maps that are flattened); neither needs torch.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from skvmf._progress import progress

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


def cosine_distance_matrix(V):
    """Pairwise distance ``(1 - cos) / 2`` between the rows of ``V``.

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
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2:
        raise ValueError(f"expected a 2-D array of row vectors; got shape {V.shape}")
    if not np.all(np.isfinite(V)):
        raise ValueError("the vectors contain NaN or infinite values")
    norms = np.linalg.norm(V, axis=1)
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


# Values closer than this count as equal, so that ties that are exact in
# real arithmetic are broken by the documented rule, not by rounding.
_TIE_TOL = 1e-12


def _first_min(values):
    """Flat index of the first entry within ``_TIE_TOL`` of the minimum."""
    flat = np.ravel(values)
    m = flat.min()
    if not np.isfinite(m):
        return int(np.argmin(flat))
    return int(np.argmax(flat <= m + _TIE_TOL * max(1.0, abs(m))))


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
        i, j = np.unravel_index(_first_min(sub), sub.shape)
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
    FilterPredictionTree : the filter-wise tree of one category (Algorithm 2).
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
        onehot = sparse.csr_matrix(
            (np.ones(len(y)), (inverse, np.arange(len(y)))),
            shape=(classes.size, len(y)),
        )
        means = np.asarray(onehot @ X.astype(np.float64, copy=False)) / counts[:, None]
        zero = np.flatnonzero(~np.any(means != 0, axis=1))
        if zero.size:
            raise ValueError(
                f"the mean feature of class(es) {[names[k] for k in zero]} is the "
                "zero vector, which has no direction; cosine distances are undefined"
            )
        self.classes_ = classes
        self.class_names_ = names
        self.class_counts_ = counts
        self.class_means_ = means
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
        if not isinstance(precision, Integral) or precision < 1:
            raise ValueError(f"precision must be a positive integer; got {precision!r}")
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


# --------------------------------------------------------------------------
# Algorithm 2: filter-wise prediction tree
# --------------------------------------------------------------------------


def _as_filter_mask(filters, d, what):
    if filters is None:
        return np.ones(d, dtype=bool)
    arr = np.asarray(filters)
    if arr.dtype == bool:
        if arr.shape != (d,):
            raise ValueError(
                f"{what} as a boolean mask needs shape ({d},); got {arr.shape}"
            )
        return arr.copy()
    arr = arr.ravel()
    if arr.size and (
        not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= d
    ):
        raise ValueError(f"{what} must be filter indices in [0, {d}); got {arr!r}")
    mask = np.zeros(d, dtype=bool)
    mask[arr.astype(np.intp)] = True
    return mask


def _masked_cosines(p, a, b, mask_u, mask_v):
    """cos of the two nodes on their filters, and with each shared filter removed.

    ``p``, ``a``, ``b`` are per-filter dot products u_f.v_f and squared norms
    |u_f|^2, |v_f|^2. Removing filter F subtracts its terms from the three
    sums, so every candidate costs O(1) after O(d) sums.
    """
    shared = mask_u & mask_v
    P = p[shared].sum()
    A = a[mask_u].sum()
    B = b[mask_v].sum()
    cos0 = P / math.sqrt(A * B) if A > 0 and B > 0 else 0.0
    # A norm that drops to (numerically) zero leaves no direction: cos := 0.
    A_rest = np.where(shared, A - a, 0.0)
    B_rest = np.where(shared, B - b, 0.0)
    ok = shared & (A_rest > 1e-12 * A) & (B_rest > 1e-12 * B)
    cos_f = np.full(p.shape, np.nan)
    cos_f[shared] = 0.0
    cos_f[ok] = (P - p[ok]) / np.sqrt(A_rest[ok] * B_rest[ok])
    return cos0, cos_f, shared


def critical_filter(u, v, u_filters=None, v_filters=None):
    """The critical filter of merging two nodes, and every candidate's ratio.

    The nodes are compared on their own filters: ``u`` restricted to
    ``u_filters`` and ``v`` to ``v_filters`` (other filters zeroed). A
    candidate is a filter both hold; its ratio is the cosine with that filter
    also removed from both, over the cosine without removal. The critical
    filter has the smallest ratio (for positive cosines: the filter whose
    removal makes the nodes least alike). Ties (ratios within 1e-12 relative)
    go to the lowest index. If the cosine without removal is exactly 0 the
    ratio is undefined; the filter whose removal changes the cosine most in
    absolute value is taken then. A masked vector with zero norm (or one
    whose remaining energy is below 1e-12 of the unmasked one) has cosine 0.

    All candidates are evaluated at once from per-filter dot products and
    squared norms (O(d L), no loop over filters).

    Parameters
    ----------
    u, v : array-like of shape (d,) or (d, L) or (d, l, l)
        The two nodes' vectors, per filter.
    u_filters, v_filters : array-like of int or bool mask of shape (d,), default=None
        The filters each node holds; ``None`` means all of them.

    Returns
    -------
    filter : int or None
        The critical filter, ``None`` when the nodes share no filter.
    ratios : ndarray of shape (d,)
        The ratio of every shared filter, NaN for the others (all NaN when
        the cosine without removal is 0).

    Examples
    --------
    >>> from skvmf.hierarchy import critical_filter
    >>> F, ratios = critical_filter([2.0, 1.0, 0.0, 1.0], [2.0, 1.0, 1.0, 0.0])
    >>> F
    0
    >>> ratios.round(3)
    array([0.6  , 0.96 , 1.095, 1.095])
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    if u.shape != v.shape or u.ndim == 0:
        raise ValueError(
            f"u and v need the same shape (d,) or (d, ...); got {u.shape} and {v.shape}"
        )
    d = u.shape[0]
    u = u.reshape(d, -1)
    v = v.reshape(d, -1)
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(v))):
        raise ValueError("u and v must be finite; got NaN or infinite values")
    mask_u = _as_filter_mask(u_filters, d, "u_filters")
    mask_v = _as_filter_mask(v_filters, d, "v_filters")
    p = np.einsum("fl,fl->f", u, v)
    a = np.einsum("fl,fl->f", u, u)
    b = np.einsum("fl,fl->f", v, v)
    return _critical_from_sums(p, a, b, mask_u, mask_v)


def _critical_from_sums(p, a, b, mask_u, mask_v):
    cos0, cos_f, shared = _masked_cosines(p, a, b, mask_u, mask_v)
    if not shared.any():
        return None, np.full(p.shape, np.nan)
    if cos0 != 0:
        ratios = cos_f / cos0
        return _first_min(np.where(shared, ratios, np.inf)), ratios
    change = np.where(shared, -np.abs(cos_f), np.inf)
    return _first_min(change), np.full(p.shape, np.nan)


@dataclasses.dataclass(eq=False)
class PredictionTreeNode:
    """One node of a :class:`FilterPredictionTree`.

    Parameters
    ----------
    id : int
        Node id: ``0 .. n_images - 1`` are the leaves (image ``id``); merge
        ``k`` creates node ``n_images + k``.
    children : tuple of int
        The two merged nodes; empty for a leaf.
    filters : ndarray of int
        The filters the node holds (all filters for a leaf; the children's
        shared filters minus the critical one otherwise).
    critical_filter : int or None
        The filter removed at this merge; ``None`` for a leaf.
    distance : float
        ``(1 - cos) / 2`` between the children when they merged; 0 for a leaf.
    vector : ndarray of shape map_shape
        The node's vector: the image's map for a leaf, the mean of the two
        children's vectors otherwise (all filters kept).
    parent : int or None
        The parent node, ``None`` for a child of the root.
    depth : int
        Height above the leaves: 0 for a leaf, 1 + the children's maximum.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.hierarchy import FilterPredictionTree
    >>> maps = np.array([[3.0, 1.0, 0.5], [2.5, 1.2, 0.2], [0.1, 1.0, 2.0]])
    >>> node = FilterPredictionTree().fit(maps).nodes_[3]
    >>> node.children, node.critical_filter, node.filters.tolist()
    ((0, 1), 0, [1, 2])
    """

    id: int
    children: tuple
    filters: np.ndarray
    critical_filter: int | None
    distance: float
    vector: np.ndarray
    parent: int | None = None
    depth: int = 0

    @property
    def is_leaf(self):
        """``True`` for a leaf (one training image)."""
        return not self.children


class PredictionPath(NamedTuple):
    """The way a new image takes down a :class:`FilterPredictionTree`.

    Attributes
    ----------
    nodes : list of int
        Node ids from a child of the root down to a leaf.
    critical_filters : list of int
        Critical filters of the internal nodes of ``nodes``, in order.
    similarities : list of float
        Cosine between the image and each chosen node, on the filters the
        choice was made on.
    """

    nodes: list
    critical_filters: list
    similarities: list

    @property
    def leaf(self):
        """The leaf reached: the index of the most similar training image."""
        return self.nodes[-1]


def _as_maps(maps, what="maps"):
    if sparse.issparse(maps):
        return maps  # validate_data rejects it with a clear message
    arr = np.asarray(maps)
    if arr.ndim not in (2, 3, 4):
        raise ValueError(
            f"{what} must have shape (n_images, d_filters), (n_images, d_filters, "
            f"L) or (n_images, d_filters, l, l); got shape {arr.shape}"
        )
    return arr


class FilterPredictionTree(BaseEstimator):
    """Filter-wise prediction tree of one category (seed 003, Algorithm 2).

    Given the feature maps of a layer for the images of one category, the
    tree is grown bottom-up as follows (our wording of the algorithm).

    1. Every image is a leaf under the root; its vector is its map (``d``
       filters of ``L = l * l`` values) and it holds all ``d`` filters.
    2. While some child of the root holds more than one filter: among the
       pairs of root children that share at least one filter, take the pair
       ``u, v`` with the smallest ``(1 - cos(u, v)) / 2`` and replace it under
       the root by a new node ``s`` whose vector is ``(u + v) / 2``.
    3. The critical filter ``F`` of the merge is the shared filter with the
       smallest ratio ``cos(u_{U-F}, v_{V-F}) / cos(u_U, v_V)``, where ``x_M``
       is ``x`` with the filters outside ``M`` zeroed and ``U``, ``V`` are
       the filters of ``u`` and ``v`` (see :func:`critical_filter`). ``s``
       holds ``(U & V) - {F}``.

    Stopping rule, precisely: the loop stops as soon as every child of the
    root holds at most one filter (the paper's rule; checked before every
    merge, so with ``d = 1`` nothing is merged), or when no two root children
    share a filter (in particular when only one root child is left). A node
    above ``m`` images has lost at most ``m - 1`` filters (the critical
    filters below it), so with no more images than filters (``n <= d``) any
    two root children share a filter and the loop ends with a single root
    child after ``n - 1`` merges. A pair that shares no filter is never
    merged (it would have no critical filter), however close it is; a node
    holding no filter can therefore never merge again. Ties (values within
    1e-12, relative to the larger of 1 and the minimum, so that ties exact in
    real arithmetic do not depend on rounding): the pair with the smallest
    (lower id, higher id) is merged first, the critical filter with the
    lowest index is taken.

    Parameters
    ----------
    similarity : {"full", "filters"}, default="full"
        The vectors compared when choosing the pair to merge: ``"full"`` the
        whole vectors, as in the paper's pseudocode; ``"filters"`` each node
        restricted to its own filters (the cosine in the ratio's denominator).
        A restricted vector with zero norm counts as cosine 0.
    verbose : int, default=0
        ``1`` shows a progress bar over the merges.

    Attributes
    ----------
    nodes_ : list of PredictionTreeNode
        All nodes, indexed by id: leaves first, then merges in order.
    root_children_ : list of int
        Ids of the root's children when the loop stopped, sorted.
    n_merges_ : int
        Number of merges performed.
    map_shape_ : tuple of int
        Shape of one image's map, ``(d,)``, ``(d, L)`` or ``(d, l, l)``.
    n_features_in_ : int
        Number of filters ``d``.

    Notes
    -----
    With ``similarity="full"`` the pairwise dot products are kept and updated
    by linearity (``s.w = (u.w + v.w) / 2``), so a merge costs O(n^2) after
    the initial Gram matrix; with ``"filters"`` each merge costs O(n d L).
    A zero vector (an image whose map is all zero, or a node restricted to
    filters where it is zero) has no direction; its cosine with any vector
    counts as 0, i.e. distance 1/2. Memory: all ``2 n - 1`` node vectors are
    kept.

    References
    ----------
    Seed 003, *What do CNN neurons learn: Visualization & Clustering*,
    Algorithm 2 and Section 3.2.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.hierarchy import FilterPredictionTree
    >>> maps = np.array([[2.0, 1.0, 0.0, 1.0],
    ...                  [2.0, 1.0, 1.0, 0.0],
    ...                  [0.0, 1.0, 2.0, 2.0]])
    >>> tree = FilterPredictionTree().fit(maps)
    >>> [(n.children, n.critical_filter, n.filters.tolist())
    ...  for n in tree.nodes_[3:]]
    [((0, 1), 0, [1, 2, 3]), ((2, 3), 2, [1, 3])]
    >>> tree.root_children_
    [4]
    >>> tree.path([2.0, 1.0, 0.2, 1.0]).nodes
    [4, 3, 0]
    """

    _parameter_constraints: dict = {
        "similarity": [StrOptions({"full", "filters"})],
        "verbose": ["verbose"],
    }

    def __init__(self, similarity="full", verbose=0):
        self.similarity = similarity
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, maps, y=None):
        """Grow the tree from the feature maps of one category's images.

        Parameters
        ----------
        maps : array-like of shape (n, d), (n, d, L) or (n, d, l, l)
            One map per image: ``d`` filters of ``L`` (or ``l x l``) values.
            ``(n, d)`` means one value per filter (e.g. pooled features).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : FilterPredictionTree
            The fitted estimator.
        """
        maps = _as_maps(maps)
        X = validate_data(
            self,
            maps,
            dtype=[np.float64, np.float32],
            allow_nd=True,
            ensure_min_samples=2,
        )
        n, d = X.shape[:2]
        self.map_shape_ = tuple(X.shape[1:])
        V = X.reshape(n, d, -1)
        self._grow(V)
        return self

    def _grow(self, V):
        n, d, L = V.shape
        size = 2 * n - 1
        vectors = np.empty((size, d, L), dtype=V.dtype)
        vectors[:n] = V
        masks = np.zeros((size, d), dtype=bool)
        masks[:n] = True
        sqn = np.zeros((size, d))  # per-filter squared norms
        sqn[:n] = np.einsum("nfl,nfl->nf", V, V, dtype=np.float64)
        full = self.similarity == "full"
        # Pairwise cosine distances between current nodes (inf: not a pair).
        dist = np.full((size, size), np.inf)
        flat = V.reshape(n, -1).astype(np.float64, copy=False)
        gram = flat @ flat.T
        if full:
            dots = np.zeros((size, size))
            dots[:n, :n] = gram
        norms = np.sqrt(np.diag(gram))
        outer = np.outer(norms, norms)
        # A zero map (e.g. a dead ReLU layer for that image) has no direction:
        # its cosine with anything counts as 0.
        cos = np.divide(gram, outer, out=np.zeros_like(gram), where=outer > 0)
        cos = np.clip(cos, -1.0, 1.0)
        dist[:n, :n] = 0.5 * (1.0 - cos)
        np.fill_diagonal(dist, np.inf)
        shared = np.zeros((size, size), dtype=np.intp)
        shared[:n, :n] = d

        nodes = [
            PredictionTreeNode(
                id=i,
                children=(),
                filters=np.arange(d),
                critical_filter=None,
                distance=0.0,
                vector=vectors[i].reshape(self.map_shape_),
            )
            for i in range(n)
        ]
        active = np.arange(n)
        new = n
        bar = progress(range(n - 1), verbose=self.verbose, desc="merges", unit="merge")
        for _ in bar:
            if not np.any(masks[active].sum(axis=1) > 1):
                break
            sub = dist[np.ix_(active, active)]
            sub[shared[np.ix_(active, active)] == 0] = np.inf
            sub[np.tril_indices(len(active))] = np.inf
            flat_idx = _first_min(sub)
            i, j = divmod(flat_idx, len(active))
            if not np.isfinite(sub[i, j]):
                break  # no two root children share a filter
            u, v = int(active[i]), int(active[j])
            p = np.einsum("fl,fl->f", vectors[u], vectors[v], dtype=np.float64)
            F, _ = _critical_from_sums(p, sqn[u], sqn[v], masks[u], masks[v])
            vectors[new] = 0.5 * (vectors[u] + vectors[v])
            masks[new] = masks[u] & masks[v]
            masks[new, F] = False
            sqn[new] = 0.25 * (sqn[u] + 2.0 * p + sqn[v])
            others = active[(active != u) & (active != v)]
            if others.size:
                if full:
                    row = 0.5 * (dots[u, others] + dots[v, others])
                    dots[new, others] = row
                    dots[others, new] = row
                    dots[new, new] = 0.25 * (dots[u, u] + 2.0 * dots[u, v] + dots[v, v])
                    den = np.sqrt(
                        np.maximum(dots[new, new] * np.diag(dots)[others], 0.0)
                    )
                else:
                    per_filter = np.einsum(
                        "mfl,fl->mf", vectors[others], vectors[new], dtype=np.float64
                    )
                    both = masks[others] & masks[new]
                    row = np.where(both, per_filter, 0.0).sum(axis=1)
                    own = np.where(masks[others], sqn[others], 0.0).sum(axis=1)
                    den = np.sqrt(own * sqn[new][masks[new]].sum())
                with np.errstate(invalid="ignore", divide="ignore"):
                    c = np.where(den > 0, row / np.where(den > 0, den, 1.0), 0.0)
                d_row = 0.5 * (1.0 - np.clip(c, -1.0, 1.0))
                dist[new, others] = d_row
                dist[others, new] = d_row
                counts = (masks[others] & masks[new]).sum(axis=1)
                shared[new, others] = counts
                shared[others, new] = counts
            elif full:
                dots[new, new] = 0.25 * (dots[u, u] + 2.0 * dots[u, v] + dots[v, v])
            nodes.append(
                PredictionTreeNode(
                    id=new,
                    children=(u, v),
                    filters=np.flatnonzero(masks[new]),
                    critical_filter=F,
                    distance=float(dist[u, v]),
                    vector=vectors[new].reshape(self.map_shape_),
                    depth=1 + max(nodes[u].depth, nodes[v].depth),
                )
            )
            nodes[u].parent = new
            nodes[v].parent = new
            active = np.append(others, new)
            new += 1
        self.nodes_ = nodes
        self.root_children_ = [int(k) for k in active]
        self.n_merges_ = new - n
        self._masks = masks[:new]

    def path(self, map):
        """The path a new image takes from the root down to a leaf.

        At the root the image goes to the root child whose vector is most
        similar to it over all filters (the root holds every filter). At an
        internal node it goes to the child that is most similar on the filters
        both children hold, i.e. the node's filters plus its critical filter
        (never empty, since a merge needs a shared filter). Similarity is the
        cosine of the two vectors restricted to those filters (0 when either
        restricted vector is zero); ties go to the smaller node id. A training
        image reaches its own leaf whenever it reaches that leaf's parent.

        Parameters
        ----------
        map : array-like of shape map_shape_ (or (d, L) for (d, l, l) maps)
            The new image's map for the same layer.

        Returns
        -------
        path : PredictionPath
            The nodes visited, the critical filters met and the similarities.

        Examples
        --------
        >>> import numpy as np
        >>> from skvmf.hierarchy import FilterPredictionTree
        >>> maps = np.array([[2.0, 1.0, 0.0, 1.0],
        ...                  [2.0, 1.0, 1.0, 0.0],
        ...                  [0.0, 1.0, 2.0, 2.0]])
        >>> p = FilterPredictionTree().fit(maps).path([0.0, 1.0, 2.0, 1.5])
        >>> p.nodes, p.critical_filters, p.leaf
        ([4, 2], [2], 2)
        """
        check_is_fitted(self, "nodes_")
        x = np.asarray(map, dtype=np.float64)
        d = self.map_shape_[0]
        if x.ndim == 0 or x.shape[0] != d or x.size != math.prod(self.map_shape_):
            raise ValueError(
                f"map must have the fitted map shape {self.map_shape_}; got {x.shape}"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError("map contains NaN or infinite values")
        x = x.reshape(d, -1)
        x_sq = np.einsum("fl,fl->f", x, x)

        def choose(candidates, mask):
            best, best_sim = None, -np.inf
            for c in sorted(candidates):
                vec = self.nodes_[c].vector.reshape(d, -1)
                dot = np.einsum("fl,fl->", x[mask], vec[mask], dtype=np.float64)
                vec_sq = np.einsum("fl,fl->", vec[mask], vec[mask], dtype=np.float64)
                den = math.sqrt(x_sq[mask].sum() * vec_sq)
                sim = dot / den if den > 0 else 0.0
                if sim > best_sim + _TIE_TOL:
                    best, best_sim = c, sim
            return best, float(best_sim)

        node, sim = choose(self.root_children_, np.ones(d, dtype=bool))
        nodes, crit, sims = [node], [], [sim]
        while self.nodes_[node].children:
            here = self.nodes_[node]
            crit.append(here.critical_filter)
            u, v = here.children
            mask = self._masks[u] & self._masks[v]
            node, sim = choose(here.children, mask)
            nodes.append(node)
            sims.append(sim)
        return PredictionPath(nodes, crit, sims)

    def to_dict(self):
        """Export the tree as plain Python data (vectors left out).

        Returns
        -------
        data : dict
            ``"root_children"`` and ``"nodes"``: one dict per node with
            ``id``, ``children``, ``filters``, ``critical_filter``,
            ``distance``, ``parent`` and ``depth``.

        Examples
        --------
        >>> import numpy as np
        >>> from skvmf.hierarchy import FilterPredictionTree
        >>> maps = np.array([[3.0, 1.0, 0.5], [2.5, 1.2, 0.2], [0.1, 1.0, 2.0]])
        >>> FilterPredictionTree().fit(maps).to_dict()["root_children"]
        [4]
        """
        check_is_fitted(self, "nodes_")
        out: list[dict[str, Any]] = []
        for node in self.nodes_:
            out.append(
                {
                    "id": node.id,
                    "children": list(node.children),
                    "filters": node.filters.tolist(),
                    "critical_filter": node.critical_filter,
                    "distance": node.distance,
                    "parent": node.parent,
                    "depth": node.depth,
                }
            )
        return {"root_children": list(self.root_children_), "nodes": out}
