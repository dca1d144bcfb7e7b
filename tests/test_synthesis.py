"""Activation maximisation, its objectives, regularisers and transforms."""

import numpy as np
import pytest
import torch
from _helpers import assert_no_hooks
from scipy import ndimage
from sklearn.base import clone
from sklearn.datasets import load_digits
from torch import nn

from skvmf.synthesis import (
    ActivationMaximizer,
    Objective,
    SynthesisResult,
    _blur,
    _jitter,
    _rotate,
    alpha_norm,
    channel_mean,
    filter_output,
    layer_mean,
    logit,
    maximize_activation,
    pixel_change,
    probability,
    total_variation,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits_net():
    """A small CNN trained on scikit-learn's 8x8 digits (inputs in [-1, 1])."""
    digits = load_digits()
    x = torch.tensor(digits.images[:, None] / 8.0 - 1.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        assert (net(x).argmax(1) == y).float().mean() > 0.97
    return net


def _small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 5, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 6 * 6, 3),
    )


# -- regularisers ------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.5, 6.0])
def test_alpha_norm_closed_form(rng, alpha):
    x = rng.normal(size=(4, 3, 5, 6))
    centred = x - x.mean(axis=(1, 2, 3), keepdims=True)
    ref = (np.abs(centred) ** alpha).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(alpha_norm(x, alpha), ref, rtol=1e-12)
    assert alpha_norm(x[0], alpha) == pytest.approx(ref[0], rel=1e-12)
    # gradient: alpha |d|^(alpha-1) sign(d), minus its mean (the mean moves too)
    t = torch.tensor(x, requires_grad=True)
    (grad,) = torch.autograd.grad(alpha_norm(t, alpha).sum(), t)
    s = alpha * np.abs(centred) ** (alpha - 1) * np.sign(centred)
    ref_grad = s - s.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(grad.numpy(), ref_grad, rtol=1e-10, atol=1e-12)


def _tv_loops(img, beta):
    c, h, w = img.shape
    total = 0.0
    for ch in range(c):
        for i in range(h - 1):
            for j in range(w - 1):
                dx = img[ch, i, j + 1] - img[ch, i, j]
                dy = img[ch, i + 1, j] - img[ch, i, j]
                total += (dx * dx + dy * dy) ** (beta / 2)
    return total


@pytest.mark.parametrize("beta", [1.0, 2.0, 3.0])
def test_total_variation_closed_form_and_gradient(rng, beta):
    x = rng.normal(size=(2, 3, 5, 4))
    ref = np.array([_tv_loops(img, beta) for img in x])
    np.testing.assert_allclose(total_variation(x, beta), ref, rtol=1e-12)
    t = torch.tensor(x, requires_grad=True)
    (grad,) = torch.autograd.grad(total_variation(t, beta).sum(), t)
    # central finite differences of the loop formula
    eps = 1e-6
    fd = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += eps
        down[idx] -= eps
        n = idx[0]
        fd[idx] = (_tv_loops(up[n], beta) - _tv_loops(down[n], beta)) / (2 * eps)
    np.testing.assert_allclose(grad.numpy(), fd, rtol=1e-6, atol=1e-7)


def test_total_variation_flat_image_has_zero_gradient():
    t = torch.ones(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    value = total_variation(t, beta=1.0)
    (grad,) = torch.autograd.grad(value.sum(), t)
    assert value.item() == 0.0
    assert torch.isfinite(grad).all() and (grad == 0).all()


def test_regulariser_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        alpha_norm(np.ones((1, 2, 2)), alpha=0.5)
    with pytest.raises(ValueError, match="beta"):
        total_variation(np.ones((1, 2, 2)), beta=0)
    with pytest.raises(ValueError, match="shape"):
        total_variation(np.ones((2, 2)))
    with pytest.raises(ValueError, match="H, W >= 2"):
        total_variation(np.ones((1, 1, 5)))


def test_pixel_change_formula(rng):
    start, final = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 5))
    got = pixel_change(start, torch.tensor(final))
    ref = np.empty((2, 4, 5))
    for n, h, w in np.ndindex(2, 4, 5):
        ref[n, h, w] = np.sqrt(
            sum((final[n, c, h, w] - start[n, c, h, w]) ** 2 for c in range(3))
        )
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    np.testing.assert_allclose(pixel_change(start[1], final[1]), ref[1], rtol=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        pixel_change(start, final[:1])


# -- transforms ----------------------------------------------------------------------


def test_jitter_is_a_per_image_roll(rng):
    x = torch.tensor(rng.normal(size=(3, 2, 5, 6)))
    shifts = torch.tensor([[1, -2], [0, 0], [-3, 4]])
    got = _jitter(x, shifts)
    assert got.shape == x.shape
    for n in range(3):
        ref = np.roll(x[n].numpy(), tuple(shifts[n].tolist()), axis=(1, 2))
        np.testing.assert_array_equal(got[n].numpy(), ref)


def test_rotation_shapes_and_exact_cases(rng):
    x = torch.tensor(rng.normal(size=(3, 2, 5, 5)))
    got = _rotate(x, torch.tensor([0.0, 90.0, -90.0]))
    assert got.shape == x.shape
    np.testing.assert_allclose(got[0].numpy(), x[0].numpy(), atol=1e-12)
    np.testing.assert_allclose(
        got[1].numpy(), np.rot90(x[1].numpy(), 1, axes=(1, 2)), atol=1e-12
    )
    np.testing.assert_allclose(
        got[2].numpy(), np.rot90(x[2].numpy(), -1, axes=(1, 2)), atol=1e-12
    )
    rect = torch.tensor(rng.normal(size=(2, 3, 6, 9)))
    assert _rotate(rect, torch.tensor([10.0, -7.0])).shape == rect.shape


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.7])
def test_blur_equals_scipy_gaussian_filter(rng, sigma):
    x = rng.normal(size=(2, 3, 9, 11))
    got = _blur(torch.tensor(x), sigma).numpy()
    ref = ndimage.gaussian_filter(
        x, sigma=(0, 0, sigma, sigma), mode="mirror", truncate=3.0
    )
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


# -- objectives ----------------------------------------------------------------------


def test_objective_algebra_matches_manual_values(rng):
    net = _small_net()
    x = torch.tensor(rng.normal(size=(4, 3, 8, 8)), dtype=torch.float32)
    with torch.no_grad():
        a0 = net[:2](x)
        a2 = net[2](a0)
        out = net(x)
    acts = {"0": net[0](x).detach(), "2": a2, net[2]: a2}
    obj = (
        logit([0, 1, 2, 0])
        + 0.5 * channel_mean("0", 3)
        - layer_mean("2")
        + filter_output(net[2], [0, 1, 2, 3], 2, [0, 1, 2, 3])
        + 2 * probability(1)
    )
    assert isinstance(obj, Objective) and len(obj.terms) == 5
    got = obj.evaluate(out, acts)
    rows = torch.arange(4)
    ref = (
        out[rows, [0, 1, 2, 0]]
        + 0.5 * acts["0"][:, 3].mean((1, 2))
        - a2.mean((1, 2, 3))
        + a2[rows, [0, 1, 2, 3], 2, [0, 1, 2, 3]]
        + 2 * torch.softmax(out, 1)[:, 1]
    )
    torch.testing.assert_close(got, ref)
    assert "channel_mean('0', 3)" in repr(obj)


def test_objective_bad_input():
    with pytest.raises(ValueError, match="int"):
        logit(1.5)
    with pytest.raises(ValueError, match="layer"):
        channel_mean(3, 1)
    net = _small_net()
    am = ActivationMaximizer(steps=1, random_state=0)
    with pytest.raises(ValueError, match="out of range"):
        am.run(net, logit(3), image_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="one int per image"):
        am.run(net, logit([0, 1]), image_shape=(3, 8, 8), n_images=3)
    with pytest.raises(ValueError, match="neither a module"):
        am.run(net, channel_mean("conv9", 0), image_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="Objective"):
        am.run(net, "logit", image_shape=(3, 8, 8))
    assert_no_hooks(net)


# -- the optimiser -------------------------------------------------------------------


def test_logit_maximisation_makes_each_class(digits_net):
    # one noise image per class, batched: each becomes an image of its class
    res = maximize_activation(
        digits_net,
        logit(np.arange(10)),
        image_shape=(1, 8, 8),
        steps=60,
        lr=0.1,
        bounds=(-1.0, 1.0),
        random_state=0,
    )
    assert isinstance(res, SynthesisResult)
    assert res.images.shape == (10, 1, 8, 8) and res.trace.shape == (60, 10)
    assert (res.objective_final > res.objective_start + 5).all()
    assert (res.trace[-1] > res.trace[0]).all()
    # the trace rises: its later half is above its first half for every image
    assert (res.trace[30:].mean(0) > res.trace[:30].mean(0)).all()
    with torch.no_grad():
        prob = torch.softmax(digits_net(torch.tensor(res.images)), 1).numpy()
    np.testing.assert_array_equal(prob.argmax(1), np.arange(10))
    assert prob.max(1).min() > 0.9
    assert res.images.min() >= -1.0 and res.images.max() <= 1.0
    np.testing.assert_allclose(
        res.pixel_change, pixel_change(res.start_images, res.images)
    )


def test_list_of_objectives_equals_per_image_indices(digits_net):
    params = {"steps": 5, "lr": 0.1, "random_state": 3}
    a = maximize_activation(digits_net, logit([2, 7]), image_shape=(1, 8, 8), **params)
    b = maximize_activation(
        digits_net, [logit(2), logit(7)], image_shape=(1, 8, 8), **params
    )
    np.testing.assert_allclose(a.images, b.images, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "objective",
    [
        channel_mean("2", 1),
        filter_output("2", 3, 2, 2),
        layer_mean("0"),
        probability(2),
        logit(0) + channel_mean("0", 2),
    ],
)
def test_layer_objectives_increase(objective):
    net = _small_net()
    net.train()
    res = ActivationMaximizer(steps=25, lr=0.05, random_state=0).run(
        net, objective, image_shape=(3, 8, 8), n_images=2
    )
    assert (res.objective_final > res.objective_start).all()
    assert net.training
    assert_no_hooks(net)
    assert all(p.grad is None for p in net.parameters())
    assert net[1].inplace


def test_same_layer_by_name_and_by_module(one_torch_thread):
    # exact equality of two runs: one thread, so no reduction can split differently
    net = _small_net()
    am = ActivationMaximizer(steps=3, lr=0.05, random_state=0)
    both = am.run(
        net, channel_mean("2", 0) + channel_mean(net[2], 1), image_shape=(3, 8, 8)
    )
    by_name = am.run(
        net, channel_mean("2", 0) + channel_mean("2", 1), image_shape=(3, 8, 8)
    )
    np.testing.assert_array_equal(both.images, by_name.images)
    assert_no_hooks(net)


@pytest.mark.parametrize("transform_on", ["image", "update"])
def test_transforms_are_reproducible_and_still_ascend(
    digits_net, transform_on, one_torch_thread
):
    # exact equality of two runs: one thread, so no reduction can split differently
    params = {
        "steps": 40,
        "lr": 0.1,
        "jitter": 1,
        "rotate_degrees": 10.0,
        "blur_every": 4,
        "blur_sigma": 0.5,
        "transform_on": transform_on,
        "bounds": (-1.0, 1.0),
    }
    first = maximize_activation(
        digits_net, logit([3, 8]), image_shape=(1, 8, 8), random_state=7, **params
    )
    again = maximize_activation(
        digits_net, logit([3, 8]), image_shape=(1, 8, 8), random_state=7, **params
    )
    other = maximize_activation(
        digits_net, logit([3, 8]), image_shape=(1, 8, 8), random_state=8, **params
    )
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.trace, again.trace)
    assert not np.allclose(first.images, other.images)
    assert (first.objective_final > first.objective_start).all()


def test_total_variation_penalty_smooths(digits_net):
    params = {
        "steps": 60,
        "lr": 0.1,
        "bounds": (-1.0, 1.0),
        "random_state": 0,
        "image_shape": (1, 8, 8),
    }
    plain = maximize_activation(digits_net, logit(np.arange(10)), **params)
    smooth = maximize_activation(
        digits_net, logit(np.arange(10)), lambda_tv=0.5, **params
    )
    assert total_variation(smooth.images).mean() < total_variation(plain.images).mean()
    np.testing.assert_allclose(
        smooth.penalty_trace[-1],
        0.5 * total_variation(torch.tensor(smooth.images)).numpy(),
        rtol=0.2,  # the last penalty is taken one update before the final image
    )
    alpha = maximize_activation(
        digits_net, logit(np.arange(10)), lambda_alpha=0.05, **params
    )
    assert alpha_norm(alpha.images).mean() < alpha_norm(plain.images).mean()


def test_start_from_images(digits_net):
    digits = load_digits()
    start = (digits.images[:3, None] / 8.0 - 1.0).astype(np.float32)
    res = ActivationMaximizer(steps=10, lr=0.05, random_state=0).run(
        digits_net, logit([9, 9, 9]), start
    )
    np.testing.assert_array_equal(res.start_images, start)
    assert (res.objective_final > res.objective_start).all()
    np.testing.assert_allclose(
        res.pixel_change, np.sqrt(((res.images - start) ** 2).sum(axis=1)), rtol=1e-6
    )


def test_noise_statistics_per_channel():
    net = _small_net()
    res = ActivationMaximizer(
        steps=1,
        lr=1e-8,
        noise_mean=[0.0, 5.0, -5.0],
        noise_std=[1.0, 0.1, 2.0],
        random_state=0,
    ).run(net, logit(0), image_shape=(3, 8, 8), n_images=200)
    x = res.start_images
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), [0.0, 5.0, -5.0], atol=0.05)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), [1.0, 0.1, 2.0], rtol=0.05)


def test_parameters_validated_and_cloneable():
    net = _small_net()
    am = ActivationMaximizer(steps=3, lambda_tv=0.1)
    assert clone(am).get_params() == am.get_params()
    with pytest.raises(ValueError, match="steps"):
        ActivationMaximizer(steps=0).run(net, logit(0), image_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="optimizer"):
        ActivationMaximizer(optimizer="lbfgs").run(net, logit(0), image_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="image_shape"):
        am.run(net, logit(0))
    with pytest.raises(ValueError, match="start"):
        am.run(net, logit(0), start="zeros", image_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        am.run(net, logit(0), image_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="bounds"):
        ActivationMaximizer(steps=1, bounds=(1.0, 0.0)).run(
            net, logit(0), image_shape=(3, 8, 8)
        )
    assert_no_hooks(net)


def test_sgd_optimizer_ascends(capsys):
    net = _small_net()
    res = ActivationMaximizer(
        steps=20, lr=0.01, optimizer="sgd", random_state=0, verbose=1
    ).run(net, logit(1), image_shape=(3, 8, 8), n_images=3)
    assert (res.objective_final > res.objective_start).all()
    assert "activation maximisation" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_matches_cpu():
    net = _small_net().double()
    params = {
        "steps": 10,
        "lr": 0.05,
        "jitter": 1,
        "rotate_degrees": 5.0,
        "blur_every": 3,
        "lambda_tv": 0.01,
        "random_state": 0,
    }
    objective = logit([0, 2]) + channel_mean("2", 1)
    gpu = maximize_activation(
        net, objective, image_shape=(3, 8, 8), device="cuda", **params
    )
    cpu = maximize_activation(net, objective, image_shape=(3, 8, 8), **params)
    np.testing.assert_allclose(gpu.images, cpu.images, rtol=1e-6, atol=1e-8)
    assert next(net.parameters()).device.type == "cpu"
