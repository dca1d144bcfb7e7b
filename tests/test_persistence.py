"""Pickling device arrays (skvmf._persistence) and moving estimators
between devices and libraries (skvmf.devices).

Every comparison of values here is exact: a host copy and back, or a move
between libraries, copies the bits (float64 -> float32 on a device without
float64 is compared with the float32 cast of the original).
"""

import io
import pickle
import warnings

import array_api_strict
import joblib
import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.base import BaseEstimator
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_mixin_order

from skvmf import FeatureSet
from skvmf import _persistence as persistence
from skvmf._array_api import dispatch, to_numpy
from skvmf._persistence import DevicePicklingMixin
from skvmf.devices import DeviceUnavailableError, map_device, move_estimator
from skvmf.projection import SampleProjector

STRICT_DEVICE1 = array_api_strict.Device("device1")


class Fitted(DevicePicklingMixin, BaseEstimator):
    """A fitted estimator of every attribute kind the real ones hold."""

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fit(self, X=None, y=None):
        g = torch.Generator().manual_seed(0)
        self.coef_ = torch.randn(3, 4, generator=g, dtype=torch.float64)
        self.weights_ = torch.randn(5, generator=g).requires_grad_(True)
        self.half_ = torch.randn(2, 2, generator=g).to(torch.bfloat16)
        self.counts_ = torch.arange(6)
        self.per_layer_ = {
            "conv_4": torch.randn(2, 3, generator=g),
            "conv_5": np.arange(4.0),
        }
        self.curves_ = [torch.linspace(1, 0, 5), [0.5, 0.25]]
        self.host_ = np.eye(2)
        self.strict_ = array_api_strict.asarray(np.arange(3.0), device=STRICT_DEVICE1)
        self.n_iter_ = 7
        return self


class FittedInSklearn(Fitted):
    """The same, tagged with scikit-learn's version as its own are."""

    __module__ = "sklearn.skvmf_test_only"


def _assert_same(a, b):
    """Same library, device, dtype and bits."""
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.device == b.device and a.dtype == b.dtype
        assert a.requires_grad == b.requires_grad
        assert torch.equal(a.detach(), b.detach())
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        assert_array_equal(a, b)
    else:
        assert str(a.device) == str(b.device) and a.dtype == b.dtype
        assert_array_equal(to_numpy(a), to_numpy(b))


def _assert_estimators_equal(a, b):
    for name in ("coef_", "weights_", "half_", "counts_", "host_", "strict_"):
        _assert_same(getattr(a, name), getattr(b, name))
    for key in a.per_layer_:
        _assert_same(a.per_layer_[key], b.per_layer_[key])
    _assert_same(a.curves_[0], b.curves_[0])
    assert a.curves_[1] == b.curves_[1] and a.n_iter_ == b.n_iter_


def _round_trip(est):
    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    buffer.seek(0)
    return joblib.load(buffer)


def test_round_trip_rebuilds_every_device_array_on_its_device():
    est = Fitted().fit()
    _assert_estimators_equal(_round_trip(est), est)
    _assert_estimators_equal(pickle.loads(pickle.dumps(est)), est)


def test_state_holds_portable_records_and_leaves_the_estimator_unchanged():
    est = Fitted().fit()
    before = est.coef_
    state = est.__getstate__()
    for name in ("coef_", "weights_", "half_", "counts_", "strict_"):
        assert isinstance(state[name], persistence._DeviceRecord), name
    assert isinstance(state["per_layer_"]["conv_4"], persistence._DeviceRecord)
    assert state["per_layer_"]["conv_5"] is est.per_layer_["conv_5"]
    assert isinstance(state["curves_"][0], persistence._DeviceRecord)
    assert state["host_"] is est.host_  # numpy pickles as before
    record = state["strict_"]
    assert (record.namespace, record.device, record.dtype) == (
        "array_api_strict",
        "device1",
        "float64",
    )
    assert state["half_"].dtype == "bfloat16"  # kept although numpy lacks it
    # the estimator itself keeps its tensors
    assert est.coef_ is before and isinstance(est.per_layer_["conv_4"], torch.Tensor)


def test_mixin_cooperates_with_scikit_learn_version_tag():
    est = FittedInSklearn().fit()
    check_mixin_order("Fitted", est)
    state = est.__getstate__()
    assert "_sklearn_version" in state  # BaseEstimator's tag survived
    state["_sklearn_version"] = "0.1"
    fresh = FittedInSklearn.__new__(FittedInSklearn)
    with pytest.warns(InconsistentVersionWarning, match="0.1"):
        fresh.__setstate__(state)
    _assert_estimators_equal(fresh, est)
    assert "_sklearn_version" not in vars(fresh)


def _saved_on(monkeypatch, device, est=None):
    """The pickle of ``est`` as if its tensors had lived on ``device``."""
    original = persistence._record_device

    def pretend(array):
        return device if isinstance(array, torch.Tensor) else original(array)

    with monkeypatch.context() as m:
        m.setattr(persistence, "_record_device", pretend)
        buffer = io.BytesIO()
        joblib.dump(est if est is not None else Fitted().fit(), buffer)
    buffer.seek(0)
    return buffer


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_loading_without_the_device_names_it_and_the_ways_out(monkeypatch):
    saved = _saved_on(monkeypatch, "cuda:0")
    with pytest.raises(DeviceUnavailableError) as info:
        joblib.load(saved)
    message = str(info.value)
    assert "Fitted.coef_" in message and "'cuda:0'" in message
    assert "torch.cuda.is_available() is False" in message
    assert "move_estimator" in message and "map_device" in message
    assert isinstance(info.value, RuntimeError)


def test_map_device_loads_onto_another_device(monkeypatch):
    est = Fitted().fit()
    saved = _saved_on(monkeypatch, "cuda:7", est)
    with map_device("cpu"):
        loaded = joblib.load(saved)
    # array-api-strict's array goes to its host device, CPU_DEVICE
    assert loaded.strict_.device == array_api_strict.Device("CPU_DEVICE")
    assert_array_equal(to_numpy(loaded.strict_), to_numpy(est.strict_))
    loaded.strict_ = est.strict_
    _assert_estimators_equal(loaded, est)
    saved.seek(0)
    with map_device("cpu", namespace="numpy"):
        host = joblib.load(saved)
    assert isinstance(host.coef_, np.ndarray) and isinstance(host.strict_, np.ndarray)
    assert_array_equal(host.coef_, est.coef_.numpy())
    assert isinstance(host.per_layer_["conv_4"], np.ndarray)
    # outside the context, records go back to their own device
    saved.seek(0)
    with pytest.raises(DeviceUnavailableError, match="cuda:7"):
        joblib.load(saved)


def test_an_unknown_array_library_device_is_named():
    est = Fitted().fit()
    state = est.__getstate__()
    state["strict_"].device = "device9"
    fresh = Fitted.__new__(Fitted)
    with pytest.raises(DeviceUnavailableError, match="device9.*array_api_strict"):
        fresh.__setstate__(state)


# --------------------------------------------------------------------------
# move_estimator


def test_move_to_numpy_and_back_keeps_values_and_the_original():
    est = Fitted().fit()
    host = move_estimator(est, "cpu", namespace="numpy")
    assert host is not est and host.get_params() == est.get_params()
    assert isinstance(host.coef_, np.ndarray) and host.coef_.dtype == np.float64
    assert_array_equal(host.coef_, est.coef_.numpy())
    assert isinstance(host.per_layer_["conv_4"], np.ndarray)
    assert isinstance(host.curves_[0], np.ndarray) and host.curves_[1] == [0.5, 0.25]
    assert isinstance(host.strict_, np.ndarray) and host.n_iter_ == 7
    assert isinstance(est.coef_, torch.Tensor)  # the original is untouched
    back = move_estimator(host, "cpu", namespace="torch")
    assert isinstance(back.host_, torch.Tensor)
    assert torch.equal(back.coef_, est.coef_)


def test_move_to_another_library_device_and_float32_fallback():
    scaler = StandardScaler().fit(np.arange(12.0).reshape(6, 2))
    moved = move_estimator(scaler, "device1", namespace="array_api_strict")
    assert moved.mean_.device == STRICT_DEVICE1
    assert_array_equal(to_numpy(moved.scale_), scaler.scale_)
    assert moved.n_samples_seen_ == scaler.n_samples_seen_
    # default namespace: the estimator's own (array_api_strict here)
    again = move_estimator(moved, "CPU_DEVICE")
    assert again.mean_.device == array_api_strict.Device("CPU_DEVICE")
    narrow = move_estimator(scaler, "no_float64", namespace="array_api_strict")
    assert narrow.mean_.dtype == array_api_strict.float32
    assert_array_equal(to_numpy(narrow.mean_), scaler.mean_.astype(np.float32))


def test_move_a_pipeline_and_a_feature_set():
    X = np.arange(12.0).reshape(6, 2)
    pipe = Pipeline([("a", StandardScaler()), ("b", StandardScaler())]).fit(X)
    moved = move_estimator(pipe, "cpu", namespace="torch")
    assert all(isinstance(step.mean_, torch.Tensor) for _, step in moved.steps)
    assert isinstance(pipe[0].mean_, np.ndarray)
    fs = FeatureSet(
        logits=np.zeros((2, 3)),
        regions={"conv": np.ones((2, 4, 5))},
        grid=(2, 2),
        image_ids=np.array([3, 8]),
        classes=np.array(["a", "b", "c"]),
    )
    on_torch = move_estimator(fs, "cpu", namespace="torch")
    assert isinstance(on_torch.logits, torch.Tensor)
    assert isinstance(on_torch.soft_labels, torch.Tensor)
    assert isinstance(on_torch.regions["conv"], torch.Tensor)
    # host labels stay where they are
    assert_array_equal(on_torch.image_ids, [3, 8])
    assert list(on_torch.classes) == ["a", "b", "c"]
    back = move_estimator(on_torch, "cpu", namespace="numpy")
    assert_array_equal(back.regions["conv"], fs.regions["conv"])
    assert_array_equal(back.soft_labels, fs.soft_labels)


def test_move_refuses_absent_devices_and_unknown_libraries():
    scaler = StandardScaler().fit(np.eye(3))
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="cuda"):
            move_estimator(scaler, "cuda", namespace="torch")
    with pytest.raises(ValueError, match="namespace='torch'"):
        move_estimator(scaler, "cuda")  # numpy has no GPU
    with pytest.raises(ValueError, match="not an installed"):
        move_estimator(scaler, "cpu", namespace="no_such_array_library")
    with pytest.raises(DeviceUnavailableError, match="device9"):
        move_estimator(scaler, "device9", namespace="array_api_strict")


def test_moved_estimator_pickles_without_records():
    est = move_estimator(Fitted().fit(), "cpu", namespace="numpy")
    state = est.__getstate__()
    assert not any(isinstance(v, persistence._DeviceRecord) for v in state.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = _round_trip(est)
    assert_array_equal(loaded.coef_, est.coef_)


# --------------------------------------------------------------------------
# a real estimator fitted on tensors, with the mixin first among its bases


def _tensor_projector():
    """A SampleProjector fitted under dispatch on torch features, as the
    mixin will be used: ``class SampleProjector(DevicePicklingMixin, ...)``."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20, 3, generator=g, dtype=torch.float64)
    sample = torch.randn(20, 6, generator=g, dtype=torch.float64) + logits.repeat(1, 2)
    with dispatch():
        fs = FeatureSet(sample=sample, logits=logits)  # soft labels in torch
        est = PicklingProjector(max_iter=20, n_init=1, random_state=0).fit(fs)
        g_fit = est.transform(fs).g
    return est, fs, g_fit


PicklingProjector = SampleProjector  # the estimators carry the mixin themselves


def test_a_fitted_projector_on_tensors_round_trips_and_names_a_missing_device(
    monkeypatch,
):
    est, fs, g_fit = _tensor_projector()
    tensors = [k for k, v in vars(est).items() if isinstance(v, torch.Tensor)]
    assert tensors  # fitted attributes follow X
    loaded = _round_trip(est)
    for name in tensors:
        _assert_same(getattr(loaded, name), getattr(est, name))
    with dispatch():
        assert torch.equal(loaded.transform(fs).g, g_fit)
    if not torch.cuda.is_available():
        saved = _saved_on(monkeypatch, "cuda:0", est)
        with pytest.raises(DeviceUnavailableError, match="SampleProjector.*cuda:0"):
            joblib.load(saved)
