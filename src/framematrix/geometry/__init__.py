"""Frame-matrix geometry: depth to z, camera rig, z-buffered forward warp, clean-up (METHOD 3)."""

from __future__ import annotations

import importlib
from typing import Any

# Public names and their modules, imported on first use so that a light import (the
# CLI's --help, a config) does not pull in torch.
_LAZY = {
    "WarpResult": "framematrix.geometry.build",
    "build_frame_matrix": "framematrix.geometry.build",
    "warp_to_offsets": "framematrix.geometry.build",
    "camera_offsets": "framematrix.geometry.cameras",
    "end_eye_span": "framematrix.geometry.cameras",
    "source_view_index": "framematrix.geometry.cameras",
    "clean_layers": "framematrix.geometry.cleanup",
    "gaussian_kernel_3x3": "framematrix.geometry.cleanup",
    "StereoConfig": "framematrix.geometry.config",
    "DEPTH_KINDS": "framematrix.geometry.normalize",
    "depth_to_z": "framematrix.geometry.normalize",
    "forward_splat": "framematrix.geometry.splat",
}

__all__ = [
    "DEPTH_KINDS",
    "StereoConfig",
    "WarpResult",
    "build_frame_matrix",
    "camera_offsets",
    "clean_layers",
    "depth_to_z",
    "end_eye_span",
    "forward_splat",
    "gaussian_kernel_3x3",
    "source_view_index",
    "warp_to_offsets",
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
