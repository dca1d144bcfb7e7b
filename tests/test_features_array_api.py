"""FeatureSet under scikit-learn's Array API dispatch (issue 16, SPEC 10).

With ``array_api_dispatch`` on, every field stays in the namespace and on the
device it was given in (soft labels computed from logits included), indexing
works in every namespace, and mixed namespaces or devices are refused by
name. Without dispatch nothing changes (tests/test_features.py).

Tolerance: soft labels from logits of another namespace are computed in
float64 (as the numpy path computes them) with the same log-space steps;
they match the numpy path's to 1e-15 absolute (float64 rounding of a
log-softmax of logits of size ~3: measured <= 2.3e-16).
"""

import numpy as np
import pytest
import sklearn
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import softmax
from sklearn.model_selection import KFold
from sklearn.utils import _safe_indexing

from skvmf import FeatureSet
from skvmf._array_api import get_namespace_and_device, namespace_name, to_numpy

torch = pytest.importorskip("torch")
strict = pytest.importorskip("array_api_strict")

ATOL = 1e-15

# (namespace, device) combinations this machine has: array-api-strict's two
# devices (arrays on device1 cannot be read by numpy) and torch on the CPU
COMBOS = [
    ("array_api_strict", "CPU_DEVICE"),
    ("array_api_strict", "device1"),
    ("torch", "cpu"),
]
DTYPES = ["float32", "float64"]


def _maker(namespace, device):
    """A function putting a numpy array into the namespace, on the device."""
    if namespace == "torch":
        return lambda a: torch.asarray(a, device=device)
    dev = strict.Device(device)
    return lambda a: strict.asarray(a, device=dev)


def _where(a):
    """(namespace name, device as text) of an array, as dispatch sees it."""
    with sklearn.config_context(array_api_dispatch=True):
        xp, _, dev = get_namespace_and_device(a)
    return namespace_name(xp), str(dev)


def _numpy_fields(dtype, n=6, grid=(2, 3), seed=0):
    rng = np.random.default_rng(seed)
    r = grid[0] * grid[1]
    fields = {
        "sample": rng.normal(size=(n, 5)),
        "logits": 3.0 * rng.normal(size=(n, 4)),
        "g": rng.normal(size=(n, 3)),
        "directions": rng.normal(size=(4, 3)),
        "priors": np.array([0.1, 0.2, 0.3, 0.4]),
    }
    maps = {
        "regions": {"a": rng.normal(size=(n, r, 2)), "b": rng.normal(size=(n, r, 7))},
        "h": {"a": rng.normal(size=(n, r, 3))},
    }
    fields = {k: v.astype(dtype) for k, v in fields.items()}
    maps = {f: {k: v.astype(dtype) for k, v in m.items()} for f, m in maps.items()}
    return fields, maps


def _build(make, dtype, **extra):
    fields, maps = _numpy_fields(dtype)
    ref = FeatureSet(**fields, **maps, grid=(2, 3), image_ids=np.arange(6) + 10)
    with sklearn.config_context(array_api_dispatch=True):
        fs = FeatureSet(
            **{k: make(v) for k, v in fields.items()},
            regions={k: make(v) for k, v in maps["regions"].items()},
            h={k: make(v) for k, v in maps["h"].items()},
            grid=(2, 3),
            image_ids=np.arange(6) + 10,
            **extra,
        )
    return fs, ref


def _array_fields(fs):
    for name in ("sample", "logits", "soft_labels", "g", "directions", "priors"):
        yield name, getattr(fs, name)
    for field in ("regions", "h"):
        for layer, value in getattr(fs, field).items():
            yield f"{field}[{layer}]", value


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("namespace, device", COMBOS)
def test_every_field_stays_in_its_namespace_and_device(namespace, device, dtype):
    make = _maker(namespace, device)
    fs, ref = _build(make, dtype)
    for name, value in _array_fields(fs):
        assert _where(value) == _where(make(np.zeros(1))), name
    # given fields are kept as given (no copy, no cast)
    for name, value in _array_fields(fs):
        if name != "soft_labels":
            assert str(value.dtype).endswith(dtype), name
    # soft labels: float64 (the numpy path's dtype), equal to its values
    assert str(fs.soft_labels.dtype).endswith("float64")
    assert ref.soft_labels.dtype == np.float64
    np.testing.assert_allclose(to_numpy(fs.soft_labels), ref.soft_labels, atol=ATOL)
    np.testing.assert_allclose(to_numpy(fs.soft_labels).sum(axis=1), 1.0, atol=ATOL)
    # an independent reference: scipy's softmax of the same (float32) logits
    np.testing.assert_allclose(
        to_numpy(fs.soft_labels),
        softmax(ref.logits.astype(np.float64) / 4.0, axis=1),
        atol=ATOL,
    )


@pytest.mark.parametrize("namespace, device", COMBOS)
def test_indexing_works_in_every_namespace(namespace, device):
    make = _maker(namespace, device)
    fs, ref = _build(make, "float64")
    mask = np.array([True, False, False, True, True, False])
    keys = [
        np.array([4, 1]),
        [5, -6, 2],
        mask,
        slice(1, 4),
        3,
        np.array([], dtype=np.int64),
    ]
    with sklearn.config_context(array_api_dispatch=True):
        native = [make(np.array([4, 1])), make(mask)]
        for key, host in zip(keys + native, keys + [np.array([4, 1]), mask]):
            sub, expected = fs[key], ref[host]
            assert len(sub) == len(expected)
            for (name, got), (_, want) in zip(
                _array_fields(sub), _array_fields(expected)
            ):
                assert _where(got) == _where(make(np.zeros(1))), name
                np.testing.assert_array_equal(to_numpy(got), want, err_msg=name)
            # image ids are host labels: they stay numpy
            assert isinstance(sub.image_ids, np.ndarray)
            np.testing.assert_array_equal(sub.image_ids, expected.image_ids)
        # scikit-learn's own indexing and cross-validation splits
        idx = np.array([0, 5, 2])
        got = _safe_indexing(fs, idx)
        np.testing.assert_array_equal(to_numpy(got.sample), ref.sample[idx])
        for train, test in KFold(3).split(np.zeros(6)):
            assert len(fs[train]) + len(fs[test]) == 6
        with pytest.raises(IndexError, match="out of bounds"):
            fs[[0, 6]]
        # region rows, the container's device and namespace
        rows = fs.region_rows("b")
        assert _where(rows) == _where(fs.regions["b"])
        np.testing.assert_array_equal(to_numpy(rows), ref.region_rows("b"))
        assert str(fs.device) == _where(fs.sample)[1]
        assert namespace_name(fs.namespace) == namespace


def _forbid_host_copies(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was copied to the host")

    monkeypatch.setattr(torch.Tensor, "__array__", refuse)
    monkeypatch.setattr(torch.Tensor, "numpy", refuse)
    monkeypatch.setattr(torch.Tensor, "cpu", refuse)


def test_no_host_copy_of_torch_fields(monkeypatch):
    fields, maps = _numpy_fields("float32")
    tensors = {k: torch.asarray(v) for k, v in fields.items()}
    tmaps = {f: {k: torch.asarray(v) for k, v in m.items()} for f, m in maps.items()}
    _forbid_host_copies(monkeypatch)
    with sklearn.config_context(array_api_dispatch=True):
        fs = FeatureSet(**tensors, **tmaps, grid=(2, 3))
        sub = fs[torch.tensor([True, False, True, False, True, True])]
        sub = sub[[0, 2]]
        sub = sub[1:]
        from skvmf._numerics.soft_labels import check_soft_labels_xp

        xp, _, dev = get_namespace_and_device(fs.logits)
        checked = check_soft_labels_xp(fs.soft_labels, xp, dev, n_samples=6)
        check_soft_labels_xp(fs.logits, xp, dev, from_logits=True)
    assert isinstance(sub.soft_labels, torch.Tensor) and len(sub) == 1
    assert isinstance(checked, torch.Tensor)


def test_without_dispatch_torch_fields_behave_as_before():
    fields, maps = _numpy_fields("float32")
    fs = FeatureSet(
        logits=torch.asarray(fields["logits"]),
        regions={"a": torch.asarray(maps["regions"]["a"])},
        grid=(2, 3),
    )
    # soft labels: a float64 numpy array; the regions: the tensor as given
    assert isinstance(fs.soft_labels, np.ndarray)
    assert fs.soft_labels.dtype == np.float64
    assert isinstance(fs.regions["a"], torch.Tensor)
    assert isinstance(fs[[1, 0]].regions["a"], torch.Tensor)
    np.testing.assert_allclose(
        fs.soft_labels, softmax(fields["logits"].astype(np.float64) / 4, axis=1)
    )


@pytest.mark.parametrize("namespace, device", COMBOS)
def test_non_finite_and_complex_fields_are_refused_by_name(namespace, device):
    make = _maker(namespace, device)
    logits = np.zeros((3, 4))
    logits[1, 2] = np.nan
    with sklearn.config_context(array_api_dispatch=True):
        with pytest.raises(ValueError, match="FeatureSet.logits contains NaN"):
            FeatureSet(logits=make(logits))
        with pytest.raises(ValueError, match="FeatureSet.priors contains NaN"):
            FeatureSet(priors=make(np.array([0.5, np.inf])))
        with pytest.raises(ValueError, match="FeatureSet.sample must be real"):
            FeatureSet(sample=make(np.ones((3, 2)) + 1j))
        # regional maps are not checked for finiteness here (they can be
        # large; the aligner checks them batch by batch)
        fs = FeatureSet(regions={"a": make(np.full((2, 4, 3), np.inf))}, grid=(2, 2))
        assert len(fs) == 2


def test_mixed_devices_are_refused_naming_both():
    cpu, dev1 = strict.Device("CPU_DEVICE"), strict.Device("device1")
    with sklearn.config_context(array_api_dispatch=True):
        with pytest.raises(ValueError, match=r"logits is on .*CPU_DEVICE.*regions"):
            FeatureSet(
                logits=strict.asarray(np.zeros((2, 3)), device=cpu),
                regions={"a": strict.asarray(np.zeros((2, 4, 3)), device=dev1)},
            )
        with pytest.raises(ValueError, match=r"on cpu but FeatureSet.regions.* meta"):
            FeatureSet(
                logits=torch.zeros(2, 3),
                regions={"a": torch.zeros(2, 4, 3, device="meta")},
            )


def test_mixed_namespaces_are_refused_naming_both():
    with sklearn.config_context(array_api_dispatch=True):
        with pytest.raises(ValueError, match=r"logits is in numpy .* in torch"):
            FeatureSet(logits=np.zeros((2, 3)), regions={"a": torch.zeros((2, 4, 3))})
        with pytest.raises(ValueError, match="array_api_strict .* torch"):
            FeatureSet(sample=strict.zeros((2, 3)), g=torch.zeros((2, 3)))
    # without dispatch the fields are kept as given, as before
    fs = FeatureSet(logits=np.zeros((2, 3)), regions={"a": torch.zeros((2, 4, 3))})
    assert isinstance(fs.regions["a"], torch.Tensor)


def test_nested_lists_are_arrays_or_refused_by_name():
    fs = FeatureSet(
        logits=[[0.0, 1.0], [2.0, 0.0]],
        regions={"a": [[[1.0], [2.0]], [[3.0], [4.0]]]},
        priors=[0.25, 0.75],
        classes=["cat", "dog"],
        image_ids=[7, 9],
        grid=(1, 2),
    )
    for value in (fs.logits, fs.regions["a"], fs.priors, fs.classes, fs.image_ids):
        assert isinstance(value, np.ndarray)
    assert fs.regions["a"].shape == (2, 2, 1)
    np.testing.assert_array_equal(fs[[1]].image_ids, [9])
    np.testing.assert_allclose(fs.soft_labels, softmax(fs.logits / 4.0, axis=1))
    with pytest.raises(ValueError, match="FeatureSet.logits .*ragged"):
        FeatureSet(logits=[[0.0, 1.0], [2.0]])
    with pytest.raises(ValueError, match=r"FeatureSet.h\['x'\] .*ragged"):
        FeatureSet(h={"x": [[[1.0, 2.0]], [[1.0]]]})
    with pytest.raises(ValueError, match="FeatureSet.sample must be numeric"):
        FeatureSet(sample=[["a", "b"]])
    # with dispatch on, lists follow the namespace and device of the arrays
    with sklearn.config_context(array_api_dispatch=True):
        dev1 = strict.Device("device1")
        fs = FeatureSet(
            h={"x": strict.asarray(np.ones((2, 4, 3)), device=dev1)},
            directions=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            priors=[0.5, 0.5],
        )
        assert fs.directions.device == dev1 and fs.priors.device == dev1
        fs = FeatureSet(g=torch.zeros(2, 3), logits=[[0.0, 1.0], [1.0, 0.0]])
        assert isinstance(fs.logits, torch.Tensor)
        assert isinstance(fs.soft_labels, torch.Tensor)


@settings(max_examples=30, deadline=None)
@given(
    logits=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
        elements=st.floats(-1e3, 1e3),
    ),
    temperature=st.sampled_from([0.01, 1.0, 4.0, 100.0]),
)
def test_xp_soft_labels_match_the_numpy_path(logits, temperature):
    # any finite logits and temperature: the torch soft labels equal the
    # numpy path's (scipy's log_softmax) and are probabilities
    ref = FeatureSet(logits=logits, temperature=temperature)
    with sklearn.config_context(array_api_dispatch=True):
        fs = FeatureSet(logits=torch.asarray(logits), temperature=temperature)
    got = to_numpy(fs.soft_labels)
    np.testing.assert_allclose(got, ref.soft_labels, atol=ATOL, rtol=1e-13)
    assert np.all((got >= 0) & (got <= 1))
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-14)


# --------------------------------------------------------------------------
# soft labels validated in X's namespace (for the estimators that take them)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("namespace, device", COMBOS)
def test_check_soft_labels_xp_matches_the_numpy_check(namespace, device):
    from skvmf._numerics.soft_labels import check_soft_labels, check_soft_labels_xp

    make = _maker(namespace, device)
    rng = np.random.default_rng(1)
    logits = 5.0 * rng.normal(size=(7, 4))
    probs = softmax(logits, axis=1)
    probs[0] = [1.0 + 1e-7, -1e-7, 0.0, 0.0]  # within the tolerances
    with sklearn.config_context(array_api_dispatch=True):
        xp, _, dev = get_namespace_and_device(make(np.zeros(1)))
        for given in (make(probs), probs, probs.tolist()):
            got = check_soft_labels_xp(given, xp, dev, n_samples=7)
            assert _where(got) == _where(make(np.zeros(1)))
            np.testing.assert_allclose(
                to_numpy(got), check_soft_labels(probs), atol=ATOL
            )
        got = check_soft_labels_xp(
            make(logits.astype(np.float32)), xp, dev, from_logits=True, temperature=2
        )
        assert str(got.dtype).endswith("float64")
        np.testing.assert_allclose(
            to_numpy(got),
            check_soft_labels(
                logits.astype(np.float32), from_logits=True, temperature=2
            ),
            atol=ATOL,
        )
        bad = probs.copy()
        bad[2, 1] = np.nan
        with pytest.raises(ValueError, match="P must be finite; row 2"):
            check_soft_labels_xp(make(bad), xp, dev, name="P")
        halved = probs.copy()
        halved[3] /= 2
        with pytest.raises(ValueError, match="row 3 sums to 0.5"):
            check_soft_labels_xp(make(halved), xp, dev)
        with pytest.raises(ValueError, match="look like logits"):
            check_soft_labels_xp(make(logits), xp, dev)
        with pytest.raises(ValueError, match="has 7 rows but there are 6"):
            check_soft_labels_xp(make(probs), xp, dev, n_samples=6)
        with pytest.raises(ValueError, match="must be real"):
            check_soft_labels_xp(make(probs + 0j), xp, dev)
        with pytest.raises(ValueError, match="temperature"):
            check_soft_labels_xp(make(logits), xp, dev, from_logits=True, temperature=0)
