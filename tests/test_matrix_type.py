import pytest
import torch

from framematrix.matrix import FrameMatrix


def _matrix(offsets, mode):
    v = len(offsets)
    return FrameMatrix(
        images=torch.zeros(v, 2, 4, 5, 3),
        masks=torch.ones(v, 2, 4, 5, dtype=torch.bool),
        offsets=torch.tensor(offsets),
        source_view=0,
        mode=mode,
    )


def test_eye_views_follow_offsets():
    m = _matrix([0.0, 0.04, 0.08], "left2right")
    assert (m.left_view, m.right_view) == (0, 2)
    m = _matrix([0.0, -0.04, -0.08], "right2left")
    assert (m.left_view, m.right_view) == (2, 0)
    assert (m.num_views, m.num_frames, m.height, m.width) == (3, 2, 4, 5)


def test_shape_checks():
    with pytest.raises(ValueError, match="masks"):
        FrameMatrix(
            images=torch.zeros(2, 2, 4, 5, 3),
            masks=torch.ones(2, 2, 4, 4, dtype=torch.bool),
            offsets=torch.zeros(2),
            source_view=0,
            mode="left2right",
        )
    with pytest.raises(ValueError, match="mode"):
        _matrix([0.0, 1.0], "sideways")


def test_hole_fraction():
    m = _matrix([0.0, 0.08], "left2right")
    m.masks[1, :, :, :2] = False
    assert torch.allclose(m.hole_fraction(), torch.tensor([0.0, 0.4]))
