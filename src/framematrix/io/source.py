"""A streaming frame source with exact range reads: a video file, a folder of frames or one image.

:func:`open_source` probes the input (frame count, fps, size, rotation, audio, colour tags) without
decoding every frame and returns a :class:`FrameSource` whose :meth:`FrameSource.read` and
:meth:`FrameSource.iter_chunks` decode only the frames asked for, so memory does not grow with the
length of the video.

Frame index ``i`` is the ``i``-th frame, in presentation order, of a sequential decode from the
start. A range read of a video returns exactly those frames, also for streams with B-frames and
variable frame rate: the presentation timestamps of all packets are collected once by demuxing
(no decoding), the reader seeks to the last keyframe at or before the target timestamp, decodes
forward and drops the frames before the target. Reads that continue where the previous one ended
(the usual chunked pass) decode on without seeking.

Every failure is raised as :class:`framematrix.errors.InputError` with one line naming the file and
the problem.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import cv2
import numpy as np

from framematrix.errors import InputError

__all__ = [
    "DEFAULT_FPS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FrameSource",
    "SourceInfo",
    "list_image_files",
    "natural_key",
    "open_source",
    "parse_position",
    "read_image",
    "rotate_upright",
]

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DEFAULT_FPS = 24.0
MIN_SIZE = 2  # frames smaller than 2x2 pixels cannot be warped (geometry needs neighbours)

# A forward jump of at most this many frames is decoded through instead of building the timestamp
# table (demuxing the whole file) just to find out whether a keyframe lies in between.
_SHORT_SKIP = 48

# FFmpeg's names (libavutil/pixdesc.c) of the ISO/IEC 23091-2 code points; 2 ("unspecified") and
# codes not listed are reported as None / "unknown-N".
_PRIMARIES = {
    1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
    9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213",
}  # fmt: skip
_TRANSFER = {
    1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
    9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1",
    14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67",
}  # fmt: skip
_MATRIX = {
    0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
    9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc",
    13: "chroma-derived-c", 14: "ictcp",
}  # fmt: skip
_RANGE = {1: "tv", 2: "pc"}


@dataclass(frozen=True)
class SourceInfo:
    """What :func:`open_source` learns about an input without decoding every frame.

    path: the input. kind: "video", "frames" (a folder of images) or "image" (F = 1).
    num_frames: frames a sequential decode gives. For videos: the container's count where it
        stores one (MP4/MOV), otherwise the number of demuxed video packets (no decoding).
    fps / fps_fraction: the video's own average rate; for frames and images the given one
        (default 24).
    width, height: frame size as displayed, i.e. after the rotation below.
    rotation: counter-clockwise degrees (0, 90, 180, 270) the display matrix asks for, as
        FFmpeg's ``av_display_rotation_get`` / PyAV's ``VideoFrame.rotation``: a phone video shot
        upright is stored landscape with 270 (turn 90 degrees clockwise). Frames are returned
        already turned; a mirroring part of the matrix is not applied.
    has_audio: a video with at least one audio stream.
    color: ``primaries``, ``transfer``, ``matrix``, ``range`` in FFmpeg's names (``bt709``,
        ``smpte2084``, ``tv``/``pc``, ...); None where untagged (always None for images).
    pix_fmt: the decoder's pixel format (``yuv420p``...), None for images. bit_depth: bits per
        component of the stored samples (8 for usual video and JPEG, 16 for a 16-bit PNG).
    names: per-frame names for folder outputs: file stems for frames/images, ``00000``... for a
        video.
    duration_s: length in seconds (the stream's duration where stored, else frames / fps).
    """

    path: Path
    kind: str
    num_frames: int
    fps: float
    fps_fraction: Fraction
    width: int
    height: int
    rotation: int
    has_audio: bool
    color: dict[str, str | None]
    pix_fmt: str | None
    bit_depth: int
    names: list[str]
    duration_s: float


# ----------------------------------------------------------------------------- small helpers


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


def check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")


def kind_of(path: Path) -> str:
    """The kind of input: "video", "frames" or "image"; InputError for a missing or unknown one."""
    check_exists(path)
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


def check_fps(fps: float | None) -> float:
    if fps is None:
        return DEFAULT_FPS
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    return float(fps)


def _check_min_size(path: Path, width: int, height: int, what: str) -> None:
    if width < MIN_SIZE or height < MIN_SIZE:
        raise InputError(
            f"{path}: {what} is {width}x{height} pixels; frames must be at least "
            f"{MIN_SIZE}x{MIN_SIZE}"
        )


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """One image file as [H, W, 3] uint8 RGB (grey is expanded, alpha dropped, 16 bit -> 8 bit)."""
    path = Path(path)
    check_exists(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an image file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: cannot read image (corrupt or not a {path.suffix} file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _image_bit_depth(path: Path) -> int:
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return 16 if raw is not None and raw.dtype == np.uint16 else 8


def rotate_upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a stored frame ([H, W, ...]) by ``rotation`` degrees counter-clockwise (a multiple of
    90, the display-matrix convention of :attr:`SourceInfo.rotation`), so that it shows upright.
    Returns a contiguous array ([W, H, ...] for 90 and 270)."""
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    turns = (rotation // 90) % 4
    if turns == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=turns, axes=(0, 1)))


def _fraction_of(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1_000_000)


# ----------------------------------------------------------------------------- positions

_POSITION_HELP = (
    "expected a frame index like 120f, seconds like 12.5 or 12.5s, or a time mm:ss(.ms) or "
    "hh:mm:ss(.ms)"
)


def parse_position(text: str, fps: float, num_frames: int | None = None) -> int:
    """A ``--start``/``--end`` value as a frame index.

    text: ``120f`` (frame index), ``12.5`` or ``12.5s`` (seconds), ``mm:ss(.ms)`` or
        ``hh:mm:ss(.ms)``. Times become the nearest frame index at ``fps`` (round(t * fps)).
    num_frames: when given, a position past the end (> num_frames) is an error; ``num_frames``
        itself is allowed (an end that is the end).
    Raises ValueError with one line for bad text.
    """
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    raw = text
    text = text.strip().lower()
    index: int | None = None
    if re.fullmatch(r"\d+f", text):
        index = int(text[:-1])
    elif re.fullmatch(r"\d+(\.\d*)?s?|\.\d+s?", text):
        index = round(float(text.rstrip("s")) * fps)
    else:
        match = re.fullmatch(r"(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)", text)
        if match:
            hours = int(match.group(1) or 0)
            minutes, seconds = int(match.group(2)), float(match.group(3))
            if seconds >= 60 or (match.group(1) is not None and minutes >= 60):
                raise ValueError(f"bad position '{raw}': minutes and seconds must be below 60")
            index = round((hours * 3600 + minutes * 60 + seconds) * fps)
    if index is None:
        raise ValueError(f"bad position '{raw}': {_POSITION_HELP}")
    if num_frames is not None and index > num_frames:
        raise ValueError(
            f"position '{raw}' is frame {index}, past the end of the input ({num_frames} frames)"
        )
    return index


# ----------------------------------------------------------------------------- video decoding


def _color_tags(source: object) -> dict[str, str | None]:
    def name(table: dict[int, str], code: object) -> str | None:
        try:
            value = int(code)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return None
        if value == 2 or (value == 0 and table is not _MATRIX):
            return None  # unspecified / reserved
        return table.get(value, f"unknown-{value}")

    return {
        "primaries": name(_PRIMARIES, getattr(source, "color_primaries", None)),
        "transfer": name(_TRANSFER, getattr(source, "color_trc", None)),
        "matrix": name(_MATRIX, getattr(source, "colorspace", None)),
        "range": name(_RANGE, getattr(source, "color_range", None)),
    }


def _stream_fps(stream: av.video.stream.VideoStream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    return None


@dataclass(frozen=True)
class _Timeline:
    """Presentation timestamps of a video stream, from one demux pass (no decoding).

    pts: sorted timestamps, one per frame (frame index -> pts). keys: sorted pts of keyframes.
    exact: every packet had a timestamp and no two were equal (else seeking is not exact and
    reads decode from the start).
    """

    pts: list[int]
    keys: list[int]
    index: dict[int, int]
    exact: bool


def _demux_timeline(path: Path) -> _Timeline:
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        pts: list[int] = []
        keys: list[int] = []
        exact = True
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                stamp = packet.pts
                if stamp is None:
                    exact = False
                    stamp = packet.dts if packet.dts is not None else (pts[-1] + 1 if pts else 0)
                pts.append(int(stamp))
                if packet.is_keyframe:
                    keys.append(int(stamp))
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(f"{path}: corrupt or truncated video: {exc}") from exc
    finally:
        container.close()
    pts.sort()
    keys.sort()
    index = {stamp: i for i, stamp in enumerate(pts)}
    if len(index) != len(pts) or not keys:
        exact = False
    return _Timeline(pts, keys, index, exact)


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot open video (corrupt or not a video file): {exc}") from exc
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: file has no video stream")
    return container


class VideoReader:
    """Exact range decoding of the first video stream of a file (shared by frame and depth sources).

    convert: turns a decoded ``av.VideoFrame`` into an array (before rotation). rotate: apply the
    display-matrix rotation of the stream to every converted frame ([H, W, ...] arrays).

    Attributes after opening: ``num_frames``, ``rotation`` (CCW degrees), ``first`` (the converted,
    rotated first frame), ``first_frame`` (its ``av.VideoFrame``), ``stream``, ``container``.
    """

    def __init__(
        self, path: Path, convert: Callable[[av.VideoFrame], np.ndarray], rotate: bool = True
    ) -> None:
        self.path = path
        self._convert = convert
        self._timeline: _Timeline | None = None
        # Frame threading is left off on purpose: with it FFmpeg drops decoding errors silently,
        # and a truncated file would pass as a shorter clip.
        self.container = _open_container(path)
        self.stream = self.container.streams.video[0]
        self._decoder: Iterator[av.VideoFrame] | None = None
        self._next = 0  # index of the next frame the decoder yields
        self._pending: av.VideoFrame | None = None  # a pulled frame of index self._next
        self._by_pts = False  # after a seek, indices come from timestamps
        self.decoded = 0  # frames decoded so far (all passes), for tests and statistics
        try:
            self._restart(reopen=False)
            first = self._pull(0)
            if first is None:
                raise InputError(f"{path}: no frames could be decoded (empty video stream)")
            self._pending = first
            self.first_frame = first
            self.rotation = int(round(first.rotation / 90.0)) * 90 % 360 if rotate else 0
            self.first = self._to_array(first)
            count = int(self.stream.frames or 0)
            if count <= 0:
                self._timeline = _demux_timeline(path)
                count = len(self._timeline.pts)
            self.num_frames = count
        except BaseException:
            self.container.close()
            raise

    # -- internals

    def _to_array(
        self, frame: av.VideoFrame, convert: Callable[[av.VideoFrame], np.ndarray] | None = None
    ) -> np.ndarray:
        return rotate_upright((convert or self._convert)(frame), self.rotation)

    def timeline(self) -> _Timeline:
        if self._timeline is None:
            self._timeline = _demux_timeline(self.path)
        return self._timeline

    def _restart(self, reopen: bool = True) -> None:
        """Decode from the very start again, counting frames (the definition of an index)."""
        if reopen:
            self.container.close()
            self.container = _open_container(self.path)
            self.stream = self.container.streams.video[0]
        self._decoder = self.container.decode(self.stream)
        self._next = 0
        self._pending = None
        self._by_pts = False

    def _pull(self, done: int) -> av.VideoFrame | None:
        """The next decoded frame, or None at the end of the stream."""
        assert self._decoder is not None
        try:
            frame = next(self._decoder)
            self.decoded += 1
            return frame
        except StopIteration:
            return None
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(
                f"{self.path}: corrupt or truncated video, decoding failed after {done} frames: "
                f"{exc}"
            ) from exc

    def _seek(self, start: int) -> None:
        """Position the decoder so that the next frame has an index <= ``start``."""
        timeline = self.timeline()
        if start == 0 or not timeline.exact or start >= len(timeline.pts):
            self._restart()
            return
        target = timeline.pts[start]
        key = bisect.bisect_right(timeline.keys, target) - 1
        while key >= 0:
            try:
                self.container.seek(
                    timeline.keys[key], stream=self.stream, backward=True, any_frame=False
                )
            except (av.error.FFmpegError, OSError):
                break
            self._decoder = self.container.decode(self.stream)
            frame = self._pull(start)
            index = None if frame is None or frame.pts is None else timeline.index.get(frame.pts)
            if index is None:
                break  # a stamp the demuxer did not give: the table cannot be trusted
            if index <= start:
                self._pending, self._next, self._by_pts = frame, index, True
                return
            key -= 1  # landed after the target (an index by dts, say): try an earlier keyframe
        self._distrust()
        self._restart()

    def _distrust(self) -> None:
        """From now on, reads before the decoder's position decode from the start."""
        timeline = self.timeline()
        self._timeline = _Timeline(timeline.pts, timeline.keys, timeline.index, False)

    def _needs_seek(self, start: int) -> bool:
        if self._decoder is None or start < self._next:
            return True
        if start - self._next <= _SHORT_SKIP:
            return False
        timeline = self.timeline()
        if not timeline.exact or start >= len(timeline.pts):
            return False
        # Seek only when a keyframe lies between the decoder's position and the target.
        key = timeline.keys[bisect.bisect_right(timeline.keys, timeline.pts[start]) - 1]
        return key > timeline.pts[min(self._next, len(timeline.pts) - 1)]

    def read(
        self,
        start: int,
        stop: int,
        convert: Callable[[av.VideoFrame], np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Converted frames ``start .. stop-1`` (0 <= start <= stop <= num_frames); ``convert``
        instead of the reader's own conversion for these frames."""
        if not 0 <= start <= stop <= self.num_frames:
            raise IndexError(f"range {start}:{stop} outside 0:{self.num_frames} of {self.path}")
        out: list[np.ndarray] = []
        if start == stop:
            return out
        if self._needs_seek(start):
            self._seek(start)
        while self._next < stop:
            frame = self._pending if self._pending is not None else self._pull(self._next)
            self._pending = None
            if frame is None:
                raise InputError(
                    f"{self.path}: video ended after {self._next} of {self.num_frames} frames "
                    "(truncated, or the container's frame count is wrong)"
                )
            index = self._next
            if self._by_pts:
                found = None if frame.pts is None else self.timeline().index.get(frame.pts)
                if found is None or (found > self._next and found > start):
                    # The timestamps do not describe this decode (a frame of the range missing,
                    # or an unknown stamp): count from the start, which is exact by definition.
                    self._distrust()
                    self._restart()
                    return self.read(start, stop, convert)
                if found < self._next:
                    continue  # a leading frame of an open GOP, before the keyframe we sought
                index = found
            self._next = index + 1
            if index >= start:
                out.append(self._to_array(frame, convert))
        return out

    def frame_time(self, index: int) -> float | None:
        """Seconds from the first frame's timestamp to frame ``index``'s; None without stamps."""
        timeline = self.timeline()
        if not timeline.exact or index >= len(timeline.pts) or self.stream.time_base is None:
            return None
        return float((timeline.pts[index] - timeline.pts[0]) * self.stream.time_base)

    def close(self) -> None:
        self._decoder = None
        self._pending = None
        self.container.close()


def _rgb24(frame: av.VideoFrame) -> np.ndarray:
    # to_ndarray converts with the frame's own colour space tag (BT.601 when untagged).
    return frame.to_ndarray(format="rgb24")


# ----------------------------------------------------------------------------- sources


class FrameSource:
    """Frames of one input, read on demand; a context manager (``with open_source(p) as src``).

    ``info`` is the :class:`SourceInfo`. Frames are [n, H, W, 3] uint8 RGB, upright (display
    rotation applied), H x W = ``info.height`` x ``info.width``. Reads that continue where the
    last one stopped decode on; others seek. Not thread-safe: use one source per thread (a decode
    thread feeding a queue, say).
    """

    def __init__(self, info: SourceInfo) -> None:
        self.info = info

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __len__(self) -> int:
        return self.info.num_frames

    def _check_range(self, start: int, stop: int) -> None:
        n = self.info.num_frames
        if not (isinstance(start, (int, np.integer)) and isinstance(stop, (int, np.integer))):
            raise TypeError(f"start and stop must be ints, got {start!r}, {stop!r}")
        if not 0 <= start <= stop <= n:
            raise IndexError(f"frame range {start}:{stop} outside 0:{n} of {self.info.path}")

    def _empty(self) -> np.ndarray:
        return np.empty((0, self.info.height, self.info.width, 3), np.uint8)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start .. stop-1`` as [stop - start, H, W, 3] uint8 RGB: exactly the frames a
        sequential decode gives at those indices (0 <= start <= stop <= num_frames)."""
        raise NotImplementedError

    def iter_chunks(
        self, start: int = 0, stop: int | None = None, chunk: int = 32
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Sequential chunks ``(index of first frame, [n, H, W, 3] uint8 RGB)`` covering
        ``start .. stop-1`` (stop None: to the end), n <= chunk; memory holds one chunk."""
        for first, last in self._chunk_ranges(start, stop, chunk):
            yield first, self.read(first, last)

    def _chunk_ranges(self, start: int, stop: int | None, chunk: int) -> list[tuple[int, int]]:
        """``(first, stop)`` of consecutive chunks of at most ``chunk`` frames (checked)."""
        stop = self.info.num_frames if stop is None else stop
        self._check_range(start, stop)
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        return [(first, min(first + chunk, stop)) for first in range(start, stop, chunk)]

    def iter_small(
        self,
        size: tuple[int, int],
        start: int = 0,
        stop: int | None = None,
        chunk: int = 16,
        interpolation: str = "AREA",
    ) -> Iterator[tuple[int, np.ndarray]]:
        """:meth:`iter_chunks` with every frame downscaled to ``size`` = ``(width, height)``
        (``[n, height, width, 3]`` uint8), for the shot detectors. A video scales in FFmpeg's
        scaler as it converts, with ``interpolation`` (an FFmpeg scaler name: ``AREA``,
        ``BICUBIC``, ...; see :meth:`_VideoSource.iter_small`); other sources average areas of
        the full frames."""
        from framematrix.shots.frames import downscale

        for first, frames in self.iter_chunks(start, stop, chunk):
            yield first, downscale(frames, *size)

    def frame_time(self, index: int) -> float:
        """Presentation time in seconds of frame ``index`` relative to the first frame (videos:
        from the stream's timestamps, exact for variable frame rate; else index / fps)."""
        if not 0 <= index < self.info.num_frames:
            raise IndexError(f"frame {index} outside 0:{self.info.num_frames} of {self.info.path}")
        return index / self.info.fps

    def index_at_time(self, seconds: float) -> int:
        """The first frame whose :meth:`frame_time` is >= ``seconds`` minus half a frame, i.e.
        the frame nearest to a start time; ``num_frames`` past the end."""
        half = 0.5 / self.info.fps
        lo, hi = 0, self.info.num_frames
        while lo < hi:
            mid = (lo + hi) // 2
            if self.frame_time(mid) < seconds - half:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def close(self) -> None:
        """Release the file (idempotent)."""


class _VideoSource(FrameSource):
    def __init__(self, path: Path) -> None:
        reader = VideoReader(path, _rgb24)
        try:
            stream = reader.stream
            height, width = reader.first.shape[:2]
            _check_min_size(path, width, height, "video frame")
            rate = _stream_fps(stream)
            fps_fraction = rate if rate is not None else _fraction_of(DEFAULT_FPS)
            fps = float(fps_fraction)
            n = reader.num_frames
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif reader.container.duration is not None:
                duration = reader.container.duration / 1_000_000
            if duration is None or duration <= 0:
                duration = n / fps
            pix_fmt = reader.first_frame.format.name
            first = reader.first_frame
            color = _color_tags(first)
            context_color = _color_tags(stream.codec_context)
            color = {k: v if v is not None else context_color[k] for k, v in color.items()}
            info = SourceInfo(
                path=path,
                kind="video",
                num_frames=n,
                fps=fps,
                fps_fraction=fps_fraction,
                width=width,
                height=height,
                rotation=reader.rotation,
                has_audio=len(reader.container.streams.audio) > 0,
                color=color,
                pix_fmt=pix_fmt,
                bit_depth=int(av.VideoFormat(pix_fmt).components[0].bits),
                names=[f"{i:05d}" for i in range(n)],
                duration_s=duration,
            )
        except BaseException:
            reader.close()
            raise
        super().__init__(info)
        self._reader = reader

    def read(self, start: int, stop: int) -> np.ndarray:
        self._check_range(start, stop)
        frames = self._reader.read(int(start), int(stop))
        return np.stack(frames) if frames else self._empty()

    def iter_small(
        self,
        size: tuple[int, int],
        start: int = 0,
        stop: int | None = None,
        chunk: int = 16,
        interpolation: str = "AREA",
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Small frames straight from the decoder: FFmpeg's scaler converts each frame to RGB at
        ``size`` with ``interpolation``, so no full-size RGB frame is made (the conversion of
        full frames is a third of the cost of a shot pass)."""
        width, height = size
        if self._reader.rotation in (90, 270):  # scaled before the rotation: stored axes
            width, height = height, width

        def small(frame: av.VideoFrame) -> np.ndarray:
            scaled = frame.reformat(
                width=width, height=height, format="rgb24", interpolation=interpolation
            )
            return scaled.to_ndarray()

        for first, last in self._chunk_ranges(start, stop, chunk):
            yield first, np.stack(self._reader.read(first, last, small))

    def frame_time(self, index: int) -> float:
        super().frame_time(index)  # range check
        seconds = self._reader.frame_time(index)
        return index / self.info.fps if seconds is None else seconds

    def close(self) -> None:
        self._reader.close()


class _FilesSource(FrameSource):
    """A folder of frames (or one image): files read one at a time."""

    def __init__(self, path: Path, files: list[Path], kind: str, fps: float) -> None:
        first = read_image(files[0])
        height, width = first.shape[:2]
        _check_min_size(files[0], width, height, "image")
        fraction = _fraction_of(fps)
        info = SourceInfo(
            path=path,
            kind=kind,
            num_frames=len(files),
            fps=fps,
            fps_fraction=fraction,
            width=width,
            height=height,
            rotation=0,
            has_audio=False,
            color={"primaries": None, "transfer": None, "matrix": None, "range": None},
            pix_fmt=None,
            bit_depth=_image_bit_depth(files[0]),
            names=[f.stem for f in files],
            duration_s=len(files) / fps,
        )
        super().__init__(info)
        self._files = files
        self._first: np.ndarray | None = first

    def read(self, start: int, stop: int) -> np.ndarray:
        self._check_range(start, stop)
        out = np.empty((stop - start, self.info.height, self.info.width, 3), np.uint8)
        for i in range(start, stop):
            if i == 0 and self._first is not None:
                image = self._first
            else:
                image = read_image(self._files[i])
            if image.shape[:2] != (self.info.height, self.info.width):
                raise InputError(
                    f"{self._files[i]}: frame size {image.shape[1]}x{image.shape[0]} differs from "
                    f"{self.info.width}x{self.info.height} of {self._files[0].name} "
                    "(all frames must match)"
                )
            out[i - start] = image
        return out

    def close(self) -> None:
        self._first = None


def open_source(path: str | os.PathLike[str], fps: float | None = None) -> FrameSource:
    """Open a video file, a folder of frames or one image as a :class:`FrameSource`.

    path: a video (.mp4 .mov .mkv .avi .webm, decoded with PyAV; the first frame is decoded to
        learn the rotation and check the file), a folder of .png/.jpg/.jpeg frames (natural
        order, hidden files skipped, all the same size; only the first is read now) or one image.
    fps: frame rate for frame folders and images (default 24). A video always keeps its own rate,
        so that copied audio stays in sync.

    Raises InputError (one line naming the file) for a missing path, an unsupported extension, an
    unreadable or corrupt file, an empty folder or video, or frames smaller than 2x2 pixels.
    """
    path = Path(path)
    frame_rate = check_fps(fps)
    kind = kind_of(path)
    if kind == "video":
        return _VideoSource(path)
    if kind == "frames":
        files = list_image_files(path)
        if not files:
            raise InputError(
                f"{path}: folder has no images ({', '.join(IMAGE_EXTENSIONS)}; hidden files "
                "skipped)"
            )
        return _FilesSource(path, files, kind, frame_rate)
    return _FilesSource(path, [path], kind, frame_rate)
