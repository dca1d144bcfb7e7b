"""Mixtures of (revised) von Mises-Fisher distributions, fitted by EM.

:class:`RevisedVMFMixture` models the direction of each feature vector with a
von Mises-Fisher (vMF) component per cluster or category. In its default
``kappa="revised"`` mode a row's strength ``l = ||x||`` sets how concentrated
its direction is, ``kappa(l)`` (:func:`skvmf.vmf.revised_kappa`): the revised
vMF of Li, Wang and Zhang, "Visualizing the Emergence of Intermediate Visual
Patterns in DNNs", NeurIPS 2021. Everything here needs numpy, scipy and
scikit-learn only.

With scikit-learn's ``array_api_dispatch`` on and ``X`` from another Array
API namespace (torch on any device, array-api-strict), EM runs in that
namespace on ``X``'s device (the ``_xp_*`` methods, numerics from
:mod:`skvmf._numerics.xp_vmf`) and every fitted array and output stays there; numpy
input keeps the numpy code path, with its in-place operations.
"""

from __future__ import annotations

import copy
from numbers import Integral, Real
from time import time

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.cluster import kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from skvmf import _array_api
from skvmf._numerics import xp_vmf as _xp_vmf
from skvmf._numerics.arrays import refuse_complex, refuse_empty
from skvmf._persistence import DevicePicklingMixin
from skvmf._utils import warn as _warn
from skvmf._utils.progress import message
from skvmf.vmf import estimate_kappa, log_normalizer, revised_kappa
from skvmf.vmf import sample as vmf_sample

__all__ = ["RevisedVMFMixture"]

# Largest concentration used anywhere (the domain on which skvmf.vmf guarantees
# an accurate log-normaliser): an angular resolution of about 1e-3 rad, far
# below anything a feature direction can resolve.
_KAPPA_MAX = 1e6
# Mean resultant lengths are clipped below 1 (identical rows): kappa -> inf,
# capped at _KAPPA_MAX afterwards.
_RBAR_MAX = float(np.nextafter(1.0, 0.0))
# Strengths are clipped here before kappa(l); kappa(l) >= l**2 / sigma**2 puts
# every larger strength beyond _KAPPA_MAX anyway, and l**2 stays finite.
_STRENGTH_MAX_OVER_SIGMA = 1e6
# Squared row norms below this lose precision to underflow (and above the
# largest float they overflow): such rows take the rescaled path.
_SQ_NORM_SAFE_MIN = 1e-250
# The same threshold for float32 computation (devices without float64):
# squares of entries below about 1e-19 underflow there.
_SQ_NORM_SAFE_MIN_F32 = 1e-30
# Number of training strengths kept (as quantiles) for ``sample``.
_N_STRENGTH_QUANTILES = 1024


def _directions(X):
    """Return ``(norms, directions)`` of the rows of ``X``.

    Zero rows get norm 0 and a zero direction. Rows whose squared norm would
    underflow or overflow are rescaled by their largest entry first, so every
    finite non-zero row gets an exact unit direction.
    """
    sq = np.einsum("ij,ij->i", X, X)
    norms = np.sqrt(sq)
    risky = ~((sq > _SQ_NORM_SAFE_MIN) & np.isfinite(sq))
    safe = ~risky
    directions = np.empty_like(X)
    np.divide(X, norms[:, None], out=directions, where=safe[:, None])
    if risky.any():
        rows = np.flatnonzero(risky)
        sub = X[rows]
        scale = np.abs(sub).max(axis=1)
        nonzero = scale > 0
        sub[nonzero] /= scale[nonzero, None]
        unit_norm = np.sqrt(np.einsum("ij,ij->i", sub, sub))
        sub[nonzero] /= unit_norm[nonzero, None]
        sub[~nonzero] = 0.0
        directions[rows] = sub
        with np.errstate(over="ignore"):
            norms[rows] = np.where(nonzero, scale * unit_norm, 0.0)
    return norms, directions


def _row_max(w):
    """``w.max(axis=1)``; for few columns a loop over them is 4-10x faster."""
    if w.shape[1] > 16 or w.shape[0] == 0:
        return w.max(axis=1)
    top = w[:, 0].copy()
    for j in range(1, w.shape[1]):
        np.maximum(top, w[:, j], out=top)
    return top


# ------------------------------------------------ Array API (xp) helpers
def _input_namespace(X):
    """``(xp, device)`` of ``X`` for the Array API path.

    ``(None, "cpu")`` selects the numpy path: dispatch off, or numpy and
    array-like input.
    """
    xp, is_array_api, dev = _array_api.get_namespace_and_device(X)
    if not is_array_api or _array_api.is_numpy(xp):
        return None, "cpu"
    return xp, dev


def _argmax_rows(a, xp):
    return a.argmax(axis=1) if xp is None else xp.argmax(a, axis=1)


def _float_mean(a):
    """Mean of an array of any namespace, as a Python float."""
    if isinstance(a, np.ndarray):
        return float(np.mean(a))
    return float(_array_api.get_namespace(a)[0].mean(a))


def _float_sum(a):
    """Sum of an array of any namespace, as a Python float."""
    if isinstance(a, np.ndarray):
        return float(a.sum())
    return float(_array_api.get_namespace(a)[0].sum(a))


def _rbar_max(xp, a):
    """Largest mean resultant length below 1 in the dtype of ``a``."""
    if a.dtype == xp.float64:
        return _RBAR_MAX
    return 1.0 - float(xp.finfo(a.dtype).eps) / 2


def _xp_one_hot(labels, n_columns, dtype, xp):
    """``(n, n_columns)`` indicator matrix of integer ``labels`` on their device."""
    columns = xp.arange(n_columns, device=_array_api.device(labels))
    return xp.astype(labels[:, None] == columns[None, :], dtype)


def _xp_row_norms(a, xp):
    """Euclidean norms of the rows of ``a``."""
    return xp.sqrt(xp.sum(a * a, axis=1))


def _xp_directions(X, xp):
    """:func:`_directions` in the namespace of ``X`` (no in-place writes).

    Rows whose squared norm would underflow or overflow are rescaled by their
    largest entry; that branch costs one extra pass and is taken only when
    such a row exists (one scalar read back from the device).
    """
    sq = xp.sum(X * X, axis=1)
    norms = xp.sqrt(sq)
    safe_min = _SQ_NORM_SAFE_MIN if X.dtype == xp.float64 else _SQ_NORM_SAFE_MIN_F32
    safe = (sq > safe_min) & xp.isfinite(sq)
    directions = X / xp.where(safe, norms, 1.0)[:, None]
    if not bool(xp.all(safe)):
        scale = xp.max(xp.abs(X), axis=1)
        nonzero = scale > 0
        sub = X / xp.where(nonzero, scale, 1.0)[:, None]
        unit_norm = _xp_row_norms(sub, xp)
        sub = sub / xp.where(nonzero, unit_norm, 1.0)[:, None]
        rescaled = xp.where(nonzero[:, None], sub, 0.0)
        directions = xp.where(safe[:, None], directions, rescaled)
        norms = xp.where(safe, norms, xp.where(nonzero, scale * unit_norm, 0.0))
    return norms, directions


def _xp_draw(weights, uniforms, xp):
    """Indices drawn with probabilities proportional to ``weights``.

    ``uniforms`` are host draws in [0, 1) (from the estimator's RandomState);
    they are moved to the device and located in the cumulative weights there,
    so the weights never leave the device. Entries of weight 0 are never
    drawn unless every weight is 0 (then the last index).
    """
    dev = _array_api.device(weights)
    cumulative = xp.cumulative_sum(weights)
    u = xp.asarray(np.asarray(uniforms, dtype=float), dtype=weights.dtype, device=dev)
    index = xp.searchsorted(cumulative, u * cumulative[-1], side="right")
    return xp.clip(index, 0, weights.shape[0] - 1)


def _xp_kmeans_plusplus(directions, n_seeds, weight, random_state, xp):
    """Greedy k-means++ seeding of unit rows by cosine distance, in ``xp``.

    D^2 sampling with ``1 - cos`` (half the squared Euclidean distance between
    unit vectors): the first seed is drawn by ``weight``, each next one is the
    best, by weighted potential, of ``2 + log(n_seeds)`` candidates drawn by
    weighted distance to the nearest seed so far. The random numbers come
    from ``random_state`` on the host; the rows stay on their device, and no
    value is read back. Returns the seed rows.
    """
    n = directions.shape[0]
    dev = _array_api.device(directions)
    if weight is None:
        weight = xp.ones(n, dtype=directions.dtype, device=dev)
    n_trials = 2 + int(np.log(n_seeds))
    first = _xp_draw(weight, random_state.uniform(size=1), xp)
    chosen = [first]
    closest = xp.clip(
        1.0 - directions @ xp.take(directions, first, axis=0)[0, :], 0.0, 2.0
    )
    for _ in range(1, n_seeds):
        candidates = _xp_draw(weight * closest, random_state.uniform(size=n_trials), xp)
        distance = xp.clip(
            1.0 - xp.take(directions, candidates, axis=0) @ directions.T, 0.0, 2.0
        )
        distance = xp.minimum(closest[None, :], distance)
        best = xp.reshape(xp.argmin(distance @ weight), (1,))
        chosen.append(xp.take(candidates, best))
        closest = xp.take(distance, best, axis=0)[0, :]
    return xp.take(directions, xp.concat(chosen), axis=0)


def _class_without_rows(label):
    """The error for a class whose every row was dropped for its zero norm."""
    label = label.item() if hasattr(label, "item") else label
    return ValueError(
        f"class {label!r} has no row with non-zero norm "
        "left after zero_norm='drop': its direction is undefined."
    )


class _Rows:
    """The kept rows of ``X`` in the form the E- and M-steps use.

    ``z`` holds ``kappa(l_i) * o_i`` in "revised" mode (so one product with the
    means gives ``kappa_i cos(o_i, mu_y)``) and the unit directions ``o_i``
    otherwise. ``offset`` is the per-row part of the log-density
    (``log C_d(kappa_i)``: an array in "revised" mode, a scalar for a fixed
    kappa, 0 when kappa belongs to the components). ``kept`` indexes the rows
    of the original ``X`` (``None`` when all were kept).

    In the Array API path ``xp`` is the namespace of ``X`` (None on the numpy
    path) and ``mask`` marks the kept rows (None when all were kept).
    """

    __slots__ = ("z", "kappa", "offset", "norms", "kept", "n_rows", "xp", "mask")

    def __init__(self, z, kappa, offset, norms, kept, n_rows, xp=None, mask=None):
        self.z = z
        self.kappa = kappa
        self.offset = offset
        self.norms = norms
        self.kept = kept
        self.n_rows = n_rows
        self.xp = xp
        self.mask = mask


class RevisedVMFMixture(DevicePicklingMixin, DensityMixin, BaseEstimator):
    r"""Mixture of revised von Mises-Fisher distributions, fitted by EM.

    Each row ``x_i`` of ``X`` is read as a strength ``l_i = ||x_i||`` and a
    direction ``o_i = x_i / l_i`` on the unit sphere of
    :math:`\mathbb{R}^d`. The mixture models the direction given the
    strength,

    .. math::

        p(o_i \mid l_i) = \sum_y \pi_y\, C_d(\kappa_i)\,
        \exp\!\big(\kappa_i\, \mu_y^\top o_i\big),
        \qquad
        C_d(\kappa) = \frac{\kappa^{d/2-1}}{(2\pi)^{d/2} I_{d/2-1}(\kappa)},

    with unit mean directions :math:`\mu_y` and weights :math:`\pi_y`. The
    concentration :math:`\kappa_i` depends on ``kappa``:

    - ``"revised"``: :math:`\kappa_i = \kappa(l_i)`, the revised vMF of
      Li, Wang & Zhang (NeurIPS 2021): features are signal plus isotropic
      noise of scale ``sigma``, so strong rows keep their direction and weak
      rows do not (:func:`skvmf.vmf.revised_kappa`). Strength is *not*
      normalised away; it sets how much a row counts.
    - a positive float: one fixed :math:`\kappa` for every row and component;
      rows are used as directions only.
    - ``"learned"``: one :math:`\kappa_y` per component, the classic mixture
      of vMF (Banerjee et al., JMLR 2005); rows are used as directions only.

    EM alternates

    - E-step: :math:`r_{iy} = \operatorname{softmax}_y(\log\pi_y +
      \log C_d(\kappa_{iy}) + \kappa_{iy}\cos(o_i, \mu_y))` in log space;
    - M-step: :math:`\mu_y \propto \sum_i \kappa_i r_{iy} o_i` in "revised"
      mode (the exact maximiser, as :math:`\kappa_i` varies by row) and
      :math:`\mu_y \propto \sum_i r_{iy} o_i` otherwise;
      :math:`\pi_y = \frac1n\sum_i r_{iy}`; in "learned" mode
      :math:`\kappa_y` solves :math:`A_d(\kappa_y) = \lVert\sum_i r_{iy}
      o_i\rVert / \sum_i r_{iy}` (Banerjee's estimate refined by Newton,
      :func:`skvmf.vmf.estimate_kappa`).

    Concentrations are capped at 1e6. A component that empties, or whose
    resultant cancels, is re-seeded at the direction of the worst-explained
    row (lowest :math:`\log p(o_i \mid l_i)`) with the weight of one row.

    **Supervised mode.** ``fit(X, y)`` with class labels fits the category
    model of the paper: one component per class (``classes_``), started at
    the class mean directions (weighted as in the M-step) with priors at the
    class frequencies, then refined by EM. ``n_components`` is then set by the
    number of classes: leave it at 1, or set it to that number (any other
    value raises ``ValueError``). ``predict`` returns class labels and the
    columns of ``predict_proba`` follow ``classes_``. Use ``max_iter=0`` to
    keep the class-conditional estimates without EM. Without ``y`` the
    mixture clusters and ``predict`` returns component indices.

    **Array API.** With ``sklearn.set_config(array_api_dispatch=True)`` and
    ``X`` a torch tensor (any device) or another Array API array, EM runs in
    ``X``'s namespace on its device, in float64 (float32, with a warning, on
    a device without float64, such as Apple's MPS), and every fitted array
    (``means_``, ``weights_``, ``kappas_``; ``classes_`` too when the labels
    are numbers) and every output of ``predict``, ``predict_proba`` and
    ``score_samples`` stays there; ``score``, ``bic`` and ``aic`` return
    Python floats. ``y`` is moved to ``X``'s namespace and device. String
    labels cannot live on a device: ``classes_`` and ``predict`` then stay
    numpy. Calling a prediction method with ``X`` from another namespace or
    device than the fit's raises ``ValueError`` naming both. The random draws
    of the initialisation come from the same ``RandomState`` on the host:
    with ``y``, ``init_params="random"`` or ``"random_from_data"`` the fit
    equals the numpy fit to rounding; ``"k-means++"`` is reimplemented on the
    device (greedy D^2 sampling, no host copy of ``X``), so its seeds differ
    from the numpy path's but are drawn by the same rule. :meth:`sample`
    draws on the host and returns arrays in the fitted namespace and device
    while dispatch is on (numpy otherwise).

    Parameters
    ----------
    n_components : int, default=1
        Number of components (clusters). With ``y`` in ``fit``, the number of
        classes (see above).
    kappa : {"revised", "learned"} or float, default="revised"
        Concentration model: per-row ``kappa(||x||)``, one concentration per
        component by maximum likelihood, or one fixed value in (0, 1e6].
    sigma : float, default=1.0
        Noise scale of the revised model, in the units of ``X``; used only
        when ``kappa="revised"``.
    init_params : {"k-means++", "random", "random_from_data"}, \
            default="k-means++"
        Initialisation. ``"k-means++"``: spherical k-means++ (D^2 sampling
        on unit directions, which is sampling by cosine distance 1 - cos;
        weighted by ``kappa(l_i)`` in "revised" mode so that seeds are strong
        rows) with oversampling: ``2 K`` seeds are drawn, each is replaced by
        the mean direction of its cell, and ``K`` of these are kept by greedy
        weighted k-means++; this keeps one seed per cluster in high dimension,
        where plain k-means++ often seeds a cluster twice. ``"random"``:
        random responsibilities. ``"random_from_data"``: random rows as seeds.
        Seeds define a first hard partition (nearest seed by cosine) from
        which the M-step starts.
    n_init : int, default=1
        Number of initialisations; the one with the highest lower bound is
        kept. Ignored with ``y`` (the class initialisation is deterministic).
    max_iter : int, default=100
        Maximum number of EM iterations per initialisation. ``0`` keeps the
        initial parameters.
    tol : float, default=1e-3
        EM stops when the mean log-likelihood changes by less than ``tol``.
    warm_start : bool, default=False
        If True, a further ``fit`` starts from the current parameters (and
        ignores ``n_init``).
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisations and :meth:`sample`.
    verbose : int, default=0
        ``1`` prints initialisation messages and ``Iteration k`` every
        ``verbose_interval`` iterations, ``2`` adds timings and the change of
        the lower bound (to stderr).
    verbose_interval : int, default=10
        Iterations between two messages.
    zero_norm : {"raise", "drop"}, default="raise"
        Zero rows have no direction. ``"raise"`` refuses them (in ``fit`` and
        in every prediction method); ``"drop"`` leaves them out of ``fit`` and,
        at prediction time, gives them the prior ``weights_`` as posterior and
        the uniform density on the sphere, ``log C_d(0)``, as score.

    Attributes
    ----------
    means_ : ndarray of shape (n_components, n_features)
        Unit mean directions.
    weights_ : ndarray of shape (n_components,)
        Mixing weights.
    kappas_ : ndarray of shape (n_components,)
        Concentrations: learned per component (``"learned"``), the fixed value
        repeated (float ``kappa``), or, in ``"revised"`` mode, where each row
        has its own ``kappa(l_i)``, each component's responsibility-weighted
        mean of the training rows' ``kappa(l_i)`` (descriptive only).
    classes_ : ndarray of shape (n_components,)
        Class labels, when fitted with ``y``.
    converged_ : bool
        Whether the best initialisation converged.
    n_iter_ : int
        EM iterations of the best initialisation.
    lower_bound_ : float
        Mean log-likelihood of the training rows at the last iteration
        (before the last M-step, as in scikit-learn's mixtures); with
        ``max_iter=0``, that of the initial parameters.
    lower_bounds_ : list of float
        ``lower_bound_`` at each iteration of the best initialisation.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when ``X`` has string column names.

    See Also
    --------
    skvmf.vmf.revised_kappa : The concentration ``kappa(l)`` of a strength.
    sklearn.mixture.GaussianMixture : The Gaussian counterpart.

    Notes
    -----
    :meth:`score_samples` returns the log-density of the *direction* on the
    unit sphere given the strength, with :math:`\log C_d` included, so scores
    compare across settings (``sigma``, ``kappa`` modes, numbers of
    components) on the same data. The strength distribution :math:`p(l)` is
    not modelled: it is the same for every component and cancels in every
    posterior.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.mixture import RevisedVMFMixture
    >>> rng = np.random.default_rng(0)
    >>> centers = 6.0 * np.eye(3)[:2]  # two directions, strength 6
    >>> X = np.repeat(centers, 50, axis=0) + rng.normal(size=(100, 3))
    >>> gm = RevisedVMFMixture(n_components=2, random_state=0).fit(X)
    >>> np.sort(gm.means_.argmax(axis=1)).tolist()  # one mean per direction
    [0, 1]
    >>> labels = gm.predict(X)
    >>> bool((labels[:50] == labels[0]).all() and (labels[50:] != labels[0]).all())
    True
    >>> clf = RevisedVMFMixture().fit(X, np.repeat(["a", "b"], 50))
    >>> clf.classes_.tolist(), clf.predict(X[[0, -1]]).tolist()
    (['a', 'b'], ['a', 'b'])
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "kappa": [
            StrOptions({"revised", "learned"}),
            Interval(Real, 0, _KAPPA_MAX, closed="right"),
        ],
        "sigma": [Interval(Real, 0, None, closed="neither")],
        "init_params": [StrOptions({"k-means++", "random", "random_from_data"})],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
        "zero_norm": [StrOptions({"raise", "drop"})],
    }

    def __init__(
        self,
        n_components=1,
        *,
        kappa="revised",
        sigma=1.0,
        init_params="k-means++",
        n_init=1,
        max_iter=100,
        tol=1e-3,
        warm_start=False,
        random_state=None,
        verbose=0,
        verbose_interval=10,
        zero_norm="raise",
    ):
        self.n_components = n_components
        self.kappa = kappa
        self.sigma = sigma
        self.init_params = init_params
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.zero_norm = zero_norm

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        return tags

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Estimate the mixture with EM.

        Runs ``n_init`` initialisations and keeps the one with the highest
        lower bound; each iterates E- and M-steps until the mean
        log-likelihood changes by less than ``tol`` or ``max_iter`` is
        reached (then a ``ConvergenceWarning`` is issued). With
        ``warm_start=True`` a later call continues from the current fit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows (``n_features >= 2``), finite.
        y : array-like of shape (n_samples,), default=None
            Class labels. When given, one component per class (supervised
            mode, see the class docstring); when None, clustering.

        Returns
        -------
        self : RevisedVMFMixture
            The fitted mixture.

        Examples
        --------
        >>> import numpy as np
        >>> from skvmf.mixture import RevisedVMFMixture
        >>> X = np.array([[5.0, 0.1], [4.0, -0.2], [0.1, 6.0], [-0.3, 5.0]])
        >>> gm = RevisedVMFMixture(n_components=2, random_state=0).fit(X)
        >>> gm.weights_.round(2).tolist()
        [0.5, 0.5]
        """
        self.fit_predict(X, y)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X, y=None):
        """Fit the mixture (as :meth:`fit`) and return the labels of ``X``.

        The labels come from a final E-step with the selected parameters, so
        ``fit_predict(X)`` equals ``fit(X).predict(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows (``n_features >= 2``), finite.
        y : array-like of shape (n_samples,), default=None
            Class labels (supervised mode) or None (clustering).

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component indices, or class labels when fitted with ``y``.

        Examples
        --------
        >>> import numpy as np
        >>> from skvmf.mixture import RevisedVMFMixture
        >>> X = np.array([[5.0, 0.1], [4.0, -0.2], [0.1, 6.0], [-0.3, 5.0]])
        >>> labels = RevisedVMFMixture(2, random_state=0).fit_predict(X)
        >>> bool(labels[0] == labels[1] and labels[2] == labels[3] != labels[0])
        True
        """
        continuing = self.warm_start and hasattr(self, "converged_")
        X, rows = self._validated_rows(X, reset=not continuing, continuing=continuing)
        y_idx, classes = self._check_targets(y, X.shape[0], rows)
        n_components = self._resolve_n_components(classes, rows)
        self._start_state(continuing, classes, n_components, rows)
        n_init = self.n_init if (not continuing and y_idx is None) else 1
        random_state = check_random_state(self.random_state)
        best = None
        for init in range(n_init):
            self._verbose_init_begin(init)
            if not continuing:
                self._initialize_parameters(rows, random_state, y_idx, n_components)
            start = -np.inf if not continuing else self.lower_bound_
            run = self._run_em(rows, start)
            if best is None or run[0] > best[0]:
                best = (*run, self._get_parameters())
        self._keep_best(*best)
        # A final E-step so that fit_predict(X) == fit(X).predict(X) for any
        # max_iter, tol and random_state.
        _, resp = self._full_log_prob_resp(rows)
        return self._labels(_argmax_rows(resp, rows.xp))

    # ------------------------------------------------------ steps of fit
    def _validated_rows(self, X, reset, continuing=False):
        """Validated ``X`` (real, finite, >= 2 features) and its kept rows."""
        if continuing:
            # a warm start continues in the namespace and device of the fit
            _array_api.check_same_namespace(X, self, attribute="means_", method="fit")
            self._fitted_namespace()
        refuse_empty(X, "X")
        xp, dev = _input_namespace(X)
        if xp is None:
            refuse_complex(X, "X")
            X = validate_data(self, X, dtype=np.float64, reset=reset)
        else:
            refuse_complex(X, "X")  # on its device: no host copy
            # float64 as on the numpy path, where the device has it
            dtype = _array_api.float_dtype(xp, dev, name="RevisedVMFMixture.fit")
            X = validate_data(self, X, dtype=dtype, reset=reset)
        if X.shape[1] < 2:
            raise ValueError(
                "RevisedVMFMixture needs at least 2 features, got n_features = 1 "
                f"(X has shape {X.shape}): a direction in 1-D is only a sign."
            )
        rows = self._prepare(X, xp)
        if rows.z.shape[0] == 0:
            raise ValueError(
                f"all {X.shape[0]} rows of X have zero norm: nothing to fit."
            )
        return X, rows

    def _resolve_n_components(self, classes, rows):
        """One component per class with ``y``; never more than kept rows."""
        if classes is not None:
            n_components = classes.shape[0]
            if self.n_components not in (1, n_components):
                raise ValueError(
                    f"y has {n_components} classes but n_components="
                    f"{self.n_components}; with y the mixture has one component "
                    "per class: leave n_components at 1 or set it to the number "
                    "of classes."
                )
        else:
            n_components = self.n_components
        n_kept = rows.z.shape[0]
        if n_kept < n_components:
            raise ValueError(
                f"Expected at least as many samples as components, got "
                f"n_samples={n_kept} (rows with non-zero norm) and "
                f"n_components={n_components}."
            )
        return n_components

    def _start_state(self, continuing, classes, n_components, rows):
        """Classes, warm-start checks and the strength quantiles for sample."""
        if continuing:
            self._check_warm_start(n_components, classes)
            # parameters may come from another kappa mode (set_params)
            self._set_state(self.means_, self.weights_, self.kappas_)
        elif classes is not None:
            self.classes_ = classes
        elif hasattr(self, "classes_"):
            del self.classes_
        if self.kappa == "revised":
            self._strength_quantiles = self._quantiles(rows.norms, rows.xp)
        self.converged_ = False

    def _run_em(self, rows, lower_bound):
        """EM from the current parameters until ``tol`` or ``max_iter``.

        Returns ``(lower_bound, n_iter, lower_bounds, converged)``.
        """
        lower_bounds, converged, n_iter = [], False, 0
        if self.max_iter == 0:
            lower_bound = _float_mean(self._log_prob_resp(rows)[0])
        for n_iter in range(1, self.max_iter + 1):
            prev_lower_bound = lower_bound
            log_prob, resp = self._log_prob_resp(rows)
            self._m_step(rows, resp, log_prob)
            lower_bound = _float_mean(log_prob)
            lower_bounds.append(lower_bound)
            change = lower_bound - prev_lower_bound
            self._verbose_iter_end(n_iter, change)
            if abs(change) < self.tol:
                converged = True
                break
        if self.max_iter > 0:
            self._verbose_init_end(lower_bound, converged)
        return lower_bound, n_iter, lower_bounds, converged

    def _keep_best(self, lower_bound, n_iter, lower_bounds, converged, params):
        """Set the best initialisation's parameters and convergence record."""
        self.converged_ = converged
        if not converged and self.max_iter > 0:
            _warn.warn(
                "Best performing initialization did not converge. Try different "
                "init parameters, or increase max_iter, tol, or check for "
                "degenerate data.",
                ConvergenceWarning,
            )
        self._set_parameters(params)
        self.n_iter_ = n_iter
        self.lower_bound_ = lower_bound
        self.lower_bounds_ = lower_bounds

    # --------------------------------------------------------- validation
    def _check_targets(self, y, n_rows, rows):
        """Validate ``y``; return kept-row class indices and the classes."""
        if y is None:
            return None, None
        if rows.xp is not None:
            return self._xp_check_targets(y, n_rows, rows)
        if (
            _array_api.dispatch_enabled()
            and not isinstance(y, np.ndarray)
            and hasattr(y, "__dlpack__")
        ):
            # everything follows X: labels from another namespace come to numpy
            y = _array_api.move_to(y, xp=np, device="cpu")
        y = column_or_1d(y, warn=True)
        if y.shape[0] != n_rows:
            raise ValueError(
                f"X and y have inconsistent numbers of samples: X has {n_rows} "
                f"rows, y has {y.shape[0]} labels."
            )
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if rows.kept is not None:
            y_idx = y_idx[rows.kept]
            empty = np.setdiff1d(np.arange(len(classes)), y_idx)
            if empty.size:
                raise _class_without_rows(classes[empty[0]])
        return y_idx, classes

    def _check_warm_start(self, n_components, classes):
        previous = getattr(self, "classes_", None)
        # labels only (never features) are compared on the host
        previous = _array_api.to_numpy(previous)
        classes = _array_api.to_numpy(classes)
        if classes is not None and (
            previous is None
            or len(previous) != len(classes)
            or not np.array_equal(previous, classes)
        ):
            raise ValueError(
                "warm_start=True continues the previous fit, which had "
                f"classes {None if previous is None else previous.tolist()}; "
                f"y now has classes {classes.tolist()}. Refit with "
                "warm_start=False to change them."
            )
        if self.means_.shape[0] != n_components:
            raise ValueError(
                "warm_start=True continues the previous fit, which had "
                f"{self.means_.shape[0]} components; n_components is now "
                f"{n_components}. Refit with warm_start=False to change it."
            )

    def _prepare(self, X, xp=None):
        """Split the rows of validated ``X`` into strengths and directions."""
        if xp is not None:
            return self._xp_prepare(X, xp)
        n_rows, dim = X.shape
        norms, z = _directions(X)
        zero = norms == 0
        kept = None
        if zero.any():
            bad = np.flatnonzero(zero)
            if self.zero_norm == "raise":
                raise ValueError(
                    f"X has {bad.size} row(s) with zero norm (first indices: "
                    f"{bad[:5].tolist()}); a zero vector has no direction. Remove "
                    "them or set zero_norm='drop'."
                )
            kept = np.flatnonzero(~zero)
            z = z[kept]
            norms = norms[kept]
        kappa = None
        if self.kappa == "revised":
            strengths = np.minimum(norms, _STRENGTH_MAX_OVER_SIGMA * self.sigma)
            kappa = np.minimum(
                np.asarray(revised_kappa(strengths, dim, self.sigma), dtype=float),
                _KAPPA_MAX,
            )
            z *= kappa[:, None]
            offset = np.asarray(log_normalizer(dim, kappa), dtype=float)
        elif self.kappa == "learned":
            offset = 0.0
        else:
            offset = float(log_normalizer(dim, float(self.kappa)))
        return _Rows(z, kappa, offset, norms, kept, n_rows)

    def _quantiles(self, norms, xp=None):
        if xp is not None:
            return self._xp_quantiles(norms, xp)
        if norms.size <= _N_STRENGTH_QUANTILES:
            return np.sort(norms)
        return np.quantile(norms, np.linspace(0.0, 1.0, _N_STRENGTH_QUANTILES))

    # ------------------------------------------------------ EM internals
    def _initialize_parameters(self, rows, random_state, y_idx, n_components):
        if rows.xp is not None:
            self._xp_initialize_parameters(rows, random_state, y_idx, n_components)
            return
        n = rows.z.shape[0]
        score = np.zeros(n)
        if y_idx is not None:
            labels = y_idx
        elif self.init_params == "random":
            resp = random_state.uniform(size=(n, n_components))
            resp /= resp.sum(axis=1, keepdims=True)
            self._m_step(rows, resp, score)
            return
        else:
            if self.init_params == "k-means++":
                seeds = self._oversampled_seeds(rows, n_components, random_state)
            else:  # "random_from_data"
                index = random_state.choice(n, size=n_components, replace=False)
                seeds = rows.z[index]
                seeds = (
                    seeds / np.maximum(np.linalg.norm(seeds, axis=1), 1e-300)[:, None]
                )
            cos = rows.z @ seeds.T
            labels = cos.argmax(axis=1)
            score = cos.max(axis=1)
        resp = np.zeros((n, n_components))
        resp[np.arange(n), labels] = 1.0
        self._m_step(rows, resp, score)

    def _oversampled_seeds(self, rows, n_components, random_state):
        """Spherical k-means++ with oversampling; returns unit seed directions.

        In high dimension a row's cosine to another row of its own cluster is
        only ``A_d(kappa)^2`` (0.3 for a mean resultant length of 0.55), not
        far above the ~0 of other clusters, so D^2 sampling barely prefers
        uncovered clusters and plain k-means++ often seeds one cluster twice
        (more than half the time for 10 clusters in d = 512). Oversampling
        fixes this: draw ``2 K`` k-means++ seeds, replace each by the mean
        direction of its cell (averaging removes the per-row noise, so two
        cells of one cluster have cosine near 1), then keep ``K`` cell means
        by greedy weighted k-means++ on them (the first drawn by cell mass,
        each next one the cell mean that most lowers the mass-weighted
        cosine-distance potential).
        """
        directions, weight = self._unit_rows(rows)
        n = directions.shape[0]
        n_seeds = min(n, 2 * n_components)
        seeds, _ = kmeans_plusplus(
            directions,
            n_seeds,
            sample_weight=weight,
            x_squared_norms=np.ones(n),
            random_state=random_state,
        )
        if n_seeds == n_components:
            return seeds
        cell = (rows.z @ seeds.T).argmax(axis=1)
        members = sparse.csr_matrix(
            (np.ones(n), (cell, np.arange(n))), shape=(n_seeds, n)
        )
        centers = np.asarray(members @ rows.z)
        mass = np.bincount(cell, weights=rows.kappa, minlength=n_seeds)
        length = np.linalg.norm(centers, axis=1)
        valid = np.flatnonzero((mass > 0) & (length > 0))
        if valid.size < n_components:  # duplicate rows: too few distinct cells
            return seeds[:n_components]
        centers = centers[valid] / length[valid, None]
        mass = mass[valid]
        distance = np.clip(1.0 - centers @ centers.T, 0.0, 2.0)
        chosen = [int(random_state.choice(valid.size, p=mass / mass.sum()))]
        closest = distance[chosen[0]]
        for _ in range(n_components - 1):
            potential = np.minimum(closest[None, :], distance) @ mass
            potential[chosen] = np.inf
            best = int(np.argmin(potential))
            chosen.append(best)
            closest = np.minimum(closest, distance[best])
        return centers[chosen]

    def _unit_rows(self, rows):
        """Unit directions of the kept rows and their seeding weights."""
        if rows.kappa is None:
            return rows.z, None
        directions = rows.z / np.maximum(rows.kappa, 1e-300)[:, None]
        total = rows.kappa.sum()
        return directions, (rows.kappa if total > 0 else None)

    def _log_prob_resp(self, rows):
        """E-step on kept rows: ``log p(o_i | l_i)`` and responsibilities."""
        if rows.xp is not None:
            return self._xp_log_prob_resp(rows)
        w = rows.z @ self._scaled_means.T
        w += self._bias
        top = _row_max(w)
        w -= top[:, None]
        np.exp(w, out=w)
        total = w @ np.ones(w.shape[1])  # a BLAS product beats w.sum(axis=1)
        w /= total[:, None]
        log_prob = np.log(total)
        log_prob += top
        log_prob += rows.offset
        return log_prob, w

    def _full_log_prob_resp(self, rows):
        """E-step on every row; dropped zero rows get the prior."""
        log_prob, resp = self._log_prob_resp(rows)
        if rows.kept is None:
            return log_prob, resp
        if rows.xp is not None:
            return self._xp_fill_dropped(rows, log_prob, resp)
        dim = self.means_.shape[1]
        full_log_prob = np.full(rows.n_rows, float(log_normalizer(dim, 0.0)))
        full_log_prob[rows.kept] = log_prob
        full_resp = np.tile(self.weights_, (rows.n_rows, 1))
        full_resp[rows.kept] = resp
        return full_log_prob, full_resp

    def _m_step(self, rows, resp, log_prob):
        if rows.xp is not None:
            self._xp_m_step(rows, resp, log_prob)
            return
        n, dim = rows.z.shape
        nk = np.ones(n) @ resp
        resultant = resp.T @ rows.z
        mass = nk if rows.kappa is None else rows.kappa @ resp
        length = np.linalg.norm(resultant, axis=1)
        degenerate = (
            (nk < 10 * np.finfo(float).eps * n)
            | ~(length > 1e-12 * mass)
            | ~np.isfinite(length)
        )
        healthy = ~degenerate
        means = np.zeros_like(resultant)
        means[healthy] = resultant[healthy] / length[healthy, None]
        if self.kappa == "learned":
            kappas = np.zeros(len(nk))
            rbar = np.clip(length[healthy] / nk[healthy], 0.0, _RBAR_MAX)
            kappas[healthy] = self._estimate_kappa(rbar, dim)
        elif self.kappa == "revised":
            kappas = np.zeros(len(nk))
            kappas[healthy] = mass[healthy] / nk[healthy]
        else:
            kappas = np.full(len(nk), float(self.kappa))
        if degenerate.any():
            self._reseed(rows, log_prob, degenerate, means, nk, kappas, resultant)
        self._set_state(means, nk / nk.sum(), kappas)

    def _estimate_kappa(self, rbar, dim):
        kappas = np.asarray(estimate_kappa(rbar, dim), dtype=float)
        return np.clip(np.nan_to_num(kappas, nan=_KAPPA_MAX), 0.0, _KAPPA_MAX)

    def _reseed(self, rows, log_prob, degenerate, means, nk, kappas, resultant):
        """Put degenerate components on the worst-explained rows."""
        bad = np.flatnonzero(degenerate)
        n, dim = rows.z.shape
        length = np.linalg.norm(rows.z, axis=1)
        candidates = np.flatnonzero(length > 0)
        if candidates.size:
            order = candidates[np.argsort(log_prob[candidates], kind="stable")]
            picks = order[np.arange(bad.size) % order.size]
            means[bad] = rows.z[picks] / length[picks, None]
        else:  # no row carries a direction: any unit vector will do
            means[bad] = np.eye(dim)[0]
        healthy = ~degenerate
        if self.kappa == "learned":
            if healthy.any():
                kappas[bad] = kappas[healthy].mean()
            else:
                total = np.linalg.norm(resultant.sum(axis=0)) / max(nk.sum(), 1e-300)
                kappas[bad] = self._estimate_kappa(
                    np.atleast_1d(np.clip(total, 0.0, _RBAR_MAX)), dim
                )[0]
        elif self.kappa == "revised":
            kappas[bad] = rows.kappa.mean()
        nk[bad] = 1.0

    def _set_state(self, means, weights, kappas):
        if not isinstance(means, np.ndarray):
            self._xp_set_state(means, weights, kappas)
            return
        self.means_ = means
        self.weights_ = weights
        self.kappas_ = kappas
        dim = means.shape[1]
        with np.errstate(divide="ignore"):
            bias = np.log(weights)
        if self.kappa == "learned":
            self._scaled_means = means * kappas[:, None]
            bias = bias + np.asarray(log_normalizer(dim, kappas), dtype=float)
        elif self.kappa == "revised":
            self._scaled_means = means
        else:
            self._scaled_means = means * float(self.kappa)
        self._bias = bias

    def _get_parameters(self):
        return (self.means_, self.weights_, self.kappas_)

    def _set_parameters(self, params):
        self._set_state(*params)

    def _labels(self, index):
        classes = getattr(self, "classes_", None)
        if classes is None:
            return index
        if isinstance(classes, np.ndarray):
            # string labels cannot live on a device: only the indices come back
            return classes[_array_api.to_numpy(index)]
        return _array_api.get_namespace(classes)[0].take(classes, index)

    # ----------------------------------------------- Array API internals
    # The methods below mirror the numpy ones above for arrays of another
    # namespace (``rows.xp``): the same formulas, written without in-place
    # writes or integer-array assignment (the Array API standard has neither),
    # on the device of X. Host reads are scalars only (a branch, a lower
    # bound); random numbers and small index arrays come from the host.

    def _xp_check_targets(self, y, n_rows, rows):
        """:meth:`_check_targets` with ``y`` moved to ``X``'s namespace."""
        xp = rows.xp
        dev = _array_api.device(rows.z)
        on_host = isinstance(y, np.ndarray) or not hasattr(y, "__dlpack__")
        if on_host:  # list, pandas, numpy: numbers go to the device, text stays
            y = column_or_1d(np.asarray(y), warn=True)
        if not on_host or y.dtype.kind in "biuf":
            y = _array_api.move_to(y, xp=xp, device=dev)
            y = column_or_1d(y, warn=True)
        if y.shape[0] != n_rows:
            raise ValueError(
                f"X and y have inconsistent numbers of samples: X has {n_rows} "
                f"rows, y has {y.shape[0]} labels."
            )
        check_classification_targets(y)
        if isinstance(y, np.ndarray):  # text labels: classes_ stays numpy
            classes, y_idx = np.unique(y, return_inverse=True)
            y_idx = xp.asarray(y_idx, dtype=xp.int64, device=dev)
        else:
            classes, y_idx = xp.unique_inverse(y)
            y_idx = xp.astype(y_idx, xp.int64)
        if rows.kept is not None:
            y_idx = xp.take(y_idx, rows.kept)
            present = xp.any(_xp_one_hot(y_idx, classes.shape[0], xp.bool, xp), axis=0)
            if not bool(xp.all(present)):
                first = int(xp.argmin(xp.astype(present, xp.int32)))
                raise _class_without_rows(_array_api.to_numpy(classes)[first])
        return y_idx, classes

    def _xp_prepare(self, X, xp):
        """:meth:`_prepare` in the namespace of ``X``."""
        n_rows, dim = X.shape
        norms, z = _xp_directions(X, xp)
        zero = norms == 0
        kept = mask = None
        if bool(xp.any(zero)):
            if self.zero_norm == "raise":
                bad = xp.nonzero(zero)[0]
                first = [int(i) for i in bad[: min(5, bad.shape[0])]]
                raise ValueError(
                    f"X has {bad.shape[0]} row(s) with zero norm (first indices: "
                    f"{first}); a zero vector has no direction. Remove "
                    "them or set zero_norm='drop'."
                )
            mask = ~zero
            kept = xp.nonzero(mask)[0]
            z = xp.take(z, kept, axis=0)
            norms = xp.take(norms, kept)
        kappa = None
        if self.kappa == "revised":
            strengths = xp.clip(norms, max=_STRENGTH_MAX_OVER_SIGMA * self.sigma)
            kappa = xp.clip(
                _xp_vmf.revised_kappa(strengths, dim, self.sigma, xp), max=_KAPPA_MAX
            )
            z = z * kappa[:, None]
            offset = _xp_vmf.log_normalizer(dim, kappa, xp)
        elif self.kappa == "learned":
            offset = 0.0
        else:
            offset = float(log_normalizer(dim, float(self.kappa)))
        return _Rows(z, kappa, offset, norms, kept, n_rows, xp=xp, mask=mask)

    def _xp_quantiles(self, norms, xp):
        """:meth:`_quantiles` (numpy's "linear" quantiles) on the device."""
        ordered = xp.sort(norms)
        n = ordered.shape[0]
        if n <= _N_STRENGTH_QUANTILES:
            return ordered
        # positions and weights are computed on the host (no data involved)
        position = np.linspace(0.0, 1.0, _N_STRENGTH_QUANTILES) * (n - 1)
        low = np.minimum(np.floor(position).astype(np.int64), n - 2)
        dev = _array_api.device(norms)
        frac = xp.asarray(position - low, dtype=norms.dtype, device=dev)
        low = xp.asarray(low, device=dev)
        below = xp.take(ordered, low)
        above = xp.take(ordered, low + 1)
        return below + (above - below) * frac

    def _xp_unit_rows(self, rows):
        """:meth:`_unit_rows` in ``rows.xp``."""
        if rows.kappa is None:
            return rows.z, None
        xp = rows.xp
        tiny = float(xp.finfo(rows.z.dtype).smallest_normal)
        directions = rows.z / xp.clip(rows.kappa, min=tiny)[:, None]
        return directions, (rows.kappa if bool(xp.sum(rows.kappa) > 0) else None)

    def _xp_initialize_parameters(self, rows, random_state, y_idx, n_components):
        """:meth:`_initialize_parameters` in ``rows.xp``.

        Random numbers are drawn on the host from ``random_state`` exactly as
        on the numpy path, except for "k-means++", which seeds on the device
        (:meth:`_xp_oversampled_seeds`).
        """
        xp, z = rows.xp, rows.z
        n = z.shape[0]
        dev = _array_api.device(z)
        score = xp.zeros(n, dtype=z.dtype, device=dev)
        if y_idx is not None:
            labels = y_idx
        elif self.init_params == "random":
            resp = random_state.uniform(size=(n, n_components))
            resp /= resp.sum(axis=1, keepdims=True)
            resp = xp.asarray(resp, dtype=z.dtype, device=dev)
            self._xp_m_step(rows, resp, score)
            return
        else:
            if self.init_params == "k-means++":
                seeds = self._xp_oversampled_seeds(rows, n_components, random_state)
            else:  # "random_from_data"
                index = random_state.choice(n, size=n_components, replace=False)
                seeds = xp.take(z, xp.asarray(index, device=dev), axis=0)
                tiny = float(xp.finfo(z.dtype).smallest_normal)
                seeds = seeds / xp.clip(_xp_row_norms(seeds, xp), min=tiny)[:, None]
            cos = z @ seeds.T
            labels = xp.argmax(cos, axis=1)
            score = xp.max(cos, axis=1)
        resp = _xp_one_hot(labels, n_components, z.dtype, xp)
        self._xp_m_step(rows, resp, score)

    def _xp_oversampled_seeds(self, rows, n_components, random_state):
        """:meth:`_oversampled_seeds` on the device (see there for why).

        The ``2 K`` seeds come from :func:`_xp_kmeans_plusplus`; cells, their
        means and the greedy selection are computed in ``rows.xp``.
        """
        xp, z = rows.xp, rows.z
        directions, weight = self._xp_unit_rows(rows)
        n = directions.shape[0]
        n_seeds = min(n, 2 * n_components)
        seeds = _xp_kmeans_plusplus(directions, n_seeds, weight, random_state, xp)
        if n_seeds == n_components:
            return seeds
        members = _xp_one_hot(xp.argmax(z @ seeds.T, axis=1), n_seeds, z.dtype, xp)
        centers = members.T @ z
        mass = xp.sum(members, axis=0) if rows.kappa is None else rows.kappa @ members
        length = _xp_row_norms(centers, xp)
        valid = (mass > 0) & (length > 0)
        n_valid = int(xp.sum(xp.astype(valid, xp.int64)))
        if n_valid < n_components:  # duplicate rows: too few distinct cells
            return seeds[:n_components, ...]
        valid = xp.nonzero(valid)[0]
        centers = xp.take(centers, valid, axis=0) / xp.take(length, valid)[:, None]
        mass = xp.take(mass, valid)
        distance = xp.clip(1.0 - centers @ centers.T, 0.0, 2.0)
        first = _xp_draw(mass, random_state.uniform(size=1), xp)
        chosen = [first]
        columns = xp.arange(n_valid, device=_array_api.device(z))
        taken = columns == first
        closest = xp.take(distance, first, axis=0)[0, :]
        for _ in range(n_components - 1):
            potential = xp.minimum(closest[None, :], distance) @ mass
            potential = xp.where(taken, xp.inf, potential)
            best = xp.reshape(xp.argmin(potential), (1,))
            chosen.append(best)
            taken = taken | (columns == best)
            closest = xp.minimum(closest, xp.take(distance, best, axis=0)[0, :])
        return xp.take(centers, xp.concat(chosen), axis=0)

    def _xp_log_prob_resp(self, rows):
        """:meth:`_log_prob_resp` in ``rows.xp`` (a log-space softmax)."""
        xp = rows.xp
        w = rows.z @ self._scaled_means.T + self._bias
        log_prob = _array_api.logsumexp(w, axis=1, xp=xp)
        resp = xp.exp(w - log_prob[:, None])
        return log_prob + rows.offset, resp

    def _xp_fill_dropped(self, rows, log_prob, resp):
        """Dropped zero rows get the prior and the uniform density."""
        xp = rows.xp
        dim = self.means_.shape[1]
        uniform = float(log_normalizer(dim, 0.0))
        mask = rows.mask
        if log_prob.shape[0] == 0:
            full_log_prob = (
                xp.zeros(
                    mask.shape[0],
                    dtype=self.means_.dtype,
                    device=_array_api.device(mask),
                )
                + uniform
            )
            full_resp = xp.zeros_like(full_log_prob)[:, None] + self.weights_[None, :]
            return full_log_prob, full_resp
        # gather instead of scatter: row i takes kept row number cumsum(mask)-1
        position = xp.clip(xp.cumulative_sum(xp.astype(mask, xp.int64)) - 1, min=0)
        full_log_prob = xp.where(mask, xp.take(log_prob, position), uniform)
        full_resp = xp.where(
            mask[:, None], xp.take(resp, position, axis=0), self.weights_[None, :]
        )
        return full_log_prob, full_resp

    def _xp_m_step(self, rows, resp, log_prob):
        """:meth:`_m_step` in ``rows.xp``."""
        xp, z = rows.xp, rows.z
        n, dim = z.shape
        nk = xp.sum(resp, axis=0)
        resultant = resp.T @ z
        mass = nk if rows.kappa is None else rows.kappa @ resp
        length = _xp_row_norms(resultant, xp)
        eps = float(xp.finfo(z.dtype).eps)
        degenerate = (
            (nk < 10 * eps * n) | ~(length > 1e-12 * mass) | ~xp.isfinite(length)
        )
        healthy = ~degenerate
        means = xp.where(
            healthy[:, None], resultant / xp.where(healthy, length, 1.0)[:, None], 0.0
        )
        safe_nk = xp.where(healthy, nk, 1.0)
        if self.kappa == "learned":
            rbar = xp.where(
                healthy, xp.clip(length / safe_nk, 0.0, _rbar_max(xp, z)), 0.0
            )
            kappas = xp.where(healthy, self._xp_estimate_kappa(rbar, dim, xp), 0.0)
        elif self.kappa == "revised":
            kappas = xp.where(healthy, mass / safe_nk, 0.0)
        else:
            kappas = xp.zeros_like(nk) + float(self.kappa)
        if bool(xp.any(degenerate)):
            means, nk, kappas = self._xp_reseed(
                rows, log_prob, degenerate, means, nk, kappas, resultant
            )
        self._xp_set_state(means, nk / xp.sum(nk), kappas, xp)

    def _xp_estimate_kappa(self, rbar, dim, xp):
        kappas = _xp_vmf.estimate_kappa(rbar, dim, xp)
        kappas = xp.where(xp.isnan(kappas), _KAPPA_MAX, kappas)
        return xp.clip(kappas, 0.0, _KAPPA_MAX)

    def _xp_reseed(self, rows, log_prob, degenerate, means, nk, kappas, resultant):
        """:meth:`_reseed` in ``rows.xp``; returns ``(means, nk, kappas)``."""
        xp, z = rows.xp, rows.z
        dim = z.shape[1]
        dev = _array_api.device(z)
        length = _xp_row_norms(z, xp)
        candidates = xp.nonzero(length > 0)[0]
        n_candidates = int(candidates.shape[0])
        if n_candidates:
            order = xp.take(
                candidates, xp.argsort(xp.take(log_prob, candidates), stable=True)
            )
            # the j-th degenerate component takes the j-th worst row
            rank = xp.cumulative_sum(xp.astype(degenerate, xp.int64)) - 1
            picks = xp.take(order, xp.clip(rank, min=0) % n_candidates)
            replacement = xp.take(z, picks, axis=0) / xp.take(length, picks)[:, None]
        else:  # no row carries a direction: any unit vector will do
            first_axis = xp.astype(xp.arange(dim, device=dev) == 0, z.dtype)
            replacement = xp.zeros_like(means) + first_axis[None, :]
        means = xp.where(degenerate[:, None], replacement, means)
        healthy = ~degenerate
        if self.kappa == "learned":
            n_healthy = int(xp.sum(xp.astype(healthy, xp.int64)))
            if n_healthy:
                fill = xp.sum(xp.where(healthy, kappas, 0.0)) / n_healthy
            else:
                tiny = float(xp.finfo(z.dtype).smallest_normal)
                total = xp.clip(
                    _xp_row_norms(xp.sum(resultant, axis=0)[None, :], xp)
                    / xp.clip(xp.sum(nk), min=tiny),
                    0.0,
                    _rbar_max(xp, z),
                )
                fill = self._xp_estimate_kappa(total, dim, xp)[0]
            kappas = xp.where(degenerate, fill, kappas)
        elif self.kappa == "revised":
            kappas = xp.where(degenerate, xp.mean(rows.kappa), kappas)
        nk = xp.where(degenerate, 1.0, nk)
        return means, nk, kappas

    def _xp_set_state(self, means, weights, kappas, xp=None):
        """:meth:`_set_state` for arrays of another namespace."""
        if xp is None:
            xp = _array_api.get_namespace(means)[0]
        self.means_ = means
        self.weights_ = weights
        self.kappas_ = kappas
        dim = means.shape[1]
        bias = xp.log(weights)  # log 0 = -inf: an emptied component
        if self.kappa == "learned":
            self._scaled_means = means * kappas[:, None]
            bias = bias + _xp_vmf.log_normalizer(dim, kappas, xp)
        elif self.kappa == "revised":
            self._scaled_means = means
        else:
            self._scaled_means = means * float(self.kappa)
        self._bias = bias

    # -------------------------------------------------------- prediction
    def _fitted_namespace(self):
        """Namespace of the fitted arrays; None when they are numpy."""
        if isinstance(self.means_, np.ndarray):
            return None
        if not _array_api.dispatch_enabled():
            raise ValueError(
                "this RevisedVMFMixture was fitted on "
                f"{type(self.means_).__module__.split('.')[0]} arrays with "
                "array_api_dispatch on; turn array_api_dispatch on (sklearn."
                "config_context(array_api_dispatch=True)) to use it, or refit it "
                "on numpy arrays."
            )
        return _array_api.get_namespace(self.means_)[0]

    def _rows_for_prediction(self, X, method):
        check_is_fitted(self)
        _array_api.check_same_namespace(X, self, attribute="means_", method=method)
        xp = self._fitted_namespace()
        refuse_empty(X, "X")
        if xp is None:
            refuse_complex(X, "X")
            X = validate_data(self, X, dtype=np.float64, reset=False)
            return self._prepare(X)
        refuse_complex(X, "X")  # on its device: no host copy
        X = validate_data(self, X, dtype=self.means_.dtype, reset=False)
        return self._prepare(X, xp)

    def predict(self, X):
        """Predict the component (or class) of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component indices, or labels from ``classes_`` when fitted with
            ``y``.

        Examples
        --------
        >>> import numpy as np
        >>> from skvmf.mixture import RevisedVMFMixture
        >>> X = np.array([[5.0, 0.1], [4.0, -0.2], [0.1, 6.0], [-0.3, 5.0]])
        >>> gm = RevisedVMFMixture().fit(X, ["x", "x", "y", "y"])
        >>> gm.predict([[3.0, 0.0], [0.0, 3.0]]).tolist()
        ['x', 'y']
        """
        rows = self._rows_for_prediction(X, "predict")
        _, resp = self._full_log_prob_resp(rows)
        return self._labels(_argmax_rows(resp, rows.xp))

    def predict_proba(self, X):
        """Posterior probability of each component given each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_components)
            Responsibilities; columns follow ``classes_`` when fitted with
            ``y``. Rows sum to 1.

        Examples
        --------
        >>> import numpy as np
        >>> from skvmf.mixture import RevisedVMFMixture
        >>> X = np.array([[5.0, 0.1], [4.0, -0.2], [0.1, 6.0], [-0.3, 5.0]])
        >>> gm = RevisedVMFMixture().fit(X, [0, 0, 1, 1])
        >>> gm.predict_proba([[9.0, 0.0]]).round(3).tolist()
        [[1.0, 0.0]]
        """
        _, resp = self._full_log_prob_resp(
            self._rows_for_prediction(X, "predict_proba")
        )
        return resp

    def score_samples(self, X):
        """Log-density of each row's direction given its strength.

        ``log p(o_i | l_i) = logsumexp_y(log pi_y + log C_d(kappa) +
        kappa cos(o_i, mu_y))`` with respect to the surface measure
        on the unit sphere, ``log C_d`` included.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
            Log-densities.

        Examples
        --------
        >>> import numpy as np
        >>> from skvmf.mixture import RevisedVMFMixture
        >>> X = np.array([[5.0, 0.1], [4.0, -0.2], [0.1, 6.0], [-0.3, 5.0]])
        >>> gm = RevisedVMFMixture(2, random_state=0).fit(X)
        >>> gm.score_samples(X).shape
        (4,)
        """
        log_prob, _ = self._full_log_prob_resp(
            self._rows_for_prediction(X, "score_samples")
        )
        return log_prob

    def score(self, X, y=None):
        """Mean log-density of the rows' directions given their strengths.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows.
        y : None
            Ignored.

        Returns
        -------
        score : float
            Mean of :meth:`score_samples`.

        Examples
        --------
        >>> import numpy as np
        >>> from skvmf.mixture import RevisedVMFMixture
        >>> X = np.array([[5.0, 0.1], [4.0, -0.2], [0.1, 6.0], [-0.3, 5.0]])
        >>> gm = RevisedVMFMixture(2, random_state=0).fit(X)
        >>> bool(np.isclose(gm.score(X), gm.score_samples(X).mean()))
        True
        """
        return _float_mean(self.score_samples(X))

    def _n_parameters(self):
        n_components, dim = self.means_.shape
        n = (n_components - 1) + n_components * (dim - 1)
        if self.kappa == "learned":
            n += n_components
        return n

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better).

        ``-2 n score(X) + p log n`` with ``p = (K - 1) + K (d - 1)`` free
        parameters (weights and unit directions), plus ``K`` concentrations
        in ``"learned"`` mode.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows.

        Returns
        -------
        bic : float
            The criterion.

        Examples
        --------
        >>> import numpy as np
        >>> from skvmf.mixture import RevisedVMFMixture
        >>> X = np.array([[5.0, 0.1], [4.0, -0.2], [0.1, 6.0], [-0.3, 5.0]])
        >>> gm = RevisedVMFMixture(2, random_state=0).fit(X)
        >>> bool(np.isclose(gm.bic(X), -2 * 4 * gm.score(X) + 3 * np.log(4)))
        True
        """
        log_prob = self.score_samples(X)
        n = log_prob.shape[0]
        return -2 * _float_sum(log_prob) + self._n_parameters() * float(np.log(n))

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better).

        ``-2 n score(X) + 2 p`` with ``p`` counted as in :meth:`bic`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Feature rows.

        Returns
        -------
        aic : float
            The criterion.

        Examples
        --------
        >>> import numpy as np
        >>> from skvmf.mixture import RevisedVMFMixture
        >>> X = np.array([[5.0, 0.1], [4.0, -0.2], [0.1, 6.0], [-0.3, 5.0]])
        >>> gm = RevisedVMFMixture(2, kappa="learned", random_state=0).fit(X)
        >>> bool(np.isclose(gm.aic(X), -2 * 4 * gm.score(X) + 2 * 5))
        True
        """
        return -2 * _float_sum(self.score_samples(X)) + 2 * self._n_parameters()

    @validate_params(
        {"n_samples": [Interval(Integral, 1, None, closed="left")]},
        prefer_skip_nested_validation=True,
    )
    def sample(self, n_samples=1):
        """Draw rows from the fitted mixture.

        Components are drawn by ``weights_``. In ``"revised"`` mode each row
        gets a strength resampled from the training strengths (kept as
        quantiles), a direction from its component's vMF at
        ``kappa(strength)``, and is returned as strength times direction. In
        the other modes the model is over directions only and rows are unit
        vectors from ``vMF(means_[k], kappas_[k])``.

        The draws are made on the host (numpy) from the fitted parameters.
        For a mixture fitted on another Array API namespace, the rows and
        labels are moved to its namespace and device while
        ``array_api_dispatch`` is on, and returned as numpy otherwise
        (labels of text ``classes_`` always stay numpy).

        Parameters
        ----------
        n_samples : int, default=1
            Number of rows.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            The rows, grouped by component.
        labels : ndarray of shape (n_samples,)
            Their components, or class labels when fitted with ``y``.

        Examples
        --------
        >>> import numpy as np
        >>> from skvmf.mixture import RevisedVMFMixture
        >>> X = np.array([[5.0, 0.1], [4.0, -0.2], [0.1, 6.0], [-0.3, 5.0]])
        >>> gm = RevisedVMFMixture(2, kappa=20.0, random_state=0).fit(X)
        >>> S, labels = gm.sample(5)
        >>> S.shape, bool(np.allclose(np.linalg.norm(S, axis=1), 1.0))
        ((5, 2), True)
        """
        check_is_fitted(self)
        if not isinstance(self.means_, np.ndarray):
            return self._sample_from_device_fit(n_samples)
        rng = check_random_state(self.random_state)
        n_components, dim = self.means_.shape
        counts = rng.multinomial(n_samples, self.weights_)
        blocks = []
        for k, count in enumerate(counts):
            if count == 0:
                continue
            if self.kappa == "revised":
                blocks.append(self._sample_revised(k, int(count), rng))
            else:
                blocks.append(
                    np.asarray(
                        vmf_sample(
                            self.means_[k],
                            float(self.kappas_[k]),
                            int(count),
                            random_state=rng,
                        ),
                        dtype=float,
                    ).reshape(int(count), dim)
                )
        X = np.vstack(blocks)
        labels = np.repeat(np.arange(n_components), counts)
        return X, self._labels(labels)

    def _sample_from_device_fit(self, n_samples):
        """:meth:`sample` of a mixture fitted in another namespace.

        Draws from a host copy of the (small) fitted parameters, in float64,
        and moves the result to the fitted namespace and device when
        dispatch is on.
        """
        fitted = {
            name: getattr(self, name)
            for name in ("means_", "weights_", "kappas_", "_strength_quantiles")
            if hasattr(self, name)
        }
        classes = getattr(self, "classes_", None)
        host = copy.copy(self)
        for name, value in fitted.items():
            setattr(host, name, _array_api.to_numpy(value).astype(np.float64))
        # float32 weights may sum to slightly over 1, which multinomial refuses
        host.weights_ = host.weights_ / host.weights_.sum()
        if classes is not None:
            host.classes_ = _array_api.to_numpy(classes)
        X, labels = host.sample(n_samples)
        if not _array_api.dispatch_enabled():
            return X, labels
        xp, _, dev = _array_api.get_namespace_and_device(self.means_)
        X = xp.astype(_array_api.move_to(X, xp=xp, device=dev), self.means_.dtype)
        if classes is None or not isinstance(classes, np.ndarray):
            labels = _array_api.move_to(labels, xp=xp, device=dev)
        return X, labels

    def _sample_revised(self, k, count, rng):
        dim = self.means_.shape[1]
        strengths = rng.choice(self._strength_quantiles, size=count)
        kappa = np.minimum(
            np.asarray(
                revised_kappa(
                    np.minimum(strengths, _STRENGTH_MAX_OVER_SIGMA * self.sigma),
                    dim,
                    self.sigma,
                ),
                dtype=float,
            ),
            _KAPPA_MAX,
        )
        out = np.empty((count, dim))
        values, inverse = np.unique(kappa, return_inverse=True)
        for j, value in enumerate(values):
            where = np.flatnonzero(inverse == j)
            out[where] = np.asarray(
                vmf_sample(self.means_[k], float(value), where.size, random_state=rng),
                dtype=float,
            ).reshape(where.size, dim)
        out *= strengths[:, None]
        return out

    # ------------------------------------------------------------ verbose
    def _verbose_init_begin(self, init):
        message(f"Initialization {init}", verbose=self.verbose, level=1)
        self._init_prev_time = self._iter_prev_time = time()

    def _verbose_iter_end(self, n_iter, change):
        if n_iter % self.verbose_interval:
            return
        if self.verbose >= 2:
            now = time()
            message(
                f"  Iteration {n_iter}\t time lapse {now - self._iter_prev_time:.5f}s"
                f"\t ll change {change:.5f}",
                verbose=self.verbose,
                level=2,
            )
            self._iter_prev_time = now
        else:
            message(f"  Iteration {n_iter}", verbose=self.verbose, level=1)

    def _verbose_init_end(self, lower_bound, converged):
        status = "converged" if converged else "did not converge"
        if self.verbose >= 2:
            message(
                f"Initialization {status}. time lapse "
                f"{time() - self._init_prev_time:.5f}s\t lower bound "
                f"{lower_bound:.5f}.",
                verbose=self.verbose,
                level=2,
            )
        else:
            message(f"Initialization {status}.", verbose=self.verbose, level=1)
