"""Output writers: H.264 video (with the source's audio), PNG frame folders, single images.

Everything is written atomically (a hidden temporary name beside the target, renamed when
complete), so a failure midway never leaves a partial output under the final name.
Frames are accepted as uint8 [0, 255] or float [0, 1] (clipped, rounded to uint8).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm.auto import tqdm

from framematrix.errors import InputError, ShapeError
from framematrix.io.atomic import atomic_dir, atomic_path

__all__ = [
    "IMAGE_OUTPUT_EXTENSIONS",
    "VIDEO_OUTPUT_EXTENSIONS",
    "X264_PRESETS",
    "fps_fraction",
    "to_uint8",
    "write_frames",
    "write_image",
    "write_video",
]

# Output extension -> FFmpeg muxer name.
VIDEO_OUTPUT_EXTENSIONS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
IMAGE_OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg")
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
# BT.709 code point shared by the colour primaries, transfer and matrix enums of FFmpeg/H.264.
_BT709 = 1


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """uint8 passes unchanged; floats in [0, 1] -> round(clip(x, 0, 1) * 255) (NaN -> 0)."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    if not np.issubdtype(frames.dtype, np.floating):
        raise ShapeError(f"frames must be uint8 or float in [0, 1], got dtype {frames.dtype}")
    scaled = np.rint(np.clip(np.nan_to_num(frames, nan=0.0), 0.0, 1.0) * 255.0)
    return scaled.astype(np.uint8)


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

    def __init__(self, source: Path, output: av.container.OutputContainer, muxer: str) -> None:
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
        # Offsets in the input stream's time base (PyAV rescales to the output's on mux).
        self.offset = int(round(origin / self.in_stream.time_base))
        self.packets = self.input.demux(self.in_stream)
        self.pending: av.Packet | None = None
        self.next_sample: int | None = None
        self.done = False
        self.output = output

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
        """Write the audio that starts before ``until`` (seconds from the first video frame)."""
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
        if self.transcode:
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                raise InputError(f"{self.source}: corrupt audio stream: {exc}") from exc
            for frame in frames:
                # Continuous sample numbering from the first packet's start keeps A/V sync and
                # lets the encoder mark its priming samples (trimmed by an MP4 edit list).
                if self.next_sample is None:
                    self.next_sample = round(self._packet_time(packet) * frame.sample_rate)
                frame.pts = self.next_sample
                frame.time_base = Fraction(1, frame.sample_rate)
                self.next_sample += frame.samples
                for out_packet in self.out_stream.encode(frame):
                    self.output.mux(out_packet)
            return
        if packet.pts is not None:
            packet.pts -= self.offset
        if packet.dts is not None:
            packet.dts -= self.offset
        packet.stream = self.out_stream
        self.output.mux(packet)

    def finish(self, video_end: Fraction) -> None:
        self.pump(video_end)
        if self.transcode:
            for out_packet in self.out_stream.encode(None):
                self.output.mux(out_packet)

    def close(self) -> None:
        self.input.close()


def _open_audio_source(
    audio_from: str | os.PathLike[str], output: av.container.OutputContainer, muxer: str
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
    return _AudioCopier(source, output, muxer)


# ----------------------------------------------------------------------------- video


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float | Fraction,
    crf: int = 18,
    preset: str = "medium",
    audio_from: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> Path:
    """Encode frames as H.264 (libx264, yuv420p, BT.709 tagged) into .mp4, .mov or .mkv.

    path: output file; the container follows the extension. Written atomically.
    frames: [F, H, W, 3] array or an iterable of [H, W, 3] frames (e.g. a generator, so long videos
        need not sit in memory); uint8 or float in [0, 1]. yuv420p needs even sides: an odd height
        or width is padded by one replicated row/column at the bottom/right (nothing is cropped).
    fps: frame rate; fractional NTSC rates are kept exact (29.97 -> 30000/1001 time base).
    crf: x264 constant rate factor, 0 (lossless) .. 51; 18 is visually near-lossless.
    preset: x264 speed/size preset (X264_PRESETS).
    audio_from: a media file (usually the input video) whose first audio stream is added. Packets
        are copied without re-encoding when the container accepts the codec; otherwise (e.g. ADPCM
        from an AVI into MP4) the audio is transcoded to AAC. Audio past the end of the video is
        dropped. A file without audio adds none.
    progress: show a tqdm bar.

    Returns the output path. Raises ShapeError for bad frames, InputError for an unsupported
    extension or an unreadable audio source; nothing is left at ``path`` on any failure.
    """
    final = Path(path)
    muxer = VIDEO_OUTPUT_EXTENSIONS.get(final.suffix.lower())
    if muxer is None:
        raise InputError(
            f"{final}: unsupported video output type '{final.suffix or '(none)'}' "
            f"(use {', '.join(VIDEO_OUTPUT_EXTENSIONS)})"
        )
    rate = fps_fraction(fps)
    if not 0 <= int(crf) <= 51:
        raise ValueError(f"crf must be in 0..51, got {crf}")
    if preset not in X264_PRESETS:
        raise ValueError(f"unknown x264 preset {preset!r}; choose one of {', '.join(X264_PRESETS)}")
    frame_iter, total = _iter_frames(frames)
    try:
        first = next(frame_iter)
    except StopIteration:
        raise ShapeError(f"{final}: no frames to write") from None
    first = _checked_frame(first, 0, None)
    size = first.shape[:2]
    height, width = size[0] + size[0] % 2, size[1] + size[1] % 2

    with atomic_path(final) as tmp:
        # faststart moves the index to the front (playable while downloading); MKV needs nothing.
        options = {"movflags": "+faststart"} if muxer in ("mp4", "mov") else {}
        output = av.open(str(tmp), "w", format=muxer, options=options)
        audio: _AudioCopier | None = None
        bar = tqdm(total=total, disable=not progress, unit="frame", desc=final.name)
        try:
            stream = output.add_stream("libx264", rate=rate)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(int(crf)), "preset": preset}
            context = stream.codec_context
            context.color_primaries = context.color_trc = context.colorspace = _BT709
            context.color_range = 1  # limited (MPEG) range, what players expect for H.264
            if audio_from is not None:
                audio = _open_audio_source(audio_from, output, muxer)
            index = 0
            frame = first
            while True:
                video_frame = av.VideoFrame.from_ndarray(_pad_even(frame), format="rgb24")
                video_frame = video_frame.reformat(
                    format="yuv420p",
                    dst_colorspace="ITU709",
                    dst_color_range="MPEG",
                    dst_color_trc=_BT709,
                    dst_color_primaries=_BT709,
                )
                video_frame.pts = index
                video_frame.time_base = 1 / rate
                for packet in stream.encode(video_frame):
                    output.mux(packet)
                index += 1
                bar.update(1)
                if audio is not None:
                    audio.pump(index / rate)
                try:
                    frame = _checked_frame(next(frame_iter), index, size)
                except StopIteration:
                    break
            for packet in stream.encode(None):
                output.mux(packet)
            if audio is not None:
                audio.finish(index / rate)
        except BaseException:
            _close_quietly(output, audio)
            raise
        finally:
            bar.close()
        output.close()
        if audio is not None:
            audio.close()
    return final


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
