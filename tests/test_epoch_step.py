"""The aligner's one-anchor epoch step (``_matching.aligner_loss_grad``) and
its fast path: the distinct matched rows, d' padded to a multiple of 4."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skvmf._kernels import matching as mk
from skvmf._kernels.kappa import TorchKappa


@settings(max_examples=40, deadline=None)
@given(
    a=st.integers(1, 3),
    n=st.integers(1, 6),
    R=st.integers(1, 9),
    seed=st.integers(0, 2**31 - 1),
)
def test_distinct_regions_against_a_set_reference(a, n, R, seed):
    # every (anchor, candidate, region) entry points at its own feature row,
    # each distinct (candidate slot, region) row is listed once, in slot then
    # region order (numpy's sorted unique per slot as the reference)
    rng = np.random.default_rng(seed)
    N = n + 2
    candidates = np.stack([rng.choice(N, n, replace=False) for _ in range(a)])
    matched = rng.integers(0, R, size=(a, n, R))
    rows, position = mk._distinct_regions(
        torch.tensor(candidates), torch.tensor(matched)
    )
    rows, position = rows.numpy(), position.numpy()
    expected = [
        candidates[i, j] * R + r
        for i in range(a)
        for j in range(n)
        for r in np.unique(matched[i, j])
    ]
    np.testing.assert_array_equal(rows, expected)
    wanted = (candidates[..., None] * R + matched).reshape(-1)
    np.testing.assert_array_equal(rows[position], wanted)


def _step(dtype, feats, R, g, phat, w, matching, anchors, cand, lam):
    return mk.aligner_loss_grad(
        lam.to(dtype),
        feats.to(dtype),
        R,
        7.0,
        g.to(dtype),
        phat.to(dtype),
        w.to(dtype),
        matching,
        anchors,
        cand,
        kappa_fn=TorchKappa("revised", lam.shape[0], 0.5, "cpu"),
        kappa_p=5.0,
        sim_weight=1.0,
        align_weight=1.0,
    )


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("D", [2, 3, 4, 5])
def test_float32_step_matches_float64_at_a_gathered_size(D):
    # K >= 128 and few candidates: the step gathers each distinct matched
    # row once (over 400 rows here); d' is padded with zero rows to a
    # multiple of 4 for the products. The float64 step equals autograd's
    # float64 faithful loss (rtol 1e-12); float32 against float64: loss
    # within 1e-5 of |L_sim| + |L_align| per anchor, gradient within 1e-5
    # of its largest entry (measured here: under 6e-7 for both)
    gen = torch.Generator().manual_seed(3 + D)
    N, R, K, n = 40, 49, 128, 12
    feats = mk.normalize_channels(
        torch.relu(torch.randn(N, R, K, generator=gen, dtype=torch.float64))
    ).reshape(N * R, K)
    matching = torch.randint(0, R, (N, N, R), generator=gen, dtype=torch.int16)
    g = torch.randn(N, D, generator=gen, dtype=torch.float64)
    phat = mk.unit_rows(torch.rand(N, 6, generator=gen, dtype=torch.float64))
    w = torch.rand(N, R, generator=gen, dtype=torch.float64)
    w = w / w.sum(dim=1, keepdim=True)
    lam = 0.1 * torch.randn(D, K, generator=gen, dtype=torch.float64)
    for anchor in range(0, N, 7):
        anchors = torch.tensor([anchor])
        cand = mk.draw_candidates(N, anchors, n, gen)
        args = (feats, R, g, phat, w, matching, anchors, cand, lam)
        loss64, grad64 = _step(torch.float64, *args)
        loss32, grad32 = _step(torch.float32, *args)
        l_sim, l_align = mk.aligner_loss(
            lam, feats, R, 7.0, g, phat, w, matching, anchors, cand,
            kappa_fn=TorchKappa("revised", D, 0.5, "cpu"), kappa_p=5.0,
            exact=False,
        )  # fmt: skip
        np.testing.assert_allclose(loss64, l_sim + l_align, rtol=1e-12)
        scale = (l_sim.abs() + l_align.abs()).numpy()
        assert np.all(np.abs(loss32.double().numpy() - loss64.numpy()) <= 1e-5 * scale)
        err = (grad32.double() - grad64).abs().max() / grad64.abs().max()
        assert float(err) <= 1e-5
