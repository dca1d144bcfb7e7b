"""The digits recipe behind ``skvmf demo``: model options, then training options.

Shared by :func:`skvmf.architectures.make_digits_classifier` (the untrained
network) and :func:`skvmf.training.train_digits_classifier` (the run).
"""

from __future__ import annotations

# VGG-16-BN of width 1/8 at 32 px, no dropout (the ResNets drop "dropout").
DIGITS_MODEL = {"width": 0.125, "input_size": 32, "batch_norm": True, "dropout": 0.0}
DIGITS_TRAIN = {
    "epochs": 6,
    "batch_size": 64,
    "lr": 4e-3,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "schedule": "onecycle",
    "max_shift": 0,
}
# The ViT variant: 16 px, 4 x 4 patches.
DIGITS_VIT_MODEL = {
    "input_size": 16,
    "patch_size": 4,
    "depth": 4,
    "n_heads": 4,
    "dim": 64,
    "mlp_dim": 128,
    "dropout": 0.0,
}
DIGITS_VIT_TRAIN = {**DIGITS_TRAIN, "epochs": 30, "lr": 3e-3}


def model_options(arch: str) -> dict:
    """A fresh copy of the recipe's model options for ``arch``."""
    if arch == "vit":
        return dict(DIGITS_VIT_MODEL)
    options = dict(DIGITS_MODEL)
    if arch.startswith("resnet"):
        del options["dropout"]  # ResNets have no dropout layer
    return options


def train_options(arch: str) -> dict:
    """A fresh copy of the recipe's training options for ``arch``."""
    return dict(DIGITS_VIT_TRAIN if arch == "vit" else DIGITS_TRAIN)


def split_overrides(arch: str, overrides: dict) -> tuple[dict, dict]:
    """Recipe options updated by ``overrides``: (model options, training options).

    An unknown key is a ``ValueError`` listing the known ones.
    """
    model = model_options(arch)
    train = train_options(arch)
    known_model = {*model, "dropout"} if arch != "vit" else set(model)
    for key, value in overrides.items():
        if key in known_model:
            model[key] = value
        elif key in train:
            train[key] = value
        else:
            raise ValueError(
                f"unknown option {key!r}; expected one of "
                f"{sorted([*known_model, *train, 'classes'])}"
            )
    return model, train
