"""Floating window and the band that enters the warped eye at the frame edges."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framematrix.errors import ShapeError
from framematrix.export.edges import (
    band_from_masks,
    band_from_plan,
    edge_band,
    edge_crossed_disparity,
    finish_eyes,
    floating_window,
)
from framematrix.fill.fast import fill_matrix_fast
from framematrix.geometry.parallax import (
    disparity_px,
    plan_parallax,
    shot_stats_from_depth,
    warp_eyes,
)


def smooth_texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)[None]


def scene(width: int = 320, height: int = 120):
    """A frame whose right edge is near (crossed) and whose left edge is far (uncrossed)."""
    ramp = np.linspace(0.1, 1.1, width, dtype=np.float32)
    d = np.broadcast_to(ramp, (1, height, width)).copy()
    plan = plan_parallax(shot_stats_from_depth(d), width, 6.0, 0.5)
    return smooth_texture(height, width), d, plan


def test_edge_crossed_disparity_and_floating_window():
    frames, d, plan = scene()
    disp = disparity_px(d, plan)
    left_px, right_px = edge_crossed_disparity(disp, band_px=4, quantile=1.0)
    assert left_px[0] == 0.0  # the left edge is behind the screen: no violation there
    assert right_px[0] == pytest.approx(disp[0, :, -4:].max())
    eyes = np.repeat(frames, 2, axis=0)
    out_l, out_r = floating_window(eyes, eyes, left_edge_px=[0.0, 3.0], right_edge_px=[5.5, 0.0])
    # frame 0: right eye's right edge masked 5 columns, a sixth dimmed; the left eye untouched
    assert np.array_equal(out_l[0], eyes[0])
    assert (out_r[0, :, -5:] == 0).all()
    assert (out_r[0, :, -6] <= eyes[0, :, -6]).all() and (out_r[0, :, -6] != eyes[0, :, -6]).any()
    assert np.array_equal(out_r[0, :, :-6], eyes[0, :, :-6])
    # frame 1: left eye's left edge masked 3 columns
    assert (out_l[1, :, :3] == 0).all() and np.array_equal(out_l[1, :, 3:], eyes[1, :, 3:])
    assert np.array_equal(out_r[1], eyes[1])


def test_band_from_masks_measures_the_warp():
    frames, d, plan = scene()
    matrix = warp_eyes(frames, d, plan)
    masks = matrix.masks[1].numpy()
    band_l, band_r = band_from_masks(masks)
    disp = disparity_px(d, plan)
    # the right eye sees u' = u - disparity: its right edge lacks the crossed disparity there,
    # its left edge the uncrossed one
    assert abs(band_r - disp[0, 0, -1]) <= 1.5
    assert abs(band_l + disp[0, 0, 0]) <= 1.5
    assert band_from_masks(matrix.masks[0].numpy()) == (0, 0)
    # the plan's bound holds for the measured band
    bound_l, bound_r = band_from_plan(plan)
    assert band_l <= bound_l <= band_l + 2 and band_r <= bound_r <= band_r + 2


def test_edge_band_crop_removes_the_smear_and_keeps_size():
    frames, d, plan = scene()
    matrix = fill_matrix_fast(warp_eyes(frames, d, plan), views=[1])
    left = np.rint(matrix.images[0].numpy() * 255).astype(np.uint8)
    right = np.rint(matrix.images[1].numpy() * 255).astype(np.uint8)
    band = band_from_masks(matrix.masks[1].numpy())
    out_l, out_r = edge_band(left, right, band, mode="crop")
    assert out_l.shape == left.shape and out_r.dtype == np.uint8
    # the right eye's last column was a smear (constant along the row); after the crop it
    # shows the texture the source had there: its variation along x is back
    width = left.shape[2]
    edge_before = right[0, :, width - band[1] :].astype(float)
    edge_after = out_r[0, :, width - band[1] :].astype(float)
    assert (
        np.abs(np.diff(edge_after, axis=1)).mean() > 2 * np.abs(np.diff(edge_before, axis=1)).mean()
    )
    # both eyes were cropped alike (keeping the aspect) and scaled back
    height = left.shape[1]
    kept_w = width - sum(band)
    kept_h = round(height * kept_w / width)
    y0 = (height - kept_h) // 2
    for eye, out in ((left, out_l), (right, out_r)):
        crop = np.ascontiguousarray(eye[0, y0 : y0 + kept_h, band[0] : width - band[1]])
        expect = cv2.resize(crop, (width, height), interpolation=cv2.INTER_CUBIC)
        np.testing.assert_array_equal(out[0], expect)


def test_edge_band_mirror_only_touches_the_band_of_the_warped_eye():
    frames, _, _ = scene()
    eyes = np.repeat(frames, 1, axis=0)
    out_l, out_r = edge_band(eyes, eyes.copy(), (6, 10), mode="mirror")
    assert np.array_equal(out_l, eyes)
    assert np.array_equal(out_r[:, :, 6:-10], eyes[:, :, 6:-10])
    # next to the seam the band continues the content (reflection): small step at the seam
    seam_step = np.abs(out_r[0, :, -11].astype(float) - out_r[0, :, -10].astype(float)).mean()
    assert seam_step < 6.0
    assert not np.array_equal(out_r[:, :, -10:], eyes[:, :, -10:])
    with pytest.raises(ShapeError):
        edge_band(eyes, eyes, 200, mode="crop")
    with pytest.raises(ShapeError):
        edge_band(eyes, eyes, 4, mode="stretch")


def test_finish_eyes_crops_then_floats_the_window():
    frames, d, plan = scene()
    matrix = fill_matrix_fast(warp_eyes(frames, d, plan), views=[1])
    left, right = (np.rint(e.numpy() * 255).astype(np.uint8) for e in matrix.eyes())
    disp = disparity_px(d, plan)
    out_l, out_r = finish_eyes(left, right, plan, floating=True, disparity=disp)
    band = band_from_plan(plan)
    crop_l, crop_r = edge_band(left, right, band, "crop")
    _, win_r = edge_crossed_disparity(disp, band_px=max(1, round(0.01 * left.shape[2])))
    masked = int(np.floor(win_r[0] * left.shape[2] / (left.shape[2] - sum(band))))
    assert masked > 0
    assert np.array_equal(out_l, crop_l)  # nothing crossed at the left edge
    assert (out_r[0, :, -masked:] == 0).all()
    assert np.array_equal(out_r[0, :, : -masked - 1], crop_r[0, :, : -masked - 1])
    with pytest.raises(ShapeError):
        finish_eyes(left, right, plan, floating=True)
