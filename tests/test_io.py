"""Inputs (videos, frame folders, images) and atomic outputs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import shared_path
from framematrix.errors import InputError
from framematrix.io import (
    atomic_dir,
    atomic_path,
    iter_video_frames,
    probe_clip,
    read_clip,
)
from framematrix.io.video import natural_key


def _write_png(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _encode(
    path: Path,
    frames: np.ndarray,
    rate: Fraction | int = 24,
    audio_seconds: float | None = None,
    faststart: bool = False,
) -> None:
    """A test video made with PyAV directly (independent of our writers): H.264 + optional AAC."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        video = out.add_stream("libx264", rate=rate)
        video.height, video.width = frames.shape[1:3]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "0", "preset": "ultrafast"}
        audio = None
        if audio_seconds is not None:
            audio = out.add_stream("aac", rate=48000)
            audio.layout = "mono"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if audio is not None:
            t = np.arange(int(48000 * audio_seconds)) / 48000
            samples = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, 0
            for packet in audio.encode(frame):
                out.mux(packet)
            for packet in audio.encode(None):
                out.mux(packet)


def _smooth_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frames with smooth gradients that differ per frame (survive yuv420p within a few levels)."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i, ..., 0] = (x * 3 + i * 10) % 256
        frames[i, ..., 1] = (y * 4 + 40) % 256
        frames[i, ..., 2] = (30 + i * 15) % 256
    return frames


def _assert_one_line_naming(excinfo: pytest.ExceptionInfo, name: str) -> None:
    message = str(excinfo.value)
    assert name in message, message
    assert "\n" not in message, message


# ----------------------------------------------------------------------------- videos


def test_video_roundtrip_keeps_frames_fps_and_audio_flag(tmp_path: Path) -> None:
    frames = _smooth_frames(6)
    path = tmp_path / "clip.mp4"
    _encode(path, frames, rate=24, audio_seconds=0.25)
    clip = read_clip(path)
    assert clip.kind == "video" and clip.source == path
    assert clip.frames.shape == (6, 48, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(24.0)
    assert clip.has_audio
    assert clip.names == ["00000", "00001", "00002", "00003", "00004", "00005"]
    # crf 0 but yuv420p + 8-bit conversion: a few levels of error, frame order must be kept.
    error = np.abs(clip.frames.astype(int) - frames.astype(int))
    assert error.mean() < 3.0
    assert np.abs(np.diff(clip.frames[..., 2].mean(axis=(1, 2))) - 15).max() < 2


def test_video_fractional_fps_and_no_audio(tmp_path: Path) -> None:
    path = tmp_path / "ntsc.mkv"
    _encode(path, _smooth_frames(3), rate=Fraction(30000, 1001))
    clip = read_clip(path)
    assert clip.fps == pytest.approx(30000 / 1001, abs=1e-6)
    assert not clip.has_audio


def test_max_frames_and_iterator_match_full_read(tmp_path: Path) -> None:
    path = tmp_path / "clip.mov"
    _encode(path, _smooth_frames(5))
    full = read_clip(path)
    part = read_clip(path, max_frames=2)
    assert part.frames.shape[0] == 2
    np.testing.assert_array_equal(part.frames, full.frames[:2])
    streamed = np.stack(list(iter_video_frames(path)))
    np.testing.assert_array_equal(streamed, full.frames)
    assert len(list(iter_video_frames(path, max_frames=3))) == 3


def test_probe_clip_counts_without_decoding(tmp_path: Path) -> None:
    mp4, mkv = tmp_path / "a.mp4", tmp_path / "b.mkv"
    _encode(mp4, _smooth_frames(7, 32, 48), audio_seconds=0.2)
    _encode(mkv, _smooth_frames(4, 32, 48))  # MKV stores no frame count: packets are counted
    info = probe_clip(mp4)
    assert (info.num_frames, info.height, info.width, info.kind) == (7, 32, 48, "video")
    assert info.fps == pytest.approx(24.0) and info.has_audio
    assert probe_clip(mkv).num_frames == 4


def test_real_video_davis_dolphins() -> None:
    path = shared_path("data", "video", "davis_dolphins.mp4")
    clip = read_clip(path)
    assert clip.frames.shape == (59, 540, 960, 3)
    assert clip.fps == pytest.approx(24.0)
    assert not clip.has_audio
    # A real, moving picture: frames are neither blank nor identical.
    first, last = clip.frames[0].astype(np.int16), clip.frames[-1].astype(np.int16)
    assert first.std() > 20
    assert np.abs(first - last).mean() > 5
    info = probe_clip(path)
    assert (info.num_frames, info.height, info.width) == (59, 540, 960)


# ----------------------------------------------------------------------------- frames, images


def test_frame_folder_natural_order_names_and_fps(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for value in (1, 2, 10):  # lexical order would be 1, 10, 2
        _write_png(folder / f"f{value}.png", np.full((8, 12, 3), value, np.uint8))
    (folder / "notes.txt").write_text("not a frame")
    _write_png(folder / ".f0.tmp-1234.png", np.zeros((8, 12, 3), np.uint8))  # hidden: skipped
    clip = read_clip(folder)
    assert clip.kind == "frames" and clip.names == ["f1", "f2", "f10"]
    assert clip.frames[:, 0, 0, 0].tolist() == [1, 2, 10]
    assert clip.fps == 24.0
    assert read_clip(folder, fps=12.5).fps == 12.5
    assert read_clip(folder, max_frames=2).names == ["f1", "f2"]
    assert probe_clip(folder).num_frames == 3


def test_frame_folder_png_is_lossless_and_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 10, 14, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        _write_png(tmp_path / f"{i:05d}.png", frame)
    np.testing.assert_array_equal(read_clip(tmp_path).frames, frames)


def test_single_image_png_and_jpg(tmp_path: Path) -> None:
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # pure red: a BGR/RGB swap would show up
    png, jpg = tmp_path / "shot.png", tmp_path / "shot.jpg"
    _write_png(png, rgb)
    assert cv2.imwrite(str(jpg), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    clip = read_clip(png)
    assert clip.kind == "image" and clip.frames.shape == (1, 20, 30, 3) and clip.names == ["shot"]
    np.testing.assert_array_equal(clip.frames[0], rgb)
    assert np.abs(read_clip(jpg).frames[0].astype(int) - rgb).max() <= 3


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["img10.png", "img2.png", "img1.png", "Img3.png"]
    assert sorted(names, key=natural_key) == ["img1.png", "img2.png", "Img3.png", "img10.png"]


# ----------------------------------------------------------------------------- bad inputs


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError) as excinfo:
        read_clip(tmp_path / "nothing_here.mp4")
    _assert_one_line_naming(excinfo, "nothing_here.mp4")


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "fake.mp4"
    path.write_text("this is not a video\n")
    with pytest.raises(InputError) as excinfo:
        read_clip(path)
    _assert_one_line_naming(excinfo, "fake.mp4")
    with pytest.raises(InputError):
        probe_clip(path)


@pytest.mark.parametrize("faststart", [False, True])
def test_truncated_video(tmp_path: Path, faststart: bool) -> None:
    # Without faststart the index sits at the end (open fails); with it the data runs out midway.
    whole = tmp_path / "whole.mp4"
    _encode(whole, _smooth_frames(30), faststart=faststart)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as excinfo:
        read_clip(cut)
    _assert_one_line_naming(excinfo, "cut.mp4")


def test_video_with_zero_frames(tmp_path: Path) -> None:
    # A video track is declared but holds no packet; one audio packet makes the file valid.
    path = tmp_path / "empty.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height = 64, 48
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), "fltp", "mono")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*audio.encode(frame), *audio.encode(None)]:
            out.mux(packet)
    with pytest.raises(InputError) as excinfo:
        read_clip(path)
    _assert_one_line_naming(excinfo, "empty.mkv")
    assert "no frames" in str(excinfo.value)


def test_file_without_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "sound.mp4"
    with av.open(str(path), "w") as out:
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), "fltp", "mono")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*audio.encode(frame), *audio.encode(None)]:
            out.mux(packet)
    with pytest.raises(InputError) as excinfo:
        read_clip(path)
    _assert_one_line_naming(excinfo, "sound.mp4")


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "clip.gif"
    path.write_bytes(b"GIF89a")
    with pytest.raises(InputError) as excinfo:
        read_clip(path)
    _assert_one_line_naming(excinfo, "clip.gif")


def test_folder_without_images(tmp_path: Path) -> None:
    empty = tmp_path / "empty_frames"
    empty.mkdir()
    with pytest.raises(InputError) as excinfo:
        read_clip(empty)
    _assert_one_line_naming(excinfo, "empty_frames")
    (empty / "readme.txt").write_text("no pictures")
    with pytest.raises(InputError):
        read_clip(empty)


def test_folder_with_differing_frame_sizes(tmp_path: Path) -> None:
    _write_png(tmp_path / "000.png", np.zeros((8, 12, 3), np.uint8))
    _write_png(tmp_path / "001.png", np.zeros((8, 13, 3), np.uint8))
    with pytest.raises(InputError) as excinfo:
        read_clip(tmp_path)
    _assert_one_line_naming(excinfo, "001.png")
    assert "13x8" in str(excinfo.value) and "12x8" in str(excinfo.value)


def test_corrupt_image_in_folder(tmp_path: Path) -> None:
    _write_png(tmp_path / "000.png", np.zeros((8, 12, 3), np.uint8))
    (tmp_path / "001.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(InputError) as excinfo:
        read_clip(tmp_path)
    _assert_one_line_naming(excinfo, "001.png")


# ----------------------------------------------------------------------------- atomic outputs


def test_atomic_path_renames_on_success_keeping_extension(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "out.mp4"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp.suffix == ".mp4" and tmp.name.startswith(".")
        assert not final.exists()
        tmp.write_bytes(b"new")
    assert final.read_bytes() == b"new"
    assert sorted(p.name for p in final.parent.iterdir()) == ["out.mp4"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_path_cleans_up_and_keeps_old_file_on_error(
    tmp_path: Path, error: type[BaseException]
) -> None:
    final = tmp_path / "out.png"
    final.write_bytes(b"old")
    with pytest.raises(error), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise error()
    assert final.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_atomic_path_requires_output(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "never.txt"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_existing_only_at_the_end(tmp_path: Path) -> None:
    final = tmp_path / "frames"
    final.mkdir()
    (final / "old.png").write_bytes(b"old")
    with pytest.raises(InputError, match="not empty"), atomic_dir(final):
        pass  # a folder with someone's files is not replaced by default
    assert [p.name for p in final.iterdir()] == ["old.png"]
    with atomic_dir(final, overwrite=True) as tmp:
        (tmp / "new.png").write_bytes(b"new")
        assert (final / "old.png").exists()  # the old output stays until the new one is complete
    assert [p.name for p in final.iterdir()] == ["new.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]
    with pytest.raises(ValueError), atomic_dir(final, overwrite=True) as tmp:
        (tmp / "half.png").write_bytes(b"half")
        raise ValueError("stop")
    assert [p.name for p in final.iterdir()] == ["new.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


def test_atomic_dir_fills_an_empty_folder_and_refuses_a_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_dir(empty) as tmp:
        (tmp / "a.png").write_bytes(b"a")
    assert [p.name for p in empty.iterdir()] == ["a.png"]
    a_file = tmp_path / "notes.txt"
    a_file.write_text("precious")
    with pytest.raises(InputError, match="existing file"), atomic_dir(a_file):
        pass
    assert a_file.read_text() == "precious"
