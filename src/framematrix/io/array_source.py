"""A frame source over frames already in memory (a demo clip, frames made in Python)."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from framematrix.errors import ShapeError
from framematrix.io.source import SourceInfo


class ArraySource:
    """``frames`` ``[F, H, W, 3]`` uint8 RGB as a :class:`framematrix.io.source.FrameSource`.

    name: a path-like label used in messages and as the input's identity (with a hash of a
    sample of the frames, for caches and resume).
    """

    def __init__(
        self,
        frames: np.ndarray,
        fps: float = 24.0,
        *,
        names: list[str] | None = None,
        name: str = "<frames>",
    ) -> None:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ShapeError(
                f"frames must be [F, H, W, 3] uint8, got {frames.dtype} {frames.shape}"
            )
        self.frames = frames
        count, height, width = frames.shape[:3]
        names = names or [f"{i:05d}" for i in range(count)]
        self.info = SourceInfo(
            path=Path(name),
            kind="frames",
            num_frames=count,
            fps=float(fps),
            fps_fraction=Fraction(fps).limit_denominator(1001),
            width=width,
            height=height,
            rotation=0,
            has_audio=False,
            color={"primaries": None, "transfer": None, "matrix": None, "range": None},
            pix_fmt=None,
            bit_depth=8,
            names=names,
            duration_s=count / float(fps),
        )
        import hashlib

        digest = hashlib.sha256(str(frames.shape).encode())
        digest.update(np.ascontiguousarray(frames[:: max(1, count // 4)]).tobytes())
        self.fingerprint = digest.hexdigest()[:32]

    def __enter__(self) -> ArraySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def frame_time(self, index: int) -> float:
        return index / self.info.fps

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.frames[start:stop]

    def iter_chunks(
        self, start: int = 0, stop: int | None = None, chunk: int = 32
    ) -> Iterator[tuple[int, np.ndarray]]:
        stop = self.info.num_frames if stop is None else stop
        for a in range(start, stop, chunk):
            yield a, self.frames[a : min(stop, a + chunk)]
