"""Torch kernels of SPEC 4-5: region matching, importance weights, aligner loss.

Everything here works on tensors already on the right device and dtype; the
public wrappers in :mod:`skvmf.alignment` validate input and convert arrays.

Shapes: N images, R regions per image, K channels, d' embedding dimensions,
``a`` anchors in a chunk, ``n`` candidates per anchor, ``m`` candidates in a
block of the full matching.
"""

from __future__ import annotations

import torch

from .._numerics.arrays import safe_norm, unit_rows

# Working-memory budget of the automatic chunk sizes (score blocks, gathered
# candidates); a GPU gets larger blocks because its matmuls need them.
_BUDGET_CPU = 256 * 2**20
_BUDGET_CUDA = 1024 * 2**20
MAX_REGIONS = 32767  # region indices are stored as int16
# From this many channels on, the aligner embeds each distinct matched region
# once; below, gathering the rows is cheaper than finding the distinct ones.
_DEDUPE_MIN_CHANNELS = 128


# The importance-weight steps revisit their chunk several times (scores, max,
# backward, the step check): on the CPU, chunks that stay in cache were
# 1.3-1.5x faster than chunks sized by the memory budget (digits layers,
# 4-8 anchors of 2-6 MB each against 44).
_STEP_BUDGET_CPU = 24 * 2**20


def memory_budget(device: torch.device) -> int:
    """Bytes the automatic chunk sizes may use on ``device``."""
    return _BUDGET_CUDA if device.type == "cuda" else _BUDGET_CPU


def step_budget(device: torch.device) -> int:
    """Bytes per chunk of the importance-weight steps on ``device``."""
    return _BUDGET_CUDA if device.type == "cuda" else min(_STEP_BUDGET_CPU, _BUDGET_CPU)


# ---------------------------------------------------------------------------
# matmul precision
# ---------------------------------------------------------------------------
PRECISIONS = ("float32", "bfloat16", "tf32")


def check_precision(precision) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(map(repr, PRECISIONS))}; "
            f"got {precision!r}"
        )
    return precision


class MatmulPrecision:
    """How the score matmuls of the matching and the importance weights run.

    - ``"float32"`` (the reference): the features' own dtype throughout.
    - ``"bfloat16"``: both operands rounded to bfloat16 (8 significant
      bits), products accumulated and returned in float32. On CUDA the
      matmul runs on bfloat16 tensors (``out_dtype=float32``, the tensor
      cores); on the CPU torch has no bfloat16 matmul with a float32
      result, so the rounded operands are multiplied in float32: the same
      numbers up to summation order, at float32 speed.
    - ``"tf32"``: TF32 tensor-core matmuls on CUDA (10-bit mantissas,
      float32 accumulation); on the CPU, which has no TF32, float32.

    Only the score matmuls change; maxima, softmaxes and the gradient of the
    importance weights stay in the features' dtype.
    """

    def __init__(self, precision: str, device: torch.device):
        self.name = check_precision(precision)
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.bfloat16 = self.name == "bfloat16"
        # bfloat16 tensors into the matmul (CUDA) or rounded float32 ones (CPU)
        self.native = self.bfloat16 and cuda
        self.tf32 = self.name == "tf32" and cuda

    @property
    def reference(self) -> bool:
        """Whether the matmuls are the plain float32 (dtype) ones."""
        return not (self.bfloat16 or self.tf32)

    def operand(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the matmuls take it (no copy for the reference)."""
        if not self.bfloat16 or x.dtype == torch.bfloat16:
            return x
        rounded = x.to(torch.bfloat16)
        return rounded if self.native else rounded.to(x.dtype)

    def matmul(self, a, b, out):
        """``a @ b`` (2-D: mm, 3-D: bmm) into ``out`` (the result dtype)."""
        fn = torch.mm if a.dim() == 2 else torch.bmm
        if self.native:
            a, b = a.to(torch.bfloat16), b.to(torch.bfloat16)
            return fn(a, b, out_dtype=out.dtype, out=out)
        if self.tf32:
            with _tf32():
                return fn(a, b, out=out)
        return fn(a, b, out=out)


class _tf32:
    """TF32 CUDA matmuls inside the block, the previous setting after it."""

    def __enter__(self):
        self.before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32 = self.before


def as_precision(precision, device) -> MatmulPrecision:
    """A :class:`MatmulPrecision` from a name, an instance or None (float32)."""
    if isinstance(precision, MatmulPrecision):
        return precision
    return MatmulPrecision("float32" if precision is None else precision, device)


# ---------------------------------------------------------------------------
# running out of device memory
# ---------------------------------------------------------------------------
OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class KernelOutOfMemoryError(OUT_OF_MEMORY):
    """torch's out-of-memory error of a matching or importance-weight kernel,
    with the sizes tried and an anchors-per-chunk ``chunk_size`` that fits."""


def out_of_memory(exc, what, tried, per_anchor, device):
    """:class:`KernelOutOfMemoryError` for ``exc``: ``what`` ran out of memory
    with ``tried`` anchors per chunk of ``per_anchor`` bytes each."""
    free = free_bytes(device)
    fits = int(max(1, min(free // max(per_anchor, 1), max(1, tried // 2))))
    if tried > 1:
        hint = (
            f"pass chunk_size={fits} (anchors per chunk; about {free} bytes are "
            f"free on {device})"
        )
    else:
        hint = "chunk_size is already 1: use fewer images, regions or candidates"
    return KernelOutOfMemoryError(
        f"{what} ran out of memory on {device} with chunks of {tried} anchors x "
        f"{per_anchor} bytes = {tried * per_anchor} bytes; {hint}. ({exc})"
    )


def free_bytes(device) -> int:
    """Bytes the device can still give (CUDA), else the working budget."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            cached = torch.cuda.memory_reserved(device)
            return int(free + cached - torch.cuda.memory_allocated(device))
        except RuntimeError:  # pragma: no cover - a broken CUDA context
            pass
    return memory_budget(device)


class Workspace:
    """Reusable scratch buffers, one per name, grown on demand.

    Large temporary tensors allocated afresh at every chunk or step cost page
    faults on the CPU (about as much as copying them); writing into the same
    buffers with ``out=`` avoids that. A buffer is valid until the next
    :meth:`get` of the same name.
    """

    def __init__(self):
        self._buffers = {}

    def get(self, name, shape, dtype, device):
        numel = 1
        for size in shape:
            numel *= int(size)
        buf = self._buffers.get(name)
        if (
            buf is None
            or buf.numel() < numel
            or buf.dtype != dtype
            or buf.device != torch.device(device)
        ):
            buf = torch.empty(numel, dtype=dtype, device=device)
            self._buffers[name] = buf
        return buf[:numel].view(shape)


def gather_rows(source, index, workspace, name):
    """``source.index_select(0, index)`` into a reusable buffer."""
    out = workspace.get(
        name, (index.shape[0], *source.shape[1:]), source.dtype, source.device
    )
    return torch.index_select(source, 0, index, out=out)


def matching_plan(
    n_anchors: int,
    n_candidates: int,
    R: int,
    K: int,
    itemsize: int,
    device: torch.device,
    chunk_size: int | None,
    gathered: bool,
):
    """Anchors per chunk and candidates per block of :func:`match_all`.

    One (anchor, candidate) pair costs ``itemsize R^2`` bytes of scores,
    ``12 R`` of maxima and int64 indices and, when candidates are gathered per
    anchor, ``itemsize R K`` of candidate features. A given ``chunk_size``
    is used as is with whole candidate rows; otherwise both sizes are chosen
    to fit :func:`memory_budget`.
    """
    per_pair = itemsize * R * R + 12 * R + (itemsize * R * K if gathered else 0)
    if chunk_size is not None:
        return int(chunk_size), int(n_candidates)
    budget = memory_budget(device)
    chunk = int(max(1, min(n_anchors, budget // (per_pair * n_candidates))))
    block = int(max(1, min(n_candidates, budget // (per_pair * chunk))))
    return chunk, block


def normalize_channels(features: torch.Tensor) -> torch.Tensor:
    """Each regional feature over its channel L2 norm; zero regions stay zero.

    The norm is taken after dividing by the largest entry, so float32
    features of 1e20 or 1e-20 normalise as those of 1 do (squaring them
    directly overflows to inf or underflows to 0).
    """
    return unit_rows(features, dim=-1)


def same_sets(n_candidates: int, n_images: int) -> bool:
    """Whether every candidate set is all the other images (nothing to draw)."""
    return n_candidates == n_images - 1


# ---------------------------------------------------------------------------
# region matching
# ---------------------------------------------------------------------------
def block_max(
    weighted: torch.Tensor,
    candidates: torch.Tensor,
    workspace=None,
    with_indices: bool = True,
    precision: MatmulPrecision | None = None,
):
    """Best match of every anchor region among each candidate's regions.

    ``scores[a, r, j, r'] = sum_k weighted[a, r, k] cand[j, r', k]`` (one
    matmul), then the max over r'.

    Parameters
    ----------
    weighted : tensor (a, R, K)
        Anchor features already multiplied by their channel weights.
    candidates : tensor (m, R, K) or (a, m, R, K)
        Candidates shared by all anchors, or one set per anchor (already
        :meth:`MatmulPrecision.operand`).
    workspace : Workspace, optional
        Holds the score block (and the results, which are then only valid
        until the next call with the same workspace).
    with_indices : bool, default=True
        Also find the maximising regions. Without them the reduction is
        several times faster on the CPU (``amax`` against ``max`` with
        indices), which matters when only the scores are needed.
    precision : MatmulPrecision, optional
        Of the score matmul (default: float32, the reference); the scores
        come out in ``weighted``'s dtype.

    Returns
    -------
    values, indices : tensors (a, R, m)
        ``s_ij^(r)`` and ``r'_ij(r)`` (int64; ties go to the first region);
        ``indices`` is None without ``with_indices``.
    """
    a, R, K = weighted.shape
    shared = candidates.dim() == 3
    m = candidates.shape[0] if shared else candidates.shape[1]
    ws = workspace if workspace is not None else Workspace()
    dtype, device = weighted.dtype, weighted.device
    prec = as_precision(precision, device)
    weighted = prec.operand(weighted)
    if shared:
        scores = ws.get("scores", (a * R, m * R), dtype, device)
        prec.matmul(weighted.reshape(a * R, K), candidates.reshape(m * R, K).T, scores)
    else:
        scores = ws.get("scores", (a, R, m * R), dtype, device)
        prec.matmul(weighted, candidates.reshape(a, m * R, K).transpose(1, 2), scores)
    values = ws.get("values", (a, R, m), dtype, device)
    if not with_indices:
        torch.amax(scores.view(a, R, m, R), dim=-1, out=values)
        return values, None
    indices = ws.get("indices", (a, R, m), torch.long, device)
    torch.max(scores.view(a, R, m, R), dim=-1, out=(values, indices))
    return values, indices


def match_all(
    fhat: torch.Tensor,
    weights: torch.Tensor | None,
    anchors: torch.Tensor,
    candidates: torch.Tensor | None,
    *,
    chunk_size: int,
    block_size: int,
    return_scores: bool,
    precision="float32",
):
    """Region matching of ``anchors`` against all images or given candidates.

    Parameters
    ----------
    fhat : tensor (N, R, K)
        Channel-normalised features.
    weights : tensor (A, K) or None
        Channel weights of each anchor (None: uniform 1/K).
    anchors : int64 tensor (A,)
    candidates : int64 tensor (A, n) or None
        Per-anchor candidates; None matches every anchor against all N
        images (in blocks of ``block_size`` candidates).
    chunk_size, block_size : int
        Anchors per chunk and candidates per block: the score block holds
        ``chunk_size * block_size * R * R`` numbers.
    precision : {"float32", "bfloat16", "tf32"} or MatmulPrecision
        Of the score matmuls (:class:`MatmulPrecision`); float32 is the
        reference.

    Returns
    -------
    indices : int16 tensor (A, M, R)
        ``r'_ij(r)`` for M = N (full) or n (candidates).
    scores : tensor (A, M, R) or None
        ``s_ij^(r)`` when ``return_scores``.

    Raises
    ------
    KernelOutOfMemoryError
        When a chunk does not fit the device: names the sizes tried and a
        ``chunk_size`` that fits.
    """
    N, R, K = fhat.shape
    A = anchors.shape[0]
    M = N if candidates is None else candidates.shape[1]
    try:
        prec = as_precision(precision, fhat.device)
        fmat = prec.operand(fhat)
        indices = torch.empty((A, M, R), dtype=torch.int16, device=fhat.device)
        scores = (
            torch.empty((A, M, R), dtype=fhat.dtype, device=fhat.device)
            if return_scores
            else None
        )
        ws = Workspace()
        for start in range(0, A, chunk_size):
            stop = min(start + chunk_size, A)
            anchor_feats = fhat.index_select(0, anchors[start:stop])
            if weights is None:
                weighted = anchor_feats / K
            else:
                weighted = anchor_feats * weights[start:stop, None, :]
            for j0 in range(0, M, block_size):
                j1 = min(j0 + block_size, M)
                if candidates is None:
                    cand = fmat[j0:j1]
                else:
                    cand = gather_rows(
                        fmat, candidates[start:stop, j0:j1].reshape(-1), ws, "cand"
                    ).view(stop - start, j1 - j0, R, K)
                values, idx = block_max(weighted, cand, ws, precision=prec)
                indices[start:stop, j0:j1] = idx.transpose(1, 2)
                if scores is not None:
                    scores[start:stop, j0:j1] = values.transpose(1, 2)
    except KernelOutOfMemoryError:
        raise
    except OUT_OF_MEMORY as exc:
        itemsize = fhat.element_size()
        per_pair = (
            itemsize * R * R + 12 * R + (0 if candidates is None else itemsize * R * K)
        )
        raise out_of_memory(
            exc,
            f"the region matching of {A} anchors x {M} images (R={R}, K={K}, "
            f"blocks of {block_size} images)",
            min(chunk_size, A),
            per_pair * block_size,
            fhat.device,
        ) from exc
    return indices, scores


# ---------------------------------------------------------------------------
# sample-to-sample distribution and candidates
# ---------------------------------------------------------------------------
def log_sample_distribution(
    phat: torch.Tensor, anchors: torch.Tensor, candidates: torch.Tensor, kappa_p
):
    """log P(x_j | x_i) over j in S_i, shape (a, n)."""
    sim = torch.einsum("ac,anc->an", phat[anchors], phat[candidates])
    return torch.log_softmax(kappa_p * sim, dim=1)


def all_others(n_samples: int, device) -> torch.Tensor:
    """Row i: every image but i, in order, (N, N - 1) int64 (the only
    candidate set of size N - 1, so nothing needs drawing)."""
    others = torch.arange(1, n_samples, device=device).expand(n_samples, -1)
    rows = torch.arange(n_samples, device=device)[:, None]
    return others - (others <= rows).long()


def draw_candidates(
    n_samples: int,
    anchors: torch.Tensor,
    n_candidates: int,
    generator: torch.Generator,
    chunk_size: int = 4096,
) -> torch.Tensor:
    """``n_candidates`` distinct images other than each anchor, (a, n) int64.

    The top-n of uniform keys over the N - 1 other images is a uniform draw
    without replacement; the key matrix is built ``chunk_size`` anchors at a
    time. The keys are drawn with ``generator`` (on its device) and the
    result is moved to the anchors' device.
    """
    gen_device = generator.device
    anchors_g = anchors.to(gen_device)
    out = []
    for start in range(0, anchors_g.shape[0], chunk_size):
        block = anchors_g[start : start + chunk_size]
        keys = torch.rand(
            (block.shape[0], n_samples - 1), generator=generator, device=gen_device
        )
        pick = keys.topk(n_candidates, dim=1, sorted=False).indices
        out.append(pick + (pick >= block[:, None]).long())
    if not out:
        return torch.empty((0, n_candidates), dtype=torch.long, device=anchors.device)
    return torch.cat(out).to(anchors.device)


# ---------------------------------------------------------------------------
# importance weights (SPEC 4)
# ---------------------------------------------------------------------------
class _MatchedScores(torch.autograd.Function):
    """``s_ij^(r)`` for per-anchor candidates, differentiable in v.

    Forward: one batched matmul and a max over r'. Backward: the gradient of a
    max flows to its argmax (as autograd's would), so
    ``ds/dv_ik = f_ik^(r) f_jk^(r')`` at the matched r': for each anchor
    region, the gradient-weighted sum of its matched candidate regions, read
    straight from the features by one ``embedding_bag`` (no gathered copy of
    the matched regions and no second matmul of the score block).
    """

    @staticmethod
    def forward(ctx, v, anchor_feats, cand_feats, workspace, *table):
        # v (a, K); anchor_feats (a, R, K); cand_feats (a, n, R, K); table:
        # optional (rows, fhat_flat, precision), rows (a, 1, n) the row of
        # candidate j's region 0 in fhat_flat (N R, K). Without them the
        # backward reads the gathered candidates, in float32 matmuls.
        ctx.n_inputs = 4 + len(table)
        rows, fhat_flat, prec = (*table, None, None, None)[:3]
        a, n, R, K = cand_feats.shape
        values, idx = block_max(
            anchor_feats * v[:, None, :], cand_feats, workspace, precision=prec
        )
        if fhat_flat is None:
            fhat_flat = cand_feats.reshape(a * n * R, K)
            rows = (torch.arange(a * n, device=idx.device) * R).view(a, 1, n)
        matched = (rows + idx).reshape(-1)  # the matched regions' rows
        ctx.save_for_backward(anchor_feats, matched)
        ctx.fhat_flat, ctx.n = fhat_flat, n
        return values.clone()  # (a, R, n); the workspace is reused

    @staticmethod
    def backward(ctx, grad):
        anchor_feats, matched = ctx.saved_tensors
        a, R, K = anchor_feats.shape
        n = ctx.n
        # sum_j grad[a, r, j] * f_{cand_j}^(r'_j(r)): bags of n rows
        offsets = torch.arange(0, a * R * n, n, device=matched.device)
        fhat_flat = ctx.fhat_flat
        summed = torch.nn.functional.embedding_bag(
            matched,
            fhat_flat,
            offsets,
            mode="sum",
            per_sample_weights=grad.reshape(-1).to(fhat_flat.dtype),
        ).view(a, R, K)
        grad_v = (summed * anchor_feats).sum(dim=1)
        return (grad_v, *([None] * (ctx.n_inputs - 1)))


class ImportanceProblem:
    """The importance-weight losses of a chunk of anchors on fixed candidates.

    Gathers the candidates' features and the network's ``log P(x_j | x_i)``
    once, so that the loss can be evaluated at several (w, v) on the same
    candidates (the step control of the importance fit compares the loss
    before and after a step). The gathered candidates live in ``workspace``:
    they stay valid until the next problem built on it.

    Parameters
    ----------
    fhat : tensor (N, R, K)
        Channel-normalised features.
    phat : tensor (N, C)
        Unit soft labels.
    anchors : int64 tensor (a,); candidates : int64 tensor (a, n)
    kappa_p : float
        Concentration of the network's sample-to-sample distribution.
    workspace : Workspace, optional
    precision : str or MatmulPrecision, default="float32"
        Of the score matmuls; the gradient uses ``fhat`` itself.
    fmat : tensor (N, R, K), optional
        ``precision.operand(fhat)``, when the caller keeps it across chunks.
    """

    def __init__(
        self,
        fhat,
        phat,
        anchors,
        candidates,
        kappa_p,
        workspace=None,
        precision="float32",
        fmat=None,
    ):
        self.ws = workspace if workspace is not None else Workspace()
        self.prec = as_precision(precision, fhat.device)
        if fmat is None:
            fmat = self.prec.operand(fhat)
        a, n = candidates.shape
        N, R, K = fhat.shape
        self.log_p = log_sample_distribution(phat, anchors, candidates, kappa_p).to(
            fhat.dtype
        )
        self.p = self.log_p.exp()
        self.anchor_feats = fhat.index_select(0, anchors)
        self.cand_feats = gather_rows(
            fmat, candidates.reshape(-1), self.ws, "cand"
        ).view(a, n, R, K)
        self.rows = (candidates * R).view(a, 1, n)
        self.fhat_flat = fhat.view(N * R, K)

    def loss(self, w, v, kappa_m):
        """KL(P(.|x_i) || Q(.|x_i)) of SPEC 4 for each anchor, shape (a,).

        Differentiable in ``v`` (and ``w``) when ``v`` requires a gradient:
        run the backward pass before the next evaluation, which reuses the
        workspace. Otherwise only the scores are computed (no argmax).
        """
        if v.requires_grad and torch.is_grad_enabled():
            s = _MatchedScores.apply(
                v,
                self.anchor_feats,
                self.cand_feats,
                self.ws,
                self.rows,
                self.fhat_flat,
                self.prec,
            )
        else:
            s, _ = block_max(
                self.anchor_feats * v[:, None, :],
                self.cand_feats,
                self.ws,
                with_indices=False,
                precision=self.prec,
            )
        log_q_r = torch.log_softmax(kappa_m * s, dim=2)  # expert of region r over j
        log_q = torch.log_softmax(torch.einsum("ar,arn->an", w, log_q_r), dim=1)
        return (self.p * (self.log_p - log_q)).sum(dim=1)


def importance_loss(
    w: torch.Tensor,
    v: torch.Tensor,
    fhat: torch.Tensor,
    phat: torch.Tensor,
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    kappa_p,
    kappa_m,
    workspace=None,
    precision="float32",
) -> torch.Tensor:
    """KL(P(.|x_i) || Q(.|x_i)) of SPEC 4 for each anchor, shape (a,).

    ``w`` (a, R) and ``v`` (a, K) are the anchors' region and channel weights;
    ``fhat`` (N, R, K) the channel-normalised features and ``phat`` (N, C) the
    unit soft labels; ``precision`` that of the score matmuls. Run the
    backward pass before the next call with the same ``workspace``: the
    gathered candidates live there.
    """
    problem = ImportanceProblem(
        fhat, phat, anchors, candidates, kappa_p, workspace, precision
    )
    return problem.loss(w, v, kappa_m)


def project_simplex_abs(x: torch.Tensor) -> torch.Tensor:
    """|x| / sum |x| per row (a zero row becomes uniform)."""
    x = x.abs()
    total = x.sum(dim=1, keepdim=True)
    uniform = torch.full_like(x, 1.0 / x.shape[1])
    return torch.where(total > 0, x / torch.where(total > 0, total, 1.0), uniform)


def bytes_per_anchor_importance(n: int, R: int, K: int, itemsize: int) -> int:
    """Working memory of one anchor in :func:`importance_loss` and its backward.

    Gathered candidates (n R K), the score block (n R R), the max values and
    indices (n R), the matched rows and gradient sums of the backward (n R
    and R K). Kept at its former value (the backward once gathered the
    matched regions, another n R K) so that the automatic chunk sizes, and
    with them the results, stay those of earlier releases.
    """
    return itemsize * (2 * n * R * K + n * R * R) + 12 * n * R


# ---------------------------------------------------------------------------
# RegionalAligner (SPEC 5)
# ---------------------------------------------------------------------------
def _distinct_regions(candidates: torch.Tensor, matched: torch.Tensor):
    """Distinct (candidate, matched region) rows and where each entry is.

    Several anchor regions often match the same region of a candidate; each
    such row of ``feats_flat`` is then gathered and embedded once (the K-wide
    rows dominate the memory traffic of a step). Returns the rows to gather
    (into the (N * R, K) features) and, for every (anchor, candidate, region)
    entry, the index of its row among them. O(a n R), no sort.
    """
    a, n, R = matched.shape
    device = matched.device
    starts = torch.arange(0, a * n * R, R, device=device)
    local = (starts[:, None] + matched.view(a * n, R)).view(-1)
    # (bincount, cumsum, masked_select and index_select: the cheapest CPU
    # kernels for these small index arrays, together 0.3 ms a paper-size step)
    if device.type == "cpu":
        seen = torch.bincount(local, minlength=a * n * R) > 0
    else:
        seen = torch.zeros(a * n * R, dtype=torch.bool, device=device)
        seen.index_fill_(0, local, True)
    # a distinct row's position is the number of distinct rows before it
    position = torch.cumsum(seen, 0).sub_(1)
    every = (candidates[..., None] * R + torch.arange(R, device=device)).view(-1)
    return torch.masked_select(every, seen), position.index_select(0, local)


def _norm_leading(x: torch.Tensor) -> torch.Tensor:
    """L2 norm over the first axis, rescaled first, with a zero gradient at zero.

    Each vector is divided by its largest entry before squaring (held
    constant, so the gradient is still ``x / ||x||``): float32 embeddings of
    1e20 would overflow and those of 1e-20 underflow. ``sqrt(max(sum y^2,
    tiny))`` gives a zero vector the norm sqrt(tiny) (its cosines are 0
    anyway) instead of the NaN gradient of sqrt at 0. Summing over the short
    leading axis is far faster than ``vector_norm(dim=0)`` on the CPU.
    """
    top = x.detach().abs().amax(dim=0)
    top = torch.where(top > 0, top, torch.ones_like(top))
    y = x / top
    return (y * y).sum(dim=0).clamp_min(torch.finfo(x.dtype).tiny).sqrt() * top


def _safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den with 0 where den == 0 (zero vectors have no direction)."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), 0.0)


def _anchor_rows(anchors: torch.Tensor, n_regions: int) -> torch.Tensor:
    """Rows ``i * R + r`` of the anchors' regions in the (N * R, K) features."""
    R = n_regions
    return (anchors[:, None] * R + torch.arange(R, device=anchors.device)).view(-1)


def _matched(matching, anchors, candidates):
    """``r'_ij(r)`` of each anchor's candidates, (a, n, R) int64."""
    return matching[anchors[:, None], candidates].long()


def _gathered_embeddings(
    components, feats_flat, n_regions, scale, matching, anchors, candidates, ws
):
    """h of the anchors' regions (d', a, 1, R) and of their candidates'
    matched regions (d', a, n, R), each gathered and embedded.

    Embeddings are kept as (d', rows): Lambda @ rows^T and its backward,
    grad @ rows, stream the K-wide rows in row-major order, and the norms
    and dot products reduce over the short leading axis. From
    ``_DEDUPE_MIN_CHANNELS`` channels on, each distinct matched row is
    embedded once.
    """
    R = n_regions
    a, n = candidates.shape
    anchor_feats = feats_flat.index_select(0, _anchor_rows(anchors, R))
    h_anchor = ((components @ anchor_feats.T) / scale).view(-1, a, 1, R)
    matched = _matched(matching, anchors, candidates)
    if feats_flat.shape[1] >= _DEDUPE_MIN_CHANNELS:
        unique_rows, inverse = _distinct_regions(candidates, matched)
        cand_feats = gather_rows(feats_flat, unique_rows, ws, "cand")
        h_unique = (components @ cand_feats.T) / scale
        h_cand = h_unique[:, inverse].view(-1, a, n, R)
    else:
        cand_rows = (candidates[..., None] * R + matched).view(-1)
        cand_feats = gather_rows(feats_flat, cand_rows, ws, "cand")
        h_cand = ((components @ cand_feats.T) / scale).view(-1, a, n, R)
    return h_anchor, h_cand


def _log_product_of_experts(logits: torch.Tensor, w_a: torch.Tensor):
    """Each region's expert ``log q_i^(r)(j)`` (a, n, R) from its logits over
    the candidates j, and their w-weighted product ``log Q(x_j|x_i)`` (a, n)."""
    log_q_r = torch.log_softmax(logits, dim=1)
    log_q = torch.log_softmax(torch.einsum("ar,anr->an", w_a, log_q_r), dim=1)
    return log_q_r, log_q


def _kl_from_network(phat, anchors, candidates, kappa_p, log_q):
    """The network's P(x_j|x_i) over the candidates (a, n) and
    ``L_sim = KL(P || Q)`` per anchor (a,)."""
    log_p = log_sample_distribution(phat, anchors, candidates, kappa_p).to(log_q.dtype)
    p = log_p.exp()
    return p, (p * (log_p - log_q)).sum(dim=1)


def aligner_loss(
    components: torch.Tensor,
    feats_flat: torch.Tensor,
    n_regions: int,
    scale: float,
    g: torch.Tensor,
    phat: torch.Tensor,
    w: torch.Tensor,
    matching: torch.Tensor,
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    *,
    kappa_fn,
    kappa_p,
    exact: bool,
    workspace=None,
):
    """L_sim and L_align of SPEC 5 for each anchor, two tensors of shape (a,).

    Parameters
    ----------
    components : tensor (d', K)
        Lambda; h = Lambda f / scale.
    feats_flat : tensor (N * R, K)
        The layer's (channel-normalised or raw) features, row ``i * R + r``.
    g : tensor (N, d')
        Projected sample features.
    phat : tensor (N, C)
        Unit soft labels.
    w : tensor (N, R)
        Importance weights.
    matching : int16 tensor (N, N, R)
        ``r'_ij(r)`` for every pair.
    anchors : int64 (a,); candidates : int64 (a, n)
    exact : bool
        False (faithful, SPEC 5): the cosines of the L_sim experts divide by
        norms without gradient and kappa has none, while L_align normalises
        h exactly. True: true cosines everywhere and a differentiable kappa.
    workspace : Workspace, optional
        Holds the gathered candidate regions; run the backward pass before
        the next call with the same workspace.
    """
    ws = workspace if workspace is not None else Workspace()
    h_anchor, h_cand = _gathered_embeddings(
        components, feats_flat, n_regions, scale, matching, anchors, candidates, ws
    )
    norm_anchor = _norm_leading(h_anchor)[:, 0]  # (a, R)
    norm_cand = _norm_leading(h_cand)  # (a, n, R)
    sim_anchor, sim_cand = norm_anchor, norm_cand
    if not exact:  # stop-gradient norms in the experts only (SPEC 5)
        sim_anchor, sim_cand = norm_anchor.detach(), norm_cand.detach()
    kappa = kappa_fn(norm_anchor if exact else norm_anchor.detach())

    dots = (h_anchor * h_cand).sum(dim=0)  # (a, n, R)
    cos = _safe_divide(dots, sim_anchor[:, None, :] * sim_cand)
    w_a = w[anchors]
    _, log_q = _log_product_of_experts(kappa[:, None, :] * cos, w_a)
    _, l_sim = _kl_from_network(phat, anchors, candidates, kappa_p, log_q)

    norm_g = safe_norm(g[anchors], dim=-1)  # (a,)
    cos_g = _safe_divide(
        torch.einsum("dar,ad->ar", h_anchor[:, :, 0], g[anchors]),
        norm_anchor * norm_g[:, None],
    )
    l_align = -(w_a * cos_g).sum(dim=1)
    return l_sim, l_align


def _embedding_source(feats_flat, n_regions, matching, anchors, candidates, ws):
    """The feature rows to embed for a step, and where the anchors' (a R,)
    and the candidates' matched rows (a n R,) are among them.

    Every row (one product with the whole feature matrix, no K-wide gather)
    when the anchors' candidates cover at least half of the images; else
    the gathered anchor rows and matched rows (each distinct matched row
    once from ``_DEDUPE_MIN_CHANNELS`` channels on).
    """
    R = n_regions
    a, n = candidates.shape
    NR, K = feats_flat.shape
    device = anchors.device
    anchor_rows = _anchor_rows(anchors, R)
    matched = _matched(matching, anchors, candidates)
    cand_rows = (candidates[..., None] * R + matched).view(-1)
    if 2 * a * n * R >= NR:
        return feats_flat, anchor_rows, cand_rows
    if K >= _DEDUPE_MIN_CHANNELS:
        unique_rows, cand_idx = _distinct_regions(candidates, matched)
    else:
        unique_rows, cand_idx = cand_rows, None
    rows = torch.cat([anchor_rows, unique_rows])
    source = gather_rows(feats_flat, rows, ws, "cand")
    anchor_idx = torch.arange(a * R, device=device)
    cand_idx = (
        torch.arange(a * R, rows.shape[0], device=device)
        if cand_idx is None
        else cand_idx + a * R
    )
    return source, anchor_idx, cand_idx


class _FaithfulForward:
    """The faithful loss of one step and the values its gradient reuses.

    ``h_source`` (d', rows) holds the embedded rows; ``h_anchor`` (d', a, 1,
    R) and ``h_cand`` (d', a, n, R) are the anchors' regions and their
    candidates' matched regions among them.
    """

    def __init__(self, h_source, anchor_idx, cand_idx, a, n, R, g_a, w_a, kappa_fn):
        self.h_source, self.anchor_idx, self.cand_idx = h_source, anchor_idx, cand_idx
        self.h_anchor = h_source.index_select(1, anchor_idx).view(-1, a, 1, R)
        self.h_cand = h_source.index_select(1, cand_idx).view(-1, a, n, R)
        self.w_a, self.a = w_a, a
        self.norm_anchor = _norm_leading(self.h_anchor)  # (a, 1, R)
        norm_cand = _norm_leading(self.h_cand)  # (a, n, R)
        self.kappa = kappa_fn(self.norm_anchor)  # (a, 1, R)
        dots = (self.h_anchor * self.h_cand).sum(dim=0)
        # 1 / (||h_i^(r)|| ||h_j^(r')||): the experts' norms, held constant
        # (0 where the product underflows; reciprocal is 1 / x, in fewer ops)
        den = self.norm_anchor * norm_cand
        self.inv = torch.where(den > 0, den.reciprocal(), 0.0)
        self.log_q_r, self.log_q = _log_product_of_experts(
            self.kappa * (dots * self.inv), w_a
        )
        # L_align's cosines with g (normalised exactly)
        self.inv_ag = _safe_divide(
            torch.ones_like(self.norm_anchor[:, 0]),
            self.norm_anchor[:, 0] * safe_norm(g_a, dim=-1)[:, None],
        )  # (a, R)
        self.g_cols = g_a.T[:, :, None]  # (d', a, 1)
        self.cos_g = (self.h_anchor[:, :, 0] * self.g_cols).sum(dim=0) * self.inv_ag

    def loss(self, p, l_sim, sim_weight, align_weight):
        """``sim_weight L_sim + align_weight L_align`` per anchor (a,)."""
        self.p = p
        return sim_weight * l_sim - align_weight * (self.w_a * self.cos_g).sum(dim=1)

    def grad_embeddings(self, sim_weight, align_weight):
        """d mean(loss) / d h_source, (d', rows) under zero rows up to a
        multiple of 4: the experts' norms and kappa held constant, L_align
        differentiated exactly."""
        a, w_a = self.a, self.w_a
        h_anchor, h_cand = self.h_anchor, self.h_cand
        # d mean(loss) / d log_q = sim_weight (q - p) / a; through the product
        # of experts to each expert's log-softmax, then to its logits kappa cos
        e = (sim_weight / a) * (self.log_q.exp() - self.p)  # (a, n)
        d_log_q_r = w_a[:, None, :] * e[:, :, None]  # (a, n, R)
        d_logits = d_log_q_r - self.log_q_r.exp() * d_log_q_r.sum(dim=1, keepdim=True)
        d_dots = d_logits * self.kappa * self.inv  # norms held constant
        d_cand = d_dots * h_anchor  # (d', a, n, R)
        d_anchor = (d_dots * h_cand).sum(dim=2)  # (d', a, R)
        # L_align: d cos(h, g) / dh = (g / ||g|| - cos h / ||h||) / ||h||
        coef = (-align_weight / a) * w_a  # (a, R)
        # (the norms are at least sqrt(tiny): a zero h gets a finite 0 term)
        d_anchor += coef * (
            self.g_cols * self.inv_ag
            - (self.cos_g / self.norm_anchor[:, 0].square()) * h_anchor[:, :, 0]
        )
        # zero rows pad d' to the product's fast multiple of 4
        D, rows = self.h_source.shape
        d_source = self.h_source.new_zeros((_padded(D), rows))
        d_source[:D].index_add_(1, self.cand_idx, d_cand.reshape(D, -1))
        d_source[:D].index_add_(1, self.anchor_idx, d_anchor.reshape(D, -1))
        return d_source


def aligner_loss_grad(
    components: torch.Tensor,
    feats_flat: torch.Tensor,
    n_regions: int,
    scale: float,
    g: torch.Tensor,
    phat: torch.Tensor,
    w: torch.Tensor,
    matching: torch.Tensor,
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    *,
    kappa_fn,
    kappa_p,
    sim_weight: float,
    align_weight: float,
    with_grad: bool = True,
    workspace=None,
):
    """The faithful loss of :func:`aligner_loss` and its gradient, by hand.

    Returns ``(loss, grad)``: ``loss`` (a,) is ``sim_weight L_sim +
    align_weight L_align`` per anchor and ``grad`` (d', K) the faithful
    gradient of its mean with respect to Lambda (None without
    ``with_grad``): the experts' norms and kappa held constant, L_align
    normalised exactly. Same values as autograd through ``aligner_loss(...,
    exact=False)``; without autograd's graph a step of one anchor costs
    about half as many tensor operations, which is what bounds the
    aligner's thousands of small steps on the CPU.

    Steps: the rows to embed (:func:`_embedding_source`), their embedding,
    the forward pass (:class:`_FaithfulForward`), the KL to the network's
    distribution, then the gradient with respect to the embedded rows
    brought back to Lambda by one product with the rows.
    """
    ws = workspace if workspace is not None else Workspace()
    a, n = candidates.shape
    source, anchor_idx, cand_idx = _embedding_source(
        feats_flat, n_regions, matching, anchors, candidates, ws
    )
    # Both products with the K-wide rows run MKL's fast kernels with d'
    # padded by zero rows to a multiple of 4 and the forward in the (rows, K)
    # @ (K, d') layout: at paper size (d' = 3, one thread, 12.6k rows) about
    # 2.8x and 1.6x faster than (d', K) @ (K, rows) and (d', rows) @ (rows, K)
    # with d' = 3 (the step's two passes over the rows, with their gather)
    D = components.shape[0]
    padded = components.new_zeros((_padded(D), components.shape[1]))
    padded[:D] = components
    h_rows = source @ padded.T  # (rows, padded d')
    h_source = torch.div(h_rows[:, :D].T, scale, out=h_rows.new_empty((D, len(h_rows))))
    fwd = _FaithfulForward(
        h_source, anchor_idx, cand_idx, a, n, n_regions, g[anchors], w[anchors],
        kappa_fn,
    )  # fmt: skip
    p, l_sim = _kl_from_network(phat, anchors, candidates, kappa_p, fwd.log_q)
    loss = fwd.loss(p, l_sim, sim_weight, align_weight)
    if not with_grad:
        return loss, None
    d_source = fwd.grad_embeddings(sim_weight, align_weight)  # (padded d', rows)
    return loss, (d_source @ source)[:D] / scale


def _padded(n_dims: int) -> int:
    """``n_dims`` rounded up to a multiple of 4."""
    return -(-n_dims // 4) * 4
