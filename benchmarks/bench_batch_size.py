"""Choosing the aligner's batch_size by the method's own losses on held-out
images.

The paper takes one alignment step per image (``batch_size=1``); averaging
the gradients of several anchors per step is fewer, larger steps, so it may
only become the default where it is no worse on images the aligner did not
see. Run by hand::

    python benchmarks/bench_batch_size.py --markdown doc
    python benchmarks/bench_batch_size.py --smoke    # toy size, seconds

A synthetic layer of moderate size with planted structure: N images of C
classes, R regions of K ReLU-like channels, of which a few regions carry a
class pattern; soft labels from the classes, g from the classes plus noise.
Half of the images (stratified) fit a :class:`skvmf.RegionalAligner` with
every default but ``batch_size`` and the seed; the other half give the
held-out ``L_sim`` and ``L_align``
(:meth:`skvmf.RegionalAligner.held_out_losses`), per batch size and seed.
The data are drawn once (seed 0); the seeds change the aligner's
candidates, anchor order and start.
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
import torch
from sklearn.exceptions import ConvergenceWarning

import skvmf

BATCH_SIZES = (1, 8, 32)
SIZES = {
    "full": {
        "n": 240,
        "regions": 36,
        "channels": 128,
        "classes": 10,
        "seeds": (0, 1, 2),
        "aligner": {},
    },
    "toy": {
        "n": 24,
        "regions": 4,
        "channels": 8,
        "classes": 3,
        "seeds": (0,),
        "aligner": {"max_epochs": 1, "weight_steps": 2, "n_candidates": 8},
    },
}
PHASES = ("held_out",)
COLUMNS = ("seed", "batch_size", "seconds", "sim", "align")


def layer(size):
    """FeatureSets of the fit and held-out halves of the synthetic layer."""
    plan = SIZES[size]
    n, R, K, C = plan["n"], plan["regions"], plan["channels"], plan["classes"]
    rng = np.random.default_rng(0)
    y = np.arange(n) % C
    patterns = rng.normal(size=(C, K))
    f = rng.normal(size=(n, R, K))
    telling = max(1, R // 6)  # the first regions carry the class pattern
    f[:, :telling] += 1.5 * patterns[y][:, None, :]
    f = np.maximum(f - 0.5, 0.0).astype(np.float32)
    P = np.full((n, C), 0.2 / C)
    P[np.arange(n), y] += 0.8
    g = rng.normal(size=(n, 3)) + 3 * np.eye(C, 3)[y]
    fit = np.flatnonzero(np.arange(n) % 2 == 0)
    held = np.flatnonzero(np.arange(n) % 2 == 1)

    def part(idx):
        return skvmf.FeatureSet(regions={"layer": f[idx]}, soft_labels=P[idx], g=g[idx])

    return part(fit), part(held)


def run_phase(phase="held_out", size="toy", workdir=None, *, seeds=None):
    """One row per (seed, batch_size): held-out L_sim and L_align.

    ``workdir`` is accepted for a uniform interface: nothing is written.
    """
    plan = SIZES[size]
    fit_fs, held_fs = layer(size)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for seed in seeds or plan["seeds"]:
            for batch in BATCH_SIZES:
                t = time.perf_counter()
                al = skvmf.RegionalAligner(
                    batch_size=batch, random_state=seed, **plan["aligner"]
                )
                loss = al.fit(fit_fs).held_out_losses(held_fs)["layer"]
                rows.append(
                    {
                        "seed": seed,
                        "batch_size": batch,
                        "seconds": time.perf_counter() - t,
                        "sim": loss["sim"],
                        "align": loss["align"],
                    }
                )
                print(seed, batch, rows[-1], flush=True)
    return rows


def table(rows, size):
    """Per batch size: mean and sd over seeds, and the paired difference from
    batch_size=1 with its range over the seeds."""
    plan = SIZES[size]
    lines = [
        f"Synthetic layer: N = {plan['n']} images ({plan['n'] // 2} fit, "
        f"{plan['n'] // 2} held out), R = {plan['regions']}, K = "
        f"{plan['channels']}, {plan['classes']} classes; RegionalAligner "
        f"defaults; seeds {', '.join(map(str, sorted({r['seed'] for r in rows})))}.",
        "",
        "| batch_size | held-out L_sim (mean ± sd) | L_sim - batch 1 [min, max] "
        "| held-out L_align (mean ± sd) | L_align - batch 1 [min, max] "
        "| fit seconds |",
        "|---:|---|---|---|---|---:|",
    ]
    base = {
        (r["seed"], part): r[part]
        for r in rows
        if r["batch_size"] == 1
        for part in ("sim", "align")
    }
    for batch in BATCH_SIZES:
        sel = [r for r in rows if r["batch_size"] == batch]
        cells = []
        for part in ("sim", "align"):
            vals = np.array([r[part] for r in sel])
            diff = np.array([r[part] - base[(r["seed"], part)] for r in sel])
            cells.append(f"{vals.mean():.4f} ± {vals.std():.4f}")
            cells.append(f"{diff.mean():+.4f} [{diff.min():+.4f}, {diff.max():+.4f}]")
        secs = np.mean([r["seconds"] for r in sel])
        lines.append(f"| {batch} | " + " | ".join(cells) + f" | {secs:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy size, seconds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--markdown", metavar="DOC_DIR")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = "toy" if args.smoke else "full"
    rows = run_phase("held_out", size)
    text = table(rows, size)
    print(text)
    if args.markdown:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _doc import write_section

        write_section("bench_batch_size", text)
    return rows


if __name__ == "__main__":
    main()
