"""Hole filling of frame matrices: ``fast`` (geometric) here, ``diffusion`` in its sub-package."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "FastFillSettings": "framematrix.fill.fast",
    "fill_fast": "framematrix.fill.fast",
    "fill_matrix_fast": "framematrix.fill.fast",
}

__all__ = ["FastFillSettings", "fill_fast", "fill_matrix_fast"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
