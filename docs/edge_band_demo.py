"""Makes docs/edge_band.png: the right eye's frame edges before / after ``edge_band``.

Run: PYTHONPATH=src python3 docs/edge_band_demo.py  (astronaut clip, frame 0, budget 3 %,
convergence 1/3, fast fill; the strips are the 48 columns at each frame edge, scaled 3x).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from framematrix.export.edges import band_from_masks, edge_band
from framematrix.fill.fast import fill_matrix_fast
from framematrix.geometry.parallax import (
    normalise_relative,
    plan_parallax,
    shot_stats_from_depth,
    warp_eyes,
)

ASSETS = Path(__file__).resolve().parents[1] / "src" / "framematrix" / "assets" / "astronaut"
STRIP, ZOOM = 48, 3


def main() -> None:
    frame = cv2.cvtColor(cv2.imread(str(ASSETS / "00000.jpg")), cv2.COLOR_BGR2RGB)[None]
    raw = cv2.imread(str(ASSETS / "depth_refined.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
    height, width = frame.shape[1:3]
    raw = raw.reshape(-1, height, width)
    d = normalise_relative(raw[:1], raw.min(), raw.max())
    plan = plan_parallax(shot_stats_from_depth(d), width, 3.0, 1 / 3)
    matrix = fill_matrix_fast(warp_eyes(frame, d, plan), views=[1])
    left, right = (np.rint(e.numpy() * 255).astype(np.uint8) for e in matrix.eyes())
    band = band_from_masks(matrix.masks[1].numpy())
    rows = []
    for name, (_, r) in (
        ("before (fast fill)", (left, right)),
        ("crop", edge_band(left, right, band, "crop")),
        ("mirror", edge_band(left, right, band, "mirror")),
    ):
        strips = [r[0, :, :STRIP], np.full((height, 4, 3), 255, np.uint8), r[0, :, -STRIP:]]
        strip = np.concatenate(strips, axis=1)
        strip = cv2.resize(strip, None, fx=ZOOM, fy=ZOOM, interpolation=cv2.INTER_NEAREST)
        label = np.full((28, strip.shape[1], 3), 255, np.uint8)
        cv2.putText(label, name, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label, strip], axis=0))
    gap = np.full((rows[0].shape[0], 12, 3), 255, np.uint8)
    sheet = np.concatenate([rows[0], gap, rows[1], gap, rows[2]], axis=1)
    title = np.full((30, sheet.shape[1], 3), 255, np.uint8)
    text = f"right eye, left | right frame edge x{ZOOM}; band {band[0]} | {band[1]} px of {width}"
    cv2.putText(title, text, (6, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    sheet = np.concatenate([title, sheet], axis=0)
    out = Path(__file__).resolve().parent / "edge_band.png"
    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(out, sheet.shape, "band", band)


if __name__ == "__main__":
    main()
