"""Player filename tags."""

from __future__ import annotations

from pathlib import Path

import pytest

from framematrix.export.formats import FORMAT_NAMES
from framematrix.export.names import NAME_TAGS, quilt_tag, tagged_name


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        ("sbs", "clip_LRF_Full_SBS.mp4"),
        ("half-sbs", "clip_LR.mp4"),
        ("tb", "clip_TBF_fulltb.mp4"),
        ("half-tb", "clip_TB.mp4"),
        ("cross", "clip_RLF_cross.mp4"),
        ("anaglyph", "clip_redcyan.mp4"),
        ("vr180", "clip_180_LR.mp4"),
        ("left", "clip.mp4"),
        ("spatial", "clip.mp4"),
    ],
)
def test_tags(fmt: str, name: str) -> None:
    assert tagged_name(Path("/videos/clip.mp4"), fmt) == Path("/videos") / name


def test_every_stereo_format_is_known_and_tags_are_not_doubled() -> None:
    assert set(FORMAT_NAMES) <= set(NAME_TAGS)
    once = tagged_name("a/b.mkv", "sbs")
    assert tagged_name(once, "sbs") == once
    assert tagged_name("frames_out", "tb") == Path("frames_out_TBF_fulltb")  # a folder


def test_quilt_tags_and_bad_input() -> None:
    assert quilt_tag(4, 2, 16 / 9) == "_qs4x2a1.778"
    assert quilt_tag(5, 9, 1.0) == "_qs5x9a1"
    with pytest.raises(ValueError, match="cols"):
        tagged_name("q.mp4", "quilt", rows=2, aspect=1.0)
    with pytest.raises(ValueError, match="unknown format"):
        tagged_name("q.mp4", "hologram")
