"""The container that carries one network's features through a pipeline.

A :class:`FeatureSet` holds, for N images, everything the analysis needs:
sample features, logits or soft labels, each layer's regional features, and
what later steps add (the projected sample features ``g``, the category
directions, each layer's embedded regions ``h``). It indexes by image like an
array (``fs[idx]``, ``len(fs)``, ``fs.shape``), so scikit-learn's
cross-validation, ``GridSearchCV`` and ``Pipeline`` pass it between steps
unchanged, and the expensive CNN pass can be run once and reused ("frozen").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from skvmf._soft_labels import softmax_of_logits

# Fields indexed by image (first axis is N). The others describe the model
# (category directions, class names, grid) and are shared by every subset.
_PER_IMAGE = ("sample", "logits", "soft_labels", "g", "image_ids")
_PER_IMAGE_MAPS = ("regions", "h")


def _take(array, key):
    """Index the first axis of a numpy array, memmap or torch tensor."""
    if isinstance(key, (int, np.integer)):
        key = [int(key)]
    if hasattr(array, "detach"):  # torch tensor: index with a tensor on its device
        import torch

        if isinstance(key, slice):
            return array[key]
        key = np.asarray(key)
        if key.dtype == bool:
            key = np.flatnonzero(key)
        return array[torch.as_tensor(key, dtype=torch.long, device=array.device)]
    if isinstance(key, slice):
        return np.asarray(array[key])
    return np.asarray(array)[np.asarray(key)]


def _n_rows(array) -> int:
    return int(array.shape[0])


# Fields whose finiteness is checked on construction: (N, C) or (N, D) rows,
# cheap next to the regional maps, which can be large memmaps; the extractor
# and the aligner check the maps' finiteness batch by batch instead.
_CHECK_FINITE = ("sample", "logits", "soft_labels", "g", "directions", "priors")


def _is_complex(value) -> bool:
    if hasattr(value, "is_complex") and hasattr(value, "detach"):  # torch
        return bool(value.is_complex())
    try:
        return np.iscomplexobj(value)
    except (TypeError, ValueError):  # ragged: refused as non-numeric below
        return False


def _check_field(name: str, value) -> None:
    """A FeatureSet field must be a real numeric array; some must be finite.

    Raises a ``ValueError`` that names the field: complex values are never
    cast to their real part, object arrays never guessed at.
    """
    if _is_complex(value):
        raise ValueError(
            f"FeatureSet.{name} must be real; got complex values ({value.dtype})"
        )
    if hasattr(value, "detach"):
        if name in _CHECK_FINITE and value.is_floating_point():
            import torch

            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"FeatureSet.{name} contains NaN or infinite values")
        return
    try:
        arr = np.asarray(value)  # a view for arrays and memmaps: nothing read
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise ValueError(f"FeatureSet.{name} must be a numeric array") from exc
    if not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, bool)):
        raise ValueError(f"FeatureSet.{name} must be numeric; got dtype {arr.dtype}")
    floating = np.issubdtype(arr.dtype, np.floating)
    if name in _CHECK_FINITE and floating and not np.isfinite(arr).all():
        raise ValueError(f"FeatureSet.{name} contains NaN or infinite values")


def _softmax(z, temperature: float) -> np.ndarray:
    """Tempered soft labels of finite logits (validated by _check_field)."""
    z = np.asarray(z.detach().cpu() if hasattr(z, "detach") else z, np.float64)
    if z.ndim != 2:
        raise ValueError(
            f"FeatureSet.logits must have shape (N, C); got {tuple(z.shape)}"
        )
    return softmax_of_logits(z, float(temperature))


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureSet:
    """Features of N images from one network, indexable by image.

    Every per-image array has N rows in the same order; ``fs[idx]`` returns a
    new :class:`FeatureSet` restricted to those images (an int array, a
    boolean mask or a slice), which is what scikit-learn's cross-validation
    needs. Steps of an analysis add fields with :meth:`replace`; nothing is
    modified in place.

    Parameters
    ----------
    sample : ndarray of shape (N, D), optional
        Sample features f(x): the input of the last fully-connected layer.
    logits : ndarray of shape (N, C), optional
        The network's logits z(x).
    soft_labels : ndarray of shape (N, C), optional
        P(y|x). When absent it is ``softmax(logits / temperature)``.
    temperature : float, default=4.0
        Temperature T of the soft labels derived from ``logits``.
    regions : dict of str to ndarray of shape (N, R, K), optional
        Regional features per layer on a common ``grid`` (R = H * W, row-major:
        region ``r`` sits at row ``r // W`` and column ``r % W``).
    grid : tuple of int (H, W), optional
        The spatial grid shared by every layer in ``regions``.
    g : ndarray of shape (N, d'), optional
        Projected sample features, added by :class:`skvmf.SampleProjector`.
    directions : ndarray of shape (C, d'), optional
        Unit category directions mu_c in the projected space.
    priors : ndarray of shape (C,), optional
        Category priors pi_c.
    h : dict of str to ndarray of shape (N, R, d'), optional
        Embedded regional features per layer, added by
        :class:`skvmf.RegionalAligner`.
    classes : ndarray of shape (C,), optional
        Class labels in the order of the logits' columns.
    image_ids : ndarray of shape (N,), optional
        Index of each image in the original input; set by the extractor and
        kept through indexing so a region is always traceable to its image.
    meta : dict, optional
        Free-form information (model name, layer aliases, checkpoint ...).

    Examples
    --------
    >>> import numpy as np
    >>> from skvmf import FeatureSet
    >>> fs = FeatureSet(logits=np.zeros((4, 3)),
    ...                 regions={"conv": np.ones((4, 9, 8))}, grid=(3, 3))
    >>> len(fs), fs.shape, fs.layers
    (4, (4,), ['conv'])
    >>> fs[[0, 2]].regions["conv"].shape
    (2, 9, 8)
    >>> fs.soft_labels[0]
    array([0.33333333, 0.33333333, 0.33333333])
    """

    sample: Any = None
    logits: Any = None
    soft_labels: Any = None
    temperature: float = 4.0
    regions: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    grid: tuple[int, int] | None = None
    g: Any = None
    directions: Any = None
    priors: Any = None
    h: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    classes: Any = None
    image_ids: Any = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "regions", dict(self.regions or {}))
        object.__setattr__(self, "h", dict(self.h or {}))
        object.__setattr__(self, "meta", dict(self.meta or {}))
        self._check_values()
        if self.soft_labels is None and self.logits is not None:
            object.__setattr__(
                self, "soft_labels", _softmax(self.logits, self.temperature)
            )
        self._check_shapes()

    def _check_values(self):
        """Every array field real and numeric; the small ones finite."""
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float, np.number)):
            raise ValueError(f"temperature must be a positive number; got {t!r}")
        if not (np.isfinite(t) and t > 0):
            raise ValueError(f"temperature must be positive; got {t!r}")
        for name in _PER_IMAGE + ("directions", "priors", "classes"):
            value = getattr(self, name)
            if value is not None and name not in ("image_ids", "classes"):
                _check_field(name, value)
        for name in _PER_IMAGE_MAPS:
            for layer, value in getattr(self, name).items():
                _check_field(f"{name}[{layer!r}]", value)

    def _check_shapes(self):
        """The same number of images everywhere, and maps on the grid."""
        counts = {}
        for name in _PER_IMAGE:
            value = getattr(self, name)
            if value is not None:
                counts[name] = _n_rows(value)
        for name in _PER_IMAGE_MAPS:
            for layer, value in getattr(self, name).items():
                counts[f"{name}[{layer!r}]"] = _n_rows(value)
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{k}: {v}" for k, v in counts.items())
            raise ValueError(
                f"every per-image field of a FeatureSet needs the same number of "
                f"images; got {detail}"
            )
        if self.grid is not None:
            grid = tuple(int(v) for v in self.grid)
            object.__setattr__(self, "grid", grid)
            n_regions = grid[0] * grid[1]
            for name in _PER_IMAGE_MAPS:
                for layer, value in getattr(self, name).items():
                    if value.ndim != 3 or value.shape[1] != n_regions:
                        raise ValueError(
                            f"{name}[{layer!r}] must have shape (N, {n_regions}, "
                            f"K) for grid {grid}; got {tuple(value.shape)}"
                        )
        object.__setattr__(self, "_n", next(iter(counts.values()), 0))

    # -- array-like behaviour ------------------------------------------------
    def __len__(self) -> int:
        return self._n

    @property
    def shape(self) -> tuple[int]:
        """``(N,)``: lets scikit-learn count and index the images."""
        return (self._n,)

    @property
    def n_samples(self) -> int:
        """Number of images N."""
        return self._n

    def __getitem__(self, key) -> FeatureSet:
        if isinstance(key, str):
            raise TypeError(
                "index a FeatureSet by image (int array, mask or slice); "
                f"use .regions[{key!r}] or .h[{key!r}] for a layer"
            )
        if isinstance(key, tuple):
            # numpy-style ``fs[idx, ...]`` (as scikit-learn indexes arrays)
            rest = key[1:]
            if any(part is not Ellipsis for part in rest):
                raise IndexError("a FeatureSet is indexed along images only")
            key = key[0]
        changes = {}
        for name in _PER_IMAGE:
            value = getattr(self, name)
            if value is not None:
                changes[name] = _take(value, key)
        for name in _PER_IMAGE_MAPS:
            changes[name] = {k: _take(v, key) for k, v in getattr(self, name).items()}
        return dataclasses.replace(self, **changes)

    # -- convenience ---------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        """Layer names with regional features, in extraction order."""
        return list(self.regions)

    @property
    def n_classes(self) -> int | None:
        """Number of categories C (from soft labels, directions or classes)."""
        if self.soft_labels is not None:
            return int(self.soft_labels.shape[1])
        for value in (self.directions, self.classes):
            if value is not None:
                return int(value.shape[0])
        return None

    def replace(self, **changes) -> FeatureSet:
        """A copy with some fields replaced; nothing is modified in place.

        ``regions`` and ``h`` given here replace the whole mapping; use
        :meth:`with_layers` to add one layer.
        """
        return dataclasses.replace(self, **changes)

    def with_layers(self, field: str = "h", **arrays) -> FeatureSet:
        """A copy with layers added to (or replaced in) ``regions`` or ``h``."""
        if field not in _PER_IMAGE_MAPS:
            raise ValueError(f"field must be one of {_PER_IMAGE_MAPS}; got {field!r}")
        merged = {**getattr(self, field), **arrays}
        return dataclasses.replace(self, **{field: merged})

    def region_rows(self, layer: str, field: str = "regions"):
        """Regional features of ``layer`` as rows, shape (N * R, K).

        Row ``i * R + r`` is region ``r`` of image ``i``; :meth:`region_index`
        gives each row's image and grid position.
        """
        maps = getattr(self, field)
        if layer not in maps:
            raise ValueError(
                f"no layer {layer!r} in FeatureSet.{field}; available: {list(maps)}"
            )
        value = maps[layer]
        return value.reshape(value.shape[0] * value.shape[1], value.shape[2])

    def region_index(self) -> np.ndarray:
        """For each region row, ``(image, row, col)``; shape (N * R, 3).

        ``image`` is the original input index (``image_ids``) when known.
        """
        if self.grid is None:
            raise ValueError("this FeatureSet has no grid; it holds no regions")
        height, width = self.grid
        n_regions = height * width
        ids = (
            np.asarray(self.image_ids)
            if self.image_ids is not None
            else np.arange(self._n)
        )
        r = np.arange(n_regions)
        out = np.empty((self._n * n_regions, 3), dtype=np.int64)
        out[:, 0] = np.repeat(ids, n_regions)
        out[:, 1] = np.tile(r // width, self._n)
        out[:, 2] = np.tile(r % width, self._n)
        return out

    def __repr__(self) -> str:
        parts = [f"n_samples={self._n}"]
        for name in ("sample", "logits", "g", "directions"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={tuple(value.shape)}")
        if self.regions:
            parts.append(
                "regions={"
                + ", ".join(f"{k!r}: {tuple(v.shape)}" for k, v in self.regions.items())
                + "}"
            )
        if self.h:
            parts.append(
                "h={"
                + ", ".join(f"{k!r}: {tuple(v.shape)}" for k, v in self.h.items())
                + "}"
            )
        if self.grid is not None:
            parts.append(f"grid={self.grid}")
        return "FeatureSet(" + ", ".join(parts) + ")"
