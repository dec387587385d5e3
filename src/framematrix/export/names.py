"""Player filename tags (``--name-tags``): the suffixes VR and 3D players read to pick the layout.

Players decide how to show a file from its name: ``clip_LRF_Full_SBS.mp4`` opens as full
side-by-side 3D, ``clip_180_LR.mp4`` as stereo VR180. The tags follow what players document and
what iw3 writes (its README reports ``_LRF_Full_SBS`` working in Pigasus, which wants ``LRF``,
SKYBOX, which wants ``Full_SBS``, and DeoVR, which wants ``SBS`` or ``LR``):

    sbs             _LRF_Full_SBS   full side by side
    half-sbs        _LR             half side by side (DeoVR/SKYBOX/Pigasus read LR as SBS and
                                    tell full from half by the frame's aspect)
    tb              _TBF_fulltb     full top-bottom
    half-tb         _TB             half top-bottom
    cross           _RLF_cross      cross-eyed (right eye on the left)
    anaglyph(-color) _redcyan
    vr180           _180_LR         180-degree equirectangular, side by side (DeoVR, SKYBOX)
    quilt           _qs{c}x{r}a{aspect}  Looking Glass: c columns, r rows, view aspect W/H

Formats without a convention (left, right, grid, views, spatial: Apple reads its boxes) keep
their name.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["NAME_TAGS", "name_tag", "quilt_tag", "tagged_name"]

NAME_TAGS: dict[str, str | None] = {
    "sbs": "_LRF_Full_SBS",
    "half-sbs": "_LR",
    "tb": "_TBF_fulltb",
    "half-tb": "_TB",
    "cross": "_RLF_cross",
    "anaglyph": "_redcyan",
    "anaglyph-color": "_redcyan",
    "vr180": "_180_LR",
    "quilt": None,  # needs the layout: quilt_tag
    "left": None,
    "right": None,
    "grid": None,
    "views": None,
    "spatial": None,
}


def quilt_tag(cols: int, rows: int, aspect: float) -> str:
    """Looking Glass quilt tag ``_qs{cols}x{rows}a{aspect}``, aspect = one view's width / height
    with up to 3 decimals (``_qs8x6a0.75``, ``_qs4x2a1.778``)."""
    if cols < 1 or rows < 1 or not aspect > 0:
        raise ValueError(f"quilt layout must be positive, got {cols}x{rows} aspect {aspect}")
    text = f"{aspect:.3f}".rstrip("0").rstrip(".")
    return f"_qs{int(cols)}x{int(rows)}a{text}"


def name_tag(fmt: str, **info: float) -> str:
    """The tag of a format ('' where there is none). Quilts need ``cols``, ``rows``, ``aspect``."""
    if fmt not in NAME_TAGS:
        raise ValueError(f"unknown format {fmt!r} for name tags; one of {', '.join(NAME_TAGS)}")
    if fmt == "quilt":
        missing = [key for key in ("cols", "rows", "aspect") if key not in info]
        if missing:
            raise ValueError(f"a quilt name tag needs {', '.join(missing)}")
        return quilt_tag(int(info["cols"]), int(info["rows"]), float(info["aspect"]))
    return NAME_TAGS[fmt] or ""


def tagged_name(path: str | os.PathLike[str], format: str, **info: float) -> Path:  # noqa: A002
    """``path`` with the player tag of ``format`` before its extension.

    ``tagged_name("out/clip.mp4", "sbs") -> out/clip_LRF_Full_SBS.mp4``; a folder (no extension)
    gets the tag at the end; a name that already ends with the tag is returned unchanged.
    For ``quilt`` pass ``cols``, ``rows`` and ``aspect`` (see framematrix.export.quilt).
    """
    path = Path(path)
    tag = name_tag(format, **info)
    if not tag or path.stem.endswith(tag):
        return path
    return path.with_name(f"{path.stem}{tag}{path.suffix}")
