"""skvmf: see and count what a convolutional network has learned, layer by layer.

The distribution (:mod:`skvmf.vmf`) and :class:`RevisedVMFMixture` need only
numpy and scipy; everything that touches a network imports torch on first use,
so ``import skvmf`` stays light.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it; resolved on first attribute access
_LAZY = {
    "FeatureSet": "skvmf.features",
    "RevisedVMFMixture": "skvmf.mixture",
    "TorchFeatureExtractor": "skvmf.extraction",
    "SampleProjector": "skvmf.projection",
    "procrustes_rotation": "skvmf.projection",
    "RegionalAligner": "skvmf.alignment",
    "match_regions": "skvmf.importance",
    "fit_importance_weights": "skvmf.importance",
    "KnowledgePointCounter": "skvmf.knowledge",
    "analyze": "skvmf.analysis",
    "write_report": "skvmf.report",
    "AnalysisResult": "skvmf.analysis",
    "pgd_attack": "skvmf.attacks",
    "distill": "skvmf.distillation",
    "load_digits_images": "skvmf.datasets",
    "load_image_folder": "skvmf.datasets",
    "load_cifar10": "skvmf.datasets",
    "load_model": "skvmf.sources",
    "load_data": "skvmf.sources",
    "load_checkpoints": "skvmf.sources",
    "make_classifier": "skvmf.architectures",
    "make_vit_classifier": "skvmf.architectures",
    "make_digits_classifier": "skvmf.architectures",
    "train_classifier": "skvmf.training",
    "Trainer": "skvmf.training",
    "train_digits_classifier": "skvmf.training",
    "input_gradient": "skvmf.saliency",
    "saliency_map": "skvmf.saliency",
    "guided_backprop": "skvmf.saliency",
    "cam": "skvmf.saliency",
    "grad_cam": "skvmf.saliency",
    "ActivationMaximizer": "skvmf.synthesis",
    "maximize_activation": "skvmf.synthesis",
    "feature_maps": "skvmf.featuremaps",
    "top_activating": "skvmf.featuremaps",
    "out_of_sample_table": "skvmf.featuremaps",
    "CategoryHierarchy": "skvmf.hierarchy",
    "FilterPredictionTree": "skvmf.prediction_tree",
    "deletion_insertion": "skvmf.faithfulness",
    "knowledge_point_map": "skvmf.faithfulness",
    "compare_faithfulness": "skvmf.faithfulness",
    "plot_faithfulness": "skvmf.faithfulness",
    "FeatureEmbedding": "skvmf.embedding",
    "embed_features": "skvmf.embedding",
}

# submodules reachable as attributes (``skvmf.vmf``, ``skvmf.datasets`` ...)
_SUBMODULES = {
    "vmf",
    "mixture",
    "features",
    "devices",
    "extraction",
    "projection",
    "alignment",
    "knowledge",
    "analysis",
    "attacks",
    "distillation",
    "datasets",
    "models",
    "architectures",
    "training",
    "importance",
    "prediction_tree",
    "sources",
    "objectives",
    "saliency",
    "synthesis",
    "featuremaps",
    "hierarchy",
    "embedding",
    "faithfulness",
    "plotting",
    "report",
    "cli",
}

__all__ = sorted([*_LAZY, *_SUBMODULES, "__version__"])


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = import_module(f"skvmf.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'skvmf' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
