"""The camera rig: horizontal translations b_j of the V parallel cameras (METHOD.md 3.2)."""

from __future__ import annotations

import numpy as np
import torch

from framematrix.errors import ShapeError
from framematrix.matrix import RIG_MODES


def camera_offsets(
    mode: str, views: int, baseline: float, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Camera j's translation along x (camera-to-world), ``[V]`` in scene units (float32).

    - ``left2right``: ``linspace(0, B, V)``; the source is view 0 (left eye).
    - ``right2left``: ``linspace(0, -B, V)``; the source is view 0 (right eye).
    - ``middle2leftright``: ``linspace(-B/2, B/2, V)`` with ``b[V//2]`` then set to 0. For even
      V this overwrites a non-zero entry, exactly as the reference does, so the rig is not
      symmetric; the source is view ``V//2``.

    The rig is computed in float64 and returned as ``dtype`` (float64 keeps the reference's
    exact values for the warp).
    """
    if mode not in RIG_MODES:
        raise ShapeError(f"mode must be one of {RIG_MODES}, got {mode!r}")
    if int(views) != views or views < 2:
        raise ShapeError(f"views must be an integer >= 2, got {views!r}")
    views = int(views)
    baseline = float(baseline)
    if not baseline > 0 or baseline == float("inf"):
        raise ShapeError(f"baseline must be a finite number > 0, got {baseline!r}")
    # numpy's linspace (start + i * step), not torch's two-sided one: it is the reference's rig
    # to the last bit, which decides a few .5 roundings of the warp
    if mode == "left2right":
        offsets = np.linspace(0.0, baseline, views)
    elif mode == "right2left":
        offsets = np.linspace(0.0, -baseline, views)
    else:
        offsets = np.linspace(-baseline / 2, baseline / 2, views)
        offsets[views // 2] = 0.0
    return torch.from_numpy(offsets).to(dtype)


def source_view_index(offsets: torch.Tensor) -> int:
    """Index of the view whose offset is exactly 0 (the untouched source view)."""
    zero = torch.nonzero(torch.as_tensor(offsets) == 0).flatten()
    if zero.numel() == 0:
        raise ShapeError("offsets contain no view with offset exactly 0 (no source view)")
    return int(zero[0].item())


def end_eye_span(offsets: torch.Tensor) -> float:
    """Distance between the two outermost cameras, ``max(b) - min(b)`` in scene units.

    This is the baseline that a pixel disparity map (``depth_kind="disparity-px"``) refers to:
    a disparity d moves a pixel by d between the two end eyes, and by ``d * b_j / span`` in view j.
    """
    offsets = torch.as_tensor(offsets).to(torch.float64)
    return float((offsets.max() - offsets.min()).item())
