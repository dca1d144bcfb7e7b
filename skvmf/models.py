"""Small-input torchvision classifiers, their training, and checkpoints.

The analysis needs trained networks whose layers carry the paper's names, so
every model built here is an instance of torchvision's own class
(:class:`torchvision.models.VGG`, :class:`torchvision.models.ResNet`,
:class:`torchvision.models.MobileNetV2`) with the same attribute structure,
adapted to small inputs (digits at 32 px, CIFAR) and scaled in width so that
it trains on a CPU:

``"vgg16"`` (``batch_norm=True`` for VGG-16-BN)
    ``features`` is built by torchvision's ``make_layers`` from the VGG-16
    configuration with every channel count multiplied by ``width``. Only the
    first ``k`` max-pools are kept, ``k`` the largest number (at most 4) that
    leaves the conv_5x block a grid of at least 7 x 7; each dropped pool is
    replaced by ``nn.MaxPool2d(kernel_size=1, stride=1)``, an identity pool
    that keeps the block boundaries ("blocks are separated by MaxPool2d
    modules": block ``b``, conv ``c`` is still ``conv_bc``). The 7 x 7
    average pool and the 4096-d classifier become a global average pool and
    ``Linear(C5, C5) -> ReLU -> Dropout -> Linear(C5, n_classes)``: the
    sample feature (input of the last Linear) plays the role of VGG's fc7.
``"resnet18"``, ``"resnet34"``, ``"resnet50"``
    torchvision's ``ResNet`` whose four stages are rebuilt with its own
    ``_make_layer`` from planes ``64, 128, 256, 512`` times ``width``. Below
    112 px the stem is a 3 x 3 stride-1 convolution and the stem max-pool is
    ``nn.Identity()`` (the usual CIFAR stem); from 112 px on it is the
    ImageNet stem (7 x 7 stride 2 + max-pool). Stages 2 to 4 keep stride 2
    while the grid stays at least 7 x 7, otherwise they use stride 1.
``"mobilenet_v2"``
    torchvision's ``MobileNetV2(width_mult=width, inverted_residual_setting=
    ...)`` with the standard block counts (19 ``features`` children) and
    only the first stride-2 stages (stem first) that keep the grid at least
    7 x 7; a stride-1 stem is a ``Conv2dNormActivation`` like the original.

Side of the deepest block's grid (conv_5x, ``layer4``, ``features[-1]``):
the input is halved while the result stays at least 7, at most 4 times for
VGG-16 (as in torchvision's, whose conv_5x is 14 x 14 at 224 px) and 5 times
for the ResNets and MobileNetV2 (7 x 7 at 224 px)::

    input_size      7..13  14..27  28..55  56..111  112..223  224..
    VGG-16          s      s/2     s/4     s/8      s/16      s/16
    ResNet, MbNetV2 s      s/2     s/4     s/8      s/16      s/32

(floored; 8 x 8 for every architecture at 32 px, the digits default).

The build configuration is stored on the model as ``model.skvmf_config`` (a
dict of plain types) and in every checkpoint, so :func:`load_checkpoint`
rebuilds the network without pickled code (``torch.load(weights_only=True)``).

The digits recipe (:func:`train_digits_classifier`) trains a VGG-16-BN of
width 1/8 on scikit-learn's digits images at 32 px for 132 steps (6 epochs)
to 97-99 % test accuracy in about a minute or less on two CPU cores. Plain
VGG-16 (no batch normalisation) learns far more slowly from scratch.

``"vit"`` (:func:`make_vit_classifier`, ``train_digits_classifier("vit")``)
    torchvision's own ``VisionTransformer``, small: 16 px inputs cut into
    4 x 4 patches (a 4 x 4 grid of 16 patch tokens plus the class token),
    4 encoder blocks of width 64 with 4 heads and an MLP of 128. Its blocks
    are the regions' layers (``block_1`` ... ``block_4``); the sample
    feature is the class token after the final LayerNorm. On the digits it
    reaches about 96-97 % test accuracy in 30 epochs (660 steps, well under
    a minute on one CPU thread).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from skvmf._progress import message, progress
from skvmf._torch_utils import resolve_device

__all__ = [
    "ARCHITECTURES",
    "TrainingResult",
    "default_checkpoint_iterations",
    "evaluate",
    "list_checkpoints",
    "load_checkpoint",
    "make_classifier",
    "make_vit_classifier",
    "train_classifier",
    "train_digits_classifier",
]

ARCHITECTURES = ("vgg16", "resnet18", "resnet34", "resnet50", "mobilenet_v2")

# torchvision's VGG-16 ("D") configuration: five blocks of 3x3 convolutions.
_VGG16_BLOCKS = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)
_RESNET_LAYERS = {
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
    "resnet50": (3, 4, 6, 3),
}
_RESNET_PLANES = (64, 128, 256, 512)
# torchvision's MobileNetV2 setting (expansion t, channels c, repeats n, stride s).
_MOBILENET_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_MIN_GRID = 7
_CHECKPOINT_KEYS = ("state_dict", "iteration", "config", "accuracy")


# --------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------


def _n_halvings(input_size: int, available: int) -> int:
    """Largest k <= available with floor(input_size / 2**k) >= 7."""
    k = 0
    while k < available and input_size // 2 ** (k + 1) >= _MIN_GRID:
        k += 1
    return k


def _check_int(value, name: str, low: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < low
    ):
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    return int(value)


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _seeded_rng(random_state):
    """Integer seed for ``torch.manual_seed`` (None: no seeding)."""
    if random_state is None:
        return None
    from sklearn.utils import check_random_state

    if isinstance(random_state, (int, np.integer)) and not isinstance(
        random_state, bool
    ):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative; got {random_state}")
        return int(random_state)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def _init_weights(module: nn.Module) -> None:
    # torchvision's scheme for these families: He (fan-out) convolutions,
    # unit/zero norms.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            # PyTorch's default (fan-in uniform) rather than torchvision's
            # N(0, 0.01): two such tiny layers in a row stall the start.
            m.reset_parameters()


def _build_vgg16(n_classes, width, input_size, in_channels, batch_norm, dropout):
    from torchvision.models.vgg import VGG, make_layers

    n_pools = _n_halvings(input_size, 4)
    cfg: list[Any] = []
    for block in _VGG16_BLOCKS:
        cfg.extend(_scaled(c, width) for c in block)
        cfg.append("M")
    features = make_layers(cfg, batch_norm=batch_norm)
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    # Keep the first n_pools pools (and the last one only for the full VGG);
    # the others become identity pools so block boundaries stay visible.
    keep = set(pools[:n_pools]) | ({pools[-1]} if n_pools == 4 else set())
    for i in pools:
        if i not in keep:
            features[i] = nn.MaxPool2d(kernel_size=1, stride=1)
    if in_channels != 3:
        first = features[0]
        features[0] = nn.Conv2d(
            in_channels, first.out_channels, kernel_size=3, padding=1
        )
    c5 = _scaled(_VGG16_BLOCKS[-1][-1], width)
    # The 25088 x 4096 classifier torchvision builds is replaced at once:
    # build it on the meta device so it costs neither time nor memory.
    with torch.device("meta"):
        model = VGG(
            features, num_classes=n_classes, init_weights=False, dropout=dropout
        )
    model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    model.classifier = nn.Sequential(
        nn.Linear(c5, c5),
        nn.ReLU(inplace=True),
        nn.Dropout(p=dropout),
        nn.Linear(c5, n_classes),
    )
    return model


def _build_resnet(arch, n_classes, width, input_size, in_channels):
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    block = Bottleneck if arch == "resnet50" else BasicBlock
    layers = _RESNET_LAYERS[arch]
    with torch.device("meta"):  # every module with weights is rebuilt below
        model = ResNet(block, list(layers), num_classes=n_classes)
    stem = _scaled(64, width)
    if input_size >= 112:
        model.conv1 = nn.Conv2d(in_channels, stem, 7, stride=2, padding=3, bias=False)
        model.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        grid = (input_size + 1) // 2
        grid = (grid + 1) // 2
    else:
        model.conv1 = nn.Conv2d(in_channels, stem, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
        grid = input_size
    model.bn1 = nn.BatchNorm2d(stem)
    model.inplanes = stem
    model.dilation = 1
    n_strided = _n_halvings(grid, 3)
    for i, (planes, blocks) in enumerate(zip(_RESNET_PLANES, layers)):
        stride = 2 if 1 <= i <= n_strided else 1
        setattr(
            model,
            f"layer{i + 1}",
            model._make_layer(block, _scaled(planes, width), blocks, stride=stride),
        )
    model.fc = nn.Linear(
        _scaled(_RESNET_PLANES[-1], width) * block.expansion, n_classes
    )
    return model


def _build_mobilenet_v2(n_classes, width, input_size, in_channels, dropout):
    from torchvision.models.mobilenetv2 import MobileNetV2
    from torchvision.ops.misc import Conv2dNormActivation

    # stride-2 places in order: the stem, then the stages with s == 2
    n_strided = _n_halvings(input_size, 5)
    stem_stride = 2 if n_strided >= 1 else 1
    setting, used = [], 1
    for t, c, n, s in _MOBILENET_SETTING:
        if s == 2:
            s = 2 if used < n_strided else 1
            used += 1
        setting.append([t, c, n, s])
    model = MobileNetV2(
        num_classes=n_classes,
        width_mult=width,
        inverted_residual_setting=setting,
        dropout=dropout,
    )
    if stem_stride != 2 or in_channels != 3:
        out = model.features[0][0].out_channels
        model.features[0] = Conv2dNormActivation(
            in_channels,
            out,
            stride=stem_stride,
            norm_layer=nn.BatchNorm2d,
            activation_layer=nn.ReLU6,
        )
    return model


def make_classifier(
    arch: str = "vgg16",
    n_classes: int = 10,
    *,
    width: float = 0.25,
    input_size: int = 32,
    in_channels: int = 3,
    batch_norm: bool = False,
    dropout: float | None = None,
    random_state=None,
) -> nn.Module:
    """Build a torchvision classifier adapted to small inputs.

    See the module docstring for what each architecture keeps and changes;
    the deepest block keeps a grid of at least 7 x 7 (8 x 8 at 32 px).

    Parameters
    ----------
    arch : str, default="vgg16"
        The torchvision architecture: "vgg16", "resnet18", "resnet34",
        "resnet50" or "mobilenet_v2".
    n_classes : int, default=10
        Number of outputs of the last ``nn.Linear``.
    width : float, default=0.25
        Channel multiplier (1.0 is the original width).
    input_size : int, default=32
        Side of the square inputs the network is meant for (at least 7); it
        decides which poolings/strides are kept.
    in_channels : int, default=3
        Channels of the input images.
    batch_norm : bool, default=False
        VGG-16 with batch normalisation (torchvision's ``vgg16_bn`` layout).
        ResNets and MobileNetV2 always have batch normalisation.
    dropout : float or None, default=None
        Dropout before the last layer; None takes the architecture's default
        (0.5 for VGG-16, 0.2 for MobileNetV2). ResNets have none.
    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialisation (the global torch RNG is left as it
        was). None draws from the global torch RNG.

    Returns
    -------
    model : torch.nn.Module
        A ``VGG``, ``ResNet`` or ``MobileNetV2`` instance in training mode,
        with ``model.skvmf_config`` (a dict of plain types).

    Examples
    --------
    >>> import torch
    >>> from skvmf.models import make_classifier
    >>> model = make_classifier("vgg16", n_classes=10, width=0.125, random_state=0)
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> model.skvmf_config["arch"], type(model.classifier[-1]).__name__
    ('vgg16', 'Linear')
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}; got {arch!r}")
    for name, value, low in (
        ("n_classes", n_classes, 2),
        ("input_size", input_size, _MIN_GRID),
        ("in_channels", in_channels, 1),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or value < low
        ):
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    if (
        isinstance(width, bool)
        or not isinstance(width, (int, float, np.number))
        or not (0 < width <= 4)
    ):
        raise ValueError(f"width must be a number in (0, 4]; got {width!r}")
    if arch.startswith("resnet"):
        if dropout not in (None, 0, 0.0):
            raise ValueError(f"{arch} has no dropout layer; got dropout={dropout!r}")
        dropout = None
    elif dropout is None:
        dropout = 0.5 if arch == "vgg16" else 0.2
    if dropout is not None and not (0.0 <= float(dropout) < 1.0):
        raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
    n_classes, input_size, in_channels = (
        int(n_classes),
        int(input_size),
        int(in_channels),
    )
    width = float(width)
    seed = _seeded_rng(random_state)

    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if arch == "vgg16":
            model = _build_vgg16(
                n_classes,
                width,
                input_size,
                in_channels,
                bool(batch_norm),
                float(dropout),
            )
        elif arch == "mobilenet_v2":
            model = _build_mobilenet_v2(
                n_classes, width, input_size, in_channels, float(dropout)
            )
        else:
            model = _build_resnet(arch, n_classes, width, input_size, in_channels)
        _init_weights(model)
    if any(
        t.is_meta for t in (*model.parameters(), *model.buffers())
    ):  # pragma: no cover
        raise RuntimeError("internal error: a module was left on the meta device")
    model.skvmf_config = {
        "arch": arch,
        "n_classes": n_classes,
        "width": width,
        "input_size": input_size,
        "in_channels": in_channels,
        "batch_norm": bool(batch_norm),
        "dropout": None if dropout is None else float(dropout),
    }
    return model


def make_vit_classifier(
    n_classes: int = 10,
    *,
    input_size: int = 16,
    patch_size: int = 4,
    depth: int = 4,
    n_heads: int = 4,
    dim: int = 64,
    mlp_dim: int = 128,
    in_channels: int = 3,
    dropout: float = 0.0,
    random_state=None,
) -> nn.Module:
    """Build a small torchvision ``VisionTransformer`` for small inputs.

    Patch tokens are the regions of the analysis: ``(input_size //
    patch_size) ** 2`` of them, plus the class token that the head reads.

    Parameters
    ----------
    n_classes : int, default=10
        Number of outputs of the head.
    input_size : int, default=16
        Side of the square inputs; a multiple of ``patch_size``.
    patch_size : int, default=4
        Side of a patch (the stride of the patch embedding).
    depth : int, default=4
        Number of encoder blocks.
    n_heads : int, default=4
        Attention heads; must divide ``dim``.
    dim : int, default=64
        Token width (torchvision's ``hidden_dim``).
    mlp_dim : int, default=128
        Hidden width of each block's MLP.
    in_channels : int, default=3
        Channels of the input images.
    dropout : float, default=0.0
        Dropout in the blocks (torchvision's ``dropout``).
    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialisation (the global torch RNG is left as it
        was).

    Returns
    -------
    model : torchvision.models.VisionTransformer
        In training mode, with ``model.skvmf_config`` (``arch="vit"``); the
        head is initialised like any Linear (torchvision zeroes it, which
        makes every class gradient of the untrained network zero).

    Examples
    --------
    >>> import torch
    >>> from skvmf.models import make_vit_classifier
    >>> model = make_vit_classifier(n_classes=10, random_state=0)
    >>> model(torch.zeros(2, 3, 16, 16)).shape
    torch.Size([2, 10])
    >>> model.skvmf_config["arch"], len(model.encoder.layers)
    ('vit', 4)
    """
    import torchvision

    values = {}
    for name, value, low in (
        ("n_classes", n_classes, 2),
        ("input_size", input_size, 1),
        ("patch_size", patch_size, 1),
        ("depth", depth, 1),
        ("n_heads", n_heads, 1),
        ("dim", dim, 1),
        ("mlp_dim", mlp_dim, 1),
        ("in_channels", in_channels, 1),
    ):
        values[name] = _check_int(value, name, low)
    if values["input_size"] % values["patch_size"]:
        raise ValueError(
            f"input_size ({input_size}) must be a multiple of patch_size ({patch_size})"
        )
    if values["dim"] % values["n_heads"]:
        raise ValueError(f"n_heads ({n_heads}) must divide dim ({dim})")
    if not (0.0 <= float(dropout) < 1.0):
        raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
    seed = _seeded_rng(random_state)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = torchvision.models.VisionTransformer(
            image_size=values["input_size"],
            patch_size=values["patch_size"],
            num_layers=values["depth"],
            num_heads=values["n_heads"],
            hidden_dim=values["dim"],
            mlp_dim=values["mlp_dim"],
            dropout=float(dropout),
            num_classes=values["n_classes"],
        )
        if values["in_channels"] != 3:
            p = values["patch_size"]
            model.conv_proj = nn.Conv2d(
                values["in_channels"], values["dim"], kernel_size=p, stride=p
            )
        model.heads.head.reset_parameters()
    model.skvmf_config = {"arch": "vit", **values, "dropout": float(dropout)}
    return model


def _config_of(model: nn.Module) -> dict:
    config = getattr(model, "skvmf_config", None)
    if not isinstance(config, dict):
        raise ValueError(
            "model has no skvmf_config; build it with skvmf.models.make_classifier "
            "so that checkpoints can rebuild it"
        )
    return dict(config)


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def _as_tensors(data, name: str):
    """(images, labels) tensors if ``data`` is in memory, else None."""
    if isinstance(data, tuple) and len(data) == 2:
        X, y = data
        X = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X)
        y = torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y)
        if X.ndim != 4:
            raise ValueError(
                f"{name}: images must have shape (N, C, H, W); got {tuple(X.shape)}"
            )
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"{name}: labels must have shape ({X.shape[0]},) to match the "
                f"images; got {tuple(y.shape)}"
            )
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ValueError(f"{name}: labels must be integers; got dtype {y.dtype}")
        return X.float(), y.long()
    from skvmf.datasets import ImageArrayDataset

    if isinstance(data, ImageArrayDataset) and data._cache is not None:
        return data.images, data.targets
    if isinstance(data, torch.utils.data.Dataset):
        return None
    raise ValueError(
        f"{name} must be a torch Dataset or an (images, labels) pair; "
        f"got {type(data).__name__}"
    )


class _Batches:
    """Mini-batches from tensors or a Dataset, shuffled by a seeded generator."""

    def __init__(self, data, batch_size, shuffle, generator, name):
        self.tensors = _as_tensors(data, name)
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.n = len(self.tensors[0]) if self.tensors is not None else len(data)
        if self.n == 0:
            raise ValueError(f"{name} is empty")

    def __len__(self):
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        if self.tensors is not None:
            X, y = self.tensors
            order = (
                torch.randperm(self.n, generator=self.generator)
                if self.shuffle
                else torch.arange(self.n)
            )
            for start in range(0, self.n, self.batch_size):
                idx = order[start : start + self.batch_size]
                yield X[idx], y[idx]
        else:
            loader = torch.utils.data.DataLoader(
                self.data,
                batch_size=self.batch_size,
                shuffle=self.shuffle,
                generator=self.generator,
                num_workers=0,
            )
            for X, y in loader:
                yield X.float(), torch.as_tensor(y).long()


@torch.no_grad()
def _predict_correct(model, batches, device) -> tuple[int, int]:
    was_training = model.training
    model.eval()
    try:
        correct = total = 0
        for X, y in batches:
            out = model(X.to(device))
            correct += int((out.argmax(1).cpu() == y).sum())
            total += len(y)
    finally:
        model.train(was_training)
    return correct, total


def evaluate(model: nn.Module, data, *, batch_size: int = 256, device="cpu") -> float:
    """Top-1 accuracy of ``model`` on ``data``.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits; it is evaluated in eval mode and put
        back in the mode it had.
    data : Dataset or tuple (images, labels)
        Items ``(image, label)``; labels are class indices.
    batch_size : int, default=256
        Images per forward pass.
    device : str or torch.device, default="cpu"
        Where to run (the model is moved there).

    Returns
    -------
    accuracy : float
        Fraction of images whose argmax logit is the label.

    Examples
    --------
    >>> import torch
    >>> from skvmf.models import evaluate, make_classifier
    >>> model = make_classifier("resnet18", n_classes=2, width=0.125, random_state=0)
    >>> X, y = torch.zeros(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])
    >>> evaluate(model, (X, y))  # the same image four times: one class right
    0.5
    """
    batch_size = _check_int(batch_size, "batch_size", 1)
    dev = resolve_device(device)
    model.to(dev)
    batches = _Batches(
        data, int(batch_size), shuffle=False, generator=None, name="data"
    )
    correct, total = _predict_correct(model, batches, dev)
    return correct / total


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------


@dataclasses.dataclass
class TrainingResult:
    """What :func:`train_classifier` did.

    Attributes
    ----------
    history : dict of str to list
        One entry per epoch: ``"epoch"``, ``"iteration"`` (optimizer steps so
        far), ``"loss"`` (mean training loss), ``"accuracy"`` (training
        accuracy during the epoch), ``"val_accuracy"`` (None without
        ``val_data``), ``"lr"`` (learning rate at the end of the epoch).
    checkpoints : list of (int, pathlib.Path)
        Saved checkpoints as (iteration, path), by iteration.
    n_iterations : int
        Optimizer steps taken.
    test_accuracy : float or None
        Accuracy on ``val_data`` after training.
    train_time : float
        Wall-clock seconds spent in training (evaluation and saving included).
    config : dict
        The model's build configuration (``model.skvmf_config``).

    Examples
    --------
    >>> from skvmf.models import TrainingResult
    >>> TrainingResult(history={}, checkpoints=[], n_iterations=0).test_accuracy is None
    True
    """

    history: dict
    checkpoints: list
    n_iterations: int
    test_accuracy: float | None = None
    train_time: float = 0.0
    config: dict = dataclasses.field(default_factory=dict)


def default_checkpoint_iterations(n_iterations: int) -> list[int]:
    """Checkpoint iterations covering the start and the whole run.

    Iteration 0 (untrained), 1/16 and 1/8 of the run, then every eighth to
    its end. Knowledge points can emerge early (the paper's networks) or late
    (the digits recipe's one-cycle schedule: none before ~85 % accuracy, past
    half the run), so the schedule covers both.

    Parameters
    ----------
    n_iterations : int
        Total optimizer steps of the run.

    Returns
    -------
    iterations : list of int
        Sorted, unique, between 0 and ``n_iterations``.

    Examples
    --------
    >>> from skvmf.models import default_checkpoint_iterations
    >>> default_checkpoint_iterations(320)
    [0, 20, 40, 80, 120, 160, 200, 240, 280, 320]
    """
    if n_iterations < 0:
        raise ValueError(f"n_iterations must be >= 0; got {n_iterations}")
    fractions = (0, 1 / 16, *(k / 8 for k in range(1, 9)))
    return sorted({int(round(f * n_iterations)) for f in fractions})


def _checkpoint_plan(checkpoint_iterations, checkpoint_dir, n_iterations) -> list[int]:
    if checkpoint_iterations is None and checkpoint_dir is None:
        return []
    if checkpoint_dir is None:
        raise ValueError(
            "checkpoint_iterations were given but checkpoint_dir is None; "
            "say where to save them"
        )
    if checkpoint_iterations is None:
        return [n_iterations]
    if isinstance(checkpoint_iterations, str):
        if checkpoint_iterations != "default":
            raise ValueError(
                "checkpoint_iterations must be 'default', None or a list of ints; "
                f"got {checkpoint_iterations!r}"
            )
        return default_checkpoint_iterations(n_iterations)
    plan = []
    for it in checkpoint_iterations:
        if (
            isinstance(it, bool)
            or not isinstance(it, (int, np.integer))
            or not 0 <= it <= n_iterations
        ):
            raise ValueError(
                f"checkpoint iteration {it!r} is not an integer in "
                f"[0, {n_iterations}] (the run's steps)"
            )
        plan.append(int(it))
    return sorted(set(plan))


def _save_checkpoint(model, directory, iteration: int, accuracy) -> Path:
    path = Path(directory) / f"checkpoint_iter{iteration:07d}.pt"
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save(
        {
            "state_dict": state,
            "iteration": int(iteration),
            "config": _config_of(model),
            "accuracy": None if accuracy is None else float(accuracy),
        },
        path,
    )
    return path


@torch.no_grad()
def _recalibrate_batchnorm(model, tensors_or_batches, device, n_images: int) -> None:
    """Set every BatchNorm's running statistics from ``n_images`` training images.

    During training the running averages lag behind the weights (badly so in
    the first steps), and eval-mode features of an early checkpoint would be
    normalised with stale statistics. Recomputing them with the current
    weights ("precise BN") makes each checkpoint the network it claims to
    be. Training itself is unaffected: train mode uses batch statistics.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or n_images <= 0:
        return
    was_training = model.training
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    try:
        seen = 0
        for X, _ in tensors_or_batches:
            X = X[: n_images - seen]
            model(X.to(device))
            seen += len(X)
            if seen >= n_images:
                break
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.train(was_training)


def _cross_entropy(model, X, y):
    out = model(X)
    return nn.functional.cross_entropy(out, y), out


def _make_optimizer(name, params, lr, weight_decay, momentum):
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=momentum > 0,
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd', 'adam' or 'adamw'; got {name!r}")


def _make_schedule(name, optimizer, lr, total):
    if name not in ("onecycle", "cosine", "constant"):
        raise ValueError(
            f"schedule must be 'onecycle', 'cosine' or 'constant'; got {name!r}"
        )
    if name == "constant" or total < 4:  # too few steps to shape anything
        return None
    if name == "onecycle":
        # a quarter of the steps warming up (at least two: torch needs them)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total, pct_start=max(0.25, 2 / total)
        )
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)


def _shift_batch(
    X: torch.Tensor, max_shift: int, generator: torch.Generator
) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (edge padding)."""
    n, _, h, w = X.shape
    padded = nn.functional.pad(X, (max_shift,) * 4, mode="replicate")
    shifts = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    rows = (shifts[0][:, None] + torch.arange(h)[None, :]).to(X.device)  # (n, h)
    cols = (shifts[1][:, None] + torch.arange(w)[None, :]).to(X.device)  # (n, w)
    batch = torch.arange(n, device=X.device)[:, None, None, None]
    chans = torch.arange(X.shape[1], device=X.device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


def train_classifier(
    model: nn.Module,
    train_data,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    schedule: str = "onecycle",
    max_shift: int = 0,
    recalibrate_bn: int = 512,
    checkpoint_iterations=None,
    checkpoint_dir=None,
    val_data=None,
    device="cpu",
    random_state=0,
    verbose: int = 0,
) -> TrainingResult:
    """Train a classifier with cross-entropy, saving checkpoints on the way.

    The run is deterministic under ``random_state``: the data order, the
    augmentation and dropout draw from generators seeded by it (the global
    torch RNG is restored afterwards), so two runs from the same initial
    weights end with identical weights on the same machine with the same
    number of torch threads (the thread count changes the order of float
    sums). On CUDA, cuDNN is switched to deterministic kernels for the run.

    Parameters
    ----------
    model : torch.nn.Module
        A model from :func:`make_classifier` (its ``skvmf_config`` goes into
        the checkpoints); it is trained in place.
    train_data : Dataset or tuple (images, labels)
        Items ``(image, label)``. In-memory data (an ``ImageArrayDataset`` or
        arrays) is batched directly, other datasets through a ``DataLoader``.
    epochs : int, default=10
        Passes over the training data.
    batch_size : int, default=64
        Images per optimizer step (the last batch of an epoch may be smaller).
    lr : float, default=1e-3
        Learning rate (the peak of the one-cycle schedule).
    optimizer : {"adam", "adamw", "sgd"}, default="adam"
        SGD uses Nesterov momentum ``momentum``.
    weight_decay : float, default=5e-4
        L2 penalty (decoupled for "adamw").
    momentum : float, default=0.9
        Momentum of SGD.
    schedule : {"onecycle", "cosine", "constant"}, default="onecycle"
        Learning-rate schedule over all steps.
    max_shift : int, default=0
        Random translation of each training image by up to this many pixels
        (in-memory data only); 0 disables augmentation.
    recalibrate_bn : int, default=512
        For networks with batch normalisation: before each checkpoint and at
        the end, recompute the running statistics from this many training
        images with the current weights, so that eval-mode features of early
        checkpoints are not normalised with stale averages ("precise BN").
        Training itself is unaffected (it uses batch statistics); per-epoch
        ``val_accuracy`` uses the running averages. 0 disables it.
    checkpoint_iterations : "default", list of int or None, default=None
        Optimizer steps after which to save a checkpoint (0 is the untrained
        model). "default" uses :func:`default_checkpoint_iterations`; None
        with a ``checkpoint_dir`` saves only the final model.
    checkpoint_dir : str or path-like, optional
        Directory of the checkpoint files (created if needed), named
        ``checkpoint_iter<iteration>.pt``.
    val_data : Dataset or tuple (images, labels), optional
        Evaluated after every epoch, at every checkpoint and at the end
        (``TrainingResult.test_accuracy``).
    device : str or torch.device, default="cpu"
        Where to train.
    random_state : int, RandomState instance or None, default=0
        Seeds data order, augmentation and dropout.
    verbose : int, default=0
        0 silent, 1 a progress bar over steps, 2 also one line per epoch.

    Returns
    -------
    result : TrainingResult
        The model itself is trained in place and left in eval mode.

    Examples
    --------
    >>> import torch
    >>> from skvmf.models import make_classifier, train_classifier
    >>> X = torch.randn(32, 3, 16, 16)
    >>> y = (X.mean(dim=(1, 2, 3)) > 0).long()
    >>> model = make_classifier(
    ...     "resnet18", n_classes=2, width=0.125, input_size=16, random_state=0
    ... )
    >>> result = train_classifier(model, (X, y), epochs=2, batch_size=16)
    >>> result.n_iterations, len(result.history["loss"])
    (4, 2)
    """
    return _train(
        model,
        train_data,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        momentum=momentum,
        schedule=schedule,
        max_shift=max_shift,
        recalibrate_bn=recalibrate_bn,
        checkpoint_iterations=checkpoint_iterations,
        checkpoint_dir=checkpoint_dir,
        val_data=val_data,
        device=device,
        random_state=random_state,
        verbose=verbose,
    )


def _train(
    model: nn.Module,
    train_data,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    schedule: str = "onecycle",
    max_shift: int = 0,
    recalibrate_bn: int = 512,
    checkpoint_iterations=None,
    checkpoint_dir=None,
    val_data=None,
    device="cpu",
    random_state=0,
    verbose: int = 0,
    compute_loss=None,
    extra_parameters=(),
) -> TrainingResult:
    """The training loop behind :func:`train_classifier` and
    :func:`skvmf.distillation.distill`.

    ``compute_loss(model, X, y) -> (loss, logits)`` replaces the plain
    cross-entropy; ``extra_parameters`` (e.g. a distillation adapter) are
    optimised with the model's.
    """
    config = _config_of(model)
    epochs = _check_int(epochs, "epochs", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    max_shift = _check_int(max_shift, "max_shift", 0)
    recalibrate_bn = _check_int(recalibrate_bn, "recalibrate_bn", 0)
    if not lr > 0:
        raise ValueError(f"lr must be positive; got {lr!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay!r}")
    dev = resolve_device(device)
    seed = _seeded_rng(random_state)
    seed = 0 if seed is None else seed
    data_gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator().manual_seed(seed + 1)

    batches = _Batches(train_data, batch_size, True, data_gen, "train_data")
    calibration = _Batches(train_data, 128, False, None, "train_data")
    if max_shift and batches.tensors is None:
        raise ValueError("max_shift needs in-memory data (ImageArrayDataset or arrays)")
    val_batches = None
    if val_data is not None:
        val_batches = _Batches(val_data, 256, False, None, "val_data")
    n_iterations = epochs * len(batches)
    plan = _checkpoint_plan(checkpoint_iterations, checkpoint_dir, n_iterations)
    if plan:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)

    model.to(dev)
    if compute_loss is None:
        compute_loss = _cross_entropy
    params = [*model.parameters(), *extra_parameters]
    opt = _make_optimizer(optimizer, params, lr, weight_decay, momentum)
    sched = _make_schedule(schedule, opt, lr, n_iterations)

    def val_accuracy():
        if val_batches is None:
            return None
        correct, total = _predict_correct(model, val_batches, dev)
        return correct / total

    def save(iteration):
        _recalibrate_batchnorm(model, calibration, dev, recalibrate_bn)
        path = _save_checkpoint(model, checkpoint_dir, iteration, val_accuracy())
        checkpoints.append((iteration, path))

    keys = ("epoch", "iteration", "loss", "accuracy", "val_accuracy", "lr")
    history: dict[str, list] = {k: [] for k in keys}
    checkpoints: list[tuple[int, Path]] = []
    to_save = set(plan)
    start = time.perf_counter()
    iteration = 0
    cudnn = torch.backends.cudnn
    cudnn_flags = (cudnn.deterministic, cudnn.benchmark)
    bar = progress(range(n_iterations), verbose=verbose, desc="training", unit="step")
    steps = iter(bar)

    def run_epoch():
        nonlocal iteration
        loss_sum, correct, seen = 0.0, 0, 0
        for X, y in batches:
            if max_shift:
                X = _shift_batch(X, max_shift, aug_gen)
            X, y = X.to(dev), y.to(dev)
            loss, out = compute_loss(model, X, y)
            if not torch.isfinite(loss):
                raise ValueError(
                    f"training diverged at step {iteration + 1} "
                    f"(loss {loss.item()}); try a lower lr than {lr}"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            iteration += 1
            next(steps, None)
            loss_sum += float(loss.detach()) * len(y)
            correct += int((out.detach().argmax(1) == y).sum())
            seen += len(y)
            if iteration in to_save:
                save(iteration)
        return loss_sum / seen, correct / seen

    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed + 2)  # dropout
        try:
            if dev.type == "cuda":
                cudnn.deterministic, cudnn.benchmark = True, False
            model.train()
            if 0 in to_save:
                save(0)
            for epoch in range(1, epochs + 1):
                loss, accuracy = run_epoch()
                val = val_accuracy()
                for key, value in zip(
                    keys,
                    (epoch, iteration, loss, accuracy, val, opt.param_groups[0]["lr"]),
                ):
                    history[key].append(value)
                message(
                    f"epoch {epoch}/{epochs}: loss {loss:.4f}, train acc {accuracy:.4f}"
                    + ("" if val is None else f", val acc {val:.4f}"),
                    verbose=verbose,
                )
            for _ in steps:  # lets the bar reach its total and close
                pass
        finally:
            cudnn.deterministic, cudnn.benchmark = cudnn_flags
            if hasattr(bar, "close"):
                bar.close()
    if n_iterations not in to_save:  # a saved end is already recalibrated
        _recalibrate_batchnorm(model, calibration, dev, recalibrate_bn)
    model.eval()
    return TrainingResult(
        history=history,
        checkpoints=checkpoints,
        n_iterations=iteration,
        test_accuracy=val_accuracy(),
        train_time=time.perf_counter() - start,
        config=config,
    )


# Recipe of train_digits_classifier: model options, then training options.
_DIGITS_MODEL = {"width": 0.125, "input_size": 32, "batch_norm": True, "dropout": 0.0}
_DIGITS_TRAIN = {
    "epochs": 6,
    "batch_size": 64,
    "lr": 4e-3,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "schedule": "onecycle",
    "max_shift": 0,
}
# The ViT variant (train_digits_classifier("vit")): 16 px, 4 x 4 patches.
_DIGITS_VIT_MODEL = {
    "input_size": 16,
    "patch_size": 4,
    "depth": 4,
    "n_heads": 4,
    "dim": 64,
    "mlp_dim": 128,
    "dropout": 0.0,
}
_DIGITS_VIT_TRAIN = {**_DIGITS_TRAIN, "epochs": 30, "lr": 3e-3}


def train_digits_classifier(
    arch: str = "vgg16",
    *,
    checkpoint_dir=None,
    checkpoint_iterations="default",
    random_state=0,
    verbose: int = 0,
    device="cpu",
    **overrides,
):
    """Train the default network on scikit-learn's digits images.

    The recipe behind ``skvmf demo``: digits upsampled to 32 px
    (:func:`skvmf.datasets.load_digits_images`, fixed 75/25 split), a width
    1/8 network with batch normalisation and no dropout from
    :func:`make_classifier`, 6 epochs of Adam (batch 64, peak lr 4e-3, no
    weight decay) with a one-cycle schedule. VGG-16 reaches 97-99 % test
    accuracy in about a minute or less on two CPU cores; the ResNets and
    MobileNetV2 reach 97-99 % too, more slowly. Default checkpoints:
    :func:`default_checkpoint_iterations` (10 of them: the start and every eighth).

    ``arch="vit"`` trains :func:`make_vit_classifier`'s small ViT instead:
    digits at 16 px in 4 x 4 patches, 4 blocks of width 64, 30 epochs of Adam
    (peak lr 3e-3, one-cycle), about 96-97 % test accuracy in well under a
    minute on one CPU thread. Its overrides are the options of
    :func:`make_vit_classifier` and :func:`train_classifier`.

    Parameters
    ----------
    arch : str, default="vgg16"
        Any architecture of :func:`make_classifier`, or ``"vit"``.
    checkpoint_dir : str or path-like, optional
        Where to save checkpoints; None saves none.
    checkpoint_iterations : "default", list of int or None, default="default"
        Which steps to save (see :func:`train_classifier`); only used with a
        ``checkpoint_dir``.
    random_state : int, default=0
        Seeds the weights, the data order and dropout.
    verbose : int, default=0
        Progress bar (1) and per-epoch lines (2).
    device : str or torch.device, default="cpu"
        Where to train.
    **overrides
        Any option of :func:`make_classifier` (``width``, ``input_size``,
        ``batch_norm``, ``dropout``) or :func:`train_classifier` (``epochs``,
        ``batch_size``, ``lr``, ``optimizer``, ``weight_decay``,
        ``schedule``, ``max_shift``), and ``classes`` (digits to keep).

    Returns
    -------
    model : torch.nn.Module
        The trained network, in eval mode.
    result : TrainingResult
        History, checkpoints and the test accuracy.

    Examples
    --------
    >>> from skvmf.models import train_digits_classifier
    >>> model, result = train_digits_classifier(classes=[0, 1], epochs=2)
    >>> model.skvmf_config["arch"], result.n_iterations, result.test_accuracy > 0.9
    ('vgg16', 10, True)
    """
    from skvmf.datasets import load_digits_images

    vit = arch == "vit"
    model_opts = dict(_DIGITS_VIT_MODEL if vit else _DIGITS_MODEL)
    train_opts = dict(_DIGITS_VIT_TRAIN if vit else _DIGITS_TRAIN)
    classes = overrides.pop("classes", None)
    for key, value in overrides.items():
        if key in model_opts:
            model_opts[key] = value
        elif key in train_opts:
            train_opts[key] = value
        else:
            raise ValueError(
                f"unknown option {key!r}; expected one of "
                f"{sorted([*model_opts, *train_opts, 'classes'])}"
            )
    if arch.startswith("resnet") and "dropout" not in overrides:
        model_opts.pop("dropout")  # ResNets have no dropout layer
    size = model_opts["input_size"]
    train = load_digits_images("train", size=size, classes=classes)
    test = load_digits_images("test", size=size, classes=classes)
    if vit:
        model = make_vit_classifier(
            n_classes=len(train.classes), random_state=random_state, **model_opts
        )
    else:
        model = make_classifier(
            arch, n_classes=len(train.classes), random_state=random_state, **model_opts
        )
    result = train_classifier(
        model,
        train,
        val_data=test,
        checkpoint_dir=checkpoint_dir,
        checkpoint_iterations=checkpoint_iterations
        if checkpoint_dir is not None
        else None,
        device=device,
        random_state=random_state,
        verbose=verbose,
        **train_opts,
    )
    return model, result


# --------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------


def _read_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint file {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(
            f"{str(path)!r} is not a skvmf checkpoint "
            f"(torch.load(weights_only=True) failed: {exc})"
        ) from exc
    if not isinstance(ckpt, dict) or not all(k in ckpt for k in _CHECKPOINT_KEYS):
        found = (
            sorted(map(str, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        )
        raise ValueError(
            f"{str(path)!r} is not a skvmf checkpoint: expected keys "
            f"{list(_CHECKPOINT_KEYS)}, found {found}"
        )
    if not isinstance(ckpt["config"], dict) or "arch" not in ckpt["config"]:
        raise ValueError(
            f"{str(path)!r} is not a skvmf checkpoint: its config has no 'arch'"
        )
    return ckpt


def load_checkpoint(path, *, device="cpu") -> nn.Module:
    """Rebuild a model from a checkpoint written by :func:`train_classifier`.

    Parameters
    ----------
    path : str or path-like
        A checkpoint file (loaded with ``torch.load(weights_only=True)``).
    device : str or torch.device, default="cpu"
        Where to put the model.

    Returns
    -------
    model : torch.nn.Module
        The network in eval mode, with ``skvmf_config`` and two extra
        attributes: ``skvmf_iteration`` and ``skvmf_accuracy``.

    Examples
    --------
    >>> import tempfile, torch
    >>> from skvmf.models import (
    ...     list_checkpoints, load_checkpoint, make_classifier, train_classifier
    ... )
    >>> X, y = torch.randn(8, 3, 16, 16), torch.tensor([0, 1] * 4)
    >>> model = make_classifier("vgg16", n_classes=2, width=0.125, input_size=16)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = train_classifier(
    ...         model, (X, y), epochs=1, batch_size=4,
    ...         checkpoint_dir=d, checkpoint_iterations=[0, 2],
    ...     )
    ...     found = list_checkpoints(d)
    ...     [it for it, _ in found], load_checkpoint(found[-1][1]).skvmf_iteration
    ([0, 2], 2)
    """
    ckpt = _read_checkpoint(path)
    config = dict(ckpt["config"])
    try:
        if config.get("arch") == "vit":
            model = make_vit_classifier(
                **{k: v for k, v in config.items() if k != "arch"}
            )
        else:
            model = make_classifier(**config)
    except TypeError as exc:
        raise ValueError(
            f"{str(path)!r}: its config {config} does not describe a skvmf "
            f"model ({exc})"
        ) from exc
    expected = model.state_dict()
    given = ckpt["state_dict"]
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [
        f"{k}: {tuple(given[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in given and tuple(given[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {unexpected[:3]})")
        if wrong:
            parts.append(
                f"{len(wrong)} shape mismatches, checkpoint vs model (e.g. {wrong[:3]})"
            )
        raise ValueError(
            f"{str(path)!r}: weights do not match the {config['arch']} "
            "built from its config: " + "; ".join(parts)
        )
    model.load_state_dict(given)
    model.skvmf_iteration = int(ckpt["iteration"])
    model.skvmf_accuracy = ckpt["accuracy"]
    model.to(resolve_device(device))
    model.eval()
    return model


def list_checkpoints(directory) -> list[tuple[int, Path]]:
    """The skvmf checkpoints of a directory, sorted by iteration.

    Parameters
    ----------
    directory : str or path-like
        Folder to scan for ``*.pt`` / ``*.pth`` files; files that are not
        skvmf checkpoints are skipped.

    Returns
    -------
    checkpoints : list of (int, pathlib.Path)
        (iteration, path) pairs, by iteration.

    Examples
    --------
    >>> import tempfile
    >>> from skvmf.models import list_checkpoints
    >>> with tempfile.TemporaryDirectory() as d:
    ...     list_checkpoints(d)
    []
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"checkpoint directory {str(directory)!r} does not exist")
    found = []
    for path in sorted([*directory.glob("*.pt"), *directory.glob("*.pth")]):
        try:
            ckpt = _read_checkpoint(path)
        except ValueError:
            continue
        found.append((int(ckpt["iteration"]), path))
    return sorted(found, key=lambda item: (item[0], str(item[1])))
