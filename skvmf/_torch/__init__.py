"""The one private torch layer under every module that runs a network.

- :mod:`.hooks`: layer resolution, hook registration that always cleans up,
  output capture, and the evaluation context that restores every
  submodule's mode and the device;
- :mod:`.images`: the one image-input checker and batcher (arrays, tensors,
  datasets, loaders; rank, channels, dtype, finiteness);
- :mod:`.files`: checkpoints (``torch.load(weights_only=True)``) and data
  files (a restricted unpickler), every failure a ``ValueError`` naming the
  file;
- :mod:`.layout`: CNN maps, ViT tokens and channels-last maps read as one
  (N, K, H, W) view;
- :mod:`.layers`: the paper's layer aliases per architecture;
- :mod:`.devices`: devices, dtypes and seeds;
- :mod:`.optimisers`: the one momentum-SGD step and its per-row form.

``to_numpy``, ``real_array`` and the overflow-safe norms are numpy-side
(duck-typed for tensors) and live in :mod:`skvmf._numerics.arrays`.

Nothing here is public; public modules import from here, never from each
other's private names.
"""
