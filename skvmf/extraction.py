"""Pull a torch classifier's features for the analysis, in one forward pass.

:class:`TorchFeatureExtractor` runs a model over images in batches and
collects, per image, the three things the method needs (SPEC section 0): the
sample feature f(x), the input of the last fully-connected layer; the logits
z(x), from which the soft labels ``softmax(z / T)`` follow; and the regional
features of several layers, each layer's (K, H, W) map resized by adaptive
average pooling to one common grid and stored as R = H * W rows of K values.

Forward hooks (not graph tracing) capture the layers, so any
``torch.nn.Module`` works; the paper's layer names (``conv_53``, ``conv_5``,
``layer_18`` ...) resolve by the model's structure (see :mod:`skvmf._torch.layers`).
User weights go into a model with :func:`skvmf.sources.load_weights`
(``weights_only=True``).

.. deprecated:: 0.1
   ``skvmf.extraction.load_checkpoint`` (a re-export of what is now
   :func:`skvmf.sources.load_weights`) warns and will be removed in 0.2.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import re
import tempfile
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from skvmf import _array_api
from skvmf._torch.devices import resolve_device, resolve_dtype
from skvmf._torch.hooks import Capture, check_finite, evaluating, finite_logits
from skvmf._torch.images import check_batch, image_batches
from skvmf._torch.layers import (
    detect_architecture,
    first_conv_channels,
    last_linear,
    module_names,
    resolve_layer,
    set_conv5_stride1,
)
from skvmf._torch.layout import check_grid, check_reshape, resolve_layout, to_maps
from skvmf._utils.progress import message, progress
from skvmf.features import FeatureSet

__all__ = ["TorchFeatureExtractor"]

# torch >= 2.5 names the device-agnostic error; older ones only CUDA's
_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def __getattr__(name):
    """``load_checkpoint``, deprecated (PEP 562): a FutureWarning, then
    :func:`skvmf.sources.load_weights`, which it always was."""
    if name == "load_checkpoint":
        from skvmf._utils.warn import warn
        from skvmf.sources import load_weights

        warn(
            "skvmf.extraction.load_checkpoint was renamed "
            "skvmf.sources.load_weights in 0.1 and will be removed in 0.2; use "
            "skvmf.sources.load_weights (skvmf.training.load_checkpoint(path) "
            "rebuilds a network from a checkpoint skvmf wrote)",
            FutureWarning,
        )
        return load_weights
    raise AttributeError(f"module 'skvmf.extraction' has no attribute {name!r}")


_OUTPUTS = ("features", "sample", "logits", "soft_labels", "regions")
_SAME_AS_MODEL = "__skvmf_model_is_model__"


# -- one forward pass ---------------------------------------------------------
class _Pass:
    """One batch's features, captured with the shared hooks of
    :mod:`skvmf._torch.hooks`.

    Each regional layer's output is read by its layout, pooled to the grid
    and checked finite inside its hook (so full maps never pile up, and a
    layer producing NaN is named with the batch at once); the sample feature
    is the input or the (pooled) output of its module. Hooks are removed on
    exit, also after an exception; evaluation mode is the caller's
    :func:`~skvmf._torch.hooks.evaluating`.
    """

    def __init__(self, model, regions, sample, grid, reshapes=None):
        self.model = model
        self.regions = regions  # [(key, module name)]
        self.sample = sample  # (module name, "input" | "output") or None
        self.grid = grid
        self.reshapes = reshapes or {}
        self.raw_shapes = {}  # layer -> (K, H, W) before pooling
        self.layouts = {}  # layer -> (output shape, image size, Layout)
        self._image_size = None
        self._where = ""
        layers = {
            key: (key if key == name else f"{key} ({name})", model.get_submodule(name))
            for key, name in regions
        }
        self._maps = Capture(model, layers, detach=True, transform=self._region)
        self._sample = None
        if sample is not None:
            name, mode = sample
            self._sample = Capture(
                model,
                {"sample": (name, model.get_submodule(name))},
                detach=True,
                on=mode,
                transform=self._sample_feature,
                what="sample layer",
            )
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._maps)
            if self._sample is not None:
                stack.enter_context(self._sample)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc):
        self._stack.close()
        return False

    def _pool(self, out):
        # a fresh tensor either way: a later in-place op (ReLU(inplace=True),
        # ``out += identity``) must not change what was captured
        if self.grid is None or tuple(out.shape[-2:]) == self.grid:
            return out.clone(memory_format=torch.contiguous_format)
        return F.adaptive_avg_pool2d(out, self.grid)

    def _layout(self, key, name, module, shape):
        """The layer's layout, resolved once per output shape and image size."""
        known = self.layouts.get(key)
        if known is None or known[:2] != (shape[1:], self._image_size):
            layout = resolve_layout(
                shape,
                self._image_size,
                model=self.model,
                module=module,
                reshape=self.reshapes.get(key),
                name=name,
            )
            known = (shape[1:], self._image_size, layout)
            self.layouts[key] = known
        return known[2]

    def _region(self, key, module, output):
        """Hook transform: the output as (N, K, H, W) maps (tokens and
        channels-last maps read by their layout), pooled and checked."""
        name = self._maps.layers[key][0]
        shape = tuple(output.shape)
        if output.ndim < 2:
            raise ValueError(
                f"layer {name!r} must output a 4-D map (N, K, H, W) for regional "
                f"features; got shape {shape}"
            )
        maps = to_maps(output, self._layout(key, name, module, shape), name)
        if maps.ndim != 4:
            raise ValueError(
                f"layer {name!r} must output a 4-D map (N, K, H, W), tokens "
                "(N, T, K) or a channels-last map for regional features; got "
                f"shape {shape}"
            )
        self.raw_shapes[key] = tuple(int(v) for v in maps.shape[1:])
        pooled = self._pool(maps)
        check_finite(pooled, f"layer {name!r}", self._where)
        return pooled

    def _sample_feature(self, key, module, value):
        """Hook transform: the sample feature, flattened; a 4-D output is
        averaged over its spatial axes, wherever they are (Swin:
        channels-last)."""
        name = self.sample[0]
        if self.sample[1] == "output" and value.ndim == 4:
            layout = resolve_layout(
                value.shape,
                self._image_size,
                model=self.model,
                module=module,
                name=f"sample layer {name}",
            )
            feature = to_maps(value, layout).mean(dim=(2, 3))
        else:
            feature = value.reshape(value.shape[0], -1).clone()
        check_finite(feature, f"sample layer {name!r}", self._where)
        return feature

    def forward(self, x, start=0):
        """``(logits, sample features or None, pooled maps)`` of one batch."""
        self._where = f" in batch starting at image {start}"
        self._image_size = (int(x.shape[-2]), int(x.shape[-1]))
        self._maps.reset()
        if self._sample is not None:
            self._sample.reset()
        logits = finite_logits(self.model(x), where=self._where)
        self._maps.require()
        feats = None
        if self._sample is not None:
            self._sample.require()
            feats = self._sample.outputs["sample"]
        maps = [self._maps.outputs[key] for key, _ in self.regions]
        if self.grid is None and maps:
            # default grid: the spatial size of the smallest (deepest) layer
            smallest = min(maps, key=lambda m: m.shape[-2] * m.shape[-1])
            self.grid = (int(smallest.shape[-2]), int(smallest.shape[-1]))
            maps = [self._pool(m) if m.shape[-2:] != self.grid else m for m in maps]
        return logits, feats, maps


# -- output sinks -----------------------------------------------------------
class _Sink:
    """Gathers one output batch by batch into its final array.

    ``maps=True`` takes (n, K, H, W) blocks and stores (n, H * W, K) rows
    (row-major regions); else blocks are stored as given. The storage is a
    preallocated array or tensor when the number of images is known, a file
    written sequentially and opened as ``numpy.memmap`` when ``path`` is set
    (memory stays flat: file pages are not held by the process), or a list of
    chunks concatenated at the end.
    """

    def __init__(self, n_total, *, maps, tensors, device, torch_dtype, path=None):
        self.n_total = n_total
        self.maps = maps
        self.tensors = tensors
        self.device = device
        self.torch_dtype = torch_dtype
        # numpy's dtype only for numpy storage: a tensor sink never touches
        # numpy (bfloat16, for one, has no numpy dtype)
        self.np_dtype = (
            None if tensors else torch.empty(0, dtype=torch_dtype).numpy().dtype
        )
        self.path = path
        self.count = 0
        self.trailing = None
        self.buffer = None
        self.file = None
        self.chunks = []

    def put(self, block):
        n = int(block.shape[0])
        if self.maps:
            _, k, h, w = block.shape
            trailing = (h * w, k)
        else:
            trailing = tuple(block.shape[1:])
        if self.trailing is None:
            self.trailing = trailing
            if self.path is not None:
                self.file = open(self.path, "wb")  # noqa: SIM115 (closed in result/abort)
            elif self.n_total is not None:
                shape = (self.n_total, *trailing)
                if self.tensors:
                    self.buffer = torch.empty(
                        shape, dtype=self.torch_dtype, device=self.device
                    )
                else:
                    self.buffer = np.empty(shape, dtype=self.np_dtype)
        stop = self.count + n
        if self.n_total is not None and stop > self.n_total:
            raise ValueError(
                f"the input yielded more than its length of {self.n_total} images"
            )
        if self.file is not None:
            rows = block.permute(0, 2, 3, 1) if self.maps else block
            rows = rows.to("cpu", self.torch_dtype).contiguous().numpy()
            self.file.write(memoryview(rows).cast("B"))
        elif self.buffer is not None:
            dest = self.buffer[self.count : stop]
            if not self.tensors:
                dest = torch.from_numpy(dest)
            if self.maps:
                dest = dest.view(n, block.shape[2], block.shape[3], -1).permute(
                    0, 3, 1, 2
                )
            dest.copy_(block)
        else:
            rows = (
                block.permute(0, 2, 3, 1).reshape(n, *trailing) if self.maps else block
            )
            if self.tensors:
                self.chunks.append(rows.to(self.device, self.torch_dtype))
            else:
                self.chunks.append(rows.to("cpu", self.torch_dtype).numpy())
        self.count = stop

    def result(self):
        if self.n_total is not None and self.count != self.n_total:
            raise ValueError(
                f"the input yielded {self.count} images but its length is "
                f"{self.n_total}"
            )
        if self.file is not None:
            self.file.close()
            self.file = None
            return np.memmap(
                self.path,
                dtype=self.np_dtype,
                mode="r+",
                shape=(self.count, *self.trailing),
            )
        if self.buffer is not None:
            return self.buffer
        if self.tensors:
            return torch.cat(self.chunks)
        return np.concatenate(self.chunks)

    def abort(self):
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.path is not None and os.path.exists(self.path):
            os.remove(self.path)


def _has_float64(device) -> bool:
    """Whether tensors on ``device`` can be float64 (not on Apple's MPS)."""
    return torch.device(device).type != "mps"


def _out_of_memory(exc, tried: int, start: int, device):
    """The device's out-of-memory error, restated with the batch size tried
    and one that should fit.

    The activations of a batch grow linearly with its size, so half the
    batch needs about half the memory: the suggestion halves the batch that
    failed (the device's free memory after the failure is reported too).
    """
    suggestion = max(1, tried // 2)
    detail = ""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.empty_cache()  # the failed batch's blocks, back to the pool
        try:
            free, _ = torch.cuda.mem_get_info(dev)
            detail = f" ({free / 2**30:.2f} GiB free on {dev} after the failure)"
        except RuntimeError:  # pragma: no cover - a device that cannot say
            pass
    if tried == 1:
        advice = (
            "even one image does not fit: use a smaller dtype "
            "(dtype='float16'), fewer or shallower layers, or device='cpu'"
        )
    else:
        advice = (
            f"set batch_size={suggestion} (halve it again until a batch fits; "
            "the memory a batch needs grows with its size)"
        )
    return _OUT_OF_MEMORY(
        f"TorchFeatureExtractor ran out of memory on {dev} with a batch of "
        f"{tried} images (batch starting at image {start}){detail}: {advice}. "
        f"The device said: {exc}"
    )


def _memmap_path(directory, key: str) -> str:
    os.makedirs(directory, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
    fd, path = tempfile.mkstemp(prefix=f"skvmf_{safe}_", suffix=".dat", dir=directory)
    os.close(fd)
    return path


# -- model transport ----------------------------------------------------------
class _PackedModule:
    """A module as its architecture (weights on the meta device) plus the
    bytes of its ``state_dict`` (and non-persistent buffers)."""

    def __init__(self, module: nn.Module):
        memo = {}
        for p in module.parameters():
            memo[id(p)] = nn.Parameter(
                torch.empty_like(p, device="meta"), requires_grad=p.requires_grad
            )
        for b in module.buffers():
            memo[id(b)] = torch.empty_like(b, device="meta")
        self.skeleton = copy.deepcopy(module, memo)
        state = module.state_dict()
        extra = {n: b for n, b in module.named_buffers() if n not in state}
        buffer = io.BytesIO()
        torch.save({"state_dict": state, "buffers": extra}, buffer)
        self.weights = buffer.getvalue()
        first = next(iter(state.values()), None)
        self.device = str(first.device) if isinstance(first, torch.Tensor) else "cpu"

    def unpack(self) -> nn.Module:
        saved = torch.load(
            io.BytesIO(self.weights), map_location="cpu", weights_only=True
        )
        module = self.skeleton.to_empty(device="cpu")
        module.load_state_dict(saved["state_dict"], strict=True)
        with torch.no_grad():
            for name, value in saved["buffers"].items():
                module.get_buffer(name).copy_(value)
        if self.device.startswith("cuda") and torch.cuda.is_available():
            module.to(self.device)
        return module


# -- helpers ------------------------------------------------------------------
def _same_device(actual: torch.device, wanted: torch.device) -> bool:
    return actual.type == wanted.type and (
        wanted.index is None or actual.index == wanted.index
    )


def _needs_move(model: nn.Module, device, dtype) -> bool:
    for t in (*model.parameters(), *model.buffers()):
        if not _same_device(t.device, device):
            return True
        if t.is_floating_point() and t.dtype != dtype:
            return True
    return False


class TorchFeatureExtractor(TransformerMixin, BaseEstimator):
    """Sample features, logits and regional features of a torch classifier.

    One forward pass per batch captures, with forward hooks: the sample
    feature f(x) (by default the input of the last ``nn.Linear``, i.e. "the
    feature before the last fully-connected layer" of the paper), the logits
    z(x), and each requested layer's map resized by adaptive average pooling
    to a common ``grid`` (SPEC section 0). The model runs in eval mode under
    ``torch.inference_mode()``; every submodule's ``training`` flag is
    restored and every hook removed afterwards, also when an error occurs.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits of shape (N, C). Not modified: a copy is
        used when ``stride1_conv5``, ``device`` or ``dtype`` require a change.
    layers : str or list of str, default=None
        Layers whose outputs give regional features: names of
        ``model.named_modules()`` or the paper's aliases (VGG ``conv_12`` ...
        ``conv_53``; ResNet ``conv_1`` ... ``conv_5``; MobileNet-V2
        ``layer_4`` ... ``layer_18``; torchvision ViT / Swin ``block_1`` ...
        ``block_12``; table in :mod:`skvmf._torch.layers`). ``None`` takes the
        paper's five layers of a recognised CNN (evenly spaced encoder blocks of
        a ViT or Swin); for other
        models it means no regional layers (an error when ``output`` needs
        regions). ``[]`` means no regional layers.
    sample_layer : "auto", str or None, default="auto"
        ``"auto"``: the input of the last ``nn.Linear`` (registration order;
        for torchvision classifiers the final classifier layer). A name or
        alias: that module's output, global-average-pooled when 4-D (over
        its spatial axes; channels-last maps are recognised as for
        ``reshape``) and flattened otherwise. ``None``: no sample features.
    output : {"features", "sample", "logits", "soft_labels", "regions"}, \
default="features"
        What :meth:`transform` returns: a :class:`~skvmf.FeatureSet`, or one
        2-D array: sample features (N, D), logits (N, C), soft labels (N, C),
        or region rows (N * R, K) (row ``i * R + r`` is region ``r`` of image
        ``i``; with several layers their columns are concatenated in layer
        order). Only what the output needs is computed.
    grid : int or (int, int), default=None
        Common (H, W) of the regional features. ``None``: the size of the
        smallest (deepest) requested layer.
    reshape : None, str, callable or dict, default=None
        Layout of the regional layers' outputs. ``None`` infers it per layer
        from the model and the image size: maps (N, K, H, W); transformer
        tokens (N, P + H*W, K), whose P class/register tokens are dropped so
        that each patch token is one region (196 regions for ViT-B/16 at 224
        px); channels-last maps (N, H, W, K) (Swin). ``"nchw"``, ``"nhwc"``
        or ``"tokens"`` force a layout, a callable maps the raw output to
        (N, K, H, W); a dict gives one of these per layer (keys as in
        ``layers``). An undecidable layout is a ``ValueError`` naming this
        parameter.
    temperature : float, default=4.0
        T of the soft labels ``softmax(z / T)`` (SPEC: T = 4).
    batch_size : int, default=64
        Images per forward pass.
    device : str or torch.device, default="cpu"
        Where the model runs (``"cuda"`` when available).
    dtype : str, numpy or torch floating dtype, default="float32"
        Compute dtype and dtype of the returned features. Soft labels are
        float64 (computed from the logits as :class:`~skvmf.FeatureSet` does).
    return_tensors : bool, default=False
        Return torch tensors on ``device`` instead of numpy arrays. Implied
        for torch images under ``array_api_dispatch=True`` (see Notes).
    memmap_dir : str or path, default=None
        Write each layer's regional features batch by batch to a file in this
        directory (created if needed) and return them as ``numpy.memmap``, so
        memory does not grow with N. The files are not deleted by skvmf.
        Incompatible with ``return_tensors=True``.
    stride1_conv5 : bool, default=False
        The supplement's ResNet variant: stride 1 in conv5_x (``layer4``), on
        a copy of the model. ResNets only.
    verbose : int, default=0
        ``1`` shows a progress bar, ``2`` also messages.

    Attributes
    ----------
    model_ : torch.nn.Module
        The model that runs (``model`` itself, or a modified copy).
    architecture_ : str or None
        ``"vgg"``, ``"resnet"``, ``"mobilenet_v2"``, ``"vit"``, ``"swin"`` or
        None (by structure).
    layer_names_ : list of str
        The regional layers as given (aliases kept): the keys of
        ``FeatureSet.regions``.
    layers_ : list of str
        The same layers as module names.
    sample_layer_ : str or None
        Module of the sample features.
    sample_mode_ : {"input", "output"} or None
        Whether the sample feature is that module's input or (pooled) output.
    device_ : torch.device
    dtype_ : torch.dtype
    n_channels_ : int or None
        ``in_channels`` of the first ``nn.Conv2d``; inputs are checked against it.
    layer_layouts_ : dict of str to str or None
        How each layer's output was read (e.g. ``"tokens (1 leading token(s)
        dropped, 14x14 patch grid)"``), recorded by ``fit(X)``'s dry run.
    grid_ : tuple of int or None
        The common grid; None when neither ``grid`` nor ``X`` at fit told it
        (each extraction then uses its input's smallest layer).
    input_shape_, layer_shapes_, n_sample_features_, n_classes_ : optional
        (C, H, W) of an image, {layer: (K, H, W)}, D and C, recorded by a dry
        run on the first image when ``fit`` gets ``X`` (None otherwise).

    Notes
    -----
    ``n_features_in_`` is not set: the input is images, not a feature
    matrix. The estimator declares ``two_d_array=False`` in its tags, so
    scikit-learn's generic tabular checks do not apply to it.

    Pickling (``pickle``, ``joblib``) stores the model as its architecture
    plus its ``state_dict`` bytes, restored with
    ``torch.load(..., weights_only=True)`` on the CPU (moved back to CUDA if
    it was there and CUDA is available). Unpickling still runs pickle on the
    architecture: load only files you trust.

    **Array API dispatch.** With ``sklearn.set_config(array_api_dispatch=True)``
    (or inside ``sklearn.config_context(array_api_dispatch=True)``), torch
    images give a :class:`~skvmf.FeatureSet` of torch tensors on the model's
    ``device``, as ``return_tensors=True`` does: sample features, logits and
    regional maps in ``dtype``, soft labels in float64 (float32 on a device
    without float64), computed on the device. Nothing is copied to the host,
    so the features go on to :class:`~skvmf.SampleProjector`,
    :class:`~skvmf.RegionalAligner` and :class:`~skvmf.KnowledgePointCounter`
    (which follow their input's device under dispatch) with no round trip.
    ``image_ids`` stays a numpy index. numpy images, and any images without
    dispatch, give numpy arrays as before; ``memmap_dir`` with torch images
    under dispatch is a ``ValueError``.

    **Out of memory.** A batch that does not fit the device raises
    ``torch.OutOfMemoryError`` naming the batch size tried and a smaller
    one to set as ``batch_size``.

    Examples
    --------
    >>> import numpy as np, torchvision
    >>> from skvmf.extraction import TorchFeatureExtractor
    >>> model = torchvision.models.resnet18(weights=None, num_classes=5)
    >>> X = np.random.default_rng(0).normal(size=(4, 3, 64, 64)).astype("float32")
    >>> ext = TorchFeatureExtractor(model, layers=["conv_4", "conv_5"]).fit(X)
    >>> fs = ext.transform(X)
    >>> fs.sample.shape, fs.logits.shape, fs.grid, fs.regions["conv_4"].shape
    ((4, 512), (4, 5), (2, 2), (4, 4, 256))
    >>> ext.set_params(output="regions").fit(X).transform(X).shape
    (16, 768)
    """

    _parameter_constraints: dict = {
        "model": [nn.Module],
        "layers": [None, str, list, tuple],
        "sample_layer": [None, str],
        "output": [StrOptions(set(_OUTPUTS))],
        "grid": [None, Interval(Integral, 1, None, closed="left"), tuple, list],
        "reshape": [None, str, callable, dict],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [None, str, torch.device],
        "dtype": [str, type, np.dtype, torch.dtype],
        "return_tensors": ["boolean"],
        "memmap_dir": [None, str, os.PathLike],
        "stride1_conv5": ["boolean"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model,
        layers=None,
        *,
        sample_layer="auto",
        output="features",
        grid=None,
        reshape=None,
        temperature=4.0,
        batch_size=64,
        device="cpu",
        dtype="float32",
        return_tensors=False,
        memmap_dir=None,
        stride1_conv5=False,
        verbose=0,
    ):
        self.model = model
        self.layers = layers
        self.sample_layer = sample_layer
        self.output = output
        self.grid = grid
        self.reshape = reshape
        self.temperature = temperature
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.return_tensors = return_tensors
        self.memmap_dir = memmap_dir
        self.stride1_conv5 = stride1_conv5
        self.verbose = verbose

    # -- fitting --------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Resolve layers and, given images, record shapes by a dry run.

        Parameters
        ----------
        X : array-like, tensor, Dataset or DataLoader, optional
            Images (N, C, H, W). Only the first image is run (to record
            ``layer_shapes_``, ``grid_``, ``n_sample_features_``,
            ``n_classes_``); nothing is learned from the data.
        y : None
            Ignored.

        Returns
        -------
        self : TorchFeatureExtractor
            The fitted extractor.

        Examples
        --------
        >>> import torchvision
        >>> from skvmf.extraction import TorchFeatureExtractor
        >>> model = torchvision.models.mobilenet_v2(weights=None)
        >>> ext = TorchFeatureExtractor(model).fit()
        >>> ext.layer_names_[:2], ext.layers_[:2], ext.sample_layer_
        (['layer_4', 'layer_7'], ['features.3', 'features.6'], 'classifier.1')
        """
        self.device_ = resolve_device(self.device)
        self.dtype_ = resolve_dtype(self.dtype)
        self.grid_ = check_grid(self.grid)
        if self.return_tensors and self.memmap_dir is not None:
            raise ValueError(
                "memmap_dir writes numpy memmaps; it cannot be combined with "
                "return_tensors=True"
            )
        arch = detect_architecture(self.model)
        self.architecture_ = arch.family if arch is not None else None
        self.model_ = self._model_to_run()
        self._resolve_layers(arch)
        self._resolve_sample_layer(arch)
        self.n_channels_ = first_conv_channels(self.model_)
        self.layer_layouts_ = None
        self.input_shape_ = None
        self.layer_shapes_ = None
        self.n_sample_features_ = None
        self.n_classes_ = None
        if X is not None:
            self._dry_run(X)
        return self

    def _model_to_run(self) -> nn.Module:
        """Fit step 1: ``model`` itself, or a copy with stride 1 in conv5_x
        or on another device or dtype (the user's model is never changed)."""
        model = self.model
        if self.stride1_conv5:
            if self.architecture_ != "resnet":
                raise ValueError(
                    "stride1_conv5=True needs a ResNet (layer1..layer4); got a "
                    f"{type(model).__name__} recognised as {self.architecture_}"
                )
            model = copy.deepcopy(model)
            set_conv5_stride1(model)
        if _needs_move(model, self.device_, self.dtype_):
            if model is self.model:
                model = copy.deepcopy(model)
            model = model.to(device=self.device_, dtype=self.dtype_)
        return model

    def _resolve_layers(self, arch) -> None:
        """Fit step 2: the regional layers as given and as module names, each
        a different module, and their ``reshape``."""
        names = module_names(self.model_)
        given = self._given_layers(arch)
        resolved = [resolve_layer(n, self.model_, arch, names=names) for n in given]
        seen = {}
        for g, r in zip(given, resolved):
            if r in seen:
                raise ValueError(
                    f"layers {seen[r]!r} and {g!r} are the same module {r!r}"
                )
            seen[r] = g
        if self.output == "regions" and not given:
            raise ValueError("output='regions' needs at least one layer in layers")
        self.layer_names_ = given
        self.layers_ = resolved
        self._reshapes = self._layer_reshapes(given, resolved)

    def _resolve_sample_layer(self, arch) -> None:
        """Fit step 3: the module of the sample feature and whether its input
        (``"auto"``: the last ``nn.Linear``) or its output is taken."""
        model = self.model_
        if self.sample_layer == "auto":
            self.sample_layer_ = last_linear(model)
            self.sample_mode_ = "input"
            if self.sample_layer_ is None:
                raise ValueError(
                    f"sample_layer='auto' found no nn.Linear in {type(model).__name__}"
                    "; give sample_layer=<module name> (its output is pooled) or "
                    "None"
                )
        elif self.sample_layer is None:
            self.sample_layer_ = None
            self.sample_mode_ = None
        else:
            self.sample_layer_ = resolve_layer(
                self.sample_layer,
                model,
                arch,
                names=module_names(model),
                what="sample_layer",
            )
            self.sample_mode_ = "output"
        if self.output == "sample" and self.sample_layer_ is None:
            raise ValueError("output='sample' needs a sample_layer; got None")

    def _given_layers(self, arch) -> list[str]:
        if self.layers is None:
            if arch is not None and arch.default:
                return list(arch.default)
            if self.output in ("features", "regions"):
                raise ValueError(
                    "layers=None takes the paper's layers of a VGG, ResNet, "
                    "MobileNet-V2, ViT or Swin, but "
                    f"{type(self.model).__name__} is none of "
                    "them; give layer names (model.named_modules()) or layers=[]"
                )
            return []
        if isinstance(self.layers, str):
            return [self.layers]
        layers = list(self.layers)
        for name in layers:
            if not isinstance(name, str):
                raise ValueError(f"layers must be strings; got {name!r} in {layers!r}")
        return layers

    def _layer_reshapes(self, given, resolved) -> dict:
        """``reshape`` per layer key (validated)."""
        if not isinstance(self.reshape, dict):
            value = check_reshape(self.reshape)
            return dict.fromkeys(given, value)
        unknown = [k for k in self.reshape if k not in given and k not in resolved]
        if unknown:
            raise ValueError(
                f"reshape has entries for {unknown}, which are not in layers {given}"
            )
        out = {}
        for key, module_name in zip(given, resolved):
            value = self.reshape.get(key, self.reshape.get(module_name))
            out[key] = check_reshape(value, f"reshape[{key!r}]")
        return out

    def _dry_run(self, X):
        """Run the first image to record shapes, layouts and the grid."""
        try:
            _, first = next(iter(self._batches(X, 1)))
        except StopIteration:
            raise ValueError("X yielded no images; need at least one") from None
        x = self._prepare(first[:1], 0)
        regions = list(zip(self.layer_names_, self.layers_))
        sample = (self.sample_layer_, self.sample_mode_) if self.sample_layer_ else None
        capture = _Pass(self.model_, regions, sample, self.grid_, self._reshapes)
        with evaluating(self.model_), capture, torch.inference_mode():
            logits, feats, _ = capture.forward(x)
        self.layer_layouts_ = {k: v[2].describe() for k, v in capture.layouts.items()}
        self.input_shape_ = tuple(int(v) for v in x.shape[1:])
        self.layer_shapes_ = dict(capture.raw_shapes)
        self.grid_ = capture.grid
        self.n_sample_features_ = int(feats.shape[1]) if feats is not None else None
        self.n_classes_ = int(logits.shape[1])

    def _batches(self, X, batch_size):
        """``X`` as batches of CPU tensors (any image source of
        :mod:`skvmf._torch.images`); a FeatureSet is refused by name."""
        if isinstance(X, FeatureSet):
            raise ValueError(
                "X is a FeatureSet (features already extracted); the extractor "
                "needs images (N, C, H, W)"
            )
        return image_batches(X, batch_size, channels=self.n_channels_, name="X")

    def _prepare(self, batch, start):
        return check_batch(
            batch,
            channels=self.n_channels_,
            device=self.device_,
            dtype=self.dtype_,
            name="X",
            start=start,
        )

    # -- extraction -----------------------------------------------------------
    def _returns_tensors(self, X) -> bool:
        """Whether the features come back as tensors on the model's device:
        asked for (``return_tensors``), or torch images under scikit-learn's
        ``array_api_dispatch`` (the output follows the input's namespace)."""
        if self.return_tensors:
            return True
        if not (isinstance(X, torch.Tensor) and _array_api.dispatch_enabled()):
            return False
        if self.memmap_dir is not None:
            raise ValueError(
                "memmap_dir writes numpy memmaps, but torch images under "
                "array_api_dispatch=True give tensors on the model's device; "
                "set memmap_dir=None, or pass numpy images"
            )
        return True

    def _extract(self, X, *, sample: bool, regions: bool) -> FeatureSet:
        """The features of ``X``: batches streamed through one :class:`_Pass`
        into the sinks (files removed when anything fails)."""
        check_is_fitted(self, "layers_")
        tensors = self._returns_tensors(X)
        source = self._batches(X, self.batch_size)
        keys = list(zip(self.layer_names_, self.layers_)) if regions else []
        spec = None
        if sample and self.sample_layer_ is not None:
            spec = (self.sample_layer_, self.sample_mode_)
        message(
            f"TorchFeatureExtractor: {source.n or 'unknown number of'} images, "
            f"layers {[k for k, _ in keys]}, sample {self.sample_layer_}",
            verbose=self.verbose,
        )
        capture = _Pass(
            self.model_, keys, spec, self.grid_, getattr(self, "_reshapes", {})
        )
        sinks = self._open_sinks(source.n, keys, spec is not None, tensors)
        try:
            with evaluating(self.model_), capture:
                self._stream(source, capture, sinks)
            results = {name: sink.result() for name, sink in sinks.items()}
        except BaseException:
            for sink in sinks.values():
                sink.abort()
            raise
        return self._feature_set(results, capture, keys, spec, tensors)

    def _open_sinks(self, n, keys, sample, tensors) -> dict:
        """Extraction step 1: one sink for the logits, the sample features
        and each layer (a memmap file per layer with ``memmap_dir``)."""
        common = {
            "tensors": tensors,
            "device": self.device_,
            "torch_dtype": self.dtype_,
        }
        sinks = {"logits": _Sink(n, maps=False, **common)}
        if sample:
            sinks["sample"] = _Sink(n, maps=False, **common)
        try:
            for key, _ in keys:
                path = None
                if self.memmap_dir is not None:
                    path = _memmap_path(self.memmap_dir, key)
                sinks[("region", key)] = _Sink(n, maps=True, path=path, **common)
        except BaseException:
            for sink in sinks.values():
                sink.abort()
            raise
        return sinks

    def _stream(self, source, capture, sinks) -> None:
        """Extraction step 2: every batch checked, run and stored."""
        bar = progress(
            source,
            verbose=self.verbose,
            total=source.n_batches,
            desc="extracting",
            unit="batch",
        )
        regions = [sink for name, sink in sinks.items() if isinstance(name, tuple)]
        for start, batch in bar:
            x = self._prepare(batch, start)
            try:
                with torch.inference_mode():
                    logits, feats, maps = capture.forward(x, start)
            except _OUT_OF_MEMORY as exc:
                tried = int(x.shape[0])
                del x
                raise _out_of_memory(exc, tried, start, self.device_) from exc
            sinks["logits"].put(logits)
            if "sample" in sinks:
                sinks["sample"].put(feats)
            for sink, block in zip(regions, maps):
                sink.put(block)
        if sinks["logits"].count == 0:
            raise ValueError("X yielded no images; need at least one")

    def _feature_set(self, results, capture, keys, spec, tensors) -> FeatureSet:
        """Extraction step 3: the FeatureSet, soft labels from the logits."""
        logits = results["logits"]
        soft = None  # under dispatch FeatureSet computes them in the namespace
        if tensors and not _array_api.dispatch_enabled():
            # soft labels in float64 where the device has it (FeatureSet's
            # numpy path computes them in float64 too); float32 elsewhere
            wide = torch.float64 if _has_float64(logits.device) else torch.float32
            soft = torch.softmax(logits.to(wide) / self.temperature, dim=1)
        return FeatureSet(
            sample=results.get("sample"),
            logits=logits,
            soft_labels=soft,
            temperature=float(self.temperature),
            regions={key: results[("region", key)] for key, _ in keys},
            grid=capture.grid if keys else None,
            image_ids=np.arange(len(logits)),
            meta={
                "layers": dict(keys),
                "sample_layer": self.sample_layer_ if spec else None,
                "architecture": self.architecture_,
                "model": type(self.model_).__name__,
                "layouts": {k: v[2].describe() for k, v in capture.layouts.items()},
            },
        )

    def extract(self, X) -> FeatureSet:
        """All features of ``X`` as a :class:`~skvmf.FeatureSet`, whatever ``output``.

        Parameters
        ----------
        X : array-like, tensor, Dataset or DataLoader
            Images (N, C, H, W); a Dataset's items are images or
            (image, label); a DataLoader's batches are images or
            (images, labels). For a shuffling DataLoader ``image_ids`` are
            positions in iteration order.

        Returns
        -------
        FeatureSet
            ``sample``, ``logits``, ``soft_labels``, ``regions`` (keys: the
            layers as given), ``grid``, ``image_ids`` and ``meta``.

        Examples
        --------
        >>> import numpy as np, torchvision
        >>> from skvmf.extraction import TorchFeatureExtractor
        >>> model = torchvision.models.mobilenet_v2(weights=None, num_classes=3)
        >>> X = np.zeros((2, 3, 64, 64), dtype=np.float32)
        >>> ext = TorchFeatureExtractor(model, "layer_18", output="logits").fit()
        >>> ext.extract(X).regions["layer_18"].shape
        (2, 4, 320)
        """
        return self._extract(X, sample=True, regions=True)

    def transform(self, X):
        """Features of ``X`` as chosen by ``output``.

        Parameters
        ----------
        X : array-like, tensor, Dataset or DataLoader
            Images (N, C, H, W) (see :meth:`extract`).

        Returns
        -------
        FeatureSet or ndarray or torch.Tensor
            A :class:`~skvmf.FeatureSet` for ``output="features"``; else the
            2-D array named by ``output`` (see the class docstring).

        Examples
        --------
        >>> import numpy as np, torchvision
        >>> from skvmf.extraction import TorchFeatureExtractor
        >>> model = torchvision.models.resnet18(weights=None, num_classes=4)
        >>> X = np.zeros((3, 3, 32, 32), dtype=np.float32)
        >>> ext = TorchFeatureExtractor(model, [], output="soft_labels").fit()
        >>> ext.transform(X).sum(axis=1)
        array([1., 1., 1.])
        """
        check_is_fitted(self, "layers_")
        output = self.output
        fs = self._extract(
            X,
            sample=output in ("features", "sample"),
            regions=output in ("features", "regions"),
        )
        if output == "features":
            return fs
        if output == "sample":
            return fs.sample
        if output == "logits":
            return fs.logits
        if output == "soft_labels":
            return fs.soft_labels
        blocks = [fs.region_rows(key) for key in self.layer_names_]
        if len(blocks) == 1:
            return blocks[0]
        if isinstance(blocks[0], torch.Tensor):
            return torch.cat(blocks, dim=1)
        return np.concatenate(blocks, axis=1)

    def get_feature_names_out(self, input_features=None):
        """Names of the columns of the 2-D output.

        ``"sample{j}"`` for sample features (also for ``output="features"``,
        whose principal matrix is the sample features), ``"logit{c}"``,
        ``"soft_label{c}"``, and ``"{layer}__ch{k}"`` for region rows (layers
        as given, in order). The counts come from ``fit(X)``'s dry run.

        Parameters
        ----------
        input_features : None
            Ignored: images have no feature names.

        Returns
        -------
        ndarray of str objects

        Examples
        --------
        >>> import numpy as np, torchvision
        >>> from skvmf.extraction import TorchFeatureExtractor
        >>> model = torchvision.models.resnet18(weights=None, num_classes=3)
        >>> X = np.zeros((1, 3, 32, 32), dtype=np.float32)
        >>> ext = TorchFeatureExtractor(model, "conv_5", output="regions").fit(X)
        >>> ext.get_feature_names_out()[[0, -1]]
        array(['conv_5__ch0', 'conv_5__ch511'], dtype=object)
        """
        check_is_fitted(self, "layers_")
        if self.n_classes_ is None:
            raise ValueError(
                "feature names need the feature counts; call fit(X) with images "
                "so a dry run records them"
            )
        if self.output in ("features", "sample"):
            if self.n_sample_features_ is None:
                raise ValueError("no sample features: sample_layer is None")
            names = [f"sample{j}" for j in range(self.n_sample_features_)]
        elif self.output == "logits":
            names = [f"logit{c}" for c in range(self.n_classes_)]
        elif self.output == "soft_labels":
            names = [f"soft_label{c}" for c in range(self.n_classes_)]
        else:
            names = [
                f"{key}__ch{k}"
                for key in self.layer_names_
                for k in range(self.layer_shapes_[key][0])
            ]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # images (N, C, H, W)
        tags.transformer_tags.preserves_dtype = []
        return tags

    # -- pickling -------------------------------------------------------------
    def __getstate__(self):
        state = dict(super().__getstate__())
        model = state.get("model")
        if isinstance(model, nn.Module):
            state["model"] = _PackedModule(model)
        fitted = state.get("model_")
        if isinstance(fitted, nn.Module):
            state["model_"] = (
                _SAME_AS_MODEL if fitted is model else _PackedModule(fitted)
            )
        return state

    def __setstate__(self, state):
        state = dict(state)
        if isinstance(state.get("model"), _PackedModule):
            state["model"] = state["model"].unpack()
        fitted = state.get("model_")
        if isinstance(fitted, str) and fitted == _SAME_AS_MODEL:
            state["model_"] = state["model"]
        elif isinstance(fitted, _PackedModule):
            state["model_"] = fitted.unpack()
        super().__setstate__(state)
