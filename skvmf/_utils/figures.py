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
