"""Adversarial attacks and how they move embedded regional features.

The paper's study (SPEC section 7): attack the network with projected
gradient descent, embed the adversarial regional features with the Lambda
learned on clean images, and measure per layer how far the regions moved
(1 - cos and the change of strength) and which knowledge points changed.

References
----------
Madry, Makelov, Schmidt, Tsipras, Vladu. "Towards Deep Learning Models
Resistant to Adversarial Attacks", ICLR 2018 (PGD under an L-inf ball).
"""

from __future__ import annotations

import dataclasses
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, validate_params

from ._numerics.arrays import real_array, safe_norm, unit_rows
from ._torch.devices import resolve_device, torch_generator
from ._torch.hooks import check_finite, evaluating, finite_logits
from ._torch.images import as_images
from ._utils.progress import progress


@dataclasses.dataclass
class AttackResult:
    """Outcome of :func:`pgd_attack`.

    Attributes
    ----------
    images : ndarray of shape (N, C, H, W)
        Adversarial images, in the model's input space.
    perturbation : ndarray of shape (N, C, H, W)
        ``images - clean images``.
    clean_pred, adv_pred : ndarray of shape (N,)
        The model's predictions before and after the attack.
    labels : ndarray of shape (N,)
        True labels (untargeted) or target labels (targeted).
    targeted : bool
        Whether the attack pushed towards ``labels``.
    epsilon : float
        Radius of the L-inf ball (in pixel units when ``std`` was given).
    """

    images: np.ndarray
    perturbation: np.ndarray
    clean_pred: np.ndarray
    adv_pred: np.ndarray
    labels: np.ndarray
    targeted: bool
    epsilon: float

    @property
    def success(self) -> np.ndarray:
        """Per image: the attack reached its goal.

        Untargeted: the prediction is no longer the true label. Targeted: the
        prediction is the target.
        """
        if self.targeted:
            return self.adv_pred == self.labels
        return self.adv_pred != self.labels

    @property
    def success_rate(self) -> float:
        """Fraction of images, among those the model classified correctly
        before the attack (untargeted) or all images (targeted), on which the
        attack succeeded."""
        if self.targeted:
            return float(self.success.mean()) if len(self.labels) else 0.0
        correct = self.clean_pred == self.labels
        if not correct.any():
            return 0.0
        return float(self.success[correct].mean())


def _real_array(value, name: str) -> np.ndarray:
    """A numpy array of real numbers: the package's one rule (complex,
    object or text values are a ``ValueError`` naming the argument)."""
    return real_array(value, name)


def _channel_tensor(value, n_channels, name, dtype, device):
    """A (1, C, 1, 1) tensor from a scalar or one finite value per channel."""
    arr = _real_array(value, name).reshape(-1).astype(np.float64)
    if arr.size == 1:
        arr = np.repeat(arr, n_channels)
    if arr.size != n_channels:
        raise ValueError(
            f"{name} must be a scalar or have one value per channel "
            f"({n_channels}); got {arr.size} values"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite; got {arr.tolist()}")
    if name == "std" and np.any(arr <= 0):
        raise ValueError(f"std must be positive; got {arr.tolist()}")
    return torch.as_tensor(arr, dtype=dtype, device=device).view(1, -1, 1, 1)


def _as_labels(labels, n_images: int) -> np.ndarray:
    """One integer label per image, as int64."""
    y = _real_array(labels, "labels")
    if y.shape != (n_images,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"labels must be {n_images} integers, one per image; got "
            f"shape {y.shape} and dtype {y.dtype}"
        )
    return y.astype(np.int64)


def _check_label_range(y: np.ndarray, n_classes: int, targeted: bool) -> None:
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        what = "target" if targeted else "true"
        bad = int(y.min() if y.min() < 0 else y.max())
        raise ValueError(
            f"labels must be {what} class indices in [0, {n_classes}) for a "
            f"model with {n_classes} outputs; got label {bad}"
        )


@dataclasses.dataclass
class _Ball:
    """The L-inf ball in input space: radius and step per channel, and the
    valid input range (None without normalisation)."""

    radius: torch.Tensor
    step: torch.Tensor
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None

    def clip(self, x_adv: torch.Tensor) -> torch.Tensor:
        """Into the valid input range, if there is one."""
        if self.low is None:
            return x_adv
        return torch.maximum(torch.minimum(x_adv, self.high), self.low)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Onto ``||x_adv - x||_inf <= radius``, then the valid range."""
        x_adv = torch.maximum(torch.minimum(x_adv, x + self.radius), x - self.radius)
        return self.clip(x_adv)


def _make_ball(epsilon, step_size, mean, std, n_channels, dtype, device) -> _Ball:
    """Radius and step in input units: divided by ``std`` when given, with
    the pixel range [0, 1] mapped through the normalisation."""
    if std is None:
        return _Ball(
            radius=torch.full((1, n_channels, 1, 1), float(epsilon), device=device),
            step=torch.full((1, n_channels, 1, 1), float(step_size), device=device),
        )
    std_t = _channel_tensor(std, n_channels, "std", dtype, device)
    mean_t = _channel_tensor(
        0.0 if mean is None else mean, n_channels, "mean", dtype, device
    )
    return _Ball(
        radius=epsilon / std_t,
        step=step_size / std_t,
        low=(0.0 - mean_t) / std_t,
        high=(1.0 - mean_t) / std_t,
    )


@torch.no_grad()
def _predict(model, x_all, batch_size, device) -> tuple[np.ndarray, int]:
    """Predicted classes of every image, and the number of classes."""
    pred = np.empty(len(x_all), dtype=np.int64)
    n_classes = 0
    for start in range(0, len(x_all), batch_size):
        logits = finite_logits(model(x_all[start : start + batch_size].to(device)))
        pred[start : start + batch_size] = logits.argmax(1).cpu().numpy()
        n_classes = logits.shape[1]
    return pred, n_classes


def _pgd_batch(model, x, y, ball: _Ball, *, sign, n_steps, random_start, gen):
    """``n_steps`` signed-gradient steps from the clean or a random start."""
    if random_start:
        noise = torch.rand(x.shape, generator=gen).to(x.device) * 2 - 1
        x_adv = x + noise * ball.radius
    else:
        x_adv = x.clone()
    x_adv = ball.clip(x_adv)
    for step in range(1, n_steps + 1):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        # torch.sign(nan) is 0: a NaN gradient would silently stop the attack
        check_finite(grad, "the gradient of the model's loss", f" at step {step}")
        with torch.no_grad():
            x_adv = ball.project(x_adv + sign * ball.step * grad.sign(), x)
    x_adv = x_adv.detach()
    if not torch.isfinite(x_adv).all():
        raise ValueError(
            "the attack produced NaN or infinite images: the model's loss or "
            "its gradient is not finite on these inputs"
        )
    return x_adv


_FINITE = float(np.finfo(np.float64).max)


@validate_params(
    {
        "model": [torch.nn.Module],
        "images": ["array-like"],
        "labels": ["array-like"],
        "epsilon": [Interval(Real, 0, _FINITE, closed="both")],
        "step_size": [Interval(Real, 0, _FINITE, closed="both"), None],
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "random_start": ["boolean"],
        "targeted": ["boolean"],
        "mean": [Real, "array-like", None],
        "std": [Real, "array-like", None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    },
    prefer_skip_nested_validation=True,
)
def pgd_attack(
    model: torch.nn.Module,
    images,
    labels,
    *,
    epsilon: float = 0.1,
    step_size: float | None = None,
    n_steps: int = 10,
    random_start: bool = True,
    targeted: bool = False,
    mean=None,
    std=None,
    batch_size: int = 128,
    device: str = "cpu",
    random_state=None,
    verbose: int = 0,
) -> AttackResult:
    """Projected gradient descent under an L-inf ball (Madry et al., 2018).

    Each step moves every pixel by ``step_size * sign(grad)`` of the
    cross-entropy (ascending it for an untargeted attack, descending towards
    ``labels`` for a targeted one) and projects back onto
    ``||x_adv - x||_inf <= epsilon`` and onto the valid pixel range. The
    model runs in eval mode on ``device``; every submodule's mode and the
    model's device are restored afterwards, also when the model raises.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier returning logits.
    images : array-like of shape (N, C, H, W)
        Clean inputs in the model's input space (normalised when the model
        expects normalised images); real and finite.
    labels : array-like of int of shape (N,)
        True labels (untargeted) or target labels (``targeted=True``), class
        indices of the model's outputs.
    epsilon : float, default=0.1
        Radius of the L-inf ball, finite and >= 0. When ``std`` is given, in
        raw pixel units (images in [0, 1] before normalisation): the radius
        in input space is ``epsilon / std`` per channel and results are
        clipped to the valid pixel range [0, 1]. Otherwise in input units,
        without clipping.
    step_size : float, optional
        Step per iteration (finite, >= 0), default ``2.5 * epsilon / n_steps``.
    n_steps : int, default=10
    random_start : bool, default=True
        Start from a uniform random point of the ball.
    targeted : bool, default=False
    mean, std : float or sequence of float, optional
        The normalisation of the inputs, ``x_input = (x_pixel - mean) / std``.
    batch_size : int, default=128
    device : str, default="cpu"
    random_state : int, RandomState or None
    verbose : int, default=0

    Returns
    -------
    AttackResult

    Examples
    --------
    >>> import torch
    >>> from skvmf.attacks import pgd_attack
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    >>> x = torch.randn(5, 3, 2, 2).numpy()
    >>> y = model(torch.as_tensor(x)).argmax(1).numpy()
    >>> res = pgd_attack(model, x, y, epsilon=0.5, n_steps=20, random_state=0)
    >>> bool(abs(res.perturbation).max() <= 0.5 + 1e-6)
    True
    """
    dev = resolve_device(device)
    x_all = as_images(images, model, torch.device("cpu"))
    y_all = _as_labels(labels, len(x_all))
    if step_size is None:
        step_size = 2.5 * epsilon / n_steps
    ball = _make_ball(epsilon, step_size, mean, std, x_all.shape[1], x_all.dtype, dev)
    gen = torch_generator(random_state, "cpu")
    out = torch.empty_like(x_all)
    sign = -1.0 if targeted else 1.0
    starts = range(0, len(x_all), batch_size)
    with evaluating(model, dev):
        clean_pred, n_classes = _predict(model, x_all, batch_size, dev)
        _check_label_range(y_all, n_classes, targeted)
        for start in progress(starts, verbose=verbose, desc="PGD", unit="batch"):
            stop = start + batch_size
            out[start:stop] = _pgd_batch(
                model,
                x_all[start:stop].to(dev),
                torch.as_tensor(y_all[start:stop], device=dev),
                ball,
                sign=sign,
                n_steps=n_steps,
                random_start=random_start,
                gen=gen,
            ).cpu()
        adv_pred, _ = _predict(model, out, batch_size, dev)
    adv = out.numpy()
    return AttackResult(
        images=adv,
        perturbation=adv - x_all.numpy(),
        clean_pred=clean_pred,
        adv_pred=adv_pred,
        labels=y_all,
        targeted=bool(targeted),
        epsilon=float(epsilon),
    )


@validate_params(
    {
        "h_clean": ["array-like"],
        "h_adv": ["array-like"],
        "scale": [Interval(Real, 0, _FINITE, closed="neither"), None],
    },
    prefer_skip_nested_validation=True,
)
def embedding_change(h_clean, h_adv, *, scale=None) -> dict:
    """How far adversarial regions moved in the embedded space (SPEC 7).

    Norms and cosines are computed after rescaling each vector by its largest
    entry, so they hold from 1e-300 to 1e300.

    Parameters
    ----------
    h_clean, h_adv : array-like of shape (N, R, d')
        The same regions embedded with the same (clean) Lambda; real and
        finite.
    scale : float, optional
        Strength normaliser (positive, finite); default the mean clean
        strength, so that strength changes of different layers are comparable
        (the layer's mean regional strength is 1, as for knowledge points).

    Returns
    -------
    dict
        ``one_minus_cos`` and ``strength_change`` per region (N, R), and
        their means ``mean_one_minus_cos`` and ``mean_strength_change``.

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.attacks import embedding_change
    >>> h = np.ones((1, 2, 3))
    >>> out = embedding_change(h, 2 * h)
    >>> round(out["mean_one_minus_cos"], 6), round(out["mean_strength_change"], 6)
    (0.0, 1.0)
    """
    a = _as_regions(h_clean, "h_clean")
    b = _as_regions(h_adv, "h_adv")
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(
            "h_clean and h_adv must both have shape (N, R, d'); got "
            f"{a.shape} and {b.shape}"
        )
    la, lb = safe_norm(a), safe_norm(b)
    if scale is None:
        scale = _mean_strength(la)
    if not scale > 0:
        raise ValueError("the clean regions have zero strength: nothing to compare")
    # unit vectors first: the dot product of raw 1e200 vectors overflows
    cos = np.clip(np.einsum("nrd,nrd->nr", unit_rows(a), unit_rows(b)), -1.0, 1.0)
    one_minus_cos = 1.0 - cos  # 1 where a region is zero (cos 0)
    strength_change = np.abs(lb - la) / scale
    return {
        "one_minus_cos": one_minus_cos,
        "strength_change": strength_change,
        "mean_one_minus_cos": float(one_minus_cos.mean()),
        "mean_strength_change": float(strength_change.mean()),
    }


def _as_regions(h, name: str) -> np.ndarray:
    """A real, finite float64 array (complex is refused, never cast)."""
    arr = _real_array(h, name).astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _mean_strength(lengths: np.ndarray) -> float:
    """Mean of non-negative lengths without overflowing the sum."""
    mean = float(lengths.mean()) if lengths.size else 0.0
    if np.isfinite(mean):
        return mean
    peak = float(lengths.max())
    return float(np.mean(lengths / peak) * peak)
