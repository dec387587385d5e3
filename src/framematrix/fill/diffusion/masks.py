"""Masks of known pixels and latents for the frame-matrix fill (METHOD.md section 4).

All functions act on the last two dimensions and broadcast over any leading ones (``[V, F]``
for a frame matrix). They reproduce the OpenCV calls of the reference:

- pixel mask: ``cv2.erode`` with a k x k square; the image border counts as known (OpenCV's
  default border value for erosion);
- box filter: ``cv2.filter2D`` with a b x b averaging kernel, anchor at (b//2, b//2), border
  reflect-101;
- latent resize: ``cv2.resize`` bilinear (half-pixel centres) by the integer factor d, then
  anything < 1 set to 0; a latent is therefore known only where all the (one or two per axis)
  pixels nearest its centre are known after thresholding;
- soft mask: ``cv2.GaussianBlur`` with a k x k kernel and sigma 0 (OpenCV's fixed binomial
  kernels for k <= 7: k = 5 is [1, 4, 6, 4, 1] / 16), border reflect-101, times the hard mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import torch
import torch.nn.functional as F

from framematrix.errors import ShapeError


def gaussian_kernel_1d(size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """OpenCV's 1-D Gaussian for ``sigma = 0``: ``[size]`` summing to 1 (k = 5: [1,4,6,4,1]/16)."""
    kernel = cv2.getGaussianKernel(int(size), 0, cv2.CV_64F).reshape(-1)
    return torch.from_numpy(kernel).to(dtype)


def _reflect101_index(length: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Source indices of a reflect-101 padded axis (OpenCV's default border), any pad size."""
    index = torch.arange(-before, length + after, device=device)
    if length == 1:
        return torch.zeros_like(index)
    period = 2 * (length - 1)
    index = torch.remainder(index, period)
    return torch.where(index >= length, period - index, index)


def _pad_reflect101(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect-101 padding of ``[N, 1, H, W]``; torch's "reflect" is reflect-101 but needs
    pads smaller than the side, so tiny planes gather indices instead (OpenCV reflects again)."""
    height, width = x.shape[-2:]
    if max(top, bottom) < height and max(left, right) < width:
        return F.pad(x, (left, right, top, bottom), mode="reflect")
    rows = _reflect101_index(x.shape[-2], top, bottom, x.device)
    cols = _reflect101_index(x.shape[-1], left, right, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def _as_planes(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``[..., H, W]`` -> ``[N, 1, H, W]`` and the leading shape to restore."""
    if x.ndim < 2:
        raise ShapeError(f"mask must have at least 2 dimensions [..., H, W], got {tuple(x.shape)}")
    lead = tuple(x.shape[:-2])
    return x.reshape(-1, 1, *x.shape[-2:]), lead


def erode_mask(mask: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Erode known pixels by a ``size`` x ``size`` square (OpenCV ``erode``).

    mask: ``[..., H, W]`` bool, True = known. Returns the same shape, bool. Pixels outside the
    image count as known, so the frame border itself does not erode.
    """
    if size <= 1:
        return mask.bool()
    planes, lead = _as_planes(mask.bool())
    holes = (~planes).float()
    before = size // 2
    # Out-of-image pixels pad as 0 (not a hole), the border value OpenCV uses for erosion.
    holes = F.pad(holes, (before, size - 1 - before, before, size - 1 - before), value=0.0)
    grown = F.max_pool2d(holes, kernel_size=size, stride=1)
    return (grown < 0.5).reshape(*lead, *mask.shape[-2:])


def box_filter(x: torch.Tensor, size: int = 8) -> torch.Tensor:
    """Mean over a ``size`` x ``size`` window, anchor at ``size // 2`` (OpenCV ``filter2D``).

    x: ``[..., H, W]`` float. The window of pixel (y, x) spans rows ``y - size//2 ..
    y + size - 1 - size//2``; the border is reflect-101.
    """
    if size <= 1:
        return x
    planes, lead = _as_planes(x)
    before = size // 2
    after = size - 1 - before
    padded = _pad_reflect101(planes, before, after, before, after)
    out = F.avg_pool2d(padded, kernel_size=size, stride=1)
    return out.reshape(*lead, *x.shape[-2:])


def gaussian_blur(x: torch.Tensor, size: int = 5) -> torch.Tensor:
    """OpenCV ``GaussianBlur(x, (size, size), 0)`` with a reflect-101 border. ``[..., H, W]``."""
    if size <= 1:
        return x
    planes, lead = _as_planes(x)
    kernel = gaussian_kernel_1d(size, dtype=x.dtype).to(x.device)
    half = size // 2
    padded = _pad_reflect101(planes, half, half, half, half)
    out = F.conv2d(padded, kernel.view(1, 1, 1, size))
    out = F.conv2d(out, kernel.view(1, 1, size, 1))
    return out.reshape(*lead, *x.shape[-2:])


def latent_mask(
    pixel_mask: torch.Tensor, downscale: int = 8, box: int = 8, threshold: float = 0.7
) -> torch.Tensor:
    """Hard mask of known latents from the (eroded) pixel mask.

    pixel_mask: ``[..., H, W]`` bool or float in {0, 1}, H and W multiples of ``downscale``.
    Returns ``[..., H / downscale, W / downscale]`` float32 in {0, 1}: 1 where the latent can be
    taken from the warped frames. A pixel counts only if it is known and at least ``threshold``
    of its ``box`` x ``box`` neighbourhood is known (unknown regions spoil nearby latents through
    the VAE's receptive field); a latent counts only if the pixels nearest its centre all count.
    """
    height, width = pixel_mask.shape[-2:]
    if height % downscale or width % downscale:
        raise ShapeError(
            f"mask size {height}x{width} is not a multiple of the latent downscale {downscale}"
        )
    known = pixel_mask.float()
    if box > 1 and downscale > 1:
        reliable = (box_filter(known, box) >= threshold).float()
        known = reliable * known
    planes, lead = _as_planes(known)
    latent_h, latent_w = height // downscale, width // downscale
    resized = F.interpolate(planes, size=(latent_h, latent_w), mode="bilinear", align_corners=False)
    # Bilinear weights are dyadic here (0.5 or 1), so "all sampled pixels known" is exactly 1.
    hard = (resized >= 1.0 - 1e-6).float()
    return hard.reshape(*lead, latent_h, latent_w)


def soft_mask(hard_mask: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Gaussian-softened mask, non-zero only inside the known area.

    hard_mask: ``[..., h, w]`` float in {0, 1}. Returns ``blur(hard) * hard`` (same shape,
    values in [0, 1]): 1 deep inside the known area, falling towards its edge, 0 in holes.
    """
    if size <= 1:
        return hard_mask.float()
    hard = hard_mask.float()
    return gaussian_blur(hard, size) * hard


@dataclass
class FrameMatrixMasks:
    """Every mask the sampler needs, for V views x F frames.

    pixel: ``[V, F, H, W]`` float32 {0, 1}, the eroded pixel mask (1 = known).
    pixel_soft: ``[V, F, H, W]`` float32 [0, 1], ``soft_mask(pixel)`` (re-injection option), or
        None unless asked for.
    latent_hard: ``[V, F, h, w]`` float32 {0, 1}.
    latent: ``[V, F, h, w]`` float32 [0, 1], the soft latent mask used to compose latents.
    latent_early: like ``latent`` with the early threshold, or None when there is none.
    """

    pixel: torch.Tensor
    pixel_soft: torch.Tensor | None
    latent_hard: torch.Tensor
    latent: torch.Tensor
    latent_early: torch.Tensor | None = None


def frame_matrix_masks(
    masks: torch.Tensor,
    downscale: int = 8,
    erode: int = 3,
    box: int = 8,
    threshold: float = 0.7,
    soft: int = 5,
    threshold_early: float | None = None,
    pixel_soft: bool = False,
) -> FrameMatrixMasks:
    """All masks of METHOD.md section 4 from the frame matrix's masks ``[V, F, H, W]`` bool."""
    if masks.ndim != 4:
        raise ShapeError(f"masks must be [V, F, H, W], got {tuple(masks.shape)}")
    pixel = erode_mask(masks.bool(), erode).float()
    hard = latent_mask(pixel, downscale, box, threshold)
    early = None
    if threshold_early is not None:
        early = soft_mask(latent_mask(pixel, downscale, box, threshold_early), soft)
    return FrameMatrixMasks(
        pixel=pixel,
        pixel_soft=soft_mask(pixel, soft) if pixel_soft else None,
        latent_hard=hard,
        latent=soft_mask(hard, soft),
        latent_early=early,
    )
