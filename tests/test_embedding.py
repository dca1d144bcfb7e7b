"""t-SNE / UMAP / PCA views of features and their trustworthiness."""

import importlib.util
import sys
import types

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from skvmf.embedding import FeatureEmbedding, embed_features, trustworthiness_report

UMAP_INSTALLED = importlib.util.find_spec("umap") is not None


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread():
    # scikit-learn's Barnes-Hut t-SNE runs OpenMP threads (and PCA BLAS ones);
    # on a small shared machine their spin-waiting makes it ~10x slower than
    # a single thread.
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300], y[:300]


def _trustworthiness_by_hand(X, Z, k):
    """Venna & Kaski's formula with explicit ranks (1 = nearest)."""
    n = len(X)
    DX, DZ = cdist(X, X), cdist(Z, Z)
    np.fill_diagonal(DX, np.inf)
    np.fill_diagonal(DZ, np.inf)
    rank_x = np.empty((n, n), dtype=int)
    for i in range(n):
        rank_x[i, np.argsort(DX[i], kind="stable")] = np.arange(1, n + 1)
    penalty = 0
    for i in range(n):
        near_x = set(np.argsort(DX[i], kind="stable")[:k])
        for j in np.argsort(DZ[i], kind="stable")[:k]:
            if j not in near_x:
                penalty += rank_x[i, j] - k
    return 1 - 2.0 / (n * k * (2 * n - 3 * k - 1)) * penalty


def test_tsne_of_digits_is_trustworthy(digits):
    X, y = digits
    Z = embed_features(X, perplexity=30, random_state=0)
    assert Z.shape == (300, 2)
    report = trustworthiness_report(X, Z, n_neighbors=(5, 10))
    # digits' t-SNE keeps neighbourhoods well; PCA to 2-D much less so
    assert min(report["trustworthiness"]) > 0.95
    Zp = embed_features(X, method="pca")
    assert trustworthiness_report(X, Zp, n_neighbors=5)["trustworthiness"][0] < 0.9
    # classes separate: a point's nearest embedded neighbour mostly shares its label
    D = cdist(Z, Z)
    np.fill_diagonal(D, np.inf)
    assert np.mean(y[D.argmin(axis=1)] == y) > 0.9


def test_tsne_reproducible_with_random_state(digits):
    X = digits[0][:80]
    kw = {"perplexity": 10, "random_state": 3, "max_iter": 250}
    # exact equality of two runs: one OpenMP/BLAS thread, so scikit-learn's
    # parallel gradient sums cannot be split differently between the runs
    with threadpool_limits(limits=1):
        first, again = embed_features(X, **kw), embed_features(X, **kw)
    np.testing.assert_array_equal(first, again)


def test_tsne_cosine_and_3d(digits):
    X = digits[0][:60]
    Z = embed_features(
        X, n_components=3, perplexity=10, metric="cosine", random_state=0, max_iter=250
    )
    assert Z.shape == (60, 3) and np.all(np.isfinite(Z))


def test_pca_equals_sklearn(digits):
    X = digits[0]
    Z = embed_features(X, method="pca", n_components=3, svd_solver="full")
    ref = PCA(n_components=3, svd_solver="full").fit_transform(X)
    np.testing.assert_allclose(Z, ref, atol=1e-9)
    # cosine: PCA of L2-normalised rows
    Zc = embed_features(X, method="pca", metric="cosine", svd_solver="full")
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(
        Zc, PCA(n_components=2, svd_solver="full").fit_transform(Xn), atol=1e-9
    )


def test_feature_maps_are_flattened(rng):
    maps = rng.normal(size=(20, 3, 2, 2))
    np.testing.assert_allclose(
        embed_features(maps, method="pca", svd_solver="full"),
        embed_features(maps.reshape(20, 12), method="pca", svd_solver="full"),
    )


def test_embed_bad_input(rng):
    X = rng.normal(size=(20, 4))
    with pytest.raises(ValueError, match="perplexity=30.0 for 20 samples"):
        embed_features(X)
    with pytest.raises(ValueError, match="perplexity"):
        embed_features(X, perplexity=0)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        embed_features(Xn, perplexity=5)
    with pytest.raises(ValueError, match="'method' parameter"):
        embed_features(X, method="isomap")
    with pytest.raises(ValueError, match="'metric' parameter"):
        embed_features(X, metric="manhattan")
    with pytest.raises(ValueError, match="'n_components' parameter"):
        embed_features(X, n_components=0)
    with pytest.raises(ValueError, match=r"min\(n_samples, n_features\) = 4"):
        embed_features(X, method="pca", n_components=5)
    Xz = X.copy()
    Xz[2] = 0
    with pytest.raises(ValueError, match=r"rows \[2\] are all zero"):
        embed_features(Xz, metric="cosine", perplexity=5)


@pytest.mark.skipif(UMAP_INSTALLED, reason="umap-learn is installed")
def test_umap_missing_gives_install_hint(rng):
    with pytest.raises(ImportError, match=r"pip install 'skvmf\[umap\]'"):
        embed_features(rng.normal(size=(30, 4)), method="umap")


def test_umap_wiring_with_stand_in_module(rng, monkeypatch):
    # a stand-in ``umap`` module records how UMAP is called
    calls = {}

    class StandInUMAP:
        def __init__(self, **params):
            calls.update(params)

        def fit_transform(self, X):
            return X[:, : calls["n_components"]] * 2.0

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=StandInUMAP))
    X = rng.normal(size=(30, 5))
    Z = embed_features(
        X, method="umap", metric="cosine", random_state=7, n_neighbors=8, min_dist=0.2
    )
    # UMAP sees the features divided by the power of two just above max|X|
    scale = 2.0 ** np.frexp(np.abs(X).max())[1]
    np.testing.assert_allclose(Z, 2.0 * X[:, :2] / scale, rtol=1e-15)
    assert calls == {
        "n_components": 2,
        "metric": "cosine",
        "random_state": 7,
        "n_neighbors": 8,
        "min_dist": 0.2,
    }
    with pytest.raises(ValueError, match="n_neighbors=40 for 30 samples"):
        embed_features(X, method="umap", n_neighbors=40)


def test_trustworthiness_report_matches_formula(rng):
    X = rng.normal(size=(40, 6))
    Z = X[:, :2] + 0.3 * rng.normal(size=(40, 2))
    report = trustworthiness_report(X, Z, n_neighbors=[3, 7])
    assert report["n_neighbors"] == [3, 7]
    for k, t, c in zip([3, 7], report["trustworthiness"], report["continuity"]):
        assert t == pytest.approx(_trustworthiness_by_hand(X, Z, k), abs=1e-12)
        assert c == pytest.approx(_trustworthiness_by_hand(Z, X, k), abs=1e-12)
        assert t == pytest.approx(trustworthiness(X, Z, n_neighbors=k))


def test_trustworthiness_report_extremes_and_errors(rng):
    X = rng.normal(size=(50, 3))
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    perfect = trustworthiness_report(X, X @ Q + 5.0, n_neighbors=5)
    assert perfect["trustworthiness"] == [1.0] and perfect["continuity"] == [1.0]
    shuffled = trustworthiness_report(X, X[rng.permutation(50)], n_neighbors=5)
    assert shuffled["trustworthiness"][0] < 0.7
    # cosine ranks: scaling a row does not change them
    Xs = X * rng.uniform(0.5, 2.0, size=(50, 1))
    cos = trustworthiness_report(Xs, X, n_neighbors=5, metric="cosine")
    assert cos["trustworthiness"][0] == pytest.approx(
        trustworthiness_report(X, X, n_neighbors=5, metric="cosine")["trustworthiness"][
            0
        ]
    )
    with pytest.raises(ValueError, match="same number of rows"):
        trustworthiness_report(X, X[:10])
    with pytest.raises(ValueError, match="1 <= k < N / 2 = 25.0; got 25"):
        trustworthiness_report(X, X, n_neighbors=25)


def test_feature_embedding_estimator(digits):
    X = digits[0][:120]
    pca = FeatureEmbedding(method="pca", n_components=3).fit(X[:100])
    ref = PCA(n_components=3).fit(X[:100])
    np.testing.assert_allclose(
        pca.transform(X[100:]), ref.transform(X[100:]), atol=1e-8
    )
    assert pca.get_feature_names_out().tolist() == [
        "featureembedding0",
        "featureembedding1",
        "featureembedding2",
    ]
    cos = FeatureEmbedding(method="pca", metric="cosine").fit(X[:100])
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    ref = PCA(n_components=2).fit(unit[:100])
    np.testing.assert_allclose(
        cos.transform(X[100:]), ref.transform(unit[100:]), atol=1e-8
    )
    pipe = make_pipeline(StandardScaler(), FeatureEmbedding(method="pca"))
    assert pipe.fit_transform(X).shape == (120, 2)
    tsne = FeatureEmbedding(
        perplexity=10, random_state=0, estimator_params={"max_iter": 250}
    )
    assert not hasattr(tsne, "transform")
    Z = tsne.fit_transform(X[:60])
    np.testing.assert_array_equal(Z, tsne.embedding_)
    np.testing.assert_array_equal(
        Z, embed_features(X[:60], perplexity=10, random_state=0, max_iter=250)
    )
    with pytest.raises(ValueError, match="perplexity"):
        FeatureEmbedding(perplexity=100).fit(X[:50])


@parametrize_with_checks(
    [
        FeatureEmbedding(method="pca"),
        FeatureEmbedding(
            method="tsne", perplexity=2, estimator_params={"max_iter": 250}
        ),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------
# degenerate data, extreme magnitudes and bad values (issue 10)
# --------------------------------------------------------------------------
class _MustNotBeReached:
    def __init__(self, *args, **kwargs):
        raise AssertionError("scikit-learn was reached with degenerate data")


@pytest.mark.parametrize("factor", [1.0, 1e300, 1e-300])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_identical_rows_are_refused_before_scikit_learn(monkeypatch, factor, metric):
    # scikit-learn's t-SNE crashed the Python process on identical rows; the
    # check must fire before TSNE is even constructed
    import skvmf.embedding as embedding

    monkeypatch.setattr(embedding, "TSNE", _MustNotBeReached)
    X = np.tile([1.0, -2.0, 0.5], (12, 1)) * factor
    if metric == "cosine":
        X = X * np.arange(1, 13)[:, None]  # same direction, other lengths
    with pytest.raises(ValueError, match="pairwise .* distance is zero"):
        embed_features(X, perplexity=3, metric=metric)
    with pytest.raises(ValueError, match="pairwise .* distance is zero"):
        FeatureEmbedding(perplexity=3, metric=metric).fit(X)


@pytest.mark.parametrize("factor", [1e300, 1e-200])
def test_embeddings_are_scale_invariant(rng, factor):
    X = rng.normal(size=(25, 4))
    # t-SNE is chaotic: only an exact rescale (a power of two) can give the
    # same embedding, and it must; 1e300 itself must give a finite one
    exact = 2.0 ** (1000 if factor > 1 else -660)
    ref = embed_features(X, perplexity=5, random_state=0, max_iter=250)
    got = embed_features(X * exact, perplexity=5, random_state=0, max_iter=250)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    Z = embed_features(X * factor, perplexity=5, random_state=0, max_iter=250)
    assert np.all(np.isfinite(Z)) and Z.std() > 0
    # PCA coordinates are linear in the features
    Zp = embed_features(X, method="pca", svd_solver="full")
    est = FeatureEmbedding(method="pca", estimator_params={"svd_solver": "full"})
    got_p = est.fit_transform(X * factor)
    np.testing.assert_allclose(got_p / factor, Zp, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(est.transform(X * factor) / factor, Zp, atol=1e-12)
    r1 = trustworthiness_report(X, X[:, :2], n_neighbors=5)
    r2 = trustworthiness_report(X * factor, X[:, :2] * factor, n_neighbors=5)
    assert r1 == r2


def test_complex_and_non_finite_features_are_refused_by_name(rng):
    X = rng.normal(size=(12, 3))
    with pytest.raises(ValueError, match="X must be real"):
        embed_features(X + 1j, method="pca")
    with pytest.raises(ValueError, match="X must be real"):
        FeatureEmbedding(method="pca").fit(X + 1j)
    with pytest.raises(ValueError, match="Z must be real"):
        trustworthiness_report(X, X[:, :2] + 1j, n_neighbors=2)
    with pytest.raises(ValueError, match="X contains infinity"):
        embed_features(np.where(X > 1, np.inf, X), method="pca")


def test_read_only_features_are_embedded(rng):
    X = rng.normal(size=(12, 3))
    X.setflags(write=False)
    assert embed_features(X, perplexity=3, random_state=0, max_iter=250).shape == (
        12,
        2,
    )
    assert FeatureEmbedding(method="pca").fit_transform(X).shape == (12, 2)
