"""Benchmark of region matching, importance weights and the RegionalAligner.

Run by hand (not part of the test suite)::

    python benchmarks/bench_aligner.py                  # paper size + digits size
    python benchmarks/bench_aligner.py --weight-steps 20  # all 20 weight steps
    python benchmarks/bench_aligner.py --markdown doc   # doc/benchmarks.md

Paper size: N = 500 images, R = 196 regions (14 x 14), K = 512 channels
(VGG-16 conv_53 on 224 px inputs), n = 100 candidates, d' = 3. Digits size:
N = 300, R = 64 (8 x 8), K = 64.

Each phase runs in its own process so that its peak resident memory
(``ru_maxrss``) is its own. The "working memory" column is that peak minus
the resident memory once the inputs are built (torch, the features, the
matching when it is an input). The matmul share is the self CPU time of
``aten::mm``/``aten::bmm`` in ``torch.profiler`` over the phase (over a
second, untimed epoch for the aligner). The importance weights run
``--weight-steps`` steps (default 2) and the table also gives the time
extrapolated to the 20 steps of the method, since every step costs the same.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

from _doc import write_section  # benchmarks/_doc.py (script directory)

try:  # run from a checkout without installing the package
    import skvmf  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_MATMUL_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm")


def _rss_mib() -> float:
    """Current resident memory of this process, in MiB."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _features(n, R, K, seed):
    """Non-negative, sparse-ish regional features, like ReLU outputs."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    f = torch.randn((n, R, K), generator=gen)
    # a few shared "patterns" so that the matching is not pure noise
    patterns = torch.randn((8, K), generator=gen)
    mix = torch.randint(0, 8, (n, R), generator=gen)
    f += 1.5 * patterns[mix]
    return f.clamp_min_(0.0)


def _soft_labels(n, C, seed):
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    return torch.softmax(torch.randn((n, C), generator=gen) * 3, dim=1).numpy()


def _profiled(fn):
    """Run fn under torch.profiler; return (result, wall seconds, matmul share)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        result = fn()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events if e.key in _MATMUL_OPS)
    return result, wall, (mm / total if total else float("nan"))


def phase_matching(args):
    import numpy as np
    import torch

    from skvmf.alignment import match_regions

    F = _features(args.n, args.R, args.K, args.seed)
    v = torch.rand((args.n, args.K), generator=torch.Generator().manual_seed(3))
    v /= v.sum(dim=1, keepdim=True)
    base = _rss_mib()
    idx, wall, share = _profiled(lambda: match_regions(F, v))
    if args.save:
        np.save(args.save, idx.cpu().numpy())
    macs = args.n**2 * args.K * args.R**2
    return {
        "seconds": wall,
        "matmul_share": share,
        "peak_mib": _peak_mib(),
        "work_mib": _peak_mib() - base,
        "gflops": 2 * macs / wall / 1e9,
    }


def phase_importance(args):
    import numpy as np

    from skvmf.alignment import fit_importance_weights

    F = _features(args.n, args.R, args.K, args.seed)
    P = _soft_labels(args.n, 10, args.seed)
    base = _rss_mib()
    (w, v, losses), wall, share = _profiled(
        lambda: fit_importance_weights(
            F,
            P,
            n_candidates=args.n_candidates,
            n_steps=args.weight_steps,
            random_state=0,
            return_losses=True,
        )
    )
    if args.save:
        np.save(args.save, w.cpu().numpy())
    macs = args.weight_steps * args.n * args.n_candidates * args.K * args.R**2
    return {
        "seconds": wall,
        "seconds_20": wall * 20 / args.weight_steps,
        "matmul_share": share,
        "peak_mib": _peak_mib(),
        "work_mib": _peak_mib() - base,
        "gflops": 2 * macs / wall / 1e9,
        "loss_first_last": [float(losses[0]), float(losses[-1])],
    }


def phase_epoch(args):
    import numpy as np
    import torch

    from skvmf import _matching as mk
    from skvmf._torch_kappa import TorchKappa
    from skvmf._torch_utils import MomentumSGD
    from skvmf.alignment import _align_epoch

    n, R, K, d = args.n, args.R, args.K, 3
    gen = torch.Generator().manual_seed(0)
    F = _features(n, R, K, args.seed)
    feats_flat = mk.normalize_channels(F).reshape(n * R, K)
    del F
    if args.matching and os.path.exists(args.matching):
        matching = torch.from_numpy(np.load(args.matching))
    else:
        matching = torch.randint(0, R, (n, n, R), dtype=torch.int16, generator=gen)
    if args.weights and os.path.exists(args.weights):
        w = torch.from_numpy(np.load(args.weights))
    else:
        w = torch.full((n, R), 1.0 / R)
    G = torch.randn((n, d), generator=gen) * 3
    phat = mk.unit_rows(torch.as_tensor(_soft_labels(n, 10, args.seed)))
    components = torch.nn.Parameter(0.1 * torch.randn((d, K), generator=gen))
    opt = MomentumSGD(components, lr=0.01, momentum=0.9, weight_decay=5e-4)
    kappa_fn = TorchKappa("revised", d, 1.0, "cpu")
    ws = mk.Workspace()

    def epoch():
        return _align_epoch(
            components,
            opt,
            feats_flat,
            R,
            G,
            phat,
            w,
            matching,
            gen,
            n_candidates=args.n_candidates,
            batch_size=1,
            scale=40.0,
            kappa_fn=kappa_fn,
            kappa_p=5.0,
            exact=False,
            sim_weight=1.0,
            align_weight=0.1,
            workspace=ws,
        )

    base = _rss_mib()
    start = time.perf_counter()
    epoch()
    wall = time.perf_counter() - start
    peak = _peak_mib()
    # the matmul share over a second, profiled epoch (the profiler slows the
    # many small ops of a step and holds their events, so it is neither the
    # timed nor the measured one)
    _, _, share = _profiled(epoch)
    return {
        "seconds": wall,
        "ms_per_step": 1e3 * wall / n,
        "matmul_share": share,
        "peak_mib": peak,
        "work_mib": peak - base,
    }


def phase_digits_fit(args):
    import numpy as np

    from skvmf.alignment import RegionalAligner

    F = _features(args.n, args.R, args.K, args.seed).numpy()
    P = _soft_labels(args.n, 10, args.seed)
    g = np.random.default_rng(0).normal(size=(args.n, 3)) * 3
    base = _rss_mib()
    start = time.perf_counter()
    aligner = RegionalAligner(random_state=0).fit(F, soft_labels=P, g=g)
    wall = time.perf_counter() - start
    return {
        "seconds": wall,
        "peak_mib": _peak_mib(),
        "work_mib": _peak_mib() - base,
        "loss_first_last": [
            float(aligner.loss_curve_["input"][0]),
            float(aligner.loss_curve_["input"][-1]),
        ],
    }


_PHASES = {
    "matching": phase_matching,
    "importance": phase_importance,
    "epoch": phase_epoch,
    "fit": phase_digits_fit,
}


def _run_phase(phase, n, R, K, extra, threads):
    cmd = [
        sys.executable,
        __file__,
        "--phase",
        phase,
        "--n",
        str(n),
        "--R",
        str(R),
        "--K",
        str(K),
        "--threads",
        str(threads),
        *extra,
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(results, args):
    lines = [
        "| problem | phase | time | matmul share | peak RSS | working memory | notes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (problem, phase), r in results.items():
        share = r.get("matmul_share")
        share = "" if share is None else f"{100 * share:.0f} %"
        notes = []
        if "gflops" in r:
            notes.append(f"{r['gflops']:.0f} GFLOP/s")
        if phase == "importance weights":
            notes.append(
                f"{args.weight_steps} steps measured; 20 steps: "
                f"{r['seconds_20']:.0f} s (extrapolated)"
            )
        if "ms_per_step" in r:
            notes.append(f"{r['ms_per_step']:.1f} ms per anchor step")
        if "loss_first_last" in r:
            a, b = r["loss_first_last"]
            notes.append(f"loss {a:.3g} -> {b:.3g}")
        lines.append(
            f"| {problem} | {phase} | {r['seconds']:.1f} s | {share} | "
            f"{r['peak_mib']:.0f} MiB | {r['work_mib']:.0f} MiB | "
            f"{'; '.join(notes)} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=sorted(_PHASES))
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--R", type=int, default=196)
    parser.add_argument("--K", type=int, default=512)
    parser.add_argument("--n-candidates", type=int, default=100)
    parser.add_argument("--weight-steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None)
    parser.add_argument("--matching", default=None)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--skip-paper", action="store_true")
    parser.add_argument(
        "--markdown",
        default=None,
        help="write the table to this file ('doc': its section of doc/benchmarks.md)",
    )
    args = parser.parse_args(argv)

    if args.phase:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(_PHASES[args.phase](args)))
        return

    import torch

    threads = args.threads or torch.get_num_threads()
    results = {}
    common = ["--n-candidates", str(args.n_candidates)]
    with tempfile.TemporaryDirectory() as tmp:
        match_file = os.path.join(tmp, "matching.npy")
        weight_file = os.path.join(tmp, "w.npy")
        problems = [("digits", 300, 64, 64)]
        if not args.skip_paper:
            problems.insert(0, ("paper", args.n, args.R, args.K))
        for problem, n, R, K in problems:
            label = f"{problem} (N={n}, R={R}, K={K})"
            print(f"{label}: region matching ...", file=sys.stderr, flush=True)
            results[(label, "region matching (full N^2)")] = _run_phase(
                "matching", n, R, K, [*common, "--save", match_file], threads
            )
            print(f"{label}: importance weights ...", file=sys.stderr, flush=True)
            results[(label, "importance weights")] = _run_phase(
                "importance",
                n,
                R,
                K,
                [*common, "--weight-steps", str(args.weight_steps)]
                + ["--save", weight_file],
                threads,
            )
            print(f"{label}: one aligner epoch ...", file=sys.stderr, flush=True)
            results[(label, "one aligner epoch (batch_size=1)")] = _run_phase(
                "epoch",
                n,
                R,
                K,
                [*common, "--matching", match_file, "--weights", weight_file],
                threads,
            )
            if problem == "digits":
                print(f"{label}: full fit ...", file=sys.stderr, flush=True)
                results[(label, "RegionalAligner.fit, all defaults")] = _run_phase(
                    "fit", n, R, K, common, threads
                )
    header = (
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{threads} torch thread(s), float32, CPU."
    )
    table = _table(results, args)
    print(header)
    print()
    print(table)
    if args.markdown == "doc":
        write_section("bench_aligner", header + "\n\n" + table)
    elif args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(header + "\n\n" + table + "\n")


if __name__ == "__main__":
    main()
