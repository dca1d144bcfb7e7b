"""Input checks shared by the importance weights (SPEC 4) and the regional
aligner (SPEC 5): regional features, image indices, channel weights and the
scalar settings that depend on the data (candidate counts, kappa_m).

Every check raises a ``ValueError`` that names the argument; nothing is cast
from complex, and nothing non-finite gets through.
"""

from __future__ import annotations

import numpy as np
import torch

from .._array_api import torch_namespace
from .._kernels.matching import MAX_REGIONS
from .._numerics.arrays import real_array
from .._numerics.soft_labels import check_soft_labels_xp
from .._torch.devices import resolve_device

_DTYPE = torch.float32
# kappa_m = 1000 is the reference's value for K = 512 channels (SPEC 4)
_KAPPA_M_REFERENCE, _KAPPA_M_CHANNELS = 1000.0, 512


def is_tensor(x) -> bool:
    return isinstance(x, torch.Tensor)


def compute_device(device, data) -> torch.device:
    """``device``, or the device of a tensor ``data`` when it is None."""
    if device is None and is_tensor(data):
        device = data.device
    return resolve_device(device)


def refuse_sparse(x, name: str) -> None:
    sparse_tensor = is_tensor(x) and x.layout != torch.strided
    if sparse_tensor or (not is_tensor(x) and hasattr(x, "toarray")):
        raise ValueError(
            f"{name}: sparse input is not supported; give a dense array of "
            "shape (n_images, n_regions, n_channels)"
        )


def _as_tensor(features, device, name: str) -> torch.Tensor:
    """A real float tensor on ``device``: torch input keeps a floating dtype
    (float64 stays float64); anything else becomes float32."""
    if is_tensor(features):
        t = real_array(features, name, host=False).detach()
        if not t.is_floating_point():
            t = t.to(_DTYPE)
        return t.to(device)
    arr = real_array(features, name)
    # contiguous: torch refuses negative strides (reversed views); a copy
    # when read-only (memmaps, joblib's shared arrays), which torch refuses
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.as_tensor(arr, device=device)


def regions_tensor(features, device, name="features", min_regions=1) -> torch.Tensor:
    """Regional features as a finite float tensor (N, R, K) on ``device``."""
    refuse_sparse(features, name)
    t = _as_tensor(features, device, name)
    if t.dim() != 3:
        raise ValueError(
            f"{name} must have shape (n_images, n_regions, n_channels); "
            f"got shape {tuple(t.shape)}"
        )
    n_images, n_regions, n_channels = t.shape
    if n_images == 0 or n_channels == 0:
        raise ValueError(f"{name} is empty; got shape {tuple(t.shape)}")
    if n_regions < min_regions:
        raise ValueError(
            f"{name} has {n_regions} region(s) per image; at least {min_regions} are "
            f"needed (with a single region there is nothing to align or count); "
            f"got shape {tuple(t.shape)}"
        )
    if n_regions > MAX_REGIONS:
        raise ValueError(
            f"{name} has {n_regions} regions per image; region indices are stored as "
            f"int16, so at most {MAX_REGIONS} are supported"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def finite_matrix(x, name: str, dtype=np.float64) -> np.ndarray:
    """A finite real 2-D array (``g``, soft labels are checked elsewhere)."""
    arr = real_array(x, name, dtype=dtype)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    # torch refuses read-only memory (memmaps, joblib's shared arrays)
    return arr if arr.flags.writeable else arr.copy()


def channel_weights_tensor(channel_weights, like: torch.Tensor, anchors):
    """Channel weights (N, K) or (K,) of the images of ``like`` (N, R, K) as
    a finite non-negative tensor of the anchors' rows (A, K)."""
    N, _, K = like.shape
    name = "channel_weights"
    if is_tensor(channel_weights):
        v = real_array(channel_weights, name, host=False).detach()
        v = v.to(like.device, like.dtype)
    else:
        v = torch.as_tensor(
            real_array(channel_weights, name, dtype=np.float64),
            dtype=like.dtype,
            device=like.device,
        )
    if v.dim() == 1:
        v = v[None, :].expand(N, -1)
    if v.dim() != 2 or v.shape != (N, K):
        raise ValueError(
            f"{name} must have shape (N, K) = ({N}, {K}) or (K,); got {tuple(v.shape)}"
        )
    if not bool(torch.isfinite(v).all()) or bool((v < 0).any()):
        raise ValueError(f"{name} must be finite and non-negative")
    return v.index_select(0, anchors)


def index_tensor(x, name: str, device, n_images: int) -> torch.Tensor:
    """Integer indices into N images as an int64 tensor, range-checked."""
    arr = real_array(x, name)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer image indices; got {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= n_images):
        bad = arr.min() if arr.min() < 0 else arr.max()
        raise ValueError(
            f"{name} holds the index {int(bad)}, outside [0, {n_images}) images"
        )
    return torch.as_tensor(arr.astype(np.int64), device=device)


def anchors_and_candidates(anchors, candidates, n_images: int, device):
    """Validated anchors (A,) and candidates (A, n) or None."""
    if anchors is None:
        a = torch.arange(n_images, device=device)
    else:
        a = index_tensor(anchors, "anchors", device, n_images)
        if a.dim() != 1:
            raise ValueError(f"anchors must be 1-D; got shape {tuple(a.shape)}")
    if candidates is None:
        return a, None
    c = index_tensor(candidates, "candidates", device, n_images)
    if c.dim() != 2 or c.shape[0] != a.shape[0]:
        raise ValueError(
            f"candidates must have shape (n_anchors, n_candidates) = "
            f"({a.shape[0]}, n); got {tuple(c.shape)}"
        )
    if c.shape[1] == 0:
        raise ValueError("candidates has no columns: every anchor needs candidates")
    if bool((c == a[:, None]).any()):
        row = int(torch.nonzero((c == a[:, None]).any(dim=1))[0])
        raise ValueError(
            f"candidates of anchor {int(a[row])} (row {row}) include the anchor "
            "itself; candidate sets S_i exclude i"
        )
    return a, c


def candidate_count(n_candidates: int, n_images: int) -> int:
    """``n_candidates`` (already a positive int), checked against N images."""
    if n_images < 2:
        raise ValueError(f"at least 2 images are needed; got {n_images}")
    if n_candidates > n_images - 1:
        raise ValueError(
            f"n_candidates={n_candidates} but there are only {n_images - 1} other "
            f"images per anchor (n_images={n_images}); use n_candidates <= "
            f"{n_images - 1}"
        )
    return int(n_candidates)


def resolve_kappa_m(kappa_m, n_channels: int) -> float:
    """kappa_m, with ``"auto"`` = 1000 K / 512 (the reference's 1000 at K = 512).

    With uniform channel weights the match score is about cos / K, so this
    keeps ``kappa_m s`` near ``2 cos`` at every channel count (SPEC 4 [D]).
    The value itself is validated by the caller's parameter constraints.
    """
    if isinstance(kappa_m, str):
        return _KAPPA_M_REFERENCE * n_channels / _KAPPA_M_CHANNELS
    return float(kappa_m)


# ---------------------------------------------------------------------------
# tensors that stay on their device (scikit-learn's Array API dispatch)
# ---------------------------------------------------------------------------
def _numeric_tensor(x, name: str) -> torch.Tensor:
    """``x`` as a detached real tensor: complex, non-numeric and sparse input
    is a ``ValueError`` naming ``name`` (never a cast)."""
    if not is_tensor(x):
        raise ValueError(f"{name} must be a tensor here; got {type(x).__name__}")
    if x.layout != torch.strided:
        raise ValueError(f"{name}: sparse input is not supported; give a dense array")
    return real_array(x, name, host=False).detach()


def _first_bad_row(bad: torch.Tensor) -> int:
    """Index of the first row of a boolean (N, C) tensor holding a True."""
    return int(torch.nonzero(bad.any(dim=1))[0, 0])


def finite_matrix_tensor(x, name: str, dtype: torch.dtype) -> torch.Tensor:
    """:func:`finite_matrix` for a tensor, on its device: a finite real 2-D
    tensor of ``dtype`` (nothing is copied to the host)."""
    t = _numeric_tensor(x, name)
    if t.dim() != 2:
        raise ValueError(f"{name} must be a 2-D array; got shape {tuple(t.shape)}")
    t = t.to(dtype)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def soft_labels_tensor(
    P, *, n_samples, from_logits, temperature, name, dtype
) -> torch.Tensor:
    """:func:`skvmf._numerics.soft_labels.check_soft_labels` for a tensor, on its
    device, in ``dtype`` (float64 where the device has it): the shared
    namespace check (:func:`~skvmf._numerics.soft_labels.check_soft_labels_xp`), with
    the same checks and messages and no host copy."""
    t = _numeric_tensor(P, name)
    if t.dim() != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_classes); "
            f"got shape {tuple(t.shape)}"
        )
    checked = check_soft_labels_xp(
        t,
        torch_namespace(),
        t.device,
        n_samples=n_samples,
        from_logits=from_logits,
        temperature=temperature,
        name=name,
    )
    return checked.to(dtype)
