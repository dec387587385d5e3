"""write_spatial_video: Apple spatial video (two-layer MV-HEVC in QuickTime) from (left, right)
frame pairs, with PyAV's libx265 and no multiview encoder.

Route (``../shared/MVHEVC.md``): each eye is encoded as it comes, by its own libx265 encoder with
identical deterministic settings, into a temporary raw ``.hevc`` file (so memory does not grow
with the length); at the end the two streams are read back picture by picture, checked to have
the same frame types and POCs, spliced into one two-layer stream (:mod:`.splice`), muxed to
``.mov`` by FFmpeg's muxer (``hvc1`` with ``hvcC`` and ``lhvC``) and given Apple's ``vexu`` and
``hfov`` boxes (:mod:`.mov`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from framematrix.errors import InputError, ShapeError
from framematrix.export.mvhevc.bitstream import BitstreamError
from framematrix.export.mvhevc.mov import add_spatial_boxes, spatial_boxes
from framematrix.export.mvhevc.nal import (
    PPS,
    PREFIX_SEI,
    SPS,
    VPS,
    NalUnit,
    annexb,
    is_idr,
    is_irap,
    is_vcl,
)
from framematrix.export.mvhevc.params import PPSInfo, SPSInfo, parse_pps, parse_sps
from framematrix.export.mvhevc.splice import (
    SliceHeader,
    build_3d_reference_displays_sei,
    layer1_parameter_sets,
    parse_slice_header,
    rewrite_slice_for_layer1,
    two_layer_vps,
)
from framematrix.export.writers import X264_PRESETS, _open_audio_source, fps_fraction
from framematrix.io.atomic import atomic_path
from framematrix.progress import Progress

__all__ = ["X265_PRESETS", "write_spatial_video", "x265_params"]

X265_PRESETS = X264_PRESETS  # x265 uses the same preset names
_BT709 = 1
# PyAV's libx265 refuses or corrupts its heap on very small pictures (seen at 8x8 and 24x48).
MIN_SIDE = 64
# NAL unit types that end a picture's NAL units (after its slices), 7.4.2.4.4.
_SUFFIX_TYPES = {36, 37, 38, 40, 41, 42, 43, 44}


def x265_params(keyint: int, bframes: int) -> str:
    """libx265 settings that make two encoders produce the same frame types and POCs.

    Fixed GOP (no scene cuts, no adaptive B-frames, closed GOPs), and none of the tools the
    slice header rewrite does not handle (WPP entry points, weighted prediction).
    """
    return ":".join(
        [
            f"keyint={keyint}",
            f"min-keyint={keyint}",
            "scenecut=0",
            "b-adapt=0",
            f"bframes={bframes}",
            "open-gop=0",
            "wpp=0",
            "weightp=0",
            "weightb=0",
            "repeat-headers=1",
            "info=0",
            "log-level=error",
        ]
    )


class _EyeEncoder:
    """One eye: RGB frames -> libx265 -> a raw Annex B ``.hevc`` file."""

    def __init__(self, path: Path, width: int, height: int, rate: Fraction, options: dict) -> None:
        self.path = path
        self.output = av.open(str(path), "w", format="hevc")
        self.stream = self.output.add_stream("libx265", rate=rate)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = options
        context = self.stream.codec_context
        context.color_primaries = context.color_trc = context.colorspace = _BT709
        context.color_range = 1  # limited range
        self.rate = rate
        self.count = 0

    def encode(self, frame: np.ndarray) -> None:
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
            format="yuv420p",
            dst_colorspace="ITU709",
            dst_color_range="MPEG",
            dst_color_trc=_BT709,
            dst_color_primaries=_BT709,
        )
        video_frame.pts = self.count
        video_frame.time_base = 1 / self.rate
        for packet in self.stream.encode(video_frame):
            self.output.mux(packet)
        self.count += 1

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.output.mux(packet)
        self.output.close()


def _checked_pair(pair: object, index: int, size: tuple[int, int] | None) -> tuple[np.ndarray, ...]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ShapeError(f"pair {index} must be a (left, right) tuple of frames")
    out = []
    for eye, frame in zip(("left", "right"), pair):
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ShapeError(
                f"{eye} frame {index} must be [H, W, 3] uint8 RGB, "
                f"got shape {frame.shape} dtype {frame.dtype}"
            )
        if size is not None and frame.shape[:2] != size:
            raise ShapeError(
                f"{eye} frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first left frame "
                f"was {size[1]}x{size[0]} (all frames of both eyes must match)"
            )
        size = frame.shape[:2]
        out.append(frame)
    return tuple(out)


def _pad_even(frame: np.ndarray) -> np.ndarray:
    """4:2:0 needs even sides: an odd side gets one replicated row/column (bottom/right)."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)


# ----------------------------------------------------------------------------- reading back


def iter_nal_units(path: Path, chunk: int = 1 << 20) -> Iterator[NalUnit]:
    """The NAL units of an Annex B file, read in chunks (memory bounded by the largest unit)."""
    buffer = b""
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk)
            buffer += data
            starts = []
            pos = buffer.find(b"\x00\x00\x01")
            while pos >= 0:
                starts.append(pos)
                pos = buffer.find(b"\x00\x00\x01", pos + 3)
            if data:
                # The unit after the last start code may continue in the next chunk.
                complete, rest = starts[:-1], starts[-1:] if starts else []
            else:
                complete, rest = starts, []
            bounds = starts[1:] + [len(buffer)]
            for start, end in zip(complete, bounds):
                unit = buffer[start + 3 : end].rstrip(b"\x00")
                if unit:
                    yield NalUnit.parse(unit)
            if not data:
                return
            if rest:
                buffer = buffer[rest[0] :]


@dataclass
class _Picture:
    prefix: list[NalUnit] = field(default_factory=list)  # non-VCL units before the slices
    slices: list[NalUnit] = field(default_factory=list)
    suffix: list[NalUnit] = field(default_factory=list)


def iter_pictures(units: Iterable[NalUnit]) -> Iterator[_Picture]:
    """Group a single-layer stream's NAL units into pictures (access units)."""
    current = _Picture()
    for unit in units:
        if is_vcl(unit.nal_type):
            if unit.payload[0] & 0x80 and current.slices:  # first_slice_segment_in_pic_flag
                yield current
                current = _Picture()
            current.slices.append(unit)
        elif unit.nal_type in _SUFFIX_TYPES and current.slices:
            current.suffix.append(unit)
        else:
            if current.slices:
                yield current
                current = _Picture()
            current.prefix.append(unit)
    if current.slices:
        yield current
    elif current.prefix:
        raise BitstreamError("stream ends with parameter sets but no picture")


class _PocCounter:
    """PicOrderCntVal of each picture in decoding order (8.3.1), and its display index."""

    def __init__(self, log2_max_poc_lsb: int) -> None:
        self.max_lsb = 1 << log2_max_poc_lsb
        self.prev: tuple[int, int] | None = None  # (lsb, msb) of prevTid0Pic
        self.idr_base = 0  # display index of the current IDR
        self.decoded = 0

    def next(self, header: SliceHeader, temporal_id: int) -> int:
        """Display index of the next picture."""
        lsb = header.poc_lsb
        if is_idr(header.nal_type):
            msb = 0
            self.idr_base = self.decoded
        elif self.prev is None:
            raise BitstreamError("stream does not start with an IDR picture")
        else:
            prev_lsb, prev_msb = self.prev
            if lsb < prev_lsb and prev_lsb - lsb >= self.max_lsb // 2:
                msb = prev_msb + self.max_lsb
            elif lsb > prev_lsb and lsb - prev_lsb > self.max_lsb // 2:
                msb = prev_msb - self.max_lsb
            else:
                msb = prev_msb
        kind = header.nal_type
        sub_layer_non_ref = kind <= 14 and kind % 2 == 0
        if temporal_id == 0 and not (6 <= kind <= 9) and not sub_layer_non_ref:
            self.prev = (lsb, msb)
        poc = msb + lsb
        if poc < 0:
            raise BitstreamError(f"picture {self.decoded} precedes its IDR (leading picture)")
        self.decoded += 1
        return self.idr_base + poc


class _PermutationCheck:
    """Checks that the display indices are 0..n-1, each once (memory: the reordering depth)."""

    def __init__(self) -> None:
        self.next = 0
        self.pending: set[int] = set()

    def add(self, display: int) -> None:
        if display < self.next or display in self.pending:
            raise BitstreamError(f"display index {display} occurs twice")
        self.pending.add(display)
        while self.next in self.pending:
            self.pending.remove(self.next)
            self.next += 1

    def finish(self, count: int) -> None:
        if self.pending or self.next != count:
            raise BitstreamError(f"display indices are not 0..{count - 1}")


@dataclass
class _StreamParams:
    vps: NalUnit
    sps: NalUnit
    pps: NalUnit
    sps_info: SPSInfo
    pps_info: PPSInfo


def _parameter_sets(picture: _Picture, eye: str, known: _StreamParams | None) -> _StreamParams:
    """The VPS/SPS/PPS of a picture's prefix; repeats must equal the first ones."""
    found = {unit.nal_type: unit for unit in picture.prefix if unit.nal_type in (VPS, SPS, PPS)}
    if known is not None:
        for unit in found.values():
            old = {VPS: known.vps, SPS: known.sps, PPS: known.pps}[unit.nal_type]
            if unit.payload != old.payload:
                raise BitstreamError(f"the {eye} eye's parameter sets change within the stream")
        return known
    if set(found) != {VPS, SPS, PPS}:
        raise BitstreamError(f"the {eye} eye's stream does not start with VPS, SPS and PPS")
    sps_info = parse_sps(found[SPS].rbsp())
    pps_info = parse_pps(found[PPS].rbsp())
    return _StreamParams(found[VPS], found[SPS], found[PPS], sps_info, pps_info)


# ----------------------------------------------------------------------------- public API


def write_spatial_video(
    path: str | os.PathLike[str],
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    fps: float | Fraction,
    crf: int = 20,
    preset: str = "medium",
    baseline_mm: float = 64.0,
    hfov_deg: float = 63.4,
    disparity_adjustment: float = 0.0,
    bframes: int = 2,
    keyint: int = 48,
    audio_from: str | os.PathLike[str] | None = None,
    progress: Progress | bool = False,
) -> Path:
    """Write Apple spatial video: a QuickTime ``.mov`` with a two-layer MV-HEVC ``hvc1`` track.

    path: output ``.mov``; written atomically (temporary name beside it, then moved into place).
    pairs: (left, right) frames, each [H, W, 3] uint8 RGB, all of one size, H and W >= 64; any
        iterable (a generator streams: memory does not grow with the length). 4:2:0 needs even
        sides: an odd height or width is padded by one replicated row/column at the
        bottom/right.
    fps: frame rate (fractional NTSC rates kept exact).
    crf, preset: libx265 constant rate factor (0..51) and speed preset, the same for both eyes.
    baseline_mm: camera baseline written to ``vexu/eyes/cams/blin`` (micrometres in the file).
    hfov_deg: horizontal field of view written to ``hfov`` (thousandths of a degree in the file).
    disparity_adjustment: Apple's horizontal disparity adjustment as a fraction of the image
        width in [-1, 1] (``vexu/eyes/cmfy/dadj``, 1/10000 units; Apple's sample has 0.02).
    bframes, keyint: fixed GOP of both eyes (B-frames between references, IDR interval).
    audio_from: a media file whose first audio stream is added (copied, or transcoded to AAC).
    progress: a :class:`framematrix.progress.Progress`, or True for a bar.

    The base layer (view 0, left eye) plays as ordinary 2D HEVC anywhere; the right eye is
    layer 1 (view 1). Decode both with FFmpeg's decoder option ``view_ids=-1``.
    Raises ShapeError for bad frames, InputError for a bad output name or audio source,
    ValueError for bad settings; nothing is left at ``path`` on failure.
    """
    final = Path(path)
    if final.suffix.lower() != ".mov":
        raise InputError(f"{final}: spatial video is written as QuickTime; use a .mov name")
    rate = fps_fraction(fps)
    if not 0 <= int(crf) <= 51:
        raise ValueError(f"crf must be in 0..51, got {crf}")
    if preset not in X265_PRESETS:
        raise ValueError(f"unknown x265 preset {preset!r}; choose one of {', '.join(X265_PRESETS)}")
    if not 0 <= int(bframes) <= 16:
        raise ValueError(f"bframes must be in 0..16, got {bframes}")
    if int(keyint) < 1:
        raise ValueError(f"keyint must be >= 1, got {keyint}")
    if not np.isfinite(baseline_mm) or baseline_mm <= 0:
        raise ValueError(f"baseline_mm must be a positive number, got {baseline_mm}")
    if not np.isfinite(hfov_deg) or not 0 < hfov_deg < 360:
        raise ValueError(f"hfov_deg must be in (0, 360), got {hfov_deg}")
    if not np.isfinite(disparity_adjustment) or not -1 <= disparity_adjustment <= 1:
        raise ValueError(f"disparity_adjustment must be in [-1, 1], got {disparity_adjustment}")
    if audio_from is not None and not Path(audio_from).is_file():
        raise InputError(f"{audio_from}: audio source not found")
    boxes = spatial_boxes(
        baseline_um=int(round(baseline_mm * 1000)),
        hfov_millidegrees=int(round(hfov_deg * 1000)),
        disparity_adjustment=int(round(disparity_adjustment * 10000)),
    )
    options = {"crf": str(int(crf)), "preset": preset, "x265-params": x265_params(keyint, bframes)}
    total = len(pairs) if hasattr(pairs, "__len__") else None  # type: ignore[arg-type]

    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{final.stem}.mvhevc-") as work:
        work_dir = Path(work)
        left_path, right_path = work_dir / "left.hevc", work_dir / "right.hevc"
        count = _encode_eyes(pairs, left_path, right_path, rate, options, total, progress)
        muxed = work_dir / "muxed.mov"
        _splice_and_mux(left_path, right_path, muxed, rate, count, audio_from, progress)
        with atomic_path(final) as tmp:
            add_spatial_boxes(muxed, tmp, boxes)
    return final


def _encode_eyes(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    left_path: Path,
    right_path: Path,
    rate: Fraction,
    options: dict,
    total: int | None,
    progress: Progress | bool,
) -> int:
    encoders: list[_EyeEncoder] = []
    size: tuple[int, int] | None = None
    count = 0
    try:
        with Progress.of(progress).task("encode eyes", total) as task:
            for index, pair in enumerate(pairs):
                left, right = _checked_pair(pair, index, size)
                if size is None:
                    size = left.shape[:2]
                    if min(size) < MIN_SIDE:
                        raise ShapeError(
                            f"frames are {size[1]}x{size[0]}; libx265 needs at least "
                            f"{MIN_SIDE}x{MIN_SIDE} pixels"
                        )
                    height, width = size[0] + size[0] % 2, size[1] + size[1] % 2
                    encoders = [
                        _EyeEncoder(eye_path, width, height, rate, options)
                        for eye_path in (left_path, right_path)
                    ]
                encoders[0].encode(_pad_even(left))
                encoders[1].encode(_pad_even(right))
                count += 1
                task.update(1)
        if not encoders:
            raise ShapeError("no frame pairs to write")
        for encoder in encoders:
            encoder.close()
        encoders = []
    finally:
        for encoder in encoders:
            try:
                encoder.output.close()
            except Exception:  # noqa: BLE001 - the original error is the one worth reporting
                pass
    return count


def _splice_and_mux(
    left_path: Path,
    right_path: Path,
    out_path: Path,
    rate: Fraction,
    count: int,
    audio_from: str | os.PathLike[str] | None,
    progress: Progress | bool,
) -> None:
    left_pictures = iter_pictures(iter_nal_units(left_path))
    right_pictures = iter_pictures(iter_nal_units(right_path))
    first_left, first_right = next(left_pictures, None), next(right_pictures, None)
    if first_left is None or first_right is None:
        raise BitstreamError("libx265 produced an empty stream")
    left_ps = _parameter_sets(first_left, "left", None)
    right_ps = _parameter_sets(first_right, "right", None)
    if (left_ps.sps_info.width, left_ps.sps_info.height) != (
        right_ps.sps_info.width,
        right_ps.sps_info.height,
    ):
        raise BitstreamError("the two eyes' streams have different picture sizes")
    vps = two_layer_vps(left_ps.vps, left_ps.sps_info)
    sps1, pps1 = layer1_parameter_sets(
        right_ps.sps, right_ps.pps, right_ps.sps_info, right_ps.pps_info
    )
    sei = build_3d_reference_displays_sei()
    extradata = annexb([vps, left_ps.sps, sps1, left_ps.pps, pps1, sei])
    reorder = left_ps.sps_info.dpb[1]
    poc = _PocCounter(left_ps.sps_info.log2_max_poc_lsb)
    shown = _PermutationCheck()

    with av.open(str(left_path), format="hevc") as template_input:
        template = template_input.streams.video[0]
        output = av.open(str(out_path), "w", format="mov")
        audio = None
        try:
            stream = output.add_stream_from_template(template)
            stream.codec_tag = "hvc1"
            stream.disposition = stream.disposition | av.stream.Disposition.multilayer
            stream.codec_context.extradata = extradata
            stream.time_base = 1 / rate
            if audio_from is not None:
                audio = _open_audio_source(audio_from, output, "mov")
            pictures = _zip_pictures(first_left, first_right, left_pictures, right_pictures)
            index = 0
            with Progress.of(progress).task("splice views", count) as task:
                for left, right in pictures:
                    left_ps = _parameter_sets(left, "left", left_ps)
                    right_ps = _parameter_sets(right, "right", right_ps)
                    units, header = _access_unit(left, right, left_ps, right_ps, sei, index)
                    display = poc.next(header, left.slices[0].temporal_id_plus1 - 1)
                    shown.add(display)
                    packet = av.Packet(annexb(units))
                    packet.stream = stream
                    packet.time_base = 1 / rate
                    packet.pts = display
                    packet.dts = index - reorder
                    if packet.dts > packet.pts:
                        raise BitstreamError(f"picture {index} is shown before it is decoded")
                    packet.is_keyframe = is_irap(header.nal_type)
                    output.mux(packet)
                    index += 1
                    if audio is not None:
                        audio.pump(index / rate)
                    task.update(1)
            if index != count:
                raise BitstreamError(f"libx265 returned {index} pictures for {count} frames")
            shown.finish(count)
            if audio is not None:
                audio.finish(count / rate)
        except BaseException:
            try:
                output.close()
            except Exception:  # noqa: BLE001
                pass
            if audio is not None:
                audio.close()
            raise
        output.close()
        if audio is not None:
            audio.close()


def _zip_pictures(
    first_left: _Picture,
    first_right: _Picture,
    left_rest: Iterator[_Picture],
    right_rest: Iterator[_Picture],
) -> Iterator[tuple[_Picture, _Picture]]:
    yield first_left, first_right
    index = 1
    while True:
        left, right = next(left_rest, None), next(right_rest, None)
        if left is None and right is None:
            return
        if left is None or right is None:
            raise BitstreamError(f"the two eyes' streams differ in length (picture {index})")
        yield left, right
        index += 1


def _access_unit(
    left: _Picture,
    right: _Picture,
    left_ps: _StreamParams,
    right_ps: _StreamParams,
    sei: NalUnit,
    index: int,
) -> tuple[list[NalUnit], SliceHeader]:
    """The NAL units of one two-layer access unit (parameter sets live in hvcC/lhvC)."""
    header = parse_slice_header(left.slices[0], left_ps.sps_info, left_ps.pps_info)
    layer1 = []
    right_header = None
    for unit in right.slices:
        rewritten, info = rewrite_slice_for_layer1(unit, right_ps.sps_info, right_ps.pps_info)
        layer1.append(rewritten)
        right_header = right_header or info
    assert right_header is not None
    for unit in left.slices[1:]:
        parse_slice_header(unit, left_ps.sps_info, left_ps.pps_info)  # validates every slice
    key = (header.nal_type, header.slice_type, header.poc_lsb)
    right_key = (right_header.nal_type, right_header.slice_type, right_header.poc_lsb)
    if key != right_key or left.slices[0].temporal_id_plus1 != right.slices[0].temporal_id_plus1:
        raise BitstreamError(
            f"the two eyes' streams differ at picture {index}: left (type, slice, POC LSB) "
            f"{key}, right {right_key}; the x265 settings must fix the GOP"
        )
    prefix = [unit for unit in left.prefix if unit.nal_type == PREFIX_SEI]
    if is_irap(header.nal_type):
        prefix = [sei] + prefix
    return prefix + left.slices + layer1 + left.suffix, header
