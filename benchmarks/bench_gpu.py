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
  floating-point operations;
- ``importance``: :func:`skvmf.fit_importance_weights`, ``--weight-steps``
  steps (each 2 N n K R^2 operations forward, about twice that backward);
- ``alignment``: a whole :class:`skvmf.RegionalAligner` fit of the layer;
- ``analysis``: :func:`skvmf.analyze` of a VGG-16 (random weights) on N
  random 224 px images at conv_53, one repeat.

``--smoke`` (and the test suite, on the CPU and, when there is one, on a
GPU) runs every phase at toy size: N = 24, R = 16, K = 32, n = 8, two weight
steps, one epoch, and the analysis of skvmf's width-1/8 VGG-16 on 20 random
32 px images. ``--device cuda`` on a machine without a GPU is refused.

The *floor* of a phase is its matmul operations divided by the device's
measured float32 matmul rate (a large square product timed here), so the
ratio time / floor says how close the phase runs to the hardware's limit.
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


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t, out


def matmul_rate(device, size=4096, repeats=5):
    """Measured float32 matmul FLOP/s of the device (best of ``repeats``)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    (a @ b).sum().item()  # warm up (kernels, TF32 choice)
    best = min(_timed(lambda: a @ b, device)[0] for _ in range(repeats))
    return 2 * size**3 / best


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
    },
    "toy": {
        "n": 24,
        "regions": 16,
        "channels": 32,
        "candidates": 8,
        "weight_steps": 2,
        "epochs": 1,
        "analysis_images": 20,
    },
}
PHASES = ("matching", "importance", "alignment", "analysis")
COLUMNS = ("phase", "seconds", "flops", "rate")
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
    """All N^2 pairs matched: 2 N^2 K R^2 operations."""
    n, R, K = cfg["n"], cfg["regions"], cfg["channels"]
    F, _, _ = problem(cfg, device)
    seconds, _ = _timed(lambda: skvmf.match_regions(F, device=device), device)
    return "matching", seconds, 2.0 * n * n * K * R * R


def phase_importance(cfg, device):
    """Importance weights: 2 N n K R^2 per step forward, ~2x backward."""
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
        ),
        device,
    )
    return (
        f"importance ({steps} steps)",
        seconds,
        3 * 2.0 * steps * n * n_cand * K * R * R,
    )


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
    flops = 2.0 * n * n * K * R * R + 3 * 2.0 * steps * n * n_cand * K * R * R
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


PHASE_FUNCTIONS = {
    "matching": phase_matching,
    "importance": phase_importance,
    "alignment": phase_alignment,
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

    ``rate`` is the device's matmul FLOP/s (measured here when None);
    ``workdir`` is accepted for a uniform interface: nothing is written.
    """
    device = check_device(device)
    cfg = {**SIZES[size], **cfg, "toy": size == "toy"}
    if rate is None:
        rate = matmul_rate(device, 512 if size == "toy" else 4096)
    name, seconds, flops = PHASE_FUNCTIONS[phase](cfg, device)
    return {"phase": name, "seconds": seconds, "flops": flops, "rate": rate}


def markdown(rows, cfg, device_name):
    """The table of a run: time of each phase against its matmul floor."""
    rate = rows[0]["rate"]
    lines = [
        f"Device: {device_name}; measured float32 matmul rate "
        f"{rate / 1e12:.2f} TFLOP/s. N = {cfg['n']}, R = {cfg['regions']}, "
        f"K = {cfg['channels']}, n = {cfg['candidates']}.",
        "",
        "| phase | seconds | matmul GFLOP | floor (s) | time / floor |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        name, seconds, flops = row["phase"], row["seconds"], row["flops"]
        if flops is None:
            lines.append(f"| {name} | {seconds:.2f} | | | |")
            continue
        floor = flops / rate
        lines.append(
            f"| {name} | {seconds:.2f} | {flops / 1e9:.0f} | {floor:.3f} | "
            f"{seconds / floor:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
    paper = SIZES["paper"]
    for key in paper:
        parser.add_argument("--" + key.replace("_", "-"), type=int, default=paper[key])
    parser.add_argument("--smoke", action="store_true", help="toy size, seconds")
    parser.add_argument("--markdown", metavar="DOC_DIR")
    args = parser.parse_args(argv)
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
    rate = matmul_rate(device, 512 if args.smoke else 4096)
    size = "toy" if args.smoke else "paper"
    phases = [p for p in PHASES if p != "analysis" or cfg["analysis_images"]]
    rows = [
        run_phase(p, size, device=device, rate=rate, **({} if args.smoke else cfg))
        for p in phases
    ]
    text = markdown(rows, cfg, name)
    print(text)
    if args.markdown:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _doc import write_section

        write_section(f"gpu-{device.type}", f"## Paper-size layer on {name}\n\n{text}")
    return rate, rows


if __name__ == "__main__":
    main()
