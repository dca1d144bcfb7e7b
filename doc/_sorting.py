"""Order of the gallery: the method first, then the classic views.

The method: the distribution, the features, the knowledge points step by
step and as a scikit-learn pipeline, then the paper's three studies
(training, attack, distillation).

sphinx-gallery sorts the scripts of a gallery with this key (named in
``conf.py`` as ``"_sorting.GalleryOrder"``). Scripts not listed come after the
listed ones, by file name.
"""

ORDER = (
    "plot_vmf_mixture.py",
    "plot_revised_kappa.py",
    "plot_feature_extraction.py",
    "plot_knowledge_points.py",
    "plot_pipeline_gridsearch.py",
    "plot_emergence_training.py",
    "plot_adversarial_attack.py",
    "plot_distillation.py",
    "plot_vit_knowledge_points.py",
    "plot_faithfulness.py",
    "plot_saliency_gradcam.py",
    "plot_activation_maximization.py",
    "plot_feature_embedding.py",
    "plot_category_hierarchy.py",
    "plot_filter_prediction_tree.py",
)


class GalleryOrder:
    """Sort key: position in ``ORDER``, then file name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        rank = ORDER.index(filename) if filename in ORDER else len(ORDER)
        return (rank, filename)

    def __repr__(self):
        return f"<{type(self).__name__}>"
