"""Stereo layouts, view grids and the video / frame / image writers (audio included)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import shared_path
from framematrix.errors import InputError, ShapeError
from framematrix.export import (
    FORMAT_NAMES,
    FORMATS,
    compose_stereo,
    format_help,
    to_uint8,
    views_grid,
    write_frames,
    write_image,
    write_video,
)
from framematrix.io import read_clip

# ----------------------------------------------------------------------------- helpers


def _eyes(frames: int = 2, height: int = 4, width: int = 6) -> tuple[np.ndarray, np.ndarray]:
    left = np.zeros((frames, height, width, 3), np.uint8)
    right = np.zeros_like(left)
    left[..., 0] = 200  # left eye red, right eye blue: placement is visible in every layout
    right[..., 2] = 100
    return left, right


def _sine_clip(
    path: Path, frames: int = 10, audio_codec: str = "aac", sample_rate: int = 48000
) -> None:
    """frames x 64x48 H.264 video at 24 fps with a 440 Hz mono sine of the same duration."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream(audio_codec, rate=sample_rate)
        audio.layout = "mono"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(
                np.full((48, 64, 3), i * 10 % 256, np.uint8), "rgb24"
            )
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        count = sample_rate * frames // 24
        sine = np.sin(2 * np.pi * 440 * np.arange(count) / sample_rate)
        if audio.format.name.startswith("s16"):
            samples = (sine * 16000).astype(np.int16)[None]
            sample_format = "s16"
        else:
            samples = (0.5 * sine).astype(np.float32)[None]
            sample_format = "fltp"
        frame = av.AudioFrame.from_ndarray(samples, format=sample_format, layout="mono")
        frame.sample_rate, frame.pts = sample_rate, 0
        for packet in [*audio.encode(frame), *audio.encode(None)]:
            out.mux(packet)


def _audio_of(path: Path) -> tuple[str, np.ndarray, int]:
    """(codec name, decoded mono samples, sample rate) of the first audio stream."""
    with av.open(str(path)) as container:
        assert container.streams.audio, f"{path.name} has no audio stream"
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray()[0] for frame in container.decode(stream)]
        return stream.codec_context.name, np.concatenate(chunks), stream.rate


def _dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def _assert_only(folder: Path, names: list[str]) -> None:
    """No output and no temporary left behind except ``names``."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


# ----------------------------------------------------------------------------- stereo layouts


def test_side_by_side_top_bottom_and_cross_placement() -> None:
    left, right = _eyes()
    sbs = compose_stereo(left, right, "sbs")
    assert sbs.shape == (2, 4, 12, 3) and sbs.dtype == np.uint8
    np.testing.assert_array_equal(sbs[:, :, :6], left)
    np.testing.assert_array_equal(sbs[:, :, 6:], right)
    cross = compose_stereo(left, right, "cross")
    np.testing.assert_array_equal(cross[:, :, :6], right)  # right eye on the left
    np.testing.assert_array_equal(cross[:, :, 6:], left)
    tb = compose_stereo(left, right, "tb")
    assert tb.shape == (2, 8, 6, 3)
    np.testing.assert_array_equal(tb[:, :4], left)
    np.testing.assert_array_equal(tb[:, 4:], right)
    np.testing.assert_array_equal(compose_stereo(left, right, "left"), left)
    np.testing.assert_array_equal(compose_stereo(left, right, "right"), right)


def test_half_layouts_squeeze_each_eye() -> None:
    left, right = _eyes(height=4, width=6)
    left[:, :, 0::2, 1] = 50  # alternate columns: area squeeze averages pairs to 25
    half_sbs = compose_stereo(left, right, "half-sbs")
    assert half_sbs.shape == (2, 4, 6, 3)
    np.testing.assert_array_equal(half_sbs[:, :, :3, 0], 200)
    np.testing.assert_array_equal(half_sbs[:, :, :3, 1], 25)
    np.testing.assert_array_equal(half_sbs[:, :, 3:], right[:, :, :3])
    half_tb = compose_stereo(left, right, "half-tb")
    assert half_tb.shape == (2, 4, 6, 3)
    np.testing.assert_array_equal(half_tb[:, :2, :, 0], 200)
    np.testing.assert_array_equal(half_tb[:, 2:, :, 2], 100)
    odd_left, odd_right = _eyes(height=5, width=7)
    assert compose_stereo(odd_left, odd_right, "half-sbs").shape == (2, 5, 6, 3)
    assert compose_stereo(odd_left, odd_right, "half-tb").shape == (2, 4, 7, 3)


def test_half_layouts_are_the_mean_of_each_pixel_pair() -> None:
    # the exact 2:1 squeeze averages each pair (uint8 half up: 2 and 3 give 3), float exactly
    rng = np.random.default_rng(3)
    left = rng.integers(0, 256, (2, 6, 8, 3), dtype=np.uint8)
    right = rng.integers(0, 256, (2, 6, 8, 3), dtype=np.uint8)
    left[0, 0, :2, 0] = (2, 3)

    def pairs(eye: np.ndarray, axis: int) -> np.ndarray:
        a = np.take(eye, range(0, eye.shape[axis], 2), axis).astype(np.int32)
        b = np.take(eye, range(1, eye.shape[axis], 2), axis)
        return ((a + b + 1) // 2).astype(np.uint8)

    sbs = compose_stereo(left, right, "half-sbs")
    np.testing.assert_array_equal(sbs, np.concatenate([pairs(left, 2), pairs(right, 2)], 2))
    assert sbs[0, 0, 0, 0] == 3
    tb = compose_stereo(left, right, "half-tb")
    np.testing.assert_array_equal(tb, np.concatenate([pairs(left, 1), pairs(right, 1)], 1))
    lf, rf = left / np.float32(255), right / np.float32(255)
    sbs_f = compose_stereo(lf.astype(np.float32), rf.astype(np.float32), "half-sbs")
    mean = (lf[:, :, 0::2] + lf[:, :, 1::2]) / 2
    np.testing.assert_allclose(sbs_f[:, :, :4], mean, atol=1e-7)


def test_colour_anaglyph_takes_red_from_left_and_green_blue_from_right() -> None:
    left = np.array([[[[0.9, 0.1, 0.2]]]], np.float32)
    right = np.array([[[[0.3, 0.6, 0.7]]]], np.float32)
    out = compose_stereo(left, right, "anaglyph-color")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], [0.9, 0.6, 0.7])


def _srgb_encode(v: float) -> float:
    return 12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055


def test_dubois_anaglyph_on_known_colours() -> None:
    red = np.zeros((1, 1, 1, 3), np.uint8)
    red[..., 0] = 255
    black = np.zeros_like(red)
    # Left eye pure red, right eye black: output = first column of the left matrix, clipped.
    gamma = compose_stereo(red, black, "anaglyph", linear_light=False)
    np.testing.assert_array_equal(gamma[0, 0, 0], [round(0.437 * 255), 0, 0])
    linear = compose_stereo(red, black, "anaglyph")
    np.testing.assert_array_equal(linear[0, 0, 0], [round(_srgb_encode(0.437) * 255), 0, 0])
    # Right eye pure blue: third column of the right matrix, R = -0.007 clipped to 0,
    # G = 0.009 (-> 2), B = 1.234 clipped to 1 (-> 255).
    blue = np.zeros_like(red)
    blue[..., 2] = 255
    np.testing.assert_array_equal(
        compose_stereo(black, blue, "anaglyph", linear_light=False)[0, 0, 0], [0, 2, 255]
    )
    # The same grey in both eyes stays grey (each output row of L + R sums to about 1).
    grey = np.full((1, 1, 1, 3), 0.4, np.float32)
    for linear_light in (True, False):
        out = compose_stereo(grey, grey, "anaglyph", linear_light=linear_light)[0, 0, 0]
        np.testing.assert_allclose(out, 0.4, atol=0.004)


def test_compose_checks_inputs() -> None:
    left, right = _eyes()
    with pytest.raises(ValueError, match="unknown stereo format"):
        compose_stereo(left, right, "interlaced")
    with pytest.raises(ShapeError):
        compose_stereo(left, right[:, :, :5], "sbs")
    with pytest.raises(ShapeError):
        compose_stereo(left[0], right[0], "sbs")


def test_formats_listing() -> None:
    expected = {"sbs", "half-sbs", "tb", "half-tb", "anaglyph", "anaglyph-color", "cross"}
    assert expected | {"left", "right"} == set(FORMAT_NAMES)
    assert all(description for _, description in FORMATS)
    assert len(format_help().splitlines()) == len(FORMATS)
    left, right = _eyes()
    for name in FORMAT_NAMES:  # every listed format is implemented
        assert compose_stereo(left, right, name).ndim == 4


def test_views_grid_tiles_row_by_row() -> None:
    views = np.zeros((5, 2, 3, 4, 3), np.uint8)
    for v in range(5):
        views[v] = 10 * (v + 1)
    grid = views_grid(views)  # 5 views: 3 columns, 2 rows
    assert grid.shape == (2, 6, 12, 3)
    for v in range(5):
        row, col = divmod(v, 3)
        np.testing.assert_array_equal(
            grid[:, row * 3 : row * 3 + 3, col * 4 : col * 4 + 4], views[v]
        )
    np.testing.assert_array_equal(grid[:, 3:, 8:], 0)  # the empty sixth cell is black
    column = views_grid(views, cols=1)
    assert column.shape == (2, 15, 4, 3)
    np.testing.assert_array_equal(column[:, 6:9], views[2])
    with pytest.raises(ShapeError):
        views_grid(views[0])


def test_to_uint8_rounds_and_clips() -> None:
    values = np.array([0.0, 1.0, 0.2, -0.1, 1.5, np.nan, 0.5 / 255], np.float32)
    assert to_uint8(values).tolist() == [0, 255, 51, 0, 255, 0, 0]
    assert to_uint8(np.array([3 / 255 + 0.4 / 255])).tolist() == [3]


# ----------------------------------------------------------------------------- write_video


def _gradient_frames(count: int, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), np.float32)
    for i in range(count):
        frames[i, ..., 0] = x / width
        frames[i, ..., 1] = y / height
        frames[i, ..., 2] = i / count
    return frames


def test_write_video_round_trip_float_frames(tmp_path: Path) -> None:
    frames = _gradient_frames(6, 48, 64)
    path = write_video(tmp_path / "out.mp4", frames, fps=24, crf=12, preset="ultrafast")
    clip = read_clip(path)
    assert clip.frames.shape == (6, 48, 64, 3) and clip.fps == pytest.approx(24.0)
    assert not clip.has_audio
    assert np.abs(clip.frames.astype(float) - frames * 255).mean() < 3
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        assert context.name == "h264" and context.pix_fmt == "yuv420p"
    _assert_only(tmp_path, ["out.mp4"])


@pytest.mark.parametrize("suffix", [".mkv", ".mov"])
def test_write_video_fractional_fps_odd_size_and_generator(tmp_path: Path, suffix: str) -> None:
    frames = (_gradient_frames(4, 33, 47) * 255).astype(np.uint8)
    path = write_video(tmp_path / f"ntsc{suffix}", (f for f in frames), fps=30000 / 1001)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == Fraction(30000, 1001)
    clip = read_clip(path)
    assert clip.frames.shape == (4, 34, 48, 3)  # padded to even by one replicated row/column
    np.testing.assert_allclose(clip.frames[:, 33].astype(float), clip.frames[:, 32], atol=4)


def test_audio_is_copied_without_reencoding(tmp_path: Path) -> None:
    source = tmp_path / "with_sound.mp4"
    _sine_clip(source, frames=10)
    clip = read_clip(source)
    assert clip.has_audio
    output = write_video(tmp_path / "stereo.mp4", clip.frames, clip.fps, audio_from=source)
    codec, samples, rate = _audio_of(output)
    assert codec == "aac" and rate == 48000
    assert len(samples) / rate == pytest.approx(10 / 24, abs=0.05)
    assert _dominant_frequency(samples, rate) == pytest.approx(440, abs=5)
    with av.open(str(source)) as a, av.open(str(output)) as b:
        copied = [bytes(p) for p in b.demux(b.streams.audio[0]) if p.size]
        original = [bytes(p) for p in a.demux(a.streams.audio[0]) if p.size]
    assert copied == original  # remuxed: identical compressed packets
    assert read_clip(output).has_audio


def test_audio_is_cut_to_a_shorter_video(tmp_path: Path) -> None:
    source = tmp_path / "long.mkv"
    _sine_clip(source, frames=24)  # one second
    output = write_video(
        tmp_path / "short.mkv", np.zeros((6, 48, 64, 3), np.uint8), 24, audio_from=source
    )
    _, samples, rate = _audio_of(output)
    assert len(samples) / rate == pytest.approx(0.25, abs=0.05)


@pytest.mark.parametrize("audio_codec", ["adpcm_ms", "pcm_s16le"])
def test_audio_codec_the_container_refuses_is_transcoded_to_aac(
    tmp_path: Path, audio_codec: str
) -> None:
    # PCM passes an in-memory mp4 header but used to fail when the trailer was written.
    source = tmp_path / "old.avi"
    _sine_clip(source, frames=10, audio_codec=audio_codec, sample_rate=16000)
    output = write_video(
        tmp_path / "new.mp4", np.zeros((10, 48, 64, 3), np.uint8), 24, audio_from=source
    )
    codec, samples, rate = _audio_of(output)
    assert codec == "aac" and rate == 16000
    assert _dominant_frequency(samples, rate) == pytest.approx(440, abs=10)


def test_audio_from_a_silent_video_adds_no_audio(tmp_path: Path) -> None:
    source = shared_path("data", "video", "davis_dolphins.mp4")
    output = write_video(
        tmp_path / "o.mp4", np.zeros((2, 48, 64, 3), np.uint8), 24, audio_from=source
    )
    with av.open(str(output)) as container:
        assert len(container.streams.audio) == 0


def test_failing_frame_source_leaves_nothing(tmp_path: Path) -> None:
    def frames():
        for i in range(5):
            if i == 3:
                raise RuntimeError("model crashed")
            yield np.full((48, 64, 3), i * 30, np.uint8)

    with pytest.raises(RuntimeError, match="model crashed"):
        write_video(tmp_path / "broken.mp4", frames(), fps=24)
    _assert_only(tmp_path, [])
    previous = tmp_path / "keep.mkv"
    previous.write_bytes(b"previous result")
    with pytest.raises(RuntimeError):
        write_video(previous, frames(), fps=24)
    assert previous.read_bytes() == b"previous result"
    _assert_only(tmp_path, ["keep.mkv"])


def test_write_video_rejects_bad_input(tmp_path: Path) -> None:
    mixed = [np.zeros((48, 64, 3), np.uint8), np.zeros((48, 66, 3), np.uint8)]
    with pytest.raises(ShapeError, match="frame 1"):
        write_video(tmp_path / "mixed.mp4", mixed, fps=24)
    with pytest.raises(InputError, match=r"clip\.gif"):
        write_video(tmp_path / "clip.gif", np.zeros((1, 8, 8, 3), np.uint8), fps=24)
    with pytest.raises(InputError, match="no_audio_here"):
        write_video(
            tmp_path / "a.mp4",
            np.zeros((1, 8, 8, 3), np.uint8),
            24,
            audio_from=tmp_path / "no_audio_here.mp4",
        )
    with pytest.raises(ShapeError):
        write_video(tmp_path / "empty.mp4", [], fps=24)
    _assert_only(tmp_path, [])


# ----------------------------------------------------------------------------- frames, images


def test_write_frames_names_round_trip_and_replace(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (3, 6, 8, 3), dtype=np.uint8)
    folder = write_frames(tmp_path / "out", frames, names=["a1", "a2", "a10"])
    assert sorted(p.name for p in folder.iterdir()) == ["a1.png", "a10.png", "a2.png"]
    clip = read_clip(folder)
    assert clip.names == ["a1", "a2", "a10"]
    np.testing.assert_array_equal(clip.frames, frames)
    with pytest.raises(InputError, match="not empty"):
        write_frames(folder, frames[:1])  # a non-empty folder is not replaced by default
    write_frames(folder, frames[:1].astype(np.float32) / 255, overwrite=True)
    assert [p.name for p in folder.iterdir()] == ["00000.png"]
    _assert_only(tmp_path, ["out"])


def test_write_frames_failure_keeps_old_folder(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    write_frames(folder, np.zeros((2, 4, 4, 3), np.uint8))

    def frames():
        yield np.zeros((4, 4, 3), np.uint8)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_frames(folder, frames(), overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["00000.png", "00001.png"]
    _assert_only(tmp_path, ["frames"])
    with pytest.raises(ShapeError):
        write_frames(tmp_path / "x", np.zeros((2, 4, 4, 3), np.uint8), names=["only_one"])
    _assert_only(tmp_path, ["frames"])


def test_write_image_png_exact_and_jpg_close(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        read_clip(write_image(tmp_path / "a.png", image)).frames[0], image
    )
    smooth = np.zeros((16, 16, 3), np.float32)
    smooth[..., 0] = 0.8
    jpg = read_clip(write_image(tmp_path / "b.jpg", smooth)).frames[0]
    assert np.abs(jpg.astype(int) - [204, 0, 0]).max() <= 3
    with pytest.raises(InputError, match=r"c\.bmp"):
        write_image(tmp_path / "c.bmp", image)
    _assert_only(tmp_path, ["a.png", "b.jpg"])
