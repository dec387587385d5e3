"""A frame source scaled down to fit a maximum size (``--max-width`` / ``--max-height``).

:class:`ScaledSource` wraps any frame source (:class:`framematrix.io.source.FrameSource` or an
object with its ``info`` / ``read`` / ``iter_chunks`` / ``frame_time``) and returns its frames
resized with area averaging, so every later stage (shots, depth, warp, encode) works at the output
size. :class:`ScaledDepth` resizes a depth reader of the native size alongside.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import cv2
import numpy as np

from framematrix.fingerprint import input_fingerprint

__all__ = ["ScaledDepth", "ScaledSource", "fit_size", "scaled_source"]


def fit_size(
    width: int, height: int, max_width: int | None, max_height: int | None
) -> tuple[int, int]:
    """The largest size of ``width`` x ``height``'s aspect within the limits, never larger than
    the original; even width and height (what 4:2:0 video needs) when scaled. Returns
    ``(width, height)``."""
    scale = 1.0
    if max_width is not None:
        scale = min(scale, max_width / width)
    if max_height is not None:
        scale = min(scale, max_height / height)
    if scale >= 1.0:
        return int(width), int(height)

    def even(value: float) -> int:
        return max(2, int(value / 2) * 2)

    return even(width * scale), even(height * scale)


class ScaledSource:
    """``source`` with every frame resized to ``size`` = ``(width, height)`` (area averaging).

    Frames are ``[n, height, width, 3]`` uint8 RGB; ``info`` is the source's with the new size;
    ``native`` is the wrapped source's info. Closing closes the wrapped source.
    """

    def __init__(self, source, size: tuple[int, int]) -> None:  # noqa: ANN001
        self.source = source
        self.native = source.info
        width, height = (int(v) for v in size)
        self.info = dataclasses.replace(source.info, width=width, height=height)
        inner = getattr(source, "fingerprint", None) or input_fingerprint(source.info.path)
        self.fingerprint = f"{inner}@{width}x{height}"

    def __enter__(self) -> ScaledSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()

    def __len__(self) -> int:
        return self.info.num_frames

    def _resize(self, frames: np.ndarray) -> np.ndarray:
        size = (self.info.width, self.info.height)
        out = np.empty((frames.shape[0], size[1], size[0], 3), np.uint8)
        for i, frame in enumerate(frames):
            out[i] = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start .. stop-1``, ``[n, height, width, 3]`` uint8 RGB."""
        return self._resize(self.source.read(start, stop))

    def iter_chunks(
        self, start: int = 0, stop: int | None = None, chunk: int = 32
    ) -> Iterator[tuple[int, np.ndarray]]:
        for first, frames in self.source.iter_chunks(start, stop, chunk):
            yield first, self._resize(frames)

    def frame_time(self, index: int) -> float:
        return self.source.frame_time(index)

    def __getattr__(self, name: str):  # noqa: ANN204 - anything else is the source's
        return getattr(self.source, name)


def scaled_source(source, max_width: int | None, max_height: int | None):  # noqa: ANN001, ANN201
    """``source`` itself when it fits, else a :class:`ScaledSource` of the fitting size."""
    info = source.info
    size = fit_size(info.width, info.height, max_width, max_height)
    if size == (info.width, info.height):
        return source
    return ScaledSource(source, size)


class ScaledDepth:
    """A depth reader of the native size, resized to ``size`` = ``(width, height)``.

    ``read(start, stop)`` gives ``[n, height, width]`` float32. Inverse depth and depth are
    resized with area averaging; ``disparity_scale`` multiplies the values (pixel disparities
    shrink with the width: pass ``new_width / native_width`` for ``disparity-px``, else 1).
    Unknown (NaN) pixels stay unknown: a pixel is NaN when any native pixel under it is.
    """

    def __init__(self, reader, size: tuple[int, int], disparity_scale: float = 1.0) -> None:  # noqa: ANN001
        self.reader = reader
        self.size = (int(size[0]), int(size[1]))
        self.scale = float(disparity_scale)

    def read(self, start: int, stop: int) -> np.ndarray:
        raw = np.asarray(self.reader.read(start, stop), np.float32)
        out = np.empty((raw.shape[0], self.size[1], self.size[0]), np.float32)
        for i, frame in enumerate(raw):
            out[i] = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        if self.scale != 1.0:
            out *= self.scale
        return out

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.reader, name)
