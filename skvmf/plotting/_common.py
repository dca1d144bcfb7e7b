"""What the plotting modules share: class colours and names, the checks every
figure applies to its data before drawing, and overflow-safe rescaling.

A figure must never be silently wrong: a NaN vanishes from a scatter, an
infinite value breaks a colour scale, a complex array cast to its real part
draws something else. So every array is checked here first, and a bad one is
a ``ValueError`` that names the argument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .._numerics.arrays import real_array as _real_array
from .._numerics.arrays import safe_norm
from .._utils.figures import subsample

# magnitudes beyond which a colour scale (``(x - vmin) / (vmax - vmin)``)
# may overflow or lose its subnormal precision: data outside is drawn divided
# by a power of two, which is exact and leaves every colour unchanged
_DRAW_RANGE = (2.0**-500, 2.0**500)


def class_colors(n_classes: int) -> list:
    """One RGBA colour per class: ``tab10``, or ``tab20`` above ten classes."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if n_classes <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n_classes)]


def class_names(classes, n: int) -> list[str]:
    """The class names as strings, or ``"0" ... "n-1"`` when none are given;
    ``classes`` must name at least the ``n`` classes drawn."""
    if classes is None:
        return [str(i) for i in range(n)]
    names = [str(c) for c in classes]
    if len(names) < n:
        raise ValueError(
            f"classes must name every one of the {n} classes; got {len(names)} names"
        )
    return names


def real_array(x, name: str, *, ndim=None, allow_empty: bool = False) -> np.ndarray:
    """``x`` as a finite float64 array: :func:`skvmf._numerics.arrays.real_array`'s
    rule, on the host, refusing empty data by default (nothing to draw).

    Parameters
    ----------
    x : array-like or tensor
    name : str
        The argument's name, for the error messages.
    ndim : int or tuple of int, optional
        Allowed ranks.
    allow_empty : bool, default=False
        Accept an array without elements.

    Raises
    ------
    ValueError
        Complex (never cast), object or text data, a ragged list, a wrong
        rank, no elements, or a NaN or infinite value.
    """
    arr = _real_array(x, name, finite=True, ndim=ndim, allow_empty=allow_empty)
    return arr.astype(np.float64)  # a copy: figures may rescale it in place


def int_array(x, name: str, n: int | None = None, *, low=None, high=None):
    """``x`` as an int array of integer values (shape ``(n,)`` when ``n`` is
    given), each in ``[low, high)`` where those are given."""
    arr = real_array(x, name, allow_empty=True)
    if n is not None and arr.shape != (n,):
        raise ValueError(
            f"{name} must have one entry per point, shape ({n},); got {arr.shape}"
        )
    if np.any(arr != np.round(arr)):
        raise ValueError(f"{name} must be integers (class indices)")
    out = arr.astype(np.int64)
    bad = np.zeros(out.shape, bool)
    if low is not None:
        bad |= out < low
    if high is not None:
        bad |= out >= high
    if bad.any():
        raise ValueError(
            f"{name} must lie in [{low if low is not None else '-inf'}, "
            f"{high if high is not None else 'inf'}); got {out[bad].ravel()[0]}"
        )
    return out


def per_item(value, n: int, default, name: str):
    """``value`` (one entry per image) as an array, or ``default`` if None."""
    if value is None:
        return default
    value = np.asarray(value)
    if value.ndim != 1 or len(value) != n:
        raise ValueError(
            f"{name} must have one entry per image ({n}); got shape {value.shape}"
        )
    return value


def points(x, name: str, *, min_dim: int = 2) -> np.ndarray:
    """Points of shape (N, d) with ``d >= min_dim``, finite, N >= 1."""
    arr = real_array(x, name, allow_empty=True)
    if arr.ndim != 2 or arr.shape[1] < min_dim:
        raise ValueError(
            f"{name} must have shape (N, d') with d' >= {min_dim}; got {arr.shape}"
        )
    if len(arr) == 0:
        raise ValueError(f"{name} is empty: no point to draw")
    return arr


def directions_for(directions, d: int, name: str = "directions") -> np.ndarray:
    """Category directions (C, d) as unit rows (scaled safely), so an arrow's
    length is set by the data's reach and never overflows."""
    mu = real_array(directions, name, ndim=2)
    if mu.shape[1] != d:
        raise ValueError(
            f"{name} must have shape (C, {d}) like the points; got {mu.shape}"
        )
    return unit(mu)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows divided by their overflow-safe norm (zero rows stay zero)."""
    norm = safe_norm(x, dim=-1, keepdim=True)
    return x / np.where(norm > 0, norm, 1.0)


def reach(x: np.ndarray) -> float:
    """Largest row norm (overflow-safe), 1 when every row is zero."""
    largest = float(np.max(safe_norm(x, dim=-1))) if x.size else 0.0
    return largest if largest > 0 else 1.0


def drawable(x: np.ndarray) -> np.ndarray:
    """``x`` unchanged when a colour scale can take it, otherwise divided by
    the power of two nearest its largest magnitude (exact: colours and
    ratios stay as they are)."""
    top = float(np.max(np.abs(x))) if x.size else 0.0
    if top == 0 or _DRAW_RANGE[0] <= top <= _DRAW_RANGE[1]:
        return x
    return np.ldexp(x, -int(np.frexp(top)[1]))


def check_records(
    table, name: str, keys: Sequence[str], numeric: Sequence[str] = ()
) -> list:
    """A non-empty list of dict rows, each with ``keys``; the ``numeric``
    ones finite numbers (None allowed only for keys not listed)."""
    if isinstance(table, Mapping) or not isinstance(table, Sequence):
        raise ValueError(f"{name} must be a list of dict rows; got {type(table)}")
    rows = list(table)
    if not rows:
        raise ValueError(f"{name} is empty: no row to draw")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"{name}[{i}] must be a dict; got {type(row).__name__}")
        missing = [k for k in keys if k not in row]
        if missing:
            raise ValueError(f"{name}[{i}] has no {missing[0]!r} column")
        for key in numeric:
            finite_number(row[key], f"{name}[{i}][{key!r}]")
    return rows


def finite_number(value, name: str) -> float:
    """A real, finite number (no complex, no NaN, no inf)."""
    if isinstance(value, (complex, np.complexfloating)):
        raise ValueError(f"{name} must be a real number; got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number; got {value!r}") from exc
    if not np.isfinite(out):
        raise ValueError(f"{name} must be finite; got {out}")
    return out


def images_nchw(x, name: str = "images", n: int | None = None) -> np.ndarray:
    """Images of shape (N, C, H, W) (or one (C, H, W)) with C = 1 or 3.

    Channels-last images (N, H, W, C) would be drawn as garbage, so a
    channel axis of another size is refused, with the transpose to use when
    the last axis looks like the channels.
    """
    arr = real_array(x, name, ndim=(3, 4))
    if arr.ndim == 3:
        arr = arr[None]
    if arr.shape[1] not in (1, 3):
        hint = ""
        if arr.shape[-1] in (1, 3):
            hint = " (channels last? pass images.transpose(0, 3, 1, 2))"
        raise ValueError(
            f"{name} must have shape (N, C, H, W) with C = 1 or 3; got "
            f"{arr.shape}{hint}"
        )
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} images but {n} maps were given")
    return arr


def xyz(x: np.ndarray) -> np.ndarray:
    """First three coordinates of points (N, d'), zero-padded when d' = 2."""
    if x.shape[1] < 3:
        x = np.hstack([x, np.zeros((len(x), 3 - x.shape[1]))])
    return x[:, :3]


def region_sample(h, directions, region_labels, max_points: int, random_state):
    """The regions a layer-regions figure draws: the same ones at every layer.

    Parameters
    ----------
    h : dict of layer -> array (N, R, d')
        Embedded regions; every layer needs the same N and R.
    directions : array-like of shape (C, d')
        Category directions.
    region_labels : dict of layer -> array (N, R) or None
        Category index of each knowledge point, -1 for the other regions.
    max_points : int
        Regions drawn at most.
    random_state : int or numpy Generator
        Seed of the subsample (drawn as the figures always have).

    Returns
    -------
    layers : list of str
    keep : ndarray of int
        Flat indices ``image * R + region`` of the regions drawn.
    drawn : dict of layer -> ndarray (len(keep), d')
    labels : dict of layer -> ndarray (len(keep),) of int
        -1 where a layer has no labels.
    shape : tuple (N, R)
    mu : ndarray of shape (C, d')
        The directions as unit rows.
    """
    layers = list(h)
    if not layers:
        raise ValueError("h has no layers to plot")
    arrays = {layer: real_array(h[layer], f"h[{layer!r}]", ndim=3) for layer in layers}
    shape = arrays[layers[0]].shape[:2]
    for layer, arr in arrays.items():
        if arr.shape[:2] != shape:
            raise ValueError(
                f"h[{layer!r}] has shape {arr.shape}: every layer needs the same "
                f"images and regions (N, R) = {shape}"
            )
    mu = directions_for(directions, arrays[layers[0]].shape[-1])
    n, r = shape
    keep = subsample(n * r, max_points, random_state)
    drawn = {layer: arr.reshape(n * r, -1)[keep] for layer, arr in arrays.items()}
    labels = {}
    for layer in layers:
        if region_labels is not None and layer in region_labels:
            lab = int_array(
                region_labels[layer],
                f"region_labels[{layer!r}]",
                low=-1,
                high=len(mu),
            )
            if lab.shape != shape:
                raise ValueError(
                    f"region_labels[{layer!r}] must have shape {shape}; got {lab.shape}"
                )
            labels[layer] = lab.reshape(-1)[keep]
        else:
            labels[layer] = np.full(len(keep), -1)
    return layers, keep, drawn, labels, shape, mu


def check_frames(frames) -> list[tuple]:
    """``(iteration, g, directions)`` of every frame; the same images in
    each, all checked."""
    if not frames:
        raise ValueError("frames is empty")
    out = []
    for i, frame in enumerate(frames):
        if not isinstance(frame, Mapping) or not {
            "iteration",
            "g",
            "directions",
        } <= set(frame):
            raise ValueError(
                f"frames[{i}] must be a dict with 'iteration', 'g' and 'directions'"
            )
        g = points(frame["g"], f"frames[{i}]['g']")
        mu = directions_for(
            frame["directions"], g.shape[1], f"frames[{i}]['directions']"
        )
        if out and len(g) != len(out[0][1]):
            raise ValueError(
                f"every frame needs the same images; frames[{i}]['g'] has "
                f"{len(g)} rows, frames[0]['g'] {len(out[0][1])}"
            )
        out.append((frame["iteration"], g, mu))
    return out


def display_unit(largest: float) -> float:
    """The unit coordinates are drawn in: 1 for ordinary magnitudes, else
    the power of ten of ``largest``.

    matplotlib takes axis limits below about 1e-287 for a singular range (it
    draws such points at the centre of a +-0.05 frame) and its 3-D
    projection multiplies coordinates; in units of their power of ten the
    picture is the same at every magnitude. :func:`unit_note` tells the
    reader.
    """
    if largest == 0 or 1e-100 <= largest <= 1e100:
        return 1.0
    return float(10.0 ** np.floor(np.log10(largest)))


def unit_note(unit: float) -> str:
    """Text appended to a title when coordinates are drawn in ``unit``."""
    return "" if unit == 1.0 else f" (coordinates in units of {unit:.0e})"
