"""Sample-feature projection: learning M so that g = M f / s mimics the DNN.

SPEC section 3. The sample features f_i of N images (the input of the
network's last fully-connected layer) are projected to a low-dimensional
space, ``g_i = M (f_i / s)``, where a revised von Mises-Fisher category model
(SPEC 1-2) explains the network's soft labels P(y|x_i):

- category model, recomputed from the network at every step (teacher
  responsibilities, as in DRPR): ``pi_y = mean_i P(y|x_i)`` and
  ``mu_y = normalise(sum_i P(y|x_i) kappa(l_i) o_i)``;
- ``Q_M(y|g_i) = softmax_y(log pi_y + kappa(l_i) cos(o_i, mu_y))``;
- loss ``sum_i KL(P(.|x_i) || Q_M(.|g_i))`` with an L2 penalty on M,
  minimised by full-batch Adam (default: the lower held-out loss) or by the
  paper's full-batch SGD with momentum (``solver="sgd"``).

Here ``l_i = ||g_i||`` is the strength, ``o_i = g_i / l_i`` the orientation
and ``kappa(l)`` the revised concentration of :func:`skvmf.vmf.revised_kappa`
in dimension d'. Across training checkpoints the embeddings are put into one
coordinate system by orthogonal Procrustes (:func:`procrustes_rotation`,
:meth:`SampleProjector.fit_sequence`).

References
----------
Li, Wang, Zhang. "Visualizing the Emergence of Intermediate Visual Patterns
in DNNs", NeurIPS 2021 (the method and its supplement, Eq. 3).
Law, Snell, Farahmand, Urtasun, Zemel. "Dimensionality Reduction for
Representing the Knowledge of Probabilistic Models", ICLR 2019 (teacher
responsibilities).
Schoenemann. "A generalized solution of the orthogonal Procrustes problem",
Psychometrika 31, 1966.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import log_softmax as _np_log_softmax
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from ._array_api import (
    check_same_namespace,
    dispatch_enabled,
    float_dtype,
    get_namespace_and_device,
    is_numpy,
    is_torch,
    move_to,
    to_numpy,
)
from ._kernels.kappa import TorchKappa
from ._numerics.arrays import real_array, refuse_complex, refuse_empty, safe_norm
from ._numerics.soft_labels import check_soft_labels, check_soft_labels_xp
from ._persistence import DevicePicklingMixin
from ._torch.devices import resolve_device, torch_generator
from ._torch.optimisers import Adam, MomentumSGD
from ._utils.convergence import warn_if_not_falling
from ._utils.progress import message, progress
from .features import FeatureSet

__all__ = ["SampleProjector", "procrustes_rotation"]

_DTYPE = torch.float64
# the fitted arrays of the model (numpy, or X's namespace with dispatch on)
_ARRAY_ATTRIBUTES = ("components_", "directions_", "priors_")
# mean KL per sample beyond which training has diverged: -log Q of a sample is
# at most 2 kappa(l) + log(1 / pi), so this needs strengths ~ 700 and more
_DIVERGED = 1e6
# lr="auto": SGD's is the paper's. An Adam step moves every entry of M by up
# to about lr, so g_i by up to lr * ||f_i / scale||_1; "auto" bounds that
# move to _ADAM_MOVE on the mean sample, a constant chosen by the held-out KL
# of the digits workload (doc/user_guide/deviations.rst, "Sample projection:
# gradient and optimiser")
_SGD_LR = 1e-3
_ADAM_MOVE = 0.16


# ---------------------------------------------------------------------------
# the objective (SPEC 3)
# ---------------------------------------------------------------------------
def _normalise_rows(v: torch.Tensor, exact: bool):
    """Rows over their norms; zero rows stay zero (they have no direction).

    ``exact=False`` divides by the detached norm (the reference's
    ``v / stopgrad(||v||)``).
    """
    norm = safe_norm(v, dim=1, keepdim=True)  # rescaled: no overflow
    denom = norm if exact else norm.detach()
    denom = torch.where(denom > 0, denom, torch.ones_like(denom))
    return v / denom, norm.squeeze(1)


def _category_model(unit, kappa, weights, exact):
    """mu_y = normalise(sum_i weights_iy kappa_i o_i), shape (C, d')."""
    mu, _ = _normalise_rows(weights.T @ (kappa[:, None] * unit), exact)
    return mu


def _log_q(unit, kappa, mu, log_pi):
    """log Q(y|g) = log_softmax_y(log pi_y + kappa_i cos(o_i, mu_y))."""
    return torch.log_softmax(log_pi[None, :] + kappa[:, None] * (unit @ mu.T), dim=1)


def _kl_sum(P, log_p, log_q):
    """sum_i KL(P_i || Q_i); terms with P = 0 contribute exactly 0."""
    terms = torch.where(P > 0, P * (log_p - log_q), torch.zeros_like(P))
    return terms.sum()


def _em_update(unit, kappa, mu, log_pi, n_steps):
    """``n_steps`` EM iterations of SPEC 2 (supplement Eq. 3) on fixed g."""
    tiny = torch.finfo(unit.dtype).tiny
    for _ in range(n_steps):
        resp = torch.exp(_log_q(unit, kappa, mu, log_pi))
        mu = _category_model(unit, kappa, resp, exact=True)
        log_pi = torch.log(resp.mean(dim=0).clamp_min(tiny))
    return mu, log_pi


def _objective(M, F, P, log_p, log_pi, kappa_fn, *, exact, mu=None):
    """Loss of SPEC 3 and the category model it used.

    ``F`` holds the scaled features f / s. ``mu=None`` recomputes the
    category directions from the teacher ``P`` (gradient flows through them);
    a given ``mu`` is used as a constant (EM mode).
    """
    G = F @ M.T
    unit, strength = _normalise_rows(G, exact)
    kappa = kappa_fn(strength if exact else strength.detach())
    if mu is None:
        # the reference normalises mu_y exactly in both modes; only ||g_i||
        # (in o_i) and kappa(l_i) are stopped in the faithful one (SPEC 3)
        mu = _category_model(unit, kappa, P, exact=True)
    log_q = _log_q(unit, kappa, mu, log_pi)
    return _kl_sum(P, log_p, log_q), mu


# ---------------------------------------------------------------------------
# namespaces and devices (SPEC 10)
# ---------------------------------------------------------------------------
# How an input is computed on. _NUMPY: dispatch off or numpy input, today's
# path (torch on ``device``, numpy attributes). _TORCH: dispatch on and torch
# tensors, computed on their device, attributes and outputs tensors there.
# _HOST: dispatch on and another namespace (array-api-strict, ...): torch on
# the CPU from a host copy, results moved back to the input's namespace and
# device.
_NUMPY, _TORCH, _HOST = "numpy", "torch", "host"


def _namespace_of(array):
    """``(xp, device, mode)`` of an input array (see the modes above)."""
    if array is None or not dispatch_enabled():
        return np, "cpu", _NUMPY
    xp, _, dev = get_namespace_and_device(array)
    if is_numpy(xp):
        return xp, dev, _NUMPY
    if is_torch(xp) and isinstance(array, torch.Tensor):
        return xp, dev, _TORCH
    return xp, dev, _HOST


def _sample_of(X):
    """The array whose namespace and device decide (X, or its ``sample``)."""
    return X.sample if isinstance(X, FeatureSet) else X


def _is_numeric(array) -> bool:
    dtype = np.asarray(array).dtype if isinstance(array, (list, tuple)) else array.dtype
    return bool(np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_))


def _back(array, xp, device):
    """A host result moved into ``xp`` on ``device`` (labels that are not
    numbers, such as strings, stay numpy: no Array API namespace holds them)."""
    if array is None or not _is_numeric(array):
        return array
    return move_to(array, xp=xp, device=device)


def _labels_to(y, device):
    """Labels ``y`` as a tensor on ``device`` (labels follow the features);
    labels that are not numbers stay a numpy array."""
    if isinstance(y, torch.Tensor):
        return y.detach().to(device)
    y_host = np.asarray(y) if isinstance(y, (list, tuple)) else to_numpy(y)
    return torch.as_tensor(y_host, device=device) if _is_numeric(y_host) else y_host


def _check_label_shape(y, pred):
    if tuple(y.shape) != tuple(pred.shape):
        raise ValueError(
            f"y must have shape {tuple(pred.shape)} (one label per sample); "
            f"got {tuple(y.shape)}"
        )


def _host_featureset(fs):
    """The fields a projector reads, copied to the host (``_HOST`` mode)."""
    return FeatureSet(
        sample=None if fs.sample is None else to_numpy(fs.sample),
        soft_labels=None if fs.soft_labels is None else to_numpy(fs.soft_labels),
        classes=None if fs.classes is None else to_numpy(fs.classes),
    )


def _host_input(X):
    """``X`` (array or FeatureSet) copied to the host (``_HOST`` mode)."""
    if isinstance(X, FeatureSet):
        return _host_featureset(X)
    return None if X is None else to_numpy(X)


def _moved(x, device, dtype):
    """Tensor ``x`` as ``dtype`` on ``device``, cast where the dtype exists:
    float64 is asked only of devices that have it (so move, then cast), and
    a narrower type exists on both (so cast, then move: a float64 host
    tensor reaches a device without float64 already narrowed)."""
    if dtype == torch.float64:
        return x.to(device).to(dtype)
    return x.to(dtype).to(device)


def _torch_hard_labels(y, n_samples, device, dtype):
    """One-hot P (on ``device``) and the sorted classes of hard labels ``y``.

    Numeric labels follow the features to their device and the classes stay
    there; labels no namespace holds (strings) are encoded on the host, which
    keeps their classes as a numpy array.
    """
    if isinstance(y, torch.Tensor):
        refuse_complex(y, "y")
        y_dev, classes = y.detach().to(device), None
    else:
        y_host = to_numpy(y) if not isinstance(y, (list, tuple)) else np.asarray(y)
        if _is_numeric(y_host):
            y_dev, classes = torch.as_tensor(y_host, device=device), None
        else:
            y_dev = None
    shape = tuple((y_dev if y_dev is not None else y_host).shape)
    if len(shape) != 1 or shape[0] != n_samples:
        raise ValueError(
            f"y must be 1-D with one label per sample ({n_samples}); got shape {shape}"
        )
    if y_dev is not None:
        classes, codes = torch.unique(y_dev, sorted=True, return_inverse=True)
    else:
        classes, codes = np.unique(y_host, return_inverse=True)
        codes = torch.as_tensor(codes, device=device)
    if classes.shape[0] < 2:
        first = classes[0].item() if isinstance(classes, torch.Tensor) else classes[0]
        raise ValueError(f"y has a single class ({first!r}); at least 2 are needed")
    eye = torch.eye(classes.shape[0], dtype=dtype, device=device)
    return eye[codes], classes


def _no_targets_error():
    return ValueError(
        "SampleProjector requires y to be passed, but the target y is "
        "None: it needs the network's soft labels (soft_labels=..., or a "
        "FeatureSet with logits or soft_labels) or hard labels y"
    )


def _featureset_classes(fs, n_classes):
    """The FeatureSet's class labels (numpy), checked against C; or None."""
    if fs is None or fs.classes is None:
        return None
    classes = fs.classes
    if isinstance(classes, torch.Tensor) or (
        not isinstance(classes, (np.ndarray, list, tuple))
        and hasattr(classes, "__array_namespace__")
    ):
        classes = to_numpy(classes)  # C labels, not features
    classes = np.asarray(classes)
    if classes.shape != (n_classes,):
        raise ValueError(
            f"FeatureSet.classes has shape {classes.shape} but the soft "
            f"labels have {n_classes} columns"
        )
    return classes


# ---------------------------------------------------------------------------
# Procrustes
# ---------------------------------------------------------------------------
def _procrustes(A, B):
    # argmin_R ||A R - B||_F over orthogonal R: U V^T of svd(A^T B)
    U, _, Vt = np.linalg.svd(A.T @ B)
    return U @ Vt


_TRIM = Interval(Real, 0, 1, closed="left")


@validate_params(
    {"source": ["array-like"], "target": ["array-like"], "trim": [_TRIM]},
    prefer_skip_nested_validation=True,
)
def procrustes_rotation(source, target, *, trim=0.1):
    """Orthogonal matrix that best maps ``source`` onto ``target``.

    Two passes (SPEC 3, training checkpoints): an orthogonal Procrustes fit on
    the embeddings themselves, then a second fit on their unit vectors that
    drops the fraction ``trim`` of points worst aligned after the first pass
    (points whose direction changed most between checkpoints). The result
    minimises ``||U_s R - U_t||_F`` over orthogonal R on the kept unit vectors
    ``U_s``, ``U_t`` (reflections are allowed: they keep every norm and cosine).

    Parameters
    ----------
    source : array-like of shape (N, d)
        Embeddings to rotate (for instance the new checkpoint's g).
    target : array-like of shape (N, d)
        Reference embeddings of the same N points, in the same order.
    trim : float in [0, 1), default=0.1
        Fraction of points dropped in the second pass.

    Returns
    -------
    R : ndarray of shape (d, d)
        Orthogonal matrix; ``source @ R`` is aligned with ``target``. With
        ``array_api_dispatch`` on, in the namespace and on the device of
        ``source`` (``target`` is moved there).

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.projection import procrustes_rotation
    >>> rng = np.random.default_rng(0)
    >>> A = rng.normal(size=(50, 3))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    >>> R = procrustes_rotation(A, A @ Q)
    >>> bool(np.allclose(R, Q))
    True
    """
    xp, dev, mode = _namespace_of(source)
    if mode == _TORCH:
        # everything follows the source: the target joins it on its device
        dtype = float_dtype(xp, dev, name="procrustes_rotation")
        A = _torch_2d_finite(source, "source", dtype)
        B = _torch_2d_finite(target, "target", dtype, device=A.device)
        _check_same_shape(A, B)
        return _torch_procrustes_rotation(A, B, trim)
    if mode == _HOST:
        source, target = to_numpy(source), to_numpy(target)
    A = _as_2d_finite(source, "source")
    B = _as_2d_finite(target, "target")
    _check_same_shape(A, B)
    R = _procrustes(A, B)
    na = safe_norm(A, dim=1)
    nb = safe_norm(B, dim=1)
    ok = (na > 0) & (nb > 0)  # points at the origin have no direction
    if ok.any():
        Ua = A[ok] / na[ok, None]
        Ub = B[ok] / nb[ok, None]
        resid = np.linalg.norm(Ua @ R - Ub, axis=1)
        keep = np.argsort(resid, kind="stable")[: _n_kept(len(resid), trim)]
        R = _procrustes(Ua[keep], Ub[keep])
    return move_to(R, xp=xp, device=dev) if mode == _HOST else R


def _n_kept(n, trim):
    """How many of ``n`` points the second Procrustes pass keeps."""
    return max(1, math.ceil((1.0 - trim) * n - 1e-9))


def _check_same_shape(A, B):
    if tuple(A.shape) != tuple(B.shape):
        raise ValueError(
            "source and target must have the same shape; got "
            f"{tuple(A.shape)} and {tuple(B.shape)}"
        )


def _torch_procrustes_rotation(A, B, trim):
    """:func:`procrustes_rotation` on tensors, on their device."""

    def fit(P, Q):
        U, _, Vh = torch.linalg.svd(P.T @ Q)
        return U @ Vh

    R = fit(A, B)
    na, nb = safe_norm(A, dim=1), safe_norm(B, dim=1)
    ok = (na > 0) & (nb > 0)
    if not bool(ok.any()):
        return R
    Ua = A[ok] / na[ok, None]
    Ub = B[ok] / nb[ok, None]
    resid = torch.linalg.vector_norm(Ua @ R - Ub, dim=1)
    keep = torch.argsort(resid, stable=True)[: _n_kept(resid.shape[0], trim)]
    return fit(Ua[keep], Ub[keep])


def _torch_2d_finite(X, name, dtype, device=None):
    """A real, finite, non-empty 2-D tensor (moved to ``device``) as ``dtype``."""
    if not isinstance(X, torch.Tensor):
        X = torch.as_tensor(to_numpy(X), device=device)
    refuse_complex(X, name)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D array; got shape {tuple(X.shape)}"
        )
    X = _moved(X.detach(), device or X.device, dtype)
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return X


def _as_2d_finite(X, name):
    arr = real_array(X, name, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


# ---------------------------------------------------------------------------
# the optimisation
# ---------------------------------------------------------------------------
@dataclass
class _Problem:
    """The fixed tensors and numbers of one fit: the scaled features ``Ft``
    (N, D), the soft labels ``Pt`` and their log, the teacher's log priors,
    kappa(l), the gradient mode, and what the divergence message needs."""

    Ft: torch.Tensor
    Pt: torch.Tensor
    log_p: torch.Tensor
    log_pi: torch.Tensor
    kappa_fn: TorchKappa
    exact: bool
    n_samples: int
    stiffness: float
    lr: float


# ---------------------------------------------------------------------------
# the estimator
# ---------------------------------------------------------------------------
class SampleProjector(DevicePicklingMixin, TransformerMixin, BaseEstimator):
    """Project sample features to d' dimensions where a revised vMF model
    reproduces the network's soft labels (SPEC 3).

    Learns ``M`` (``components_``, shape (d', D)) so that ``g_i = M f_i / s``
    and ``Q_M(y|g_i) = softmax_y(log pi_y + kappa(||g_i||) cos(g_i, mu_y))``
    matches the network's ``P(y|x_i)`` in KL divergence, with the category
    model ``pi_y = mean_i P(y|x_i)``, ``mu_y = normalise(sum_i P(y|x_i)
    kappa(||g_i||) g_i / ||g_i||)`` recomputed from the network at every step.
    A strong g (long vector) is a confident, discriminative sample; ``mu_c``
    are the category directions.

    Parameters
    ----------
    n_components : int, default=3
        Dimension d' of the projected space (at least 2).
    scale : float, default=40.0
        The constant s dividing the features before projection.
    init : {"random"} or array-like of shape (n_components, n_features), \
default="random"
        Initial M: ``"random"`` draws it from N(0, init_std^2) with
        ``random_state``; an array starts from that M (what
        :meth:`fit_sequence` does across checkpoints).
    init_std : float, default=0.1
        Standard deviation of the random initial M.
    n_init : int, default=1
        Number of starts (the first from ``init``, the others random, all
        drawn from ``random_state``); the fit of lowest loss is kept, as in
        scikit-learn's mixtures. The KL objective has local optima: on the
        digits workload (120 images, seeds 0-5) single starts ended at
        summed losses from 8.7 to 10.4.
    kappa : "revised" or float, default="revised"
        ``"revised"``: the concentration is kappa(l) of
        :func:`skvmf.vmf.revised_kappa` in dimension d' with noise ``sigma``;
        a positive float: one fixed concentration for every sample.
    sigma : float, default=1.0
        Noise level of the revised kappa(l).
    gradient : {"faithful", "exact"}, default="faithful"
        ``"faithful"`` (the reference's behaviour, SPEC 3): the orientation
        is ``o_i = g_i / stopgrad(||g_i||)`` and kappa(l_i) carries no
        gradient; the teacher's ``mu_y = m_y / ||m_y||`` (``m_y`` the
        weighted sum of the o_i) is normalised exactly, so the gradient
        flows through it and its norm. ``"exact"``: the gradient of the true
        objective (true normalisation of g_i too, kappa differentiated
        through the interpolant that :func:`skvmf.vmf.revised_kappa`
        evaluates). Both modes evaluate the same loss; only the step
        direction differs.
    em_steps : int, default=0
        0: the category model comes from the network at every step (teacher
        responsibilities, SPEC 3). ``k > 0``: before every step, start from
        that teacher model on the current, detached g and run ``k`` EM
        iterations of the mixture (SPEC 2, supplement Eq. 3: E-step with the
        model's own responsibilities, M-step for mu and pi); the loss then
        uses the resulting ``(pi, mu)`` as constants (no gradient). The same
        is done on the final g for ``priors_`` and ``directions_``. Keep
        ``k`` small (1 or 2): while the projection is weak (small strengths,
        small kappa) every responsibility is close to the prior, so many EM
        iterations pull all the mu_y together and training stalls.
    solver : {"adam", "sgd"}, default="adam"
        The optimiser, full-batch either way, on the same objective and L2
        penalty. ``"sgd"``: SGD with momentum, the paper's (with ``lr``,
        ``momentum``, ``weight_decay`` and ``max_iter`` at their defaults,
        the paper's setting). ``"adam"``: Adam (betas 0.9 and 0.999); its
        steps do not grow with the number of samples (the loss is a sum) or
        the feature dimension (see ``lr``). Chosen as the default by the KL
        loss on held-out images: on the digits workload (120 fit and 330
        held-out images, seeds 0-5, 2000 steps) 0.0735 per image against
        SGD's 0.0751, and 0.0739 against 0.0979 in 200 steps (see
        ``benchmarks/bench_projection_quality.py`` and the deviations page).
    max_iter : int, default=2000
        Number of full-batch steps.
    lr : float or "auto", default="auto"
        Learning rate. ``"auto"``: 1e-3 for ``solver="sgd"`` (the paper's;
        the loss is the sum over samples, SPEC 3); for ``solver="adam"``,
        ``0.16 / mean_i ||f_i / scale||_1``, so that one step (which moves
        every entry of M by up to about lr) moves the mean sample's g by up
        to about 0.16 whatever the feature dimension (0.098 on the digits
        workload).
    momentum : float, default=0.9
        SGD momentum (not used by Adam).
    weight_decay : float, default=5e-4
        L2 penalty on M, added to the gradient (SGD's weight decay; for Adam
        the same coupled penalty, not AdamW's decoupled one).
    from_logits : bool, default=False
        ``soft_labels`` given to :meth:`fit` are logits: use
        ``softmax(soft_labels / temperature)``.
    temperature : float, default=4.0
        Temperature of the soft labels derived from logits.
    device : str or torch.device, default="cpu"
        Where the optimisation runs for numpy input (``"cuda"`` when
        available). With ``array_api_dispatch`` on, X's device decides
        instead: torch tensors are computed on their own device (this
        parameter is then not used), arrays of other namespaces on the CPU.
    random_state : int, RandomState instance or None, default=None
        Seed of the random initial M.
    verbose : int, default=0
        0 silent, 1 a progress bar over steps, 2 also the final loss.

    Attributes
    ----------
    components_ : array of shape (n_components, n_features_in_)
        The projection M (g = M f / scale). Every fitted array is a numpy
        array, or in X's namespace and on its device with
        ``array_api_dispatch`` on (see Notes).
    directions_ : array of shape (n_classes, n_components)
        Unit category directions mu_c at the end of training.
    priors_ : array of shape (n_classes,)
        Category priors pi_c.
    classes_ : array of shape (n_classes,)
        Labels of the categories (the FeatureSet's ``classes``, the sorted
        labels of ``y`` for hard labels, else ``0 .. C-1``).
    n_features_in_ : int
        Dimension D of the sample features.
    loss_curve_ : list of float of length max_iter + 1
        The loss (sum of KL divergences, without the L2 penalty) of the kept
        start: at its initial M, then after every step, the last value at
        the final iterate. Its first and last values compare start and end;
        :func:`skvmf._utils.convergence.loss_fell` judges it, and :meth:`fit`
        raises a :class:`~sklearn.exceptions.ConvergenceWarning` naming the
        stage ``"projection"`` when it did not fall.
    loss_ : float
        The loss at the returned M: the iterate of lowest loss of the kept
        start. The faithful gradient is not the loss's gradient, so the loss
        may rise late in a run (before the faithful mode normalised mu_y
        exactly it did: 11.7 up to 34.7 on one digits seed); the
        lowest-loss iterate is what the run found.
    n_iter_ : int
        Number of steps run.
    rotation_ : array of shape (n_components, n_components)
        Only after :meth:`fit_sequence`: the Procrustes rotation applied.
    warm_started_ : bool
        Only after :meth:`fit_sequence`: whether the warm start was kept.

    See Also
    --------
    procrustes_rotation : align the embeddings of two checkpoints.

    Notes
    -----
    The soft labels come, in order of precedence, from ``soft_labels=`` in
    :meth:`fit`, from a :class:`~skvmf.features.FeatureSet`'s
    ``soft_labels``, or from ``y`` taken as hard labels (one-hot P). The true
    labels are otherwise not needed.

    The loss is the sum of KL divergences over the N samples, as in SPEC 3,
    so the effective step of SGD grows with N and with the features'
    energy: what matters is ``lr * N * mean ||f / scale||^2``. Measured on
    synthetic data, 3 or less trains smoothly, about 10 still converges and
    30 diverges (``fit`` then raises a ``ValueError`` naming this number).
    The reference's lr = 1e-3 (momentum 0.9) suits the paper's regime of a
    few hundred to a few thousand images with ``||f|| ~ scale``; a mean loss
    would need an lr about N times larger for the same 2000 steps. Adam's
    steps (the default) do not depend on the scale of the loss. All
    arithmetic is float64.

    **Array API.** With ``sklearn.set_config(array_api_dispatch=True)``,
    everything follows X (SPEC 10): for torch tensors (or a FeatureSet whose
    ``sample`` is one) the fit runs on X's device with no host copy of the
    features; ``components_``, ``directions_``, ``priors_``, numeric
    ``classes_`` and ``rotation_`` are tensors there, as are the outputs of
    :meth:`transform` (and the ``g``, ``directions`` and ``priors`` it adds
    to a FeatureSet), :meth:`predict`, :meth:`predict_proba` and
    :meth:`predict_log_proba`; :meth:`score` is a Python float. Arrays of
    other namespaces (array-api-strict) are computed by torch on the CPU
    from a host copy and every result is returned in their namespace, on
    their device. ``y`` and soft labels are moved to X's namespace and
    device; class labels no namespace holds (strings) stay numpy, and so
    does :meth:`predict`'s output then. The arithmetic is float64 as
    without dispatch (float32 inputs give float64 results, as numpy's do);
    on a device without float64 it is float32, with a ``UserWarning``.
    ``loss_curve_`` and ``loss_`` stay Python floats (a log kept on the
    host, one scalar per step). Calling a method with X in another namespace
    or on another device than the fit's is a ``ValueError`` naming both.
    Without dispatch nothing changes: numpy in (tensors are converted), numpy
    out.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.projection import SampleProjector
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 20)
    >>> X = rng.normal(size=(60, 16)) + 4 * np.eye(3, 16)[y] * 10
    >>> proj = SampleProjector(max_iter=300, random_state=0).fit(X, y)
    >>> proj.transform(X).shape
    (60, 3)
    >>> float(proj.score(X, y))
    1.0
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 2, None, closed="left")],
        "scale": [Interval(Real, 0, None, closed="neither")],
        "init": [StrOptions({"random"}), "array-like"],
        "init_std": [Interval(Real, 0, None, closed="neither")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "kappa": [StrOptions({"revised"}), Interval(Real, 0, None, closed="neither")],
        "sigma": [Interval(Real, 0, None, closed="neither")],
        "gradient": [StrOptions({"faithful", "exact"})],
        "em_steps": [Interval(Integral, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "solver": [StrOptions({"adam", "sgd"})],
        "lr": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "from_logits": ["boolean"],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "device": "no_validation",  # resolve_device validates
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components=3,
        *,
        scale=40.0,
        init="random",
        init_std=0.1,
        n_init=1,
        kappa="revised",
        sigma=1.0,
        gradient="faithful",
        em_steps=0,
        solver="adam",
        max_iter=2000,
        lr="auto",
        momentum=0.9,
        weight_decay=5e-4,
        from_logits=False,
        temperature=4.0,
        device="cpu",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.scale = scale
        self.init = init
        self.init_std = init_std
        self.n_init = n_init
        self.kappa = kappa
        self.sigma = sigma
        self.gradient = gradient
        self.em_steps = em_steps
        self.solver = solver
        self.max_iter = max_iter
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.from_logits = from_logits
        self.temperature = temperature
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- input handling ------------------------------------------------------
    def _check_n_features(self, n_features, reset):
        """Record (``reset``) or check the number of sample features of a
        FeatureSet, as ``validate_data`` does for arrays."""
        if reset:
            self.n_features_in_ = n_features
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but SampleProjector is "
                f"expecting {self.n_features_in_} features as input"
            )

    def _features(self, X, *, reset):
        """The sample features as float64 (N, D), checked against the fit."""
        if isinstance(X, FeatureSet):
            if X.sample is None:
                raise ValueError(
                    "this FeatureSet has no sample features (FeatureSet.sample is None)"
                )
            F = real_array(X.sample, "FeatureSet.sample", dtype=np.float64)
            refuse_empty(F, "FeatureSet.sample")
            if F.ndim != 2:
                raise ValueError(
                    f"FeatureSet.sample must have shape (N, D); got {F.shape}"
                )
            if not np.isfinite(F).all():
                raise ValueError("FeatureSet.sample contains NaN or infinite values")
            self._check_n_features(F.shape[1], reset)
            return F
        refuse_empty(X, "X")
        try:
            return validate_data(
                self, X, reset=reset, dtype=np.float64, ensure_min_samples=1
            )
        except ValueError as exc:
            if str(exc).startswith("Complex data not supported"):
                refuse_complex(X, "X")  # the package's words, naming X
            raise

    def _targets(self, X, y, soft_labels, n_samples):
        """Soft labels (N, C) float64 and the class labels."""
        fs = X if isinstance(X, FeatureSet) else None
        if soft_labels is not None:
            P = check_soft_labels(
                real_array(soft_labels, "soft_labels"),
                n_samples=n_samples,
                from_logits=self.from_logits,
                temperature=self.temperature,
            )
        elif fs is not None and fs.soft_labels is not None:
            P = check_soft_labels(
                real_array(fs.soft_labels, "X.soft_labels"),
                n_samples=n_samples,
                name="X.soft_labels",
            )
        elif y is not None:
            y = np.asarray(y)
            if y.ndim != 1 or y.shape[0] != n_samples:
                raise ValueError(
                    f"y must be 1-D with one label per sample ({n_samples}); "
                    f"got shape {y.shape}"
                )
            classes, codes = np.unique(y, return_inverse=True)
            if len(classes) < 2:
                raise ValueError(
                    f"y has a single class ({classes[0]!r}); at least 2 are needed"
                )
            return np.eye(len(classes))[codes], classes
        else:
            raise _no_targets_error()
        classes = _featureset_classes(fs, P.shape[1])
        return P, np.arange(P.shape[1]) if classes is None else classes

    def _torch_features(self, X, *, reset, dtype):
        """:meth:`_features` for tensors (dispatch on): the features as
        ``dtype`` on their own device, checked against the fit, no host copy."""
        if isinstance(X, FeatureSet):
            if X.sample is None:
                raise ValueError(
                    "this FeatureSet has no sample features (FeatureSet.sample is None)"
                )
            F = X.sample
            refuse_complex(F, "FeatureSet.sample")
            refuse_empty(F, "FeatureSet.sample")
            if F.ndim != 2:
                raise ValueError(
                    f"FeatureSet.sample must have shape (N, D); got {tuple(F.shape)}"
                )
            F = F.detach().to(dtype)
            if not bool(torch.isfinite(F).all()):
                raise ValueError("FeatureSet.sample contains NaN or infinite values")
            self._check_n_features(F.shape[1], reset)
            return F
        refuse_complex(X, "X")  # check_array would cast it to its real part
        refuse_empty(X, "X")
        return validate_data(
            self, X.detach(), reset=reset, dtype=dtype, ensure_min_samples=1
        )

    def _torch_targets(self, X, y, soft_labels, n_samples, device, dtype):
        """:meth:`_targets` with the features on a torch ``device``: soft
        labels (N, C) of ``dtype`` there, and the classes (a tensor there
        when they are numbers, as labels follow the features)."""
        fs = X if isinstance(X, FeatureSet) else None
        if soft_labels is not None:
            P = self._soft_labels_on(
                soft_labels, "soft_labels", self.from_logits, n_samples, device, dtype
            )
        elif fs is not None and fs.soft_labels is not None:
            P = self._soft_labels_on(
                fs.soft_labels, "X.soft_labels", False, n_samples, device, dtype
            )
        elif y is not None:
            return _torch_hard_labels(y, n_samples, device, dtype)
        else:
            raise _no_targets_error()
        classes = _featureset_classes(fs, P.shape[1])
        if classes is None:
            return P, torch.arange(P.shape[1], device=device)
        if _is_numeric(classes):
            classes = torch.as_tensor(classes, device=device)
        return P, classes

    def _soft_labels_on(self, value, name, from_logits, n_samples, device, dtype):
        """Checked soft labels as a ``dtype`` tensor on ``device``: a tensor
        is checked where it lies, anything else on the host (it is there)."""
        options = {"n_samples": n_samples, "from_logits": from_logits, "name": name}
        if isinstance(value, torch.Tensor):
            xp, _, _ = get_namespace_and_device(value)
            P = check_soft_labels_xp(
                value, xp, device, temperature=self.temperature, **options
            )
            return P.to(dtype)
        if not isinstance(value, (np.ndarray, list, tuple)) and hasattr(
            value, "__array_namespace__"
        ):
            value = to_numpy(value)
        P = check_soft_labels(
            real_array(value, name), temperature=self.temperature, **options
        )
        return torch.as_tensor(P, dtype=dtype, device=device)

    def _initial_components(
        self, n_features, generator, device, first=True, dtype=None
    ):
        dtype = _DTYPE if dtype is None else dtype
        if isinstance(self.init, str) or not first:
            M = torch.randn(
                self.n_components,
                n_features,
                generator=generator,
                dtype=_DTYPE,
                device=generator.device,
            )
            # drawn in float64 on the generator's device whatever the compute
            # device and dtype, so every device starts from the same M
            return _moved(self.init_std * M, device, dtype)
        init = self.init
        if isinstance(init, torch.Tensor):
            # a tensor start (fit_sequence's warm start with tensors) stays
            # on the device; checked as an array would be
            refuse_complex(init, "init")
            M = _moved(init.detach(), device, dtype).clone()
        else:
            if not isinstance(init, (np.ndarray, list, tuple)) and hasattr(
                init, "__array_namespace__"
            ):
                init = to_numpy(init)  # another namespace's array: its values
            M = real_array(init, "init", dtype=np.float64)
        if tuple(M.shape) != (self.n_components, n_features):
            raise ValueError(
                f"init must have shape (n_components, n_features) = "
                f"({self.n_components}, {n_features}); got {tuple(M.shape)}"
            )
        if isinstance(M, torch.Tensor):
            if not bool(torch.isfinite(M).all()):
                raise ValueError("init contains NaN or infinite values")
            return M
        if not np.isfinite(M).all():
            raise ValueError("init contains NaN or infinite values")
        return torch.as_tensor(M.copy(), dtype=dtype, device=device)

    # -- fitting -------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, soft_labels=None):
        """Learn the projection M from sample features and soft labels.

        Parameters
        ----------
        X : FeatureSet or array-like of shape (N, D)
            A FeatureSet (its ``sample`` and ``soft_labels`` are used) or the
            sample features.
        y : array-like of shape (N,), optional
            Used only when no soft labels are available: hard labels, turned
            into one-hot P(y|x).
        soft_labels : array-like of shape (N, C), optional
            The network's P(y|x) (or logits with ``from_logits=True``);
            overrides the FeatureSet's.

        Returns
        -------
        self : SampleProjector
            The fitted estimator.

        Warns
        -----
        ConvergenceWarning
            When ``loss_curve_`` did not fall (stage ``"projection"``).
        """
        self._fit(X, y, soft_labels)
        warn_if_not_falling(self.loss_curve_, "projection")
        return self

    def _fit(self, X, y=None, soft_labels=None, stage="projection"):
        """:meth:`fit` without the parameter validation and the warning:
        the problem, ``n_init`` descents, then the category model at the
        kept M."""
        xp, dev, mode = _namespace_of(_sample_of(X))
        if mode == _TORCH:
            # X's device decides; float64 where it has it, as the numpy path
            dtype = float_dtype(xp, dev, name="SampleProjector")
            F = self._torch_features(X, reset=True, dtype=dtype)
            device = F.device
            P, classes = self._torch_targets(
                X, y, soft_labels, F.shape[0], device, dtype
            )
        else:
            if mode == _HOST:
                # no torch device holds these arrays: the CPU computes, from
                # a host copy, and the results go back to X's namespace
                X, y = _host_input(X), _host_input(y)
                soft_labels = _host_input(soft_labels)
                device = torch.device("cpu")
            else:
                device = resolve_device(self.device)
            F = self._features(X, reset=True)
            P, classes = self._targets(X, y, soft_labels, F.shape[0])
        problem = self._problem(F, P, device)
        gen = torch_generator(self.random_state)
        best = None
        for run in range(self.n_init):
            M0 = self._initial_components(
                F.shape[1], gen, device, first=run == 0, dtype=problem.Ft.dtype
            )
            found = self._descend(M0, problem, run)
            if best is None or found[1] < best[1]:
                best = found
        M, _, curve = best
        self._set_model(M, problem, keep_tensors=mode == _TORCH)
        self.classes_ = classes
        if mode == _HOST:
            for name in _ARRAY_ATTRIBUTES + ("classes_",):
                setattr(self, name, _back(getattr(self, name), xp, dev))
        self.loss_curve_ = curve
        self.n_iter_ = self.max_iter
        message(f"{stage}: final loss {self.loss_:.6g}", verbose=self.verbose)
        return self

    def _problem(self, F, P, device):
        """The fixed tensors and numbers of one fit (:class:`_Problem`).

        ``F`` and ``P`` are numpy arrays (moved to ``device`` as float64) or
        tensors already on their device in the compute dtype.
        """
        if isinstance(F, torch.Tensor):
            stiffness = float(torch.sum(F * F)) / self.scale**2
            l1 = float(torch.mean(torch.sum(torch.abs(F), dim=1))) / self.scale
            Ft, Pt = F / self.scale, P
        else:
            Pt = torch.as_tensor(P, dtype=_DTYPE, device=device)
            stiffness = float(np.sum(F * F)) / self.scale**2
            l1 = float(np.mean(np.sum(np.abs(F), axis=1))) / self.scale
            Ft = torch.as_tensor(F / self.scale, dtype=_DTYPE, device=device)
        return _Problem(
            Ft=Ft,
            Pt=Pt,
            log_p=torch.log(Pt),
            log_pi=torch.log(Pt.mean(dim=0)),
            kappa_fn=TorchKappa(self.kappa, self.n_components, self.sigma, device),
            exact=self.gradient == "exact",
            n_samples=F.shape[0],
            stiffness=stiffness,
            lr=self._learning_rate(l1),
        )

    def _set_model(self, M, problem, keep_tensors=False):
        """``components_``, the category model at M and ``loss_``: numpy
        arrays, or tensors on the compute device (``keep_tensors``)."""
        log_pi_em, mu_em = problem.log_pi, None
        with torch.no_grad():
            if self.em_steps > 0:
                mu_em, log_pi_em = self._em(M, problem)
            loss, mu = _objective(
                M, problem.Ft, problem.Pt, problem.log_p, log_pi_em,
                problem.kappa_fn, exact=True, mu=mu_em,
            )  # fmt: skip
        model = (M.detach(), mu, torch.exp(log_pi_em))
        for name, value in zip(_ARRAY_ATTRIBUTES, model):
            value = value.clone() if keep_tensors else value.cpu().numpy().copy()
            setattr(self, name, value)
        self.loss_ = float(loss)

    def _learning_rate(self, l1):
        """The step size; ``l1`` is the mean ||f_i / scale||_1."""
        if self.lr != "auto":
            return float(self.lr)
        if self.solver == "sgd":
            return _SGD_LR
        return _ADAM_MOVE / l1 if l1 > 0 else 1.0

    def _optimizer(self, M, lr):
        """The full-batch step of ``solver`` on M (reads and clears M.grad)."""
        if self.solver == "sgd":
            return MomentumSGD(
                M, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        return Adam(M, lr=lr, weight_decay=self.weight_decay)

    def _loss(self, M, problem):
        """SPEC 3's loss at M (after ``em_steps`` EM iterations on the
        detached g when asked)."""
        mu_em, log_pi_em = None, problem.log_pi
        if self.em_steps > 0:
            mu_em, log_pi_em = self._em(M, problem)
        loss, _ = _objective(
            M, problem.Ft, problem.Pt, problem.log_p, log_pi_em, problem.kappa_fn,
            exact=problem.exact, mu=mu_em,
        )  # fmt: skip
        return loss

    def _check_diverged(self, value, step, problem):
        """A ``ValueError`` with the remedy when the loss blew up."""
        if math.isfinite(value) and value <= _DIVERGED * problem.n_samples:
            return
        lr = problem.lr
        hint = (
            f"the loss is a sum over samples, so lower lr (now {lr}); a "
            "stable SGD step needs lr * N * mean ||f / scale||^2 of about "
            f"3 or less (now {lr * problem.stiffness:.3g})"
            if self.solver == "sgd"
            else f"lower lr (now {lr})"
        )
        raise ValueError(
            f"the projection diverged at step {step} (loss = {value:.3g}); " + hint
        )

    def _descend(self, M, problem, run):
        """Descent from ``M``: (the iterate of lowest loss, that loss, the
        curve of max_iter + 1 losses).

        The faithful gradient is not the loss's gradient (it ignores how the
        strength sets kappa), and can let ||g|| drift up while the loss
        rises again; the lowest-loss iterate is what the run found.
        """
        M = M.requires_grad_(True)
        opt = self._optimizer(M, problem.lr)
        curve, best_value, best_M = [], math.inf, M.detach().clone()
        desc = "SampleProjector" if self.n_init == 1 else f"SampleProjector {run + 1}"
        # max_iter updates; the loss is evaluated before each and after the
        # last, so the final M is a candidate too
        for step in progress(
            range(self.max_iter + 1),
            verbose=self.verbose,
            total=self.max_iter + 1,
            desc=desc,
            unit="step",
        ):
            loss = self._loss(M, problem)
            value = float(loss.detach())
            self._check_diverged(value, step, problem)
            if value < best_value:
                best_value, best_M = value, M.detach().clone()
            curve.append(value)
            if step == self.max_iter:
                break
            (M.grad,) = torch.autograd.grad(loss, M)
            opt.step()
        return best_M, best_value, curve

    def _em(self, M, problem):
        """EM on the detached g, started from the teacher's category model."""
        with torch.no_grad():
            unit, strength = _normalise_rows(problem.Ft @ M.T, exact=True)
            kappa = problem.kappa_fn(strength)
            mu = _category_model(unit, kappa, problem.Pt, exact=True)
            return _em_update(unit, kappa, mu, problem.log_pi, self.em_steps)

    # -- using the projection ------------------------------------------------
    def _method_mode(self, X, method):
        """``(xp, device, mode)`` of ``X`` for ``method``, refusing ``X`` in
        another namespace or on another device than the fit (dispatch on),
        and a fit on tensors used without dispatch."""
        check_is_fitted(self)
        sample = _sample_of(X)
        xp, dev, mode = _namespace_of(sample)
        if sample is not None:
            check_same_namespace(sample, self, attribute="components_", method=method)
        if mode == _NUMPY and not isinstance(self.components_, np.ndarray):
            raise ValueError(
                "SampleProjector was fitted on "
                f"{type(self.components_).__module__.split('.')[0]} arrays with "
                f"array_api_dispatch on; call {method}() with "
                "dispatch on and inputs of that namespace and device, or refit"
            )
        return xp, dev, mode

    def _project(self, X, mode=_NUMPY):
        """g = M f / scale: numpy (numpy and host modes) or a tensor."""
        check_is_fitted(self)
        if mode == _TORCH:
            M = self.components_
            F = self._torch_features(X, reset=False, dtype=M.dtype)
            return F @ M.T / self.scale
        if mode == _HOST:
            F = self._features(_host_input(X), reset=False)
            return F @ to_numpy(self.components_).T / self.scale
        F = self._features(X, reset=False)
        return F @ self.components_.T / self.scale

    def transform(self, X):
        """Project sample features: g = M f / scale.

        Parameters
        ----------
        X : FeatureSet or array-like of shape (N, D)
            Sample features.

        Returns
        -------
        FeatureSet or ndarray of shape (N, n_components)
            For a FeatureSet, a copy with ``g``, ``directions`` and ``priors``
            set (X itself is not modified); for an array, g. With dispatch
            on, in X's namespace and on its device.
        """
        xp, dev, mode = self._method_mode(X, "transform")
        G = self._project(X, mode)
        if mode == _HOST:
            G = _back(G, xp, dev)
        if isinstance(X, FeatureSet):
            return X.replace(g=G, directions=self.directions_, priors=self.priors_)
        return G

    def _log_proba(self, X, mode):
        """log Q(y|g), as numpy (numpy and host modes) or a tensor."""
        G = self._project(X, mode)
        if mode == _TORCH:
            strength = safe_norm(G, dim=1)
            unit = G / torch.where(strength > 0, strength, 1.0)[:, None]
            kappa_fn = TorchKappa(self.kappa, self.n_components, self.sigma, G.device)
            kappa = kappa_fn(strength)
            cosines = unit @ self.directions_.T
            logits = torch.log(self.priors_)[None, :] + kappa[:, None] * cosines
            return torch.log_softmax(logits, dim=1)
        priors, directions = self.priors_, self.directions_
        if mode == _HOST:
            priors, directions = to_numpy(priors), to_numpy(directions)
        strength = safe_norm(G, dim=1)
        unit = G / np.where(strength > 0, strength, 1.0)[:, None]
        if isinstance(self.kappa, str):
            from .vmf import revised_kappa

            kappa = np.asarray(
                revised_kappa(strength, self.n_components, sigma=self.sigma),
                dtype=np.float64,
            )
        else:
            kappa = np.full_like(strength, float(self.kappa))
        with np.errstate(divide="ignore"):
            log_pi = np.log(priors)
        logits = log_pi[None, :] + kappa[:, None] * (unit @ directions.T)
        return _np_log_softmax(logits, axis=1)

    def predict_log_proba(self, X):
        """log Q(y|g) of the fitted category model.

        Parameters
        ----------
        X : FeatureSet or array-like of shape (N, D)
            Sample features.

        Returns
        -------
        ndarray of shape (N, n_classes)
            ``log_softmax_y(log pi_y + kappa(||g||) cos(g, mu_y))``; with
            dispatch on, in X's namespace and on its device.
        """
        xp, dev, mode = self._method_mode(X, "predict_log_proba")
        log_proba = self._log_proba(X, mode)
        return _back(log_proba, xp, dev) if mode == _HOST else log_proba

    def predict_proba(self, X):
        """Q(y|g) of the fitted category model, shape (N, n_classes).

        Parameters
        ----------
        X : FeatureSet or array-like of shape (N, D)
            Sample features.

        Returns
        -------
        ndarray of shape (N, n_classes)
            Probabilities; rows sum to 1. With dispatch on, in X's namespace
            and on its device.
        """
        xp, dev, mode = self._method_mode(X, "predict_proba")
        log_proba = self._log_proba(X, mode)
        if mode == _TORCH:
            return torch.exp(log_proba)
        proba = np.exp(log_proba)
        return _back(proba, xp, dev) if mode == _HOST else proba

    def _labels_at(self, index, mode):
        """``classes_[index]`` (index from an argmax), in the mode's arrays."""
        if mode == _TORCH:
            if isinstance(self.classes_, torch.Tensor):
                return self.classes_[index]
            # labels no namespace holds (strings) stay on the host; what
            # comes back is the argmax, never the features
            return self.classes_[np.asarray(index.tolist(), dtype=np.intp)]
        classes = to_numpy(self.classes_) if mode == _HOST else self.classes_
        return classes[index]

    def _predict(self, X, mode):
        log_proba = self._log_proba(X, mode)
        if mode == _TORCH:
            return self._labels_at(torch.argmax(log_proba, dim=1), mode)
        return self._labels_at(np.argmax(log_proba, axis=1), mode)

    def predict(self, X):
        """The most probable category under Q, as labels from ``classes_``.

        Parameters
        ----------
        X : FeatureSet or array-like of shape (N, D)
            Sample features.

        Returns
        -------
        ndarray of shape (N,)
            Predicted labels; with dispatch on, in X's namespace and on its
            device (labels that are not numbers, such as strings, stay numpy).
        """
        xp, dev, mode = self._method_mode(X, "predict")
        pred = self._predict(X, mode)
        return _back(pred, xp, dev) if mode == _HOST else pred

    def score(self, X, y=None):
        """Accuracy of :meth:`predict` against ``y``, or agreement with the DNN.

        Parameters
        ----------
        X : FeatureSet or array-like of shape (N, D)
            Sample features.
        y : array-like of shape (N,), optional
            True labels. When omitted, X must be a FeatureSet with soft labels
            and the score is the fraction of samples where argmax Q equals the
            network's argmax P.

        Returns
        -------
        float
            A fraction in [0, 1] (a Python float in every namespace).
        """
        _, _, mode = self._method_mode(X, "score")
        pred = self._predict(X, mode)
        if y is None:
            if not isinstance(X, FeatureSet) or X.soft_labels is None:
                raise ValueError(
                    "score needs y, or a FeatureSet with soft labels to measure "
                    "the agreement with the network"
                )
            y = self._network_labels(X.soft_labels, mode)
        if isinstance(pred, torch.Tensor):
            y = _labels_to(y, pred.device)
            if isinstance(y, torch.Tensor):
                _check_label_shape(y, pred)
                # a count over N: the same fraction as numpy's mean of bools
                return int(torch.count_nonzero(pred == y)) / pred.shape[0]
            pred = np.asarray(pred.tolist())  # y holds strings: on the host
        y = np.asarray(y) if mode == _NUMPY else _host_input(y)
        _check_label_shape(y, pred)
        return float(np.mean(pred == y))

    def _network_labels(self, soft_labels, mode):
        """The labels of the network's argmax P, beside ``pred``."""
        if mode == _TORCH and isinstance(soft_labels, torch.Tensor):
            refuse_complex(soft_labels, "X.soft_labels")
            index = torch.argmax(soft_labels.detach(), dim=1)
            if isinstance(self.classes_, torch.Tensor):
                index = index.to(self.classes_.device)
            return self._labels_at(index, mode)
        if mode == _HOST:
            soft_labels = to_numpy(soft_labels)
        labels = real_array(soft_labels, "X.soft_labels")
        index = np.argmax(labels, axis=1)
        if mode == _TORCH and isinstance(self.classes_, torch.Tensor):
            index = torch.as_tensor(index, device=self.classes_.device)
        return self._labels_at(index, mode)

    # -- training checkpoints ------------------------------------------------
    def fit_sequence(self, feature_sets, *, n_average=3, trim=0.1):
        """Fit one projector per training checkpoint in a shared frame.

        The checkpoints' FeatureSets must hold the same images in the same
        order. Checkpoint k (k > 0) starts from the mean of the last
        ``n_average`` fitted (aligned) M, and also from this estimator's own
        initialisation; the start reaching the lower loss is kept (a warm
        start from collapsed early checkpoints can trap the fit in a worse
        optimum). Its embedding is then rotated onto
        the previous checkpoint's (aligned) embedding by
        :func:`procrustes_rotation`, and the rotation is applied to its M and
        its directions, so every frame shares one coordinate system (SPEC 3).

        Parameters
        ----------
        feature_sets : sequence of FeatureSet
            One per checkpoint, in training order, each with ``sample`` and
            soft labels (or logits).
        n_average : int, default=3
            Number of previous projections averaged for the warm start.
        trim : float in [0, 1), default=0.1
            Fraction of points dropped in Procrustes' second pass.

        Returns
        -------
        list of SampleProjector
            Fitted clones of this estimator (which is not modified), each
            with a ``rotation_`` (identity for the first checkpoint) and
            ``warm_started_`` (whether the warm start won).

        Warns
        -----
        ConvergenceWarning
            For each checkpoint whose kept fit's ``loss_curve_`` did not
            fall, naming the stage ``"projection (checkpoint k)"``, ``k`` the
            checkpoint's position in ``feature_sets`` (from 0).

        Examples
        --------
        >>> import numpy as np
        >>> from skvmf.features import FeatureSet
        >>> from skvmf.projection import SampleProjector
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat([0, 1, 2], 10)
        >>> sets = [FeatureSet(sample=rng.normal(size=(30, 8)) + 40 * np.eye(3, 8)[y],
        ...                    soft_labels=np.eye(3)[y] * 0.8 + 0.2 / 3)
        ...         for _ in range(3)]
        >>> fits = SampleProjector(max_iter=50, random_state=0).fit_sequence(sets)
        >>> [p.rotation_.shape for p in fits]
        [(3, 3), (3, 3), (3, 3)]
        """
        feature_sets = self._checkpoints(feature_sets, n_average, trim)
        self._validate_params()
        fitted, previous_g = [], None
        for k, fs in enumerate(
            progress(
                feature_sets,
                verbose=self.verbose,
                total=len(feature_sets),
                desc="checkpoints",
                unit="ckpt",
            )
        ):
            est = self._fit_checkpoint(
                fs, f"projection (checkpoint {k})", fitted, n_average
            )
            previous_g = est._rotate_onto(fs, previous_g, trim)
            fitted.append(est)
        return fitted

    @staticmethod
    def _checkpoints(feature_sets, n_average, trim):
        """The checkpoints' FeatureSets as a list, and the settings, checked."""
        validate_parameter_constraints(
            {
                "n_average": [Interval(Integral, 1, None, closed="left")],
                "trim": [_TRIM],
            },
            {"n_average": n_average, "trim": trim},
            caller_name="fit_sequence",
        )
        feature_sets = list(feature_sets)
        if not feature_sets:
            raise ValueError("feature_sets is empty")
        for k, fs in enumerate(feature_sets):
            if not isinstance(fs, FeatureSet):
                raise ValueError(
                    f"feature_sets[{k}] must be a FeatureSet; got {type(fs).__name__}"
                )
            if len(fs) != len(feature_sets[0]):
                raise ValueError(
                    "every checkpoint must hold the same images; feature_sets[0] "
                    f"has {len(feature_sets[0])} and feature_sets[{k}] {len(fs)}"
                )
        return feature_sets

    def _fit_checkpoint(self, fs, stage, fitted, n_average):
        """A fitted clone for one checkpoint: from this estimator's own start
        and, after the first checkpoint, from the mean of the last
        ``n_average`` fitted M; the lower loss wins."""
        est = clone(self)._fit(fs, stage=stage)
        est.warm_started_ = False
        if fitted:
            # the warm start is the reference's; after a collapsed early
            # checkpoint it can also trap the fit in a worse optimum (on
            # the digits workload: KL 38.7 vs 17.5 from a fresh start),
            # so the lower loss of the two starts wins
            recent = [p.components_ for p in fitted[-n_average:]]
            if isinstance(recent[0], torch.Tensor):
                start = torch.mean(torch.stack(recent), dim=0)  # on the device
            else:
                start = np.mean([to_numpy(M) for M in recent], axis=0)
            warm = clone(self).set_params(init=start)
            warm._fit(fs, stage=stage)
            if warm.loss_ <= est.loss_:
                est = warm
                est.warm_started_ = True
        # judged on the kept start only: the other one is discarded
        warn_if_not_falling(est.loss_curve_, stage)
        return est

    def _rotate_onto(self, fs, previous_g, trim):
        """Rotate this fit (M, directions) so that its embedding of ``fs``
        lies on ``previous_g`` (the identity for the first checkpoint);
        returns the rotated embedding."""
        xp, dev, mode = _namespace_of(_sample_of(fs))
        g = self._project(fs, mode)
        if mode == _TORCH:
            if previous_g is None:
                R = torch.eye(self.n_components, dtype=g.dtype, device=g.device)
            else:
                R = _torch_procrustes_rotation(g, previous_g, trim)
            self.components_ = R.T @ self.components_
            self.directions_ = self.directions_ @ R
            self.rotation_ = R
            return g @ R
        if previous_g is None:
            R = np.eye(self.n_components)
        else:
            R = procrustes_rotation(g, previous_g, trim=trim)
        M, D = self.components_, self.directions_
        if mode == _HOST:
            M, D = to_numpy(M), to_numpy(D)
        self.components_ = R.T @ M
        self.directions_ = D @ R
        self.rotation_ = R
        if mode == _HOST:
            for name in ("components_", "directions_", "rotation_"):
                setattr(self, name, _back(getattr(self, name), xp, dev))
        return g @ R

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True  # labels (or soft labels) are needed
        tags.transformer_tags.preserves_dtype = ["float64"]
        tags.array_api_support = True
        return tags
