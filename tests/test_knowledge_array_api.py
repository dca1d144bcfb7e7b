"""KnowledgePointCounter under scikit-learn's Array API dispatch (issue 16).

scikit-learn's ``check_array_api_input`` feeds 2-D X, which the counter
cannot take (it needs embedded regions and category directions, see
tests/test_knowledge.py), so its equivalent is here, with FeatureSets: for
numpy, array-api-strict (both devices) and torch on the CPU, in float32 and
float64, every fitted array attribute and every output is checked for
namespace, device and dtype, and its values against the numpy path (the
same estimator fitted without dispatch on the same values).

Tolerance: both paths compute in float64 (the numpy path always casts to
float64; the dispatch path uses float64 wherever the device has it), from
the same input values, so attributes and posteriors agree to 1e-12
absolute (measured <= 1.8e-15; the revised kappa of ``skvmf._numerics.xp_vmf`` equals
``skvmf.vmf.revised_kappa`` to ~1e-12 relative), and the discrete outputs
(masks, labels, votes, counts, scores) are equal.
"""

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import cross_val_score

from skvmf import _array_api
from skvmf._array_api import get_namespace_and_device, namespace_name, to_numpy
from skvmf.features import FeatureSet
from skvmf.knowledge import KnowledgePointCounter

torch = pytest.importorskip("torch")
strict = pytest.importorskip("array_api_strict")

ATOL = 1e-12
MU = np.eye(3)

COMBOS = [
    ("numpy", None),
    ("array_api_strict", "CPU_DEVICE"),
    ("array_api_strict", "device1"),
    ("torch", "cpu"),
]
DTYPES = ["float32", "float64"]
PARAMS = [
    {},
    {"kappa": 7.5, "tau": 0.6},
    {"prior": True, "sigma": 0.5, "layer": "early"},
    {"normalize_strength": False, "tau": 0.8},
]


def _maker(namespace, device):
    if namespace == "numpy":
        return np.asarray
    if namespace == "torch":
        return lambda a: torch.asarray(a, device=device)
    dev = strict.Device(device)
    return lambda a: strict.asarray(a, device=dev)


def _where(a):
    with sklearn.config_context(array_api_dispatch=True):
        xp, _, dev = get_namespace_and_device(a)
    name = "numpy" if _array_api.is_numpy(xp) else namespace_name(xp)
    return name, str(dev)


def _data(dtype, n=24, n_regions=9, seed=0):
    """Images of 3 classes: strong regions along the class direction, one
    along a wrong class, weak noise elsewhere (as in test_knowledge.py)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    h = 0.3 * rng.normal(size=(n, n_regions, 3))
    for i in range(n):
        k = rng.integers(2, 5)
        h[i, :k] += 3.0 * MU[y[i]]
        h[i, k] += 3.0 * MU[(y[i] + 1) % 3]
    early = 0.5 * h + 0.5 * rng.normal(size=h.shape)
    h = {"early": early.astype(dtype), "late": h.astype(dtype)}
    directions = (MU + 0.1 * rng.normal(size=(3, 3))).astype(dtype)
    priors = np.array([0.2, 0.3, 0.5], dtype=dtype)
    return h, directions, priors, y


def _pair(namespace, device, dtype, **extra):
    """The numpy FeatureSet and the same values in the namespace."""
    h, directions, priors, y = _data(dtype)
    make = _maker(namespace, device)
    ref = FeatureSet(h=h, directions=directions, priors=priors, **extra)
    with sklearn.config_context(array_api_dispatch=True):
        fs = FeatureSet(
            h={k: make(v) for k, v in h.items()},
            directions=make(directions),
            priors=make(priors),
            **extra,
        )
    return ref, fs, y, make


def _assert_like(got, want, where, dtype, name):
    """``got`` is in ``where`` (namespace, device), has the dtype ``dtype``
    (a numpy dtype name) and the values ``want``."""
    assert _where(got) == where, name
    host = np.asarray(to_numpy(got))
    assert host.dtype == np.dtype(dtype), (name, host.dtype)
    assert host.shape == np.shape(want), name
    if np.issubdtype(host.dtype, np.floating):
        np.testing.assert_allclose(host, want, atol=ATOL, rtol=0, err_msg=name)
    else:
        np.testing.assert_array_equal(host, want, err_msg=name)


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: "-".join(map(str, p)))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("namespace, device", COMBOS)
def test_array_api_input(namespace, device, dtype, params):
    """Our ``check_array_api_input`` with FeatureSets (values checked)."""
    ref_fs, fs, y, make = _pair(namespace, device, dtype)
    ref = KnowledgePointCounter(**params).fit(ref_fs, y)
    with sklearn.config_context(array_api_dispatch=True):
        est = KnowledgePointCounter(**params).fit(fs, make(y))
        where = _where(fs.h["late"])
        # fitted attributes: float64 as on the numpy path (the devices here
        # all have float64), in X's namespace and on its device
        _assert_like(est.directions_, ref.directions_, where, "float64", "mu")
        if params.get("prior"):
            _assert_like(est.priors_, ref.priors_, where, "float64", "priors")
        _assert_like(est.classes_, ref.classes_, where, "int64", "classes_")
        assert est.no_point_label_ == ref.no_point_label_ == -1
        assert est.layers_ == ref.layers_
        for layer, scale in ref.scales_.items():
            assert isinstance(est.scales_[layer], float)
            assert est.scales_[layer] == pytest.approx(scale, rel=1e-13)
        # outputs
        for layer in ("early", "late"):
            post = est.region_posteriors(fs, layer=layer)
            want = ref.region_posteriors(ref_fs, layer=layer)
            _assert_like(post, want, where, "float64", f"posteriors {layer}")
            points, labels = est.masks(fs, layer=layer)
            ref_points, ref_labels = ref.masks(ref_fs, layer=layer)
            _assert_like(points, ref_points, where, "bool", f"points {layer}")
            _assert_like(labels, ref_labels, where, "int64", f"labels {layer}")
        _assert_like(est.predict(fs), ref.predict(ref_fs), where, "int64", "predict")
        assert est.count(fs, make(y)) == ref.count(ref_fs, y)
        for labels in (make(y), y, list(y)):
            score = est.score(fs, labels)
            assert isinstance(score, float)
            assert score == ref.score(ref_fs, y)
        weights = np.linspace(0.5, 2.0, len(y))
        score = est.score(fs, make(y), sample_weight=make(weights))
        assert isinstance(score, float)
        assert score == pytest.approx(
            ref.score(ref_fs, y, sample_weight=weights), abs=ATOL
        )


def _forbid_host_copies(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was copied to the host")

    monkeypatch.setattr(torch.Tensor, "__array__", refuse)
    monkeypatch.setattr(torch.Tensor, "numpy", refuse)
    monkeypatch.setattr(torch.Tensor, "cpu", refuse)


@pytest.mark.parametrize("params", PARAMS[:3], ids=lambda p: "-".join(map(str, p)))
def test_no_host_copy_of_torch_features(monkeypatch, params):
    _, fs, y, _ = _pair("torch", "cpu", "float32")
    y = torch.asarray(y)
    weights = torch.ones(len(y))
    with sklearn.config_context(array_api_dispatch=True):
        est = KnowledgePointCounter(**params).fit(fs, y)  # kappa table: host
        est.predict(fs)  # warm every cache before forbidding copies
        _forbid_host_copies(monkeypatch)
        est = KnowledgePointCounter(**params).fit(fs, y)
        est.predict(fs)
        est.region_posteriors(fs)
        est.masks(fs)
        est.count(fs, y)
        est.score(fs, y, sample_weight=weights)


def test_fit_and_predict_in_different_namespaces_or_devices_are_refused():
    _, fs_torch, y, _ = _pair("torch", "cpu", "float64")
    _, fs_cpu, _, _ = _pair("array_api_strict", "CPU_DEVICE", "float64")
    _, fs_dev1, _, _ = _pair("array_api_strict", "device1", "float64")
    ref_fs, _, _, _ = _pair("numpy", None, "float64")
    with sklearn.config_context(array_api_dispatch=True):
        est = KnowledgePointCounter().fit(fs_torch, y)
        for method in ("predict", "region_posteriors", "masks"):
            with pytest.raises(ValueError, match=r"\(.*torch\).*\(array_api_strict"):
                getattr(est, method)(fs_cpu)
        with pytest.raises(ValueError, match=r"torch.*numpy"):
            est.score(ref_fs, y)
        with pytest.raises(ValueError, match=r"torch.*array_api_strict"):
            est.count(fs_cpu, y)
        est = KnowledgePointCounter().fit(fs_cpu, y)
        with pytest.raises(ValueError, match="same device"):
            est.predict(fs_dev1)
        # numpy fit, torch predict
        est = KnowledgePointCounter().fit(ref_fs, y)
        with pytest.raises(ValueError, match=r"numpy.*torch"):
            est.predict(fs_torch)
        est = KnowledgePointCounter().fit(fs_torch, y)
    # fitted on torch with dispatch on, used with dispatch off
    with pytest.raises(ValueError, match="fitted on torch.*now off"):
        est.predict(fs_torch)


@pytest.mark.parametrize("namespace, device", COMBOS[1:])
def test_mixed_inputs_follow_x(namespace, device):
    """Directions, priors, labels and weights of numpy (or lists) follow h."""
    h, directions, priors, y = _data("float64")
    make = _maker(namespace, device)
    ref = KnowledgePointCounter(prior=True).fit(
        h, y, directions=directions, priors=priors
    )
    with sklearn.config_context(array_api_dispatch=True):
        hx = {k: make(v) for k, v in h.items()}
        est = KnowledgePointCounter(prior=True).fit(
            hx, list(y), directions=directions.tolist(), priors=priors
        )
        where = _where(hx["late"])
        _assert_like(est.directions_, ref.directions_, where, "float64", "mu")
        _assert_like(est.priors_, ref.priors_, where, "float64", "priors")
        assert est.score(hx, y, sample_weight=np.ones(len(y))) == ref.score(h, y)


def test_text_classes_stay_on_the_host():
    ref_fs, fs, y, make = _pair(
        "array_api_strict", "device1", "float64", classes=["a", "b", "c"]
    )
    names = np.array(["a", "b", "c"])[y]
    ref = KnowledgePointCounter(tau=0.9, layer="early").fit(ref_fs, names)
    with sklearn.config_context(array_api_dispatch=True):
        est = KnowledgePointCounter(tau=0.9, layer="early").fit(fs, names)
        assert isinstance(est.classes_, np.ndarray)
        pred = est.predict(fs)
        assert isinstance(pred, np.ndarray) and pred.dtype == object
        np.testing.assert_array_equal(pred, ref.predict(ref_fs))
        assert None in list(pred)  # some image without points
        assert est.score(fs, names) == ref.score(ref_fs, names)
        assert est.count(fs, names) == ref.count(ref_fs, names)
        _, labels = est.masks(fs)
        assert isinstance(labels, np.ndarray)


def test_float64_less_device_falls_back_to_float32(monkeypatch):
    # a device without float64 (Apple's MPS) is simulated by the one
    # function that decides it; the results are then float32, with a warning
    ref_fs, fs, y, make = _pair("torch", "cpu", "float32")
    ref = KnowledgePointCounter().fit(ref_fs, y)
    monkeypatch.setattr(_array_api, "max_float_dtype", lambda xp, device: xp.float32)
    with sklearn.config_context(array_api_dispatch=True):
        with pytest.warns(UserWarning, match="no float64.*float32"):
            est = KnowledgePointCounter().fit(fs, y)
        with pytest.warns(UserWarning, match="no float64"):
            post = est.region_posteriors(fs)
    assert post.dtype == torch.float32 and est.directions_.dtype == torch.float32
    # float32 arithmetic: posteriors within 1e-5 of the float64 path's
    np.testing.assert_allclose(
        post.numpy(), ref.region_posteriors(ref_fs), atol=1e-5, rtol=0
    )


def test_cross_validation_under_dispatch_matches_numpy():
    ref_fs, fs, y, make = _pair("array_api_strict", "device1", "float64")
    want = cross_val_score(KnowledgePointCounter(tau=0.5), ref_fs, y, cv=3)
    with sklearn.config_context(array_api_dispatch=True):
        got = cross_val_score(
            KnowledgePointCounter(tau=0.5), fs, y, cv=3, error_score="raise"
        )
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------
# bad weights and empty input (issue 18), on both paths
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dispatch", [False, True])
@pytest.mark.parametrize(
    "weights, match",
    [
        ("nan", "sample_weight must be finite"),
        ("inf", "sample_weight must be finite"),
        ("negative", "sample_weight must be non-negative"),
        ("zeros", "sample_weight sums to zero"),
        ("short", r"sample_weight must have shape \(24,\)"),
        ("complex", "sample_weight must be real"),
    ],
)
def test_bad_sample_weight_is_refused_by_name(dispatch, weights, match):
    namespace, device = ("torch", "cpu") if dispatch else ("numpy", None)
    _, fs, y, make = _pair(namespace, device, "float64")
    w = np.ones(len(y))
    if weights == "nan":
        w[3] = np.nan
    elif weights == "inf":
        w[0] = np.inf
    elif weights == "negative":
        w[5] = -0.5
    elif weights == "zeros":
        w[:] = 0.0
    elif weights == "short":
        w = w[:-1]
    else:
        w = w + 0j
    with sklearn.config_context(array_api_dispatch=dispatch):
        est = KnowledgePointCounter().fit(fs, y)
        with pytest.raises(ValueError, match=match):
            est.score(fs, y, sample_weight=w if weights == "complex" else make(w))


def test_huge_weights_do_not_overflow():
    ref_fs, fs, y, make = _pair("torch", "cpu", "float64")
    w = np.full(len(y), 1e308)
    ref = KnowledgePointCounter().fit(ref_fs, y)
    want = ref.score(ref_fs, y)
    assert ref.score(ref_fs, y, sample_weight=w) == pytest.approx(want, abs=1e-15)
    with sklearn.config_context(array_api_dispatch=True):
        est = KnowledgePointCounter().fit(fs, y)
        got = est.score(fs, y, sample_weight=make(w))
    assert got == pytest.approx(want, abs=1e-15)


@pytest.mark.parametrize("namespace, device", [COMBOS[0], COMBOS[3]])
def test_empty_input_is_refused_as_empty(namespace, device):
    make = _maker(namespace, device)
    h, directions, _, y = _data("float64")
    with sklearn.config_context(array_api_dispatch=namespace != "numpy"):
        empty = FeatureSet(h={"late": make(h["late"][:0])}, directions=make(MU))
        with pytest.raises(ValueError, match="empty: 0 images"):
            KnowledgePointCounter().fit(empty, y[:0])
        est = KnowledgePointCounter().fit(
            FeatureSet(h={"late": make(h["late"])}, directions=make(MU)), y
        )
        for method in ("predict", "region_posteriors", "masks"):
            with pytest.raises(ValueError, match="empty: 0 images"):
                getattr(est, method)(empty)
        with pytest.raises(ValueError, match="empty"):
            est.score(empty, y[:0])


def test_tags_declare_array_api_support():
    tags = KnowledgePointCounter().__sklearn_tags__()
    assert tags.array_api_support is True
    assert tags.input_tags.three_d_array and not tags.input_tags.two_d_array


@pytest.mark.parametrize("factor", [1e300, 1e-200])
def test_extreme_magnitudes_on_the_device(factor):
    # regions and directions of 1e300 or 1e-200: the same posteriors as at
    # unit scale (the strength is normalised; safe norms on the device)
    ref_fs, fs, y, make = _pair("array_api_strict", "device1", "float64")
    ref = KnowledgePointCounter().fit(ref_fs, y)
    with sklearn.config_context(array_api_dispatch=True):
        scaled = FeatureSet(
            h={k: v * factor for k, v in fs.h.items()},
            directions=fs.directions * factor,
        )
        est = KnowledgePointCounter().fit(scaled, y)
        post = to_numpy(est.region_posteriors(scaled))
    assert np.all(np.isfinite(post))
    np.testing.assert_allclose(post, ref.region_posteriors(ref_fs), atol=ATOL)
    assert est.scales_["late"] == pytest.approx(ref.scales_["late"] * factor)


def test_huge_unnormalised_strengths_stay_finite_on_the_device():
    h = np.array([[[1e300, -1e299, 0.0], [-1e300, 0.0, 1e299]]])
    with sklearn.config_context(array_api_dispatch=True):
        est = KnowledgePointCounter(normalize_strength=False).fit(
            torch.asarray(h), directions=MU
        )
        post = est.region_posteriors(torch.asarray(h)).numpy()
    assert np.all(np.isfinite(post))
    np.testing.assert_array_equal(post[0, 0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(post[0, 1], [0.0, 0.0, 1.0])
