"""Knowledge points: the discriminative regions of each layer (SPEC 6).

Every embedded regional feature h (from :class:`skvmf.RegionalAligner`)
lives in the space of the projected sample features, with the category
directions mu_c of :class:`skvmf.projection.SampleProjector`. Its category
posterior under the revised vMF model is

    p(y = c | h) = softmax_c(kappa(||h||) cos(h, mu_c) [+ log pi_c]),

with the strength rescaled per layer so that the mean regional strength is 1
(supplement, section F), which makes layers comparable. A region is a
*knowledge point* when ``max_c p(y = c | h) > tau`` (tau = 0.4 in the paper),
and a *reliable* one when that argmax is the image's true label.

References
----------
Li, Wang, Zhang. "Visualizing the Emergence of Intermediate Visual Patterns
in DNNs", NeurIPS 2021, section 3.4 and supplement section F.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real

import numpy as np
from scipy.special import log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._arrays import refuse_complex
from ._torch.utils import safe_norm, to_numpy, unit_rows
from .features import FeatureSet

__all__ = ["KnowledgePointCounter"]

_SINGLE_LAYER = "h"
# Largest concentration used: kappa * cos and the softmax stay finite, and at
# this size the posterior is already a hard argmax.
_KAPPA_CAP = 1e300


def _real_float64(value, name):
    """``value`` (array or tensor) as float64; complex refused by ``name``."""
    refuse_complex(value, name)
    return np.asarray(to_numpy(value), dtype=np.float64)


def _check_directions(directions):
    """Unit category directions from ``directions`` of any finite scale."""
    mu = _real_float64(directions, "directions")
    if mu.ndim != 2 or mu.shape[0] < 2:
        raise ValueError(
            f"directions must have shape (C, d') with C >= 2; got {mu.shape}"
        )
    if not np.isfinite(mu).all() or not (safe_norm(mu, dim=1) > 0).all():
        raise ValueError("directions must be finite, non-zero vectors")
    # rescaled before the norm: directions of 1e300 or 1e-200 stay unit rows
    return unit_rows(mu, dim=1)


def _check_priors(priors, n_classes):
    """Normalised category priors, or ``None``."""
    if priors is None:
        return None
    pi = _real_float64(priors, "priors")
    if pi.shape != (n_classes,):
        raise ValueError(f"priors must have shape ({n_classes},); got {pi.shape}")
    if not np.isfinite(pi).all() or (pi < 0).any() or not pi.sum() > 0:
        raise ValueError("priors must be finite, non-negative, not all zero")
    # rescaled first so that priors of 1e308 do not overflow the sum
    pi = pi / pi.max()
    return pi / pi.sum()


class KnowledgePointCounter(ClassifierMixin, BaseEstimator):
    """Count each layer's knowledge points and classify images by their vote.

    Parameters
    ----------
    tau : float in (0, 1), default=0.4
        A region is a knowledge point when its largest category posterior
        exceeds ``tau``.
    layer : str, optional
        The layer analysed by :meth:`predict` and :meth:`score` (and the
        default of :meth:`region_posteriors` and :meth:`masks`); ``None``
        means the last (deepest) layer of the input's ``h``.
    kappa : "revised" or float, default="revised"
        ``"revised"``: the concentration is kappa(l) of
        :func:`skvmf.vmf.revised_kappa` at the rescaled strength l, in
        dimension d' with noise ``sigma``; a positive float: one fixed
        concentration (the strength then plays no role).
    sigma : float, default=1.0
        Noise level of the revised kappa(l).
    prior : bool, default=False
        Add the category log-priors log pi_c to the posterior's logits.
    normalize_strength : bool, default=True
        Rescale each layer's h so that the mean regional strength of the fit
        data is 1 (SPEC 6); the scales learned in :meth:`fit` are reused on
        new data.

    Attributes
    ----------
    scales_ : dict of str to float
        Per layer, the mean regional strength ||h|| of the fit data (the
        divisor of the strengths; 1.0 with ``normalize_strength=False``).
    layers_ : list of str
        The layers seen in :meth:`fit`, in order.
    directions_ : ndarray of shape (n_classes, d')
        Unit category directions mu_c.
    priors_ : ndarray of shape (n_classes,) or None
        Category priors pi_c (None when the input had none).
    classes_ : ndarray of shape (n_classes,)
        Category labels (the FeatureSet's ``classes``, else ``0 .. C-1``).
    no_point_label_ : object
        What :meth:`predict` returns for an image without knowledge points:
        -1 (or ``min(classes_) - 1`` if -1 is a class) for numeric classes,
        ``None`` otherwise; never equal to a class label.

    Notes
    -----
    Inputs. ``X`` is a :class:`~skvmf.features.FeatureSet` whose ``h`` holds
    the embedded regions of one or more layers (N, R, d'), with
    ``directions`` (and ``priors`` when ``prior=True``) from the
    :class:`~skvmf.projection.SampleProjector`. Users with raw arrays pass
    ``X`` as a dict ``{layer: h}`` (or one array (N, R, d'), a layer named
    ``"h"``) and give ``directions=`` / ``priors=`` to :meth:`fit`. The
    directions, priors and classes are fixed at fit time and used for every
    later call.

    The vote of :meth:`predict`: an image's label is the argmax of the sum,
    over its knowledge points at the analysed layer, of their posteriors
    p(y | h) (a soft vote; with a tau below 1/C every region is a point and
    the vote is the region-averaged prediction). An image without knowledge
    points gets ``no_point_label_`` and counts as wrong in :meth:`score`
    (SPEC 6), so neither tau -> 1 (no points) nor tau -> 0 (every region)
    trivially maximises the score.

    The counter is a final step (a classifier with ``predict``/``score``, no
    ``transform``): :meth:`masks`, :meth:`region_posteriors` and
    :meth:`count` give the per-region results.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.features import FeatureSet
    >>> from skvmf.knowledge import KnowledgePointCounter
    >>> mu = np.eye(3)
    >>> h = np.zeros((2, 4, 3))
    >>> h[0, :2] = [5.0, 0.1, 0.0]      # two strong regions along mu_0
    >>> h[1, :3] = [0.2, 6.0, 0.0]      # three strong regions along mu_1
    >>> h[:, :, 2] += 0.05               # the rest: weak, undecided
    >>> fs = FeatureSet(h={"conv": h}, directions=mu)
    >>> kpc = KnowledgePointCounter(tau=0.5).fit(fs, [0, 1])
    >>> kpc.masks(fs)[0].sum(axis=1)
    array([2, 3])
    >>> kpc.predict(fs)
    array([0, 1])
    >>> rec = kpc.count(fs, [0, 1])[0]
    >>> rec["mean_count"], rec["reliable_ratio"]
    (2.5, 1.0)
    """

    _parameter_constraints: dict = {
        "tau": [Interval(Real, 0, 1, closed="neither")],
        "layer": [str, None],
        "kappa": [StrOptions({"revised"}), Interval(Real, 0, None, closed="neither")],
        "sigma": [Interval(Real, 0, None, closed="neither")],
        "prior": ["boolean"],
        "normalize_strength": ["boolean"],
    }

    def __init__(
        self,
        tau=0.4,
        *,
        layer=None,
        kappa="revised",
        sigma=1.0,
        prior=False,
        normalize_strength=True,
    ):
        self.tau = tau
        self.layer = layer
        self.kappa = kappa
        self.sigma = sigma
        self.prior = prior
        self.normalize_strength = normalize_strength

    # -- input handling ------------------------------------------------------
    @staticmethod
    def _maps(X) -> dict:
        """The embedded regions per layer, as float64 arrays (N, R, d')."""
        if isinstance(X, FeatureSet):
            maps = X.h
            if not maps:
                raise ValueError(
                    "this FeatureSet has no embedded regions (FeatureSet.h is "
                    "empty); run a RegionalAligner on it first"
                )
        elif isinstance(X, Mapping):
            maps = X
            if not maps:
                raise ValueError("X is an empty mapping; expected {layer: h}")
        else:
            maps = {_SINGLE_LAYER: X}
        out, n_images = {}, None
        for name, value in maps.items():
            arr = _real_float64(value, f"the embedded regions of layer {name!r}")
            if arr.ndim != 3:
                raise ValueError(
                    f"the embedded regions of layer {name!r} must have shape "
                    f"(N, R, d'); got {arr.shape}"
                )
            if arr.shape[1] < 2:
                raise ValueError(
                    f"layer {name!r} has {arr.shape[1]} region per image (shape "
                    f"{arr.shape}); knowledge points need a grid of R >= 2 regions"
                )
            if not np.isfinite(arr).all():
                raise ValueError(
                    f"the embedded regions of layer {name!r} contain NaN or "
                    "infinite values"
                )
            if n_images is None:
                n_images = arr.shape[0]
            elif arr.shape[0] != n_images:
                raise ValueError(
                    f"every layer needs the same number of images; layer {name!r} "
                    f"has {arr.shape[0]}, the first layer {n_images}"
                )
            out[str(name)] = arr
        return out

    def _check_y(self, y, n_images):
        refuse_complex(y, "y")
        y = np.asarray(to_numpy(y))
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D (one label per image); got {y.shape}")
        if y.shape[0] != n_images:
            raise ValueError(
                f"y has {y.shape[0]} labels but the embedded regions hold "
                f"{n_images} images"
            )
        unknown = ~np.isin(y, self.classes_)
        if unknown.any():
            raise ValueError(
                f"y contains labels that are not categories: {y[unknown][0]!r} "
                f"(classes_ = {self.classes_.tolist()})"
            )
        return y

    # -- fitting -------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, directions=None, priors=None):
        """Learn each layer's strength scale and keep the category model.

        Parameters
        ----------
        X : FeatureSet, dict of str to ndarray, or ndarray of shape (N, R, d')
            Embedded regions per layer (``FeatureSet.h``); see Notes.
        y : array-like of shape (N,), optional
            True labels; only checked here (they are not needed to fit).
        directions : array-like of shape (C, d'), optional
            Category directions mu_c; required when X is not a FeatureSet
            with ``directions``, and overrides them otherwise.
        priors : array-like of shape (C,), optional
            Category priors pi_c (used when ``prior=True``); overrides the
            FeatureSet's.

        Returns
        -------
        self : KnowledgePointCounter
            The fitted estimator.
        """
        maps = self._maps(X)
        fs = X if isinstance(X, FeatureSet) else None
        mu = self._fit_directions(maps, fs, directions)
        pi = self._fit_priors(fs, priors, mu.shape[0])
        classes = self._fit_classes(fs, mu.shape[0])
        self.directions_ = mu
        self.priors_ = pi
        self.classes_ = classes
        self.scales_ = self._strength_scales(maps)
        self.layers_ = list(maps)
        self.no_point_label_ = self._no_point_label(classes)
        if y is not None:
            self._check_y(y, next(iter(maps.values())).shape[0])
        return self

    # -- the steps of fit ----------------------------------------------------
    @staticmethod
    def _fit_directions(maps, fs, directions):
        """Unit category directions (argument, else the FeatureSet's)."""
        if directions is None and fs is not None:
            directions = fs.directions
        if directions is None:
            raise ValueError(
                "KnowledgePointCounter needs the category directions: pass a "
                "FeatureSet with directions (from a SampleProjector) or "
                "directions=..."
            )
        mu = _check_directions(directions)
        dim = mu.shape[1]
        for name, arr in maps.items():
            if arr.shape[2] != dim:
                raise ValueError(
                    f"layer {name!r} has regions of dimension {arr.shape[2]} but "
                    f"the directions have dimension {dim}"
                )
        return mu

    def _fit_priors(self, fs, priors, n_classes):
        """Category priors (argument, else the FeatureSet's); required by prior."""
        if priors is None and fs is not None:
            priors = fs.priors
        if priors is None and self.prior:
            raise ValueError(
                "prior=True needs category priors: a FeatureSet with priors "
                "or priors=..."
            )
        return _check_priors(priors, n_classes)

    @staticmethod
    def _fit_classes(fs, n_classes):
        """The FeatureSet's class labels, else ``0 .. C-1``."""
        if fs is None or fs.classes is None:
            return np.arange(n_classes)
        classes = np.asarray(fs.classes)
        if classes.shape != (n_classes,):
            raise ValueError(
                f"FeatureSet.classes has shape {classes.shape} but there are "
                f"{n_classes} directions"
            )
        return classes

    def _strength_scales(self, maps):
        """Per layer, the mean regional strength (1.0 without normalising)."""
        scales = {}
        for name, arr in maps.items():
            if not self.normalize_strength:
                scales[name] = 1.0
                continue
            strength = safe_norm(arr, dim=2)
            top = float(strength.max()) if strength.size else 0.0
            # the mean of strengths near 1e308 would overflow its sum
            mean_strength = float((strength / top).mean()) * top if top > 0 else 0.0
            if not mean_strength > 0:
                raise ValueError(
                    f"layer {name!r}: every embedded region is zero; the strength "
                    "scale is undefined"
                )
            scales[name] = mean_strength
        return scales

    @staticmethod
    def _no_point_label(classes):
        if np.issubdtype(classes.dtype, np.number):
            if -1 not in classes:
                return classes.dtype.type(-1)
            return classes.dtype.type(classes.min() - 1)
        return None

    # -- posteriors and masks ------------------------------------------------
    def _layer_name(self, maps, layer):
        name = layer if layer is not None else self.layer
        if name is None:
            name = list(maps)[-1]
        if name not in maps:
            raise ValueError(f"no layer {name!r} in the input; available: {list(maps)}")
        if name not in self.scales_:
            raise ValueError(
                f"layer {name!r} was not seen in fit (fitted layers: {self.layers_})"
            )
        return name

    def _log_posteriors(self, H, name):
        # safe norms: regions of 1e300 or 1e-200 keep their strength and
        # direction (the strength is divided by the layer's scale below)
        strength = safe_norm(H, dim=2)
        unit = unit_rows(H, dim=2)
        cos = unit @ self.directions_.T
        if isinstance(self.kappa, str):
            from .vmf import revised_kappa

            kappa = np.asarray(
                revised_kappa(
                    strength / self.scales_[name], H.shape[2], sigma=self.sigma
                ),
                dtype=np.float64,
            )
            # kappa(l) is inf where (l / sigma)^2 overflows (unnormalised
            # strengths near 1e300); capped so kappa * cos stays finite
            kappa = np.minimum(kappa, _KAPPA_CAP)
        else:
            kappa = np.full_like(strength, float(self.kappa))
        logits = kappa[..., None] * cos
        if self.prior:
            with np.errstate(divide="ignore"):
                logits = logits + np.log(self.priors_)
        return log_softmax(logits, axis=2)

    def _checked_maps(self, X):
        check_is_fitted(self)
        maps = self._maps(X)
        dim = self.directions_.shape[1]
        for name, arr in maps.items():
            if arr.shape[2] != dim:
                raise ValueError(
                    f"layer {name!r} has regions of dimension {arr.shape[2]} but "
                    f"the fitted directions have dimension {dim}"
                )
        return maps

    def region_posteriors(self, X, layer=None):
        """Category posteriors p(y = c | h) of every region of one layer.

        Parameters
        ----------
        X : FeatureSet, dict of str to ndarray, or ndarray of shape (N, R, d')
            Embedded regions.
        layer : str, optional
            The layer; defaults to ``self.layer``, else the last layer of X.

        Returns
        -------
        ndarray of shape (N, R, C)
            Posteriors; each region's row sums to 1.
        """
        maps = self._checked_maps(X)
        name = self._layer_name(maps, layer)
        return np.exp(self._log_posteriors(maps[name], name))

    def masks(self, X, layer=None):
        """Which regions are knowledge points, and the category of each region.

        Parameters
        ----------
        X : FeatureSet, dict of str to ndarray, or ndarray of shape (N, R, d')
            Embedded regions.
        layer : str, optional
            The layer; defaults to ``self.layer``, else the last layer of X.

        Returns
        -------
        points : ndarray of shape (N, R), dtype bool
            ``max_c p(y = c | h) > tau``.
        labels : ndarray of shape (N, R)
            Each region's most probable category (from ``classes_``), whether
            or not it is a knowledge point.
        """
        maps = self._checked_maps(X)
        name = self._layer_name(maps, layer)
        return self._points(self._log_posteriors(maps[name], name))

    def _points(self, log_post):
        # compared in log space: near tau = 1 the posterior itself rounds to 1
        points = log_post.max(axis=2) > np.log(self.tau)
        return points, self.classes_[np.argmax(log_post, axis=2)]

    def count(self, X, y):
        """Knowledge points per layer: how many, and how many are reliable.

        Parameters
        ----------
        X : FeatureSet, dict of str to ndarray, or ndarray of shape (N, R, d')
            Embedded regions; every layer is reported, in X's order.
        y : array-like of shape (N,)
            True labels: a point is reliable when its category is the label.

        Returns
        -------
        list of dict
            One record per layer (a table: ``pandas.DataFrame(records)``)
            with ``layer``, ``n_images``, ``n_regions`` (R per image),
            ``total_points``, ``total_reliable``, ``mean_count`` and
            ``mean_reliable`` (per image), and ``reliable_ratio``
            (``total_reliable / total_points``, 0.0 when there is no point).
        """
        maps = self._checked_maps(X)
        n_images = next(iter(maps.values())).shape[0]
        y = self._check_y(y, n_images)
        records = []
        for name, H in maps.items():
            self._layer_name(maps, name)
            points, labels = self._points(self._log_posteriors(H, name))
            reliable = points & (labels == y[:, None])
            total = int(points.sum())
            total_reliable = int(reliable.sum())
            records.append(
                {
                    "layer": name,
                    "n_images": int(n_images),
                    "n_regions": int(H.shape[1]),
                    "total_points": total,
                    "total_reliable": total_reliable,
                    "mean_count": total / n_images if n_images else 0.0,
                    "mean_reliable": total_reliable / n_images if n_images else 0.0,
                    "reliable_ratio": total_reliable / total if total else 0.0,
                }
            )
        return records

    # -- the vote ------------------------------------------------------------
    def predict(self, X):
        """Each image's category by a vote of its knowledge points.

        The posteriors of the image's knowledge points at the analysed layer
        (``layer``, else the last) are summed and the largest category wins.

        Parameters
        ----------
        X : FeatureSet, dict of str to ndarray, or ndarray of shape (N, R, d')
            Embedded regions.

        Returns
        -------
        ndarray of shape (N,)
            Labels from ``classes_``; ``no_point_label_`` for images without
            knowledge points.
        """
        maps = self._checked_maps(X)
        name = self._layer_name(maps, None)
        log_post = self._log_posteriors(maps[name], name)
        points, _ = self._points(log_post)
        votes = (np.exp(log_post) * points[..., None]).sum(axis=1)
        winner = self.classes_[np.argmax(votes, axis=1)]
        none = ~points.any(axis=1)
        if self.no_point_label_ is None:
            winner = winner.astype(object)
        winner[none] = self.no_point_label_
        return winner

    def score(self, X, y, sample_weight=None):
        """Accuracy of the knowledge-point vote; images without points are wrong.

        Parameters
        ----------
        X : FeatureSet, dict of str to ndarray, or ndarray of shape (N, R, d')
            Embedded regions.
        y : array-like of shape (N,)
            True labels.
        sample_weight : array-like of shape (N,), optional
            Weights of the images.

        Returns
        -------
        float
            The (weighted) fraction of images whose vote equals their label.
        """
        pred = self.predict(X)
        y = self._check_y(y, pred.shape[0])
        correct = (pred == y).astype(np.float64)
        if sample_weight is None:
            return float(correct.mean())
        w = _real_float64(sample_weight, "sample_weight")
        if w.shape != correct.shape:
            raise ValueError(
                f"sample_weight must have shape {correct.shape}; got {w.shape}"
            )
        return float(np.average(correct, weights=w))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # regions per image: a FeatureSet, a dict of 3-D arrays or one 3-D array
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.target_tags.required = False
        return tags
