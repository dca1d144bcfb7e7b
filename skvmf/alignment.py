"""Importance weights, region matching and the regional aligner (SPEC 4-5).

For one layer of a network, the regional features f_i^(r) (R regions of K
channels per image) are embedded as ``h_i^(r) = Lambda f_i^(r) / s`` in the
same d'-dimensional space as the projected sample features g_i of
:class:`skvmf.projection.SampleProjector`, so that

- images that the network finds similar (close soft labels) have similar
  regions: a product of per-region vMF experts over matched regions mimics
  the network's sample-to-sample distribution ``P(x_j | x_i)``;
- each image's important regions point along its g_i.

The pieces:

- :func:`sample_distribution`: the network's ``P(x_j | x_i)`` over a set of
  candidates; :func:`draw_candidates` draws those sets.
- :func:`match_regions`: for a pair of images, the best-matching region of
  one for each region of the other, on channel-normalised features weighted
  by the anchor's channel weights.
- :func:`fit_importance_weights`: per image, which regions (w) and channels
  (v) explain the network's sample-to-sample distribution.
- :class:`RegionalAligner`: learns Lambda per layer (scikit-learn transformer
  that adds ``h`` to a :class:`~skvmf.features.FeatureSet`).

All heavy work runs in torch (float32, log-space softmaxes; the expert
concentration kappa_m = 1000 is never exponentiated directly) on the CPU or
a CUDA device, in chunks of anchors so that memory stays bounded.

References
----------
Li, Wang, Zhang. "Visualizing the Emergence of Intermediate Visual Patterns
in DNNs", NeurIPS 2021, and its supplement (Eq. 4-5, the align loss).
"""

from __future__ import annotations

import math
import warnings
import zlib
from numbers import Integral, Real

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _matching as _mk
from ._convergence import warn_if_not_falling
from ._progress import message, progress
from ._soft_labels import check_soft_labels
from ._torch_kappa import TorchKappa
from ._torch_utils import MomentumSGD, resolve_device, torch_generator
from .features import FeatureSet

__all__ = [
    "RegionalAligner",
    "draw_candidates",
    "fit_importance_weights",
    "match_regions",
    "sample_distribution",
]

_DTYPE = torch.float32
_INIT_STD = 0.1  # Lambda ~ N(0, 0.1^2), as M of SampleProjector (SPEC 3)
# kappa_m = 1000 is the reference's value for K = 512 channels (SPEC 4)
_KAPPA_M_REFERENCE, _KAPPA_M_CHANNELS = 1000.0, 512


# ---------------------------------------------------------------------------
# input helpers
# ---------------------------------------------------------------------------
def _is_tensor(x) -> bool:
    return isinstance(x, torch.Tensor)


def _to_numpy(x):
    if _is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _refuse_sparse(x, name):
    sparse_tensor = _is_tensor(x) and x.layout != torch.strided
    if sparse_tensor or (not _is_tensor(x) and hasattr(x, "toarray")):
        raise ValueError(
            f"{name}: sparse input is not supported; give a dense array of "
            "shape (n_images, n_regions, n_channels)"
        )


def _regions_tensor(features, device, name="features", min_regions=1):
    """Regional features as a float tensor (N, R, K) on ``device``.

    Torch input keeps a floating dtype (float64 stays float64); anything else
    becomes float32.
    """
    _refuse_sparse(features, name)
    if _is_tensor(features):
        t = features.detach()
        if not t.is_floating_point():
            t = t.to(_DTYPE)
        t = t.to(device)
    else:
        try:
            arr = np.asarray(features)
        except Exception as exc:
            raise ValueError(f"{name} must be a numeric array (N, R, K)") from exc
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or (
            np.issubdtype(arr.dtype, np.complexfloating)
        ):
            raise ValueError(f"{name} must be real numbers; got dtype {arr.dtype}")
        # contiguous: torch refuses negative strides (reversed views)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not arr.flags.writeable:  # memmaps, joblib's shared arrays
            arr = arr.copy()
        t = torch.as_tensor(arr, device=device)
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
    if n_regions > _mk._MAX_REGIONS:
        raise ValueError(
            f"{name} has {n_regions} regions per image; region indices are stored as "
            f"int16, so at most {_mk._MAX_REGIONS} are supported"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _index_tensor(x, name, device, n_images):
    """Integer indices into N images as an int64 tensor, range-checked."""
    arr = _to_numpy(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer image indices; got {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= n_images):
        bad = arr.min() if arr.min() < 0 else arr.max()
        raise ValueError(
            f"{name} holds the index {int(bad)}, outside [0, {n_images}) images"
        )
    return torch.as_tensor(arr.astype(np.int64), device=device)


def _anchors_and_candidates(anchors, candidates, n_images, device):
    """Validated anchors (A,) and candidates (A, n) or None."""
    if anchors is None:
        a = torch.arange(n_images, device=device)
    else:
        a = _index_tensor(anchors, "anchors", device, n_images)
        if a.dim() != 1:
            raise ValueError(f"anchors must be 1-D; got shape {tuple(a.shape)}")
    if candidates is None:
        return a, None
    c = _index_tensor(candidates, "candidates", device, n_images)
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


def _check_positive_int(value, name, minimum=1):
    if not isinstance(value, Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _check_nonnegative(value, name):
    ok = (
        isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    )
    if not ok or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number; got {value!r}")
    return float(value)


def _candidate_count(n_candidates, n_images):
    n = _check_positive_int(n_candidates, "n_candidates")
    if n_images < 2:
        raise ValueError(f"at least 2 images are needed; got {n_images}")
    if n > n_images - 1:
        raise ValueError(
            f"n_candidates={n} but there are only {n_images - 1} other images "
            f"per anchor (n_images={n_images}); use n_candidates <= {n_images - 1}"
        )
    return n


def _auto_chunk(per_anchor_bytes, device, chunk_size, n_anchors):
    if chunk_size is not None:
        return _check_positive_int(chunk_size, "chunk_size")
    budget = _mk.memory_budget(device)
    return int(max(1, min(n_anchors, budget // max(per_anchor_bytes, 1))))


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------
def draw_candidates(n_samples, n_candidates=100, *, anchors=None, random_state=None):
    """Draw, for each anchor image, a set of distinct other images.

    Every row is a uniform draw without replacement from the images other than
    its anchor (the candidate sets S_i of SPEC 4), for all anchors at once.

    Parameters
    ----------
    n_samples : int
        Number of images N.
    n_candidates : int, default=100
        Size n of each set; at most N - 1.
    anchors : array-like of int of shape (A,), optional
        The anchor images (default: every image, ``0 .. N-1``).
    random_state : int, RandomState instance or None, default=None
        Seed of the draw.

    Returns
    -------
    ndarray of shape (A, n_candidates), dtype int64
        Row a holds distinct image indices, none equal to ``anchors[a]``.

    Examples
    --------
    >>> from skvmf.alignment import draw_candidates
    >>> S = draw_candidates(10, 4, random_state=0)
    >>> S.shape
    (10, 4)
    >>> bool((S != np.arange(10)[:, None]).all())
    True
    """
    N = _check_positive_int(n_samples, "n_samples")
    n = _candidate_count(n_candidates, N)
    a, _ = _anchors_and_candidates(anchors, None, N, torch.device("cpu"))
    gen = torch_generator(random_state)
    return _mk.draw_candidates(N, a, n, gen).numpy()


def sample_distribution(soft_labels, candidates, *, anchors=None, kappa_p=5.0):
    """The network's sample-to-sample distribution P(x_j | x_i) (SPEC 4).

    With unit soft labels ``p_i = P(.|x_i) / ||P(.|x_i)||``,
    ``P(x_j | x_i) = softmax over j in S_i of kappa_p p_i . p_j``.

    Parameters
    ----------
    soft_labels : array-like or tensor of shape (N, C)
        The network's P(y|x) (rows are probabilities).
    candidates : array-like of int of shape (A, n)
        Candidate set S_i of each anchor (anchor excluded), for instance from
        :func:`draw_candidates`.
    anchors : array-like of int of shape (A,), optional
        The anchors of the rows of ``candidates`` (default ``0 .. N-1``).
    kappa_p : float, default=5.0
        Concentration of the distribution.

    Returns
    -------
    ndarray or tensor of shape (A, n)
        Row a is P(x_j | x_anchor) over its candidates (sums to 1); a tensor
        (on the soft labels' device) when ``soft_labels`` is a tensor, else a
        float64 array.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.alignment import sample_distribution
    >>> P = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> sample_distribution(P, [[1, 2], [0, 2], [0, 1]], kappa_p=np.log(3)).round(3)
    array([[0.75, 0.25],
           [0.75, 0.25],
           [0.5 , 0.5 ]])
    """
    kappa_p = _check_nonnegative(kappa_p, "kappa_p")
    P = check_soft_labels(_to_numpy(soft_labels))
    if _is_tensor(soft_labels):
        device = soft_labels.device
        dtype = soft_labels.dtype if soft_labels.is_floating_point() else _DTYPE
    else:
        device, dtype = torch.device("cpu"), torch.float64
    N = P.shape[0]
    a, c = _anchors_and_candidates(anchors, candidates, N, device)
    if c is None:
        raise ValueError("candidates are required")
    phat = _mk.unit_rows(torch.as_tensor(P, dtype=dtype, device=device))
    out = _mk.log_sample_distribution(phat, a, c, kappa_p).exp()
    return out if _is_tensor(soft_labels) else out.numpy()


def match_regions(
    features,
    channel_weights=None,
    *,
    anchors=None,
    candidates=None,
    chunk_size=None,
    device=None,
    return_scores=False,
):
    """Match every region of each anchor image with a region of other images.

    On channel-L2-normalised regional features ``f^`` (SPEC 4):
    ``s_ij^(r) = max_r' sum_k v_ik f^_ik^(r) f^_jk^(r')`` and ``r'_ij(r)`` is
    the maximising region of image j (the first one in case of a tie).

    Parameters
    ----------
    features : array-like or tensor of shape (N, R, K)
        Regional features of N images (normalised over K here; R < 32768).
    channel_weights : array-like or tensor of shape (N, K) or (K,), optional
        Channel weights v_i of each image when it is the anchor (a shared
        vector for 1-D input), non-negative. Default: uniform ``1 / K``.
    anchors : array-like of int of shape (A,), optional
        Anchor images (default: all N).
    candidates : array-like of int of shape (A, n), optional
        Images matched against each anchor. Default: all N images (the full
        matching, the anchor itself included).
    chunk_size : int, optional
        Anchors per chunk. Default: as many as fit a working-memory budget
        (256 MiB on the CPU, 1 GiB on CUDA); candidates are then also split
        into blocks when one anchor exceeds it.
    device : str or torch.device, optional
        Where to compute (default: the tensor's device, else the CPU).
    return_scores : bool, default=False
        Also return ``s_ij^(r)``.

    Returns
    -------
    indices : ndarray or tensor of shape (A, M, R), dtype int16
        ``indices[a, j, r] = r'_{anchor_a, j}(r)``; M = N for the full
        matching, else n (column j is ``candidates[a, j]``).
    scores : ndarray or tensor of shape (A, M, R)
        ``s_ij^(r)``; only when ``return_scores``.

    Notes
    -----
    Cost: A M K R^2 multiply-adds, as one matmul per chunk of anchors
    (weighted anchor regions times candidate regions) and a max over the
    candidate regions. Peak working memory, besides the normalised copy of
    the features (4 N R K bytes) and the result (2 A M R bytes, plus
    4 A M R with scores): ``4 c m R^2`` bytes for the score block of ``c``
    anchors by ``m`` candidates, plus ``12 c m R`` for its maxima and their
    indices (and ``4 c m R K`` for the gathered candidates when ``candidates``
    is given). Float32 arrays are computed in float32; float64 tensors in
    float64. Arrays in give arrays out; tensors give tensors.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.alignment import match_regions
    >>> f = np.zeros((2, 2, 2))
    >>> f[0] = [[1, 0], [0, 1]]      # image 0: region 0 along e0, region 1 e1
    >>> f[1] = [[0, 1], [1, 0]]      # image 1: swapped
    >>> idx = match_regions(f)
    >>> idx.dtype, idx.shape
    (dtype('int16'), (2, 2, 2))
    >>> idx[0, 1]                    # region r of image 0 matches region 1 - r
    array([1, 0], dtype=int16)
    """
    dev = resolve_device(
        device if device is not None or not _is_tensor(features) else features.device
    )
    F = _regions_tensor(features, dev)
    N, R, K = F.shape
    a, c = _anchors_and_candidates(anchors, candidates, N, dev)
    weights = None
    if channel_weights is not None:
        if _is_tensor(channel_weights):
            v = channel_weights.detach().to(dev, F.dtype)
        else:
            v = torch.as_tensor(
                np.asarray(channel_weights, dtype=np.float64), dtype=F.dtype, device=dev
            )
        if v.dim() == 1:
            v = v[None, :].expand(N, -1)
        if v.dim() != 2 or v.shape != (N, K):
            raise ValueError(
                f"channel_weights must have shape (N, K) = ({N}, {K}) or (K,); "
                f"got {tuple(v.shape)}"
            )
        if not bool(torch.isfinite(v).all()) or bool((v < 0).any()):
            raise ValueError("channel_weights must be finite and non-negative")
        weights = v.index_select(0, a)
    fhat = _mk.normalize_channels(F)
    chunk, block = _mk.matching_plan(
        a.shape[0],
        N if c is None else c.shape[1],
        R,
        K,
        F.element_size(),
        dev,
        None if chunk_size is None else _check_positive_int(chunk_size, "chunk_size"),
        gathered=c is not None,
    )
    idx, scores = _mk.match_all(
        fhat,
        weights,
        a,
        c,
        chunk_size=chunk,
        block_size=block,
        return_scores=return_scores,
    )
    if not _is_tensor(features):
        idx = idx.cpu().numpy()
        scores = None if scores is None else scores.cpu().numpy()
    return (idx, scores) if return_scores else idx


def _resolve_kappa_m(kappa_m, n_channels):
    """kappa_m, with ``"auto"`` = 1000 K / 512 (the reference's 1000 at K = 512).

    With uniform channel weights the match score is about cos / K, so this
    keeps ``kappa_m s`` near ``2 cos`` at every channel count (SPEC 4 [D]).
    """
    if isinstance(kappa_m, str):
        if kappa_m != "auto":
            raise ValueError(f"kappa_m must be a number or 'auto'; got {kappa_m!r}")
        return _KAPPA_M_REFERENCE * n_channels / _KAPPA_M_CHANNELS
    return _check_nonnegative(kappa_m, "kappa_m")


def _norm_or_one(x):
    """Norms over the last axis, rescaled first (no overflow), 1 where 0."""
    top = x.abs().amax(dim=-1, keepdim=True)
    top = torch.where(top > 0, top, torch.ones_like(top))
    n = torch.linalg.vector_norm(x / top, dim=-1) * top.squeeze(-1)
    return torch.where(n > 0, n, torch.ones_like(n))


def _same_sets(n_candidates, n_images):
    """Whether every candidate set is all the other images (nothing to draw)."""
    return n_candidates == n_images - 1


class _RowSGD:
    """torch.optim.SGD's update (no dampening, no Nesterov) for the rows of
    the importance weights, with a step size per row; a zero buffer makes
    the first step ``b = grad``, as torch's does."""

    def __init__(self, n_rows, width, lr, momentum, weight_decay, like):
        self.buffer = torch.zeros((n_rows, width), dtype=like.dtype, device=like.device)
        self.momentum, self.weight_decay = momentum, weight_decay
        self.rate = torch.full(
            (n_rows, 1), float(lr), dtype=like.dtype, device=like.device
        )

    def step(self, rows, point, grad):
        """The projected point after one step of ``rows`` from ``point``."""
        b = self.buffer[rows]
        b.mul_(self.momentum).add_(grad).add_(point, alpha=self.weight_decay)
        return _mk.project_simplex_abs(point - self.rate[rows] * b)

    def refuse(self, rows, rose):
        """Rows whose step raised their loss: no momentum, half the step."""
        self.buffer[rows].masked_fill_(rose, 0.0)
        rate = self.rate[rows]
        rate.copy_(torch.where(rose, 0.5 * rate, rate))


def _fit_importance(
    fhat,
    phat,
    generator,
    *,
    n_candidates,
    kappa_p,
    kappa_m,
    n_steps,
    lr,
    momentum,
    weight_decay,
    step_control=True,
    chunk_size,
    verbose,
    desc="importance weights",
):
    """Batched SGD of SPEC 4 on tensors; returns (w, v, losses).

    ``losses[0]`` is the mean KL at the uniform start and ``losses[t]`` the
    mean KL after step t on step t's candidates; the start is evaluated on
    the last step's candidates, so that the first and last values compare
    start and end on the same candidates.

    The N per-image problems are independent, and SGD acts row by row, so
    each chunk of anchors takes its whole step before the next chunk: the
    result does not depend on the chunking. With ``step_control``, an image
    whose step raised its loss (on the same candidates) keeps its previous
    weights, drops its momentum and halves its step size for the steps that
    follow.

    When the candidates are all N - 1 other images (``n_candidates = N -
    1``), every step sees the same sets: the draw is skipped, and the loss
    after a step is the next step's loss, so the check is made there (from
    the stored previous point and gradient when the step is refused) and
    only the last step needs an extra evaluation. Otherwise each chunk
    evaluates its loss after the step on the candidates it just used.
    """
    N, R, K = fhat.shape
    dev, dtype = fhat.device, fhat.dtype
    w = torch.full((N, R), 1.0 / R, dtype=dtype, device=dev)
    v = torch.full((N, K), 1.0 / K, dtype=dtype, device=dev)
    opt_w = _RowSGD(N, R, lr, momentum, weight_decay, w)
    opt_v = _RowSGD(N, K, lr, momentum, weight_decay, w)
    per_anchor = _mk.bytes_per_anchor_importance(
        n_candidates, R, K, fhat.element_size()
    )
    if chunk_size is None:
        budget = _mk.step_budget(dev)
        chunk = int(max(1, min(N, budget // max(per_anchor, 1))))
    else:
        chunk = _check_positive_int(chunk_size, "chunk_size")
    everyone = torch.arange(N, device=dev)
    chunks = [slice(i, min(i + chunk, N)) for i in range(0, N, chunk)]
    same_sets = _same_sets(n_candidates, N)
    if same_sets:
        cand = _mk.all_others(N, dev)
        # the last accepted point of each image, its loss and its gradient
        kept_w, kept_v = w.clone(), v.clone()
        kept_gw, kept_gv = torch.zeros_like(w), torch.zeros_like(v)
        kept_loss = torch.full((N,), math.inf, dtype=dtype, device=dev)
    ws = _mk.Workspace()
    losses = []

    def record(total, step):
        value = float(total) / N
        if not math.isfinite(value):
            raise ValueError(
                f"the importance weights diverged at step {step} (loss {value})"
            )
        losses.append(value)

    for step in progress(
        range(n_steps), verbose=verbose, total=n_steps, desc=desc, unit="step"
    ):
        if not same_sets:
            # one draw for every anchor, so the result does not depend on chunking
            cand = _mk.draw_candidates(N, everyone, n_candidates, generator)
        before_total = torch.zeros((), dtype=torch.float64, device=dev)
        after_total = torch.zeros((), dtype=torch.float64, device=dev)
        for sl in chunks:
            problem = _mk.ImportanceProblem(
                fhat, phat, everyone[sl], cand[sl], kappa_p, ws
            )
            w_c = w[sl].clone().requires_grad_(True)
            v_c = v[sl].clone().requires_grad_(True)
            loss = problem.loss(w_c, v_c, kappa_m)
            # per-image problems: the summed loss gives each image's
            # parameters exactly its own gradient
            loss.sum().backward()
            with torch.no_grad():
                loss, gw, gv = loss.detach(), w_c.grad, v_c.grad
                point_w, point_v = w[sl], v[sl]
                if same_sets:
                    if step_control:  # was the previous step a rise?
                        rose = ~(loss <= kept_loss[sl])[:, None]
                        opt_w.refuse(sl, rose)
                        opt_v.refuse(sl, rose)
                        point_w = torch.where(rose, kept_w[sl], point_w)
                        point_v = torch.where(rose, kept_v[sl], point_v)
                        gw = torch.where(rose, kept_gw[sl], gw)
                        gv = torch.where(rose, kept_gv[sl], gv)
                        loss = torch.minimum(loss, kept_loss[sl])
                    kept_w[sl], kept_v[sl] = point_w, point_v
                    kept_gw[sl], kept_gv[sl], kept_loss[sl] = gw, gv, loss
                    # the loss at the point this step starts from
                    after_total += loss.sum(dtype=torch.float64)
                new_w = opt_w.step(sl, point_w, gw)
                new_v = opt_v.step(sl, point_v, gv)
                if not same_sets:
                    before_total += loss.sum(dtype=torch.float64)
                    after = problem.loss(new_w, new_v, kappa_m)
                    if step_control:
                        # a NaN after the step counts as a rise
                        rose = ~(after <= loss)[:, None]
                        opt_w.refuse(sl, rose)
                        opt_v.refuse(sl, rose)
                        new_w = torch.where(rose, point_w, new_w)
                        new_v = torch.where(rose, point_v, new_v)
                        after = torch.minimum(after, loss)
                    after_total += after.sum(dtype=torch.float64)
                w[sl], v[sl] = new_w, new_v
        if same_sets:
            record(after_total, step)  # the start, then after step - 1
        else:
            if step == 0:
                record(before_total, step)
            record(after_total, step)
    if not same_sets and n_steps > 0:
        # the start on the last step's candidates, like the last value: a
        # start measured on other candidates differs by their draw, which
        # can exceed what a short fit gains
        total = torch.zeros((), dtype=torch.float64, device=dev)
        with torch.no_grad():
            for sl in chunks:
                problem = _mk.ImportanceProblem(
                    fhat, phat, everyone[sl], cand[sl], kappa_p, ws
                )
                a = sl.stop - sl.start
                start = problem.loss(
                    torch.full((a, R), 1.0 / R, dtype=dtype, device=dev),
                    torch.full((a, K), 1.0 / K, dtype=dtype, device=dev),
                    kappa_m,
                )
                total += start.sum(dtype=torch.float64)
        losses[0] = float(total) / N
    if same_sets and n_steps > 0:
        # the loss after the last step, and its check
        total = torch.zeros((), dtype=torch.float64, device=dev)
        with torch.no_grad():
            for sl in chunks:
                problem = _mk.ImportanceProblem(
                    fhat, phat, everyone[sl], cand[sl], kappa_p, ws
                )
                after = problem.loss(w[sl], v[sl], kappa_m)
                if step_control:
                    rose = ~(after <= kept_loss[sl])[:, None]
                    w[sl] = torch.where(rose, kept_w[sl], w[sl])
                    v[sl] = torch.where(rose, kept_v[sl], v[sl])
                    after = torch.minimum(after, kept_loss[sl])
                total += after.sum(dtype=torch.float64)
        record(total, n_steps)
    return w, v, np.asarray(losses, dtype=np.float64)


def fit_importance_weights(
    features,
    soft_labels,
    *,
    n_candidates=100,
    kappa_p=5.0,
    kappa_m=1000.0,
    n_steps=20,
    lr=0.05,
    momentum=0.9,
    weight_decay=5e-4,
    step_control=True,
    from_logits=False,
    temperature=4.0,
    chunk_size=None,
    device=None,
    random_state=None,
    verbose=0,
    return_losses=False,
):
    """Fit each image's region weights w_i and channel weights v_i (SPEC 4).

    For anchor i and candidates S_i (redrawn every step), each region r is an
    expert ``q_i^(r)(j) = softmax over j of kappa_m s_ij^(r)`` with the
    matching score ``s_ij^(r)`` of :func:`match_regions` under the channel
    weights v_i; the model is the product of experts
    ``Q(x_j|x_i) ∝ prod_r q_i^(r)(j)^(w_ir)`` (a w-weighted sum of
    log-softmaxes, renormalised over j). w_i (simplex over R) and v_i
    (simplex over K) minimise ``KL(P(.|x_i) || Q(.|x_i))`` against the
    network's :func:`sample_distribution`, by SGD with momentum and weight
    decay from uniform weights; after every step both are projected back by
    absolute value and L1 normalisation. With ``step_control`` (default), a
    step that raises an image's loss on its candidates is not taken: that
    image keeps its weights, drops its momentum and halves its step size.

    Parameters
    ----------
    features : array-like or tensor of shape (N, R, K)
        Regional features (channel-normalised here).
    soft_labels : array-like of shape (N, C)
        The network's P(y|x), or logits with ``from_logits=True``.
    n_candidates : int, default=100
        Size of each candidate set S_i (at most N - 1).
    kappa_p : float, default=5.0
        Concentration of the network's sample-to-sample distribution.
    kappa_m : float or "auto", default=1000.0
        Concentration of the region experts (the reference's value).
        ``"auto"`` is ``1000 K / 512``: the reference's sharpness at K = 512
        channels, where uniform channel weights give match scores of about
        cos / K, carried to every K. With 1000 at K = 8 the experts are 64
        times sharper and plain SGD steps overshoot; ``step_control`` keeps
        the loss falling there, and reached a lower loss than ``"auto"``
        (user guide, deviations: "Importance weights: kappa_m and step
        control").
    n_steps : int, default=20
        SGD steps per image.
    lr : float, default=0.05
        Learning rate.
    momentum : float, default=0.9
        SGD momentum.
    weight_decay : float, default=5e-4
        SGD weight decay.
    step_control : bool, default=True
        Refuse, per image, a step that raises its loss (evaluated on the
        same candidates after the step), and halve that image's step size.
        False takes every step, as the reference does.
    from_logits : bool, default=False
        ``soft_labels`` are logits: use ``softmax(soft_labels / temperature)``.
    temperature : float, default=4.0
        Temperature for ``from_logits``.
    chunk_size : int, optional
        Anchors solved together per matmul; default: as many as fit the
        working-memory budget (256 MiB on the CPU, 1 GiB on CUDA), at
        ``4 n R (2 K + R)`` bytes per anchor.
    device : str or torch.device, optional
        Where to compute (default: the tensor's device, else the CPU).
    random_state : int, RandomState instance or None, default=None
        Seed of the candidate draws.
    verbose : int, default=0
        Progress bar over the steps when positive.
    return_losses : bool, default=False
        Also return the loss curve.

    Returns
    -------
    w : ndarray or tensor of shape (N, R)
        Region importance weights; rows on the simplex.
    v : ndarray or tensor of shape (N, K)
        Channel weights; rows on the simplex.
    losses : ndarray of shape (n_steps + 1,)
        Only with ``return_losses``: the mean KL over images at the uniform
        start, then after each step (on that step's candidates); the start
        is evaluated on the last step's candidates, so that the first and
        last values compare start and end on the same candidates. Empty
        when ``n_steps=0``.

    Warns
    -----
    ConvergenceWarning
        When the loss did not fall (:func:`skvmf._convergence.loss_fell`).

    Notes
    -----
    All N per-image problems are solved at once, in chunks of anchors: the
    loss summed over images gives every image's parameters exactly the
    gradient of its own loss, and SGD acts element-wise, so this is the same
    computation as one image at a time. The gradient of the max over r'
    flows to the argmax (computed by a gather of the matched regions rather
    than a second matmul). Cost per step: N n K R^2 multiply-adds, twice
    (the loss after the step is evaluated too, with or without
    ``step_control``, for the loss curve).

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.alignment import fit_importance_weights
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 10)
    >>> f = rng.normal(size=(20, 4, 256))
    >>> f[:, 0] += 2 * rng.normal(size=(2, 256))[y]   # region 0 tells the class
    >>> P = np.eye(2)[y] * 0.8 + 0.1
    >>> w, v = fit_importance_weights(f, P, n_candidates=10, random_state=0)
    >>> w.shape, v.shape, bool(np.allclose(w.sum(1), 1))
    ((20, 4), (20, 256), True)
    >>> bool(w[:, 0].mean() > 0.5)    # most weight on the telling region
    True
    """
    dev = resolve_device(
        device if device is not None or not _is_tensor(features) else features.device
    )
    F = _regions_tensor(features, dev)
    N, R, K = F.shape
    P = check_soft_labels(
        _to_numpy(soft_labels),
        n_samples=N,
        from_logits=from_logits,
        temperature=temperature,
    )
    n = _candidate_count(n_candidates, N)
    n_steps = _check_positive_int(n_steps, "n_steps", minimum=0)
    kappa_p = _check_nonnegative(kappa_p, "kappa_p")
    kappa_m = _resolve_kappa_m(kappa_m, K)
    lr = _check_nonnegative(lr, "lr")
    momentum = _check_nonnegative(momentum, "momentum")
    weight_decay = _check_nonnegative(weight_decay, "weight_decay")
    fhat = _mk.normalize_channels(F)
    del F
    phat = _mk.unit_rows(torch.as_tensor(P, dtype=fhat.dtype, device=dev))
    w, v, losses = _fit_importance(
        fhat,
        phat,
        torch_generator(random_state),
        n_candidates=n,
        kappa_p=kappa_p,
        kappa_m=kappa_m,
        n_steps=n_steps,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        step_control=bool(step_control),
        chunk_size=chunk_size,
        verbose=verbose,
    )
    warn_if_not_falling(losses, "importance weights")
    if not _is_tensor(features):
        w, v = w.cpu().numpy(), v.cpu().numpy()
    return (w, v, losses) if return_losses else (w, v)


def _fit_layer_job(aligner, name, regions, P, G, seed, n_threads):
    """One layer's fit in a worker process (``RegionalAligner(n_jobs=...)``)."""
    torch.set_num_threads(n_threads)
    device = torch.device("cpu")
    phat = _mk.unit_rows(torch.as_tensor(P, dtype=_DTYPE))
    kappa_fn = TorchKappa("revised", G.shape[1], aligner.sigma, device)
    return aligner._fit_layer(
        name,
        torch.as_tensor(np.array(regions, dtype=np.float32), dtype=_DTYPE),
        phat,
        torch.as_tensor(G, dtype=_DTYPE),
        torch_generator(seed),
        kappa_fn,
        aligner.gradient == "exact",
    )


def _step_loss(
    components,
    feats_flat,
    n_regions,
    G,
    phat,
    w,
    matching,
    anchors,
    cand,
    *,
    scale,
    kappa_fn,
    kappa_p,
    exact,
    sim_weight,
    align_weight,
    workspace,
    with_grad,
):
    """Per-anchor loss (a,) of SPEC 5 and, with ``with_grad``, its gradient
    in ``components.grad``: by hand for the faithful gradient, by autograd
    for the exact one."""
    common = (
        feats_flat, n_regions, scale, G, phat, w, matching, anchors, cand,
    )  # fmt: skip
    if not exact:
        loss, grad = _mk.aligner_loss_grad(
            components.detach(),
            *common,
            kappa_fn=kappa_fn,
            kappa_p=kappa_p,
            sim_weight=sim_weight,
            align_weight=align_weight,
            with_grad=with_grad,
            workspace=workspace,
        )
        if with_grad:
            components.grad = grad
        return loss.detach()
    with torch.set_grad_enabled(with_grad):
        l_sim, l_align = _mk.aligner_loss(
            components,
            *common,
            kappa_fn=kappa_fn,
            kappa_p=kappa_p,
            exact=True,
            workspace=workspace,
        )
        loss = sim_weight * l_sim + align_weight * l_align
        if with_grad:
            loss.mean().backward()
    return loss.detach()


def _align_start_loss(
    components,
    feats_flat,
    n_regions,
    G,
    phat,
    w,
    matching,
    generator,
    *,
    n_candidates,
    scale,
    workspace,
    **loss_options,
):
    """Mean loss over every anchor at the current Lambda, without updates.

    The first point of ``loss_curve_``: the epochs' values are means over
    their steps, this one is the same loss before any step. Anchors are
    evaluated together in chunks (no gradient), which costs a few steps.
    """
    N = G.shape[0]
    K = feats_flat.shape[1]
    device = feats_flat.device
    everyone = torch.arange(N, device=device)
    if _same_sets(n_candidates, N):
        cand = _mk.all_others(N, device)
    else:
        cand = _mk.draw_candidates(N, everyone, n_candidates, generator)
    per_anchor = 4 * n_candidates * n_regions * (K + 32)
    chunk = int(max(1, min(N, _mk.step_budget(device) // per_anchor)))
    total = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for start in range(0, N, chunk):
            sl = slice(start, min(start + chunk, N))
            loss = _step_loss(
                components,
                feats_flat,
                n_regions,
                G,
                phat,
                w,
                matching,
                everyone[sl],
                cand[sl],
                scale=scale,
                workspace=workspace,
                with_grad=False,
                **loss_options,
            )
            total += loss.sum(dtype=torch.float64)
    return float(total) / N


def _align_epoch(
    components,
    optimizer,
    feats_flat,
    n_regions,
    G,
    phat,
    w,
    matching,
    generator,
    *,
    n_candidates,
    batch_size,
    scale,
    workspace,
    **loss_options,
):
    """One pass of SPEC 5's SGD over the anchors in random order.

    ``batch_size`` anchors per step, each with freshly drawn candidates
    (all other images, undrawn, when ``n_candidates = N - 1``); returns the
    mean loss over the pass.
    """
    N = G.shape[0]
    device = feats_flat.device
    order = torch.randperm(N, generator=generator).to(device)
    others = _mk.all_others(N, device) if _same_sets(n_candidates, N) else None
    total = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, N, batch_size):
        anchors = order[start : start + batch_size]
        if others is None:
            cand = _mk.draw_candidates(N, anchors, n_candidates, generator)
        else:
            cand = others.index_select(0, anchors)
        loss = _step_loss(
            components,
            feats_flat,
            n_regions,
            G,
            phat,
            w,
            matching,
            anchors,
            cand,
            scale=scale,
            workspace=workspace,
            with_grad=True,
            **loss_options,
        )
        optimizer.step()
        total += loss.sum(dtype=torch.float64)
    return float(total) / N  # one device sync per epoch


# ---------------------------------------------------------------------------
# the estimator
# ---------------------------------------------------------------------------
_ARRAY_LAYER = "input"


class RegionalAligner(TransformerMixin, BaseEstimator):
    """Embed each layer's regional features next to the sample features g.

    Learns, per layer, ``Lambda`` (``components_[layer]``, shape (d', K)) so
    that the regional features ``h_i^(r) = Lambda f_i^(r) / scale`` (SPEC 5):

    - reproduce the network's sample-to-sample distribution: each anchor
      region is an expert over candidate images,
      ``q_i^(r)(j) = softmax over j in S_i of
      kappa(||h_i^(r)||) cos(h_i^(r), h_j^(r'_ij(r)))``, with r'_ij(r) the
      matched region of :func:`match_regions` (under the fitted channel
      weights); the product of experts ``Q(x_j|x_i) ∝ prod_r
      q_i^(r)(j)^(w_ir)`` with the importance weights w of
      :func:`fit_importance_weights` gives
      ``L_sim(i) = KL(P(.|x_i) || Q(.|x_i))``;
    - point along the image's g_i where they matter:
      ``L_align(i) = - sum_r w_ir cos(h_i^(r), g_i)``.

    The loss ``sim_weight L_sim + align_weight L_align`` is minimised by SGD
    with momentum and weight decay, one step per anchor image in random order
    (``batch_size`` anchors per step), ``max_epochs`` times. Every layer is
    aligned to the same g, so layers are comparable; ``transform`` applies the
    fitted Lambda to any features (new images, adversarial ones) without
    refitting.

    Parameters
    ----------
    layers : str, list of str or None, default=None
        Layers of a :class:`~skvmf.features.FeatureSet` to fit (None: every
        layer in ``X.regions``). For array input, the name given to that one
        layer (None: ``"input"``).
    scale : float or "auto", default="auto"
        The constant s dividing the regional features. ``"auto"``: per layer,
        the mean strength of the (normalised or raw) regional features of the
        fit data, so that ``f / s`` has unit mean strength whatever the
        layer's width and activation scale (fitted values in ``scales_``).
        The reference divides raw VGG-16 features by 40, which brings them to
        that order; dividing channel-normalised (unit) features by 40 would
        instead leave h ~ 1e-3, kappa(||h||) ~ 0 and L_sim without gradient
        (measured on the digits workload: the loss stayed at 0.99).
    normalize_channels : bool, default=True
        Embed channel-L2-normalised regional features (the matching always
        uses them); False embeds the raw features.
    n_candidates : int, default=100
        Size of each anchor's candidate set S_i, redrawn every step. Clipped,
        with a warning, to N - 1 on fewer images.
    kappa_p : float, default=5.0
        Concentration of the network's sample-to-sample distribution.
    kappa_m : float or "auto", default=1000.0
        Concentration of the matching experts of the importance weights (the
        reference's value). ``"auto"``: ``1000 K / 512`` per layer, the
        reference's expert sharpness at every channel count K (fitted values
        in ``kappa_m_``); see :func:`fit_importance_weights`.
    weight_steps : int, default=20
        SGD steps of the importance weights per image.
    weight_lr : float, default=0.05
        Learning rate of the importance weights (which share ``momentum``
        and ``weight_decay``).
    weight_step_control : bool, default=True
        In the importance weights, refuse a step that raises an image's loss
        and halve that image's step size (:func:`fit_importance_weights`'s
        ``step_control``). Without it, kappa_m = 1000 made the loss rise at
        every layer of the digits network (K = 8 to 64 channels).
    sim_weight : float, default=1.0
        Weight of L_sim.
    align_weight : float, default=1.0
        Weight of L_align (the reference uses 0.1). Chosen by the method's own
        losses on held-out digits (:meth:`held_out_losses`,
        benchmarks/bench_align_weight.py; means over the five layers and
        three seeds): L_sim 0.751 / 0.750 / 0.744 and L_align -0.164 /
        -0.303 / -0.405 for 0.1 / 0.3 / 1.0, so 1.0 is no worse at mimicking
        the network on new images and better aligned. No finding was looked
        at; how the findings move with it is in doc/sensitivity.md.
    max_epochs : int, default=20
        Passes over the images.
    lr : float, default=0.01
        Learning rate of Lambda.
    momentum : float, default=0.9
        SGD momentum.
    weight_decay : float, default=5e-4
        SGD weight decay.
    batch_size : int, default=1
        Anchors per step. 1 is the reference's behaviour; a larger value
        averages the loss over that many anchors per step (fewer, larger
        steps: faster, not the same optimisation).
    sigma : float, default=1.0
        Noise level of the revised kappa(l) (:func:`skvmf.vmf.revised_kappa`
        in dimension d').
    gradient : {"faithful", "exact"}, default="faithful"
        ``"faithful"`` (the reference's behaviour, SPEC 5): the cosines of
        the L_sim experts divide by norms that carry no gradient and kappa
        carries none; L_align normalises h exactly. Its gradient is computed
        by hand (same values as autograd, fewer operations per step).
        ``"exact"``: true cosines everywhere and kappa differentiated through
        a cubic Hermite interpolation of its table (autograd).
    from_logits : bool, default=False
        Use logits (``softmax(logits / temperature)``): a FeatureSet's
        ``logits``, or the ``soft_labels=`` given to :meth:`fit`.
    temperature : float, default=4.0
        Temperature for ``from_logits``.
    chunk_size : int, optional
        Anchors per chunk in the importance weights and the full matching
        (default: from a working-memory budget).
    device : str or torch.device, default="cpu"
        Where the work runs (``"cuda"`` when available).
    n_jobs : int or None, default=None
        Layers fitted in parallel processes on the CPU (joblib; None means 1,
        -1 every core); each layer's result is identical to a sequential fit.
        The per-anchor SGD steps are small and bound by Python overhead, so
        this is the way to use several cores. Ignored on CUDA.
    random_state : int, RandomState instance or None, default=None
        Seed of Lambda's initialisation, the candidate draws and the order of
        the anchors. Each layer gets its own stream (seeded from this and the
        layer's name), so a layer's fit does not depend on the other layers.
    verbose : int, default=0
        0 silent, 1 progress bars (importance weights, epochs), 2 also
        messages.

    Attributes
    ----------
    layers_ : list of str
        The fitted layers.
    components_ : dict of str to ndarray of shape (d', K)
        Lambda of each layer (float32).
    importance_weights_ : dict of str to ndarray of shape (N, R)
        The region importance weights w of the training images.
    channel_weights_ : dict of str to ndarray of shape (N, K)
        The channel weights v of the training images.
    loss_curve_ : dict of str to ndarray of shape (max_epochs + 1,)
        The mean loss over every anchor at the initial Lambda (one pass
        without updates, on candidates of its own draw), then the mean loss
        over each epoch's steps; empty when ``max_epochs=0``.
    importance_loss_curve_ : dict of str to ndarray of shape (weight_steps + 1,)
        Mean KL of the importance weights at their uniform start (on the
        last step's candidates), then after each of their steps; empty when
        ``weight_steps=0``.
    kappa_m_ : dict of str to float
        The kappa_m used at each layer (``kappa_m``, or its ``"auto"`` value).
    n_features_in_ : dict of str to int
        Number of channels K of each layer.
    n_regions_ : dict of str to int
        Number of regions R of each layer in the training features.
    scales_ : dict of str to float
        The divisor s of each layer (``scale``, or its ``"auto"`` value).
    n_components_ : int
        Dimension d' (that of g).
    n_candidates_ : int
        Candidate-set size used (``n_candidates`` or N - 1).
    n_iter_ : int
        Epochs run.

    See Also
    --------
    skvmf.projection.SampleProjector : learns g (run it first).
    fit_importance_weights, match_regions, sample_distribution

    Notes
    -----
    Lambda starts from N(0, 0.1^2) entries, as M of the SampleProjector. The
    matching r'_ij(r) is computed once per layer for all pairs (an int16
    array of N^2 R entries) with the fitted channel weights, then every step
    embeds only the anchors' regions and their candidates' matched regions.
    Cost per layer: ``weight_steps N n K R^2`` multiply-adds for the
    importance weights, ``N^2 K R^2`` for the matching, and
    ``max_epochs N n R K d'`` for Lambda. Arithmetic is float32.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.features import FeatureSet
    >>> from skvmf.alignment import RegionalAligner
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 8)
    >>> regions = rng.normal(size=(24, 9, 16)).astype(np.float32)
    >>> regions[:, :3, :3] += 4 * np.eye(3)[y][:, None, :]
    >>> g = 3 * np.eye(3)[y]
    >>> fs = FeatureSet(soft_labels=np.eye(3)[y] * 0.7 + 0.1,
    ...                 regions={"conv": regions}, g=g)
    >>> aligner = RegionalAligner(n_candidates=23, max_epochs=2,
    ...                           weight_steps=3, random_state=0)
    >>> out = aligner.fit_transform(fs)
    >>> out.h["conv"].shape, aligner.components_["conv"].shape
    ((24, 9, 3), (3, 16))
    """

    _parameter_constraints: dict = {
        "layers": [None, str, list, tuple],
        "scale": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "normalize_channels": ["boolean"],
        "n_candidates": [Interval(Integral, 1, None, closed="left")],
        "kappa_p": [Interval(Real, 0, None, closed="left")],
        "kappa_m": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "weight_steps": [Interval(Integral, 0, None, closed="left")],
        "weight_lr": [Interval(Real, 0, None, closed="left")],
        "weight_step_control": ["boolean"],
        "sim_weight": [Interval(Real, 0, None, closed="left")],
        "align_weight": [Interval(Real, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "sigma": [Interval(Real, 0, None, closed="neither")],
        "n_jobs": [None, Integral],
        "gradient": [StrOptions({"faithful", "exact"})],
        "from_logits": ["boolean"],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "chunk_size": [None, Interval(Integral, 1, None, closed="left")],
        "device": "no_validation",  # resolve_device validates
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        layers=None,
        *,
        scale="auto",
        normalize_channels=True,
        n_candidates=100,
        kappa_p=5.0,
        kappa_m=1000.0,
        weight_steps=20,
        weight_lr=0.05,
        weight_step_control=True,
        sim_weight=1.0,
        align_weight=1.0,
        max_epochs=20,
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        batch_size=1,
        sigma=1.0,
        gradient="faithful",
        from_logits=False,
        temperature=4.0,
        chunk_size=None,
        device="cpu",
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.layers = layers
        self.scale = scale
        self.normalize_channels = normalize_channels
        self.n_candidates = n_candidates
        self.kappa_p = kappa_p
        self.kappa_m = kappa_m
        self.weight_steps = weight_steps
        self.weight_lr = weight_lr
        self.weight_step_control = weight_step_control
        self.sim_weight = sim_weight
        self.align_weight = align_weight
        self.max_epochs = max_epochs
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.sigma = sigma
        self.gradient = gradient
        self.from_logits = from_logits
        self.temperature = temperature
        self.chunk_size = chunk_size
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # -- input handling ------------------------------------------------------
    def _layer_names(self, available):
        if self.layers is None:
            return list(available)
        names = [self.layers] if isinstance(self.layers, str) else list(self.layers)
        if not names:
            raise ValueError("layers is empty; give None, a layer name or a list")
        for name in names:
            if not isinstance(name, str):
                raise ValueError(f"layer names must be strings; got {name!r}")
            if name not in available:
                raise ValueError(
                    f"unknown layer {name!r}; the FeatureSet has regions for "
                    f"{list(available)}"
                )
        if len(set(names)) != len(names):
            raise ValueError(f"layers lists a layer twice: {names}")
        return names

    def _inputs(self, X, soft_labels, g):
        """Layers -> regions, soft labels P (N, C) float64, g (N, d') float64."""
        if isinstance(X, FeatureSet):
            if soft_labels is not None or g is not None:
                raise ValueError(
                    "with a FeatureSet, soft labels and g come from the "
                    "FeatureSet; do not pass soft_labels= or g= to fit"
                )
            if not X.regions:
                raise ValueError(
                    "this FeatureSet has no regional features (FeatureSet.regions "
                    "is empty)"
                )
            regions = {name: X.regions[name] for name in self._layer_names(X.regions)}
            if X.g is None:
                raise ValueError(
                    "this FeatureSet has no projected sample features g "
                    "(FeatureSet.g is None): run SampleProjector first "
                    "(SampleProjector().fit(X).transform(X) adds g)"
                )
            g = X.g
            if self.from_logits:
                if X.logits is None:
                    raise ValueError(
                        "from_logits=True but this FeatureSet has no logits"
                    )
                labels, name = X.logits, "X.logits"
            else:
                if X.soft_labels is None:
                    raise ValueError(
                        "this FeatureSet has neither soft_labels nor logits"
                    )
                labels, name = X.soft_labels, "X.soft_labels"
        else:
            if self.layers is not None and not isinstance(self.layers, str):
                raise ValueError(
                    "for array input, layers must be None or one layer name; "
                    f"got {self.layers!r}"
                )
            _refuse_sparse(X, "X")
            regions = {self.layers or _ARRAY_LAYER: X}
            if soft_labels is None:
                raise ValueError(
                    "RegionalAligner needs the network's soft labels: pass "
                    "soft_labels=... (or a FeatureSet)"
                )
            if g is None:
                raise ValueError(
                    "RegionalAligner needs the projected sample features: pass "
                    "g=... (run SampleProjector first) or a FeatureSet with g"
                )
            labels, name = soft_labels, "soft_labels"
        G = np.asarray(_to_numpy(g), dtype=np.float64)
        if G.ndim != 2 or G.shape[1] < 2:
            raise ValueError(
                f"g must have shape (N, d') with d' >= 2; got shape {G.shape}"
            )
        if not np.isfinite(G).all():
            raise ValueError("g contains NaN or infinite values")
        counts = {f"regions[{k!r}]": int(v.shape[0]) for k, v in regions.items()}
        counts["g"] = G.shape[0]
        counts[name] = int(np.shape(_to_numpy(labels))[0])
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{k}: {v}" for k, v in counts.items())
            raise ValueError(
                f"regions, soft labels and g need the same number of images; "
                f"got {detail}"
            )
        P = check_soft_labels(
            _to_numpy(labels),
            n_samples=G.shape[0],
            from_logits=self.from_logits,
            temperature=self.temperature,
            name=name,
        )
        return regions, P, G

    def _layer_seed(self, base_seed, name):
        return (base_seed + zlib.crc32(name.encode())) % (2**31 - 1)

    # -- fitting -------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, soft_labels=None, g=None):
        """Learn one Lambda per layer.

        Parameters
        ----------
        X : FeatureSet or array-like of shape (N, R, K)
            A FeatureSet with ``regions``, soft labels (or logits) and ``g``
            (from :class:`~skvmf.projection.SampleProjector`), or the
            regional features of one layer.
        y : None
            Ignored (the network's soft labels are the targets).
        soft_labels : array-like of shape (N, C), optional
            With array input: the network's P(y|x) (or logits with
            ``from_logits=True``).
        g : array-like of shape (N, d'), optional
            With array input: the projected sample features.

        Returns
        -------
        self : RegionalAligner
            The fitted estimator.
        """
        device = resolve_device(self.device)
        regions, P, G = self._inputs(X, soft_labels, g)
        N = G.shape[0]
        if N < 3:
            raise ValueError(
                f"at least 3 images are needed (each anchor compares 2 or more "
                f"other images); got {N}"
            )
        n_cand = self.n_candidates
        if n_cand > N - 1:
            warnings.warn(
                f"n_candidates={n_cand} but there are only {N - 1} other images "
                f"per anchor; using n_candidates={N - 1}",
                UserWarning,
                stacklevel=2,
            )
            n_cand = N - 1
        exact = self.gradient == "exact"
        d = G.shape[1]
        kappa_fn = TorchKappa("revised", d, self.sigma, device)
        Gt = torch.as_tensor(G, dtype=_DTYPE, device=device)
        phat = _mk.unit_rows(torch.as_tensor(P, dtype=_DTYPE, device=device))
        base_seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))

        self.layers_ = list(regions)
        self.components_, self.importance_weights_, self.channel_weights_ = {}, {}, {}
        self.loss_curve_, self.importance_loss_curve_, self.kappa_m_ = {}, {}, {}
        self.n_features_in_, self.n_regions_, self.scales_ = {}, {}, {}
        self.n_components_ = d
        self.n_candidates_ = n_cand
        # validate every layer before any (long) fit starts
        for name, value in regions.items():
            _regions_tensor(value, "cpu", name=f"regions[{name!r}]", min_regions=2)
        n_jobs = effective_n_jobs(self.n_jobs)
        if device.type != "cpu" or len(regions) < 2:
            n_jobs = 1  # one CUDA context; nothing to share out
        if n_jobs == 1:
            results = [
                self._fit_layer(
                    name,
                    _regions_tensor(value, device, name=name).to(_DTYPE),
                    phat,
                    Gt,
                    torch_generator(self._layer_seed(base_seed, name)),
                    kappa_fn,
                    exact,
                )
                for name, value in regions.items()
            ]
        else:
            threads = max(1, torch.get_num_threads() // min(n_jobs, len(regions)))
            results = Parallel(n_jobs=n_jobs)(
                delayed(_fit_layer_job)(
                    self,
                    name,
                    _to_numpy(value),
                    P,
                    G,
                    self._layer_seed(base_seed, name),
                    threads,
                )
                for name, value in regions.items()
            )
        for name, result in zip(regions, results):
            for key, value in result.items():
                getattr(self, key)[name] = value
        self.n_iter_ = self.max_epochs
        # here, not in _fit_layer: with n_jobs > 1 the layers fit in workers
        for name in self.layers_:
            warn_if_not_falling(
                self.importance_loss_curve_[name], "importance weights", name
            )
            warn_if_not_falling(self.loss_curve_[name], "alignment", name)
        return self

    def _weights_and_matching(self, fhat, phat, gen, n, *, verbose, name):
        """The images' importance weights (SPEC 4) and their full matching
        under the fitted channel weights: (w, v, loss curve, matching)."""
        N, R, K = fhat.shape
        w, v, w_curve = _fit_importance(
            fhat,
            phat,
            gen,
            n_candidates=n,
            kappa_p=self.kappa_p,
            kappa_m=_resolve_kappa_m(self.kappa_m, K),
            n_steps=self.weight_steps,
            lr=self.weight_lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            step_control=self.weight_step_control,
            chunk_size=self.chunk_size,
            verbose=verbose,
            desc=f"{name}: importance weights",
        )
        chunk, block = _mk.matching_plan(
            N, N, R, K, fhat.element_size(), fhat.device, self.chunk_size,
            gathered=False,
        )  # fmt: skip
        message(f"{name}: matching {N}^2 image pairs", verbose=verbose)
        matching, _ = _mk.match_all(
            fhat,
            v,
            torch.arange(N, device=fhat.device),
            None,
            chunk_size=chunk,
            block_size=block,
            return_scores=False,
        )
        return w, v, w_curve, matching

    def _fit_layer(self, name, F, phat, G, gen, kappa_fn, exact):
        N, R, K = F.shape
        device = F.device
        n = self.n_candidates_
        fhat = _mk.normalize_channels(F)
        kappa_m = _resolve_kappa_m(self.kappa_m, K)
        w, v, w_curve, matching = self._weights_and_matching(
            fhat, phat, gen, n, verbose=self.verbose, name=name
        )
        feats = fhat if self.normalize_channels else F
        del F, fhat
        feats_flat = feats.reshape(N * R, K)
        if self.scale == "auto":
            scale = float(torch.linalg.vector_norm(feats_flat, dim=1).mean())
            if not scale > 0:
                raise ValueError(
                    f"layer {name!r}: every regional feature is zero; nothing to align"
                )
        else:
            scale = float(self.scale)

        init = torch.randn((G.shape[1], K), generator=gen, dtype=_DTYPE)
        components = torch.nn.Parameter((_INIT_STD * init).to(device))
        opt = MomentumSGD(
            components,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )
        ws = _mk.Workspace()
        loss_options = {
            "scale": scale,
            "kappa_fn": kappa_fn,
            "kappa_p": self.kappa_p,
            "exact": exact,
            "sim_weight": self.sim_weight,
            "align_weight": self.align_weight,
            "workspace": ws,
        }
        data = (feats_flat, R, G, phat, w, matching)
        curve = []
        if self.max_epochs > 0:
            # the loss at the starting Lambda, on candidates of its own stream
            # (the training draws are those of a fit without this point)
            start_gen = torch.Generator(device=gen.device)
            start_gen.manual_seed(gen.initial_seed() ^ 0x5EED)
            curve.append(
                _align_start_loss(
                    components, *data, start_gen, n_candidates=n, **loss_options
                )
            )
        for epoch in progress(
            range(self.max_epochs),
            verbose=self.verbose,
            total=self.max_epochs,
            desc=f"{name}: epochs",
            unit="epoch",
        ):
            value = _align_epoch(
                components,
                opt,
                *data,
                gen,
                n_candidates=n,
                batch_size=self.batch_size,
                **loss_options,
            )
            if not math.isfinite(value):
                raise ValueError(
                    f"layer {name!r}: the alignment diverged in epoch {epoch} "
                    f"(loss {value}); lower lr (now {self.lr})"
                )
            curve.append(value)
            message(f"{name}: epoch {epoch} loss {value:.6g}", verbose=self.verbose)

        return {
            "components_": components.detach().cpu().numpy().copy(),
            "importance_weights_": w.cpu().numpy(),
            "channel_weights_": v.cpu().numpy(),
            "loss_curve_": np.asarray(curve, dtype=np.float64),
            "importance_loss_curve_": w_curve,
            "kappa_m_": kappa_m,
            "n_features_in_": K,
            "n_regions_": R,
            "scales_": scale,
        }

    # -- using the embedding -------------------------------------------------
    def _embed(self, regions, name):
        """h = Lambda f / s for one layer; arrays in, float32 arrays out."""
        device = resolve_device(self.device)
        F = _regions_tensor(regions, device, name=f"regions[{name!r}]").to(_DTYPE)
        K = self.n_features_in_[name]
        if F.shape[2] != K:
            raise ValueError(
                f"regions[{name!r}] has {F.shape[2]} channels but the aligner was "
                f"fitted with {K}; got shape {tuple(F.shape)}"
            )
        lam = torch.as_tensor(self.components_[name], device=device)
        N, R, _ = F.shape
        rows = max(1, _mk.memory_budget(device) // (4 * R * K))
        parts = []
        for start in range(0, N, rows):
            f = F[start : start + rows]
            if self.normalize_channels:
                f = _mk.normalize_channels(f)
            parts.append((f @ lam.T) / self.scales_[name])
        h = torch.cat(parts)
        if _is_tensor(regions):
            return h.to(regions.device)
        return h.cpu().numpy()

    def held_out_losses(self, X):
        """The method's own two losses on new images, per layer.

        For images the aligner did not see (held-out ones), with the fitted
        Lambda and scale: the mean over anchors of
        ``L_sim(i) = KL(P(.|x_i) || Q_Lambda(.|x_i))`` (SPEC 5), every other
        image of ``X`` as candidates, and of
        ``L_align(i) = -sum_r w_ir cos(h_i^(r), g_i)``. The images' own
        importance weights w and matching (SPEC 4: they describe the images,
        not the embedding) are fitted on ``X`` with this estimator's
        settings. The two are returned apart, unweighted, so that settings
        such as ``align_weight`` can be compared by them.

        Parameters
        ----------
        X : FeatureSet
            Every fitted layer's regions, soft labels (or logits with
            ``from_logits``) and g, of at least 3 images.

        Returns
        -------
        dict of str to dict
            Per fitted layer, ``{"sim": mean L_sim, "align": mean L_align}``
            (both lower is better: the regions mimic the network's
            sample-to-sample distribution, and point along g).
        """
        check_is_fitted(self, "components_")
        if not isinstance(X, FeatureSet):
            raise ValueError(
                "held_out_losses needs a FeatureSet (regions, soft labels, g)"
            )
        regions, P, G = self._inputs(X, None, None)
        N = G.shape[0]
        if N < 3:
            raise ValueError(f"at least 3 images are needed; got {N}")
        device = resolve_device(self.device)
        phat = _mk.unit_rows(torch.as_tensor(P, dtype=_DTYPE, device=device))
        Gt = torch.as_tensor(G, dtype=_DTYPE, device=device)
        kappa_fn = TorchKappa("revised", G.shape[1], self.sigma, device)
        gen = torch_generator(self.random_state)
        out = {}
        for name in self.layers_:
            F = _regions_tensor(regions[name], device, name=name).to(_DTYPE)
            _, R, K = F.shape
            if self.n_features_in_[name] != K:
                raise ValueError(
                    f"regions[{name!r}] has {K} channels but the aligner was "
                    f"fitted with {self.n_features_in_[name]}"
                )
            fhat = _mk.normalize_channels(F)
            w, _, _, matching = self._weights_and_matching(
                fhat, phat, gen, N - 1, verbose=0, name=name
            )
            feats = fhat if self.normalize_channels else F
            lam = torch.as_tensor(self.components_[name], device=device)
            sim = _align_start_loss(
                lam,
                feats.reshape(N * R, K),
                R,
                Gt,
                phat,
                w,
                matching,
                gen,
                n_candidates=N - 1,
                scale=self.scales_[name],
                kappa_fn=kappa_fn,
                kappa_p=self.kappa_p,
                exact=self.gradient == "exact",
                sim_weight=1.0,
                align_weight=0.0,
                workspace=_mk.Workspace(),
            )
            h = torch.as_tensor(self._embed(F, name), dtype=torch.float64)
            g = torch.as_tensor(G, dtype=torch.float64)
            cos = torch.einsum("nrd,nd->nr", h, g) / (
                _norm_or_one(h) * _norm_or_one(g)[:, None]
            )
            align = -(w.double().cpu() * cos.cpu()).sum(1).mean()
            out[name] = {"sim": float(sim), "align": float(align)}
        return out

    def transform(self, X):
        """Embed regional features: h = Lambda f / scale.

        Parameters
        ----------
        X : FeatureSet or array-like of shape (N, R, K)
            A FeatureSet holding every fitted layer (any images: new ones,
            adversarial ones), or the regional features of the one fitted
            layer.

        Returns
        -------
        FeatureSet or ndarray of shape (N, R, d')
            For a FeatureSet, a copy with ``h[layer]`` added for every fitted
            layer (X itself is not modified); for an array, h (float32; a
            tensor for tensor input).
        """
        check_is_fitted(self, "components_")
        if isinstance(X, FeatureSet):
            missing = [name for name in self.layers_ if name not in X.regions]
            if missing:
                raise ValueError(
                    f"the FeatureSet lacks the fitted layer(s) {missing}; it has "
                    f"regions for {X.layers}"
                )
            return X.with_layers(
                "h",
                **{name: self._embed(X.regions[name], name) for name in self.layers_},
            )
        if len(self.layers_) != 1:
            raise ValueError(
                f"this aligner was fitted on {len(self.layers_)} layers "
                f"{self.layers_}; transform a FeatureSet holding them"
            )
        return self._embed(X, self.layers_[0])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.target_tags.required = False
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
