"""The names of the networks skvmf builds and loads, in one place.

Plain tuples of strings, no torch: the command line checks ``--arch`` with
them before anything heavy is imported.

- :data:`BUILT`: the CNNs :func:`skvmf.architectures.make_classifier` builds
  (public as :data:`skvmf.architectures.ARCHITECTURES`); the small ViT is
  :func:`skvmf.architectures.make_vit_classifier`'s ``"vit"``;
- :data:`ARCH_NAMES`: every ``arch`` :func:`skvmf.sources.resolve_model` and
  ``skvmf analyze --arch`` take (public as :data:`skvmf.sources.ARCH_NAMES`):
  torchvision's networks at their standard size, and with the prefix
  ``skvmf:`` skvmf's small-input variants of the same CNNs and its small ViT.
"""

BUILT = ("vgg16", "resnet18", "resnet34", "resnet50", "mobilenet_v2")
# the CNNs by name: VGG-16-BN is make_classifier's vgg16 with batch_norm=True
CNNS = (BUILT[0], "vgg16_bn", *BUILT[1:])
# torchvision's vision transformers: 224 px inputs (their positional
# embeddings are built for it); regions are the patch tokens
TRANSFORMERS = ("vit_b_16", "vit_b_32", "swin_t")
TORCHVISION = (*CNNS, *TRANSFORMERS)
SKVMF_PREFIX = "skvmf:"
# skvmf's small-input variants (skvmf:NAME): the CNNs and the small ViT
SKVMF = (*CNNS, "vit")
ARCH_NAMES = (*TORCHVISION, *(SKVMF_PREFIX + name for name in SKVMF))
