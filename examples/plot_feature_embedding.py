"""
t-SNE views of what a network has learned
=========================================

t-SNE places high-dimensional points in the plane so that each point's
nearest neighbours stay near it. Coloured by class, it shows how far a
representation has sorted the images: raw pixels of different digits
overlap, a trained network's features form one island per class. The
*perplexity* sets how many neighbours each point tries to keep (roughly its
effective number of neighbours); small values show local detail, large
values more global structure.

This example uses :func:`~skvmf.embedding.embed_features` (t-SNE, UMAP or
PCA on any feature array), :func:`~skvmf.embedding.trustworthiness_report`
to check that an embedding keeps neighbourhoods, and
:func:`~skvmf.plotting.plot_embedding` to draw it.
"""

import matplotlib.pyplot as plt
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from skvmf.datasets import load_digits_images
from skvmf.embedding import embed_features, trustworthiness_report
from skvmf.extraction import TorchFeatureExtractor
from skvmf.plotting import plot_embedding
from skvmf.training import train_digits_classifier

# %%
# Features at several depths
# --------------------------
# Train the default digits network (VGG-16 with batch normalisation at 1/8
# width, about twenty seconds on a CPU). One extraction pass gives, for the
# 450 test images, the sample features (64-d) and the regional features of
# ``conv_22`` and ``conv_43``; averaging a layer's regions gives one vector
# per image (its global average pooling).
model, result = train_digits_classifier(random_state=0)
print(f"test accuracy: {result.test_accuracy:.3f}")

test = load_digits_images("test")
images, labels = test.images.numpy(), test.targets.numpy()
fs = TorchFeatureExtractor(model, layers=["conv_22", "conv_43"]).fit_transform(images)
views = {
    "pixels": images[:, 0].reshape(len(images), -1),
    "conv_22 (pooled)": fs.regions["conv_22"].mean(axis=1),
    "conv_43 (pooled)": fs.regions["conv_43"].mean(axis=1),
    "sample features": fs.sample,
}
for name, X in views.items():
    print(f"{name:18s} {X.shape}")

# %%
# One t-SNE per view
# ------------------
# Same perplexity and seed for all four. How well the classes separate in
# each map is measured by the 5-fold accuracy of a 5-nearest-neighbour
# classifier *on the 2-D embedding*. Averaging an early layer over the image
# throws away where its edges are, so ``conv_22`` pooled separates the
# digits worse than the pixels do; by ``conv_43`` the classes are sorted, and
# the sample features are cleanly separated.
embeddings = {}
fig, axes = plt.subplots(1, 4, figsize=(16, 4))
for ax, (name, X) in zip(axes, views.items()):
    Z = embed_features(X, perplexity=30, random_state=0)
    embeddings[name] = Z
    knn = cross_val_score(KNeighborsClassifier(5), Z, labels, cv=5).mean()
    print(f"{name:18s} 5-NN accuracy in the t-SNE plane: {knn:.3f}")
    plot_embedding(
        Z, labels, ax=ax, title=f"{name}\n5-NN acc. {knn:.2f}", legend=name == "pixels"
    )
plt.show()

# %%
# Can the picture be trusted?
# ---------------------------
# Trustworthiness penalises points that are neighbours in the plane but not
# in the original space (false neighbours); continuity penalises original
# neighbours that were torn apart. Both are 1 for a perfect embedding.
report = trustworthiness_report(views["sample features"], embeddings["sample features"])
for k, t, c in zip(
    report["n_neighbors"], report["trustworthiness"], report["continuity"]
):
    print(f"k={k:2d}: trustworthiness {t:.3f}, continuity {c:.3f}")

# %%
# The perplexity
# --------------
# The sample features at two more perplexities. A small perplexity breaks
# classes into small clumps; a larger one keeps them whole and shows which
# classes sit next to each other.
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, perplexity in zip(axes, (5, 60)):
    Z = embed_features(views["sample features"], perplexity=perplexity, random_state=0)
    plot_embedding(Z, labels, ax=ax, title=f"perplexity {perplexity}", legend=False)
plt.show()

# %%
# PCA, for comparison, is linear and keeps global distances: a faithful but
# more crowded view. Its first two components explain this share of the
# variance of the sample features:
X = views["sample features"]
Z = embed_features(X, method="pca", n_components=2)
centred = X - X.mean(axis=0)
explained = (Z**2).sum() / (centred**2).sum()
print(f"variance explained by two principal components: {explained:.2f}")
fig = plot_embedding(Z, labels, title="PCA of the sample features")
plt.show()
