"""Inputs (video, frame folders, images, depth files) and atomic output paths."""

from __future__ import annotations

from framematrix.io.atomic import atomic_dir, atomic_path
from framematrix.io.depth_files import read_depth, read_depth_file, read_pfm, write_pfm
from framematrix.io.video import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    Clip,
    ClipInfo,
    iter_video_frames,
    probe_clip,
    read_clip,
    read_image,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Clip",
    "ClipInfo",
    "atomic_dir",
    "atomic_path",
    "iter_video_frames",
    "probe_clip",
    "read_clip",
    "read_depth",
    "read_depth_file",
    "read_image",
    "read_pfm",
    "write_pfm",
]
