"""
Knowledge points beside Grad-CAM and guided backprop, measured
==============================================================

Knowledge points (the regions whose category posterior ``p(y = c | h)`` is
high) look like a saliency map. Are they as *faithful* to the network as the
attribution maps of the CAM literature? The deletion/insertion test answers
with numbers: remove the regions in a map's order (deletion) or put them back
into a blurred image (insertion) and track the probability of the predicted
class. A faithful map makes it fall fast (low deletion area) and rise fast
(high insertion area). A random order is the chance level.

Two networks trained on the same digits:

- the default recipe, a small VGG-16-BN at 32 px (an 8 x 8 region grid);
- the small vision transformer at 16 px in 4 x 4 patches (a 4 x 4 grid of
  patch tokens).

Each method's maps are scored on the same held-out digits, on the same units
(the analysis grid) and the same blurred baseline, with 95 % bootstrap
intervals over images.
"""

import matplotlib.pyplot as plt
import numpy as np

from skvmf.analysis import analyze
from skvmf.datasets import load_digits_images, subset_per_class
from skvmf.faithfulness import (
    compare_faithfulness,
    knowledge_point_map,
    plot_faithfulness,
)
from skvmf.saliency import grad_cam, guided_backprop
from skvmf.training import train_digits_classifier

# %%
# Two networks and their knowledge points
# ---------------------------------------
# 20 test digits per class; the analysis fits its estimators on half of them
# and measures on the other half (``result.eval_index``). One repeat is
# enough here: the maps come from the first repeat's estimators.
SETTINGS = {
    # input size, analysed layers, Grad-CAM layer
    "vgg16": (32, ["conv_43", "conv_53"], "conv_53"),
    # at a ViT's last block output only the class token reaches the head, so
    # Grad-CAM reads that block's first LayerNorm
    "vit": (16, ["block_3", "block_4"], "encoder.layers.encoder_layer_3.ln_1"),
}
networks, results, held_out = {}, {}, {}
for arch, (size, layers, _) in SETTINGS.items():
    model, training = train_digits_classifier(arch, random_state=0)
    data = subset_per_class(load_digits_images("test", size=size), 20, random_state=0)
    images, labels = data.images.numpy(), data.targets.numpy()
    result = analyze(
        model, images, labels, classes=data.classes, layers=layers, n_repeats=1
    )
    networks[arch], results[arch] = model, result
    held_out[arch] = images[result.eval_index]
    print(
        f"{arch}: test accuracy {training.test_accuracy:.3f}, grid "
        f"{result.features.grid}, {len(result.eval_index)} held-out images"
    )

# %%
# The maps
# --------
# :func:`~skvmf.faithfulness.knowledge_point_map` gives, per held-out image,
# the posterior of the predicted class at every region of a layer: the
# knowledge points before the threshold ``tau``. Beside them Grad-CAM and,
# on the CNN (the ViT's GELUs have no guided rule), guided backprop, reduced
# to one channel by the largest absolute value.
maps = {}
for arch, (_, layers, cam_layer) in SETTINGS.items():
    model, x = networks[arch], held_out[arch]
    maps[arch] = {
        f"knowledge points {layer}": knowledge_point_map(results[arch], layer=layer)
        for layer in layers
    }
    maps[arch]["grad-cam"] = grad_cam(model, x, layer=cam_layer)
    if arch == "vgg16":
        maps[arch]["guided backprop"] = np.abs(guided_backprop(model, x)).max(axis=1)

pick = np.arange(6) * 15  # six held-out digits
names = list(maps["vgg16"])
fig, axes = plt.subplots(len(names) + 1, len(pick), figsize=(9, 1.6 * (len(names) + 1)))
for j, i in enumerate(pick):
    axes[0, j].imshow(held_out["vgg16"][i, 0], cmap="gray")
    for row, name in enumerate(names, start=1):
        axes[row, j].imshow(maps["vgg16"][name][i], cmap="jet")
for row, name in enumerate(["digit", *names]):
    axes[row, 0].set_ylabel(name.replace("knowledge points", "KP"), fontsize="small")
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("VGG: knowledge points (posterior of the predicted class) and saliency")
fig.tight_layout()

# %%
# Deletion and insertion, with a random map as chance
# ---------------------------------------------------
# Every map is averaged onto the analysis grid, so every method removes the
# same units; 16 steps (4 regions per step on the VGG's 8 x 8 grid, one patch
# per step on the ViT's 4 x 4). The gains are paired differences from the
# random map (positive: better than chance).
comparisons = {
    arch: compare_faithfulness(networks[arch], held_out[arch], maps[arch], steps=16)
    for arch in SETTINGS
}


def cell(row, key):
    return f"{row[key]:.3f} [{row[key + '_low']:.3f}, {row[key + '_high']:.3f}]"


keys = ["deletion_auc", "insertion_auc", "deletion_gain", "insertion_gain"]
print(f"{'network':8} {'method':26}" + "".join(f"{k:>24}" for k in keys))
for arch, comparison in comparisons.items():
    for row in comparison.table:
        print(
            f"{arch:8} {row['method']:26}"
            + "".join(f"{cell(row, k):>24}" for k in keys)
        )

# %%
# The curves
# ----------
for arch, comparison in comparisons.items():
    plot_faithfulness(comparison, title=f"{arch}: mean curves, 95 % bands")
plt.show()

# %%
# Reading the table
# -----------------
# On the VGG every method beats the random order on insertion; guided
# backprop and Grad-CAM are the most faithful, and the knowledge points of
# ``conv_43`` beat chance on both curves while those of ``conv_53`` do so
# clearly only on insertion. On the ViT's coarse 4 x 4 grid the intervals are
# wide: Grad-CAM and the last block's knowledge points beat chance, block 3's
# do not. The knowledge points were never trained to rank regions for the
# network's decision: they say where the network's features already look like
# a category, which these curves show is related to, but not the same as,
# what the decision depends on. The measured numbers are in the user guide
# (:ref:`faithfulness`).
