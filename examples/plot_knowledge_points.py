"""
Knowledge points, step by step
==============================

The method of Li, Wang and Zhang (NeurIPS 2021) in its four estimators, run
one after the other by hand on a small VGG-16 trained on scikit-learn's
digits:

1. :class:`~skvmf.extraction.TorchFeatureExtractor`: one forward pass gives
   each image's sample feature f(x), its soft labels P(y|x) and the regional
   features of the analysed layers on a common grid;
2. :class:`~skvmf.projection.SampleProjector`: learns M so that
   ``g = M f / s`` lives in three dimensions where a revised vMF category
   model reproduces the network's soft labels (the category directions mu_c
   come out of this step);
3. :class:`~skvmf.alignment.RegionalAligner`: learns, per layer, Lambda so
   that the regions ``h = Lambda f^(r) / s_r`` enter that same space;
4. :class:`~skvmf.knowledge.KnowledgePointCounter`: a region whose category
   posterior exceeds tau = 0.4 is a knowledge point, reliable when it points
   at the image's label.

:func:`skvmf.analysis.analyze` runs exactly these steps in one call (the
other tutorials use it); doing them by hand shows what each one adds.
"""

import numpy as np

from skvmf.alignment import RegionalAligner
from skvmf.datasets import load_digits_images, subset_per_class
from skvmf.extraction import TorchFeatureExtractor
from skvmf.knowledge import KnowledgePointCounter
from skvmf.plotting import (
    plot_knowledge_counts,
    plot_knowledge_masks,
    plot_layer_regions,
    plot_sample_space,
)
from skvmf.projection import SampleProjector
from skvmf.training import train_digits_classifier

# %%
# A trained network and a few test images
# ---------------------------------------
# :func:`~skvmf.training.train_digits_classifier` trains torchvision's VGG-16,
# narrowed to 1/8 of its width, on 32-pixel digits (about twenty seconds on
# a CPU). The analysis needs only a modest number of images: here 8 test
# images of each digit, 80 in all.
model, training = train_digits_classifier(random_state=0)
print(f"test accuracy: {training.test_accuracy:.3f}")

data = subset_per_class(load_digits_images("test"), 8, random_state=0)
X, y = data.images.numpy(), data.targets.numpy()
classes = data.classes
print("images:", X.shape)

# %%
# 1. Extract
# ----------
# Three of the paper's layers, from the middle of the network to the last
# convolution. Every layer's map is average-pooled onto the grid of the
# deepest one (8 x 8 here), so region ``r`` is the same image area in every
# layer.
layers = ["conv_33", "conv_43", "conv_53"]
extractor = TorchFeatureExtractor(model, layers=layers).fit(X[:1])
features = extractor.transform(X)
print(features)

# %%
# 2. Project the samples
# ----------------------
# ``transform`` returns a copy of the FeatureSet with ``g`` (N, 3), the
# category directions ``directions`` (C, 3) and the priors. Two checks from
# the paper: the argmax of the projected model agrees with the network, and
# the strength ||g|| is high where the network is sure (it correlates
# negatively with the entropy of P(y|x)).
projector = SampleProjector(n_components=3, random_state=0).fit(features)
features = projector.transform(features)

P = features.soft_labels
entropy = -(P * np.log(P)).sum(axis=1)
strength = np.linalg.norm(features.g, axis=1)
print(f"agreement with the network: {projector.score(features):.3f}")
print(f"Pearson(||g||, entropy of P): {np.corrcoef(strength, entropy)[0, 1]:.2f}")

# %%
# The sample space: every image is a point, every category a direction, and
# a long vector is a confident image.
fig = plot_sample_space(features.g, y, features.directions, classes=classes)

# %%
# 3. Align each layer's regions
# -----------------------------
# One Lambda per layer, all aligned to the same g, so the layers share one
# space. Each image is compared with up to 100 others; with 80 images we use
# all 79 (the aligner would clip the number itself, with a warning).
# ``n_jobs=2`` fits the layers in two processes. The defaults
# ``scale="auto"`` and ``align_weight=1.0`` differ from the paper's reference
# code (see the user guide's page on deviations).
aligner = RegionalAligner(n_candidates=len(X) - 1, n_jobs=2, random_state=0)
features = aligner.fit_transform(features)
for layer in layers:
    h = features.h[layer]
    unit_g = features.g / np.linalg.norm(features.g, axis=1, keepdims=True)
    cos = np.einsum("nrd,nd->nr", h, unit_g) / np.linalg.norm(h, axis=-1)
    print(f"{layer}: h {h.shape}, mean cos(h, g) = {cos.mean():.2f}")

# %%
# 4. Count knowledge points
# -------------------------
# The counter rescales each layer so that its mean regional strength is 1,
# then reads every region's category posterior
# ``p(c|h) = softmax_c(kappa(||h||) cos(h, mu_c))``.
counter = KnowledgePointCounter(tau=0.4).fit(features, y)
table = counter.count(features, y)
print("layer     points/image  reliable/image  reliable ratio")
for row in table:
    print(
        f"{row['layer']:8s}  {row['mean_count']:12.1f}  "
        f"{row['mean_reliable']:14.1f}  {row['reliable_ratio']:14.2f}"
    )

# %%
# Deeper layers hold more reliable knowledge points. The paper reports that
# both the quantity and the quality of discriminative patterns rise with
# depth, for VGG-16 on Tiny ImageNet: 35, 36 and 45 points per image (of 196
# regions) at conv_33, conv_43 and conv_53, of which 33 %, 46 % and 63 %
# reliable. On our 64-region digits the reliable share rises much the same
# way, while the total count changes little.
fig = plot_knowledge_counts(table)

# %%
# Forward propagation: the same regions at every layer, drawn in the shared
# space after the counter's rescaling. Knowledge points are coloured by the
# category they point at; the others are grey. At conv_33 the knowledge
# points scatter widely around the category directions; at conv_53 they
# gather tightly along them.
rescaled, region_labels = {}, {}
for layer in layers:
    rescaled[layer] = features.h[layer] / counter.scales_[layer]
    points, categories = counter.masks(features, layer=layer)
    region_labels[layer] = np.where(points, categories, -1)
fig = plot_layer_regions(
    rescaled, features.directions, region_labels=region_labels, classes=classes
)

# %%
# Where the knowledge points are
# ------------------------------
# The deepest layer's knowledge points over one image of each digit: a
# coloured cell is a knowledge point of that colour's category, with a solid
# border when it is reliable and a dashed one when it points at another
# digit.
first = np.array([np.flatnonzero(y == c)[0] for c in range(len(classes))])
points, categories = counter.masks(features[first], layer="conv_53")
fig = plot_knowledge_masks(
    X[first],
    points,
    categories,
    features.grid,
    labels=y[first],
    classes=classes,
    mean=data.mean,
    std=data.std,
    n_cols=5,
    title="Knowledge points of conv_53 (solid border: reliable)",
)

# %%
# The counter is also a classifier: each image's knowledge points vote for
# a category, and an image without any knowledge point counts as wrong. The
# vote accuracy therefore measures both how often a layer has knowledge
# points on an image and how often they point the right way; it is the score
# that a grid search over tau maximises (see the pipeline tutorial).
for layer in layers:
    vote = KnowledgePointCounter(tau=0.4, layer=layer).fit(features, y)
    covered = counter.masks(features, layer=layer)[0].any(axis=1).mean()
    print(
        f"{layer}: images with knowledge points {covered:.2f}, "
        f"vote accuracy {vote.score(features, y):.2f}"
    )
