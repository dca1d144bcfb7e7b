"""Property-based tests (hypothesis) of the numeric core and its input checks.

Numbers from 1e-300 to 1e300, every dimension the vMF code supports, random
shapes and dtypes, NaN/inf and read-only arrays: each public function either
returns a correct finite answer or raises a ``ValueError`` -- never NaN, and
never another exception type. Sizes are tiny and example counts small so the
whole file runs in a few seconds.
"""

import contextlib
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from skvmf._numerics.soft_labels import check_soft_labels
from skvmf.embedding import embed_features
from skvmf.features import FeatureSet
from skvmf.hierarchy import CategoryHierarchy, cosine_distance_matrix
from skvmf.knowledge import KnowledgePointCounter
from skvmf.mixture import RevisedVMFMixture
from skvmf.prediction_tree import FilterPredictionTree
from skvmf.vmf import log_normalizer, logpdf, mean_resultant_length, revised_kappa

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
DIMS = st.sampled_from([2, 3, 4, 5, 10, 41, 42, 64, 512, 4096])
EXPONENTS = st.floats(-300.0, 300.0)
SEEDS = st.integers(0, 2**32 - 1)


@contextlib.contextmanager
def _quiet():
    """Numeric warnings are fine inside the checks (they must not escape as
    NaN); turn them off so that hypothesis sees only results and errors."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------
# vmf
# --------------------------------------------------------------------------
@SETTINGS
@given(dim=DIMS, e1=EXPONENTS, e2=EXPONENTS)
def test_log_normalizer_is_finite_and_decreasing(dim, e1, e2):
    lo, hi = sorted((10.0**e1, 10.0**e2))
    a, b = log_normalizer(dim, lo), log_normalizer(dim, hi)
    assert np.isfinite(a) and np.isfinite(b)
    assert a >= b  # d log C / d kappa = -A_d(kappa) < 0
    # never above the uniform density, and about -kappa when kappa >> d^2
    assert a <= log_normalizer(dim, 0.0)
    if hi > 1e12 * dim * dim:
        assert b == pytest.approx(-hi, rel=1e-6)


@SETTINGS
@given(dim=DIMS, e=EXPONENTS, seed=SEEDS)
def test_logpdf_and_mean_resultant_length_are_finite(dim, e, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3, dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    mu = X[0]
    kappa = 10.0**e
    lp = logpdf(X, mu, kappa)
    assert np.all(np.isfinite(lp))
    assert lp[0] >= lp[1:].max() - 1e-9 * max(1.0, abs(lp[0]))  # the mode is mu
    r = mean_resultant_length(kappa, dim)
    assert 0.0 <= r < 1.0 or (r == 1.0 and kappa > 1e15)


@SETTINGS
@given(dim=DIMS, e=st.floats(-300.0, 150.0), sigma_e=st.floats(-3.0, 3.0))
def test_revised_kappa_depends_on_strength_over_sigma(dim, e, sigma_e):
    strength, sigma = 10.0**e, 10.0**sigma_e
    k = revised_kappa(strength, dim, sigma=sigma)
    assert np.isfinite(k) and k >= 0
    assert k == pytest.approx(revised_kappa(strength / sigma, dim), rel=1e-9)


# --------------------------------------------------------------------------
# mixture
# --------------------------------------------------------------------------
@SETTINGS
@given(
    seed=SEEDS,
    kappa=st.sampled_from(["learned", 5.0, "revised"]),
    d=st.integers(2, 4),
    row_exponents=st.lists(st.floats(-250.0, 250.0), min_size=12, max_size=12),
)
def test_mixture_responsibilities_and_row_scale_invariance(
    seed, kappa, d, row_exponents
):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], 6)
    X = rng.normal(size=(12, d)) + 3.0 * np.eye(d)[y]
    gm = RevisedVMFMixture(kappa=kappa, max_iter=3, tol=0.0)
    with _quiet():
        gm.fit(X, y)
    proba = gm.predict_proba(X)
    assert np.all(np.isfinite(proba)) and np.all(np.isfinite(gm.means_))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(gm.means_, axis=1), 1.0, atol=1e-12)
    if kappa != "revised":  # directions only: each row's scale is irrelevant
        scaled = X * (10.0 ** np.array(row_exponents))[:, None]
        other = RevisedVMFMixture(kappa=kappa, max_iter=3, tol=0.0)
        with _quiet():
            other.fit(scaled, y)
        np.testing.assert_allclose(other.predict_proba(scaled), proba, atol=1e-8)


# --------------------------------------------------------------------------
# knowledge points
# --------------------------------------------------------------------------
@SETTINGS
@given(
    seed=SEEDS,
    dir_exponents=st.lists(st.floats(-300.0, 300.0), min_size=3, max_size=3),
    tau=st.floats(0.05, 0.95),
)
def test_counter_direction_scale_invariance_and_counts(seed, dir_exponents, tau):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(3, 4))
    h = rng.normal(size=(5, 6, 4)) * 3.0
    y = rng.integers(0, 3, size=5)
    ref = KnowledgePointCounter(tau=tau).fit(h, directions=mu)
    scaled = mu * (10.0 ** np.array(dir_exponents))[:, None]
    got = KnowledgePointCounter(tau=tau).fit(h, directions=scaled)
    post = got.region_posteriors(h)
    assert np.all(np.isfinite(post))
    np.testing.assert_allclose(post, ref.region_posteriors(h), rtol=1e-9, atol=1e-12)
    (rec,) = got.count(h, y)
    assert isinstance(rec["total_points"], int)
    assert 0 <= rec["total_reliable"] <= rec["total_points"] <= 5 * 6
    assert 0.0 <= rec["reliable_ratio"] <= 1.0


# --------------------------------------------------------------------------
# hierarchy and prediction tree
# --------------------------------------------------------------------------
@SETTINGS
@given(
    seed=SEEDS,
    n_classes=st.integers(2, 7),
    e=EXPONENTS,
    method=st.sampled_from(["weighted", "average", "single", "complete"]),
)
def test_hierarchy_scale_invariance_and_merge_tree(seed, n_classes, e, method):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), 3)
    X = rng.normal(size=(y.size, 5))
    ref = CategoryHierarchy(linkage=method).fit(X, y)
    got = CategoryHierarchy(linkage=method).fit(X * 10.0**e, y)
    np.testing.assert_allclose(got.distances_, ref.distances_, atol=1e-12)
    Z = got.linkage_
    assert Z.shape == (n_classes - 1, 4) and Z[-1, 3] == n_classes
    # these four linkages have no inversions: merge heights never decrease,
    # so the cophenetic distances form an ultrametric
    assert np.all(np.diff(Z[:, 2]) >= -1e-12)
    assert np.all((Z[:, 2] >= 0.0) & (Z[:, 2] <= 1.0))
    assert len(got.mst_edges_) == n_classes - 1


@SETTINGS
@given(seed=SEEDS, n=st.integers(2, 6), e=EXPONENTS, full=st.booleans())
def test_prediction_tree_scale_invariance(seed, n, e, full):
    rng = np.random.default_rng(seed)
    maps = np.abs(rng.normal(size=(n, 6, 2)))  # n <= d: n - 1 merges
    similarity = "full" if full else "filters"
    ref = FilterPredictionTree(similarity=similarity).fit(maps)
    got = FilterPredictionTree(similarity=similarity).fit(maps * 10.0**e)
    assert got.n_merges_ == ref.n_merges_ == n - 1
    assert [k.children for k in got.nodes_] == [k.children for k in ref.nodes_]
    assert all(np.isfinite(k.distance) for k in got.nodes_)


# --------------------------------------------------------------------------
# FeatureSet
# --------------------------------------------------------------------------
@SETTINGS
@given(seed=SEEDS, n=st.integers(1, 6), c=st.integers(2, 4), e=EXPONENTS)
def test_featureset_round_trips(seed, n, c, e):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 10.0**e
    sample = rng.normal(size=(n, 3))
    regions = {"a": rng.normal(size=(n, 4, 2))}
    for arr in (logits, sample, regions["a"]):
        arr.setflags(write=False)
    fs = FeatureSet(sample=sample, logits=logits, regions=regions, grid=(2, 2))
    assert np.all(np.isfinite(fs.soft_labels))
    np.testing.assert_allclose(fs.soft_labels.sum(axis=1), 1.0)
    idx = rng.permutation(n)[: max(1, n // 2)]
    sub = fs[idx]
    np.testing.assert_array_equal(sub.sample, sample[idx])
    np.testing.assert_array_equal(sub.soft_labels, fs.soft_labels[idx])
    np.testing.assert_array_equal(sub.regions["a"], regions["a"][idx])
    assert len(sub) == idx.size and sub.grid == (2, 2)


# --------------------------------------------------------------------------
# input checking: a finite answer or a ValueError, nothing else
# --------------------------------------------------------------------------
DTYPES = st.sampled_from(
    [
        np.bool_,
        np.int32,
        np.int64,
        np.float16,
        np.float32,
        np.float64,
        np.complex64,
        np.complex128,
        object,
    ]
)


@st.composite
def arrays(draw, ndim):
    """Small arrays of a random dtype and magnitude, maybe NaN/inf, maybe
    read-only."""
    shape = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    dtype = draw(DTYPES)
    seed = draw(SEEDS)
    rng = np.random.default_rng(seed)
    values = rng.normal(size=shape) * 10.0 ** draw(EXPONENTS)
    special = draw(st.sampled_from([None, np.nan, np.inf, -np.inf]))
    if special is not None:
        values.flat[draw(st.integers(0, values.size - 1))] = special
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dtype in (np.bool_, np.int32, np.int64):
            arr = rng.integers(-3, 4, size=shape).astype(dtype)
        elif dtype in (np.complex64, np.complex128):
            arr = (values + 1j * values).astype(dtype)
        else:
            arr = values.astype(dtype)
    if draw(st.booleans()):
        arr.setflags(write=False)
    return arr


def _finite_or_value_error(call):
    """Run ``call``; a ValueError is fine, NaN in a result or any other
    exception type is a failure."""
    with _quiet():
        try:
            out = call()
        except ValueError:
            return
    for value in out if isinstance(out, tuple) else (out,):
        arr = np.asarray(value, dtype=np.float64)
        assert not np.any(np.isnan(arr)), f"NaN in the result of {call}"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(X=arrays(2), k=arrays(1))
def test_two_d_inputs_give_a_finite_answer_or_a_value_error(X, k):
    n = X.shape[0]
    y = np.arange(n) % 2
    _finite_or_value_error(lambda: log_normalizer(3, k))
    _finite_or_value_error(lambda: mean_resultant_length(k, 4))
    _finite_or_value_error(lambda: revised_kappa(k, 3))
    _finite_or_value_error(lambda: cosine_distance_matrix(X))
    _finite_or_value_error(lambda: CategoryHierarchy().fit(X, y).distances_)
    _finite_or_value_error(lambda: FilterPredictionTree().fit(X).nodes_[-1].distance)
    _finite_or_value_error(lambda: embed_features(X, method="pca", n_components=1))
    _finite_or_value_error(
        lambda: RevisedVMFMixture(kappa=5.0, max_iter=2).fit(X).predict_proba(X)
    )
    _finite_or_value_error(lambda: FeatureSet(sample=X, logits=X).soft_labels)
    _finite_or_value_error(lambda: check_soft_labels(X, from_logits=True))
    _finite_or_value_error(lambda: check_soft_labels(X))


@SETTINGS
@given(H=arrays(3), mu=arrays(2))
def test_counter_inputs_give_a_finite_answer_or_a_value_error(H, mu):
    assume(H.ndim == 3)

    def run():
        kpc = KnowledgePointCounter().fit(H, directions=mu)
        return kpc.region_posteriors(H)

    _finite_or_value_error(run)
