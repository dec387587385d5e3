"""The streaming frame source: probes, exact range reads (B-frames, VFR), rotation, positions."""

from __future__ import annotations

import random
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import shared_path
from framematrix.errors import InputError
from framematrix.io import read_clip
from framematrix.io.source import open_source, parse_position, rotate_upright

H, W = 48, 64


def _frames(count: int, height: int = H, width: int = W) -> np.ndarray:
    """Frames that differ per index (a moving bar and a per-frame level), so order errors show."""
    y, x = np.mgrid[0:height, 0:width]
    out = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        out[i, ..., 0] = (x * 3 + i * 7) % 256
        out[i, ..., 1] = np.where(np.abs(x - (i * 5) % width) < 4, 230, 40)
        out[i, ..., 2] = (y * 4 + i * 11) % 256
    return out


def _encode(
    path: Path,
    frames: np.ndarray,
    *,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    rotation: int | None = None,
    params: str = "keyint=12:min-keyint=12:bframes=3:b-adapt=0:scenecut=0",
    color: bool = False,
) -> None:
    """H.264 with B-frames and a GOP of 12, optionally with explicit (uneven) timestamps."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "12", "x264-params": params}
        if time_base is not None:
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if color:
            context = stream.codec_context
            context.color_primaries = context.color_trc = context.colorspace = 1
            context.color_range = 1
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i if pts is None else pts[i]
            if time_base is not None:
                frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _sequential(path: Path) -> tuple[np.ndarray, list[int], Fraction]:
    """Reference: a plain PyAV decode of every frame, in order, and their timestamps."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, stamps = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            stamps.append(frame.pts)
        return np.stack(frames), stamps, stream.time_base


def _check_random_ranges(path: Path, reference: np.ndarray, reads: int = 25) -> None:
    rng = random.Random(7)
    n = len(reference)
    with open_source(path) as source:
        assert source.info.num_frames == n
        for _ in range(reads):
            start = rng.randrange(n)
            stop = rng.randrange(start, min(n, start + 20) + 1)
            got = source.read(start, stop)
            assert got.shape == (stop - start, *reference.shape[1:]) and got.dtype == np.uint8
            np.testing.assert_array_equal(got, reference[start:stop], err_msg=f"{start}:{stop}")
        # Backwards, one frame at a time, across every GOP boundary.
        for index in range(n - 1, -1, -5):
            np.testing.assert_array_equal(source.read(index, index + 1)[0], reference[index])


@pytest.fixture(scope="module")
def bframes_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "bframes.mp4"
    _encode(path, _frames(100))
    return path


def test_bframes_ranges_equal_sequential_decode(bframes_mp4: Path) -> None:
    reference, stamps, _ = _sequential(bframes_mp4)
    assert len(reference) == 100
    # The file really has B-frames: decode order differs from presentation order.
    with av.open(str(bframes_mp4)) as container:
        packet_pts = [p.pts for p in container.demux(video=0) if p.size]
    assert packet_pts != sorted(packet_pts)
    _check_random_ranges(bframes_mp4, reference)


def test_far_reads_seek_instead_of_decoding_from_the_start(bframes_mp4: Path) -> None:
    reference, _, _ = _sequential(bframes_mp4)
    with open_source(bframes_mp4) as source:
        reader = source._reader
        np.testing.assert_array_equal(source.read(90, 95), reference[90:95])
        # GOP of 12: the keyframe before 90 is 84, so about a dozen frames were decoded, not 95.
        assert reader.decoded < 40, reader.decoded
        before = reader.decoded
        np.testing.assert_array_equal(source.read(95, 100), reference[95:100])
        assert reader.decoded - before <= 6  # continued without seeking


def test_iter_chunks_cover_the_range_in_order(bframes_mp4: Path) -> None:
    reference, _, _ = _sequential(bframes_mp4)
    with open_source(bframes_mp4) as source:
        chunks = list(source.iter_chunks(5, 77, chunk=16))
    assert [first for first, _ in chunks] == [5, 21, 37, 53, 69]
    assert max(len(c) for _, c in chunks) == 16
    np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), reference[5:77])


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_variable_frame_rate_ranges_and_times(tmp_path: Path, suffix: str) -> None:
    steps = [30, 50, 41, 90, 17]
    pts = np.concatenate([[0], np.cumsum([steps[i % 5] for i in range(59)])]).tolist()
    path = tmp_path / f"vfr{suffix}"
    _encode(path, _frames(60), pts=pts, time_base=Fraction(1, 1000))
    reference, _, _ = _sequential(path)
    _check_random_ranges(path, reference)
    with open_source(path) as source:
        times = [source.frame_time(i) for i in range(60)]
        np.testing.assert_allclose(times, np.array(pts) / 1000, atol=1e-3)
        assert source.index_at_time(pts[33] / 1000) == 33
        assert source.index_at_time(pts[33] / 1000 + 0.004) == 33
        assert source.index_at_time(100.0) == 60


def test_real_mpeg4_part2_video_ranges() -> None:
    path = shared_path("data", "video", "davis_dolphins.mp4")
    reference, _, _ = _sequential(path)
    with open_source(path) as source:
        info = source.info
        assert (info.num_frames, info.width, info.height, info.kind) == (59, 960, 540, "video")
        assert info.pix_fmt == "yuv420p" and info.bit_depth == 8 and not info.has_audio
        assert info.fps_fraction == 24 and info.duration_s == pytest.approx(59 / 24, abs=0.05)
        for start, stop in [(40, 47), (3, 9), (58, 59), (12, 16)]:
            np.testing.assert_array_equal(source.read(start, stop), reference[start:stop])


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_display_rotation_is_applied(tmp_path: Path, rotation: int) -> None:
    stored = _frames(14)
    stored[:, :6, -6:] = 255  # a white mark in the stored top-right corner
    path = tmp_path / f"rot{rotation}.mp4"
    _encode(path, stored, rotation=rotation)
    reference, _, _ = _sequential(path)
    with open_source(path) as source:
        info = source.info
        assert info.rotation == rotation
        expect_size = (W, H) if rotation != 180 else (H, W)
        assert (info.height, info.width) == expect_size
        frames = source.read(0, 14)
        assert frames.shape == (14, *expect_size, 3)
        expected = np.stack([np.rot90(f, rotation // 90) for f in reference])
        np.testing.assert_array_equal(frames, expected)
        np.testing.assert_array_equal(source.read(9, 12), expected[9:12])
    # PyAV: the display matrix turns the stored picture counter-clockwise by `rotation`; the
    # stored top-right mark must end up where that turn puts it.
    corner = {90: (slice(0, 6), slice(0, 6)), 180: (slice(-6, None), slice(0, 6))}
    corner[270] = (slice(-6, None), slice(-6, None))
    rows, cols = corner[rotation]
    assert frames[0, rows, cols].min() >= 230
    assert read_clip(path).frames.shape == (14, *expect_size, 3)


def test_rotate_upright_turns_counter_clockwise() -> None:
    image = np.arange(6).reshape(2, 3)
    assert rotate_upright(image, 90).tolist() == [[2, 5], [1, 4], [0, 3]]
    assert rotate_upright(image, 270).tolist() == [[3, 0], [4, 1], [5, 2]]
    assert rotate_upright(image, 0) is image
    with pytest.raises(ValueError):
        rotate_upright(image, 45)


def test_colour_tags_and_untagged(tmp_path: Path) -> None:
    tagged, plain = tmp_path / "tagged.mp4", tmp_path / "plain.mkv"
    _encode(tagged, _frames(4), color=True)
    _encode(plain, _frames(4))
    with open_source(tagged) as source:
        assert source.info.color == {
            "primaries": "bt709",
            "transfer": "bt709",
            "matrix": "bt709",
            "range": "tv",
        }
    with open_source(plain) as source:
        assert set(source.info.color.values()) == {None}
        assert source.info.num_frames == 4  # MKV: counted by demuxing
        assert source.info.names == ["00000", "00001", "00002", "00003"]


def test_audio_flag(tmp_path: Path) -> None:
    path = tmp_path / "sound.mp4"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "mono"
        for i, rgb in enumerate(_frames(6)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), "fltp", "mono")
        sound.sample_rate, sound.pts = 48000, 0
        for packet in [*audio.encode(sound), *audio.encode(None)]:
            out.mux(packet)
    with open_source(path) as source:
        assert source.info.has_audio and source.info.num_frames == 6


# ----------------------------------------------------------------------------- folders, images


def _png(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_frame_folder_is_read_lazily(tmp_path: Path) -> None:
    frames = _frames(6, 10, 14)
    for i, rgb in enumerate(frames):
        _png(tmp_path / f"f{i}.png", rgb)
    (tmp_path / "f3.png").write_bytes(b"\x89PNG broken")
    with open_source(tmp_path, fps=12.5) as source:  # opening reads only the first image
        info = source.info
        assert (info.kind, info.num_frames, info.width, info.height) == ("frames", 6, 14, 10)
        assert info.fps == 12.5 and info.fps_fraction == Fraction(25, 2)
        assert info.names == [f"f{i}" for i in range(6)] and info.duration_s == 6 / 12.5
        np.testing.assert_array_equal(source.read(0, 3), frames[:3])
        np.testing.assert_array_equal(source.read(4, 6), frames[4:])
        assert source.frame_time(4) == pytest.approx(4 / 12.5)
        with pytest.raises(InputError, match="f3.png"):
            source.read(2, 5)


def test_sixteen_bit_png_folder_reports_bit_depth(tmp_path: Path) -> None:
    assert cv2.imwrite(str(tmp_path / "a.png"), np.full((6, 8, 3), 40000, np.uint16))
    with open_source(tmp_path) as source:
        assert source.info.bit_depth == 16
        assert source.read(0, 1)[0, 0, 0].tolist() == [156, 156, 156]  # OpenCV: 40000 >> 8


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (5, 1)])
def test_too_small_image_names_the_file(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "tiny.png"
    _png(path, np.zeros((*size, 3), np.uint8))
    with pytest.raises(InputError) as excinfo:
        open_source(path)
    message = str(excinfo.value)
    assert "tiny.png" in message and "2x2" in message and "\n" not in message
    with pytest.raises(InputError, match="tiny.png"):
        read_clip(path)


def test_single_image_is_one_frame(tmp_path: Path) -> None:
    path = tmp_path / "still.png"
    rgb = _frames(1, 9, 11)[0]
    _png(path, rgb)
    with open_source(path) as source:
        assert source.info.kind == "image" and source.info.names == ["still"]
        np.testing.assert_array_equal(source.read(0, 1)[0], rgb)
        assert source.read(1, 1).shape == (0, 9, 11, 3)
        with pytest.raises(IndexError):
            source.read(0, 2)


# ----------------------------------------------------------------------------- positions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("120f", 120),
        ("0f", 0),
        ("12.5", 300),
        ("12.5s", 300),
        ("2", 48),
        (".5s", 12),
        ("01:30", 2160),
        ("1:02.5", 1500),
        ("1:00:00", 86400),
        (" 10s ", 240),
    ],
)
def test_parse_position(text: str, expected: int) -> None:
    assert parse_position(text, 24.0) == expected


def test_parse_position_rounds_to_the_nearest_frame_and_checks_the_end() -> None:
    assert parse_position("1", 30000 / 1001) == 30
    assert parse_position("100f", 24, num_frames=100) == 100
    with pytest.raises(ValueError, match="past the end"):
        parse_position("101f", 24, num_frames=100)


@pytest.mark.parametrize("text", ["", "abc", "12x", "-5", "1:75", "1:60:00", "12.5f", "f", "1::2"])
def test_parse_position_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_position(text, 24.0)
    assert "\n" not in str(excinfo.value) and not isinstance(excinfo.value, InputError)


def test_wrong_timestamps_fall_back_to_counting_from_the_start(bframes_mp4: Path) -> None:
    # If the demuxed stamps do not match what the decoder gives (seen with broken files), a range
    # read must still return the frames of a sequential decode.
    from framematrix.io.source import _Timeline

    reference, _, _ = _sequential(bframes_mp4)
    with open_source(bframes_mp4) as source:
        reader = source._reader
        true = reader.timeline()
        shifted = [p + 1 for p in true.pts]  # no decoded frame has one of these stamps
        reader._timeline = _Timeline(
            shifted, [k + 1 for k in true.keys], {p: i for i, p in enumerate(shifted)}, True
        )
        np.testing.assert_array_equal(source.read(70, 75), reference[70:75])
        assert not reader.timeline().exact
        np.testing.assert_array_equal(source.read(20, 22), reference[20:22])


@pytest.mark.parametrize("rotation", [None, 90])
def test_small_frames_of_a_video_are_the_full_frames_downscaled(
    tmp_path: Path, rotation: int | None
) -> None:
    # iter_small scales in FFmpeg while converting; the picture is the one the full-size read
    # gives (upright, same colours, in order), downscaled: away from colour edges (where
    # FFmpeg's scaling of the subsampled chroma differs) it equals an area average closely
    import cv2

    stored = np.zeros((20, 96, 160, 3), np.uint8)  # blocks of colour and a moving bar
    stored[:, :48, :60] = (250, 20, 20)  # red at the stored top left
    stored[:, 48:, 80:] = (30, 60, 220)
    for i in range(20):
        stored[i, :, 4 * i : 4 * i + 30, 1] = 200
    path = tmp_path / "small.mp4"
    _encode(path, stored, rotation=rotation)
    with open_source(path) as source:
        full = source.read(0, 20)
        for interpolation in ("AREA", "BICUBIC"):
            chunks = list(source.iter_small((16, 9), 3, 20, chunk=8, interpolation=interpolation))
            assert [first for first, _ in chunks] == [3, 11, 19]
            small = np.concatenate([c for _, c in chunks])
            assert small.shape == (17, 9, 16, 3) and small.dtype == np.uint8
            area = [cv2.resize(f, (16, 9), interpolation=cv2.INTER_AREA) for f in full[3:]]
            error = np.abs(small.astype(int) - np.stack(area))
            assert np.median(error) <= 2, interpolation
            assert error.mean() < np.abs(small.astype(int) - np.stack(area[::-1])).mean() / 2
