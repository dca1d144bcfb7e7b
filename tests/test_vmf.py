"""The vMF distribution and the revised kappa(l) against independent references."""

import mpmath as mp
import numpy as np
import pytest
from _mp_reference import mp_log_iv
from scipy import integrate, stats

from skvmf._numerics.bessel import bessel_ratio
from skvmf._numerics.kappa_table import (
    _asymptote_offset,
    _rbar_quadrature,
    _revised_kappa_slopes,
    _revised_kappa_table,
    _unit_table,
)
from skvmf.vmf import (
    estimate_kappa,
    fit_vmf,
    log_normalizer,
    log_surface_area,
    logpdf,
    mean_resultant_length,
    revised_kappa,
    sample,
)

mp.mp.dps = 40

DIMS = [2, 3, 5, 10, 64, 512, 1024, 4096]
KAPPAS = np.logspace(-6, 6, 13)


def mp_log_normalizer(d, kappa):
    nu = mp.mpf(d) / 2 - 1
    k = mp.mpf(kappa)
    return nu * mp.log(k) - mp.mpf(d) / 2 * mp.log(2 * mp.pi) - mp_log_iv(nu, kappa)


def mp_rbar(a, d):
    """rbar(a) = a/sqrt(2) Gamma((d+1)/2) / Gamma(d/2+1) 1F1(1/2; d/2+1; -a^2/2)."""
    a, d = mp.mpf(a), mp.mpf(d)
    return (
        a
        / mp.sqrt(2)
        * mp.exp(mp.loggamma((d + 1) / 2) - mp.loggamma(d / 2 + 1))
        * mp.hyp1f1(mp.mpf(1) / 2, d / 2 + 1, -(a**2) / 2)
    )


def random_direction(d, seed=0):
    v = np.random.default_rng(seed).standard_normal(d)
    return v / np.linalg.norm(v)


# --------------------------------------------------------------------------
# normaliser and density
# --------------------------------------------------------------------------
@pytest.mark.parametrize("d", DIMS)
def test_log_normalizer_matches_mpmath(d):
    got = log_normalizer(d, KAPPAS)
    assert np.all(np.isfinite(got))
    ref = np.array([float(mp_log_normalizer(d, float(k))) for k in KAPPAS])
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=0)


def test_log_surface_area():
    assert log_surface_area(2) == pytest.approx(np.log(2 * np.pi), rel=1e-15)
    assert log_surface_area(3) == pytest.approx(np.log(4 * np.pi), rel=1e-15)
    for d in (5, 64, 4096):
        ref = mp.log(2) + mp.mpf(d) / 2 * mp.log(mp.pi) - mp.loggamma(mp.mpf(d) / 2)
        assert log_surface_area(d) == pytest.approx(float(ref), rel=1e-14)


@pytest.mark.parametrize("d", DIMS)
def test_log_normalizer_at_and_near_zero_is_the_uniform_density(d):
    uniform = -log_surface_area(d)
    assert log_normalizer(d, 0.0) == uniform
    tiny = np.array([5e-324, 1e-300, 1e-100, 1e-12])
    np.testing.assert_allclose(log_normalizer(d, tiny), uniform, rtol=1e-15)
    # continuous: log C_d(k) = -log|S| - k^2 / (2 d) + O(k^4)
    k = 1e-4
    assert log_normalizer(d, k) == pytest.approx(uniform - k**2 / (2 * d), rel=1e-15)


@pytest.mark.parametrize("d", [2, 3, 64, 4096])
def test_log_normalizer_integrates_minus_mean_resultant_length(d):
    # d/dk log C_d(k) = -A_d(k), the mean of mu.x (exponential-family identity)
    base = log_normalizer(d, 0.0)
    nodes, weights = np.polynomial.legendre.leggauss(40)
    for k in np.logspace(-2, 5, 8):
        # composite Gauss-Legendre on geometric panels of [0, k], one vector call
        edges = np.concatenate([[0.0], k * np.logspace(-8, 0, 33)])
        lo, hi = edges[:-1, None], edges[1:, None]
        t = 0.5 * (lo + hi) + 0.5 * (hi - lo) * nodes
        integral = np.sum(0.5 * (hi - lo) * weights * mean_resultant_length(t, d))
        got = log_normalizer(d, k) - base
        assert got == pytest.approx(-integral, rel=1e-9, abs=1e-14 * max(1, abs(base)))


@pytest.mark.parametrize(("d", "kappa"), [(3, 0.5), (3, 30.0), (5, 2.0), (10, 50.0)])
def test_logpdf_matches_scipy(d, kappa):
    mu = random_direction(d, seed=d)
    X = stats.vonmises_fisher(mu, kappa).rvs(50, random_state=1)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(
        logpdf(X, mu, kappa), stats.vonmises_fisher(mu, kappa).logpdf(X), rtol=1e-10
    )


@pytest.mark.parametrize("kappa", [0.0, 0.5, 5.0, 100.0])
def test_logpdf_integrates_to_one_in_3d(kappa):
    mu = np.array([0.0, 0.0, 1.0])

    def density(t):  # the density depends on t = mu.x only; area element 2 pi dt
        x = np.array([[np.sqrt(1 - t * t), 0.0, t]])
        return 2 * np.pi * np.exp(logpdf(x, mu, kappa)[0])

    total, _ = integrate.quad(density, -1, 1, points=[1 - 1 / max(kappa, 1)])
    assert total == pytest.approx(1.0, rel=1e-10)
    # closed form kappa / (4 pi sinh kappa) exp(kappa t), via log for large kappa
    t = np.array([-1.0, 0.0, 0.3, 1.0])
    x = np.stack([np.sqrt(1 - t**2), np.zeros(4), t], axis=1)
    if kappa > 0:
        log_c = np.log(kappa / (2 * np.pi)) - kappa - np.log1p(-np.exp(-2 * kappa))
    else:
        log_c = -np.log(4 * np.pi)
    np.testing.assert_allclose(logpdf(x, mu, kappa), log_c + kappa * t, rtol=1e-13)


def test_logpdf_integrates_to_one_on_the_circle():
    mu = np.array([np.cos(0.3), np.sin(0.3)])
    for kappa in (0.0, 2.0, 300.0):
        theta = np.linspace(0, 2 * np.pi, 20001)
        X = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        total = integrate.trapezoid(np.exp(logpdf(X, mu, kappa)), theta)
        assert total == pytest.approx(1.0, rel=1e-8)


def test_logpdf_per_row_kappa_and_float32():
    d = 6
    mu = random_direction(d)
    X = sample(mu, 4.0, 7, random_state=0)
    kappas = np.linspace(0.0, 30.0, 7)
    rows = [logpdf(X[i : i + 1], mu, kappas[i])[0] for i in range(7)]
    np.testing.assert_allclose(logpdf(X, mu, kappas), rows, rtol=1e-14)
    X32 = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    out = logpdf(X32, mu.astype(np.float32), np.float32(4.0))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, logpdf(X, mu, 4.0), rtol=1e-5)


def test_logpdf_huge_dimension_and_kappa_stays_finite():
    d = 4096
    mu = random_direction(d)
    X = sample(mu, 1e6, 5, random_state=0)
    lp = logpdf(X, mu, 1e6)
    assert np.all(np.isfinite(lp))
    # near the mode the log density is close to log C + kappa
    assert np.all(lp <= log_normalizer(d, 1e6) + 1e6)


# --------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("d", "kappa", "n"),
    [
        (2, 0.0, 20000),
        (2, 1.0, 20000),
        (3, 1.0, 20000),
        (3, 50.0, 20000),
        (64, 0.0, 20000),
        (64, 50.0, 20000),
        (64, 1e4, 20000),
        (2048, 1.0, 2000),
        (2048, 1e4, 2000),
    ],
)
def test_sample_moments(d, kappa, n):
    mu = random_direction(d, seed=d)
    X = sample(mu, kappa, n, random_state=12)
    assert X.shape == (n, d)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-12)
    w = X @ mu
    # E[mu.x] = A_d(kappa) and Var[mu.x] = A_d'(kappa) (exponential family)
    mean, comp, var = bessel_ratio(d / 2 - 1, kappa)
    se = np.sqrt(var / n)
    assert abs(w.mean() - mean) < 4.5 * se
    # 1 - mu.x keeps its precision near the mode: compare the complement
    assert abs(np.mean(1 - w) - comp) < 4.5 * se
    # the orthogonal part has no preferred direction
    perp = X - np.outer(w, mu)
    assert np.linalg.norm(perp.mean(axis=0)) < 5 * np.sqrt(max(1 - mean**2, 1e-300) / n)
    if kappa > 0:
        mean_dir = X.mean(axis=0) / np.linalg.norm(X.mean(axis=0))
        se_angle = np.sqrt((1 - mean**2 - var) / (n * mean**2))  # delta method
        assert np.arccos(min(mean_dir @ mu, 1.0)) < 5 * np.sqrt(d) * se_angle


@pytest.mark.parametrize(("d", "kappa"), [(3, 5.0), (10, 20.0), (5, 0.5)])
def test_sample_matches_scipy_sampler(d, kappa):
    mu = random_direction(d, seed=3)
    ours = sample(mu, kappa, 4000, random_state=0) @ mu
    theirs = stats.vonmises_fisher(mu, kappa).rvs(4000, random_state=1) @ mu
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3


def test_sample_uniform_marginal_in_3d():
    # kappa = 0 in 3-D: mu.x is uniform on [-1, 1] (Archimedes)
    w = sample([1.0, 0.0, 0.0], 0.0, 5000, random_state=0)[:, 0]
    assert stats.kstest(w, stats.uniform(-1, 2).cdf).pvalue > 1e-3


def test_sample_reproducible():
    mu = random_direction(7)
    a = sample(mu, 3.0, 100, random_state=42)
    b = sample(mu, 3.0, 100, random_state=42)
    np.testing.assert_array_equal(a, b)
    c = sample(mu, 3.0, 100, random_state=np.random.RandomState(42))
    np.testing.assert_array_equal(a, c)
    g1 = sample(mu, 3.0, 100, random_state=np.random.default_rng(5))
    g2 = sample(mu, 3.0, 100, random_state=np.random.default_rng(5))
    np.testing.assert_array_equal(g1, g2)
    assert not np.array_equal(a, sample(mu, 3.0, 100, random_state=43))
    assert sample(mu, 3.0, 0).shape == (0, 7)


# --------------------------------------------------------------------------
# mean resultant length and kappa estimation
# --------------------------------------------------------------------------
@pytest.mark.parametrize("d", DIMS)
def test_mean_resultant_length_matches_mpmath(d):
    kappas = np.logspace(-6, 6, 7)
    got = mean_resultant_length(kappas, d)
    nu = d / 2 - 1
    ref = [
        float(mp.exp(mp_log_iv(nu + 1, float(k)) - mp_log_iv(nu, float(k))))
        for k in kappas
    ]
    np.testing.assert_allclose(got, ref, rtol=1e-13)
    assert mean_resultant_length(0.0, d) == 0.0


def test_mean_resultant_length_closed_forms():
    k = np.logspace(-1, 3, 20)
    np.testing.assert_allclose(
        mean_resultant_length(k, 3), 1 / np.tanh(k) - 1 / k, rtol=1e-13
    )
    from scipy.special import ive

    np.testing.assert_allclose(
        mean_resultant_length(k, 2), ive(1, k) / ive(0, k), rtol=1e-13
    )
    assert mean_resultant_length(np.ones((2, 3)), 5).shape == (2, 3)


@pytest.mark.parametrize("d", DIMS)
def test_estimate_kappa_inverts_mean_resultant_length(d):
    kappas = np.logspace(-4, 6, 41)
    r = mean_resultant_length(kappas, d)
    np.testing.assert_allclose(estimate_kappa(r, d, newton_steps=3), kappas, rtol=1e-8)
    # the default (two steps) is already close; more steps improve monotonically
    np.testing.assert_allclose(estimate_kappa(r, d), kappas, rtol=1e-6)
    err = [
        np.max(np.abs(estimate_kappa(r, d, newton_steps=s) / kappas - 1))
        for s in range(3)
    ]
    assert err[0] > err[1] > err[2]


def test_estimate_kappa_closed_form_and_edges():
    r = np.array([0.0, 0.2, 0.5, 0.9, 0.999])
    d = 7
    np.testing.assert_allclose(
        estimate_kappa(r, d, newton_steps=0), r * (d - r**2) / (1 - r**2), rtol=1e-13
    )
    assert estimate_kappa(0.0, d) == 0.0
    # r very close to 1: kappa ~ (d - 1) / (2 (1 - r))
    assert estimate_kappa(1 - 1e-12, 3) == pytest.approx(1e12, rel=1e-3)
    assert estimate_kappa(r.reshape(5, 1), d).shape == (5, 1)


def test_fit_vmf_recovers_parameters():
    d, kappa = 10, 40.0
    mu = random_direction(d, seed=4)
    X = sample(mu, kappa, 20000, random_state=3)
    mu_hat, kappa_hat = fit_vmf(X)
    assert mu_hat @ mu > 0.999
    assert kappa_hat == pytest.approx(kappa, rel=0.03)
    # the fit is the MLE: the gradient of the log-likelihood vanishes
    rbar = np.linalg.norm(X.mean(axis=0))
    assert mean_resultant_length(kappa_hat, d) == pytest.approx(rbar, rel=1e-8)


def test_fit_vmf_weights_equal_repetition():
    X = sample(random_direction(4), 5.0, 30, random_state=0)
    w = np.arange(30) % 3
    rep = np.repeat(X, w, axis=0)
    mu_w, k_w = fit_vmf(X, sample_weight=w)
    mu_r, k_r = fit_vmf(rep)
    np.testing.assert_allclose(mu_w, mu_r, rtol=1e-12)
    assert k_w == pytest.approx(k_r, rel=1e-12)
    # weights are scale free
    assert fit_vmf(X, sample_weight=2.5 * w)[1] == pytest.approx(k_w, rel=1e-12)


def test_fit_vmf_degenerate_data():
    with pytest.raises(ValueError, match="resultant"):
        fit_vmf(np.array([[1.0, 0.0], [-1.0, 0.0]]))
    with pytest.raises(ValueError, match="infinite"):
        fit_vmf(np.array([[1.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="positive sum"):
        fit_vmf(np.eye(3), sample_weight=np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        fit_vmf(np.eye(3), sample_weight=np.ones(2))


# --------------------------------------------------------------------------
# revised kappa(l)
# --------------------------------------------------------------------------
# d = 3, sigma = 1: (l, rbar, kappa) printed in the SPEC
REFERENCE = [
    (0.5, 0.2595, 0.816),
    (1.0, 0.4839, 1.748),
    (2.0, 0.7699, 4.55),
    (3.0, 0.8894, 9.41),
    (5.0, 0.9600, 25.45),
    (10.0, 0.9900, 100.5),
    (31.6, 0.9990, 999.0),
]


def _decimals(value):
    text = repr(value)
    return len(text.split(".")[1]) if "." in text and not text.endswith(".0") else 0


@pytest.mark.parametrize(("strength", "rbar", "kappa"), REFERENCE)
def test_revised_kappa_reference_table(strength, rbar, kappa):
    r, _ = _rbar_quadrature(np.array([strength]), 3)
    assert round(float(r[0]), 4) == rbar
    got = float(revised_kappa(strength, 3))
    assert round(got, _decimals(kappa)) == kappa


@pytest.mark.parametrize("d", [2, 3, 5, 64, 512, 4096])
def test_rbar_quadrature_matches_hypergeometric_closed_form(d):
    a = np.sqrt(d) * np.logspace(-6, 3.5, 12)
    r, q = _rbar_quadrature(a, d)
    for ai, ri, qi in zip(a, r, q):
        ref = mp_rbar(float(ai), d)
        assert abs(ri - ref) <= 1e-13 * ref
        assert abs(qi - (1 - ref)) <= 1e-12 * (1 - ref)  # also when rbar ~ 1


def test_rbar_quadrature_matches_large_monte_carlo_in_64d():
    d, n = 64, 50000
    rng = np.random.default_rng(0)
    r, _ = _rbar_quadrature(np.array([2.0, 8.0, 30.0]), d)
    for a, ri in zip([2.0, 8.0, 30.0], r):
        f = rng.standard_normal((n, d))
        f[:, 0] += a
        t = f[:, 0] / np.linalg.norm(f, axis=1)
        assert abs(t.mean() - ri) < 4 * t.std() / np.sqrt(n)


def test_revised_kappa_monte_carlo_agrees_with_quadrature():
    strengths = np.array([1.0, 2.0, 3.0, 5.0, 10.0, 31.6, 1e3, 1e6])
    mc = revised_kappa(strengths, 3, method="monte_carlo", random_state=0)
    quad = revised_kappa(strengths, 3)
    np.testing.assert_allclose(mc, quad, rtol=0.05)
    again = revised_kappa(strengths, 3, method="monte_carlo", random_state=0)
    np.testing.assert_array_equal(mc, again)
    s64 = np.array([4.0, 8.0, 16.0, 64.0])
    mc64 = revised_kappa(s64, 64, method="monte_carlo", n_samples=4000, random_state=1)
    np.testing.assert_allclose(mc64, revised_kappa(s64, 64), rtol=0.05)
    # chunking over samples and strengths does not change the estimator
    from skvmf.vmf import _rbar_monte_carlo

    r_small, _ = _rbar_monte_carlo(
        s64, 64, 500, np.random.default_rng(2), max_chunk=1000
    )
    r_big, _ = _rbar_monte_carlo(s64, 64, 500, np.random.default_rng(3))
    np.testing.assert_allclose(r_small, r_big, atol=0.02)


@pytest.mark.parametrize("d", [2, 3, 10, 64, 4096])
@pytest.mark.parametrize("steps", [0, 2])
def test_revised_kappa_interpolation_is_accurate(d, steps):
    rng = np.random.default_rng(d)
    a = np.sqrt(d) * 10 ** rng.uniform(-6, 4, 300)
    r, q = _rbar_quadrature(a, d)
    exact = r * (d - r**2) / (q * (1 + r))
    if steps:
        exact = estimate_kappa(r, d, newton_steps=steps)
        keep = q > 1e-12  # estimate_kappa works from r alone; keep r resolvable
        a, exact = a[keep], exact[keep]
    np.testing.assert_allclose(
        revised_kappa(a, d, newton_steps=steps), exact, rtol=5e-8
    )


@pytest.mark.parametrize("d", [2, 3, 64, 4096])
@pytest.mark.parametrize("steps", [0, 1])
def test_revised_kappa_table_meets_asymptote(d, steps):
    a, kappa, _, _ = _unit_table(d, steps)
    asym = a[-1] ** 2 + _asymptote_offset(d, steps)
    assert kappa[-1] == pytest.approx(asym, rel=1e-11)
    edge = a[-1]
    left, right = (
        revised_kappa(edge * (1 - 1e-12), d, newton_steps=steps),
        revised_kappa(edge * (1 + 1e-12), d, newton_steps=steps),
    )
    assert right == pytest.approx(left, rel=1e-10)
    # the plain l^2 asymptote of the SPEC, to relative order d / l^2
    big = np.array([1e4, 1e6]) * np.sqrt(d)
    rel = revised_kappa(big, d, newton_steps=steps) / big**2 - 1
    assert np.all(np.abs(rel) <= d / big**2)


def test_revised_kappa_shape_monotone_and_limits():
    s = np.concatenate([[0.0], np.logspace(-8, 8, 400)])
    for d in (2, 3, 512):
        k = revised_kappa(s, d)
        assert k[0] == 0.0
        assert np.all(np.isfinite(k))
        assert np.all(np.diff(k) > 0)
        # linear at 0: kappa ~ d rbar'(0) l, rbar'(0) from the closed form
        slope = d * float(mp_rbar(1e-30, d) / mp.mpf(1e-30))
        assert k[1] == pytest.approx(slope * s[1], rel=1e-9)
    out = revised_kappa(np.ones((2, 3, 4)), 5)
    assert out.shape == (2, 3, 4) and out.dtype == np.float64
    assert isinstance(revised_kappa(2.0, 5), float)
    f32 = revised_kappa(np.array([0.5, 2.0], dtype=np.float32), 3)
    assert f32.dtype == np.float64
    np.testing.assert_allclose(f32, revised_kappa([0.5, 2.0], 3), rtol=1e-12)
    assert np.isfinite(revised_kappa(1e6, 4096)) and np.isfinite(
        revised_kappa(1e150, 3)
    )


def test_revised_kappa_sigma_scaling_and_newton():
    s = np.array([0.3, 3.0, 30.0, 300.0])
    np.testing.assert_allclose(
        revised_kappa(s, 10, sigma=2.5), revised_kappa(s / 2.5, 10), rtol=1e-14
    )
    # with Newton steps kappa solves A_d(kappa) = rbar exactly
    d = 10
    r, _ = _rbar_quadrature(s, d)
    k = revised_kappa(s, d, newton_steps=3)
    np.testing.assert_allclose(mean_resultant_length(k, d), r, rtol=1e-9)


def test_revised_kappa_table_is_cached_and_read_only():
    strengths, kappas = _revised_kappa_table(16, 2.0)
    assert _revised_kappa_table(16, 2.0)[0] is strengths
    assert strengths[0] == 0.0 and kappas[0] == 0.0
    assert np.all(np.diff(strengths) > 0) and np.all(np.diff(kappas) > 0)
    assert not strengths.flags.writeable and not kappas.flags.writeable
    np.testing.assert_allclose(
        revised_kappa(strengths, 16, sigma=2.0), kappas, rtol=1e-14
    )


def test_revised_kappa_slopes_reproduce_the_interpolant():
    # a cubic Hermite spline on (log l, log kappa) with the published slopes
    # gives revised_kappa exactly, as torch code elsewhere does
    d, sigma = 5, 0.4
    strengths, kappas = _revised_kappa_table(d, sigma)
    slopes = _revised_kappa_slopes(d, sigma)
    assert slopes.shape == (strengths.size - 1,) and not slopes.flags.writeable
    x, y = np.log(strengths[1:]), np.log(kappas[1:])
    probe = np.sort(np.random.default_rng(0).uniform(x[0], x[-1], 500))
    i = np.clip(np.searchsorted(x, probe), 1, x.size - 1)
    h = x[i] - x[i - 1]
    t = (probe - x[i - 1]) / h
    log_k = (
        (2 * t**3 - 3 * t**2 + 1) * y[i - 1]
        + (t**3 - 2 * t**2 + t) * h * slopes[i - 1]
        + (-2 * t**3 + 3 * t**2) * y[i]
        + (t**3 - t**2) * h * slopes[i]
    )
    np.testing.assert_allclose(
        np.exp(log_k), revised_kappa(np.exp(probe), d, sigma=sigma), rtol=1e-12
    )
    # the slopes are the derivative of log kappa: 1 near 0 and 2 far out
    assert slopes[0] == pytest.approx(1.0, abs=1e-9)
    assert slopes[-1] == pytest.approx(2.0, abs=1e-5)
    fd = np.gradient(y, x)
    np.testing.assert_allclose(slopes[1:-1], fd[1:-1], atol=2e-3)


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [1, 0, -3, 2.5, 3.0, True, "3"])
def test_bad_dim(dim):
    with pytest.raises(ValueError, match="dim"):
        log_normalizer(dim, 1.0)
    with pytest.raises(ValueError, match="dim"):
        revised_kappa(1.0, dim)


@pytest.mark.parametrize("kappa", [-1.0, np.nan, np.inf, [1.0, -0.1]])
def test_bad_kappa(kappa):
    with pytest.raises(ValueError, match="kappa"):
        log_normalizer(3, kappa)
    with pytest.raises(ValueError, match="kappa"):
        mean_resultant_length(kappa, 3)


def test_bad_rows_and_mean_direction():
    mu = np.array([1.0, 0.0, 0.0])
    X = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    with pytest.raises(ValueError, match=r"row 1 has norm 2\.0"):
        logpdf(X, mu, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        logpdf(np.array([[np.nan, 0.0, 0.0]]), mu, 1.0)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        logpdf(X[:1], [1.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="mean_direction"):
        logpdf(X[:1], [2.0, 0.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="2-D"):
        logpdf(mu, mu, 1.0)
    with pytest.raises(ValueError, match=r"shape \(1,\)"):
        logpdf(X[:1], mu, [1.0, 2.0])
    with pytest.raises(ValueError, match="mean_direction"):
        sample(np.ones((2, 2)), 1.0, 5)
    with pytest.raises(ValueError, match="kappa"):
        sample(mu, -1.0, 5)
    with pytest.raises(ValueError, match="n_samples"):
        sample(mu, 1.0, -1)


@pytest.mark.parametrize("r", [1.0, 1.5, -0.1, np.nan, np.inf])
def test_bad_mean_resultant_length(r):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        estimate_kappa(r, 3)


def test_bad_revised_kappa_arguments():
    with pytest.raises(ValueError, match="strength"):
        revised_kappa([-1.0], 3)
    with pytest.raises(ValueError, match="strength"):
        revised_kappa([np.nan], 3)
    with pytest.raises(ValueError, match="strength"):
        revised_kappa(np.inf, 3)
    for sigma in (0.0, -1.0, np.nan, np.inf, "a"):
        with pytest.raises(ValueError, match="sigma"):
            revised_kappa(1.0, 3, sigma=sigma)
    with pytest.raises(ValueError, match="method"):
        revised_kappa(1.0, 3, method="exact")
    with pytest.raises(ValueError, match="newton_steps"):
        revised_kappa(1.0, 3, newton_steps=-1)
    with pytest.raises(ValueError, match="n_samples"):
        revised_kappa(1.0, 3, method="monte_carlo", n_samples=0)


# --------------------------------------------------------------------------
# extreme magnitudes and bad values (issue 10)
# --------------------------------------------------------------------------
def _log_sinh(k):
    """log sinh(k) without overflow: k - log 2 + log1p(-exp(-2k))."""
    with np.errstate(over="ignore"):  # -2k = -inf for k = 1.7e308: exp gives 0
        return k - np.log(2.0) + np.log1p(-np.exp(-2.0 * k))


def test_log_normalizer_huge_kappa_closed_form_3d():
    # C_3(k) = k / (4 pi sinh k); log_normalizer(3, 1e300) used to be NaN
    k = np.array([1e5, 1e8, 1e10, 1e100, 1e155, 1e300, 1.7e308])
    expected = np.log(k) - np.log(4 * np.pi) - _log_sinh(k)
    got = log_normalizer(3, k)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    assert log_normalizer(3, 1e300) == pytest.approx(-1e300, rel=1e-15)


@pytest.mark.parametrize("d", [2, 3, 5, 64, 4096])
@pytest.mark.parametrize("kappa", [1e7, 1e10, 1e100, 1e300])
def test_log_normalizer_huge_kappa_matches_mpmath(d, kappa):
    assert log_normalizer(d, kappa) == pytest.approx(
        float(mp_log_normalizer(d, kappa)), rel=1e-13
    )


@pytest.mark.parametrize("d", [2, 3, 4, 10, 41, 42, 512, 4096])
def test_log_normalizer_finite_and_decreasing_from_1e_300_to_1e300(d):
    # d log C_d / d kappa = -A_d(kappa) < 0: non-increasing in floating point
    kappa = np.concatenate([[0.0], np.logspace(-300, 300, 601), [1.7e308]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        values = log_normalizer(d, kappa)
    assert np.all(np.isfinite(values))
    assert np.all(np.diff(values) <= 0)
    assert values[0] == -log_surface_area(d)
    # tiny kappa: the uniform density; huge kappa: about -kappa
    assert values[1] == -log_surface_area(d)
    assert values[-1] == pytest.approx(-1.7e308, rel=1e-12)


def test_revised_kappa_huge_strength_is_the_asymptote_or_inf():
    assert revised_kappa(1e100, 3) == pytest.approx(1e200, rel=1e-15)
    with np.errstate(over="raise", invalid="raise"):
        assert revised_kappa(1e300, 3) == np.inf  # (l / sigma)^2 overflows
        assert revised_kappa(0.0, 3) == 0.0


@pytest.mark.parametrize(
    "call",
    [
        lambda z: log_normalizer(3, z),
        lambda z: mean_resultant_length(z, 3),
        lambda z: revised_kappa(z, 3),
        lambda z: estimate_kappa(z, 3),
        lambda z: logpdf(np.array([[1.0, 0.0]]) + 0j * z, [1.0, 0.0], 1.0),
        lambda z: logpdf(np.array([[1.0, 0.0]]), np.array([1.0, 0.0]) + 0j, 1.0),
        lambda z: fit_vmf(np.eye(2)[[0, 0, 1]] + 0j * z),
        lambda z: fit_vmf(np.eye(2), sample_weight=np.ones(2) + 0j),
        lambda z: sample(np.array([1.0, 0.0]) + 0j, 1.0, 2),
    ],
)
def test_complex_input_is_refused_not_cast(call):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning: an error instead
        with pytest.raises(ValueError, match="real|complex|kappa|mean_resultant"):
            call(np.array([0.5 + 0.5j]))


def test_read_only_inputs():
    X = sample([0.0, 1.0, 0.0], 5.0, 50, random_state=0)
    w = np.linspace(0.5, 1.0, 50)
    k = np.array([0.5, 2.0])
    for arr in (X, w, k):
        arr.setflags(write=False)
    mu, kappa = fit_vmf(X, sample_weight=w)
    assert np.isfinite(kappa) and np.isfinite(log_normalizer(3, k)).all()
    assert np.isfinite(logpdf(X, mu, kappa)).all()
