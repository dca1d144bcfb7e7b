"""The torch kernels of SPEC sections 3-5.

- :mod:`.matching`: anchor matching, the aligner's loss and its gradients;
- :mod:`.importance_fit`: the importance-weight fit;
- :mod:`.region_inputs`: the aligner's regional inputs on the device;
- :mod:`.kappa`: the revised kappa(l) in torch, with its derivative.

Nothing here is public.
"""
