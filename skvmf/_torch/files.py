"""Reading the files a user hands us without running any code they contain.

Two formats come from outside: pickled data batches (CIFAR-10's python
format) and torch checkpoints. Plain ``pickle.load`` runs whatever a file's
``__reduce__`` names, so data batches go through :class:`RestrictedUnpickler`,
which resolves only the globals the batch format needs, and torch files
through ``torch.load(weights_only=True)``. Every failure (missing, a folder,
unreadable, truncated or corrupt, a forbidden object, a wrong layout) becomes
one :class:`ValueError` whose one-line message names the file.
"""

from __future__ import annotations

import importlib
import pickle
import warnings
from pathlib import Path

# What a CIFAR batch pickled by numpy needs, whichever Python wrote it:
# Python 2 / protocol 2-4 rebuild an array with multiarray._reconstruct and
# ndarray.__setstate__ (numpy 1 calls the module numpy.core, numpy 2
# numpy._core); protocol 5 uses numeric._frombuffer; Python 3 writes bytes
# at protocol 2 as _codecs.encode(text, "latin1"). Each is a pure data
# constructor: none can call an arbitrary function.
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
}
# containers that protocols 0-5 may name as globals (dict, list, tuple, str
# and numbers have their own opcodes and need none)
_BUILTINS = frozenset({"set", "frozenset", "bytes", "bytearray"})


def _from_content(kind):
    """``bytes``/``bytearray`` of given content only: ``bytes(10**12)`` would
    allocate whatever size a crafted file names."""

    def build(*args):
        if args and not isinstance(args[0], (bytes, bytearray, str, list)):
            raise pickle.UnpicklingError(
                f"it calls {kind.__name__} with {type(args[0]).__name__}; "
                "refused without running it"
            )
        return kind(*args)

    return build


def _numpy_internal(module: str, name: str):
    """``numpy._core.<module>.<name>`` (numpy 2) or ``numpy.core...`` (numpy 1),
    without touching numpy 2's deprecated ``numpy.core`` alias."""
    if module == "numpy":
        return getattr(importlib.import_module("numpy"), name)
    try:
        found = importlib.import_module(f"numpy._core.{module}")
    except ImportError:  # numpy 1
        found = importlib.import_module(f"numpy.core.{module}")
    return getattr(found, name)


def _empty_array(reconstruct):
    """numpy's ``_reconstruct`` for the empty array every pickle starts from
    (its content comes next, bounded by the file); a crafted shape would
    allocate whatever size it names."""

    def build(subtype, shape, dtype):
        import numpy as np

        if subtype is not np.ndarray or np.prod(shape, dtype=float) > 1:
            raise pickle.UnpicklingError(
                f"it asks numpy for a {shape} array before its data; refused "
                "without running it"
            )
        return reconstruct(subtype, shape, dtype)

    return build


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers, nothing else.

    ``find_class`` is the only way a pickle reaches code; here it resolves the
    few numpy constructors of ``_NUMPY_GLOBALS``, ``_codecs.encode`` and the
    containers of ``_BUILTINS``, and refuses every other global (``os.system``,
    ``builtins.exec``, ``getattr`` ...) before anything is called.
    """

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            found = _numpy_internal(*_NUMPY_GLOBALS[module, name])
            return _empty_array(found) if name == "_reconstruct" else found
        if module == "_codecs" and name == "encode":
            import _codecs

            return _codecs.encode
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            import builtins

            if name in ("bytes", "bytearray"):
                return _from_content(getattr(builtins, name))
            return getattr(builtins, name)
        raise pickle.UnpicklingError(
            f"it names the global {module}.{name}, which a data file never "
            "needs; refused without running it"
        )


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n", 1)[0].split())
    if len(text) > 120 and ". " in text:  # torch appends paragraphs of advice
        text = text.split(". ", 1)[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def file_error(path, what: str, reason: str) -> ValueError:
    """``ValueError("<what> '<path>' <reason>")``, on one line."""
    return ValueError(" ".join(f"{what} {str(path)!r} {reason}".split()))


def _open_error(path, what: str, exc: OSError) -> ValueError:
    if isinstance(exc, FileNotFoundError):
        return file_error(path, what, "does not exist")
    if isinstance(exc, IsADirectoryError):
        return file_error(path, what, "is a folder, not a file")
    if isinstance(exc, PermissionError):
        return file_error(path, what, "cannot be read (permission denied)")
    return file_error(path, what, f"cannot be read ({_first_line(exc)})")


def read_pickle(path, *, what: str = "data file"):
    """The object pickled in ``path``, built by :class:`RestrictedUnpickler`.

    Python 2 strings are decoded as latin-1 (the encoding numpy needs for
    the raw bytes of its arrays), so keys come back as ``str``.

    Raises
    ------
    ValueError
        Naming the file, when it is missing or unreadable, truncated or
        corrupt, or names a global that the format does not need.
    """
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, encoding="latin1").load()
    except OSError as exc:
        raise _open_error(path, what, exc) from exc
    except pickle.UnpicklingError as exc:
        if "refused without running it" in str(exc):
            raise file_error(path, what, f"is not plain data: {exc}") from exc
        raise file_error(
            path, what, f"is corrupt or truncated ({_first_line(exc)})"
        ) from exc
    except Exception as exc:  # EOFError, ValueError, TypeError, ... of a bad stream
        raise file_error(
            path, what, f"is corrupt or truncated ({_first_line(exc)})"
        ) from exc


def _torch_reason(exc: Exception) -> str:
    """The useful part of torch.load's error, on one line. torch's
    weights-only message suggests weights_only=False, which we never do."""
    text = str(exc)
    if "Weights only load failed" in text:
        detail = next(
            (
                line.strip()
                for line in text.splitlines()
                if "GLOBAL" in line or line.strip().startswith("Unsupported")
            ),
            "",
        )
        return (
            "holds objects that are not plain weights, refused by "
            f"torch.load(weights_only=True) without running them ({detail})"
            if detail
            else "holds objects that are not plain weights, refused by "
            "torch.load(weights_only=True) without running them"
        )
    if "PytorchStreamReader" in text or isinstance(exc, EOFError):
        return f"is corrupt or truncated ({_first_line(exc)})"
    return f"is not a torch checkpoint or is corrupt ({_first_line(exc)})"


def file_name(path_or_file) -> str:
    """How messages name a path or an open file."""
    if isinstance(path_or_file, (str, Path)) or hasattr(path_or_file, "__fspath__"):
        return str(path_or_file)
    return str(getattr(path_or_file, "name", "<file object>"))


def read_torch(path_or_file, *, what: str = "checkpoint", map_location="cpu"):
    """``torch.load(path_or_file, weights_only=True)``; failures name the file.

    Raises
    ------
    ValueError
        Naming the file, when it is missing or unreadable, truncated or
        corrupt, or holds anything but tensors and plain containers.
    """
    import torch

    name = file_name(path_or_file)
    try:
        with warnings.catch_warnings():
            # a protocol-4 pickle makes torch warn before it refuses or reads it
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(
                path_or_file, map_location=map_location, weights_only=True
            )
    except OSError as exc:
        raise _open_error(name, what, exc) from exc
    except Exception as exc:  # UnpicklingError, RuntimeError, KeyError, EOFError ...
        raise file_error(name, what, _torch_reason(exc)) from exc
