"""The ``skvmf`` command: ``skvmf demo`` and ``skvmf analyze``.

``skvmf demo`` trains the built-in workload (a VGG-16-BN on scikit-learn's
digits, with checkpoints, and two distilled students), analyses it with
:func:`skvmf.analyze` and writes an HTML report (:func:`skvmf.report.
write_report`). ``skvmf analyze`` runs the same analysis on a user's network
and images. Progress goes to stderr, the summary tables to stdout.

Errors end with one line on stderr, ``skvmf: error: ...``, and exit status 2
for a usage error (an unknown option, a bad value, an ``--out`` folder that
holds other files than an earlier skvmf report, without ``--force``) or 1 for
a failure while running (a missing, unreadable, corrupt or crafted file,
named in the message; an unwritable ``--out``; an unknown layer; weights that
do not fit the architecture); ``--debug`` shows the traceback instead. Every
check that needs no computation runs before the first one that does.

The network, its checkpoints and the images are resolved by
:mod:`skvmf.sources`, which :func:`skvmf.analyze` shares.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

# both without torch, so that --help and usage errors stay fast
from ._torch import arch_names
from ._torch.checkpoints import FILE_NAME as _CHECKPOINT_NAME

__all__ = ["main"]

PROG = "skvmf"

# torchvision's standard-size architectures (``--arch NAME``) and skvmf's
# small-input variants (``--arch skvmf:NAME``): skvmf.sources.ARCH_NAMES
_ARCH_NAMES = arch_names.ARCH_NAMES

# --quick: optimisation settings small enough for a smoke run
_QUICK_PARAMS = {
    "aligner_params": {"max_epochs": 2, "weight_steps": 2, "n_candidates": 10},
    "projector_params": {"max_iter": 200},
}

# the demo's study (tests/test_workload.py checks its findings with these)
DEMO_N_PER_CLASS = 12  # test images per digit, half of them held out
DEMO_CHECKPOINTS = 5  # at equal steps of the training loss, first and last included
# How the demo spaces its checkpoints: a rule on the training-loss curve alone,
# fixed before any finding was looked at (issue 19).
DEMO_SPACING = (
    "K checkpoints at K equal steps of the smoothed training loss (the "
    "per-step mini-batch loss, averaged over 2 % of the run on each side, "
    "weighted by batch size, made non-increasing by its running minimum), "
    "from the untrained network (iteration 0) to the end of training: each "
    "analysed stretch of training lowers the loss by the same amount "
    "(skvmf.training.loss_checkpoint_iterations)"
)

_MAX_IMAGES = 500  # default cap of `skvmf analyze` (the cost grows as N^2)
_DIGITS_TEST_RAREST = 43  # test images of the rarest digit (scikit-learn's split)
# `skvmf demo --images N --threads 2`: measured wall time on the project's
# 2-core machine (doc/results_digits.md, benchmarks/study_images.py)
_IMAGES_TIMES = (
    "the full demo on two CPU cores took 5.6 min at 60, 12.5 min at 120 "
    "and 20 min for all (223); most of it is aligning, which grows with "
    "the number of images"
)


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


def _budget(what: str):
    """An argparse type for a finite number >= 0 (an attack's budget)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} must be a number; got {text!r}"
            ) from None
        if not (math.isfinite(value) and value >= 0):
            raise argparse.ArgumentTypeError(
                f"{what} must be a finite number >= 0; got {text}"
            )
        return value

    return parse


def _images(text: str):
    """``--images``: a positive multiple of 10 (one tenth per digit) or "all"."""
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive multiple of 10 or 'all'; got {text!r}"
        ) from None
    if value < 10 or value % 10:
        raise argparse.ArgumentTypeError(
            f"expected a positive multiple of 10 (N/10 per digit) or 'all'; got {text}"
        )
    return value


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
    if text not in _ARCH_NAMES:
        choices = ", ".join(_ARCH_NAMES)
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
3. analyse the teacher on --images held-out test images (or --n-per-class
   test images of every digit): sample projection, knowledge points of the
   paper's five layers, their emergence over --checkpoints checkpoints at
   equal steps of the training loss, a PGD attack, and the students;
4. write the HTML report to --out and print the summary.

It takes 5 to 6 minutes on two CPU cores (20 minutes with --images all).
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
      architecture (skvmf.architectures.make_classifier; --width and
      --input-size apply), or skvmf:vit, the small ViT of the digits recipe
      (skvmf.architectures.make_vit_classifier; --input-size applies). FILE
      holds the weights: a state_dict, or a dict with a 'model' or
      'state_dict' entry.
  --model-factory MODULE:FUNCTION [--checkpoint FILE]
      FUNCTION (in an importable module, or a file path.py) returns the
      nn.Module; it is called with num_classes=C when it takes that argument,
      else with no argument. FILE, when given, holds its weights.
  --checkpoint FILE alone
      a checkpoint written by skvmf (skvmf.training.train_classifier), which
      rebuilds its own architecture.
Weights are always read with torch.load(weights_only=True), and CIFAR-10
batches by an unpickler that builds only numpy arrays: no code in a file runs.
A file that cannot be read is named in a one-line error.

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


# ---------------------------------------------------------------------------
# the parser: one function per option group
# ---------------------------------------------------------------------------
def _run_options() -> _Parser:
    """The options both commands share: where the report goes and how to run."""
    common = _Parser(add_help=False)
    group = common.add_argument_group("run options")
    group.add_argument(
        "--out",
        default="skvmf-report",
        metavar="DIR",
        help="folder of the report: index.html, figures/, data/ (default: "
        "skvmf-report). It must be new, empty or an earlier skvmf report, "
        "which is overwritten; checked, with a test write, before any work",
    )
    group.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty --out that is not an earlier skvmf report; "
        "only the files skvmf writes (index.html, figures/*.png, data/*.csv "
        "and *.json of its own names, checkpoints/) are replaced",
    )
    group.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="where the networks run (default: cpu); with cuda the analysis "
        "also runs on the GPU: features, projection, alignment and counting "
        "stay there as tensors (scikit-learn's array_api_dispatch) and only "
        "the tables and figures come back (skvmf.analyze(device=...))",
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
    _repeat_options(group)
    return common


def _repeat_options(group) -> None:
    """Seeds, repeats, held-out images, smoke settings, verbosity, debugging."""
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


def _demo_parser(sub, common: _Parser) -> None:
    """``skvmf demo`` and its options."""
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
        "--images",
        type=_images,
        default=None,
        metavar="N",
        help="held-out test images analysed (N/10 per digit, and as many more "
        "to fit on with --held-out 0.5), or 'all': every test digit (223 "
        "held out of 450); instead of --n-per-class (default 60, 20 with "
        "--quick). Time measured: " + _IMAGES_TIMES,
    )
    demo.add_argument(
        "--checkpoints",
        type=_non_negative_int,
        default=None,
        metavar="K",
        help="training checkpoints analysed, at K equal steps of the smoothed "
        "training loss from the untrained network to the end of training "
        "(skvmf.training.loss_checkpoint_iterations); 0 skips the emergence "
        "study (default 5, 2 with --quick)",
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
    _attack_budget_options(demo)
    demo.set_defaults(func=_run_demo)


def _attack_budget_options(parser) -> None:
    """The PGD attack's budget, for ``skvmf demo`` and ``skvmf analyze``."""
    parser.add_argument(
        "--attack-epsilon",
        type=_budget("the attack's epsilon"),
        default=None,
        metavar="E",
        help="L-inf radius of the PGD attack, in pixel units (images in [0, 1] "
        "before normalisation) (default: 0.2)",
    )
    parser.add_argument(
        "--attack-steps",
        type=_positive_int,
        default=None,
        metavar="S",
        help="gradient steps of the PGD attack (default: 10)",
    )
    parser.add_argument(
        "--attack-step-size",
        type=_budget("the attack's step size"),
        default=None,
        metavar="A",
        help="step of each PGD iteration, in pixel units (default: 2.5 * "
        "epsilon / steps)",
    )


def _attack_option(args, enabled: bool):
    """``analyze``'s ``attack``: False, True (the default budget) or a dict
    of the budget given on the command line."""
    given = {
        key: value
        for key, value in (
            ("epsilon", args.attack_epsilon),
            ("n_steps", args.attack_steps),
            ("step_size", args.attack_step_size),
        )
        if value is not None
    }
    if not enabled:
        if given:
            flag = "--no-attack" if args.command == "demo" else "no --attack"
            raise _UsageError(
                "--attack-epsilon, --attack-steps and --attack-step-size set the "
                f"attack's budget, but the attack does not run ({flag})"
            )
        return False
    return given or True


def _network_options(analyze: _Parser) -> None:
    """``skvmf analyze``: where the network comes from."""
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


def _data_options(analyze: _Parser) -> None:
    """``skvmf analyze``: the images, and how many of them."""
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


def _study_options(analyze: _Parser) -> None:
    """``skvmf analyze``: layers, threshold and the optional studies."""
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
    _attack_budget_options(study)
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


def _analyze_parser(sub, common: _Parser) -> None:
    """``skvmf analyze`` and its three option groups."""
    analyze = sub.add_parser(
        "analyze",
        parents=[common],
        help="analyse your network on your images",
        description=_ANALYZE_DESCRIPTION,
        epilog=_ANALYZE_EPILOG,
        formatter_class=_Formatter,
    )
    _network_options(analyze)
    _data_options(analyze)
    _study_options(analyze)
    analyze.set_defaults(func=_run_analyze)


def _build_parser() -> _Parser:
    """The ``skvmf`` parser with its two commands."""
    from . import __version__

    parser = _Parser(
        prog=PROG,
        description=_MAIN_DESCRIPTION,
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    common = _run_options()
    _demo_parser(sub, common)
    _analyze_parser(sub, common)
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
    return _run_command(args)


def _run_command(args) -> int:
    """Run the chosen command; an error is one line on stderr and a status."""
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
    from ._torch.devices import resolve_device

    resolve_device(name)


# ---------------------------------------------------------------------------
# the output folder: nothing of the user's lost, no work wasted
# ---------------------------------------------------------------------------
_REPORT_KEYS = {"settings", "classes", "layers", "tables"}


def _is_report(folder: Path) -> bool:
    """An earlier skvmf report: index.html and data/results.json with the
    keys :meth:`skvmf.AnalysisResult.to_dict` writes."""
    results = folder / "data" / "results.json"
    if not (folder / "index.html").is_file() or not results.is_file():
        return False
    try:
        content = json.loads(results.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and set(content) >= _REPORT_KEYS


def _is_unfinished_demo(folder: Path, entries: list[Path]) -> bool:
    """What an interrupted ``skvmf demo`` leaves: checkpoints/ of its own files."""
    checkpoints = folder / "checkpoints"
    if [p.name for p in entries] != ["checkpoints"] or not checkpoints.is_dir():
        return False
    return all(
        p.is_file() and _CHECKPOINT_NAME.fullmatch(p.name)
        for p in checkpoints.iterdir()
    )


def _check_out(args) -> Path:
    """``--out`` usable, before any work: a folder that is new, empty, an
    earlier skvmf report (or ``--force``), and that we can write in."""
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise _UsageError(f"--out {str(out)!r} exists and is not a folder")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if entries and not (
        args.force or _is_report(out) or _is_unfinished_demo(out, entries)
    ):
        shown = ", ".join(p.name for p in entries[:5])
        more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
        raise _UsageError(
            f"--out {str(out)!r} is not empty and holds no earlier skvmf report "
            f"({shown}{more}); give a new or empty folder, or --force to write "
            "into it (only the files skvmf writes are replaced)"
        )
    _check_writable(out)
    return out


def _check_writable(out: Path) -> None:
    """Create ``out`` and write and remove a probe file there."""
    probe = out / f".skvmf-write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OSError(f"cannot write in --out {str(out)!r}: {reason}") from exc


def _print_result(result, index, t0) -> None:
    print(result.summary())
    print()
    print(f"Report: {index}")
    print(f"Total time: {time.perf_counter() - t0:.1f} s")


# ---------------------------------------------------------------------------
# skvmf demo: check, train, distil, analyse, report
# ---------------------------------------------------------------------------
def _history_rows(history: dict) -> list[dict]:
    keys = list(history)
    n = max((len(v) for v in history.values()), default=0)
    return [{k: history[k][i] for k in keys if i < len(history[k])} for i in range(n)]


def _student_specs(args) -> list[str]:
    """The students of ``--students``, each layer checked before training."""
    specs = [] if args.no_students else [p.strip() for p in args.students.split(",")]
    specs = [spec for spec in specs if spec]
    if any(spec != "logits" for spec in specs):
        from ._torch.layers import detect_architecture, resolve_layer
        from .architectures import make_digits_classifier

        probe = make_digits_classifier("vgg16", 10)
        arch = detect_architecture(probe)
        for spec in specs:
            if spec != "logits":
                resolve_layer(spec, probe, arch, what="student layer")
    return specs


def _train_teacher(args, out: Path, k: int):
    """The digits recipe's VGG-16-BN, with ``k`` checkpoints at equal steps
    of the training loss in ``out/checkpoints`` (``DEMO_SPACING``; only the
    final network when ``k`` is 0)."""
    from .training import train_digits_classifier

    _say(args, "training the teacher: VGG-16-BN (width 1/8) on the digits")
    return train_digits_classifier(
        checkpoint_dir=out / "checkpoints",
        checkpoint_iterations="loss" if k else None,
        n_checkpoints=max(k, 2),
        random_state=args.seed,
        verbose=args.verbose,
        device=args.device,
        **({"epochs": 3} if args.quick else {}),
    )


def _distil_students(args, teacher, specs: list[str]) -> tuple[dict, list[dict]]:
    """Students of the teacher's architecture, freshly initialised and
    distilled on its logits or a layer's features: (students, table rows)."""
    from .architectures import make_digits_classifier
    from .datasets import load_digits_images
    from .distillation import distill

    train, test = load_digits_images("train"), load_digits_images("test")
    students, rows = {}, []
    for spec in specs:
        name = f"student_{spec}"
        how = {"method": "logits"} if spec == "logits" else {"method": "features"}
        if spec != "logits":
            how["layer"] = spec
        _say(args, f"distilling {name} ({how['method']})")
        student = make_digits_classifier(
            "vgg16", 10, random_state=args.seed + 1 + len(students)
        )
        res = distill(
            teacher,
            student,
            train,
            epochs=1 if args.quick else 6,
            val_data=test,
            device=args.device,
            random_state=args.seed,
            verbose=args.verbose,
            **how,
        )
        students[name] = student.eval()
        rows.append(
            {
                "student": name,
                "method": how["method"],
                "layer": how.get("layer", ""),
                "epochs": len(res.history.get("epoch", [])),
                "test_accuracy": res.test_accuracy,
                "train_time": res.train_time,
            }
        )
    return students, rows


def _analysis_options(args) -> dict:
    """The :func:`skvmf.analyze` options both commands take from the run options."""
    return {
        "device": args.device,
        "n_jobs": args.jobs,
        "n_repeats": args.repeats,
        "held_out": args.held_out,
        "scheduler": args.scheduler,
        "random_state": args.seed,
        "verbose": args.verbose,
        **(_QUICK_PARAMS if args.quick else {}),
    }


def _held_out_count(n: int, fraction: float) -> int:
    """Images of a class of ``n`` that :func:`skvmf.analyze` holds out."""
    if fraction == 0:
        return n  # measured on the fit images
    return min(max(int(round(fraction * n)), 1), n - 1) if n >= 2 else 0


def _demo_per_class(args):
    """Test images per digit of the demo, or None for every test digit:
    ``--images N`` holds out N/10 per digit, ``--n-per-class`` or the
    default otherwise. A usage error when the digits have too few."""
    if args.images is not None and args.n_per_class is not None:
        raise _UsageError("give --images or --n-per-class, not both")
    if args.images is None:
        return args.n_per_class or (4 if args.quick else DEMO_N_PER_CLASS)
    if args.images == "all":
        return None
    held = args.images // 10
    # the fewest images per digit that hold out exactly N/10 of each
    per_class = held
    if args.held_out > 0:
        # N/10 / held_out per digit (2N/10 at 0.5: as many to fit as held
        # out), else the fewest that hold out N/10 (the count grows with it)
        per_class = max(held + 1, round(held / args.held_out))
        if _held_out_count(per_class, args.held_out) != held:
            per_class = max(held + 1, int(held / args.held_out) - 1)
            while _held_out_count(per_class, args.held_out) < held:
                per_class += 1
    if per_class > _DIGITS_TEST_RAREST:
        raise _UsageError(
            f"--images {args.images} needs {per_class} test images per digit "
            f"(--held-out {args.held_out}); the digits' test split has "
            f"{_DIGITS_TEST_RAREST} of its rarest digit: give a smaller N, "
            "a larger --held-out or --images all"
        )
    return per_class


def _analyze_demo(args, teacher, chosen, students):
    """The analysis of ``--images`` / ``--n-per-class`` test images of
    every digit."""
    from .analysis import analyze
    from .datasets import load_digits_images, subset_per_class

    per_class = _demo_per_class(args)
    data = load_digits_images("test")
    if per_class is not None:
        data = subset_per_class(data, per_class, random_state=args.seed)
    _say(
        args,
        f"analysing {len(data)} test images"
        + (f", {len(chosen)} checkpoints" if chosen else "")
        + (", the attack" if not args.no_attack else "")
        + (f", {len(students)} students" if students else ""),
    )
    return analyze(
        teacher,
        data,
        checkpoints=chosen or None,
        attack=_attack_option(args, not args.no_attack),
        students=students or None,
        **_analysis_options(args),
    )


def _spacing_rows(training, chosen) -> dict:
    """The demo's checkpoint spacing rule and the smoothed training loss at
    each analysed checkpoint (when the run recorded its per-step loss)."""
    if not chosen:
        return {}
    rows = {"checkpoint spacing": DEMO_SPACING}
    if training.step_losses:
        from .training import smoothed_training_loss

        curve = smoothed_training_loss(
            training.step_losses, batch_sizes=training.step_batch_sizes
        )
        rows["smoothed training loss at the checkpoints"] = ", ".join(
            f"{it}: {curve[it]:.3f}" for it, _ in chosen
        )
    return rows


def _run_demo(args) -> int:
    """``skvmf demo``: every check first, then train, distil, analyse, report."""
    t0 = time.perf_counter()
    if args.checkpoints == 1:
        raise _UsageError(
            "--checkpoints must be 0 (no emergence study) or at least 2 (the "
            "first and the last); got 1 (see 'skvmf demo --help')"
        )
    _attack_option(args, not args.no_attack)  # a usage error before any work
    _demo_per_class(args)
    _check_device(args.device)
    out = _check_out(args)
    _use_agg()
    specs = _student_specs(args)
    k = args.checkpoints
    if k is None:
        k = 2 if args.quick else DEMO_CHECKPOINTS
    timings = {}

    t = time.perf_counter()
    teacher, training = _train_teacher(args, out, k)
    timings["training (s)"] = time.perf_counter() - t
    chosen = list(training.checkpoints) if k else []
    students, student_rows = {}, []
    if specs:
        t = time.perf_counter()
        students, student_rows = _distil_students(args, teacher, specs)
        timings["distillation (s)"] = time.perf_counter() - t
    t = time.perf_counter()
    result = _analyze_demo(args, teacher, chosen, students)
    timings["analysis (s)"] = time.perf_counter() - t
    timings["total before the report (s)"] = time.perf_counter() - t0

    extra = {
        "teacher test accuracy": training.test_accuracy,
        "teacher training steps": training.n_iterations,
        "checkpoints analysed (iterations)": ", ".join(str(i) for i, _ in chosen)
        or "none",
        **_spacing_rows(training, chosen),
        "quick settings": bool(args.quick),
        **timings,
        "training history (teacher)": _history_rows(training.history),
    }
    if student_rows:
        extra["students"] = student_rows
    _write(args, result, out, "skvmf demo: VGG-16-BN on the digits", extra, t0)
    return 0


def _write(args, result, out: Path, title: str, extra: dict, t0: float) -> None:
    """The report in ``out``, then the summary on stdout."""
    from .report import write_report

    _say(args, f"writing the report to {out}")
    index = write_report(result, out, title=title, extra=extra)
    _print_result(result, index, t0)


# ---------------------------------------------------------------------------
# skvmf analyze: check, resolve the network, load the images, analyse, report
# ---------------------------------------------------------------------------
def _check_analyze_args(args) -> None:
    """Usage errors and missing files, before anything is read."""
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
    _attack_option(args, bool(args.attack))
    checkpoint = Path(args.checkpoint).expanduser() if args.checkpoint else None
    if checkpoint is not None and not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint file {str(checkpoint)!r} does not exist")
    if args.checkpoints_dir and not Path(args.checkpoints_dir).expanduser().is_dir():
        raise FileNotFoundError(
            f"checkpoints folder {str(args.checkpoints_dir)!r} does not exist"
        )
    data = Path(args.data).expanduser()
    if not data.exists():
        raise FileNotFoundError(f"data folder {str(data)!r} does not exist")
    cifar = args.data_format == "cifar10" or (
        args.data_format == "auto" and (data / "cifar-10-batches-py").is_dir()
    )
    if cifar and args.split not in (None, "train", "test"):
        raise _UsageError(
            f"--split must be 'train' or 'test' for CIFAR-10; got {args.split!r}"
        )


def _load_images(args, source):
    """The images at the network's input size: (dataset, its description)."""
    from .sources import detect_data_format, load_data

    fmt = args.data_format
    if fmt == "auto":
        fmt = detect_data_format(args.data)
    dataset = load_data(
        args.data,
        data_format=fmt,
        split=args.split,
        size=args.image_size or source.input_size,
        normalize=args.normalize,
    )
    root = Path(args.data).expanduser()
    if fmt == "cifar10":
        return dataset, f"CIFAR-10 {args.split or 'test'} ({root})"
    return dataset, f"image folder {root / args.split if args.split else root}"


def _load_network(args, source, dataset):
    """The network and its training checkpoints, checked against the images
    (outputs, input size, layer names) before any work."""
    from .sources import check_model, load_checkpoints

    n_classes = args.n_classes
    if source.config is None:
        n_classes = n_classes or len(dataset.classes)
    model = source.load(n_classes)
    check_model(model, dataset, args.layers)
    checkpoints = None
    if args.checkpoints_dir:

        def build():
            return source.build(n_classes)

        checkpoints = load_checkpoints(args.checkpoints_dir, build=build)
    return model, checkpoints


def _select(args, dataset):
    """``--n-images`` or ``--n-per-class`` images; at most 500 by default."""
    from .sources import select_images

    n_images = args.n_images
    if n_images is None and args.n_per_class is None and len(dataset) > _MAX_IMAGES:
        n_images = _MAX_IMAGES
        _say(
            args,
            f"{len(dataset)} images: analysing a random {n_images} (see --n-images)",
        )
    return select_images(
        dataset,
        n_images=n_images,
        n_per_class=args.n_per_class,
        random_state=args.seed,
    )


def _analyze_images(args, model, data, checkpoints):
    """:func:`skvmf.analyze` with the command's studies and settings."""
    from .analysis import analyze

    faithfulness = False
    if args.faithfulness:
        faithfulness = {
            "steps": args.faithfulness_steps,
            "baseline": args.faithfulness_baseline,
        }
    return analyze(
        model,
        data,
        layers=args.layers,
        checkpoints=checkpoints or None,
        attack=_attack_option(args, bool(args.attack)),
        faithfulness=faithfulness,
        tau=args.tau,
        **_analysis_options(args),
    )


def _run_analyze(args) -> int:
    """``skvmf analyze``: every check first, then load, analyse, report."""
    from .sources import resolve_model

    t0 = time.perf_counter()
    _check_analyze_args(args)
    _check_device(args.device)
    out = _check_out(args)
    _use_agg()
    source = resolve_model(
        args.arch,
        checkpoint=args.checkpoint,
        model_factory=args.model_factory,
        width=args.width,
        input_size=args.input_size,
    )
    dataset, data_description = _load_images(args, source)
    model, checkpoints = _load_network(args, source, dataset)
    data = _select(args, dataset)

    _say(args, f"analysing {len(data)} images of {len(dataset.classes)} classes")
    t = time.perf_counter()
    result = _analyze_images(args, model, data, checkpoints)
    extra = {
        "network": source.description,
        "weights": args.checkpoint or "from the factory",
        "images": data_description,
        "quick settings": bool(args.quick),
        "analysis (s)": time.perf_counter() - t,
        "total before the report (s)": time.perf_counter() - t0,
    }
    title = f"skvmf analyze: {source.description}"
    _write(args, result, out, title, extra, t0)
    return 0
