"""Hooks and evaluation mode: the one way skvmf runs a network it was handed.

- :func:`resolve_layer` turns a module name, a paper alias or a submodule into
  ``(name, module)``;
- :func:`evaluating` puts a model in evaluation mode (optionally on another
  device) and restores every submodule's own ``training`` flag and the device
  afterwards, also after an exception;
- :class:`Capture` records module outputs with forward hooks that are always
  removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import nn

from ._layout import output_error


def layer_name(model: nn.Module, module: nn.Module) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name or "<model>"
    return type(module).__name__


def resolve_layer(model: nn.Module, layer) -> tuple[str, nn.Module]:
    """``(name, module)`` for a module name, a paper alias or a submodule."""
    if isinstance(layer, nn.Module):
        for name, candidate in model.named_modules():
            if candidate is layer:
                return name or "<model>", candidate
        raise ValueError(
            f"layer {type(layer).__name__} is not a submodule of the model"
        )
    if isinstance(layer, str):
        # module names, or the paper's aliases ("conv_53", "conv_5", "layer_18")
        # of a recognised architecture; a clear error with suggestions otherwise
        from ._layers import detect_architecture, resolve_layer

        name = resolve_layer(layer, model, detect_architecture(model))
        return name, dict(model.named_modules())[name]
    raise ValueError(
        f"layer must be a module name (str) or an nn.Module; got {type(layer).__name__}"
    )


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
def evaluating(model: nn.Module, device: torch.device):
    """Evaluation mode on ``device`` for the block; modes and device restored.

    Every submodule's own ``training`` flag is saved, so a model with mixed
    modes comes back exactly as it was, also after an exception.
    """
    modes = [(module, module.training) for module in model.modules()]
    home = model_device(model)
    moved = home is not None and home != device
    try:
        if moved:
            model.to(device)
        model.eval()
        yield model
    finally:
        for module, mode in modes:
            module.training = mode
        if moved:
            model.to(home)


class Capture:
    """Forward hooks recording the outputs of some modules during one pass.

    ``detach=True`` stores a detached copy (feature views). Otherwise the
    stored tensor stays in the autograd graph and the module hands a clone
    downstream, so a following in-place op (``ReLU(inplace=True)``) cannot
    overwrite the map whose gradient or value is wanted. A module that runs
    more than once in a forward pass has no single output: ``ValueError``.
    Hooks are removed on exit, also after an exception.
    """

    def __init__(self, model: nn.Module, layers: Mapping, *, detach: bool):
        self.model = model
        self.layers = dict(layers)  # key -> (name, module)
        self.detach = detach
        self.outputs: dict = {}
        self._handles: list = []

    def _hook(self, keys, name):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise output_error(name, output)
            if keys[0] in self.outputs:
                raise ValueError(
                    f"layer {name!r} runs more than once in a forward pass, so its "
                    "output is ambiguous; choose the module that encloses it"
                )
            if self.detach:
                stored = output.detach().clone()
                for key in keys:
                    self.outputs[key] = stored
                return None
            for key in keys:
                self.outputs[key] = output
            return output.clone()

        return hook

    def __enter__(self):
        by_module: dict[int, list] = {}
        names = {}
        for key, (name, module) in self.layers.items():
            by_module.setdefault(id(module), []).append(key)
            names[id(module)] = (name, module)
        for ident, keys in by_module.items():
            name, module = names[ident]
            self._handles.append(module.register_forward_hook(self._hook(keys, name)))
        return self

    def reset(self):
        self.outputs = {}

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return False


def as_logits(output, model_name: str = "model") -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
        raise ValueError(
            f"the {model_name} must return logits of shape (N, n_classes); got "
            f"{type(output).__name__} with shape {shape}"
        )
    return output
