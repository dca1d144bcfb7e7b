"""numpy-side numerics (numpy, or any Array API namespace); nothing here
imports torch.

- :mod:`.bessel`: log I_nu and the Bessel ratio;
- :mod:`.kappa_table`: the revised kappa(l) table;
- :mod:`.arrays`: array checks;
- :mod:`.soft_labels`, :mod:`.ties`;
- :mod:`.xp_vmf`: the vMF numerics on any Array API namespace.

Nothing here is public.
"""
