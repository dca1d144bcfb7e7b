"""Choosing the aligner's align_weight by the method's own loss on held-out
images, blind to the findings.

Run by hand::

    python benchmarks/bench_align_weight.py
    python benchmarks/bench_align_weight.py --smoke    # toy size, seconds

The digits VGG-16-BN (seed 0), the demo's 12 test images per digit split
in half per digit as :func:`skvmf.analyze` splits them with ``held_out=0.5``
(60 fit, 60 held out; the split and the repeat seeds are rebuilt here from
public numpy, with the same algorithm); per seed, one SampleProjector
(n_init=3) fitted on the fit images, then one RegionalAligner per
align_weight fitted on the fit images, and its L_sim on the held-out images
(:meth:`skvmf.RegionalAligner.held_out_losses`: the images' own importance
weights and matching, the fitted Lambda), both terms of the objective apart
and unweighted, so that the weights can be compared by them.

``--smoke`` (and the test suite) runs the same steps at toy size: an
*untrained* width-1/8 VGG-16-BN, 2 test images per digit, two layers, one
seed, a short projection and a one-epoch aligner (only the columns mean
anything there).
"""

from __future__ import annotations

import argparse
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
from skvmf.datasets import as_arrays, load_digits_images, subset_per_class

WEIGHTS = (0.1, 0.3, 1.0)
LAYERS = ["conv_12", "conv_22", "conv_33", "conv_43", "conv_53"]
SIZES = {
    "full": {
        "per_class": 12,
        "layers": LAYERS,
        "n_seeds": 3,
        "projector": {"n_init": 3},
        "aligner": {},
    },
    "toy": {
        "per_class": 2,
        "layers": ["conv_33", "conv_53"],
        "n_seeds": 1,
        "projector": {"n_init": 1, "max_iter": 50},
        "aligner": {"max_epochs": 1, "weight_steps": 2},
    },
}
PHASES = ("held_out",)


def columns(layers):
    """Keys of every row: the seed, the weight and two losses per layer."""
    return (
        "seed",
        "align_weight",
        "seconds",
        *(f"{layer} {part}" for part in ("sim", "align") for layer in layers),
    )


def repeat_seeds(random_state, n_seeds):
    """The per-repeat seeds that analyze derives from an int random_state."""
    children = np.random.SeedSequence(int(random_state)).spawn(n_seeds)
    return [int(s.generate_state(1)[0] % (2**31 - 1)) for s in children]


def stratified_halves(y, random_state):
    """Fit and held-out positions: each class's images shuffled, half held out."""
    rng = np.random.default_rng(random_state)
    fit, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = min(max(int(round(0.5 * len(idx))), 1), len(idx) - 1)
        held.extend(idx[:k])
        fit.extend(idx[k:])
    return np.sort(fit), np.sort(held)


def features(size):
    """The FeatureSet of the test images and their labels."""
    plan = SIZES[size]
    if size == "toy":
        model = skvmf.make_classifier(
            "vgg16", 10, width=0.125, batch_norm=True, random_state=0
        ).eval()
    else:
        model, _ = skvmf.train_digits_classifier(random_state=0)
    data = subset_per_class(
        load_digits_images("test"), plan["per_class"], random_state=0
    )
    X, y = as_arrays(data)
    ext = skvmf.TorchFeatureExtractor(model, plan["layers"]).fit(X[:1])
    return ext.transform(X), y


def run_phase(phase="held_out", size="toy", workdir=None, *, n_seeds=None):
    """One row per (seed, align_weight): held-out L_sim and L_align per layer.

    ``workdir`` is accepted for a uniform interface: nothing is written.
    """
    plan = SIZES[size]
    fs, y = features(size)
    fit, held = stratified_halves(y, 0)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for seed in repeat_seeds(0, n_seeds or plan["n_seeds"]):
            proj = skvmf.SampleProjector(random_state=seed, **plan["projector"])
            proj.fit(fs[fit])
            fit_fs, held_fs = proj.transform(fs[fit]), proj.transform(fs[held])
            for weight in WEIGHTS:
                t = time.perf_counter()
                al = skvmf.RegionalAligner(
                    align_weight=weight, random_state=seed, **plan["aligner"]
                )
                loss = al.fit(fit_fs).held_out_losses(held_fs)
                rows.append(
                    {
                        "seed": seed,
                        "align_weight": weight,
                        "seconds": time.perf_counter() - t,
                        **{f"{k} sim": v["sim"] for k, v in loss.items()},
                        **{f"{k} align": v["align"] for k, v in loss.items()},
                    }
                )
                print(seed, weight, f"{rows[-1]['seconds']:.1f} s", flush=True)
    return rows


def tables(rows, layers):
    """Mean ± sd over seeds of each loss, per align_weight and layer."""
    lines = []
    for part in ("sim", "align"):
        lines.append(f"\nheld-out L_{part} (mean ± sd over seeds)")
        lines.append("| align_weight | " + " | ".join(layers) + " | mean |")
        lines.append("|---|" + "---|" * (len(layers) + 1))
        for weight in WEIGHTS:
            sel = [r for r in rows if r["align_weight"] == weight]
            vals = [[r[f"{layer} {part}"] for r in sel] for layer in layers]
            cells = [f"{np.mean(v):.4f} ± {np.std(v):.4f}" for v in vals]
            mean = np.mean([np.mean(v) for v in vals])
            lines.append(f"| {weight} | " + " | ".join(cells) + f" | {mean:.4f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="repeats")
    parser.add_argument("--smoke", action="store_true", help="toy size, seconds")
    args = parser.parse_args(argv)
    size = "toy" if args.smoke else "full"
    rows = run_phase("held_out", size, n_seeds=None if args.smoke else args.seeds)
    print(tables(rows, SIZES[size]["layers"]))
    return rows


if __name__ == "__main__":
    main()
