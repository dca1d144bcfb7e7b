"""Where a network and its images come from, as ``skvmf analyze`` takes them.

The network:

- :func:`resolve_model` reads how to build it (an architecture name, a model
  factory, or a checkpoint written by skvmf, which names its own
  architecture) into a :class:`ModelSource`; :func:`load_model` builds and
  loads it in one call;
- :func:`load_weights` puts the weights of a file into a network you built,
  and :func:`load_checkpoints` loads every checkpoint of a training run (a
  folder or a list of files) with its iteration;
- :func:`check_model` fails fast, before any work, when the network cannot
  take the images, has another number of outputs than the data has classes,
  or has no layer of a given name.

The images: :func:`load_data` reads an ImageFolder tree or CIFAR-10 in its
python format (:func:`detect_data_format` says which a folder holds), and
:func:`select_images` keeps a random or a per-class balanced subset.

Every file is read without running code it may contain: torch files with
``torch.load(weights_only=True)``, CIFAR batches with a restricted unpickler.
Every problem with a file is a one-line :class:`ValueError` naming it.

:data:`ARCH_NAMES` lists every ``arch`` :func:`resolve_model` takes.

.. deprecated:: 0.1
   ``ARCHITECTURES`` is now :data:`ARCH_NAMES` (the networks skvmf itself
   builds are :data:`skvmf.architectures.ARCHITECTURES`), and
   ``load_checkpoint(model, path_or_file)`` is now :func:`load_weights`
   (:func:`skvmf.training.load_checkpoint` rebuilds a network from a
   checkpoint skvmf wrote). The old names warn and will be removed in 0.2.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path

import torch
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from torch import nn

from . import datasets
from ._torch import arch_names, checkpoints
from ._torch.devices import resolve_device
from ._torch.files import file_error, file_name
from ._torch.layers import detect_architecture, module_names, resolve_layer
from ._utils.warn import warn

__all__ = [
    "ARCH_NAMES",
    "ModelSource",
    "check_model",
    "detect_data_format",
    "load_checkpoints",
    "load_data",
    "load_model",
    "load_weights",
    "resolve_model",
    "select_images",
]

#: Every ``arch`` name :func:`resolve_model` takes: torchvision's networks at
#: their standard size (its vision transformers at 224 px only: their
#: positional embeddings are built for it), and with the prefix ``skvmf:``
#: skvmf's small-input variants (:func:`skvmf.architectures.make_classifier`)
#: and small ViT (:func:`skvmf.architectures.make_vit_classifier`).
ARCH_NAMES = arch_names.ARCH_NAMES
_TORCHVISION_TRANSFORMERS = arch_names.TRANSFORMERS
# the old public names, renamed in 0.1: (new name, what it is)
_RENAMED = {
    "ARCHITECTURES": (
        "ARCH_NAMES",
        "skvmf.architectures.ARCHITECTURES lists the networks skvmf builds",
    ),
}
# the image side each kind of network is built for, when the user gives none
_SKVMF_CNN_SIZE, _SKVMF_VIT_SIZE, _TRANSFORMER_SIZE = 32, 16, 224
_SKVMF_WIDTH = 0.25
_ITERATION_KEYS = ("iteration", "step", "global_step", "epoch")


def __getattr__(name):
    """The deprecated module-level names (PEP 562), with a FutureWarning."""
    if name in _RENAMED:
        new, note = _RENAMED[name]
        warn(
            f"skvmf.sources.{name} was renamed {new} in 0.1 and will be removed "
            f"in 0.2; use skvmf.sources.{new} ({note})",
            FutureWarning,
        )
        return globals()[new]
    raise AttributeError(f"module 'skvmf.sources' has no attribute {name!r}")


# ---------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------
@validate_params(
    {
        "model": [nn.Module],
        "path_or_file": "no_validation",
        "device": [str, torch.device],
    },
    prefer_skip_nested_validation=True,
)
def load_weights(model, path_or_file, device="cpu") -> nn.Module:
    """Load the weights of a file into ``model``, without running its code.

    Uses ``torch.load(..., weights_only=True)``. The file holds a bare
    ``state_dict`` or a dict with a ``"model"`` or ``"state_dict"`` entry
    (other entries such as ``"epoch"`` are ignored, so skvmf's own
    checkpoints load too); a ``"module."`` prefix (DataParallel) is removed.
    Keys and shapes are compared with the architecture first. To rebuild
    the network of a checkpoint skvmf wrote without giving it, see
    :func:`skvmf.training.load_checkpoint`.

    .. versionchanged:: 0.1
       Renamed from ``load_checkpoint`` (still there, deprecated, removed in
       0.2).

    Parameters
    ----------
    model : torch.nn.Module
        The architecture; loaded in place and moved to ``device``.
    path_or_file : str, path or file-like
        The checkpoint.
    device : str or torch.device, default="cpu"
        Where the weights go.

    Returns
    -------
    torch.nn.Module
        ``model`` with the checkpoint's weights.

    Raises
    ------
    ValueError
        Naming the file, when it is missing, truncated or corrupt, holds
        anything but weights, or its keys or shapes do not match the
        architecture (a few mismatches are listed).

    Examples
    --------
    >>> import io, torch, torchvision
    >>> from skvmf.sources import load_weights
    >>> trained = torchvision.models.resnet18(weights=None, num_classes=3)
    >>> buffer = io.BytesIO()
    >>> torch.save({"model": trained.state_dict(), "epoch": 7}, buffer)
    >>> _ = buffer.seek(0)
    >>> fresh = load_weights(torchvision.models.resnet18(num_classes=3), buffer)
    >>> bool(torch.equal(fresh.fc.weight, trained.fc.weight))
    True
    """
    dev = resolve_device(device)
    obj = checkpoints.read(path_or_file)
    name = file_name(path_or_file)
    state = checkpoints.weights_of(obj, name)
    return checkpoints.load_weights(model, state, name).to(dev)


def load_checkpoint(model, path_or_file, device="cpu") -> nn.Module:
    """Deprecated: renamed :func:`load_weights`.

    .. deprecated:: 0.1
       ``load_checkpoint(model, path_or_file, device)`` was renamed
       :func:`load_weights` in 0.1 and will be removed in 0.2
       (:func:`skvmf.training.load_checkpoint`, which rebuilds a network from
       a checkpoint skvmf wrote, keeps its name).
    """
    warn(
        "skvmf.sources.load_checkpoint(model, path_or_file) was renamed "
        "load_weights in 0.1 and will be removed in 0.2; use "
        "skvmf.sources.load_weights (skvmf.training.load_checkpoint(path) "
        "rebuilds a network from a checkpoint skvmf wrote)",
        FutureWarning,
    )
    return load_weights(model, path_or_file, device)


def _iteration_of(obj, path: Path, position: int) -> int:
    """The training step of a checkpoint: an ``iteration``/``step``/
    ``global_step``/``epoch`` entry, else the last number in the file name,
    else its position in the list."""
    if isinstance(obj, Mapping):
        for key in _ITERATION_KEYS:
            value = obj.get(key)
            if isinstance(value, Integral) and not isinstance(value, bool):
                return int(value)
    numbers = re.findall(r"\d+", path.stem)
    return int(numbers[-1]) if numbers else position


def _checkpoint_files(paths) -> list[Path]:
    """The files of a folder (``*.pt``, ``*.pth``, sorted) or of a list."""
    if isinstance(paths, (str, os.PathLike)):
        folder = Path(paths).expanduser()
        if not folder.is_dir():
            raise ValueError(f"checkpoints folder {str(folder)!r} does not exist")
        files = checkpoints.files_in(folder)
        if not files:
            raise ValueError(f"no *.pt or *.pth checkpoints in {str(folder)!r}")
        return files
    files = [Path(p).expanduser() for p in paths]
    if not files:
        raise ValueError("checkpoints is an empty list; give at least one file")
    return files


def _one_checkpoint(path: Path, position: int, build, dev) -> tuple[int, nn.Module]:
    """(iteration, network in eval mode) of one checkpoint file: skvmf's own
    rebuild their architecture, plain weights go into ``build()``."""
    obj = checkpoints.read(path)
    if checkpoints.is_skvmf(obj):
        model = checkpoints.rebuild(obj, path)
    elif build is None:
        raise file_error(
            path,
            checkpoints.WHAT,
            "holds plain weights, not a skvmf checkpoint, so its architecture is "
            "unknown; give it (build= in Python, --arch or --model-factory on the "
            "command line)",
        )
    else:
        model = checkpoints.load_weights(
            build(), checkpoints.weights_of(obj, path), path
        )
    return _iteration_of(obj, path, position), model.to(dev).eval()


@validate_params(
    {
        "checkpoints": [str, os.PathLike, list, tuple],
        "build": [None, callable],
        "device": [str, torch.device],
    },
    prefer_skip_nested_validation=True,
)
def load_checkpoints(checkpoints, *, build=None, device="cpu") -> list:
    """Every checkpoint of a training run, as (iteration, network) pairs.

    Each file is read once, with ``torch.load(weights_only=True)``. A
    checkpoint written by skvmf (:func:`skvmf.training.train_classifier`)
    rebuilds its own architecture; any other holds plain weights (see
    :func:`load_weights`), loaded into a fresh ``build()``. The iteration
    is the file's ``iteration``, ``step``, ``global_step`` or ``epoch``
    entry, else the last number in its name (``step_100.pt``), else its
    position.

    Parameters
    ----------
    checkpoints : str, path-like or list of them
        A folder (its ``*.pt`` and ``*.pth`` files) or the files.
    build : callable, optional
        Returns a fresh network of the run's architecture; needed only for
        files that are not skvmf checkpoints.
    device : str or torch.device, default="cpu"
        Where the networks go.

    Returns
    -------
    list of (int, torch.nn.Module)
        By iteration; the networks are in eval mode.

    Raises
    ------
    ValueError
        Naming the file, for a file that cannot be read or does not fit the
        architecture; also when the folder has no checkpoint, or when two
        checkpoints share an iteration.

    Examples
    --------
    >>> import tempfile, pathlib, torch
    >>> from skvmf.architectures import make_classifier
    >>> from skvmf.sources import load_checkpoints
    >>> def build():
    ...     return make_classifier("vgg16", 2, width=0.0625, input_size=16)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     for step in (100, 0):
    ...         path = pathlib.Path(folder) / f"step_{step}.pt"
    ...         torch.save(build().state_dict(), path)
    ...     [it for it, _ in load_checkpoints(folder, build=build)]
    [0, 100]
    """
    dev = resolve_device(device)
    files = _checkpoint_files(checkpoints)
    pairs = [_one_checkpoint(path, k, build, dev) for k, path in enumerate(files)]
    iterations = sorted(it for it, _ in pairs)
    if len(set(iterations)) != len(iterations):
        raise ValueError(
            f"two checkpoints share an iteration number ({iterations}) in "
            f"{[str(p) for p in files][:6]}; name them by step, e.g. step_100.pt"
        )
    return sorted(pairs, key=lambda pair: pair[0])


# ---------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------
def _import_factory(spec: str) -> Callable:
    """The function of ``"module:function"`` or ``"path/file.py:function"``.

    Importing the user's module runs it: that is what a factory is for."""
    module_name, sep, func_name = spec.rpartition(":")
    if not sep or not module_name or not func_name:
        raise ValueError(
            f"model_factory must be MODULE:FUNCTION or path/file.py:FUNCTION; "
            f"got {spec!r}"
        )
    is_file = module_name.endswith(".py") or "/" in module_name or os.sep in module_name
    try:
        module = _import_file(module_name) if is_file else _import_module(module_name)
    except FileNotFoundError:
        raise
    except Exception as exc:  # any error inside the user's module
        raise ImportError(
            f"could not import {module_name!r} for the model factory: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    func = getattr(module, func_name, None)
    if func is None or not callable(func):
        raise ImportError(f"{module_name!r} has no function {func_name!r}")
    return func


def _import_file(filename: str):
    path = Path(filename).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model factory file {filename!r} not found")
    stem = re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(f"_skvmf_factory_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _import_module(name: str):
    """Import like ``python -m``: modules of the current directory are found."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _call_factory(func: Callable, name: str, n_classes: int) -> nn.Module:
    """``func(num_classes=n_classes)`` when it takes that argument, else ``func()``."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        params = {}
    takes = "num_classes" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )
    try:
        model = func(num_classes=n_classes) if takes else func()
    except Exception as exc:
        raise RuntimeError(
            f"the model factory {name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"the model factory {name!r} must return a torch.nn.Module; "
            f"got {type(model).__name__}"
        )
    return model


@dataclass(frozen=True)
class ModelSource:
    """How to build a network and where its weights are; see :func:`resolve_model`.

    Attributes
    ----------
    arch : str or None
        One of :data:`ARCH_NAMES`, or None.
    checkpoint : pathlib.Path or None
        The weights.
    factory : callable or None
        Returns the network (called with ``num_classes`` when it takes it).
    factory_name : str or None
        How the factory was named.
    width : float or None
        Channel multiplier of an ``skvmf:`` CNN.
    input_size : int or None
        The image side the network is built for (None: any, e.g. a factory's
        or torchvision's CNNs).
    config : dict or None
        The architecture of a skvmf checkpoint.
    """

    arch: str | None = None
    checkpoint: Path | None = None
    factory: Callable | None = None
    factory_name: str | None = None
    width: float | None = None
    input_size: int | None = None
    config: dict | None = None
    _checkpoint: Mapping | None = field(default=None, repr=False, compare=False)

    @property
    def description(self) -> str:
        """A short name of the network for reports, e.g. ``torchvision resnet18``."""
        if self.config is not None:
            return f"skvmf {self.config['arch']} from {self.checkpoint.name}"
        if self.factory is not None:
            return str(self.factory_name)
        if self.arch == "skvmf:vit":
            return f"skvmf:vit ({self.input_size} px)"
        if self.arch.startswith("skvmf:"):
            return f"{self.arch} (width {self.width:g})"
        return f"torchvision {self.arch}"

    def build(self, n_classes=None) -> nn.Module:
        """A fresh, untrained network of this architecture.

        Parameters
        ----------
        n_classes : int, optional
            Outputs of the network; required unless the architecture comes
            from a skvmf checkpoint (which knows its own, and must agree).

        Returns
        -------
        torch.nn.Module
        """
        if self.config is not None:
            self._check_n_classes(n_classes)
            return checkpoints.build(self.config, self.checkpoint)
        if not isinstance(n_classes, Integral) or n_classes < 1:
            raise ValueError(
                f"n_classes must be a positive integer to build {self.description}; "
                f"got {n_classes!r}"
            )
        return self._build_named(int(n_classes))

    def _check_n_classes(self, n_classes) -> None:
        """A skvmf checkpoint knows its classes: ``n_classes`` must agree."""
        expected = self.config.get("n_classes")
        if n_classes is not None and n_classes != expected:
            raise ValueError(
                f"n_classes={n_classes} contradicts the {expected} classes of "
                f"the skvmf checkpoint {str(self.checkpoint)!r}"
            )

    def _build_named(self, n_classes: int) -> nn.Module:
        from .architectures import make_classifier, make_vit_classifier

        if self.factory is not None:
            return _call_factory(self.factory, self.factory_name, n_classes)
        if self.arch == "skvmf:vit":
            return make_vit_classifier(n_classes, input_size=self.input_size)
        if self.arch.startswith("skvmf:"):
            name = self.arch[len("skvmf:") :]
            base = "vgg16" if name == "vgg16_bn" else name
            options = {"width": self.width, "input_size": self.input_size}
            if base == "vgg16":
                options["batch_norm"] = name == "vgg16_bn"
            return make_classifier(base, n_classes, **options)
        import torchvision

        return getattr(torchvision.models, self.arch)(
            weights=None, num_classes=n_classes
        )

    def load(self, n_classes=None, *, device="cpu") -> nn.Module:
        """The network with the checkpoint's weights (untrained without one),
        in eval mode on ``device``.

        Parameters
        ----------
        n_classes : int, optional
            As for :meth:`build`.
        device : str or torch.device, default="cpu"

        Returns
        -------
        torch.nn.Module
        """
        dev = resolve_device(device)
        if self._checkpoint is not None:  # a skvmf checkpoint, read once already
            self._check_n_classes(n_classes)
            model = checkpoints.rebuild(self._checkpoint, self.checkpoint)
        elif self.checkpoint is not None:
            model = load_weights(self.build(n_classes), self.checkpoint)
        else:
            model = self.build(n_classes)
        return model.to(dev).eval()


def _check_arch_options(arch, model_factory, width, input_size) -> None:
    """One way to build; ``width`` and ``input_size`` belong to the skvmf:
    architectures."""
    if arch is not None and model_factory is not None:
        raise ValueError("give arch or model_factory, not both")
    small = arch is not None and arch.startswith("skvmf:")
    if (width is not None or input_size is not None) and not small:
        raise ValueError(
            "width and input_size apply to the skvmf: architectures only; "
            f"got arch={arch!r}"
        )
    if width is not None and arch == "skvmf:vit":
        raise ValueError("width applies to skvmf's CNNs, not to skvmf:vit")


def _default_input_size(arch) -> int | None:
    if arch == "skvmf:vit":
        return _SKVMF_VIT_SIZE
    if arch is not None and arch.startswith("skvmf:"):
        return _SKVMF_CNN_SIZE
    if arch in _TORCHVISION_TRANSFORMERS:
        return _TRANSFORMER_SIZE
    return None


def _from_skvmf_checkpoint(path: Path) -> ModelSource:
    """A skvmf checkpoint alone: its config names the architecture."""
    obj = checkpoints.read(path)
    if not checkpoints.is_skvmf(obj):
        raise checkpoints.not_skvmf_error(
            path,
            obj,
            "for plain weights give the architecture (arch or model_factory)",
        )
    checkpoints.weights_of(obj, path)  # weights there, before any work
    config = dict(obj["config"])
    size = config.get("input_size")
    return ModelSource(checkpoint=path, input_size=size, config=config, _checkpoint=obj)


_MODEL_CONSTRAINTS = {
    "arch": [None, StrOptions(set(ARCH_NAMES))],
    "checkpoint": [None, str, os.PathLike],
    "model_factory": [None, str, callable],
    "width": [None, Interval(Real, 0, 4, closed="right")],
    "input_size": [None, Interval(Integral, 1, None, closed="left")],
}


@validate_params(_MODEL_CONSTRAINTS, prefer_skip_nested_validation=True)
def resolve_model(
    arch=None, *, checkpoint=None, model_factory=None, width=None, input_size=None
) -> ModelSource:
    """How to build a network, from the same inputs as ``skvmf analyze``.

    One of:

    - ``arch`` (and usually ``checkpoint``): torchvision's network at its
      standard size (``torchvision.models.<arch>(weights=None,
      num_classes=C)``), or with the prefix ``skvmf:`` skvmf's small-input
      variant (``width`` and ``input_size`` apply; ``skvmf:vit`` is the small
      ViT of the digits recipe);
    - ``model_factory`` (and optionally ``checkpoint``): a callable, or
      ``"module:function"`` / ``"path/file.py:function"``, returning the
      ``nn.Module`` (called with ``num_classes=C`` when it takes that
      argument);
    - ``checkpoint`` alone: a checkpoint written by skvmf, which names its
      own architecture.

    Parameters
    ----------
    arch : str, optional
        One of :data:`ARCH_NAMES`.
    checkpoint : str or path-like, optional
        The weights (see :func:`load_weights`).
    model_factory : callable or str, optional
        Builds the network.
    width : float, optional
        Channel multiplier of an ``skvmf:`` CNN, in (0, 4] (default 0.25).
    input_size : int, optional
        Image side an ``skvmf:`` network is built for (default 32; 16 for
        ``skvmf:vit``).

    Returns
    -------
    ModelSource
        With ``build(n_classes)``, ``load(n_classes, device=...)``, the
        ``input_size`` the images should have (None when any size fits) and
        a ``description``.

    Raises
    ------
    ValueError
        When the inputs contradict each other, or the checkpoint is missing,
        unreadable or (alone) not a skvmf checkpoint; the message names the
        file.
    ImportError
        When a factory named by a string cannot be imported.

    Examples
    --------
    >>> from skvmf.sources import resolve_model
    >>> source = resolve_model("skvmf:vgg16_bn", width=0.0625, input_size=16)
    >>> source.description, source.input_size
    ('skvmf:vgg16_bn (width 0.0625)', 16)
    >>> source.build(3).classifier[-1].out_features
    3
    """
    _check_arch_options(arch, model_factory, width, input_size)
    path = None if checkpoint is None else Path(checkpoint).expanduser()
    if path is not None and not path.is_file():
        raise file_error(path, checkpoints.WHAT, "does not exist")
    if arch is None and model_factory is None:
        if path is None:
            raise ValueError(
                "give the network: arch (with a checkpoint of its weights), "
                "model_factory, or a skvmf checkpoint"
            )
        return _from_skvmf_checkpoint(path)
    if model_factory is not None:
        return _from_factory(model_factory, path)
    small_cnn = arch.startswith("skvmf:") and arch != "skvmf:vit"
    return ModelSource(
        arch=arch,
        checkpoint=path,
        width=(width or _SKVMF_WIDTH) if small_cnn else None,
        input_size=input_size or _default_input_size(arch),
    )


def _from_factory(model_factory, path: Path | None) -> ModelSource:
    """A factory: a callable, or imported from ``"module:function"``."""
    if isinstance(model_factory, str):
        func, name = _import_factory(model_factory), model_factory
    else:
        func = model_factory
        name = getattr(func, "__qualname__", repr(func))
    return ModelSource(checkpoint=path, factory=func, factory_name=name)


@validate_params(
    {
        **_MODEL_CONSTRAINTS,
        "n_classes": [None, Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
    },
    prefer_skip_nested_validation=True,
)
def load_model(
    arch=None,
    *,
    checkpoint=None,
    model_factory=None,
    n_classes=None,
    width=None,
    input_size=None,
    device="cpu",
) -> nn.Module:
    """The network of :func:`resolve_model`, built and loaded, in eval mode.

    Parameters
    ----------
    arch, checkpoint, model_factory, width, input_size
        As for :func:`resolve_model`.
    n_classes : int, optional
        Outputs of the network; required unless ``checkpoint`` alone is a
        skvmf checkpoint.
    device : str or torch.device, default="cpu"

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> import tempfile, pathlib, torch
    >>> from skvmf.sources import load_model
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     weights = pathlib.Path(folder) / "w.pt"
    ...     trained = load_model("resnet18", n_classes=4)
    ...     torch.save({"model": trained.state_dict(), "epoch": 3}, weights)
    ...     model = load_model("resnet18", checkpoint=weights, n_classes=4)
    >>> bool(torch.equal(model.fc.weight, trained.fc.weight)), model.training
    (True, False)
    """
    source = resolve_model(
        arch,
        checkpoint=checkpoint,
        model_factory=model_factory,
        width=width,
        input_size=input_size,
    )
    return source.load(n_classes, device=device)


@validate_params(
    {
        "model": [nn.Module],
        "dataset": "no_validation",
        "layers": [None, list, tuple],
    },
    prefer_skip_nested_validation=True,
)
def check_model(model, dataset, layers=None) -> list[str]:
    """Fail fast, before any work, when a network does not fit the images.

    Runs the first image through the network (in eval mode; every module's
    mode is restored after), then checks that it has one output per class of
    the data and that every layer name exists.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier.
    dataset : Dataset
        Items ``(image, label)`` with ``classes``.
    layers : list of str, optional
        Module names or the paper's aliases (``conv_53`` ...); None needs an
        architecture skvmf recognises (VGG, ResNet, MobileNet-V2, ViT, Swin).

    Returns
    -------
    list of str
        The module names of ``layers`` (empty for None).

    Raises
    ------
    ValueError
        When the network cannot process the images, its outputs are not the
        data's classes, or a layer is unknown (the closest names are listed).

    Examples
    --------
    >>> from skvmf.datasets import load_digits_images
    >>> from skvmf.architectures import make_classifier
    >>> from skvmf.sources import check_model
    >>> model = make_classifier("vgg16", 10, width=0.0625, input_size=16)
    >>> check_model(model, load_digits_images("test", size=16), ["conv_53"])
    ['features.29']
    """
    from ._torch.hooks import evaluating, model_device

    image = torch.as_tensor(dataset[0][0]).float()[None]
    try:
        with torch.no_grad(), evaluating(model):
            out = model(image.to(model_device(model) or "cpu"))
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())
        raise ValueError(
            f"the network cannot process the images ({tuple(image.shape[1:])}): "
            f"{reason}; resize the images or build the network for their size"
        ) from exc
    _check_outputs(out, dataset)
    return _resolve_layers(model, layers)


def _check_outputs(out, dataset) -> None:
    classes = list(dataset.classes)
    if out.ndim != 2 or out.shape[1] != len(classes):
        n_out = out.shape[1] if out.ndim == 2 else f"{tuple(out.shape[1:])}-shaped"
        shown = ", ".join(map(str, classes[:10])) + (
            ", ..." if len(classes) > 10 else ""
        )
        raise ValueError(
            f"the network has {n_out} outputs but the data has {len(classes)} "
            f"classes ({shown}); the outputs must be the data's classes in order"
        )


def _resolve_layers(model, layers) -> list[str]:
    arch = detect_architecture(model)
    names = module_names(model)
    if layers:
        return [resolve_layer(name, model, arch, names=names) for name in layers]
    if arch is None:
        raise ValueError(
            f"the architecture of {type(model).__name__} is not one skvmf knows "
            "(VGG, ResNet, MobileNet-V2, ViT, Swin); name the layers (layers=..., "
            f"--layers on the command line), module names such as {names[:6]}"
        )
    return []


# ---------------------------------------------------------------------------
# the images
# ---------------------------------------------------------------------------
_CIFAR_DIR = "cifar-10-batches-py"


@validate_params(
    {"path": [str, os.PathLike]},
    prefer_skip_nested_validation=True,
)
def detect_data_format(path) -> str:
    """``"cifar10"`` when ``path/cifar-10-batches-py`` exists, else ``"imagefolder"``.

    Parameters
    ----------
    path : str or path-like
        A data folder.

    Returns
    -------
    {"cifar10", "imagefolder"}

    Examples
    --------
    >>> import tempfile
    >>> from skvmf.sources import detect_data_format
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     detect_data_format(folder)
    'imagefolder'
    """
    return (
        "cifar10" if (Path(path).expanduser() / _CIFAR_DIR).is_dir() else "imagefolder"
    )


def _check_classes(dataset, where: str, layout: str) -> None:
    """An analysis compares classes: the data needs at least two."""
    classes = list(dataset.classes)
    if len(classes) < 2:
        names = ", ".join(map(str, classes)) or "none"
        raise ValueError(
            f"{where} has {len(classes)} class ({names}); analysis needs at least "
            f"2 classes, {layout}"
        )


@validate_params(
    {
        "path": [str, os.PathLike],
        "data_format": [StrOptions({"auto", "imagefolder", "cifar10"})],
        "split": [None, str],
        "size": [None, Interval(Integral, 1, None, closed="left")],
        "normalize": [StrOptions({"auto", "imagenet", "none"}), tuple, list],
    },
    prefer_skip_nested_validation=True,
)
def load_data(path, *, data_format="auto", split=None, size=None, normalize="auto"):
    """The images of a data folder, as ``skvmf analyze --data`` reads them.

    An ImageFolder tree (``path/<class>/<image>``, or
    ``path/<split>/<class>/<image>`` with ``split``; see
    :func:`skvmf.datasets.load_image_folder`) or CIFAR-10 in its python
    format (``path/cifar-10-batches-py``; :func:`skvmf.datasets.load_cifar10`,
    which runs no code from the files). The classes, in sorted folder order,
    must be the network's outputs in the same order.

    Parameters
    ----------
    path : str or path-like
        The data folder.
    data_format : {"auto", "imagefolder", "cifar10"}, default="auto"
        "auto" is :func:`detect_data_format`.
    split : str, optional
        An ImageFolder's sub-folder, or CIFAR-10's "train" or "test"
        (default "test").
    size : int, optional
        Side the images are resized to (default 32 for CIFAR-10, else 224).
    normalize : {"auto", "imagenet", "none"} or (mean, std), default="auto"
        "auto": ImageNet statistics for an image folder, the training
        statistics for CIFAR-10.

    Returns
    -------
    Dataset
        Items ``(float32 image (3, size, size), int label)`` with
        ``classes``, ``targets``, ``mean`` and ``std``.

    Raises
    ------
    ValueError
        When the folder or a file is missing or unreadable (named), or the
        data has fewer than two classes.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> from skvmf.sources import load_data
    >>> with tempfile.TemporaryDirectory() as root:
    ...     for name in ("cat", "dog"):
    ...         (pathlib.Path(root) / name).mkdir()
    ...         Image.new("RGB", (20, 20)).save(f"{root}/{name}/a.png")
    ...     data = load_data(root, size=16)
    ...     data.classes, tuple(data[0][0].shape)
    (['cat', 'dog'], (3, 16, 16))
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise ValueError(f"data folder {str(root)!r} does not exist")
    if data_format == "auto":
        data_format = detect_data_format(root)
    if data_format == "cifar10":
        return _load_cifar(root, split, size, normalize)
    if split is not None:
        root = root / split
        if not root.is_dir():
            raise ValueError(f"split folder {str(root)!r} does not exist")
    stats = {"auto": "imagenet", "imagenet": "imagenet", "none": None}
    dataset = datasets.load_image_folder(
        root,
        size=size or 224,
        normalize=stats[normalize] if isinstance(normalize, str) else normalize,
    )
    _check_classes(
        dataset, f"the image folder {str(root)!r}", "one sub-folder per class"
    )
    return dataset


def _load_cifar(root: Path, split, size, normalize):
    split = split or "test"
    if split not in ("train", "test"):
        raise ValueError(
            f"the split of CIFAR-10 must be 'train' or 'test'; got {split!r}"
        )
    stats = {
        "auto": True,
        "imagenet": (datasets.IMAGENET_MEAN, datasets.IMAGENET_STD),
        "none": False,
    }
    dataset = datasets.load_cifar10(
        root,
        split=split,
        size=size or 32,
        normalize=stats[normalize] if isinstance(normalize, str) else normalize,
    )
    _check_classes(dataset, f"CIFAR-10 in {str(root)!r}", "give more classes")
    return dataset


@validate_params(
    {
        "dataset": "no_validation",
        "n_images": [None, Interval(Integral, 1, None, closed="left")],
        "n_per_class": [None, Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def select_images(dataset, *, n_images=None, n_per_class=None, random_state=0):
    """The images an analysis uses: all, ``n_images`` at random, or
    ``n_per_class`` of every class.

    Parameters
    ----------
    dataset : Dataset
        Items ``(image, label)``.
    n_images : int, optional
        Images drawn at random (:func:`skvmf.datasets.subset_random`).
    n_per_class : int, optional
        Images drawn from every class
        (:func:`skvmf.datasets.subset_per_class`); not with ``n_images``.
    random_state : int, RandomState instance or None, default=0
        Seed of the draw.

    Returns
    -------
    Dataset
        ``dataset`` itself when neither count is given; images keep their
        order.

    Examples
    --------
    >>> from skvmf.datasets import load_digits_images
    >>> from skvmf.sources import select_images
    >>> len(select_images(load_digits_images("test"), n_per_class=3))
    30
    """
    if n_images is not None and n_per_class is not None:
        raise ValueError("give n_images or n_per_class, not both")
    if n_per_class is not None:
        return datasets.subset_per_class(
            dataset, n_per_class, random_state=random_state
        )
    if n_images is not None:
        return datasets.subset_random(dataset, n_images, random_state=random_state)
    return dataset
