"""The vMF numerics written against the Array API standard.

The namespace twin of :mod:`skvmf.vmf` and :mod:`skvmf._numerics.bessel` for arrays
of any Array API namespace ``xp`` (numpy through array-api-compat or plain
numpy 2, torch through array-api-compat, array-api-strict): the log
normaliser ``log C_d(kappa)``, ``log I_nu(x)``, the Bessel ratio
``A_d(kappa)`` with its complement and derivative, Banerjee's kappa refined
by Newton steps, and the revised kappa(l). Every function returns an array
of ``xp`` on the input's device; nothing is copied to the host and no scipy
function sees a device array.

Precision: the work is done in float64 wherever the input's device has it
(everything but, e.g., Apple's MPS), also for float32 input, and the result
is cast back to the input's floating dtype (integer and bool input give the
work dtype). Where the device has no float64 the work is float32, with a
Debye series truncated for that precision.

Numerics (the same mathematics as :mod:`skvmf._numerics.bessel`):

* ``log I_nu(x)`` at order ``nu >= 20``: Olver's uniform (Debye) expansion,
  DLMF 10.41.3, valid for every ``x > 0``. The series in ``p = 1/sqrt(1 +
  z^2)`` is summed for the one scalar order as a single polynomial whose
  coefficients are computed on the host once per order (cached) and applied
  as Python floats in a Horner loop on the device.
* ``nu < 20``: the power series while ``x <= sqrt(nu + 1)``; beyond it the
  Debye value at the order ``top = nu + ceil(20 - nu)`` carried down with the
  ratios ``R_mu = I_{mu+1} / I_mu`` of the stable backward recurrence,
  ``log I_nu = log I_top - log prod_{mu=nu}^{top-1} R_mu`` (the product's
  complement ``1 - prod`` is carried along and the log taken as
  ``log1p(-(1 - prod))`` when the product is close to 1, so huge ``x``
  loses nothing and no Hankel branch is needed).
* ``R``, ``1 - R`` and ``dR/dx``: the Debye expansions of ``I_nu`` and
  ``I_nu'`` at the order ``top``, rearranged so nothing cancels, then the
  backward recurrence ``R_{mu-1} = x / (2 mu + x R_mu)`` down to ``nu``.

All functions validate their input (``ValueError`` naming the argument,
complex input refused) and are free of NaN for valid input; validation of an
array costs one device synchronisation.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import lru_cache
from numbers import Integral, Real

import numpy as np

from skvmf._array_api import device as _device_of
from skvmf._array_api import max_float_dtype, namespace_name
from skvmf._numerics.arrays import real_array
from skvmf._numerics.bessel import _NU_DEBYE, _debye_bounds, _debye_polynomials

__all__ = [
    "bessel_ratio",
    "estimate_kappa",
    "log_iv",
    "log_normalizer",
    "mean_resultant_length",
    "revised_kappa",
]

_LOG_2PI = math.log(2.0 * math.pi)
# Power-series terms, used only while x^2 / 4 <= (nu + 1) / 4 (the j-th term
# is then below 4^-j / j!): 20 terms leave far less than 1e-17.
_N_SERIES_TERMS = 20
# The first omitted Debye term is below this (relative) in the work dtype.
_DEBYE_TOL = {8: 1e-17, 4: 1e-9}


# --------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------
def _work_dtype(xp, device):
    """float64 where the device has it, else float32 (e.g. Apple's MPS)."""
    return max_float_dtype(xp, device)


def _tol(xp, work):
    return _DEBYE_TOL[8 if work == xp.float64 else 4]


def _as_input(value, name, xp):
    """``value`` in ``xp`` as ``(work_array, out_dtype, device)``.

    Real floating input keeps its dtype for the result; integer and bool
    input get the work dtype; complex and non-numeric input are refused.
    """
    # the package's rule (real numbers, never cast), where the value lives
    x = xp.asarray(real_array(value, name, host=False))
    dtype = x.dtype
    real = xp.isdtype(dtype, "real floating")
    dev = _device_of(x)
    work = _work_dtype(xp, dev)
    return xp.astype(x, work, copy=False), (dtype if real else work), dev


def _first_bad(x, bad, xp):
    try:
        return repr(float(xp.reshape(x[bad], (-1,))[0]))
    except Exception:  # noqa: BLE001 - only for the message
        return "a bad value"


def _check_range(x, name, xp, *, upper_open=None, allow_inf=False):
    """Refuse NaN, negatives (and ``inf`` unless allowed, ``>= upper_open``)."""
    bad = xp.isnan(x) | (x < 0)
    if not allow_inf:
        bad = bad | xp.isinf(x)
    if upper_open is not None:
        bad = bad | (x >= upper_open)
    if bool(xp.any(bad)):
        n_bad = int(xp.sum(xp.astype(bad, xp.int64)))
        span = "finite and >= 0" if upper_open is None else f"in [0, {upper_open})"
        if allow_inf:
            span = ">= 0 (and not NaN)"
        raise ValueError(
            f"{name} must be {span}; got {_first_bad(x, bad, xp)} "
            f"({n_bad} bad value(s) in an array of shape {tuple(x.shape)})"
        )


def _check_order(nu):
    if isinstance(nu, bool) or not isinstance(nu, Real):
        raise ValueError(f"order nu must be a real Python scalar, got {nu!r}")
    nu = float(nu)
    if not (math.isfinite(nu) and nu >= 0):
        raise ValueError(f"order nu must be finite and >= 0, got {nu!r}")
    return nu


def _check_dim(dim):
    if isinstance(dim, bool) or not isinstance(dim, Integral) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2, got {dim!r}")
    return int(dim)


def _scalar(value, like, xp):
    """A 0-d array of ``like``'s dtype and device (for ``xp.where``)."""
    return xp.asarray(value, dtype=like.dtype, device=_device_of(like))


def _hypot1(z, xp):
    """``sqrt(1 + z^2)`` without overflow."""
    if hasattr(xp, "hypot"):
        return xp.hypot(xp.ones_like(z), z)
    # 1 + z^2 rounds to z^2 long before z^2 overflows
    big = z > 1e150
    zs = xp.where(big, xp.zeros_like(z), z)
    return xp.where(big, z, xp.sqrt(1.0 + zs * zs))


# --------------------------------------------------------------------------
# Debye expansion (host coefficients, device Horner loops)
# --------------------------------------------------------------------------
@lru_cache(maxsize=512)
def _debye_coefficients(nu, tol):
    """Coefficients in ``p`` of ``sum_k F_k(p) / nu^k`` for F = U, U', W, W'.

    Python floats in ascending powers, trailing zeros dropped; the series is
    cut at the first term whose bound (over ``p`` in [0, 1]) is below
    ``tol * nu^k``.
    """
    bounds = _debye_bounds()
    families = _debye_polynomials()
    n_terms = len(bounds)
    for k in range(1, len(bounds)):
        if bounds[k] < tol * nu**k:
            n_terms = k
            break
    out = []
    for family in families:
        coef = np.zeros(max(len(c) for c in family[:n_terms]))
        for k in range(n_terms):
            coef[: len(family[k])] += family[k] * nu ** (-k)
        last = len(coef)
        while last > 1 and coef[last - 1] == 0.0:
            last -= 1
        out.append(tuple(float(c) for c in coef[:last]))
    return tuple(out)


def _horner(coefs, p, xp):
    total = xp.full_like(p, coefs[-1])
    for c in reversed(coefs[:-1]):
        total = total * p + c
    return total


def _debye_sums(nu, x, xp, tol, families):
    """``z = x/nu``, ``s = sqrt(1 + z^2)``, ``p = 1/s`` and the requested sums.

    Families: 0 ``S_U = sum U_k(p)/nu^k``, 1 its ``p``-derivative, 2 ``S_W``,
    3 its ``p``-derivative (one Horner pass each, host coefficients).
    """
    z = x / nu
    s = _hypot1(z, xp)
    p = 1.0 / s
    coefs = _debye_coefficients(nu, tol)
    return z, s, p, [_horner(coefs[f], p, xp) for f in families]


def _log_iv_from_sums(nu, x, z, s, p, su, xp):
    """log I_nu(x) (DLMF 10.41.3) from :func:`_debye_sums`; needs x > 0."""
    # log z, or log x - log nu where x / nu may lose digits to underflow
    tiny = x < 1e-30
    log_z = xp.where(tiny, xp.log(x) - math.log(nu), xp.log(xp.where(tiny, x, z)))
    eta = s + log_z - xp.log1p(s)
    return nu * eta - 0.5 * math.log(2.0 * math.pi * nu) + 0.5 * xp.log(p) + xp.log(su)


def _log_iv_debye(nu, x, xp, tol):
    """log I_nu(x) from the uniform expansion (nu >= 20, 0 < x < inf)."""
    z, s, p, (su,) = _debye_sums(nu, x, xp, tol, (0,))
    return _log_iv_from_sums(nu, x, z, s, p, su, xp)


def _ratio_down(nu, x, xp, tol, *, want_deriv=True, want_log=False):
    """``(R, 1 - R, dR/dx, log I_nu)`` for ``0 <= x < inf`` (``x >= 1`` for the log).

    The Debye expansions at ``top = nu + ceil(20 - nu)`` (``nu`` itself from
    20 on), rearranged so that nothing cancels: with ``h = 1/(1+p) +
    S_W/S_U``, ``R = z p h`` and ``dR/dz = p^2 (p h - (1 - p^2) h')``; then
    the backward recurrence ``R_{mu-1} = x / (2 mu + x R_mu)`` down to
    ``nu``, written with ``x`` in the numerators so that ``x -> 0`` neither
    overflows nor divides by zero. ``log I_nu = log I_top - log prod R_mu``
    over ``mu = nu .. top-1``. Entries not asked for are ``None``.
    """
    steps = max(math.ceil(_NU_DEBYE - nu), 0)
    top = nu + steps
    families = (0, 2, 1, 3) if want_deriv else (0, 2)
    z, s, p, sums = _debye_sums(top, x, xp, tol, families)
    su, sw = sums[0], sums[1]
    zp = z / s
    frac = sw / su
    h = 1.0 / (1.0 + p) + frac
    ratio = zp * h
    # 1 - zp = p^2 / (1 + zp); 1 - h = p/(1+p) - S_W/S_U (both terms >= 0)
    comp = p * p / (1.0 + zp) + zp * (p / (1.0 + p) - frac)
    deriv = log_i = None
    if want_deriv:
        dsu, dsw = sums[2], sums[3]
        dh = -1.0 / ((1.0 + p) * (1.0 + p)) + (dsw * su - sw * dsu) / (su * su)
        deriv = (1.0 / top) * p * p * (p * h - (1.0 - p * p) * dh)
    if want_log:
        log_i = _log_iv_from_sums(top, x, z, s, p, su, xp)
    # log_i needs prod R_mu: kept as a product (one log at the end) and its
    # complement 1 - prod, exact when every R is close to 1; with x >= 1 each
    # R_mu >= 1/41, so 20 factors cannot underflow even in float32
    prod = prod_comp = None
    for k in range(steps, 0, -1):
        mu2 = 2.0 * (nu + k)
        den = mu2 + x * ratio
        ratio_new = x / den
        comp = (mu2 - x * comp) / den
        if want_deriv:
            deriv = (mu2 / den) / den - ratio_new * ratio_new * deriv
        ratio = ratio_new
        if want_log:
            if prod is None:
                prod, prod_comp = ratio, comp
            else:  # 1 - P R = (1 - P) + P (1 - R)
                prod_comp = prod_comp + prod * comp
                prod = prod * ratio
    if want_log and prod is not None:
        half = _scalar(0.5, x, xp)
        log_i = log_i - xp.where(
            prod_comp < 0.5,
            xp.log1p(-xp.minimum(prod_comp, half)),
            xp.log(prod),
        )
    return ratio, comp, deriv, log_i


def _log_series(nu, x, xp):
    """log of sum_j (x^2/4)^j / (j! (nu+1)_j); x^2/4 <= (nu+1)/4 assumed."""
    t = 0.25 * x * x
    term = xp.ones_like(t)
    tail = xp.zeros_like(t)
    for j in range(1, _N_SERIES_TERMS + 1):
        term = term * t / (j * (nu + j))
        tail = tail + term
    return xp.log1p(tail)


def _log_iv_positive(nu, x, xp, tol):
    """log I_nu(x) for 0 < x < inf, without the small-order power series."""
    if nu >= _NU_DEBYE:
        return _log_iv_debye(nu, x, xp, tol)
    return _ratio_down(nu, x, xp, tol, want_deriv=False, want_log=True)[3]


@lru_cache(maxsize=64)
def _log_surface_area(d):
    """The numpy path's value (a host scalar), so kappa = 0 matches it exactly."""
    from skvmf.vmf import log_surface_area

    return float(log_surface_area(d))


# --------------------------------------------------------------------------
# public functions
# --------------------------------------------------------------------------
def log_iv(nu, x, xp):
    """Logarithm of the modified Bessel function ``I_nu(x)``.

    Parameters
    ----------
    nu : float
        Order, a Python scalar ``>= 0`` (one order per call).
    x : array
        Arguments ``>= 0`` (``+inf`` allowed), any shape, in namespace ``xp``.
    xp : module
        The Array API namespace of ``x``.

    Returns
    -------
    array
        ``log I_nu(x)`` with the shape of ``x``, in ``xp`` on its device and
        in its floating dtype (computed in float64 where the device has
        it): ``-inf`` at ``x = 0`` for ``nu > 0``, ``0`` at ``x = 0`` for
        ``nu = 0``, ``+inf`` at ``x = +inf``. Agrees with
        :func:`skvmf._numerics.bessel.log_iv` to about 1e-14 relative.

    Examples
    --------
    >>> import math
    >>> import numpy as np
    >>> from skvmf._numerics.xp_vmf import log_iv
    >>> x = np.asarray([2.0])   # I_{1/2}(x) = sqrt(2 / (pi x)) sinh(x)
    >>> ref = math.log(math.sqrt(2 / (math.pi * 2.0)) * math.sinh(2.0))
    >>> bool(abs(log_iv(0.5, x, np)[0] - ref) < 1e-14)
    True
    """
    nu = _check_order(nu)
    x, out_dtype, _ = _as_input(x, "x", xp)
    _check_range(x, "x", xp, allow_inf=True)
    tol = _tol(xp, x.dtype)
    one = _scalar(1.0, x, xp)
    live = (x > 0) & xp.isfinite(x)
    if nu >= _NU_DEBYE:
        val = _log_iv_debye(nu, xp.where(live, x, one), xp, tol)
    else:
        thr = math.sqrt(nu + 1.0)
        small = x <= thr
        xs = xp.where(small & live, x, one)
        series = _log_series(nu, xs, xp) - math.lgamma(nu + 1.0)
        if nu > 0:  # (x/2)^nu; nu = 0 has no such factor (and 0 * -inf is NaN)
            # log(x / 2), also where halving a subnormal x would lose digits
            tiny = xs < 1e-300
            half = xp.where(tiny, one, 0.5 * xs)
            log_half = xp.where(tiny, xp.log(xs) - math.log(2.0), xp.log(half))
            series = series + nu * log_half
        xl = xp.where(small | ~live, _scalar(thr, x, xp), x)
        val = xp.where(small, series, _log_iv_positive(nu, xl, xp, tol))
    at_zero = 0.0 if nu == 0 else -math.inf
    val = xp.where(x == 0, _scalar(at_zero, x, xp), val)
    val = xp.where(xp.isinf(x), _scalar(math.inf, x, xp), val)
    return xp.astype(val, out_dtype, copy=False)


def bessel_ratio(nu, x, xp):
    """Ratio ``R = I_{nu+1}(x) / I_nu(x)``, its complement and its derivative.

    Parameters
    ----------
    nu : float
        Order, a Python scalar ``>= 0``.
    x : array
        Finite arguments ``>= 0``, any shape, in namespace ``xp``.
    xp : module
        The Array API namespace of ``x``.

    Returns
    -------
    ratio, complement, derivative : array
        ``R``, ``1 - R`` (to full relative precision, also when ``R`` is
        close to 1) and ``dR/dx``, each with the shape, namespace, device and
        floating dtype of ``x``; agree with :func:`skvmf._numerics.bessel.bessel_ratio`
        to about 1e-14 relative.

    Examples
    --------
    >>> import math
    >>> import numpy as np
    >>> from skvmf._numerics.xp_vmf import bessel_ratio
    >>> r, c, d = bessel_ratio(0.5, np.asarray([3.0]), np)  # coth(x) - 1/x
    >>> bool(abs(r[0] - (1 / math.tanh(3.0) - 1 / 3.0)) < 1e-14)
    True
    """
    nu = _check_order(nu)
    x, out_dtype, _ = _as_input(x, "x", xp)
    _check_range(x, "x", xp)
    ratio, comp, deriv, _ = _ratio_down(nu, x, xp, _tol(xp, x.dtype))
    return tuple(xp.astype(a, out_dtype, copy=False) for a in (ratio, comp, deriv))


def log_normalizer(dim, kappa, xp):
    """Log normalising constant ``log C_d(kappa)`` of the vMF distribution.

    ``C_d(kappa) = kappa^(d/2-1) / ((2 pi)^(d/2) I_(d/2-1)(kappa))``.

    Parameters
    ----------
    dim : int
        Dimension ``d >= 2``.
    kappa : array
        Concentrations, finite and ``>= 0``, any shape, in namespace ``xp``.
    xp : module
        The Array API namespace of ``kappa``.

    Returns
    -------
    array
        ``log C_d(kappa)`` with the shape, namespace, device and floating
        dtype of ``kappa``: exactly ``-log(surface area of S^(d-1))`` at
        ``kappa = 0`` and smooth for tiny kappa (the power series of
        ``I_nu`` with the ``kappa^nu`` factors cancelled analytically);
        agrees with :func:`skvmf.vmf.log_normalizer` to about 1e-14 relative.

    Examples
    --------
    >>> import math
    >>> import numpy as np
    >>> from skvmf._numerics.xp_vmf import log_normalizer
    >>> k = 2.0   # in 3-D, C_3(k) = k / (4 pi sinh k)
    >>> got = log_normalizer(3, np.asarray([k]), np)[0]
    >>> bool(abs(got - math.log(k / (4 * math.pi * math.sinh(k)))) < 1e-14)
    True
    """
    d = _check_dim(dim)
    k, out_dtype, _ = _as_input(kappa, "kappa", xp)
    _check_range(k, "kappa", xp)
    nu = 0.5 * d - 1.0
    thr = math.sqrt(nu + 1.0)  # kappa^2 / 4 <= (nu + 1) / 4, without kappa^2
    small = k <= thr
    series = -_log_surface_area(d) - _log_series(
        nu, xp.minimum(k, _scalar(thr, k, xp)), xp
    )
    kl = xp.where(small, _scalar(thr, k, xp), k)
    rest = nu * xp.log(kl) - 0.5 * d * _LOG_2PI
    rest = rest - _log_iv_positive(nu, kl, xp, _tol(xp, k.dtype))
    return xp.astype(xp.where(small, series, rest), out_dtype, copy=False)


def mean_resultant_length(kappa, dim, xp):
    """Mean resultant length ``A_d(kappa) = I_(d/2)(kappa) / I_(d/2-1)(kappa)``.

    Parameters
    ----------
    kappa : array
        Concentrations, finite and ``>= 0``, any shape, in namespace ``xp``.
    dim : int
        Dimension ``d >= 2``.
    xp : module
        The Array API namespace of ``kappa``.

    Returns
    -------
    array
        ``A_d(kappa)`` in ``[0, 1)`` (``0`` at ``kappa = 0``) with the shape,
        namespace, device and floating dtype of ``kappa``.

    Examples
    --------
    >>> import math
    >>> import numpy as np
    >>> from skvmf._numerics.xp_vmf import mean_resultant_length
    >>> a = mean_resultant_length(np.asarray([3.0]), 3, np)  # coth k - 1/k
    >>> bool(abs(a[0] - (1 / math.tanh(3.0) - 1 / 3.0)) < 1e-14)
    True
    """
    d = _check_dim(dim)
    k, out_dtype, _ = _as_input(kappa, "kappa", xp)
    _check_range(k, "kappa", xp)
    tol = _tol(xp, k.dtype)
    ratio = _ratio_down(0.5 * d - 1.0, k, xp, tol, want_deriv=False)[0]
    return xp.astype(ratio, out_dtype, copy=False)


def estimate_kappa(rbar, dim, xp, newton_steps=2):
    """Concentration kappa whose mean resultant length ``A_d(kappa)`` is ``rbar``.

    Banerjee et al. (2005) ``kappa = r (d - r^2) / (1 - r^2)``, refined by
    Newton steps on ``logit A_d(kappa) = logit r`` in ``log kappa``, exactly
    as :func:`skvmf.vmf.estimate_kappa`.

    Parameters
    ----------
    rbar : array
        Mean resultant lengths in ``[0, 1)``, any shape, in namespace ``xp``.
    dim : int
        Dimension ``d >= 2``.
    xp : module
        The Array API namespace of ``rbar``.
    newton_steps : int, default=2
        Newton refinements; ``0`` gives the plain closed form.

    Returns
    -------
    array
        kappa (``0`` where ``rbar = 0``) with the shape, namespace, device and
        floating dtype of ``rbar``.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf._numerics.xp_vmf import estimate_kappa
    >>> float(estimate_kappa(np.asarray(0.5), 3, np, newton_steps=0))
    1.8333333333333333
    """
    d = _check_dim(dim)
    if (
        isinstance(newton_steps, bool)
        or not isinstance(newton_steps, Integral)
        or newton_steps < 0
    ):
        raise ValueError(f"newton_steps must be an integer >= 0, got {newton_steps!r}")
    r, out_dtype, _ = _as_input(rbar, "rbar", xp)
    _check_range(r, "rbar", xp, upper_open=1)
    live = r > 0
    # r = 0 gives kappa = 0; the Newton pass runs on a stand-in value there
    r = xp.where(live, r, _scalar(0.5, r, xp))
    q = 1.0 - r
    kappa = r * (d - r * r) / (q * (1.0 + r))  # 1 - r^2 = q (1 + r)
    if newton_steps:
        nu = 0.5 * d - 1.0
        tol = _tol(xp, r.dtype)
        target = xp.log(r) - xp.log(q)
        for _ in range(int(newton_steps)):
            ratio, comp, deriv, _ = _ratio_down(nu, kappa, xp, tol)
            resid = xp.log(ratio) - xp.log(comp) - target
            slope = kappa * deriv / (ratio * comp)
            kappa = kappa * xp.exp(-resid / slope)
    kappa = xp.where(live, kappa, _scalar(0.0, kappa, xp))
    return xp.astype(kappa, out_dtype, copy=False)


# --------------------------------------------------------------------------
# revised kappa(l)
# --------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _host_spline(dim, sigma):
    """The revised-kappa spline as host arrays (cf. ``TorchKappa``).

    Each interval's cubic Hermite polynomial of ``log kappa`` in its local
    ``t = (log l - x0) / width`` is expanded once to ``c0 + c1 t + c2 t^2 +
    c3 t^3``, so the device does one search, five gathers and a Horner step.
    """
    from skvmf._numerics.kappa_table import _revised_kappa_slopes, _revised_kappa_table

    strengths, kappas = _revised_kappa_table(dim, sigma)
    x = np.log(np.asarray(strengths[1:], dtype=np.float64))
    y = np.log(np.asarray(kappas[1:], dtype=np.float64))
    m = np.asarray(_revised_kappa_slopes(dim, sigma), dtype=np.float64)
    width = np.diff(x)
    y0, y1 = y[:-1], y[1:]
    m0, m1 = width * m[:-1], width * m[1:]
    arrays = (
        x,
        width,
        y0,
        m0,
        -3.0 * y0 - 2.0 * m0 + 3.0 * y1 - m1,
        2.0 * y0 + m0 - 2.0 * y1 + m1,
    )
    scalars = (
        float(strengths[1]),  # first positive grid strength
        float(kappas[1]),  # its kappa
        float(strengths[-1]),  # last grid strength
        0.5 * (dim - 2.0),  # asymptote offset (Banerjee, no Newton steps)
    )
    return arrays, scalars


# device copies of the spline, per (dim, sigma, namespace, device, dtype)
_DEVICE_TABLES: OrderedDict = OrderedDict()
_MAX_DEVICE_TABLES = 32


def _device_spline(dim, sigma, xp, dev, dtype):
    key = (dim, sigma, namespace_name(xp), str(dev), str(dtype))
    hit = _DEVICE_TABLES.get(key)
    if hit is not None:
        _DEVICE_TABLES.move_to_end(key)
        return hit
    arrays, _ = _host_spline(dim, sigma)
    tables = tuple(xp.asarray(a, dtype=dtype, device=dev) for a in arrays)
    _DEVICE_TABLES[key] = tables
    while len(_DEVICE_TABLES) > _MAX_DEVICE_TABLES:
        _DEVICE_TABLES.popitem(last=False)
    return tables


def revised_kappa(strength, dim, sigma, xp):
    """Strength-dependent concentration ``kappa(l)`` of the revised vMF.

    The cubic Hermite spline of ``log kappa`` against ``log l`` through the
    cached table of :func:`skvmf._numerics.kappa_table._revised_kappa_table` (with its
    exact node slopes), linear in ``l`` below the first positive grid point
    (``kappa(0) = 0``) and ``(l / sigma)^2 + (d - 2) / 2`` beyond the last:
    :func:`skvmf.vmf.revised_kappa` with its defaults, and ``TorchKappa``.

    Parameters
    ----------
    strength : array
        Feature strengths ``l``, finite and ``>= 0``, any shape, in ``xp``.
    dim : int
        Dimension ``d >= 2``.
    sigma : float
        Noise standard deviation ``> 0``.
    xp : module
        The Array API namespace of ``strength``.

    Returns
    -------
    array
        kappa(l) with the shape, namespace, device and floating dtype of
        ``strength``; ``inf`` only where ``(l / sigma)^2`` overflows.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf._numerics.xp_vmf import revised_kappa
    >>> k = revised_kappa(np.asarray([0.0, 1.0, 10.0, 1e6]), 3, 1.0, np)
    >>> [round(float(v), 3) for v in k]
    [0.0, 1.748, 100.487, 1000000000000.5]
    """
    d = _check_dim(dim)
    if isinstance(sigma, bool) or not isinstance(sigma, Real):
        raise ValueError(f"sigma must be a real number > 0, got {sigma!r}")
    s = float(sigma)
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"sigma must be finite and > 0, got {sigma!r}")
    a, out_dtype, dev = _as_input(strength, "strength", xp)
    _check_range(a, "strength", xp)
    shape = tuple(a.shape)
    a = xp.reshape(a, (-1,))
    xk, width, c0, c1, c2, c3 = _device_spline(d, s, xp, dev, a.dtype)
    _, (l_first, k_first, l_last, offset) = _host_spline(d, s)
    # every branch sees inputs inside its own range: no inf/NaN anywhere
    x = xp.log(xp.clip(a, l_first, l_last))
    idx = xp.clip(xp.searchsorted(xk, x), 1, xk.shape[0] - 1) - 1
    t = (x - xp.take(xk, idx, axis=0)) / xp.take(width, idx, axis=0)
    log_kappa = xp.take(c3, idx, axis=0) * t + xp.take(c2, idx, axis=0)
    log_kappa = log_kappa * t + xp.take(c1, idx, axis=0)
    log_kappa = log_kappa * t + xp.take(c0, idx, axis=0)
    inside = xp.exp(log_kappa)
    below = k_first * (xp.minimum(a, _scalar(l_first, a, xp)) / l_first)
    with np.errstate(over="ignore"):  # (l / sigma)^2 beyond 1.8e308 is inf
        beyond = (xp.maximum(a, _scalar(l_last, a, xp)) / s) ** 2 + offset
    out = xp.where(a < l_first, below, xp.where(a > l_last, beyond, inside))
    return xp.astype(xp.reshape(out, shape), out_dtype, copy=False)
