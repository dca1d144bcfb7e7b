"""Does the importance-weight fit lower its own loss at every channel count?

Run by hand (not part of the test suite)::

    python benchmarks/bench_importance_sweep.py                # planted K sweep
    python benchmarks/bench_importance_sweep.py --seeds 0 1 2
    python benchmarks/bench_importance_sweep.py --digits /tmp/demo_fs.npz
    python benchmarks/bench_importance_sweep.py --smoke    # toy size, seconds

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

``--smoke`` (and the test suite) runs both tables at toy size: N = 20, R = 9,
K in (4, 8), 2 steps; the digits table on an *untrained* width-1/8 VGG-16
of 2 test images per digit, written to a temporary folder (only the columns
mean anything there).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
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


SIZES = {
    "full": {"K": [8, 16, 32, 64, 128, 256, 512], "N": 120, "R": 49, "steps": 20},
    "toy": {"K": [4, 8], "N": 20, "R": 9, "steps": 2},
}
PHASES = ("planted", "digits")
COLUMNS = {
    "planted": (
        "K",
        "seed",
        "variant",
        "loss_start",
        "loss_end",
        "recovery",
        "seconds",
    ),
    "digits": ("layer", "R", "K", "variant", "loss_start", "loss_end", "seconds"),
}


def run(f, P, variant, *, n_steps, seed):
    """One importance fit: (loss curve, weights, seconds)."""
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
    return np.asarray(losses), np.asarray(w), time.perf_counter() - start


def cell(row):
    """A table cell: loss start -> end, and the planted region's weight."""
    a, b = row["loss_start"], row["loss_end"]
    text = f"{a:.3f} -> {b:.3f}" + ("" if b < a else " (rose)")
    return text if row.get("recovery") is None else f"{text}; w {row['recovery']:.1f}"


def table(rows, title, first, key):
    """Markdown table: one line per key(row), one column per variant."""
    lines = [
        f"### {title}",
        "",
        f"| {first} | " + " | ".join(VARIANTS) + " |",
        "|" + "---|" * (len(VARIANTS) + 1),
    ]
    groups = {}
    for row in rows:
        groups.setdefault(key(row), {})[row["variant"]] = cell(row)
    for name, cells in groups.items():
        lines.append(
            f"| {name} | " + " | ".join(cells.get(v, "") for v in VARIANTS) + " |"
        )
    return "\n".join(lines)


def planted_rows(
    size="toy", *, Ks=None, seeds=(0,), variants=tuple(VARIANTS), steps=None
):
    """One row per (K, seed, variant) of the planted sweep."""
    plan = SIZES[size]
    steps = steps or plan["steps"]
    rows = []
    for K in Ks or plan["K"]:
        for seed in seeds:
            f, P, where = planted(K, N=plan["N"], R=plan["R"], seed=seed)
            for v in variants:
                losses, w, dt = run(f, P, v, n_steps=steps, seed=seed)
                # weight of the planted region, in units of the uniform 1 / R
                recovery = float(np.mean(w[np.arange(len(w)), where])) * w.shape[1]
                rows.append(
                    {
                        "K": K,
                        "seed": seed,
                        "variant": v,
                        "loss_start": float(losses[0]),
                        "loss_end": float(losses[-1]),
                        "recovery": recovery,
                        "seconds": dt,
                    }
                )
                print(K, seed, v, cell(rows[-1]), sep=" | ", flush=True)
    return rows


def digits_rows(path, *, variants=tuple(VARIANTS), steps=20):
    """One row per (layer, variant) on the digits network's saved features."""
    data = np.load(path)
    P = data["soft_labels"]
    rows = []
    for layer in DIGITS_LAYERS:
        f = data[f"regions_{layer}"]
        for v in variants:
            losses, _, dt = run(f, P, v, n_steps=steps, seed=0)
            rows.append(
                {
                    "layer": layer,
                    "R": f.shape[1],
                    "K": f.shape[2],
                    "variant": v,
                    "loss_start": float(losses[0]),
                    "loss_end": float(losses[-1]),
                    "seconds": dt,
                }
            )
            print(layer, v, cell(rows[-1]), sep=" | ", flush=True)
    return rows


def run_phase(phase, size="toy", workdir=None):
    """The rows of one table at ``size``.

    The toy digits table writes its features to ``workdir`` (required then).
    """
    if phase == "planted":
        return planted_rows(size)
    path = os.path.join(workdir, "digits_fs.npz")
    save_digits(path, toy=size == "toy")
    return digits_rows(path, steps=SIZES[size]["steps"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--K", type=int, nargs="+", default=SIZES["full"]["K"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--digits", help=".npz of the digits network's features")
    parser.add_argument(
        "--save-digits", help="train the demo network, save to this .npz"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--smoke", action="store_true", help="toy size, seconds; temp files only"
    )
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.smoke:
        with tempfile.TemporaryDirectory() as workdir:
            planted_, digits_ = (run_phase(p, "toy", workdir) for p in PHASES)
        print(table(planted_, "Planted data (toy)", "K", lambda r: r["K"]))
        print(table(digits_, "Untrained network (toy)", "layer", _layer_key))
        return planted_, digits_

    variants = [v for v in VARIANTS if v in args.variants]
    if args.save_digits:
        save_digits(args.save_digits)
        args.digits = args.digits or args.save_digits
    rows = planted_rows(
        "full", Ks=args.K, seeds=args.seeds, variants=variants, steps=args.steps
    )
    many = len(args.seeds) > 1
    print()
    print(
        table(
            rows,
            "Planted data: mean importance loss, start -> end "
            f"(N=120, R=49, C=10, n=119, {args.steps} steps)",
            "K",
            lambda r: f"{r['K']}" + (f" (seed {r['seed']})" if many else ""),
        )
    )
    seconds = {
        v: sum(r["seconds"] for r in rows if r["variant"] == v) for v in variants
    }
    print(
        "\nseconds per variant (all K): "
        + ", ".join(f"{v} {t:.1f}" for v, t in seconds.items())
    )
    digits = None
    if args.digits:
        digits = digits_rows(args.digits, variants=variants, steps=args.steps)
        print()
        print(table(digits, "Digits network (120 test images)", "layer", _layer_key))
    return rows, digits


def _layer_key(row):
    return f"{row['layer']} (R={row['R']}, K={row['K']})"


def save_digits(path, toy=False):
    """Save the digits network's soft labels and regional features to path.

    The demo's trained network on 12 test images per digit; ``toy``: an
    untrained width-1/8 VGG-16 on 2 per digit (seconds).
    """
    import skvmf
    from skvmf.datasets import as_arrays, load_digits_images, subset_per_class

    if toy:
        model = skvmf.make_classifier(
            "vgg16", 10, width=0.125, batch_norm=True, random_state=0
        ).eval()
    else:
        model, _ = skvmf.train_digits_classifier(random_state=0)
    data = subset_per_class(
        load_digits_images("test"), 2 if toy else 12, random_state=0
    )
    X, _ = as_arrays(data)
    ext = skvmf.TorchFeatureExtractor(model, layers=DIGITS_LAYERS).fit(X[:1])
    fs = ext.transform(X)
    np.savez(
        path,
        soft_labels=np.asarray(fs.soft_labels),
        **{f"regions_{k}": np.asarray(fs.regions[k]) for k in DIGITS_LAYERS},
    )


if __name__ == "__main__":
    main()
