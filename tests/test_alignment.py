"""Tests of skvmf.alignment: sample distribution, region matching, importance
weights and RegionalAligner (SPEC 4-5), against brute-force numpy references.
"""

import warnings

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax
from scipy.stats import chisquare
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from skvmf import alignment
from skvmf._kernels import matching as mk
from skvmf._kernels.kappa import TorchKappa
from skvmf._torch.devices import torch_generator
from skvmf.alignment import (
    RegionalAligner,
    draw_candidates,
    fit_importance_weights,
    match_regions,
    sample_distribution,
)
from skvmf.features import FeatureSet
from skvmf.vmf import revised_kappa

# many small torch ops: on a shared two-core machine a second OpenMP thread
# makes them tens of times slower
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------
# numpy references (loops on purpose: independent of the vectorised kernels)
# ---------------------------------------------------------------------------
def _unit(x):
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def ref_match(f, v=None, pairs=None):
    """s_ij^(r) and r'_ij(r) by loops; pairs: list of (i, [j...])."""
    N, R, K = f.shape
    fh = _unit(np.asarray(f, dtype=np.float64))
    v = np.full((N, K), 1.0 / K) if v is None else np.asarray(v, dtype=np.float64)
    if pairs is None:
        pairs = [(i, list(range(N))) for i in range(N)]
    S = np.empty((len(pairs), len(pairs[0][1]), R))
    I = np.empty(S.shape, dtype=np.int64)
    for a, (i, js) in enumerate(pairs):
        for b, j in enumerate(js):
            for r in range(R):
                vals = [np.sum(v[i] * fh[i, r] * fh[j, q]) for q in range(R)]
                S[a, b, r] = max(vals)
                I[a, b, r] = int(np.argmax(vals))
    return S, I


def ref_sample_distribution(P, anchors, cand, kappa_p):
    ph = P / np.linalg.norm(P, axis=1, keepdims=True)
    out = np.empty(cand.shape)
    for a, i in enumerate(anchors):
        out[a] = softmax(kappa_p * np.array([ph[i] @ ph[j] for j in cand[a]]))
    return out


def ref_importance_kl(f, P, w, v, anchors, cand, kappa_p, kappa_m):
    """SPEC 4's KL(P(.|x_i) || Q(.|x_i)) per anchor."""
    pairs = [(i, list(cand[a])) for a, i in enumerate(anchors)]
    v_images = np.ones((f.shape[0], f.shape[2]))
    v_images[anchors] = v  # row i: the channel weights of anchor i
    S, _ = ref_match(f, v_images, pairs)  # (a, n, R)
    Pj = ref_sample_distribution(P, anchors, cand, kappa_p)
    out = []
    for a in range(len(anchors)):
        z = np.zeros(cand.shape[1])
        for r in range(f.shape[1]):
            z += w[a, r] * log_softmax(kappa_m * S[a, :, r])
        log_q = log_softmax(z)
        out.append(np.sum(Pj[a] * (np.log(Pj[a]) - log_q)))
    return np.array(out)


def ref_aligner_loss(
    lam, f, g, P, w, match, anchors, cand, *, scale, kappa_p, sigma, frozen=None
):
    """L_sim and L_align of SPEC 5 per anchor.

    ``frozen``: (anchor norms, candidate norms, kappas) to use instead of the
    current ones in L_sim's experts (the faithful surrogate, whose gradient
    the faithful mode follows; L_align always normalises h exactly).
    """
    h = np.einsum("nrk,dk->nrd", f, lam) / scale
    d = lam.shape[0]
    Pj = ref_sample_distribution(P, anchors, cand, kappa_p)
    sims, aligns, norms = [], [], []
    for a, i in enumerate(anchors):
        R = f.shape[1]
        n_i = np.array([np.linalg.norm(h[i, r]) for r in range(R)])
        n_j = np.array(
            [[np.linalg.norm(h[j, match[i, j, r]]) for r in range(R)] for j in cand[a]]
        )
        kap = revised_kappa(n_i, d, sigma=sigma)
        norms.append((n_i, n_j, kap))
        true_n_i = n_i
        if frozen is not None:
            n_i, n_j, kap = frozen[a]
        z = np.zeros(len(cand[a]))
        for r in range(R):
            cos = np.array(
                [
                    h[i, r] @ h[j, match[i, j, r]] / (n_i[r] * n_j[b, r])
                    for b, j in enumerate(cand[a])
                ]
            )
            z += w[i, r] * log_softmax(kap[r] * cos)
        log_q = log_softmax(z)
        sims.append(np.sum(Pj[a] * (np.log(Pj[a]) - log_q)))
        cos_g = [
            h[i, r] @ g[i] / (true_n_i[r] * np.linalg.norm(g[i])) for r in range(R)
        ]
        aligns.append(-np.sum(w[i] * np.array(cos_g)))
    return np.array(sims), np.array(aligns), norms


def planted(
    n_per_class=20, n_classes=3, R=9, K=128, signal=(0, 1, 2), seed=0, confidence=0.7
):
    """Regions ``signal`` carry a class prototype, the others are noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    protos = rng.normal(size=(n_classes, K))
    f = rng.normal(size=(len(y), R, K)).astype(np.float32)
    f[:, list(signal), :] += 2.0 * protos[y][:, None, :]
    directions = np.linalg.qr(rng.normal(size=(3, 3)))[0][:n_classes]
    g = 3.0 * directions[y]
    P = np.full((len(y), n_classes), (1 - confidence) / (n_classes - 1))
    P[np.arange(len(y)), y] = confidence
    return f, P, g, y


# ---------------------------------------------------------------------------
# match_regions
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
def test_match_regions_equals_brute_force(rng, weighted):
    f = rng.normal(size=(6, 5, 4))
    f[2, 3] = 0.0  # a zero region: no direction, scores 0, no NaN
    v = rng.random((6, 4)) if weighted else None
    S_ref, I_ref = ref_match(f, v)
    tv = None if v is None else torch.tensor(v)
    idx, s = match_regions(torch.tensor(f), tv, return_scores=True)
    assert idx.dtype == torch.int16 and idx.shape == (6, 6, 5)
    np.testing.assert_allclose(s.numpy(), S_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(idx.numpy(), I_ref)
    # numpy float32 input: float32 arithmetic, numpy int16 output
    idx32, s32 = match_regions(f, v, return_scores=True)
    assert isinstance(idx32, np.ndarray) and idx32.dtype == np.int16
    np.testing.assert_allclose(s32, S_ref, atol=1e-6)
    # chunked (one anchor at a time) and unchunked give the same results
    for chunk in (1, 4, 6):
        idx_c, s_c = match_regions(f, v, chunk_size=chunk, return_scores=True)
        _assert_same_matching(f, v, idx_c, s_c, idx32, s32)


def _assert_same_matching(f, v, idx_a, s_a, idx_b, s_b, atol=1e-6):
    """Two float32 matchings agree: scores to ``atol`` (matmuls of different
    shapes round differently, by ~3e-8 on some BLAS), indices wherever the
    best score beats the runner-up by more than that."""
    np.testing.assert_allclose(s_a, s_b, rtol=0, atol=atol)
    S, _ = ref_match(f, v)  # float64 scores of every region pair
    fh = _unit(np.asarray(f, dtype=np.float64))
    N, R, K = fh.shape
    vv = np.full((N, K), 1.0 / K) if v is None else np.asarray(v, dtype=np.float64)
    pairs = np.einsum("irk,ik,jsk->ijrs", fh, vv, fh)
    top2 = np.sort(pairs, axis=-1)[..., -2:]
    separated = top2[..., 1] - top2[..., 0] > 2 * atol
    assert separated.mean() > 0.5  # the check is not vacuous
    np.testing.assert_array_equal(idx_a[separated], idx_b[separated])
    np.testing.assert_allclose(S, s_a, atol=atol)


def test_match_regions_candidate_blocks(rng, monkeypatch):
    f = rng.normal(size=(7, 4, 3))
    full, s_full = match_regions(f, return_scores=True)
    # a tiny budget forces one anchor per chunk and candidate blocks of one
    monkeypatch.setattr(mk, "_BUDGET_CPU", 1)
    blocked, s_blocked = match_regions(f, return_scores=True)
    _assert_same_matching(f, None, blocked, s_blocked, full, s_full)


def test_match_regions_anchors_and_candidates(rng):
    f = rng.normal(size=(8, 4, 5))
    v = rng.random((8, 5))
    anchors = np.array([3, 0, 7])
    cand = np.array([[1, 2, 5], [4, 6, 7], [0, 3, 1]])
    idx, s = match_regions(
        torch.tensor(f), v, anchors=anchors, candidates=cand, return_scores=True
    )
    S_ref, I_ref = ref_match(f, v, [(i, list(c)) for i, c in zip(anchors, cand)])
    np.testing.assert_array_equal(idx.numpy(), I_ref)
    np.testing.assert_allclose(s.numpy(), S_ref, rtol=1e-12)
    # anchors alone: rows of the full matching
    full = match_regions(f, v)
    np.testing.assert_array_equal(match_regions(f, v, anchors=anchors), full[anchors])


def test_match_regions_ties_and_symmetry():
    # identical regions: the first maximiser wins, as numpy's argmax
    f = np.ones((2, 3, 2))
    assert (match_regions(f) == 0).all()
    # uniform weights: the score block of (j, i) is the transpose of (i, j)'s,
    # so s_ji is the column maximum of (i, j)'s block
    rng = np.random.default_rng(1)
    f = rng.normal(size=(4, 3, 5))
    _, s = match_regions(torch.tensor(f), return_scores=True)
    fh = _unit(f)
    full = np.einsum("irk,jsk->ijrs", fh, fh) / 5
    np.testing.assert_allclose(s.numpy(), full.max(-1), rtol=1e-12)
    np.testing.assert_allclose(s.numpy().transpose(1, 0, 2), full.max(-2), rtol=1e-12)


def test_match_regions_errors(rng):
    f = rng.normal(size=(4, 3, 2))
    with pytest.raises(ValueError, match=r"shape \(n_images, n_regions"):
        match_regions(f[0])
    with pytest.raises(ValueError, match="int16"):
        match_regions(np.zeros((1, 32768, 1), dtype=np.float32))
    with pytest.raises(ValueError, match="channel_weights must have shape"):
        match_regions(f, np.ones((4, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        match_regions(f, -np.ones((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        bad = f.copy()
        bad[0, 0, 0] = np.nan
        match_regions(bad)
    with pytest.raises(ValueError, match="include the anchor"):
        match_regions(f, candidates=[[1], [1], [0], [1]])
    with pytest.raises(ValueError, match="outside"):
        match_regions(f, anchors=[0], candidates=[[4]])
    with pytest.raises(ValueError, match="chunk_size"):
        match_regions(f, chunk_size=0)


# ---------------------------------------------------------------------------
# sample distribution and candidates
# ---------------------------------------------------------------------------
def test_sample_distribution_formula(rng):
    P = rng.dirichlet(np.ones(4), size=9)
    anchors = np.array([0, 5, 8])
    cand = np.array([[1, 2, 3], [0, 8, 4], [7, 6, 5]])
    ref = ref_sample_distribution(P, anchors, cand, 5.0)
    out = sample_distribution(P, cand, anchors=anchors)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-13)
    np.testing.assert_allclose(out.sum(1), 1.0)
    tout = sample_distribution(torch.tensor(P), cand, anchors=anchors, kappa_p=5.0)
    assert isinstance(tout, torch.Tensor)
    np.testing.assert_allclose(tout.numpy(), ref, rtol=1e-13)
    # logits are refused, candidates containing the anchor too
    with pytest.raises(ValueError, match="probabilities"):
        sample_distribution(np.log(P), cand, anchors=anchors)
    with pytest.raises(ValueError, match="include the anchor"):
        sample_distribution(P, [[0, 1]], anchors=[0])


def test_draw_candidates_distinct_and_uniform():
    S = draw_candidates(12, 11, random_state=0)
    for i, row in enumerate(S):  # every other image exactly once
        assert sorted(row) == [j for j in range(12) if j != i]
    S = draw_candidates(6, 2, anchors=np.full(3000, 2), random_state=1)
    assert S.shape == (3000, 2)
    assert (S != 2).all() and (S[:, 0] != S[:, 1]).all()
    # each of the 5 others is included with probability 2/5
    counts = np.bincount(S.ravel(), minlength=6)
    assert counts[2] == 0
    assert chisquare(counts[[0, 1, 3, 4, 5]]).pvalue > 1e-3
    # reproducible
    np.testing.assert_array_equal(
        draw_candidates(30, 5, random_state=3), draw_candidates(30, 5, random_state=3)
    )
    with pytest.raises(ValueError, match="n_candidates"):
        draw_candidates(5, 5)


# ---------------------------------------------------------------------------
# importance weights
# ---------------------------------------------------------------------------
def test_importance_loss_equals_numpy(rng):
    N, R, K, C = 8, 4, 5, 3
    f = rng.normal(size=(N, R, K))
    P = rng.dirichlet(np.ones(C), size=N)
    w = rng.dirichlet(np.ones(R), size=3)
    v = rng.dirichlet(np.ones(K), size=3)
    anchors = np.array([1, 4, 6])
    cand = np.array([[0, 2, 3, 7], [5, 6, 7, 0], [1, 2, 3, 4]])
    kappa_m = 30.0  # spreads the experts so every term matters
    ref = ref_importance_kl(f, P, w, v, anchors, cand, 5.0, kappa_m)
    fhat = mk.normalize_channels(torch.tensor(f))
    phat = mk.unit_rows(torch.tensor(P))
    out = mk.importance_loss(
        torch.tensor(w),
        torch.tensor(v),
        fhat,
        phat,
        torch.tensor(anchors),
        torch.tensor(cand),
        5.0,
        kappa_m,
    )
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10)


def test_matched_scores_gradient_flows_through_argmax(rng):
    a, n, R, K = 2, 3, 4, 5
    anchor = torch.tensor(rng.normal(size=(a, R, K)))
    cand = torch.tensor(rng.normal(size=(a, n, R, K)))
    v = torch.tensor(rng.random((a, K)), requires_grad=True)
    weights = torch.tensor(rng.normal(size=(a, R, n)))
    (
        mk._MatchedScores.apply(v, anchor, cand, mk.Workspace()) * weights
    ).sum().backward()
    custom = v.grad.clone()
    v.grad = None
    # plain autograd through a dense score tensor and torch.max
    scores = torch.einsum("ark,ak,ajsk->arjs", anchor, v, cand)
    (scores.max(dim=-1).values * weights).sum().backward()
    np.testing.assert_allclose(custom.numpy(), v.grad.numpy(), rtol=1e-12)


@pytest.fixture(scope="module")
def planted_importance():
    f, P, _, y = planted(
        n_per_class=10, n_classes=2, R=4, K=256, signal=(0,), confidence=0.9
    )
    w, v, losses = fit_importance_weights(
        f, P, n_candidates=10, random_state=0, return_losses=True
    )
    return f, P, w, v, losses


def test_importance_weights_planted_region(planted_importance):
    f, P, w, v, losses = planted_importance
    # on the simplex
    assert (w >= 0).all() and (v >= 0).all()
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(v.sum(1), 1.0, rtol=1e-5)
    # the loss decreases over the steps
    assert losses[-1] < 0.1 * losses[0]
    assert np.all(losses[-5:] < losses[0])
    # the region that decides the class gets most of the weight
    assert (w.argmax(1) == 0).all()
    assert w[:, 0].mean() > 0.5


def test_importance_weights_chunking_is_exact(planted_importance):
    f, P, w, v, _ = planted_importance
    # one image per chunk = one image at a time: identical maths
    w1, v1 = fit_importance_weights(f, P, n_candidates=10, random_state=0, chunk_size=1)
    np.testing.assert_allclose(w1, w, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(v1, v, rtol=1e-4, atol=1e-7)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_importance_weights_one_step_by_hand(rng):
    # one SGD step from uniform weights, then abs + L1 normalisation
    N, R, K = 6, 3, 4
    f = rng.normal(size=(N, R, K))
    P = rng.dirichlet(np.ones(3), size=N)
    lr = 0.01
    w, v = fit_importance_weights(
        torch.tensor(f),
        P,
        n_candidates=3,
        n_steps=1,
        lr=lr,
        random_state=5,
        step_control=False,
    )
    cand = mk.draw_candidates(N, torch.arange(N), 3, torch_generator(5))
    w0 = torch.full((N, R), 1 / R, dtype=torch.float64, requires_grad=True)
    v0 = torch.full((N, K), 1 / K, dtype=torch.float64, requires_grad=True)
    kl = mk.importance_loss(
        w0,
        v0,
        mk.normalize_channels(torch.tensor(f)),
        mk.unit_rows(torch.tensor(P)),
        torch.arange(N),
        cand,
        5.0,
        1000.0,
    ).sum()
    kl.backward()
    for param, fitted in ((w0, w), (v0, v)):
        step = param.detach() - lr * (param.grad + 5e-4 * param.detach())
        expected = step.abs() / step.abs().sum(1, keepdim=True)
        np.testing.assert_allclose(fitted.numpy(), expected.numpy(), rtol=1e-10)


def planted_one_region(K, seed, N=40, R=16, C=4):
    """ReLU noise; one region per image, at a random place, carries its
    class prototype (the benchmark's planted data, smaller)."""
    rng = np.random.default_rng(seed)
    y = np.arange(N) % C
    f = rng.normal(size=(N, R, K))
    f[np.arange(N), rng.integers(0, R, size=N)] += 2.0 * rng.normal(size=(C, K))[y]
    logits = 4.0 * np.eye(C)[y] + rng.normal(size=(N, C))
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return np.maximum(f, 0.0).astype(np.float32), P


@pytest.mark.parametrize("K", [8, 64, 512])
@pytest.mark.parametrize("kappa_m", [1000.0, "auto"])
def test_importance_loss_falls_at_every_channel_count(K, kappa_m):
    # kappa_m = 1000 is the reference's value for K = 512; plain SGD steps
    # overshoot at small K, the step control keeps every fit falling
    for seed in range(3):
        f, P = planted_one_region(K, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            _, _, losses = fit_importance_weights(
                f, P, n_candidates=39, kappa_m=kappa_m, random_state=seed,
                return_losses=True,
            )  # fmt: skip
        assert losses.shape == (21,) and np.isfinite(losses).all()
        assert losses[-1] < losses[0]
        # all candidates every step: the same sets, so with the step control
        # no image's loss, hence not their mean, ever rises
        assert np.all(np.diff(losses) <= 1e-6 * losses[0])


def test_importance_step_control_refuses_rising_steps():
    f, P = planted_one_region(8, 0)
    kw = {"n_candidates": 39, "lr": 300.0, "random_state": 0, "return_losses": True}
    # a huge step: plain SGD raises the loss and says so ...
    with pytest.warns(ConvergenceWarning, match="importance weights: the loss did"):
        _, _, plain = fit_importance_weights(f, P, step_control=False, **kw)
    assert plain[-1] > plain[0]
    # ... the step control refuses it, halving the step until one is taken
    w, v, controlled = fit_importance_weights(f, P, **kw)
    assert controlled[-1] < controlled[0]
    assert np.all(np.diff(controlled) <= 1e-6 * controlled[0])
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-5)
    # one step of 1e4 is refused for every image: the weights stay uniform
    # (and the flat curve is reported)
    with pytest.warns(ConvergenceWarning, match="did not fall"):
        w1, v1 = fit_importance_weights(
            f, P, n_candidates=39, lr=1e4, n_steps=1, random_state=0
        )
    np.testing.assert_allclose(w1, 1.0 / 16, rtol=1e-6)
    np.testing.assert_allclose(v1, 1.0 / 8, rtol=1e-6)


@pytest.mark.parametrize("step_control", [True, False])
def test_importance_same_sets_shortcut(step_control, monkeypatch):
    # n_candidates = N - 1: nothing is drawn and a step is checked at the next
    # step's evaluation; the same fit as drawing (permuted) full sets and
    # checking each step on its own candidates
    f, P = planted_one_region(16, 1, N=20, R=6)
    kw = {"n_candidates": 19, "lr": 0.5, "random_state": 0, "return_losses": True}
    kw["step_control"] = step_control
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        w, v, curve = fit_importance_weights(f, P, **kw)
        monkeypatch.setattr(mk, "same_sets", lambda n, N: False)
        w_d, v_d, curve_d = fit_importance_weights(f, P, **kw)
    np.testing.assert_allclose(curve, curve_d, rtol=1e-4)
    np.testing.assert_allclose(w, w_d, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(v, v_d, rtol=1e-3, atol=1e-6)


def test_importance_kappa_m_auto():
    f, P = planted_one_region(64, 0, N=10, R=4)
    kw = {"n_candidates": 9, "n_steps": 3, "random_state": 0}
    auto = fit_importance_weights(f, P, kappa_m="auto", **kw)
    fixed = fit_importance_weights(f, P, kappa_m=1000.0 * 64 / 512, **kw)
    np.testing.assert_array_equal(auto[0], fixed[0])
    with pytest.raises(ValueError, match="kappa_m"):
        fit_importance_weights(f, P, kappa_m="sharp", **kw)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_importance_weights_errors(rng):
    f = rng.normal(size=(5, 3, 4))
    P = rng.dirichlet(np.ones(2), size=5)
    with pytest.raises(ValueError, match="4 rows but there are 5"):
        fit_importance_weights(f, P[:4])
    with pytest.raises(ValueError, match="n_candidates"):
        fit_importance_weights(f, P, n_candidates=5)
    with pytest.raises(ValueError, match="probabilities"):
        fit_importance_weights(f, P - 0.5, n_candidates=2)
    # logits are accepted with from_logits=True
    w, _ = fit_importance_weights(
        f, np.log(P) * 4, n_candidates=2, n_steps=2, from_logits=True
    )
    assert np.isfinite(w).all()


# ---------------------------------------------------------------------------
# the aligner's loss and gradients
# ---------------------------------------------------------------------------
@pytest.fixture
def small_problem(rng):
    N, R, K, d, C = 7, 3, 4, 3, 3
    f = _unit(rng.normal(size=(N, R, K)))
    g = rng.normal(size=(N, d))
    P = rng.dirichlet(np.ones(C), size=N)
    w = rng.dirichlet(np.ones(R), size=N)
    _, match = ref_match(f, rng.random((N, K)))
    anchors = np.array([2, 5])
    cand = np.array([[0, 1, 6], [4, 3, 2]])
    lam = rng.normal(size=(d, K)) * 20  # strengths of order 1 (scale 40)
    names = ("f", "g", "P", "w", "match", "anchors", "cand", "lam")
    return dict(zip(names, (f, g, P, w, match, anchors, cand, lam)))


def _torch_loss(p, lam, exact, scale=40.0, sigma=1.0):
    N, R, K = p["f"].shape
    kappa_fn = TorchKappa("revised", lam.shape[0], sigma, "cpu")
    return mk.aligner_loss(
        lam,
        torch.tensor(p["f"]).reshape(N * R, K),
        R,
        scale,
        torch.tensor(p["g"]),
        mk.unit_rows(torch.tensor(p["P"])),
        torch.tensor(p["w"]),
        torch.tensor(p["match"]).to(torch.int16),
        torch.tensor(p["anchors"]),
        torch.tensor(p["cand"]),
        kappa_fn=kappa_fn,
        kappa_p=5.0,
        exact=exact,
    )


@pytest.mark.parametrize("dedupe", [False, True])
@pytest.mark.parametrize("exact", [False, True])
def test_aligner_loss_equals_numpy(small_problem, exact, dedupe, monkeypatch):
    # dedupe: each distinct matched candidate region embedded once (the path
    # taken from 128 channels on)
    monkeypatch.setattr(mk, "_DEDUPE_MIN_CHANNELS", 1 if dedupe else 10**9)
    p = small_problem
    l_sim, l_align = _torch_loss(p, torch.tensor(p["lam"]), exact)
    ref_sim, ref_align, _ = ref_aligner_loss(
        p["lam"], p["f"], p["g"], p["P"], p["w"], p["match"], p["anchors"],
        p["cand"], scale=40.0, kappa_p=5.0, sigma=1.0,
    )  # fmt: skip
    # the exact mode interpolates kappa in log-log (relative error < 1e-4)
    rtol = 1e-4 if exact else 1e-10
    np.testing.assert_allclose(l_sim.detach().numpy(), ref_sim, rtol=rtol)
    np.testing.assert_allclose(l_align.detach().numpy(), ref_align, rtol=1e-10)


def test_faithful_gradient_is_the_surrogate_gradient(small_problem):
    p = small_problem
    lam = torch.tensor(p["lam"], requires_grad=True)
    l_sim, l_align = _torch_loss(p, lam, exact=False)
    (l_sim + 0.1 * l_align).sum().backward()
    # the surrogate: norms and kappa frozen at the current Lambda
    _, _, frozen = ref_aligner_loss(
        p["lam"], p["f"], p["g"], p["P"], p["w"], p["match"], p["anchors"],
        p["cand"], scale=40.0, kappa_p=5.0, sigma=1.0,
    )  # fmt: skip

    def surrogate(lam_np):
        s, a, _ = ref_aligner_loss(
            lam_np, p["f"], p["g"], p["P"], p["w"], p["match"], p["anchors"],
            p["cand"], scale=40.0, kappa_p=5.0, sigma=1.0, frozen=frozen,
        )  # fmt: skip
        return np.sum(s + 0.1 * a)

    eps = 1e-6
    fd = np.zeros_like(p["lam"])
    for idx in np.ndindex(*p["lam"].shape):
        up, down = p["lam"].copy(), p["lam"].copy()
        up[idx] += eps
        down[idx] -= eps
        fd[idx] = (surrogate(up) - surrogate(down)) / (2 * eps)
    np.testing.assert_allclose(lam.grad.numpy(), fd, rtol=1e-5, atol=1e-8)
    # ... which is not the gradient of the true loss
    assert not np.allclose(lam.grad.numpy(), _exact_fd(p), rtol=1e-2)


def _exact_fd(p, eps=1e-6):
    def true_loss(lam_np):
        s, a, _ = ref_aligner_loss(
            lam_np, p["f"], p["g"], p["P"], p["w"], p["match"], p["anchors"],
            p["cand"], scale=40.0, kappa_p=5.0, sigma=1.0,
        )  # fmt: skip
        return np.sum(s + 0.1 * a)

    fd = np.zeros_like(p["lam"])
    for idx in np.ndindex(*p["lam"].shape):
        up, down = p["lam"].copy(), p["lam"].copy()
        up[idx] += eps
        down[idx] -= eps
        fd[idx] = (true_loss(up) - true_loss(down)) / (2 * eps)
    return fd


def test_exact_gradient_is_the_true_gradient(small_problem):
    p = small_problem

    def total(lam):
        l_sim, l_align = _torch_loss(p, lam, exact=True)
        return (l_sim + 0.1 * l_align).sum()

    lam = torch.tensor(p["lam"], requires_grad=True)
    assert torch.autograd.gradcheck(total, (lam,), eps=1e-6, atol=1e-7, rtol=1e-4)
    # and close to finite differences of the loss with the exact kappa(l)
    # (up to the log-log interpolation of kappa's table)
    total(lam).backward()
    np.testing.assert_allclose(lam.grad.numpy(), _exact_fd(p), rtol=2e-2, atol=1e-6)


def _loss_grad(p, lam, sim_weight=1.0, align_weight=0.1, scale=40.0):
    """The hand-written faithful loss and gradient (the aligner's steps)."""
    N, R, K = p["f"].shape
    return mk.aligner_loss_grad(
        lam,
        torch.tensor(p["f"]).reshape(N * R, K),
        R,
        scale,
        torch.tensor(p["g"]),
        mk.unit_rows(torch.tensor(p["P"])),
        torch.tensor(p["w"]),
        torch.tensor(p["match"]).to(torch.int16),
        torch.tensor(p["anchors"]),
        torch.tensor(p["cand"]),
        kappa_fn=TorchKappa("revised", lam.shape[0], 1.0, "cpu"),
        kappa_p=5.0,
        sim_weight=sim_weight,
        align_weight=align_weight,
    )


@pytest.mark.parametrize("rows", ["all", "gathered", "distinct"])
def test_hand_gradient_is_the_faithful_autograd_gradient(
    small_problem, rows, monkeypatch
):
    # "all": every row embedded (the anchors' candidates cover the images);
    # "gathered"/"distinct": the matched rows gathered, each distinct one once
    p = dict(small_problem)
    if rows != "all":  # 2 anchors x 3 candidates of 7 images: force gathering
        p["f"] = np.concatenate([p["f"]] * 4)
        p["g"], p["P"], p["w"] = (np.concatenate([p[k]] * 4) for k in "gPw")
        p["match"] = np.tile(p["match"], (4, 4, 1))
    monkeypatch.setattr(mk, "_DEDUPE_MIN_CHANNELS", 1 if rows == "distinct" else 99)
    lam = torch.tensor(p["lam"], requires_grad=True)
    l_sim, l_align = _torch_loss(p, lam, exact=False)
    (l_sim + 0.1 * l_align).mean().backward()
    loss, grad = _loss_grad(p, lam.detach())
    np.testing.assert_allclose(
        loss.numpy(), (l_sim + 0.1 * l_align).detach(), rtol=1e-12
    )
    np.testing.assert_allclose(grad.numpy(), lam.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_faithful_align_loss_normalises_h_exactly(small_problem):
    # SPEC 5: only the experts' norms (and kappa) are stop-gradient; L_align
    # differentiates cos(h, g) exactly, so with L_sim off the faithful and
    # exact gradients agree, and equal finite differences of L_align
    p = small_problem
    lam = torch.tensor(p["lam"], requires_grad=True)
    _, l_align = _torch_loss(p, lam, exact=True)
    l_align.mean().backward()
    _, faithful = _loss_grad(p, lam.detach(), sim_weight=0.0, align_weight=1.0)
    np.testing.assert_allclose(faithful.numpy(), lam.grad.numpy(), rtol=1e-10)

    def align(lam_np):
        _, a, _ = ref_aligner_loss(
            lam_np, p["f"], p["g"], p["P"], p["w"], p["match"], p["anchors"],
            p["cand"], scale=40.0, kappa_p=5.0, sigma=1.0,
        )  # fmt: skip
        return np.mean(a)

    eps = 1e-6
    fd = np.zeros_like(p["lam"])
    for idx in np.ndindex(*p["lam"].shape):
        up, down = p["lam"].copy(), p["lam"].copy()
        up[idx] += eps
        down[idx] -= eps
        fd[idx] = (align(up) - align(down)) / (2 * eps)
    np.testing.assert_allclose(faithful.numpy(), fd, rtol=1e-5, atol=1e-10)
    # cos(h, g) does not change along h: the gradient has no component that
    # only scales Lambda (Euler: sum lam * dL/dlam = 0 for a 0-homogeneous L)
    assert abs(float((faithful * lam.detach()).sum())) < 1e-10
    # with L_sim on, the faithful gradient is not the exact one
    _, with_sim = _loss_grad(p, lam.detach())
    lam.grad = None
    l_sim, l_align = _torch_loss(p, lam, exact=True)
    (l_sim + 0.1 * l_align).mean().backward()
    assert not np.allclose(with_sim.numpy(), lam.grad.numpy(), rtol=1e-2)


# ---------------------------------------------------------------------------
# RegionalAligner
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted_fit():
    # confident soft labels: at 0.7 uniform importance weights already fit
    # P(x_j | x_i) (KL 0.07 at the start), leaving w unidentified
    f, P, g, y = planted(confidence=0.9)
    fs = FeatureSet(soft_labels=P, regions={"conv": f}, g=g, grid=(3, 3))
    aligner = RegionalAligner(n_candidates=30, random_state=0)
    out = aligner.fit_transform(fs)
    return fs, aligner, out


def _cos_with_g(h, g):
    num = np.einsum("nrd,nd->nr", h, g)
    return num / (np.linalg.norm(h, axis=-1) * np.linalg.norm(g, axis=-1)[:, None])


def test_aligner_planted_regions_align_with_g(planted_fit):
    fs, aligner, out = planted_fit
    h = out.h["conv"]
    assert h.shape == (60, 9, 3) and h.dtype == np.float32
    assert np.isfinite(h).all()
    cos = _cos_with_g(h, fs.g).mean(axis=0)
    assert cos[:3].min() > 0.9  # the class-carrying regions point along g
    assert np.abs(cos[3:]).max() < 0.5  # noise regions do not
    # they also carry more importance weight, region for region
    w = aligner.importance_weights_["conv"]
    assert w[:, :3].mean() > 1.5 * w[:, 3:].mean()
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-5)


def test_aligner_loss_decreases_and_attributes(planted_fit):
    fs, aligner, out = planted_fit
    # the loss at the initial Lambda, then each epoch's mean
    curve = aligner.loss_curve_["conv"]
    assert curve.shape == (21,) and np.isfinite(curve).all()
    assert curve[-5:].mean() < curve[0]
    assert aligner.layers_ == ["conv"]
    assert aligner.components_["conv"].shape == (3, 128)
    assert aligner.importance_weights_["conv"].shape == (60, 9)
    assert aligner.channel_weights_["conv"].shape == (60, 128)
    # the importance loss at the uniform start, then after each step
    w_curve = aligner.importance_loss_curve_["conv"]
    assert w_curve.shape == (21,) and w_curve[-1] < w_curve[0]
    assert aligner.kappa_m_ == {"conv": 1000.0}
    assert aligner.n_features_in_ == {"conv": 128}
    assert aligner.n_regions_ == {"conv": 9}
    assert aligner.n_components_ == 3 and aligner.n_candidates_ == 30
    assert aligner.n_iter_ == 20


def test_aligner_transform_reproduces_h(planted_fit, rng):
    fs, aligner, out = planted_fit
    lam = aligner.components_["conv"].astype(np.float64)
    unit = _unit(fs.regions["conv"].astype(np.float64))
    # scale="auto": the mean strength of the embedded (here unit) features
    s = np.linalg.norm(unit, axis=-1).mean()
    assert aligner.scales_["conv"] == pytest.approx(s, rel=1e-5)
    expected = unit @ lam.T / s
    np.testing.assert_allclose(out.h["conv"], expected, rtol=1e-4, atol=1e-7)
    # FeatureSet in, FeatureSet out, input untouched
    assert isinstance(out, FeatureSet) and not fs.h
    np.testing.assert_array_equal(aligner.transform(fs).h["conv"], out.h["conv"])
    # new images (different N): the fitted Lambda, no refit
    new = rng.normal(size=(5, 9, 128)).astype(np.float32)
    h_new = aligner.transform(FeatureSet(regions={"conv": new})).h["conv"]
    np.testing.assert_allclose(h_new, _unit(new) @ lam.T / s, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(aligner.transform(new), h_new, rtol=1e-6)
    # tensors in, tensors out
    h_t = aligner.transform(torch.tensor(new))
    assert isinstance(h_t, torch.Tensor)
    np.testing.assert_allclose(h_t.numpy(), h_new, rtol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_aligner_array_api_matches_featureset(rng):
    f, P, g, _ = planted(n_per_class=5, R=4, K=16)
    kw = {"n_candidates": 5, "max_epochs": 2, "weight_steps": 2, "random_state": 3}
    a = RegionalAligner(**kw).fit(f, soft_labels=P, g=g)
    b = RegionalAligner(**kw).fit(FeatureSet(soft_labels=P, regions={"input": f}, g=g))
    np.testing.assert_array_equal(a.components_["input"], b.components_["input"])
    h = RegionalAligner(**kw).fit_transform(f, soft_labels=P, g=g)
    np.testing.assert_allclose(h, a.transform(f), rtol=1e-6)
    # logits with from_logits=True give the FeatureSet's soft labels (T = 4)
    logits = rng.normal(size=P.shape) * 3
    fs = FeatureSet(logits=logits, regions={"input": f}, g=g)
    c = RegionalAligner(**kw).fit(fs)
    d = RegionalAligner(from_logits=True, **kw).fit(f, soft_labels=logits, g=g)
    np.testing.assert_allclose(
        c.components_["input"], d.components_["input"], rtol=1e-5
    )


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_aligner_layers_are_independent(rng):
    f, P, g, _ = planted(n_per_class=5, R=4, K=16)
    fs = FeatureSet(soft_labels=P, regions={"a": f, "b": f[:, ::-1] * 2}, g=g)
    kw = {"n_candidates": 5, "max_epochs": 2, "weight_steps": 2, "random_state": 0}
    both = RegionalAligner(**kw).fit(fs)
    only_a = RegionalAligner("a", **kw).fit(fs)
    assert both.layers_ == ["a", "b"] and only_a.layers_ == ["a"]
    np.testing.assert_array_equal(both.components_["a"], only_a.components_["a"])
    out = both.transform(fs)
    assert set(out.h) == {"a", "b"}
    # fit leaves the parameters alone and is reproducible with random_state
    assert both.get_params() == RegionalAligner(**kw).get_params()
    again = RegionalAligner(**kw).fit(fs)
    np.testing.assert_array_equal(again.components_["b"], both.components_["b"])


@pytest.mark.parametrize(
    "params",
    [
        {"gradient": "exact"},
        {"batch_size": 8},
        {"normalize_channels": False},
    ],
)
def test_aligner_options_learn(params):
    f, P, g, _ = planted(n_per_class=10, R=6, K=64)
    fs = FeatureSet(soft_labels=P, regions={"conv": f}, g=g)
    al = RegionalAligner(n_candidates=15, max_epochs=10, random_state=0, **params)
    h = al.fit_transform(fs).h["conv"]
    assert np.isfinite(h).all()
    cos = _cos_with_g(h, g).mean(axis=0)
    assert cos[:3].mean() > cos[3:].mean() + 0.3
    assert al.loss_curve_["conv"][-3:].mean() < al.loss_curve_["conv"][0]


def test_aligner_start_loss_is_the_loss_before_any_step():
    # lr = 0 and all other images as candidates: Lambda never moves and every
    # candidate set is the same, so each epoch's mean is the starting loss
    f, P, g, _ = planted(n_per_class=4, R=4, K=8)
    al = RegionalAligner(
        n_candidates=11, max_epochs=2, weight_steps=2, lr=0.0, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # flat, on purpose
        al.fit(f, soft_labels=P, g=g)
    curve = al.loss_curve_["input"]
    assert curve.shape == (3,)
    np.testing.assert_allclose(curve, curve[0], rtol=1e-5)
    # no epochs, no steps: empty curves, nothing to judge, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        none = RegionalAligner(n_candidates=5, max_epochs=0, weight_steps=0)
        none.fit(f, soft_labels=P, g=g)
    assert none.loss_curve_["input"].shape == (0,)
    assert none.importance_loss_curve_["input"].shape == (0,)


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_aligner_warns_when_a_stage_does_not_fall(n_jobs, monkeypatch):
    f, P, g, _ = planted(n_per_class=4, R=4, K=8)
    fs = FeatureSet(soft_labels=P, regions={"a": f, "b": f[:, ::-1]}, g=g)
    kw = {"n_candidates": 11, "max_epochs": 3, "random_state": 0, "n_jobs": n_jobs}
    # huge importance steps with the step control off: that loss rises, and
    # the warning (raised in the parent process) names stage and layer
    diverging = RegionalAligner(weight_lr=1e4, weight_step_control=False, **kw)
    with pytest.warns(ConvergenceWarning) as record:
        diverging.fit(fs)
    messages = [str(r.message) for r in record if r.category is ConvergenceWarning]
    for layer in ("a", "b"):
        assert any(
            m.startswith(f"importance weights at layer {layer!r}: the loss did not")
            for m in messages
        ), messages
    # an alignment loss that rises (monkeypatched epochs, in this process)
    if n_jobs is None:
        rising = iter(range(100))
        monkeypatch.setattr(
            alignment, "_align_epoch", lambda *a, **k: 10.0 + next(rising)
        )
        with pytest.warns(ConvergenceWarning) as record:
            RegionalAligner(**kw).fit(fs)
        messages = [str(r.message) for r in record]
        for layer in ("a", "b"):
            assert any(m.startswith(f"alignment at layer {layer!r}") for m in messages)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_aligner_zero_regions_stay_finite(capsys):
    f, P, g, _ = planted(n_per_class=4, R=4, K=8)
    f[:, 3] = 0.0
    g[0] = 0.0
    al = RegionalAligner(
        n_candidates=5, max_epochs=2, weight_steps=2, random_state=0, verbose=2
    )
    h = al.fit_transform(f, soft_labels=P, g=g)
    assert np.isfinite(al.components_["input"]).all()
    assert np.isfinite(h).all() and (h[:, 3] == 0).all()
    # verbose=2: progress bars and one message per epoch on stderr
    err = capsys.readouterr().err
    assert "input: epoch 1 loss" in err and "importance weights" in err


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_aligner_errors():
    f, P, g, _ = planted(n_per_class=4, R=4, K=8)
    al = RegionalAligner(n_candidates=5, max_epochs=1, weight_steps=1)
    with pytest.raises(ValueError, match="same number of images"):
        al.fit(f, soft_labels=P[:-1], g=g)
    with pytest.raises(ValueError, match="same number of images"):
        al.fit(f, soft_labels=P, g=g[:-1])
    with pytest.raises(ValueError, match="probabilities"):
        al.fit(f, soft_labels=P * 5, g=g)
    with pytest.raises(ValueError, match="nothing to align"):
        al.fit(f[:, :1], soft_labels=P, g=g)
    with pytest.raises(ValueError, match="SampleProjector"):
        al.fit(FeatureSet(soft_labels=P, regions={"c": f}))
    with pytest.raises(ValueError, match="SampleProjector"):
        al.fit(f, soft_labels=P)
    with pytest.raises(ValueError, match="soft labels"):
        al.fit(f, g=g)
    with pytest.raises(ValueError, match="unknown layer 'x'"):
        RegionalAligner("x").fit(FeatureSet(soft_labels=P, regions={"c": f}, g=g))
    with pytest.raises(ValueError, match="g must have shape"):
        al.fit(f, soft_labels=P, g=g[:, :1])
    with pytest.raises(ValueError, match="NaN"):
        bad = f.copy()
        bad[1, 1, 1] = np.inf
        al.fit(bad, soft_labels=P, g=g)
    with pytest.raises(ValueError, match="at least 3 images"):
        al.fit(f[:2], soft_labels=P[:2], g=g[:2])
    with pytest.raises(ValueError, match="do not pass"):
        al.fit(FeatureSet(soft_labels=P, regions={"c": f}, g=g), g=g)
    with pytest.raises(ValueError, match="no logits"):
        RegionalAligner(from_logits=True).fit(
            FeatureSet(soft_labels=P, regions={"c": f}, g=g)
        )
    with pytest.raises(ValueError, match="gradient"):
        RegionalAligner(gradient="fast").fit(f, soft_labels=P, g=g)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            RegionalAligner(device="cuda").fit(f, soft_labels=P, g=g)
    # too many candidates: clipped with a warning
    with pytest.warns(UserWarning, match="using n_candidates=11"):
        clipped = RegionalAligner(max_epochs=1, weight_steps=1).fit(
            f, soft_labels=P, g=g
        )
    assert clipped.n_candidates_ == 11
    # transform
    with pytest.raises(NotFittedError):
        RegionalAligner().transform(f)
    fitted = RegionalAligner(n_candidates=5, max_epochs=1, weight_steps=1).fit(
        FeatureSet(soft_labels=P, regions={"c": f, "d": f}, g=g)
    )
    with pytest.raises(ValueError, match="lacks the fitted layer"):
        fitted.transform(FeatureSet(regions={"c": f}))
    with pytest.raises(ValueError, match="fitted on 2 layers"):
        fitted.transform(f)
    with pytest.raises(ValueError, match="channels"):
        fitted.transform(FeatureSet(regions={"c": f[..., :4], "d": f}))


def test_aligner_clone_and_params():
    al = RegionalAligner(["a", "b"], kappa_m=500.0, batch_size=4, random_state=2)
    params = al.get_params()
    assert params["layers"] == ["a", "b"] and params["kappa_m"] == 500.0
    twin = clone(al)
    assert twin.get_params() == params and twin is not al
    twin.set_params(lr=0.1, gradient="exact")
    assert twin.lr == 0.1 and al.lr == 0.01
    assert not hasattr(clone(al), "components_")


# parametrize_with_checks feeds 2-D X and y: RegionalAligner needs 3-D regional
# features with soft labels and g (a FeatureSet), so every check that fits it
# on such data fails by design with a clear ValueError.
_NEEDS_FEATURESET = (
    "fit needs 3-D regional features (N, R, K) with soft labels and g "
    "(a FeatureSet); the checks pass 2-D X and y"
)


def _expected_failed_checks(estimator):
    names = [
        "check_estimators_dtypes",
        "check_fit_score_takes_y",
        "check_estimators_fit_returns_self",
        "check_dtype_object",
        "check_estimators_empty_data_messages",
        "check_pipeline_consistency",
        "check_estimators_nan_inf",
        "check_estimators_overwrite_params",
        "check_estimators_pickle",
        "check_f_contiguous_array_estimator",
        "check_transformer_data_not_an_array",
        "check_transformer_general",
        "check_transformer_preserve_dtypes",
        "check_fit2d_predict1d",
        "check_methods_subset_invariance",
        "check_fit2d_1sample",
        "check_fit2d_1feature",
        "check_dict_unchanged",
        "check_dont_overwrite_parameters",
        "check_fit_idempotent",
        "check_fit_check_is_fitted",
        "check_n_features_in",
        "check_methods_sample_order_invariance",
        "check_readonly_memmap_input",
        "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit",
    ]
    expected = dict.fromkeys(names, _NEEDS_FEATURESET)
    # array_api_support=True adds these, for every installed namespace,
    # device and dtype; they too fit on 2-D X. Their FeatureSet equivalents
    # are in tests/test_alignment_array_api.py.
    for name in (
        "check_array_api_input",
        "check_array_api_mixed_inputs",
        "check_array_api_same_namespace",
    ):
        expected[name] = (
            _NEEDS_FEATURESET + "; tests/test_alignment_array_api.py checks "
            "namespaces and devices with FeatureSets"
        )
    return expected


@parametrize_with_checks(
    [RegionalAligner(max_epochs=1, weight_steps=1)],
    expected_failed_checks=_expected_failed_checks,
    xfail_strict=True,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_parallel_layers_equal_sequential_fit():
    rng = np.random.default_rng(5)
    n = 24
    P = rng.dirichlet(np.ones(3), size=n)
    fs = FeatureSet(
        regions={
            "a": rng.random((n, 4, 6)).astype(np.float32),
            "b": rng.random((n, 4, 5)).astype(np.float32),
        },
        grid=(2, 2),
        soft_labels=P,
        g=rng.normal(size=(n, 3)),
    )
    params = {"n_candidates": 8, "max_epochs": 2, "weight_steps": 2, "random_state": 0}
    seq = RegionalAligner(**params).fit(fs)
    par = RegionalAligner(**params, n_jobs=2).fit(fs)
    for layer in ("a", "b"):
        np.testing.assert_array_equal(par.components_[layer], seq.components_[layer])
        np.testing.assert_array_equal(par.loss_curve_[layer], seq.loss_curve_[layer])
        assert par.scales_[layer] == seq.scales_[layer]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_losses_fall_with_training(seed):
    # fit on one sample of the planted problem, judge on another drawn from
    # the same prototypes: a trained Lambda mimics P(x_j|x_i) of new images
    # better than its random start
    f, P, g, y = planted(n_per_class=20, confidence=0.9, seed=seed)
    fit, held = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    sets = [
        FeatureSet(soft_labels=P[m], regions={"conv": f[m]}, g=g[m], grid=(3, 3))
        for m in (fit, held)
    ]
    kw = {"n_candidates": 29, "weight_steps": 10, "random_state": seed}
    start = RegionalAligner(max_epochs=0, **kw).fit(sets[0])
    trained = RegionalAligner(max_epochs=10, **kw).fit(sets[0])
    before = start.held_out_losses(sets[1])["conv"]
    after = trained.held_out_losses(sets[1])["conv"]
    assert np.isfinite([after["sim"], after["align"]]).all()
    assert after["sim"] >= 0 and after["sim"] < 0.8 * before["sim"]
    assert -1 <= after["align"] < before["align"]  # regions turned toward g
    # neither depends on align_weight's value at evaluation
    other = clone(trained).set_params(align_weight=5.0)
    other.__dict__.update({k: v for k, v in vars(trained).items() if k.endswith("_")})
    again = other.held_out_losses(sets[1])["conv"]
    assert again == pytest.approx(after)


def test_held_out_losses_refuse_arrays_and_unfitted():
    f, P, g, _ = planted(n_per_class=4)
    with pytest.raises(NotFittedError):
        RegionalAligner().held_out_losses(
            FeatureSet(soft_labels=P, regions={"c": f}, g=g)
        )
    al = RegionalAligner(n_candidates=5, max_epochs=1, weight_steps=1).fit(
        FeatureSet(soft_labels=P, regions={"c": f}, g=g)
    )
    with pytest.raises(ValueError, match="needs a FeatureSet"):
        al.held_out_losses(f)
