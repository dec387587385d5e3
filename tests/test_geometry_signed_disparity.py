"""Signed pixel disparity (``depth_kind="disparity-px"``): the screen plane is 0, crossed
parallax (in front of the screen) positive, content behind the screen negative."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from framematrix.geometry import build_frame_matrix, depth_to_z

HEIGHT, WIDTH = 12, 64
NEAR_COLS = slice(20, 36)  # the near plane's columns in the source (16 px wide)


def _two_planes(near: float, far: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 128, (1, HEIGHT, WIDTH, 3), dtype=np.uint8)  # far: dark texture
    frames[0, :, NEAR_COLS] = (250, 10, 10)  # near: flat red
    disparity = np.full((1, HEIGHT, WIDTH), far, np.float32)
    disparity[0, :, NEAR_COLS] = near
    return frames, disparity


def test_disparity_to_z_is_strictly_decreasing_through_zero():
    disparity = torch.linspace(-40, 40, 801).view(1, 1, -1)
    z = depth_to_z(disparity, "disparity-px")[0, 0]
    assert bool((z > 0).all()) and bool(torch.isfinite(z).all())
    assert bool((z[1:] < z[:-1]).all())  # larger disparity = nearer, also below zero
    positive = disparity[0, 0] >= 1
    torch.testing.assert_close(z[positive], 1.0 / disparity[0, 0][positive])  # 1/d as before


@pytest.mark.filterwarnings("ignore:depth has 1 NaN")  # the NaN is on purpose
def test_disparity_to_z_is_the_two_sided_formula_bit_for_bit():
    # 1 / d from the knee k up, e^((k - d) / k) / k below (float32 steps), NaN kept
    from framematrix.geometry.normalize import DISPARITY_KNEE as k

    d = torch.cat([torch.randn(50_000) * 30, torch.tensor([k, k - 1e-6, -1e3, 0.0, float("nan")])])
    z = depth_to_z(d.view(1, 1, -1), "disparity-px").view(-1)
    above = torch.ones(1) / d
    below = torch.exp((torch.full((1,), k) - d) / k) / k
    expected = torch.where(d >= k, above, below)
    assert torch.equal(z.view(torch.int32), expected.view(torch.int32))


@pytest.mark.parametrize("warp", ["nearest", "subpixel"])
def test_near_plane_in_front_occludes_a_far_plane_behind_the_screen(warp: str):
    frames, disparity = _two_planes(near=5.0, far=-5.0)
    matrix = build_frame_matrix(
        frames, disparity, mode="left2right", views=2, depth_kind="disparity-px", warp=warp
    )
    right = matrix.images[1, 0]
    mask = matrix.masks[1, 0]
    red = torch.tensor([250, 10, 10]) / 255.0
    # the near plane (u -> u - 5) lands on columns 15..30, over the far plane that moves the
    # other way (u -> u + 5; its source columns 10..25 would land there): the near one wins
    assert bool(mask[:, 15:31].all())
    torch.testing.assert_close(right[:, 15:31], red.expand(HEIGHT, 16, 3), atol=1e-6, rtol=0)
    # far texture outside, moved right by 5 px
    src = torch.from_numpy(frames[0]).float() / 255.0
    torch.testing.assert_close(right[:, 6:14], src[:, 1:9], atol=1e-6, rtol=0)
    torch.testing.assert_close(right[:, 42:WIDTH], src[:, 37 : WIDTH - 5], atol=1e-6, rtol=0)
    # the far plane uncovered right of the near one: 10 px (5 - (-5)) of holes, 31..40, and
    # its left border entering the view, 0..4; the crack clean-up grows each side by one
    # pixel (a hole next to a covered column has Gaussian weight 0.21 > 0.2, METHOD 3.4)
    assert not bool(mask[:, 32:40].any())
    assert bool(mask[:, 40:].all())
    assert not bool(mask[:, :4].any())
    assert bool(mask[:, 4:32].all())
    # target depth orders them: the near plane is nearer than the far one
    depth = matrix.depth[1, 0]
    assert float(depth[:, 15:31].max()) < float(depth[:, 42:].min())
    assert bool(torch.isinf(depth[~mask]).all())


def test_signed_disparity_moves_the_other_eyes_of_a_rig_by_their_share():
    frames, disparity = _two_planes(near=6.0, far=-6.0)
    matrix = build_frame_matrix(
        frames, disparity, mode="middle2leftright", views=3, depth_kind="disparity-px"
    )
    # middle source; the end eyes are 6 px apart in each direction from each other: +-3 px each
    red = torch.tensor([250, 10, 10]) / 255.0
    left, right = matrix.images[0, 0], matrix.images[2, 0]
    torch.testing.assert_close(left[:, 23:39], red.expand(HEIGHT, 16, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(right[:, 17:33], red.expand(HEIGHT, 16, 3), atol=1e-6, rtol=0)
    src = torch.from_numpy(frames[0]).float() / 255.0
    torch.testing.assert_close(left[:, 44:50], src[:, 47:53], atol=1e-6, rtol=0)  # far: -3 px
    torch.testing.assert_close(right[:, 44:50], src[:, 41:47], atol=1e-6, rtol=0)  # far: +3 px


@pytest.mark.parametrize("warp", ["nearest", "subpixel"])
def test_both_planes_behind_the_screen_keep_their_order(warp: str):
    """-2 px over -8 px: z = 1 / max(d, eps) made both equally far (an arbitrary winner)."""
    frames, disparity = _two_planes(near=-2.0, far=-8.0)
    matrix = build_frame_matrix(
        frames, disparity, mode="left2right", views=2, depth_kind="disparity-px", warp=warp
    )
    right = matrix.images[1, 0]
    red = torch.tensor([250, 10, 10]) / 255.0
    # near: 20..35 -> 22..37; the far texture of columns 12..19 also lands on 20..27 and loses
    torch.testing.assert_close(right[:, 22:38], red.expand(HEIGHT, 16, 3), atol=1e-6, rtol=0)
    assert bool(matrix.masks[1, 0, :, 22:38].all())
    # the far plane reappears 6 px (8 - 2) after the near one: 44 = 36 + 8
    assert not bool(matrix.masks[1, 0, :, 39:43].any())
    src = torch.from_numpy(frames[0]).float() / 255.0
    torch.testing.assert_close(right[:, 45:WIDTH], src[:, 37 : WIDTH - 8], atol=1e-6, rtol=0)
