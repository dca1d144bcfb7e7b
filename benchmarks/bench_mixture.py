"""RevisedVMFMixture against scikit-learn's spherical GaussianMixture.

Run by hand (a few minutes on two cores)::

    python benchmarks/bench_mixture.py                  # doc/benchmarks.md
    python benchmarks/bench_mixture.py --quick --out -  # small sizes, print only
    python benchmarks/bench_mixture.py --smoke          # toy size, prints only

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
one EM iteration divided by the time of one ``X @ means.T`` (n x d by d x K,
float64), both the shortest of ``--iteration-repeats`` calls made
alternately. One EM iteration is measured through public API only: a copy of
the fitted model refitted with ``warm_start=True, max_iter=1`` (both models
support it), which is one E-step and one M-step from the fitted parameters
plus the input check and the final E-step of ``fit``; the tables in
doc/benchmarks.md before 2026-11-29 timed the private E- and M-step methods
alone, so their ratios are slightly lower.

Phases: ``equal`` (the main table) and ``hard`` (kappa = 50 everywhere).
``--smoke`` runs both at toy size (d = 16, n = 300) in seconds and writes
nothing.
"""

from __future__ import annotations

import argparse
import copy
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


def one_iteration(est, X):
    """A callable that runs one EM iteration of a fitted model, by public API.

    A copy of ``est`` refitted with ``warm_start=True, max_iter=1``: every
    call continues from the copy's current parameters.
    """
    warm = copy.deepcopy(est).set_params(warm_start=True, max_iter=1)

    def step():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warm.fit(X)

    return step


SIZES = {
    "full": [(64, 20000), (512, 20000), (2048, 10000)],
    "quick": [(64, 2000), (512, 2000)],
    "toy": [(16, 300)],
}
PHASES = ("equal", "hard")
COLUMNS = (
    "dim",
    "n",
    "kappa",
    "model",
    "wall",
    "n_iter",
    "ari",
    "oracle",
    "per_iter",
    "matmul",
)


def models_for(kappa, strength, X, hard):
    """(name, unfitted model, data) of every model of one table row group."""
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
    # ARI only in the hard table: one vMF model and GMM, one fit each
    return [models[0], models[2]] if hard else models


def measure(name, model, data, X, labels, means, *, hard, repeats, iteration_repeats):
    """One row: fit time, iterations, ARI and (equal table) EM iteration cost."""
    model.set_params(random_state=0)
    wall, est = best_fit(model, data, 1 if hard else repeats)
    per_iter = matmul = np.nan
    if not hard:
        per_iter, matmul = paired_medians(
            one_iteration(est, data),
            lambda X=X, m=means: X @ m.T,
            iteration_repeats,
        )
    return {
        "model": name,
        "wall": wall,
        "n_iter": est.n_iter_,
        "ari": adjusted_rand_score(labels, est.predict(data)),
        "per_iter": per_iter,
        "matmul": matmul,
    }


def run_phase(phase, size="toy", workdir=None, *, repeats=1, iteration_repeats=3):
    """The rows of one table (``phase``: "equal" or "hard") at ``size``.

    ``workdir`` is accepted for a uniform interface: nothing is written.
    """
    hard = phase == "hard"
    rows = []
    for dim, n in SIZES[size]:
        kap = (
            50.0
            if hard
            else float(estimate_kappa(mean_resultant_length(50.0, 64), dim))
        )
        X, labels, means = make_data(dim, n, kap)
        oracle = adjusted_rand_score(labels, (X @ means.T).argmax(axis=1))
        for name, model, data in models_for(kap, strength_for(kap, dim), X, hard):
            row = {"dim": dim, "n": n, "kappa": kap, "oracle": oracle}
            row.update(
                measure(
                    name,
                    model,
                    data,
                    X,
                    labels,
                    means,
                    hard=hard,
                    repeats=repeats,
                    iteration_repeats=iteration_repeats,
                )
            )
            rows.append(row)
            print(
                f"d={dim:5d} n={n:6d} kappa={kap:8.1f} {name:45s} "
                f"{row['wall']:7.2f}s it={row['n_iter']:3d} ARI={row['ari']:.4f} "
                f"iter/matmul={row['per_iter'] / row['matmul']:5.2f}",
                file=sys.stderr,
                flush=True,
            )
    return rows


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
        "25 alternating calls; one EM iteration is a refit of the fitted model "
        "with `warm_start=True, max_iter=1`.",
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
        "--smoke", action="store_true", help="toy size, seconds; writes nothing"
    )
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
    size = "toy" if args.smoke else "quick" if args.quick else "full"
    with threadpoolctl.threadpool_limits(args.threads):
        main_rows, hard_rows = (
            run_phase(
                phase,
                size,
                repeats=args.repeats,
                iteration_repeats=args.iteration_repeats,
            )
            for phase in PHASES
        )
        text = markdown(main_rows, hard_rows, args.repeats)
    print(text)
    if args.smoke:
        pass  # toy sizes never overwrite the measured tables
    elif args.out is None:
        write_section("bench_mixture", text)
    elif args.out != "-":
        Path(args.out).write_text(text)
    return main_rows, hard_rows


if __name__ == "__main__":
    main()
