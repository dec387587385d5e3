"""Stereo layouts (side-by-side, top-bottom, anaglyph, VR180, quilts), video/frame/image writers,
segment joining and player filename tags."""

from __future__ import annotations

from framematrix.export.formats import (
    EXTRA_FORMAT_NAMES,
    EXTRA_FORMATS,
    FORMAT_NAMES,
    FORMATS,
    compose_stereo,
    format_help,
    views_grid,
)
from framematrix.export.join import join_segments
from framematrix.export.names import tagged_name
from framematrix.export.quilt import quilt, quilt_layout, quilt_video
from framematrix.export.vr180 import compose_vr180
from framematrix.export.writers import (
    VideoEncoding,
    VideoWriter,
    color_tags,
    fps_fraction,
    to_uint8,
    write_frames,
    write_image,
    write_video,
)

__all__ = [
    "EXTRA_FORMATS",
    "EXTRA_FORMAT_NAMES",
    "FORMATS",
    "FORMAT_NAMES",
    "VideoEncoding",
    "VideoWriter",
    "color_tags",
    "compose_stereo",
    "compose_vr180",
    "format_help",
    "fps_fraction",
    "join_segments",
    "quilt",
    "quilt_layout",
    "quilt_video",
    "tagged_name",
    "to_uint8",
    "views_grid",
    "write_frames",
    "write_image",
    "write_video",
]
