import time

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import VGG, MobileNetV2, ResNet

from skvmf.datasets import load_digits_images, subset_per_class
from skvmf.models import (
    ARCHITECTURES,
    default_checkpoint_iterations,
    evaluate,
    list_checkpoints,
    load_checkpoint,
    make_classifier,
    train_classifier,
    train_digits_classifier,
)

CLASSES = {"vgg16": VGG, "mobilenet_v2": MobileNetV2}


def _last_linear(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def _deepest_block(model):
    """The module whose output is the deepest analysed map (after its ReLU)."""
    if isinstance(model, VGG):
        return [m for m in model.features if isinstance(m, nn.ReLU)][-1]
    if isinstance(model, ResNet):
        return model.layer4
    return model.features[-1]


def _grid(model, module, size, in_channels=3):
    seen = {}
    handle = module.register_forward_hook(lambda m, i, o: seen.setdefault("o", o))
    with torch.no_grad():
        model.eval()(torch.zeros(1, in_channels, size, size))
    handle.remove()
    return tuple(seen["o"].shape[-2:])


@pytest.fixture(scope="module")
def tiny_digits():
    train = load_digits_images("train", size=32)
    test = load_digits_images("test", size=32)
    return subset_per_class(train, 6, random_state=0), subset_per_class(test, 5)


# ---------------------------------------------------------------- building


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_architectures_build_and_end_in_linear(arch):
    model = make_classifier(arch, n_classes=7, width=0.125, random_state=0)
    expected = CLASSES.get(arch, ResNet)
    assert type(model) is expected
    x = torch.randn(2, 3, 32, 32)
    captured = {}
    last = _last_linear(model)
    last.register_forward_hook(lambda m, i, o: captured.update(inp=i[0], out=o))
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 7)
    # the last module applied is that Linear: its output is the logits, and
    # its input (the sample feature) has the documented width
    torch.testing.assert_close(captured["out"], logits)
    assert captured["inp"].shape == (2, last.in_features)
    assert _grid(model, _deepest_block(model), 32) == (8, 8)
    assert model.skvmf_config == {
        "arch": arch,
        "n_classes": 7,
        "width": 0.125,
        "input_size": 32,
        "in_channels": 3,
        "batch_norm": False,
        "dropout": None
        if arch.startswith("resnet")
        else (0.5 if arch == "vgg16" else 0.2),
    }
    assert all(
        type(v) in (str, int, float, bool, type(None))
        for v in model.skvmf_config.values()
    )


@pytest.mark.parametrize(
    "size, vgg, other",
    [
        (8, 8, 8),
        (16, 8, 8),
        (28, 7, 7),
        (32, 8, 8),
        (64, 8, 8),
        (112, 7, 7),
        (224, 14, 7),
    ],
)
def test_deepest_grid_follows_documented_rule(size, vgg, other):
    for arch, side in (("vgg16", vgg), ("resnet18", other), ("mobilenet_v2", other)):
        model = make_classifier(arch, width=0.0625, input_size=size, random_state=0)
        assert _grid(model, _deepest_block(model), size) == (side, side), arch


def test_vgg_block_structure_is_kept():
    for size, real_pools in ((32, 2), (64, 3), (224, 5)):
        model = make_classifier("vgg16", width=0.0625, input_size=size, batch_norm=True)
        blocks, convs = [], 0
        pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
        for m in model.features:
            if isinstance(m, nn.Conv2d):
                convs += 1
            elif isinstance(m, nn.MaxPool2d):
                blocks.append(convs)
                convs = 0
        assert blocks == [2, 2, 3, 3, 3]  # conv_12, conv_22, conv_33, conv_43, conv_53
        assert sum(p.kernel_size == 2 for p in pools) == real_pools
        assert all(p.kernel_size in (1, 2) for p in pools)
        assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 13
    plain = make_classifier("vgg16", width=0.0625)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())


def test_resnet_and_mobilenet_stages():
    model = make_classifier("resnet34", width=0.125)
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert isinstance(model.maxpool, nn.Identity) and model.conv1.stride == (1, 1)
    grids = [_grid(model, getattr(model, f"layer{i}"), 32) for i in range(1, 5)]
    assert grids == [(32, 32), (16, 16), (8, 8), (8, 8)]
    big = make_classifier("resnet50", width=0.0625, input_size=224)
    assert big.conv1.kernel_size == (7, 7) and isinstance(big.maxpool, nn.MaxPool2d)
    assert big.fc.in_features == 32 * 4  # Bottleneck expansion
    mobile = make_classifier("mobilenet_v2", width=0.25)
    assert len(mobile.features) == 19  # layer_4, 7, 11, 14, 18 all exist


def _vgg_params(width, n_classes, batch_norm):
    blocks = ((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3)
    total, cin = 0, 3
    for block in blocks:
        for c in block:
            c = round(c * width)
            total += 9 * cin * c + c + (2 * c if batch_norm else 0)
            cin = c
    return total + cin * cin + cin + cin * n_classes + n_classes


def _resnet18_params(width, n_classes):
    s = round(64 * width)
    total, cin = 9 * 3 * s + 2 * s, s
    for i, planes in enumerate((64, 128, 256, 512)):
        p = round(planes * width)
        for b in range(2):
            total += 9 * cin * p + 2 * p + 9 * p * p + 2 * p
            if b == 0 and (i > 0 and i < 3 or cin != p):  # stride 2 or new width
                total += cin * p + 2 * p
            cin = p
    return total + cin * n_classes + n_classes


@pytest.mark.parametrize("width", [0.125, 0.25, 0.5])
def test_width_scales_parameter_counts(width):
    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(make_classifier("vgg16", width=width)) == _vgg_params(width, 10, False)
    assert count(make_classifier("vgg16", width=width, batch_norm=True)) == _vgg_params(
        width, 10, True
    )
    assert count(make_classifier("resnet18", width=width)) == _resnet18_params(
        width, 10
    )
    # full width is torchvision's own convolutional trunk
    if width == 0.5:
        ratio = count(make_classifier("vgg16", width=1.0)) / count(
            make_classifier("vgg16", width=0.5)
        )
        assert 3.9 < ratio < 4.1  # parameters grow with width squared


def test_other_options_and_seeding():
    gray = make_classifier("mobilenet_v2", in_channels=1, width=0.25)
    assert gray(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    for arch in ("vgg16", "resnet18"):
        assert make_classifier(arch, in_channels=1)(
            torch.zeros(2, 1, 32, 32)
        ).shape == (2, 10)
    state = torch.random.get_rng_state()
    a = make_classifier("resnet18", width=0.125, random_state=3).state_dict()
    b = make_classifier("resnet18", width=0.125, random_state=3).state_dict()
    c = make_classifier("resnet18", width=0.125, random_state=4).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"arch": "alexnet"}, "arch"),
        ({"n_classes": 1}, "n_classes"),
        ({"width": 0}, "width"),
        ({"input_size": 5}, "input_size"),
        ({"in_channels": 0}, "in_channels"),
        ({"arch": "resnet18", "dropout": 0.5}, "no dropout"),
        ({"dropout": 1.0}, "dropout"),
        ({"random_state": -1}, "random_state"),
    ],
)
def test_make_classifier_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_classifier(**kwargs)


# ---------------------------------------------------------------- training


def _states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_is_deterministic(tiny_digits):
    train, _ = tiny_digits

    def run(seed, data=train):
        # dropout 0.5 and random shifts: every random draw must be seeded
        model = make_classifier(
            "vgg16", width=0.0625, batch_norm=True, dropout=0.5, random_state=0
        )
        train_classifier(
            model, data, epochs=2, batch_size=16, random_state=seed, max_shift=2
        )
        return model.state_dict()

    first, second, other = run(0), run(0), run(1)
    assert _states_equal(first, second)
    assert not _states_equal(first, other)
    # a generic Dataset (DataLoader path) is deterministic as well
    generic = torch.utils.data.TensorDataset(train.images, train.targets)
    model_a = make_classifier("resnet18", width=0.0625, random_state=0)
    model_b = make_classifier("resnet18", width=0.0625, random_state=0)
    for model in (model_a, model_b):
        train_classifier(model, generic, epochs=1, batch_size=16, random_state=5)
    assert _states_equal(model_a.state_dict(), model_b.state_dict())


def test_checkpoints_roundtrip(tmp_path, tiny_digits):
    train, test = tiny_digits
    model = make_classifier("vgg16", width=0.0625, batch_norm=True, random_state=1)
    initial = {k: v.clone() for k, v in model.named_parameters()}
    result = train_classifier(
        model,
        train,
        epochs=2,
        batch_size=12,
        checkpoint_iterations=[0, 3, 10],
        checkpoint_dir=tmp_path / "ckpt",
        val_data=test,
        random_state=0,
    )
    assert result.n_iterations == 10 and len(result.history["loss"]) == 2
    assert [it for it, _ in result.checkpoints] == [0, 3, 10]
    assert list_checkpoints(tmp_path / "ckpt") == result.checkpoints
    # a file that cannot be read is named, not skipped
    (tmp_path / "ckpt" / "other.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"other\.pt'"):
        list_checkpoints(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "other.pt").unlink()
    for iteration, path in result.checkpoints:
        ckpt = torch.load(path, weights_only=True)
        assert set(ckpt) == {"state_dict", "iteration", "config", "accuracy"}
        assert ckpt["iteration"] == iteration and ckpt["config"] == model.skvmf_config
        assert 0.0 <= ckpt["accuracy"] <= 1.0
    zero = load_checkpoint(result.checkpoints[0][1])
    for name, p in zero.named_parameters():
        assert torch.equal(p, initial[name])
    final = load_checkpoint(result.checkpoints[-1][1])
    assert final.skvmf_iteration == 10 and not final.training
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            final(test.images), model(test.images), rtol=0, atol=0
        )
    assert final.skvmf_accuracy == result.test_accuracy == evaluate(model, test)


def test_checkpoints_do_not_change_training(tmp_path, tiny_digits):
    train, _ = tiny_digits
    models = []
    for ckpt_dir in (None, tmp_path):
        model = make_classifier("resnet18", width=0.0625, random_state=0)
        train_classifier(
            model,
            train,
            epochs=1,
            batch_size=16,
            checkpoint_dir=ckpt_dir,
            checkpoint_iterations="default" if ckpt_dir else None,
        )
        models.append(dict(model.named_parameters()))
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])
    assert [it for it, _ in list_checkpoints(tmp_path)] == [0, 1, 2, 3, 4]


def test_batchnorm_statistics_are_recalibrated():
    train = subset_per_class(load_digits_images("train", size=32), 20)
    model = make_classifier("vgg16", width=0.0625, batch_norm=True, random_state=0)
    train_classifier(model, train, epochs=1, batch_size=100, recalibrate_bn=192)
    conv, bn = model.features[0], model.features[1]
    with torch.no_grad():
        out = nn.functional.conv2d(train.images, conv.weight, conv.bias, padding=1)
    # precise BN: with the final weights, the running statistics are the
    # averages of the batch statistics of the first 192 training images
    # (batches of 128 and 64), not a lagging exponential average
    chunks = (out[:128], out[128:192])
    mean = sum(c.mean(dim=(0, 2, 3)) for c in chunks) / 2
    var = sum(c.var(dim=(0, 2, 3)) for c in chunks) / 2
    torch.testing.assert_close(bn.running_mean, mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bn.running_var, var, atol=1e-4, rtol=1e-4)
    assert int(bn.num_batches_tracked) == 2 and bn.momentum == 0.1


def test_evaluate_matches_manual_accuracy(tiny_digits):
    _, test = tiny_digits
    model = make_classifier("resnet18", width=0.0625, random_state=2).eval()
    with torch.no_grad():
        pred = model(test.images).argmax(1)
    expected = (pred == test.targets).double().mean().item()
    assert evaluate(model, test, batch_size=7) == pytest.approx(expected)
    assert evaluate(
        model, (test.images.numpy(), test.targets.numpy())
    ) == pytest.approx(expected)


def test_default_checkpoint_iterations():
    assert default_checkpoint_iterations(132) == [
        0,
        8,
        16,
        33,
        50,
        66,
        82,
        99,
        116,
        132,
    ]
    assert default_checkpoint_iterations(1) == [0, 1]
    its = default_checkpoint_iterations(3200)
    assert its[:3] == [0, 200, 400] and its[-1] == 3200
    assert np.all(np.diff(its[2:]) == 400)  # every eighth of the run


def test_training_bad_input(tmp_path, tiny_digits):
    train, _ = tiny_digits
    model = make_classifier("resnet18", width=0.0625)
    X = train.images
    y = train.targets
    cases = [
        ({"train_data": (X, y[:-1])}, "labels must have shape"),
        ({"train_data": (X[:, 0], y)}, "images must have shape"),
        ({"train_data": (X, y.float())}, "integers"),
        ({"train_data": [1, 2]}, "Dataset"),
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"schedule": "step"}, "schedule"),
        ({"checkpoint_iterations": [0]}, "checkpoint_dir"),
        ({"checkpoint_iterations": [999], "checkpoint_dir": tmp_path}, "999"),
        ({"checkpoint_iterations": "often", "checkpoint_dir": tmp_path}, "default"),
        (
            {"device": "cuda:7"} if not torch.cuda.is_available() else {"device": "x"},
            "device",
        ),
    ]
    for kwargs, match in cases:
        kwargs = {"train_data": train, **kwargs}
        with pytest.raises(ValueError, match=match):
            train_classifier(model, **kwargs)
    with pytest.raises(ValueError, match="skvmf_config"):
        train_classifier(nn.Linear(2, 2), train)
    with pytest.raises(ValueError, match="unknown option"):
        train_digits_classifier(learning_rate=1.0)


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match=r"junk\.pt' .*(corrupt|not plain weights)"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="expected keys"):
        load_checkpoint(tmp_path / "plain.pt")
    model = make_classifier("vgg16", width=0.0625, random_state=0)
    config = dict(model.skvmf_config, width=0.125)
    torch.save(
        {
            "state_dict": model.state_dict(),
            "iteration": 0,
            "config": config,
            "accuracy": None,
        },
        tmp_path / "wrong.pt",
    )
    with pytest.raises(ValueError, match=r"shape mismatches.*features\.0\.weight"):
        load_checkpoint(tmp_path / "wrong.pt")
    state = {
        k: v for k, v in model.state_dict().items() if not k.startswith("classifier")
    }
    torch.save(
        {
            "state_dict": state,
            "iteration": 0,
            "config": model.skvmf_config,
            "accuracy": None,
        },
        tmp_path / "partial.pt",
    )
    with pytest.raises(ValueError, match=r"4 missing keys .*classifier\.0\.weight"):
        load_checkpoint(tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="does not exist"):
        list_checkpoints(tmp_path / "nowhere")
    # a corrupt file in a checkpoint folder is named, never silently skipped;
    # readable weights that are not skvmf checkpoints are skipped
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save({"weights": torch.zeros(2)}, folder / "other.pt")
    assert list_checkpoints(folder) == []
    (folder / "broken.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match=r"broken\.pt' .*(corrupt|not plain)"):
        list_checkpoints(folder)


# ---------------------------------------------------------------- the recipe


@pytest.mark.slow
def test_default_digits_recipe_reaches_95_percent(tmp_path):
    start = time.perf_counter()
    model, result = train_digits_classifier(checkpoint_dir=tmp_path)
    elapsed = time.perf_counter() - start
    assert result.test_accuracy >= 0.95, result.history
    test = load_digits_images("test")
    assert evaluate(model, test) == pytest.approx(result.test_accuracy)
    its = [it for it, _ in result.checkpoints]
    assert its == default_checkpoint_iterations(result.n_iterations)
    assert len(its) == 10  # the start and every eighth of the run
    accuracies = [
        torch.load(p, weights_only=True)["accuracy"] for _, p in result.checkpoints
    ]
    assert accuracies[0] < 0.3 and accuracies[-1] >= 0.95  # chance, then learned
    print(f"digits recipe: {result.test_accuracy:.4f} in {elapsed:.1f} s; {accuracies}")


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_other_architectures_learn_digits(arch):
    _, result = train_digits_classifier(arch, epochs=2, classes=[0, 1, 7])
    assert result.test_accuracy > 0.9


# ------------------------------------ split modules, modes, parameters, recipe

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import skvmf.architectures as architectures  # noqa: E402
import skvmf.models as models  # noqa: E402
import skvmf.training as training  # noqa: E402
from skvmf._digits_recipe import DIGITS_MODEL  # noqa: E402
from skvmf.architectures import make_digits_classifier, make_vit_classifier  # noqa: E402
from skvmf.training import Trainer, _recalibrate_batchnorm  # noqa: E402

_OLD_PUBLIC = [
    "ARCHITECTURES",
    "TrainingResult",
    "default_checkpoint_iterations",
    "evaluate",
    "list_checkpoints",
    "load_checkpoint",
    "make_classifier",
    "make_vit_classifier",
    "train_classifier",
    "train_digits_classifier",
]


def test_models_reexports_every_public_name_of_its_two_modules():
    for name in _OLD_PUBLIC:
        assert hasattr(models, name), name
    for module in (architectures, training):
        for name in module.__all__:
            assert getattr(models, name) is getattr(module, name), name
    assert set(models.__all__) == {*architectures.__all__, *training.__all__}


def test_make_digits_classifier_is_the_recipe_network():
    config = make_digits_classifier(random_state=0).skvmf_config
    assert config == {
        "arch": "vgg16",
        "n_classes": 10,
        "width": 0.125,
        "input_size": 32,
        "in_channels": 3,
        "batch_norm": True,
        "dropout": 0.0,
    }
    assert make_digits_classifier("resnet18", 3).skvmf_config["dropout"] is None
    vit = make_digits_classifier("vit", 4, random_state=0).skvmf_config
    assert vit == {
        "arch": "vit",
        "n_classes": 4,
        "input_size": 16,
        "patch_size": 4,
        "depth": 4,
        "n_heads": 4,
        "dim": 64,
        "mlp_dim": 128,
        "in_channels": 3,
        "dropout": 0.0,
    }
    assert make_digits_classifier(width=0.25).skvmf_config["width"] == 0.25
    a = make_digits_classifier(random_state=3).state_dict()
    b = make_classifier("vgg16", 10, random_state=3, **DIGITS_MODEL)
    assert _states_equal(a, b.state_dict())
    with pytest.raises(ValueError, match="unknown option"):
        make_digits_classifier(learning_rate=1.0)
    with pytest.raises(ValueError, match="width"):
        make_digits_classifier(width=-1.0)  # handed on, and validated there
    with pytest.raises(ValueError, match="arch"):
        make_digits_classifier("alexnet")


def _frozen_bn_net():
    net = make_classifier(
        "vgg16", 3, width=0.0625, input_size=8, batch_norm=True, random_state=0
    )
    net.train()
    net.features[1].eval()  # a frozen BatchNorm in a fine-tuning model
    return net


def _modes(model):
    return [m.training for m in model.modules()]


def test_evaluate_and_recalibration_restore_every_submodule_mode():
    net = _frozen_bn_net()
    before = _modes(net)
    X, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2] * 2)
    evaluate(net, (X, y), batch_size=4)
    assert _modes(net) == before
    batches = training._Batches((X, y), 4, False, None, "data")
    _recalibrate_batchnorm(net, batches, torch.device("cpu"), 6)
    assert _modes(net) == before
    assert all(
        m.momentum == 0.1 for m in net.modules() if isinstance(m, nn.BatchNorm2d)
    )
    with pytest.raises(ValueError, match="labels must be class indices"):
        evaluate(net, (X, y + 1))  # label 3 for 3 outputs, seen in the pass
    assert _modes(net) == before


def test_training_refuses_bad_labels_and_values(tmp_path):
    model = make_classifier("vgg16", 3, width=0.0625, input_size=8, random_state=0)
    X, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2] * 2)
    cases = [
        ((X, y + 1), {}, r"train_data: labels must be class indices in \[0, 3\)"),
        ((X, y - 1), {}, "got label -1"),
        ((X.to(torch.complex64), y), {}, "images must be real"),
        ((X * float("nan"), y), {}, "NaN"),
        (
            torch.utils.data.TensorDataset(X, y + 5),
            {},
            r"labels must be class indices .*got label 7",
        ),
        ((X, y), {"batch_size": 0}, "batch_size"),
        ((X, y), {"lr": float("inf")}, "lr"),
        ((X, y), {"lr": float("nan")}, "lr"),
        ((X, y), {"weight_decay": -1.0}, "weight_decay"),
        ((X, y), {"momentum": 1.0}, "momentum"),
        ((X, y), {"max_shift": -1}, "max_shift"),
        ((X, y), {"recalibrate_bn": -1}, "recalibrate_bn"),
        ((X, y), {"random_state": -1}, "random_state"),
        ((X, y), {"verbose": -1}, "verbose"),
        ((X, y), {"checkpoint_dir": 3}, "checkpoint_dir"),
    ]
    for data, kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            train_classifier(model, data, epochs=1, **kwargs)
    with pytest.raises(ValueError, match="val_data: labels"):
        train_classifier(model, (X, y), epochs=1, val_data=(X, y + 3))
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(model, (X, y), batch_size=0)
    with pytest.raises(ValueError, match="n_iterations"):
        default_checkpoint_iterations(-1)
    with pytest.raises(ValueError, match="width"):
        train_digits_classifier(width=0.0)  # refused before any data is loaded
    with pytest.raises(ValueError, match="epochs"):
        train_digits_classifier(epochs=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_size": 10, "patch_size": 4}, "multiple of patch_size"),
        ({"dim": 30, "n_heads": 4}, "must divide dim"),
        ({"depth": 0}, "depth"),
        ({"dropout": 1.0}, "dropout"),
        ({"n_classes": 1}, "n_classes"),
    ],
)
def test_make_vit_classifier_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_vit_classifier(**kwargs)


def test_a_checkpoint_config_is_validated_even_inside_a_validated_call(tmp_path):
    model = make_classifier("vgg16", 2, width=0.0625, input_size=8, random_state=0)
    torch.save(
        {
            "state_dict": model.state_dict(),
            "iteration": 0,
            "config": dict(model.skvmf_config, width=-1.0),
            "accuracy": None,
        },
        tmp_path / "bad.pt",
    )
    with pytest.raises(ValueError, match=r"bad\.pt.*does not describe.*width"):
        load_checkpoint(tmp_path / "bad.pt")
    # nested in a function whose own validation skips nested calls
    from sklearn import config_context

    with (
        config_context(skip_parameter_validation=True),
        pytest.raises(ValueError, match=r"bad\.pt.*width"),
    ):
        load_checkpoint(tmp_path / "bad.pt")


def test_trainer_is_a_scikit_learn_style_object():
    from sklearn.base import clone

    trainer = Trainer(epochs=2, batch_size=4, random_state=3)
    assert clone(trainer).get_params() == trainer.get_params()
    X = torch.randn(8, 3, 8, 8)
    y = torch.tensor([0, 1] * 4)
    model = make_classifier("resnet18", 2, width=0.0625, input_size=8, random_state=0)
    result = trainer.fit(model, (X, y))
    assert trainer.n_iter_ == result.n_iterations == 4
    assert trainer.get_params()["epochs"] == 2  # parameters unchanged by fit
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(optimizer="rmsprop").fit(model, (X, y))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 10**7))
def test_default_checkpoint_iterations_property(n):
    its = default_checkpoint_iterations(n)
    assert its == sorted(set(its))
    assert its[0] == 0 and its[-1] == n and all(0 <= it <= n for it in its)
    assert len(its) <= 10
    # every eighth of the run is there (rounded), as documented
    assert {int(round(k * n / 8)) for k in range(9)} <= set(its)
