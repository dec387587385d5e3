"""Comfort report (``framematrix report``) and preview sheet (``framematrix preview``)."""

from __future__ import annotations

from framematrix.report.clip import normalised_shot_depth, report_for_clip
from framematrix.report.comfort import (
    ComfortBand,
    ShotAccumulator,
    WindowRule,
    comfort_report,
    report_for_json,
    suggest_settings,
)

__all__ = [
    "ComfortBand",
    "ShotAccumulator",
    "WindowRule",
    "comfort_report",
    "normalised_shot_depth",
    "report_for_clip",
    "report_for_json",
    "suggest_settings",
]
