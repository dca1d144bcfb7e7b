"""Intervals over repeats and images (skvmf/_uncertainty.py) and the loss-curve
verdicts (skvmf/_convergence.py), against closed forms and scipy."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats
from sklearn.exceptions import ConvergenceWarning

from skvmf._utils.convergence import curve_summary, loss_fell, warn_if_not_falling
from skvmf._utils.uncertainty import Resampler, mean_of, pearson_of, ratio_of


def test_constant_values_give_a_point_interval():
    rs = Resampler(3, 10, 200, 0.95, 0)
    est = rs.estimate(mean_of, np.full((3, 10), 2.5))
    assert est == {"value": 2.5, "low": 2.5, "high": 2.5}


def test_value_is_the_mean_over_repeats_of_the_full_sample_statistic():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 30))
    est = Resampler(4, 30, 500, 0.95, 0).estimate(mean_of, a)
    assert est["value"] == pytest.approx(a.mean(1).mean())
    assert est["low"] < est["value"] < est["high"]


def test_interval_width_matches_the_normal_theory_for_one_repeat():
    # one repeat: a plain percentile bootstrap of the mean, whose 95 % width
    # is about 2 * 1.96 * s / sqrt(n)
    rng = np.random.default_rng(2)
    a = rng.normal(size=(1, 400))
    est = Resampler(1, 400, 4000, 0.95, 0).estimate(mean_of, a)
    expected = 2 * 1.96 * a.std(ddof=1) / np.sqrt(400)
    assert est["high"] - est["low"] == pytest.approx(expected, rel=0.1)


def test_coverage_of_the_true_mean_over_many_samples():
    # the percentile bootstrap covers the true mean ~95 % of the time; 200
    # fixed-seed samples of 60 values give a binomial spread of +-3 %
    rng = np.random.default_rng(3)
    hits = 0
    for k in range(200):
        a = rng.exponential(size=(2, 60)) + 0.1 * rng.normal(size=(2, 1))
        est = Resampler(2, 60, 400, 0.95, k).estimate(mean_of, a)
        hits += est["low"] <= 1.0 <= est["high"]
    assert 0.85 <= hits / 200 <= 0.99


def test_repeat_spread_widens_the_interval():
    rng = np.random.default_rng(4)
    base = rng.normal(size=50)
    same = np.stack([base] * 3)
    shifted = same + np.array([[-1.0], [0.0], [1.0]])  # seeds disagree
    narrow = Resampler(3, 50, 1000, 0.95, 0).estimate(mean_of, same)
    wide = Resampler(3, 50, 1000, 0.95, 0).estimate(mean_of, shifted)
    assert wide["high"] - wide["low"] > 2 * (narrow["high"] - narrow["low"])
    assert wide["low"] < -0.5 and wide["high"] > 0.5


def test_ratio_is_undefined_without_points():
    rs = Resampler(2, 5, 200, 0.95, 0)
    est = rs.estimate(ratio_of, np.zeros((2, 5)), np.zeros((2, 5)))
    assert est == {"value": None, "low": None, "high": None}
    num = np.array([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], float)
    den = np.array([[2, 0, 0, 0, 0], [2, 2, 0, 0, 0]], float)
    est = rs.estimate(ratio_of, num, den)
    assert est["value"] == pytest.approx(0.5)
    assert est["low"] == pytest.approx(0.5) and est["high"] == pytest.approx(0.5)


def test_bad_shapes_are_refused():
    rs = Resampler(2, 5, 200, 0.95, 0)
    with pytest.raises(ValueError, match=r"shape \(repeats, images\) = \(2, 5\)"):
        rs.estimate(mean_of, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="nothing to resample"):
        Resampler(0, 5, 200, 0.95, 0)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, (2, 12), elements=st.floats(-1e3, 1e3)),
    st.floats(1e-200, 1e200),
)
def test_pearson_matches_scipy_at_any_magnitude(a, scale):
    b = a[::-1] + np.arange(12)  # never constant
    if np.ptp(a, axis=1).min() < 1e-6:
        return  # constant rows: undefined, tested below
    ours = pearson_of(a * scale, b * scale)
    ref = [stats.pearsonr(a[k], b[k])[0] for k in range(2)]
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)
    assert np.all(np.abs(ours) <= 1 + 1e-12)


def test_pearson_of_a_constant_is_nan():
    assert np.isnan(pearson_of(np.ones(5), np.arange(5.0)))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(2, 40), elements=st.floats(-1e6, 1e6)))
def test_loss_fell_is_the_tail_against_the_start(curve):
    tail = curve[-max(1, len(curve) // 10) :].mean()
    expected = tail < curve[0] - 1e-9 * max(1.0, abs(curve[0]))
    assert loss_fell(curve) is bool(expected)
    s = curve_summary(curve)
    assert s["loss_first"] == curve[0] and s["loss_last"] == pytest.approx(tail)


def test_curve_verdicts():
    assert loss_fell([1.0]) is None and loss_fell([]) is None
    assert loss_fell([1.0, np.nan]) is False
    assert loss_fell([2.0, 1.0]) is True and loss_fell([1.0, 2.0]) is False
    with pytest.warns(
        ConvergenceWarning, match=r"alignment at layer 'conv_5'.*first 1"
    ):
        assert warn_if_not_falling([1.0, 3.0], "alignment", "conv_5") is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_not_falling([3.0, 1.0], "projection") is True


def test_a_kl_that_starts_at_zero_has_nothing_to_lower():
    flat = [1e-6, 1e-6, 1e-6]
    assert loss_fell(flat) is False  # no floor known: did not fall
    assert loss_fell(flat, at_zero=1e-4) is True
    assert loss_fell([1e-6, 0.5], at_zero=1e-4) is False  # it rose away
    assert curve_summary(flat, at_zero=1e-4)["converged"] is True
