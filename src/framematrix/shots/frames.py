"""Checking and downscaling the streamed frame chunks that the shot detectors read."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np

from framematrix.errors import ShapeError

__all__ = ["checked_chunks", "downscale"]


def checked_chunks(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Yield each chunk after checking it is [n, H, W, 3] uint8 RGB with the same H, W throughout.

    Empty chunks (n = 0) are skipped. Raises :class:`ShapeError` naming the chunk and the problem.
    """
    size: tuple[int, int] | None = None
    for index, chunk in enumerate(chunks):
        if not isinstance(chunk, np.ndarray):
            raise ShapeError(
                f"frame chunk {index}: expected a numpy array, got {type(chunk).__name__}"
            )
        if chunk.ndim != 4 or chunk.shape[-1] != 3 or chunk.dtype != np.uint8:
            raise ShapeError(
                f"frame chunk {index}: expected [n, H, W, 3] uint8 RGB, "
                f"got {list(chunk.shape)} {chunk.dtype}"
            )
        if chunk.shape[0] == 0:
            continue
        if size is None:
            size = (chunk.shape[1], chunk.shape[2])
        elif (chunk.shape[1], chunk.shape[2]) != size:
            raise ShapeError(
                f"frame chunk {index}: frames are {chunk.shape[2]}x{chunk.shape[1]}, "
                f"earlier ones {size[1]}x{size[0]}"
            )
        yield chunk


def downscale(chunk: np.ndarray, width: int, height: int) -> np.ndarray:
    """[n, H, W, 3] uint8 -> [n, height, width, 3] uint8, by area averaging (no aliasing)."""
    out = np.empty((chunk.shape[0], height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(chunk):
        # INTER_AREA averages every source pixel, like the ffmpeg scaler TransNetV2 was fed with,
        # rather than sampling a few (bilinear/bicubic at a 1/27 scale would alias).
        out[i] = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return out
