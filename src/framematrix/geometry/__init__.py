"""Frame-matrix geometry: depth to z, camera rig, z-buffered forward warp, clean-up (METHOD 3)."""

from __future__ import annotations

from framematrix.geometry.build import WarpResult, build_frame_matrix, warp_to_offsets
from framematrix.geometry.cameras import camera_offsets, end_eye_span, source_view_index
from framematrix.geometry.cleanup import clean_layers, gaussian_kernel_3x3
from framematrix.geometry.config import StereoConfig
from framematrix.geometry.normalize import DEPTH_KINDS, depth_to_z
from framematrix.geometry.splat import forward_splat

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
