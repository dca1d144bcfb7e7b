"""The one private torch layer under every module that runs a network.

- :mod:`.hooks`: hook registration that always cleans up, output capture,
  and the evaluation context that restores every submodule's mode and the
  device;
- :mod:`.images`: the one image-input checker and batcher (arrays, tensors,
  datasets, loaders; rank, channels, dtype, finiteness);
- :mod:`.files`: torch files (``torch.load(weights_only=True)``) and data
  files (a restricted unpickler), every failure a ``ValueError`` naming the
  file;
- :mod:`.checkpoints`: the skvmf checkpoint, its one owner: written, read,
  recognised, rebuilt into its network, and the one message for weights
  that do not fit a network;
- :mod:`.layout`: CNN maps, ViT tokens and channels-last maps read as one
  (N, K, H, W) view;
- :mod:`.layers`: the paper's layer aliases per architecture, and layer
  resolution (:func:`~.layers.resolve_layer` to a module name,
  :func:`~.layers.resolve_module` to ``(name, module)``);
- :mod:`.arch_names`: the names of the networks skvmf builds and loads
  (torch-free, for the command line);
- :mod:`.devices`: devices, dtypes and seeds;
- :mod:`.optimisers`: the one momentum-SGD step and its per-row form.

These files import each other without a cycle (``tests/test_package_layout.py``
checks it): ``layers -> images -> hooks -> layout`` and
``checkpoints -> files``.

``to_numpy``, ``real_array`` and the overflow-safe norms are numpy-side
(duck-typed for tensors) and live in :mod:`skvmf._numerics.arrays`.

Nothing here is public; public modules import from here, never from each
other's private names.
"""
