"""Preview sheet (``framematrix preview``): one frame at a grid of depth budgets x convergences."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from framematrix.errors import ShapeError
from framematrix.export.formats import compose_stereo
from framematrix.fill.fast import fill_matrix_fast
from framematrix.geometry.parallax import (
    ShotStats,
    plan_parallax,
    shot_stats_from_depth,
    warp_eyes,
)
from framematrix.progress import Progress

__all__ = ["GAP_PX", "LABEL_HEIGHT", "PREVIEW_KINDS", "preview_sheet", "sheet_size"]

PREVIEW_KINDS = ("anaglyph", "sbs")
LABEL_HEIGHT = 22  # label bar above every thumbnail
GAP_PX = 4  # white gap between cells
_BAR = 40  # grey of the label bar
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _thumb_size(height: int, width: int, thumb_width: int) -> tuple[int, int]:
    thumb_width = min(int(thumb_width), width)
    thumb_height = max(2, int(round(height * thumb_width / width)))
    return thumb_height, thumb_width


def sheet_size(
    frame_shape: tuple[int, int],
    rows: int,
    cols: int,
    kind: str = "anaglyph",
    thumb_width: int = 384,
) -> tuple[int, int]:
    """``(height, width)`` of the sheet for a frame of ``frame_shape`` (H, W) and the grid."""
    thumb_height, thumb_w = _thumb_size(*frame_shape, thumb_width)
    cell_w = thumb_w * (2 if kind == "sbs" else 1)
    cell_h = thumb_height + LABEL_HEIGHT
    return rows * cell_h + (rows - 1) * GAP_PX, cols * cell_w + (cols - 1) * GAP_PX


def _label(width: int, budget: float, convergence: float) -> np.ndarray:
    """The label bar: ``budget 3.0 %  conv 0.33``, or ``P 3.0 C 0.33`` in a narrow cell, the
    font shrunk until it fits."""
    bar = np.full((LABEL_HEIGHT, width, 3), _BAR, np.uint8)
    texts = (
        f"budget {budget:.1f} %  conv {convergence:.2f}",
        f"P {budget:.1f} C {convergence:.2f}",
    )
    scale, text = 0.45, texts[0]
    for text in texts:
        scale = 0.45
        while scale > 0.25 and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > width - 6:
            scale -= 0.025
        if cv2.getTextSize(text, _FONT, scale, 1)[0][0] <= width - 6:
            break
    cv2.putText(bar, text, (3, LABEL_HEIGHT - 7), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return bar


def preview_sheet(
    frame: np.ndarray,
    d: np.ndarray,
    budgets: Sequence[float],
    convergences: Sequence[float],
    kind: str = "anaglyph",
    thumb_width: int = 384,
    stats: ShotStats | None = None,
    mode: str = "left2right",
    progress: bool | Progress = False,
) -> np.ndarray:
    """One frame converted at every depth budget (rows) x convergence (columns), labelled.

    Args:
        frame: ``[H, W, 3]`` uint8 RGB.
        d: ``[H, W]`` normalised inverse depth of the frame (large = near; NaN = unknown).
        budgets: depth budgets in percent of the width, one row each.
        convergences: convergences in [0, 1], one column each.
        kind: ``anaglyph`` (red-cyan, Dubois) or ``sbs`` (left | right, twice as wide).
        thumb_width: width of one eye's thumbnail (at most W). Parallax is in percent of the
            width, so a thumbnail shows the depth of the full-size output.
        stats: the shot's statistics the plans are made from (default: this frame's own), so
            the sheet matches what a convert of the shot will do.
        mode: the rig (``left2right`` or ``right2left``).

    Each cell is a 2-eye warp (:func:`~framematrix.geometry.parallax.warp_eyes`, the same
    signed disparity as ``build_frame_matrix(depth_kind="disparity-px")``) filled with the fast
    fill, composed with :func:`~framematrix.export.formats.compose_stereo`, under a label bar of
    :data:`LABEL_HEIGHT` pixels (``budget 3.0 %  conv 0.33``). Cells are :data:`GAP_PX` apart
    (white).

    Returns:
        ``[H', W', 3]`` uint8 RGB of :func:`sheet_size`.
    """
    frame = np.asarray(frame)
    d = np.asarray(d, dtype=np.float32)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ShapeError(f"frame must be [H, W, 3] uint8, got {frame.shape} {frame.dtype}")
    if d.shape != frame.shape[:2]:
        raise ShapeError(f"d must be [H, W] = {frame.shape[:2]}, got {d.shape}")
    if kind not in PREVIEW_KINDS:
        raise ShapeError(f"preview kind must be one of {PREVIEW_KINDS}, got {kind!r}")
    if not budgets or not convergences:
        raise ShapeError("the preview needs at least one budget and one convergence")
    if int(thumb_width) < 16:
        raise ShapeError(f"thumb_width must be >= 16 pixels, got {thumb_width!r}")
    if stats is None:
        stats = shot_stats_from_depth(d[None])
    thumb_h, thumb_w = _thumb_size(*frame.shape[:2], thumb_width)
    small = cv2.resize(frame, (thumb_w, thumb_h), interpolation=cv2.INTER_AREA)
    d_small = cv2.resize(d, (thumb_w, thumb_h), interpolation=cv2.INTER_LINEAR)
    height, width = sheet_size(frame.shape[:2], len(budgets), len(convergences), kind, thumb_w)
    sheet = np.full((height, width, 3), 255, np.uint8)
    cell_w = thumb_w * (2 if kind == "sbs" else 1)
    cell_h = thumb_h + LABEL_HEIGHT
    warped = 1  # view 1 is the warped eye of a 2-view rig (view 0 is the source)
    with Progress.of(progress).task("preview", len(budgets) * len(convergences), "cell") as task:
        for r, budget in enumerate(budgets):
            for c, conv in enumerate(convergences):
                plan = plan_parallax(stats, thumb_w, float(budget), float(conv))
                matrix = warp_eyes(small[None], d_small[None], plan, mode=mode)
                matrix = fill_matrix_fast(matrix, views=[warped])
                left, right = (
                    np.clip(np.rint(e.numpy() * 255.0), 0, 255).astype(np.uint8)
                    for e in matrix.eyes()
                )
                fmt = "anaglyph" if kind == "anaglyph" else "sbs"
                image = compose_stereo(left, right, fmt)[0]
                y = r * (cell_h + GAP_PX)
                x = c * (cell_w + GAP_PX)
                sheet[y : y + LABEL_HEIGHT, x : x + cell_w] = _label(
                    cell_w, float(budget), float(conv)
                )
                sheet[y + LABEL_HEIGHT : y + cell_h, x : x + cell_w] = image
                task.update(1)
    return sheet
