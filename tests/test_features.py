import numpy as np
import pytest
from scipy.special import softmax
from sklearn.model_selection import KFold
from sklearn.utils import _safe_indexing, check_consistent_length

from skvmf import FeatureSet


def _fs(n=6, grid=(2, 3), k=4, rng=None):
    rng = np.random.default_rng(0) if rng is None else rng
    r = grid[0] * grid[1]
    return FeatureSet(
        sample=rng.normal(size=(n, 5)),
        logits=rng.normal(size=(n, 3)),
        regions={"a": rng.normal(size=(n, r, k)), "b": rng.normal(size=(n, r, 2))},
        grid=grid,
        image_ids=np.arange(n) + 10,
    )


def test_soft_labels_are_tempered_softmax_of_logits():
    fs = _fs()
    np.testing.assert_allclose(fs.soft_labels, softmax(fs.logits / 4.0, axis=1))
    fs1 = FeatureSet(logits=fs.logits, temperature=1.0)
    np.testing.assert_allclose(fs1.soft_labels, softmax(fs.logits, axis=1))


def test_indexing_keeps_every_per_image_field_aligned():
    fs = _fs()
    idx = np.array([4, 1])
    sub = fs[idx]
    assert len(sub) == 2 and sub.shape == (2,)
    np.testing.assert_array_equal(sub.sample, fs.sample[idx])
    np.testing.assert_array_equal(sub.regions["b"], fs.regions["b"][idx])
    np.testing.assert_array_equal(sub.image_ids, [14, 11])
    mask = np.zeros(6, bool)
    mask[[0, 5]] = True
    np.testing.assert_array_equal(fs[mask].image_ids, [10, 15])
    np.testing.assert_array_equal(fs[1:3].image_ids, [11, 12])
    # scikit-learn's own indexing and length checks accept it
    np.testing.assert_array_equal(_safe_indexing(fs, idx).image_ids, [14, 11])
    check_consistent_length(fs, np.arange(6))
    for train, test in KFold(3).split(np.zeros(6)):
        assert len(fs[train]) + len(fs[test]) == 6


def test_region_rows_trace_back_to_image_and_position():
    fs = _fs()
    rows = fs.region_rows("a")
    index = fs.region_index()
    h, w = fs.grid
    for row in [0, 7, 20, 35]:
        image, i, j = index[row]
        np.testing.assert_array_equal(rows[row], fs.regions["a"][image - 10, i * w + j])
    assert index.shape == (6 * h * w, 3)


def test_with_layers_adds_without_mutating():
    fs = _fs()
    h = np.zeros((6, 6, 3))
    fs2 = fs.with_layers("h", a=h)
    assert fs.h == {} and fs2.h["a"] is h
    assert fs2.regions.keys() == fs.regions.keys()
    fs3 = fs.with_layers("regions", c=np.ones((6, 6, 1)))
    assert fs3.layers == ["a", "b", "c"] and fs.layers == ["a", "b"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sample": np.zeros((3, 2)), "logits": np.zeros((4, 2))}, "same number"),
        ({"regions": {"a": np.zeros((2, 5, 3))}, "grid": (2, 2)}, r"\(N, 4, K\)"),
        ({"logits": np.zeros((2, 2)), "temperature": 0.0}, "temperature"),
    ],
)
def test_inconsistent_fields_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeatureSet(**kwargs)


def test_string_index_and_unknown_layer_are_clear_errors():
    fs = _fs()
    with pytest.raises(TypeError, match="regions"):
        fs["a"]
    with pytest.raises(ValueError, match="available"):
        fs.region_rows("zzz")


# --------------------------------------------------------------------------
# bad values (issue 10)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_logits_are_an_error_not_nan_soft_labels(bad):
    logits = np.zeros((3, 4))
    logits[1, 2] = bad
    with pytest.raises(ValueError, match="FeatureSet.logits contains NaN or inf"):
        FeatureSet(logits=logits)
    from skvmf._numerics.soft_labels import check_soft_labels

    with pytest.raises(ValueError, match="logits must be finite; row 1"):
        check_soft_labels(logits, from_logits=True, name="logits")


def test_extreme_finite_logits_and_temperatures_give_exact_soft_labels():
    from skvmf._numerics.soft_labels import check_soft_labels

    logits = np.array([[1e308, -1e308, 0.0], [1.0, 2.0, 3.0], [-5e307, -5e307, 0.0]])
    for temperature in (1e-300, 1.0, 1e300):
        fs = FeatureSet(logits=logits, temperature=temperature)
        P = check_soft_labels(logits, from_logits=True, temperature=temperature)
        np.testing.assert_array_equal(fs.soft_labels, P)
        assert np.all(np.isfinite(P))
        np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_array_equal(
        check_soft_labels(logits, from_logits=True, temperature=1e-300),
        [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]],
    )
    # the moderate row against scipy's softmax
    np.testing.assert_allclose(
        FeatureSet(logits=logits, temperature=1.0).soft_labels[1],
        softmax(logits[1]),
        rtol=1e-15,
    )


@pytest.mark.parametrize(
    "field",
    ["sample", "logits", "soft_labels", "g", "directions", "priors"],
)
def test_complex_and_non_finite_fields_are_refused_by_name(field):
    shapes = {"priors": (3,), "directions": (3, 2)}
    value = np.ones(shapes.get(field, (4, 3))) / 3
    with pytest.raises(ValueError, match=f"FeatureSet.{field} must be real"):
        FeatureSet(**{field: value + 1j})
    value[0] = np.nan
    with pytest.raises(ValueError, match=f"FeatureSet.{field} contains NaN"):
        FeatureSet(**{field: value})
    with pytest.raises(ValueError, match=f"FeatureSet.{field} must be numeric"):
        FeatureSet(**{field: value.astype(str)})


def test_complex_regions_and_bad_temperature():
    with pytest.raises(ValueError, match=r"FeatureSet.regions\['a'\] must be real"):
        FeatureSet(regions={"a": np.ones((2, 4, 3)) + 0j}, grid=(2, 2))
    for t in (0.0, -1.0, np.nan, np.inf, "4"):
        with pytest.raises(ValueError, match="temperature"):
            FeatureSet(logits=np.zeros((2, 3)), temperature=t)


def test_read_only_fields_round_trip():
    fs = _fs()
    arrays = [fs.sample, fs.logits, *fs.regions.values()]
    for arr in arrays:
        arr.setflags(write=False)
    again = FeatureSet(
        sample=fs.sample, logits=fs.logits, regions=fs.regions, grid=fs.grid
    )
    np.testing.assert_array_equal(again.soft_labels, fs.soft_labels)
    np.testing.assert_array_equal(again[[1, 3]].sample, fs.sample[[1, 3]])
