"""Activation maximisation: the image a network, a layer or a filter prefers.

Seed 003 (sections 2, 2.4) and SPEC section 8: find

    x* = argmax_x  Phi(x) - lambda_alpha R_alpha(x) - lambda_tv R_TV(x)

by gradient ascent on the pixels with the network's weights fixed, where the
objective Phi is a logit, a softmax probability, the mean of a layer or of a
channel, one filter's output at one position, or a weighted sum of those
(:func:`logit`, :func:`probability`, :func:`layer_mean`,
:func:`channel_mean`, :func:`filter_output`; combine with ``+``, ``-`` and
scalar ``*``). The regularisers (Mahendran and Vedaldi, CVPR 2015) are

- the alpha-norm of the mean-subtracted image,
  ``R_alpha(x) = sum |x - mean(x)|^alpha`` (alpha = 6 by default), and
- the total variation
  ``R_TV(x) = sum_{c,i,j} ((x_{c,i,j+1} - x_{c,i,j})^2
  + (x_{c,i+1,j} - x_{c,i,j})^2)^(beta/2)``,

and the "jitter-blur-rotate" trick randomly shifts and rotates the image
(or, as seed 003 describes it, the update) and blurs it every few steps
(Yosinski, Clune, Nguyen, Fuchs, Lipson, ICML DL workshop 2015). The
pixel-change heatmap ``sqrt(sum_c (x_final - x_start)^2)`` shows where the
image moved (seed 003, section 2.1).
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._torch.devices import resolve_device, torch_generator
from ._torch.hooks import Capture, evaluating
from ._torch.images import all_images, as_images, check_dtype
from ._torch.layers import resolve_module
from ._torch.layout import LayerOutputs
from ._torch.optimisers import MomentumSGD
from ._utils.progress import progress

# the objectives live in skvmf.objectives; importable from here as before
from .objectives import (
    Objective,
    channel_mean,
    filter_output,
    layer_mean,
    logit,
    probability,
)

# --------------------------------------------------------------------------
# regularisers and pixel change


def _as_4d(x, name):
    is_torch = isinstance(x, torch.Tensor)
    if is_torch:
        check_dtype(x.dtype, name)
        t = x
    else:
        t = torch.as_tensor(_float64(x, name))
    if t.ndim not in (3, 4):
        raise ValueError(
            f"{name} must have shape (C, H, W) or (N, C, H, W); got {tuple(t.shape)}"
        )
    single = t.ndim == 3
    return (t[None] if single else t), single, is_torch


def _finish(value, single, is_torch):
    value = value[0] if single else value
    return value if is_torch else value.detach().numpy()


@validate_params(
    {"x": ["array-like"], "alpha": [Interval(numbers.Real, 1, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def alpha_norm(x, alpha=6.0):
    """The alpha-norm regulariser of the mean-subtracted image.

    ``R_alpha(x) = sum |x - mean(x)|^alpha`` over the pixels and channels of
    each image, ``mean(x)`` being the mean of the vectorised image (seed
    003, section 2.4; Mahendran and Vedaldi 2015).

    Parameters
    ----------
    x : array-like or torch.Tensor of shape (N, C, H, W) or (C, H, W)
        Images. A tensor gives a differentiable tensor.
    alpha : float, default=6.0
        Exponent, at least 1.

    Returns
    -------
    ndarray or torch.Tensor of shape (N,) (a scalar for one image)

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.synthesis import alpha_norm
    >>> float(alpha_norm(np.array([[[1.0, 3.0]]]), alpha=2))
    2.0
    """
    t, single, is_torch = _as_4d(x, "x")
    flat = t.reshape(t.shape[0], -1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    return _finish((centred.abs() ** alpha).sum(dim=1), single, is_torch)


@validate_params(
    {"x": ["array-like"], "beta": [Interval(numbers.Real, 0, None, closed="neither")]},
    prefer_skip_nested_validation=True,
)
def total_variation(x, beta=2.0):
    """The total-variation regulariser, summed over channels.

    ``R_TV(x) = sum_{c,i,j} ((x_{c,i,j+1} - x_{c,i,j})^2
    + (x_{c,i+1,j} - x_{c,i,j})^2)^(beta/2)`` over the positions where both
    neighbours exist (``i < H - 1``, ``j < W - 1``). Where both differences
    are zero the term is 0 with zero gradient, also for ``beta < 2``.

    Parameters
    ----------
    x : array-like or torch.Tensor of shape (N, C, H, W) or (C, H, W)
        Images. A tensor gives a differentiable tensor.
    beta : float, default=2.0
        Exponent, positive.

    Returns
    -------
    ndarray or torch.Tensor of shape (N,) (a scalar for one image)

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.synthesis import total_variation
    >>> float(total_variation(np.array([[[0.0, 1.0], [0.0, 0.0]]])))
    1.0
    """
    t, single, is_torch = _as_4d(x, "x")
    if t.shape[-1] < 2 or t.shape[-2] < 2:
        raise ValueError(f"total variation needs H, W >= 2; got shape {tuple(t.shape)}")
    dx = t[..., :-1, 1:] - t[..., :-1, :-1]
    dy = t[..., 1:, :-1] - t[..., :-1, :-1]
    sq = dx**2 + dy**2
    if beta == 2:
        terms = sq
    else:
        positive = sq > 0
        terms = torch.where(positive, torch.where(positive, sq, 1.0) ** (beta / 2), 0.0)
    return _finish(terms.reshape(t.shape[0], -1).sum(dim=1), single, is_torch)


@validate_params(
    {"x_start": ["array-like"], "x_final": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def pixel_change(x_start, x_final):
    """Per-pixel change ``sqrt(sum_c (x_final - x_start)^2)`` (seed 003, 2.1).

    Parameters
    ----------
    x_start, x_final : array-like of shape (N, C, H, W) or (C, H, W)
        Start and final images.

    Returns
    -------
    ndarray of shape (N, H, W) or (H, W)

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf.synthesis import pixel_change
    >>> pixel_change(np.zeros((2, 1, 1)), np.array([[[3.0]], [[4.0]]]))
    array([[5.]])
    """
    start = _float64(x_start, "x_start")
    final = _float64(x_final, "x_final")
    if start.shape != final.shape:
        raise ValueError(
            f"x_start and x_final must have the same shape; got {start.shape} and "
            f"{final.shape}"
        )
    if start.ndim not in (3, 4):
        raise ValueError(
            f"images must have shape (C, H, W) or (N, C, H, W); got {start.shape}"
        )
    return np.sqrt(((final - start) ** 2).sum(axis=-3))


def _float64(x, name) -> np.ndarray:
    """float64 numpy images; bool, complex and object input refused."""
    if isinstance(x, torch.Tensor):
        check_dtype(x.dtype, name)
        return x.detach().cpu().numpy().astype(np.float64)
    arr = np.asarray(x)
    check_dtype(arr.dtype, name)
    return arr.astype(np.float64)


# --------------------------------------------------------------------------
# transforms (jitter, rotation, blur)


def _jitter(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Roll each image by its own integer (dy, dx): ``shifts`` is (N, 2)."""
    n, _, h, w = x.shape
    shifts = shifts.to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] - shifts[:, :1]) % h
    cols = (torch.arange(w, device=x.device)[None, :] - shifts[:, 1:]) % w
    batch = torch.arange(n, device=x.device)[:, None, None]
    # advanced indices around a slice: result is (N, H, W, C)
    out = x[batch, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)


def _rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image about its centre by its own angle (bilinear, reflection)."""
    theta = torch.deg2rad(degrees.to(device=x.device, dtype=x.dtype))
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    mats = torch.stack(
        [torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1
    )
    grid = F.affine_grid(mats, list(x.shape), align_corners=False)
    return F.grid_sample(
        x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


def _gaussian_kernel(sigma: float, size_limit: int, dtype, device) -> torch.Tensor:
    radius = max(1, min(int(3.0 * sigma + 0.5), size_limit - 1))
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return kernel / kernel.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur per channel, mirror padding (no border darkening)."""
    n, c, h, w = x.shape
    out = x.reshape(n * c, 1, h, w)
    if h > 1:
        k = _gaussian_kernel(sigma, h, x.dtype, x.device)
        r = (len(k) - 1) // 2
        out = F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    if w > 1:
        k = _gaussian_kernel(sigma, w, x.dtype, x.device)
        r = (len(k) - 1) // 2
        out = F.conv2d(F.pad(out, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return out.reshape(n, c, h, w)


def _channel_values(value, n_channels, name, like):
    arr = np.asarray(value)
    check_dtype(arr.dtype, name)
    arr = arr.astype(np.float64).reshape(-1)
    if np.isnan(arr).any() or (name.startswith("noise") and not np.isfinite(arr).all()):
        raise ValueError(f"{name} contains NaN or infinite values; got {value!r}")
    if arr.size == 1:
        arr = np.repeat(arr, n_channels)
    if arr.size != n_channels:
        raise ValueError(
            f"{name} must be a number or one per channel ({n_channels}); got "
            f"{arr.size} values"
        )
    return torch.as_tensor(arr, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


# --------------------------------------------------------------------------
# the optimiser


@dataclasses.dataclass
class SynthesisResult:
    """Outcome of :meth:`ActivationMaximizer.run`.

    Attributes
    ----------
    images : ndarray of shape (N, C, H, W)
        The optimised images x_f.
    start_images : ndarray of shape (N, C, H, W)
        The starting images x_s (noise or the given images).
    trace : ndarray of shape (steps, N)
        Phi at every step, before its update (on the jittered/rotated input
        when the transforms act on the image).
    penalty_trace : ndarray of shape (steps, N)
        ``lambda_alpha R_alpha + lambda_tv R_TV`` at every step.
    objective_start, objective_final : ndarray of shape (N,)
        Phi of the start and of the final images (no transform).
    pixel_change : ndarray of shape (N, H, W)
        ``sqrt(sum_c (x_f - x_s)^2)``.
    objective : str
        Description of the objective.
    """

    images: np.ndarray
    start_images: np.ndarray
    trace: np.ndarray
    penalty_trace: np.ndarray
    objective_start: np.ndarray
    objective_final: np.ndarray
    pixel_change: np.ndarray
    objective: str = ""


class ActivationMaximizer(BaseEstimator):
    """Gradient ascent on the pixels: ``argmax_x Phi(x) - lambda R(x)``.

    Starts from noise or from given images and maximises, for each image, the
    objective minus the regularisers with the network fixed (seed 003,
    eq. 1-2; SPEC section 8). Between updates the image can be randomly
    shifted ("jitter"), rotated and blurred. All images are optimised
    together in one batch; each one independently (the network runs in
    evaluation mode).

    Parameters
    ----------
    steps : int, default=200
        Number of updates.
    lr : float, default=0.05
        Learning rate of the optimiser.
    optimizer : {"adam", "sgd"}, default="adam"
        Adam, or stochastic gradient ascent with momentum 0.9.
    alpha : float, default=6.0
        Exponent of the alpha-norm regulariser (on the mean-subtracted image).
    lambda_alpha : float, default=0.0
        Weight of the alpha-norm; 0 turns it off. The regulariser is a sum
        over pixels, so its weight scales with the image size.
    beta : float, default=2.0
        Exponent of the total variation.
    lambda_tv : float, default=0.0
        Weight of the total variation; 0 turns it off.
    jitter : int, default=0
        Largest random shift in pixels (each axis, each step; circular).
    rotate_degrees : float, default=0.0
        Largest random rotation in degrees (each step; bilinear).
    blur_every : int, default=0
        Blur every ``blur_every`` steps; 0 never blurs.
    blur_sigma : float, default=0.5
        Standard deviation of the Gaussian blur, in pixels.
    transform_on : {"image", "update"}, default="image"
        ``"image"``: the network sees a randomly shifted and rotated copy of
        the image at each step (the gradient flows back through the
        transform) and the image itself is blurred every ``blur_every``
        steps. ``"update"``: the gradient is shifted, rotated and blurred
        before the update, as seed 003 (section 2.4) describes.
    noise_mean, noise_std : float or sequence of float, default=0.0, 1.0
        Gaussian start images: mean and standard deviation per channel (use
        the training data's statistics in the model's input space).
    bounds : tuple (low, high) or None, default=None
        Clip the image after every update; each bound a number or one per
        channel (e.g. the normalised images of pixel values 0 and 1).
    random_state : int, RandomState instance or None, default=None
        Seeds the noise start and the random transforms.
    device : str or torch.device, default="cpu"
        Where to compute.
    verbose : int, default=0
        Progress bar over the steps when positive.

    Examples
    --------
    >>> import torch
    >>> from skvmf.synthesis import ActivationMaximizer, logit
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
    ...                           torch.nn.Flatten(), torch.nn.Linear(144, 3))
    >>> am = ActivationMaximizer(steps=20, lr=0.1, random_state=0)
    >>> res = am.run(net, logit([0, 1, 2]), image_shape=(1, 8, 8))
    >>> res.images.shape, bool((res.objective_final > res.objective_start).all())
    ((3, 1, 8, 8), True)
    """

    _parameter_constraints = {
        "steps": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "optimizer": [StrOptions({"adam", "sgd"})],
        "alpha": [Interval(numbers.Real, 1, None, closed="left")],
        "lambda_alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "beta": [Interval(numbers.Real, 0, None, closed="neither")],
        "lambda_tv": [Interval(numbers.Real, 0, None, closed="left")],
        "jitter": [Interval(numbers.Integral, 0, None, closed="left")],
        "rotate_degrees": [Interval(numbers.Real, 0, 180, closed="both")],
        "blur_every": [Interval(numbers.Integral, 0, None, closed="left")],
        "blur_sigma": [Interval(numbers.Real, 0, None, closed="neither")],
        "transform_on": [StrOptions({"image", "update"})],
        "noise_mean": ["array-like", Interval(numbers.Real, None, None, closed="both")],
        "noise_std": ["array-like", Interval(numbers.Real, 0, None, closed="left")],
        "bounds": [tuple, None],
        "random_state": ["random_state"],
        "device": [str, torch.device, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        steps=200,
        lr=0.05,
        optimizer="adam",
        alpha=6.0,
        lambda_alpha=0.0,
        beta=2.0,
        lambda_tv=0.0,
        jitter=0,
        rotate_degrees=0.0,
        blur_every=0,
        blur_sigma=0.5,
        transform_on="image",
        noise_mean=0.0,
        noise_std=1.0,
        bounds=None,
        random_state=None,
        device="cpu",
        verbose=0,
    ):
        self.steps = steps
        self.lr = lr
        self.optimizer = optimizer
        self.alpha = alpha
        self.lambda_alpha = lambda_alpha
        self.beta = beta
        self.lambda_tv = lambda_tv
        self.jitter = jitter
        self.rotate_degrees = rotate_degrees
        self.blur_every = blur_every
        self.blur_sigma = blur_sigma
        self.transform_on = transform_on
        self.noise_mean = noise_mean
        self.noise_std = noise_std
        self.bounds = bounds
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # -- small steps ---------------------------------------------------------
    def _start(self, model, start, image_shape, n_images, n_hint, dev, gen):
        if isinstance(start, str):
            if start != "noise":
                raise ValueError(f"start must be 'noise' or images; got {start!r}")
            if image_shape is None:
                raise ValueError(
                    "start='noise' needs image_shape=(C, H, W) of the model's input"
                )
            shape = tuple(int(v) for v in image_shape)
            if len(shape) != 3 or min(shape) < 1:
                raise ValueError(f"image_shape must be (C, H, W); got {image_shape!r}")
            n = n_hint if n_images is None else int(n_images)
            if n < 1:
                raise ValueError(f"n_images must be positive; got {n_images!r}")
            noise = torch.randn((n, *shape), generator=gen, dtype=torch.float64)
            x = as_images(noise, model, dev, name="noise")
            mean = _channel_values(self.noise_mean, shape[0], "noise_mean", x)
            std = _channel_values(self.noise_std, shape[0], "noise_std", x)
            if (std < 0).any():
                raise ValueError(f"noise_std must be >= 0; got {self.noise_std!r}")
            return self._clip(x * std + mean)
        x = all_images(start, model, dev, name="start")
        if n_images is not None and int(n_images) != x.shape[0]:
            raise ValueError(
                f"n_images={n_images} but {x.shape[0]} start images were given"
            )
        return x.clone()

    def _clip(self, x):
        if self.bounds is None:
            return x
        if len(self.bounds) != 2:
            raise ValueError(f"bounds must be (low, high); got {self.bounds!r}")
        low = _channel_values(self.bounds[0], x.shape[1], "bounds[0]", x)
        high = _channel_values(self.bounds[1], x.shape[1], "bounds[1]", x)
        if (low >= high).any():
            raise ValueError(f"bounds must have low < high; got {self.bounds!r}")
        return torch.maximum(torch.minimum(x, high), low)

    def _random_transform(self, x, gen):
        """Random jitter then rotation of a batch (identity when both are off)."""
        n = x.shape[0]
        if self.jitter > 0:
            shifts = torch.randint(-self.jitter, self.jitter + 1, (n, 2), generator=gen)
            x = _jitter(x, shifts)
        if self.rotate_degrees > 0:
            u = torch.rand(n, generator=gen, dtype=torch.float64)
            x = _rotate(x, (2 * u - 1) * self.rotate_degrees)
        return x

    def _penalty(self, x):
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if self.lambda_alpha > 0:
            total = total + self.lambda_alpha * alpha_norm(x, self.alpha)
        if self.lambda_tv > 0:
            total = total + self.lambda_tv * total_variation(x, self.beta)
        return total

    def run(self, model, objective, start="noise", *, image_shape=None, n_images=None):
        """Optimise images for ``objective``.

        Parameters
        ----------
        model : torch.nn.Module
            The network (evaluation mode during the run; modes restored).
        objective : Objective or list of Objective
            What to maximise: one objective for every image, or one per image.
        start : "noise" or array-like of shape (N, C, H, W), default="noise"
            Gaussian noise (``noise_mean``, ``noise_std``) or given images.
        image_shape : tuple (C, H, W), optional
            Shape of a noise start image (needed with ``start="noise"``).
        n_images : int, optional
            Number of noise images; by default one per objective in a list,
            or the length of per-image indices, or 1.

        Returns
        -------
        SynthesisResult
        """
        self._validate_params()
        objective = _as_objective(objective)
        dev = resolve_device(self.device)
        gen = torch_generator(self.random_state, "cpu")
        layers = dict(enumerate(objective.layers))
        resolved = {i: resolve_module(model, layer) for i, layer in layers.items()}
        with evaluating(model, dev), Capture(model, resolved, detach=False) as cap:

            def score(images):
                return _objective_values(model, objective, cap, layers, images)

            n = objective.n_images or 1
            x0 = self._start(model, start, image_shape, n_images, n, dev, gen)
            with torch.no_grad():
                phi_start = score(x0).detach()
            x, trace, penalties = self._ascend(x0, score, gen)
            with torch.no_grad():
                phi_final = score(x).detach()
        start_np = x0.detach().cpu().numpy()
        final_np = x.detach().cpu().numpy()
        return SynthesisResult(
            images=final_np,
            start_images=start_np,
            trace=trace.cpu().numpy(),
            penalty_trace=penalties.cpu().numpy(),
            objective_start=phi_start.cpu().numpy(),
            objective_final=phi_final.cpu().numpy(),
            pixel_change=pixel_change(start_np, final_np),
            objective=repr(objective),
        )

    def _ascend(self, x0, score, gen):
        """The gradient ascent from ``x0``: the final images, and Phi and the
        penalty at every step (each (steps, N))."""
        x = x0.clone().requires_grad_(True)
        if self.optimizer == "adam":
            opt = torch.optim.Adam([x], lr=self.lr)
        else:
            opt = MomentumSGD(x, lr=self.lr, momentum=0.9, weight_decay=0.0)
        trace, penalties = [], []
        steps = progress(
            range(self.steps),
            verbose=self.verbose,
            total=self.steps,
            desc="activation maximisation",
            unit="step",
        )
        for step in steps:
            phi, penalty = self._step(x, opt, score, gen, step)
            trace.append(phi)
            penalties.append(penalty)
        return x, torch.stack(trace), torch.stack(penalties)

    def _step(self, x, opt, score, gen, step):
        """One update of ``x``: Phi on the (transformed) image minus the
        penalty, its gradient (transformed and blurred when the transforms act
        on the update), the optimiser's step, then blur and clipping of the
        image. Returns Phi and the penalty before the update."""
        on_image = self.transform_on == "image"
        phi = score(self._random_transform(x, gen) if on_image else x)
        penalty = self._penalty(x)
        if not torch.isfinite(phi).all():
            raise ValueError(
                f"the objective became non-finite at step {step}; lower lr"
            )
        (grad,) = torch.autograd.grad(-(phi - penalty).sum(), x)
        blur_now = self.blur_every > 0 and (step + 1) % self.blur_every == 0
        if not on_image:
            grad = self._random_transform(grad, gen)
            if blur_now:
                grad = _blur(grad, self.blur_sigma)
        x.grad = grad
        opt.step()
        with torch.no_grad():
            if on_image and blur_now:
                x.copy_(_blur(x, self.blur_sigma))
            x.copy_(self._clip(x))
        return phi.detach(), penalty.detach()


def _as_objective(objective) -> Objective:
    """An :class:`Objective`, from one or from a list of one per image."""
    if isinstance(objective, (list, tuple)):
        objective = Objective.per_image(objective)
    if not isinstance(objective, Objective):
        raise ValueError(
            "objective must be an Objective (see skvmf.objectives.logit, ...) or "
            f"a list of them; got {type(objective).__name__}"
        )
    return objective


def _objective_values(model, objective, cap, layers, images) -> torch.Tensor:
    """Phi per image: one forward pass with the objective's layers captured
    (tokens and channels-last outputs read as maps by ``LayerOutputs``)."""
    cap.reset()
    out = model(images)
    cap.require()
    acts = LayerOutputs(
        {layers[i]: cap.outputs[i] for i in layers},
        model=model,
        layers={layers[i]: cap.layers[i] for i in layers},
        image_size=images.shape[2:],
    )
    return objective.evaluate(out, acts)


@validate_params(
    {
        "model": [torch.nn.Module],
        "objective": [Objective, list, tuple],
        "start": "no_validation",  # "noise" or any image source: checked by run
        "image_shape": [None, tuple, list],
        "n_images": [None, Interval(numbers.Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def maximize_activation(
    model, objective, start="noise", *, image_shape=None, n_images=None, **params
):
    """Functional form of :class:`ActivationMaximizer`.

    ``maximize_activation(model, objective, start, image_shape=..., **params)``
    is ``ActivationMaximizer(**params).run(model, objective, start, ...)``.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    objective : Objective or list of Objective
        What to maximise.
    start : "noise" or array-like of shape (N, C, H, W), default="noise"
        Starting images.
    image_shape : tuple (C, H, W), optional
        Shape of noise start images.
    n_images : int, optional
        Number of noise start images.
    **params
        Parameters of :class:`ActivationMaximizer` (``steps``, ``lr``,
        ``lambda_tv`` ...).

    Returns
    -------
    SynthesisResult

    Examples
    --------
    >>> import torch
    >>> from skvmf.synthesis import maximize_activation, channel_mean
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    >>> res = maximize_activation(net, channel_mean("0", 2), image_shape=(3, 8, 8),
    ...                           n_images=2, steps=10, random_state=0)
    >>> res.trace.shape, res.pixel_change.shape
    ((10, 2), (2, 8, 8))
    """
    return ActivationMaximizer(**params).run(
        model, objective, start, image_shape=image_shape, n_images=n_images
    )


__all__ = [
    "ActivationMaximizer",
    "Objective",
    "SynthesisResult",
    "alpha_norm",
    "channel_mean",
    "filter_output",
    "layer_mean",
    "logit",
    "maximize_activation",
    "pixel_change",
    "probability",
    "total_variation",
]
