"""Hooks and evaluation mode: the one way skvmf runs a network it was handed.

- :func:`evaluating` puts a model in evaluation mode (optionally on another
  device) and restores every submodule's own ``training`` flag and the device
  afterwards, also after an exception;
- :class:`Hooks` registers hooks and removes all of them on exit;
- :class:`Capture` records module outputs (or inputs) with such hooks,
  optionally transforming them inside the hook;
- :func:`as_logits`, :func:`finite_logits` and :func:`check_finite` refuse
  outputs that are not finite logits, naming where they came from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import nn

from .layout import output_error


def model_dtype(model: nn.Module) -> torch.dtype:
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def model_device(model: nn.Module) -> torch.device | None:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return None


@contextlib.contextmanager
def evaluating(model: nn.Module, device: torch.device | None = None):
    """Evaluation mode on ``device`` for the block; modes and device restored.

    Every submodule's own ``training`` flag is saved, so a model with mixed
    modes comes back exactly as it was, also after an exception. Only the
    modules that were training are touched (setting ``training`` goes through
    ``nn.Module.__setattr__``, which is slow on models with many modules).
    ``device=None`` leaves the model where it is.
    """
    training = [module for module in model.modules() if module.training]
    home = model_device(model)
    moved = device is not None and home is not None and home != device
    try:
        if moved:
            model.to(device)
        for module in training:
            module.training = False
        yield model
    finally:
        for module in training:
            module.training = True
        if moved:
            model.to(home)


class Hooks:
    """Registered hooks that are removed together on exit, also after an
    exception: the one handle manager for every hook skvmf registers."""

    def __init__(self):
        self._handles: list = []

    def forward(self, module: nn.Module, hook, *, pre: bool = False):
        """Register a forward (or forward pre-) hook on ``module``."""
        if pre:
            handle = module.register_forward_pre_hook(hook)
        else:
            handle = module.register_forward_hook(hook)
        self._handles.append(handle)
        return handle

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


class Capture:
    """Forward hooks recording what some modules produce during one pass.

    ``layers`` maps a key to ``(name, module)``; ``name`` is used in messages.
    ``on="output"`` records each module's output, ``on="input"`` its first
    positional input. ``detach=True`` stores a detached copy (feature views).
    Otherwise the stored tensor stays in the autograd graph and the module
    hands a clone downstream, so a following in-place op
    (``ReLU(inplace=True)``) cannot overwrite the map whose gradient or value
    is wanted. ``transform(key, module, tensor)``, when given, turns the
    (detached) tensor into what is stored, inside the hook (extraction pools
    and checks there, so full maps never pile up). A module that runs more
    than once in a forward pass has no single output: ``ValueError``. Hooks
    are removed on exit, also after an exception.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Mapping,
        *,
        detach: bool,
        on: str = "output",
        transform=None,
        what: str = "layer",
    ):
        self.model = model
        self.layers = dict(layers)  # key -> (name, module)
        self.detach = detach
        self.on = on
        self.transform = transform
        self.what = what
        self.outputs: dict = {}
        self._hooks = Hooks()

    def _store(self, keys, name, module, value):
        if keys[0] in self.outputs:
            raise ValueError(
                f"{self.what} {name!r} runs more than once in a forward pass, so "
                "its output is ambiguous; choose the module that encloses it"
            )
        if self.detach:
            value = value.detach()
            if self.transform is None:
                value = value.clone()
        for key in keys:
            stored = value
            if self.transform is not None:
                stored = self.transform(key, module, value)
            self.outputs[key] = stored

    def _hook(self, keys, name):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise output_error(name, output)
            self._store(keys, name, module, output)
            return None if self.detach else output.clone()

        return hook

    def _pre_hook(self, keys, name):
        def hook(module, args):
            if not args or not isinstance(args[0], torch.Tensor):
                raise ValueError(
                    f"the input of {self.what} {name!r} is not a tensor passed "
                    "positionally"
                )
            self._store(keys, name, module, args[0])

        return hook

    def __enter__(self):
        by_module: dict[int, list] = {}
        names = {}
        for key, (name, module) in self.layers.items():
            by_module.setdefault(id(module), []).append(key)
            names[id(module)] = (name, module)
        try:
            for ident, keys in by_module.items():
                name, module = names[ident]
                if self.on == "input":
                    self._hooks.forward(module, self._pre_hook(keys, name), pre=True)
                else:
                    self._hooks.forward(module, self._hook(keys, name))
        except BaseException:
            self._hooks.remove()
            raise
        return self

    def reset(self):
        self.outputs = {}

    def require(self) -> None:
        """Refuse a pass in which a captured module did not run."""
        missing = [
            name for key, (name, _) in self.layers.items() if key not in self.outputs
        ]
        if missing:
            names = ", ".join(repr(n) for n in missing)
            raise ValueError(f"{self.what} {names} did not run in the forward pass")

    def __exit__(self, *exc):
        self._hooks.remove()
        return False


def as_logits(output, model_name: str = "model") -> torch.Tensor:
    """The model's output, refused unless it is logits of shape (N, C)."""
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        got = (
            f"shape {tuple(output.shape)}"
            if isinstance(output, torch.Tensor)
            else type(output).__name__
        )
        raise ValueError(
            f"the {model_name} must return logits of shape (N, C); got {got}"
        )
    return output


def check_finite(values: torch.Tensor, source: str, where: str = "") -> None:
    """``ValueError`` naming ``source`` (a layer, the model's output) when
    ``values`` hold NaN or infinity, so a bad value is caught where it arises
    rather than blamed on a later stage."""
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{source} produced NaN or infinite values{where}")


def finite_logits(output, model_name: str = "model", where: str = "") -> torch.Tensor:
    """:func:`as_logits`, also refusing NaN or infinite logits."""
    logits = as_logits(output, model_name)
    check_finite(logits.detach(), f"the {model_name}'s output (logits)", where)
    return logits
