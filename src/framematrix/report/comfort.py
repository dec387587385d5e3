"""The comfort report: what a depth budget and convergence do to each shot (``framematrix report``).

Per shot, from its normalised inverse depth and its :class:`~framematrix.geometry.parallax.
ParallaxPlan`: the parallax percentiles in percent of the width, the share of pixels in front of
and behind the screen, the frames whose crossed parallax touches the left or right frame edge
(window violations), the hole share of each eye, and a suggested depth budget and convergence.

Depth is streamed in chunks; memory per shot is a fixed histogram (:data:`HIST_BINS` bins over
the shot's ``[d_min, d_max]``) plus a few numbers per frame, whatever the shot's length. The
shot's percentiles come from that histogram (exact to one bin, about 1e-5 of the shot's range);
min, max, shares and the per-frame figures are exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from framematrix.errors import ShapeError
from framematrix.geometry.parallax import (
    COMFORT_BEHIND_PCT,
    COMFORT_FRONT_PCT,
    WATCH_CONVERGENCE,
    ParallaxPlan,
    ShotStats,
)
from framematrix.progress import Progress

__all__ = [
    "HIST_BINS",
    "ComfortBand",
    "ShotAccumulator",
    "WindowRule",
    "comfort_report",
    "report_for_json",
    "suggest_settings",
]

HIST_BINS = 1 << 16
PLOT_BINS = 80  # bins of the per-shot histogram kept in the report (in percent of the width)
PERCENTILES = (1.0, 50.0, 99.0)


@dataclass(frozen=True)
class WindowRule:
    """When crossed parallax "touches" a frame edge (a window violation).

    edge_pct: width of the band looked at on each side, percent of the width (at least 1 px).
    threshold_pct: crossed parallax (in front of the screen) above which a pixel counts.
    min_share: a frame violates when more than this share of an edge band's known pixels count
        (0.01: one percent; single speckles do not).
    """

    edge_pct: float = 1.0
    threshold_pct: float = 0.1
    min_share: float = 0.01

    def __post_init__(self) -> None:
        if not (0 < self.edge_pct <= 50):
            raise ShapeError(f"WindowRule.edge_pct must be in (0, 50], got {self.edge_pct!r}")
        if not (self.threshold_pct >= 0 and math.isfinite(self.threshold_pct)):
            raise ShapeError(f"WindowRule.threshold_pct must be >= 0, got {self.threshold_pct!r}")
        if not (0 <= self.min_share < 1):
            raise ShapeError(f"WindowRule.min_share must be in [0, 1), got {self.min_share!r}")

    def band_px(self, width: int) -> int:
        return max(1, int(round(self.edge_pct / 100.0 * width)))


@dataclass(frozen=True)
class ComfortBand:
    """The parallax that is comfortable to watch: ``-behind_pct`` .. ``+front_pct`` % of width."""

    front_pct: float = COMFORT_FRONT_PCT
    behind_pct: float = COMFORT_BEHIND_PCT

    def __post_init__(self) -> None:
        if not (self.front_pct >= 0 and self.behind_pct >= 0):
            raise ShapeError(f"comfort band limits must be >= 0, got {self}")


def suggest_settings(
    stats: ShotStats,
    edge_d: float | None,
    depth_budget_pct: float,
    convergence: float,
    band: ComfortBand = ComfortBand(),
    rule: WindowRule = WindowRule(),
) -> dict[str, float]:
    """A depth budget and convergence for the shot that keep p1..p99 inside the comfort band and
    its edges free of window violations, as close to the requested ones as that allows.

    Args:
        stats: the shot's inverse-depth statistics.
        edge_d: the nearest inverse depth touching a frame edge over the shot (the largest
            per-frame ``1 - min_share`` quantile of the edge bands), None if unknown.
        depth_budget_pct, convergence: what was asked for (the starting point).

    The budget is at most ``front + behind``; the convergence is clipped to
    ``[1 - behind / P, front / P]`` (p99 at most ``front`` in front, p1 at most ``behind``
    behind), then lowered until the edge content is at most ``threshold_pct`` in front; if that
    pushes p1 beyond ``behind``, the budget shrinks. Flat shots keep the request.
    """
    budget = min(float(depth_budget_pct), band.front_pct + band.behind_pct)
    conv = float(convergence)
    span = stats.d_range
    if budget <= 0 or span <= 0:
        return {"depth_budget": round(float(depth_budget_pct), 3), "convergence": round(conv, 3)}
    low = max(0.0, 1.0 - band.behind_pct / budget)
    high = min(1.0, band.front_pct / budget)
    conv = min(max(conv, low), high)
    if edge_d is not None and math.isfinite(edge_d):
        window = rule.threshold_pct / budget + (stats.d_p99 - edge_d) / span
        if conv > window:
            conv = max(0.0, window)
            if conv < low and conv < 1.0:
                budget = min(budget, band.behind_pct / (1.0 - conv))
    # round towards the safe side: a little less depth, a screen a little nearer the front
    budget = math.floor(budget * 100.0 + 1e-9) / 100.0
    conv = math.floor(conv * 1000.0 + 1e-9) / 1000.0
    return {"depth_budget": budget, "convergence": conv}


def _ranges(frames: list[int]) -> list[list[int]]:
    """Sorted frame indices -> ``[[start, end), ...]`` runs."""
    runs: list[list[int]] = []
    for f in frames:
        if runs and runs[-1][1] == f:
            runs[-1][1] = f + 1
        else:
            runs.append([f, f + 1])
    return runs


class ShotAccumulator:
    """Streams one shot's depth chunks into its report entry.

    Args:
        stats: the shot's statistics (frame range, and the histogram range ``d_min..d_max``).
        plan: the shot's parallax plan (its ``width`` is the output width).
        rule: window-violation rule. band: the comfort band (for the suggestion).
        requested: ``(depth_budget, convergence)`` the suggestion starts from; default the plan's
            own settings, or for a plan without them (the paper's rig) the measured p1..p99
            range and the watching convergence.
    """

    def __init__(
        self,
        stats: ShotStats,
        plan: ParallaxPlan,
        rule: WindowRule = WindowRule(),
        band: ComfortBand = ComfortBand(),
        requested: tuple[float, float] | None = None,
    ) -> None:
        self.stats = stats
        self.plan = plan
        self.rule = rule
        self.band = band
        self.requested = requested
        self.low = float(stats.d_min)
        high = float(stats.d_max)
        self.bin_width = (high - self.low) / HIST_BINS if high > self.low else 1.0
        self.hist = np.zeros(HIST_BINS, np.int64)
        self.count = 0
        self.front = 0
        self.behind = 0
        self.d_lo = math.inf
        self.d_hi = -math.inf
        self.frame = stats.start
        self.per_frame: dict[str, list[float]] = {
            k: [] for k in ("min", "p1", "p50", "p99", "max", "edge")
        }
        self.violations: list[int] = []
        self.edge_d = -math.inf
        self.holes = np.zeros(2, np.int64)
        self.hole_pixels = 0

    def add(self, d: np.ndarray, masks: np.ndarray | None = None) -> None:
        """Add the next frames of the shot.

        d: ``[n, H, W]`` normalised inverse depth (NaN = unknown; W = the plan's width).
        masks: optional ``[2, n, H, W]`` bool known-pixel masks of the left and right eye.
        """
        d = np.asarray(d)
        if d.ndim != 3:
            raise ShapeError(f"depth chunk must be [n, H, W], got shape {d.shape}")
        n, height, width = d.shape
        if width != self.plan.width:
            raise ShapeError(f"depth chunk is {width} wide, the plan is for {self.plan.width}")
        if self.frame + n > self.stats.end:
            raise ShapeError(
                f"shot {self.stats.start}..{self.stats.end}: more depth frames than the shot has"
            )
        if masks is not None:
            masks = np.asarray(masks, dtype=bool)
            if masks.shape != (2, n, height, width):
                raise ShapeError(f"masks must be [2, n, H, W] = {(2, n, height, width)}")
            self.holes += (~masks).reshape(2, -1).sum(axis=1)
            self.hole_pixels += n * height * width
        band = self.rule.band_px(width)
        for frame in d:
            values = frame[np.isfinite(frame)].astype(np.float64, copy=False)
            sides = (frame[:, :band], frame[:, width - band :])
            edges = [side[np.isfinite(side)] for side in sides]
            self._add_frame(values, [e.astype(np.float64, copy=False) for e in edges])
        self.frame += n

    def _add_frame(self, values: np.ndarray, edges: list[np.ndarray]) -> None:
        plan = self.plan
        if values.size:
            index = np.floor((values - self.low) / self.bin_width).astype(np.int64)
            np.clip(index, 0, HIST_BINS - 1, out=index)
            self.hist += np.bincount(index, minlength=HIST_BINS)
            self.count += values.size
            if plan.scale_px > 0:
                self.front += int(np.count_nonzero(values > plan.d_c))
                self.behind += int(np.count_nonzero(values < plan.d_c))
            self.d_lo = min(self.d_lo, float(values.min()))
            self.d_hi = max(self.d_hi, float(values.max()))
            lo, p1, p50, p99, hi = np.percentile(values, [0.0, *PERCENTILES, 100.0])
            for key, v in zip(("min", "p1", "p50", "p99", "max"), (lo, p1, p50, p99, hi)):
                self.per_frame[key].append(plan.pct_of(v))
        else:
            for key in ("min", "p1", "p50", "p99", "max"):
                self.per_frame[key].append(math.nan)
        # the nearest content at the frame edges: per side, the value that more than min_share
        # of the side's band reaches; the frame violates when it is in front beyond the threshold
        quantiles = [float(np.quantile(e, 1.0 - self.rule.min_share)) for e in edges if e.size]
        index = self.stats.start + len(self.per_frame["edge"])
        if quantiles:
            edge_q = max(quantiles)
            self.edge_d = max(self.edge_d, edge_q)
            edge_pct = plan.pct_of(edge_q)
            self.per_frame["edge"].append(edge_pct)
            if edge_pct > self.rule.threshold_pct:
                self.violations.append(index)
        else:
            self.per_frame["edge"].append(math.nan)

    def _hist_percentile(self, q: float) -> float:
        """numpy's linear percentile ``q`` of all values, from the histogram (to one bin)."""
        rank = q / 100.0 * (self.count - 1)
        cum = np.cumsum(self.hist)

        def value_at(k: int) -> float:
            # the k-th smallest value (0-based): its bin, and its place among the bin's values
            b = int(np.searchsorted(cum, k, side="right"))
            before = int(cum[b - 1]) if b else 0
            inside = (k - before + 0.5) / self.hist[b]
            v = self.low + (b + inside) * self.bin_width
            return min(max(v, self.d_lo), self.d_hi)

        k0 = int(math.floor(rank))
        frac = rank - k0
        v0 = value_at(k0)
        if frac == 0 or k0 + 1 >= self.count:
            return v0
        return v0 + frac * (value_at(k0 + 1) - v0)

    def result(self) -> dict:
        """The shot's report entry (see :func:`comfort_report`)."""
        done = self.frame - self.stats.start
        if done != self.stats.frames:
            raise ShapeError(
                f"shot {self.stats.start}..{self.stats.end}: got depth for {done} of "
                f"{self.stats.frames} frames"
            )
        if self.count == 0:
            raise ShapeError(f"shot {self.stats.start}..{self.stats.end} has no known depth")
        plan = self.plan
        d_p1, d_p50, d_p99 = (self._hist_percentile(q) for q in PERCENTILES)
        pct = {
            "min": plan.pct_of(self.d_lo),
            "p1": plan.pct_of(d_p1),
            "p50": plan.pct_of(d_p50),
            "p99": plan.pct_of(d_p99),
            "max": plan.pct_of(self.d_hi),
        }
        if self.requested is not None:
            budget, conv = self.requested
        elif plan.depth_budget_pct is not None and plan.convergence is not None:
            budget, conv = plan.depth_budget_pct, plan.convergence
        else:
            budget, conv = pct["p99"] - pct["p1"], WATCH_CONVERGENCE
        edge_d = self.edge_d if math.isfinite(self.edge_d) else None
        suggested = suggest_settings(self.stats, edge_d, budget, conv, self.band, self.rule)
        hole_share = None
        if self.hole_pixels:
            shares = self.holes / self.hole_pixels
            hole_share = {"left": float(shares[0]), "right": float(shares[1])}
        return {
            "start": int(self.stats.start),
            "end": int(self.stats.end),
            "parallax_pct": pct,
            "front_share": self.front / self.count,
            "behind_share": self.behind / self.count,
            "window_violation_frames": len(self.violations),
            "window_violations": _ranges(self.violations),
            "hole_share": hole_share,
            "suggested": suggested,
            "plan": {
                "depth_budget": plan.depth_budget_pct,
                "convergence": plan.convergence,
                "scale_px": plan.scale_px,
                "d_c": plan.d_c,
            },
            "per_frame": {k: [round(v, 5) for v in vals] for k, vals in self.per_frame.items()},
            "histogram": self._plot_histogram(pct),
        }

    def _plot_histogram(self, pct: dict[str, float]) -> dict[str, list[float]]:
        """The shot's histogram rebinned to :data:`PLOT_BINS` bins in percent of the width."""
        lo, hi = pct["min"], pct["max"]
        if not hi > lo:
            return {"edges_pct": [lo, lo], "counts": [int(self.count)]}
        centres = self.low + (np.arange(HIST_BINS) + 0.5) * self.bin_width
        centres_pct = 100.0 * self.plan.scale_px * (centres - self.plan.d_c) / self.plan.width
        edges = np.linspace(lo, hi, PLOT_BINS + 1)
        counts, _ = np.histogram(np.clip(centres_pct, lo, hi), bins=edges, weights=self.hist)
        return {"edges_pct": edges.tolist(), "counts": counts.astype(np.int64).tolist()}


def _chunk_parts(chunk: object) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(chunk, tuple):
        if len(chunk) != 2:
            raise ShapeError("a depth chunk is d [n, H, W] or (d, masks [2, n, H, W])")
        return np.asarray(chunk[0]), None if chunk[1] is None else np.asarray(chunk[1])
    return np.asarray(chunk), None


def comfort_report(
    shots: Iterable[tuple[ShotStats, ParallaxPlan, Iterable[object]]],
    *,
    hole_shares: Sequence[dict[str, float] | None] | None = None,
    rule: WindowRule = WindowRule(),
    band: ComfortBand = ComfortBand(),
    requested: tuple[float, float] | None = None,
    progress: bool | Progress = False,
) -> dict:
    """The comfort report of a video, shot by shot, streaming its depth.

    Args:
        shots: per shot ``(stats, plan, chunks)``: its :class:`ShotStats`, its
            :class:`ParallaxPlan` (``plan.width`` = output width) and an iterable of depth
            chunks in frame order, each ``d [n, H, W]`` normalised inverse depth or a tuple
            ``(d, masks)`` with the eyes' known-pixel masks ``[2, n, H, W]`` bool (left, right),
            e.g. from :func:`framematrix.geometry.parallax.warp_eyes`.
        hole_shares: per shot ``{"left": x, "right": y}`` already measured (overrides masks).
        rule: what counts as a window violation. band: the comfort band.
        requested: the ``(depth_budget, convergence)`` that suggestions start from (default:
            each plan's own).
        progress: a bar over the frames.

    Returns:
        A JSON-serialisable dict: ``width``, ``comfort_band_pct`` ``{front, behind}``,
        ``window_rule``, and ``shots``, one per shot, each with ``start``, ``end`` (one past the
        last frame), ``parallax_pct`` ``{min, p1, p50, p99, max}`` (percent of the width, > 0 =
        in front of the screen), ``front_share`` / ``behind_share`` (share of known pixels with
        parallax > 0 / < 0), ``window_violation_frames`` (count) and ``window_violations``
        (``[[start, end), ...]`` frame runs), ``hole_share`` ``{left, right}`` or None,
        ``suggested`` ``{depth_budget, convergence}``, ``plan``, and for the plots
        ``per_frame`` (``min``, ``p1``, ``p50``, ``p99``, ``max``, ``edge`` per frame, in percent)
        and ``histogram`` (``edges_pct``, ``counts``). :func:`report_for_json` drops the last two.
    """
    entries = []
    width = None
    prog = Progress.of(progress)
    with prog.task("report", None) as task:
        for i, (stats, plan, chunks) in enumerate(shots):
            if width is None:
                width = plan.width
            elif plan.width != width:
                raise ShapeError(f"shot {i}: plan width {plan.width} differs from {width}")
            acc = ShotAccumulator(stats, plan, rule, band, requested)
            for chunk in chunks:
                d, masks = _chunk_parts(chunk)
                acc.add(d, masks)
                task.update(d.shape[0])
            entry = acc.result()
            if hole_shares is not None and hole_shares[i] is not None:
                entry["hole_share"] = {k: float(v) for k, v in hole_shares[i].items()}
            entries.append(entry)
    return {
        "width": width,
        "comfort_band_pct": {"front": band.front_pct, "behind": band.behind_pct},
        "window_rule": asdict(rule),
        "shots": entries,
    }


def report_for_json(report: dict, per_frame: bool = False) -> dict:
    """A copy of the report without the plot data (``per_frame``, ``histogram``) unless asked."""
    out = dict(report)
    drop = () if per_frame else ("per_frame", "histogram")
    out["shots"] = [{k: v for k, v in s.items() if k not in drop} for s in report["shots"]]
    return out
