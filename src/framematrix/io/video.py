"""Input clips: a video file, a folder of frames or a single image, as RGB uint8 frames.

Every failure is raised as :class:`framematrix.errors.InputError` with one line naming the file and
the problem (missing, corrupt, unsupported, empty, inconsistent sizes).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from framematrix.errors import InputError

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

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DEFAULT_FPS = 24.0


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


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``frame2`` before ``frame10``."""
    # re.split with a capture group alternates text (even index) and digits (odd index), so
    # items at one index always have the same type and compare cleanly.
    parts = re.split(r"(\d+)", name.lower())
    return (tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name)


def list_image_files(folder: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """Visible files in ``folder`` with one of ``extensions`` (any case), naturally sorted.

    Hidden files are skipped: they include our own half-written temporaries and macOS ``._*``
    resource forks.
    """
    files = [
        p
        for p in Path(folder).iterdir()
        if p.suffix.lower() in extensions and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")


def _kind_of(path: Path) -> str:
    _check_exists(path)
    if path.is_dir():
        return "frames"
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    supported = ", ".join(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)
    raise InputError(
        f"{path}: unsupported file type '{path.suffix or '(none)'}' "
        f"(expected a video {', '.join(VIDEO_EXTENSIONS)}, an image or a folder of images; "
        f"supported: {supported})"
    )


def _check_max_frames(max_frames: int | None) -> None:
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")


def _check_fps(fps: float | None) -> float:
    if fps is None:
        return DEFAULT_FPS
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    return float(fps)


# ----------------------------------------------------------------------------- images


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """One image file as [H, W, 3] uint8 RGB (grey is expanded, alpha dropped, 16 bit -> 8 bit)."""
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an image file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: cannot read image (corrupt or not a {path.suffix} file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_frame_folder(folder: Path, max_frames: int | None) -> tuple[np.ndarray, list[str]]:
    files = list_image_files(folder)
    if not files:
        raise InputError(
            f"{folder}: folder has no images ({', '.join(IMAGE_EXTENSIONS)}; hidden files skipped)"
        )
    if max_frames is not None:
        files = files[:max_frames]
    first = read_image(files[0])
    frames = np.empty((len(files), *first.shape), dtype=np.uint8)
    frames[0] = first
    for i, file in enumerate(files[1:], start=1):
        image = read_image(file)
        if image.shape != first.shape:
            raise InputError(
                f"{file}: frame size {image.shape[1]}x{image.shape[0]} differs from "
                f"{first.shape[1]}x{first.shape[0]} of {files[0].name} (all frames must match)"
            )
        frames[i] = image
    return frames, [f.stem for f in files]


# ----------------------------------------------------------------------------- videos


def _open_video(path: Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot open video (corrupt or not a video file): {exc}") from exc
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: file has no video stream")
    # Frame threading is left off on purpose: with it FFmpeg drops decoding errors silently, and a
    # truncated file would pass as a shorter clip (decoding is not the bottleneck here).
    return container, container.streams.video[0]


def _video_fps(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return DEFAULT_FPS


def _decode_frames(
    path: Path,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    max_frames: int | None,
) -> Iterator[np.ndarray]:
    count = 0
    try:
        decoded = container.decode(stream)
        while max_frames is None or count < max_frames:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError) as exc:
                raise InputError(
                    f"{path}: corrupt or truncated video, decoding failed after {count} frames: "
                    f"{exc}"
                ) from exc
            # to_ndarray converts with the frame's own colour space tag (BT.601 when untagged).
            yield frame.to_ndarray(format="rgb24")
            count += 1
    finally:
        container.close()
    if count == 0:
        raise InputError(f"{path}: no frames could be decoded (empty video stream)")


def iter_video_frames(
    path: str | os.PathLike[str], max_frames: int | None = None
) -> Iterator[np.ndarray]:
    """Decode a video lazily: yields [H, W, 3] uint8 RGB frames in display order.

    For long videos that do not fit in memory. The file is opened at call time (a missing,
    unsupported or unreadable file raises InputError at once); a corrupt or truncated stream raises
    InputError while iterating, as does a stream with no decodable frame. Display rotation
    metadata (phone videos) is not applied.
    """
    path = Path(path)
    _check_max_frames(max_frames)
    if _kind_of(path) != "video":
        raise InputError(f"{path}: not a video file ({', '.join(VIDEO_EXTENSIONS)})")
    container, stream = _open_video(path)
    return _decode_frames(path, container, stream, max_frames)


def _read_video(path: Path, max_frames: int | None) -> tuple[np.ndarray, float, bool]:
    container, stream = _open_video(path)
    fps = _video_fps(stream)
    has_audio = len(container.streams.audio) > 0
    frames = list(_decode_frames(path, container, stream, max_frames))
    return np.stack(frames), fps, has_audio


# ----------------------------------------------------------------------------- public entry


def read_clip(
    path: str | os.PathLike[str], max_frames: int | None = None, fps: float | None = None
) -> Clip:
    """Read a video file, a folder of frames or a single image into a :class:`Clip`.

    path: a video (.mp4 .mov .mkv .avi .webm, decoded with PyAV), a folder of .png/.jpg/.jpeg
        frames (natural order: ``f2`` before ``f10``; hidden files ignored; all the same size) or
        one image (F = 1).
    max_frames: keep only the first ``max_frames`` frames (None: all).
    fps: frame rate for frame folders and images (default 24). A video always keeps its own rate,
        so that copied audio stays in sync.

    Returns a Clip with frames [F, H, W, 3] uint8 RGB. Raises InputError (one line naming the file)
    for a missing path, an unsupported extension, an unreadable or corrupt file, an empty folder,
    a video without decodable frames, or frames of differing sizes.
    """
    path = Path(path)
    _check_max_frames(max_frames)
    frame_rate = _check_fps(fps)
    kind = _kind_of(path)
    if kind == "video":
        frames, video_fps, has_audio = _read_video(path, max_frames)
        names = [f"{i:05d}" for i in range(frames.shape[0])]
        return Clip(frames, video_fps, path, kind, names, has_audio)
    if kind == "frames":
        frames, names = _read_frame_folder(path, max_frames)
        return Clip(frames, frame_rate, path, kind, names, False)
    image = read_image(path)
    return Clip(image[None], frame_rate, path, kind, [path.stem], False)


def probe_clip(path: str | os.PathLike[str], fps: float | None = None) -> ClipInfo:
    """Frame count, size, fps and audio presence of an input, without decoding every frame.

    Videos are probed from container metadata (packets are counted when the container stores no
    frame count, e.g. MKV/WebM); folders read only their first image. Raises InputError like
    :func:`read_clip`.
    """
    path = Path(path)
    frame_rate = _check_fps(fps)
    kind = _kind_of(path)
    if kind == "frames":
        files = list_image_files(path)
        if not files:
            raise InputError(f"{path}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
        height, width = read_image(files[0]).shape[:2]
        return ClipInfo(path, kind, len(files), height, width, frame_rate, False)
    if kind == "image":
        height, width = read_image(path).shape[:2]
        return ClipInfo(path, kind, 1, height, width, frame_rate, False)
    container, stream = _open_video(path)
    try:
        width, height = stream.codec_context.width, stream.codec_context.height
        count = int(stream.frames or 0)
        if count <= 0:
            try:
                count = sum(1 for packet in container.demux(stream) if packet.size > 0)
            except (av.error.FFmpegError, OSError) as exc:
                raise InputError(f"{path}: corrupt or truncated video: {exc}") from exc
        info = ClipInfo(
            path, kind, count, height, width, _video_fps(stream), len(container.streams.audio) > 0
        )
    finally:
        container.close()
    if info.num_frames == 0 or width <= 0 or height <= 0:
        raise InputError(f"{path}: video stream has no frames")
    return info
