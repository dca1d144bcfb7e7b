"""The tie rule shared by the category hierarchy and the prediction tree.

Distances that are equal in real arithmetic can differ in the last bits
after rounding; both clustering algorithms treat values within ``TIE_TOL``
(relative to the larger of 1 and the minimum) as equal and then take the
first one, so that their documented tie rules hold whatever the rounding.
"""

from __future__ import annotations

import numpy as np

# Values closer than this count as equal.
TIE_TOL = 1e-12


def first_min(values):
    """Flat index of the first entry within ``TIE_TOL`` of the minimum."""
    flat = np.ravel(values)
    m = flat.min()
    if not np.isfinite(m):
        return int(np.argmin(flat))
    return int(np.argmax(flat <= m + TIE_TOL * max(1.0, abs(m))))
