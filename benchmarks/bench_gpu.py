"""One paper-size layer and one paper-size analysis, on a CPU or a GPU, against
the matmul floor of the hardware.

Run by hand (not part of the test suite)::

    python benchmarks/bench_gpu.py --device cuda            # on a GPU machine
    python benchmarks/bench_gpu.py --device cpu --n 200     # smaller, on a CPU
    python benchmarks/bench_gpu.py --smoke                  # toy size, seconds
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


def run(n, R, K, n_cand, weight_steps, epochs, device, analysis_images, smoke):
    device = torch.device(device)
    rows = []
    rate = matmul_rate(device, 1024 if smoke else 4096)
    F = features(n, R, K, 0, device)
    C = 10
    labels = torch.arange(n) % C
    P = torch.softmax(torch.randn(n, C) + 3 * torch.eye(C)[labels], dim=1).numpy()
    n_cand = min(n_cand, n - 1)

    flops = 2.0 * n * n * K * R * R
    seconds, _ = _timed(lambda: skvmf.match_regions(F, device=device), device)
    rows.append(("matching", seconds, flops))

    flops = 3 * 2.0 * weight_steps * n * n_cand * K * R * R
    seconds, _ = _timed(
        lambda: skvmf.fit_importance_weights(
            F,
            P,
            n_candidates=n_cand,
            n_steps=weight_steps,
            device=device,
            random_state=0,
        ),
        device,
    )
    rows.append((f"importance ({weight_steps} steps)", seconds, flops))

    g = np.random.default_rng(0).normal(size=(n, 3)) + 3 * np.eye(C, 3)[labels.numpy()]
    fs = skvmf.FeatureSet(regions={"conv_53": F}, soft_labels=P, g=g)
    aligner = skvmf.RegionalAligner(
        n_candidates=n_cand,
        weight_steps=weight_steps,
        max_epochs=epochs,
        device=device,
        random_state=0,
    )
    flops = 2.0 * n * n * K * R * R + 3 * 2.0 * weight_steps * n * n_cand * K * R * R
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        seconds, _ = _timed(lambda: aligner.fit(fs), device)
    rows.append((f"alignment ({epochs} epochs)", seconds, flops))

    if analysis_images:
        from torchvision.models import vgg16

        model = vgg16(weights=None, num_classes=C).to(device).eval()
        gen = torch.Generator().manual_seed(1)
        side = 64 if smoke else 224
        X = torch.randn(analysis_images, 3, side, side, generator=gen)
        y = np.arange(analysis_images) % C
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
                        "weight_steps": weight_steps,
                        "max_epochs": epochs,
                    },
                    projector_params={"max_iter": 200} if smoke else None,
                ),
                device,
            )
        rows.append((f"analysis (VGG-16, {analysis_images} images)", seconds, None))
    return rate, rows


def markdown(rate, rows, args, device_name):
    lines = [
        f"Device: {device_name}; measured float32 matmul rate "
        f"{rate / 1e12:.2f} TFLOP/s. N = {args.n}, R = {args.regions}, "
        f"K = {args.channels}, n = {args.candidates}.",
        "",
        "| phase | seconds | matmul GFLOP | floor (s) | time / floor |",
        "|---|---|---|---|---|",
    ]
    for name, seconds, flops in rows:
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
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--regions", type=int, default=196)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--weight-steps", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--analysis-images", type=int, default=500)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--markdown", metavar="DOC_DIR")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.regions, args.channels, args.candidates = 24, 16, 32, 8
        args.weight_steps, args.epochs, args.analysis_images = 2, 1, 20
    device = torch.device(args.device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} torch threads"
    )
    rate, rows = run(
        args.n,
        args.regions,
        args.channels,
        args.candidates,
        args.weight_steps,
        args.epochs,
        args.device,
        args.analysis_images,
        args.smoke,
    )
    text = markdown(rate, rows, args, name)
    print(text)
    if args.markdown:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _doc import write_section

        write_section(f"gpu-{device.type}", f"## Paper-size layer on {name}\n\n{text}")
    return rate, rows


if __name__ == "__main__":
    main()
