"""An arbitrary-precision reference for log I_nu(x), shared by the tests of
skvmf._numerics.bessel and skvmf.vmf (independent of the code under test: mpmath)."""

from functools import cache

import mpmath as mp

mp.mp.dps = 40


@cache
def mp_log_iv(nu, x):
    """log I_nu(x) in mpmath, by a method suited to (nu, x).

    Power series (mpmath's besseli) for moderate x; Hankel's expansion when
    x > nu^2 (its terms then decrease from the start); otherwise the Poisson
    integral ``I_nu(x) = (x/2)^nu / (sqrt(pi) Gamma(nu + 1/2))
    int_{-1}^{1} (1 - t^2)^(nu - 1/2) e^(x t) dt`` with t = 1 - s, split
    around the peak of its integrand.
    """
    nu, x = mp.mpf(nu), mp.mpf(x)
    if x < 200:
        return mp.log(mp.besseli(nu, x))
    if x > nu**2:
        mu, term, total, k = 4 * nu**2, mp.mpf(1), mp.mpf(1), 0
        while abs(term) > mp.mpf(10) ** (-mp.mp.dps - 5):
            k += 1
            term = -term * (mu - (2 * k - 1) ** 2) / (8 * k * x)
            total += term
        return x - mp.log(2 * mp.pi * x) / 2 + mp.log(total)
    a = nu - mp.mpf(1) / 2
    # peak of a log(s (2 - s)) - x s: x s^2 - 2 (x + a) s + 2 a = 0
    s0 = ((2 * x + 2 * a) - mp.sqrt((2 * x + 2 * a) ** 2 - 8 * a * x)) / (2 * x)
    width = 1 / mp.sqrt(a / s0**2 + a / (2 - s0) ** 2)
    pts = sorted(
        {mp.mpf(0), mp.mpf(2)}
        | {
            s0 + k * width
            for k in (-20, -8, -3, 0, 3, 8, 20, 60)
            if 0 < s0 + k * width < 2
        }
    )
    c = a * mp.log(s0 * (2 - s0)) - x * s0
    val = mp.quad(lambda s: mp.exp(a * mp.log(s * (2 - s)) - x * s - c), pts)
    return (
        nu * mp.log(x / 2)
        - mp.log(mp.sqrt(mp.pi))
        - mp.loggamma(nu + mp.mpf(1) / 2)
        + x
        + c
        + mp.log(val)
    )
