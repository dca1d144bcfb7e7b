"""One paper-size layer and one paper-size analysis, on a CPU or a GPU, against
the matmul floor of the hardware.

Run by hand (not part of the test suite)::

    python benchmarks/bench_gpu.py --device cuda            # on a GPU machine
    python benchmarks/bench_gpu.py --device cpu --n 200     # smaller, on a CPU
    python benchmarks/bench_gpu.py --smoke --device cpu     # toy size, seconds
    python benchmarks/bench_gpu.py --device cuda --markdown doc

Paper size: N = 500 images, R = 196 regions (14 x 14), K = 512 channels
(VGG-16's conv_53 at 224 px), n = 100 candidates, d' = 3. Phases, each timed
with the device synchronised:

- ``matching``: :func:`skvmf.match_regions` of all N^2 image pairs, 2 N^2 K R^2
  floating-point operations (``--matching-anchors A``: A anchors against all
  N images, for sizes whose full matching takes too long);
- ``importance``: :func:`skvmf.fit_importance_weights`, ``--weight-steps``
  steps (each 2 N n K R^2 operations forward, about twice that backward);
- ``epochs``: the aligner's epochs (``batch_size=1``, one step per anchor),
  measured as the difference of two :class:`skvmf.RegionalAligner` fits
  with ``weight_steps=0``, ``max_epochs=E`` and ``max_epochs=0``, on
  ``--epoch-images`` of the N images (a step's cost does not depend on N:
  n candidates, their matched regions; with more than 2 n images a step
  gathers those rows as it does at N, below it embeds every row), and
  scaled to N anchors and ``--epochs`` epochs; the difference also holds
  the start's loss (one pass without gradients), so it is an upper bound;
- ``alignment``: a whole :class:`skvmf.RegionalAligner` fit of the layer;
- ``precision``: bfloat16 score matmuls against float32 on the same
  layer: agreement of the matched regions of ``--precision-anchors``
  anchors with all N images, and the importance loss curve of
  ``--precision-steps`` steps in each precision;
- ``analysis``: :func:`skvmf.analyze` of a VGG-16 (random weights) on N
  random 224 px images at conv_53, one repeat.

The whole layer is matching + importance + epochs (the alignment phase
measures it in one fit where time allows). ``--phases`` picks phases, and
``--weight-steps`` below 20 times fewer steps: the table then also gives the
20-step time, since every step costs the same.

``--smoke`` (and the test suite, on the CPU and, when there is one, on a
GPU) runs every phase at toy size: N = 24, R = 16, K = 32, n = 8, two weight
steps, one epoch, and the analysis of skvmf's width-1/8 VGG-16 on 20 random
32 px images. ``--device cuda`` on a machine without a GPU is refused.

The *floor* of a phase is its matmul operations divided by the device's
float32 matmul rate, measured right before and right after the phase (so
that on a shared machine the floor follows the load): the best of a large
square product and of the phase's own product shape (anchor regions times
candidate regions), averaged over the two measurements. The ratio time /
floor says how close the phase runs to the hardware's limit. Each row also
records the load average (``os.getloadavg``) and the process's peak
resident memory so far (``ru_maxrss``; run one phase per process for a
phase's own peak). ``--precision bfloat16`` runs the matching and the
importance weights with bfloat16 score matmuls (float32 accumulation).
"""

from __future__ import annotations

import argparse
import os
import resource
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


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t, out


def matmul_rate(device, size=4096, repeats=5, shape=None):
    """Measured float32 matmul FLOP/s of the device (best of ``repeats``).

    ``shape`` (m, k, n): also time an (m, k) @ (k, n) product and return the
    better of the two rates.
    """
    shapes = [(size, size, size)] + ([tuple(shape)] if shape else [])
    best_rate = 0.0
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device)
        b = torch.randn(k, n, device=device)
        (a @ b).sum().item()  # warm up (kernels, TF32 choice)
        best = min(_timed(lambda a=a, b=b: a @ b, device)[0] for _ in range(repeats))
        best_rate = max(best_rate, 2 * m * k * n / best)
    return best_rate


def kernel_shape(cfg):
    """The matching's product: one anchor's regions by a block of candidates."""
    R, K = cfg["regions"], cfg["channels"]
    return (R, K, min(cfg["n"], cfg["candidates"]) * R)


def peak_mib():
    """The process's peak resident memory so far (ru_maxrss, Linux KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def features(n, R, K, seed, device):
    """Non-negative sparse-ish regional features, like ReLU outputs."""
    gen = torch.Generator().manual_seed(seed)
    f = torch.relu(torch.randn(n, R, K, generator=gen) - 0.5)
    return f.to(device)


# N, R, K, n, weight steps, epochs, analysis images of each size
SIZES = {
    "paper": {
        "n": 500,
        "regions": 196,
        "channels": 512,
        "candidates": 100,
        "weight_steps": 20,
        "epochs": 20,
        "analysis_images": 500,
        "epoch_images": 250,
        "measured_epochs": 8,
        "precision_anchors": 20,
        "precision_steps": 2,
        "precision": "float32",
        "matching_anchors": 0,
    },
    "toy": {
        "n": 24,
        "regions": 16,
        "channels": 32,
        "candidates": 8,
        "weight_steps": 2,
        "epochs": 1,
        "analysis_images": 20,
        "epoch_images": 24,
        "measured_epochs": 1,
        "precision_anchors": 4,
        "precision_steps": 2,
        "precision": "float32",
        "matching_anchors": 0,
    },
}
PHASES = ("matching", "importance", "epochs", "alignment", "precision", "analysis")
COLUMNS = ("phase", "seconds", "flops", "rate", "load", "peak_mib")
D = 3  # embedding dimensions d' of the aligner
C = 10  # classes of the synthetic problem


def problem(cfg, device):
    """The features (on device), soft labels and g of the synthetic layer."""
    F = features(cfg["n"], cfg["regions"], cfg["channels"], 0, device)
    labels = torch.arange(cfg["n"]) % C
    P = torch.softmax(torch.randn(cfg["n"], C) + 3 * torch.eye(C)[labels], dim=1)
    g = np.random.default_rng(0).normal(size=(cfg["n"], 3))
    g += 3 * np.eye(C, 3)[labels.numpy()]
    return F, P.numpy(), g


def phase_matching(cfg, device):
    """All N^2 pairs matched (or ``matching_anchors`` anchors with all N
    images): 2 A N K R^2 operations."""
    n, R, K = cfg["n"], cfg["regions"], cfg["channels"]
    n_anchors = min(cfg.get("matching_anchors") or n, n)
    F, _, _ = problem(cfg, device)
    anchors = None if n_anchors == n else np.arange(n_anchors)
    seconds, _ = _timed(
        lambda: skvmf.match_regions(
            F, anchors=anchors, device=device, **precision_option(cfg)
        ),
        device,
    )
    name = "matching"
    if n_anchors < n:
        name = f"matching ({n_anchors} anchors x {n} images)"
    return name, seconds, 2.0 * n_anchors * n * K * R * R


def precision_option(cfg):
    """``precision=`` for the kernels; nothing for float32, so that the script
    also times releases from before the option."""
    p = cfg.get("precision", "float32")
    return {} if p == "float32" else {"precision": p}


def importance_flops(n, n_cand, R, K, steps):
    """Matmul operations of ``steps`` importance steps on drawn candidates:
    each step scores its candidates at the current weights (the backward is
    a gather, no matmul) and again after the step (the step check), and the
    start is scored once more at the end, 2 N n K R^2 each."""
    same_sets = n_cand == n - 1
    evaluations = steps + 1 if same_sets else 2 * steps + 1
    return 2.0 * evaluations * n * n_cand * K * R * R


def phase_importance(cfg, device):
    """Importance weights: 2 N n K R^2 per evaluation, two per step."""
    n, R, K, steps = cfg["n"], cfg["regions"], cfg["channels"], cfg["weight_steps"]
    n_cand = min(cfg["candidates"], n - 1)
    F, P, _ = problem(cfg, device)
    seconds, _ = _timed(
        lambda: skvmf.fit_importance_weights(
            F,
            P,
            n_candidates=n_cand,
            n_steps=steps,
            device=device,
            random_state=0,
            **precision_option(cfg),
        ),
        device,
    )
    return (
        f"importance ({steps} steps)",
        seconds,
        importance_flops(n, n_cand, R, K, steps),
    )


def epoch_flops(n, n_cand, R, K, epochs):
    """Matmul operations of the epochs: per anchor step, the embedding of the
    anchor's and its candidates' matched regions (at most (n + 1) R rows of
    K) by Lambda (d' x K) and the gradient's product with them."""
    return 2.0 * 2 * D * K * (n_cand + 1) * R * n * epochs


def phase_epochs(cfg, device):
    """The epochs, from two fits on ``epoch_images`` images, scaled to N."""
    n, R, K = cfg["n"], cfg["regions"], cfg["channels"]
    n_e = min(n, cfg["epoch_images"])
    n_cand = min(cfg["candidates"], n_e - 1)
    E = cfg["measured_epochs"]
    F, P, g = problem({**cfg, "n": n_e}, device)
    fs = skvmf.FeatureSet(regions={"conv_53": F}, soft_labels=P, g=g)
    times = {}
    for epochs in (E, 0):
        aligner = skvmf.RegionalAligner(
            n_candidates=n_cand,
            weight_steps=0,
            max_epochs=epochs,
            device=device,
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            times[epochs], _ = _timed(lambda a=aligner: a.fit(fs), device)
    per_step = max(times[E] - times[0], 1e-9) / (E * n_e)
    seconds = per_step * n * cfg["epochs"]
    name = (
        f"epochs ({cfg['epochs']} x {n} steps, from {E} on {n_e} images: "
        f"{1e3 * per_step:.1f} ms a step)"
    )
    return name, seconds, epoch_flops(n, n_cand, R, K, cfg["epochs"])


def phase_alignment(cfg, device):
    """A whole RegionalAligner fit of the layer (matching + weights + epochs)."""
    n, R, K, steps = cfg["n"], cfg["regions"], cfg["channels"], cfg["weight_steps"]
    n_cand = min(cfg["candidates"], n - 1)
    F, P, g = problem(cfg, device)
    fs = skvmf.FeatureSet(regions={"conv_53": F}, soft_labels=P, g=g)
    aligner = skvmf.RegionalAligner(
        n_candidates=n_cand,
        weight_steps=steps,
        max_epochs=cfg["epochs"],
        device=device,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        seconds, _ = _timed(lambda: aligner.fit(fs), device)
    # the same operations as the three phases count: the matching, the
    # weights' evaluations and the epochs' products
    flops = (
        2.0 * n * n * K * R * R
        + importance_flops(n, n_cand, R, K, steps)
        + epoch_flops(n, n_cand, R, K, cfg["epochs"])
    )
    return f"alignment ({cfg['epochs']} epochs)", seconds, flops


def analysis_model(toy, device):
    """VGG-16 with random weights (toy: skvmf's width-1/8 VGG-16 at 32 px)."""
    if toy:
        model = skvmf.make_classifier("vgg16", C, width=0.125, random_state=0)
        return model.to(device).eval(), 32
    from torchvision.models import vgg16

    return vgg16(weights=None, num_classes=C).to(device).eval(), 224


def phase_analysis(cfg, device):
    """skvmf.analyze of a VGG-16 at conv_53, one repeat (no FLOP count)."""
    n_images = cfg["analysis_images"]
    toy = cfg["toy"]
    model, side = analysis_model(toy, device)
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(n_images, 3, side, side, generator=gen)
    y = np.arange(n_images) % C
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds, _ = _timed(
            lambda: skvmf.analyze(
                model,
                X,
                y,
                layers=["conv_53"],
                n_repeats=1,
                held_out=0.5,
                device=str(device),
                aligner_params={
                    "weight_steps": cfg["weight_steps"],
                    "max_epochs": cfg["epochs"],
                },
                projector_params={"max_iter": 200} if toy else None,
            ),
            device,
        )
    return f"analysis (VGG-16, {n_images} images)", seconds, None


def phase_precision(cfg, device):
    """bfloat16 against float32 score matmuls on the same layer.

    The matched regions of the first ``precision_anchors`` anchors with all
    N images (the share of equal indices), and the importance loss curve of
    ``precision_steps`` steps (same seed, so the same candidates) in each
    precision. Returns the row with the comparison in ``extra``.
    """
    n, R, K = cfg["n"], cfg["regions"], cfg["channels"]
    n_cand = min(cfg["candidates"], n - 1)
    A, steps = min(cfg["precision_anchors"], n), cfg["precision_steps"]
    F, P, _ = problem(cfg, device)
    anchors = np.arange(A)
    start = time.perf_counter()
    idx = {}
    curves = {}
    for precision in ("float32", "bfloat16"):
        idx[precision] = skvmf.match_regions(
            F, anchors=anchors, device=device, precision=precision
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            curves[precision] = skvmf.fit_importance_weights(
                F,
                P,
                n_candidates=n_cand,
                n_steps=steps,
                device=device,
                random_state=0,
                precision=precision,
                return_losses=True,
            )[2]
    _sync(device)
    seconds = time.perf_counter() - start
    agree = float((idx["float32"] == idx["bfloat16"]).float().mean())
    flops = 2 * (2.0 * A * n * K * R * R + importance_flops(n, n_cand, R, K, steps))
    extra = {
        "index_agreement": agree,
        "loss_float32": [float(x) for x in curves["float32"]],
        "loss_bfloat16": [float(x) for x in curves["bfloat16"]],
    }
    return f"precision (bfloat16 vs float32, {A} anchors)", seconds, flops, extra


PHASE_FUNCTIONS = {
    "matching": phase_matching,
    "importance": phase_importance,
    "epochs": phase_epochs,
    "alignment": phase_alignment,
    "precision": phase_precision,
    "analysis": phase_analysis,
}


def check_device(device):
    """The torch device, or a ValueError when CUDA is asked for but absent."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r}: this machine has no CUDA GPU")
    return device


def run_phase(phase, size="toy", workdir=None, *, device="cpu", rate=None, **cfg):
    """One phase at ``size`` on ``device``: a row of the table.

    ``rate`` is the device's matmul FLOP/s; when None it is measured right
    before and right after the phase (the mean of the two is the row's
    ``rate``, both are kept). ``workdir`` is accepted for a uniform
    interface: nothing is written.
    """
    device = check_device(device)
    cfg = {**SIZES[size], **cfg, "toy": size == "toy"}
    square = 512 if size == "toy" else 2048
    shape = kernel_shape(cfg)
    before = rate if rate is not None else matmul_rate(device, square, 3, shape)
    load = os.getloadavg()
    name, seconds, flops, *extra = PHASE_FUNCTIONS[phase](cfg, device)
    after = rate if rate is not None else matmul_rate(device, square, 3, shape)
    load = tuple((a + b) / 2 for a, b in zip(load, os.getloadavg()))
    row = {
        "phase": name,
        "seconds": seconds,
        "flops": flops,
        "rate": (before + after) / 2,
        "rate_before": before,
        "rate_after": after,
        "load": load,
        "peak_mib": peak_mib(),
        "threads": torch.get_num_threads(),
        "precision": cfg["precision"],
    }
    if extra:
        row.update(extra[0])
    return row


def markdown(rows, cfg, device_name):
    """The table of a run: time of each phase against its matmul floor."""
    lines = [
        f"Device: {device_name}; precision {cfg.get('precision', 'float32')}. "
        f"N = {cfg['n']}, R = {cfg['regions']}, K = {cfg['channels']}, "
        f"n = {cfg['candidates']}. Rate: float32 matmul GFLOP/s before / "
        "after the phase (best of a square product and the phase's shape).",
        "",
        "| phase | seconds | matmul GFLOP | rate (GFLOP/s) | floor (s) "
        "| time / floor | load (1 min) | peak RSS (MiB) |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        name, seconds, flops = row["phase"], row["seconds"], row["flops"]
        rate = row["rate"]
        rates = f"{row['rate_before'] / 1e9:.0f} / {row['rate_after'] / 1e9:.0f}"
        tail = f"{row['load'][0]:.1f} | {row['peak_mib']:.0f} |"
        if flops is None:
            lines.append(f"| {name} | {seconds:.2f} | | {rates} | | | {tail}")
            continue
        floor = flops / rate
        lines.append(
            f"| {name} | {seconds:.2f} | {flops / 1e9:.0f} | {rates} | "
            f"{floor:.2f} | {seconds / floor:.2f} | {tail}"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
    paper = SIZES["paper"]
    for key in paper:
        kind = str if key == "precision" else int
        parser.add_argument("--" + key.replace("_", "-"), type=kind, default=paper[key])
    parser.add_argument("--smoke", action="store_true", help="toy size, seconds")
    parser.add_argument("--markdown", metavar="DOC_DIR")
    parser.add_argument("--phases", nargs="+", choices=PHASES, help="default: all")
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = dict(SIZES["toy"]) if args.smoke else {k: getattr(args, k) for k in paper}
    try:
        device = check_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} torch threads"
    )
    size = "toy" if args.smoke else "paper"
    phases = args.phases or [
        p for p in PHASES if p != "analysis" or cfg["analysis_images"]
    ]
    rows = []
    for p in phases:
        rows.append(run_phase(p, size, device=device, **({} if args.smoke else cfg)))
        print(rows[-1], flush=True)
    text = markdown(rows, cfg, name)
    print(text)
    if args.json:
        import json

        with open(args.json, "w") as fh:
            json.dump({"cfg": cfg, "device": name, "rows": rows}, fh, indent=1)
    if args.markdown:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _doc import write_section

        write_section(f"gpu-{device.type}", f"## Paper-size layer on {name}\n\n{text}")
    return rows


if __name__ == "__main__":
    main()
