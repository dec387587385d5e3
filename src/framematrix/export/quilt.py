"""Looking Glass quilts: the views of a multi-view video tiled into one image per frame.

Looking Glass displays take a "quilt": ``cols`` x ``rows`` tiles, one view per tile, with view 0
the leftmost camera in the bottom-left tile, views running left to right along a row and rows
from the bottom to the top (the last view, the rightmost camera, at the top right when the quilt
is full). The player needs the layout and the aspect of one view, which the file name carries
(``_qs{cols}x{rows}a{aspect}``, framematrix.export.names.quilt_tag).

Views must be given leftmost camera first. A FrameMatrix's views are ordered by their camera
offsets only for left2right; pass ``order=np.argsort(offsets)`` otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from framematrix.errors import ShapeError

__all__ = ["quilt", "quilt_layout", "quilt_video", "tile_of_view"]

# Looking Glass's own layouts, used when the view count matches one exactly.
_KNOWN_LAYOUTS = {48: (8, 6), 45: (5, 9), 32: (4, 8), 66: (11, 6), 40: (5, 8)}


def quilt_layout(views: int, width: int, height: int) -> tuple[int, int]:
    """(cols, rows) for ``views`` views of ``width`` x ``height``.

    A layout Looking Glass ships when the count is one of theirs (48: 8x6, 45: 5x9, 32: 4x8,
    66: 11x6, 40: 5x8); otherwise the fewest empty tiles, then the quilt closest to square
    (|log(cols W / rows H)| smallest; displays load square quilt textures), then more columns.
    """
    if views < 1 or width < 1 or height < 1:
        raise ValueError(f"need at least one view of positive size, got {views} {width}x{height}")
    if views in _KNOWN_LAYOUTS:
        return _KNOWN_LAYOUTS[views]
    best: tuple[float, float, int, int, int] | None = None
    for cols in range(1, views + 1):
        rows = math.ceil(views / cols)
        key = (cols * rows - views, abs(math.log(cols * width / (rows * height))), -cols)
        if best is None or key < best[:3]:
            best = (*key, cols, rows)
    assert best is not None
    return best[3], best[4]


def tile_of_view(index: int, cols: int, rows: int) -> tuple[int, int]:
    """(tile row from the top, tile column) of view ``index``: bottom-left first, rows upward."""
    if not 0 <= index < cols * rows:
        raise ValueError(f"view {index} does not fit a {cols}x{rows} quilt")
    return rows - 1 - index // cols, index % cols


def quilt_video(
    views: np.ndarray,
    cols: int | None = None,
    rows: int | None = None,
    order: np.ndarray | list[int] | None = None,
) -> np.ndarray:
    """Tile ``[V, F, H, W, 3]`` views (leftmost camera first, or as ``order`` lists them) into
    ``[F, rows*H, cols*W, 3]`` quilts of the same dtype; empty tiles are black. cols/rows default
    to :func:`quilt_layout`."""
    views = np.asarray(views)
    if views.ndim != 5 or views.shape[-1] != 3:
        raise ShapeError(f"views must be [V, F, H, W, 3], got shape {views.shape}")
    count, frames, height, width = views.shape[:4]
    if order is not None:
        order = np.asarray(order)
        if sorted(order.tolist()) != list(range(count)):
            raise ValueError(f"order must be a permutation of 0..{count - 1}")
        views = views[order]
    if cols is None or rows is None:
        auto = quilt_layout(count, width, height)
        cols = cols if cols is not None else (auto[0] if rows is None else math.ceil(count / rows))
        rows = rows if rows is not None else math.ceil(count / cols)
    if cols * rows < count:
        raise ValueError(f"{count} views do not fit a {cols}x{rows} quilt")
    out = np.zeros((frames, rows * height, cols * width, 3), dtype=views.dtype)
    for index in range(count):
        r, c = tile_of_view(index, cols, rows)
        out[:, r * height : (r + 1) * height, c * width : (c + 1) * width] = views[index]
    return out


def quilt(
    views: np.ndarray,
    cols: int | None = None,
    rows: int | None = None,
    order: np.ndarray | list[int] | None = None,
) -> np.ndarray:
    """One quilt image from ``[V, H, W, 3]`` views: ``[rows*H, cols*W, 3]`` (see quilt_video)."""
    views = np.asarray(views)
    if views.ndim != 4 or views.shape[-1] != 3:
        raise ShapeError(f"views must be [V, H, W, 3], got shape {views.shape}")
    return quilt_video(views[:, None], cols, rows, order)[0]
