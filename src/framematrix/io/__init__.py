"""Inputs (video, frame folders, images, depth files and depth videos) and atomic output paths.

Streaming entry points: :func:`open_source` (frames) and :func:`open_depth` / :class:`DepthWriter`
(depth); :func:`read_clip` and :func:`read_depth` read a whole short clip into memory.
"""

from __future__ import annotations

from framematrix.io.atomic import atomic_dir, atomic_path
from framematrix.io.depth_files import read_depth, read_depth_file, read_pfm, write_pfm
from framematrix.io.depth_video import DepthSource, DepthWriter, open_depth
from framematrix.io.source import FrameSource, SourceInfo, open_source, parse_position
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
    "DepthSource",
    "DepthWriter",
    "FrameSource",
    "SourceInfo",
    "atomic_dir",
    "atomic_path",
    "iter_video_frames",
    "open_depth",
    "open_source",
    "parse_position",
    "probe_clip",
    "read_clip",
    "read_depth",
    "read_depth_file",
    "read_image",
    "read_pfm",
    "write_pfm",
]
