"""The one momentum-SGD step (torch.optim.SGD's update, written out so
that step control can refuse and shrink a step), and its per-row form."""

from __future__ import annotations

import torch


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
