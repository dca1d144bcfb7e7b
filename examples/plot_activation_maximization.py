r"""
Activation maximisation: the image a network prefers
====================================================

Activation maximisation looks for the input that a class, a layer or a single
filter responds to most, by gradient ascent on the pixels with the network
fixed:

.. math::

    x^\star = \arg\max_x \; \Phi(x) - \lambda_\alpha R_\alpha(x)
    - \lambda_{TV} R_{TV}(x),

where :math:`\Phi` is a logit, a probability, or the mean of a channel, and
the regularisers keep the image natural: the alpha-norm of the
mean-subtracted image penalises extreme pixels, the total variation
penalises high-frequency noise. Random shifts ("jitter"), small rotations and
occasional blurring during the ascent help as well (Yosinski et al., 2015).
This example runs :class:`~skvmf.synthesis.ActivationMaximizer` on a small
VGG-16 trained on scikit-learn's digits.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

from skvmf.datasets import load_digits_images
from skvmf.featuremaps import feature_maps
from skvmf.plotting import plot_synthesis
from skvmf.synthesis import ActivationMaximizer, channel_mean, logit
from skvmf.training import train_digits_classifier

# %%
# A trained network
# -----------------
# The default digits recipe: VGG-16 with batch normalisation at 1/8 width,
# 32-pixel inputs, six epochs (about twenty seconds on a CPU).
model, result = train_digits_classifier(random_state=0)
print(f"test accuracy: {result.test_accuracy:.3f}")

test = load_digits_images("test")
mean, std = np.asarray(test.mean), np.asarray(test.std)
# pixel values 0 and 1 in the network's (normalised) input space
bounds = ((0 - mean) / std).tolist(), ((1 - mean) / std).tolist()


def to_display(images):
    """Undo the normalisation: (N, 3, H, W) -> (N, H, W, 3) in [0, 1]."""
    return np.clip(images.transpose(0, 2, 3, 1) * std + mean, 0, 1)


def probability_of_target(images, targets):
    with torch.no_grad():
        proba = torch.softmax(model(torch.as_tensor(images)), dim=1).numpy()
    return proba[np.arange(len(targets)), targets]


# %%
# One image per class, with and without regularisation
# ----------------------------------------------------
# ``logit([0, 1, ..., 9])`` gives image ``i`` the objective "logit of class
# i"; all ten images are optimised together in one batch. Without any
# regulariser the ascent finds high-frequency patterns that the network
# scores confidently but that look like noise to us (the same weakness that
# adversarial examples exploit). Total variation and jitter give smoother
# images with broad, stroke-like structure.
#
# The network was trained on grey digits (three equal colour channels); the
# optimised images are free to use colour, which the network never saw.
classes = list(range(10))
settings = {
    "no regulariser": {},
    "TV + jitter + blur": {"lambda_tv": 0.05, "jitter": 2, "blur_every": 10},
}
results = {}
for name, params in settings.items():
    maximizer = ActivationMaximizer(
        steps=200, lr=0.05, noise_std=0.5, bounds=bounds, random_state=0, **params
    )
    results[name] = maximizer.run(model, logit(classes), image_shape=(3, 32, 32))
    proba = probability_of_target(results[name].images, classes)
    print(f"{name:20s} p(target class): {np.round(proba, 2)}")

fig, axes = plt.subplots(2, 10, figsize=(12, 3))
for row, (name, res) in enumerate(results.items()):
    for c, image in enumerate(to_display(res.images)):
        axes[row, c].imshow(image)
        axes[row, c].set_xticks([])
        axes[row, c].set_yticks([])
        axes[0, c].set_title(str(c))
    axes[row, 0].set_ylabel(name, fontsize=8)
fig.suptitle("Images that maximise each class logit")
plt.show()

# %%
# :func:`~skvmf.plotting.plot_synthesis` shows, per image, the start, the
# result, the pixel-change heatmap ``sqrt(sum_c (x_final - x_start)^2)`` and
# the objective during the ascent.
fig = plot_synthesis(results["TV + jitter + blur"], index=[3, 7], mean=mean, std=std)
plt.show()

# %%
# Starting from a real image
# --------------------------
# Starting from test images instead of noise shows what has to change for
# the network to see another class. Here three test images of "3" are
# pushed towards "8" by 50 small steps without a regulariser: the
# probability of "8" rises from almost 0 to most of the mass, yet the
# heatmap shows small changes spread over the whole image rather than a
# drawn stroke, the same fragility that adversarial attacks exploit.
threes = test.images[test.targets == 3][:3].numpy()
maximizer = ActivationMaximizer(steps=50, lr=0.01, bounds=bounds, random_state=0)
towards_eight = maximizer.run(model, logit(8), start=threes)
print("p(8) before:", probability_of_target(threes, [8] * 3).round(3))
print("p(8) after: ", probability_of_target(towards_eight.images, [8] * 3).round(3))
fig = plot_synthesis(towards_eight, mean=mean, std=std)
plt.show()

# %%
# What single filters respond to
# ------------------------------
# The objective can also be the mean of one channel of an intermediate
# layer, named with the paper's aliases. ``channel_mean("conv_43", k)`` with
# one ``k`` per image visualises eight filters of block 4 at once: those with
# the largest mean response over the test images
# (:func:`~skvmf.featuremaps.feature_maps` returns a layer's output).
response = feature_maps(model, test.images.numpy(), "conv_43").mean(axis=(0, 2, 3))
channels = np.argsort(response)[::-1][:8].tolist()
maximizer = ActivationMaximizer(
    steps=150,
    lr=0.05,
    lambda_tv=0.05,
    jitter=2,
    noise_std=0.5,
    bounds=bounds,
    random_state=0,
)
filters = maximizer.run(
    model, channel_mean("conv_43", channels), image_shape=(3, 32, 32)
)
print("channel means, start -> end:")
print(np.round(filters.objective_start, 2))
print(np.round(filters.objective_final, 2))

fig, axes = plt.subplots(1, len(channels), figsize=(12, 1.9))
for ax, k, image in zip(axes, channels, to_display(filters.images)):
    ax.imshow(image)
    ax.set_title(f"conv_43 #{k}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()
