"""
Saliency, guided backpropagation, CAM and Grad-CAM
==================================================

Four classic answers to "which pixels does this prediction depend on?",
computed for a small ResNet-18 trained on scikit-learn's digits:

* the **input gradient** ``d y_c / d x`` of the class logit, shown as a
  saliency map ``max_channels |d y_c / d x|`` (Simonyan et al., 2014);
* **guided backpropagation**: the same gradient, but each ReLU passes back
  only positive gradients where its input was positive (Springenberg et al.,
  2015), which gives sharper, less noisy maps;
* **CAM**: for a network ending in global average pooling and one linear
  layer, the classifier applied at every position of the last feature map,
  ``M_c = sum_k w_ck F_k`` (Zhou et al., 2016);
* **Grad-CAM**: for any convolutional layer, the channels weighted by their
  average gradient, ``ReLU(sum_k alpha_k A_k)`` (Selvaraju et al., 2017).
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

from skvmf.datasets import load_digits_images
from skvmf.plotting import plot_saliency
from skvmf.saliency import cam, grad_cam, guided_backprop, input_gradient
from skvmf.training import train_digits_classifier

# %%
# A trained network
# -----------------
# :func:`skvmf.training.train_digits_classifier` trains torchvision's
# ResNet-18, narrowed to 1/8 of its width and adapted to 32-pixel inputs, on
# the digits (about twenty seconds on a CPU). A ResNet ends in global average
# pooling and one linear layer, which is what CAM needs.
model, result = train_digits_classifier(arch="resnet18", random_state=0)
print(f"test accuracy: {result.test_accuracy:.3f}")

test = load_digits_images("test")
images = test.images[:6].numpy()
with torch.no_grad():
    predicted = model(torch.as_tensor(images)).argmax(dim=1).numpy()
print("true:     ", test.targets[:6].tolist())
print("predicted:", predicted.tolist())

# %%
# Four maps for the predicted class
# ---------------------------------
# Every function takes a batch and returns numpy arrays. ``target=None``
# explains each image's predicted class. The paper's layer aliases work here
# too: ``conv_5`` is ResNet's last stage (``layer4``), ``conv_4`` the one
# before it.
maps = {
    "gradient": input_gradient(model, images),
    "guided backprop": guided_backprop(model, images),
    "CAM": cam(model, images),
    "Grad-CAM conv_5": grad_cam(model, images, layer="conv_5"),
    "Grad-CAM conv_4": grad_cam(model, images, layer="conv_4"),
}
for name, value in maps.items():
    print(f"{name:16s} shape {value.shape}")

fig = plot_saliency(
    images,
    maps,
    mean=test.mean,
    std=test.std,
    titles=[f"pred {c}" for c in predicted],
)
fig.set_size_inches(10, 11)
plt.show()

# %%
# CAM and Grad-CAM agree on the last layer
# ----------------------------------------
# For global-average-pooling networks the gradient of the logit with respect
# to the last map is ``w_ck / (H W)`` at every position, so Grad-CAM's channel
# weights are the classifier's weights up to a constant: Grad-CAM at
# ``conv_5`` is CAM after a ReLU and a rescaling to [0, 1]. A useful sanity
# check of both implementations:
raw_cam = np.maximum(cam(model, images), 0.0)
raw_cam /= raw_cam.max(axis=(1, 2), keepdims=True)
small_grad_cam = grad_cam(model, images, layer="conv_5", upsample=False)
print("max |CAM - Grad-CAM| on the 8 x 8 grid:", np.abs(raw_cam - small_grad_cam).max())

# %%
# Class-discriminative maps
# -------------------------
# Grad-CAM explains any class, not only the predicted one. For each image,
# the map of the predicted class next to that of the runner-up class: the
# network looks at different strokes for each hypothesis.
with torch.no_grad():
    runner_up = model(torch.as_tensor(images)).argsort(dim=1)[:, -2].numpy()
fig = plot_saliency(
    images,
    {
        "predicted class": grad_cam(model, images, target=predicted, layer="conv_4"),
        "runner-up class": grad_cam(model, images, target=runner_up, layer="conv_4"),
    },
    mean=test.mean,
    std=test.std,
    titles=[f"{p} vs {r}" for p, r in zip(predicted, runner_up)],
)
fig.set_size_inches(6, 11)
plt.show()
