"""Filter-wise prediction trees of one category (seed 003, Algorithm 2).

:class:`FilterPredictionTree` clusters the images of one category and
records, for every merge, the *critical filter*: the filter both merged
nodes share whose removal lowers their cosine similarity the most. Each node
keeps the shared filters minus its critical one, so the tree says which
filters decide along which path an image is recognised. The category-level
view (Algorithm 1) is :class:`skvmf.hierarchy.CategoryHierarchy`.

Maps are numpy arrays (``(n, d)``, ``(n, d, L)`` or ``(n, d, l, l)``); no
torch is needed. Every cosine is computed on maps rescaled by one exact power
of two, so maps of 1e200 or 1e-200 give the same tree as maps of 1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import StrOptions, validate_params
from sklearn.utils.validation import check_is_fitted, validate_data

from skvmf._numerics.arrays import power_of_two_scale, real_array, refuse_complex
from skvmf._numerics.ties import TIE_TOL, first_min
from skvmf._utils.progress import progress

__all__ = [
    "FilterPredictionTree",
    "PredictionPath",
    "PredictionTreeNode",
    "critical_filter",
]


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


@validate_params(
    {
        "u": ["array-like"],
        "v": ["array-like"],
        "u_filters": ["array-like", None],
        "v_filters": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
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
    >>> from skvmf.prediction_tree import critical_filter
    >>> F, ratios = critical_filter([2.0, 1.0, 0.0, 1.0], [2.0, 1.0, 1.0, 0.0])
    >>> F
    0
    >>> ratios.round(3)
    array([0.6  , 0.96 , 1.095, 1.095])
    """
    u = real_array(u, "u", np.float64)
    v = real_array(v, "v", np.float64)
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
    # cosines do not depend on the scale of u or v: an exact rescale keeps
    # the products below from overflowing (1e200) or underflowing (1e-200)
    u = u / power_of_two_scale(u)
    v = v / power_of_two_scale(v)
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
        return first_min(np.where(shared, ratios, np.inf)), ratios
    change = np.where(shared, -np.abs(cos_f), np.inf)
    return first_min(change), np.full(p.shape, np.nan)


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
    >>> from skvmf.prediction_tree import FilterPredictionTree
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
    refuse_complex(maps, what)
    if sparse.issparse(maps):
        return maps  # validate_data rejects it with a clear message
    arr = np.asarray(maps)
    if arr.ndim not in (2, 3, 4):
        raise ValueError(
            f"{what} must have shape (n_images, d_filters), (n_images, d_filters, "
            f"L) or (n_images, d_filters, l, l); got shape {arr.shape}"
        )
    return arr


def _initial_distances(V, full):
    """Cosine distances between the leaves, and their Gram matrix.

    A zero map (e.g. a dead ReLU layer for that image) has no direction: its
    cosine with anything counts as 0, i.e. distance 1/2.
    """
    flat = V.reshape(V.shape[0], -1).astype(np.float64, copy=False)
    gram = flat @ flat.T
    norms = np.sqrt(np.diag(gram))
    outer = np.outer(norms, norms)
    cos = np.divide(gram, outer, out=np.zeros_like(gram), where=outer > 0)
    return 0.5 * (1.0 - np.clip(cos, -1.0, 1.0)), gram


class _Growth:
    """The working state of one growth of the tree, merge by merge.

    Holds every node's vector, filter mask and per-filter squared norms, the
    distances (``inf``: not a pair) and shared-filter counts between nodes,
    and, for ``similarity="full"``, the node Gram matrix, which a merge
    updates by linearity (``s.w = (u.w + v.w) / 2``). ``V`` is already
    rescaled, so no product overflows.
    """

    def __init__(self, V, full, map_shape):
        n, d, L = V.shape
        size = 2 * n - 1
        self.full, self.map_shape = full, map_shape
        self.vectors = np.empty((size, d, L), dtype=V.dtype)
        self.vectors[:n] = V
        self.masks = np.zeros((size, d), dtype=bool)
        self.masks[:n] = True
        self.sqn = np.zeros((size, d))
        self.sqn[:n] = np.einsum("nfl,nfl->nf", V, V, dtype=np.float64)
        self.dist = np.full((size, size), np.inf)
        leaf_dist, gram = _initial_distances(V, full)
        self.dist[:n, :n] = leaf_dist
        np.fill_diagonal(self.dist, np.inf)
        if full:
            self.dots = np.zeros((size, size))
            self.dots[:n, :n] = gram
        self.shared = np.zeros((size, size), dtype=np.intp)
        self.shared[:n, :n] = d
        self.nodes = [
            PredictionTreeNode(
                id=i,
                children=(),
                filters=np.arange(d),
                critical_filter=None,
                distance=0.0,
                vector=self.vectors[i].reshape(map_shape),
            )
            for i in range(n)
        ]
        self.active = np.arange(n)
        self.new = n

    def closest_pair(self):
        """The pair of root children to merge next, or ``None`` to stop.

        Stops when every root child holds at most one filter, or when no two
        root children share a filter; ties go to the smallest id pair.
        """
        active = self.active
        if not np.any(self.masks[active].sum(axis=1) > 1):
            return None
        sub = self.dist[np.ix_(active, active)]
        sub[self.shared[np.ix_(active, active)] == 0] = np.inf
        sub[np.tril_indices(len(active))] = np.inf
        i, j = divmod(first_min(sub), len(active))
        if not np.isfinite(sub[i, j]):
            return None
        return int(active[i]), int(active[j])

    def merge(self, u, v):
        """Create the parent of ``u`` and ``v``: vector, filters, distances."""
        new = self.new
        vec, masks, sqn = self.vectors, self.masks, self.sqn
        p = np.einsum("fl,fl->f", vec[u], vec[v], dtype=np.float64)
        F, _ = _critical_from_sums(p, sqn[u], sqn[v], masks[u], masks[v])
        vec[new] = 0.5 * (vec[u] + vec[v])
        masks[new] = masks[u] & masks[v]
        masks[new, F] = False
        sqn[new] = 0.25 * (sqn[u] + 2.0 * p + sqn[v])
        others = self.active[(self.active != u) & (self.active != v)]
        if self.full:
            d = self.dots
            d[new, new] = 0.25 * (d[u, u] + 2.0 * d[u, v] + d[v, v])
        if others.size:
            self._connect(new, u, v, others)
        self.nodes.append(
            PredictionTreeNode(
                id=new,
                children=(u, v),
                filters=np.flatnonzero(masks[new]),
                critical_filter=F,
                distance=float(self.dist[u, v]),
                vector=vec[new].reshape(self.map_shape),
                depth=1 + max(self.nodes[u].depth, self.nodes[v].depth),
            )
        )
        self.nodes[u].parent = new
        self.nodes[v].parent = new
        self.active = np.append(others, new)
        self.new += 1

    def _connect(self, new, u, v, others):
        """Distances and shared-filter counts from a new node to the others."""
        masks, sqn = self.masks, self.sqn
        if self.full:
            d = self.dots
            row = 0.5 * (d[u, others] + d[v, others])
            d[new, others] = row
            d[others, new] = row
            den = np.sqrt(np.maximum(d[new, new] * np.diag(d)[others], 0.0))
        else:
            per_filter = np.einsum(
                "mfl,fl->mf",
                self.vectors[others],
                self.vectors[new],
                dtype=np.float64,
            )
            both = masks[others] & masks[new]
            row = np.where(both, per_filter, 0.0).sum(axis=1)
            own = np.where(masks[others], sqn[others], 0.0).sum(axis=1)
            den = np.sqrt(own * sqn[new][masks[new]].sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.where(den > 0, row / np.where(den > 0, den, 1.0), 0.0)
        d_row = 0.5 * (1.0 - np.clip(c, -1.0, 1.0))
        self.dist[new, others] = d_row
        self.dist[others, new] = d_row
        counts = (masks[others] & masks[new]).sum(axis=1)
        self.shared[new, others] = counts
        self.shared[others, new] = counts


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
    kept. The maps are divided by one power of two (exact) before any
    product, so scaling them by 1e200 or 1e-200 gives the same tree.

    References
    ----------
    Seed 003, *What do CNN neurons learn: Visualization & Clustering*,
    Algorithm 2 and Section 3.2.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.prediction_tree import FilterPredictionTree
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
        # one exact power-of-two rescale: the same tree for maps of 1e200
        scale = power_of_two_scale(X)
        self._grow(X.reshape(n, d, -1) / scale, scale)
        return self

    def _grow(self, V, scale):
        """Merge root children until the stopping rule holds (class docs)."""
        n = V.shape[0]
        growth = _Growth(V, self.similarity == "full", self.map_shape_)
        bar = progress(range(n - 1), verbose=self.verbose, desc="merges", unit="merge")
        for _ in bar:
            pair = growth.closest_pair()
            if pair is None:
                break
            growth.merge(*pair)
        # back to the caller's units (exact); the nodes' vectors are views
        growth.vectors[: growth.new] *= scale
        self.nodes_ = growth.nodes
        self.root_children_ = [int(k) for k in growth.active]
        self.n_merges_ = growth.new - n
        self._masks = growth.masks[: growth.new]

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
        >>> from skvmf.prediction_tree import FilterPredictionTree
        >>> maps = np.array([[2.0, 1.0, 0.0, 1.0],
        ...                  [2.0, 1.0, 1.0, 0.0],
        ...                  [0.0, 1.0, 2.0, 2.0]])
        >>> p = FilterPredictionTree().fit(maps).path([0.0, 1.0, 2.0, 1.5])
        >>> p.nodes, p.critical_filters, p.leaf
        ([4, 2], [2], 2)
        """
        check_is_fitted(self, "nodes_")
        x = real_array(map, "map", np.float64)
        d = self.map_shape_[0]
        if x.ndim == 0 or x.shape[0] != d or x.size != math.prod(self.map_shape_):
            raise ValueError(
                f"map must have the fitted map shape {self.map_shape_}; got {x.shape}"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError("map contains NaN or infinite values")
        # cosines are scale free: rescale the map and each node exactly
        x = x.reshape(d, -1) / power_of_two_scale(x)
        x_sq = np.einsum("fl,fl->f", x, x)

        def choose(candidates, mask):
            best, best_sim = None, -np.inf
            for c in sorted(candidates):
                vec = self.nodes_[c].vector.reshape(d, -1)
                vec = vec / power_of_two_scale(vec)
                dot = np.einsum("fl,fl->", x[mask], vec[mask], dtype=np.float64)
                vec_sq = np.einsum("fl,fl->", vec[mask], vec[mask], dtype=np.float64)
                den = math.sqrt(x_sq[mask].sum() * vec_sq)
                sim = dot / den if den > 0 else 0.0
                if sim > best_sim + TIE_TOL:
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
        >>> from skvmf.prediction_tree import FilterPredictionTree
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
