"""
A filter-wise prediction tree for one digit
===========================================

Which filters of a layer decide how a network recognises one category? A
filter-wise prediction tree (Algorithm 2 of the report *What do CNN neurons
learn: Visualization & Clustering*) clusters the images of one class by
their feature maps and records, at every merge, a *critical filter*:

1. every image starts as a leaf holding all the layer's filters;
2. the two closest nodes (distance ``(1 - cos) / 2`` of their maps) merge
   into a node whose map is their mean;
3. the critical filter of that merge is the shared filter whose removal
   lowers the cosine between the two nodes the most; the new node keeps the
   shared filters *minus* the critical one;
4. this repeats until every child of the root holds at most one filter, or
   until one node is left.

Going down the tree, each node says which filter separates its two
branches. A new image then follows a *path* from the root to the most
similar training image, meeting the critical filters on the way.
"""

import matplotlib.pyplot as plt
import numpy as np

from skvmf.datasets import load_digits_images
from skvmf.featuremaps import feature_maps
from skvmf.hierarchy import FilterPredictionTree, critical_filter
from skvmf.plotting import plot_feature_maps, plot_prediction_tree
from skvmf.training import train_digits_classifier

# %%
# Feature maps of one class
# -------------------------
# Train the default digits network (VGG-16 with batch normalisation at 1/8
# width, about twenty seconds on a CPU) and take the ``conv_53`` maps (64
# filters of 8 x 8) of 24 training images of the digit 3.
model, result = train_digits_classifier(random_state=0)
print(f"test accuracy: {result.test_accuracy:.3f}")

train = load_digits_images("train")
test = load_digits_images("test")
digit = 3
images = train.images[train.targets == digit][:24].numpy()
maps = feature_maps(model, images, "conv_53")
print("maps:", maps.shape)

# %%
# Growing the tree
# ----------------
# With no more images than filters every pair of nodes shares a filter, so
# the 24 leaves merge 23 times into a single child of the root.
tree = FilterPredictionTree().fit(maps)
print("merges:", tree.n_merges_, "| children of the root:", tree.root_children_)
for node in tree.nodes_[-4:]:
    print(
        f"node {node.id}: children {node.children}, critical filter "
        f"{node.critical_filter}, keeps {len(node.filters)} filters, "
        f"distance {node.distance:.4f}"
    )

# %%
# What "critical" means, for the last merge: the ratio
# ``cos(u without F, v without F) / cos(u, v)`` for every shared filter F;
# the critical filter has the smallest ratio. :func:`critical_filter`
# recomputes it from the two children's maps.
last = tree.nodes_[-1]
u, v = (tree.nodes_[child] for child in last.children)
best, ratios = critical_filter(u.vector, v.vector, u.filters, v.filters)
order = np.argsort(ratios)
print("critical filter:", best, "(tree says", last.critical_filter, ")")
print("smallest ratios:", np.round(ratios[order[:3]], 4))

# %%
# The path of a new image
# -----------------------
# A test image of a 3 goes down from the root: at every node it takes the
# child most similar to it on the filters the two children share.
new_map = feature_maps(
    model, test.images[test.targets == digit][:1].numpy(), "conv_53"
)[0]
path = tree.path(new_map)
print("nodes visited:", path.nodes)
print("critical filters met:", path.critical_filters)
print("ends at training image", path.leaf)

fig = plot_prediction_tree(tree, path=path)
fig.set_size_inches(11, 5)
plt.show()

# %%
# The critical filters met by the new image, as maps: the evidence that
# decided at each branch of its path.
fig = plot_feature_maps(
    new_map,
    channels=path.critical_filters[:8],
    ncols=8,
    title="conv_53 maps of the new image at its critical filters",
)
fig.set_size_inches(12, 2.2)
plt.show()
