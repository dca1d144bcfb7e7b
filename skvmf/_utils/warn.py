"""Warnings that point at the user's line, however deep skvmf raised them."""

from __future__ import annotations

import os
import sys
import warnings

import sklearn

# frames inside these folders are skipped when attributing a warning
_OWN = (
    # this file lives in skvmf/_utils/: skip the whole skvmf package
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
    os.path.dirname(os.path.abspath(sklearn.__file__)) + os.sep,
)


def user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside skvmf and scikit-learn
    (whose ``validate_params`` wraps our public functions), as seen from the
    function that calls :func:`warn`."""
    frame, level = sys._getframe(2), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        _OWN
    ):
        frame, level = frame.f_back, level + 1
    return level - 1


def warn(message, category=UserWarning) -> None:
    """``warnings.warn`` attributed to the user's line."""
    warnings.warn(message, category, stacklevel=user_stacklevel() + 1)
