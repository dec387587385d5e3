"""Join segment files into one video by remuxing their packets (no re-encoding), with audio.

A resumable convert encodes each finished segment (a shot, or a run of frames) to its own file
with one :class:`framematrix.export.writers.VideoEncoding` (``encoding.for_segments()``): every
segment starts with an IDR keyframe and all share the codec parameters, so the compressed packets
can be laid end to end. :func:`join_segments` checks that they do, rewrites the timestamps so they
run on continuously, adds the source's audio for the time range converted and moves the result
onto the output atomically.

Segments should be written in .mp4 or .mov (timestamps in the frame rate's time base). Matroska
stores milliseconds, so 30000/1001 fps segments in .mkv do not have evenly spaced timestamps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from framematrix.errors import InputError
from framematrix.export.writers import (
    VIDEO_OUTPUT_EXTENSIONS,
    _AudioCopier,
    _close_quietly,
    _open_audio_source,
)
from framematrix.io.atomic import atomic_path
from framematrix.progress import Progress

__all__ = ["SegmentInfo", "join_segments", "probe_segment"]


@dataclass(frozen=True)
class SegmentInfo:
    """What must agree between segments for a join by remux."""

    codec: str
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    rate: Fraction
    extradata: bytes  # the codec parameters (SPS/PPS/VPS of avcC/hvcC, FFV1 configuration)
    color: tuple[int, int, int, int]

    def differences(self, other: SegmentInfo) -> str:
        """'' if the segments can be joined, else the first difference in words."""
        checks = (
            ("codec", self.codec, other.codec),
            ("size", f"{self.width}x{self.height}", f"{other.width}x{other.height}"),
            ("pixel format", self.pix_fmt, other.pix_fmt),
            ("frame rate", self.rate, other.rate),
            ("time base", self.time_base, other.time_base),
            ("colour tags", self.color, other.color),
        )
        for what, mine, theirs in checks:
            if mine != theirs:
                return f"{what} {theirs} differs from {mine}"
        if self.extradata != other.extradata:
            return "codec parameters (encoder settings) differ"
        return ""


def probe_segment(path: Path) -> SegmentInfo:
    """The join-relevant properties of a segment file; InputError if it has no single video."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: segment not found")
    try:
        with av.open(str(path)) as container:
            if len(container.streams.video) != 1:
                raise InputError(
                    f"{path}: a segment must hold one video stream, "
                    f"found {len(container.streams.video)}"
                )
            stream = container.streams.video[0]
            context = stream.codec_context
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            return SegmentInfo(
                codec=context.name,
                width=int(context.width),
                height=int(context.height),
                pix_fmt=str(context.pix_fmt),
                time_base=Fraction(stream.time_base),
                rate=Fraction(rate) if rate else Fraction(0),
                extradata=bytes(context.extradata or b""),
                color=(
                    int(context.color_primaries or 0),
                    int(context.color_trc or 0),
                    int(context.colorspace or 0),
                    int(context.color_range or 0),
                ),
            )
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: cannot read segment: {exc}") from exc


def join_segments(
    segments: list[Path],
    output: str | os.PathLike[str],
    *,
    audio_from: str | os.PathLike[str] | None = None,
    audio_start_s: float = 0.0,
    audio_end_s: float | None = None,
    spherical: str | None = None,
    overwrite: bool = False,
    progress: Progress | bool = False,
) -> Path:
    """Concatenate segment videos into ``output`` (.mp4, .mov or .mkv) without re-encoding.

    segments: video files in play order, written with one VideoEncoding (same codec, size, pixel
        format, frame rate, colour tags and codec parameters), each starting with a keyframe.
        Only their video is used.
    output: the joined file, written under a temporary name and moved into place when complete.
    audio_from: the source whose first audio stream is added: copied when the container takes
        the codec, else transcoded to AAC (PCM into .mp4). audio_start_s / audio_end_s: the part of
        the source the segments cover (--start / --end of a partial convert, seconds from the
        source's first video frame); the audio is cut to [audio_start_s, audio_end_s) and to the
        video's length (copied packets are cut at packet boundaries, transcoded audio to the
        sample).
    spherical: "vr180" adds the VR180 boxes (st3d/sv3d) to a .mp4/.mov output.
    overwrite: replace an existing output (else InputError).
    progress: a Progress or True; counts the segments joined.

    Presentation timestamps continue from one segment to the next: segment k is shifted by the
    total duration of segments 0..k-1, so frames stay evenly spaced across the joins.
    Returns ``output``. Raises InputError (one line naming the file) for a missing or mismatched
    segment, a segment not starting with a keyframe, or an existing output; nothing is written
    then.
    """
    final = Path(output)
    muxer = VIDEO_OUTPUT_EXTENSIONS.get(final.suffix.lower())
    if muxer is None:
        raise InputError(
            f"{final}: unsupported video output type '{final.suffix or '(none)'}' "
            f"(use {', '.join(VIDEO_OUTPUT_EXTENSIONS)})"
        )
    if not segments:
        raise InputError(f"{final}: no segments to join")
    if os.path.lexists(final) and not overwrite:
        raise InputError(f"{final}: already exists (overwrite it explicitly)")
    if spherical is not None and (spherical != "vr180" or muxer not in ("mp4", "mov")):
        raise InputError(f"{final}: spherical {spherical!r} needs 'vr180' and a .mp4/.mov output")
    if audio_end_s is not None and audio_end_s <= audio_start_s:
        raise InputError(
            f"{final}: audio end {audio_end_s} s is not after its start {audio_start_s} s"
        )
    paths = [Path(p) for p in segments]
    infos = [probe_segment(p) for p in paths]
    reference = infos[0]
    for path, info in zip(paths[1:], infos[1:], strict=True):
        problem = reference.differences(info)
        if problem:
            raise InputError(f"{path}: cannot be joined to {paths[0].name}: {problem}")
    if muxer == "mp4" and reference.codec not in ("h264", "hevc"):
        raise InputError(f"{final}: {reference.codec} segments are joined into .mkv or .mov only")

    start = Fraction(audio_start_s).limit_denominator(1_000_000)
    end = None if audio_end_s is None else Fraction(audio_end_s).limit_denominator(1_000_000)
    time_base = reference.time_base
    frame_ticks = (
        max(1, round(1 / (reference.rate * time_base))) if reference.rate else 1
    )  # one frame in time-base units: the duration of a packet that states none

    with atomic_path(final) as tmp:
        options = {"movflags": "+faststart"} if muxer in ("mp4", "mov") else {}
        out = av.open(str(tmp), "w", format=muxer, options=options)
        audio: _AudioCopier | None = None
        try:
            with av.open(str(paths[0])) as first:
                template = first.streams.video[0]
                out_stream = out.add_stream_from_template(template)
                if reference.codec == "hevc" and muxer in ("mp4", "mov"):
                    out_stream.codec_context.codec_tag = "hvc1"
                out_stream.time_base = time_base
            if audio_from is not None:
                cut = None if end is None else end - start
                audio = _open_audio_source(audio_from, out, muxer, start=start, end=cut)
            # The encoder's decode delay (B-frames) differs between a short and a long segment
            # (x264 writes a 1-frame segment without delay): every segment's decode timestamps
            # are moved earlier to the largest delay, so they run on across the joins.
            delays = [_decode_delay(p) for p in paths]
            offset = 0  # presentation time of the next segment's first frame, time_base units
            last_dts: int | None = None
            with Progress.of(progress).task("join", len(paths), unit="segment") as task:
                for path, delay in zip(paths, delays, strict=True):
                    offset, last_dts = _copy_segment(
                        path,
                        out,
                        out_stream,
                        audio,
                        offset,
                        last_dts,
                        max(delays) - delay,
                        frame_ticks,
                        end,
                        start,
                    )
                    task.update(1)
            video_end = offset * time_base
            if audio is not None:
                audio.finish(video_end if end is None else min(video_end, end - start))
            out.close()
            if audio is not None:
                audio.close()
        except BaseException:
            _close_quietly(out, audio)
            raise
        if spherical == "vr180":
            from framematrix.export.vr180 import add_vr180_metadata

            add_vr180_metadata(tmp)
    return final


def _decode_delay(path: Path) -> int:
    """How far the first decode timestamp lies before the first presentation (time-base units)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                origin = stream.start_time if stream.start_time is not None else packet.pts
                return max(0, origin - (packet.dts if packet.dts is not None else packet.pts))
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: cannot read segment: {exc}") from exc
    raise InputError(f"{path}: the segment holds no video frames")


def _copy_segment(
    path: Path,
    out: av.container.OutputContainer,
    out_stream: av.video.stream.VideoStream,
    audio: _AudioCopier | None,
    offset: int,
    last_dts: int | None,
    dts_shift: int,
    frame_ticks: int,
    end: Fraction | None,
    start: Fraction,
) -> tuple[int, int | None]:
    """Mux the video packets of one segment shifted by ``offset`` (decode timestamps by a further
    ``dts_shift`` earlier); returns (the next segment's offset, the last decode timestamp)."""
    time_base = out_stream.time_base
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            origin = stream.start_time
            segment_end = 0
            first = True
            for packet in container.demux(stream):
                if packet.size == 0 or (packet.pts is None and packet.dts is None):
                    continue  # the demuxer's final empty packet
                if packet.pts is None:
                    raise InputError(f"{path}: a video packet has no timestamp")
                if origin is None:
                    origin = packet.pts
                if first and not packet.is_keyframe:
                    raise InputError(f"{path}: the segment does not start with a keyframe")
                first = False
                duration = packet.duration or frame_ticks
                pts = packet.pts - origin + offset
                dts = packet.dts if packet.dts is not None else packet.pts
                dts = dts - origin + offset - dts_shift
                if last_dts is not None and dts <= last_dts:
                    raise InputError(
                        f"{path}: decode timestamps overlap the previous segment "
                        "(segments encoded with different settings?)"
                    )
                last_dts = dts
                segment_end = max(segment_end, pts - offset + duration)
                packet.pts, packet.dts, packet.duration = pts, dts, duration
                packet.stream = out_stream
                out.mux(packet)
                if audio is not None:
                    until = pts * time_base
                    audio.pump(until if end is None else min(until, end - start))
            if first:
                raise InputError(f"{path}: the segment holds no video frames")
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: cannot read segment: {exc}") from exc
    return offset + segment_end, last_dts
