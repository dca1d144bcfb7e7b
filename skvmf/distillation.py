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

import torch
import torch.nn.functional as F
from torch import nn

from ._layers import detect_architecture, resolve_layer
from ._torch_utils import resolve_device
from .models import TrainingResult, _train

_METHODS = ("logits", "features")


class _Capture:
    """Forward hook keeping the output of one module (removed by ``close``)."""

    def __init__(self, model: nn.Module, name: str):
        self.value = None
        self.handle = model.get_submodule(name).register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.value = output

    def close(self):
        self.handle.remove()


def _hint_adapter(student_maps: torch.Tensor, teacher_maps: torch.Tensor) -> nn.Module:
    """A 1x1 convolution from the student's channels to the teacher's."""
    if student_maps.ndim != 4 or teacher_maps.ndim != 4:
        raise ValueError(
            "feature distillation needs 4-D conv outputs (N, K, H, W); got "
            f"student {tuple(student_maps.shape)} and teacher "
            f"{tuple(teacher_maps.shape)}"
        )
    return nn.Conv2d(student_maps.shape[1], teacher_maps.shape[1], 1, bias=False)


def distillation_loss(
    student_logits, teacher_logits, labels, *, temperature=4.0, alpha=0.9
):
    """Hinton et al.'s loss on logits, batch-averaged.

    ``alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) +
    (1 - alpha) * CE(z_s, y)``; the ``T^2`` keeps the gradient scale of the
    soft term independent of ``T``.

    Examples
    --------
    >>> import torch
    >>> from skvmf.distillation import distillation_loss
    >>> z = torch.tensor([[2.0, 0.0, -1.0]])
    >>> float(distillation_loss(z, z, torch.tensor([0]), alpha=1.0))
    0.0
    """
    soft_t = F.log_softmax(teacher_logits / temperature, dim=1)
    soft_s = F.log_softmax(student_logits / temperature, dim=1)
    kd = F.kl_div(soft_s, soft_t, reduction="batchmean", log_target=True)
    loss = alpha * temperature**2 * kd
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(student_logits, labels)
    return loss


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

    The teacher is frozen (eval mode, no gradients; its mode is restored).
    The student is trained in place by the same loop as
    :func:`skvmf.models.train_classifier`, so checkpoints, determinism under
    ``random_state``, progress bars and batch-norm recalibration behave the
    same.

    Parameters
    ----------
    teacher, student : torch.nn.Module
        Classifiers with the same number of classes. The student must come
        from :func:`skvmf.models.make_classifier` (its config goes into
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
        As in :func:`skvmf.models.train_classifier`.

    Returns
    -------
    TrainingResult
        ``config`` gains a ``"distillation"`` entry describing the method.

    Examples
    --------
    >>> import torch
    >>> from skvmf.models import make_classifier
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
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}; got {method!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive; got {temperature!r}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}")
    if not hint_weight >= 0:
        raise ValueError(f"hint_weight must be >= 0; got {hint_weight!r}")
    dev = resolve_device(device)
    teacher_was_training = teacher.training
    teacher_grads = [p.requires_grad for p in teacher.parameters()]
    teacher.to(dev).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    captures: list[_Capture] = []
    extra: list[nn.Parameter] = []
    details: dict = {"method": method, "temperature": float(temperature)}
    try:
        if method == "logits":
            details["alpha"] = float(alpha)

            def compute_loss(model, X, y):
                with torch.no_grad():
                    z_t = teacher(X)
                out = model(X)
                loss = distillation_loss(
                    out, z_t, y, temperature=temperature, alpha=alpha
                )
                return loss, out

        else:
            if layer is None:
                raise ValueError("method='features' needs the teacher layer to mimic")
            t_name = resolve_layer(
                layer, teacher, detect_architecture(teacher), what="teacher layer"
            )
            s_name = resolve_layer(
                student_layer or layer,
                student,
                detect_architecture(student),
                what="student layer",
            )
            details.update(
                layer=layer,
                student_layer=student_layer or layer,
                hint_weight=float(hint_weight),
            )
            t_cap, s_cap = _Capture(teacher, t_name), _Capture(student, s_name)
            captures += [t_cap, s_cap]
            probe = _probe_images(train_data).to(dev)
            was = student.training
            student.to(dev).eval()
            with torch.no_grad():
                teacher(probe)
                student(probe)
            student.train(was)
            adapter = _hint_adapter(s_cap.value, t_cap.value).to(dev)
            extra = list(adapter.parameters())
            t_size = tuple(t_cap.value.shape[2:])

            def compute_loss(model, X, y):
                with torch.no_grad():
                    teacher(X)
                    target = t_cap.value.detach().clone()
                out = model(X)
                mapped = adapter(s_cap.value)
                if tuple(mapped.shape[2:]) != t_size:
                    mapped = F.adaptive_avg_pool2d(mapped, t_size)
                loss = F.cross_entropy(out, y) + hint_weight * F.mse_loss(
                    mapped, target
                )
                return loss, out

        result = _train(
            student,
            train_data,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            weight_decay=weight_decay,
            schedule=schedule,
            checkpoint_iterations=checkpoint_iterations,
            checkpoint_dir=checkpoint_dir,
            val_data=val_data,
            device=dev,
            random_state=random_state,
            verbose=verbose,
            compute_loss=compute_loss,
            extra_parameters=extra,
        )
    finally:
        for cap in captures:
            cap.close()
        for p, flag in zip(teacher.parameters(), teacher_grads):
            p.requires_grad_(flag)
        teacher.train(teacher_was_training)
    result.config = {**result.config, "distillation": details}
    return result


def _probe_images(train_data) -> torch.Tensor:
    """One or two training images as a batch, to size the hint adapter."""
    if isinstance(train_data, tuple) and len(train_data) == 2:
        return torch.as_tensor(train_data[0][:2]).float()
    item = train_data[0]
    image = item[0] if isinstance(item, (tuple, list)) else item
    return torch.as_tensor(image).float().unsqueeze(0)
