import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import orthogonal_procrustes
from scipy.special import log_softmax, softmax, xlogy
from scipy.stats import entropy, pearsonr
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from skvmf._kernels.kappa import TorchKappa
from skvmf._numerics.soft_labels import check_soft_labels
from skvmf._utils.convergence import loss_fell
from skvmf.features import FeatureSet
from skvmf.projection import (
    SampleProjector,
    _objective,
    procrustes_rotation,
)
from skvmf.vmf import revised_kappa

# ---------------------------------------------------------------------------
# check_soft_labels
# ---------------------------------------------------------------------------


def test_check_soft_labels_accepts_probabilities_and_renormalises():
    P = np.array([[0.2, 0.8], [0.5, 0.5 + 5e-5], [1.0 + 5e-7, -5e-7]])
    out = check_soft_labels(P)
    assert out.dtype == np.float64 and out.shape == (3, 2)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    assert (out >= 0).all() and (out <= 1).all()
    np.testing.assert_allclose(out[0], [0.2, 0.8])
    # integer one-hot labels are fine
    np.testing.assert_array_equal(check_soft_labels(np.eye(3, dtype=int)), np.eye(3))


@pytest.mark.parametrize("temperature", [1.0, 4.0, 0.5])
def test_check_soft_labels_from_logits_is_tempered_softmax(temperature):
    z = np.random.default_rng(0).normal(scale=30.0, size=(5, 4))
    z[0] = [1000.0, -1000.0, 0.0, 999.0]  # stable in log space
    out = check_soft_labels(z, from_logits=True, temperature=temperature)
    np.testing.assert_allclose(out, softmax(z / temperature, axis=1), rtol=1e-12)
    assert np.isfinite(out).all()


def test_check_soft_labels_errors():
    with pytest.raises(ValueError, match=r"row 1 has the entry 2\.5.*from_logits=True"):
        check_soft_labels([[0.5, 0.5], [2.5, -1.0]])
    with pytest.raises(ValueError, match=r"row 0 has the entry -0\.2"):
        check_soft_labels([[-0.2, 1.2]])
    with pytest.raises(ValueError, match=r"row 1 sums to 0\.9.*from_logits=True"):
        check_soft_labels([[0.5, 0.5], [0.4, 0.5]])
    with pytest.raises(ValueError, match=r"finite.*row 1 contains nan"):
        check_soft_labels([[0.5, 0.5], [np.nan, 0.5]])
    with pytest.raises(ValueError, match=r"finite"):
        check_soft_labels([[np.inf, 0.5]], from_logits=True)
    with pytest.raises(ValueError, match=r"has 2 rows but there are 3 samples"):
        check_soft_labels([[0.5, 0.5], [0.5, 0.5]], n_samples=3)
    with pytest.raises(ValueError, match=r"at least 2 columns.*\(2, 1\)"):
        check_soft_labels([[1.0], [1.0]])
    with pytest.raises(ValueError, match=r"2-D.*\(2,\)"):
        check_soft_labels([0.5, 0.5])
    with pytest.raises(ValueError, match="numeric"):
        check_soft_labels([["a", "b"]])
    with pytest.raises(ValueError, match="temperature"):
        check_soft_labels([[1.0, 2.0]], from_logits=True, temperature=0.0)
    with pytest.raises(ValueError, match=r"each row of logits must sum to 1; row 0"):
        check_soft_labels([[0.7, 0.5]], name="logits")
    with pytest.raises(ValueError, match=r"logits has 1 rows"):
        check_soft_labels([[0.5, 0.5]], name="logits", n_samples=2)


# ---------------------------------------------------------------------------
# synthetic data and independent numpy references
# ---------------------------------------------------------------------------


def _clusters(n=200, n_classes=4, dim=64, seed=0):
    """Gaussian class clusters whose soft labels come from a known softmax
    model; a per-sample confidence factor makes P's entropy vary."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    means = rng.normal(size=(n_classes, dim))
    means *= 40.0 / np.linalg.norm(means, axis=1, keepdims=True)
    confidence = rng.uniform(0.05, 1.5, n)
    F = confidence[:, None] * means[y] + 3.0 * rng.normal(size=(n, dim))
    logits = 0.1 * F @ (means / 40.0).T + 0.3 * rng.normal(size=(n, n_classes))
    return F, softmax(logits, axis=1), y


def _numpy_model(
    G, P, kappa="revised", sigma=1.0, frozen=None, freeze_mu_norm=False, m_norm0=None
):
    """SPEC 3 in numpy: (loss, mu, log pi, log Q) for embeddings G.

    ``frozen`` = (strengths, kappas) replaces the quantities that carry no
    gradient in the faithful surrogate by their values at M0; mu_y is always
    normalised exactly (SPEC 3). ``freeze_mu_norm=True`` also freezes
    ||m_y|| (the faithful mode before it was fixed).
    """
    strength = np.linalg.norm(G, axis=1)
    if frozen is None:
        if kappa == "revised":
            k = revised_kappa(strength, G.shape[1], sigma=sigma)
        else:
            k = np.full(len(G), float(kappa))
        unit = G / strength[:, None]
    else:
        strength0, k = frozen
        unit = G / strength0[:, None]
    m = P.T @ (k[:, None] * unit)
    m_norm = m_norm0 if freeze_mu_norm else np.linalg.norm(m, axis=1)
    mu = m / m_norm[:, None]
    log_pi = np.log(P.mean(axis=0))
    log_q = log_softmax(log_pi + k[:, None] * (unit @ mu.T), axis=1)
    loss = np.sum(xlogy(P, P) - P * log_q)
    return loss, mu, log_pi, log_q, (strength, k)


# ---------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------

# fits with lr=1e-300 read the initial M; their flat curve is (rightly) a
# ConvergenceWarning, which those tests expect and silence
_NO_STEP_WARNING = pytest.mark.filterwarnings(
    "ignore:projection.*did not fall:sklearn.exceptions.ConvergenceWarning"
)


@pytest.mark.parametrize("gradient", ["faithful", "exact"])
def test_fit_agrees_with_dnn_and_strength_tracks_confidence(gradient):
    F, P, _ = _clusters()
    proj = SampleProjector(gradient=gradient, random_state=0).fit(F, soft_labels=P)
    agreement = np.mean(proj.predict(F) == P.argmax(axis=1))
    assert agreement >= 0.9
    strength = np.linalg.norm(proj.transform(F), axis=1)
    r, _ = pearsonr(strength, entropy(P, axis=1))
    assert r < -0.6
    # the loss went down a lot from the random start
    assert proj.loss_ < 0.25 * proj.loss_curve_[0]
    # the curve holds the start and the value after every step
    assert len(proj.loss_curve_) == proj.n_iter_ + 1 == 2001


@pytest.mark.parametrize(("em_steps", "max_iter"), [(1, 1000), (3, 50)])
def test_em_mode_fits_and_its_model_is_em_from_the_teacher(em_steps, max_iter):
    F, P, _ = _clusters(n=120)
    proj = SampleProjector(em_steps=em_steps, max_iter=max_iter, random_state=0)
    proj.fit(F, soft_labels=P)
    if max_iter == 1000:
        assert np.mean(proj.predict(F) == P.argmax(axis=1)) >= 0.9
    # directions_/priors_: the teacher's model on the final g, then em_steps
    # EM iterations (numpy, supplement Eq. 3)
    G = proj.transform(F)
    strength = np.linalg.norm(G, axis=1)
    k = revised_kappa(strength, 3)
    unit = G / strength[:, None]
    _, mu, log_pi, _, _ = _numpy_model(G, P)
    for _ in range(em_steps):
        resp = softmax(log_pi + k[:, None] * (unit @ mu.T), axis=1)
        m = resp.T @ (k[:, None] * unit)
        mu = m / np.linalg.norm(m, axis=1, keepdims=True)
        log_pi = np.log(resp.mean(axis=0))
    np.testing.assert_allclose(proj.directions_, mu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.log(proj.priors_), log_pi, rtol=1e-9)
    # unlike the teacher mode, the priors are not the DNN's mean soft labels
    assert not np.allclose(proj.priors_, P.mean(axis=0), atol=1e-6)
    log_q = log_softmax(log_pi + k[:, None] * (unit @ mu.T), axis=1)
    assert proj.loss_ == pytest.approx(np.sum(xlogy(P, P) - P * log_q), rel=1e-9)


@_NO_STEP_WARNING
@pytest.mark.parametrize("kappa", ["revised", 6.0])
@pytest.mark.parametrize("sigma", [1.0, 0.7])
def test_category_model_loss_and_posteriors_match_numpy(kappa, sigma):
    F, P, _ = _clusters(n=50, dim=12)
    proj = SampleProjector(kappa=kappa, sigma=sigma, max_iter=40, random_state=1)
    proj.fit(F, soft_labels=P)
    G = F @ proj.components_.T / 40.0
    np.testing.assert_allclose(proj.transform(F), G, rtol=1e-12)
    loss, mu, log_pi, log_q, _ = _numpy_model(G, P, kappa=kappa, sigma=sigma)
    np.testing.assert_allclose(proj.directions_, mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.log(proj.priors_), log_pi, rtol=1e-12)
    assert proj.loss_ == pytest.approx(loss, rel=1e-10)
    np.testing.assert_allclose(proj.predict_log_proba(F), log_q, rtol=1e-10)
    np.testing.assert_allclose(proj.predict_proba(F).sum(axis=1), 1.0)
    # the recorded curve is the same objective at the initial M
    M0 = SampleProjector(max_iter=1, lr=1e-300, weight_decay=0, random_state=1)
    M0 = M0.fit(F, soft_labels=P).components_
    first = _numpy_model(F @ M0.T / 40.0, P, kappa=kappa, sigma=sigma)[0]
    assert proj.loss_curve_[0] == pytest.approx(first, rel=1e-10)


def _torch_grad(M, F, P, kappa, exact, dim=3, sigma=1.0):
    Mt = torch.tensor(M, dtype=torch.float64, requires_grad=True)
    Pt = torch.tensor(P, dtype=torch.float64)
    kappa_fn = TorchKappa(kappa, dim, sigma, "cpu")
    loss, _ = _objective(
        Mt,
        torch.tensor(F / 40.0, dtype=torch.float64),
        Pt,
        torch.log(Pt),
        torch.log(Pt.mean(dim=0)),
        kappa_fn,
        exact=exact,
    )
    loss.backward()
    return float(loss.detach()), Mt.grad.numpy()


def _finite_difference(fun, M, step=1e-6):
    grad = np.zeros_like(M)
    for idx in np.ndindex(*M.shape):
        e = np.zeros_like(M)
        e[idx] = step
        grad[idx] = (fun(M + e) - fun(M - e)) / (2 * step)
    return grad


@pytest.mark.parametrize("kappa", ["revised", 4.0])
def test_faithful_gradient_is_the_gradient_of_the_stopgrad_surrogate(kappa):
    F, P, _ = _clusters(n=30, n_classes=3, dim=6, seed=2)
    M0 = np.random.default_rng(5).normal(scale=0.5, size=(3, 6))
    loss0, grad = _torch_grad(M0, F, P, kappa, exact=False)
    *_, frozen = _numpy_model(F @ M0.T / 40.0, P, kappa=kappa)

    def surrogate(M):
        return _numpy_model(F @ M.T / 40.0, P, kappa=kappa, frozen=frozen)[0]

    assert surrogate(M0) == pytest.approx(loss0, rel=1e-12)
    np.testing.assert_allclose(
        grad, _finite_difference(surrogate, M0), rtol=1e-6, atol=1e-8
    )
    # and it differs from the true gradient (norms and kappa do matter)
    true = _finite_difference(
        lambda M: _numpy_model(F @ M.T / 40.0, P, kappa=kappa)[0], M0
    )
    assert not np.allclose(grad, true, rtol=1e-3)
    # and from the surrogate that also stops the gradient of ||m_y|| (the
    # faithful mode before it normalised mu_y exactly)
    G0 = F @ M0.T / 40.0
    strength0, k0 = frozen
    m_norm0 = np.linalg.norm(P.T @ (k0[:, None] * G0 / strength0[:, None]), axis=1)
    old = _finite_difference(
        lambda M: _numpy_model(
            F @ M.T / 40.0,
            P,
            kappa=kappa,
            frozen=frozen,
            freeze_mu_norm=True,
            m_norm0=m_norm0,
        )[0],
        M0,
    )
    assert not np.allclose(grad, old, rtol=1e-3)


def test_faithful_gradient_by_hand_two_samples_two_classes():
    # g_1 = a u1, g_2 = b u2 in the plane, one-hot P, fixed kappa k, equal
    # priors. Faithful: o_i = g_i / stopgrad(||g_i||), mu_y = g_y / ||g_y||
    # exactly, so with q = Q(other class | g_i) = sigmoid(k (cos t - 1)):
    #   dL/dg_1 = q k [(u2 - u1) + (I - u1 u1^T) u2] / a
    # (o_1 . mu_1 contributes u1 / a through o_1 and nothing through mu_1, as
    # mu_1's exact normalisation is orthogonal to mu_1). The tangential part
    # 2 q k (I - u1 u1^T) u2 / a is the true gradient's; the radial part
    # q k (cos t - 1) u1 / a is what the stopped ||g_1|| adds. Detaching
    # ||mu_1|| too would double that radial part.
    a, b, t, k = 2.0, 0.5, 1.0, 3.0
    u1 = np.array([1.0, 0.0])
    u2 = np.array([np.cos(t), np.sin(t)])
    M0 = np.column_stack([a * u1, b * u2])  # F = 40 I, so g_i = M0[:, i]
    F = 40.0 * np.eye(2)
    P = np.eye(2)
    loss, grad = _torch_grad(M0, F, P, k, exact=False, dim=2)
    q = 1.0 / (1.0 + np.exp(-k * (np.cos(t) - 1.0)))
    assert loss == pytest.approx(2 * np.log1p(np.exp(k * (np.cos(t) - 1.0))))

    def by_hand(ui, uj, norm):
        return q * k * ((uj - ui) + (uj - ui * (ui @ uj))) / norm

    np.testing.assert_allclose(grad[:, 0], by_hand(u1, u2, a), rtol=1e-12)
    np.testing.assert_allclose(grad[:, 1], by_hand(u2, u1, b), rtol=1e-12)
    # explicitly, in u1's frame
    np.testing.assert_allclose(
        grad[:, 0], q * k * np.array([np.cos(t) - 1.0, 2 * np.sin(t)]) / a
    )
    # the exact mode's gradient is the tangential part alone
    _, exact = _torch_grad(M0, F, P, k, exact=True, dim=2)
    np.testing.assert_allclose(
        exact[:, 0], 2 * q * k * np.array([0.0, np.sin(t)]) / a, atol=1e-14
    )


@pytest.mark.parametrize("kappa", ["revised", 4.0])
@pytest.mark.parametrize("scale_m", [0.5, 30.0])
def test_exact_gradient_is_the_gradient_of_the_true_objective(kappa, scale_m):
    # scale_m = 30 puts strengths beyond kappa's table (the asymptote)
    F, P, _ = _clusters(n=30, n_classes=3, dim=6, seed=3)
    M0 = np.random.default_rng(6).normal(scale=scale_m, size=(3, 6))
    loss0, grad = _torch_grad(M0, F, P, kappa, exact=True)

    def true_objective(M):
        return _numpy_model(F @ M.T / 40.0, P, kappa=kappa)[0]

    assert true_objective(M0) == pytest.approx(loss0, rel=1e-11)
    step = 1e-6 * scale_m
    np.testing.assert_allclose(
        grad,
        _finite_difference(true_objective, M0, step=step),
        rtol=1e-5,
        atol=1e-6 * np.abs(grad).max(),
    )


def test_exact_kappa_interpolant_matches_revised_kappa():
    from skvmf.vmf import _revised_kappa_table

    for dim, sigma in [(3, 1.0), (5, 0.4)]:
        strengths, _ = _revised_kappa_table(dim, sigma)
        probe = np.concatenate(
            [
                [0.0, 0.3 * strengths[1], 2 * strengths[-1]],
                np.geomspace(1e-4, 1e4, 500),
                strengths[1:40],
            ]
        )
        got = TorchKappa("revised", dim, sigma, "cpu")(
            torch.tensor(probe, dtype=torch.float64)
        ).numpy()
        np.testing.assert_allclose(
            got, revised_kappa(probe, dim, sigma=sigma), rtol=1e-12
        )


@_NO_STEP_WARNING
def test_sgd_update_is_torch_sgd():
    F, P, _ = _clusters(n=40, dim=10)
    proj = SampleProjector(solver="sgd", max_iter=5, random_state=3)
    proj.fit(F, soft_labels=P)  # lr="auto" is the paper's 1e-3 for SGD
    M = torch.nn.Parameter(
        torch.tensor(
            SampleProjector(max_iter=1, lr=1e-300, weight_decay=0, random_state=3)
            .fit(F, soft_labels=P)
            .components_
        )
    )
    opt = torch.optim.SGD([M], lr=1e-3, momentum=0.9, weight_decay=5e-4)
    Pt = torch.tensor(P)
    kappa_fn = TorchKappa("revised", 3, 1.0, "cpu")
    curve, iterates = [], []
    for step in range(6):
        opt.zero_grad()
        loss, _ = _objective(
            M,
            torch.tensor(F / 40.0),
            Pt,
            torch.log(Pt),
            torch.log(Pt.mean(0)),
            kappa_fn,
            exact=False,
        )
        curve.append(float(loss.detach()))
        iterates.append(M.detach().numpy().copy())
        if step < 5:
            loss.backward()
            opt.step()
    # the start, every step and the final iterate
    np.testing.assert_allclose(proj.loss_curve_, curve, rtol=1e-12)
    # the returned M is the iterate of lowest loss, the last one included
    best = int(np.argmin(curve))
    np.testing.assert_allclose(proj.components_, iterates[best], rtol=1e-12)
    assert proj.loss_ == pytest.approx(curve[best], rel=1e-12)


def test_featureset_input_transform_and_score():
    F, P, y = _clusters(n=80)
    names = np.array(["a", "b", "c", "d"])
    fs = FeatureSet(sample=F, soft_labels=P, classes=names)
    proj = SampleProjector(max_iter=300, random_state=0).fit(fs)
    array_fit = SampleProjector(max_iter=300, random_state=0).fit(F, soft_labels=P)
    np.testing.assert_allclose(proj.components_, array_fit.components_)
    out = proj.transform(fs)
    assert isinstance(out, FeatureSet) and out is not fs
    assert fs.g is None and fs.directions is None  # X not mutated
    np.testing.assert_allclose(out.g, F @ proj.components_.T / 40.0)
    np.testing.assert_array_equal(out.directions, proj.directions_)
    np.testing.assert_array_equal(out.priors, proj.priors_)
    np.testing.assert_array_equal(proj.classes_, names)
    assert set(proj.predict(fs)) <= set(names)
    # without y: agreement with the DNN's argmax; with y: accuracy
    agreement = proj.score(fs)
    assert agreement == pytest.approx(np.mean(proj.predict(F) == names[P.argmax(1)]))
    assert proj.score(fs, names[y]) == pytest.approx(
        np.mean(proj.predict(fs) == names[y])
    )
    # logits accepted with from_logits
    logits = np.log(P) * 4.0
    via_logits = SampleProjector(max_iter=300, random_state=0, from_logits=True)
    via_logits.fit(F, soft_labels=logits)
    np.testing.assert_allclose(via_logits.components_, proj.components_, rtol=1e-8)


def test_hard_labels_when_no_soft_labels():
    F, P, y = _clusters(n=80)
    labels = np.array(["w", "x", "y", "z"])[y]
    proj = SampleProjector(max_iter=300, random_state=0).fit(F, labels)
    np.testing.assert_array_equal(proj.classes_, ["w", "x", "y", "z"])
    np.testing.assert_allclose(proj.priors_, 0.25)
    assert proj.score(F, labels) >= 0.9


def test_zero_mass_class_and_large_strengths_stay_finite():
    F, P, _ = _clusters(n=60, n_classes=3)
    P4 = np.concatenate([P, np.zeros((60, 1))], axis=1)  # class 3 never seen
    proj = SampleProjector(max_iter=200, random_state=0).fit(F, soft_labels=P4)
    assert proj.priors_[3] == 0.0
    assert np.isfinite(proj.loss_) and np.isfinite(proj.components_).all()
    assert (proj.predict(F) != 3).all()
    # features 1000x stronger: kappa ~ 1e6, the posteriors stay finite
    proba = proj.predict_proba(1000 * F)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_input_errors():
    F, P, _ = _clusters(n=20, dim=8)
    with pytest.raises(ValueError, match="soft labels"):
        SampleProjector(max_iter=2).fit(F)
    with pytest.raises(ValueError, match="19 rows but there are 20 samples"):
        SampleProjector(max_iter=2).fit(F, soft_labels=P[:19])
    with pytest.raises(ValueError, match="from_logits=True"):
        SampleProjector(max_iter=2).fit(F, soft_labels=np.log(P))
    with pytest.raises(ValueError, match="no sample features"):
        SampleProjector(max_iter=2).fit(FeatureSet(soft_labels=P))
    with pytest.raises(ValueError, match=r"init must have shape.*\(3, 8\).*\(3, 7\)"):
        SampleProjector(max_iter=2, init=np.zeros((3, 7))).fit(F, soft_labels=P)
    with pytest.raises(ValueError, match="single class"):
        SampleProjector(max_iter=2).fit(F, np.zeros(20))
    proj = SampleProjector(max_iter=2).fit(F, soft_labels=P)
    with pytest.raises(ValueError, match="7 features"):
        proj.transform(F[:, :7])
    with pytest.raises(ValueError, match="diverged.*lower lr"):
        SampleProjector(lr=50.0, max_iter=200, random_state=0).fit(
            100 * F, soft_labels=P
        )
    with pytest.raises(ValueError, match="gradient"):
        SampleProjector(gradient="true").fit(F, soft_labels=P)
    with pytest.raises(ValueError, match="cuda"):
        if torch.cuda.is_available():
            raise ValueError("cuda is available; nothing to check")
        SampleProjector(device="cuda").fit(F, soft_labels=P)


# ---------------------------------------------------------------------------
# Procrustes and checkpoints
# ---------------------------------------------------------------------------


def _random_orthogonal(rng, d=3, reflect=False):
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    if (np.linalg.det(Q) < 0) != reflect:
        Q[:, 0] *= -1
    return Q


@pytest.mark.parametrize("reflect", [False, True])
def test_procrustes_recovers_a_known_rotation_despite_outliers(reflect):
    rng = np.random.default_rng(0)
    A = rng.normal(size=(200, 3)) * rng.uniform(0.5, 5.0, size=(200, 1))
    Q = _random_orthogonal(rng, reflect=reflect)
    B = A @ Q + 0.01 * rng.normal(size=A.shape)
    outliers = rng.choice(200, 15, replace=False)
    B[outliers] = 5 * rng.normal(size=(15, 3))  # points that moved
    R = procrustes_rotation(A, B)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.abs(R - Q).max() < 0.01
    # the plain (single pass) fit is pulled away by the outliers
    plain, _ = orthogonal_procrustes(A, B)
    assert np.abs(plain - Q).max() > 2 * np.abs(R - Q).max()
    # second pass == scipy on the kept unit vectors
    Ua = A / np.linalg.norm(A, axis=1, keepdims=True)
    Ub = B / np.linalg.norm(B, axis=1, keepdims=True)
    resid = np.linalg.norm(Ua @ plain - Ub, axis=1)
    keep = np.argsort(resid)[:180]
    ref, _ = orthogonal_procrustes(Ua[keep], Ub[keep])
    np.testing.assert_allclose(R, ref, atol=1e-12)
    # trim=0: scipy on all unit vectors
    ref_all, _ = orthogonal_procrustes(Ua, Ub)
    np.testing.assert_allclose(procrustes_rotation(A, B, trim=0.0), ref_all)


def test_procrustes_errors():
    with pytest.raises(ValueError, match=r"same shape.*\(4, 3\).*\(5, 3\)"):
        procrustes_rotation(np.ones((4, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="trim"):
        procrustes_rotation(np.ones((4, 3)), np.ones((4, 3)), trim=1.0)
    with pytest.raises(ValueError, match="NaN"):
        procrustes_rotation(np.full((4, 3), np.nan), np.ones((4, 3)))


def test_fit_sequence_puts_checkpoints_in_one_frame():
    F, P, _ = _clusters(n=120, dim=32)
    rng = np.random.default_rng(1)
    perm = rng.permutation(32)
    # checkpoint 1: the same information with its feature channels permuted,
    # so the warm start from checkpoint 0's M is meaningless and the fit
    # lands in an arbitrary orientation that Procrustes must undo
    sets = [
        FeatureSet(sample=F, soft_labels=P),
        FeatureSet(sample=F[:, perm], soft_labels=P),
        FeatureSet(sample=F[:, perm] + 0.5 * rng.normal(size=F.shape), soft_labels=P),
    ]
    template = SampleProjector(max_iter=800, random_state=0)
    fits = template.fit_sequence(sets)
    assert not hasattr(template, "components_")
    assert len(fits) == 3
    np.testing.assert_array_equal(fits[0].rotation_, np.eye(3))
    gs = [p.transform(fs.sample) for p, fs in zip(fits, sets)]

    def mean_cos(a, b):
        return np.mean(
            np.sum(a * b, axis=1)
            / np.linalg.norm(a, axis=1)
            / np.linalg.norm(b, axis=1)
        )

    for k in (1, 2):
        R = fits[k].rotation_
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert mean_cos(gs[k], gs[k - 1]) > 0.9
        # directions rotated with M: the posteriors are those of the fit
        assert np.mean(np.sum(fits[k].directions_ * fits[k - 1].directions_, 1)) > 0.9
        assert fits[k].score(sets[k]) >= 0.9
    # without alignment the second frame is not aligned with the first
    lone = SampleProjector(max_iter=800, random_state=0).fit(sets[1])
    assert mean_cos(lone.transform(sets[1].sample), gs[0]) < 0.8
    # the rotation leaves every posterior unchanged
    np.testing.assert_allclose(
        fits[1].predict_proba(sets[1]),
        _unrotated(fits[1]).predict_proba(sets[1]),
        rtol=1e-9,
        atol=1e-12,
    )


def _unrotated(proj):
    other = clone(proj)
    for name in ("components_", "priors_", "classes_", "n_features_in_"):
        setattr(other, name, getattr(proj, name))
    other.components_ = proj.rotation_ @ proj.components_
    other.directions_ = proj.directions_ @ proj.rotation_.T
    return other


@_NO_STEP_WARNING
def test_fit_sequence_warm_start_is_the_mean_of_the_last_three():
    F, P, _ = _clusters(n=40, dim=8)
    sets = [FeatureSet(sample=F, soft_labels=P)] * 5
    fits = SampleProjector(max_iter=1, lr=1e-300, weight_decay=0, random_state=0)
    fits = fits.fit_sequence(sets, trim=0.0)
    # with no training, each fit is its warm start, rotated by Procrustes
    for k in (3, 4):
        start = np.mean([p.components_ for p in fits[k - 3 : k]], axis=0)
        np.testing.assert_allclose(
            fits[k].components_, fits[k].rotation_.T @ start, rtol=1e-6, atol=1e-12
        )


def test_clone_and_params():
    proj = SampleProjector(n_components=2, kappa=3.0, gradient="exact")
    params = clone(proj).get_params()
    assert params["n_components"] == 2 and params["gradient"] == "exact"
    assert params["lr"] == "auto" and params["solver"] == "adam"
    assert params["momentum"] == 0.9
    assert params["weight_decay"] == 5e-4 and params["max_iter"] == 2000
    assert params["scale"] == 40.0 and params["init_std"] == 0.1


# These checks set ``n_components = 1``; the model lives on the sphere of
# dimension d' >= 2 (SPEC 0: kappa(l) and the vMF need d >= 2), so fitting
# refuses it. What they test (order/subset invariance, parameters left alone
# by fit) is tested below with d' = 3.
_N_COMPONENTS_1 = "sets n_components=1; SampleProjector needs n_components >= 2"
_EXPECTED_FAILED = dict.fromkeys(
    (
        "check_dont_overwrite_parameters",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_fit2d_1sample",
        "check_fit2d_1feature",
        "check_fit2d_predict1d",
    ),
    _N_COMPONENTS_1,
)


# the checks fit labels that carry nothing to learn (random data), where 20
# steps need not lower the loss: the ConvergenceWarning is expected there
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [SampleProjector(max_iter=20, random_state=0)],
    expected_failed_checks=lambda est: _EXPECTED_FAILED,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_methods_are_sample_order_and_subset_invariant_and_params_kept():
    F, P, _ = _clusters(n=40, dim=10)
    proj = SampleProjector(max_iter=30, random_state=0)
    before = proj.get_params()
    proj.fit(F, soft_labels=P)
    assert proj.get_params() == before
    idx = np.random.default_rng(0).permutation(40)
    parts = np.array_split(np.arange(40), 4)
    for method in ("transform", "predict_proba", "predict_log_proba"):
        full = getattr(proj, method)(F)
        np.testing.assert_allclose(getattr(proj, method)(F[idx]), full[idx])
        for part in parts:
            np.testing.assert_allclose(getattr(proj, method)(F[part]), full[part])
    full = proj.predict(F)
    np.testing.assert_array_equal(proj.predict(F[idx]), full[idx])
    for part in parts:
        np.testing.assert_array_equal(proj.predict(F[part]), full[part])


# uniform soft labels are explained exactly from the start (every mu_y is the
# same, Q = pi): the loss is 0 and cannot fall, which the health check reports
@pytest.mark.filterwarnings(
    r"ignore:projection \(checkpoint 0\).*did not fall:"
    "sklearn.exceptions.ConvergenceWarning"
)
def test_fit_sequence_keeps_the_better_of_warm_and_fresh_starts():
    # checkpoint 0 carries no class information (uniform soft labels), so M
    # shrinks towards zero; the warm start for checkpoint 1 then starts from
    # that collapse, and the fresh start must win whenever it fits better
    F, P, _ = _clusters(n=120, dim=32)
    uniform = np.full_like(P, 1.0 / P.shape[1])
    sets = [
        FeatureSet(sample=F, soft_labels=uniform),
        FeatureSet(sample=F, soft_labels=P),
    ]
    template = SampleProjector(max_iter=600, random_state=0)
    fits = template.fit_sequence(sets)
    fresh = clone(template).fit(sets[1])
    warm = clone(template).set_params(init=fits[0].components_).fit(sets[1])
    assert fits[1].loss_ == pytest.approx(min(fresh.loss_, warm.loss_), rel=1e-9)
    assert fits[1].warm_started_ == (warm.loss_ <= fresh.loss_)
    assert fits[0].warm_started_ is False


def test_lowest_loss_iterate_and_restarts():
    F, P, _ = _clusters(n=60, dim=16)
    one = SampleProjector(max_iter=300, random_state=0).fit(F, soft_labels=P)
    assert one.loss_ <= min(one.loss_curve_) + 1e-12
    three = SampleProjector(max_iter=300, n_init=3, random_state=0).fit(
        F, soft_labels=P
    )
    assert three.loss_ <= one.loss_ + 1e-12  # the first start is the same


# ---------------------------------------------------------------------------
# solver, stage health and held-out quality
# ---------------------------------------------------------------------------


@_NO_STEP_WARNING
def test_adam_update_is_torch_adam():
    F, P, _ = _clusters(n=40, dim=10)
    proj = SampleProjector(max_iter=5, random_state=3)  # Adam by default
    proj.fit(F, soft_labels=P)
    start = SampleProjector(max_iter=1, lr=1e-300, weight_decay=0, random_state=3)
    M = torch.nn.Parameter(torch.tensor(start.fit(F, soft_labels=P).components_))
    # Adam's lr="auto" bounds the mean sample's move per step to 0.16; the
    # L2 penalty is Adam's coupled weight decay
    lr = 0.16 / np.mean(np.abs(F / 40.0).sum(axis=1))
    opt = torch.optim.Adam([M], lr=lr, weight_decay=5e-4)
    Pt = torch.tensor(P)
    kappa_fn = TorchKappa("revised", 3, 1.0, "cpu")
    curve, iterates = [], []
    for step in range(6):
        opt.zero_grad()
        loss, _ = _objective(
            M,
            torch.tensor(F / 40.0),
            Pt,
            torch.log(Pt),
            torch.log(Pt.mean(0)),
            kappa_fn,
            exact=False,
        )
        curve.append(float(loss.detach()))
        iterates.append(M.detach().numpy().copy())
        if step < 5:
            loss.backward()
            opt.step()
    np.testing.assert_allclose(proj.loss_curve_, curve, rtol=1e-10)
    best = int(np.argmin(curve))
    np.testing.assert_allclose(proj.components_, iterates[best], rtol=1e-10)


def test_loss_curve_runs_from_the_start_to_the_final_iterate():
    F, P, _ = _clusters(n=60, dim=16)
    proj = SampleProjector(max_iter=50, random_state=0).fit(F, soft_labels=P)
    assert len(proj.loss_curve_) == 51
    # the last value is the loss at the final M, here also the lowest
    final = SampleProjector(init=proj.components_, max_iter=1, lr=1e-300)
    with pytest.warns(ConvergenceWarning):  # a flat one-step curve
        final.fit(F, soft_labels=P)
    assert proj.loss_curve_[-1] == pytest.approx(final.loss_curve_[0], rel=1e-12)


def test_convergence_warning_names_the_stage():
    F, P, _ = _clusters(n=60, dim=16)
    good = SampleProjector(max_iter=300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # it falls: silent
        good.fit(F, soft_labels=P)
    # from that optimum, Adam steps of size ~1 on every entry of M throw the
    # fit away: the curve rises (and the returned M is still the start)
    bad = SampleProjector(init=good.components_, solver="adam", lr=1.0, max_iter=3)
    with pytest.warns(ConvergenceWarning, match=r"^projection: the loss did not fall"):
        bad.fit(F, soft_labels=P)
    assert bad.loss_curve_[-1] > bad.loss_curve_[0]
    np.testing.assert_allclose(bad.components_, good.components_)

    sets = [FeatureSet(sample=F, soft_labels=P)] * 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fits = bad.fit_sequence(sets)
    messages = [
        str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)
    ]
    assert any(m.startswith("projection (checkpoint 0): ") for m in messages)
    # one warning per kept checkpoint fit, none for the inner fits
    assert not any(m.startswith("projection: ") for m in messages)
    assert all(m.startswith("projection (checkpoint ") for m in messages)
    for k, fit in enumerate(fits):
        named = [m for m in messages if m.startswith(f"projection (checkpoint {k})")]
        assert len(named) == (loss_fell(fit.loss_curve_) is False)


def _planted(n=160, dim=16, noise=0.5, seed=0):
    """Features whose soft labels come from a known projection and revised
    vMF model (four directions of a tetrahedron in d' = 3), so argmax Q of
    the right M agrees with argmax P on every image."""
    rng = np.random.default_rng(seed)
    mu = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    y = np.arange(n) % 4
    o = mu[y] + noise * rng.normal(size=(n, 3))
    o /= np.linalg.norm(o, axis=1, keepdims=True)
    g = rng.uniform(0.3, 4.0, n)[:, None] * o
    F = 40.0 * g @ rng.normal(size=(dim, 3)).T + 0.5 * rng.normal(size=(n, dim))
    kappa = revised_kappa(np.linalg.norm(g, axis=1), 3)
    return F, softmax(kappa[:, None] * (o @ mu.T), axis=1)


@pytest.mark.parametrize(
    "params",
    [
        {"max_iter": 100},
        {"gradient": "exact", "max_iter": 100},
        {"solver": "sgd", "max_iter": 300},
    ],
)
def test_held_out_agreement_over_seeds(params, one_torch_thread):
    F, P = _planted()
    fit = (np.arange(len(P)) // 4) % 2 == 0  # every class in both halves
    agreement = []
    for seed in range(4):
        proj = SampleProjector(random_state=seed, **params)
        proj.fit(F[fit], soft_labels=P[fit])
        agreement.append(np.mean(proj.predict(F[~fit]) == P[~fit].argmax(axis=1)))
    assert np.mean(agreement) >= 0.95
    assert min(agreement) >= 0.9


def test_lr_auto_and_adam_divergence_message():
    assert SampleProjector().get_params()["lr"] == "auto"
    F, P, _ = _clusters(n=40, dim=10)
    # SGD's hint names the stiffness; Adam's only the learning rate
    with pytest.raises(ValueError, match=r"lr \* N \* mean"):
        SampleProjector(solver="sgd", lr=10.0, max_iter=50, random_state=0).fit(
            F, soft_labels=P
        )
    with pytest.raises(ValueError, match=r"InvalidParameterError|lr"):
        SampleProjector(lr="fast").fit(F, soft_labels=P)


# ---------------------------------------------------------------------------
# bad input and magnitudes (hypothesis)
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


@settings(max_examples=20, deadline=None)
@given(
    how=st.sampled_from(["complex", "complex tensor", "nan", "inf"]),
    argument=st.sampled_from(["X", "soft_labels", "init"]),
)
def test_bad_input_is_a_value_error_naming_it(how, argument):
    F, P, _ = _clusters(n=12, n_classes=3, dim=5)
    args = {"X": F, "soft_labels": P, "init": np.full((3, 5), 0.1)}
    args[argument] = _spoil(args[argument], how)
    init = args.pop("init")
    # check_array's own words for NaN in X ("Input X contains NaN")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a cast would warn; none may happen
        with pytest.raises(ValueError, match=argument):
            SampleProjector(max_iter=2, init=init).fit(**args)


@_NO_STEP_WARNING
def test_read_only_input_fits_as_writable():
    F, P, _ = _clusters(n=30, n_classes=3, dim=6)
    ro_F, ro_P = F.copy(), P.copy()
    ro_F.flags.writeable = ro_P.flags.writeable = False
    kw = {"max_iter": 5, "random_state": 0}
    a = SampleProjector(**kw).fit(ro_F, soft_labels=ro_P)
    b = SampleProjector(**kw).fit(F, soft_labels=P)
    np.testing.assert_array_equal(a.components_, b.components_)
    np.testing.assert_array_equal(a.transform(ro_F), b.transform(F))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), exponent=st.floats(-30, 30))
def test_procrustes_is_scale_free(seed, exponent):
    # safe norms: the unit vectors of the second pass at any magnitude
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(20, 3))
    B = A @ _random_orthogonal(rng) + 0.1 * rng.normal(size=A.shape)
    c = 10.0**exponent
    np.testing.assert_allclose(
        procrustes_rotation(A * c, B * c), procrustes_rotation(A, B), atol=1e-9
    )


def test_fit_sequence_settings_are_validated():
    F, P, _ = _clusters(n=12, n_classes=3, dim=5)
    sets = [FeatureSet(sample=F, soft_labels=P)]
    for kwargs, name in [({"n_average": 0}, "n_average"), ({"trim": 1.0}, "trim")]:
        with pytest.raises(ValueError, match=f"'{name}' parameter of fit_sequence"):
            SampleProjector(max_iter=2).fit_sequence(sets, **kwargs)
