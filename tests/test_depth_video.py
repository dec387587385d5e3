"""Depth in and out for long videos: the lossless writer, lazy readers of every depth input."""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from framematrix.errors import InputError, ShapeError
from framematrix.io.depth_files import read_depth
from framematrix.io.depth_video import DEPTH_TAG, DepthWriter, open_depth, sidecar_path

F, H, W = 40, 48, 64


def _depth(count: int = F, lo: float = 0.5, hi: float = 80.0, seed: int = 0) -> np.ndarray:
    """Smooth depth plus noise that uses the whole range [lo, hi] (both ends hit exactly)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W] / max(H, W)
    maps = np.stack([np.sin(3 * x + i / 7) * np.cos(2 * y) for i in range(count)])
    maps = maps + 0.05 * rng.standard_normal(maps.shape)
    maps = (maps - maps.min()) / (maps.max() - maps.min())
    return (lo + maps * (hi - lo)).astype(np.float32)


def _write(path: Path, depth: np.ndarray, lo: float, hi: float, **kwargs: object) -> None:
    with DepthWriter(path, width=W, height=H, fps=24, lo=lo, hi=hi, **kwargs) as writer:
        start = 0
        for size in (1, 7, 13, 3):  # uneven chunks, and one [H, W] map
            chunk = depth[start : start + size]
            writer.write(chunk[0] if size == 1 else chunk)
            start += size
        writer.write(depth[start:])


def _no_leftovers(folder: Path) -> None:
    hidden = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert not hidden, hidden


@pytest.mark.parametrize("target", ["depth.mkv", "depth_frames"])
def test_round_trip_is_exact_to_16_bits(tmp_path: Path, target: str) -> None:
    lo, hi = 0.5, 80.0
    depth = _depth(lo=lo, hi=hi)
    path = tmp_path / target
    _write(path, depth, lo, hi)
    _no_leftovers(tmp_path)
    record = json.loads(sidecar_path(path).read_text())
    assert (record["lo"], record["hi"], record["bits"], record["num_frames"]) == (lo, hi, 16, F)
    half_step = (hi - lo) / 65535 / 2
    with open_depth(path, num_frames=F, height=H, width=W) as source:
        assert source.kind == ("video" if target.endswith(".mkv") else "folder")
        assert source.scaled and (source.num_frames, source.height, source.width) == (F, H, W)
        whole = source.read(0, F)
        assert whole.dtype == np.float32 and whole.shape == (F, H, W)
        error = np.abs(whole.astype(np.float64) - depth)
        assert error.max() <= half_step * 1.001 + 1e-5, (error.max(), half_step)
        assert error.max() > half_step / 10  # it is quantised, not stored as float
        # Range reads in any order give the same maps (the video seeks like the frame source).
        rng = random.Random(3)
        for _ in range(12):
            start = rng.randrange(F)
            stop = rng.randrange(start, F + 1)
            np.testing.assert_array_equal(source.read(start, stop), whole[start:stop])


def test_mkv_is_lossless_ffv1_gray16_with_the_range_tag(tmp_path: Path) -> None:
    path = tmp_path / "d.mkv"
    depth = _depth(lo=-2.0, hi=3.0)
    _write(path, depth, -2.0, 3.0)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "ffv1"
        assert stream.codec_context.pix_fmt == "gray16le"
        tag = json.loads(container.metadata[DEPTH_TAG])
        q = np.stack([f.to_ndarray() for f in container.decode(stream)])
    assert (tag["lo"], tag["hi"], tag["bits"]) == (-2.0, 3.0, 16)
    expected = np.rint((depth.astype(np.float64) + 2.0) / 5.0 * 65535)
    np.testing.assert_array_equal(q, expected)
    assert q.min() == 0 and q.max() == 65535
    # Without the sidecar the tag inside the file is enough.
    sidecar_path(path).unlink()
    with open_depth(path, num_frames=F, height=H, width=W) as source:
        assert source.scaled
        np.testing.assert_allclose(source.read(10, 12), depth[10:12], atol=5 / 65535)


def test_eight_bit_output(tmp_path: Path) -> None:
    depth = _depth(lo=0.0, hi=1.0)
    path = tmp_path / "d8"
    _write(path, depth, 0.0, 1.0, bits=8)
    png = cv2.imread(str(path / "00000.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint8 and png.shape == (H, W)
    with open_depth(path, num_frames=F, height=H, width=W) as source:
        assert np.abs(source.read(0, F) - depth).max() <= 0.5 / 255 + 1e-6


def test_writer_is_atomic_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "d.mkv"
    with pytest.raises(RuntimeError), DepthWriter(path, width=W, height=H, fps=24, lo=0, hi=1) as w:
        w.write(np.zeros((3, H, W), np.float32))
        raise RuntimeError("stopped mid-way")
    assert list(tmp_path.iterdir()) == []
    folder = tmp_path / "frames"
    with (
        pytest.raises(RuntimeError),
        DepthWriter(folder, width=W, height=H, fps=24, lo=0, hi=1) as w,
    ):
        w.write(np.zeros((3, H, W), np.float32))
        raise RuntimeError("stopped mid-way")
    assert list(tmp_path.iterdir()) == []
    _write(path, _depth(lo=0, hi=1), 0.0, 1.0)
    with pytest.raises(InputError, match="d.mkv"):
        DepthWriter(path, width=W, height=H, fps=24, lo=0, hi=1)
    _write(path, _depth(lo=0, hi=2), 0.0, 2.0, overwrite=True)
    assert json.loads(sidecar_path(path).read_text())["hi"] == 2.0
    _no_leftovers(tmp_path)


def test_writer_checks_its_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\.mp4"):
        DepthWriter(tmp_path / "d.mp4", width=W, height=H, fps=24, lo=0, hi=1)
    with DepthWriter(tmp_path / "d.mkv", width=W, height=H, fps=24, lo=0, hi=1) as writer:
        with pytest.raises(ShapeError):
            writer.write(np.zeros((2, H, W + 1), np.float32))
        with pytest.raises(ShapeError, match="outside the range"):
            writer.write(np.full((1, H, W), 1.5, np.float32))
        with pytest.raises(ShapeError, match="NaN"):
            writer.write(np.full((1, H, W), np.nan, np.float32))
        writer.write(np.zeros((1, H, W), np.float32))


# ----------------------------------------------------------------------------- foreign inputs


def _encode_gray(path: Path, maps: np.ndarray, codec: str, pix_fmt: str) -> None:
    """A depth video made with PyAV directly, as another tool would (no range record)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(24))
        stream.height, stream.width = maps.shape[1:]
        stream.pix_fmt = pix_fmt
        for i, plane in enumerate(maps):
            frame = av.VideoFrame.from_ndarray(plane, format=pix_fmt)
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_gray8_mkv_from_pyav_reads_stored_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    maps = rng.integers(0, 256, (F, H, W), dtype=np.uint8)
    path = tmp_path / "gray8.mkv"
    _encode_gray(path, maps, "ffv1", "gray")
    with open_depth(path, num_frames=F, height=H, width=W) as source:
        assert not source.scaled
        np.testing.assert_array_equal(source.read(0, F), maps.astype(np.float32))
        np.testing.assert_array_equal(source.read(31, 35), maps[31:35].astype(np.float32))


def test_gray16_in_another_container_and_codec(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    maps = rng.integers(0, 65536, (12, H, W), dtype=np.uint16)
    path = tmp_path / "gray16.mov"
    _encode_gray(path, maps, "png", "gray16be")
    with open_depth(path, num_frames=12, height=H, width=W) as source:
        np.testing.assert_array_equal(source.read(3, 9), maps[3:9].astype(np.float32))


def test_luma_of_a_yuv_depth_video(tmp_path: Path) -> None:
    path = tmp_path / "luma.mkv"
    maps = np.tile(np.linspace(16, 235, W).astype(np.uint8), (6, H, 1))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i, plane in enumerate(maps):
            yuv = np.concatenate([plane, np.full((H // 2, W), 128, np.uint8)])
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with open_depth(path, num_frames=6, height=H, width=W) as source:
        np.testing.assert_array_equal(source.read(0, 6), maps.astype(np.float32))


def test_png_folder_from_another_tool_and_resizing(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    maps = rng.integers(0, 65536, (5, 24, 32), dtype=np.uint16)  # half size, same aspect
    for i, plane in enumerate(maps):
        assert cv2.imwrite(str(tmp_path / f"depth_{i}.png"), plane)
    expected = read_depth(tmp_path, (5, H, W))  # today's reader: the resize to keep
    with open_depth(tmp_path, num_frames=5, height=H, width=W) as source:
        assert source.kind == "folder" and not source.scaled
        np.testing.assert_array_equal(source.read(0, 5), expected)
        np.testing.assert_array_equal(source.read(2, 4), expected[2:4])


def test_npy_stack_is_memory_mapped_and_npz_folder_and_single_map(tmp_path: Path) -> None:
    depth = _depth(count=7)
    np.save(tmp_path / "stack.npy", depth)
    with open_depth(tmp_path / "stack.npy", num_frames=7, height=H, width=W) as source:
        assert source.kind == "array" and isinstance(source._array, np.memmap)
        np.testing.assert_array_equal(source.read(2, 5), depth[2:5])
    np.savez(tmp_path / "stack.npz", depth=depth)
    with open_depth(tmp_path / "stack.npz", num_frames=7, height=H, width=W) as source:
        np.testing.assert_array_equal(source.read(6, 7), depth[6:7])
    folder = tmp_path / "npy_frames"
    folder.mkdir()
    for i, plane in enumerate(depth):
        np.save(folder / f"{i:04d}.npy", plane)
    with open_depth(folder, num_frames=7, height=H, width=W) as source:
        np.testing.assert_array_equal(source.read(0, 7), depth)
    np.save(tmp_path / "one.npy", depth[3])
    with open_depth(tmp_path / "one.npy", num_frames=1, height=H, width=W) as source:
        np.testing.assert_array_equal(source.read(0, 1), depth[3:4])
    assert cv2.imwrite(str(tmp_path / "one.png"), (depth[0] * 100).astype(np.uint16))
    with open_depth(tmp_path / "one.png", num_frames=1, height=H, width=W) as source:
        assert source.kind == "file"
        np.testing.assert_array_equal(source.read(0, 1)[0], (depth[0] * 100).astype(np.uint16))


# ----------------------------------------------------------------------------- bad inputs


def _one_line(excinfo: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message


def test_wrong_count_names_the_file_and_both_counts(tmp_path: Path) -> None:
    path = tmp_path / "short.mkv"
    _write(path, _depth(), 0.5, 80.0)
    with pytest.raises(InputError) as excinfo:
        open_depth(path, num_frames=41, height=H, width=W, name="--depth")
    _one_line(excinfo, "short.mkv", "40", "41", "--depth")
    folder = tmp_path / "f"
    _write(folder, _depth(), 0.5, 80.0)
    with pytest.raises(InputError) as excinfo:
        open_depth(folder, num_frames=39, height=H, width=W)
    _one_line(excinfo, "f", "40", "39")
    np.save(tmp_path / "s.npy", np.zeros((3, H, W), np.float32))
    with pytest.raises(InputError) as excinfo:
        open_depth(tmp_path / "s.npy", num_frames=4, height=H, width=W)
    _one_line(excinfo, "s.npy", "3", "4")


def test_wrong_aspect_and_missing_and_unknown(tmp_path: Path) -> None:
    path = tmp_path / "d.mkv"
    _write(path, _depth(), 0.5, 80.0)
    with pytest.raises(InputError) as excinfo:
        open_depth(path, num_frames=F, height=H, width=W * 2)
    _one_line(excinfo, "d.mkv", f"{W}x{H}", f"{W * 2}x{H}")
    with pytest.raises(InputError) as excinfo:
        open_depth(tmp_path / "none.mkv", num_frames=F, height=H, width=W)
    _one_line(excinfo, "none.mkv")
    (tmp_path / "d.txt").write_text("0 1 2")
    with pytest.raises(InputError) as excinfo:
        open_depth(tmp_path / "d.txt", num_frames=1, height=H, width=W)
    _one_line(excinfo, "d.txt")
    (tmp_path / "broken.mkv").write_bytes(b"not a video at all")
    with pytest.raises(InputError) as excinfo:
        open_depth(tmp_path / "broken.mkv", num_frames=1, height=H, width=W)
    _one_line(excinfo, "broken.mkv")
