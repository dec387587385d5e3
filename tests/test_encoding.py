"""Encoding options of the video writer: codecs, pixel formats, 10-bit, colours, frame packing."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest

from framematrix.errors import InputError
from framematrix.export.writers import (
    PIX_FMTS,
    VIDEO_CODECS,
    VideoEncoding,
    VideoWriter,
    color_tags,
    to_uint16,
    write_video,
)

CODEC_NAMES = {"h264": "h264", "h265": "hevc", "ffv1": "ffv1"}


def _first_frame(path: Path) -> av.VideoFrame:
    with av.open(str(path)) as container:
        return next(container.decode(video=0))


@pytest.mark.parametrize("pix_fmt", PIX_FMTS)
@pytest.mark.parametrize("codec", list(VIDEO_CODECS))
def test_every_codec_takes_every_pixel_format(tmp_path: Path, codec: str, pix_fmt: str) -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 32, 64, 3), dtype=np.uint8)
    suffix = ".mkv" if codec == "ffv1" else ".mp4"
    encoding = VideoEncoding(codec=codec, pix_fmt=pix_fmt, crf=18, preset="ultrafast")
    path = write_video(tmp_path / f"out{suffix}", frames, 24, encoding=encoding)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == CODEC_NAMES[codec]
        assert stream.codec_context.pix_fmt == pix_fmt
        assert stream.frames in (0, 3) and len(list(container.decode(stream))) == 3
        if codec == "h265":
            assert stream.codec_tag == "hvc1"


def test_h265_10bit_keeps_more_than_8_bits(tmp_path: Path) -> None:
    # A ramp of 512 distinct 10-bit grey levels (uint16 frames, 64 apart): an 8-bit path could
    # keep at most 256 of them.
    ramp = (np.arange(512, dtype=np.uint16) * 64)[None, :, None]
    frames = np.broadcast_to(ramp, (2, 16, 512, 3)).copy()
    encoding = VideoEncoding(codec="h265", pix_fmt="yuv420p10le", crf=4, preset="ultrafast")
    path = write_video(tmp_path / "deep.mov", frames, 24, encoding=encoding)
    frame = _first_frame(path)
    assert frame.format.name == "yuv420p10le"
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        assert (context.name, context.pix_fmt) == ("hevc", "yuv420p10le")
    luma = frame.to_ndarray()[:16].astype(np.int64)  # [H*1.5, W] planar: Y rows first
    levels = np.unique(luma[8])
    assert len(levels) > 400
    # Limited-range 10-bit luma of grey v/65535: 64 + 876 v (the ramp within a few codes).
    expected = 64 + 876 * (np.arange(512) * 64) / 65535
    assert np.abs(luma[8] - expected).max() <= 3


def test_float_frames_keep_10_bits_too() -> None:
    values = np.array([0.0, 0.5, 1.0, 1.5, np.nan], np.float32)
    np.testing.assert_array_equal(to_uint16(values), [0, 32768, 65535, 65535, 0])
    np.testing.assert_array_equal(to_uint16(np.array([0, 1, 255], np.uint8)), [0, 257, 65535])


def test_colour_tags_survive_and_set_the_matrix(tmp_path: Path) -> None:
    red = np.zeros((2, 64, 64, 3), np.uint8)
    red[..., 0] = 255
    bt2020_pq = {"primaries": 9, "transfer": 16, "matrix": 9, "range": 1}
    results = {}
    for name, color in (("bt709", None), ("bt2020", bt2020_pq)):
        encoding = VideoEncoding(codec="h265", crf=0, preset="ultrafast", color=color)
        path = write_video(tmp_path / f"{name}.mp4", red, 24, encoding=encoding)
        with av.open(str(path)) as container:
            results[name] = color_tags(container.streams.video[0])
            frame = next(container.decode(video=0))
            luma = float(frame.to_ndarray()[:64].mean())
        # Limited-range luma of pure red: 16 + 219 * Kr, Kr = 0.2126 (BT.709), 0.2627 (BT.2020).
        kr = 0.2627 if name == "bt2020" else 0.2126
        assert luma == pytest.approx(16 + 219 * kr, abs=1.0)
    assert results["bt2020"] == bt2020_pq
    assert results["bt709"] == {"primaries": 1, "transfer": 1, "matrix": 1, "range": 1}


def test_full_range_tag_gives_full_range_samples(tmp_path: Path) -> None:
    white = np.full((2, 32, 32, 3), 255, np.uint8)
    color = {"primaries": 1, "transfer": 1, "matrix": 1, "range": 2}
    encoding = VideoEncoding(crf=0, preset="ultrafast", color=color)
    path = write_video(tmp_path / "full.mkv", white, 24, encoding=encoding)
    with av.open(str(path)) as container:
        assert color_tags(container.streams.video[0])["range"] == 2
        frame = next(container.decode(video=0))
    assert float(frame.to_ndarray()[:32].mean()) == pytest.approx(255, abs=1)


@pytest.mark.parametrize(("packing", "stereo_type"), [("sbs", 1), ("tb", 2)])
def test_frame_packing_sei_is_read_back(tmp_path: Path, packing: str, stereo_type: int) -> None:
    frames = np.zeros((2, 32, 64, 3), np.uint8)
    encoding = VideoEncoding(preset="ultrafast", frame_packing=packing)
    path = write_video(tmp_path / "packed.mp4", frames, 24, encoding=encoding)
    side = {str(sd.type): bytes(sd) for sd in _first_frame(path).side_data.keys()}
    stereo = [data for kind, data in side.items() if "STEREO3D" in kind]
    assert stereo, f"no stereo side data in {sorted(side)}"
    # AVStereo3D starts with its enum AVStereo3DType: 1 = side by side, 2 = top bottom.
    assert struct.unpack_from("<i", stereo[0])[0] == stereo_type
    plain = write_video(tmp_path / "plain.mp4", frames, 24, encoding=VideoEncoding())
    assert not any("STEREO3D" in str(sd.type) for sd in _first_frame(plain).side_data.keys())


def test_narrow_h265_10bit_is_refused_in_one_line(tmp_path: Path) -> None:
    # PyAV's bundled x265 aborts the process on 10-bit frames 40-49 pixels wide.
    encoding = VideoEncoding(codec="h265", pix_fmt="yuv420p10le")
    with pytest.raises(InputError, match="too small") as info:
        write_video(tmp_path / "n.mp4", np.zeros((1, 32, 48, 3), np.uint8), 24, encoding=encoding)
    assert "n.mp4" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_h265_of_one_or_two_frames_muxes(tmp_path: Path) -> None:
    # x265 leaves the first decode timestamp of such short streams uninitialised (most runs);
    # the mp4 muxer refused it before the writer repaired it. Short segments are common.
    for count in (1, 2) * 4:
        frames = np.full((count, 64, 64, 3), 90, np.uint8)
        encoding = VideoEncoding(codec="h265", preset="ultrafast")
        path = write_video(tmp_path / "short.mp4", frames, 24, encoding=encoding)
        with av.open(str(path)) as container:
            assert len(list(container.decode(video=0))) == count


def test_odd_sizes_are_kept_in_444(tmp_path: Path) -> None:
    frames = np.zeros((2, 33, 47, 3), np.uint8)
    encoding = VideoEncoding(pix_fmt="yuv444p", preset="ultrafast")
    path = write_video(tmp_path / "odd.mp4", frames, 24, encoding=encoding)
    frame = _first_frame(path)
    assert (frame.height, frame.width) == (33, 47)


def test_streaming_writer_writes_frames_as_they_come(tmp_path: Path) -> None:
    path = tmp_path / "stream.mkv"
    with VideoWriter(path, 25, VideoEncoding(codec="ffv1", pix_fmt="yuv444p")) as writer:
        for i in range(4):
            writer.write(np.full((16, 16, 3), i * 60, np.uint8))
            assert not path.exists()  # only moved into place when complete
    with av.open(str(path)) as container:
        greys = [f.to_ndarray(format="rgb24").mean() for f in container.decode(video=0)]
    np.testing.assert_allclose(greys, [0, 60, 120, 180], atol=1)
    assert writer.frames_written == 4


@pytest.mark.parametrize(
    ("name", "encoding", "words"),
    [
        ("a.mp4", VideoEncoding(codec="ffv1"), "mkv only"),
        ("a.mkv", VideoEncoding(codec="vp9"), "unknown codec"),
        ("a.mp4", VideoEncoding(pix_fmt="rgb24"), "pixel format"),
        ("a.mp4", VideoEncoding(codec="h265", frame_packing="sbs"), "H.264 only"),
        ("a.mp4", VideoEncoding(frame_packing="checkerboard"), "frame packing"),
        ("a.mp4", VideoEncoding(crf=60), "crf"),
        ("a.mkv", VideoEncoding(spherical="vr180"), "mp4/.mov only"),
        ("a.mp4", VideoEncoding(color={"gamma": 2}), "colour tag"),
    ],
)
def test_bad_options_give_one_line_naming_the_file(
    tmp_path: Path, name: str, encoding: VideoEncoding, words: str
) -> None:
    with pytest.raises(InputError, match=words) as info:
        write_video(tmp_path / name, np.zeros((1, 16, 16, 3), np.uint8), 24, encoding=encoding)
    message = str(info.value)
    assert "\n" not in message and name in message
    assert list(tmp_path.iterdir()) == []


def test_failure_inside_the_writer_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="model crashed"):
        with VideoWriter(tmp_path / "broken.mp4", 24, VideoEncoding(codec="h265")) as writer:
            writer.write(np.zeros((16, 16, 3), np.uint8))
            raise RuntimeError("model crashed")
    assert list(tmp_path.iterdir()) == []
