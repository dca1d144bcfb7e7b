"""RevisedVMFMixture under scikit-learn's Array API dispatch.

The reference is always the numpy path of the same estimator (itself tested
against scipy in test_mixture.py). Tolerances, measured and then given a
margin of about 10x:

- float64 computation (torch CPU, array-api-strict CPU_DEVICE and device1):
  means_, weights_ and predict_proba within 1e-12 absolute, kappas_ and
  score_samples within 1e-12 relative (measured: 5e-15 and 3e-14), the same
  number of EM iterations, the same labels;
- float32 computation (array-api-strict's "no_float64" device, the stand-in
  for Apple's MPS): 2e-5 absolute / 1e-4 relative (measured: 3e-7 and 1e-5).

k-means++ seeds on the device with its own D^2 sampling, so its seeds differ
from the numpy path's; there the test is equal clustering quality (adjusted
Rand index against the true clusters).
"""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst
from sklearn import config_context
from sklearn.metrics import adjusted_rand_score

from skvmf._array_api import to_numpy
from skvmf.mixture import RevisedVMFMixture
from skvmf.vmf import sample as vmf_sample

torch = pytest.importorskip("torch")
xps = pytest.importorskip("array_api_strict")

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread: small products are faster, and floats reproducible."""


F64 = {"atol": 1e-12, "rtol": 1e-12}
F32 = {"atol": 2e-5, "rtol": 1e-4}


def _torch(a):
    return torch.asarray(np.asarray(a, dtype=np.float64))


def _strict(device):
    def convert(a):
        return xps.asarray(np.asarray(a, dtype=np.float64), device=xps.Device(device))

    return convert


def _strict_labels(labels):
    return xps.asarray(labels, device=xps.Device("device1"))


# name -> (convert numpy X to the namespace, tolerance of the comparison)
NAMESPACES = {
    "torch-cpu": (_torch, F64),
    "strict-CPU_DEVICE": (_strict("CPU_DEVICE"), F64),
    "strict-device1": (_strict("device1"), F64),
}


def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def blobs():
    """Three vMF clusters (kappa 15) in d = 5, strengths in [1, 6]."""
    rng = np.random.default_rng(3)
    means = _unit(rng.standard_normal((3, 5)))
    o = np.vstack([vmf_sample(mu, 15.0, 60, random_state=rng) for mu in means])
    labels = np.repeat(np.arange(3), 60)
    X = o * rng.uniform(1.0, 6.0, size=(len(o), 1))
    return X, labels


def _data_for(mode, X):
    # the direction-only modes get unit rows, as a user of them would pass
    return X if mode == "revised" else _unit(X)


def _fit_both(params, X, y, convert):
    """The numpy fit and the dispatched fit of ``convert(X)``."""
    ref = RevisedVMFMixture(random_state=0, **params).fit(X, y)
    Xd = convert(X)
    with config_context(array_api_dispatch=True):
        est = RevisedVMFMixture(random_state=0, **params).fit(Xd, y)
        outputs = {
            "predict": est.predict(Xd),
            "predict_proba": est.predict_proba(Xd),
            "score_samples": est.score_samples(Xd),
            "score": est.score(Xd),
        }
    return ref, est, Xd, outputs


def _assert_matches(ref, est, X, outputs, tol):
    atol, rtol = tol["atol"], tol["rtol"]
    np.testing.assert_allclose(to_numpy(est.means_), ref.means_, rtol=0, atol=atol)
    np.testing.assert_allclose(to_numpy(est.weights_), ref.weights_, rtol=0, atol=atol)
    np.testing.assert_allclose(to_numpy(est.kappas_), ref.kappas_, rtol=rtol, atol=0)
    np.testing.assert_allclose(
        to_numpy(outputs["predict_proba"]), ref.predict_proba(X), rtol=0, atol=atol
    )
    np.testing.assert_allclose(
        to_numpy(outputs["score_samples"]), ref.score_samples(X), rtol=rtol, atol=atol
    )
    assert outputs["score"] == pytest.approx(ref.score(X), rel=rtol)
    assert est.lower_bound_ == pytest.approx(ref.lower_bound_, rel=rtol, abs=atol)
    assert est.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(to_numpy(outputs["predict"]), ref.predict(X))


# ------------------------------------------------- values against numpy


@pytest.mark.parametrize("namespace", list(NAMESPACES))
@pytest.mark.parametrize("mode", ["revised", 7.0, "learned"])
def test_fit_with_y_matches_numpy(blobs, namespace, mode):
    X, labels = blobs
    convert, tol = NAMESPACES[namespace]
    X = _data_for(mode, X)
    ref, est, Xd, outputs = _fit_both({"kappa": mode}, X, labels, convert)
    _assert_matches(ref, est, X, outputs, tol)
    # numeric labels follow X: classes_ on its device, predict gives labels
    np.testing.assert_array_equal(to_numpy(est.classes_), [0, 1, 2])
    assert type(est.classes_) is type(Xd)


@pytest.mark.parametrize("namespace", list(NAMESPACES))
@pytest.mark.parametrize(
    ("mode", "init"),
    [("revised", "random_from_data"), ("learned", "random"), (5.0, "random")],
)
def test_deterministic_initialisations_match_numpy(blobs, namespace, mode, init):
    """ "random" and "random_from_data" draw the same host numbers as numpy."""
    X, _ = blobs
    convert, tol = NAMESPACES[namespace]
    X = _data_for(mode, X)
    params = {"n_components": 3, "kappa": mode, "init_params": init, "n_init": 2}
    ref, est, _, outputs = _fit_both(params, X, None, convert)
    _assert_matches(ref, est, X, outputs, tol)


def test_float32_input_computes_in_float64(blobs):
    """float32 tensors are validated to float64 on CPU, as numpy input is."""
    X, labels = blobs
    X32 = X.astype(np.float32)
    ref, est, _, outputs = _fit_both({}, X32, labels, torch.asarray)
    assert est.means_.dtype == torch.float64
    assert outputs["predict_proba"].dtype == torch.float64
    _assert_matches(ref, est, X32, outputs, F64)


def test_device_without_float64_falls_back_to_float32(blobs):
    X, labels = blobs
    no_f64 = xps.Device("no_float64")
    X32 = xps.asarray(X.astype(np.float32), device=no_f64)
    ref = RevisedVMFMixture(kappa="learned", random_state=0).fit(X, labels)
    with config_context(array_api_dispatch=True):
        with pytest.warns(UserWarning, match="no float64.*float32"):
            est = RevisedVMFMixture(kappa="learned", random_state=0).fit(X32, labels)
        outputs = {
            "predict": est.predict(X32),
            "predict_proba": est.predict_proba(X32),
            "score_samples": est.score_samples(X32),
            "score": est.score(X32),
        }
    for value in (est.means_, est.weights_, est.kappas_, outputs["predict_proba"]):
        assert value.dtype == xps.float32 and value.device == no_f64
    _assert_matches(ref, est, X, outputs, F32)


@pytest.mark.parametrize("namespace", ["torch-cpu", "strict-device1"])
@pytest.mark.parametrize("mode", ["revised", "learned"])
def test_kmeans_plusplus_clusters_as_well_as_numpy(namespace, mode):
    """Device k-means++ (own D^2 sampling) recovers the clusters as numpy does.

    Six clusters in d = 16; over three seeds the mean adjusted Rand index
    against the truth must be within 0.05 of the numpy path's and above 0.9.
    """
    rng = np.random.default_rng(11)
    means = _unit(rng.standard_normal((6, 16)))
    o = np.vstack([vmf_sample(mu, 40.0, 80, random_state=rng) for mu in means])
    truth = np.repeat(np.arange(6), 80)
    X = o * rng.uniform(2.0, 8.0, size=(len(o), 1)) if mode == "revised" else o
    convert = NAMESPACES[namespace][0]
    ari_np, ari_xp = [], []
    for seed in range(3):
        params = {"n_components": 6, "kappa": mode, "random_state": seed}
        ari_np.append(
            adjusted_rand_score(truth, RevisedVMFMixture(**params).fit_predict(X))
        )
        with config_context(array_api_dispatch=True):
            labels = RevisedVMFMixture(**params).fit_predict(convert(X))
        ari_xp.append(adjusted_rand_score(truth, to_numpy(labels)))
    assert np.mean(ari_xp) >= np.mean(ari_np) - 0.05
    assert np.mean(ari_xp) > 0.9


def test_strength_quantiles_match_numpy():
    """More than 1024 training rows: sample's strengths, numpy's quantiles."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((1500, 3)) * rng.uniform(0.5, 9.0, size=(1500, 1))
    ref = RevisedVMFMixture(2, random_state=0, max_iter=2).fit(X)
    with config_context(array_api_dispatch=True):
        est = RevisedVMFMixture(2, random_state=0, max_iter=2).fit(_torch(X))
    np.testing.assert_allclose(
        to_numpy(est._strength_quantiles), ref._strength_quantiles, rtol=1e-14
    )


# ------------------------------------------- namespaces, devices, floats


@pytest.mark.parametrize("namespace", list(NAMESPACES))
@pytest.mark.parametrize("with_y", [False, True])
def test_every_array_follows_x(blobs, namespace, with_y):
    X, labels = blobs
    convert = NAMESPACES[namespace][0]
    Xd = convert(X)
    y = labels if with_y else None
    with config_context(array_api_dispatch=True):
        est = RevisedVMFMixture(1 if with_y else 3, random_state=0).fit(Xd, y)
        outputs = [est.predict(Xd), est.predict_proba(Xd), est.score_samples(Xd)]
        outputs += list(est.sample(7))
        scalars = [est.score(Xd), est.bic(Xd), est.aic(Xd)]
    arrays = {k: v for k, v in vars(est).items() if hasattr(v, "shape")}
    assert {"means_", "weights_", "kappas_", "_bias", "_scaled_means"} <= set(arrays)
    assert with_y == ("classes_" in arrays)
    arrays = list(arrays.values())
    for value in arrays + outputs:
        assert type(value) is type(Xd)
        assert value.device == Xd.device
    assert not any(isinstance(v, np.ndarray) for v in vars(est).values())
    for value in scalars:
        assert type(value) is float
    ref = RevisedVMFMixture(1 if with_y else 3, random_state=0).fit(X, y)
    assert scalars[1] == pytest.approx(ref.bic(X), rel=1e-12)
    assert scalars[2] == pytest.approx(ref.aic(X), rel=1e-12)


@pytest.mark.parametrize(
    ("x_conv", "y_conv"),
    [
        (_strict("device1"), torch.asarray),
        (_torch, _strict_labels),
        (_torch, np.asarray),
        (_torch, list),
        (np.asarray, torch.asarray),
        (np.asarray, _strict_labels),
    ],
    ids=[
        "strict-x-torch-y",
        "torch-x-strict-y",
        "torch-x-numpy-y",
        "list-y",
        "numpy-x-torch-y",
        "numpy-x-strict-y",
    ],
)
def test_labels_follow_x(blobs, x_conv, y_conv):
    X, labels = blobs
    ref = RevisedVMFMixture(random_state=0).fit(X, labels)
    Xd = x_conv(X)
    with config_context(array_api_dispatch=True):
        est = RevisedVMFMixture(random_state=0).fit(Xd, y_conv(labels))
        predicted = est.predict(Xd)
    assert type(est.classes_) is type(Xd) and type(predicted) is type(Xd)
    assert to_numpy(predicted).dtype == ref.predict(X).dtype
    np.testing.assert_array_equal(to_numpy(predicted), ref.predict(X))
    np.testing.assert_allclose(to_numpy(est.means_), ref.means_, rtol=0, atol=1e-12)


def test_text_labels_stay_on_the_host(blobs):
    X, labels = blobs
    names = np.array(["ant", "bee", "cat"])[labels]
    ref = RevisedVMFMixture(random_state=0).fit(X, names)
    with config_context(array_api_dispatch=True):
        est = RevisedVMFMixture(random_state=0).fit(_torch(X), names.tolist())
        predicted = est.predict(_torch(X))
        _, sampled = est.sample(4)
    assert isinstance(est.classes_, np.ndarray) and isinstance(predicted, np.ndarray)
    np.testing.assert_array_equal(predicted, ref.predict(X))
    assert isinstance(sampled, np.ndarray) and set(sampled) <= set(est.classes_)
    assert isinstance(est.means_, torch.Tensor)


def test_sample_moves_to_the_fitted_namespace(blobs):
    X, _ = blobs
    ref = RevisedVMFMixture(3, kappa=20.0, random_state=0).fit(_unit(X))
    Xd = _strict("device1")(_unit(X))
    with config_context(array_api_dispatch=True):
        est = RevisedVMFMixture(3, kappa=20.0, random_state=0).fit(Xd)
        rows, components = est.sample(9)
    assert rows.device == Xd.device and components.device == Xd.device
    # the same host draws from the same parameters (equal to rounding)
    ref_rows, ref_components = ref.sample(9)
    np.testing.assert_allclose(to_numpy(rows), ref_rows, atol=1e-10)
    np.testing.assert_array_equal(to_numpy(components), ref_components)
    rows_np, _ = est.sample(3)  # dispatch off: numpy
    assert isinstance(rows_np, np.ndarray)


def test_other_namespace_or_device_is_refused(blobs):
    X, _ = blobs
    Xd = _torch(X)
    with config_context(array_api_dispatch=True):
        est = RevisedVMFMixture(2, random_state=0).fit(Xd)
        for method in ("predict", "predict_proba", "score_samples"):
            with pytest.raises(ValueError, match=rf"RevisedVMFMixture.{method}\(\)"):
                getattr(est, method)(X)
        with pytest.raises(
            ValueError,
            match=r"namespaces used during fit \(.*torch\) and predict "
            r"\(.*array_api_strict.*\) differ",
        ):
            est.predict(_strict("CPU_DEVICE")(X))
        strict = RevisedVMFMixture(2, random_state=0).fit(_strict("CPU_DEVICE")(X))
        with pytest.raises(
            ValueError, match=r"Devices used during fit .*CPU_DEVICE.*device1"
        ):
            strict.predict(_strict("device1")(X))
        np_fit = RevisedVMFMixture(2, random_state=0).fit(X)
        with pytest.raises(ValueError, match=r"numpy\) and predict \(.*torch\)"):
            np_fit.predict(Xd)
    with pytest.raises(ValueError, match="turn array_api_dispatch on"):
        est.predict(Xd)


def test_warm_start_continues_on_the_device(blobs):
    X, _ = blobs
    params = {"n_components": 3, "kappa": "learned", "init_params": "random"}
    ref = RevisedVMFMixture(random_state=0, max_iter=2, **params).fit(_unit(X))
    ref.set_params(warm_start=True, max_iter=3).fit(_unit(X))
    Xd = _torch(_unit(X))
    with config_context(array_api_dispatch=True):
        est = RevisedVMFMixture(random_state=0, max_iter=2, **params).fit(Xd)
        est.set_params(warm_start=True, max_iter=3).fit(Xd)
        np.testing.assert_allclose(to_numpy(est.means_), ref.means_, atol=1e-12)
        with pytest.raises(ValueError, match=r"RevisedVMFMixture.fit\(\) must use"):
            est.fit(_unit(X))


# --------------------------------------------------- degenerate inputs


@pytest.mark.parametrize("namespace", ["torch-cpu", "strict-device1"])
@pytest.mark.parametrize("mode", ["revised", "learned", 8.0])
def test_zero_norm_rows(blobs, namespace, mode):
    X, _ = blobs
    Z = _data_for(mode, X).copy()
    Z[[4, 17, 30]] = 0.0
    convert = NAMESPACES[namespace][0]
    with (
        config_context(array_api_dispatch=True),
        pytest.raises(ValueError, match=r"3 row\(s\) with zero norm .*\[4, 17, 30\]"),
    ):
        RevisedVMFMixture(2, kappa=mode).fit(convert(Z))
    params = {"n_components": 2, "kappa": mode, "zero_norm": "drop"}
    ref, est, _, outputs = _fit_both(params, Z, None, convert)
    # k-means++ seeds differ between the paths; compare the predictions of
    # the device fit with the numpy path given the same parameters instead
    ref.means_, ref.weights_, ref.kappas_ = (
        to_numpy(est.means_),
        to_numpy(est.weights_),
        to_numpy(est.kappas_),
    )
    ref._set_state(ref.means_, ref.weights_, ref.kappas_)
    np.testing.assert_allclose(
        to_numpy(outputs["predict_proba"]), ref.predict_proba(Z), atol=1e-12
    )
    np.testing.assert_allclose(
        to_numpy(outputs["score_samples"]), ref.score_samples(Z), rtol=1e-12
    )
    proba = to_numpy(outputs["predict_proba"])
    np.testing.assert_array_equal(proba[[4, 17, 30]], np.tile(ref.weights_, (3, 1)))
    with config_context(array_api_dispatch=True):
        all_zero = est.score_samples(convert(np.zeros((2, 5))))
    np.testing.assert_allclose(to_numpy(all_zero), ref.score_samples(np.zeros((2, 5))))


def test_all_zero_rows_and_classes_without_rows(blobs):
    X, labels = blobs
    with config_context(array_api_dispatch=True):
        with pytest.raises(ValueError, match="all 3 rows"):
            RevisedVMFMixture(zero_norm="drop").fit(_torch(np.zeros((3, 4))))
        Z = X.copy()
        Z[labels == 1] = 0.0
        with pytest.raises(ValueError, match="class 1 has no row with non-zero"):
            RevisedVMFMixture(zero_norm="drop").fit(_torch(Z), labels)


@pytest.mark.parametrize("namespace", ["torch-cpu", "strict-device1"])
def test_empty_component_is_reseeded_as_on_numpy(namespace):
    rng = np.random.default_rng(8)
    a, b = _unit(rng.standard_normal((2, 4)))
    X = np.vstack(
        [
            a + 1e-3 * rng.standard_normal((30, 4)),
            b + 1e-3 * rng.standard_normal((30, 4)),
        ]
    )
    convert = NAMESPACES[namespace][0]
    ref = RevisedVMFMixture(3, kappa=1e6, init_params="random_from_data", max_iter=1)
    ref.set_params(random_state=0).fit(X)
    with config_context(array_api_dispatch=True):
        est = RevisedVMFMixture(
            3, kappa=1e6, init_params="random_from_data", max_iter=1
        )
        est.set_params(random_state=0).fit(convert(X))
    far = _unit(-(a + b))
    ref.means_ = ref.means_.copy()
    ref.means_[2] = far
    means = to_numpy(est.means_).copy()
    means[2] = far
    est.means_ = convert(means)
    ref.set_params(warm_start=True).fit(X)
    with config_context(array_api_dispatch=True):
        est.set_params(warm_start=True).fit(convert(X))
    np.testing.assert_allclose(to_numpy(est.means_), ref.means_, atol=1e-12)
    np.testing.assert_allclose(to_numpy(est.weights_), ref.weights_, atol=1e-12)
    assert np.isclose((_unit(X) @ ref.means_[2]).max(), 1.0)


@pytest.mark.parametrize("mode", ["revised", "learned", 1e6])
@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_duplicates_and_extreme_kappa_never_nan(mode, init):
    """Identical rows: components re-seeded, kappa capped, as on numpy."""
    X = np.tile([[3.0, 4.0, 0.0]], (20, 1))
    far = np.array([[-3.0, -4.0, 0.0], [0.0, 0.0, 1e-3]])
    params = {"n_components": 3, "kappa": mode, "init_params": init}
    ref = RevisedVMFMixture(random_state=0, **params).fit(X)
    with config_context(array_api_dispatch=True):
        est = RevisedVMFMixture(random_state=0, **params).fit(_torch(X))
        values = [est.means_, est.weights_, est.kappas_]
        values += [est.predict_proba(_torch(far)), est.score_samples(_torch(far))]
    values = [to_numpy(v) for v in values]
    assert all(np.all(np.isfinite(v)) for v in values)
    np.testing.assert_allclose(values[0], ref.means_, atol=1e-12)
    np.testing.assert_allclose(values[1], ref.weights_, atol=1e-12)
    np.testing.assert_allclose(values[2], ref.kappas_, rtol=1e-12)
    np.testing.assert_allclose(values[4], ref.score_samples(far), rtol=1e-12)


def test_tiny_and_huge_rows_keep_their_direction():
    rng = np.random.default_rng(9)
    o = _unit(rng.standard_normal((40, 3)))
    scales = np.tile([1e-200, 1e-5, 1.0, 1e200], 10)[:, None]
    for mode in (20.0, "revised"):
        ref = RevisedVMFMixture(2, kappa=mode, init_params="random", random_state=0)
        ref.fit(o * scales)
        with config_context(array_api_dispatch=True):
            est = RevisedVMFMixture(2, kappa=mode, init_params="random", random_state=0)
            est.fit(_torch(o * scales))
            scores = to_numpy(est.score_samples(_torch(o * scales)))
        np.testing.assert_allclose(to_numpy(est.means_), ref.means_, atol=1e-12)
        np.testing.assert_allclose(scores, ref.score_samples(o * scales), rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    seed=hst.integers(0, 2**32 - 1),
    dim=hst.integers(2, 40),
    mode=hst.sampled_from(["revised", "learned", 3.0]),
    log_scale=hst.floats(-300.0, 300.0),
)
def test_predictions_match_numpy_for_any_parameters(seed, dim, mode, log_scale):
    """Given the same parameters, the torch E-step equals the numpy one.

    Random means, weights (one of them possibly 0) and concentrations, rows
    at random strengths (1e-3 to 1e3 in "revised" mode; any scale from 1e-300
    to 1e300 in the direction-only modes, where only directions count):
    predict_proba within 1e-12 absolute and score_samples within 1e-12
    relative.
    """
    rng = np.random.default_rng(seed)
    n_components = int(rng.integers(1, 5))
    X = rng.standard_normal((12, dim))
    if mode == "revised":
        X *= 10.0 ** rng.uniform(-3.0, 3.0, size=(12, 1))
    else:
        X *= 10.0**log_scale
    ref = RevisedVMFMixture(n_components, kappa=mode, max_iter=0, random_state=0)
    ref.fit(np.vstack([X, rng.standard_normal((n_components, dim))]))
    weights = rng.dirichlet(np.ones(n_components))
    if n_components > 1:  # maybe an emptied component (weight 0, bias -inf)
        weights[rng.integers(n_components)] *= rng.integers(2)
    weights /= weights.sum()
    means = _unit(rng.standard_normal((n_components, dim)))
    kappas = 10.0 ** rng.uniform(-3.0, 4.0, size=n_components)
    ref._set_state(means, weights, kappas)
    est = copy.deepcopy(ref)
    with config_context(array_api_dispatch=True):
        est._set_state(*(torch.asarray(a) for a in (means, weights, kappas)))
        proba = to_numpy(est.predict_proba(_torch(X)))
        scores = to_numpy(est.score_samples(_torch(X)))
    np.testing.assert_allclose(proba, ref.predict_proba(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(scores, ref.score_samples(X), rtol=1e-12, atol=1e-12)


def test_complex_input_is_refused_by_name():
    X = torch.ones((4, 3), dtype=torch.complex128)
    with (
        config_context(array_api_dispatch=True),
        pytest.raises(ValueError, match="Complex data not supported: X"),
    ):
        RevisedVMFMixture().fit(X)


# ---------------------------------------------- no host copy, no change


@pytest.mark.parametrize(
    "params",
    [
        {"n_components": 3},
        {"n_components": 3, "kappa": "learned", "init_params": "random"},
        {"n_components": 3, "kappa": 4.0, "init_params": "random_from_data"},
        {"zero_norm": "drop"},
    ],
)
def test_no_host_copy_of_features(blobs, monkeypatch, params):
    """Fit, predictions and scores never turn a feature tensor into numpy."""
    X, labels = blobs
    X = X.copy()
    X[5] = 0.0
    y = torch.asarray(labels) if params.get("n_components", 1) == 1 else None
    Xd = _torch(X)

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was copied to the host")

    with config_context(array_api_dispatch=True):
        monkeypatch.setattr(torch.Tensor, "__array__", refuse)
        monkeypatch.setattr(torch.Tensor, "numpy", refuse)
        est = RevisedVMFMixture(random_state=0, **{"zero_norm": "drop", **params})
        est.fit(Xd, y)
        est.predict(Xd)
        est.predict_proba(Xd)
        est.score(Xd)
        est.bic(Xd)
        monkeypatch.undo()
    assert isinstance(est.means_, torch.Tensor)


def test_dispatch_off_and_numpy_input_are_unchanged(blobs):
    X, labels = blobs
    ref = RevisedVMFMixture(3, random_state=0).fit(X)
    with config_context(array_api_dispatch=True):
        on = RevisedVMFMixture(3, random_state=0).fit(X)
        proba_on = on.predict_proba(X)
    assert isinstance(on.means_, np.ndarray) and isinstance(proba_on, np.ndarray)
    np.testing.assert_array_equal(on.means_, ref.means_)
    np.testing.assert_array_equal(proba_on, ref.predict_proba(X))
    # without dispatch a CPU tensor is read as numpy, as before
    off = RevisedVMFMixture(3, random_state=0).fit(_torch(X))
    assert isinstance(off.means_, np.ndarray)
    np.testing.assert_array_equal(off.means_, ref.means_)
    assert isinstance(off.predict(_torch(X)), np.ndarray)
