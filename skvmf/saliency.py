"""Which pixels and regions a prediction depends on.

Gradient views of a trained network (SPEC section 8; the lecture in seed 002
and seed 003):

- :func:`input_gradient`: ``d y_c / d x`` for a class score, or
  ``d A^k_ij / d x`` for one cell (or the mean) of a layer's channel ``k``;
  :func:`saliency_map` its maximum absolute value over colour channels
  (Simonyan, Vedaldi, Zisserman, ICLR workshop 2014);
- :func:`guided_backprop`: the same gradient, passing back through every
  ReLU only positive gradients at positive inputs (Springenberg, Dosovitskiy,
  Brox, Riedmiller, ICLR workshop 2015);
- :func:`cam`: Class Activation Mapping for networks that end in global
  average pooling and one linear layer (Zhou, Khosla, Lapedriza, Oliva,
  Torralba, CVPR 2016): ``M_c = sum_k w_ck F_k``;
- :func:`grad_cam`: Grad-CAM for any convolutional layer (Selvaraju,
  Cogswell, Das, Vedantam, Parikh, Batra, ICCV 2017):
  ``ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of
  ``d y_c / d A_k``, upsampled to the image and scaled to [0, 1].

Layers may be convolutional maps, vision-transformer tokens or Swin's
channels-last maps: each is read as an (N, K, H, W) map by one layout rule
(patch tokens are the positions; ``reshape=`` overrides it; an undecidable
layout is an error that says what to pass).

Every function takes a batch of images (numpy or torch, shape (N, C, H, W)),
processes it in one pass, and returns numpy arrays: in evaluation mode the
images do not interact, so one backward pass of the summed per-image scores
gives every image's own gradient. The model runs in
evaluation mode; its modes (and, for guided backpropagation, the ``inplace``
flags of its ReLUs) are restored and every hook is removed afterwards, also
when an exception is raised. Gradients are taken with respect to the input
only; the parameters' ``.grad`` are never touched.
"""

from __future__ import annotations

import contextlib
import warnings
from numbers import Integral

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import validate_params
from torch import nn

from ._torch.devices import resolve_device
from ._torch.hooks import Capture, Hooks, evaluating, finite_logits
from ._torch.images import all_images, class_per_image
from ._torch.layers import resolve_module
from ._torch.layout import LayerOutputs, check_reshape, layer_maps, to_maps
from .objectives import channel_mean, filter_output, layer_mean, logit

_POOLING = (
    nn.AdaptiveAvgPool2d,
    nn.AvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.MaxPool2d,
    nn.LPPool2d,
)


# the constraints of the public functions; images are checked by
# skvmf._torch.images (any image source), the rest by the functions themselves
_COMMON = {
    "model": [nn.Module],
    "images": "no_validation",
    "target": [None, Integral, "array-like", torch.Tensor],
    "device": [None, str, torch.device],
}
_GRADIENT = {
    **_COMMON,
    "layer": [None, str, nn.Module],
    "channel": [None, Integral, "array-like", torch.Tensor],
    "position": [None, tuple, list, "array-like"],
    "reshape": [None, str, callable],
}


def _layer_objective(layer, channel, position, reshape):
    if channel is None:
        if position is not None:
            raise ValueError("position needs a channel: pass channel=k as well")
        return layer_mean(layer)
    if position is None:
        return channel_mean(layer, channel, reshape=reshape)
    pos = np.asarray(position)
    if pos.shape == (2,):
        return filter_output(layer, channel, pos[0], pos[1], reshape=reshape)
    if pos.ndim == 2 and pos.shape[1] == 2:
        return filter_output(layer, channel, pos[:, 0], pos[:, 1], reshape=reshape)
    raise ValueError(
        f"position must be (i, j) or an array of shape (N, 2); got shape {pos.shape}"
    )


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward keeps only the positive part of the gradient.

    Placed after a ReLU, whose own backward multiplies by ``input > 0``, the
    product is the guided-backpropagation rule.
    """

    @staticmethod
    def forward(ctx, y):
        return y.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


def _guided_hook(module, inputs, output):
    return _PositiveGradient.apply(output)


class _FunctionalReluCounter(torch.overrides.TorchFunctionMode):
    """Counts the relu calls of a forward pass that no ``nn.ReLU`` made.

    Those (``torch.relu``, ``F.relu``, ``x.relu()``, their in-place forms)
    cannot be hooked, so they keep their plain gradient: the guided map
    would silently mix two rules. ``nn.ReLU.forward`` calls ``F.relu`` too;
    those calls are told apart by ``depth``, which the modules' pre- and
    post-forward hooks raise and lower.
    """

    _RELUS = frozenset(
        {
            torch.relu,
            torch.relu_,
            F.relu,
            F.relu_,
            torch.Tensor.relu,
            torch.Tensor.relu_,
        }
    )

    def __init__(self):
        super().__init__()
        self.depth = 0
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self.depth == 0 and func in self._RELUS:
            self.count += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _guided_relus(model: nn.Module):
    """Guided backward through every ``nn.ReLU``; hooks and flags restored.

    Yields the counter of functional relu calls (not guided) in the pass.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError(
            "guided backpropagation needs nn.ReLU modules; the model has none "
            "(a functional relu in forward() cannot be hooked)"
        )
    counter = _FunctionalReluCounter()

    def enter(module, inputs):
        counter.depth += 1

    def leave(module, inputs, output):
        counter.depth -= 1
        return _guided_hook(module, inputs, output)

    flags = [(m, m.inplace) for m in relus]
    try:
        with Hooks() as hooks:
            for m in relus:
                m.inplace = False
                hooks.forward(m, enter, pre=True)
                hooks.forward(m, leave)
            with counter:
                yield counter
    finally:
        for m, flag in flags:
            m.inplace = flag


def _warn_functional_relus(count: int) -> None:
    if count:
        warnings.warn(
            f"guided backpropagation: the forward pass called a functional relu "
            f"{count} time(s) (torch.relu, F.relu or Tensor.relu in forward()); "
            "those cannot be hooked and kept their plain gradient, so the map "
            "is not fully guided. Make them modules: define nn.ReLU() in "
            "__init__ and call it in forward().",
            UserWarning,
            stacklevel=3,
        )


def _gradient(model, images, target, layer, channel, position, device, guided, reshape):
    dev = resolve_device(device)
    reshape = check_reshape(reshape)
    if layer is None:
        if channel is not None or position is not None or reshape is not None:
            raise ValueError(
                "channel, position and reshape need a layer: pass layer=..."
            )
    elif target is not None:
        raise ValueError(
            "give either target (a class score) or layer (a feature map), not both"
        )
    layers = {} if layer is None else {0: resolve_module(model, layer)}
    with evaluating(model, dev):
        x = all_images(images, model, dev).requires_grad_(True)
        hooks = _guided_relus(model) if guided else contextlib.nullcontext()
        with hooks as relus, Capture(model, layers, detach=False) as cap:
            output = model(x)
            if layer is None:
                logits = finite_logits(output)
                objective = logit(class_per_image(target, logits.detach()))
                acts = {}
            else:
                cap.require()
                objective = _layer_objective(layer, channel, position, reshape)
                acts = LayerOutputs(
                    {layer: cap.outputs[0]},
                    model=model,
                    layers={layer: layers[0]},
                    image_size=x.shape[2:],
                )
            value = objective.evaluate(output, acts)
            (grad,) = torch.autograd.grad(value.sum(), x)
    if guided:
        _warn_functional_relus(relus.count)
    return grad.detach().cpu().numpy()


@validate_params(_GRADIENT, prefer_skip_nested_validation=True)
def input_gradient(
    model,
    images,
    target=None,
    *,
    layer=None,
    channel=None,
    position=None,
    reshape=None,
    device="cpu",
):
    """Gradient of a class score or of a feature-map cell with respect to the input.

    Without ``layer``: ``d y_c / d x`` for the logit ``y_c`` of class
    ``target``. With ``layer``: ``d A^k_ij / d x`` for cell ``(i, j)`` of
    channel ``k`` of the layer's map A (``position=(i, j)``), or of the mean
    of channel ``k`` (no ``position``), or of the whole layer's mean (no
    ``channel``) -- the formulas of the lecture (seed 002).

    Parameters
    ----------
    model : torch.nn.Module
        The network, returning logits (N, n_classes) when no layer is given.
    images : array-like of shape (N, C, H, W), Dataset or DataLoader
        Images in the model's input space (numpy or torch), or any image
        source of :mod:`skvmf._torch.images` (datasets, data loaders).
    target : int, array-like of shape (N,) or None, default=None
        Class whose logit is differentiated; ``None`` takes each image's
        predicted class. Not allowed together with ``layer``.
    layer : str or torch.nn.Module, optional
        Differentiate a feature map of this layer instead of a logit: a name
        from ``model.named_modules()``, a paper alias (``"conv_5"`` ...) or
        the module. It must run once per forward pass.
    channel : int or array-like of shape (N,), optional
        Channel k of the layer (one per image allowed).
    position : tuple (i, j) or array-like of shape (N, 2), optional
        The cell of the channel; ``None`` uses the channel's mean. For
        transformer tokens, the patch token at row i, column j of the grid.
    reshape : None, {"nchw", "nhwc", "tokens"} or callable, default=None
        The layout of the layer's output (with ``channel``): ``None`` infers
        it, as in :func:`skvmf.featuremaps.feature_maps` (tokens, Swin's
        channels-last maps); a callable maps the output to (N, K, H, W).
    device : str or torch.device, default="cpu"
        Where to compute; the model is moved there and back.

    Returns
    -------
    ndarray of shape (N, C, H, W)
        The gradient for each image.

    Examples
    --------
    >>> import torch
    >>> from skvmf.saliency import input_gradient
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> g = input_gradient(net, torch.randn(3, 1, 2, 2), target=1)
    >>> bool(torch.allclose(torch.as_tensor(g[0]).flatten(), net[1].weight[1]))
    True
    """
    return _gradient(
        model, images, target, layer, channel, position, device, False, reshape
    )


@validate_params(_GRADIENT, prefer_skip_nested_validation=True)
def saliency_map(
    model,
    images,
    target=None,
    *,
    layer=None,
    channel=None,
    position=None,
    reshape=None,
    device="cpu",
):
    """Saliency: the largest absolute input gradient over colour channels.

    ``max_c |d y / d x_c|`` per pixel (Simonyan et al. 2014), with the same
    choice of ``y`` as :func:`input_gradient`.

    Parameters
    ----------
    model, images, target, layer, channel, position, reshape, device
        As in :func:`input_gradient`.

    Returns
    -------
    ndarray of shape (N, H, W)

    Examples
    --------
    >>> import torch
    >>> from skvmf.saliency import saliency_map
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1),
    ...                           torch.nn.Flatten(), torch.nn.Linear(32, 4))
    >>> saliency_map(net, torch.randn(5, 3, 4, 4)).shape
    (5, 4, 4)
    """
    grad = input_gradient(
        model,
        images,
        target,
        layer=layer,
        channel=channel,
        position=position,
        reshape=reshape,
        device=device,
    )
    return np.abs(grad).max(axis=1)


@validate_params(_GRADIENT, prefer_skip_nested_validation=True)
def guided_backprop(
    model,
    images,
    target=None,
    *,
    layer=None,
    channel=None,
    position=None,
    reshape=None,
    device="cpu",
):
    """Guided backpropagation (Springenberg et al. 2015).

    The gradient of :func:`input_gradient`, except that through every ReLU
    only positive gradients at positive inputs pass back:
    ``R_l = (f_l > 0) * (R_{l+1} > 0) * R_{l+1}``.

    Works on the model's ``nn.ReLU`` modules (in-place ones included: their
    ``inplace`` flag is switched off for the call and restored). A relu
    applied functionally inside ``forward`` (``torch.relu``, ``F.relu``,
    ``Tensor.relu``) cannot be hooked and keeps its plain gradient: such
    calls are counted during the pass and reported in one ``UserWarning``
    (make them ``nn.ReLU`` modules); a model with no ``nn.ReLU`` at all is
    refused.

    Parameters
    ----------
    model, images, target, layer, channel, position, reshape, device
        As in :func:`input_gradient`.

    Returns
    -------
    ndarray of shape (N, C, H, W)

    Examples
    --------
    >>> import torch
    >>> from skvmf.saliency import guided_backprop
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(inplace=True),
    ...                           torch.nn.Flatten(), torch.nn.Linear(12, 2))
    >>> guided_backprop(net, torch.randn(2, 1, 4, 4), target=0).shape
    (2, 1, 4, 4)
    >>> net[1].inplace
    True
    """
    return _gradient(
        model, images, target, layer, channel, position, device, True, reshape
    )


def _upsample(maps: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(
        maps[:, None], size=tuple(size), mode="bilinear", align_corners=False
    )[:, 0]


def _gap_linear_head(model, x, feature_layer):
    """Find the last Linear and the map whose global average is its input.

    Returns ``(layer name, module, Linear module)``. Raises ``ValueError``
    when the network is not global-average-pool + linear.
    """
    records = []  # (name, module, spatial mean (N, K), H*W)
    linears = []  # (module, input, output)
    names = {id(m): (n or "<model>") for n, m in model.named_modules()}

    def hook(module, inputs, output):
        if isinstance(module, nn.Linear):
            linears.append((module, inputs[0].detach().clone(), output.detach()))
        if isinstance(output, torch.Tensor) and output.ndim == 4:
            mean = output.detach().mean(dim=(2, 3))
            records.append(
                (names[id(module)], module, mean, output.shape[2] * output.shape[3])
            )

    with Hooks() as hooks, torch.no_grad():
        for module in model.modules():
            hooks.forward(module, hook)
        output = model(x)
    logits = finite_logits(output)
    if not linears:
        raise ValueError(
            "CAM needs a network ending in global average pooling and an nn.Linear; "
            "this model runs no nn.Linear"
        )
    linear, lin_in, lin_out = linears[-1]
    if lin_out.shape != logits.shape or not torch.allclose(lin_out, logits):
        raise ValueError(
            "CAM needs the model's output to be its last nn.Linear's output; got "
            f"output shape {tuple(logits.shape)} after a Linear of shape "
            f"{tuple(lin_out.shape)}"
        )
    if lin_in.ndim != 2:
        raise ValueError(
            f"CAM needs the last Linear's input to be (N, K); got {tuple(lin_in.shape)}"
        )
    scale = float(lin_in.abs().max()) + 1e-30

    def matches(mean):
        return mean.shape == lin_in.shape and torch.allclose(
            mean, lin_in, rtol=1e-3, atol=1e-5 * scale
        )

    if feature_layer is not None:
        name, module = resolve_module(model, feature_layer)
        found = [r for r in records if r[1] is module]
        if not found:
            raise ValueError(
                f"feature_layer {name!r} does not return (N, K, H, W) maps in the "
                "forward pass"
            )
        if not matches(found[-1][2]):
            raise ValueError(
                f"the global average of feature_layer {name!r} (shape "
                f"{tuple(found[-1][2].shape)}) is not the input of the last Linear "
                f"(shape {tuple(lin_in.shape)}): CAM needs global average pooling "
                "followed by one linear layer"
            )
        return name, module, linear
    candidates = [
        r for r in records if not isinstance(r[1], _POOLING) and matches(r[2])
    ]
    if not candidates:
        raise ValueError(
            "no layer's global average equals the input of the last Linear "
            f"(shape {tuple(lin_in.shape)}): CAM needs a network ending in global "
            "average pooling and one linear layer (use grad_cam otherwise)"
        )
    spatial = [r for r in candidates if r[3] > 1]
    name, module, _, _ = (spatial or candidates)[-1]
    return name, module, linear


@validate_params(
    {
        **_COMMON,
        "feature_layer": [None, str, nn.Module],
        "upsample": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def cam(
    model, images, target=None, *, feature_layer=None, upsample=False, device="cpu"
):
    """Class Activation Mapping (Zhou et al. 2016).

    For a network whose logits are ``y_c = sum_k w_ck mean_ij F_k(i, j) + b_c``
    (global average pooling, then one linear layer), the class activation map
    is ``M_c(i, j) = sum_k w_ck F_k(i, j)``: the classifier applied at every
    position of the last feature map.

    Parameters
    ----------
    model : torch.nn.Module
        A global-average-pool + linear network returning logits.
    images : array-like of shape (N, C, H, W)
        Images in the model's input space.
    target : int, array-like of shape (N,) or None, default=None
        Class per image; ``None`` takes the predicted class.
    feature_layer : str or torch.nn.Module, optional
        The layer whose map is pooled. By default it is found by running the
        network: the last module whose spatial mean equals the input of the
        last ``nn.Linear``. Either way the architecture is checked.
    upsample : bool, default=False
        Resize the maps to the image size (bilinear).
    device : str or torch.device, default="cpu"
        Where to compute.

    Returns
    -------
    ndarray of shape (N, H', W') or (N, H, W) when upsampled
        The raw (unnormalised) class activation maps.

    Raises
    ------
    ValueError
        If the network does not end in global average pooling and one linear
        layer.

    Examples
    --------
    >>> import torch
    >>> from skvmf.saliency import cam
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    ...                           torch.nn.Linear(8, 5))
    >>> cam(net, torch.randn(2, 3, 10, 10), target=4).shape
    (2, 8, 8)
    """
    dev = resolve_device(device)
    with evaluating(model, dev):
        x = all_images(images, model, dev)
        name, module, linear = _gap_linear_head(model, x, feature_layer)
        with torch.no_grad(), Capture(model, {0: (name, module)}, detach=True) as cap:
            logits = finite_logits(model(x))
        maps = cap.outputs[0]
        classes = torch.as_tensor(class_per_image(target, logits), device=maps.device)
        weights = linear.weight.detach()[classes].to(maps.dtype)  # (N, K)
        out = torch.einsum("nk,nkhw->nhw", weights, maps)
        if upsample:
            out = _upsample(out, x.shape[2:])
    return out.cpu().numpy()


@validate_params(
    {
        **_COMMON,
        "layer": [str, nn.Module],
        "reshape": [None, str, callable],
        "upsample": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def grad_cam(
    model, images, target=None, *, layer, reshape=None, upsample=True, device="cpu"
):
    """Grad-CAM (Selvaraju et al. 2017) at any convolutional or transformer layer.

    With ``A`` the layer's map, ``alpha_k = mean_ij d y_c / d A_k(i, j)`` and
    ``L_c = ReLU(sum_k alpha_k A_k)``, upsampled bilinearly to the image
    size and divided by its maximum per image (a map that is zero everywhere
    stays zero).

    Transformer layers work without a hand-written reshape: tokens
    ``(N, P + H'*W', K)`` are read as the patch grid (the P class/register
    tokens and their gradients dropped), Swin's channels-last maps
    (N, H', W', K) are transposed. At the output of a ViT's last block only
    the class token reaches the logits; the patch tokens' gradient is then
    zero and the call is refused (use that block's ``ln_1``, or an earlier
    block).

    Parameters
    ----------
    model : torch.nn.Module
        The network, returning logits.
    images : array-like of shape (N, C, H, W)
        Images in the model's input space.
    target : int, array-like of shape (N,) or None, default=None
        Class per image; ``None`` takes the predicted class.
    layer : str or torch.nn.Module
        A layer with (N, K, H', W') maps, tokens or channels-last maps
        (usually the last convolutional block, or a late transformer block's
        first LayerNorm): a module name, a paper alias or the module. It must
        run once per forward pass and return one tensor.
    reshape : None, {"nchw", "nhwc", "tokens"} or callable, default=None
        The layout of the layer's output; ``None`` infers it (see
        :func:`skvmf.featuremaps.feature_maps`). A callable maps the output
        to (N, K, H', W'); it must only rearrange (it is applied to the
        gradient as well), like pytorch-grad-cam's ``reshape_transform``.
    upsample : bool, default=True
        Resize to the image size; ``False`` keeps the layer's grid.
    device : str or torch.device, default="cpu"
        Where to compute.

    Returns
    -------
    ndarray of shape (N, H, W) (or (N, H', W')), values in [0, 1]

    Examples
    --------
    >>> import torch
    >>> from skvmf.saliency import grad_cam
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    ...                           torch.nn.Linear(8, 5))
    >>> m = grad_cam(net, torch.randn(2, 3, 10, 10), layer="1")
    >>> m.shape, bool(m.min() >= 0 and m.max() <= 1)
    ((2, 10, 10), True)
    """
    dev = resolve_device(device)
    layer = resolve_module(model, layer)
    reshape = check_reshape(reshape)
    with evaluating(model, dev):
        x = all_images(images, model, dev).requires_grad_(True)
        maps, grads = _maps_and_gradients(model, x, layer, target, reshape)
        with torch.no_grad():
            heat = _grad_cam_heat(maps, grads, x.shape[2:] if upsample else None)
    return heat.cpu().numpy()


def _maps_and_gradients(model, x, layer, target, reshape):
    """Step 1 of :func:`grad_cam`: the layer's maps A and the gradients
    ``d y_c / d A`` of the class scores, both (N, K, H', W').

    The gradient is taken on the layer's raw output and laid out like the
    maps (a layout only selects and rearranges entries).
    """
    name, module = layer
    with Capture(model, {0: layer}, detach=False) as cap:
        logits = finite_logits(model(x))
    cap.require()
    raw = cap.outputs[0]
    if raw.ndim == 2:
        raise ValueError(
            "grad_cam needs a layer with (N, K, H, W) maps, tokens or "
            f"channels-last maps; {name!r} gives shape {tuple(raw.shape)}"
        )
    maps, layout = layer_maps(
        raw, x.shape[2:], model=model, module=module, reshape=reshape, name=name
    )
    classes = torch.as_tensor(class_per_image(target, logits.detach()), device=x.device)
    score = logits[torch.arange(len(x), device=x.device), classes]
    (raw_grads,) = torch.autograd.grad(score.sum(), raw, allow_unused=True)
    if raw_grads is None:
        raise ValueError(f"the logits do not depend on layer {name!r}")
    grads = to_maps(raw_grads, layout, name)
    _check_gradients(raw_grads, grads, layout, name)
    return maps.detach(), grads


def _check_gradients(raw_grads, grads, layout, name) -> None:
    """Refuse gradients that would make every map zero, saying why."""
    if not raw_grads.any():
        raise ValueError(
            f"the gradient of the class scores at layer {name!r} is zero "
            "everywhere (e.g. a zero-initialised classifier head), so every "
            "map would be zero"
        )
    if layout.kind == "tokens" and layout.n_prefix and not grads.any():
        raise ValueError(
            f"at layer {name!r} the logits depend only on the class token: "
            "every patch token has zero gradient (the output of the last "
            "encoder block). Use that block's first LayerNorm (ln_1 / norm1) "
            "or an earlier block"
        )


def _grad_cam_heat(maps, grads, size):
    """Step 2 of :func:`grad_cam`: ``ReLU(sum_k alpha_k A_k)`` with
    ``alpha_k`` the spatial mean of the gradient, upsampled to ``size`` (None
    keeps the grid) and divided by its maximum per image (an all-zero map
    stays zero)."""
    alpha = grads.mean(dim=(2, 3))
    heat = torch.relu(torch.einsum("nk,nkhw->nhw", alpha, maps))
    if size is not None:
        heat = _upsample(heat, size).clamp(min=0)
    peak = heat.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, heat / torch.where(peak > 0, peak, 1), 0)


__all__ = ["cam", "grad_cam", "guided_backprop", "input_gradient", "saliency_map"]
