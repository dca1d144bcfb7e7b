"""Checks of numeric array arguments, and an exact rescaling for extreme ones.

Shared by the numeric estimators (mixture, knowledge points, hierarchy,
prediction tree, embedding, FeatureSet). Every check raises a ``ValueError``
that names the argument; nothing is cast (complex values are refused, never
reduced to their real part) and nothing is written into the caller's array.
"""

from __future__ import annotations

import sys

import numpy as np


def check_real(x, name, *, finite=True):
    """``x`` as a real numeric array (no copy when it already is one).

    Parameters
    ----------
    x : array-like or torch.Tensor
        The argument.
    name : str
        Its name, for the error message.
    finite : bool, default=True
        Also refuse NaN and infinite values.

    Returns
    -------
    ndarray
        The values with their own real dtype (bool and integers kept).

    Raises
    ------
    ValueError
        For complex values, object or text arrays, and (``finite=True``)
        NaN or infinite values; the message names ``name``.
    """
    if hasattr(x, "is_complex") and hasattr(x, "detach"):  # a torch tensor
        if x.is_complex():
            raise ValueError(
                f"Complex data not supported: {name} must be real (got a "
                f"tensor of dtype {x.dtype})"
            )
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} must be a numeric array; got {type(x)}") from exc
    if np.iscomplexobj(arr):
        raise ValueError(
            f"Complex data not supported: {name} must be real (got dtype "
            f"{arr.dtype}). Pass the real part or the modulus explicitly."
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be numeric; got an array of dtype {arr.dtype}")
    if finite and np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = ~np.isfinite(arr)
        raise ValueError(
            f"{name} must be finite; got {arr[bad].flat[0]!r} "
            f"({int(bad.sum())} NaN or infinite value(s) in shape {arr.shape})"
        )
    return arr


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


def refuse_complex(x, name):
    """Raise a ``ValueError`` naming ``name`` if ``x`` holds complex values.

    For arguments that scikit-learn's ``validate_data`` checks afterwards
    (shape, finiteness, object arrays of numbers): it would refuse complex
    data too, but without saying which argument.
    """
    if hasattr(x, "is_complex") and hasattr(x, "detach"):  # a torch tensor
        complex_ = bool(x.is_complex())
    elif hasattr(x, "dtype") and not hasattr(x, "__array__"):  # scipy sparse
        complex_ = np.issubdtype(x.dtype, np.complexfloating)
    else:
        try:
            complex_ = np.iscomplexobj(x)
        except (TypeError, ValueError):  # ragged input: validate_data explains
            complex_ = False
    if complex_:
        # scikit-learn's own wording first, which its estimator checks expect
        raise ValueError(
            f"Complex data not supported: {name} must be real. Pass the real "
            "part or the modulus explicitly."
        )


def _is_tensor(x) -> bool:
    """Whether ``x`` is a torch tensor, without importing torch (a tensor
    can only exist once torch is loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x, dtype=None) -> np.ndarray:
    """A numpy array from a tensor (detached, on the CPU) or an array-like.

    Complex values are refused, never cast to their real part.
    """
    if _is_tensor(x):
        if x.is_complex():
            raise ValueError(f"complex input is not supported; got dtype {x.dtype}")
        out = x.detach().cpu().numpy()
    else:
        out = np.asarray(x)
        if np.iscomplexobj(out):
            raise ValueError(f"complex input is not supported; got dtype {out.dtype}")
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


def real_array(x, name: str, dtype=None) -> np.ndarray:
    """:func:`to_numpy` for the argument ``name``: complex, object and other
    non-numeric input is a ``ValueError`` naming it (never a cast)."""
    if _is_tensor(x) and x.is_complex():
        raise ValueError(f"{name} must be real numbers; got complex dtype {x.dtype}")
    try:
        out = to_numpy(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be a numeric array; got {type(x).__name__}"
        ) from exc
    if np.iscomplexobj(out):
        raise ValueError(f"{name} must be real numbers; got complex dtype {out.dtype}")
    if not (np.issubdtype(out.dtype, np.number) or out.dtype == bool):
        raise ValueError(f"{name} must be a numeric array; got dtype {out.dtype}")
    return out if dtype is None else out.astype(dtype, copy=False)
