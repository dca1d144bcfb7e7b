"""The ``skvmf`` command: ``skvmf demo`` and ``skvmf analyze``.

``skvmf demo`` trains the built-in workload (a VGG-16-BN on scikit-learn's
digits, with checkpoints, and two distilled students), analyses it with
:func:`skvmf.analyze` and writes an HTML report (:func:`skvmf.report.
write_report`). ``skvmf analyze`` runs the same analysis on a user's network
and images. Progress goes to stderr, the summary tables to stdout.

Errors end with one line on stderr, ``skvmf: error: ...``, and exit status 2
for a usage error (an unknown option, a bad value) or 1 for a failure while
running (a missing file, an unknown layer, weights that do not fit the
architecture); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import time
from pathlib import Path

__all__ = ["main"]

PROG = "skvmf"

# torchvision's standard-size architectures (``--arch NAME``); the same names
# with ``skvmf:`` are the small-input variants of skvmf.models.make_classifier
_CNN_ARCHS = ("vgg16", "vgg16_bn", "resnet18", "resnet34", "resnet50", "mobilenet_v2")
# torchvision's vision transformers: 224 px inputs (their positional
# embeddings are built for it); regions are the patch tokens
_TRANSFORMER_ARCHS = ("vit_b_16", "vit_b_32", "swin_t")
_ARCHS = _CNN_ARCHS + _TRANSFORMER_ARCHS
# skvmf's small-input variants (skvmf:NAME): the CNNs and a small ViT
_SKVMF_ARCHS = (*_CNN_ARCHS, "vit")

# --quick: optimisation settings small enough for a smoke run
_QUICK_PARAMS = {
    "aligner_params": {"max_epochs": 2, "weight_steps": 2, "n_candidates": 10},
    "projector_params": {"max_iter": 200},
}

# the demo's study (tests/test_workload.py checks its findings with these)
DEMO_N_PER_CLASS = 12  # test images per digit, half of them held out
DEMO_CHECKPOINTS = 5  # spread over training, first and last included

_MAX_IMAGES = 500  # default cap of `skvmf analyze` (the cost grows as N^2)


class _UsageError(Exception):
    """A bad command line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (no usage block)."""

    def error(self, message):
        raise _UsageError(f"{message} (see '{self.prog} --help')")


_Formatter = argparse.RawDescriptionHelpFormatter


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _error(text) -> None:
    print(f"{PROG}: error: {_one_line(text)}", file=sys.stderr, flush=True)


def _say(args, text) -> None:
    if args.verbose:
        print(f"[{PROG}] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# argument types
# ---------------------------------------------------------------------------
def _tau(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"tau must be a number; got {text!r}"
        ) from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"tau must be in (0, 1); got {text}")
    return value


def _held_out(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"the held-out fraction must be a number; got {text!r}"
        ) from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"the held-out fraction must be in [0, 1); got {text}"
        )
    return value


def _int_type(low: int, expected: str, *, minus_one: bool = False):
    """An argparse type for integers >= ``low`` (and -1 with ``minus_one``)
    whose one-line error says what was ``expected``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {expected}; got {text!r}"
            ) from None
        if value < low and not (minus_one and value == -1):
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text}")
        return value

    return parse


_positive_int = _int_type(1, "a positive integer")
_non_negative_int = _int_type(0, "an integer >= 0")
_jobs = _int_type(1, "a positive number of jobs or -1 (every core)", minus_one=True)


def _width(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"width must be a number; got {text!r}"
        ) from None
    if not 0 < value <= 4:
        raise argparse.ArgumentTypeError(f"width must be in (0, 4]; got {text}")
    return value


def _arch(text: str) -> str:
    small = text.startswith("skvmf:")
    name = text[len("skvmf:") :] if small else text
    if name not in (_SKVMF_ARCHS if small else _ARCHS):
        choices = ", ".join([*_ARCHS, *(f"skvmf:{a}" for a in _SKVMF_ARCHS)])
        raise argparse.ArgumentTypeError(
            f"unknown architecture {text!r}; choose from {choices}"
        )
    return text


def _factory_spec(text: str) -> str:
    module, sep, func = text.rpartition(":")
    if not sep or not module or not func:
        raise argparse.ArgumentTypeError(
            f"expected MODULE:FUNCTION or path/file.py:FUNCTION; got {text!r}"
        )
    return text


def _layers(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"layers must be comma-separated names; got {text!r}"
        )
    return names


# ---------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------
_MAIN_DESCRIPTION = """\
See and count what a convolutional network has learned, layer by layer
(Li, Wang & Zhang, "Visualizing the Emergence of Intermediate Visual Patterns
in DNNs", NeurIPS 2021): knowledge points per layer, their emergence during
training, their change under an adversarial attack and after distillation,
in a self-contained HTML report.
"""

_MAIN_EPILOG = """\
examples:
  skvmf demo                      # the built-in digits study (about 4 min, CPU)
  skvmf demo --quick --out tmp    # a smoke run in well under a minute
  skvmf analyze --arch resnet18 --checkpoint model.pt --data images/
  skvmf analyze --checkpoint run/ckpt_0000132.pt --data images/ --attack

Run 'skvmf COMMAND --help' for the options of each command.
"""

_DEMO_DESCRIPTION = """\
The built-in study, end to end, on this machine alone (nothing is downloaded):

1. train a VGG-16-BN (width 1/8) on scikit-learn's digits at 32 px, saving
   checkpoints during training (<out>/checkpoints);
2. distil a student (the same architecture, freshly initialised) from it on
   the same training images, on its logits (--students adds others, e.g. one
   on conv_43);
3. analyse the teacher on --n-per-class test images of every digit: sample
   projection, knowledge points of the paper's five layers, their emergence
   over --checkpoints checkpoints, a PGD attack, and the students;
4. write the HTML report to --out and print the summary.

It takes about 4 minutes on two CPU cores.
"""

_DEMO_EPILOG = """\
examples:
  skvmf demo
  skvmf demo --out digits-report --n-per-class 20 --jobs 4
  skvmf demo --quick --no-students --no-attack
"""

_ANALYZE_DESCRIPTION = """\
The analysis of 'skvmf demo' on your network and your images.

The network comes from one of:
  --arch NAME --checkpoint FILE
      NAME is torchvision's architecture at its standard size
      (torchvision.models.NAME(weights=None, num_classes=C)): vgg16,
      vgg16_bn, resnet18, resnet34, resnet50, mobilenet_v2, and the vision
      transformers vit_b_16, vit_b_32 and swin_t (images at 224 px; their
      regions are the patch tokens). With the prefix 'skvmf:' (e.g.
      skvmf:vgg16_bn) it is skvmf's small-input variant of the same
      architecture (skvmf.models.make_classifier; --width and --input-size
      apply), or skvmf:vit, the small ViT of the digits recipe
      (skvmf.models.make_vit_classifier; --input-size applies). FILE holds
      the weights: a state_dict, or a dict with a 'model' or 'state_dict'
      entry.
  --model-factory MODULE:FUNCTION [--checkpoint FILE]
      FUNCTION (in an importable module, or a file path.py) returns the
      nn.Module; it is called with num_classes=C when it takes that argument,
      else with no argument. FILE, when given, holds its weights.
  --checkpoint FILE alone
      a checkpoint written by skvmf (skvmf.models.train_classifier), which
      rebuilds its own architecture.
Weights are always read with torch.load(weights_only=True): no code in a
checkpoint runs.

The images are an ImageFolder tree (DIR/<class>/<image>, or
DIR/<split>/<class>/<image> with --split) or CIFAR-10 in its python format
(DIR/cifar-10-batches-py). The classes, in sorted folder order, must be the
network's outputs in the same order (C = number of classes).

The analysis cost grows with the square of the number of images; a few
hundred images (e.g. 20-50 per class) are enough.
"""

_ANALYZE_EPILOG = """\
examples:
  skvmf analyze --arch resnet18 --checkpoint resnet18.pt --data imgs/ \\
      --n-per-class 30 --attack
  skvmf analyze --arch skvmf:vgg16_bn --width 0.25 --input-size 64 \\
      --checkpoint weights.pt --data imgs/ --layers conv_33,conv_43,conv_53
  skvmf analyze --model-factory mypackage.nets:build --checkpoint w.pth \\
      --data cifar/ --data-format cifar10 --layers features.10,features.20
  skvmf analyze --checkpoint runs/ckpt_0000132.pt --data digits/ \\
      --checkpoints-dir runs/
"""


def _build_parser() -> _Parser:
    from . import __version__

    common = _Parser(add_help=False)
    group = common.add_argument_group("run options")
    group.add_argument(
        "--out",
        default="skvmf-report",
        metavar="DIR",
        help="folder of the report: index.html, figures/, data/ "
        "(default: skvmf-report)",
    )
    group.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="where the networks run (default: cpu)",
    )
    group.add_argument(
        "--jobs",
        type=_jobs,
        default=2,
        metavar="N",
        help="networks (model, checkpoints, students) aligned in parallel "
        "processes; -1 uses every core (default: 2)",
    )
    group.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run the alignments on the Dask cluster of this scheduler "
        "(e.g. tcp://10.0.0.5:8786; needs pip install 'skvmf[dask]'); "
        "--jobs is then ignored",
    )
    group.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="torch threads of this process (default: torch's choice, one per "
        "core); 1 is faster on a machine busy with other work",
    )
    group.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        metavar="S",
        help="random seed (default: 0)",
    )
    group.add_argument(
        "--repeats",
        type=_positive_int,
        default=3,
        metavar="R",
        help="repeats of everything random (projection and alignment seeds); "
        "every figure gets a 95 %% interval over the repeats and a bootstrap "
        "over the images (default: 3)",
    )
    group.add_argument(
        "--held-out",
        type=_held_out,
        default=0.5,
        metavar="F",
        help="fraction of the images (per class) held out of every fit and "
        "used to measure; 0 measures on the fit images (default: 0.5)",
    )
    group.add_argument(
        "--quick",
        action="store_true",
        help="smoke-test settings (tiny optimisations): checks the whole "
        "pipeline in well under a minute; not for results",
    )
    group.add_argument(
        "-q",
        "--quiet",
        dest="verbose",
        action="store_const",
        const=0,
        default=1,
        help="no progress bars or step messages",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an error",
    )

    parser = _Parser(
        prog=PROG,
        description=_MAIN_DESCRIPTION,
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="train the built-in digits network and write its report",
        description=_DEMO_DESCRIPTION,
        epilog=_DEMO_EPILOG,
        formatter_class=_Formatter,
    )
    demo.add_argument(
        "--n-per-class",
        type=_positive_int,
        default=None,
        metavar="N",
        help="test images per digit analysed (default 12, 4 with --quick)",
    )
    demo.add_argument(
        "--checkpoints",
        type=_non_negative_int,
        default=None,
        metavar="K",
        help="training checkpoints analysed, spread over training, always the "
        "first and the last; 0 skips the emergence study (default 5, 2 with "
        "--quick)",
    )
    demo.add_argument(
        "--students",
        default="logits",
        metavar="LIST",
        help="students distilled from the teacher, comma-separated: 'logits' "
        "(on its logits) and/or a layer name or alias (on that layer's "
        "features), e.g. 'logits,conv_43' (default: logits)",
    )
    demo.add_argument(
        "--no-students", action="store_true", help="skip the distillation study"
    )
    demo.add_argument(
        "--no-attack", action="store_true", help="skip the adversarial study"
    )
    demo.set_defaults(func=_run_demo)

    analyze = sub.add_parser(
        "analyze",
        parents=[common],
        help="analyse your network on your images",
        description=_ANALYZE_DESCRIPTION,
        epilog=_ANALYZE_EPILOG,
        formatter_class=_Formatter,
    )
    model = analyze.add_argument_group("the network")
    source = model.add_mutually_exclusive_group()
    source.add_argument(
        "--arch",
        type=_arch,
        metavar="NAME",
        help="torchvision architecture (vgg16, vgg16_bn, resnet18, resnet34, "
        "resnet50, mobilenet_v2, and the transformers vit_b_16, vit_b_32, "
        "swin_t at 224 px), or skvmf:NAME for skvmf's small-input variant "
        "(the CNNs, or skvmf:vit)",
    )
    source.add_argument(
        "--model-factory",
        type=_factory_spec,
        metavar="MODULE:FUNCTION",
        help="a function returning the nn.Module (module path or file.py)",
    )
    model.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="the weights (required with --arch; alone: a skvmf checkpoint)",
    )
    model.add_argument(
        "--n-classes",
        type=_positive_int,
        metavar="C",
        help="outputs of the network (default: the number of classes of the data)",
    )
    model.add_argument(
        "--width",
        type=_width,
        default=None,
        metavar="W",
        help="channel multiplier of a skvmf: architecture (default 0.25)",
    )
    model.add_argument(
        "--input-size",
        type=_positive_int,
        default=None,
        metavar="S",
        help="input side a skvmf: architecture is built for (default 32)",
    )
    data = analyze.add_argument_group("the images")
    data.add_argument("--data", required=True, metavar="DIR", help="image folder")
    data.add_argument(
        "--data-format",
        choices=("auto", "imagefolder", "cifar10"),
        default="auto",
        help="auto (default): cifar10 when DIR/cifar-10-batches-py exists, "
        "else imagefolder",
    )
    data.add_argument(
        "--split",
        default=None,
        metavar="NAME",
        help="imagefolder: use DIR/NAME; cifar10: 'train' or 'test' (default test)",
    )
    data.add_argument(
        "--image-size",
        type=_positive_int,
        default=None,
        metavar="S",
        help="side the images are resized to (default: the skvmf model's "
        "input size, 32 for CIFAR-10, else 224)",
    )
    data.add_argument(
        "--normalize",
        choices=("auto", "imagenet", "none"),
        default="auto",
        help="pixel normalisation; auto (default): ImageNet statistics for an "
        "image folder, the training statistics for CIFAR-10",
    )
    count = data.add_mutually_exclusive_group()
    count.add_argument(
        "--n-images",
        type=_positive_int,
        metavar="N",
        help=f"N random images (default: all, at most {_MAX_IMAGES})",
    )
    count.add_argument(
        "--n-per-class",
        type=_positive_int,
        metavar="N",
        help="N random images per class",
    )
    study = analyze.add_argument_group("the analysis")
    study.add_argument(
        "--layers",
        type=_layers,
        default=None,
        metavar="L1,L2,...",
        help="comma-separated module names or the paper's aliases "
        "(conv_33,conv_43,conv_53 for VGG-16; conv_2..conv_5 for ResNets; "
        "layer_4..layer_18 for MobileNet-V2; block_1..block_12 for ViT-B and "
        "Swin-T, stage_1..stage_4 for Swin-T); default the paper's five layers "
        "(evenly spaced blocks for transformers)",
    )
    study.add_argument(
        "--tau",
        type=_tau,
        default=0.4,
        help="knowledge-point threshold, in (0, 1) (default: 0.4)",
    )
    study.add_argument(
        "--checkpoints-dir",
        metavar="DIR",
        help="training checkpoints (*.pt, *.pth) for the emergence study: "
        "skvmf checkpoints, or weights of the same architecture (iteration "
        "from an 'iteration'/'step'/'epoch' entry or the file name)",
    )
    study.add_argument(
        "--attack", action="store_true", help="add the adversarial (PGD) study"
    )
    study.add_argument(
        "--faithfulness",
        action="store_true",
        help="score the knowledge-point maps against Grad-CAM, guided "
        "backpropagation and a random map by deletion/insertion curves on the "
        "held-out images (an optional report section)",
    )
    study.add_argument(
        "--faithfulness-steps",
        type=_positive_int,
        default=16,
        metavar="S",
        help="steps of the deletion/insertion curves (default: 16)",
    )
    study.add_argument(
        "--faithfulness-baseline",
        choices=("blur", "mean"),
        default="blur",
        help="what replaces removed regions: a blurred image (default) or the "
        "image mean",
    )
    analyze.set_defaults(func=_run_analyze)
    return parser


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------
def main(argv=None) -> int:
    """Run the ``skvmf`` command line; return the exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 for a usage error, 1 for an error while running,
        130 when interrupted.

    Examples
    --------
    >>> from skvmf.cli import main
    >>> main(["--version"])  # doctest: +ELLIPSIS
    skvmf ...
    0
    >>> main(["demo", "--n-per-class", "0"])
    2
    """
    parser = _build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except _UsageError as exc:
        _error(exc)
        return 2
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    if args.command is None:
        _error("a command is required: demo or analyze (see 'skvmf --help')")
        return 2
    if unknown:
        _error(
            f"unrecognized arguments: {' '.join(unknown)} "
            f"(see 'skvmf {args.command} --help')"
        )
        return 2
    try:
        with _threads(args.threads):
            return args.func(args)
    except _UsageError as exc:
        if args.debug:
            raise
        _error(exc)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ImportError, RuntimeError, OSError) as exc:
        if args.debug:
            raise
        _error(exc)
        return 1


@contextlib.contextmanager
def _threads(n):
    """torch's intra-op threads set to ``n`` for the command, then restored."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _use_agg() -> None:
    import matplotlib

    matplotlib.use("Agg")  # the command only writes files


def _check_device(name: str) -> None:
    from ._torch_utils import resolve_device

    resolve_device(name)


def _check_out(path) -> None:
    if Path(path).exists() and not Path(path).is_dir():
        raise FileExistsError(f"--out {str(path)!r} exists and is not a folder")


def _print_result(result, index, t0) -> None:
    print(result.summary())
    print()
    print(f"Report: {index}")
    print(f"Total time: {time.perf_counter() - t0:.1f} s")


# ---------------------------------------------------------------------------
# skvmf demo
# ---------------------------------------------------------------------------
def _spread(checkpoints: list, k: int) -> list:
    """``k`` of the (iteration, path) pairs, evenly spread over the iterations
    of training (not over the list, which is denser early), first and last."""
    import numpy as np

    if k == 0 or not checkpoints:
        return []
    if k >= len(checkpoints):
        return list(checkpoints)
    its = np.array([it for it, _ in checkpoints], dtype=float)
    targets = np.linspace(its[0], its[-1], k)
    idx = np.unique([int(np.argmin(np.abs(its - t))) for t in targets])
    return [checkpoints[i] for i in idx]


def _history_rows(history: dict) -> list[dict]:
    keys = list(history)
    n = max((len(v) for v in history.values()), default=0)
    return [{k: history[k][i] for k in keys if i < len(history[k])} for i in range(n)]


def _run_demo(args) -> int:
    t0 = time.perf_counter()
    if args.checkpoints == 1:
        raise _UsageError(
            "--checkpoints must be 0 (no emergence study) or at least 2 (the "
            "first and the last); got 1 (see 'skvmf demo --help')"
        )
    _check_device(args.device)
    _check_out(args.out)
    _use_agg()
    from .analysis import analyze
    from .datasets import load_digits_images, subset_per_class
    from .distillation import distill
    from .models import _DIGITS_MODEL, make_classifier, train_digits_classifier
    from .report import write_report

    # students share the teacher's architecture and recipe
    specs = [] if args.no_students else [p.strip() for p in args.students.split(",")]
    specs = [spec for spec in specs if spec]
    if specs:  # fail before training on an unknown layer
        from ._layers import detect_architecture, resolve_layer

        probe = make_classifier("vgg16", 10, **_DIGITS_MODEL)
        for spec in specs:
            if spec != "logits":
                resolve_layer(
                    spec, probe, detect_architecture(probe), what="student layer"
                )
    quick = args.quick
    n_per_class = args.n_per_class or (4 if quick else DEMO_N_PER_CLASS)
    k = (
        args.checkpoints
        if args.checkpoints is not None
        else (2 if quick else DEMO_CHECKPOINTS)
    )
    out = Path(args.out)
    v = args.verbose
    timings = {}

    _say(args, "training the teacher: VGG-16-BN (width 1/8) on the digits")
    t = time.perf_counter()
    model, training = train_digits_classifier(
        checkpoint_dir=out / "checkpoints",
        random_state=args.seed,
        verbose=v,
        device=args.device,
        **({"epochs": 3} if quick else {}),
    )
    timings["training (s)"] = time.perf_counter() - t
    chosen = _spread(training.checkpoints, k)

    students, student_rows = {}, []
    if specs:
        train = load_digits_images("train")
        test = load_digits_images("test")
        t = time.perf_counter()
        for spec in specs:
            name = f"student_{spec}"
            how = (
                {"method": "logits"}
                if spec == "logits"
                else {"method": "features", "layer": spec}
            )
            _say(args, f"distilling {name} ({how['method']})")
            student = make_classifier(
                "vgg16",
                10,
                **_DIGITS_MODEL,
                random_state=args.seed + 1 + len(students),
            )
            res = distill(
                model,
                student,
                train,
                epochs=1 if quick else 6,
                val_data=test,
                device=args.device,
                random_state=args.seed,
                verbose=v,
                **how,
            )
            student.eval()
            students[name] = student
            student_rows.append(
                {
                    "student": name,
                    "method": how["method"],
                    "layer": how.get("layer", ""),
                    "epochs": len(res.history.get("epoch", [])),
                    "test_accuracy": res.test_accuracy,
                    "train_time": res.train_time,
                }
            )
        timings["distillation (s)"] = time.perf_counter() - t

    _say(
        args,
        f"analysing {n_per_class * 10} test images"
        + (f", {len(chosen)} checkpoints" if chosen else "")
        + (", the attack" if not args.no_attack else "")
        + (f", {len(students)} students" if students else ""),
    )
    data = subset_per_class(
        load_digits_images("test"), n_per_class, random_state=args.seed
    )
    t = time.perf_counter()
    result = analyze(
        model,
        data,
        checkpoints=chosen or None,
        attack=not args.no_attack,
        students=students or None,
        device=args.device,
        n_jobs=args.jobs,
        n_repeats=args.repeats,
        held_out=args.held_out,
        scheduler=args.scheduler,
        random_state=args.seed,
        verbose=v,
        **(_QUICK_PARAMS if quick else {}),
    )
    timings["analysis (s)"] = time.perf_counter() - t
    timings["total before the report (s)"] = time.perf_counter() - t0

    extra = {
        "teacher test accuracy": training.test_accuracy,
        "teacher training steps": training.n_iterations,
        "checkpoints analysed (iterations)": ", ".join(str(i) for i, _ in chosen)
        or "none",
        "quick settings": bool(quick),
        **timings,
        "training history (teacher)": _history_rows(training.history),
    }
    if student_rows:
        extra["students"] = student_rows
    _say(args, f"writing the report to {out}")
    index = write_report(
        result, out, title="skvmf demo: VGG-16-BN on the digits", extra=extra
    )
    _print_result(result, index, t0)
    return 0


# ---------------------------------------------------------------------------
# skvmf analyze
# ---------------------------------------------------------------------------
def _load_factory(spec: str):
    module_name, _, func_name = spec.rpartition(":")
    try:
        if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise FileNotFoundError(f"model factory file {module_name!r} not found")
            stem = re.sub(r"\W", "_", path.stem)
            loader_spec = importlib.util.spec_from_file_location(
                f"_skvmf_factory_{stem}", path
            )
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            # like `python -m`: modules of the current directory are found
            cwd = os.getcwd()
            added = cwd not in sys.path and "" not in sys.path
            if added:
                sys.path.insert(0, cwd)
            try:
                module = importlib.import_module(module_name)
            finally:
                if added and cwd in sys.path:
                    sys.path.remove(cwd)
    except FileNotFoundError:
        raise
    except Exception as exc:  # any error inside the user's module
        raise ImportError(
            f"could not import {module_name!r} for --model-factory: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    func = getattr(module, func_name, None)
    if func is None or not callable(func):
        raise ImportError(f"{module_name!r} has no function {func_name!r}")
    return func


def _call_factory(func, spec: str, n_classes: int):
    from torch import nn

    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        params = {}
    takes = "num_classes" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )
    try:
        model = func(num_classes=n_classes) if takes else func()
    except Exception as exc:
        raise RuntimeError(
            f"the model factory {spec!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"the model factory {spec!r} must return a torch.nn.Module; "
            f"got {type(model).__name__}"
        )
    return model


def _is_skvmf_checkpoint(path: Path) -> dict | None:
    """The skvmf config of a checkpoint file, or None for other files."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"could not read checkpoint {str(path)!r} with "
            f"torch.load(weights_only=True): {exc}"
        ) from exc
    if (
        isinstance(obj, dict)
        and isinstance(obj.get("config"), dict)
        and "arch" in obj["config"]
        and "state_dict" in obj
    ):
        return dict(obj["config"])
    return None


def _builder(args, n_data_classes: int, factory=None):
    """(build() -> a fresh nn.Module, a description) for --arch / --model-factory."""
    from .models import make_classifier, make_vit_classifier

    n_classes = args.n_classes or n_data_classes
    if args.arch:
        if args.arch == "skvmf:vit":
            size = args.input_size or 16

            def build():
                return make_vit_classifier(n_classes, input_size=size)

            return build, f"skvmf:vit ({size} px)"
        if args.arch.startswith("skvmf:"):
            name = args.arch[len("skvmf:") :]
            base = "vgg16" if name == "vgg16_bn" else name
            size = args.input_size or 32
            options = {"width": args.width or 0.25, "input_size": size}
            if base == "vgg16":
                options["batch_norm"] = name == "vgg16_bn"

            def build():
                return make_classifier(base, n_classes, **options)

            return build, f"{args.arch} (width {options['width']:g})"
        import torchvision

        fn = getattr(torchvision.models, args.arch)

        def build():
            return fn(weights=None, num_classes=n_classes)

        return build, f"torchvision {args.arch}"
    return (
        lambda: _call_factory(factory, args.model_factory, n_classes),
        args.model_factory,
    )


def _checkpoint_iteration(obj, path: Path, position: int) -> int:
    if isinstance(obj, dict):
        for key in ("iteration", "step", "global_step", "epoch"):
            value = obj.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    numbers = re.findall(r"\d+", path.stem)
    return int(numbers[-1]) if numbers else position


def _checkpoint_models(args, build) -> list:
    """(iteration, model or path) pairs of --checkpoints-dir."""
    import torch

    from .extraction import load_checkpoint
    from .models import list_checkpoints

    directory = Path(args.checkpoints_dir)
    found = list_checkpoints(directory)
    if found:
        return found
    files = sorted([*directory.glob("*.pt"), *directory.glob("*.pth")])
    if not files:
        raise FileNotFoundError(f"no *.pt or *.pth checkpoints in {str(directory)!r}")
    if build is None:
        raise ValueError(
            f"the checkpoints in {str(directory)!r} are not skvmf checkpoints; "
            "give --arch or --model-factory so their architecture is known"
        )
    pairs = []
    for k, path in enumerate(files):
        obj = torch.load(path, map_location="cpu", weights_only=True)
        model = load_checkpoint(build(), path)
        pairs.append((_checkpoint_iteration(obj, path, k), model.eval()))
    iterations = [it for it, _ in pairs]
    if len(set(iterations)) != len(iterations):
        raise ValueError(
            f"two checkpoints of {str(directory)!r} share an iteration number "
            f"({sorted(iterations)}); name them by step, e.g. step_100.pt"
        )
    return sorted(pairs, key=lambda pair: pair[0])


def _load_data(args, default_size):
    from .datasets import IMAGENET_MEAN, IMAGENET_STD, load_cifar10, load_image_folder

    root = Path(args.data).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    fmt = args.data_format
    if fmt == "auto":
        fmt = "cifar10" if (root / "cifar-10-batches-py").is_dir() else "imagefolder"
    if fmt == "cifar10":
        normalize = {
            "auto": True,
            "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
            "none": False,
        }
        split = args.split or "test"
        if split not in ("train", "test"):
            raise _UsageError(
                f"--split must be 'train' or 'test' for CIFAR-10; got {split!r}"
            )
        size = args.image_size or default_size or 32
        return (
            load_cifar10(
                root, split=split, size=size, normalize=normalize[args.normalize]
            ),
            f"CIFAR-10 {split} ({root})",
        )
    if args.split:
        root = root / args.split
        if not root.is_dir():
            raise FileNotFoundError(f"split folder {str(root)!r} does not exist")
    size = args.image_size or default_size or 224
    normalize = {"auto": "imagenet", "imagenet": "imagenet", "none": None}
    return (
        load_image_folder(root, size=size, normalize=normalize[args.normalize]),
        f"image folder {root}",
    )


def _subset(args, dataset):
    import numpy as np
    from torch.utils.data import Subset

    from .datasets import ImageArrayDataset, _targets_of, subset_per_class

    if args.n_per_class:
        return subset_per_class(dataset, args.n_per_class, random_state=args.seed)
    n = args.n_images
    if n is None:
        if len(dataset) <= _MAX_IMAGES:
            return dataset
        n = _MAX_IMAGES
        _say(args, f"{len(dataset)} images: analysing a random {n} (see --n-images)")
    if n > len(dataset):
        raise ValueError(
            f"--n-images {n} exceeds the {len(dataset)} images of the data"
        )
    idx = np.sort(
        np.random.default_rng(args.seed).choice(len(dataset), n, replace=False)
    )
    if isinstance(dataset, ImageArrayDataset):
        return dataset.subset(idx)
    sub = Subset(dataset, idx.tolist())
    sub.targets = _targets_of(dataset)[idx]
    for name in ("classes", "mean", "std"):
        if hasattr(dataset, name):
            setattr(sub, name, getattr(dataset, name))
    return sub


def _check_model(model, dataset, layers, n_classes_data):
    """Fail fast: output count, input size and layer names, before any work."""
    import torch

    from ._layers import detect_architecture, module_names, resolve_layer

    image = torch.as_tensor(dataset[0][0]).float()[None]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.eval()
    try:
        with torch.no_grad():
            out = model(image.to(device))
    except RuntimeError as exc:
        raise RuntimeError(
            f"the network cannot process the images ({tuple(image.shape[1:])}): "
            f"{_one_line(exc)}; see --image-size / --input-size"
        ) from exc
    if out.ndim != 2 or out.shape[1] != n_classes_data:
        n_out = out.shape[1] if out.ndim == 2 else f"{tuple(out.shape[1:])}-shaped"
        raise ValueError(
            f"the network has {n_out} outputs but the data has "
            f"{n_classes_data} classes ({', '.join(dataset.classes[:10])}"
            f"{', ...' if n_classes_data > 10 else ''}); the outputs must be the "
            "data's classes in order"
        )
    arch = detect_architecture(model)
    if layers:
        names = module_names(model)
        for name in layers:
            resolve_layer(name, model, arch, names=names)
    elif arch is None:
        raise ValueError(
            f"the architecture of {type(model).__name__} is not one the paper "
            "analysed (VGG, ResNet, MobileNet-V2); name the layers with --layers "
            f"(module names such as {module_names(model)[:6]})"
        )


def _run_analyze(args) -> int:
    t0 = time.perf_counter()
    if args.arch and not args.checkpoint:
        raise _UsageError("--arch needs --checkpoint FILE with the weights")
    if not args.arch and not args.model_factory and not args.checkpoint:
        raise _UsageError(
            "give the network: --arch NAME --checkpoint FILE, --model-factory "
            "MODULE:FUNCTION, or a skvmf --checkpoint FILE"
        )
    if (args.width or args.input_size) and not (
        args.arch and args.arch.startswith("skvmf:")
    ):
        raise _UsageError("--width and --input-size apply to skvmf:NAME architectures")
    if args.width and args.arch == "skvmf:vit":
        raise _UsageError("--width applies to skvmf's CNNs, not to skvmf:vit")
    checkpoint = Path(args.checkpoint).expanduser() if args.checkpoint else None
    if checkpoint is not None and not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint file {str(checkpoint)!r} does not exist")
    if args.checkpoints_dir and not Path(args.checkpoints_dir).is_dir():
        raise FileNotFoundError(
            f"checkpoints folder {str(args.checkpoints_dir)!r} does not exist"
        )
    if not Path(args.data).expanduser().exists():
        raise FileNotFoundError(f"data folder {str(args.data)!r} does not exist")
    _check_device(args.device)
    _check_out(args.out)
    _use_agg()

    from .analysis import analyze
    from .extraction import load_checkpoint as load_weights
    from .models import load_checkpoint as load_skvmf
    from .models import make_classifier, make_vit_classifier
    from .report import write_report

    size, skvmf_config = None, None
    if not args.arch and not args.model_factory:
        skvmf_config = _is_skvmf_checkpoint(checkpoint)
        if skvmf_config is None:
            raise ValueError(
                f"{str(checkpoint)!r} is not a skvmf checkpoint (no 'config' and "
                "'state_dict' entries); for plain weights give --arch or "
                "--model-factory"
            )
        size = skvmf_config.get("input_size")
    elif args.arch == "skvmf:vit":
        size = args.input_size or 16
    elif args.arch and args.arch.startswith("skvmf:"):
        size = args.input_size or 32
    elif args.arch in _TRANSFORMER_ARCHS:
        size = 224  # torchvision's transformers take 224 px inputs only

    factory = _load_factory(args.model_factory) if args.model_factory else None
    dataset, data_description = _load_data(args, size)
    n_classes = len(dataset.classes)

    if skvmf_config is not None:
        model = load_skvmf(checkpoint)
        config = dict(skvmf_config)
        description = f"skvmf {config['arch']} from {checkpoint.name}"

        def build():
            if config.get("arch") == "vit":
                return make_vit_classifier(
                    **{k: v for k, v in config.items() if k != "arch"}
                )
            return make_classifier(**config)

        if args.n_classes and args.n_classes != config.get("n_classes"):
            raise ValueError(
                f"--n-classes {args.n_classes} contradicts the checkpoint's "
                f"{config.get('n_classes')} classes"
            )
    else:
        build, description = _builder(args, n_classes, factory)
        model = build()
        if checkpoint is not None:
            model = load_weights(model, checkpoint)
    model.eval()
    _check_model(model, dataset, args.layers, n_classes)

    data = _subset(args, dataset)
    checkpoints = _checkpoint_models(args, build) if args.checkpoints_dir else None

    _say(args, f"analysing {len(data)} images of {n_classes} classes")
    t = time.perf_counter()
    result = analyze(
        model,
        data,
        layers=args.layers,
        checkpoints=checkpoints or None,
        attack=bool(args.attack),
        faithfulness=(
            {
                "steps": args.faithfulness_steps,
                "baseline": args.faithfulness_baseline,
            }
            if args.faithfulness
            else False
        ),
        tau=args.tau,
        device=args.device,
        n_jobs=args.jobs,
        n_repeats=args.repeats,
        held_out=args.held_out,
        scheduler=args.scheduler,
        random_state=args.seed,
        verbose=args.verbose,
        **(_QUICK_PARAMS if args.quick else {}),
    )
    extra = {
        "network": description,
        "weights": str(checkpoint) if checkpoint else "from the factory",
        "images": data_description,
        "quick settings": bool(args.quick),
        "analysis (s)": time.perf_counter() - t,
        "total before the report (s)": time.perf_counter() - t0,
    }
    _say(args, f"writing the report to {args.out}")
    index = write_report(
        result, args.out, title=f"skvmf analyze: {description}", extra=extra
    )
    _print_result(result, index, t0)
    return 0
