"""The revised-kappa table: kappa(l) on a grid, and the Newton solve of A_d.

Private machinery of :func:`skvmf.vmf.revised_kappa` and
:func:`skvmf.vmf.estimate_kappa`, shared with :mod:`skvmf._kernels.kappa`,
which interpolates the same table on torch tensors. ``rbar(a)`` for clean
strength ``a = l / sigma`` comes from an exact one-dimensional integral,
kappa from Banerjee's closed form (optionally refined by Newton steps on
``A_d(kappa) = rbar``), tabulated on a log grid with exact node slopes for a
monotone cubic Hermite interpolant.
"""

from __future__ import annotations

from functools import lru_cache
from numbers import Integral, Real

import numpy as np
from scipy import special
from scipy.interpolate import CubicHermiteSpline
from sklearn.utils._param_validation import Interval, validate_params

from skvmf._numerics.bessel import _ratio_parts

_DIM = [Interval(Integral, 2, None, closed="left")]
_SIGMA = [Interval(Real, 0, None, closed="neither")]
_NEWTON_STEPS = [Interval(Integral, 0, None, closed="left")]


def _newton_kappa(kappa, r, q, d, steps):
    """Newton steps on ``A_d(kappa) = r``; ``q = 1 - r`` given accurately.

    The equation is solved as ``logit A_d(kappa) = logit r`` in ``log kappa``:
    the same root, but a parametrisation in which the function is nearly
    linear (slope 1 at both ends), so each step gains more digits than a
    plain step in ``kappa`` from Banerjee's start (about 1e-7 relative after
    two steps in 2-D, 1e-10 from d = 10, against 3e-5 and 4e-8), and iterates
    stay positive. ``1 - A_d`` comes from :func:`skvmf._numerics.bessel._ratio_parts`
    at full relative precision, so ``r`` close to 1 loses nothing.
    """
    kappa = np.array(kappa, dtype=np.float64)
    live = r > 0
    if steps == 0 or not np.any(live):
        return np.where(live, kappa, 0.0)
    k, rl, ql = kappa[live], r[live], q[live]
    nu = np.full(k.size, 0.5 * d - 1.0)
    target = np.log(rl) - np.log(ql)
    for _ in range(steps):
        ratio, comp, deriv = _ratio_parts(nu, k)
        resid = np.log(ratio) - np.log(comp) - target
        slope = k * deriv / (ratio * comp)
        k = k * np.exp(-resid / slope)
    kappa[live] = k
    kappa[~live] = 0.0
    return kappa


def _banerjee(r, q, d):
    """``r (d - r^2) / (1 - r^2)`` with ``1 - r^2 = q (1 + r)``."""
    return r * (d - r * r) / (q * (1.0 + r))


_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(24)


def _rbar_quadrature(a, d, derivative=False):
    """Exact ``rbar`` and ``1 - rbar`` for clean strength ``a`` (sigma = 1).

    For ``f = a e_1 + eps``, ``eps ~ N(0, I_d)``, writing ``1/||f||`` as a
    Gaussian integral gives ``E[f_1/||f||] = sqrt(2/pi) a int_0^inf
    (1+s^2)^(-(d+2)/2) exp(-a^2 s^2 / (2 (1+s^2))) ds``; with ``s = tan(phi)``
    and ``b = a^2/2``::

        rbar     = 2 sqrt(b/pi) int_0^(pi/2) cos^d(phi) exp(-b sin^2 phi) dphi
        1 - rbar = 2 sqrt(b/pi) int_0^(pi/2) (1 - cos^(d-1) phi) cos(phi)
                   exp(-b sin^2 phi) dphi + erfc(sqrt(b))

    (``rbar = a/sqrt(2) Gamma((d+1)/2)/Gamma(d/2+1) 1F1(1/2; d/2+1; -a^2/2)``).
    Both integrands are positive and smooth, so composite Gauss-Legendre on
    geometric panels (resolving the scales ``1/sqrt(d)`` and ``1/sqrt(b)``)
    gives both to near machine precision, the complement with full relative
    precision when ``rbar`` is close to 1. With ``derivative=True`` also
    returns ``d rbar / da`` from the differentiated integrands.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = 0.5 * a * a
    # cos^d(phi) exp(-b sin^2 phi) <= exp(-(d/2 + 0.405 b) phi^2) on [0, pi/2]
    # (sin phi >= 2 phi / pi); the complement's integrand <= exp(-0.405 b phi^2).
    with np.errstate(divide="ignore"):
        upper = np.minimum(np.pi / 2, np.sqrt(90.0 / (0.405 * b)))
    lower = 0.05 / np.sqrt(b + 0.5 * d + 1.0)
    n_panels = int(np.ceil(np.log2(np.max(upper / lower)))) + 1
    ratio = (upper / lower) ** (1.0 / n_panels)
    edges = np.concatenate(
        [
            np.zeros((a.size, 1)),
            lower[:, None] * ratio[:, None] ** np.arange(n_panels + 1),
        ],
        axis=1,
    )
    left, right = edges[:, :-1, None], edges[:, 1:, None]
    half = 0.5 * (right - left)
    phi = (left + right) * 0.5 + half * _GL_NODES
    weights = half * _GL_WEIGHTS
    sin_half = np.sin(0.5 * phi)
    log_cos = np.log1p(-2.0 * sin_half * sin_half)  # exact near phi = 0
    sin2 = np.sin(phi) ** 2
    bb = b[:, None, None]
    damp = np.exp(-bb * sin2)
    cos_d = np.exp(d * log_cos) * damp
    f_q = -np.expm1((d - 1.0) * log_cos) * np.cos(phi) * damp
    j0 = np.sum(cos_d * weights, axis=(1, 2))
    j2 = np.sum(cos_d * sin2 * weights, axis=(1, 2))
    q0 = np.sum(f_q * weights, axis=(1, 2))
    q2 = np.sum(f_q * sin2 * weights, axis=(1, 2))
    c = np.sqrt(2.0 / np.pi)
    r = c * a * j0
    q = c * a * q0 + special.erfc(np.sqrt(b))
    if not derivative:
        return r, q
    # d/da of both forms; the complement's is exact where r is close to 1
    dr_direct = c * (j0 - a * a * j2)
    dr_comp = -c * (q0 - a * a * q2 - np.exp(-b))
    return r, q, np.where(r < 0.5, dr_direct, dr_comp)


def _kappa_from_rbar(r, q, d, newton_steps):
    kappa = _banerjee(r, q, d)
    kappa = np.where(r == 0, 0.0, kappa)
    return _newton_kappa(kappa, r, q, d, newton_steps)


def _asymptote_offset(d, newton_steps):
    """``c`` in ``kappa(a) = a^2 + c + O(1/a^2)`` as ``a = l/sigma -> inf``.

    ``1 - rbar = (d-1)/(2a^2) - 3(d-1)(d-3)/(8a^4) + ...`` (expand
    ``(1 + Q/w^2)^(-1/2)`` with ``w = a + z``, ``Q ~ chi2_(d-1)``); Banerjee's
    form then gives ``a^2 + (d-2)/2``, and the exact inverse of
    ``A_d(k) = 1 - (d-1)/(2k) + (d-1)(d-3)/(8k^2) + ...`` gives
    ``a^2 + (d-3)/2``.
    """
    return 0.5 * (d - 2.0) if newton_steps == 0 else 0.5 * (d - 3.0)


# grid of a / sqrt(d): 96 points per decade from 1e-5 to 1e3
_TABLE_U = np.logspace(-5.0, 3.0, 8 * 96 + 1)


def _kappa_slope(r, q, dr_da, kappa, d, newton_steps):
    """d kappa / d a along the table, for Hermite interpolation."""
    if newton_steps == 0:  # derivative of Banerjee's closed form
        dk_dr = (d + (d - 3.0) * r * r + r**4) / (q * (1.0 + r)) ** 2
    else:  # inverse function of A_d
        _, _, deriv = _ratio_parts(np.full(kappa.size, 0.5 * d - 1.0), kappa)
        dk_dr = 1.0 / deriv
    return dk_dr * dr_da


@lru_cache(maxsize=64)
def _unit_table(dim, newton_steps):
    """kappa on the grid ``a = l/sigma`` (sigma = 1) and its interpolant.

    Cubic Hermite interpolation of ``log kappa`` against ``log a`` with the
    exact slopes (from the differentiated quadrature): fourth-order accurate,
    about 2e-8 relative in 2-D and below 1e-9 from d = 10. Slopes are limited
    with the Fritsch-Carlson condition so that the interpolant is monotone
    like the data.
    """
    a = np.sqrt(dim) * _TABLE_U
    r, q, dr_da = _rbar_quadrature(a, dim, derivative=True)
    kappa = _kappa_from_rbar(r, q, dim, newton_steps)
    x, y = np.log(a), np.log(kappa)
    slope = a / kappa * _kappa_slope(r, q, dr_da, kappa, dim, newton_steps)
    secant = np.diff(y) / np.diff(x)
    alpha, beta = slope[:-1] / secant, slope[1:] / secant
    norm = np.hypot(alpha, beta)
    limit = np.where(norm > 3.0, 3.0 / norm, 1.0)
    slope[:-1] = np.minimum(slope[:-1], limit * alpha * secant)
    slope[1:] = np.minimum(slope[1:], limit * beta * secant)
    interp = CubicHermiteSpline(x, y, slope, extrapolate=False)
    for array in (a, kappa, slope):
        array.setflags(write=False)
    return a, kappa, slope, interp


@validate_params(
    {"dim": _DIM, "sigma": _SIGMA, "newton_steps": _NEWTON_STEPS},
    prefer_skip_nested_validation=True,
)
@lru_cache(maxsize=64)
def _revised_kappa_table(dim, sigma, newton_steps=0):
    """Tabulated ``kappa(l)`` for torch code that interpolates on its own.

    Parameters
    ----------
    dim : int
        Dimension ``d >= 2``.
    sigma : float
        Noise standard deviation ``> 0``.
    newton_steps : int, default=0
        Newton refinements of Banerjee's kappa.

    Returns
    -------
    strengths, kappas : ndarray
        Read-only float64 grids: ``strengths[0] = 0`` with ``kappas[0] = 0``,
        then 769 log-spaced strengths ``sigma sqrt(d) 10^u``, ``u`` from -5 to
        3. Interpolate ``log kappa`` against ``log l`` between grid points;
        below the first positive point kappa is linear in ``l`` (to 1e-10);
        beyond the last, ``kappa = (l/sigma)^2 + c`` with
        ``c = (d-2)/2`` (``newton_steps = 0``) or ``(d-3)/2`` (Newton-refined).
        :func:`revised_kappa` interpolates with a cubic Hermite spline of
        ``log kappa`` against ``log l`` whose node slopes are
        :func:`_revised_kappa_slopes`; use those to reproduce it exactly.
    """
    a, kappa, _, _ = _unit_table(int(dim), int(newton_steps))
    strengths = np.concatenate([[0.0], sigma * a])
    kappas = np.concatenate([[0.0], kappa])
    strengths.setflags(write=False)
    kappas.setflags(write=False)
    return strengths, kappas


@validate_params(
    {"dim": _DIM, "sigma": _SIGMA, "newton_steps": _NEWTON_STEPS},
    prefer_skip_nested_validation=True,
)
@lru_cache(maxsize=64)
def _revised_kappa_slopes(dim, sigma, newton_steps=0):
    """Node slopes ``d log kappa / d log l`` of :func:`revised_kappa`'s spline.

    Parameters
    ----------
    dim : int
        Dimension ``d >= 2``.
    sigma : float
        Noise standard deviation ``> 0`` (the slopes do not depend on it).
    newton_steps : int, default=0
        Newton refinements of Banerjee's kappa.

    Returns
    -------
    ndarray
        Read-only float64 array, one slope per positive grid point of
        :func:`_revised_kappa_table` (``strengths[1:]``): the exact
        derivative, Fritsch-Carlson limited. Between grid points ``i`` and
        ``i + 1``, ``log kappa`` is the cubic Hermite polynomial in ``log l``
        with these end values and slopes (1 at the low end, 2 at the high
        end, as ``kappa`` goes from linear to quadratic in ``l``).
    """
    _, _, slope, _ = _unit_table(int(dim), int(newton_steps))
    return slope


def _revised_from_table(a, d, newton_steps):
    grid, kappa, _, interp = _unit_table(d, newton_steps)
    out = np.zeros_like(a)
    low = (a > 0) & (a < grid[0])
    out[low] = kappa[0] * (a[low] / grid[0])
    mid = (a >= grid[0]) & (a <= grid[-1])
    out[mid] = np.exp(interp(np.log(a[mid])))
    high = a > grid[-1]
    with np.errstate(over="ignore"):  # (l / sigma)^2 beyond 1.8e308 is inf
        out[high] = a[high] ** 2 + _asymptote_offset(d, newton_steps)
    return out
