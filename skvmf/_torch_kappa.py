"""kappa(l) on torch tensors, shared by the projection and the alignment.

One interpolant of :func:`skvmf.vmf.revised_kappa`'s table, evaluated in
torch so it stays on the tensors' device and, when asked, carries its
derivative: the cubic Hermite spline of log kappa against log l with the
exact node slopes of ``skvmf.vmf._revised_kappa_slopes`` between grid points
(it equals ``revised_kappa`` to ~1e-12), linear in l below the first positive
grid point (kappa(0) = 0), and ``(l / sigma)^2 + (d - 2) / 2`` beyond the last
one (the asymptote ``revised_kappa`` uses there).
"""

from __future__ import annotations

import numpy as np
import torch


class TorchKappa:
    """kappa(l) for torch strengths: a fixed value or the revised kappa(l).

    Parameters
    ----------
    kappa : "revised" or float
        ``"revised"`` for kappa(l) in dimension ``dim`` with noise ``sigma``;
        a float for one fixed concentration.
    dim : int
        Dimension d of the space the strengths live in.
    sigma : float
        Noise level of the revised kappa.
    device : torch.device
        Where the table lives.

    Callers pass detached strengths when kappa must carry no gradient (the
    faithful reference behaviour) and attached ones for exact gradients.
    """

    def __init__(self, kappa, dim: int, sigma: float, device):
        self.fixed = None if isinstance(kappa, str) else float(kappa)
        self.dim = int(dim)
        self.sigma = float(sigma)
        self._tables: dict[torch.dtype, tuple] = {}
        if self.fixed is None:
            from .vmf import _revised_kappa_slopes, _revised_kappa_table

            strengths, kappas = _revised_kappa_table(self.dim, self.sigma)
            self._log_l = np.log(np.asarray(strengths[1:], dtype=np.float64))
            self._log_k = np.log(np.asarray(kappas[1:], dtype=np.float64))
            self._slopes = np.array(
                _revised_kappa_slopes(self.dim, self.sigma), dtype=np.float64
            )
            self.first = (float(strengths[1]), float(kappas[1]))
            self.last = float(strengths[-1])
            self.offset = 0.5 * (self.dim - 2.0)
            self.device = device

    def _table(self, dtype):
        if dtype not in self._tables:
            self._tables[dtype] = tuple(
                torch.tensor(a, dtype=dtype, device=self.device)
                for a in (self._log_l, self._log_k, self._slopes)
            )
        return self._tables[dtype]

    def __call__(self, strength: torch.Tensor) -> torch.Tensor:
        if self.fixed is not None:
            return torch.full_like(strength, self.fixed)
        l_first, k_first = self.first
        # every branch gets inputs inside its own range, so that no branch
        # produces inf/NaN gradients for torch.where to multiply by 0
        x = torch.log(strength.clamp(l_first, self.last))
        xk, yk, mk = self._table(strength.dtype)
        idx = torch.searchsorted(xk, x.detach().contiguous()).clamp(1, xk.shape[0] - 1)
        x0, x1 = xk[idx - 1], xk[idx]
        width = x1 - x0
        t = (x - x0) / width
        t2, t3 = t * t, t * t * t
        log_kappa = (
            (2 * t3 - 3 * t2 + 1) * yk[idx - 1]
            + (t3 - 2 * t2 + t) * width * mk[idx - 1]
            + (-2 * t3 + 3 * t2) * yk[idx]
            + (t3 - t2) * width * mk[idx]
        )
        inside = torch.exp(log_kappa)
        below = k_first * strength / l_first
        beyond = (strength.clamp_min(self.last) / self.sigma) ** 2 + self.offset
        return torch.where(
            strength < l_first, below, torch.where(strength > self.last, beyond, inside)
        )
