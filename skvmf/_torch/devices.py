"""Devices, dtypes and seeds of the private torch layer: one place that turns
a user's ``device``, ``dtype`` or ``random_state`` into torch's."""

from __future__ import annotations

import numpy as np
import torch


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Return a ``torch.device``; refuse CUDA clearly when it is absent.

    ``None`` means the CPU. Asking for ``"cuda"`` on a machine without a
    usable GPU is a ``ValueError`` rather than a crash deep inside torch.
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'cpu', 'cuda', 'cuda:N' or a torch.device; got {device!r}"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this "
            "machine; use device='cpu'"
        )
    return dev


def resolve_dtype(dtype) -> torch.dtype:
    """Map ``"float32"``, ``np.float64``, ``torch.float16`` ... to a torch dtype."""
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating point type; got {dtype}")
        return dtype
    try:
        np_dtype = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype must be a floating point type; got {dtype!r}") from exc
    mapping = {
        np.dtype(np.float16): torch.float16,
        np.dtype(np.float32): torch.float32,
        np.dtype(np.float64): torch.float64,
    }
    if np_dtype not in mapping:
        raise ValueError(f"dtype must be a floating point type; got {dtype!r}")
    return mapping[np_dtype]


def torch_generator(
    random_state, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A ``torch.Generator`` seeded from a scikit-learn style ``random_state``."""
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.randint(0, 2**31 - 1)))
    return gen


def seed_of(random_state) -> int | None:
    """An integer seed for ``torch.manual_seed`` from a ``random_state``.

    None stays None (no seeding); a non-negative int is its own seed; a
    ``RandomState`` instance draws one.
    """
    if random_state is None:
        return None
    if isinstance(random_state, (int, np.integer)) and not isinstance(
        random_state, bool
    ):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative; got {random_state}")
        return int(random_state)
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(0, 2**31 - 1))
