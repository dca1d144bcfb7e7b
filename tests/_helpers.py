"""Helpers shared by several test modules (not collected: no test_ prefix)."""

import csv

import pytest
import torch

from skvmf.models import make_classifier, train_classifier


def read_csv(path):
    """Rows of a CSV file as dicts of strings."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def same_cell(cell: str, value) -> bool:
    """A CSV cell against its JSON value (None is a non-finite float)."""
    if value is None:
        return cell in ("nan", "inf", "-inf", "", "None")
    if isinstance(value, bool):
        return cell == str(value)
    if isinstance(value, (int, float)):
        return float(cell) == pytest.approx(value, rel=1e-12, abs=1e-12)
    return cell == str(value)


def four_class_workload(checkpoint_dir, **train_options):
    """60 random 16 px images in 4 classes made visible in channel 2, and a
    tiny VGG-16-BN trained on them for 3 epochs (9 iterations) with
    checkpoints at iterations 0 and 9 in ``checkpoint_dir``."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 3, 16, 16, generator=g)
    y = (X[:, 0].mean(dim=(1, 2)) > 0).long() + 2 * (X[:, 1].mean(dim=(1, 2)) > 0)
    X[:, 2] += y[:, None, None].float()  # make the classes easy to see
    model = make_classifier(
        "vgg16", 4, width=0.0625, input_size=16, batch_norm=True, random_state=0
    )
    train_classifier(
        model,
        (X, y),
        epochs=3,
        batch_size=20,
        checkpoint_iterations=[0, 9],
        checkpoint_dir=checkpoint_dir,
        **train_options,
    )
    return model, X, y


# --------------------------------------------------------------------------
# shared tiny networks and the one hook check


def tiny_cnn(in_channels=1, n_classes=4, *, width=5, size=8, inplace=False, seed=0):
    """Conv-ReLU-pool-Conv-ReLU-Linear in float64 for ``size`` x ``size`` input.

    Small enough for hand-checked gradients and millisecond forward passes.
    """
    from torch import nn

    torch.manual_seed(seed)
    side = size // 2 - 2
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(inplace=inplace),
        nn.MaxPool2d(2),
        nn.Conv2d(width, width + 1, 3),
        nn.ReLU(inplace=inplace),
        nn.Flatten(),
        nn.Linear((width + 1) * side * side, n_classes),
    ).double()


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def assert_no_hooks(model):
    """Every hook kind of every submodule is gone, and no global module hook
    or tensor hook was left on a parameter."""
    from torch.nn.modules import module as module_globals

    for name, module in model.named_modules():
        for kind in _HOOK_DICTS:
            hooks = getattr(module, kind, None)
            assert not hooks, f"{kind} left on {name or '<model>'}: {dict(hooks)}"
    for kind in (
        "_global_forward_hooks",
        "_global_forward_pre_hooks",
        "_global_backward_hooks",
        "_global_backward_pre_hooks",
    ):
        assert not getattr(module_globals, kind, {}), f"global {kind} left behind"
    for name, param in model.named_parameters():
        assert not getattr(param, "_backward_hooks", None), (
            f"tensor hook left on parameter {name}"
        )
