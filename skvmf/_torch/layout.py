"""Read a layer's output as a map (N, K, H, W), whatever its layout.

Convolutional networks give maps (N, K, H, W). Vision transformers give
tokens (N, P + H * W, K), with P leading class / distillation / register
tokens (torchvision's ``VisionTransformer``: P = 1), or channels-last maps
(N, H, W, K) (torchvision's Swin; the LayerNorm inside a ConvNeXt block).
Every view of skvmf reads a layer through :func:`resolve_layout` and
:func:`to_maps`, so one rule decides the layout everywhere:

- ``reshape`` given: a layout name (``"nchw"``, ``"nhwc"``, ``"tokens"``) or a
  callable ``f(output) -> (N, K, H, W)`` (a pure rearrangement: it is also
  applied to gradients);
- 3-D output (N, T, K): tokens. The grid comes from the patch embedding (a
  torchvision ``VisionTransformer``'s ``patch_size``, or the first
  ``Conv2d`` whose kernel equals its stride) and the image size; the P = T -
  H * W tokens before it are dropped. Without a matching patch embedding, a
  grid of the image's aspect ratio with P = 0 or 1 is taken only when exactly
  one of the two exists;
- 4-D output: channels-first unless the model can reorder axes (it holds a
  LayerNorm or a ``Permute``); then the module itself (a LayerNorm or Linear
  over the last axis, a Swin block, a ``Permute``) and the geometry (which
  two axes form a grid of the image's aspect ratio) decide, and a tie is an
  error naming ``reshape=``.

Anything that cannot be decided is a ``ValueError`` saying what to pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

LAYOUTS = ("nchw", "nhwc", "tokens")
_MAX_PREFIX = 16  # class + distillation + register tokens accepted in front
_CHANNELS_LAST_BLOCKS = (
    "SwinTransformerBlock",
    "SwinTransformerBlockV2",
    "PatchMerging",
    "PatchMergingV2",
)
_SHAPE_AGNOSTIC = (
    nn.Identity,
    nn.Dropout,
    nn.ReLU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.ReLU6,
)


@dataclass(frozen=True)
class Layout:
    """How one layer's output becomes a map (N, K, H, W).

    Attributes
    ----------
    kind : {"nchw", "nhwc", "tokens", "callable", "flat"}
        ``"flat"``: an (N, K) output without spatial axes (kept as it is).
    n_prefix : int
        Tokens before the patch grid (dropped); tokens only.
    grid : tuple of int or None
        (H, W) of the patch grid; tokens only.
    fn : callable or None
        The user's rearrangement (``kind="callable"``).
    reason : str
        Why this layout was chosen (for messages).
    """

    kind: str
    n_prefix: int = 0
    grid: tuple | None = None
    fn: object = field(default=None, compare=False)
    reason: str = ""

    def describe(self) -> str:
        if self.kind == "tokens":
            h, w = self.grid
            front = (
                f"{self.n_prefix} leading token(s) dropped, "
                if self.n_prefix
                else "no class token, "
            )
            return f"tokens ({front}{h}x{w} patch grid)"
        return {"nchw": "(N, C, H, W) maps", "nhwc": "channels-last (N, H, W, C)"}.get(
            self.kind, self.kind
        )


def check_reshape(reshape, what: str = "reshape"):
    """Validate a ``reshape=`` argument: None, ``"auto"``, a layout name or a
    callable."""
    if reshape is None or callable(reshape):
        return reshape
    if isinstance(reshape, str) and (reshape == "auto" or reshape in LAYOUTS):
        return None if reshape == "auto" else reshape
    raise ValueError(
        f"{what} must be None, 'auto', one of {list(LAYOUTS)} or a callable "
        f"output -> (N, K, H, W); got {reshape!r}"
    )


def check_grid(grid, what: str = "grid"):
    """``None``, or a grid of regions ``(h, w)`` from an int or a pair of
    positive ints (the one check of every ``grid=`` argument)."""
    if grid is None:
        return None
    values = (grid, grid) if isinstance(grid, (int, np.integer)) else grid
    if (
        isinstance(values, (tuple, list))
        and len(values) == 2
        and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
            for v in values
        )
    ):
        return int(values[0]), int(values[1])
    raise ValueError(
        f"{what} must be None, a positive int or a pair (h, w) of positive ints; "
        f"got {grid!r}"
    )


def output_error(name: str, output) -> ValueError:
    """The error for a layer output that is not one tensor."""
    kind = type(output).__name__
    hint = ""
    if isinstance(output, (tuple, list)):
        hint = (
            " (e.g. an attention module's (output, weights)); choose a module "
            "that returns one tensor: the enclosing block, or a LayerNorm inside it "
            "(ln_1 / norm1)"
        )
    return ValueError(f"layer {name!r} returns a {kind}, not a tensor{hint}")


# -- model hints --------------------------------------------------------------
def _is_torchvision_vit(model: nn.Module) -> bool:
    return (
        isinstance(getattr(model, "conv_proj", None), nn.Conv2d)
        and isinstance(getattr(model, "patch_size", None), int)
        and isinstance(getattr(model, "class_token", None), torch.Tensor)
    )


def patch_grid(model: nn.Module, image_size) -> tuple[int, int] | None:
    """The patch grid of a transformer's patch embedding at this image size.

    A torchvision ``VisionTransformer``: image size // ``patch_size``. Else the
    first ``Conv2d`` with kernel == stride > 1 and no padding (a patchify
    stem), if any. None when the model has no patch embedding.
    """
    h, w = (int(v) for v in image_size)
    if _is_torchvision_vit(model):
        p = model.patch_size
        return h // p, w // p
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            k, s = tuple(module.kernel_size), tuple(module.stride)
            pad = module.padding
            if k == s and min(s) > 1 and (pad == (0, 0) or pad == 0):
                return (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
            return None  # the first conv is not a patchify stem
    return None


def may_reorder_axes(model: nn.Module) -> bool:
    """Whether the model holds modules that work on channels-last tensors."""
    return any(
        isinstance(m, nn.LayerNorm) or type(m).__name__ == "Permute"
        for m in model.modules()
    )


def _channels_last_hint(module: nn.Module | None, shape) -> bool | None:
    """True / False when the module says channels-last / channels-first."""
    if module is None:
        return None
    channels = int(shape[-1])
    if isinstance(module, nn.LayerNorm):
        norm = tuple(module.normalized_shape)
        if norm == (channels,):
            return True
        return None
    if isinstance(module, nn.Linear):
        return True if module.out_features == channels else None
    if isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d)):
        return False
    if type(module).__name__ in _CHANNELS_LAST_BLOCKS:
        return True
    if type(module).__name__ == "Permute":
        dims = list(getattr(module, "dims", []))
        if dims == [0, 2, 3, 1]:
            return True
        if dims == [0, 3, 1, 2]:
            return False
        return None
    if isinstance(module, _SHAPE_AGNOSTIC):
        return None
    # a container: its last shape-informative child (registration order)
    for child in reversed(list(module.children())):
        if isinstance(child, _SHAPE_AGNOSTIC) or type(child).__name__ in (
            "StochasticDepth",
        ):
            continue
        return _channels_last_hint(child, shape)
    return None


def _fits(grid, image_size) -> bool:
    """Whether ``grid`` is the image downsampled by one integer factor s on
    both axes (each size floor or ceil of image size / s)."""
    (h, w), (H, W) = grid, image_size
    if h < 1 or w < 1:
        return False
    for s in range(1, max(H, W) + 1):
        if h in (H // s, -(-H // s)) and w in (W // s, -(-W // s)):
            return True
    return False


def _aspect_grids(n_tokens: int, image_size):
    """(n_prefix, grid) with n_prefix in {0, 1} and a grid of the image's
    aspect ratio."""
    H, W = image_size
    found = []
    for prefix in (0, 1):
        count = n_tokens - prefix
        if count < 1:
            continue
        for h in range(1, count + 1):
            if count % h == 0 and h * W == (count // h) * H:
                found.append((prefix, (h, count // h)))
    return found


# -- resolution ---------------------------------------------------------------
def _reshape_hint(name):
    return (
        f"pass reshape= for layer {name!r}: 'nchw' (N, C, H, W), 'nhwc' "
        "(N, H, W, C), 'tokens' (N, P + H*W, C) or a callable output -> "
        "(N, C, H, W)"
    )


def _tokens(shape, image_size, model, name, explicit) -> Layout:
    n_tokens = int(shape[1])
    grid = patch_grid(model, image_size) if model is not None else None
    if grid is not None:
        prefix = n_tokens - grid[0] * grid[1]
        if 0 <= prefix <= _MAX_PREFIX:
            return Layout(
                "tokens", prefix, grid, reason="patch embedding and image size"
            )
    candidates = _aspect_grids(n_tokens, image_size)
    if len(candidates) == 1:
        prefix, found = candidates[0]
        return Layout("tokens", prefix, found, reason="token count and aspect ratio")
    what = "explicit 'tokens'" if explicit else "3-D output"
    patch = (
        f"; the patch embedding gives a {grid[0]}x{grid[1]} grid"
        if grid is not None
        else ""
    )
    many = (
        f"it fits {len(candidates)} layouts {candidates}"
        if candidates
        else "no grid of the image's aspect ratio fits it"
    )
    raise ValueError(
        f"layer {name!r}: cannot tell the token grid of its {what} of shape "
        f"{tuple(shape)} for images of {image_size[0]}x{image_size[1]} pixels "
        f"({n_tokens} tokens{patch}; {many}); give reshape=<callable output -> "
        "(N, C, H, W)> that drops the non-patch tokens and folds the rest into "
        "the grid"
    )


def resolve_layout(
    shape, image_size, *, model=None, module=None, reshape=None, name="layer"
) -> Layout:
    """Decide how an output of ``shape`` becomes (N, K, H, W) maps.

    Parameters
    ----------
    shape : tuple of int
        The layer's output shape, batch first.
    image_size : tuple of int
        (H, W) of the input images.
    model, module : torch.nn.Module, optional
        The network and the layer's module (hints about the layout).
    reshape : None, str or callable
        See :func:`check_reshape`.
    name : str
        The layer, for messages.

    Returns
    -------
    Layout

    Raises
    ------
    ValueError
        When the layout cannot be decided (the message says what to pass).
    """
    shape = tuple(int(v) for v in shape)
    image_size = tuple(int(v) for v in image_size)
    reshape = check_reshape(reshape)
    if callable(reshape):
        return Layout("callable", fn=reshape, reason="reshape callable")
    ndim = len(shape)
    if reshape is not None:
        need = 3 if reshape == "tokens" else 4
        if ndim != need:
            raise ValueError(
                f"layer {name!r}: reshape={reshape!r} needs a {need}-D output; got "
                f"shape {shape}"
            )
        if reshape == "tokens":
            return _tokens(shape, image_size, model, name, explicit=True)
        return Layout(reshape, reason="reshape argument")
    if ndim == 2:
        return Layout("flat", reason="no spatial axes")
    if ndim == 3:
        return _tokens(shape, image_size, model, name, explicit=False)
    if ndim != 4:
        raise ValueError(
            f"layer {name!r} gives shape {shape}: not a map (N, C, H, W), tokens "
            f"(N, T, C) or channels-last (N, H, W, C); {_reshape_hint(name)}"
        )
    if model is not None and not may_reorder_axes(model):
        return Layout("nchw", reason="convolutional model")
    hint = _channels_last_hint(module, shape)
    first = _fits(shape[2:], image_size)
    last = _fits(shape[1:3], image_size)
    if hint is not None:
        if (hint and last) or (not hint and first) or (not first and not last):
            return Layout("nhwc" if hint else "nchw", reason="the layer's module")
        raise ValueError(
            f"layer {name!r} of shape {shape}: its module suggests "
            f"{'channels-last' if hint else 'channels-first'} but only the other "
            f"layout forms a grid of the image's aspect ratio; {_reshape_hint(name)}"
        )
    if first != last:
        return Layout("nchw" if first else "nhwc", reason="image aspect ratio")
    how = (
        "could be (N, C, H, W) or (N, H, W, C)"
        if first
        else "is neither an (N, C, H, W) nor an (N, H, W, C) grid of the image "
        "downsampled by one factor"
    )
    raise ValueError(
        f"layer {name!r} of shape {shape} {how} for images of "
        f"{image_size[0]}x{image_size[1]} pixels, and its module does not tell; "
        f"{_reshape_hint(name)}"
    )


def to_maps(output: torch.Tensor, layout: Layout, name: str = "layer"):
    """``output`` as (N, K, H, W) (differentiable; a view when possible).

    A ``"flat"`` layout returns the output unchanged.
    """
    kind = layout.kind
    if kind in ("nchw", "flat"):
        return output
    if kind == "nhwc":
        return output.permute(0, 3, 1, 2)
    if kind == "tokens":
        h, w = layout.grid
        n, t, k = output.shape
        if t != layout.n_prefix + h * w:
            raise ValueError(
                f"layer {name!r} has {t} tokens but its layout expects "
                f"{layout.n_prefix} + {h}x{w}"
            )
        patches = output[:, layout.n_prefix :]
        return patches.transpose(1, 2).reshape(n, k, h, w)
    maps = layout.fn(output)
    if not isinstance(maps, torch.Tensor) or maps.ndim != 4:
        got = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps)
        raise ValueError(
            f"reshape for layer {name!r} must return (N, C, H, W); got {got}"
        )
    if maps.shape[0] != output.shape[0]:
        raise ValueError(
            f"reshape for layer {name!r} changed the batch size from "
            f"{output.shape[0]} to {maps.shape[0]}"
        )
    return maps


def layer_maps(
    output, image_size, *, model=None, module=None, reshape=None, name="layer"
):
    """:func:`resolve_layout` then :func:`to_maps`; returns (maps, layout)."""
    layout = resolve_layout(
        output.shape,
        image_size,
        model=model,
        module=module,
        reshape=reshape,
        name=name,
    )
    return to_maps(output, layout, name), layout


class LayerOutputs(dict):
    """Captured layer outputs (key -> raw tensor), read as maps on demand.

    ``outputs[key]`` is the raw output; ``outputs.maps(key, reshape)`` the
    same output as (N, K, H, W) (or (N, K) for a flat layer), the layout
    resolved once per key and reshape.
    """

    def __init__(self, raw, *, model, layers, image_size):
        super().__init__(raw)
        self.model = model
        self.layers = layers  # key -> (name, module)
        self.image_size = tuple(int(v) for v in image_size)
        self._layouts = {}

    def maps(self, key, reshape=None):
        out = self[key]
        name, module = self.layers[key]
        cache = (id(key) if not isinstance(key, str) else key, id(reshape))
        layout = self._layouts.get(cache)
        if layout is None:
            layout = resolve_layout(
                out.shape,
                self.image_size,
                model=self.model,
                module=module,
                reshape=reshape,
                name=name,
            )
            self._layouts[cache] = layout
        return to_maps(out, layout, name)
