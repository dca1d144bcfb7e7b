"""Logarithms and ratios of modified Bessel functions of the first kind.

The von Mises-Fisher normaliser needs ``log I_nu(x)`` for orders up to 2047
(dimension 4096) and arguments from 1e-6 to 1e6, where ``I_nu`` itself
overflows or underflows double precision. Nothing here evaluates ``I_nu``
directly:

* small orders (``nu < 20``): the power series where it converges fast,
  Hankel's large-argument expansion (DLMF 10.40.1) from ``x = 1e5`` on (where
  ``scipy.special.ive`` loses digits and, from about 1e10, returns NaN), and
  ``log(scipy.special.ive(nu, x)) + x`` in between (``ive`` is the
  exponentially scaled function, which neither overflows nor underflows
  there);
* large orders (``nu >= 20``): Olver's uniform asymptotic (Debye) expansion,
  DLMF 10.41.3, with up to 16 terms (fewer at large order), the first
  omitted one below 1e-17 relative for every argument.

The ratio ``R_nu(x) = I_{nu+1}(x) / I_nu(x)`` (the vMF mean resultant length)
is computed from the Debye expansions of ``I_nu`` and ``I_nu'`` (DLMF 10.41.3
and 10.41.4), rearranged so that nothing cancels, at an order of at least 20,
then carried down to the requested order with the backward recurrence
``R_{mu-1} = 1 / (2 mu / x + R_mu)``, which is stable because ``I_nu`` is the
recessive solution of the three-term recurrence as the order grows. The same
pass yields ``1 - R`` and ``dR/dx`` to full relative precision, which Newton
iterations on ``A_d(kappa) = r`` need when ``r`` is close to 1.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import special

# Orders at or above this use the Debye expansion; below it, ive / the series
# (log_iv) or the backward recurrence from this order (the ratio).
_NU_DEBYE = 20.0
# Terms U_0 .. U_15 of the Debye series: max_p |U_16(p)| / 20**16 < 1e-17.
_N_DEBYE_TERMS = 16
# Power-series terms: used only while x**2 / 4 <= (nu + 1) / 4, where the
# j-th term is below 4**-j / j!.
_N_SERIES_TERMS = 20
# Small orders use Hankel's expansion from this argument on: with
# 4 nu^2 < 1600 each term is below 2e-3 times the previous one, so
# _N_HANKEL_TERMS terms leave an error far below 1e-17.
_X_HANKEL = 1e5
_N_HANKEL_TERMS = 8


def _poly_mul(a, b):
    out = [Fraction(0)] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def _poly_add(a, b):
    n = max(len(a), len(b))
    a = list(a) + [Fraction(0)] * (n - len(a))
    b = list(b) + [Fraction(0)] * (n - len(b))
    return [x + y for x, y in zip(a, b)]


def _poly_deriv(a):
    return [i * a[i] for i in range(1, len(a))] or [Fraction(0)]


@lru_cache(maxsize=1)
def _debye_polynomials():
    """Coefficients (ascending powers of p) of U_k, U_k', W_k and W_k'.

    ``U_{k+1}(p) = p^2 (1 - p^2) U_k'(p) / 2 + (1/8) int_0^p (1 - 5 t^2) U_k(t) dt``
    (DLMF 10.41.10), computed exactly in rationals. ``W_k`` is
    ``(V_k - U_k) / (1 - p^2) = -p (U_{k-1} / 2 + p U_{k-1}')`` for ``k >= 1``
    (from DLMF 10.41.11), ``W_0 = 0``.
    """
    u = [[Fraction(1)]]
    for _ in range(_N_DEBYE_TERMS - 1):
        prev = u[-1]
        first = _poly_mul(
            [Fraction(0), Fraction(0), Fraction(1, 2), Fraction(0), Fraction(-1, 2)],
            _poly_deriv(prev),
        )
        integrand = _poly_mul([Fraction(1), Fraction(0), Fraction(-5)], prev)
        second = [Fraction(0)] + [c / (8 * (i + 1)) for i, c in enumerate(integrand)]
        u.append(_poly_add(first, second))
    w = [[Fraction(0)]]
    for k in range(1, _N_DEBYE_TERMS):
        prev = u[k - 1]
        inner = _poly_add(
            [c / 2 for c in prev], [Fraction(0)] + _poly_deriv(prev)
        )  # U/2 + p U'
        w.append([Fraction(0)] + [-c for c in inner])

    def as_float(polys):
        return tuple(np.array([float(c) for c in p]) for p in polys)

    return (
        as_float(u),
        as_float([_poly_deriv(p) for p in u]),
        as_float(w),
        as_float([_poly_deriv(p) for p in w]),
    )


@lru_cache(maxsize=1)
def _debye_bounds():
    """max over p in [0, 1] of |U_k|, |U_k'|, |W_k|, |W_k'|, per k."""
    grid = np.linspace(0.0, 1.0, 2001)
    poly = np.polynomial.polynomial.polyval
    return np.array(
        [
            max(
                float(np.max(np.abs(poly(grid, fam[k]))))
                for fam in _debye_polynomials()
            )
            for k in range(_N_DEBYE_TERMS)
        ]
    )


def _n_terms(nu):
    """Fewest Debye terms whose first omitted one is below 1e-17 at order nu."""
    bounds = _debye_bounds()
    for k in range(1, _N_DEBYE_TERMS):
        if bounds[k] < 1e-17 * nu**k:
            return k
    return _N_DEBYE_TERMS


@lru_cache(maxsize=256)
def _combined_coefficients(nu):
    """Coefficients in p of sum_k poly_k(p) / nu^k for the four families.

    For a single order the double sum collapses to one polynomial per family,
    evaluated by one Horner pass; the per-term coefficients that grow with k
    are scaled by nu^-k <= 20^-k first, so nothing large cancels.
    """
    n = _n_terms(nu)
    out = []
    for family in _debye_polynomials():
        coef = np.zeros(max(len(c) for c in family[:n]))
        for k in range(n):
            coef[: len(family[k])] += family[k] * nu ** (-k)
        coef.setflags(write=False)
        out.append(coef)
    return tuple(out)


@lru_cache(maxsize=256)
def _stacked_coefficients(nu, families):
    """The combined coefficients of ``families``, one zero-padded row each."""
    coefs = [_combined_coefficients(nu)[f] for f in families]
    out = np.zeros((len(coefs), max(len(c) for c in coefs)))
    for row, c in zip(out, coefs):
        row[: len(c)] = c
    out.setflags(write=False)
    return out


def _debye_sums(nu, p, families):
    """sum_k F_k(p) / nu^k for each requested family (0: U, 1: U', 2: W, 3: W')."""
    poly = np.polynomial.polynomial.polyval
    if nu.size and np.all(nu == nu[0]):
        coefs = _combined_coefficients(float(nu[0]))
        if len(families) == 1 or p.size > 64:
            return [poly(p, coefs[f]) for f in families]
        # few points (the EM's per-component kappas): polyval is a Python
        # loop over the coefficients, so one pass for all families is faster
        stacked = _stacked_coefficients(float(nu[0]), tuple(families))
        total = np.zeros((len(families), p.size))
        for column in stacked.T[::-1]:
            total *= p
            total += column[:, None]
        return list(total)
    all_polys = _debye_polynomials()
    inv_nu = 1.0 / nu
    sums = []
    for f in families:
        total = np.zeros_like(p)
        for coef in reversed(all_polys[f]):  # Horner's rule in 1/nu
            total = total * inv_nu + poly(p, coef)
        sums.append(total)
    return sums


def _log_series(nu, x):
    """log of sum_j (x^2/4)^j / (j! (nu+1)_j); x^2/4 <= (nu+1)/4 assumed."""
    t = 0.25 * x * x
    term = np.ones_like(t)
    tail = np.zeros_like(t)
    for j in range(1, _N_SERIES_TERMS + 1):
        term = term * t / (j * (nu + j))
        tail = tail + term
    return np.log1p(tail)


def _log_iv_debye(nu, x):
    """log I_nu(x) from the uniform expansion (nu >= 20, x > 0)."""
    z = x / nu
    s = np.hypot(1.0, z)  # sqrt(1 + z^2) without overflow
    p = 1.0 / s
    eta = s + np.log(z) - np.log1p(s)
    (series,) = _debye_sums(nu, p, (0,))
    return nu * eta - 0.5 * np.log(2.0 * np.pi * nu) + 0.5 * np.log(p) + np.log(series)


def _log_iv_hankel(nu, x):
    """log I_nu(x) for small orders and x >= _X_HANKEL (DLMF 10.40.1).

    ``I_nu(x) ~ e^x / sqrt(2 pi x) sum_k (-1)^k a_k(nu) / x^k`` with
    ``a_k = prod_{j<=k} (4 nu^2 - (2j - 1)^2) / (k! 8^k)``; the exponential
    is kept as ``x`` in the log, so any finite x (up to 1.8e308) is fine.
    """
    mu = 4.0 * nu * nu
    term = np.ones_like(x)
    total = np.ones_like(x)
    for k in range(1, _N_HANKEL_TERMS + 1):
        term = -term * ((mu - (2 * k - 1) ** 2) / (8.0 * k) / x)
        total = total + term
    return x - 0.5 * (np.log(2.0 * np.pi) + np.log(x)) + np.log(total)


def _log_iv_small_order(nu, x):
    """log I_nu(x) for 0 <= nu < 20 and x > 0."""
    out = np.empty_like(x)
    # x <= sqrt(nu + 1) is x^2 / 4 <= (nu + 1) / 4 without overflowing x^2
    series = x <= np.sqrt(nu + 1.0)
    if np.any(series):
        n, xs = nu[series], x[series]
        out[series] = (
            n * np.log(0.5 * xs) - special.gammaln(n + 1.0) + _log_series(n, xs)
        )
    hankel = x >= _X_HANKEL
    if np.any(hankel):
        out[hankel] = _log_iv_hankel(nu[hankel], x[hankel])
    rest = ~(series | hankel)
    if np.any(rest):
        n, xr = nu[rest], x[rest]
        out[rest] = np.log(special.ive(n, xr)) + xr
    return out


def _broadcast(nu, x):
    nu, x = np.broadcast_arrays(
        np.asarray(nu, dtype=np.float64), np.asarray(x, dtype=np.float64)
    )
    if np.any(~np.isfinite(nu)) or np.any(nu < 0):
        bad = float(nu[~(np.isfinite(nu) & (nu >= 0))].flat[0])
        raise ValueError(f"order nu must be finite and >= 0, got {bad!r}")
    if np.any(np.isnan(x)) or np.any(x < 0):
        bad = float(x[~(x >= 0)].flat[0])
        raise ValueError(f"argument x must be >= 0 (and not NaN), got {bad!r}")
    return nu.ravel(), x.ravel(), nu.shape


def log_iv(nu, x):
    """Logarithm of the modified Bessel function of the first kind.

    Parameters
    ----------
    nu : array_like
        Order(s), ``nu >= 0``.
    x : array_like
        Argument(s), ``x >= 0``; broadcast against ``nu``.

    Returns
    -------
    ndarray or float
        ``log I_nu(x)`` in float64: ``-inf`` at ``x = 0`` for ``nu > 0`` and
        ``0`` at ``x = 0`` for ``nu = 0``; ``+inf`` at ``x = +inf``.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf._numerics.bessel import log_iv
    >>> x = 2.0   # I_{1/2}(x) = sqrt(2 / (pi x)) sinh(x)
    >>> bool(np.isclose(log_iv(0.5, x), np.log(np.sqrt(2 / (np.pi * x)) * np.sinh(x))))
    True
    >>> float(log_iv(2047.0, 1e-6)) < -40000   # I_2047(1e-6) underflows, not its log
    True
    """
    nu, x, shape = _broadcast(nu, x)
    out = np.empty_like(x)
    zero = x == 0
    out[zero] = np.where(nu[zero] == 0, 0.0, -np.inf)
    inf = np.isinf(x)
    out[inf] = np.inf
    live = ~(zero | inf)
    large = live & (nu >= _NU_DEBYE)
    small = live & (nu < _NU_DEBYE)
    if np.any(large):
        out[large] = _log_iv_debye(nu[large], x[large])
    if np.any(small):
        out[small] = _log_iv_small_order(nu[small], x[small])
    return out.reshape(shape)[()]


def _ratio_debye(nu, x):
    """(R, 1 - R, dR/dx) at order nu >= 20, x >= 0 finite, no cancellation.

    With z = x/nu, p = 1/sqrt(1+z^2), S_U = sum U_k/nu^k, S_W = sum W_k/nu^k,
    DLMF 10.41.3-4 and I_{nu+1} = I_nu' - (nu/x) I_nu give
    R = z p h(p) with h = 1/(1+p) + S_W/S_U, and
    dR/dz = p^2 (p h - (1 - p^2) h').
    """
    inv_nu = 1.0 / nu
    z = x * inv_nu
    s = np.hypot(1.0, z)
    p = 1.0 / s
    zp = z / s
    su, dsu, sw, dsw = _debye_sums(nu, p, (0, 1, 2, 3))
    frac = sw / su
    h = 1.0 / (1.0 + p) + frac
    ratio = zp * h
    # 1 - zp = p^2 / (1 + zp);  1 - h = p/(1+p) - S_W/S_U (both terms >= 0)
    one_minus_h = p / (1.0 + p) - frac
    complement = p * p / (1.0 + zp) + zp * one_minus_h
    dh = -1.0 / (1.0 + p) ** 2 + (dsw * su - sw * dsu) / (su * su)
    deriv = inv_nu * p * p * (p * h - (1.0 - p * p) * dh)
    return ratio, complement, deriv


def _ratio_parts(nu, x):
    """``R = I_{nu+1}(x)/I_nu(x)``, ``1 - R`` and ``dR/dx``, flat float64 arrays.

    ``nu`` and ``x`` are 1-D, of equal length, validated (finite, >= 0).
    """
    steps = np.maximum(np.ceil(_NU_DEBYE - nu), 0.0)
    top = nu + steps
    ratio, comp, deriv = _ratio_debye(top, x)
    max_steps = int(steps.max()) if steps.size else 0
    uniform = bool(steps.size) and bool(np.all(steps == steps[0]))
    # Backward recurrence R_{mu-1} = x / (2 mu + x R_mu); written with x in the
    # numerators so that x -> 0 neither overflows nor divides by zero.
    for k in range(max_steps, 0, -1):
        if uniform:
            mu, xa, r, c, d = nu + k, x, ratio, comp, deriv
        else:
            active = steps >= k
            mu, xa = nu[active] + k, x[active]
            r, c, d = ratio[active], comp[active], deriv[active]
        den = 2.0 * mu + xa * r
        r_new = xa / den
        c_new = (2.0 * mu - xa * c) / den
        d_new = 2.0 * mu / (den * den) - r_new * r_new * d
        if uniform:
            ratio, comp, deriv = r_new, c_new, d_new
        else:
            ratio[active], comp[active], deriv[active] = r_new, c_new, d_new
    return ratio, comp, deriv


def bessel_ratio(nu, x):
    """Ratio ``I_{nu+1}(x) / I_nu(x)``, its complement and its derivative.

    Parameters
    ----------
    nu : array_like
        Order(s), ``nu >= 0``.
    x : array_like
        Finite argument(s), ``x >= 0``; broadcast against ``nu``.

    Returns
    -------
    ratio, complement, derivative : ndarray or float
        ``R = I_{nu+1}(x)/I_nu(x)``, ``1 - R`` and ``dR/dx``, each to about
        1e-14 relative accuracy (the complement too, also when ``R`` is close
        to 1).

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf._numerics.bessel import bessel_ratio
    >>> r, c, d = bessel_ratio(0.5, 3.0)   # I_{3/2}/I_{1/2} = coth(x) - 1/x
    >>> bool(np.isclose(r, 1 / np.tanh(3.0) - 1 / 3.0, rtol=1e-14))
    True
    >>> bool(np.isclose(r + c, 1.0))
    True
    """
    nu, x, shape = _broadcast(nu, x)
    if np.any(np.isinf(x)):
        raise ValueError("argument x must be finite for the Bessel ratio")
    ratio, comp, deriv = _ratio_parts(nu, x)
    return (
        ratio.reshape(shape)[()],
        comp.reshape(shape)[()],
        deriv.reshape(shape)[()],
    )


def log_bessel_ratio(nu, x):
    """Logarithm of ``I_{nu+1}(x) / I_nu(x)``, computed stably.

    Parameters
    ----------
    nu : array_like
        Order(s), ``nu >= 0``.
    x : array_like
        Finite argument(s), ``x >= 0``; broadcast against ``nu``.

    Returns
    -------
    ndarray or float
        ``log(I_{nu+1}(x) / I_nu(x))``; ``-inf`` at ``x = 0``. Accurate to
        about 1e-14 relative, also when the ratio is close to 1 (the log is
        then ``log1p(-(1 - R))`` with the complement computed directly).

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf._numerics.bessel import log_bessel_ratio
    >>> x = 1e6   # log(coth(x) - 1/x) = log1p(-1/x) up to exp(-2x)
    >>> bool(np.isclose(log_bessel_ratio(0.5, x), np.log1p(-1 / x), rtol=1e-13))
    True
    """
    ratio, comp, _ = bessel_ratio(nu, x)
    ratio, comp = np.asarray(ratio), np.asarray(comp)
    with np.errstate(divide="ignore"):
        out = np.where(comp < 0.5, np.log1p(-comp), np.log(ratio))
    return out[()]
