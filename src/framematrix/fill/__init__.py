"""Hole filling of frame matrices: ``fast`` (geometric) here, ``diffusion`` in its sub-package."""

from framematrix.fill.fast import FastFillSettings, fill_fast, fill_matrix_fast

__all__ = ["FastFillSettings", "fill_fast", "fill_matrix_fast"]
