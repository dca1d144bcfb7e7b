"""Training of the small classifiers, their checkpoints, and evaluation.

:class:`Trainer` runs the loop (one method per step: a batch, an epoch, the
evaluation, a checkpoint, the divergence stop, the progress bar);
:func:`train_classifier` is its one-call form and
:func:`skvmf.distillation.distill` hands it a distillation loss.
Checkpoints store the model's build configuration (``model.skvmf_config``),
so :func:`load_checkpoint` rebuilds the network without pickled code
(``torch.load(weights_only=True)``).

The digits recipe (:func:`train_digits_classifier`) trains a VGG-16-BN of
width 1/8 (:func:`skvmf.architectures.make_digits_classifier`) on
scikit-learn's digits images at 32 px for 132 steps (6 epochs) to 97-99 %
test accuracy in about a minute or less on two CPU cores. Plain VGG-16 (no
batch normalisation) learns far more slowly from scratch. Its ViT variant
(``train_digits_classifier("vit")``) reaches about 96-97 % in 30 epochs (660
steps, well under a minute on one CPU thread).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn import config_context
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from torch import nn

from ._digits_recipe import split_overrides
from ._torch import checkpoints, train_cache
from ._torch.devices import resolve_device, seed_of
from ._torch.hooks import evaluating
from ._utils.progress import message, progress
from .architectures import ARCHITECTURES, make_digits_classifier

__all__ = [
    "Trainer",
    "TrainingResult",
    "default_checkpoint_iterations",
    "evaluate",
    "list_checkpoints",
    "log_checkpoint_iterations",
    "loss_checkpoint_iterations",
    "smoothed_training_loss",
    "spread_checkpoints",
    "load_checkpoint",
    "train_classifier",
    "train_digits_classifier",
]

_HISTORY_KEYS = ("epoch", "iteration", "loss", "accuracy", "val_accuracy", "lr")
# Upper bound of the real-valued options: finite, so inf is refused with NaN.
_FINITE = float(np.finfo(np.float64).max)
_DEVICE = [str, torch.device, None]


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def _check_labels(y: torch.Tensor, n_classes, name: str) -> None:
    """Labels must be class indices in [0, n_classes)."""
    if n_classes is None or len(y) == 0:
        return
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= n_classes:
        bad = low if low < 0 else high
        raise ValueError(
            f"{name}: labels must be class indices in [0, {n_classes}) for a "
            f"model with {n_classes} outputs; got label {bad}"
        )


def _as_tensors(data, name: str):
    """(images, labels) tensors if ``data`` is in memory, else None."""
    if isinstance(data, tuple) and len(data) == 2:
        X, y = data
        X = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X)
        y = torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y)
        if X.ndim != 4:
            raise ValueError(
                f"{name}: images must have shape (N, C, H, W); got {tuple(X.shape)}"
            )
        if X.is_complex() or X.dtype == torch.bool:
            raise ValueError(f"{name}: images must be real numbers; got {X.dtype}")
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"{name}: labels must have shape ({X.shape[0]},) to match the "
                f"images; got {tuple(y.shape)}"
            )
        if y.dtype.is_floating_point or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"{name}: labels must be integers; got dtype {y.dtype}")
        X = X.float()
        if not torch.isfinite(X).all():
            raise ValueError(f"{name}: images contain NaN or infinite values")
        return X, y.long()
    from .datasets import ImageArrayDataset

    if isinstance(data, ImageArrayDataset) and data._cache is not None:
        return data.images, data.targets
    if isinstance(data, torch.utils.data.Dataset):
        return None
    raise ValueError(
        f"{name} must be a torch Dataset or an (images, labels) pair; "
        f"got {type(data).__name__}"
    )


class _Batches:
    """Mini-batches from tensors or a Dataset, shuffled by a seeded generator.

    With ``n_classes``, labels outside [0, n_classes) are refused: up front
    for in-memory data, batch by batch for a Dataset.
    """

    def __init__(self, data, batch_size, shuffle, generator, name, n_classes=None):
        self.tensors = _as_tensors(data, name)
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.name = name
        self.n = len(self.tensors[0]) if self.tensors is not None else len(data)
        if self.n == 0:
            raise ValueError(f"{name} is empty")
        self.n_classes = n_classes
        if self.tensors is not None:
            _check_labels(self.tensors[1], n_classes, name)

    def __len__(self):
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        if self.tensors is not None:
            X, y = self.tensors
            order = (
                torch.randperm(self.n, generator=self.generator)
                if self.shuffle
                else torch.arange(self.n)
            )
            for start in range(0, self.n, self.batch_size):
                idx = order[start : start + self.batch_size]
                yield X[idx], y[idx]
            return
        loader = torch.utils.data.DataLoader(
            self.data,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            generator=self.generator,
            num_workers=0,
        )
        for X, y in loader:
            y = torch.as_tensor(y).long()
            _check_labels(y, self.n_classes, self.name)
            yield X.float(), y


@torch.no_grad()
def _predict_correct(model, batches, device) -> tuple[int, int]:
    """Correct top-1 predictions and images seen, every mode restored after."""
    correct = total = 0
    with evaluating(model, device):
        for X, y in batches:
            out = model(X.to(device))
            _check_labels(y, out.shape[1], batches.name)
            correct += int((out.argmax(1).cpu() == y).sum())
            total += len(y)
    return correct, total


@validate_params(
    {
        "model": [nn.Module],
        "data": "no_validation",
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": _DEVICE,
    },
    prefer_skip_nested_validation=True,
)
def evaluate(model: nn.Module, data, *, batch_size: int = 256, device="cpu") -> float:
    """Top-1 accuracy of ``model`` on ``data``.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits; it is evaluated in eval mode on
        ``device``, and every submodule's mode and the model's device are
        restored afterwards.
    data : Dataset or tuple (images, labels)
        Items ``(image, label)``; labels are class indices.
    batch_size : int, default=256
        Images per forward pass.
    device : str or torch.device, default="cpu"
        Where to run.

    Returns
    -------
    accuracy : float
        Fraction of images whose argmax logit is the label.

    Examples
    --------
    >>> import torch
    >>> from skvmf.architectures import make_classifier
    >>> from skvmf.training import evaluate
    >>> model = make_classifier("resnet18", n_classes=2, width=0.125, random_state=0)
    >>> X, y = torch.zeros(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])
    >>> evaluate(model, (X, y))  # the same image four times: one class right
    0.5
    """
    dev = resolve_device(device)
    batches = _Batches(
        data, int(batch_size), shuffle=False, generator=None, name="data"
    )
    correct, total = _predict_correct(model, batches, dev)
    return correct / total


# --------------------------------------------------------------------------
# checkpoints: schedule and writing
# --------------------------------------------------------------------------


@dataclasses.dataclass
class TrainingResult:
    """What :func:`train_classifier` did.

    Attributes
    ----------
    history : dict of str to list
        One entry per epoch: ``"epoch"``, ``"iteration"`` (optimizer steps so
        far), ``"loss"`` (mean training loss), ``"accuracy"`` (training
        accuracy during the epoch), ``"val_accuracy"`` (None without
        ``val_data``), ``"lr"`` (learning rate at the end of the epoch).
    checkpoints : list of (int, pathlib.Path)
        Saved checkpoints as (iteration, path), by iteration.
    n_iterations : int
        Optimizer steps taken.
    test_accuracy : float or None
        Accuracy on ``val_data`` after training.
    train_time : float
        Wall-clock seconds spent in training (evaluation and saving included).
    config : dict
        The model's build configuration (``model.skvmf_config``).
    step_losses : list of float
        The training loss of every optimizer step, in order: entry ``t`` is
        the loss of step ``t + 1``'s mini-batch under the weights of
        iteration ``t`` (before its update); empty for a result loaded from
        the training cache (the checkpoints of "loss" were chosen with it).
    step_batch_sizes : list of int
        The images of each step's batch (the last of an epoch may be
        smaller).

    Examples
    --------
    >>> from skvmf.training import TrainingResult
    >>> TrainingResult(history={}, checkpoints=[], n_iterations=0).test_accuracy is None
    True
    """

    history: dict
    checkpoints: list
    n_iterations: int
    test_accuracy: float | None = None
    train_time: float = 0.0
    config: dict = dataclasses.field(default_factory=dict)
    step_losses: list = dataclasses.field(default_factory=list)
    step_batch_sizes: list = dataclasses.field(default_factory=list)


@validate_params(
    {"n_iterations": [Interval(Integral, 0, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def default_checkpoint_iterations(n_iterations: int) -> list[int]:
    """Checkpoint iterations covering the start and the whole run.

    Iteration 0 (untrained), 1/16 and 1/8 of the run, then every eighth to
    its end. Knowledge points can emerge early (the paper's networks) or late
    (the digits recipe's one-cycle schedule: none before ~85 % accuracy, past
    half the run), so the schedule covers both.

    Parameters
    ----------
    n_iterations : int
        Total optimizer steps of the run (>= 0).

    Returns
    -------
    iterations : list of int
        Sorted, unique, between 0 and ``n_iterations``.

    Examples
    --------
    >>> from skvmf.training import default_checkpoint_iterations
    >>> default_checkpoint_iterations(320)
    [0, 20, 40, 80, 120, 160, 200, 240, 280, 320]
    """
    fractions = (0, 1 / 16, *(k / 8 for k in range(1, 9)))
    return sorted({int(round(f * n_iterations)) for f in fractions})


# Candidate snapshots of the "loss" schedule: every step of a short run, else
# this many log- and evenly spaced steps (copies of the weights in CPU memory).
_LOSS_CANDIDATES = 128


@validate_params(
    {
        "n_iterations": [Interval(Integral, 0, None, closed="left")],
        "n_checkpoints": [Interval(Integral, 2, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def log_checkpoint_iterations(n_iterations: int, n_checkpoints: int = 10) -> list[int]:
    """Checkpoint iterations spaced evenly in log(iteration).

    Iteration 0 (untrained), then ``n_checkpoints - 1`` iterations from 1 to
    ``n_iterations`` at equal ratios, rounded: dense where networks change
    fastest, at the start of training. Rounding can merge neighbours in a
    short run, so there may be fewer than ``n_checkpoints``.

    Parameters
    ----------
    n_iterations : int
        Total optimizer steps of the run (>= 0).
    n_checkpoints : int >= 2, default=10
        How many at most, the first (0) and the last (``n_iterations``)
        included.

    Returns
    -------
    iterations : list of int
        Sorted, unique, between 0 and ``n_iterations``, both included.

    Examples
    --------
    >>> from skvmf.training import log_checkpoint_iterations
    >>> log_checkpoint_iterations(1000, 5)
    [0, 1, 10, 100, 1000]
    """
    if n_iterations == 0:
        return [0]
    k = int(n_checkpoints)
    steps = np.geomspace(1, n_iterations, k - 1) if k > 2 else []
    return sorted({0, n_iterations, *(int(round(s)) for s in steps)})


def _loss_candidates(n_iterations: int) -> list[int]:
    """The steps whose weights the "loss" schedule keeps until it chooses:
    every step of a short run, else log- and evenly spaced ones."""
    if n_iterations + 1 <= _LOSS_CANDIDATES:
        return list(range(n_iterations + 1))
    half = _LOSS_CANDIDATES // 2
    logs = np.geomspace(1, n_iterations, half)
    even = np.linspace(0, n_iterations, half)
    return sorted({0, n_iterations, *(int(round(s)) for s in (*logs, *even))})


@validate_params(
    {
        "losses": ["array-like"],
        "batch_sizes": ["array-like", None],
        "window": [Interval(Integral, 1, None, closed="left"), None],
    },
    prefer_skip_nested_validation=True,
)
def smoothed_training_loss(losses, *, batch_sizes=None, window=None) -> np.ndarray:
    """The training loss at every iteration, smoothed and made non-increasing.

    ``losses[t]`` is the loss of the mini-batch of step ``t + 1``, computed
    with the weights of iteration ``t`` (before that step's update). The
    curve is (1) a moving average over ``window`` steps centred on ``t``
    (truncated at the ends), each step weighted by its batch size, so that a
    short last batch of an epoch does not make a spike; (2) its running
    minimum, so that the loss "reached" by iteration ``t`` never rises again.
    The final iteration ``len(losses)`` (whose loss no batch measured) gets
    the last value.

    Parameters
    ----------
    losses : array-like of shape (n_iterations,)
        Per-step training losses (:attr:`TrainingResult.step_losses`);
        finite.
    batch_sizes : array-like of shape (n_iterations,), optional
        Images of each step's batch (:attr:`TrainingResult.step_batch_sizes`);
        equal weights when None.
    window : int >= 1, optional
        Steps averaged (an even one is widened by one, to centre it). None:
        ``2 * max(1, n_iterations // 50) + 1``, i.e. 2 % of the run on each
        side, at least one step.

    Returns
    -------
    curve : ndarray of shape (n_iterations + 1,)
        Non-increasing; ``curve[t]`` is the loss at iteration ``t``.

    Examples
    --------
    >>> from skvmf.training import smoothed_training_loss
    >>> smoothed_training_loss([3.0, 2.0, 2.5, 1.0], window=1).tolist()
    [3.0, 2.0, 2.0, 1.0, 1.0]
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 1 or losses.size == 0:
        raise ValueError(
            f"losses must be a non-empty 1-D sequence; got shape {losses.shape}"
        )
    if not np.isfinite(losses).all():
        raise ValueError("losses contain NaN or infinite values")
    n = losses.size
    weights = np.ones(n) if batch_sizes is None else np.asarray(batch_sizes, float)
    if weights.shape != (n,) or not (weights > 0).all():
        raise ValueError(
            f"batch_sizes must be {n} positive numbers, one per loss; got "
            f"shape {weights.shape}"
        )
    half = max(1, n // 50) if window is None else int(window) // 2
    # centred, truncated moving sums by cumulative sums
    csum = np.concatenate([[0.0], np.cumsum(weights * losses)])
    wsum = np.concatenate([[0.0], np.cumsum(weights)])
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    smooth = (csum[hi] - csum[lo]) / (wsum[hi] - wsum[lo])
    curve = np.minimum.accumulate(smooth)
    return np.append(curve, curve[-1])


@validate_params(
    {
        "losses": ["array-like"],
        "n_checkpoints": [Interval(Integral, 2, None, closed="left")],
        "batch_sizes": ["array-like", None],
        "window": [Interval(Integral, 1, None, closed="left"), None],
        "candidates": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def loss_checkpoint_iterations(
    losses, n_checkpoints: int = 10, *, batch_sizes=None, window=None, candidates=None
) -> list[int]:
    """Checkpoint iterations at equal steps of the training loss.

    With ``L`` the curve of :func:`smoothed_training_loss` (non-increasing,
    one value per iteration ``0..n``) and ``K = n_checkpoints``, the levels
    ``L[0] - j (L[0] - L[n]) / (K - 1)`` for ``j = 0..K-2`` each give the
    first iteration (among ``candidates``) whose loss has reached the level;
    the last checkpoint is the end of training, ``n``. So each analysed
    interval of training lowers the loss by the same amount: checkpoints are
    dense where the loss falls fast and sparse on its plateau. A level
    reached by the same candidate as the previous one adds no checkpoint,
    so there may be fewer than ``K``.

    Parameters
    ----------
    losses : array-like of shape (n_iterations,)
        Per-step training losses (:attr:`TrainingResult.step_losses`).
    n_checkpoints : int >= 2, default=10
        How many at most, iteration 0 and the end included.
    batch_sizes : array-like of shape (n_iterations,), optional
        Per-step batch sizes, the smoothing's weights.
    window : int >= 1, optional
        Smoothing window in steps (see :func:`smoothed_training_loss`).
    candidates : array-like of int, optional
        The iterations that may be chosen (those whose weights were kept);
        every iteration by default. 0 and ``n_iterations`` are always
        candidates.

    Returns
    -------
    iterations : list of int
        Sorted, unique, from 0 to ``n_iterations``.

    Examples
    --------
    >>> from skvmf.training import loss_checkpoint_iterations
    >>> losses = [2.0, 1.6, 1.2, 0.8, 0.4, 0.35, 0.3, 0.3]
    >>> loss_checkpoint_iterations(losses, 4, window=1)  # levels 2.0, 1.43, 0.87
    [0, 2, 3, 8]
    """
    curve = smoothed_training_loss(losses, batch_sizes=batch_sizes, window=window)
    n = curve.size - 1
    allowed = np.arange(n + 1)
    if candidates is not None:
        allowed = np.asarray(candidates)
        if allowed.ndim != 1 or not np.issubdtype(allowed.dtype, np.integer):
            raise ValueError("candidates must be a 1-D sequence of integers")
        if allowed.size and (allowed.min() < 0 or allowed.max() > n):
            raise ValueError(f"candidates must be iterations in [0, {n}]")
        allowed = np.union1d(allowed, [0, n])
    k = int(n_checkpoints)
    levels = curve[0] - np.arange(k - 1) * (curve[0] - curve[n]) / (k - 1)
    at = curve[allowed]
    chosen = {n}
    for level in levels:
        # the curve is non-increasing: the first candidate at or below the level
        chosen.add(int(allowed[np.argmax(at <= level)]))
    return sorted(chosen)


def _checkpoint_plan(
    checkpoint_iterations, checkpoint_dir, n_iterations, n_checkpoints=10
) -> list[int]:
    """The sorted steps after which to save (0 is the untrained model); for
    "loss", the candidate steps whose weights are kept until it chooses."""
    if checkpoint_iterations is None and checkpoint_dir is None:
        return []
    if checkpoint_dir is None:
        raise ValueError(
            "checkpoint_iterations were given but checkpoint_dir is None; "
            "say where to save them"
        )
    if checkpoint_iterations is None:
        return [n_iterations]
    if isinstance(checkpoint_iterations, str):  # validated: one of three
        if checkpoint_iterations == "log":
            return log_checkpoint_iterations(n_iterations, n_checkpoints)
        if checkpoint_iterations == "loss":
            return _loss_candidates(n_iterations)
        return default_checkpoint_iterations(n_iterations)
    plan = []
    for it in checkpoint_iterations:
        if (
            isinstance(it, bool)
            or not isinstance(it, (int, np.integer))
            or not 0 <= it <= n_iterations
        ):
            raise ValueError(
                f"checkpoint iteration {it!r} is not an integer in "
                f"[0, {n_iterations}] (the run's steps)"
            )
        plan.append(int(it))
    return sorted(set(plan))


@torch.no_grad()
def _recalibrate_batchnorm(model, batches, device, n_images: int) -> None:
    """Set every BatchNorm's running statistics from ``n_images`` training images.

    During training the running averages lag behind the weights (badly so in
    the first steps), and eval-mode features of an early checkpoint would be
    normalised with stale statistics. Recomputing them with the current
    weights ("precise BN") makes each checkpoint the network it claims to
    be. Training itself is unaffected: train mode uses batch statistics.
    Every submodule's mode and every momentum are restored afterwards.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or n_images <= 0:
        return
    momenta = [m.momentum for m in bns]
    modes = [m.training for m in bns]  # evaluating restores only training ones
    try:
        with evaluating(model, device):
            for m in bns:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the batches below
                m.train()
            seen = 0
            for X, _ in batches:
                X = X[: n_images - seen]
                model(X.to(device))
                seen += len(X)
                if seen >= n_images:
                    break
    finally:
        for m, momentum, mode in zip(bns, momenta, modes):
            m.momentum = momentum
            m.training = mode


# --------------------------------------------------------------------------
# the optimisation pieces
# --------------------------------------------------------------------------


def _cross_entropy(model, X, y):
    out = model(X)
    return nn.functional.cross_entropy(out, y), out


def _make_optimizer(name, params, lr, weight_decay, momentum):
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=momentum > 0,
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _make_schedule(name, optimizer, lr, total):
    if name == "constant" or total < 4:  # too few steps to shape anything
        return None
    if name == "onecycle":
        # a quarter of the steps warming up (at least two: torch needs them)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total, pct_start=max(0.25, 2 / total)
        )
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)


def _shift_batch(
    X: torch.Tensor, max_shift: int, generator: torch.Generator
) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (edge padding)."""
    n, _, h, w = X.shape
    padded = nn.functional.pad(X, (max_shift,) * 4, mode="replicate")
    shifts = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    rows = (shifts[0][:, None] + torch.arange(h)[None, :]).to(X.device)  # (n, h)
    cols = (shifts[1][:, None] + torch.arange(w)[None, :]).to(X.device)  # (n, w)
    batch = torch.arange(n, device=X.device)[:, None, None, None]
    chans = torch.arange(X.shape[1], device=X.device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


@contextlib.contextmanager
def _deterministic_run(device: torch.device, seed: int):
    """Seeded dropout on a forked RNG and, on CUDA, deterministic cuDNN."""
    cudnn = torch.backends.cudnn
    flags = (cudnn.deterministic, cudnn.benchmark)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed + 2)  # dropout
        try:
            if device.type == "cuda":
                cudnn.deterministic, cudnn.benchmark = True, False
            yield
        finally:
            cudnn.deterministic, cudnn.benchmark = flags


# --------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------


_TRAIN_PARAMS = {
    "epochs": [Interval(Integral, 1, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "lr": [Interval(Real, 0, _FINITE, closed="right")],
    "optimizer": [StrOptions({"adam", "adamw", "sgd"})],
    "weight_decay": [Interval(Real, 0, _FINITE, closed="both")],
    "momentum": [Interval(Real, 0, 1, closed="left")],
    "schedule": [StrOptions({"onecycle", "cosine", "constant"})],
    "max_shift": [Interval(Integral, 0, None, closed="left")],
    "recalibrate_bn": [Interval(Integral, 0, None, closed="left")],
    "checkpoint_iterations": [
        StrOptions({"default", "log", "loss"}),
        "array-like",
        None,
    ],
    "n_checkpoints": [Interval(Integral, 2, None, closed="left")],
    "checkpoint_dir": [str, os.PathLike, None],
    "device": _DEVICE,
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}


class Trainer(BaseEstimator):
    """The training loop behind :func:`train_classifier` and
    :func:`skvmf.distillation.distill`.

    The options are those of :func:`train_classifier`, plus two for other
    objectives: ``compute_loss(model, X, y) -> (loss, logits)`` replaces the
    plain cross-entropy, and ``extra_parameters`` (e.g. a distillation
    adapter) are optimised with the model's. :meth:`fit` runs one training;
    each step is a method: ``_train_batch``, ``_train_epoch``,
    ``_record_epoch`` (evaluation and progress), ``_save_checkpoint`` and
    ``_stop_if_diverged`` (the early stop on a non-finite loss).

    Attributes
    ----------
    model_ : torch.nn.Module
        The trained model (trained in place).
    history_ : dict of str to list
        As :attr:`TrainingResult.history`.
    checkpoints_ : list of (int, pathlib.Path)
        Saved checkpoints.
    n_iter_ : int
        Optimizer steps taken.
    device_ : torch.device
        Where the model was trained.

    Examples
    --------
    >>> import torch
    >>> from skvmf.architectures import make_classifier
    >>> from skvmf.training import Trainer
    >>> X = torch.randn(32, 3, 16, 16)
    >>> y = (X.mean(dim=(1, 2, 3)) > 0).long()
    >>> model = make_classifier("vgg16", 2, width=0.0625, input_size=16)
    >>> result = Trainer(epochs=2, batch_size=16).fit(model, (X, y))
    >>> result.n_iterations, model.training
    (4, False)
    """

    _parameter_constraints: dict = {
        **_TRAIN_PARAMS,
        "compute_loss": [callable, None],
        "extra_parameters": [list, tuple],
    }

    def __init__(
        self,
        *,
        epochs=10,
        batch_size=64,
        lr=1e-3,
        optimizer="adam",
        weight_decay=5e-4,
        momentum=0.9,
        schedule="onecycle",
        max_shift=0,
        recalibrate_bn=512,
        checkpoint_iterations=None,
        n_checkpoints=10,
        checkpoint_dir=None,
        device="cpu",
        random_state=0,
        verbose=0,
        compute_loss=None,
        extra_parameters=(),
    ):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.schedule = schedule
        self.max_shift = max_shift
        self.recalibrate_bn = recalibrate_bn
        self.checkpoint_iterations = checkpoint_iterations
        self.n_checkpoints = n_checkpoints
        self.checkpoint_dir = checkpoint_dir
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.compute_loss = compute_loss
        self.extra_parameters = extra_parameters

    def fit(self, model: nn.Module, train_data, val_data=None) -> TrainingResult:
        """Train ``model`` in place on ``train_data``; it ends in eval mode.

        Parameters
        ----------
        model : torch.nn.Module
            A model with ``skvmf_config`` (:mod:`skvmf.architectures`).
        train_data : Dataset or tuple (images, labels)
        val_data : Dataset or tuple (images, labels), optional

        Returns
        -------
        result : TrainingResult
        """
        self._validate_params()
        start = time.perf_counter()
        self._prepare_data(model, train_data, val_data)
        self._prepare_optimisation(model)
        bar = progress(
            range(self._n_total), verbose=self.verbose, desc="training", unit="step"
        )
        self._steps = iter(bar)
        try:
            with _deterministic_run(self.device_, self._seed):
                self._train_epochs()
        finally:
            if hasattr(bar, "close"):
                bar.close()
        if self._snapshots:
            self._save_at_loss_steps()
        elif self._n_total not in self._to_save:  # a saved end is recalibrated
            self._recalibrate()
        self.model_.eval()
        return TrainingResult(
            history=self.history_,
            checkpoints=self.checkpoints_,
            n_iterations=self.n_iter_,
            test_accuracy=self._val_accuracy(),
            train_time=time.perf_counter() - start,
            config=self.config_,
            step_losses=self.step_losses_,
            step_batch_sizes=self.step_batch_sizes_,
        )

    # -- setup ----------------------------------------------------------

    def _prepare_data(self, model, train_data, val_data) -> None:
        """Seeded generators and the batches of the run (checked first)."""
        self.config_ = checkpoints.model_config(model)
        n_classes = self.config_.get("n_classes")
        self.device_ = resolve_device(self.device)
        seed = seed_of(self.random_state)
        self._seed = 0 if seed is None else seed
        data_gen = torch.Generator().manual_seed(self._seed)
        self._aug_gen = torch.Generator().manual_seed(self._seed + 1)
        self._batches = _Batches(
            train_data, self.batch_size, True, data_gen, "train_data", n_classes
        )
        self._calibration = _Batches(train_data, 128, False, None, "train_data")
        if self.max_shift and self._batches.tensors is None:
            raise ValueError(
                "max_shift needs in-memory data (ImageArrayDataset or arrays)"
            )
        self._val_batches = None
        if val_data is not None:
            self._val_batches = _Batches(
                val_data, 256, False, None, "val_data", n_classes
            )

    def _prepare_optimisation(self, model) -> None:
        """Checkpoint plan, model on its device, optimizer and schedule."""
        self._n_total = self.epochs * len(self._batches)
        plan = _checkpoint_plan(
            self.checkpoint_iterations,
            self.checkpoint_dir,
            self._n_total,
            self.n_checkpoints,
        )
        if plan:
            Path(self.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        # "loss" needs the whole loss curve: it keeps the candidates' weights
        # in memory and saves its choice after the last step
        by_loss = isinstance(self.checkpoint_iterations, str) and (
            self.checkpoint_iterations == "loss"
        )
        self._candidates = set(plan) if by_loss and plan else set()
        self._snapshots = {}
        self._to_save = set() if self._candidates else set(plan)
        self.model_ = model.to(self.device_)
        self._loss = self.compute_loss or _cross_entropy
        params = [*model.parameters(), *self.extra_parameters]
        self._optimizer = _make_optimizer(
            self.optimizer, params, self.lr, self.weight_decay, self.momentum
        )
        self._scheduler = _make_schedule(
            self.schedule, self._optimizer, self.lr, self._n_total
        )
        self.history_ = {key: [] for key in _HISTORY_KEYS}
        self.step_losses_, self.step_batch_sizes_ = [], []
        self.checkpoints_ = []
        self.n_iter_ = 0

    # -- the steps --------------------------------------------------------

    def _train_epochs(self) -> None:
        """Every epoch, a checkpoint of the untrained model if planned."""
        self.model_.train()
        if 0 in self._to_save:
            self._save_checkpoint()
        self._keep_candidate()
        for epoch in range(1, self.epochs + 1):
            loss, accuracy = self._train_epoch()
            self._record_epoch(epoch, loss, accuracy)
        for _ in self._steps:  # lets the bar reach its total and close
            pass

    def _train_epoch(self) -> tuple[float, float]:
        """One pass over the data: mean loss and training accuracy."""
        loss_sum, correct, seen = 0.0, 0, 0
        for X, y in self._batches:
            batch_loss, batch_correct = self._train_batch(X, y)
            loss_sum += batch_loss * len(y)
            correct += batch_correct
            seen += len(y)
            self.step_losses_.append(batch_loss)
            self.step_batch_sizes_.append(len(y))
            if self.n_iter_ in self._to_save:
                self._save_checkpoint()
            self._keep_candidate()
        return loss_sum / seen, correct / seen

    def _train_batch(self, X, y) -> tuple[float, int]:
        """One optimizer step: the batch's loss and its correct predictions."""
        if self.max_shift:
            X = _shift_batch(X, self.max_shift, self._aug_gen)
        X, y = X.to(self.device_), y.to(self.device_)
        loss, out = self._loss(self.model_, X, y)
        self._stop_if_diverged(loss)
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer.step()
        if self._scheduler is not None:
            self._scheduler.step()
        self.n_iter_ += 1
        next(self._steps, None)  # progress
        return float(loss.detach()), int((out.detach().argmax(1) == y).sum())

    def _stop_if_diverged(self, loss) -> None:
        """A non-finite loss ends the run with advice, before any update."""
        if not torch.isfinite(loss):
            raise ValueError(
                f"training diverged at step {self.n_iter_ + 1} "
                f"(loss {loss.item()}); try a lower lr than {self.lr}"
            )

    def _val_accuracy(self):
        if self._val_batches is None:
            return None
        correct, total = _predict_correct(self.model_, self._val_batches, self.device_)
        return correct / total

    def _record_epoch(self, epoch: int, loss: float, accuracy: float) -> None:
        """History of the epoch (with validation accuracy) and its line."""
        val = self._val_accuracy()
        lr = self._optimizer.param_groups[0]["lr"]
        values = (epoch, self.n_iter_, loss, accuracy, val, lr)
        for key, value in zip(_HISTORY_KEYS, values):
            self.history_[key].append(value)
        message(
            f"epoch {epoch}/{self.epochs}: loss {loss:.4f}, train acc {accuracy:.4f}"
            + ("" if val is None else f", val acc {val:.4f}"),
            verbose=self.verbose,
        )

    def _recalibrate(self) -> None:
        _recalibrate_batchnorm(
            self.model_, self._calibration, self.device_, self.recalibrate_bn
        )

    def _save_checkpoint(self, iteration=None) -> None:
        """Precise BN statistics, then the weights at this step."""
        iteration = self.n_iter_ if iteration is None else iteration
        self._recalibrate()
        path = checkpoints.write(
            self.model_, self.checkpoint_dir, iteration, self._val_accuracy()
        )
        self.checkpoints_.append((iteration, path))

    def _keep_candidate(self) -> None:
        """A CPU copy of the weights at a candidate step of "loss"."""
        if self.n_iter_ in self._candidates:
            self._snapshots[self.n_iter_] = {
                k: v.detach().to("cpu", copy=True)
                for k, v in self.model_.state_dict().items()
            }

    def _save_at_loss_steps(self) -> None:
        """The "loss" schedule: with the whole loss curve known, save the
        candidates at equal loss steps (:func:`loss_checkpoint_iterations`),
        each recalibrated; the model ends with its final weights."""
        chosen = loss_checkpoint_iterations(
            self.step_losses_,
            self.n_checkpoints,
            batch_sizes=self.step_batch_sizes_,
            candidates=sorted(self._snapshots),
        )
        for iteration in chosen:  # ascending: the final weights come last
            self.model_.load_state_dict(self._snapshots[iteration])
            self._save_checkpoint(iteration)
        self._snapshots = {}


@validate_params(
    {
        "model": [nn.Module],
        "train_data": "no_validation",
        "val_data": "no_validation",
        **_TRAIN_PARAMS,
    },
    prefer_skip_nested_validation=True,
)
def train_classifier(
    model: nn.Module,
    train_data,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    schedule: str = "onecycle",
    max_shift: int = 0,
    recalibrate_bn: int = 512,
    checkpoint_iterations=None,
    n_checkpoints: int = 10,
    checkpoint_dir=None,
    val_data=None,
    device="cpu",
    random_state=0,
    verbose: int = 0,
) -> TrainingResult:
    """Train a classifier with cross-entropy, saving checkpoints on the way.

    The run is deterministic under ``random_state``: the data order, the
    augmentation and dropout draw from generators seeded by it (the global
    torch RNG is restored afterwards), so two runs from the same initial
    weights end with identical weights on the same machine with the same
    number of torch threads (the thread count changes the order of float
    sums). On CUDA, cuDNN is switched to deterministic kernels for the run.
    The loop is :class:`Trainer`.

    Parameters
    ----------
    model : torch.nn.Module
        A model from :func:`skvmf.architectures.make_classifier` (its
        ``skvmf_config`` goes into the checkpoints); it is trained in place.
    train_data : Dataset or tuple (images, labels)
        Items ``(image, label)``, labels in ``[0, n_classes)``. In-memory
        data (an ``ImageArrayDataset`` or arrays) is batched directly, other
        datasets through a ``DataLoader``.
    epochs : int, default=10
        Passes over the training data.
    batch_size : int, default=64
        Images per optimizer step (the last batch of an epoch may be smaller).
    lr : float, default=1e-3
        Learning rate (the peak of the one-cycle schedule); positive, finite.
    optimizer : {"adam", "adamw", "sgd"}, default="adam"
        SGD uses Nesterov momentum ``momentum``.
    weight_decay : float, default=5e-4
        L2 penalty (decoupled for "adamw").
    momentum : float in [0, 1), default=0.9
        Momentum of SGD.
    schedule : {"onecycle", "cosine", "constant"}, default="onecycle"
        Learning-rate schedule over all steps.
    max_shift : int, default=0
        Random translation of each training image by up to this many pixels
        (in-memory data only); 0 disables augmentation.
    recalibrate_bn : int, default=512
        For networks with batch normalisation: before each checkpoint and at
        the end, recompute the running statistics from this many training
        images with the current weights, so that eval-mode features of early
        checkpoints are not normalised with stale averages ("precise BN").
        Training itself is unaffected (it uses batch statistics); per-epoch
        ``val_accuracy`` uses the running averages. 0 disables it.
    checkpoint_iterations : {"default", "log", "loss"}, list of int or None, \
default=None
        Optimizer steps after which to save a checkpoint (0 is the untrained
        model). "default" uses :func:`default_checkpoint_iterations`; "log"
        spaces ``n_checkpoints`` evenly in log(iteration)
        (:func:`log_checkpoint_iterations`); "loss" places them at equal steps
        of the training loss (:func:`loss_checkpoint_iterations`), chosen
        after the last step from the recorded per-step loss: meanwhile the
        weights of every step (of at most 128 candidate steps in a longer
        run, log- and evenly spaced) are kept in CPU memory, which costs
        that many copies of the weights. None with a ``checkpoint_dir``
        saves only the final model.
    n_checkpoints : int >= 2, default=10
        How many checkpoints "log" and "loss" save at most (the first and
        the last included); unused otherwise.
    checkpoint_dir : str or path-like, optional
        Directory of the checkpoint files (created if needed), named
        ``checkpoint_iter<iteration>.pt``.
    val_data : Dataset or tuple (images, labels), optional
        Evaluated after every epoch, at every checkpoint and at the end
        (``TrainingResult.test_accuracy``).
    device : str or torch.device, default="cpu"
        Where to train.
    random_state : int, RandomState instance or None, default=0
        Seeds data order, augmentation and dropout.
    verbose : int, default=0
        0 silent, 1 a progress bar over steps, 2 also one line per epoch.

    Returns
    -------
    result : TrainingResult
        The model itself is trained in place and left in eval mode.

    Examples
    --------
    >>> import torch
    >>> from skvmf.architectures import make_classifier
    >>> from skvmf.training import train_classifier
    >>> X = torch.randn(32, 3, 16, 16)
    >>> y = (X.mean(dim=(1, 2, 3)) > 0).long()
    >>> model = make_classifier(
    ...     "resnet18", n_classes=2, width=0.125, input_size=16, random_state=0
    ... )
    >>> result = train_classifier(model, (X, y), epochs=2, batch_size=16)
    >>> result.n_iterations, len(result.history["loss"])
    (4, 2)
    """
    trainer = Trainer(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        momentum=momentum,
        schedule=schedule,
        max_shift=max_shift,
        recalibrate_bn=recalibrate_bn,
        checkpoint_iterations=checkpoint_iterations,
        n_checkpoints=n_checkpoints,
        checkpoint_dir=checkpoint_dir,
        device=device,
        random_state=random_state,
        verbose=verbose,
    )
    return trainer.fit(model, train_data, val_data)


@validate_params(
    {
        "arch": [StrOptions({*ARCHITECTURES, "vit"})],
        "checkpoint_dir": [str, os.PathLike, None],
        "checkpoint_iterations": [
            StrOptions({"default", "log", "loss"}),
            "array-like",
            None,
        ],
        "n_checkpoints": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "device": _DEVICE,
    },
    prefer_skip_nested_validation=True,
)
def train_digits_classifier(
    arch: str = "vgg16",
    *,
    checkpoint_dir=None,
    checkpoint_iterations="default",
    n_checkpoints: int = 10,
    random_state=0,
    verbose: int = 0,
    device="cpu",
    **overrides,
):
    """Train the default network on scikit-learn's digits images.

    The recipe behind ``skvmf demo``: digits upsampled to 32 px
    (:func:`skvmf.datasets.load_digits_images`, fixed 75/25 split), the
    network of :func:`skvmf.architectures.make_digits_classifier` (width 1/8,
    batch normalisation, no dropout), 6 epochs of Adam (batch 64, peak lr
    4e-3, no weight decay) with a one-cycle schedule. VGG-16 reaches 97-99 %
    test accuracy in about a minute or less on two CPU cores; the ResNets and
    MobileNetV2 reach 97-99 % too, more slowly. Default checkpoints:
    :func:`default_checkpoint_iterations` (10 of them: the start and every
    eighth).

    With the environment variable ``SKVMF_TRAINING_CACHE`` set to a folder,
    each network trained here is kept there and the same request (same
    options, seed, checkpoint plan, device, torch thread count, versions and
    training code) loads it instead of training again; its checkpoints are
    copied into ``checkpoint_dir``, and ``train_time`` is the original run's.

    ``arch="vit"`` trains the small ViT instead: digits at 16 px in 4 x 4
    patches, 4 blocks of width 64, 30 epochs of Adam (peak lr 3e-3,
    one-cycle), about 96-97 % test accuracy in well under a minute on one CPU
    thread. Its overrides are the options of
    :func:`skvmf.architectures.make_vit_classifier` and
    :func:`train_classifier`.

    Parameters
    ----------
    arch : str, default="vgg16"
        Any architecture of :func:`skvmf.architectures.make_classifier`, or
        ``"vit"``.
    checkpoint_dir : str or path-like, optional
        Where to save checkpoints; None saves none.
    checkpoint_iterations : {"default", "log", "loss"}, list of int or None, \
default="default"
        Which steps to save (see :func:`train_classifier`); only used with a
        ``checkpoint_dir``. ``skvmf demo`` uses "loss".
    n_checkpoints : int >= 2, default=10
        How many "log" and "loss" save at most.
    random_state : int, default=0
        Seeds the weights, the data order and dropout.
    verbose : int, default=0
        Progress bar (1) and per-epoch lines (2).
    device : str or torch.device, default="cpu"
        Where to train.
    **overrides
        Any option of :func:`skvmf.architectures.make_classifier` (``width``,
        ``input_size``, ``batch_norm``, ``dropout``) or
        :func:`train_classifier` (``epochs``, ``batch_size``, ``lr``,
        ``optimizer``, ``weight_decay``, ``schedule``, ``max_shift``), and
        ``classes`` (digits to keep). They are validated by those functions.

    Returns
    -------
    model : torch.nn.Module
        The trained network, in eval mode.
    result : TrainingResult
        History, checkpoints and the test accuracy.

    Examples
    --------
    >>> from skvmf.training import train_digits_classifier
    >>> model, result = train_digits_classifier(classes=[0, 1], epochs=2)
    >>> model.skvmf_config["arch"], result.n_iterations, result.test_accuracy > 0.9
    ('vgg16', 10, True)
    """
    from .datasets import load_digits_images

    classes = overrides.pop("classes", None)
    model_opts, train_opts = split_overrides(arch, overrides)
    trainer = Trainer(
        checkpoint_dir=checkpoint_dir,
        checkpoint_iterations=checkpoint_iterations
        if checkpoint_dir is not None
        else None,
        n_checkpoints=n_checkpoints,
        device=device,
        random_state=random_state,
        verbose=verbose,
        **train_opts,
    )
    trainer._validate_params()  # the overrides, before any data is loaded
    size = model_opts["input_size"]
    train = load_digits_images("train", size=size, classes=classes)
    # the overrides were not validated by this function's decorator
    with config_context(skip_parameter_validation=False):
        model = make_digits_classifier(
            arch, len(train.classes), random_state=random_state, **model_opts
        )
    root = train_cache.folder()
    if root is None or not isinstance(random_state, Integral):
        test = load_digits_images("test", size=size, classes=classes)
        return model, trainer.fit(model, train, test)
    plan = checkpoint_iterations if checkpoint_dir is not None else None
    if plan is not None and not isinstance(plan, str):
        plan = [int(it) for it in plan]
    elif plan in ("log", "loss"):
        plan = [plan, int(n_checkpoints)]
    name = train_cache.key(
        {
            "arch": arch,
            "model": model_opts,
            "train": train_opts,
            "classes": None if classes is None else [int(c) for c in classes],
            "random_state": int(random_state),
            "checkpoints": plan,
            "device": str(resolve_device(device)),
        }
    )
    with train_cache.locked(root, name):
        hit = train_cache.load(root, name, checkpoint_dir)
        if hit is None:
            test = load_digits_images("test", size=size, classes=classes)
            result = trainer.fit(model, train, test)
            train_cache.store(root, name, model, result)
            return model, result
    state, fields = hit
    model.load_state_dict(state)
    model.to(resolve_device(device)).eval()
    if verbose:
        message(
            f"loaded the trained network from {root / name} ({train_cache.ENV})",
            verbose=verbose,
            level=1,
        )
    return model, TrainingResult(**fields)


# --------------------------------------------------------------------------
# reading checkpoints
# --------------------------------------------------------------------------


@validate_params(
    {"path": [str, os.PathLike], "device": _DEVICE},
    prefer_skip_nested_validation=True,
)
def load_checkpoint(path, *, device="cpu") -> nn.Module:
    """Rebuild a model from a checkpoint written by :func:`train_classifier`.

    The file names its architecture (its ``config``), so no network is given;
    to put the weights of any file into a network you built, use
    :func:`skvmf.sources.load_weights`.

    Parameters
    ----------
    path : str or path-like
        A checkpoint file (loaded with ``torch.load(weights_only=True)``).
    device : str or torch.device, default="cpu"
        Where to put the model.

    Returns
    -------
    model : torch.nn.Module
        The network in eval mode, with ``skvmf_config`` and two extra
        attributes: ``skvmf_iteration`` and ``skvmf_accuracy``.

    Raises
    ------
    ValueError
        Naming the file, when it is missing, unreadable or corrupt, not a
        checkpoint skvmf wrote, or its weights do not fit the network its
        config describes (a few differing keys are listed).

    Examples
    --------
    >>> import tempfile, torch
    >>> from skvmf.architectures import make_classifier
    >>> from skvmf.training import list_checkpoints, load_checkpoint, train_classifier
    >>> X, y = torch.randn(8, 3, 16, 16), torch.tensor([0, 1] * 4)
    >>> model = make_classifier("vgg16", n_classes=2, width=0.125, input_size=16)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = train_classifier(
    ...         model, (X, y), epochs=1, batch_size=4,
    ...         checkpoint_dir=d, checkpoint_iterations=[0, 2],
    ...     )
    ...     found = list_checkpoints(d)
    ...     [it for it, _ in found], load_checkpoint(found[-1][1]).skvmf_iteration
    ([0, 2], 2)
    """
    dev = resolve_device(device)
    ckpt = checkpoints.read(path)
    if not checkpoints.is_skvmf(ckpt):
        raise checkpoints.not_skvmf_error(path, ckpt)
    return checkpoints.rebuild(ckpt, path).to(dev).eval()


@validate_params({"directory": [str, os.PathLike]}, prefer_skip_nested_validation=True)
def list_checkpoints(directory) -> list[tuple[int, Path]]:
    """The skvmf checkpoints of a directory, sorted by iteration.

    Parameters
    ----------
    directory : str or path-like
        Folder to scan for ``*.pt`` / ``*.pth`` files; readable files that
        are not skvmf checkpoints (other weights) are skipped, a file that
        cannot be read is a ``ValueError`` naming it.

    Returns
    -------
    checkpoints : list of (int, pathlib.Path)
        (iteration, path) pairs, by iteration.

    Examples
    --------
    >>> import tempfile
    >>> from skvmf.training import list_checkpoints
    >>> with tempfile.TemporaryDirectory() as d:
    ...     list_checkpoints(d)
    []
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"checkpoint directory {str(directory)!r} does not exist")
    found = []
    for path in checkpoints.files_in(directory):
        ckpt = checkpoints.read(path)
        if checkpoints.is_skvmf(ckpt):
            found.append((int(ckpt["iteration"]), path))
    return sorted(found, key=lambda item: (item[0], str(item[1])))


@validate_params(
    {"checkpoints": [list, tuple], "k": [Interval(Integral, 0, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def spread_checkpoints(checkpoints, k):
    """``k`` checkpoints evenly spread over the iterations of training.

    The first and the last are always kept; the others are the nearest to
    evenly spaced iterations (not list positions: the default checkpoints
    are denser early, :func:`default_checkpoint_iterations`). ``skvmf demo``
    chooses the checkpoints of its emergence study this way.

    Parameters
    ----------
    checkpoints : list of (int, object)
        ``(iteration, anything)`` pairs sorted by iteration, e.g. the output
        of :func:`list_checkpoints`.
    k : int >= 0
        How many to keep (all of them when ``k`` is at least their number).

    Returns
    -------
    list of (int, object)
        The chosen pairs, in order.

    Examples
    --------
    >>> from skvmf.training import spread_checkpoints
    >>> pairs = [(it, f"ckpt_{it}") for it in (0, 1, 2, 5, 10, 50, 100)]
    >>> [it for it, _ in spread_checkpoints(pairs, 3)]
    [0, 50, 100]
    """
    checkpoints = list(checkpoints)
    if k == 0 or not checkpoints:
        return []
    if k >= len(checkpoints):
        return checkpoints
    its = np.array([it for it, _ in checkpoints], dtype=float)
    targets = np.linspace(its[0], its[-1], k)
    idx = np.unique([int(np.argmin(np.abs(its - t))) for t in targets])
    return [checkpoints[i] for i in idx]
