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

from skvmf._array_api import (
    dispatch_enabled,
    float_dtype,
    get_namespace,
    get_namespace_and_device,
    is_numpy,
    move_to,
    namespace_name,
    to_numpy,
)
from skvmf._numerics.arrays import real_array
from skvmf._numerics.soft_labels import softmax_of_logits, softmax_of_logits_xp

# Fields indexed by image (first axis is N). The others describe the model
# (category directions, class names, grid) and are shared by every subset.
_PER_IMAGE = ("sample", "logits", "soft_labels", "g", "image_ids")
_PER_IMAGE_MAPS = ("regions", "h")


def _is_torch_tensor(value) -> bool:
    return hasattr(value, "detach") and hasattr(value, "is_floating_point")


def _is_numpy_like(value) -> bool:
    """numpy arrays and memmaps: indexed and checked with numpy."""
    return isinstance(value, np.ndarray)


def _index_key(key, n):
    """The image index ``key`` as a normalised key for :func:`_take`.

    Returns a slice unchanged; otherwise ``(host, native)``: the non-negative
    int64 positions as a numpy array (``None`` when ``key`` is an array of
    another namespace, so that no device index is copied to the host unless
    a host field needs it), and ``key`` itself as an integer array of its own
    namespace (``None`` for host keys). Boolean masks become positions.
    """
    if isinstance(key, slice):
        return key
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = [int(key)]
    if not isinstance(key, (list, tuple, np.ndarray)) and hasattr(key, "shape"):
        # an index array of another namespace (a torch tensor, ...)
        xp, _ = get_namespace(key) if dispatch_enabled() else (None, False)
        if xp is None or is_numpy(xp):
            if _is_torch_tensor(key):
                return None, key
            key = np.asarray(key)
        else:
            if xp.isdtype(key.dtype, "bool"):
                key = xp.nonzero(key)[0]
            return None, key
    key = np.asarray(key)
    if key.dtype == bool:
        if key.shape != (n,):
            raise IndexError(
                f"a boolean mask over a FeatureSet of {n} images must have shape "
                f"({n},); got {key.shape}"
            )
        key = np.flatnonzero(key)
    elif key.size == 0:
        key = key.astype(np.int64)
    elif not np.issubdtype(key.dtype, np.integer):
        raise IndexError(
            f"index a FeatureSet with integers, a boolean mask or a slice; got "
            f"an array of dtype {key.dtype}"
        )
    if key.size and (key.min() < -n or key.max() >= n):
        bad = key[(key < -n) | (key >= n)][0]
        raise IndexError(f"index {bad} is out of bounds for {n} images")
    return np.where(key < 0, key + n, key).astype(np.int64), None


def _take(array, key):
    """Index the first axis of an array of any namespace by a normalised key."""
    if isinstance(key, slice):
        if _is_numpy_like(array):
            return np.asarray(array[key])
        return array[key, ...]
    host, native = key
    if _is_numpy_like(array):
        if host is None:
            host = to_numpy(native)
        return np.asarray(array)[host]
    if _is_torch_tensor(array):  # a torch tensor: the index on its device
        import torch

        if native is not None and _is_torch_tensor(native):
            index = native
        else:
            index = host if host is not None else to_numpy(native)
            index = torch.as_tensor(index)
        return array[index.to(device=array.device, dtype=torch.long)]
    # any other namespace: its own take with an integer index on its device
    xp, _, dev = get_namespace_and_device(array)
    if native is not None:
        index = move_to(native, xp=xp, device=dev)
    else:
        index = xp.asarray(host, device=dev)
    return xp.take(array, xp.astype(index, xp.int64), axis=0)


def _n_rows(array) -> int:
    return int(array.shape[0])


# Fields whose finiteness is checked on construction: (N, C) or (N, D) rows,
# cheap next to the regional maps, which can be large memmaps; the extractor
# and the aligner check the maps' finiteness batch by batch instead.
_CHECK_FINITE = ("sample", "logits", "soft_labels", "g", "directions", "priors")


def _as_array(name: str, value):
    """Nested lists and tuples as a numpy array; ragged ones refused by name."""
    if not isinstance(value, (list, tuple)):
        return value
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise ValueError(
            f"FeatureSet.{name} must be an array; the nested lists given are "
            "ragged (rows of different lengths)"
        ) from exc
    if arr.dtype == object:
        raise ValueError(
            f"FeatureSet.{name} must be an array; the nested lists given are "
            "ragged or hold non-numeric objects"
        )
    return arr


def _check_field(name: str, value) -> None:
    """A FeatureSet field must be a real numeric array; some must be finite.

    The package's one rule (:func:`skvmf._numerics.arrays.real_array`),
    naming the field: complex values are never cast to their real part,
    object arrays never guessed at. Tensors and arrays of other namespaces
    are checked on their device (one bool read back); memmaps are viewed,
    not copied.
    """
    real_array(
        value, f"FeatureSet.{name}", finite=name in _CHECK_FINITE, host=False
    )


def _softmax(z, temperature: float):
    """Tempered soft labels of finite logits (validated by _check_field).

    With dispatch on, logits of another namespace give soft labels in that
    namespace and on their device (float64 where the device has it, as the
    numpy path computes); otherwise a float64 numpy array, as always.
    """
    if z.ndim != 2:
        raise ValueError(
            f"FeatureSet.logits must have shape (N, C); got {tuple(z.shape)}"
        )
    if dispatch_enabled() and not _is_numpy_like(z):
        xp, _, dev = get_namespace_and_device(z)
        if not is_numpy(xp):
            dtype = float_dtype(xp, dev, name="FeatureSet.soft_labels")
            return softmax_of_logits_xp(xp.astype(z, dtype), float(temperature), xp)
    z = np.asarray(z.detach().cpu() if hasattr(z, "detach") else z, np.float64)
    return softmax_of_logits(z, float(temperature))


class _NamespaceInfo:
    @staticmethod
    def dtypes(*, device=None, kind=None):
        return {"float32": np.float32, "float64": np.float64}

    @staticmethod
    def devices():
        return ["cpu"]

    @staticmethod
    def default_device():
        return "cpu"


class _FeatureSetNamespace:
    """The namespace scikit-learn's Array API helpers find on a FeatureSet.

    With dispatch on, scikit-learn's cross-validation asks X for its
    namespace and device, makes each split's indices arrays of that
    namespace, and indexes X with ``xp.take(X, indices, axis=0)``. A
    FeatureSet holds arrays but is none: its namespace keeps indices on the
    host (numpy; they are small) and ``take`` is ``fs[indices]``, which
    gives every field the index on that field's own device.
    """

    __name__ = "skvmf.features.FeatureSet"
    float32 = np.float32
    float64 = np.float64

    @staticmethod
    def asarray(obj, dtype=None, device=None, copy=None):
        return np.asarray(to_numpy(obj), dtype=dtype)

    @staticmethod
    def from_dlpack(obj, *, device=None, copy=None):
        return np.asarray(to_numpy(obj))

    @staticmethod
    def isdtype(dtype, kind):
        return np.isdtype(np.dtype(dtype), kind)

    @staticmethod
    def arange(*args, device=None, **kwargs):
        return np.arange(*args, **kwargs)

    @staticmethod
    def take(x, indices, /, *, axis=None):
        if not isinstance(x, FeatureSet):
            return np.take(np.asarray(x), indices, axis=axis)
        if axis not in (0, None):
            raise IndexError("a FeatureSet is indexed along images (axis 0) only")
        return x[indices]

    @staticmethod
    def __array_namespace_info__():
        return _NamespaceInfo()


_NAMESPACE = _FeatureSetNamespace()


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

    Notes
    -----
    Arrays and devices (SPEC 10). Fields are kept as given: numpy arrays,
    memmaps or torch tensors, and with scikit-learn's
    ``array_api_dispatch`` on, arrays of any Array API namespace on any
    device. With dispatch on, every numeric field (all but ``classes`` and
    ``image_ids``, which are labels) must share one namespace and one device
    (a ``ValueError`` names the two fields that differ); soft labels
    computed from logits stay in their namespace and on their device
    (float64 where the device has it, like the numpy path); finiteness is
    checked on the device; ``fs[idx]`` indexes every field on its own device
    (scikit-learn's cross-validation reaches this through
    ``__array_namespace__``). Nested lists are taken as numpy arrays (put in
    the namespace of the other fields when dispatch is on); ragged ones are
    a ``ValueError`` naming the field.

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
        self._convert_lists()
        self._check_values()
        if dispatch_enabled():
            self._check_namespaces()
        if self.soft_labels is None and self.logits is not None:
            object.__setattr__(
                self, "soft_labels", _softmax(self.logits, self.temperature)
            )
        self._check_shapes()

    def _array_fields(self):
        """``(name, value)`` of every numeric array field that is set.

        ``classes`` (possibly strings) and ``image_ids`` (host indices) are
        labels, not features: they may live anywhere.
        """
        for name in _PER_IMAGE + ("directions", "priors"):
            value = getattr(self, name)
            if value is not None and name != "image_ids":
                yield name, value
        for name in _PER_IMAGE_MAPS:
            for layer, value in getattr(self, name).items():
                yield f"{name}[{layer!r}]", value

    def _convert_lists(self):
        """Nested lists become numpy arrays (ragged ones: a ValueError).

        With dispatch on, lists given beside arrays of another namespace are
        put in that namespace, on that device (a list has neither).
        """
        listed = []
        for name in _PER_IMAGE + ("directions", "priors", "classes"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, _as_array(name, value))
                listed.append((name, None))
        for name in _PER_IMAGE_MAPS:
            maps = getattr(self, name)
            for layer, value in maps.items():
                if isinstance(value, (list, tuple)):
                    maps[layer] = _as_array(f"{name}[{layer!r}]", value)
                    listed.append((name, layer))
        if not listed or not dispatch_enabled():
            return
        listed_names = {f"{n}[{k!r}]" if k is not None else n for n, k in listed}
        others = [v for n, v in self._array_fields() if n not in listed_names]
        if not others:
            return
        xp, _, dev = get_namespace_and_device(others[0])
        if is_numpy(xp):
            return
        for name, layer in listed:
            if name in ("classes", "image_ids"):
                continue
            if layer is None:
                value = getattr(self, name)
                object.__setattr__(self, name, move_to(value, xp=xp, device=dev))
            else:
                maps = getattr(self, name)
                maps[layer] = move_to(maps[layer], xp=xp, device=dev)

    def _check_namespaces(self):
        """With dispatch on: one namespace and one device for every field.

        A ``ValueError`` names the two fields (and their namespaces or
        devices) that differ.
        """
        first = None
        for name, value in self._array_fields():
            xp, _, dev = get_namespace_and_device(value)
            ns = "numpy" if is_numpy(xp) else namespace_name(xp)
            if first is None:
                first = (name, ns, dev)
                continue
            name0, ns0, dev0 = first
            if ns != ns0:
                raise ValueError(
                    f"every FeatureSet field must use one array namespace; "
                    f"FeatureSet.{name0} is in {ns0} but FeatureSet.{name} is "
                    f"in {ns}"
                )
            if str(dev) != str(dev0):
                raise ValueError(
                    f"every FeatureSet field must be on one device; "
                    f"FeatureSet.{name0} is on {dev0} but FeatureSet.{name} is "
                    f"on {dev}"
                )

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

    def __array_namespace__(self, *, api_version=None):
        """The namespace scikit-learn indexes this container with (dispatch on).

        Not the fields' namespace (see :attr:`namespace` for that): a
        FeatureSet is indexed by image with ``fs[idx]``, whatever its fields'
        namespace; scikit-learn's cross-validation reaches that through it.
        """
        return _NAMESPACE

    @property
    def device(self):
        """The device of the fields (``"cpu"`` for numpy or when empty)."""
        for _, value in self._array_fields():
            if _is_numpy_like(value):
                return "cpu"
            return getattr(value, "device", "cpu")
        return "cpu"

    @property
    def namespace(self):
        """The Array API namespace of the fields, as dispatch sees it.

        numpy when ``array_api_dispatch`` is off or the FeatureSet holds no
        array field.
        """
        values = [value for _, value in self._array_fields()]
        return get_namespace(*values)[0] if values else np

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
        key = _index_key(key, self._n)
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
        shape = (value.shape[0] * value.shape[1], value.shape[2])
        if hasattr(value, "reshape"):  # numpy, memmaps, torch
            return value.reshape(shape)
        xp, _ = get_namespace(value)  # the standard has no method for it
        return xp.reshape(value, shape)

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
