"""An opt-in folder of trained digits networks, reused across runs.

With the environment variable ``SKVMF_TRAINING_CACHE`` set to a folder,
:func:`skvmf.training.train_digits_classifier` keeps each network it trains
there and, asked for the same network again, loads it instead of training:
the gallery, the README, ``skvmf demo`` and the test suite train the same
digits network many times over. The key is a hash of everything the weights
and checkpoints depend on (the recipe's options, the seed, the checkpoint
plan, the device, torch's thread count, the torch and skvmf versions and the
source of the training code), so a hit returns the network that training
would have returned. Concurrent processes asking for the same network take
turns (a file lock): the second loads what the first trained.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

ENV = "SKVMF_TRAINING_CACHE"

# the files whose code decides what training returns
_SOURCES = ("training.py", "architectures.py", "_digits_recipe.py", "datasets.py")


def folder() -> Path | None:
    """The cache folder from ``SKVMF_TRAINING_CACHE``, or None when unset."""
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None


def _code_digest() -> str:
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in _SOURCES:
        path = package / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def key(spec: dict) -> str:
    """A short hash of ``spec`` together with the versions, the thread count
    and the training code."""
    import torch

    from .. import __version__

    full = {
        **spec,
        "torch": torch.__version__,
        "skvmf": __version__,
        "threads": torch.get_num_threads(),
        "code": _code_digest(),
    }
    text = json.dumps(full, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@contextlib.contextmanager
def locked(root: Path, name: str):
    """Hold an exclusive lock on ``name`` in ``root`` (a no-op where the
    platform has no ``fcntl``)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(root / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load(root: Path, name: str, checkpoint_dir):
    """``(state_dict, result fields)`` of a cached network, or None.

    Its checkpoints are copied into ``checkpoint_dir`` under their own file
    names, and the result's checkpoint paths point there.
    """
    import torch

    entry = root / name
    if not (entry / "network.pt").is_file():
        return None
    saved = torch.load(entry / "network.pt", map_location="cpu", weights_only=True)
    fields = dict(saved["result"])
    checkpoints = []
    if fields["checkpoints"]:
        target = Path(checkpoint_dir)
        target.mkdir(parents=True, exist_ok=True)
        for iteration, file in fields["checkpoints"]:
            shutil.copyfile(entry / "checkpoints" / file, target / file)
            checkpoints.append((int(iteration), target / file))
    fields["checkpoints"] = checkpoints
    return saved["state_dict"], fields


def _fields(result) -> dict:
    """Every field of a :class:`TrainingResult` in plain Python types (what
    ``torch.load(weights_only=True)`` reads back), checkpoints by file name."""
    import dataclasses

    import numpy as np

    fields = {}
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        if isinstance(value, np.ndarray):
            value = value.tolist()
        fields[field.name] = value
    fields["checkpoints"] = [(int(i), Path(p).name) for i, p in result.checkpoints]
    return fields


def store(root: Path, name: str, model, result) -> None:
    """Keep ``model`` and its :class:`TrainingResult` under ``name``; written
    to a temporary folder first so that a reader never sees half an entry."""
    import torch

    entry = root / name
    partial = root / f"{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "checkpoints").mkdir(parents=True)
    for _, path in result.checkpoints:
        shutil.copyfile(path, partial / "checkpoints" / Path(path).name)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save(
        {
            "state_dict": state,
            "result": _fields(result),
        },
        partial / "network.pt",
    )
    shutil.rmtree(entry, ignore_errors=True)
    os.replace(partial, entry)
