"""The optimiser steps of skvmf's fits, written out for one tensor: the
momentum-SGD step (torch.optim.SGD's update, so that step control can
refuse and shrink a step), its per-row form, and Adam's step."""

from __future__ import annotations

import torch

_ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults
_ADAM_EPS = 1e-8


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


class Adam:
    """``torch.optim.Adam``'s update (no amsgrad, coupled weight decay) for
    one tensor, written out so that fitting does not import torch's
    compiler stack; reads and clears ``param.grad`` like
    :class:`MomentumSGD`."""

    def __init__(self, param, *, lr, weight_decay):
        self.param, self.lr, self.weight_decay = param, lr, weight_decay
        self.moment1 = torch.zeros_like(param)
        self.moment2 = torch.zeros_like(param)
        self.t = 0

    def step(self):
        p, (beta1, beta2) = self.param, _ADAM_BETAS
        self.t += 1
        with torch.no_grad():
            grad = p.grad + self.weight_decay * p
            self.moment1.mul_(beta1).add_(grad, alpha=1 - beta1)
            self.moment2.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (self.moment2 / (1 - beta2**self.t)).sqrt_().add_(_ADAM_EPS)
            p -= (self.lr / (1 - beta1**self.t)) * self.moment1 / denom
        p.grad = None
