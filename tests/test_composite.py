"""Full-resolution composite and the resize of a frame matrix to the model's size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from framematrix.errors import ShapeError
from framematrix.fill.diffusion.composite import (
    composite_full_res,
    feather_weights,
    resize_matrix_to_model,
    upsample_images,
)
from framematrix.matrix import FrameMatrix


def _scene(n: int = 2, height: int = 64, width: int = 96, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, height, width, 3, generator=gen)
    masks = torch.ones(n, height, width, dtype=torch.bool)
    masks[:, 20:40, 30:50] = False  # a disocclusion in the middle
    masks[1, :, :6] = False  # and one at the left border of the second frame
    return images, masks


def test_feather_weights_are_chessboard_distance_ramps():
    masks = torch.ones(1, 9, 9, dtype=torch.bool)
    masks[0, 4, 4] = False
    alpha = feather_weights(masks, 3)
    assert alpha[0, 4, 4] == 0.0
    assert alpha[0, 3, 3] == pytest.approx(1 / 3)  # diagonal neighbour: distance 1
    assert alpha[0, 4, 2] == pytest.approx(2 / 3)
    assert alpha[0, 4, 1] == 1.0 and alpha[0, 0, 0] == 1.0
    # No holes: all ones, whatever the border; feather 0: the hard mask.
    assert torch.equal(
        feather_weights(torch.ones(1, 5, 5, dtype=torch.bool), 4), torch.ones(1, 5, 5)
    )
    assert torch.equal(feather_weights(masks, 0), masks.float())


def test_composite_upsampled_keeps_known_and_fills_holes():
    full, masks = _scene()
    generated = torch.rand(2, 16, 24, 3, generator=torch.Generator().manual_seed(1))
    feather = 5
    out = composite_full_res(full, masks, generated, feather_px=feather)
    assert out.shape == full.shape and out.dtype == torch.float32
    upsampled = upsample_images(generated, 64, 96)
    assert upsampled.shape == full.shape

    # Known pixels far from every hole are the warp, bit for bit.
    far = ~F.max_pool2d((~masks).float()[:, None], 2 * feather + 1, 1, feather)[:, 0].bool()
    assert far.sum() > 1000
    assert torch.equal(out[far], full[far])
    # Every hole pixel is the upsampled generation, bit for bit.
    assert torch.equal(out[~masks], upsampled[~masks])
    # The seam (known, next to a hole) is strictly between the two where they differ.
    seam = masks & ~far
    lo = torch.minimum(full, upsampled)[seam]
    hi = torch.maximum(full, upsampled)[seam]
    assert torch.all(out[seam] >= lo - 1e-6) and torch.all(out[seam] <= hi + 1e-6)
    ring = masks.clone()
    ring[:, 19:41, 29:51] = False  # known pixels right at the hole: alpha 1/feather
    ring = masks & ~ring
    differs = (full - upsampled).abs() > 0.05
    strictly = (out > torch.minimum(full, upsampled)) & (out < torch.maximum(full, upsampled))
    assert strictly[ring[..., None].expand_as(out) & differs].all()


def test_composite_equal_sizes():
    full, masks = _scene(height=32, width=40)
    generated = torch.rand(2, 32, 40, 3, generator=torch.Generator().manual_seed(2))
    out = composite_full_res(full, masks, generated, feather_px=2)
    assert torch.equal(out[~masks], generated[~masks])
    alpha = feather_weights(masks, 2)
    assert torch.equal(out[alpha == 1], full[alpha == 1])
    # Hard composite at feather 0.
    hard = composite_full_res(full, masks, generated, feather_px=0)
    assert torch.equal(hard, torch.where(masks[..., None], full, generated))


def test_composite_shape_errors():
    full, masks = _scene()
    with pytest.raises(ShapeError):
        composite_full_res(full, masks[:, :10], torch.rand(2, 8, 8, 3))
    with pytest.raises(ShapeError):
        composite_full_res(full, masks, torch.rand(3, 8, 8, 3))
    with pytest.raises(ShapeError):
        composite_full_res(full[..., 0], masks, torch.rand(2, 8, 8, 3))


def _matrix(height: int, width: int) -> FrameMatrix:
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, height, width, 3, generator=gen)
    masks = torch.ones(2, 3, height, width, dtype=torch.bool)
    masks[1, :, height // 3 : height // 2, width // 4 : width // 3] = False
    masks[1, 0, 0, 0] = False  # a single-pixel hole
    images = images * masks[..., None]
    depth = torch.where(masks, torch.rand(2, 3, height, width, generator=gen) + 1, torch.inf)
    return FrameMatrix(images, masks, torch.tensor([0.0, 0.08]), 0, "left2right", depth)


def test_resize_matrix_masks_are_conservative():
    matrix = _matrix(96, 160)
    small = resize_matrix_to_model(matrix, (32, 48))
    assert small.images.shape == (2, 3, 32, 48, 3) and small.masks.shape == (2, 3, 32, 48)
    assert small.depth is not None and small.depth.shape == (2, 3, 32, 48)
    assert small.masks[0].all()  # the source view stays fully known
    # A small pixel is known only if all full-resolution pixels under it are known.
    holes = (~matrix.masks[1]).float()[:, None]
    any_hole = F.adaptive_max_pool2d(holes, (32, 48))[:, 0].bool()
    assert not (small.masks[1] & any_hole).any()
    assert not small.masks[1, 0, 0, 0]  # the single-pixel hole is not lost
    assert (~small.masks[1]).sum() < 3 * (any_hole.sum() + 200)  # but holes do not explode
    # Known pixels carry no hole colour: compare to resizing a hole-free image.
    clean = torch.rand(2, 3, 96, 160, 3, generator=torch.Generator().manual_seed(4))
    clean_matrix = FrameMatrix(
        clean * matrix.masks[..., None], matrix.masks, matrix.offsets, 0, "left2right"
    )
    resized = resize_matrix_to_model(clean_matrix, (32, 48))
    reference = (
        F.interpolate(
            clean.reshape(6, 96, 160, 3).permute(0, 3, 1, 2),
            size=(32, 48),
            mode="bilinear",
            antialias=True,
        )
        .permute(0, 2, 3, 1)
        .reshape(2, 3, 32, 48, 3)
    )
    known = resized.masks
    assert torch.allclose(resized.images[known], reference.clamp(0, 1)[known], atol=1e-5)
    assert torch.all(resized.images[~known] == 0)
    assert torch.isinf(small.depth[~small.masks]).all()


def test_resize_matrix_identity_and_upscale():
    matrix = _matrix(32, 48)
    assert resize_matrix_to_model(matrix, (32, 48)) is matrix
    big = resize_matrix_to_model(matrix, (64, 96))
    assert big.masks.shape == (2, 3, 64, 96)
    assert big.masks[0].all() and not big.masks[1].all()
