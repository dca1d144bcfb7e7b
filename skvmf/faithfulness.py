"""How faithful is a saliency map: deletion and insertion curves.

A map claims that some regions of an image matter more to the network's
decision than others. The deletion/insertion test takes it at its word
(Petsiuk, Das, Saenko, "RISE", BMVC 2018; the metric family of the CAM
literature, cf. the ROAD and confidence-drop metrics of pytorch-grad-cam):

- **deletion**: replace the map's most important units (regions of its grid,
  or pixels of an image-sized map) with a baseline, in the map's order, and
  track the probability of the class after each step. A faithful map makes it
  fall fast: a *low* area under the curve;
- **insertion**: start from the baseline image and put the units back in the
  same order. A faithful map makes the probability rise fast: a *high* area.

The functions here:

- :func:`deletion_insertion`: per-image curves and areas for one set of maps;
- :func:`knowledge_point_map`: the paper's knowledge points as a map, the
  posterior ``p(y = c | h)`` of one class per region of a layer, from an
  :class:`~skvmf.analysis.AnalysisResult`;
- :func:`compare_faithfulness`: several methods on the same images, units and
  baseline, with a random map as the chance level and bootstrap intervals
  over images;
- :func:`plot_faithfulness`: the mean curves with their bands.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._numerics.arrays import real_array
from ._torch.devices import resolve_device
from ._torch.hooks import evaluating, finite_logits
from ._torch.images import all_images, check_dtype, class_per_image
from ._torch.layout import check_grid

__all__ = [
    "compare_faithfulness",
    "deletion_insertion",
    "knowledge_point_map",
    "plot_faithfulness",
]

_COMMON = {
    "steps": [None, Interval(Integral, 1, None, closed="left")],
    "baseline": [StrOptions({"blur", "mean"}), Real, "array-like"],
    "blur_sigma": [None, Interval(Real, 0, None, closed="neither")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "device": [None, str, torch.device],
}


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------
def _real_array(value, name, expected) -> np.ndarray:
    """float64 array of real numbers: the package's one rule, and bool
    refused as for images (a mask is no saliency map and no baseline)."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        check_dtype(dtype, name)  # bool and complex, in the images' words
    try:
        arr = real_array(value, name)
    except ValueError as exc:
        if "numeric" not in str(exc):
            raise
        raise ValueError(f"{name} must be {expected}; {exc}") from exc
    check_dtype(arr.dtype, name)  # nested lists of bools
    return arr.astype(np.float64)


def _check_maps(maps, n_images, size, grid=None, name="maps"):
    """(N, h, w) float64 maps, on ``grid`` when given (area average)."""
    maps = _real_array(maps, name, "an array of shape (N, h, w)")
    if maps.ndim != 3:
        hint = (
            " (reduce the colour channels first, e.g. np.abs(m).max(axis=1))"
            if maps.ndim == 4
            else ""
        )
        raise ValueError(
            f"{name} must have shape (N, h, w); got shape {maps.shape}{hint}"
        )
    if len(maps) != n_images:
        raise ValueError(f"{name} has {len(maps)} maps for {n_images} images")
    if maps.shape[1] > size[0] or maps.shape[2] > size[1] or 0 in maps.shape[1:]:
        raise ValueError(
            f"{name} of shape {maps.shape[1:]} do not fit images of size "
            f"{tuple(size)}: a map is at most as fine as the image"
        )
    if not np.isfinite(maps).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    if grid is not None and maps.shape[1:] != grid:
        if grid[0] > size[0] or grid[1] > size[1]:
            raise ValueError(f"grid {grid} is finer than the images {tuple(size)}")
        pooled = F.adaptive_avg_pool2d(torch.from_numpy(maps)[:, None], grid)
        maps = pooled[:, 0].numpy()
    return maps


def _unit_index(grid, size) -> np.ndarray:
    """(H, W) unit of every pixel: cell ``floor(i h / H), floor(j w / W)``
    (exact blocks when the grid divides the image, as for patch tokens)."""
    rows = np.arange(size[0]) * grid[0] // size[0]
    cols = np.arange(size[1]) * grid[1] // size[1]
    return rows[:, None] * grid[1] + cols[None, :]


def _ranks(maps) -> np.ndarray:
    """(N, U) position of each unit in its map's order, most important first.

    A stable sort of the negated values: equal values keep row-major order,
    so ties go to the unit nearer the top-left, deterministically.
    """
    flat = maps.reshape(len(maps), -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None, :], axis=1)
    return ranks


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(np.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    # reflect padding needs the pad below the size; replicate works for any
    mode = "reflect" if radius < min(h, w) else "replicate"
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode=mode), kernel.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode=mode), kernel.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def _baseline(x: torch.Tensor, baseline, blur_sigma) -> torch.Tensor:
    if isinstance(baseline, str):
        if baseline not in ("blur", "mean"):
            raise ValueError(
                "baseline must be 'blur', 'mean', a number or an array; "
                f"got {baseline!r}"
            )
        if baseline == "mean":
            return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
        sigma = blur_sigma if blur_sigma is not None else max(x.shape[2:]) / 4
        return _gaussian_blur(x, float(sigma))
    value = torch.as_tensor(
        _real_array(baseline, "baseline", "'blur', 'mean', a number or an array")
    )
    if not torch.isfinite(value).all():
        raise ValueError("baseline contains NaN or infinite values")
    try:
        return value.to(dtype=x.dtype, device=x.device).expand_as(x).clone()
    except RuntimeError as exc:
        raise ValueError(
            f"baseline of shape {tuple(value.shape)} does not broadcast to the "
            f"images' shape {tuple(x.shape)}"
        ) from exc


def _steps(steps, n_units) -> int:
    if steps is None:
        return min(n_units, 100)
    if steps > n_units:
        raise ValueError(
            f"steps={steps} exceeds the {n_units} units of the maps (at most one "
            "unit per step)"
        )
    return int(steps)


def _auc(fractions, curves) -> np.ndarray:
    """Trapezoid area of (N, S + 1) curves over ``fractions`` in [0, 1]."""
    widths = np.diff(fractions)
    return ((curves[:, 1:] + curves[:, :-1]) / 2 * widths).sum(axis=1)


def _probabilities(model, x, base, pixel_rank, counts, targets, batch_size, insert):
    """(N, S + 1) target probability with the first ``counts[k]`` units
    replaced by the baseline (deletion) or taken from the image (insertion)."""
    n, n_steps = len(x), len(counts)
    counts_t = torch.as_tensor(counts, device=x.device)
    targets_t = torch.as_tensor(targets, device=x.device)
    out = torch.empty(n * n_steps, dtype=torch.float64)
    for start in range(0, n * n_steps, batch_size):
        flat = torch.arange(
            start, min(start + batch_size, n * n_steps), device=x.device
        )
        img, step = flat // n_steps, flat % n_steps
        chosen = (pixel_rank[img] < counts_t[step][:, None, None])[:, None]
        if insert:
            batch = torch.where(chosen, x[img], base[img])
        else:
            batch = torch.where(chosen, base[img], x[img])
        logits = finite_logits(
            model(batch), where=" on the modified images (check the baseline)"
        ).double()
        prob = logits.softmax(dim=1)[torch.arange(len(flat)), targets_t[img]]
        out[start : start + len(flat)] = prob.cpu()
    return out.reshape(n, n_steps).numpy()


def _run(
    model, x, maps, target, grid, *, steps, baseline, blur_sigma, batch_size, device
):
    """Curves of several map sets on the validated images ``x`` (shared
    target and baseline). ``maps`` is a dict of (N, h, w) arrays already on
    one grid."""
    dev = resolve_device(device)
    with evaluating(model, dev), torch.no_grad():
        x = x.to(dev)
        base = _baseline(x, baseline, blur_sigma)
        targets = class_per_image(target, finite_logits(model(x)))
        n_units = grid[0] * grid[1]
        n_steps = _steps(steps, n_units)
        counts = np.arange(n_steps + 1) * n_units // n_steps
        fractions = counts / n_units
        units = torch.as_tensor(_unit_index(grid, tuple(x.shape[2:])), device=dev)
        curves = {}
        for name, m in maps.items():
            pixel_rank = torch.as_tensor(_ranks(m), device=dev)[:, units]  # (N, H, W)
            deletion, insertion = (
                _probabilities(
                    model, x, base, pixel_rank, counts, targets, batch_size, insert
                )
                for insert in (False, True)
            )
            curves[name] = Bunch(
                fractions=fractions,
                deletion=deletion,
                insertion=insertion,
                deletion_auc=_auc(fractions, deletion),
                insertion_auc=_auc(fractions, insertion),
                target=np.asarray(targets),
                grid=grid,
            )
    return curves


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------
@validate_params(
    {
        "model": [torch.nn.Module],
        "images": "no_validation",  # any image source, checked by skvmf._torch.images
        "maps": ["array-like", torch.Tensor],
        "target": [None, Integral, "array-like", torch.Tensor],
        "grid": [None, tuple, list],
        **_COMMON,
    },
    prefer_skip_nested_validation=True,
)
def deletion_insertion(
    model,
    images,
    maps,
    target=None,
    *,
    grid=None,
    steps=None,
    baseline="blur",
    blur_sigma=None,
    batch_size=256,
    device="cpu",
):
    """Deletion and insertion curves of saliency maps, and their areas.

    The map's units (the cells of its grid, or pixels when it has the image's
    size) are ranked by value, largest first; ties keep row-major order (a
    stable sort: the unit nearer the top-left goes first, the same on every
    call). Step ``k`` of ``S`` takes the first ``n_k = floor(k U / S)`` of the
    ``U`` units and

    - deletion: replaces them by the baseline in the image;
    - insertion: takes them from the image into the baseline;

    and records the softmax probability of the target class. The areas are
    trapezoids over the fraction of units ``n_k / U`` in [0, 1]. A faithful
    map has a *low* deletion area and a *high* insertion area.

    A cell of an (h, w) grid covers the pixels ``(i, j)`` with
    ``floor(i h / H), floor(j w / W)`` at its position, as nearest-neighbour
    upsampling of the map would: exact blocks when the grid divides the image
    (patch tokens, pooled conv maps).

    Parameters
    ----------
    model : torch.nn.Module
        The network, returning logits. It runs in evaluation mode; its modes
        are restored afterwards.
    images : array-like of shape (N, C, H, W), Dataset or DataLoader
        Images in the model's input space (any image source).
    maps : array-like of shape (N, h, w)
        One map per image, larger = more important, with ``h <= H`` and
        ``w <= W``: a region grid or the image's own size.
    target : int, array-like of shape (N,) or None, default=None
        Class whose probability is tracked; ``None`` takes the class the
        network predicts on the intact image.
    grid : (int, int) or None, default=None
        Average the maps over this grid first (``adaptive_avg_pool2d``), e.g.
        to compare an image-sized map with a region map on the same units;
        ``None`` keeps the maps' own grid.
    steps : int or None, default=None
        Steps from the intact to the fully replaced image (``S``); at most
        the number of units. ``None``: one unit per step, at most 100 steps.
    baseline : {"blur", "mean"}, float or array-like, default="blur"
        What a removed unit becomes: the image blurred by a Gaussian of
        standard deviation ``blur_sigma``; each image's per-channel mean; a
        constant; or an array broadcastable to the images.
    blur_sigma : float or None, default=None
        Of the blur, in pixels; ``None`` takes ``max(H, W) / 4``: on the
        digits it leaves the predicted class 0.13 (VGG, 32 px) and 0.22 (ViT,
        16 px) of probability, where ``/ 8`` still left 0.47 and 0.76.
    batch_size : int, default=256
        Images per forward pass.
    device : str or torch.device, default="cpu"
        Where to compute.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        - ``fractions``, ndarray of shape (S + 1,): fraction of units removed
          (deletion) or inserted (insertion) at each step, from 0 to 1;
        - ``deletion``, ``insertion``, ndarrays of shape (N, S + 1): the
          target probability at each step;
        - ``deletion_auc``, ``insertion_auc``, ndarrays of shape (N,);
        - ``target``, ndarray of shape (N,): the tracked class;
        - ``grid``: the units' grid (h, w).

    Examples
    --------
    >>> import torch
    >>> from skvmf.faithfulness import deletion_insertion
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    >>> images, maps = torch.randn(3, 1, 4, 4), torch.rand(3, 2, 2)
    >>> r = deletion_insertion(net, images, maps, baseline=0.0)
    >>> r.deletion.shape, r.fractions.tolist()
    ((3, 5), [0.0, 0.25, 0.5, 0.75, 1.0])
    """
    x = all_images(images, model, torch.device("cpu"))
    maps = _check_maps(maps, len(x), x.shape[2:], check_grid(grid))
    options = {"steps": steps, "baseline": baseline, "blur_sigma": blur_sigma}
    options.update(batch_size=batch_size, device=device)
    return _run(model, x, {"maps": maps}, target, maps.shape[1:], **options)["maps"]


def _embedded(result, images):
    """FeatureSet with h for new images, through the result's fitted chain."""
    fs = result.extractor.transform(images)
    return result.aligner.transform(result.projector.transform(fs))


@validate_params(
    {
        "result": "no_validation",
        "images": [None, "array-like", torch.Tensor],
        "layer": [None, str],
        "target": [StrOptions({"predicted", "true"}), "array-like"],
    },
    prefer_skip_nested_validation=True,
)
def knowledge_point_map(result, images=None, *, layer=None, target="predicted"):
    """The paper's knowledge points as a map: ``p(y = c | h)`` per region.

    For each image and region of ``layer``, the posterior of one class under
    the fitted category model (SPEC section 6). A region is a knowledge point
    of class ``c`` when this value exceeds the counter's ``tau``; the map
    keeps the continuous value, so that it ranks every region like a
    saliency map.

    Parameters
    ----------
    result : AnalysisResult
        From :func:`skvmf.analysis.analyze`.
    images : array-like of shape (N, C, H, W) or None, default=None
        ``None``: the held-out images of the analysis (``result.eval_index``,
        in that order, measured with the features stored in the result).
        Otherwise new images, embedded with the result's fitted extractor,
        projector and aligner.
    layer : str or None, default=None
        An analysed layer; ``None`` takes the deepest.
    target : {"predicted", "true"} or array-like of shape (N,), default="predicted"
        The class ``c`` per image: the network's prediction, the image's true
        label (held-out images only), or given class indices.

    Returns
    -------
    ndarray of shape (N, h, w)
        Posteriors in [0, 1] on the analysis grid ``result.features.grid``.

    Examples
    --------
    >>> from skvmf.faithfulness import knowledge_point_map
    >>> maps = knowledge_point_map(result)  # doctest: +SKIP
    >>> images_held_out = images[result.eval_index]  # doctest: +SKIP
    """
    counter = result.counter
    layer = result.layers[-1] if layer is None else layer
    if layer not in result.layers:
        raise ValueError(
            f"layer {layer!r} was not analysed; choose from {result.layers}"
        )
    if images is None:
        index = result.eval_index
        if index is None:
            index = np.arange(len(result.labels))
        fs = result.features[np.asarray(index)]
        labels = np.asarray(result.labels)[index]
    else:
        fs = _embedded(result, images)
        labels = None
    n = len(fs)
    if isinstance(target, str) and target not in ("predicted", "true"):
        raise ValueError(
            f"target must be 'predicted', 'true' or class indices; got {target!r}"
        )
    if isinstance(target, str) and target == "true":
        if labels is None:
            raise ValueError(
                "target='true' needs the images' labels: pass them as target"
            )
        classes = labels
    elif isinstance(target, str):
        if fs.logits is None:
            raise ValueError("target='predicted' needs the network's logits")
        classes = np.asarray(fs.logits, dtype=np.float64).argmax(axis=1)
    else:
        classes = np.asarray(target).ravel()
        if len(classes) != n:
            raise ValueError(f"target has {len(classes)} classes for {n} images")
    columns = {c: i for i, c in enumerate(counter.classes_.tolist())}
    try:
        col = np.array([columns[c] for c in classes.tolist()])
    except KeyError as exc:
        raise ValueError(
            f"target class {exc.args[0]!r} is not among the counter's classes "
            f"{counter.classes_.tolist()}"
        ) from None
    post = counter.region_posteriors(fs, layer=layer)
    values = post[np.arange(n), :, col]
    return values.reshape(n, *fs.grid)


def _interval(values, draws, confidence):
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(values[draws].mean(axis=1), [tail, 100.0 - tail])
    return float(values.mean()), float(low), float(high)


@validate_params(
    {
        "model": [torch.nn.Module],
        "images": "no_validation",
        "maps": [Mapping],
        "target": [None, Integral, "array-like", torch.Tensor],
        "random_map": ["boolean"],
        "grid": [None, tuple, list],
        **_COMMON,
        "n_bootstrap": [Interval(Integral, 1, None, closed="left")],
        "confidence": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def compare_faithfulness(
    model,
    images,
    maps,
    target=None,
    *,
    random_map=True,
    grid=None,
    steps=None,
    baseline="blur",
    blur_sigma=None,
    n_bootstrap=1000,
    confidence=0.95,
    batch_size=256,
    device="cpu",
    random_state=0,
):
    """Deletion and insertion areas of several saliency methods, with intervals.

    Every method is scored on the same images, target classes, units and
    baseline (:func:`deletion_insertion`). A random map (uniform values per
    unit, one per image) gives the chance level: a method whose interval of
    the gain over it excludes 0 beats chance.

    Intervals are percentile bootstraps over images: each of ``n_bootstrap``
    draws resamples the images with replacement, the same draws for every
    method, so that gains over the random map are paired.

    Parameters
    ----------
    model : torch.nn.Module
        The network, returning logits.
    images : array-like of shape (N, C, H, W)
        Images in the model's input space.
    maps : dict of str to array-like of shape (N, h, w)
        Method name to its maps (larger = more important). Maps of different
        resolutions are averaged onto ``grid``.
    target : int, array-like of shape (N,) or None, default=None
        Tracked class; ``None`` takes the prediction on the intact image.
    random_map : bool, default=True
        Add the ``"random"`` method.
    grid : (int, int) or None, default=None
        The units; ``None`` takes the coarsest grid among the maps (e.g. the
        region grid of the knowledge points).
    steps, baseline, blur_sigma, batch_size, device
        As in :func:`deletion_insertion`.
    n_bootstrap : int, default=1000
        Bootstrap draws.
    confidence : float, default=0.95
        Coverage of the intervals.
    random_state : int, RandomState instance or None, default=0
        Seeds the random map and the bootstrap.

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        - ``table``, list of dict: per method, ``method``, ``deletion_auc``
          and ``insertion_auc`` (means over images), the gains over the
          random map ``deletion_gain`` (random minus method) and
          ``insertion_gain`` (method minus random; both 0 for the random map
          itself, absent without it), each with ``_low`` and ``_high``, and
          ``n_images``;
        - ``curves``, dict of str to Bunch: :func:`deletion_insertion`'s
          output per method, plus ``deletion_band`` and ``insertion_band``
          (2, S + 1), the pointwise interval of the mean curve;
        - ``grid``, ``confidence``.

    Examples
    --------
    >>> import torch
    >>> from skvmf.faithfulness import compare_faithfulness
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    >>> images = torch.randn(6, 1, 4, 4)
    >>> r = compare_faithfulness(net, images, {"flat": torch.ones(6, 2, 2)},
    ...                          baseline=0.0, n_bootstrap=50)
    >>> [row["method"] for row in r.table]
    ['flat', 'random']
    """
    if random_map and "random" in maps:
        raise ValueError(
            "maps already has a 'random' entry; rename it or pass random_map=False"
        )
    x = all_images(images, model, torch.device("cpu"))
    checked, grid = _common_grid(maps, len(x), tuple(x.shape[2:]), check_grid(grid))
    rng = check_random_state(random_state)
    if random_map:
        checked["random"] = rng.uniform(size=(len(x), *grid))
    options = {"steps": steps, "baseline": baseline, "blur_sigma": blur_sigma}
    options.update(batch_size=batch_size, device=device)
    curves = _run(model, x, checked, target, grid, **options)
    draws = rng.randint(0, len(x), size=(n_bootstrap, len(x)))
    table = [_table_row(name, curves, draws, confidence, random_map) for name in curves]
    return Bunch(table=table, curves=curves, grid=grid, confidence=float(confidence))


def _common_grid(maps, n, size, grid):
    """Step 1 of :func:`compare_faithfulness`: every method's maps checked
    and averaged onto ``grid`` (default: the coarsest of the maps' grids)."""
    if not maps:
        raise ValueError("maps is empty: give at least one method's maps")
    checked = {
        name: _check_maps(m, n, size, name=f"maps[{name!r}]")
        for name, m in maps.items()
    }
    if grid is None:
        grid = min((m.shape[1:] for m in checked.values()), key=lambda g: g[0] * g[1])
    checked = {
        name: _check_maps(m, n, size, grid, name=f"maps[{name!r}]")
        for name, m in checked.items()
    }
    return checked, grid


def _table_row(name, curves, draws, confidence, random_map) -> dict:
    """Step 2 of :func:`compare_faithfulness`: one method's areas and, with a
    random map, its gains over chance, each with a paired bootstrap interval
    (the same ``draws`` for every method); adds the curves' bands."""
    c = curves[name]
    tail = 50.0 * (1.0 - confidence)
    row = {"method": name}
    for kind in ("deletion", "insertion"):
        value, low, high = _interval(c[f"{kind}_auc"], draws, confidence)
        row.update(
            {f"{kind}_auc": value, f"{kind}_auc_low": low, f"{kind}_auc_high": high}
        )
        c[f"{kind}_band"] = np.percentile(
            c[kind][draws].mean(axis=1), [tail, 100.0 - tail], axis=0
        )
    if random_map:
        chance = curves["random"]
        # signed so that a positive gain means better than chance
        for kind, sign in (("deletion", -1.0), ("insertion", 1.0)):
            diff = sign * (c[f"{kind}_auc"] - chance[f"{kind}_auc"])
            value, low, high = _interval(diff, draws, confidence)
            row.update(
                {
                    f"{kind}_gain": value,
                    f"{kind}_gain_low": low,
                    f"{kind}_gain_high": high,
                }
            )
    row["n_images"] = int(draws.shape[1])
    return row


@validate_params(
    {
        "comparison": "no_validation",  # checked below, naming its source
        "title": [None, str],
        "figsize": [tuple, list],
    },
    prefer_skip_nested_validation=True,
)
def plot_faithfulness(comparison, *, title=None, figsize=(9.0, 3.6)):
    """Mean deletion and insertion curves per method, with their bands.

    Parameters
    ----------
    comparison : Bunch
        The output of :func:`compare_faithfulness`.
    title : str or None, default=None
        Figure title.
    figsize : (float, float), default=(9.0, 3.6)
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels (deletion, insertion): per method the mean probability of
        the target class against the fraction of units removed or inserted,
        the band its pointwise bootstrap interval, the legend the area with
        its interval.

    Examples
    --------
    >>> from skvmf.faithfulness import plot_faithfulness
    >>> fig = plot_faithfulness(comparison)  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    if not isinstance(comparison, Mapping) or "curves" not in comparison:
        raise ValueError("comparison must be the output of compare_faithfulness")
    rows = {row["method"]: row for row in comparison["table"]}
    fig, axes = plt.subplots(1, 2, figsize=figsize, sharey=True)
    for ax, kind in zip(axes, ("deletion", "insertion")):
        for name, c in comparison["curves"].items():
            row = rows[name]
            label = (
                f"{name}: {row[kind + '_auc']:.3f} "
                f"[{row[kind + '_auc_low']:.3f}, {row[kind + '_auc_high']:.3f}]"
            )
            style = {"color": "0.4", "linestyle": "--"} if name == "random" else {}
            (line,) = ax.plot(c.fractions, c[kind].mean(axis=0), label=label, **style)
            band = c[kind + "_band"]
            ax.fill_between(
                c.fractions,
                band[0],
                band[1],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
        better = "lower" if kind == "deletion" else "higher"
        ax.set_title(f"{kind} (area: {better} is more faithful)")
        ax.set_xlabel(
            f"fraction of units {'removed' if kind == 'deletion' else 'inserted'}"
        )
        ax.set_xlim(0, 1)
        ax.legend(fontsize="small", title="area [interval]", title_fontsize="small")
    axes[0].set_ylabel("probability of the class")
    axes[0].set_ylim(bottom=0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
