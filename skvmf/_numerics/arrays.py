"""The one rule for numeric array arguments, and an exact rescaling for extreme ones.

:func:`real_array` owns what counts as a real array in skvmf: real numbers
(bool, integers, floats; complex values refused, never reduced to their real
part; object and text arrays refused), optionally finite, of given ranks and
not empty. Every other check of an array argument delegates to it, so one
bad input gets one answer wherever it is passed. It is duck-typed: numpy
arrays and array-likes, torch tensors (recognised without importing torch)
and arrays of any other Array API namespace (checked on their device, with
no host copy unless asked for). Every failure is a ``ValueError`` that names
the argument; nothing is written into the caller's array.
"""

from __future__ import annotations

import math
import sys

import numpy as np


def _is_tensor(x) -> bool:
    """Whether ``x`` is a torch tensor, without importing torch (a tensor
    can only exist once torch is loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _foreign_namespace(x):
    """The Array API namespace of ``x`` when it is neither numpy, a numpy
    scalar, a list nor a tensor (e.g. array-api-strict, CuPy); else None."""
    if isinstance(x, (np.ndarray, np.generic)) or not all(
        hasattr(x, attr) for attr in ("__array_namespace__", "dtype", "shape")
    ):
        return None
    try:
        return x.__array_namespace__()
    except Exception:  # noqa: BLE001 - an array-like that only claims the protocol
        return None


def _dtype_kind(x, xp=None):
    """``"complex"``, ``"real"`` (bool, integer, float) or ``"other"``, read
    from the dtype of a tensor, an ``xp`` array or a numpy array."""
    if _is_tensor(x):
        return "complex" if x.is_complex() else "real"
    if xp is not None:
        try:
            if xp.isdtype(x.dtype, "complex floating"):
                return "complex"
            if xp.isdtype(x.dtype, ("real floating", "integral", "bool")):
                return "real"
        except (TypeError, ValueError, AttributeError):
            pass
        return "other"
    dtype = np.dtype(x.dtype)
    if np.issubdtype(dtype, np.complexfloating):
        return "complex"
    if np.issubdtype(dtype, np.number) or dtype == np.bool_:
        return "real"
    return "other"


def _complex_error(name, dtype):
    # scikit-learn's opening words first: its estimator checks expect them
    return ValueError(
        f"Complex data not supported: {name} must be real numbers; got complex "
        f"dtype {dtype}. Pass the real part or the modulus explicitly (never cast)."
    )


def _numeric_error(name, what):
    return ValueError(
        f"{name} must be a numeric array; got {what} ({name} must be numeric: "
        "bool, integer or real floating point values)"
    )


def real_array(
    x,
    name: str,
    dtype=None,
    *,
    finite: bool = False,
    ndim=None,
    allow_empty: bool = True,
    host: bool = True,
):
    """``x`` checked as a real numeric array: the one rule of skvmf.

    Parameters
    ----------
    x : array-like, torch.Tensor or Array API array
        The argument.
    name : str
        Its name, for the error messages.
    dtype : dtype, optional
        Cast the checked values to ``dtype`` (a numpy dtype on the host; a
        dtype of the array's own namespace when ``host=False`` keeps it).
    finite : bool, default=False
        Also refuse NaN and infinite values.
    ndim : int or tuple of int, optional
        The allowed ranks.
    allow_empty : bool, default=True
        Accept an array without elements.
    host : bool, default=True
        Return a numpy array (tensors are detached and copied to the CPU).
        With ``False`` a tensor or an array of another Array API namespace is
        checked where it lives and returned as it is (one bool read back for
        ``finite``): under ``array_api_dispatch`` device arrays stay there.

    Returns
    -------
    ndarray, or the input's own array type when ``host=False``
        The values with their own real dtype (bool and integers kept) unless
        ``dtype`` is given.

    Raises
    ------
    ValueError
        Complex values (never cast), object or text data, ragged nested
        lists, a wrong rank, no elements (unless ``allow_empty``), and, with
        ``finite=True``, NaN or infinite values; the message names ``name``.
    """
    xp = None if _is_tensor(x) else _foreign_namespace(x)
    device_side = _is_tensor(x) or xp is not None
    if device_side:
        kind = _dtype_kind(x, xp)
        if kind == "complex":
            raise _complex_error(name, x.dtype)
        if kind != "real":
            raise _numeric_error(name, f"dtype {x.dtype}")
        if host:
            x, xp, device_side = _host_copy(x), None, False
    if not device_side:
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as exc:  # ragged nested lists and the like
            raise _numeric_error(
                name, f"{type(x).__name__} that is not one (ragged nested lists?)"
            ) from exc
        kind = _dtype_kind(x)
        if kind == "complex":
            raise _complex_error(name, x.dtype)
        if kind != "real":
            raise _numeric_error(name, f"dtype {x.dtype}")
    shape = tuple(x.shape)
    if ndim is not None and len(shape) not in np.atleast_1d(ndim):
        ranks = " or ".join(str(k) for k in np.atleast_1d(ndim))
        raise ValueError(f"{name} must have {ranks} dimensions; got shape {shape}")
    if not allow_empty and math.prod(shape) == 0:
        raise ValueError(f"{name} is empty: it has no elements (shape {shape})")
    if finite:
        _check_finite(x, name, xp)
    if dtype is not None:
        if not device_side:
            x = x.astype(dtype, copy=False)
        elif _is_tensor(x):
            x = x.to(dtype)
        else:
            x = xp.astype(x, dtype)
    return x


def _host_copy(x):
    """A numpy copy of a checked tensor or Array API array."""
    if _is_tensor(x):
        x = x.detach()
        if str(x.dtype) == "torch.bfloat16":  # numpy has no bfloat16: exact widening
            x = x.float()
        return x.cpu().numpy()
    from .._array_api import to_numpy as xp_to_numpy

    return xp_to_numpy(x)


def _check_finite(x, name, xp):
    """Refuse NaN and infinite values of a checked real array, where it lives."""
    shape = tuple(x.shape)
    if _is_tensor(x):
        if not x.is_floating_point() or bool(x.isfinite().all()):
            return
        count, first = int((~x.isfinite()).sum()), None
    elif xp is not None:
        if not xp.isdtype(x.dtype, "real floating") or bool(xp.all(xp.isfinite(x))):
            return
        count, first = int(xp.sum(xp.astype(~xp.isfinite(x), xp.int64))), None
    else:
        if not np.issubdtype(x.dtype, np.floating) or np.isfinite(x).all():
            return
        bad = ~np.isfinite(x)
        count, first = int(bad.sum()), x[bad].flat[0]
    first = "" if first is None else f", the first {first!r}"
    raise ValueError(
        f"{name} contains NaN or infinite values ({count} in shape {shape}"
        f"{first}): {name} must be finite"
    )


def refuse_empty(x, name, what="samples"):
    """Raise a ``ValueError`` naming ``name`` when ``x`` has no rows.

    Read from the shape only (lists, numpy, tensors, device and sparse
    arrays alike; nothing converted), before scikit-learn's
    ``validate_data``, whose own message does not say which argument.
    """
    shape = getattr(x, "shape", None)
    if shape is None:
        if not isinstance(x, (list, tuple)):
            return
        shape = (len(x),)
    shape = tuple(shape)
    if shape and shape[0] == 0:
        raise ValueError(
            f"{name} is empty: 0 {what} (shape {shape}); at least one is needed"
        )


def refuse_complex(x, name):
    """Raise :func:`real_array`'s ``ValueError`` if ``x`` holds complex values.

    Only that part of the rule, with nothing converted or copied: for
    arguments that scikit-learn's ``validate_data`` checks afterwards
    (shape, finiteness, object arrays of numbers, sparse matrices), which
    would refuse complex data too, but without saying which argument.
    """
    if _is_tensor(x) or _foreign_namespace(x) is not None:
        complex_ = _dtype_kind(x, None if _is_tensor(x) else _foreign_namespace(x))
        complex_ = complex_ == "complex"
    elif hasattr(x, "dtype") and not hasattr(x, "__array__"):  # scipy sparse
        complex_ = np.issubdtype(x.dtype, np.complexfloating)
    else:
        try:
            complex_ = np.iscomplexobj(x)
        except (TypeError, ValueError):  # ragged input: validate_data explains
            complex_ = False
    if complex_:
        dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
        raise _complex_error(name, dtype)


def power_of_two_scale(x):
    """The power of two ``s`` with ``max|x| / s`` in ``[0.5, 1)``; 1 for zeros.

    Dividing by ``s`` is exact (only the exponent changes, barring numbers
    that become subnormal), so features of 1e300 or 1e-200 can be brought to
    unit size before any product or norm overflows or underflows, without
    changing a direction, a cosine or a mean's direction.
    """
    arr = np.asarray(x)
    if arr.size == 0:
        return 1.0
    top = float(np.max(np.abs(arr)))
    if not (top > 0 and np.isfinite(top)):
        return 1.0
    return float(np.ldexp(1.0, int(np.frexp(top)[1])))


def to_numpy(x, dtype=None) -> np.ndarray:
    """A numpy array from a tensor (detached, on the CPU) or an array-like.

    Complex values are refused (:func:`refuse_complex`), never cast to their
    real part.
    """
    refuse_complex(x, "the input")
    out = _host_copy(x) if _is_tensor(x) else np.asarray(x)
    return out if dtype is None else out.astype(dtype, copy=False)


def safe_norm(x, dim=-1, keepdim: bool = False):
    """Euclidean norm that neither overflows nor underflows.

    Each vector is divided by its largest absolute entry before squaring and
    the norm multiplied back, so vectors of 1e300 or 1e-200 (float64) and
    1e20 (float32) get their true norm instead of ``inf`` or ``0``. Works on
    tensors and numpy arrays.
    """
    if _is_tensor(x):
        import torch  # only reached with a tensor: torch is loaded already

        scale = x.abs().amax(dim=dim, keepdim=True)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        norm = torch.linalg.vector_norm(x / safe, dim=dim, keepdim=True) * safe
        return norm if keepdim else norm.squeeze(dim)
    x = np.asarray(x)
    scale = np.max(np.abs(x), axis=dim, keepdims=True)
    safe = np.where(scale > 0, scale, 1.0)
    norm = np.linalg.norm(x / safe, axis=dim, keepdims=True) * safe
    return norm if keepdim else np.squeeze(norm, axis=dim)


def unit_rows(x, dim=-1):
    """``x`` divided by its safe norm along ``dim``; zero vectors stay zero."""
    norm = safe_norm(x, dim=dim, keepdim=True)
    if _is_tensor(x):
        import torch

        return x / torch.where(norm > 0, norm, torch.ones_like(norm))
    return x / np.where(norm > 0, norm, 1.0)
