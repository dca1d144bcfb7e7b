"""The one rule for the points a figure draws, and the one way a plotly
figure is written into a self-contained HTML page: shared by
:mod:`skvmf.plotting` and :mod:`skvmf.report`, so that a figure, its
interactive version and the report draw the same points the same way."""

from __future__ import annotations

import numpy as np


def subsample(n: int, max_points: int, random_state=0) -> np.ndarray:
    """The points a figure draws out of ``n``: the one rule of every figure.

    All of them, in order, when there are at most ``max_points``; beyond, a
    fixed random subsample of ``max_points`` distinct indices (seeded, so a
    figure, its interactive version and the report draw the same points).

    Parameters
    ----------
    n : int
        Number of points.
    max_points : int
        Points drawn at most.
    random_state : int or numpy Generator, default=0
        Seed of the subsample.

    Returns
    -------
    ndarray of int
        Indices into the ``n`` points.
    """
    if n <= max_points:
        return np.arange(n)
    return np.random.default_rng(random_state).choice(n, max_points, replace=False)


def plotly_bundle() -> str:
    """The plotly.js bundle shipped inside the installed plotly package."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _script_safe(text: str) -> str:
    # inside <script>, "</script" or "<!--" in a string (a class or layer
    # name) would end or confuse the element; in JSON every "<" lies in a
    # string, where the escape \u003c means the same character
    return text.replace("<", "\\u003c")


def figure_script(fig, element_id: str) -> str:
    """``<script>`` that draws ``fig`` into the element ``element_id``."""
    config = {"displaylogo": False, "responsive": True}
    spec = _script_safe(fig.to_json())
    return (
        f"<script>(function(){{var f={spec};"
        f'Plotly.newPlot("{element_id}",f.data,f.layout,'
        f"{_script_safe(_json(config))});}})();</script>"
    )


def _json(value) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def rescale_unit(x: np.ndarray) -> np.ndarray:
    """Min-max scaling to [0, 1] that neither overflows nor underflows.

    ``(x - lo) / (hi - lo)`` is inf for data spanning -1e308..1e308, so
    everything is divided by the largest magnitude first. A constant array
    maps to 0.
    """
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        return np.zeros_like(x)
    scale = max(abs(lo), abs(hi))
    y, lo, hi = x / scale, lo / scale, hi / scale
    return np.clip((y - lo) / (hi - lo), 0.0, 1.0)


def channel_stats(value, n_channels: int, name: str):
    """``mean`` or ``std`` of a normalisation: one value or one per channel."""
    from .._numerics.arrays import real_array

    if value is None:
        return None
    arr = real_array(value, name, finite=True, allow_empty=False).ravel()
    if arr.size not in (1, n_channels):
        raise ValueError(
            f"{name} must be one value or one per channel ({n_channels}); "
            f"got {arr.size}"
        )
    return np.broadcast_to(arr.astype(np.float64), (n_channels,))


def display_pixels(image, mean=None, std=None) -> np.ndarray:
    """(C, H, W) model-space image -> (H, W) or (H, W, 3) in [0, 1] to draw.

    With ``mean``/``std`` the normalisation is undone and the pixels clipped
    to [0, 1]; otherwise an image outside [0, 1] is min-max scaled (without
    overflow, whatever its magnitude). Shared by the image figures and the
    report's thumbnails.
    """
    from .._numerics.arrays import real_array

    img = real_array(image, "image", finite=True, ndim=(2, 3), allow_empty=False)
    img = img.astype(np.float64)
    if img.ndim == 2:
        img = img[None]
    if img.shape[0] not in (1, 3):
        raise ValueError(
            f"an image must have shape (C, H, W) with C = 1 or 3; got {img.shape}"
        )
    if mean is not None or std is not None:
        c = img.shape[0]
        m = channel_stats(0.0 if mean is None else mean, c, "mean")
        s = channel_stats(1.0 if std is None else std, c, "std")
        img = np.clip(img * s[:, None, None] + m[:, None, None], 0.0, 1.0)
    elif img.min() < 0 or img.max() > 1:
        img = rescale_unit(img)
    img = np.moveaxis(img, 0, -1)
    return img[..., 0] if img.shape[-1] == 1 else img


def thumbnails(images, rows, mean=None, std=None, max_side: int = 48) -> np.ndarray:
    """``images[rows]`` as small uint8 pictures: (n, h, w) when every image
    is grey (one channel, or three equal ones), else (n, h, w, 3).

    Each image is drawn as :func:`display_pixels` draws it and shrunk by
    box averaging so that its longest side is at most ``max_side``; one
    image at a time, so that large inputs are never copied whole.
    """
    from PIL import Image

    from .._numerics.arrays import to_numpy

    tiles = []
    for row in np.asarray(rows, dtype=np.int64):
        pix = display_pixels(to_numpy(images[int(row)]), mean, std)
        tile = Image.fromarray(np.round(pix * 255).astype(np.uint8))
        height, width = pix.shape[:2]
        shrink = max(height, width) / max_side
        if shrink > 1:
            size = (max(1, round(width / shrink)), max(1, round(height / shrink)))
            tile = tile.resize(size, Image.Resampling.BOX)
        tiles.append(np.asarray(tile))
    if not tiles:
        return np.zeros((0, 1, 1), dtype=np.uint8)
    out = np.stack(tiles)
    if out.ndim == 4 and (np.ptp(out, axis=-1) == 0).all():
        out = out[..., 0]  # three equal channels: grey, a third of the bytes
    return out
