"""The batched SGD of the importance weights (SPEC 4) on tensors.

Shared by :func:`skvmf.importance.fit_importance_weights` and
:class:`skvmf.alignment.RegionalAligner`; the public wrappers validate input.
The N per-image problems are independent and SGD acts row by row, so each
chunk of anchors takes its whole step before the next chunk: the result does
not depend on the chunking.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._torch.optimisers import RowMomentumSGD
from .._utils.progress import progress
from . import matching as _mk


class _KeptPoint:
    """With fixed candidate sets: each image's last accepted point, its loss
    and its gradient, so that a step found (one step later) to have raised
    the loss can be undone without evaluating it twice."""

    def __init__(self, w, v):
        self.w, self.v = w.clone(), v.clone()
        self.gw, self.gv = torch.zeros_like(w), torch.zeros_like(v)
        self.loss = torch.full((w.shape[0],), math.inf, dtype=w.dtype, device=w.device)


class ImportanceSGD:
    """SGD with momentum and weight decay of every image's (w_i, v_i).

    Parameters
    ----------
    fhat : tensor (N, R, K)
        Channel-normalised features.
    phat : tensor (N, C)
        Unit soft labels.
    generator : torch.Generator
        Candidate draws.
    n_candidates, kappa_p, kappa_m, lr, momentum, weight_decay : numbers
        As :func:`skvmf.importance.fit_importance_weights` (validated).
    step_control : bool
        An image whose step raised its loss (on the same candidates) keeps
        its previous weights, drops its momentum and halves its step size.
    chunk_size : int or None
        Anchors per chunk (None: from :func:`_matching.step_budget`).
    precision : {"float32", "bfloat16", "tf32"}, default="float32"
        Of the score matmuls (:class:`_matching.MatmulPrecision`); float32
        is the reference. The gradients, softmaxes and weights stay in the
        features' dtype.

    Notes
    -----
    When the candidates are all N - 1 other images, every step sees the
    same sets: the draw is skipped, and the loss after a step is the next
    step's loss, so the check is made there (from the stored previous point
    and gradient when the step is refused) and only the last step needs an
    extra evaluation. Otherwise each chunk evaluates its loss after the step
    on the candidates it just used.
    """

    def __init__(
        self,
        fhat,
        phat,
        generator,
        *,
        n_candidates,
        kappa_p,
        kappa_m,
        lr,
        momentum,
        weight_decay,
        step_control,
        chunk_size,
        precision="float32",
    ):
        N, R, K = fhat.shape
        dev, dtype = fhat.device, fhat.dtype
        self.fhat, self.phat, self.generator = fhat, phat, generator
        self.n_candidates, self.kappa_p, self.kappa_m = n_candidates, kappa_p, kappa_m
        self.step_control = step_control
        self.w = torch.full((N, R), 1.0 / R, dtype=dtype, device=dev)
        self.v = torch.full((N, K), 1.0 / K, dtype=dtype, device=dev)
        sgd = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        self.opt_w = RowMomentumSGD(self.w, **sgd)
        self.opt_v = RowMomentumSGD(self.v, **sgd)
        self.everyone = torch.arange(N, device=dev)
        chunk = self._chunk_size(chunk_size)
        self.chunks = [slice(i, min(i + chunk, N)) for i in range(0, N, chunk)]
        self.same_sets = _mk.same_sets(n_candidates, N)
        self.cand = _mk.all_others(N, dev) if self.same_sets else None
        self.kept = _KeptPoint(self.w, self.v) if self.same_sets else None
        self.ws = _mk.Workspace()
        self.losses = []
        self.precision = _mk.as_precision(precision, dev)
        # the matmuls' copy of the features, made once (none for float32)
        self.fmat = self.precision.operand(fhat)

    def _chunk_size(self, chunk_size):
        """Anchors per chunk: given, or as many as fit the step budget."""
        if chunk_size is not None:
            return int(chunk_size)
        N, R, K = self.fhat.shape
        per_anchor = _mk.bytes_per_anchor_importance(
            self.n_candidates, R, K, self.fhat.element_size()
        )
        budget = _mk.step_budget(self.fhat.device)
        return int(max(1, min(N, budget // max(per_anchor, 1))))

    # -- the pieces of a step ---------------------------------------------
    def _problem(self, sl):
        """The chunk's losses on the current candidates."""
        return _mk.ImportanceProblem(
            self.fhat,
            self.phat,
            self.everyone[sl],
            self.cand[sl],
            self.kappa_p,
            self.ws,
            self.precision,
            self.fmat,
        )

    def _loss_and_grad(self, problem, sl):
        """The chunk's per-image losses at (w, v) and their gradients.

        The problems are per image: the summed loss gives each image's
        parameters exactly its own gradient.
        """
        w_c = self.w[sl].clone().requires_grad_(True)
        v_c = self.v[sl].clone().requires_grad_(True)
        loss = problem.loss(w_c, v_c, self.kappa_m)
        loss.sum().backward()
        return loss.detach(), w_c.grad, v_c.grad

    def _refuse(self, sl, rose):
        """Rows whose step raised their loss: no momentum, half the step."""
        self.opt_w.forget(sl, rose, shrink=0.5)
        self.opt_v.forget(sl, rose, shrink=0.5)

    def _settle_previous_step(self, sl, loss, gw, gv):
        """Fixed sets: this step's start is the previous step's end. Undo
        (with step control) the previous step where it raised the loss,
        then remember the accepted point. Returns the point, its gradients
        and its loss."""
        kept = self.kept
        point_w, point_v = self.w[sl], self.v[sl]
        if self.step_control:
            rose = ~(loss <= kept.loss[sl])[:, None]
            self._refuse(sl, rose)
            point_w = torch.where(rose, kept.w[sl], point_w)
            point_v = torch.where(rose, kept.v[sl], point_v)
            gw = torch.where(rose, kept.gw[sl], gw)
            gv = torch.where(rose, kept.gv[sl], gv)
            loss = torch.minimum(loss, kept.loss[sl])
        kept.w[sl], kept.v[sl] = point_w, point_v
        kept.gw[sl], kept.gv[sl], kept.loss[sl] = gw, gv, loss
        return point_w, point_v, gw, gv, loss

    def _move(self, sl, point_w, point_v, gw, gv):
        """One SGD step of the chunk, projected back onto the simplices."""
        new_w = _mk.project_simplex_abs(self.opt_w.step_rows(sl, point_w, gw))
        new_v = _mk.project_simplex_abs(self.opt_v.step_rows(sl, point_v, gv))
        return new_w, new_v

    def _check_step(self, problem, sl, loss, point, new):
        """Drawn sets: the loss after the step on the same candidates; with
        step control a rise (or a NaN) is refused. Returns the kept point
        and its loss."""
        (point_w, point_v), (new_w, new_v) = point, new
        after = problem.loss(new_w, new_v, self.kappa_m)
        if self.step_control:
            rose = ~(after <= loss)[:, None]
            self._refuse(sl, rose)
            new_w = torch.where(rose, point_w, new_w)
            new_v = torch.where(rose, point_v, new_v)
            after = torch.minimum(after, loss)
        return new_w, new_v, after

    def _record(self, total, step):
        value = float(total) / self.w.shape[0]
        if not math.isfinite(value):
            raise ValueError(
                f"the importance weights diverged at step {step} (loss {value})"
            )
        self.losses.append(value)

    def _zero(self):
        return torch.zeros((), dtype=torch.float64, device=self.w.device)

    # -- the steps ----------------------------------------------------------
    def step(self, step):
        """One step of every image, chunk by chunk, and its curve values."""
        if not self.same_sets:
            # one draw for every anchor, so the result does not depend on chunking
            self.cand = _mk.draw_candidates(
                self.w.shape[0], self.everyone, self.n_candidates, self.generator
            )
        before_total, after_total = self._zero(), self._zero()
        for sl in self.chunks:
            problem = self._problem(sl)
            loss, gw, gv = self._loss_and_grad(problem, sl)
            with torch.no_grad():
                point_w, point_v = self.w[sl], self.v[sl]
                if self.same_sets:
                    point_w, point_v, gw, gv, loss = self._settle_previous_step(
                        sl, loss, gw, gv
                    )
                    after_total += loss.sum(dtype=torch.float64)  # this step's start
                new_w, new_v = self._move(sl, point_w, point_v, gw, gv)
                if not self.same_sets:
                    before_total += loss.sum(dtype=torch.float64)
                    new_w, new_v, after = self._check_step(
                        problem, sl, loss, (point_w, point_v), (new_w, new_v)
                    )
                    after_total += after.sum(dtype=torch.float64)
                self.w[sl], self.v[sl] = new_w, new_v
        if self.same_sets:
            self._record(after_total, step)  # the start, then after step - 1
        else:
            if step == 0:
                self._record(before_total, step)
            self._record(after_total, step)

    def start_on_last_candidates(self):
        """Drawn sets: the curve's first value, the uniform start, evaluated
        on the last step's candidates like the last value (a start measured
        on other candidates differs by their draw, which can exceed what a
        short fit gains)."""
        N, R, K = self.fhat.shape
        dtype, dev = self.fhat.dtype, self.fhat.device
        total = self._zero()
        with torch.no_grad():
            for sl in self.chunks:
                a = sl.stop - sl.start
                start = self._problem(sl).loss(
                    torch.full((a, R), 1.0 / R, dtype=dtype, device=dev),
                    torch.full((a, K), 1.0 / K, dtype=dtype, device=dev),
                    self.kappa_m,
                )
                total += start.sum(dtype=torch.float64)
        self.losses[0] = float(total) / N

    def settle_last_step(self, n_steps):
        """Fixed sets: the loss after the last step, and its check."""
        kept, total = self.kept, self._zero()
        with torch.no_grad():
            for sl in self.chunks:
                after = self._problem(sl).loss(self.w[sl], self.v[sl], self.kappa_m)
                if self.step_control:
                    rose = ~(after <= kept.loss[sl])[:, None]
                    self.w[sl] = torch.where(rose, kept.w[sl], self.w[sl])
                    self.v[sl] = torch.where(rose, kept.v[sl], self.v[sl])
                    after = torch.minimum(after, kept.loss[sl])
                total += after.sum(dtype=torch.float64)
        self._record(total, n_steps)

    def run(self, n_steps, *, verbose=0, desc="importance weights"):
        """``n_steps`` steps; returns (w, v, losses).

        ``losses[0]`` is the mean KL at the uniform start and ``losses[t]``
        the mean KL after step t on step t's candidates; the start is
        evaluated on the last step's candidates, so that the first and last
        values compare start and end on the same candidates.
        """
        try:
            for step in progress(
                range(n_steps), verbose=verbose, total=n_steps, desc=desc, unit="step"
            ):
                self.step(step)
            if n_steps > 0:
                if self.same_sets:
                    self.settle_last_step(n_steps)
                else:
                    self.start_on_last_candidates()
        except _mk.KernelOutOfMemoryError:
            raise
        except _mk.OUT_OF_MEMORY as exc:
            raise self._out_of_memory(exc) from exc
        return self.w, self.v, np.asarray(self.losses, dtype=np.float64)

    def _out_of_memory(self, exc):
        """The out-of-memory error with the chunk tried and one that fits."""
        N, R, K = self.fhat.shape
        per_anchor = _mk.bytes_per_anchor_importance(
            self.n_candidates, R, K, self.fhat.element_size()
        )
        tried = self.chunks[0].stop - self.chunks[0].start
        return _mk.out_of_memory(
            exc,
            f"the importance weights of N={N} images (R={R}, K={K}, "
            f"n_candidates={self.n_candidates})",
            tried,
            per_anchor,
            self.fhat.device,
        )


def fit_importance(fhat, phat, generator, *, n_steps, verbose=0, desc=None, **options):
    """Batched SGD of SPEC 4 on tensors; returns (w, v, losses).

    ``options`` are those of :class:`ImportanceSGD`; see its ``run``.
    """
    fit = ImportanceSGD(fhat, phat, generator, **options)
    return fit.run(n_steps, verbose=verbose, desc=desc or "importance weights")
