"""Importance weights of regions and channels (SPEC 4).

For one layer of a network with regional features f_i^(r) (R regions of K
channels per image):

- :func:`sample_distribution`: the network's sample-to-sample distribution
  ``P(x_j | x_i)`` over a set of candidates; :func:`draw_candidates` draws
  those sets;
- :func:`match_regions`: for a pair of images, the best-matching region of
  one for each region of the other, on channel-normalised features weighted
  by the anchor's channel weights;
- :func:`fit_importance_weights`: per image, which regions (w) and channels
  (v) explain the network's sample-to-sample distribution.

The regional aligner of SPEC 5, which uses them, is
:class:`skvmf.alignment.RegionalAligner`. All heavy work runs in torch
(log-space softmaxes; the expert concentration kappa_m = 1000 is never
exponentiated directly) on the CPU or a CUDA device, in chunks of anchors
so that memory stays bounded.

References
----------
Li, Wang, Zhang. "Visualizing the Emergence of Intermediate Visual Patterns
in DNNs", NeurIPS 2021, and its supplement.
"""

from __future__ import annotations

from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._kernels import matching as _mk
from ._kernels.importance_fit import fit_importance
from ._kernels.region_inputs import (
    anchors_and_candidates,
    candidate_count,
    channel_weights_tensor,
    compute_device,
    is_tensor,
    regions_tensor,
    resolve_kappa_m,
)
from ._numerics.arrays import real_array, unit_rows
from ._numerics.soft_labels import check_soft_labels
from ._torch.devices import torch_generator
from ._utils.convergence import warn_if_not_falling

__all__ = [
    "draw_candidates",
    "fit_importance_weights",
    "match_regions",
    "sample_distribution",
]

_DTYPE = torch.float32
_POSITIVE_INT = Interval(Integral, 1, None, closed="left")
_NON_NEGATIVE = Interval(Real, 0, None, closed="left")


@validate_params(
    {
        "n_samples": [_POSITIVE_INT],
        "n_candidates": [_POSITIVE_INT],
        "anchors": ["array-like", None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
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
    >>> import numpy as np
    >>> from skvmf.importance import draw_candidates
    >>> S = draw_candidates(10, 4, random_state=0)
    >>> S.shape
    (10, 4)
    >>> bool((S != np.arange(10)[:, None]).all())
    True
    """
    n = candidate_count(n_candidates, n_samples)
    a, _ = anchors_and_candidates(anchors, None, n_samples, torch.device("cpu"))
    gen = torch_generator(random_state)
    return _mk.draw_candidates(n_samples, a, n, gen).numpy()


@validate_params(
    {
        "soft_labels": ["array-like"],
        "candidates": ["array-like"],
        "anchors": ["array-like", None],
        "kappa_p": [_NON_NEGATIVE],
    },
    prefer_skip_nested_validation=True,
)
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
    >>> from skvmf.importance import sample_distribution
    >>> P = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> sample_distribution(P, [[1, 2], [0, 2], [0, 1]], kappa_p=np.log(3)).round(3)
    array([[0.75, 0.25],
           [0.75, 0.25],
           [0.5 , 0.5 ]])
    """
    P = check_soft_labels(real_array(soft_labels, "soft_labels"))
    if is_tensor(soft_labels):
        device = soft_labels.device
        dtype = soft_labels.dtype if soft_labels.is_floating_point() else _DTYPE
    else:
        device, dtype = torch.device("cpu"), torch.float64
    a, c = anchors_and_candidates(anchors, candidates, P.shape[0], device)
    phat = unit_rows(torch.as_tensor(P, dtype=dtype, device=device))
    out = _mk.log_sample_distribution(phat, a, c, float(kappa_p)).exp()
    return out if is_tensor(soft_labels) else out.numpy()


def _match(
    F, weights, anchors, candidates, chunk_size, return_scores, precision="float32"
):
    """The matching of :func:`match_regions` on checked tensors: plan the
    chunks and blocks within the memory budget, then match."""
    N, R, K = F.shape
    chunk, block = _mk.matching_plan(
        anchors.shape[0],
        N if candidates is None else candidates.shape[1],
        R,
        K,
        F.element_size(),
        F.device,
        chunk_size,
        gathered=candidates is not None,
    )
    return _mk.match_all(
        _mk.normalize_channels(F),
        weights,
        anchors,
        candidates,
        chunk_size=chunk,
        block_size=block,
        return_scores=return_scores,
        precision=precision,
    )


@validate_params(
    {
        "features": ["array-like"],
        "channel_weights": ["array-like", None],
        "anchors": ["array-like", None],
        "candidates": ["array-like", None],
        "chunk_size": [_POSITIVE_INT, None],
        "device": "no_validation",  # resolve_device validates
        "return_scores": ["boolean"],
        "precision": [StrOptions(set(_mk.PRECISIONS))],
    },
    prefer_skip_nested_validation=True,
)
def match_regions(
    features,
    channel_weights=None,
    *,
    anchors=None,
    candidates=None,
    chunk_size=None,
    device=None,
    return_scores=False,
    precision="float32",
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
    precision : {"float32", "bfloat16", "tf32"}, default="float32"
        Of the score matmuls, accumulated in float32 in every case.
        ``"float32"`` is the reference. ``"bfloat16"`` rounds both operands
        to bfloat16 (8 significant bits): on CUDA the matmul then runs on
        the tensor cores; on the CPU the rounded numbers are multiplied in
        float32 (same results up to summation order, no speed-up: torch has
        no CPU bfloat16 matmul with a float32 result). ``"tf32"``: TF32
        tensor cores on CUDA, float32 on the CPU. With reduced precision,
        near-ties between candidate regions can resolve differently; see
        doc/benchmarks.md for the measured agreement with float32.

    Returns
    -------
    indices : ndarray or tensor of shape (A, M, R), dtype int16
        ``indices[a, j, r] = r'_{anchor_a, j}(r)``; M = N for the full
        matching, else n (column j is ``candidates[a, j]``).
    scores : ndarray or tensor of shape (A, M, R)
        ``s_ij^(r)``; only when ``return_scores``.

    Raises
    ------
    torch.OutOfMemoryError
        (A subclass of it) when a chunk does not fit the device, naming the
        sizes tried and a ``chunk_size`` that fits.

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
    >>> from skvmf.importance import match_regions
    >>> f = np.zeros((2, 2, 2))
    >>> f[0] = [[1, 0], [0, 1]]      # image 0: region 0 along e0, region 1 e1
    >>> f[1] = [[0, 1], [1, 0]]      # image 1: swapped
    >>> idx = match_regions(f)
    >>> idx.dtype, idx.shape
    (dtype('int16'), (2, 2, 2))
    >>> idx[0, 1]                    # region r of image 0 matches region 1 - r
    array([1, 0], dtype=int16)
    """
    dev = compute_device(device, features)
    F = regions_tensor(features, dev)
    a, c = anchors_and_candidates(anchors, candidates, F.shape[0], dev)
    weights = (
        None
        if channel_weights is None
        else channel_weights_tensor(channel_weights, F, a)
    )
    idx, scores = _match(F, weights, a, c, chunk_size, return_scores, precision)
    if not is_tensor(features):
        idx = idx.cpu().numpy()
        scores = None if scores is None else scores.cpu().numpy()
    return (idx, scores) if return_scores else idx


def _importance_inputs(features, soft_labels, device, from_logits, temperature):
    """Channel-normalised features (N, R, K) and unit soft labels (N, C) on
    ``device``, both checked."""
    F = regions_tensor(features, device)
    P = check_soft_labels(
        real_array(soft_labels, "soft_labels"),
        n_samples=F.shape[0],
        from_logits=from_logits,
        temperature=temperature,
    )
    fhat = _mk.normalize_channels(F)
    return fhat, unit_rows(torch.as_tensor(P, dtype=fhat.dtype, device=device))


@validate_params(
    {
        "features": ["array-like"],
        "soft_labels": ["array-like"],
        "n_candidates": [_POSITIVE_INT],
        "kappa_p": [_NON_NEGATIVE],
        "kappa_m": [_NON_NEGATIVE, StrOptions({"auto"})],
        "n_steps": [Interval(Integral, 0, None, closed="left")],
        "lr": [_NON_NEGATIVE],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [_NON_NEGATIVE],
        "step_control": ["boolean"],
        "from_logits": ["boolean"],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "chunk_size": [_POSITIVE_INT, None],
        "device": "no_validation",  # resolve_device validates
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "return_losses": ["boolean"],
        "precision": [StrOptions(set(_mk.PRECISIONS))],
    },
    prefer_skip_nested_validation=True,
)
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
    precision="float32",
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
    precision : {"float32", "bfloat16", "tf32"}, default="float32"
        Of the score matmuls (as :func:`match_regions`); the gradients,
        softmaxes and weights stay in the features' dtype.

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
        When the loss did not fall (:func:`skvmf._utils.convergence.loss_fell`).

    Raises
    ------
    torch.OutOfMemoryError
        (A subclass of it) when a chunk of anchors does not fit the device,
        naming the sizes tried and a ``chunk_size`` that fits.

    Notes
    -----
    All N per-image problems are solved at once, in chunks of anchors: the
    loss summed over images gives every image's parameters exactly the
    gradient of its own loss, and SGD acts element-wise, so this is the same
    computation as one image at a time. The gradient of the max over r'
    flows to the argmax (computed by a gather of the matched regions rather
    than a second matmul; an ``embedding_bag`` reads them from the
    features). Cost per step: N n K R^2 multiply-adds, twice
    (the loss after the step is evaluated too, with or without
    ``step_control``, for the loss curve).

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.importance import fit_importance_weights
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
    dev = compute_device(device, features)
    fhat, phat = _importance_inputs(
        features, soft_labels, dev, from_logits, temperature
    )
    N, R, K = fhat.shape
    w, v, losses = fit_importance(
        fhat,
        phat,
        torch_generator(random_state),
        n_steps=n_steps,
        verbose=verbose,
        n_candidates=candidate_count(n_candidates, N),
        kappa_p=float(kappa_p),
        kappa_m=resolve_kappa_m(kappa_m, K),
        lr=float(lr),
        momentum=float(momentum),
        weight_decay=float(weight_decay),
        step_control=bool(step_control),
        chunk_size=chunk_size,
        precision=precision,
    )
    warn_if_not_falling(losses, "importance weights")
    if not is_tensor(features):
        w, v = w.cpu().numpy(), v.cpu().numpy()
    return (w, v, losses) if return_losses else (w, v)
