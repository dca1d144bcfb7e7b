"""Benchmark of region matching, importance weights and the RegionalAligner.

Run by hand (not part of the test suite)::

    python benchmarks/bench_aligner.py                  # paper size + digits size
    python benchmarks/bench_aligner.py --weight-steps 20  # all 20 weight steps
    python benchmarks/bench_aligner.py --markdown doc   # doc/benchmarks.md
    python benchmarks/bench_aligner.py --smoke          # toy size, seconds

Paper size: N = 500 images, R = 196 regions (14 x 14), K = 512 channels
(VGG-16 conv_53 on 224 px inputs), n = 100 candidates, d' = 3. Digits size:
N = 300, R = 64 (8 x 8), K = 64. Toy size (``--smoke``, the test suite):
N = 16, R = 9, K = 8, every phase in-process.

Every phase calls public API only:

- ``matching``: :func:`skvmf.match_regions` of all N^2 image pairs;
- ``importance``: :func:`skvmf.fit_importance_weights`, ``--weight-steps``
  steps (the table also gives the time extrapolated to the 20 steps of the
  method, since every step costs the same);
- ``epoch``: one aligner epoch, measured as the difference between two
  :class:`skvmf.RegionalAligner` fits with the same seed and
  ``weight_steps=0`` (uniform importance weights; an epoch costs the same
  whatever the weights), one with ``max_epochs=1`` and one with
  ``max_epochs=0``: the two share the feature preparation and the matching,
  so the difference is the epoch (batch_size=1, one SGD step per anchor;
  at toy size each fit is timed three times and the shortest kept);
- ``fit``: a whole ``RegionalAligner`` fit with all defaults (digits size).

In a full run each phase runs in its own process so that its peak resident
memory (``ru_maxrss``) is its own. The "working memory" column is that peak
minus the resident memory once the inputs are built. The matmul share is the
self CPU time of ``aten::mm``/``aten::bmm`` in ``torch.profiler`` over the
phase (for the epoch, over a second pair of profiled fits, differenced).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from types import SimpleNamespace

from _doc import write_section  # benchmarks/_doc.py (script directory)

try:  # run from a checkout without installing the package
    import skvmf  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MATMUL_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm")
SIZES = {
    "paper": {"n": 500, "R": 196, "K": 512},
    "digits": {"n": 300, "R": 64, "K": 64},
    "toy": {"n": 16, "R": 9, "K": 8},
}
PHASES = ("matching", "importance", "epoch", "fit")
# keys of every phase's result (the table's columns and notes)
COLUMNS = {
    "matching": ("seconds", "matmul_share", "peak_mib", "work_mib", "gflops"),
    "importance": (
        "seconds",
        "seconds_20",
        "matmul_share",
        "peak_mib",
        "work_mib",
        "gflops",
        "loss_first_last",
    ),
    "epoch": (
        "seconds",
        "ms_per_step",
        "matmul_share",
        "peak_mib",
        "work_mib",
        "loss_first_last",
    ),
    "fit": ("seconds", "matmul_share", "peak_mib", "work_mib", "loss_first_last"),
}
LABELS = {
    "matching": "region matching (full N^2)",
    "importance": "importance weights",
    "epoch": "one aligner epoch (batch_size=1)",
    "fit": "RegionalAligner.fit, all defaults",
}


def rss_mib() -> float:
    """Current resident memory of this process, in MiB."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def features(n, R, K, seed):
    """Non-negative, sparse-ish regional features, like ReLU outputs."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    f = torch.randn((n, R, K), generator=gen)
    # a few shared "patterns" so that the matching is not pure noise
    patterns = torch.randn((8, K), generator=gen)
    mix = torch.randint(0, 8, (n, R), generator=gen)
    f += 1.5 * patterns[mix]
    return f.clamp_min_(0.0)


def soft_labels(n, C, seed):
    """Peaked random soft labels of n images over C classes."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    return torch.softmax(torch.randn((n, C), generator=gen) * 3, dim=1).numpy()


def profiled(fn):
    """Run fn under torch.profiler.

    Returns (result, wall seconds, matmul self CPU time, total self CPU time).
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        result = fn()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    return result, wall, mm, total


def share(mm, total):
    """Matmul share of the CPU time (NaN when nothing was recorded)."""
    return mm / total if total > 0 else float("nan")


def phase_matching(cfg):
    import torch

    from skvmf.alignment import match_regions

    F = features(cfg.n, cfg.R, cfg.K, cfg.seed)
    v = torch.rand((cfg.n, cfg.K), generator=torch.Generator().manual_seed(3))
    v /= v.sum(dim=1, keepdim=True)
    base = rss_mib()
    _, wall, mm, total = profiled(lambda: match_regions(F, v))
    macs = cfg.n**2 * cfg.K * cfg.R**2
    return {
        "seconds": wall,
        "matmul_share": share(mm, total),
        "peak_mib": peak_mib(),
        "work_mib": peak_mib() - base,
        "gflops": 2 * macs / wall / 1e9,
    }


def phase_importance(cfg):
    from skvmf.alignment import fit_importance_weights

    F = features(cfg.n, cfg.R, cfg.K, cfg.seed)
    P = soft_labels(cfg.n, 10, cfg.seed)
    base = rss_mib()
    (_, _, losses), wall, mm, total = profiled(
        lambda: fit_importance_weights(
            F,
            P,
            n_candidates=cfg.n_candidates,
            n_steps=cfg.weight_steps,
            random_state=0,
            return_losses=True,
        )
    )
    macs = cfg.weight_steps * cfg.n * cfg.n_candidates * cfg.K * cfg.R**2
    return {
        "seconds": wall,
        "seconds_20": wall * 20 / cfg.weight_steps,
        "matmul_share": share(mm, total),
        "peak_mib": peak_mib(),
        "work_mib": peak_mib() - base,
        "gflops": 2 * macs / wall / 1e9,
        "loss_first_last": [float(losses[0]), float(losses[-1])],
    }


def _epoch_fit(F, P, g, cfg, max_epochs):
    """A RegionalAligner fit with uniform importance weights, seed 0."""
    from skvmf.alignment import RegionalAligner

    aligner = RegionalAligner(
        n_candidates=cfg.n_candidates,
        weight_steps=0,
        max_epochs=max_epochs,
        random_state=0,
    )
    return aligner.fit(F, soft_labels=P, g=g)


def phase_epoch(cfg):
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning

    F = features(cfg.n, cfg.R, cfg.K, cfg.seed).numpy()
    P = soft_labels(cfg.n, 10, cfg.seed)
    g = np.random.default_rng(0).normal(size=(cfg.n, 3)) * 3
    base = rss_mib()
    # toy size: best of three, so that the difference is not machine noise
    repeats = 3 if cfg.toy else 1
    with warnings.catch_warnings():
        # one epoch is not a converged fit; the loss is reported instead
        warnings.simplefilter("ignore", ConvergenceWarning)
        times = {0: [], 1: []}
        for _ in range(repeats):
            for max_epochs in (0, 1):
                start = time.perf_counter()
                aligner = _epoch_fit(F, P, g, cfg, max_epochs)
                times[max_epochs].append(time.perf_counter() - start)
        wall = min(times[1]) - min(times[0])
        peak = peak_mib()
        # the matmul share over a second, profiled pair of fits (the profiler
        # slows the many small ops of a step, so neither is the timed one)
        _, _, mm0, total0 = profiled(lambda: _epoch_fit(F, P, g, cfg, 0))
        _, _, mm1, total1 = profiled(lambda: _epoch_fit(F, P, g, cfg, 1))
    curve = aligner.loss_curve_["input"]
    return {
        "seconds": wall,
        "ms_per_step": 1e3 * wall / cfg.n,
        "matmul_share": share(mm1 - mm0, total1 - total0),
        "peak_mib": peak,
        "work_mib": peak - base,
        "loss_first_last": [float(curve[0]), float(curve[-1])],
    }


def phase_fit(cfg):
    import numpy as np

    from skvmf.alignment import RegionalAligner

    F = features(cfg.n, cfg.R, cfg.K, cfg.seed).numpy()
    P = soft_labels(cfg.n, 10, cfg.seed)
    g = np.random.default_rng(0).normal(size=(cfg.n, 3)) * 3
    params = {"random_state": 0}
    if cfg.toy:  # the defaults, shortened to seconds
        params.update(n_candidates=cfg.n_candidates, weight_steps=2, max_epochs=3)
    base = rss_mib()
    start = time.perf_counter()
    aligner = RegionalAligner(**params).fit(F, soft_labels=P, g=g)
    wall = time.perf_counter() - start
    curve = aligner.loss_curve_["input"]
    return {
        "seconds": wall,
        "matmul_share": None,  # not profiled: the profiler would slow the fit
        "peak_mib": peak_mib(),
        "work_mib": peak_mib() - base,
        "loss_first_last": [float(curve[0]), float(curve[-1])],
    }


PHASE_FUNCTIONS = {
    "matching": phase_matching,
    "importance": phase_importance,
    "epoch": phase_epoch,
    "fit": phase_fit,
}


def config(size="toy", *, n_candidates=100, weight_steps=2, seed=0, **shape):
    """The settings of one problem: a named size, or n, R and K given."""
    dims = {**SIZES.get(size, {}), **shape}
    return SimpleNamespace(
        **dims,
        n_candidates=min(n_candidates, dims["n"] - 1),
        weight_steps=weight_steps,
        seed=seed,
        toy=size == "toy",
    )


def run_phase(phase, size="toy", workdir=None, **settings):
    """Run one phase in this process and return its result.

    ``workdir`` is accepted for a uniform interface: no phase writes files.
    """
    return PHASE_FUNCTIONS[phase](config(size, **settings))


def _run_in_child(phase, size, n, R, K, args, threads):
    """One phase in a fresh process, so that its peak memory is its own."""
    cmd = [sys.executable, __file__, "--phase", phase, "--size", size]
    cmd += ["--n", str(n), "--R", str(R), "--K", str(K), "--threads", str(threads)]
    cmd += ["--n-candidates", str(args.n_candidates)]
    cmd += ["--weight-steps", str(args.weight_steps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results, weight_steps):
    """Markdown table of {(problem, phase): result}."""
    lines = [
        "| problem | phase | time | matmul share | peak RSS | working memory | notes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (problem, phase), r in results.items():
        mm = r.get("matmul_share")
        mm = "" if mm is None else f"{100 * mm:.0f} %"
        notes = []
        if "gflops" in r:
            notes.append(f"{r['gflops']:.0f} GFLOP/s")
        if "seconds_20" in r:
            notes.append(
                f"{weight_steps} steps measured; 20 steps: "
                f"{r['seconds_20']:.0f} s (extrapolated)"
            )
        if "ms_per_step" in r:
            notes.append(f"{r['ms_per_step']:.1f} ms per anchor step")
        if "loss_first_last" in r:
            a, b = r["loss_first_last"]
            notes.append(f"loss {a:.3g} -> {b:.3g}")
        lines.append(
            f"| {problem} | {LABELS[phase]} | {r['seconds']:.1f} s | {mm} | "
            f"{r['peak_mib']:.0f} MiB | {r['work_mib']:.0f} MiB | "
            f"{'; '.join(notes)} |"
        )
    return "\n".join(lines)


def _problems(args):
    """(name, size, n, R, K) of every problem of this run."""
    if args.smoke:
        return [("toy", "toy", *SIZES["toy"].values())]
    problems = [("digits", "digits", *SIZES["digits"].values())]
    if not args.skip_paper:
        problems.insert(0, ("paper", "paper", args.n, args.R, args.K))
    return problems


def run(args, threads):
    """Every phase of every problem: {(problem label, phase): result}."""
    results = {}
    for problem, size, n, R, K in _problems(args):
        label = f"{problem} (N={n}, R={R}, K={K})"
        for phase in PHASES:
            if phase == "fit" and problem == "paper":
                continue  # a whole fit at paper size takes hours on a CPU
            print(f"{label}: {LABELS[phase]} ...", file=sys.stderr, flush=True)
            if args.smoke:  # in-process: seconds, peak memory is shared
                result = run_phase(
                    phase,
                    "toy",
                    n_candidates=args.n_candidates,
                    weight_steps=args.weight_steps,
                )
            else:
                result = _run_in_child(phase, size, n, R, K, args, threads)
            results[(label, phase)] = result
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=PHASES, help="run one phase, print JSON")
    parser.add_argument("--size", choices=sorted(SIZES), default="paper")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--R", type=int, default=196)
    parser.add_argument("--K", type=int, default=512)
    parser.add_argument("--n-candidates", type=int, default=100)
    parser.add_argument("--weight-steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--skip-paper", action="store_true")
    parser.add_argument(
        "--smoke", action="store_true", help="toy size, in-process, seconds"
    )
    parser.add_argument(
        "--markdown",
        default=None,
        help="write the table to this file ('doc': its section of doc/benchmarks.md)",
    )
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.phase:
        result = run_phase(
            args.phase,
            args.size,
            n=args.n,
            R=args.R,
            K=args.K,
            n_candidates=args.n_candidates,
            weight_steps=args.weight_steps,
        )
        print(json.dumps(result))
        return result

    threads = args.threads or torch.get_num_threads()
    results = run(args, threads)
    header = (
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{threads} torch thread(s), float32, CPU."
    )
    text = table(results, args.weight_steps)
    print(header)
    print()
    print(text)
    if args.markdown == "doc":
        write_section("bench_aligner", header + "\n\n" + text)
    elif args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(header + "\n\n" + text + "\n")
    return results


if __name__ == "__main__":
    main()
