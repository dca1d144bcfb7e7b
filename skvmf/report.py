"""A self-contained HTML report of an analysis, with its figures and numbers.

:func:`write_report` turns an :class:`skvmf.analysis.AnalysisResult` into a
folder that opens offline and can be shared as is::

    report/
        index.html        every figure embedded (base64 PNG), inline CSS,
                          a plain-words explanation per section, and the
                          3-D views as interactive plotly figures (plotly's
                          JavaScript embedded once: no network needed)
        figures/<name>.png
        data/results.json, data/<table>.csv       (AnalysisResult.save)
        data/<figure>.json (and .csv for flat data): the numbers each figure plots
        data/<extra>.csv / .json                  tables added by the caller

Sections appear only for what the analysis computed (checkpoints, attack,
students).
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import os
import re
from collections.abc import Mapping
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.utils._param_validation import Interval, validate_params

from ._utils import tables as _tables
from ._utils.figures import subsample, thumbnails
from .analysis import AnalysisResult

__all__ = ["write_report"]

# ---------------------------------------------------------------------------
# what each section says (plain words)
# ---------------------------------------------------------------------------
_INTRO = (
    "This report shows what a convolutional network has learned, layer by "
    "layer, with the method of Li, Wang and Zhang (NeurIPS 2021). Every "
    "analysed image, and every region of every analysed layer (one cell of "
    "the layer's feature map), is placed in one small space (d' = "
    "{n_components} dimensions). In that space a direction stands for a "
    "category and the length (the <em>strength</em>) for how clearly the "
    "feature speaks for it. A region whose direction points clearly to one "
    "category is a <em>knowledge point</em>: a visual pattern the layer uses "
    "to tell the categories apart."
)

_TEXT = {
    "findings": (
        "The paper's properties, checked on this run. Each value is measured "
        "on {where}; the interval ({confidence} %) covers both what is random "
        "in the method ({n_repeats} repeat(s) of the projection and alignment "
        "seeds) and the choice of images (a bootstrap over them). A finding "
        "<strong>holds</strong> when its whole interval lies on the side the "
        "paper reports; it is <strong>contradicted</strong> when the whole "
        "interval lies on the other side: these images disagree with the "
        "paper, which is a result too. It is <strong>inconclusive</strong> "
        "when the interval spans the threshold: the data cannot decide, "
        "which is not the same as disagreeing. For an inconclusive finding "
        "the table gives about how many held-out images would decide it, "
        "assuming the interval's half-width shrinks as 1/sqrt(images) while "
        "the estimate stays where it is. <em>Not evaluated</em> means the run "
        "lacked what the property needs (e.g. a single layer, too few "
        "checkpoints); the note under the table says what to change."
    ),
    "diagnostics": (
        "Every fitted optimisation: the sample projection, the importance "
        "weights and the alignment of every layer, for every analysed network "
        "and repeat. <code>loss_first</code> is the loss at the start, "
        "<code>loss_last</code> the mean of the last tenth of its curve "
        "(averaged over repeats), <code>fell</code> how many repeats ended "
        "below their start. A stage whose loss did not fall is marked "
        "<strong>NO</strong>: the numbers that depend on it come from "
        "parameters no better than their starting point. The figure draws "
        "every curve (the analysed model in colour, other networks grey)."
    ),
    "run": (
        "The settings of the run, the time each step took, and the accuracies "
        "measured on the way. <code>dnn_accuracy</code> is the network's "
        "accuracy on the analysed images; the vote accuracies of the "
        "knowledge points are in the next sections."
    ),
    "projection": (
        "Each dot is one image: its sample feature (the input of the "
        "network's last linear layer) projected to d' dimensions, written "
        "<em>g</em>. The projection is learned so that a von Mises-Fisher "
        "category model in this space reproduces the network's own "
        "predictions. The arrows are the category directions, the colours the "
        "true labels. Dots far from the centre are images the network "
        "classifies confidently, dots near the centre are ambiguous ones. The "
        "2-D view shows the same points on their two main axes (the origin "
        "kept, so the distance from the centre is still the strength). In the "
        "table, <code>projection_agreement</code> is how often the category "
        "model picks the network's own prediction (close to 1 means the space "
        "is faithful), and <code>pearson_strength_entropy</code> the "
        "correlation of the strength of g with the uncertainty (entropy) of "
        "the network's prediction: negative, because confident images lie "
        "far out."
    ),
    "knowledge": (
        "Each layer's regions are embedded in the same space as g (written "
        "<em>h</em>) and their strengths rescaled to a mean of 1, so layers "
        "are comparable. A region is a <strong>knowledge point</strong> when "
        "the probability of its most likely category exceeds "
        "<strong>tau = {tau}</strong>; it is <strong>reliable</strong> when "
        "that category is the image's true label. Blue bars: knowledge points "
        "per image; green bars: reliable ones; the percentage is the "
        "<strong>reliable ratio</strong> (reliable / all). In the paper both "
        "the number and the reliable ratio grow with depth: deep layers hold "
        "more, and more trustworthy, patterns. <code>vote_accuracy</code> is "
        "the accuracy of a majority vote of each image's knowledge points "
        "(an image without any counts as wrong); <code>mean_cos_h_g</code> "
        "how well the regions point the way their image's g does."
    ),
    "regions": (
        "Forward propagation: the same regions of the same images, seen at "
        "every layer in the same space. Grey dots are regions that are not "
        "knowledge points; coloured dots are knowledge points, in the colour "
        "of the category they point to; the lines are the category "
        "directions. Shallow layers form a weak cloud near the centre with "
        "mixed directions; deep layers stretch out along the category "
        "directions."
    ),
    "masks": (
        "Knowledge points of the deepest layer drawn on some analysed images. "
        "Each coloured cell is a knowledge point, in the colour of the "
        "category it points to; a solid border marks a reliable point (it "
        "points to the image's label), a dashed border an unreliable one."
    ),
    "emergence": (
        "The same analysis repeated on checkpoints saved during training, on "
        "the same images. Left: knowledge points per image against the "
        "training iteration, one line per layer; right: the reliable ones. "
        "In the paper knowledge points appear quickly early in training and "
        "then level off, most of all in the deep layers. The second figure "
        "shows g and the category directions at each checkpoint, every "
        "checkpoint rotated into one shared frame, so the categories can be "
        "seen separating as training goes on. The table lists the knowledge "
        "points per image per layer, with each checkpoint's accuracy on the "
        "analysed images."
    ),
    "adversarial": (
        "A PGD attack (L-infinity, epsilon = {epsilon}, {n_steps} steps) "
        "perturbed the images to change the network's prediction. The "
        "regions of the attacked images are embedded with the clean images' "
        "mapping of each layer. Left: how much they turned (mean 1 - cos "
        "between clean and attacked region) and how much their strength "
        "changed. In the paper both stay near 0 up to the middle layers and "
        "grow in the deep layers: the attack works mostly on the deep "
        "layers. Right: knowledge points per image before and after. "
        "<code>adversarial_class_points</code> counts the points per image "
        "that vote for the wrong (adversarial) class, and "
        "<code>overlap_with_clean_points</code> the share of them at regions "
        "that were points of the true class before: small in the paper, the "
        "attack builds its evidence from other regions."
    ),
    "distillation": (
        "Students distilled from the teacher (trained to mimic its logits, "
        "or one of its layers) analysed the same way, on the same images. "
        "Left: knowledge points per image, right: reliable ones, per layer "
        "and network. In the paper the students end with fewer reliable "
        "knowledge points than their teacher."
    ),
    "faithfulness": (
        "How faithful each map is to the network: the regions of each held-out "
        "image are removed in the map's order, most important first "
        "(<strong>deletion</strong>: a faithful map makes the probability of "
        "the predicted class fall fast, a small area), or added to a blurred "
        "image in that order (<strong>insertion</strong>: it should rise fast, "
        "a large area). The knowledge-point maps are the posterior of the "
        "predicted class per region at a layer; Grad-CAM and guided "
        "backpropagation are the usual attribution maps, and a random map is "
        "the chance level. <code>deletion_gain</code> and "
        "<code>insertion_gain</code> are each method's advantage over the "
        "random map (positive: better than chance), with {confidence} % "
        "intervals over the images."
    ),
    "extra": "Further results recorded by the run.",
    "files": (
        "Everything shown here, as files next to this page: the figures as "
        "PNG, every table as CSV, <code>results.json</code> with all tables "
        "and settings, and for each figure the numbers it plots as JSON (and "
        "CSV when they are a flat table)."
    ),
}

_FIGURE_CAPTIONS = {
    "findings": (
        "Each finding's value and interval (green: holds; red: contradicted; "
        "amber: inconclusive)."
    ),
    "loss_curves": "Loss curves of every fitted stage.",
    "faithfulness": "Deletion and insertion curves per map (bands: intervals).",
    "sample_space_3d": "Sample features g and the category directions (3-D).",
    "sample_space_2d": "The same points on their two main axes (2-D).",
    "knowledge_counts": "Knowledge points per image and layer (all, reliable).",
    "layer_regions": "Regional features h of every layer in the same space.",
    "knowledge_masks": "Knowledge points of the deepest layer on images.",
    "emergence": "Knowledge points over training checkpoints.",
    "sample_evolution": "Sample features at each checkpoint (one frame).",
    "adversarial_change": "Change of embedded regions under the attack.",
    "distillation": "Knowledge points of the teacher and its students.",
}

_SECTION_FIGURES = {
    "findings": ("findings",),
    "diagnostics": ("loss_curves",),
    "projection": ("sample_space_3d", "sample_space_2d"),
    "knowledge": ("knowledge_counts",),
    "regions": ("layer_regions",),
    "masks": ("knowledge_masks",),
    "emergence": ("emergence", "sample_evolution"),
    "adversarial": ("adversarial_change",),
    "distillation": ("distillation",),
    "faithfulness": ("faithfulness",),
}

# interactive 3-D views (plotly), shown above the PNGs of their section
_VIEW_CAPTIONS = {
    "sample_space": "Interactive: sample features g and the category directions. "
    "Drag to turn, scroll to zoom, hover a point for its image, class, "
    "predicted class and strength; click a class in the legend to hide it.",
    "layer_regions": "Interactive: the regions of every layer; the slider "
    "walks along the forward pass. Hover a point for its image and region, "
    "class, predicted class, strength and whether it is a knowledge point.",
    "sample_evolution": "Interactive: sample features at each checkpoint; the "
    "slider walks through training. Hover a point for its image, class, "
    "closest category direction and strength.",
    "adversarial_regions": "Interactive: the same regions of the attacked "
    "images before (circles) and after (diamonds) the attack, each pair "
    "joined by a line (dark: the attack changed the image's class; light: "
    "it did not); the slider walks along the forward pass. A short line: "
    "the attack barely moved that region at that layer.",
}

_SECTION_VIEWS = {
    "projection": ("sample_space",),
    "regions": ("layer_regions",),
    "emergence": ("sample_evolution",),
    "adversarial": ("adversarial_regions",),
}


_SECTION_TITLES = {
    "findings": "Findings: the paper's properties on this run",
    "diagnostics": "Diagnostics: did every fitted stage lower its loss?",
    "run": "Run: settings, timings and accuracy",
    "projection": "Sample features in the projected space",
    "knowledge": "Knowledge points per layer",
    "regions": "Forward propagation: regions across layers",
    "masks": "Knowledge points on images",
    "emergence": "Emergence during training",
    "adversarial": "Adversarial attack",
    "distillation": "Knowledge distillation",
    "faithfulness": "Faithfulness: knowledge points beside attribution maps",
    "extra": "More results",
    "files": "Files",
}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,
sans-serif;margin:0 auto;max-width:1100px;padding:1.5em 2em;color:#222;
line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:2em}h3{margin-bottom:.3em}
.meta{color:#666;font-size:.9em}
nav ul{columns:2;font-size:.95em}
p.explain{background:#f6f8fa;border-left:4px solid #4C72B0;padding:.6em 1em}
figure{margin:1em 0;max-width:100%}figure img{max-width:100%;height:auto;
border:1px solid #eee}figcaption{color:#555;font-size:.9em}
p,li,figcaption{overflow-wrap:break-word}
div[data-skvmf-view]{width:100%;min-height:600px;border:1px solid #eee}
.skvmf-view-row{display:flex;flex-wrap:wrap;gap:.8em;align-items:flex-start}
.skvmf-view-row>div[data-skvmf-view]{flex:1 1 560px;min-width:0;width:auto}
aside.skvmf-thumb{flex:0 0 200px;border:1px solid #eee;padding:.5em;
font-size:.85em;color:#444;background:#fafbfc}
aside.skvmf-thumb canvas{display:block;width:100%;height:auto;
image-rendering:pixelated;background:#fff;border:1px solid #ddd}
aside.skvmf-thumb p{margin:.4em 0 0}aside.skvmf-thumb h4{margin:.5em 0 .2em}
/* a table wider than the page scrolls inside its own box */
table.skvmf-table{display:block;width:fit-content;max-width:100%;
overflow-x:auto}
table.skvmf-table{border-collapse:collapse;margin:.8em 0;font-size:.88em}
table.skvmf-table th,table.skvmf-table td{border:1px solid #ddd;
padding:.25em .6em;text-align:right}
table.skvmf-table th{background:#f0f2f5}
table.skvmf-table td:first-child,table.skvmf-table th:first-child{
text-align:left}
caption{text-align:left;font-weight:600;padding:.3em 0}
code{background:#f0f2f5;padding:0 .25em;border-radius:3px}
"""


# ---------------------------------------------------------------------------
# the numbers behind each figure
# ---------------------------------------------------------------------------
def _sample_space_data(result: AnalysisResult, view: str) -> tuple[dict, list]:
    g = np.asarray(result.features.g, dtype=float)
    mu = np.asarray(result.features.directions, dtype=float)
    data = {
        "description": "sample features g (one row per image) and the unit "
        "category directions",
        "classes": result.classes,
        "labels": result.labels,
        "g": g,
        "strength": np.linalg.norm(g, axis=1),
        "directions": mu,
    }
    coords = g
    if view == "2d":
        # the principal axes about the origin, as the figure draws them
        _, _, vt = np.linalg.svd(g, full_matrices=False)
        axes = vt[:2].T
        coords = g @ axes
        data.update(axes=axes, g_2d=coords, directions_2d=mu @ axes)
    records = [
        {
            "image": i,
            "label": int(result.labels[i]),
            "class": result.classes[int(result.labels[i])],
            **{f"x{k}": float(v) for k, v in enumerate(coords[i])},
            "strength": float(data["strength"][i]),
        }
        for i in range(len(g))
    ]
    return data, records


def _layer_regions_data(result: AnalysisResult, max_points=1500) -> tuple[dict, list]:
    fs, counter = result.features, result.counter
    classes = list(counter.classes_)
    lookup = {c: i for i, c in enumerate(classes)}
    n, r = next(iter(fs.h.values())).shape[:2]
    # the same regions as the figure draws
    keep = subsample(n * r, max_points)
    layers, records = {}, []
    for layer in result.layers:
        h = np.asarray(fs.h[layer], dtype=float) / counter.scales_[layer]
        points, cats = counter.masks(fs, layer=layer)
        index = np.array([lookup.get(c, -1) for c in np.ravel(cats)]).reshape(n, r)
        drawn_h = h.reshape(n * r, -1)[keep]
        drawn_points = points.reshape(-1)[keep]
        drawn_category = np.where(drawn_points, index.reshape(-1)[keep], -1)
        layers[layer] = {
            "scale": float(counter.scales_[layer]),
            "mean_strength": float(np.linalg.norm(h, axis=-1).mean()),
            "knowledge_point_fraction": float(points.mean()),
            "knowledge_points_per_image_by_class": [
                float((points & (index == c)).sum() / n) for c in range(len(classes))
            ],
            "image": keep // r,
            "region": keep % r,
            "h": drawn_h,
            "category": drawn_category,
        }
        records += [
            {
                "layer": layer,
                "image": int(k // r),
                "region": int(k % r),
                **{f"h{d}": float(v) for d, v in enumerate(vec)},
                "category": int(c),
            }
            for k, vec, c in zip(keep, drawn_h, drawn_category)
        ]
    data = {
        "description": "per layer: the regions the figure draws (h rescaled to "
        "mean strength 1; category = index of the class a knowledge point "
        "points to, -1 for regions that are not knowledge points) and summaries",
        "classes": [str(c) for c in classes],
        "directions": result.features.directions,
        "grid": list(fs.grid),
        "layers": layers,
    }
    return data, records


def _knowledge_masks_data(result: AnalysisResult, n_images: int = 12) -> dict:
    counter = result.counter
    lookup = {c: i for i, c in enumerate(counter.classes_)}
    layer = result.layers[-1]
    idx = result.display_index[:n_images]
    points, cats = counter.masks(result.features[idx], layer=layer)
    index = np.array([lookup.get(c, -1) for c in np.ravel(cats)]).reshape(cats.shape)
    return {
        "description": "knowledge points of the deepest layer on the displayed "
        "images: per image, a grid of 0/1 (knowledge point) and the category "
        "index each region points to",
        "layer": layer,
        "grid": list(result.features.grid),
        "classes": result.classes,
        "images": [
            {
                "image": int(i),
                "label": int(result.labels[i]),
                "knowledge_points": points[k].reshape(result.features.grid),
                "categories": index[k].reshape(result.features.grid),
                "reliable": int(
                    (points[k] & (index[k] == int(result.labels[i]))).sum()
                ),
            }
            for k, i in enumerate(idx)
        ],
    }


def _figure_data(result: AnalysisResult, name: str) -> tuple[dict, list | None]:
    """JSON content for ``data/<name>.json`` and flat records (CSV) or None."""
    if name == "findings":
        return {"table": "findings.csv", "records": result.findings}, None
    if name == "faithfulness":
        curves = {
            method: {
                "fractions": c["fractions"],
                "deletion_mean": np.mean(c["deletion"], axis=0),
                "insertion_mean": np.mean(c["insertion"], axis=0),
                "deletion_band": c["deletion_band"],
                "insertion_band": c["insertion_band"],
            }
            for method, c in result.faithfulness["curves"].items()
        }
        return {"table": "faithfulness.csv", "curves": curves}, None
    if name == "loss_curves":
        return {"table": "diagnostics.csv", "curves": result.loss_curves}, None
    if name in ("sample_space_3d", "sample_space_2d"):
        return _sample_space_data(result, name[-2:])
    if name == "layer_regions":
        return _layer_regions_data(result)
    if name == "knowledge_masks":
        return _knowledge_masks_data(result), None
    if name == "knowledge_counts":
        cols = [
            f"{c}{b}"
            for c in ("mean_count", "mean_reliable", "reliable_ratio")
            for b in ("", "_low", "_high")
        ]
        records = [
            {c: row[c] for c in ("layer", *cols) if c in row}
            for row in result.knowledge
        ]
        return {"tau": result.counter.tau, "records": records}, records
    # the next three plot a table of AnalysisResult.save: its CSV is that one
    if name == "emergence":
        return {"table": "emergence.csv", "records": result.emergence}, None
    if name == "sample_evolution":
        return {
            "classes": result.classes,
            "labels": result.labels,
            "frames": result.emergence_frames,
        }, None
    if name == "adversarial_change":
        return {
            "table": "adversarial.csv",
            "attack": result.attack,
            "records": result.adversarial,
        }, None
    if name == "distillation":
        return {"table": "distillation.csv", "records": result.distillation}, None
    return {}, None


# ---------------------------------------------------------------------------
# html pieces
# ---------------------------------------------------------------------------
def _esc(value) -> str:
    return html.escape(str(value))


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", str(name)).strip("_").lower()
    return slug or "item"


def _flatten(settings: Mapping, prefix: str = "") -> list[dict]:
    rows = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows += _flatten(value, prefix=f"{name}.")
        else:
            if isinstance(value, (list, tuple)):
                value = ", ".join(str(v) for v in value)
            rows.append({"setting": name, "value": value})
    return rows


def _figure_html(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    caption = _FIGURE_CAPTIONS.get(name, name)
    return (
        f'<figure id="fig-{_esc(name)}"><img alt="{_esc(caption)}" '
        f'src="data:image/png;base64,{data}">'
        f"<figcaption>{_esc(caption)} "
        f'(<a href="figures/{_esc(name)}.png">PNG</a>)</figcaption></figure>'
    )


def _interactive_views(result: AnalysisResult) -> dict[str, str]:
    """The interactive 3-D views by name: a container marked
    ``data-skvmf-view="3d"``, the script that draws into it, and beside it
    the panel where a clicked point's image is shown (:func:`_points_script`).

    The clean-against-adversarial view is there when the result kept the
    attacked regions (``adversarial_embeddings``).
    """
    from ._utils.figures import figure_script

    makers = {
        "sample_space": lambda: result.plot_sample_space(interactive=True),
        "layer_regions": lambda: result.plot_layer_regions(interactive=True),
    }
    if result.emergence_frames:
        makers["sample_evolution"] = lambda: result.plot_sample_evolution(
            interactive=True
        )
    if _adversarial_pairs(result):
        makers["adversarial_regions"] = lambda: _adversarial_figure(result)
    n_kept = 0 if result.display_index is None else len(result.display_index)
    kept = (
        f"This page holds thumbnails of the {n_kept} images the run kept, of "
        f"{len(result.labels)}; a point of another image shows its name only."
    )
    views = {}
    for name, make in makers.items():
        element = f"plot3d-{name}"
        caption = _VIEW_CAPTIONS[name]
        views[name] = (
            f'<figure id="view-{name}"><div class="skvmf-view-row">'
            f'<div id="{element}" data-skvmf-view="3d" '
            f'role="img" aria-label="{_esc(caption)}"></div>'
            f"{_thumb_panel(name, element, kept)}</div>"
            f"{figure_script(make(), element)}"
            f"<figcaption>{_esc(caption)}</figcaption></figure>"
        )
    return views


def _adversarial_pairs(result: AnalysisResult) -> dict:
    """The attacked regions the result kept, by layer (empty when none)."""
    pairs = getattr(result, "adversarial_embeddings", None) or {}
    return {layer: v for layer, v in pairs.items() if v is not None and len(v["image"])}


def _adversarial_figure(result: AnalysisResult):
    """The clean-against-adversarial regions view, layers in analysis order."""
    from .plotting import plot_adversarial_regions_interactive

    pairs = _adversarial_pairs(result)
    order = [layer for layer in result.layers if layer in pairs]
    order += [layer for layer in pairs if layer not in order]
    return plot_adversarial_regions_interactive(
        {layer: pairs[layer] for layer in order},
        result.features.directions,
        classes=result.classes,
        image_ids=result._image_ids(),
        grid=result.features.grid,
    )


# what a point of each view stands for: an image, or a region of one
_VIEW_POINTS = {
    "sample_space": "image",
    "sample_evolution": "image",
    "layer_regions": "region",
    "adversarial_regions": "region",
}


def _thumb_panel(name: str, element: str, kept: str) -> str:
    """The panel beside a view where a clicked point's image is drawn;
    ``kept`` says which images the page holds."""
    what = (
        "its image, with the region outlined (region (r, c) of the layer's "
        "H x W grid: cell (r, c) of the image cut into H x W equal cells, as "
        "in the knowledge-point masks)"
        if _VIEW_POINTS[name] == "region"
        else "its image"
    )
    return (
        f'<aside class="skvmf-thumb" id="thumb-{name}" '
        f'data-skvmf-thumb-for="{element}" aria-live="polite">'
        "<h4>Image behind a point</h4>"
        f'<canvas width="{_THUMB_CANVAS}" height="{_THUMB_CANVAS}" '
        'aria-label="the image of the clicked point"></canvas>'
        f"<p>Click a point to see {what}. {_esc(kept)}</p></aside>"
    )


_THUMB_CANVAS = 192  # pixels of the panel's drawing
_THUMB_SIDE = 48  # longest side of an embedded thumbnail


def _thumbnails(result: AnalysisResult, max_side: int = _THUMB_SIDE):
    """The result's thumbnails (``thumbnails`` at the rows ``thumbnail_index``
    of ``features``; for an older result, its ``display_images``) as one
    sprite sheet: a PNG grid of
    thumbnails no larger than ``max_side``, as the report's click panels
    draw them. Returns ``(png bytes, rows, (h, w), columns)``, or None when
    the result kept no image."""
    from PIL import Image

    if getattr(result, "thumbnails", None) is not None:
        pix, rows = result.thumbnails, result.thumbnail_index
    else:  # a result from before thumbnails were kept: the display images
        images, rows = result.display_images, result.display_index
        if images is None or rows is None or not len(rows):
            return None
        pix = thumbnails(
            images, np.arange(len(images)), result.mean, result.std, max_side
        )
    if rows is None or not len(rows):
        return None
    tiles = [Image.fromarray(p) for p in pix]
    height, width = pix.shape[1:3]
    columns = int(np.ceil(np.sqrt(len(tiles))))
    sheet = Image.new(
        tiles[0].mode,
        (columns * width, int(np.ceil(len(tiles) / columns)) * height),
        0 if tiles[0].mode == "L" else (0, 0, 0),
    )
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % columns) * width, (k // columns) * height))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    return buf.getvalue(), np.asarray(rows), (height, width), columns


def _points_data(result: AnalysisResult, views) -> dict:
    """What the click panels need: the thumbnail sprite, the sprite slot and
    class of each kept image row, the region grid, and, for a view whose
    points are numbered otherwise, the map from its rows to ``features``
    rows."""
    sheet = _thumbnails(result)
    data = {
        "sprite": None,
        "size": None,
        "columns": 1,
        "images": {},
        "grid": list(result.features.grid) if result.features.grid else None,
        "views": {f"plot3d-{name}": {"points": _VIEW_POINTS[name]} for name in views},
    }
    if sheet is not None:
        png, rows, size, columns = sheet
        labels = result.labels
        data.update(
            sprite="data:image/png;base64," + base64.b64encode(png).decode("ascii"),
            size=list(size),
            columns=columns,
            images={
                str(int(row)): [slot, str(result.classes[int(labels[row])])]
                for slot, row in enumerate(rows)
            },
        )
    # the checkpoint frames hold the measured images only
    if (
        "sample_evolution" in views
        and result.emergence_labels is not None
        and result.eval_index is not None
    ):
        data["views"]["plot3d-sample_evolution"]["rows"] = [
            int(i) for i in result.eval_index
        ]
    return data


# Draws the clicked point's image into the panel beside its view: the
# thumbnail cut from the sprite, the region outlined (row-major on the
# grid, each region an equal cell of the image, as the masks figure draws
# it), and what the point is; text only through textContent.
_POINTS_JS = """(function(){
var D=JSON.parse(document.getElementById("skvmf-points").textContent);
var sprite=new Image();if(D.sprite){sprite.src=D.sprite;}
function say(panel,lines){var p=panel.querySelector("p");p.textContent="";
lines.forEach(function(t,i){if(i){p.appendChild(document.createElement("br"));}
p.appendChild(document.createTextNode(t));});}
function draw(panel,row,region){
var canvas=panel.querySelector("canvas"),ctx=canvas.getContext("2d");
var cell=D.images[String(row)];ctx.clearRect(0,0,canvas.width,canvas.height);
if(!cell){panel.dataset.shown="missing";return false;}
var h=D.size[0],w=D.size[1],s=Math.min(canvas.width/w,canvas.height/h);
var dw=w*s,dh=h*s,x0=(canvas.width-dw)/2,y0=(canvas.height-dh)/2;
var sx=(cell[0]%D.columns)*w,sy=Math.floor(cell[0]/D.columns)*h;
function paint(){ctx.clearRect(0,0,canvas.width,canvas.height);
ctx.imageSmoothingEnabled=false;ctx.drawImage(sprite,sx,sy,w,h,x0,y0,dw,dh);
if(region!==null&&D.grid){var gh=D.grid[0],gw=D.grid[1];
var bx=x0+(region%gw)*dw/gw,by=y0+Math.floor(region/gw)*dh/gh;
ctx.lineWidth=4;ctx.strokeStyle="#000";ctx.strokeRect(bx,by,dw/gw,dh/gh);
ctx.lineWidth=2;ctx.strokeStyle="#ffd400";ctx.strokeRect(bx,by,dw/gw,dh/gh);}
panel.dataset.shown="image";}
if(sprite.complete&&sprite.naturalWidth){paint();}
else{sprite.addEventListener("load",paint,{once:true});}
return true;}
function layerOf(el){var s=el._fullLayout&&el._fullLayout.sliders;
if(!s||!s.length){return null;}var st=s[0].steps[s[0].active];
return st?st.label:null;}
function onClick(el,panel){return function(ev){
var pt=ev&&ev.points&&ev.points[0];if(!pt||!pt.data||!pt.data.ids){return;}
var n=pt.pointNumber,key=String(pt.data.ids[n]).split(":");
var view=D.views[el.id]||{},row=+key[0],region=key.length>1?+key[1]:null;
if(view.rows){row=view.rows[row];}
var custom=pt.data.customdata?pt.data.customdata[n]:null;
var cell=D.images[String(row)],lines=[];
lines.push("image "+(custom?custom[0]:row)+(cell?", class "+cell[1]:""));
if(region!==null&&D.grid){var gw=D.grid[1],layer=layerOf(el);
lines.push("region ("+Math.floor(region/gw)+", "+(region%gw)+") of the "+
D.grid[0]+" x "+gw+" grid"+(layer?" at "+layer:"")+", outlined");}
if(el.id==="plot3d-adversarial_regions"&&custom){
lines.push("point: "+pt.data.name+"; the attack fooled the image: "+custom[2]);
lines.push("shown: the clean image (the attacked one is not kept)");}
if(!draw(panel,row,region)){lines.push("this run kept no pixels of this "+
"image (analyze(n_display=...) sets how many images it keeps)");}
panel.dataset.image=String(row);panel.dataset.region=region===null?"":String(region);
say(panel,lines);};}
window.addEventListener("load",function(){
document.querySelectorAll("[data-skvmf-view]").forEach(function(el){
var panel=document.querySelector('[data-skvmf-thumb-for="'+el.id+'"]');
if(panel&&el.on){el.on("plotly_click",onClick(el,panel));}});});
})();"""


def _points_script(result: AnalysisResult, views) -> str:
    """The click panels' data (JSON, not run) and the script that fills the
    panels; placed after the views."""
    from ._utils.figures import _json, _script_safe

    data = _script_safe(_json(_tables.jsonable(_points_data(result, views))))
    return (
        f'<script type="application/json" id="skvmf-points">{data}</script>'
        f"<script>{_POINTS_JS}</script>"
    )


def _plotly_head() -> str:
    """plotly.js from the installed plotly package, inline, once per page."""
    from ._utils.figures import plotly_bundle

    return f"<script>{plotly_bundle()}</script>"


def _table_html(records, caption=None) -> str:
    """A table; ``x``/``x_low``/``x_high`` columns shown as ``x [low, high]``."""
    if not records:
        return ""
    return _tables.to_html(_tables.with_intervals(list(records)), caption=caption)


def _findings_html(findings) -> str:
    if not findings:
        return ""
    rows = _tables.with_intervals(_tables.findings_rows(findings, wide=True))
    table = _tables.to_html(
        rows, caption="Findings (value [interval])", styles=_tables.VERDICT_STYLES
    )
    notes = "".join(f"<li>{_esc(n)}</li>" for n in _tables.findings_notes(findings))
    return table + (f'<ul class="verdicts">{notes}</ul>' if notes else "")


def _diagnostics_html(diagnostics) -> str:
    rows = _tables.diagnostics_rows(diagnostics)
    bad = sum(d["converged"] is False for d in diagnostics)
    head = (
        f"<p><strong>{bad} of {len(diagnostics)} fitted stages did not lower "
        "their loss.</strong></p>"
        if bad
        else f"<p>All {len(diagnostics)} fitted stages lowered their loss.</p>"
    )
    return head + _table_html(rows, "Loss of every fitted stage")


def _accuracy_rows(result: AnalysisResult) -> list[dict]:
    rows = [
        {
            "what": "network on the analysed images",
            "value": result.projection["dnn_accuracy"],
        },
        {
            "what": "projection agreement with the network",
            "value": result.projection["projection_agreement"],
        },
    ]
    for row in result.knowledge:
        if "vote_accuracy" in row:
            rows.append(
                {
                    "what": f"knowledge-point vote, {row['layer']}",
                    "value": row["vote_accuracy"],
                }
            )
    if result.emergence:
        seen = {}
        for row in result.emergence:
            seen.setdefault(row["iteration"], row.get("accuracy"))
        rows += [
            {"what": f"checkpoint at iteration {it}", "value": acc}
            for it, acc in seen.items()
            if acc is not None
        ]
    if result.attack:
        rows += [
            {"what": "clean images (attack)", "value": result.attack["accuracy_clean"]},
            {
                "what": "adversarial images",
                "value": result.attack["accuracy_adversarial"],
            },
            {"what": "attack success rate", "value": result.attack["success_rate"]},
        ]
    if result.distillation:
        seen = {}
        for row in result.distillation:
            seen.setdefault(row["model"], row.get("accuracy"))
        rows += [
            {"what": f"{model} on the analysed images", "value": acc}
            for model, acc in seen.items()
            if acc is not None
        ]
    return rows


def _check_extra(extra) -> dict:
    if extra is None:
        return {}
    if not isinstance(extra, Mapping):
        raise ValueError(
            f"extra must be a dict of name -> value; got {type(extra).__name__}"
        )
    out = {}
    for key, value in extra.items():
        if isinstance(value, Mapping):
            out[str(key)] = dict(value)
        elif isinstance(value, (list, tuple)) and not all(
            isinstance(row, Mapping) for row in value
        ):
            raise ValueError(
                f"extra[{key!r}] must be a scalar, a string, a dict or a list of "
                f"dict rows (a table); got a list with "
                f"{type(next(r for r in value if not isinstance(r, Mapping))).__name__}"
                " items"
            )
        elif isinstance(value, (list, tuple)):
            out[str(key)] = [dict(row) for row in value]
        elif isinstance(value, (str, int, float, bool, np.generic)) or value is None:
            out[str(key)] = value.item() if isinstance(value, np.generic) else value
        else:
            raise ValueError(
                f"extra[{key!r}] must be a scalar, a string, a dict or a list of "
                f"dict rows (a table); got {type(value).__name__}"
            )
    return out


# every table of AnalysisResult.save and every figure name: files of an
# earlier report in the same folder that this one may not rewrite
_OWN_STEMS = {
    "findings",
    "faithfulness",
    "diagnostics",
    "projection",
    "knowledge_points",
    "emergence",
    "adversarial",
    "attack",
    "distillation",
    "timings",
    "results",
    "extra",
    *_FIGURE_CAPTIONS,
}


def _remove_stale(fig_dir: Path, data_dir: Path) -> None:
    """Delete what an earlier report left under the names skvmf writes, so
    that no figure or table of a part not computed this time survives."""
    for folder, suffixes in ((fig_dir, (".png",)), (data_dir, (".csv", ".json"))):
        for path in folder.iterdir():
            if path.is_file() and path.suffix in suffixes and path.stem in _OWN_STEMS:
                path.unlink()


def _png(fig, dpi) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


@validate_params(
    {
        "result": [AnalysisResult],
        "directory": [str, os.PathLike],
        "title": [str],
        "extra": [None, Mapping],
        "dpi": [Interval(Integral, 10, None, closed="left")],
        "interactive": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def write_report(
    result: AnalysisResult,
    directory,
    *,
    title: str = "skvmf report",
    extra: Mapping | None = None,
    dpi: int = 100,
    interactive: bool = True,
) -> Path:
    """Write a self-contained HTML report of an analysis, with figures and data.

    The folder holds ``index.html`` (every figure embedded as a base64 PNG,
    inline CSS, no external resource: it opens offline; the 3-D views are
    also interactive plotly figures, with plotly's JavaScript embedded once),
    each figure as
    ``figures/<name>.png``, the tables as ``data/<table>.csv`` plus
    ``data/results.json`` (:meth:`AnalysisResult.save`), and the numbers
    each figure plots as ``data/<figure>.json`` (and ``data/<figure>.csv``
    when they form a flat table not already written). Every section has a
    short explanation of how to read it; sections appear only for what was
    computed (checkpoints, attack, students).

    Parameters
    ----------
    result : AnalysisResult
        The output of :func:`skvmf.analyze`.
    directory : str or path-like
        The report folder (created; existing files of the same names are
        replaced).
    title : str, default="skvmf report"
        Title of the page.
    extra : dict, optional
        More items to show, by name: a scalar or string goes into the run
        table; a list of dict rows is shown as its own table and written as
        ``data/<name>.csv``; a dict is shown as a two-column table. All
        of them are also written to ``data/extra.json``.
    dpi : int, default=100
        Resolution of the figures.
    interactive : bool, default=True
        Add the interactive 3-D views (turn, zoom, hover; a slider over the
        layers and over the training checkpoints), each in an element marked
        ``data-skvmf-view="3d"``. They need plotly and add about 5 MB
        (plotly's JavaScript bundle) to ``index.html``; ``False`` gives a
        page with PNGs only and no script.

    Returns
    -------
    pathlib.Path
        The path of ``index.html``.

    Examples
    --------
    >>> import skvmf
    >>> from skvmf.report import write_report
    >>> result = skvmf.analyze(model, images)  # doctest: +SKIP
    >>> write_report(result, "report", extra={"note": "first run"})  # doctest: +SKIP
    PosixPath('report/index.html')
    """
    extra = _check_extra(extra)
    directory = Path(directory)
    fig_dir, data_dir = directory / "figures", directory / "data"
    fig_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)

    _remove_stale(fig_dir, data_dir)
    written = result.save(data_dir)
    images = _write_figures(result, fig_dir, data_dir, dpi, written)
    extras = _write_extra(extra, data_dir, written)
    views = _interactive_views(result) if interactive else {}
    page = _Page(result, images, views).render(title, extras, written, directory)
    index = directory / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _write_figures(result, fig_dir, data_dir, dpi, written) -> dict[str, str]:
    """Every figure as a PNG file, its embedded HTML copy (returned, by name)
    and its numbers (``data/<figure>.json``, and ``.csv`` when flat)."""
    import matplotlib.pyplot as plt

    taken = {p.name for p in written.values()}
    figures = result.figures()
    images: dict[str, str] = {}
    try:
        for name, fig in figures.items():
            png = _png(fig, dpi)
            plt.close(fig)
            (fig_dir / f"{name}.png").write_bytes(png)
            images[name] = _figure_html(name, png)
            content, records = _figure_data(result, name)
            if content:
                path = data_dir / f"{name}.json"
                path.write_text(json.dumps(_tables.jsonable(content)), encoding="utf-8")
                written[f"figure:{name}"] = path
            if records and f"{name}.csv" not in taken:
                path = data_dir / f"{name}.csv"
                _tables.to_csv(records, path)
                written[f"figure_csv:{name}"] = path
                taken.add(path.name)
    finally:
        for fig in figures.values():
            plt.close(fig)
    return images


def _write_extra(extra, data_dir, written):
    """The user's extra items: row lists as CSV tables, everything as
    ``data/extra.json``. Returns (scalars, tables, mappings) for the page."""
    taken = {p.name for p in written.values()}
    tables, scalars, maps = {}, [], {}
    for key, value in extra.items():
        if isinstance(value, list):
            slug = _slug(key)
            if f"{slug}.csv" in taken or f"{slug}.json" in taken:
                slug = f"extra_{slug}"
            path = data_dir / f"{slug}.csv"
            if value:
                _tables.to_csv(value, path)
                written[f"extra:{key}"] = path
                taken.add(path.name)
            tables[key] = (value, path.name)
        elif isinstance(value, dict):
            maps[key] = value
        else:
            scalars.append({"setting": key, "value": value})
    if extra:
        path = data_dir / "extra.json"
        path.write_text(json.dumps(_tables.jsonable(extra), indent=2), encoding="utf-8")
        written["extra"] = path
    return scalars, tables, maps


class _Page:
    """The report page: sections in reading order, each an explanation, its
    figures and its tables; built by one method per part of the analysis."""

    def __init__(self, result, images, views):
        self.result, self.images, self.views = result, images, views
        self.sections: list[tuple[str, str]] = []

    def section(self, key, body, fmt=None):
        """Add section ``key``: its text, its 3-D views and figures, ``body``."""
        text = _TEXT[key].format(**(fmt or {}))
        views, images = self.views, self.images
        figs = "".join(views[n] for n in _SECTION_VIEWS.get(key, ()) if n in views)
        figs += "".join(images[n] for n in _SECTION_FIGURES.get(key, ()) if n in images)
        self.sections.append(
            (
                key,
                f'<section id="{key}"><h2>{_esc(_SECTION_TITLES[key])}</h2>'
                f'<p class="explain">{text}</p>{figs}{body}</section>',
            )
        )

    def findings(self):
        """The findings first: each verdict (holds, contradicted,
        inconclusive with the images that would decide it, not evaluated),
        with intervals, and where measured."""
        settings = self.result.settings
        held = settings.get("n_held_out_images", 0)
        where = (
            f"{held} held-out images (the estimators were fitted on "
            f"{settings.get('n_fit_images', '?')} others)"
            if held
            else "the images the estimators were fitted on (nothing held out)"
        )
        self.section(
            "findings",
            _findings_html(self.result.findings),
            {
                "where": where,
                "confidence": _esc(f"{100 * settings.get('confidence', 0.95):.0f}"),
                "n_repeats": _esc(settings.get("n_repeats", 1)),
            },
        )

    def run(self, extra_scalars):
        """Settings, timings and accuracies of the run."""
        result = self.result
        settings = (
            [{"setting": "classes", "value": ", ".join(map(str, result.classes))}]
            + _flatten(result.settings)
            + extra_scalars
        )
        timings = [{"step": k, "seconds": v} for k, v in result.timings.items()]
        self.section(
            "run",
            _table_html(settings, "Settings")
            + _table_html(timings, "Timings (seconds)")
            + _table_html(_accuracy_rows(result), "Accuracy"),
        )

    def knowledge(self):
        """Projection quality, knowledge points per layer, regions and masks."""
        result = self.result
        self.section(
            "projection", _table_html([result.projection], "Projection quality")
        )
        self.section(
            "knowledge",
            _table_html(
                _tables.select(result.knowledge, _tables.KNOWLEDGE_COLUMNS),
                "Knowledge points per image",
            ),
            {"tau": _esc(result.counter.tau)},
        )
        if "layer_regions" in self.images:
            self.section("regions", "")
        if "knowledge_masks" in self.images:
            self.section("masks", "")

    def emergence(self):
        """Knowledge points by checkpoint and layer."""
        emergence = self.result.emergence
        self.section(
            "emergence",
            _table_html(
                _tables.pivot(emergence, "mean_count"),
                "Knowledge points per image, by checkpoint and layer",
            )
            + _table_html(
                _tables.pivot(emergence, "mean_reliable"),
                "Reliable knowledge points per image",
            ),
        )

    def adversarial(self):
        """The attack and how each layer's regions moved."""
        attack = self.result.attack or {}
        self.section(
            "adversarial",
            (_table_html([attack], "Attack") if attack else "")
            + _table_html(self.result.adversarial, "Per layer"),
            {
                "epsilon": _esc(f"{attack.get('epsilon', float('nan')):.3g}"),
                "n_steps": _esc(attack.get("n_steps", "?")),
            },
        )

    def distillation(self):
        """Teacher and students side by side."""
        cols = (
            "model",
            "layer",
            "accuracy",
            "mean_count",
            "mean_reliable",
            "reliable_ratio",
            "reliable_minus_teacher",
        )
        self.section(
            "distillation",
            _table_html(
                _tables.select(self.result.distillation, cols), "Teacher and students"
            ),
        )

    def faithfulness(self):
        """Deletion and insertion areas of the maps."""
        faith = self.result.faithfulness
        self.section(
            "faithfulness",
            _table_html(faith["table"], "Areas under the curves"),
            {"confidence": _esc(f"{100 * faith.get('confidence', 0.95):.0f}")},
        )

    def extra(self, extra_tables, extra_maps):
        """The user's extra tables and mappings."""
        body = ""
        for key, (records, filename) in extra_tables.items():
            body += f"<h3>{_esc(key)}</h3>" + (
                _table_html(records)
                + f'<p class="meta"><a href="data/{_esc(filename)}">CSV</a></p>'
                if records
                else "<p>(empty)</p>"
            )
        for key, mapping in extra_maps.items():
            body += f"<h3>{_esc(key)}</h3>" + _table_html(_flatten(mapping))
        self.section("extra", body)

    def files(self, written, directory):
        """Links to every file of the report."""
        files = sorted(
            {p.relative_to(directory).as_posix() for p in written.values()}
            | {f"figures/{n}.png" for n in self.images}
        )
        self.section(
            "files",
            "<ul>"
            + "".join(f'<li><a href="{_esc(f)}">{_esc(f)}</a></li>' for f in files)
            + "</ul>",
        )

    def render(self, title, extras, written, directory) -> str:
        """Every section that has something to show, then the HTML document."""
        result = self.result
        extra_scalars, extra_tables, extra_maps = extras
        self.findings()
        self.run(extra_scalars)
        self.knowledge()
        for key in ("emergence", "adversarial", "distillation", "faithfulness"):
            # the attacked regions' view alone is reason for the attack's section
            if getattr(result, key) or (
                key == "adversarial" and "adversarial_regions" in self.views
            ):
                getattr(self, key)()
        if result.diagnostics:
            self.section("diagnostics", _diagnostics_html(result.diagnostics))
        if extra_tables or extra_maps:
            self.extra(extra_tables, extra_maps)
        self.files(written, directory)
        return self.document(title)

    def document(self, title) -> str:
        """The HTML page: header, contents and the sections."""
        from . import __version__

        result = self.result
        nav = "".join(
            f'<li><a href="#{key}">{_esc(_SECTION_TITLES[key])}</a></li>'
            for key, _ in self.sections
        )
        now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        meta = (
            f"skvmf {_esc(__version__)} &middot; {_esc(now)} &middot; "
            f"{len(result.labels)} images &middot; {len(result.classes)} classes "
            f"&middot; layers {_esc(', '.join(result.layers))}"
        )
        intro = _INTRO.format(n_components=_esc(result.settings.get("n_components", 3)))
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(title)}</title><style>{_CSS}</style>"
            + (_plotly_head() if self.views else "")
            + "</head><body>"
            f'<header><h1>{_esc(title)}</h1><p class="meta">{meta}</p>'
            f"<p>{intro}</p></header>"
            f"<nav><h2>Contents</h2><ul>{nav}</ul></nav>"
            + "".join(body for _, body in self.sections)
            + (_points_script(result, self.views) if self.views else "")
            + "</body></html>\n"
        )
