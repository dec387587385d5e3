"""Unit tests of the fast, non-generative hole fill (framematrix.fill.fast)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from framematrix.errors import ShapeError
from framematrix.fill.fast import FastFillSettings, fill_fast, fill_matrix_fast
from framematrix.matrix import FrameMatrix

FOREGROUND = np.array([0.95, 0.9, 0.85], np.float32)  # near, bright
BACKGROUND = np.array([0.1, 0.15, 0.2], np.float32)  # far, dark
NEAR_Z, FAR_Z = 1.0, 4.0


def edge_scene(
    height: int = 24,
    width: int = 96,
    foreground_left: bool = True,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, slice]:
    """A near bright object beside a far dark textured background, a hole between them.

    ``foreground_left``: object at columns [10, 40), hole [40, 52), background from 52 on and
    left of the object (as in a view whose camera moved right). Otherwise mirrored.
    Returns image [H, W, 3] with 0 at the hole, mask [H, W], depth z [H, W] (inf at the hole)
    and the hole's column slice.
    """
    rng = np.random.default_rng(seed)
    image = BACKGROUND + rng.uniform(-0.03, 0.03, (height, width, 3)).astype(np.float32)
    z = np.full((height, width), FAR_Z, np.float32)
    image[:, 10:40] = FOREGROUND
    z[:, 10:40] = NEAR_Z
    hole = slice(40, 52)
    if not foreground_left:
        image, z = image[:, ::-1].copy(), z[:, ::-1].copy()
        hole = slice(width - 52, width - 40)
    known = np.ones((height, width), bool)
    known[:, hole] = False
    image[~known] = 0.0
    z[~known] = np.inf
    return image, known, z, hole


def distance_to(colours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.abs(colours - reference).max(axis=-1)


@pytest.mark.parametrize("foreground_left", [True, False])
def test_hole_takes_the_far_background_not_the_near_foreground(foreground_left: bool) -> None:
    image, known, z, hole = edge_scene(foreground_left=foreground_left)
    filled = fill_fast(image[None], known[None], z[None])[0]
    hole_pixels = filled[:, hole]
    # every hole pixel is the dark background (texture +-0.03), none is the bright foreground
    assert distance_to(hole_pixels, BACKGROUND).max() < 0.06
    assert distance_to(hole_pixels.mean(axis=(0, 1)), BACKGROUND) < 0.02


def test_without_depth_the_background_side_decides() -> None:
    image, known, _, hole = edge_scene(foreground_left=True)
    right = fill_fast(image[None], known[None], None, background_side="right")[0][:, hole]
    left = fill_fast(image[None], known[None], None, background_side="left")[0][:, hole]
    assert distance_to(right, BACKGROUND).max() < 0.06
    # the wrong side copies the foreground's colour into the hole: the option is not ignored
    assert distance_to(left.mean(axis=(0, 1)), BACKGROUND) > 0.3


def test_same_surface_crack_is_interpolated() -> None:
    """A 1-pixel crack inside one surface takes the mean of its two neighbours."""
    ramp = np.linspace(0.2, 0.8, 40, dtype=np.float32)
    image = np.repeat(ramp[None, :, None], 3, axis=2).repeat(8, axis=0)
    z = np.full(image.shape[:2], 2.0, np.float32)
    known = np.ones(image.shape[:2], bool)
    known[:, 20] = False
    filled = fill_fast(image[None], known[None], z[None])[0]
    expected = 0.5 * (ramp[19] + ramp[21])
    np.testing.assert_allclose(filled[:, 20], expected, atol=2e-3)


def random_holes(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    known = np.ones((height, width), bool)
    for _ in range(12):
        y, x = rng.integers(0, height), rng.integers(0, width)
        h, w = rng.integers(1, height // 2), rng.integers(1, width // 3)
        known[y : y + h, x : x + w] = False
    known[:, :5] = False  # left border strip
    known[:, -7:] = False  # right border strip
    known[height // 2] = False  # a row without any known pixel
    return known


def test_no_unfilled_pixels_and_known_pixels_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    frames, height, width = 3, 40, 64
    image = rng.uniform(0.2, 0.8, (frames, height, width, 3)).astype(np.float32)
    known = np.stack([random_holes(rng, height, width) for _ in range(frames)])
    z = rng.uniform(1.0, 9.0, (frames, height, width)).astype(np.float32)
    image[~known] = np.nan  # whatever the holes hold must not leak
    z[~known] = np.inf
    known[2] = False  # a frame with no known pixel at all
    filled = fill_fast(image, known, z)
    assert filled.dtype == np.float32 and filled.shape == image.shape
    assert np.isfinite(filled).all()
    assert np.array_equal(filled[known], image[known])
    holes = filled[:2][~known[:2]]
    assert holes.min() >= 0.2 - 1e-6 and holes.max() <= 0.8 + 1e-6  # no black, no overshoot
    np.testing.assert_array_equal(filled[2], 0.5)


def test_border_strips_continue_the_rows() -> None:
    """Holes at the left and right image edges take the colour of their row."""
    height, width = 96, 64
    stripe = np.repeat(np.linspace(0.1, 0.9, height // 16, dtype=np.float32), 16)
    image = np.repeat(stripe[:, None, None], width, axis=1).repeat(3, axis=2)
    known = np.ones((height, width), bool)
    known[:, :6] = False
    known[:, -9:] = False
    z = np.full((height, width), 3.0, np.float32)
    for depth in (z, None):
        filled = fill_fast(image[None], known[None], None if depth is None else depth[None])[0]
        centres = np.arange(8, height, 16)  # stripe centres, away from the blur across rows
        for columns in (slice(0, 6), slice(width - 9, width)):
            np.testing.assert_allclose(filled[centres, columns], image[centres, columns], atol=0.03)


def test_static_clip_gets_the_same_fill_in_every_frame() -> None:
    image, known, z, _ = edge_scene(height=32, width=96, seed=3)
    clip = np.repeat(image[None], 5, axis=0)
    masks = np.repeat(known[None], 5, axis=0)
    depth = np.repeat(z[None], 5, axis=0)
    filled = fill_fast(clip, masks, depth)
    for frame in filled[1:]:
        assert np.array_equal(frame, filled[0])


def test_far_motion_does_not_change_a_static_hole() -> None:
    """Something moving far from a hole leaves the hole's fill unchanged (no flicker)."""
    height, width = 64, 320
    image, known, z, hole = edge_scene(height=height, width=width, seed=4)
    frames = []
    for shift in (0, 12, 24):
        moved = image.copy()
        moved[20:40, 250 + shift - 24 : 270 + shift - 24] = (0.9, 0.2, 0.2)  # same depth as bg
        frames.append(moved)
    filled = fill_fast(
        np.stack(frames), np.repeat(known[None], 3, axis=0), np.repeat(z[None], 3, axis=0)
    )
    for frame in filled[1:]:
        assert np.abs(frame[:, hole] - filled[0][:, hole]).max() < 1.0 / 255.0


def test_temporal_window_reveals_a_static_background() -> None:
    """A foreground moving over a still background: the hole of frame 0 is known in frame 1."""
    rng = np.random.default_rng(5)
    height, width = 32, 64
    background = rng.uniform(0.1, 0.5, (height, width, 3)).astype(np.float32)
    clip = np.repeat(background[None], 2, axis=0)
    depth = np.full((2, height, width), FAR_Z, np.float32)
    masks = np.ones((2, height, width), bool)
    masks[0, 8:24, 30:40] = False  # frame 0: a disocclusion
    masks[1, 8:24, 10:20] = False  # frame 1: the object has moved on
    clip[~masks] = 0.0
    depth[~masks] = np.inf
    per_frame = fill_fast(clip, masks, depth)
    borrowed = fill_fast(clip, masks, depth, settings=FastFillSettings(temporal_window=1))
    np.testing.assert_array_equal(borrowed[0, 8:24, 30:40], background[8:24, 30:40])
    np.testing.assert_array_equal(borrowed[1, 8:24, 10:20], background[8:24, 10:20])
    assert not np.array_equal(per_frame[0, 8:24, 30:40], background[8:24, 30:40])


def test_temporal_window_refuses_a_moving_background() -> None:
    """When the whole view moved between frames, nothing is copied from the other frame."""
    rng = np.random.default_rng(6)
    height, width = 32, 80
    texture = rng.uniform(0.1, 0.9, (height, width + 8, 3)).astype(np.float32)
    clip = np.stack([texture[:, :width], texture[:, 8:]])  # camera panned by 8 px
    masks = np.ones((2, height, width), bool)
    masks[0, 8:24, 30:40] = False
    depth = np.full((2, height, width), 2.0, np.float32)
    depth[~masks] = np.inf
    per_frame = fill_fast(clip, masks, depth)
    borrowed = fill_fast(clip, masks, depth, settings=FastFillSettings(temporal_window=1))
    assert np.array_equal(borrowed, per_frame)


def test_torch_in_torch_out() -> None:
    image, known, z, hole = edge_scene()
    filled = fill_fast(
        torch.from_numpy(image)[None].to(torch.bfloat16),
        torch.from_numpy(known)[None],
        torch.from_numpy(z)[None],
    )
    assert isinstance(filled, torch.Tensor) and filled.dtype == torch.float32
    assert distance_to(filled[0, :, hole].numpy(), BACKGROUND).max() < 0.07


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_come_back_on_their_device() -> None:
    image, known, z, hole = edge_scene()
    filled = fill_fast(
        torch.from_numpy(image)[None].cuda(),
        torch.from_numpy(known)[None].cuda(),
        torch.from_numpy(z)[None].cuda(),
    )
    assert filled.device.type == "cuda"
    assert distance_to(filled[0, :, hole].cpu().numpy(), BACKGROUND).max() < 0.06


@pytest.mark.parametrize(
    ("images", "masks", "depth"),
    [
        (np.zeros((4, 4, 3), np.float32), np.ones((4, 4), bool), None),  # no N axis
        (np.zeros((1, 4, 4, 4), np.float32), np.ones((1, 4, 4), bool), None),  # RGBA
        (np.zeros((1, 4, 4, 3), np.float32), np.ones((1, 4, 5), bool), None),  # mask size
        (np.zeros((1, 4, 4, 3), np.float32), np.ones((1, 4, 4), np.uint8), None),  # mask dtype
        (np.zeros((1, 4, 4, 3), np.uint8), np.ones((1, 4, 4), bool), None),  # not float
        (np.zeros((1, 4, 4, 3), np.float32), np.ones((1, 4, 4), bool), np.ones((1, 4, 4, 1))),
        (np.zeros((1, 4, 4, 3), np.float32), np.ones((2, 4, 4), bool), None),  # frame count
    ],
)
def test_shape_errors(images: np.ndarray, masks: np.ndarray, depth: np.ndarray | None) -> None:
    with pytest.raises(ShapeError):
        fill_fast(images, masks, depth)


def test_bad_arguments() -> None:
    image, known, z, _ = edge_scene()
    with pytest.raises(ValueError, match="background_side"):
        fill_fast(image[None], known[None], None, background_side="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="texture_length"):
        FastFillSettings(texture_length=0)
    with pytest.raises(ValueError, match="coarse_scale"):
        FastFillSettings(coarse_scale=0)


def scene_matrix(mode: str, with_depth: bool) -> FrameMatrix:
    """A 3-view, 2-frame matrix whose views 1 and 2 hold the edge scene of that rig."""
    camera_moves_right = mode == "left2right"
    image, known, z, _ = edge_scene(foreground_left=camera_moves_right)
    views, frames = 3, 2
    images = np.repeat(np.repeat(image[None, None], frames, axis=1), views, axis=0)
    masks = np.repeat(np.repeat(known[None, None], frames, axis=1), views, axis=0)
    depth = np.repeat(np.repeat(z[None, None], frames, axis=1), views, axis=0)
    images[0] = np.where(known[..., None], image, 0.5)  # source view: complete
    masks[0] = True
    depth[0] = np.where(known, z, FAR_Z)
    sign = 1.0 if camera_moves_right else -1.0
    return FrameMatrix(
        images=torch.from_numpy(images),
        masks=torch.from_numpy(masks),
        offsets=torch.tensor([0.0, 0.04 * sign, 0.08 * sign]),
        source_view=0,
        mode=mode,
        depth=torch.from_numpy(depth) if with_depth else None,
    )


@pytest.mark.parametrize("mode", ["left2right", "right2left"])
@pytest.mark.parametrize("with_depth", [True, False])
def test_fill_matrix_fast(mode: str, with_depth: bool) -> None:
    matrix = scene_matrix(mode, with_depth)
    before = matrix.images.clone()
    filled = fill_matrix_fast(matrix, views=[2])
    assert torch.equal(matrix.images, before)  # the input is not modified
    assert filled.masks is matrix.masks and filled.offsets is matrix.offsets
    assert torch.equal(filled.images[:2], before[:2])  # views not asked for stay as they were
    holes = ~matrix.masks[2]
    assert torch.equal(filled.images[2][~holes], before[2][~holes])
    hole_colours = filled.images[2][holes].numpy()
    # without depth the side comes from the offset: background on the right of the holes for
    # a camera moved right, on the left for one moved left
    assert distance_to(hole_colours, BACKGROUND).max() < 0.06
    everything = fill_matrix_fast(matrix)
    assert torch.equal(everything.images[0], before[0])
    assert torch.isfinite(everything.images).all()
    assert distance_to(everything.images[1][holes].numpy(), BACKGROUND).max() < 0.06


def test_fill_matrix_fast_bad_view() -> None:
    matrix = scene_matrix("left2right", True)
    with pytest.raises(ShapeError, match="view index"):
        fill_matrix_fast(matrix, views=[3])


def test_smoothing_averages_hole_pixels_only() -> None:
    """The final blur removes row streaks inside the hole and never mixes in known pixels."""
    height, width = 32, 64
    stripes = np.where(np.arange(height) % 2 == 0, 0.2, 0.8).astype(np.float32)
    image = np.repeat(stripes[:, None, None], width, axis=1).repeat(3, axis=2)
    z = np.full((height, width), FAR_Z, np.float32)
    image[:, :20] = FOREGROUND
    z[:, :20] = NEAR_Z
    known = np.ones((height, width), bool)
    known[:, 20:30] = False
    plain = FastFillSettings(smooth_radius=0)
    streaks = fill_fast(image[None], known[None], z[None], settings=plain)[0][4:-4, 29]
    smooth = fill_fast(image[None], known[None], z[None])[0][4:-4, 20:30]
    assert np.abs(streaks - 0.5).max() > 0.2  # the row fill alone copies the stripes
    assert np.abs(smooth - 0.5).max() < 0.15  # a 5x5 box over alternating rows
    # a uniform background stays exactly uniform up to the foreground edge: the blur is
    # normalised over hole pixels only (known pixels are neither mixed in nor counted)
    image[:, 20:] = 0.6
    uniform = fill_fast(image[None], known[None], z[None])[0]
    np.testing.assert_allclose(uniform[:, 20:30], 0.6, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (7, 1), (2, 2), (3, 17), (33, 9)])
@pytest.mark.parametrize("depth_mode", ["z", "odd z", None])
def test_tiny_and_odd_inputs(size: tuple[int, int], depth_mode: str | None) -> None:
    """Any shape, any hole pattern, even odd depths at known pixels: finite and complete."""
    rng = np.random.default_rng(sum(size))
    height, width = size
    image = rng.uniform(0.1, 0.9, (4, height, width, 3)).astype(np.float32)
    known = rng.uniform(size=(4, height, width)) < 0.5
    known[0] = True
    known[1] = False
    known[2].flat[0] = True  # a single known pixel
    known[2].flat[1:] = False
    z = rng.uniform(0.5, 20.0, (4, height, width)).astype(np.float32)
    if depth_mode == "odd z":
        z[known & (rng.uniform(size=known.shape) < 0.3)] = np.inf
        z[known & (rng.uniform(size=known.shape) < 0.1)] = 0.0
    for side in (None, "left", "right"):
        filled = fill_fast(image, known, None if depth_mode is None else z, background_side=side)
        assert np.isfinite(filled).all()
        assert filled.min() >= 0.0 and filled.max() <= 1.0
        assert np.array_equal(filled[known], image[known])
    if height * width > 1:
        np.testing.assert_allclose(filled[2], np.broadcast_to(image[2, 0, 0], filled[2].shape))
