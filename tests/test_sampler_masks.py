"""Masks of the frame-matrix fill: analytic cases and OpenCV's behaviour (METHOD.md section 4)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from framematrix.errors import ShapeError
from framematrix.fill.diffusion.masks import (
    box_filter,
    erode_mask,
    frame_matrix_masks,
    gaussian_blur,
    latent_mask,
    soft_mask,
)


def test_erode_grows_a_hole_by_one_pixel_and_keeps_the_border():
    mask = torch.ones(20, 20, dtype=torch.bool)
    mask[10, 10] = False
    mask[0, 0] = False
    eroded = erode_mask(mask, 3)
    expected = torch.ones(20, 20, dtype=torch.bool)
    expected[9:12, 9:12] = False
    expected[0:2, 0:2] = False  # outside the image counts as known: no wrap, no border loss
    assert torch.equal(eroded, expected)
    assert erode_mask(torch.ones(5, 7, dtype=torch.bool), 3).all()
    assert torch.equal(erode_mask(mask, 1), mask)


def test_box_filter_window_is_anchored_like_opencv():
    image = torch.zeros(24, 24, dtype=torch.float64)
    image[10, 10] = 1.0
    out = box_filter(image, 8)
    # Window of (y, x) spans y-4 .. y+3: the impulse reaches rows and columns 7..14.
    support = (out > 0).nonzero()
    assert support[:, 0].min() == 7 and support[:, 0].max() == 14
    assert support[:, 1].min() == 7 and support[:, 1].max() == 14
    assert torch.allclose(out[7:15, 7:15], torch.full((8, 8), 1 / 64, dtype=torch.float64))


@pytest.mark.parametrize(("threshold", "expected_row"), [(0.7, [1, 0, 1, 1]), (0.5, [1, 1, 1, 1])])
def test_latent_mask_threshold_drops_latents_near_holes(threshold, expected_row):
    # One hole column at x = 14 of a 16x32 image; eroded, the hole is x = 13..15. The 8-wide
    # box around x = 12 then holds 3 hole columns (known fraction 5/8 = 0.625): below 0.7, above
    # 0.5. Latent column 1 samples pixels 11 and 12 (both known), so only the threshold decides.
    mask = torch.ones(16, 32, dtype=torch.bool)
    mask[:, 14] = False
    pixel = erode_mask(mask, 3)
    assert torch.equal((~pixel[0]).nonzero().flatten(), torch.tensor([13, 14, 15]))
    latent = latent_mask(pixel, downscale=8, box=8, threshold=threshold)
    assert latent.shape == (2, 4)
    assert torch.equal(latent, torch.tensor([expected_row, expected_row], dtype=torch.float32))


def test_latent_mask_is_zero_where_a_sampled_pixel_is_unknown():
    # Hole at x = 20 (eroded 19..21): latent column 2 samples pixels 19 and 20.
    mask = torch.ones(16, 32, dtype=torch.bool)
    mask[:, 20] = False
    latent = latent_mask(erode_mask(mask, 3), downscale=8, box=8, threshold=0.0)
    assert torch.equal(latent[0], torch.tensor([1.0, 1.0, 0.0, 1.0]))


def test_soft_mask_is_a_binomial_blur_only_inside_the_known_area():
    hard = torch.ones(7, 7)
    hard[3, 3] = 0
    soft = soft_mask(hard, 5)
    kernel = torch.tensor([1, 4, 6, 4, 1], dtype=torch.float64) / 16
    assert soft[3, 3] == 0
    assert soft[3, 4].item() == pytest.approx(1 - kernel[2].item() * kernel[3].item(), abs=1e-7)
    assert soft[1, 1].item() == pytest.approx(1 - kernel[0].item() * kernel[0].item(), abs=1e-7)
    assert soft[0, 0] == 1  # outside the 5x5 reach of the hole
    assert (soft <= hard).all() and (soft[hard == 0] == 0).all()
    assert torch.equal(soft_mask(hard, 1), hard)


def _reference_masks(mask: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The reference's OpenCV calls for one frame (float64, as it reads PNG / 255)."""
    eroded = cv2.erode(mask.astype(np.float64), np.ones((3, 3), np.float32))
    eroded[eroded < 1] = 0
    filtered = cv2.filter2D(eroded, -1, np.ones((8, 8), np.float32) / 64)
    filtered[filtered < threshold] = 0
    filtered[filtered >= threshold] = 1
    filtered = filtered * eroded
    latent = cv2.resize(filtered, (mask.shape[1] // 8, mask.shape[0] // 8))
    latent[latent < 1] = 0
    soft = cv2.GaussianBlur(latent, (5, 5), 0) * latent
    return eroded, soft


def test_masks_match_opencv_on_random_holes_vectorised_over_views_and_frames():
    rng = np.random.default_rng(3)
    masks = np.ones((2, 3, 48, 64), dtype=bool)
    for v in range(2):
        for f in range(3):
            masks[v, f] = rng.random((48, 64)) > 0.03
            y, x = rng.integers(0, 40), rng.integers(0, 50)
            masks[v, f, y : y + rng.integers(3, 12), x : x + rng.integers(3, 20)] = False
    result = frame_matrix_masks(torch.from_numpy(masks), downscale=8, erode=3, box=8)
    assert result.pixel.shape == (2, 3, 48, 64) and result.latent.shape == (2, 3, 6, 8)
    for v in range(2):
        for f in range(3):
            eroded, soft = _reference_masks(masks[v, f], 0.7)
            assert np.array_equal(result.pixel[v, f].numpy(), eroded)
            np.testing.assert_allclose(result.latent[v, f].numpy(), soft, atol=1e-6)
    assert 0 < result.latent_hard.mean() < 1  # the case is not trivial


def test_gaussian_blur_matches_opencv_on_tiny_planes():
    rng = np.random.default_rng(0)
    for shape in [(2, 3), (4, 4), (9, 5)]:
        plane = rng.random(shape)
        ours = gaussian_blur(torch.from_numpy(plane), 5).numpy()
        np.testing.assert_allclose(ours, cv2.GaussianBlur(plane, (5, 5), 0), atol=1e-12)


def test_latent_mask_rejects_sizes_off_the_latent_grid():
    with pytest.raises(ShapeError, match="multiple"):
        latent_mask(torch.ones(20, 32), downscale=8)
