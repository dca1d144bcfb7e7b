"""The skvmf checkpoint: written, read, recognised and rebuilt here only.

A checkpoint written by skvmf (:class:`skvmf.training.Trainer`) is a plain
dict saved with ``torch.save`` as ``checkpoint_iter<7-digit step>.pt``:

- ``"state_dict"``: the weights, ``str -> tensor`` on the CPU;
- ``"iteration"``: optimizer steps taken (0: untrained);
- ``"config"``: the build configuration (``model.skvmf_config``: plain types
  with an ``"arch"``), from which :func:`build` makes the network again with
  :mod:`skvmf.architectures`, so that no pickled code is ever needed;
- ``"accuracy"``: the validation accuracy then, or None.

Any other weights file (a bare state dict, or a dict with a ``"model"`` or
``"state_dict"`` entry) holds weights only: :func:`weights_of` finds them and
:func:`load_weights` puts them into a network the caller built. Files are
read with ``torch.load(weights_only=True)`` (:func:`.files.read_torch`);
every problem is one ``ValueError`` naming the file, and weights that do not
fit a network always get the one message of :func:`load_weights`.

torch is imported on first use, so that the command line can name these
files without it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from .files import file_error, read_torch

#: The entries of a checkpoint written by skvmf.
KEYS = ("state_dict", "iteration", "config", "accuracy")
#: How error messages call a checkpoint (``checkpoint file '<path>' ...``).
WHAT = "checkpoint file"
#: The files of a checkpoints folder.
SUFFIXES = ("*.pt", "*.pth")
#: The names :func:`write` gives its files.
FILE_NAME = re.compile(r"checkpoint_iter\d+\.pt")
_SHOWN = 3  # differing keys quoted in a mismatch message, per kind


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------
def model_config(model) -> dict:
    """A copy of ``model.skvmf_config``, which a checkpoint needs to rebuild
    the network; ValueError when the model was not built by skvmf."""
    config = getattr(model, "skvmf_config", None)
    if not isinstance(config, dict):
        raise ValueError(
            "model has no skvmf_config; build it with "
            "skvmf.architectures.make_classifier so that checkpoints can rebuild it"
        )
    return dict(config)


def write(model, directory, iteration: int, accuracy) -> Path:
    """Save ``model`` as the checkpoint of step ``iteration`` in ``directory``."""
    import torch

    path = Path(directory) / f"checkpoint_iter{iteration:07d}.pt"
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save(
        {
            "state_dict": state,
            "iteration": int(iteration),
            "config": model_config(model),
            "accuracy": None if accuracy is None else float(accuracy),
        },
        path,
    )
    return path


# ---------------------------------------------------------------------------
# reading and recognising
# ---------------------------------------------------------------------------
def read(path_or_file):
    """The object in a checkpoint file, loaded without running code."""
    return read_torch(path_or_file, what=WHAT)


def files_in(folder) -> list[Path]:
    """The ``*.pt`` and ``*.pth`` files of ``folder``, sorted."""
    folder = Path(folder)
    return sorted({p for pattern in SUFFIXES for p in folder.glob(pattern)})


def is_skvmf(obj) -> bool:
    """Whether ``obj`` (what :func:`read` returned) is a checkpoint skvmf wrote."""
    return (
        isinstance(obj, Mapping)
        and all(key in obj for key in KEYS)
        and isinstance(obj["config"], Mapping)
        and "arch" in obj["config"]
    )


def not_skvmf_error(name, obj, hint: str | None = None) -> ValueError:
    """Why ``obj`` is not a checkpoint written by skvmf, naming the file."""
    if isinstance(obj, Mapping) and all(key in obj for key in KEYS):
        reason = "its config has no 'arch'"
    else:
        if isinstance(obj, Mapping):
            keys = sorted(map(str, obj))
            found = f"{keys[:8]}" + (f" ({len(keys)} keys)" if len(keys) > 8 else "")
        else:
            found = type(obj).__name__
        reason = f"expected keys {list(KEYS)}, found {found}"
    return file_error(
        name,
        WHAT,
        f"is not a skvmf checkpoint: {reason}" + (f"; {hint}" if hint else ""),
    )


def weights_of(obj, name) -> Mapping:
    """The ``str -> tensor`` weights of a file: the object itself, or its
    ``"state_dict"`` or ``"model"`` entry."""
    import torch

    state = obj
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                state = obj[key]
                break
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        keys = list(obj)[:8] if isinstance(obj, Mapping) else None
        raise file_error(
            name,
            WHAT,
            "holds no weights: expected a state_dict (str -> tensor) or a dict "
            f"with a 'model' or 'state_dict' entry; got {type(obj).__name__} "
            f"with keys {keys}",
        )
    return state


# ---------------------------------------------------------------------------
# weights into a network
# ---------------------------------------------------------------------------
def mismatch(expected: Mapping, given: Mapping) -> str | None:
    """How weights ``given`` differ from a network's ``expected`` state dict
    (a few keys of each kind), or None when they fit."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in given and tuple(given[k].shape) != tuple(v.shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[:_SHOWN]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:_SHOWN]})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[:_SHOWN]})")
    return "; ".join(parts) or None


def load_weights(model, state: Mapping, name, *, target: str | None = None):
    """``model.load_state_dict(state)`` after comparing keys and shapes, so
    that weights which do not fit name the file and a few differing keys.

    A ``module.`` prefix on every key (DataParallel) is removed. ``target``
    says what the network is in the message (default: its class name).
    """
    expected = model.state_dict()
    prefixed = all(k.startswith("module.") for k in state)
    if state and prefixed and not any(k.startswith("module.") for k in expected):
        state = {k[len("module.") :]: v for k, v in state.items()}
    differences = mismatch(expected, state)
    if differences is not None:
        target = target or type(model).__name__
        raise file_error(name, WHAT, f"does not match {target}: {differences}")
    model.load_state_dict(state, strict=True)
    return model


# ---------------------------------------------------------------------------
# rebuilding a network from a checkpoint skvmf wrote
# ---------------------------------------------------------------------------
def build(config: Mapping, name):
    """The untrained network a checkpoint's config describes.

    The config comes from a file, so it is validated even inside a call whose
    own validation skips nested ones.
    """
    from sklearn import config_context

    from ..architectures import make_classifier, make_vit_classifier

    config = dict(config)
    options = {k: v for k, v in config.items() if k != "arch"}
    try:
        with config_context(skip_parameter_validation=False):
            if config["arch"] == "vit":
                return make_vit_classifier(**options)
            return make_classifier(**config)
    except (TypeError, ValueError) as exc:
        raise file_error(
            name,
            WHAT,
            f"has a config {config} that does not describe a skvmf network ({exc})",
        ) from exc


def mark(model, obj: Mapping) -> None:
    """What a rebuilt network knows of its checkpoint: ``skvmf_iteration``
    (its training step) and ``skvmf_accuracy`` (the accuracy then)."""
    model.skvmf_iteration = int(obj["iteration"])
    model.skvmf_accuracy = obj["accuracy"]


def rebuild(obj: Mapping, name):
    """The network of a checkpoint skvmf wrote (``is_skvmf(obj)``): built from
    its config, with its weights, marked (:func:`mark`); left in the mode and
    on the device the caller chooses."""
    model = build(obj["config"], name)
    target = f"the {obj['config']['arch']} built from its config"
    load_weights(model, weights_of(obj, name), name, target=target)
    mark(model, obj)
    return model
