"""Depth files: PFM, PNG (8/16 bit), NPY/NPZ, folders, count/size checks and resizing."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import shared_path
from framematrix.errors import InputError
from framematrix.io import read_depth, read_pfm, write_pfm


def _grey(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)


def _warp_error(left: np.ndarray, right: np.ndarray, disparity: np.ndarray, valid: np.ndarray):
    """Mean |left(x) - right(x - d)| over valid pixels (the left pixel x appears at x - d)."""
    height, width = disparity.shape
    ys, xs = np.mgrid[0:height, 0:width]
    finite = np.isfinite(disparity)
    target = np.rint(xs - np.where(finite, disparity, 0)).astype(int)
    ok = valid & finite & (target >= 0) & (target < width)
    return float(np.abs(left[ys[ok], xs[ok]] - right[ys[ok], target[ok]]).mean())


# ----------------------------------------------------------------------------- PFM


def test_middlebury_pfm_shape_inf_and_orientation() -> None:
    folder = shared_path("data", "stereo", "middlebury2014_motorcycle_Q")
    disparity = read_pfm(folder / "disp0GT.pfm")
    assert disparity.shape == (497, 741) and disparity.dtype == np.float32
    assert np.isinf(disparity).any()  # Middlebury marks unknown disparity with inf
    finite = disparity[np.isfinite(disparity)]
    assert 0 < finite.min() and finite.max() < 741
    # Rows must be flipped to top-down: only then does the disparity map left onto right.
    left, right = _grey(folder / "im0.png"), _grey(folder / "im1.png")
    valid = cv2.imread(str(folder / "mask0nocc.png"), cv2.IMREAD_UNCHANGED) == 255
    good = _warp_error(left, right, disparity, valid)
    flipped = _warp_error(left, right, disparity[::-1], valid[::-1])
    assert good < 10 and flipped > 3 * good


def test_flyingthings_pfm_reproduces_right_view() -> None:
    folder = shared_path("data", "stereo", "flyingthings_A-0032-0006")
    disparity = read_pfm(folder / "disparity" / "left" / "A-0032-0006.pfm")
    assert disparity.shape == (540, 960)
    left = _grey(folder / "RGB_cleanpass" / "left" / "A-0032-0006.png")
    right = _grey(folder / "RGB_cleanpass" / "right" / "A-0032-0006.png")
    occluded = cv2.imread(str(folder / "occlusion" / "left" / "A-0032-0006.png"), 0) > 0
    assert _warp_error(left, right, disparity, ~occluded) < 2.0  # DATA.md: about 1.4 levels


def test_pfm_bytes_are_bottom_up_with_scale_sign_as_endianness(tmp_path: Path) -> None:
    # Built by hand: 2x3 grey, big-endian (positive scale), stored bottom row first.
    top, bottom = [1.0, 2.0], [3.0, 4.0]
    middle = [5.0, 6.0]
    data = b"Pf\n2 3\n1.0\n" + struct.pack(">6f", *bottom, *middle, *top)
    path = tmp_path / "hand.pfm"
    path.write_bytes(data)
    np.testing.assert_array_equal(read_pfm(path), [top, middle, bottom])
    little = tmp_path / "little.pfm"
    little.write_bytes(b"Pf\n2 3\n-1.0\n" + struct.pack("<6f", *bottom, *middle, *top))
    np.testing.assert_array_equal(read_pfm(little), [top, middle, bottom])


@pytest.mark.parametrize("little_endian", [True, False])
@pytest.mark.parametrize("channels", [1, 3])
def test_pfm_round_trip(tmp_path: Path, little_endian: bool, channels: int) -> None:
    rng = np.random.default_rng(3)
    shape = (5, 7) if channels == 1 else (5, 7, 3)
    image = rng.normal(size=shape).astype(np.float32)
    image[0, 0] = np.inf
    image[1, 2] = np.nan
    path = write_pfm(tmp_path / "x.pfm", image, little_endian=little_endian)
    header = path.read_bytes().split(b"\n")
    assert header[0] == (b"Pf" if channels == 1 else b"PF")
    assert float(header[2]) == (-1.0 if little_endian else 1.0)
    np.testing.assert_array_equal(read_pfm(path), image)  # NaN compares equal here
    assert [p.name for p in tmp_path.iterdir()] == ["x.pfm"]


def test_bad_pfm_files(tmp_path: Path) -> None:
    truncated = tmp_path / "short.pfm"
    truncated.write_bytes(b"Pf\n4 4\n-1.0\n" + b"\0" * 20)
    with pytest.raises(InputError, match="short.pfm"):
        read_pfm(truncated)
    wrong = tmp_path / "wrong.pfm"
    wrong.write_bytes(b"P6\n4 4\n255\n" + b"\0" * 48)
    with pytest.raises(InputError, match="wrong.pfm"):
        read_pfm(wrong)


# ----------------------------------------------------------------------------- PNG, NPY, NPZ


def test_png_depth_8_and_16_bit_read_unchanged(tmp_path: Path) -> None:
    eight = np.array([[0, 7], [128, 255]], np.uint8)
    sixteen = np.array([[0, 300], [40000, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "d8.png"), eight)
    cv2.imwrite(str(tmp_path / "d16.png"), sixteen)
    depth8 = read_depth(tmp_path / "d8.png", (1, 2, 2))
    depth16 = read_depth(tmp_path / "d16.png")
    assert depth8.dtype == np.float32 and depth8.shape == (1, 2, 2)
    np.testing.assert_array_equal(depth8[0], eight)
    np.testing.assert_array_equal(depth16[0], sixteen)  # not squashed to 8 bit


def test_colour_png_depth_uses_first_channel(tmp_path: Path) -> None:
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    cv2.imwrite(str(tmp_path / "c.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_depth(tmp_path / "c.png")[0], np.full((3, 4), 10))


def test_npy_stack_and_npz_keys(tmp_path: Path) -> None:
    stack = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    np.save(tmp_path / "all.npy", stack)
    depth = read_depth(tmp_path / "all.npy", (2, 3, 4))
    assert depth.dtype == np.float32
    np.testing.assert_array_equal(depth, stack)
    np.savez(tmp_path / "named.npz", other=np.zeros((2, 3, 4)), depth=stack)
    np.testing.assert_array_equal(read_depth(tmp_path / "named.npz"), stack)
    np.savez(tmp_path / "first.npz", stack[:1, None])  # [1, 1, H, W]: channel axis dropped
    np.testing.assert_array_equal(read_depth(tmp_path / "first.npz", (1, 3, 4)), stack[:1])


def test_folder_natural_order(tmp_path: Path) -> None:
    for value in (1, 2, 10):
        np.save(tmp_path / f"d{value}.npy", np.full((3, 4), value, np.float32))
    depth = read_depth(tmp_path, (3, 3, 4))
    assert depth[:, 0, 0].tolist() == [1, 2, 10]


def test_astronaut_depth_folder() -> None:
    folder = shared_path("data", "astronaut", "depth")
    depth = read_depth(folder, (16, 320, 576))
    assert depth.shape == (16, 320, 576) and depth.dtype == np.float32
    np.testing.assert_array_equal(depth[5], np.load(folder / "00005.npy"))


def test_nan_and_inf_pass_through(tmp_path: Path) -> None:
    depth = np.ones((1, 4, 6), np.float32)
    depth[0, 1, 2], depth[0, 3, 5] = np.nan, np.inf
    np.save(tmp_path / "d.npy", depth)
    read = read_depth(tmp_path / "d.npy", (1, 4, 6))
    assert np.isnan(read[0, 1, 2]) and np.isposinf(read[0, 3, 5])
    assert np.isfinite(read).sum() == 22


# ----------------------------------------------------------------------------- size handling


def test_same_aspect_is_resized_bilinearly(tmp_path: Path) -> None:
    x = np.linspace(0, 1, 20, dtype=np.float32)
    ramp = np.tile(x, (10, 1))
    np.save(tmp_path / "r.npy", ramp)
    resized = read_depth(tmp_path / "r.npy", (1, 20, 40))  # 2x, same 2:1 aspect
    assert resized.shape == (1, 20, 40)
    assert np.all(np.diff(resized[0], axis=1) >= 0)  # still a monotone ramp, rows identical
    np.testing.assert_allclose(resized[0], cv2.resize(ramp, (40, 20)), atol=1e-6)
    # 1 % tolerance: 100x201 (aspect 2.01) fits 100x200.
    np.save(tmp_path / "s.npy", np.ones((100, 201), np.float32))
    assert read_depth(tmp_path / "s.npy", (1, 100, 200)).shape == (1, 100, 200)


def test_resize_keeps_unknown_regions_unknown(tmp_path: Path) -> None:
    depth = np.full((20, 20), 5.0, np.float32)
    depth[:, 10:] = 7.0
    depth[5:10, 2:6] = np.inf
    depth[15, 15] = np.nan
    np.save(tmp_path / "h.npy", depth)
    resized = read_depth(tmp_path / "h.npy", (1, 40, 40))[0]
    assert np.isposinf(resized[10:20, 4:12]).all()  # the inf block, scaled 2x
    assert np.isnan(resized[30:32, 30:32]).all()
    finite = resized[np.isfinite(resized)]
    assert finite.min() >= 5.0 and finite.max() <= 7.0  # no inf/NaN smeared into values
    assert np.isinf(resized).sum() == 5 * 4 * 4 and np.isnan(resized).sum() == 4


def test_count_mismatch_names_path_and_both_counts(tmp_path: Path) -> None:
    folder = tmp_path / "depths"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"{i}.npy", np.zeros((4, 6), np.float32))
    with pytest.raises(InputError) as excinfo:
        read_depth(folder, (5, 4, 6))
    message = str(excinfo.value)
    assert "depths" in message and "3" in message and "5" in message and "\n" not in message
    np.save(tmp_path / "stack.npy", np.zeros((2, 4, 6), np.float32))
    with pytest.raises(InputError, match=r"stack\.npy.*2.*7"):
        read_depth(tmp_path / "stack.npy", (7, 4, 6))


def test_other_aspect_names_both_sizes(tmp_path: Path) -> None:
    np.save(tmp_path / "square.npy", np.zeros((10, 10), np.float32))
    with pytest.raises(InputError) as excinfo:
        read_depth(tmp_path / "square.npy", (1, 10, 20))
    message = str(excinfo.value)
    assert "square.npy" in message and "10x10" in message and "20x10" in message


def test_bad_depth_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing_depth"):
        read_depth(tmp_path / "missing_depth")
    (tmp_path / "depth.txt").write_text("1 2 3")
    with pytest.raises(InputError, match=r"depth\.txt"):
        read_depth(tmp_path / "depth.txt")
    empty = tmp_path / "nodepth"
    empty.mkdir()
    with pytest.raises(InputError, match="nodepth"):
        read_depth(empty)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.save(mixed / "0.npy", np.zeros((2, 2)))
    cv2.imwrite(str(mixed / "1.png"), np.zeros((2, 2), np.uint8))
    with pytest.raises(InputError, match="mixed"):
        read_depth(mixed)
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match=r"broken\.npy"):
        read_depth(tmp_path / "broken.npy")
