"""The frame matrix: V views x F frames of warped images with masks of known pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

RIG_MODES = ("left2right", "right2left", "middle2leftright")

# rows converted at a time by to_uint8_rounded: the float scratch block stays in the CPU cache
_UINT8_BLOCK_ELEMENTS = 1 << 17


def to_uint8_rounded(
    images: torch.Tensor | np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Float images in [0, 1] -> uint8, ``floor(clip(x, 0, 1) * 255 + 0.5)`` (round half up).

    Bit for bit ``(images.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)`` (the same float32
    operations), about 8x faster on the CPU: the work goes through a small scratch block
    that stays in the cache, instead of three full-size float temporaries.

    Args:
        images: any shape ``[..., C]`` float (float32 is used as is, others are converted),
            numpy or torch on any device; values outside [0, 1] are clipped. NaN gives an
            unspecified value.
        out: optional C-contiguous uint8 array of the same shape to write into.

    Returns:
        uint8 numpy array of the same shape (``out`` if given).
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().to(device="cpu", dtype=torch.float32).numpy()
    array = np.asarray(images)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"images must be float in [0, 1], got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if out is None:
        out = np.empty(array.shape, np.uint8)
    elif out.shape != array.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous uint8 array of shape {array.shape}")
    flat_in = array.reshape(-1)
    flat_out = out.reshape(-1)
    block = min(_UINT8_BLOCK_ELEMENTS, flat_in.size)
    scratch = np.empty(block, np.float32)
    scale, half = np.float32(255.0), np.float32(0.5)
    for start in range(0, flat_in.size, block):
        stop = min(start + block, flat_in.size)
        part = scratch[: stop - start]
        np.clip(flat_in[start:stop], 0.0, 1.0, out=part)
        np.multiply(part, scale, out=part)
        np.add(part, half, out=part)
        flat_out[start:stop] = part  # float -> uint8 truncates: floor of a value >= 0.5
    return out


@dataclass
class FrameMatrix:
    """V camera views x F frames, as produced by :func:`framematrix.build_frame_matrix`.

    Attributes:
        images: ``[V, F, H, W, 3]`` float32 RGB in [0, 1]. Holes are 0 until filled.
        masks: ``[V, F, H, W]`` bool, True where the pixel is known (warped from the source).
        offsets: ``[V]`` float32, camera j's translation along x in scene units (b_j of
            METHOD.md section 3; positive = camera moved right).
        source_view: index of the view with offset exactly 0 (the untouched source frames).
        mode: rig mode, one of ``left2right``, ``right2left``, ``middle2leftright``.
        depth: optional ``[V, F, H, W]`` float32 target depth z per view (inf at holes).
    """

    images: torch.Tensor
    masks: torch.Tensor
    offsets: torch.Tensor
    source_view: int
    mode: str
    depth: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 5 or self.images.shape[-1] != 3:
            raise ValueError(f"images must be [V, F, H, W, 3], got {tuple(self.images.shape)}")
        if tuple(self.masks.shape) != tuple(self.images.shape[:4]):
            raise ValueError(
                f"masks must be [V, F, H, W] = {tuple(self.images.shape[:4])}, "
                f"got {tuple(self.masks.shape)}"
            )
        if self.mode not in RIG_MODES:
            raise ValueError(f"mode must be one of {RIG_MODES}, got {self.mode!r}")

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.images.shape[1])

    @property
    def height(self) -> int:
        return int(self.images.shape[2])

    @property
    def width(self) -> int:
        return int(self.images.shape[3])

    @property
    def left_view(self) -> int:
        """Index of the left-eye view (the leftmost camera)."""
        return int(torch.argmin(self.offsets).item())

    @property
    def right_view(self) -> int:
        """Index of the right-eye view (the rightmost camera)."""
        return int(torch.argmax(self.offsets).item())

    def eyes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Left and right eye videos, each ``[F, H, W, 3]`` float32 in [0, 1]."""
        return self.images[self.left_view], self.images[self.right_view]

    def hole_fraction(self) -> torch.Tensor:
        """Fraction of unknown pixels per view, ``[V]`` float32."""
        # a count of the known pixels: no full-size float copy of the masks
        per_view = int(np.prod(self.masks.shape[1:]))
        flat = self.masks.reshape(self.num_views, -1)
        if flat.device.type == "cpu":  # numpy counts bytes about 10x faster than torch
            known = torch.from_numpy(np.count_nonzero(flat.numpy(), axis=1).astype(np.int64))
        else:
            known = torch.count_nonzero(flat, dim=1)
        holes = (per_view - known).to(torch.float64) / max(1, per_view)
        return holes.to(torch.float32)

    def to(self, device: torch.device | str) -> FrameMatrix:
        return FrameMatrix(
            images=self.images.to(device),
            masks=self.masks.to(device),
            offsets=self.offsets.to(device),
            source_view=self.source_view,
            mode=self.mode,
            depth=None if self.depth is None else self.depth.to(device),
        )

    def with_images(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> FrameMatrix:
        """A copy with new images (e.g. after filling) and optionally new masks."""
        return FrameMatrix(
            images=images,
            masks=self.masks if masks is None else masks,
            offsets=self.offsets,
            source_view=self.source_view,
            mode=self.mode,
            depth=self.depth,
        )
