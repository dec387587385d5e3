"""Comfort report: its figures against an independent numpy computation from the depth."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from framematrix.errors import ShapeError
from framematrix.geometry.parallax import (
    normalise_relative,
    plan_parallax,
    shot_stats_from_depth,
    warp_eyes,
)
from framematrix.report import WindowRule, comfort_report, report_for_clip, report_for_json
from framematrix.report.html import write_report_html

H, W = 48, 200


def shot_depth(frames: int, seed: int, near_at_right: tuple[int, ...] = ()) -> np.ndarray:
    """Normalised inverse depth of a shot: a sloped ground, noise, a near blob in the middle,
    and in the frames ``near_at_right`` a near object touching the right frame edge."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, H, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, W, dtype=np.float32)[None, :]
    raw = np.empty((frames, H, W), np.float32)
    for f in range(frames):
        ground = 0.3 * y + 0.05 * np.sin(6 * x + f)
        blob = 0.6 * np.exp(-(((x - 0.4 - 0.02 * f) / 0.1) ** 2 + ((y - 0.5) / 0.2) ** 2))
        raw[f] = ground + blob + 0.02 * rng.standard_normal((H, W))
        if f in near_at_right:
            raw[f, 10:40, W - 12 :] = 1.0
    return normalise_relative(raw, raw.min(), raw.max())


def texture(frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(frames, H, W, 3), dtype=np.uint8)


def chunks(d: np.ndarray, frames: np.ndarray, plan, size: int):
    for a in range(0, d.shape[0], size):
        masks = warp_eyes(frames[a : a + size], d[a : a + size], plan).masks.numpy()
        yield d[a : a + size], masks


def independent(d: np.ndarray, plan, rule: WindowRule) -> dict:
    pct = 100.0 * plan.scale_px * (d.astype(np.float64) - plan.d_c) / plan.width
    band = max(1, round(rule.edge_pct / 100 * W))
    violating = []
    for f in range(d.shape[0]):
        sides = [pct[f, :, :band], pct[f, :, -band:]]
        top = max(np.quantile(s, 1 - rule.min_share) for s in sides)
        if top > rule.threshold_pct:
            violating.append(f)
    names = ("min", "p1", "p50", "p99", "max")
    return {
        "pct": dict(zip(names, np.percentile(pct, [0, 1, 50, 99, 100]))),
        "front": float((pct > 0).mean()),
        "behind": float((pct < 0).mean()),
        "violating": violating,
    }


@pytest.fixture(scope="module")
def two_shots():
    shots = [
        (shot_depth(7, seed=1, near_at_right=(2, 3)), texture(7, 1), 0, 2.5, 0.6),
        (shot_depth(5, seed=2), texture(5, 2), 7, 4.0, 0.2),
    ]
    specs = []
    for d, frames, start, budget, conv in shots:
        stats = shot_stats_from_depth(d, start=start)
        specs.append((d, frames, stats, plan_parallax(stats, W, budget, conv)))
    rule = WindowRule()
    report = comfort_report(
        ((stats, plan, chunks(d, frames, plan, 3)) for d, frames, stats, plan in specs), rule=rule
    )
    return specs, rule, report


def test_report_figures_equal_an_independent_computation(two_shots):
    specs, rule, report = two_shots
    assert [(s["start"], s["end"]) for s in report["shots"]] == [(0, 7), (7, 12)]
    for (d, frames, stats, plan), shot in zip(specs, report["shots"]):
        ref = independent(d, plan, rule)
        for key in ("min", "max"):
            assert shot["parallax_pct"][key] == pytest.approx(ref["pct"][key], abs=1e-5)
        for key in ("p1", "p50", "p99"):  # from the streamed histogram: to a bin (1e-5)
            assert shot["parallax_pct"][key] == pytest.approx(ref["pct"][key], abs=1e-3)
        assert shot["front_share"] == pytest.approx(ref["front"], abs=1e-12)
        assert shot["behind_share"] == pytest.approx(ref["behind"], abs=1e-12)
        assert shot["window_violation_frames"] == len(ref["violating"])
        frames_listed = [f for a, b in shot["window_violations"] for f in range(a, b)]
        assert frames_listed == [stats.start + f for f in ref["violating"]]
        masks = warp_eyes(frames, d, plan).masks.numpy()
        assert shot["hole_share"]["left"] == pytest.approx(float((~masks[0]).mean()), abs=1e-12)
        assert shot["hole_share"]["right"] == pytest.approx(float((~masks[1]).mean()), abs=1e-12)
        assert shot["hole_share"]["right"] > 0.002 and shot["hole_share"]["left"] == 0.0
        # per frame figures (the timeline) are exact percentiles of each frame
        pct = 100.0 * plan.scale_px * (d.astype(np.float64) - plan.d_c) / W
        np.testing.assert_allclose(
            shot["per_frame"]["p99"], np.percentile(pct, 99, axis=(1, 2)), atol=1e-4
        )
    # the first shot's near object at the right edge (frames 2 and 3) violates the window
    assert report["shots"][0]["window_violations"] == [[2, 4]]


def test_suggestions_are_comfortable_and_free_of_window_violations(two_shots):
    specs, rule, report = two_shots
    band = report["comfort_band_pct"]
    for (d, _, stats, _), shot in zip(specs, report["shots"]):
        sug = shot["suggested"]
        assert 0 < sug["depth_budget"] <= band["front"] + band["behind"]
        plan = plan_parallax(stats, W, sug["depth_budget"], sug["convergence"])
        ref = independent(d, plan, rule)
        assert ref["violating"] == []
        assert ref["pct"]["p99"] <= band["front"] + 1e-3
        assert ref["pct"]["p1"] >= -band["behind"] - 1e-3
    # the violating shot had to bring its screen forward (a lower convergence)
    assert report["shots"][0]["suggested"]["convergence"] < 0.6


def test_report_json_and_html(two_shots, tmp_path):
    _, _, report = two_shots
    slim = report_for_json(report)
    text = json.dumps(slim)
    assert "per_frame" not in text and "histogram" not in text
    keys = {"start", "end", "parallax_pct", "front_share", "behind_share"}
    keys |= {"window_violation_frames", "hole_share", "suggested"}
    assert keys <= set(slim["shots"][0])
    json.dumps(report)  # the full report is JSON too
    page = write_report_html(report, tmp_path / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1 + len(report["shots"])  # timeline + one histogram per shot
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "<td>2</td>" in page  # the violating shot's count is in the table


def test_report_checks_the_frame_count():
    d = shot_depth(4, seed=3)
    stats = shot_stats_from_depth(d, start=0)
    plan = plan_parallax(stats, W, 3.0, 0.5)
    with pytest.raises(ShapeError, match="3 of 4 frames"):
        comfort_report([(stats, plan, [d[:3]])])


def test_report_for_clip_normalises_per_shot_and_knows_the_paper_rig():
    rng = np.random.default_rng(5)
    raw = np.concatenate([shot_depth(3, seed=6) * 50.0, shot_depth(2, seed=7) * 3.0 + 9.0])
    raw += 0.01 * rng.standard_normal(raw.shape).astype(np.float32)
    shots = [(0, 3), (3, 5)]
    report = report_for_clip(raw, shots=shots, depth_budget=3.0, convergence=0.5)
    big = report_for_clip(raw, shots=shots, depth_budget=3.0, convergence=0.5, output_width=4 * W)
    assert big["width"] == 4 * W
    for (a, b), shot, shot_big in zip(shots, report["shots"], big["shots"]):
        # METHOD 3.1 over the shot: d in [0.1, 1.1]
        d = (raw[a:b] - raw[a:b].min()) / (raw[a:b].max() - raw[a:b].min()) + 0.1
        p1, p50, p99 = np.percentile(d, [1, 50, 99])
        pct = shot["parallax_pct"]
        assert pct["p99"] - pct["p1"] == pytest.approx(3.0, abs=1e-3)
        d_c = p99 - 0.5 * (p99 - p1)  # convergence 0.5: the screen halfway
        assert pct["p50"] == pytest.approx(3.0 * (p50 - d_c) / (p99 - p1), abs=1e-3)
        assert shot["front_share"] == pytest.approx(float((d > d_c).mean()), abs=1e-3)
        # percent of the width does not depend on the output width
        assert shot_big["parallax_pct"] == pytest.approx(pct)
        assert shot_big["plan"]["scale_px"] == pytest.approx(4 * shot["plan"]["scale_px"])
    paper = report_for_clip(raw, paper=(800.0, 0.08))
    d = (raw - raw.min()) / (raw.max() - raw.min()) + 0.1
    expect_max = 100.0 * 800.0 * 0.08 * (d.max() + 1e-6) / W
    assert paper["shots"][0]["parallax_pct"]["max"] == pytest.approx(expect_max, rel=1e-5)
    assert paper["shots"][0]["behind_share"] == 0.0
