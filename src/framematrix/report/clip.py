"""The comfort report of a clip held in memory (``framematrix report`` before the depth store).

The streaming pipeline feeds :func:`~framematrix.report.comfort_report` from its depth store;
this helper does the same for a clip whose depth is an array: it normalises relative depth per
shot (METHOD.md 3.1 over the shot), makes each shot's statistics and plan, and, given the frames,
warps the two eyes chunk by chunk for their hole shares.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from framematrix.errors import InputError, ShapeError
from framematrix.geometry.parallax import (
    WATCH_CONVERGENCE,
    WATCH_DEPTH_BUDGET,
    ParallaxPlan,
    ShotStats,
    normalise_relative,
    paper_plan,
    plan_parallax,
    shot_stats_from_depth,
    warp_eyes,
)
from framematrix.progress import Progress
from framematrix.report.comfort import ComfortBand, WindowRule, comfort_report

__all__ = ["normalised_shot_depth", "report_for_clip"]


def normalised_shot_depth(
    depth: np.ndarray,
    kind: str = "relative",
    near: float | None = None,
    far: float | None = 10.0,
) -> np.ndarray:
    """One shot's depth ``[n, H, W]`` as normalised inverse depth ``d`` (float32, NaN unknown).

    ``relative`` (large = near) is normalised over the shot's finite values; ``metric`` depth z
    becomes ``d = 1 / z`` (so ``z = 1 / d`` as the warp sees it, up to the 1e-6 of METHOD 3.1).
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 3:
        raise ShapeError(f"depth must be [n, H, W], got shape {depth.shape}")
    finite = np.isfinite(depth)
    if not finite.any():
        raise InputError("depth has no finite value in this shot")
    if kind == "relative":
        values = depth[finite]
        d = normalise_relative(depth, float(values.min()), float(values.max()), near, far)
    elif kind == "metric":
        if (depth[finite] <= 0).any():
            raise InputError("metric depth must be > 0 everywhere it is finite")
        with np.errstate(divide="ignore", invalid="ignore"):
            d = (1.0 / depth).astype(np.float32)
    else:
        raise ShapeError(f"the report needs relative or metric depth, got {kind!r}")
    return np.where(finite, d, np.float32("nan")).astype(np.float32)


def report_for_clip(
    depth: np.ndarray,
    *,
    frames: np.ndarray | None = None,
    shots: Sequence[tuple[int, int]] | None = None,
    kind: str = "relative",
    near: float | None = None,
    far: float | None = 10.0,
    depth_budget: float = WATCH_DEPTH_BUDGET,
    convergence: float = WATCH_CONVERGENCE,
    paper: tuple[float, float] | None = None,
    output_width: int | None = None,
    chunk_frames: int = 16,
    rule: WindowRule | None = None,
    band: ComfortBand | None = None,
    progress: bool | Progress = False,
) -> dict:
    """The comfort report of a clip.

    Args:
        depth: ``[F, H, W]`` depth of ``kind`` (``relative`` inverse depth or ``metric`` z).
        frames: ``[F, H, W, 3]`` uint8 RGB; if given, each eye's hole share is measured with a
            2-view warp (:func:`~framematrix.geometry.parallax.warp_eyes`), else it is None.
        shots: ``[(start, end), ...]`` frame ranges covering the clip (default: one shot).
        near, far: normalisation of relative depth (per shot).
        depth_budget, convergence: the settings reported on (ignored with ``paper``).
        paper: ``(focal, baseline)`` to report on the paper's parallel rig instead.
        output_width: the width of the output (default W); figures in percent do not depend on
            it, only the ``width`` field does.
        chunk_frames: frames warped at a time.
        rule, band: window-violation rule and comfort band (defaults of :class:`WindowRule`,
            :class:`ComfortBand`).

    Returns the dict of :func:`~framematrix.report.comfort_report` plus ``settings``; each
    shot's ``plan.scale_px`` is given for ``output_width``.
    """
    depth = np.asarray(depth)
    if depth.ndim != 3:
        raise ShapeError(f"depth must be [F, H, W], got shape {depth.shape}")
    count, height, width = depth.shape
    if frames is not None and np.asarray(frames).shape[:3] != depth.shape:
        raise ShapeError(f"frames must be [F, H, W, 3] with [F, H, W] = {depth.shape}")
    if shots is None:
        shots = [(0, count)]
    if sorted(shots) != list(shots) or shots[0][0] != 0 or shots[-1][1] != count:
        raise ShapeError(f"shots must cover frames 0..{count} in order, got {list(shots)}")
    if any(a >= b for a, b in shots) or any(b != c for (_, b), (c, _) in zip(shots, shots[1:])):
        raise ShapeError(f"shots must be consecutive non-empty ranges, got {list(shots)}")
    out_width = int(output_width or width)

    def specs() -> Iterator[tuple[ShotStats, ParallaxPlan, Iterator[object]]]:
        for start, end in shots:
            d = normalised_shot_depth(depth[start:end], kind, near, far)
            stats = shot_stats_from_depth(d, start=start)
            if paper is not None:
                plan = paper_plan(out_width, *paper)
            else:
                plan = plan_parallax(stats, out_width, depth_budget, convergence)
            yield stats, plan.at_width(width), chunks(d, start, plan.at_width(width))

    def chunks(d: np.ndarray, start: int, plan: ParallaxPlan) -> Iterator[object]:
        for a in range(0, d.shape[0], chunk_frames):
            part = d[a : a + chunk_frames]
            if frames is None:
                yield part
            else:
                rgb = np.asarray(frames[start + a : start + a + part.shape[0]])
                yield part, warp_eyes(rgb, part, plan).masks.numpy()

    report = comfort_report(
        specs(), rule=rule or WindowRule(), band=band or ComfortBand(), progress=progress
    )
    report["width"] = out_width
    for shot in report["shots"]:
        shot["plan"]["scale_px"] *= out_width / width
    if paper is not None:
        report["settings"] = {"paper": {"focal": paper[0], "baseline": paper[1]}}
    else:
        report["settings"] = {"depth_budget": depth_budget, "convergence": convergence}
    return report
