"""
Extracting a network's features
===============================

Every analysis in skvmf starts from three things a classifier computes for
each image: the *sample feature* f(x) (the input of the last fully-connected
layer), the *logits* z(x), and the *regional features* of some layers (each
layer's map, resized to one common grid, one K-vector per grid cell).
:class:`~skvmf.extraction.TorchFeatureExtractor` collects all of them in one
forward pass with hooks, for any ``torch.nn.Module``, and returns a
:class:`~skvmf.features.FeatureSet`.

This example uses a small VGG-16 built by :func:`skvmf.architectures.make_classifier`
for 32-pixel digits. The network is left untrained: the point here is the
data flow, not what the network knows (the other examples train one).
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skvmf.architectures import make_classifier
from skvmf.datasets import load_digits_images
from skvmf.extraction import TorchFeatureExtractor

# %%
# A network with the paper's layer names
# --------------------------------------
# ``make_classifier`` returns torchvision's own ``VGG`` class, adapted to
# small inputs and narrowed to 1/8 of the width. The extractor recognises the
# architecture from its structure, so the paper's aliases (``conv_12`` ...
# ``conv_53``: the last convolution of each block, after its ReLU) resolve to
# module names. With ``layers=None`` the paper's five layers are taken.
model = make_classifier(
    "vgg16", n_classes=10, width=0.125, batch_norm=True, random_state=0
)
train = load_digits_images("train")  # 1347 images, 3 x 32 x 32, normalised
test = load_digits_images("test")  # 450 images
X_train, y_train = train.images.numpy(), train.targets.numpy()
X_test, y_test = test.images.numpy(), test.targets.numpy()

extractor = TorchFeatureExtractor(model).fit(X_train[:1])
print("architecture:", extractor.architecture_)
for alias, module in zip(extractor.layer_names_, extractor.layers_):
    print(f"  {alias} -> model.{module}  output {extractor.layer_shapes_[alias]}")
print("sample feature: input of", extractor.sample_layer_)
print("common grid:", extractor.grid_)

# %%
# Anatomy of a FeatureSet
# -----------------------
# One pass over the test images. ``sample`` is (N, D), ``logits`` (N, C),
# and each entry of ``regions`` is (N, R, K): R = H * W grid cells of K
# channels. Early layers have larger maps; they are average-pooled onto the
# grid of the deepest layer (8 x 8 here), so region ``r`` means the same
# image area in every layer.
fs = extractor.transform(X_test)
print(fs)

# %%
# The soft labels are ``softmax(z / T)`` with temperature T = 4, the
# network's view of each image that the projection and the alignment try to
# reproduce.
z = fs.logits / fs.temperature
soft = np.exp(z - z.max(axis=1, keepdims=True))
soft /= soft.sum(axis=1, keepdims=True)
print("T =", fs.temperature, "| soft labels match:", np.allclose(fs.soft_labels, soft))

# %%
# A FeatureSet indexes by image like an array, so scikit-learn's splitters
# and ``GridSearchCV`` can pass it around. ``image_ids`` remembers where each
# image came from.
part = fs[[5, 17, 42]]
print(part.regions["conv_53"].shape, "images", part.image_ids)

# %%
# From a region back to the image
# -------------------------------
# Region ``r`` of the grid sits at row ``r // W`` and column ``r % W``;
# :meth:`~skvmf.features.FeatureSet.region_index` lists ``(image, row,
# column)`` for every row of
# :meth:`~skvmf.features.FeatureSet.region_rows`, which flattens a layer to
# (N * R, K) for estimators that want one row per region. On a 32-pixel
# image an 8 x 8 grid cell covers a 4 x 4 pixel square.
rows = fs.region_rows("conv_53")
index = fs.region_index()
strength = np.linalg.norm(rows, axis=1)
top = int(np.argmax(strength))
image, row, col = index[top]
height, width = fs.grid
cell = X_test.shape[-1] // width
print(f"strongest conv_53 region: image {image}, cell ({row}, {col}),")
r0, c0 = row * cell, col * cell
print(f"  pixels rows {r0}..{r0 + cell - 1}, columns {c0}..{c0 + cell - 1}")

# %%
# The strength ``||f^(r)||`` of every region of that image, per layer, drawn
# over the digit: the same grid in every layer.
fig, axes = plt.subplots(1, len(fs.layers) + 1, figsize=(13, 2.8))
digit = X_test[image, 0]
axes[0].imshow(digit, cmap="gray")
axes[0].add_patch(
    Rectangle(
        (col * cell - 0.5, row * cell - 0.5), cell, cell, fill=False, ec="red", lw=2
    )
)
axes[0].set_title(f"test image {image}")
for ax, layer in zip(axes[1:], fs.layers):
    norms = np.linalg.norm(fs.regions[layer][image], axis=1).reshape(height, width)
    ax.imshow(digit, cmap="gray", extent=(0, width, height, 0))
    ax.imshow(norms, cmap="magma", alpha=0.6, extent=(0, width, height, 0))
    ax.set_title(f"{layer} (K={fs.regions[layer].shape[2]})")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Regional feature strength on the common 8 x 8 grid")
plt.show()

# %%
# In a scikit-learn Pipeline
# --------------------------
# With ``output="sample"`` (or ``"logits"``, ``"soft_labels"``,
# ``"regions"``) the extractor is an ordinary transformer that returns one
# array. Here, logistic regression on the 64-d sample features of the
# *untrained* network already separates most digits: random convolutional
# features are far from useless.
pipe = make_pipeline(
    TorchFeatureExtractor(model, output="sample"),
    StandardScaler(),
    LogisticRegression(max_iter=2000),
)
pipe.fit(X_train, y_train)
print(f"test accuracy of the pipeline: {pipe.score(X_test, y_test):.3f}")
