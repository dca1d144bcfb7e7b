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


# --------------------------------------------------------------------------
# the one image input (skvmf._torch.images), seen from three modules


class _Images(torch.utils.data.Dataset):
    """Map-style dataset of bare images (no labels)."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


class _Stream(torch.utils.data.IterableDataset):
    def __init__(self, x):
        self.x = x

    def __iter__(self):
        return iter((im, 0) for im in self.x)


def _input_kinds(x):
    """The same 7 images as every input kind skvmf accepts."""
    labels = torch.zeros(len(x), dtype=torch.long)
    return {
        "numpy": x.numpy(),
        "tensor": x,
        "list of arrays": list(x.numpy()),
        "nested list": x.numpy().tolist(),
        "dataset (image, label)": TensorDataset(x, labels),
        "dataset of images": _Images(x),
        "iterable dataset": _Stream(x),
        "data loader": torch.utils.data.DataLoader(TensorDataset(x, labels), 3),
    }


def test_every_input_kind_gives_the_same_result_in_three_modules():
    from _helpers import tiny_cnn

    from skvmf.extraction import TorchFeatureExtractor
    from skvmf.saliency import input_gradient

    net = tiny_cnn()
    x = torch.randn(7, 1, 8, 8, generator=torch.Generator().manual_seed(1)).double()
    ref_maps = feature_maps(net, x, "1", batch_size=2)
    ref_grad = input_gradient(net, x, target=2)
    ext = TorchFeatureExtractor(
        net, ["1"], sample_layer=None, dtype="float64", batch_size=2
    ).fit()
    # the extractor's rows are the maps, region-major: (N, H*W, K)
    ref_rows = ref_maps.transpose(0, 2, 3, 1).reshape(7, -1, ref_maps.shape[1])
    for kind, data in _input_kinds(x).items():
        np.testing.assert_array_equal(
            feature_maps(net, data, "1", batch_size=2), ref_maps, err_msg=kind
        )
        np.testing.assert_array_equal(
            input_gradient(net, data, target=2), ref_grad, err_msg=kind
        )
        np.testing.assert_array_equal(
            ext.transform(data).regions["1"], ref_rows, err_msg=kind
        )
    assert_no_hooks(net)


def _bad_inputs():
    good = np.zeros((2, 1, 8, 8))
    nan = good.copy()
    nan[1, 0, 3, 3] = np.nan
    return {
        "complex": (good + 1j, "real numbers"),
        "bool": (good.astype(bool), "real numbers"),
        "object": (np.array([[[[None]]]], dtype=object), "real numbers"),
        "text": (np.full((1, 1, 8, 8), "x"), "real numbers"),
        "complex tensor": (torch.zeros(1, 1, 8, 8, dtype=torch.complex64), "real"),
        "3-D": (good[0], "3 dimensions"),
        "5-D": (good[None], "5 dimensions"),
        "empty": (good[:0], "empty"),
        "channels": (np.zeros((2, 3, 8, 8)), "channels"),
        "NaN": (nan, "NaN or infinite"),
        "inf": (np.where(nan == nan, good, np.inf), "NaN or infinite"),
        "too large": (np.full((1, 1, 8, 8), 1e300), "too large"),
        "ragged": ([np.zeros((1, 8, 8)), np.zeros((1, 4, 4))], "differ in shape"),
        "empty dataset": (TensorDataset(torch.zeros(0, 1, 8, 8)), "empty"),
        "bad items": (_Images(["a", "b"]), "image tensors/arrays"),
    }


@pytest.mark.parametrize("kind", list(_bad_inputs()))
def test_every_bad_input_is_the_same_value_error_everywhere(kind):
    from _helpers import tiny_cnn

    from skvmf.extraction import TorchFeatureExtractor
    from skvmf.saliency import grad_cam

    data, match = _bad_inputs()[kind]
    net = tiny_cnn().float()  # float32: 1e300 does not fit
    messages = []
    calls = [
        lambda: feature_maps(net, data, "1"),
        lambda: grad_cam(net, data, layer="1"),
        lambda: top_activating(net, data, "1", k=1),
        lambda: TorchFeatureExtractor(net, ["1"]).fit().transform(data),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=match) as info:
            call()
        # the same message, up to the argument's name (X for the extractor)
        messages.append(str(info.value).replace("X", "images"))
    assert len(set(messages)) == 1, messages
    assert_no_hooks(net)
    assert all(m.training for m in net.modules())


def test_input_checker_property():
    """Random shapes, dtypes and magnitudes: a valid batch comes back equal
    (cast to the model's dtype), anything else is a ValueError; no other
    exception and never a non-finite value."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    from skvmf._torch.images import as_images

    net = nn.Sequential(nn.Conv2d(2, 1, 1)).double()
    dtypes = st.sampled_from(
        ["float16", "float32", "float64", "int8", "uint8", "int64", "bool"]
        + ["complex64", "complex128"]
    )
    shapes = hnp.array_shapes(min_dims=2, max_dims=5, min_side=0, max_side=3)
    magnitude = st.sampled_from([1e-300, 1e-20, 1.0, 1e20, 1e300])

    @settings(max_examples=60, deadline=None)
    @given(arrays=hnp.arrays(dtypes, shapes), scale=magnitude, readonly=st.booleans())
    def check(arrays, scale, readonly):
        arr = arrays * scale if arrays.dtype.kind == "f" else arrays
        arr.flags.writeable = not readonly
        valid = (
            arr.dtype.kind in "iuf"
            and arr.ndim == 4
            and arr.shape[0] > 0
            and arr.shape[1] == 2
            and np.isfinite(arr.astype(np.float64)).all()
        )
        try:
            x = as_images(arr, net, torch.device("cpu"))
        except ValueError:
            assert not valid
            return
        assert valid and x.dtype == torch.float64
        assert torch.isfinite(x).all()
        np.testing.assert_array_equal(x.numpy(), arr.astype(np.float64))

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in arrays * scale
        check()


class _Log(nn.Module):
    def forward(self, x):
        return torch.log(x)  # NaN for a negative pixel


def test_a_network_producing_nan_is_named_with_its_layer_and_batch():
    from skvmf.extraction import TorchFeatureExtractor

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 1), _Log(), nn.Flatten(), nn.Linear(2 * 16, 3)
    ).double()
    net[0].weight.data.fill_(1.0)
    net[0].bias.data.zero_()
    frozen = nn.BatchNorm2d(1).double().eval()  # a mixed-mode model comes back mixed
    net.insert(0, frozen)
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64) + 0.5
    x[5] = -1.0
    message = r"layer '2' produced NaN or infinite values in batch starting at image 4"
    with pytest.raises(ValueError, match=message):
        feature_maps(net, x, "2", batch_size=2)
    with pytest.raises(ValueError, match=message):
        TorchFeatureExtractor(
            net, ["2"], batch_size=2, dtype="float64"
        ).fit().transform(x)
    # a layer that is not captured still stops the logits
    with pytest.raises(ValueError, match=r"model's output \(logits\) produced NaN"):
        out_of_sample_table(net, {"g": x}, batch_size=2)
    assert_no_hooks(net)
    assert net.training and not frozen.training
    assert all(m.training for m in net.modules() if m is not frozen)


def test_inf_logits_are_refused_by_the_gradient_views():
    from skvmf.faithfulness import deletion_insertion
    from skvmf.saliency import grad_cam, input_gradient

    class Infinite(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.head = nn.Linear(2 * 16, 3)

        def forward(self, x):
            return self.head(self.conv(x).flatten(1)) * float("inf")

    net = Infinite().double()
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64) + 0.1
    message = r"model's output \(logits\) produced NaN or infinite values"
    for call in (
        lambda: input_gradient(net, x),
        lambda: grad_cam(net, x, layer="conv"),
        lambda: deletion_insertion(net, x, np.ones((2, 2, 2)), baseline=0.0),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    assert_no_hooks(net)


def test_hooks_and_modes_are_restored_after_an_exception():
    from skvmf._torch.hooks import Capture, Hooks, evaluating

    net = _net(inplace=False)
    net[1].eval()  # mixed modes come back mixed
    seen = []
    with (
        pytest.raises(RuntimeError, match="boom"),
        evaluating(net, torch.device("cpu")),
        Hooks() as hooks,
        Capture(net, {0: ("3", net[3])}, detach=True) as cap,
    ):
        hooks.forward(net[0], lambda m, i, o: seen.append(o.shape))
        hooks.forward(net[4], lambda m, i: seen.append(m.training), pre=True)
        net(torch.zeros(1, 1, 8, 8, dtype=torch.float64))
        assert cap.outputs[0].shape == (1, 6, 2, 2)
        raise RuntimeError("boom")
    assert seen == [(1, 5, 8, 8), False]  # in evaluation mode during the block
    assert_no_hooks(net)
    assert [m.training for m in net] == [True, False, True, True, True, True, True]


def test_capture_names_a_module_that_did_not_run_or_ran_twice():
    from skvmf._torch.hooks import Capture

    relu = nn.ReLU()
    net = nn.Sequential(nn.Conv2d(1, 1, 1), relu, relu).double()
    extra = nn.Linear(1, 1)
    x = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    with (
        Capture(net, {0: ("1", relu)}, detach=True),
        pytest.raises(ValueError, match="layer '1' runs more than once"),
    ):
        net(x)
    with Capture(net, {0: ("extra", extra)}, detach=True) as cap:
        net(x)
        with pytest.raises(ValueError, match="layer 'extra' did not run"):
            cap.require()
    assert_no_hooks(net)
