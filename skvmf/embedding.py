"""Low-dimensional views of features: t-SNE, UMAP and PCA.

The classic way to look at what a layer has learned (the project's seeds 002
and 003): embed each image's feature vector in 2-D or 3-D and colour the
points by class. t-SNE (van der Maaten & Hinton, JMLR 2008) turns distances
into neighbour probabilities whose per-point bandwidth is set so that the
*perplexity* ``2^H(P_i)`` (roughly the number of neighbours) matches a
target; it is taken from scikit-learn. UMAP (McInnes et al., 2018) comes from
the optional ``umap-learn`` package (``pip install 'skvmf[umap]'``). PCA is
the linear baseline. :func:`trustworthiness_report` measures how well an
embedding keeps neighbourhoods.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, trustworthiness
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from skvmf._numerics.arrays import power_of_two_scale, refuse_complex, safe_norm

__all__ = ["FeatureEmbedding", "embed_features", "trustworthiness_report"]

_METHODS = ("tsne", "umap", "pca")
_METRICS = ("euclidean", "cosine")
_UMAP_HINT = (
    "UMAP embeddings need the optional package umap-learn; install it with "
    "`pip install 'skvmf[umap]'` (or `pip install umap-learn`)"
)


def _flatten(X, name="X"):
    """Features as (N, D) rows; (N, ...) maps are flattened, complex refused."""
    refuse_complex(X, name)
    if not hasattr(X, "shape") or getattr(X, "ndim", 2) > 2:
        arr = np.asarray(X)
        if arr.ndim > 2:
            X = arr.reshape(arr.shape[0], -1)
    return X


def _unit_rows(X):
    """Rows divided by their (overflow- and underflow-safe) norms."""
    norms = safe_norm(X, dim=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(
            f"rows {zero[:10].tolist()} are all zero: the cosine metric is undefined "
            "for a zero vector"
        )
    return X / norms[:, None]


def _refuse_coincident_rows(X, metric, method):
    """Refuse data whose pairwise distances are all zero, before scikit-learn.

    t-SNE's neighbour probabilities are undefined when every distance is 0
    (scikit-learn's t-SNE then crashes the Python process), and UMAP's
    neighbour graph is degenerate. Rows equal to the first row (for the
    cosine metric: unit rows within a few ulps of the first one) are
    detected on the rescaled features, in O(N D).
    """
    if metric == "cosine":
        # unit rows of one direction can differ by rounding in the last bit
        unit = _unit_rows(X)
        coincident = np.all(np.abs(unit - unit[0]) <= 8 * np.finfo(float).eps)
    else:
        coincident = np.all(X[0] == X)
    if coincident:
        what = "point the same way" if metric == "cosine" else "are identical"
        raise ValueError(
            f"all {X.shape[0]} rows of X {what}: every pairwise {metric} distance "
            f"is zero, so a {method} embedding is undefined (t-SNE and UMAP need "
            "distinct points)"
        )


def _make_estimator(X, method, n_components, perplexity, metric, random_state, kwargs):
    """Checked inputs and an unfitted estimator for one embedding method."""
    n, D = X.shape
    if method == "pca":
        if n_components > min(n, D):
            raise ValueError(
                f"PCA gives at most min(n_samples, n_features) = {min(n, D)} "
                f"components for X of shape {X.shape}; got n_components={n_components}"
            )
        if metric == "cosine":
            X = _unit_rows(X)
        return X, PCA(n_components=n_components, random_state=random_state, **kwargs)
    if metric == "cosine":
        _unit_rows(X)  # cosine distances to a zero row are NaN: reject it
    _refuse_coincident_rows(X, metric, method)
    if method == "tsne":
        if perplexity >= n:
            raise ValueError(
                f"perplexity must be smaller than the number of samples; got "
                f"perplexity={perplexity} for {n} samples"
            )
        params = dict(kwargs)
        if n_components > 3:
            params.setdefault("method", "exact")  # Barnes-Hut handles d' <= 3 only
        return X, TSNE(
            n_components=n_components,
            perplexity=perplexity,
            metric=metric,
            random_state=random_state,
            **params,
        )
    try:
        import umap
    except ImportError as err:
        raise ImportError(_UMAP_HINT) from err
    n_neighbors = kwargs.get("n_neighbors", 15)
    if n_neighbors >= n:
        raise ValueError(
            f"UMAP's n_neighbors must be smaller than the number of samples; got "
            f"n_neighbors={n_neighbors} for {n} samples"
        )
    return X, umap.UMAP(
        n_components=n_components, metric=metric, random_state=random_state, **kwargs
    )


_OPTIONS = {
    "method": [StrOptions(set(_METHODS))],
    "n_components": [Interval(Integral, 1, None, closed="left")],
    "perplexity": [Interval(Real, 0, None, closed="neither")],
    "metric": [StrOptions(set(_METRICS))],
    "random_state": ["random_state"],
}


def _scaled(X):
    """``X`` divided by one exact power of two, and that power.

    Embeddings of features of 1e300 or 1e-200 then see features of about 1:
    no squared distance overflows or underflows. PCA coordinates are
    multiplied back (they are linear in the features); t-SNE and UMAP
    coordinates carry no unit.
    """
    scale = power_of_two_scale(X)
    return X / scale, scale


def _unscaled(Z, method, metric, scale):
    """PCA coordinates of Euclidean features back in the features' units."""
    return Z * scale if method == "pca" and metric == "euclidean" else Z


@validate_params(
    {"X": ["array-like"], **_OPTIONS},
    prefer_skip_nested_validation=True,
)
def embed_features(
    X,
    *,
    method="tsne",
    n_components=2,
    perplexity=30.0,
    metric="euclidean",
    random_state=None,
    **kwargs,
):
    """Embed feature vectors in a low-dimensional space for plotting.

    Parameters
    ----------
    X : array-like of shape (N, D) or (N, K, H, W)
        One feature per image; maps are flattened per image. Must be finite.
    method : {"tsne", "umap", "pca"}, default="tsne"
        ``"tsne"``: :class:`sklearn.manifold.TSNE`; ``"umap"``: ``umap.UMAP``
        from the optional ``umap-learn`` package; ``"pca"``:
        :class:`sklearn.decomposition.PCA`.
    n_components : int, default=2
        Dimension of the embedding (2 or 3 for plots). t-SNE with more than 3
        uses its exact method (Barnes-Hut supports at most 3).
    perplexity : float, default=30.0
        t-SNE's effective number of neighbours; must be smaller than N. Not
        used by UMAP (pass ``n_neighbors``) or PCA.
    metric : {"euclidean", "cosine"}, default="euclidean"
        Distance between features. For PCA, ``"cosine"`` L2-normalises the
        rows first (Euclidean distance between unit vectors is a monotone
        function of the cosine distance).
    random_state : int, RandomState instance or None, default=None
        Seed of t-SNE's and UMAP's optimisation and of randomised PCA; an int
        gives reproducible embeddings.
    **kwargs
        Passed to the underlying estimator (e.g. ``max_iter``, ``init``,
        ``n_neighbors``, ``min_dist``, ``svd_solver``).

    Returns
    -------
    Z : ndarray of shape (N, n_components)
        The embedding.

    Raises
    ------
    ValueError
        For non-finite or complex input, ``perplexity >= N``, an unknown
        method or metric, too many PCA components, a zero row with
        ``"cosine"``, or (t-SNE, UMAP) rows whose pairwise distances are all
        zero. Features of any finite scale (1e-300 to 1e300) are rescaled
        exactly first.
    ImportError
        For ``method="umap"`` without ``umap-learn`` (the message gives the
        pip command).

    See Also
    --------
    FeatureEmbedding : the same as a scikit-learn estimator.
    trustworthiness_report : how well the embedding keeps neighbourhoods.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skvmf.embedding import embed_features
    >>> X, y = load_digits(return_X_y=True)
    >>> Z = embed_features(X[:200], method="pca", n_components=2)
    >>> Z.shape
    (200, 2)
    >>> Z = embed_features(X[:100], perplexity=20, random_state=0, max_iter=250)
    >>> Z.shape
    (100, 2)
    """
    X = check_array(_flatten(X), dtype=np.float64, ensure_min_samples=2, input_name="X")
    X, scale = _scaled(X)
    X, estimator = _make_estimator(
        X, method, n_components, perplexity, metric, random_state, kwargs
    )
    Z = np.asarray(estimator.fit_transform(X), dtype=np.float64)
    return _unscaled(Z, method, metric, scale)


@validate_params(
    {
        "X": ["array-like"],
        "Z": ["array-like"],
        "n_neighbors": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "metric": [StrOptions(set(_METRICS))],
    },
    prefer_skip_nested_validation=True,
)
def trustworthiness_report(X, Z, *, n_neighbors=(5, 10, 20), metric="euclidean"):
    """Trustworthiness and continuity of an embedding at several scales.

    Trustworthiness (Venna & Kaski, 2001; :func:`sklearn.manifold.
    trustworthiness`) is 1 when every point's ``k`` nearest neighbours in the
    embedding are also close in the original space, and penalises intruders
    by their original rank. Continuity is the same measure with the two
    spaces exchanged: it penalises original neighbours that the embedding
    pulled apart. Both lie in [0, 1]; random embeddings score about 0.5.

    Parameters
    ----------
    X : array-like of shape (N, D) or (N, K, H, W)
        The original features (maps are flattened).
    Z : array-like of shape (N, d')
        Their embedding.
    n_neighbors : int or sequence of int, default=(5, 10, 20)
        Neighbourhood sizes ``k``; each must satisfy ``k < N / 2``.
    metric : {"euclidean", "cosine"}, default="euclidean"
        Distance in the original space (the embedding is always Euclidean).

    Returns
    -------
    report : dict
        ``"n_neighbors"``, ``"trustworthiness"`` and ``"continuity"``, lists
        aligned with each other.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.embedding import trustworthiness_report
    >>> X = np.random.default_rng(0).normal(size=(60, 3))
    >>> report = trustworthiness_report(X, X[:, :2], n_neighbors=[5, 10])
    >>> report["n_neighbors"]
    [5, 10]
    >>> trustworthiness_report(X, X @ np.eye(3)[::-1], n_neighbors=5)["continuity"]
    [1.0]
    """
    X = check_array(_flatten(X), dtype=np.float64, input_name="X")
    refuse_complex(Z, "Z")
    Z = check_array(Z, dtype=np.float64, input_name="Z")
    # ranks do not change under one exact rescale; distances then cannot
    # overflow (1e300) or underflow (1e-200)
    X, Z = _scaled(X)[0], _scaled(Z)[0]
    if X.shape[0] != Z.shape[0]:
        raise ValueError(
            f"X and Z need the same number of rows; got {X.shape[0]} and {Z.shape[0]}"
        )
    ks = [n_neighbors] if isinstance(n_neighbors, Integral) else list(n_neighbors)
    n = X.shape[0]
    for k in ks:
        if not isinstance(k, Integral) or isinstance(k, bool) or not 1 <= k < n / 2:
            raise ValueError(
                f"every n_neighbors must be an integer with 1 <= k < N / 2 = {n / 2}; "
                f"got {k!r}"
            )
    if metric == "cosine":
        X = _unit_rows(X)  # Euclidean ranks of unit rows = cosine ranks
    trust = [float(trustworthiness(X, Z, n_neighbors=int(k))) for k in ks]
    cont = [float(trustworthiness(Z, X, n_neighbors=int(k))) for k in ks]
    return {
        "n_neighbors": [int(k) for k in ks],
        "trustworthiness": trust,
        "continuity": cont,
    }


def _has_transform(self):
    """t-SNE places only the points it was fitted on: no ``transform``."""
    return self.method != "tsne"


# ``auto_wrap_output_keys=None``: set_output's wrapper would replace the
# conditional ``transform`` by one that always exists.
class FeatureEmbedding(
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    BaseEstimator,
    auto_wrap_output_keys=None,
):
    """Embedding of features as a scikit-learn transformer (t-SNE, UMAP, PCA).

    ``fit_transform`` works for every method. ``transform`` of new data exists
    only for ``"pca"`` and ``"umap"``: t-SNE optimises the positions of the
    training points themselves and has no map for new points, so
    ``hasattr(est, "transform")`` is ``False`` for ``method="tsne"``.

    Parameters
    ----------
    method : {"tsne", "umap", "pca"}, default="tsne"
        See :func:`embed_features`.
    n_components : int, default=2
        Dimension of the embedding.
    perplexity : float, default=30.0
        t-SNE's perplexity, smaller than the number of samples.
    metric : {"euclidean", "cosine"}, default="euclidean"
        Distance between features (for PCA, ``"cosine"`` normalises rows).
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible embeddings.
    estimator_params : dict, default=None
        Extra parameters of the underlying estimator (e.g. ``{"max_iter":
        500}`` for t-SNE, ``{"n_neighbors": 10}`` for UMAP).

    Attributes
    ----------
    embedding_ : ndarray of shape (N, n_components)
        The embedding of the training features.
    estimator_ : TSNE, PCA or UMAP
        The fitted underlying estimator.
    n_features_in_ : int
        Number of features per sample after flattening.
    scale_ : float
        The power of two the training features were divided by (exactly)
        before embedding; new features are divided by it too.

    See Also
    --------
    embed_features : the function form.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skvmf.embedding import FeatureEmbedding
    >>> X, y = load_digits(return_X_y=True)
    >>> pipe = make_pipeline(StandardScaler(), FeatureEmbedding(method="pca"))
    >>> pipe.fit_transform(X[:100]).shape
    (100, 2)
    >>> hasattr(FeatureEmbedding(method="tsne"), "transform")
    False
    """

    _parameter_constraints: dict = {
        "method": [StrOptions(set(_METHODS))],
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "perplexity": [Interval(Real, 0, None, closed="neither")],
        "metric": [StrOptions(set(_METRICS))],
        "random_state": ["random_state"],
        "estimator_params": [dict, None],
    }

    def __init__(
        self,
        method="tsne",
        n_components=2,
        perplexity=30.0,
        metric="euclidean",
        random_state=None,
        estimator_params=None,
    ):
        self.method = method
        self.n_components = n_components
        self.perplexity = perplexity
        self.metric = metric
        self.random_state = random_state
        self.estimator_params = estimator_params

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the embedding of ``X``.

        Parameters
        ----------
        X : array-like of shape (N, D) or (N, K, H, W)
            Features (maps are flattened per sample).
        y : None
            Ignored.

        Returns
        -------
        self : FeatureEmbedding
            The fitted estimator.
        """
        X = validate_data(self, _flatten(X), dtype=np.float64, ensure_min_samples=2)
        X, self.scale_ = _scaled(X)
        X, est = _make_estimator(
            X,
            self.method,
            self.n_components,
            self.perplexity,
            self.metric,
            self.random_state,
            dict(self.estimator_params or {}),
        )
        Z = np.asarray(est.fit_transform(X), dtype=np.float64)
        self.embedding_ = _unscaled(Z, self.method, self.metric, self.scale_)
        self.estimator_ = est
        return self

    def fit_transform(self, X, y=None):
        """Fit and return the embedding of ``X`` (every method).

        Parameters
        ----------
        X : array-like of shape (N, D) or (N, K, H, W)
            Features.
        y : None
            Ignored.

        Returns
        -------
        Z : ndarray of shape (N, n_components)
            The embedding.
        """
        return self.fit(X, y).embedding_

    @available_if(_has_transform)
    def transform(self, X):
        """Embed new features with the fitted PCA or UMAP map.

        Parameters
        ----------
        X : array-like of shape (M, D) or (M, K, H, W)
            New features, with the training features' dimension.

        Returns
        -------
        Z : ndarray of shape (M, n_components)
            Their embedding.
        """
        check_is_fitted(self, "estimator_")
        X = validate_data(self, _flatten(X), dtype=np.float64, reset=False)
        X = X / self.scale_  # as in fit (exact)
        if self.method == "pca" and self.metric == "cosine":
            X = _unit_rows(X)  # as in fit
        Z = np.asarray(self.estimator_.transform(X), dtype=np.float64)
        return _unscaled(Z, self.method, self.metric, self.scale_)

    @property
    def _n_features_out(self):
        return self.n_components
