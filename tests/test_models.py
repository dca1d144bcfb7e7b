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
    (tmp_path / "ckpt" / "other.pt").write_bytes(b"not a checkpoint")
    assert list_checkpoints(tmp_path / "ckpt") == result.checkpoints
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
    with pytest.raises(ValueError, match="not a skvmf checkpoint"):
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
    with pytest.raises(ValueError, match=r"missing 4 .*classifier\.0\.weight"):
        load_checkpoint(tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="does not exist"):
        list_checkpoints(tmp_path / "nowhere")


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
