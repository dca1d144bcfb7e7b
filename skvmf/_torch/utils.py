"""Devices, dtypes, seeds, ``to_numpy``, overflow-safe norms and the one
momentum-SGD step of the private torch layer (see ``skvmf._torch``)."""

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


class MomentumSGD:
    """``torch.optim.SGD``'s update (momentum, weight decay, no dampening,
    no Nesterov) for one tensor, without the optimizer's per-step dispatch
    overhead, which dominated loops of thousands of tiny steps.

    ``p <- p - lr * b`` with ``b <- momentum * b + (grad + weight_decay * p)``
    and ``b = grad + weight_decay * p`` on the first step, as torch does.
    """

    def __init__(
        self, param: torch.Tensor, *, lr: float, momentum: float, weight_decay: float
    ):
        self.param = param
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffer = None

    def step(self) -> None:
        p = self.param
        with torch.no_grad():
            grad = (
                p.grad.add(p, alpha=self.weight_decay) if self.weight_decay else p.grad
            )
            if self.buffer is None:
                self.buffer = grad.clone()
            else:
                self.buffer.mul_(self.momentum).add_(grad)
            p.sub_(self.buffer, alpha=self.lr)
        p.grad = None


def to_numpy(x, dtype=None) -> np.ndarray:
    """A numpy array from a tensor (detached, on the CPU) or an array-like.

    Complex values are refused, never cast to their real part.
    """
    if isinstance(x, torch.Tensor):
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
    if isinstance(x, torch.Tensor):
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
    if isinstance(x, torch.Tensor):
        return x / torch.where(norm > 0, norm, torch.ones_like(norm))
    return x / np.where(norm > 0, norm, 1.0)


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


class RowMomentumSGD(MomentumSGD):
    """:class:`MomentumSGD`'s update for the rows of a matrix of independent
    problems, each row with its own step size.

    ``step_rows`` moves a block of rows from a given point (which need not be
    the stored parameter: a refused step restarts from an earlier point) and
    returns the moved rows without writing them; ``forget`` drops the momentum
    of chosen rows. The buffer starts at zero, so a row's first step is
    ``b = grad + weight_decay * point``, as :meth:`MomentumSGD.step`'s.
    """

    def __init__(self, param: torch.Tensor, *, lr, momentum: float, weight_decay):
        super().__init__(param, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.buffer = torch.zeros_like(param)
        # one step size per row, so that step control can shrink a row's alone
        self.rate = torch.full(
            (param.shape[0], 1), float(lr), dtype=param.dtype, device=param.device
        )

    def step_rows(self, rows: slice, point: torch.Tensor, grad: torch.Tensor):
        """``point - rate * b`` for the rows ``rows`` (a slice), with their
        momentum buffer ``b <- momentum * b + (grad + weight_decay * point)``."""
        with torch.no_grad():
            b = self.buffer[rows]  # a view: the update lands in the buffer
            step = (
                grad.add(point, alpha=self.weight_decay) if self.weight_decay else grad
            )
            b.mul_(self.momentum).add_(step)
            return point - self.rate[rows] * b

    def forget(self, rows: slice, mask: torch.Tensor, shrink: float = 1.0) -> None:
        """Zero the momentum of the rows of ``rows`` where ``mask`` (shape
        (rows, 1)) holds, and multiply their step size by ``shrink``."""
        with torch.no_grad():
            self.buffer[rows].masked_fill_(mask, 0.0)
            rate = self.rate[rows]
            rate.copy_(torch.where(mask, shrink * rate, rate))


def real_array(x, name: str, dtype=None) -> np.ndarray:
    """:func:`to_numpy` for the argument ``name``: complex, object and other
    non-numeric input is a ``ValueError`` naming it (never a cast)."""
    if isinstance(x, torch.Tensor) and x.is_complex():
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
