"""framematrix: monocular video -> stereoscopic and multi-view video by denoising a frame matrix.

Quick use::

    import framematrix
    framematrix.convert("clip.mp4", "clip_sbs.mp4", depth="depth_folder/")
    matrix = framematrix.build_frame_matrix(frames, depth, views=8, baseline=0.08)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names and their modules, imported on first use so that a light import (the
# CLI's --help, a config) does not pull in torch.
_LAZY = {
    "ConvertConfig": "framematrix.config",
    "preset": "framematrix.config",
    "FramematrixError": "framematrix.errors",
    "InputError": "framematrix.errors",
    "ModelNotFoundError": "framematrix.errors",
    "ShapeError": "framematrix.errors",
    "build_frame_matrix": "framematrix.geometry.build",
    "StereoConfig": "framematrix.geometry.config",
    "FrameMatrix": "framematrix.matrix",
    "ConvertResult": "framematrix.pipeline",
    "convert": "framematrix.pipeline",
    "make_matrix": "framematrix.pipeline",
}

__all__ = [
    "ConvertConfig",
    "ConvertResult",
    "FrameMatrix",
    "FramematrixError",
    "InputError",
    "ModelNotFoundError",
    "ShapeError",
    "StereoConfig",
    "__version__",
    "build_frame_matrix",
    "convert",
    "make_matrix",
    "preset",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
