"""
A hierarchy of categories from a network's features
===================================================

Which digits does a trained network consider alike? Represent every class by
the mean of its images' sample features (the input of the last
fully-connected layer), measure the distance between two classes as
``(1 - cos) / 2`` of their means, and merge the closest two classes again and
again, a new node's distance to the others being the plain mean of its two
children's distances (WPGMA). This is Algorithm 1 of the report *What do CNN
neurons learn: Visualization & Clustering*; the minimum spanning tree of the
same distances gives a second, graph-shaped view.

:class:`~skvmf.hierarchy.CategoryHierarchy` does both; the dendrogram and the
tree are drawn by :func:`~skvmf.plotting.plot_dendrogram` and
:func:`~skvmf.plotting.plot_mst`.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.cluster.hierarchy import cophenet
from scipy.spatial.distance import squareform

from skvmf.datasets import load_digits_images
from skvmf.extraction import TorchFeatureExtractor
from skvmf.hierarchy import CategoryHierarchy
from skvmf.plotting import plot_dendrogram, plot_mst
from skvmf.training import train_digits_classifier

# %%
# Features of a trained network
# -----------------------------
# Train the default digits network (VGG-16 with batch normalisation at 1/8
# width, about twenty seconds on a CPU) and extract the 64-d sample features
# of the 450 test images.
model, result = train_digits_classifier(random_state=0)
print(f"test accuracy: {result.test_accuracy:.3f}")

test = load_digits_images("test")
images, labels = test.images.numpy(), test.targets.numpy()
features = TorchFeatureExtractor(model, output="sample").fit_transform(images)
print("sample features:", features.shape)

# %%
# The hierarchy
# -------------
# ``fit(X, y)`` averages the features per class, computes the distances, the
# merge tree (a scipy linkage matrix, ``linkage_``) and the minimum spanning
# tree (``mst_edges_``). The tree also exports to Newick format.
hierarchy = CategoryHierarchy(class_names=test.classes).fit(features, labels)
print(hierarchy.to_newick(precision=3))

# %%
# The first merges are the pairs of digits the network finds most alike
# (nodes 0-9 are the classes, node 10 + k is the k-th merge).
for a, b, height, size in hierarchy.linkage_[:4]:
    print(f"merge nodes {int(a)} and {int(b)} at {height:.3f} ({int(size)} classes)")

fig = plot_dendrogram(hierarchy, title="Digits, from the network's sample features")
plt.show()

# %%
# How faithful is the tree? The cophenetic correlation compares every
# pair's merge height in the tree with its original distance (1 is a
# perfect tree).
c, _ = cophenet(hierarchy.linkage_, squareform(hierarchy.distances_, checks=False))
print(f"cophenetic correlation: {c:.3f}")

# %%
# The minimum spanning tree
# -------------------------
# The lightest set of edges that connects every class. Nodes are placed by
# classical scaling of the distances, so close classes lie close on the page.
fig = plot_mst(hierarchy)
plt.show()

# %%
# Compared with raw pixels
# ------------------------
# The same algorithm on the pixels (one channel of the 32 x 32 inputs,
# flattened) gives a different tree: similarity of ink, not of what tells the classes
# apart. The network's features are also far better separated: the smallest
# distance between two class means is larger.
pixels = images[:, 0].reshape(len(images), -1)
pixel_hierarchy = CategoryHierarchy(class_names=test.classes).fit(pixels, labels)
off_diagonal = ~np.eye(len(test.classes), dtype=bool)
print(
    "smallest class distance, features:",
    hierarchy.distances_[off_diagonal].min().round(3),
    " pixels:",
    pixel_hierarchy.distances_[off_diagonal].min().round(3),
)
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
plot_dendrogram(hierarchy, ax=axes[0], title="network features")
plot_dendrogram(pixel_hierarchy, ax=axes[1], title="pixels")
plt.show()
