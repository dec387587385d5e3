"""Depth budget and convergence: parallax in percent of the width, screen plane, signs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import framematrix
from framematrix.errors import ShapeError
from framematrix.geometry.parallax import (
    ParallaxPlan,
    ShotStats,
    disparity_px,
    paper_plan,
    parallax_pct,
    plan_parallax,
    shot_stats_from_depth,
    warp_eyes,
)

FAR, NEAR = 0.1, 1.1  # normalised inverse depth of the background and of the foreground plane


def two_planes(width: int, frames: int = 1) -> np.ndarray:
    """[frames, W / 8, W] inverse depth: a far background and a near rectangle (same layout at
    any resolution: the rectangle covers x in [0.35, 0.65) W, y in [0.3, 0.7) H)."""
    height = width // 8
    d = np.full((frames, height, width), FAR, np.float32)
    d[:, int(0.3 * height) : int(0.7 * height), int(0.35 * width) : int(0.65 * width)] = NEAR
    return d


def texture(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)


def measured_shift(left: np.ndarray, right: np.ndarray, rows: slice, cols: slice) -> int:
    """The integer k with right[rows, x - k] == left[rows, x] best over the columns ``cols``."""
    best, best_err = 0, np.inf
    for k in range(-130, 131):
        lo, hi = cols.start - k, cols.stop - k
        if lo < 0 or hi > right.shape[1]:
            continue
        err = np.abs(right[rows, lo:hi].astype(float) - left[rows, cols].astype(float)).mean()
        if err < best_err:
            best, best_err = k, err
    return best


def test_stats_and_plan_formulas():
    d = two_planes(320)
    stats = shot_stats_from_depth(d, start=5)
    assert (stats.start, stats.end) == (5, 6)
    assert stats.d_p1 == pytest.approx(FAR) and stats.d_p99 == pytest.approx(NEAR)
    plan = plan_parallax(stats, 320, depth_budget_pct=3.0, convergence=0.25)
    assert plan.scale_px * (NEAR - FAR) == pytest.approx(0.03 * 320)
    assert plan.d_c == pytest.approx(NEAR - 0.25 * (NEAR - FAR))
    pct = parallax_pct(d, plan)
    # the near plane is C * P in front, the far one (1 - C) * P behind
    assert pct.max() == pytest.approx(0.75, abs=1e-5)
    assert pct.min() == pytest.approx(-2.25, abs=1e-5)


def test_plane_at_convergence_depth_has_zero_parallax():
    d = two_planes(640)
    stats = shot_stats_from_depth(d)
    plan = plan_parallax(stats, 640, depth_budget_pct=4.0, convergence=0.4)
    screen = np.full((1, 8, 8), plan.d_c, np.float32)
    assert np.abs(disparity_px(screen, plan)).max() < 1e-4
    # through the warp: a textured plane at the screen depth does not move between the eyes
    frames = texture((1, 20, 160))
    d_screen = np.full((1, 20, 160), plan.d_c, np.float32)
    eyes = warp_eyes(frames, d_screen, plan.at_width(160))
    left, right = eyes.eyes()
    assert bool(eyes.masks[1].all())
    np.testing.assert_allclose(right.numpy(), left.numpy(), atol=1e-6)


@pytest.mark.parametrize("convergence", [0.0, 0.3, 1.0])
def test_same_budget_same_percent_at_1280_and_3840(convergence):
    ranges = []
    for width in (1280, 3840):
        d = two_planes(width)
        plan = plan_parallax(shot_stats_from_depth(d), width, 3.0, convergence)
        p1, p99 = np.percentile(parallax_pct(d, plan), [1, 99])
        ranges.append((p1, p99))
        assert p99 - p1 == pytest.approx(3.0, abs=0.1)
    assert ranges[0][0] == pytest.approx(ranges[1][0], abs=0.1)
    assert ranges[0][1] == pytest.approx(ranges[1][1], abs=0.1)


def test_convergence_zero_gives_no_crossed_parallax():
    d = two_planes(1280, frames=2)
    d[1] = np.linspace(FAR, NEAR, d.shape[2], dtype=np.float32)[None, :]  # a ramp too
    plan = plan_parallax(shot_stats_from_depth(d), 1280, 5.0, 0.0)
    disp = disparity_px(d, plan)
    assert disp[0].max() <= 1e-5  # the nearest content is on the screen
    assert disp[0].min() == pytest.approx(-0.05 * 1280, rel=1e-4)
    # beyond the 99th percentile a few pixels may come forward, never more than 1 %
    assert (disp > 1e-5).mean() <= 0.01
    plan1 = plan_parallax(shot_stats_from_depth(d), 1280, 5.0, 1.0)
    assert disparity_px(d[0:1], plan1).min() >= -1e-5  # convergence 1: nothing behind


def test_paper_plan_is_the_parallel_rig():
    d = np.linspace(0.1, 1.1, 50, dtype=np.float32).reshape(1, 5, 10)
    z = 1.0 / (d.astype(np.float64) + 1e-6)
    plan = paper_plan(576, focal=800.0, baseline=0.08)
    np.testing.assert_allclose(disparity_px(d, plan), 800.0 * 0.08 / z, rtol=1e-6)


@pytest.mark.parametrize("width", [1280, 3840])
def test_real_warp_shift_in_percent_of_width(width):
    """build_frame_matrix with the plan's disparity: the textured near plane moves left in the
    right eye by the planned share of the width; the far plane (convergence 1) stays."""
    height = 72 if width == 1280 else 216
    d = np.full((1, height, width), FAR, np.float32)
    cols = slice(int(0.35 * width), int(0.65 * width))
    rows = slice(height // 4, 3 * height // 4)
    d[:, rows, cols] = NEAR
    plan = plan_parallax(shot_stats_from_depth(d), width, 3.0, 1.0)
    disparity = disparity_px(d, plan)
    assert disparity.min() >= 0  # non-negative: valid for any build of disparity-px
    frames = texture((1, height, width), seed=width)
    matrix = framematrix.build_frame_matrix(
        frames, disparity, depth_kind="disparity-px", views=2, mode="left2right"
    )
    left, right = (np.rint(e[0].numpy() * 255) for e in matrix.eyes())
    inner = slice(cols.start + 10, cols.stop - 10)
    shift = measured_shift(left, right, rows, inner)
    assert 100.0 * shift / width == pytest.approx(3.0, abs=0.1)
    assert shift > 0  # crossed: the near plane moves left in the right eye (u' = u - d)
    background = slice(10, cols.start - 60)
    assert measured_shift(left, right, rows, background) == 0


def test_signed_disparity_through_warp_eyes():
    """Convergence 0.5: the near plane moves left, the far plane right in the right eye."""
    width, height = 640, 80
    d = two_planes(width)
    plan = plan_parallax(shot_stats_from_depth(d), width, 4.0, 0.5)
    frames = texture((1, height, width), seed=3)
    left, right = (np.rint(e[0].numpy() * 255) for e in warp_eyes(frames, d, plan).eyes())
    near_rows = slice(int(0.3 * height) + 2, int(0.7 * height) - 2)
    near = measured_shift(left, right, near_rows, slice(240, 400))
    far = measured_shift(left, right, slice(2, int(0.3 * height) - 2), slice(100, 540))
    assert near == round(0.02 * width)
    assert far == -round(0.02 * width)


def test_bad_settings():
    stats = ShotStats(0, 10, 0.1, 0.1, 0.5, 1.1, 1.1)
    with pytest.raises(ShapeError):
        plan_parallax(stats, 640, -1.0, 0.5)
    with pytest.raises(ShapeError):
        plan_parallax(stats, 640, 3.0, 1.5)
    with pytest.raises(ShapeError):
        ShotStats(0, 10, 0.1, 0.5, 0.4, 1.1, 1.1)
    flat = ShotStats(0, 1, 0.5, 0.5, 0.5, 0.5, 0.5)
    assert plan_parallax(flat, 640, 3.0, 0.5).scale_px == 0.0
    assert isinstance(plan_parallax(stats, 640), ParallaxPlan)


def test_signed_disparity_through_build_frame_matrix():
    """The plan's signed disparity (screen halfway) through the public build: the near plane
    moves left by +2 % of the width in the right eye, the far plane right by 2 %."""
    width = 640
    d = two_planes(width)
    height = d.shape[1]
    plan = plan_parallax(shot_stats_from_depth(d), width, 4.0, 0.5)
    disparity = disparity_px(d, plan)
    assert disparity.min() < 0 < disparity.max()
    frames = texture((1, height, width), seed=4)
    matrix = framematrix.build_frame_matrix(
        frames, disparity, depth_kind="disparity-px", views=2, mode="left2right"
    )
    left, right = (np.rint(e[0].numpy() * 255) for e in matrix.eyes())
    near_rows = slice(int(0.3 * height) + 2, int(0.7 * height) - 2)
    far_rows = slice(2, int(0.3 * height) - 2)
    assert measured_shift(left, right, near_rows, slice(240, 400)) == round(0.02 * width)
    assert measured_shift(left, right, far_rows, slice(100, 540)) == -round(0.02 * width)


def test_plan_on_real_stereo_reproduces_the_right_view_shifted_by_the_screen():
    """FlyingThings3D ground truth: with its own disparity as inverse depth, a budget equal to
    its p1..p99 range and convergence 0.5, our right eye is the real right view translated by
    the screen plane's disparity: the sign, the scale and the horizontal image translation all
    agree with a real camera pair (and signed disparities are ordered right)."""
    from conftest import shared_path
    from framematrix.io.depth_files import read_pfm

    folder = shared_path("data", "stereo", "flyingthings_A-0032-0006")
    name = "A-0032-0006"
    gt = read_pfm(folder / "disparity" / "left" / f"{name}.pfm")
    left = cv2.cvtColor(
        cv2.imread(str(folder / "RGB_cleanpass" / "left" / f"{name}.png")), cv2.COLOR_BGR2RGB
    )
    right = cv2.cvtColor(
        cv2.imread(str(folder / "RGB_cleanpass" / "right" / f"{name}.png")), cv2.COLOR_BGR2RGB
    )
    height, width = gt.shape
    g_p1, g_p99 = np.percentile(gt, [1, 99])
    d = ((gt - gt.min()) / (gt.max() - gt.min()) + 0.1).astype(np.float32)[None]
    budget = 100.0 * (g_p99 - g_p1) / width
    plan = plan_parallax(shot_stats_from_depth(d), width, budget, 0.5)
    g_c = 0.5 * (g_p1 + g_p99)  # the screen halfway between p1 and p99
    np.testing.assert_allclose(disparity_px(d, plan)[0], gt - g_c, atol=2e-3 * (g_p99 - g_p1))
    ours = warp_eyes(left[None], d, plan)
    ours_right = np.rint(ours.images[1, 0].numpy() * 255)
    known = ours.masks[1, 0].numpy()
    # a left pixel x lands at x - (g - g_c) in ours and at x - g in the real right view
    shift = int(round(g_c))
    grey = cv2.cvtColor(ours_right.astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(float)
    real = cv2.cvtColor(right, cv2.COLOR_RGB2GRAY).astype(float)
    # ours[:, x] == real[:, x - shift]: mean error over known, textured pixels, without the
    # worst 10 % (occlusions)
    textured = np.abs(cv2.Sobel(real, cv2.CV_64F, 1, 0, ksize=3)) > 40

    def error(k: int) -> float:
        sel = known[:, k:] & textured[:, : width - k]
        diff = np.abs(grey[:, k:] - real[:, : width - k])[sel]
        return float(np.sort(diff)[: int(0.9 * diff.size)].mean())

    assert shift >= 3
    best = error(shift)

    assert best < 8.0  # textured pixels: the nearest-pixel warp costs a few grey levels
    # the translation is the screen's: a few pixels off it is clearly worse
    assert error(shift + 3) > 2 * best and error(shift - 3) > 2 * best
