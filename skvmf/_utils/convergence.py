"""Loss-curve health of every fitted stage (SPEC 9).

One definition of "the loss fell", shared by the sample projection, the
importance weights and the regional alignment, so that the estimators'
warnings, :func:`skvmf.analyze`'s diagnostics table and the report agree.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from . import warn as _warn

__all__ = ["curve_summary", "loss_fell", "warn_if_not_falling"]


def _tail(curve: np.ndarray) -> float:
    """Mean of the last tenth of a curve (at least its last value): stochastic
    losses (fresh candidate sets every step) are judged on their end level,
    not on one noisy value."""
    k = max(1, len(curve) // 10)
    return float(np.mean(curve[-k:]))


def loss_fell(curve, at_zero: float | None = None) -> bool | None:
    """Whether a loss curve ends below where it started.

    Parameters
    ----------
    curve : array-like of float
        Loss values in the order they were recorded, the first one at the
        starting point.
    at_zero : float, optional
        For a non-negative loss (a KL divergence): a start at or below this
        value is already at the minimum, with nothing to lower (e.g. the
        projection of an untrained network whose soft labels are uniform),
        and counts as converged when the curve stays there.

    Returns
    -------
    bool or None
        True when the mean of the last tenth of the curve is below its first
        value (by more than 1e-9 of its magnitude), or when it starts and
        ends at zero within ``at_zero``; False otherwise; None for a curve of
        fewer than two values (nothing to judge).
    """
    c = np.asarray(curve, dtype=np.float64).ravel()
    if c.size < 2:
        return None
    if not np.isfinite(c).all():
        return False
    first = float(c[0])
    if at_zero is not None and first <= at_zero and _tail(c) <= at_zero:
        return True
    return _tail(c) < first - 1e-9 * max(1.0, abs(first))


def curve_summary(curve, at_zero: float | None = None) -> dict:
    """``{"loss_first", "loss_last", "converged"}`` of one loss curve
    (``loss_last`` is the tail mean that :func:`loss_fell` judges)."""
    c = np.asarray(curve, dtype=np.float64).ravel()
    if c.size == 0:
        return {"loss_first": math.nan, "loss_last": math.nan, "converged": None}
    return {
        "loss_first": float(c[0]),
        "loss_last": _tail(c),
        "converged": loss_fell(c, at_zero),
    }


def warn_if_not_falling(curve, stage: str, layer: str | None = None) -> bool | None:
    """Raise a :class:`~sklearn.exceptions.ConvergenceWarning` naming the
    stage, the layer and the figures when ``curve`` did not fall.

    Returns the verdict of :func:`loss_fell`.
    """
    verdict = loss_fell(curve)
    if verdict is False:
        s = curve_summary(curve)
        where = f" at layer {layer!r}" if layer is not None else ""
        _warn.warn(
            f"{stage}{where}: the loss did not fall (first {s['loss_first']:.6g}, "
            f"last {s['loss_last']:.6g} over {len(np.ravel(curve))} steps); the "
            "fitted parameters may be no better than their start",
            ConvergenceWarning,
        )
    return verdict
