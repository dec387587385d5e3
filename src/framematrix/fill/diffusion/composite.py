"""Full-resolution output of the generative fill.

zeroscope denoises at 576x320. A larger input is shrunk to that size for the sampler
(:func:`resize_matrix_to_model`), and the result is put back at the input resolution by
:func:`composite_full_res`: known pixels come from the full-resolution warp (sharp, exact),
holes from the upsampled generated view, with a feathered seam between them. The same
composite is used at equal sizes, where it replaces the VAE round trip of the known pixels by
the warped pixels themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from framematrix.errors import ShapeError
from framematrix.matrix import FrameMatrix

MODEL_SIZE = (320, 576)


def default_feather(full_height: int, model_height: int) -> int:
    """Seam width in output pixels: two model pixels, at least two output pixels."""
    return max(2, round(2.0 * full_height / max(model_height, 1)))


def feather_weights(masks: torch.Tensor, feather_px: int) -> torch.Tensor:
    """Blend weight of the known pixels, ``[N, H, W]`` float32 in [0, 1].

    masks: ``[N, H, W]`` bool, True = known. A known pixel at chessboard distance d from the
    nearest hole gets ``min(d, feather_px) / feather_px``; holes get 0, known pixels
    ``feather_px`` or more away from every hole get exactly 1. ``feather_px = 0`` is a hard
    composite. The image border is not a hole.
    """
    if masks.ndim != 3 or masks.dtype != torch.bool:
        raise ShapeError(f"masks must be [N, H, W] bool, got {tuple(masks.shape)} {masks.dtype}")
    if feather_px < 0:
        raise ValueError(f"feather_px must be >= 0, got {feather_px}")
    known = masks.float()
    if feather_px == 0:
        return known
    # Each 3x3 dilation of the holes moves the hole front by one pixel; summing the surviving
    # known areas counts, per pixel, min(distance to the nearest hole, feather_px).
    holes = (~masks).float()[:, None]
    total = torch.zeros_like(known)
    for _ in range(feather_px):
        total += 1.0 - holes[:, 0]
        holes = F.max_pool2d(holes, kernel_size=3, stride=1, padding=1)
    return total / feather_px


def upsample_images(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[N, h, w, 3]`` in [0, 1] -> ``[N, height, width, 3]`` in [0, 1] (bicubic when
    enlarging, antialiased bilinear when shrinking; identity at equal size)."""
    if tuple(images.shape[1:3]) == (height, width):
        return images
    x = images.permute(0, 3, 1, 2)
    enlarging = height >= images.shape[1] and width >= images.shape[2]
    if enlarging:
        x = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)
    else:
        x = F.interpolate(
            x, size=(height, width), mode="bilinear", align_corners=False, antialias=True
        )
    return x.clamp(0.0, 1.0).permute(0, 2, 3, 1)


def composite_full_res(
    full_images: torch.Tensor,
    full_masks: torch.Tensor,
    generated: torch.Tensor,
    feather_px: int | None = None,
) -> torch.Tensor:
    """Known pixels from the full-resolution warp, holes from the upsampled generation.

    full_images: ``[N, H, W, 3]`` float32 in [0, 1], the warped frames (holes arbitrary).
    full_masks: ``[N, H, W]`` bool, True = known.
    generated: ``[N, h, w, 3]`` float32 in [0, 1], the filled frames at model resolution
        (h, w <= or == H, W).
    feather_px: seam width in output pixels (see :func:`feather_weights`); None =
        :func:`default_feather`.
    Returns ``[N, H, W, 3]`` float32 in [0, 1]: ``a * known + (1 - a) * upsampled`` with
    ``a = feather_weights(full_masks)``, so known pixels ``feather_px`` away from any hole
    equal the warp exactly and every hole pixel equals the upsampled generation.
    """
    if full_images.ndim != 4 or full_images.shape[-1] != 3:
        raise ShapeError(f"full_images must be [N, H, W, 3], got {tuple(full_images.shape)}")
    if tuple(full_masks.shape) != tuple(full_images.shape[:3]):
        raise ShapeError(
            f"full_masks must be [N, H, W] = {tuple(full_images.shape[:3])}, "
            f"got {tuple(full_masks.shape)}"
        )
    if (
        generated.ndim != 4
        or generated.shape[-1] != 3
        or generated.shape[0] != full_images.shape[0]
    ):
        raise ShapeError(
            f"generated must be [N={full_images.shape[0]}, h, w, 3], got {tuple(generated.shape)}"
        )
    _, height, width, _ = full_images.shape
    if feather_px is None:
        feather_px = default_feather(height, generated.shape[1])
    device = full_images.device
    upsampled = upsample_images(generated.to(device, torch.float32), height, width)
    alpha = feather_weights(full_masks.to(device), feather_px)[..., None]
    known = full_images.to(torch.float32)
    # Where alpha is exactly 0 or 1 the blend must return the chosen side bit for bit.
    out = torch.where(alpha >= 1.0, known, upsampled)
    seam = (alpha > 0.0) & (alpha < 1.0)
    blended = alpha * known + (1.0 - alpha) * upsampled
    return torch.where(seam, blended, out)


def resize_matrix_to_model(matrix: FrameMatrix, size: tuple[int, int] = MODEL_SIZE) -> FrameMatrix:
    """The frame matrix at the model's resolution ``size = (height, width)``.

    Images are resized with an antialiased bilinear filter; a resized pixel is known only if
    every source pixel that contributes to it is known (the hole indicator is resized with the
    same filter and anything above 0 is a hole), so no hole colour leaks into known pixels.
    Depth (if any) is resized by nearest neighbour and set to inf at the new holes. Returns the
    matrix itself when the size already matches.
    """
    height, width = int(size[0]), int(size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive (height, width), got {size}")
    if (matrix.height, matrix.width) == (height, width):
        return matrix
    views, frames = matrix.num_views, matrix.num_frames

    def resize(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            x, size=(height, width), mode="bilinear", align_corners=False, antialias=True
        )

    images = matrix.images.reshape(views * frames, matrix.height, matrix.width, 3)
    images = resize(images.permute(0, 3, 1, 2).float()).clamp(0.0, 1.0).permute(0, 2, 3, 1)
    holes = (~matrix.masks).reshape(views * frames, 1, matrix.height, matrix.width).float()
    masks = resize(holes)[:, 0] <= 0.0
    images = images * masks[..., None]
    depth = None
    if matrix.depth is not None:
        flat = matrix.depth.reshape(views * frames, 1, matrix.height, matrix.width).float()
        depth = F.interpolate(flat, size=(height, width), mode="nearest")[:, 0]
        depth = torch.where(masks, depth, torch.full_like(depth, float("inf")))
        depth = depth.reshape(views, frames, height, width)
    return FrameMatrix(
        images=images.reshape(views, frames, height, width, 3).contiguous(),
        masks=masks.reshape(views, frames, height, width).contiguous(),
        offsets=matrix.offsets,
        source_view=matrix.source_view,
        mode=matrix.mode,
        depth=depth,
    )
