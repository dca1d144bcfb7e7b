"""Move fitted estimators and features between devices and array libraries.

Under scikit-learn's ``array_api_dispatch`` the estimators of skvmf keep
their fitted arrays in the namespace and on the device of their training
data ("everything follows X", SPEC section 10): an analysis fitted on torch
tensors on a GPU holds tensors on that GPU. This module moves such an
estimator, a whole :class:`~sklearn.pipeline.Pipeline` of them or a
:class:`~skvmf.FeatureSet` to another device or library in one call
(:func:`move_estimator`), and loads a saved estimator onto another device
than the one it was saved from (:func:`map_device`).

Persistence
-----------
``joblib.dump`` / ``pickle`` store a fitted estimator's device arrays as
host copies plus their library, device and dtype; ``joblib.load`` rebuilds
them on the same device. Loading where that device does not exist (a CUDA
fit loaded on a laptop) raises :class:`DeviceUnavailableError`, which names
the attribute and the device; then either load it elsewhere::

    with skvmf.devices.map_device("cpu"):
        estimator = joblib.load("fitted.joblib")

or move it before saving::

    joblib.dump(skvmf.devices.move_estimator(estimator, "cpu"), "fitted.joblib")
"""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np

from skvmf import _array_api
from skvmf._persistence import (
    DeviceUnavailableError,
    load_target,
    torch_device_problem,
)

__all__ = ["DeviceUnavailableError", "map_device", "move_estimator"]

# FeatureSet fields that are features (host labels ``classes`` and
# ``image_ids`` stay where they are)
_FEATURE_FIELDS = ("sample", "logits", "soft_labels", "g", "directions", "priors")
_FEATURE_MAPS = ("regions", "h")


def _is_array(value) -> bool:
    from skvmf.features import FeatureSet

    if isinstance(value, np.ndarray):
        return True
    if isinstance(value, FeatureSet):
        return False  # a container of arrays, moved field by field
    if isinstance(value, (str, bytes, type, np.generic)) or value is None:
        return False  # numpy scalars (counts, ...) stay Python-like scalars
    return hasattr(value, "__dlpack__") or hasattr(value, "__array_namespace__")


def _namespace(name):
    """An Array API namespace from a name (``"numpy"``, ``"torch"``,
    ``"array_api_strict"``) or a module."""
    if not isinstance(name, str):
        return name
    if name == "numpy":
        return np
    if name == "torch":
        # the wrapper scikit-learn's get_namespace returns for tensors
        from sklearn.externals.array_api_compat import torch as xp_torch

        return xp_torch
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ValueError(
            f"namespace={name!r} is not an installed array library"
        ) from exc
    if hasattr(module, "__array_namespace_info__"):
        return module
    try:
        return importlib.import_module(f"sklearn.externals.array_api_compat.{name}")
    except ImportError:
        return module


def _arrays_of(value, found, depth=0):
    """Collect the first arrays of an estimator, FeatureSet or container."""
    from skvmf.features import FeatureSet

    if len(found) > 8 or depth > 4:
        return found
    if _is_array(value):
        found.append(value)
    elif isinstance(value, FeatureSet):
        for name in _FEATURE_FIELDS:
            if getattr(value, name) is not None:
                found.append(getattr(value, name))
        for name in _FEATURE_MAPS:
            found.extend(getattr(value, name).values())
    elif type(value) is dict:
        for item in value.values():
            _arrays_of(item, found, depth + 1)
    elif type(value) in (list, tuple):
        for item in value:
            _arrays_of(item, found, depth + 1)
    elif hasattr(value, "get_params") and not isinstance(value, type):
        for item in vars(value).values():
            _arrays_of(item, found, depth + 1)
    return found


def _own_namespace(obj):
    """The namespace of ``obj``'s first array that is not numpy (numpy if
    every array is)."""
    for array in _arrays_of(obj, []):
        if not isinstance(array, np.ndarray):
            with _array_api.dispatch():
                xp, _ = _array_api.get_namespace(array)
            return xp
    return np


def _device(xp, device):
    """``device`` as ``xp`` names it, refused clearly when it is absent."""
    if _array_api.is_numpy(xp):
        if str(device) != "cpu":
            raise ValueError(
                f"numpy arrays live on the 'cpu' only; got device={device!r} "
                "(give namespace='torch' to move to a GPU)"
            )
        return "cpu"
    if _array_api.is_torch(xp):
        import torch

        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(
                f"device={device!r} is not a torch device ('cpu', 'cuda:0', ...)"
            ) from exc
        why = torch_device_problem(dev)
        if why is not None:
            raise DeviceUnavailableError(f"device {str(dev)!r} is not available: {why}")
        return dev
    if not isinstance(device, str):
        return device
    info = xp.__array_namespace_info__()
    for dev in info.devices():
        if device in (str(dev), str(getattr(dev, "_device", dev))):
            return dev
    if device == "cpu":
        return info.default_device()
    names = [str(getattr(d, "_device", d)) for d in info.devices()]
    raise DeviceUnavailableError(
        f"{_array_api.namespace_name(xp)} has no device {device!r}; its devices "
        f"are {names}"
    )


def _convert(value, move, depth=0):
    """``value`` with every array moved by ``move`` (estimators cloned,
    FeatureSets replaced, plain containers rebuilt; the rest unchanged)."""
    from sklearn.base import clone

    from skvmf.features import FeatureSet

    if _is_array(value):
        return move(value)
    if depth > 6:
        return value
    if isinstance(value, FeatureSet):
        changes = {
            name: move(getattr(value, name))
            for name in _FEATURE_FIELDS
            if getattr(value, name) is not None
        }
        for name in _FEATURE_MAPS:
            changes[name] = {k: move(v) for k, v in getattr(value, name).items()}
        return dataclasses.replace(value, **changes)
    if type(value) is dict:
        return {k: _convert(v, move, depth + 1) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_convert(v, move, depth + 1) for v in value)
    if hasattr(value, "get_params") and not isinstance(value, type):
        new = clone(value)
        for key, attribute in vars(value).items():
            setattr(new, key, _convert(attribute, move, depth + 1))
        return new
    return value


def move_estimator(estimator, device, *, namespace=None):
    """A copy of a fitted estimator (or FeatureSet) with its arrays moved.

    scikit-learn's semantics of moving a fitted estimator between devices:
    the estimator is cloned and every array attribute of the original,
    also inside per-layer dicts, lists and tuples and inside nested
    estimators (a :class:`~sklearn.pipeline.Pipeline`'s steps), is moved
    to ``device`` in ``namespace``; other attributes are shared with the
    original, which is left unchanged. A :class:`~skvmf.FeatureSet` has its
    feature fields moved (``classes`` and ``image_ids``, host labels, stay).

    Use it to save a GPU fit for a machine without that GPU, to predict
    on another device than the one fitted on (the estimators refuse input
    from another namespace or device than their fit's, naming both), or to
    get plain numpy attributes (``namespace="numpy"``) for code that reads
    them. float64 arrays moved to a device without float64 become float32.
    A :class:`~skvmf.TorchFeatureExtractor` is copied with its model where
    it is: its ``device`` parameter says where the model runs.

    Parameters
    ----------
    estimator : estimator, Pipeline or FeatureSet
        A fitted estimator (its fitted arrays in any Array API namespace).
    device : str or device
        Where to: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``,
        or a device of another library (``"device1"`` of array-api-strict).
    namespace : str or module, optional
        The array library: ``"numpy"``, ``"torch"``, ``"array_api_strict"``
        or a namespace module. Default: the library of the estimator's
        arrays (numpy when all are numpy).

    Returns
    -------
    moved : same type as ``estimator``
        The copy, its arrays on ``device`` in ``namespace``.

    Raises
    ------
    DeviceUnavailableError
        When the device does not exist on this machine.
    ValueError
        When ``namespace`` is not installed, or numpy is asked for a device
        other than the CPU.

    Examples
    --------
    >>> import numpy as np, torch, sklearn
    >>> from skvmf import FeatureSet
    >>> from skvmf.devices import move_estimator
    >>> fs = FeatureSet(logits=np.zeros((2, 3)))
    >>> on_torch = move_estimator(fs, "cpu", namespace="torch")
    >>> type(on_torch.logits).__name__, on_torch.logits.device
    ('Tensor', device(type='cpu'))
    >>> type(move_estimator(on_torch, "cpu", namespace="numpy").logits).__name__
    'ndarray'

    A fitted estimator moves the same way; on a GPU machine
    ``move_estimator(fitted, "cuda")`` gives a copy whose tensors live
    there:

    >>> from sklearn.preprocessing import StandardScaler
    >>> scaler = StandardScaler().fit(np.arange(6.0).reshape(3, 2))
    >>> move_estimator(scaler, "cpu", namespace="torch").mean_
    tensor([2., 3.], dtype=torch.float64)
    """
    xp = _namespace(namespace) if namespace is not None else _own_namespace(estimator)
    dev = _device(xp, device)

    def move(array):
        if hasattr(array, "detach") and hasattr(array, "requires_grad"):
            # a torch tensor: gradients do not travel, and numpy cannot hold
            # bfloat16 or float8 (float32 holds their values exactly)
            array = array.detach()
            narrow = array.element_size() < 2 or str(array.dtype) == "torch.bfloat16"
            if _array_api.is_numpy(xp) and array.is_floating_point() and narrow:
                array = array.float()
        with _array_api.dispatch():
            return _array_api.move_to(array, xp=xp, device=dev)

    return _convert(estimator, move)


def map_device(device, *, namespace=None):
    """Context manager: estimators loaded inside it rebuild their arrays
    on ``device`` (torch's ``map_location`` for skvmf's pickles).

    A fitted estimator saved with its arrays on a device (see the module's
    Persistence section) is rebuilt on that device when loaded; inside this
    context its arrays are rebuilt on ``device`` instead, e.g. a CUDA fit on
    a machine without CUDA.

    Parameters
    ----------
    device : str or device
        Where the loaded arrays go: ``"cpu"``, ``"cuda:0"``, or a device of
        the arrays' library (``"device1"`` of array-api-strict).
    namespace : {"numpy", "torch", ...}, optional
        Also change library (``"numpy"``: plain arrays on the host);
        default each array's own.

    Returns
    -------
    context manager

    Examples
    --------
    A projector fitted on a GPU and saved there, loaded on a laptop:

    >>> import joblib
    >>> from skvmf.devices import map_device
    >>> with map_device("cpu"):  # doctest: +SKIP
    ...     projector = joblib.load("projector_fitted_on_cuda.joblib")
    >>> projector.components_.device  # doctest: +SKIP
    device(type='cpu')
    """
    return load_target(device, namespace)
