import numpy as np
import pytest
import torch

from skvmf.attacks import embedding_change, pgd_attack


def _linear_model(n_classes=2, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, n_classes))
    return model


def test_pgd_reaches_the_closed_form_corner_of_a_linear_binary_model():
    # For logits W x + b with two classes the loss of the true class grows
    # fastest along sign(w_other - w_true); the L-inf optimum is the corner
    # x + eps * sign(w_other - w_true), which one full step reaches.
    model = _linear_model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3, 2, 2)).astype(np.float32)
    y = rng.integers(0, 2, size=6)
    eps = 0.3
    res = pgd_attack(
        model, x, y, epsilon=eps, step_size=eps, n_steps=3, random_start=False
    )
    w = model[1].weight.detach().numpy()
    direction = np.sign(w[1 - y] - w[y]).reshape(x.shape)
    np.testing.assert_allclose(res.images, x + eps * direction, atol=1e-6)
    assert np.abs(res.perturbation).max() <= eps + 1e-6


def test_pgd_stays_in_the_ball_and_pixel_range_with_normalisation():
    model = _linear_model(3)
    rng = np.random.default_rng(1)
    mean, std = np.array([0.5, 0.4, 0.3]), np.array([0.2, 0.25, 0.3])
    pixels = rng.uniform(size=(8, 3, 2, 2))
    x = ((pixels - mean[:, None, None]) / std[:, None, None]).astype(np.float32)
    y = rng.integers(0, 3, size=8)
    eps = 0.05
    res = pgd_attack(
        model, x, y, epsilon=eps, n_steps=5, mean=mean, std=std, random_state=0
    )
    adv_pixels = res.images * std[:, None, None] + mean[:, None, None]
    assert adv_pixels.min() >= -1e-5 and adv_pixels.max() <= 1 + 1e-5
    assert np.abs(adv_pixels - pixels).max() <= eps + 1e-5


def test_pgd_is_reproducible_and_restores_training_mode():
    model = _linear_model()
    model.train()
    x = np.random.default_rng(2).normal(size=(4, 3, 2, 2)).astype(np.float32)
    y = np.array([0, 1, 0, 1])
    a = pgd_attack(model, x, y, epsilon=0.1, random_state=3)
    b = pgd_attack(model, x, y, epsilon=0.1, random_state=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert model.training


def test_targeted_attack_succeeds_on_a_linear_model_with_a_large_ball():
    model = _linear_model(3)
    x = np.random.default_rng(4).normal(size=(10, 3, 2, 2)).astype(np.float32)
    target = np.full(10, 2)
    res = pgd_attack(
        model, x, target, epsilon=20.0, n_steps=20, targeted=True, random_state=0
    )
    assert res.targeted and res.success_rate == 1.0
    np.testing.assert_array_equal(res.adv_pred, target)


def test_untargeted_success_rate_counts_only_correct_images():
    model = _linear_model()
    x = np.random.default_rng(5).normal(size=(10, 3, 2, 2)).astype(np.float32)
    with torch.no_grad():
        pred = model(torch.as_tensor(x)).argmax(1).numpy()
    res = pgd_attack(model, x, pred, epsilon=50.0, n_steps=10, random_state=0)
    assert res.success_rate == 1.0
    res0 = pgd_attack(model, x, 1 - pred, epsilon=0.0, n_steps=1, random_state=0)
    assert res0.success_rate == 0.0  # no image was correctly classified


@pytest.mark.parametrize(
    "images, labels, kwargs, match",
    [
        (np.zeros((2, 3, 4)), [0, 1], {}, r"\(N, C, H, W\)"),
        (np.zeros((0, 3, 2, 2)), [], {}, "empty"),
        (np.full((1, 3, 2, 2), np.nan), [0], {}, "NaN"),
        (np.zeros((2, 3, 2, 2)), [0], {}, "one per image"),
        (np.zeros((2, 3, 2, 2)), [0, 1], {"epsilon": -1.0}, "epsilon"),
        (np.zeros((2, 3, 2, 2)), [0, 1], {"std": [1, 2]}, "per channel"),
    ],
)
def test_pgd_bad_input(images, labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pgd_attack(_linear_model(), images, np.asarray(labels, dtype=int), **kwargs)


def test_embedding_change_matches_manual_formulas():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(3, 4, 3))
    b = a + 0.3 * rng.normal(size=a.shape)
    out = embedding_change(a, b)
    la, lb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    cos = (a * b).sum(-1) / (la * lb)
    np.testing.assert_allclose(out["one_minus_cos"], 1 - cos)
    np.testing.assert_allclose(out["strength_change"], np.abs(lb - la) / la.mean())
    assert out["mean_one_minus_cos"] == pytest.approx((1 - cos).mean())
    same = embedding_change(a, a)
    assert same["mean_one_minus_cos"] == pytest.approx(0, abs=1e-12)
    assert same["mean_strength_change"] == 0


def test_embedding_change_errors():
    with pytest.raises(ValueError, match="shape"):
        embedding_change(np.zeros((2, 3, 3)), np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="zero strength"):
        embedding_change(np.zeros((2, 3, 3)), np.ones((2, 3, 3)))
