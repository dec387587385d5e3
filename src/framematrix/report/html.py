"""The comfort report as one self-contained HTML page with PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import base64
import html
import io
import math
import os
from pathlib import Path

import numpy as np

from framematrix.errors import ShapeError
from framematrix.io.atomic import atomic_path

__all__ = ["MAX_SHOT_HISTOGRAMS", "render_plots", "write_report_html"]

MAX_SHOT_HISTOGRAMS = 60  # a long video's page stays small: further shots are in the table only
MAX_TIMELINE_POINTS = 4000  # the timeline is binned beyond this many frames


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    _pyplot().close(fig)
    return buffer.getvalue()


def _binned(x: np.ndarray, y: np.ndarray, how: str, points: int) -> tuple[np.ndarray, np.ndarray]:
    if x.size <= points:
        return x, y
    edges = np.linspace(0, x.size, points + 1).astype(int)
    reduce = {"min": np.nanmin, "max": np.nanmax, "mean": np.nanmean}[how]
    xs = np.array([x[a:b].mean() for a, b in zip(edges, edges[1:])])
    with np.errstate(all="ignore"):
        ys = np.array(
            [
                reduce(y[a:b]) if np.isfinite(y[a:b]).any() else np.nan
                for a, b in zip(edges, edges[1:])
            ]
        )
    return xs, ys


def _timeline(report: dict) -> bytes:
    plt = _pyplot()
    band = report["comfort_band_pct"]
    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.axhspan(-band["behind"], band["front"], color="#2ca02c", alpha=0.12, label="comfort band")
    ax.axhline(0.0, color="#555", linewidth=0.8)
    keys = ("min", "p1", "p50", "p99", "max", "edge")
    series: dict[str, list[np.ndarray]] = {k: [] for k in ("x", *keys)}
    for shot in report["shots"]:
        per = shot["per_frame"]
        series["x"].append(np.arange(shot["start"], shot["end"], dtype=np.float64))
        for key in keys:
            series[key].append(np.asarray(per[key], dtype=np.float64))
        for a, b in shot["window_violations"]:
            ax.axvspan(a - 0.5, b - 0.5, color="#d62728", alpha=0.12, linewidth=0)
        if shot["start"] > report["shots"][0]["start"]:
            ax.axvline(shot["start"] - 0.5, color="#999", linewidth=0.8, linestyle=":")
    x = np.concatenate(series["x"])
    how = {"min": "min", "p1": "min", "p50": "mean", "p99": "max", "max": "max", "edge": "max"}
    ys = {}
    for key in how:
        xb, ys[key] = _binned(x, np.concatenate(series[key]), how[key], MAX_TIMELINE_POINTS)
    ax.fill_between(xb, ys["p1"], ys["p99"], color="#1f77b4", alpha=0.35, label="p1..p99")
    ax.plot(xb, ys["p50"], color="#1f77b4", linewidth=1.2, label="median")
    ax.plot(xb, ys["max"], color="#9467bd", linewidth=0.7, linestyle="--", label="max / min")
    ax.plot(xb, ys["min"], color="#9467bd", linewidth=0.7, linestyle="--")
    ax.plot(xb, ys["edge"], color="#d62728", linewidth=1.0, label="nearest at the side edges")
    ax.plot([], [], color="#d62728", alpha=0.3, linewidth=6, label="window violation")
    ax.set_xlabel("frame")
    ax.set_ylabel("parallax, % of width (+ = in front)")
    ax.set_title("Parallax over time")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _shot_histogram(report: dict, index: int) -> bytes:
    plt = _pyplot()
    shot = report["shots"][index]
    band = report["comfort_band_pct"]
    hist = shot["histogram"]
    edges = np.asarray(hist["edges_pct"], dtype=np.float64)
    counts = np.asarray(hist["counts"], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(4.6, 2.4))
    ax.axvspan(-band["behind"], band["front"], color="#2ca02c", alpha=0.12)
    share = counts / max(counts.sum(), 1.0)
    if edges.size > 2:
        ax.bar(edges[:-1], share, width=np.diff(edges), align="edge", color="#1f77b4")
    else:
        ax.bar([edges[0]], share, width=0.02, color="#1f77b4")
    ax.axvline(0.0, color="#555", linewidth=0.8)
    pct = shot["parallax_pct"]
    for key in ("p1", "p99"):
        ax.axvline(pct[key], color="#ff7f0e", linewidth=0.8, linestyle="--")
    ax.set_title(f"shot {index}: frames {shot['start']}..{shot['end'] - 1}", fontsize=9)
    ax.set_xlabel("parallax, % of width", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig)


def render_plots(report: dict) -> dict[str, bytes]:
    """PNG plots of a :func:`~framematrix.report.comfort_report` (with its plot data).

    Returns ``{"timeline": png, "shot_0": png, ...}``: the parallax over time with the comfort
    band, and a histogram per shot (the first :data:`MAX_SHOT_HISTOGRAMS` shots).
    """
    if not report.get("shots"):
        raise ShapeError("the report has no shot")
    if "per_frame" not in report["shots"][0]:
        raise ShapeError("the report has no plot data (made by report_for_json?)")
    plots = {"timeline": _timeline(report)}
    for i in range(min(len(report["shots"]), MAX_SHOT_HISTOGRAMS)):
        plots[f"shot_{i}"] = _shot_histogram(report, i)
    return plots


def _fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_report_html(
    report: dict,
    path: str | os.PathLike[str],
    plots: dict[str, bytes] | None = None,
    title: str = "framematrix comfort report",
) -> Path:
    """Write the report as one self-contained HTML page (plots embedded as base64 PNG).

    report: from :func:`~framematrix.report.comfort_report`. plots: from :func:`render_plots`
    (made here if None). The file is written atomically. Returns the path.
    """
    if plots is None:
        plots = render_plots(report)
    band = report["comfort_band_pct"]
    rule = report["window_rule"]
    rows = []
    for i, shot in enumerate(report["shots"]):
        pct = shot["parallax_pct"]
        holes = shot["hole_share"]
        hole_text = (
            "–" if holes is None else f"{100 * holes['left']:.1f} / {100 * holes['right']:.1f}"
        )
        sug = shot["suggested"]
        plan = shot["plan"]
        outside = pct["p99"] > band["front"] + 1e-9 or pct["p1"] < -band["behind"] - 1e-9
        cls = ' class="warn"' if outside or shot["window_violation_frames"] else ""
        rows.append(
            f"<tr{cls}><td>{i}</td><td>{shot['start']}</td><td>{shot['end'] - 1}</td>"
            f"<td>{_fmt(plan['depth_budget'])}</td><td>{_fmt(plan['convergence'])}</td>"
            + "".join(f"<td>{_fmt(pct[k])}</td>" for k in ("min", "p1", "p50", "p99", "max"))
            + f"<td>{100 * shot['front_share']:.1f}</td><td>{100 * shot['behind_share']:.1f}</td>"
            f"<td>{shot['window_violation_frames']}</td><td>{hole_text}</td>"
            f"<td>{_fmt(sug['depth_budget'])}</td><td>{_fmt(sug['convergence'], 3)}</td></tr>"
        )
    hists = "".join(
        _img(plots[f"shot_{i}"], f"histogram of shot {i}")
        for i in range(len(report["shots"]))
        if f"shot_{i}" in plots
    )
    more = len(report["shots"]) - sum(1 for k in plots if k.startswith("shot_"))
    more_text = f"<p>{more} further shots are in the table only.</p>" if more > 0 else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: right; }}
th {{ background: #f3f3f3; }}
tr.warn td {{ background: #fff1e6; }}
img {{ margin: 4px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Output width {report["width"]} px. Parallax is in percent of the output width, positive =
in front of the screen (crossed), negative = behind. Comfort band: {band["front"]:g} % in front
to {band["behind"]:g} % behind. A window violation is a frame where more than
{100 * rule["min_share"]:g} % of the {rule["edge_pct"]:g} %-wide band at the left or right frame
edge is more than {rule["threshold_pct"]:g} % in front of the screen.</p>
{_img(plots["timeline"], "parallax over time")}
<h2>Shots</h2>
<table>
<tr><th>shot</th><th>first</th><th>last</th><th>budget %</th><th>conv.</th>
<th>min %</th><th>p1 %</th><th>p50 %</th><th>p99 %</th><th>max %</th>
<th>in front %</th><th>behind %</th><th>window viol. frames</th><th>holes L / R %</th>
<th>suggested budget %</th><th>suggested conv.</th></tr>
{"".join(rows)}
</table>
<h2>Parallax histograms per shot</h2>
<p>Green: comfort band; dashed: p1 and p99.</p>
{hists}
{more_text}
</body></html>
"""
    final = Path(path)
    with atomic_path(final) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return final
