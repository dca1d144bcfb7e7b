"""Gradients, guided backprop, CAM and Grad-CAM against independent references."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from _helpers import assert_no_hooks
from torch import nn
from torch.nn.grad import conv2d_input

from skvmf.featuremaps import feature_maps
from skvmf.saliency import cam, grad_cam, guided_backprop, input_gradient, saliency_map

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_net(inplace=False, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.ReLU(inplace=inplace),
        nn.Conv2d(3, 4, 3),
        nn.ReLU(inplace=inplace),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
    ).double()
    return net


def _gap_net(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    ).to(dtype)


@pytest.fixture
def x_tiny():
    return torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(1)).double()


# -- input gradients -----------------------------------------------------------


def _finite_difference(fn, x, eps=1e-6):
    """Central differences of a per-image scalar fn, all images at once."""
    grad = torch.zeros_like(x)
    n = x.shape[0]
    for idx in np.ndindex(*x.shape[1:]):
        step = torch.zeros_like(x)
        step[(slice(None), *idx)] = eps
        grad[(slice(None), *idx)] = (fn(x + step) - fn(x - step)) / (2 * eps)
    assert grad.shape[0] == n
    return grad


def test_input_gradient_matches_finite_differences(x_tiny):
    net = _tiny_net()
    target = np.array([0, 3, 4])
    got = input_gradient(net, x_tiny.numpy(), target)
    assert isinstance(got, np.ndarray) and got.shape == (3, 2, 6, 6)
    with torch.no_grad():
        ref = _finite_difference(
            lambda z: net(z)[torch.arange(3), torch.as_tensor(target)], x_tiny
        )
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-6, atol=1e-8)


def test_input_gradient_default_target_is_prediction(x_tiny):
    net = _tiny_net()
    with torch.no_grad():
        pred = net(x_tiny).argmax(1).numpy()
    np.testing.assert_array_equal(
        input_gradient(net, x_tiny), input_gradient(net, x_tiny, pred)
    )
    one = input_gradient(net, x_tiny, 2)
    np.testing.assert_array_equal(one, input_gradient(net, x_tiny, [2, 2, 2]))


def test_layer_gradient_equals_manual_forward(x_tiny):
    net = _tiny_net()
    w1, b1, w2, b2 = net[0].weight, net[0].bias, net[2].weight, net[2].bias

    def manual_a2(z):  # the second conv's output, written out by hand
        return F.conv2d(torch.relu(F.conv2d(z, w1, b1, padding=1)), w2, b2)

    x = x_tiny.clone().requires_grad_(True)
    a = manual_a2(x)
    # one cell per image: channel 2, cells (1, 3), (0, 0), (3, 2)
    rows, cols = torch.tensor([1, 0, 3]), torch.tensor([3, 0, 2])
    cell = a[torch.arange(3), 2, rows, cols]
    (ref_cell,) = torch.autograd.grad(cell.sum(), x, retain_graph=True)
    got = input_gradient(
        net, x_tiny, layer="2", channel=2, position=np.stack([rows, cols], 1)
    )
    np.testing.assert_allclose(got, ref_cell.numpy(), rtol=1e-12, atol=1e-14)
    # channel mean, channel per image, and the whole layer's mean
    (ref_mean,) = torch.autograd.grad(
        a[torch.arange(3), [0, 1, 3]].mean((1, 2)).sum(), x, retain_graph=True
    )
    got = input_gradient(net, x_tiny, layer=net[2], channel=[0, 1, 3])
    np.testing.assert_allclose(got, ref_mean.numpy(), rtol=1e-12, atol=1e-14)
    (ref_layer,) = torch.autograd.grad(a.mean((1, 2, 3)).sum(), x)
    np.testing.assert_allclose(
        input_gradient(net, x_tiny, layer="2"), ref_layer.numpy(), rtol=1e-12
    )


def test_layer_gradient_is_taken_before_a_following_inplace_relu(x_tiny):
    """The conv's own (pre-ReLU) map is differentiated, not the ReLU's output."""
    net = _tiny_net(inplace=True)
    w1 = net[0].weight
    got = input_gradient(net, x_tiny, layer="0", channel=1, position=(2, 2))
    # the conv is linear: d A_1(2,2) / d x is its kernel placed around (2, 2)
    ref = torch.zeros(2, 6, 6, dtype=torch.float64)
    ref[:, 1:4, 1:4] = w1[1].detach()
    np.testing.assert_allclose(got, np.broadcast_to(ref.numpy(), got.shape))


def test_saliency_map_is_max_abs_over_channels(x_tiny):
    net = _tiny_net()
    grad = input_gradient(net, x_tiny, 1)
    sal = saliency_map(net, x_tiny, 1)
    assert sal.shape == (3, 6, 6)
    np.testing.assert_array_equal(sal, np.abs(grad).max(axis=1))


def test_gradients_restore_mode_and_leave_parameters_alone(x_tiny):
    net = _tiny_net()
    net.train()
    net[2].eval()  # mixed modes come back exactly
    input_gradient(net, x_tiny)
    assert net.training and net[0].training and not net[2].training
    assert all(p.grad is None for p in net.parameters())
    assert_no_hooks(net)


def test_batchnorm_runs_in_eval_mode():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 16, 2)
    ).double()
    net.train()
    with torch.no_grad():
        net[1].running_mean.fill_(0.3)
        net[1].running_var.fill_(2.0)
    x = torch.randn(4, 1, 6, 6, dtype=torch.float64)
    both = input_gradient(net, x, 0)
    # evaluation mode: images are independent, so one image alone gives the same
    np.testing.assert_allclose(both[:1], input_gradient(net, x[:1], 0), rtol=1e-12)
    assert net.training
    np.testing.assert_allclose(net[1].running_mean.numpy(), 0.3)


@pytest.mark.parametrize(
    ("images", "kwargs", "match"),
    [
        (np.zeros((2, 6, 6)), {}, "shape"),
        (np.zeros((2, 3, 6, 6)), {}, "channels"),
        (np.zeros((0, 2, 6, 6)), {}, "empty"),
        (np.full((1, 2, 6, 6), np.nan), {}, "NaN"),
        (np.zeros((2, 2, 6, 6)), {"target": 5}, "out of range"),
        (np.zeros((2, 2, 6, 6)), {"target": [1, 2, 3]}, "one int per image"),
        (np.zeros((2, 2, 6, 6)), {"target": 1, "layer": "0"}, "not both"),
        (np.zeros((2, 2, 6, 6)), {"channel": 1}, "need a layer"),
        (np.zeros((2, 2, 6, 6)), {"layer": "nope"}, "neither a module"),
        (np.zeros((2, 2, 6, 6)), {"layer": "0", "channel": 3}, "out of range"),
        (np.zeros((2, 2, 6, 6)), {"layer": "0", "position": (1, 1)}, "channel"),
        (
            np.zeros((2, 2, 6, 6)),
            {"layer": "0", "channel": 0, "position": (6, 0)},
            "out of range",
        ),
    ],
)
def test_bad_input_raises_value_error(images, kwargs, match):
    net = _tiny_net()
    with pytest.raises(ValueError, match=match):
        input_gradient(net, images, **kwargs)
    assert_no_hooks(net)


def test_module_reused_in_forward_is_refused():
    torch.manual_seed(0)
    m = torchvision.models.resnet18(weights=None, num_classes=3)
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="more than once"):
        input_gradient(m, x, layer="layer1.0.relu", channel=0)
    assert_no_hooks(m)


# -- guided backpropagation -------------------------------------------------------


def _manual_guided(net, x, seed_grad_a2):
    """Guided backprop written out: ReLU passes grad only where input > 0 and
    grad > 0; convolutions use their exact input-gradient (no hooks)."""
    w1, b1, w2, b2 = net[0].weight, net[0].bias, net[2].weight, net[2].bias
    with torch.no_grad():
        z1 = F.conv2d(x, w1, b1, padding=1)
        z2 = F.conv2d(torch.relu(z1), w2, b2)
        g = seed_grad_a2
        g = g * (z2 > 0) * (g > 0)
        g = conv2d_input(z1.shape, w2, g)
        g = g * (z1 > 0) * (g > 0)
        return conv2d_input(x.shape, w1, g, padding=1)


@pytest.mark.parametrize("inplace", [False, True])
def test_guided_backprop_equals_manual_rule(x_tiny, inplace):
    net = _tiny_net(inplace=inplace)
    target = torch.tensor([1, 4, 0])
    seed = net[5].weight.detach()[target].reshape(3, 4, 4, 4)
    ref = _manual_guided(net, x_tiny, seed)
    got = guided_backprop(net, x_tiny, target.numpy())
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-12, atol=1e-15)
    # it differs from the plain gradient (negative gradients were dropped)
    assert not np.allclose(got, input_gradient(net, x_tiny, target.numpy()))
    assert [m.inplace for m in net.modules() if isinstance(m, nn.ReLU)] == [inplace] * 2
    assert_no_hooks(net)


def test_guided_backprop_of_a_channel(x_tiny):
    net = _tiny_net(inplace=True)
    seed = torch.zeros(3, 4, 4, 4, dtype=torch.float64)
    seed[:, 2] = 1.0 / 16  # d mean(A_2) / d A_2
    ref = _manual_guided(net, x_tiny, seed)
    got = guided_backprop(net, x_tiny, layer="3", channel=2)
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-12, atol=1e-15)


class _Exploding(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


def test_guided_backprop_cleans_up_after_an_exception(x_tiny):
    net = _tiny_net(inplace=True)
    net.append(_Exploding())
    net.train()
    with pytest.raises(RuntimeError, match="boom"):
        guided_backprop(net, x_tiny, 0)
    assert_no_hooks(net)
    assert all(m.inplace for m in net.modules() if isinstance(m, nn.ReLU))
    assert all(m.training for m in net.modules())


def test_guided_backprop_needs_relu_modules(x_tiny):
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3)
            self.fc = nn.Linear(48, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    with pytest.raises(ValueError, match="nn.ReLU"):
        guided_backprop(Functional().double(), x_tiny)


def test_guided_backprop_on_torchvision_resnet():
    torch.manual_seed(0)
    m = torchvision.models.resnet18(weights=None, num_classes=4)
    x = torch.randn(2, 3, 32, 32)
    got = guided_backprop(m, x, [0, 3])
    assert got.shape == (2, 3, 32, 32) and np.isfinite(got).all()
    assert np.abs(got).sum() > 0
    assert all(r.inplace for r in m.modules() if isinstance(r, nn.ReLU))
    assert_no_hooks(m)


# -- CAM and Grad-CAM --------------------------------------------------------------


def test_cam_equals_manual_weighted_maps():
    net = _gap_net()
    x = torch.randn(3, 3, 7, 7, dtype=torch.float64)
    target = np.array([0, 2, 3])
    got = cam(net, x, target)
    with torch.no_grad():
        maps = net[:4](x)  # (N, 8, 5, 5): the map that is average-pooled
    ref = np.einsum("nk,nkhw->nhw", net[6].weight.detach().numpy()[target], maps)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    np.testing.assert_allclose(cam(net, x, target, feature_layer="3"), ref)
    # mean of the map + bias is the logit (the CAM identity)
    with torch.no_grad():
        logits = net(x).numpy()[np.arange(3), target]
    np.testing.assert_allclose(
        got.mean((1, 2)) + net[6].bias.detach().numpy()[target], logits
    )
    up = cam(net, x, target, upsample=True)
    ref_up = F.interpolate(torch.as_tensor(ref)[:, None], size=(7, 7), mode="bilinear")
    np.testing.assert_allclose(up, ref_up[:, 0].numpy(), rtol=1e-12)


def test_cam_with_functional_pooling():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU())
            self.head = nn.Linear(5, 3)

        def forward(self, x):
            return self.head(self.features(x).mean(dim=(2, 3)))

    torch.manual_seed(0)
    net = Net().double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        maps = net.features(x)
        pred = net(x).argmax(1).numpy()
    ref = np.einsum("nk,nkhw->nhw", net.head.weight.detach().numpy()[pred], maps)
    np.testing.assert_allclose(cam(net, x), ref, rtol=1e-12)


def test_cam_on_torchvision_resnet_finds_layer4():
    torch.manual_seed(0)
    m = torchvision.models.resnet18(weights=None, num_classes=4)
    x = torch.randn(2, 3, 64, 64)
    got = cam(m, x, 1)
    maps = feature_maps(m, x, "layer4")
    ref = np.einsum("k,nkhw->nhw", m.fc.weight.detach().numpy()[1], maps)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert_no_hooks(m)


@pytest.mark.parametrize(
    "head",
    [
        # two linear layers: not GAP + linear
        [
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 6),
            nn.ReLU(),
            nn.Linear(6, 4),
        ],
        # max pooling
        [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 4)],
        # flattened map, no pooling
        [nn.Flatten(), nn.Linear(8 * 25, 4)],
        # something after the linear layer
        [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4), nn.Softmax(dim=1)],
    ],
)
def test_cam_refuses_other_architectures(head):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), *head).double()
    with pytest.raises(ValueError, match="CAM|global average"):
        cam(net, torch.randn(2, 3, 7, 7, dtype=torch.float64))
    assert_no_hooks(net)


def test_cam_refuses_a_wrong_feature_layer():
    net = _gap_net()
    with pytest.raises(ValueError, match="global average"):
        cam(net, torch.randn(2, 3, 7, 7, dtype=torch.float64), feature_layer="1")


def test_grad_cam_is_normalised_relu_of_cam_on_gap_linear_net():
    # Grad-CAM weights of a GAP + linear net are w_c / (H W): Grad-CAM is
    # ReLU(CAM) / (H W), so after normalisation ReLU(CAM) / max ReLU(CAM).
    net = _gap_net(seed=3)
    x = torch.randn(4, 3, 7, 7, dtype=torch.float64)
    target = np.array([0, 1, 2, 3])
    raw = np.maximum(cam(net, x, target), 0)
    peak = raw.max(axis=(1, 2), keepdims=True)
    assert (peak > 0).all()
    got = grad_cam(net, x, target, layer="3", upsample=False)
    np.testing.assert_allclose(got, raw / peak, rtol=1e-10, atol=1e-12)
    up = grad_cam(net, x, target, layer="3")
    ref = F.interpolate(torch.as_tensor(raw)[:, None], size=(7, 7), mode="bilinear")[
        :, 0
    ].numpy()
    np.testing.assert_allclose(
        up, ref / ref.max(axis=(1, 2), keepdims=True), rtol=1e-10, atol=1e-12
    )
    assert up.min() >= 0 and up.max() == pytest.approx(1.0)


def test_grad_cam_on_torchvision_resnet_matches_cam():
    torch.manual_seed(1)
    m = torchvision.models.resnet18(weights=None, num_classes=4)
    x = torch.randn(3, 3, 64, 64)
    raw = np.maximum(cam(m, x), 0)
    keep = raw.max(axis=(1, 2)) > 0
    got = grad_cam(m, x, layer="conv_5", upsample=False)  # the paper's alias
    ref = raw[keep] / raw[keep].max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(got[keep], ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got[~keep], 0.0)


def test_grad_cam_zero_map_stays_zero():
    net = _gap_net()
    with torch.no_grad():  # the second conv outputs 0 after its ReLU everywhere
        net[2].weight.zero_()
        net[2].bias.fill_(-1.0)
    got = grad_cam(net, torch.randn(2, 3, 7, 7, dtype=torch.float64), layer="3")
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, 0.0)


def test_grad_cam_refuses_non_spatial_layer():
    net = _gap_net()
    with pytest.raises(ValueError, match=r"\(N, K, H, W\)"):
        grad_cam(net, torch.randn(2, 3, 7, 7, dtype=torch.float64), layer="5")


def test_float32_model_and_torch_input():
    net = _gap_net(dtype=torch.float32)
    x = torch.randn(2, 3, 7, 7)
    for result in (
        input_gradient(net, x),
        guided_backprop(net, x),
        cam(net, x),
        grad_cam(net, x, layer="3"),
    ):
        assert isinstance(result, np.ndarray) and result.dtype == np.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_is_refused_clearly_without_a_gpu(x_tiny):
    with pytest.raises(ValueError, match="CUDA is not available"):
        input_gradient(_tiny_net(), x_tiny, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_matches_cpu():
    net = _gap_net()
    x = torch.randn(3, 3, 7, 7, dtype=torch.float64)
    for fn, kwargs in [
        (input_gradient, {"layer": "2", "channel": 1, "position": (2, 2)}),
        (guided_backprop, {}),
        (cam, {"upsample": True}),
        (grad_cam, {"layer": "3"}),
    ]:
        np.testing.assert_allclose(
            fn(net, x, device="cuda", **kwargs),
            fn(net, x, **kwargs),
            rtol=1e-8,
            atol=1e-10,
        )
    assert next(net.parameters()).device.type == "cpu"
