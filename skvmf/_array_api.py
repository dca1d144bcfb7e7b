"""scikit-learn's Array API support, wrapped in one place.

The estimators follow scikit-learn's convention (SPEC section 10): with
``sklearn.set_config(array_api_dispatch=True)`` every fitted attribute and
every output stays in the namespace and on the device of ``X``; without it,
numpy in, numpy out. scikit-learn keeps the helpers that implement this
private (``sklearn.utils._array_api``), so skvmf reaches them only through
this module, which checks the scikit-learn version once and says clearly what
is missing when dispatch is asked of one that is too old.

Nothing here copies an array to the host unless its name says so
(:func:`to_numpy`, for final tables and figures only).
"""

from __future__ import annotations

import math
import os
import warnings
from contextlib import contextmanager

import numpy as np
import sklearn
from sklearn import config_context, get_config

# The lowest scikit-learn whose private Array API helpers skvmf uses
# (move_to, check_same_namespace, yield_namespace_device_dtype_combinations).
MIN_SKLEARN = (1, 9)


def _version_tuple(text):
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


SKLEARN_VERSION = _version_tuple(sklearn.__version__)
SUPPORTED = SKLEARN_VERSION >= MIN_SKLEARN

if SUPPORTED:
    from sklearn.utils import _array_api as _sk
else:  # pragma: no cover - exercised only with an old scikit-learn
    _sk = None


def _require():
    if not SUPPORTED:
        raise ImportError(
            "skvmf's Array API support (array_api_dispatch=True) needs "
            f"scikit-learn >= {'.'.join(map(str, MIN_SKLEARN))}; this is "
            f"scikit-learn {sklearn.__version__}. Upgrade scikit-learn, or turn "
            "array_api_dispatch off to compute with numpy."
        )


def dispatch_enabled() -> bool:
    """Whether ``array_api_dispatch`` is on (and supported); raises if too old."""
    if not get_config().get("array_api_dispatch", False):
        return False
    _require()
    return True


@contextmanager
def dispatch():
    """``config_context(array_api_dispatch=True)`` for skvmf's own pipelines.

    scikit-learn refuses to turn dispatch on unless ``SCIPY_ARRAY_API=1`` is
    set, because its own code may hand device arrays to scipy. skvmf never
    does (its device numerics are written against the namespace), so for the
    span of this context the variable is set when the user has not set it,
    and restored afterwards.
    """
    _require()
    previous = os.environ.get("SCIPY_ARRAY_API")
    os.environ["SCIPY_ARRAY_API"] = "1"
    try:
        with config_context(array_api_dispatch=True):
            yield
    finally:
        if previous is None:
            os.environ.pop("SCIPY_ARRAY_API", None)
        else:
            os.environ["SCIPY_ARRAY_API"] = previous


def get_namespace(*arrays):
    """``(xp, is_array_api)`` of the arrays, as scikit-learn decides it.

    Without dispatch this is scikit-learn's numpy namespace (``is_array_api``
    False) whatever the inputs are.
    """
    if not dispatch_enabled():
        return np, False
    return _sk.get_namespace(*arrays)


def get_namespace_and_device(*arrays):
    """``(xp, is_array_api, device)`` of the arrays (numpy and ``"cpu"`` when off)."""
    if not dispatch_enabled():
        return np, False, "cpu"
    return _sk.get_namespace_and_device(*arrays)


def device(*arrays):
    """The one device the arrays share; a ``ValueError`` naming both if not."""
    found = []
    for a in arrays:
        if a is None or isinstance(a, (str, list, tuple)):
            continue
        d = getattr(a, "device", "cpu")
        d = "cpu" if isinstance(a, np.ndarray) else d
        if all(str(d) != str(f) for f in found):
            found.append(d)
    if len(found) > 1:
        raise ValueError(
            f"arrays on different devices: {found[0]} and {found[1]}; move them "
            "to one device first"
        )
    return found[0] if found else "cpu"


def is_numpy(xp) -> bool:
    """Whether ``xp`` is numpy (or scikit-learn's numpy wrapper)."""
    if xp is np:
        return True
    if SUPPORTED:
        return bool(_sk._is_numpy_namespace(xp))
    return "numpy" in getattr(xp, "__name__", "")


def is_torch(xp) -> bool:
    """Whether ``xp`` is torch (array-api-compat's wrapper included)."""
    return getattr(xp, "__name__", "").split(".")[-1] == "torch"


def torch_namespace():
    """The Array API namespace of torch tensors (array-api-compat's wrapper,
    as scikit-learn's ``get_namespace`` returns it), with or without dispatch."""
    from sklearn.externals.array_api_compat import torch as xp_torch

    return xp_torch


def move_to(*arrays, xp, device):
    """scikit-learn's ``move_to``: each array into ``xp`` on ``device``."""
    _require()
    return _sk.move_to(*arrays, xp=xp, device=device)


def to_numpy(array):
    """A host numpy copy of any array (final tables and figures only)."""
    if array is None or isinstance(array, np.ndarray):
        return array
    if hasattr(array, "detach"):  # torch, with or without dispatch
        return array.detach().cpu().numpy()
    if SUPPORTED and not isinstance(array, (list, tuple, int, float)):
        try:
            return _sk.move_to(array, xp=np, device="cpu")
        except Exception:  # noqa: BLE001 - fall back to numpy's protocol
            pass
    return np.asarray(array)


def check_same_namespace(X, estimator, *, attribute, method):
    """Refuse ``X`` in another namespace or device than the fit's attribute.

    scikit-learn's own check (and message, naming both) when dispatch is on;
    nothing to do without it.
    """
    if not dispatch_enabled():
        return
    _sk.check_same_namespace(X, estimator, attribute=attribute, method=method)


def max_float_dtype(xp, device):
    """The widest float dtype ``device`` has (float32 on, e.g., Apple's MPS)."""
    if is_numpy(xp):
        return xp.float64
    return _sk._max_precision_float_dtype(xp, device)


def float_dtype(xp, device, *, name="the computation"):
    """float64 where ``device`` has it; otherwise float32, with a warning."""
    widest = max_float_dtype(xp, device)
    if widest != xp.float64:
        warnings.warn(
            f"device {device} has no float64: {name} falls back to float32",
            UserWarning,
            stacklevel=3,
        )
    return widest


def logsumexp(a, axis, xp):
    """``log(sum(exp(a), axis))`` in the namespace, without overflow."""
    top = xp.max(a, axis=axis, keepdims=True)
    top = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    out = xp.log(xp.sum(xp.exp(a - top), axis=axis, keepdims=True)) + top
    return xp.squeeze(out, axis=axis)


def size(x) -> int:
    """Number of elements of an array of any namespace."""
    return math.prod(int(n) for n in x.shape)


def namespace_name(xp) -> str:
    """A short name for messages ("numpy", "torch", "array_api_strict")."""
    name = getattr(xp, "__name__", str(xp))
    for short in ("array_api_strict", "torch", "cupy", "numpy"):
        if short in name:
            return short
    return name
