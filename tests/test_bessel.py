"""log I_nu and the Bessel ratio against arbitrary-precision references."""

import mpmath as mp
import numpy as np
import pytest
from _mp_reference import mp_log_iv

from skvmf._numerics.bessel import bessel_ratio, log_bessel_ratio, log_iv

mp.mp.dps = 40

# orders of the vMF normaliser (d/2 - 1) and of A_d (d/2) for d in
# {2, 3, 5, 10, 64, 512, 1024, 4096}, plus both sides of the switch at 20
ORDERS = [0.0, 0.5, 1.0, 1.5, 4.0, 5.0, 19.5, 19.999, 20.0, 31.0, 255.0, 511.0]
ORDERS += [1023.0, 2047.0, 2048.0]
ARGS = np.logspace(-6, 6, 13)


def test_reference_methods_agree():
    # the mpmath reference's own branches agree where they overlap
    for nu in (0.5, 4.0, 31.0):
        x = mp.mpf(1500)
        series = mp.log(mp.besseli(nu, x))
        assert abs(mp_log_iv(nu, 1500.0) - series) < mp.mpf(10) ** -25 * abs(series)


@pytest.mark.parametrize("nu", ORDERS)
def test_log_iv_matches_mpmath(nu):
    got = log_iv(nu, ARGS)
    ref = np.array([float(mp_log_iv(nu, float(x))) for x in ARGS])
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=0)


@pytest.mark.parametrize("nu", ORDERS)
def test_ratio_complement_and_derivative_match_mpmath(nu):
    ratio, comp, deriv = bessel_ratio(nu, ARGS)
    log_ratio = log_bessel_ratio(nu, ARGS)
    for x, r, c, d, lr in zip(ARGS, ratio, comp, deriv, log_ratio):
        log_ref = mp_log_iv(nu + 1, float(x)) - mp_log_iv(nu, float(x))
        ref = mp.exp(log_ref)
        assert abs(lr - log_ref) <= 1e-12 * abs(log_ref), (x, lr, log_ref)
        # R' = 1 - R^2 - (2 nu + 1) R / x (from I_nu' = I_{nu+1} + nu I_nu / x)
        ref_d = 1 - ref**2 - mp.mpf(2 * nu + 1) / mp.mpf(x) * ref
        assert abs(r - ref) <= 1e-14 * ref, (x, r, ref)
        assert abs(c - (1 - ref)) <= 1e-12 * (1 - ref), (x, c, 1 - ref)
        assert abs(d - ref_d) <= 1e-11 * ref_d, (x, d, ref_d)


def test_half_integer_closed_forms():
    # I_{1/2}(x) = sqrt(2/(pi x)) sinh x, I_{3/2}/I_{1/2} = coth x - 1/x
    x = np.linspace(0.1, 30.0, 50)
    np.testing.assert_allclose(
        log_iv(0.5, x), np.log(np.sqrt(2 / (np.pi * x)) * np.sinh(x)), rtol=1e-14
    )
    ratio, comp, deriv = bessel_ratio(0.5, x)
    np.testing.assert_allclose(ratio, 1 / np.tanh(x) - 1 / x, rtol=1e-13)
    np.testing.assert_allclose(deriv, 1 / x**2 - 1 / np.sinh(x) ** 2, rtol=1e-9)
    # close to 1 the log keeps relative precision: log(1 - 1/x) up to e^(-2x)
    big = np.array([1e3, 1e6, 1e9, 1e12])
    np.testing.assert_allclose(
        log_bessel_ratio(0.5, big), np.log1p(-1 / big), rtol=1e-13
    )
    np.testing.assert_allclose(bessel_ratio(0.5, big)[1], 1 / big, rtol=1e-13)


def test_values_at_zero_and_small_arguments():
    assert log_iv(0.0, 0.0) == 0.0
    assert log_iv(3.5, 0.0) == -np.inf
    assert log_iv(2047.0, 0.0) == -np.inf
    r, c, d = bessel_ratio([0.0, 2047.0], 0.0)
    np.testing.assert_array_equal(r, 0.0)
    np.testing.assert_array_equal(c, 1.0)
    np.testing.assert_allclose(d, [1 / 2.0, 1 / (2 * 2048.0)], rtol=1e-15)
    assert log_bessel_ratio(1.0, 0.0) == -np.inf
    # leading behaviour I_nu(x) ~ (x/2)^nu / Gamma(nu + 1) where it underflows
    x = 1e-200
    np.testing.assert_allclose(
        log_iv(2047.0, x), 2047 * np.log(x / 2) - float(mp.loggamma(2048)), rtol=1e-15
    )
    np.testing.assert_allclose(bessel_ratio(2047.0, x)[0], x / 4096, rtol=1e-15)


def test_large_orders_stay_finite():
    nu = np.array([2047.0, 2048.0, 1e4])[:, None]
    x = np.logspace(-8, 8, 9)[None, :]
    assert np.all(np.isfinite(log_iv(nu, x)))
    ratio, comp, deriv = bessel_ratio(nu, x)
    assert np.all((ratio > 0) & (ratio < 1) & (comp > 0) & (deriv > 0))
    np.testing.assert_allclose(ratio + comp, 1.0, rtol=1e-15)
    # R increases with x and decreases with the order
    assert np.all(np.diff(ratio, axis=1) > 0)
    assert np.all(np.diff(ratio, axis=0) < 0)


def test_broadcasting_and_scalars():
    out = log_iv(np.array([0.5, 1.5])[:, None], np.array([1.0, 2.0, 3.0]))
    assert out.shape == (2, 3)
    assert isinstance(log_iv(1.0, 2.0), float)
    np.testing.assert_allclose(out[1, 2], log_iv(1.5, 3.0))


@pytest.mark.parametrize(
    ("nu", "x", "match"),
    [
        (-0.5, 1.0, "order nu"),
        (np.nan, 1.0, "order nu"),
        (1.0, -1.0, "argument x"),
        (1.0, np.nan, "argument x"),
    ],
)
def test_bad_input(nu, x, match):
    with pytest.raises(ValueError, match=match):
        log_iv(nu, x)
    with pytest.raises(ValueError, match=match):
        bessel_ratio(nu, x)


def test_ratio_rejects_infinite_argument():
    with pytest.raises(ValueError, match="finite"):
        bessel_ratio(1.0, np.inf)
    assert log_iv(1.0, np.inf) == np.inf
