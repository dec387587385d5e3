"""Stereo layouts (side-by-side, top-bottom, anaglyph, ...) and video/frame/image writers."""

from __future__ import annotations

from framematrix.export.formats import (
    FORMAT_NAMES,
    FORMATS,
    compose_stereo,
    format_help,
    views_grid,
)
from framematrix.export.writers import (
    fps_fraction,
    to_uint8,
    write_frames,
    write_image,
    write_video,
)

__all__ = [
    "FORMATS",
    "FORMAT_NAMES",
    "compose_stereo",
    "format_help",
    "fps_fraction",
    "to_uint8",
    "views_grid",
    "write_frames",
    "write_image",
    "write_video",
]
