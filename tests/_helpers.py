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
