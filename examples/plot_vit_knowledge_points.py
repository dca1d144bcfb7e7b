"""
Knowledge points of a vision transformer beside a CNN
=====================================================

The paper's method reads a network's *regions*: the cells of a convolutional
feature map. A vision transformer has regions too: its patch tokens. skvmf
reads them directly (the class token is dropped and the patch tokens are
folded into their grid), so :func:`skvmf.analysis.analyze` runs on a
transformer as it does on a CNN.

Two networks trained on the same digits:

- the default recipe, a VGG-16-BN of width 1/8 at 32 px (regions: an 8 x 8
  grid, layers ``conv_12`` ... ``conv_53``);
- its transformer variant, a small torchvision ``VisionTransformer`` at 16 px
  in 4 x 4 patches (regions: the 4 x 4 grid of patch tokens, layers
  ``block_1`` ... ``block_4``, one per encoder block).

Both are analysed on the same held-out digits, their per-layer knowledge
points and findings printed side by side, and their Grad-CAM maps compared.
"""

import matplotlib.pyplot as plt
import numpy as np

from skvmf.analysis import analyze
from skvmf.datasets import load_digits_images, subset_per_class
from skvmf.saliency import grad_cam
from skvmf.training import train_digits_classifier

# %%
# Two networks, one workload
# --------------------------
# ``train_digits_classifier("vit")`` trains the transformer (30 epochs, well
# under a minute on one CPU thread); the VGG recipe is the default.
networks = {}
for arch in ("vgg16", "vit"):
    model, training = train_digits_classifier(arch, random_state=0)
    networks[arch] = model
    print(
        f"{arch}: test accuracy {training.test_accuracy:.3f} "
        f"({training.n_iterations} steps, {training.train_time:.0f} s)"
    )

# The same 80 test digits (8 per class) at each network's input size.
sizes = {"vgg16": 32, "vit": 16}
data = {
    arch: subset_per_class(load_digits_images("test", size=size), 8, random_state=0)
    for arch, size in sizes.items()
}
assert np.array_equal(data["vgg16"].targets, data["vit"].targets)

# %%
# The analysis
# ------------
# ``layers=None`` takes each architecture's default layers: the last
# convolution of each VGG block, every encoder block of the 4-block ViT.
# Every figure is measured on held-out images with a 95 % interval.
results = {}
for arch, model in networks.items():
    d = data[arch]
    results[arch] = analyze(
        model, d.images.numpy(), d.targets.numpy(), classes=d.classes, random_state=0
    )
    print(f"{arch}: layers {results[arch].layers}, grid {results[arch].features.grid}")


# %%
# Knowledge points layer by layer
# -------------------------------
# Per layer: knowledge points per image and the reliable ratio (the share that
# points at the image's label). In both networks the deeper layers hold the
# more reliable knowledge points. The ViT has 16 regions per image against the
# VGG's 64, hence fewer points per image: compare the ratios, not the counts.
def interval(row, key):
    return f"{row[key]:.2f} [{row[key + '_low']:.2f}, {row[key + '_high']:.2f}]"


print(f"{'network':8} {'layer':8} {'points / image':>22} {'reliable ratio':>22}")
for arch, result in results.items():
    for row in result.knowledge:
        print(
            f"{arch:8} {row['layer']:8} {interval(row, 'mean_count'):>22} "
            f"{interval(row, 'reliable_ratio'):>22}"
        )

# %%
# The paper's findings, checked on each network
# ---------------------------------------------
for arch, result in results.items():
    print(f"-- {arch}")
    for f in result.findings:
        if f["value"] is None:  # not evaluated: the note says why
            print(f"{f['name']:34} {f['verdict']}: {f['note']}")
            continue
        print(
            f"{f['name']:34} {f['value']:+.3f} [{f['low']:+.3f}, {f['high']:+.3f}] "
            f"{f['verdict']}"
        )

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for ax, (arch, result) in zip(axes, results.items()):
    rows = result.knowledge
    x = np.arange(len(rows))
    ratio = np.array([r["reliable_ratio"] for r in rows])
    low = np.array([r["reliable_ratio_low"] for r in rows])
    high = np.array([r["reliable_ratio_high"] for r in rows])
    ax.errorbar(x, ratio, yerr=[ratio - low, high - ratio], marker="o", capsize=3)
    ax.set_xticks(x, [r["layer"] for r in rows])
    ax.set_title(arch)
    ax.set_ylim(0, 1)
axes[0].set_ylabel("reliable ratio (95 % interval)")
fig.suptitle("Knowledge points become more reliable with depth")
fig.tight_layout()

# %%
# Grad-CAM on both
# ----------------
# No reshape to write: the ViT's tokens are read as their 4 x 4 grid. At the
# output of a ViT's last block only the class token reaches the head (the
# patch tokens' gradient is zero, and skvmf refuses that layer), so Grad-CAM
# reads the last block's first LayerNorm, ``ln_1``.
layers = {"vgg16": "conv_53", "vit": "encoder.layers.encoder_layer_3.ln_1"}
pick = np.arange(0, 80, 8)[:6]  # one digit of six classes
maps = {
    arch: grad_cam(networks[arch], data[arch].images[pick], layer=layers[arch])
    for arch in networks
}
fig, axes = plt.subplots(3, len(pick), figsize=(1.6 * len(pick), 5.2))
for j, index in enumerate(pick):
    axes[0, j].imshow(data["vgg16"].images[index, 0], cmap="gray")
    axes[0, j].set_title(data["vgg16"].classes[data["vgg16"].targets[index]])
    for i, arch in enumerate(networks, start=1):
        axes[i, j].imshow(maps[arch][j], cmap="jet", vmin=0, vmax=1)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
axes[1, 0].set_ylabel("VGG conv_53")
axes[2, 0].set_ylabel("ViT block 4 ln_1")
fig.tight_layout()
plt.show()
