"""Input clips: a video file, a folder of frames or a single image, as RGB uint8 frames.

Built on the streaming :mod:`framematrix.io.source` (``open_source``); :func:`read_clip` decodes a
whole clip into memory and suits short clips only. Every failure is raised as
:class:`framematrix.errors.InputError` with one line naming the file and the problem (missing,
corrupt, unsupported, empty, inconsistent sizes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from framematrix.errors import InputError
from framematrix.io.source import (
    DEFAULT_FPS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    FrameSource,
    check_fps,
    kind_of,
    list_image_files,
    natural_key,
    open_source,
    read_image,
)

__all__ = [
    "DEFAULT_FPS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Clip",
    "ClipInfo",
    "iter_video_frames",
    "list_image_files",
    "natural_key",
    "probe_clip",
    "read_clip",
    "read_image",
]


@dataclass
class Clip:
    """A decoded input clip.

    frames: [F, H, W, 3] uint8 RGB.
    fps: frames per second (the video's own rate; for frames and images the given or default one).
    source: the path that was read.
    kind: "video", "frames" (a folder of images) or "image" (a single image, F = 1).
    names: F frame names without extension (file stems for frames and images, ``00000``... for a
        video), used to name per-frame outputs.
    has_audio: the source is a video with at least one audio stream (``write_video(audio_from=)``
        can copy it).
    """

    frames: np.ndarray
    fps: float
    source: Path
    kind: str
    names: list[str] = field(default_factory=list)
    has_audio: bool = False

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])


@dataclass(frozen=True)
class ClipInfo:
    """What :func:`probe_clip` learns without decoding every frame.

    num_frames is exact for frame folders and images; for videos it is the container's count when
    it stores one (MP4/MOV), otherwise the number of demuxed video packets (no decoding).
    """

    source: Path
    kind: str
    num_frames: int
    height: int
    width: int
    fps: float
    has_audio: bool


def _check_max_frames(max_frames: int | None) -> None:
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")


def _iter_frames(source: FrameSource, count: int) -> Iterator[np.ndarray]:
    try:
        for _, chunk in source.iter_chunks(0, count, chunk=8):
            yield from chunk
    finally:
        source.close()


def iter_video_frames(
    path: str | os.PathLike[str], max_frames: int | None = None
) -> Iterator[np.ndarray]:
    """Decode a video lazily: yields [H, W, 3] uint8 RGB frames in display order, upright.

    For long videos that do not fit in memory. The file is opened at call time (a missing,
    unsupported or unreadable file, or one without a decodable frame, raises InputError at once);
    a corrupt or truncated stream raises InputError while iterating. The display rotation of
    phone videos is applied (see :class:`framematrix.io.source.SourceInfo`).
    """
    path = Path(path)
    _check_max_frames(max_frames)
    if kind_of(path) != "video":
        raise InputError(f"{path}: not a video file ({', '.join(VIDEO_EXTENSIONS)})")
    source = open_source(path)
    count = source.info.num_frames if max_frames is None else min(max_frames, len(source))
    return _iter_frames(source, count)


# ----------------------------------------------------------------------------- public entry


def read_clip(
    path: str | os.PathLike[str], max_frames: int | None = None, fps: float | None = None
) -> Clip:
    """Read a video file, a folder of frames or a single image into a :class:`Clip`.

    path: a video (.mp4 .mov .mkv .avi .webm, decoded with PyAV, display rotation applied), a
        folder of .png/.jpg/.jpeg frames (natural order: ``f2`` before ``f10``; hidden files
        ignored; all the same size) or one image (F = 1).
    max_frames: keep only the first ``max_frames`` frames (None: all).
    fps: frame rate for frame folders and images (default 24). A video always keeps its own rate,
        so that copied audio stays in sync.

    Returns a Clip with frames [F, H, W, 3] uint8 RGB. Raises InputError (one line naming the file)
    for a missing path, an unsupported extension, an unreadable or corrupt file, an empty folder,
    a video without decodable frames, frames of differing sizes or smaller than 2x2 pixels.
    Holds the whole clip in memory: long inputs should use :func:`framematrix.io.open_source`.
    """
    path = Path(path)
    _check_max_frames(max_frames)
    check_fps(fps)
    with open_source(path, fps=fps) as source:
        info = source.info
        count = info.num_frames if max_frames is None else min(max_frames, info.num_frames)
        frames = source.read(0, count)
    return Clip(frames, info.fps, path, info.kind, info.names[:count], info.has_audio)


def probe_clip(path: str | os.PathLike[str], fps: float | None = None) -> ClipInfo:
    """Frame count, size, fps and audio presence of an input, without decoding every frame.

    Videos are probed from container metadata (packets are counted when the container stores no
    frame count, e.g. MKV/WebM) and their first frame (for the rotation: the size is the displayed
    one); folders read only their first image. Raises InputError like :func:`read_clip`.
    """
    with open_source(path, fps=fps) as source:
        info = source.info
    return ClipInfo(
        info.path, info.kind, info.num_frames, info.height, info.width, info.fps, info.has_audio
    )
