import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from _helpers import assert_no_hooks
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import softmax
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.utils import estimator_checks
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from skvmf._torch.layers import detect_architecture
from skvmf.extraction import TorchFeatureExtractor
from skvmf.features import FeatureSet
from skvmf.sources import load_weights

REPO = Path(__file__).resolve().parents[1]
TOL = {"rtol": 1e-5, "atol": 1e-5}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- models -------------------------------------------------------------------
class TinyNet(nn.Module):
    """conv-bn-ReLU(inplace)-pool-conv-ReLU(inplace)-gap-dropout-fc."""

    def __init__(self, n_classes=4, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, n_classes)
        self.modes_seen = []

    def forward(self, x):
        self.modes_seen.append(self.training)
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        x = self.relu2(self.conv2(x))
        return self.fc(self.drop(torch.flatten(self.gap(x), 1)))


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    model = TinyNet(**kw)
    with torch.no_grad():  # non-trivial running statistics
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2.0)
    return model


def _cheap_random_init(model, seed):
    """Random weights for a model built on the meta device (fast for VGG's
    25088 x 4096 layer: a random block tiled instead of 1e8 draws)."""
    gen = torch.Generator().manual_seed(seed)
    model.to_empty(device="cpu")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                w = module.weight
                fan_in = w[0].numel()
                if w.numel() > 4_000_000:
                    block = torch.randn(w.shape[0], 512, generator=gen)
                    w.copy_(block.repeat(1, w.shape[1] // 512) / fan_in**0.5)
                else:
                    w.copy_(torch.randn(w.shape, generator=gen) * (2 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(
                        torch.randn(module.bias.shape, generator=gen) * 0.1
                    )
            elif isinstance(module, nn.BatchNorm2d):
                k = module.num_features
                module.weight.copy_(1 + 0.1 * torch.randn(k, generator=gen))
                module.bias.copy_(0.1 * torch.randn(k, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(k, generator=gen))
                module.running_var.copy_(1 + torch.rand(k, generator=gen))
                module.num_batches_tracked.zero_()
    return model


_MODELS = {}


def get_model(name):
    """Randomly initialised torchvision model (10 classes), built once."""
    if name not in _MODELS:
        builder = getattr(torchvision.models, name)
        if name.startswith("vgg"):
            with torch.device("meta"):
                model = builder(weights=None, num_classes=10, init_weights=False)
            model = _cheap_random_init(model, 0)
        else:
            torch.manual_seed(0)
            model = builder(weights=None, num_classes=10)
        _MODELS[name] = model.eval()
    return _MODELS[name]


def images(n=3, size=64, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, channels, size, size)).astype(np.float32)


# -- aliases ------------------------------------------------------------------
ALIASES = {
    "vgg16": {
        "conv_12": "features.3",
        "conv_22": "features.8",
        "conv_33": "features.15",
        "conv_43": "features.22",
        "conv_53": "features.29",
    },
    "vgg16_bn": {
        "conv_12": "features.5",
        "conv_22": "features.12",
        "conv_33": "features.22",
        "conv_43": "features.32",
        "conv_53": "features.42",
    },
    "resnet18": {
        "conv_1": "relu",
        "conv_2": "layer1",
        "conv_3": "layer2",
        "conv_4": "layer3",
        "conv_5": "layer4",
    },
    "mobilenet_v2": {
        "layer_4": "features.3",
        "layer_7": "features.6",
        "layer_11": "features.10",
        "layer_14": "features.13",
        "layer_18": "features.17",
    },
}
ALIASES["resnet34"] = ALIASES["resnet50"] = ALIASES["resnet18"]

# (K, H, W) of the five default layers for a 64 x 64 input, from the papers'
# architecture tables (VGG: Simonyan & Zisserman; ResNet: He et al., Table 1;
# MobileNet-V2: Sandler et al., Table 2), and the sample dimension D
SHAPES_64 = {
    "vgg16": ([64, 128, 256, 512, 512], [64, 32, 16, 8, 4], 4096),
    "vgg16_bn": ([64, 128, 256, 512, 512], [64, 32, 16, 8, 4], 4096),
    "resnet18": ([64, 64, 128, 256, 512], [32, 16, 8, 4, 2], 512),
    "resnet34": ([64, 64, 128, 256, 512], [32, 16, 8, 4, 2], 512),
    "resnet50": ([64, 256, 512, 1024, 2048], [32, 16, 8, 4, 2], 2048),
    "mobilenet_v2": ([24, 32, 64, 96, 320], [16, 8, 4, 4, 2], 1280),
}


@pytest.mark.parametrize("name", list(SHAPES_64))
def test_aliases_shapes_and_defaults(name):
    model = get_model(name)
    arch = detect_architecture(model)
    expected = ALIASES[name]
    assert arch.default == tuple(expected)
    for alias, module in expected.items():
        assert arch.aliases[alias] == module
    X = images(2)
    ext = TorchFeatureExtractor(model).fit(X)
    assert ext.layer_names_ == list(expected)
    assert ext.layers_ == list(expected.values())
    channels, sides, dim = SHAPES_64[name]
    assert ext.layer_shapes_ == {
        a: (k, s, s) for a, k, s in zip(expected, channels, sides)
    }
    assert ext.grid_ == (sides[-1], sides[-1])
    fs = ext.transform(X)
    r = sides[-1] ** 2
    for alias, k in zip(expected, channels):
        assert fs.regions[alias].shape == (2, r, k)
        assert fs.regions[alias].dtype == np.float32
    assert fs.sample.shape == (2, dim)
    assert fs.logits.shape == (2, 10)
    assert fs.meta["layers"] == expected
    assert_no_hooks(model)


def test_vgg_aliases_robust_to_adapted_features():
    # the same pattern without the first max-pool (a small-input adaptation):
    # the canonical VGG-16 grouping is used
    model = get_model("vgg16")
    feats = list(model.features)
    feats[4] = nn.Identity()
    adapted = nn.Module()
    adapted.features = nn.Sequential(*feats)
    arch = detect_architecture(adapted)
    assert arch.family == "vgg"
    assert arch.aliases["conv_12"] == "features.3"
    assert arch.aliases["conv_21"] == "features.6"
    assert arch.aliases["conv_53"] == "features.29"
    # a narrow hand-written VGG-11 pattern with identity pools (kernel 1)
    cfg = [8, "M", 16, "M", 16, 16, "M", 32, 32, "M", 32, 32, "m"]
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        elif v == "m":
            layers.append(nn.MaxPool2d(1, 1))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
            c = v
    small = nn.Module()
    small.features = nn.Sequential(*layers)
    arch = detect_architecture(small)
    assert arch.default == ("conv_11", "conv_21", "conv_32", "conv_42", "conv_52")
    assert arch.aliases["conv_32"] == "features.13"  # ReLU after the 4th conv


def test_resnet_with_changed_stem_and_conv_1():
    model = torchvision.models.resnet18(weights=None, num_classes=3)
    model.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)
    model.maxpool = nn.Identity()
    model.eval()
    X = images(2, size=16, channels=1)
    ext = TorchFeatureExtractor(model, ["conv_1", "conv_5x"]).fit(X)
    assert ext.layers_ == ["relu", "layer4"]
    assert ext.layer_shapes_ == {"conv_1": (64, 16, 16), "conv_5x": (512, 2, 2)}
    # conv_1 is the stem after its ReLU, before the pool
    x = torch.from_numpy(X)
    with torch.no_grad():
        ref = model.relu(model.bn1(model.conv1(x)))
    ref = ref.reshape(2, 64, 2, 8, 2, 8).mean(axis=(3, 5))  # 8 x 8 block means
    got = ext.transform(X).regions["conv_1"]
    assert_allclose(got, ref.permute(0, 2, 3, 1).reshape(2, 4, 64).numpy(), **TOL)


def test_unknown_layer_lists_closest_names():
    model = get_model("vgg16")
    with pytest.raises(ValueError, match="conv_53") as info:
        TorchFeatureExtractor(model, ["conv_54"]).fit()
    assert "conv_54" in str(info.value)
    with pytest.raises(ValueError, match="layer4"):
        TorchFeatureExtractor(get_model("resnet18"), ["layer5"]).fit()
    with pytest.raises(ValueError, match="sample_layer"):
        TorchFeatureExtractor(tiny(), ["conv1"], sample_layer="fc2").fit()


# -- values -------------------------------------------------------------------
def test_regions_traced_to_image_and_position():
    model = get_model("resnet18")
    X = images(3)
    ext = TorchFeatureExtractor(model, ["conv_2", "conv_4"]).fit(X)
    fs = ext.transform(X)
    assert fs.grid == (4, 4)
    x = torch.from_numpy(X)
    with torch.no_grad():
        a2 = model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x)))))
        a4 = model.layer3(model.layer2(a2))
    # independent pooling reference: 16 x 16 -> 4 x 4 is a mean of 4 x 4 blocks
    ref2 = a2.numpy().reshape(3, 64, 4, 4, 4, 4).mean(axis=(3, 5))
    ref4 = a4.numpy()
    index = fs.region_index()
    rows2, rows4 = fs.region_rows("conv_2"), fs.region_rows("conv_4")
    for j in [0, 5, 16 + 7, 2 * 16 + 15, 2 * 16 + 4]:
        image, row, col = index[j]
        assert (image, row, col) == (j // 16, (j % 16) // 4, j % 4)
        assert_allclose(rows2[j], ref2[image, :, row, col], **TOL)
        assert_allclose(rows4[j], ref4[image, :, row, col], **TOL)
    # a subset keeps the original image ids
    sub = fs[[2, 0]]
    idx = sub.region_index()
    j = 16 + 9  # second image of the subset = original image 0
    image, row, col = idx[j]
    assert image == 0
    assert_allclose(sub.region_rows("conv_2")[j], ref2[0, :, row, col], **TOL)
    # torch's adaptive pooling with a non-dividing, non-square grid
    fs35 = ext.set_params(grid=(3, 5)).fit().extract(X)
    pooled = F.adaptive_avg_pool2d(a2, (3, 5)).numpy()
    for image, r in [(0, 0), (1, 7), (2, 14)]:
        got = fs35.regions["conv_2"][image, r]
        assert_allclose(got, pooled[image, :, r // 5, r % 5], **TOL)


def test_vgg_regions_sample_and_logits_match_manual_forward():
    model = get_model("vgg16_bn")
    X = images(2, size=32)
    fs = TorchFeatureExtractor(model, ["conv_33", "conv_53"], batch_size=1).fit(X)
    fs = fs.transform(X)
    x = torch.from_numpy(X)
    with torch.no_grad():
        a33 = model.features[:23](x)
        feat = torch.flatten(model.avgpool(model.features(x)), 1)
        before_fc = model.classifier[:6](feat)
        logits = model(x)
    assert fs.grid == (2, 2)
    ref33 = a33.numpy().reshape(2, 256, 2, 4, 2, 4).mean(axis=(3, 5))
    assert_allclose(fs.regions["conv_33"][1, 3], ref33[1, :, 1, 1], **TOL)
    assert_allclose(fs.sample, before_fc.numpy(), **TOL)
    assert_allclose(fs.logits, logits.numpy(), **TOL)
    assert_allclose(fs.soft_labels, softmax(logits.numpy() / 4.0, axis=1), **TOL)


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2"])
def test_sample_is_input_of_last_linear(name):
    model = get_model(name)
    X = images(2, size=32)
    fs = TorchFeatureExtractor(model, []).fit(X).transform(X)
    x = torch.from_numpy(X)
    with torch.no_grad():
        if name == "resnet50":
            f = torch.flatten(model.avgpool(model.layer4(model.layer3(model.layer2(
                model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x)))))
            )))), 1)  # fmt: skip
        else:
            f = F.adaptive_avg_pool2d(model.features(x), 1).flatten(1)
        logits = model(x)
    assert_allclose(fs.sample, f.numpy(), **TOL)
    assert_allclose(fs.logits, logits.numpy(), **TOL)
    assert fs.regions == {}


def test_sample_layer_by_name_is_pooled_output():
    model = get_model("resnet18")
    X = images(2)
    ext = TorchFeatureExtractor(model, [], sample_layer="conv_4", output="sample")
    got = ext.fit(X).transform(X)
    x = torch.from_numpy(X)
    with torch.no_grad():
        a = model.layer3(model.layer2(model.layer1(model.maxpool(model.relu(
            model.bn1(model.conv1(x)))))))  # fmt: skip
    assert_allclose(got, a.mean(dim=(2, 3)).numpy(), **TOL)
    assert ext.get_feature_names_out()[-1] == "sample255"


# -- hooks, modes, in-place ops ------------------------------------------------
def test_inplace_relu_does_not_change_captured_maps():
    model = tiny()
    X = images(3, size=8)
    x = torch.from_numpy(X)
    with torch.no_grad():
        model.eval()
        ref = model.bn1(model.conv1(x)).numpy()  # before the in-place ReLU
    assert (ref < 0).any()
    for grid in [(8, 8), (4, 4)]:  # the copy path and the pooling path
        fs = TorchFeatureExtractor(model, "bn1", grid=grid).fit().extract(X)
        expected = ref.reshape(3, 8, grid[0], 8 // grid[0], grid[1], 8 // grid[1])
        expected = expected.mean(axis=(3, 5)).transpose(0, 2, 3, 1).reshape(3, -1, 8)
        assert_allclose(fs.regions["bn1"], expected, **TOL)
    # ResNet's ``out += identity`` modifies bn2's output in place afterwards
    net = get_model("resnet18")
    X = images(2)
    x = torch.from_numpy(X)
    with torch.no_grad():
        stem = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        block = net.layer1[0]
        bn2 = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(stem)))))
    fs = TorchFeatureExtractor(net, ["layer1.0.bn2"], grid=16).fit().extract(X)
    assert_allclose(
        fs.regions["layer1.0.bn2"], bn2.permute(0, 2, 3, 1).reshape(2, 256, 64), **TOL
    )


def test_hooks_removed_and_modes_restored_after_success_and_error():
    model = tiny()
    model.train()
    model.bn1.eval()  # a mixed state must come back exactly
    before = {name: m.training for name, m in model.named_modules()}
    X = images(5, size=8)
    ext = TorchFeatureExtractor(model, ["relu1", "conv2"], batch_size=2).fit(X)
    model.modes_seen.clear()
    first = ext.transform(X)
    assert model.modes_seen == [False, False, False]  # eval during extraction
    assert_no_hooks(model)
    assert {n: m.training for n, m in model.named_modules()} == before
    # dropout inactive: a second pass is identical and equals eval logits
    assert_array_equal(ext.transform(X).logits, first.logits)
    # an error in the middle of the forward pass (fc output is not 4-D)
    bad = TorchFeatureExtractor(model, ["relu1", "fc"]).fit()
    with pytest.raises(ValueError, match="4-D"):
        bad.transform(X)
    assert_no_hooks(model)
    assert {n: m.training for n, m in model.named_modules()} == before
    # an error raised by the model itself on a later batch
    calls = []

    def explode(module, args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")

    handle = model.conv2.register_forward_pre_hook(explode)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            ext.transform(X)
    finally:
        handle.remove()
    assert_no_hooks(model)
    assert {n: m.training for n, m in model.named_modules()} == before


def test_module_running_twice_is_refused():
    model = get_model("resnet18")  # BasicBlock calls its relu twice
    ext = TorchFeatureExtractor(model, ["layer1.0.relu"]).fit()
    with pytest.raises(ValueError, match="more than once"):
        ext.transform(images(1))
    assert_no_hooks(model)


# -- outputs, sklearn ---------------------------------------------------------
def test_outputs_and_feature_names():
    model = tiny()
    X = images(4, size=8)
    ext = TorchFeatureExtractor(model, ["relu1", "relu2"]).fit(X)
    fs = ext.transform(X)
    assert isinstance(fs, FeatureSet)
    assert ext.layer_shapes_ == {"relu1": (8, 8, 8), "relu2": (16, 4, 4)}
    assert list(ext.get_feature_names_out()[:2]) == ["sample0", "sample1"]
    expected = {
        "sample": (fs.sample, [f"sample{j}" for j in range(16)]),
        "logits": (fs.logits, [f"logit{c}" for c in range(4)]),
        "soft_labels": (fs.soft_labels, [f"soft_label{c}" for c in range(4)]),
        "regions": (
            np.concatenate([fs.region_rows("relu1"), fs.region_rows("relu2")], 1),
            [f"relu1__ch{k}" for k in range(8)] + [f"relu2__ch{k}" for k in range(16)],
        ),
    }
    for output, (values, names) in expected.items():
        est = clone(ext).set_params(output=output).fit(X)
        got = est.transform(X)
        assert got.shape == values.shape
        assert_allclose(got, values, **TOL)
        assert list(est.get_feature_names_out()) == names
    # a single layer: (N * R, K) rows in region_index order
    rows = TorchFeatureExtractor(model, "relu2", output="regions").fit().transform(X)
    assert rows.shape == (4 * 16, 16)
    assert_allclose(rows, fs.region_rows("relu2"), **TOL)
    with pytest.raises(ValueError, match="fit"):
        TorchFeatureExtractor(model, "relu2").fit().get_feature_names_out()


def test_pipeline_and_clone():
    model = tiny(n_classes=2)
    X = images(20, size=8, seed=1)
    y = np.arange(20) % 2
    X[y == 1] += 0.5
    pipe = Pipeline(
        [
            ("cnn", TorchFeatureExtractor(model, [], output="sample")),
            ("lr", LogisticRegression(max_iter=500)),
        ]
    ).fit(X, y)
    feats = TorchFeatureExtractor(model, [], output="sample").fit().transform(X)
    ref = LogisticRegression(max_iter=500).fit(feats, y)
    assert_array_equal(pipe.predict(X), ref.predict(feats))
    assert_allclose(pipe.predict_proba(X), ref.predict_proba(feats), **TOL)
    ext = TorchFeatureExtractor(model, ["relu2"], grid=2, batch_size=7)
    copy = clone(ext)
    params, copied = ext.get_params(), copy.get_params()
    assert copied.pop("model") is not params.pop("model")
    assert copied == params
    assert_allclose(
        copy.fit().transform(X).regions["relu2"],
        ext.fit().transform(X).regions["relu2"],
        **TOL,
    )
    assert not hasattr(clone(ext), "layers_")
    assert ext.model is model  # stored unchanged


@pytest.mark.parametrize(
    "check",
    [
        estimator_checks.check_estimator_cloneable,
        estimator_checks.check_estimator_repr,
        estimator_checks.check_no_attributes_set_in_init,
        estimator_checks.check_get_params_invariance,
        estimator_checks.check_set_params,
        estimator_checks.check_estimator_tags_renamed,
        estimator_checks.check_valid_tag_types,
        estimator_checks.check_mixin_order,
        estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
        estimator_checks.check_estimators_unfitted,
    ],
    ids=lambda c: c.__name__,
)
def test_sklearn_api_checks_that_apply_to_images(check):
    # the tabular checks do not apply (tags: two_d_array=False); these do
    ext = TorchFeatureExtractor(tiny(), ["relu1"])
    try:
        check("TorchFeatureExtractor", ext)
    except TypeError:
        check(ext)


# -- inputs -------------------------------------------------------------------
class ImageOnly(Dataset):
    def __init__(self, X):
        self.X = X

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i]  # numpy image, no label


class Stream(IterableDataset):
    def __init__(self, X):
        self.X = X

    def __iter__(self):
        for image in self.X:
            yield torch.from_numpy(image), 0


def test_dataset_loader_tensor_inputs_equal_array_input(tmp_path):
    model = get_model("resnet18")
    X = images(5, size=32)
    ext = TorchFeatureExtractor(model, ["conv_3", "conv_5"], batch_size=2).fit(X)
    ref = ext.transform(X)
    labels = torch.arange(5)
    inputs = {
        "tensor": torch.from_numpy(X),
        "float64": X.astype(np.float64),
        "big_endian": X.astype(">f4"),
        "tensor_dataset": TensorDataset(torch.from_numpy(X), labels),
        "image_only": ImageOnly(X),
        "loader": DataLoader(TensorDataset(torch.from_numpy(X), labels), batch_size=3),
        "iterable": Stream(X),
        "loader_of_iterable": DataLoader(Stream(X), batch_size=4),
    }
    for name, data in inputs.items():
        fs = ext.transform(data)
        assert len(fs) == 5, name
        assert_allclose(fs.logits, ref.logits, **TOL, err_msg=name)
        assert_allclose(fs.sample, ref.sample, **TOL, err_msg=name)
        for key in ["conv_3", "conv_5"]:
            assert_allclose(fs.regions[key], ref.regions[key], **TOL, err_msg=name)
        assert_array_equal(fs.image_ids, np.arange(5))
    # read-only memory-mapped input
    path = tmp_path / "x.npy"
    np.save(path, X)
    fs = ext.transform(np.load(path, mmap_mode="r"))
    assert_allclose(fs.logits, ref.logits, **TOL)


def test_memmap_extraction_equals_in_memory(tmp_path):
    model = get_model("mobilenet_v2")
    X = images(5)
    ext = TorchFeatureExtractor(model, ["layer_7", "layer_18"], batch_size=2).fit(X)
    ref = ext.transform(X)
    mm = clone(ext).set_params(memmap_dir=tmp_path / "maps").fit().transform(X)
    for key in ["layer_7", "layer_18"]:
        assert isinstance(mm.regions[key], np.memmap)
        assert Path(mm.regions[key].filename).parent == tmp_path / "maps"
        assert_array_equal(np.asarray(mm.regions[key]), ref.regions[key])
    assert len(list((tmp_path / "maps").iterdir())) == 2
    assert not isinstance(mm.sample, np.memmap)
    assert_array_equal(mm.sample, ref.sample)
    # unknown length (iterable dataset) works too
    stream = clone(ext).set_params(memmap_dir=tmp_path / "s").fit().transform(Stream(X))
    assert_array_equal(np.asarray(stream.regions["layer_7"]), ref.regions["layer_7"])
    # a failed extraction leaves no files behind
    X_bad = X.copy()
    X_bad[4, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clone(ext).set_params(memmap_dir=tmp_path / "bad").fit().transform(X_bad)
    assert list((tmp_path / "bad").iterdir()) == []


def test_return_tensors_and_dtype():
    model = tiny()
    X = images(3, size=8)
    ref = TorchFeatureExtractor(model, ["relu1"]).fit().transform(X)
    fs = TorchFeatureExtractor(model, ["relu1"], return_tensors=True).fit()
    fs = fs.transform(X)
    assert isinstance(fs.sample, torch.Tensor) and isinstance(fs.logits, torch.Tensor)
    assert isinstance(fs.regions["relu1"], torch.Tensor)
    assert isinstance(fs.soft_labels, torch.Tensor)
    assert_allclose(fs.regions["relu1"].numpy(), ref.regions["relu1"], **TOL)
    assert_allclose(fs.soft_labels.numpy(), ref.soft_labels, **TOL)
    # usable with autograd (not inference tensors)
    w = torch.ones(16, requires_grad=True)
    (fs.sample @ w).sum().backward()
    assert_allclose(w.grad.numpy(), fs.sample.sum(0).numpy(), rtol=1e-5)
    f64 = TorchFeatureExtractor(model, ["relu1"], dtype="float64").fit().transform(X)
    assert f64.regions["relu1"].dtype == np.float64
    assert next(model.parameters()).dtype == torch.float32  # model untouched
    assert_allclose(f64.logits, ref.logits, rtol=1e-5, atol=1e-6)


def test_grid_parameter_and_default_grid():
    model = tiny()
    X = images(2, size=8)
    unfit_grid = TorchFeatureExtractor(model, ["relu1", "relu2"]).fit()
    assert unfit_grid.grid_ is None
    assert unfit_grid.transform(X).grid == (4, 4)
    assert TorchFeatureExtractor(model, "relu1", grid=2).fit(X).grid_ == (2, 2)
    fs = TorchFeatureExtractor(model, "relu1", grid=(1, 4)).fit().transform(X)
    assert fs.regions["relu1"].shape == (2, 4, 8)
    for bad in [0, (2, 0), (2, 2, 2), "4", (2.5, 2)]:
        with pytest.raises(ValueError, match="grid"):
            TorchFeatureExtractor(model, "relu1", grid=bad).fit()


def test_verbose_shows_progress(capsys):
    X = images(4, size=8)
    TorchFeatureExtractor(tiny(), [], batch_size=2, verbose=2).fit().transform(X)
    err = capsys.readouterr().err
    assert "extracting" in err and "2/2" in err


# -- transport ----------------------------------------------------------------
class WithHiddenBuffer(TinyNet):
    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.full((1, 3, 1, 1), 0.25), persistent=False)

    def forward(self, x):
        return super().forward(x + self.shift)


def test_pickle_keeps_weights_modes_and_hidden_buffers():
    torch.manual_seed(0)
    model = WithHiddenBuffer().eval()
    model.bn1.train()
    X = images(2, size=8)
    ext = TorchFeatureExtractor(model, ["relu1"]).fit(X)
    ref = ext.transform(X)
    blob = pickle.dumps(ext)
    assert len(blob) < 60_000
    back = pickle.loads(blob)
    assert back.model_ is back.model and back.model is not model
    assert back.model.bn1.training and not back.model.conv1.training
    assert torch.equal(back.model.shift, model.shift)
    for (n1, t1), (n2, t2) in zip(
        model.state_dict().items(), back.model.state_dict().items()
    ):
        assert n1 == n2 and torch.equal(t1, t2)
    out = back.transform(X)
    assert_array_equal(out.regions["relu1"], ref.regions["relu1"])
    assert_array_equal(out.logits, ref.logits)


def test_joblib_round_trip_in_new_process(tmp_path):
    model = torchvision.models.resnet18(weights=None, num_classes=5)
    X = images(3, size=32)
    ext = TorchFeatureExtractor(
        model, ["conv_3", "conv_5"], stride1_conv5=True, batch_size=2
    ).fit(X)
    ref = ext.transform(X)
    joblib.dump(ext, tmp_path / "ext.joblib")
    np.save(tmp_path / "x.npy", X)
    script = textwrap.dedent(
        f"""
        import joblib, numpy as np, torch
        torch.set_num_threads({torch.get_num_threads()})
        ext = joblib.load({str(tmp_path / "ext.joblib")!r})
        assert ext.model_ is not ext.model
        assert ext.model_.layer4[0].conv1.stride == (1, 1)
        fs = ext.transform(np.load({str(tmp_path / "x.npy")!r}))
        np.savez({str(tmp_path / "out.npz")!r}, logits=fs.logits, sample=fs.sample,
                 c3=fs.regions["conv_3"], c5=fs.regions["conv_5"])
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    out = np.load(tmp_path / "out.npz")
    assert_array_equal(out["logits"], ref.logits)
    assert_array_equal(out["sample"], ref.sample)
    assert_array_equal(out["c3"], ref.regions["conv_3"])
    assert_array_equal(out["c5"], ref.regions["conv_5"])


def test_stride1_conv5_doubles_conv5_grid_on_a_copy():
    X = images(2, size=32)
    for name, conv in [("resnet18", "conv1"), ("resnet50", "conv2")]:
        model = get_model(name)
        plain = TorchFeatureExtractor(model, ["conv_4", "conv_5"]).fit(X)
        wide = TorchFeatureExtractor(
            model, ["conv_4", "conv_5"], stride1_conv5=True
        ).fit(X)
        k = plain.layer_shapes_["conv_5"][0]
        assert plain.layer_shapes_["conv_5"] == (k, 1, 1)
        assert wide.layer_shapes_["conv_5"] == (k, 2, 2)
        assert wide.grid_ == (2, 2)
        assert getattr(model.layer4[0], conv).stride == (2, 2)  # user's model
        assert model.layer4[0].downsample[0].stride == (2, 2)
        assert wide.model_ is not model
        # conv_4 is unchanged by the modification
        a = plain.set_params(grid=2).fit().transform(X).regions["conv_4"]
        assert_allclose(wide.transform(X).regions["conv_4"], a, **TOL)
    with pytest.raises(ValueError, match="ResNet"):
        TorchFeatureExtractor(get_model("mobilenet_v2"), stride1_conv5=True).fit()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_load_weights_good_and_bad(tmp_path):
    trained = tiny(seed=1, n_classes=3)
    sd = trained.state_dict()
    variants = {
        "bare.pt": sd,
        "model.pt": {"model": sd, "epoch": 3},
        "state.pt": {"state_dict": sd, "optimizer": {"lr": 0.1}},
        "parallel.pt": {f"module.{k}": v for k, v in sd.items()},
    }
    for name, obj in variants.items():
        torch.save(obj, tmp_path / name)
        fresh = tiny(seed=2, n_classes=3)
        loaded = load_weights(fresh, tmp_path / name)
        assert loaded is fresh
        for key, value in sd.items():
            assert torch.equal(loaded.state_dict()[key], value), (name, key)
    with open(tmp_path / "bare.pt", "rb") as f:
        fresh = load_weights(tiny(seed=2, n_classes=3), f)
    assert torch.equal(fresh.fc.bias, trained.fc.bias)
    # a torchvision model saved and loaded
    net = get_model("resnet18")
    torch.save({"model": net.state_dict()}, tmp_path / "resnet.pt")
    fresh = load_weights(
        torchvision.models.resnet18(num_classes=10), tmp_path / "resnet.pt"
    )
    assert torch.equal(fresh.layer4[1].bn2.running_var, net.layer4[1].bn2.running_var)
    # wrong head size: the shape mismatch is named
    with pytest.raises(ValueError, match=r"shape mismatches.*fc\.weight"):
        load_weights(tiny(n_classes=7), tmp_path / "bare.pt")
    # another architecture: missing and unexpected keys are listed
    with pytest.raises(ValueError, match="missing keys.*unexpected keys"):
        load_weights(tiny(), tmp_path / "resnet.pt")
    # not a weights-only file, or not weights at all
    with open(tmp_path / "code.pt", "wb") as f:
        pickle.dump(TinyNet(), f)
    with pytest.raises(ValueError, match="weights"):
        load_weights(tiny(), tmp_path / "code.pt")
    torch.save({"epoch": 3}, tmp_path / "meta.pt")
    with pytest.raises(ValueError, match="state_dict"):
        load_weights(tiny(), tmp_path / "meta.pt")


# -- bad input ----------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    model = tiny()
    ext = TorchFeatureExtractor(model, ["relu1"]).fit()
    X = images(2, size=8)
    cases = [
        (X[0], "dimensions"),
        (X[..., 0], "dimensions"),
        (images(2, size=8, channels=1), "channels"),
        (X[:0], "empty"),
        (np.array([[["a"]]], dtype=object), "real numbers"),
        (np.full((1, 3, 8, 8), "x"), "real numbers"),
        (X.astype(bool), "real numbers"),
        (np.where(np.arange(8) == 3, np.inf, X), "NaN or infinite"),
        (TensorDataset(torch.zeros(0, 3, 8, 8)), "empty"),
        (ImageOnly(list(X[:, :1])), "channels"),
        (ext.extract(X), "FeatureSet"),
    ]
    for data, match in cases:
        with pytest.raises(ValueError, match=match):
            ext.transform(data)
    # huge but finite values overflow a sum; they are not mistaken for NaN
    assert len(ext.transform(np.full((1, 3, 8, 8), 1e38, np.float32))) == 1
    with pytest.raises(ValueError, match="channels"):
        TorchFeatureExtractor(model, ["relu1"]).fit(images(1, size=8, channels=4))
    with pytest.raises(ValueError, match="temperature"):
        TorchFeatureExtractor(model, temperature=0.0).fit()
    with pytest.raises(ValueError, match="output"):
        TorchFeatureExtractor(model, output="maps").fit()
    with pytest.raises(ValueError, match="same module"):
        TorchFeatureExtractor(get_model("resnet18"), ["conv_5", "layer4"]).fit()
    with pytest.raises(ValueError, match="layers=None"):
        TorchFeatureExtractor(model).fit()
    with pytest.raises(ValueError, match="nn.Linear"):
        TorchFeatureExtractor(nn.Sequential(nn.Conv2d(3, 2, 1)), []).fit()
    with pytest.raises(ValueError, match="return_tensors"):
        TorchFeatureExtractor(model, [], memmap_dir=".", return_tensors=True).fit()
    with pytest.raises(ValueError, match="CUDA"):
        if torch.cuda.is_available():
            raise ValueError("CUDA present: nothing to test")
        TorchFeatureExtractor(model, [], device="cuda").fit()
    with pytest.raises(ValueError, match=r"logits of shape \(N, C\)"):
        TorchFeatureExtractor(
            nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU()), ["0"], sample_layer=None
        ).fit(X)
    with pytest.raises(Exception, match="NotFitted|not fitted"):
        TorchFeatureExtractor(model, ["relu1"]).transform(X)
