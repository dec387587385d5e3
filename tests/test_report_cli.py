"""`framematrix report` end to end: its JSON against a numpy computation from the given depth.

The depth of each shot is normalised over the shot (METHOD.md 3.1: d in [0.1, 1.1]), the plan
of a depth budget P and convergence C puts the screen at d_c = p99 - C (p99 - p1) with
P % of the width between p1 and p99. The hole share is that of the far eye warped (METHOD.md 3,
with its crack clean-up) by the disparity computed here; shot 0 is also checked by hand.
The shot statistics come from a 4096-bin histogram of a subsample, hence the tolerances.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from framematrix.cli import main
from framematrix.depth.provider import _HIST_STRIDE
from framematrix.geometry.build import build_frame_matrix

H, W, F, CUT = 40, 160, 10, 6
BUDGET, CONV = 5.0, 1 / 3


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    frames = root / "frames"
    frames.mkdir()
    rng = np.random.default_rng(3)
    for i in range(F):
        image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        cv2.imwrite(str(frames / f"{i:05d}.png"), image)
    raw = np.empty((F, H, W), np.float32)
    raw[:CUT] = 1.0  # shot 0: far left half, near right half (touches the right edge)
    raw[:CUT, :, W // 2 :] = 5.0
    raw[CUT:] = np.linspace(10.0, 30.0, W, dtype=np.float32)  # shot 1: a ramp, near at right
    np.save(root / "depth.npy", raw)
    (root / "cuts.txt").write_text(f"{CUT}\n")
    return root, raw


def independent(raw: np.ndarray) -> dict:
    d = (raw - raw.min()) / (raw.max() - raw.min()) + 0.1
    # the shot statistics: percentiles of every S-th pixel (S = _HIST_STRIDE), lowest value
    # whose share reaches q (to a 4096th of the range)
    sample = d[:, ::_HIST_STRIDE, ::_HIST_STRIDE]
    p1, p99 = np.percentile(sample, [1, 99], method="inverted_cdf")
    scale = BUDGET / 100.0 * W / (p99 - p1)
    d_c = p99 - CONV * (p99 - p1)
    disp = scale * (d.astype(np.float64) - d_c)  # u_left - u_right, > 0 = in front
    pct = 100.0 * disp / W
    eyes = build_frame_matrix(
        np.zeros((*d.shape, 3), np.uint8),
        torch.from_numpy(disp.astype(np.float32)),
        mode="left2right",
        views=2,
        depth_kind="disparity-px",
        warp="nearest",
    )
    known = eyes.masks.numpy()
    band = max(1, round(0.01 * W))
    edges = np.concatenate([pct[:, :, :band], pct[:, :, -band:]], axis=2).reshape(len(d), -1)
    return {
        "pct": dict(
            zip(("min", "p1", "p50", "p99", "max"), np.percentile(pct, [0, 1, 50, 99, 100]))
        ),
        "front": float((pct > 0).mean()),
        "behind": float((pct < 0).mean()),
        "holes": [float((~known[0]).mean()), float((~known[1]).mean())],
        "violations": int((np.quantile(edges, 0.99, axis=1) > 0.1).sum()),
    }


def test_report_json_equals_an_independent_computation(scene, tmp_path, capsys):
    root, raw = scene
    argv = ["report", str(root / "frames"), "--depth", str(root / "depth.npy"), "--json", "-q"]
    argv += ["--shots", str(root / "cuts.txt"), "--depth-budget", str(BUDGET)]
    argv += ["--convergence", str(CONV), "--warp", "nearest"]
    html = tmp_path / "report.html"
    assert main([*argv, "-o", str(html)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert html.is_file() and b"<img" in html.read_bytes()
    shots = report["shots"]
    assert [(s["start"], s["end"]) for s in shots] == [(0, CUT), (CUT, F)]
    for (a, b), shot in zip([(0, CUT), (CUT, F)], shots):
        ref = independent(raw[a:b])
        for key in ("min", "max"):
            assert shot["parallax_pct"][key] == pytest.approx(ref["pct"][key], abs=2e-3)
        for key in ("p1", "p50", "p99"):
            assert shot["parallax_pct"][key] == pytest.approx(ref["pct"][key], abs=2e-3)
        assert shot["front_share"] == pytest.approx(ref["front"], abs=1e-9)
        assert shot["behind_share"] == pytest.approx(ref["behind"], abs=1e-9)
        assert shot["window_violation_frames"] == ref["violations"]
        # the hole share of each eye as convert warps it: the source eye has none
        assert shot["hole_share"]["left"] == ref["holes"][0] == 0.0
        assert shot["hole_share"]["right"] == pytest.approx(ref["holes"][1], abs=1e-3)
        assert shot["hole_share"]["right"] > 0.01
    # shot 0 by hand: the far half moves 5 px right, the near half 3 px left (8 px = 5 % of
    # 160); the crack clean-up covers the one column next to known pixels on each side
    assert shots[0]["hole_share"]["right"] == pytest.approx((5 - 1 + 3 - 1) / W)
    assert shots[0]["window_violation_frames"] == CUT  # the near half touches the right edge
