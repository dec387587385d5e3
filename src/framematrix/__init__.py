"""framematrix: monocular video -> stereoscopic and multi-view video by denoising a frame matrix."""

from __future__ import annotations

from framematrix.errors import FramematrixError, InputError, ModelNotFoundError
from framematrix.matrix import FrameMatrix

__version__ = "0.1.0"

__all__ = ["FrameMatrix", "FramematrixError", "InputError", "ModelNotFoundError", "__version__"]
