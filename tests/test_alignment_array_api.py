"""RegionalAligner under scikit-learn's Array API dispatch (SPEC 10).

scikit-learn's own array-API checks feed 2-D X, which the aligner refuses by
design (tests/test_alignment.py lists them as expected failures); these are
their FeatureSet (and 3-D array) equivalents: namespace, device and dtype of
every fitted array attribute and output, and values against the numpy path.

Tolerances: the dispatch path runs the same float32 torch kernels on the same
data with the same random streams as the numpy path; only the soft labels
are validated in torch (float64) instead of numpy (float64), so values agree
to float32 rounding. Measured: identical (0.0) on torch CPU and
array-api-strict; asserted with rtol=1e-5, atol=1e-6 to leave room for a
one-ulp difference in a soft label growing through two epochs of SGD.
"""

from contextlib import contextmanager

import joblib
import numpy as np
import pytest
import sklearn
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skvmf import _array_api, alignment
from skvmf._kernels.region_inputs import soft_labels_tensor
from skvmf._numerics.soft_labels import check_soft_labels
from skvmf.alignment import AlignerOutOfMemoryError, RegionalAligner
from skvmf.features import FeatureSet

xps = pytest.importorskip("array_api_strict")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RTOL, ATOL = 1e-5, 1e-6
KW = {"n_candidates": 6, "max_epochs": 2, "weight_steps": 2, "random_state": 0}
_ARRAYS = ("components_", "importance_weights_", "channel_weights_")


def _data(seed=0, N=16, R=4, K=6, d=3):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], N // 2)
    f = rng.normal(size=(N, R, K)).astype(np.float32)
    f[:, 0] += 2.0 * np.eye(K)[y]  # region 0 carries the class
    P = np.where(np.eye(2)[y] > 0, 0.8, 0.2)
    g = rng.normal(size=(N, d))
    return f, P, g


def _numpy_fit(f, P, g, layers=("a",), **kw):
    fs = FeatureSet(regions=dict.fromkeys(layers, f), soft_labels=P, g=g)
    return RegionalAligner(**{**KW, **kw}).fit(fs), fs


def _host(a):
    return _array_api.to_numpy(a)


def _assert_close_to_numpy(al, ref, layers=("a",)):
    for layer in layers:
        for attr in _ARRAYS:
            np.testing.assert_allclose(
                _host(getattr(al, attr)[layer]),
                getattr(ref, attr)[layer],
                rtol=RTOL,
                atol=ATOL,
                err_msg=f"{attr}[{layer!r}]",
            )
        np.testing.assert_allclose(
            al.loss_curve_[layer], ref.loss_curve_[layer], rtol=RTOL
        )
        np.testing.assert_allclose(
            al.importance_loss_curve_[layer],
            ref.importance_loss_curve_[layer],
            rtol=RTOL,
        )
        assert al.scales_[layer] == pytest.approx(ref.scales_[layer], rel=RTOL)


def _refuse(*args, **kwargs):
    raise AssertionError("a tensor was copied to the host")


@contextmanager
def no_host_copy(*, cpu=False):
    """Within: every way of turning a tensor into numpy raises (and, with
    ``cpu``, ``Tensor.cpu``, which no step of the aligner calls)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.Tensor, "__array__", _refuse)
        mp.setattr(torch.Tensor, "numpy", _refuse)
        if cpu:
            mp.setattr(torch.Tensor, "cpu", _refuse)
        yield


# ---------------------------------------------------------------------------
# torch
# ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_featureset_stays_torch_and_equals_numpy(dtype):
    f, P, g = _data()
    ref, fs_np = _numpy_fit(f, P, g, layers=("a", "b"))
    h_ref = ref.transform(fs_np).h
    losses_ref = ref.held_out_losses(fs_np)
    with sklearn.config_context(array_api_dispatch=True):
        fs = FeatureSet(
            regions={"a": torch.tensor(f, dtype=dtype), "b": torch.tensor(f)},
            soft_labels=torch.tensor(P, dtype=dtype),
            g=torch.tensor(g, dtype=dtype),
        )
        with no_host_copy(cpu=True):
            al = RegionalAligner(**KW).fit(fs)
            out = al.transform(fs)
            losses = al.held_out_losses(fs)
            h_array = RegionalAligner("a", **KW).fit_transform(
                fs.regions["a"], soft_labels=fs.soft_labels, g=fs.g
            )
    for layer in ("a", "b"):
        for attr in _ARRAYS:
            value = getattr(al, attr)[layer]
            assert isinstance(value, torch.Tensor), attr
            assert value.device.type == "cpu" and value.dtype == torch.float32
            assert not value.requires_grad
        h = out.h[layer]
        assert isinstance(h, torch.Tensor) and h.dtype == torch.float32
        np.testing.assert_allclose(h.numpy(), h_ref[layer], rtol=RTOL, atol=ATOL)
        # the logs stay numpy; the held-out losses are Python floats
        assert isinstance(al.loss_curve_[layer], np.ndarray)
        assert isinstance(losses[layer]["sim"], float)
        assert losses[layer] == pytest.approx(losses_ref[layer], rel=RTOL)
    _assert_close_to_numpy(al, ref, layers=("a", "b"))
    assert isinstance(h_array, torch.Tensor)
    np.testing.assert_allclose(h_array.numpy(), h_ref["a"], rtol=RTOL, atol=ATOL)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_soft_labels_and_g_follow_X():
    # numpy soft labels and g (and list ones) next to torch regions: moved to
    # the regions' namespace and device, same fit as all-torch input
    f, P, g = _data(1)
    ref, _ = _numpy_fit(f, P, g)
    # (a FeatureSet built under dispatch refuses mixed namespaces)
    mixed = FeatureSet(regions={"a": torch.tensor(f)}, soft_labels=P, g=g)
    with sklearn.config_context(array_api_dispatch=True):
        al = RegionalAligner(**KW).fit(mixed)
        lists = RegionalAligner("a", **KW).fit(
            torch.tensor(f), soft_labels=P.tolist(), g=g.tolist()
        )
    assert isinstance(al.components_["a"], torch.Tensor)
    _assert_close_to_numpy(al, ref)
    np.testing.assert_allclose(
        lists.components_["a"].numpy(), ref.components_["a"], rtol=RTOL, atol=ATOL
    )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_torch_logits_equal_numpy_logits(rng):
    f, _, g = _data(2)
    logits = rng.normal(size=(16, 2)) * 3
    ref = RegionalAligner(from_logits=True, **KW).fit(f, soft_labels=logits, g=g)
    with sklearn.config_context(array_api_dispatch=True):
        al = RegionalAligner(from_logits=True, **KW).fit(
            torch.tensor(f), soft_labels=torch.tensor(logits), g=torch.tensor(g)
        )
    np.testing.assert_allclose(
        al.components_["input"].numpy(),
        ref.components_["input"],
        rtol=RTOL,
        atol=ATOL,
    )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_dispatch_off_keeps_numpy_attributes():
    # without dispatch nothing changes: tensors in, numpy attributes (and a
    # tensor h for tensor input, as before)
    f, P, g = _data()
    al = RegionalAligner(**KW).fit(
        torch.tensor(f), soft_labels=torch.tensor(P), g=torch.tensor(g)
    )
    for attr in _ARRAYS:
        assert isinstance(getattr(al, attr)["input"], np.ndarray)
    assert isinstance(al.transform(f), np.ndarray)
    assert isinstance(al.transform(torch.tensor(f)), torch.Tensor)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_n_jobs_with_tensors_equals_sequential():
    # the parallel path with tensors (threads here: worker processes cost
    # tens of seconds to start on a busy two-core machine; the process
    # path is tests/test_alignment.py::test_parallel_layers_equal_sequential_fit)
    f, P, g = _data(3)
    fs = FeatureSet(
        regions={"a": torch.tensor(f), "b": torch.tensor(f[:, ::-1].copy())},
        soft_labels=torch.tensor(P),
        g=torch.tensor(g),
    )
    with sklearn.config_context(array_api_dispatch=True):
        seq = RegionalAligner(**KW).fit(fs)
        with joblib.parallel_config(backend="threading"):
            par = RegionalAligner(n_jobs=2, **KW).fit(fs)
    for layer in ("a", "b"):
        for attr in _ARRAYS:
            assert isinstance(getattr(par, attr)[layer], torch.Tensor)
            torch.testing.assert_close(
                getattr(par, attr)[layer], getattr(seq, attr)[layer], rtol=0, atol=0
            )


# ---------------------------------------------------------------------------
# array-api-strict: computed in torch on the CPU, returned on X's device
# ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("device_name", ["CPU_DEVICE", "device1"])
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_array_api_strict_arrays(device_name, dtype_name):
    f, P, g = _data(4)
    ref = RegionalAligner(**KW).fit(f, soft_labels=P, g=g)
    new = f[::2] * 1.5
    device = xps.Device(device_name)
    dtype = getattr(xps, dtype_name)

    def strict(a):
        return xps.asarray(np.asarray(a), dtype=dtype, device=device)

    with sklearn.config_context(array_api_dispatch=True):
        al = RegionalAligner(**KW).fit(strict(f), soft_labels=strict(P), g=strict(g))
        h = al.transform(strict(new))
    for attr in _ARRAYS:
        value = getattr(al, attr)["input"]
        assert type(value) is type(h) and value.device == device, attr
        assert value.dtype == xps.float32
    assert h.device == device and h.dtype == xps.float32
    np.testing.assert_allclose(_host(h), ref.transform(new), rtol=RTOL, atol=ATOL)
    for attr in _ARRAYS:
        np.testing.assert_allclose(
            _host(getattr(al, attr)["input"]),
            getattr(ref, attr)["input"],
            rtol=RTOL,
            atol=ATOL,
        )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("device_name", ["CPU_DEVICE", "device1"])
def test_array_api_strict_featureset(device_name):
    f, P, g = _data(5)
    ref, fs_np = _numpy_fit(f, P, g)
    device = xps.Device(device_name)
    with sklearn.config_context(array_api_dispatch=True):
        fs = FeatureSet(
            regions={"a": xps.asarray(f, device=device)},
            soft_labels=xps.asarray(P, device=device),
            g=xps.asarray(g, device=device),
        )
        al = RegionalAligner(**KW).fit(fs)
        h = al.transform(fs).h["a"]
        losses = al.held_out_losses(fs)
    assert h.device == device and h.dtype == xps.float32
    np.testing.assert_allclose(
        _host(h), ref.transform(fs_np).h["a"], rtol=RTOL, atol=ATOL
    )
    assert losses["a"] == pytest.approx(ref.held_out_losses(fs_np)["a"], rel=RTOL)
    _assert_close_to_numpy(al, ref)


# ---------------------------------------------------------------------------
# namespace and device consistency
# ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_transform_in_another_namespace_or_device_is_refused():
    f, P, g = _data()
    d1 = xps.Device("device1")
    with sklearn.config_context(array_api_dispatch=True):
        on_torch = RegionalAligner(**KW).fit(
            torch.tensor(f), soft_labels=P, g=torch.tensor(g)
        )
        with pytest.raises(ValueError, match="got numpy .* fitted on torch"):
            on_torch.transform(f)
        with pytest.raises(ValueError, match="got array_api_strict .* fitted on torch"):
            on_torch.transform(xps.asarray(f, device=d1))
        fs = FeatureSet(regions={"input": f}, soft_labels=P, g=g)
        with pytest.raises(ValueError, match="held_out_losses.*fitted on torch"):
            on_torch.held_out_losses(fs)
        on_numpy = RegionalAligner(**KW).fit(f, soft_labels=P, g=g)
        with pytest.raises(ValueError, match="got torch arrays on device cpu.*numpy"):
            on_numpy.transform(torch.tensor(f))
        strict_d1 = RegionalAligner(**KW).fit(
            xps.asarray(f, device=d1), soft_labels=P, g=g
        )
        with pytest.raises(ValueError, match="CPU_DEVICE.*device1"):
            strict_d1.transform(xps.asarray(f))
        # the fit's own namespace and device are fine
        assert isinstance(on_numpy.transform(f), np.ndarray)
    # without dispatch the fitted tensors still embed numpy input
    assert isinstance(on_torch.transform(f), np.ndarray)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_float64_missing_on_device_falls_back_with_warning(monkeypatch):
    # a device without float64 (Apple's MPS): the soft labels, scale and loss
    # sums are float32, with a warning; results stay close to the numpy path
    f, P, g = _data(6)
    ref, _ = _numpy_fit(f, P, g)
    monkeypatch.setattr(_array_api, "max_float_dtype", lambda xp, device: xp.float32)
    fs = FeatureSet(
        regions={"a": torch.tensor(f)}, soft_labels=torch.tensor(P), g=torch.tensor(g)
    )
    dispatch = sklearn.config_context(array_api_dispatch=True)
    with dispatch, pytest.warns(UserWarning, match="no float64"):
        al = RegionalAligner(**KW).fit(fs)
    # float32 soft labels and loss sums: measured identical attributes and
    # loss curves 1.4e-7 apart (relative); 1e-4 allowed
    np.testing.assert_allclose(
        al.components_["a"].numpy(), ref.components_["a"], rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(al.loss_curve_["a"], ref.loss_curve_["a"], rtol=1e-4)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "change, match",
    [
        ({"soft_labels": lambda P: P * 5}, "probabilities"),
        ({"soft_labels": lambda P: P[:, :1]}, "at least 2 columns"),
        ({"soft_labels": lambda P: P[:-1]}, "same number of images"),
        ({"g": lambda g: g[:, :1]}, "g must have shape"),
        ({"g": lambda g: np.where(np.arange(3) == 1, np.nan, g)}, "g contains NaN"),
        ({"f": lambda f: f[:, :1]}, "nothing to align"),
        ({"f": lambda f: np.where(np.arange(6) == 2, np.inf, f)}, "NaN or infinite"),
        ({"f": lambda f: f.astype(np.complex64)}, "real numbers"),
    ],
)
def test_tensor_input_errors_name_the_argument(change, match):
    f, P, g = _data()
    data = {"f": f, "soft_labels": P, "g": g}
    for key, fn in change.items():
        data[key] = fn(data[key])
    dispatch = sklearn.config_context(array_api_dispatch=True)
    with dispatch, pytest.raises(ValueError, match=match):
        RegionalAligner(**KW).fit(
            torch.tensor(data["f"]),
            soft_labels=torch.tensor(data["soft_labels"]),
            g=torch.tensor(data["g"]),
        )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_classes=st.integers(2, 6),
    from_logits=st.booleans(),
    temperature=st.floats(0.05, 20.0),
    scale=st.floats(1e-3, 1e3),
)
def test_soft_labels_tensor_equals_numpy(
    seed, n_classes, from_logits, temperature, scale
):
    # the on-device validation gives check_soft_labels' probabilities
    # (float64; 1e-12 relative, the two softmaxes sum in different orders)
    rng = np.random.default_rng(seed)
    if from_logits:
        P = rng.normal(size=(5, n_classes)) * scale
    else:
        P = rng.dirichlet(np.ones(n_classes), size=5)
        P = P + rng.uniform(-1e-7, 1e-7, size=P.shape) * (P > 1e-6)
    kw = {"from_logits": from_logits, "temperature": temperature, "name": "p"}
    expected = check_soft_labels(P, n_samples=5, **kw)
    with sklearn.config_context(array_api_dispatch=True):  # the aligner's tensor path
        got = soft_labels_tensor(
            torch.tensor(P), n_samples=5, dtype=torch.float64, **kw
        )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-300)


# ---------------------------------------------------------------------------
# running out of device memory
# ---------------------------------------------------------------------------
def _oom(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dispatch", [False, True])
def test_out_of_memory_says_what_was_tried_and_what_fits(dispatch, monkeypatch):
    N, R, K, n = 64, 9, 128, 20
    rng = np.random.default_rng(0)
    f = rng.normal(size=(N, R, K)).astype(np.float32)
    P = rng.dirichlet(np.ones(3), size=N)
    g = rng.normal(size=(N, 3))
    if dispatch:
        f, P, g = torch.tensor(f), torch.tensor(P), torch.tensor(g)
    monkeypatch.setattr(alignment, "fit_importance", _oom)
    al = RegionalAligner(n_candidates=n, max_epochs=1, weight_steps=1)
    context = sklearn.config_context(array_api_dispatch=dispatch)
    with context, pytest.raises(torch.OutOfMemoryError) as info:
        al.fit(f, soft_labels=P, g=g)
    err = info.value
    assert isinstance(err, AlignerOutOfMemoryError)
    assert isinstance(err.__cause__, torch.OutOfMemoryError)
    text = str(err)
    assert f"N={N} images, R={R} regions, K={K} channels, n_candidates={n}" in text
    per_anchor = alignment._mk.bytes_per_anchor_importance(n, R, K, 4)
    tried = min(N, alignment._mk.step_budget(torch.device("cpu")) // per_anchor)
    assert f"chunks of {tried} anchors x {per_anchor} bytes" in text
    assert f"{tried * per_anchor} bytes" in text and "Tried to allocate" in text
    # the advice: a chunk_size smaller than the one that failed, that fits
    # the CPU's working budget
    advised = int(text.split("chunk_size=")[1].split(" ")[0])
    assert 1 <= advised < tried
    assert advised * per_anchor <= alignment._mk.memory_budget(torch.device("cpu"))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dispatch", [False, True])
def test_out_of_memory_in_transform(dispatch, monkeypatch):
    f, P, g = _data()
    if dispatch:
        f, P, g = torch.tensor(f), torch.tensor(P), torch.tensor(g)
    with sklearn.config_context(array_api_dispatch=dispatch):
        al = RegionalAligner(**KW).fit(f, soft_labels=P, g=g)
        monkeypatch.setattr(alignment._mk, "normalize_channels", _oom)
        with pytest.raises(AlignerOutOfMemoryError, match="chunk_size=8") as info:
            al.transform(f)
    text = str(info.value)
    assert "RegionalAligner.transform" in text and "N=16 images, R=4" in text
    # all 16 images in one chunk (the budget holds them), half of them fit
    assert f"chunks of 16 images x {4 * 4 * (2 * 6 + 3)} bytes" in text


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_out_of_memory_in_a_kernel_keeps_its_advice(monkeypatch):
    # the importance kernel measures its own chunk; the aligner adds the
    # layer and its sizes, and keeps the kernel's error as the cause
    kernel_error = getattr(alignment._mk, "KernelOutOfMemoryError", None)
    if kernel_error is None:
        pytest.skip("the kernels have no out-of-memory error of their own")
    f, P, g = _data()
    monkeypatch.setattr(alignment._mk, "ImportanceProblem", _oom)
    with (
        sklearn.config_context(array_api_dispatch=True),
        pytest.raises(AlignerOutOfMemoryError) as info,
    ):
        RegionalAligner(**KW).fit(
            torch.tensor(f), soft_labels=torch.tensor(P), g=torch.tensor(g)
        )
    assert isinstance(info.value.__cause__, kernel_error)
    text = str(info.value)
    assert "at layer 'input' (N=16 images, R=4 regions, K=6 channels" in text
    assert "chunk_size" in text and "Tried to allocate" in text


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_matmul_precision_is_passed_to_the_kernels():
    f, P, g = _data(7)
    ref = RegionalAligner(**KW).fit(f, soft_labels=P, g=g)
    # the CPU has no TF32: "tf32" is float32 there, bit for bit
    tf32 = RegionalAligner(matmul_precision="tf32", **KW).fit(f, soft_labels=P, g=g)
    for attr in _ARRAYS:
        np.testing.assert_array_equal(
            getattr(tf32, attr)["input"], getattr(ref, attr)["input"]
        )
    # bfloat16 operands change the importance weights' scores, and do so the
    # same way on the numpy and the dispatch paths
    bf = RegionalAligner(matmul_precision="bfloat16", **KW).fit(f, soft_labels=P, g=g)
    assert not np.array_equal(
        bf.channel_weights_["input"], ref.channel_weights_["input"]
    )
    with sklearn.config_context(array_api_dispatch=True):
        bf_t = RegionalAligner(matmul_precision="bfloat16", **KW).fit(
            torch.tensor(f), soft_labels=torch.tensor(P), g=torch.tensor(g)
        )
    for attr in _ARRAYS:
        np.testing.assert_allclose(
            getattr(bf_t, attr)["input"].numpy(),
            getattr(bf, attr)["input"],
            rtol=RTOL,
            atol=ATOL,
        )
    with pytest.raises(ValueError, match="matmul_precision"):
        RegionalAligner(matmul_precision="float16").fit(f, soft_labels=P, g=g)


def test_tags_declare_array_api_support():
    assert RegionalAligner().__sklearn_tags__().array_api_support is True


# ---------------------------------------------------------------------------
# a real accelerator (runs where one is present)
# ---------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cuda_featureset_stays_on_device():
    f, P, g = _data()
    ref, fs_np = _numpy_fit(f, P, g)
    dev = torch.device("cuda")
    fs = FeatureSet(
        regions={"a": torch.tensor(f, device=dev)},
        soft_labels=torch.tensor(P, device=dev),
        g=torch.tensor(g, device=dev),
    )
    with sklearn.config_context(array_api_dispatch=True), no_host_copy(cpu=True):
        al = RegionalAligner(**KW).fit(fs)
        h = al.transform(fs).h["a"]
        losses = al.held_out_losses(fs)
    for attr in _ARRAYS:
        assert getattr(al, attr)["a"].device.type == "cuda"
    assert h.device.type == "cuda" and h.dtype == torch.float32
    # GPU kernels sum in other orders: float32 rounding grows through SGD
    np.testing.assert_allclose(
        h.cpu().numpy(), ref.transform(fs_np).h["a"], rtol=1e-3, atol=1e-4
    )
    assert losses["a"] == pytest.approx(ref.held_out_losses(fs_np)["a"], rel=1e-3)
