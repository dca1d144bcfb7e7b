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

import math
from collections.abc import Mapping
from numbers import Real

import numpy as np
from scipy.special import log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _array_api
from ._numerics.arrays import (
    real_array,
    refuse_complex,
    safe_norm,
    to_numpy,
    unit_rows,
)
from ._persistence import DevicePicklingMixin
from .features import FeatureSet

__all__ = ["KnowledgePointCounter"]

_SINGLE_LAYER = "h"
# Largest concentration used: kappa * cos and the softmax stay finite, and at
# this size the posterior is already a hard argmax.
_KAPPA_CAP = 1e300


def _real_float64(value, name):
    """``value`` (array or tensor) as float64 numpy, by the package's rule."""
    return real_array(value, name, np.float64)


def _namespace(arrays):
    """``(xp, device)`` when dispatch computes ``arrays`` outside numpy.

    ``(None, None)`` selects the numpy path: dispatch off (any input is
    converted to float64 numpy, as always) or numpy input.
    """
    if not _array_api.dispatch_enabled():
        return None, None
    try:
        xp, _, dev = _array_api.get_namespace_and_device(*arrays)
    except (TypeError, ValueError) as exc:
        # scikit-learn's words, with the layers' arrays named as such
        raise ValueError(
            "the embedded regions of every layer must share one array "
            f"namespace and one device: {exc}"
        ) from exc
    if _array_api.is_numpy(xp):
        return None, None
    return xp, dev


def _xp_real(value, name, xp, dev, dtype=None):
    """``value`` moved to ``xp`` on ``dev`` (as ``dtype``), by the package's rule.

    Lists and numpy arrays are checked on the host first (they are there);
    arrays of another namespace or device are checked where they are, then
    follow X (scikit-learn's ``move_to``).
    """
    value = real_array(value, name, host=False)
    value = _array_api.move_to(value, xp=xp, device=dev)
    return value if dtype is None else xp.astype(value, dtype)


def _norm_xp(x, axis, xp):
    """:func:`safe_norm` in ``xp`` (keeping the axis): no overflow, no underflow."""
    scale = xp.max(xp.abs(x), axis=axis, keepdims=True)
    safe = xp.where(scale > 0, scale, xp.ones_like(scale))
    y = x / safe
    return xp.sqrt(xp.sum(y * y, axis=axis, keepdims=True)) * safe


def _unit_xp(x, axis, xp):
    """:func:`unit_rows` in ``xp``; zero vectors stay zero."""
    norm = _norm_xp(x, axis, xp)
    return x / xp.where(norm > 0, norm, xp.ones_like(norm))


def _all_finite(x, xp) -> bool:
    """One bool read back from the device."""
    return bool(xp.all(xp.isfinite(x)))


def _check_directions(directions, xp=None, dev=None, dtype=None):
    """Unit category directions from ``directions`` of any finite scale."""
    if xp is None:
        mu = _real_float64(directions, "directions")
    else:
        mu = _xp_real(directions, "directions", xp, dev, dtype)
    if mu.ndim != 2 or mu.shape[0] < 2:
        raise ValueError(
            f"directions must have shape (C, d') with C >= 2; got {tuple(mu.shape)}"
        )
    if xp is not None:
        if not _all_finite(mu, xp) or not bool(xp.all(_norm_xp(mu, 1, xp) > 0)):
            raise ValueError("directions must be finite, non-zero vectors")
        return _unit_xp(mu, 1, xp)
    if not np.isfinite(mu).all() or not (safe_norm(mu, dim=1) > 0).all():
        raise ValueError("directions must be finite, non-zero vectors")
    # rescaled before the norm: directions of 1e300 or 1e-200 stay unit rows
    return unit_rows(mu, dim=1)


def _check_priors(priors, n_classes, xp=None, dev=None, dtype=None):
    """Normalised category priors, or ``None``."""
    if priors is None:
        return None
    if xp is None:
        pi = _real_float64(priors, "priors")
    else:
        pi = _xp_real(priors, "priors", xp, dev, dtype)
    if tuple(pi.shape) != (n_classes,):
        raise ValueError(
            f"priors must have shape ({n_classes},); got {tuple(pi.shape)}"
        )
    if xp is not None:
        if not _all_finite(pi, xp) or bool(xp.any(pi < 0)) or not float(xp.sum(pi)) > 0:
            raise ValueError("priors must be finite, non-negative, not all zero")
        pi = pi / xp.max(pi)
        return pi / xp.sum(pi)
    if not np.isfinite(pi).all() or (pi < 0).any() or not pi.sum() > 0:
        raise ValueError("priors must be finite, non-negative, not all zero")
    # rescaled first so that priors of 1e308 do not overflow the sum
    pi = pi / pi.max()
    return pi / pi.sum()


def _check_sample_weight(w, n, xp):
    """Finite, non-negative image weights of shape (n,) that are not all zero.

    Returns the weights divided by their maximum, so that their sum cannot
    overflow (a common factor: the weighted mean is unchanged).
    """
    if tuple(w.shape) != (n,):
        raise ValueError(f"sample_weight must have shape ({n},); got {tuple(w.shape)}")
    if not bool(xp.all(xp.isfinite(w))):
        raise ValueError("sample_weight must be finite; got NaN or infinite weights")
    if bool(xp.any(w < 0)):
        raise ValueError("sample_weight must be non-negative; got a negative weight")
    top = float(xp.max(w)) if n else 0.0
    if not top > 0:
        raise ValueError(
            "sample_weight sums to zero: at least one image needs a positive weight"
        )
    return w / top


class KnowledgePointCounter(DevicePicklingMixin, ClassifierMixin, BaseEstimator):
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
    directions_ : array of shape (n_classes, d')
        Unit category directions mu_c (in X's namespace, see Notes).
    priors_ : array of shape (n_classes,) or None
        Category priors pi_c (None when the input had none).
    classes_ : array of shape (n_classes,)
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

    Arrays and devices (SPEC 10). With scikit-learn's ``array_api_dispatch``
    on and embedded regions of another namespace (torch tensors on any
    device, array-api-strict arrays ...), the fitted ``directions_``,
    ``priors_`` and numeric ``classes_`` and every output stay in that
    namespace and on that device, computed in float64 where the device has
    it (as the numpy path computes; float32 with a warning otherwise);
    directions, priors, ``y`` and ``sample_weight`` follow X. ``score`` and
    :meth:`count` return Python numbers; text classes stay a numpy array
    (so do the labels of :meth:`masks` and :meth:`predict` then). Methods
    called with X in another namespace or on another device than the fit's
    raise a ``ValueError`` naming both. Without dispatch: numpy float64.

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
    def _maps(X):
        """The embedded regions per layer (N, R, d'), with their namespace.

        Returns ``(maps, xp, device)``: float64 numpy arrays and
        ``xp = None`` on the numpy path; with dispatch on and arrays of
        another namespace, those arrays on their device, as float64 where
        the device has it (float32 with a warning otherwise), the dtype the
        numpy path computes in.
        """
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
        xp, dev = _namespace(
            [v for v in maps.values() if not isinstance(v, (list, tuple))]
        )
        dtype = None
        if xp is not None:
            dtype = _array_api.float_dtype(
                xp, dev, name="KnowledgePointCounter's posteriors"
            )
        out, n_images = {}, None
        for name, value in maps.items():
            what = f"the embedded regions of layer {name!r}"
            if xp is None:
                arr = _real_float64(value, what)
            else:
                arr = _xp_real(value, what, xp, dev, dtype)
            shape = tuple(arr.shape)
            if arr.ndim != 3:
                raise ValueError(f"{what} must have shape (N, R, d'); got {shape}")
            if shape[0] == 0:
                raise ValueError(f"{what} are empty: 0 images (shape {shape})")
            if shape[1] < 2:
                raise ValueError(
                    f"layer {name!r} has {shape[1]} region per image (shape "
                    f"{shape}); knowledge points need a grid of R >= 2 regions"
                )
            finite = np.isfinite(arr).all() if xp is None else _all_finite(arr, xp)
            if not finite:
                raise ValueError(f"{what} contain NaN or infinite values")
            if n_images is None:
                n_images = shape[0]
            elif shape[0] != n_images:
                raise ValueError(
                    f"every layer needs the same number of images; layer {name!r} "
                    f"has {shape[0]}, the first layer {n_images}"
                )
            out[str(name)] = arr
        return out, xp, dev

    def _host_classes(self):
        return isinstance(self.classes_, np.ndarray)

    def _check_y(self, y, n_images, xp=None, dev=None):
        """Labels as an array like ``classes_`` (X's namespace when it is)."""
        if xp is None or self._host_classes():
            return self._check_y_host(y, n_images)
        if isinstance(y, (list, tuple)):
            y = np.asarray(y)
        if isinstance(y, np.ndarray) and not (
            np.issubdtype(y.dtype, np.number) or y.dtype == bool
        ):
            # text labels cannot be numeric categories
            y = self._check_y_host(y, n_images)
        y = _xp_real(y, "y", xp, dev)
        if y.ndim != 1:
            raise ValueError(
                f"y must be 1-D (one label per image); got {tuple(y.shape)}"
            )
        if y.shape[0] != n_images:
            raise ValueError(
                f"y has {y.shape[0]} labels but the embedded regions hold "
                f"{n_images} images"
            )
        classes = self.classes_
        if y.dtype != classes.dtype and not (
            xp.isdtype(y.dtype, "integral") and xp.isdtype(classes.dtype, "integral")
        ):
            # compared as floats: mixed kinds do not promote in the standard
            wide = _array_api.max_float_dtype(xp, dev)
            yc, cc = xp.astype(y, wide), xp.astype(classes, wide)
        else:
            yc, cc = y, classes
        known = xp.any(xp.expand_dims(yc, 1) == xp.expand_dims(cc, 0), axis=1)
        if not bool(xp.all(known)):
            bad = _array_api.to_numpy(y[~known])[0]
            raise ValueError(
                f"y contains labels that are not categories: {bad!r} "
                f"(classes_ = {_array_api.to_numpy(classes).tolist()})"
            )
        # every label equals a class: exact in the classes' dtype
        return xp.astype(y, classes.dtype)

    def _check_y_host(self, y, n_images):
        refuse_complex(y, "y")
        y = np.asarray(to_numpy(y))
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D (one label per image); got {y.shape}")
        if y.shape[0] != n_images:
            raise ValueError(
                f"y has {y.shape[0]} labels but the embedded regions hold "
                f"{n_images} images"
            )
        classes = np.asarray(to_numpy(self.classes_))
        unknown = ~np.isin(y, classes)
        if unknown.any():
            raise ValueError(
                f"y contains labels that are not categories: {y[unknown][0]!r} "
                f"(classes_ = {classes.tolist()})"
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
        maps, xp, dev = self._maps(X)
        fs = X if isinstance(X, FeatureSet) else None
        mu = self._fit_directions(maps, fs, directions, xp, dev)
        pi = self._fit_priors(fs, priors, mu.shape[0], xp, dev, mu.dtype)
        classes = self._fit_classes(fs, mu.shape[0], xp, dev)
        self.directions_ = mu
        self.priors_ = pi
        self.classes_ = classes
        self.scales_ = self._strength_scales(maps, xp)
        self.layers_ = list(maps)
        self.no_point_label_ = self._no_point_label(classes, xp)
        if y is not None:
            self._check_y(y, next(iter(maps.values())).shape[0], xp, dev)
        return self

    # -- the steps of fit ----------------------------------------------------
    @staticmethod
    def _fit_directions(maps, fs, directions, xp=None, dev=None):
        """Unit category directions (argument, else the FeatureSet's)."""
        if directions is None and fs is not None:
            directions = fs.directions
        if directions is None:
            raise ValueError(
                "KnowledgePointCounter needs the category directions: pass a "
                "FeatureSet with directions (from a SampleProjector) or "
                "directions=..."
            )
        dtype = None if xp is None else next(iter(maps.values())).dtype
        mu = _check_directions(directions, xp, dev, dtype)
        dim = mu.shape[1]
        for name, arr in maps.items():
            if arr.shape[2] != dim:
                raise ValueError(
                    f"layer {name!r} has regions of dimension {arr.shape[2]} but "
                    f"the directions have dimension {dim}"
                )
        return mu

    def _fit_priors(self, fs, priors, n_classes, xp=None, dev=None, dtype=None):
        """Category priors (argument, else the FeatureSet's); required by prior."""
        if priors is None and fs is not None:
            priors = fs.priors
        if priors is None and self.prior:
            raise ValueError(
                "prior=True needs category priors: a FeatureSet with priors "
                "or priors=..."
            )
        return _check_priors(priors, n_classes, xp, dev, dtype)

    @staticmethod
    def _fit_classes(fs, n_classes, xp=None, dev=None):
        """The FeatureSet's class labels, else ``0 .. C-1``.

        In X's namespace when dispatch is on and they are numbers; text
        labels stay a numpy array (no other namespace holds them).
        """
        if fs is None or fs.classes is None:
            if xp is None:
                return np.arange(n_classes)
            return xp.arange(n_classes, device=dev)
        classes = fs.classes
        if xp is None or isinstance(classes, np.ndarray):
            classes = np.asarray(to_numpy(classes))
        if tuple(classes.shape) != (n_classes,):
            raise ValueError(
                f"FeatureSet.classes has shape {tuple(classes.shape)} but there "
                f"are {n_classes} directions"
            )
        if xp is not None and (
            not isinstance(classes, np.ndarray)
            or np.issubdtype(classes.dtype, np.number)
        ):
            classes = _xp_real(classes, "FeatureSet.classes", xp, dev)
        return classes

    def _strength_scales(self, maps, xp=None):
        """Per layer, the mean regional strength (1.0 without normalising)."""
        scales = {}
        for name, arr in maps.items():
            if not self.normalize_strength:
                scales[name] = 1.0
                continue
            if xp is None:
                strength = safe_norm(arr, dim=2)
                top = float(strength.max()) if strength.size else 0.0
                # the mean of strengths near 1e308 would overflow its sum
                mean = float((strength / top).mean()) * top if top > 0 else 0.0
            else:
                strength = _norm_xp(arr, 2, xp)
                top = float(xp.max(strength))
                mean = float(xp.mean(strength / top)) * top if top > 0 else 0.0
            if not mean > 0:
                raise ValueError(
                    f"layer {name!r}: every embedded region is zero; the strength "
                    "scale is undefined"
                )
            scales[name] = mean
        return scales

    @staticmethod
    def _no_point_label(classes, xp=None):
        if isinstance(classes, np.ndarray):
            if np.issubdtype(classes.dtype, np.number):
                if -1 not in classes:
                    return classes.dtype.type(-1)
                return classes.dtype.type(classes.min() - 1)
            return None
        # classes in X's namespace: a Python number, like them
        cast = float if xp.isdtype(classes.dtype, "real floating") else int
        if not bool(xp.any(classes == -1)):
            return cast(-1)
        return cast(xp.min(classes)) - 1

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

    def _log_posteriors(self, H, name, xp=None):
        if xp is not None:
            return self._log_posteriors_xp(H, name, xp)
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

    def _log_posteriors_xp(self, H, name, xp):
        """:meth:`_log_posteriors` in ``xp`` on H's device (the same steps)."""
        norm = _norm_xp(H, 2, xp)
        unit = H / xp.where(norm > 0, norm, xp.ones_like(norm))
        cos = unit @ self.directions_.T
        strength = norm[..., 0]
        if isinstance(self.kappa, str):
            from ._numerics.xp_vmf import revised_kappa

            kappa = revised_kappa(
                strength / self.scales_[name], H.shape[2], self.sigma, xp
            )
            # as on the numpy path, and below the dtype's largest value
            cap = min(_KAPPA_CAP, float(xp.finfo(kappa.dtype).max) / 1024)
            kappa = xp.where(kappa > cap, xp.full_like(kappa, cap), kappa)
        else:
            kappa = xp.full_like(strength, float(self.kappa))
        logits = xp.expand_dims(kappa, axis=2) * cos
        if self.prior:
            logits = logits + xp.log(self.priors_)  # log 0 = -inf: never chosen
        lse = _array_api.logsumexp(logits, axis=2, xp=xp)
        return logits - xp.expand_dims(lse, axis=2)

    def _checked_maps(self, X, method):
        check_is_fitted(self)
        maps, xp, dev = self._maps(X)
        _array_api.check_same_namespace(
            next(iter(maps.values())), self, attribute="directions_", method=method
        )
        if xp is None and not isinstance(self.directions_, np.ndarray):
            # fitted with dispatch on, on arrays of another namespace; now off
            fitted = _array_api.namespace_name(type(self.directions_).__module__)
            raise ValueError(
                f"Inputs passed to {type(self).__name__}.{method}() must use the "
                "namespace and device of those passed to fit(): it was fitted on "
                f"{fitted} arrays with array_api_dispatch on, and array_api_dispatch "
                "is now off. Turn it on (X as in fit), or fit again."
            )
        dim = self.directions_.shape[1]
        for name, arr in maps.items():
            if arr.shape[2] != dim:
                raise ValueError(
                    f"layer {name!r} has regions of dimension {arr.shape[2]} but "
                    f"the fitted directions have dimension {dim}"
                )
        return maps, xp, dev

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
            Posteriors; each region's row sums to 1 (in X's namespace and on
            its device with ``array_api_dispatch`` on).
        """
        maps, xp, _ = self._checked_maps(X, "region_posteriors")
        name = self._layer_name(maps, layer)
        log_post = self._log_posteriors(maps[name], name, xp)
        return np.exp(log_post) if xp is None else xp.exp(log_post)

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
        maps, xp, _ = self._checked_maps(X, "masks")
        name = self._layer_name(maps, layer)
        return self._points(self._log_posteriors(maps[name], name, xp), xp)

    def _labels(self, index, xp):
        """``classes_[index]`` for an integer index array of any shape."""
        if self._host_classes():
            # text classes live on the host: only the indices go there
            return self.classes_[np.asarray(_array_api.to_numpy(index))]
        flat = xp.take(self.classes_, xp.reshape(index, (-1,)), axis=0)
        return xp.reshape(flat, tuple(index.shape))

    def _points(self, log_post, xp=None):
        # compared in log space: near tau = 1 the posterior itself rounds to 1
        if xp is None:
            points = log_post.max(axis=2) > np.log(self.tau)
            return points, self.classes_[np.argmax(log_post, axis=2)]
        points = xp.max(log_post, axis=2) > math.log(self.tau)
        return points, self._labels(xp.argmax(log_post, axis=2), xp)

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
        maps, xp, dev = self._checked_maps(X, "count")
        n_images = next(iter(maps.values())).shape[0]
        y = self._check_y(y, n_images, xp, dev)
        records = []
        for name, H in maps.items():
            self._layer_name(maps, name)
            points, labels = self._points(self._log_posteriors(H, name, xp), xp)
            if xp is None or self._host_classes():
                if xp is not None:
                    points = np.asarray(_array_api.to_numpy(points))
                reliable = points & (labels == y[:, None])
                total = int(points.sum())
                total_reliable = int(reliable.sum())
            else:
                reliable = points & (labels == xp.expand_dims(y, 1))
                total = int(xp.sum(xp.astype(points, xp.int64)))
                total_reliable = int(xp.sum(xp.astype(reliable, xp.int64)))
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
            knowledge points. In X's namespace and on its device with
            ``array_api_dispatch`` on, unless the classes are text (a numpy
            object array then, as without dispatch).
        """
        maps, xp, _ = self._checked_maps(X, "predict")
        return self._predict(maps, xp)

    def _predict(self, maps, xp):
        name = self._layer_name(maps, None)
        log_post = self._log_posteriors(maps[name], name, xp)
        points, _ = self._points(log_post, xp)
        if xp is None:
            votes = (np.exp(log_post) * points[..., None]).sum(axis=1)
            winner = self.classes_[np.argmax(votes, axis=1)]
            none = ~points.any(axis=1)
            if self.no_point_label_ is None:
                winner = winner.astype(object)
            winner[none] = self.no_point_label_
            return winner
        weights = xp.expand_dims(xp.astype(points, log_post.dtype), axis=2)
        votes = xp.sum(xp.exp(log_post) * weights, axis=1)
        winner = self._labels(xp.argmax(votes, axis=1), xp)
        none = ~xp.any(points, axis=1)
        if self._host_classes():
            none = np.asarray(_array_api.to_numpy(none))
            if self.no_point_label_ is None:
                winner = winner.astype(object)
            winner[none] = self.no_point_label_
            return winner
        sentinel = xp.full_like(winner, self.no_point_label_)
        return xp.where(none, sentinel, winner)

    def score(self, X, y, sample_weight=None):
        """Accuracy of the knowledge-point vote; images without points are wrong.

        Parameters
        ----------
        X : FeatureSet, dict of str to ndarray, or ndarray of shape (N, R, d')
            Embedded regions.
        y : array-like of shape (N,)
            True labels.
        sample_weight : array-like of shape (N,), optional
            Non-negative, finite weights of the images, not all zero.

        Returns
        -------
        float
            The (weighted) fraction of images whose vote equals their label.
        """
        maps, xp, dev = self._checked_maps(X, "score")
        pred = self._predict(maps, xp)
        n_images = pred.shape[0]
        y = self._check_y(y, n_images, xp, dev)
        if xp is None or self._host_classes():
            correct = (pred == y).astype(np.float64)
            if sample_weight is None:
                return float(correct.mean())
            w = _real_float64(sample_weight, "sample_weight")
            w = _check_sample_weight(w, n_images, np)
            return float(np.average(correct, weights=w))
        dtype = self.directions_.dtype
        correct = xp.astype(pred == y, dtype)
        if sample_weight is None:
            return float(xp.mean(correct))
        w = _xp_real(sample_weight, "sample_weight", xp, dev, dtype)
        w = _check_sample_weight(w, n_images, xp)
        return float(xp.sum(correct * w) / xp.sum(w))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # regions per image: a FeatureSet, a dict of 3-D arrays or one 3-D array
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.target_tags.required = False
        # with array_api_dispatch on, everything follows h (SPEC 10)
        tags.array_api_support = True
        return tags
