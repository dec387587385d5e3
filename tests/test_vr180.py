"""VR180: the equirectangular projection on synthetic grids, and the st3d/sv3d metadata."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import av
import numpy as np
import pytest

from framematrix.export.join import join_segments
from framematrix.export.vr180 import (
    DEFAULT_FOV_DEG,
    add_vr180_metadata,
    compose_vr180,
    default_eye_size,
    equirect_maps,
    fov_from_focal,
    read_spherical_metadata,
    to_vr180_eye,
)
from framematrix.export.writers import VideoEncoding, VideoWriter, write_video


def _focal(width: int, fov_deg: float) -> float:
    return width / 2 / math.tan(math.radians(fov_deg) / 2)


def test_output_size_and_eye_order() -> None:
    left = np.zeros((2, 36, 64, 3), np.uint8)
    right = np.zeros_like(left)
    left[..., 0], right[..., 2] = 200, 100
    out = compose_vr180(left, right, fov_deg=70, eye_size=50)
    assert out.shape == (2, 50, 100, 3) and out.dtype == np.uint8
    assert out[0, 25, 25, 0] == 200 and out[0, 25, 75, 2] == 100  # left eye in the left half
    assert out[0, 25, 75, 0] == 0
    # Default size: S = pi f (even) keeps the centre detail; capped at 2048 per eye.
    expected = round(math.pi * _focal(64, DEFAULT_FOV_DEG))
    assert default_eye_size(64) == expected - expected % 2
    assert default_eye_size(3840) == 2048
    assert compose_vr180(left, right).shape[1] == default_eye_size(64)


def test_centre_maps_to_centre_and_outside_the_fov_is_black() -> None:
    height, width, size = 40, 60, 101  # odd eye: column/row 50 is longitude/latitude 0
    map_x, map_y = equirect_maps(height, width, size, fov_deg=90)
    assert map_x[50, 50] == pytest.approx((width - 1) / 2, abs=1e-4)
    assert map_y[50, 50] == pytest.approx((height - 1) / 2, abs=1e-4)
    white = np.full((1, height, width, 3), 255, np.uint8)
    eye = to_vr180_eye(white, fov_deg=90, eye_size=size)[0, ..., 0]
    # 90 degrees across: longitudes beyond +-45 degrees (columns < 25 or > 75) see nothing.
    row = eye[50]
    assert row[0] == 0 and row[-1] == 0 and row[:24].max() == 0 and row[77:].max() == 0
    assert row[27:74].min() == 255
    assert eye[0].max() == 0 and eye[-1].max() == 0  # the poles are outside any pinhole view


@pytest.mark.parametrize("fov", [60.0, 90.0, 120.0])
def test_a_known_angle_lands_in_the_right_column_and_row(fov: float) -> None:
    height, width, size = 90, 160, 361  # 0.5 degree per output pixel
    focal = _focal(width, fov)
    grid = np.zeros((1, height, width, 3), np.float32)
    col, row = 120, 70  # one bright source column and row
    grid[0, :, col] = 1.0
    grid[0, row, :] = 1.0
    eye = to_vr180_eye(grid, fov_deg=fov, eye_size=size)[0, ..., 1]
    # Independent: the pinhole ray through the column centre has longitude atan(dx / f).
    longitude = math.atan((col + 0.5 - width / 2) / focal)
    expected_x = (longitude / math.pi + 0.5) * size - 0.5
    equator = eye[size // 2]
    found_x = float((equator * np.arange(size)).sum() / equator.sum())
    # (the bright row crosses the equator nowhere: it lies below it)
    assert found_x == pytest.approx(expected_x, abs=0.6)
    latitude = -math.atan((row + 0.5 - height / 2) / focal)  # on the central meridian
    expected_y = (0.5 - latitude / math.pi) * size - 0.5
    meridian = eye[:, size // 2]
    found_y = float((meridian * np.arange(size)).sum() / meridian.sum())
    assert found_y == pytest.approx(expected_y, abs=0.6)


def test_fov_from_focal() -> None:
    assert fov_from_focal(1280, _focal(1280, 70.0)) == pytest.approx(70.0)
    with pytest.raises(ValueError):
        to_vr180_eye(np.zeros((1, 8, 8, 3), np.uint8), fov_deg=180)


def _decoded_side_data(path: Path) -> dict[str, bytes]:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return {str(sd.type).split(".")[-1]: bytes(sd) for sd in frame.side_data.keys()}


def _assert_vr180_read_by_ffmpeg(path: Path) -> None:
    side = _decoded_side_data(path)
    # AVStereo3D.type 1 = side by side; AVSphericalMapping: projection 2 = equirectangular tile,
    # yaw/pitch/roll 0, bound_left, bound_top, bound_right, bound_bottom (0.32 fixed).
    assert struct.unpack_from("<i", side["STEREO3D"])[0] == 1
    projection, yaw, pitch, roll, left, top, right, bottom = struct.unpack_from(
        "<iiiiIIII", side["SPHERICAL"]
    )
    assert projection == 2 and (yaw, pitch, roll) == (0, 0, 0)
    assert (left, top, right, bottom) == (1 << 30, 0, 1 << 30, 0)
    info = read_spherical_metadata(path)
    assert info == {"stereo_mode": 2, "projection": "equirectangular", "bounds": (0, 0, 0.25, 0.25)}


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_writer_adds_boxes_ffmpeg_reads_and_frames_are_intact(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(3)
    eyes = rng.integers(0, 256, (2, 4, 36, 64, 3), dtype=np.uint8)
    frames = compose_vr180(eyes[0], eyes[1], eye_size=64)
    plain = write_video(tmp_path / f"plain{suffix}", frames, 24, encoding=VideoEncoding())
    tagged = write_video(
        tmp_path / f"vr{suffix}", frames, 24, encoding=VideoEncoding(spherical="vr180")
    )
    _assert_vr180_read_by_ffmpeg(tagged)
    assert "SPHERICAL" not in _decoded_side_data(plain)
    # faststart puts moov before the media: the shifted chunk offsets must still point right.
    np.testing.assert_array_equal(_frames(tagged), _frames(plain))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([plain.name, tagged.name])


def test_join_adds_boxes_with_audio_offsets_moved(tmp_path: Path) -> None:
    source = tmp_path / "src.mp4"
    with av.open(str(source), "w") as out:  # 1 s of silence-free tone, no video needed
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "mono"
        tone = (0.5 * np.sin(np.arange(48000) * 0.05)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*audio.encode(frame), *audio.encode(None)]:
            out.mux(packet)
    segments = []
    for k in range(2):
        segments.append(tmp_path / f"s{k}.mp4")
        with VideoWriter(segments[-1], 24, VideoEncoding(preset="ultrafast")) as writer:
            writer.write_many(np.full((6, 32, 64, 3), 40 * k, np.uint8))
    plain = join_segments(segments, tmp_path / "plain.mp4", audio_from=source)
    tagged = join_segments(segments, tmp_path / "vr.mp4", audio_from=source, spherical="vr180")
    _assert_vr180_read_by_ffmpeg(tagged)
    np.testing.assert_array_equal(_frames(tagged), _frames(plain))

    def samples(path: Path) -> np.ndarray:
        with av.open(str(path)) as container:
            return np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])

    np.testing.assert_array_equal(samples(tagged), samples(plain))


def test_boxes_are_not_added_twice(tmp_path: Path) -> None:
    path = write_video(
        tmp_path / "v.mp4", np.zeros((1, 32, 64, 3), np.uint8), 24, encoding=VideoEncoding()
    )
    add_vr180_metadata(path)
    from framematrix.errors import InputError

    with pytest.raises(InputError, match="already has"):
        add_vr180_metadata(path)
