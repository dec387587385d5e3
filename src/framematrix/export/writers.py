"""Output writers: H.264 / H.265 / FFV1 video (with the source's audio), PNG frame folders, images.

Everything is written atomically (a hidden temporary name beside the target, renamed when
complete), so a failure midway never leaves a partial output under the final name.
Frames are accepted as uint8 [0, 255], uint16 [0, 65535] (video only: keeps 10-bit sources
10-bit) or float [0, 1] (clipped, rounded to the output's depth).

Video encoding is described by :class:`VideoEncoding` (codec, pixel format, CRF, preset, the
source's colour tags, frame-packing SEI, GOP structure); :class:`VideoWriter` streams frames into a
file one at a time and :func:`write_video` is its one-call form.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import cv2
import numpy as np
from tqdm.auto import tqdm

from framematrix.errors import InputError, ShapeError
from framematrix.io.atomic import atomic_dir, atomic_path
from framematrix.options import X264_PRESETS
from framematrix.progress import Progress

__all__ = [
    "COLOR_KEYS",
    "FRAME_PACKINGS",
    "IMAGE_OUTPUT_EXTENSIONS",
    "PIX_FMTS",
    "VIDEO_CODECS",
    "VIDEO_OUTPUT_EXTENSIONS",
    "X264_PRESETS",
    "VideoEncoding",
    "VideoWriter",
    "color_tags",
    "fps_fraction",
    "to_uint8",
    "to_uint16",
    "write_frames",
    "write_image",
    "write_video",
]

# Output extension -> FFmpeg muxer name.
VIDEO_OUTPUT_EXTENSIONS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
IMAGE_OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg")
# BT.709 code point shared by the colour primaries, transfer and matrix enums of FFmpeg/H.264.
_BT709 = 1
# --codec name -> FFmpeg encoder.
VIDEO_CODECS = {"h264": "libx264", "h265": "libx265", "ffv1": "ffv1"}
# Pixel formats offered, all taken by every codec above (checked against the encoders' lists):
# yuv420p (8-bit 4:2:0, plays everywhere), yuv420p10le (10-bit 4:2:0: H.265 Main 10, H.264 High 10,
# FFV1), yuv444p (8-bit, no chroma subsampling: H.264 High 4:4:4, H.265 RExt, FFV1).
PIX_FMTS = ("yuv420p", "yuv420p10le", "yuv444p")
# frame_packing -> arrangement type of the H.264 frame-packing SEI (x264 --frame-packing).
FRAME_PACKINGS = {"sbs": 3, "tb": 4}
# Keys of a colour tag dict, and the PyAV codec-context attribute each is read from.
COLOR_KEYS = ("primaries", "transfer", "matrix", "range")
_COLOR_ATTRS = {
    "primaries": "color_primaries",
    "transfer": "color_trc",
    "matrix": "colorspace",
    "range": "color_range",
}
# Matrix coefficients (FFmpeg AVColorSpace) -> the swscale conversion that implements it. A matrix
# outside this table (RGB, YCgCo, ICtCp, ...) cannot be written from RGB frames by swscale: the
# output then uses and is tagged BT.709. BT.2020 constant luminance (10) is written as the
# non-constant-luminance BT.2020 (9), the only BT.2020 matrix swscale implements.
_SWS_MATRIX = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020"}
_MATRIX_WRITTEN = {10: 9}
_UNSPECIFIED = 2  # AVCOL_PRI/TRC/SPC_UNSPECIFIED
_X265_MIN_WIDTH_DEEP = 64
_MAX_REORDER = 64  # frames a decode timestamp may precede its presentation (B-frame delay)
_RANGE_NAMES = {1: "MPEG", 2: "JPEG"}


def color_tags(source: Any) -> dict[str, int]:
    """The colour tags of a PyAV video stream or codec context, as a VideoEncoding ``color`` dict.

    ``{"primaries": int, "transfer": int, "matrix": int, "range": int}``: FFmpeg's AVColorPrimaries,
    AVColorTransferCharacteristic, AVColorSpace and AVColorRange code points (the ISO/IEC 23091-2
    values), as PyAV reports them in ``stream.codec_context.color_primaries`` etc.
    """
    context = getattr(source, "codec_context", source)
    return {key: int(getattr(context, attr) or 0) for key, attr in _COLOR_ATTRS.items()}


@dataclass(frozen=True)
class VideoEncoding:
    """How a video output is encoded.

    codec: "h264" (libx264), "h265" (libx265, tagged ``hvc1`` in .mp4/.mov so Apple players take
        it) or "ffv1" (lossless, .mkv only).
    pix_fmt: one of PIX_FMTS. yuv420p10le keeps a 10-bit source 10-bit (give uint16 frames).
    crf: constant rate factor 0..51 of x264/x265 (18 is visually near-lossless); unused by FFV1.
    preset: x264/x265 speed preset (X264_PRESETS; x265 has the same names); unused by FFV1.
    color: the source's colour tags ``{"primaries", "transfer", "matrix", "range"}`` as read by
        :func:`color_tags` (any key may be missing or None). The RGB frames are converted to YUV
        with the source's matrix and range and the output stream carries all four tags, so a player
        shows the colours the source shows. Missing or unspecified tags mean BT.709, limited range.
        No gamut or transfer conversion is made: frames are assumed to be in the source's colours.
    frame_packing: "sbs" or "tb": write the H.264 frame-packing arrangement SEI (x264
        ``frame-packing=3`` / ``4``) so 3D TVs and players switch to side-by-side / top-bottom by
        themselves (meant for half-SBS / half-TB). H.264 only.
    keyframe_interval: frames between keyframes (GOP length); None = the encoder's default (250).
    closed_gop: no frame references across a keyframe (x265 ``open-gop=0``; x264 is closed unless
        told otherwise). Segments of a resumable job use closed GOPs.
    spherical: "vr180" adds the Spherical Video V2 boxes (``st3d`` left-right, ``sv3d`` with a
        180-degree equirectangular ``equi``) to a .mp4/.mov output, see framematrix.export.vr180.

    The first frame of every file is an IDR keyframe, and the same VideoEncoding gives the same
    codec parameters (SPS/PPS) whatever the frame content or count, so segment files written with
    one VideoEncoding can be joined by remux (framematrix.export.join).
    """

    codec: str = "h264"
    pix_fmt: str = "yuv420p"
    crf: int = 18
    preset: str = "medium"
    color: Mapping[str, int | None] | None = field(default=None, hash=False)
    frame_packing: str | None = None
    keyframe_interval: int | None = None
    closed_gop: bool = False
    spherical: str | None = None

    def for_segments(self, keyframe_interval: int | None = None) -> VideoEncoding:
        """The same encoding with closed GOPs (and an optional GOP length), for segment files."""
        interval = keyframe_interval if keyframe_interval is not None else self.keyframe_interval
        return replace(self, closed_gop=True, keyframe_interval=interval)

    @property
    def deep(self) -> bool:
        """Whether the pixel format has more than 8 bits per sample."""
        return self.pix_fmt.endswith("10le")

    def check(self, path: Path) -> str:
        """Validate against the output ``path``; returns the FFmpeg muxer name.

        Raises InputError (one line naming the file) for a bad value or combination.
        """
        muxer = VIDEO_OUTPUT_EXTENSIONS.get(path.suffix.lower())
        if muxer is None:
            raise InputError(
                f"{path}: unsupported video output type '{path.suffix or '(none)'}' "
                f"(use {', '.join(VIDEO_OUTPUT_EXTENSIONS)})"
            )
        if self.codec not in VIDEO_CODECS:
            raise InputError(
                f"{path}: unknown codec {self.codec!r}; choose one of {', '.join(VIDEO_CODECS)}"
            )
        if self.pix_fmt not in PIX_FMTS:
            raise InputError(
                f"{path}: unknown pixel format {self.pix_fmt!r}; "
                f"choose one of {', '.join(PIX_FMTS)}"
            )
        if self.codec == "ffv1" and muxer != "matroska":
            raise InputError(f"{path}: ffv1 is written in .mkv only (got '{path.suffix}')")
        if not 0 <= int(self.crf) <= 51:
            raise InputError(f"{path}: crf must be in 0..51, got {self.crf}")
        if self.preset not in X264_PRESETS:
            raise InputError(
                f"{path}: unknown preset {self.preset!r}; choose one of {', '.join(X264_PRESETS)}"
            )
        if self.frame_packing is not None:
            if self.frame_packing not in FRAME_PACKINGS:
                raise InputError(
                    f"{path}: unknown frame packing {self.frame_packing!r}; "
                    f"choose one of {', '.join(FRAME_PACKINGS)}"
                )
            if self.codec != "h264":
                raise InputError(
                    f"{path}: the frame-packing SEI is written by H.264 only (codec {self.codec})"
                )
        if self.keyframe_interval is not None and int(self.keyframe_interval) < 1:
            raise InputError(
                f"{path}: keyframe interval must be >= 1, got {self.keyframe_interval}"
            )
        if self.spherical is not None:
            if self.spherical != "vr180":
                raise InputError(f"{path}: unknown spherical layout {self.spherical!r} (vr180)")
            if muxer not in ("mp4", "mov"):
                raise InputError(
                    f"{path}: VR180 metadata is written in .mp4/.mov only (got '{path.suffix}')"
                )
        if self.color is not None:
            unknown = set(self.color) - set(COLOR_KEYS)
            if unknown:
                raise InputError(
                    f"{path}: unknown colour tag {sorted(unknown)[0]!r} "
                    f"(use {', '.join(COLOR_KEYS)})"
                )
        return muxer

    def written_color(self) -> dict[str, int]:
        """The four colour tags the output carries (after the BT.709 / limited defaults)."""
        given = {key: int(value or 0) for key, value in (self.color or {}).items()}

        def tag(key: str) -> int:
            value = given.get(key, 0)
            return _BT709 if value in (0, _UNSPECIFIED) else value

        matrix = _MATRIX_WRITTEN.get(tag("matrix"), tag("matrix"))
        if matrix not in _SWS_MATRIX:
            matrix = _BT709
        value_range = given.get("range", 0)
        return {
            "primaries": tag("primaries"),
            "transfer": tag("transfer"),
            "matrix": matrix,
            "range": value_range if value_range in _RANGE_NAMES else 1,
        }

    def codec_options(self) -> dict[str, str]:
        """The FFmpeg encoder options (crf, preset, x264-params / x265-params)."""
        if self.codec == "ffv1":
            # Version 3 with slice CRCs: the error-resilient archival setting; GOP 1 (intra).
            return {"level": "3", "slicecrc": "1"}
        options = {"crf": str(int(self.crf)), "preset": self.preset}
        params: list[str] = []
        if self.codec == "h264":
            if self.frame_packing is not None:
                params.append(f"frame-packing={FRAME_PACKINGS[self.frame_packing]}")
            if self.closed_gop:
                params.append("open-gop=0")
            if params:
                options["x264-params"] = ":".join(params)
        else:
            params.append("log-level=error")  # x265 prints its summary on stderr otherwise
            if self.closed_gop:
                params.append("open-gop=0")
            options["x265-params"] = ":".join(params)
        return options


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """uint8 passes unchanged; floats in [0, 1] -> round(clip(x, 0, 1) * 255) (NaN -> 0)."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    if not np.issubdtype(frames.dtype, np.floating):
        raise ShapeError(f"frames must be uint8 or float in [0, 1], got dtype {frames.dtype}")
    scaled = np.rint(np.clip(np.nan_to_num(frames, nan=0.0), 0.0, 1.0) * 255.0)
    return scaled.astype(np.uint8)


def to_uint16(frames: np.ndarray) -> np.ndarray:
    """uint16 passes unchanged; uint8 -> x * 257 (0..255 onto 0..65535); floats in [0, 1] ->
    round(clip(x, 0, 1) * 65535) (NaN -> 0)."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint16:
        return frames
    if frames.dtype == np.uint8:
        return frames.astype(np.uint16) * 257
    if not np.issubdtype(frames.dtype, np.floating):
        raise ShapeError(f"frames must be uint8, uint16 or float in [0, 1], got {frames.dtype}")
    scaled = np.rint(np.clip(np.nan_to_num(frames, nan=0.0), 0.0, 1.0) * 65535.0)
    return scaled.astype(np.uint16)


def fps_fraction(fps: float | Fraction) -> Fraction:
    """An exact frame rate: 29.97002997 -> 30000/1001, 24.0 -> 24 (denominator at most 1001)."""
    if isinstance(fps, Fraction):
        rate = fps
    else:
        if not np.isfinite(fps):
            raise ValueError(f"fps must be a positive number, got {fps}")
        rate = Fraction(float(fps)).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    return rate


def _iter_frames(
    frames: np.ndarray | Iterable[np.ndarray],
) -> tuple[Iterator[np.ndarray], int | None]:
    """Frames one at a time, with the count when known ([F, H, W, 3] array or a sized sequence)."""
    if isinstance(frames, np.ndarray) or hasattr(frames, "__array__"):
        array = np.asarray(frames)
        if array.ndim != 4 or array.shape[-1] != 3:
            raise ShapeError(f"frames must be [F, H, W, 3], got shape {array.shape}")
        return iter(array), int(array.shape[0])
    total = len(frames) if hasattr(frames, "__len__") else None
    return iter(frames), total


def _checked_frame(frame: np.ndarray, index: int, size: tuple[int, int] | None) -> np.ndarray:
    frame = to_uint8(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ShapeError(f"frame {index} must be [H, W, 3], got shape {frame.shape}")
    if size is not None and frame.shape[:2] != size:
        raise ShapeError(
            f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
            f"the first frame was {size[1]}x{size[0]} (all frames must match)"
        )
    return frame


def _pad_even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: an odd side gets one replicated row/column (bottom/right)."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frame


# ----------------------------------------------------------------------------- audio


def _template_fits(muxer: str, stream: av.audio.stream.AudioStream) -> bool:
    """Whether ``stream``'s codec can be copied into a ``muxer`` container (tried in memory).

    PCM passes the in-memory header test for mp4 but fails when the trailer is written, so it is
    refused for mp4 up front (mov and mkv take it).
    """
    if muxer == "mp4" and stream.codec_context.name.startswith("pcm_"):
        return False
    try:
        with av.open(io.BytesIO(), "w", format=muxer) as probe:
            probe.add_stream_from_template(stream)
            probe.start_encoding()
    except (av.error.FFmpegError, ValueError, TypeError):
        return False
    return True


# FFmpeg's default layout per channel count (what the AAC encoder accepts).
_DEFAULT_LAYOUTS = {
    1: "mono",
    2: "stereo",
    3: "2.1",
    4: "4.0",
    5: "5.0",
    6: "5.1",
    7: "6.1",
    8: "7.1",
}


def _aac_layout(layout: av.AudioLayout) -> str | av.AudioLayout:
    """The input layout if the AAC encoder takes it, else the default layout of its channel count.

    Layouts of unspecified order (common in AVI/WAV) are refused by the encoder; more than 8
    channels are downmixed to stereo by the encoder's resampler.
    """
    if all(channel.name != "NONE" for channel in layout.channels) and layout.nb_channels <= 8:
        return layout
    return _DEFAULT_LAYOUTS.get(layout.nb_channels, "stereo")


class _AudioCopier:
    """Moves the first audio stream of a media file into the output, interleaved with the video.

    Packets are copied unchanged (remux) when the output container accepts the codec; otherwise
    the audio is decoded and re-encoded as AAC. Timing is kept relative to the first video frame of
    the source (its video start time), and audio that starts at or after the end of the new video
    is dropped, so a clip read with ``max_frames`` gets matching audio.
    """

    def __init__(
        self,
        source: Path,
        output: av.container.OutputContainer,
        muxer: str,
        start: Fraction = Fraction(0),
        end: Fraction | None = None,
    ) -> None:
        self.source = source
        self.input = av.open(str(source))
        self.in_stream = self.input.streams.audio[0]
        starts = [s.start_time * s.time_base for s in self.input.streams.video if s.start_time]
        origin = starts[0] if starts else Fraction(0)
        self.transcode = not _template_fits(muxer, self.in_stream)
        if self.transcode:
            self.out_stream = output.add_stream("aac", rate=self.in_stream.rate)
            self.out_stream.layout = _aac_layout(self.in_stream.layout)
        else:
            self.out_stream = output.add_stream_from_template(self.in_stream)
        # Offsets in the input stream's time base (PyAV rescales to the output's on mux). Time 0
        # of the output is ``start`` seconds after the source's first video frame.
        self.offset = int(round((origin + Fraction(start)) / self.in_stream.time_base))
        if start > 0:
            # Land on a packet at or before ``start``; the packets before it are dropped below.
            self.input.seek(self.offset, stream=self.in_stream, backward=True, any_frame=False)
        self.packets = self.input.demux(self.in_stream)
        self.pending: av.Packet | None = None
        self.next_sample: int | None = None
        self.done = False
        self.output = output
        # Transcoded audio is cut to the sample at ``cut`` (seconds from time 0): the end of a
        # partial convert, then also the video's end once known (finish).
        self.cut: Fraction | None = end
        self.trim_start = start > 0

    def _next_packet(self) -> av.Packet | None:
        try:
            for packet in self.packets:
                if packet.dts is None and packet.pts is None:
                    continue  # the demuxer's final empty packet
                return packet
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.source}: corrupt audio stream: {exc}") from exc
        return None

    def _packet_time(self, packet: av.Packet) -> Fraction:
        stamp = packet.pts if packet.pts is not None else packet.dts
        return (stamp - self.offset) * self.in_stream.time_base

    def pump(self, until: Fraction) -> None:
        """Write the audio that starts before ``until`` (seconds from the output's time 0)."""
        while not self.done:
            packet = self.pending if self.pending is not None else self._next_packet()
            self.pending = None
            if packet is None:
                self.done = True
                break
            if self._packet_time(packet) >= until:
                self.pending = packet
                break
            self._write(packet)

    def _write(self, packet: av.Packet) -> None:
        packet_time = self._packet_time(packet)
        if self.transcode:
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                raise InputError(f"{self.source}: corrupt audio stream: {exc}") from exc
            for frame in frames:
                frame = self._trimmed(frame, packet_time)
                if frame is None:
                    continue
                # Continuous sample numbering from the first sample kept keeps A/V sync and
                # lets the encoder mark its priming samples (trimmed by an MP4 edit list).
                if self.next_sample is None:
                    self.next_sample = round(max(packet_time, Fraction(0)) * frame.sample_rate)
                    if not self.trim_start:
                        self.next_sample = round(packet_time * frame.sample_rate)
                frame.pts = self.next_sample
                frame.time_base = Fraction(1, frame.sample_rate)
                self.next_sample += frame.samples
                for out_packet in self.out_stream.encode(frame):
                    self.output.mux(out_packet)
            return
        if self.trim_start and packet_time < 0:
            return  # before the start of a partial convert (copied packets cannot be cut)
        if packet.pts is not None:
            packet.pts -= self.offset
        if packet.dts is not None:
            packet.dts -= self.offset
        packet.stream = self.out_stream
        self.output.mux(packet)

    def _trimmed(self, frame: av.AudioFrame, packet_time: Fraction) -> av.AudioFrame | None:
        """The decoded samples of ``frame`` inside [0, until), to the sample (None if none)."""
        rate = frame.sample_rate
        first = 0
        if self.trim_start and packet_time < 0:
            first = min(frame.samples, round(-packet_time * rate))
        last = frame.samples
        if self.cut is not None:
            last = max(first, min(last, round((self.cut - packet_time) * rate)))
        if first == 0 and last == frame.samples:
            return frame
        if last <= first:
            return None
        samples = frame.to_ndarray()
        channels = frame.layout.nb_channels
        if frame.format.is_planar:
            cut = samples[:, first:last]
        else:
            cut = samples[:, first * channels : last * channels]
        trimmed = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(cut), format=frame.format.name, layout=frame.layout
        )
        trimmed.sample_rate = rate
        return trimmed

    def finish(self, video_end: Fraction) -> None:
        self.cut = video_end if self.cut is None else min(self.cut, video_end)
        self.pump(self.cut)
        if self.transcode:
            for out_packet in self.out_stream.encode(None):
                self.output.mux(out_packet)

    def close(self) -> None:
        self.input.close()


def _open_audio_source(
    audio_from: str | os.PathLike[str],
    output: av.container.OutputContainer,
    muxer: str,
    start: Fraction = Fraction(0),
    end: Fraction | None = None,
) -> _AudioCopier | None:
    source = Path(audio_from)
    if not source.is_file():
        raise InputError(f"{source}: audio source not found")
    try:
        with av.open(str(source)) as probe:
            if not probe.streams.audio:
                return None
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"{source}: cannot open audio source: {exc}") from exc
    return _AudioCopier(source, output, muxer, start, end)


# ----------------------------------------------------------------------------- video


def _video_frame(
    frame: np.ndarray, index: int, size: tuple[int, int] | None, deep: bool
) -> np.ndarray:
    """A checked [H, W, 3] frame as uint8, or uint16 when it has more than 8 bits to give.

    uint8 and uint16 pass unchanged; floats in [0, 1] become uint16 for a deep (10-bit) output,
    else uint8.
    """
    frame = np.asarray(frame)
    if frame.dtype == np.uint16:
        pass
    elif deep and np.issubdtype(frame.dtype, np.floating):
        frame = to_uint16(frame)
    else:
        frame = to_uint8(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ShapeError(f"frame {index} must be [H, W, 3], got shape {frame.shape}")
    if size is not None and frame.shape[:2] != size:
        raise ShapeError(
            f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
            f"the first frame was {size[1]}x{size[0]} (all frames must match)"
        )
    return frame


class VideoWriter:
    """Streams frames into a video file: ``with VideoWriter(path, fps, encoding) as w: w.write(f)``.

    path: .mp4, .mov or .mkv (the container follows the extension). Written under a hidden
        temporary name and moved onto ``path`` by :meth:`close` (leaving the ``with`` block
        normally); an exception inside the block, or :meth:`abort`, removes it and leaves ``path``
        as it was.
    fps: frame rate; fractional NTSC rates are kept exact (29.97 -> 30000/1001 time base).
    encoding: a VideoEncoding (default: H.264 yuv420p CRF 18 medium, BT.709).
    audio_from: a media file whose first audio stream is added (copied when the container takes
        the codec, else transcoded to AAC), cut to the video's length; a file without audio adds
        none. audio_start_s: where in that file the audio starts (for a part of the input, the
        time of its first frame); audio before it is dropped.
    progress: a Progress (or True for a bar) counting the frames written, unit "frame".

    Frames: [H, W, 3] uint8 [0, 255], uint16 [0, 65535] or float [0, 1], all the same size; 4:2:0
    formats need even sides, so an odd height or width is padded by one replicated row/column at
    the bottom/right (nothing is cropped).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float | Fraction,
        encoding: VideoEncoding | None = None,
        *,
        audio_from: str | os.PathLike[str] | None = None,
        audio_start_s: float = 0.0,
        progress: Progress | bool = False,
        total: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.encoding = encoding or VideoEncoding()
        self.muxer = self.encoding.check(self.path)
        self.rate = fps_fraction(fps)
        self.color = self.encoding.written_color()
        self.frames_written = 0
        self._audio_from = audio_from
        self._audio_start = Fraction(audio_start_s).limit_denominator(1_000_000)
        self._progress = Progress.of(progress)
        self._total = total
        self._stack: ExitStack | None = None
        self._output: av.container.OutputContainer | None = None
        self._stream: Any = None
        self._audio: _AudioCopier | None = None
        self._task: Any = None
        self._size: tuple[int, int] | None = None
        self._closed = False
        self._last_dts: int | None = None

    # -- context manager
    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort(exc_type, exc, tb)

    # -- writing
    def _open(self, first: np.ndarray) -> None:
        height, width = first.shape[:2]
        if self.encoding.pix_fmt.startswith("yuv420"):
            height, width = height + height % 2, width + width % 2
        if self.encoding.codec == "h265":
            # x265 refuses sides under 16 px; its 10-bit encoder in PyAV's wheel corrupts the heap
            # (the process aborts) on some widths under 50 (8, 40-49 seen), so those are refused.
            narrowest = _X265_MIN_WIDTH_DEEP if self.encoding.deep else 16
            if width < narrowest or height < 16:
                raise InputError(
                    f"{self.path}: {width}x{height} is too small for H.265 {self.encoding.pix_fmt} "
                    f"(at least {narrowest}x16)"
                )
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._tmp = tmp
        self._task = self._stack.enter_context(
            self._progress.task(f"encode {self.path.name}", self._total)
        )
        # faststart moves the index to the front (playable while downloading); MKV needs nothing.
        options = {"movflags": "+faststart"} if self.muxer in ("mp4", "mov") else {}
        self._output = av.open(str(tmp), "w", format=self.muxer, options=options)
        stream = self._output.add_stream(VIDEO_CODECS[self.encoding.codec], rate=self.rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = self.encoding.pix_fmt
        stream.options = self.encoding.codec_options()
        context = stream.codec_context
        if self.encoding.keyframe_interval is not None:
            context.gop_size = int(self.encoding.keyframe_interval)
        if self.encoding.codec == "h265" and self.muxer in ("mp4", "mov"):
            context.codec_tag = "hvc1"  # parameter sets in the sample entry: what Apple plays
        context.color_primaries = self.color["primaries"]
        context.color_trc = self.color["transfer"]
        context.colorspace = self.color["matrix"]
        context.color_range = self.color["range"]
        self._stream = stream
        self._reformat = {
            "format": self.encoding.pix_fmt,
            "dst_colorspace": _SWS_MATRIX[self.color["matrix"]],
            "dst_color_range": _RANGE_NAMES[self.color["range"]],
        }
        # Primaries and transfer are tags only (set on the codec context above): passing them to
        # reformat makes FFmpeg 8's swscale convert the gamut and transfer, which is not wanted
        # (the frames are already in the source's colours).
        if self._audio_from is not None:
            self._audio = _open_audio_source(
                self._audio_from, self._output, self.muxer, start=self._audio_start
            )

    def write(self, frame: np.ndarray) -> None:
        """Encode one frame [H, W, 3] (uint8, uint16 or float in [0, 1])."""
        if self._closed:
            raise RuntimeError(f"{self.path}: the writer is closed")
        frame = _video_frame(frame, self.frames_written, self._size, self.encoding.deep)
        if self._output is None:
            try:
                self._open(frame)
            except BaseException as exc:
                self.abort(type(exc), exc, exc.__traceback__)
                raise
            self._size = frame.shape[:2]
        source = "rgb48le" if frame.dtype == np.uint16 else "rgb24"
        if self.encoding.pix_fmt.startswith("yuv420"):
            frame = _pad_even(frame)
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=source)
        video_frame = video_frame.reformat(**self._reformat)
        video_frame.pts = self.frames_written
        video_frame.time_base = 1 / self.rate
        try:
            packets = self._stream.encode(video_frame)
        except av.error.FFmpegError as exc:
            self.abort(type(exc), exc, exc.__traceback__)
            raise InputError(
                f"{self.path}: the {self.encoding.codec} encoder refused "
                f"{frame.shape[1]}x{frame.shape[0]} {self.encoding.pix_fmt}: {exc}"
            ) from exc
        for packet in packets:
            self._mux(packet)
        self.frames_written += 1
        self._task.update(1)
        if self._audio is not None:
            self._audio.pump(self.frames_written / self.rate)

    def _mux(self, packet: av.Packet) -> None:
        """Mux one video packet (timestamps in frames), repairing a decode timestamp x265 leaves
        uninitialised: in a stream of 1 or 2 frames its first packet carries a garbage dts, which
        the mp4 muxer refuses. A dts is kept when it is at most the pts, at most
        _MAX_REORDER frames before it and after the previous one."""
        pts, dts = packet.pts, packet.dts
        if pts is not None:
            valid = dts is not None and pts - _MAX_REORDER <= dts <= pts
            if valid and self._last_dts is not None and dts <= self._last_dts:
                valid = False
            if not valid:
                dts = pts if self._last_dts is None or pts > self._last_dts else self._last_dts + 1
                packet.dts = dts
            self._last_dts = dts
        self._output.mux(packet)

    def write_many(self, frames: np.ndarray | Iterable[np.ndarray]) -> None:
        """Encode [F, H, W, 3] frames or an iterable of [H, W, 3] frames."""
        frame_iter, _ = _iter_frames(frames)
        for frame in frame_iter:
            self.write(frame)

    def close(self) -> Path:
        """Flush the encoder, write the trailer and move the file onto ``path``; returns it."""
        if self._closed:
            return self.path
        if self._output is None:
            self._closed = True
            raise ShapeError(f"{self.path}: no frames to write")
        try:
            for packet in self._stream.encode(None):
                self._mux(packet)
            if self._audio is not None:
                self._audio.finish(self.frames_written / self.rate)
            self._output.close()
            if self._audio is not None:
                self._audio.close()
            if self.encoding.spherical == "vr180":
                from framematrix.export.vr180 import add_vr180_metadata

                add_vr180_metadata(self._tmp)
        except BaseException as exc:
            self.abort(type(exc), exc, exc.__traceback__)
            raise
        self._closed = True
        stack, self._stack = self._stack, None
        assert stack is not None
        stack.close()  # renames the temporary file onto the output
        return self.path

    def abort(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        """Stop without an output: close the containers and remove the temporary file."""
        self._closed = True
        if self._output is not None:
            _close_quietly(self._output, self._audio)
        stack, self._stack = self._stack, None
        if stack is not None:
            if exc_type is None:
                exc = RuntimeError(f"{self.path}: writing was aborted")
                exc_type = RuntimeError
            stack.__exit__(exc_type, exc, tb)


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float | Fraction,
    crf: int = 18,
    preset: str = "medium",
    audio_from: str | os.PathLike[str] | None = None,
    progress: Progress | bool = False,
    *,
    encoding: VideoEncoding | None = None,
    audio_start_s: float = 0.0,
) -> Path:
    """Encode frames into .mp4, .mov or .mkv (H.264 yuv420p BT.709 unless ``encoding`` says).

    path: output file; the container follows the extension. Written atomically.
    frames: [F, H, W, 3] array or an iterable of [H, W, 3] frames (e.g. a generator, so long videos
        need not sit in memory); uint8 [0, 255], uint16 [0, 65535] or float in [0, 1]. 4:2:0
        formats need even sides: an odd height or width is padded by one replicated row/column at
        the bottom/right (nothing is cropped).
    fps: frame rate; fractional NTSC rates are kept exact (29.97 -> 30000/1001 time base).
    crf, preset: x264/x265 constant rate factor 0..51 and speed preset (X264_PRESETS); used when
        ``encoding`` is None (an ``encoding`` carries its own).
    audio_from: a media file (usually the input video) whose first audio stream is added. Packets
        are copied without re-encoding when the container accepts the codec; otherwise (e.g. ADPCM
        from an AVI into MP4) the audio is transcoded to AAC. Audio past the end of the video is
        dropped. A file without audio adds none. audio_start_s: the time in it of the first frame.
    progress: a Progress or True for a bar.
    encoding: codec, pixel format, colour tags, frame packing, GOP (see VideoEncoding).

    Returns the output path. Raises ShapeError for bad frames, InputError for an unsupported
    extension, a bad encoding option or an unreadable audio source; nothing is left at ``path``
    on any failure.
    """
    if encoding is None:
        if not 0 <= int(crf) <= 51:
            raise ValueError(f"crf must be in 0..51, got {crf}")
        if preset not in X264_PRESETS:
            raise ValueError(
                f"unknown x264 preset {preset!r}; choose one of {', '.join(X264_PRESETS)}"
            )
        encoding = VideoEncoding(crf=int(crf), preset=preset)
    frame_iter, total = _iter_frames(frames)
    writer = VideoWriter(
        path,
        fps,
        encoding,
        audio_from=audio_from,
        audio_start_s=audio_start_s,
        progress=progress,
        total=total,
    )
    with writer:
        for frame in frame_iter:
            writer.write(frame)
    return writer.path


def _close_quietly(output: av.container.OutputContainer, audio: _AudioCopier | None) -> None:
    """Close containers on the error path without masking the original exception."""
    for close in (output.close, audio.close if audio is not None else None):
        if close is None:
            continue
        try:
            close()
        except Exception:  # noqa: BLE001 - the original error is the one worth reporting
            pass


# ----------------------------------------------------------------------------- images


def _check_image_extension(path: Path) -> None:
    if path.suffix.lower() not in IMAGE_OUTPUT_EXTENSIONS:
        raise InputError(
            f"{path}: unsupported image output type '{path.suffix or '(none)'}' "
            f"(use {', '.join(IMAGE_OUTPUT_EXTENSIONS)})"
        )


def _imwrite(path: Path, frame: np.ndarray, jpeg_quality: int) -> None:
    # JPEG quality is a JPEG-only key: OpenCV warns once per PNG when it is passed there.
    is_jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if is_jpeg else []
    if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"{path}: OpenCV could not write the image")


def write_image(path: str | os.PathLike[str], frame: np.ndarray, jpeg_quality: int = 95) -> Path:
    """Write one [H, W, 3] RGB frame (uint8 or float [0, 1]) as .png or .jpg, atomically."""
    final = Path(path)
    _check_image_extension(final)
    image = _checked_frame(frame, 0, None)
    with atomic_path(final) as tmp:
        _imwrite(tmp, image, jpeg_quality)
    return final


def write_frames(
    folder: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    names: list[str] | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write frames as ``folder/<name>.png`` (names default ``00000``, ``00001``, ...).

    frames: [F, H, W, 3] array or iterable of [H, W, 3]; uint8 or float in [0, 1].
    names: F file stems (e.g. Clip.names), unique, without path separators.
    The folder is built under a temporary name and renamed into place when complete; an existing
    folder at ``folder`` is replaced only then.
    """
    final = Path(folder)
    frame_iter, total = _iter_frames(frames)
    if names is not None:
        names = [str(n) for n in names]
        bad = [n for n in names if not n or "/" in n or "\\" in n or n in (".", "..")]
        if bad:
            raise ValueError(f"frame names must be plain file stems, got {bad[0]!r}")
        if len(set(names)) != len(names):
            raise ValueError("frame names must be unique")
        if total is not None and total != len(names):
            raise ShapeError(f"{final}: {total} frames but {len(names)} names")
    size: tuple[int, int] | None = None
    with atomic_dir(final, overwrite=overwrite) as tmp:
        for index, frame in enumerate(
            tqdm(frame_iter, total=total, disable=not progress, unit="frame", desc=final.name)
        ):
            image = _checked_frame(frame, index, size)
            size = image.shape[:2]
            if names is not None and index >= len(names):
                raise ShapeError(f"{final}: more frames than the {len(names)} names given")
            stem = names[index] if names is not None else f"{index:05d}"
            _imwrite(tmp / f"{stem}.png", image, 95)
        if size is None:
            raise ShapeError(f"{final}: no frames to write")
        if names is not None and index + 1 != len(names):
            raise ShapeError(f"{final}: {index + 1} frames but {len(names)} names")
    return final
