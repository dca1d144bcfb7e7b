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
import warnings
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs
from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, validate_params

from . import _array_api
from ._numerics.arrays import to_numpy
from ._torch.devices import resolve_device
from ._torch.images import all_images
from ._utils import tables as _tables
from ._utils import warn as _warn
from ._utils.convergence import curve_summary
from ._utils.progress import message, progress
from ._utils.uncertainty import Resampler, mean_of, pearson_of, ratio_of
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
        Quality of the sample projection on the held-out images: the DNN's
        accuracy, the agreement of argmax Q(y|g) with the DNN's prediction
        and the Pearson correlation of ||g|| with the entropy of P(y|x),
        each with ``_low``/``_high`` interval bounds; the agreement on the fit
        images is labelled ``projection_agreement_fit_images``.
    knowledge : list of dict
        Per layer, on the held-out images: knowledge points per image,
        reliable ones, reliable ratio, the vote's accuracy and mean
        cos(h, g), each with its interval (``_low``, ``_high``).
    findings : list of dict
        The paper's properties checked on this run: ``name``, ``statement``,
        ``value``, ``low``, ``high`` (the interval), ``holds`` (whether the
        interval supports the statement; None when it could not be
        evaluated) and ``held_out``.
    diagnostics : list of dict
        One row per (network, layer, stage) with stage in projection /
        importance / alignment: mean first and last loss over the repeats,
        ``converged`` (every repeat's loss fell), ``n_converged`` and
        ``n_repeats``.
    loss_curves : list of dict
        Every fitted stage's whole loss curve, per repeat.
    emergence : list of dict or None
        Per (checkpoint iteration, layer): the same counts.
    emergence_frames : list of dict or None
        Per checkpoint: ``iteration``, ``g`` (held-out images) and
        ``directions`` in the shared frame of
        :meth:`SampleProjector.fit_sequence` (first repeat).
    adversarial : list of dict or None
        Per layer: mean 1 - cos and strength change of regions embedded with
        the clean Lambda, knowledge points before and after, adversarial-class
        points and their overlap with the clean points.
    attack : dict or None
        The attack's settings and success rate.
    faithfulness : Bunch or None
        With ``analyze(faithfulness=True)``: the output of
        :func:`skvmf.faithfulness.compare_faithfulness` on the held-out
        images (``table`` with deletion/insertion areas and their gains over
        a random map, with intervals; ``curves``).
    distillation : list of dict or None
        Per (model, layer): knowledge points of the teacher and each student
        (and, for students, reliable points minus the teacher's).
    features : FeatureSet
        Every image's features with ``g``, ``directions`` and ``h`` from the
        first repeat's estimators (``extractor``, ``projector``, ``aligner``,
        ``counter``); ``fit_index`` and ``eval_index`` say which images they
        were fitted on and which were measured.
    display_images : ndarray or None
        A few held-out images (for mask figures), with ``display_index``
        their positions in ``features``.
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
    findings: list = dataclasses.field(default_factory=list)
    diagnostics: list = dataclasses.field(default_factory=list)
    loss_curves: list = dataclasses.field(default_factory=list)
    fit_index: np.ndarray | None = None
    eval_index: np.ndarray | None = None
    emergence_labels: np.ndarray | None = None
    faithfulness: dict | None = dataclasses.field(default=None, repr=False)
    adversarial_measures: list | None = dataclasses.field(default=None, repr=False)

    # -- tables --------------------------------------------------------------
    @property
    def tables(self) -> dict[str, list[dict]]:
        """Every table of the run, by name (only those that were computed)."""
        out = {
            "findings": self.findings,
            "projection": [self.projection],
            "knowledge_points": self.knowledge,
        }
        for name in ("emergence", "adversarial", "distillation"):
            value = getattr(self, name)
            if value:
                out[name] = value
        if self.attack:
            out["attack"] = [self.attack]
        if self.faithfulness:
            out["faithfulness"] = self.faithfulness["table"]
        out["diagnostics"] = self.diagnostics
        out["timings"] = [{"step": k, "seconds": v} for k, v in self.timings.items()]
        return out

    def to_dict(self) -> dict:
        """A JSON-serialisable summary: settings, tables and timings."""
        return _tables.jsonable(
            {
                "settings": self.settings,
                "classes": self.classes,
                "layers": self.layers,
                "findings": self.findings,
                "diagnostics": self.diagnostics,
                "tables": self.tables,
            }
        )

    def _how_measured(self) -> str:
        """Repeats, interval coverage and which images the figures are on."""
        conf = self.settings.get("confidence", 0.95)
        where = (
            "held-out images"
            if self.settings.get("n_held_out_images")
            else "the fit images (nothing held out)"
        )
        return (
            f"{self.settings.get('n_repeats', 1)} repeat(s), "
            f"{100 * conf:.0f} % intervals over repeats and images, measured on "
            f"{where}"
        )

    def summary(self) -> str:
        """Plain-text tables for a terminal: findings first, then every table
        with its intervals (``value [low, high]``) and the diagnostics."""
        parts = [
            f"Findings ({self._how_measured()})",
            _tables.to_text(_findings_rows(self.findings)),
            "",
            "Sample projection",
            _tables.to_text(_tables.with_intervals([self.projection])),
            "",
            f"Knowledge points per layer (tau = {self.counter.tau})",
            _tables.to_text(self._knowledge_rows()),
        ]
        if self.emergence:
            parts += [
                "",
                "Emergence over training (knowledge points per image)",
                _tables.to_text(
                    _tables.with_intervals(_tables.pivot(self.emergence, "mean_count"))
                ),
            ]
        if self.adversarial:
            parts += [
                "",
                "Adversarial attack ("
                + ", ".join(f"{k} {v}" for k, v in self.attack.items())
                + ")",
                _tables.to_text(
                    _tables.with_intervals(
                        _select(
                            self.adversarial,
                            (
                                "layer",
                                "mean_one_minus_cos",
                                "mean_strength_change",
                                "points_clean",
                                "points_adversarial",
                            ),
                        )
                    )
                ),
            ]
        if self.distillation:
            parts += [
                "",
                "Distillation (knowledge points per image / reliable)",
                _tables.to_text(
                    _tables.with_intervals(
                        _select(
                            self.distillation,
                            (
                                "model",
                                "layer",
                                "accuracy",
                                "mean_count",
                                "mean_reliable",
                                "reliable_minus_teacher",
                            ),
                        )
                    )
                ),
            ]
        parts += [
            "",
            "Diagnostics (loss of every fitted stage, mean over repeats)",
            _tables.to_text(_diagnostics_rows(self.diagnostics)),
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

    def _knowledge_rows(self):
        """The knowledge table's display columns, intervals as ``[low, high]``."""
        return _tables.with_intervals(
            _select(self.knowledge, _tables.KNOWLEDGE_COLUMNS)
        )

    def _repr_html_(self) -> str:
        """HTML summary for Jupyter: the run, the findings and the knowledge
        points per layer (values escaped)."""
        import html

        head = (
            f"<p><strong>skvmf AnalysisResult</strong>: {len(self.labels)} "
            f"images, {len(self.classes)} classes, layers "
            f"{html.escape(', '.join(map(str, self.layers)))}; "
            f"{html.escape(self._how_measured())}.</p>"
        )
        parts = [head]
        if self.findings:
            parts.append(
                _tables.to_html(_findings_rows(self.findings), caption="Findings")
            )
        parts.append(
            _tables.to_html(
                self._knowledge_rows(),
                caption=f"Knowledge points per layer (tau = {self.counter.tau})",
            )
        )
        parts.append(
            "<p><code>result.plot_sample_space(interactive=True)</code>, "
            "<code>plot_layer_regions(interactive=True)</code> and "
            "<code>plot_sample_evolution(interactive=True)</code> draw the 3-D "
            "views to turn; <code>summary()</code> prints every table.</p>"
        )
        return "<div>" + "\n".join(parts) + "</div>"

    # -- figures -------------------------------------------------------------
    def _predicted(self):
        """The network's predicted class index per image (None without
        logits)."""
        logits = self.features.logits
        if logits is None:
            return None
        return np.asarray(logits, dtype=float).argmax(1)

    def _image_ids(self):
        ids = self.features.image_ids
        return np.arange(len(self.labels)) if ids is None else np.asarray(ids)

    def plot_sample_space(
        self, view: str = "3d", *, interactive: bool = False, **kwargs
    ):
        """g of every image with the category directions (colour: true label).

        With ``interactive=True`` a plotly Figure to turn, zoom and hover
        (image, class, predicted class, strength) is returned instead of the
        matplotlib one; ``view`` must then be ``"3d"``.
        """
        fs = self.features
        if interactive:
            from .plotting import plot_sample_space_interactive

            if view != "3d":
                raise ValueError("interactive=True draws the 3-D view only")
            return plot_sample_space_interactive(
                fs.g,
                self.labels,
                fs.directions,
                classes=self.classes,
                predicted=self._predicted(),
                image_ids=self._image_ids(),
                **kwargs,
            )
        from .plotting import plot_sample_space

        return plot_sample_space(
            fs.g, self.labels, fs.directions, classes=self.classes, view=view, **kwargs
        )

    def _rescaled_h(self):
        return {
            layer: self.features.h[layer] / self.counter.scales_[layer]
            for layer in self.layers
        }

    def plot_layer_regions(self, *, interactive: bool = False, **kwargs):
        """Every layer's regions in the sample space (forward propagation);
        knowledge points coloured by their category.

        With ``interactive=True`` a plotly Figure with a layer slider is
        returned; hover shows the image, region, class, predicted class,
        strength and whether the region is a knowledge point.
        """
        from .plotting import plot_layer_regions, plot_layer_regions_interactive

        region_labels = {}
        for layer in self.layers:
            points, cats = self.counter.masks(self.features, layer=layer)
            region_labels[layer] = np.where(points, _class_index(cats, self), -1)
        if interactive:
            return plot_layer_regions_interactive(
                self._rescaled_h(),
                self.features.directions,
                region_labels=region_labels,
                classes=self.classes,
                labels=self.labels,
                predicted=self._predicted(),
                image_ids=self._image_ids(),
                grid=self.features.grid,
                **kwargs,
            )
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

    def plot_sample_evolution(self, *, interactive: bool = False, **kwargs):
        """g and the category directions at each checkpoint, one shared frame.

        With ``interactive=True`` a plotly Figure with a checkpoint slider is
        returned (hover: image, class, closest category direction, strength).
        """
        from .plotting import plot_sample_evolution, plot_sample_evolution_interactive

        if not self.emergence_frames:
            raise ValueError("no checkpoints were analysed (pass checkpoints=)")
        labels = self.labels if self.emergence_labels is None else self.emergence_labels
        if interactive:
            # the frames hold the measured images: their ids, in that order
            ids = self._image_ids()
            if self.emergence_labels is not None and self.eval_index is not None:
                ids = ids[np.asarray(self.eval_index)]
            return plot_sample_evolution_interactive(
                self.emergence_frames,
                labels,
                classes=self.classes,
                image_ids=ids if len(ids) == len(labels) else None,
                **kwargs,
            )
        return plot_sample_evolution(
            self.emergence_frames, labels, classes=self.classes, **kwargs
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

    def plot_findings(self, **kwargs):
        """Every finding's value and interval, coloured by whether it holds."""
        from .plotting import plot_findings

        return plot_findings(self.findings, **kwargs)

    def plot_faithfulness(self, **kwargs):
        """Deletion and insertion curves of the knowledge-point maps and the
        attribution maps (``analyze(faithfulness=True)``)."""
        from .faithfulness import plot_faithfulness

        if not self.faithfulness:
            raise ValueError("no faithfulness was measured (pass faithfulness=True)")
        return plot_faithfulness(self.faithfulness, **kwargs)

    def plot_loss_curves(self, **kwargs):
        """Loss curves of every fitted stage (projection, importance weights,
        alignment), per network, layer and repeat."""
        from .plotting import plot_loss_curves

        return plot_loss_curves(self.loss_curves, **kwargs)

    def figures(self) -> dict:
        """Every figure this result can draw, by name."""
        makers = {
            "findings": self.plot_findings,
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
        if self.faithfulness:
            makers["faithfulness"] = self.plot_faithfulness
        if self.loss_curves:
            makers["loss_curves"] = self.plot_loss_curves
        return {name: make() for name, make in makers.items()}


def _select(records, cols):
    """Columns ``cols`` of every record, with their interval bounds."""
    keep = [k for c in cols for k in (c, f"{c}_low", f"{c}_high")]
    return [{c: r[c] for c in keep if c in r} for r in records]


def _findings_rows(findings):
    """The findings for display: verdict, value and interval."""
    rows = []
    for f in findings:
        verdict = {True: "holds", False: "does NOT hold", None: "not evaluated"}
        rows.append(
            {
                "finding": f["name"],
                "value": "" if f["value"] is None else f["value"],
                "value_low": f["low"],
                "value_high": f["high"],
                "verdict": verdict[f["holds"]],
                "on": "held-out" if f["held_out"] else "fit images",
            }
        )
    return _tables.with_intervals(rows)


def _diagnostics_rows(diagnostics):
    return [
        {
            "network": d["network"],
            "layer": d["layer"],
            "stage": d["stage"],
            "loss_first": d["loss_first"],
            "loss_last": d["loss_last"],
            "fell": f"{d['n_converged']}/{d['n_repeats']}",
            "converged": {True: "yes", False: "NO", None: "-"}[d["converged"]],
        }
        for d in diagnostics
    ]


def _class_index(categories, result):
    """Region categories (labels from the counter's classes_) as indices."""
    classes = list(result.counter.classes_)
    lookup = {c: i for i, c in enumerate(classes)}
    flat = np.asarray(categories).ravel()
    return np.array([lookup.get(c, -1) for c in flat]).reshape(np.shape(categories))


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------
def _images_and_labels(images, labels, model):
    """The images as a finite float32 (N, C, H, W) array and integer labels.

    The images pass the one image checker every network-running function
    uses (:mod:`skvmf._torch.images`: rank, channels against the model's
    first convolution, real dtype, finite values that fit the model's
    dtype), so a bad batch fails here, with the same message as anywhere
    else, before any network runs; labels must be one class index >= 0 per
    image.
    """
    if isinstance(images, torch.utils.data.Dataset):
        from .datasets import as_arrays

        X, y = as_arrays(images)
        y = y if labels is None else to_numpy(labels)
    else:
        if labels is None:
            raise ValueError("labels are required when images are an array or tensor")
        X, y = images, to_numpy(labels)
    X = all_images(X, model, torch.device("cpu")).numpy()
    X = X.astype(np.float32, copy=False)
    if y.shape != (X.shape[0],):
        raise ValueError(
            f"labels must have shape ({X.shape[0]},), one per image; got {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices; got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError(f"labels must be class indices >= 0; got {y.min()}")
    return X, y.astype(np.int64)


def _checkpoint_models(
    checkpoints, device, model=None
) -> list[tuple[int, torch.nn.Module]]:
    """(iteration, model) pairs from a folder, files, models or pairs.

    Files are read as ``skvmf analyze --checkpoints-dir`` reads them
    (:func:`skvmf.sources.load_checkpoints`: ``weights_only``, errors that
    name the file): an skvmf checkpoint rebuilds its own network, plain
    weights are loaded into a copy of ``model``.
    """
    import copy
    import functools

    from .sources import load_checkpoints

    if checkpoints is None:
        return []
    build = None if model is None else functools.partial(copy.deepcopy, model)
    if isinstance(checkpoints, (str, Path)):
        return load_checkpoints(checkpoints, build=build, device=device)
    out, files = [], []
    for k, item in enumerate(checkpoints):
        if isinstance(item, tuple) and len(item) == 2:
            it, net = item
            if isinstance(net, (str, Path)):
                [(_, net)] = load_checkpoints([net], build=build, device=device)
            out.append((int(it), net))
        elif isinstance(item, (str, Path)):
            files.append(item)
        elif isinstance(item, torch.nn.Module):
            out.append((k, item))
        else:
            raise ValueError(
                "checkpoints must be a directory, checkpoint paths, models or "
                f"(iteration, model) pairs; item {k} is {type(item).__name__}"
            )
    if files:
        out += load_checkpoints(files, build=build, device=device)
    return sorted(out, key=lambda pair: pair[0])


def _extract(model, X, layers, extractor_params):
    extractor = TorchFeatureExtractor(model, layers, **extractor_params).fit(X[:1])
    if _array_api.dispatch_enabled():
        # the tensor path: torch images give features on the model's device
        return extractor, extractor.transform(torch.from_numpy(X))
    return extractor, extractor.transform(X)


def _rows(array, index):
    """Rows ``index`` (host integers) of an array of any namespace, taken
    on the array's device."""
    if isinstance(array, np.ndarray):
        return array[index]
    xp, _, dev = _array_api.get_namespace_and_device(array)
    return xp.take(array, xp.asarray(index, device=dev), axis=0)


def _host(array):
    """A host numpy copy of an estimator's output (no-op for numpy): the
    per-image measures that feed the tables."""
    return _array_api.to_numpy(array)


def _host_curve(curve):
    """A loss curve (list of floats or an array of any namespace) as floats."""
    if isinstance(curve, (list, tuple)):
        return np.asarray([float(v) for v in curve], dtype=float)
    return np.asarray(_host(curve), dtype=float)


# ---------------------------------------------------------------------------
# the steps
# ---------------------------------------------------------------------------
_MAIN = "model"
_SAMPLE_LAYER = "sample"  # the diagnostics' layer name of the projection


def _network_name(key) -> str:
    if key == _MAIN:
        return _MAIN
    kind, name = key
    return f"checkpoint {name}" if kind == "checkpoint" else str(name)


def _split(y, held_out, random_state):
    """Fit and evaluation images: a stratified split, or all images twice.

    Every class with two or more images keeps at least one on each side, so
    the projection sees every category and every category is evaluated.
    """
    if held_out == 0:
        everyone = np.arange(len(y))
        return everyone, everyone
    rng = np.random.default_rng(random_state)
    fit, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) < 2:
            fit.extend(idx)  # nothing to hold out without losing the class
            continue
        k = int(round(held_out * len(idx)))
        k = min(max(k, 1), len(idx) - 1)
        held.extend(idx[:k])
        fit.extend(idx[k:])
    fit, held = np.sort(np.asarray(fit)), np.sort(np.asarray(held))
    if len(held) == 0:
        raise ValueError(
            f"held_out={held_out} leaves no held-out image (every class has a "
            "single image); give more images or held_out=0"
        )
    if len(fit) < 3:
        raise ValueError(
            f"held_out={held_out} leaves {len(fit)} image(s) to fit on; at least "
            "3 are needed"
        )
    return fit, held


def _repeat_seeds(random_state, n_repeats) -> list[int]:
    """One independent seed per repeat, from the analysis' seed."""
    base = np.random.SeedSequence(
        int(np.random.RandomState(random_state).randint(0, 2**31 - 1))
        if not isinstance(random_state, (int, np.integer))
        else int(random_state)
    )
    return [int(s.generate_state(1)[0] % (2**31 - 1)) for s in base.spawn(n_repeats)]


def _extract_networks(networks, X, layers, extractor_params, verbose):
    """Every network's FeatureSet of all images, and the main extractor."""
    feats, extractor = {}, None
    for key, net in progress(
        networks.items(),
        verbose=verbose,
        total=len(networks),
        desc="extracting",
        unit="network",
    ):
        ext, fs = _extract(net, X, layers, extractor_params)
        if key == _MAIN:
            extractor, layers = ext, list(fs.regions)
        feats[key] = fs
    return extractor, feats


def _project_repeat(sets, params, seed, n_threads=None):
    """One repeat's projections: {network: fitted SampleProjector}.

    Checkpoints are fitted in one shared frame
    (:meth:`SampleProjector.fit_sequence`), in training order. ``n_threads``
    pins torch's threads in a worker process.
    """
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    params = {**params, "random_state": seed}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # in diagnostics
        for key, fs in sets.items():
            if key == _MAIN or key[0] == "student":
                out[key] = SampleProjector(**params).fit(fs)
        checkpoints = [k for k in sets if k != _MAIN and k[0] == "checkpoint"]
        if checkpoints:
            fitted = SampleProjector(**params).fit_sequence(
                [sets[k] for k in checkpoints]
            )
            out.update(dict(zip(checkpoints, fitted)))
    return out


def _fit_projections(feats, fit_idx, seeds, projector_params, n_jobs):
    """One fitted SampleProjector per (repeat, network), on the fit images;
    the repeats in parallel processes with ``n_jobs`` (only the sample
    features and soft labels travel)."""
    sets = {
        key: FeatureSet(
            sample=_rows(fs.sample, fit_idx),
            soft_labels=_rows(fs.soft_labels, fit_idx),
            classes=fs.classes,
        )
        for key, fs in feats.items()
    }
    n_jobs = min(effective_n_jobs(n_jobs), len(seeds))
    on_device = str(projector_params.get("device", "cpu")) != "cpu"
    if n_jobs == 1 or on_device or _array_api.dispatch_enabled():
        per_repeat = [_project_repeat(sets, projector_params, s) for s in seeds]
    else:
        threads = max(1, torch.get_num_threads() // n_jobs)
        per_repeat = Parallel(n_jobs=n_jobs)(
            delayed(_project_repeat)(sets, projector_params, s, threads) for s in seeds
        )
    return {
        (r, key): proj
        for r, fitted in enumerate(per_repeat)
        for key, proj in fitted.items()
    }


def _fit_aligner_job(params, fs, n_threads):
    torch.set_num_threads(n_threads)
    return RegionalAligner(**params).fit(fs)


def _fit_aligner_remote(params, regions, grid, soft_labels, g):
    """One alignment on a Dask worker: one torch thread per task (a worker
    runs as many tasks as it has threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fs = FeatureSet(regions=regions, grid=grid, soft_labels=soft_labels, g=g)
        return RegionalAligner(**params).fit(fs)
    finally:
        torch.set_num_threads(before)


def _dask_client(scheduler):
    """A ``distributed.Client`` for ``scheduler`` (a Client, or the address
    of a running scheduler), and whether this call opened it."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError(
            "scheduler= runs the alignments on a Dask cluster and needs the "
            "'distributed' package: pip install 'skvmf[dask]'"
        ) from exc
    if isinstance(scheduler, Client):
        return scheduler, False
    if not isinstance(scheduler, str) or not scheduler:
        raise ValueError(
            "scheduler must be a distributed.Client or the address of a Dask "
            f"scheduler (e.g. 'tcp://10.0.0.5:8786'); got {scheduler!r}"
        )
    return Client(scheduler), True


def _fit_aligners_dask(jobs, params_of, scheduler, verbose):
    """The alignments as tasks of a Dask cluster.

    The regional features, the large inputs, are scattered once per network
    (every repeat of a network aligns the same regions with another seed);
    each task then receives only its small g and soft labels.
    """
    from distributed import as_completed

    client, opened = _dask_client(scheduler)
    try:
        shared = {}
        for (_, key), fs in jobs.items():
            if key not in shared:
                shared[key] = client.scatter(dict(fs.regions), broadcast=False)
        futures = {
            client.submit(
                _fit_aligner_remote,
                {**params_of(job), "verbose": 0, "n_jobs": None},
                shared[job[1]],
                fs.grid,
                np.asarray(fs.soft_labels),
                np.asarray(fs.g),
                key=f"skvmf-align-{job[0]}-{_slug_key(job[1])}-{id(jobs)}",
                pure=False,
            ): job
            for job, fs in jobs.items()
        }
        fitted = {}
        for future in progress(
            as_completed(futures),
            verbose=verbose,
            total=len(futures),
            desc="aligning (dask)",
            unit="network",
        ):
            fitted[futures[future]] = future.result()
        return {job: fitted[job] for job in jobs}
    finally:
        if opened:
            client.close()


def _slug_key(key) -> str:
    return "-".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))


def _fit_aligners(jobs, params_of, n_jobs, verbose, scheduler=None):
    """A fitted RegionalAligner for every FeatureSet of ``jobs``.

    ``params_of(key)`` gives the aligner's parameters of a job. With a
    ``scheduler``, the fits run on that Dask cluster; else in ``n_jobs``
    local processes (joblib, which also follows an active
    ``joblib.parallel_backend``).
    """
    if scheduler is not None:
        return _fit_aligners_dask(jobs, params_of, scheduler, verbose)
    n_jobs = effective_n_jobs(n_jobs)
    devices = {str(params_of(key).get("device", "cpu")) for key in jobs}
    # the tensor path stays in this process: its features live on a device
    # (and dispatch is this process' configuration)
    tensors = _array_api.dispatch_enabled()
    if n_jobs == 1 or len(jobs) == 1 or devices != {"cpu"} or tensors:
        return {
            key: RegionalAligner(**params_of(key)).fit(fs) for key, fs in jobs.items()
        }
    # whole networks per worker (balanced jobs), one torch thread each; only
    # what the aligner reads travels to the workers
    threads = max(1, torch.get_num_threads() // min(n_jobs, len(jobs)))
    slim = {
        key: FeatureSet(
            regions=fs.regions, grid=fs.grid, soft_labels=fs.soft_labels, g=fs.g
        )
        for key, fs in jobs.items()
    }
    fitted = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_fit_aligner_job)({**params_of(key), "verbose": 0}, fs, threads)
        for key, fs in slim.items()
    )
    fitted = progress(
        fitted, verbose=verbose, total=len(slim), desc="aligning", unit="network"
    )
    return dict(zip(slim, fitted))


# a KL divergence at or below this per image starts at its minimum: nothing
# to lower (an untrained network's uniform soft labels)
_KL_AT_ZERO = 1e-4


def _diagnostics(projectors, aligners, layers, n_fit=1):
    """Loss curves of every fitted stage: (curves, aggregated table).

    ``curves`` has one record per (network, layer, stage, repeat) with the
    whole curve; the table one row per (network, layer, stage) with the mean
    first and last loss over repeats and whether every repeat's loss fell.
    """
    curves = []
    for (r, key), proj in projectors.items():
        curves.append(
            {
                "network": _network_name(key),
                "layer": _SAMPLE_LAYER,
                "stage": "projection",
                "repeat": r,
                "curve": list(_host_curve(proj.loss_curve_)),
            }
        )
    for (r, key), al in aligners.items():
        for layer in layers:
            for stage, attr in (
                ("importance", "importance_loss_curve_"),
                ("alignment", "loss_curve_"),
            ):
                curves.append(
                    {
                        "network": _network_name(key),
                        "layer": layer,
                        "stage": stage,
                        "repeat": r,
                        "curve": list(_host_curve(getattr(al, attr)[layer])),
                    }
                )
    # the projection's loss is a sum over the fit images, the importance
    # weights' a mean; the alignment's (with -cos terms) has no floor
    at_zero = {"projection": _KL_AT_ZERO * n_fit, "importance": _KL_AT_ZERO}
    groups = {}
    for rec in curves:
        s = curve_summary(rec["curve"], at_zero.get(rec["stage"]))
        groups.setdefault((rec["network"], rec["layer"], rec["stage"]), []).append(s)
    table = []
    for (network, layer, stage), summaries in groups.items():
        verdicts = [s["converged"] for s in summaries]
        judged = [v for v in verdicts if v is not None]
        table.append(
            {
                "network": network,
                "layer": layer,
                "stage": stage,
                "loss_first": float(np.mean([s["loss_first"] for s in summaries])),
                "loss_last": float(np.mean([s["loss_last"] for s in summaries])),
                "converged": all(judged) if judged else None,
                "n_converged": int(sum(judged)),
                "n_repeats": len(summaries),
            }
        )
    return curves, table


def _warn_diagnostics(table) -> None:
    """One ConvergenceWarning listing every stage whose loss did not fall."""
    bad = [row for row in table if row["converged"] is False]
    if not bad:
        return
    lines = "; ".join(
        f"{row['stage']} of {row['network']} at {row['layer']} "
        f"({row['loss_first']:.4g} -> {row['loss_last']:.4g}, "
        f"fell in {row['n_converged']}/{row['n_repeats']} repeats)"
        for row in bad[:10]
    )
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    _warn.warn(
        f"{len(bad)} fitted stage(s) did not lower their loss: {lines}{more}; "
        "see result.diagnostics",
        ConvergenceWarning,
    )


def _entropy(P):
    return -(P * np.log(np.clip(P, 1e-300, None))).sum(1)


def _projection_measures(fs, projector, y):
    """Per-image agreement with the DNN, ||g|| and entropy of P(y|x)."""
    P = np.asarray(_host(fs.soft_labels), dtype=np.float64)
    dnn = P.argmax(1)
    q = _host(projector.predict_proba(fs)).argmax(1)
    return {
        "agree": (q == dnn).astype(float),
        "strength": np.linalg.norm(np.asarray(_host(fs.g), dtype=np.float64), axis=1),
        "entropy": _entropy(P),
        "dnn_correct": (dnn == y).astype(float),
    }


def _layer_measures(fit_fs, y_fit, eval_fs, y_eval, layers, counter_params):
    """Per layer and image of ``eval_fs``: knowledge points, reliable ones,
    the vote's correctness and mean cos(h, g), with counters fitted on
    ``fit_fs`` (their strength scales come from the fit images)."""
    counter = KnowledgePointCounter(**counter_params).fit(fit_fs, y_fit)
    on_host = isinstance(eval_fs.g, np.ndarray)
    if on_host:
        g = np.asarray(eval_fs.g, dtype=np.float64)
        g_unit = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-300)
    out = {}
    for layer in layers:
        points, cats = (_host(a) for a in counter.masks(eval_fs, layer=layer))
        single = KnowledgePointCounter(**{**counter_params, "layer": layer})
        vote = _host(single.fit(fit_fs, y_fit).predict(eval_fs))
        if on_host:
            h = np.asarray(eval_fs.h[layer], dtype=np.float64)
            norm = np.maximum(np.linalg.norm(h, axis=-1), 1e-300)
            cos = (np.einsum("nrd,nd->nr", h, g_unit) / norm).mean(1)
        else:  # the (N, R, d') embedding stays on its device; (N,) comes back
            cos = _host(_mean_cos_xp(eval_fs.h[layer], eval_fs.g))
        out[layer] = {
            "count": points.sum(1).astype(float),
            "reliable": (points & (cats == y_eval[:, None])).sum(1).astype(float),
            "vote": (vote == y_eval).astype(float),
            "cos_h_g": cos,
        }
    return counter, out


def _mean_cos_xp(h, g):
    """Per image, the mean over regions of cos(h_r, g), in h's namespace
    (the numpy path's formula: norms floored at 1e-300, in float64 where the
    device has it)."""
    xp, _, dev = _array_api.get_namespace_and_device(h, g)
    dtype = _array_api.max_float_dtype(xp, dev)
    h, g = xp.astype(h, dtype), xp.astype(g, dtype)
    floor = max(1e-300, float(xp.finfo(dtype).tiny))
    g_norm = xp.linalg.vector_norm(g, axis=1, keepdims=True)
    g_unit = g / xp.clip(g_norm, min=floor)
    h_norm = xp.clip(xp.linalg.vector_norm(h, axis=-1), min=floor)
    cos = xp.sum(h * g_unit[:, None, :], axis=-1) / h_norm
    return xp.mean(cos, axis=1)


def _stack(per_repeat, *path):
    """(R, n) array of one per-image measure across repeats."""
    rows = []
    for item in per_repeat:
        for key in path:
            item = item[key]
        rows.append(item)
    return np.stack(rows)


def _with_interval(row, name, est):
    row[name] = est["value"]
    row[f"{name}_low"] = est["low"]
    row[f"{name}_high"] = est["high"]
    return row


def _count_row(rs, measures, layer):
    """Counts, reliable counts and their ratio of one layer, with intervals."""
    count = _stack(measures, layer, "count")
    reliable = _stack(measures, layer, "reliable")
    row = {"layer": layer}
    _with_interval(row, "mean_count", rs.estimate(mean_of, count))
    _with_interval(row, "mean_reliable", rs.estimate(mean_of, reliable))
    _with_interval(row, "reliable_ratio", rs.estimate(ratio_of, reliable, count))
    return row


def _finding(name, statement, est, holds_if, held_out, note=None):
    """One entry of ``findings``; ``holds_if`` judges the interval."""
    if est is None or est["low"] is None:
        holds = None
    else:
        holds = bool(holds_if(est["low"], est["high"]))
    entry = {
        "name": name,
        "statement": statement,
        "value": None if est is None else est["value"],
        "low": None if est is None else est["low"],
        "high": None if est is None else est["high"],
        "holds": holds,
        "held_out": bool(held_out),
        "note": note or "",
    }
    return entry


def _above(threshold):
    return lambda low, high: low > threshold


def _below(threshold):
    return lambda low, high: high < threshold


def _intermediate_pair(iterations):
    """The two checkpoints of the emergence finding: the first and the last
    strictly between the first and last checkpoints when there are two such,
    else the first checkpoint and the one in between, else None."""
    its = sorted(iterations)
    inner = its[1:-1]
    if len(inner) >= 2:
        return inner[0], inner[-1]
    if len(inner) == 1:
        return its[0], inner[0]
    return None


# ---------------------------------------------------------------------------
# the entry point
# ---------------------------------------------------------------------------
def _warn_low_tau(tau, n_classes):
    """Every region is a knowledge point when ``tau <= 1/C``: say so."""
    if tau <= 1 / n_classes:
        _warn.warn(
            f"tau={tau} is at or below 1/C = {1 / n_classes:.3g} for {n_classes} "
            "classes: the largest posterior of every region exceeds it, so every "
            "region is a knowledge point and the counts say nothing; use a tau "
            "above 1/C",
            UserWarning,
        )


@dataclasses.dataclass
class _Plan:
    """What one :func:`analyze` run does: its images, split, seeds and the
    parameters of every stage, fixed before any network runs."""

    X: np.ndarray
    y: np.ndarray
    classes: list
    mean: object
    std: object
    fit_idx: np.ndarray
    eval_idx: np.ndarray
    seeds: list
    extractor_params: dict
    projector_params: dict
    aligner_params: dict
    counter_params: dict
    run: dict  # n_repeats, held_out, n_bootstrap, confidence, random_state...

    @property
    def held_out(self) -> bool:
        return self.run["held_out"] > 0

    def resampler(self) -> Resampler:
        """The bootstrap over repeats and held-out images."""
        r = self.run
        return Resampler(
            r["n_repeats"],
            len(self.eval_idx),
            r["n_bootstrap"],
            r["confidence"],
            r["random_state"],
        )


def _plan(model, images, labels, classes, mean, std, stage_params, run):
    """Step 1: check the images, split them, draw the repeats' seeds and
    fill in every stage's parameters."""
    X, y = _images_and_labels(images, labels, model)
    mean, std = _normalisation(images, mean, std)
    if classes is None:
        classes = getattr(images, "classes", None)
    n_classes = int(max(y.max() + 1, 2, len(classes) if classes is not None else 0))
    classes = [str(c) for c in (classes if classes is not None else range(n_classes))]
    _warn_low_tau(run["tau"], n_classes)
    fit_idx, eval_idx = _split(y, run["held_out"], run["random_state"])
    device, verbose = run["device"], run["verbose"]
    projector_params = {
        "n_components": run["n_components"],
        "device": device,
        # restarts: the projection's objective has local optima (single
        # starts merged two digits in half the seeds); the lowest-loss start
        # is kept, a criterion blind to the findings
        "n_init": 3,
        **(stage_params["projector"] or {}),
    }
    projector_params.pop("random_state", None)  # one seed per repeat
    aligner_params = {
        "device": device,
        "verbose": verbose,
        # every other fit image when there are fewer than the default 100
        "n_candidates": min(100, max(1, len(fit_idx) - 1)),
        **(stage_params["aligner"] or {}),
    }
    aligner_params.pop("random_state", None)
    return _Plan(
        X=X,
        y=y,
        classes=classes,
        mean=mean,
        std=std,
        fit_idx=fit_idx,
        eval_idx=eval_idx,
        seeds=_repeat_seeds(run["random_state"], run["n_repeats"]),
        extractor_params=stage_params["extractor"],
        projector_params=projector_params,
        aligner_params=aligner_params,
        counter_params={"tau": run["tau"], **(stage_params["counter"] or {})},
        run=run,
    )


def _floats(values):
    """A tuple of floats, or None."""
    return None if values is None else tuple(float(v) for v in np.ravel(values))


def _networks(model, checkpoints, students, device) -> dict:
    """Step 2: the analysed networks by key: the model, its checkpoints
    (``("checkpoint", iteration)``) and the students (``("student", name)``)."""
    networks = {_MAIN: model}
    for iteration, net in _checkpoint_models(checkpoints, device, model):
        networks[("checkpoint", iteration)] = net
    for name, student in (students or {}).items():
        networks[("student", str(name))] = student
    return networks


def _fit_stages(plan, feats, layer_names, n_jobs, scheduler, step, timings):
    """Step 3: every repeat's projections and aligners, fitted quietly on the
    fit images (the diagnostics report the stages' health afterwards)."""
    n_repeats = plan.run["n_repeats"]
    t = step(f"projecting ({n_repeats} repeat(s))")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        projectors = _fit_projections(
            feats, plan.fit_idx, plan.seeds, plan.projector_params, n_jobs
        )
        timings["projection"] = time.perf_counter() - t
        jobs = {
            (r, key): proj.transform(feats[key][plan.fit_idx])
            for (r, key), proj in projectors.items()
        }
        t = step(
            f"aligning {len(layer_names)} layers of {len(feats)} network(s), "
            f"{n_repeats} repeat(s)"
        )
        aligners = _fit_aligners(
            jobs,
            lambda key: {**plan.aligner_params, "random_state": plan.seeds[key[0]]},
            n_jobs,
            plan.run["verbose"],
            scheduler,
        )
        timings["alignment"] = time.perf_counter() - t
    return projectors, aligners


def _measure(plan, feats, projectors, aligners, layer_names):
    """Step 4: embed every image with each repeat's fitted estimators, fit
    the counters on the fit images and measure on the held-out ones."""
    embedded = {
        (r, key): aligners[(r, key)].transform(proj.transform(feats[key]))
        for (r, key), proj in projectors.items()
    }
    fit_idx, eval_idx = plan.fit_idx, plan.eval_idx
    y_fit, y_eval = plan.y[fit_idx], plan.y[eval_idx]
    measures, counters = {}, {}
    for (r, key), fs in embedded.items():
        counter, per_layer = _layer_measures(
            fs[fit_idx], y_fit, fs[eval_idx], y_eval, layer_names, plan.counter_params
        )
        counters[(r, key)] = counter
        measures[(r, key)] = {
            "projection": _projection_measures(
                fs[eval_idx], projectors[(r, key)], y_eval
            ),
            "projection_fit": _projection_measures(
                fs[fit_idx], projectors[(r, key)], y_fit
            ),
            "layers": per_layer,
        }
    return embedded, measures, counters


def _knowledge_table(rs, main, layer_names):
    """Step 5: per layer, counts, reliable ratio, vote accuracy and mean
    cos(h, g) of the main network, each with its interval."""
    knowledge = []
    for layer in layer_names:
        row = _count_row(rs, [m["layers"] for m in main], layer)
        for name, key in (("vote_accuracy", "vote"), ("mean_cos_h_g", "cos_h_g")):
            _with_interval(
                row, name, rs.estimate(mean_of, _stack(main, "layers", layer, key))
            )
        knowledge.append(row)
    return knowledge


def _settings(plan, layer_names, fs, scheduler):
    """The run's settings as recorded in the result and the report."""
    run, n_eval = plan.run, len(plan.eval_idx)
    return {
        "n_images": len(plan.y),
        "n_fit_images": len(plan.fit_idx),
        "n_held_out_images": n_eval if plan.held_out else 0,
        "held_out": run["held_out"],
        "n_repeats": run["n_repeats"],
        "repeat_seeds": plan.seeds,
        "n_bootstrap": run["n_bootstrap"],
        "confidence": run["confidence"],
        "layers": layer_names,
        "tau": run["tau"],
        "n_components": run["n_components"],
        "temperature": plan.extractor_params["temperature"],
        "grid": list(fs.grid),
        "device": str(run["device"]),
        "array_api_dispatch": bool(run.get("tensors", False)),
        "scheduler": None if scheduler is None else str(scheduler),
        "random_state": run["random_state"],
        "projector": dict(plan.projector_params),
        "aligner": {k: v for k, v in plan.aligner_params.items() if k != "verbose"},
        "counter": plan.counter_params,
    }


def _result(plan, extractor, fitted, layer_names, tables, scheduler):
    """The result of the first repeat's main network, with every table."""
    projectors, aligners, counters, embedded, _ = fitted
    fs = embedded[(0, _MAIN)]
    projection, knowledge = tables
    return AnalysisResult(
        features=fs,
        labels=plan.y,
        classes=plan.classes,
        layers=layer_names,
        extractor=extractor,
        projector=projectors[(0, _MAIN)],
        aligner=aligners[(0, _MAIN)],
        counter=counters[(0, _MAIN)],
        projection=projection,
        knowledge=knowledge,
        mean=_floats(plan.mean),
        std=_floats(plan.std),
        settings=_settings(plan, layer_names, fs, scheduler),
        fit_index=plan.fit_idx,
        eval_index=plan.eval_idx,
    )


def _optional_analyses(result, plan, networks, fitted, rs, options, step):
    """Step 6: emergence over checkpoints, students, the attack and the
    faithfulness of the maps, each when asked for."""
    projectors, aligners, counters, embedded, measures = fitted
    timings, run = result.timings, plan.run
    y_eval, eval_idx = plan.y[plan.eval_idx], plan.eval_idx

    def over_repeats(key):
        return [measures[(r, key)] for r in range(run["n_repeats"])]

    checkpoint_keys = [k for k in networks if k != _MAIN and k[0] == "checkpoint"]
    if checkpoint_keys:
        _emergence(result, rs, checkpoint_keys, over_repeats, embedded, y_eval)
    student_keys = [k for k in networks if k != _MAIN and k[0] == "student"]
    if student_keys:
        _distillation(result, rs, student_keys, over_repeats, y_eval)
    model, device = networks[_MAIN], run["device"]
    if options["attack"]:
        t = step("adversarial attack")
        attack = options["attack"]
        _adversarial(
            result,
            rs,
            model,
            plan.X[eval_idx],
            y_eval,
            {} if attack is True else dict(attack),
            projectors,
            aligners,
            counters,
            embedded,
            eval_idx,
            (plan.mean, plan.std, device, run["random_state"], run["verbose"]),
        )
        timings["attack"] = time.perf_counter() - t
    if options["faithfulness"]:
        t = step("faithfulness of the maps")
        faith = options["faithfulness"]
        result.faithfulness = _faithfulness(
            result,
            model,
            plan.X[eval_idx],
            {} if faith is True else dict(faith),
            device,
            run["random_state"],
        )
        timings["faithfulness"] = time.perf_counter() - t


_ANALYZE_PARAMS = {
    "model": [torch.nn.Module],
    "images": ["array-like", torch.Tensor, torch.utils.data.Dataset],
    "labels": [None, "array-like", torch.Tensor],
    "layers": [None, list, tuple],
    "classes": [None, list, tuple],
    "checkpoints": [None, str, Path, list, tuple],
    "attack": ["boolean", dict, None],
    "students": [None, Mapping],
    "faithfulness": ["boolean", dict],
    "n_components": [Interval(Integral, 1, None, closed="left")],
    "tau": [Interval(Real, 0, 1, closed="neither")],
    "temperature": [Interval(Real, 0, None, closed="neither")],
    "grid": [None, Interval(Integral, 1, None, closed="left"), tuple, list],
    "n_repeats": [Interval(Integral, 1, None, closed="left")],
    "held_out": [Interval(Real, 0, 1, closed="left")],
    "n_bootstrap": [Interval(Integral, 100, None, closed="left")],
    "confidence": [Interval(Real, 0, 1, closed="neither")],
    "projector_params": [None, Mapping],
    "aligner_params": [None, Mapping],
    "counter_params": [None, Mapping],
    "mean": [None, "array-like"],
    "std": [None, "array-like"],
    "n_display": [Interval(Integral, 0, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "device": [str, torch.device],
    "array_api_dispatch": ["boolean", None],
    "n_jobs": [None, Integral],
    "scheduler": [None, str, object],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}


@validate_params(_ANALYZE_PARAMS, prefer_skip_nested_validation=True)
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
    faithfulness=False,
    n_components: int = 3,
    tau: float = 0.4,
    temperature: float = 4.0,
    grid=None,
    n_repeats: int = 3,
    held_out: float = 0.5,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    projector_params: Mapping | None = None,
    aligner_params: Mapping | None = None,
    counter_params: Mapping | None = None,
    mean=None,
    std=None,
    n_display: int = 24,
    batch_size: int = 64,
    device: str = "cpu",
    array_api_dispatch: bool | None = None,
    n_jobs: int | None = None,
    scheduler=None,
    random_state=0,
    verbose: int = 0,
) -> AnalysisResult:
    """Visualise and count the knowledge points of a CNN, layer by layer.

    Runs the method of Li, Wang and Zhang (NeurIPS 2021) end to end: the
    sample features of the images are projected to a d'-dimensional space in
    which a revised-vMF category model mimics the network's soft labels
    (:class:`SampleProjector`); each layer's regional features are embedded
    in that same space (:class:`RegionalAligner`); regions whose category
    posterior exceeds ``tau`` are knowledge points, reliable when they point
    to the image's label (:class:`KnowledgePointCounter`).

    Every figure is a measurement with its uncertainty:

    - the images are split (stratified by label) into *fit* images, on
      which the projection, the aligners and the counters are fitted, and
      *held-out* images, on which every figure is measured (``held_out=0``
      measures on the fit images, and the result says so);
    - what is random (the projection's and the aligners' seeds) is repeated
      ``n_repeats`` times;
    - every headline figure gets a ``confidence`` interval from a bootstrap
      that draws a repeat and resamples the held-out images together;
    - the paper's properties are checked as :attr:`AnalysisResult.findings`
      (value, interval, whether the interval supports the paper's
      direction), and every fitted stage's loss curve is kept, with a
      :class:`~sklearn.exceptions.ConvergenceWarning` for any that did not
      fall (:attr:`AnalysisResult.diagnostics`).

    Optionally, on the same images:

    - ``checkpoints``: the same analysis at every training checkpoint, the
      sample projections sharing one coordinate system (emergence of
      knowledge points during training);
    - ``attack``: a PGD attack on the held-out images; adversarial regions
      are embedded with the clean Lambda and compared with the clean ones
      per layer;
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
        Training checkpoints for the emergence analysis, read as ``skvmf
        analyze --checkpoints-dir`` reads them
        (:func:`skvmf.sources.load_checkpoints`): skvmf checkpoints rebuild
        their network; files of plain weights (``state_dict``) are loaded
        into a copy of ``model``. The iteration is the file's own, else the
        number in its name.
    attack : bool or dict, optional
        ``True`` for :func:`skvmf.attacks.pgd_attack` with epsilon = 8/255 of
        the pixel range when ``std`` is known (0.1 input units otherwise), or
        a dict of its parameters (``epsilon``, ``n_steps``...).
    students : dict of str to torch.nn.Module, optional
        Students to compare with the teacher (same layer names).
    faithfulness : bool or dict, default=False
        Also score, on the held-out images, the knowledge-point maps of the
        two deepest layers against Grad-CAM (deepest layer) and guided
        backpropagation (ReLU networks) and a random map, by deletion and
        insertion curves (:func:`skvmf.faithfulness.compare_faithfulness`;
        a dict passes its parameters, e.g. ``{"steps": 16}``).
    n_components : int, default=3
        Dimension d' of the projected space.
    tau : float, default=0.4
        Knowledge-point threshold (a warning when it is at most 1/C: every
        region is then a point).
    temperature : float, default=4.0
        Temperature of the soft labels.
    grid : int or (int, int), optional
        Common region grid (default that of the deepest layer).
    n_repeats : int, default=3
        Repeats of everything random (projection and alignment seeds).
    held_out : float in [0, 1), default=0.5
        Fraction of the images (per class) held out of every fit and used to
        measure; 0 measures on the fit images.
    n_bootstrap : int, default=1000
        Bootstrap draws of the intervals.
    confidence : float, default=0.95
        Coverage of the intervals.
    projector_params, aligner_params, counter_params : dict, optional
        Extra parameters of :class:`SampleProjector`,
        :class:`RegionalAligner` and :class:`KnowledgePointCounter`.
    mean, std : sequence of float, optional
        The images' normalisation (default a Dataset's ``mean``/``std``);
        used to draw pixels and to express the attack's epsilon in pixels.
    n_display : int, default=24
        Held-out images kept in the result for mask figures.
    batch_size : int, default=64
        Extraction batch size.
    device : str or torch.device, default="cpu"
        Where the networks and the estimators run: ``"cpu"``, ``"cuda"``,
        ``"cuda:1"``... Off the CPU the analysis takes the tensor path (see
        ``array_api_dispatch``).
    array_api_dispatch : bool, optional
        Run the estimators on torch tensors under scikit-learn's
        ``array_api_dispatch`` (the *tensor path*): the features are
        extracted as tensors on ``device`` and the projection, the
        alignment and the counting fit, transform and predict there, with no
        copy of the features to the host; only the per-image measures
        behind the tables come back (vectors of N values), and at the end
        the result's estimators and features are moved to numpy
        (:func:`skvmf.devices.move_estimator`), so the result is the same
        kind of object either way. ``None`` (default): the tensor path
        when ``device`` is not the CPU, the numpy path (today's numbers,
        e.g. the demo's findings) on the CPU. ``True`` forces the tensor
        path on the CPU too (it equals the numpy path within floating-point
        rounding: see the tests); ``False`` keeps numpy features with the
        estimators computing on ``device`` internally. The optional
        ``attack`` and ``faithfulness`` analyses run on the numpy path
        with the networks on ``device``. The tensor path runs in this
        process (``n_jobs`` is ignored for it) and cannot be combined with
        ``scheduler``.
    n_jobs : int, optional
        Alignments (one per network and repeat) run in parallel processes on
        the CPU (joblib; None means 1, -1 every core). Inside
        ``joblib.parallel_backend("dask")`` they run on that Dask cluster.
    scheduler : str or distributed.Client, optional
        Run the alignments (one task per network and repeat) on a Dask
        cluster: the address of its scheduler (``"tcp://host:8786"``) or a
        connected ``distributed.Client``. The regional features travel to the
        workers once per network. The results equal a local run's (each
        task uses one torch thread). Needs the ``distributed`` package.
    random_state : int, default=0
        Seed of the split, of the repeats' seeds and of the bootstrap.
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
    >>> data = subset_per_class(load_digits_images("test"), 24)  # doctest: +SKIP
    >>> result = skvmf.analyze(model, data)  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
    """
    resolve_device(device)  # a missing GPU named before any work
    tensors = _tensor_path(device, array_api_dispatch)
    if tensors and scheduler is not None:
        raise ValueError(
            "scheduler= sends numpy features to Dask workers, but the tensor "
            f"path (device={str(device)!r}, array_api_dispatch="
            f"{array_api_dispatch}) keeps them on the device; give "
            "array_api_dispatch=False to use the scheduler"
        )
    run = {
        "tensors": tensors,
        "tau": tau,
        "n_components": n_components,
        "n_repeats": n_repeats,
        "held_out": held_out,
        "n_bootstrap": n_bootstrap,
        "confidence": confidence,
        "device": device,
        "random_state": random_state,
        "verbose": verbose,
    }
    stage_params = {
        "extractor": {
            "grid": grid,
            "temperature": temperature,
            "batch_size": batch_size,
            "device": device,
        },
        "projector": projector_params,
        "aligner": aligner_params,
        "counter": counter_params,
    }
    plan = _plan(model, images, labels, classes, mean, std, stage_params, run)
    timings = {}

    def step(name):
        message(f"[skvmf] {name}", verbose=verbose, level=1)
        return time.perf_counter()

    networks = _networks(model, checkpoints, students, device)
    # the path is analyze's choice, whatever the global configuration says
    path = (
        _array_api.dispatch() if tensors else config_context(array_api_dispatch=False)
    )
    with path:
        t = step("extracting features")
        extractor, feats = _extract_networks(
            networks, plan.X, layers, plan.extractor_params, verbose
        )
        layer_names = list(feats[_MAIN].regions)
        timings["extraction"] = time.perf_counter() - t

        projectors, aligners = _fit_stages(
            plan, feats, layer_names, n_jobs, scheduler, step, timings
        )
        curves, diagnostics = _diagnostics(
            projectors, aligners, layer_names, n_fit=len(plan.fit_idx)
        )
        _warn_diagnostics(diagnostics)

        t = step("counting knowledge points")
        embedded, measures, counters = _measure(
            plan, feats, projectors, aligners, layer_names
        )
    if tensors:
        # the result (its figures, the optional analyses) works on the host
        projectors, aligners, counters = (
            {key: _to_host(est) for key, est in fitted.items()}
            for fitted in (projectors, aligners, counters)
        )
        embedded = _HostFeatures(embedded)
    rs = plan.resampler()
    main = [measures[(r, _MAIN)] for r in range(n_repeats)]
    tables = (
        _projection_table(
            rs, main, len(plan.fit_idx), len(plan.eval_idx), plan.held_out
        ),
        _knowledge_table(rs, main, layer_names),
    )
    timings["counting"] = time.perf_counter() - t

    fitted = (projectors, aligners, counters, embedded, measures)
    result = _result(plan, extractor, fitted, layer_names, tables, scheduler)
    result.diagnostics, result.loss_curves = diagnostics, curves
    result.timings = timings
    if n_display:
        result.display_index = _display_index(
            plan.y, plan.eval_idx, len(plan.classes), n_display
        )
        result.display_images = plan.X[result.display_index]
    options = {"attack": attack, "faithfulness": faithfulness}
    _optional_analyses(result, plan, networks, fitted, rs, options, step)
    result.findings = _findings(result, rs, measures, n_repeats, plan.held_out)
    return result


def _tensor_path(device, array_api_dispatch) -> bool:
    """Whether :func:`analyze` runs its estimators on tensors (see its
    ``array_api_dispatch``)."""
    if array_api_dispatch is not None:
        return bool(array_api_dispatch)
    return torch.device(device).type != "cpu"


def _to_host(estimator):
    """A fitted estimator or FeatureSet with numpy arrays on the host."""
    from .devices import move_estimator

    return move_estimator(estimator, "cpu", namespace="numpy")


class _HostFeatures(dict):
    """The embedded FeatureSets of the tensor path, each copied to the host
    when first read (the result reads only a few of them)."""

    def __getitem__(self, key):
        value = super().__getitem__(key)
        if not isinstance(value.g, np.ndarray):
            value = _to_host(value)
            super().__setitem__(key, value)
        return value

    def values(self):
        return [self[key] for key in self]

    def items(self):
        return [(key, self[key]) for key in self]


def _grad_cam_maps(model, X, target, layer, device):
    """Grad-CAM at ``layer``, or at its block's first norm for a transformer
    block whose output only the class token carries to the head."""
    from .saliency import grad_cam

    last = None
    for name in (layer, f"{layer}.ln_1", f"{layer}.norm1"):
        try:
            return grad_cam(
                model, X, target, layer=name, upsample=False, device=device
            ), name
        except (ValueError, AttributeError, KeyError) as exc:
            last = exc
    raise ValueError(f"Grad-CAM is not available at {layer!r}: {last}")


def _faithfulness(result, model, X_eval, params, device, random_state):
    """compare_faithfulness of the knowledge-point maps and attribution maps
    of the held-out images (first repeat's estimators)."""
    from .faithfulness import compare_faithfulness, knowledge_point_map
    from .saliency import guided_backprop

    target = result.features.soft_labels[result.eval_index].argmax(1)
    maps = {}
    for layer in result.layers[-2:]:
        maps[f"knowledge points {layer}"] = knowledge_point_map(
            result, layer=layer, target=target
        )
    deepest = result.extractor.layers_[-1]
    try:
        cam, where = _grad_cam_maps(model, X_eval, target, deepest, device)
        maps[f"Grad-CAM {where}"] = cam
    except ValueError as exc:
        _warn.warn(f"faithfulness: Grad-CAM left out ({exc})")
    if any(isinstance(m, torch.nn.ReLU) for m in model.modules()):
        gb = guided_backprop(model, X_eval, target, device=device)
        maps["guided backprop"] = np.abs(np.asarray(gb)).max(axis=1)
    params.setdefault("steps", 16)
    params.setdefault("device", device)
    params.setdefault("random_state", random_state)
    return compare_faithfulness(model, X_eval, maps, target, **params)


def _normalisation(images, mean, std):
    if mean is None:
        mean = getattr(images, "mean", None)
    if std is None:
        std = getattr(images, "std", None)
    if mean is not None and not isinstance(mean, (list, tuple, np.ndarray)):
        mean = None  # a Dataset's method, not a normalisation
    if std is not None and not isinstance(std, (list, tuple, np.ndarray)):
        std = None
    return mean, std


def _display_index(y, eval_idx, n_classes, n_display):
    """A few held-out images of every class, in class order."""
    rng = np.random.default_rng(0)
    per_class = max(1, n_display // n_classes)
    idx = np.concatenate(
        [
            rng.permutation(eval_idx[y[eval_idx] == c])[:per_class]
            for c in range(n_classes)
        ]
    )[:n_display]
    return idx.astype(np.int64)


def _projection_table(rs, main, n_fit, n_eval, is_held_out):
    agree = _stack(main, "projection", "agree")
    strength = _stack(main, "projection", "strength")
    entropy = _stack(main, "projection", "entropy")
    row = {
        "n_images": n_eval,
        "n_fit_images": n_fit,
        "measured_on": "held-out images" if is_held_out else "fit images",
        "dnn_accuracy": float(_stack(main, "projection", "dnn_correct")[0].mean()),
    }
    _with_interval(row, "projection_agreement", rs.estimate(mean_of, agree))
    _with_interval(
        row, "pearson_strength_entropy", rs.estimate(pearson_of, strength, entropy)
    )
    _with_interval(row, "mean_strength_g", rs.estimate(mean_of, strength))
    row["projection_agreement_fit_images"] = float(
        np.mean([m["projection_fit"]["agree"].mean() for m in main])
    )
    return row


def _emergence(result, rs, checkpoint_keys, over_repeats, embedded, y_eval):
    rows, frames = [], []
    eval_idx = result.eval_index
    for key in checkpoint_keys:
        per = over_repeats(key)
        accuracy = float(per[0]["projection"]["dnn_correct"].mean())
        for layer in result.layers:
            row = {"iteration": key[1], "accuracy": accuracy}
            row.update(_count_row(rs, [m["layers"] for m in per], layer))
            rows.append(row)
        fs = embedded[(0, key)]
        frames.append(
            {"iteration": key[1], "g": fs.g[eval_idx], "directions": fs.directions}
        )
    result.emergence = rows
    result.emergence_frames = frames
    result.emergence_labels = y_eval


def _distillation(result, rs, student_keys, over_repeats, y_eval):
    teacher = over_repeats(_MAIN)
    accuracy = float(teacher[0]["projection"]["dnn_correct"].mean())
    none = {"value": None, "low": None, "high": None}
    rows = [
        _with_interval(
            {
                "model": "teacher",
                "accuracy": accuracy,
                **_count_row(rs, [m["layers"] for m in teacher], layer),
            },
            "reliable_minus_teacher",
            none,
        )
        for layer in result.layers
    ]
    for key in student_keys:
        per = over_repeats(key)
        acc = float(per[0]["projection"]["dnn_correct"].mean())
        for layer in result.layers:
            row = {"model": key[1], "accuracy": acc}
            row.update(_count_row(rs, [m["layers"] for m in per], layer))
            diff = _stack(per, "layers", layer, "reliable") - _stack(
                teacher, "layers", layer, "reliable"
            )
            _with_interval(row, "reliable_minus_teacher", rs.estimate(mean_of, diff))
            rows.append(row)
    result.distillation = rows


def _attack_params(params, mean, std, device, random_state, verbose):
    """``pgd_attack``'s parameters with the run's defaults filled in."""
    params = dict(params)
    # 8/255 of the pixel range: the usual L-inf budget; without the
    # normalisation, epsilon is in input units and must be given
    params.setdefault("epsilon", 8 / 255 if std is not None else 0.1)
    if std is not None:
        params.setdefault("mean", mean)
        params.setdefault("std", std)
    params.setdefault("random_state", random_state)
    params.setdefault("device", device)
    params.setdefault("verbose", verbose)
    return params


def _attack_measures(clean, adv, counter, attack, y_eval, layers):
    """Per image and layer: how far the regions moved, and the knowledge
    points before and after the attack."""
    per_layer = {}
    for layer in layers:
        change = embedding_change(
            clean.h[layer], adv.h[layer], scale=counter.scales_[layer]
        )
        clean_pts, clean_cat = counter.masks(clean, layer=layer)
        adv_pts, adv_cat = counter.masks(adv, layer=layer)
        truth = y_eval[:, None]
        # points of the adversarial class after the attack, and how many of
        # them sit where the original class had its points before
        fooled = (attack.adv_pred != y_eval)[:, None]
        adv_class = adv_pts & (adv_cat == attack.adv_pred[:, None]) & fooled
        overlap = adv_class & clean_pts & (clean_cat == truth)
        counts = {
            "points_clean": clean_pts,
            "points_adversarial": adv_pts,
            "reliable_clean": clean_pts & (clean_cat == truth),
            "reliable_adversarial": adv_pts & (adv_cat == truth),
            "adversarial_class_points": adv_class,
            "overlap": overlap,
        }
        per_layer[layer] = {
            "one_minus_cos": change["one_minus_cos"].mean(1),
            "strength_change": change["strength_change"].mean(1),
            **{k: v.sum(1).astype(float) for k, v in counts.items()},
        }
    return per_layer


_ATTACK_MEANS = (
    "one_minus_cos",
    "strength_change",
    "points_clean",
    "points_adversarial",
    "reliable_clean",
    "reliable_adversarial",
    "adversarial_class_points",
)


def _attack_table(rs, per_repeat, layers):
    """One row per layer: every attack measure with its interval."""
    rows = []
    for layer in layers:
        row = {"layer": layer}
        for name in _ATTACK_MEANS:
            counted = name.startswith(("points", "reliable", "adv"))
            _with_interval(
                row,
                name if counted else f"mean_{name}",
                rs.estimate(mean_of, _stack(per_repeat, layer, name)),
            )
        _with_interval(
            row,
            "overlap_with_clean_points",
            rs.estimate(
                ratio_of,
                _stack(per_repeat, layer, "overlap"),
                _stack(per_repeat, layer, "adversarial_class_points"),
            ),
        )
        rows.append(row)
    return rows


def _adversarial(
    result,
    rs,
    model,
    X_eval,
    y_eval,
    params,
    projectors,
    aligners,
    counters,
    embedded,
    eval_idx,
    context,
):
    """PGD on the held-out images; adversarial regions embedded with each
    repeat's clean estimators and compared with the clean ones per layer."""
    params = _attack_params(params, *context)
    attack = pgd_attack(model, X_eval, y_eval, **params)
    adv_feats = result.extractor.transform(attack.images)
    n_repeats = max(r for r, _ in projectors) + 1
    per_repeat = []
    for r in range(n_repeats):
        adv = aligners[(r, _MAIN)].transform(
            projectors[(r, _MAIN)].transform(adv_feats)
        )
        clean = embedded[(r, _MAIN)][eval_idx]
        per_repeat.append(
            _attack_measures(
                clean, adv, counters[(r, _MAIN)], attack, y_eval, result.layers
            )
        )
    result.adversarial = _attack_table(rs, per_repeat, result.layers)
    result.adversarial_measures = per_repeat
    result.attack = {
        "epsilon": float(params["epsilon"]),
        "n_steps": int(params.get("n_steps", 10)),
        "n_images": int(len(y_eval)),
        "success_rate": attack.success_rate,
        "accuracy_clean": float((attack.clean_pred == y_eval).mean()),
        "accuracy_adversarial": float((attack.adv_pred == y_eval).mean()),
    }


# ---------------------------------------------------------------------------
# the findings (SPEC 9): statements fixed before any run, checked per run
# ---------------------------------------------------------------------------
def _projection_findings(rs, main, held_out):
    """The projection mimics the network; strength falls with entropy."""
    return [
        _finding(
            "projection_mimics_network",
            "The projected category model Q(y|g) predicts the network's class on "
            "at least 90 % of the images (agreement > 0.9).",
            rs.estimate(mean_of, _stack(main, "projection", "agree")),
            _above(0.9),
            held_out,
        ),
        _finding(
            "strength_against_entropy",
            "The strength ||g|| correlates negatively with the entropy of the "
            "network's P(y|x) (Pearson < 0).",
            rs.estimate(
                pearson_of,
                _stack(main, "projection", "strength"),
                _stack(main, "projection", "entropy"),
            ),
            _below(0.0),
            held_out,
        ),
    ]


def _depth_finding(rs, main, shallow, deep, held_out):
    """The reliable ratio is higher at the deepest layer than the shallowest."""

    def rise(rel_d, cnt_d, rel_s, cnt_s):
        return ratio_of(rel_d, cnt_d) - ratio_of(rel_s, cnt_s)

    est = rs.estimate(
        rise,
        _stack(main, "layers", deep, "reliable"),
        _stack(main, "layers", deep, "count"),
        _stack(main, "layers", shallow, "reliable"),
        _stack(main, "layers", shallow, "count"),
    )
    return _finding(
        "reliable_ratio_rises_with_depth",
        f"The reliable ratio of knowledge points is higher at the deepest "
        f"layer ({deep}) than at the shallowest ({shallow}) (difference > 0).",
        est,
        _above(0.0),
        held_out,
    )


def _emergence_finding(rs, measures, result, deep, n_repeats, held_out):
    """More points at the deepest layer at a later intermediate checkpoint
    than at an earlier one."""
    statement = (
        f"Knowledge points at the deepest layer ({deep}) rise during training: "
        "more per image at a later intermediate checkpoint than at an earlier "
        "one (difference > 0)."
    )
    pair = _intermediate_pair(sorted({r["iteration"] for r in result.emergence}))
    if pair is None:
        return _finding(
            "emergence_during_training",
            statement,
            None,
            None,
            held_out,
            note="needs at least 3 checkpoints",
        )
    a, b = pair

    def counts(iteration):
        at = [measures[(r, ("checkpoint", iteration))] for r in range(n_repeats)]
        return _stack(at, "layers", deep, "count")

    return _finding(
        "emergence_during_training",
        statement,
        rs.estimate(mean_of, counts(b) - counts(a)),
        _above(0.0),
        held_out,
        note=f"iteration {b} minus iteration {a}",
    )


def _attack_finding(rs, result, shallow, deep, held_out):
    """The attack moves the deepest layer's regions more than the shallowest."""
    per = result.adversarial_measures
    diff = _stack(per, deep, "one_minus_cos") - _stack(per, shallow, "one_minus_cos")
    return _finding(
        "attack_moves_deep_regions_more",
        f"A PGD attack moves the regions of the deepest layer ({deep}) more "
        f"than those of the shallowest ({shallow}): mean 1 - cos difference "
        "> 0.",
        rs.estimate(mean_of, diff),
        _above(0.0),
        held_out,
    )


def _student_findings(rs, measures, result, main, deep, n_repeats, held_out):
    """Each student has fewer reliable points than its teacher, deepest layer."""
    out = []
    for row in result.distillation:
        if row["model"] == "teacher" or row["layer"] != deep:
            continue
        student = [measures[(r, ("student", row["model"]))] for r in range(n_repeats)]
        diff = _stack(student, "layers", deep, "reliable") - _stack(
            main, "layers", deep, "reliable"
        )
        out.append(
            _finding(
                f"student_fewer_reliable_points:{row['model']}",
                f"The student {row['model']} has fewer reliable knowledge points "
                f"per image than its teacher at the deepest layer ({deep}) "
                "(student minus teacher < 0).",
                rs.estimate(mean_of, diff),
                _below(0.0),
                held_out,
            )
        )
    return out


def _findings(result, rs, measures, n_repeats, is_held_out) -> list[dict]:
    """The paper's properties checked on this run (SPEC 9), each only when
    the run has what it needs (two layers, checkpoints, an attack, students)."""
    main = [measures[(r, _MAIN)] for r in range(n_repeats)]
    shallow, deep = result.layers[0], result.layers[-1]
    two_layers = len(result.layers) >= 2
    out = _projection_findings(rs, main, is_held_out)
    if two_layers:
        out.append(_depth_finding(rs, main, shallow, deep, is_held_out))
    if result.emergence:
        out.append(
            _emergence_finding(rs, measures, result, deep, n_repeats, is_held_out)
        )
    if result.adversarial is not None and two_layers:
        out.append(_attack_finding(rs, result, shallow, deep, is_held_out))
    if result.distillation:
        out += _student_findings(
            rs, measures, result, main, deep, n_repeats, is_held_out
        )
    return out
