"""The regional aligner (SPEC 5): regional features next to the sample features.

For one layer of a network, the regional features f_i^(r) (R regions of K
channels per image) are embedded as ``h_i^(r) = Lambda f_i^(r) / s`` in the
same d'-dimensional space as the projected sample features g_i of
:class:`skvmf.projection.SampleProjector`, so that

- images that the network finds similar (close soft labels) have similar
  regions: a product of per-region vMF experts over matched regions mimics
  the network's sample-to-sample distribution ``P(x_j | x_i)``;
- each image's important regions point along its g_i.

:class:`RegionalAligner` learns Lambda per layer (a scikit-learn transformer
that adds ``h`` to a :class:`~skvmf.features.FeatureSet`). The importance
weights, region matching and candidate sets it relies on (SPEC 4) live in
:mod:`skvmf.importance`; they are re-exported here, where they used to live.

All heavy work runs in torch (float32, log-space softmaxes) on the CPU or a
CUDA device, in chunks of anchors so that memory stays bounded.

References
----------
Li, Wang, Zhang. "Visualizing the Emergence of Intermediate Visual Patterns
in DNNs", NeurIPS 2021, and its supplement (Eq. 4-5, the align loss).
"""

from __future__ import annotations

import math
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _array_api as _xa
from ._kernels import matching as _mk
from ._kernels.importance_fit import fit_importance
from ._kernels.kappa import TorchKappa
from ._kernels.region_inputs import (
    finite_matrix,
    finite_matrix_tensor,
    is_tensor,
    refuse_sparse,
    regions_tensor,
    resolve_kappa_m,
    soft_labels_tensor,
)
from ._numerics.arrays import real_array, refuse_complex, safe_norm, unit_rows
from ._numerics.soft_labels import check_soft_labels
from ._persistence import DevicePicklingMixin
from ._torch.devices import resolve_device, torch_generator
from ._torch.optimisers import MomentumSGD
from ._utils import warn as _warn
from ._utils.convergence import warn_if_not_falling
from ._utils.progress import message, progress
from .features import FeatureSet
from .importance import (
    draw_candidates,
    fit_importance_weights,
    match_regions,
    sample_distribution,
)

__all__ = [
    "RegionalAligner",
    "draw_candidates",
    "fit_importance_weights",
    "match_regions",
    "sample_distribution",
]

_DTYPE = torch.float32
_INIT_STD = 0.1  # Lambda ~ N(0, 0.1^2), as M of SampleProjector (SPEC 3)
_ARRAY_LAYER = "input"


def _norm_or_one(x):
    """Norms over the last axis, rescaled first (no overflow), 1 where 0."""
    n = safe_norm(x, dim=-1)
    return torch.where(n > 0, n, torch.ones_like(n))


def _mean_strength(feats_flat: torch.Tensor, acc=torch.float64) -> float:
    """Mean L2 norm of the rows (N R, K), free of overflow and underflow:
    the rows are divided by the largest entry overall, each norm is taken
    safely, and the mean is accumulated in ``acc`` (float64 where the device
    has it)."""
    top = float(feats_flat.abs().amax())
    if not top > 0:
        return 0.0
    return float(safe_norm(feats_flat / top, dim=1).to(acc).mean()) * top


def _align_loss(h, g, w):
    """Mean over images of ``L_align = -sum_r w_ir cos(h_i^(r), g_i)``, in
    h's dtype (float64 where the device has it) with safe norms, on h's
    device (h (N, R, d'), g (N, d'), w (N, R) tensors)."""
    g = g.to(h.dtype)
    cos = torch.einsum("nrd,nd->nr", h, g) / (
        _norm_or_one(h) * _norm_or_one(g)[:, None]
    )
    return float(-(w.to(h.dtype) * cos).sum(1).mean())


# ---------------------------------------------------------------------------
# one layer's alignment problem and its SGD (SPEC 5)
# ---------------------------------------------------------------------------
@dataclass
class _LayerProblem:
    """What one layer's alignment steps read; fixed during its fit.

    ``feats_flat`` (N R, K) holds the embedded (normalised or raw) regional
    features, row ``i * R + r``; ``g`` (N, d') the sample features, ``phat``
    (N, C) the unit soft labels, ``w`` (N, R) the importance weights and
    ``matching`` (N, N, R) the matched regions.
    """

    feats_flat: torch.Tensor
    n_regions: int
    g: torch.Tensor
    phat: torch.Tensor
    w: torch.Tensor
    matching: torch.Tensor
    n_candidates: int
    scale: float
    kappa_fn: object
    kappa_p: float
    exact: bool
    sim_weight: float
    align_weight: float
    workspace: _mk.Workspace
    acc_dtype: torch.dtype = torch.float64  # the loss sums (float32 on MPS)

    @property
    def n_images(self) -> int:
        return self.g.shape[0]

    def all_others(self):
        """Every image's candidate set when it is all the others, else None."""
        N, device = self.n_images, self.feats_flat.device
        return (
            _mk.all_others(N, device) if _mk.same_sets(self.n_candidates, N) else None
        )

    def step_loss(self, components, anchors, cand, *, with_grad):
        """Per-anchor loss (a,) of SPEC 5 and, with ``with_grad``, its
        gradient in ``components.grad``: by hand for the faithful gradient,
        by autograd for the exact one."""
        common = (
            self.feats_flat, self.n_regions, self.scale, self.g, self.phat, self.w,
            self.matching, anchors, cand,
        )  # fmt: skip
        if not self.exact:
            loss, grad = _mk.aligner_loss_grad(
                components.detach(),
                *common,
                kappa_fn=self.kappa_fn,
                kappa_p=self.kappa_p,
                sim_weight=self.sim_weight,
                align_weight=self.align_weight,
                with_grad=with_grad,
                workspace=self.workspace,
            )
            if with_grad:
                components.grad = grad
            return loss.detach()
        with torch.set_grad_enabled(with_grad):
            l_sim, l_align = _mk.aligner_loss(
                components,
                *common,
                kappa_fn=self.kappa_fn,
                kappa_p=self.kappa_p,
                exact=True,
                workspace=self.workspace,
            )
            loss = self.sim_weight * l_sim + self.align_weight * l_align
            if with_grad:
                loss.mean().backward()
        return loss.detach()

    def mean_loss(self, components, generator):
        """Mean loss over every anchor at ``components``, without updates.

        The first point of ``loss_curve_``: the epochs' values are means over
        their steps, this one is the same loss before any step. Anchors are
        evaluated together in chunks (no gradient), which costs a few steps.
        """
        N, K = self.n_images, self.feats_flat.shape[1]
        device = self.feats_flat.device
        everyone = torch.arange(N, device=device)
        cand = self.all_others()
        if cand is None:
            cand = _mk.draw_candidates(N, everyone, self.n_candidates, generator)
        per_anchor = 4 * self.n_candidates * self.n_regions * (K + 32)
        chunk = int(max(1, min(N, _mk.step_budget(device) // per_anchor)))
        total = torch.zeros((), dtype=self.acc_dtype, device=device)
        with torch.no_grad():
            for start in range(0, N, chunk):
                sl = slice(start, min(start + chunk, N))
                loss = self.step_loss(
                    components, everyone[sl], cand[sl], with_grad=False
                )
                total += loss.sum(dtype=self.acc_dtype)
        return float(total) / N


def _align_epoch(problem, components, optimizer, generator, batch_size):
    """One pass of SPEC 5's SGD over the anchors in random order.

    ``batch_size`` anchors per step, each with freshly drawn candidates
    (all other images, undrawn, when ``n_candidates = N - 1``); returns the
    mean loss over the pass.
    """
    N = problem.n_images
    device = problem.feats_flat.device
    order = torch.randperm(N, generator=generator).to(device)
    others = problem.all_others()
    total = torch.zeros((), dtype=problem.acc_dtype, device=device)
    for start in range(0, N, batch_size):
        anchors = order[start : start + batch_size]
        if others is None:
            cand = _mk.draw_candidates(N, anchors, problem.n_candidates, generator)
        else:
            cand = others.index_select(0, anchors)
        loss = problem.step_loss(components, anchors, cand, with_grad=True)
        optimizer.step()
        total += loss.sum(dtype=problem.acc_dtype)
    return float(total) / N  # one device sync per epoch


def _fit_layer_job(aligner, name, regions, P, G, seed, n_threads):
    """One layer's fit in a worker process (``RegionalAligner(n_jobs=...)``)."""
    torch.set_num_threads(n_threads)
    device = torch.device("cpu")
    phat = unit_rows(torch.as_tensor(P, dtype=_DTYPE))
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


def _fit_layer_tensors_job(aligner, name, F, phat, G, seed, n_threads, acc):
    """:func:`_fit_layer_job` for CPU tensors (Array API dispatch)."""
    torch.set_num_threads(n_threads)
    kappa_fn = TorchKappa("revised", G.shape[1], aligner.sigma, F.device)
    return aligner._fit_layer(
        name,
        F,
        phat,
        G,
        torch_generator(seed),
        kappa_fn,
        aligner.gradient == "exact",
        acc=acc,
    )


# ---------------------------------------------------------------------------
# arrays of any namespace and device (scikit-learn's Array API dispatch)
# ---------------------------------------------------------------------------
class _ArraySpace:
    """The namespace and device of ``X`` under dispatch, and where torch
    computes for them: on X's device for torch tensors, on the CPU for any
    other namespace (array-api-strict, ...), whose results go back to it."""

    def __init__(self, xp, device):
        self.xp, self.device = xp, device
        self.is_torch = _xa.is_torch(xp)
        self.compute = torch.device(device) if self.is_torch else torch.device("cpu")
        # array-api-compat's torch namespace (torch's own has no from_dlpack
        # with a device argument)
        self.torch_xp = xp if self.is_torch else _xa.get_namespace(torch.empty(0))[0]

    def describe(self):
        return f"{_xa.namespace_name(self.xp)} arrays on device {self.device}"

    def accumulation_dtype(self):
        """float64 for loss sums and soft labels where the compute device has
        it; float32 with a warning where it does not (Apple's MPS)."""
        return _xa.float_dtype(
            self.torch_xp,
            self.compute,
            name="RegionalAligner's soft labels, scales and loss sums",
        )

    def tensor(self, array, name):
        """``array`` (of any namespace, or a list) as a torch tensor on the
        compute device; nothing passes through the host for torch input."""
        if not is_tensor(array) and not hasattr(array, "__array_namespace__"):
            array = real_array(array, name)  # lists, memmaps, array-likes
        target = (self.xp, self.device) if self.is_torch else (self.torch_xp, "cpu")
        try:
            return _xa.move_to(array, xp=target[0], device=target[1])
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(
                f"{name} must be a numeric array; got {type(array).__name__} "
                f"that cannot be moved to torch on {self.compute}"
            ) from exc

    def out(self, tensor):
        """A result tensor in X's namespace and on its device."""
        if self.is_torch:
            return tensor
        return _xa.move_to(tensor, xp=self.xp, device=self.device)


def _array_space(reference):
    """The :class:`_ArraySpace` of ``reference`` under dispatch; None for
    the numpy path (dispatch off, or numpy or list input)."""
    if reference is None or isinstance(reference, (list, tuple)):
        return None
    if not _xa.dispatch_enabled():
        return None
    xp, _, device = _xa.get_namespace_and_device(reference)
    if _xa.is_numpy(xp):
        return None
    return _ArraySpace(xp, device)


def _check_same_space(estimator, reference, space, method):
    """Refuse input in another namespace or device than the fit's (dispatch
    on only), naming both."""
    if not _xa.dispatch_enabled():
        return
    fitted = _array_space(estimator.components_[estimator.layers_[0]])
    if fitted is None and space is None:
        return
    same = (
        fitted is not None
        and space is not None
        and _xa.namespace_name(fitted.xp) == _xa.namespace_name(space.xp)
        and str(fitted.device) == str(space.device)
    )
    if same:
        return
    got = space.describe() if space is not None else "numpy arrays on device cpu"
    was = fitted.describe() if fitted is not None else "numpy arrays on device cpu"
    raise ValueError(
        f"RegionalAligner.{method}() got {got}, but the aligner was fitted on "
        f"{was}; inputs must use the namespace and device of fit (move X there, "
        "or refit)"
    )


# ---------------------------------------------------------------------------
# running out of device memory
# ---------------------------------------------------------------------------
class AlignerOutOfMemoryError(torch.OutOfMemoryError):
    """torch's out-of-memory error, saying what was tried and what would fit.

    Raised by :class:`RegionalAligner` (from the original error) with the
    sizes of the layer (N, R, K, n_candidates), the bytes of its largest
    working sets and a ``chunk_size`` that fits the device's free memory.
    """


# the kernels' own out-of-memory error (sizes and advice of their chunk)
_KERNEL_OUT_OF_MEMORY = getattr(_mk, "KernelOutOfMemoryError", AlignerOutOfMemoryError)


def _fit_advice(sizes, chunk_size):
    """The sizes tried in one layer's fit and a ``chunk_size`` that fits."""
    N, R, K = sizes["shape"]
    n, itemsize, device = sizes["n_candidates"], sizes["itemsize"], sizes["device"]
    per_anchor = _mk.bytes_per_anchor_importance(n, R, K, itemsize)
    tried = chunk_size or int(
        max(1, min(N, _mk.step_budget(device) // max(per_anchor, 1)))
    )
    free = _mk.free_bytes(device)
    fits = int(max(1, min(free // max(per_anchor, 1), max(1, tried // 2))))
    tried_text = (
        f"N={N} images, R={R} regions, K={K} channels, n_candidates={n}: "
        f"importance-weight chunks of {tried} anchors x {per_anchor} bytes = "
        f"{tried * per_anchor} bytes, the region matching of N^2 R int16 = "
        f"{2 * N * N * R} bytes and the features {N * R * K * itemsize} bytes"
    )
    return tried_text, tried, fits, free


def _transform_advice(sizes, chunk_size):
    """The sizes tried in one layer's embedding and a ``chunk_size`` that fits."""
    N, R, K = sizes["shape"]
    d, itemsize, device = sizes["n_components"], sizes["itemsize"], sizes["device"]
    per_image = itemsize * R * (2 * K + d)
    tried = chunk_size or max(1, _mk.memory_budget(device) // (4 * R * K))
    tried = int(min(tried, N))
    free = _mk.free_bytes(device)
    fits = int(max(1, min(free // max(per_image, 1), max(1, tried // 2))))
    tried_text = (
        f"N={N} images, R={R} regions, K={K} channels, d'={d}: chunks of "
        f"{tried} images x {per_image} bytes = {tried * per_image} bytes"
    )
    return tried_text, tried, fits, free


@contextmanager
def _memory_guard(method, chunk_size, layer=None, sizes=None):
    """Re-raise torch's out-of-memory error as :class:`AlignerOutOfMemoryError`
    with the sizes tried and a ``chunk_size`` that would fit (from it)."""
    try:
        yield
    except AlignerOutOfMemoryError:
        raise
    except torch.OutOfMemoryError as exc:
        if sizes is None:
            raise AlignerOutOfMemoryError(
                f"RegionalAligner.{method} ran out of memory outside the layers' "
                f"work (moving the input to the device): {exc}; give smaller "
                "inputs"
            ) from exc
        advice = _fit_advice if "n_candidates" in sizes else _transform_advice
        tried_text, tried, fits, free = advice(sizes, chunk_size)
        where = f"RegionalAligner.{method} ran out of memory on {sizes['device']}"
        if isinstance(exc, _KERNEL_OUT_OF_MEMORY):
            # a matching or importance kernel already measured its chunk
            raise AlignerOutOfMemoryError(
                f"{where} at layer {layer!r} ({tried_text.split(':')[0]}): {exc}"
            ) from exc
        if tried > 1:
            hint = (
                f"pass chunk_size={fits} (about {free} bytes are free on "
                f"{sizes['device']}), or use fewer images"
            )
        else:
            hint = "chunk_size is already 1: use fewer images, regions or candidates"
        raise AlignerOutOfMemoryError(
            f"{where} at layer {layer!r} with {tried_text}; {hint}. ({exc})"
        ) from exc


# ---------------------------------------------------------------------------
# the estimator
# ---------------------------------------------------------------------------
class RegionalAligner(DevicePicklingMixin, TransformerMixin, BaseEstimator):
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
        Anchors per chunk in the importance weights and the full matching,
        and images per chunk in :meth:`transform` (default: from a
        working-memory budget). When the device runs out of memory, the
        error (:class:`AlignerOutOfMemoryError`) names a value that fits.
    matmul_precision : {"float32", "bfloat16", "tf32"}, default="float32"
        How the score matmuls of the importance weights and the region
        matching run (SPEC 4). ``"float32"``: the reference, in the
        features' float32. ``"bfloat16"``: operands rounded to bfloat16 (8
        significant bits), products accumulated in float32 (tensor cores on
        CUDA). ``"tf32"``: TF32 tensor-core matmuls on CUDA (float32 on the
        CPU, which has none). Faster on a GPU; the matching may then pick
        another region where two nearly tie. Lambda's steps stay float32.
    device : str or torch.device, default="cpu"
        Where the work runs (``"cuda"`` when available) for numpy input and
        whenever ``array_api_dispatch`` is off. With dispatch on and input
        of another namespace, X's device wins: torch tensors are computed on
        their own device, other namespaces (array-api-strict) on the CPU.
    n_jobs : int or None, default=None
        Layers fitted in parallel processes on the CPU (joblib; None means 1,
        -1 every core); each layer's result is identical to a sequential fit.
        The per-anchor SGD steps are small and bound by Python overhead, so
        this is the way to use several cores. Ignored on any device but
        the CPU (CUDA, or tensors elsewhere under dispatch): the layers fit
        one after the other there.
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
        Lambda of each layer (float32). With ``array_api_dispatch`` on, in
        X's namespace and on its device, as are the two weights below.
    importance_weights_ : dict of str to ndarray of shape (N, R)
        The region importance weights w of the training images (float32).
    channel_weights_ : dict of str to ndarray of shape (N, K)
        The channel weights v of the training images (float32).
    loss_curve_ : dict of str to ndarray of shape (max_epochs + 1,)
        The mean loss over every anchor at the initial Lambda (one pass
        without updates, on candidates of its own draw), then the mean loss
        over each epoch's steps; empty when ``max_epochs=0``. A log: numpy
        float64 whatever the input's namespace, as is
        ``importance_loss_curve_``.
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

    With scikit-learn's ``array_api_dispatch`` on (SPEC 10), everything
    follows X (for a FeatureSet, the regions of the first layer): soft
    labels, logits and g are moved to X's namespace and device, torch
    tensors are computed on their device without a host copy, arrays of
    other namespaces (array-api-strict) in torch on the CPU, and the fitted
    arrays and ``h`` come back in X's namespace on its device. Transforming
    input of another namespace or device than the fit's is a ``ValueError``
    naming both. Soft labels, scales and loss sums are float64 where the
    device has it, float32 with a warning where it does not.

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
        "matmul_precision": [StrOptions(set(_mk.PRECISIONS))],
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
        matmul_precision="float32",
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
        self.matmul_precision = matmul_precision
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

    def _featureset_inputs(self, X, soft_labels, g):
        """Regions, labels (and their name) and g of a FeatureSet."""
        if soft_labels is not None or g is not None:
            raise ValueError(
                "with a FeatureSet, soft labels and g come from the "
                "FeatureSet; do not pass soft_labels= or g= to fit"
            )
        if not X.regions:
            raise ValueError(
                "this FeatureSet has no regional features (FeatureSet.regions is empty)"
            )
        regions = {name: X.regions[name] for name in self._layer_names(X.regions)}
        if X.g is None:
            raise ValueError(
                "this FeatureSet has no projected sample features g "
                "(FeatureSet.g is None): run SampleProjector first "
                "(SampleProjector().fit(X).transform(X) adds g)"
            )
        if self.from_logits:
            if X.logits is None:
                raise ValueError("from_logits=True but this FeatureSet has no logits")
            return regions, X.logits, "X.logits", X.g
        if X.soft_labels is None:
            raise ValueError("this FeatureSet has neither soft_labels nor logits")
        return regions, X.soft_labels, "X.soft_labels", X.g

    def _array_inputs(self, X, soft_labels, g):
        """Regions, labels (and their name) and g of array input."""
        if self.layers is not None and not isinstance(self.layers, str):
            raise ValueError(
                "for array input, layers must be None or one layer name; "
                f"got {self.layers!r}"
            )
        if _array_space(X) is None:  # other namespaces: checked as tensors
            refuse_sparse(X, "X")
            refuse_complex(X, "X")
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
        return {self.layers or _ARRAY_LAYER: X}, soft_labels, "soft_labels", g

    def _raw_inputs(self, X, soft_labels, g):
        """Layers -> regions, the labels, their name and g, unconverted."""
        if isinstance(X, FeatureSet):
            return self._featureset_inputs(X, soft_labels, g)
        return self._array_inputs(X, soft_labels, g)

    def _inputs(self, X, soft_labels, g):
        """Layers -> regions, soft labels P (N, C) float64, g (N, d') float64."""
        return self._numpy_inputs(*self._raw_inputs(X, soft_labels, g))

    @staticmethod
    def _count_images(regions, labels, name, G):
        """The same number of images everywhere, or a ValueError naming all."""
        counts = {f"regions[{k!r}]": int(v.shape[0]) for k, v in regions.items()}
        counts["g"] = int(G.shape[0])
        counts[name] = int(labels.shape[0])
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{k}: {v}" for k, v in counts.items())
            raise ValueError(
                f"regions, soft labels and g need the same number of images; "
                f"got {detail}"
            )

    def _tensor_inputs(self, space, regions, labels, name, g, *, min_regions):
        """:meth:`_inputs` on the compute device of ``space``: regions (in
        their floating dtype: each is made float32 when its layer's turn
        comes, so that only one layer's copy is held), soft labels P and g in
        the accumulation dtype (float64 where the device has it), validated
        without a host copy."""
        acc = space.accumulation_dtype()
        G = finite_matrix_tensor(space.tensor(g, "g"), "g", acc)
        if G.shape[1] < 2:
            raise ValueError(
                f"g must have shape (N, d') with d' >= 2; got shape {tuple(G.shape)}"
            )
        labels = space.tensor(labels, name)
        if labels.dim() < 1:
            raise ValueError(f"{name} must be a 2-D array; got a scalar")
        self._count_images(regions, labels, name, G)
        P = soft_labels_tensor(
            labels,
            n_samples=G.shape[0],
            from_logits=self.from_logits,
            temperature=self.temperature,
            name=name,
            dtype=acc,
        )
        feats = {}
        for layer, value in regions.items():
            label = f"regions[{layer!r}]"
            feats[layer] = regions_tensor(
                space.tensor(value, label), space.compute, label, min_regions
            )
        return feats, P, G, acc

    def _numpy_inputs(self, regions, labels, name, g):
        """The numpy path of :meth:`_inputs`."""
        G = finite_matrix(g, "g")
        if G.shape[1] < 2:
            raise ValueError(
                f"g must have shape (N, d') with d' >= 2; got shape {G.shape}"
            )
        labels = real_array(labels, name)
        if labels.ndim < 1:
            raise ValueError(f"{name} must be a 2-D array; got a scalar")
        self._count_images(regions, labels, name, G)
        P = check_soft_labels(
            labels,
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
            regional features of one layer. With ``array_api_dispatch`` on,
            of any Array API namespace and device (see Notes).
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
        raw = self._raw_inputs(X, soft_labels, g)
        space = _array_space(next(iter(raw[0].values())))
        if space is None:
            with _memory_guard("fit", self.chunk_size):
                self._fit_numpy(*raw)
        else:
            with _memory_guard("fit", self.chunk_size):
                self._fit_tensors(space, *raw)
        self.n_iter_ = self.max_epochs
        # here, not in _fit_layer: with n_jobs > 1 the layers fit in workers
        for name in self.layers_:
            warn_if_not_falling(
                self.importance_loss_curve_[name], "importance weights", name
            )
            warn_if_not_falling(self.loss_curve_[name], "alignment", name)
        return self

    def _fit_numpy(self, regions, labels, name, g):
        """fit without dispatch (or on numpy input): numpy attributes."""
        device = resolve_device(self.device)
        regions, P, G = self._numpy_inputs(regions, labels, name, g)
        # validate every layer before any (long) fit starts
        for layer, value in regions.items():
            regions_tensor(value, "cpu", name=f"regions[{layer!r}]", min_regions=2)
        n_cand = self._candidates_per_anchor(G.shape[0])
        self._start_attributes(regions, G.shape[1], n_cand)
        results = self._fit_layers(regions, P, G, device)
        for layer, result in zip(regions, results):
            for key, value in result.items():
                if is_tensor(value):
                    value = value.detach().cpu().numpy().copy()
                getattr(self, key)[layer] = value

    def _fit_tensors(self, space, regions, labels, name, g):
        """fit under dispatch: computed in torch on X's device (the CPU for
        namespaces other than torch), attributes in X's namespace there."""
        feats, P, G, acc = self._tensor_inputs(
            space, regions, labels, name, g, min_regions=2
        )
        n_cand = self._candidates_per_anchor(G.shape[0])
        self._start_attributes(feats, G.shape[1], n_cand)
        phat = unit_rows(P.to(_DTYPE))
        G = G.to(_DTYPE)
        del P
        base_seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        n_jobs = effective_n_jobs(self.n_jobs)
        if space.compute.type != "cpu" or len(feats) < 2:
            n_jobs = 1  # one device context; nothing to share out
        if n_jobs == 1:
            kappa_fn = TorchKappa("revised", G.shape[1], self.sigma, space.compute)
            results = []
            for layer, F in feats.items():
                with self._layer_guard("fit", layer, F, n_cand):
                    results.append(
                        self._fit_layer(
                            layer,
                            F.to(_DTYPE),
                            phat,
                            G,
                            torch_generator(self._layer_seed(base_seed, layer)),
                            kappa_fn,
                            self.gradient == "exact",
                            acc=acc,
                        )
                    )
        else:
            threads = max(1, torch.get_num_threads() // min(n_jobs, len(feats)))
            results = Parallel(n_jobs=n_jobs)(
                delayed(_fit_layer_tensors_job)(
                    self,
                    layer,
                    F.to(_DTYPE),
                    phat,
                    G,
                    self._layer_seed(base_seed, layer),
                    threads,
                    acc,
                )
                for layer, F in feats.items()
            )
        for layer, result in zip(feats, results):
            for key, value in result.items():
                if is_tensor(value):
                    value = space.out(value.detach().clone())
                getattr(self, key)[layer] = value

    def _layer_guard(self, method, layer, F, n_candidates=None):
        """:func:`_memory_guard` with one layer's sizes (``n_candidates``:
        those of a fit, whose advice is about the importance chunks)."""
        sizes = {
            "shape": tuple(int(n) for n in F.shape),
            "n_components": getattr(self, "n_components_", None),
            "itemsize": torch.finfo(_DTYPE).bits // 8,  # the work is float32
            "device": F.device,
        }
        if n_candidates is not None:
            sizes["n_candidates"] = int(n_candidates)
        return _memory_guard(method, self.chunk_size, layer, sizes)

    def _candidates_per_anchor(self, n_images):
        """``n_candidates``, clipped with a warning to the N - 1 others."""
        if n_images < 3:
            raise ValueError(
                f"at least 3 images are needed (each anchor compares 2 or more "
                f"other images); got {n_images}"
            )
        if self.n_candidates > n_images - 1:
            _warn.warn(
                f"n_candidates={self.n_candidates} but there are only "
                f"{n_images - 1} other images per anchor; using "
                f"n_candidates={n_images - 1}",
                UserWarning,
            )
            return n_images - 1
        return self.n_candidates

    def _start_attributes(self, regions, n_components, n_candidates):
        """The fitted attributes, per-layer ones empty until the layers fit."""
        self.layers_ = list(regions)
        self.components_, self.importance_weights_, self.channel_weights_ = {}, {}, {}
        self.loss_curve_, self.importance_loss_curve_, self.kappa_m_ = {}, {}, {}
        self.n_features_in_, self.n_regions_, self.scales_ = {}, {}, {}
        self.n_components_ = n_components
        self.n_candidates_ = n_candidates

    def _fit_layers(self, regions, P, G, device):
        """Every layer's fit (a dict of its attributes), in this process or,
        on the CPU with ``n_jobs`` > 1, in worker processes; each layer draws
        from its own stream, so both give the same result."""
        base_seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        n_jobs = effective_n_jobs(self.n_jobs)
        if device.type != "cpu" or len(regions) < 2:
            n_jobs = 1  # one CUDA context; nothing to share out
        if n_jobs == 1:
            kappa_fn = TorchKappa("revised", G.shape[1], self.sigma, device)
            Gt = torch.as_tensor(G, dtype=_DTYPE, device=device)
            phat = unit_rows(torch.as_tensor(P, dtype=_DTYPE, device=device))
            results = []
            for name, value in regions.items():
                F = regions_tensor(value, device, name=name).to(_DTYPE)
                with self._layer_guard("fit", name, F, self.n_candidates_):
                    results.append(
                        self._fit_layer(
                            name,
                            F,
                            phat,
                            Gt,
                            torch_generator(self._layer_seed(base_seed, name)),
                            kappa_fn,
                            self.gradient == "exact",
                        )
                    )
                del F
            return results
        threads = max(1, torch.get_num_threads() // min(n_jobs, len(regions)))
        return Parallel(n_jobs=n_jobs)(
            delayed(_fit_layer_job)(
                self,
                name,
                real_array(value, f"regions[{name!r}]"),
                P,
                G,
                self._layer_seed(base_seed, name),
                threads,
            )
            for name, value in regions.items()
        )

    def _weights_and_matching(self, fhat, phat, gen, n, *, verbose, name):
        """The images' importance weights (SPEC 4) and their full matching
        under the fitted channel weights: (w, v, loss curve, matching)."""
        N, R, K = fhat.shape
        w, v, w_curve = fit_importance(
            fhat,
            phat,
            gen,
            n_steps=self.weight_steps,
            verbose=verbose,
            desc=f"{name}: importance weights",
            n_candidates=n,
            kappa_p=self.kappa_p,
            kappa_m=resolve_kappa_m(self.kappa_m, K),
            lr=self.weight_lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            step_control=self.weight_step_control,
            chunk_size=self.chunk_size,
            precision=self.matmul_precision,
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
            precision=self.matmul_precision,
        )
        return w, v, w_curve, matching

    def _layer_scale(self, feats_flat, name, acc=torch.float64):
        """The divisor s: ``scale``, or the mean strength of the features."""
        if self.scale != "auto":
            return float(self.scale)
        scale = _mean_strength(feats_flat, acc)
        if not scale > 0:
            raise ValueError(
                f"layer {name!r}: every regional feature is zero; nothing to align"
            )
        return scale

    def _problem(
        self, feats_flat, R, G, phat, w, matching, scale, kappa_fn, exact, acc
    ):
        """One layer's :class:`_LayerProblem` under this estimator's settings."""
        return _LayerProblem(
            feats_flat=feats_flat,
            n_regions=R,
            g=G,
            phat=phat,
            w=w,
            matching=matching,
            n_candidates=self.n_candidates_,
            scale=scale,
            kappa_fn=kappa_fn,
            kappa_p=self.kappa_p,
            exact=exact,
            sim_weight=self.sim_weight,
            align_weight=self.align_weight,
            workspace=_mk.Workspace(),
            acc_dtype=acc,
        )

    def _descend(self, problem, gen, name):
        """Lambda's SGD from N(0, 0.1^2): (Lambda, loss curve).

        The curve starts with the mean loss at the starting Lambda, on
        candidates of its own stream (the training draws are those of a fit
        without this point), then holds each epoch's mean loss.
        """
        K = problem.feats_flat.shape[1]
        init = torch.randn((problem.g.shape[1], K), generator=gen, dtype=_DTYPE)
        components = torch.nn.Parameter((_INIT_STD * init).to(problem.g.device))
        opt = MomentumSGD(
            components,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )
        curve = []
        if self.max_epochs > 0:
            start_gen = torch.Generator(device=gen.device)
            start_gen.manual_seed(gen.initial_seed() ^ 0x5EED)
            curve.append(problem.mean_loss(components, start_gen))
        for epoch in progress(
            range(self.max_epochs),
            verbose=self.verbose,
            total=self.max_epochs,
            desc=f"{name}: epochs",
            unit="epoch",
        ):
            value = _align_epoch(problem, components, opt, gen, self.batch_size)
            if not math.isfinite(value):
                raise ValueError(
                    f"layer {name!r}: the alignment diverged in epoch {epoch} "
                    f"(loss {value}); lower lr (now {self.lr})"
                )
            curve.append(value)
            message(f"{name}: epoch {epoch} loss {value:.6g}", verbose=self.verbose)
        return components, curve

    def _fit_layer(self, name, F, phat, G, gen, kappa_fn, exact, acc=torch.float64):
        """One layer: importance weights and matching (SPEC 4), the scale,
        then Lambda's SGD (SPEC 5); returns the layer's fitted attributes
        (Lambda, w and v as tensors on F's device; the caller converts)."""
        N, R, K = F.shape
        fhat = _mk.normalize_channels(F)
        w, v, w_curve, matching = self._weights_and_matching(
            fhat, phat, gen, self.n_candidates_, verbose=self.verbose, name=name
        )
        feats_flat = (fhat if self.normalize_channels else F).reshape(N * R, K)
        del F, fhat
        scale = self._layer_scale(feats_flat, name, acc)
        problem = self._problem(
            feats_flat, R, G, phat, w, matching, scale, kappa_fn, exact, acc
        )
        components, curve = self._descend(problem, gen, name)
        return {
            "components_": components.detach(),
            "importance_weights_": w,
            "channel_weights_": v,
            "loss_curve_": np.asarray(curve, dtype=np.float64),
            "importance_loss_curve_": w_curve,
            "kappa_m_": resolve_kappa_m(self.kappa_m, K),
            "n_features_in_": K,
            "n_regions_": R,
            "scales_": scale,
        }

    # -- using the embedding -------------------------------------------------
    def _embed_tensor(self, F, lam, name):
        """h = Lambda f / s of a validated float32 tensor F (N, R, K), on its
        device, ``chunk_size`` (or a memory budget's worth of) images at a
        time."""
        K = self.n_features_in_[name]
        if F.shape[2] != K:
            raise ValueError(
                f"regions[{name!r}] has {F.shape[2]} channels but the aligner was "
                f"fitted with {K}; got shape {tuple(F.shape)}"
            )
        N, R, _ = F.shape
        rows = self.chunk_size or max(1, _mk.memory_budget(F.device) // (4 * R * K))
        parts = []
        for start in range(0, N, rows):
            f = F[start : start + rows]
            if self.normalize_channels:
                f = _mk.normalize_channels(f)
            parts.append((f @ lam.T) / self.scales_[name])
        return torch.cat(parts)

    def _embed(self, regions, name):
        """h = Lambda f / s for one layer, without dispatch (or on numpy
        input): arrays in, float32 arrays out (tensors for tensor input)."""
        device = resolve_device(self.device)
        F = regions_tensor(regions, device, name=f"regions[{name!r}]").to(_DTYPE)
        lam = torch.as_tensor(self.components_[name], device=device)
        with self._layer_guard("transform", name, F):
            h = self._embed_tensor(F, lam, name)
        if is_tensor(regions):
            return h.to(regions.device)
        return h.cpu().numpy()

    def _embed_in(self, space, regions, name):
        """h for one layer under dispatch: in X's namespace, on its device."""
        label = f"regions[{name!r}]"
        F = regions_tensor(space.tensor(regions, label), space.compute, label)
        F = F.to(_DTYPE)
        lam = space.tensor(self.components_[name], "components_")
        with self._layer_guard("transform", name, F):
            h = self._embed_tensor(F, lam.to(_DTYPE), name)
        return space.out(h)

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
            ``from_logits``) and g, of at least 3 images. With
            ``array_api_dispatch`` on, in the namespace and on the device of
            the fit (computed there, without a host copy of the features).

        Returns
        -------
        dict of str to dict
            Per fitted layer, ``{"sim": mean L_sim, "align": mean L_align}``
            (both lower is better: the regions mimic the network's
            sample-to-sample distribution, and point along g); Python floats.
        """
        check_is_fitted(self, "components_")
        if not isinstance(X, FeatureSet):
            raise ValueError(
                "held_out_losses needs a FeatureSet (regions, soft labels, g)"
            )
        regions, labels, label_name, g = self._raw_inputs(X, None, None)
        missing = [name for name in self.layers_ if name not in regions]
        if missing:
            raise ValueError(
                f"the FeatureSet lacks the fitted layer(s) {missing}; it has "
                f"regions for {X.layers}"
            )
        regions = {name: regions[name] for name in self.layers_}
        raw = (regions, labels, label_name, g)
        space = _array_space(regions[self.layers_[0]])
        _check_same_space(self, regions[self.layers_[0]], space, "held_out_losses")
        if space is None:
            regions, P, G = self._numpy_inputs(*raw)
            device = resolve_device(self.device)
            feats = regions  # converted (and checked) layer by layer below
            G = torch.as_tensor(G, dtype=torch.float64, device=device)
            P = torch.as_tensor(P, dtype=_DTYPE, device=device)
            acc = torch.float64
        else:
            feats, P, G, acc = self._tensor_inputs(space, *raw, min_regions=1)
            device = space.compute
        N = G.shape[0]
        if N < 3:
            raise ValueError(f"at least 3 images are needed; got {N}")
        phat = unit_rows(P.to(_DTYPE))
        kappa_fn = TorchKappa("revised", G.shape[1], self.sigma, device)
        gen = torch_generator(self.random_state)
        out = {}
        for name in self.layers_:
            lam = self.components_[name]
            lam = (
                torch.as_tensor(lam, device=device)
                if space is None
                else space.tensor(lam, "components_")
            )
            F = regions_tensor(feats[name], device, name=name).to(_DTYPE)
            with self._layer_guard("held_out_losses", name, F, N - 1):
                out[name] = self._held_out_layer(
                    name, F, lam.to(_DTYPE), phat, G, kappa_fn, gen, acc
                )
        return out

    def _held_out_layer(self, name, F, lam, phat, G, kappa_fn, gen, acc):
        """``{"sim", "align"}`` of :meth:`held_out_losses` for one layer
        (F float32 and G in ``acc`` on the compute device)."""
        N, R, K = F.shape
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
        problem = _LayerProblem(
            feats_flat=feats.reshape(N * R, K),
            n_regions=R,
            g=G.to(_DTYPE),
            phat=phat,
            w=w,
            matching=matching,
            n_candidates=N - 1,
            scale=self.scales_[name],
            kappa_fn=kappa_fn,
            kappa_p=self.kappa_p,
            exact=self.gradient == "exact",
            sim_weight=1.0,
            align_weight=0.0,
            workspace=_mk.Workspace(),
            acc_dtype=acc,
        )
        sim = problem.mean_loss(lam, gen)
        h = self._embed_tensor(F, lam, name).to(acc)
        return {"sim": float(sim), "align": _align_loss(h, G, w)}

    def transform(self, X):
        """Embed regional features: h = Lambda f / scale.

        Parameters
        ----------
        X : FeatureSet or array-like of shape (N, R, K)
            A FeatureSet holding every fitted layer (any images: new ones,
            adversarial ones), or the regional features of the one fitted
            layer. With ``array_api_dispatch`` on, in the namespace and on
            the device of the fit (a ``ValueError`` naming both otherwise).

        Returns
        -------
        FeatureSet or ndarray of shape (N, R, d')
            For a FeatureSet, a copy with ``h[layer]`` added for every fitted
            layer (X itself is not modified); for an array, h (float32; a
            tensor for tensor input). With ``array_api_dispatch`` on, h is in
            X's namespace and on its device.
        """
        check_is_fitted(self, "components_")
        if isinstance(X, FeatureSet):
            missing = [name for name in self.layers_ if name not in X.regions]
            if missing:
                raise ValueError(
                    f"the FeatureSet lacks the fitted layer(s) {missing}; it has "
                    f"regions for {X.layers}"
                )
            reference = X.regions[self.layers_[0]]
        else:
            if len(self.layers_) != 1:
                raise ValueError(
                    f"this aligner was fitted on {len(self.layers_)} layers "
                    f"{self.layers_}; transform a FeatureSet holding them"
                )
            reference = X
        space = _array_space(reference)
        _check_same_space(self, reference, space, "transform")

        def embed(regions, name):
            with _memory_guard("transform", self.chunk_size):
                if space is None:
                    return self._embed(regions, name)
                return self._embed_in(space, regions, name)

        if isinstance(X, FeatureSet):
            return X.with_layers(
                "h", **{name: embed(X.regions[name], name) for name in self.layers_}
            )
        return embed(X, self.layers_[0])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.target_tags.required = False
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.array_api_support = True
        return tags
