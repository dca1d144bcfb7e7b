"""Feature maps, top-activating images and the out-of-sample table."""

import csv
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from _helpers import assert_no_hooks
from torch import nn
from torch.utils.data import TensorDataset

from skvmf.featuremaps import (
    OutOfSampleTable,
    TopActivating,
    feature_maps,
    out_of_sample_table,
    top_activating,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _net(inplace=True, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 5, 3, padding=1),
        nn.ReLU(inplace=inplace),
        nn.MaxPool2d(2),
        nn.Conv2d(5, 6, 3),
        nn.ReLU(inplace=inplace),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 4),
    ).double()


@pytest.fixture
def images():
    return torch.randn(23, 1, 8, 8, generator=torch.Generator().manual_seed(0)).double()


def test_feature_maps_equal_manual_forward_before_inplace_relu(images):
    net = _net(inplace=True)
    net.train()
    got = feature_maps(net, images, "0", batch_size=5)
    with torch.no_grad():
        ref = F.conv2d(images, net[0].weight, net[0].bias, padding=1)
    assert got.shape == (23, 5, 8, 8)
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-12)
    assert (got < 0).any()  # the following in-place ReLU did not touch the copy
    assert net.training
    assert_no_hooks(net)
    deep = feature_maps(net, images.numpy(), net[4])
    with torch.no_grad():
        np.testing.assert_allclose(deep, net[:5](images).numpy(), rtol=1e-12)


def test_feature_maps_of_a_linear_layer(images):
    net = _net()
    got = feature_maps(net, images, "6")
    with torch.no_grad():
        np.testing.assert_allclose(got, net(images).numpy(), rtol=1e-12)


def test_feature_maps_bad_layer(images):
    net = _net()
    with pytest.raises(ValueError, match="neither a module"):
        feature_maps(net, images, "9")
    with pytest.raises(ValueError, match="not a submodule"):
        feature_maps(net, images, nn.ReLU())
    with pytest.raises(ValueError, match="layer"):
        feature_maps(net, images, 3)


def test_feature_maps_accept_paper_aliases():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=3)
    x = torch.randn(2, 3, 32, 32)
    np.testing.assert_array_equal(
        feature_maps(model, x, "conv_4"), feature_maps(model, x, model.layer3)
    )


def _brute_force(maps, k, reduce):
    scores = maps.reshape(maps.shape[0], maps.shape[1], -1)
    scores = scores.mean(2) if reduce == "mean" else scores.max(2)
    top = []
    for c in range(scores.shape[1]):
        ranked = sorted(range(len(scores)), key=lambda i: (-scores[i, c], i))
        top.append(ranked[:k])
    return scores, np.array(top)


@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_top_activating_equals_brute_force_sort(images, reduce):
    net = _net()
    data = torch.cat([images, images[:4]])  # duplicates: ties go to the lower index
    res = top_activating(net, data, "3", k=6, reduce=reduce, batch_size=7)
    with torch.no_grad():
        maps = net[:4](data).numpy()
    scores, ref = _brute_force(maps, 6, reduce)
    assert isinstance(res, TopActivating) and res.k == 6
    np.testing.assert_array_equal(res.channels, np.arange(6))
    np.testing.assert_array_equal(res.indices, ref)
    np.testing.assert_allclose(res.activations, scores, rtol=1e-12)
    np.testing.assert_allclose(
        res.top_values, np.take_along_axis(scores.T, ref, axis=1), rtol=1e-12
    )
    assert res.activations.shape == (27, 6)


def test_top_activating_dataset_and_channel_subset(images, capsys):
    net = _net()
    labels = torch.arange(len(images))
    from_array = top_activating(net, images, "1", channels=[4, 1], k=3)
    from_dataset = top_activating(
        net,
        TensorDataset(images, labels),
        "1",
        channels=[4, 1],
        k=3,
        batch_size=4,
        verbose=1,
    )
    np.testing.assert_array_equal(from_array.indices, from_dataset.indices)
    np.testing.assert_allclose(from_array.activations, from_dataset.activations)
    np.testing.assert_array_equal(from_array.channels, [4, 1])
    assert "top images of 1" in capsys.readouterr().err  # the progress bar
    full = top_activating(net, images, "1", k=3)
    np.testing.assert_array_equal(from_array.indices, full.indices[[4, 1]])
    assert_no_hooks(net)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 24}, "exceeds"),
        ({"k": 0}, "'k' parameter"),
        ({"k": 2.0}, "'k' parameter"),
        ({"reduce": 1j}, "'reduce' parameter"),
        ({"reduce": "median"}, "reduce"),
        ({"channels": [0, 5]}, "out of range"),
        ({"channels": []}, "non-empty"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_top_activating_bad_input(images, kwargs, match):
    net = _net()
    with pytest.raises(ValueError, match=match):
        top_activating(net, images, "1", **kwargs)
    assert_no_hooks(net)


def _biased_net():
    """Predicts class argmax(x.mean() * w + b): a known rule to count against."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0], [-1.0], [0.0]]).repeat(1, 16) / 16)
        net[1].bias.copy_(torch.tensor([0.0, 0.0, 0.5]))
    return net


def test_out_of_sample_rows_sum_to_100_and_match_manual_count():
    rng = np.random.default_rng(0)
    groups = {
        "bright": rng.normal(1.0, 0.5, size=(40, 1, 4, 4)),
        "dark": rng.normal(-1.0, 0.5, size=(25, 1, 4, 4)),
        "noise": rng.normal(0.0, 0.5, size=(33, 1, 4, 4)),
    }
    net = _biased_net()
    table = out_of_sample_table(
        net, groups, class_names=["up", "down", "flat"], batch_size=16
    )
    assert isinstance(table, OutOfSampleTable)
    assert table.groups == ["bright", "dark", "noise"]
    np.testing.assert_allclose(table.percent.sum(axis=1), 100.0)
    for i, (name, x) in enumerate(groups.items()):
        m = x.mean(axis=(1, 2, 3))
        pred = np.argmax(np.stack([m, -m, np.full_like(m, 0.5)], 1), axis=1)
        manual = np.bincount(pred, minlength=3) / len(x) * 100
        np.testing.assert_allclose(table.percent[i], manual)
        assert table.n_images[i] == len(x)
        assert table.to_dict()[name] == pytest.approx(
            dict(zip(table.class_names, manual))
        )


def test_out_of_sample_csv_and_text(tmp_path):
    net = _biased_net()
    table = out_of_sample_table(
        net, {"a": np.ones((4, 1, 4, 4)), "b": -np.ones((2, 1, 4, 4))}
    )
    assert table.class_names == ["0", "1", "2"]
    text = table.to_csv(tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text() == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0] == {
        "group": "a",
        "n_images": "4",
        "0": "100.0",
        "1": "0.0",
        "2": "0.0",
    }
    assert rows[1]["1"] == "100.0"
    assert "group" in str(table) and "100.0" in str(table)


@pytest.mark.parametrize(
    ("groups", "kwargs", "match"),
    [
        ({}, {}, "non-empty"),
        ({"a": np.zeros((0, 1, 4, 4))}, {}, "empty"),
        ({"a": np.zeros((2, 4, 4))}, {}, "shape"),
        ({"a": np.zeros((2, 1, 4, 4))}, {"class_names": ["x", "y"]}, "3 outputs"),
    ],
)
def test_out_of_sample_bad_input(groups, kwargs, match):
    with pytest.raises(ValueError, match=match):
        out_of_sample_table(_biased_net(), groups, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_matches_cpu(images):
    net = _net()
    np.testing.assert_allclose(
        feature_maps(net, images, "3", device="cuda"), feature_maps(net, images, "3")
    )
    a = top_activating(net, images, "3", k=3, device="cuda")
    b = top_activating(net, images, "3", k=3)
    np.testing.assert_array_equal(a.indices, b.indices)
    groups = {"x": images.numpy()}
    np.testing.assert_array_equal(
        out_of_sample_table(net, groups, device="cuda").counts,
        out_of_sample_table(net, groups).counts,
    )
    assert next(net.parameters()).device.type == "cpu"
