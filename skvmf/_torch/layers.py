"""Layer names of the paper's networks, found from the model's structure.

The paper (Li, Wang & Zhang, NeurIPS 2021, supplement) analyses VGG-16
(``conv_12`` ... ``conv_53``), ResNet-18/34/50 (``conv_1`` ... ``conv_5``) and
MobileNet-V2 (``layer_4`` ... ``layer_18``). This module maps those aliases to
module names of ``model.named_modules()``. The architecture is recognised by
its structure (module types and the attributes torchvision uses), never by a
class-name string of the whole model, so adapted copies (changed stem, width,
pooling, a hand-written ``features`` Sequential of the same pattern) resolve
too.

================  ===============  ================  ==========================
alias             vgg16            vgg16_bn          meaning
================  ===============  ================  ==========================
``conv_12``       ``features.3``   ``features.5``    ReLU after the 2nd conv of
                                                     block 1
``conv_22``       ``features.8``   ``features.12``   ReLU after conv 2, block 2
``conv_33``       ``features.15``  ``features.22``   ReLU after conv 3, block 3
``conv_43``       ``features.22``  ``features.32``   ReLU after conv 3, block 4
``conv_53``       ``features.29``  ``features.42``   ReLU after conv 3, block 5
================  ===============  ================  ==========================

================  ==================  =======================================
alias             ResNet module       meaning
================  ==================  =======================================
``conv_1``        ``relu``            stem output after its ReLU, before the
                                      max pool (ResNet paper, Table 1: the
                                      pool opens conv2_x)
``conv_2``        ``layer1``          output of conv2_x (also ``conv_2x``)
``conv_3``        ``layer2``          output of conv3_x (also ``conv_3x``)
``conv_4``        ``layer3``          output of conv4_x (also ``conv_4x``)
``conv_5``        ``layer4``          output of conv5_x (also ``conv_5x``)
================  ==================  =======================================

================  ==================  =======================================
alias             MobileNet-V2        meaning
================  ==================  =======================================
``layer_4``       ``features.3``      last block of the 24-channel stage
``layer_7``       ``features.6``      last block of the 32-channel stage
``layer_11``      ``features.10``     last block of the 64-channel stage
``layer_14``      ``features.13``     last block of the 96-channel stage
``layer_18``      ``features.17``     the 320-channel block
================  ==================  =======================================

The paper counts MobileNet-V2 layers from 1 over ``features`` (the stem
convolution is layer 1), so ``layer_n`` is ``features.{n-1}``; every
``layer_1`` ... ``layer_19`` is available, the five above are the default.
For VGG every ``conv_{b}{i}`` exists (block ``b``, conv ``i`` in the block),
and the default is the last conv of each block.

Vision transformers (not in the paper; the same reading with patch tokens
as regions) are named by encoder block, counted from 1 in forward order:

================  ==============================  ==============================
alias             ViT (``vit_b_16``, ``vit_b_32``)  Swin (``swin_t``)
================  ==============================  ==============================
``block_{i}``     ``encoder.layers.encoder_``     the i-th Swin block over all
                  ``layer_{i-1}``                 stages (``features.{s}.{j}``)
``stage_{s}``     --                              ``features.1/3/5/7`` (the
                                                  stage's last block)
================  ==============================  ==============================

The default is evenly spaced blocks ending with the last: for 12 blocks
(ViT-B, Swin-T) ``block_3``, ``block_6``, ``block_9``, ``block_12``; in
general the largest of 5, 4 or 3 layers that divides the depth, else 5 (or
every block of a shallower encoder). For Grad-CAM use a block's first
LayerNorm (``ln_1`` / ``norm1``): at a ViT's last block output only the class
token reaches the logits.

:func:`resolve_layer` turns a module name or an alias into the module name;
:func:`resolve_module` also takes a submodule, and returns ``(name, module)``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from torch import nn

from .images import first_conv_channels  # noqa: F401 (one definition)

_POOLS = (nn.MaxPool2d, nn.AvgPool2d)

# Convolutions per block of the four VGG configurations (Simonyan & Zisserman
# 2015, Table 1: A, B, D, E), keyed by their total number of convolutions.
_VGG_CONFIGS = {
    8: (1, 1, 2, 2, 2),
    10: (2, 2, 2, 2, 2),
    13: (2, 2, 3, 3, 3),
    16: (2, 2, 4, 4, 4),
}

_MOBILENET_V2_DEFAULT = (4, 7, 11, 14, 18)


@dataclass(frozen=True)
class ArchitectureLayers:
    """The aliases found for one model.

    Attributes
    ----------
    family : {"vgg", "resnet", "mobilenet_v2", "vit", "swin"}
        The recognised architecture.
    aliases : dict of str to str
        Alias -> module name in ``model.named_modules()``.
    default : tuple of str
        The paper's layers for this architecture, in depth order.
    """

    family: str
    aliases: dict[str, str] = field(default_factory=dict)
    default: tuple[str, ...] = ()


def _contains_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def _is_inverted_residual(module: nn.Module) -> bool:
    return type(module).__name__ == "InvertedResidual" or hasattr(
        module, "use_res_connect"
    )


def _vgg_layers(features: nn.Sequential, prefix: str) -> ArchitectureLayers | None:
    """Group the convs of a VGG ``features`` Sequential into blocks."""
    children = list(features.named_children())
    # VGG: convolutions are direct children (no nested conv-holding blocks)
    if not any(isinstance(m, nn.Conv2d) for _, m in children):
        return None
    if any(not isinstance(m, nn.Conv2d) and _contains_conv(m) for _, m in children):
        return None
    # each conv owns the modules after it (BN, ReLU) up to the next conv/pool;
    # identities and dropouts (no-ops in eval) are not alias targets
    convs: list[list[str]] = []  # per conv: its child names
    blocks: list[list[int]] = [[]]  # per block: indices into convs
    for name, module in children:
        if isinstance(module, nn.Conv2d):
            convs.append([name])
            blocks[-1].append(len(convs) - 1)
        elif isinstance(module, _POOLS):
            if blocks[-1]:
                blocks.append([])
        elif convs and blocks[-1] and not isinstance(module, (nn.Identity, nn.Dropout)):
            convs[-1].append(name)
    if not blocks[-1]:
        blocks.pop()
    sizes = tuple(len(b) for b in blocks)
    config = _VGG_CONFIGS.get(len(convs))
    if len(blocks) != 5 and config is not None:
        # pooling was removed or moved (small-input adaptation): fall back to
        # the canonical VGG grouping of the same depth
        blocks, start = [], 0
        for size in config:
            blocks.append(list(range(start, start + size)))
            start += size
        sizes = config
    aliases = {}
    for b, block in enumerate(blocks, start=1):
        for i, conv_index in enumerate(block, start=1):
            aliases[f"conv_{b}{i}"] = f"{prefix}{convs[conv_index][-1]}"
    default = tuple(f"conv_{b}{size}" for b, size in enumerate(sizes, start=1))
    return ArchitectureLayers("vgg", aliases, default)


def _resnet_layers(model: nn.Module) -> ArchitectureLayers | None:
    stages = [getattr(model, f"layer{i}", None) for i in range(1, 5)]
    if not all(isinstance(s, nn.Sequential) and len(s) > 0 for s in stages):
        return None
    aliases = {}
    # conv_1: the last non-pooling top-level module before layer1 (the stem's
    # ReLU in torchvision; registration order is forward order there)
    stem = None
    for name, module in model.named_children():
        if module is stages[0]:
            break
        if not isinstance(module, (*_POOLS, nn.Identity)):
            stem = name
    if stem is not None:
        aliases["conv_1"] = stem
    for i in range(4):
        aliases[f"conv_{i + 2}"] = f"layer{i + 1}"
        aliases[f"conv_{i + 2}x"] = f"layer{i + 1}"
    default = tuple(
        a for a in ("conv_1", "conv_2", "conv_3", "conv_4", "conv_5") if a in aliases
    )
    return ArchitectureLayers("resnet", aliases, default)


def _mobilenet_layers(
    features: nn.Sequential, prefix: str
) -> ArchitectureLayers | None:
    children = list(features.named_children())
    if not any(_is_inverted_residual(m) for _, m in children):
        return None
    aliases = {
        f"layer_{n}": f"{prefix}{name}" for n, (name, _) in enumerate(children, 1)
    }
    default = (
        tuple(f"layer_{n}" for n in _MOBILENET_V2_DEFAULT)
        if len(children) == 19
        else ()
    )
    return ArchitectureLayers("mobilenet_v2", aliases, default)


def _even_blocks(depth: int) -> tuple[int, ...]:
    """Evenly spaced block numbers (1-based) ending with the last."""
    if depth <= 0:
        return ()
    n = next((k for k in (5, 4, 3) if depth % k == 0), min(5, depth))
    if depth < n:
        n = depth
    return tuple(sorted({max(1, round(depth * i / n)) for i in range(1, n + 1)}))


def _is_vit_block(module: nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("ln_1", "self_attention", "mlp"))


def _is_swin_block(module: nn.Module) -> bool:
    return type(module).__name__.startswith("SwinTransformerBlock") or all(
        hasattr(module, a) for a in ("norm1", "attn", "norm2", "mlp")
    )


def _blocks_layers(family, blocks, stages=None) -> ArchitectureLayers:
    aliases = {f"block_{i}": name for i, name in enumerate(blocks, start=1)}
    for s, name in enumerate(stages or (), start=1):
        aliases[f"stage_{s}"] = name
    default = tuple(f"block_{i}" for i in _even_blocks(len(blocks)))
    return ArchitectureLayers(family, aliases, default)


def _vit_layers(model: nn.Module) -> ArchitectureLayers | None:
    layers = getattr(getattr(model, "encoder", None), "layers", None)
    if not isinstance(layers, nn.Sequential) or not isinstance(
        getattr(model, "conv_proj", None), nn.Conv2d
    ):
        return None
    children = list(layers.named_children())
    if not children or not all(_is_vit_block(m) for _, m in children):
        return None
    return _blocks_layers("vit", [f"encoder.layers.{n}" for n, _ in children])


def _swin_layers(features: nn.Sequential, prefix: str) -> ArchitectureLayers | None:
    blocks, stages = [], []
    for name, child in features.named_children():
        if not isinstance(child, nn.Sequential):
            continue
        inner = list(child.named_children())
        if inner and all(_is_swin_block(m) for _, m in inner):
            blocks += [f"{prefix}{name}.{n}" for n, _ in inner]
            stages.append(f"{prefix}{name}")
    if not blocks:
        return None
    return _blocks_layers("swin", blocks, stages)


def detect_architecture(model: nn.Module) -> ArchitectureLayers | None:
    """Recognise VGG, ResNet, MobileNet-V2, ViT or Swin from the model's structure.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier.

    Returns
    -------
    ArchitectureLayers or None
        The family, its aliases and its default layers; ``None`` for any
        other architecture (then only module names are accepted).

    Examples
    --------
    >>> import torch, torchvision
    >>> with torch.device("meta"):  # the structure alone: no weights needed
    ...     model = torchvision.models.vgg16(weights=None)
    >>> arch = detect_architecture(model)
    >>> arch.family, arch.aliases["conv_12"], arch.default[-1]
    ('vgg', 'features.3', 'conv_53')
    """
    resnet = _resnet_layers(model)
    if resnet is not None:
        return resnet
    vit = _vit_layers(model)
    if vit is not None:
        return vit
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):
        found = _swin_layers(features, "features.")
        if found is not None:
            return found
        found = _mobilenet_layers(features, "features.")
        if found is None:
            found = _vgg_layers(features, "features.")
        return found
    return None


def module_names(model: nn.Module) -> list[str]:
    """Names of every submodule (the root ``""`` excluded)."""
    return [name for name, _ in model.named_modules() if name]


def resolve_layer(
    name: str,
    model: nn.Module,
    arch: ArchitectureLayers | None,
    *,
    names: list[str] | None = None,
    what: str = "layer",
) -> str:
    """Module name for a module name or an alias; ValueError with suggestions.

    A module name of the model wins over an alias of the same spelling.

    Parameters
    ----------
    name : str
        A name of ``model.named_modules()`` or an alias of ``arch``.
    model : torch.nn.Module
        The model.
    arch : ArchitectureLayers or None
        Result of :func:`detect_architecture`.
    names : list of str, optional
        Precomputed :func:`module_names` of ``model``.
    what : str, default="layer"
        How the error message calls the argument.

    Returns
    -------
    str
        The module name.

    Examples
    --------
    >>> import torchvision
    >>> model = torchvision.models.resnet18(weights=None)
    >>> arch = detect_architecture(model)
    >>> resolve_layer("conv_5", model, arch), resolve_layer("layer2.1", model, arch)
    ('layer4', 'layer2.1')
    """
    if not isinstance(name, str):
        raise ValueError(f"{what} names must be strings; got {name!r}")
    if names is None:
        names = module_names(model)
    if name in set(names):
        return name
    aliases = arch.aliases if arch is not None else {}
    if name in aliases:
        return aliases[name]
    candidates = [*aliases, *names]
    close = difflib.get_close_matches(name, candidates, n=6, cutoff=0.5)
    family = f" ({arch.family})" if arch is not None else ""
    if close:
        hint = f"closest valid names: {close}"
    elif aliases:
        hint = f"aliases of this model{family}: {list(aliases)[:20]}"
    else:
        hint = f"module names include: {names[:20]}"
    raise ValueError(
        f"{what} {name!r} is neither a module of {type(model).__name__}{family} "
        f"nor one of its aliases; {hint}"
    )


def resolve_module(model: nn.Module, layer) -> tuple[str, nn.Module]:
    """``(name, module)`` for a module name, a paper alias or a submodule.

    Names and aliases go through :func:`resolve_layer` (a clear error with
    suggestions for an unknown one); a submodule must belong to ``model``.
    """
    if isinstance(layer, nn.Module):
        for name, candidate in model.named_modules():
            if candidate is layer:
                return name or "<model>", candidate
        raise ValueError(
            f"layer {type(layer).__name__} is not a submodule of the model"
        )
    if isinstance(layer, str):
        name = resolve_layer(layer, model, detect_architecture(model))
        return name, dict(model.named_modules())[name]
    raise ValueError(
        f"layer must be a module name (str) or an nn.Module; got {type(layer).__name__}"
    )


def last_linear(model: nn.Module) -> str | None:
    """Name of the last ``nn.Linear`` in registration order, or None."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = name
    return found


def set_conv5_stride1(model: nn.Module) -> None:
    """Give the first block of ResNet's conv5_x (``layer4``) stride 1, in place.

    The supplement's modification: every stride-2 convolution of
    ``layer4[0]`` (its strided 3x3 or 1x1 conv and its downsample conv) gets
    stride 1, so conv_5 keeps conv_4's spatial size.
    """
    block = model.layer4[0]
    changed = 0
    for module in block.modules():
        if isinstance(module, nn.Conv2d) and any(s > 1 for s in module.stride):
            module.stride = (1, 1)
            changed += 1
    if not changed:
        raise ValueError(
            "stride1_conv5=True found no strided convolution in layer4[0]; "
            "conv_5 already has stride 1"
        )
