"""Validation of a network's soft labels P(y|x) (or its logits).

Shared by every estimator that learns from the DNN's soft labels
(:class:`skvmf.projection.SampleProjector`, :mod:`skvmf.alignment`) and by
:class:`skvmf.features.FeatureSet`. Complex, non-numeric and non-finite
input is a ``ValueError`` naming the argument; softmax of logits never
overflows (see :func:`softmax_of_logits`).
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.special import log_softmax
from sklearn.utils._param_validation import Interval, validate_params

from .arrays import real_array

_RANGE_TOL = 1e-6
_SUM_TOL = 1e-4


@validate_params(
    {
        "P": ["array-like"],
        "n_samples": [Interval(Integral, 0, None, closed="left"), None],
        "from_logits": ["boolean"],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "name": [str],
    },
    prefer_skip_nested_validation=True,
)
def check_soft_labels(
    P,
    *,
    n_samples=None,
    from_logits=False,
    temperature=4.0,
    name="soft_labels",
):
    """Validate soft labels (or logits) and return them as probabilities.

    Parameters
    ----------
    P : array-like of shape (N, C)
        Soft labels P(y|x), one row per sample, or logits z(x) when
        ``from_logits=True``. C must be at least 2.
    n_samples : int, optional
        Expected number of rows N (for instance the number of feature rows).
    from_logits : bool, default=False
        Treat ``P`` as logits and return ``softmax(P / temperature)``,
        computed stably in log space.
    temperature : float, default=4.0
        Softmax temperature T used with ``from_logits=True`` (the paper's
        soft labels use T = 4).
    name : str, default="soft_labels"
        Name of the argument, used in error messages.

    Returns
    -------
    P : ndarray of shape (N, C), dtype float64
        Probabilities: every entry in [0, 1] and every row summing to 1
        (clipped and renormalised so that tiny violations within the
        tolerances are removed).

    Raises
    ------
    ValueError
        If ``P`` is not a finite real numeric 2-D array with at least two
        columns (an inf logit, a complex entry),
        if its number of rows differs from ``n_samples``, if an entry lies
        outside [0, 1] (tolerance 1e-6) or a row does not sum to 1
        (tolerance 1e-4) when ``from_logits=False``, or if ``temperature``
        is not a positive number.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf._numerics.soft_labels import check_soft_labels
    >>> check_soft_labels([[0.25, 0.75], [1.0, 0.0]])
    array([[0.25, 0.75],
           [1.  , 0.  ]])
    >>> check_soft_labels([[0.0, np.log(3.0)]], from_logits=True, temperature=1.0)
    array([[0.25, 0.75]])
    """
    arr = _as_real_matrix(P, name, n_samples)
    _check_finite(arr, name)
    if from_logits:
        return softmax_of_logits(arr, float(temperature))
    return _checked_probabilities(arr, name)


def _as_real_matrix(P, name, n_samples):
    """``P`` as a float64 (N, C) array: real, numeric, 2-D, C >= 2, N rows."""
    arr = real_array(P, name)  # the package's rule: real numbers, never cast
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_classes); "
            f"got shape {arr.shape}"
        )
    if arr.shape[1] < 2:
        raise ValueError(
            f"{name} needs at least 2 columns (classes); got shape {arr.shape}"
        )
    if n_samples is not None and arr.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {arr.shape[0]} rows but there are {n_samples} samples"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty; got shape {arr.shape}")
    return arr.astype(np.float64)  # a copy: the caller's array is never written


def _check_finite(arr, name):
    """Refuse NaN and infinite entries (an inf logit has no softmax)."""
    finite = np.isfinite(arr)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise ValueError(
            f"{name} must be finite; row {row} contains {arr[row][~finite[row]][0]}"
        )


def softmax_of_logits(logits, temperature):
    """``softmax(logits / temperature)`` row-wise, for any finite logits.

    The row maximum is subtracted *before* dividing by the temperature, so
    every scaled logit is ``<= 0``: a tiny temperature or logits of 1e308 can
    only underflow (to probability 0), never overflow to ``inf - inf = NaN``.

    Parameters
    ----------
    logits : ndarray of shape (N, C)
        Finite float64 logits.
    temperature : float
        Positive, finite.

    Returns
    -------
    ndarray of shape (N, C)
        Probabilities; each row sums to 1.
    """
    with np.errstate(over="ignore"):  # differences of +-1e308: -inf, exp 0
        shifted = logits - logits.max(axis=1, keepdims=True)
        scaled = shifted / temperature
    return np.exp(log_softmax(scaled, axis=1))


def log_softmax_of_logits_xp(logits, temperature, xp):
    """``log_softmax(logits / temperature)`` row-wise in the namespace ``xp``.

    The Array API counterpart of :func:`softmax_of_logits` (the same order of
    operations: the row maximum is subtracted before the division, so every
    scaled logit is ``<= 0`` and nothing overflows), computed on the logits'
    device in their floating dtype; nothing is copied to the host.

    Parameters
    ----------
    logits : array of shape (N, C)
        Finite real floating logits of namespace ``xp``.
    temperature : float
        Positive, finite.
    xp : namespace
        The logits' Array API namespace.

    Returns
    -------
    array of shape (N, C)
        Log-probabilities, in ``xp`` on the logits' device.
    """
    top = xp.max(logits, axis=1, keepdims=True)
    # differences of +-1e308 overflow to -inf: probability 0, as intended
    scaled = (logits - top) / temperature
    # each row's largest scaled logit is 0, so the sum lies in [1, C]
    norm = xp.log(xp.sum(xp.exp(scaled), axis=1, keepdims=True))
    return scaled - norm


def softmax_of_logits_xp(logits, temperature, xp):
    """``softmax(logits / temperature)`` in ``xp``, through the log space.

    See :func:`log_softmax_of_logits_xp`; each row sums to 1.
    """
    return xp.exp(log_softmax_of_logits_xp(logits, temperature, xp))


def check_soft_labels_xp(
    P,
    xp,
    device,
    *,
    n_samples=None,
    from_logits=False,
    temperature=4.0,
    name="soft_labels",
):
    """:func:`check_soft_labels` in the namespace ``xp``, on ``device``.

    For estimators under ``array_api_dispatch``: ``P`` follows X (moved to
    ``xp`` on ``device`` with scikit-learn's ``move_to``), is validated
    there (only bools and, on error, the offending entry are read back) and
    returned as float64 where the device has it (float32 with a warning
    otherwise). With numpy as ``xp`` this is :func:`check_soft_labels`.

    Parameters
    ----------
    P : array of any namespace, or array-like, of shape (N, C)
        Soft labels, or logits with ``from_logits=True``.
    xp : namespace
        The namespace of X (from ``skvmf._array_api.get_namespace``).
    device : device
        X's device.
    n_samples, from_logits, temperature, name
        As in :func:`check_soft_labels`.

    Returns
    -------
    array of shape (N, C)
        Probabilities in ``xp`` on ``device``.

    Raises
    ------
    ValueError
        As :func:`check_soft_labels`, naming ``name``.
    """
    from .._array_api import float_dtype, is_numpy, move_to, to_numpy

    if is_numpy(xp):
        return check_soft_labels(
            to_numpy(P) if hasattr(P, "__array_namespace__") else P,
            n_samples=n_samples,
            from_logits=from_logits,
            temperature=temperature,
            name=name,
        )
    t = temperature
    if isinstance(t, bool) or not isinstance(t, Real) or not (0 < t < np.inf):
        raise ValueError(f"temperature must be a positive finite number; got {t!r}")
    if isinstance(P, (list, tuple, np.ndarray)):
        P = _as_real_matrix(P, name, n_samples)  # host input: checked there
    # checked where it lives, before it moves: nothing copied to the host
    P = move_to(real_array(P, name, host=False), xp=xp, device=device)
    shape = tuple(P.shape)
    if len(shape) != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_classes); "
            f"got shape {shape}"
        )
    if shape[1] < 2:
        raise ValueError(
            f"{name} needs at least 2 columns (classes); got shape {shape}"
        )
    if n_samples is not None and shape[0] != n_samples:
        raise ValueError(
            f"{name} has {shape[0]} rows but there are {n_samples} samples"
        )
    if shape[0] == 0:
        raise ValueError(f"{name} is empty; got shape {shape}")
    P = xp.astype(P, float_dtype(xp, device, name=name))
    if not bool(xp.all(xp.isfinite(P))):
        _check_finite(np.asarray(to_numpy(P)), name)  # error path: the message
    if from_logits:
        return softmax_of_logits_xp(P, float(t), xp)
    bad = (P < -_RANGE_TOL) | (P > 1 + _RANGE_TOL)
    sums = xp.sum(P, axis=1)
    off = xp.abs(sums - 1.0) > _SUM_TOL
    if bool(xp.any(bad)) or bool(xp.any(off)):
        _checked_probabilities(np.asarray(to_numpy(P)), name)  # the message
    P = xp.clip(P, 0.0, 1.0)
    return P / xp.sum(P, axis=1, keepdims=True)


def _checked_probabilities(arr, name):
    """Entries in [0, 1] and rows summing to 1 (tolerances), then exact."""
    bad = (arr < -_RANGE_TOL) | (arr > 1 + _RANGE_TOL)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        value = arr[row][bad[row]][0]
        raise ValueError(
            f"{name} must be probabilities in [0, 1]; row {row} has the entry "
            f"{value:g}; these look like logits: pass from_logits=True"
        )
    sums = arr.sum(axis=1)
    off = np.abs(sums - 1.0) > _SUM_TOL
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"each row of {name} must sum to 1; row {row} sums to {sums[row]:.6g} "
            "(if these are logits or unnormalised scores, pass from_logits=True)"
        )
    np.clip(arr, 0.0, 1.0, out=arr)
    arr /= arr.sum(axis=1, keepdims=True)
    return arr
