"""Does the importance-weight fit lower its own loss at every channel count?

Run by hand (not part of the test suite)::

    python benchmarks/bench_importance_sweep.py                # planted K sweep
    python benchmarks/bench_importance_sweep.py --seeds 0 1 2
    python benchmarks/bench_importance_sweep.py --digits /tmp/demo_fs.npz

Planted data (SPEC 4 at the demo's size): N = 120 images of C = 10 classes,
R = 49 regions (7 x 7) of K channels of ReLU noise; in each image one region,
at a random place, also carries its class's prototype. The soft labels are
``softmax(4 onehot(y) + noise)``. Every image is an anchor with all N - 1
others as candidates (the demo's clipped n_candidates), 20 steps.

For each K the table gives the mean importance loss (KL) at the uniform
start -> after the last step and, after "w", the mean weight of the planted
region in units of the uniform weight 1 / R (1: not found; R = 49: all the
weight on it), per variant:

- ``reference``: kappa_m = 1000, every step taken (the reference's fit);
- ``auto kappa``: kappa_m = 1000 K / 512, every step taken;
- ``step control``: kappa_m = 1000, rising steps refused per image;
- ``both``: kappa_m = 1000 K / 512 and step control (the default).

``--digits FILE`` adds the same table on the layers of the digits network
(an ``.npz`` with ``soft_labels`` and ``regions_<layer>`` arrays, as written
by ``--save-digits``, which trains the demo's network and extracts them).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

try:  # run from a checkout without installing the package
    import skvmf  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VARIANTS = {
    "reference": {"kappa_m": 1000.0, "step_control": False},
    "auto kappa": {"kappa_m": "auto", "step_control": False},
    "step control": {"kappa_m": 1000.0, "step_control": True},
    "both": {"kappa_m": "auto", "step_control": True},
}
DIGITS_LAYERS = ["conv_12", "conv_22", "conv_33", "conv_43", "conv_53"]


def planted(K, *, N=120, R=49, C=10, seed=0):
    """ReLU-noise regions; one region per image carries its class prototype.

    Returns the features, the soft labels and the planted region of each
    image.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(N) % C
    protos = rng.normal(size=(C, K))
    f = rng.normal(size=(N, R, K))
    where = rng.integers(0, R, size=N)
    f[np.arange(N), where] += 2.0 * protos[y]
    f = np.maximum(f, 0.0).astype(np.float32)
    logits = 4.0 * np.eye(C)[y] + rng.normal(size=(N, C))
    P = np.exp(logits - logits.max(1, keepdims=True))
    return f, P / P.sum(1, keepdims=True), where


def run(f, P, variant, *, n_steps, seed):
    from skvmf.alignment import fit_importance_weights

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the table shows what did not fall
        start = time.perf_counter()
        w, _, losses = fit_importance_weights(
            f,
            P,
            n_candidates=f.shape[0] - 1,
            n_steps=n_steps,
            random_state=seed,
            return_losses=True,
            **VARIANTS[variant],
        )
    return losses, w, time.perf_counter() - start


def cell(losses, recovery=None):
    mark = "" if losses[-1] < losses[0] else " (rose)"
    text = f"{losses[0]:.3f} -> {losses[-1]:.3f}{mark}"
    return text if recovery is None else f"{text}; w {recovery:.1f}"


def table(rows, title, first):
    head = f"| {first} | " + " | ".join(VARIANTS) + " |"
    lines = [f"### {title}", "", head, "|" + "---|" * (len(VARIANTS) + 1)]
    for key, cells in rows:
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--K", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256, 512]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--digits", help=".npz of the digits network's features")
    parser.add_argument(
        "--save-digits", help="train the demo network, save to this .npz"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    variants = [v for v in VARIANTS if v in args.variants]
    if args.save_digits:
        save_digits(args.save_digits)
        args.digits = args.digits or args.save_digits

    rows, seconds = [], dict.fromkeys(variants, 0.0)
    for K in args.K:
        for seed in args.seeds:
            f, P, where = planted(K, seed=seed)
            cells = []
            for v in VARIANTS:
                if v not in variants:
                    cells.append("")
                    continue
                losses, w, dt = run(f, P, v, n_steps=args.steps, seed=seed)
                seconds[v] += dt
                # weight of the planted region, in units of the uniform 1 / R
                recovery = float(np.mean(w[np.arange(len(w)), where])) * w.shape[1]
                cells.append(cell(losses, recovery))
            rows.append(
                (f"{K}" + (f" (seed {seed})" if len(args.seeds) > 1 else ""), cells)
            )
            print(rows[-1][0], *cells, sep=" | ", flush=True)
    print()
    print(
        table(
            rows,
            "Planted data: mean importance loss, start -> end "
            "(N=120, R=49, C=10, n=119, 20 steps)",
            "K",
        )
    )
    print(
        "\nseconds per variant (all K): "
        + ", ".join(f"{v} {t:.1f}" for v, t in seconds.items())
    )

    if args.digits:
        data = np.load(args.digits)
        P = data["soft_labels"]
        rows = []
        for layer in DIGITS_LAYERS:
            f = data[f"regions_{layer}"]
            cells = []
            for v in VARIANTS:
                if v not in variants:
                    cells.append("")
                    continue
                losses, _, _ = run(f, P, v, n_steps=args.steps, seed=0)
                cells.append(cell(losses))
            key = f"{layer} (R={f.shape[1]}, K={f.shape[2]})"
            rows.append((key, cells))
            print(key, *cells, sep=" | ", flush=True)
        print()
        print(table(rows, "Digits network (120 test images)", "layer"))


def save_digits(path):
    import skvmf
    from skvmf.datasets import as_arrays, load_digits_images, subset_per_class

    model, _ = skvmf.train_digits_classifier(random_state=0)
    X, _ = as_arrays(subset_per_class(load_digits_images("test"), 12, random_state=0))
    ext = skvmf.TorchFeatureExtractor(model, layers=DIGITS_LAYERS).fit(X[:1])
    fs = ext.transform(X)
    np.savez(
        path,
        soft_labels=np.asarray(fs.soft_labels),
        **{f"regions_{k}": np.asarray(fs.regions[k]) for k in DIGITS_LAYERS},
    )


if __name__ == "__main__":
    main()
