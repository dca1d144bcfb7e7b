"""kappa(l) on torch tensors, shared by the projection and the alignment.

One interpolant of :func:`skvmf.vmf.revised_kappa`'s table, evaluated in
torch so it stays on the tensors' device and, when asked, carries its
derivative: the cubic Hermite spline of log kappa against log l with the
exact node slopes of
``skvmf._numerics.kappa_table._revised_kappa_slopes`` between grid points
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
            from .._numerics.kappa_table import (
                _revised_kappa_slopes,
                _revised_kappa_table,
            )

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
            # The Hermite spline of each interval as a cubic in its local
            # t = (x - x0) / width, c0 + c1 t + c2 t^2 + c3 t^3 (the same
            # polynomial, expanded once): one gather and three fused
            # multiply-adds per call instead of some twenty operations, which
            # matters in the aligner's thousands of one-image steps.
            y, m, x = self._log_k, self._slopes, self._log_l
            width = np.diff(x)
            y0, y1 = y[:-1], y[1:]
            m0, m1 = width * m[:-1], width * m[1:]
            self._cubic = np.stack(
                [
                    y0,
                    m0,
                    -3 * y0 - 2 * m0 + 3 * y1 - m1,
                    2 * y0 + m0 - 2 * y1 + m1,
                ],
                axis=1,
            )
            self._width = width

    def _table(self, dtype):
        if dtype not in self._tables:
            self._tables[dtype] = tuple(
                torch.tensor(a, dtype=dtype, device=self.device)
                for a in (self._log_l, self._width, self._cubic)
            )
        return self._tables[dtype]

    def __call__(self, strength: torch.Tensor) -> torch.Tensor:
        if self.fixed is not None:
            return torch.full_like(strength, self.fixed)
        l_first, k_first = self.first
        # every branch gets inputs inside its own range, so that no branch
        # produces inf/NaN gradients for torch.where to multiply by 0
        x = torch.log(strength.clamp(l_first, self.last))
        xk, width, cubic = self._table(strength.dtype)
        idx = torch.searchsorted(xk, x.detach().contiguous()).clamp(1, xk.shape[0] - 1)
        idx = idx - 1
        t = (x - xk[idx]) / width[idx]
        c = cubic[idx]  # (..., 4)
        log_kappa = torch.addcmul(c[..., 2], c[..., 3], t)
        log_kappa = torch.addcmul(c[..., 1], log_kappa, t)
        log_kappa = torch.addcmul(c[..., 0], log_kappa, t)
        inside = torch.exp(log_kappa)
        if strength.device.type == "cpu" and strength.numel():
            # skip the tails when no strength is there (a cheap check on the
            # CPU; on a GPU it would cost a synchronisation)
            low, high = torch.aminmax(strength.detach())
            if float(low) >= l_first and float(high) <= self.last:
                return inside
        below = k_first * strength / l_first
        beyond = (strength.clamp_min(self.last) / self.sigma) ** 2 + self.offset
        return torch.where(
            strength < l_first, below, torch.where(strength > self.last, beyond, inside)
        )
