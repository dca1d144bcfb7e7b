"""Intervals over repeats and images: a two-level bootstrap (SPEC 9).

What is random in an analysis is repeated R times (projection and alignment
seeds), and the images are a sample. Every headline figure is a statistic
``s`` of per-image values (agreement indicators, knowledge-point counts,
strengths...). With the values of repeat r on the n evaluated images as row
r of an (R, n) array:

- the estimate is the mean over repeats of ``s`` on all n images;
- each bootstrap draw b picks one repeat r_b uniformly and n images with
  replacement, and computes ``s`` on them; the interval is the
  (alpha/2, 1 - alpha/2) percentiles of the B draws.

Drawing the repeat and the images together spreads the interval over both
sources of variation (a hierarchical bootstrap; Davison and Hinkley,
*Bootstrap Methods and their Application*, 1997, section 3.8). Every
statistic is written for arrays whose last axis runs over images, so one call
evaluates all B draws at once.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["Resampler", "mean_of", "pearson_of", "ratio_of"]


class Resampler:
    """B joint draws of (repeat, images) for R repeats of n images.

    Parameters
    ----------
    n_repeats : int
        R.
    n_images : int
        n, the images every repeat evaluated (the same ones, in one order).
    n_bootstrap : int
        B.
    confidence : float
        Coverage of the intervals (0.95: the 2.5 and 97.5 percentiles).
    random_state : int or Generator
        Seed of the draws.
    """

    def __init__(self, n_repeats, n_images, n_bootstrap, confidence, random_state):
        if n_images < 1 or n_repeats < 1:
            raise ValueError(
                f"nothing to resample: {n_repeats} repeats of {n_images} images"
            )
        rng = np.random.default_rng(random_state)
        self.n_repeats, self.n_images = int(n_repeats), int(n_images)
        self.confidence = float(confidence)
        self.repeat = rng.integers(0, n_repeats, size=n_bootstrap)
        self.images = rng.integers(0, n_images, size=(n_bootstrap, n_images))

    def _check(self, a):
        a = np.asarray(a, dtype=np.float64)
        if a.shape != (self.n_repeats, self.n_images):
            raise ValueError(
                f"per-image values must have shape (repeats, images) = "
                f"({self.n_repeats}, {self.n_images}); got {a.shape}"
            )
        return a

    def estimate(self, statistic, *arrays) -> dict:
        """``{"value", "low", "high"}`` of ``statistic(*arrays)``.

        ``statistic`` maps arrays of shape (..., n) to shape (...); NaN marks
        a draw where it is undefined (e.g. a ratio of zero counts) and is left
        out of the interval. ``value`` is None when every repeat is undefined.
        """
        arrays = [self._check(a) for a in arrays]
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            per_repeat = np.asarray(statistic(*arrays), dtype=np.float64)
            drawn = np.asarray(
                statistic(*[a[self.repeat[:, None], self.images] for a in arrays]),
                dtype=np.float64,
            )
        ok = np.isfinite(per_repeat)
        value = float(per_repeat[ok].mean()) if ok.any() else None
        drawn = drawn[np.isfinite(drawn)]
        if drawn.size == 0 or value is None:
            return {"value": value, "low": None, "high": None}
        tail = 50.0 * (1.0 - self.confidence)
        low, high = np.percentile(drawn, [tail, 100.0 - tail])
        return {"value": value, "low": float(low), "high": float(high)}


def mean_of(a):
    """Mean over images."""
    return a.mean(axis=-1)


def ratio_of(num, den):
    """sum(num) / sum(den) over images; NaN where the denominator is 0."""
    d = den.sum(axis=-1)
    return np.where(d > 0, num.sum(axis=-1) / np.where(d > 0, d, 1.0), np.nan)


def pearson_of(a, b):
    """Pearson correlation over images, computed safely (centred, rescaled by
    the largest magnitude before the norms); NaN when either is constant."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    sa = np.abs(a).max(axis=-1, keepdims=True)
    sb = np.abs(b).max(axis=-1, keepdims=True)
    a = a / np.where(sa > 0, sa, 1.0)
    b = b / np.where(sb > 0, sb, 1.0)
    num = (a * b).sum(axis=-1)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
