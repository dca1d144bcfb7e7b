import numpy as np
import pytest
from scipy.special import softmax
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator_cloneable,
    check_estimator_repr,
    check_estimator_tags_renamed,
    check_get_params_invariance,
    check_mixin_order,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
    check_valid_tag_types,
)

from skvmf.features import FeatureSet
from skvmf.knowledge import KnowledgePointCounter
from skvmf.vmf import revised_kappa

MU = np.eye(3)


def _synthetic(n=60, n_regions=16, seed=0, strong=4.0):
    """Images of 3 classes; each has a few strong regions along its class
    direction, one strong region along a wrong class, and weak regions."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    h = 0.3 * rng.normal(size=(n, n_regions, 3))
    for i in range(n):
        k = rng.integers(2, 7)
        h[i, :k] += strong * MU[y[i]]
        h[i, k] += strong * MU[(y[i] + 1) % 3]
    late = h.copy()
    early = 0.5 * h + 0.5 * rng.normal(size=h.shape)
    fs = FeatureSet(
        h={"early": early, "late": late},
        directions=MU,
        priors=np.array([0.2, 0.3, 0.5]),
    )
    return fs, y


def _numpy_posteriors(h, directions, scale, kappa="revised", sigma=1.0, priors=None):
    strength = np.linalg.norm(h, axis=-1)
    cos = (h / strength[..., None]) @ (
        directions / np.linalg.norm(directions, axis=1, keepdims=True)
    ).T
    if kappa == "revised":
        k = revised_kappa(strength / scale, h.shape[-1], sigma=sigma)
    else:
        k = np.full_like(strength, kappa)
    logits = k[..., None] * cos
    if priors is not None:
        logits = logits + np.log(priors)
    return softmax(logits, axis=-1)


@pytest.mark.parametrize("sigma", [1.0, 0.5])
@pytest.mark.parametrize("prior", [False, True])
def test_posteriors_match_numpy_formula(sigma, prior):
    fs, y = _synthetic(n=12)
    rng = np.random.default_rng(3)
    directions = rng.normal(size=(3, 3))
    kpc = KnowledgePointCounter(sigma=sigma, prior=prior).fit(
        fs, y, directions=directions
    )
    for layer in ("early", "late"):
        h = fs.h[layer]
        scale = np.linalg.norm(h, axis=-1).mean()
        assert kpc.scales_[layer] == pytest.approx(scale, rel=1e-12)
        expected = _numpy_posteriors(
            h, directions, scale, sigma=sigma, priors=fs.priors if prior else None
        )
        got = kpc.region_posteriors(fs, layer=layer)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(got.sum(axis=-1), 1.0)


def test_fixed_kappa_posteriors_and_default_layer():
    fs, y = _synthetic(n=9)
    kpc = KnowledgePointCounter(kappa=7.5).fit(fs, y)
    np.testing.assert_allclose(
        kpc.region_posteriors(fs),  # default: the last layer
        _numpy_posteriors(fs.h["late"], MU, 1.0, kappa=7.5),
        rtol=1e-10,
    )
    kpc_early = KnowledgePointCounter(kappa=7.5, layer="early").fit(fs, y)
    np.testing.assert_allclose(
        kpc_early.region_posteriors(fs),
        _numpy_posteriors(fs.h["early"], MU, 1.0, kappa=7.5),
        rtol=1e-10,
    )


def _hand_built():
    # kappa fixed at 10: a region along e_c has max posterior
    # e^10 / (e^10 + 2) ~ 0.9999; the diagonal (1, 1, 1) is uniform (1/3);
    # (1, 1, 0) splits between classes 0 and 1 (~0.49997 each)
    d = np.ones(3) / np.sqrt(3)
    half = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    h = np.array(
        [
            [MU[0], MU[0], MU[1], d],  # image 0 (label 0): 3 points, 2 reliable
            [d, d, half, d],  # image 1 (label 1): no point at tau=0.5
            [MU[2], MU[2], MU[2], MU[2]],  # image 2 (label 2): 4 points, 4 reliable
        ]
    )
    return FeatureSet(h={"conv": h}, directions=MU), np.array([0, 1, 2])


def test_masks_and_counts_on_hand_built_regions():
    fs, y = _hand_built()
    kpc = KnowledgePointCounter(tau=0.5, kappa=10.0).fit(fs, y)
    points, labels = kpc.masks(fs)
    np.testing.assert_array_equal(
        points,
        [[True, True, True, False], [False] * 4, [True] * 4],
    )
    np.testing.assert_array_equal(labels[0, :3], [0, 0, 1])
    np.testing.assert_array_equal(labels[2], [2, 2, 2, 2])
    (rec,) = kpc.count(fs, y)
    assert rec == {
        "layer": "conv",
        "n_images": 3,
        "n_regions": 4,
        "total_points": 7,
        "total_reliable": 6,
        "mean_count": 7 / 3,
        "mean_reliable": 2.0,
        "reliable_ratio": 6 / 7,
    }
    # at tau = 0.45 the (1, 1, 0) region (max posterior ~ 0.49998) is a point
    kpc.set_params(tau=0.45).fit(fs, y)
    assert kpc.count(fs, y)[0]["total_points"] == 8
    # the vote: image 1 has no knowledge point at tau = 0.5 -> sentinel
    kpc.set_params(tau=0.5).fit(fs, y)
    np.testing.assert_array_equal(kpc.predict(fs), [0, -1, 2])
    assert kpc.score(fs, y) == pytest.approx(2 / 3)


def test_reliable_ratio_is_zero_without_points():
    fs, y = _hand_built()
    kpc = KnowledgePointCounter(tau=0.999999, kappa=1.0).fit(fs, y)
    (rec,) = kpc.count(fs, y)
    assert rec["total_points"] == 0 and rec["reliable_ratio"] == 0.0
    assert rec["mean_count"] == 0.0


def test_counts_every_layer_and_reliable_ratio_matches_masks():
    fs, y = _synthetic()
    kpc = KnowledgePointCounter().fit(fs, y)
    records = kpc.count(fs, y)
    assert [r["layer"] for r in records] == ["early", "late"]
    for rec in records:
        points, labels = kpc.masks(fs, layer=rec["layer"])
        reliable = points & (labels == y[:, None])
        assert rec["total_points"] == points.sum()
        assert rec["total_reliable"] == reliable.sum()
        assert rec["mean_count"] == pytest.approx(points.sum(axis=1).mean())
        assert rec["reliable_ratio"] == pytest.approx(reliable.sum() / points.sum())
        assert rec["n_images"] == 60 and rec["n_regions"] == 16
    # the synthetic "late" layer is the cleaner one: more reliable points
    early, late = records
    assert late["reliable_ratio"] > early["reliable_ratio"]


def test_scale_is_learned_on_fit_and_reused():
    fs, y = _synthetic(n=15)
    kpc = KnowledgePointCounter().fit(fs, y)
    scale = kpc.scales_["late"]
    doubled = fs.replace(h={k: 2 * v for k, v in fs.h.items()})
    # new data: strengths are divided by the *fit* scale
    np.testing.assert_allclose(
        kpc.region_posteriors(doubled),
        _numpy_posteriors(2 * fs.h["late"], MU, scale),
        rtol=1e-10,
    )
    # fitted on the doubled data, the scale doubles and posteriors are unchanged
    kpc2 = KnowledgePointCounter().fit(doubled, y)
    assert kpc2.scales_["late"] == pytest.approx(2 * scale)
    np.testing.assert_allclose(
        kpc2.region_posteriors(doubled), kpc.region_posteriors(fs), rtol=1e-10
    )
    # without normalisation the raw strength is used
    raw = KnowledgePointCounter(normalize_strength=False).fit(fs, y)
    assert raw.scales_["late"] == 1.0
    np.testing.assert_allclose(
        raw.region_posteriors(fs),
        _numpy_posteriors(fs.h["late"], MU, 1.0),
        rtol=1e-10,
    )


def test_vote_score_matches_manual_computation():
    fs, y = _synthetic(n=30, seed=4, strong=1.5)
    kpc = KnowledgePointCounter(tau=0.8, layer="early").fit(fs, y)
    post = _numpy_posteriors(fs.h["early"], MU, kpc.scales_["early"])
    points = post.max(-1) > 0.8
    manual = []
    for i in range(len(y)):
        if not points[i].any():
            manual.append(-1)
        else:
            manual.append(int(np.argmax(post[i][points[i]].sum(axis=0))))
    np.testing.assert_array_equal(kpc.predict(fs), manual)
    assert kpc.score(fs, y) == pytest.approx(np.mean(np.array(manual) == y))
    assert 0.3 < kpc.score(fs, y) < 1.0
    assert any(m == -1 for m in manual)  # some images have no point


def test_trivial_tau_does_not_maximise_the_score():
    fs, y = _synthetic()
    # tau -> 1: no knowledge points, every image wrong
    kpc = KnowledgePointCounter(tau=1 - 1e-12).fit(fs, y)
    assert kpc.count(fs, y)[1]["total_points"] == 0
    assert kpc.score(fs, y) == 0.0
    assert (kpc.predict(fs) == -1).all()
    # tau tiny: every region counts and the vote is the region average
    kpc = KnowledgePointCounter(tau=1e-9).fit(fs, y)
    assert kpc.count(fs, y)[1]["total_points"] == 60 * 16
    average = kpc.region_posteriors(fs).mean(axis=1).argmax(axis=1)
    np.testing.assert_array_equal(kpc.predict(fs), average)
    # the default tau beats both extremes on this data
    best = KnowledgePointCounter(tau=0.4).fit(fs, y).score(fs, y)
    assert best > 0.0
    assert best >= kpc.score(fs, y)


def test_string_classes_and_sentinel():
    fs, y = _hand_built()
    names = np.array(["cat", "dog", "frog"])
    fs = fs.replace(classes=names)
    kpc = KnowledgePointCounter(tau=0.5, kappa=10.0).fit(fs, names[y])
    pred = kpc.predict(fs)
    assert list(pred) == ["cat", None, "frog"]
    assert kpc.score(fs, names[y]) == pytest.approx(2 / 3)
    # -1 is a class: the sentinel moves below it
    fs2, y2 = _hand_built()
    fs2 = fs2.replace(classes=np.array([-1, 0, 1]))
    kpc2 = KnowledgePointCounter(tau=0.5, kappa=10.0).fit(fs2, y2 - 1)
    assert kpc2.no_point_label_ == -2
    np.testing.assert_array_equal(kpc2.predict(fs2), [-1, -2, 1])


def test_raw_arrays_with_directions():
    fs, y = _synthetic(n=12)
    kpc_fs = KnowledgePointCounter().fit(fs, y)
    kpc_raw = KnowledgePointCounter().fit(dict(fs.h), y, directions=MU)
    np.testing.assert_allclose(
        kpc_raw.region_posteriors(dict(fs.h)), kpc_fs.region_posteriors(fs)
    )
    single = KnowledgePointCounter().fit(fs.h["late"], y, directions=2 * MU)
    assert single.layers_ == ["h"]
    np.testing.assert_allclose(
        single.region_posteriors(fs.h["late"]), kpc_fs.region_posteriors(fs)
    )
    with pytest.raises(ValueError, match="directions"):
        KnowledgePointCounter().fit(fs.h["late"], y)


@pytest.mark.parametrize("tau", [0.0, 1.0, 1.5, -0.1])
def test_tau_must_be_in_open_unit_interval(tau):
    fs, y = _hand_built()
    with pytest.raises(ValueError, match="tau"):
        KnowledgePointCounter(tau=tau).fit(fs, y)


def test_input_errors():
    fs, y = _hand_built()
    one_region = FeatureSet(h={"fc": np.ones((3, 1, 3))}, directions=MU)
    with pytest.raises(ValueError, match=r"1 region.*\(3, 1, 3\)"):
        KnowledgePointCounter().fit(one_region, y)
    with pytest.raises(ValueError, match="4 labels but.*3 images"):
        KnowledgePointCounter().fit(fs, [0, 1, 2, 0])
    kpc = KnowledgePointCounter(kappa=10.0).fit(fs, y)
    with pytest.raises(ValueError, match="2 labels but.*3 images"):
        kpc.count(fs, [0, 1])
    with pytest.raises(ValueError, match="not categories"):
        kpc.score(fs, [0, 1, 7])
    with pytest.raises(ValueError, match="no embedded regions"):
        KnowledgePointCounter().fit(FeatureSet(sample=np.ones((3, 2))), y)
    with pytest.raises(ValueError, match="dimension 2"):
        KnowledgePointCounter().fit(fs, y, directions=np.ones((3, 2)))
    with pytest.raises(ValueError, match="priors"):
        KnowledgePointCounter(prior=True).fit(fs, y)
    with pytest.raises(ValueError, match="not seen in fit"):
        kpc.region_posteriors({"other": fs.h["conv"]})
    with pytest.raises(ValueError, match="no layer 'missing'"):
        kpc.masks(fs, layer="missing")
    bad = fs.h["conv"].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        KnowledgePointCounter().fit({"conv": bad}, y, directions=MU)


def test_grid_search_over_tau_kappa_sigma_prior_on_a_featureset():
    fs, y = _synthetic(n=60, seed=1)
    grid = {
        "tau": [0.4, 0.7, 0.95],
        "sigma": [0.5, 1.0],
        "kappa": ["revised", 20.0],
        "prior": [False, True],
    }
    search = GridSearchCV(KnowledgePointCounter(), grid, cv=3).fit(fs, y)
    assert len(search.cv_results_["params"]) == 24
    assert search.best_score_ > 0.5
    # each split's score is the held-out vote accuracy of a fit on the rest
    i = int(np.argmax(search.cv_results_["rank_test_score"] == 1))
    params = search.cv_results_["params"][i]
    train, test = next(StratifiedKFold(3).split(np.zeros(len(y)), y))
    est = KnowledgePointCounter(**params).fit(fs[train], y[train])
    assert est.score(fs[test], y[test]) == pytest.approx(
        search.cv_results_["split0_test_score"][i]
    )


def test_pipeline_and_clone():
    fs, y = _synthetic(n=30)
    pipe = Pipeline([("points", KnowledgePointCounter(tau=0.5))]).fit(fs, y)
    direct = KnowledgePointCounter(tau=0.5).fit(fs, y)
    assert pipe.score(fs, y) == direct.score(fs, y)
    np.testing.assert_array_equal(pipe.predict(fs), direct.predict(fs))
    c = clone(KnowledgePointCounter(tau=0.3, kappa=5.0, layer="late"))
    assert c.get_params()["tau"] == 0.3 and c.get_params()["layer"] == "late"
    assert not hasattr(c, "scales_")


# scikit-learn's estimator checks feed 2-D arrays of features; this estimator
# needs embedded regions (a FeatureSet, dict or 3-D array with category
# directions), so its tags declare ``two_d_array=False`` (which makes
# ``parametrize_with_checks`` skip every data check) and the API checks that
# need no data are run here one by one.
@pytest.mark.parametrize(
    "check",
    [
        check_estimator_cloneable,
        check_estimator_tags_renamed,
        check_valid_tag_types,
        check_estimator_repr,
        check_no_attributes_set_in_init,
        check_do_not_raise_errors_in_init_or_set_params,
        check_mixin_order,
        check_parameters_default_constructible,
        check_get_params_invariance,
        check_set_params,
    ],
    ids=lambda c: c.__name__,
)
def test_sklearn_api_checks(check):
    check("KnowledgePointCounter", KnowledgePointCounter())


# --------------------------------------------------------------------------
# extreme magnitudes and bad values (issue 10)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [1e300, 1e-200, 1e-300])
def test_directions_of_any_scale_give_the_same_results(factor):
    # directions=mu*1e300 used to "succeed" with all-zero directions
    fs, y = _synthetic(n=12)
    ref = KnowledgePointCounter(tau=0.5).fit(fs, y)
    got = KnowledgePointCounter(tau=0.5).fit(fs, y, directions=2.5 * MU * factor)
    np.testing.assert_allclose(got.directions_, MU, rtol=1e-15)
    np.testing.assert_allclose(
        got.region_posteriors(fs), ref.region_posteriors(fs), rtol=1e-12, atol=1e-300
    )
    assert got.count(fs, y) == ref.count(fs, y)


@pytest.mark.parametrize("factor", [1e300, 1e-200])
def test_regions_of_any_scale_with_normalised_strength(factor):
    fs, y = _synthetic(n=12)
    ref = KnowledgePointCounter(tau=0.5).fit(fs, y)
    h = {k: v * factor for k, v in fs.h.items()}
    got = KnowledgePointCounter(tau=0.5).fit(h, y, directions=MU)
    for layer in fs.h:
        post = got.region_posteriors(h, layer=layer)
        assert np.all(np.isfinite(post))
        np.testing.assert_allclose(
            post, ref.region_posteriors(fs, layer=layer), rtol=1e-10, atol=1e-300
        )
        assert got.scales_[layer] == pytest.approx(ref.scales_[layer] * factor)


def test_huge_unnormalised_strengths_give_hard_finite_posteriors():
    h = np.array([[[1e300, -1e299, 0.0], [-1e300, 0.0, 1e299]]])
    kpc = KnowledgePointCounter(normalize_strength=False).fit(h, directions=MU)
    post = kpc.region_posteriors(h)
    assert np.all(np.isfinite(post))
    np.testing.assert_allclose(post.sum(axis=-1), 1.0)
    assert post[0, 0, 0] == 1.0


def test_complex_and_non_finite_inputs_are_refused_by_name():
    fs, y = _synthetic(n=6)
    with pytest.raises(ValueError, match="directions must be real"):
        KnowledgePointCounter().fit(fs, y, directions=MU + 0j)
    with pytest.raises(ValueError, match="priors must be real"):
        KnowledgePointCounter().fit(fs, y, priors=np.ones(3) + 1j)
    with pytest.raises(ValueError, match="layer 'h' must be real"):
        KnowledgePointCounter().fit(fs.h["late"] + 0j, directions=MU)
    with pytest.raises(ValueError, match="directions must be finite"):
        KnowledgePointCounter().fit(fs, y, directions=np.where(MU > 0, np.inf, 0.0))
    with pytest.raises(ValueError, match="directions must be finite, non-zero"):
        KnowledgePointCounter().fit(fs, y, directions=np.zeros((3, 3)))


def test_read_only_inputs_are_not_written():
    fs, y = _synthetic(n=6)
    h = fs.h["late"].copy()
    mu = 3.0 * MU
    for arr in (h, mu, y):
        arr.setflags(write=False)
    kpc = KnowledgePointCounter().fit(h, y, directions=mu)
    assert kpc.predict(h).shape == (6,)
    np.testing.assert_array_equal(mu, 3.0 * MU)
