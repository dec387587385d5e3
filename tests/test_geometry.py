"""Analytic tests of the frame-matrix geometry (METHOD.md section 3)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from framematrix.errors import InputError, ShapeError
from framematrix.geometry import (
    build_frame_matrix,
    camera_offsets,
    clean_layers,
    depth_to_z,
    forward_splat,
    gaussian_kernel_3x3,
    source_view_index,
    warp_to_offsets,
)

EDGE = math.exp(-0.5)  # un-normalised Gaussian weights (times 2 pi) of edge / corner neighbours
CORNER = math.exp(-1.0)


def _random_frames(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(frames, height, width, 3), dtype=np.uint8)


def _as_float(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).float() / 255.0


def _hole_columns(mask: torch.Tensor) -> list[int]:
    """Columns that are holes in every row (and asserts no partial columns)."""
    holes = ~mask
    partial = holes.any(0) & ~holes.all(0)
    assert not partial.any(), f"partially covered columns {torch.nonzero(partial).flatten()}"
    return torch.nonzero(holes.all(0)).flatten().tolist()


# ---------------------------------------------------------------- cameras


def test_camera_offsets_follow_the_reference_rigs():
    np.testing.assert_allclose(camera_offsets("left2right", 5, 0.08), np.linspace(0, 0.08, 5))
    np.testing.assert_allclose(camera_offsets("right2left", 5, 0.08), np.linspace(0, -0.08, 5))
    middle = camera_offsets("middle2leftright", 8, 0.08)
    expected = np.linspace(-0.04, 0.04, 8)
    expected[4] = 0.0  # the reference overwrites a non-zero entry for even V
    np.testing.assert_allclose(middle, expected)
    assert middle.dtype == torch.float32
    assert source_view_index(middle) == 4
    assert source_view_index(camera_offsets("middle2leftright", 5, 0.08)) == 2
    assert source_view_index(camera_offsets("right2left", 3, 0.08)) == 0
    with pytest.raises(ShapeError, match="mode"):
        camera_offsets("circle", 8, 0.08)
    with pytest.raises(ShapeError, match="views"):
        camera_offsets("left2right", 1, 0.08)


# ---------------------------------------------------------------- warp geometry


def test_metric_plane_shifts_by_focal_baseline_over_z():
    frames_u8 = _random_frames(2, 12, 40)
    src = _as_float(frames_u8)
    width = 40
    depth = np.full((2, 12, width), 4.0, np.float32)
    # b = 0, 0.02, 0.04 -> shift = 800 * b / 4 = 4 and 8 pixels
    fm = build_frame_matrix(
        frames_u8, depth, depth_kind="metric", views=3, baseline=0.04, focal=800.0
    )
    assert fm.source_view == 0
    assert torch.equal(fm.images[0], src) and fm.masks[0].all()
    for view, shift in ((1, 4), (2, 8)):
        image, mask = fm.images[view], fm.masks[view]
        # target column x shows source column x + shift, exactly
        assert torch.equal(image[:, :, : width - shift], src[:, :, shift:])
        # the crack fill grows the surface by one column into the border hole
        for f in range(2):
            assert _hole_columns(mask[f]) == list(range(width - shift + 1, width))
        # that column is the Gaussian mean of its 3 left neighbours (reflect-101 at the top and
        # bottom rows), i.e. of source column W - 1
        column = src[:, :, width - 1]
        above = torch.cat([column[:, 1:2], column[:, :-1]], dim=1)
        below = torch.cat([column[:, 1:], column[:, -2:-1]], dim=1)
        expected = (EDGE * column + CORNER * above + CORNER * below) / (EDGE + 2 * CORNER)
        torch.testing.assert_close(image[:, :, width - shift], expected, atol=1e-6, rtol=0)
        assert torch.all(image[:, :, width - shift + 1 :] == 0)
        torch.testing.assert_close(fm.depth[view][mask], torch.full_like(fm.depth[view][mask], 4))
        assert torch.isinf(fm.depth[view][~mask]).all()


def test_nearer_surface_wins_and_disocclusion_holes_are_exact():
    height, width, left, stripe = 10, 64, 30, 12
    frames_u8 = _random_frames(1, height, width, seed=1)
    src = _as_float(frames_u8)[0]
    depth = np.full((1, height, width), 8.0, np.float32)  # background: shift 800*0.04/8 = 4
    depth[:, :, left : left + stripe] = 2.0  # full-height foreground stripe: shift 16
    fm = build_frame_matrix(
        frames_u8, depth, depth_kind="metric", views=2, baseline=0.04, focal=800.0
    )
    image, mask, z = fm.images[1, 0], fm.masks[1, 0], fm.depth[1, 0]
    fg_target = slice(left - 16, left + stripe - 16)
    # background columns left - 12 .. left - 1 land on the same targets: the nearer one wins
    assert torch.equal(image[:, fg_target], src[:, left : left + stripe])
    assert torch.all(z[:, fg_target] == 2.0)
    # background elsewhere: shifted by 4 (not next to the foreground, which the fill grows)
    assert torch.equal(image[:, : left - 17], src[:, 4 : left - 13])
    assert torch.equal(image[:, left + stripe - 4 : width - 4], src[:, left + stripe :])
    # holes: background hidden behind the stripe would land on [left+stripe-16, left+stripe-4);
    # the right border loses 4 columns; the clean-up grows each side of a hole by one column
    disoccluded = range(left + stripe - 16 + 1, left + stripe - 4 - 1)
    border = range(width - 4 + 1, width)
    assert _hole_columns(mask) == [*disoccluded, *border]


def test_disparity_px_moves_the_end_eye_by_the_disparity():
    height, width = 8, 48
    frames_u8 = _random_frames(1, height, width, seed=2)
    src = _as_float(frames_u8)[0]
    disparity = np.full((1, height, width), 6.0, np.float32)
    disparity[:, :, 20:30] = 12.0
    # baseline is arbitrary for pixel disparity: view j moves by disparity * b_j / B = d * j / 3
    fm = build_frame_matrix(
        frames_u8, disparity, depth_kind="disparity-px", views=4, baseline=0.3, focal=1.0
    )
    right = fm.images[3, 0]
    assert torch.equal(right[:, 8:18], src[:, 20:30])  # foreground moved by 12
    assert torch.equal(right[:, :7], src[:, 6:13])  # background moved by 6
    assert torch.equal(right[:, 24:42], src[:, 30:48])
    assert _hole_columns(fm.masks[3, 0]) == [19, 20, 21, 22, 43, 44, 45, 46, 47]
    for view in (1, 2):  # intermediate views: foreground moved by 4 * view
        shift = 4 * view
        assert torch.equal(fm.images[view, 0][:, 20 - shift : 30 - shift], src[:, 20:30])
    # stored depth orders surfaces: 1 / disparity
    torch.testing.assert_close(fm.depth[0, 0], torch.from_numpy(1 / disparity[0]))


def test_right2left_shifts_the_other_way():
    frames_u8 = _random_frames(1, 6, 32, seed=3)
    src = _as_float(frames_u8)[0]
    depth = np.full((1, 6, 32), 4.0, np.float32)
    fm = build_frame_matrix(
        frames_u8, depth, mode="right2left", depth_kind="metric", views=3, baseline=0.04
    )
    assert fm.source_view == 0 and fm.right_view == 0 and fm.left_view == 2
    for view, shift in ((1, 4), (2, 8)):
        assert torch.equal(fm.images[view, 0][:, shift:], src[:, : 32 - shift])
        assert _hole_columns(fm.masks[view, 0]) == list(range(shift - 1))


@pytest.mark.parametrize("views", [8, 5])
def test_middle2leftright_source_is_the_middle_view_untouched(views):
    frames_u8 = _random_frames(2, 6, 40, seed=4)
    depth = np.full((2, 6, 40), 4.0, np.float32)
    fm = build_frame_matrix(
        frames_u8, depth, mode="middle2leftright", depth_kind="metric", views=views, baseline=0.08
    )
    middle = views // 2
    assert fm.source_view == middle and float(fm.offsets[middle]) == 0.0
    assert torch.equal(fm.images[middle], _as_float(frames_u8))
    assert fm.masks[middle].all()
    assert torch.all(fm.depth[middle] == 4.0)
    # ends: view 0 (b = -0.04) moves content right by 8 px, the last view left by 8 px
    src = _as_float(frames_u8)
    assert torch.equal(fm.images[0][:, :, 8:], src[:, :, :-8])
    assert torch.equal(fm.images[-1][:, :, :-8], src[:, :, 8:])


def test_warp_of_a_subset_of_views_and_chunking_match_the_full_matrix():
    rng = np.random.default_rng(5)
    frames_u8 = _random_frames(3, 20, 36, seed=5)
    depth = rng.uniform(0, 50, size=(3, 20, 36)).astype(np.float32)
    depth = F.avg_pool2d(torch.from_numpy(depth)[:, None], 5, 1, 2)[:, 0].numpy()
    fm = build_frame_matrix(frames_u8, depth, views=8, baseline=0.5, focal=100.0)
    z = depth_to_z(depth)
    offsets = camera_offsets("left2right", 8, 0.5, dtype=torch.float64)
    eyes = warp_to_offsets(_as_float(frames_u8), z, offsets[[0, 7]], 100.0, chunk_pixels=1)
    assert fm.hole_fraction()[7] > 0.01  # the warp really moved things
    assert torch.equal(eyes.images[1], fm.images[7])
    assert torch.equal(eyes.masks[1], fm.masks[7])
    assert torch.equal(eyes.depth[1], fm.depth[7])
    assert torch.equal(eyes.images[0], fm.images[0])


# ---------------------------------------------------------------- depth normalisation


def test_relative_depth_is_normalised_over_the_whole_clip():
    depth = np.zeros((2, 2, 3), np.float32)
    depth[0] = 10.0
    depth[1] = 30.0
    depth[1, 0, 0] = 50.0  # the clip max lies in frame 1 only
    z = depth_to_z(depth)
    d = (depth - 10.0) / 40.0 + 0.1
    torch.testing.assert_close(z, torch.from_numpy(1.0 / (d + 1e-6)))
    z_near = depth_to_z(depth, near=2.0, far=None)
    torch.testing.assert_close(z_near, torch.from_numpy(1.0 / ((depth - 10.0) / 80.0 + 1e-6)))


def test_zero_range_depth_raises():
    with pytest.raises(InputError, match="zero range"):
        depth_to_z(np.full((2, 4, 4), 3.0, np.float32))
    with pytest.raises(InputError, match="zero range"):
        build_frame_matrix(_random_frames(1, 4, 4), np.full((1, 4, 4), 3.0, np.float32))


def test_nan_depth_is_unknown_one_warning_and_not_warped():
    depth = np.linspace(1.0, 5.0, 2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    depth[0, 1, 2] = np.nan
    depth[1, 0, 0] = np.inf
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        z = depth_to_z(depth)
    assert len([w for w in caught if "NaN/inf" in str(w.message)]) == 1
    assert torch.isnan(z[0, 1, 2]) and torch.isnan(z[1, 0, 0])
    finite = depth[np.isfinite(depth)]
    d = (depth - finite.min()) / (finite.max() - finite.min()) + 0.1
    np.testing.assert_allclose(z.numpy()[np.isfinite(depth)], (1 / (d + 1e-6))[np.isfinite(depth)])

    # a plane 6 px of disparity with an unknown stripe: its pixels leave a hole in the right eye
    disparity = np.full((1, 8, 40), 6.0, np.float32)
    disparity[:, :, 20:24] = np.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fm = build_frame_matrix(
            _random_frames(1, 8, 40), disparity, depth_kind="disparity-px", views=2
        )
    assert len([w for w in caught if "NaN/inf" in str(w.message)]) == 1
    # would land on 14..17; the clean-up grows both sides by one column
    assert _hole_columns(fm.masks[1, 0]) == [15, 16, 35, 36, 37, 38, 39]
    assert fm.masks[0].all() and torch.isnan(fm.depth[0, 0, :, 20:24]).all()


# ---------------------------------------------------------------- clean-up


def test_speckle_removal_drops_small_near_blobs():
    colour = torch.full((1, 11, 11, 3), 0.25)
    z = torch.full((1, 11, 11), 5.0)
    covered = torch.ones(1, 11, 11, dtype=torch.bool)
    # a 1x3 near segment: its middle pixel would pass the crack weight (1 + 2 * 0.61) / 2 pi
    # but fails the 3x3 mean (3/9 <= 0.5), so the whole segment is removed
    colour[0, 5, 4:7] = 1.0
    z[0, 5, 4:7] = 1.0
    out_colour, out_z, out_covered = clean_layers(colour, z, covered)
    assert out_covered.all()
    torch.testing.assert_close(out_colour[0, 5, 4:7], torch.full((3, 3), 0.25))
    torch.testing.assert_close(out_z[0, 5, 4:7], torch.full((3,), 5.0))
    # an isolated covered pixel among holes disappears
    alone = torch.zeros(1, 11, 11, dtype=torch.bool)
    alone[0, 5, 5] = True
    assert not clean_layers(colour, z, alone)[2].any()


def test_crack_fill_uses_the_unnormalised_gaussian():
    rng = np.random.default_rng(6)
    colour = torch.from_numpy(rng.uniform(0, 1, (1, 9, 9, 3)).astype(np.float32))
    z = torch.full((1, 9, 9), 3.0)
    covered = torch.ones(1, 9, 9, dtype=torch.bool)
    covered[0, 4, 4] = False  # a one-pixel crack inside a surface
    out, out_z, out_covered = clean_layers(colour, z, covered)
    assert out_covered.all()
    kernel = gaussian_kernel_3x3().double()
    assert abs(float(kernel[1, 1]) - 1 / (2 * math.pi)) < 1e-7
    assert abs(float(kernel.sum()) - 0.7795) < 1e-4
    weights = kernel.clone()
    weights[1, 1] = 0
    expected = (colour[0, 3:6, 3:6].double() * weights[..., None]).sum((0, 1)) / weights.sum()
    torch.testing.assert_close(out[0, 4, 4].double(), expected, atol=1e-6, rtol=0)
    assert torch.equal(out[0][covered[0]], colour[0][covered[0]])  # known pixels untouched
    assert float(out_z[0, 4, 4]) == pytest.approx(3.0)

    # a plus-shaped hole: its centre sees only the 4 corner neighbours, 4 * 0.37 / 2 pi > 0.2 ->
    # filled; with 3 corners 0.176 <= 0.2 -> still a hole (a normalised kernel would fill it)
    plus = torch.ones(1, 9, 9, dtype=torch.bool)
    plus[0, 3:6, 4] = False
    plus[0, 4, 3:6] = False
    assert clean_layers(colour, z, plus)[2].all()
    three = plus.clone()
    three[0, 3, 3] = False
    covered_three = clean_layers(colour, z, three)[2]
    assert not covered_three[0, 4, 4]
    assert int((~covered_three).sum()) == 1


def test_layer_splits_use_numpy_median_and_half_open_layers():
    from framematrix.geometry.cleanup import layer_ids

    inf = float("inf")
    # median of the 6 covered depths = (10 + 11) / 2 = 10.5 (numpy's, not the lower 10), so the
    # splits are 0, 5.25, 10.5, 20.75, 31 and 5.1 lies in layer 0 (it would not with 10)
    z = torch.tensor([[[0.0, 5.1, 10.0, 11.0, 30.0, 31.0, inf]]])
    assert layer_ids(z, planes=4)[0, 0].tolist() == [0, 0, 1, 2, 3, 3, 4]
    # a depth equal to a split belongs to the layer below it: (split_i, split_i+1]
    z = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 5.0]]])  # splits 1, 3, 5
    assert layer_ids(z, planes=2)[0, 0].tolist() == [0, 0, 0, 1, 1]


def _reference_clean(colour, target_z, covered, planes):
    """METHOD.md 3.4 written literally: P full float64 layers, OpenCV-style filters."""
    gauss = gaussian_kernel_3x3().double()[None, None]
    box = torch.full((1, 1, 3, 3), 1 / 9, dtype=torch.float64)

    def filt(x, kernel):  # x [H, W, C] -> same, reflect-101 borders
        x = x.permute(2, 0, 1)[:, None]
        y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel)
        return y[:, 0].permute(1, 2, 0)

    out_colour = torch.zeros_like(colour, dtype=torch.float64)
    out_covered = torch.zeros_like(covered)
    for n in range(colour.shape[0]):
        zn = target_z[n].double()
        known = zn[covered[n]].numpy()
        low, median, high = known.min(), np.median(known), known.max()
        splits = np.concatenate(
            [
                np.linspace(low, median, planes // 2 + 1),
                np.linspace(median, high, planes - planes // 2 + 1)[1:],
            ]
        )
        for i in reversed(range(planes)):
            layer = covered[n] & (zn <= splits[i + 1]) & ((zn > splits[i]) | (i == 0))
            mean = filt(layer.double()[..., None], box)[..., 0]
            kept = (layer & (mean > 0.5)).double()[..., None]
            weight = filt(kept, gauss)
            fill = filt(colour[n].double() * kept, gauss) / weight.clamp_min(1e-12)
            layer_colour = torch.where(kept > 0, colour[n].double(), fill)
            new = weight[..., 0] > 0.2
            out_colour[n][new] = layer_colour[new]
            out_covered[n] |= new
    return out_colour, out_covered


@pytest.mark.parametrize("planes", [1, 2, 3, 4, 6])
def test_clean_layers_equals_the_literal_per_layer_filtering(planes):
    rng = np.random.default_rng(planes)
    num, height, width = 3, 23, 37
    # piecewise depth (steps + slope) with random holes, cracks and speckles
    base = rng.choice([1.0, 2.5, 4.0, 7.0], size=(num, 1, 6)).repeat(7, axis=2)[:, :, :width]
    z = base + rng.uniform(0, 0.5, (num, height, width)) + np.linspace(0, 1, height)[:, None]
    covered = rng.uniform(size=(num, height, width)) > 0.12
    covered[:, 5:9, 10:16] = False
    covered[0] = covered[0] & (rng.uniform(size=(height, width)) > 0.3)
    colour = torch.from_numpy(rng.uniform(0, 1, (num, height, width, 3)).astype(np.float32))
    z = torch.from_numpy(z.astype(np.float32))
    covered = torch.from_numpy(covered)
    expected_colour, expected_covered = _reference_clean(colour, z, covered, planes)
    out_colour, out_z, out_covered = clean_layers(colour, z, covered, planes=planes)
    assert torch.equal(out_covered, expected_covered)
    assert 0 < int((out_covered != covered).sum())  # the clean-up changed something
    torch.testing.assert_close(out_colour.double(), expected_colour, atol=1e-6, rtol=0)
    assert torch.isinf(out_z[~out_covered]).all() and torch.isfinite(out_z[out_covered]).all()


# ---------------------------------------------------------------- splat


def test_forward_splat_equals_a_loop_z_buffer():
    rng = np.random.default_rng(7)
    num, height, width = 2, 7, 30
    images = torch.from_numpy(rng.uniform(0, 1, (num, height, width, 3)).astype(np.float32))
    z = torch.from_numpy(rng.uniform(1, 10, (num, height, width)).astype(np.float32))
    shift = torch.from_numpy(rng.uniform(-6, 9, (num, height, width)).astype(np.float32))
    z[1, 2, 5] = float("nan")  # unknown: not splatted
    colour, target_z, covered = forward_splat(images, z, shift)

    expected_colour = np.zeros((num, height, width, 3), np.float32)
    expected_z = np.full((num, height, width), np.inf, np.float32)
    for n in range(num):
        for v in range(height):
            for u in range(width):
                depth = float(z[n, v, u])
                target = np.round(np.float32(u) - shift[n, v, u].numpy())
                if not np.isfinite(depth) or not 0 <= target < width:
                    continue
                t = int(target)
                if depth < expected_z[n, v, t]:  # strict: the first of equal depths stays
                    expected_z[n, v, t] = depth
                    expected_colour[n, v, t] = images[n, v, u].numpy()
    assert torch.equal(covered, torch.from_numpy(np.isfinite(expected_z)))
    assert torch.equal(target_z, torch.from_numpy(expected_z))
    assert torch.equal(colour, torch.from_numpy(expected_colour))


def test_forward_splat_rounds_half_to_even():
    images = torch.arange(8, dtype=torch.float32).view(1, 1, 8, 1)
    z = torch.ones(1, 1, 8)
    shift = torch.full((1, 1, 8), 100.0)  # out of frame
    shift[0, 0, 2] = 0.5  # 1.5 -> 2
    shift[0, 0, 5] = 0.5  # 4.5 -> 4
    shift[0, 0, 6] = -0.5  # 6.5 -> 6
    colour, _, covered = forward_splat(images, z, shift)
    assert torch.nonzero(covered[0, 0]).flatten().tolist() == [2, 4, 6]
    assert colour[0, 0, [2, 4, 6], 0].tolist() == [2.0, 5.0, 6.0]


def test_forward_splat_resolves_many_colliding_sources():
    # 12 sources of one row all land on column 3: the nearest wins whatever the write order
    images = torch.arange(12, dtype=torch.float32).view(1, 1, 12, 1).repeat(1, 1, 1, 3)
    z = torch.tensor([[[9.0, 8.0, 7.0, 1.5, 6.0, 5.0, 4.0, 3.0, 2.0, 2.5, 3.5, 4.5]]])
    shift = torch.arange(12, dtype=torch.float32).view(1, 1, 12) - 3
    colour, target_z, covered = forward_splat(images, z, shift)
    assert covered[0, 0].tolist() == [False, False, False, True] + [False] * 8
    assert float(target_z[0, 0, 3]) == 1.5 and float(colour[0, 0, 3, 0]) == 3.0


def test_fused_slot_rounding_equals_round_clamp_index():
    from framematrix.geometry.splat import SlotRounder

    rng = np.random.default_rng(8)
    views, frames, height, width = 3, 2, 5, 17
    motion = rng.uniform(0.5, 4.0, (frames, height, width))
    motion[0, 0, :6] = [1.0, 1.0, 2.0, 4.0, 0.25, 1.0]  # exact ties for the scales below
    motion[1, 2, 3] = np.nan
    scale = np.array([0.5, -2.5, 30.0])  # 30 / 0.5 sends pixels out of frame
    for divide in (True, False):
        shift = (
            scale[:, None, None, None] / motion if divide else scale[:, None, None, None] * motion
        )
        column = np.round(np.arange(width) - shift)  # numpy rounds half to even
        column = np.clip(np.nan_to_num(column, nan=-1.0), -1, width)
        rows = np.arange(views * frames * height).reshape(views, frames, height, 1)
        expected = rows * (width + 2) + column + 1
        rounder = SlotRounder((views, frames, height, width), torch.device("cpu"))
        slots = rounder.slots(
            torch.from_numpy(scale).view(-1, 1, 1, 1), torch.from_numpy(motion), divide
        )
        assert torch.equal(slots, torch.from_numpy(expected.astype(np.int64)).view(views, -1))


# ---------------------------------------------------------------- validation


def test_build_frame_matrix_rejects_bad_input():
    frames = _random_frames(2, 6, 8)
    depth = np.ones((2, 6, 8), np.float32)
    depth[0, 0, 0] = 2.0
    with pytest.raises(ShapeError, match="frames must be"):
        build_frame_matrix(frames[..., 0], depth)
    with pytest.raises(ShapeError, match="depth must be"):
        build_frame_matrix(frames, depth[:1])
    with pytest.raises(ShapeError, match="uint8"):
        build_frame_matrix(frames.astype(np.int16), depth)
    with pytest.raises(ShapeError, match="mode"):
        build_frame_matrix(frames, depth, mode="sideways")
    with pytest.raises(ShapeError, match="views"):
        build_frame_matrix(frames, depth, views=1)
    with pytest.raises(ShapeError, match="depth_kind"):
        build_frame_matrix(frames, depth, depth_kind="inverse")
    with pytest.raises(InputError, match="metric depth must be > 0"):
        build_frame_matrix(frames, depth - 1.5, depth_kind="metric")
    fm = build_frame_matrix(torch.from_numpy(frames), torch.from_numpy(depth), views=2)
    assert fm.images.shape == (2, 2, 6, 8, 3) and fm.images.dtype == torch.float32
    assert fm.masks.dtype == torch.bool and fm.offsets.dtype == torch.float32
