"""Strength and screen plane in percent of the output width (``--depth-budget``, ``--convergence``).

The paper sets the 3D effect with a baseline and a focal length in pixels: the parallax of a
surface is ``f b / z`` pixels, so the same settings give a weaker effect (in percent of the screen)
the larger the output, and everything sits in front of the screen (parallel rig). Viewers think
in parallax as a share of the screen width and in where the screen plane sits. This module maps
the normalised inverse depth ``d`` of a shot (METHOD.md 3.1: ``d`` in [1/far, 1 + 1/far], large =
near, ``z = 1 / (d + 1e-6)``) to a signed pixel disparity between the two eyes::

    disparity = u_left - u_right = f b (1/z - 1/z_c) = s (d - d_c)

a horizontal image translation of the parallel rig by the disparity ``s d_c`` of the screen
plane. Positive disparity is *crossed* parallax (in front of the screen), negative is uncrossed
(behind), zero is on the screen. With the rig of ``left2right`` (source = left eye = view 0, right
eye = view V-1 moved right by ``b``) the right eye sees a pixel at ``u' = u - disparity``, which is
what :func:`framematrix.build_frame_matrix` does with ``depth_kind="disparity-px"``.

For a shot with percentiles ``d_p1`` (far) .. ``d_p99`` (near) of its inverse depth:

- ``depth_budget`` P (percent of the width): ``s (d_p99 - d_p1) = P / 100 * W``, so the shot's
  content from its farthest to its nearest (1st..99th percentile) spans P % of the width at any
  resolution;
- ``convergence`` C in [0, 1]: ``d_c = d_p99 - C (d_p99 - d_p1)``. C = 0 puts the screen at the
  nearest content (everything behind it, no crossed parallax), C = 1 at the farthest (everything
  in front, like the paper's parallel rig). The parallax of the p99 content is ``+C P`` %, that
  of the p1 content ``-(1 - C) P`` %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from framematrix.errors import ShapeError
from framematrix.geometry.config import WATCH_CONVERGENCE, WATCH_DEPTH_BUDGET
from framematrix.matrix import FrameMatrix

__all__ = [
    "COMFORT_BEHIND_PCT",
    "COMFORT_FRONT_PCT",
    "WATCH_CONVERGENCE",
    "WATCH_DEPTH_BUDGET",
    "ParallaxPlan",
    "ShotStats",
    "disparity_px",
    "eye_hole_shares",
    "normalise_relative",
    "paper_plan",
    "parallax_pct",
    "plan_parallax",
    "shot_stats_from_depth",
    "warp_eyes",
]

COMFORT_FRONT_PCT = 1.0  # most crossed parallax (in front of the screen), percent of the width
COMFORT_BEHIND_PCT = 2.0  # most uncrossed parallax (behind the screen), percent of the width

# z = 1 / (d + Z_EPS) for normalised relative depth (METHOD.md 3.1)
Z_EPS = 1e-6


@dataclass(frozen=True)
class ShotStats:
    """Inverse-depth statistics of one shot, in normalised inverse depth ``d`` (large = near).

    start: first frame of the shot; end: one past its last frame (``range(start, end)``).
    d_min <= d_p1 <= d_p50 <= d_p99 <= d_max: minimum, 1st, 50th, 99th percentile and maximum
    of ``d`` over every known (finite) pixel of every frame of the shot.
    """

    start: int
    end: int
    d_min: float
    d_p1: float
    d_p50: float
    d_p99: float
    d_max: float

    def __post_init__(self) -> None:
        if int(self.start) != self.start or int(self.end) != self.end or self.end <= self.start:
            raise ShapeError(
                f"ShotStats needs integer frames start < end, got {self.start!r}..{self.end!r}"
            )
        values = (self.d_min, self.d_p1, self.d_p50, self.d_p99, self.d_max)
        if not all(math.isfinite(v) for v in values):
            raise ShapeError(f"ShotStats values must be finite, got {values}")
        if not all(a <= b for a, b in zip(values, values[1:])):
            raise ShapeError(f"ShotStats must satisfy min <= p1 <= p50 <= p99 <= max, got {values}")

    @property
    def frames(self) -> int:
        return int(self.end - self.start)

    @property
    def d_range(self) -> float:
        """``d_p99 - d_p1``: the inverse-depth range the depth budget refers to."""
        return float(self.d_p99 - self.d_p1)


def _as_numpy_depth(d: np.ndarray | torch.Tensor, name: str = "d") -> np.ndarray:
    if isinstance(d, torch.Tensor):
        d = d.detach().cpu().numpy()
    d = np.asarray(d)
    if not (np.issubdtype(d.dtype, np.floating) or np.issubdtype(d.dtype, np.integer)):
        raise ShapeError(f"{name} must be a float map, got dtype {d.dtype}")
    return d


def shot_stats_from_depth(
    d: np.ndarray | torch.Tensor, start: int = 0, end: int | None = None
) -> ShotStats:
    """Reference :class:`ShotStats` of a shot from all its depth at once.

    Args:
        d: ``[n, H, W]`` (or ``[H, W]`` for one frame) normalised inverse depth (large = near);
            NaN/inf = unknown, ignored.
        start: the shot's first frame index; end: one past its last (default ``start + n``).

    Percentiles are numpy's default (linear interpolation between order statistics). The lead's
    streaming store fills the same dataclass from histograms.
    """
    d = _as_numpy_depth(d)
    if d.ndim == 2:
        d = d[None]
    if d.ndim != 3:
        raise ShapeError(f"d must be [n, H, W] (or [H, W]), got shape {d.shape}")
    values = d[np.isfinite(d)].astype(np.float64, copy=False)
    if values.size == 0:
        raise ShapeError("d has no finite value: no statistics for this shot")
    p1, p50, p99 = np.percentile(values, [1.0, 50.0, 99.0])
    if end is None:
        end = int(start) + d.shape[0]
    return ShotStats(
        start=int(start),
        end=int(end),
        d_min=float(values.min()),
        d_p1=float(p1),
        d_p50=float(p50),
        d_p99=float(p99),
        d_max=float(values.max()),
    )


def normalise_relative(
    raw: np.ndarray,
    low: float,
    high: float,
    near: float | None = None,
    far: float | None = 10.0,
) -> np.ndarray:
    """Relative inverse depth to normalised ``d`` (METHOD.md 3.1) with the given range.

    raw: any shape, float (large = near). low, high: the range it is normalised over (the
    shot's min and max for a per-shot normalisation). Returns float32 of raw's shape:
    ``(raw - low) / (high - low)``, ``/ near`` if near > 0, ``+ 1 / far`` if far > 0. A zero
    range gives ``0 (+ 1/far)`` everywhere (a flat shot).
    """
    raw = np.asarray(raw, dtype=np.float32)
    span = float(high) - float(low)
    d = (raw - np.float32(low)) / np.float32(span) if span > 0 else np.zeros_like(raw)
    if near is not None and near > 0:
        d = d / np.float32(near)
    if far is not None and far > 0:
        d = d + np.float32(1.0 / far)
    return d.astype(np.float32, copy=False)


@dataclass(frozen=True)
class ParallaxPlan:
    """How one shot's inverse depth becomes pixel disparity: ``disparity = scale_px (d - d_c)``.

    scale_px: s >= 0, pixels of disparity per unit of normalised inverse depth (``f b`` of the
        equivalent parallel rig, in pixels).
    d_c: inverse depth of the screen plane (zero parallax).
    width: the output width in pixels the disparity refers to.
    depth_budget_pct, convergence: the settings the plan was made from (None for the paper's
        rig, :func:`paper_plan`).
    stats: the shot statistics it was made from (None for the paper's rig).
    """

    scale_px: float
    d_c: float
    width: int
    depth_budget_pct: float | None = None
    convergence: float | None = None
    stats: ShotStats | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale_px) and self.scale_px >= 0):
            raise ShapeError(f"scale_px must be finite and >= 0, got {self.scale_px!r}")
        if not math.isfinite(self.d_c):
            raise ShapeError(f"d_c must be finite, got {self.d_c!r}")
        if isinstance(self.width, bool) or int(self.width) != self.width or self.width < 1:
            raise ShapeError(f"width must be an integer >= 1 pixel, got {self.width!r}")

    def at_width(self, width: int) -> ParallaxPlan:
        """The same plan for an output ``width`` pixels wide (same parallax in percent)."""
        factor = int(width) / self.width
        return ParallaxPlan(
            self.scale_px * factor,
            self.d_c,
            int(width),
            self.depth_budget_pct,
            self.convergence,
            self.stats,
        )

    def pct_of(self, d: float) -> float:
        """Parallax in percent of the width of one inverse-depth value."""
        return 100.0 * self.scale_px * (float(d) - self.d_c) / self.width


def _check_settings(width: int, depth_budget_pct: float, convergence: float) -> None:
    if isinstance(width, bool) or int(width) != width or width < 1:
        raise ShapeError(f"width must be an integer >= 1 pixel, got {width!r}")
    if not (math.isfinite(depth_budget_pct) and depth_budget_pct >= 0):
        raise ShapeError(f"depth budget must be a percentage >= 0, got {depth_budget_pct!r}")
    if not (math.isfinite(convergence) and 0.0 <= convergence <= 1.0):
        raise ShapeError(f"convergence must be in [0, 1], got {convergence!r}")


def plan_parallax(
    stats: ShotStats,
    width: int,
    depth_budget_pct: float = WATCH_DEPTH_BUDGET,
    convergence: float = WATCH_CONVERGENCE,
) -> ParallaxPlan:
    """The plan of a shot: p1..p99 of its depth span ``depth_budget_pct`` % of ``width``.

    ``s = depth_budget_pct / 100 * width / (d_p99 - d_p1)`` and
    ``d_c = d_p99 - convergence * (d_p99 - d_p1)``. A shot whose p1 and p99 coincide (flat)
    gets no parallax (``s = 0``, screen at its median).
    """
    _check_settings(width, depth_budget_pct, convergence)
    span = stats.d_range
    if span <= 0:
        return ParallaxPlan(0.0, stats.d_p50, int(width), depth_budget_pct, convergence, stats)
    scale = depth_budget_pct / 100.0 * int(width) / span
    d_c = stats.d_p99 - convergence * span
    return ParallaxPlan(float(scale), float(d_c), int(width), depth_budget_pct, convergence, stats)


def paper_plan(width: int, focal: float = 800.0, baseline: float = 0.08) -> ParallaxPlan:
    """The paper's parallel rig as a plan: ``disparity = focal * baseline / z`` exactly.

    With ``z = 1 / (d + 1e-6)`` that is ``s = focal * baseline`` and ``d_c = -1e-6`` (the screen
    at infinity); ``width`` only serves the percentages.
    """
    if not (focal > 0 and baseline > 0):
        raise ShapeError(f"focal and baseline must be > 0, got {focal!r}, {baseline!r}")
    return ParallaxPlan(float(focal) * float(baseline), -Z_EPS, int(width))


# elements per float64 block of disparity_px (small enough to stay in the CPU cache)
_DISPARITY_BLOCK = 1 << 16


def disparity_px(
    d: np.ndarray | torch.Tensor, plan: ParallaxPlan, *, out: torch.Tensor | None = None
) -> np.ndarray | torch.Tensor:
    """Signed pixel disparity ``u_left - u_right = scale_px * (d - d_c)`` (> 0 = in front).

    d: ``[n, H, W]`` (any shape) normalised inverse depth, NaN = unknown (stays NaN).
    out: for a torch ``d``, a contiguous float32 tensor of its shape to write into (may be
        ``d`` itself).
    Returns float32 of the same shape and container (numpy, or torch on d's device).
    """
    if isinstance(d, torch.Tensor):
        if not d.dtype.is_floating_point:
            d = d.to(torch.float32)
        if out is None:
            out = torch.empty(d.shape, dtype=torch.float32, device=d.device)
        elif out.shape != d.shape or out.dtype != torch.float32 or not out.is_contiguous():
            raise ShapeError(f"out must be a contiguous float32 tensor of shape {tuple(d.shape)}")
        # float64 in small blocks: the values of (d.double() - d_c) * s, without full-size
        # float64 temporaries
        src, dst = d.reshape(-1), out.view(-1)
        scratch = torch.empty(
            min(_DISPARITY_BLOCK, src.numel()), dtype=torch.float64, device=d.device
        )
        for start in range(0, src.numel(), _DISPARITY_BLOCK):
            stop = min(start + _DISPARITY_BLOCK, src.numel())
            part = scratch[: stop - start]
            part.copy_(src[start:stop]).sub_(plan.d_c).mul_(plan.scale_px)
            dst[start:stop].copy_(part)
        return out
    d = _as_numpy_depth(d)
    out = (d.astype(np.float64, copy=False) - plan.d_c) * plan.scale_px
    return out.astype(np.float32)


def parallax_pct(d: np.ndarray | torch.Tensor, plan: ParallaxPlan) -> np.ndarray | torch.Tensor:
    """Signed parallax in percent of the output width, ``100 * disparity_px(d, plan) / width``.

    d: ``[n, H, W]`` (any shape) normalised inverse depth. Returns float32 like
    :func:`disparity_px` (> 0 = crossed, in front of the screen).
    """
    if isinstance(d, torch.Tensor):
        d64 = d.to(torch.float64)
        return ((d64 - plan.d_c) * (100.0 * plan.scale_px / plan.width)).to(torch.float32)
    d64 = _as_numpy_depth(d).astype(np.float64, copy=False)
    return ((d64 - plan.d_c) * (100.0 * plan.scale_px / plan.width)).astype(np.float32)


def _frames_to_float(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    frames_t = torch.as_tensor(frames)
    if frames_t.ndim != 4 or frames_t.shape[-1] != 3:
        raise ShapeError(f"frames must be [n, H, W, 3] RGB, got shape {tuple(frames_t.shape)}")
    if frames_t.dtype == torch.uint8:
        return frames_t.to(torch.float32).div_(255.0)
    if not frames_t.dtype.is_floating_point:
        raise ShapeError(f"frames must be uint8 or float in [0, 1], got {frames_t.dtype}")
    return frames_t.to(torch.float32)


def warp_eyes(
    frames: np.ndarray | torch.Tensor,
    d: np.ndarray | torch.Tensor,
    plan: ParallaxPlan,
    mode: str = "left2right",
    planes: int = 4,
) -> FrameMatrix:
    """The two eyes of a chunk with the plan's signed disparity (a 2-view frame matrix).

    Args:
        frames: ``[n, H, W, 3]`` uint8 RGB (or float in [0, 1]).
        d: ``[n, H, W]`` normalised inverse depth of those frames (NaN = unknown).
        plan: the shot's plan for this width (``plan.width`` must equal W).
        mode: the rig (``left2right``: source = left eye; ``right2left``: source = right eye).
        planes: depth layers of the crack clean-up.

    The warp is :func:`framematrix.geometry.warp_to_offsets` with the disparity of the plan
    between the two end eyes and ``z = 1 / (d + 1e-6)`` ordering the surfaces (nearer wins), so
    signed disparities are ordered right. A plan without parallax (``scale_px == 0``) gives
    the source in both eyes (unknown depth: holes in the warped eye). Returns a
    :class:`FrameMatrix` of 2 views (images ``[2, n, H, W, 3]`` float32, masks
    ``[2, n, H, W]``, target depth z).
    """
    from framematrix.geometry.build import warp_to_offsets
    from framematrix.geometry.cameras import camera_offsets, source_view_index

    if mode not in ("left2right", "right2left"):
        raise ShapeError(f"warp_eyes supports left2right and right2left, got {mode!r}")
    frames_f = _frames_to_float(frames)
    d_t = torch.as_tensor(_as_numpy_depth(d) if not isinstance(d, torch.Tensor) else d)
    d_t = d_t.to(torch.float32)
    if tuple(d_t.shape) != tuple(frames_f.shape[:3]):
        raise ShapeError(
            f"d must be [n, H, W] = {tuple(frames_f.shape[:3])}, got {tuple(d_t.shape)}"
        )
    if frames_f.shape[2] != plan.width:
        raise ShapeError(f"the plan is for width {plan.width}, the frames are {frames_f.shape[2]}")
    z = 1.0 / (d_t + Z_EPS)
    z = torch.where(torch.isfinite(d_t) & (z > 0), z, float("nan"))
    disparity = disparity_px(d_t, plan)
    offsets = camera_offsets(mode, 2, 1.0, dtype=torch.float64)
    if plan.scale_px == 0:  # no parallax: both eyes are the source (no clean-up redraws)
        known = torch.isfinite(z)
        return FrameMatrix(
            images=torch.stack([frames_f, frames_f * known[..., None]]),
            masks=torch.stack([torch.ones_like(known), known]),
            offsets=offsets.to(torch.float32),
            source_view=source_view_index(offsets),
            mode=mode,
            depth=torch.stack([z, torch.where(known, z, float("inf"))]),
        )
    warp = warp_to_offsets(
        frames_f, z, offsets, 1.0, planes=planes, disparity_px=disparity, disparity_baseline=1.0
    )
    return FrameMatrix(
        images=warp.images,
        masks=warp.masks,
        offsets=offsets.to(torch.float32),
        source_view=source_view_index(offsets),
        mode=mode,
        depth=warp.depth,
    )


def eye_hole_shares(matrix: FrameMatrix) -> dict[str, float]:
    """Share of hole pixels of each eye of a (2-view or larger) frame matrix, in [0, 1]."""
    holes = matrix.hole_fraction()
    return {"left": float(holes[matrix.left_view]), "right": float(holes[matrix.right_view])}
