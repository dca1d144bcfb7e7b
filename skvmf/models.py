"""Small-input torchvision classifiers, their training, and checkpoints.

This module gathers two others under the name earlier versions used:

- :mod:`skvmf.architectures` builds the networks (:func:`make_classifier`,
  :func:`make_vit_classifier`, :func:`make_digits_classifier`), each an
  instance of torchvision's own class with the paper's layer structure,
  adapted to small inputs and scaled in width to train on a CPU;
- :mod:`skvmf.training` trains them (:class:`Trainer`,
  :func:`train_classifier`, the digits recipe
  :func:`train_digits_classifier`), evaluates them (:func:`evaluate`) and
  writes and reads checkpoints (:func:`list_checkpoints`,
  :func:`load_checkpoint`, which rebuilds the network a checkpoint of
  skvmf's names; :func:`skvmf.sources.load_weights` puts any weights file
  into a network you built).

Every name below is importable from here as before.
"""

from __future__ import annotations

from .architectures import (
    ARCHITECTURES,
    make_classifier,
    make_digits_classifier,
    make_vit_classifier,
)
from .training import (
    Trainer,
    TrainingResult,
    default_checkpoint_iterations,
    evaluate,
    list_checkpoints,
    load_checkpoint,
    log_checkpoint_iterations,
    loss_checkpoint_iterations,
    smoothed_training_loss,
    spread_checkpoints,
    train_classifier,
    train_digits_classifier,
)

__all__ = [
    "ARCHITECTURES",
    "Trainer",
    "TrainingResult",
    "default_checkpoint_iterations",
    "evaluate",
    "list_checkpoints",
    "load_checkpoint",
    "log_checkpoint_iterations",
    "loss_checkpoint_iterations",
    "make_classifier",
    "make_digits_classifier",
    "make_vit_classifier",
    "smoothed_training_loss",
    "spread_checkpoints",
    "train_classifier",
    "train_digits_classifier",
]
