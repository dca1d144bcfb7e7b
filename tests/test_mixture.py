"""Tests of skvmf.mixture.RevisedVMFMixture against independent references."""

import re
import subprocess
import sys
import textwrap
import warnings

import joblib
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.special import gammaln, ive, logsumexp
from scipy.stats import ks_2samp, vonmises_fisher
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from skvmf.mixture import RevisedVMFMixture
from skvmf.vmf import estimate_kappa, revised_kappa
from skvmf.vmf import sample as vmf_sample

# ---------------------------------------------------------------- helpers


def unit(a):
    a = np.asarray(a, dtype=float)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def random_means(rng, n_components, dim):
    return unit(rng.standard_normal((n_components, dim)))


def scipy_A(kappa, dim):
    """Mean resultant length A_d(kappa) = I_{d/2} / I_{d/2-1}, from scipy."""
    return ive(dim / 2, kappa) / ive(dim / 2 - 1, kappa)


def vmf_data(rng, means, kappa, n_per, sampler="scipy"):
    """Directions from vMF(mu_k, kappa), n_per rows per component."""
    blocks = []
    for mu in means:
        if sampler == "scipy":
            blocks.append(vonmises_fisher(mu, kappa).rvs(n_per, random_state=rng))
        else:
            blocks.append(vmf_sample(mu, kappa, n_per, random_state=rng))
    labels = np.repeat(np.arange(len(means)), n_per)
    return np.vstack(blocks), labels


def matched_cosines(means_true, means_fit):
    """Cosines between true and fitted means after optimal matching."""
    cos = means_true @ means_fit.T
    rows, cols = linear_sum_assignment(-cos)
    return cos[rows, cols]


def log_sphere_area(dim):
    return np.log(2.0) + dim / 2 * np.log(np.pi) - gammaln(dim / 2)


def scipy_score(X, means, weights, kappa_rows_or_comp, per_row):
    """log p(o|l) and responsibilities from scipy's vMF logpdf + logsumexp."""
    o = unit(X)
    n, k = X.shape[0], means.shape[0]
    logp = np.empty((n, k))
    for j in range(k):
        if per_row:
            for i in range(n):
                logp[i, j] = vonmises_fisher(means[j], kappa_rows_or_comp[i]).logpdf(
                    o[i]
                )
        else:
            logp[:, j] = vonmises_fisher(means[j], kappa_rows_or_comp[j]).logpdf(o)
    logp += np.log(weights)
    total = logsumexp(logp, axis=1)
    return total, np.exp(logp - total[:, None])


@pytest.fixture(scope="module")
def blobs5():
    """Three vMF clusters in d = 5 with strengths in [1, 6] (small, quick)."""
    rng = np.random.default_rng(3)
    means = random_means(rng, 3, 5)
    o, labels = vmf_data(rng, means, 15.0, 60)
    strengths = rng.uniform(1.0, 6.0, size=len(o))
    return o * strengths[:, None], labels, means


# ------------------------------------------------------ scikit-learn checks


class _ClusteringOnly(RevisedVMFMixture):
    """Test-only view of the unsupervised path: ``y`` is ignored.

    scikit-learn's checks pass labels to ``fit``, which switches the mixture
    to its supervised mode (one component per class); this subclass lets the
    same checks exercise clustering with several components.
    """

    def fit(self, X, y=None):
        return super().fit(X)

    def fit_predict(self, X, y=None):
        return super().fit_predict(X)


# With labels, n_components=1 (the default) takes the number of classes, so
# every check passes labels of any count to these.
CHECKED = [
    RevisedVMFMixture(),
    RevisedVMFMixture(kappa="learned", init_params="random"),
    RevisedVMFMixture(kappa=5.0, init_params="random_from_data", n_init=2),
    RevisedVMFMixture(zero_norm="drop", max_iter=5, tol=0.0),
    _ClusteringOnly(n_components=3, zero_norm="drop"),
    _ClusteringOnly(n_components=2, kappa="learned", zero_norm="drop"),
    _ClusteringOnly(n_components=3, kappa=3.0, init_params="random"),
]


def _expected_failed_checks(estimator):
    if estimator.zero_norm == "raise":
        return {
            "check_estimators_dtypes": (
                "the check's integer data has an all-zero row, which "
                "zero_norm='raise' refuses by design (zero_norm='drop' passes)"
            )
        }
    return {}


@parametrize_with_checks(CHECKED, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check, request):
    # CUDA variants are marked and skipped without a GPU by tests/conftest.py
    if "array_api" in getattr(getattr(check, "func", check), "__name__", ""):
        # torch's small products: one thread is faster and reproducible
        request.getfixturevalue("one_torch_thread")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# ------------------------------------------------------------- recovery


def _recover(X, labels, means, **params):
    gm = RevisedVMFMixture(n_components=len(means), random_state=0, **params)
    pred = gm.fit_predict(X)
    return adjusted_rand_score(labels, pred), matched_cosines(means, gm.means_), gm


@pytest.mark.parametrize("mode", ["learned", 50.0, "revised"])
def test_recovery_dim64(mode):
    rng = np.random.default_rng(0)
    means = random_means(rng, 10, 64)
    X, labels = vmf_data(rng, means, 50.0, 2000)
    if mode == "revised":
        # Give every row the strength whose revised kappa is the true 50.
        grid = np.linspace(1.0, 30.0, 3000)
        strength = np.interp(50.0, revised_kappa(grid, 64), grid)
        X = X * strength
    ari, cosines, gm = _recover(X, labels, means, kappa=mode)
    assert ari >= 0.99
    assert cosines.min() >= 0.99
    if mode == "learned":
        np.testing.assert_allclose(gm.kappas_, 50.0, rtol=0.1)
    if mode == "revised":
        np.testing.assert_allclose(gm.kappas_, 50.0, rtol=1e-3)


def test_kappa50_beyond_dim64_is_not_identifiable():
    """Why high-dimensional recovery tests raise kappa with the dimension.

    At kappa = 50 the mean resultant length is A_d(50) ~ 0.55 in d = 64 but
    ~0.1 in d = 512: the own-mean cosine drowns in the spread of the cosines
    to the other means, and even the Bayes classifier with the true means
    misassigns many rows.
    """
    rng = np.random.default_rng(1)
    means = random_means(rng, 10, 512)
    X, labels = vmf_data(rng, means, 50.0, 100)
    assert scipy_A(50.0, 512) < 0.1 < 0.5 < scipy_A(50.0, 64)
    bayes = (X @ means.T).argmax(axis=1)
    assert adjusted_rand_score(labels, bayes) < 0.9


@pytest.mark.slow
@pytest.mark.parametrize(("dim", "n_per"), [(512, 2000), (2048, 500)])
def test_recovery_high_dim(dim, n_per):
    # skvmf's sampler: scipy's takes minutes at these sizes (and its own
    # accuracy is tested in test_vmf.py); scipy draws the d = 512 data of
    # test_kappa50_beyond_dim64_is_not_identifiable.
    # Same separation as kappa = 50 in d = 64: equal mean resultant length.
    kappa = float(estimate_kappa(scipy_A(50.0, 64), dim, newton_steps=5))
    np.testing.assert_allclose(scipy_A(kappa, dim), scipy_A(50.0, 64), rtol=1e-6)
    rng = np.random.default_rng(2)
    means = random_means(rng, 10, dim)
    X, labels = vmf_data(rng, means, kappa, n_per, sampler="skvmf")
    for mode in ("learned", kappa):
        ari, cosines, gm = _recover(X, labels, means, kappa=mode)
        assert ari >= 0.99, mode
        assert cosines.min() >= 0.99, mode
    np.testing.assert_allclose(gm.kappas_, kappa)
    # revised: rows scaled to the strength whose kappa(l) is the true kappa
    grid = np.geomspace(1.0, 1e3, 4000)
    strength = np.interp(kappa, revised_kappa(grid, dim), grid)
    ari, cosines, _ = _recover(X * strength, labels, means, kappa="revised")
    assert ari >= 0.99
    assert cosines.min() >= 0.99


@pytest.mark.parametrize(("dim", "n_per"), [(64, 1000), (512, 400)])
def test_recovery_revised_noise_model(dim, n_per):
    """Signal-plus-noise features (the revised model's premise).

    x = l mu_y + eps with eps ~ N(0, I) and strengths spread over a range, so
    weak rows are near-uniform in direction and strong ones sharp.
    """
    rng = np.random.default_rng(4)
    means = random_means(rng, 10, dim)
    labels = np.repeat(np.arange(10), n_per)
    lo, hi = (4.0, 16.0) if dim == 64 else (10.0, 40.0)
    strengths = rng.uniform(lo, hi, size=labels.size)
    X = strengths[:, None] * means[labels] + rng.standard_normal((labels.size, dim))
    ari, cosines, gm = _recover(X, labels, means, kappa="revised")
    assert ari >= 0.99
    assert cosines.min() >= 0.99
    # weighting by kappa(l) beats the plain fixed-kappa mixture on the means
    ari_fixed, cos_fixed, _ = _recover(X, labels, means, kappa=float(gm.kappas_[0]))
    assert cosines.mean() >= cos_fixed.mean()


def test_supervised_recovery_and_labels():
    rng = np.random.default_rng(5)
    means = random_means(rng, 4, 16)
    o, idx = vmf_data(rng, means, 40.0, 300)
    names = np.array(["dog", "cat", "zebra", "ant"])
    y = names[idx]
    gm = RevisedVMFMixture(kappa="learned").fit(o, y)
    assert gm.classes_.tolist() == ["ant", "cat", "dog", "zebra"]
    assert gm.predict(o).dtype == y.dtype
    assert np.mean(gm.predict(o) == y) > 0.99
    order = [list(names).index(c) for c in gm.classes_]
    assert matched_cosines(means[order], gm.means_).min() > 0.99
    assert np.all(np.diag(means[order] @ gm.means_.T) > 0.99)  # columns by class
    proba = gm.predict_proba(o)
    assert proba.shape == (o.shape[0], 4)
    np.testing.assert_array_equal(gm.classes_[proba.argmax(axis=1)], gm.predict(o))
    S, labels = gm.sample(20)
    assert set(labels) <= set(names)


# ------------------------------------------ E-step against independent code


@pytest.mark.parametrize("mode", ["revised", "learned", 7.0])
def test_score_and_posterior_match_scipy(blobs5, mode):
    X, _, _ = blobs5
    gm = RevisedVMFMixture(3, kappa=mode, random_state=0).fit(X)
    if mode == "revised":
        kappas, per_row = revised_kappa(np.linalg.norm(X, axis=1), X.shape[1]), True
    elif mode == "learned":
        kappas, per_row = gm.kappas_, False
    else:
        kappas, per_row = np.full(3, mode), False
    ref_score, ref_resp = scipy_score(X, gm.means_, gm.weights_, kappas, per_row)
    np.testing.assert_allclose(gm.score_samples(X), ref_score, rtol=1e-10)
    np.testing.assert_allclose(gm.predict_proba(X), ref_resp, rtol=1e-8, atol=1e-14)
    assert gm.score(X) == pytest.approx(ref_score.mean(), rel=1e-10)
    np.testing.assert_allclose(np.linalg.norm(gm.means_, axis=1), 1.0)
    assert gm.weights_.sum() == pytest.approx(1.0)


def test_revised_m_step_is_kappa_weighted(blobs5):
    """At the EM fixed point mu_y = normalise(sum_i kappa(l_i) r_iy o_i)."""
    X, _, _ = blobs5
    gm = RevisedVMFMixture(3, tol=1e-12, max_iter=500, random_state=0).fit(X)
    resp = gm.predict_proba(X)
    kappa = revised_kappa(np.linalg.norm(X, axis=1), X.shape[1])
    weighted = unit((resp * kappa[:, None]).T @ unit(X))
    plain = unit(resp.T @ unit(X))
    np.testing.assert_allclose(gm.means_, weighted, atol=1e-6)
    assert np.abs(gm.means_ - plain).max() > 1e-3  # the weighting matters here
    np.testing.assert_allclose(gm.weights_, resp.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(
        gm.kappas_, (resp * kappa[:, None]).sum(0) / resp.sum(0), rtol=1e-5
    )


def test_learned_kappa_is_mle_fixed_point(blobs5):
    X, _, _ = blobs5
    gm = RevisedVMFMixture(3, kappa="learned", tol=1e-12, max_iter=500)
    gm.set_params(random_state=0).fit(X)
    resp = gm.predict_proba(X)
    resultant = resp.T @ unit(X)
    rbar = np.linalg.norm(resultant, axis=1) / resp.sum(0)
    # the MLE solves A_d(kappa) = rbar (scipy's Bessel ratio as reference)
    np.testing.assert_allclose(scipy_A(gm.kappas_, X.shape[1]), rbar, rtol=1e-6)
    np.testing.assert_allclose(gm.means_, unit(resultant), atol=1e-6)


def test_constant_strength_revised_equals_fixed_kappa(blobs5):
    X, _, _ = blobs5
    o = unit(X)
    strength = 3.0
    kappa = float(revised_kappa(np.array([strength]), 5)[0])
    a = RevisedVMFMixture(3, random_state=0, tol=1e-10).fit(o * strength)
    b = RevisedVMFMixture(3, kappa=kappa, random_state=0, tol=1e-10).fit(o)
    np.testing.assert_allclose(a.means_, b.means_, atol=1e-10)
    np.testing.assert_allclose(a.weights_, b.weights_, atol=1e-10)
    np.testing.assert_allclose(a.score_samples(o * strength), b.score_samples(o))


# ------------------------------------------------------------ EM contract


@pytest.mark.parametrize("mode", ["revised", "learned", 12.0])
@pytest.mark.parametrize("max_iter", [1, 3, 100])
def test_fit_predict_equals_fit_then_predict(blobs5, mode, max_iter):
    X, _, _ = blobs5
    params = {"n_components": 3, "kappa": mode, "max_iter": max_iter, "random_state": 7}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = RevisedVMFMixture(**params).fit_predict(X)
        b = RevisedVMFMixture(**params).fit(X).predict(X)
    np.testing.assert_array_equal(a, b)


def test_n_init_keeps_best_lower_bound(capsys):
    rng = np.random.default_rng(0)
    means = random_means(rng, 8, 6)
    X = np.vstack([vonmises_fisher(m, 10.0).rvs(40, random_state=rng) for m in means])
    params = {"kappa": "learned", "init_params": "random_from_data", "random_state": 0}
    one = RevisedVMFMixture(8, **params).fit(X)
    capsys.readouterr()
    many = RevisedVMFMixture(8, n_init=6, verbose=2, verbose_interval=1, **params)
    many.fit(X)
    err = capsys.readouterr().err
    bounds = [float(v) for v in re.findall(r"lower bound (-?\d+\.\d+)", err)]
    assert len(bounds) == 6
    assert max(bounds) > bounds[0] + 1e-3  # a later restart is better
    assert many.lower_bound_ == pytest.approx(max(bounds), abs=1e-5)
    assert bounds[0] == pytest.approx(one.lower_bound_, abs=1e-5)  # one RNG stream
    assert many.lower_bound_ > one.lower_bound_
    assert many.lower_bounds_[-1] == many.lower_bound_
    assert len(many.lower_bounds_) == many.n_iter_
    assert "Iteration 1\t time lapse" in err


def test_lower_bound_increases(blobs5):
    X, _, _ = blobs5
    for mode in ("revised", "learned", 9.0):
        gm = RevisedVMFMixture(3, kappa=mode, tol=1e-9, random_state=1).fit(X)
        assert np.all(np.diff(gm.lower_bounds_) >= -1e-9)
        assert gm.converged_


@pytest.mark.parametrize("mode", ["revised", "learned"])
def test_warm_start_continues(blobs5, mode):
    X, _, _ = blobs5
    cold = RevisedVMFMixture(3, kappa=mode, max_iter=4, tol=0.0, random_state=3)
    with pytest.warns(ConvergenceWarning):
        cold.fit(X)
    warm = RevisedVMFMixture(
        3, kappa=mode, max_iter=1, tol=0.0, warm_start=True, random_state=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(4):
            warm.fit(X)
    np.testing.assert_allclose(warm.means_, cold.means_, atol=1e-12)
    np.testing.assert_allclose(warm.weights_, cold.weights_, atol=1e-12)
    np.testing.assert_allclose(warm.kappas_, cold.kappas_, rtol=1e-10)
    assert warm.lower_bound_ == pytest.approx(cold.lower_bounds_[-1], abs=1e-10)
    with pytest.raises(ValueError, match="components"):
        warm.set_params(n_components=2).fit(X)


def test_convergence_warning_and_max_iter_zero(blobs5):
    X, _, _ = blobs5
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        gm = RevisedVMFMixture(3, max_iter=1, random_state=0).fit(X)
    assert not gm.converged_ and gm.n_iter_ == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        gm0 = RevisedVMFMixture(3, max_iter=0, random_state=0).fit(X)
    assert gm0.n_iter_ == 0 and np.isfinite(gm0.lower_bound_)


def test_supervised_initialisation_is_class_model(blobs5):
    X, labels, _ = blobs5
    y = np.array(["p", "q", "r"])[labels]
    gm = RevisedVMFMixture(max_iter=0).fit(X, y)
    kappa = revised_kappa(np.linalg.norm(X, axis=1), X.shape[1])
    for j, c in enumerate(gm.classes_):
        rows = y == c
        expected = unit((kappa[rows, None] * unit(X[rows])).sum(0))
        np.testing.assert_allclose(gm.means_[j], expected, atol=1e-12)
        assert gm.weights_[j] == pytest.approx(rows.mean())
    assert RevisedVMFMixture(n_components=3).fit(X, y).means_.shape == (3, 5)
    with pytest.raises(ValueError, match="3 classes but n_components=2"):
        RevisedVMFMixture(n_components=2).fit(X, y)
    with pytest.raises(ValueError, match="continuous"):
        RevisedVMFMixture().fit(X, np.linspace(0, 1, len(X)))


# ------------------------------------------------------ degenerate inputs


def test_empty_component_is_reseeded():
    rng = np.random.default_rng(8)
    a, b = unit(rng.standard_normal((2, 4)))
    X = np.vstack(
        [
            a + 1e-3 * rng.standard_normal((30, 4)),
            b + 1e-3 * rng.standard_normal((30, 4)),
        ]
    )
    gm = RevisedVMFMixture(3, kappa=1e6, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
        # push component 2 to a direction no row is near: at kappa 1e6 its
        # responsibilities underflow to exactly 0, so it must be re-seeded.
        gm.means_ = gm.means_.copy()
        gm.means_[2] = unit(-(a + b))
        gm.set_params(warm_start=True, max_iter=1).fit(X)
    o = unit(X)
    assert np.all(np.isfinite(gm.means_)) and np.all(np.isfinite(gm.weights_))
    assert np.isclose((o @ gm.means_[2]).max(), 1.0)  # sits on a data row
    assert np.all(gm.weights_ > 0)
    assert np.all(np.isfinite(gm.predict_proba(X)))


@pytest.mark.parametrize("mode", ["revised", "learned", 1e6])
def test_duplicates_and_extreme_kappa_never_nan(mode):
    X = np.tile([[3.0, 4.0, 0.0]], (20, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = RevisedVMFMixture(3, kappa=mode, random_state=0).fit(X)
    for value in (gm.means_, gm.weights_, gm.kappas_, gm.predict_proba(X)):
        assert np.all(np.isfinite(value))
    assert np.all(np.isfinite(gm.score_samples(X)))
    np.testing.assert_allclose(gm.means_ @ [0.6, 0.8, 0.0], 1.0)
    far = np.array([[-3.0, -4.0, 0.0], [0.0, 0.0, 1e-3]])
    assert np.all(np.isfinite(gm.score_samples(far)))
    assert np.all(np.isfinite(gm.predict_proba(far)))


def test_tiny_and_huge_rows_keep_their_direction():
    rng = np.random.default_rng(9)
    o = unit(rng.standard_normal((40, 3)))
    o[:20, 0] = np.abs(o[:20, 0]) + 1
    o[20:, 0] = -np.abs(o[20:, 0]) - 1
    o = unit(o)
    scales = np.tile([1e-200, 1e-5, 1.0, 1e200], 10)[:, None]
    gm = RevisedVMFMixture(2, kappa=20.0, random_state=0).fit(o * scales)
    ref = RevisedVMFMixture(2, kappa=20.0, random_state=0).fit(o)
    np.testing.assert_allclose(gm.means_, ref.means_, atol=1e-12)
    revised = RevisedVMFMixture(2, random_state=0).fit(o * scales)
    assert np.all(np.isfinite(revised.score_samples(o * scales)))
    assert np.all(np.isfinite(revised.means_))


# ----------------------------------------------------------- bad inputs


def test_bad_input_messages(blobs5):
    X, _, _ = blobs5
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RevisedVMFMixture(2).fit(bad)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        RevisedVMFMixture(2).fit(bad)
    with pytest.raises(ValueError, match=r"n_samples=2 .* n_components=3"):
        RevisedVMFMixture(3).fit(X[:2])
    with pytest.raises(ValueError, match="n_features = 1.*only a sign"):
        RevisedVMFMixture(1).fit(X[:, :1])
    gm = RevisedVMFMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 4 features.*expecting 5 features"):
        gm.predict(X[:, :4])
    with pytest.raises(ValueError, match="kappa"):
        RevisedVMFMixture(kappa=-1.0).fit(X)
    with pytest.raises(ValueError, match="kappa"):
        RevisedVMFMixture(kappa="fixed").fit(X)
    with pytest.raises(ValueError, match="n_samples"):
        gm.sample(0)


def test_zero_norm_rows(blobs5):
    X, _, _ = blobs5
    Z = X.copy()
    Z[[4, 17, 30]] = 0.0
    with pytest.raises(ValueError, match=r"3 row\(s\) with zero norm .*\[4, 17, 30\]"):
        RevisedVMFMixture(2).fit(Z)
    gm = RevisedVMFMixture(2, zero_norm="raise", random_state=0).fit(X)
    with pytest.raises(ValueError, match="zero norm"):
        gm.predict(Z)
    keep = np.ones(len(X), bool)
    keep[[4, 17, 30]] = False
    for mode in ("revised", "learned", 8.0):
        dropped = RevisedVMFMixture(2, kappa=mode, zero_norm="drop", random_state=0)
        labels = dropped.fit_predict(Z)
        ref = RevisedVMFMixture(2, kappa=mode, random_state=0).fit(X[keep])
        np.testing.assert_allclose(dropped.means_, ref.means_, atol=1e-12)
        np.testing.assert_allclose(dropped.weights_, ref.weights_, atol=1e-12)
        proba = dropped.predict_proba(Z)
        np.testing.assert_allclose(proba[~keep], np.tile(dropped.weights_, (3, 1)))
        assert np.all(labels[~keep] == dropped.weights_.argmax())
        np.testing.assert_array_equal(labels, dropped.predict(Z))
        # the uniform density on the sphere: 1 / area(S^{d-1})
        np.testing.assert_allclose(
            dropped.score_samples(Z)[~keep], -log_sphere_area(5), rtol=1e-12
        )
    with pytest.raises(ValueError, match="all 3 rows"):
        RevisedVMFMixture(zero_norm="drop").fit(np.zeros((3, 4)))


# ---------------------------------------------------- sample / criteria


@pytest.mark.parametrize("mode", ["learned", 25.0])
def test_sample_matches_mean_resultant_length(blobs5, mode):
    X, _, _ = blobs5
    gm = RevisedVMFMixture(3, kappa=mode, random_state=0).fit(X)
    S, labels = gm.sample(30000)
    assert S.shape == (30000, 5)
    np.testing.assert_allclose(np.linalg.norm(S, axis=1), 1.0)
    counts = np.bincount(labels, minlength=3)
    # multinomial counts: within 5 standard deviations of n * pi
    sd = np.sqrt(30000 * gm.weights_ * (1 - gm.weights_))
    assert np.all(np.abs(counts - 30000 * gm.weights_) < 5 * sd)
    for k in range(3):
        cos = S[labels == k] @ gm.means_[k]
        expected = scipy_A(gm.kappas_[k], 5)
        assert abs(cos.mean() - expected) < 5 * cos.std() / np.sqrt(cos.size) + 1e-12
        assert np.linalg.norm(S[labels == k].mean(0)) == pytest.approx(
            expected, abs=0.02
        )


def test_sample_revised_keeps_training_strengths(blobs5):
    X, _, _ = blobs5
    gm = RevisedVMFMixture(3, random_state=0).fit(X)
    S, labels = gm.sample(6000)
    strengths = np.linalg.norm(S, axis=1)
    train = np.linalg.norm(X, axis=1)
    assert strengths.min() >= train.min() - 1e-12
    assert strengths.max() <= train.max() + 1e-12
    assert ks_2samp(strengths, train).pvalue > 1e-3
    kappa = revised_kappa(strengths, 5)
    for k in range(3):
        rows = labels == k
        cos = S[rows] @ gm.means_[k] / strengths[rows]
        expected = scipy_A(kappa[rows], 5).mean()
        assert abs(cos.mean() - expected) < 5 * cos.std() / np.sqrt(rows.sum())


def test_bic_aic_parameter_count(blobs5):
    X, _, _ = blobs5
    n, d = X.shape
    for mode, extra in (("revised", 0), ("learned", 3), (6.0, 0)):
        gm = RevisedVMFMixture(3, kappa=mode, random_state=0).fit(X)
        p = 2 + 3 * (d - 1) + extra
        loglik = gm.score_samples(X).sum()
        assert gm.bic(X) == pytest.approx(-2 * loglik + p * np.log(n), rel=1e-12)
        assert gm.aic(X) == pytest.approx(-2 * loglik + 2 * p, rel=1e-12)
    # BIC prefers the true number of clusters
    bics = [RevisedVMFMixture(k, random_state=0).fit(X).bic(X) for k in (1, 2, 3, 6)]
    assert int(np.argmin(bics)) == 2


# -------------------------------------------------------------- joblib


def test_joblib_roundtrip_new_process(blobs5, tmp_path):
    X, labels, _ = blobs5
    gm = RevisedVMFMixture(3, random_state=0).fit(X, labels)
    path = tmp_path / "gm.joblib"
    joblib.dump(gm, path)
    np.save(tmp_path / "X.npy", X)
    code = textwrap.dedent(
        f"""
        import joblib, numpy as np
        gm = joblib.load({str(path)!r})
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "proba.npy")!r}, gm.predict_proba(X))
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    other = np.load(tmp_path / "proba.npy")
    assert np.array_equal(other, gm.predict_proba(X))


# --------------------------------------------------------------------------
# extreme magnitudes and bad values (issue 10)
# --------------------------------------------------------------------------
def _two_directions(seed=0):
    rng = np.random.default_rng(seed)
    return np.repeat(6.0 * np.eye(3)[:2], 20, axis=0) + rng.normal(size=(40, 3))


@pytest.mark.parametrize("kappa", ["learned", 10.0])
@pytest.mark.parametrize("factor", [1e300, 1e-300])
def test_direction_modes_are_invariant_to_row_scale(kappa, factor):
    X = _two_directions()
    ref = RevisedVMFMixture(2, kappa=kappa, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow on the way
        got = RevisedVMFMixture(2, kappa=kappa, random_state=0).fit(X * factor)
        proba = got.predict_proba(X * factor)
    np.testing.assert_allclose(got.means_, ref.means_, atol=1e-12)
    np.testing.assert_allclose(got.kappas_, ref.kappas_, rtol=1e-9)
    np.testing.assert_allclose(proba, ref.predict_proba(X), atol=1e-12)
    np.testing.assert_allclose(got.score_samples(X * factor), ref.score_samples(X))


@pytest.mark.parametrize("factor", [1e300, 1e-300])
def test_revised_mode_with_extreme_strengths_is_finite(factor):
    X = _two_directions()
    gm = RevisedVMFMixture(2, random_state=0).fit(X * factor)
    proba = gm.predict_proba(X * factor)
    assert np.all(np.isfinite(proba)) and np.all(np.isfinite(gm.means_))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.all(np.isfinite(gm.score_samples(X * factor)))


def test_complex_input_is_refused_by_name():
    X = _two_directions()
    with pytest.raises(ValueError, match="X must be real"):
        RevisedVMFMixture(2).fit(X + 1j)
    gm = RevisedVMFMixture(2, random_state=0).fit(X)
    for method in (gm.predict, gm.predict_proba, gm.score_samples):
        with pytest.raises(ValueError, match="X must be real"):
            method(X + 0j)
    with pytest.raises(ValueError, match="n_samples"):
        gm.sample(0)


def test_read_only_input_is_not_written():
    X = _two_directions()
    X[3] = 0.0
    X.setflags(write=False)
    before = X.copy()
    gm = RevisedVMFMixture(2, zero_norm="drop", random_state=0).fit(X)
    gm.predict_proba(X)
    np.testing.assert_array_equal(X, before)


def test_convergence_warning_points_at_the_callers_line():
    """Raised inside fit (under scikit-learn's fit wrapper), attributed to
    the line that called fit."""
    from sklearn.exceptions import ConvergenceWarning

    from skvmf import vmf

    X = np.vstack(
        [
            vmf.sample(np.eye(3)[0], 5.0, 40, random_state=0),
            vmf.sample(np.eye(3)[1], 5.0, 40, random_state=1),
        ]
    )
    with pytest.warns(ConvergenceWarning) as rec:
        RevisedVMFMixture(2, max_iter=1, tol=1e-12, random_state=0).fit(X)
    files = {w.filename for w in rec if issubclass(w.category, ConvergenceWarning)}
    assert files == {__file__}
