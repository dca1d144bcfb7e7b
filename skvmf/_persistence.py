"""Pickling of fitted estimators whose attributes live on a device.

Under ``array_api_dispatch`` a fitted estimator holds its learned arrays in
the namespace and on the device of its training data (SPEC section 10): torch
tensors on a GPU, array-api-strict arrays on one of its devices. Pickle
(and so joblib) would store a CUDA tensor by its storage, and loading it on
a machine without CUDA fails deep inside torch with a message that names
neither the estimator nor a way out.

:class:`DevicePicklingMixin` stores each such array as a portable
:class:`_DeviceRecord` instead (a host numpy copy plus the namespace, device
and dtype to rebuild it with) and rebuilds it on the recorded device when
loaded, or raises :class:`DeviceUnavailableError` naming the attribute, the
device and the two ways out: :func:`skvmf.devices.map_device` at load time,
or :func:`skvmf.devices.move_estimator` before saving.

numpy arrays (and memmaps) are left to pickle as they are, so an estimator
fitted without dispatch pickles exactly as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib

import numpy as np

from skvmf import _array_api

# Containers searched for arrays: per-layer dicts, lists of curves ...
# (exact types only: a namedtuple or another subclass is left alone).
_CONTAINERS = (dict, list, tuple)
_MAX_DEPTH = 3

# (device, namespace) that records are rebuilt on instead of their own:
# set by skvmf.devices.map_device for the span of a load
_LOAD_TARGET = contextvars.ContextVar("skvmf_load_target", default=None)


class DeviceUnavailableError(RuntimeError):
    """A pickled estimator's arrays live on a device this machine lacks."""


def _is_torch(value) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _is_device_array(value) -> bool:
    """An array that is not numpy: a torch tensor or any Array API array."""
    if value is None or isinstance(value, (np.ndarray, np.generic)):
        return False
    if _is_torch(value):
        return True
    # an array has a dtype and a device; a container that declares a
    # namespace (skvmf's FeatureSet) has no dtype and pickles as it is
    return all(
        hasattr(value, name) for name in ("__array_namespace__", "dtype", "device")
    )


def _record_device(array) -> str:
    """The device of ``array`` as a string (``"cuda:0"``, ``"device1"``)."""
    dev = array.device
    if _is_torch(array):
        return str(dev)
    # array-api-strict's Device reprs as "array_api_strict.Device('device1')"
    return str(getattr(dev, "_device", dev))


class _DeviceRecord:
    """A portable stand-in for one device array in a pickle.

    Attributes
    ----------
    data : ndarray
        A host copy of the values (float32 for a dtype numpy lacks, such as
        torch's bfloat16; ``dtype`` restores it).
    namespace : str
        ``"torch"`` or the module of another Array API namespace
        (``"array_api_strict"``).
    device : str
        Where the array lived (``"cuda:0"``, ``"cpu"``, ``"device1"``).
    dtype : str
        The array's dtype name in its namespace (``"float32"``).
    requires_grad : bool
        torch only: whether the tensor required gradients.
    """

    __slots__ = ("data", "namespace", "device", "dtype", "requires_grad")

    def __init__(self, data, namespace, device, dtype, requires_grad=False):
        self.data = data
        self.namespace = namespace
        self.device = device
        self.dtype = dtype
        self.requires_grad = requires_grad

    def __getstate__(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state):
        for name in self.__slots__:
            setattr(self, name, state.get(name))

    def __repr__(self):
        return (
            f"_DeviceRecord({self.namespace}, device={self.device!r}, "
            f"dtype={self.dtype}, shape={self.data.shape})"
        )


def pack(array) -> _DeviceRecord:
    """The portable record of one device array (a host copy is made)."""
    if _is_torch(array):
        import torch

        host = array.detach().to("cpu")
        if host.dtype in (torch.bfloat16,) or str(host.dtype).startswith(
            "torch.float8"
        ):
            host = host.float()  # numpy has no such dtype
        return _DeviceRecord(
            host.numpy().copy(),
            "torch",
            _record_device(array),
            str(array.dtype).removeprefix("torch."),
            bool(array.requires_grad),
        )
    xp = array.__array_namespace__()
    name = getattr(xp, "__name__", type(array).__module__.split(".")[0])
    return _DeviceRecord(
        np.array(_array_api.to_numpy(array), copy=True),
        name,
        _record_device(array),
        _dtype_name(array.dtype),
    )


def _dtype_name(dtype) -> str:
    text = str(dtype)
    for prefix in ("torch.", "array_api_strict."):
        text = text.removeprefix(prefix)
    return text


def torch_device_problem(device) -> str | None:
    """Why torch cannot use ``device`` here, or None when it can."""
    import torch

    dev = torch.device(device)
    if dev.type == "cpu" or dev.type == "meta":
        return None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return "torch.cuda.is_available() is False on this machine"
        count = torch.cuda.device_count()
        if (dev.index or 0) >= count:
            return f"this machine has {count} CUDA device(s)"
        return None
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return "torch.backends.mps.is_available() is False on this machine"
        return None
    try:
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        return f"torch cannot allocate on it ({exc})"
    return None


def _unavailable(where: str, record: _DeviceRecord, why: str):
    return DeviceUnavailableError(
        f"{where} was saved on device {record.device!r} ({record.namespace}), "
        f"which is not available: {why}. Load it onto another device with "
        "`with skvmf.devices.map_device('cpu'): joblib.load(path)`, or move the "
        "fitted estimator before saving it with "
        "skvmf.devices.move_estimator(estimator, 'cpu') (or namespace='numpy')"
    )


def _namespace_module(name: str):
    """The Array API namespace of a record (array-api-compat's wrappers
    for libraries that are not namespaces themselves)."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        module = None
    if module is not None and hasattr(module, "__array_namespace_info__"):
        return module
    try:
        return importlib.import_module(f"sklearn.externals.array_api_compat.{name}")
    except ImportError:
        if module is None:
            raise
        return module


def _find_device(xp, name: str):
    """The device object of namespace ``xp`` whose name is ``name``."""
    info = getattr(xp, "__array_namespace_info__", None)
    devices = list(info().devices()) if info is not None else []
    for dev in devices:
        if name in (str(dev), str(getattr(dev, "_device", dev))):
            return dev
    return None


def unpack(record: _DeviceRecord, where: str):
    """The array of ``record``, rebuilt on its device (or the load target)."""
    target = _LOAD_TARGET.get()
    namespace, device = record.namespace, record.device
    if target is not None:
        device = target[0]
        namespace = target[1] or namespace
    if namespace == "numpy":
        return np.array(record.data, dtype=_numpy_dtype(record), copy=True)
    if namespace == "torch":
        import torch

        why = torch_device_problem(device)
        if why is not None:
            shown = _DeviceRecord(record.data, "torch", str(device), record.dtype)
            raise _unavailable(where, shown, why)
        dtype = getattr(torch, record.dtype)
        if torch.device(device).type == "mps" and dtype == torch.float64:
            dtype = torch.float32  # MPS has no float64
        tensor = torch.from_numpy(np.array(record.data, copy=True))
        tensor = tensor.to(device=device, dtype=dtype)
        if record.requires_grad:
            tensor.requires_grad_(True)
        return tensor
    try:
        xp = _namespace_module(namespace)
    except ImportError as exc:
        shown = _DeviceRecord(record.data, namespace, str(device), record.dtype)
        raise _unavailable(where, shown, f"{namespace} is not installed") from exc
    dev = device if not isinstance(device, str) else _find_device(xp, device)
    if dev is None and str(device) == "cpu":
        dev = xp.__array_namespace_info__().default_device()  # the host device
    if dev is None:
        shown = _DeviceRecord(record.data, namespace, str(device), record.dtype)
        raise _unavailable(where, shown, f"{namespace} has no such device here")
    return xp.asarray(record.data, dtype=getattr(xp, record.dtype), device=dev)


def _numpy_dtype(record):
    try:
        return np.dtype(record.dtype)
    except TypeError:
        return record.data.dtype  # bfloat16 and the like: the host copy's


def _map(value, fn, depth=0):
    """``fn`` applied to every device array or record in ``value`` (nested
    plain dicts, lists and tuples up to ``_MAX_DEPTH`` levels)."""
    if type(value) in _CONTAINERS and depth < _MAX_DEPTH:
        if isinstance(value, dict):
            items = {k: _map(v, fn, depth + 1) for k, v in value.items()}
            same = all(items[k] is value[k] for k in value)
            return value if same else items
        items = [_map(v, fn, depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        return type(value)(items)
    return fn(value)


def pack_state(state: dict) -> dict:
    """A copy of ``state`` with every device array replaced by its record."""

    def one(value):
        return pack(value) if _is_device_array(value) else value

    return {key: _map(value, one) for key, value in state.items()}


def unpack_state(state: dict, owner: str) -> dict:
    """A copy of ``state`` with every record rebuilt as its array."""
    out = {}
    for key, value in state.items():
        where = f"{owner}.{key}"

        def one(item, where=where):
            return unpack(item, where) if isinstance(item, _DeviceRecord) else item

        out[key] = _map(value, one)
    return out


@contextlib.contextmanager
def load_target(device, namespace=None):
    """Rebuild every record loaded in the block on ``device`` (in
    ``namespace``, default each record's own)."""
    token = _LOAD_TARGET.set((device, namespace))
    try:
        yield
    finally:
        _LOAD_TARGET.reset(token)


class DevicePicklingMixin:
    """Pickle device arrays (torch tensors, Array API arrays) portably.

    Fitted attributes that are device arrays, also inside plain dicts, lists
    and tuples (per-layer dicts), are stored as host copies with their
    namespace, device and dtype, and rebuilt on that device when loaded; a
    device the loading machine lacks is a :class:`DeviceUnavailableError`
    naming the attribute, the device and how to load or move it. numpy
    attributes pickle as before.

    Put it first among the bases, before scikit-learn's mixins and
    ``BaseEstimator``, so that ``BaseEstimator``'s own ``__getstate__`` /
    ``__setstate__`` (scikit-learn's version tag) still run, after it::

        class SampleProjector(DevicePicklingMixin, TransformerMixin, BaseEstimator)
    """

    def __getstate__(self):
        parent = super()
        if hasattr(parent, "__getstate__"):
            state = parent.__getstate__()
        else:  # pragma: no cover - object has __getstate__ since Python 3.11
            state = self.__dict__
        # BaseEstimator may return self.__dict__ itself: build a new dict
        return pack_state(dict(state))

    def __setstate__(self, state):
        state = unpack_state(dict(state), type(self).__name__)
        parent = super()
        if hasattr(parent, "__setstate__"):
            parent.__setstate__(state)
        else:  # pragma: no cover - BaseEstimator defines it
            self.__dict__.update(state)
