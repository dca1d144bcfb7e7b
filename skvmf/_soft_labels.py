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
    >>> from skvmf._soft_labels import check_soft_labels
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
    if hasattr(P, "detach") and hasattr(P, "is_complex"):  # a torch tensor
        if P.is_complex():
            raise ValueError(f"{name} must be real; got a tensor of dtype {P.dtype}")
        P = P.detach().cpu().numpy()
    try:
        arr = np.asarray(P)
    except Exception as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} must be a numeric 2-D array; got {P!r}") from exc
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real; got an array of dtype {arr.dtype}")
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
    ):
        raise ValueError(f"{name} must be numeric; got an array of dtype {arr.dtype}")
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
