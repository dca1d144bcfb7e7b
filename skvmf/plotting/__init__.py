"""Matplotlib figures for every analysis in skvmf; each function returns its Figure.

- The paper's analysis: :func:`plot_sample_space`, :func:`plot_layer_regions`,
  :func:`plot_knowledge_masks`, :func:`plot_knowledge_counts`,
  :func:`plot_emergence`, :func:`plot_sample_evolution`,
  :func:`plot_adversarial_change`,
  :func:`plot_distillation`, :func:`plot_findings`, :func:`plot_loss_curves`.
- Images: :func:`plot_feature_maps`, :func:`plot_saliency`,
  :func:`plot_top_activating`, :func:`plot_synthesis`,
  :func:`plot_out_of_sample`.
- Structure: :func:`plot_dendrogram`, :func:`plot_mst`,
  :func:`plot_prediction_tree`, :func:`plot_embedding`.
- Interactive 3-D views (plotly Figures, to turn, zoom and hover):
  :func:`plot_sample_space_interactive`,
  :func:`plot_layer_regions_interactive` (layer slider),
  :func:`plot_sample_evolution_interactive` (checkpoint slider),
  :func:`plot_adversarial_regions_interactive` (the same regions before
  and after an attack, joined by lines; layer slider).

Parameters are validated declaratively (scikit-learn's ``validate_params``)
and the data before drawing: NaN or infinite values, complex arrays, wrong
shapes, empty input, class indices out of range and channels-last images are
a ``ValueError`` naming the argument, never a figure with points silently
missing. Extreme magnitudes (1e-300..1e300) are drawn with overflow-safe
norms and colour scales.
"""

from ._analysis import (
    plot_adversarial_change,
    plot_distillation,
    plot_emergence,
    plot_findings,
    plot_knowledge_counts,
    plot_knowledge_masks,
    plot_layer_regions,
    plot_loss_curves,
    plot_sample_evolution,
    plot_sample_space,
)
from ._images import (
    plot_feature_maps,
    plot_out_of_sample,
    plot_saliency,
    plot_synthesis,
    plot_top_activating,
)
from ._interactive import (
    plot_adversarial_regions_interactive,
    plot_layer_regions_interactive,
    plot_sample_evolution_interactive,
    plot_sample_space_interactive,
)
from ._structure import plot_dendrogram, plot_embedding, plot_mst, plot_prediction_tree

__all__ = [
    "plot_adversarial_change",
    "plot_dendrogram",
    "plot_distillation",
    "plot_embedding",
    "plot_emergence",
    "plot_feature_maps",
    "plot_findings",
    "plot_knowledge_counts",
    "plot_knowledge_masks",
    "plot_layer_regions",
    "plot_adversarial_regions_interactive",
    "plot_layer_regions_interactive",
    "plot_loss_curves",
    "plot_mst",
    "plot_out_of_sample",
    "plot_prediction_tree",
    "plot_saliency",
    "plot_sample_evolution",
    "plot_sample_evolution_interactive",
    "plot_sample_space",
    "plot_sample_space_interactive",
    "plot_synthesis",
    "plot_top_activating",
]
