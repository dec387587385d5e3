"""User-facing errors: each carries a one-line message naming the file and the problem."""

from __future__ import annotations


class FramematrixError(Exception):
    """Base class of errors the CLI reports as one line, without a traceback."""


class InputError(FramematrixError):
    """An input file or folder is missing, unreadable, corrupt or inconsistent."""


class ModelNotFoundError(FramematrixError):
    """Model weights are not available locally (no network here, or a wrong path)."""


class ShapeError(FramematrixError, ValueError):
    """A tensor given to a public function has the wrong shape, dtype or value range."""
