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


# ------------------------------------------------- modes, parameters, magnitudes

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _frozen_bn_model(seed=0, fail=False):
    """A training-mode model whose BatchNorm is frozen (eval mode)."""

    class Boom(torch.nn.Module):
        def forward(self, x):
            if fail:
                raise RuntimeError("boom")
            return x

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        Boom(),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 3),
    )
    model.train()
    model[1].eval()
    return model


def _modes(model):
    return [m.training for m in model.modules()]


@pytest.mark.parametrize("fail", [False, True])
def test_pgd_restores_every_submodule_mode(fail):
    model = _frozen_bn_model(fail=fail)
    before = _modes(model)
    assert before[2] is False and before[0] is True
    x = np.random.default_rng(0).normal(size=(3, 3, 2, 2))
    if fail:
        with pytest.raises(RuntimeError, match="boom"):
            pgd_attack(model, x, [0, 1, 2], epsilon=0.1, n_steps=2)
    else:
        pgd_attack(model, x, [0, 1, 2], epsilon=0.1, n_steps=2)
    assert _modes(model) == before


_X = np.zeros((2, 3, 2, 2))


@pytest.mark.parametrize(
    "images, labels, kwargs, match",
    [
        (_X, [0, 1], {"batch_size": -1}, "batch_size"),
        (_X, [0, 1], {"batch_size": 0}, "batch_size"),
        (_X, [0, 1], {"step_size": float("nan")}, "step_size"),
        (_X, [0, 1], {"step_size": float("inf")}, "step_size"),
        (_X, [0, 1], {"epsilon": float("inf")}, "epsilon"),
        (_X, [0, 1], {"epsilon": float("nan")}, "epsilon"),
        (_X, [0, 1], {"n_steps": 0}, "n_steps"),
        (_X, [0, 1], {"random_state": -3}, "random_state"),
        (_X, [0, 2], {}, r"labels must be true class indices in \[0, 2\).*got label 2"),
        (_X, [-1, 0], {}, "labels .*got label -1"),
        (_X, [0, 5], {"targeted": True}, "labels must be target class"),
        (_X, [0, 1, 1], {}, "labels must be 2 integers"),
        (_X, [0.0, 1.0], {}, "labels must be 2 integers"),
        (_X, np.array([0, 1], dtype=complex), {}, "labels must be real"),
        (_X + 1j, [0, 1], {}, "images must hold real numbers"),
        (np.full((2, 3, 2, 2), np.inf), [0, 1], {}, "images contains NaN or infinite"),
        (_X.astype(object), [0, 1], {}, "images"),
        (_X, [0, 1], {"std": [1.0, np.nan, 1.0]}, "std must be finite"),
        (_X, [0, 1], {"std": 1.0, "mean": [0, 1j, 0]}, "mean must be real"),
        (_X, [0, 1], {"std": [1.0, 0.0, 1.0]}, "std must be positive"),
    ],
)
def test_pgd_refuses_bad_parameters(images, labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pgd_attack(_linear_model(), images, labels, **kwargs)


def test_pgd_refuses_a_model_with_nan_logits_or_gradients():
    model = _linear_model()
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        pgd_attack(model, _X + 1, [0, 1], epsilon=0.1, n_steps=1)

    class NanGradient(torch.autograd.Function):
        # finite forward, NaN backward: only the attack's gradient is bad
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * float("nan")

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = _linear_model()

        def forward(self, x):
            return self.inner(NanGradient.apply(x))

    with pytest.raises(ValueError, match="gradient .*NaN or infinite.*step 1"):
        pgd_attack(Wrapped(), _X, [0, 1], epsilon=0.1, n_steps=1, random_start=False)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 6),
    batch_size=st.integers(1, 7),
    eps=st.floats(0.0, 2.0),
    seed=st.integers(0, 2**16),
)
def test_pgd_property_ball_and_batch_size_independence(n, batch_size, eps, seed):
    # Without a random start every image's path depends on that image alone:
    # any batch size gives the same images (the mean-reduced loss scales the
    # gradient, not its sign), all within the ball and finite.
    model = _linear_model(3, seed % 5)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3, 2, 2)).astype(np.float32)
    y = rng.integers(0, 3, size=n)
    one = pgd_attack(model, x, y, epsilon=eps, n_steps=3, random_start=False)
    other = pgd_attack(
        model, x, y, epsilon=eps, n_steps=3, random_start=False, batch_size=batch_size
    )
    np.testing.assert_array_equal(one.images, other.images)
    assert np.isfinite(one.images).all()
    assert np.abs(one.perturbation).max() <= eps * (1 + 1e-6) + 1e-6


@settings(max_examples=25, deadline=None)
@given(
    log_c=st.floats(-300, 300),
    seed=st.integers(0, 2**16),
)
def test_embedding_change_is_scale_free_from_1e_minus_300_to_1e300(log_c, seed):
    # 1 - cos and strength changes relative to the mean strength do not
    # depend on a common scale; the reference is the plain formula at scale 1.
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(2, 3, 4))
    b = a + 0.5 * rng.normal(size=a.shape)
    la, lb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    cos = (a * b).sum(-1) / (la * lb)
    c = 10.0**log_c
    out = embedding_change(c * a, c * b)
    np.testing.assert_allclose(out["one_minus_cos"], 1 - cos, atol=1e-12)
    np.testing.assert_allclose(
        out["strength_change"], np.abs(lb - la) / la.mean(), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize(
    "a, b, kwargs, match",
    [
        (np.ones((1, 2, 3)) * 1j, np.ones((1, 2, 3)), {}, "h_clean must be real"),
        (np.full((1, 2, 3), np.nan), np.ones((1, 2, 3)), {}, "h_clean contains NaN"),
        (np.ones((1, 2, 3)), np.full((1, 2, 3), np.inf), {}, "h_adv contains NaN"),
        (np.ones((1, 2, 3)), np.ones((1, 2, 3)), {"scale": 0.0}, "scale"),
        (np.ones((1, 2, 3)), np.ones((1, 2, 3)), {"scale": np.inf}, "scale"),
        (np.ones((1, 2, 3)), np.ones((1, 2, 3)), {"scale": np.nan}, "scale"),
    ],
)
def test_embedding_change_refuses_bad_input(a, b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        embedding_change(a, b, **kwargs)
