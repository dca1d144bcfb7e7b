"""RevisedVMFMixture against scikit-learn's spherical GaussianMixture.

Run by hand (a few minutes on two cores)::

    python benchmarks/bench_mixture.py                  # doc/benchmarks.md
    python benchmarks/bench_mixture.py --quick --out -  # small sizes, print only

Data: K = 10 vMF clusters with random unit means, drawn with
:func:`skvmf.vmf.sample` (scipy's sampler takes minutes at d >= 512). The
main table uses, in every dimension, the kappa whose mean resultant length
equals that of kappa = 50 in d = 64 (A_d(kappa) ~ 0.55), so the clusters are
equally separated; a second table keeps kappa = 50 in every dimension, where
from d = 512 on even the Bayes classifier with the true means (the "oracle"
column) cannot recover the clusters.

Models: ``RevisedVMFMixture(kappa="learned")`` on the unit rows,
``RevisedVMFMixture(kappa="revised")`` on the rows scaled to the strength l*
with kappa(l*) = the true kappa, and ``GaussianMixture(covariance_type=
"spherical")`` (default k-means initialisation) on the unit rows; all with
``random_state=0``, default ``tol=1e-3`` and ``max_iter=100``.

Columns: fit wall time (best of ``--repeats``, initialisation included), EM
iterations, adjusted Rand index against the true clusters, and the time of
one EM iteration (E-step + M-step on the fitted model) divided by the time of
one ``X @ means.T`` (n x d by d x K, float64), both the shortest of
``--iteration-repeats`` calls made alternately.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import threadpoolctl
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

# run from a checkout: import this tree's skvmf, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _doc import write_section  # noqa: E402  (benchmarks/, the script's directory)

from skvmf.mixture import RevisedVMFMixture  # noqa: E402
from skvmf.vmf import (  # noqa: E402
    estimate_kappa,
    mean_resultant_length,
    revised_kappa,
    sample,
)

K = 10


def make_data(dim, n, kappa, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((K, dim))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    per = np.full(K, n // K)
    per[: n % K] += 1
    X = np.vstack(
        [sample(m, kappa, int(c), random_state=rng) for m, c in zip(means, per)]
    )
    labels = np.repeat(np.arange(K), per)
    return X, labels, means


def strength_for(kappa, dim):
    """Strength l with revised kappa(l) = kappa (bisection on a log grid)."""
    grid = np.geomspace(1e-2, 1e4, 20001)
    return float(np.interp(kappa, revised_kappa(grid, dim), grid))


def paired_medians(step, matmul, repeats):
    """Shortest times of ``step`` and ``matmul``, called alternately.

    On a shared machine other jobs only ever add time: the minimum is the
    steadiest estimate of each cost, and alternating keeps both under the
    same load.
    """
    step()
    matmul()
    step_times, matmul_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul()
        matmul_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        step()
        step_times.append(time.perf_counter() - start)
    return float(np.min(step_times)), float(np.min(matmul_times))


def best_fit(model, X, repeats):
    best, fitted = np.inf, None
    for _ in range(repeats):
        est = clone(model)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X)
        elapsed = time.perf_counter() - start
        if elapsed < best:
            best, fitted = elapsed, est
    return best, fitted


def vmf_iteration(est, X):
    rows = est._prepare(np.asarray(X, dtype=np.float64))

    def step():
        log_prob, resp = est._log_prob_resp(rows)
        est._m_step(rows, resp, log_prob)

    return step


def gmm_iteration(est, X):
    def step():
        _, log_resp = est._e_step(X)
        est._m_step(X, log_resp)

    return step


def run(settings, repeats, iteration_repeats):
    rows_main, rows_hard = [], []
    for dim, n in settings:
        kappa = float(estimate_kappa(mean_resultant_length(50.0, 64), dim))
        for table, kap in ((rows_main, kappa), (rows_hard, 50.0)):
            X, labels, means = make_data(dim, n, kap)
            strength = strength_for(kap, dim)
            oracle = adjusted_rand_score(labels, (X @ means.T).argmax(axis=1))
            models = [
                ("RevisedVMFMixture learned", RevisedVMFMixture(K, kappa="learned"), X),
                (
                    f"RevisedVMFMixture revised (rows x {strength:.3g})",
                    RevisedVMFMixture(K, kappa="revised"),
                    X * strength,
                ),
                (
                    "GaussianMixture spherical",
                    GaussianMixture(K, covariance_type="spherical"),
                    X,
                ),
            ]
            hard = table is rows_hard
            if hard:  # ARI only: one vMF model and GMM, one fit each
                models = [models[0], models[2]]
            for name, model, data in models:
                model.set_params(random_state=0)
                wall, est = best_fit(model, data, 1 if hard else repeats)
                ari = adjusted_rand_score(labels, est.predict(data))
                per_iter = matmul = np.nan
                if not hard:
                    make = (
                        gmm_iteration
                        if isinstance(est, GaussianMixture)
                        else vmf_iteration
                    )
                    per_iter, matmul = paired_medians(
                        make(est, data),
                        lambda X=X, m=means: X @ m.T,
                        iteration_repeats,
                    )
                table.append(
                    {
                        "dim": dim,
                        "n": n,
                        "kappa": kap,
                        "model": name,
                        "wall": wall,
                        "n_iter": est.n_iter_,
                        "ari": ari,
                        "oracle": oracle,
                        "per_iter": per_iter,
                        "matmul": matmul,
                    }
                )
                print(
                    f"d={dim:5d} n={n:6d} kappa={kap:8.1f} {name:45s} "
                    f"{wall:7.2f}s it={est.n_iter_:3d} ARI={ari:.4f} "
                    f"iter/matmul={per_iter / matmul:5.2f}",
                    file=sys.stderr,
                    flush=True,
                )
    return rows_main, rows_hard


def markdown(rows_main, rows_hard, repeats):
    blas = {
        f"{b['internal_api']} {b['num_threads']} thread(s)"
        for b in threadpoolctl.threadpool_info()
    }
    blas = ", ".join(sorted(blas))
    lines = [
        "## RevisedVMFMixture vs GaussianMixture (spherical)",
        "",
        "`python benchmarks/bench_mixture.py` on "
        f"{platform.machine()} ({platform.python_version()}, numpy "
        f"{np.__version__}, scikit-learn {sklearn.__version__}; {blas}); "
        f"K = 10, `random_state=0`, wall time best of {repeats}. The machine was "
        "shared with other jobs while this ran: absolute times are noisy (the "
        "ratios less so). BLAS runs on one thread (`--threads`): on a loaded "
        "machine two BLAS threads made a small product up to 100x slower.",
        "",
        "Equal separation in every dimension: kappa with A_d(kappa) = A_64(50) "
        "~ 0.55. `iteration` is one EM iteration (E + M step) and `iter / "
        "matmul` its time over that of one `X @ means.T`, both the shortest of "
        "25 alternating calls.",
        "",
        "| d | n | kappa | model | fit (s) | iterations | ARI | iteration (ms) "
        "| iter / matmul |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows_main:
        lines.append(
            f"| {r['dim']} | {r['n']} | {r['kappa']:.4g} | {r['model']} | "
            f"{r['wall']:.2f} | {r['n_iter']} | {r['ari']:.4f} | "
            f"{1e3 * r['per_iter']:.1f} | {r['per_iter'] / r['matmul']:.2f} |"
        )
    lines += [
        "",
        "kappa = 50 in every dimension: from d = 512 the clusters overlap so "
        "much that the Bayes classifier with the true means (oracle) is far "
        "from ARI 1; a fitted model cannot do better than the oracle.",
        "",
        "| d | n | model | fit (s), one run | iterations | ARI | oracle ARI |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows_hard:
        lines.append(
            f"| {r['dim']} | {r['n']} | {r['model']} | {r['wall']:.2f} | "
            f"{r['n_iter']} | {r['ari']:.4f} | {r['oracle']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iteration-repeats", type=int, default=25)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS threads (default 1: on a loaded machine, multi-threaded BLAS "
        "waits for busy cores and a small product takes 100x longer)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="markdown file to write, '-' for stdout only (default: this "
        "benchmark's section of doc/benchmarks.md)",
    )
    args = parser.parse_args(argv)
    settings = (
        [(64, 2000), (512, 2000)]
        if args.quick
        else [(64, 20000), (512, 20000), (2048, 10000)]
    )
    with threadpoolctl.threadpool_limits(args.threads):
        main_rows, hard_rows = run(settings, args.repeats, args.iteration_repeats)
        text = markdown(main_rows, hard_rows, args.repeats)
    print(text)
    if args.out is None:
        write_section("bench_mixture", text)
    elif args.out != "-":
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
