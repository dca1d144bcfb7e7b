"""What a picture should excite: objectives over a network's output and layers.

An objective maps the network's output and its captured layer outputs to one
value per image: a logit, a softmax probability, the mean of a layer or of
one channel, one filter's output at one position (a "neuron"), or a weighted
sum of those (:func:`logit`, :func:`probability`, :func:`layer_mean`,
:func:`channel_mean`, :func:`filter_output`; combine with ``+``, ``-`` and
scalar ``*``). Activation maximisation (:mod:`skvmf.synthesis`) ascends
them; the gradient views (:mod:`skvmf.saliency`) differentiate them.

Transformer tokens and channels-last outputs are read as (N, K, H, W) maps
by the one layout rule of :mod:`skvmf._torch.layout`.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np
import torch
from sklearn.utils._param_validation import validate_params

from ._torch.hooks import as_logits
from ._torch.images import per_image_index
from ._torch.layout import LayerOutputs, check_reshape

__all__ = [
    "Objective",
    "channel_mean",
    "filter_output",
    "layer_mean",
    "logit",
    "probability",
]


def _pick(values: torch.Tensor, index) -> torch.Tensor:
    """``values[n, index_n]`` for a (N, K, ...) tensor and an int or (N,) index."""
    if isinstance(index, int):
        return values[:, index]
    index = index.to(values.device)
    return values[torch.arange(values.shape[0], device=values.device), index]


def _layer_output(acts, layer, kind, reshape):
    if kind == "layer_mean":
        return acts[layer]
    if isinstance(acts, LayerOutputs):
        # tokens and channels-last outputs read as (N, K, H, W) maps
        out = acts.maps(layer, reshape)
    else:
        out = acts[layer]
        if out.ndim == 3 or reshape is not None:
            raise ValueError(
                f"layer output has shape {tuple(out.shape)}; give (N, K, H, W) maps "
                "in acts (tokens cannot be read without the image size)"
            )
    if out.ndim < 2:
        raise ValueError(f"layer output has shape {tuple(out.shape)}: no channel axis")
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class _Term:
    """One elementary objective; ``layer`` is None for the network's output."""

    kind: str
    layer: object = None
    index: object = None
    position: object = None
    reshape: object = None

    def describe(self) -> str:
        where = "" if self.layer is None else f"{_layer_repr(self.layer)}, "
        if self.kind == "logit":
            return f"logit({_index_repr(self.index)})"
        if self.kind == "probability":
            return f"probability({_index_repr(self.index)})"
        if self.kind == "layer_mean":
            return f"layer_mean({_layer_repr(self.layer)})"
        if self.kind == "channel_mean":
            return f"channel_mean({where}{_index_repr(self.index)})"
        i, j = self.position
        return (
            f"filter_output({where}{_index_repr(self.index)}, "
            f"{_index_repr(i)}, {_index_repr(j)})"
        )

    def evaluate(self, output: torch.Tensor, acts: dict) -> torch.Tensor:
        if self.kind in ("logit", "probability"):
            logits = as_logits(output)
            n, size = logits.shape
            index = per_image_index(self.index, n, size, "class index")
            if self.kind == "probability":
                logits = torch.softmax(logits, dim=1)
            return _pick(logits, index)
        out = _layer_output(acts, self.layer, self.kind, self.reshape)
        n = out.shape[0]
        if self.kind == "layer_mean":
            return out.reshape(n, -1).mean(dim=1)
        channel = per_image_index(self.index, n, out.shape[1], "channel")
        maps = _pick(out, channel)  # (N, ...) one channel per image
        if self.kind == "channel_mean":
            return maps.reshape(n, -1).mean(dim=1)
        if maps.ndim != 3:
            raise ValueError(
                f"filter_output needs a layer with (N, K, H, W) maps; got shape "
                f"{tuple(out.shape)}"
            )
        i = per_image_index(self.position[0], n, maps.shape[1], "row i")
        j = per_image_index(self.position[1], n, maps.shape[2], "column j")
        rows = torch.arange(n, device=maps.device)
        i = i if isinstance(i, int) else i.to(maps.device)
        j = j if isinstance(j, int) else j.to(maps.device)
        return maps[rows, i, j]


def _layer_repr(layer) -> str:
    return repr(layer) if isinstance(layer, str) else type(layer).__name__


def _index_repr(index) -> str:
    arr = np.asarray(index)
    return str(int(arr)) if arr.ndim == 0 else f"[{', '.join(map(str, arr[:4]))}...]"


class Objective:
    """A weighted sum of elementary objectives, evaluated per image.

    Layers are given as module names, paper aliases (resolved when the
    objective runs on a model) or the modules themselves. Build objectives
    with :func:`logit`, :func:`probability`,
    :func:`layer_mean`, :func:`channel_mean` and :func:`filter_output`, and
    combine them with ``+``, ``-`` and multiplication by a number. Calling
    :meth:`evaluate` on the network's output and the captured layer outputs
    gives one value per image.

    Parameters
    ----------
    terms : sequence of (float, _Term)
        Weights and elementary objectives; use the builder functions.

    Examples
    --------
    >>> from skvmf.objectives import channel_mean, logit
    >>> obj = logit(3) + 0.5 * channel_mean("features.0", 7)
    >>> obj
    Objective(logit(3) + 0.5 * channel_mean('features.0', 7))
    >>> obj.layers
    ['features.0']
    """

    def __init__(self, terms):
        self.terms = tuple((float(w), t) for w, t in terms)

    @property
    def layers(self) -> list:
        """The layers (names or modules) whose outputs the objective reads."""
        seen = []
        for _, term in self.terms:
            if term.layer is not None and not any(term.layer is s for s in seen):
                seen.append(term.layer)
        return seen

    @classmethod
    def per_image(cls, objectives) -> Objective:
        """One objective per image: image ``n`` is scored by ``objectives[n]``.

        Examples
        --------
        >>> from skvmf.objectives import Objective, logit
        >>> Objective.per_image([logit(0), logit(1)]).n_images
        2
        """
        objectives = list(objectives)
        if not objectives or not all(isinstance(o, Objective) for o in objectives):
            raise ValueError(
                "objective must be an Objective or a non-empty list of Objectives"
            )
        return _PerImage(objectives)

    @property
    def n_images(self) -> int | None:
        """Images the objective is written for: the length of its per-image
        indices, or None when it fits any number of images."""
        for _, term in self.terms:
            for value in (term.index, *(term.position or ())):
                if value is not None and np.asarray(value).ndim == 1:
                    return int(np.asarray(value).shape[0])
        return None

    def evaluate(self, output, acts) -> torch.Tensor:
        """Objective value per image.

        Parameters
        ----------
        output : torch.Tensor of shape (N, n_classes)
            The network's logits.
        acts : dict
            Layer (as given to the builders) -> its output tensor (N, K, ...).
            During :meth:`ActivationMaximizer.run` (and the saliency views)
            transformer tokens and channels-last outputs are read as
            (N, K, H, W) maps; a plain dict must hold such maps already.

        Returns
        -------
        torch.Tensor of shape (N,)
        """
        total = None
        for weight, term in self.terms:
            value = weight * term.evaluate(output, acts)
            total = value if total is None else total + value
        return total

    def __add__(self, other):
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(self.terms + other.terms)

    def __mul__(self, weight):
        if not isinstance(weight, numbers.Real) or isinstance(weight, bool):
            return NotImplemented
        return Objective((float(weight) * w, t) for w, t in self.terms)

    __rmul__ = __mul__

    def __neg__(self):
        return -1.0 * self

    def __sub__(self, other):
        if not isinstance(other, Objective):
            return NotImplemented
        return self + (-other)

    def __repr__(self) -> str:
        parts = []
        for weight, term in self.terms:
            text = (
                term.describe() if weight == 1.0 else f"{weight:g} * {term.describe()}"
            )
            parts.append(text)
        return f"Objective({' + '.join(parts)})"


def _indices(value, what):
    """An int, or a 1-D array of ints (one per image); the type itself is
    checked by ``validate_params``, the array's contents here."""
    arr = np.asarray(value)
    if arr.ndim > 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{what} must be an int or a 1-D sequence of ints; got {value!r}"
        )
    return value if arr.ndim == 0 else arr.astype(np.int64)


_INDEX = [numbers.Integral, "array-like"]
_LAYER = [str, torch.nn.Module]
_RESHAPE = [None, str, callable]


@validate_params({"c": _INDEX}, prefer_skip_nested_validation=True)
def logit(c) -> Objective:
    """The pre-softmax output of class ``c`` (an int, or one int per image).

    Examples
    --------
    >>> from skvmf.objectives import logit
    >>> logit([0, 1, 2])
    Objective(logit([0, 1, 2...]))
    """
    return Objective([(1.0, _Term("logit", index=_indices(c, "c")))])


@validate_params({"c": _INDEX}, prefer_skip_nested_validation=True)
def probability(c) -> Objective:
    """The softmax probability of class ``c`` (an int, or one int per image).

    Examples
    --------
    >>> from skvmf.objectives import probability
    >>> probability(5)
    Objective(probability(5))
    """
    return Objective([(1.0, _Term("probability", index=_indices(c, "c")))])


@validate_params({"layer": _LAYER}, prefer_skip_nested_validation=True)
def layer_mean(layer) -> Objective:
    """The mean of a whole layer's output (all channels and positions).

    For transformer tokens the mean runs over every token, class token
    included (the raw output).

    Examples
    --------
    >>> from skvmf.objectives import layer_mean
    >>> layer_mean("layer2")
    Objective(layer_mean('layer2'))
    """
    return Objective([(1.0, _Term("layer_mean", layer=layer))])


@validate_params(
    {"layer": _LAYER, "k": _INDEX, "reshape": _RESHAPE},
    prefer_skip_nested_validation=True,
)
def channel_mean(layer, k, *, reshape=None) -> Objective:
    """The mean over positions of channel ``k`` of a layer.

    ``k`` is an int or one int per image. ``reshape`` is the layer's layout
    (``None`` infers it; ``"nchw"``, ``"nhwc"``, ``"tokens"`` or a callable
    output -> (N, K, H, W), as in :func:`skvmf.featuremaps.feature_maps`):
    for transformer tokens the positions are the patch tokens.

    Examples
    --------
    >>> from skvmf.objectives import channel_mean
    >>> channel_mean("layer2", 4)
    Objective(channel_mean('layer2', 4))
    """
    term = _Term(
        "channel_mean",
        layer=layer,
        index=_indices(k, "k"),
        reshape=check_reshape(reshape),
    )
    return Objective([(1.0, term)])


@validate_params(
    {"layer": _LAYER, "k": _INDEX, "i": _INDEX, "j": _INDEX, "reshape": _RESHAPE},
    prefer_skip_nested_validation=True,
)
def filter_output(layer, k, i, j, *, reshape=None) -> Objective:
    """One neuron: channel ``k`` of a layer at row ``i`` and column ``j``.

    Each of ``k``, ``i``, ``j`` is an int or one int per image. ``reshape``
    as in :func:`channel_mean`: for transformer tokens ``(i, j)`` is the patch
    token at row ``i`` and column ``j`` of the patch grid.

    Examples
    --------
    >>> from skvmf.objectives import filter_output
    >>> filter_output("layer2", 4, 1, 2)
    Objective(filter_output('layer2', 4, 1, 2))
    """
    term = _Term(
        "filter_output",
        layer=layer,
        index=_indices(k, "k"),
        position=(_indices(i, "i"), _indices(j, "j")),
        reshape=check_reshape(reshape),
    )
    return Objective([(1.0, term)])


class _PerImage(Objective):
    """Image n maximises objective n (objectives evaluated on the whole batch)."""

    def __init__(self, objectives):
        self.objectives = objectives
        super().__init__([t for o in objectives for t in o.terms])

    def evaluate(self, output, acts):
        n = len(self.objectives)
        batch = output.shape[0]
        if batch != n:
            raise ValueError(
                f"{n} objectives were given for {batch} images; give one per image"
            )
        values = [o.evaluate(output, acts)[i] for i, o in enumerate(self.objectives)]
        return torch.stack(values)

    @property
    def n_images(self) -> int:
        return len(self.objectives)

    def __repr__(self):
        return f"[{', '.join(map(repr, self.objectives))}]"
