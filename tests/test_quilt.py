"""Looking Glass quilts: tile order (bottom-left first, rows upward) and layout choice."""

from __future__ import annotations

import numpy as np
import pytest

from framematrix.errors import ShapeError
from framematrix.export.names import tagged_name
from framematrix.export.quilt import quilt, quilt_layout, quilt_video, tile_of_view


def _numbered_views(count: int, height: int = 4, width: int = 6) -> np.ndarray:
    """[V, H, W, 3] uint8, view i filled with the value i + 1 (0 stays for empty tiles)."""
    return np.stack([np.full((height, width, 3), i + 1, np.uint8) for i in range(count)])


def _tile_values(image: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """[rows, cols] value of each tile, rows listed from the top of the image."""
    height, width = image.shape[0] // rows, image.shape[1] // cols
    return image[height // 2 :: height, width // 2 :: width, 0]


def test_view_zero_is_bottom_left_and_rows_go_up() -> None:
    image = quilt(_numbered_views(6), cols=3, rows=2)
    assert image.shape == (8, 18, 3)
    # Top row holds views 3, 4, 5; bottom row views 0, 1, 2 (values are view + 1).
    np.testing.assert_array_equal(_tile_values(image, 3, 2), [[4, 5, 6], [1, 2, 3]])
    assert tile_of_view(0, 3, 2) == (1, 0) and tile_of_view(5, 3, 2) == (0, 2)


def test_partial_quilt_leaves_the_top_right_black_and_order_reorders() -> None:
    image = quilt(_numbered_views(5), cols=3, rows=2)
    np.testing.assert_array_equal(_tile_values(image, 3, 2), [[4, 5, 0], [1, 2, 3]])
    # Views given right-to-left (e.g. right2left offsets): order puts the leftmost first.
    reordered = quilt(_numbered_views(5)[::-1], cols=3, rows=2, order=[4, 3, 2, 1, 0])
    np.testing.assert_array_equal(reordered, image)


def test_quilt_video_keeps_frames_and_dtype() -> None:
    views = np.random.default_rng(0).random((4, 3, 5, 7, 3)).astype(np.float32)
    out = quilt_video(views, cols=2, rows=2)
    assert out.shape == (3, 10, 14, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 5:, :7], views[0])  # bottom-left
    np.testing.assert_array_equal(out[:, :5, 7:], views[3])  # top-right
    with pytest.raises(ShapeError):
        quilt_video(views[0])
    with pytest.raises(ValueError, match="do not fit"):
        quilt_video(views, cols=1, rows=3)


def test_layout_choice() -> None:
    assert quilt_layout(48, 480, 640) == (8, 6)  # Looking Glass Portrait's quilt
    assert quilt_layout(8, 1280, 720) == (2, 4)  # no empty tile, closest to square
    assert quilt_layout(9, 100, 100) == (3, 3)
    cols, rows = quilt_layout(7, 100, 100)
    assert cols * rows >= 7 and cols * rows - 7 == min(c * -(-7 // c) - 7 for c in range(1, 8))
    image = quilt(_numbered_views(8, 9, 16))
    assert image.shape == (4 * 9, 2 * 16, 3)


def test_quilt_name_tag() -> None:
    cols, rows = quilt_layout(48, 480, 640)
    path = tagged_name("out/holo.mp4", "quilt", cols=cols, rows=rows, aspect=480 / 640)
    assert path.as_posix() == "out/holo_qs8x6a0.75.mp4"
