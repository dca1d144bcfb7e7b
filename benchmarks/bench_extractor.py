"""Benchmark TorchFeatureExtractor (run by hand; results in doc/).

Two measurements:

1. **Overhead**: the time of an extraction (sample features, logits and the
   paper's five regional layers pooled to the common grid) against the bare
   forward pass of the same model over the same batches. Both run in eval
   mode under ``torch.inference_mode()``; the two are interleaved and the
   best of ``--repeats`` is kept, which damps the noise of a shared machine.
   Target: overhead <= 10 %.
2. **Memory**: peak resident memory of a memory-mapped extraction against the
   number of images N, each N in a fresh process (``ru_maxrss`` is a
   high-water mark), next to an in-memory extraction for contrast. Images
   come from a Dataset that makes each image on the fly, so the input itself
   takes no memory; a memory-mapped extraction must stay flat in N.

Usage::

    python benchmarks/bench_extractor.py            # its section of doc/benchmarks.md
    python benchmarks/bench_extractor.py --quick    # smaller sizes
    python benchmarks/bench_extractor.py --smoke    # toy size, seconds, prints only

``--smoke`` (and the test suite) runs both phases at toy size in-process
(the memory phase's peak is then that of a process that has done other
work, so only the columns, not the figures, mean anything); a full run
measures each N of the memory phase in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _doc import write_section  # benchmarks/_doc.py (script directory)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# -- 1. overhead --------------------------------------------------------------
def _bare_forward(model, X, batch_size):
    import torch

    model.eval()
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            model(torch.from_numpy(X[start : start + batch_size]))


def overhead(name, size, n, batch_size, repeats):
    import numpy as np
    import torch
    import torchvision

    from skvmf.extraction import TorchFeatureExtractor

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    X = np.random.default_rng(0).normal(size=(n, 3, size, size)).astype(np.float32)
    ext = TorchFeatureExtractor(model, batch_size=batch_size).fit(X[:1])
    _bare_forward(model, X[:batch_size], batch_size)  # warm-up
    ext.transform(X[:batch_size])

    def timed(fn):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    bare, extract = [], []
    for i in range(repeats):  # ABBA order: drifts in machine load cancel
        runs = [("bare", lambda: _bare_forward(model, X, batch_size))]
        runs.append(("extract", lambda: ext.transform(X)))
        for kind, fn in runs if i % 2 == 0 else runs[::-1]:
            (bare if kind == "bare" else extract).append(timed(fn))
    bare, extract = np.array(bare), np.array(extract)
    b_cpu, e_cpu = bare[:, 1].min(), extract[:, 1].min()
    b_wall, e_wall = bare[:, 0].min(), extract[:, 0].min()
    return {
        "model": name,
        "input": f"{n} x 3 x {size} x {size}",
        "batch": batch_size,
        "layers": ", ".join(ext.layer_names_),
        "grid": "x".join(map(str, ext.grid_)),
        "bare_cpu_s": b_cpu,
        "extract_cpu_s": e_cpu,
        "overhead_cpu_pct": 100 * (e_cpu - b_cpu) / b_cpu,
        "bare_wall_s": b_wall,
        "extract_wall_s": e_wall,
        "overhead_wall_pct": 100 * (e_wall - b_wall) / b_wall,
    }


# -- 2. memory (one N per process) -------------------------------------------
def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Sampler(threading.Thread):
    """Samples the current RSS every 2 ms.

    ``ru_maxrss`` is a high-water mark that the imports already set.
    """

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.done = _rss(), False

    def run(self):
        while not self.done:
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)


def _generated(n):
    """A Dataset that makes image i on the fly: the input holds no memory."""
    import torch
    from torch.utils.data import Dataset

    class Generated(Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return torch.randn(3, 32, 32, generator=g), 0

    return Generated()


def measure_memory(n, memmap, workdir=None):
    """Peak RSS of a (memory-mapped) extraction of n generated images.

    Memory-mapped files go to a fresh folder inside ``workdir`` (the system
    temp folder when None), removed afterwards.
    """
    import numpy as np
    import torch
    from torch import nn

    from skvmf.extraction import TorchFeatureExtractor

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 32, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    directory = tempfile.mkdtemp(dir=workdir) if memmap else None
    try:
        ext = TorchFeatureExtractor(
            model, ["1", "3"], grid=16, batch_size=64, memmap_dir=directory
        ).fit()
        ext.transform(torch.zeros(64, 3, 32, 32))  # warm-up: allocator, kernels
        before = _rss()
        sampler = _Sampler()
        sampler.start()
        fs = ext.transform(_generated(n))
        sampler.done = True
        sampler.join()
        regions = list(fs.regions.values())
        out = {
            "before": before,
            "peak": max(sampler.peak, _rss()),
            "regions_bytes": sum(v.nbytes for v in regions),
            "ok": all(isinstance(v, np.memmap) for v in regions) == memmap,
        }
        del fs, regions
    finally:
        if directory:
            shutil.rmtree(directory, ignore_errors=True)
    return out


def memory(n, memmap, *, in_process=False, workdir=None):
    """One row of the memory table: in a fresh process unless in_process."""
    if in_process:
        out = measure_memory(n, memmap, workdir)
    else:
        cmd = [sys.executable, __file__, "--memory-child", str(n)]
        cmd += ["--threads", "1"] + (["--memmap"] if memmap else [])
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        out = json.loads(done.stdout.strip().splitlines()[-1])
    if not out["ok"]:
        raise RuntimeError(f"unexpected storage for memmap={memmap}: {out}")
    return {
        "n": n,
        "storage": "memmap" if memmap else "in memory",
        "regions_mib": out["regions_bytes"] / 2**20,
        "peak_mib": out["peak"] / 2**20,
        "growth_mib": (out["peak"] - out["before"]) / 2**20,
    }


# -- phases ---------------------------------------------------------------------
# (model, input side, N, batch) of the overhead phase; N of the memory phase
# (memory-mapped) and the N of its in-memory contrast row
SIZES = {
    "full": {
        "cases": [
            ("resnet18", 112, 64, 32),
            ("mobilenet_v2", 112, 64, 32),
            ("vgg16_bn", 64, 64, 32),
        ],
        "sizes": [1000, 4000, 16000],
        "in_memory": 4000,
    },
    "quick": {
        "cases": [("resnet18", 64, 32, 16), ("mobilenet_v2", 64, 32, 16)],
        "sizes": [256, 1024],
        "in_memory": 1024,
    },
    "toy": {"cases": [("resnet18", 32, 8, 4)], "sizes": [128], "in_memory": 128},
}
PHASES = ("overhead", "memory")
COLUMNS = {
    "overhead": (
        "model",
        "input",
        "batch",
        "layers",
        "grid",
        "bare_cpu_s",
        "extract_cpu_s",
        "overhead_cpu_pct",
        "bare_wall_s",
        "extract_wall_s",
        "overhead_wall_pct",
    ),
    "memory": ("n", "storage", "regions_mib", "peak_mib", "growth_mib"),
}


def run_phase(phase, size="toy", workdir=None, *, repeats=None):
    """The rows of one phase at ``size``; toy size runs in this process.

    Files (memory maps) go only inside ``workdir`` (the system temp folder
    when None) and are removed.
    """
    plan = SIZES[size]
    toy = size == "toy"
    rows = []
    if phase == "overhead":
        for name, side, n, batch in plan["cases"]:
            rows.append(overhead(name, side, n, batch, repeats or (2 if toy else 3)))
            print(json.dumps(rows[-1]), flush=True)
        return rows
    for n, memmap in [(n, True) for n in plan["sizes"]] + [(plan["in_memory"], False)]:
        rows.append(memory(n, memmap, in_process=toy, workdir=workdir))
        print(json.dumps(rows[-1]), flush=True)
    return rows


# -- report ---------------------------------------------------------------------
def _markdown(over, mem, args):
    import torch

    flag = " --quick" if args.quick else " --smoke" if args.smoke else ""
    lines = [
        "# TorchFeatureExtractor benchmarks",
        "",
        f"Run by hand with `python benchmarks/bench_extractor.py{flag}` on "
        f"{platform.processor() or 'CPU'} "
        f"({os.cpu_count()} cores, shared with other jobs: timings are noisy), "
        f"torch {torch.__version__}, {args.threads} torch thread(s), CPU, "
        "float32, randomly initialised torchvision models.",
        "",
        "## Extraction overhead over the bare forward pass",
        "",
        "Extraction = sample features (input of the last Linear), logits, and the "
        "paper's five layers pooled to the grid of the deepest, per batch. "
        f"Best of {args.repeats} runs, interleaved in ABBA order. The machine is "
        "shared, so wall-clock times swing by tens of percent between runs; the "
        "process CPU time (`time.process_time`, one torch thread) measures the "
        "work done and is the number to read; wall-clock is in brackets.",
        "",
        "| model | input | batch | layers | grid | forward CPU s (wall) "
        "| extraction CPU s (wall) | overhead CPU (wall) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in over:
        lines.append(
            f"| {r['model']} | {r['input']} | {r['batch']} | {r['layers']} | "
            f"{r['grid']} | {r['bare_cpu_s']:.3f} ({r['bare_wall_s']:.3f}) | "
            f"{r['extract_cpu_s']:.3f} ({r['extract_wall_s']:.3f}) | "
            f"{r['overhead_cpu_pct']:+.1f} % ({r['overhead_wall_pct']:+.1f} %) |"
        )
    lines += [
        "",
        "## Peak memory against N",
        "",
        "A small CNN (conv 3->64, conv 1x1 64->32, 32 x 32 inputs), two layers "
        "pooled to a 16 x 16 grid: 96 KiB of regional features per image. "
        "Images are generated on the fly by a Dataset; each row is a fresh "
        "process. RSS is sampled every 2 ms (`/proc/self/statm`); *growth* is "
        "the peak during the extraction minus the RSS just before it.",
        "",
        "| N | storage | regional features (MiB) | peak RSS (MiB) | growth (MiB) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in mem:
        lines.append(
            f"| {r['n']} | {r['storage']} | {r['regions_mib']:.0f} | "
            f"{r['peak_mib']:.0f} | {r['growth_mib']:.1f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument(
        "--smoke", action="store_true", help="toy size, seconds; writes nothing"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", default=None, help="markdown file (default: doc/benchmarks.md)"
    )
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memmap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.memory_child is not None:  # one row of the memory table
        print(json.dumps(measure_memory(args.memory_child, args.memmap)))
        return None
    size = "toy" if args.smoke else "quick" if args.quick else "full"
    with tempfile.TemporaryDirectory() as workdir:
        over = run_phase("overhead", size, workdir, repeats=args.repeats)
        mem = run_phase("memory", size, workdir)
    text = _markdown(over, mem, args)
    if args.smoke:
        pass  # toy sizes never overwrite the measured tables
    elif args.out is None:
        write_section("bench_extractor", text)
    else:
        Path(args.out).write_text(text)
    print(text)
    return over, mem


if __name__ == "__main__":
    main()
