"""SampleProjector's quality on held-out images, per seed and setting.

Run by hand (about a minute on two cores once the features are cached)::

    python benchmarks/bench_projection_quality.py
    python benchmarks/bench_projection_quality.py --max-iter 200   # --quick's
    python benchmarks/bench_projection_quality.py --smoke          # toy, seconds

Workload: the digits network of ``skvmf demo``
(:func:`skvmf.train_digits_classifier`, ``random_state=0``), its sample
features (the input of the last Linear, layer ``conv_53``'s network) and soft
labels (T = 4) on the digits test images. The projection is fitted on
``--per-class`` images of every class (:func:`skvmf.datasets.subset_per_class`,
``random_state=0``) and evaluated on all the other test images (disjoint).
The features are cached in ``--cache`` (training the network takes ~20 s).

Columns, per seed and setting: the KL loss per image on the held-out images
(the method's own objective, under the category model fitted on the fit
images), the agreement of argmax Q(y|g) with the network's argmax on the
held-out and on the fit images, Pearson's r between ||g|| and the entropy of
P(y|x) on the held-out images, the summed KL at the start and at the end of
the fit (``loss_curve_``), and the fit's wall time. The mean over seeds
follows each setting. The default setting is chosen by the held-out KL, never
by agreement or the correlation (doc/user_guide/deviations.rst).

``--smoke`` (and the test suite) runs every setting at toy size on synthetic
features instead: 10 classes x 12 images of 16 features, soft labels from a
random linear teacher at T = 4, 6 images per class fitted, one seed, 100
iterations; nothing is cached.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr

# run from a checkout: import this tree's skvmf, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skvmf.projection import SampleProjector  # noqa: E402

# every parameter that differs between settings is spelt out, so the table
# does not change meaning when a default does
SETTINGS = {
    "faithful-sgd": {"gradient": "faithful", "solver": "sgd"},  # the paper's
    "exact-sgd": {"gradient": "exact", "solver": "sgd"},
    "faithful-adam": {"gradient": "faithful", "solver": "adam"},  # default
    "exact-adam": {"gradient": "exact", "solver": "adam"},
}


def _features(cache: Path):
    """(sample features, soft labels, digits test labels), cached."""
    if cache.exists():
        d = np.load(cache)
        return d["sample"], d["soft"], d["y"]
    import skvmf
    from skvmf.datasets import as_arrays, load_digits_images

    model, _ = skvmf.train_digits_classifier(random_state=0)
    X, y = as_arrays(load_digits_images("test"))
    ext = skvmf.TorchFeatureExtractor(model, layers=["conv_53"]).fit(X[:1])
    fs = ext.transform(X)
    sample = np.asarray(fs.sample, dtype=np.float64)
    soft = np.asarray(fs.soft_labels, dtype=np.float64)
    np.savez(cache, sample=sample, soft=soft, y=y)
    return sample, soft, y


def _split(n_per_class: int):
    """Positions (in the digits test set) of the fit images and the others."""
    from skvmf.datasets import load_digits_images, subset_per_class

    ds = load_digits_images("test")
    fit = subset_per_class(ds, n_per_class, random_state=0)
    is_fit = np.isin(np.asarray(ds.indices), np.asarray(fit.indices))
    return np.flatnonzero(is_fit), np.flatnonzero(~is_fit)


def _kl_per_image(proj, F, P):
    log_q = proj.predict_log_proba(F)
    terms = np.where(P > 0, P * (np.log(np.where(P > 0, P, 1.0)) - log_q), 0.0)
    return float(terms.sum() / len(P))


def _agreement(proj, F, P):
    return float(np.mean(proj.predict(F) == P.argmax(axis=1)))


def toy_features(n_per_class=12, n_features=16, seed=0):
    """Synthetic (sample features, soft labels, labels): a linear teacher."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), n_per_class)
    F = rng.normal(size=(10, n_features))[y] + rng.normal(size=(len(y), n_features))
    logits = F @ rng.normal(size=(n_features, 10))
    P = np.exp((logits - logits.max(axis=1, keepdims=True)) / 4.0)
    return F, P / P.sum(axis=1, keepdims=True), y


def toy_split(y, n_per_class):
    """The first n_per_class images of each class fitted, the others held out."""
    is_fit = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        is_fit[np.flatnonzero(y == c)[:n_per_class]] = True
    return np.flatnonzero(is_fit), np.flatnonzero(~is_fit)


SIZES = {
    "full": {"seeds": [0, 1, 2, 3, 4, 5], "max_iter": 2000, "per_class": 12},
    "toy": {"seeds": [0], "max_iter": 100, "per_class": 6},
}
PHASES = ("settings",)
COLUMNS = (
    "setting",
    "seed",
    "held_kl",
    "held_agreement",
    "fit_agreement",
    "pearson_r",
    "loss_start",
    "loss_end",
    "seconds",
)


def run_phase(phase="settings", size="toy", workdir=None, *, settings=None):
    """One row per (setting, seed) at ``size`` (toy: synthetic features).

    ``workdir`` is accepted for a uniform interface: the toy run writes
    nothing, the full one caches the digits features in /tmp/proj_fs.npz.
    """
    plan = SIZES[size]
    data = toy_features() if size == "toy" else None
    summary = run(
        settings or list(SETTINGS),
        plan["seeds"],
        plan["max_iter"],
        plan["per_class"],
        Path("/tmp/proj_fs.npz"),
        data=data,
    )
    return [row for rows in summary.values() for row in rows]


def run(settings, seeds, max_iter, n_per_class, cache, data=None):
    """Fit every setting with every seed; print and return the rows.

    ``data``: (features, soft labels, labels) to use instead of the digits
    network's (then split by :func:`toy_split`).
    """
    if data is None:
        F, P, y = _features(cache)
        fit, held = _split(n_per_class)
    else:
        F, P, y = data
        fit, held = toy_split(y, n_per_class)
    assert not np.intersect1d(fit, held).size
    # the network's labels on the fit images must match the test labels' split
    assert np.array_equal(np.bincount(y[fit]), np.full(10, n_per_class))
    entropy = -np.sum(P[held] * np.log(P[held]), axis=1)
    print(
        f"digits test images: {len(fit)} fit ({n_per_class} per class), "
        f"{len(held)} held out; max_iter={max_iter}; torch threads "
        f"{torch.get_num_threads()}"
    )
    header = (
        f"{'setting':<14} {'seed':>4}  {'held KL':>8} {'held agr':>8} "
        f"{'fit agr':>8} {'r(|g|,H)':>8}  {'loss start':>10} {'loss end':>9} "
        f"{'time':>6}"
    )
    print(header)
    print("-" * len(header))
    summary, all_rows = {}, {}
    for name in settings:
        rows = []
        for seed in seeds:
            proj = SampleProjector(
                max_iter=max_iter, random_state=seed, **SETTINGS[name]
            )
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                proj.fit(F[fit], soft_labels=P[fit])
            seconds = time.perf_counter() - start
            strength = np.linalg.norm(proj.transform(F[held]), axis=1)
            row = (
                _kl_per_image(proj, F[held], P[held]),
                _agreement(proj, F[held], P[held]),
                _agreement(proj, F[fit], P[fit]),
                float(pearsonr(strength, entropy)[0]),
                proj.loss_curve_[0],
                proj.loss_curve_[-1],
                seconds,
            )
            rows.append(row)
            all_rows.setdefault(name, []).append(
                {"setting": name, "seed": seed, **dict(zip(COLUMNS[2:], row))}
            )
            flag = "  (ConvergenceWarning)" if caught else ""
            print(
                f"{name:<14} {seed:>4}  {row[0]:>8.4f} {row[1]:>8.3f} "
                f"{row[2]:>8.3f} {row[3]:>+8.3f}  {row[4]:>10.2f} {row[5]:>9.2f} "
                f"{row[6]:>5.1f}s{flag}"
            )
        mean = np.mean(rows, axis=0)
        summary[name] = mean
        print(
            f"{name:<14} {'mean':>4}  {mean[0]:>8.4f} {mean[1]:>8.3f} "
            f"{mean[2]:>8.3f} {mean[3]:>+8.3f}  {mean[4]:>10.2f} {mean[5]:>9.2f} "
            f"{mean[6]:>5.1f}s   (held agr min {min(r[1] for r in rows):.3f})"
        )
        print("-" * len(header))
    best = min(summary, key=lambda k: summary[k][0])
    print(f"lowest mean held-out KL: {best} ({summary[best][0]:.4f})")
    return all_rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--settings", default=",".join(SETTINGS), help="comma-separated names"
    )
    parser.add_argument("--seeds", default="0,1,2,3,4,5")
    parser.add_argument("--max-iter", type=int, default=2000)
    parser.add_argument("--per-class", type=int, default=12)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/proj_fs.npz"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--smoke", action="store_true", help="toy size, synthetic features"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = [s for s in args.settings.split(",") if s]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown settings {unknown}; known: {sorted(SETTINGS)}")
    if args.smoke:
        return run_phase("settings", "toy", settings=settings)
    seeds = [int(s) for s in args.seeds.split(",")]
    return run(settings, seeds, args.max_iter, args.per_class, args.cache)


if __name__ == "__main__":
    main()
