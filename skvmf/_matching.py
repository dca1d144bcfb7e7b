"""Torch kernels of SPEC 4-5: region matching, importance weights, aligner loss.

Everything here works on tensors already on the right device and dtype; the
public wrappers in :mod:`skvmf.alignment` validate input and convert arrays.

Shapes: N images, R regions per image, K channels, d' embedding dimensions,
``a`` anchors in a chunk, ``n`` candidates per anchor, ``m`` candidates in a
block of the full matching.
"""

from __future__ import annotations

import torch

# Working-memory budget of the automatic chunk sizes (score blocks, gathered
# candidates); a GPU gets larger blocks because its matmuls need them.
_BUDGET_CPU = 256 * 2**20
_BUDGET_CUDA = 1024 * 2**20
_MAX_REGIONS = 32767  # region indices are stored as int16
# From this many channels on, the aligner embeds each distinct matched region
# once; below, gathering the rows is cheaper than finding the distinct ones.
_DEDUPE_MIN_CHANNELS = 128


def memory_budget(device: torch.device) -> int:
    """Bytes the automatic chunk sizes may use on ``device``."""
    return _BUDGET_CUDA if device.type == "cuda" else _BUDGET_CPU


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
    """Each regional feature over its channel L2 norm; zero regions stay zero."""
    norm = torch.linalg.vector_norm(features, dim=-1, keepdim=True)
    return features / torch.where(norm > 0, norm, torch.ones_like(norm))


# ---------------------------------------------------------------------------
# region matching
# ---------------------------------------------------------------------------
def block_max(weighted: torch.Tensor, candidates: torch.Tensor, workspace=None):
    """Best match of every anchor region among each candidate's regions.

    ``scores[a, r, j, r'] = sum_k weighted[a, r, k] cand[j, r', k]`` (one
    matmul), then the max over r'.

    Parameters
    ----------
    weighted : tensor (a, R, K)
        Anchor features already multiplied by their channel weights.
    candidates : tensor (m, R, K) or (a, m, R, K)
        Candidates shared by all anchors, or one set per anchor.
    workspace : Workspace, optional
        Holds the score block (and the results, which are then only valid
        until the next call with the same workspace).

    Returns
    -------
    values, indices : tensors (a, R, m)
        ``s_ij^(r)`` and ``r'_ij(r)`` (int64; ties go to the first region).
    """
    a, R, K = weighted.shape
    shared = candidates.dim() == 3
    m = candidates.shape[0] if shared else candidates.shape[1]
    ws = workspace if workspace is not None else Workspace()
    dtype, device = weighted.dtype, weighted.device
    if shared:
        scores = ws.get("scores", (a * R, m * R), dtype, device)
        torch.mm(weighted.reshape(a * R, K), candidates.reshape(m * R, K).T, out=scores)
    else:
        scores = ws.get("scores", (a, R, m * R), dtype, device)
        torch.bmm(weighted, candidates.reshape(a, m * R, K).transpose(1, 2), out=scores)
    values = ws.get("values", (a, R, m), dtype, device)
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

    Returns
    -------
    indices : int16 tensor (A, M, R)
        ``r'_ij(r)`` for M = N (full) or n (candidates).
    scores : tensor (A, M, R) or None
        ``s_ij^(r)`` when ``return_scores``.
    """
    N, R, K = fhat.shape
    A = anchors.shape[0]
    M = N if candidates is None else candidates.shape[1]
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
                cand = fhat[j0:j1]
            else:
                cand = gather_rows(
                    fhat, candidates[start:stop, j0:j1].reshape(-1), ws, "cand"
                ).view(stop - start, j1 - j0, R, K)
            values, idx = block_max(weighted, cand, ws)
            indices[start:stop, j0:j1] = idx.transpose(1, 2)
            if scores is not None:
                scores[start:stop, j0:j1] = values.transpose(1, 2)
    return indices, scores


# ---------------------------------------------------------------------------
# sample-to-sample distribution and candidates
# ---------------------------------------------------------------------------
def unit_rows(P: torch.Tensor) -> torch.Tensor:
    """p_hat = P / ||P|| (a probability row is never zero)."""
    return P / torch.linalg.vector_norm(P, dim=1, keepdim=True)


def log_sample_distribution(
    phat: torch.Tensor, anchors: torch.Tensor, candidates: torch.Tensor, kappa_p
):
    """log P(x_j | x_i) over j in S_i, shape (a, n)."""
    sim = torch.einsum("ac,anc->an", phat[anchors], phat[candidates])
    return torch.log_softmax(kappa_p * sim, dim=1)


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
    ``ds/dv_ik = f_ik^(r) f_jk^(r')`` at the matched r': a gather of the
    matched candidate regions instead of a second matmul of the full score
    block.
    """

    @staticmethod
    def forward(ctx, v, anchor_feats, cand_feats, workspace):
        # v (a, K); anchor_feats (a, R, K); cand_feats (a, n, R, K)
        values, idx = block_max(anchor_feats * v[:, None, :], cand_feats, workspace)
        values, idx = values.clone(), idx.clone()  # the workspace is reused
        ctx.save_for_backward(anchor_feats, cand_feats, idx)
        ctx.workspace = workspace
        return values  # (a, R, n)

    @staticmethod
    def backward(ctx, grad):
        anchor_feats, cand_feats, idx = ctx.saved_tensors
        a, n, R, K = cand_feats.shape
        # row of cand_feats.reshape(a * n * R, K) holding region idx[a, r, j]
        # of candidate j of anchor a
        base = (torch.arange(a * n, device=idx.device) * R).view(a, 1, n)
        rows = (base + idx).reshape(-1)
        matched = gather_rows(
            cand_feats.reshape(a * n * R, K), rows, ctx.workspace, "matched"
        )
        # sum_j grad[a, r, j] * matched[a, r, j, :]
        summed = torch.bmm(
            grad.reshape(a * R, 1, n).to(matched.dtype),
            matched.view(a * R, n, K),
        ).view(a, R, K)
        return (summed * anchor_feats).sum(dim=1), None, None, None


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
) -> torch.Tensor:
    """KL(P(.|x_i) || Q(.|x_i)) of SPEC 4 for each anchor, shape (a,).

    ``w`` (a, R) and ``v`` (a, K) are the anchors' region and channel weights;
    ``fhat`` (N, R, K) the channel-normalised features and ``phat`` (N, C) the
    unit soft labels. Run the backward pass before the next call with the
    same ``workspace``: the gathered candidates live there.
    """
    ws = workspace if workspace is not None else Workspace()
    a, n = candidates.shape
    N, R, K = fhat.shape
    log_p = log_sample_distribution(phat, anchors, candidates, kappa_p).to(fhat.dtype)
    cand_feats = gather_rows(fhat, candidates.reshape(-1), ws, "cand").view(a, n, R, K)
    s = _MatchedScores.apply(v, fhat.index_select(0, anchors), cand_feats, ws)
    log_q_r = torch.log_softmax(kappa_m * s, dim=2)  # expert of region r over j
    log_q = torch.log_softmax(torch.einsum("ar,arn->an", w, log_q_r), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def project_simplex_abs(x: torch.Tensor) -> torch.Tensor:
    """|x| / sum |x| per row (a zero row becomes uniform)."""
    x = x.abs()
    total = x.sum(dim=1, keepdim=True)
    uniform = torch.full_like(x, 1.0 / x.shape[1])
    return torch.where(total > 0, x / torch.where(total > 0, total, 1.0), uniform)


def bytes_per_anchor_importance(n: int, R: int, K: int, itemsize: int) -> int:
    """Working memory of one anchor in :func:`importance_loss` and its backward.

    Gathered candidates (n R K), the score block (n R R), the max values and
    indices (n R), the matched regions of the backward (n R K).
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
    local = torch.arange(a * n, device=device)[:, None] * R + matched.view(a * n, R)
    local = local.view(-1)
    seen = torch.zeros(a * n * R, dtype=torch.bool, device=device)
    seen[local] = True
    distinct = torch.nonzero(seen).squeeze(1)
    position = torch.empty(a * n * R, dtype=torch.long, device=device)
    position[distinct] = torch.arange(distinct.shape[0], device=device)
    rows = candidates.reshape(-1)[distinct // R] * R + distinct % R
    return rows, position[local]


def _norm_leading(x: torch.Tensor) -> torch.Tensor:
    """L2 norm over the first axis, with a zero gradient at zero.

    ``sqrt(max(sum x^2, tiny))``: a zero vector gets the norm sqrt(tiny)
    (its cosines are 0 anyway) instead of the NaN gradient of sqrt at 0;
    also far faster than ``vector_norm(dim=0)`` on the CPU.
    """
    return (x * x).sum(dim=0).clamp_min(torch.finfo(x.dtype).tiny).sqrt()


def _safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den with 0 where den == 0 (zero vectors have no direction)."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), 0.0)


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
        False (faithful): every cosine divides by norms without gradient and
        kappa has none. True: true cosines and a differentiable kappa.
    workspace : Workspace, optional
        Holds the gathered candidate regions; run the backward pass before
        the next call with the same workspace.
    """
    ws = workspace if workspace is not None else Workspace()
    R = n_regions
    a, n = candidates.shape
    anchor_rows = (anchors[:, None] * R + torch.arange(R, device=anchors.device)).view(
        -1
    )
    # Embeddings are kept as (d', rows): Lambda @ rows^T and its backward,
    # grad @ rows, stream the K-wide rows in row-major order, and the norms
    # and dot products reduce over the short leading axis.
    anchor_feats = feats_flat.index_select(0, anchor_rows)
    h_anchor = ((components @ anchor_feats.T) / scale).view(-1, a, 1, R)
    matched = matching[anchors[:, None], candidates].long()  # (a, n, R)
    if feats_flat.shape[1] >= _DEDUPE_MIN_CHANNELS:
        unique_rows, inverse = _distinct_regions(candidates, matched)
        cand_feats = gather_rows(feats_flat, unique_rows, ws, "cand")
        h_unique = (components @ cand_feats.T) / scale
        h_cand = h_unique[:, inverse].view(-1, a, n, R)
    else:
        cand_rows = (candidates[..., None] * R + matched).view(-1)
        cand_feats = gather_rows(feats_flat, cand_rows, ws, "cand")
        h_cand = ((components @ cand_feats.T) / scale).view(-1, a, n, R)

    norm_anchor = _norm_leading(h_anchor)[:, 0]  # (a, R)
    norm_cand = _norm_leading(h_cand)  # (a, n, R)
    norm_g = torch.linalg.vector_norm(g[anchors], dim=-1)  # (a,)
    if not exact:
        norm_anchor, norm_cand = norm_anchor.detach(), norm_cand.detach()
    kappa = kappa_fn(norm_anchor if exact else norm_anchor.detach())

    dots = (h_anchor * h_cand).sum(dim=0)  # (a, n, R)
    cos = _safe_divide(dots, norm_anchor[:, None, :] * norm_cand)
    log_q_r = torch.log_softmax(kappa[:, None, :] * cos, dim=1)  # over j
    w_a = w[anchors]
    log_q = torch.log_softmax(torch.einsum("ar,anr->an", w_a, log_q_r), dim=1)
    log_p = log_sample_distribution(phat, anchors, candidates, kappa_p).to(log_q.dtype)
    l_sim = (log_p.exp() * (log_p - log_q)).sum(dim=1)

    cos_g = _safe_divide(
        torch.einsum("dar,ad->ar", h_anchor[:, :, 0], g[anchors]),
        norm_anchor * norm_g[:, None],
    )
    l_align = -(w_a * cos_g).sum(dim=1)
    return l_sim, l_align
