"""Choosing the aligner's align_weight by the method's own loss on held-out
images, blind to the findings.

Run by hand::

    python benchmarks/bench_align_weight.py

The digits VGG-16-BN (seed 0), the demo's 12 test images per digit split
as :func:`skvmf.analyze` splits them (60 fit, 60 held out); per seed, one
SampleProjector (n_init=3) fitted on the fit images, then one RegionalAligner
per align_weight fitted on the fit images, and its L_sim on the held-out
images (:meth:`skvmf.RegionalAligner.held_out_losses`: the images' own
importance weights and matching, the fitted Lambda), both terms of the
objective apart and unweighted, so that the weights can be compared by them.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

try:  # run from a checkout without installing the package
    import skvmf  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
from sklearn.exceptions import ConvergenceWarning

import skvmf
from skvmf.analysis import _repeat_seeds, _split
from skvmf.datasets import as_arrays, load_digits_images, subset_per_class

WEIGHTS = (0.1, 0.3, 1.0)
LAYERS = ["conv_12", "conv_22", "conv_33", "conv_43", "conv_53"]


def main(n_seeds=3):
    warnings.simplefilter("ignore", ConvergenceWarning)
    model, _ = skvmf.train_digits_classifier(random_state=0)
    X, y = as_arrays(subset_per_class(load_digits_images("test"), 12, random_state=0))
    fs = skvmf.TorchFeatureExtractor(model, LAYERS).fit(X[:1]).transform(X)
    fit, held = _split(y, 0.5, 0)
    rows = []
    for seed in _repeat_seeds(0, n_seeds):
        proj = skvmf.SampleProjector(n_init=3, random_state=seed).fit(fs[fit])
        fit_fs, held_fs = proj.transform(fs[fit]), proj.transform(fs[held])
        for weight in WEIGHTS:
            t = time.perf_counter()
            al = skvmf.RegionalAligner(align_weight=weight, random_state=seed)
            al.fit(fit_fs)
            loss = al.held_out_losses(held_fs)
            rows.append(
                {
                    "seed": seed,
                    "align_weight": weight,
                    **{f"{k} sim": v["sim"] for k, v in loss.items()},
                    **{f"{k} align": v["align"] for k, v in loss.items()},
                }
            )
            print(seed, weight, f"{time.perf_counter() - t:.0f} s", flush=True)
    for part in ("sim", "align"):
        print(f"\nheld-out L_{part} (mean ± sd over seeds)")
        print("| align_weight | " + " | ".join(LAYERS) + " | mean |")
        print("|---|" + "---|" * (len(LAYERS) + 1))
        for weight in WEIGHTS:
            sel = [r for r in rows if r["align_weight"] == weight]
            vals = [[r[f"{layer} {part}"] for r in sel] for layer in LAYERS]
            cells = [f"{np.mean(v):.4f} ± {np.std(v):.4f}" for v in vals]
            mean = np.mean([np.mean(v) for v in vals])
            print(f"| {weight} | " + " | ".join(cells) + f" | {mean:.4f} |")
    return rows


if __name__ == "__main__":
    main()
