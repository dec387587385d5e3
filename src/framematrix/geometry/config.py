"""Settings of the camera rig and the frame-matrix warp (METHOD.md section 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RigMode = Literal["left2right", "right2left", "middle2leftright"]
DepthKind = Literal["relative", "metric", "disparity-px"]
WarpMethod = Literal["nearest", "subpixel"]

# The watching defaults (README): a total of 3 % of the width (about 1/30, the stereographers'
# rule of thumb), one third of it in front of the screen and two thirds behind, i.e. the comfort
# band of broadcasters' guidelines: about +1 % crossed and -2 % uncrossed parallax.
WATCH_DEPTH_BUDGET = 3.0
WATCH_CONVERGENCE = 1.0 / 3.0


@dataclass
class StereoConfig:
    """Camera rig and warp settings; defaults are the paper's.

    mode: ``left2right`` (source = left eye, view 0), ``right2left`` (source = right eye,
        view 0), ``middle2leftright`` (source in the middle, view V//2).
    views: number of cameras V on the baseline, source included.
    baseline: maximum baseline B in scene units (the distance between the two end cameras).
    focal: focal length in pixels (fx = fy).
    near: if > 0, normalised disparity is divided by it; None = off.
    far: if > 0, 1/far is added to normalised disparity (10 -> d in [0.1, 1.1]).
    planes: depth layers of the crack / speckle clean-up.
    depth_kind: ``relative`` (inverse depth, large = near), ``metric`` (depth z in scene
        units), ``disparity-px`` (signed pixel disparity between the end eyes: 0 = screen
        plane, positive = in front, negative = behind).
    warp: ``nearest`` (the paper's warp: each shift rounded to the nearest pixel, hard
        z-buffer; the golden tests and the ``paper`` preset) or ``subpixel`` (bilinear 2-tap
        splat with a soft z-buffer: no crack combs at fractional disparities).
    """

    mode: RigMode = "left2right"
    views: int = 8
    baseline: float = 0.08
    focal: float = 800.0
    near: float | None = None
    far: float = 10.0
    planes: int = 4
    depth_kind: DepthKind = "relative"
    warp: WarpMethod = "nearest"
    # Strength and screen plane, resolution independent (None = the paper's baseline/focal rig):
    # parallax range p1..p99 of each shot in percent of the width, and where the screen sits in
    # it (0 = at the nearest content, 1 = at the farthest). See framematrix.geometry.parallax.
    depth_budget: float | None = None
    convergence: float = 1.0 / 3.0
