"""Small-input torchvision classifiers, built with the paper's layer names.

The analysis needs networks whose layers carry the paper's names, so every
model built here is an instance of torchvision's own class
(:class:`torchvision.models.VGG`, :class:`torchvision.models.ResNet`,
:class:`torchvision.models.MobileNetV2`,
:class:`torchvision.models.VisionTransformer`) with the same attribute
structure, adapted to small inputs (digits at 32 px, CIFAR) and scaled in
width so that it trains on a CPU:

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
``"vit"`` (:func:`make_vit_classifier`)
    torchvision's own ``VisionTransformer``, small: by default 16 px inputs
    cut into 4 x 4 patches (a 4 x 4 grid of 16 patch tokens plus the class
    token), 4 encoder blocks of width 64 with 4 heads and an MLP of 128. Its
    blocks are the regions' layers (``block_1`` ... ``block_4``); the sample
    feature is the class token after the final LayerNorm.

Side of the deepest block's grid (conv_5x, ``layer4``, ``features[-1]``):
the input is halved while the result stays at least 7, at most 4 times for
VGG-16 (as in torchvision's, whose conv_5x is 14 x 14 at 224 px) and 5 times
for the ResNets and MobileNetV2 (7 x 7 at 224 px)::

    input_size      7..13  14..27  28..55  56..111  112..223  224..
    VGG-16          s      s/2     s/4     s/8      s/16      s/16
    ResNet, MbNetV2 s      s/2     s/4     s/8      s/16      s/32

(floored; 8 x 8 for every architecture at 32 px, the digits default).

The build configuration is stored on the model as ``model.skvmf_config`` (a
dict of plain types), so :func:`skvmf.training.load_checkpoint` rebuilds the
network without pickled code. :func:`make_digits_classifier` builds the
untrained network of the digits recipe (:mod:`skvmf.training`).
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import torch
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from torch import nn

from ._digits_recipe import model_options
from ._torch.arch_names import BUILT
from ._torch.devices import seed_of

__all__ = [
    "ARCHITECTURES",
    "make_classifier",
    "make_digits_classifier",
    "make_vit_classifier",
]

#: The CNN architectures :func:`make_classifier` builds (VGG-16-BN is
#: ``"vgg16"`` with ``batch_norm=True``; the ViT is :func:`make_vit_classifier`).
#: The names :func:`skvmf.sources.resolve_model` takes, torchvision's included,
#: are :data:`skvmf.sources.ARCH_NAMES`.
ARCHITECTURES = BUILT

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


def _positive_int(low: int) -> Interval:
    return Interval(Integral, low, None, closed="left")


# --------------------------------------------------------------------------
# the convolutional families
# --------------------------------------------------------------------------


def _n_halvings(input_size: int, available: int) -> int:
    """Largest k <= available with floor(input_size / 2**k) >= 7."""
    k = 0
    while k < available and input_size // 2 ** (k + 1) >= _MIN_GRID:
        k += 1
    return k


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


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


def _vgg16_features(width, input_size, in_channels, batch_norm) -> nn.Sequential:
    """The VGG-16 trunk with identity pools where the grid would fall below 7."""
    from torchvision.models.vgg import make_layers

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
    return features


def _build_vgg16(n_classes, width, input_size, in_channels, batch_norm, dropout):
    from torchvision.models.vgg import VGG

    features = _vgg16_features(width, input_size, in_channels, batch_norm)
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


def _resnet_stem(model, width, input_size, in_channels) -> int:
    """Replace the stem for small or ImageNet-size inputs; the grid after it."""
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
    return grid


def _build_resnet(arch, n_classes, width, input_size, in_channels):
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    block = Bottleneck if arch == "resnet50" else BasicBlock
    layers = _RESNET_LAYERS[arch]
    with torch.device("meta"):  # every module with weights is rebuilt below
        model = ResNet(block, list(layers), num_classes=n_classes)
    grid = _resnet_stem(model, width, input_size, in_channels)
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


def _resolve_dropout(arch: str, dropout) -> float | None:
    """The architecture's dropout: None for the ResNets (which have none),
    the family's default (0.5 for VGG-16, 0.2 for MobileNetV2) for None."""
    if arch.startswith("resnet"):
        if dropout not in (None, 0, 0.0):
            raise ValueError(f"{arch} has no dropout layer; got dropout={dropout!r}")
        return None
    if dropout is None:
        return 0.5 if arch == "vgg16" else 0.2
    return float(dropout)


def _build_family(arch, n_classes, width, input_size, in_channels, batch_norm, dropout):
    """Dispatch to the family's builder and initialise the weights."""
    if arch == "vgg16":
        model = _build_vgg16(
            n_classes, width, input_size, in_channels, batch_norm, dropout
        )
    elif arch == "mobilenet_v2":
        model = _build_mobilenet_v2(n_classes, width, input_size, in_channels, dropout)
    else:
        model = _build_resnet(arch, n_classes, width, input_size, in_channels)
    _init_weights(model)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise RuntimeError(  # pragma: no cover
            "internal error: a module was left on the meta device"
        )
    return model


_CLASSIFIER_PARAMS = {
    "arch": [StrOptions(set(ARCHITECTURES))],
    "n_classes": [_positive_int(2)],
    "width": [Interval(Real, 0, 4, closed="right")],
    "input_size": [_positive_int(_MIN_GRID)],
    "in_channels": [_positive_int(1)],
    "batch_norm": ["boolean"],
    "dropout": [Interval(Real, 0, 1, closed="left"), None],
    "random_state": ["random_state"],
}


@validate_params(_CLASSIFIER_PARAMS, prefer_skip_nested_validation=True)
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
        Number of outputs of the last ``nn.Linear`` (at least 2).
    width : float, default=0.25
        Channel multiplier in (0, 4] (1.0 is the original width).
    input_size : int, default=32
        Side of the square inputs the network is meant for (at least 7); it
        decides which poolings/strides are kept.
    in_channels : int, default=3
        Channels of the input images.
    batch_norm : bool, default=False
        VGG-16 with batch normalisation (torchvision's ``vgg16_bn`` layout).
        ResNets and MobileNetV2 always have batch normalisation.
    dropout : float in [0, 1) or None, default=None
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
    >>> from skvmf.architectures import make_classifier
    >>> model = make_classifier("vgg16", n_classes=10, width=0.125, random_state=0)
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> model.skvmf_config["arch"], type(model.classifier[-1]).__name__
    ('vgg16', 'Linear')
    """
    dropout = _resolve_dropout(arch, dropout)
    config = {
        "arch": arch,
        "n_classes": int(n_classes),
        "width": float(width),
        "input_size": int(input_size),
        "in_channels": int(in_channels),
        "batch_norm": bool(batch_norm),
        "dropout": dropout,
    }
    seed = seed_of(random_state)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = _build_family(**config)
    model.skvmf_config = config
    return model


# --------------------------------------------------------------------------
# the vision transformer
# --------------------------------------------------------------------------


_VIT_PARAMS = {
    "n_classes": [_positive_int(2)],
    "input_size": [_positive_int(1)],
    "patch_size": [_positive_int(1)],
    "depth": [_positive_int(1)],
    "n_heads": [_positive_int(1)],
    "dim": [_positive_int(1)],
    "mlp_dim": [_positive_int(1)],
    "in_channels": [_positive_int(1)],
    "dropout": [Interval(Real, 0, 1, closed="left")],
    "random_state": ["random_state"],
}


def _check_vit_shapes(values: dict) -> None:
    """Patches must tile the image and heads must split the token width."""
    if values["input_size"] % values["patch_size"]:
        raise ValueError(
            f"input_size ({values['input_size']}) must be a multiple of "
            f"patch_size ({values['patch_size']})"
        )
    if values["dim"] % values["n_heads"]:
        raise ValueError(
            f"n_heads ({values['n_heads']}) must divide dim ({values['dim']})"
        )


def _build_vit(values: dict, dropout: float) -> nn.Module:
    """torchvision's VisionTransformer with a fan-in initialised head."""
    import torchvision

    model = torchvision.models.VisionTransformer(
        image_size=values["input_size"],
        patch_size=values["patch_size"],
        num_layers=values["depth"],
        num_heads=values["n_heads"],
        hidden_dim=values["dim"],
        mlp_dim=values["mlp_dim"],
        dropout=dropout,
        num_classes=values["n_classes"],
    )
    if values["in_channels"] != 3:
        p = values["patch_size"]
        model.conv_proj = nn.Conv2d(
            values["in_channels"], values["dim"], kernel_size=p, stride=p
        )
    model.heads.head.reset_parameters()
    return model


@validate_params(_VIT_PARAMS, prefer_skip_nested_validation=True)
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
    dropout : float in [0, 1), default=0.0
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
    >>> from skvmf.architectures import make_vit_classifier
    >>> model = make_vit_classifier(n_classes=10, random_state=0)
    >>> model(torch.zeros(2, 3, 16, 16)).shape
    torch.Size([2, 10])
    >>> model.skvmf_config["arch"], len(model.encoder.layers)
    ('vit', 4)
    """
    values = {
        "n_classes": int(n_classes),
        "input_size": int(input_size),
        "patch_size": int(patch_size),
        "depth": int(depth),
        "n_heads": int(n_heads),
        "dim": int(dim),
        "mlp_dim": int(mlp_dim),
        "in_channels": int(in_channels),
    }
    _check_vit_shapes(values)
    seed = seed_of(random_state)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = _build_vit(values, float(dropout))
    model.skvmf_config = {"arch": "vit", **values, "dropout": float(dropout)}
    return model


# --------------------------------------------------------------------------
# the digits recipe's network
# --------------------------------------------------------------------------


# The options are handed on to make_classifier / make_vit_classifier, whose
# own validation must then run: nested validation is not skipped.
@validate_params(
    {
        "arch": [StrOptions({*ARCHITECTURES, "vit"})],
        "n_classes": [_positive_int(2)],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=False,
)
def make_digits_classifier(
    arch: str = "vgg16", n_classes: int = 10, *, random_state=None, **options
) -> nn.Module:
    """The untrained network of the digits recipe (``skvmf demo``).

    A width 1/8 network at 32 px with batch normalisation and no dropout
    (:func:`make_classifier`), or for ``arch="vit"`` the small ViT of
    :func:`make_vit_classifier` (16 px in 4 x 4 patches, 4 blocks of width
    64). :func:`skvmf.training.train_digits_classifier` trains it.

    Parameters
    ----------
    arch : str, default="vgg16"
        Any architecture of :func:`make_classifier`, or ``"vit"``.
    n_classes : int, default=10
        Number of outputs.
    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialisation.
    **options
        Replace recipe options: ``width``, ``input_size``, ``batch_norm``,
        ``dropout`` (or, for the ViT, ``input_size``, ``patch_size``,
        ``depth``, ``n_heads``, ``dim``, ``mlp_dim``, ``dropout``).

    Returns
    -------
    model : torch.nn.Module
        In training mode, with ``model.skvmf_config``.

    Examples
    --------
    >>> from skvmf.architectures import make_digits_classifier
    >>> config = make_digits_classifier(random_state=0).skvmf_config
    >>> config["width"], config["input_size"], config["batch_norm"]
    (0.125, 32, True)
    """
    recipe = model_options(arch)
    unknown = sorted(set(options) - {*recipe, "dropout"})
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown}; expected some of {sorted(recipe)}"
        )
    recipe.update(options)
    if arch == "vit":
        return make_vit_classifier(n_classes, random_state=random_state, **recipe)
    return make_classifier(arch, n_classes, random_state=random_state, **recipe)
