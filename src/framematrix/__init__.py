"""framematrix: monocular video -> stereoscopic and multi-view video by denoising a frame matrix.

Quick use::

    import framematrix
    framematrix.convert("clip.mp4", "clip_sbs.mp4", depth="depth_folder/")
    matrix = framematrix.build_frame_matrix(frames, depth, views=8, baseline=0.08)
"""

from __future__ import annotations

from framematrix.config import ConvertConfig, preset
from framematrix.errors import FramematrixError, InputError, ModelNotFoundError, ShapeError
from framematrix.geometry.build import build_frame_matrix
from framematrix.geometry.config import StereoConfig
from framematrix.matrix import FrameMatrix
from framematrix.pipeline import ConvertResult, convert, make_matrix

__version__ = "0.1.0"

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
