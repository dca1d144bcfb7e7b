"""
Where an adversarial attack acts, layer by layer
================================================

An adversarial perturbation changes a network's prediction while leaving the
image almost unchanged. The paper asks where in the network the change
happens: attack the images, embed the adversarial regional features with the
Lambda learned on the *clean* images (so clean and adversarial regions share
coordinates), and measure, per layer, how far the same regions moved. Its
poster finds almost no movement up to conv_33 and most of it at conv_53, and
knowledge points of the adversarial class that are mostly *other regions*
than those of the original class.

:func:`skvmf.analysis.analyze` does this with ``attack=``, running
:func:`skvmf.attacks.pgd_attack` (projected gradient descent under an L-inf
budget, Madry et al., 2018) on the analysed images.
"""

import matplotlib.pyplot as plt
import numpy as np

from skvmf.analysis import analyze
from skvmf.attacks import pgd_attack
from skvmf.datasets import load_digits_images, subset_per_class
from skvmf.plotting import plot_knowledge_masks
from skvmf.training import train_digits_classifier

# %%
# Train, analyse, attack
# ----------------------
# A small VGG-16 trained on the digits (about twenty seconds), 8 test images
# per digit, three layers. ``epsilon`` is in pixel units (the images are
# in [0, 1] before normalisation; ``analyze`` passes the dataset's mean and
# std to the attack): every pixel may move by at most 0.03, in 10 signed
# gradient steps. That is enough to fool the network on almost every image
# (0.1 fools it on all of them, but then moves every layer a lot). Half the
# images are held out of every fit; the attack and its measurements use them.
# The three repeats of the analysis run in two processes (``n_jobs=2``).
model, training = train_digits_classifier(random_state=0)
data = subset_per_class(load_digits_images("test"), 8, random_state=0)
attack = {"epsilon": 0.03, "n_steps": 10}
result = analyze(
    model,
    data,
    layers=["conv_33", "conv_43", "conv_53"],
    attack=attack,
    n_jobs=2,
    random_state=0,
)
print(result.attack)

# %%
# How far the regions moved
# -------------------------
# Per layer, the mean ``1 - cos`` between each region's clean and
# adversarial embedding (a change of direction) and the mean absolute change
# of its strength (on the layer's normalised scale, where the mean clean
# strength is 1), then the knowledge points per image before and after.
# The change grows with depth, mostly in direction: the attack acts through
# the high layers. The number of knowledge points hardly changes, but at
# conv_53 almost none of them is reliable any more.
for row in result.adversarial:
    print(
        f"{row['layer']}: 1 - cos {row['mean_one_minus_cos']:.3f}, "
        f"|strength change| {row['mean_strength_change']:.3f}, "
        f"points {row['points_clean']:.1f} -> {row['points_adversarial']:.1f}, "
        f"reliable {row['reliable_clean']:.1f} -> {row['reliable_adversarial']:.1f}"
    )
fig = result.plot_adversarial_change()

# %%
# ``adversarial_class_points`` counts, per image, the knowledge points that
# point at the class the attack produced, and ``overlap_with_clean_points``
# the fraction of them sitting on a cell that held a knowledge point of the
# original class before the attack. As in the paper, most of the evidence
# for the adversarial class sits on other regions than the evidence for the
# true class did: the attack builds new knowledge points rather than
# turning the old ones.
for row in result.adversarial:
    print(
        f"{row['layer']}: adversarial-class points/image "
        f"{row['adversarial_class_points']:.2f}, of which on former points of the "
        f"true class {row['overlap_with_clean_points']:.2f}"
    )

# %%
# One image before and after
# --------------------------
# The fitted estimators of the result apply to any new image without
# refitting. We re-run the same attack (same seed, same settings as inside
# ``analyze``) to get the adversarial images themselves, and push them
# through the clean extractor, projector and aligner.
X, y = data.images.numpy(), data.targets.numpy()
adv = pgd_attack(model, X, y, **attack, mean=data.mean, std=data.std, random_state=0)
adv_features = result.aligner.transform(
    result.projector.transform(result.extractor.transform(adv.images))
)
print(f"attack success rate: {adv.success_rate:.2f}")

# %%
# A successfully attacked image, clean (top) and adversarial (bottom), with
# the knowledge points of conv_53. Colours are categories; a solid border
# marks a point of the image's true label.
fooled = np.flatnonzero((adv.adv_pred != y) & (adv.clean_pred == y))
pick = fooled[:4]
counter = result.counter
clean_points, clean_cats = counter.masks(result.features[pick], layer="conv_53")
adv_points, adv_cats = counter.masks(adv_features[pick], layer="conv_53")
fig = plot_knowledge_masks(
    np.concatenate([X[pick], adv.images[pick]]),
    np.concatenate([clean_points, adv_points]),
    np.concatenate([clean_cats, adv_cats]),
    result.features.grid,
    labels=np.concatenate([y[pick], y[pick]]),
    classes=data.classes,
    mean=data.mean,
    std=data.std,
    n_cols=len(pick),
    title="conv_53 knowledge points: clean (top), adversarial (bottom)",
)
for k, i in enumerate(pick):
    fig.axes[k + len(pick)].set_title(
        f"label {data.classes[y[i]]}, predicted {data.classes[adv.adv_pred[i]]}",
        fontsize=8,
    )

# %%
# The perturbation itself is faint: the largest change of a pixel is
# epsilon, in units of the [0, 1] pixel range.
pixels = adv.perturbation[pick] * np.asarray(data.std).reshape(1, -1, 1, 1)
fig, axes = plt.subplots(1, len(pick), figsize=(2 * len(pick), 2.2))
for ax, delta in zip(axes, pixels):
    ax.imshow(
        delta[0], cmap="coolwarm", vmin=-attack["epsilon"], vmax=attack["epsilon"]
    )
    ax.axis("off")
fig.suptitle("perturbation (channel 0, pixel units)")
plt.show()
