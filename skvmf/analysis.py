"""The whole analysis of the paper in one call: :func:`analyze`.

extract features -> project the sample features (g) -> align every layer's
regional features (h) -> count knowledge points per layer; optionally the
same over training checkpoints (emergence), under a PGD attack, and for
distilled students. The result holds the fitted estimators, per-layer tables
(plain records: JSON as is, CSV with :meth:`AnalysisResult.save`) and the
figures.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs
from scipy.stats import pearsonr

from . import _tables
from ._progress import message, progress
from .alignment import RegionalAligner
from .attacks import embedding_change, pgd_attack
from .extraction import TorchFeatureExtractor
from .features import FeatureSet
from .knowledge import KnowledgePointCounter
from .projection import SampleProjector

__all__ = ["AnalysisResult", "analyze"]


# ---------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class AnalysisResult:
    """Everything :func:`analyze` measured, with its tables and figures.

    Attributes
    ----------
    features : FeatureSet
        The analysed images' features with ``g``, ``directions`` and ``h``.
    labels : ndarray of shape (N,)
        True labels (indices into ``classes``).
    classes : list of str
        Category names.
    layers : list of str
        Analysed layers, shallow to deep.
    extractor, projector, aligner, counter
        The fitted estimators (reusable on new images, e.g. adversarial ones).
    projection : dict
        Quality of the sample projection: the DNN's accuracy on the images,
        the agreement of argmax Q(y|g) with the DNN's prediction, and the
        Pearson correlation of ||g|| with the entropy of P(y|x).
    knowledge : list of dict
        Per layer: knowledge points per image, reliable ones, reliable ratio,
        the held-out-free vote accuracy, mean cos(h, g).
    emergence : list of dict or None
        Per (checkpoint iteration, layer): the same counts.
    emergence_frames : list of dict or None
        Per checkpoint: ``iteration``, ``g`` and ``directions`` in the shared
        frame of :meth:`SampleProjector.fit_sequence`.
    adversarial : list of dict or None
        Per layer: mean 1 - cos and strength change of regions embedded with
        the clean Lambda, knowledge points before and after, adversarial-class
        points and their overlap with the clean points.
    attack : dict or None
        The attack's settings and success rate.
    distillation : list of dict or None
        Per (model, layer): knowledge points of the teacher and each student.
    display_images : ndarray or None
        A few of the analysed images (for mask figures), with
        ``display_index`` their positions in ``features``.
    mean, std : tuple or None
        The images' normalisation (to show pixels).
    timings : dict
        Seconds per step.
    settings : dict
        The parameters of the run.
    """

    features: FeatureSet
    labels: np.ndarray
    classes: list
    layers: list
    extractor: TorchFeatureExtractor
    projector: SampleProjector
    aligner: RegionalAligner
    counter: KnowledgePointCounter
    projection: dict
    knowledge: list
    emergence: list | None = None
    emergence_frames: list | None = None
    adversarial: list | None = None
    attack: dict | None = None
    distillation: list | None = None
    display_images: np.ndarray | None = None
    display_index: np.ndarray | None = None
    mean: tuple | None = None
    std: tuple | None = None
    timings: dict = dataclasses.field(default_factory=dict)
    settings: dict = dataclasses.field(default_factory=dict)

    # -- tables --------------------------------------------------------------
    @property
    def tables(self) -> dict[str, list[dict]]:
        """Every table of the run, by name (only those that were computed)."""
        out = {
            "projection": [self.projection],
            "knowledge_points": self.knowledge,
        }
        for name in ("emergence", "adversarial", "distillation"):
            value = getattr(self, name)
            if value:
                out[name] = value
        if self.attack:
            out["attack"] = [self.attack]
        out["timings"] = [{"step": k, "seconds": v} for k, v in self.timings.items()]
        return out

    def to_dict(self) -> dict:
        """A JSON-serialisable summary: settings, tables and timings."""
        return _jsonable(
            {
                "settings": self.settings,
                "classes": self.classes,
                "layers": self.layers,
                "tables": self.tables,
            }
        )

    def summary(self) -> str:
        """Plain-text tables for a terminal."""
        parts = [
            "Sample projection",
            _tables.to_text([self.projection]),
            "",
            f"Knowledge points per layer (tau = {self.counter.tau})",
            _tables.to_text(_select(self.knowledge, _KNOWLEDGE_COLUMNS)),
        ]
        if self.emergence:
            parts += [
                "",
                "Emergence over training (knowledge points per image)",
                _tables.to_text(_pivot(self.emergence, "mean_count")),
            ]
        if self.adversarial:
            parts += [
                "",
                "Adversarial attack ("
                + ", ".join(f"{k} {v}" for k, v in self.attack.items())
                + ")",
                _tables.to_text(self.adversarial),
            ]
        if self.distillation:
            parts += [
                "",
                "Distillation (knowledge points per image / reliable)",
                _tables.to_text(
                    _select(
                        self.distillation,
                        (
                            "model",
                            "layer",
                            "accuracy",
                            "mean_count",
                            "mean_reliable",
                            "reliable_ratio",
                        ),
                    )
                ),
            ]
        return "\n".join(parts)

    def save(self, directory) -> dict[str, Path]:
        """Write every table as CSV and the summary as ``results.json``.

        Returns the written paths by table name.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, records in self.tables.items():
            paths[name] = directory / f"{name}.csv"
            _tables.to_csv(records, paths[name])
        paths["results"] = directory / "results.json"
        paths["results"].write_text(json.dumps(self.to_dict(), indent=2))
        return paths

    # -- figures -------------------------------------------------------------
    def plot_sample_space(self, view: str = "3d", **kwargs):
        """g of every image with the category directions (colour: true label)."""
        from .plotting import plot_sample_space

        fs = self.features
        return plot_sample_space(
            fs.g, self.labels, fs.directions, classes=self.classes, view=view, **kwargs
        )

    def _rescaled_h(self):
        return {
            layer: self.features.h[layer] / self.counter.scales_[layer]
            for layer in self.layers
        }

    def plot_layer_regions(self, **kwargs):
        """Every layer's regions in the sample space (forward propagation);
        knowledge points coloured by their category."""
        from .plotting import plot_layer_regions

        region_labels = {}
        for layer in self.layers:
            points, cats = self.counter.masks(self.features, layer=layer)
            region_labels[layer] = np.where(points, _class_index(cats, self), -1)
        return plot_layer_regions(
            self._rescaled_h(),
            self.features.directions,
            region_labels=region_labels,
            classes=self.classes,
            **kwargs,
        )

    def plot_knowledge_masks(
        self, layer: str | None = None, n_images: int = 12, **kwargs
    ):
        """Knowledge points of ``layer`` (default the deepest) over images."""
        from .plotting import plot_knowledge_masks

        if self.display_images is None:
            raise ValueError("this result kept no images to draw on")
        layer = layer or self.layers[-1]
        idx = self.display_index[:n_images]
        sub = self.features[idx]
        points, cats = self.counter.masks(sub, layer=layer)
        return plot_knowledge_masks(
            self.display_images[:n_images],
            points,
            _class_index(cats, self),
            self.features.grid,
            labels=self.labels[idx],
            classes=self.classes,
            mean=self.mean,
            std=self.std,
            title=kwargs.pop(
                "title", f"Knowledge points at {layer} (solid border: reliable)"
            ),
            **kwargs,
        )

    def plot_knowledge_counts(self, **kwargs):
        """Knowledge points (all, reliable) per layer."""
        from .plotting import plot_knowledge_counts

        return plot_knowledge_counts(self.knowledge, **kwargs)

    def plot_emergence(self, **kwargs):
        """Knowledge points per layer over training checkpoints."""
        from .plotting import plot_emergence

        if not self.emergence:
            raise ValueError("no checkpoints were analysed (pass checkpoints=)")
        return plot_emergence(self.emergence, **kwargs)

    def plot_sample_evolution(self, **kwargs):
        """g and the category directions at each checkpoint, one shared frame."""
        from .plotting import plot_sample_evolution

        if not self.emergence_frames:
            raise ValueError("no checkpoints were analysed (pass checkpoints=)")
        return plot_sample_evolution(
            self.emergence_frames, self.labels, classes=self.classes, **kwargs
        )

    def plot_adversarial_change(self, **kwargs):
        """How far adversarial regions moved per layer, and their points."""
        from .plotting import plot_adversarial_change

        if not self.adversarial:
            raise ValueError("no attack was analysed (pass attack=)")
        return plot_adversarial_change(self.adversarial, **kwargs)

    def plot_distillation(self, **kwargs):
        """Knowledge points of the teacher and the students per layer."""
        from .plotting import plot_distillation

        if not self.distillation:
            raise ValueError("no students were analysed (pass students=)")
        return plot_distillation(self.distillation, **kwargs)

    def figures(self) -> dict:
        """Every figure this result can draw, by name."""
        makers = {
            "sample_space_3d": lambda: self.plot_sample_space("3d"),
            "sample_space_2d": lambda: self.plot_sample_space("2d"),
            "layer_regions": self.plot_layer_regions,
            "knowledge_counts": self.plot_knowledge_counts,
        }
        if self.display_images is not None:
            makers["knowledge_masks"] = self.plot_knowledge_masks
        if self.emergence:
            makers["emergence"] = self.plot_emergence
            makers["sample_evolution"] = self.plot_sample_evolution
        if self.adversarial:
            makers["adversarial_change"] = self.plot_adversarial_change
        if self.distillation:
            makers["distillation"] = self.plot_distillation
        return {name: make() for name, make in makers.items()}


_KNOWLEDGE_COLUMNS = (
    "layer",
    "mean_count",
    "mean_reliable",
    "reliable_ratio",
    "vote_accuracy",
    "mean_cos_h_g",
)


def _select(records, cols):
    return [{c: r[c] for c in cols if c in r} for r in records]


def _pivot(records, value):
    layers = list(dict.fromkeys(r["layer"] for r in records))
    out = {}
    for r in records:
        row = out.setdefault(r["iteration"], {"iteration": r["iteration"]})
        if "accuracy" in r:
            row["accuracy"] = r["accuracy"]
        row[r["layer"]] = r[value]
    return [
        {k: row.get(k, "") for k in ("iteration", "accuracy", *layers)}
        for row in out.values()
    ]


def _class_index(categories, result):
    """Region categories (labels from the counter's classes_) as indices."""
    classes = list(result.counter.classes_)
    lookup = {c: i for i, c in enumerate(classes)}
    flat = np.asarray(categories).ravel()
    return np.array([lookup.get(c, -1) for c in flat]).reshape(np.shape(categories))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------
def _images_and_labels(images, labels):
    if isinstance(images, torch.utils.data.Dataset):
        from .datasets import as_arrays

        X, y = as_arrays(images)
        if labels is not None:
            y = np.asarray(labels)
        return X.astype(np.float32, copy=False), y
    X = images.detach().cpu().numpy() if torch.is_tensor(images) else np.asarray(images)
    if labels is None:
        raise ValueError("labels are required when images are an array or tensor")
    y = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    if X.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W); got {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(
            f"labels must have shape ({X.shape[0]},), one per image; got {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices; got dtype {y.dtype}")
    return X.astype(np.float32, copy=False), y.astype(np.int64)


def _checkpoint_models(checkpoints, device) -> list[tuple[int, torch.nn.Module]]:
    """(iteration, model) pairs from a directory, paths, or pairs."""
    from .models import list_checkpoints, load_checkpoint

    if checkpoints is None:
        return []
    if isinstance(checkpoints, (str, Path)):
        found = list_checkpoints(checkpoints)
        if not found:
            raise ValueError(f"no skvmf checkpoints found in {str(checkpoints)!r}")
        return [(it, load_checkpoint(path, device=device)) for it, path in found]
    out = []
    for k, item in enumerate(checkpoints):
        if isinstance(item, tuple) and len(item) == 2:
            it, model = item
            if isinstance(model, (str, Path)):
                model = load_checkpoint(model, device=device)
            out.append((int(it), model))
        elif isinstance(item, (str, Path)):
            ckpt = torch.load(item, map_location="cpu", weights_only=True)
            it = int(ckpt.get("iteration", k)) if isinstance(ckpt, dict) else k
            out.append((it, load_checkpoint(item, device=device)))
        elif isinstance(item, torch.nn.Module):
            out.append((k, item))
        else:
            raise ValueError(
                "checkpoints must be a directory, checkpoint paths, models or "
                f"(iteration, model) pairs; item {k} is {type(item).__name__}"
            )
    return sorted(out, key=lambda pair: pair[0])


# ---------------------------------------------------------------------------
# the steps
# ---------------------------------------------------------------------------
def _projection_quality(fs: FeatureSet, projector: SampleProjector, y) -> dict:
    P = fs.soft_labels
    dnn = P.argmax(1)
    q = projector.predict_proba(fs).argmax(1)
    strength = np.linalg.norm(fs.g, axis=1)
    entropy = -(P * np.log(np.clip(P, 1e-300, None))).sum(1)
    r = float(pearsonr(strength, entropy)[0]) if strength.std() > 0 else float("nan")
    return {
        "n_images": int(len(fs)),
        "dnn_accuracy": float((dnn == y).mean()),
        "projection_agreement": float((q == dnn).mean()),
        "pearson_strength_entropy": r,
        "mean_strength_g": float(strength.mean()),
    }


def _layer_table(fs, y, counter, counter_params) -> list[dict]:
    rows = counter.count(fs, y)
    g_unit = fs.g / np.linalg.norm(fs.g, axis=1, keepdims=True)
    for row in rows:
        layer = row["layer"]
        single = KnowledgePointCounter(**{**counter_params, "layer": layer})
        row["vote_accuracy"] = float(single.fit(fs, y).score(fs, y))
        h = np.asarray(fs.h[layer], dtype=np.float64)
        norm = np.maximum(np.linalg.norm(h, axis=-1), 1e-300)
        row["mean_cos_h_g"] = float((np.einsum("nrd,nd->nr", h, g_unit) / norm).mean())
    return rows


def _extract(model, X, layers, extractor_params):
    extractor = TorchFeatureExtractor(model, layers, **extractor_params).fit(X[:1])
    return extractor, extractor.transform(X)


def analyze(
    model: torch.nn.Module,
    images,
    labels=None,
    *,
    layers: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    checkpoints=None,
    attack=None,
    students: Mapping[str, torch.nn.Module] | None = None,
    n_components: int = 3,
    tau: float = 0.4,
    temperature: float = 4.0,
    grid=None,
    projector_params: Mapping | None = None,
    aligner_params: Mapping | None = None,
    counter_params: Mapping | None = None,
    mean=None,
    std=None,
    n_display: int = 24,
    batch_size: int = 64,
    device: str = "cpu",
    n_jobs: int | None = None,
    random_state=0,
    verbose: int = 0,
) -> AnalysisResult:
    """Visualise and count the knowledge points of a CNN, layer by layer.

    Runs the method of Li, Wang and Zhang (NeurIPS 2021) end to end: the
    sample features of ``images`` are projected to a d'-dimensional space in
    which a revised-vMF category model mimics the network's soft labels
    (:class:`SampleProjector`); each layer's regional features are embedded
    in that same space (:class:`RegionalAligner`); regions whose category
    posterior exceeds ``tau`` are knowledge points, reliable when they point
    to the image's label (:class:`KnowledgePointCounter`).

    Optionally, on the same images:

    - ``checkpoints``: the same analysis at every training checkpoint, the
      sample projections sharing one coordinate system (emergence of
      knowledge points during training);
    - ``attack``: a PGD attack; adversarial regions are embedded with the
      clean Lambda and compared with the clean ones per layer;
    - ``students``: distilled students analysed like the teacher.

    Parameters
    ----------
    model : torch.nn.Module
        The trained classifier (the teacher when ``students`` are given).
    images : array-like (N, C, H, W), tensor or Dataset
        The analysed images, normalised as the model expects. A Dataset
        yields (image, label) items.
    labels : array-like of int (N,), optional
        True labels; taken from the Dataset when omitted.
    layers : list of str, optional
        Module names or the paper's aliases (``"conv_53"``...); default the
        paper's five layers of a recognised architecture.
    classes : list of str, optional
        Category names (default the Dataset's ``classes`` or "0".."C-1").
    checkpoints : directory, list of paths, models or (iteration, model), optional
        Training checkpoints for the emergence analysis.
    attack : bool or dict, optional
        ``True`` for :func:`skvmf.attacks.pgd_attack` with epsilon = 8/255 of
        the pixel range when ``std`` is known (0.1 input units otherwise), or
        a dict of its parameters (``epsilon``, ``n_steps``...).
    students : dict of str to torch.nn.Module, optional
        Students to compare with the teacher (same layer names).
    n_components : int, default=3
        Dimension d' of the projected space.
    tau : float, default=0.4
        Knowledge-point threshold.
    temperature : float, default=4.0
        Temperature of the soft labels.
    grid : int or (int, int), optional
        Common region grid (default that of the deepest layer).
    projector_params, aligner_params, counter_params : dict, optional
        Extra parameters of :class:`SampleProjector`,
        :class:`RegionalAligner` and :class:`KnowledgePointCounter`.
    mean, std : sequence of float, optional
        The images' normalisation (default a Dataset's ``mean``/``std``);
        used to draw pixels and to express the attack's epsilon in pixels.
    n_display : int, default=24
        Images kept in the result for mask figures.
    batch_size : int, default=64
        Extraction batch size.
    device : str, default="cpu"
        "cpu" or "cuda".
    n_jobs : int, optional
        Networks (the model, each checkpoint, each student) aligned in
        parallel processes on the CPU (joblib; None means 1, -1 every core).
    random_state : int, default=0
    verbose : int, default=0
        0 silent, 1 progress bars, 2 also step messages.

    Returns
    -------
    AnalysisResult

    Examples
    --------
    >>> import skvmf
    >>> from skvmf.datasets import load_digits_images, subset_per_class
    >>> model, _ = skvmf.train_digits_classifier()  # doctest: +SKIP
    >>> data = subset_per_class(load_digits_images("test"), 20)  # doctest: +SKIP
    >>> result = skvmf.analyze(model, data)  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
    """
    if not 0 < tau < 1:
        raise ValueError(f"tau must be in (0, 1); got {tau!r}")
    X, y = _images_and_labels(images, labels)
    if mean is None:
        mean = getattr(images, "mean", None)
    if std is None:
        std = getattr(images, "std", None)
    if mean is not None and not isinstance(mean, (list, tuple, np.ndarray)):
        mean = None  # a Dataset's method, not a normalisation
    if std is not None and not isinstance(std, (list, tuple, np.ndarray)):
        std = None
    if classes is None:
        classes = getattr(images, "classes", None)
    n_classes = int(max(y.max() + 1, 2))
    classes = (
        [str(c) for c in classes]
        if classes is not None
        else [str(c) for c in range(n_classes)]
    )

    common = {"random_state": random_state, "device": device}
    extractor_params = {
        "grid": grid,
        "temperature": temperature,
        "batch_size": batch_size,
        "device": device,
    }
    projector_params = {
        "n_components": n_components,
        **common,
        **(projector_params or {}),
    }
    aligner_params = {**common, "verbose": verbose, **(aligner_params or {})}
    counter_params = {"tau": tau, **(counter_params or {})}
    timings = {}

    def step(name):
        message(f"[skvmf] {name}", verbose=verbose, level=1)
        return time.perf_counter()

    t = step("extracting and projecting features")
    extractor, fs = _extract(model, X, layers, extractor_params)
    projector = SampleProjector(**projector_params).fit(fs)
    fs = projector.transform(fs)
    layer_names = list(fs.regions)
    projection = _projection_quality(fs, projector, y)
    # every network's projected features; their alignments, the costly part,
    # run together (in parallel with n_jobs)
    jobs = {_MAIN: fs}
    models = _checkpoint_models(checkpoints, device)
    if models:
        sets = [_extract(m, X, layer_names, extractor_params)[1] for _, m in models]
        fitted = SampleProjector(**projector_params).fit_sequence(sets)
        for (iteration, _), s, p in zip(models, sets, fitted):
            jobs[("checkpoint", iteration)] = p.transform(s)
    for name, student in (students or {}).items():
        s = _extract(student, X, layer_names, extractor_params)[1]
        jobs[("student", name)] = (
            SampleProjector(**projector_params).fit(s).transform(s)
        )
    timings["extraction_projection"] = time.perf_counter() - t

    t = step(f"aligning {len(layer_names)} layers of {len(jobs)} network(s)")
    aligners = _fit_aligners(jobs, aligner_params, n_jobs, verbose)
    timings["alignment"] = time.perf_counter() - t

    t = step("counting knowledge points")
    aligned = {key: aligners[key].transform(value) for key, value in jobs.items()}
    aligner = aligners[_MAIN]
    fs = aligned[_MAIN]
    counter = KnowledgePointCounter(**counter_params).fit(fs, y)
    knowledge = _layer_table(fs, y, counter, counter_params)

    result = AnalysisResult(
        features=fs,
        labels=y,
        classes=classes,
        layers=layer_names,
        extractor=extractor,
        projector=projector,
        aligner=aligner,
        counter=counter,
        projection=projection,
        knowledge=knowledge,
        mean=None if mean is None else tuple(float(v) for v in np.ravel(mean)),
        std=None if std is None else tuple(float(v) for v in np.ravel(std)),
        timings=timings,
        settings={
            "n_images": len(y),
            "layers": layer_names,
            "tau": tau,
            "n_components": n_components,
            "temperature": temperature,
            "grid": list(fs.grid),
            "device": str(device),
            "random_state": random_state,
            "aligner": {k: v for k, v in aligner_params.items() if k != "verbose"},
            "counter": counter_params,
        },
    )
    if n_display:
        rng = np.random.default_rng(0)
        # a few images of every class, in class order
        per_class = max(1, n_display // len(classes))
        idx = np.concatenate(
            [
                rng.permutation(np.flatnonzero(y == c))[:per_class]
                for c in range(len(classes))
            ]
        )[:n_display]
        result.display_index = idx
        result.display_images = X[idx]
    if models:
        _emergence(result, models, aligned, y, counter_params)
    if students:
        _distillation(result, students, aligned, y, counter_params)
    timings["counting"] = time.perf_counter() - t
    if attack:
        t = step("adversarial attack")
        _adversarial(
            result,
            model,
            X,
            y,
            {} if attack is True else dict(attack),
            mean,
            std,
            device,
            random_state,
            verbose,
        )
        timings["attack"] = time.perf_counter() - t
    return result


_MAIN = "model"


def _fit_aligner_job(params, fs, n_threads):
    torch.set_num_threads(n_threads)
    return RegionalAligner(**params).fit(fs)


def _fit_aligners(jobs, aligner_params, n_jobs, verbose):
    """A fitted RegionalAligner for every FeatureSet of ``jobs``."""
    n_jobs = effective_n_jobs(n_jobs)
    if n_jobs == 1 or len(jobs) == 1 or str(aligner_params.get("device")) != "cpu":
        return {
            key: RegionalAligner(**aligner_params).fit(fs) for key, fs in jobs.items()
        }
    # whole networks per worker (balanced jobs), one torch thread each; only
    # what the aligner reads travels to the workers
    threads = max(1, torch.get_num_threads() // min(n_jobs, len(jobs)))
    params = {**aligner_params, "verbose": 0}
    slim = {
        key: FeatureSet(
            regions=fs.regions, grid=fs.grid, soft_labels=fs.soft_labels, g=fs.g
        )
        for key, fs in jobs.items()
    }
    fitted = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_fit_aligner_job)(params, fs, threads) for fs in slim.values()
    )
    fitted = progress(
        fitted, verbose=verbose, total=len(slim), desc="aligning", unit="network"
    )
    return dict(zip(slim, fitted))


def _emergence(result, models, aligned, y, counter_params):
    rows, frames = [], []
    for iteration, _ in models:
        fs = aligned[("checkpoint", iteration)]
        accuracy = float((fs.soft_labels.argmax(1) == y).mean())
        counter = KnowledgePointCounter(**counter_params).fit(fs, y)
        for row in counter.count(fs, y):
            rows.append({"iteration": iteration, "accuracy": accuracy, **row})
        frames.append({"iteration": iteration, "g": fs.g, "directions": fs.directions})
    result.emergence = rows
    result.emergence_frames = frames


def _adversarial(result, model, X, y, params, mean, std, device, random_state, verbose):
    # 8/255 of the pixel range: the usual L-inf budget; without the
    # normalisation, epsilon is in input units and must be given
    params.setdefault("epsilon", 8 / 255 if std is not None else 0.1)
    if std is not None:
        params.setdefault("mean", mean)
        params.setdefault("std", std)
    params.setdefault("random_state", random_state)
    params.setdefault("device", device)
    params.setdefault("verbose", verbose)
    attack = pgd_attack(model, X, y, **params)
    fs = result.features
    adv = result.extractor.transform(attack.images)
    adv = result.aligner.transform(result.projector.transform(adv))
    counter = result.counter
    clean_counts = {r["layer"]: r for r in counter.count(fs, y)}
    adv_counts = {r["layer"]: r for r in counter.count(adv, y)}
    rows = []
    for layer in result.layers:
        change = embedding_change(
            fs.h[layer], adv.h[layer], scale=counter.scales_[layer]
        )
        clean_pts, clean_cat = counter.masks(fs, layer=layer)
        adv_pts, adv_cat = counter.masks(adv, layer=layer)
        # points of the adversarial class after the attack, and how many of
        # them sit where the original class had its points before
        target = attack.adv_pred[:, None]
        adv_class = adv_pts & (adv_cat == target) & (attack.adv_pred != y)[:, None]
        overlap = adv_class & clean_pts & (clean_cat == y[:, None])
        n_adv_class = int(adv_class.sum())
        rows.append(
            {
                "layer": layer,
                "mean_one_minus_cos": change["mean_one_minus_cos"],
                "mean_strength_change": change["mean_strength_change"],
                "points_clean": clean_counts[layer]["mean_count"],
                "points_adversarial": adv_counts[layer]["mean_count"],
                "reliable_clean": clean_counts[layer]["mean_reliable"],
                "reliable_adversarial": adv_counts[layer]["mean_reliable"],
                "adversarial_class_points": n_adv_class / len(y),
                "overlap_with_clean_points": (
                    int(overlap.sum()) / n_adv_class if n_adv_class else 0.0
                ),
            }
        )
    result.adversarial = rows
    result.attack = {
        "epsilon": float(params["epsilon"]),
        "n_steps": int(params.get("n_steps", 10)),
        "success_rate": attack.success_rate,
        "accuracy_clean": float((attack.clean_pred == y).mean()),
        "accuracy_adversarial": float((attack.adv_pred == y).mean()),
    }


def _distillation(result, students, aligned, y, counter_params):
    def accuracy(fs):
        return float((fs.soft_labels.argmax(1) == y).mean())

    rows = [
        {"model": "teacher", "accuracy": accuracy(result.features), **r}
        for r in result.knowledge
    ]
    for name in students:
        fs = aligned[("student", name)]
        counter = KnowledgePointCounter(**counter_params).fit(fs, y)
        rows += [
            {"model": name, "accuracy": accuracy(fs), **r}
            for r in _layer_table(fs, y, counter, counter_params)
        ]
    result.distillation = rows
