"""SampleProjector under scikit-learn's Array API dispatch (SPEC 10).

With ``array_api_dispatch`` on, torch tensors are computed on their own
device and every fitted array and output is a tensor there; array-api-strict
arrays (both of its devices) are computed by torch on the CPU from a host
copy and come back as array-api-strict arrays on their device. The
references are the numpy path's results on the same values (float32 inputs
are compared with numpy fits of the same float32 values, so the inputs'
rounding is not what is measured).

Tolerances: the torch path runs the same torch arithmetic as the numpy path
except for two reductions (the Adam step size's mean L1 norm and the SGD
stiffness, summed by torch instead of numpy), so after 60 Adam steps the
fitted arrays and outputs agree to 1e-10 relative (1e-12 absolute); the
host path (array-api-strict) is the numpy path itself, so it agrees to
1e-12. Torch is pinned to one thread wherever values are compared.
"""

import warnings

import array_api_strict
import numpy as np
import pytest
import sklearn
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import softmax
from sklearn.base import clone

import skvmf._array_api as skvmf_array_api
from skvmf._array_api import get_namespace_and_device
from skvmf._numerics.soft_labels import check_soft_labels, check_soft_labels_xp
from skvmf.features import FeatureSet
from skvmf.projection import (
    SampleProjector,
    procrustes_rotation,
)

# values compared between the numpy and the torch path (see the docstring)
RTOL, ATOL = 1e-10, 1e-12
_ARRAYS = ("components_", "directions_", "priors_")
_METHODS = ("transform", "predict_proba", "predict_log_proba", "predict")


def _data(n=60, n_classes=3, dim=8, seed=0, dtype=np.float64):
    """Class clusters with soft labels from a softmax model of the features."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    means = rng.normal(size=(n_classes, dim))
    means *= 40.0 / np.linalg.norm(means, axis=1, keepdims=True)
    F = rng.uniform(0.2, 1.2, n)[:, None] * means[y] + 3.0 * rng.normal(size=(n, dim))
    P = softmax(0.1 * F @ (means / 40.0).T + 0.3 * rng.normal(size=(n, n_classes)), 1)
    return F.astype(dtype), P.astype(dtype), y


def _tensor_soft_labels(P, **options):
    """The device check of soft labels the projector uses for tensors."""
    with sklearn.config_context(array_api_dispatch=True):
        xp, _, device = get_namespace_and_device(P)
        return check_soft_labels_xp(P, xp, device, **options)


def _projector(**params):
    return SampleProjector(**{"max_iter": 60, "random_state": 0, **params})


def _strict(name):
    return array_api_strict.Device(name)


def _assert_close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(
        skvmf_array_api.to_numpy(actual), expected, rtol=rtol, atol=atol
    )


def _assert_in(array, namespace, device):
    """``array`` belongs to ``namespace`` ("torch" / "array_api_strict") on
    ``device``."""
    if namespace == "torch":
        assert isinstance(array, torch.Tensor), type(array)
        assert array.device == device
    else:
        assert type(array).__module__.startswith("array_api_strict"), type(array)
        assert array.device == device


# ---------------------------------------------------------------------------
# values against the numpy path, namespaces and devices of everything
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("gradient", ["faithful", "exact"])
def test_torch_fit_and_outputs_match_numpy(dtype, gradient, one_torch_thread):
    F, P, y = _data(dtype=dtype)
    params = {"gradient": gradient, "em_steps": 1 if gradient == "exact" else 0}
    ref = _projector(**params).fit(F, soft_labels=P)
    Ft, Pt = torch.as_tensor(F), torch.as_tensor(P)
    with sklearn.config_context(array_api_dispatch=True):
        est = _projector(**params).fit(Ft, soft_labels=Pt)
        outputs = {m: getattr(est, m)(Ft) for m in _METHODS}
        score = est.score(Ft, torch.as_tensor(y))
    for name in _ARRAYS:
        value = getattr(est, name)
        _assert_in(value, "torch", Ft.device)
        # the numpy path computes in float64 whatever X's dtype: so does this
        assert value.dtype == torch.float64
        _assert_close(value, getattr(ref, name))
    _assert_in(est.classes_, "torch", Ft.device)
    np.testing.assert_array_equal(est.classes_.numpy(), ref.classes_)
    assert est.loss_ == pytest.approx(ref.loss_, rel=RTOL)
    np.testing.assert_allclose(est.loss_curve_, ref.loss_curve_, rtol=RTOL)
    for method, out in outputs.items():
        expected = getattr(ref, method)(F)
        _assert_in(out, "torch", Ft.device)
        assert str(out.dtype).endswith(str(expected.dtype)), (method, out.dtype)
        if method == "predict":
            np.testing.assert_array_equal(out.numpy(), expected)
        else:
            _assert_close(out, expected)
    assert isinstance(score, float) and score == ref.score(F, y)


@pytest.mark.parametrize(
    ("device_name", "dtype"), [("CPU_DEVICE", np.float64), ("device1", np.float32)]
)
def test_array_api_strict_matches_numpy_on_both_devices(
    device_name, dtype, one_torch_thread
):
    F, _, y = _data(dtype=dtype)
    ref = _projector().fit(F, y)
    device = _strict(device_name)
    Xs = array_api_strict.asarray(F, device=device)
    ys = array_api_strict.asarray(y, device=device)
    with sklearn.config_context(array_api_dispatch=True):
        est = _projector().fit(Xs, ys)
        outputs = {m: getattr(est, m)(Xs) for m in _METHODS}
        score = est.score(Xs, ys)
    for name in (*_ARRAYS, "classes_"):
        _assert_in(getattr(est, name), "array_api_strict", device)
        _assert_close(getattr(est, name), getattr(ref, name), atol=1e-12)
    assert est.loss_ == pytest.approx(ref.loss_, rel=1e-12)
    for method, out in outputs.items():
        _assert_in(out, "array_api_strict", device)
        _assert_close(out, getattr(ref, method)(F), atol=1e-12)
    assert isinstance(score, float) and score == ref.score(F, y)


def test_featureset_of_tensors_gets_tensor_fields(one_torch_thread):
    F, P, _ = _data()
    ref = _projector().fit(FeatureSet(sample=F, soft_labels=P))
    fs = FeatureSet(sample=torch.as_tensor(F), soft_labels=torch.as_tensor(P))
    with sklearn.config_context(array_api_dispatch=True):
        est = _projector().fit(fs)
        out = est.transform(fs)
        agreement = est.score(fs)
    for field, expected in (
        ("g", ref.transform(F)),
        ("directions", ref.directions_),
        ("priors", ref.priors_),
    ):
        _assert_in(getattr(out, field), "torch", torch.device("cpu"))
        _assert_close(getattr(out, field), expected)
    assert fs.g is None  # a copy: the input is not modified
    assert isinstance(agreement, float)
    assert agreement == ref.score(FeatureSet(sample=F, soft_labels=P))


def test_labels_and_soft_labels_follow_x(one_torch_thread):
    """y and soft labels of another namespace (numpy, array-api-strict's
    second device) are moved to X's; the fit equals the all-tensor one."""
    F, P, y = _data()
    Ft = torch.as_tensor(F)
    with sklearn.config_context(array_api_dispatch=True):
        base = _projector().fit(Ft, torch.as_tensor(y))
        from_numpy = _projector().fit(Ft, y)
        from_strict = _projector().fit(
            Ft, array_api_strict.asarray(y, device=_strict("device1"))
        )
        soft = _projector().fit(Ft, soft_labels=P)
        soft_t = _projector().fit(Ft, soft_labels=torch.as_tensor(P))
    for est in (from_numpy, from_strict):
        _assert_in(est.classes_, "torch", Ft.device)
        torch.testing.assert_close(est.components_, base.components_, rtol=0, atol=0)
    _assert_in(soft.classes_, "torch", Ft.device)
    torch.testing.assert_close(soft.components_, soft_t.components_, rtol=0, atol=0)


def test_string_labels_stay_numpy_while_arrays_follow_x():
    F, _, y = _data()
    names = np.array(["cat", "dog", "eel"])[y]
    Ft = torch.as_tensor(F)
    ref = _projector().fit(F, names)
    with sklearn.config_context(array_api_dispatch=True):
        est = _projector().fit(Ft, names)
        pred = est.predict(Ft)
        score = est.score(Ft, names)
    # no namespace holds strings: classes_ and the labels stay numpy
    np.testing.assert_array_equal(est.classes_, ref.classes_)
    np.testing.assert_array_equal(pred, ref.predict(F))
    _assert_in(est.components_, "torch", Ft.device)
    assert score == ref.score(F, names)


def test_fit_sequence_with_tensors_matches_numpy(one_torch_thread):
    F, P, _ = _data(n=60, dim=8)
    rng = np.random.default_rng(1)
    F2 = F[:, rng.permutation(F.shape[1])] + 0.5 * rng.normal(size=F.shape)
    numpy_sets = [FeatureSet(sample=f, soft_labels=P) for f in (F, F2)]
    tensor_sets = [
        FeatureSet(sample=torch.as_tensor(f), soft_labels=torch.as_tensor(P))
        for f in (F, F2)
    ]
    template = _projector(max_iter=80)
    refs = template.fit_sequence(numpy_sets)
    with sklearn.config_context(array_api_dispatch=True):
        fits = template.fit_sequence(tensor_sets)
    assert len(fits) == 2
    for fit, ref in zip(fits, refs):
        assert fit.warm_started_ == ref.warm_started_
        for name in (*_ARRAYS, "rotation_"):
            _assert_in(getattr(fit, name), "torch", torch.device("cpu"))
            # Procrustes by torch's SVD instead of numpy's: 1e-9
            _assert_close(getattr(fit, name), getattr(ref, name), rtol=1e-9)
    R = fits[1].rotation_
    torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=R.dtype), rtol=0, atol=1e-12)


def test_fit_sequence_with_array_api_strict_featuresets(one_torch_thread):
    """The host path: computed as numpy computes, returned on device1."""
    F, P, _ = _data(n=40, dim=6)
    F2 = F + 0.5 * np.random.default_rng(2).normal(size=F.shape)
    device = _strict("device1")
    template = _projector(max_iter=30)
    refs = template.fit_sequence([FeatureSet(sample=f, soft_labels=P) for f in (F, F2)])
    with sklearn.config_context(array_api_dispatch=True):
        # (FeatureSet checks device1's arrays only with dispatch on)
        strict_sets = [
            FeatureSet(
                sample=array_api_strict.asarray(f, device=device),
                soft_labels=array_api_strict.asarray(P, device=device),
            )
            for f in (F, F2)
        ]
        fits = template.fit_sequence(strict_sets)
        out = fits[1].transform(strict_sets[1])
    for fit, ref in zip(fits, refs):
        for name in (*_ARRAYS, "rotation_"):
            _assert_in(getattr(fit, name), "array_api_strict", device)
            _assert_close(getattr(fit, name), getattr(ref, name), atol=1e-12)
    for field in ("g", "directions", "priors"):
        _assert_in(getattr(out, field), "array_api_strict", device)
    _assert_close(out.g, refs[1].transform(F2), atol=1e-12)


def test_procrustes_rotation_follows_the_source():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(40, 3))
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    B = A @ Q + 0.01 * rng.normal(size=A.shape)
    ref = procrustes_rotation(A, B, trim=0.2)
    with sklearn.config_context(array_api_dispatch=True):
        R = procrustes_rotation(torch.as_tensor(A), B, trim=0.2)
        Rs = procrustes_rotation(
            array_api_strict.asarray(A), array_api_strict.asarray(B), trim=0.2
        )
    _assert_in(R, "torch", torch.device("cpu"))
    _assert_close(R, ref, rtol=1e-9)
    _assert_in(Rs, "array_api_strict", _strict("CPU_DEVICE"))
    _assert_close(Rs, ref, rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------
# no host copy of the features
# ---------------------------------------------------------------------------


def test_no_host_copy_of_tensors(monkeypatch):
    F, P, y = _data()
    fs = FeatureSet(sample=torch.as_tensor(F), soft_labels=torch.as_tensor(P))
    Ft, yt = torch.as_tensor(F), torch.as_tensor(y)

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was copied to the host")

    with sklearn.config_context(array_api_dispatch=True):
        monkeypatch.setattr(torch.Tensor, "__array__", refuse)
        monkeypatch.setattr(torch.Tensor, "numpy", refuse)
        monkeypatch.setattr(torch.Tensor, "cpu", refuse)
        est = _projector(max_iter=10).fit(Ft, yt)
        for method in _METHODS:
            getattr(est, method)(Ft)
        est.score(Ft, yt)
        est = _projector(max_iter=10, em_steps=1).fit(fs)
        est.transform(fs)
        est.score(fs)
        fits = _projector(max_iter=10).fit_sequence([fs, fs])
        fits[1].predict_proba(fs)


# ---------------------------------------------------------------------------
# mismatches, dtypes, devices, errors
# ---------------------------------------------------------------------------


def test_predicting_in_another_namespace_names_both():
    F, P, y = _data()
    with sklearn.config_context(array_api_dispatch=True):
        on_torch = _projector(max_iter=5).fit(torch.as_tensor(F), y)
        on_strict = _projector(max_iter=5).fit(array_api_strict.asarray(F), y)
        for method in (*_METHODS, "score"):
            args = (y,) if method == "score" else ()
            with pytest.raises(ValueError, match=r"torch\) and .*numpy"):
                getattr(on_torch, method)(F, *args)
            with pytest.raises(ValueError, match=rf"SampleProjector\.{method}\(\)"):
                getattr(on_strict, method)(torch.as_tensor(F), *args)
        with pytest.raises(ValueError, match=r"array_api_strict.*device"):
            on_strict.transform(array_api_strict.asarray(F, device=_strict("device1")))
        # a numpy fit (dispatch off) refuses tensors once dispatch is on
        on_numpy = _projector(max_iter=5).fit(F, y)
        with pytest.raises(ValueError, match=r"numpy\) and .*torch"):
            on_numpy.predict(torch.as_tensor(F))
    # a tensor fit used without dispatch: said, not a numpy/torch mix-up
    with pytest.raises(ValueError, match=r"fitted on torch arrays.*dispatch"):
        on_torch.transform(F)


def test_float64_less_device_computes_in_float32_with_a_warning(monkeypatch):
    """A device without float64 (Apple's MPS): simulated on the CPU by
    making the shared helper report float32 as the widest type."""
    F, P, _ = _data()
    ref = _projector().fit(F, soft_labels=P)
    monkeypatch.setattr(
        skvmf_array_api, "max_float_dtype", lambda xp, device: xp.float32
    )
    Ft = torch.as_tensor(F, dtype=torch.float32)
    with sklearn.config_context(array_api_dispatch=True):
        with pytest.warns(UserWarning, match="no float64.*float32"):
            est = _projector().fit(Ft, soft_labels=torch.as_tensor(P))
        proba = est.predict_proba(Ft)
    for name in _ARRAYS:
        assert getattr(est, name).dtype == torch.float32
    assert proba.dtype == torch.float32
    # float32 arithmetic over 60 steps: the fit is the same one, roughly
    _assert_close(proba, ref.predict_proba(F), rtol=0, atol=1e-3)


def test_device_parameter_applies_to_numpy_input_only():
    """With dispatch on, X's device decides: a tensor on the CPU is fitted
    there whatever ``device`` says (even a device this machine lacks)."""
    F, _, y = _data()
    est = _projector(max_iter=5, device="cuda:7")
    with sklearn.config_context(array_api_dispatch=True):
        est.fit(torch.as_tensor(F), y)
        with pytest.raises(ValueError, match="CUDA is not available"):
            clone(est).fit(F, y)  # numpy input: the parameter applies
    assert est.components_.device == torch.device("cpu")


def test_bad_tensor_input_is_a_value_error_naming_it():
    F, P, y = _data(n=12)
    Ft = torch.as_tensor(F)
    with sklearn.config_context(array_api_dispatch=True):
        est = _projector(max_iter=2)
        with pytest.raises(ValueError, match="Complex data not supported"):
            est.fit(Ft.to(torch.complex128), y)
        with pytest.raises(ValueError, match="NaN"):
            est.fit(Ft.index_fill(0, torch.tensor([3]), torch.nan), y)
        with pytest.raises(ValueError, match="FeatureSet.sample must be real"):
            est.fit(FeatureSet(sample=Ft.to(torch.complex128), soft_labels=P))
        with pytest.raises(ValueError, match=r"y must be 1-D.*\(12, 1\)"):
            est.fit(Ft, torch.as_tensor(y)[:, None])
        with pytest.raises(ValueError, match=r"single class \(0\)"):
            est.fit(Ft, torch.zeros(12, dtype=torch.int64))
        with pytest.raises(ValueError, match="soft_labels has 11 rows"):
            est.fit(Ft, soft_labels=torch.as_tensor(P[:11]))
        with pytest.raises(ValueError, match="init must have shape"):
            est.set_params(init=torch.zeros(3, 5)).fit(Ft, y)


_BAD_SOFT_LABELS = {
    "logits": [[0.5, 0.5], [2.5, -1.0]],
    "sum": [[0.5, 0.5], [0.4, 0.5]],
    "nan": [[0.5, 0.5], [np.nan, 0.5]],
    "one column": [[1.0], [1.0]],
    "1-D": [0.5, 0.5],
}


@pytest.mark.parametrize("case", sorted(_BAD_SOFT_LABELS))
def test_tensor_soft_labels_are_refused_with_the_numpy_message(case):
    bad = np.asarray(_BAD_SOFT_LABELS[case], dtype=np.float64)
    with pytest.raises(ValueError) as numpy_error:
        check_soft_labels(bad, name="X.soft_labels")
    with pytest.raises(ValueError) as torch_error:
        _tensor_soft_labels(torch.as_tensor(bad), name="X.soft_labels")
    assert str(torch_error.value) == str(numpy_error.value)


@settings(max_examples=40, deadline=None)
@given(
    P=arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(2, 5)),
        elements=st.floats(-1e3, 1e3),
    ),
    from_logits=st.booleans(),
    temperature=st.sampled_from([0.25, 1.0, 4.0]),
)
def test_tensor_soft_labels_equal_numpy_ones(P, from_logits, temperature):
    """On valid input the tensor check returns numpy's probabilities (to
    rounding: 1e-15 absolute)."""
    if not from_logits:
        P = np.abs(P) + 1e-3
        P /= P.sum(axis=1, keepdims=True)
    expected = check_soft_labels(P, from_logits=from_logits, temperature=temperature)
    got = _tensor_soft_labels(
        torch.as_tensor(P),
        n_samples=P.shape[0],
        from_logits=from_logits,
        temperature=temperature,
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-15)


def test_without_dispatch_nothing_changes():
    """Dispatch off: tensors in, numpy out, the numpy fit's exact values."""
    F, P, y = _data()
    ref = _projector().fit(F, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        est = _projector().fit(torch.as_tensor(F), torch.as_tensor(y))
    for name in (*_ARRAYS, "classes_"):
        assert isinstance(getattr(est, name), np.ndarray)
        np.testing.assert_array_equal(getattr(est, name), getattr(ref, name))
    out = est.transform(torch.as_tensor(F))
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, ref.transform(F))
