"""Knowledge distillation: train a student from a teacher (SPEC section 7).

The paper compares the knowledge points of a teacher with those of students
distilled from it, either on its output (logits) or on one of its
intermediate layers; the students end with fewer reliable knowledge points.
:func:`distill` trains such students; :func:`skvmf.analyze` compares them.

References
----------
Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural Network", 2015
(soft targets at a temperature, the T^2 factor).
Romero et al. "FitNets: Hints for Thin Deep Nets", ICLR 2015 (an intermediate
layer regressed through a learned adapter).
"""

from __future__ import annotations

import contextlib
from numbers import Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from torch import nn

from ._torch.devices import resolve_device, seed_of
from ._torch.hooks import Capture, evaluating
from ._torch.images import as_images
from ._torch.layers import detect_architecture, resolve_layer
from .training import Trainer, TrainingResult

_METHODS = ("logits", "features")
_FINITE = float(np.finfo(np.float64).max)


def _hint_adapter(student_maps: torch.Tensor, teacher_maps: torch.Tensor) -> nn.Module:
    """A 1x1 convolution from the student's channels to the teacher's."""
    if student_maps.ndim != 4 or teacher_maps.ndim != 4:
        raise ValueError(
            "feature distillation needs 4-D conv outputs (N, K, H, W); got "
            f"student {tuple(student_maps.shape)} and teacher "
            f"{tuple(teacher_maps.shape)}"
        )
    return nn.Conv2d(student_maps.shape[1], teacher_maps.shape[1], 1, bias=False)


def _check_logits(z, name: str) -> None:
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else None
        raise ValueError(
            f"{name} must be a tensor of shape (N, n_classes); got {shape}"
        )
    if z.is_complex() or not z.is_floating_point():
        raise ValueError(f"{name} must be real floating point; got dtype {z.dtype}")
    if not torch.isfinite(z).all():
        raise ValueError(f"{name} contain NaN or infinite values")


@validate_params(
    {
        "student_logits": [torch.Tensor],
        "teacher_logits": [torch.Tensor],
        "labels": [torch.Tensor],
        "temperature": [Interval(Real, 0, _FINITE, closed="right")],
        "alpha": [Interval(Real, 0, 1, closed="both")],
    },
    prefer_skip_nested_validation=True,
)
def distillation_loss(
    student_logits, teacher_logits, labels, *, temperature=4.0, alpha=0.9
):
    """Hinton et al.'s loss on logits, batch-averaged.

    ``alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) +
    (1 - alpha) * CE(z_s, y)``; the ``T^2`` keeps the gradient scale of the
    soft term independent of ``T``. The soft labels are computed in log space
    (``log_softmax``).

    Parameters
    ----------
    student_logits, teacher_logits : torch.Tensor of shape (N, n_classes)
        Finite logits of the same shape.
    labels : torch.Tensor of int of shape (N,)
        Class indices in ``[0, n_classes)``.
    temperature : float, default=4.0
        Softening temperature T (positive, finite).
    alpha : float in [0, 1], default=0.9
        Weight of the soft term.

    Returns
    -------
    loss : torch.Tensor
        A scalar.

    Examples
    --------
    >>> import torch
    >>> from skvmf.distillation import distillation_loss
    >>> z = torch.tensor([[2.0, 0.0, -1.0]])
    >>> float(distillation_loss(z, z, torch.tensor([0]), alpha=1.0))
    0.0
    """
    _check_logits(student_logits, "student_logits")
    _check_logits(teacher_logits, "teacher_logits")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            "student_logits and teacher_logits must have the same shape; got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    n, n_classes = student_logits.shape
    if labels.shape != (n,) or labels.is_floating_point() or labels.is_complex():
        raise ValueError(
            f"labels must be {n} integer class indices; got shape "
            f"{tuple(labels.shape)} and dtype {labels.dtype}"
        )
    if n and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(
            f"labels must be class indices in [0, {n_classes}); got values in "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    soft_t = F.log_softmax(teacher_logits / temperature, dim=1)
    soft_s = F.log_softmax(student_logits / temperature, dim=1)
    kd = F.kl_div(soft_s, soft_t, reduction="batchmean", log_target=True)
    loss = alpha * temperature**2 * kd
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(student_logits, labels)
    return loss


@contextlib.contextmanager
def _frozen(teacher: nn.Module, device: torch.device):
    """The teacher in eval mode on ``device`` without gradients; every
    submodule's mode, every ``requires_grad`` and the device restored."""
    grads = [(p, p.requires_grad) for p in teacher.parameters()]
    try:
        with evaluating(teacher, device):
            for p, _ in grads:
                p.requires_grad_(False)
            yield teacher
    finally:
        for p, flag in grads:
            p.requires_grad_(flag)


def _logit_loss(teacher, temperature, alpha):
    """``compute_loss`` of Hinton et al.'s distillation."""

    def compute_loss(model, X, y):
        with torch.no_grad():
            z_t = teacher(X)
        out = model(X)
        loss = distillation_loss(out, z_t, y, temperature=temperature, alpha=alpha)
        return loss, out

    return compute_loss


def _layer(model, name, what) -> tuple[str, nn.Module]:
    """``(module name, module)`` for a module name or an alias of ``model``."""
    resolved = resolve_layer(name, model, detect_architecture(model), what=what)
    return resolved, model.get_submodule(resolved)


def _probe_images(train_data) -> torch.Tensor:
    """One or two training images as a batch, to size the hint adapter."""
    if isinstance(train_data, tuple) and len(train_data) == 2:
        return torch.as_tensor(np.asarray(train_data[0][:2]))
    item = train_data[0]
    image = item[0] if isinstance(item, (tuple, list)) else item
    return torch.as_tensor(np.asarray(image)).unsqueeze(0)


def _hint_loss(teacher, student, train_data, t_layer, s_layer, options):
    """FitNets' ``compute_loss`` and the adapter it trains.

    A probe batch through both networks sizes the 1x1 adapter from the
    student's channels to the teacher's; its initial weights are drawn under
    ``random_state`` (the global torch RNG is left as it was). Hooks exist
    only during a forward pass.
    """
    device, hint_weight = options["device"], options["hint_weight"]
    probe = as_images(
        _probe_images(train_data), student, device, name="train_data images"
    )
    with torch.no_grad(), evaluating(student, device):
        with Capture(teacher, {"t": t_layer}, detach=True) as t_cap:
            teacher(probe)
        with Capture(student, {"s": s_layer}, detach=True) as s_cap:
            student(probe)
    t_cap.require()
    s_cap.require()
    seed = seed_of(options["random_state"])
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed + 3)  # the trainer uses seed .. seed + 2
        adapter = _hint_adapter(s_cap.outputs["s"], t_cap.outputs["t"])
    adapter = adapter.to(device)
    t_size = tuple(t_cap.outputs["t"].shape[2:])

    def compute_loss(model, X, y):
        with torch.no_grad(), Capture(teacher, {"t": t_layer}, detach=True) as t_cap:
            teacher(X)
        with Capture(model, {"s": s_layer}, detach=False) as s_cap:
            out = model(X)
        mapped = adapter(s_cap.outputs["s"])
        if tuple(mapped.shape[2:]) != t_size:
            mapped = F.adaptive_avg_pool2d(mapped, t_size)
        hint = F.mse_loss(mapped, t_cap.outputs["t"])
        return F.cross_entropy(out, y) + hint_weight * hint, out

    return compute_loss, list(adapter.parameters())


_TRAINING_OPTIONS = (
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "weight_decay",
    "schedule",
    "checkpoint_iterations",
    "checkpoint_dir",
    "random_state",
    "verbose",
)


@validate_params(
    {
        "teacher": [nn.Module],
        "student": [nn.Module],
        "train_data": "no_validation",
        "method": [StrOptions(set(_METHODS))],
        "layer": [str, None],
        "student_layer": [str, None],
        "temperature": [Interval(Real, 0, _FINITE, closed="right")],
        "alpha": [Interval(Real, 0, 1, closed="both")],
        "hint_weight": [Interval(Real, 0, _FINITE, closed="both")],
        "val_data": "no_validation",
        "device": [str, torch.device, None],
        **{name: Trainer._parameter_constraints[name] for name in _TRAINING_OPTIONS},
    },
    prefer_skip_nested_validation=True,
)
def distill(
    teacher: nn.Module,
    student: nn.Module,
    train_data,
    *,
    method: str = "logits",
    layer: str | None = None,
    student_layer: str | None = None,
    temperature: float = 4.0,
    alpha: float = 0.9,
    hint_weight: float = 1.0,
    epochs: int = 6,
    batch_size: int = 64,
    lr: float = 4e-3,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    schedule: str = "onecycle",
    checkpoint_iterations=None,
    checkpoint_dir=None,
    val_data=None,
    device="cpu",
    random_state=0,
    verbose: int = 0,
) -> TrainingResult:
    """Train ``student`` to mimic ``teacher`` on logits or on one layer.

    - ``method="logits"`` (Hinton et al.): the loss is
      ``alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) +
      (1 - alpha) * CE(z_s, y)``.
    - ``method="features"`` (FitNets): the student's ``student_layer`` is
      mapped by a learned 1x1 convolution (and average-pooled to the
      teacher's grid when sizes differ) onto the teacher's ``layer``; the loss
      is ``CE(z_s, y) + hint_weight * MSE(adapter(F_s), F_t)``.

    The teacher is frozen (eval mode, no gradients); every submodule's mode,
    every ``requires_grad`` and its device are restored afterwards, also
    after an error.
    The student is trained in place by the same loop as
    :func:`skvmf.training.train_classifier`, so checkpoints, determinism under
    ``random_state``, progress bars and batch-norm recalibration behave the
    same.

    Parameters
    ----------
    teacher, student : torch.nn.Module
        Classifiers with the same number of classes. The student must come
        from :func:`skvmf.architectures.make_classifier` (its config goes into
        checkpoints).
    train_data : Dataset or tuple (images, labels)
    method : {"logits", "features"}, default="logits"
    layer : str, optional
        Teacher layer for ``method="features"``: a module name or an alias
        such as ``"conv_33"``.
    student_layer : str, optional
        Student layer, default the same name as ``layer``.
    temperature : float, default=4.0
        Softening temperature T of the logits.
    alpha : float in [0, 1], default=0.9
        Weight of the distillation term for ``method="logits"``.
    hint_weight : float, default=1.0
        Weight of the hint term for ``method="features"``.
    epochs, batch_size, lr, optimizer, weight_decay, schedule, \
checkpoint_iterations, checkpoint_dir, val_data, device, random_state, verbose
        As in :func:`skvmf.training.train_classifier`.

    Returns
    -------
    TrainingResult
        ``config`` gains a ``"distillation"`` entry describing the method.

    Examples
    --------
    >>> import torch
    >>> from skvmf.architectures import make_classifier
    >>> from skvmf.distillation import distill
    >>> X = torch.randn(32, 3, 16, 16)
    >>> y = (X.mean(dim=(1, 2, 3)) > 0).long()
    >>> teacher = make_classifier("vgg16", 2, width=0.125, input_size=16,
    ...                           random_state=0)
    >>> student = make_classifier("vgg16", 2, width=0.0625, input_size=16,
    ...                           random_state=1)
    >>> res = distill(teacher, student, (X, y), method="features",
    ...               layer="conv_33", epochs=1, batch_size=16)
    >>> res.config["distillation"]["method"], res.n_iterations
    ('features', 2)
    """
    dev = resolve_device(device)
    details: dict = {"method": method, "temperature": float(temperature)}
    with _frozen(teacher, dev):
        if method == "logits":
            details["alpha"] = float(alpha)
            compute_loss, extra = _logit_loss(teacher, temperature, alpha), []
        else:
            if layer is None:
                raise ValueError("method='features' needs the teacher layer to mimic")
            t_layer = _layer(teacher, layer, "teacher layer")
            s_layer = _layer(student, student_layer or layer, "student layer")
            details.update(
                layer=layer,
                student_layer=student_layer or layer,
                hint_weight=float(hint_weight),
            )
            options = {
                "device": dev,
                "hint_weight": hint_weight,
                "random_state": random_state,
            }
            compute_loss, extra = _hint_loss(
                teacher, student, train_data, t_layer, s_layer, options
            )
        trainer = Trainer(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            weight_decay=weight_decay,
            schedule=schedule,
            checkpoint_iterations=checkpoint_iterations,
            checkpoint_dir=checkpoint_dir,
            device=dev,
            random_state=random_state,
            verbose=verbose,
            compute_loss=compute_loss,
            extra_parameters=extra,
        )
        result = trainer.fit(student, train_data, val_data)
    result.config = {**result.config, "distillation": details}
    return result
