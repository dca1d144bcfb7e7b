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

import numpy as np
import torch
import torch.nn.functional as F

from ._progress import progress
from ._torch_utils import resolve_device, torch_generator


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


def _channel_tensor(value, n_channels, name, device):
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, n_channels)
    if arr.size != n_channels:
        raise ValueError(
            f"{name} must be a scalar or have one value per channel "
            f"({n_channels}); got {arr.size} values"
        )
    if name == "std" and np.any(arr <= 0):
        raise ValueError(f"std must be positive; got {arr.tolist()}")
    return torch.as_tensor(arr, dtype=torch.float32, device=device).view(1, -1, 1, 1)


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
    ``||x_adv - x||_inf <= epsilon`` and onto the valid pixel range.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier returning logits.
    images : array-like of shape (N, C, H, W)
        Clean inputs in the model's input space (normalised when the model
        expects normalised images).
    labels : array-like of int of shape (N,)
        True labels (untargeted) or target labels (``targeted=True``).
    epsilon : float, default=0.1
        Radius of the L-inf ball. When ``std`` is given, in raw pixel units
        (images in [0, 1] before normalisation): the radius in input space is
        ``epsilon / std`` per channel and results are clipped to the valid
        pixel range [0, 1]. Otherwise in input units, without clipping.
    step_size : float, optional
        Step per iteration, default ``2.5 * epsilon / n_steps``.
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
    x_all = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if x_all.ndim != 4:
        raise ValueError(
            f"images must have shape (N, C, H, W); got shape {tuple(x_all.shape)}"
        )
    if x_all.shape[0] == 0:
        raise ValueError("images is empty: nothing to attack")
    if not torch.isfinite(x_all).all():
        raise ValueError("images contain NaN or inf")
    y_all = np.asarray(labels)
    if y_all.shape != (x_all.shape[0],) or not np.issubdtype(y_all.dtype, np.integer):
        raise ValueError(
            f"labels must be {x_all.shape[0]} integers, one per image; got "
            f"shape {y_all.shape} and dtype {y_all.dtype}"
        )
    if not (np.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be finite and >= 0; got {epsilon!r}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1; got {n_steps!r}")
    if step_size is None:
        step_size = 2.5 * epsilon / n_steps
    n_channels = x_all.shape[1]
    if std is not None:
        std_t = _channel_tensor(std, n_channels, "std", dev)
        mean_t = _channel_tensor(0.0 if mean is None else mean, n_channels, "mean", dev)
        radius = epsilon / std_t
        step = step_size / std_t
        low, high = (0.0 - mean_t) / std_t, (1.0 - mean_t) / std_t
    else:
        radius = torch.full((1, n_channels, 1, 1), float(epsilon), device=dev)
        step = torch.full((1, n_channels, 1, 1), float(step_size), device=dev)
        low = high = None
    gen = torch_generator(random_state, "cpu")

    was_training = model.training
    model.eval()
    out = torch.empty_like(x_all)
    clean_pred = np.empty(len(y_all), dtype=np.int64)
    adv_pred = np.empty(len(y_all), dtype=np.int64)
    sign = -1.0 if targeted else 1.0
    starts = range(0, x_all.shape[0], batch_size)
    try:
        for start in progress(starts, verbose=verbose, desc="PGD", unit="batch"):
            stop = start + batch_size
            x = x_all[start:stop].to(dev)
            y = torch.as_tensor(y_all[start:stop], dtype=torch.long, device=dev)
            with torch.no_grad():
                clean_pred[start:stop] = model(x).argmax(1).cpu().numpy()
            if random_start:
                noise = torch.rand(x.shape, generator=gen).to(dev) * 2 - 1
                x_adv = x + noise * radius
            else:
                x_adv = x.clone()
            if low is not None:
                x_adv = torch.maximum(torch.minimum(x_adv, high), low)
            for _ in range(n_steps):
                x_adv.requires_grad_(True)
                loss = F.cross_entropy(model(x_adv), y)
                (grad,) = torch.autograd.grad(loss, x_adv)
                with torch.no_grad():
                    x_adv = x_adv + sign * step * grad.sign()
                    x_adv = torch.maximum(torch.minimum(x_adv, x + radius), x - radius)
                    if low is not None:
                        x_adv = torch.maximum(torch.minimum(x_adv, high), low)
            with torch.no_grad():
                adv_pred[start:stop] = model(x_adv).argmax(1).cpu().numpy()
            out[start:stop] = x_adv.detach().cpu()
    finally:
        model.train(was_training)
    adv = out.numpy()
    return AttackResult(
        images=adv,
        perturbation=adv - x_all.numpy(),
        clean_pred=clean_pred,
        adv_pred=adv_pred,
        labels=y_all.astype(np.int64),
        targeted=targeted,
        epsilon=float(epsilon),
    )


def embedding_change(h_clean, h_adv, *, scale=None) -> dict:
    """How far adversarial regions moved in the embedded space (SPEC 7).

    Parameters
    ----------
    h_clean, h_adv : array-like of shape (N, R, d')
        The same regions embedded with the same (clean) Lambda.
    scale : float, optional
        Strength normaliser; default the mean clean strength, so that
        strength changes of different layers are comparable (the layer's mean
        regional strength is 1, as for knowledge points).

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
    a = np.asarray(h_clean, dtype=np.float64)
    b = np.asarray(h_adv, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(
            "h_clean and h_adv must both have shape (N, R, d'); got "
            f"{a.shape} and {b.shape}"
        )
    la = np.linalg.norm(a, axis=-1)
    lb = np.linalg.norm(b, axis=-1)
    if scale is None:
        scale = float(la.mean())
    if not scale > 0:
        raise ValueError("the clean regions have zero strength: nothing to compare")
    denom = np.maximum(la * lb, np.finfo(np.float64).tiny)
    cos = np.clip(np.einsum("nrd,nrd->nr", a, b) / denom, -1.0, 1.0)
    cos = np.where((la > 0) & (lb > 0), cos, 0.0)
    one_minus_cos = 1.0 - cos
    strength_change = np.abs(lb - la) / scale
    return {
        "one_minus_cos": one_minus_cos,
        "strength_change": strength_change,
        "mean_one_minus_cos": float(one_minus_cos.mean()),
        "mean_strength_change": float(strength_change.mean()),
    }
