"""``framematrix convert --fill diffusion`` end to end with a tiny random zeroscope, offline."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import shared_path
from framematrix import build_frame_matrix
from framematrix.cli import main
from framematrix.fill.diffusion.tiny import make_tiny_zeroscope
from framematrix.io.depth_files import read_depth
from framematrix.io.video import read_clip


@pytest.mark.slow
def test_convert_astronaut_with_tiny_zeroscope(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    astronaut = shared_path("data", "astronaut")
    model = make_tiny_zeroscope(tmp_path / "tiny-zeroscope")
    out = tmp_path / "sbs"
    code = main(
        [
            "convert",
            str(astronaut / "images"),
            "--depth",
            str(astronaut / "depth_refined"),
            "--fill",
            "diffusion",
            "--model",
            str(model),
            "--diffusion-preset",
            "draft",
            "--steps",
            "3",
            "--seed",
            "1",
            "-o",
            str(out),
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    sbs = np.stack([cv2.imread(str(p))[..., ::-1] for p in sorted(out.glob("*.png"))])
    assert sbs.shape == (16, 320, 1152, 3)

    clip = read_clip(astronaut / "images")
    depth = read_depth(astronaut / "depth_refined", clip.frames.shape[:3])
    matrix = build_frame_matrix(clip.frames, depth, views=8)
    warp = (matrix.images[7].numpy() * 255.0 + 0.5).astype(np.uint8)
    known = matrix.masks[7].numpy()
    left, right = sbs[:, :, :576], sbs[:, :, 576:]

    np.testing.assert_array_equal(left, clip.frames)  # the source eye is untouched
    # Known pixels well inside the known area are exactly the warp (the seam is feathered).
    inner = np.stack(
        [cv2.erode(k.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) for k in known]
    )
    assert inner.mean() > 0.7
    diff = np.abs(right.astype(int) - warp.astype(int))[inner]
    assert diff.max() <= 1
    # Holes got generated content: not black, not a copy of the source, and varied.
    holes = right[~known].astype(float)
    assert holes.mean() > 5.0
    assert holes.std() > 1.0
    assert np.isfinite(holes).all()
