"""Preview sheet: the grid's size, the labels, and cells that follow the settings."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framematrix.errors import ShapeError
from framematrix.export.formats import compose_stereo
from framematrix.report.preview import GAP_PX, LABEL_HEIGHT, preview_sheet, sheet_size

H, W, THUMB = 90, 160, 80


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(H // 4, W // 4, 3)).astype(np.uint8)
    frame = cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST)
    d = np.full((H, W), 0.1, np.float32)
    d[20:70, 50:110] = 1.1
    return frame, d


def cell(sheet: np.ndarray, r: int, c: int, cell_w: int, thumb_h: int):
    y = r * (thumb_h + LABEL_HEIGHT + GAP_PX)
    x = c * (cell_w + GAP_PX)
    label = sheet[y : y + LABEL_HEIGHT, x : x + cell_w]
    image = sheet[y + LABEL_HEIGHT : y + LABEL_HEIGHT + thumb_h, x : x + cell_w]
    return label, image


@pytest.mark.parametrize("kind", ["anaglyph", "sbs"])
def test_sheet_size_labels_and_cells(scene, kind):
    frame, d = scene
    budgets, convergences = [0.0, 2.0, 6.0], [0.0, 1.0]
    sheet = preview_sheet(frame, d, budgets, convergences, kind=kind, thumb_width=THUMB)
    thumb_h = round(H * THUMB / W)
    cell_w = THUMB * (2 if kind == "sbs" else 1)
    expect = (3 * (thumb_h + LABEL_HEIGHT) + 2 * GAP_PX, 2 * cell_w + GAP_PX)
    assert sheet.shape == (*expect, 3) and sheet.dtype == np.uint8
    assert sheet_size((H, W), 3, 2, kind, THUMB) == expect
    small = cv2.resize(frame, (THUMB, thumb_h), interpolation=cv2.INTER_AREA)
    fmt = "anaglyph" if kind == "anaglyph" else "sbs"
    flat = compose_stereo(small[None], small[None], fmt)[0]  # no parallax at all
    labels = {}
    for r in range(3):
        for c in range(2):
            label, image = cell(sheet, r, c, cell_w, thumb_h)
            # a label is drawn: white text on the dark bar, different for every cell
            assert (label > 200).any() and (label < 60).mean() > 0.5
            labels[r, c] = label
            # a zero budget shows the frame with itself; a budget shows parallax
            changed = (image != flat).any(axis=2).mean()
            if budgets[r] == 0.0:
                np.testing.assert_array_equal(image, flat)
            else:
                assert changed > 0.05
    assert len({labels[k].tobytes() for k in labels}) == 6
    # the cells follow the settings: a larger budget, another convergence
    _, a = cell(sheet, 1, 0, cell_w, thumb_h)
    _, b = cell(sheet, 2, 0, cell_w, thumb_h)
    _, c = cell(sheet, 1, 1, cell_w, thumb_h)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)


def test_preview_rejects_bad_input(scene):
    frame, d = scene
    with pytest.raises(ShapeError):
        preview_sheet(frame, d[:10], [3.0], [0.5])
    with pytest.raises(ShapeError):
        preview_sheet(frame, d, [3.0], [0.5], kind="quilt")
    with pytest.raises(ShapeError):
        preview_sheet(frame, d, [3.0], [1.5])
