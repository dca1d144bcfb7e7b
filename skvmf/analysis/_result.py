"""The result of :func:`~skvmf.analysis.analyze`: :class:`AnalysisResult`,
its tables (JSON, CSV, a terminal summary, HTML for Jupyter) and every
figure it can draw."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from .._utils import tables as _tables
from ..alignment import RegionalAligner
from ..extraction import TorchFeatureExtractor
from ..features import FeatureSet
from ..knowledge import KnowledgePointCounter
from ..projection import SampleProjector


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
        ``value``, ``low``, ``high`` (the interval), ``verdict`` (``"holds"``:
        the interval lies on the claimed side of ``threshold``;
        ``"contradicted"``: on the other side; ``"inconclusive"``: it spans
        the threshold; ``"not evaluated"``: no interval, ``note`` says why),
        ``holds`` (True iff the verdict is holds; None when not evaluated),
        ``side`` and ``threshold`` (the claim), ``n_images`` (the images the
        interval is over), ``images_to_decide`` (inconclusive only: about
        how many images would decide it, if the interval narrows as
        1/sqrt(images)), ``held_out`` and ``note``.
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
        points and their overlap with the clean points: means over all
        ``n_images`` attacked images; the columns ending in ``_fooled`` are
        means over the ``n_fooled`` images the attack fooled (the paper's
        comparison), beside the attack's ``success_rate``.
    attack : dict or None
        The attack's settings (``epsilon``, ``n_steps``, ``step_size``) and
        outcome: ``n_images`` attacked held-out images, ``n_attacked`` of
        them classified correctly before the attack (the ones it can fool),
        ``n_fooled``, ``success_rate`` = n_fooled / n_attacked with its
        interval over the images (``success_rate_low``/``_high``), and the
        accuracy before and after.
    adversarial_embeddings : dict or None
        For the clean-against-adversarial 3-D view, per layer the same
        subsample (at most 1500) of the attacked images' regions: ``image``
        (index into ``labels``), ``region``, ``clean`` and ``adversarial``
        (m, 3) coordinates (h over the layer's strength scale, first three
        coordinates, as :meth:`plot_layer_regions` draws), ``fooled``,
        ``predicted_adversarial``, and ``point_clean`` /
        ``point_adversarial`` (the class a region is a knowledge point of,
        -1 for none).
    thumbnails : ndarray of uint8 or None
        Small pictures (longest side at most 48 pixels; (n, h, w) for grey
        images, (n, h, w, 3) otherwise) of the display images, then of the
        other held-out images, then of the fit images, at most
        ``max(n_display, 1000)`` of them, with ``thumbnail_index`` their rows in
        ``features``: what the report's 3-D views show for a clicked point.
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
    adversarial_embeddings: dict | None = dataclasses.field(default=None, repr=False)
    thumbnails: np.ndarray | None = dataclasses.field(default=None, repr=False)
    thumbnail_index: np.ndarray | None = dataclasses.field(default=None, repr=False)

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
        """Plain-text tables for a terminal: findings first (a sentence under
        the table for each one that does not hold: what its interval shows,
        and for an inconclusive one about how many images would decide it),
        then every table with its intervals (``value [low, high]``) and the
        diagnostics."""
        parts = [
            f"Findings ({self._how_measured()})",
            _tables.to_text(self._findings_rows()),
            *_tables.findings_notes(self.findings),
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
                "",
                "Emergence over training (reliable knowledge points per image)",
                _tables.to_text(
                    _tables.with_intervals(
                        _tables.pivot(self.emergence, "mean_reliable")
                    )
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
                        _tables.select(
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
                        _tables.select(
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
            _tables.to_text(_tables.diagnostics_rows(self.diagnostics)),
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

    def _findings_rows(self):
        """The findings' display rows, intervals as ``[low, high]``."""
        return _tables.with_intervals(_tables.findings_rows(self.findings))

    def _knowledge_rows(self):
        """The knowledge table's display columns, intervals as ``[low, high]``."""
        return _tables.with_intervals(
            _tables.select(self.knowledge, _tables.KNOWLEDGE_COLUMNS)
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
                _tables.to_html(
                    self._findings_rows(),
                    caption="Findings",
                    styles=_tables.VERDICT_STYLES,
                )
            )
            notes = _tables.findings_notes(self.findings)
            if notes:
                parts.append(
                    "<ul>"
                    + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
                    + "</ul>"
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
            from ..plotting import plot_sample_space_interactive

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
        from ..plotting import plot_sample_space

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
        from ..plotting import plot_layer_regions, plot_layer_regions_interactive

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
        from ..plotting import plot_knowledge_masks

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
        from ..plotting import plot_knowledge_counts

        return plot_knowledge_counts(self.knowledge, **kwargs)

    def plot_emergence(self, **kwargs):
        """Knowledge points per layer over training checkpoints."""
        from ..plotting import plot_emergence

        if not self.emergence:
            raise ValueError("no checkpoints were analysed (pass checkpoints=)")
        return plot_emergence(self.emergence, **kwargs)

    def plot_sample_evolution(self, *, interactive: bool = False, **kwargs):
        """g and the category directions at each checkpoint, one shared frame.

        With ``interactive=True`` a plotly Figure with a checkpoint slider is
        returned (hover: image, class, closest category direction, strength).
        """
        from ..plotting import plot_sample_evolution, plot_sample_evolution_interactive

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
        from ..plotting import plot_adversarial_change

        if not self.adversarial:
            raise ValueError("no attack was analysed (pass attack=)")
        return plot_adversarial_change(self.adversarial, **kwargs)

    def plot_distillation(self, **kwargs):
        """Knowledge points of the teacher and the students per layer."""
        from ..plotting import plot_distillation

        if not self.distillation:
            raise ValueError("no students were analysed (pass students=)")
        return plot_distillation(self.distillation, **kwargs)

    def plot_findings(self, **kwargs):
        """Every finding's value and interval, coloured by whether it holds."""
        from ..plotting import plot_findings

        return plot_findings(self.findings, **kwargs)

    def plot_faithfulness(self, **kwargs):
        """Deletion and insertion curves of the knowledge-point maps and the
        attribution maps (``analyze(faithfulness=True)``)."""
        from ..faithfulness import plot_faithfulness

        if not self.faithfulness:
            raise ValueError("no faithfulness was measured (pass faithfulness=True)")
        return plot_faithfulness(self.faithfulness, **kwargs)

    def plot_loss_curves(self, **kwargs):
        """Loss curves of every fitted stage (projection, importance weights,
        alignment), per network, layer and repeat."""
        from ..plotting import plot_loss_curves

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


def _class_index(categories, result):
    """Region categories (labels from the counter's classes_) as indices."""
    classes = list(result.counter.classes_)
    lookup = {c: i for i, c in enumerate(classes)}
    flat = np.asarray(categories).ravel()
    return np.array([lookup.get(c, -1) for c in flat]).reshape(np.shape(categories))
