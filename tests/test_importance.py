"""Input checking and scale invariance of the importance weights, the region
matching and the RegionalAligner (SPEC 4-5), partly as hypothesis properties.

References are independent of the kernels: numpy float64 norms of the
unscaled features, and the same computation at magnitude 1.
"""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

from skvmf._kernels import matching as mk
from skvmf.alignment import (
    RegionalAligner,
    fit_importance_weights,
    match_regions,
    sample_distribution,
)
from skvmf.importance import draw_candidates

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _problem(seed=0, N=12, R=4, K=8, dtype=np.float32):
    """Three classes; region 0 carries the class; g points along it."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], N // 3)
    f = rng.normal(size=(N, R, K))
    f[:, 0, :3] += 3 * np.eye(3)[y]
    P = np.eye(3)[y] * 0.7 + 0.1
    g = 3 * np.eye(3)[y] + 0.3 * rng.normal(size=(N, 3))
    return f.astype(dtype), P, g


def _read_only(*arrays):
    out = []
    for a in arrays:
        a = np.array(a)
        a.flags.writeable = False
        out.append(a)
    return out


# ---------------------------------------------------------------------------
# scale invariance (safe norms: rescale before squaring)
# ---------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    exponent=st.floats(-30, 30),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 5)),
)
def test_normalize_channels_is_scale_free_float64(seed, exponent, shape):
    x = np.random.default_rng(seed).normal(size=shape)
    expected = x / np.linalg.norm(x, axis=-1, keepdims=True)  # at magnitude 1
    got = mk.normalize_channels(torch.tensor(x * 10.0**exponent)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), exponent=st.floats(-20, 20))
def test_match_regions_is_scale_free_float32(seed, exponent):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(4, 3, 5)).astype(np.float32)
    v = rng.random((4, 5))
    scaled = (f.astype(np.float64) * 10.0**exponent).astype(np.float32)
    idx, s = match_regions(f, v, return_scores=True)
    idx_c, s_c = match_regions(scaled, v, return_scores=True)
    np.testing.assert_allclose(s_c, s, rtol=1e-5, atol=1e-6)
    # the matched region wherever the best score is clear of the second
    fh = f / np.linalg.norm(f.astype(np.float64), axis=-1, keepdims=True)
    scores = np.einsum("ark,bsk->abrs", fh * v[:, None, :], fh)
    top2 = np.sort(scores, axis=-1)[..., -2:]
    clear = (top2[..., 1] - top2[..., 0]) > 1e-4
    assert (idx_c == idx)[clear].all()


@pytest.mark.parametrize("factor", [1e20, 1e-20])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_float32_features_far_from_one_align_as_at_one(factor):
    # before: at 1e20 the squared channel norms overflowed float32 and the
    # aligner reported "every regional feature is zero"
    f, P, g = _problem()
    scaled = (f * np.float32(factor)).astype(np.float32)
    kw = {"n_candidates": 11, "max_epochs": 2, "weight_steps": 2, "random_state": 0}
    w, v = fit_importance_weights(f, P, n_candidates=11, n_steps=3, random_state=0)
    w_c, v_c = fit_importance_weights(
        scaled, P, n_candidates=11, n_steps=3, random_state=0
    )
    np.testing.assert_allclose(w_c, w, atol=1e-5)
    np.testing.assert_allclose(v_c, v, atol=1e-5)
    for normalize in (True, False):
        ref = RegionalAligner(normalize_channels=normalize, **kw).fit(
            f, soft_labels=P, g=g
        )
        got = RegionalAligner(normalize_channels=normalize, **kw).fit(
            scaled, soft_labels=P, g=g
        )
        np.testing.assert_allclose(
            got.components_["input"], ref.components_["input"], atol=1e-5
        )
        # the automatic scale carries the factor (raw features) or not
        expected = ref.scales_["input"] * (1.0 if normalize else factor)
        assert got.scales_["input"] == pytest.approx(expected, rel=1e-5)
        np.testing.assert_allclose(
            got.transform(scaled), ref.transform(f), rtol=1e-4, atol=1e-5
        )


# ---------------------------------------------------------------------------
# bad input: a ValueError that names the argument, never a cast
# ---------------------------------------------------------------------------
def _spoil(x, how):
    """x made complex (numpy or torch) or given a NaN / inf entry."""
    x = np.array(x, dtype=np.float64)
    if how == "complex":
        return x + 1j
    if how == "complex tensor":
        return torch.tensor(x + 1j)
    x.flat[1] = np.nan if how == "nan" else np.inf
    return x


_HOW = ["complex", "complex tensor", "nan", "inf"]


@settings(max_examples=20, deadline=None)
@given(
    how=st.sampled_from(_HOW),
    argument=st.sampled_from(["features", "soft_labels"]),
)
def test_fit_importance_weights_names_bad_input(how, argument):
    f, P, _ = _problem()
    args = {"features": f, "soft_labels": P}
    args[argument] = _spoil(args[argument], how)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a cast would warn; none may happen
        with pytest.raises(ValueError, match=argument):
            fit_importance_weights(**args, n_candidates=3, n_steps=1)


@settings(max_examples=20, deadline=None)
@given(
    how=st.sampled_from(_HOW),
    argument=st.sampled_from(["features", "channel_weights"]),
)
def test_match_regions_names_bad_input(how, argument):
    f, _, _ = _problem()
    args = {"features": f, "channel_weights": np.full((12, 8), 1 / 8)}
    args[argument] = _spoil(args[argument], how)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=argument):
            match_regions(**args)


@settings(max_examples=20, deadline=None)
@given(how=st.sampled_from(_HOW), argument=st.sampled_from(["X", "soft_labels", "g"]))
def test_regional_aligner_names_bad_input(how, argument):
    f, P, g = _problem()
    args = {"X": f, "soft_labels": P, "g": g}
    args[argument] = _spoil(args[argument], how)
    # NaN in X is reported for the layer the array becomes
    name = "regions" if argument == "X" and how in ("nan", "inf") else argument
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=name):
            RegionalAligner(max_epochs=1, weight_steps=1).fit(**args)


def test_bad_settings_are_named():
    f, P, _ = _problem()
    bad = [
        ({"n_candidates": 0}, "n_candidates"),
        ({"kappa_p": -1.0}, "kappa_p"),
        ({"kappa_m": float("nan")}, "kappa_m"),
        ({"n_steps": -1}, "n_steps"),
        ({"lr": float("inf")}, "lr"),
        ({"momentum": 1.5}, "momentum"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"temperature": 0.0}, "temperature"),
    ]
    for kwargs, name in bad:
        with pytest.raises(ValueError, match=f"'{name}' parameter"):
            fit_importance_weights(f, P, **kwargs)
    with pytest.raises(ValueError, match="'chunk_size' parameter"):
        match_regions(f, chunk_size=-2)
    with pytest.raises(ValueError, match="'kappa_p' parameter"):
        sample_distribution(P, [[1, 2]] * 12, kappa_p=float("nan"))
    with pytest.raises(ValueError, match="'n_samples' parameter"):
        draw_candidates(0, 1)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("error::UserWarning")  # torch's read-only warning
def test_read_only_arrays_give_the_same_results():
    f, P, g = _problem()
    ro_f, ro_P, ro_g = _read_only(f, P, g)
    kw = {"n_candidates": 5, "n_steps": 2, "random_state": 0}
    np.testing.assert_array_equal(
        fit_importance_weights(ro_f, ro_P, **kw)[0],
        fit_importance_weights(f, P, **kw)[0],
    )
    np.testing.assert_array_equal(match_regions(ro_f), match_regions(f))
    al = {"n_candidates": 5, "max_epochs": 1, "weight_steps": 1, "random_state": 0}
    np.testing.assert_array_equal(
        RegionalAligner(**al).fit_transform(ro_f, soft_labels=ro_P, g=ro_g),
        RegionalAligner(**al).fit_transform(f, soft_labels=P, g=g),
    )


def test_no_convergence_warning_is_lost_to_validation():
    # the public function's validation wrapper keeps the stage's warning
    f, P, _ = _problem()
    with pytest.warns(ConvergenceWarning, match="importance weights"):
        fit_importance_weights(f, P, n_candidates=11, lr=1e4, n_steps=1, random_state=0)
