"""Progress reporting shared by every long-running step.

One place decides how progress is shown, so that ``verbose`` means the same
thing everywhere: ``0`` silent, ``1`` a progress bar, ``2`` a bar plus
per-step messages.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(
    iterable: Iterable[T],
    *,
    verbose: int = 0,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
) -> Iterator[T] | Iterable[T]:
    """Wrap ``iterable`` in a progress bar when ``verbose`` is truthy.

    The bar writes to ``stderr`` so that it never mixes with results printed
    on ``stdout`` (tables, JSON), and disappears when ``verbose == 0``.
    """
    if not verbose:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=verbose >= 2 or None,
    )


def message(text: str, *, verbose: int = 0, level: int = 2) -> None:
    """Print ``text`` to ``stderr`` when ``verbose >= level``."""
    if verbose >= level:
        print(text, file=sys.stderr, flush=True)
